//! apt repositories: `Packages` (plain, `.gz`, `.xz`) per component and
//! architecture, `Release` with `Acquire-By-Hash: yes`, `InRelease` and
//! `Release.gpg`, rendered from recorded control stanzas.
//!
//! Layout (paths relative to the repository root, the URL of a
//! `deb URL SUITE main` line):
//!
//! ```text
//! pool/main/h/hello/hello_1.2.0_all.deb            (written at publish, never here)
//! dists/SUITE/InRelease, Release, Release.gpg
//! dists/SUITE/COMPONENT/binary-ARCH/Packages{,.gz,.xz}
//! dists/SUITE/COMPONENT/binary-ARCH/by-hash/SHA256/<sha256 of each>
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::chunked;
use crate::common::{self, PlannedFile, WritePlan};
use crate::{Error, Result};

/// What the pipeline records for one `.deb` at publish time: everything its
/// `Packages` stanza needs, so no `.deb` is read again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DebPackage {
    /// The package's `control` file, as in the `.deb` (`dpkg-deb -f FILE`).
    pub control: String,
    /// Path of the `.deb` relative to the repository root, the `Filename`
    /// field: `pool/main/h/hello/hello_1.2.0_all.deb`.
    pub filename: String,
    /// Size of the `.deb` in bytes.
    pub size: u64,
    /// MD5 of the `.deb`, hex (apt still wants `MD5sum`).
    pub md5: String,
    /// SHA-1 of the `.deb`, hex, if recorded (optional for apt).
    pub sha1: Option<String>,
    /// SHA-256 of the `.deb`, hex: the hash apt verifies.
    pub sha256: String,
}

/// One package's rendered `Packages` stanza. Depends on the package only,
/// so the pipeline can cache it by the package's digest; a `Packages` file
/// is the concatenation of stanzas.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stanza {
    /// `Package` field.
    pub package: String,
    /// `Version` field.
    pub version: String,
    /// `Architecture` field (`all` goes into every architecture's index).
    pub architecture: String,
    /// `Filename` field (identifies the package file within the suite).
    pub filename: String,
    /// The stanza text: fields, one per line, ending with `\n`, no blank line.
    pub text: String,
}

/// Fields that describe the package file rather than its contents: any copy
/// in the recorded control text is stale, the recorded digests win.
const FILE_FIELDS: &[&str] = &["filename", "size", "md5sum", "sha1", "sha256", "sha512"];

/// Renders one package's stanza: the control fields in their order, with
/// `Filename`, `Size`, `MD5sum`, (`SHA1`,) `SHA256` inserted before
/// `Description` (where `apt-ftparchive` and dak put them).
///
/// Errors ([`Error::BadControl`]) if the control text has no `Package`,
/// `Version` or `Architecture`, a blank line (which would split the stanza),
/// or a line that is neither a field nor a continuation.
pub fn render_stanza(pkg: &DebPackage) -> Result<Stanza> {
    let who = || field_value(&pkg.control, "package").unwrap_or_else(|| pkg.filename.clone());
    let bad = |detail: String| Error::BadControl {
        package: who(),
        detail,
    };
    check_path(&pkg.filename).map_err(|d| bad(format!("Filename {d}")))?;
    let md5 = common::check_hex(&who(), "MD5sum", &pkg.md5, 32)?;
    let sha1 = match &pkg.sha1 {
        Some(s) => Some(common::check_hex(&who(), "SHA1", s, 40)?),
        None => None,
    };
    let sha256 = common::check_hex(&who(), "SHA256", &pkg.sha256, 64)?;

    let mut file_fields = format!(
        "Filename: {}\nSize: {}\nMD5sum: {md5}\n",
        pkg.filename, pkg.size
    );
    if let Some(sha1) = sha1 {
        let _ = writeln!(file_fields, "SHA1: {sha1}");
    }
    let _ = writeln!(file_fields, "SHA256: {sha256}");

    let body = pkg.control.trim_end_matches(['\n', '\r']);
    let mut text = String::with_capacity(body.len() + file_fields.len() + 2);
    let mut inserted = false;
    let mut skipping = false;
    for (n, line) in body.lines().enumerate() {
        if line.trim().is_empty() {
            return Err(bad(format!(
                "line {} is blank; a control stanza has no blank lines",
                n + 1
            )));
        }
        if line.starts_with([' ', '\t']) {
            if n == 0 {
                return Err(bad("line 1 is a continuation line".into()));
            }
            if !skipping {
                text.push_str(line);
                text.push('\n');
            }
            continue;
        }
        let Some((name, _)) = line.split_once(':') else {
            return Err(bad(format!(
                "line {} is not `Field: value`: {line:?}",
                n + 1
            )));
        };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(bad(format!("line {}: bad field name {name:?}", n + 1)));
        }
        let lower = name.to_ascii_lowercase();
        skipping = FILE_FIELDS.contains(&lower.as_str());
        if skipping {
            continue;
        }
        if lower == "description" && !inserted {
            text.push_str(&file_fields);
            inserted = true;
        }
        text.push_str(line.trim_end_matches('\r'));
        text.push('\n');
    }
    if !inserted {
        text.push_str(&file_fields);
    }
    let required = |f: &str| {
        field_value(&text, f)
            .filter(|v| !v.is_empty() && !v.contains(char::is_whitespace))
            .ok_or_else(|| bad(format!("no valid `{f}` field")))
    };
    Ok(Stanza {
        package: required("Package")?,
        version: required("Version")?,
        architecture: required("Architecture")?,
        filename: pkg.filename.clone(),
        text,
    })
}

