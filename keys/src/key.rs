//! Secret keys: generate, load, sign, rotate.

use std::fmt;
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use openpgp::cert::prelude::*;
use openpgp::crypto::{KeyPair, Password, S2K};
use openpgp::packet::key::{SecretKeyMaterial, SecretParts, UnspecifiedRole};
use openpgp::packet::signature::SignatureBuilder;
use openpgp::packet::signature::subpacket::{Subpacket, SubpacketValue};
use openpgp::packet::{Key, Packet, UserID};
use openpgp::parse::Parse;
use openpgp::serialize::SerializeInto;
use openpgp::types::{
    HashAlgorithm, KeyFlags, PublicKeyAlgorithm, ReasonForRevocation, SignatureType,
};
use openpgp::{Cert, Profile};
use sequoia_openpgp as openpgp;

use crate::error::chain;
use crate::info::{KeyInfo, key_info};
use crate::keyring::{Keyring, diagnose};
use crate::{Encoding, Error, POLICY, Result, Timestamp, sig};

/// Algorithm of a key made by [`SecretKey::generate`].
///
/// The default is [`Algorithm::Rsa4096`]: RSA is the one algorithm every
/// consumer of pipe's signatures verifies — apt's `gpgv`, GnuPG, rpm on
/// RHEL 8 (whose NSS-based OpenPGP code knows no EdDSA) and RHEL 9
/// (rpm-sequoia; its `DEFAULT` and `FUTURE` crypto policies need RSA ≥ 2048
/// resp. ≥ 3072 bits). 4096 bits rather than 3072 because this key is a
/// long-lived root of trust for everything consumers install, and it is
/// what the Debian and Fedora archive keys use; the costs (a few seconds to
/// generate, 512-byte signatures, slower signing) are irrelevant at pipe's
/// signing volume.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    /// RSA, 4096-bit modulus (default).
    #[default]
    Rsa4096,
    /// RSA, 3072-bit modulus (GnuPG's default; ~128-bit security).
    Rsa3072,
    /// Ed25519 (EdDSA). Small and fast, but not verifiable by rpm on RHEL 8.
    Ed25519,
}

impl Algorithm {
    /// Every algorithm, in the order the CLI should list them.
    pub(crate) const ALL: [Algorithm; 3] =
        [Algorithm::Rsa4096, Algorithm::Rsa3072, Algorithm::Ed25519];

    /// The CLI spelling: `rsa4096`, `rsa3072`, `ed25519`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Algorithm::Rsa4096 => "rsa4096",
            Algorithm::Rsa3072 => "rsa3072",
            Algorithm::Ed25519 => "ed25519",
        }
    }

    fn cipher_suite(self) -> CipherSuite {
        match self {
            Algorithm::Rsa4096 => CipherSuite::RSA4k,
            Algorithm::Rsa3072 => CipherSuite::RSA3k,
            Algorithm::Ed25519 => CipherSuite::Cv25519,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Algorithm {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Algorithm::ALL
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| Error::UnknownAlgorithm {
                given: s.to_string(),
            })
    }
}

/// The public-key algorithm of the key that signs, as the `rpm` crate's
/// `signature::Signing::algorithm()` wants it (`AlgorithmType::{RSA, ECDSA, EdDSA}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum SignatureAlgorithm {
    /// RSA (PKCS#1 v1.5).
    Rsa,
    /// ECDSA over a NIST curve.
    Ecdsa,
    /// EdDSA (Ed25519 or Ed448).
    EdDsa,
}

/// What [`SecretKey::generate`] makes.
///
/// The key is one OpenPGP v4 primary key that both certifies and signs, with
/// one user ID and no subkeys: the simplest shape, understood by every
/// verifier (rpm's older parsers have had trouble with signing subkeys).
#[derive(Clone)]
pub struct GenerateOptions {
    /// The user ID, `Name <email>`.
    pub(crate) user_id: String,
    /// Key algorithm; default RSA 4096.
    pub algorithm: Algorithm,
    /// Protect the secret key with this passphrase (the CLI reads
    /// `PIPE_SIGNING_PASSPHRASE`). `None` stores it unencrypted (the file is
    /// mode 0600 either way).
    pub passphrase: Option<String>,
    /// Creation time of the key (and its self-signatures); default now.
    /// Signatures dated before it are invalid.
    pub creation_time: Option<SystemTime>,
    /// How long after creation the key expires; `None` (the default) never.
    pub validity: Option<Duration>,
}

