//! The sandbox's filesystem set-up as a pure plan.
//!
//! [`plan`] turns a [`Spec`] (plus a few facts about the host, gathered
//! beforehand by [`HostFacts::probe`]) into a list of [`Op`]s. Nothing here
//! touches the system, so the unit tests at the bottom check the plan without
//! root. [`super::sys::execute`] carries it out through the [`super::sys::Sys`]
//! trait, whose real implementation calls the kernel.
//!
//! Layout of `scratch` (all of it on a tmpfs mounted over `scratch` in the
//! sandbox's mount namespace, so the caller's directory stays empty):
//!
//! * `scratch/l/`: short symlinks to the layers (`b0`, `b1`, ... for the build
//!   root, `t0`, `t1`, ... for the tree, `u` and `w` for the tree's upper and
//!   work dirs) and `e`, an empty directory used as the only lower layer of an
//!   empty tree. The overlay mounts run with this as the current directory so
//!   that `lowerdir=` holds short relative names (see [`OVERLAY_DATA_MAX`]).
//! * `scratch/root/`: where the new root's tmpfs is mounted and assembled.
//! * `scratch/broot/`: where a [`BuildRoot::Layers`] overlay is mounted, before
//!   its top-level entries are bound into the new root.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;

use super::{BuildRoot, Spec, Tree};

/// Where the tree is mounted inside the sandbox.
pub const TREE: &str = "/run/osbuild/tree";
/// Where the output directory is bound inside the sandbox.
pub const OUTPUT: &str = "/run/osbuild/output";
/// Where a stage's cache directory is bound inside the sandbox.
pub const CACHE: &str = "/run/osbuild/cache";
/// Where the libdir is bound inside the sandbox.
pub const LIB: &str = "/run/osbuild/lib";
/// Where a locked stage's verified sources are bound, read-only.
pub const SOURCES: &str = osbuild_stages::offline::SOURCES;
/// Where an assembler's work for the prefix tree is bound, read-only.
pub const PREFIX: &str = osbuild_stages::assembly::PREFIX;
/// Where the delta file of an image built on that work is bound, read-only.
pub const DELTA: &str = osbuild_stages::assembly::DELTA;
/// The sandbox's hostname.
pub const HOSTNAME: &str = "osbuild";

/// Mount data is copied by the kernel into a single page (`copy_mount_options`
/// takes at most `PAGE_SIZE` bytes, the rest is silently cut off), so an
/// overlay's option string must stay below 4096 bytes. Layer paths are long;
/// the short relative names under `scratch/l` keep 400+ layers well within it
/// (overlayfs itself stacks at most 500 lower layers, `OVL_MAX_STACK`).
pub const OVERLAY_DATA_MAX: usize = 4095;

/// Top-level names of a layered build root that are never bound: the sandbox
/// provides its own `/proc`, `/dev`, `/tmp` and `/run`, and no `/sys` at all.
pub const BUILD_ROOT_SKIP: &[&str] = &["proc", "sys", "dev", "tmp", "run"];

/// The host directories that may be symlinks into `/usr` (merged `/usr`).
pub const HOST_LINKS: &[&str] = &["bin", "sbin", "lib", "lib32", "lib64", "libx32"];

/// What a directory entry is (`lstat`, symlinks not followed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    Dir,
    File,
    Symlink(PathBuf),
    /// A device, socket or fifo: never bound.
    Other,
}

/// Files of the host's `/etc` that hold its secrets: hidden from every stage
/// that runs on the host as its build root (an empty file or directory is
/// bound over each). A stage that needs one of them is asking for too much.
pub const HOST_SECRETS: &[&str] = &[
    "shadow",
    "shadow-",
    "gshadow",
    "gshadow-",
    "security/opasswd",
    "ssl/private",
    "munge/munge.key",
    "krb5.keytab",
    "ipsec.secrets",
    "ppp/chap-secrets",
    "ppp/pap-secrets",
    "wireguard",
    "NetworkManager/system-connections",
    "credstore",
    "credstore.encrypted",
];

/// What the plan needs to know about the host, gathered before forking.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostFacts {
    /// For each of [`HOST_LINKS`] that exists on the host: what it is.
    pub links: Vec<(String, EntryKind)>,
    /// The host's secret files and directories under `/etc` (relative to
    /// it) that exist: [`HOST_SECRETS`] and the SSH host keys. Only regular
    /// files ([`EntryKind::File`]) and directories ([`EntryKind::Dir`]).
    pub secrets: Vec<(PathBuf, EntryKind)>,
    /// The host's DNS resolver configuration, for a stage with network
    /// (probed only for those).
    pub resolver: Option<Resolver>,
}

/// The host's `/etc/resolv.conf`, which a stage with network resolves
/// names with, whatever its build root has: a tree made by debootstrap has
/// none, one with systemd-resolved points into a `/run` that the sandbox
/// makes empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolver {
    /// What it says, symlinks followed.
    pub contents: Vec<u8>,
    /// Where it points when it is a symlink into `/run` (systemd-resolved's
    /// stub file): the absolute path, which the sandbox's `/run` must hold.
    pub run_target: Option<PathBuf>,
}

/// A resolv.conf is a few lines; more is not one.
const RESOLV_CONF_MAX: u64 = 64 << 10;

impl Resolver {
    /// Reads `etc/resolv.conf`; None when there is none (or it is no file).
    pub fn probe(etc: &Path) -> Option<Resolver> {
        let path = etc.join("resolv.conf");
        let file = std::fs::File::open(&path).ok()?;
        let mut contents = Vec::new();
        std::io::Read::read_to_end(&mut std::io::Read::take(file, RESOLV_CONF_MAX), &mut contents).ok()?;
        let run_target = std::fs::read_link(&path).ok().and_then(|link| {
            let absolute = normalize(&Path::new("/etc").join(link));
            let absolute = match absolute.strip_prefix("/var/run") {
                Ok(rest) => Path::new("/run").join(rest),
                Err(_) => absolute,
            };
            // Not where the sandbox mounts its own things.
            let ours = absolute == Path::new("/run") || absolute.starts_with("/run/osbuild");
            (absolute.starts_with("/run") && !ours).then_some(absolute)
        });
        Some(Resolver { contents, run_target })
    }
}

/// `path` with `.` and `..` taken out, lexically (`/..` is `/`).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::Normal(name) => out.push(name),
            _ => {}
        }
    }
    out
}

impl HostFacts {
    /// Looks at `/bin`, `/sbin`, `/lib*` on the host.
    pub fn probe() -> HostFacts {
        let mut links = Vec::new();
        for name in HOST_LINKS {
            let path = Path::new("/").join(name);
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            let kind = if meta.file_type().is_symlink() {
                match std::fs::read_link(&path) {
                    Ok(target) => EntryKind::Symlink(target),
                    Err(_) => continue,
                }
            } else if meta.is_dir() {
                EntryKind::Dir
            } else {
                continue;
            };
            links.push((name.to_string(), kind));
        }
        HostFacts {
            links,
            secrets: probe_secrets(Path::new("/etc")),
            resolver: None,
        }
    }
}

/// The secrets that exist under `etc`: [`HOST_SECRETS`], and every
/// `ssh/ssh_host_*` key but the public ones.
fn probe_secrets(etc: &Path) -> Vec<(PathBuf, EntryKind)> {
    let mut names: Vec<PathBuf> = HOST_SECRETS.iter().map(PathBuf::from).collect();
    if let Ok(entries) = std::fs::read_dir(etc.join("ssh")) {
        let mut keys: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with("ssh_host_") && !name.ends_with(".pub"))
            .map(|name| Path::new("ssh").join(name))
            .collect();
        keys.sort();
        names.extend(keys);
    }
    names
        .into_iter()
        .filter_map(|name| {
            let meta = std::fs::symlink_metadata(etc.join(&name)).ok()?;
            let kind = if meta.is_dir() {
                EntryKind::Dir
            } else if meta.is_file() {
                EntryKind::File
            } else {
                return None;
            };
            Some((name, kind))
        })
        .collect()
}

