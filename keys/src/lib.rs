//! OpenPGP keys, signing and verification for pipe, on `sequoia-openpgp`.
//!
//! - [`SecretKey`]: generate (`pipe keys generate`), load (pipe's or GnuPG's
//!   secret keys, optionally passphrase-protected), write (mode 0600, never
//!   overwriting), rotate (`pipe keys rotate`), and sign: detached
//!   signatures over a stream (armored or binary; also what the `rpm`
//!   crate's `Signing` trait needs) and clearsigned text (apt `InRelease`).
//! - [`Keyring`]: the public keys a consumer trusts, loaded from armored or
//!   binary bytes, exported for `rpm --import` / apt `signed-by=` /
//!   `pipe deploy --keyring` (`pipe keys export`), listed (`pipe keys list`),
//!   and the only source of keys for verifying detached and clearsigned
//!   signatures.
//! - [`Error`]: one error type whose messages name the key and the reason.
//!
//! All signatures are OpenPGP v4 with SHA-256, dated at a time the caller
//! gives (so builds can clamp it to `SOURCE_DATE_EPOCH`), and reproducible:
//! the same key, time and data give the same bytes (RSA and Ed25519 keys).
//! Keys and signatures are judged with sequoia's `StandardPolicy`.
//!
//! An adapter for the `rpm` crate's `signature::Signing` trait
//! (`fn sign(&self, data: impl Read, t: rpm::Timestamp) -> Result<Vec<u8>>`,
//! `fn algorithm(&self) -> AlgorithmType`) is a thin wrapper:
//!
//! ```text
//! #[derive(Debug)]
//! struct RpmSigner { key: keys::SecretKey, algorithm: rpm::signature::AlgorithmType }
//! impl rpm::signature::Signing for RpmSigner {
//!     type Signature = Vec<u8>;
//!     fn sign(&self, data: impl std::io::Read, t: rpm::Timestamp) -> Result<Vec<u8>, rpm::Error> {
//!         let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(t.into());
//!         self.key.sign_detached(data, time, keys::Encoding::Binary).map_err(/* ... */)
//!     }
//!     fn algorithm(&self) -> rpm::signature::AlgorithmType { self.algorithm }
//! }
//! // algorithm: from key.signing_algorithm(time)?: Rsa => RSA, Ecdsa => ECDSA, EdDsa => EdDSA
//! ```
#![deny(missing_docs)]

mod error;
mod info;
mod key;
mod keyring;
mod sig;
mod time;

pub use error::{Error, Result};
pub use info::{KeyInfo, RevocationInfo, SubkeyInfo};
pub use key::{Algorithm, GenerateOptions, RotateOptions, Rotation, SecretKey, SignatureAlgorithm};
pub use keyring::{Keyring, Verified};
pub use time::Timestamp;

/// How signatures and keyrings are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// ASCII armor (`-----BEGIN PGP ...-----`).
    Armored,
    /// Raw OpenPGP packets.
    Binary,
}

/// The policy every key and signature is judged by.
static POLICY: &sequoia_openpgp::policy::StandardPolicy<'static> =
    &sequoia_openpgp::policy::StandardPolicy::new();
