//! Runs one program isolated from the host: in fresh mount, pid, ipc, uts and
//! (unless asked for the host's) network namespaces, on a read-only root made
//! of a build root, with the tree at `/run/osbuild/tree`, a minimal `/dev`, its
//! own `/proc`, and a reduced set of capabilities.
//!
//! The module knows build roots, trees and payloads, nothing about stages.
//!
//! # Processes
//!
//! ```text
//! caller ── fork ──> A (outermost child, in the caller's pid namespace)
//!                    joins the sandbox's cgroup, becomes non-dumpable and
//!                    wipes the caller's argv and environment in its memory,
//!                    setsid, unshare(NEWNS|NEWPID|NEWIPC|NEWUTS[|NEWNET])
//!                    └─ fork ──> B = PID 1 of the new pid namespace
//!                                 mounts (the plan), pivot_root, hostname, lo,
//!                                 installs the seccomp filter, drops
//!                                 capabilities, sets rlimits
//!                                 └─ fork ──> C = the payload (exec or call)
//! ```
//!
//! `unshare(CLONE_NEWPID)` only puts the *children* of the caller of unshare
//! in the new pid namespace, hence A then B. We use `fork` + `unshare` rather
//! than `clone(CLONE_NEW*)` straight from the caller because glibc's `fork`
//! runs its at-fork handlers (the child's malloc is consistent even if the
//! caller has threads; a raw `clone` child could deadlock allocating), and
//! because A, living in the caller's pid namespace, is what [`Running`]
//! waits for and kills. The extra fork costs tens of microseconds.
//!
//! B reaps every orphan (`waitpid(-1)`) and exits with C's status as soon as C
//! exits; when PID 1 of a pid namespace dies the kernel SIGKILLs everything
//! left in it, so a payload's background processes never outlive it. A exits
//! with B's status. Every level sets `PR_SET_PDEATHSIG(SIGKILL)` and then
//! checks its parent is still there (the parent could have died before the
//! prctl), so if the caller is SIGKILLed the whole sandbox dies too.
//! (`PDEATHSIG` fires when the parent *thread* exits: spawn from a thread
//! that outlives the sandbox, e.g. the main thread.)
//!
//! # Errors
//!
//! A failure in the sandbox before the payload starts (a mount, `pivot_root`,
//! dropping capabilities, the `execve` itself...) is written to the log pipe
//! as one line `osbuild sandbox: <operation> <path>: <error>` and the sandbox
//! exits with [`SETUP_FAILED`] (125), which [`Running::wait`] returns.

mod caps;
mod limits;
mod plan;
mod seccomp;
mod sys;

