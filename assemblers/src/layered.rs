//! An ext4 file system built on the one made for a prefix of the pipeline:
//! a copy of the prefix's file system, plus what the image's own stages
//! changed, written offline with `debugfs` (which can remove, write, link and
//! set inodes without mounting).
//!
//! The prefix output lists what its file system holds ([`Listing`]); the
//! engine lists the paths the later layers hold ([`Change`]s, here
//! relative to the file system's mount point). Every entry
//! the prefix has that a later layer replaced or removed is deleted (its data
//! blocks zeroed, as `Ext4::remove_excluded` does, so no stale copy of, say,
//! a removed key stays in the image); every path a later layer holds is then
//! written from the final tree, parents first. What debugfs cannot express
//! (a name with a quote, backslash or newline; a socket; a hard link) makes
//! [`plan`] say why, and the assembler makes the whole file system instead:
//! either way the result depends only on the two trees.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use osbuild_stages::api::StageError;
use serde::{Deserialize, Serialize};

pub use osbuild_stages::assembly::Change;

use crate::ext4::quote;
use crate::util::tool;

/// What a prefix's file system holds: every path (absolute within the file
/// system, `/` left out) and its kind.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listing(BTreeMap<String, Entry>);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    kind: EntryKind,
    /// The names of a directory's extended attributes (a directory the
    /// image changes keeps its inode, so the ones it drops are removed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    xattrs: Vec<String>,
    /// A regular file with other hard links: its blocks are not its own.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    linked: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    Dir,
    File,
    Symlink,
    Other,
}

fn kind_of(meta: &std::fs::Metadata) -> EntryKind {
    let t = meta.file_type();
    if t.is_dir() {
        EntryKind::Dir
    } else if t.is_file() {
        EntryKind::File
    } else if t.is_symlink() {
        EntryKind::Symlink
    } else {
        EntryKind::Other
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> StageError + '_ {
    move |e| StageError(format!("{}: {e}", path.display()))
}

/// Lists `source` as `mkfs.ext4 -d` copies it, the `exclude`d directories
/// (absolute within the file system) empty, made if missing. `None` when a
/// name is not UTF-8: the delta could not name it.
pub fn list(source: &Path, exclude: &[String]) -> Result<Option<Listing>, StageError> {
    fn walk(dir: &Path, at: &str, exclude: &[String], out: &mut Listing) -> Result<bool, StageError> {
        for entry in std::fs::read_dir(dir).map_err(io(dir))? {
            let entry = entry.map_err(io(dir))?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                return Ok(false);
            };
            let path = format!("{at}/{name}");
            let meta = std::fs::symlink_metadata(entry.path()).map_err(io(&entry.path()))?;
            let kind = kind_of(&meta);
            let xattrs = if kind == EntryKind::Dir {
                names(&entry.path())?
            } else {
                Vec::new()
            };
            let linked = kind == EntryKind::File && meta.nlink() > 1;
            out.0.insert(path.clone(), Entry { kind, xattrs, linked });
            if kind == EntryKind::Dir && !exclude.contains(&path) && !walk(&entry.path(), &path, exclude, out)? {
                return Ok(false);
            }
        }
        Ok(true)
    }
    let mut listing = Listing::default();
    if !walk(source, "", exclude, &mut listing)? {
        return Ok(None);
    }
    // `Ext4::remove_excluded` makes a missing mount point and its parents.
    for ex in crate::ext4::outermost(exclude) {
        let mut at = String::new();
        for part in ex.split('/').filter(|p| !p.is_empty()) {
            at.push('/');
            at.push_str(part);
            listing.0.entry(at.clone()).or_insert(Entry {
                kind: EntryKind::Dir,
                xattrs: Vec::new(),
                linked: false,
            });
        }
    }
    Ok(Some(listing))
}

