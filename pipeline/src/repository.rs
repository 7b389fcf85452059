//! The consumer views of each environment: the apt suite `dists/ENV` and the
//! yum repository `yum/ENV`, regenerated from the environment's pointer.
//!
//! The store root is the repository root a web server (or the S3 endpoint)
//! serves:
//!
//! - `pool/main/<l>/<package>/<artifact>`: every published package, once. It
//!   is a hard link or server-side copy of the package's blob, made at
//!   publish, so no promotion moves package bytes;
//! - `dists/ENV/…`: the apt suite (`deb … ENV main`);
//! - `yum/ENV/repodata/…`: the yum repository (`baseurl=…/yum/ENV`);
//! - `yum/ENV/Packages/<l>/<artifact>`: every package that repository
//!   lists, under its base URL, so a mirror that copies a repository by its
//!   base URL (`dnf reposync`, Pulp, Artifactory) gets all of it. Each is a
//!   hard link or server-side copy of the package's blob, made when the
//!   package is new to the environment; like replaced index files, one the
//!   environment no longer lists goes after the grace period;
//! - `builds/<id>/index.json`: what the indices need of every package of a
//!   build (control stanza, rpm header fields, file list), recorded at
//!   publish, so a regeneration reads no package;
//! - `repo-state/ENV.json`: what the repositories of ENV were generated
//!   from, and the index files of replaced generations with the time they
//!   were replaced; they are deleted once the grace period has passed, so a
//!   client that fetched the old `InRelease` a moment before still finds
//!   every file it names.
//!
//! A regeneration writes content-addressed files first (apt `by-hash`, yum
//! checksum-named data), then apt's plain index files, then the signed top
//! files: a reader sees the old complete repository or the new one.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Instant, SystemTime};

use futures::{StreamExt, TryStreamExt};
use keys::SecretKey;
use md5::{Digest, Md5};
use repo_index::{PlannedFile, apt, yum};
use serde::{Deserialize, Serialize};

use crate::build::packages::Artifact;
use crate::build::record::Manifest;
use crate::model::Pipeline;
use crate::publish::{build_key, published_manifest};
use crate::store::{Body, Condition, Store, digest::spawn_blocking};
use crate::{Error, Result, fault};

/// `builds/<id>/index.json`, also in the local build directory.
pub const INDEX_FILE: &str = crate::build::files::INDEX;
const INDEX_FORMAT: u32 = 1;
/// The one apt component pipe publishes.
pub const COMPONENT: &str = "main";

/// What the indices need of every package of one build.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BuildIndex {
    /// Format of this record.
    pub format: u32,
    /// Every .deb.
    pub debs: Vec<IndexedDeb>,
    /// Every .rpm.
    pub rpms: Vec<IndexedRpm>,
}

/// A .deb's rendered `Packages` stanza.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IndexedDeb {
    /// Artifact file name.
    pub artifact: String,
    /// SHA-256 of the file, as in the build manifest.
    pub sha256: String,
    /// The stanza.
    pub stanza: apt::Stanza,
}

/// An .rpm's rendered `primary`/`filelists`/`other` fragments.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IndexedRpm {
    /// Artifact file name.
    pub artifact: String,
    /// SHA-256 of the file, as in the build manifest.
    pub sha256: String,
    /// The fragments.
    pub xml: yum::PackageXml,
}

/// Where an artifact lives in the pool, relative to the repository root:
/// `pool/main/h/hello/hello_1.2.0_amd64.deb` (`lib` packages under their
/// first four letters, as Debian's archive does).
pub fn pool_key(artifact: &Artifact) -> String {
    let package = artifact
        .component
        .strip_prefix("package ")
        .unwrap_or(&artifact.component);
    let fan = if package.starts_with("lib") && package.len() > 3 {
        &package[..4]
    } else {
        package.get(..1).unwrap_or("_")
    };
    format!("pool/{COMPONENT}/{fan}/{package}/{}", artifact.name)
}

/// The yum repository of `env`, relative to the repository root.
pub fn yum_dir(env: &str) -> String {
    format!("yum/{env}")
}

