//! `osbuild store ls|du|gc`, `osbuild stages` and `osbuild inspect` output.

use serde_json::{json, Value};

use crate::support::Scratch;

fn stdout(cmd: &mut std::process::Command) -> String {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn gc_keeps_named_trees_and_their_layers() {
    let s = Scratch::new("store-gc");
    let named = s.manifest(
        "named.json",
        &json!({"name": "keep-me", "stages": [{"name": "org.osbuild.noop", "options": {"a": 1}}, {"name": "org.osbuild.mkdir", "options": {"paths": [{"path": "/kept"}]}}]}),
    );
    let other = s.manifest(
        "other.json",
        &json!({"stages": [{"name": "org.osbuild.mkdir", "options": {"paths": [{"path": "/gone"}]}}]}),
    );
    s.build(&named, None).ok();
    s.build(&other, None).ok();
    assert_eq!(s.objects().len(), 3);
    // Recently used: a plain gc keeps everything.
    let out = stdout(s.osbuild().args(["store", "gc", "--json"]));
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["removed"], 0);
    let out = stdout(s.osbuild().args(["store", "gc", "--all", "--json"]));
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["removed"], 1);
    assert_eq!(s.objects().len(), 2);
    let rebuilt = s.build(&named, None).ok();
    assert_eq!(rebuilt.cached(), 2);
    let ls = stdout(s.osbuild().args(["store", "ls"]));
    assert!(ls.contains("name: keep-me"), "{ls}");
    let du = stdout(s.osbuild().args(["store", "du"]));
    assert!(du.contains("total in 2 objects"), "{du}");
}

#[test]
fn gc_prunes_package_cache_files_unused_for_keep_days() {
    let s = Scratch::new("store-gc-cache");
    let manifest = s.manifest("m.json", &json!({"stages": [{"name": "org.osbuild.noop"}]}));
    s.build(&manifest, None).ok();
    let debs = s.store().join("cache/deb/debs");
    std::fs::create_dir_all(&debs).unwrap();
    let (old, fresh) = (debs.join("old.deb"), debs.join("fresh.deb"));
    std::fs::write(&old, vec![1u8; 8192]).unwrap();
    std::fs::write(&fresh, vec![2u8; 8192]).unwrap();
    let month_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(30 * 24 * 3600);
    let times = std::fs::FileTimes::new()
        .set_accessed(month_ago)
        .set_modified(month_ago);
    std::fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_times(times)
        .unwrap();

    let du: Value = serde_json::from_str(&stdout(s.osbuild().args(["store", "du", "--json"]))).unwrap();
    assert!(du["cache_bytes"].as_u64().unwrap() >= 16384, "{du}");
    let gc: Value = serde_json::from_str(&stdout(s.osbuild().args(["store", "gc", "--json"]))).unwrap();
    assert_eq!(gc["cache_files_removed"], 1, "{gc}");
    assert!(!old.exists() && fresh.exists());
    assert_eq!(s.objects().len(), 1, "a recent object stays");
    let gc: Value = serde_json::from_str(&stdout(s.osbuild().args(["store", "gc", "--all", "--json"]))).unwrap();
    assert_eq!(gc["cache_files_removed"], 1, "{gc}");
    assert!(!fresh.exists());
}

#[test]
fn stages_lists_builtins_and_libdir_entries_and_documents_options() {
    let s = Scratch::new("store-stages");
    s.stage("stage", "test.custom", "#!/bin/sh\n", Some(&json!({"summary": "A custom stage", "schema": {"properties": {"size": {"type": "integer", "description": "How big."}}}})));
    let list = stdout(s.osbuild().arg("stages"));
    for name in [
        "org.osbuild.noop",
        "org.osbuild.mkdir",
        "org.osbuild.files",
        "org.osbuild.hostname",
        "org.osbuild.tar",
        "test.custom",
    ] {
        assert!(list.contains(name), "{name} missing from:\n{list}");
    }
    assert!(list.contains("A custom stage [libdir]"));
    let mkdir = stdout(s.osbuild().args(["stages", "org.osbuild.mkdir"]));
    assert!(mkdir.contains("paths: array of object (required)"), "{mkdir}");
    assert!(
        mkdir.contains("paths[].mode: integer or string (default: \"0755\")"),
        "{mkdir}"
    );
    assert!(mkdir.contains("paths[].exist_ok: boolean (default: false)"), "{mkdir}");
    assert!(mkdir.contains("Create missing parent directories too."), "{mkdir}");
    let tar = stdout(s.osbuild().args(["stages", "org.osbuild.tar"]));
    assert!(
        tar.contains("compression: one of \"none\", \"gzip\", \"xz\", \"zstd\""),
        "{tar}"
    );
    let custom = stdout(s.osbuild().args(["stages", "test.custom"]));
    assert!(
        custom.contains("size: integer") && custom.contains("How big."),
        "{custom}"
    );
    let unknown = s.osbuild().args(["stages", "org.osbuild.mkdri"]).output().unwrap();
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("did you mean `org.osbuild.mkdir`?"));
}

