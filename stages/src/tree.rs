//! The tree a stage builds, as a directory whose paths are resolved inside it.
//!
//! An earlier stage may have planted symlinks such as `etc/hostname ->
//! /etc/passwd` or `rootlink -> /`. Resolved by the sandbox (std::fs on
//! `ctx.tree.join(..)`), those lead out of the tree, and a write lands in the
//! sandbox's own `/tmp` or build root and is missing from the image. Every path
//! here is resolved by the kernel with `openat2(RESOLVE_IN_ROOT |
//! RESOLVE_NO_MAGICLINKS)` from a descriptor of the tree: absolute symlinks and
//! `..` resolve as they would in the booted image (`rootlink/etc/x` is the
//! tree's `/etc/x`, `..` stops at the tree's top), and `/proc/self/root`-style
//! links are refused. So a write lands inside the tree or fails with an error
//! that names the path (as the image sees it, `/etc/hostname: ...`).
//!
//! What is written replaces the last component of its path: a file the stage
//! writes is a new file at exactly that path, never written through a symlink
//! found there (`etc/hostname -> /etc/passwd` becomes a regular
//! `/etc/hostname`; the tree's `/etc/passwd` is untouched). Directories on the
//! way are followed, inside the tree. Reads follow symlinks, inside the tree;
//! an edit ([`Tree::rewrite`]: the account files, `/etc/default/keyboard`)
//! reads through a link and puts a regular file in its place, with the mode
//! and owner of what it read.
//!
//! Programs a stage runs on the tree resolve paths themselves: chrooted ones
//! (apt, dpkg, update-initramfs, the script stage) inside the tree as here;
//! `systemctl --root` and `dnf --installroot` with their own root-prefixed
//! lookups; mmdebstrap from outside, on what is usually an empty tree.
//!
//! Hand-written on nix's `openat2` rather than cap-std: cap-std refuses every
//! absolute symlink as an escape, but Debian trees are full of them
//! (`/etc/resolv.conf`, alternatives), and the image resolves them against its
//! own root, which is exactly `RESOLVE_IN_ROOT`.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat2, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode as NixMode;

/// The kind of a directory entry, not following symlinks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Other,
}

/// One entry of [`Tree::read_dir`].
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: OsString,
    pub kind: Kind,
}

/// A stage's tree, opened once; every path given to it is relative to its top
/// (a leading `/` is allowed and means the same).
pub struct Tree {
    root: OwnedFd,
    path: PathBuf,
}

/// How `path` is shown in errors: as the image sees it.
fn shown(path: &Path) -> String {
    let s = path.to_string_lossy();
    format!("/{}", s.trim_start_matches('/'))
}

fn named(e: impl Into<io::Error>, path: &Path) -> io::Error {
    let e: io::Error = e.into();
    io::Error::new(e.kind(), format!("{}: {e}", shown(path)))
}

/// The path relative to the tree's top ("." for the top itself).
fn relative(path: &Path) -> PathBuf {
    let rel: PathBuf = path.components().filter(|c| !matches!(c, Component::RootDir)).collect();
    if rel.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        rel
    }
}

impl Tree {
    /// Opens the tree at `path` (in the sandbox, `ctx.tree`).
    pub fn open(path: &Path) -> io::Result<Tree> {
        let root = nix::fcntl::open(
            path,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            NixMode::empty(),
        )
        .map_err(|e| io::Error::new(io::Error::from(e).kind(), format!("{}: {e}", path.display())))?;
        Ok(Tree {
            root,
            path: path.to_path_buf(),
        })
    }

    /// Another handle on the same tree.
    pub fn try_clone(&self) -> io::Result<Tree> {
        Ok(Tree {
            root: self.root.try_clone()?,
            path: self.path.clone(),
        })
    }