impl GenerateOptions {
    /// Options for a key with `user_id` and every other setting at its default.
    pub fn new(user_id: impl Into<String>) -> Self {
        GenerateOptions {
            user_id: user_id.into(),
            algorithm: Algorithm::default(),
            passphrase: None,
            creation_time: None,
            validity: None,
        }
    }
}

impl fmt::Debug for GenerateOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GenerateOptions")
            .field("user_id", &self.user_id)
            .field("algorithm", &self.algorithm)
            .field(
                "passphrase",
                &self.passphrase.as_ref().map(|_| "<redacted>"),
            )
            .field("creation_time", &self.creation_time)
            .field("validity", &self.validity)
            .finish()
    }
}

/// What [`SecretKey::rotate`] does besides making the new key.
#[derive(Clone, Debug)]
pub struct RotateOptions {
    /// The new key. Its `creation_time` (default now) is also the time of
    /// the certification and of the retirement.
    pub new_key: GenerateOptions,
    /// Also revoke the old key as superseded ("retire" it), effective at the
    /// rotation time: signatures it made before still verify, signatures it
    /// makes afterwards are rejected with [`Error::KeyRevoked`].
    pub retire_old: bool,
}

/// The result of [`SecretKey::rotate`].
#[derive(Debug)]
pub struct Rotation {
    /// The new secret key, carrying the old key's certification. Not yet
    /// written anywhere: use [`SecretKey::write_new`].
    pub new_key: SecretKey,
    /// Public keyring with the old key (with its revocation if retired)
    /// followed by the new key: what consumers must trust from now on.
    pub keyring: Keyring,
}

/// An OpenPGP secret key, unlocked and ready to sign.
///
/// Holds the key as stored (possibly passphrase-protected, for writing
/// back) and its unlocked form (for signing). `Debug` shows only the
/// fingerprint.
#[derive(Clone)]
pub struct SecretKey {
    stored: Cert,
    unlocked: Cert,
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretKey")
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

impl SecretKey {
    /// Generates a new key (see [`GenerateOptions`] for its shape).
    pub fn generate(opts: &GenerateOptions) -> Result<SecretKey> {
        check_user_id(&opts.user_id)?;
        let created = opts
            .creation_time
            .map(|t| Timestamp::from(t).to_system_time())
            .unwrap_or_else(|| Timestamp::from(SystemTime::now()).to_system_time());
        let builder = CertBuilder::new()
            .set_profile(Profile::RFC4880)
            .map_err(Error::openpgp)?
            .set_cipher_suite(opts.algorithm.cipher_suite())
            .set_primary_key_flags(KeyFlags::empty().set_certification().set_signing())
            .set_creation_time(created)
            .set_validity_period(opts.validity)
            .add_userid_with(opts.user_id.as_str(), primary_userid_template()?)
            .map_err(Error::openpgp)?
            .set_password(opts.passphrase.as_deref().map(Password::from));
        let (stored, _revocation) = builder.generate().map_err(Error::openpgp)?;
        let unlocked = unlock(&stored, opts.passphrase.as_deref(), Path::new("<new key>"))?;
        Ok(SecretKey { stored, unlocked })
    }

    /// Loads a secret key file (armored or binary; pipe's own or GnuPG's
    /// `--export-secret-keys`), unlocking it with `passphrase` if it is
    /// protected.
    ///
    /// Errors: [`Error::CorruptKey`] (not OpenPGP, truncated),
    /// [`Error::NotASecretKey`], [`Error::AmbiguousKey`],
    /// [`Error::PassphraseRequired`], [`Error::WrongPassphrase`].
    pub fn load(path: &Path, passphrase: Option<&str>) -> Result<SecretKey> {
        let bytes = std::fs::read(path)
            .map_err(|e| Error::io(format!("cannot read key file {}", path.display()), e))?;
        Self::parse(&bytes, passphrase, path)
    }

