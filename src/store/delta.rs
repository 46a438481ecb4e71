//! What the stages after a prefix of a pipeline changed, from their layers:
//! the delta an assembler builds an image on (see `osbuild_stages::assembly`).
//!
//! Every layer above the prefix tree's is walked with `lstat` alone (the
//! layers are the stages' work: a symlink in them is never followed). Each
//! entry is a change; it replaces what the prefix had there when a layer
//! holds it as a whiteout or an opaque directory. The root is no change
//! (every layer has one; the assembler takes its attributes from the final
//! tree).

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use osbuild_stages::assembly::{Change, Delta};

use super::{context, is_opaque_mark, is_whiteout, xattrs, Store};

impl Store {
    /// The delta of the stored tree `tree` over `prefix`, a tree it stands
    /// on; `None` when a changed path is not UTF-8 (no delta can name it).
    pub fn delta(&self, prefix: &str, tree: &str) -> io::Result<Option<Delta>> {
        let below = self.layers(Some(prefix))?;
        let all = self.layers(Some(tree))?;
        let Some(later) = all.strip_prefix(below.as_slice()) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the tree {tree} does not stand on the layers of {prefix}"),
            ));
        };
        let dirs: Vec<PathBuf> = later.iter().map(|l| self.layer_dir(l)).collect();
        delta_of(&dirs)
    }
}

/// The delta the layer directories `layers` (bottom first) make: every path
/// one holds below its root, sorted, each once, replaced if any layer holds
/// it as a whiteout or an opaque directory. `None` when a name is not UTF-8,
/// or a layer's root is opaque (which overlayfs never makes, and no list of
/// changes below the root can say).
pub fn delta_of(layers: &[PathBuf]) -> io::Result<Option<Delta>> {
    let mut changes: BTreeMap<String, bool> = BTreeMap::new();
    for layer in layers {
        if opaque(layer)? || walk(layer, "", &mut changes)?.is_none() {
            return Ok(None);
        }
    }
    Ok(Some(Delta {
        changes: changes
            .into_iter()
            .map(|(path, replaced)| Change { path, replaced })
            .collect(),
    }))
}

/// Whether the directory `path` is opaque.
fn opaque(path: &Path) -> io::Result<bool> {
    Ok(xattrs(path)?.iter().any(|(n, v)| is_opaque_mark(n, v)))
}

