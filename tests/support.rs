//! Shared test helpers: a scratch directory per test, the real `osbuild`
//! binary, and libdirs of stages written as shell scripts.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A directory for one test, removed when the test passes.
pub struct Scratch {
    pub dir: PathBuf,
}

impl Scratch {
    /// A fresh directory of its own: tests running at once that use the same
    /// name (every `diagnose` in script.rs) each get one.
    pub fn new(name: &str) -> Scratch {
        static COUNT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir()
            .join("osbuild-tests")
            .join(format!("{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("lib")).unwrap();
        Scratch { dir }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    pub fn store(&self) -> PathBuf {
        self.path("store")
    }

    pub fn libdir(&self) -> PathBuf {
        self.path("lib")
    }

    /// Writes a file (creating parents) and returns its path.
    pub fn write(&self, rel: &str, content: &str) -> PathBuf {
        let path = self.path(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, content).unwrap();
        path
    }

    pub fn manifest(&self, rel: &str, manifest: &Value) -> PathBuf {
        self.write(rel, &serde_json::to_string_pretty(manifest).unwrap())
    }

    /// Adds an executable stage (or assembler) to the test libdir.
    pub fn stage(&self, kind: &str, name: &str, script: &str, meta: Option<&Value>) {
        let path = self.write(&format!("lib/{kind}s/{name}"), script);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        if let Some(meta) = meta {
            self.write(&format!("lib/{kind}s/{name}.meta.json"), &meta.to_string());
        }
    }

    /// Fails unless the files at `a` and `b` (relative to the scratch
    /// directory) hold the same bytes.
    #[track_caller]
    pub fn assert_same_file(&self, a: &str, b: &str) {
        let (x, y) = (
            std::fs::read(self.path(a)).unwrap(),
            std::fs::read(self.path(b)).unwrap(),
        );
        assert!(x == y, "{a} and {b} differ");
    }

    /// `osbuild` with this test's store and libdir.
    pub fn osbuild(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_osbuild"));
        cmd.arg("--store").arg(self.store()).arg("--libdir").arg(self.libdir());
        cmd.env("NO_COLOR", "1");
        cmd
    }

    /// Builds a manifest with JSON events; returns the events and the output.
    pub fn build(&self, manifest: &Path, out: Option<&Path>) -> Build {
        let mut cmd = self.osbuild();
        cmd.arg("build").arg("--json").arg(manifest);
        if let Some(out) = out {
            cmd.arg("-o").arg(out);
        }
        Build::from(cmd.output().unwrap())
    }

    /// [`Scratch::build`], but a build still running after `limit` is killed
    /// (SIGKILL: its sandboxes die with it) and the test fails, rather than
    /// hanging. What it wrote so far (the whole scratch directory) is removed
    /// first, since a runaway build may have written a lot.
    pub fn build_within(&self, manifest: &Path, out: Option<&Path>, limit: Duration) -> Build {
        let mut cmd = self.osbuild();
        cmd.arg("build").arg("--json").arg(manifest);
        if let Some(out) = out {
            cmd.arg("-o").arg(out);
        }
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let drain = |mut pipe: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                let _ = pipe.read_to_end(&mut bytes);
                bytes
            })
        };
        let stdout = drain(Box::new(child.stdout.take().unwrap()));
        let stderr = drain(Box::new(child.stderr.take().unwrap()));
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                let _ = std::fs::remove_dir_all(&self.dir);
                let stdout = String::from_utf8_lossy(&stdout.join().unwrap()).into_owned();
                panic!("the build did not finish within {limit:?}; it printed:\n{stdout}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Build::from(Output {
            status,
            stdout: stdout.join().unwrap(),
            stderr: stderr.join().unwrap(),
        })
    }

    /// `osbuild inspect --json` of a manifest.
    pub fn inspect(&self, manifest: &Path) -> Value {
        let out = self
            .osbuild()
            .args(["inspect", "--json"])
            .arg(manifest)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Whether each stage of the main pipeline is stored, per `inspect`.
    pub fn stored(&self, manifest: &Path) -> Vec<bool> {
        let plan = self.inspect(manifest);
        let main = plan["pipelines"].as_array().unwrap().last().unwrap().clone();
        main["stages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|st| st["stored"].as_bool().unwrap())
            .collect()
    }

    /// The ids of the objects in the store.
    pub fn objects(&self) -> Vec<String> {
        let mut ids: Vec<String> = std::fs::read_dir(self.store().join("objects"))
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids
    }

    /// Entries left in the store's `tmp/` (work in progress).
    pub fn leftovers(&self) -> Vec<String> {
        std::fs::read_dir(self.store().join("tmp"))
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The result of one `osbuild build --json`.
pub struct Build {
    pub code: i32,
    pub events: Vec<Value>,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Build {
    fn from(out: Output) -> Build {
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let events = stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        Build {
            code: out.status.code().unwrap_or(-1),
            events,
            stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Build {
    #[track_caller]
    pub fn ok(self) -> Build {
        assert_eq!(self.code, 0, "build failed:\n{}\n{}", self.stdout, self.stderr);
        self
    }

    /// `(name, status)` of every stage-end event, in order.
    pub fn stages(&self) -> Vec<(String, String)> {
        self.events
            .iter()
            .filter(|e| e["type"] == "stage-end")
            .map(|e| {
                (
                    e["name"].as_str().unwrap().to_string(),
                    e["status"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    /// How many stages (and assemblers) ran rather than came from the store.
    pub fn ran(&self) -> usize {
        self.stages().iter().filter(|(_, s)| s == "success").count()
    }

    /// The ids of the stage-end events, in order.
    pub fn ids(&self) -> Vec<String> {
        self.events
            .iter()
            .filter(|e| e["type"] == "stage-end")
            .map(|e| e["id"].as_str().unwrap().to_string())
            .collect()
    }

    pub fn cached(&self) -> usize {
        self.stages().iter().filter(|(_, s)| s == "cached").count()
    }
}

/// A diagnostic as one line: miette wraps long messages in a box-drawn margin.
pub fn unwrapped(report: &str) -> String {
    report
        .lines()
        .map(|l| l.trim_start().trim_start_matches('│').trim())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The host's mount table, to prove a build left nothing mounted.
/// How many processes have `marker` in their command line.
pub fn processes_with(marker: &str) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|c| String::from_utf8_lossy(&c).contains(marker)))
        .count()
}

/// Waits (10 s at most) until no process has `marker` in its command line.
pub fn wait_until_gone(marker: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while processes_with(marker) > 0 {
        assert!(Instant::now() < deadline, "stage processes outlived the build");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn mounts() -> String {
    std::fs::read_to_string("/proc/self/mountinfo").unwrap()
}

/// Lists every file under `dir` with type, mode, owner, size and content hash
/// (via `find`), for comparing trees.
pub fn listing(dir: &Path) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg("cd \"$1\" && find . -printf '%p %y %m %U:%G %s %l\\n' | sort")
        .arg("sh")
        .arg(dir)
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}

/// Extracts a tarball (as root, keeping owners and xattrs) into a new directory.
pub fn untar(tarball: &Path, into: &Path) {
    std::fs::create_dir_all(into).unwrap();
    let status = Command::new("tar")
        .args(["--xattrs", "--xattrs-include=*", "--numeric-owner", "-xpf"])
        .arg(tarball)
        .arg("-C")
        .arg(into)
        .status()
        .unwrap();
    assert!(status.success());
}

/// The ranges `[start, end)` of a file that hold data, per `SEEK_DATA` and
/// `SEEK_HOLE`: what is not in them is a hole.
pub fn data_ranges(path: &Path) -> Vec<(u64, u64)> {
    use nix::unistd::{lseek, Whence};
    let file = std::fs::File::open(path).unwrap();
    let mut ranges = Vec::new();
    let mut at = 0;
    loop {
        let start = match lseek(&file, at, Whence::SeekData) {
            Ok(start) => start,
            Err(nix::errno::Errno::ENXIO) => return ranges,
            Err(e) => panic!("SEEK_DATA in {}: {e}", path.display()),
        };
        let end = lseek(&file, start, Whence::SeekHole).unwrap();
        ranges.push((start as u64, end as u64));
        at = end;
    }
}

/// A real OCI registry (Debian's `docker-registry`, the distribution
/// project's) on 127.0.0.1, its storage and configuration in the test's
/// scratch directory, stopped by PID when dropped.
pub struct OciRegistry {
    child: std::process::Child,
    /// `HOST:PORT`.
    pub address: String,
    /// `user:password` when it asks for them (htpasswd).
    login: Option<String>,
}

impl OciRegistry {
    pub fn start(s: &Scratch) -> OciRegistry {
        Self::start_with(s, None)
    }

    /// A registry that takes only `user` with the password whose bcrypt
    /// hash is `hash` (HTTP Basic authentication, from an htpasswd file).
    pub fn start_with_login(s: &Scratch, user: &str, hash: &str, password: &str) -> OciRegistry {
        let htpasswd = s.write("registry/htpasswd", &format!("{user}:{hash}\n"));
        let mut registry = Self::start_with(
            s,
            Some(format!(
                "auth:\n  htpasswd:\n    realm: osbuild-test\n    path: {}\n",
                htpasswd.display()
            )),
        );
        registry.login = Some(format!("{user}:{password}"));
        registry
    }

    fn start_with(s: &Scratch, auth: Option<String>) -> OciRegistry {
        let data = s.path("registry/data");
        std::fs::create_dir_all(&data).unwrap();
        for _ in 0..5 {
            // A port nobody uses now; another process may take it before the
            // registry does, so a registry that does not come up is retried.
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let address = format!("127.0.0.1:{port}");
            let config = s.write(
                "registry/config.yml",
                &format!(
                    "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
                     http:\n  addr: {address}\n{}",
                    data.display(),
                    auth.as_deref().unwrap_or("")
                ),
            );
            let log = std::fs::File::create(s.path("registry/log")).unwrap();
            let child = Command::new("docker-registry")
                .arg("serve")
                .arg(&config)
                .current_dir(s.path("registry"))
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("docker-registry (scripts/test installs it)");
            let mut registry = OciRegistry {
                child,
                address: address.clone(),
                login: None,
            };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = registry.child.try_wait() {
                    break;
                }
                // Up once it answers, if only with 401 (it wants a login).
                match ureq::get(&format!("http://{address}/v2/")).call() {
                    Ok(_) | Err(ureq::Error::StatusCode(401)) => return registry,
                    Err(_) => {}
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            drop(registry);
        }
        panic!(
            "docker-registry did not start: {}",
            std::fs::read_to_string(s.path("registry/log")).unwrap_or_default()
        );
    }

    /// `oci://HOST:PORT/REPOSITORY`.
    pub fn url(&self, repository: &str) -> String {
        format!("oci://{}/{repository}", self.address)
    }

    /// The tags of a repository.
    pub fn tags(&self, repository: &str) -> Vec<String> {
        let url = format!("http://{}/v2/{repository}/tags/list", self.address);
        let mut request = ureq::get(&url);
        if let Some(login) = &self.login {
            request = request.header("Authorization", format!("Basic {}", base64(login.as_bytes())));
        }
        let Ok(mut response) = request.call() else {
            return Vec::new();
        };
        let body: Value = serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
        let mut tags: Vec<String> = body["tags"]
            .as_array()
            .map(|t| t.iter().map(|t| t.as_str().unwrap().to_string()).collect())
            .unwrap_or_default();
        tags.sort();
        tags
    }
}

/// Standard base64, for an HTTP Basic login and a Docker `config.json`.
pub fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (*b as u32) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

impl Drop for OciRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real single-node Slurm cluster (Debian's slurm-wlm, with munge for
/// authentication): munged, slurmctld and slurmd run from the test's scratch
/// directory with their own key, configuration, state and ports, and are
/// stopped by PID when dropped. Slurm's commands find it through
/// `SLURM_CONF` (see [`SlurmCluster::env`]).
pub struct SlurmCluster {
    daemons: Vec<std::process::Child>,
    pub conf: PathBuf,
}

impl SlurmCluster {
    pub fn start(s: &Scratch) -> SlurmCluster {
        let dir = s.path("slurm");
        for sub in ["munge", "state", "spool", "log"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        std::fs::set_permissions(dir.join("munge"), std::fs::Permissions::from_mode(0o700)).unwrap();
        let key = dir.join("munge/munge.key");
        let status = Command::new("mungekey").arg("-c").arg("-k").arg(&key).status().unwrap();
        assert!(status.success(), "mungekey");
        let socket = dir.join("munge/munge.socket");
        let log = |name: &str| std::fs::File::create(dir.join("log").join(name)).unwrap();
        let mut daemons = Vec::new();
        // -f: munged refuses a key and socket outside its usual, root-owned
        // places otherwise.
        daemons.push(
            Command::new("munged")
                .args(["-F", "-f"])
                .arg(format!("--socket={}", socket.display()))
                .arg(format!("--key-file={}", key.display()))
                .arg(format!("--log-file={}", dir.join("log/munged.log").display()))
                .arg(format!("--pid-file={}", dir.join("munge/munged.pid").display()))
                .arg(format!("--seed-file={}", dir.join("munge/munged.seed").display()))
                .stdin(Stdio::null())
                .stdout(log("munged.out"))
                .stderr(log("munged.err"))
                .spawn()
                .expect("munged (scripts/test installs munge)"),
        );
        wait_for(|| socket.exists(), "munged's socket");
        let host = String::from_utf8(Command::new("hostname").arg("-s").output().unwrap().stdout)
            .unwrap()
            .trim()
            .to_string();
        let free_port = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        };
        let (ctld_port, d_port) = (free_port(), free_port());
        let d = dir.display();
        let conf = s.write(
            "slurm/slurm.conf",
            &format!(
                "ClusterName=osbuildtest\nSlurmctldHost={host}(127.0.0.1)\nSlurmctldPort={ctld_port}\n\
                 SlurmdPort={d_port}\nAuthType=auth/munge\nAuthInfo=socket={}\nCredType=cred/munge\n\
                 CommunicationParameters=NoInAddrAny\nSlurmUser=root\nSlurmdUser=root\n\
                 StateSaveLocation={d}/state\nSlurmdSpoolDir={d}/spool\n\
                 SlurmctldPidFile={d}/slurmctld.pid\nSlurmdPidFile={d}/slurmd.pid\n\
                 SlurmctldLogFile={d}/log/slurmctld.log\nSlurmdLogFile={d}/log/slurmd.log\n\
                 ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\nJobAcctGatherType=jobacct_gather/none\n\
                 AccountingStorageType=accounting_storage/none\nJobCompType=jobcomp/none\n\
                 SelectType=select/cons_tres\nSelectTypeParameters=CR_CPU\nMpiDefault=none\nReturnToService=2\n\
                 SlurmdParameters=config_overrides\nSchedulerParameters=sched_interval=1\nMinJobAge=600\n\
                 KillWait=5\nNodeName={host} NodeAddr=127.0.0.1 CPUs=4 RealMemory=4000 State=UNKNOWN\n\
                 PartitionName=osbuild Nodes=ALL Default=YES MaxTime=INFINITE State=UP\n",
                socket.display()
            ),
        );
        for daemon in ["slurmctld", "slurmd"] {
            daemons.push(
                Command::new(daemon)
                    .arg("-D")
                    .arg("-f")
                    .arg(&conf)
                    .env("SLURM_CONF", &conf)
                    .current_dir(&dir)
                    .stdin(Stdio::null())
                    .stdout(log(&format!("{daemon}.out")))
                    .stderr(log(&format!("{daemon}.err")))
                    .spawn()
                    .expect("slurmctld and slurmd (scripts/test installs slurm-wlm)"),
            );
        }
        let cluster = SlurmCluster { daemons, conf };
        wait_for(
            || {
                Command::new("sinfo")
                    .args(["-h", "-o", "%T"])
                    .env("SLURM_CONF", &cluster.conf)
                    .output()
                    .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "idle")
            },
            "an idle Slurm node",
        );
        cluster
    }

    /// The environment Slurm's commands (and `osbuild`, which runs them) need.
    pub fn env(&self) -> (&'static str, &Path) {
        ("SLURM_CONF", &self.conf)
    }

    /// The jobs Slurm knows that are not finished.
    pub fn active_jobs(&self) -> Vec<String> {
        let out = Command::new("squeue")
            .args(["-h", "-o", "%i %T"])
            .env("SLURM_CONF", &self.conf)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for SlurmCluster {
    fn drop(&mut self) {
        // slurmd, slurmctld, then munged.
        for daemon in self.daemons.iter_mut().rev() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(daemon.id() as i32),
                nix::sys::signal::SIGTERM,
            );
            let deadline = Instant::now() + Duration::from_secs(10);
            while daemon.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = daemon.kill();
            let _ = daemon.wait();
        }
    }
}

/// Waits (30 s at most) until `ready`.
fn wait_for(ready: impl Fn() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready() {
        assert!(Instant::now() < deadline, "no {what} after 30 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}
