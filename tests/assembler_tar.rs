//! The tar assembler keeps what a tree is made of, and the same tree gives the same bytes.

use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{data_ranges, listing, untar, Scratch};

fn manifest(s: &Scratch, compression: &str) -> std::path::PathBuf {
    s.stage(
        "stage",
        "test.special-files",
        "#!/bin/sh\nset -e\nt=/run/osbuild/tree\nmkdir -p $t/d\necho data > $t/d/file\nchown 1234:5678 $t/d/file\nchmod 4750 $t/d/file\n\
         ln $t/d/file $t/d/hardlink\nln -s file $t/d/symlink\nmkfifo $t/d/fifo\nsetfattr -n user.osbuild -v kept $t/d/file\n\
         touch -d @2000000000 $t/d/future\n\
         truncate -s 64M $t/d/sparse\nprintf tail | dd of=$t/d/sparse bs=1 seek=33554432 conv=notrunc 2>/dev/null\n",
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
    assert!(list.contains("./d/sparse f 644 0:0 67108864"), "{list}");
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
    // The sparse file comes back sparse, its data where it was.
    let sparse = std::fs::read(x.join("d/sparse")).unwrap();
    assert_eq!(&sparse[1 << 25..(1 << 25) + 4], b"tail");
    assert!(sparse[..1 << 25]
        .iter()
        .chain(&sparse[(1 << 25) + 4..])
        .all(|&b| b == 0));
    let data: u64 = data_ranges(&x.join("d/sparse")).iter().map(|(a, b)| b - a).sum();
    assert!(data <= 1 << 16, "{data} bytes of data");
}

#[test]
fn the_same_tree_gives_the_same_bytes_for_every_compression() {
    for compression in ["none", "gzip", "xz", "zstd"] {
        let one = Scratch::new(&format!("tar-repro-a-{compression}"));
        let two = Scratch::new(&format!("tar-repro-b-{compression}"));
        // Two stores, two builds at different times: the trees' mtimes differ.
        // The tree holds a sparse file, whose member name carries tar's PID
        // (see the assembler's module doc).
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

/// A tree with a 1 TiB hole and a 1 GiB file with 5 bytes in its middle.
fn sparse_manifest(s: &Scratch, compression: &str) -> std::path::PathBuf {
    s.stage(
        "stage",
        "test.sparse-files",
        &format!(
            "#!/bin/sh\nset -e\nt=/run/osbuild/tree\ntruncate -s 1T $t/big\ntruncate -s 1G $t/mid\n\
             printf hello | dd of=$t/mid bs=1 seek={MID_DATA} conv=notrunc 2>/dev/null\n"
        ),
        None,
    );
    s.manifest(
        "m.json",
        &json!({"stages": [{"name": "test.sparse-files"}],
                "assembler": {"name": "org.osbuild.tar", "options": {"filename": "tree.tar", "compression": compression}}}),
    )
}

/// Where `mid`'s data is (not on a block boundary).
const MID_DATA: u64 = 500_000_001;

#[test]
fn sparse_files_stay_holes_and_give_the_same_bytes() {
    // A build that read the holes would take hours (a terabyte of zeros):
    // the time limit fails it instead of hanging. zstd first: such a build
    // then only burns CPU (zeros compress to nothing) rather than filling the
    // disk, and the test stops before the uncompressed builds.
    let limit = Duration::from_secs(60);
    for compression in ["zstd", "none"] {
        let one = Scratch::new(&format!("tar-sparse-a-{compression}"));
        let two = Scratch::new(&format!("tar-sparse-b-{compression}"));
        let started = Instant::now();
        let m = sparse_manifest(&one, compression);
        one.build_within(&m, Some(&one.path("out")), limit).ok();
        let took = started.elapsed();
        let m = sparse_manifest(&two, compression);
        two.build_within(&m, Some(&two.path("out")), limit).ok();
        let (a, b) = (
            std::fs::read(one.path("out/tree.tar")).unwrap(),
            std::fs::read(two.path("out/tree.tar")).unwrap(),
        );
        assert!(a == b, "{compression}: the tarballs differ");
        assert!(a.len() < 1 << 20, "{compression}: {} bytes, built in {took:?}", a.len());
        if compression == "none" {
            // Pax sparse 1.0 names the member after tar's PID, which the
            // sandbox makes 3 (see the assembler's module doc).
            let pinned = b"./GNUSparseFile.3/big";
            assert!(a.windows(pinned.len()).any(|w| w == pinned), "tar did not run as PID 3");
        }

        // GNU tar restores sparse members as sparse files, under their names.
        let x = one.path("x");
        untar(&one.path("out/tree.tar"), &x);
        let list = listing(&x);
        assert!(list.contains("\n./big f 644 0:0 1099511627776 \n"), "{list}");
        assert!(list.contains("\n./mid f 644 0:0 1073741824 \n"), "{list}");
        assert!(!list.contains("GNUSparseFile"), "{list}");
        assert_eq!(
            data_ranges(&x.join("big")),
            [],
            "{compression}: the 1 TiB hole was filled"
        );
        let ranges = data_ranges(&x.join("mid"));
        let [(start, end)] = ranges[..] else {
            panic!("{compression}: mid's data is at {ranges:?}");
        };
        assert!(
            start <= MID_DATA && MID_DATA + 5 <= end && end - start <= 1 << 16,
            "{ranges:?}"
        );
        let mut data = vec![0; (end - start) as usize];
        std::fs::File::open(x.join("mid"))
            .unwrap()
            .read_exact_at(&mut data, start)
            .unwrap();
        let mut expected = vec![0; data.len()];
        let at = (MID_DATA - start) as usize;
        expected[at..at + 5].copy_from_slice(b"hello");
        assert!(data == expected, "{compression}: mid's data is not where it was");
    }
}