/// A condition checked at execution time with `lstat` (never following a
/// symlink, so a symlink in a build root can't redirect a mount elsewhere).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cond {
    /// The path is a real directory.
    Dir,
    /// The path exists (any type, a dangling symlink included).
    Exists,
}

/// One step of the set-up. Executed in order by [`super::sys::execute`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `umask(mode)`: 0 during set-up so the modes below are exact.
    Umask(u32),
    /// `mount(NULL, "/", NULL, MS_REC|MS_PRIVATE)`. A new mount namespace is a
    /// copy of the parent's, and on systemd hosts `/` is a *shared* mount:
    /// without this, every mount made below would propagate back to the host's
    /// namespace (mount propagation crosses namespaces through peer groups).
    MakePrivate,
    /// `mkdir(path, mode)`; an existing directory is fine.
    Mkdir { path: PathBuf, mode: u32 },
    /// `symlink(target, link)`.
    Symlink { target: PathBuf, link: PathBuf },
    /// Create an empty regular file (a bind-mount target for a file).
    CreateFile { path: PathBuf, mode: u32 },
    /// A new file at `path` holding `contents` (`O_CREAT|O_EXCL`), mode
    /// `mode` (less the umask, which the set-up makes 0).
    WriteFile {
        path: PathBuf,
        mode: u32,
        contents: Vec<u8>,
    },
    /// `mknod(path, S_IFCHR|mode, makedev(major, minor))`.
    Mknod {
        path: PathBuf,
        mode: u32,
        major: u64,
        minor: u64,
    },
    /// `mount(source, target, fstype, flags, data)`. With `MS_BIND` the kernel
    /// ignores every other flag but `MS_REC` (a new bind copies the source
    /// mount's flags), hence the [`Op::Remount`] that follows each bind.
    Mount {
        source: Option<PathBuf>,
        target: PathBuf,
        fstype: Option<String>,
        flags: MsFlags,
        data: Option<String>,
    },
    /// `mount(NULL, target, NULL, MS_REMOUNT|MS_BIND|flags, NULL)`: changes
    /// only the per-mount flags of the mount at `target` (not the superblock).
    /// The executor ORs in the flags the mount already has (from `statvfs`),
    /// since a remount replaces them all: `nosuid` etc. must not be lost.
    Remount { target: PathBuf, flags: MsFlags },
    /// `chdir(path)`. Overlay resolves relative `lowerdir` names against the
    /// mounting process's working directory.
    Chdir(PathBuf),
    /// For each top-level entry of `from` (a mounted read-only overlay) that
    /// is not in `skip`: a directory is bound read-only at `to/name`, a
    /// regular file likewise, a symlink is re-created, anything else is
    /// skipped. Expanded at execution time by [`expand_top_level`] from the
    /// directory's listing (the overlay only exists then).
    BindTopLevel {
        from: PathBuf,
        to: PathBuf,
        skip: Vec<String>,
    },
    /// Run `then` if `path` satisfies `cond`, else `otherwise`.
    If {
        path: PathBuf,
        cond: Cond,
        then: Vec<Op>,
        otherwise: Vec<Op>,
    },
    /// With the new root as the working directory: `pivot_root(".", ".")`,
    /// which stacks the old root on top of the new one at `/`, then
    /// `umount2(".", MNT_DETACH)` to detach the old root (and every host
    /// mount under it) lazily, then `chdir("/")`. No `put_old` directory is
    /// needed. `pivot_root` requires the new root to be a mount point (it
    /// moves whole mounts, not directories) that is not the current root and
    /// whose parent mount isn't shared: our tmpfs, after [`Op::MakePrivate`].
    PivotRoot,
    /// `sethostname` (the UTS namespace is the sandbox's own).
    Hostname(String),
    /// Bring `lo` up in the sandbox's own network namespace (it starts down).
    LoopbackUp,
}

fn show_flags(flags: MsFlags) -> String {
    let names = [
        (MsFlags::MS_BIND, "bind"),
        (MsFlags::MS_REC, "rec"),
        (MsFlags::MS_RDONLY, "ro"),
        (MsFlags::MS_NODEV, "nodev"),
        (MsFlags::MS_NOSUID, "nosuid"),
        (MsFlags::MS_NOEXEC, "noexec"),
        (MsFlags::MS_PRIVATE, "private"),
    ];
    let shown: Vec<&str> = names
        .iter()
        .filter(|(f, _)| flags.contains(*f))
        .map(|(_, n)| *n)
        .collect();
    if shown.is_empty() {
        "rw".into()
    } else {
        shown.join(",")
    }
}

impl fmt::Display for Op {
    /// How an operation is named in an error message.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Umask(mode) => write!(f, "umask {mode:03o}"),
            Op::MakePrivate => write!(f, "making / recursively private"),
            Op::Mkdir { path, .. } => write!(f, "creating directory {}", path.display()),
            Op::Symlink { target, link } => {
                write!(f, "creating symlink {} -> {}", link.display(), target.display())
            }
            Op::CreateFile { path, .. } => write!(f, "creating file {}", path.display()),
            Op::WriteFile { path, .. } => write!(f, "writing file {}", path.display()),
            Op::Mknod { path, major, minor, .. } => {
                write!(f, "creating device node {} ({major}:{minor})", path.display())
            }
            Op::Mount {
                source,
                target,
                fstype,
                flags,
                data,
            } => {
                if flags.contains(MsFlags::MS_BIND) {
                    let source = source.as_deref().unwrap_or(Path::new("?"));
                    write!(f, "binding {} on {}", source.display(), target.display())
                } else {
                    let fstype = fstype.as_deref().unwrap_or("?");
                    write!(f, "mounting {fstype} on {} ({}", target.display(), show_flags(*flags))?;
                    if let Some(data) = data {
                        let mut data = data.clone();
                        if data.len() > 160 {
                            let mut cut = 160;
                            while !data.is_char_boundary(cut) {
                                cut -= 1;
                            }
                            data.truncate(cut);
                            data.push_str("...");
                        }
                        write!(f, ",{data}")?;
                    }
                    write!(f, ")")
                }
            }
            Op::Remount { target, flags } => {
                write!(f, "remounting {} ({})", target.display(), show_flags(*flags))
            }
            Op::Chdir(path) => write!(f, "changing directory to {}", path.display()),
            Op::BindTopLevel { from, to, .. } => {
                write!(f, "binding the entries of {} into {}", from.display(), to.display())
            }
            Op::If { path, .. } => write!(f, "checking {}", path.display()),
            Op::PivotRoot => write!(f, "pivot_root into the new root"),
            Op::Hostname(name) => write!(f, "setting the hostname to {name}"),
            Op::LoopbackUp => write!(f, "bringing up the loopback interface lo"),
        }
    }
}

/// A plan that can't be made (the spec itself is unusable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanError(pub String);

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PlanError {}

/// The set-up's paths inside `scratch`.
struct Dirs {
    links: PathBuf,
    root: PathBuf,
    broot: PathBuf,
}

fn dirs(scratch: &Path) -> Dirs {
    Dirs {
        links: scratch.join("l"),
        root: scratch.join("root"),
        broot: scratch.join("broot"),
    }
}

