//! Construction of deterministic v4 signatures.
//!
//! Sequoia's `SignatureBuilder` adds a random salt notation
//! (`salt@notations.sequoia-pgp.org`) to every v4 signature, so two
//! signatures over the same data with the same key and time differ. Build
//! outputs must be reproducible, so the signature packet is assembled here
//! from exactly three hashed subpackets (creation time, issuer key ID, issuer
//! fingerprint, all non-critical like GnuPG's), hashed with SHA-256 and
//! signed. RSA PKCS#1 v1.5 and Ed25519 are deterministic, hence so is the
//! whole packet.

use std::io::Read;
use std::time::SystemTime;

use openpgp::crypto::Signer as _;
use openpgp::crypto::hash::{Context, Hash as _};
use openpgp::packet::signature::Signature4;
use openpgp::packet::signature::subpacket::{Subpacket, SubpacketArea, SubpacketValue};
use openpgp::packet::{Packet, Signature};
use openpgp::serialize::Serialize as _;
use openpgp::types::{HashAlgorithm, SignatureType};
use openpgp::{armor, crypto::KeyPair, crypto::mpi};
use sequoia_openpgp as openpgp;

use crate::{Encoding, Error, Result};

/// The only digest this crate signs with (rpm, apt and RHEL policies accept it).
pub(crate) const HASH: HashAlgorithm = HashAlgorithm::SHA256;

/// A fresh hash context for a v4 signature.
pub(crate) fn context() -> Result<Context> {
    Ok(HASH.context().map_err(Error::openpgp)?.for_signature(4))
}

/// Hashes everything `data` yields into `ctx`.
pub(crate) fn hash_reader(ctx: &mut Context, mut data: impl Read) -> Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match data.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => ctx.update(buf.get(..n).ok_or_else(|| Error::OpenPgp {
                detail: format!(
                    "the data to sign reported {n} bytes read into a {}-byte buffer",
                    buf.len()
                ),
            })?),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io("cannot read the data to sign", e)),
        }
    }
}

/// Finishes a v4 signature of type `typ` over what `ctx` has hashed.
pub(crate) fn finish(
    keypair: &mut KeyPair,
    typ: SignatureType,
    mut ctx: Context,
    time: SystemTime,
) -> Result<Signature> {
    let pk = keypair.public();
    let pk_algo = pk.pk_algo();
    let time = openpgp::types::Timestamp::try_from(time).map_err(Error::openpgp)?;
    let hashed = SubpacketArea::new(vec![
        Subpacket::new(SubpacketValue::SignatureCreationTime(time), false)
            .map_err(Error::openpgp)?,
        Subpacket::new(SubpacketValue::Issuer(pk.keyid()), false).map_err(Error::openpgp)?,
        Subpacket::new(SubpacketValue::IssuerFingerprint(pk.fingerprint()), false)
            .map_err(Error::openpgp)?,
    ])
    .map_err(Error::openpgp)?;
    let placeholder = mpi::Signature::Unknown {
        mpis: Box::new([]),
        rest: Box::new([]),
    };
    let fields = Signature4::new(
        typ,
        pk_algo,
        HASH,
        hashed.clone(),
        SubpacketArea::default(),
        [0, 0],
        placeholder,
    );
    // Appends the v4 signature fields and trailer (RFC 9580 §5.2.4).
    fields.hash(&mut ctx).map_err(Error::openpgp)?;
    let digest = ctx.into_digest().map_err(Error::openpgp)?;
    let mpis = keypair.sign(HASH, &digest).map_err(Error::openpgp)?;
    let [d0, d1, ..] = digest[..] else {
        return Err(Error::OpenPgp {
            detail: format!(
                "the {HASH:?} digest has {} bytes, expected at least 2",
                digest.len()
            ),
        });
    };
    Ok(Signature4::new(
        typ,
        pk_algo,
        HASH,
        hashed,
        SubpacketArea::default(),
        [d0, d1],
        mpis,
    )
    .into())
}

/// Serialises one signature packet, armored (`PGP SIGNATURE`) or binary.
pub(crate) fn encode(sig: Signature, encoding: Encoding) -> Result<Vec<u8>> {
    let packet = Packet::from(sig);
    let mut out = Vec::new();
    match encoding {
        Encoding::Binary => packet.serialize(&mut out).map_err(Error::openpgp)?,
        Encoding::Armored => {
            let mut w = armor::Writer::new(&mut out, armor::Kind::Signature)
                .map_err(|e| Error::io("cannot armor signature", e))?;
            packet.serialize(&mut w).map_err(Error::openpgp)?;
            w.finalize()
                .map_err(|e| Error::io("cannot armor signature", e))?;
        }
    }
    Ok(out)
}

/// Splits `text` into lines for the cleartext signature framework: `\n` or
/// `\r\n` terminated, trailing spaces and tabs removed (RFC 9580 §7.2).
/// A final line terminator does not start another line; empty text is one
/// empty line.
pub(crate) fn cleartext_lines(text: &[u8]) -> Vec<&[u8]> {
    let text = text.strip_suffix(b"\n").unwrap_or(text);
    text.split(|&b| b == b'\n')
        .map(|line| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let mut line = line;
            while let [rest @ .., b' ' | b'\t'] = line {
                line = rest;
            }
            line
        })
        .collect()
}

/// Writes the `-----BEGIN PGP SIGNED MESSAGE-----` part (header and
/// dash-escaped text) and hashes the canonical text (CRLF between lines, no
/// final line ending) into `ctx`.
pub(crate) fn cleartext_body(lines: &[&[u8]], ctx: &mut Context, out: &mut Vec<u8>) {
    out.extend_from_slice(b"-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n");
    for (i, line) in lines.iter().enumerate() {
        if i > 0 {
            ctx.update(b"\r\n");
        }
        ctx.update(line);
        if line.first() == Some(&b'-') {
            out.extend_from_slice(b"- ");
        }
        out.extend_from_slice(line);
        out.push(b'\n');
    }
}
