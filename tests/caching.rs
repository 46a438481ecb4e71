//! The store: every stage is checkpointed by id, shared prefixes resume,
//! layers keep it small, concurrent builds are safe, names and bases work.

use serde_json::{json, Value};

use crate::support::{listing, untar, Scratch};

fn write_stage(path: &str, content: &str) -> Value {
    json!({"name": "org.osbuild.files", "options": {"files": [{"path": path, "content": content}]}})
}

fn tar() -> Value {
    json!({"name": "org.osbuild.tar", "options": {"filename": "tree.tar"}})
}

#[test]
fn a_rebuild_runs_nothing_and_a_changed_last_stage_runs_alone() {
    let s = Scratch::new("cache-rebuild");
    let mut stages: Vec<Value> = (0..4)
        .map(|i| write_stage(&format!("/f{i}"), &format!("{i}")))
        .collect();
    let m1 = s.manifest("m1.json", &json!({"stages": stages, "assembler": tar()}));
    let first = s.build(&m1, Some(&s.path("out1"))).ok();
    assert_eq!((first.ran(), first.cached()), (5, 0));

    // The image was handed over to out1, not kept (this file system has
    // no reflinks): only the assembler runs again, on the stored tree.
    let again = s.build(&m1, Some(&s.path("out2"))).ok();
    assert_eq!((again.ran(), again.cached()), (1, 4), "{:?}", again.stages());
    assert_eq!(
        std::fs::read(s.path("out1/tree.tar")).unwrap(),
        std::fs::read(s.path("out2/tree.tar")).unwrap()
    );
    // Kept when asked: then a rebuild runs nothing at all.
    let keep = |out: &str| {
        let mut cmd = s.osbuild();
        cmd.args(["--keep-image", "build", "--json"])
            .arg(&m1)
            .arg("-o")
            .arg(s.path(out));
        crate::support::Build::from(cmd.output().unwrap()).ok()
    };
    assert_eq!(keep("out-kept").ran(), 1);
    let kept = keep("out-kept-again");
    assert_eq!((kept.ran(), kept.cached()), (0, 5), "{:?}", kept.stages());
    assert_eq!(
        std::fs::read(s.path("out1/tree.tar")).unwrap(),
        std::fs::read(s.path("out-kept-again/tree.tar")).unwrap()
    );

    stages[3] = write_stage("/f3", "changed");
    let m2 = s.manifest("m2.json", &json!({"stages": stages, "assembler": tar()}));
    let changed = s.build(&m2, Some(&s.path("out3"))).ok();
    let statuses: Vec<String> = changed.stages().into_iter().map(|(_, status)| status).collect();
    assert_eq!(statuses, ["cached", "cached", "cached", "success", "success"]);
    untar(&s.path("out3/tree.tar"), &s.path("x"));
    assert_eq!(std::fs::read_to_string(s.path("x/f3")).unwrap(), "changed");
    assert_eq!(std::fs::read_to_string(s.path("x/f0")).unwrap(), "0");
}

#[test]
fn another_manifest_sharing_a_prefix_starts_after_it() {
    let s = Scratch::new("cache-prefix");
    let shared: Vec<Value> = (0..3).map(|i| write_stage(&format!("/shared{i}"), "s")).collect();
    let a = s.manifest("a.json", &json!({"stages": shared}));
    s.build(&a, None).ok();
    let mut more = shared.clone();
    more.push(write_stage("/mine", "b"));
    let b = s.manifest("b.json", &json!({"stages": more, "assembler": tar()}));
    // inspect agrees with the build, and builds nothing itself.
    assert_eq!(s.stored(&b), [true, true, true, false]);
    let plan = s.inspect(&b);
    assert!(plan["pipelines"][0]["stages"][0]["id"].as_str().unwrap().len() == 64);
    let build = s.build(&b, Some(&s.path("out"))).ok();
    assert_eq!(build.cached(), 3);
    assert_eq!(build.ran(), 2);
    untar(&s.path("out/tree.tar"), &s.path("x"));
    for f in ["shared0", "shared1", "shared2", "mine"] {
        assert!(s.path("x").join(f).exists(), "{f} missing");
    }
}

#[test]
fn layers_store_changes_not_copies() {
    let s = Scratch::new("cache-layers");
    let big = "x".repeat(4 << 20);
    let mut stages = vec![write_stage("/big", &big)];
    for i in 0..6 {
        stages.push(write_stage(&format!("/small{i}"), "tiny"));
    }
    // A stage that deletes: the whiteout must hide the file in later layers.
    stages.push(json!({"name": "test.rm", "options": {"path": "/small0"}}));
    s.stage("stage", "test.rm", "#!/bin/sh\nrm /run/osbuild/tree/small0\n", None);
    let m = s.manifest("m.json", &json!({"stages": stages, "assembler": tar()}));
    s.build(&m, Some(&s.path("out"))).ok();
    let du = s.osbuild().args(["store", "du", "--json"]).output().unwrap();
    let du: Value = serde_json::from_slice(&du.stdout).unwrap();
    let total = du["total_bytes"].as_u64().unwrap();
    // The 4 MiB file is stored once (plus the tarball), not once per stage.
    assert!(
        total < 10 << 20,
        "store holds {total} bytes for a 4 MiB tree over 8 stages"
    );
    untar(&s.path("out/tree.tar"), &s.path("x"));
    assert!(!s.path("x/small0").exists(), "deleted file came back");
    assert!(s.path("x/small5").exists());
}

