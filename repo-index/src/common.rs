//! What apt and yum share: deterministic compression, digests, dates, and
//! the write plan.

use std::io::Write;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use md5::Md5;
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// One file to write, relative to the repository root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedFile {
    /// Path relative to the repository root, `/`-separated
    /// (`dists/prod/main/binary-amd64/Packages.xz`, `repodata/repomd.xml`).
    pub path: String,
    /// The complete content. Shared, so a plan and a cached rendering do not
    /// copy megabytes of index.
    pub bytes: Arc<[u8]>,
    /// The path names its content (apt `by-hash/SHA256/<digest>`, yum
    /// `<sha256>-primary.xml.gz`): if it already exists it already has these
    /// bytes, so a writer may skip it, and it may be written with
    /// "create if absent" semantics.
    pub content_addressed: bool,
}

/// The files of one rendering, in the order they must be written so that a
/// reader at any moment sees the old complete repository or the new one:
/// content-addressed files first (they are new names, invisible to clients
/// of the old top file), then files at fixed names that only clients of the
/// new top file will trust, the signed top file last.
///
/// Every write should be atomic on its own (temporary name plus rename on a
/// directory; a single PUT on S3). Files of earlier generations are never
/// deleted by a plan: removing them after a grace period is the caller's job.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WritePlan {
    /// The files, in write order.
    pub files: Vec<PlannedFile>,
}

impl WritePlan {
    /// Writes the plan under `root` in order, each file through a temporary
    /// name and a rename, skipping content-addressed files that exist. For
    /// tests and the local store; other backends walk [`WritePlan::files`].
    pub fn write_to_dir(&self, root: &std::path::Path) -> std::io::Result<()> {
        for f in &self.files {
            let dest = root.join(&f.path);
            if f.content_addressed && dest.exists() {
                continue;
            }
            let (Some(dir), Some(name)) = (dest.parent(), dest.file_name()) else {
                return Err(std::io::Error::other(format!(
                    "planned path {:?} names no file",
                    f.path
                )));
            };
            std::fs::create_dir_all(dir)?;
            let tmp = dir.join(format!(
                ".{}.tmp-{}",
                name.to_string_lossy(),
                std::process::id()
            ));
            std::fs::write(&tmp, &f.bytes)?;
            std::fs::rename(&tmp, &dest)?;
        }
        Ok(())
    }
}

/// Lower-case hex SHA-256.
pub(crate) fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Lower-case hex MD5.
pub(crate) fn md5_hex(data: &[u8]) -> String {
    hex::encode(<Md5 as md5::Digest>::digest(data))
}

/// gzip with no file name, mtime 0 and a fixed OS byte, so the same text
/// always gives the same bytes (and so the same by-hash name).
pub(crate) fn gzip(path: &str, data: &[u8]) -> Result<Vec<u8>> {
    let err = |source| Error::Compress {
        path: path.to_string(),
        source,
    };
    let mut enc = flate2::GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(
            Vec::with_capacity(data.len() / 4 + 64),
            flate2::Compression::new(6),
        );
    enc.write_all(data).map_err(err)?;
    enc.finish().map_err(err)
}

/// xz at `preset` (0-9), single-threaded (so the output does not depend on
/// the machine): deterministic for a given liblzma.
pub(crate) fn xz(path: &str, data: &[u8], preset: u32) -> Result<Vec<u8>> {
    let err = |source| Error::Compress {
        path: path.to_string(),
        source,
    };
    let mut enc = liblzma::write::XzEncoder::new(Vec::with_capacity(data.len() / 6 + 64), preset);
    enc.write_all(data).map_err(err)?;
    enc.finish().map_err(err)
}

/// Seconds since the epoch (0 for times before it).
pub(crate) fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// RFC 2822 date in UTC, the form apt's `Date`/`Valid-Until` use:
/// `Tue, 24 Nov 2026 00:45:37 UTC`.
pub(crate) fn rfc2822_utc(t: SystemTime) -> String {
    keys::Timestamp::from(t).to_rfc2822()
}

/// Checks a lower-case or upper-case hex digest of `len` digits and returns
/// it lower-cased.
pub(crate) fn check_hex(what: &str, field: &str, value: &str, len: usize) -> Result<String> {
    if value.len() != len || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::BadInput {
            what: what.to_string(),
            detail: format!("{field} must be {len} hex digits, got {value:?}"),
        });
    }
    Ok(value.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn dates_are_rfc2822_utc() {
        let t = UNIX_EPOCH + Duration::from_secs(1_795_481_137);
        assert_eq!(rfc2822_utc(t), "Tue, 24 Nov 2026 00:45:37 UTC");
        assert_eq!(rfc2822_utc(UNIX_EPOCH), "Thu, 01 Jan 1970 00:00:00 UTC");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc2822_utc(leap), "Tue, 29 Feb 2000 00:00:00 UTC");
    }

    #[test]
    fn compression_is_deterministic() {
        let text = b"Package: a\nVersion: 1\n\n".repeat(100);
        assert_eq!(gzip("x", &text).unwrap(), gzip("x", &text).unwrap());
        assert_eq!(xz("x", &text, 1).unwrap(), xz("x", &text, 1).unwrap());
        // No name, mtime 0, OS unknown.
        assert_eq!(
            &gzip("x", &text).unwrap()[..10],
            &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]
        );
    }
}
