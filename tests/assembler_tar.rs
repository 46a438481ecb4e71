//! The tar assembler keeps what a tree is made of, and the same tree gives the same bytes.

use serde_json::json;

use crate::support::{listing, untar, Scratch};

fn manifest(s: &Scratch, compression: &str) -> std::path::PathBuf {
    s.stage(
        "stage",
        "test.special-files",
        "#!/bin/sh\nset -e\nt=/run/osbuild/tree\nmkdir -p $t/d\necho data > $t/d/file\nchown 1234:5678 $t/d/file\nchmod 4750 $t/d/file\n\
         ln $t/d/file $t/d/hardlink\nln -s file $t/d/symlink\nmkfifo $t/d/fifo\nsetfattr -n user.osbuild -v kept $t/d/file\n\
         touch -d @2000000000 $t/d/future\n",
        None,
    );
    s.manifest(
        "m.json",
        &json!({"stages": [
            {"name": "test.special-files"},
            {"name": "org.osbuild.files", "options": {"files": [{"path": "/etc/motd", "content": "hi\n", "mode": "0600", "user": 7, "group": 8}]}}
        ], "assembler": {"name": "org.osbuild.tar", "options": {"filename": "tree.tar", "compression": compression}}}),
    )
}

#[test]
fn modes_owners_links_and_xattrs_survive() {
    let s = Scratch::new("tar-content");
    let m = manifest(&s, "none");
    s.build(&m, Some(&s.path("out"))).ok();
    let x = s.path("x");
    untar(&s.path("out/tree.tar"), &x);
    let list = listing(&x);
    assert!(list.contains("./d/file f 4750 1234:5678 5"), "{list}");
    assert!(list.contains("./d/symlink l 777 0:0 4 file"), "{list}");
    assert!(list.contains("./d/fifo p"), "{list}");
    assert!(list.contains("./etc/motd f 600 7:8 3"), "{list}");
    use std::os::unix::fs::MetadataExt;
    let (a, b) = (
        std::fs::metadata(x.join("d/file")).unwrap(),
        std::fs::metadata(x.join("d/hardlink")).unwrap(),
    );
    assert_eq!(a.ino(), b.ino(), "hard link kept");
    let xattr = std::process::Command::new("getfattr")
        .args(["--only-values", "-n", "user.osbuild"])
        .arg(x.join("d/file"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&xattr.stdout), "kept");
    // Times are clamped to the source epoch (0 by default).
    assert_eq!(std::fs::metadata(x.join("d/future")).unwrap().mtime(), 0);
}

#[test]
fn the_same_tree_gives_the_same_bytes_for_every_compression() {
    for compression in ["none", "gzip", "xz", "zstd"] {
        let one = Scratch::new(&format!("tar-repro-a-{compression}"));
        let two = Scratch::new(&format!("tar-repro-b-{compression}"));
        // Two stores, two builds at different times: the trees' mtimes differ.
        one.build(&manifest(&one, compression), Some(&one.path("out"))).ok();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        two.build(&manifest(&two, compression), Some(&two.path("out"))).ok();
        let (a, b) = (
            std::fs::read(one.path("out/tree.tar")).unwrap(),
            std::fs::read(two.path("out/tree.tar")).unwrap(),
        );
        assert!(a == b, "{compression}: the tarballs differ");
    }
}