/// Records what is below the directory `path` (at `rel` in the tree, empty
/// for the root); `None` when a name is not UTF-8.
fn walk(path: &Path, rel: &str, changes: &mut BTreeMap<String, bool>) -> io::Result<Option<()>> {
    let mut names: Vec<_> = fs::read_dir(path)
        .map_err(|e| context(e, path))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(|e| context(e, path))?;
    names.sort();
    for name in names {
        let Some(text) = name.to_str() else { return Ok(None) };
        let child_rel = format!("{rel}/{text}");
        let child = path.join(&name);
        let meta = fs::symlink_metadata(&child).map_err(|e| context(e, &child))?;
        let replaced = is_whiteout(&meta) || (meta.is_dir() && opaque(&child)?);
        *changes.entry(child_rel.clone()).or_default() |= replaced;
        if meta.is_dir() && walk(&child, &child_rel, changes)?.is_none() {
            return Ok(None);
        }
    }
    Ok(Some(()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::{CString, OsStr};
    use std::os::unix::ffi::OsStrExt;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("osbuild-delta-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn make_whiteout(path: &Path) {
        nix::sys::stat::mknod(path, nix::sys::stat::SFlag::S_IFCHR, nix::sys::stat::Mode::empty(), 0).unwrap();
    }

    fn make_opaque(path: &Path) {
        let c = CString::new(path.as_os_str().as_bytes()).unwrap();
        let rc = unsafe {
            libc::lsetxattr(
                c.as_ptr(),
                c"trusted.overlay.opaque".as_ptr(),
                b"y".as_ptr().cast(),
                1,
                0,
            )
        };
        assert_eq!(rc, 0, "{}", io::Error::last_os_error());
    }

    /// The store's layer lists: the final tree's above the prefix tree's
    /// (layers that changed nothing are not in them).
    #[test]
    fn a_stored_trees_delta_is_of_its_layers_above_the_prefix() {
        use crate::store::{commit_for_test, ObjectKind};
        let root = temp("store");
        let store = Store::open(&root.join("store")).unwrap();
        let [a, b, c, d] = ["a", "b", "c", "d"].map(|x| x.repeat(64));
        commit_for_test(&store, &a, ObjectKind::Tree, None, vec![a.clone()], |dir| {
            fs::write(dir.join("motd"), "hi\n").unwrap();
        });
        // b changed nothing: it is in no layer list.
        commit_for_test(&store, &b, ObjectKind::Tree, Some(&a), vec![a.clone()], |_| {});
        commit_for_test(
            &store,
            &c,
            ObjectKind::Tree,
            Some(&b),
            vec![a.clone(), c.clone()],
            |dir| {
                make_whiteout(&dir.join("motd"));
                fs::write(dir.join("hostname"), "web\n").unwrap();
            },
        );
        let delta = store.delta(&b, &c).unwrap().unwrap();
        assert_eq!(shown(&delta), [("/hostname", false), ("/motd", true)]);
        assert_eq!(store.delta(&c, &c).unwrap().unwrap(), Delta::default());
        // A tree that does not stand on the other's layers has no delta over it.
        commit_for_test(&store, &d, ObjectKind::Tree, None, vec![d.clone()], |dir| {
            fs::write(dir.join("x"), "").unwrap();
        });
        let err = store.delta(&d, &c).unwrap_err();
        assert!(err.to_string().contains("does not stand on the layers of"), "{err}");
        drop(store);
        fs::remove_dir_all(root).unwrap();
    }

    fn shown(delta: &Delta) -> Vec<(&str, bool)> {
        delta.changes.iter().map(|c| (c.path.as_str(), c.replaced)).collect()
    }

    /// Two layers above the prefix: a new file, a file deleted, a directory
    /// made opaque, a symlink (not followed), and a path both touch.
    #[test]
    fn every_path_of_the_later_layers_once_with_what_replaces_the_prefixs() {
        let dir = temp("layers");
        let (one, two) = (dir.join("one"), dir.join("two"));
        fs::create_dir_all(one.join("etc/ssh")).unwrap();
        fs::write(one.join("etc/hostname"), "web\n").unwrap();
        fs::write(one.join("etc/ssh/sshd_config"), "").unwrap();
        make_opaque(&one.join("etc/ssh"));
        make_whiteout(&one.join("etc/motd"));
        std::os::unix::fs::symlink("/etc", one.join("link")).unwrap();
        fs::create_dir_all(two.join("etc")).unwrap();
        fs::write(two.join("etc/motd"), "back\n").unwrap();
        fs::write(two.join("etc/hostname"), "db\n").unwrap();
        make_whiteout(&two.join("gone"));
        let delta = delta_of(&[one.clone(), two.clone()]).unwrap().unwrap();
        assert_eq!(
            shown(&delta),
            [
                ("/etc", false),
                ("/etc/hostname", false),
                ("/etc/motd", true),
                ("/etc/ssh", true),
                ("/etc/ssh/sshd_config", false),
                ("/gone", true),
                ("/link", false),
            ]
        );
        // The same layers give the same delta, and none gives an empty one.
        assert_eq!(delta_of(&[one.clone(), two.clone()]).unwrap().unwrap(), delta);
        assert_eq!(delta_of(&[]).unwrap().unwrap(), Delta::default());
        // A name a delta cannot hold: no delta at all.
        fs::write(two.join(OsStr::from_bytes(b"caf\xe9")), "").unwrap();
        assert_eq!(delta_of(&[one.clone(), two.clone()]).unwrap(), None);
        // A layer whose root hides everything below: no list of changes says that.
        let three = dir.join("three");
        fs::create_dir(&three).unwrap();
        make_opaque(&three);
        assert_eq!(delta_of(&[one, three]).unwrap(), None);
        fs::remove_dir_all(dir).unwrap();
    }
}
