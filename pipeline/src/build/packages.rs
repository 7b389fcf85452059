//! The package stage: one .deb or .rpm per declared package and format,
//! cached by the digest of everything that can change its bytes.
//!
//! The key covers the package's section of `pipeline.toml`, the project
//! version, the timestamp, every packaged file (path, mode, content digest),
//! the maintainer scripts, the signing key (for rpm) and the pipe version. On
//! a hit the artifact is fetched from the store; on a miss it is built and
//! stored, then recorded under `cache/stages/<key>.json`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use serde::{Deserialize, Serialize};

use super::TOOL_VERSION;
use super::record::Input;
use crate::model::{Compression, Package, PackageFormat, Pipeline};
use crate::repository::{self, Fragment};
use crate::store::{BlobRef, Body, Condition, Store, digest};
use crate::{Error, Result};

/// One artifact of a build.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Artifact {
    /// File name (`hello_1.2.0_all.deb`).
    pub name: String,
    /// `deb` or `rpm`.
    pub kind: String,
    /// What it was built from (`package hello`).
    pub component: String,
    /// Content digests and size.
    pub blob: BlobRef,
    /// The stage's cache key.
    pub cache_key: String,
}

/// An artifact and how this build obtained it.
#[derive(Debug, Clone)]
pub struct Built {
    /// The artifact.
    pub artifact: Artifact,
    /// Where it is on disk.
    pub path: PathBuf,
    /// True when it came from the cache rather than being built.
    pub cache_hit: bool,
    /// Seconds spent.
    pub seconds: f64,
    /// The files that went into it (relative to the project directory), with
    /// their digests.
    pub inputs: Vec<Input>,
    /// What the repository indices need of it.
    pub index: Fragment,
}

impl Built {
    /// Where the artifact is in the finished build directory `dir` (`path`
    /// points into the directory the build was assembled in).
    pub fn path_in(&self, dir: &Path) -> PathBuf {
        dir.join(&self.artifact.name)
    }
}

/// Changes when the package stages start writing other contents for the
/// same inputs, so no cached package of the earlier kind is reused.
const CONTENTS: &str = "docs-1";

#[derive(Debug, Serialize, Deserialize)]
struct StageRecord {
    name: String,
    blob: BlobRef,
    /// Absent in records of an older pipe: then read from the package.
    #[serde(default)]
    index: Option<Fragment>,
}

fn record_key(key: &str) -> String {
    format!("cache/stages/{key}.json")
}

/// The file name a package gets in `format`.
pub fn artifact_name(pkg: &Package, version: &str, format: PackageFormat) -> String {
    match format {
        PackageFormat::Deb => format!("{}_{}_{}.deb", pkg.name, version, pkg.arch.deb()),
        PackageFormat::Rpm => format!("{}-{}-1.{}.rpm", pkg.name, version, pkg.arch.rpm()),
    }
}

/// Builds (or fetches from the cache) every package in every format, in
/// parallel, into `out_dir`.
pub async fn build_packages(
    p: &Pipeline,
    store: &Store,
    epoch: u64,
    signer: Option<&keys::SecretKey>,
    out_dir: &Path,
) -> Result<Vec<Built>> {
    let jobs: Vec<Arc<Job>> = p
        .packages
        .values()
        .flat_map(|pkg| {
            pkg.formats.iter().map(move |&format| {
                Arc::new(Job {
                    dir: p.dir.clone(),
                    version: p.project.version.clone(),
                    pkg: pkg.clone(),
                    format,
                    epoch,
                    signer: signer.cloned(),
                    out_dir: out_dir.to_path_buf(),
                })
            })
        })
        .collect();

    // First every package is resolved and keyed, in parallel: bad input in
    // any package (a vanished file, a symlink leaving the project) fails the
    // build before anything is written to the store.
    let mut resolving = tokio::task::JoinSet::new();
    for (i, job) in jobs.iter().enumerate() {
        let job = job.clone();
        resolving.spawn_blocking(move || (i, job.prepare()));
    }
    let mut prepared: Vec<Option<Prepared>> = jobs.iter().map(|_| None).collect();
    while let Some(joined) = resolving.join_next().await {
        let (i, result) = joined.expect("prepare task panicked");
        prepared[i] = Some(result?);
    }

    // Then they are fetched or written. Each writer already compresses on
    // every core, and an xz encoder holds tens of MiB: more writers than
    // cores at once gains no speed and multiplies memory (500 packages at
    // once peaked at 2 GiB).
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let permits = Arc::new(tokio::sync::Semaphore::new(cores));
    let mut tasks = tokio::task::JoinSet::new();
    for (job, prepared) in jobs.into_iter().zip(prepared) {
        let prepared = prepared.expect("every package was prepared");
        let store = store.clone();
        let permits = permits.clone();
        tasks.spawn(async move {
            let _permit = permits
                .acquire_owned()
                .await
                .expect("semaphore is never closed");
            job.run(prepared, &store).await
        });
    }
    let mut built = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        built.push(joined.expect("package task panicked")?);
    }
    built.sort_by(|a, b| a.artifact.name.cmp(&b.artifact.name));
    Ok(built)
}

