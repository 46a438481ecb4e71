//! The store keeps what it holds to its owner, survives objects that were
//! damaged or tampered with, and delivers only what can be delivered.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use crate::support::{unwrapped, Build, Scratch};

/// Runs the shell command `script` as the unprivileged user nobody; its exit
/// status and output. (The shell runs first: setpriv itself may still reach
/// what nobody cannot.)
fn as_nobody(script: &str) -> (bool, String) {
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--",
            "/bin/sh",
            "-c",
            script,
        ])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    )
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().mode() & 0o7777
}

/// The object a stage `name` made, per the build's events.
fn object_of(build: &Build, name: &str) -> String {
    build
        .events
        .iter()
        .find(|e| e["type"] == "stage-end" && e["name"] == name)
        .and_then(|e| e["id"].as_str())
        .unwrap_or_else(|| panic!("no stage {name} in {}", build.stdout))
        .to_string()
}

fn object_dir(s: &Scratch, id: &str) -> PathBuf {
    s.store().join("objects").join(id)
}

/// A stage that leaves a setuid-root shell in its tree, and the tar assembler.
fn setuid_manifest(s: &Scratch) -> PathBuf {
    s.stage(
        "stage",
        "test.setuid",
        "#!/bin/sh\nset -e\ncp /bin/dash /run/osbuild/tree/sh\nchmod 4755 /run/osbuild/tree/sh\n",
        None,
    );
    s.manifest(
        "m.json",
        &json!({"stages": [{"name": "test.setuid"}], "assembler": {"name": "org.osbuild.tar", "options": {"filename": "t.tar"}}}),
    )
}

#[test]
fn a_setuid_file_in_a_stored_tree_is_out_of_other_users_reach() {
    let s = Scratch::new("store-setuid");
    let build = s.build(&setuid_manifest(&s), None).ok();
    let sh = object_dir(&s, &object_of(&build, "test.setuid")).join("tree/sh");
    assert_eq!(mode(&sh), 0o4755, "images keep their setuid files");
    assert_eq!(mode(&s.store()), 0o700);
    // Nobody reaches the scratch directory, but not the store in it.
    assert!(as_nobody(&format!("test -x {}", s.dir.display())).0);
    assert!(!as_nobody(&format!("test -x {}", s.store().display())).0);
    let (ran, euid) = as_nobody(&format!("{} -p -c 'id -u'", sh.display()));
    assert!(!ran && euid.is_empty(), "nobody ran the setuid shell: euid {euid}");
    for dir in ["objects", "tmp", "cache", "refs", "locks", "logs"] {
        if let Ok(meta) = std::fs::metadata(s.store().join(dir)) {
            assert_eq!(meta.mode() & 0o077, 0, "{dir} is open to others");
        }
    }
}

