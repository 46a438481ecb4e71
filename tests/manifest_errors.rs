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
fn an_assembly_base_past_the_stages_shows_its_line() {
    let s = Scratch::new("err-assembly-base");
    assert_invalid(
        &s,
        "{\n  \"stages\": [{\"name\": \"org.osbuild.noop\"}],\n  \"assembler\": {\"name\": \"org.osbuild.noop\"},\n  \"assembly_base\": 2\n}\n",
        &[
            "`assembly_base` is 2 stages, but the pipeline has 1",
            "m.json:4",
            "\"assembly_base\": 2",
            "1 to 1",
        ],
    );
    assert_invalid(
        &s,
        "{\n  \"stages\": [{\"name\": \"org.osbuild.noop\"}],\n  \"assembly_base\": 1\n}\n",
        &["`assembly_base` is only for a pipeline with an assembler", "m.json:3"],
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

// ---- option values checked before anything runs ------------------------------
//
// Each of these was refused only when its stage ran, after the stages before
// it (minutes of debootstrap, say); now `inspect` refuses it, at the value.

/// `osbuild inspect m.json` in the scratch directory (so the diagnostic names
/// `m.json`): its exit status and what it printed on stderr.
fn inspect_text(s: &Scratch, text: &str) -> (i32, String) {
    s.write("m.json", text);
    let out = s
        .osbuild()
        .current_dir(&s.dir)
        .args(["inspect", "m.json"])
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The diagnostic `inspect` prints for `text`, which must be refused (exit 2).
#[track_caller]
fn refused(name: &str, text: &str) -> String {
    let s = Scratch::new(name);
    let (code, stderr) = inspect_text(&s, text);
    assert_eq!(code, 2, "{stderr}");
    stderr
}

#[test]
fn diagnostic_hostname_that_is_no_host_name() {
    insta::assert_snapshot!(refused(
        "err-hostname",
        r#"{
  "stages": [
    {"name": "org.osbuild.hostname", "options": {"hostname": "-bad host"}}
  ]
}
"#
    ));
}

#[test]
fn diagnostic_qemu_filename_outside_the_output() {
    insta::assert_snapshot!(refused(
        "err-qemu-filename",
        r#"{
  "stages": [],
  "assembler": {"name": "org.osbuild.qemu", "options": {
    "filename": "../x.qcow2",
    "root_fs_uuid": "6e4ff95f-f662-45ee-a82a-bdf44a2d0b75"
  }}
}
"#
    ));
}

#[test]
fn diagnostic_qemu_size_not_whole_sectors() {
    insta::assert_snapshot!(refused(
        "err-qemu-size",
        r#"{
  "stages": [],
  "assembler": {"name": "org.osbuild.qemu", "options": {
    "filename": "x.qcow2",
    "size": 1000,
    "root_fs_uuid": "6e4ff95f-f662-45ee-a82a-bdf44a2d0b75"
  }}
}
"#
    ));
}

#[test]
fn diagnostic_qemu_root_fs_uuid_not_a_uuid() {
    insta::assert_snapshot!(refused(
        "err-qemu-uuid",
        r#"{
  "stages": [],
  "assembler": {"name": "org.osbuild.qemu", "options": {
    "filename": "x.qcow2",
    "root_fs_uuid": "not-a-uuid"
  }}
}
"#
    ));
}

#[test]
fn diagnostic_qemu_root_fs_uuid_and_partitions() {
    insta::assert_snapshot!(refused(
        "err-qemu-both",
        r#"{
  "stages": [],
  "assembler": {"name": "org.osbuild.qemu", "options": {
    "filename": "x.qcow2",
    "root_fs_uuid": "6e4ff95f-f662-45ee-a82a-bdf44a2d0b75",
    "pttype": "gpt",
    "partitions": [
      {"filesystem": {"type": "ext4", "uuid": "6e4ff95f-f662-45ee-a82a-bdf44a2d0b75", "mountpoint": "/"}}
    ]
  }}
}
"#
    ));
}

#[test]
fn diagnostic_tar_filename_in_a_subdirectory() {
    insta::assert_snapshot!(refused(
        "err-tar-filename",
        r#"{
  "stages": [],
  "assembler": {"name": "org.osbuild.tar", "options": {"filename": "sub/dir.tar"}}
}
"#
    ));
}

