//! The system calls the set-up needs, behind a trait (youki style), and the
//! executor of a [`plan`](super::plan) through it.
//!
//! [`RealSys`] calls the kernel through nix; the tests use a fake that
//! records calls, so the executor's own logic (flag merging on remount,
//! expansion of [`Op::BindTopLevel`], conditions) is tested without root.

use std::ffi::OsString;
use std::fmt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use nix::sys::stat::{Mode, SFlag};

use super::plan::{expand_top_level, Cond, EntryKind, Op};

/// The system calls used by [`execute`].
pub trait Sys {
    fn mount(
        &mut self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> nix::Result<()>;
    /// The per-mount flags of the mount at `path` (from `statvfs`), as
    /// `MS_*` flags: nosuid, nodev, noexec, ro and the atime flags.
    fn mount_flags(&mut self, path: &Path) -> nix::Result<MsFlags>;
    fn umount2(&mut self, target: &Path, flags: MntFlags) -> nix::Result<()>;
    fn pivot_root(&mut self, new_root: &Path, put_old: &Path) -> nix::Result<()>;
    fn chdir(&mut self, path: &Path) -> nix::Result<()>;
    /// `mkdir`; succeeds if a directory is already there.
    fn mkdir(&mut self, path: &Path, mode: u32) -> nix::Result<()>;
    fn symlink(&mut self, target: &Path, link: &Path) -> nix::Result<()>;
    fn create_file(&mut self, path: &Path, mode: u32) -> nix::Result<()>;
    fn write_file(&mut self, path: &Path, mode: u32, contents: &[u8]) -> nix::Result<()>;
    fn mknod_char(&mut self, path: &Path, mode: u32, major: u64, minor: u64) -> nix::Result<()>;
    fn umask(&mut self, mode: u32);
    /// `lstat`: what is at `path`, `None` if nothing.
    fn lstat(&mut self, path: &Path) -> nix::Result<Option<EntryKind>>;
    /// The entries of a directory (without `.` and `..`), not followed.
    fn read_dir(&mut self, path: &Path) -> nix::Result<Vec<(OsString, EntryKind)>>;
    fn sethostname(&mut self, name: &str) -> nix::Result<()>;
    /// `ioctl(SIOCGIFFLAGS)` then `ioctl(SIOCSIFFLAGS)` with `IFF_UP` on `lo`.
    fn loopback_up(&mut self) -> nix::Result<()>;
}

/// A failed step of the set-up: which operation, and the kernel's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupError {
    /// The operation, described with its path(s) (host-side, before
    /// `pivot_root`).
    pub op: String,
    pub errno: Errno,
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.op, self.errno.desc())
    }
}

impl std::error::Error for SetupError {}

