//! The .rpm stage: a signed, reproducible RPM v4 package from a resolved file
//! tree, metadata in the model's (Debian) vocabulary, and maintainer scripts.
//!
//! - Name, version, release `1`, architecture in RPM's spelling (the caller
//!   passes `Arch::rpm()`: `x86_64`, `noarch`, ...); the file is
//!   `NAME-VERSION-1.ARCH.rpm`.
//! - Relations are mapped from Debian syntax (see `relations`).
//! - Every entry is owned by `root:root` and dated `mtime`; the build time
//!   and the signature are dated `mtime` too, so the same inputs give the
//!   same bytes wherever they are built. Configuration files are
//!   `%config(noreplace)`.
//! - The payload is a cpio archive compressed with xz at level 2: what RHEL's
//!   own rpmbuild writes (`w2.xzdio`), and what every rpm since 4.6 reads
//!   (RHEL 8/9, Debian, SUSE); zstd would need rpm ≥ 4.14 and gains little.
//! - The header is signed with the project key through [`keys`] (sequoia);
//!   the `rpm` crate is built without its own OpenPGP backends.
//!
//! Memory: the `rpm` crate would build the whole compressed payload in
//! memory (the header carries the payload's digest and comes first in the
//! file). Instead the crate builds the header with placeholder (empty) file
//! contents, the `payload` module streams the cpio archive through xz into a spool
//! file next to the output, computing file digests and sizes and the payload
//! digests on the way, and patches them into the header; the signature
//! header is then computed over the final header, and lead, headers and the
//! spooled payload are copied into place. Peak memory is the compressor's
//! working set and a few buffers (about 20 MiB), whatever the payload size,
//! and the bytes are those the crate itself would write. Files are treated
//! as independent regular files: sources that are hard links of each other
//! are not packaged as hard links (as in the .deb).

use std::fs;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use rpm::signature::Signing;
use rpm::{
    CompressionWithLevel, Dependency, DependencyFlags, FileMode, FileOptions, HeaderEntry,
    IndexData, IndexSignatureTag, Scriptlet, Timestamp,
};

use crate::deb::{Relations, Scripts};
use crate::docs::Docs;
use crate::tree::{Entry, EntryKind};
use crate::{Error, Result};

mod headers;
mod payload;

pub use headers::check_headers;

/// The payload compressor (see the module documentation for why).
const COMPRESSION: CompressionWithLevel = CompressionWithLevel::Xz(COMPRESSION_LEVEL);
/// Its level: the streamed payload (see [`payload`]) uses the same encoder.
const COMPRESSION_LEVEL: u32 = 2;

/// The release written for every package: the version is the project's.
pub(crate) const RELEASE: &str = "1";

/// `BUILDHOST`: fixed, so the same inputs give the same bytes on every
/// machine (the name openSUSE's reproducible builds use).
pub(crate) const BUILD_HOST: &str = "reproducible";

/// `GROUP` when the package sets none. Not rpmbuild's `Unspecified`, which
/// rpmlint reports as a missing tag (`no-group-tag`): the group of the
/// old Red Hat list that fits a service or tool deployed by pipe.
pub(crate) const DEFAULT_GROUP: &str = "Applications/System";

