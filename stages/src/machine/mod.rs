//! The machine-image stage: a baked disk image (raw and qcow2) made from a
//! base root filesystem tarball, the project's packages and a static
//! post-install script, generalised so one image starts many machines.
//!
//! A bake, in order (each step reported through [`Reporter`]):
//! 1. the tools are found on `PATH` (`tools`); a missing one is an error
//!    naming the Debian package that provides it, before any work;
//! 2. the base is unpacked into a scratch directory (`rootfs`): every entry
//!    checked, ownership, modes and device nodes kept; a tarball that is
//!    not a root filesystem, or an entry that would land outside the root,
//!    is refused;
//! 3. the packages are installed with the package manager the base carries,
//!    and the post-install script runs inside the root (`install`);
//! 4. the tree is generalised (`generalise`); what was removed is returned
//!    for the build record;
//! 5. times are normalised and the ext4 filesystem written reproducibly
//!    (`ext4`); a `size` too small is an error naming the size needed;
//! 6. the filesystem is the raw image; `qemu-img convert` writes qcow2;
//!    the raw image is hashed ([`crate::digest`]) while `qemu-img` reads it.
//!
//! Same base, packages, script, size, `SOURCE_DATE_EPOCH` and identity:
//! byte-identical images. Each image is a sparse file on disk, read and
//! written by the tools; nothing of it is held in memory here. Outputs are
//! written under temporary names in the output directory and renamed into
//! place only when every format is done: a failed bake leaves nothing.
//!
//! The raw image is a bare ext4 filesystem (no partition table and no boot
//! loader): what a hypervisor attaches as a root disk for direct kernel boot,
//! or a cloud imports as a volume snapshot. Extended attributes (file
//! capabilities among them) are carried: those of the base's pax records,
//! and those the packages or the post-install script set (`setcap`).
//!
//! Unpacking keeps ownership, `mknod`s device nodes, and `dpkg`, `rpm` and
//! the post-install script need chroot(2): a bake runs as root, and says so
//! ([`Error::NeedsRoot`]) otherwise.

mod ext4;
mod generalise;
mod install;
mod rootfs;
pub mod seed;
mod times;
pub(crate) mod tools;
mod xattrs;

use std::path::{Path, PathBuf};
use std::process::Command;

pub use self::ext4::filesystem_uuid;
use self::tools::{Tool, Tools, run_captured};
use crate::{Error, Result};

/// A disk image format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DiskFormat {
    /// The raw disk: the filesystem's bytes, sparse.
    Raw,
    /// QEMU copy-on-write v2 (`qemu-img convert -O qcow2`).
    Qcow2,
}

impl DiskFormat {
    /// The file extension and `qemu-img` format name.
    pub fn name(self) -> &'static str {
        match self {
            DiskFormat::Raw => "raw",
            DiskFormat::Qcow2 => "qcow2",
        }
    }
}

/// The package manager a base carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PackageManager {
    /// dpkg (Debian and derivatives): `.deb` packages.
    Dpkg,
    /// rpm (Fedora, RHEL, SUSE, ...): `.rpm` packages.
    Rpm,
}

impl PackageManager {
    /// The name used in messages and records.
    pub fn name(self) -> &'static str {
        match self {
            PackageManager::Dpkg => "dpkg",
            PackageManager::Rpm => "rpm",
        }
    }

    fn tool(self) -> Tool {
        match self {
            PackageManager::Dpkg => Tool::Dpkg,
            PackageManager::Rpm => Tool::Rpm,
        }
    }
}

/// One package to install, in each format the build has it; the base's
/// package manager picks.
#[derive(Clone, Debug)]
pub struct PackageFiles {
    /// The package name, for messages.
    pub name: String,
    /// Its `.deb`, if built.
    pub deb: Option<PathBuf>,
    /// Its `.rpm`, if built.
    pub rpm: Option<PathBuf>,
}

