//! Reading a `.deb`: its `ar` members and the tarballs inside them, streamed.
//!
//! Publishing records each package's control stanza (so a repository index
//! never reads a package again) and deploying unpacks `data.tar`; both come
//! through here, and neither holds a member in memory: a member is a window
//! of the file read through its decompressor.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::{Error, Result};

const AR_MAGIC: &[u8; 8] = b"!<arch>\n";
const AR_HEADER: usize = 60;
/// `control.tar` holds a few small files; anything bigger is not a package
/// pipe or dpkg-deb wrote, and reading it whole would be a memory hazard.
const CONTROL_FILE_LIMIT: u64 = 4 << 20;

/// One `ar` member header, as [`ar_header`] reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArHeader {
    /// The member's name, without the trailing `/` of GNU ar.
    pub name: String,
    /// The size of its data (padded to an even length in the archive).
    pub size: u64,
}

/// Checks the `ar` magic at the start of `r`. The one `ar` reader: a `.deb`
/// is read through [`ar_magic`] and [`ar_header`] here (a seekable file) and
/// in deploy (a stream).
pub fn ar_magic(r: &mut impl Read) -> std::result::Result<(), String> {
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic)
        .map_err(|_| "shorter than an ar header".to_string())?;
    if &magic != AR_MAGIC {
        return Err("not an ar archive".into());
    }
    Ok(())
}

/// Reads the next member header from `r` (at byte `at` of the archive, for
/// messages); `None` at a clean end of the archive. The caller reads or
/// skips `size` bytes of data and the padding byte of an odd size.
pub fn ar_header(r: &mut impl Read, at: u64) -> std::result::Result<Option<ArHeader>, String> {
    let mut h = [0u8; AR_HEADER];
    let mut got = 0;
    while got < AR_HEADER {
        let Some(rest) = h.get_mut(got..) else { break };
        match r.read(rest) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("reading the ar header at byte {at}: {e}")),
        }
    }
    if got == 0 {
        return Ok(None);
    }
    if got < AR_HEADER {
        return Err(format!("truncated ar header at byte {at}"));
    }
    if &h[58..60] != b"`\n" {
        return Err(format!("bad ar header at byte {at}"));
    }
    let name = String::from_utf8_lossy(&h[..16])
        .trim_end()
        .trim_end_matches('/')
        .to_string();
    let size: u64 = std::str::from_utf8(&h[48..58])
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| format!("bad size in the ar header of `{name}`"))?;
    Ok(Some(ArHeader { name, size }))
}

/// One member of the `ar` archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Its name (`control.tar.xz`).
    pub name: String,
    /// Offset of its data in the file.
    pub offset: u64,
    /// Size of its data.
    pub size: u64,
}

/// An open `.deb`: its member table, read once.
#[derive(Debug)]
pub struct DebReader {
    path: PathBuf,
    members: Vec<Member>,
}

impl DebReader {
    /// Opens `path` and reads its member table (headers only).
    pub fn open(path: &Path) -> Result<DebReader> {
        let bad = |reason: String| Error::BadPackage {
            path: path.to_path_buf(),
            reason,
        };
        let mut f = File::open(path).map_err(|e| Error::read(path, e))?;
        let len = f.metadata().map_err(|e| Error::read(path, e))?.len();
        ar_magic(&mut f).map_err(bad)?;
        let mut members = Vec::new();
        let mut at = 8u64;
        while at < len {
            let Some(ArHeader { name, size }) = ar_header(&mut f, at).map_err(bad)? else {
                break;
            };
            let offset = at + AR_HEADER as u64;
            if offset + size > len {
                return Err(bad(format!(
                    "member `{name}` runs past the end of the file"
                )));
            }
            members.push(Member { name, offset, size });
            // Members are padded to an even offset.
            at = offset + size + (size & 1);
            f.seek(SeekFrom::Start(at))
                .map_err(|e| Error::read(path, e))?;
        }
        if members.first().map(|m| m.name.as_str()) != Some("debian-binary") {
            return Err(bad("the first member is not `debian-binary`".into()));
        }
        Ok(DebReader {
            path: path.to_path_buf(),
            members,
        })
    }

