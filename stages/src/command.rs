//! Running programs for the package stages (apt, debootstrap, dnf): inside
//! the tree (chroot) or on it, with a clean, non-interactive environment,
//! their output in the stage's log.

use std::ffi::CString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use crate::api::{StageError, StageResult};

/// A command run inside the tree (chroot), with a clean, non-interactive
/// environment.
pub(crate) fn chroot_cmd(tree: &Path, program: &str) -> Command {
    let mut cmd = Command::new(program);
    clean_env(&mut cmd);
    let root = CString::new(tree.as_os_str().as_bytes()).expect("tree path without NUL");
    // SAFETY: only async-signal-safe calls (chroot, chdir) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::chroot(root.as_ptr()) != 0 || libc::chdir(c"/".as_ptr()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

pub(crate) const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The environment every package tool runs with; `SOURCE_DATE_EPOCH` (the
/// pipeline's, which the engine sets) passes through, for the tools that
/// honour it (mkinitramfs clamps the initramfs's times to it).
pub(crate) fn clean_env(cmd: &mut Command) -> &mut Command {
    cmd.env_clear()
        .env("PATH", PATH)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .env("DEBCONF_NONINTERACTIVE_SEEN", "true")
        .env("LC_ALL", "C")
        .env("HOME", "/root");
    if let Some(epoch) = std::env::var_os("SOURCE_DATE_EPOCH") {
        cmd.env("SOURCE_DATE_EPOCH", epoch);
    }
    cmd
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs a command with its output going to the log.
pub(crate) fn run(cmd: &mut Command, what: &str) -> StageResult {
    println!("+ {}", describe(cmd));
    let _ = std::io::stdout().flush();
    let status = cmd
        .status()
        .map_err(|e| format!("{what}: cannot run {}: {e}", cmd.get_program().to_string_lossy()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({status})").into())
    }
}

/// Runs a command and returns its standard output (its standard error goes to the log).
pub(crate) fn output(cmd: &mut Command, what: &str) -> Result<String, StageError> {
    let _ = std::io::stdout().flush();
    let out = cmd
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("{what}: cannot run {}: {e}", cmd.get_program().to_string_lossy()))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("{what} failed ({})", out.status).into())
    }
}
