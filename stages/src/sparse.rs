//! Copying a file keeping its holes: raw disk images are mostly holes, and
//! `fs::copy` would write every zero. Data moves by `copy_file_range` (a
//! reflink or an in-kernel copy) where the two files' filesystems allow it,
//! else by reads and writes.

use std::fs;
use std::io;
use std::path::Path;

/// Copies the open regular file `src` (at `from`, for errors) to a new file `to`.
pub fn copy(src: &fs::File, from: &Path, to: &Path) -> io::Result<()> {
    use nix::unistd::{lseek, Whence};
    use std::os::fd::AsFd;

    let meta = src.metadata()?;
    let dst = fs::File::create(to).map_err(|e| context(e, to))?;
    let len = meta.len();
    let mut in_kernel = true;
    let mut offset: i64 = 0;
    while (offset as u64) < len {
        let data = match lseek(src.as_fd(), offset, Whence::SeekData) {
            Ok(d) => d,
            Err(nix::errno::Errno::ENXIO) => break, // only a hole remains
            Err(e) => return Err(e.into()),
        };
        let hole = lseek(src.as_fd(), data, Whence::SeekHole)?;
        let mut off_in = data;
        let mut off_out = data;
        let mut remaining = (hole - data) as usize;
        while remaining > 0 && in_kernel {
            match nix::fcntl::copy_file_range(
                src.as_fd(),
                Some(&mut off_in),
                dst.as_fd(),
                Some(&mut off_out),
                remaining,
            ) {
                Ok(0) => break,
                Ok(n) => remaining -= n,
                // Another filesystem (EXDEV), or one that cannot: copy by hand
                // from where the kernel stopped.
                Err(
                    nix::errno::Errno::EXDEV
                    | nix::errno::Errno::EINVAL
                    | nix::errno::Errno::ENOSYS
                    | nix::errno::Errno::EOPNOTSUPP,
                ) => in_kernel = false,
                Err(e) => return Err(context(e.into(), from)),
            }
        }
        if remaining > 0 && !in_kernel {
            copy_range(src, &dst, off_in as u64, remaining as u64).map_err(|e| context(e, from))?;
        }
        offset = hole;
    }
    dst.set_len(len)?;
    Ok(())
}

/// Copies `len` bytes at `offset` of `src` to the same offset of `dst`.
fn copy_range(src: &fs::File, dst: &fs::File, mut offset: u64, len: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; (1 << 20).min(len as usize)];
    let end = offset + len;
    while offset < end {
        let want = buf.len().min((end - offset) as usize);
        let n = src.read_at(&mut buf[..want], offset)?;
        if n == 0 {
            break; // the file shrank: nothing more to copy
        }
        dst.write_all_at(&buf[..n], offset)?;
        offset += n as u64;
    }
    Ok(())
}

fn context(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}
