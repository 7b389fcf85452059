//! The one error type of the crate.

use std::io;
use std::path::PathBuf;

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything a stage can fail on. Each variant names the path it is about and
/// what was expected instead of what was found.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A `src` of a mapping is gone (it existed when `pipeline.toml` was
    /// validated, or a symlink in it dangles).
    #[error(
        "source `{path}` does not exist (was it deleted or moved since the pipeline was validated?)"
    )]
    SourceVanished {
        /// The missing path on disk.
        path: PathBuf,
    },
    /// A source file or directory cannot be read.
    #[error("cannot read `{path}`: {source}")]
    Unreadable {
        /// The path on disk.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// A file name that tar, cpio or dpkg's line-based databases cannot
    /// carry (see [`crate::tree`] for the rule).
    #[error("cannot package `{path}`: {reason}")]
    BadFileName {
        /// The path on disk, shown lossily when it is not UTF-8.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A `src` that lies outside the project root, directly or through `..`.
    #[error("source `{path}` is outside the project root `{root}`")]
    SourceOutsideRoot {
        /// The source as given.
        path: PathBuf,
        /// The project root.
        root: PathBuf,
    },
    /// A symlink under a `src` that resolves outside the project root.
    #[error(
        "symlink `{link}` points to `{target}`, which resolves to `{resolved}`, outside the project root `{root}`"
    )]
    SymlinkOutsideRoot {
        /// The link on disk.
        link: PathBuf,
        /// Its target as written.
        target: PathBuf,
        /// The target resolved relative to the link's directory.
        resolved: PathBuf,
        /// The project root.
        root: PathBuf,
    },
    /// Two mappings produce the same destination path.
    #[error("destination `{dst}` is produced twice: by `{first}` and by `{second}`")]
    DuplicateDestination {
        /// The destination in the package.
        dst: String,
        /// The source that produced it first.
        first: PathBuf,
        /// The source that produced it again.
        second: PathBuf,
    },
    /// A destination that is not an absolute, normalised path.
    #[error("destination `{dst}` is invalid: expected {expected}, found {found}")]
    BadDestination {
        /// The destination as given.
        dst: String,
        /// What a destination must look like.
        expected: &'static str,
        /// What it has instead.
        found: String,
    },
    /// A file type no package format carries (socket, FIFO, device).
    #[error(
        "cannot package `{path}`: expected a regular file, directory or symlink, found a {found}"
    )]
    UnsupportedFileType {
        /// The path on disk.
        path: PathBuf,
        /// The kind of file found.
        found: &'static str,
    },
    /// A file whose size changed between resolving and packaging.
    #[error(
        "`{path}` changed while it was being packaged: expected {expected} bytes, found {found}"
    )]
    SourceChanged {
        /// The path on disk.
        path: PathBuf,
        /// The size when the tree was resolved.
        expected: u64,
        /// The size read.
        found: u64,
    },
    /// A package metadata value the format cannot carry.
    #[error("invalid {field} `{value}`: expected {expected}")]
    InvalidField {
        /// The field, in the format's spelling (`Package`, `Version`, ...).
        field: &'static str,
        /// The value given.
        value: String,
        /// What the format accepts.
        expected: String,
    },
    /// Writing the artifact failed.
    #[error("cannot write `{path}`: {source}")]
    Write {
        /// The file being written.
        path: PathBuf,
        /// What the OS (or the compressor) said.
        #[source]
        source: io::Error,
    },

    // ---- .rpm stage (`crate::rpm`) ----
    /// The signing key cannot sign (expired, revoked, no signing-capable key).
    #[error("cannot sign `{path}`: {source}")]
    Sign {
        /// The package being written.
        path: PathBuf,
        /// What the key said.
        #[source]
        source: keys::Error,
    },
    /// A package file that is not what its format says (reading, not
    /// writing: a truncated or foreign `.deb`).
    #[error("`{path}` is not a valid package: {reason}")]
    BadPackage {
        /// The package file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    // ---- OCI image stage (`crate::oci`) ----
    /// A base that is not an OCI image-layout or `docker save` archive, or
    /// one whose index, manifest or configuration cannot be read.
    #[error(
        "base image `{path}` is not an image: {reason}\nhint: give an OCI image-layout tarball (`skopeo copy IMAGE oci-archive:FILE`) or a `docker save` tarball (`docker-archive:FILE`)"
    )]
    BadBaseImage {
        /// The base tarball.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A blob of a base image whose bytes do not match the digest its
    /// manifest gives.
    #[error(
        "base image `{path}`: blob `{name}` does not match its digest: expected {expected}, found {found}\nhint: the tarball is corrupt or was edited; export the base again"
    )]
    BlobMismatch {
        /// The base tarball.
        path: PathBuf,
        /// The blob's name in the tarball.
        name: String,
        /// The digest the manifest (or the configuration) gives.
        expected: String,
        /// The digest of the bytes found.
        found: String,
    },
    /// A compressed base layer whose uncompressed bytes do not match the
    /// `diff_id` the image configuration gives for it.
    #[error(
        "base image `{path}`: layer `{layer}` uncompresses to {found}, but the configuration's diff_id for it is {expected}\nhint: the tarball is corrupt or was edited; export the base again"
    )]
    DiffIdMismatch {
        /// The base tarball.
        path: PathBuf,
        /// The layer's name in the tarball.
        layer: String,
        /// The configuration's `diff_id`.
        expected: String,
        /// The digest of the uncompressed bytes.
        found: String,
    },
    /// The `rpm` crate refused the package (a name or path it cannot carry).
    #[error("cannot build `{path}`: {source}")]
    Rpm {
        /// The package being written.
        path: PathBuf,
        /// What the rpm writer said.
        #[source]
        source: rpm::Error,
    },

    // ---- machine-image stage (`crate::machine`) ----
    /// Tools the bake or seed needs are not on `PATH`.
    #[error("{}", missing_tools(tools))]
    ToolMissing {
        /// Every missing tool.
        tools: Vec<crate::machine::tools::Tool>,
    },
    /// A tool could not be started.
    #[error("cannot run `{}`: {source}", tool.program())]
    ToolRun {
        /// The tool.
        tool: crate::machine::tools::Tool,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// A tool failed; its output (the tail) is shown.
    #[error("`{}` failed ({status}):\n{output}", tool.program())]
    ToolFailed {
        /// The tool.
        tool: crate::machine::tools::Tool,
        /// Its exit status.
        status: String,
        /// What it printed.
        output: String,
    },
    /// The base is not a root filesystem tarball.
    #[error("base `{tarball}` is not a root filesystem tarball: {reason}")]
    NotRootfs {
        /// The tarball.
        tarball: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// An entry of the base that would land outside the root, or that
    /// cannot be unpacked safely.
    #[error("base `{tarball}`: refusing entry `{entry}`: {reason}")]
    UnsafeEntry {
        /// The tarball.
        tarball: PathBuf,
        /// The entry's name as written.
        entry: String,
        /// Why.
        reason: String,
    },
    /// The operation needs root privileges.
    #[error("{what} needs root, and pipe is not running as root")]
    NeedsRoot {
        /// What needs it.
        what: &'static str,
    },
    /// Packages listed for a base that has no package database.
    #[error(
        "base `{base}` carries neither dpkg (`var/lib/dpkg/status`) nor rpm (`var/lib/rpm`), so the packages {} cannot be installed into it",
        packages.iter().map(|p| format!("`{p}`")).collect::<Vec<_>>().join(", ")
    )]
    NoPackageManager {
        /// The base tarball.
        base: PathBuf,
        /// The packages listed.
        packages: Vec<String>,
    },
    /// A package has no file in the format the base's manager installs.
    #[error("package `{package}` has no {} file to install into this {} base", match manager { crate::machine::PackageManager::Dpkg => ".deb", crate::machine::PackageManager::Rpm => ".rpm" }, manager.name())]
    NoPackageFile {
        /// The package.
        package: String,
        /// The base's manager.
        manager: crate::machine::PackageManager,
    },
    /// dpkg or rpm failed.
    #[error("installing the packages with {} failed ({status}):\n{output}", manager.name())]
    PackageInstall {
        /// The manager.
        manager: crate::machine::PackageManager,
        /// Its exit status.
        status: String,
        /// What it printed.
        output: String,
    },
    /// The post-install script failed.
    #[error("post-install script `{script}` failed ({status}); its output:\n{output}")]
    PostInstall {
        /// The script.
        script: PathBuf,
        /// Its exit status.
        status: String,
        /// What it printed (stdout and stderr).
        output: String,
    },
    /// The disk size cannot hold the content.
    #[error("disk size {} is too small for the image's content: it needs at least {}", human(*size), human(*needed))]
    DiskTooSmall {
        /// The size given.
        size: u64,
        /// The smallest size that fits (whole MiB).
        needed: u64,
    },
}

