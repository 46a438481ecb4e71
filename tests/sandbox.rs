//! Hostile stages: whatever a stage tries, the host is untouched and invisible.

use serde_json::json;

use crate::support::{mounts, untar, Scratch};

/// Runs one shell-script stage whose report (what it managed to do) ends up in
/// the tree as /report; returns that report.
fn report(s: &Scratch, script: &str, meta: Option<&serde_json::Value>) -> String {
    s.stage(
        "stage",
        "test.hostile",
        &format!("#!/bin/sh\nexec > /run/osbuild/tree/report 2>&1\n{script}\n"),
        meta,
    );
    let m = s.manifest(
        "m.json",
        &json!({"stages": [{"name": "test.hostile"}], "assembler": {"name": "org.osbuild.tar", "options": {"filename": "t.tar"}}}),
    );
    let before = mounts();
    s.build(&m, Some(&s.path("out"))).ok();
    assert_eq!(before, mounts(), "the build left mounts behind");
    untar(&s.path("out/t.tar"), &s.path("x"));
    std::fs::read_to_string(s.path("x/report")).unwrap()
}

#[test]
fn writes_to_the_build_root_fail_and_never_reach_the_host() {
    let s = Scratch::new("sbx-write");
    let marker = format!("osbuild-pwned-{}", std::process::id());
    let report = report(
        &s,
        &format!(
            "for d in / /usr /usr/bin /etc; do if touch $d/{marker} 2>/dev/null; then echo \"wrote $d\"; fi; done\n\
             if mount -t tmpfs none /usr 2>/dev/null; then echo mounted; fi\n\
             if mount -o remount,rw / 2>/dev/null; then echo remounted; fi\n\
             if mknod /run/osbuild/tree/sda b 8 0 && head -c1 /run/osbuild/tree/sda >/dev/null 2>&1; then echo opened-a-disk; fi\n\
             rm -f /run/osbuild/tree/sda\n\
             echo finished"
        ),
        None,
    );
    assert_eq!(report, "finished\n");
    // /run and /tmp are the sandbox's own tmpfs: writable, and gone afterwards.
    for d in ["/", "/usr", "/usr/bin", "/etc", "/run"] {
        assert!(!std::path::Path::new(d).join(&marker).exists(), "{d} was written");
    }
}

#[test]
fn the_store_the_checkout_and_root_are_invisible() {
    let s = Scratch::new("sbx-invisible");
    let checkout = env!("CARGO_MANIFEST_DIR");
    let store = s.store();
    let report = report(
        &s,
        &format!(
            "for p in /root /home {checkout} {} {} /var/lib /srv /sys/class/net; do if [ -e \"$p\" ]; then echo \"sees $p\"; fi; done\n\
             ls / | tr '\\n' ' '; echo",
            store.display(),
            s.dir.display()
        ),
        None,
    );
    assert!(!report.contains("sees"), "{report}");
    // Only the build root's own pieces and the sandbox's are at the top.
    let top: Vec<&str> = report.split_whitespace().collect();
    for unexpected in ["root", "home", "work", "srv", "opt", "boot", "mnt", "media"] {
        assert!(!top.contains(&unexpected), "/{unexpected} is visible: {report}");
    }
    assert!(top.contains(&"usr") && top.contains(&"etc") && top.contains(&"tmp"));
}

#[test]
fn without_declared_network_a_stage_has_only_loopback() {
    let s = Scratch::new("sbx-net");
    let script = "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '";
    assert_eq!(report(&s, script, None), "lo\n");
    let with = Scratch::new("sbx-net-declared");
    let host_ifaces = std::fs::read_to_string("/proc/net/dev")
        .unwrap()
        .lines()
        .skip(2)
        .count();
    let seen = report(
        &with,
        script,
        Some(&json!({"summary": "needs network", "network": true})),
    );
    assert_eq!(seen.lines().count(), host_ifaces, "{seen}");
}

