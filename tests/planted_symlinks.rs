//! Symlinks an earlier stage planted in the tree (`etc/hostname -> /etc/passwd`,
//! `rootlink -> /`) never send a built-in stage's write out of the tree: it
//! lands in the tree, where the image resolves the path, or the build fails
//! naming the path. Nothing a stage reports as written is missing.

use std::path::Path;

use serde_json::{json, Value};

use crate::support::{untar, Scratch};

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n";
const GROUP: &str = "root:x:0:\nusers:x:100:\n";
const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOjP4dTX0sZVqEGbiA7Uyy8cNNdd2kGbmIBCKbexWDQx alice@laptop";

/// A libdir stage that leaves a tree full of symlinks that lead out of it
/// when the sandbox resolves them: to the build root, to the sandbox's /tmp,
/// to `/`, up with `..`, through /proc, and to nothing.
fn plant(s: &Scratch) {
    s.stage(
        "stage",
        "test.plant",
        &format!(
            "#!/bin/sh\nset -e\ncd /run/osbuild/tree\n\
             mkdir -p etc srv/homes boot/kconf usr/share/zoneinfo\n\
             printf '{PASSWD}' > etc/passwd\n\
             printf '{GROUP}' > etc/group\n\
             echo TZif > usr/share/zoneinfo/UTC\n\
             ln -s /etc/passwd etc/hostname\n\
             ln -s /etc/passwd etc/localtime\n\
             ln -s / rootlink\n\
             ln -s ../../../.. etc/up\n\
             ln -s /tmp/fstab etc/fstab\n\
             ln -s ../../../../tmp/locale.conf etc/locale.conf\n\
             ln -s /proc/self/root/etc/machine-id etc/machine-id\n\
             ln -s /boot/kconf etc/kernel\n\
             ln -s /srv/homes home\n\
             ln -s /tmp dangling\n\
             ln -s /usr/bin/nothing-here etc/nowhere\n"
        ),
        None,
    );
}

fn manifest(stages: Vec<Value>) -> Value {
    let mut all = vec![json!({"name": "test.plant"})];
    all.extend(stages);
    json!({"stages": all, "assembler": {"name": "org.osbuild.tar", "options": {"filename": "t.tar"}}})
}

fn read(root: &Path, rel: &str) -> String {
    std::fs::read_to_string(root.join(rel)).unwrap_or_else(|e| panic!("{rel} is missing from the image: {e}"))
}

fn is_file(root: &Path, rel: &str) -> bool {
    std::fs::symlink_metadata(root.join(rel)).is_ok_and(|m| m.is_file())
}

