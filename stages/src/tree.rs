//! The file tree of a package: `(src, dst, mode, config)` mappings under a
//! project root, resolved into a sorted list of entries every stage writes
//! the same way.
//!
//! Rules, in the order they are applied:
//!
//! - `src` is relative to the project root and must stay inside it. A `src`
//!   that is itself a symlink is followed (the user named a file, typically a
//!   link into a build directory); symlinks found *inside* a source directory
//!   are packaged as symlinks, target text unchanged.
//! - Every symlink met (followed or packaged) must resolve inside the project
//!   root, relative to the link's own directory; the check is lexical and, when
//!   the target exists, also on the fully resolved path, so chains of links
//!   cannot escape either.
//! - A directory `src` is packaged recursively. A file `src` whose `dst` ends
//!   in `/` goes into that directory under its own name.
//! - Names must be UTF-8 without control characters (U+0000..U+001F, U+007F).
//!   tar and cpio could carry other bytes, but dpkg's `md5sums`, `conffiles`
//!   and `.list` files are newline-separated, NUL ends a cpio name, PAX
//!   headers (OCI layers) and RPM's header strings are UTF-8, and apt's and
//!   yum's indices are text: a name that is fine in one format would break
//!   another, so all stages refuse them.
//! - Modes: a mapping's `mode` applies to the regular files it produces;
//!   otherwise a file is `0755` if any execute bit is set on disk, else
//!   `0644`, so a checkout's umask does not leak into the artifact.
//!   Directories are `0755`, symlinks `0777`. Owners are always root.
//! - Every parent directory of every entry is present (marked
//!   [`Entry::implied`] when no mapping named it), as dpkg-deb writes them.
//! - Two mappings may contribute to the same directory, but any other
//!   destination produced twice is an error.
//! - Entries are sorted by path component, so a parent comes before its
//!   children, and every entry carries the caller's `mtime`: set, not clamped,
//!   because the cache key of a stage digests file contents, not their dates,
//!   so dates must not reach the artifact at all.

use std::collections::BTreeMap;
use std::fs::{self, Metadata};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use crate::{Error, Result};

/// One `files` entry: where a file or directory comes from and where it goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// Source, relative to the project root.
    pub src: PathBuf,
    /// Absolute destination in the installed system; a trailing `/` on a file
    /// source means "into this directory".
    pub dst: String,
    /// Permission bits for the regular files this mapping produces.
    pub mode: Option<u32>,
    /// The files it produces are configuration files (dpkg conffiles, rpm
    /// `%config(noreplace)`).
    pub config: bool,
}

/// What an entry is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// A directory.
    Dir,
    /// A regular file.
    File {
        /// Where its bytes are on disk (absolute).
        src: PathBuf,
        /// Its size when the tree was resolved.
        size: u64,
    },
    /// A symbolic link.
    Symlink {
        /// The link target, as written in the source tree.
        target: String,
    },
}

/// One path of a package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Absolute path in the installed system, without a trailing `/`.
    pub path: String,
    /// File, directory or symlink.
    pub kind: EntryKind,
    /// Permission bits (including set-id and sticky bits).
    pub mode: u32,
    /// Modification time, seconds since the epoch.
    pub mtime: u64,
    /// A configuration file.
    pub config: bool,
    /// A directory present only because something below it is.
    pub implied: bool,
}

impl Entry {
    /// The path without its leading `/` (`usr/bin/hello`).
    pub(crate) fn relative_path(&self) -> &str {
        self.path.trim_start_matches('/')
    }
}

/// Resolves `mappings` under `root` into sorted entries, all dated `mtime`.
pub fn resolve(root: &Path, mappings: &[Mapping], mtime: u64) -> Result<Vec<Entry>> {
    let root = fs::canonicalize(root).map_err(|e| Error::read(root, e))?;
    let mut tree = Tree {
        root: &root,
        mtime,
        entries: BTreeMap::new(),
    };
    for m in mappings {
        tree.add_mapping(m)?;
    }
    tree.add_parents()?;
    let entries: Vec<Entry> = tree.entries.into_values().map(|(e, _)| e).collect();
    tracing::debug!(root = %root.display(), entries = entries.len(), "resolved file tree");
    Ok(entries)
}

