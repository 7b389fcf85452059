//! The `pipeline.toml` model (version 1): typed, validated as a whole.
//!
//! [`Pipeline::load`] parses the file, checks every section and cross
//! reference, and returns either the model or `Diagnostics` holding every
//! problem found, each with its file, line and column.

mod diag;
mod parse;
pub mod rules;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

pub(crate) use diag::{Diagnostics, Position, Span};

use crate::{Error, Result};

/// The file name pipe looks for in the project directory.
pub const PIPELINE_FILE: &str = "pipeline.toml";

/// What loading `pipeline.toml` does with the input files it names
/// (package `src`, step input globs, changelogs, license files, image and
/// machine bases).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Inputs {
    /// Stat, resolve and read them, reporting each problem at its position
    /// in `pipeline.toml` (`pipe validate`, `pipe build`).
    Check,
    /// Leave them alone, and do not read the `[packages.NAME]` tables at
    /// all ([`Pipeline::packages`] is empty, and references to packages are
    /// not checked): what the commands that work on the store need, which
    /// never look at a package declaration or an input file. Parsing is
    /// then proportional to the rest of the file, not to the number of
    /// packages. A [`FileEntry::is_dir`] (of a step's outputs, say) is what
    /// the file declares (a trailing `/`), not what is on disk.
    StoreOnly,
}

/// A validated `pipeline.toml`.
#[derive(Debug, Clone, Serialize)]
pub struct Pipeline {
    /// The `pipeline.toml` this was read from.
    pub file: PathBuf,
    /// The directory holding `pipeline.toml`; relative paths resolve against it.
    pub dir: PathBuf,
    /// `[project]`.
    pub project: Project,
    /// `[store]`.
    pub store: StoreSection,
    /// `[signing]`.
    pub signing: Signing,
    /// `[registry]`, when images are pushed somewhere.
    pub registry: Option<Registry>,
    /// `[repository]`: how the apt and yum repositories of each environment
    /// are labelled and how long their signatures hold.
    pub repository: Repository,
    /// `[environments.NAME]`, in the order they are declared.
    pub environments: Vec<Environment>,
    /// `[steps.NAME]`, by name: static build work whose outputs packages use.
    pub steps: BTreeMap<String, Step>,
    /// `[packages.NAME]`, by name (empty when loaded by
    /// [`Pipeline::load_model`], which does not read them).
    pub packages: BTreeMap<String, Package>,
    /// `[images.NAME]`, by name.
    pub images: BTreeMap<String, Image>,
    /// `[machines.NAME]`, by name.
    pub machines: BTreeMap<String, Machine>,
    /// `[deploy]`.
    pub deploy: Deploy,
    /// Where each `[images.NAME]` and `[machines.NAME]` section is declared
    /// (`images.hello` → line and column), for messages about them.
    pub sections: BTreeMap<String, Position>,
}

/// `[project]`.
#[derive(Debug, Clone, Serialize)]
pub struct Project {
    /// Project name.
    pub name: String,
    /// Version shared by every artifact; valid and well-ordered for dpkg and rpm.
    pub version: String,
    /// Timestamp every artifact is clamped to, when fixed in the file.
    pub source_date_epoch: Option<u64>,
}

/// `[store]`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StoreSection {
    /// Store URL as written (`--store` and `$PIPE_STORE` override it).
    pub url: Option<String>,
    /// Timeouts, retries and anonymous reads of an S3 store (flags override).
    pub network: crate::store::Network,
    /// `pipe gc`'s grace period (`gc_grace`; `--grace` overrides): nothing
    /// written more recently is deleted, and `pipe publish` freshens a blob
    /// it reuses once it is older than a quarter of it.
    pub gc_grace: Option<std::time::Duration>,
    /// How many of each environment's newest history entries keep their
    /// builds (`gc_keep_history`; `--keep-history` overrides).
    pub gc_keep_history: Option<u32>,
}

/// `[signing]`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Signing {
    /// Path of the OpenPGP secret key, relative to the project directory.
    pub key: Option<String>,
}

/// `[registry]`.
#[derive(Debug, Clone, Serialize)]
pub struct Registry {
    /// `host[:port]/repository`.
    pub url: String,
    /// Plain HTTP, for a registry on loopback.
    pub insecure: bool,
}