/// Inside the new root (still on the host side of `pivot_root`).
fn inside(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

fn mkdir(path: PathBuf) -> Op {
    Op::Mkdir { path, mode: 0o755 }
}

fn bind(source: &Path, target: PathBuf) -> Op {
    Op::Mount {
        source: Some(source.to_path_buf()),
        target,
        fstype: None,
        flags: MsFlags::MS_BIND,
        data: None,
    }
}

fn remount(target: PathBuf, flags: MsFlags) -> Op {
    Op::Remount { target, flags }
}

fn tmpfs(target: PathBuf, flags: MsFlags, data: &str) -> Op {
    Op::Mount {
        source: Some("tmpfs".into()),
        target,
        fstype: Some("tmpfs".into()),
        flags,
        data: Some(data.into()),
    }
}

/// `lowerdir=` names, top-most first (overlayfs's order), from the bottom-first
/// layers given; `e` (an empty dir) for an empty list. Without an upper dir
/// overlayfs refuses a single lower layer ("at least 2 lowerdir are needed
/// while upperdir nonexistent") and the same directory twice ("conflicting
/// lowerdir path"), so a read-only mount gets the empty dirs `e` and `f` at
/// the bottom as needed: they add nothing to the merged view.
fn lowerdir(prefix: &str, count: usize, read_only: bool) -> String {
    let mut names: Vec<String> = (0..count).rev().map(|i| format!("{prefix}{i}")).collect();
    match (count, read_only) {
        (0, false) => names.push("e".into()),
        (0, true) => names.extend(["e".into(), "f".into()]),
        (1, true) => names.push("e".into()),
        _ => {}
    }
    names.join(":")
}

fn check_data(what: &str, data: &str, layers: usize) -> Result<(), PlanError> {
    if data.len() > OVERLAY_DATA_MAX {
        return Err(PlanError(format!(
            "{what}: {layers} layers make an overlay option string of {} bytes, more than the kernel's {OVERLAY_DATA_MAX}",
            data.len()
        )));
    }
    Ok(())
}

const RO: MsFlags = MsFlags::MS_RDONLY;

/// The whole set-up of a sandbox's filesystem (and hostname, loopback), to be
/// executed in PID 1 of the new pid namespace, inside the new mount namespace.
pub fn plan(spec: &Spec, host: &HostFacts) -> Result<Vec<Op>, PlanError> {
    let d = dirs(&spec.scratch);
    let root = &d.root;
    let mut ops = vec![
        Op::Umask(0),
        Op::MakePrivate,
        // Everything the set-up creates lives on a tmpfs over `scratch`, in
        // our mount namespace only: nothing is written to the caller's disk
        // (faster), and `scratch` is still empty for the caller afterwards.
        tmpfs(
            spec.scratch.clone(),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            "mode=0700,size=1m",
        ),
        Op::Mkdir {
            path: d.links.clone(),
            mode: 0o700,
        },
        mkdir(d.links.join("e")),
        mkdir(d.links.join("f")),
        // Bound over the host's secret files.
        Op::CreateFile {
            path: d.links.join("n"),
            mode: 0,
        },
        mkdir(root.clone()),
    ];

    // Short names for the layers, resolved relative to `scratch/l`.
    let build_layers: &[PathBuf] = match &spec.build_root {
        BuildRoot::Host => &[],
        BuildRoot::Layers(layers) => layers,
    };
    for (i, layer) in build_layers.iter().enumerate() {
        ops.push(Op::Symlink {
            target: layer.clone(),
            link: d.links.join(format!("b{i}")),
        });
    }
    let (tree_lower, tree_rw) = match &spec.tree {
        Tree::Writable { lower, upper, work } => (lower, Some((upper, work))),
        Tree::ReadOnly { lower } => (lower, None),
    };
    for (i, layer) in tree_lower.iter().enumerate() {
        ops.push(Op::Symlink {
            target: layer.clone(),
            link: d.links.join(format!("t{i}")),
        });
    }
    if let Some((upper, work)) = tree_rw {
        ops.push(Op::Symlink {
            target: upper.clone(),
            link: d.links.join("u"),
        });
        ops.push(Op::Symlink {
            target: work.clone(),
            link: d.links.join("w"),
        });
    }
    ops.push(Op::Chdir(d.links.clone()));

    // The new root: a small tmpfs (pivot_root needs a mount point).
    ops.push(tmpfs(
        root.clone(),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        "mode=0755,size=1m",
    ));

    // The build root, read-only.
    match &spec.build_root {
        BuildRoot::Host => {
            for dir in ["usr", "etc"] {
                let target = root.join(dir);
                ops.push(mkdir(target.clone()));
                // Non-recursive: mounts below the host's /usr or /etc stay out.
                ops.push(bind(&Path::new("/").join(dir), target.clone()));
                ops.push(remount(target, RO));
            }
            for (name, kind) in &host.secrets {
                let (target, empty) = match kind {
                    EntryKind::Dir => (root.join("etc").join(name), d.links.join("e")),
                    _ => (root.join("etc").join(name), d.links.join("n")),
                };
                // Checked again here: a file gone since the probe is fine.
                ops.push(Op::If {
                    path: target.clone(),
                    cond: Cond::Exists,
                    then: vec![bind(&empty, target.clone()), remount(target, RO | MsFlags::MS_NOSUID)],
                    otherwise: vec![],
                });
            }
            for (name, kind) in &host.links {
                let target = root.join(name);
                match kind {
                    EntryKind::Symlink(link) => ops.push(Op::Symlink {
                        target: link.clone(),
                        link: target,
                    }),
                    EntryKind::Dir => {
                        ops.push(mkdir(target.clone()));
                        ops.push(bind(&Path::new("/").join(name), target.clone()));
                        ops.push(remount(target, RO));
                    }
                    EntryKind::File | EntryKind::Other => {}
                }
            }
        }
        BuildRoot::Layers(layers) => {
            let mut lower = lowerdir("b", layers.len(), true);
            // For a stage with network: the host's resolv.conf, in a layer
            // of its own above the build root's (which stays read-only).
            if let Some(resolver) = host.resolver.as_ref().filter(|_| spec.network) {
                let etc = d.links.join("r/etc");
                ops.push(mkdir(d.links.join("r")));
                ops.push(mkdir(etc.clone()));
                ops.push(Op::WriteFile {
                    path: etc.join("resolv.conf"),
                    mode: 0o644,
                    contents: resolver.contents.clone(),
                });
                lower = format!("r:{lower}");
            }
            let data = format!("lowerdir={lower}");
            check_data("the build root", &data, layers.len())?;
            ops.push(mkdir(d.broot.clone()));
            ops.push(Op::Mount {
                source: Some("overlay".into()),
                target: d.broot.clone(),
                fstype: Some("overlay".into()),
                flags: RO | MsFlags::MS_NODEV,
                data: Some(data),
            });
            ops.push(Op::BindTopLevel {
                from: d.broot.clone(),
                to: root.clone(),
                skip: BUILD_ROOT_SKIP.iter().map(|s| s.to_string()).collect(),
            });
        }
    }

    // /run, and the tree, output and libdir in it.
    let run = root.join("run");
    ops.push(mkdir(run.clone()));
    ops.push(tmpfs(
        run.clone(),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        "mode=0755,size=64m",
    ));
    ops.push(mkdir(run.join("osbuild")));
    // The host's /etc/resolv.conf, bound as it is, may point into the /run
    // just replaced (systemd-resolved's stub): a stage with network gets
    // what it pointed at.
    if let BuildRoot::Host = spec.build_root {
        let resolver = host.resolver.as_ref().filter(|_| spec.network);
        if let Some((resolver, target)) = resolver.and_then(|r| r.run_target.as_ref().map(|t| (r, t))) {
            let rel = target.strip_prefix("/run").expect("probed: under /run");
            let mut dir = run.clone();
            for part in rel.parent().into_iter().flat_map(Path::components) {
                dir.push(part);
                ops.push(mkdir(dir.clone()));
            }
            ops.push(Op::WriteFile {
                path: run.join(rel),
                mode: 0o644,
                contents: resolver.contents.clone(),
            });
        }
    }
    let tree = inside(root, TREE);
    ops.push(mkdir(tree.clone()));
    match tree_rw {
        // Nothing below (the first stage): the upper directory is the whole
        // tree, so it is bound as it is rather than through overlayfs, which
        // costs on every file operation (about 5% of a dpkg run).
        Some((upper, _)) if tree_lower.is_empty() => {
            ops.push(bind(upper, tree.clone()));
            ops.push(remount(tree, MsFlags::MS_NODEV));
        }
        _ => {
            let lower = lowerdir("t", tree_lower.len(), tree_rw.is_none());
            let (data, flags) = match tree_rw {
                // Redirects, metacopy and the index would make `upper` depend on
                // xattrs pointing into the lower layers; off, it is a plain diff.
                Some(_) => (
                    format!("lowerdir={lower},upperdir=u,workdir=w,redirect_dir=off,metacopy=off,index=off"),
                    MsFlags::MS_NODEV,
                ),
                None => (format!("lowerdir={lower}"), RO | MsFlags::MS_NODEV),
            };
            check_data("the tree", &data, tree_lower.len())?;
            ops.push(Op::Mount {
                source: Some("overlay".into()),
                target: tree,
                fstype: Some("overlay".into()),
                flags,
                data: Some(data),
            });
        }
    }
    if let Some(output) = &spec.output {
        let target = inside(root, OUTPUT);
        ops.push(mkdir(target.clone()));
        ops.push(bind(output, target.clone()));
        ops.push(remount(target, MsFlags::MS_NODEV | MsFlags::MS_NOSUID));
    }
    if let Some(cache) = &spec.cache {
        let target = inside(root, CACHE);
        ops.push(mkdir(target.clone()));
        ops.push(bind(cache, target.clone()));
        ops.push(remount(target, MsFlags::MS_NODEV | MsFlags::MS_NOSUID));
    }
    if let Some(sources) = &spec.sources {
        let target = inside(root, SOURCES);
        ops.push(mkdir(target.clone()));
        ops.push(bind(sources, target.clone()));
        ops.push(remount(
            target,
            RO | MsFlags::MS_NODEV | MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        ));
    }
    // An image built on the prefix work: both only to read, nothing to run.
    let read_only_data = RO | MsFlags::MS_NODEV | MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC;
    if let Some(prefix) = &spec.prefix {
        let target = inside(root, PREFIX);
        ops.push(mkdir(target.clone()));
        ops.push(bind(prefix, target.clone()));
        ops.push(remount(target, read_only_data));
    }
    if let Some(delta) = &spec.delta {
        let target = inside(root, DELTA);
        ops.push(Op::CreateFile {
            path: target.clone(),
            mode: 0o644,
        });
        ops.push(bind(delta, target.clone()));
        ops.push(remount(target, read_only_data));
    }
    if let Some(libdir) = &spec.libdir {
        let target = inside(root, LIB);
        ops.push(mkdir(target.clone()));
        ops.push(bind(libdir, target.clone()));
        ops.push(remount(target, RO | MsFlags::MS_NODEV));
    }

    // Private /tmp and /var/tmp, of bounded size.
    let scratch_fs = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    let tmp_data = sized("mode=1777", spec.limits.tmp);
    let tmp = root.join("tmp");
    ops.push(mkdir(tmp.clone()));
    ops.push(tmpfs(tmp, scratch_fs, &tmp_data));
    let var = root.join("var");
    let var_tmp = var.join("tmp");
    let make_var_tmp = vec![
        mkdir(var.clone()),
        mkdir(var_tmp.clone()),
        tmpfs(var_tmp.clone(), scratch_fs, &tmp_data),
    ];
    match &spec.build_root {
        BuildRoot::Host => ops.extend(make_var_tmp),
        // /var may be a read-only bind of the build root's: use its tmp if it
        // has one, else there's nowhere to mount it; without /var at all, make
        // one on the root tmpfs.
        BuildRoot::Layers(_) => ops.push(Op::If {
            path: var,
            cond: Cond::Dir,
            then: vec![Op::If {
                path: var_tmp.clone(),
                cond: Cond::Dir,
                then: vec![tmpfs(var_tmp, scratch_fs, &tmp_data)],
                otherwise: vec![],
            }],
            otherwise: make_var_tmp,
        }),
    }

    // A minimal /dev: no host device is ever bound.
    let dev = root.join("dev");
    ops.push(mkdir(dev.clone()));
    ops.push(tmpfs(
        dev.clone(),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        "mode=0755,size=64k",
    ));
    for (name, major, minor) in [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ] {
        ops.push(Op::Mknod {
            path: dev.join(name),
            mode: 0o666,
            major,
            minor,
        });
    }
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        ops.push(Op::Symlink {
            target: target.into(),
            link: dev.join(name),
        });
    }
    let shm = dev.join("shm");
    ops.push(mkdir(shm.clone()));
    ops.push(tmpfs(
        shm,
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        &sized("mode=1777", spec.limits.shm),
    ));
    let pts = dev.join("pts");
    ops.push(mkdir(pts.clone()));
    ops.push(Op::Mount {
        source: Some("devpts".into()),
        target: pts,
        fstype: Some("devpts".into()),
        flags: MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        // newinstance: a private pty namespace, not the host's ptys.
        data: Some("newinstance,ptmxmode=0666,mode=0620".into()),
    });
    ops.push(remount(dev.clone(), RO));

    // /proc of the new pid namespace: procfs shows the pid namespace of the
    // process that mounts it, so this runs in PID 1 of the new namespace.
    ops.extend(procfs(root.join("proc")));

    // For stages that chroot into the tree: the same /proc, /dev and a private
    // /tmp inside it. Mounts are not part of the overlay's upper dir, so none
    // of this is stored; only a missing mount point directory would be.
    if spec.tree_mounts && tree_rw.is_some() {
        let tree = inside(root, TREE);
        let (tproc, tdev, ttmp) = (tree.join("proc"), tree.join("dev"), tree.join("tmp"));
        ops.extend(procfs(tproc));
        ops.push(mkdir(tdev.clone()));
        // Recursive, to bring /dev/pts and /dev/shm along.
        ops.push(Op::Mount {
            source: Some(dev.clone()),
            target: tdev.clone(),
            fstype: None,
            flags: MsFlags::MS_BIND | MsFlags::MS_REC,
            data: None,
        });
        ops.push(remount(tdev, RO));
        ops.push(mkdir(ttmp.clone()));
        ops.push(tmpfs(ttmp, MsFlags::MS_NOSUID | MsFlags::MS_NODEV, &tmp_data));
    }

    // Everything is in place: the root itself becomes read-only, then it
    // becomes `/`.
    ops.push(remount(root.clone(), RO));
    ops.push(Op::Chdir(root.clone()));
    ops.push(Op::PivotRoot);
    ops.push(Op::Hostname(HOSTNAME.into()));
    if !spec.network {
        ops.push(Op::LoopbackUp);
    }
    Ok(ops)
}

