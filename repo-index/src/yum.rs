//! yum/dnf repositories: `repodata/` with `primary`, `filelists` and `other`
//! (gzip, named `<sha256>-<type>.xml.gz` as `createrepo_c
//! --unique-md-filenames` names them), `repomd.xml` and its armored
//! detached signature `repomd.xml.asc`, rendered from recorded rpm header
//! fields.
//!
//! The XML follows what `createrepo_c` writes for the same package, element
//! for element (namespaces `http://linux.duke.edu/metadata/{common,rpm,
//! filelists,other,repo}`), including its filtering of requirements and of
//! the files listed in `primary`; the consumer test compares the two.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::chunked;
use crate::common::{self, PlannedFile, WritePlan};
use crate::{Error, Result};

/// How many changelog entries go into `other.xml` (the newest ones), as
/// `createrepo_c`'s default `--changelog-limit`.
pub(crate) const CHANGELOG_LIMIT: usize = 10;

/// What the pipeline records for one `.rpm` at publish time: the header
/// fields the repodata needs, so no `.rpm` is read again.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RpmPackage {
    /// `NAME`.
    pub name: String,
    /// `EPOCH` (0 if the header has none).
    pub epoch: u64,
    /// `VERSION`.
    pub version: String,
    /// `RELEASE`.
    pub release: String,
    /// `ARCH` (`noarch`, `x86_64`, ...).
    pub arch: String,
    /// `SUMMARY`.
    pub summary: String,
    /// `DESCRIPTION`.
    pub description: String,
    /// `URL`, if any.
    pub url: Option<String>,
    /// `LICENSE`.
    pub license: String,
    /// `VENDOR` (empty if none).
    pub vendor: String,
    /// `GROUP` (rpm says `Unspecified` if the spec has none).
    pub group: String,
    /// `PACKAGER` (empty if none).
    pub packager: String,
    /// `BUILDHOST`.
    pub buildhost: String,
    /// `SOURCERPM` (empty for a source package).
    pub sourcerpm: String,
    /// `BUILDTIME`, seconds since the epoch.
    pub build_time: u64,
    /// When the file was published, seconds since the epoch (createrepo_c
    /// takes the file's mtime).
    pub file_time: u64,
    /// Size of the `.rpm` file in bytes.
    pub package_size: u64,
    /// `SIZE`: installed size.
    pub installed_size: u64,
    /// `ARCHIVESIZE` (or `LONGARCHIVESIZE`): uncompressed payload size.
    pub archive_size: u64,
    /// Byte offset of the main header in the file (after lead and signature).
    pub header_start: u64,
    /// Byte offset of the end of the main header (start of the payload).
    pub header_end: u64,
    /// SHA-256 of the `.rpm` file, hex: the package id (`pkgid`).
    pub sha256: String,
    /// Path of the `.rpm` relative to the repository base (`location href`),
    /// or relative to `location_base`.
    pub location_href: String,
    /// `xml:base` of the location, if the file lives elsewhere than under
    /// the repository base (a shared pool).
    pub location_base: Option<String>,
    /// `PROVIDENAME`/`FLAGS`/`VERSION`, in header order.
    pub provides: Vec<Dependency>,
    /// `REQUIRENAME`/`FLAGS`/`VERSION`, in header order, unfiltered: the
    /// renderer drops what createrepo_c drops (`rpmlib(...)`, own files,
    /// duplicates).
    pub requires: Vec<Dependency>,
    /// `CONFLICTNAME`/...
    pub conflicts: Vec<Dependency>,
    /// `OBSOLETENAME`/...
    pub obsoletes: Vec<Dependency>,
    /// `RECOMMENDNAME`/...
    pub recommends: Vec<Dependency>,
    /// `SUGGESTNAME`/...
    pub suggests: Vec<Dependency>,
    /// `SUPPLEMENTNAME`/...
    pub supplements: Vec<Dependency>,
    /// `ENHANCENAME`/...
    pub enhances: Vec<Dependency>,
    /// Every file (`FILENAMES` with its kind), in header order.
    pub files: Vec<RpmFile>,
    /// `CHANGELOGTIME`/`NAME`/`TEXT`, in header order (newest first).
    pub changelogs: Vec<ChangelogEntry>,
}