    /// Where the tree is, for programs run on it (`chroot`, `systemctl --root`).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `openat2` in the tree; `flags` get `O_CLOEXEC`.
    fn resolve(&self, path: &Path, flags: OFlag, mode: u32) -> io::Result<OwnedFd> {
        let rel = relative(path);
        let how = OpenHow::new()
            .flags(flags | OFlag::O_CLOEXEC)
            .mode(NixMode::from_bits_truncate(mode))
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        // EAGAIN: a rename elsewhere raced the lookup; the kernel asks for a retry.
        let mut tries = 0;
        loop {
            match openat2(self.root.as_fd(), rel.as_path(), how) {
                Err(Errno::EAGAIN) if tries < 16 => tries += 1,
                Err(Errno::ELOOP) => {
                    return Err(io::Error::other(format!(
                        "{}: too many symbolic links, or a link to /proc/*/fd or /proc/*/root",
                        shown(path)
                    )))
                }
                r => return r.map_err(|e| named(e, path)),
            }
        }
    }

    /// The directory that holds `path`, and `path`'s last component.
    fn parent<'p>(&self, path: &'p Path) -> io::Result<(OwnedFd, &'p OsStr)> {
        let rel = relative(path);
        let name = match path.components().next_back() {
            Some(Component::Normal(name)) => name,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{}: does not name a file", shown(path)),
                ))
            }
        };
        let parent = rel
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let fd = self.resolve(parent, OFlag::O_PATH | OFlag::O_DIRECTORY, 0)?;
        Ok((fd, name))
    }

    /// Opens a file for reading, following symlinks inside the tree.
    pub fn open_file(&self, path: impl AsRef<Path>) -> io::Result<File> {
        let path = path.as_ref();
        let fd = self.resolve(path, OFlag::O_RDONLY | OFlag::O_NOCTTY | OFlag::O_NONBLOCK, 0)?;
        let file = File::from(fd);
        if file.metadata().map_err(|e| named(e, path))?.is_dir() {
            return Err(named(Errno::EISDIR, path));
        }
        Ok(file)
    }

    pub fn read(&self, path: impl AsRef<Path>) -> io::Result<Vec<u8>> {
        let path = path.as_ref();
        let mut out = Vec::new();
        self.open_file(path)?
            .read_to_end(&mut out)
            .map_err(|e| named(e, path))?;
        Ok(out)
    }

    pub fn read_to_string(&self, path: impl AsRef<Path>) -> io::Result<String> {
        let path = path.as_ref();
        String::from_utf8(self.read(path)?)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("{}: not UTF-8", shown(path))))
    }

    /// Metadata, following symlinks inside the tree.
    pub fn metadata(&self, path: impl AsRef<Path>) -> io::Result<std::fs::Metadata> {
        let path = path.as_ref();
        let fd = self.resolve(path, OFlag::O_PATH, 0)?;
        File::from(fd).metadata().map_err(|e| named(e, path))
    }

    /// Metadata of `path` itself, a symlink not followed.
    pub fn symlink_metadata(&self, path: impl AsRef<Path>) -> io::Result<std::fs::Metadata> {
        let path = path.as_ref();
        let fd = self.resolve(path, OFlag::O_PATH | OFlag::O_NOFOLLOW, 0)?;
        File::from(fd).metadata().map_err(|e| named(e, path))
    }

    /// Whether something is at `path` (a dangling symlink counts).
    pub fn exists(&self, path: impl AsRef<Path>) -> bool {
        self.symlink_metadata(path).is_ok()
    }

    pub fn is_file(&self, path: impl AsRef<Path>) -> bool {
        self.metadata(path).is_ok_and(|m| m.is_file())
    }

    pub fn is_dir(&self, path: impl AsRef<Path>) -> bool {
        self.metadata(path).is_ok_and(|m| m.is_dir())
    }

    /// The entries of a directory (symlinks to directories followed inside
    /// the tree), sorted by name, without `.` and `..`.
    pub fn read_dir(&self, path: impl AsRef<Path>) -> io::Result<Vec<Entry>> {
        let path = path.as_ref();
        let fd = self.resolve(path, OFlag::O_RDONLY | OFlag::O_DIRECTORY, 0)?;
        self.entries(fd, path)
    }

    fn entries(&self, fd: OwnedFd, path: &Path) -> io::Result<Vec<Entry>> {
        use nix::dir::{Dir, Type};
        let mut dir = Dir::from_fd(fd).map_err(|e| named(e, path))?;
        let mut out = Vec::new();
        for e in dir.iter() {
            let e = e.map_err(|e| named(e, path))?;
            let name = OsStr::from_bytes(e.file_name().to_bytes());
            if name == "." || name == ".." {
                continue;
            }
            let kind = match e.file_type() {
                Some(Type::File) => Kind::File,
                Some(Type::Directory) => Kind::Dir,
                Some(Type::Symlink) => Kind::Symlink,
                Some(_) => Kind::Other,
                None => {
                    let m = self.symlink_metadata(path.join(name))?;
                    let ft = m.file_type();
                    if ft.is_file() {
                        Kind::File
                    } else if ft.is_dir() {
                        Kind::Dir
                    } else if ft.is_symlink() {
                        Kind::Symlink
                    } else {
                        Kind::Other
                    }
                }
            };
            out.push(Entry {
                name: name.to_os_string(),
                kind,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The target of the symlink at `path`.
    pub fn read_link(&self, path: impl AsRef<Path>) -> io::Result<PathBuf> {
        let path = path.as_ref();
        let (dir, name) = self.parent(path)?;
        nix::fcntl::readlinkat(dir.as_fd(), name)
            .map(PathBuf::from)
            .map_err(|e| named(e, path))
    }

    /// Creates one directory (mode filtered by the umask).
    pub fn create_dir(&self, path: impl AsRef<Path>, mode: u32) -> io::Result<()> {
        let path = path.as_ref();
        let (dir, name) = self.parent(path)?;
        nix::sys::stat::mkdirat(dir.as_fd(), name, NixMode::from_bits_truncate(mode)).map_err(|e| named(e, path))
    }

    /// Creates a directory and its missing parents (0755, less the umask).
    /// A symlink on the way is followed inside the tree; one that leads
    /// nowhere is an error naming it.
    pub fn create_dir_all(&self, path: impl AsRef<Path>) -> io::Result<()> {
        let path = path.as_ref();
        let mut prefix = PathBuf::new();
        for c in relative(path).components() {
            prefix.push(c);
            if self.is_dir(&prefix) {
                continue;
            }
            match self.create_dir(&prefix, 0o755) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    if let Ok(target) = self.read_link(&prefix) {
                        return Err(io::Error::new(
                            io::ErrorKind::NotFound,
                            format!(
                                "{}: a symbolic link to {} that is not a directory in the tree",
                                shown(&prefix),
                                target.display()
                            ),
                        ));
                    }
                    if !self.is_dir(&prefix) {
                        return Err(named(Errno::ENOTDIR, &prefix));
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Creates the parent directories of `path`.
    pub fn create_parents(&self, path: impl AsRef<Path>) -> io::Result<()> {
        match relative(path.as_ref()).parent() {
            Some(p) if !p.as_os_str().is_empty() => self.create_dir_all(p),
            _ => Ok(()),
        }
    }

    /// Writes a new file at `path` (mode 0644, owned by root), replacing what
    /// is there unless it is a directory. See [`Tree::write_with`].
    pub fn write(&self, path: impl AsRef<Path>, content: impl AsRef<[u8]>) -> io::Result<()> {
        self.write_with(path, 0o644, None, |f| f.write_all(content.as_ref()))
    }

    /// Like [`Tree::write`], with the mode and owner of the file it replaces
    /// (following symlinks inside the tree), for edits of an existing file.
    pub fn rewrite(&self, path: impl AsRef<Path>, content: impl AsRef<[u8]>) -> io::Result<()> {
        let path = path.as_ref();
        let (mode, owner) = match self.metadata(path) {
            Ok(m) if m.is_file() => (m.mode() & 0o7777, Some((m.uid(), m.gid()))),
            _ => (0o644, None),
        };
        self.write_with(path, mode, owner, |f| f.write_all(content.as_ref()))
    }

    /// Writes a file at `path` atomically: `fill` writes a temporary file
    /// beside it, which then gets `mode` (exactly, no umask) and `owner` and is
    /// renamed over `path`. Whatever was at `path` (a file, a symlink, even a
    /// dangling one) is replaced, never written through; a directory there is
    /// an error. The parent directory must exist.
    pub fn write_with(
        &self,
        path: impl AsRef<Path>,
        mode: u32,
        owner: Option<(u32, u32)>,
        fill: impl FnOnce(&mut File) -> io::Result<()>,
    ) -> io::Result<()> {
        let path = path.as_ref();
        let (dir, name) = self.parent(path)?;
        if self.symlink_metadata(path).is_ok_and(|m| m.is_dir()) {
            return Err(named(Errno::EISDIR, path));
        }
        let mut tmp_name = OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".osbuild-{}", std::process::id()));
        let tmp = Path::new(&tmp_name);
        let _ = nix::unistd::unlinkat(dir.as_fd(), tmp, nix::unistd::UnlinkatFlags::NoRemoveDir);
        let fd = nix::fcntl::openat(
            dir.as_fd(),
            tmp,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            NixMode::from_bits_truncate(0o600),
        )
        .map_err(|e| named(e, path))?;
        let mut file = File::from(fd);
        let result = (|| {
            fill(&mut file)?;
            if let Some((uid, gid)) = owner {
                std::os::unix::fs::fchown(&file, Some(uid), Some(gid))?;
            }
            // After chown, which clears set-id bits.
            file.set_permissions(std::fs::Permissions::from_mode(mode))?;
            drop(file);
            nix::fcntl::renameat(dir.as_fd(), tmp, dir.as_fd(), name)?;
            Ok(())
        })();
        if result.is_err() {
            let _ = nix::unistd::unlinkat(dir.as_fd(), tmp, nix::unistd::UnlinkatFlags::NoRemoveDir);
        }
        result.map_err(|e: io::Error| named(e, path))
    }

    /// Copies a file from outside the tree (the build root, the cache) to `path`.
    pub fn copy_in(&self, from: &Path, path: impl AsRef<Path>, mode: u32) -> io::Result<u64> {
        let mut src = File::open(from).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", from.display())))?;
        let mut n = 0;
        self.write_with(path, mode, None, |f| {
            n = io::copy(&mut src, f)?;
            Ok(())
        })?;
        Ok(n)
    }

    /// Copies a file of the tree to `to`, with its permission bits; returns
    /// the bytes copied.
    pub fn copy(&self, from: impl AsRef<Path>, to: impl AsRef<Path>) -> io::Result<u64> {
        let mut src = self.open_file(from.as_ref())?;
        let mode = src.metadata()?.mode() & 0o7777;
        let mut n = 0;
        self.write_with(to, mode, None, |f| {
            n = io::copy(&mut src, f)?;
            Ok(())
        })?;
        Ok(n)
    }

    /// A symlink at `path` to `target` (taken literally).
    pub fn symlink(&self, target: impl AsRef<Path>, path: impl AsRef<Path>) -> io::Result<()> {
        let path = path.as_ref();
        let (dir, name) = self.parent(path)?;
        nix::unistd::symlinkat(target.as_ref(), dir.as_fd(), name).map_err(|e| named(e, path))
    }

    /// Removes a file or symlink (the link itself, not its target).
    pub fn remove_file(&self, path: impl AsRef<Path>) -> io::Result<()> {
        let path = path.as_ref();
        let (dir, name) = self.parent(path)?;
        nix::unistd::unlinkat(dir.as_fd(), name, nix::unistd::UnlinkatFlags::NoRemoveDir).map_err(|e| named(e, path))
    }

    /// Removes a directory and everything in it; a symlink at `path` is
    /// removed itself, its target kept. Absent is fine.
    pub fn remove_dir_all(&self, path: impl AsRef<Path>) -> io::Result<()> {
        let path = path.as_ref();
        match self.symlink_metadata(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
            Ok(m) if !m.is_dir() => return self.remove_file(path),
            Ok(_) => {}
        }
        let fd = self.resolve(path, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW, 0)?;
        for e in self.entries(fd, path)? {
            let child = path.join(&e.name);
            if e.kind == Kind::Dir {
                self.remove_dir_all(&child)?;
            } else {
                self.remove_file(&child)?;
            }
        }
        let (dir, name) = self.parent(path)?;
        nix::unistd::unlinkat(dir.as_fd(), name, nix::unistd::UnlinkatFlags::RemoveDir).map_err(|e| named(e, path))
    }

    /// Renames within the tree; the last components are not followed.
    pub fn rename(&self, from: impl AsRef<Path>, to: impl AsRef<Path>) -> io::Result<()> {
        let (from, to) = (from.as_ref(), to.as_ref());
        let (from_dir, from_name) = self.parent(from)?;
        let (to_dir, to_name) = self.parent(to)?;
        nix::fcntl::renameat(from_dir.as_fd(), from_name, to_dir.as_fd(), to_name).map_err(|e| named(e, to))
    }

    /// Sets the permission bits of a file or directory (following symlinks
    /// inside the tree).
    pub fn set_mode(&self, path: impl AsRef<Path>, mode: u32) -> io::Result<()> {
        let path = path.as_ref();
        let m = self.metadata(path)?;
        if !m.is_file() && !m.is_dir() {
            return Err(io::Error::other(format!("{}: not a file or directory", shown(path))));
        }
        // O_PATH descriptors cannot be chmod-ed without fchmodat2 (Linux 6.6),
        // so open it for reading: harmless for files and directories.
        let fd = self.resolve(path, OFlag::O_RDONLY | OFlag::O_NOCTTY | OFlag::O_NONBLOCK, 0)?;
        File::from(fd)
            .set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(|e| named(e, path))
    }

    /// Sets the owner of `path` itself (a symlink is not followed), as lchown.
    pub fn chown(&self, path: impl AsRef<Path>, uid: u32, gid: u32) -> io::Result<()> {
        let path = path.as_ref();
        let (dir, name) = self.parent(path)?;
        nix::unistd::fchownat(
            dir.as_fd(),
            name,
            Some(uid.into()),
            Some(gid.into()),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| named(e, path))
    }
}

impl std::fmt::Debug for Tree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tree({})", self.path.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempTree;

    fn planted(label: &str) -> (TempTree, Tree) {
        let t = TempTree::new(label);
        t.write("etc/passwd", "root:x:0:0::/root:/bin/sh\n");
        std::os::unix::fs::symlink("/etc/passwd", t.join("etc/hostname")).unwrap();
        std::os::unix::fs::symlink("/", t.join("rootlink")).unwrap();
        std::os::unix::fs::symlink("../../../..", t.join("etc/up")).unwrap();
        std::os::unix::fs::symlink("/nowhere/at/all", t.join("dangling")).unwrap();
        let tree = Tree::open(&t.path).unwrap();
        (t, tree)
    }

    #[test]
    fn writes_replace_a_planted_absolute_symlink() {
        let (t, tree) = planted("tree-abs");
        // Reads resolve the link inside the tree, as the image would.
        assert_eq!(
            tree.read_to_string("/etc/hostname").unwrap(),
            "root:x:0:0::/root:/bin/sh\n"
        );
        tree.write("/etc/hostname", "web\n").unwrap();
        assert_eq!(t.read("etc/hostname"), "web\n");
        assert!(std::fs::symlink_metadata(t.join("etc/hostname")).unwrap().is_file());
        assert_eq!(t.read("etc/passwd"), "root:x:0:0::/root:/bin/sh\n");
        assert_eq!(t.stat("etc/hostname").0, 0o644);
    }

    #[test]
    fn symlink_to_the_top_stays_in_the_tree() {
        let (t, tree) = planted("tree-rootlink");
        tree.create_dir_all("rootlink/srv/data").unwrap();
        tree.write("rootlink/srv/data/x", "x").unwrap();
        assert_eq!(t.read("srv/data/x"), "x");
        assert!(tree.is_dir("/rootlink/rootlink/etc"));
        assert_eq!(
            tree.read_to_string("rootlink/etc/passwd").unwrap(),
            t.read("etc/passwd")
        );
        tree.set_mode("rootlink/srv", 0o700).unwrap();
        assert_eq!(t.stat("srv").0, 0o700);
        // The link itself is replaced, not written through, when it is the file written.
        tree.write("rootlink", "now a file").unwrap();
        assert_eq!(t.read("rootlink"), "now a file");
    }

    #[test]
    fn dot_dot_stops_at_the_top() {
        let (t, tree) = planted("tree-dotdot");
        tree.create_dir_all("../../escape").unwrap();
        tree.write("../../escape/f", "in").unwrap();
        assert_eq!(t.read("escape/f"), "in");
        tree.write("etc/up/etc/f", "up").unwrap();
        assert_eq!(t.read("etc/f"), "up");
        assert!(tree.write("etc/..", "x").is_err());
        assert!(tree.write("/", "x").is_err());
    }

    #[test]
    fn dangling_symlinks_are_errors_naming_them_or_replaced() {
        let (t, tree) = planted("tree-dangling");
        let e = tree.create_dir_all("dangling/sub").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("/dangling: a symbolic link to /nowhere/at/all"),
            "{e}"
        );
        let e = tree.write("dangling/sub/f", "x").unwrap_err();
        assert!(e.to_string().starts_with("/dangling/sub: "), "{e}");
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        let e = tree.read("dangling").unwrap_err();
        assert!(e.to_string().starts_with("/dangling: "), "{e}");
        assert!(tree.exists("dangling") && !tree.is_file("dangling"));
        // Written as a file, the dangling link is replaced.
        tree.write("dangling", "x").unwrap();
        assert_eq!(t.read("dangling"), "x");
        assert!(!Path::new("/nowhere").exists());
    }

    #[test]
    fn proc_links_resolve_in_the_tree() {
        let t = TempTree::new("tree-magic");
        std::os::unix::fs::symlink("/proc/self/root/etc", t.join("magic")).unwrap();
        std::fs::create_dir_all(t.join("proc")).unwrap();
        let tree = Tree::open(&t.path).unwrap();
        // Inside the tree, /proc is the tree's own (empty) directory: the link leads nowhere.
        assert!(tree.read("magic/passwd").is_err());
        assert!(tree.write("magic/x", "x").is_err());
    }

    #[test]
    fn file_operations() {
        let (t, tree) = planted("tree-ops");
        tree.create_dir("/home", 0o755).unwrap();
        tree.write_with("home/f", 0o4750, Some((12, 34)), |f| f.write_all(b"abc"))
            .unwrap();
        assert_eq!(t.stat("home/f"), (0o4750, 12, 34));
        tree.chown("rootlink", 5, 6).unwrap();
        assert_eq!(t.stat("rootlink").1, 5);
        assert_eq!(t.stat("etc").1, 0, "chown does not follow the link");
        tree.rewrite("home/f", "new").unwrap();
        assert_eq!((t.read("home/f"), t.stat("home/f")), ("new".into(), (0o4750, 12, 34)));
        tree.symlink("/etc/passwd", "home/link").unwrap();
        assert_eq!(tree.read_link("home/link").unwrap(), PathBuf::from("/etc/passwd"));
        tree.rename("home/link", "home/moved").unwrap();
        let names: Vec<_> = tree
            .read_dir("rootlink/home")
            .unwrap()
            .into_iter()
            .map(|e| (e.name, e.kind))
            .collect();
        assert_eq!(names, vec![("f".into(), Kind::File), ("moved".into(), Kind::Symlink)]);
        tree.remove_file("home/moved").unwrap();
        assert!(t.exists("etc/passwd"));
        tree.remove_dir_all("rootlink").unwrap();
        assert!(
            !t.exists("rootlink") && t.exists("etc/passwd"),
            "removes the link, not the tree"
        );
        tree.remove_dir_all("home").unwrap();
        assert!(!t.exists("home"));
        tree.remove_dir_all("home").unwrap();
        let e = tree.write("etc", "x").unwrap_err();
        assert!(e.to_string().starts_with("/etc: "), "{e}");
    }
}
