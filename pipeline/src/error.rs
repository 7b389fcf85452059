//! The one error type of the `pipeline` crate.
//!
//! Variants carry what was expected and what was found, so a message needs no
//! guesswork; [`Error::hint`] says what to do next and [`Error::exit_code`]
//! maps each failure onto the exit codes of DESIGN.md.

use std::path::PathBuf;

use crate::model::Diagnostics;

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Exit code: success.
pub const EXIT_OK: i32 = 0;
/// Exit code: a failure that is not one of the kinds below.
pub(crate) const EXIT_FAILURE: i32 = 1;
/// Exit code: a usage or configuration error.
pub const EXIT_USAGE: i32 = 2;
/// Exit code: a signature, digest or size did not verify.
pub const EXIT_VERIFY: i32 = 3;
/// Exit code: a concurrent change won a compare-and-swap.
pub(crate) const EXIT_CONFLICT: i32 = 4;

/// Everything that can go wrong in the core.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `pipeline.toml` is malformed or fails validation; every problem found is
    /// in the list, each with its file, line and column.
    #[error("{0}")]
    Config(Diagnostics),

    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },

    /// An OCI registry failed or refused an operation on an image.
    #[error("registry `{registry}`: {action} `{image}` failed: {reason}")]
    Registry {
        /// `HOST[:PORT]`.
        registry: String,
        /// The repository (`NAMESPACE/NAME`).
        image: String,
        /// What was being done (`uploading a blob of`, `pushing the manifest of`).
        action: &'static str,
        /// Unreachable, unauthorised or refused.
        kind: RegistryFailure,
        /// What the registry (or the connection) said.
        reason: String,
    },

    /// A usage error that is not about `pipeline.toml` (a bad flag value, a file
    /// that would be overwritten).
    #[error("{message}")]
    Usage {
        /// What is wrong.
        message: String,
        /// What to do about it.
        hint: Option<String>,
    },

    /// The store URL is not one pipe understands.
    #[error("invalid store URL `{url}`: {reason}")]
    StoreUrl {
        /// The URL as given.
        url: String,
        /// Why it was rejected.
        reason: String,
    },

    /// A key that must exist does not.
    #[error("`{key}` is not in the store")]
    NotFound {
        /// The store key.
        key: String,
    },

    /// A create-only write found the key already there.
    #[error("`{key}` already exists in the store")]
    AlreadyExists {
        /// The store key.
        key: String,
    },

    /// A compare-and-swap lost: the key changed since it was read.
    #[error(
        "conflict on `{key}`: expected version {}, found {}",
        expected.as_deref().unwrap_or("(absent)"),
        found.as_deref().unwrap_or("(absent)")
    )]
    Conflict {
        /// The store key.
        key: String,
        /// The version the writer based its change on (`None`: expected absent).
        expected: Option<String>,
        /// The version in the store now, when known (`None`: absent or unknown).
        found: Option<String>,
    },

    /// The pointer moved, but some consumer views of the environment were
    /// not regenerated.
    #[error("`{env}` points at `{build}`, but {} of its views failed: {}", failed.len(), failed.join("; "))]
    Views {
        /// The environment.
        env: String,
        /// The build it points at.
        build: String,
        /// `view: error`, per failed view.
        failed: Vec<String>,
    },

    /// `pipe fsck` found objects that do not verify (its report lists them).
    #[error("{problems} problem(s) in the store {url}{}", if *repair { " remain after the repair" } else { "" })]
    Damaged {
        /// The store.
        url: String,
        /// How many.
        problems: usize,
        /// True after `--repair`: what is left could not be repaired here.
        repair: bool,
    },

    /// Bytes read back from the store do not hash to the key they are stored
    /// under, or are not the recorded size.
    #[error("`{key}` is corrupt: expected {expected}, got {actual}")]
    DigestMismatch {
        /// The store key.
        key: String,
        /// The digest (or size) the key promises.
        expected: String,
        /// The digest (or size) of the bytes actually read.
        actual: String,
    },

    /// The store's root object says it was written by a newer pipe.
    #[error("the store at {url} has format {found}; this pipe reads format {supported} at most")]
    StoreFormat {
        /// The store URL.
        url: String,
        /// The format version found in the store's root object.
        found: u64,
        /// The newest format this pipe understands.
        supported: u64,
    },

    /// An S3 server that does not honour conditional writes, so it cannot keep
    /// the compare-and-swap promise.
    #[error("the S3 endpoint {endpoint} (bucket `{bucket}`) ignores conditional writes: {detail}")]
    CasUnsupported {
        /// The endpoint URL.
        endpoint: String,
        /// The bucket.
        bucket: String,
        /// What the probe saw.
        detail: String,
    },

    /// The S3 endpoint could not be reached, or did not answer within the
    /// timeouts and the operation's deadline.
    #[error(
        "the S3 endpoint {endpoint} (bucket `{bucket}`) did not answer {operation} `{key}`: {detail}"
    )]
    Unreachable {
        /// The endpoint URL.
        endpoint: String,
        /// The bucket.
        bucket: String,
        /// The S3 operation (`GetObject`, ...).
        operation: &'static str,
        /// The store key.
        key: String,
        /// What the connection attempt saw.
        detail: String,
    },

    /// No S3 credentials were found, so no request was sent.
    #[error(
        "no S3 credentials were found for the endpoint {endpoint} (bucket `{bucket}`): {detail}"
    )]
    NoCredentials {
        /// The endpoint URL.
        endpoint: String,
        /// The bucket.
        bucket: String,
        /// What the credential providers said.
        detail: String,
    },

    /// The S3 endpoint refused the credentials or the request.
    #[error("the S3 endpoint {endpoint} refused access to bucket `{bucket}`: {detail}")]
    AccessDenied {
        /// The endpoint URL.
        endpoint: String,
        /// The bucket.
        bucket: String,
        /// What the server said.
        detail: String,
    },

    /// Any other failure of an S3 request.
    #[error("S3 request {operation} on `{key}` failed at {endpoint}: {detail}")]
    S3 {
        /// The S3 operation (`PutObject`, ...).
        operation: &'static str,
        /// The store key.
        key: String,
        /// The endpoint URL.
        endpoint: String,
        /// What the server or the client said.
        detail: String,
    },
    /// An object in the store exists but is not what pipe wrote there (an
    /// unreadable root object, a truncated pointer).
    #[error("`{key}` in the store at {url} is not valid: {detail}")]
    Corrupt {
        /// The store URL.
        url: String,
        /// The store key.
        key: String,
        /// What is wrong with it.
        detail: String,
    },

    /// An object read whole from the store (a record, a pointer, a
    /// manifest) is larger than pipe reads before checking it.
    #[error("`{key}` in the store is {size} bytes, more than the {max} bytes pipe reads of it")]
    TooLarge {
        /// The store key.
        key: String,
        /// Its size, or the bytes read before stopping.
        size: u64,
        /// The limit.
        max: u64,
    },

    /// A store key that pipe refuses to use (`..`, a leading `/`, an empty
    /// segment, a name the store reserves for itself).
    #[error("invalid store key `{key}`: {reason}")]
    InvalidKey {
        /// The key as given.
        key: String,
        /// Why it was rejected.
        reason: String,
    },

    /// A build step failed; nothing of it was stored.
    #[error("step `{step}` {failure}")]
    Step {
        /// The step name.
        step: String,
        /// What went wrong.
        failure: StepFailure,
    },

    /// A key, signing or verification problem; the message names the key or
    /// file and the reason.
    #[error(transparent)]
    Keys(#[from] keys::Error),

    /// A stage could not build its artifact (a vanished or unreadable input,
    /// a symlink leaving the project, a name an archive cannot carry).
    #[error(transparent)]
    Stage(#[from] stages::Error),

    /// A repository index could not be rendered or signed (a recorded
    /// control text apt would misread, two files for one package version).
    #[error(transparent)]
    Index(#[from] repo_index::Error),

    /// Something signed or recorded does not match what is on disk or in the
    /// store: a tampered artifact, manifest or provenance.
    #[error("{what}: {detail}")]
    Verify {
        /// What failed to verify (a file, a signature).
        what: String,
        /// Expected against actual, or why.
        detail: String,
    },

    /// `[deploy] after` failed in a target; `current` was switched back.
    #[error(
        "`[deploy] after` in {} {failure}; `current` was switched back to {}",
        target.display(),
        restored.as_deref().unwrap_or("nothing (there was no release before)")
    )]
    After {
        /// The target directory.
        target: PathBuf,
        /// How the command failed.
        failure: StepFailure,
        /// The build `current` points at again.
        restored: Option<String>,
    },

    /// The signing key cannot sign now (expired, revoked, not yet valid).
    #[error("cannot sign with the project key: {0}")]
    Signing(keys::Error),
}

