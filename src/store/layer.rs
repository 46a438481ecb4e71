//! Making a finished layer depend only on what its stage did, not on when or
//! in which store it ran, before it is committed.
//!
//! Two things would otherwise differ between two runs of the same stage:
//! - times: a file the stage wrote has the clock's mtime. With a pipeline's
//!   `source_epoch`, every time later than it becomes it (as osbuild clamps
//!   to its `source-epoch`; earlier times, a package's own file dates, stay).
//! - overlayfs' bookkeeping: a copied-up entry gets `overlay.origin` (a file
//!   handle of the lower inode, so it names the store's inode numbers), its
//!   directory `overlay.impure`, and the upper root the mount's random
//!   `overlay.uuid`. They only keep inode numbers stable while one mount
//!   lives; a layer used as a lower layer later does without them.
//!   Opaque-directory, whiteout and redirect marks are content and stay.
//!
//! An assembler's output directory gets the same treatment (its files' times).

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::sys::stat::{utimensat, UtimensatFlags};
use nix::sys::time::TimeSpec;

/// The xattrs overlayfs marks an opaque directory with (as root, and in a
/// user namespace).
pub const OPAQUE_XATTRS: [&[u8]; 2] = [b"trusted.overlay.opaque", b"user.overlay.opaque"];

/// Whether a layer's entry is an overlayfs whiteout (what was below is
/// deleted): a character device 0/0.
pub fn is_whiteout(meta: &fs::Metadata) -> bool {
    use std::os::unix::fs::FileTypeExt;
    meta.file_type().is_char_device() && meta.rdev() == 0
}

/// Whether one of an entry's xattrs (from `xattrs`) marks it opaque: a
/// directory that hides everything below it.
pub fn is_opaque_mark(name: &[u8], value: &[u8]) -> bool {
    OPAQUE_XATTRS.contains(&name) && value == b"y"
}

/// The xattrs overlayfs writes for its own use during one mount.
const MOUNT_XATTRS: &[&[u8]] = &[
    b"trusted.overlay.origin",
    b"trusted.overlay.impure",
    b"trusted.overlay.uuid",
    b"user.overlay.origin",
    b"user.overlay.impure",
    b"user.overlay.uuid",
];

/// Clamps every time in `dir` later than `epoch` (if any) to it and removes
/// overlayfs' per-mount xattrs; symlinks are changed themselves, never followed.
pub fn seal(dir: &Path, epoch: Option<u64>) -> io::Result<()> {
    let mut names: Vec<_> = fs::read_dir(dir)
        .map_err(|e| context(e, dir))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(|e| context(e, dir))?;
    names.sort();
    for name in names {
        let path = dir.join(&name);
        let meta = fs::symlink_metadata(&path).map_err(|e| context(e, &path))?;
        if meta.is_dir() {
            seal(&path, epoch)?;
        }
        entry(&path, &meta, epoch)?;
    }
    let meta = fs::symlink_metadata(dir).map_err(|e| context(e, dir))?;
    entry(dir, &meta, epoch)
}

fn entry(path: &Path, meta: &fs::Metadata, epoch: Option<u64>) -> io::Result<()> {
    drop_mount_xattrs(path)?;
    if let Some(epoch) = epoch {
        if meta.mtime() > epoch as i64 {
            let mtime = TimeSpec::new(epoch as i64, 0);
            utimensat(
                nix::fcntl::AT_FDCWD,
                path,
                &TimeSpec::UTIME_OMIT,
                &mtime,
                UtimensatFlags::NoFollowSymlink,
            )
            .map_err(|e| context(e.into(), path))?;
        }
    }
    Ok(())
}

fn drop_mount_xattrs(path: &Path) -> io::Result<()> {
    let c_path = CString::new(path.as_os_str().as_bytes())?;
    for name in MOUNT_XATTRS {
        let c_name = CString::new(*name)?;
        // SAFETY: both are NUL-terminated strings that outlive the call.
        if unsafe { libc::lremovexattr(c_path.as_ptr(), c_name.as_ptr()) } != 0 {
            let e = io::Error::last_os_error();
            // Not there (the usual case), a file system without xattrs, or a
            // user.* name on an entry that cannot have one (a symlink).
            let absent = match e.raw_os_error() {
                Some(libc::ENODATA | libc::ENOTSUP) => true,
                Some(libc::EPERM) => name.starts_with(b"user."),
                _ => false,
            };
            if !absent {
                return Err(context(e, path));
            }
        }
    }
    Ok(())
}

fn context(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn temp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("osbuild-layer-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn set_mtime(path: &Path, secs: i64) {
        utimensat(
            nix::fcntl::AT_FDCWD,
            path,
            &TimeSpec::UTIME_OMIT,
            &TimeSpec::new(secs, 0),
            UtimensatFlags::NoFollowSymlink,
        )
        .unwrap();
    }

    fn mtime(path: &Path) -> i64 {
        fs::symlink_metadata(path).unwrap().mtime()
    }

    #[test]
    fn later_times_are_clamped_earlier_ones_kept_and_links_not_followed() {
        let dir = temp("clamp");
        let outside = temp("clamp-outside").join("target");
        fs::write(&outside, "x").unwrap();
        set_mtime(&outside, 2_000_000_000);
        fs::create_dir(dir.join("etc")).unwrap();
        fs::write(dir.join("etc/new"), "new").unwrap();
        fs::write(dir.join("etc/old"), "old").unwrap();
        set_mtime(&dir.join("etc/old"), 1_000);
        symlink(&outside, dir.join("link")).unwrap();
        seal(&dir, Some(1_700_000_000)).unwrap();
        assert_eq!(mtime(&dir.join("etc/new")), 1_700_000_000);
        assert_eq!(mtime(&dir.join("etc/old")), 1_000);
        assert_eq!(mtime(&dir.join("etc")), 1_700_000_000);
        assert_eq!(mtime(&dir), 1_700_000_000);
        assert_eq!(mtime(&dir.join("link")), 1_700_000_000);
        assert_eq!(mtime(&outside), 2_000_000_000, "the link's target is left alone");
        // Without an epoch the times are the stage's.
        fs::write(dir.join("etc/later"), "x").unwrap();
        seal(&dir, None).unwrap();
        assert!(mtime(&dir.join("etc/later")) > 1_700_000_000);
        fs::remove_dir_all(&dir).unwrap();
        fs::remove_dir_all(outside.parent().unwrap()).unwrap();
    }

    #[test]
    fn overlay_bookkeeping_goes_and_content_marks_stay() {
        let dir = temp("xattrs");
        let file = dir.join("f");
        fs::write(&file, "x").unwrap();
        let set = |name: &str, value: &[u8]| {
            let c_path = CString::new(file.as_os_str().as_bytes()).unwrap();
            let c_name = CString::new(name).unwrap();
            let r = unsafe { libc::lsetxattr(c_path.as_ptr(), c_name.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
            r == 0
        };
        // trusted.* needs CAP_SYS_ADMIN, which builds have: the tests run as root.
        assert!(set("trusted.overlay.origin", b"\0handle"), "the tests need root");
        assert!(set("trusted.overlay.opaque", b"y"));
        assert!(set("user.keep", b"1"));
        seal(&dir, None).unwrap();
        let names: Vec<Vec<u8>> = super::super::content::xattrs(&file)
            .unwrap()
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        assert_eq!(names, [b"trusted.overlay.opaque".to_vec(), b"user.keep".to_vec()]);
        fs::remove_dir_all(&dir).unwrap();
    }
}