/// What to bake.
#[derive(Clone, Debug)]
pub struct Bake {
    /// The machine's name: the images are `NAME.raw`, `NAME.qcow2`, and the
    /// filesystem label is its first 16 bytes.
    pub name: String,
    /// The base root filesystem tarball (plain, gzip, xz or zstd).
    pub base: PathBuf,
    /// Packages to install, in this order.
    pub packages: Vec<PackageFiles>,
    /// The post-install script, run with `/bin/sh` inside the root.
    pub post_install: Option<PathBuf>,
    /// The filesystem size in bytes.
    pub size: u64,
    /// Formats to write; at least one.
    pub formats: Vec<DiskFormat>,
    /// `SOURCE_DATE_EPOCH`: every time in the image.
    pub epoch: u64,
    /// Seeds the filesystem UUID and hash seed (pipe passes the stage key,
    /// so different inputs give different UUIDs and equal inputs equal ones).
    pub identity: String,
    /// Where the scratch tree goes (a directory made inside it and removed).
    pub work_dir: PathBuf,
    /// Where the images are written.
    pub out_dir: PathBuf,
    /// Where the tools are looked for (`PATH` syntax); `None`: `$PATH`.
    pub tool_path: Option<std::ffi::OsString>,
}

impl Bake {
    fn find_tools(&self, wanted: &[Tool]) -> Result<Tools> {
        match &self.tool_path {
            Some(p) => Tools::find_in(p, wanted),
            None => Tools::find(wanted),
        }
    }
}

/// A step of a bake, for progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Unpacking the base (`bytes` reports compressed bytes read of `total`).
    Unpack {
        /// The tarball's size.
        total: u64,
    },
    /// Installing `count` packages with the base's manager.
    Install {
        /// The manager.
        manager: PackageManager,
        /// How many packages.
        count: usize,
    },
    /// Running the post-install script.
    PostInstall,
    /// Generalising.
    Generalise,
    /// Writing the ext4 filesystem of `size` bytes.
    Filesystem {
        /// The filesystem size.
        size: u64,
    },
    /// Converting to a format.
    Convert(DiskFormat),
}

/// Receives a bake's progress. The stage never prints; the CLI renders.
pub trait Reporter: Sync {
    /// A step starts.
    fn step(&self, step: Step);
    /// Progress within the step, in its unit (bytes of the tarball read).
    fn bytes(&self, _done: u64) {}
}

/// A reporter that ignores everything.
pub struct Quiet;

impl Reporter for Quiet {
    fn step(&self, _step: Step) {}
}

/// One written image.
#[derive(Clone, Debug)]
pub struct Image {
    /// Its format.
    pub format: DiskFormat,
    /// Where it is (`out_dir/NAME.FORMAT`).
    pub path: PathBuf,
    /// Its digests, computed as it was written, and the file's metadata
    /// then (a later change shows in it): the raw image's, hashed while
    /// `qemu-img` read it; `None` for qcow2 (hashing it would only delay
    /// the bake's end: the caller hashes it while storing the raw image).
    pub digest: Option<crate::digest::FileDigest>,
}

/// What a bake produced and did.
#[derive(Clone, Debug)]
pub struct Baked {
    /// The images, in the order of [`DiskFormat`].
    pub images: Vec<Image>,
    /// The base's package manager, when it has one.
    pub manager: Option<PackageManager>,
    /// What generalisation removed (absolute paths in the image, sorted).
    pub removed: Vec<String>,
    /// The post-install script's output (stdout and stderr, interleaved).
    pub post_install_output: String,
    /// The filesystem's UUID.
    pub uuid: String,
    /// The smallest `size` that would have fitted, in bytes (whole MiB).
    pub needed: u64,
}

/// The tools a bake of `b` needs before knowing the base's package manager.
fn tools_for(b: &Bake) -> Vec<Tool> {
    let mut t = vec![Tool::Mke2fs, Tool::Debugfs];
    if b.formats.contains(&DiskFormat::Qcow2) {
        t.push(Tool::QemuImg);
    }
    if b.post_install.is_some() {
        t.push(Tool::Chroot);
    }
    t
}

/// Bakes `b`. On any error nothing is left in `out_dir` and the scratch
/// tree is removed; on success too, once the images are in place.
pub fn bake(b: &Bake, reporter: &dyn Reporter) -> Result<Baked> {
    let (baked, scratch) = bake_deferred(b, reporter)?;
    scratch.remove()?;
    Ok(baked)
}