/// Why a build step failed; part of [`Error::Step`].
#[derive(Debug)]
pub enum StepFailure {
    /// The command exited unsuccessfully.
    Exited {
        /// Exit code, or `None` when killed by a signal.
        code: Option<i32>,
        /// The last lines of its standard error.
        stderr_tail: String,
        /// Where its full output is.
        log: PathBuf,
    },
    /// The command succeeded but did not write a declared output.
    MissingOutput {
        /// The declared output path.
        path: String,
    },
    /// An input glob matches no file.
    NoInput {
        /// The glob.
        glob: String,
    },
    /// The command could not be started.
    Spawn(std::io::Error),
}

impl std::fmt::Display for StepFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StepFailure::Exited {
                code,
                stderr_tail,
                log,
            } => {
                match code {
                    Some(c) => write!(f, "exited with code {c}")?,
                    None => write!(f, "was killed by a signal")?,
                }
                if stderr_tail.trim().is_empty() {
                    write!(
                        f,
                        " (no output on stderr; full output in {})",
                        log.display()
                    )
                } else {
                    write!(
                        f,
                        "; the end of its stderr (full output in {}):\n{}",
                        log.display(),
                        stderr_tail.trim_end()
                    )
                }
            }
            StepFailure::MissingOutput { path } => {
                write!(f, "did not write its declared output `{path}`")
            }
            StepFailure::NoInput { glob } => write!(f, "input `{glob}` matches no file"),
            StepFailure::Spawn(e) => write!(f, "could not be started: {e}"),
        }
    }
}