struct Job {
    dir: PathBuf,
    version: String,
    pkg: Package,
    format: PackageFormat,
    epoch: u64,
    signer: Option<keys::SecretKey>,
    out_dir: PathBuf,
}

/// A package's resolved contents, ready to be keyed and written.
struct Prepared {
    entries: Vec<stages::tree::Entry>,
    key: String,
    inputs: Vec<Input>,
    /// Time spent resolving and hashing.
    seconds: f64,
}

impl Job {
    /// Fetches the artifact from the cache, or writes it and records it.
    async fn run(self: Arc<Self>, prepared: Prepared, store: &Store) -> Result<Built> {
        let started = Instant::now();
        let name = artifact_name(&self.pkg, &self.version, self.format);
        let path = self.out_dir.join(&name);
        let record_key = record_key(&prepared.key);

        let artifact = |blob: BlobRef| Artifact {
            name: name.clone(),
            kind: match self.format {
                PackageFormat::Deb => "deb",
                PackageFormat::Rpm => "rpm",
            }
            .into(),
            component: format!("package {}", self.pkg.name),
            blob,
            cache_key: prepared.key.clone(),
        };
        let fragment = |artifact: Artifact, path: PathBuf, epoch: u64| {
            tokio::task::spawn_blocking(move || repository::fragment(&path, &artifact, epoch))
        };

        let cached = store
            .get_json::<StageRecord>(&record_key, "a stage record")
            .await?;
        let (artifact, index, cache_hit) = match cached {
            Some((record, _)) => {
                store.get_blob_to_file(&record.blob, &path).await?;
                publishable(&path)?;
                let artifact = artifact(record.blob);
                let index = match record.index {
                    Some(index) => index,
                    None => fragment(artifact.clone(), path.clone(), self.epoch)
                        .await
                        .expect("index recorder panicked")?,
                };
                (artifact, index, true)
            }
            None => {
                let job = self.clone();
                let entries = prepared.entries;
                let out = path.clone();
                tokio::task::spawn_blocking(move || job.write(entries, &out))
                    .await
                    .expect("package writer panicked")?;
                publishable(&path)?;
                let put = store.put_blob_file(&path).await?;
                let artifact = artifact(put.blob.clone());
                let index = fragment(artifact.clone(), path.clone(), self.epoch)
                    .await
                    .expect("index recorder panicked")?;
                let record = StageRecord {
                    name: name.clone(),
                    blob: put.blob,
                    index: Some(index.clone()),
                };
                let bytes = serde_json::to_vec_pretty(&record).expect("record serialises");
                match store
                    .put(&record_key, Body::from_bytes(bytes), Condition::IfAbsent)
                    .await
                {
                    Ok(_) | Err(Error::AlreadyExists { .. }) => {}
                    Err(e) => return Err(e),
                }
                (artifact, index, false)
            }
        };
        Ok(Built {
            artifact,
            path,
            cache_hit,
            seconds: prepared.seconds + started.elapsed().as_secs_f64(),
            inputs: prepared.inputs,
            index,
        })
    }