#[test]
fn diagnostic_user_with_a_relative_home() {
    insta::assert_snapshot!(refused(
        "err-users-home",
        r#"{
  "stages": [
    {"name": "org.osbuild.users", "options": {"users": {
      "alice": {"home": "home/alice", "shell": "/bin/bash"}
    }}}
  ]
}
"#
    ));
}

#[test]
fn diagnostic_grub2_what_the_debian_layout_cannot_do() {
    insta::assert_snapshot!(refused(
        "err-grub2",
        r#"{
  "stages": [
    {"name": "org.osbuild.grub2", "options": {
      "root_fs_uuid": "6e4ff95f-f662-45ee-a82a-bdf44a2d0b75",
      "greenboot": true,
      "legacy": "i386/pc",
      "uefi": {"vendor": "EFI/debian"},
      "saved_entry": "one\ntwo"
    }}
  ]
}
"#
    ));
}

#[test]
fn diagnostic_apt_options() {
    insta::assert_snapshot!(refused(
        "err-apt",
        r#"{
  "stages": [
    {"name": "org.osbuild.apt", "options": {
      "packages": ["hello"],
      "remove": ["nano=7.2-1"],
      "repositories": [
        {"name": "extra", "uris": ["http://deb.example/debian"], "suites": ["./"], "components": ["main"]},
        {"name": "extra", "uris": ["http://deb.example/debian"], "suites": ["bookworm"], "components": ["main"]}
      ]
    }}
  ]
}
"#
    ));
}

#[test]
fn a_pipeline_name_the_store_cannot_keep_is_refused_before_the_build() {
    // Percent-encoded, 300 × "é" is 1800 bytes of a file name: the stage
    // used to run, and naming its tree failed ("File name too long").
    let s = Scratch::new("err-name");
    let text = format!(
        "{{\n  \"name\": \"{}\",\n  \"stages\": [{{\"name\": \"org.osbuild.noop\"}}]\n}}\n",
        "é".repeat(300)
    );
    assert_invalid(
        &s,
        &text,
        &[
            "the pipeline name cannot name a tree in the store",
            "takes 1800 bytes where a file name has at most 255",
            "m.json:2:11",
            "not a store name",
        ],
    );
    // An empty name fails the same way, as late; the longest that fits works.
    assert_invalid(
        &s,
        "{\"name\": \"\", \"stages\": [{\"name\": \"org.osbuild.noop\"}]}",
        &["cannot name a tree in the store: it is empty"],
    );
    let longest = format!("{}abc", "é".repeat(42));
    let m = s.manifest(
        "ok.json",
        &json!({"name": longest, "stages": [{"name": "org.osbuild.noop"}]}),
    );
    s.build(&m, None).ok();
    let out = s.osbuild().args(["store", "ls", "--json"]).output().unwrap();
    let ls: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ls["names"][0]["name"], json!(longest));
}

#[test]
fn diagnostic_every_mistake_at_once() {
    insta::assert_snapshot!(refused(
        "err-all",
        r#"{
  "stages": [
    {"name": "org.osbuild.hostname", "options": {"hostname": "-bad host"}},
    {"name": "org.osbuild.users", "options": {"users": {"alice": {"home": "home/alice"}}}},
    {"name": "org.osbuild.locale", "options": {"lang": "en_US.UTF-8"}},
    {"name": "org.osbuild.grub2", "options": {"kernel_opts": "quiet"}},
    {"name": "org.osbuild.fstab", "options": {"filesystems": [
      {"uuid": "6e4ff95f-f662-45ee-a82a-bdf44a2d0b75", "label": "root", "path": "/"},
      {"path": "/boot", "vfs_type": ""}
    ]}}
  ],
  "assembler": {"name": "org.osbuild.qemu", "options": {
    "filename": "x.qcow2",
    "pttype": "mbr",
    "partitions": [
      {"uuid": "6264d520-3fb9-423f-8ab8-7a0a8e3d3562",
       "filesystem": {"type": "xfs", "uuid": "6e4ff95f-f662-45ee-a82a-bdf44a2d0b75", "mountpoint": "/"}},
      {"filesystem": {"type": "vfat", "uuid": "not-fat", "mountpoint": "/boot"}}
    ]
  }}
}
"#
    ));
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
        "invalid options for test.paths at `paths[1].path`: must match the pattern",
        "m.json:5:16",
        "invalid options for test.paths at `paths[2].uuid`: must be a valid UUID",
        "m.json:6:32",
        "unknown option \"colour\"",
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

