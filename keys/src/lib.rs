//! OpenPGP keys, signing and verification for pipe, on `sequoia-openpgp`.
#![deny(missing_docs)]