/// A package to build.
#[derive(Clone, Debug)]
pub struct RpmPackage {
    /// Package name.
    pub name: String,
    /// Version (validated by the model: no `-`).
    pub version: String,
    /// Architecture in RPM's names (`x86_64`, `noarch`, ...).
    pub arch: String,
    /// One-line summary.
    pub summary: String,
    /// Longer description; the summary when `None`.
    pub description: Option<String>,
    /// License expression; `Unknown` when `None` (RPM requires one).
    pub license: Option<String>,
    /// `Name <email>`, written as the packager.
    pub packager: Option<String>,
    /// Project home page.
    pub url: Option<String>,
    /// `Group`; `DEFAULT_GROUP` when `None`.
    pub group: Option<String>,
    /// Relationships in Debian syntax: `Depends` → `Requires`,
    /// `Pre-Depends` → `Requires(pre)`, `Recommends` and `Suggests`
    /// unchanged, `Conflicts` and `Breaks` → `Conflicts`, `Replaces` →
    /// `Obsoletes`, `Provides` unchanged.
    ///
    /// Each relation becomes `name OP version` (`<<` → `<`, `>>` → `>`, the
    /// others unchanged); alternatives `a | b` become the rich dependency
    /// `(a or b)` (not allowed in `Provides`/`Replaces`); a multiarch
    /// qualifier (`python3:any`) is dropped.
    pub relations: Relations,
    /// Contents, as [`crate::tree::resolve`] returns them. The package
    /// owns every directory in it except those a base system owns
    /// (`crate::tree::SYSTEM_DIRECTORIES`): owning `/usr/bin` would clash
    /// with the `filesystem` package, while owning `/etc/hello` makes
    /// `rpm -e` remove it and `rpm -qf` name the package.
    pub entries: Vec<Entry>,
    /// Maintainer scripts, by their Debian names: `preinst` → `%pre`,
    /// `postinst` → `%post`, `prerm` → `%preun`, `postrm` → `%postun`.
    ///
    /// RPM runs them with its own arguments (`%pre`/`%post`: 1 on install,
    /// 2 on upgrade; `%preun`/`%postun`: 0 on removal, 1 on upgrade), not
    /// dpkg's. A script's `#!` line picks its interpreter; without one it
    /// runs under `/bin/sh`.
    pub scripts: Scripts,
    /// The copyright file, shipped as license documentation (`%license`)
    /// in `/usr/share/licenses/NAME/copyright`, and the changelog, as
    /// `%changelog` tags (`NAME <email> - VERSION-RELEASE`).
    pub docs: Option<Docs>,
    /// `SOURCE_DATE_EPOCH`: every file, the build time and the signature
    /// carry this time.
    pub mtime: u64,
}

impl RpmPackage {
    /// The conventional file name: `NAME-VERSION-1.ARCH.rpm`.
    pub fn file_name(&self) -> String {
        format!("{}-{}-{RELEASE}.{}.rpm", self.name, self.version, self.arch)
    }

    /// `SOURCERPM`: the source package this one would come from,
    /// `NAME-VERSION-1.src.rpm`. There is none (pipe packages a project's
    /// files), but rpm, dnf and rpmlint tell binary packages by this tag
    /// and show it; a name derived from the package is what they expect.
    pub(crate) fn source_rpm(&self) -> String {
        format!("{}-{}-{RELEASE}.src.rpm", self.name, self.version)
    }
}

/// A written package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RpmArtifact {
    /// Where it was written.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// Byte range `[start, end)` of the main header in the file: what a yum
    /// repository's `primary.xml` lists as `<rpm:header-range>`.
    pub header_range: (u64, u64),
    /// Fingerprint of the key that signed it, if signed.
    pub signed_by: Option<String>,
}