/// Directories a base system already owns: the FHS 3.0 hierarchy as
/// Debian's `base-files` and Fedora's `filesystem` packages create it, plus
/// the shared drop-in directories of packages every system has (systemd,
/// logrotate, cron, the man page sections, the documentation roots).
///
/// A package owns every other directory it creates (`/etc/hello`,
/// `/usr/share/hello`, `/usr/share/doc/hello`), so removing it removes
/// them and `rpm -qf` names it for them; it never claims one of these,
/// which would make rpm report a conflict with `filesystem` over modes
/// (`/usr/bin` is `0555` there) and make its removal try to delete `/usr`.
/// The .deb lists every parent directory regardless, as dpkg-deb does:
/// dpkg tracks directories shared between packages itself and removes one
/// only when no installed package lists it.
pub(crate) const SYSTEM_DIRECTORIES: &[&str] = &[
    "/",
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/etc/cron.d",
    "/etc/cron.daily",
    "/etc/cron.hourly",
    "/etc/cron.monthly",
    "/etc/cron.weekly",
    "/etc/default",
    "/etc/logrotate.d",
    "/etc/opt",
    "/etc/pam.d",
    "/etc/profile.d",
    "/etc/security",
    "/etc/skel",
    "/etc/sudoers.d",
    "/etc/sysconfig",
    "/etc/systemd",
    "/etc/systemd/system",
    "/etc/tmpfiles.d",
    "/etc/sysctl.d",
    "/etc/ld.so.conf.d",
    "/etc/xdg",
    "/home",
    "/lib",
    "/lib64",
    "/media",
    "/mnt",
    "/opt",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/srv",
    "/sys",
    "/tmp",
    "/usr",
    "/usr/bin",
    "/usr/games",
    "/usr/include",
    "/usr/lib",
    "/usr/lib/systemd",
    "/usr/lib/systemd/system",
    "/usr/lib/systemd/user",
    "/usr/lib/sysusers.d",
    "/usr/lib/tmpfiles.d",
    "/usr/lib/sysctl.d",
    "/usr/lib64",
    "/usr/libexec",
    "/usr/local",
    "/usr/local/bin",
    "/usr/local/etc",
    "/usr/local/include",
    "/usr/local/lib",
    "/usr/local/sbin",
    "/usr/local/share",
    "/usr/local/src",
    "/usr/sbin",
    "/usr/share",
    "/usr/share/applications",
    "/usr/share/bash-completion",
    "/usr/share/bash-completion/completions",
    "/usr/share/common-licenses",
    "/usr/share/doc",
    "/usr/share/icons",
    "/usr/share/info",
    "/usr/share/licenses",
    "/usr/share/locale",
    "/usr/share/man",
    "/usr/share/man/man1",
    "/usr/share/man/man2",
    "/usr/share/man/man3",
    "/usr/share/man/man4",
    "/usr/share/man/man5",
    "/usr/share/man/man6",
    "/usr/share/man/man7",
    "/usr/share/man/man8",
    "/usr/share/man/man9",
    "/usr/share/misc",
    "/usr/share/pixmaps",
    "/usr/src",
    "/var",
    "/var/backups",
    "/var/cache",
    "/var/lib",
    "/var/local",
    "/var/lock",
    "/var/log",
    "/var/mail",
    "/var/opt",
    "/var/run",
    "/var/spool",
    "/var/tmp",
];

/// True when a base system already owns the directory `path` (see
/// [`SYSTEM_DIRECTORIES`]).
pub(crate) fn is_system_directory(path: &str) -> bool {
    let path = match path.trim_end_matches('/') {
        "" => "/",
        p => p,
    };
    SYSTEM_DIRECTORIES.contains(&path)
}

/// A file a stage generates (a copyright file, a changelog), written to
/// `src` beforehand.
#[derive(Clone, Debug)]
pub(crate) struct Generated {
    /// Absolute destination.
    pub path: String,
    /// Where its bytes are.
    pub src: PathBuf,
    /// How many.
    pub size: u64,
}

