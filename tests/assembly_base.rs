//! An image built on its assembler's work for the tree after its first K
//! stages (`assembly_base`): the qemu assembler, whose work for a prefix is
//! the disk with its file systems. The work is made once, stored as an
//! image object of its own, shared by the next image on that tree and never
//! handed over; the image is the same bytes whether or not it was stored.

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

use crate::support::Scratch;

const LINUX_FS_GPT: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";
/// Where the root file system starts, in bytes.
const ROOT_AT: u64 = 2048 * 512;

/// An image of the shared stages plus its own host name, on the tree after
/// those (2 stages).
fn image(name: &str, uuid: &str) -> Value {
    json!({
        "source_epoch": 1_700_000_000,
        "stages": [
            {"name": "org.osbuild.mkdir", "options": {"paths": [{"path": "/srv/www", "parents": true}]}},
            {"name": "org.osbuild.files", "options": {"files": [{"path": "/etc/motd", "content": "shared\n"}]}},
            {"name": "org.osbuild.hostname", "options": {"hostname": name}},
        ],
        "assembler": {"name": "org.osbuild.qemu", "options": {
            "format": "raw", "filename": format!("{name}.img"), "size": 64 << 20,
            "ptuuid": "d2c6c8b4-52a4-4bb0-a32b-3f1f44a8b6a2", "pttype": "gpt",
            "bootloader": {"type": "none"},
            "partitions": [{"start": 2048, "type": LINUX_FS_GPT, "uuid": uuid,
                "filesystem": {"type": "ext4", "uuid": uuid, "mountpoint": "/"}}],
        }},
        "assembly_base": 2,
    })
}

fn cat(image: &Path, path: &str) -> String {
    let out = Command::new("debugfs")
        .arg("-R")
        .arg(format!("cat {path}"))
        .arg(format!("{}?offset={ROOT_AT}", image.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `(kind, status)` of every stage-end event.
fn steps(events: &[Value]) -> Vec<(String, String)> {
    events
        .iter()
        .filter(|e| e["type"] == "stage-end")
        .map(|e| (e["kind"].as_str().unwrap().into(), e["status"].as_str().unwrap().into()))
        .collect()
}

#[test]
fn the_prefix_work_is_made_once_shared_never_handed_over_and_changes_no_byte() {
    let s = Scratch::new("assembly-base");
    let a = s.manifest("a.json", &image("a", "f4b3bd3a-0c8e-4b0a-a3c8-7e2c5bca6e39"));
    let b = s.manifest("b.json", &image("b", "0194fdc2-fa2f-4cc0-81d3-ff12045b73c8"));
    let plan = s.inspect(&b);
    let main = &plan["pipelines"][0];
    assert_eq!(main["assembly_base"], main["stages"][1]["id"]);

    let built = s.build(&a, Some(&s.path("out-a"))).ok();
    let stage = |st: &str| ("stage".to_string(), st.to_string());
    let assembler = |st: &str| ("assembler".to_string(), st.to_string());
    assert_eq!(
        steps(&built.events),
        [
            stage("success"),
            stage("success"),
            stage("success"),
            assembler("success"),
            assembler("success")
        ],
        "the prefix work, then the image on it"
    );
    let ids = built.ids();
    let (prefix, image_a) = (&ids[3], &ids[4]);
    assert_ne!(prefix, image_a);
    let begins = built.events.iter().filter(|e| e["type"] == "pipeline-begin");
    assert_eq!(begins.map(|e| e["stages"].clone()).collect::<Vec<_>>(), [json!(3)]);
    // The work is stored as an image on the prefix tree; only the image is handed over.
    let meta: Value =
        serde_json::from_str(&std::fs::read_to_string(s.store().join(format!("objects/{prefix}/meta.json"))).unwrap())
            .unwrap();
    assert_eq!(
        (&meta["kind"], &meta["parent"]),
        (&json!("image"), &main["stages"][1]["id"])
    );
    let handed: Vec<String> = std::fs::read_dir(s.path("out-a"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(handed, ["a.img"]);
    assert_eq!(cat(&s.path("out-a/a.img"), "/etc/hostname"), "a\n");
    assert_eq!(cat(&s.path("out-a/a.img"), "/etc/motd"), "shared\n");

    // The next image on that tree takes the work from the store.
    let built = s.build(&b, Some(&s.path("out-b"))).ok();
    assert_eq!(
        steps(&built.events),
        [
            stage("cached"),
            stage("cached"),
            stage("success"),
            assembler("cached"),
            assembler("success")
        ]
    );
    assert_eq!(&built.ids()[3], prefix, "one work for both images");
    assert_eq!(cat(&s.path("out-b/b.img"), "/etc/hostname"), "b\n");

    // On a fresh store, with the work made in the same build: the same bytes.
    let fresh = Scratch::new("assembly-base-fresh");
    let b_fresh = fresh.manifest("b.json", &image("b", "0194fdc2-fa2f-4cc0-81d3-ff12045b73c8"));
    let built = fresh.build(&b_fresh, None).ok();
    let stored = fresh.store().join(format!("objects/{}/output/b.img", built.ids()[4]));
    assert!(
        std::fs::read(s.path("out-b/b.img")).unwrap() == std::fs::read(stored).unwrap(),
        "the image depends on the trees alone"
    );
    // Built again: the image is stored, so nothing runs, not even the work.
    let again = fresh.build(&b_fresh, None).ok();
    assert_eq!(
        steps(&again.events).len(),
        4,
        "no step for the work: {:?}",
        again.stages()
    );
    assert_eq!(again.ran(), 0);
    assert!(s.leftovers().is_empty(), "{:?}", s.leftovers());
    assert!(fresh.leftovers().is_empty(), "{:?}", fresh.leftovers());
}

/// The work for the prefix fails like any assembler: the build stops with
/// its log, and neither it nor the image is stored.
#[test]
fn a_failing_prefix_work_fails_the_build_with_its_log() {
    let s = Scratch::new("assembly-base-fails");
    let mut m = image("a", "f4b3bd3a-0c8e-4b0a-a3c8-7e2c5bca6e39");
    // 3 MiB in the shared part, on a 2 MiB disk: the work cannot be made.
    m["stages"][1]["options"]["files"][0]["content"] = json!("x".repeat(3 << 20));
    m["assembler"]["options"]["size"] = json!(2 << 20);
    let a = s.manifest("a.json", &m);
    let built = s.build(&a, Some(&s.path("out")));
    assert_eq!(built.code, 1, "{}", built.stderr);
    let steps = steps(&built.events);
    assert_eq!(steps.last().unwrap(), &("assembler".to_string(), "failure".to_string()));
    assert_eq!(steps.len(), 4, "the image never began: {steps:?}");
    let prefix = &built.ids()[3];
    let short = &prefix[..12];
    assert!(
        built
            .stderr
            .contains(&format!("assembler org.osbuild.qemu ({short}) failed")),
        "{}",
        built.stderr
    );
    assert!(s.store().join(format!("logs/{prefix}.failed")).is_file());
    assert!(!s.objects().contains(prefix));
    assert!(!s.path("out").join("a.img").exists());
}