#[test]
fn a_store_others_can_enter_is_made_private_with_a_warning_and_one_owned_by_another_is_refused() {
    let s = Scratch::new("store-private");
    let m = setuid_manifest(&s);
    s.build(&m, None).ok();
    std::fs::set_permissions(s.store(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = s.osbuild().args(["store", "ls"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("was open to other users (mode 0755)"), "{stderr}");
    assert!(stderr.contains("now private"), "{stderr}");
    assert_eq!(mode(&s.store()), 0o700);

    std::os::unix::fs::chown(s.store(), Some(65534), None).unwrap();
    let build = s.build(&m, None);
    std::os::unix::fs::chown(s.store(), Some(0), None).unwrap();
    assert_ne!(build.code, 0);
    assert!(
        unwrapped(&build.stderr).contains("is owned by uid 65534"),
        "{}",
        build.stderr
    );
}

/// Two stages that write files, and an assembler.
fn two_stages(s: &Scratch) -> PathBuf {
    s.manifest(
        "m.json",
        &json!({"stages": [
            {"name": "org.osbuild.files", "options": {"files": [{"path": "/etc/one", "content": "1\n"}]}},
            {"name": "org.osbuild.files", "options": {"files": [{"path": "/etc/two", "content": "2\n"}]}}
        ], "assembler": {"name": "org.osbuild.tar", "options": {"filename": "t.tar"}}}),
    )
}

fn ids(build: &Build) -> Vec<String> {
    build
        .events
        .iter()
        .filter(|e| e["type"] == "stage-end")
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn an_object_with_a_corrupt_meta_is_built_again_and_gc_removes_one() {
    let s = Scratch::new("store-corrupt");
    let m = two_stages(&s);
    let first = s.build(&m, None).ok();
    let ids = ids(&first);
    let meta = |id: &str| object_dir(&s, id).join("meta.json");

    // The last stage's meta is garbage: it is built again, with a warning.
    std::fs::write(meta(&ids[1]), "{ not json").unwrap();
    let again = s.build(&m, None).ok();
    let statuses: Vec<String> = again.stages().into_iter().map(|(_, st)| st).collect();
    // The image above it is still good: its id has not changed.
    assert_eq!(statuses, ["cached", "success", "cached"], "{}", again.stdout);
    let warning = again.events.iter().find(|e| e["type"] == "warning").expect("a warning");
    assert_eq!(warning["id"], ids[1].as_str());
    assert!(warning["text"].as_str().unwrap().contains("meta.json"), "{warning}");
    let fixed: Value = serde_json::from_str(&std::fs::read_to_string(meta(&ids[1])).unwrap()).unwrap();
    assert_eq!(fixed["id"], ids[1].as_str());

    // An unusable image object is garbage: gc removes it, and keeps the trees.
    std::fs::write(meta(&ids[2]), "").unwrap();
    let out = s.osbuild().args(["store", "gc"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!object_dir(&s, &ids[2]).exists(), "gc kept the unusable object");
    assert!(
        meta(&ids[0]).is_file() && meta(&ids[1]).is_file(),
        "gc removed usable objects"
    );
}

#[test]
fn store_verify_finds_what_changed_and_repair_removes_it_and_what_stacks_it() {
    let s = Scratch::new("store-verify");
    let m = two_stages(&s);
    let first = s.build(&m, None).ok();
    let ids = ids(&first);
    let verify = |extra: &[&str]| {
        let out = s.osbuild().args(["store", "verify"]).args(extra).output().unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, stdout) = verify(&[]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("3 objects verified, 0 bad"), "{stdout}");

    // Someone edits the first layer in place.
    std::fs::write(object_dir(&s, &ids[0]).join("tree/etc/one"), "evil\n").unwrap();
    let (code, stdout) = verify(&[]);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains(&format!("{}  changed: its content is sha256:", ids[0])),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("{}  stacks the bad layer {}", ids[1], ids[0])),
        "{stdout}"
    );
    assert!(stdout.contains("1 objects verified, 2 bad"), "{stdout}");

    let (code, stdout) = verify(&["--repair"]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("(removed)"), "{stdout}");
    assert!(!object_dir(&s, &ids[0]).exists() && !object_dir(&s, &ids[1]).exists());
    assert!(object_dir(&s, &ids[2]).exists(), "an image is its own content");

    // The next build makes them again, as they were.
    let rebuilt = s.build(&m, Some(&s.path("out"))).ok();
    assert_eq!(rebuilt.ran(), 2, "{}", rebuilt.stdout);
    let one = std::fs::read_to_string(object_dir(&s, &ids[0]).join("tree/etc/one")).unwrap();
    assert_eq!(one, "1\n");
    assert_eq!(verify(&[]).0, 0);
}

/// A libdir assembler running `script` with its output directory in $o.
fn assembler_manifest(s: &Scratch, script: &str) -> PathBuf {
    s.stage(
        "assembler",
        "test.output",
        &format!("#!/bin/sh\nset -e\no=/run/osbuild/output\n{script}\n"),
        None,
    );
    s.manifest(
        "m.json",
        &json!({"stages": [{"name": "org.osbuild.files", "options": {"files": [{"path": "/etc/x", "content": "x\n"}]}}],
                "assembler": {"name": "test.output"}}),
    )
}

/// `osbuild build` of `m` into `out`, stopped after a minute if it hangs.
fn build_bounded(s: &Scratch, m: &Path, out: &Path) -> Build {
    build_bounded_with(s, m, out, &[])
}

fn build_bounded_with(s: &Scratch, m: &Path, out: &Path, extra: &[&str]) -> Build {
    let mut cmd = Command::new("timeout");
    cmd.args(["--signal=KILL", "60", env!("CARGO_BIN_EXE_osbuild")])
        .arg("--store")
        .arg(s.store())
        .arg("--libdir")
        .arg(s.libdir())
        .env("NO_COLOR", "1")
        .args(extra)
        .args(["build", "--json"])
        .arg(m)
        .arg("-o")
        .arg(out);
    Build::from(cmd.output().unwrap())
}

#[test]
fn an_output_with_a_fifo_is_refused_never_stored_and_never_blocks() {
    let s = Scratch::new("store-fifo");
    let m = assembler_manifest(&s, "echo image > $o/disk.img\nmkfifo $o/pipe");
    let out = s.path("out");
    let build = build_bounded(&s, &m, &out);
    assert_eq!(build.code, 1, "{}\n{}", build.stdout, build.stderr);
    assert!(
        unwrapped(&build.stderr).contains("output/pipe is a FIFO"),
        "{}",
        build.stderr
    );
    assert!(!out.exists(), "the output directory was touched");
    let image = ids(&build)[1].clone();
    assert!(!object_dir(&s, &image).exists(), "the image was stored");

    // A store that holds one already (made by an older osbuild) fails the
    // delivery instead of hanging in open().
    let m = assembler_manifest(&s, "echo image > $o/disk.img\necho > $o/pipe");
    let build = build_bounded_with(&s, &m, &out, &["--keep-image"]);
    assert_eq!(build.code, 0, "{}", build.stderr);
    std::fs::remove_dir_all(&out).unwrap();
    let pipe = object_dir(&s, &ids(&build)[1]).join("output/pipe");
    std::fs::remove_file(&pipe).unwrap();
    assert!(Command::new("mkfifo").arg(&pipe).status().unwrap().success());
    let build = build_bounded(&s, &m, &out);
    assert_eq!(build.code, 1, "{}", build.stderr);
    assert!(unwrapped(&build.stderr).contains("pipe is a FIFO"), "{}", build.stderr);
    assert!(!out.exists(), "the output directory was touched");
}

#[test]
fn an_output_on_another_filesystem_is_copied_sparse_and_loses_setuid_bits() {
    let s = Scratch::new("store-exdev");
    let m = assembler_manifest(
        &s,
        "truncate -s 1G $o/disk.raw\nprintf middle | dd of=$o/disk.raw bs=1 seek=536870912 conv=notrunc status=none\n\
         cp /bin/dash $o/sh\nchmod 4755 $o/sh",
    );
    // /dev/shm is a tmpfs; the store is not.
    let shm = PathBuf::from(format!("/dev/shm/osbuild-test-exdev-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&shm);
    let _cleanup = RemoveOnDrop(shm.clone());
    let out = shm.join("out");
    let build = build_bounded(&s, &m, &out);
    assert_eq!(build.code, 0, "{}", build.stderr);
    let disk = out.join("disk.raw");
    let meta = std::fs::metadata(&disk).unwrap();
    assert_eq!(meta.len(), 1 << 30);
    assert!(meta.blocks() * 512 < 1 << 20, "the holes were filled");
    let bytes = std::fs::read(&disk).unwrap();
    assert_eq!(&bytes[536870912..536870918], b"middle");
    assert!(bytes[..536870912].iter().all(|b| *b == 0));
    assert_eq!(mode(&out.join("sh")), 0o755, "a delivered file kept its setuid bit");
}

/// Removes a directory outside the scratch directory, even when a test fails.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_relative_libdir_is_found_from_the_sandbox() {
    let s = Scratch::new("store-relative-libdir");
    s.stage(
        "stage",
        "test.hello",
        "#!/bin/sh\necho hello > /run/osbuild/tree/hello\n",
        None,
    );
    let m = s.manifest("m.json", &json!({"stages": [{"name": "test.hello"}]}));
    let out = Command::new(env!("CARGO_BIN_EXE_osbuild"))
        .current_dir(&s.dir)
        .args(["--store", "store", "--libdir", "lib", "build"])
        .arg(&m)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