#[test]
fn writes_through_planted_symlinks_land_in_the_tree() {
    let s = Scratch::new("planted-ok");
    plant(&s);
    let m = s.manifest(
        "m.json",
        &manifest(vec![
            json!({"name": "org.osbuild.hostname", "options": {"hostname": "web"}}),
            json!({"name": "org.osbuild.files", "options": {"files": [
                {"path": "/rootlink/srv/x.conf", "content": "x\n"},
                {"path": "/etc/up/opt/y.conf", "content": "y\n", "mode": "0600"}
            ]}}),
            json!({"name": "org.osbuild.mkdir", "options": {"paths": [
                {"path": "/rootlink/var/lib/app", "parents": true, "mode": "0700"}
            ]}}),
            json!({"name": "org.osbuild.users", "options": {"users": {"alice": {"key": KEY}}}}),
            json!({"name": "org.osbuild.fstab", "options": {"filesystems": [
                {"uuid": "76a22bf4-f153-4541-b6c7-0332c0dfaeac", "path": "/", "vfs_type": "ext4"}
            ]}}),
            json!({"name": "org.osbuild.locale", "options": {"language": "en_US.UTF-8"}}),
            json!({"name": "org.osbuild.timezone", "options": {"zone": "UTC"}}),
            json!({"name": "org.osbuild.machine-id", "options": {"first-boot": "yes"}}),
            json!({"name": "org.osbuild.kernel-cmdline", "options": {"kernel_opts": "quiet"}}),
        ]),
    );
    s.build(&m, Some(&s.path("out"))).ok();
    let x = s.path("x");
    untar(&s.path("out/t.tar"), &x);

    // The planted link is replaced by the file written; its target is untouched.
    assert!(is_file(&x, "etc/hostname"));
    assert_eq!(read(&x, "etc/hostname"), "web\n");
    assert!(read(&x, "etc/passwd").starts_with(PASSWD));
    // Directories on the way resolve against the tree's own root.
    assert_eq!(read(&x, "srv/x.conf"), "x\n");
    assert_eq!(read(&x, "opt/y.conf"), "y\n");
    let app = std::fs::metadata(x.join("var/lib/app")).unwrap();
    assert!(app.is_dir());
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&app.permissions()) & 0o7777,
        0o700
    );
    // /home -> /srv/homes: alice's home is the tree's /srv/homes/alice.
    assert!(read(&x, "etc/passwd").contains("alice:!:1000:1000::/home/alice:/bin/sh\n"));
    assert_eq!(read(&x, "srv/homes/alice/.ssh/authorized_keys"), format!("{KEY}\n"));
    assert!(read(&x, "etc/fstab").starts_with("UUID=76a22bf4-f153-4541-b6c7-0332c0dfaeac\t/\text4"));
    assert!(is_file(&x, "etc/fstab") && is_file(&x, "etc/locale.conf") && is_file(&x, "etc/machine-id"));
    assert_eq!(read(&x, "etc/locale.conf"), "LANG=en_US.UTF-8\n");
    assert_eq!(read(&x, "etc/machine-id"), "uninitialized\n");
    assert_eq!(
        std::fs::read_link(x.join("etc/localtime")).unwrap(),
        Path::new("../usr/share/zoneinfo/UTC")
    );
    assert_eq!(read(&x, "etc/timezone"), "UTC\n");
    assert_eq!(read(&x, "boot/kconf/cmdline"), "quiet");
    // Nothing went where the sandbox would have resolved the links.
    for stray in ["tmp", "proc"] {
        assert!(!x.join(stray).exists(), "/{stray} appeared in the tree");
    }
}

/// A build whose last stage must fail, naming `path`, with exit status 1.
#[track_caller]
fn refused(s: &Scratch, name: &str, stage: Value, path: &str) {
    let m = s.manifest(&format!("{name}.json"), &manifest(vec![stage]));
    let b = s.build(&m, Some(&s.path(name)));
    assert_eq!(b.code, 1, "{name}: the build must fail:\n{}\n{}", b.stdout, b.stderr);
    let all = format!("{}{}", b.stdout, b.stderr);
    assert!(all.contains(path), "{name}: the failure does not name {path}:\n{all}");
    assert!(!s.path(name).exists(), "{name}: a failed build wrote an image");
}

#[test]
fn links_that_lead_nowhere_in_the_tree_fail_naming_the_path() {
    let s = Scratch::new("planted-refused");
    plant(&s);
    // `dangling -> /tmp`: the sandbox has a /tmp, the tree does not.
    refused(
        &s,
        "files",
        json!({"name": "org.osbuild.files", "options": {"files": [{"path": "/dangling/x", "content": "x"}]}}),
        "/dangling: a symbolic link to /tmp that is not a directory in the tree",
    );
    refused(
        &s,
        "mkdir",
        json!({"name": "org.osbuild.mkdir", "options": {"paths": [{"path": "/dangling/sub", "parents": true}]}}),
        "/dangling: a symbolic link to /tmp",
    );
    refused(
        &s,
        "mkdir-noparents",
        json!({"name": "org.osbuild.mkdir", "options": {"paths": [{"path": "/etc/nowhere/sub"}]}}),
        "/etc/nowhere: No such file or directory",
    );
    refused(
        &s,
        "files-magic",
        json!({"name": "org.osbuild.files", "options": {"files": [{"path": "/etc/machine-id/x", "content": "x"}]}}),
        "/etc/machine-id",
    );
}