/// `entries` (as [`resolve`] returns them) plus the generated files, with
/// their missing parents (implied), in the same order. A generated file
/// whose path the package already has is left out: what the project
/// packages itself wins.
pub(crate) fn with_generated(entries: &[Entry], generated: &[Generated], mtime: u64) -> Vec<Entry> {
    let key_of = |path: &str| -> Key {
        path.split('/')
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let mut map: BTreeMap<Key, Entry> = entries
        .iter()
        .map(|e| (key_of(&e.path), e.clone()))
        .collect();
    for g in generated {
        let key = key_of(&g.path);
        if map.contains_key(&key) {
            continue;
        }
        for parent in (1..key.len()).filter_map(|depth| key.get(..depth)) {
            map.entry(parent.to_vec()).or_insert_with(|| Entry {
                path: join_key(parent),
                kind: EntryKind::Dir,
                mode: 0o755,
                mtime,
                config: false,
                implied: true,
            });
        }
        map.insert(
            key,
            Entry {
                path: g.path.clone(),
                kind: EntryKind::File {
                    src: g.src.clone(),
                    size: g.size,
                },
                mode: 0o644,
                mtime,
                config: false,
                implied: false,
            },
        );
    }
    map.into_values().collect()
}

/// Sort key: path components, so `/a/b` sorts right after `/a` and before
/// `/a-b`.
type Key = Vec<String>;

struct Tree<'a> {
    root: &'a Path,
    mtime: u64,
    /// Entry and the source that produced it (for duplicate messages).
    entries: BTreeMap<Key, (Entry, PathBuf)>,
}