/// [`bake`], leaving the scratch tree's removal to the caller: the
/// [`Scratch`] returned holds it (dropping it removes it), so a caller with
/// more to do (storing the images) removes it meanwhile. On any error
/// nothing is left in `out_dir` and the tree is removed.
pub fn bake_deferred(b: &Bake, reporter: &dyn Reporter) -> Result<(Baked, Scratch)> {
    if b.formats.is_empty() {
        return Err(Error::InvalidField {
            field: "formats",
            value: String::new(),
            expected: "at least one of `raw`, `qcow2`".into(),
        });
    }
    let mut tools = tools_for(b);
    // Which package manager the base has is known only after unpacking; a
    // missing dpkg or rpm must still fail before the work, so both are
    // looked for when there are packages and each is required if it is the
    // only format built.
    if !b.packages.is_empty() {
        if b.packages.iter().all(|p| p.rpm.is_none()) {
            tools.push(Tool::Dpkg);
        }
        if b.packages.iter().all(|p| p.deb.is_none()) {
            tools.push(Tool::Rpm);
        }
    }
    let found = b.find_tools(&tools)?;
    if !rustix::process::geteuid().is_root() {
        return Err(Error::NeedsRoot {
            what: "baking a machine image (unpacking the base with its owners and device nodes, chroot for dpkg, rpm and the post-install script)",
        });
    }
    std::fs::create_dir_all(&b.work_dir).map_err(|e| Error::write(&b.work_dir, e))?;
    std::fs::create_dir_all(&b.out_dir).map_err(|e| Error::write(&b.out_dir, e))?;
    let scratch = tempfile::Builder::new()
        .prefix(&format!(".bake-{}-", b.name))
        .tempdir_in(&b.work_dir)
        .map_err(|e| Error::write(&b.work_dir, e))?;
    let root = scratch.path().join("root");
    std::fs::create_dir(&root).map_err(|e| Error::write(&root, e))?;

    let total = std::fs::metadata(&b.base)
        .map_err(|e| Error::read(&b.base, e))?
        .len();
    reporter.step(Step::Unpack { total });
    rootfs::unpack(&b.base, &root, reporter)?;

    let manager = install::detect(&root);
    if !b.packages.is_empty() {
        let Some(manager) = manager else {
            return Err(Error::NoPackageManager {
                base: b.base.clone(),
                packages: b.packages.iter().map(|p| p.name.clone()).collect(),
            });
        };
        let found = b.find_tools(&[manager.tool()])?;
        reporter.step(Step::Install {
            manager,
            count: b.packages.len(),
        });
        install::packages(&found, &root, manager, &b.packages, b.epoch)?;
    }
    let mut post_install_output = String::new();
    if let Some(script) = &b.post_install {
        reporter.step(Step::PostInstall);
        post_install_output = install::post_install(&found, &root, script, b.epoch)?;
    }
    reporter.step(Step::Generalise);
    let removed = generalise::generalise(&root)?;

    reporter.step(Step::Filesystem { size: b.size });
    let paths = times::normalise(&root, b.epoch).map_err(|e| Error::write(&root, e))?;
    let usage = ext4::usage(&root, &paths)?;
    let needed = ext4::needed(usage);
    let fs_image = scratch.path().join("fs.raw");
    ext4::write(
        &found,
        &root,
        &paths,
        usage,
        &fs_image,
        b.size,
        b.epoch,
        &b.identity,
        &b.name,
    )?;
    // The filesystem is final: the raw image is hashed (both digests, holes
    // not read) while `qemu-img` reads it to write qcow2 (which the caller
    // hashes while it stores the raw image). The tree is left to the caller
    // ([`Scratch`]): its removal (thousands of unlinks, seconds on a busy
    // machine) need not delay the images.
    // Opened here: `convert` renames it into place, maybe before the
    // hashing thread starts.
    let raw = match b.formats.contains(&DiskFormat::Raw) {
        true => Some(std::fs::File::open(&fs_image).map_err(|e| Error::read(&fs_image, e))?),
        false => None,
    };
    let (staged, raw_digest) = std::thread::scope(|scope| {
        let hashing = raw
            .as_ref()
            .map(|f| scope.spawn(move || crate::digest::hash_open(f)));
        let converted = convert(b, &found, &fs_image, scratch.path(), reporter);
        let raw_digest = hashing.map(|h| {
            h.join().unwrap_or_else(|_| {
                Err(std::io::Error::other(
                    "the thread hashing the raw image panicked",
                ))
            })
        });
        (converted, raw_digest)
    });
    let staged = staged?;
    let mut raw_digest = raw_digest;
    let mut hashed = Vec::new();
    for (format, tmp) in &staged {
        let digest = match format {
            DiskFormat::Raw => raw_digest.take(),
            // Hashed by the caller, while it stores the raw image.
            DiskFormat::Qcow2 => None,
        };
        hashed.push(digest.transpose().map_err(|e| Error::read(tmp, e))?);
    }
    // Every format is done: move them into place.
    let mut images = Vec::new();
    for ((format, tmp), digest) in staged.into_iter().zip(hashed) {
        let dst = b.out_dir.join(format!("{}.{}", b.name, format.name()));
        if let Err(e) = move_file(&tmp, &dst) {
            for img in &images {
                let Image { path, .. } = img;
                let _ = std::fs::remove_file(path);
            }
            return Err(Error::write(&dst, e));
        }
        images.push(Image {
            format,
            path: dst,
            digest,
        });
    }
    Ok((
        Baked {
            images,
            manager,
            removed,
            post_install_output,
            uuid: filesystem_uuid(&b.identity),
            needed,
        },
        Scratch(scratch),
    ))
}