#[test]
fn a_stage_sees_only_its_own_processes_and_a_minimal_dev() {
    let s = Scratch::new("sbx-pid");
    let report = report(
        &s,
        "ls /proc | grep -cE '^[0-9]+$'\nls /dev | tr '\\n' ' '; echo\nhostname\nid -u",
        None,
    );
    let mut lines = report.lines();
    let pids: usize = lines.next().unwrap().parse().unwrap();
    // init, the shell, ls, grep: a handful, not the host's hundreds.
    assert!(pids <= 6, "{report}");
    let dev: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    for node in ["null", "zero", "full", "random", "urandom", "tty"] {
        assert!(dev.contains(&node), "/dev/{node} missing: {dev:?}");
    }
    for host_only in ["sda", "vda", "kvm", "mem", "kmsg", "loop0"] {
        assert!(!dev.contains(&host_only), "/dev/{host_only} visible: {dev:?}");
    }
    assert_eq!(lines.next(), Some("osbuild"));
}

#[test]
fn an_assembler_cannot_change_the_stored_tree() {
    let s = Scratch::new("sbx-assembler");
    s.stage(
        "assembler",
        "test.vandal",
        "#!/bin/sh\nrm -f /run/osbuild/tree/f 2>/dev/null; echo x > /run/osbuild/tree/new 2>/dev/null\n\
         if [ -e /run/osbuild/tree/new ]; then echo wrote > /run/osbuild/output/result; else echo refused > /run/osbuild/output/result; fi\n\
         cat > /run/osbuild/output/stdin.json\n",
        None,
    );
    let m = s.manifest(
        "m.json",
        &json!({"stages": [{"name": "org.osbuild.files", "options": {"files": [{"path": "/f", "content": "keep"}]}}],
                "assembler": {"name": "test.vandal", "options": {"k": "v"}}}),
    );
    s.build(&m, Some(&s.path("out"))).ok();
    assert_eq!(std::fs::read_to_string(s.path("out/result")).unwrap(), "refused\n");
    let stdin: serde_json::Value = serde_json::from_slice(&std::fs::read(s.path("out/stdin.json")).unwrap()).unwrap();
    assert_eq!(
        stdin,
        json!({"tree": "/run/osbuild/tree", "output_dir": "/run/osbuild/output", "options": {"k": "v"}})
    );
    // The stored tree still has /f: pack it again with tar.
    let m2 = s.manifest(
        "m2.json",
        &json!({"stages": [{"name": "org.osbuild.files", "options": {"files": [{"path": "/f", "content": "keep"}]}}],
                "assembler": {"name": "org.osbuild.tar", "options": {"filename": "t.tar"}}}),
    );
    s.build(&m2, Some(&s.path("out2"))).ok();
    untar(&s.path("out2/t.tar"), &s.path("x"));
    assert_eq!(std::fs::read_to_string(s.path("x/f")).unwrap(), "keep");
    assert!(!s.path("x/new").exists());
}

