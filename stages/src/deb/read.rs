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
        let mut magic = [0u8; 8];
        f.read_exact(&mut magic)
            .map_err(|_| bad("shorter than an ar header".into()))?;
        if &magic != AR_MAGIC {
            return Err(bad("not an ar archive".into()));
        }
        let mut members = Vec::new();
        let mut at = 8u64;
        while at < len {
            let mut h = [0u8; AR_HEADER];
            f.read_exact(&mut h)
                .map_err(|_| bad(format!("truncated ar header at byte {at}")))?;
            if &h[58..60] != b"`\n" {
                return Err(bad(format!("bad ar header at byte {at}")));
            }
            let name = String::from_utf8_lossy(&h[..16])
                .trim_end()
                .trim_end_matches('/')
                .to_string();
            let size: u64 = std::str::from_utf8(&h[48..58])
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .ok_or_else(|| bad(format!("bad size in the ar header of `{name}`")))?;
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

    /// The members, in archive order.
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
