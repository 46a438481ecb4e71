//! Hostile stages that try to take what the sandbox keeps from them: the
//! caller's secrets, the sandbox's own PID 1, system calls and capabilities
//! they have no business with, the host's secret files, and more memory,
//! processes, scratch space or log than their share.

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

use crate::support::{mounts, untar, Build, Scratch};

/// Runs one shell-script stage that writes what it managed to do to
/// /report in its tree, with `extra` arguments and environment for osbuild;
/// returns the build and, if it succeeded, the report.
fn run(s: &Scratch, script: &str, meta: Option<&Value>, cmd: impl FnOnce(&mut Command)) -> (Build, String) {
    s.stage(
        "stage",
        "test.hostile",
        &format!("#!/bin/sh\nexec > /run/osbuild/tree/report 2>&1\n{script}\n"),
        meta,
    );
    let manifest = s.manifest(
        "m.json",
        &json!({"stages": [{"name": "test.hostile"}], "assembler": {"name": "org.osbuild.tar", "options": {"filename": "t.tar"}}}),
    );
    let before = mounts();
    let mut command = Command::new(env!("CARGO_BIN_EXE_osbuild"));
    command.arg("--libdir").arg(s.libdir()).env("NO_COLOR", "1");
    cmd(&mut command);
    if !command.get_args().any(|a| a == "--store") {
        command.arg("--store").arg(s.store());
    }
    command
        .arg("build")
        .arg("--json")
        .arg(&manifest)
        .arg("-o")
        .arg(s.path("out"));
    let build = Build::from(command.output().unwrap());
    assert_eq!(before, mounts(), "the build left mounts behind");
    let report = if build.code == 0 {
        untar(&s.path("out/t.tar"), &s.path("x"));
        std::fs::read_to_string(s.path("x/report")).unwrap()
    } else {
        String::new()
    };
    (build, report)
}

/// The cgroups osbuild made for sandboxes whose osbuild has exited.
fn stale_cgroups() -> Vec<String> {
    let mut stale = Vec::new();
    for parent in ["/sys/fs/cgroup", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/pids"] {
        let Ok(entries) = std::fs::read_dir(parent) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix("osbuild.").and_then(|r| r.split('.').next()) {
                if !Path::new("/proc").join(pid).exists() {
                    stale.push(format!("{parent}/{name}"));
                }
            }
        }
    }
    stale
}

#[test]
fn a_stage_reads_nothing_of_the_callers_environment_or_command_line() {
    let s = Scratch::new("hard-secrets");
    let secret = format!("s3cr3t-{}", std::process::id());
    // The secret is in osbuild's environment and in its command line (the
    // store's path).
    let (build, report) = run(
        &s,
        &format!(
            "for f in /proc/[0-9]*/environ /proc/[0-9]*/cmdline; do\n\
               if grep -q {secret} \"$f\" 2>/dev/null; then echo \"found in $f\"; fi\n\
             done\n\
             if cat /proc/1/environ >/dev/null 2>&1; then echo read-environ-of-1; fi\n\
             if [ -n \"$OSBUILD_TEST_SECRET\" ]; then echo inherited; fi\n\
             tr '\\0' ' ' < /proc/1/cmdline; echo"
        ),
        None,
        |cmd| {
            cmd.env("OSBUILD_TEST_SECRET", &secret);
            cmd.arg("--store").arg(s.path(&format!("store-{secret}")));
        },
    );
    let build = build.ok();
    assert!(!build.stdout.is_empty());
    assert!(!report.contains("found") && !report.contains(&secret), "{report}");
    assert!(
        !report.contains("read-environ-of-1") && !report.contains("inherited"),
        "{report}"
    );
    assert!(report.starts_with("osbuild-sandbox"), "{report}");
}

#[test]
fn tracing_pid_1_fails_in_the_stage_and_the_build_goes_on() {
    let s = Scratch::new("hard-ptrace");
    // ptrace(PTRACE_ATTACH, 1) then, had it worked, PID 1 would be stopped
    // and the build would hang.
    let (build, report) = run(
        &s,
        "perl -e '$r = syscall(101, 16, 1, 0, 0); print $r == -1 ? \"refused: $!\\n\" : \"attached\\n\"'\n\
         perl -e '$r = syscall(101, 16, 2, 0, 0); print $r == -1 ? \"refused: $!\\n\" : \"attached\\n\"' &\n\
         wait",
        None,
        |_| {},
    );
    build.ok();
    assert_eq!(
        report,
        "refused: Operation not permitted\nrefused: Operation not permitted\n"
    );
}

#[test]
fn the_seccomp_filter_refuses_what_a_stage_has_no_business_with() {
    let s = Scratch::new("hard-seccomp");
    // x86_64 numbers: keyctl 250, bpf 321, perf_event_open 298, init_module
    // 175, kexec_load 246, io_uring_setup 425, clone3 435.
    let (build, report) = run(
        &s,
        "for call in 250 321 298 175 246 425; do\n\
           perl -e '$r = syscall($ARGV[0], 0, 0, 0, 0, 0); print \"$ARGV[0]: \", ($r == -1 ? $! : \"allowed\"), \"\\n\"' $call\n\
         done\n\
         perl -e '$r = syscall(435, 0, 0); print \"435: \", ($r == -1 ? $! : \"allowed\"), \"\\n\"'\n\
         if unshare --user true 2>/dev/null; then echo user-namespace; fi\n\
         if unshare --user --map-root-user true 2>/dev/null; then echo user-namespace-root; fi\n\
         echo done",
        None,
        |_| {},
    );
    build.ok();
    let refused = "Operation not permitted";
    assert_eq!(
        report,
        format!(
            "250: {refused}\n321: {refused}\n298: {refused}\n175: {refused}\n246: {refused}\n425: {refused}\n\
             435: Function not implemented\ndone\n"
        )
    );
}