/// The single-line value of `field` (case-insensitive) in a stanza.
fn field_value(stanza: &str, field: &str) -> Option<String> {
    stanza.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        (!l.starts_with([' ', '\t']) && name.eq_ignore_ascii_case(field))
            .then(|| value.trim().to_string())
    })
}

/// A repository-relative path: no newline, no leading `/`, no `..`.
fn check_path(p: &str) -> std::result::Result<(), String> {
    if p.is_empty()
        || p.starts_with('/')
        || p.chars().any(|c| c.is_control() || c == ' ')
        || p.split('/').any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Err(format!("{p:?} is not a relative path without spaces"));
    }
    Ok(())
}

/// Settings of one suite (`dists/SUITE`), usually one per environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SuiteConfig {
    /// `Suite`, and the directory under `dists/` (`prod`).
    pub suite: String,
    /// `Codename` (apt accepts a `deb` line naming either); default the suite.
    pub codename: String,
    /// `Origin` (apt pinning by `o=`).
    pub origin: String,
    /// `Label` (apt pinning by `l=`).
    pub label: String,
    /// `Description`, if any.
    pub description: Option<String>,
    /// Architectures offered (`amd64`, `arm64`, ...), in `Release` order.
    /// Empty: those of the packages. Never `all`: packages of architecture
    /// `all` are listed in every architecture's `Packages`.
    pub architectures: Vec<String>,
    /// Components offered, in `Release` order. Empty: those of the packages.
    pub components: Vec<String>,
    /// `Date`, also the signature time.
    pub date: SystemTime,
    /// `Valid-Until` is `date + valid_for` (default 7 days): a client refuses
    /// the suite after that, so a stale mirror cannot replay an old one; the
    /// suite must be re-signed before then (`pipe refresh`).
    pub valid_for: Duration,
    /// xz preset of `Packages.xz` (0-9, default 1). On a 5.3 MiB `Packages`
    /// (10,000 stanzas) preset 1 takes ~0.2 s and gives 0.8 MiB; preset 6
    /// (xz's default) ~2.8 s for 0.65 MiB. Promotions re-render on every
    /// move, so speed wins; apt reads any preset.
    pub xz_preset: u32,
    /// Stanzas per compressed chunk, on average (default 64; 1: every
    /// stanza its own chunk; 0: one chunk). `Packages.gz` and `Packages.xz`
    /// are made of chunks compressed on their own, cut after the stanzas
    /// whose file name hashes to a multiple of this, so adding or replacing
    /// a package changes one chunk, and the next generation recompresses
    /// only that one ([`render_suite`]'s `previous`).
    pub chunk_stanzas: u32,
}

