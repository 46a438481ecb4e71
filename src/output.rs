//! Hands an image to the user: copies an image object's files into the output
//! directory, all or nothing.

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The output directory must be absent or empty: we never mix a new image
/// with old files, and never overwrite anything.
pub fn check_output_dir(dir: &Path) -> Result<(), String> {
    match fs::read_dir(dir) {
        Ok(mut entries) => match entries.next() {
            None => Ok(()),
            Some(_) => Err(format!("output directory {} is not empty", dir.display())),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("output directory {}: {e}", dir.display())),
    }
}

/// Copies `from` (an image object's `output/`) to `to`: first into a hidden
/// sibling directory, then renamed into place, so `to` is either untouched or
/// complete.
pub fn deliver(from: &Path, to: &Path) -> io::Result<Vec<PathBuf>> {
    let parent = match to.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent)?;
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
    let _ = fs::remove_dir_all(&temp);
    let result = copy_tree(from, &temp).and_then(|()| {
        // rename(2) replaces an empty directory atomically; a non-empty one fails.
        fs::rename(&temp, to)
    });
    if let Err(e) = result {
        let _ = fs::remove_dir_all(&temp);
        return Err(e);
    }
    let mut files = Vec::new();
    list(to, &mut files)?;
    Ok(files)
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

fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    fs::create_dir(to)?;
    fs::set_permissions(to, fs::Permissions::from_mode(0o755))?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let meta = fs::symlink_metadata(&src)?;
        if meta.is_dir() {
            copy_tree(&src, &dst)?;
        } else if meta.file_type().is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&src)?, &dst)?;
        } else {
            copy_sparse(&src, &dst)?;
            fs::set_permissions(&dst, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
        }
    }
    Ok(())
}

/// Copies a file keeping its holes: raw disk images are mostly holes, and
/// `fs::copy` would write every zero.
pub fn copy_sparse(from: &Path, to: &Path) -> io::Result<()> {
    use nix::unistd::{lseek, Whence};
    use std::os::fd::AsFd;

    let src = fs::File::open(from)?;
    let dst = fs::File::create(to)?;
    let len = src.metadata()?.len();
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
        while remaining > 0 {
            let n = nix::fcntl::copy_file_range(
                src.as_fd(),
                Some(&mut off_in),
                dst.as_fd(),
                Some(&mut off_out),
                remaining,
            )?;
            if n == 0 {
                break;
            }
            remaining -= n;
        }
        offset = hole;
    }
    dst.set_len(len)?;
    Ok(())
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