/// The names of a file's extended attributes, sorted.
fn names(path: &Path) -> Result<Vec<String>, StageError> {
    Ok(osbuild_stages::xattr::xattrs(path)
        .map_err(|e| StageError(e.to_string()))?
        .into_iter()
        .map(|(name, _)| String::from_utf8_lossy(&name).into_owned())
        .collect())
}

/// The debugfs work that turns the prefix's file system into the image's.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Script {
    /// Deletions, children first, each regular file's blocks listed before
    /// it goes (so they can be zeroed).
    pub remove: String,
    /// Creations and updates, parents first.
    pub write: String,
    /// Extended attribute values, by file name in the values directory.
    pub values: Vec<(String, Vec<u8>)>,
}

/// Plans the changes of one file system: `source` is the final tree's
/// directory for it. `Err(why)` when debugfs cannot express them.
pub fn plan(
    listing: &Listing,
    changes: &[Change],
    source: &Path,
    values_dir: &Path,
) -> Result<Result<Script, String>, StageError> {
    match plan_script(listing, changes, source, values_dir) {
        Ok(script) => Ok(Ok(script)),
        Err(NotLayered::Cannot(why)) => Ok(Err(why)),
        Err(NotLayered::Failed(e)) => Err(e),
    }
}

/// Why [`plan_script`] made no script.
enum NotLayered {
    /// debugfs cannot express a change.
    Cannot(String),
    /// Reading the tree failed.
    Failed(StageError),
}

impl From<StageError> for NotLayered {
    fn from(e: StageError) -> Self {
        NotLayered::Failed(e)
    }
}

/// A path quoted for debugfs, or why it cannot be.
fn q(path: &str) -> Result<String, NotLayered> {
    quote(path).map_err(|e| NotLayered::Cannot(e.0))
}