/// One dependency as the header has it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dependency {
    /// The capability (`bash`, `/bin/sh`, `libc.so.6()(64bit)`).
    pub(crate) name: String,
    /// The `*FLAGS` value (`RPMSENSE_*` bits): comparison and pre-requirement.
    pub(crate) flags: u32,
    /// The `*VERSION` value: `[EPOCH:]VERSION[-RELEASE]`, empty if none.
    pub(crate) evr: String,
}

impl Dependency {
    /// A dependency from its three header values.
    pub fn new(name: impl Into<String>, flags: u32, evr: impl Into<String>) -> Dependency {
        Dependency {
            name: name.into(),
            flags,
            evr: evr.into(),
        }
    }

    /// `LT`, `GT`, `EQ`, `LE`, `GE` from the comparison bits, as createrepo_c.
    fn comparison(&self) -> Option<&'static str> {
        match self.flags & 0xe {
            2 => Some("LT"),
            4 => Some("GT"),
            8 => Some("EQ"),
            10 => Some("LE"),
            12 => Some("GE"),
            _ => None,
        }
    }

    /// A requirement needed before install scripts run
    /// (`RPMSENSE_PREREQ | SCRIPT_PRE | SCRIPT_POST`): `pre="1"`.
    fn pre(&self) -> bool {
        self.flags & (64 | 512 | 1024) != 0
    }
}

/// What kind of file an entry is in the file lists.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileKind {
    /// A regular file or symlink.
    #[default]
    File,
    /// A directory (`type="dir"`).
    Dir,
    /// A `%ghost` file, owned but not shipped (`type="ghost"`).
    Ghost,
}

impl FileKind {
    /// From the header's `FILEMODES` and `FILEFLAGS` values, as createrepo_c
    /// decides: a directory mode wins over the ghost flag.
    pub fn from_header(mode: u32, flags: u32) -> FileKind {
        const S_IFMT: u32 = 0o170000;
        const S_IFDIR: u32 = 0o040000;
        const RPMFILE_GHOST: u32 = 1 << 6;
        if mode & S_IFMT == S_IFDIR {
            FileKind::Dir
        } else if flags & RPMFILE_GHOST != 0 {
            FileKind::Ghost
        } else {
            FileKind::File
        }
    }
}

/// One file of the package.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RpmFile {
    /// Absolute path.
    pub path: String,
    /// Its kind.
    pub kind: FileKind,
}

/// One changelog entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangelogEntry {
    /// `CHANGELOGNAME`: author, often with the version (`Jane <j@x> - 1.0-1`).
    pub author: String,
    /// `CHANGELOGTIME`, seconds since the epoch.
    pub date: u64,
    /// `CHANGELOGTEXT`.
    pub text: String,
}

/// One package's three XML fragments (`<package>` elements). Depends on the
/// package only, so the pipeline can cache it by the package's digest; each
/// metadata file is the concatenation of fragments between a fixed header
/// and footer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageXml {
    /// The package id: SHA-256 of the `.rpm`.
    pub pkgid: String,
    /// Sort key: name, arch, epoch, version, release.
    pub nevra: (String, String, u64, String, String),
    /// The `<package>` element of `primary.xml`.
    pub primary: String,
    /// The `<package>` element of `filelists.xml`.
    pub filelists: String,
    /// The `<package>` element of `other.xml`.
    pub other: String,
}

impl PackageXml {
    /// The same package listed at `href` (relative to the repository's
    /// base URL), whatever location it was rendered with: the location is
    /// the repository's choice, the rest is the package's.
    ///
    /// Errors ([`Error::BadInput`]) on an `href` that is not a relative path
    /// below the base URL, or a fragment without a `<location>` element.
    pub fn with_location(&self, href: &str) -> Result<PackageXml> {
        let who = format!(
            "{}-{}-{}.{}",
            self.nevra.0, self.nevra.3, self.nevra.4, self.nevra.1
        );
        if href.is_empty()
            || href.starts_with('/')
            || href.contains(|c: char| c.is_control())
            || href
                .split('/')
                .any(|p| p == ".." || p == "." || p.is_empty())
        {
            return Err(Error::BadInput {
                what: who,
                detail: format!(
                    "location href must be a relative path below the repository, got {href:?}"
                ),
            });
        }
        const START: &str = "\n  <location ";
        let found = self.primary.find(START).and_then(|start| {
            let from = start + START.len();
            let end = self.primary[from..].find("/>\n")? + from + 3;
            Some((start, end))
        });
        let Some((start, end)) = found else {
            return Err(Error::BadInput {
                what: who,
                detail: "the primary fragment has no <location> element".into(),
            });
        };
        let mut out = self.clone();
        out.primary = format!(
            "{}\n  <location href=\"{}\"/>\n{}",
            &self.primary[..start],
            esc(href),
            &self.primary[end..]
        );
        Ok(out)
    }
}