fn missing_tools(tools: &[crate::machine::tools::Tool]) -> String {
    let list: Vec<String> = tools
        .iter()
        .map(|t| {
            format!(
                "`{}` (Debian package `{}`)",
                t.program(),
                t.debian_package()
            )
        })
        .collect();
    format!(
        "required tool{} not found on PATH: {}",
        if tools.len() == 1 { "" } else { "s" },
        list.join(", ")
    )
}

/// `n` bytes in MiB (or GiB when whole), as `size` is written.
fn human(n: u64) -> String {
    const MIB: u64 = 1 << 20;
    if n.is_multiple_of(1 << 30) {
        format!("{}G", n >> 30)
    } else if n.is_multiple_of(MIB) {
        format!("{}M", n / MIB)
    } else {
        format!("{n} bytes")
    }
}

impl Error {
    /// What the user can do about it, when there is something to say.
    pub fn hint(&self) -> Option<String> {
        use crate::machine::tools::Tool;
        match self {
            Error::ToolMissing { tools } => {
                let mut pkgs: Vec<&str> = tools.iter().map(|t| t.debian_package()).collect();
                pkgs.dedup();
                let sbin = tools.iter().any(|t| matches!(t, Tool::Mke2fs | Tool::Debugfs | Tool::Chroot | Tool::MkfsVfat));
                Some(format!(
                    "install them with `apt-get install {}`{}",
                    pkgs.join(" "),
                    if sbin { "; they live in /usr/sbin, which must be on PATH" } else { "" }
                ))
            }
            Error::NotRootfs { .. } => Some(
                "give a tarball of a whole root filesystem, e.g. `mmdebstrap --variant=essential bookworm rootfs.tar.gz`".into(),
            ),
            Error::UnsafeEntry { .. } => Some("rebuild the base tarball from a clean root filesystem; pipe does not unpack entries outside the root".into()),
            Error::NeedsRoot { .. } => Some("run the build as root (sudo, or a root container)".into()),
            Error::NoPackageManager { .. } => Some(
                "use a Debian or rpm-based root filesystem as the base, or remove `packages` from the machine and copy files in with `post_install`".into(),
            ),
            Error::NoPackageFile { manager, .. } => Some(format!(
                "add `{}` to the package's `formats`",
                match manager { crate::machine::PackageManager::Dpkg => "deb", crate::machine::PackageManager::Rpm => "rpm" }
            )),
            Error::PackageInstall { .. } => Some("a package's dependencies must be in the base (dpkg installs no dependencies); add them to the base or to the machine's `packages`".into()),
            Error::PostInstall { .. } => Some("fix the script; nothing was stored for this build".into()),
            Error::DiskTooSmall { needed, .. } => Some(format!("set the machine's `size` to at least `\"{}\"`", human(*needed))),
            _ => None,
        }
    }

    /// An error reading `path`: a vanished file is told apart from one that
    /// cannot be read.
    pub(crate) fn read(path: impl Into<PathBuf>, source: io::Error) -> Error {
        let path = path.into();
        if source.kind() == io::ErrorKind::NotFound {
            Error::SourceVanished { path }
        } else {
            Error::Unreadable { path, source }
        }
    }

    pub(crate) fn write(path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Write {
            path: path.into(),
            source,
        }
    }
}
