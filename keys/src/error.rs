//! The crate's error type.

use std::path::PathBuf;

use crate::Timestamp;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong with keys, signing and verification.
///
/// Every message names the key (by fingerprint) or the file concerned and,
/// where it helps, what to do; it is meant to be printed to an operator as is.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file that must be created already exists; it is never overwritten.
    #[error(
        "refusing to overwrite {}: the file already exists (move it away or choose another path)",
        path.display()
    )]
    FileExists {
        /// The existing file.
        path: PathBuf,
    },

    /// Reading or writing a file or stream failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, e.g. `cannot read /etc/pipe/release.key`.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A key file could not be parsed as OpenPGP (corrupt, truncated, not a key).
    #[error("{} is not a usable OpenPGP key file: {detail}", path.display())]
    CorruptKey {
        /// The file (or `<memory>` for keys given as bytes).
        path: PathBuf,
        /// What the parser found.
        detail: String,
    },

    /// A secret key was needed, but the file holds only a public key.
    #[error(
        "{} holds only the public key {fingerprint}, but a secret key is needed: \
         give the secret key file (from `pipe keys generate` or `gpg --export-secret-keys`)",
        path.display()
    )]
    NotASecretKey {
        /// The file.
        path: PathBuf,
        /// Fingerprint of the public key found in it.
        fingerprint: String,
    },

    /// A key file holds more than one key where exactly one is expected.
    #[error(
        "{} holds {} keys ({}); a signing key file must hold exactly one",
        path.display(), fingerprints.len(), fingerprints.join(", ")
    )]
    AmbiguousKey {
        /// The file.
        path: PathBuf,
        /// Fingerprints of all keys in it.
        fingerprints: Vec<String>,
    },

    /// The secret key is passphrase-protected and no passphrase was given.
    #[error(
        "secret key {fingerprint} is passphrase-protected and no passphrase was given \
         (set PIPE_SIGNING_PASSPHRASE)"
    )]
    PassphraseRequired {
        /// Fingerprint of the protected key.
        fingerprint: String,
    },

    /// The passphrase does not unlock the secret key.
    #[error("wrong passphrase for secret key {fingerprint}")]
    WrongPassphrase {
        /// Fingerprint of the key that could not be unlocked.
        fingerprint: String,
    },

    /// The key exists but cannot do what was asked (no signing capability,
    /// unsupported version or algorithm, rejected by policy, ...).
    #[error("key {fingerprint} cannot be used: {detail}")]
    UnusableKey {
        /// Fingerprint of the key.
        fingerprint: String,
        /// Why.
        detail: String,
    },

    /// A key algorithm name that `generate` does not know.
    #[error("unknown key algorithm {given:?}: expected one of rsa4096, rsa3072, ed25519")]
    UnknownAlgorithm {
        /// What was given.
        given: String,
    },

    /// The user ID given for a new key is not acceptable.
    #[error(
        "invalid user ID {uid:?}: {detail} (expected e.g. \"Release Signing <ops@example.com>\")"
    )]
    InvalidUserId {
        /// The user ID given.
        uid: String,
        /// What is wrong with it.
        detail: String,
    },

    /// Bytes given as a keyring are not an OpenPGP keyring.
    #[error("not a usable OpenPGP keyring: {detail}")]
    InvalidKeyring {
        /// What the parser found.
        detail: String,
    },

    /// A signature was made by a key that is not in the trusted keyring.
    #[error("signature made by key {issuer}, which is not in the trusted keyring")]
    UnknownSigner {
        /// Issuer fingerprint (or key ID when the signature names no fingerprint).
        issuer: String,
    },

    /// A signature does not verify: the data or the signature was altered,
    /// or the input is not a (supported) signature at all.
    #[error("bad signature{}: {detail}", signer.as_ref().map(|s| format!(" by key {s}")).unwrap_or_default())]
    BadSignature {
        /// The key the signature claims, when it is known.
        signer: Option<String>,
        /// What did not check out.
        detail: String,
    },

    /// The key was expired at the time of the signature.
    #[error("key {fingerprint} expired at {at}; the signature is dated {signed_at}")]
    KeyExpired {
        /// Fingerprint of the expired (sub)key.
        fingerprint: String,
        /// When it expired.
        at: Timestamp,
        /// The signature's creation time (or the requested signing time).
        signed_at: Timestamp,
    },

    /// The key was revoked at the time of the signature.
    #[error(
        "key {fingerprint} is revoked{} ({reason}); the signature is dated {signed_at}",
        at.map(|t| format!(" since {t}")).unwrap_or_default()
    )]
    KeyRevoked {
        /// Fingerprint of the revoked (sub)key.
        fingerprint: String,
        /// The reason given in the revocation, e.g.
        /// `Key is superseded: superseded by 0123...`.
        reason: String,
        /// When the revocation was issued.
        at: Option<Timestamp>,
        /// The signature's creation time (or the requested signing time).
        signed_at: Timestamp,
    },

    /// The signature is dated before the key was created. Happens when a
    /// clamped time (`SOURCE_DATE_EPOCH`) predates the key: sign at
    /// `max(time, SecretKey::created())`.
    #[error(
        "key {fingerprint} was created at {created}, after the signature time {signed_at} \
         (if the time comes from SOURCE_DATE_EPOCH, clamp it to the key's creation time)"
    )]
    KeyNotYetValid {
        /// Fingerprint of the (sub)key.
        fingerprint: String,
        /// When the key was created.
        created: Timestamp,
        /// The signature's creation time (or the requested signing time).
        signed_at: Timestamp,
    },

    /// Any other OpenPGP failure.
    #[error("OpenPGP operation failed: {detail}")]
    OpenPgp {
        /// The underlying error, with its causes.
        detail: String,
    },
}

impl Error {
    /// True for errors that mean "this signature must not be trusted"
    /// (unknown signer, bad signature, expired/revoked/not-yet-valid key),
    /// as opposed to I/O or usage problems. The CLI maps these to exit code 3.
    pub fn is_verification_failure(&self) -> bool {
        matches!(
            self,
            Error::UnknownSigner { .. }
                | Error::BadSignature { .. }
                | Error::KeyExpired { .. }
                | Error::KeyRevoked { .. }
                | Error::KeyNotYetValid { .. }
        )
    }

    pub(crate) fn openpgp(e: anyhow::Error) -> Error {
        Error::OpenPgp { detail: chain(&e) }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// An anyhow error with its causes, `a: b: c`.
pub(crate) fn chain(e: &anyhow::Error) -> String {
    let mut s = String::new();
    for (i, c) in e.chain().enumerate() {
        let c = c.to_string();
        if i > 0 {
            if s.ends_with(&c) {
                continue;
            }
            s.push_str(": ");
        }
        s.push_str(&c);
    }
    s
}
