//! What one sandbox may take from the machine: memory, processes, and the
//! size of its scratch file systems.
//!
//! Memory and processes are bounded by a cgroup made for each sandbox: cgroup
//! v2 when the unified hierarchy has the `memory` and `pids` controllers, else
//! the v1 `memory` and `pids` hierarchies (as on hybrid hosts). Without either,
//! memory falls back to `RLIMIT_AS` on the payload and processes are not
//! bounded (`RLIMIT_NPROC` counts every process of the user on the host, and
//! never applies to root anyway). The scratch file systems (`/tmp`,
//! `/var/tmp`, `/dev/shm`) are tmpfs with a `size=`.
//!
//! A cgroup is removed when the sandbox is over; one left by a killed osbuild
//! (empty, its creator gone) is removed by the next sandbox.

use std::fmt;
use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The bounds of one sandbox. `None` means unbounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Memory of every process in the sandbox together (page cache and tmpfs
    /// pages included, as the kernel charges them).
    pub memory: Option<u64>,
    /// Processes and threads in the sandbox at once.
    pub pids: Option<u64>,
    /// The size of `/tmp` and of `/var/tmp` (each; also the tree's `/tmp` for
    /// stages that chroot into it).
    pub tmp: Option<u64>,
    /// The size of `/dev/shm`.
    pub shm: Option<u64>,
}

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

impl Default for Limits {
    /// Enough for a Debian or Fedora image build with room to spare, far
    /// below what would hurt a build machine.
    fn default() -> Limits {
        Limits {
            memory: Some(4 * GIB),
            pids: Some(4096),
            tmp: Some(GIB),
            shm: Some(256 * MIB),
        }
    }
}

/// The names `--limit NAME=VALUE` takes, with what each bounds.
pub const NAMES: &[(&str, &str)] = &[
    ("memory", "memory of the whole sandbox"),
    ("pids", "processes and threads at once"),
    ("tmp", "size of /tmp and of /var/tmp"),
    ("shm", "size of /dev/shm"),
];

impl Limits {
    /// Applies one `NAME=VALUE` (sizes take K, M, G, T suffixes, powers of
    /// 1024; `max` lifts the limit).
    pub fn set(&mut self, spec: &str) -> Result<(), String> {
        let (name, value) = spec
            .split_once('=')
            .ok_or_else(|| format!("`{spec}` is not NAME=VALUE"))?;
        let slot = match name {
            "memory" => &mut self.memory,
            "pids" => &mut self.pids,
            "tmp" => &mut self.tmp,
            "shm" => &mut self.shm,
            _ => {
                let known: Vec<&str> = NAMES.iter().map(|(n, _)| *n).collect();
                return Err(format!("unknown limit `{name}` (known: {})", known.join(", ")));
            }
        };
        *slot = if value == "max" {
            None
        } else if name == "pids" {
            Some(value.parse().map_err(|_| format!("pids={value}: not a number"))?)
        } else {
            Some(parse_size(value).ok_or_else(|| format!("{name}={value}: not a size (say 512M, 4G or max)"))?)
        };
        if *slot == Some(0) {
            return Err(format!(
                "{name}=0 would leave the sandbox nothing; use max for no limit"
            ));
        }
        Ok(())
    }
}

/// `4G`, `512M`, `64k`, `1T`, `4GiB`, or bytes.
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let digits = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let number: u64 = number.parse().ok()?;
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" => 10,
        "m" | "mib" => 20,
        "g" | "gib" => 30,
        "t" | "tib" => 40,
        _ => return None,
    };
    number.checked_mul(1 << shift)
}

/// A size as people read it: `4 GiB`, `256 MiB`, `1000 bytes`.
pub fn show_size(bytes: u64) -> String {
    for (shift, unit) in [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("{} {unit}", bytes >> shift);
        }
    }
    format!("{bytes} bytes")
}

/// A limit a sandbox ran into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitHit {
    /// The kernel killed a process for going over the memory limit.
    Memory(u64),
    /// A fork or clone failed because the sandbox had this many processes.
    Pids(u64),
}

impl fmt::Display for LimitHit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LimitHit::Memory(bytes) => write!(
                f,
                "the stage ran out of memory: the sandbox's limit is {} (raise it with --limit memory=SIZE)",
                show_size(*bytes)
            ),
            LimitHit::Pids(n) => write!(
                f,
                "the stage hit the process limit: at most {n} processes and threads (raise it with --limit pids=N)"
            ),
        }
    }
}

/// Where the cgroup controllers are.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Hierarchy {
    /// The unified hierarchy, with memory and pids enabled for its children.
    V2(PathBuf),
    /// The v1 memory and pids hierarchies.
    V1 { memory: PathBuf, pids: PathBuf },
}

const CGROUP_ROOT: &str = "/sys/fs/cgroup";
const PREFIX: &str = "osbuild.";

fn find_hierarchy(root: &Path) -> Option<Hierarchy> {
    let enabled = fs::read_to_string(root.join("cgroup.subtree_control")).unwrap_or_default();
    let words: Vec<&str> = enabled.split_whitespace().collect();
    if words.contains(&"memory") && words.contains(&"pids") {
        return Some(Hierarchy::V2(root.to_path_buf()));
    }
    let (memory, pids) = (root.join("memory"), root.join("pids"));
    if memory.join("memory.limit_in_bytes").is_file() && pids.join("cgroup.procs").is_file() {
        return Some(Hierarchy::V1 { memory, pids });
    }
    None
}

/// One sandbox's cgroup (one directory per v1 hierarchy). Removed on drop.
#[derive(Debug)]
pub struct Cgroup {
    hierarchy: Hierarchy,
    dirs: Vec<PathBuf>,
    limits: Limits,
}

