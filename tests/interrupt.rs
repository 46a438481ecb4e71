//! Failed, interrupted and killed builds leave no mounts, no processes and no
//! half objects, and the next build proceeds normally.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{mounts, processes_with, wait_until_gone, Scratch};

/// A sleep duration unique to this call, so a test finds its own stage's
/// processes (the tests of this binary run at once, in one process).
fn marker() -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, Ordering::Relaxed);
    format!("{}.{}{call:03}", 300 + std::process::id() % 100, std::process::id())
}

/// Starts a build whose second stage sleeps (in a child process, and in a
/// background grandchild too); returns once that stage has begun.
fn start_sleeping_build(s: &Scratch, marker: &str) -> Child {
    s.stage(
        "stage",
        "test.sleep",
        &format!("#!/bin/sh\nsleep {marker} &\nsleep {marker}\n"),
        None,
    );
    let m = s.manifest(
        "m.json",
        &json!({"stages": [{"name": "org.osbuild.noop", "options": {"first": true}}, {"name": "test.sleep"}]}),
    );
    let mut child = s
        .osbuild()
        .args(["build", "--json"])
        .arg(&m)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    loop {
        let line = lines.next().expect("build ended before the stage began").unwrap();
        if line.contains("\"stage-begin\"") && line.contains("test.sleep") {
            break;
        }
    }
    // Give the stage a moment to start its sleeps.
    let deadline = Instant::now() + Duration::from_secs(10);
    while processes_with(marker) < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(processes_with(marker), 2);
    std::thread::spawn(move || for _ in lines {});
    child
}

fn next_build_is_normal(s: &Scratch) {
    let m = s.manifest(
        "next.json",
        &json!({"stages": [{"name": "org.osbuild.noop", "options": {"first": true}}]}),
    );
    let build = s.build(&m, None).ok();
    assert_eq!(build.cached(), 1);
    assert!(s.leftovers().is_empty(), "tmp/ still holds {:?}", s.leftovers());
}

#[test]
fn sigint_stops_the_build_cleanly_with_status_130() {
    let s = Scratch::new("int-sigint");
    let before = mounts();
    let marker = marker();
    let child = start_sleeping_build(&s, &marker);
    let started = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(started.elapsed() < Duration::from_secs(5));
    wait_until_gone(&marker);
    assert_eq!(before, mounts());
    assert_eq!(s.objects().len(), 1, "only the finished first stage is stored");
    assert!(s.leftovers().is_empty(), "an interrupted build cleans up after itself");
    next_build_is_normal(&s);
}

#[test]
fn sigkill_of_osbuild_takes_the_stage_down_too() {
    let s = Scratch::new("int-sigkill");
    let before = mounts();
    let marker = marker();
    let mut child = start_sleeping_build(&s, &marker);
    child.kill().unwrap();
    child.wait().unwrap();
    wait_until_gone(&marker);
    assert_eq!(before, mounts());
    assert_eq!(s.objects().len(), 1, "no half object");
    // The dead build's work directory is removed by the next build.
    next_build_is_normal(&s);
}

#[test]
fn a_failing_stage_names_itself_shows_its_log_and_stores_nothing() {
    let s = Scratch::new("int-fail");
    s.stage(
        "stage",
        "test.fail",
        "#!/bin/sh\necho 'about to fail' >&2\necho partial > /run/osbuild/tree/partial\nexit 3\n",
        None,
    );
    let m = s.manifest(
        "m.json",
        &json!({"stages": [{"name": "org.osbuild.noop", "options": {"first": true}}, {"name": "test.fail"}]}),
    );
    let before = mounts();
    let out = s
        .osbuild()
        .arg("build")
        .arg(&m)
        .arg("-o")
        .arg(s.path("out"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("stage test.fail"), "{stderr}");
    assert!(stderr.contains("exit status 3"), "{stderr}");
    assert!(stderr.contains("about to fail"), "{stderr}");
    assert!(!s.path("out").exists(), "the output directory is untouched");
    assert_eq!(before, mounts());
    assert_eq!(s.objects().len(), 1);
    let logs: Vec<_> = std::fs::read_dir(s.store().join("logs")).unwrap().collect();
    assert_eq!(logs.len(), 1, "the failed stage's log is kept");
    next_build_is_normal(&s);
}