/// Writes `pkg` to `out` (conventionally named [`RpmPackage::file_name`]),
/// signed with `signer` when given.
///
/// The file appears complete or not at all: it is written to a temporary
/// file next to `out` and renamed. On error nothing is left behind.
///
/// The signature is dated `max(mtime, key creation)`: a signature cannot
/// predate its key, and the key is fixed, so the output stays reproducible.
pub fn write_rpm(
    pkg: &RpmPackage,
    signer: Option<&keys::SecretKey>,
    out: &Path,
) -> Result<RpmArtifact> {
    let rpm_err = |source| Error::Rpm {
        path: out.to_path_buf(),
        source,
    };
    let mtime = Timestamp(u32::try_from(pkg.mtime).map_err(|_| Error::InvalidField {
        field: "SOURCE_DATE_EPOCH",
        value: pkg.mtime.to_string(),
        expected: "a time before 2106 (RPM v4 dates are 32-bit)".into(),
    })?);

    let mut builder = rpm::PackageBuilder::new(
        &pkg.name,
        &pkg.version,
        pkg.license.as_deref().unwrap_or("Unknown"),
        &pkg.arch,
        &pkg.summary,
    );
    builder
        .using_config(
            rpm::BuildConfig::v4()
                .compression(COMPRESSION)
                .source_date(mtime),
        )
        .release(RELEASE)
        .description(pkg.description.as_deref().unwrap_or(&pkg.summary))
        .group(pkg.group.as_deref().unwrap_or(DEFAULT_GROUP))
        .build_host(BUILD_HOST);
    if let Some(docs) = &pkg.docs {
        // rpmbuild's `%changelog`: `* DATE NAME <email> - VERSION-RELEASE`
        // then the items, each a `- ` line.
        for e in &docs.changelog.entries {
            let time = u32::try_from(e.time).map_err(|_| Error::InvalidField {
                field: "changelog date",
                value: e.time.to_string(),
                expected: "a time before 2106 (RPM v4 dates are 32-bit)".into(),
            })?;
            let text: Vec<String> = e
                .changes
                .iter()
                .map(|c| format!("- {}", c.replace('\n', "\n  ")))
                .collect();
            builder.add_changelog_entry(
                format!("{} - {}-{RELEASE}", e.author, e.version),
                text.join("\n"),
                Timestamp(time),
            );
        }
    }
    if let Some(p) = &pkg.packager {
        builder.packager(p.as_str());
    }
    if let Some(u) = &pkg.url {
        builder.url(u.as_str());
    }
    // rpmbuild declares the payload compressor; the rpm crate does so for
    // zstd only.
    builder.requires(Dependency::rpmlib("PayloadIsXz", "5.2-1"));

    for dep in relations(&pkg.relations)? {
        match dep {
            (Tag::Requires, d) => builder.requires(d),
            (Tag::Provides, d) => builder.provides(d),
            (Tag::Conflicts, d) => builder.conflicts(d),
            (Tag::Obsoletes, d) => builder.obsoletes(d),
            (Tag::Recommends, d) => builder.recommends(d),
            (Tag::Suggests, d) => builder.suggests(d),
        };
    }

    let scripts = [
        ("%pre", &pkg.scripts.preinst, DependencyFlags::SCRIPT_PRE),
        ("%post", &pkg.scripts.postinst, DependencyFlags::SCRIPT_POST),
        ("%preun", &pkg.scripts.prerm, DependencyFlags::SCRIPT_PREUN),
        (
            "%postun",
            &pkg.scripts.postrm,
            DependencyFlags::SCRIPT_POSTUN,
        ),
    ];
    for (field, path, phase) in scripts {
        let Some(path) = path else { continue };
        // The rpm crate adds `Requires(phase): INTERPRETER` itself.
        let scriptlet = read_script(field, path)?;
        match phase {
            DependencyFlags::SCRIPT_PRE => builder.pre_install_script(scriptlet),
            DependencyFlags::SCRIPT_POST => builder.post_install_script(scriptlet),
            DependencyFlags::SCRIPT_PREUN => builder.pre_uninstall_script(scriptlet),
            _ => builder.post_uninstall_script(scriptlet),
        };
    }

    // Regular files go in with placeholder contents: the header entries that
    // depend on contents (sizes, digests, payload digests) are filled in after
    // the payload has been streamed to disk (see `payload`).
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let wr = |e| Error::write(out, e);
    let scratch = tempfile::Builder::new()
        .prefix(".rpm-docs-")
        .tempdir_in(dir)
        .map_err(wr)?;
    let mut license_files = Vec::new();
    if let Some(docs) = &pkg.docs {
        license_files = docs.rpm_files(&pkg.name, scratch.path()).map_err(wr)?;
    }
    let entries = crate::tree::with_generated(&pkg.entries, &license_files, pkg.mtime);
    let mut large = 0u64;
    for e in &entries {
        let perms = (e.mode & 0o7777) as u16;
        match &e.kind {
            EntryKind::File { src, size } => {
                // Check here so the message names the file, and that it is
                // what the tree saw (checked again while streaming).
                let found = fs::File::open(src)
                    .and_then(|f| f.metadata())
                    .map_err(|err| Error::read(src, err))?
                    .len();
                if found != *size {
                    return Err(Error::SourceChanged {
                        path: src.clone(),
                        expected: *size,
                        found,
                    });
                }
                large = large.saturating_add(*size);
                let mut opts = FileOptions::new(e.path.as_str())
                    .mode(FileMode::regular(perms))
                    .modified_at(mtime);
                if e.config {
                    opts = opts.config().noreplace();
                }
                if license_files.iter().any(|g| g.path == e.path) {
                    opts = opts.license();
                }
                builder
                    .with_file_contents(placeholder(e, src)?, opts)
                    .map_err(rpm_err)?;
            }
            EntryKind::Dir if crate::tree::is_system_directory(&e.path) => {}
            EntryKind::Dir => {
                builder
                    .with_dir_entry(
                        FileOptions::dir(e.path.as_str())
                            .mode(FileMode::dir(perms))
                            .modified_at(mtime),
                    )
                    .map_err(rpm_err)?;
            }
            EntryKind::Symlink { target } => {
                large = large.saturating_add(target.len() as u64);
                builder
                    .with_symlink(
                        FileOptions::symlink(e.path.as_str(), target.as_str())
                            .mode(FileMode::symbolic_link(0o777))
                            .modified_at(mtime),
                    )
                    .map_err(rpm_err)?;
            }
        }
    }
    // The rpm crate switches to 64-bit sizes and the stripped cpio format
    // above 4 GiB of contents, and then requires rpmlib(LargeFiles); with
    // placeholder contents it cannot tell, so say so here.
    let large_files = large > u64::from(u32::MAX);
    if large_files {
        builder.requires(Dependency::rpmlib("LargeFiles", "4.12.0-1"));
    }

    let mut package = builder.build().map_err(rpm_err)?;

    let mut spool = tempfile::Builder::new()
        .prefix(".rpm-payload-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(wr)?;
    let streamed = payload::write(
        &package.metadata.header,
        &entries,
        large_files,
        spool.as_file_mut(),
    )
    .map_err(|e| match e {
        payload::Failure::Source(e) => e,
        payload::Failure::Write(io) => wr(io),
        payload::Failure::Rpm(e) => rpm_err(e),
    })?;
    let header = payload::patch_header(
        &package.metadata.header,
        &streamed,
        large_files,
        &pkg.source_rpm(),
    )
    .map_err(rpm_err)?;
    package.metadata.header = header;
    package.payload = Vec::new();
    let header_bytes = package.header_bytes().map_err(rpm_err)?;
    let header_len = header_bytes.len() as u64;
    package.metadata.signature =
        rpm::SignatureHeaderBuilder::from_existing(&package.metadata.signature)
            .map_err(rpm_err)?
            .clear_signatures()
            .set_content_length(header_len + streamed.compressed_size)
            .calculate_digests(&header_bytes)
            .build()
            .map_err(rpm_err)?;

    let signed_by = match signer {
        Some(key) => {
            let time = (UNIX_EPOCH + Duration::from_secs(pkg.mtime)).max(key.created());
            sign(&mut package, key, time, out)?;
            Some(key.fingerprint())
        }
        None => None,
    };

    let offsets = package.metadata.get_package_segment_offsets();
    let size = write_atomically(&package.metadata, spool.as_file_mut(), out)?;
    drop(spool);
    tracing::debug!(path = %out.display(), size, "wrote rpm");
    Ok(RpmArtifact {
        path: out.to_path_buf(),
        size,
        header_range: (offsets.header, offsets.payload),
        signed_by,
    })
}

/// What the rpm crate is given for a regular file: nothing, except for a
/// sysusers.d file, which it reads for `user()`/`group()` provides (small
/// text files; read whole).
fn placeholder(e: &Entry, src: &Path) -> Result<Vec<u8>> {
    if e.path.starts_with("/usr/lib/sysusers.d/") && e.path.ends_with(".conf") {
        fs::read(src).map_err(|err| Error::read(src, err))
    } else {
        Ok(Vec::new())
    }
}

/// Adapts a [`keys::SecretKey`] to the `rpm` crate's signing interface: a
/// binary OpenPGP v4 signature (SHA-256) over the data, dated `t`.
///
/// [`write_rpm`] uses it; it is public for re-signing existing packages
/// with the `rpm` crate's API.
#[derive(Debug)]
pub(crate) struct RpmSigner<'a> {
    key: &'a keys::SecretKey,
}

