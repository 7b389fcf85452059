//! The ext4 filesystem, written reproducibly from the baked tree.
//!
//! `mke2fs -d ROOT` (e2fsprogs 1.47) copies the tree into a new filesystem.
//! What would differ between two runs, and what fixes it:
//! - the filesystem UUID and the directory-hash seed: fixed (`-U`,
//!   `-E hash_seed=`), both derived from the caller's identity string;
//! - the superblock's times, each inode's creation time and the root
//!   directory's times: `mke2fs` takes them from `E2FSPROGS_FAKE_TIME`, set
//!   to `SOURCE_DATE_EPOCH`;
//! - access and modification times: normalised in the tree beforehand
//!   (`super::times`). `mke2fs` copies them from the `lstat` it makes of
//!   each entry before reading it, so its own reading (which moves the
//!   tree's access times) does not reach the image; nothing else may read
//!   the tree in between (the space needed is counted from the path list,
//!   not by listing directories again);
//! - change times, which `mke2fs` copies from the tree and user space cannot
//!   set: rewritten in the image with `debugfs -w -f CMDS`, one `sif <INO>
//!   ctime @EPOCH` per inode (checked on e2fsprogs 1.47.0: creation and
//!   access times need no command; three commands per path made this pass
//!   cost as much as `mke2fs` itself, and one per path, addressed by name,
//!   a third of it, most of that in debugfs's path lookups: the inodes are
//!   addressed by number when their numbers are known, [`tree_inodes`]);
//! - the order of an inode's extended attributes, which `mke2fs` takes from
//!   `llistxattr` on the tree (the order they were set in, on ext4; a hash
//!   order on tmpfs): an inode with more than one is rewritten in the image
//!   in the same `debugfs` run, every attribute removed (`ea_rm`) and set
//!   again in name order (`ea_set -f`), which lays them out the same
//!   whatever order the base or the post-install script set them in;
//! - the defaults of the host's `/etc/mke2fs.conf` that depend on the size
//!   ("small" filesystems get 1 KiB blocks): block size, inode size and
//!   bytes-per-inode are given explicitly.
//!
//! The image is a sparse file of exactly `size` bytes; nothing of it passes
//! through this process's memory.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

use super::tools::{Tool, Tools, run_captured};
use crate::{Error, Result};

const BLOCK: u64 = 4096;
const INODE_SIZE: u64 = 256;
const BYTES_PER_INODE: u64 = 16384;
const MIB: u64 = 1 << 20;

/// What the tree needs: data blocks and inodes.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Usage {
    pub blocks: u64,
    pub inodes: u64,
}

/// Counts blocks and inodes of `paths` (relative to `root`, sorted, as
/// `super::times::normalise` returns them). Only `lstat`s: a directory's
/// size comes from the names in `paths` (listing it would move its access
/// time, which `mke2fs` copies).
pub(crate) fn usage(root: &Path, paths: &[(PathBuf, i64)]) -> Result<Usage> {
    use std::collections::HashMap;
    use std::os::unix::fs::MetadataExt;
    // A directory entry takes 8 bytes plus the name, 4-aligned.
    let mut entries: HashMap<&Path, u64> = HashMap::new();
    for (rel, _) in paths {
        if let (Some(parent), Some(name)) = (rel.parent(), rel.file_name()) {
            *entries.entry(parent).or_default() += 8 + (name.len() as u64).div_ceil(4) * 4;
        }
    }
    let mut u = Usage::default();
    let mut seen = std::collections::HashSet::new();
    for (rel, _) in paths {
        let p = root.join(rel);
        let m = std::fs::symlink_metadata(&p).map_err(|e| Error::read(&p, e))?;
        if m.nlink() > 1 && !m.is_dir() && !seen.insert(m.ino()) {
            continue;
        }
        u.inodes += 1;
        let ft = m.file_type();
        let bytes = if ft.is_file() {
            m.len()
        } else if ft.is_dir() {
            24 + entries.get(rel.as_path()).copied().unwrap_or(0)
        } else if ft.is_symlink() {
            // Targets under 60 bytes live in the inode.
            let len = m.len();
            if len < 60 { 0 } else { len }
        } else {
            0
        };
        let blocks = bytes.div_ceil(BLOCK);
        // One extent-tree block per 4 extents beyond the inode's own 4, as a
        // margin for fragmented large files.
        u.blocks += blocks + blocks / (32768 * 4);
    }
    Ok(u)
}

