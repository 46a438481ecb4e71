//! Hands an image to the user: copies an image object's files into the output
//! directory, all or nothing.
//!
//! An image is not kept twice. A new image is handed over ([`hand_over`]) by
//! reflink where the file system shares blocks (btrfs, XFS): then the store
//! keeps its copy for free. Elsewhere (ext4) its files are moved into the
//! output directory and the store keeps the tree it was made from, not the
//! image, unless asked (`--keep-image`): a re-run assembles again, which
//! costs the assembler's seconds rather than a second copy of every image.
//!
//! Only regular files, directories and symlinks are delivered: an assembler's
//! output is checked before it is stored ([`check_deliverable`]), and a copy
//! opens nothing that could block (a FIFO) or lead elsewhere (a symlink).
//! Delivered files lose setuid and setgid bits: the output directory is
//! the user's, often readable by others, and an image file has no use for them.

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Why a directory cannot be written into whole.
#[derive(Debug, thiserror::Error)]
pub enum OutputDirError {
    #[error("output directory {} is not empty", .0.display())]
    NotEmpty(PathBuf),
    #[error("output directory {}: {}", .0.display(), .1)]
    Unreadable(PathBuf, io::Error),
}

/// The output directory must be absent or empty: we never mix a new image
/// with old files, and never overwrite anything.
pub fn check_output_dir(dir: &Path) -> Result<(), OutputDirError> {
    match fs::read_dir(dir) {
        Ok(mut entries) => match entries.next() {
            None => Ok(()),
            Some(_) => Err(OutputDirError::NotEmpty(dir.to_path_buf())),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(OutputDirError::Unreadable(dir.to_path_buf(), e)),
    }
}

/// Copies `from` (an image object's `output/`) to `to`: first into a hidden
/// sibling directory, then renamed into place, so `to` is either untouched or
/// complete.
pub fn deliver(from: &Path, to: &Path) -> io::Result<Vec<PathBuf>> {
    place(from, to, Transfer::Copy)?;
    let mut files = Vec::new();
    list(to, &mut files)?;
    Ok(files)
}

/// How [`hand_over`] gave the files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handed {
    /// Every file cloned (a reflink): `from` is as it was.
    Cloned,
    /// Moved (or copied where a clone was refused): `from` is used up.
    Moved,
}

/// Gives `from`'s files to `to` (absent or empty) without a second copy of
/// their data: as reflinks where the file system can, else by moving them
/// (a copy, then removal, across file systems). All or nothing for `to`.
pub fn hand_over(from: &Path, to: &Path) -> io::Result<Handed> {
    Ok(match place(from, to, Transfer::Clone)? {
        Transfer::Clone => Handed::Cloned,
        _ => Handed::Moved,
    })
}

/// How a file goes from an image object to the output directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transfer {
    Copy,
    /// A reflink; becomes `Move` at the first file the file system refuses.
    Clone,
    Move,
}

/// Builds `to` from `from` (see [`build_beside`]); how the files went.
fn place(from: &Path, to: &Path, mut how: Transfer) -> io::Result<Transfer> {
    build_beside(to, |temp| transfer_tree(from, temp, &mut how))?;
    Ok(how)
}

/// Has `fill` make the directory `to` (absent or empty) under a hidden name
/// beside it, then renames it into place (rename(2) replaces an empty
/// directory atomically; a non-empty one fails): `to` is either untouched
/// or complete, and nothing is left when `fill` fails.
pub fn build_beside<T, E: From<io::Error>>(to: &Path, fill: impl FnOnce(&Path) -> Result<T, E>) -> Result<T, E> {
    let (parent, temp) = temp_beside(to)?;
    fs::create_dir_all(&parent)?;
    let _ = fs::remove_dir_all(&temp);
    let result = fill(&temp).and_then(|done| {
        fs::rename(&temp, to)?;
        Ok(done)
    });
    if result.is_err() {
        let _ = fs::remove_dir_all(&temp);
    }
    result
}