/// Where a yum repository lists the .rpm `artifact`, relative to its base
/// URL: `Packages/h/hello-1.2.0-1.x86_64.rpm` (the layout of Fedora's
/// repositories).
pub fn yum_package_href(artifact: &str) -> String {
    let fan = artifact
        .chars()
        .next()
        .map_or('_', |c| c.to_ascii_lowercase());
    format!("Packages/{fan}/{artifact}")
}

fn state_key(env: &str) -> String {
    format!("repo-state/{env}.json")
}

/// One package's part of a [`BuildIndex`]. The package stage records it
/// with the artifact (and caches it with the stage), so a build that reuses
/// cached packages reads none of them again.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Fragment {
    /// A .deb.
    Deb(IndexedDeb),
    /// An .rpm.
    Rpm(Box<IndexedRpm>),
}

impl BuildIndex {
    /// The index of a build made of these packages, in their order.
    pub fn from_fragments<'a>(fragments: impl IntoIterator<Item = &'a Fragment>) -> BuildIndex {
        let mut index = BuildIndex {
            format: INDEX_FORMAT,
            debs: Vec::new(),
            rpms: Vec::new(),
        };
        for f in fragments {
            match f {
                Fragment::Deb(d) => index.debs.push(d.clone()),
                Fragment::Rpm(r) => index.rpms.push((**r).clone()),
            }
        }
        index
    }
}

/// Records what the indices need of every package of the build in `dir`
/// (a `.pipe/builds/<id>/` directory), reading each package's control or
/// header, on all cores. Blocking. For builds made before the package stage
/// recorded its [`Fragment`].
pub fn record(dir: &Path, manifest: &Manifest) -> Result<BuildIndex> {
    let artifacts: Vec<&Artifact> = manifest
        .artifacts
        .iter()
        .filter(|a| a.kind == "deb" || a.kind == "rpm")
        .collect();
    let next = AtomicUsize::new(0);
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(artifacts.len().max(1));
    let mut done: Vec<(usize, Result<Fragment>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(a) = artifacts.get(i) else { break };
                        let path = dir.join(&a.name);
                        out.push((i, fragment(&path, a, manifest.source_date_epoch)));
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("recording thread panicked"))
            .collect()
    });
    done.sort_by_key(|(i, _)| *i);
    let fragments = done
        .into_iter()
        .map(|(_, f)| f)
        .collect::<Result<Vec<_>>>()?;
    Ok(BuildIndex::from_fragments(&fragments))
}

/// What the indices need of the package `a` at `path` (a .deb's control
/// text, an .rpm's header), rendered. `file_time` is the time yum lists for
/// the file: the build's timestamp, so the index is reproducible. Blocking.
pub fn fragment(path: &Path, a: &Artifact, file_time: u64) -> Result<Fragment> {
    Ok(match a.kind.as_str() {
        "deb" => Fragment::Deb(IndexedDeb {
            artifact: a.name.clone(),
            sha256: a.blob.sha256.clone(),
            stanza: apt::render_stanza(&record_deb(path, a)?)?,
        }),
        _ => Fragment::Rpm(Box::new(IndexedRpm {
            artifact: a.name.clone(),
            sha256: a.blob.sha256.clone(),
            xml: yum::render_package(&record_rpm(path, a, file_time)?)?,
        })),
    })
}

fn record_deb(path: &Path, a: &Artifact) -> Result<apt::DebPackage> {
    let control = stages::deb::DebReader::open(path)?.control()?;
    // apt checks MD5sum too; it is the one digest the store does not keep.
    let mut md5 = Md5::new();
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = std::io::Read::read(&mut f, &mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        md5.update(&buf[..n]);
    }
    Ok(apt::DebPackage {
        control,
        filename: pool_key(a),
        size: a.blob.size,
        md5: hex::encode(md5.finalize()),
        sha1: None,
        sha256: a.blob.sha256.clone(),
    })
}

