//! Dropping capabilities before the payload runs.
//!
//! The payload runs as root (uid 0) but with only [`KEEP`]. Three sets matter:
//! the bounding set (what a later `execve` can ever grant: root gets its
//! bounding set as permitted on exec, so this is what limits an exec'd
//! program), the process's own effective/permitted/inheritable sets (what
//! limits a `Payload::Call`, which doesn't exec) and the ambient set.

use nix::errno::Errno;

/// Capability numbers (`linux/capability.h`).
pub mod cap {
    pub const CHOWN: u32 = 0;
    pub const DAC_OVERRIDE: u32 = 1;
    pub const DAC_READ_SEARCH: u32 = 2;
    pub const FOWNER: u32 = 3;
    pub const FSETID: u32 = 4;
    pub const KILL: u32 = 5;
    pub const SETGID: u32 = 6;
    pub const SETUID: u32 = 7;
    pub const SETPCAP: u32 = 8;
    pub const NET_BIND_SERVICE: u32 = 10;
    pub const NET_ADMIN: u32 = 12;
    pub const NET_RAW: u32 = 13;
    pub const SYS_MODULE: u32 = 16;
    pub const SYS_RAWIO: u32 = 17;
    pub const SYS_CHROOT: u32 = 18;
    pub const SYS_PTRACE: u32 = 19;
    pub const SYS_ADMIN: u32 = 21;
    pub const SYS_BOOT: u32 = 22;
    pub const SYS_TIME: u32 = 25;
    pub const MKNOD: u32 = 27;
    pub const AUDIT_WRITE: u32 = 29;
    pub const SETFCAP: u32 = 31;
}

/// What the payload keeps: what package managers and their scripts need
/// (ownership, permissions, setuid/setgid, device nodes: harmless since every
/// writable mount is nodev and /dev is read-only). Not SYS_ADMIN (no mount or
/// remount, so read-only stays read-only), DAC_READ_SEARCH (the
/// `open_by_handle_at` escape), SYS_MODULE, SYS_RAWIO, SYS_PTRACE, SYS_BOOT,
/// SYS_TIME, NET_ADMIN, NET_RAW (raw and packet sockets on the host's
/// interfaces, for a stage with network), NET_BIND_SERVICE (no stage serves)
/// nor any other.
pub const KEEP: &[u32] = &[
    cap::CHOWN,
    cap::DAC_OVERRIDE,
    cap::FOWNER,
    cap::FSETID,
    cap::KILL,
    cap::SETGID,
    cap::SETUID,
    cap::SETPCAP,
    cap::SYS_CHROOT,
    cap::MKNOD,
    cap::AUDIT_WRITE,
    cap::SETFCAP,
];

/// [`KEEP`] as a 64-bit mask; with the host's network, without AUDIT_WRITE
/// too (the audit socket there is the host's: its log is not the stage's to
/// write).
pub fn keep_mask(network: bool) -> u64 {
    let mask = KEEP.iter().fold(0, |mask, cap| mask | (1u64 << cap));
    if network {
        mask & !(1u64 << cap::AUDIT_WRITE)
    } else {
        mask
    }
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Drops every capability not in [`KEEP`] from the bounding set, clears the
/// ambient set, and sets effective = permitted = KEEP, inheritable = none.
pub fn drop_all_but_keep(network: bool) -> Result<(), String> {
    let keep = keep_mask(network);
    // The bounding set first: PR_CAPBSET_DROP needs CAP_SETPCAP (kept anyway).
    for cap in 0..64u32 {
        if keep & (1 << cap) != 0 {
            continue;
        }
        // SAFETY: prctl with integer arguments.
        let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        if r < 0 {
            match Errno::last() {
                // Past the kernel's last capability.
                Errno::EINVAL => break,
                e => return Err(format!("dropping capability {cap} from the bounding set: {}", e.desc())),
            }
        }
    }
    // SAFETY: prctl with integer arguments.
    let r = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    if r < 0 && Errno::last() != Errno::EINVAL {
        return Err(format!("clearing the ambient capabilities: {}", Errno::last().desc()));
    }
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [
        CapData {
            effective: keep as u32,
            permitted: keep as u32,
            inheritable: 0,
        },
        CapData {
            effective: (keep >> 32) as u32,
            permitted: (keep >> 32) as u32,
            inheritable: 0,
        },
    ];
    // SAFETY: capset with a v3 header and the two data structs it expects.
    let r = unsafe { libc::syscall(libc::SYS_capset, &mut header as *mut CapHeader, data.as_ptr()) };
    if r < 0 {
        return Err(format!("setting the capabilities (capset): {}", Errno::last().desc()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_what_packages_need_and_nothing_dangerous() {
        let mask = keep_mask(false);
        for kept in [cap::CHOWN, cap::MKNOD, cap::SETFCAP, cap::SYS_CHROOT, cap::DAC_OVERRIDE] {
            assert!(mask & (1 << kept) != 0);
        }
        for gone in [
            cap::SYS_ADMIN,
            cap::DAC_READ_SEARCH,
            cap::SYS_MODULE,
            cap::SYS_RAWIO,
            cap::SYS_PTRACE,
            cap::SYS_BOOT,
            cap::SYS_TIME,
            cap::NET_ADMIN,
            cap::NET_RAW,
            cap::NET_BIND_SERVICE,
        ] {
            assert!(mask & (1 << gone) == 0);
        }
        assert_eq!(mask.count_ones(), 12);
        assert_eq!(keep_mask(true), mask & !(1 << cap::AUDIT_WRITE));
    }
}