/// tmpfs options with a size limit (without one, a tmpfs may take half of
/// the machine's memory).
fn sized(options: &str, size: Option<u64>) -> String {
    match size {
        Some(bytes) => format!("{options},size={bytes}"),
        None => options.to_string(),
    }
}

/// The sandbox's bounded scratch file systems, as seen inside it: where, and
/// which limit bounds it (for the message when one is full).
pub fn scratch_filesystems(spec: &Spec) -> Vec<(&'static str, &'static str, u64)> {
    let mut out = Vec::new();
    if let Some(tmp) = spec.limits.tmp {
        out.push(("/tmp", "tmp", tmp));
        out.push(("/var/tmp", "tmp", tmp));
        if spec.tree_mounts && matches!(spec.tree, Tree::Writable { .. }) {
            out.push(("/run/osbuild/tree/tmp", "tmp", tmp));
        }
    }
    if let Some(shm) = spec.limits.shm {
        out.push(("/dev/shm", "shm", shm));
    }
    out
}

/// A new procfs at `proc`, with the files root could write by permissions
/// alone made read-only.
fn procfs(proc: PathBuf) -> Vec<Op> {
    let mut ops = vec![
        mkdir(proc.clone()),
        Op::Mount {
            source: Some("proc".into()),
            target: proc.clone(),
            fstype: Some("proc".into()),
            flags: MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            data: None,
        },
    ];
    // Root can write these by file permissions alone (no capability needed):
    // /proc/sysrq-trigger could reboot the host, /proc/sys tune its kernel.
    // Read-only binds onto themselves, like container runtimes do.
    for name in ["sys", "sysrq-trigger", "irq", "bus"] {
        let path = proc.join(name);
        ops.push(Op::If {
            path: path.clone(),
            cond: Cond::Exists,
            then: vec![bind(&path, path.clone()), remount(path.clone(), RO)],
            otherwise: vec![],
        });
    }
    ops
}