fn io_errno(e: std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

/// Carries out `ops` in order; stops at the first failure.
pub fn execute(sys: &mut dyn Sys, ops: &[Op]) -> Result<(), SetupError> {
    for op in ops {
        let fail = |errno: Errno| SetupError {
            op: op.to_string(),
            errno,
        };
        match op {
            Op::Umask(mode) => sys.umask(*mode),
            Op::MakePrivate => sys
                .mount(None, Path::new("/"), None, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None)
                .map_err(fail)?,
            Op::Mkdir { path, mode } => sys.mkdir(path, *mode).map_err(fail)?,
            Op::Symlink { target, link } => sys.symlink(target, link).map_err(fail)?,
            Op::CreateFile { path, mode } => sys.create_file(path, *mode).map_err(fail)?,
            Op::WriteFile { path, mode, contents } => sys.write_file(path, *mode, contents).map_err(fail)?,
            Op::Mknod {
                path,
                mode,
                major,
                minor,
            } => sys.mknod_char(path, *mode, *major, *minor).map_err(fail)?,
            Op::Mount {
                source,
                target,
                fstype,
                flags,
                data,
            } => sys
                .mount(source.as_deref(), target, fstype.as_deref(), *flags, data.as_deref())
                .map_err(fail)?,
            Op::Remount { target, flags } => {
                // A bind remount sets the mount's flags to exactly what's
                // given: keep the ones it has (say nosuid from the source).
                let current = sys.mount_flags(target).map_err(fail)?;
                let flags = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | *flags | current;
                sys.mount(None, target, None, flags, None).map_err(fail)?
            }
            Op::Chdir(path) => sys.chdir(path).map_err(fail)?,
            Op::BindTopLevel { from, to, skip } => {
                let entries = sys.read_dir(from).map_err(fail)?;
                execute(sys, &expand_top_level(from, to, skip, &entries))?;
            }
            Op::If {
                path,
                cond,
                then,
                otherwise,
            } => {
                let kind = sys.lstat(path).map_err(fail)?;
                let holds = match cond {
                    Cond::Dir => kind == Some(EntryKind::Dir),
                    Cond::Exists => kind.is_some(),
                };
                execute(sys, if holds { then } else { otherwise })?;
            }
            Op::PivotRoot => {
                let here = Path::new(".");
                sys.pivot_root(here, here).map_err(fail)?;
                sys.umount2(here, MntFlags::MNT_DETACH).map_err(fail)?;
                sys.chdir(Path::new("/")).map_err(fail)?;
            }
            Op::Hostname(name) => sys.sethostname(name).map_err(fail)?,
            Op::LoopbackUp => sys.loopback_up().map_err(fail)?,
        }
    }
    Ok(())
}

/// The real system calls.
pub struct RealSys;

fn kind_of(meta: &std::fs::Metadata, path: &Path) -> EntryKind {
    let ft = meta.file_type();
    if ft.is_symlink() {
        match std::fs::read_link(path) {
            Ok(target) => EntryKind::Symlink(target),
            Err(_) => EntryKind::Other,
        }
    } else if ft.is_dir() {
        EntryKind::Dir
    } else if ft.is_file() {
        EntryKind::File
    } else {
        EntryKind::Other
    }
}

impl Sys for RealSys {
    fn mount(
        &mut self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> nix::Result<()> {
        nix::mount::mount(source, target, fstype, flags, data)
    }

    fn mount_flags(&mut self, path: &Path) -> nix::Result<MsFlags> {
        use nix::sys::statvfs::FsFlags;
        let st = nix::sys::statvfs::statvfs(path)?;
        let f = st.flags();
        let mut out = MsFlags::empty();
        for (fs, ms) in [
            (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
            (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
            (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
            (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
            (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
            (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
            (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
        ] {
            if f.contains(fs) {
                out |= ms;
            }
        }
        Ok(out)
    }

    fn umount2(&mut self, target: &Path, flags: MntFlags) -> nix::Result<()> {
        nix::mount::umount2(target, flags)
    }

    fn pivot_root(&mut self, new_root: &Path, put_old: &Path) -> nix::Result<()> {
        nix::unistd::pivot_root(new_root, put_old)
    }

    fn chdir(&mut self, path: &Path) -> nix::Result<()> {
        nix::unistd::chdir(path)
    }

    fn mkdir(&mut self, path: &Path, mode: u32) -> nix::Result<()> {
        match std::fs::DirBuilder::new().mode(mode).create(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
            Err(e) => Err(io_errno(e)),
        }
    }

    fn symlink(&mut self, target: &Path, link: &Path) -> nix::Result<()> {
        match std::os::unix::fs::symlink(target, link) {
            // A scratch dir used before: replace an old symlink.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                if std::fs::read_link(link).is_ok_and(|old| old == target) {
                    return Ok(());
                }
                if std::fs::symlink_metadata(link).is_ok_and(|m| m.file_type().is_symlink()) {
                    std::fs::remove_file(link).map_err(io_errno)?;
                    return std::os::unix::fs::symlink(target, link).map_err(io_errno);
                }
                Err(io_errno(e))
            }
            other => other.map_err(io_errno),
        }
    }

    fn create_file(&mut self, path: &Path, mode: u32) -> nix::Result<()> {
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(mode)
            .open(path)
            .map(drop)
            .map_err(io_errno)
    }

    fn write_file(&mut self, path: &Path, mode: u32, contents: &[u8]) -> nix::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(path)
            .map_err(io_errno)?;
        std::io::Write::write_all(&mut file, contents).map_err(io_errno)
    }

    fn mknod_char(&mut self, path: &Path, mode: u32, major: u64, minor: u64) -> nix::Result<()> {
        nix::sys::stat::mknod(
            path,
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(mode),
            nix::sys::stat::makedev(major, minor),
        )
    }

    fn umask(&mut self, mode: u32) {
        nix::sys::stat::umask(Mode::from_bits_truncate(mode));
    }

    fn lstat(&mut self, path: &Path) -> nix::Result<Option<EntryKind>> {
        match std::fs::symlink_metadata(path) {
            Ok(meta) => Ok(Some(kind_of(&meta, path))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_errno(e)),
        }
    }

    fn read_dir(&mut self, path: &Path) -> nix::Result<Vec<(OsString, EntryKind)>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(path).map_err(io_errno)? {
            let entry = entry.map_err(io_errno)?;
            let full: PathBuf = entry.path();
            let meta = std::fs::symlink_metadata(&full).map_err(io_errno)?;
            out.push((entry.file_name(), kind_of(&meta, &full)));
        }
        Ok(out)
    }

    fn sethostname(&mut self, name: &str) -> nix::Result<()> {
        nix::unistd::sethostname(name)
    }

    fn loopback_up(&mut self) -> nix::Result<()> {
        // SAFETY: plain socket/ioctl calls on a zeroed ifreq we own; the
        // socket fd is closed on every path.
        unsafe {
            let sock = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
            if sock < 0 {
                return Err(Errno::last());
            }
            let mut req: libc::ifreq = std::mem::zeroed();
            for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
                *dst = *src as libc::c_char;
            }
            let mut result = Ok(());
            if libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req) < 0 {
                result = Err(Errno::last());
            } else {
                req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
                if libc::ioctl(sock, libc::SIOCSIFFLAGS, &req) < 0 {
                    result = Err(Errno::last());
                }
            }
            libc::close(sock);
            result
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::plan::{plan, HostFacts};
    use crate::sandbox::{BuildRoot, Spec, Tree};

    /// Records calls; answers from a fixed listing and mount-flag table.
    #[derive(Default)]
    struct Fake {
        calls: Vec<String>,
        listing: Vec<(OsString, EntryKind)>,
        existing: Vec<(PathBuf, EntryKind)>,
        nosuid: Vec<PathBuf>,
        fail_on: Option<PathBuf>,
    }

    impl Fake {
        fn check(&self, path: &Path) -> nix::Result<()> {
            if self.fail_on.as_deref() == Some(path) {
                Err(Errno::EINVAL)
            } else {
                Ok(())
            }
        }
    }

    impl Sys for Fake {
        fn mount(
            &mut self,
            source: Option<&Path>,
            target: &Path,
            fstype: Option<&str>,
            flags: MsFlags,
            data: Option<&str>,
        ) -> nix::Result<()> {
            self.calls.push(format!(
                "mount {:?} {} {:?} {:?} {:?}",
                source,
                target.display(),
                fstype,
                flags,
                data
            ));
            self.check(target)
        }
        fn mount_flags(&mut self, path: &Path) -> nix::Result<MsFlags> {
            Ok(if self.nosuid.iter().any(|p| p == path) {
                MsFlags::MS_NOSUID
            } else {
                MsFlags::empty()
            })
        }
        fn umount2(&mut self, target: &Path, _: MntFlags) -> nix::Result<()> {
            self.calls.push(format!("umount2 {}", target.display()));
            Ok(())
        }
        fn pivot_root(&mut self, new_root: &Path, put_old: &Path) -> nix::Result<()> {
            self.calls
                .push(format!("pivot_root {} {}", new_root.display(), put_old.display()));
            Ok(())
        }
        fn chdir(&mut self, path: &Path) -> nix::Result<()> {
            self.calls.push(format!("chdir {}", path.display()));
            Ok(())
        }
        fn mkdir(&mut self, path: &Path, _: u32) -> nix::Result<()> {
            self.calls.push(format!("mkdir {}", path.display()));
            Ok(())
        }
        fn symlink(&mut self, target: &Path, link: &Path) -> nix::Result<()> {
            self.calls
                .push(format!("symlink {} {}", target.display(), link.display()));
            Ok(())
        }
        fn create_file(&mut self, path: &Path, _: u32) -> nix::Result<()> {
            self.calls.push(format!("create {}", path.display()));
            Ok(())
        }
        fn write_file(&mut self, path: &Path, _: u32, contents: &[u8]) -> nix::Result<()> {
            self.calls
                .push(format!("write {} ({} bytes)", path.display(), contents.len()));
            Ok(())
        }
        fn mknod_char(&mut self, path: &Path, _: u32, _: u64, _: u64) -> nix::Result<()> {
            self.calls.push(format!("mknod {}", path.display()));
            Ok(())
        }
        fn umask(&mut self, _: u32) {}
        fn lstat(&mut self, path: &Path) -> nix::Result<Option<EntryKind>> {
            Ok(self.existing.iter().find(|(p, _)| p == path).map(|(_, k)| k.clone()))
        }
        fn read_dir(&mut self, _: &Path) -> nix::Result<Vec<(OsString, EntryKind)>> {
            Ok(self.listing.clone())
        }
        fn sethostname(&mut self, name: &str) -> nix::Result<()> {
            self.calls.push(format!("hostname {name}"));
            Ok(())
        }
        fn loopback_up(&mut self) -> nix::Result<()> {
            self.calls.push("lo up".into());
            Ok(())
        }
    }

    fn layered() -> Spec {
        Spec {
            build_root: BuildRoot::Layers(vec!["/store/a".into()]),
            tree: Tree::ReadOnly { lower: vec![] },
            output: None,
            libdir: None,
            cache: None,
            sources: None,
            prefix: None,
            delta: None,
            tree_mounts: false,
            network: false,
            scratch: "/s".into(),
            limits: crate::sandbox::Limits::default(),
        }
    }

    #[test]
    fn remount_keeps_existing_flags() {
        let mut fake = Fake {
            nosuid: vec!["/x".into()],
            ..Fake::default()
        };
        let ops = [Op::Remount {
            target: "/x".into(),
            flags: MsFlags::MS_RDONLY,
        }];
        execute(&mut fake, &ops).unwrap();
        let expected = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID;
        assert_eq!(fake.calls, vec![format!("mount None /x None {expected:?} None")]);
    }

    #[test]
    fn layered_build_root_binds_listing() {
        let mut fake = Fake {
            listing: vec![
                ("usr".into(), EntryKind::Dir),
                ("bin".into(), EntryKind::Symlink("usr/bin".into())),
                ("proc".into(), EntryKind::Dir),
            ],
            // No /var in this build root: /var/tmp is made on the root tmpfs.
            ..Fake::default()
        };
        let ops = plan(&layered(), &HostFacts::default()).unwrap();
        execute(&mut fake, &ops).unwrap();
        let calls = fake.calls.join("\n");
        assert!(
            calls.contains("mount Some(\"/s/broot/usr\") /s/root/usr None MsFlags(MS_BIND) None"),
            "{calls}"
        );
        assert!(calls.contains("symlink usr/bin /s/root/bin"));
        assert!(!calls.contains("/s/broot/proc"));
        assert!(calls.contains("mkdir /s/root/var/tmp"));
        assert!(calls.contains("pivot_root . .\numount2 .\nchdir /\nhostname osbuild\nlo up"));
    }

    #[test]
    fn an_image_on_a_prefix_gets_its_output_and_delta_read_only() {
        let mut fake = Fake::default();
        let mut spec = layered();
        spec.prefix = Some("/store/objects/p/output".into());
        spec.delta = Some("/store/tmp/j/delta.json".into());
        let ops = plan(&spec, &HostFacts::default()).unwrap();
        execute(&mut fake, &ops).unwrap();
        let ro = MsFlags::MS_REMOUNT
            | MsFlags::MS_BIND
            | MsFlags::MS_RDONLY
            | MsFlags::MS_NOSUID
            | MsFlags::MS_NODEV
            | MsFlags::MS_NOEXEC;
        let expected = [
            "mkdir /s/root/run/osbuild/prefix".to_string(),
            "mount Some(\"/store/objects/p/output\") /s/root/run/osbuild/prefix None MsFlags(MS_BIND) None".into(),
            format!("mount None /s/root/run/osbuild/prefix None {ro:?} None"),
            "create /s/root/run/osbuild/delta.json".into(),
            "mount Some(\"/store/tmp/j/delta.json\") /s/root/run/osbuild/delta.json None MsFlags(MS_BIND) None".into(),
            format!("mount None /s/root/run/osbuild/delta.json None {ro:?} None"),
        ];
        let start = fake
            .calls
            .iter()
            .position(|c| c == &expected[0])
            .expect("the prefix is bound");
        assert_eq!(fake.calls[start..start + expected.len()], expected, "{:#?}", fake.calls);
    }

    #[test]
    fn var_tmp_of_a_layered_root_only_if_there() {
        let mut fake = Fake {
            existing: vec![("/s/root/var".into(), EntryKind::Dir)],
            ..Fake::default()
        };
        let ops = plan(&layered(), &HostFacts::default()).unwrap();
        execute(&mut fake, &ops).unwrap();
        let calls = fake.calls.join("\n");
        assert!(!calls.contains("/s/root/var/tmp"), "{calls}");
    }

    #[test]
    fn failure_names_the_operation() {
        let mut fake = Fake {
            fail_on: Some("/s/root/run/osbuild/tree".into()),
            ..Fake::default()
        };
        let ops = plan(&layered(), &HostFacts::default()).unwrap();
        let err = execute(&mut fake, &ops).unwrap_err();
        assert_eq!(err.errno, Errno::EINVAL);
        assert!(
            err.to_string()
                .starts_with("mounting overlay on /s/root/run/osbuild/tree (ro,nodev,lowerdir=e:f): Invalid argument"),
            "{err}"
        );
        // Nothing after the failure ran.
        assert!(!fake.calls.iter().any(|c| c.starts_with("pivot_root")));
    }
}
