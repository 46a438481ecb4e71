//! The content hash of a stored layer or image: one sha256 over everything a
//! tree is made of, so a changed object can be told from the one committed.
//!
//! The hash covers, for every entry in name order: its path, type, mode,
//! owner, mtime (whole seconds, which a tar round-trip keeps), extended
//! attributes (file capabilities, ACLs, overlayfs' opaque-directory and
//! whiteout marks), and its content: a file's bytes, a symlink's target, a
//! device's number, or for a second name of a hard-linked inode, the first
//! name. A file's bytes are hashed as its non-zero 4 KiB blocks with their
//! offsets, so holes are never read and a sparse copy hashes like the
//! original. Access and change times are left out: reading a tree or copying it
//! changes them without changing what it holds.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use sha2::{Digest, Sha256};

/// The prefix of every content hash, so a later algorithm can be told apart.
const PREFIX: &str = "sha256:";

/// The unit in which a file's bytes are hashed (see `Walk::file`).
const BLOCK: u64 = 4096;

/// Hashes the directory `root` and everything below it, without following
/// symlinks; `sha256:<hex>`.
pub fn hash_dir(root: &Path) -> io::Result<String> {
    let mut walk = Walk {
        hasher: Sha256::new(),
        links: HashMap::new(),
        buf: vec![0; 1 << 20],
    };
    walk.entry(root, b".")?;
    let digest = walk.hasher.finalize();
    let mut out = String::with_capacity(PREFIX.len() + 64);
    out.push_str(PREFIX);
    for byte in digest {
        out.push_str(&format!("{byte:02x}"));
    }
    Ok(out)
}

struct Walk {
    hasher: Sha256,
    /// The first path of each multiply-linked inode seen so far.
    links: HashMap<(u64, u64), Vec<u8>>,
    buf: Vec<u8>,
}

impl Walk {
    fn entry(&mut self, path: &Path, rel: &[u8]) -> io::Result<()> {
        let meta = fs::symlink_metadata(path).map_err(|e| context(e, path))?;
        let kind = meta.file_type();
        let tag: &[u8] = if kind.is_dir() {
            b"d"
        } else if kind.is_file() {
            b"f"
        } else if kind.is_symlink() {
            b"l"
        } else if kind.is_char_device() {
            b"c"
        } else if kind.is_block_device() {
            b"b"
        } else if kind.is_fifo() {
            b"p"
        } else {
            b"s"
        };
        // Length-prefixed fields: no path or value can pass for another.
        self.field(tag);
        self.field(rel);
        self.field(
            format!(
                "{:o} {} {} {}",
                meta.mode() & 0o7777,
                meta.uid(),
                meta.gid(),
                meta.mtime()
            )
            .as_bytes(),
        );
        for (name, value) in xattrs(path)? {
            self.field(b"x");
            self.field(&name);
            self.field(&value);
        }
        if !kind.is_dir() && meta.nlink() > 1 {
            let first = self
                .links
                .entry((meta.dev(), meta.ino()))
                .or_insert_with(|| rel.to_vec());
            if first.as_slice() != rel {
                let first = first.clone();
                self.field(b"h");
                self.field(&first);
                return Ok(());
            }
        }
        if kind.is_dir() {
            let mut names: Vec<_> = fs::read_dir(path)
                .map_err(|e| context(e, path))?
                .map(|e| e.map(|e| e.file_name()))
                .collect::<Result<_, _>>()?;
            names.sort();
            self.field(format!("{}", names.len()).as_bytes());
            for name in names {
                let mut child = rel.to_vec();
                child.push(b'/');
                child.extend_from_slice(name.as_bytes());
                self.entry(&path.join(&name), &child)?;
            }
        } else if kind.is_file() {
            self.field(format!("{}", meta.len()).as_bytes());
            let file = File::open(path).map_err(|e| context(e, path))?;
            self.file(&file, meta.len()).map_err(|e| context(e, path))?;
        } else if kind.is_symlink() {
            let target = fs::read_link(path).map_err(|e| context(e, path))?;
            self.field(target.as_os_str().as_bytes());
        } else if kind.is_char_device() || kind.is_block_device() {
            self.field(format!("{}", meta.rdev()).as_bytes());
        }
        Ok(())
    }