impl SuiteConfig {
    /// A suite named `suite` dated `date`, with codename = suite, origin and
    /// label `pipe`, architecture and components from the packages, valid
    /// for 7 days, `Packages.xz` at xz preset 1.
    pub fn new(suite: impl Into<String>, date: SystemTime) -> SuiteConfig {
        let suite = suite.into();
        SuiteConfig {
            codename: suite.clone(),
            suite,
            origin: "pipe".into(),
            label: "pipe".into(),
            description: None,
            architectures: Vec::new(),
            components: Vec::new(),
            date,
            valid_for: Duration::from_secs(7 * 86_400),
            xz_preset: 1,
            chunk_stanzas: 64,
        }
    }
}

/// A package in a suite: its stanza and the component it is listed in.
#[derive(Clone, Copy, Debug)]
pub struct Entry<'a> {
    /// Component (`main`).
    pub component: &'a str,
    /// The package's rendered stanza (possibly from a cache).
    pub stanza: &'a Stanza,
}

/// One `COMPONENT/binary-ARCH` index: `Packages` and its compressed forms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexSet {
    /// `main/binary-amd64`, relative to the suite directory.
    pub dir: String,
    /// `Packages`.
    pub plain: Arc<[u8]>,
    /// `Packages.gz`.
    pub gz: Arc<[u8]>,
    /// `Packages.xz`.
    pub xz: Arc<[u8]>,
    /// The chunks `gz` and `xz` are made of, in order (empty: one piece,
    /// or an empty text).
    pub chunks: Vec<crate::Chunk>,
}

impl IndexSet {
    fn files(&self) -> [(&'static str, &Arc<[u8]>); 3] {
        [
            ("Packages", &self.plain),
            ("Packages.gz", &self.gz),
            ("Packages.xz", &self.xz),
        ]
    }
}

/// A rendered, not yet signed suite.
#[derive(Clone, Debug)]
pub struct RenderedSuite {
    /// `dists/SUITE`.
    pub suite_dir: String,
    /// The `Release` text.
    pub release: String,
    /// Every `COMPONENT/binary-ARCH` index, sorted by directory.
    pub indices: Vec<IndexSet>,
    /// Chunks taken from `previous` instead of being compressed again.
    pub reused_chunks: usize,
    /// Chunks compressed.
    pub compressed_chunks: usize,
    /// Set by a caller that passes this rendering as `previous` to
    /// [`render_suite`] and vouches for its chunk tables (it checked a
    /// signature of the repository's key over them and over the digests of
    /// the `.gz` and `.xz` files they describe, and the files have those
    /// digests): its chunks are then reused without being decompressed.
    /// Otherwise each is reused only once it decompresses to the new text.
    pub chunks_vouched: bool,
}

/// Two renderings are equal when they have the same files: how many
/// chunks each compressed is not part of it.
impl PartialEq for RenderedSuite {
    fn eq(&self, other: &Self) -> bool {
        self.suite_dir == other.suite_dir
            && self.release == other.release
            && self.indices == other.indices
    }
}

impl Eq for RenderedSuite {}

/// `InRelease` and `Release.gpg` for one `Release` text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedRelease {
    /// `InRelease`: the `Release` text clearsigned.
    pub in_release: Vec<u8>,
    /// `Release.gpg`: an armored detached signature over `Release`.
    pub(crate) release_gpg: Vec<u8>,
}

/// Clearsigns a `Release` text into `InRelease`, dated `time` (or the key's
/// creation time if that is later, as a signature cannot predate its key).
fn sign_in_release(release: &str, key: &keys::SecretKey, time: SystemTime) -> Result<Vec<u8>> {
    key.clearsign(release.as_bytes(), time.max(key.created()))
        .map_err(|source| Error::Sign {
            path: "InRelease".into(),
            source,
        })
}

/// An armored detached signature over a `Release` text (`Release.gpg`).
fn sign_release_gpg(release: &str, key: &keys::SecretKey, time: SystemTime) -> Result<Vec<u8>> {
    key.sign_detached(
        release.as_bytes(),
        time.max(key.created()),
        keys::Encoding::Armored,
    )
    .map_err(|source| Error::Sign {
        path: "Release.gpg".into(),
        source,
    })
}

