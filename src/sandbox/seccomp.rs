//! The system calls a stage has no business with, refused by a seccomp
//! filter (compiled by the `seccompiler` crate) that PID 1 of the sandbox
//! installs on itself just before it starts the payload, so the payload and
//! everything it starts inherit it and cannot remove it.
//!
//! Every refused call fails with `EPERM`, as if the capability it needs were
//! missing (which it mostly is: the filter is the second wall), except
//! `clone3`, which fails with `ENOSYS` so that the C library falls back to
//! `clone`, whose flags the filter can read (`clone3` passes them in memory).
//!
//! | refused | why |
//! |---|---|
//! | `ptrace`, `process_vm_readv`, `process_vm_writev` | reading or steering another process (PID 1 of the sandbox, a build tool) |
//! | `unshare`, `clone` with `CLONE_NEWUSER` | a new user namespace hands out every capability again, inside it |
//! | `setns` | entering other namespaces |
//! | `keyctl`, `add_key`, `request_key` | the kernel keyrings are not namespaced: the host's keys |
//! | `bpf`, `perf_event_open`, `userfaultfd` | kernel attack surface and ways to observe the host |
//! | `io_uring_setup`, `io_uring_enter`, `io_uring_register` | its operations bypass this filter |
//! | `init_module`, `finit_module`, `delete_module` | kernel modules |
//! | `kexec_load`, `kexec_file_load`, `reboot` | replacing or stopping the host's kernel |
//! | `mount`, `umount2`, `pivot_root`, `fsopen`, `fsconfig`, `fsmount`, `fspick`, `move_mount`, `open_tree`, `mount_setattr` | the sandbox's mounts are fixed |
//! | `open_by_handle_at` | opening files by handle, past every mount |
//! | `swapon`, `swapoff`, `acct`, `syslog`, `settimeofday`, `clock_settime`, `iopl`, `ioperm`, `uselib`, `lookup_dcookie`, `nfsservctl` | the host's swap, accounting, kernel log, clock and I/O ports |
//!
//! System calls of another architecture (32-bit `int 0x80`) kill the process;
//! x32 calls (numbers with bit 30 set) fail with `ENOSYS`.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule, TargetArch,
};

/// Refused outright.
pub const REFUSED: &[(&str, i64)] = &[
    ("ptrace", libc::SYS_ptrace),
    ("process_vm_readv", libc::SYS_process_vm_readv),
    ("process_vm_writev", libc::SYS_process_vm_writev),
    ("setns", libc::SYS_setns),
    ("keyctl", libc::SYS_keyctl),
    ("add_key", libc::SYS_add_key),
    ("request_key", libc::SYS_request_key),
    ("bpf", libc::SYS_bpf),
    ("perf_event_open", libc::SYS_perf_event_open),
    ("userfaultfd", libc::SYS_userfaultfd),
    ("io_uring_setup", libc::SYS_io_uring_setup),
    ("io_uring_enter", libc::SYS_io_uring_enter),
    ("io_uring_register", libc::SYS_io_uring_register),
    ("init_module", libc::SYS_init_module),
    ("finit_module", libc::SYS_finit_module),
    ("delete_module", libc::SYS_delete_module),
    ("kexec_load", libc::SYS_kexec_load),
    ("kexec_file_load", libc::SYS_kexec_file_load),
    ("reboot", libc::SYS_reboot),
    ("mount", libc::SYS_mount),
    ("umount2", libc::SYS_umount2),
    ("pivot_root", libc::SYS_pivot_root),
    ("fsopen", libc::SYS_fsopen),
    ("fsconfig", libc::SYS_fsconfig),
    ("fsmount", libc::SYS_fsmount),
    ("fspick", libc::SYS_fspick),
    ("move_mount", libc::SYS_move_mount),
    ("open_tree", libc::SYS_open_tree),
    ("mount_setattr", libc::SYS_mount_setattr),
    ("open_by_handle_at", libc::SYS_open_by_handle_at),
    ("swapon", libc::SYS_swapon),
    ("swapoff", libc::SYS_swapoff),
    ("acct", libc::SYS_acct),
    ("syslog", libc::SYS_syslog),
    ("settimeofday", libc::SYS_settimeofday),
    ("clock_settime", libc::SYS_clock_settime),
    ("iopl", libc::SYS_iopl),
    ("ioperm", libc::SYS_ioperm),
    ("uselib", libc::SYS_uselib),
    ("lookup_dcookie", libc::SYS_lookup_dcookie),
    ("nfsservctl", libc::SYS_nfsservctl),
];

/// Refused when their flags (argument 0) ask for a new user namespace.
pub const REFUSED_WITH_NEWUSER: &[(&str, i64)] = &[("unshare", libc::SYS_unshare), ("clone", libc::SYS_clone)];

/// Bit 30 of the system call number selects the x32 ABI, whose numbers the
/// rules above do not match.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