/// Files createrepo_c lists in `primary.xml` (the rest only in
/// `filelists.xml`): what dependencies on paths usually name.
fn is_primary_file(path: &str) -> bool {
    path.starts_with("/etc/") || path == "/usr/lib/sendmail" || path.contains("bin/")
}

/// XML-escapes text or an attribute value; drops characters XML 1.0 cannot
/// carry (control characters other than tab, newline and carriage return).
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\r' => out.push_str("&#13;"),
            '\t' | '\n' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => {}
            c => out.push(c),
        }
    }
    out
}

/// `[EPOCH:]VERSION[-RELEASE]` split as createrepo_c does: epoch `0` when
/// absent, release after the last `-`.
fn split_evr(evr: &str) -> Option<(&str, &str, Option<&str>)> {
    if evr.is_empty() {
        return None;
    }
    let (epoch, rest) = match evr.split_once(':') {
        Some((e, r)) if !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit()) => (e, r),
        _ => ("0", evr),
    };
    Some(match rest.rsplit_once('-') {
        Some((v, r)) => (epoch, v, Some(r)),
        None => (epoch, rest, None),
    })
}

fn dep_entry(out: &mut String, d: &Dependency, with_pre: bool) {
    let _ = write!(out, "      <rpm:entry name=\"{}\"", esc(&d.name));
    if let Some(flags) = d.comparison() {
        let _ = write!(out, " flags=\"{flags}\"");
    }
    if let Some((e, v, r)) = split_evr(&d.evr) {
        let _ = write!(out, " epoch=\"{}\" ver=\"{}\"", esc(e), esc(v));
        if let Some(r) = r {
            let _ = write!(out, " rel=\"{}\"", esc(r));
        }
    }
    if with_pre && d.pre() {
        out.push_str(" pre=\"1\"");
    }
    out.push_str("/>\n");
}

fn dep_list(out: &mut String, tag: &str, deps: &[&Dependency], with_pre: bool) {
    if deps.is_empty() {
        return;
    }
    let _ = writeln!(out, "    <rpm:{tag}>");
    for d in deps {
        dep_entry(out, d, with_pre);
    }
    let _ = writeln!(out, "    </rpm:{tag}>");
}

fn file_line(out: &mut String, indent: &str, f: &RpmFile) {
    match f.kind {
        FileKind::File => {
            let _ = writeln!(out, "{indent}<file>{}</file>", esc(&f.path));
        }
        FileKind::Dir => {
            let _ = writeln!(out, "{indent}<file type=\"dir\">{}</file>", esc(&f.path));
        }
        FileKind::Ghost => {
            let _ = writeln!(out, "{indent}<file type=\"ghost\">{}</file>", esc(&f.path));
        }
    }
}

/// The requirements createrepo_c keeps: no `rpmlib(...)`, none on the
/// package's own primary files or on what it provides itself, no exact
/// duplicates.
fn kept_requires(pkg: &RpmPackage) -> Vec<&Dependency> {
    let own_files: HashSet<&str> = pkg.files.iter().map(|f| f.path.as_str()).collect();
    let provided: HashSet<&str> = pkg.provides.iter().map(|d| d.name.as_str()).collect();
    let mut last: BTreeMap<&str, (Option<&str>, &str, bool)> = BTreeMap::new();
    let mut out = Vec::new();
    for d in &pkg.requires {
        let name = d.name.as_str();
        if name.starts_with("rpmlib(")
            || (own_files.contains(name) && is_primary_file(name))
            || provided.contains(name)
        {
            continue;
        }
        let key = (d.comparison(), d.evr.as_str(), d.pre());
        if last.get(name) == Some(&key) {
            continue;
        }
        last.insert(name, key);
        out.push(d);
    }
    out
}