/// The journal `mke2fs` makes for a filesystem of `blocks` 4 KiB blocks
/// (`ext2fs_default_journal_size` of e2fsprogs 1.47), in blocks.
fn journal_blocks(blocks: u64) -> u64 {
    match blocks {
        b if b < 2048 => 0,
        b if b < 32768 => 1024,
        b if b < 256 * 1024 => 4096,
        b if b < 512 * 1024 => 8192,
        b if b < 4096 * 1024 => 16384,
        b if b < 8192 * 1024 => 32768,
        b if b < 16384 * 1024 => 65536,
        b if b < 32768 * 1024 => 131072,
        _ => 262144,
    }
}

/// The smallest size, in whole MiB, that fits `u`: its data and inodes, the
/// journal, inode tables and group metadata, with 2% to spare.
pub(crate) fn needed(u: Usage) -> u64 {
    let mut size = (u.blocks * BLOCK)
        .max(u.inodes * BYTES_PER_INODE)
        .max(8 * MIB);
    for _ in 0..8 {
        let blocks = size / BLOCK;
        let metadata = blocks * INODE_SIZE * BLOCK / BYTES_PER_INODE / BLOCK // inode tables
            + blocks / 1024 // bitmaps, group descriptors, reserved GDT blocks
            + 64;
        let want = (u.blocks + journal_blocks(blocks) + metadata) * BLOCK;
        let want = (want + want / 50).max(u.inodes * BYTES_PER_INODE * 51 / 50);
        if want <= size {
            break;
        }
        size = want;
    }
    size.div_ceil(MIB) * MIB
}

/// A UUID (RFC 4122 version 4 layout) derived from `identity` and `salt`.
fn uuid(identity: &str, salt: &str) -> String {
    let d: [u8; 32] = Sha256::digest(format!("pipe machine {salt}\0{identity}").as_bytes()).into();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The filesystem UUID an image of `identity` gets.
pub fn filesystem_uuid(identity: &str) -> String {
    uuid(identity, "uuid")
}

/// Writes `image` (created, `size` bytes) as an ext4 filesystem holding
/// `root`, whose sorted paths are `paths`; `label` is cut to 16 bytes.
#[allow(clippy::too_many_arguments)]
pub(crate) fn write(
    tools: &Tools,
    root: &Path,
    paths: &[(PathBuf, i64)],
    usage: Usage,
    image: &Path,
    size: u64,
    epoch: u64,
    identity: &str,
    label: &str,
) -> Result<()> {
    let need = needed(usage);
    if need > size {
        return Err(Error::DiskTooSmall { size, needed: need });
    }
    let f = std::fs::File::create(image).map_err(|e| Error::write(image, e))?;
    f.set_len(size).map_err(|e| Error::write(image, e))?;
    drop(f);
    let label: String = label
        .chars()
        .scan(0, |n, c| {
            *n += c.len_utf8();
            (*n <= 16).then_some(c)
        })
        .collect();
    let mut cmd = Command::new(tools.path(Tool::Mke2fs));
    cmd.args(["-q", "-F", "-t", "ext4", "-T", "default"])
        .args(["-b", &BLOCK.to_string(), "-I", &INODE_SIZE.to_string()])
        .args(["-i", &BYTES_PER_INODE.to_string()])
        .args(["-U", &filesystem_uuid(identity)])
        .arg("-E")
        .arg(format!(
            "hash_seed={},root_owner=0:0",
            uuid(identity, "hash")
        ))
        .args(["-L", &label])
        .arg("-d")
        .arg(root)
        .arg(image)
        .env("E2FSPROGS_FAKE_TIME", epoch.to_string())
        .env("E2FSPROGS_SKIP_PROGRESS", "1")
        .env("MKE2FS_SYNC", "0");
    let (status, output) = run_captured(cmd, 16 << 10).map_err(|e| Error::ToolRun {
        tool: Tool::Mke2fs,
        source: e,
    })?;
    if !status.success() {
        let full = [
            "No space left",
            "Could not allocate block",
            "Could not allocate inode",
            "Could not allocate",
        ]
        .iter()
        .any(|m| output.contains(m));
        if full {
            return Err(Error::DiskTooSmall {
                size,
                needed: need.max(size + size / 4).div_ceil(MIB) * MIB,
            });
        }
        return Err(Error::ToolFailed {
            tool: Tool::Mke2fs,
            status: status.to_string(),
            output,
        });
    }
    let inodes = tree_inodes(image, paths, usage).map_err(|e| Error::read(image, e))?;
    fix_inode_times(tools, root, paths, inodes, image, epoch)
}

/// The superblock fields [`tree_inodes`] reads.
struct Superblock {
    inodes: u32,
    free_inodes: u32,
    first_ino: u32,
}

fn superblock(image: &Path) -> std::io::Result<Superblock> {
    use std::os::unix::fs::FileExt;
    let mut sb = [0u8; 1024];
    std::fs::File::open(image)?.read_exact_at(&mut sb, 1024)?;
    let u32_at = |at: usize| {
        sb.get(at..at + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map_or(0, u32::from_le_bytes)
    };
    let magic = sb
        .get(56..58)
        .and_then(|b| <[u8; 2]>::try_from(b).ok())
        .map(u16::from_le_bytes);
    if magic != Some(0xef53) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "mke2fs wrote no ext4 superblock",
        ));
    }
    Ok(Superblock {
        inodes: u32_at(0),
        free_inodes: u32_at(16),
        // Revision 0 has no field: 11.
        first_ino: if u32_at(76) == 0 { 11 } else { u32_at(84) },
    })
}

