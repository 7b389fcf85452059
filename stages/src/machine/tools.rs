//! The external programs a bake runs, found on `PATH` before any work starts,
//! each with the Debian package that provides it.

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// A program the machine stage runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tool {
    /// `mke2fs`: writes the ext4 filesystem from the baked tree.
    Mke2fs,
    /// `debugfs`: fixes every inode's times after `mke2fs`.
    Debugfs,
    /// `qemu-img`: converts the filesystem to each disk format.
    QemuImg,
    /// `chroot`: runs the post-install script inside the root.
    Chroot,
    /// `dpkg`: installs `.deb` packages into a Debian base.
    Dpkg,
    /// `rpm`: installs `.rpm` packages into an rpm base.
    Rpm,
    /// `xorriso`: writes a NoCloud seed as an ISO 9660 image.
    Xorriso,
    /// `mkfs.vfat`: makes a NoCloud seed as a FAT image.
    MkfsVfat,
    /// `mcopy`: copies files into that FAT image.
    Mcopy,
}

impl Tool {
    /// The program's file name.
    pub fn program(self) -> &'static str {
        match self {
            Tool::Mke2fs => "mke2fs",
            Tool::Debugfs => "debugfs",
            Tool::QemuImg => "qemu-img",
            Tool::Chroot => "chroot",
            Tool::Dpkg => "dpkg",
            Tool::Rpm => "rpm",
            Tool::Xorriso => "xorriso",
            Tool::MkfsVfat => "mkfs.vfat",
            Tool::Mcopy => "mcopy",
        }
    }

    /// The Debian package that installs it.
    pub fn debian_package(self) -> &'static str {
        match self {
            Tool::Mke2fs | Tool::Debugfs => "e2fsprogs",
            Tool::QemuImg => "qemu-utils",
            Tool::Chroot => "coreutils",
            Tool::Dpkg => "dpkg",
            Tool::Rpm => "rpm",
            Tool::Xorriso => "xorriso",
            Tool::MkfsVfat => "dosfstools",
            Tool::Mcopy => "mtools",
        }
    }
}

/// Where each tool was found.
#[derive(Clone, Debug)]
pub(crate) struct Tools {
    found: Vec<(Tool, PathBuf)>,
}

impl Tools {
    /// Finds every tool of `wanted` on `PATH`; the error lists all that are
    /// missing, each with its Debian package.
    pub(crate) fn find(wanted: &[Tool]) -> Result<Tools> {
        Tools::find_in(&std::env::var_os("PATH").unwrap_or_default(), wanted)
    }

    /// [`Tools::find`] in the directories of `path` (`PATH` syntax).
    pub(crate) fn find_in(path: &std::ffi::OsStr, wanted: &[Tool]) -> Result<Tools> {
        let dirs: Vec<PathBuf> = std::env::split_paths(path).collect();
        let mut found = Vec::new();
        let mut missing = Vec::new();
        for &tool in wanted {
            match dirs
                .iter()
                .map(|d| d.join(tool.program()))
                .find(|p| is_executable(p))
            {
                Some(p) => found.push((tool, p)),
                None => missing.push(tool),
            }
        }
        if missing.is_empty() {
            Ok(Tools { found })
        } else {
            missing.sort();
            missing.dedup();
            Err(Error::ToolMissing { tools: missing })
        }
    }

    /// The path of `tool`, which [`Tools::find`] was asked for.
    pub fn path(&self, tool: Tool) -> &Path {
        self.found
            .iter()
            .find(|(t, _)| *t == tool)
            .map(|(_, p)| p.as_path())
            .unwrap_or_else(|| Path::new(tool.program()))
    }
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Runs `cmd`, capturing stdout and stderr together in order (both go to one
/// pipe), and returns the exit status and the text. The output is capped at
/// `limit` bytes (the tail is kept: that is where the error is).
pub(crate) fn run_captured(
    mut cmd: std::process::Command,
    limit: usize,
) -> std::io::Result<(std::process::ExitStatus, String)> {
    use std::io::Read;
    let (mut reader, writer) = std::io::pipe()?;
    let writer2 = writer.try_clone()?;
    cmd.stdin(std::process::Stdio::null())
        .stdout(writer)
        .stderr(writer2);
    let mut child = cmd.spawn()?;
    // The command holds the parent's copies of the write ends: drop it so
    // EOF comes when the child exits.
    drop(cmd);
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        out.extend_from_slice(crate::io::handled(&buf, n)?);
        if out.len() > 2 * limit {
            out.drain(..out.len() - limit);
        }
    }
    let status = child.wait()?;
    if out.len() > limit {
        out.drain(..out.len() - limit);
    }
    Ok((status, String::from_utf8_lossy(&out).into_owned()))
}