/// Renders one package's `<package>` elements for `primary.xml`,
/// `filelists.xml` and `other.xml`.
///
/// Errors ([`Error::BadInput`]) on a `sha256` that is not 64 hex digits, an
/// empty name, version or arch, or a location that is not a relative path.
pub fn render_package(pkg: &RpmPackage) -> Result<PackageXml> {
    let who = format!("{}-{}-{}.{}", pkg.name, pkg.version, pkg.release, pkg.arch);
    let pkgid = common::check_hex(&who, "sha256", &pkg.sha256, 64)?;
    for (field, v) in [
        ("name", &pkg.name),
        ("version", &pkg.version),
        ("release", &pkg.release),
        ("arch", &pkg.arch),
    ] {
        if v.is_empty() || v.contains(char::is_whitespace) {
            return Err(Error::BadInput {
                what: who,
                detail: format!("{field} must be one non-empty word, got {v:?}"),
            });
        }
    }
    if pkg.location_href.is_empty()
        || pkg.location_href.starts_with('/')
        || pkg.location_href.contains(|c: char| c.is_control())
    {
        return Err(Error::BadInput {
            what: who,
            detail: format!(
                "location href must be a relative path, got {:?}",
                pkg.location_href
            ),
        });
    }
    let name = esc(&pkg.name);
    let arch = esc(&pkg.arch);
    let version = format!(
        "<version epoch=\"{}\" ver=\"{}\" rel=\"{}\"/>",
        pkg.epoch,
        esc(&pkg.version),
        esc(&pkg.release)
    );

    let mut p = String::with_capacity(2048);
    p.push_str("<package type=\"rpm\">\n");
    let _ = writeln!(p, "  <name>{name}</name>");
    let _ = writeln!(p, "  <arch>{arch}</arch>");
    let _ = writeln!(p, "  {version}");
    let _ = writeln!(
        p,
        "  <checksum type=\"sha256\" pkgid=\"YES\">{pkgid}</checksum>"
    );
    let _ = writeln!(p, "  <summary>{}</summary>", esc(&pkg.summary));
    let _ = writeln!(p, "  <description>{}</description>", esc(&pkg.description));
    let _ = writeln!(p, "  <packager>{}</packager>", esc(&pkg.packager));
    let _ = writeln!(
        p,
        "  <url>{}</url>",
        esc(pkg.url.as_deref().unwrap_or_default())
    );
    let _ = writeln!(
        p,
        "  <time file=\"{}\" build=\"{}\"/>",
        pkg.file_time, pkg.build_time
    );
    let _ = writeln!(
        p,
        "  <size package=\"{}\" installed=\"{}\" archive=\"{}\"/>",
        pkg.package_size, pkg.installed_size, pkg.archive_size
    );
    match &pkg.location_base {
        Some(base) => {
            let _ = writeln!(
                p,
                "  <location xml:base=\"{}\" href=\"{}\"/>",
                esc(base),
                esc(&pkg.location_href)
            );
        }
        None => {
            let _ = writeln!(p, "  <location href=\"{}\"/>", esc(&pkg.location_href));
        }
    }
    p.push_str("  <format>\n");
    let _ = writeln!(p, "    <rpm:license>{}</rpm:license>", esc(&pkg.license));
    let _ = writeln!(p, "    <rpm:vendor>{}</rpm:vendor>", esc(&pkg.vendor));
    let _ = writeln!(p, "    <rpm:group>{}</rpm:group>", esc(&pkg.group));
    let _ = writeln!(
        p,
        "    <rpm:buildhost>{}</rpm:buildhost>",
        esc(&pkg.buildhost)
    );
    let _ = writeln!(
        p,
        "    <rpm:sourcerpm>{}</rpm:sourcerpm>",
        esc(&pkg.sourcerpm)
    );
    let _ = writeln!(
        p,
        "    <rpm:header-range start=\"{}\" end=\"{}\"/>",
        pkg.header_start, pkg.header_end
    );
    fn all(v: &[Dependency]) -> Vec<&Dependency> {
        v.iter().collect()
    }
    dep_list(&mut p, "provides", &all(&pkg.provides), false);
    dep_list(&mut p, "requires", &kept_requires(pkg), true);
    dep_list(&mut p, "conflicts", &all(&pkg.conflicts), false);
    dep_list(&mut p, "obsoletes", &all(&pkg.obsoletes), false);
    dep_list(&mut p, "suggests", &all(&pkg.suggests), false);
    dep_list(&mut p, "enhances", &all(&pkg.enhances), false);
    dep_list(&mut p, "recommends", &all(&pkg.recommends), false);
    dep_list(&mut p, "supplements", &all(&pkg.supplements), false);
    for f in pkg.files.iter().filter(|f| is_primary_file(&f.path)) {
        file_line(&mut p, "    ", f);
    }
    p.push_str("  </format>\n</package>\n");

    let head =
        format!("<package pkgid=\"{pkgid}\" name=\"{name}\" arch=\"{arch}\">\n  {version}\n");
    let mut fl = head.clone();
    for f in &pkg.files {
        file_line(&mut fl, "  ", f);
    }
    fl.push_str("</package>\n");

    // The newest CHANGELOG_LIMIT entries, oldest first; entries sharing a
    // time are made distinct the way createrepo_c does (the older ones get
    // later by a second each), so the output matches its.
    let mut other = head;
    let mut entries: Vec<ChangelogEntry> = pkg
        .changelogs
        .iter()
        .take(CHANGELOG_LIMIT)
        .map(|c| ChangelogEntry {
            author: c.author.trim_end_matches(' ').to_string(),
            ..c.clone()
        })
        .collect();
    // entries[i] is newer than entries[i + 1]; walking from newest to oldest,
    // a run of equal times pushes the older ones up by one second each.
    let mut last_time = None;
    for i in 0..entries.len() {
        let Some(t) = entries.get(i).map(|e| e.date) else {
            break;
        };
        if last_time == Some(t) {
            let mut tmp = t;
            for newer in entries.iter_mut().take(i).rev() {
                if newer.date != tmp {
                    break;
                }
                newer.date = newer.date.saturating_add(1);
                tmp = tmp.saturating_add(1);
            }
        } else {
            last_time = Some(t);
        }
    }
    for c in entries.iter().rev() {
        let _ = writeln!(
            other,
            "  <changelog author=\"{}\" date=\"{}\">{}</changelog>",
            esc(&c.author),
            c.date,
            esc(&c.text)
        );
    }
    other.push_str("</package>\n");

    Ok(PackageXml {
        pkgid,
        nevra: (
            pkg.name.clone(),
            pkg.arch.clone(),
            pkg.epoch,
            pkg.version.clone(),
            pkg.release.clone(),
        ),
        primary: p,
        filelists: fl,
        other,
    })
}

