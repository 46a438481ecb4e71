//! A store layer as an OCI layer tar, and back.
//!
//! A layer is an overlayfs upper directory: a deleted file is a whiteout (a
//! character device 0/0) and a directory that hides everything below it is
//! opaque (`trusted.overlay.opaque=y`). In the tar they become OCI
//! whiteouts, `.wh.NAME` and `DIR/.wh..wh..opq`, so any OCI tool reads them.
//!
//! The tar is deterministic (entries in the order the content hash walks
//! them, fixed header fields, no user or group names) and holds everything
//! that hash covers: modes, owners, whole-second mtimes, extended attributes
//! (as PAX `SCHILY.xattr.*` records), hard links, devices and symlinks. So a
//! layer unpacked from it hashes like the one packed, which is how a pulled
//! layer is checked (see `oci::cache`).
//!
//! Unpacking trusts nothing in the tar: every name is a relative path of
//! plain components whose parent is a directory made by an earlier entry
//! (never a symlink), and no entry may replace another, so nothing is
//! written outside the target directory.

use std::collections::HashMap;
use std::ffi::{CString, OsStr};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::sys::stat::{mknod, utimensat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use tar::{EntryType, Header};

use crate::store::{is_opaque_mark, is_whiteout, xattrs, OPAQUE_XATTRS};

const WHITEOUT: &[u8] = b".wh.";
const OPAQUE: &[u8] = b".wh..wh..opq";
const PAX_XATTR: &str = "SCHILY.xattr.";

/// Which of overlayfs' own xattrs go into the tar besides the opaque mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverlayXattrs {
    /// Every one (redirects, say): the store's cache must give back the
    /// layer exactly.
    Keep,
    /// None: they mean nothing to another OCI tool (`osbuild export`).
    Drop,
}

/// Writes the layer `dir` as a tar to `out`.
pub fn write_layer<W: Write>(dir: &Path, out: W, overlay: OverlayXattrs) -> io::Result<W> {
    let mut tar = tar::Builder::new(out);
    let mut walk = Packer {
        tar: &mut tar,
        links: HashMap::new(),
        overlay,
    };
    walk.entry(dir, b"")?;
    tar.into_inner()
}

struct Packer<'a, W: Write> {
    tar: &'a mut tar::Builder<W>,
    /// The first tar name of each multiply-linked inode seen so far.
    links: HashMap<(u64, u64), Vec<u8>>,
    overlay: OverlayXattrs,
}

