//! `osbuild run --executor slurm`: a fleet as jobs of a real single-node
//! Slurm cluster, sharing work through a real registry.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{OciRegistry, Scratch, SlurmCluster};

/// Three images: `a` and `b` share two stages; `c` starts from `a`'s tree
/// (by name, which a job's fresh store does not know).
const SCRIPT: &str = r#"
for name in ["a", "b"] {
    let p = pipeline(name);
    p.stage("test.shared", #{});
    p.hostname("fleet");
    p.stage("test.own", #{ image: name });
    p.assembler("org.osbuild.tar", #{ filename: name + ".tar" });
    emit(p);
}
let c = pipeline("c");
c.base("a");
c.hostname("c");
c.assembler("org.osbuild.tar", #{ filename: "c.tar" });
emit(c);
"#;

fn stages(s: &Scratch) {
    s.stage(
        "stage",
        "test.shared",
        "#!/bin/sh\necho shared > /run/osbuild/tree/shared\n",
        None,
    );
    s.stage(
        "stage",
        "test.own",
        "#!/bin/sh\nset -e\ncat > /run/osbuild/tree/own\n",
        None,
    );
}

/// The node's temporary directory for this test's jobs (sbatch passes the
/// environment on): where their work directories go.
fn node_tmp(s: &Scratch) -> std::path::PathBuf {
    let dir = s.path("node-tmp");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn events(stdout: &str) -> Vec<Value> {
    stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

/// `osbuild [--json] --cache CACHE run --executor slurm -o OUT EXTRA... fleet.rhai`
/// on `cluster`, its jobs' work in the test's node TMPDIR.
fn slurm_run(s: &Scratch, cluster: &SlurmCluster, cache: &str, json: bool, out: &str, extra: &[&str]) -> Command {
    let (key, conf) = cluster.env();
    let mut cmd = s.osbuild();
    cmd.env(key, conf).env("TMPDIR", node_tmp(s));
    if json {
        cmd.arg("--json");
    }
    cmd.args(["--cache", cache, "run", "--executor", "slurm", "-o"])
        .arg(s.path(out))
        .args(extra)
        .arg(s.path("fleet.rhai"));
    cmd
}

fn run_on(s: &Scratch, cluster: &SlurmCluster, cache: &str, out: &str, extra: &[&str]) -> std::process::Output {
    slurm_run(s, cluster, cache, true, out, extra).output().unwrap()
}

#[test]
fn a_fleet_runs_as_slurm_jobs_sharing_its_base_and_matches_a_local_build() {
    let s = Scratch::new("slurm-fleet");
    stages(&s);
    s.write("fleet.rhai", SCRIPT);
    let registry = OciRegistry::start(&s);
    let cluster = SlurmCluster::start(&s);
    let cache = registry.url("fleet/cache");
    let out = run_on(&s, &cluster, &cache, "out", &["--slurm-option=--time=10"]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let events = events(&stdout);
    // The shared stages ran once across all jobs; everything else that
    // needed them pulled them.
    for stage in ["test.shared", "org.osbuild.hostname"] {
        let ran = events
            .iter()
            .filter(|e| e["type"] == "stage-end" && e["name"] == stage && e["status"] == "success")
            .count();
        // c's hostname stage is its own.
        let expected = if stage == "test.shared" { 1 } else { 2 };
        assert_eq!(ran, expected, "{stage}:\n{stdout}");
    }
    assert!(
        events.iter().all(|e| e["type"] == "summary" || e["image"].is_string()),
        "every event says its image, as a local run's do"
    );
    // As in a local run: one build per image, each stage shown once.
    for image in ["a", "b", "c"] {
        let of = |kind: &str| {
            events
                .iter()
                .filter(|e| e["image"] == image && e["type"] == kind)
                .count()
        };
        assert_eq!((of("pipeline-begin"), of("build-end")), (1, 1), "{image}:\n{stdout}");
        let mut ids: Vec<&str> = events
            .iter()
            .filter(|e| e["image"] == image && e["type"] == "stage-end")
            .map(|e| e["id"].as_str().unwrap())
            .collect();
        let all = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), all, "{image}: a stage shown twice:\n{stdout}");
    }
    let summary = events.iter().find(|e| e["type"] == "summary").expect("a summary");
    let statuses: Vec<&str> = summary["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["success"; 3]);

    // The same images as a local build, byte for byte.
    let local = crate::cache::osbuild_on(&s, "local-store")
        .args(["run", "-j", "1", "-o"])
        .arg(s.path("local"))
        .arg(s.path("fleet.rhai"))
        .output()
        .unwrap();
    assert!(local.status.success(), "{}", String::from_utf8_lossy(&local.stderr));
    for image in ["a", "b", "c"] {
        s.assert_same_file(
            &format!("out/{image}/{image}.tar"),
            &format!("local/{image}/{image}.tar"),
        );
    }
    assert!(cluster.active_jobs().is_empty());
    // Nothing of the jobs is left on the node.
    let left = std::fs::read_dir(node_tmp(&s)).unwrap().count();
    assert_eq!(left, 0, "the jobs' work directories are removed");
}

#[test]
fn a_failed_job_is_shown_and_a_rerun_resumes_from_the_cache() {
    let s = Scratch::new("slurm-fail");
    stages(&s);
    s.stage(
        "stage",
        "test.own",
        "#!/bin/sh\nif grep -q '\"image\":\"b\"'; then echo 'b is broken' >&2; exit 3; fi\n",
        None,
    );
    s.write("fleet.rhai", SCRIPT);
    let registry = OciRegistry::start(&s);
    let cluster = SlurmCluster::start(&s);
    let cache = registry.url("fleet/cache");
    let out = run_on(&s, &cluster, &cache, "out", &["-k"]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("b is broken"), "the failed job's log: {stderr}");
    assert!(
        s.path("out/a/a.tar").is_file() && s.path("out/c/c.tar").is_file(),
        "the others are delivered"
    );

    // Fixed, and run again: what was built comes from the cache.
    stages(&s);
    let again = run_on(&s, &cluster, &cache, "out2", &[]);
    let stdout = String::from_utf8_lossy(&again.stdout).into_owned();
    assert!(
        again.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let ran: Vec<String> = events(&stdout)
        .iter()
        .filter(|e| e["type"] == "stage-end" && e["status"] == "success")
        .map(|e| format!("{}:{}", e["image"].as_str().unwrap(), e["name"].as_str().unwrap()))
        .collect();
    assert_eq!(ran, ["b:test.own", "b:org.osbuild.tar"], "{stdout}");
}

#[test]
fn ctrl_c_cancels_the_jobs() {
    let s = Scratch::new("slurm-interrupt");
    stages(&s);
    s.stage(
        "stage",
        "test.own",
        "#!/bin/bash\nexec -a osbuild-slurm-interrupt-marker sleep 300\n",
        None,
    );
    s.write("fleet.rhai", SCRIPT);
    let registry = OciRegistry::start(&s);
    let cluster = SlurmCluster::start(&s);
    let cache = registry.url("fleet/cache");
    let child = slurm_run(&s, &cluster, &cache, false, "out", &[])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while crate::support::processes_with("osbuild-slurm-interrupt-marker") == 0 {
        assert!(Instant::now() < deadline, "the slow stage never started");
        std::thread::sleep(Duration::from_millis(100));
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::SIGINT).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(cluster.active_jobs().is_empty(), "{:?}", cluster.active_jobs());
    crate::support::wait_until_gone("osbuild-slurm-interrupt-marker");
    // A cancelled job removes its work directory too.
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_dir(node_tmp(&s)).unwrap().count() > 0 {
        assert!(Instant::now() < deadline, "a cancelled job's work directory is left");
        std::thread::sleep(Duration::from_millis(100));
    }
}
