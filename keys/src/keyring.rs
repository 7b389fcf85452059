//! Public keyrings and verification.

use std::io::Read;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use openpgp::cert::prelude::*;
use openpgp::packet::Signature;
use openpgp::parse::Parse;
use openpgp::parse::stream::{
    DetachedVerifierBuilder, GoodChecksum, MessageLayer, MessageStructure, VerificationError,
    VerificationHelper, VerifierBuilder,
};
use openpgp::serialize::{Serialize as _, SerializeInto as _};
use openpgp::types::RevocationStatus;
use openpgp::{Cert, Fingerprint, KeyHandle, armor};
use sequoia_openpgp as openpgp;

use crate::error::chain;
use crate::info::{KeyInfo, key_info};
use crate::{Encoding, Error, POLICY, Result, Timestamp};

/// A set of public keys trusted for verification.
///
/// Verification uses these keys and nothing else: no key embedded in a
/// message, found in a store or in a GnuPG home is ever consulted.
#[derive(Clone, Debug)]
pub struct Keyring {
    certs: Vec<Cert>,
}

/// Who signed, and when: the result of a successful verification.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Verified {
    /// Fingerprint of the signer's primary key (what `pipe keys list` shows).
    pub fingerprint: String,
    /// Fingerprint of the (sub)key that made the signature; equal to
    /// `fingerprint` for keys made by pipe.
    pub signing_key: String,
    /// The signer's primary user ID, if any.
    pub user_id: Option<String>,
    /// The signature's creation time.
    pub signed_at: Timestamp,
}

impl Keyring {
    pub(crate) fn from_certs(certs: Vec<Cert>) -> Keyring {
        Keyring { certs }
    }

    /// Parses a keyring: one or more public keys, armored (`rpm --import`
    /// style) or binary (apt `signed-by=` style). Secret key material, if
    /// any, is dropped. Errors with [`Error::InvalidKeyring`] if the bytes
    /// are not OpenPGP or hold no key.
    pub fn from_bytes(bytes: &[u8]) -> Result<Keyring> {
        let invalid = |detail: String| Error::InvalidKeyring { detail };
        let parsed = openpgp::cert::CertParser::from_bytes(bytes)
            .map_err(|e| invalid(chain(&e)))?
            .collect::<openpgp::Result<Vec<Cert>>>()
            .map_err(|e| invalid(chain(&e)))?;
        if parsed.is_empty() {
            return Err(invalid("it holds no OpenPGP key".into()));
        }
        let mut ring = Keyring { certs: Vec::new() };
        for cert in parsed {
            ring.add(cert.strip_secret_key_material())?;
        }
        Ok(ring)
    }

    /// Reads a keyring file (see [`Keyring::from_bytes`]).
    pub fn load(path: &Path) -> Result<Keyring> {
        let bytes = std::fs::read(path)
            .map_err(|e| Error::io(format!("cannot read keyring {}", path.display()), e))?;
        Keyring::from_bytes(&bytes).map_err(|e| match e {
            Error::InvalidKeyring { detail } => Error::InvalidKeyring {
                detail: format!("{}: {detail}", path.display()),
            },
            other => other,
        })
    }

    /// Adds the keys of `other`; a key already present is merged (new
    /// signatures such as revocations or certifications are added).
    pub fn merge(&mut self, other: &Keyring) -> Result<()> {
        for cert in &other.certs {
            self.add(cert.clone())?;
        }
        Ok(())
    }

    fn add(&mut self, cert: Cert) -> Result<()> {
        match self
            .certs
            .iter_mut()
            .find(|c| c.fingerprint() == cert.fingerprint())
        {
            Some(existing) => {
                *existing = existing
                    .clone()
                    .merge_public(cert)
                    .map_err(Error::openpgp)?;
            }
            None => self.certs.push(cert),
        }
        Ok(())
    }