impl<W: Write> Packer<'_, W> {
    /// Packs `path`, whose name in the layer is `rel` (empty for the root).
    fn entry(&mut self, path: &Path, rel: &[u8]) -> io::Result<()> {
        let meta = fs::symlink_metadata(path).map_err(|e| context(e, path))?;
        let kind = meta.file_type();
        let mut header = Header::new_gnu();
        header.set_mode(meta.mode() & 0o7777);
        header.set_uid(meta.uid() as u64);
        header.set_gid(meta.gid() as u64);
        header.set_mtime(meta.mtime().max(0) as u64);
        header.set_size(0);
        let name = if rel.is_empty() { b"./".to_vec() } else { rel.to_vec() };

        if is_whiteout(&meta) {
            // A whiteout: `.wh.NAME` beside where NAME was.
            let (parent, base) = split(rel);
            let mut wh = parent.to_vec();
            wh.extend_from_slice(WHITEOUT);
            wh.extend_from_slice(base);
            header.set_entry_type(EntryType::Regular);
            return self.tar.append_data(&mut header, os(&wh), io::empty());
        }

        let all = xattrs(path)?;
        let opaque = kind.is_dir() && all.iter().any(|(n, v)| is_opaque_mark(n, v));
        let kept: Vec<_> = all
            .iter()
            .filter(|(n, _)| !OPAQUE_XATTRS.contains(&n.as_slice()))
            .filter(|(n, _)| self.overlay == OverlayXattrs::Keep || !is_overlay_xattr(n))
            .collect();
        if !kept.is_empty() {
            self.pax(&kept)?;
        }

        if !kind.is_dir() && meta.nlink() > 1 {
            let first = self
                .links
                .entry((meta.dev(), meta.ino()))
                .or_insert_with(|| name.clone());
            if *first != name {
                let first = first.clone();
                header.set_entry_type(EntryType::Link);
                return self.tar.append_link(&mut header, os(&name), os(&first));
            }
        }

        if kind.is_dir() {
            header.set_entry_type(EntryType::Directory);
            self.tar.append_data(&mut header, os(&name), io::empty())?;
            if opaque {
                let mut marker = if rel.is_empty() {
                    Vec::new()
                } else {
                    [rel, b"/"].concat()
                };
                marker.extend_from_slice(OPAQUE);
                let mut h = Header::new_gnu();
                h.set_entry_type(EntryType::Regular);
                h.set_mode(0);
                h.set_uid(0);
                h.set_gid(0);
                h.set_size(0);
                h.set_mtime(meta.mtime().max(0) as u64);
                self.tar.append_data(&mut h, os(&marker), io::empty())?;
            }
            let mut names: Vec<_> = fs::read_dir(path)
                .map_err(|e| context(e, path))?
                .map(|e| e.map(|e| e.file_name()))
                .collect::<Result<_, _>>()?;
            names.sort();
            for child in names {
                let child_rel = if rel.is_empty() {
                    child.as_bytes().to_vec()
                } else {
                    [rel, b"/", child.as_bytes()].concat()
                };
                self.entry(&path.join(&child), &child_rel)?;
            }
            Ok(())
        } else if kind.is_file() {
            header.set_entry_type(EntryType::Regular);
            header.set_size(meta.len());
            let file = File::open(path).map_err(|e| context(e, path))?;
            self.tar.append_data(&mut header, os(&name), file)
        } else if kind.is_symlink() {
            let target = fs::read_link(path).map_err(|e| context(e, path))?;
            header.set_entry_type(EntryType::Symlink);
            self.tar.append_link(&mut header, os(&name), &target)
        } else if kind.is_char_device() || kind.is_block_device() {
            header.set_entry_type(if kind.is_char_device() {
                EntryType::Char
            } else {
                EntryType::Block
            });
            header.set_device_major(libc::major(meta.rdev()))?;
            header.set_device_minor(libc::minor(meta.rdev()))?;
            self.tar.append_data(&mut header, os(&name), io::empty())
        } else if kind.is_fifo() {
            header.set_entry_type(EntryType::Fifo);
            header.set_device_major(0)?;
            header.set_device_minor(0)?;
            self.tar.append_data(&mut header, os(&name), io::empty())
        } else {
            Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: a socket cannot go into a layer tar", path.display()),
            ))
        }
    }

    /// A PAX extended header with the next entry's xattrs.
    fn pax(&mut self, xattrs: &[&(Vec<u8>, Vec<u8>)]) -> io::Result<()> {
        let mut data = Vec::new();
        for (name, value) in xattrs {
            let key = [PAX_XATTR.as_bytes(), name].concat();
            // "LEN KEY=VALUE\n", where LEN counts itself.
            let rest = key.len() + value.len() + 3;
            let mut len = rest + 1;
            while (rest + len.to_string().len()) != len {
                len = rest + len.to_string().len();
            }
            data.extend_from_slice(len.to_string().as_bytes());
            data.push(b' ');
            data.extend_from_slice(&key);
            data.push(b'=');
            data.extend_from_slice(value);
            data.push(b'\n');
        }
        let mut header = Header::new_ustar();
        header.set_entry_type(EntryType::XHeader);
        header.set_mode(0o644);
        header.set_size(data.len() as u64);
        header.set_path("././@PaxHeader")?;
        header.set_cksum();
        self.tar.append(&header, data.as_slice())
    }
}

fn is_overlay_xattr(name: &[u8]) -> bool {
    name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.")
}

/// A name's directory part (with its trailing slash) and its last component.
fn split(rel: &[u8]) -> (&[u8], &[u8]) {
    match rel.iter().rposition(|b| *b == b'/') {
        Some(i) => (&rel[..=i], &rel[i + 1..]),
        None => (b"", rel),
    }
}

fn os(bytes: &[u8]) -> &Path {
    Path::new(OsStr::from_bytes(bytes))
}

