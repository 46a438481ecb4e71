//! Invalid input exits with status 2 before anything runs, with a diagnostic
//! that shows the offending line.

use serde_json::json;

use crate::support::{unwrapped, Scratch};

/// Runs `osbuild build` on `text`; returns (exit code, stderr).
fn build_text(s: &Scratch, text: &str) -> (i32, String) {
    let path = s.write("m.json", text);
    let out = s
        .osbuild()
        .arg("build")
        .arg(&path)
        .arg("-o")
        .arg(s.path("out"))
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        unwrapped(&String::from_utf8_lossy(&out.stderr)),
    )
}

#[track_caller]
fn assert_invalid(s: &Scratch, text: &str, expected: &[&str]) {
    let (code, stderr) = build_text(s, text);
    assert_eq!(code, 2, "{stderr}");
    for e in expected {
        assert!(stderr.contains(e), "expected {e:?} in:\n{stderr}");
    }
    assert!(!s.path("out").exists(), "no output for invalid input");
    assert!(!s.store().join("objects").exists(), "nothing ran, not even the store");
}

#[test]
fn malformed_json_shows_the_line() {
    let s = Scratch::new("err-json");
    assert_invalid(
        &s,
        "{\n  \"stages\": [\n    {\"name\": \"org.osbuild.noop\",}\n  ]\n}\n",
        &["not valid JSON", "{\"name\": \"org.osbuild.noop\",}", "m.json:3"],
    );
}

#[test]
fn unknown_key_suggests_the_right_one() {
    let s = Scratch::new("err-key");
    assert_invalid(
        &s,
        "{\n  \"stages\": [],\n  \"assembelr\": {\"name\": \"org.osbuild.noop\"}\n}\n",
        &[
            "unknown key `assembelr`",
            "did you mean `assembler`?",
            "\"assembelr\": {",
        ],
    );
}

#[test]
fn wrong_type_is_labelled() {
    let s = Scratch::new("err-type");
    assert_invalid(
        &s,
        "{\"stages\": {\"name\": \"x\"}}",
        &["`stages` must be an array of stages, not an object"],
    );
}

#[test]
fn unknown_stage_name_suggests_a_close_one() {
    let s = Scratch::new("err-stage");
    let text =
        "{\n  \"stages\": [\n    {\"name\": \"org.osbuild.hostnme\", \"options\": {\"hostname\": \"x\"}}\n  ]\n}\n";
    assert_invalid(
        &s,
        text,
        &[
            "unknown stage `org.osbuild.hostnme`",
            "did you mean `org.osbuild.hostname`?",
            "m.json:3",
        ],
    );
}

#[test]
fn an_assembler_is_not_a_stage() {
    let s = Scratch::new("err-kind");
    assert_invalid(
        &s,
        "{\"stages\": [{\"name\": \"org.osbuild.tar\", \"options\": {\"filename\": \"a.tar\"}}]}",
        &["unknown stage `org.osbuild.tar`", "is an assembler, not a stage"],
    );
}

#[test]
fn options_that_do_not_fit_point_at_the_option() {
    let s = Scratch::new("err-options");
    let text = r#"{
  "stages": [
    {"name": "org.osbuild.mkdir", "options": {"paths": [{"path": "/a", "parents": "yes"}]}},
    {"name": "org.osbuild.hostname", "options": {"hostname": "h", "domain": "x"}},
    {"name": "org.osbuild.hostname", "options": {}}
  ],
  "assembler": {"name": "org.osbuild.tar", "options": {"filename": "x.tar", "compression": "rar"}}
}"#;
    let (code, stderr) = build_text(&s, text);
    assert_eq!(code, 2, "{stderr}");
    for expected in [
        "4 errors",
        "invalid options for org.osbuild.mkdir",
        "invalid type: string \"yes\", expected a boolean",
        "unknown field `domain`",
        "missing field `hostname`",
        "unknown variant `rar`",
        "osbuild stages org.osbuild.hostname",
        "m.json:3",
        "m.json:4",
    ] {
        assert!(stderr.contains(expected), "expected {expected:?} in:\n{stderr}");
    }
}

#[test]
fn libdir_stage_schema_is_checked_before_the_build() {
    let s = Scratch::new("err-schema");
    let meta = json!({"summary": "test", "schema": {
        "type": "object", "additionalProperties": false, "required": ["size"],
        "properties": {"size": {"type": "integer", "minimum": 1}}
    }});
    s.stage("stage", "test.sized", "#!/bin/sh\nexit 0\n", Some(&meta));
    let text = "{\"stages\": [{\"name\": \"test.sized\", \"options\": {\"size\": 0, \"colour\": 1}}]}";
    let (code, stderr) = build_text(&s, text);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("colour"), "{stderr}");
    assert!(stderr.contains("size"), "{stderr}");
}

#[test]
fn a_non_empty_output_directory_is_refused_and_left_alone() {
    let s = Scratch::new("err-output");
    s.write("out/keep", "mine");
    let (code, stderr) = build_text(&s, &json!({"stages": [{"name": "org.osbuild.noop"}]}).to_string());
    assert_eq!(code, 2);
    assert!(stderr.contains("is not empty"), "{stderr}");
    assert_eq!(std::fs::read_to_string(s.path("out/keep")).unwrap(), "mine");
}

#[test]
fn v1_manifests_parse_and_unknown_base_names_are_reported() {
    let s = Scratch::new("err-v1");
    let v1 = json!({"pipeline": {"stages": [{"name": "org.osbuild.noop", "options": {"v": 1}}],
                                  "assembler": {"name": "org.osbuild.noop"}}, "sources": {}});
    let path = s.manifest("v1.json", &v1);
    let out = s.osbuild().arg("inspect").arg("--json").arg(&path).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (code, stderr) = build_text(&s, "{\"base\": \"no-such-tree\", \"stages\": []}");
    assert_eq!(code, 2);
    assert!(
        stderr.contains("base \"no-such-tree\" is neither an id nor a name"),
        "{stderr}"
    );
}

/// A mistake late in a very long line (a minified manifest) is shown in a
/// window cut around it, at the right line and column; miette used to panic.
#[test]
fn a_mistake_late_in_a_70000_character_line_is_shown_cut_around_it() {
    let s = Scratch::new("err-long-line");
    let x = "x".repeat(70_000);
    let line =
        format!(r#"  "stages": [{{"name": "org.osbuild.hostname", "options": {{"hostname": "{x}", "bogus": 1}}}}]"#);
    let column = line.find("\"bogus\"").unwrap() + 1;
    let text = format!("{{\n{line}\n}}\n");
    for command in ["build", "inspect"] {
        let path = s.write("m.json", &text);
        let out = s.osbuild().arg(command).arg(&path).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{command}: {stderr}");
        let widest = stderr.lines().map(|l| l.chars().count()).max().unwrap_or(0);
        assert!(widest < 200, "{command}: a line of {widest} characters");
        let flat = unwrapped(&stderr);
        for expected in [
            "unknown field `bogus`".to_string(),
            format!("m.json:2:{column}"),
            "2 │ …xxx".to_string(),
            "xxx\", \"bogus\": 1}}]".to_string(),
            "unknown option".to_string(),
        ] {
            assert!(
                flat.contains(&expected),
                "{command}: expected {expected:?} in:\n{stderr}"
            );
        }
    }
    assert!(!s.store().join("objects").exists(), "nothing ran");
}