fn transfer_tree(from: &Path, to: &Path, how: &mut Transfer) -> io::Result<()> {
    fs::create_dir(to)?;
    fs::set_permissions(to, fs::Permissions::from_mode(0o755))?;
    let mut entries: Vec<_> = fs::read_dir(from)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let meta = fs::symlink_metadata(&src)?;
        let kind = meta.file_type();
        if kind.is_dir() {
            transfer_tree(&src, &dst, how)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&src)?, &dst)?;
        } else if kind.is_file() {
            if *how == Transfer::Clone && !clone_file(&src, &dst)? {
                *how = Transfer::Move;
            }
            match *how {
                Transfer::Clone => {}
                Transfer::Copy => copy_sparse(&src, &dst)?,
                Transfer::Move => match fs::rename(&src, &dst) {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
                        copy_sparse(&src, &dst)?;
                        fs::remove_file(&src).map_err(|e| context(e, &src))?;
                    }
                    Err(e) => return Err(context(e, &src)),
                },
            }
            fs::set_permissions(&dst, fs::Permissions::from_mode(meta.mode() & 0o777))?;
        } else {
            return Err(not_deliverable(&src, kind));
        }
    }
    Ok(())
}

/// Clones `from` to a new file `to` (FICLONE); false, with nothing made,
/// where the file systems cannot.
fn clone_file(from: &Path, to: &Path) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let src = fs::File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(from)
        .map_err(|e| context(e, from))?;
    let dst = fs::File::options()
        .write(true)
        .create_new(true)
        .open(to)
        .map_err(|e| context(e, to))?;
    // SAFETY: FICLONE takes the source descriptor as its argument; both
    // files are open for the call.
    if unsafe { libc::ioctl(dst.as_raw_fd(), libc::FICLONE, src.as_raw_fd()) } == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    drop(dst);
    fs::remove_file(to).map_err(|e| context(e, to))?;
    match e.raw_os_error() {
        Some(libc::EOPNOTSUPP | libc::EXDEV | libc::EINVAL | libc::ENOTTY | libc::ENOSYS) => Ok(false),
        _ => Err(context(e, from)),
    }
}

/// The parent of `to`, and a hidden directory in it to build `to` in.
fn temp_beside(to: &Path) -> io::Result<(PathBuf, PathBuf)> {
    let parent = match to.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = to.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} names no directory", to.display()),
        )
    })?;
    let temp = parent.join(format!(
        ".{}.osbuild-{}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    Ok((parent, temp))
}

fn list(dir: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            list(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

/// Checks that an assembler's output holds only what can be delivered:
/// regular files, directories and symlinks.
pub fn check_deliverable(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            check_deliverable(&entry.path())?;
        } else if !kind.is_file() && !kind.is_symlink() {
            return Err(not_deliverable(&entry.path(), kind));
        }
    }
    Ok(())
}

fn not_deliverable(path: &Path, kind: fs::FileType) -> io::Error {
    use std::os::unix::fs::FileTypeExt;
    let what = if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else {
        "not a regular file"
    };
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "{} is {what}: only regular files, directories and symlinks can be delivered",
            path.display()
        ),
    )
}

/// Copies a regular file keeping its holes (see `osbuild_stages::sparse`).
/// The source is opened without following a symlink and without blocking,
/// and must be a regular file.
pub fn copy_sparse(from: &Path, to: &Path) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;

    let src = fs::File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(from)
        .map_err(|e| context(e, from))?;
    let meta = src.metadata()?;
    if !meta.is_file() {
        return Err(not_deliverable(from, meta.file_type()));
    }
    osbuild_stages::sparse::copy(&src, from, to)
}