    /// Resolves the file tree and computes the cache key.
    fn prepare(&self) -> Result<Prepared> {
        let started = Instant::now();
        let mappings: Vec<stages::tree::Mapping> = self
            .pkg
            .files
            .iter()
            .map(|f| stages::tree::Mapping {
                src: PathBuf::from(&f.src),
                dst: f.dst.clone(),
                mode: f.mode,
                config: f.config,
            })
            .collect();
        let entries = stages::tree::resolve(&self.dir, &mappings, self.epoch)?;
        let project = std::fs::canonicalize(&self.dir).map_err(|e| Error::io(&self.dir, e))?;

        let mut h = blake3::Hasher::new();
        let mut field = |name: &str, value: &[u8]| {
            h.update(name.as_bytes());
            h.update(&(value.len() as u64).to_le_bytes());
            h.update(value);
        };
        field("tool", TOOL_VERSION.as_bytes());
        // What the stages add of their own (the copyright file, the
        // changelog, rpm directory ownership), for pipes of one version
        // built from different sources.
        field("contents", CONTENTS.as_bytes());
        field("format", format!("{:?}", self.format).as_bytes());
        field("version", self.version.as_bytes());
        field("epoch", self.epoch.to_string().as_bytes());
        field(
            "section",
            &serde_json::to_vec(&self.pkg).expect("model serialises"),
        );
        let mut inputs = Vec::new();
        for e in &entries {
            let content = match &e.kind {
                stages::tree::EntryKind::Dir => "dir".to_string(),
                stages::tree::EntryKind::Symlink { target } => format!("symlink:{target}"),
                stages::tree::EntryKind::File { src, .. } => {
                    // Both digests now: the key needs blake3, the manifest
                    // both, and the file is read once for the two.
                    let blob = digest::hash_file_blocking(src)?;
                    let content = format!("file:{}", blob.blake3);
                    inputs.push(Input {
                        path: relative(&project, src),
                        blob,
                    });
                    content
                }
            };
            field(
                "entry",
                format!("{}\0{:o}\0{}\0{content}", e.path, e.mode, e.config).as_bytes(),
            );
        }
        // The documentation files are inputs like the scripts.
        let docs = &self.pkg.docs;
        for (which, file) in [
            ("license_file", &docs.license_file),
            ("changelog", &docs.changelog),
        ] {
            let Some(file) = file else { continue };
            let blob = digest::hash_file_blocking(&self.dir.join(file))?;
            field("doc", format!("{which}\0{}", blob.blake3).as_bytes());
            inputs.push(Input {
                path: file.to_string(),
                blob,
            });
        }
        for (which, script) in self.scripts() {
            let blob = digest::hash_file_blocking(&self.dir.join(script))?;
            field("script", format!("{which}\0{}", blob.blake3).as_bytes());
            inputs.push(Input {
                path: script.to_string(),
                blob,
            });
        }
        if let (PackageFormat::Rpm, Some(key)) = (self.format, &self.signer) {
            field("signer", key.fingerprint().as_bytes());
        }
        inputs.sort_by(|a, b| a.path.cmp(&b.path));
        inputs.dedup_by(|a, b| a.path == b.path);
        Ok(Prepared {
            entries,
            key: h.finalize().to_hex().to_string(),
            inputs,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    fn scripts(&self) -> Vec<(&'static str, &str)> {
        let s = &self.pkg.scripts;
        [
            ("preinst", &s.preinst),
            ("postinst", &s.postinst),
            ("prerm", &s.prerm),
            ("postrm", &s.postrm),
        ]
        .into_iter()
        .filter_map(|(n, p)| Some((n, p.as_deref()?)))
        .collect()
    }

    fn write(&self, entries: Vec<stages::tree::Entry>, out: &Path) -> Result<()> {
        match self.format {
            PackageFormat::Deb => self.write_deb(entries, out),
            PackageFormat::Rpm => self.write_rpm(entries, out),
        }
    }

    /// The relationship fields in the stages' terms (Debian syntax; the rpm
    /// stage maps them onto rpm's tags).
    fn relations(&self) -> stages::deb::Relations {
        let r = &self.pkg.relations;
        stages::deb::Relations {
            pre_depends: r.pre_depends.clone(),
            depends: r.depends.clone(),
            recommends: r.recommends.clone(),
            suggests: r.suggests.clone(),
            breaks: r.breaks.clone(),
            conflicts: r.conflicts.clone(),
            provides: r.provides.clone(),
            replaces: r.replaces.clone(),
        }
    }

    /// The maintainer scripts as absolute paths.
    fn stage_scripts(&self) -> stages::deb::Scripts {
        let s = &self.pkg.scripts;
        let path = |s: &Option<String>| s.as_ref().map(|p| self.dir.join(p));
        stages::deb::Scripts {
            preinst: path(&s.preinst),
            postinst: path(&s.postinst),
            prerm: path(&s.prerm),
            postrm: path(&s.postrm),
        }
    }

    /// The copyright file and changelog (see [`crate::model::PackageDocs`]).
    fn docs(&self) -> Result<stages::docs::Docs> {
        let pkg = &self.pkg;
        let read = |rel: &str| -> Result<String> {
            let path = self.dir.join(rel);
            let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
            String::from_utf8(bytes).map_err(|_| Error::Usage {
                message: format!("`{rel}` is not UTF-8 text"),
                hint: Some("package metadata is text: convert the file to UTF-8".into()),
            })
        };
        // The maintainer, or the package when an rpm-only package names none.
        let author = pkg.maintainer.clone().unwrap_or_else(|| pkg.name.clone());
        let holder = pkg.docs.copyright.clone().unwrap_or_else(|| {
            let who = author.split('<').next().unwrap_or(&author).trim();
            format!("{} {who}", stages::docs::year(self.epoch))
        });
        let copyright = stages::docs::Copyright {
            name: pkg.name.clone(),
            contact: pkg.maintainer.clone(),
            source: pkg.homepage.clone(),
            holder,
            license: pkg.license.clone(),
            text: pkg.docs.license_file.as_deref().map(read).transpose()?,
        }
        .render();
        let changelog = match &pkg.docs.changelog {
            Some(rel) => {
                let text = read(rel)?;
                stages::docs::Changelog::parse(&pkg.name, &self.version, &author, &text).map_err(
                    |e| Error::Usage {
                        message: format!("changelog `{rel}`: {e}"),
                        hint: Some("run `pipe validate` for the details".into()),
                    },
                )?
            }
            None => {
                stages::docs::Changelog::generated(&pkg.name, &self.version, &author, self.epoch)
            }
        };
        Ok(stages::docs::Docs {
            copyright,
            changelog,
        })
    }

    fn write_deb(&self, entries: Vec<stages::tree::Entry>, out: &Path) -> Result<()> {
        let pkg = &self.pkg;
        let deb = stages::deb::DebPackage {
            name: pkg.name.clone(),
            version: stages::deb::version_from_project(&self.version)?,
            arch: pkg.arch.deb().to_string(),
            maintainer: pkg.maintainer.clone().unwrap_or_default(),
            summary: pkg.summary.clone(),
            description: pkg.description.clone(),
            relations: self.relations(),
            section: pkg.section.clone().unwrap_or_else(|| "misc".into()),
            priority: pkg.priority.clone().unwrap_or_else(|| "optional".into()),
            homepage: pkg.homepage.clone(),
            entries,
            scripts: self.stage_scripts(),
            docs: Some(self.docs()?),
            mtime: self.epoch,
        };
        let compression = match pkg.compression {
            Compression::Gzip => stages::deb::Compression::Gzip,
            Compression::Xz => stages::deb::Compression::Xz,
            Compression::Zstd => stages::deb::Compression::Zstd,
            Compression::None => stages::deb::Compression::None,
        };
        stages::deb::write_deb(
            &deb,
            &stages::deb::DebOptions {
                compression,
                ..Default::default()
            },
            out,
        )?;
        Ok(())
    }

    fn write_rpm(&self, entries: Vec<stages::tree::Entry>, out: &Path) -> Result<()> {
        let pkg = &self.pkg;
        let rpm = stages::rpm::RpmPackage {
            name: pkg.name.clone(),
            version: self.version.clone(),
            arch: pkg.arch.rpm().to_string(),
            summary: pkg.summary.clone(),
            description: pkg.description.clone(),
            license: pkg.license.clone(),
            packager: pkg.maintainer.clone(),
            url: pkg.homepage.clone(),
            group: pkg.group.clone(),
            relations: self.relations(),
            entries,
            scripts: self.stage_scripts(),
            docs: Some(self.docs()?),
            mtime: self.epoch,
        };
        stages::rpm::write_rpm(&rpm, self.signer.as_ref(), out)?;
        Ok(())
    }
}

/// When a signature made for a build is dated: the build's timestamp, so
/// signatures are reproducible, but never before the key existed (a key
/// cannot sign before its creation).
pub fn signature_time(epoch: u64, key: &keys::SecretKey) -> SystemTime {
    let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(epoch);
    at.max(key.created())
}

/// Artifacts are world-readable like any package in a repository; the
/// temporary files they were written through are private.
fn publishable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
        .map_err(|e| Error::io(path, e))
}

fn relative(project: &Path, path: &Path) -> String {
    path.strip_prefix(project)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}