use std::ffi::CString;
use std::io::{Seek, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

use limits::Cgroup;

pub use caps::{cap, keep_mask, KEEP};
pub use limits::{show_size, LimitHit, Limits};
pub use plan::{
    expand_top_level, flatten, plan, scratch_filesystems, Cond, EntryKind, HostFacts, Op, PlanError, Resolver, CACHE,
    DELTA, HOSTNAME, LIB, OUTPUT, PREFIX, SOURCES, TREE,
};
pub use sys::{execute, RealSys, SetupError, Sys};

/// The exit status of a sandbox whose set-up failed before the payload
/// started (the reason is the last line of the log).
pub const SETUP_FAILED: i32 = 125;

/// What the sandbox's root is made of.
pub enum BuildRoot {
    /// The host: only /usr and /etc are bound read-only; /bin, /sbin, /lib,
    /// /lib32, /lib64, /libx32 are re-created as the same symlinks when they
    /// are symlinks on the host (merged /usr), else bound read-only. Nothing
    /// else of the host (not /root, /home, /work, /var, /srv, /opt, /mnt,
    /// /media, /boot) is visible.
    Host,
    /// A stored tree made of overlayfs layers, bottom first (each a
    /// directory). All its top-level entries (except proc, sys, dev, tmp, run)
    /// become the root, read-only. An empty Vec means an empty tree.
    Layers(Vec<PathBuf>),
}

/// The tree the payload works on, at `/run/osbuild/tree` ([`TREE`]), nodev.
pub enum Tree {
    /// Overlay: `lower` layers bottom first (may be empty: an empty tree),
    /// `upper` and `work` are empty dirs on the same filesystem, writable.
    /// Mounted read-write at /run/osbuild/tree. The caller keeps `upper` as
    /// the diff afterwards (plain: redirect_dir, metacopy and index are off;
    /// deletions are overlayfs whiteouts).
    Writable {
        lower: Vec<PathBuf>,
        upper: PathBuf,
        work: PathBuf,
    },
    /// Overlay of `lower` (bottom first) with no upper: read-only at
    /// /run/osbuild/tree.
    ReadOnly { lower: Vec<PathBuf> },
}

/// Everything a sandbox is made of.
pub struct Spec {
    pub build_root: BuildRoot,
    pub tree: Tree,
    /// Bound read-write at /run/osbuild/output (assemblers).
    pub output: Option<PathBuf>,
    /// Bound read-only at /run/osbuild/lib (user-supplied stage executables
    /// live there).
    pub libdir: Option<PathBuf>,
    /// true: share the host's network namespace. false: a new network
    /// namespace with only `lo`, brought up.
    pub network: bool,
    /// Bound read-write at /run/osbuild/cache: a directory that outlives the
    /// build (downloaded packages), for the stages that ask for one.
    pub cache: Option<PathBuf>,
    /// Bound read-only at /run/osbuild/sources: the verified files a locked
    /// package stage installs from.
    pub sources: Option<PathBuf>,
    /// Bound read-only at /run/osbuild/prefix: what the assembler made for
    /// the prefix tree, for the image it builds on it.
    pub prefix: Option<PathBuf>,
    /// Bound read-only at /run/osbuild/delta.json: a file, what the stages
    /// after the prefix changed.
    pub delta: Option<PathBuf>,
    /// Mount /proc, /dev and /tmp inside the (writable) tree too, for stages
    /// that chroot into it to run the tree's own programs (dpkg maintainer
    /// scripts expect them). The stage cannot mount them itself: it has no
    /// CAP_SYS_ADMIN.
    pub tree_mounts: bool,
    /// An empty directory of the caller's on the host that the sandbox may
    /// fill (mount points, layer symlinks, an empty lower dir). The caller
    /// deletes it afterwards. The sandbox mounts a small tmpfs over it, in
    /// its own mount namespace only, and builds everything there: seen from
    /// the host it stays empty and nothing is written to the caller's disk.
    pub scratch: PathBuf,
    /// What the sandbox may take: memory, processes, scratch space.
    pub limits: Limits,
}

/// What runs in the sandbox.
pub enum Payload {
    /// Exec a program by its path inside the sandbox (`argv[0]`, absolute,
    /// e.g. "/run/osbuild/lib/stages/foo" or "/usr/bin/tar"), with `stdin` fed
    /// as the program's standard input (a memfd, so any size works) and
    /// exactly this environment (env is cleared first).
    Exec {
        argv: Vec<String>,
        stdin: Vec<u8>,
        env: Vec<(String, String)>,
    },
    /// Run a function in the sandboxed child (after all mounts, pivot_root and
    /// capability dropping), no exec; its return value is the exit status. A
    /// panic exits with 101. stdin is /dev/null; the environment is the
    /// caller's (the function sets its own). Used for built-in stages compiled
    /// into our binary, so they work in any build root.
    Call(Box<dyn FnOnce() -> i32>),
}

/// A started sandbox. Dropping it without [`Running::wait`] kills and reaps it.
pub struct Running {
    /// The outermost child (A), in the caller's pid namespace.
    pid: Pid,
    /// Read end of the log pipe.
    log: OwnedFd,
    reaped: bool,
    /// Bounds memory and processes; removed after the sandbox is reaped
    /// (fields drop after [`Drop::drop`] has run).
    cgroup: Option<Cgroup>,
}

/// How a sandbox ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    /// 0 success, n the payload's exit code, 128+signo a signal, or
    /// [`SETUP_FAILED`].
    pub code: i32,
    /// A limit of its cgroup it ran into (the likely reason it failed).
    pub limit: Option<LimitHit>,
}