impl Tree<'_> {
    fn add_mapping(&mut self, m: &Mapping) -> Result<()> {
        let dst_components = parse_destination(&m.dst)?;
        let src = self.source_path(&m.src)?;
        let meta = fs::symlink_metadata(&src).map_err(|e| Error::read(&src, e))?;
        // The named source is followed when it is a link (see module docs).
        let meta = if meta.file_type().is_symlink() {
            self.check_link(&src)?;
            fs::metadata(&src).map_err(|e| Error::read(&src, e))?
        } else {
            meta
        };
        if meta.is_dir() {
            self.add_dir(&src, dst_components, m, false)
        } else if meta.is_file() {
            let mut dst = dst_components;
            if m.dst.ends_with('/') || dst.is_empty() {
                let name = src.file_name().map(Path::new).unwrap_or(Path::new(""));
                dst.push(utf8_name(&src, name)?);
            }
            self.add_file(&src, &meta, dst, m)
        } else {
            Err(unsupported(&src, &meta))
        }
    }

    /// `src` joined to the root, refusing absolute paths and `..` escapes and
    /// sources reached through a directory link that leaves the root.
    fn source_path(&self, src: &Path) -> Result<PathBuf> {
        let outside = || Error::SourceOutsideRoot {
            path: src.to_path_buf(),
            root: self.root.to_path_buf(),
        };
        if src.is_absolute() {
            return Err(outside());
        }
        let joined = normalise(&self.root.join(src));
        if !joined.starts_with(self.root) {
            return Err(outside());
        }
        if let Some(parent) = joined.parent()
            && joined != self.root
        {
            match fs::canonicalize(parent) {
                Ok(p) if !p.starts_with(self.root) => return Err(outside()),
                Ok(_) => {}
                Err(e) => return Err(Error::read(&joined, e)),
            }
        }
        Ok(joined)
    }

    fn add_dir(&mut self, dir: &Path, dst: Key, m: &Mapping, implied: bool) -> Result<()> {
        if !dst.is_empty() {
            self.insert(
                dst.clone(),
                Entry {
                    path: join_key(&dst),
                    kind: EntryKind::Dir,
                    mode: 0o755,
                    mtime: self.mtime,
                    config: false,
                    implied,
                },
                dir,
            )?;
        }
        let mut children = Vec::new();
        for child in fs::read_dir(dir).map_err(|e| Error::read(dir, e))? {
            let child = child.map_err(|e| Error::read(dir, e))?;
            children.push(child.path());
        }
        children.sort();
        for path in children {
            let name = path.file_name().map(Path::new).unwrap_or(Path::new(""));
            let mut child_dst = dst.clone();
            child_dst.push(utf8_name(&path, name)?);
            let meta = fs::symlink_metadata(&path).map_err(|e| Error::read(&path, e))?;
            let ft = meta.file_type();
            if ft.is_symlink() {
                let target = self.check_link(&path)?;
                self.insert(
                    child_dst.clone(),
                    Entry {
                        path: join_key(&child_dst),
                        kind: EntryKind::Symlink { target },
                        mode: 0o777,
                        mtime: self.mtime,
                        config: false,
                        implied: false,
                    },
                    &path,
                )?;
            } else if ft.is_dir() {
                self.add_dir(&path, child_dst, m, false)?;
            } else if ft.is_file() {
                self.add_file(&path, &meta, child_dst, m)?;
            } else {
                return Err(unsupported(&path, &meta));
            }
        }
        Ok(())
    }

    fn add_file(&mut self, src: &Path, meta: &Metadata, dst: Key, m: &Mapping) -> Result<()> {
        // Opening now reports an unreadable file before anything is written.
        fs::File::open(src).map_err(|e| Error::read(src, e))?;
        let mode = m.mode.map(|m| m & 0o7777).unwrap_or_else(|| {
            if meta.permissions().mode() & 0o111 != 0 {
                0o755
            } else {
                0o644
            }
        });
        self.insert(
            dst.clone(),
            Entry {
                path: join_key(&dst),
                kind: EntryKind::File {
                    src: src.to_path_buf(),
                    size: meta.len(),
                },
                mode,
                mtime: self.mtime,
                config: m.config,
                implied: false,
            },
            src,
        )
    }

    fn insert(&mut self, key: Key, entry: Entry, src: &Path) -> Result<()> {
        match self.entries.get_mut(&key) {
            None => {
                self.entries.insert(key, (entry, src.to_path_buf()));
                Ok(())
            }
            // Two directory mappings may fill the same directory.
            Some((existing, _))
                if existing.kind == EntryKind::Dir && entry.kind == EntryKind::Dir =>
            {
                existing.implied &= entry.implied;
                Ok(())
            }
            Some((existing, first)) => Err(Error::DuplicateDestination {
                dst: existing.path.clone(),
                first: first.clone(),
                second: src.to_path_buf(),
            }),
        }
    }

    /// Adds the missing parents of every entry, and refuses an entry whose
    /// parent is produced as a file or symlink.
    fn add_parents(&mut self) -> Result<()> {
        let keys: Vec<Key> = self.entries.keys().cloned().collect();
        for key in keys {
            for parent in (1..key.len()).filter_map(|depth| key.get(..depth)) {
                let parent = parent.to_vec();
                match self.entries.get(&parent) {
                    Some((e, _)) if e.kind == EntryKind::Dir => {}
                    Some((e, src)) => {
                        return Err(Error::BadDestination {
                            dst: join_key(&key),
                            expected: "a path whose parents are directories",
                            found: format!(
                                "`{}` is not a directory (it comes from `{}`)",
                                e.path,
                                src.display()
                            ),
                        });
                    }
                    None => {
                        let entry = Entry {
                            path: join_key(&parent),
                            kind: EntryKind::Dir,
                            mode: 0o755,
                            mtime: self.mtime,
                            config: false,
                            implied: true,
                        };
                        self.entries.insert(parent, (entry, PathBuf::new()));
                    }
                }
            }
        }
        Ok(())
    }

    /// Checks that the symlink `link` resolves inside the root and returns its
    /// target text.
    fn check_link(&self, link: &Path) -> Result<String> {
        let target = fs::read_link(link).map_err(|e| Error::read(link, e))?;
        let text = target.to_str().ok_or_else(|| Error::BadFileName {
            path: link.to_path_buf(),
            reason: format!("the symlink target `{}` is not UTF-8", target.display()),
        })?;
        if let Some(c) = text.chars().find(|c| c.is_control()) {
            return Err(Error::BadFileName {
                path: link.to_path_buf(),
                reason: format!(
                    "the symlink target `{}` contains the control character {c:?}",
                    text.escape_debug()
                ),
            });
        }
        let base = link.parent().unwrap_or(self.root);
        let lexical = normalise(&base.join(&target));
        let resolved = match fs::canonicalize(link) {
            Ok(real) if lexical.starts_with(self.root) => real,
            _ => lexical,
        };
        if !resolved.starts_with(self.root) {
            return Err(Error::SymlinkOutsideRoot {
                link: link.to_path_buf(),
                target,
                resolved,
                root: self.root.to_path_buf(),
            });
        }
        Ok(text.to_owned())
    }
}