    /// Serialises the keyring: [`Encoding::Armored`] gives one
    /// `PGP PUBLIC KEY BLOCK` (for `rpm --import`, `pipe deploy --keyring`),
    /// [`Encoding::Binary`] the concatenated keys, which is the format of
    /// apt's `signed-by=` keyrings and `gpgv --keyring`. Deterministic.
    pub fn to_bytes(&self, encoding: Encoding) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        match encoding {
            Encoding::Binary => {
                for cert in &self.certs {
                    out.extend_from_slice(&cert.to_vec().map_err(Error::openpgp)?);
                }
            }
            Encoding::Armored => {
                let mut w = armor::Writer::new(&mut out, armor::Kind::PublicKey)
                    .map_err(|e| Error::io("cannot armor keyring", e))?;
                for cert in &self.certs {
                    cert.serialize(&mut w).map_err(Error::openpgp)?;
                }
                w.finalize()
                    .map_err(|e| Error::io("cannot armor keyring", e))?;
            }
        }
        Ok(out)
    }

    /// Fingerprints, algorithms, creation and expiry of every key (`pipe keys list`).
    pub fn keys(&self) -> Vec<KeyInfo> {
        self.certs.iter().map(key_info).collect()
    }

    /// Verifies a detached signature (armored or binary) over everything
    /// `data` yields, streaming. `at` is the reference time (default now):
    /// signatures dated after it are rejected. Whether the signing key was
    /// valid is judged at the signature's own time, so a signature made
    /// before its key expired or was retired (soft-revoked) still verifies;
    /// a hard revocation (key compromised, or no reason) invalidates every
    /// signature.
    ///
    /// If the input holds several signatures, the first good one is
    /// returned; if none is good, the error of the first one.
    ///
    /// Errors: [`Error::UnknownSigner`], [`Error::BadSignature`],
    /// [`Error::KeyExpired`], [`Error::KeyRevoked`], [`Error::KeyNotYetValid`]
    /// (all [`Error::is_verification_failure`]).
    pub fn verify_detached<R: Read + Send + Sync>(
        &self,
        data: R,
        signature: &[u8],
        at: Option<SystemTime>,
    ) -> Result<Verified> {
        let (helper, verdict) = Helper::new(&self.certs);
        let builder = DetachedVerifierBuilder::from_bytes(signature).map_err(not_a_signature)?;
        // Errors reading `data` are I/O errors; every other failure means the
        // signature is unusable. Sequoia reports both alike, so note ours.
        let read_error = Arc::new(Mutex::new(None));
        let data = RecordErrors {
            inner: data,
            error: read_error.clone(),
        };
        let streamed = builder
            .with_policy(POLICY, at, helper)
            .and_then(|mut verifier| verifier.verify_reader(data));
        if let Some(e) = lock(&read_error).take() {
            return Err(Error::io("cannot read the signed data", e));
        }
        outcome(&verdict, streamed)
    }

    /// Verifies a clearsigned document (`InRelease`) and returns the signer
    /// and the signed text, dash-escaping removed and every line ending in
    /// `\n` (what `gpg --decrypt` prints). Only the returned text is
    /// authenticated: parse that, never the input. Anything but a
    /// `-----BEGIN PGP SIGNED MESSAGE-----` document is rejected. Same rules
    /// and errors as [`Keyring::verify_detached`].
    pub fn verify_clearsigned(
        &self,
        message: &[u8],
        at: Option<SystemTime>,
    ) -> Result<(Verified, Vec<u8>)> {
        if !message
            .trim_ascii_start()
            .starts_with(b"-----BEGIN PGP SIGNED MESSAGE-----")
        {
            return Err(Error::BadSignature {
                signer: None,
                detail: "not a clearsigned document (no -----BEGIN PGP SIGNED MESSAGE----- line)"
                    .into(),
            });
        }
        let (helper, verdict) = Helper::new(&self.certs);
        let builder = VerifierBuilder::from_bytes(message).map_err(not_a_signature)?;
        let mut text = Vec::new();
        // For small messages the verifier checks the signatures while it
        // is being built; the verdict is collected from the helper either way.
        let read = builder
            .with_policy(POLICY, at, helper)
            .and_then(|mut verifier| {
                verifier.read_to_end(&mut text)?;
                if !verifier.message_processed() {
                    return Err(anyhow::anyhow!("the message was not completely processed"));
                }
                Ok(())
            });
        let verified = outcome(&verdict, read)?;
        // The signed text excludes the line ending before the signature;
        // every line of the returned text ends with one, as with gpg.
        text.push(b'\n');
        Ok((verified, text))
    }
}

/// The input could not even be parsed as a signature.
fn not_a_signature(e: anyhow::Error) -> Error {
    Error::BadSignature {
        signer: None,
        detail: format!("not a valid OpenPGP signature: {}", chain(&e)),
    }
}

type Verdict = Arc<Mutex<Option<Result<Verified>>>>;

