//! What differs between two trees, entry by entry, in the terms the content
//! hash (`content.rs`) uses: kind, mode, owner, modification time, extended
//! attributes and content. `osbuild verify` shows it for the first layer two
//! builds made differently.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::content::xattrs;

/// One entry that is not the same in both trees.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Difference {
    /// The path inside the tree, `/`-rooted.
    pub path: String,
    /// What differs, as "first → second" where there are two values.
    pub what: String,
    /// Both are regular files whose bytes differ: a content diff can say more.
    #[serde(skip)]
    pub contents: Option<(PathBuf, PathBuf)>,
}

#[derive(Debug, PartialEq)]
struct Entry {
    kind: &'static str,
    mode: u32,
    owner: (u32, u32),
    mtime: i64,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// A file's size and sha256, a link's target, a device's number.
    content: Content,
}

#[derive(Debug, PartialEq)]
enum Content {
    None,
    File { size: u64, sha256: String },
    Link(PathBuf),
    Device(u64),
}

/// Every difference between the trees `a` and `b`, in path order.
pub fn diff_trees(a: &Path, b: &Path) -> io::Result<Vec<Difference>> {
    let (left, right) = (listing(a)?, listing(b)?);
    let mut out = Vec::new();
    let paths: std::collections::BTreeSet<&PathBuf> = left.keys().chain(right.keys()).collect();
    for path in paths {
        let shown = format!("/{}", path.display()).replace("//", "/");
        let (x, y) = match (left.get(path), right.get(path)) {
            (Some(x), Some(y)) => (x, y),
            (Some(x), None) => {
                out.push(only(shown, x.kind, "first"));
                continue;
            }
            (None, Some(y)) => {
                out.push(only(shown, y.kind, "second"));
                continue;
            }
            (None, None) => unreachable!("every path is in one of the listings"),
        };
        let mut what = Vec::new();
        if x.kind != y.kind {
            what.push(format!("kind: {} → {}", x.kind, y.kind));
        }
        if x.mode != y.mode {
            what.push(format!("mode: {:04o} → {:04o}", x.mode, y.mode));
        }
        if x.owner != y.owner {
            what.push(format!(
                "owner: {}:{} → {}:{}",
                x.owner.0, x.owner.1, y.owner.0, y.owner.1
            ));
        }
        if x.mtime != y.mtime {
            what.push(format!("mtime: {} → {}", x.mtime, y.mtime));
        }
        if x.xattrs != y.xattrs {
            let names = |e: &Entry| -> Vec<String> {
                e.xattrs
                    .iter()
                    .map(|(n, _)| String::from_utf8_lossy(n).into_owned())
                    .collect()
            };
            let changed: Vec<String> = names(x)
                .into_iter()
                .chain(names(y))
                .filter(|n| {
                    let value = |e: &Entry| e.xattrs.iter().find(|(k, _)| k == n.as_bytes()).map(|(_, v)| v.clone());
                    value(x) != value(y)
                })
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            what.push(format!("xattrs: {}", changed.join(", ")));
        }
        let mut contents = None;
        if x.content != y.content {
            what.push(match (&x.content, &y.content) {
                (Content::File { size: s, .. }, Content::File { size: t, .. }) => {
                    contents = Some((a.join(path), b.join(path)));
                    if s == t {
                        format!("content ({s} bytes each)")
                    } else {
                        format!("content: {s} → {t} bytes")
                    }
                }
                (Content::Link(s), Content::Link(t)) => format!("target: {} → {}", s.display(), t.display()),
                (Content::Device(s), Content::Device(t)) => format!("device: {s} → {t}"),
                _ => "content".to_string(),
            });
        }
        if !what.is_empty() {
            out.push(Difference {
                path: shown,
                what: what.join("; "),
                contents,
            });
        }
    }
    Ok(out)
}

fn only(path: String, kind: &str, which: &str) -> Difference {
    Difference {
        path,
        what: format!("only in the {which} ({kind})"),
        contents: None,
    }
}

/// Every entry below `root` (and `root` itself, as ``), by relative path.
fn listing(root: &Path) -> io::Result<BTreeMap<PathBuf, Entry>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![PathBuf::new()];
    while let Some(rel) = todo.pop() {
        let path = root.join(&rel);
        let meta = fs::symlink_metadata(&path).map_err(|e| context(e, &path))?;
        let kind = meta.file_type();
        let content = if kind.is_file() {
            Content::File {
                size: meta.len(),
                sha256: osbuild_stages::lock::sha256_file(&path).map_err(|e| context(e, &path))?,
            }
        } else if kind.is_symlink() {
            Content::Link(fs::read_link(&path).map_err(|e| context(e, &path))?)
        } else if kind.is_char_device() || kind.is_block_device() {
            Content::Device(meta.rdev())
        } else {
            Content::None
        };
        if kind.is_dir() {
            for e in fs::read_dir(&path).map_err(|e| context(e, &path))? {
                todo.push(rel.join(e?.file_name()));
            }
        }
        let entry = Entry {
            kind: kind_name(&kind),
            mode: meta.mode() & 0o7777,
            owner: (meta.uid(), meta.gid()),
            mtime: meta.mtime(),
            xattrs: xattrs(&path)?,
            content,
        };
        out.insert(rel, entry);
    }
    Ok(out)
}