#[test]
fn a_network_stage_opens_no_raw_or_packet_socket() {
    let s = Scratch::new("hard-netraw");
    let (build, report) = run(
        &s,
        // socket(AF_PACKET=17, SOCK_RAW=3, 0) and socket(AF_INET, SOCK_RAW, IPPROTO_ICMP).
        "perl -e 'print socket(S, 17, 3, 0) ? \"packet\\n\" : \"no packet socket: $!\\n\"'\n\
         perl -e 'print socket(S, 2, 3, 1) ? \"raw\\n\" : \"no raw socket: $!\\n\"'\n\
         grep CapBnd /proc/self/status",
        Some(&json!({"summary": "needs network", "network": true})),
        |_| {},
    );
    build.ok();
    let mut lines = report.lines();
    assert_eq!(lines.next(), Some("no packet socket: Operation not permitted"));
    assert_eq!(lines.next(), Some("no raw socket: Operation not permitted"));
    let bounding = u64::from_str_radix(lines.next().unwrap().split_whitespace().nth(1).unwrap(), 16).unwrap();
    // NET_RAW (13), NET_BIND_SERVICE (10), AUDIT_WRITE (29) are gone.
    for cap in [13, 10, 29] {
        assert_eq!(bounding & (1 << cap), 0, "capability {cap} kept: {bounding:x}");
    }
}

#[test]
fn the_hosts_secret_files_are_empty_in_the_build_root() {
    let s = Scratch::new("hard-shadow");
    let (build, report) = run(
        &s,
        "for f in /etc/shadow /etc/gshadow /etc/ssh/ssh_host_*_key; do\n\
           if [ -s \"$f\" ]; then echo \"reads $f\"; fi\n\
         done\n\
         if [ -n \"$(ls -A /etc/ssl/private 2>/dev/null)\" ]; then echo reads-ssl-private; fi\n\
         if [ -s /etc/passwd ]; then echo passwd-is-there; fi",
        None,
        |_| {},
    );
    build.ok();
    assert!(Path::new("/etc/shadow").metadata().unwrap().len() > 0);
    assert_eq!(report, "passwd-is-there\n");
}

#[test]
fn a_full_tmp_fails_the_stage_and_names_the_limit() {
    let s = Scratch::new("hard-tmp");
    let (build, _) = run(
        &s,
        "dd if=/dev/zero of=/tmp/fill bs=1M count=32 2>/dev/null || exit 1",
        None,
        |cmd| {
            cmd.args(["--limit", "tmp=8M"]);
        },
    );
    assert_eq!(build.code, 1, "{}", build.stdout);
    assert!(
        build
            .stdout
            .contains("/tmp is full: its limit is 8 MiB (raise it with --limit tmp=SIZE)"),
        "{}\n{}",
        build.stdout,
        build.stderr
    );
}

#[test]
fn a_stage_over_its_memory_limit_is_stopped_and_the_limit_named() {
    let s = Scratch::new("hard-memory");
    let (build, _) = run(
        &s,
        "perl -e '$x = \"a\" x (512 * 1024 * 1024); print length($x), \"\\n\"'",
        None,
        |cmd| {
            cmd.args(["--limit", "memory=64M"]);
        },
    );
    assert_ne!(build.code, 0);
    assert!(
        build
            .stdout
            .contains("the stage ran out of memory: the sandbox's limit is 64 MiB (raise it with --limit memory=SIZE)"),
        "{}\n{}",
        build.stdout,
        build.stderr
    );
    assert_eq!(stale_cgroups(), Vec::<String>::new());
}

#[test]
fn a_fork_bomb_hits_the_process_limit() {
    let s = Scratch::new("hard-pids");
    let (build, _) = run(
        &s,
        "i=0; while [ $i -lt 200 ]; do sleep 30 & i=$((i+1)); done; wait",
        None,
        |cmd| {
            cmd.args(["--limit", "pids=32"]);
        },
    );
    assert_ne!(build.code, 0);
    assert!(
        build.stdout.contains(
            "the stage hit the process limit: at most 32 processes and threads (raise it with --limit pids=N)"
        ),
        "{}\n{}",
        build.stdout,
        build.stderr
    );
    assert_eq!(stale_cgroups(), Vec::<String>::new());
}

#[test]
fn bad_limits_are_refused_before_anything_runs() {
    let s = Scratch::new("hard-badlimit");
    let out = s
        .osbuild()
        .args(["--limit", "disk=1G", "inspect", "x.json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown limit `disk`"));
}

#[test]
fn an_endless_line_is_read_in_linear_time_and_its_log_is_capped() {
    let s = Scratch::new("hard-log");
    s.stage(
        "stage",
        "test.chatty",
        // 80 MiB without a newline, then one short line.
        "#!/bin/sh\nhead -c 83886080 /dev/zero | tr '\\0' a\necho\necho last line\n",
        None,
    );
    let manifest = s.manifest("m.json", &json!({"stages": [{"name": "test.chatty"}]}));
    let out = s.osbuild().arg("build").arg(&manifest).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let object = s.objects().into_iter().next().expect("the stage's object");
    let log = s.store().join("objects").join(object).join("log");
    let size = log.metadata().unwrap().len();
    assert!(size <= (64 << 20) + 4096, "the stored log is {size} bytes");
    let end = std::fs::read(&log).unwrap();
    let end = String::from_utf8_lossy(&end[end.len() - 200..]).into_owned();
    assert!(
        end.ends_with("osbuild: the log was cut at 64 MiB (16777227 more bytes were printed)\n"),
        "{end}"
    );
}