fn context(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, SeekFrom, Write};

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("osbuild-output-test-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn sparse_copy_keeps_content_and_holes() {
        let dir = temp("sparse");
        let src = dir.join("disk.raw");
        let mut f = fs::File::create(&src).unwrap();
        f.write_all(b"head").unwrap();
        f.seek(SeekFrom::Start(64 << 20)).unwrap();
        f.write_all(b"tail").unwrap();
        f.set_len(128 << 20).unwrap();
        drop(f);
        let dst = dir.join("copy.raw");
        copy_sparse(&src, &dst).unwrap();
        assert_eq!(fs::read(&src).unwrap(), fs::read(&dst).unwrap());
        assert!(
            fs::metadata(&dst).unwrap().blocks() * 512 < 1 << 20,
            "holes were filled"
        );
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn sparse_copy_to_another_filesystem_reads_and_writes() {
        // /dev/shm is a tmpfs, the temporary directory is not: copy_file_range
        // between them fails with EXDEV.
        let dir = temp("exdev");
        let src = dir.join("disk.raw");
        let mut f = fs::File::create(&src).unwrap();
        f.seek(SeekFrom::Start(8 << 20)).unwrap();
        f.write_all(&[7u8; 3 << 20]).unwrap();
        f.set_len(64 << 20).unwrap();
        drop(f);
        let shm = PathBuf::from(format!("/dev/shm/osbuild-output-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&shm);
        fs::create_dir(&shm).unwrap();
        let dst = shm.join("copy.raw");
        let copied = copy_sparse(&src, &dst);
        let same = copied.is_ok() && fs::read(&src).unwrap() == fs::read(&dst).unwrap();
        let blocks = fs::metadata(&dst).map(|m| m.blocks()).unwrap_or(0);
        fs::remove_dir_all(&shm).unwrap();
        fs::remove_dir_all(dir).unwrap();
        copied.unwrap();
        assert!(same, "the copy differs");
        assert!(blocks * 512 < 4 << 20, "holes were filled: {blocks} blocks");
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = temp("fifo");
        nix::unistd::mkfifo(&dir.join("pipe"), nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        let e = copy_sparse(&dir.join("pipe"), &dir.join("copy")).unwrap_err();
        assert!(e.to_string().contains("is a FIFO"), "{e}");
        let e = check_deliverable(&dir).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("pipe is a FIFO: only regular files, directories and symlinks can be delivered"),
            "{e}"
        );
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn hand_over_moves_where_it_cannot_clone_and_drops_setuid() {
        let dir = temp("hand-over");
        let from = dir.join("from");
        fs::create_dir_all(from.join("sub")).unwrap();
        fs::write(from.join("disk.raw"), b"image").unwrap();
        fs::set_permissions(from.join("disk.raw"), fs::Permissions::from_mode(0o4755)).unwrap();
        fs::write(from.join("sub/more"), b"more").unwrap();
        let to = dir.join("out");
        let how = hand_over(&from, &to).unwrap();
        assert_eq!(fs::read(to.join("disk.raw")).unwrap(), b"image");
        assert_eq!(fs::read(to.join("sub/more")).unwrap(), b"more");
        assert_eq!(fs::metadata(to.join("disk.raw")).unwrap().mode() & 0o7777, 0o755);
        // This machine's ext4 cannot clone: the files moved, none left behind.
        let fs_type = nix::sys::statfs::statfs(&dir).unwrap().filesystem_type();
        if fs_type == nix::sys::statfs::EXT4_SUPER_MAGIC {
            assert_eq!(how, Handed::Moved);
            assert!(!from.join("disk.raw").exists() && !from.join("sub/more").exists());
        }
        // Across file systems: copied, then removed.
        let shm = PathBuf::from(format!("/dev/shm/osbuild-hand-over-{}", std::process::id()));
        let _ = fs::remove_dir_all(&shm);
        fs::create_dir(&shm).unwrap();
        fs::write(shm.join("disk.raw"), b"other").unwrap();
        let across = hand_over(&shm, &dir.join("out2"));
        let left = shm.join("disk.raw").exists();
        fs::remove_dir_all(&shm).unwrap();
        assert_eq!(across.unwrap(), Handed::Moved);
        assert!(!left, "moved, not copied");
        assert_eq!(fs::read(dir.join("out2/disk.raw")).unwrap(), b"other");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn deliver_refuses_a_non_empty_directory_and_leaves_it_alone() {
        let dir = temp("deliver");
        let from = dir.join("from");
        fs::create_dir(&from).unwrap();
        fs::write(from.join("image.tar"), b"x").unwrap();
        let to = dir.join("out");
        fs::create_dir(&to).unwrap();
        fs::write(to.join("old"), b"keep").unwrap();
        assert!(check_output_dir(&to).is_err());
        assert!(deliver(&from, &to).is_err());
        assert_eq!(fs::read(to.join("old")).unwrap(), b"keep");
        fs::remove_file(to.join("old")).unwrap();
        let files = deliver(&from, &to).unwrap();
        assert_eq!(files, vec![to.join("image.tar")]);
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 2, "no temporary left behind");
        fs::remove_dir_all(dir).unwrap();
    }
}
