//! Descriptions of keys for `pipe keys list`.

use openpgp::Cert;
use openpgp::crypto::mpi::PublicKey as Mpis;
use openpgp::packet::Key;
use openpgp::packet::key::{KeyParts, KeyRole};
use openpgp::types::{KeyFlags, RevocationStatus};
use sequoia_openpgp as openpgp;

use crate::{POLICY, Timestamp};

/// A key as `pipe keys list` shows it; serialises to JSON for `--json`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct KeyInfo {
    /// Primary key fingerprint (40 upper-case hex digits).
    pub fingerprint: String,
    /// User IDs, primary first.
    pub user_ids: Vec<String>,
    /// Primary key algorithm: `rsa4096`, `rsa3072`, `ed25519`, `nistp256`, ...
    pub algorithm: String,
    /// What the primary key may do: `certify`, `sign`, `encrypt`, `authenticate`.
    pub usage: Vec<String>,
    /// Creation time.
    pub created: Timestamp,
    /// Expiry time, if the key expires (as of now).
    pub expires: Option<Timestamp>,
    /// The revocation, if the key is revoked (as of now, or within the
    /// next minute: a rotation's revocation takes effect a second after it).
    pub revoked: Option<RevocationInfo>,
    /// Whether secret key material is present.
    pub secret: bool,
    /// Fingerprints of other keys that certified this key's user IDs
    /// (after `rotate`, the new key is certified by the old one).
    pub certified_by: Vec<String>,
    /// Subkeys (keys made by pipe have none; GnuPG's usually do).
    pub subkeys: Vec<SubkeyInfo>,
}

/// A subkey in [`KeyInfo`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SubkeyInfo {
    /// Subkey fingerprint.
    pub fingerprint: String,
    /// Algorithm, as in [`KeyInfo::algorithm`].
    pub algorithm: String,
    /// What the subkey may do.
    pub usage: Vec<String>,
    /// Creation time.
    pub created: Timestamp,
    /// Expiry time, if it expires.
    pub expires: Option<Timestamp>,
}

/// Why and when a key was revoked.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RevocationInfo {
    /// When the revocation was issued.
    pub at: Option<Timestamp>,
    /// Reason code and message, e.g. `Key is superseded: superseded by 0123...`.
    pub reason: String,
}

pub(crate) fn key_info(cert: &Cert) -> KeyInfo {
    let vc = cert.with_policy(POLICY, None).ok();
    let primary = cert.primary_key().key();
    let user_ids = match &vc {
        Some(vc) => {
            let mut uids: Vec<_> = vc.userids().collect();
            let primary_uid = vc.primary_userid().ok().map(|u| u.userid().clone());
            uids.sort_by_key(|u| Some(u.userid().clone()) != primary_uid);
            uids.iter()
                .map(|u| String::from_utf8_lossy(u.userid().value()).into_owned())
                .collect()
        }
        None => cert
            .userids()
            .map(|u| String::from_utf8_lossy(u.userid().value()).into_owned())
            .collect(),
    };
    // A rotation dates its revocation a second after itself: one about to
    // take effect is shown as well.
    let soon = std::time::SystemTime::now() + std::time::Duration::from_secs(60);
    let status = match cert.revocation_status(POLICY, None) {
        RevocationStatus::NotAsFarAsWeKnow => cert.revocation_status(POLICY, soon),
        now => now,
    };
    let revoked = match status {
        RevocationStatus::Revoked(revs) => revs.first().map(|r| RevocationInfo {
            at: r.signature_creation_time().map(Timestamp::from),
            reason: r
                .reason_for_revocation()
                .map(|(code, msg)| {
                    let msg = String::from_utf8_lossy(msg);
                    if msg.is_empty() {
                        code.to_string()
                    } else {
                        format!("{code}: {msg}")
                    }
                })
                .unwrap_or_else(|| "no reason given".into()),
        }),
        _ => None,
    };
    let mut certified_by: Vec<String> = cert
        .userids()
        .flat_map(|u| u.certifications().cloned().collect::<Vec<_>>())
        .filter_map(|sig| {
            sig.get_issuers()
                .into_iter()
                .find(|h| matches!(h, openpgp::KeyHandle::Fingerprint(_)))
                .or_else(|| sig.get_issuers().into_iter().next())
                .map(|h| h.to_hex())
        })
        .collect();
    certified_by.sort();
    certified_by.dedup();

    let subkeys = cert
        .keys()
        .subkeys()
        .map(|sk| {
            let vsk = vc.as_ref().and_then(|vc| {
                vc.keys()
                    .subkeys()
                    .key_handle(sk.key().fingerprint())
                    .next()
            });
            SubkeyInfo {
                fingerprint: sk.key().fingerprint().to_hex(),
                algorithm: algorithm(sk.key()),
                usage: vsk
                    .as_ref()
                    .and_then(|k| k.key_flags())
                    .map(|f| usage(&f))
                    .unwrap_or_default(),
                created: sk.key().creation_time().into(),
                expires: vsk
                    .as_ref()
                    .and_then(|k| k.key_expiration_time())
                    .map(Timestamp::from),
            }
        })
        .collect();

    KeyInfo {
        fingerprint: cert.fingerprint().to_hex(),
        user_ids,
        algorithm: algorithm(primary),
        usage: vc
            .as_ref()
            .and_then(|vc| vc.primary_key().key_flags())
            .map(|f| usage(&f))
            .unwrap_or_default(),
        created: primary.creation_time().into(),
        expires: vc
            .as_ref()
            .and_then(|vc| vc.primary_key().key_expiration_time())
            .map(Timestamp::from),
        revoked,
        secret: cert.is_tsk(),
        certified_by,
        subkeys,
    }
}

fn usage(flags: &KeyFlags) -> Vec<String> {
    let mut u = Vec::new();
    if flags.for_certification() {
        u.push("certify".to_string());
    }
    if flags.for_signing() {
        u.push("sign".to_string());
    }
    if flags.for_transport_encryption() || flags.for_storage_encryption() {
        u.push("encrypt".to_string());
    }
    if flags.for_authentication() {
        u.push("authenticate".to_string());
    }
    u
}

/// `rsa4096`, `ed25519`, `cv25519`, `nistp256`, ... (GnuPG's spelling).
fn algorithm<P: KeyParts, R: KeyRole>(key: &Key<P, R>) -> String {
    match key.mpis() {
        Mpis::RSA { n, .. } => format!("rsa{}", n.bits()),
        Mpis::DSA { p, .. } => format!("dsa{}", p.bits()),
        Mpis::ElGamal { p, .. } => format!("elg{}", p.bits()),
        Mpis::EdDSA { curve, .. } | Mpis::ECDSA { curve, .. } | Mpis::ECDH { curve, .. } => {
            use openpgp::types::Curve;
            match curve {
                Curve::Ed25519 => "ed25519".into(),
                Curve::Cv25519 => "cv25519".into(),
                Curve::NistP256 => "nistp256".into(),
                Curve::NistP384 => "nistp384".into(),
                Curve::NistP521 => "nistp521".into(),
                other => other.to_string().to_lowercase().replace(' ', ""),
            }
        }
        _ => key.pk_algo().to_string().to_lowercase(),
    }
}