#[test]
fn a_chroot_stage_gets_proc_dev_and_tmp_inside_the_tree_and_stores_none_of_them() {
    let s = Scratch::new("sbx-chroot");
    s.stage(
        "stage",
        "test.busybox-tree",
        "#!/bin/sh\nset -e\nt=/run/osbuild/tree\nmkdir -p $t/bin\ncp /bin/busybox $t/bin/busybox\n\
         for c in sh ls cat tr tail cut wc; do ln -s busybox $t/bin/$c; done\n",
        None,
    );
    let script = "ls /dev | tr '\\n' ' ' > /report; echo >> /report\n\
                  cat /proc/self/comm >> /report\n\
                  echo scratch > /tmp/x && echo tmp-writable >> /report\n\
                  tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | wc -l >> /report";
    let manifest = |network: bool| {
        json!({"stages": [
            {"name": "test.busybox-tree"},
            {"name": "org.osbuild.script", "options": {"script": script, "network": network}}
        ], "assembler": {"name": "org.osbuild.tar", "options": {"filename": "t.tar"}}})
    };
    let before = mounts();
    let m = s.manifest("m.json", &manifest(false));
    s.build(&m, Some(&s.path("out"))).ok();
    assert_eq!(before, mounts());
    untar(&s.path("out/t.tar"), &s.path("x"));
    let report = std::fs::read_to_string(s.path("x/report")).unwrap();
    let lines: Vec<&str> = report.lines().collect();
    assert!(
        lines[0].contains("null") && lines[0].contains("urandom") && lines[0].contains("pts"),
        "{report}"
    );
    assert_eq!(lines[1], "cat");
    assert_eq!(lines[2], "tmp-writable");
    assert_eq!(lines[3], "1", "only loopback without network");
    // The mounts were not stored: the tree's /proc, /dev and /tmp are empty directories.
    for dir in ["proc", "dev", "tmp"] {
        assert_eq!(
            std::fs::read_dir(s.path("x").join(dir)).unwrap().count(),
            0,
            "/{dir} was stored"
        );
    }
    let with_network = Scratch::new("sbx-chroot-net");
    with_network.stage(
        "stage",
        "test.busybox-tree",
        &std::fs::read_to_string(s.libdir().join("stages/test.busybox-tree")).unwrap(),
        None,
    );
    let m = with_network.manifest("m.json", &manifest(true));
    with_network.build(&m, Some(&with_network.path("out"))).ok();
    untar(&with_network.path("out/t.tar"), &with_network.path("x"));
    let report = std::fs::read_to_string(with_network.path("x/report")).unwrap();
    let host_ifaces = std::fs::read_to_string("/proc/net/dev")
        .unwrap()
        .lines()
        .skip(2)
        .count();
    assert_eq!(report.lines().nth(3).unwrap(), host_ifaces.to_string(), "{report}");
}

/// A build root rarely has a usable resolv.conf (debootstrap's trees have
/// none; systemd-resolved's points into the sandbox's empty /run): a stage
/// with network resolves with the host's, and one without sees the build
/// root's own, which stays as it was.
#[test]
fn a_stage_with_network_in_a_build_root_resolves_with_the_hosts_resolver() {
    let s = Scratch::new("sbx-resolver");
    s.stage(
        "stage",
        "test.resolved-root",
        "#!/bin/sh\nset -e\nt=/run/osbuild/tree\nmkdir -p $t/bin $t/etc\ncp /bin/busybox $t/bin/busybox\n\
         for c in sh cat; do ln -s busybox $t/bin/$c; done\n\
         ln -s ../run/systemd/resolve/stub-resolv.conf $t/etc/resolv.conf\n",
        None,
    );
    let probe = |name: &str| {
        format!("#!/bin/sh\ncat /etc/resolv.conf > /run/osbuild/tree/{name} 2>/dev/null || echo none > /run/osbuild/tree/{name}\n")
    };
    s.stage(
        "stage",
        "test.online",
        &probe("online"),
        Some(&json!({"network": true})),
    );
    s.stage("stage", "test.offline", &probe("offline"), None);
    let m = s.manifest(
        "m.json",
        &json!({
            "name": "resolved",
            "build": {"stages": [{"name": "test.resolved-root"}]},
            "stages": [{"name": "test.online"}, {"name": "test.offline"}],
            "assembler": {"name": "org.osbuild.noop"}
        }),
    );
    let before = mounts();
    s.build(&m, None).ok();
    assert_eq!(before, mounts(), "the build left mounts behind");
    // Busybox has no GNU tar: pack the named tree with the host as build root.
    let pack = s.manifest(
        "pack.json",
        &json!({"base": "resolved", "assembler": {"name": "org.osbuild.tar", "options": {"filename": "t.tar"}}}),
    );
    s.build(&pack, Some(&s.path("out"))).ok();
    untar(&s.path("out/t.tar"), &s.path("x"));
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap();
    assert_eq!(std::fs::read_to_string(s.path("x/online")).unwrap(), host);
    assert_eq!(std::fs::read_to_string(s.path("x/offline")).unwrap(), "none\n");
}