/// `[repository]`.
#[derive(Debug, Clone, Serialize)]
pub struct Repository {
    /// apt `Origin` (default: the project name).
    pub origin: String,
    /// apt `Label` (default: the project name).
    pub label: String,
    /// How long a signed suite stays valid (`Valid-Until`, default 7 days);
    /// `pipe refresh` re-signs before then.
    pub valid_for: std::time::Duration,
    /// How long index files of a replaced generation stay, so a client that
    /// fetched the old `InRelease` or `repomd.xml` just before can still
    /// fetch what it names (default 1 hour).
    pub grace: std::time::Duration,
    /// How long the signed statement that an environment's head is current
    /// (`envs/ENV/timestamp.json`) stays valid: deploy refuses a head whose
    /// statement expired, so a store that keeps serving an old head is
    /// noticed. `pipe promote` and `pipe refresh` sign it (default 7 days).
    pub head_valid_for: std::time::Duration,
    /// The architectures an apt suite whose packages are all `Architecture:
    /// all` lists (an apt client skips a suite that does not list its own).
    /// Default: every architecture pipe builds for but `all`.
    pub architectures: Vec<Arch>,
}

/// `[environments.NAME]`.
#[derive(Debug, Clone, Serialize)]
pub struct Environment {
    /// Environment name (an apt suite, a registry tag).
    pub name: String,
    /// The environment a build must have been in before it may come here.
    pub from: Option<String>,
}

/// `[steps.NAME]`: a command run at build time, cached by the digest of its
/// command, environment and inputs.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// Step name.
    pub name: String,
    /// The command, run with `sh -c` in the project directory.
    pub run: String,
    /// Globs (relative to the project directory) of the files the step reads.
    pub inputs: Vec<String>,
    /// Paths (relative to the project directory) the step writes.
    pub outputs: Vec<String>,
    /// Environment variables, on top of a clean environment.
    pub env: BTreeMap<String, String>,
}

/// Debian relationship fields; rpm maps them onto its tags where it has one.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Relations {
    /// `Depends` / `Requires`.
    pub depends: Vec<String>,
    /// `Pre-Depends` / `Requires(pre)`.
    pub pre_depends: Vec<String>,
    /// `Recommends`.
    pub recommends: Vec<String>,
    /// `Suggests`.
    pub suggests: Vec<String>,
    /// `Conflicts`.
    pub conflicts: Vec<String>,
    /// `Breaks`.
    pub breaks: Vec<String>,
    /// `Replaces` / `Obsoletes`.
    pub replaces: Vec<String>,
    /// `Provides`.
    pub provides: Vec<String>,
}

/// Compression of a .deb's members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// gzip.
    Gzip,
    /// xz, like dpkg-deb's default.
    #[default]
    Xz,
    /// zstd.
    Zstd,
    /// None.
    None,
}

/// `[packages.NAME]`: built as .deb and .rpm unless `formats` says otherwise.
#[derive(Debug, Clone, Serialize)]
pub struct Package {
    /// Package name, valid for every format built.
    pub name: String,
    /// One-line summary.
    pub summary: String,
    /// Longer description.
    pub description: Option<String>,
    /// Architecture.
    pub arch: Arch,
    /// License expression.
    pub license: Option<String>,
    /// `Name <email>`.
    pub maintainer: Option<String>,
    /// Relationships in Debian syntax (`depends`, `conflicts`, ...).
    pub relations: Relations,
    /// Debian section (default `misc`).
    pub section: Option<String>,
    /// Debian priority (default `optional`).
    pub priority: Option<String>,
    /// Project home page.
    pub homepage: Option<String>,
    /// Compression of the .deb.
    pub compression: Compression,
    /// Formats to build.
    pub formats: Vec<PackageFormat>,
    /// Files and directories to package.
    pub files: Vec<FileEntry>,
    /// Maintainer scripts.
    pub scripts: Scripts,
    /// `allow_special_modes = true`: a `mode` may set the setuid, setgid or
    /// world-writable bit (refused otherwise, at validate and at deploy).
    /// Left out of the section's serialisation (its cache key) when false.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub allow_special_modes: bool,
    /// The copyright file and changelog the packages carry.
    pub docs: PackageDocs,
    /// rpm `Group` (default `Unspecified`).
    pub group: Option<String>,
}

/// What a package documents about itself: the copyright file
/// (`/usr/share/doc/NAME/copyright` in DEP-5, the rpm's `%license`) and the
/// changelog (`changelog.gz`, the rpm's `%changelog`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct PackageDocs {
    /// Who holds the copyright (`2023 Example Ltd`); default: the year of
    /// the build's timestamp and the maintainer.
    pub copyright: Option<String>,
    /// The license's full text, relative to the project directory.
    pub license_file: Option<String>,
    /// The changelog (Debian format or a simple list), relative to the
    /// project directory; default: one entry for the version.
    pub changelog: Option<String>,
}