fn plan_script(listing: &Listing, changes: &[Change], source: &Path, values_dir: &Path) -> Result<Script, NotLayered> {
    // What of the prefix goes, and what the final tree has at each path.
    let mut gone: BTreeSet<&str> = BTreeSet::new();
    let mut present: Vec<(&str, std::fs::Metadata, bool)> = Vec::new();
    for change in changes {
        let p = change.path.as_str();
        let before = listing.0.get(p);
        let host = source.join(p.trim_start_matches('/'));
        let now = match std::fs::symlink_metadata(&host) {
            Ok(m) => Some(m),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io(&host)(e).into()),
        };
        // A directory both have keeps its inode; only its attributes change.
        let kept_dir = !change.replaced
            && before.is_some_and(|e| e.kind == EntryKind::Dir)
            && now.as_ref().is_some_and(|m| m.is_dir())
            && !gone.iter().any(|g| below(p, g));
        if let Some(entry) = before.filter(|_| !kept_dir) {
            if gone.insert(p) && entry.kind == EntryKind::Dir {
                let under = format!("{p}/");
                gone.extend(
                    listing
                        .0
                        .range(under.clone()..)
                        .map(|(q, _)| q.as_str())
                        .take_while(|q| q.starts_with(&under)),
                );
            }
        }
        if let Some(meta) = now {
            present.push((p, meta, kept_dir));
        }
    }

    // Deletions, children before their parents (a child sorts after its
    // parent); the blocks of the files listed first, to be zeroed.
    let mut blocks = String::new();
    let mut remove = String::new();
    for p in gone.iter().rev() {
        let entry = &listing.0[*p];
        let quoted = q(p)?;
        match entry.kind {
            EntryKind::Dir => remove.push_str(&format!("rmdir {quoted}\n")),
            _ if entry.linked => {
                return Err(NotLayered::Cannot(format!(
                    "{p}, which the image removes or replaces, has hard links"
                )))
            }
            kind => {
                if kind == EntryKind::File {
                    blocks.push_str(&format!("blocks {quoted}\n"));
                }
                remove.push_str(&format!("rm {quoted}\n"));
            }
        }
    }

    // Creations and updates, parents first, after the root's attributes
    // (no layer lists the root, but a stage may change it).
    let root = std::fs::symlink_metadata(source).map_err(io(source))?;
    let mut write = format!(
        "sif / mode 0{:o}\nsif / uid {}\nsif / gid {}\nsif / mtime @{}\n",
        root.mode(),
        root.uid(),
        root.gid(),
        root.mtime()
    );
    let mut values = Vec::new();
    for (p, meta, kept_dir) in &present {
        let quoted = q(p)?;
        let host = source.join(p.trim_start_matches('/'));
        let t = meta.file_type();
        if !kept_dir {
            let (parent, name) = p.rsplit_once('/').expect("an absolute path");
            // debugfs makes entries in its working directory, by name.
            write.push_str(&format!("cd {}\n", q(if parent.is_empty() { "/" } else { parent })?));
            let name = q(name)?;
            if t.is_dir() {
                write.push_str(&format!("mkdir {name}\n"));
            } else if t.is_file() {
                if meta.nlink() > 1 {
                    return Err(NotLayered::Cannot(format!("{p} has {} hard links", meta.nlink())));
                }
                write.push_str(&format!("write {} {name}\n", q(&host.to_string_lossy())?));
            } else if t.is_symlink() {
                let target = std::fs::read_link(&host).map_err(io(&host))?;
                let target = target
                    .to_str()
                    .ok_or_else(|| NotLayered::Cannot(format!("{p} links to a name that is not UTF-8")))?;
                write.push_str(&format!("symlink {name} {}\n", q(target)?));
            } else if t.is_fifo() {
                write.push_str(&format!("mknod {name} p\n"));
            } else if t.is_char_device() || t.is_block_device() {
                let c = if t.is_char_device() { 'c' } else { 'b' };
                let (major, minor) = (nix::sys::stat::major(meta.rdev()), nix::sys::stat::minor(meta.rdev()));
                write.push_str(&format!("mknod {name} {c} {major} {minor}\n"));
            } else {
                return Err(NotLayered::Cannot(format!("{p} is a socket")));
            }
        }
        if !t.is_symlink() {
            write.push_str(&format!("sif {quoted} mode 0{:o}\n", meta.mode()));
        }
        write.push_str(&format!(
            "sif {quoted} uid {}\nsif {quoted} gid {}\nsif {quoted} mtime @{}\n",
            meta.uid(),
            meta.gid(),
            meta.mtime()
        ));
        let now = osbuild_stages::xattr::xattrs(&host).map_err(|e| StageError(e.to_string()))?;
        if *kept_dir {
            for name in &listing.0[*p].xattrs {
                if !now.iter().any(|(n, _)| n == name.as_bytes()) {
                    write.push_str(&format!("ea_rm {quoted} {}\n", q(name)?));
                }
            }
        }
        for (name, value) in now {
            let name = String::from_utf8(name)
                .map_err(|_| NotLayered::Cannot(format!("{p} has an extended attribute whose name is not UTF-8")))?;
            let file = values.len().to_string();
            let from = values_dir.join(&file);
            write.push_str(&format!(
                "ea_set -f {} {quoted} {}\n",
                q(&from.to_string_lossy())?,
                q(&name)?
            ));
            values.push((file, value));
        }
    }
    Ok(Script {
        remove: blocks + &remove,
        write,
        values,
    })
}

/// Whether `p` is strictly below the directory `dir`.
fn below(p: &str, dir: &str) -> bool {
    p.strip_prefix(dir).is_some_and(|rest| rest.starts_with('/'))
}