#[test]
fn inspect_builds_nothing_and_the_legacy_command_line_builds() {
    let s = Scratch::new("store-inspect");
    let m = s.manifest(
        "m.json",
        &json!({"stages": [{"name": "org.osbuild.hostname", "options": {"hostname": "h"}}], "assembler": {"name": "org.osbuild.tar", "options": {"filename": "t.tar"}}}),
    );
    let text = stdout(s.osbuild().arg("inspect").arg(&m));
    assert!(text.contains("org.osbuild.hostname") && text.contains("  -"), "{text}");
    assert!(!s.store().exists(), "inspect created no store");
    // The seed's command line: osbuild --store DIR --libdir DIR -o DIR PIPELINE
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_osbuild"))
        .arg("--store")
        .arg(s.store())
        .arg("-l")
        .arg(s.libdir())
        .arg("-o")
        .arg(s.path("out"))
        .arg(&m)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(s.path("out/t.tar").is_file());
    let plan: Value = serde_json::from_str(&stdout(s.osbuild().args(["inspect", "--json"]).arg(&m))).unwrap();
    assert_eq!(plan["pipelines"][0]["stages"][0]["stored"], true);
    // The image went to `out`: the store keeps the tree, not a second copy.
    assert_eq!(plan["pipelines"][0]["assembler"]["stored"], false);
}

#[test]
fn the_seeds_own_manifest_passes_inspect() {
    let s = Scratch::new("store-seed");
    let seed = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/seed.json");
    let plan: Value = serde_json::from_str(&stdout(s.osbuild().args(["inspect", "--json"]).arg(&seed))).unwrap();
    let names: Vec<&str> = plan["pipelines"][0]["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|st| st["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["org.osbuild.dnf", "org.osbuild.systemd", "org.osbuild.grub2"]);
    assert_eq!(plan["pipelines"][0]["assembler"]["name"], "io.weldr.qcow2");
}

#[test]
fn a_failed_stage_shows_its_log_path_in_one_piece() {
    let s = Scratch::new("a-failed-stage-whose-scratch-directory-has-a-long-name");
    s.stage("stage", "test.fail", "#!/bin/sh\necho oops\nexit 1\n", None);
    let m = s.manifest("m.json", &json!({"stages": [{"name": "test.fail"}]}));
    let out = s.osbuild().env("COLUMNS", "60").arg("build").arg(&m).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let log = std::fs::read_dir(s.store().join("logs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert!(log.to_str().unwrap().len() > 60);
    assert!(stderr.contains(log.to_str().unwrap()), "the path is cut:\n{stderr}");
}

/// A long step's `progress: ` lines are shown while it runs, though its log
/// is not, and are events of their own for machines.
#[test]
fn progress_lines_of_a_running_stage_are_shown() {
    let s = Scratch::new("progress");
    s.stage(
        "stage",
        "test.slow",
        "#!/bin/sh\necho chatter\necho 'progress: squashing: 1.0 GiB of 2.0 GiB, 50%, 10s'\necho 'not progress: x'\n",
        None,
    );
    let m = s.manifest("m.json", &json!({"stages": [{"name": "test.slow"}]}));
    let out = s.osbuild().arg("build").arg(&m).output().unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let shown: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("squashing") || l.contains("chatter"))
        .collect();
    assert_eq!(shown, ["       squashing: 1.0 GiB of 2.0 GiB, 50%, 10s"], "{stderr}");
    let build = s.build(&m, None).ok();
    let events: Vec<&serde_json::Value> = build.events.iter().filter(|e| e["type"] == "progress").collect();
    assert_eq!(events.len(), 0, "a cached stage does not run: {events:?}");
    let s2 = Scratch::new("progress-json");
    s2.stage(
        "stage",
        "test.slow",
        &std::fs::read_to_string(s.libdir().join("stages/test.slow")).unwrap(),
        None,
    );
    let m2 = s2.manifest("m.json", &json!({"stages": [{"name": "test.slow"}]}));
    let build = s2.build(&m2, None).ok();
    let texts: Vec<&str> = build
        .events
        .iter()
        .filter(|e| e["type"] == "progress")
        .map(|e| e["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["squashing: 1.0 GiB of 2.0 GiB, 50%, 10s"]);
}
