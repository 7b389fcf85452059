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
    /// The `rpm` crate refused the package (a name or path it cannot carry).
    #[error("cannot build `{path}`: {source}")]
    Rpm {
        /// The package being written.
        path: PathBuf,
        /// What the rpm writer said.
        #[source]
        source: rpm::Error,
    },
}

impl Error {
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
