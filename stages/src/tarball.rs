//! A minimal streaming tar writer: GNU headers, names written exactly as
//! given (the `tar` crate's `Builder` rewrites `./usr/` to `usr`, and dpkg
//! archives spell every name with a leading `./`), long names and link
//! targets through GNU `././@LongLink` records, root ownership everywhere.

use std::io::{self, Read, Write};

use tar::{EntryType, Header};

const BLOCK: usize = 512;
/// Length of the name and link name fields of a tar header.
const NAME_FIELD: usize = 100;

/// Writes tar entries to `W`.
pub(crate) struct TarWriter<W: Write> {
    out: W,
}

/// What to write for one entry.
pub(crate) struct TarEntry<'a> {
    pub name: &'a str,
    pub kind: TarKind<'a>,
    pub mode: u32,
    pub mtime: u64,
}

pub(crate) enum TarKind<'a> {
    Dir,
    File { size: u64 },
    Symlink { target: &'a str },
}

impl<W: Write> TarWriter<W> {
    pub(crate) fn new(out: W) -> Self {
        TarWriter { out }
    }

    /// The writer underneath.
    pub(crate) fn get_ref(&self) -> &W {
        &self.out
    }

    /// Writes the header of `entry`; for a file, its `size` bytes must follow
    /// through [`TarWriter::data`] and then [`TarWriter::pad`].
    pub(crate) fn header(&mut self, entry: &TarEntry<'_>) -> io::Result<()> {
        if entry.name.len() > NAME_FIELD {
            self.long_link(EntryType::GNULongName, entry.name)?;
        }
        let mut h = Header::new_gnu();
        let (ty, size) = match entry.kind {
            TarKind::Dir => (EntryType::Directory, 0),
            TarKind::File { size } => (EntryType::Regular, size),
            TarKind::Symlink { target } => {
                if target.len() > NAME_FIELD {
                    self.long_link(EntryType::GNULongLink, target)?;
                }
                set_field(&mut h.as_old_mut().linkname, target);
                (EntryType::Symlink, 0)
            }
        };
        set_field(&mut h.as_old_mut().name, entry.name);
        h.set_entry_type(ty);
        h.set_size(size);
        self.owner_and_time(&mut h, entry.mode, entry.mtime)?;
        self.out.write_all(h.as_bytes())
    }

    /// Streams a file's bytes from `r` and returns how many were copied; the
    /// caller compares with the size in the header.
    pub(crate) fn data(
        &mut self,
        r: &mut impl Read,
        limit: u64,
        buf: &mut [u8],
    ) -> io::Result<u64> {
        let mut left = limit;
        let mut copied = 0;
        while left > 0 {
            let n = match r.by_ref().take(left).read(buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.out.write_all(crate::io::handled(buf, n)?)?;
            copied += n as u64;
            left -= n as u64;
        }
        Ok(copied)
    }

    /// Pads a file of `size` bytes to the block size.
    pub(crate) fn pad(&mut self, size: u64) -> io::Result<()> {
        let rem = (size % BLOCK as u64) as usize;
        if rem != 0 {
            io::copy(&mut io::repeat(0).take((BLOCK - rem) as u64), &mut self.out)?;
        }
        Ok(())
    }

    /// Writes a whole in-memory file.
    pub(crate) fn file(
        &mut self,
        name: &str,
        mode: u32,
        mtime: u64,
        data: &[u8],
    ) -> io::Result<()> {
        let size = data.len() as u64;
        self.header(&TarEntry {
            name,
            kind: TarKind::File { size },
            mode,
            mtime,
        })?;
        self.out.write_all(data)?;
        self.pad(size)
    }

    /// Writes the end-of-archive marker and returns the inner writer.
    pub(crate) fn finish(mut self) -> io::Result<W> {
        self.out.write_all(&[0; 2 * BLOCK])?;
        Ok(self.out)
    }

    /// A GNU long name / long link record carrying `value`, as GNU tar
    /// writes it: name `././@LongLink`, the value NUL-terminated as data.
    fn long_link(&mut self, ty: EntryType, value: &str) -> io::Result<()> {
        let mut h = Header::new_gnu();
        set_field(&mut h.as_old_mut().name, "././@LongLink");
        h.set_entry_type(ty);
        let size = value.len() as u64 + 1;
        h.set_size(size);
        self.owner_and_time(&mut h, 0o644, 0)?;
        self.out.write_all(h.as_bytes())?;
        self.out.write_all(value.as_bytes())?;
        self.out.write_all(&[0])?;
        self.pad(size)
    }

    fn owner_and_time(&mut self, h: &mut Header, mode: u32, mtime: u64) -> io::Result<()> {
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(mtime);
        h.set_username("root")?;
        h.set_groupname("root")?;
        h.set_cksum();
        Ok(())
    }
}

/// Copies `value` into a fixed header field, truncated (the full value is in
/// the preceding long-link record when it does not fit).
fn set_field(field: &mut [u8], value: &str) {
    for (to, from) in field.iter_mut().zip(value.as_bytes()) {
        *to = *from;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_and_targets_round_trip_through_the_tar_crate() {
        let long = format!("./{}/file", "d".repeat(150));
        let target = "t".repeat(130);
        let mut w = TarWriter::new(Vec::new());
        w.file(&long, 0o644, 5, b"abc").unwrap();
        w.header(&TarEntry {
            name: "./link",
            kind: TarKind::Symlink { target: &target },
            mode: 0o777,
            mtime: 5,
        })
        .unwrap();
        w.header(&TarEntry {
            name: "./dir/",
            kind: TarKind::Dir,
            mode: 0o755,
            mtime: 5,
        })
        .unwrap();
        let bytes = w.finish().unwrap();
        let mut ar = tar::Archive::new(&bytes[..]);
        let got: Vec<(String, Option<String>, u32, u64)> = ar
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    String::from_utf8(e.path_bytes().to_vec()).unwrap(),
                    e.link_name().unwrap().map(|p| p.display().to_string()),
                    h.mode().unwrap(),
                    h.uid().unwrap(),
                )
            })
            .collect();
        assert_eq!(got[0].0, long);
        assert_eq!(got[1].1.as_deref(), Some(target.as_str()));
        assert_eq!(got[2], ("./dir/".into(), None, 0o755, 0));
    }
}
