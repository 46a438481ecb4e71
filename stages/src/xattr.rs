//! Reading a file's extended attributes without following symbolic links.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// A file's extended attributes, sorted by name, without following symlinks.
pub fn xattrs(path: &Path) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let c_path = CString::new(path.as_os_str().as_bytes())?;
    let names = read_sized(|buf, len| unsafe { libc::llistxattr(c_path.as_ptr(), buf.cast(), len) })
        .map_err(|e| context(e, path))?;
    let mut out = Vec::new();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let c_name = CString::new(name)?;
        let value =
            read_sized(|buf, len| unsafe { libc::lgetxattr(c_path.as_ptr(), c_name.as_ptr(), buf.cast(), len) });
        match value {
            Ok(value) => out.push((name.to_vec(), value)),
            // Gone between the listing and the read: not part of the tree.
            Err(e) if e.raw_os_error() == Some(libc::ENODATA) => {}
            Err(e) => {
                return Err(context(
                    e,
                    &path.join(format!("[xattr {}]", OsStr::from_bytes(name).to_string_lossy())),
                ))
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Calls a `(buffer, size) -> length` system call with a buffer that grows
/// until the value fits (it may grow between the two calls).
fn read_sized(call: impl Fn(*mut u8, usize) -> isize) -> io::Result<Vec<u8>> {
    loop {
        let len = call(std::ptr::null_mut(), 0);
        if len < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::ENOTSUP) => Ok(Vec::new()),
                _ => Err(e),
            };
        }
        let mut buf = vec![0u8; len as usize];
        let got = call(buf.as_mut_ptr(), buf.len());
        if got >= 0 {
            buf.truncate(got as usize);
            return Ok(buf);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ERANGE) {
            return Err(e);
        }
    }
}

fn context(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}