/// Settings of one repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepoConfig {
    /// Directory of the repository (its base URL) relative to the store
    /// root, `/`-separated, empty for the root itself (`yum/prod`).
    /// `repodata/` goes under it.
    pub dir: String,
    /// `revision` and the `timestamp` of every data file. dnf compares
    /// timestamps to decide what is newer, so it should grow with each
    /// promotion.
    pub timestamp: SystemTime,
}

/// One compressed metadata file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataFile {
    /// `primary`, `filelists` or `other`.
    pub kind: &'static str,
    /// Path relative to the repository directory:
    /// `repodata/<sha256>-primary.xml.gz`.
    pub href: String,
    /// The gzip bytes.
    pub gz: Arc<[u8]>,
    /// SHA-256 of `gz`.
    pub checksum: String,
    /// SHA-256 of the uncompressed XML.
    pub open_checksum: String,
    /// Size of the uncompressed XML.
    pub open_size: u64,
    /// The gzip members `gz` is made of, in order (empty: one piece).
    pub chunks: Vec<crate::Chunk>,
}

/// A rendered, not yet signed repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenderedRepo {
    /// The repository directory relative to the store root (from the config).
    pub dir: String,
    /// `primary`, `filelists`, `other`.
    pub data: Vec<DataFile>,
    /// `repodata/repomd.xml`.
    pub repomd: String,
    /// Set by a caller that passes this rendering as `previous` and vouches
    /// for its chunk tables (see `apt::RenderedSuite::chunks_vouched`):
    /// its gzip members are then reused without being decompressed.
    pub chunks_vouched: bool,
}

const XML_DECL: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";

/// Renders a repository from its packages' fragments.
///
/// `previous`, the last rendering (of this repository or any), lets an
/// unchanged metadata file keep its compressed bytes. The three files are
/// compressed in parallel. Packages are sorted by name, arch, epoch,
/// version, release and id, so the output does not depend on input order;
/// the same package given twice is listed once.
pub fn render_repo(
    config: &RepoConfig,
    packages: &[&PackageXml],
    previous: Option<&RenderedRepo>,
) -> Result<RenderedRepo> {
    render_repo_chunked(config, packages, previous, DEFAULT_CHUNK_PACKAGES)
}