/// The operations [`Op::BindTopLevel`] stands for, given the listing of
/// `from` (name and kind of each entry).
pub fn expand_top_level(from: &Path, to: &Path, skip: &[String], entries: &[(OsString, EntryKind)]) -> Vec<Op> {
    let mut entries: Vec<&(OsString, EntryKind)> = entries.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let mut ops = Vec::new();
    for (name, kind) in entries {
        if skip.iter().any(|s| name.as_os_str() == s.as_str()) {
            continue;
        }
        let source = from.join(name);
        let target = to.join(name);
        match kind {
            EntryKind::Dir => {
                ops.push(mkdir(target.clone()));
                ops.push(bind(&source, target.clone()));
                ops.push(remount(target, RO));
            }
            EntryKind::File => {
                ops.push(Op::CreateFile {
                    path: target.clone(),
                    mode: 0o644,
                });
                ops.push(bind(&source, target.clone()));
                ops.push(remount(target, RO));
            }
            EntryKind::Symlink(link) => ops.push(Op::Symlink {
                target: link.clone(),
                link: target,
            }),
            EntryKind::Other => {}
        }
    }
    ops
}

/// Every operation of a plan, `If` branches included (for tests).
pub fn flatten(ops: &[Op]) -> Vec<&Op> {
    let mut out = Vec::new();
    for op in ops {
        out.push(op);
        if let Op::If { then, otherwise, .. } = op {
            out.extend(flatten(then));
            out.extend(flatten(otherwise));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::Limits;

    #[test]
    fn host_secrets_are_covered_and_scratch_is_bounded() {
        let ops = plan(&spec(BuildRoot::Host, writable(vec![])), &host()).unwrap();
        let bound_over = |at: &str| {
            flatten(&ops).into_iter().find_map(|op| match op {
                Op::Mount {
                    source: Some(source),
                    target,
                    flags,
                    ..
                } if target == Path::new(at) && flags.contains(MsFlags::MS_BIND) => Some(source.clone()),
                _ => None,
            })
        };
        assert_eq!(bound_over("/s/root/etc/shadow"), Some("/s/l/n".into()));
        assert_eq!(bound_over("/s/root/etc/ssl/private"), Some("/s/l/e".into()));
        assert!(remount_at(&ops, "/s/root/etc/shadow")
            .unwrap()
            .contains(MsFlags::MS_RDONLY));
        // After /etc itself is bound.
        let etc = position(
            &ops,
            |op| matches!(op, Op::Mount { target, .. } if target == Path::new("/s/root/etc")),
        );
        let shadow = position(
            &ops,
            |op| matches!(op, Op::If { path, .. } if path == Path::new("/s/root/etc/shadow")),
        );
        assert!(etc < shadow);
        let limits = Limits::default();
        for (at, size) in [
            ("/s/root/tmp", limits.tmp),
            ("/s/root/var/tmp", limits.tmp),
            ("/s/root/dev/shm", limits.shm),
        ] {
            let (data, _) = data_of(mount_at(&ops, at).unwrap());
            assert!(data.ends_with(&format!(",size={}", size.unwrap())), "{at}: {data}");
        }
        let mut unbounded = spec(BuildRoot::Host, writable(vec![]));
        unbounded.limits.tmp = None;
        let ops = plan(&unbounded, &host()).unwrap();
        assert_eq!(data_of(mount_at(&ops, "/s/root/tmp").unwrap()).0, "mode=1777");
    }

    #[test]
    fn ssh_host_keys_are_secrets_but_not_their_public_halves() {
        let etc = std::env::temp_dir().join(format!("osbuild-secrets-test-{}", std::process::id()));
        std::fs::create_dir_all(etc.join("ssh")).unwrap();
        std::fs::create_dir_all(etc.join("ssl/private")).unwrap();
        for file in [
            "shadow",
            "ssh/ssh_host_ed25519_key",
            "ssh/ssh_host_ed25519_key.pub",
            "ssh/sshd_config",
        ] {
            std::fs::write(etc.join(file), "").unwrap();
        }
        std::os::unix::fs::symlink("shadow", etc.join("gshadow")).unwrap();
        let found = probe_secrets(&etc);
        assert_eq!(
            found,
            vec![
                ("shadow".into(), EntryKind::File),
                ("ssl/private".into(), EntryKind::Dir),
                ("ssh/ssh_host_ed25519_key".into(), EntryKind::File),
            ]
        );
        std::fs::remove_dir_all(etc).unwrap();
    }

    fn spec(build_root: BuildRoot, tree: Tree) -> Spec {
        Spec {
            build_root,
            tree,
            output: None,
            libdir: None,
            cache: None,
            sources: None,
            prefix: None,
            delta: None,
            tree_mounts: false,
            network: false,
            scratch: "/s".into(),
            limits: Limits::default(),
        }
    }

    fn host() -> HostFacts {
        HostFacts {
            links: vec![
                ("bin".into(), EntryKind::Symlink("usr/bin".into())),
                ("lib".into(), EntryKind::Symlink("usr/lib".into())),
                ("lib64".into(), EntryKind::Dir),
            ],
            secrets: vec![
                ("shadow".into(), EntryKind::File),
                ("ssl/private".into(), EntryKind::Dir),
            ],
            resolver: None,
        }
    }

    /// A host whose /etc/resolv.conf is systemd-resolved's stub.
    fn resolved_host() -> HostFacts {
        HostFacts {
            resolver: Some(Resolver {
                contents: b"nameserver 127.0.0.53\n".to_vec(),
                run_target: Some("/run/systemd/resolve/stub-resolv.conf".into()),
            }),
            ..host()
        }
    }

    fn writes(ops: &[Op]) -> Vec<(&Path, &[u8])> {
        flatten(ops)
            .into_iter()
            .filter_map(|op| match op {
                Op::WriteFile { path, contents, .. } => Some((path.as_path(), contents.as_slice())),
                _ => None,
            })
            .collect()
    }

    fn writable(lower: Vec<PathBuf>) -> Tree {
        Tree::Writable {
            lower,
            upper: "/store/up".into(),
            work: "/store/work".into(),
        }
    }

    fn mount_at<'a>(ops: &'a [Op], at: &str) -> Option<&'a Op> {
        flatten(ops)
            .into_iter()
            .find(|op| matches!(op, Op::Mount { target, .. } if target == Path::new(at)))
    }

    fn remount_at(ops: &[Op], at: &str) -> Option<MsFlags> {
        flatten(ops).into_iter().find_map(|op| match op {
            Op::Remount { target, flags } if target == Path::new(at) => Some(*flags),
            _ => None,
        })
    }

    fn position(ops: &[Op], pred: impl Fn(&Op) -> bool) -> usize {
        ops.iter().position(pred).expect("op present")
    }

    fn data_of(op: &Op) -> (&str, MsFlags) {
        match op {
            Op::Mount {
                data: Some(data),
                flags,
                ..
            } => (data, *flags),
            other => panic!("not a mount with data: {other:?}"),
        }
    }

    #[test]
    fn private_first_pivot_last() {
        let ops = plan(&spec(BuildRoot::Host, writable(vec![])), &host()).unwrap();
        let private = position(&ops, |op| *op == Op::MakePrivate);
        let first_mount = position(&ops, |op| matches!(op, Op::Mount { .. }));
        assert!(private < first_mount);
        // The first mount is the scratch tmpfs, before anything is created.
        let (data, _) = data_of(&ops[first_mount]);
        assert!(data.starts_with("mode=0700"));
        assert!(matches!(&ops[first_mount], Op::Mount { target, .. } if target == Path::new("/s")));
        assert!(!ops[..first_mount]
            .iter()
            .any(|op| matches!(op, Op::Mkdir { .. } | Op::Symlink { .. })));
        let pivot = position(&ops, |op| *op == Op::PivotRoot);
        assert_eq!(ops[pivot - 1], Op::Chdir("/s/root".into()));
        // The root is read-only before pivot_root, and nothing is mounted after.
        let root_ro = position(
            &ops,
            |op| matches!(op, Op::Remount { target, .. } if target == Path::new("/s/root")),
        );
        assert!(root_ro < pivot);
        assert!(!ops[pivot..]
            .iter()
            .any(|op| matches!(op, Op::Mount { .. } | Op::Remount { .. })));
        assert!(ops.contains(&Op::Hostname("osbuild".into())));
        assert!(ops.contains(&Op::LoopbackUp));
    }

    #[test]
    fn network_keeps_host_namespace() {
        let mut s = spec(BuildRoot::Host, writable(vec![]));
        s.network = true;
        let ops = plan(&s, &host()).unwrap();
        assert!(!ops.contains(&Op::LoopbackUp));
    }

    #[test]
    fn host_build_root_is_usr_and_etc_read_only() {
        let ops = plan(&spec(BuildRoot::Host, writable(vec![])), &host()).unwrap();
        for dir in ["usr", "etc"] {
            let at = format!("/s/root/{dir}");
            match mount_at(&ops, &at).unwrap() {
                Op::Mount { source, flags, .. } => {
                    assert_eq!(source.as_deref(), Some(Path::new("/").join(dir).as_path()));
                    // Non-recursive bind.
                    assert_eq!(*flags, MsFlags::MS_BIND);
                }
                _ => unreachable!(),
            }
            assert!(remount_at(&ops, &at).unwrap().contains(MsFlags::MS_RDONLY));
        }
        assert!(ops.contains(&Op::Symlink {
            target: "usr/bin".into(),
            link: "/s/root/bin".into()
        }));
        assert!(remount_at(&ops, "/s/root/lib64").unwrap().contains(MsFlags::MS_RDONLY));
        // Nothing else of the host.
        for hidden in [
            "root", "home", "work", "var/lib", "srv", "opt", "mnt", "media", "boot", "sys", "sbin",
        ] {
            let at = PathBuf::from("/s/root").join(hidden);
            assert!(
                !flatten(&ops).iter().any(|op| match op {
                    Op::Mount { target, .. } | Op::Symlink { link: target, .. } => *target == at,
                    _ => false,
                }),
                "{hidden} is in the plan"
            );
        }
        for op in flatten(&ops) {
            if let Op::Mount {
                source: Some(source),
                flags,
                ..
            } = op
            {
                if flags.contains(MsFlags::MS_BIND) && source.starts_with("/") && !source.starts_with("/s/") {
                    // The host's /usr, /etc, /lib64, and the tree's own upper directory.
                    assert!(
                        ["/usr", "/etc", "/lib64", "/store/up"]
                            .iter()
                            .any(|p| source == Path::new(p)),
                        "host path {} bound",
                        source.display()
                    );
                }
            }
        }
    }

    #[test]
    fn host_dev_never_bound() {
        let ops = plan(&spec(BuildRoot::Host, writable(vec![])), &host()).unwrap();
        for op in flatten(&ops) {
            if let Op::Mount { source: Some(s), .. } = op {
                assert!(!s.starts_with("/dev"), "{op}");
                assert!(!s.starts_with("/sys"), "{op}");
            }
        }
        let (data, flags) = data_of(mount_at(&ops, "/s/root/dev").unwrap());
        assert!(data.contains("mode=0755"));
        assert!(!flags.contains(MsFlags::MS_NODEV));
        assert!(remount_at(&ops, "/s/root/dev").unwrap().contains(MsFlags::MS_RDONLY));
        let nodes: Vec<_> = ops
            .iter()
            .filter_map(|op| match op {
                Op::Mknod {
                    path,
                    mode,
                    major,
                    minor,
                } => Some((path.file_name().unwrap().to_str().unwrap(), *mode, *major, *minor)),
                _ => None,
            })
            .collect();
        assert_eq!(
            nodes,
            vec![
                ("null", 0o666, 1, 3),
                ("zero", 0o666, 1, 5),
                ("full", 0o666, 1, 7),
                ("random", 0o666, 1, 8),
                ("urandom", 0o666, 1, 9),
                ("tty", 0o666, 5, 0)
            ]
        );
        let (data, _) = data_of(mount_at(&ops, "/s/root/dev/pts").unwrap());
        assert!(data.contains("newinstance"));
        assert!(ops.contains(&Op::Symlink {
            target: "pts/ptmx".into(),
            link: "/s/root/dev/ptmx".into()
        }));
        // Device nodes are made before /dev turns read-only.
        let ro = position(
            &ops,
            |op| matches!(op, Op::Remount { target, .. } if target == Path::new("/s/root/dev")),
        );
        assert!(ops[ro..].iter().all(|op| !matches!(op, Op::Mknod { .. })));
    }

    #[test]
    fn tree_is_nodev_and_lowerdir_top_first() {
        let lower: Vec<PathBuf> = (0..3).map(|i| PathBuf::from(format!("/store/layer{i}"))).collect();
        let ops = plan(&spec(BuildRoot::Host, writable(lower)), &host()).unwrap();
        let (data, flags) = data_of(mount_at(&ops, "/s/root/run/osbuild/tree").unwrap());
        assert!(flags.contains(MsFlags::MS_NODEV));
        assert!(!flags.contains(MsFlags::MS_RDONLY));
        assert!(data.starts_with("lowerdir=t2:t1:t0,upperdir=u,workdir=w"), "{data}");
        assert!(ops.contains(&Op::Symlink {
            target: "/store/layer0".into(),
            link: "/s/l/t0".into()
        }));
        assert!(ops.contains(&Op::Symlink {
            target: "/store/up".into(),
            link: "/s/l/u".into()
        }));
        // Relative names resolve against scratch/l.
        let chdir = position(&ops, |op| *op == Op::Chdir("/s/l".into()));
        let tree = position(
            &ops,
            |op| matches!(op, Op::Mount { target, .. } if target.ends_with("osbuild/tree")),
        );
        assert!(chdir < tree);
        assert!(!ops[chdir + 1..tree].iter().any(|op| matches!(op, Op::Chdir(_))));
    }

    #[test]
    fn empty_tree_uses_empty_dir() {
        let ops = plan(&spec(BuildRoot::Host, Tree::ReadOnly { lower: vec![] }), &host()).unwrap();
        let (data, flags) = data_of(mount_at(&ops, "/s/root/run/osbuild/tree").unwrap());
        assert_eq!(data, "lowerdir=e:f");
        assert!(flags.contains(MsFlags::MS_RDONLY | MsFlags::MS_NODEV));
        assert!(ops.contains(&mkdir("/s/l/e".into())));
        assert!(ops.contains(&mkdir("/s/l/f".into())));
        // Writable with nothing below: the upper directory itself, bound nodev.
        let ops = plan(&spec(BuildRoot::Host, writable(vec![])), &host()).unwrap();
        match mount_at(&ops, "/s/root/run/osbuild/tree").unwrap() {
            Op::Mount {
                source, fstype, flags, ..
            } => {
                assert_eq!(source.as_deref(), Some(Path::new("/store/up")));
                assert_eq!(*fstype, None);
                assert_eq!(*flags, MsFlags::MS_BIND);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(remount_at(&ops, "/s/root/run/osbuild/tree"), Some(MsFlags::MS_NODEV));
        // A single read-only layer gets an empty dir below it.
        let ops = plan(
            &spec(
                BuildRoot::Host,
                Tree::ReadOnly {
                    lower: vec!["/a".into()],
                },
            ),
            &host(),
        )
        .unwrap();
        assert_eq!(
            data_of(mount_at(&ops, "/s/root/run/osbuild/tree").unwrap()).0,
            "lowerdir=t0:e"
        );
    }

    #[test]
    fn read_only_tree_has_no_upper() {
        let ops = plan(
            &spec(
                BuildRoot::Host,
                Tree::ReadOnly {
                    lower: vec!["/a".into(), "/b".into()],
                },
            ),
            &host(),
        )
        .unwrap();
        let (data, flags) = data_of(mount_at(&ops, "/s/root/run/osbuild/tree").unwrap());
        assert_eq!(data, "lowerdir=t1:t0");
        assert!(flags.contains(MsFlags::MS_RDONLY));
    }

    #[test]
    fn output_rw_nodev_libdir_ro() {
        let mut s = spec(BuildRoot::Host, Tree::ReadOnly { lower: vec![] });
        s.output = Some("/out".into());
        s.libdir = Some("/lib/osbuild".into());
        let ops = plan(&s, &host()).unwrap();
        let out = remount_at(&ops, "/s/root/run/osbuild/output").unwrap();
        assert!(out.contains(MsFlags::MS_NODEV) && !out.contains(MsFlags::MS_RDONLY));
        let lib = remount_at(&ops, "/s/root/run/osbuild/lib").unwrap();
        assert!(lib.contains(MsFlags::MS_RDONLY | MsFlags::MS_NODEV));
        match mount_at(&ops, "/s/root/run/osbuild/lib").unwrap() {
            Op::Mount { source, flags, .. } => {
                assert_eq!(source.as_deref(), Some(Path::new("/lib/osbuild")));
                assert!(flags.contains(MsFlags::MS_BIND));
            }
            _ => unreachable!(),
        }
    }

    #[test]
    fn prefix_dir_and_delta_file_read_only() {
        let mut s = spec(BuildRoot::Host, Tree::ReadOnly { lower: vec![] });
        s.output = Some("/out".into());
        s.prefix = Some("/store/objects/p/output".into());
        s.delta = Some("/store/tmp/j/delta.json".into());
        let ops = plan(&s, &host()).unwrap();
        let ro = MsFlags::MS_RDONLY | MsFlags::MS_NODEV | MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC;
        for (at, from) in [
            ("/s/root/run/osbuild/prefix", "/store/objects/p/output"),
            ("/s/root/run/osbuild/delta.json", "/store/tmp/j/delta.json"),
        ] {
            assert_eq!(remount_at(&ops, at), Some(ro), "{at}");
            match mount_at(&ops, at).unwrap() {
                Op::Mount { source, flags, .. } => {
                    assert_eq!(source.as_deref(), Some(Path::new(from)));
                    assert!(flags.contains(MsFlags::MS_BIND));
                }
                _ => unreachable!(),
            }
        }
        // The delta is a file: its mount point is one.
        let file = position(
            &ops,
            |op| matches!(op, Op::CreateFile { path, .. } if path == Path::new("/s/root/run/osbuild/delta.json")),
        );
        let bound = position(
            &ops,
            |op| matches!(op, Op::Mount { target, .. } if target == Path::new("/s/root/run/osbuild/delta.json")),
        );
        assert!(file < bound);
        // Without them, neither is there.
        let ops = plan(&spec(BuildRoot::Host, Tree::ReadOnly { lower: vec![] }), &host()).unwrap();
        assert!(mount_at(&ops, "/s/root/run/osbuild/prefix").is_none());
        assert!(mount_at(&ops, "/s/root/run/osbuild/delta.json").is_none());
    }

    #[test]
    fn tmp_and_var_tmp_private() {
        let ops = plan(&spec(BuildRoot::Host, writable(vec![])), &host()).unwrap();
        for at in ["/s/root/tmp", "/s/root/var/tmp"] {
            let (data, flags) = data_of(mount_at(&ops, at).unwrap());
            assert!(data.starts_with("mode=1777,size="), "{data}");
            assert!(flags.contains(MsFlags::MS_NODEV));
        }
        let ops = plan(&spec(BuildRoot::Layers(vec!["/x".into()]), writable(vec![])), &host()).unwrap();
        assert!(mount_at(&ops, "/s/root/var/tmp").is_some());
    }

    #[test]
    fn proc_mounted_and_sysrq_read_only() {
        let ops = plan(&spec(BuildRoot::Host, writable(vec![])), &host()).unwrap();
        match mount_at(&ops, "/s/root/proc").unwrap() {
            Op::Mount { fstype, .. } => assert_eq!(fstype.as_deref(), Some("proc")),
            _ => unreachable!(),
        }
        assert!(remount_at(&ops, "/s/root/proc/sysrq-trigger")
            .unwrap()
            .contains(MsFlags::MS_RDONLY));
        assert!(remount_at(&ops, "/s/root/proc/sys")
            .unwrap()
            .contains(MsFlags::MS_RDONLY));
        assert!(!flatten(&ops).iter().any(|op| match op {
            Op::Mount { target, .. } => target == Path::new("/s/root/sys"),
            _ => false,
        }));
    }

    #[test]
    fn resolver_is_probed_through_its_symlink() {
        let dir = std::env::temp_dir().join(format!("osbuild-resolver-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let etc = dir.join("etc");
        std::fs::create_dir_all(&etc).unwrap();
        assert_eq!(Resolver::probe(&etc), None, "no resolv.conf");
        std::fs::write(etc.join("resolv.conf"), "nameserver 192.0.2.1\n").unwrap();
        let plain = Resolver::probe(&etc).unwrap();
        assert_eq!(
            (plain.contents.as_slice(), plain.run_target),
            (&b"nameserver 192.0.2.1\n"[..], None)
        );
        std::fs::remove_file(etc.join("resolv.conf")).unwrap();
        std::fs::create_dir_all(dir.join("run/systemd/resolve")).unwrap();
        std::fs::write(
            dir.join("run/systemd/resolve/stub-resolv.conf"),
            "nameserver 127.0.0.53\n",
        )
        .unwrap();
        std::os::unix::fs::symlink("../run/systemd/resolve/stub-resolv.conf", etc.join("resolv.conf")).unwrap();
        let stub = Resolver::probe(&etc).unwrap();
        assert_eq!(stub.contents, b"nameserver 127.0.0.53\n");
        assert_eq!(
            stub.run_target.as_deref(),
            Some(Path::new("/run/systemd/resolve/stub-resolv.conf"))
        );
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            normalize(Path::new("/etc/../../var/run/./x")),
            Path::new("/var/run/x"),
            "lexical, and never above /"
        );
    }

    #[test]
    fn a_stage_with_network_gets_the_hosts_resolver() {
        // On the host's root: what its resolv.conf points to in /run, which
        // the sandbox replaces, is written there (after /run is mounted).
        let mut s = spec(BuildRoot::Host, writable(vec![]));
        s.network = true;
        let ops = plan(&s, &resolved_host()).unwrap();
        let stub = Path::new("/s/root/run/systemd/resolve/stub-resolv.conf");
        assert_eq!(writes(&ops), [(stub, &b"nameserver 127.0.0.53\n"[..])]);
        let run = position(
            &ops,
            |op| matches!(op, Op::Mount { target, .. } if target == Path::new("/s/root/run")),
        );
        let dir = position(&ops, |op| *op == mkdir("/s/root/run/systemd/resolve".into()));
        let write = position(&ops, |op| matches!(op, Op::WriteFile { .. }));
        assert!(run < dir && dir < write);
        // A plain file in the host's /etc is bound as it is.
        let mut plain = resolved_host();
        plain.resolver.as_mut().unwrap().run_target = None;
        assert_eq!(writes(&plan(&s, &plain).unwrap()), []);

        // On a layered build root: a layer of its own, above the others.
        let mut s = spec(
            BuildRoot::Layers(vec!["/store/b0".into(), "/store/b1".into()]),
            writable(vec![]),
        );
        s.network = true;
        let ops = plan(&s, &resolved_host()).unwrap();
        assert_eq!(
            writes(&ops),
            [(Path::new("/s/l/r/etc/resolv.conf"), &b"nameserver 127.0.0.53\n"[..])]
        );
        assert_eq!(data_of(mount_at(&ops, "/s/broot").unwrap()).0, "lowerdir=r:b1:b0");

        // Without network, nothing of the host's resolver.
        s.network = false;
        let ops = plan(&s, &resolved_host()).unwrap();
        assert_eq!(writes(&ops), []);
        assert_eq!(data_of(mount_at(&ops, "/s/broot").unwrap()).0, "lowerdir=b1:b0");
        let ops = plan(&spec(BuildRoot::Host, writable(vec![])), &resolved_host()).unwrap();
        assert_eq!(writes(&ops), []);
    }

    #[test]
    fn layered_build_root() {
        let layers: Vec<PathBuf> = (0..3).map(|i| PathBuf::from(format!("/store/b{i}"))).collect();
        let ops = plan(&spec(BuildRoot::Layers(layers), writable(vec![])), &host()).unwrap();
        let (data, flags) = data_of(mount_at(&ops, "/s/broot").unwrap());
        assert_eq!(data, "lowerdir=b2:b1:b0");
        assert!(flags.contains(MsFlags::MS_RDONLY));
        assert!(mount_at(&ops, "/s/root/usr").is_none());
        let skip = ops
            .iter()
            .find_map(|op| match op {
                Op::BindTopLevel { skip, .. } => Some(skip.clone()),
                _ => None,
            })
            .unwrap();
        for name in ["proc", "sys", "dev", "tmp", "run"] {
            assert!(skip.iter().any(|s| s == name));
        }
        // An empty build root is an overlay of the empty dir.
        let ops = plan(&spec(BuildRoot::Layers(vec![]), writable(vec![])), &host()).unwrap();
        assert_eq!(data_of(mount_at(&ops, "/s/broot").unwrap()).0, "lowerdir=e:f");
    }

    #[test]
    fn expand_binds_dirs_ro_and_recreates_symlinks() {
        let entries = vec![
            (OsString::from("usr"), EntryKind::Dir),
            (OsString::from("root"), EntryKind::Dir),
            (OsString::from("bin"), EntryKind::Symlink("usr/bin".into())),
            (OsString::from("proc"), EntryKind::Dir),
            (OsString::from("dev"), EntryKind::Dir),
            (OsString::from("f"), EntryKind::File),
            (OsString::from("sock"), EntryKind::Other),
        ];
        let skip: Vec<String> = BUILD_ROOT_SKIP.iter().map(|s| s.to_string()).collect();
        let ops = expand_top_level(Path::new("/s/broot"), Path::new("/s/root"), &skip, &entries);
        assert!(remount_at(&ops, "/s/root/usr").unwrap().contains(MsFlags::MS_RDONLY));
        // The build root's own /root is bound (read-only); the host's never is.
        assert!(remount_at(&ops, "/s/root/root").unwrap().contains(MsFlags::MS_RDONLY));
        assert!(remount_at(&ops, "/s/root/f").unwrap().contains(MsFlags::MS_RDONLY));
        assert!(ops.contains(&Op::Symlink {
            target: "usr/bin".into(),
            link: "/s/root/bin".into()
        }));
        assert!(mount_at(&ops, "/s/root/proc").is_none());
        assert!(mount_at(&ops, "/s/root/dev").is_none());
        assert!(!ops.iter().any(|op| format!("{op:?}").contains("sock")));
    }

    #[test]
    fn four_hundred_layers_fit() {
        let layers: Vec<PathBuf> = (0..450)
            .map(|i| PathBuf::from(format!("/var/lib/osbuild/store/objects/{i:064}/tree")))
            .collect();
        let ops = plan(
            &spec(BuildRoot::Layers(layers.clone()), writable(layers.clone())),
            &host(),
        )
        .unwrap();
        let (data, _) = data_of(mount_at(&ops, "/s/root/run/osbuild/tree").unwrap());
        assert!(data.len() < OVERLAY_DATA_MAX);
        assert!(data.starts_with("lowerdir=t449:t448:"));
        assert!(data.contains(":t1:t0,"));
        let too_many: Vec<PathBuf> = (0..1000).map(|i| PathBuf::from(format!("/l{i}"))).collect();
        let err = plan(&spec(BuildRoot::Host, Tree::ReadOnly { lower: too_many }), &host()).unwrap_err();
        assert!(err.0.contains("1000 layers"), "{err}");
    }

    #[test]
    fn error_names_operation_and_path() {
        let op = Op::Mount {
            source: Some("overlay".into()),
            target: "/s/root/run/osbuild/tree".into(),
            fstype: Some("overlay".into()),
            flags: MsFlags::MS_NODEV,
            data: Some("lowerdir=e".into()),
        };
        assert_eq!(
            op.to_string(),
            "mounting overlay on /s/root/run/osbuild/tree (nodev,lowerdir=e)"
        );
    }
}
