//! `osbuild verify`: two builds in fresh stores under different conditions,
//! the same image bytes or the first stage that made a different tree.
//! (A locked Debian image is verified in locked.rs.)

use serde_json::{json, Value};

use crate::support::Scratch;

/// With `stamp`, a stage that writes the time; and then a `source_epoch`, as
/// a lock gives, so the layers' times are the same and only the stamp differs.
fn image(name: &str, stamp: bool) -> Value {
    let mut stages = vec![json!({"name": "org.osbuild.files", "options": {"files": [
        {"path": "/etc/motd", "content": "Built by osbuild.\n"}
    ]}})];
    if stamp {
        stages.push(json!({"name": "test.stamp"}));
    }
    let mut image = json!({
        "name": name,
        "stages": stages,
        "assembler": {"name": "org.osbuild.tar", "options": {"filename": format!("{name}.tar")}}
    });
    if stamp {
        image["source_epoch"] = json!(1_700_000_000);
    }
    image
}

/// `osbuild verify` with its temporary directory inside the test's scratch.
fn verify(s: &Scratch, args: &[&str], manifest: &std::path::Path) -> (i32, String, String) {
    let tmp = s.path("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let out = s
        .osbuild()
        .env("TMPDIR", &tmp)
        .arg("verify")
        .args(args)
        .arg(manifest)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_same_tree_twice_is_reproducible_and_nothing_is_left_behind() {
    let s = Scratch::new("verify-same");
    let manifest = s.manifest("same.json", &image("same", false));
    let (code, stdout, stderr) = verify(&s, &[], &manifest);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.starts_with("reproducible: same/same.tar sha256:"), "{stdout}");
    assert!(stderr.contains("has no lock"), "{stderr}");
    assert!(
        stderr.contains("umask 077"),
        "the second build varies the umask: {stderr}"
    );
    let left: Vec<_> = std::fs::read_dir(s.path("tmp")).unwrap().collect();
    assert!(left.is_empty(), "both builds are removed: {left:?}");
}

#[test]
fn a_stage_that_writes_the_time_is_found_with_the_file_it_wrote() {
    let s = Scratch::new("verify-stamp");
    s.stage(
        "stage",
        "test.stamp",
        "#!/bin/sh\necho same > /run/osbuild/tree/etc/same\ndate +%s%N > /run/osbuild/tree/etc/stamp\n",
        None,
    );
    let manifest = s.manifest("stamped.json", &image("stamped", true));
    let (code, stdout, stderr) = verify(&s, &[], &manifest);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stdout.contains("not reproducible: stamped/stamped.tar: sha256:"),
        "{stdout}"
    );
    assert!(
        stdout.contains("the first difference: stage 2 of the main pipeline of stamped, test.stamp"),
        "{stdout}"
    );
    assert!(stdout.contains("/etc/stamp: content"), "{stdout}");
    assert!(
        !stdout.contains("/etc/same"),
        "identical files are not listed: {stdout}"
    );

    // The same as JSON, and --keep leaves both builds to look at.
    let (code, stdout, stderr) = verify(&s, &["--keep"], &manifest);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("kept both builds in"), "{stderr}");
    let (code, stdout_json, _) = {
        let tmp = s.path("tmp");
        let out = s
            .osbuild()
            .env("TMPDIR", &tmp)
            .args(["--json", "verify"])
            .arg(&manifest)
            .output()
            .unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            (),
        )
    };
    assert_eq!(code, 1);
    let doc: Value = serde_json::from_str(stdout_json.trim()).unwrap();
    assert_eq!(doc["reproducible"], json!(false));
    let first = &doc["images"][0]["first_difference"];
    assert_eq!(first["stage"], json!("test.stamp"), "{doc}");
    let paths: Vec<&str> = first["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    assert!(paths.contains(&"/etc/stamp"), "{paths:?}");
    assert!(!stdout.is_empty());
}