impl Running {
    /// Read end of a pipe that carries the payload's stdout and stderr,
    /// merged. EOF means every process in the sandbox has exited. The caller
    /// polls it (together with its own signalfd) and reads it. Close-on-exec.
    pub fn log(&self) -> BorrowedFd<'_> {
        self.log.as_fd()
    }

    /// The pid of the outermost sandbox process, in the caller's namespace.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// SIGKILL the whole sandbox: A dies, B (PID 1 of the pid namespace) gets
    /// SIGKILL from its parent-death signal, and with it every process in the
    /// namespace; mounts vanish with the mount namespace. The log reaches EOF
    /// once they are all gone; then [`Running::wait`] returns 128+9.
    pub fn kill(&self) {
        let _ = nix::sys::signal::kill(self.pid, Signal::SIGKILL);
    }

    /// Wait for the payload's result: code 0 success, n exit code n, signal
    /// death as 128+signo, [`SETUP_FAILED`] if the sandbox couldn't be set
    /// up; and a limit it hit. The caller reads the log to EOF first, then
    /// calls this.
    pub fn wait(mut self) -> std::io::Result<Exit> {
        let code = reap(self.pid)?;
        self.reaped = true;
        let limit = match code {
            0 => None,
            _ => self.cgroup.as_ref().and_then(Cgroup::hit),
        };
        Ok(Exit { code, limit })
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.reaped {
            self.kill();
            let _ = reap(self.pid);
        }
    }
}

fn reap(pid: Pid) -> std::io::Result<i32> {
    loop {
        match waitpid(pid, None) {
            Ok(status) => {
                if let Some(code) = exit_code(status) {
                    return Ok(code);
                }
            }
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(std::io::Error::from(e)),
        }
    }
}

/// The shell's convention: exit code, or 128+signal.
fn exit_code(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, code) => Some(code),
        WaitStatus::Signaled(_, signal, _) => Some(128 + signal as i32),
        _ => None,
    }
}

fn err(context: &str, e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(format!("{context}: {e}"))
}

/// An exec'd payload, ready before forking.
struct Exec {
    path: CString,
    argv: Vec<CString>,
    env: Vec<CString>,
}