/// Applies `script` to the ext4 file system at `offset` in `image`.
pub fn apply(image: &Path, offset: u64, script: &Script, values_dir: &Path, epoch: u64) -> Result<(), StageError> {
    for (name, value) in &script.values {
        let path = values_dir.join(name);
        std::fs::write(&path, value).map_err(io(&path))?;
    }
    if !script.remove.is_empty() {
        let out = crate::ext4::debugfs(image, offset, &script.remove, values_dir, epoch)?;
        crate::ext4::zero_blocks(image, offset, &out)?;
    }
    if !script.write.is_empty() {
        crate::ext4::debugfs(image, offset, &script.write, values_dir, epoch)?;
    }
    Ok(())
}

/// Sets the file system's UUID. A prefix's file system keeps its checksum
/// seed in the superblock, so only the superblocks change.
pub fn set_uuid(image: &Path, offset: u64, uuid: &str, epoch: u64) -> Result<(), StageError> {
    crate::util::run(
        tool("tune2fs", epoch)
            .arg("-U")
            .arg(uuid)
            .arg(crate::ext4::device(image, offset)),
        None,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(entries: &[(&str, EntryKind)]) -> Listing {
        Listing(
            entries
                .iter()
                .map(|(p, k)| {
                    (
                        p.to_string(),
                        Entry {
                            kind: *k,
                            xattrs: Vec::new(),
                            linked: false,
                        },
                    )
                })
                .collect(),
        )
    }

    #[test]
    fn a_replaced_directory_goes_with_everything_below_it_children_first() {
        let tmp = crate::util::TempDir::new("osbuild-layered-test").unwrap();
        let src = tmp.path().join("src");
        std::fs::create_dir_all(src.join("a")).unwrap();
        std::fs::write(src.join("a/new"), "x").unwrap();
        let l = listing(&[
            ("/a", EntryKind::Dir),
            ("/a/old", EntryKind::File),
            ("/a/sub", EntryKind::Dir),
            ("/a/sub/f", EntryKind::File),
            ("/b", EntryKind::File),
        ]);
        let changes = [
            Change {
                path: "/a".into(),
                replaced: true,
            },
            Change {
                path: "/a/new".into(),
                replaced: false,
            },
            Change {
                path: "/b".into(),
                replaced: true,
            },
        ];
        let s = plan(&l, &changes, &src, tmp.path()).unwrap().unwrap();
        assert_eq!(
            s.remove,
            "blocks \"/b\"\nblocks \"/a/sub/f\"\nblocks \"/a/old\"\n\
             rm \"/b\"\nrm \"/a/sub/f\"\nrmdir \"/a/sub\"\nrm \"/a/old\"\nrmdir \"/a\"\n"
        );
        assert!(s.write.contains("\ncd \"/\"\nmkdir \"a\"\n"), "{}", s.write);
        assert!(s.write.contains("cd \"/a\"\nwrite "), "{}", s.write);
        assert!(!s.write.contains("\"b\""), "b is gone from the final tree: {}", s.write);
    }

    #[test]
    fn a_changed_directory_keeps_its_inode_and_a_hard_link_is_refused() {
        let tmp = crate::util::TempDir::new("osbuild-layered-test").unwrap();
        let src = tmp.path().join("src");
        std::fs::create_dir_all(src.join("etc")).unwrap();
        std::fs::write(src.join("etc/one"), "x").unwrap();
        let l = listing(&[("/etc", EntryKind::Dir), ("/etc/keep", EntryKind::File)]);
        let change = |p: &str| Change {
            path: p.into(),
            replaced: false,
        };
        let s = plan(&l, &[change("/etc"), change("/etc/one")], &src, tmp.path())
            .unwrap()
            .unwrap();
        assert_eq!(s.remove, "");
        assert!(s.write.contains("\nsif \"/etc\" mode 040"), "{}", s.write);
        assert!(!s.write.contains("mkdir"), "{}", s.write);
        std::fs::hard_link(src.join("etc/one"), src.join("etc/two")).unwrap();
        let why = plan(&l, &[change("/etc/one")], &src, tmp.path()).unwrap().unwrap_err();
        assert!(why.contains("hard links"), "{why}");
    }
}