/// One `files` entry of a package.
#[derive(Debug, Clone, Serialize)]
pub struct FileEntry {
    /// Source path relative to the project directory; a directory when it ends
    /// with `/` or names one.
    pub src: String,
    /// Absolute destination path in the installed system.
    pub dst: String,
    /// Permission bits, when given.
    pub mode: Option<u32>,
    /// A configuration file (dpkg conffile, rpm `%config(noreplace)`).
    pub config: bool,
    /// True when `src` is a directory, packaged recursively.
    pub is_dir: bool,
    /// The step that produces `src`, when it is a step output.
    pub from_step: Option<String>,
}

/// Maintainer scripts of a package, paths relative to the project directory.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Scripts {
    /// Runs before unpacking.
    pub preinst: Option<String>,
    /// Runs after unpacking.
    pub postinst: Option<String>,
    /// Runs before removal.
    pub prerm: Option<String>,
    /// Runs after removal.
    pub postrm: Option<String>,
}

/// Package architecture, in Debian's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// Architecture-independent.
    All,
    /// x86-64.
    Amd64,
    /// 64-bit ARM.
    Arm64,
    /// 32-bit ARM, hard float.
    Armhf,
    /// 32-bit x86.
    I386,
    /// 64-bit POWER, little endian.
    Ppc64el,
    /// IBM Z.
    S390x,
    /// 64-bit RISC-V.
    Riscv64,
}

impl Arch {
    /// Every architecture, by its Debian name.
    pub(crate) const ALL: [Arch; 8] = [
        Arch::All,
        Arch::Amd64,
        Arch::Arm64,
        Arch::Armhf,
        Arch::I386,
        Arch::Ppc64el,
        Arch::S390x,
        Arch::Riscv64,
    ];

    /// Debian's name.
    pub(crate) fn deb(self) -> &'static str {
        match self {
            Arch::All => "all",
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
            Arch::Armhf => "armhf",
            Arch::I386 => "i386",
            Arch::Ppc64el => "ppc64el",
            Arch::S390x => "s390x",
            Arch::Riscv64 => "riscv64",
        }
    }

    /// RPM's name.
    pub(crate) fn rpm(self) -> &'static str {
        match self {
            Arch::All => "noarch",
            Arch::Amd64 => "x86_64",
            Arch::Arm64 => "aarch64",
            Arch::Armhf => "armv7hl",
            Arch::I386 => "i686",
            Arch::Ppc64el => "ppc64le",
            Arch::S390x => "s390x",
            Arch::Riscv64 => "riscv64",
        }
    }
}

/// A package format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PackageFormat {
    /// Debian binary package.
    Deb,
    /// RPM package.
    Rpm,
}

/// `[images.NAME]`.
#[derive(Debug, Clone, Serialize)]
pub struct Image {
    /// Image name.
    pub name: String,
    /// What the image starts from.
    pub base: ImageBase,
    /// Packages whose files become layers, in order.
    pub packages: Vec<String>,
    /// Entrypoint.
    pub entrypoint: Vec<String>,
    /// Environment variables.
    pub env: BTreeMap<String, String>,
    /// Exposed TCP ports.
    pub expose: Vec<u16>,
    /// Default arguments (`Cmd`).
    pub cmd: Vec<String>,
    /// Working directory of the entrypoint.
    pub workdir: Option<String>,
    /// User (`name`, `uid`, `uid:gid`) the entrypoint runs as.
    pub user: Option<String>,
    /// Extra labels (pipe sets the `org.opencontainers.image.*` ones).
    pub labels: BTreeMap<String, String>,
    /// Compression of the package layers.
    pub compression: ImageCompression,
}

/// How an image's package layers are compressed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageCompression {
    /// gzip, what every client reads.
    #[default]
    Gzip,
    /// zstd.
    Zstd,
}

/// The base of an image.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "path")]
pub enum ImageBase {
    /// An empty image.
    Scratch,
    /// An OCI image-layout archive, relative to the project directory.
    OciArchive(String),
    /// A `docker save` archive, relative to the project directory.
    DockerArchive(String),
}

/// `[machines.NAME]`.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// Machine image name.
    pub name: String,
    /// Root filesystem tarball, relative to the project directory.
    pub base_rootfs: String,
    /// Packages installed into the image.
    pub packages: Vec<String>,
    /// Script run once at bake time, relative to the project directory.
    pub post_install: Option<String>,
    /// Disk size in bytes.
    pub size: u64,
    /// Disk formats to write.
    pub formats: Vec<DiskFormat>,
}

/// A machine disk format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskFormat {
    /// A raw disk image.
    Raw,
    /// QEMU copy-on-write v2.
    Qcow2,
}