#[test]
fn two_builds_on_one_store_at_once_both_succeed() {
    let s = Scratch::new("cache-concurrent");
    s.stage(
        "stage",
        "test.slow",
        "#!/bin/sh\nsleep 1\necho done > /run/osbuild/tree/slow\n",
        None,
    );
    let m = s.manifest(
        "m.json",
        &json!({"stages": [{"name": "test.slow"}, write_stage("/after", "a")], "assembler": tar()}),
    );
    let spawn = |out: &str| {
        let mut cmd = s.osbuild();
        cmd.args(["build", "--json"]).arg(&m).arg("-o").arg(s.path(out));
        cmd.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn("outa"), spawn("outb"));
    let a: crate::support::Build = a.wait_with_output().unwrap().into();
    let b: crate::support::Build = b.wait_with_output().unwrap().into();
    let (a, b) = (a.ok(), b.ok());
    // The second waits for the first's lock and then finds each stage
    // stored; each assembles its own image (handed over, not stored).
    assert_eq!(
        a.ran() + b.ran(),
        4,
        "each stage built once: {:?} {:?}",
        a.stages(),
        b.stages()
    );
    assert_eq!(
        std::fs::read(s.path("outa/tree.tar")).unwrap(),
        std::fs::read(s.path("outb/tree.tar")).unwrap()
    );
    assert!(s.leftovers().is_empty());
}

#[test]
fn a_named_tree_is_a_base_for_another_pipeline() {
    let s = Scratch::new("cache-base");
    let base = s.manifest(
        "base.json",
        &json!({"name": "my base", "stages": [write_stage("/from-base", "b")]}),
    );
    s.build(&base, None).ok();
    let ls = s.osbuild().args(["store", "ls"]).output().unwrap();
    assert!(String::from_utf8_lossy(&ls.stdout).contains("name: my base"));
    let child = s.manifest(
        "child.json",
        &json!({"base": "my base", "stages": [write_stage("/from-child", "c")], "assembler": tar()}),
    );
    s.build(&child, Some(&s.path("out"))).ok();
    untar(&s.path("out/tree.tar"), &s.path("x"));
    assert!(s.path("x/from-base").exists() && s.path("x/from-child").exists());
    // The same base given by id names the same stages.
    let inspect = s.osbuild().args(["inspect", "--json"]).arg(&base).output().unwrap();
    let plan: Value = serde_json::from_slice(&inspect.stdout).unwrap();
    let id = plan["pipelines"][0]["tree"].as_str().unwrap();
    let by_id = s.manifest(
        "by-id.json",
        &json!({"base": id, "stages": [write_stage("/from-child", "c")], "assembler": tar()}),
    );
    let again = s.build(&by_id, None).ok();
    // The same stages; only the image, handed over to `out` before, is made again.
    let statuses: Vec<(String, String)> = again.stages();
    assert_eq!(statuses[0], ("org.osbuild.files".to_string(), "cached".to_string()));
    assert_eq!(again.ran(), 1, "{statuses:?}");
}

#[test]
fn a_build_pipeline_becomes_the_read_only_build_root() {
    let s = Scratch::new("cache-buildroot");
    // The build pipeline runs on the host and makes a tiny root with a shell.
    s.stage(
        "stage",
        "test.busybox-root",
        "#!/bin/sh\nset -e\nt=/run/osbuild/tree\nmkdir -p $t/bin $t/etc\ncp /bin/busybox $t/bin/busybox\nfor c in sh cat ls touch; do ln -s busybox $t/bin/$c; done\necho marker > $t/etc/build-root-marker\n",
        None,
    );
    // The main stage runs inside that root: it must see the marker and no host /usr.
    s.stage(
        "stage",
        "test.in-build-root",
        "#!/bin/sh\nset -e\ncat /etc/build-root-marker > /run/osbuild/tree/seen\nif ls /usr/bin >/dev/null 2>&1; then echo host-usr-visible >> /run/osbuild/tree/seen; fi\nif touch /etc/x 2>/dev/null; then echo root-writable >> /run/osbuild/tree/seen; fi\n",
        None,
    );
    let m = s.manifest(
        "m.json",
        &json!({
            "name": "built-in-busybox",
            "build": {"stages": [{"name": "test.busybox-root"}]},
            "stages": [{"name": "test.in-build-root"}],
            "assembler": {"name": "org.osbuild.noop"}
        }),
    );
    let build = s.build(&m, None).ok();
    let roles: Vec<&str> = build
        .events
        .iter()
        .filter(|e| e["type"] == "pipeline-begin")
        .map(|e| e["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["build", "main"]);
    // Busybox has no GNU tar: pack the named tree with the host as build root.
    let pack = s.manifest("pack.json", &json!({"base": "built-in-busybox", "assembler": tar()}));
    s.build(&pack, Some(&s.path("out"))).ok();
    untar(&s.path("out/tree.tar"), &s.path("x"));
    assert_eq!(std::fs::read_to_string(s.path("x/seen")).unwrap(), "marker\n");
    assert_eq!(
        listing(&s.path("x")).lines().count(),
        2,
        "the tree holds only what the stage wrote"
    );
}
