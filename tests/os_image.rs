//! The proof for operating-system images: examples/debian-minimal.json builds
//! for real (mmdebstrap, apt, a kernel, grub) and boots in QEMU to a login
//! prompt with the manifest's host name; a second manifest that shares its
//! first stages starts from the stored tree.
//!
//! Slow (a minute or two): packages come from the host's Debian mirror, cached
//! across runs in /var/tmp/osbuild-test-cache, so only the first run downloads.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support::Scratch;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A store for this test whose package cache is shared by every run.
fn store_with_shared_cache(s: &Scratch) {
    let shared = Path::new("/var/tmp/osbuild-test-cache");
    std::fs::create_dir_all(shared).unwrap();
    std::fs::create_dir_all(s.store()).unwrap();
    std::os::unix::fs::symlink(shared, s.store().join("cache")).unwrap();
}

/// Boots `image` and waits for `marker` on the serial console; returns
/// whether it showed up within `limit`, and what the console printed.
fn boot(image: &Path, accel: &str, limit: Duration, marker: &str) -> (bool, String) {
    let mut qemu = Command::new("qemu-system-x86_64")
        .args(["-accel", accel, "-machine", "q35", "-m", "1024", "-smp", "2"])
        .args(if accel == "kvm" {
            ["-cpu", "host"]
        } else {
            ["-cpu", "max"]
        })
        .arg("-drive")
        .arg(format!("file={},if=virtio,snapshot=on", image.display()))
        .args(["-display", "none", "-monitor", "none", "-serial", "stdio", "-no-reboot"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("qemu-system-x86_64 runs");
    let mut stdout = qemu.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + limit;
    let mut console = Vec::new();
    let mut seen = false;
    while Instant::now() < deadline {
        if let Ok(chunk) = rx.recv_timeout(Duration::from_millis(200)) {
            console.extend_from_slice(&chunk);
            if String::from_utf8_lossy(&console).contains(marker) {
                seen = true;
                break;
            }
        }
        if let Ok(Some(_)) = qemu.try_wait() {
            break;
        }
    }
    let _ = qemu.kill();
    let _ = qemu.wait();
    (seen, String::from_utf8_lossy(&console).into_owned())
}

/// Boots with KVM when a short test boot shows it works, else with TCG.
/// (Here /dev/kvm exists but cannot run a stock kernel: KVM hangs or aborts.)
fn boot_with_best_accelerator(image: &Path, marker: &str) -> (bool, String, &'static str) {
    if Path::new("/dev/kvm").exists() {
        let (seen, console) = boot(image, "kvm", Duration::from_secs(20), marker);
        if seen {
            return (seen, console, "kvm");
        }
    }
    let (seen, console) = boot(image, "tcg,thread=multi", Duration::from_secs(600), marker);
    (seen, console, "tcg")
}

#[test]
fn debian_minimal_boots_to_its_login_prompt_and_shares_its_base() {
    let s = Scratch::new("os-debian");
    store_with_shared_cache(&s);
    let minimal = repo().join("examples/debian-minimal.json");
    let build = s.build(&minimal, Some(&s.path("out"))).ok();
    assert_eq!(build.cached(), 0, "a fresh store builds everything");
    let image = s.path("out/debian-minimal.qcow2");
    let info = Command::new("qemu-img").arg("info").arg(&image).output().unwrap();
    assert!(String::from_utf8_lossy(&info.stdout).contains("file format: qcow2"));

    let (seen, console, accel) = boot_with_best_accelerator(&image, "debian-minimal login:");
    assert!(seen, "no login prompt under {accel}; the console said:\n{console}");
    println!("booted to the login prompt under {accel}");

    // A second manifest shares the first three stages: inspect says they are
    // stored, and the build takes them from the store.
    let ssh = repo().join("examples/debian-ssh.json");
    assert_eq!(s.stored(&ssh)[..4], [true, true, true, false]);
    let second = s.build(&ssh, Some(&s.path("out-ssh"))).ok();
    let statuses = second.stages();
    assert_eq!(
        statuses.iter().map(|(_, st)| st.as_str()).collect::<Vec<_>>(),
        ["cached", "cached", "cached", "success", "success", "success", "success", "success"],
        "{statuses:?}"
    );
    let listing = Command::new("tar")
        .args(["--zstd", "-tf"])
        .arg(s.path("out-ssh/debian-ssh.tar.zst"))
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(listing.contains("./usr/sbin/sshd"), "openssh-server is installed");
    assert!(listing.contains("./boot/vmlinuz-"), "the shared base has the kernel");
}