/// `[deploy]`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Deploy {
    /// Files written at deploy time: absolute path to template text.
    pub files: BTreeMap<String, String>,
    /// The packages a deploy installs, each declared; empty means every
    /// package of the build.
    pub packages: Vec<String>,
    /// A command (`sh -c`, in the new release) run after the switch; when it
    /// fails the switch is undone.
    pub after: Option<String>,
}

impl Pipeline {
    /// The declared environment `name`; a usage error listing the declared
    /// ones if there is none.
    pub fn environment(&self, name: &str) -> Result<&Environment> {
        self.environments
            .iter()
            .find(|e| e.name == name)
            .ok_or_else(|| Error::Usage {
                message: format!("environment `{name}` is not declared in pipeline.toml"),
                hint: Some(format!(
                    "declared: {}",
                    self.environments
                        .iter()
                        .map(|e| format!("`{}`", e.name))
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            })
    }

    /// Reads and validates `pipeline.toml` in `dir`, and the input files it
    /// names (`Inputs::Check`: what `pipe validate` and `pipe build` do).
    pub fn load(dir: &Path) -> Result<Pipeline> {
        Self::load_with(dir, Inputs::Check)
    }

    /// Reads and validates `pipeline.toml` in `dir` without touching the
    /// input files it names and without its `[packages.NAME]` tables
    /// (`Inputs::StoreOnly`): what the commands that work on the store
    /// (publish, promote, rollback, refresh, history, status, deploy) need,
    /// at a cost independent of the number of packages and inputs. The
    /// returned [`Pipeline::packages`] is empty.
    pub fn load_model(dir: &Path) -> Result<Pipeline> {
        Self::load_with(dir, Inputs::StoreOnly)
    }

    /// Reads and validates `pipeline.toml` in `dir`, its inputs as `inputs`
    /// says.
    pub(crate) fn load_with(dir: &Path, inputs: Inputs) -> Result<Pipeline> {
        let file = dir.join(PIPELINE_FILE);
        let source = match std::fs::read_to_string(&file) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::Usage {
                    message: format!("no `{PIPELINE_FILE}` in {}", display_dir(dir)),
                    hint: Some(
                        "run `pipe init` to write a starter, or `pipe -C DIR ...` to point at the project"
                            .into(),
                    ),
                });
            }
            Err(e) => return Err(Error::io(&file, e)),
        };
        Self::from_source_with(&file, dir, &source, inputs)
    }

    /// Validates `source`, the text of `file`, and the input files it names;
    /// relative paths resolve against `dir`.
    pub fn from_source(file: &Path, dir: &Path, source: &str) -> Result<Pipeline> {
        Self::from_source_with(file, dir, source, Inputs::Check)
    }

    /// Validates `source`, the text of `file`, its inputs as `inputs` says.
    pub(crate) fn from_source_with(
        file: &Path,
        dir: &Path,
        source: &str,
        inputs: Inputs,
    ) -> Result<Pipeline> {
        let shown = display_path(file);
        parse::parse(&shown, dir, source, inputs).map_err(Error::Config)
    }

    /// The absolute path of `pipeline.toml` (`file` is as the user should see
    /// it, possibly relative to the working directory).
    pub(crate) fn file_abs(&self) -> PathBuf {
        self.dir.join(PIPELINE_FILE)
    }

    /// Environment names in promotion order: every environment comes after the
    /// one it is promoted `from`.
    pub fn promotion_order(&self) -> Vec<&Environment> {
        let mut out: Vec<&Environment> = Vec::new();
        let mut remaining: Vec<&Environment> = self.environments.iter().collect();
        while !remaining.is_empty() {
            let before = remaining.len();
            remaining.retain(|e| {
                let ready = e
                    .from
                    .as_ref()
                    .is_none_or(|f| out.iter().any(|o| &o.name == f));
                if ready {
                    out.push(e);
                }
                !ready
            });
            if remaining.len() == before {
                // Validation rejects cycles; keep declaration order regardless.
                out.append(&mut remaining);
            }
        }
        out
    }
}

/// A path as the user should see it: relative to the working directory when
/// it is inside it.
fn display_path(path: &Path) -> PathBuf {
    let path = path.strip_prefix(".").unwrap_or(path);
    match std::env::current_dir() {
        Ok(cwd) => path.strip_prefix(&cwd).unwrap_or(path).to_path_buf(),
        Err(_) => path.to_path_buf(),
    }
}

fn display_dir(dir: &Path) -> String {
    let shown = display_path(dir);
    if shown.as_os_str().is_empty() {
        "the current directory".into()
    } else {
        format!("`{}`", shown.display())
    }
}