    /// Like [`SecretKey::load`], for a key already in memory (errors name
    /// the path `<memory>`).
    pub fn from_bytes(bytes: &[u8], passphrase: Option<&str>) -> Result<SecretKey> {
        Self::parse(bytes, passphrase, Path::new("<memory>"))
    }

    fn parse(bytes: &[u8], passphrase: Option<&str>, path: &Path) -> Result<SecretKey> {
        let corrupt = |detail: String| Error::CorruptKey {
            path: path.to_path_buf(),
            detail,
        };
        let certs = openpgp::cert::CertParser::from_bytes(bytes)
            .map_err(|e| corrupt(chain(&e)))?
            .collect::<openpgp::Result<Vec<Cert>>>()
            .map_err(|e| corrupt(chain(&e)))?;
        let stored = match <[Cert; 1]>::try_from(certs) {
            Ok([cert]) => cert,
            Err(certs) if certs.is_empty() => {
                return Err(corrupt("no OpenPGP key found".into()));
            }
            Err(certs) => {
                return Err(Error::AmbiguousKey {
                    path: path.to_path_buf(),
                    fingerprints: certs.iter().map(|c| c.fingerprint().to_hex()).collect(),
                });
            }
        };
        if !stored.is_tsk() {
            return Err(Error::NotASecretKey {
                path: path.to_path_buf(),
                fingerprint: stored.fingerprint().to_hex(),
            });
        }
        let unlocked = unlock(&stored, passphrase, path)?;
        Ok(SecretKey { stored, unlocked })
    }

    /// Writes the key, as stored (still passphrase-protected if it was),
    /// armored, to a new file with mode 0600. Never overwrites:
    /// [`Error::FileExists`] if `path` exists.
    pub fn write_new(&self, path: &Path) -> Result<()> {
        let bytes = self
            .stored
            .as_tsk()
            .armored()
            .to_vec()
            .map_err(Error::openpgp)?;
        write_new_file(path, &bytes, 0o600)
    }

    /// The primary key's fingerprint (40 upper-case hex digits).
    pub fn fingerprint(&self) -> String {
        self.stored.fingerprint().to_hex()
    }

    /// When the key was created. Signatures must not be dated earlier: a
    /// caller clamping signing times (to `SOURCE_DATE_EPOCH`) should sign at
    /// `max(time, created())`.
    pub fn created(&self) -> SystemTime {
        self.stored.primary_key().key().creation_time()
    }

    /// Fingerprints, algorithms, creation and expiry of the key.
    pub fn info(&self) -> KeyInfo {
        key_info(&self.stored)
    }

    /// The public key, as a keyring, for [`Keyring::to_bytes`] (`pipe keys export`).
    pub fn public_keyring(&self) -> Keyring {
        Keyring::from_certs(vec![self.stored.clone().strip_secret_key_material()])
    }

    /// The algorithm of the key that signs at `time` (for the `rpm` crate's
    /// `Signing::algorithm`).
    pub fn signing_algorithm(&self, time: SystemTime) -> Result<SignatureAlgorithm> {
        let key = self.signing_key(time)?;
        #[allow(deprecated)]
        match key.pk_algo() {
            PublicKeyAlgorithm::RSAEncryptSign | PublicKeyAlgorithm::RSASign => {
                Ok(SignatureAlgorithm::Rsa)
            }
            PublicKeyAlgorithm::ECDSA => Ok(SignatureAlgorithm::Ecdsa),
            PublicKeyAlgorithm::EdDSA | PublicKeyAlgorithm::Ed25519 | PublicKeyAlgorithm::Ed448 => {
                Ok(SignatureAlgorithm::EdDsa)
            }
            other => Err(Error::UnusableKey {
                fingerprint: key.fingerprint().to_hex(),
                detail: format!("signing with {other} keys is not supported"),
            }),
        }
    }