/// Unpacks a layer tar (as [`write_layer`] makes it, or any OCI layer) into
/// the existing, empty directory `dir`, whiteouts as overlayfs' own.
pub fn unpack_layer<R: Read>(input: R, dir: &Path) -> io::Result<()> {
    let mut archive = tar::Archive::new(input);
    // Directories get their metadata last, deepest first: making their
    // entries changes their mtimes.
    let mut dirs: Vec<(PathBuf, Attrs)> = Vec::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let raw = entry.path_bytes().into_owned();
        let rel = relative(&raw)?;
        let header = entry.header();
        let attrs = Attrs {
            mode: header.mode()? & 0o7777,
            uid: header.uid()? as u32,
            gid: header.gid()? as u32,
            mtime: header.mtime()? as i64,
            xattrs: match entry.pax_extensions()? {
                Some(pax) => pax
                    .filter_map(Result::ok)
                    .filter_map(|ext| {
                        let key = ext.key_bytes().strip_prefix(PAX_XATTR.as_bytes())?;
                        Some((key.to_vec(), ext.value_bytes().to_vec()))
                    })
                    .collect(),
                None => Vec::new(),
            },
        };
        let kind = entry.header().entry_type();
        if rel.is_empty() {
            if !kind.is_dir() {
                return Err(bad(&raw, "the layer's root is not a directory"));
            }
            dirs.push((dir.to_path_buf(), attrs));
            continue;
        }
        let (parent, base) = split(&rel);
        let parent_path = dir.join(os(parent.strip_suffix(b"/").unwrap_or(parent)));
        if !fs::symlink_metadata(&parent_path).is_ok_and(|m| m.is_dir()) {
            return Err(bad(&raw, "its directory is not a directory an earlier entry made"));
        }
        if base == OPAQUE {
            set_xattr(&parent_path, OPAQUE_XATTRS[0], b"y")?;
            continue;
        }
        let (path, whiteout) = match base.strip_prefix(WHITEOUT) {
            Some(hidden) if !hidden.is_empty() => (parent_path.join(os(hidden)), true),
            _ => (dir.join(os(&rel)), false),
        };
        if fs::symlink_metadata(&path).is_ok() {
            return Err(bad(&raw, "it is in the tar twice"));
        }
        if whiteout {
            mknod(&path, SFlag::S_IFCHR, Mode::empty(), 0).map_err(|e| context(e.into(), &path))?;
            attrs.apply(&path, false)?;
            continue;
        }
        match kind {
            EntryType::Directory => {
                fs::create_dir(&path).map_err(|e| context(e, &path))?;
                dirs.push((path, attrs));
                continue;
            }
            EntryType::Regular | EntryType::Continuous => {
                let file = File::options()
                    .write(true)
                    .create_new(true)
                    .open(&path)
                    .map_err(|e| context(e, &path))?;
                write_sparse(&mut entry, &file).map_err(|e| context(e, &path))?;
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| bad(&raw, "a symlink without a target"))?;
                std::os::unix::fs::symlink(os(&target), &path).map_err(|e| context(e, &path))?;
                attrs.apply(&path, true)?;
                continue;
            }
            EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| bad(&raw, "a hard link without a target"))?;
                let target = dir.join(os(&relative(&target)?));
                // Its own metadata is its first name's.
                if !fs::symlink_metadata(&target).is_ok_and(|m| !m.is_dir()) {
                    return Err(bad(&raw, "a hard link to something an earlier entry did not make"));
                }
                fs::hard_link(&target, &path).map_err(|e| context(e, &path))?;
                continue;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let flag = match kind {
                    EntryType::Char => SFlag::S_IFCHR,
                    EntryType::Block => SFlag::S_IFBLK,
                    _ => SFlag::S_IFIFO,
                };
                let header = entry.header();
                let dev = match kind {
                    EntryType::Fifo => 0,
                    _ => libc::makedev(header.device_major()?.unwrap_or(0), header.device_minor()?.unwrap_or(0)),
                };
                mknod(&path, flag, Mode::empty(), dev).map_err(|e| context(e.into(), &path))?;
            }
            other => return Err(bad(&raw, &format!("entries of type {other:?} are not taken"))),
        }
        attrs.apply(&path, false)?;
    }
    for (path, attrs) in dirs.iter().rev() {
        attrs.apply(path, false)?;
    }
    Ok(())
}