/// Renders a suite from its packages' stanzas.
///
/// `previous`, the last rendering of this suite (or any), lets unchanged
/// indices keep their compressed bytes: a `Packages` text whose digest is
/// the same as one there is not compressed again. Indices are compressed
/// in parallel.
///
/// Within a `Packages` file, stanzas are sorted by package, architecture,
/// version and filename, so the output does not depend on input order.
/// Errors: a package whose component or architecture is not offered by the
/// config, two different files for the same package, version and
/// architecture in one component, a bad config value.
pub fn render_suite(
    config: &SuiteConfig,
    packages: &[Entry<'_>],
    previous: Option<&RenderedSuite>,
) -> Result<RenderedSuite> {
    let bad = |detail: String| Error::BadInput {
        what: format!("suite {}", config.suite),
        detail,
    };
    for (name, v) in [
        ("Suite", &config.suite),
        ("Codename", &config.codename),
        ("Origin", &config.origin),
        ("Label", &config.label),
    ] {
        if v.is_empty() || v.contains(['\n', '\r']) {
            return Err(bad(format!("{name} must be one non-empty line, got {v:?}")));
        }
    }
    if config
        .description
        .as_deref()
        .is_some_and(|d| d.contains(['\n', '\r']))
    {
        return Err(bad("Description must be one line".into()));
    }
    check_path(&config.suite).map_err(|d| bad(format!("Suite {d}")))?;

    let architectures = pick(
        &config.architectures,
        packages
            .iter()
            .map(|e| e.stanza.architecture.as_str())
            .filter(|a| *a != "all"),
    );
    let components = pick(&config.components, packages.iter().map(|e| e.component));
    if architectures.is_empty() {
        return Err(bad(
            "no architecture: set one, packages of architecture all alone do not name one".into(),
        ));
    }
    if components.is_empty() {
        return Err(bad("no component".into()));
    }
    for word in architectures.iter().chain(&components) {
        if word == "all" && architectures.contains(word) {
            return Err(bad(
                "`all` is not an architecture of a suite; its packages go into every architecture"
                    .into(),
            ));
        }
        check_path(word).map_err(|d| bad(format!("component or architecture {d}")))?;
        if word.contains('/') {
            return Err(bad(format!("{word:?} contains a `/`")));
        }
    }

    // component -> arch ("all" included) -> (package, arch, version, filename) -> stanza
    type Key<'s> = (&'s str, &'s str, &'s str, &'s str);
    let mut by_comp: BTreeMap<&str, BTreeMap<Key<'_>, &Stanza>> = BTreeMap::new();
    let mut seen: HashMap<(&str, &str, &str, &str), &str> = HashMap::with_capacity(packages.len());
    for e in packages {
        let s = e.stanza;
        if !components.iter().any(|c| c == e.component) {
            return Err(bad(format!(
                "{} is in component {}, which the suite does not offer",
                s.filename, e.component
            )));
        }
        if s.architecture != "all" && !architectures.contains(&s.architecture) {
            return Err(bad(format!(
                "{} is for architecture {}, which the suite does not offer",
                s.filename, s.architecture
            )));
        }
        let id = (
            e.component,
            s.package.as_str(),
            s.version.as_str(),
            s.architecture.as_str(),
        );
        if let Some(other) = seen.insert(id, s.filename.as_str())
            && other != s.filename
        {
            return Err(bad(format!(
                "{} {} ({}) is listed twice in {}: {other} and {}; a version cannot name two files",
                s.package, s.version, s.architecture, e.component, s.filename
            )));
        }
        by_comp
            .entry(e.component)
            .or_default()
            .insert((&s.package, &s.architecture, &s.version, &s.filename), s);
    }

    // Plain texts (with where their chunks end), then compression of the
    // chunks not seen before.
    let chunk = config.chunk_stanzas;
    let cuts_after = |s: &Stanza| match chunk {
        0 => false,
        1 => true,
        n => {
            let h = hash_prefix(s.filename.as_bytes());
            h.is_multiple_of(n)
        }
    };
    let mut plains: Vec<(String, Arc<[u8]>)> = Vec::new();
    let mut all_cuts: Vec<Arc<[usize]>> = Vec::new();
    for comp in &components {
        let entries = by_comp.get(comp.as_str());
        // A component of packages of architecture `all` only lists the same
        // text under every architecture: made (and later hashed) once.
        let only_all = entries
            .into_iter()
            .flatten()
            .all(|((_, a, _, _), _)| *a == "all");
        let mut shared: Option<SharedText> = None;
        for arch in &architectures {
            if let (true, Some((text, cuts))) = (only_all, &shared) {
                plains.push((format!("{comp}/binary-{arch}"), text.clone()));
                all_cuts.push(cuts.clone());
                continue;
            }
            let mut text = Vec::new();
            let mut cuts = Vec::new();
            let mut cut_next = false;
            for ((_, a, _, _), s) in entries.into_iter().flatten() {
                if *a == arch || *a == "all" {
                    if !text.is_empty() {
                        text.push(b'\n');
                        if cut_next {
                            cuts.push(text.len());
                        }
                    }
                    text.extend_from_slice(s.text.as_bytes());
                    cut_next = cuts_after(s);
                }
            }
            let (text, cuts): (Arc<[u8]>, Arc<[usize]>) = (text.into(), cuts.into());
            if only_all {
                shared = Some((text.clone(), cuts.clone()));
            }
            plains.push((format!("{comp}/binary-{arch}"), text));
            all_cuts.push(cuts);
        }
    }
    // A previous index of the very same text (a refresh) is taken whole:
    // the caller vouches for a previous rendering that carries its plain
    // text. Otherwise chunks are reused, each only once it decompresses to
    // the new chunk's text.
    let mut known: HashMap<String, Compressed> = HashMap::new();
    for set in previous.into_iter().flat_map(|p| &p.indices) {
        if !set.plain.is_empty() {
            known.insert(
                common::sha256_hex(&set.plain),
                (set.gz.clone(), set.xz.clone(), set.chunks.clone()),
            );
        }
    }
    let earlier: Vec<chunked::Previous<'_>> = previous
        .into_iter()
        .flat_map(|p| &p.indices)
        .filter(|set| !set.chunks.is_empty())
        .map(|set| chunked::Previous {
            gz: &set.gz,
            xz: &set.xz,
            chunks: &set.chunks,
            vouched: previous.is_some_and(|p| p.chunks_vouched),
        })
        .collect();
    // Shared texts are hashed once.
    let mut text_sums: HashMap<(usize, usize), String> = HashMap::new();
    let digests: Vec<String> = plains
        .iter()
        .map(|(_, t)| {
            text_sums
                .entry((t.as_ptr() as usize, t.len()))
                .or_insert_with(|| common::sha256_hex(t))
                .clone()
        })
        .collect();
    let mut todo: BTreeMap<&str, (&str, &[u8], &[usize])> = BTreeMap::new();
    for (((dir, text), d), cuts) in plains.iter().zip(&digests).zip(&all_cuts) {
        if !known.contains_key(d) {
            todo.entry(d.as_str())
                .or_insert((dir.as_str(), &text[..], &cuts[..]));
        }
    }
    let preset = config.xz_preset.min(9);
    let (mut reused_chunks, mut compressed_chunks) = (0, 0);
    for (d, (dir, text, cuts)) in todo {
        let out = chunked::compress(
            &format!("{dir}/Packages"),
            text,
            cuts,
            Some(preset),
            &earlier,
        )?;
        reused_chunks += out.reused;
        compressed_chunks += out.chunks.len() - out.reused;
        known.insert(
            d.to_string(),
            (Arc::from(out.gz), Arc::from(out.xz), out.chunks),
        );
    }
    // Indices of the same text (architectures of `all` packages only)
    // share their bytes: each distinct file is hashed once below.
    let mut shared: HashMap<&str, Arc<[u8]>> = HashMap::new();
    let mut indices: Vec<IndexSet> = plains
        .into_iter()
        .zip(&digests)
        .map(|((dir, text), d)| {
            let (gz, xz, chunks) = known.get(d).cloned().ok_or_else(|| Error::BadInput {
                what: format!("{dir}/Packages"),
                detail: format!("no compressed index was made for its text (sha256 {d})"),
            })?;
            let plain = shared.entry(d.as_str()).or_insert(text).clone();
            Ok(IndexSet {
                dir,
                plain,
                gz,
                xz,
                chunks,
            })
        })
        .collect::<Result<_>>()?;
    indices.sort_by(|a, b| a.dir.cmp(&b.dir));

    // Release.
    let mut files: Vec<(String, String, String, usize)> = Vec::new();
    let mut sums = Sums::default();
    for set in &indices {
        for (name, bytes) in set.files() {
            let (md5, sha256) = sums.of(bytes);
            files.push((format!("{}/{name}", set.dir), md5, sha256, bytes.len()));
        }
    }
    files.sort();
    let width = files
        .iter()
        .map(|f| f.3.to_string().len())
        .max()
        .unwrap_or(1);
    let mut release = String::new();
    let _ = writeln!(release, "Origin: {}", config.origin);
    let _ = writeln!(release, "Label: {}", config.label);
    let _ = writeln!(release, "Suite: {}", config.suite);
    let _ = writeln!(release, "Codename: {}", config.codename);
    let _ = writeln!(release, "Date: {}", common::rfc2822_utc(config.date));
    let _ = writeln!(
        release,
        "Valid-Until: {}",
        common::rfc2822_utc(config.date + config.valid_for)
    );
    let _ = writeln!(release, "Architectures: {}", architectures.join(" "));
    let _ = writeln!(release, "Components: {}", components.join(" "));
    if let Some(d) = &config.description {
        let _ = writeln!(release, "Description: {d}");
    }
    let _ = writeln!(release, "Acquire-By-Hash: yes");
    release.push_str("MD5Sum:\n");
    for (path, md5, _, size) in &files {
        let _ = writeln!(release, " {md5} {size:>width$} {path}");
    }
    release.push_str("SHA256:\n");
    for (path, _, sha, size) in &files {
        let _ = writeln!(release, " {sha} {size:>width$} {path}");
    }
    Ok(RenderedSuite {
        suite_dir: format!("dists/{}", config.suite),
        release,
        indices,
        reused_chunks,
        compressed_chunks,
        chunks_vouched: false,
    })
}

impl RenderedSuite {
    /// The SHA-256 of each index's `Packages`, `Packages.gz` and
    /// `Packages.xz`, by directory (files shared between indices hashed
    /// once).
    pub fn sha256s(&self) -> Vec<(String, [String; 3])> {
        let mut sums = Sums::default();
        self.indices
            .iter()
            .map(|s| {
                (
                    s.dir.clone(),
                    [&s.plain, &s.gz, &s.xz].map(|b| sums.sha256(b)),
                )
            })
            .collect()
    }
}

/// Digests of index files, each computed once per distinct buffer (the
/// indices of several architectures share theirs).
#[derive(Default)]
struct Sums {
    md5: HashMap<(usize, usize), String>,
    sha256: HashMap<(usize, usize), String>,
}

impl Sums {
    fn id(bytes: &Arc<[u8]>) -> (usize, usize) {
        (bytes.as_ptr() as usize, bytes.len())
    }

    fn sha256(&mut self, bytes: &Arc<[u8]>) -> String {
        self.sha256
            .entry(Self::id(bytes))
            .or_insert_with(|| common::sha256_hex(bytes))
            .clone()
    }

    fn of(&mut self, bytes: &Arc<[u8]>) -> (String, String) {
        let md5 = self
            .md5
            .entry(Self::id(bytes))
            .or_insert_with(|| common::md5_hex(bytes))
            .clone();
        (md5, self.sha256(bytes))
    }
}

/// One `Packages` text and where its chunks end, shared between the
/// architectures of a component of `all` packages.
type SharedText = (Arc<[u8]>, Arc<[usize]>);

/// `Packages.gz` and `Packages.xz` of one `Packages` text, and their chunks.
type Compressed = (Arc<[u8]>, Arc<[u8]>, Vec<crate::Chunk>);

/// The first four bytes of the SHA-256 of `bytes`, as a number: where
/// chunks end (any stable hash would do; SHA-256 is at hand).
fn hash_prefix(bytes: &[u8]) -> u32 {
    let d: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(bytes).into();
    let [a, b, c, d, ..] = d;
    u32::from_le_bytes([a, b, c, d])
}

/// The configured list in its order, or else the sorted distinct values seen.
fn pick<'a>(configured: &[String], seen: impl Iterator<Item = &'a str>) -> Vec<String> {
    if !configured.is_empty() {
        return configured.to_vec();
    }
    seen.collect::<BTreeSet<_>>()
        .into_iter()
        .map(str::to_string)
        .collect()
}