    /// A file's bytes as its non-zero blocks, each with its offset: a hole
    /// and written zeros hash the same, and only data is read (a 1 TiB
    /// sparse file costs nothing).
    fn file(&mut self, file: &File, len: u64) -> io::Result<()> {
        use nix::unistd::{lseek, Whence};
        use std::os::fd::AsFd;
        use std::os::unix::fs::FileExt;
        let mut next = 0u64;
        while next < len {
            let data = match lseek(file.as_fd(), next as i64, Whence::SeekData) {
                Ok(d) => d as u64,
                Err(nix::errno::Errno::ENXIO) => break, // only a hole remains
                Err(e) => return Err(e.into()),
            };
            let hole = (lseek(file.as_fd(), data as i64, Whence::SeekHole)? as u64).min(len);
            // Whole blocks of a fixed size, whatever the filesystem's own.
            let mut at = (data / BLOCK * BLOCK).max(next);
            let end = hole.div_ceil(BLOCK).saturating_mul(BLOCK).min(len);
            while at < end {
                let want = (self.buf.len() as u64).min(end - at) as usize;
                let n = file.read_at(&mut self.buf[..want], at)?;
                if n == 0 {
                    break; // the file shrank
                }
                for (i, block) in self.buf[..n].chunks(BLOCK as usize).enumerate() {
                    if block.iter().any(|b| *b != 0) {
                        self.hasher.update((at + i as u64 * BLOCK).to_le_bytes());
                        self.hasher.update(block);
                    }
                }
                at += n as u64;
            }
            next = end.max(next + 1);
        }
        Ok(())
    }

    fn field(&mut self, bytes: &[u8]) {
        self.hasher.update((bytes.len() as u64).to_le_bytes());
        self.hasher.update(bytes);
    }
}

pub(crate) use osbuild_stages::xattr::xattrs;

fn context(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;
    use std::os::unix::fs::PermissionsExt;

    fn temp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("osbuild-content-test-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("etc")).unwrap();
        fs::write(dir.join("etc/hostname"), "box\n").unwrap();
        std::os::unix::fs::symlink("hostname", dir.join("etc/name")).unwrap();
        fs::hard_link(dir.join("etc/hostname"), dir.join("etc/again")).unwrap();
        dir
    }

    #[test]
    fn every_kind_of_change_changes_the_hash() {
        let dir = temp("changes");
        let first = hash_dir(&dir).unwrap();
        assert!(first.starts_with("sha256:") && first.len() == 71, "{first}");
        assert_eq!(hash_dir(&dir).unwrap(), first, "the same tree, the same hash");
        // Reading a file moves its atime, not its hash.
        fs::read(dir.join("etc/hostname")).unwrap();
        assert_eq!(hash_dir(&dir).unwrap(), first);

        let mut seen = vec![first];
        let mut changed = |what: &str| {
            let now = hash_dir(&dir).unwrap();
            assert!(!seen.contains(&now), "{what} did not change the hash");
            seen.push(now);
        };
        fs::write(dir.join("etc/hostname"), "bot\n").unwrap();
        changed("content");
        fs::set_permissions(dir.join("etc/hostname"), fs::Permissions::from_mode(0o4755)).unwrap();
        changed("mode");
        std::os::unix::fs::lchown(dir.join("etc/name"), Some(1), None).unwrap();
        changed("owner");
        fs::remove_file(dir.join("etc/name")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.join("etc/name")).unwrap();
        changed("symlink target");
        fs::remove_file(dir.join("etc/again")).unwrap();
        fs::write(dir.join("etc/again"), "bot\n").unwrap();
        changed("a hard link broken");
        let c = CString::new(dir.join("etc").as_os_str().as_bytes()).unwrap();
        let rc = unsafe { libc::lsetxattr(c.as_ptr(), c"user.osbuild".as_ptr(), b"1".as_ptr().cast(), 1, 0) };
        assert_eq!(rc, 0, "{}", io::Error::last_os_error());
        changed("an extended attribute");
        fs::rename(dir.join("etc/again"), dir.join("etc/bgain")).unwrap();
        changed("a name");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn holes_and_written_zeros_hash_alike_and_holes_are_not_read() {
        use std::os::unix::fs::FileExt;
        let dir = temp("sparse");
        let hash_of = |write: &dyn Fn(&File)| {
            let path = dir.join("etc/disk");
            let _ = fs::remove_file(&path);
            let f = File::create(&path).unwrap();
            write(&f);
            drop(f);
            hash_dir(&dir).unwrap()
        };
        let sparse = hash_of(&|f| {
            f.write_all_at(b"data", 1 << 20).unwrap();
            f.set_len(8 << 20).unwrap();
        });
        let dense = hash_of(&|f| {
            let mut bytes = vec![0u8; 8 << 20];
            bytes[1 << 20..(1 << 20) + 4].copy_from_slice(b"data");
            f.write_all_at(&bytes, 0).unwrap();
        });
        assert_eq!(sparse, dense);
        let moved = hash_of(&|f| {
            f.write_all_at(b"data", 2 << 20).unwrap();
            f.set_len(8 << 20).unwrap();
        });
        assert_ne!(sparse, moved, "where the data is counts");
        let longer = hash_of(&|f| {
            f.write_all_at(b"data", 1 << 20).unwrap();
            f.set_len(9 << 20).unwrap();
        });
        assert_ne!(sparse, longer, "the length counts");
        // A terabyte of hole is hashed without reading it (reading would
        // take an hour).
        hash_of(&|f| f.set_len(1 << 40).unwrap());
        fs::remove_dir_all(dir).unwrap();
    }
}