/// A tar name as plain components, `./` and a trailing `/` dropped; the
/// root is empty.
fn relative(raw: &[u8]) -> io::Result<Vec<u8>> {
    let mut parts = Vec::new();
    for part in raw.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err(bad(raw, "its name leaves the layer")),
            _ => parts.push(part),
        }
    }
    if raw.first() == Some(&b'/') {
        return Err(bad(raw, "its name is absolute"));
    }
    Ok(parts.join(&b'/'))
}

/// Copies a file's data, leaving whole 4 KiB blocks of zeros as holes.
fn write_sparse(input: &mut impl Read, file: &File) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    const BLOCK: usize = 4096;
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0u64;
    loop {
        let mut filled = 0;
        while filled < buf.len() {
            match input.read(&mut buf[filled..])? {
                0 => break,
                n => filled += n,
            }
        }
        if filled == 0 {
            break;
        }
        for (i, block) in buf[..filled].chunks(BLOCK).enumerate() {
            if block.iter().any(|b| *b != 0) {
                file.write_all_at(block, at + (i * BLOCK) as u64)?;
            }
        }
        at += filled as u64;
        if filled < buf.len() {
            break;
        }
    }
    file.set_len(at)
}

/// What a tar header says about an entry, applied once it exists.
struct Attrs {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Attrs {
    /// Owner first (chown clears setuid bits and file capabilities), then
    /// mode, xattrs and time.
    fn apply(&self, path: &Path, symlink: bool) -> io::Result<()> {
        std::os::unix::fs::lchown(path, Some(self.uid), Some(self.gid)).map_err(|e| context(e, path))?;
        if !symlink {
            fs::set_permissions(path, fs::Permissions::from_mode(self.mode)).map_err(|e| context(e, path))?;
        }
        for (name, value) in &self.xattrs {
            set_xattr(path, name, value)?;
        }
        let mtime = TimeSpec::new(self.mtime, 0);
        utimensat(
            nix::fcntl::AT_FDCWD,
            path,
            &mtime,
            &mtime,
            UtimensatFlags::NoFollowSymlink,
        )
        .map_err(|e| context(e.into(), path))
    }
}

fn set_xattr(path: &Path, name: &[u8], value: &[u8]) -> io::Result<()> {
    let c_path = CString::new(path.as_os_str().as_bytes())?;
    let c_name = CString::new(name)?;
    // SAFETY: NUL-terminated strings and a buffer of the given length, all
    // alive for the call.
    let rc = unsafe { libc::lsetxattr(c_path.as_ptr(), c_name.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    if rc != 0 {
        let name = String::from_utf8_lossy(name);
        return Err(context(
            io::Error::last_os_error(),
            &path.join(format!("[xattr {name}]")),
        ));
    }
    Ok(())
}

fn bad(name: &[u8], why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("tar entry {:?}: {why}", String::from_utf8_lossy(name)),
    )
}

fn context(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::hash_dir;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("osbuild-oci-layer-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    /// A layer with every kind of entry an overlayfs upper directory holds.
    fn layer(dir: &Path) {
        fs::create_dir_all(dir.join("etc/ssh")).unwrap();
        fs::write(dir.join("etc/hostname"), "box\n").unwrap();
        fs::hard_link(dir.join("etc/hostname"), dir.join("etc/hostname.again")).unwrap();
        std::os::unix::fs::symlink("hostname", dir.join("etc/name")).unwrap();
        fs::write(dir.join("sudo"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(dir.join("sudo"), fs::Permissions::from_mode(0o4755)).unwrap();
        std::os::unix::fs::lchown(dir.join("etc/name"), Some(7), Some(8)).unwrap();
        set_xattr(
            &dir.join("sudo"),
            b"security.capability",
            &[1, 0, 0, 2, 32, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        )
        .unwrap();
        set_xattr(&dir.join("etc/ssh"), b"trusted.overlay.opaque", b"y").unwrap();
        set_xattr(&dir.join("etc"), b"trusted.overlay.redirect", b"/old").unwrap();
        mknod(&dir.join("etc/deleted"), SFlag::S_IFCHR, Mode::empty(), 0).unwrap();
        mknod(
            &dir.join("null"),
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            libc::makedev(1, 3),
        )
        .unwrap();
        nix::unistd::mkfifo(&dir.join("fifo"), Mode::from_bits_truncate(0o600)).unwrap();
        // Sparse: a hole, a block of data, and a hole to the end.
        let f = File::create(dir.join("disk")).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&f, b"data", 1 << 20).unwrap();
        f.set_len(16 << 20).unwrap();
        let long = "x".repeat(150);
        fs::create_dir_all(dir.join(&long)).unwrap();
        fs::write(dir.join(&long).join(&long), "long").unwrap();
    }

    fn names(tar: &[u8]) -> Vec<String> {
        tar::Archive::new(tar)
            .entries()
            .unwrap()
            .map(|e| String::from_utf8_lossy(&e.unwrap().path_bytes()).into_owned())
            .collect()
    }

    #[test]
    fn a_layer_round_trips_with_its_content_hash() {
        assert!(root(), "this test makes devices and trusted xattrs: run it as root");
        let src = temp("src");
        layer(&src);
        let tar = write_layer(&src, Vec::new(), OverlayXattrs::Keep).unwrap();
        assert_eq!(
            tar,
            write_layer(&src, Vec::new(), OverlayXattrs::Keep).unwrap(),
            "deterministic"
        );
        let shown = names(&tar);
        assert!(shown.contains(&"etc/.wh.deleted".to_string()), "{shown:?}");
        assert!(shown.contains(&"etc/ssh/.wh..wh..opq".to_string()), "{shown:?}");
        let dst = temp("dst");
        unpack_layer(tar.as_slice(), &dst).unwrap();
        assert_eq!(hash_dir(&dst).unwrap(), hash_dir(&src).unwrap());
        let disk = fs::metadata(dst.join("disk")).unwrap();
        assert!(
            disk.blocks() * 512 < 1 << 20,
            "holes stay holes: {} blocks",
            disk.blocks()
        );
        for dir in [src, dst] {
            fs::remove_dir_all(dir).unwrap();
        }
    }

    #[test]
    fn an_export_drops_overlay_bookkeeping_but_keeps_whiteouts() {
        assert!(root(), "this test makes devices and trusted xattrs: run it as root");
        let src = temp("export");
        layer(&src);
        let tar = write_layer(&src, Vec::new(), OverlayXattrs::Drop).unwrap();
        let text = String::from_utf8_lossy(&tar);
        assert!(!text.contains("trusted.overlay"), "overlay xattrs left in the tar");
        assert!(text.contains("SCHILY.xattr.security.capability"));
        assert!(names(&tar).contains(&"etc/ssh/.wh..wh..opq".to_string()));
        fs::remove_dir_all(src).unwrap();
    }

    /// Tar entries: name, type, link target.
    type Entries<'a> = &'a [(&'a str, EntryType, &'a str)];

    /// A tar from anywhere, with one hostile entry after a harmless one.
    fn hostile(entries: Entries) -> Vec<u8> {
        let mut tar = tar::Builder::new(Vec::new());
        for (name, kind, link) in entries {
            let mut h = Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(0o755);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            h.set_size(0);
            // Written raw: the builder itself refuses some of these names.
            h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
            if !link.is_empty() {
                h.set_link_name(link).unwrap();
            }
            h.set_cksum();
            tar.append(&h, io::empty()).unwrap();
        }
        tar.into_inner().unwrap()
    }

    #[test]
    fn nothing_is_written_outside_the_layer() {
        let outside = temp("outside");
        let cases: &[(Entries, &str)] = &[
            (&[("../escape", EntryType::Regular, "")], "leaves the layer"),
            (&[("/etc/escape", EntryType::Regular, "")], "absolute"),
            (
                &[
                    ("link", EntryType::Symlink, outside.to_str().unwrap()),
                    ("link/escape", EntryType::Regular, ""),
                ],
                "not a directory an earlier entry made",
            ),
            (
                &[("a", EntryType::Directory, ""), ("a", EntryType::Symlink, "/")],
                "twice",
            ),
            (&[("hard", EntryType::Link, "/etc/shadow")], "absolute"),
        ];
        for (entries, why) in cases {
            let dst = temp("hostile");
            let err = unpack_layer(hostile(entries).as_slice(), &dst).unwrap_err();
            assert!(err.to_string().contains(why), "{entries:?}: {err}");
            fs::remove_dir_all(dst).unwrap();
        }
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 0, "written outside");
        fs::remove_dir_all(outside).unwrap();
    }
}
