//! Extended attributes in the baked tree (file capabilities are the
//! `security.capability` attribute), read and written without following
//! symlinks (`rustix`'s `lsetxattr`, `llistxattr`, `lgetxattr`).

use std::io;
use std::path::Path;

use rustix::fs::XattrFlags;

/// One attribute: its full name (`security.capability`) and value.
pub(crate) type Attr = (Vec<u8>, Vec<u8>);

/// The kernel's limits on a name list and a value (`XATTR_LIST_MAX`,
/// `XATTR_SIZE_MAX`): the tree is the bake's own and nothing changes it
/// meanwhile, but no size read back is trusted beyond them.
const MAX: usize = 64 << 10;

/// `lsetxattr(2)`.
pub(crate) fn set(path: &Path, name: &[u8], value: &[u8]) -> io::Result<()> {
    rustix::fs::lsetxattr(path, name, value, XattrFlags::empty()).map_err(io::Error::from)
}

/// Every attribute of `path`, sorted by name.
pub(crate) fn list(path: &Path) -> io::Result<Vec<Attr>> {
    // An empty buffer asks for the size.
    let mut empty = [0u8; 0];
    let size = match rustix::fs::llistxattr(path, &mut empty[..]) {
        Ok(n) => n,
        // A filesystem without extended attributes has none to copy.
        Err(rustix::io::Errno::NOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    if size == 0 {
        return Ok(Vec::new());
    }
    let mut names = vec![0u8; size.min(MAX)];
    let n = rustix::fs::llistxattr(path, &mut names[..])?;
    names.truncate(n);
    let mut out = Vec::new();
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let len = rustix::fs::lgetxattr(path, name, &mut empty[..])?;
        let mut value = vec![0u8; len.min(MAX)];
        let len = rustix::fs::lgetxattr(path, name, &mut value[..])?;
        value.truncate(len);
        out.push((name.to_vec(), value));
    }
    out.sort();
    Ok(out)
}