impl RenderedSuite {
    /// Signs the `Release` text: `InRelease` and `Release.gpg`.
    pub fn sign(&self, key: &keys::SecretKey, time: SystemTime) -> Result<SignedRelease> {
        Ok(SignedRelease {
            in_release: sign_in_release(&self.release, key, time)?,
            release_gpg: sign_release_gpg(&self.release, key, time)?,
        })
    }

    /// The `by-hash/SHA256/<digest>` copies, as (path, bytes), relative to
    /// the repository root. Earlier generations' copies must stay for a
    /// grace period: a client holding the previous `InRelease` fetches them.
    pub fn by_hash(&self) -> Vec<PlannedFile> {
        let mut out = Vec::new();
        let mut sums = Sums::default();
        for set in &self.indices {
            for (_, bytes) in set.files() {
                out.push(PlannedFile {
                    path: format!(
                        "{}/{}/by-hash/SHA256/{}",
                        self.suite_dir,
                        set.dir,
                        sums.sha256(bytes)
                    ),
                    bytes: bytes.clone(),
                    content_addressed: true,
                });
            }
        }
        out
    }

    /// Everything to write, in order: by-hash copies, the plain index files,
    /// `Release`, `Release.gpg`, and `InRelease` last (what apt fetches
    /// first). A client that fetched the old `InRelease` fetches indices by
    /// hash and never sees the new plain files; a client that gets the new
    /// `InRelease` finds all it names already in place.
    pub fn write_plan(&self, signed: &SignedRelease) -> WritePlan {
        let mut files = self.by_hash();
        for set in &self.indices {
            for (name, bytes) in set.files() {
                files.push(PlannedFile {
                    path: format!("{}/{}/{name}", self.suite_dir, set.dir),
                    bytes: bytes.clone(),
                    content_addressed: false,
                });
            }
        }
        let top = |name: &str, bytes: &[u8]| PlannedFile {
            path: format!("{}/{name}", self.suite_dir),
            bytes: Arc::from(bytes),
            content_addressed: false,
        };
        files.push(top("Release", self.release.as_bytes()));
        files.push(top("Release.gpg", &signed.release_gpg));
        files.push(top("InRelease", &signed.in_release));
        WritePlan { files }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deb(name: &str, version: &str, arch: &str) -> DebPackage {
        DebPackage {
            control: format!(
                "Package: {name}\nVersion: {version}\nArchitecture: {arch}\nMaintainer: M <m@example.invalid>\nInstalled-Size: 1\nSize: 999\nDescription: greets\n long line one\n .\n more\n"
            ),
            filename: format!(
                "pool/main/{}/{name}/{name}_{version}_{arch}.deb",
                &name[..1]
            ),
            size: 1234,
            md5: "0".repeat(32),
            sha1: None,
            sha256: "a".repeat(64),
        }
    }

    #[test]
    fn stanza_inserts_file_fields_before_description_and_drops_stale_ones() {
        let s = render_stanza(&deb("hello", "1.0", "all")).unwrap();
        assert_eq!(
            s.text,
            format!(
                "Package: hello\nVersion: 1.0\nArchitecture: all\nMaintainer: M <m@example.invalid>\nInstalled-Size: 1\nFilename: pool/main/h/hello/hello_1.0_all.deb\nSize: 1234\nMD5sum: {}\nSHA256: {}\nDescription: greets\n long line one\n .\n more\n",
                "0".repeat(32),
                "a".repeat(64)
            )
        );
        assert_eq!(
            (
                s.package.as_str(),
                s.version.as_str(),
                s.architecture.as_str()
            ),
            ("hello", "1.0", "all")
        );
    }

    #[test]
    fn stanza_rejects_blank_lines_and_missing_fields() {
        let mut p = deb("a", "1", "amd64");
        p.control = "Package: a\n\nVersion: 1\nArchitecture: amd64\n".into();
        assert!(matches!(render_stanza(&p), Err(Error::BadControl { .. })));
        p.control = "Package: a\nArchitecture: amd64\n".into();
        let e = render_stanza(&p).unwrap_err().to_string();
        assert!(e.contains("Version"), "{e}");
        p.control = "Package: a\nVersion: 1\nArchitecture: amd64\n".into();
        p.sha256 = "xyz".into();
        assert!(matches!(render_stanza(&p), Err(Error::BadInput { .. })));
    }

    #[test]
    fn all_goes_to_every_architecture_and_release_lists_every_file() {
        let pkgs = [
            deb("a", "1", "all"),
            deb("b", "2", "amd64"),
            deb("c", "3", "arm64"),
        ];
        let stanzas: Vec<Stanza> = pkgs.iter().map(|p| render_stanza(p).unwrap()).collect();
        let entries: Vec<Entry> = stanzas
            .iter()
            .map(|s| Entry {
                component: "main",
                stanza: s,
            })
            .collect();
        let cfg = SuiteConfig::new(
            "prod",
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_481_137),
        );
        let suite = render_suite(&cfg, &entries, None).unwrap();
        assert_eq!(suite.indices.len(), 2);
        let amd64 = std::str::from_utf8(&suite.indices[0].plain).unwrap();
        assert!(
            amd64.starts_with("Package: a\n")
                && amd64.contains("\n\nPackage: b\n")
                && !amd64.contains("Package: c")
        );
        assert!(amd64.ends_with('\n') && !amd64.ends_with("\n\n"));
        let r = &suite.release;
        assert!(
            r.contains("Architectures: amd64 arm64\nComponents: main\n"),
            "{r}"
        );
        assert!(
            r.contains("Valid-Until: Tue, 01 Dec 2026 00:45:37 UTC\n"),
            "{r}"
        );
        assert!(r.contains("Acquire-By-Hash: yes\n"));
        for f in ["Packages", "Packages.gz", "Packages.xz"] {
            assert!(r.contains(&format!(" main/binary-arm64/{f}\n")), "{r}");
        }
        // Same input in another order: same bytes; reuse gives the same result.
        let mut rev = entries.clone();
        rev.reverse();
        assert_eq!(render_suite(&cfg, &rev, None).unwrap(), suite);
        assert_eq!(render_suite(&cfg, &entries, Some(&suite)).unwrap(), suite);
    }

