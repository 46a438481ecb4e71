//! What package tools leave in a tree that differs from one run to the next
//! and means nothing in an image: logs with the build's times, caches,
//! backup copies of what they rewrote, a machine id or random seed made
//! during the install. The package stages (debootstrap, apt, dnf) remove it
//! when they finish, so the same packages give the same tree.
//!
//! mmdebstrap clears much of this after a bootstrap; an apt or dnf stage on a
//! finished tree writes it all again, so every stage clears it itself.

use std::path::Path;

use crate::api::StageResult;
use crate::tree::Tree;

/// Removed whenever present: none of it is read back by what the image runs
/// (the caches are rebuilt on demand; the `-old` and `-` files are the
/// previous version of a file the tool rewrote).
const REMOVED: &[&str] = &[
    // dpkg, apt, update-alternatives and debootstrap: logs with times.
    "var/log/dpkg.log",
    "var/log/alternatives.log",
    "var/log/bootstrap.log",
    "var/log/apt/history.log",
    "var/log/apt/term.log",
    "var/log/apt/eipp.log.xz",
    // dnf and rpm.
    "var/log/dnf.log",
    "var/log/dnf.librepo.log",
    "var/log/dnf.rpm.log",
    "var/log/hawkey.log",
    // dnf's history: every transaction with its time (dnf starts a new one;
    // osbuild's own RPM stages leave none at all).
    "var/lib/dnf/history.sqlite",
    "var/lib/dnf/history.sqlite-wal",
    "var/lib/dnf/history.sqlite-shm",
    "var/lib/dnf/history.sqlite-journal",
    // SQLite's shared-memory index of the rpm database: rebuilt when the
    // database is next opened (its -wal, which holds data, stays).
    "usr/lib/sysimage/rpm/rpmdb.sqlite-shm",
    "var/lib/rpm/rpmdb.sqlite-shm",
    // ldconfig's cache of file times and inode numbers.
    "var/cache/ldconfig/aux-cache",
    // dpkg's and debconf's copies of their databases before the last write.
    "var/lib/dpkg/status-old",
    "var/lib/dpkg/available-old",
    "var/lib/dpkg/diversions-old",
    "var/lib/dpkg/statoverride-old",
    "var/cache/debconf/config.dat-old",
    "var/cache/debconf/templates.dat-old",
    "var/cache/debconf/passwords.dat-old",
    // shadow's backups of the account files.
    "etc/passwd-",
    "etc/group-",
    "etc/shadow-",
    "etc/gshadow-",
    "etc/subuid-",
    "etc/subgid-",
    // A random seed every machine made from the image would share.
    "var/lib/systemd/random-seed",
    "var/lib/urandom/random-seed",
];

/// A machine id as systemd writes it: 32 lowercase hex digits and a newline.
fn is_generated_id(content: &[u8]) -> bool {
    content.len() == 33 && content[32] == b'\n' && content[..32].iter().all(|b| b.is_ascii_hexdigit())
}

/// What the tree held before the stage that the stage may only change
/// knowingly.
pub(crate) struct Before {
    machine_id: Option<Vec<u8>>,
}

impl Before {
    pub(crate) fn look(tree: &Tree) -> Before {
        Before {
            machine_id: tree.read("etc/machine-id").ok(),
        }
    }
}

/// Removes the leftovers; a machine id a package made during the stage (a
/// fresh random one, systemd's postinst makes it) becomes empty again, as
/// mmdebstrap leaves it: systemd makes one at boot. An id the tree had
/// before is kept.
pub(crate) fn remove(tree: &Tree, before: &Before) -> StageResult {
    let mut removed = Vec::new();
    for path in REMOVED {
        if tree.symlink_metadata(path).is_ok_and(|m| m.is_file()) {
            tree.remove_file(path)?;
            removed.push(*path);
        }
    }
    // D-Bus's own copy of the id, when it is not a link to /etc/machine-id.
    let dbus = "var/lib/dbus/machine-id";
    if tree.symlink_metadata(dbus).is_ok_and(|m| m.is_file()) {
        tree.remove_file(dbus)?;
        removed.push(dbus);
    }
    let id = "etc/machine-id";
    if let Ok(now) = tree.read(id) {
        if before.machine_id.as_deref() != Some(now.as_slice()) && is_generated_id(&now) {
            tree.write_with(id, 0o444, None, |_| Ok(()))?;
            println!("emptied /{id}: a package made one during the install");
        }
    }
    if !removed.is_empty() {
        let names: Vec<String> = removed
            .iter()
            .map(|p| Path::new("/").join(p).display().to_string())
            .collect();
        println!("removed what the package tools left: {}", names.join(" "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempTree;

    #[test]
    fn logs_caches_and_backups_go_and_the_rest_stays() {
        let dir = TempTree::new("leftovers");
        for d in [
            "var/log/apt",
            "var/cache/ldconfig",
            "var/lib/dpkg",
            "etc",
            "var/lib/dbus",
        ] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        dir.write("var/log/dpkg.log", "2026-12-03 13:23:01 install ...");
        dir.write("var/log/apt/history.log", "Start-Date: ...");
        dir.write("var/cache/ldconfig/aux-cache", "times");
        dir.write("var/lib/dpkg/status", "Package: a");
        dir.write("var/lib/dpkg/status-old", "Package: b");
        dir.write("etc/passwd", "root:x:0:0::/root:/bin/sh\n");
        dir.write("etc/passwd-", "root:x:0:0::/root:/bin/sh\n");
        dir.write("var/log/custom.log", "kept: not a package tool's");
        std::os::unix::fs::symlink("/etc/machine-id", dir.join("var/lib/dbus/machine-id")).unwrap();
        let tree = Tree::open(&dir.path).unwrap();
        let before = Before::look(&tree);
        remove(&tree, &before).unwrap();
        for gone in [
            "var/log/dpkg.log",
            "var/log/apt/history.log",
            "var/cache/ldconfig/aux-cache",
            "var/lib/dpkg/status-old",
            "etc/passwd-",
        ] {
            assert!(!dir.join(gone).exists(), "{gone} removed");
        }
        for kept in ["var/lib/dpkg/status", "etc/passwd", "var/log/custom.log"] {
            assert!(dir.join(kept).exists(), "{kept} kept");
        }
        assert!(
            dir.join("var/lib/dbus/machine-id").symlink_metadata().is_ok(),
            "a link to the id stays"
        );
    }

    #[test]
    fn a_machine_id_made_during_the_stage_is_emptied_one_from_before_kept() {
        let dir = TempTree::new("leftovers-id");
        std::fs::create_dir_all(dir.join("etc")).unwrap();
        let tree = Tree::open(&dir.path).unwrap();
        // None before: systemd's postinst made one.
        let before = Before::look(&tree);
        dir.write("etc/machine-id", "0123456789abcdef0123456789abcdef\n");
        remove(&tree, &before).unwrap();
        let id = dir.join("etc/machine-id");
        assert_eq!(std::fs::read(&id).unwrap(), b"");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&id).unwrap().permissions().mode() & 0o777, 0o444);
        // One the tree had (a user's choice) stays, as does "uninitialized".
        dir.write("etc/machine-id", "fedcba9876543210fedcba9876543210\n");
        let before = Before::look(&tree);
        remove(&tree, &before).unwrap();
        assert_eq!(std::fs::read(&id).unwrap(), b"fedcba9876543210fedcba9876543210\n");
        let before = Before::look(&tree);
        dir.write("etc/machine-id", "uninitialized\n");
        remove(&tree, &before).unwrap();
        assert_eq!(std::fs::read(&id).unwrap(), b"uninitialized\n");
    }
}