/// The inode numbers `mke2fs -d` gave the tree's entries other than the
/// root (inode 2), when they are `first_ino..=last`: the numbers
/// [`fix_inode_times`] then addresses instead of paths, which spares
/// debugfs a path lookup per entry (a lookup scans each directory on the
/// way linearly: the bulk of the pass's time in large directories).
///
/// Why they are that range: libext2fs's `ext2fs_new_inode` takes the first
/// free inode at or after the start of the parent's group, and `mke2fs -d`
/// frees none, so by induction the inodes in use are always `1..=N` (with
/// `lost+found` at `first_ino`, reused for the tree's own). That is checked,
/// not assumed: the superblock's count of inodes in use must be what the
/// tree accounts for (`first_ino - 1` reserved, `lost+found`, one per inode
/// of the tree besides the root), else `None`, and every path is addressed
/// by name as before.
fn tree_inodes(
    image: &Path,
    paths: &[(PathBuf, i64)],
    usage: Usage,
) -> std::io::Result<Option<std::ops::RangeInclusive<u32>>> {
    let sb = superblock(image)?;
    let lost_found = paths.iter().any(|(rel, _)| rel == Path::new("lost+found"));
    let used = u64::from(sb.inodes.saturating_sub(sb.free_inodes));
    // The reserved inodes, lost+found, and the tree's inodes besides its
    // root, one of which is lost+found when the tree has one.
    let expected = u64::from(sb.first_ino) + usage.inodes.saturating_sub(1)
        - u64::from(lost_found && usage.inodes > 1);
    if used != expected || used < u64::from(sb.first_ino) {
        tracing::debug!(
            used,
            expected,
            "inodes not numbered as expected: addressed by path"
        );
        return Ok(None);
    }
    Ok(Some(sb.first_ino..=used as u32))
}