    #[test]
    fn unchanged_indices_keep_their_compressed_bytes() {
        let a = render_stanza(&deb("a", "1", "all")).unwrap();
        let b1 = render_stanza(&deb("b", "1", "amd64")).unwrap();
        let b2 = render_stanza(&deb("b", "2", "amd64")).unwrap();
        let mut cfg = SuiteConfig::new("prod", SystemTime::UNIX_EPOCH);
        cfg.architectures = vec!["amd64".into(), "arm64".into()];
        let e = |s| Entry {
            component: "main",
            stanza: s,
        };
        let first = render_suite(&cfg, &[e(&a), e(&b1)], None).unwrap();
        let second = render_suite(&cfg, &[e(&a), e(&b2)], Some(&first)).unwrap();
        // amd64 changed and was compressed again; arm64 (only `a`) was not.
        assert!(!Arc::ptr_eq(&first.indices[0].xz, &second.indices[0].xz));
        assert!(Arc::ptr_eq(&first.indices[1].xz, &second.indices[1].xz));
        assert!(Arc::ptr_eq(&first.indices[1].gz, &second.indices[1].gz));
        // And the result is what a cold rendering gives.
        assert_eq!(second, render_suite(&cfg, &[e(&a), e(&b2)], None).unwrap());
        // The plan: by-hash copies, plain files, Release, Release.gpg, InRelease.
        let signed = SignedRelease {
            in_release: b"i".to_vec(),
            release_gpg: b"g".to_vec(),
        };
        let plan = second.write_plan(&signed);
        let paths: Vec<&str> = plan.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths.len(), 6 + 6 + 3);
        assert!(paths[..6].iter().all(|p| p.contains("/by-hash/SHA256/")));
        assert!(plan.files[..6].iter().all(|f| f.content_addressed));
        assert_eq!(paths[6], "dists/prod/main/binary-amd64/Packages");
        assert_eq!(
            &paths[12..],
            [
                "dists/prod/Release",
                "dists/prod/Release.gpg",
                "dists/prod/InRelease"
            ]
        );
    }

    #[test]
    fn a_version_cannot_name_two_files() {
        let a = render_stanza(&deb("a", "1", "amd64")).unwrap();
        let mut b = a.clone();
        b.filename = "pool/other.deb".into();
        let cfg = SuiteConfig::new("prod", SystemTime::UNIX_EPOCH);
        let e = render_suite(
            &cfg,
            &[
                Entry {
                    component: "main",
                    stanza: &a,
                },
                Entry {
                    component: "main",
                    stanza: &b,
                },
            ],
            None,
        );
        assert!(e.unwrap_err().to_string().contains("listed twice"));
    }
}