/// Packages per gzip member of a data file, on average ([`render_repo_chunked`]).
pub const DEFAULT_CHUNK_PACKAGES: u32 = 64;

/// [`render_repo`], with data files made of gzip members of about
/// `chunk_packages` packages each (1: one per package; 0: one member), cut
/// after the packages whose id hashes to a multiple of it, the header and
/// the footer each a member of their own. RFC 1952 allows members to be
/// concatenated, and zlib (librepo, libsolv: what dnf reads them with)
/// reads them all. A member of `previous` whose text is unchanged is
/// reused once it decompresses to exactly that text; a previous data file
/// without members (as a caller vouching for it gives) is reused whole
/// when its uncompressed checksum is the same.
pub fn render_repo_chunked(
    config: &RepoConfig,
    packages: &[&PackageXml],
    previous: Option<&RenderedRepo>,
    chunk_packages: u32,
) -> Result<RenderedRepo> {
    if config.dir.starts_with('/') || config.dir.ends_with('/') || config.dir.contains("..") {
        return Err(Error::BadInput {
            what: "yum repository".into(),
            detail: format!(
                "dir must be relative, without a trailing `/`, got {:?}",
                config.dir
            ),
        });
    }
    let mut pkgs: Vec<&PackageXml> = packages.to_vec();
    pkgs.sort_by(|a, b| (&a.nevra, &a.pkgid).cmp(&(&b.nevra, &b.pkgid)));
    pkgs.dedup_by(|a, b| a.pkgid == b.pkgid);
    let n = pkgs.len();

    let cut_after = |p: &PackageXml| match chunk_packages {
        0 => false,
        1 => true,
        n => {
            let d: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(p.pkgid.as_bytes()).into();
            let [a, b, c, d, ..] = d;
            u32::from_le_bytes([a, b, c, d]).is_multiple_of(n)
        }
    };
    let build = |open: String, part: fn(&PackageXml) -> &str, close: &str| {
        let size = open.len() + close.len() + pkgs.iter().map(|p| part(p).len()).sum::<usize>();
        let mut s = String::with_capacity(size);
        let mut cuts = Vec::new();
        s.push_str(&open);
        cuts.push(s.len());
        for p in &pkgs {
            s.push_str(part(p));
            if cut_after(p) {
                cuts.push(s.len());
            }
        }
        cuts.push(s.len());
        s.push_str(close);
        (s, cuts)
    };
    let texts = [
        (
            "primary",
            build(
                format!(
                    "{XML_DECL}<metadata xmlns=\"http://linux.duke.edu/metadata/common\" xmlns:rpm=\"http://linux.duke.edu/metadata/rpm\" packages=\"{n}\">\n"
                ),
                |p| &p.primary,
                "</metadata>",
            ),
        ),
        (
            "filelists",
            build(
                format!(
                    "{XML_DECL}<filelists xmlns=\"http://linux.duke.edu/metadata/filelists\" packages=\"{n}\">\n"
                ),
                |p| &p.filelists,
                "</filelists>",
            ),
        ),
        (
            "other",
            build(
                format!(
                    "{XML_DECL}<otherdata xmlns=\"http://linux.duke.edu/metadata/other\" packages=\"{n}\">\n"
                ),
                |p| &p.other,
                "</otherdata>",
            ),
        ),
    ];

    let data: Vec<Result<DataFile>> = std::thread::scope(|scope| {
        let handles: Vec<_> = texts
            .iter()
            .map(|(kind, (text, cuts))| {
                scope.spawn(move || {
                    let open_checksum = common::sha256_hex(text.as_bytes());
                    let reused = previous.into_iter().flat_map(|p| &p.data).find(|d| {
                        d.kind == *kind && d.chunks.is_empty() && d.open_checksum == open_checksum
                    });
                    if let Some(d) = reused {
                        return Ok(d.clone());
                    }
                    let earlier: Vec<chunked::Previous<'_>> = previous
                        .into_iter()
                        .flat_map(|p| &p.data)
                        .filter(|d| d.kind == *kind && !d.chunks.is_empty())
                        .map(|d| chunked::Previous {
                            gz: &d.gz,
                            xz: &[],
                            chunks: &d.chunks,
                            vouched: previous.is_some_and(|p| p.chunks_vouched),
                        })
                        .collect();
                    let out = chunked::compress(
                        &format!("{kind}.xml"),
                        text.as_bytes(),
                        cuts,
                        None,
                        &earlier,
                    )?;
                    let checksum = common::sha256_hex(&out.gz);
                    Ok(DataFile {
                        kind,
                        href: format!("repodata/{checksum}-{kind}.xml.gz"),
                        gz: Arc::from(out.gz),
                        checksum,
                        open_checksum,
                        open_size: text.len() as u64,
                        chunks: out.chunks,
                    })
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let data = data.into_iter().collect::<Result<Vec<_>>>()?;

    let ts = common::unix_secs(config.timestamp);
    let mut repomd = String::from(XML_DECL);
    repomd.push_str("<repomd xmlns=\"http://linux.duke.edu/metadata/repo\" xmlns:rpm=\"http://linux.duke.edu/metadata/rpm\">\n");
    let _ = writeln!(repomd, "  <revision>{ts}</revision>");
    for d in &data {
        let _ = writeln!(repomd, "  <data type=\"{}\">", d.kind);
        let _ = writeln!(
            repomd,
            "    <checksum type=\"sha256\">{}</checksum>",
            d.checksum
        );
        let _ = writeln!(
            repomd,
            "    <open-checksum type=\"sha256\">{}</open-checksum>",
            d.open_checksum
        );
        let _ = writeln!(repomd, "    <location href=\"{}\"/>", d.href);
        let _ = writeln!(repomd, "    <timestamp>{ts}</timestamp>");
        let _ = writeln!(repomd, "    <size>{}</size>", d.gz.len());
        let _ = writeln!(repomd, "    <open-size>{}</open-size>", d.open_size);
        repomd.push_str("  </data>\n");
    }
    repomd.push_str("</repomd>\n");
    Ok(RenderedRepo {
        dir: config.dir.clone(),
        data,
        repomd,
        chunks_vouched: false,
    })
}

/// An armored detached signature over `repomd.xml` (`repomd.xml.asc`),
/// dated `time` (or the key's creation time if later).
fn sign_repomd(repomd: &str, key: &keys::SecretKey, time: SystemTime) -> Result<Vec<u8>> {
    key.sign_detached(
        repomd.as_bytes(),
        time.max(key.created()),
        keys::Encoding::Armored,
    )
    .map_err(|source| Error::Sign {
        path: "repomd.xml.asc".into(),
        source,
    })
}

impl RenderedRepo {
    /// Signs `repomd.xml`: the bytes of `repomd.xml.asc`.
    pub fn sign(&self, key: &keys::SecretKey, time: SystemTime) -> Result<Vec<u8>> {
        sign_repomd(&self.repomd, key, time)
    }

    fn path(&self, rel: &str) -> String {
        if self.dir.is_empty() {
            rel.to_string()
        } else {
            format!("{}/{rel}", self.dir)
        }
    }

    /// Everything to write, in order: the data files (new names, since they
    /// are named by checksum, so invisible to clients of the old
    /// `repomd.xml`), then `repomd.xml.asc`, then `repomd.xml`.
    ///
    /// The pair `repomd.xml` + `.asc` cannot be replaced at once on either
    /// backend. Whichever goes first, a client that fetches one before and
    /// the other after the swap gets a mismatch and refuses (then retries):
    /// it never accepts a wrong repository. Writing `repomd.xml` last keeps
    /// the rule "the top file last".
    pub fn write_plan(&self, signature: &[u8]) -> WritePlan {
        let mut files: Vec<PlannedFile> = self
            .data
            .iter()
            .map(|d| PlannedFile {
                path: self.path(&d.href),
                bytes: d.gz.clone(),
                content_addressed: true,
            })
            .collect();
        files.push(PlannedFile {
            path: self.path("repodata/repomd.xml.asc"),
            bytes: Arc::from(signature),
            content_addressed: false,
        });
        files.push(PlannedFile {
            path: self.path("repodata/repomd.xml"),
            bytes: Arc::from(self.repomd.as_bytes()),
            content_addressed: false,
        });
        WritePlan { files }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evr_splits_like_createrepo_c() {
        assert_eq!(split_evr(""), None);
        assert_eq!(split_evr("1.2.0"), Some(("0", "1.2.0", None)));
        assert_eq!(split_evr("1.2.0-1"), Some(("0", "1.2.0", Some("1"))));
        assert_eq!(split_evr("2:1.0-3.el9"), Some(("2", "1.0", Some("3.el9"))));
    }

    #[test]
    fn requires_are_filtered_like_createrepo_c() {
        let pkg = RpmPackage {
            files: vec![RpmFile {
                path: "/usr/bin/x".into(),
                kind: FileKind::File,
            }],
            provides: vec![Dependency::new("x", 8, "1-1")],
            requires: vec![
                Dependency::new("rpmlib(CompressedFileNames)", 16777226, "3.0.4-1"),
                Dependency::new("/usr/bin/x", 0, ""),
                Dependency::new("x", 0, ""),
                Dependency::new("bash", 12, "4.0"),
                Dependency::new("bash", 12, "4.0"),
                Dependency::new("coreutils", 512, ""),
            ],
            ..Default::default()
        };
        let kept: Vec<_> = kept_requires(&pkg)
            .iter()
            .map(|d| d.name.as_str())
            .collect();
        assert_eq!(kept, ["bash", "coreutils"]);
    }

    #[test]
    fn unchanged_files_keep_their_compressed_bytes_and_plan_is_ordered() {
        let pkg = |name: &str| RpmPackage {
            name: name.into(),
            version: "1".into(),
            release: "1".into(),
            arch: "noarch".into(),
            sha256: common::sha256_hex(name.as_bytes()),
            location_href: format!("{name}.rpm"),
            ..Default::default()
        };
        let a = render_package(&pkg("a")).unwrap();
        let cfg = RepoConfig {
            dir: "yum/prod".into(),
            timestamp: SystemTime::UNIX_EPOCH,
        };
        let first = render_repo(&cfg, &[&a], None).unwrap();
        let again = render_repo(&cfg, &[&a, &a], Some(&first)).unwrap();
        assert_eq!(again, first, "the same package twice is listed once");
        // Its members are reused (checked to decompress to the same text):
        // the same bytes.
        for (x, y) in first.data.iter().zip(&again.data) {
            assert_eq!(x.gz, y.gz);
            assert_eq!(x.chunks.len(), 3, "header, the package, footer");
        }
        let plan = first.write_plan(b"sig");
        let paths: Vec<&str> = plan.files.iter().map(|f| f.path.as_str()).collect();
        assert!(paths[0].starts_with(&format!("yum/prod/{}", first.data[0].href)));
        assert!(paths[0].ends_with("-primary.xml.gz"));
        assert_eq!(
            &paths[3..],
            [
                "yum/prod/repodata/repomd.xml.asc",
                "yum/prod/repodata/repomd.xml"
            ]
        );
        // Data file names are their checksums.
        for d in &first.data {
            assert_eq!(d.checksum, common::sha256_hex(&d.gz));
            assert!(d.href.contains(&d.checksum));
        }
        let text = |d: &DataFile| {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&d.gz[..]), &mut s)
                .unwrap();
            s
        };
        assert!(text(&first.data[0]).contains("packages=\"1\""));
    }

    #[test]
    fn a_fragment_can_be_listed_elsewhere() {
        let pkg = RpmPackage {
            name: "hello".into(),
            version: "1.0".into(),
            release: "1".into(),
            arch: "noarch".into(),
            sha256: "ab".repeat(32),
            location_href: "../../pool/main/h/hello/hello-1.0-1.noarch.rpm".into(),
            ..Default::default()
        };
        let xml = render_package(&pkg).unwrap();
        let moved = xml
            .with_location("Packages/h/hello-1.0-1.noarch.rpm")
            .unwrap();
        let direct = render_package(&RpmPackage {
            location_href: "Packages/h/hello-1.0-1.noarch.rpm".into(),
            ..pkg.clone()
        })
        .unwrap();
        assert_eq!(moved, direct);
        for bad in ["", "/abs.rpm", "../x.rpm", "a//b.rpm", "a/./b.rpm"] {
            assert!(xml.with_location(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn escapes_and_file_kinds() {
        assert_eq!(esc("a<b>&\"c\"\u{1}"), "a&lt;b&gt;&amp;&quot;c&quot;");
        assert_eq!(FileKind::from_header(0o040755, 64), FileKind::Dir);
        assert_eq!(FileKind::from_header(0o100644, 64), FileKind::Ghost);
        assert_eq!(FileKind::from_header(0o100644, 1), FileKind::File);
    }
}