fn compile() -> Result<BpfProgram, String> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = REFUSED.iter().map(|(_, nr)| (*nr, Vec::new())).collect();
    let newuser = libc::CLONE_NEWUSER as u64;
    for (_, nr) in REFUSED_WITH_NEWUSER {
        let condition = SeccompCondition::new(0, SeccompCmpArgLen::Qword, SeccompCmpOp::MaskedEq(newuser), newuser)
            .map_err(|e| e.to_string())?;
        rules.insert(*nr, vec![SeccompRule::new(vec![condition]).map_err(|e| e.to_string())?]);
    }
    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(|e| e.to_string())?;
    // One filter has one action on a match (EPERM); the ENOSYS cases are
    // hand-written ahead of the rules below.
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .map_err(|e| e.to_string())?;
    let mut program: BpfProgram = filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| e.to_string())?;
    // seccompiler's program starts with the architecture check (3
    // instructions) and then loads the call number: right after that load,
    // before any rule, send x32 numbers and clone3 to ENOSYS. Jumps in BPF
    // are relative and go forward only, and none of the preceding ones
    // crosses this point, so inserting here keeps the program valid.
    let at = 4;
    let load_nr = program.get(3).ok_or("unexpected seccomp program")?;
    if load_nr.code != (BPF_LD | BPF_W | BPF_ABS) || load_nr.k != 0 {
        return Err("unexpected seccomp program layout".into());
    }
    let enosys = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;
    let prologue = [
        jump(BPF_JMP | BPF_JGE | BPF_K, X32_SYSCALL_BIT, 0, 1),
        stmt(BPF_RET | BPF_K, enosys),
        jump(BPF_JMP | BPF_JEQ | BPF_K, libc::SYS_clone3 as u32, 0, 1),
        stmt(BPF_RET | BPF_K, enosys),
    ];
    program.splice(at..at, prologue);
    Ok(program)
}

const BPF_LD: u16 = 0x00;
const BPF_W: u16 = 0x00;
const BPF_ABS: u16 = 0x20;
const BPF_JMP: u16 = 0x05;
const BPF_JEQ: u16 = 0x10;
const BPF_JGE: u16 = 0x30;
const BPF_K: u16 = 0x00;
const BPF_RET: u16 = 0x06;

fn stmt(code: u16, k: u32) -> seccompiler::sock_filter {
    seccompiler::sock_filter { code, jt: 0, jf: 0, k }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> seccompiler::sock_filter {
    seccompiler::sock_filter { code, jt, jf, k }
}

/// The compiled filter, made once per process (before any fork).
pub fn program() -> Result<&'static BpfProgram, String> {
    static PROGRAM: OnceLock<Result<BpfProgram, String>> = OnceLock::new();
    PROGRAM.get_or_init(compile).as_ref().map_err(|e| e.clone())
}

/// Installs `program` on the calling thread. The caller still holds
/// CAP_SYS_ADMIN, so no `PR_SET_NO_NEW_PRIVS` is needed (which would also
/// stop setuid programs and file capabilities in the payload from working,
/// as package scripts expect them to).
pub fn install(program: &BpfProgram) -> Result<(), String> {
    #[repr(C)]
    struct SockFprog {
        len: libc::c_ushort,
        filter: *const seccompiler::sock_filter,
    }
    let prog = SockFprog {
        len: program.len() as libc::c_ushort,
        filter: program.as_ptr(),
    };
    // SAFETY: the kernel copies the program; `prog` and `program` outlive the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0,
            &prog as *const SockFprog,
        )
    };
    if r != 0 {
        return Err(format!(
            "installing the seccomp filter: {}",
            nix::errno::Errno::last().desc()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filter_compiles_with_its_prologue() {
        let program = program().unwrap();
        assert!(program.len() < 4096);
        // Architecture check, the call number, then x32 and clone3 first.
        assert_eq!(program[3].code, BPF_LD | BPF_W | BPF_ABS);
        assert_eq!(program[4].k, X32_SYSCALL_BIT);
        assert_eq!(program[6].k, libc::SYS_clone3 as u32);
    }

    /// In a forked child: after the filter, ptrace and a new user namespace
    /// fail with EPERM, clone3 with ENOSYS, and ordinary calls work.
    #[test]
    fn refused_calls_fail_and_others_work() {
        let program = program().unwrap();
        // SAFETY: the child only makes raw system calls and exits.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                let code = (|| {
                    install(program).ok()?;
                    let errno = || nix::errno::Errno::last_raw();
                    // SAFETY: raw system calls with harmless arguments.
                    unsafe {
                        if libc::syscall(libc::SYS_ptrace, libc::PTRACE_ATTACH, 1, 0, 0) != -1 || errno() != libc::EPERM
                        {
                            return None;
                        }
                        if libc::unshare(libc::CLONE_NEWUSER) != -1 || errno() != libc::EPERM {
                            return None;
                        }
                        if libc::syscall(libc::SYS_clone3, 0, 0) != -1 || errno() != libc::ENOSYS {
                            return None;
                        }
                        if libc::syscall(libc::SYS_keyctl, 0, 0) != -1 || errno() != libc::EPERM {
                            return None;
                        }
                        if libc::getpid() <= 0 {
                            return None;
                        }
                    }
                    Some(0)
                })()
                .unwrap_or(1);
                // SAFETY: leaving the forked child without running the test harness's code.
                unsafe { libc::_exit(code) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                let status = nix::sys::wait::waitpid(child, None).unwrap();
                assert_eq!(status, nix::sys::wait::WaitStatus::Exited(child, 0));
            }
        }
    }
}