    /// A detached signature over everything `data` yields, dated `time`
    /// (streamed; the data is never held in memory).
    ///
    /// The signature is an OpenPGP v4 binary-document signature (type 0x00)
    /// with SHA-256, made by the newest signing-capable (sub)key valid at
    /// `time`. Same key, time and data give the same bytes (RSA and Ed25519
    /// keys; ECDSA signatures are randomised by nature).
    ///
    /// This backs the `rpm` crate's `signature::Signing::sign(data, t)` with
    /// `Encoding::Binary` and `time = UNIX_EPOCH + t`.
    pub fn sign_detached(
        &self,
        data: impl Read,
        time: SystemTime,
        encoding: Encoding,
    ) -> Result<Vec<u8>> {
        let mut keypair = self.signing_keypair(time)?;
        let mut ctx = sig::context()?;
        sig::hash_reader(&mut ctx, data)?;
        let signature = sig::finish(&mut keypair, SignatureType::Binary, ctx, time)?;
        sig::encode(signature, encoding)
    }

    /// Clearsigns `text` (for apt's `InRelease`): a
    /// `-----BEGIN PGP SIGNED MESSAGE-----` document with `Hash: SHA256`,
    /// the dash-escaped text and a v4 text signature (type 0x01), dated `time`.
    ///
    /// As the cleartext framework requires, line endings become `\n` and
    /// trailing spaces and tabs are removed from each line; the text as
    /// signed always ends with a newline.
    pub fn clearsign(&self, text: &[u8], time: SystemTime) -> Result<Vec<u8>> {
        let mut keypair = self.signing_keypair(time)?;
        let mut ctx = sig::context()?;
        let mut out = Vec::with_capacity(text.len() + 1024);
        sig::cleartext_body(&sig::cleartext_lines(text), &mut ctx, &mut out);
        let signature = sig::finish(&mut keypair, SignatureType::Text, ctx, time)?;
        out.extend_from_slice(&sig::encode(signature, Encoding::Armored)?);
        Ok(out)
    }

    /// Rotates to a new key:
    ///
    /// 1. generates the new key from `opts.new_key` at time `T` (its creation
    ///    time, default now);
    /// 2. the old key's primary key issues a third-party certification
    ///    (OpenPGP signature type 0x10, generic certification, SHA-512,
    ///    dated `T`) over the new key's primary key and user ID, and that
    ///    certification is added to the new key (so `gpg --check-sigs`
    ///    shows the new key signed by the old one);
    /// 3. if `opts.retire_old`, the old primary key issues a key revocation
    ///    (type 0x20) with reason "Key is superseded" and the message
    ///    `superseded by <new fingerprint>`, dated one second after `T`.
    ///    It is a *soft* revocation: signatures the old key made up to `T`
    ///    stay valid, including those of the very second of the rotation
    ///    (OpenPGP dates signatures to the second, and the old key signs
    ///    nothing after it is rotated).
    ///    It goes into the returned keyring only; the old key file is not
    ///    touched (signatures it makes after `T` fail verification against
    ///    the new keyring with [`Error::KeyRevoked`]);
    /// 4. returns the new secret key and the public keyring `[old, new]`.
    ///
    /// The old key's primary secret key must be available (not a GnuPG
    /// stub), otherwise [`Error::UnusableKey`].
    pub fn rotate(&self, opts: &RotateOptions) -> Result<Rotation> {
        let t = Timestamp::from(opts.new_key.creation_time.unwrap_or_else(SystemTime::now))
            .to_system_time();
        let mut new_opts = opts.new_key.clone();
        new_opts.creation_time = Some(t);
        let mut new_key = SecretKey::generate(&new_opts)?;

        let old_fpr = self.fingerprint();
        let primary = self.unlocked.primary_key().key().clone();
        let mut signer = match primary.parts_into_secret() {
            Ok(k) if k.has_unencrypted_secret() => k.into_keypair().map_err(Error::openpgp)?,
            _ => {
                return Err(Error::UnusableKey {
                    fingerprint: old_fpr,
                    detail: "its primary secret key is not available, so it cannot certify \
                             the new key"
                        .into(),
                });
            }
        };

        #[allow(
            clippy::expect_used,
            reason = "`generate` just made this key with the user ID of its options"
        )]
        let uid: UserID = new_key
            .stored
            .userids()
            .next()
            .expect("generated keys have a user ID")
            .userid()
            .clone();
        let certification = uid
            .certify(
                &mut signer,
                &new_key.stored,
                SignatureType::GenericCertification,
                HashAlgorithm::SHA512,
                t,
            )
            .map_err(Error::openpgp)?;
        let packets = || -> Vec<Packet> { vec![uid.clone().into(), certification.clone().into()] };
        new_key.stored = insert(new_key.stored, packets())?;
        new_key.unlocked = insert(new_key.unlocked, packets())?;