/// Why a registry operation failed, for the hint and the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RegistryFailure {
    /// The registry could not be reached, or the connection broke.
    Unreachable,
    /// The registry wants credentials that were not given, or refused them.
    Unauthorized,
    /// The registry answered and refused the request.
    Refused,
}

impl Error {
    /// The process exit code this error maps onto (DESIGN.md, interface
    /// conventions).
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config(_) | Error::Usage { .. } | Error::StoreUrl { .. } => EXIT_USAGE,
            Error::DigestMismatch { .. }
            | Error::Verify { .. }
            | Error::TooLarge { .. }
            | Error::Damaged { .. } => EXIT_VERIFY,
            Error::Keys(e) if e.is_verification_failure() => EXIT_VERIFY,
            Error::Keys(keys::Error::Io { .. }) => EXIT_FAILURE,
            Error::Signing(_) => EXIT_USAGE,
            Error::Keys(_) => EXIT_USAGE,
            Error::Conflict { .. } | Error::AlreadyExists { .. } => EXIT_CONFLICT,
            // Missing or refused credentials are configuration, whichever
            // command meets them.
            Error::NoCredentials { .. } | Error::AccessDenied { .. } => EXIT_USAGE,
            _ => EXIT_FAILURE,
        }
    }

    /// What the user can do about it, when there is something to say.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::Config(_) => None,
            Error::Usage { hint, .. } => hint.clone(),
            Error::StoreUrl { .. } => Some(
                "use a directory path (the default is `.pipe/store`) or `s3://bucket/prefix`"
                    .into(),
            ),
            Error::Conflict { .. } => {
                Some("someone else changed it first; look at the new state and retry".into())
            }
            Error::Views { env, .. } => Some(format!(
                "the pointer stays where it moved; `pipe refresh --env {env}` regenerates the views"
            )),
            Error::Damaged { repair: false, .. } => Some(
                "`pipe fsck --repair`, run where the build directories are, repairs what signed metadata and local builds hold; each problem above names its repair"
                    .into(),
            ),
            Error::Damaged { repair: true, .. } => Some(
                "what is left needs a build directory that holds it (run `pipe fsck --repair` there) or a backup; each problem above says which"
                    .into(),
            ),
            Error::DigestMismatch { .. } => Some(
                "the stored bytes were changed or damaged; `pipe publish BUILD --read-back`, run where the build is, uploads them again"
                    .into(),
            ),
            Error::StoreFormat { .. } => Some("upgrade pipe to read this store".into()),
            Error::TooLarge { .. } => Some(
                "pipe never writes an object that large there: someone else did; remove it or restore it from a backup"
                    .into(),
            ),
            // A published blob read back with other bytes (`pipe verify --store`).
            Error::Verify { detail, .. } if detail.starts_with("its blob `blobs/") => Some(
                "the stored bytes were changed or damaged; `pipe publish BUILD --read-back`, run where the build is, uploads them again"
                    .into(),
            ),
            Error::NotFound { key } if key.starts_with("blobs/") => Some(
                "a published build names it but the store lost it; `pipe publish BUILD`, run where the build is, uploads it again"
                    .into(),
            ),
            Error::Step { failure: StepFailure::NoInput { .. }, .. } => Some(
                "fix the glob in the step's `inputs` (globs are relative to the directory holding pipeline.toml)"
                    .into(),
            ),
            Error::Step { failure: StepFailure::MissingOutput { .. }, .. } => Some(
                "make the command write it, or remove it from the step's `outputs`".into(),
            ),
            Error::After { .. } => Some(
                "fix the command or the release and deploy again; the failed release was removed".into(),
            ),
            Error::Signing(_) => Some(
                "make a new key with `pipe keys rotate` (or `pipe keys generate --out ...` and point `[signing] key` at it)"
                    .into(),
            ),
            Error::Corrupt { .. } => Some(
                "the object was damaged or written by something else; restore it from a backup or republish"
                    .into(),
            ),
            Error::CasUnsupported { .. } => Some(
                "use an S3 service that supports `If-Match`/`If-None-Match` on PutObject, or pass `--unsafe-no-cas` to accept that concurrent promotions may overwrite each other"
                    .into(),
            ),
            Error::Registry { kind: RegistryFailure::Unreachable, .. } => Some(
                "check that the registry is running and `[registry] url` (and `insecure` for plain HTTP); the same command run again finishes the push: blobs already there are skipped"
                    .into(),
            ),
            Error::Registry { kind: RegistryFailure::Unauthorized, .. } => Some(
                "log in with `podman login`/`docker login` (or set REGISTRY_AUTH_FILE, or PIPE_REGISTRY_USERNAME and PIPE_REGISTRY_PASSWORD); credential helpers are not run"
                    .into(),
            ),
            Error::Registry { kind: RegistryFailure::Refused, .. } => Some(
                "the registry refused the content; nothing was tagged, so fix the cause and run the command again"
                    .into(),
            ),
            Error::Unreachable { .. } => Some(
                "check `AWS_ENDPOINT_URL` (or the profile's `endpoint_url`) and that the server is running; on a slow link raise `[store] request_timeout` and `timeout` (or `--request-timeout`, `--timeout`)"
                    .into(),
            ),
            Error::S3 { detail, .. } if detail.starts_with("HTTP 5") => Some(
                "the server kept failing through every attempt: run the same command again once it recovers (it completes what this one left; `pipe fsck` checks the store), or raise `[store] attempts` (`--attempts`)"
                    .into(),
            ),
            Error::NoCredentials { .. } => Some(
                "set `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` or `AWS_PROFILE`; to read a bucket that allows anonymous reads, pass `--no-sign` (or `[store] no_sign = true`)"
                    .into(),
            ),
            Error::AccessDenied { .. } => Some(
                "check `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` or `AWS_PROFILE`, and the bucket policy"
                    .into(),
            ),
            Error::Stage(e) => e.hint(),
            Error::Io { path, source } if source.kind() == std::io::ErrorKind::StorageFull => Some(format!(
                "the file system holding `{}` is full (ENOSPC); what was being written was discarded, nothing half-written is kept: free space (`pipe gc` deletes what nothing refers to) and run the command again",
                path.display()
            )),
            _ => None,
        }
    }

    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