impl<'a> RpmSigner<'a> {
    /// A signer backed by `key`.
    pub fn new(key: &'a keys::SecretKey) -> Self {
        RpmSigner { key }
    }
}

impl Signing for RpmSigner<'_> {
    type Signature = Vec<u8>;

    fn sign(&self, data: impl Read, t: Timestamp) -> Result<Vec<u8>, rpm::Error> {
        let time = UNIX_EPOCH + Duration::from_secs(u64::from(t.0));
        self.key
            .sign_detached(data, time, keys::Encoding::Binary)
            // Without its OpenPGP backends, rpm::Error's only open variant.
            .map_err(|e| rpm::Error::Io(io::Error::other(e)))
    }
}

/// Signs the main header and adds the signature to the signature header.
///
/// The `rpm` crate's own `sign_with_timestamp` needs one of its OpenPGP
/// backends (rPGP, or a second, pinned sequoia) to parse the signature back
/// and pick its tag. We know the algorithm from the key, so we place the
/// signature ourselves, in the tags rpmsign writes for a v4 package:
/// `RSAHEADER` (268) for RSA, `DSAHEADER` (267) for ECDSA/EdDSA, plus
/// `OPENPGP` (base64; read by rpm 6, ignored by older rpm), as the `rpm`
/// crate itself does.
fn sign(
    package: &mut rpm::Package,
    key: &keys::SecretKey,
    time: SystemTime,
    out: &Path,
) -> Result<()> {
    let rpm_err = |source| Error::Rpm {
        path: out.to_path_buf(),
        source,
    };
    let key_err = |source| Error::Sign {
        path: out.to_path_buf(),
        source,
    };
    let legacy_tag = match key.signing_algorithm(time).map_err(key_err)? {
        keys::SignatureAlgorithm::Rsa => IndexSignatureTag::RPMSIGTAG_RSA,
        keys::SignatureAlgorithm::Ecdsa | keys::SignatureAlgorithm::EdDsa => {
            IndexSignatureTag::RPMSIGTAG_DSA
        }
    };
    let header = package.header_bytes().map_err(rpm_err)?;
    let t = Timestamp::try_from(time).map_err(|e| Error::InvalidField {
        field: "signature time",
        value: format!("{time:?}"),
        expected: format!("a 32-bit Unix time ({e:?})"),
    })?;
    let signature = RpmSigner::new(key)
        .sign(header.as_slice(), t)
        .map_err(|e| match e {
            rpm::Error::Io(io) if io.get_ref().is_some_and(|e| e.is::<keys::Error>()) => {
                #[allow(clippy::expect_used, reason = "the guard checked both")]
                let inner = io.into_inner().expect("checked above");
                #[allow(clippy::expect_used, reason = "the guard checked both")]
                let e = inner.downcast::<keys::Error>().expect("checked above");
                key_err(*e)
            }
            other => rpm_err(other),
        })?;

    let region = IndexSignatureTag::HEADER_SIGNATURES as u32;
    let openpgp = IndexSignatureTag::RPMSIGTAG_OPENPGP as u32;
    let legacy = legacy_tag as u32;
    let mut entries: Vec<HeaderEntry> = package
        .metadata
        .signature
        .get_all_entries()
        .map_err(rpm_err)?
        .into_iter()
        .filter(|(tag, _)| *tag != region && *tag != legacy && *tag != openpgp)
        .map(|(tag, data)| HeaderEntry::new(tag, data))
        .collect();
    let armored = base64(&signature);
    entries.push(HeaderEntry::new(legacy, IndexData::Bin(signature)));
    entries.push(HeaderEntry::new(
        openpgp,
        IndexData::StringArray(vec![armored]),
    ));
    package.metadata.signature =
        rpm::Header::from_entries(entries, IndexSignatureTag::HEADER_SIGNATURES);
    Ok(())
}