fn prepare_exec(argv: &[String], env: &[(String, String)]) -> std::io::Result<Exec> {
    let invalid = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidInput, what.to_string());
    if argv.is_empty() {
        return Err(invalid("the payload's argv is empty"));
    }
    let argv = argv
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| invalid("the payload's argv holds a NUL byte"))?;
    let env = env
        .iter()
        .map(|(k, v)| {
            if k.is_empty() || k.contains('=') {
                return Err(invalid("the payload's environment holds an invalid name"));
            }
            CString::new(format!("{k}={v}")).map_err(|_| invalid("the payload's environment holds a NUL byte"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Exec {
        path: argv[0].clone(),
        argv,
        env,
    })
}

fn memfd_with(bytes: &[u8]) -> std::io::Result<OwnedFd> {
    let fd = nix::sys::memfd::memfd_create(c"osbuild-stdin", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
        .map_err(|e| err("creating the stdin memfd", e))?;
    let mut file = std::fs::File::from(fd);
    file.write_all(bytes).map_err(|e| err("filling the stdin memfd", e))?;
    file.rewind().map_err(|e| err("rewinding the stdin memfd", e))?;
    Ok(OwnedFd::from(file))
}

/// Starts `payload` in a new sandbox described by `spec`.
///
/// Errors here are the caller's side (a spec that can't be planned, no fork);
/// failures inside the sandbox come back as [`SETUP_FAILED`] and a log line.
pub fn spawn(spec: &Spec, payload: Payload) -> std::io::Result<Running> {
    let mut host = match spec.build_root {
        BuildRoot::Host => HostFacts::probe(),
        BuildRoot::Layers(_) => HostFacts::default(),
    };
    if spec.network {
        host.resolver = Resolver::probe(Path::new("/etc"));
    }
    let ops = plan(spec, &host).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let filter = seccomp::program().map_err(std::io::Error::other)?;
    let cgroup = Cgroup::create(&spec.limits).map_err(|e| err("creating the sandbox's cgroup", e))?;
    let cgroup_procs = match &cgroup {
        Some(cgroup) => cgroup.procs()?,
        None => Vec::new(),
    };
    let scratch = scratch_filesystems(spec)
        .into_iter()
        .map(|(path, name, size)| {
            let path = CString::new(path).expect("no NUL in a constant");
            (path, name, size)
        })
        .collect();
    let (run, stdin) = match payload {
        Payload::Exec { argv, stdin, env } => (Run::Exec(prepare_exec(&argv, &env)?), Some(memfd_with(&stdin)?)),
        Payload::Call(f) => (Run::Call(f), None),
    };
    let (log_r, log_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| err("creating the log pipe", e))?;
    let mut flags =
        CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWIPC | CloneFlags::CLONE_NEWUTS;
    if !spec.network {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    let child = Child {
        caller: nix::unistd::getpid(),
        flags,
        ops,
        log: log_w.as_raw_fd(),
        stdin: stdin.as_ref().map(|fd| fd.as_raw_fd()),
        cgroup_procs: cgroup_procs.iter().map(|fd| fd.as_raw_fd()).collect(),
        filter,
        network: spec.network,
        // Without a cgroup, memory is bounded per process.
        address_space: if cgroup.is_none() { spec.limits.memory } else { None },
        scratch,
        run,
    };
    // SAFETY: the child only runs `outer`, which never returns (it ends in
    // _exit); see the module doc on why fork is fine with threads in glibc.
    match unsafe { fork() }.map_err(|e| err("forking the sandbox", e))? {
        ForkResult::Child => outer(child),
        ForkResult::Parent { child: pid } => {
            // `child` (with the payload) is dropped here, in the caller.
            drop(log_w);
            drop(stdin);
            drop(cgroup_procs);
            Ok(Running {
                pid,
                log: log_r,
                reaped: false,
                cgroup,
            })
        }
    }
}

enum Run {
    Exec(Exec),
    Call(Box<dyn FnOnce() -> i32>),
}

/// What the forked children need, prepared by the caller.
struct Child {
    caller: Pid,
    flags: CloneFlags,
    ops: Vec<Op>,
    /// The write end of the log pipe (the caller's fd number).
    log: RawFd,
    /// The stdin memfd (the caller's fd number), for Exec.
    stdin: Option<RawFd>,
    /// `cgroup.procs` of the sandbox's cgroup(s), open for writing.
    cgroup_procs: Vec<RawFd>,
    /// Installed by B just before it starts the payload.
    filter: &'static seccompiler::BpfProgram,
    /// Whether the sandbox has the host's network (fewer capabilities).
    network: bool,
    /// `RLIMIT_AS` for the payload when there is no cgroup.
    address_space: Option<u64>,
    /// The bounded tmpfs mounts (path inside, limit name, size), to name the
    /// one that filled up when the payload fails.
    scratch: Vec<(CString, &'static str, u64)>,
    run: Run,
}

/// In the children, after fd 3 holds the stdin memfd (if any).
const STDIN_FD: RawFd = 3;

fn write_fd(fd: RawFd, msg: &str) {
    let line = format!("osbuild sandbox: {msg}\n");
    let mut bytes = line.as_bytes();
    while !bytes.is_empty() {
        // SAFETY: writing a buffer we own to a raw fd.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if n < 0 && Errno::last() == Errno::EINTR {
            continue;
        }
        if n <= 0 {
            return;
        }
        bytes = &bytes[n as usize..];
    }
}

/// Reports a set-up failure on stderr (the log pipe) and exits 125.
fn die(msg: &str) -> ! {
    write_fd(2, msg);
    exit(SETUP_FAILED)
}

fn exit(code: i32) -> ! {
    // SAFETY: _exit: no atexit handlers, no flushing of the caller's buffers
    // copied by fork.
    unsafe { libc::_exit(code) }
}

/// PR_SET_PDEATHSIG(SIGKILL). Returns false if the parent already died.
fn die_with_parent(alive: impl FnOnce() -> bool) -> bool {
    if nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).is_err() {
        return false;
    }
    alive()
}

fn close_from(first: RawFd) {
    // SAFETY: close_range on fds this process owns (all of them, after fork).
    let r = unsafe { libc::syscall(libc::SYS_close_range, first as libc::c_uint, libc::c_uint::MAX, 0) };
    if r == 0 {
        return;
    }
    // Kernels before 5.9: close what /proc/self/fd lists.
    let fds: Vec<RawFd> = match std::fs::read_dir("/proc/self/fd") {
        Ok(dir) => dir
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .filter(|fd| *fd >= first)
            .collect(),
        Err(_) => (first..1024).collect(),
    };
    for fd in fds {
        // SAFETY: closing an fd of ours (one may be the read_dir's, gone).
        unsafe { libc::close(fd) };
    }
}

fn reset_signals() {
    for signo in 1..=64 {
        if signo == libc::SIGKILL || signo == libc::SIGSTOP {
            continue;
        }
        // SAFETY: resetting a disposition to the default; invalid numbers
        // (glibc's internal real-time signals) just fail.
        unsafe { libc::signal(signo, libc::SIG_DFL) };
    }
    let _ = nix::sys::signal::sigprocmask(nix::sys::signal::SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
}

/// A: the outermost child, still in the caller's namespaces.
fn outer(child: Child) -> ! {
    let caller = child.caller;
    if !die_with_parent(|| nix::unistd::getppid() == caller) {
        exit(SETUP_FAILED);
    }
    // Into the cgroup before anything else runs, so every process of the
    // sandbox is in it.
    for fd in &child.cgroup_procs {
        // SAFETY: writing a buffer we own to an fd of ours.
        if unsafe { libc::write(*fd, b"0".as_ptr().cast(), 1) } != 1 {
            write_fd(
                child.log,
                &format!("joining the sandbox's cgroup: {}", Errno::last().desc()),
            );
            exit(SETUP_FAILED);
        }
    }
    // Nothing in the sandbox may read the caller's memory: not its
    // environment or command line through /proc/PID/{environ,cmdline,mem},
    // not by ptrace. A non-dumpable process's /proc files are closed to
    // processes without CAP_SYS_PTRACE (none in the sandbox has it), and it
    // can't be traced; the flag survives fork, so B and a built-in payload
    // have it too (an exec'd payload gets it back: its memory is its own).
    // /proc/PID/cmdline stays readable, so the arguments and environment in
    // our copy of the caller's memory are wiped as well.
    if nix::sys::prctl::set_dumpable(false).is_err() {
        write_fd(child.log, "making the sandbox non-dumpable failed");
        exit(SETUP_FAILED);
    }
    wipe_arguments_and_environment();
    // Its own session and process group: the terminal's Ctrl-C reaches only
    // the caller, which decides what to do with the sandbox.
    let _ = nix::unistd::setsid();

    // File descriptors: 0 = /dev/null, 1 and 2 = the log, 3 = the stdin
    // memfd; nothing else of the caller's survives. Move the ones we keep out
    // of the way first, in case the caller had 0-3 closed and pipe2/memfd
    // returned such low numbers.
    // SAFETY: fcntl/open/dup2 on raw fds owned by this (forked) process.
    unsafe {
        let log = libc::fcntl(child.log, libc::F_DUPFD_CLOEXEC, 10);
        if log < 0 {
            write_fd(
                child.log,
                &format!("duplicating the log pipe: {}", Errno::last().desc()),
            );
            exit(SETUP_FAILED);
        }
        let stdin = child.stdin.map(|fd| libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10));
        if libc::dup2(log, 1) < 0 || libc::dup2(log, 2) < 0 {
            write_fd(log, &format!("redirecting to the log pipe: {}", Errno::last().desc()));
            exit(SETUP_FAILED);
        }
        match stdin {
            Some(fd) if fd < 0 || libc::dup2(fd, STDIN_FD) < 0 => {
                die(&format!("duplicating the stdin memfd: {}", Errno::last().desc()))
            }
            _ => {}
        }
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
        if null < 0 || libc::dup2(null, 0) < 0 {
            die(&format!("opening /dev/null: {}", Errno::last().desc()));
        }
    }
    close_from(if child.stdin.is_some() { STDIN_FD + 1 } else { STDIN_FD });
    // The caller blocks SIGINT, SIGTERM, SIGHUP, SIGCHLD for its signalfd and
    // Rust ignores SIGPIPE: the sandbox starts from the defaults.
    reset_signals();

    if let Err(e) = nix::sched::unshare(child.flags) {
        die(&format!("creating namespaces (unshare): {}", e.desc()));
    }
    // B's way of knowing A is still alive after setting its PDEATHSIG: B's
    // getppid() is 0 (A is outside B's pid namespace), so A holds the write
    // end of this pipe; it reads as hung up once A is gone.
    let (alive_r, alive_w) = match nix::unistd::pipe2(OFlag::O_CLOEXEC) {
        Ok(pair) => pair,
        Err(e) => die(&format!("creating a pipe: {}", e.desc())),
    };
    // SAFETY: as in spawn: the child ends in _exit.
    match unsafe { fork() } {
        Err(e) => die(&format!("forking PID 1: {}", e.desc())),
        Ok(ForkResult::Child) => {
            drop(alive_w);
            init(child, alive_r)
        }
        Ok(ForkResult::Parent { child: pid }) => {
            drop(alive_r);
            // A needs no fds but the liveness pipe: the log's EOF must not
            // wait for A.
            for fd in 0..=STDIN_FD {
                // SAFETY: closing our own fds.
                unsafe { libc::close(fd) };
            }
            let code = reap(pid).unwrap_or(SETUP_FAILED);
            drop(alive_w);
            exit(code)
        }
    }
}

/// B: PID 1 of the new pid namespace.
fn init(child: Child, alive: OwnedFd) -> ! {
    if !die_with_parent(|| {
        let mut fds = [nix::poll::PollFd::new(alive.as_fd(), nix::poll::PollFlags::POLLIN)];
        matches!(nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO), Ok(0))
    }) {
        exit(SETUP_FAILED);
    }
    drop(alive);

    if let Err(e) = execute(&mut RealSys, &child.ops) {
        die(&e.to_string());
    }
    // While we still have CAP_SYS_ADMIN, which lets us install it without
    // PR_SET_NO_NEW_PRIVS.
    if let Err(e) = seccomp::install(child.filter) {
        die(&e);
    }
    if let Err(e) = caps::drop_all_but_keep(child.network) {
        die(&e);
    }
    if let Err(e) = set_rlimits(child.address_space) {
        die(&e);
    }
    // SAFETY: as in spawn: the child ends in _exit.
    let payload = match unsafe { fork() } {
        Err(e) => die(&format!("forking the payload: {}", e.desc())),
        Ok(ForkResult::Child) => payload(child),
        Ok(ForkResult::Parent { child: pid }) => pid,
    };
    // SAFETY: closing our own fds (stdin and the memfd; 1, 2 stay for errors).
    unsafe {
        libc::close(0);
        libc::close(STDIN_FD);
    }
    // Reap everything (orphans are re-parented to us); leave with the payload.
    loop {
        match waitpid(None::<Pid>, None) {
            Ok(status) if status.pid() == Some(payload) => {
                if let Some(code) = exit_code(status) {
                    if code != 0 {
                        report_full_scratch(&child.scratch);
                    }
                    // Our exit makes the kernel SIGKILL the rest of the namespace.
                    exit(code);
                }
            }
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => die(&format!("waiting for the payload: {}", e.desc())),
        }
    }
}

/// Overwrites the command line and environment strings this process
/// inherited (its copy of the caller's memory), and empties `environ`.
fn wipe_arguments_and_environment() {
    // /proc/self/stat fields 48 to 51: arg_start, arg_end, env_start, env_end.
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return;
    };
    let Some((_, after_comm)) = stat.rsplit_once(')') else {
        return;
    };
    // The first field after the command's name is field 3.
    let fields: Vec<usize> = after_comm
        .split_whitespace()
        .skip(45)
        .take(4)
        .filter_map(|f| f.parse().ok())
        .collect();
    if let [arg_start, arg_end, env_start, env_end] = fields[..] {
        for (start, end) in [(arg_start, arg_end), (env_start, env_end)] {
            if start != 0 && end > start {
                // SAFETY: the kernel reports these as this process's own
                // argument and environment areas (on the stack, writable);
                // nothing reads them after this, in this process.
                unsafe { std::ptr::write_bytes(start as *mut u8, 0, end - start) };
            }
        }
        // What `ps` shows for the sandbox's own processes.
        let name = b"osbuild-sandbox";
        if arg_end - arg_start > name.len() {
            // SAFETY: within the argument area, as above.
            unsafe { std::ptr::copy_nonoverlapping(name.as_ptr(), arg_start as *mut u8, name.len()) };
        }
    }
    // SAFETY: clearenv in a single-threaded child; a built-in payload sets
    // its own environment later.
    unsafe { libc::clearenv() };
}

/// Core dumps off (the host's core handler must not receive a stage's
/// memory), and the address space bounded when no cgroup bounds memory.
fn set_rlimits(address_space: Option<u64>) -> Result<(), String> {
    use nix::sys::resource::{setrlimit, Resource};
    setrlimit(Resource::RLIMIT_CORE, 0, 0).map_err(|e| format!("setting RLIMIT_CORE: {}", e.desc()))?;
    if let Some(bytes) = address_space {
        setrlimit(Resource::RLIMIT_AS, bytes, bytes).map_err(|e| format!("setting RLIMIT_AS: {}", e.desc()))?;
    }
    Ok(())
}

/// After a failed payload: names each bounded tmpfs that is (nearly) full,
/// since the payload's own message ("No space left on device") does not say
/// which limit it was.
fn report_full_scratch(scratch: &[(CString, &'static str, u64)]) {
    for (path, name, size) in scratch {
        let Ok(stat) = nix::sys::statvfs::statvfs(path.as_c_str()) else {
            continue;
        };
        let free = stat.blocks_available() * stat.fragment_size();
        if free < (1 << 20).min(*size / 100 + 1) {
            write_fd(
                2,
                &format!(
                    "{} is full: its limit is {} (raise it with --limit {name}=SIZE)",
                    path.to_string_lossy(),
                    show_size(*size)
                ),
            );
        }
    }
}

/// C: the payload, child of PID 1.
fn payload(child: Child) -> ! {
    if !die_with_parent(|| nix::unistd::getppid() == Pid::from_raw(1)) {
        exit(SETUP_FAILED);
    }
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    // SAFETY: dup2/open/close on fds owned by this process.
    unsafe {
        match child.run {
            Run::Exec(_) => {
                if libc::dup2(STDIN_FD, 0) < 0 {
                    die(&format!("setting up stdin: {}", Errno::last().desc()));
                }
            }
            Run::Call(_) => {
                let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY);
                if null < 0 || libc::dup2(null, 0) < 0 {
                    die(&format!("opening /dev/null: {}", Errno::last().desc()));
                }
            }
        }
    }
    close_from(STDIN_FD);
    match child.run {
        Run::Exec(exec) => {
            let e = nix::unistd::execve(&exec.path, &exec.argv, &exec.env).unwrap_err();
            let path = std::ffi::OsStr::from_bytes(exec.path.as_bytes());
            die(&format!(
                "executing {}: {}",
                std::path::Path::new(path).display(),
                e.desc()
            ))
        }
        Run::Call(f) => {
            let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(101);
            let _ = std::io::stdout().flush();
            let _ = std::io::stderr().flush();
            exit(code)
        }
    }
}