/// The verdict once sequoia finished with `streamed`: the helper's, if it
/// got to check the signatures, else what sequoia reported.
fn outcome(verdict: &Verdict, streamed: openpgp::Result<()>) -> Result<Verified> {
    match (lock(verdict).take(), streamed) {
        (Some(Err(e)), _) => Err(e),
        (Some(Ok(v)), Ok(())) => Ok(v),
        (_, Err(e)) => Err(not_a_signature(e)),
        (None, Ok(())) => Err(Error::BadSignature {
            signer: None,
            detail: "no signature was checked".into(),
        }),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A reader that keeps a copy of the first error it returns.
struct RecordErrors<R> {
    inner: R,
    error: Arc<Mutex<Option<std::io::Error>>>,
}

impl<R: Read> Read for RecordErrors<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read(buf).inspect_err(|e| {
            if e.kind() != std::io::ErrorKind::Interrupted {
                lock(&self.error)
                    .get_or_insert_with(|| std::io::Error::new(e.kind(), e.to_string()));
            }
        })
    }
}

struct Helper<'a> {
    certs: &'a [Cert],
    verdict: Verdict,
}

impl<'a> Helper<'a> {
    fn new(certs: &'a [Cert]) -> (Self, Verdict) {
        let verdict = Verdict::default();
        (
            Helper {
                certs,
                verdict: verdict.clone(),
            },
            verdict,
        )
    }
}

impl VerificationHelper for Helper<'_> {
    fn get_certs(&mut self, _ids: &[KeyHandle]) -> openpgp::Result<Vec<Cert>> {
        // Only the caller's keyring, whatever the message names.
        Ok(self.certs.to_vec())
    }

    fn check(&mut self, structure: MessageStructure) -> openpgp::Result<()> {
        let mut good = None;
        let mut first_error = None;
        let mut saw_signature = false;
        for layer in structure.into_iter() {
            match layer {
                MessageLayer::SignatureGroup { results } => {
                    for result in results {
                        saw_signature = true;
                        match result.map_err(verification_error).and_then(good_checksum) {
                            Ok(v) => {
                                good.get_or_insert(v);
                            }
                            Err(e) => {
                                first_error.get_or_insert(e);
                            }
                        }
                    }
                }
                MessageLayer::Encryption { .. } => {
                    first_error.get_or_insert(Error::BadSignature {
                        signer: None,
                        detail: "the message is encrypted, not a signed document".into(),
                    });
                }
                MessageLayer::Compression { .. } => {}
            }
        }
        let verdict = match (good, first_error) {
            (Some(v), _) => Ok(v),
            (None, Some(e)) => Err(e),
            (None, None) => Err(Error::BadSignature {
                signer: None,
                detail: if saw_signature {
                    "no signature verified".into()
                } else {
                    "the message is not signed".into()
                },
            }),
        };
        let failed = verdict.as_ref().err().map(|e| e.to_string());
        *lock(&self.verdict) = Some(verdict);
        match failed {
            None => Ok(()),
            Some(msg) => Err(anyhow::anyhow!(msg)),
        }
    }
}

/// Accepts a good checksum only if the signature's 2-byte digest prefix
/// (not covered by the signature) also matches, so that no byte of a
/// signature can be altered without detection.
fn good_checksum(g: GoodChecksum<'_>) -> Result<Verified> {
    let signer = g.ka.key().fingerprint().to_hex();
    let computed = g.sig.computed_digest().unwrap_or_default();
    if computed.get(..2) != Some(g.sig.digest_prefix().as_slice()) {
        return Err(Error::BadSignature {
            signer: Some(signer),
            detail: "the signature's digest prefix does not match the data".into(),
        });
    }
    let cert = g.ka.cert();
    Ok(Verified {
        fingerprint: cert.fingerprint().to_hex(),
        signing_key: signer,
        user_id: g
            .ka
            .valid_cert()
            .primary_userid()
            .ok()
            .map(|u| String::from_utf8_lossy(u.userid().value()).into_owned()),
        signed_at: g
            .sig
            .signature_creation_time()
            .map(Timestamp::from)
            .unwrap_or(Timestamp::from_unix(0)),
    })
}

fn issuer(sig: &Signature) -> String {
    let issuers = sig.get_issuers();
    issuers
        .iter()
        .find(|h| matches!(h, KeyHandle::Fingerprint(_)))
        .or_else(|| issuers.first())
        .map(|h| h.to_hex())
        .unwrap_or_else(|| "(the signature names no issuer)".into())
}

