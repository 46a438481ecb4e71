//! `osbuild run -j N`: images built at once as child builds on one store,
//! shared stages still built once, an image that starts from another's tree
//! after it, and the children's events relayed.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{mounts, processes_with, wait_until_gone, Scratch};

/// Three images: `a` and `b` share a first stage and each has a slow stage
/// of its own; `c` starts from `a`'s tree.
const SCRIPT: &str = r#"
for name in ["a", "b"] {
    let p = pipeline(name);
    p.stage("test.shared", #{});
    p.stage("test.slow", #{ image: name });
    p.assembler("org.osbuild.tar", #{ filename: name + ".tar" });
    emit(p);
}
let c = pipeline("c");
c.base("a");
c.hostname("c");
c.assembler("org.osbuild.tar", #{ filename: "c.tar" });
emit(c);
"#;

fn events(stdout: &str) -> Vec<Value> {
    stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

#[test]
fn images_build_at_once_and_shared_stages_once() {
    let s = Scratch::new("parallel");
    s.stage(
        "stage",
        "test.shared",
        "#!/bin/sh\necho shared > /run/osbuild/tree/shared\n",
        None,
    );
    // Long enough that the two images' slow stages overlap when they run at once.
    s.stage(
        "stage",
        "test.slow",
        "#!/bin/sh\nsleep 2\necho slow > /run/osbuild/tree/slow\n",
        None,
    );
    let script = s.write("three.rhai", SCRIPT);
    let out = s
        .osbuild()
        .args(["--json", "run", "-j", "3", "-o"])
        .arg(s.path("out"))
        .arg(&script)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    let events = events(&stdout);
    let of = |image: &str, kind: &str, stage: &str| -> Vec<usize> {
        (0..events.len())
            .filter(|i| {
                let e = &events[*i];
                e["image"] == image && e["type"] == kind && e["name"] == stage
            })
            .collect()
    };
    // The shared stage ran once, in one of the two images; the other found it stored.
    let statuses: Vec<&str> = ["a", "b"]
        .iter()
        .flat_map(|i| of(i, "stage-end", "test.shared"))
        .map(|i| events[i]["status"].as_str().unwrap())
        .collect();
    let mut sorted = statuses.clone();
    sorted.sort();
    assert_eq!(sorted, ["cached", "success"], "{statuses:?}");
    // Both slow stages began before either ended: they ran at once.
    let begins: Vec<usize> = ["a", "b"]
        .iter()
        .flat_map(|i| of(i, "stage-begin", "test.slow"))
        .collect();
    let ends: Vec<usize> = ["a", "b"]
        .iter()
        .flat_map(|i| of(i, "stage-end", "test.slow"))
        .collect();
    assert_eq!((begins.len(), ends.len()), (2, 2), "{stdout}");
    assert!(
        begins.iter().max() < ends.iter().min(),
        "the slow stages overlap:\n{stdout}"
    );
    // c starts from a's tree: none of its events before a's build ended.
    let a_done = (0..events.len())
        .find(|i| events[*i]["image"] == "a" && events[*i]["type"] == "build-end")
        .expect("a's build-end");
    let c_first = (0..events.len())
        .find(|i| events[*i]["image"] == "c")
        .expect("c's events");
    assert!(a_done < c_first, "c waits for a:\n{stdout}");
    // The summary, as a sequential run gives it, and the images.
    let summary = events.iter().find(|e| e["type"] == "summary").expect("a summary");
    let images: Vec<(&str, &str)> = summary["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["image"].as_str().unwrap(), i["status"].as_str().unwrap()))
        .collect();
    assert_eq!(images.len(), 3);
    assert!(images.iter().all(|(_, status)| *status == "success"), "{images:?}");
    crate::support::untar(&s.path("out/c/c.tar"), &s.path("x"));
    assert_eq!(
        std::fs::read_to_string(s.path("x/slow")).unwrap(),
        "slow\n",
        "c has a's tree"
    );
    assert_eq!(std::fs::read_to_string(s.path("x/etc/hostname")).unwrap().trim(), "c");
    assert!(s.leftovers().is_empty(), "{:?}", s.leftovers());
}

#[test]
fn a_failure_stops_what_has_not_started_and_is_shown_with_its_image() {
    let s = Scratch::new("parallel-fail");
    s.stage("stage", "test.fail", "#!/bin/sh\necho broken >&2\nexit 3\n", None);
    let script = s.write(
        "fail.rhai",
        r#"let a = pipeline("a");
a.stage("test.fail", #{});
emit(a);
let b = pipeline("b");
b.base("a");
b.hostname("b");
emit(b);
"#,
    );
    let out = s
        .osbuild()
        .args(["run", "-j", "2", "-o"])
        .arg(s.path("out"))
        .arg(&script)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("a: ") && stderr.contains("broken"),
        "the failure, by image: {stderr}"
    );
    assert!(stderr.contains("a stopped the run: not built: b"), "{stderr}");
    assert!(stdout.contains("(not built)"), "{stdout}");
    assert!(!s.path("out/b").exists());
}

/// SIGINT to the parent alone (not the terminal's whole group) reaches every
/// child build, and all of them clean up: no processes, mounts or work left.
#[test]
fn an_interrupt_stops_every_image_cleanly() {
    let s = Scratch::new("parallel-int");
    let before = mounts();
    let marker = format!("{}.{}", 400 + std::process::id() % 100, std::process::id());
    s.stage("stage", "test.sleep", &format!("#!/bin/sh\nsleep {marker}\n"), None);
    let script = s.write(
        "two.rhai",
        "for name in [\"a\", \"b\"] {\n    let p = pipeline(name);\n    p.stage(\"test.sleep\", #{ image: name });\n    emit(p);\n}\n",
    );
    let mut child = s
        .osbuild()
        .args(["--json", "run", "-j", "2", "-o"])
        .arg(s.path("out"))
        .arg(&script)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut begun = 0;
    while begun < 2 {
        let line = lines.next().expect("the run ended before both stages began").unwrap();
        if line.contains("\"stage-begin\"") && line.contains("test.sleep") {
            begun += 1;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while processes_with(&marker) < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(processes_with(&marker), 2, "both images' stages run");
    let rest = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<String>>());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
    let rest = rest.join().unwrap();
    assert!(
        rest.iter()
            .filter(|l| l.contains("\"interrupted\"") && l.contains("stage-end"))
            .count()
            == 2,
        "both stages end interrupted: {rest:?}"
    );
    wait_until_gone(&marker);
    assert_eq!(before, mounts());
    assert!(s.leftovers().is_empty(), "{:?}", s.leftovers());
    assert!(!s.path("out/a").exists() && !s.path("out/b").exists());
}
