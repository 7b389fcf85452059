//! The one error type of the crate.

/// Why metadata could not be rendered or signed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A recorded control stanza cannot go into a `Packages` file as is.
    #[error("control stanza of {package}: {detail}")]
    BadControl {
        /// The package (its `Package` field, or the pool path if that is missing).
        package: String,
        /// What is wrong, and what to do about it.
        detail: String,
    },
    /// A recorded field is not valid for the index (a checksum that is not
    /// hex, a path with a newline, an unknown architecture, ...).
    #[error("{what}: {detail}")]
    BadInput {
        /// The package or setting concerned.
        what: String,
        /// What is wrong.
        detail: String,
    },
    /// Compressing an index failed (only on allocation failure in practice).
    #[error("cannot compress {path}: {source}")]
    Compress {
        /// The index file being compressed.
        path: String,
        /// The compressor's error.
        source: std::io::Error,
    },
    /// Signing the top file failed (unusable or expired key).
    #[error("cannot sign {path}: {source}")]
    Sign {
        /// The file being signed.
        path: String,
        /// The signing error.
        source: keys::Error,
    },
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