fn sig_time(sig: &Signature) -> SystemTime {
    sig.signature_creation_time()
        .unwrap_or(std::time::UNIX_EPOCH)
}

fn verification_error(e: VerificationError<'_>) -> Error {
    match e {
        VerificationError::MissingKey { sig } => Error::UnknownSigner {
            issuer: issuer(sig),
        },
        VerificationError::UnboundKey { sig, cert, error } => {
            let key = cert
                .keys()
                .key_handles(sig.get_issuers())
                .next()
                .map(|ka| ka.key().fingerprint());
            diagnose(cert, key.as_ref(), sig_time(sig)).unwrap_or_else(|| Error::UnusableKey {
                fingerprint: cert.fingerprint().to_hex(),
                detail: chain(&error),
            })
        }
        VerificationError::BadKey { sig, ka, error } => {
            let fpr = ka.key().fingerprint();
            diagnose(ka.cert(), Some(&fpr), sig_time(sig)).unwrap_or_else(|| Error::BadSignature {
                signer: Some(fpr.to_hex()),
                detail: chain(&error),
            })
        }
        VerificationError::BadSignature { ka, error, .. } => Error::BadSignature {
            signer: Some(ka.key().fingerprint().to_hex()),
            detail: chain(&error),
        },
        VerificationError::MalformedSignature { sig, error } => Error::BadSignature {
            signer: Some(issuer(sig)),
            detail: format!("malformed signature: {}", chain(&error)),
        },
        VerificationError::UnknownSignature { sig } => Error::BadSignature {
            signer: None,
            detail: format!("unparsable signature: {}", sig.error()),
        },
        other => Error::BadSignature {
            signer: None,
            detail: other.to_string(),
        },
    }
}

/// Why `cert` (or its (sub)key `key`) cannot have made a signature at `t`:
/// not yet created, revoked, or expired. `None` if none of these applies.
pub(crate) fn diagnose(cert: &Cert, key: Option<&Fingerprint>, t: SystemTime) -> Option<Error> {
    let signed_at = Timestamp::from(t);
    let primary = cert.primary_key().key();
    let fingerprint = cert.fingerprint().to_hex();
    if t < primary.creation_time() {
        return Some(Error::KeyNotYetValid {
            fingerprint,
            created: primary.creation_time().into(),
            signed_at,
        });
    }
    if let RevocationStatus::Revoked(revs) = cert.revocation_status(POLICY, t) {
        return Some(revoked(fingerprint, &revs, signed_at));
    }
    let vc = cert.with_policy(POLICY, t).ok()?;
    if vc.alive().is_err()
        && let Some(at) = vc.primary_key().key_expiration_time()
    {
        return Some(Error::KeyExpired {
            fingerprint,
            at: at.into(),
            signed_at,
        });
    }
    let key = key.filter(|k| **k != cert.fingerprint())?;
    let sub = cert.keys().subkeys().key_handle(key.clone()).next()?;
    let fingerprint = key.to_hex();
    if t < sub.key().creation_time() {
        return Some(Error::KeyNotYetValid {
            fingerprint,
            created: sub.key().creation_time().into(),
            signed_at,
        });
    }
    let vka = sub.with_policy(POLICY, t).ok()?;
    if let RevocationStatus::Revoked(revs) = vka.revocation_status() {
        return Some(revoked(fingerprint, &revs, signed_at));
    }
    if vka.alive().is_err()
        && let Some(at) = vka.key_expiration_time()
    {
        return Some(Error::KeyExpired {
            fingerprint,
            at: at.into(),
            signed_at,
        });
    }
    None
}

fn revoked(fingerprint: String, revs: &[&Signature], signed_at: Timestamp) -> Error {
    let rev = revs.first();
    let reason = rev
        .and_then(|r| r.reason_for_revocation())
        .map(|(code, msg)| {
            let msg = String::from_utf8_lossy(msg);
            if msg.is_empty() {
                code.to_string()
            } else {
                format!("{code}: {msg}")
            }
        })
        .unwrap_or_else(|| "no reason given".into());
    Error::KeyRevoked {
        fingerprint,
        reason,
        at: rev
            .and_then(|r| r.signature_creation_time())
            .map(Timestamp::from),
        signed_at,
    }
}