        let mut old_public = self.stored.clone().strip_secret_key_material();
        if opts.retire_old {
            let message = format!("superseded by {}", new_key.fingerprint());
            let revocation = CertRevocationBuilder::new()
                .set_reason_for_revocation(ReasonForRevocation::KeySuperseded, message.as_bytes())
                .and_then(|b| b.set_signature_creation_time(t + std::time::Duration::from_secs(1)))
                .and_then(|b| b.build(&mut signer, &self.unlocked, None))
                .map_err(Error::openpgp)?;
            old_public = insert(old_public, vec![revocation.into()])?;
        }
        let new_public = new_key.stored.clone().strip_secret_key_material();
        Ok(Rotation {
            new_key,
            keyring: Keyring::from_certs(vec![old_public, new_public]),
        })
    }

    /// The newest signing-capable, alive, unrevoked (sub)key with secret
    /// material at `time`.
    fn signing_key(&self, time: SystemTime) -> Result<Key<SecretParts, UnspecifiedRole>> {
        let cert = &self.unlocked;
        let fingerprint = cert.fingerprint().to_hex();
        let unusable = |detail: String| Error::UnusableKey {
            fingerprint: fingerprint.clone(),
            detail,
        };
        if let Some(e) = diagnose(cert, None, time) {
            return Err(e);
        }
        let vc = cert.with_policy(POLICY, time).map_err(|e| {
            unusable(format!(
                "not valid at {}: {}",
                Timestamp::from(time),
                chain(&e)
            ))
        })?;
        let candidates: Vec<_> = vc
            .keys()
            .for_signing()
            .secret()
            .filter(|ka| ka.key().has_unencrypted_secret())
            .collect();
        let mut usable = Vec::new();
        let mut first_problem = None;
        for ka in &candidates {
            let fpr = ka.key().fingerprint();
            match diagnose(cert, Some(&fpr), time) {
                Some(e) => {
                    first_problem.get_or_insert(e);
                }
                None if ka.alive().is_ok() => usable.push(ka.key().clone()),
                None => {}
            }
        }
        let key = usable
            .into_iter()
            .max_by_key(|k| (k.creation_time(), k.fingerprint().to_hex()))
            .ok_or_else(|| {
                first_problem.unwrap_or_else(|| {
                    unusable(format!(
                        "it has no signing-capable key with secret material valid at {}",
                        Timestamp::from(time)
                    ))
                })
            })?;
        if key.version() != 4 {
            return Err(Error::UnusableKey {
                fingerprint: key.fingerprint().to_hex(),
                detail: format!(
                    "it is a version {} key; only v4 keys are supported (v6 signatures \
                     are salted, so they would not be reproducible)",
                    key.version()
                ),
            });
        }
        Ok(key)
    }

    fn signing_keypair(&self, time: SystemTime) -> Result<KeyPair> {
        let key = self.signing_key(time)?;
        let fingerprint = key.fingerprint().to_hex();
        key.into_keypair().map_err(|e| Error::UnusableKey {
            fingerprint,
            detail: chain(&e),
        })
    }
}