/// A finished bake's scratch directory, the unpacked tree in it: removed
/// when dropped, or by [`Scratch::remove`], which says whether it could be.
#[derive(Debug)]
pub struct Scratch(tempfile::TempDir);

impl Scratch {
    /// Removes the directory and the tree in it.
    pub fn remove(self) -> Result<()> {
        let path = self.0.path().to_path_buf();
        self.0.close().map_err(|e| Error::write(&path, e))
    }
}

/// Writes each format of `b` from the filesystem image `fs_image` into
/// `scratch` (qcow2 converted first; the raw image is the filesystem
/// itself, renamed last); returns them in the order of [`DiskFormat`].
fn convert(
    b: &Bake,
    found: &Tools,
    fs_image: &Path,
    scratch: &Path,
    reporter: &dyn Reporter,
) -> Result<Vec<(DiskFormat, PathBuf)>> {
    let mut formats = b.formats.clone();
    formats.sort();
    formats.dedup();
    let mut staged = Vec::new();
    // qcow2 first, converted from the filesystem; the raw image is the
    // filesystem itself, renamed last.
    for &format in formats.iter().rev() {
        reporter.step(Step::Convert(format));
        let tmp = scratch.join(format!("out.{}", format.name()));
        match format {
            DiskFormat::Raw => {
                std::fs::rename(fs_image, &tmp).map_err(|e| Error::write(&tmp, e))?;
            }
            DiskFormat::Qcow2 => {
                let mut cmd = Command::new(found.path(Tool::QemuImg));
                cmd.args(["convert", "-f", "raw", "-O", "qcow2"])
                    .arg(fs_image)
                    .arg(&tmp);
                let (status, output) = run_captured(cmd, 16 << 10).map_err(|e| Error::ToolRun {
                    tool: Tool::QemuImg,
                    source: e,
                })?;
                if !status.success() {
                    return Err(Error::ToolFailed {
                        tool: Tool::QemuImg,
                        status: status.to_string(),
                        output,
                    });
                }
            }
        }
        staged.push((format, tmp));
    }
    staged.reverse();
    Ok(staged)
}

/// Renames `src` to `dst`, or copies when they are on different filesystems.
fn move_file(src: &Path, dst: &Path) -> std::io::Result<()> {
    match std::fs::rename(src, dst) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
            let tmp = dst.with_extension("partial");
            std::fs::copy(src, &tmp)?;
            std::fs::rename(&tmp, dst)
        }
        Err(e) => Err(e),
    }
}