/// Splits an absolute destination into components, refusing relative paths,
/// `.`/`..`, empty components and names no format can carry.
fn parse_destination(dst: &str) -> Result<Key> {
    let bad = |expected, found: String| Error::BadDestination {
        dst: dst.to_owned(),
        expected,
        found,
    };
    let Some(rest) = dst.strip_prefix('/') else {
        return Err(bad("an absolute path", "a relative path".into()));
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    let mut key = Vec::new();
    for part in rest.split('/') {
        match part {
            ".." | "." => {
                return Err(bad(
                    "a path without `.` or `..` components",
                    format!("a `{part}` component"),
                ));
            }
            "" => return Err(bad("a path without empty components", "`//`".into())),
            _ => {}
        }
        if let Some(c) = part.chars().find(|c| c.is_control()) {
            return Err(bad(
                "names without control characters",
                format!("{c:?} in `{}`", part.escape_debug()),
            ));
        }
        key.push(part.to_owned());
    }
    Ok(key)
}

/// A file name as UTF-8 without control characters (see the module docs).
fn utf8_name(path: &Path, name: &Path) -> Result<String> {
    let Some(s) = name.to_str() else {
        return Err(Error::BadFileName {
            path: path.to_path_buf(),
            reason:
                "the name is not UTF-8, which rpm, OCI (PAX) and the repository indices require"
                    .into(),
        });
    };
    if let Some(c) = s.chars().find(|c| c.is_control()) {
        return Err(Error::BadFileName {
            path: path.to_path_buf(),
            reason: format!(
                "the name contains the control character {c:?}, which dpkg's line-based file lists and cpio cannot carry"
            ),
        });
    }
    Ok(s.to_owned())
}

fn unsupported(path: &Path, meta: &Metadata) -> Error {
    let ft = meta.file_type();
    let found = if ft.is_fifo() {
        "FIFO"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_block_device() {
        "block device"
    } else if ft.is_char_device() {
        "character device"
    } else {
        "special file"
    };
    Error::UnsupportedFileType {
        path: path.to_path_buf(),
        found,
    }
}

fn join_key(key: &[String]) -> String {
    let mut s = String::new();
    for part in key {
        s.push('/');
        s.push_str(part);
    }
    s
}

/// Removes `.` and folds `..` without touching the file system.
fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations() {
        assert_eq!(
            parse_destination("/usr/bin/x").unwrap(),
            ["usr", "bin", "x"]
        );
        assert_eq!(parse_destination("/usr/share/").unwrap(), ["usr", "share"]);
        assert!(parse_destination("/").unwrap().is_empty());
        assert!(parse_destination("usr/bin").is_err());
        assert!(parse_destination("/usr/../etc").is_err());
        assert!(parse_destination("/usr//bin").is_err());
        assert!(parse_destination("/usr/a\nb").is_err());
    }

    #[test]
    fn generated_files_get_their_parents_and_keep_the_order() {
        let entries = vec![Entry {
            path: "/usr/share/doc/x/copyright".into(),
            kind: EntryKind::Symlink { target: "a".into() },
            mode: 0o777,
            mtime: 1,
            config: false,
            implied: false,
        }];
        let g = |path: &str| Generated {
            path: path.into(),
            src: PathBuf::from("/tmp/g"),
            size: 3,
        };
        let out = with_generated(
            &entries,
            &[
                g("/usr/share/doc/x/copyright"),
                g("/usr/share/doc/x/changelog.gz"),
            ],
            1,
        );
        let paths: Vec<&str> = out.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/usr",
                "/usr/share",
                "/usr/share/doc",
                "/usr/share/doc/x",
                "/usr/share/doc/x/changelog.gz",
                "/usr/share/doc/x/copyright"
            ]
        );
        // The packaged copyright stays.
        assert!(matches!(out[5].kind, EntryKind::Symlink { .. }));
        assert!(out[0].implied && !out[4].implied);
    }

    #[test]
    fn system_directories() {
        assert!(is_system_directory("/usr/bin"));
        assert!(is_system_directory("/etc/"));
        assert!(is_system_directory("/"));
        assert!(!is_system_directory("/etc/shop"));
        assert!(!is_system_directory("/usr/share/shop"));
        assert!(!is_system_directory("/usr/share/doc/shop"));
    }

    #[test]
    fn key_order_puts_children_after_parent() {
        let mut keys = [
            vec!["a-b".to_string()],
            vec!["a".to_string(), "z".to_string()],
            vec!["a".to_string()],
        ];
        keys.sort();
        assert_eq!(keys[0], ["a"]);
        assert_eq!(keys[1], ["a", "z"]);
        assert_eq!(keys[2], ["a-b"]);
    }
}
