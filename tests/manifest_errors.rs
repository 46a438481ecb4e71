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

/// osbuild's stages guard paths with this pattern (it needs lookaheads).
const OSBUILD_PATH: &str = "^\\/(?!\\.\\.)((?!\\/\\.\\.\\/).)+$";

fn paths_stage(s: &Scratch, path_schema: serde_json::Value) {
    let meta = json!({"summary": "test", "schema": {
        "type": "object", "additionalProperties": false, "required": ["paths"],
        "properties": {"paths": {"type": "array", "items": {
            "type": "object", "additionalProperties": false, "required": ["path"],
            "properties": {"path": path_schema, "uuid": {"type": "string", "format": "uuid"}}
        }}}
    }});
    s.stage("stage", "test.paths", "#!/bin/sh\nexit 0\n", Some(&meta));
}

#[test]
fn libdir_schema_patterns_and_formats_are_checked_all_at_once() {
    let s = Scratch::new("err-pattern");
    paths_stage(&s, json!({"type": "string", "pattern": OSBUILD_PATH}));
    let text = r#"{
  "stages": [
    {"name": "test.paths", "options": {"paths": [
      {"path": "/etc/ok"},
      {"path": "../../etc/shadow"},
      {"path": "/srv", "uuid": "not-a-uuid"}
    ], "colour": 1}}
  ]
}"#;
    let path = s.write("m.json", text);
    let out = s.osbuild().arg("inspect").arg(&path).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let flat = unwrapped(&stderr);
    for expected in [
        "(3 errors)",
        "invalid options for test.paths: must match the pattern",
        "m.json:5:16",
        "invalid options for test.paths: must be a valid UUID",
        "m.json:6:32",
        "invalid options for test.paths: unknown option \"colour\"",
        "m.json:7:8",
    ] {
        assert!(flat.contains(expected), "expected {expected:?} in:\n{stderr}");
    }
    // The diagnostic underlines the offending value, not the whole stage.
    let at = stderr.find("m.json:5:16").unwrap();
    let snippet = &stderr[at..];
    let line = snippet.lines().find(|l| l.contains("../../etc/shadow")).unwrap();
    let marks = snippet.lines().find(|l| l.contains('─')).unwrap();
    let underlined: String = line
        .chars()
        .zip(marks.chars())
        .filter(|(_, m)| *m == '─' || *m == '┬')
        .map(|(c, _)| c)
        .collect();
    assert_eq!(underlined, "\"../../etc/shadow\"", "{line}\n{marks}");
    // Fixed, the same manifest inspects cleanly.
    let fixed = text
        .replace("../../etc/shadow", "/etc/shadow")
        .replace("not-a-uuid", "3f1c0c4e-6e84-4b4e-9b44-1d5d1f8b8a4e")
        .replace(", \"colour\": 1", "");
    let path = s.write("fixed.json", &fixed);
    let out = s.osbuild().arg("inspect").arg(&path).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_broken_libdir_schema_is_reported_when_stages_load() {
    let s = Scratch::new("err-bad-schema");
    paths_stage(&s, json!({"type": "string", "pattern": "(unclosed"}));
    let path = s.manifest("m.json", &json!({"stages": [{"name": "org.osbuild.noop"}]}));
    let out = s.osbuild().arg("inspect").arg(&path).output().unwrap();
    let stderr = unwrapped(&String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for expected in [
        "test.paths.meta.json",
        "invalid schema: #/properties/paths/items/properties/path/pattern: \"(unclosed\" is not a regular expression",
    ] {
        assert!(stderr.contains(expected), "expected {expected:?} in:\n{stderr}");
    }
}