/// Merges `packets` into `cert`.
fn insert(cert: Cert, packets: Vec<Packet>) -> Result<Cert> {
    Ok(cert.insert_packets(packets).map_err(Error::openpgp)?.0)
}

/// A GnuPG stub (`gnu-dummy` S2K, e.g. from `--export-secret-subkeys`, or a
/// key on a smartcard): no secret material, nothing to decrypt.
fn is_stub(secret: &SecretKeyMaterial) -> bool {
    match secret {
        SecretKeyMaterial::Encrypted(e) => {
            matches!(e.s2k(), S2K::Private { .. } | S2K::Unknown { .. })
        }
        SecretKeyMaterial::Unencrypted(_) => false,
    }
}

/// Returns `cert` with every protected secret key decrypted.
fn unlock(cert: &Cert, passphrase: Option<&str>, path: &Path) -> Result<Cert> {
    let fingerprint = cert.fingerprint().to_hex();
    let mut packets: Vec<Packet> = Vec::new();
    let mut usable = 0;
    for ka in cert.keys().secret() {
        let key = ka.key().clone();
        // `secret()` yields keys with secret material only.
        let Some(secret) = key.optional_secret() else {
            continue;
        };
        if is_stub(secret) {
            continue;
        }
        usable += 1;
        if !key.has_unencrypted_secret() {
            let Some(passphrase) = passphrase else {
                return Err(Error::PassphraseRequired { fingerprint });
            };
            let key = key
                .decrypt_secret(&Password::from(passphrase))
                .map_err(|_| Error::WrongPassphrase {
                    fingerprint: fingerprint.clone(),
                })?;
            packets.push(if ka.primary() {
                key.role_into_primary().into()
            } else {
                key.role_into_subordinate().into()
            });
        }
    }
    if usable == 0 {
        return Err(Error::NotASecretKey {
            path: path.to_path_buf(),
            fingerprint,
        });
    }
    insert(cert.clone(), packets)
}

fn check_user_id(uid: &str) -> Result<()> {
    let bad = |detail: &str| Error::InvalidUserId {
        uid: uid.to_string(),
        detail: detail.to_string(),
    };
    if uid.trim().is_empty() {
        return Err(bad("it is empty"));
    }
    if uid.chars().any(char::is_control) {
        return Err(bad("it contains control characters"));
    }
    if uid.contains('<') || uid.contains('>') {
        let parsed = UserID::from(uid);
        let email = parsed
            .email()
            .map_err(|e| bad(&format!("cannot parse it as `Name <email>`: {}", chain(&e))))?;
        if email.is_none() {
            return Err(bad("it has `<` or `>` but no e-mail address between them"));
        }
    }
    Ok(())
}

/// Creates `path` with `mode` and writes `bytes`; never overwrites.
fn write_new_file(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let mut file = match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(Error::FileExists {
                path: PathBuf::from(path),
            });
        }
        Err(e) => return Err(Error::io(format!("cannot create {}", path.display()), e)),
    };
    let written = file
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .and_then(|()| file.write_all(bytes))
        .and_then(|()| file.sync_all());
    if let Err(e) = written {
        drop(file);
        let _ = std::fs::remove_file(path);
        return Err(Error::io(format!("cannot write {}", path.display()), e));
    }
    Ok(())
}

/// The user ID binding signature template: marks the user ID primary with a
/// *non-critical* subpacket. sequoia marks it critical by default, and the
/// OpenPGP parser built into rpm 4.18 (Debian 12) refuses to import a key
/// with a critical subpacket it does not implement, Primary User ID among
/// them; GnuPG writes it non-critical too.
fn primary_userid_template() -> Result<SignatureBuilder> {
    SignatureBuilder::new(SignatureType::PositiveCertification)
        .modify_hashed_area(|mut area| {
            area.add(Subpacket::new(SubpacketValue::PrimaryUserID(true), false)?)?;
            Ok(area)
        })
        .map_err(Error::openpgp)
}