/// Reads a maintainer script; its `#!` line, if any, names the interpreter
/// (rpm would otherwise run it with `/bin/sh`, whatever the line says).
fn read_script(field: &'static str, path: &Path) -> Result<Scriptlet> {
    let bytes = fs::read(path).map_err(|e| Error::read(path, e))?;
    let text = String::from_utf8(bytes).map_err(|_| Error::InvalidField {
        field,
        value: path.display().to_string(),
        expected: "a UTF-8 text script (RPM stores scripts as text)".into(),
    })?;
    // rpmbuild always records the interpreter (`/bin/sh` by default).
    let program: Vec<String> = text
        .strip_prefix("#!")
        .and_then(|rest| rest.lines().next())
        .map(|line| line.split_whitespace().map(str::to_string).collect())
        .filter(|p: &Vec<String>| !p.is_empty())
        .unwrap_or_else(|| vec!["/bin/sh".into()]);
    Ok(Scriptlet::new(text).prog(program))
}

/// The RPM tag a Debian relation field maps onto.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tag {
    Requires,
    Provides,
    Conflicts,
    Obsoletes,
    Recommends,
    Suggests,
}

/// All relations as RPM dependencies, field by field.
fn relations(r: &Relations) -> Result<Vec<(Tag, Dependency)>> {
    use DependencyFlags as F;
    let fields: [(&'static str, &Vec<String>, Tag, F, bool); 8] = [
        ("Depends", &r.depends, Tag::Requires, F::ANY, true),
        (
            "Pre-Depends",
            &r.pre_depends,
            Tag::Requires,
            F::SCRIPT_PRE,
            true,
        ),
        ("Recommends", &r.recommends, Tag::Recommends, F::ANY, true),
        ("Suggests", &r.suggests, Tag::Suggests, F::ANY, true),
        ("Conflicts", &r.conflicts, Tag::Conflicts, F::ANY, true),
        ("Breaks", &r.breaks, Tag::Conflicts, F::ANY, true),
        ("Replaces", &r.replaces, Tag::Obsoletes, F::ANY, false),
        ("Provides", &r.provides, Tag::Provides, F::ANY, false),
    ];
    let mut out = Vec::new();
    for (field, list, tag, extra, alternatives_ok) in fields {
        for rel in list {
            let bad = |expected: String| Error::InvalidField {
                field,
                value: rel.clone(),
                expected,
            };
            let mut dep = dependency(rel).map_err(bad)?;
            if dep.name.starts_with('(') && !alternatives_ok {
                return Err(bad(format!(
                    "a single package without alternatives (`|`): RPM's {tag:?} has no rich dependencies"
                )));
            }
            dep.flags |= extra;
            out.push((tag, dep));
        }
    }
    Ok(out)
}

/// One Debian relation as an RPM dependency: `name (>= 1.0)` → `name >= 1.0`,
/// `a | b (<< 2)` → `(a or b < 2)`. The error says what was expected.
fn dependency(relation: &str) -> std::result::Result<Dependency, String> {
    let alts = relation
        .split('|')
        .map(alternative)
        .collect::<std::result::Result<Vec<_>, _>>()?;
    if let [(name, op, version)] = alts.as_slice() {
        let flags = match *op {
            "<<" => DependencyFlags::LESS,
            "<=" => DependencyFlags::LESS | DependencyFlags::EQUAL,
            "=" => DependencyFlags::EQUAL,
            ">=" => DependencyFlags::GREATER | DependencyFlags::EQUAL,
            ">>" => DependencyFlags::GREATER,
            _ => DependencyFlags::ANY,
        };
        return Ok(Dependency {
            name: name.clone(),
            flags,
            version: version.clone(),
        });
    }
    let terms: Vec<String> = alts
        .iter()
        .map(|(name, op, version)| match rpm_op(op) {
            "" => name.clone(),
            op => format!("{name} {op} {version}"),
        })
        .collect();
    Ok(Dependency::any(format!("({})", terms.join(" or "))))
}

fn rpm_op(debian: &str) -> &'static str {
    match debian {
        "<<" => "<",
        "<=" => "<=",
        "=" => "=",
        ">=" => ">=",
        ">>" => ">",
        _ => "",
    }
}