/// Option sets from osbuild's own stage tests pass the pre-flight check, as
/// osbuild takes them.
#[test]
fn osbuilds_own_option_sets_are_accepted() {
    let s = Scratch::new("osbuild-options");
    let manifest = s.manifest(
        "m.json",
        &json!({"stages": [
            {"name": "org.osbuild.mkdir", "options": {"paths": [{"path": "srv/www", "parents": true}]}},
            {"name": "org.osbuild.users", "options": {"users": {"alice": {"uid": 1000.0, "force_password_reset": true}}}},
            {"name": "org.osbuild.kernel-cmdline", "options": {"kernel_opts": "ro", "kernel_cmdline_size": 256}},
            {"name": "org.osbuild.systemd", "options": {"enabled_services": ["-.mount"]}},
        ]}),
    );
    let plan = s.inspect(&manifest);
    assert_eq!(
        plan["pipelines"][0]["stages"].as_array().map(Vec::len),
        Some(4),
        "{plan}"
    );
    // A fraction never; and where osbuild's schema says `integer` (not
    // `number`), not even a whole float, as osbuild's draft-04 validator.
    for (options, shown) in [
        (r#"{"users": {"a": {"uid": 1000.5}}}"#, "1000.5"),
        (r#"{"users": {"a": {"expiredate": 20000.0}}}"#, "floating point"),
    ] {
        let text = format!(r#"{{"stages": [{{"name": "org.osbuild.users", "options": {options}}}]}}"#);
        let (code, out) = build_text(&s, &text);
        assert_eq!(code, 2, "{out}");
        assert!(out.contains(shown), "{out}");
    }
    let (code, out) = build_text(
        &s,
        r#"{"stages": [{"name": "org.osbuild.kernel-cmdline", "options": {"kernel_cmdline_size": 256.0}}]}"#,
    );
    assert_eq!(code, 2, "{out}");
    let numbers = s.manifest(
        "numbers.json",
        &json!({"stages": [
            {"name": "org.osbuild.fstab", "options": {"filesystems": [{"uuid": "6e4ff95f-f662-45ee-a82a-bdf44a2d0b75", "vfs_type": "ext4", "path": "/", "freq": 1.0, "passno": 1.0}]}},
            {"name": "org.osbuild.groups", "options": {"groups": {"ops": {"gid": 2000.0}}}},
            {"name": "org.osbuild.mkdir", "options": {"paths": [{"path": "/srv", "mode": 493.0}]}},
        ]}),
    );
    s.inspect(&numbers);
}

#[test]
fn sources_that_disagree_with_the_pins_are_refused_at_the_item() {
    let s = Scratch::new("err-sources");
    let pin = |name: &str, sha: char| {
        json!({"name": name, "version": "1.0-1", "arch": "amd64", "size": 100,
               "sha256": sha.to_string().repeat(64), "path": format!("pool/main/{name}_1.0-1_amd64.deb")})
    };
    let locked = json!({"arch": "amd64", "repositories": [{
        "suite": "bookworm", "components": ["main"],
        "release": {"path": "dists/bookworm/InRelease", "sha256": "c".repeat(64), "size": 1000, "date": 1_783_764_997},
        "keyring": {"path": "/usr/share/keyrings/debian-archive-keyring.gpg", "sha256": "d".repeat(64)},
        "packages": [pin("less", 'a'), pin("htop", 'b')]
    }]});
    let manifest = json!({
        "source_epoch": 1_783_764_997,
        "stages": [{"name": "org.osbuild.debootstrap", "options": {"suite": "bookworm", "locked": locked}}],
        "sources": {"org.osbuild.deb": {"items": {
            format!("sha256:{}", "a".repeat(64)): {"path": "pool/main/less_1.0-1_amd64.deb", "size": 100},
            format!("sha256:{}", "e".repeat(64)): {"path": "pool/main/other.deb", "size": 5}
        }}}
    });
    assert_invalid(
        &s,
        &serde_json::to_string_pretty(&manifest).unwrap(),
        &[
            "the manifest's sources lack htop 1.0-1",
            "which org.osbuild.debootstrap pins",
            &format!(
                "sha256:{} is in the manifest's sources, but no stage pins it",
                "e".repeat(64)
            ),
        ],
    );
}