/// One `sif` per inode for its change time, and the extended attributes of
/// the inodes that have several put in name order; debugfs exits 0 even when a
/// command fails, so anything it says on stderr besides its banner is a
/// failure.
fn fix_inode_times(
    tools: &Tools,
    root: &Path,
    paths: &[(PathBuf, i64)],
    inodes: Option<std::ops::RangeInclusive<u32>>,
    image: &Path,
    epoch: u64,
) -> Result<()> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;
    let cmds_path = image.with_extension("debugfs");
    let values_dir = image.with_extension("xattrs");
    let write_cmds = || -> std::io::Result<()> {
        let mut w = std::io::BufWriter::new(std::fs::File::create(&cmds_path)?);
        let mut seen = std::collections::HashSet::new();
        let mut values = 0usize;
        for (rel, _) in paths {
            let name = quoted(rel).ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!(
                        "`{}`: a file name with a line break cannot be written to ext4 by debugfs",
                        rel.display()
                    ),
                )
            })?;
            let path = root.join(rel);
            // Hard links share an inode: its fields are set once. Not a
            // symlink's: `mke2fs -d` makes an inode for each of its names.
            let m = std::fs::symlink_metadata(&path)?;
            let first_link =
                m.is_dir() || m.file_type().is_symlink() || m.nlink() == 1 || seen.insert(m.ino());
            let attrs = super::xattrs::list(&path)?;
            if attrs.len() > 1 && first_link {
                let names: Vec<String> = attrs
                    .iter()
                    .map(|(n, _)| quoted_word(n))
                    .collect::<std::io::Result<_>>()?;
                writeln!(w, "ea_rm {name} {}", names.join(" "))?;
                if values == 0 {
                    std::fs::create_dir_all(&values_dir)?;
                }
                for ((_, value), attr) in attrs.iter().zip(&names) {
                    let file = values_dir.join(values.to_string());
                    values += 1;
                    std::fs::write(&file, value)?;
                    let file = quoted_word(file.as_os_str().as_bytes())?;
                    writeln!(w, "ea_set -f {file} {name} {attr}")?;
                }
            }
            if first_link && inodes.is_none() {
                writeln!(w, "sif {name} ctime @{epoch}")?;
            }
        }
        // After the attributes: rewriting them must not leave a change
        // time behind.
        if let Some(inodes) = &inodes {
            writeln!(w, "sif <2> ctime @{epoch}")?;
            for ino in inodes.clone() {
                writeln!(w, "sif <{ino}> ctime @{epoch}")?;
            }
        }
        w.flush()
    };
    if let Err(e) = write_cmds() {
        let _ = std::fs::remove_dir_all(&values_dir);
        return Err(Error::write(&cmds_path, e));
    }
    let out = Command::new(tools.path(Tool::Debugfs))
        .arg("-w")
        .arg("-f")
        .arg(&cmds_path)
        .arg(image)
        // Or debugfs stamps the superblock's last-write time with the clock.
        .env("E2FSPROGS_FAKE_TIME", epoch.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output();
    let _ = std::fs::remove_file(&cmds_path);
    let _ = std::fs::remove_dir_all(&values_dir);
    let out = out.map_err(|e| Error::ToolRun {
        tool: Tool::Debugfs,
        source: e,
    })?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let complaints: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("debugfs "))
        .take(20)
        .collect();
    if !out.status.success() || !complaints.is_empty() {
        return Err(Error::ToolFailed {
            tool: Tool::Debugfs,
            status: out.status.to_string(),
            output: complaints.join("\n"),
        });
    }
    Ok(())
}

/// `/rel` in debugfs's quoting (`"` doubled inside double quotes); `None`
/// for a name with a line break, which a command line cannot carry.
fn quoted(rel: &Path) -> Option<String> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = rel.as_os_str().as_bytes();
    if bytes.contains(&b'\n') || bytes.contains(&b'\r') {
        return None;
    }
    let s = String::from_utf8_lossy(bytes);
    if s.contains('\u{fffd}') && std::str::from_utf8(bytes).is_err() {
        return None;
    }
    Some(format!("\"/{}\"", s.replace('"', "\"\"")))
}

/// A word (an attribute name, a file) in debugfs's quoting; an error for one
/// a command line cannot carry.
fn quoted_word(bytes: &[u8]) -> std::io::Result<String> {
    match std::str::from_utf8(bytes) {
        Ok(s) if !s.contains(['\n', '\r']) => Ok(format!("\"{}\"", s.replace('"', "\"\""))),
        _ => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "`{}`: an extended attribute name or file that is not UTF-8 or has a line break cannot be written to ext4 by debugfs",
                String::from_utf8_lossy(bytes)
            ),
        )),
    }
}