/// `name[:arch] [(OP version)]` → (name, Debian OP or "", version).
fn alternative(alt: &str) -> std::result::Result<(String, &'static str, String), String> {
    let alt = alt.trim();
    let expected = || {
        "`name`, `name (OP version)` with OP one of <<, <=, =, >=, >>, or alternatives `a | b`"
            .to_string()
    };
    let (name, constraint) = match alt.split_once('(') {
        Some((n, rest)) => {
            let inner = rest.trim().strip_suffix(')').ok_or_else(expected)?;
            (n.trim(), Some(inner.trim()))
        }
        None => (alt, None),
    };
    // Multiarch qualifiers (`:any`, `:native`) have no RPM equivalent.
    let name = name.split(':').next().unwrap_or(name).trim();
    if name.is_empty() || name.contains(|c: char| c.is_whitespace() || "()<>=".contains(c)) {
        return Err(expected());
    }
    let Some(inner) = constraint else {
        return Ok((name.to_string(), "", String::new()));
    };
    for op in ["<<", "<=", ">=", ">>", "="] {
        if let Some(v) = inner.strip_prefix(op) {
            let v = v.trim();
            if v.is_empty() || v.contains(char::is_whitespace) {
                break;
            }
            return Ok((name.to_string(), op, v.to_string()));
        }
    }
    Err(expected())
}