    /// The members, in archive order (deploy's delta reads the table of
    /// contents and the data member's blocks by offset).
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// The decompressed stream of the member `stem` (`control.tar`,
    /// `data.tar`), whichever compression it carries.
    pub fn tar(&self, stem: &str) -> Result<Box<dyn Read + Send>> {
        let m = self
            .members
            .iter()
            .find(|m| {
                m.name == stem
                    || m.name
                        .strip_prefix(stem)
                        .is_some_and(|e| e.starts_with('.'))
            })
            .ok_or_else(|| Error::BadPackage {
                path: self.path.clone(),
                reason: format!("no `{stem}` member"),
            })?;
        let mut f = File::open(&self.path).map_err(|e| Error::read(&self.path, e))?;
        f.seek(SeekFrom::Start(m.offset))
            .map_err(|e| Error::read(&self.path, e))?;
        let raw = BufReader::with_capacity(1 << 16, f.take(m.size));
        let ext = &m.name[stem.len()..];
        Ok(match ext {
            "" => Box::new(raw),
            ".gz" => Box::new(flate2::read::GzDecoder::new(raw)),
            ".xz" => Box::new(liblzma::read::XzDecoder::new_multi_decoder(raw)),
            ".zst" => Box::new(
                zstd::stream::read::Decoder::with_buffer(raw)
                    .map_err(|e| Error::read(&self.path, e))?,
            ),
            other => {
                return Err(Error::BadPackage {
                    path: self.path.clone(),
                    reason: format!("`{}` uses an unknown compression `{other}`", m.name),
                });
            }
        })
    }

    /// The text of `control` from `control.tar`, as dpkg-deb -f prints it.
    pub fn control(&self) -> Result<String> {
        let bad = |reason: String| Error::BadPackage {
            path: self.path.clone(),
            reason,
        };
        let mut archive = tar::Archive::new(self.tar("control.tar")?);
        let entries = archive
            .entries()
            .map_err(|e| bad(format!("control.tar: {e}")))?;
        for entry in entries {
            let entry = entry.map_err(|e| bad(format!("control.tar: {e}")))?;
            let path = entry
                .path()
                .map_err(|e| bad(format!("control.tar: {e}")))?
                .into_owned();
            if path.as_os_str() != "./control" && path.as_os_str() != "control" {
                continue;
            }
            if entry.size() > CONTROL_FILE_LIMIT {
                return Err(bad(format!("`control` is {} bytes", entry.size())));
            }
            let mut text = String::new();
            entry
                .take(CONTROL_FILE_LIMIT)
                .read_to_string(&mut text)
                .map_err(|e| bad(format!("control: {e}")))?;
            return Ok(text);
        }
        Err(bad("control.tar has no `control`".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, size: &str) -> Vec<u8> {
        let mut h = format!(
            "{name:<16}{:<12}{:<6}{:<6}{:<8}{size:<10}",
            "0", "0", "0", "100644"
        )
        .into_bytes();
        h.extend_from_slice(b"`\n");
        h
    }

    #[test]
    fn headers_are_read_and_damage_is_named() {
        let mut archive = AR_MAGIC.to_vec();
        archive.extend(header("debian-binary/", "4"));
        archive.extend_from_slice(b"2.0\n");
        let mut r = &archive[..];
        ar_magic(&mut r).unwrap();
        let h = ar_header(&mut r, 8).unwrap().unwrap();
        assert_eq!(
            h,
            ArHeader {
                name: "debian-binary".into(),
                size: 4
            }
        );
        let mut rest = &r[4..];
        assert_eq!(ar_header(&mut rest, 72).unwrap(), None);

        assert!(ar_magic(&mut &b"!<arch"[..]).is_err());
        assert!(ar_magic(&mut &b"!<arxx>\n"[..]).is_err());
        let short = header("x", "1");
        assert!(
            ar_header(&mut &short[..30], 8)
                .unwrap_err()
                .contains("truncated")
        );
        let bad = header("x", "lots");
        assert!(
            ar_header(&mut &bad[..], 8)
                .unwrap_err()
                .contains("bad size")
        );
        let mut wrong_end = header("x", "1");
        wrong_end[59] = b'x';
        assert!(
            ar_header(&mut &wrong_end[..], 8)
                .unwrap_err()
                .contains("bad ar header")
        );
    }
}