impl Cgroup {
    /// Makes a cgroup with `limits` (memory and pids), or `None` when the host
    /// has no cgroup hierarchy with those controllers, or neither is bounded.
    pub fn create(limits: &Limits) -> io::Result<Option<Cgroup>> {
        if limits.memory.is_none() && limits.pids.is_none() {
            return Ok(None);
        }
        let Some(hierarchy) = find_hierarchy(Path::new(CGROUP_ROOT)) else {
            return Ok(None);
        };
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "{PREFIX}{}.{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let parents: Vec<&Path> = match &hierarchy {
            Hierarchy::V2(root) => vec![root],
            Hierarchy::V1 { memory, pids } => vec![memory, pids],
        };
        for parent in &parents {
            remove_stale(parent);
        }
        let mut cgroup = Cgroup {
            dirs: Vec::new(),
            hierarchy: hierarchy.clone(),
            limits: *limits,
        };
        for parent in parents {
            let dir = parent.join(&name);
            fs::create_dir(&dir).map_err(|e| context(e, &dir))?;
            cgroup.dirs.push(dir);
        }
        let max = |v: Option<u64>| v.map_or("max".to_string(), |v| v.to_string());
        match &hierarchy {
            Hierarchy::V2(_) => {
                let dir = &cgroup.dirs[0];
                write(&dir.join("memory.max"), &max(limits.memory))?;
                // Without swap the limit means what it says.
                let _ = write(&dir.join("memory.swap.max"), "0");
                write(&dir.join("pids.max"), &max(limits.pids))?;
            }
            Hierarchy::V1 { .. } => {
                if let Some(memory) = limits.memory {
                    write(&cgroup.dirs[0].join("memory.limit_in_bytes"), &memory.to_string())?;
                }
                write(&cgroup.dirs[1].join("pids.max"), &max(limits.pids))?;
            }
        }
        Ok(Some(cgroup))
    }

    /// `cgroup.procs` of each directory, opened for writing: the sandbox's
    /// first process writes "0" to each to move itself (and so everything it
    /// starts) in, before it makes any other process.
    pub fn procs(&self) -> io::Result<Vec<OwnedFd>> {
        self.dirs
            .iter()
            .map(|dir| {
                let path = dir.join("cgroup.procs");
                fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map(OwnedFd::from)
                    .map_err(|e| context(e, &path))
            })
            .collect()
    }

    /// The limit the sandbox ran into, if any (read after it has exited).
    pub fn hit(&self) -> Option<LimitHit> {
        let (memory_events, pids_events) = match &self.hierarchy {
            Hierarchy::V2(_) => (self.dirs[0].join("memory.events"), self.dirs[0].join("pids.events")),
            Hierarchy::V1 { .. } => (
                self.dirs[0].join("memory.oom_control"),
                self.dirs[1].join("pids.events"),
            ),
        };
        if let (Some(limit), Some(n)) = (self.limits.memory, counter(&memory_events, "oom_kill")) {
            if n > 0 {
                return Some(LimitHit::Memory(limit));
            }
        }
        if let (Some(limit), Some(n)) = (self.limits.pids, counter(&pids_events, "max")) {
            if n > 0 {
                return Some(LimitHit::Pids(limit));
            }
        }
        None
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        for dir in &self.dirs {
            // The last processes of a dead pid namespace may take a moment
            // to leave.
            for _ in 0..100 {
                match fs::remove_dir(dir) {
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                        std::thread::sleep(std::time::Duration::from_millis(2))
                    }
                    _ => break,
                }
            }
        }
    }
}

/// Removes the empty cgroups of osbuild processes that are gone.
fn remove_stale(parent: &Path) {
    let Ok(entries) = fs::read_dir(parent) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(PREFIX).and_then(|rest| rest.split('.').next()) else {
            continue;
        };
        let alive = pid
            .parse::<i32>()
            .is_ok_and(|pid| Path::new("/proc").join(pid.to_string()).exists());
        if !alive {
            let _ = fs::remove_dir(entry.path());
        }
    }
}

/// `key N` in a flat-keyed cgroup file.
fn counter(path: &Path, key: &str) -> Option<u64> {
    let text = fs::read_to_string(path).ok()?;
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok())?
    })
}

fn write(path: &Path, value: &str) -> io::Result<()> {
    fs::write(path, value).map_err(|e| context(e, path))
}

fn context(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_names() {
        assert_eq!(parse_size("4G"), Some(4 << 30));
        assert_eq!(parse_size("512MiB"), Some(512 << 20));
        assert_eq!(parse_size("1000"), Some(1000));
        assert_eq!(parse_size("1.5G"), None);
        assert_eq!(parse_size("99999999999T"), None);
        assert_eq!(show_size(4 << 30), "4 GiB");
        assert_eq!(show_size(1000), "1000 bytes");
        let mut limits = Limits::default();
        limits.set("memory=8G").unwrap();
        limits.set("pids=max").unwrap();
        limits.set("tmp=64M").unwrap();
        assert_eq!(limits.memory, Some(8 << 30));
        assert_eq!(limits.pids, None);
        assert_eq!(limits.tmp, Some(64 << 20));
        assert!(limits.set("disk=1G").unwrap_err().contains("unknown limit `disk`"));
        assert!(limits.set("memory=lots").unwrap_err().contains("not a size"));
        assert!(limits.set("shm=0").is_err());
        assert!(limits.set("memory").is_err());
    }

    #[test]
    fn counters_are_read_by_key() {
        let dir = std::env::temp_dir().join(format!("osbuild-limits-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let file = dir.join("memory.oom_control");
        fs::write(&file, "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n").unwrap();
        assert_eq!(counter(&file, "oom_kill"), Some(2));
        assert_eq!(counter(&file, "max"), None);
        fs::remove_dir_all(dir).unwrap();
    }
}