/// Standard base64 with padding, for the `OPENPGP` signature tag.
fn base64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// Writes the lead and headers of `metadata` then the spooled payload to a
/// temporary file next to `path`, then renames it.
fn write_atomically(
    metadata: &rpm::PackageMetadata,
    payload: &mut fs::File,
    path: &Path,
) -> Result<u64> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let wr = |e| Error::write(path, e);
    let tmp = tempfile::Builder::new()
        .prefix(".rpm-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(wr)?;
    {
        let mut w = BufWriter::new(tmp.as_file());
        metadata.write(&mut w).map_err(|e| match e {
            rpm::Error::Io(io) => wr(io),
            other => wr(io::Error::other(other)),
        })?;
        payload.seek(SeekFrom::Start(0)).map_err(wr)?;
        io::copy(payload, &mut w).map_err(wr)?;
        w.flush().map_err(wr)?;
    }
    tmp.as_file().sync_all().map_err(wr)?;
    let size = tmp.as_file().metadata().map_err(wr)?.len();
    tmp.persist(path).map_err(|e| wr(e.error))?;
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(rel: &str) -> String {
        let d = dependency(rel).unwrap();
        let op = match (
            d.flags.contains(DependencyFlags::LESS),
            d.flags.contains(DependencyFlags::GREATER),
            d.flags.contains(DependencyFlags::EQUAL),
        ) {
            (true, _, true) => "<=",
            (true, _, false) => "<",
            (_, true, true) => ">=",
            (_, true, false) => ">",
            (_, _, true) => "=",
            _ => "",
        };
        if op.is_empty() {
            d.name
        } else {
            format!("{} {op} {}", d.name, d.version)
        }
    }

    #[test]
    fn debian_relations_become_rpm_dependencies() {
        assert_eq!(show("libc6 (>= 2.36)"), "libc6 >= 2.36");
        assert_eq!(show("foo (<< 2)"), "foo < 2");
        assert_eq!(show("foo (>> 2)"), "foo > 2");
        assert_eq!(show("foo (= 1:2.0-3)"), "foo = 1:2.0-3");
        assert_eq!(show("foo(<=2)"), "foo <= 2");
        assert_eq!(show("python3:any"), "python3");
        assert_eq!(
            show("exim4 | mail-transport-agent (<< 2)"),
            "(exim4 or mail-transport-agent < 2)"
        );
        assert!(dependency("foo (> 2)").is_err());
        assert!(dependency("foo (>= )").is_err());
        assert!(dependency("foo >= 2").is_err());
    }

    #[test]
    fn alternatives_are_refused_where_rpm_has_no_rich_dependencies() {
        let r = Relations {
            provides: vec!["a | b".into()],
            ..Default::default()
        };
        let e = relations(&r).unwrap_err().to_string();
        assert!(e.contains("Provides `a | b`"), "{e}");
    }

    #[test]
    fn base64_matches_the_standard_alphabet() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar\xff"), "Zm9vYmFy/w==");
    }
}