fn kind_name(kind: &fs::FileType) -> &'static str {
    if kind.is_dir() {
        "directory"
    } else if kind.is_file() {
        "file"
    } else if kind.is_symlink() {
        "symlink"
    } else if kind.is_char_device() {
        "character device"
    } else if kind.is_block_device() {
        "block device"
    } else if kind.is_fifo() {
        "fifo"
    } else {
        "socket"
    }
}

/// The offset of the first byte at which two files differ, if they do.
pub fn first_difference(a: &Path, b: &Path) -> io::Result<Option<u64>> {
    let (mut x, mut y) = (File::open(a)?, File::open(b)?);
    let (mut bx, mut by) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    let mut at = 0u64;
    loop {
        let n = read_full(&mut x, &mut bx)?;
        let m = read_full(&mut y, &mut by)?;
        if let Some(i) = bx[..n.min(m)].iter().zip(&by[..n.min(m)]).position(|(p, q)| p != q) {
            return Ok(Some(at + i as u64));
        }
        if n != m {
            return Ok(Some(at + n.min(m) as u64));
        }
        if n == 0 {
            return Ok(None);
        }
        at += n as u64;
    }
}

fn read_full(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read(&mut buf[got..])? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got)
}

fn context(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("osbuild-diff-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn tree(name: &str) -> PathBuf {
        let dir = temp(name);
        fs::create_dir(dir.join("etc")).unwrap();
        fs::write(dir.join("etc/same"), "same").unwrap();
        fs::write(dir.join("etc/log"), "12:00").unwrap();
        symlink("usr/bin", dir.join("bin")).unwrap();
        for p in ["", "etc", "etc/same", "etc/log"] {
            let t = nix::sys::time::TimeSpec::new(1_000, 0);
            nix::sys::stat::utimensat(
                nix::fcntl::AT_FDCWD,
                &dir.join(p),
                &t,
                &t,
                nix::sys::stat::UtimensatFlags::NoFollowSymlink,
            )
            .unwrap();
        }
        dir
    }

    #[test]
    fn identical_trees_have_no_differences_and_each_kind_of_change_is_named() {
        let (a, b) = (tree("a"), tree("b"));
        // Symlink times differ (made now): set both alike.
        for d in [&a, &b] {
            let t = nix::sys::time::TimeSpec::new(1_000, 0);
            nix::sys::stat::utimensat(
                nix::fcntl::AT_FDCWD,
                &d.join("bin"),
                &t,
                &t,
                nix::sys::stat::UtimensatFlags::NoFollowSymlink,
            )
            .unwrap();
        }
        assert_eq!(diff_trees(&a, &b).unwrap(), vec![]);
        fs::write(b.join("etc/log"), "12:01:30").unwrap();
        fs::set_permissions(b.join("etc/same"), fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(b.join("etc/new"), "").unwrap();
        fs::remove_file(a.join("bin")).unwrap();
        symlink("usr/sbin", a.join("bin")).unwrap();
        let found: Vec<(String, String)> = diff_trees(&a, &b)
            .unwrap()
            .into_iter()
            .map(|d| (d.path, d.what))
            .collect();
        let paths: Vec<&str> = found.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, ["/", "/bin", "/etc", "/etc/log", "/etc/new", "/etc/same"]);
        let what = |p: &str| found.iter().find(|(q, _)| q == p).unwrap().1.clone();
        assert!(what("/bin").contains("target: usr/sbin → usr/bin"), "{}", what("/bin"));
        assert!(
            what("/etc/log").contains("content: 5 → 8 bytes"),
            "{}",
            what("/etc/log")
        );
        assert_eq!(what("/etc/new"), "only in the second (file)");
        assert_eq!(what("/etc/same"), "mode: 0644 → 0600");
        assert!(what("/etc").starts_with("mtime: 1000 → "), "{}", what("/etc"));
        for d in [a, b] {
            fs::remove_dir_all(d).unwrap();
        }
    }

    #[test]
    fn the_first_differing_byte_is_found() {
        let dir = temp("bytes");
        let (a, b, c) = (dir.join("a"), dir.join("b"), dir.join("c"));
        let mut data = vec![7u8; 200_000];
        fs::write(&a, &data).unwrap();
        fs::write(&c, &data[..150_000]).unwrap();
        data[123_456] = 8;
        fs::write(&b, &data).unwrap();
        assert_eq!(first_difference(&a, &a).unwrap(), None);
        assert_eq!(first_difference(&a, &b).unwrap(), Some(123_456));
        assert_eq!(first_difference(&a, &c).unwrap(), Some(150_000));
        fs::remove_dir_all(dir).unwrap();
    }
}
