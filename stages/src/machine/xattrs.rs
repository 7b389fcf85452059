//! Extended attributes in the baked tree (file capabilities are the
//! `security.capability` attribute), read and written without following
//! symlinks.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// One attribute: its full name (`security.capability`) and value.
pub(crate) type Attr = (Vec<u8>, Vec<u8>);

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in a path"))
}

/// `lsetxattr(2)`.
pub(crate) fn set(path: &Path, name: &[u8], value: &[u8]) -> io::Result<()> {
    let p = c_path(path)?;
    let n = CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in a name"))?;
    // SAFETY: valid NUL-terminated strings and a buffer of `value.len()` bytes.
    let rc = unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Every attribute of `path`, sorted by name.
pub(crate) fn list(path: &Path) -> io::Result<Vec<Attr>> {
    let p = c_path(path)?;
    // SAFETY: a valid path; a null buffer of size 0 asks for the size.
    let size = unsafe { libc::llistxattr(p.as_ptr(), std::ptr::null_mut(), 0) };
    if size < 0 {
        let e = io::Error::last_os_error();
        // A filesystem without extended attributes has none to copy.
        if e.raw_os_error() == Some(libc::ENOTSUP) {
            return Ok(Vec::new());
        }
        return Err(e);
    }
    if size == 0 {
        return Ok(Vec::new());
    }
    // The tree is the bake's own: nothing changes it meanwhile, but the
    // sizes are capped at the kernel's limits (XATTR_LIST_MAX,
    // XATTR_SIZE_MAX) all the same.
    const MAX: usize = 64 << 10;
    let mut names = vec![0u8; (size as usize).min(MAX)];
    // SAFETY: a valid path and a buffer of `names.len()` bytes.
    let n = unsafe { libc::llistxattr(p.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    names.truncate(n as usize);
    let mut out = Vec::new();
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let c = CString::new(name)?;
        // SAFETY: valid strings; a null buffer of size 0 asks for the size.
        let len = unsafe { libc::lgetxattr(p.as_ptr(), c.as_ptr(), std::ptr::null_mut(), 0) };
        if len < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut value = vec![0u8; (len as usize).min(MAX)];
        // SAFETY: valid strings and a buffer of `value.len()` bytes.
        let len = unsafe {
            libc::lgetxattr(
                p.as_ptr(),
                c.as_ptr(),
                value.as_mut_ptr().cast(),
                value.len(),
            )
        };
        if len < 0 {
            return Err(io::Error::last_os_error());
        }
        value.truncate(len as usize);
        out.push((name.to_vec(), value));
    }
    out.sort();
    Ok(out)
}