fn record_rpm(path: &Path, a: &Artifact, file_time: u64) -> Result<yum::RpmPackage> {
    let bad = |e: rpm::Error| {
        Error::Stage(stages::Error::BadPackage {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    };
    let meta = rpm::PackageMetadata::open(path).map_err(bad)?;
    let text = |r: std::result::Result<&str, rpm::Error>| r.map(str::to_string).unwrap_or_default();
    let deps = |r: std::result::Result<Vec<rpm::Dependency>, rpm::Error>| {
        r.unwrap_or_default()
            .into_iter()
            .map(|d| yum::Dependency::new(d.name, d.flags.bits(), d.version))
            .collect::<Vec<_>>()
    };
    let h = &meta.header;
    let paths = meta.get_file_paths().map_err(bad)?;
    let modes = h
        .get_entry_data_as_u16_array(rpm::IndexTag::RPMTAG_FILEMODES)
        .unwrap_or_default();
    let flags = h
        .get_entry_data_as_u32_array(rpm::IndexTag::RPMTAG_FILEFLAGS)
        .unwrap_or_default();
    let files = paths
        .iter()
        .enumerate()
        .map(|(i, p)| yum::RpmFile {
            path: p.to_string_lossy().into_owned(),
            kind: yum::FileKind::from_header(
                modes.get(i).copied().unwrap_or(0o100644).into(),
                flags.get(i).copied().unwrap_or(0),
            ),
        })
        .collect();
    let changelogs = meta
        .get_changelog_entries()
        .unwrap_or_default()
        .into_iter()
        .map(|c| yum::ChangelogEntry {
            author: c.name,
            date: c.timestamp,
            text: c.description,
        })
        .collect();
    let sig = &meta.signature;
    let archive_size = sig
        .get_entry_data_as_u64(rpm::IndexSignatureTag::RPMSIGTAG_LONGARCHIVESIZE)
        .or_else(|_| {
            sig.get_entry_data_as_u32(rpm::IndexSignatureTag::RPMSIGTAG_PAYLOADSIZE)
                .map(u64::from)
        })
        .or_else(|_| h.get_entry_data_as_u64(rpm::IndexTag::RPMTAG_PAYLOADSIZE))
        .or_else(|_| {
            h.get_entry_data_as_u32(rpm::IndexTag::RPMTAG_PAYLOADSIZE)
                .map(u64::from)
        })
        .unwrap_or(0);
    let offsets = meta.get_package_segment_offsets();
    Ok(yum::RpmPackage {
        name: meta.get_name().map_err(bad)?.to_string(),
        epoch: meta.get_epoch().map_or(0, u64::from),
        version: meta.get_version().map_err(bad)?.to_string(),
        release: meta.get_release().map_err(bad)?.to_string(),
        arch: meta.get_arch().map_err(bad)?.to_string(),
        summary: text(meta.get_summary()),
        description: text(meta.get_description()),
        url: meta
            .get_url()
            .ok()
            .filter(|u| !u.is_empty())
            .map(str::to_string),
        license: text(meta.get_license()),
        vendor: text(meta.get_vendor()),
        group: text(meta.get_group()),
        packager: text(meta.get_packager()),
        buildhost: text(meta.get_build_host()),
        sourcerpm: text(meta.get_source_rpm()),
        build_time: meta.get_build_time().unwrap_or(0),
        file_time,
        package_size: a.blob.size,
        installed_size: meta.get_installed_size().unwrap_or(0),
        archive_size,
        header_start: offsets.header,
        header_end: offsets.payload,
        sha256: a.blob.sha256.clone(),
        location_href: yum_package_href(&a.name),
        location_base: None,
        provides: deps(meta.get_provides()),
        requires: deps(meta.get_requires()),
        conflicts: deps(meta.get_conflicts()),
        obsoletes: deps(meta.get_obsoletes()),
        recommends: deps(meta.get_recommends()),
        suggests: deps(meta.get_suggests()),
        supplements: deps(meta.get_supplements()),
        enhances: deps(meta.get_enhances()),
        files,
        changelogs,
    })
}

/// What the repositories of an environment were last generated from.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct RepoState {
    build: String,
    generated_at: String,
    /// Digests of each apt index (`main/binary-amd64`): plain, gz, xz.
    apt: Vec<(String, [String; 3])>,
    /// yum data files: kind, checksum, open checksum, open size.
    yum: Vec<(String, String, String, u64)>,
    /// Content-addressed files the current generation names.
    current: BTreeSet<String>,
    /// Content-addressed files of replaced generations: when they were
    /// replaced (Unix seconds).
    retired: BTreeMap<String, u64>,
}

/// What a regeneration did.
#[derive(Debug, Clone, Serialize)]
pub struct Regenerated {
    /// The environment.
    pub env: String,
    /// The build its repositories now list.
    pub build: String,
    /// `dists/ENV`, when the build has .debs.
    pub apt_suite: Option<String>,
    /// `yum/ENV`, when the build has .rpms.
    pub yum_repo: Option<String>,
    /// Packages listed.
    pub packages: usize,
    /// Packages new to the yum repository, linked (local) or copied inside
    /// the store (S3) under its base URL.
    pub linked: usize,
    /// Files written.
    pub written: usize,
    /// Index files of earlier generations deleted after their grace period.
    pub removed: usize,
    /// `Valid-Until` of the apt suite (RFC 3339).
    pub valid_until: Option<String>,
    /// Seconds spent.
    pub seconds: f64,
}

/// A published build's package index, checked against its manifest: what a
/// regeneration needs, loaded before a promotion moves the pointer so that
/// a damaged index stops the promotion instead of leaving an environment
/// whose repositories cannot follow it.
#[derive(Debug, Clone)]
pub struct Published {
    /// The build id.
    pub build: String,
    /// Its package index.
    pub index: Arc<BuildIndex>,
    /// The blob key of every .rpm, by artifact name, from the signed
    /// manifest: what the yum repository's package copies are made from.
    pub rpm_blobs: Arc<BTreeMap<String, String>>,
}

/// Loads `build`'s manifest and index from the store. Errors when it is not
/// published, and (exit 3) when the index names a package the manifest does
/// not, or with another digest: the index itself is not signed.
pub async fn load(store: &Store, build: &str) -> Result<Published> {
    let manifest = published_manifest(store, build)
        .await?
        .ok_or_else(|| Error::Usage {
            message: format!("build `{build}` is not published in {}", store.url()),
            hint: Some("run `pipe publish` first: a promotion only moves metadata".into()),
        })?;
    let index_key = build_key(build, INDEX_FILE);
    let (index, _) = store
        .get_json::<BuildIndex>(&index_key, "a build index")
        .await?
        .ok_or_else(|| Error::Usage {
            message: format!("build `{build}` has no package index (`{index_key}`)"),
            hint: Some("run `pipe publish` for the build again: it records the index".into()),
        })?;
    check_index(&index, &manifest, &index_key)?;
    let rpm_blobs = manifest
        .artifacts
        .iter()
        .filter(|a| a.kind == "rpm")
        .map(|a| (a.name.clone(), a.blob.key()))
        .collect();
    Ok(Published {
        build: build.to_string(),
        index: Arc::new(index),
        rpm_blobs: Arc::new(rpm_blobs),
    })
}

/// Regenerates the apt suite and yum repository of `env` so they list the
/// packages of the published build, signed with `key`.
pub async fn regenerate(
    p: &Pipeline,
    store: &Store,
    key: &SecretKey,
    env: &str,
    published: &Published,
) -> Result<Regenerated> {
    let started = Instant::now();
    let build = published.build.as_str();
    let index = published.index.clone();
    let state = store
        .get_json::<RepoState>(&state_key(env), "a repository state")
        .await?
        .map(|(s, _)| s)
        .unwrap_or_default();
    // A refresh or repair lists the same packages: reuse the compressed
    // indices instead of compressing them again.
    let (prev_apt, prev_yum) = if state.build == build {
        (
            previous_apt(store, env, &state).await?,
            previous_yum(store, env, &state).await?,
        )
    } else {
        (None, None)
    };

    let now = SystemTime::now();
    let repo = p.repository.clone();
    let env_owned = env.to_string();
    let key_owned = key.clone();
    let rendered = spawn_blocking(move || {
        render(
            &env_owned, &repo, &index, &key_owned, now, prev_apt, prev_yum,
        )
    })
    .await?;

    // The packages the yum repository lists, under its base URL: before
    // any index names them.
    let packages = place_packages(store, env, published, &state).await?;

    // Content-addressed files first (in parallel: nothing names them yet),
    // then the rest in plan order, the signed top files last. A
    // content-addressed file that exists is written again all the same:
    // same bytes for a reader, and a damaged copy is repaired.
    let (named, rest): (Vec<&PlannedFile>, Vec<&PlannedFile>) =
        rendered.files.iter().partition(|f| f.content_addressed);
    for f in &named {
        fault::before_write(&f.path);
    }
    futures::future::try_join_all(named.iter().map(|f| {
        store.put(
            &f.path,
            Body::from_bytes(f.bytes.to_vec()),
            Condition::Overwrite,
        )
    }))
    .await?;
    let mut written = named.len();
    for f in rest {
        fault::before_write(&f.path);
        store
            .put(
                &f.path,
                Body::from_bytes(f.bytes.to_vec()),
                Condition::Overwrite,
            )
            .await?;
        written += 1;
    }

    // Files the new generation no longer names start their grace period;
    // those whose grace period is over go.
    let now_secs = unix_secs(now);
    let current: BTreeSet<String> = rendered
        .files
        .iter()
        .filter(|f| f.content_addressed)
        .map(|f| f.path.clone())
        .chain(packages.keys)
        .collect();
    let mut retired = state.retired.clone();
    for path in state.current.difference(&current) {
        retired.entry(path.clone()).or_insert(now_secs);
    }
    retired.retain(|path, _| !current.contains(path));
    let grace = p.repository.grace.as_secs();
    let expired: Vec<String> = retired
        .iter()
        .filter(|(_, at)| **at + grace <= now_secs)
        .map(|(path, _)| path.clone())
        .collect();
    let new_state = RepoState {
        build: build.to_string(),
        generated_at: crate::build::rfc3339(now),
        apt: rendered.apt_digests,
        yum: rendered.yum_digests,
        current,
        retired: retired
            .into_iter()
            .filter(|(path, _)| !expired.contains(path))
            .collect(),
    };
    // The state is written before the deletions: a crash in between leaves
    // files nobody names, never a state naming deleted files.
    fault::before_write(&state_key(env));
    store
        .put(
            &state_key(env),
            Body::from_bytes(serde_json::to_vec_pretty(&new_state).expect("serialises")),
            Condition::Overwrite,
        )
        .await?;
    for path in &expired {
        store.delete(path).await?;
    }
    Ok(Regenerated {
        env: env.to_string(),
        build: build.to_string(),
        apt_suite: rendered.apt.then(|| format!("dists/{env}")),
        yum_repo: rendered.yum.then(|| yum_dir(env)),
        packages: rendered.packages,
        linked: packages.linked,
        written: written + 1,
        removed: expired.len(),
        valid_until: rendered
            .apt
            .then(|| crate::build::rfc3339(now + p.repository.valid_for)),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Regenerates `env` from its pointer with a new date and signature (so
/// `Valid-Until` moves on). `None` when `env` points nowhere.
pub async fn refresh(
    p: &Pipeline,
    store: &Store,
    key: &SecretKey,
    env: &str,
) -> Result<Option<Regenerated>> {
    let (head, _) = crate::promote::read_pointer(store, env).await?;
    match head {
        Some(head) => {
            let published = load(store, &head.entry.build).await?;
            Ok(Some(regenerate(p, store, key, env, &published).await?))
        }
        None => Ok(None),
    }
}

/// True when the repositories of `env` list `build` (a promotion that
/// found the pointer in place but was killed before regenerating checks
/// this).
pub async fn is_current(store: &Store, env: &str, build: &str) -> Result<bool> {
    Ok(store
        .get_json::<RepoState>(&state_key(env), "a repository state")
        .await?
        .is_some_and(|(s, _)| s.build == build))
}

/// Every indexed package must be an artifact of the signed manifest, with
/// the same digest: the index is not signed itself.
fn check_index(index: &BuildIndex, manifest: &Manifest, key: &str) -> Result<()> {
    let digests: BTreeMap<&str, &str> = manifest
        .artifacts
        .iter()
        .map(|a| (a.name.as_str(), a.blob.sha256.as_str()))
        .collect();
    for (artifact, sha256) in index
        .debs
        .iter()
        .map(|d| (&d.artifact, &d.sha256))
        .chain(index.rpms.iter().map(|r| (&r.artifact, &r.sha256)))
    {
        if digests.get(artifact.as_str()) != Some(&sha256.as_str()) {
            return Err(Error::Verify {
                what: key.to_string(),
                detail: format!(
                    "lists `{artifact}` with sha256 {sha256}, which the build manifest does not ({})",
                    digests.get(artifact.as_str()).unwrap_or(&"absent")
                ),
            });
        }
    }
    Ok(())
}

struct Rendered {
    files: Vec<PlannedFile>,
    apt: bool,
    yum: bool,
    packages: usize,
    apt_digests: Vec<(String, [String; 3])>,
    yum_digests: Vec<(String, String, String, u64)>,
}

fn render(
    env: &str,
    repo: &crate::model::Repository,
    index: &BuildIndex,
    key: &SecretKey,
    now: SystemTime,
    prev_apt: Option<apt::RenderedSuite>,
    prev_yum: Option<yum::RenderedRepo>,
) -> Result<Rendered> {
    let mut files = Vec::new();
    let mut apt_digests = Vec::new();
    let mut yum_digests = Vec::new();
    if !index.debs.is_empty() {
        let entries: Vec<apt::Entry> = index
            .debs
            .iter()
            .map(|d| apt::Entry {
                component: COMPONENT,
                stanza: &d.stanza,
            })
            .collect();
        let mut config = apt::SuiteConfig::new(env, now);
        config.origin = repo.origin.clone();
        config.label = repo.label.clone();
        config.valid_for = repo.valid_for;
        config.components = vec![COMPONENT.into()];
        // Packages of architecture `all` are listed under every
        // architecture; a suite of only those still needs one.
        if index.debs.iter().all(|d| d.stanza.architecture == "all") {
            config.architectures = vec!["amd64".into()];
        }
        let suite = apt::render_suite(&config, &entries, prev_apt.as_ref())?;
        let signed = suite.sign(key, now)?;
        apt_digests = suite
            .indices
            .iter()
            .map(|s| {
                (
                    s.dir.clone(),
                    [&s.plain, &s.gz, &s.xz].map(|b| sha256_hex(b)),
                )
            })
            .collect();
        files.extend(suite.write_plan(&signed).files);
    }
    if !index.rpms.is_empty() {
        let config = yum::RepoConfig {
            dir: yum_dir(env),
            timestamp: now,
        };
        // Listed where this repository has them, whatever location the
        // recorded fragment names (builds published by an older pipe name
        // the shared pool).
        let located = index
            .rpms
            .iter()
            .map(|r| r.xml.with_location(&yum_package_href(&r.artifact)))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let xml: Vec<&yum::PackageXml> = located.iter().collect();
        let rendered = yum::render_repo(&config, &xml, prev_yum.as_ref())?;
        let signature = rendered.sign(key, now)?;
        yum_digests = rendered
            .data
            .iter()
            .map(|d| {
                (
                    d.kind.to_string(),
                    d.checksum.clone(),
                    d.open_checksum.clone(),
                    d.open_size,
                )
            })
            .collect();
        files.extend(rendered.write_plan(&signature).files);
    }
    Ok(Rendered {
        files,
        apt: !index.debs.is_empty(),
        yum: !index.rpms.is_empty(),
        packages: index.debs.len() + index.rpms.len(),
        apt_digests,
        yum_digests,
    })
}

/// The packages a regeneration placed under the yum repository.
struct Placed {
    /// Every package key the repository lists.
    keys: Vec<String>,
    /// How many were new to it.
    linked: usize,
}

/// How many package copies are made at once.
const PLACE_CONCURRENCY: usize = 16;

/// Makes every .rpm of `published` reachable under `env`'s yum repository
/// (`yum/ENV/Packages/<l>/<artifact>`), as a copy made inside the store
/// from its blob (a hard link locally, a server-side copy on S3): no byte
/// passes through this process. Only packages new to the environment are
/// copied; a regeneration of the build the environment already lists (a
/// refresh, a repair) checks every one, so a deleted copy comes back.
async fn place_packages(
    store: &Store,
    env: &str,
    published: &Published,
    state: &RepoState,
) -> Result<Placed> {
    let repair = state.build == published.build;
    let mut linked = 0;
    let mut keys = Vec::new();
    let mut todo = Vec::new();
    for r in &published.index.rpms {
        let key = format!("{}/{}", yum_dir(env), yum_package_href(&r.artifact));
        let new = !state.current.contains(&key);
        if new {
            linked += 1;
        }
        if repair || new {
            let blob = published
                .rpm_blobs
                .get(&r.artifact)
                .ok_or_else(|| Error::Verify {
                    what: build_key(&published.build, INDEX_FILE),
                    detail: format!("lists `{}`, which the build manifest does not", r.artifact),
                })?;
            todo.push((blob.clone(), key.clone()));
        }
        keys.push(key);
    }
    futures::stream::iter(todo)
        .map(|(blob, key)| async move {
            fault::before_write(&key);
            store.copy_if_absent(&blob, &key).await
        })
        .buffer_unordered(PLACE_CONCURRENCY)
        .try_collect::<Vec<bool>>()
        .await?;
    Ok(Placed { keys, linked })
}

/// The last rendering of `env`'s suite, rebuilt from its by-hash files.
async fn previous_apt(
    store: &Store,
    env: &str,
    state: &RepoState,
) -> Result<Option<apt::RenderedSuite>> {
    let mut indices = Vec::new();
    for (dir, digests) in &state.apt {
        let mut parts: Vec<Arc<[u8]>> = Vec::new();
        for d in digests {
            let key = format!("dists/{env}/{dir}/by-hash/SHA256/{d}");
            // Only bytes this pipe wrote are signed again: a file changed
            // in the store since is not reused, and gets rewritten.
            match store.get_bytes(&key).await? {
                Some((bytes, _)) if sha256_hex(&bytes) == *d => parts.push(Arc::from(&bytes[..])),
                _ => return Ok(None),
            }
        }
        let [plain, gz, xz]: [Arc<[u8]>; 3] = parts.try_into().expect("three parts");
        indices.push(apt::IndexSet {
            dir: dir.clone(),
            plain,
            gz,
            xz,
        });
    }
    Ok((!indices.is_empty()).then(|| apt::RenderedSuite {
        suite_dir: format!("dists/{env}"),
        release: String::new(),
        indices,
    }))
}

/// The last rendering of `env`'s yum data files.
async fn previous_yum(
    store: &Store,
    env: &str,
    state: &RepoState,
) -> Result<Option<yum::RenderedRepo>> {
    let mut data = Vec::new();
    for (kind, checksum, open_checksum, open_size) in &state.yum {
        let kind: &'static str = match kind.as_str() {
            "primary" => "primary",
            "filelists" => "filelists",
            "other" => "other",
            _ => return Ok(None),
        };
        let href = format!("repodata/{checksum}-{kind}.xml.gz");
        let Some((gz, _)) = store
            .get_bytes(&format!("{}/{href}", yum_dir(env)))
            .await?
            .filter(|(gz, _)| sha256_hex(gz) == *checksum)
        else {
            return Ok(None);
        };
        data.push(yum::DataFile {
            kind,
            href,
            gz: Arc::from(&gz[..]),
            checksum: checksum.clone(),
            open_checksum: open_checksum.clone(),
            open_size: *open_size,
        });
    }
    Ok((!data.is_empty()).then(|| yum::RenderedRepo {
        dir: yum_dir(env),
        data,
        repomd: String::new(),
    }))
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
