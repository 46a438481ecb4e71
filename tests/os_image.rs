//! The proof for operating-system images: examples/debian-minimal.json builds
//! for real (mmdebstrap, apt, a kernel, grub) and boots in QEMU to a login
//! prompt with the manifest's host name; a second manifest that shares its
//! first stages starts from the stored tree.
//!
//! A script image written from the docs boots to a machine that works: DHCP,
//! sudo, its locale, its host name, SSH host keys made at first boot.
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

/// One VM at a time: two TCG guests on a 2-core machine slow each other
/// past their limits.
static VM: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A QEMU guest whose serial console the test reads and types into.
struct Guest {
    qemu: std::process::Child,
    stdin: std::process::ChildStdin,
    rx: mpsc::Receiver<Vec<u8>>,
    /// Everything the console printed.
    console: Vec<u8>,
    /// Where the next `wait_for` starts looking.
    seen: usize,
}

/// What the guest boots with: SeaBIOS, QEMU's default, or OVMF's UEFI.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Firmware {
    Bios,
    Uefi,
}

impl Guest {
    /// Boots `image` (a throwaway snapshot of it) with `firmware`, and with
    /// QEMU's user-mode network (DHCP server at 10.0.2.2, guest address
    /// 10.0.2.15) when `net`.
    fn boot(image: &Path, accel: &str, firmware: Firmware, net: bool) -> Guest {
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args(["-accel", accel, "-machine", "q35", "-m", "1024"]);
        if firmware == Firmware::Uefi {
            let ovmf = Path::new("/usr/share/ovmf/OVMF.fd");
            assert!(ovmf.exists(), "booting by UEFI needs {} (package ovmf)", ovmf.display());
            cmd.arg("-bios").arg(ovmf);
        }
        // TCG: one vCPU leaves the other core to the host (and to the
        // test's other threads); KVM gets two.
        cmd.args(if accel == "kvm" {
            ["-cpu", "host", "-smp", "2"]
        } else {
            ["-cpu", "max", "-smp", "1"]
        });
        cmd.arg("-drive")
            .arg(format!("file={},if=virtio,snapshot=on", image.display()));
        if net {
            cmd.args(["-nic", "user,model=virtio-net-pci"]);
        } else {
            cmd.args(["-nic", "none"]);
        }
        let mut qemu = cmd
            .args(["-display", "none", "-monitor", "none", "-serial", "stdio", "-no-reboot"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("qemu-system-x86_64 runs");
        let stdin = qemu.stdin.take().unwrap();
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
        Guest {
            qemu,
            stdin,
            rx,
            console: Vec::new(),
            seen: 0,
        }
    }

    /// Waits for `marker` after what earlier waits consumed; returns the
    /// console text up to and including it, or None after `limit` or when
    /// QEMU exits.
    fn wait_for(&mut self, marker: &str, limit: Duration) -> Option<String> {
        let deadline = Instant::now() + limit;
        let marker = marker.as_bytes();
        loop {
            let rest = &self.console[self.seen..];
            if let Some(i) = rest.windows(marker.len()).position(|w| w == marker) {
                let upto = String::from_utf8_lossy(&rest[..i + marker.len()]).into_owned();
                self.seen += i + marker.len();
                return Some(upto);
            }
            if Instant::now() >= deadline || matches!(self.qemu.try_wait(), Ok(Some(_))) {
                return None;
            }
            if let Ok(chunk) = self.rx.recv_timeout(Duration::from_millis(200)) {
                self.console.extend_from_slice(&chunk);
            }
        }
    }

    fn type_line(&mut self, line: &str) {
        use std::io::Write;
        self.stdin.write_all(format!("{line}\n").as_bytes()).unwrap();
        self.stdin.flush().unwrap();
    }

    /// Runs a shell command line at the logged-in prompt; returns what it
    /// printed and its exit status. The markers are typed split by quotes, so
    /// the echo of the typed line never matches them.
    fn run(&mut self, command: &str) -> (String, i32) {
        self.type_line(&format!("echo '@@'BEGIN; {command}; echo '@@'END $?"));
        let what = format!("`{command}` in the guest");
        self.wait_for("@@BEGIN", Duration::from_secs(60))
            .unwrap_or_else(|| panic!("{what} did not start; the console said:\n{}", self.transcript()));
        let out = self
            .wait_for("@@END ", Duration::from_secs(300))
            .unwrap_or_else(|| panic!("{what} did not finish; the console said:\n{}", self.transcript()));
        let status = self
            .wait_for("\n", Duration::from_secs(10))
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(-1);
        (
            out.trim_end_matches("@@END ").replace('\r', "").trim().to_string(),
            status,
        )
    }

    fn transcript(&self) -> String {
        String::from_utf8_lossy(&self.console).into_owned()
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = self.qemu.kill();
        let _ = self.qemu.wait();
    }
}

/// Boots with KVM when a short test boot shows it works, else with TCG;
/// returns the guest at `marker`, or the console and accelerator on failure.
fn boot_with_best_accelerator(
    image: &Path,
    firmware: Firmware,
    marker: &str,
    net: bool,
) -> Result<(Guest, &'static str), String> {
    if Path::new("/dev/kvm").exists() {
        let mut guest = Guest::boot(image, "kvm", firmware, net);
        if guest.wait_for(marker, Duration::from_secs(20)).is_some() {
            return Ok((guest, "kvm"));
        }
    }
    let mut guest = Guest::boot(image, "tcg,thread=multi", firmware, net);
    match guest.wait_for(marker, Duration::from_secs(600)) {
        Some(_) => Ok((guest, "tcg")),
        None => Err(format!(
            "no {marker:?} under tcg; the console said:\n{}",
            guest.transcript()
        )),
    }
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

    {
        let _vm = VM.lock().unwrap_or_else(|e| e.into_inner());
        let (_guest, accel) = boot_with_best_accelerator(&image, Firmware::Bios, "debian-minimal login:", false)
            .unwrap_or_else(|e| panic!("{e}"));
        println!("booted to the login prompt under {accel}");
    }

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

/// The image a user writes from the docs (`debian::system` with a locale,
/// `users::admin` with a password, `debian::finish` with openssh-server and
/// a GPT disk for UEFI) boots to a machine that works: checked inside the
/// running guest, logged in as the admin on the serial console. The script
/// makes a second image on the same system, so the booted one's file system
/// is the shared prefix's with its own changes written in (`assembly_base`).
#[test]
fn a_script_image_boots_to_a_working_machine() {
    let s = Scratch::new("os-script");
    store_with_shared_cache(&s);
    // The password is "osbuild" (`openssl passwd -6 -salt osbuildexample osbuild`).
    let script = s.write(
        "box.rhai",
        r#"import "debian" as debian;
import "users" as users;

let p = debian::system("box", #{ locale: "en_US.UTF-8" });
p = users::admin(p, "admin", #{
    password: "$6$osbuildexample$sWuiPsZHk6QrYpjO.kNuN7zaEB9zEb5FK4uxqzNxLnRGIUxDDhqxLTskaYPCSOpTImZe1BdcCrBNpvJzH1cgN/",
});
emit(debian::finish(p, #{
    hostname: "box.example.test", packages: ["openssh-server"], services: ["ssh"],
    disk: #{ boot: "uefi", esp_size: "200M" },
}));
emit(debian::finish(p.named("other"), #{ hostname: "other.example.test", disk: #{ boot: "uefi", esp_size: "200M" } }));
"#,
    );
    let run = s
        .osbuild()
        .args(["--json", "run"])
        .arg(&script)
        .arg("-o")
        .arg(s.path("out"))
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "the build failed:\n{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    let events = String::from_utf8_lossy(&run.stdout);
    assert!(
        events.contains("on the prefix's"),
        "the root file system is built on the shared prefix's: {events}"
    );
    let image = s.path("out/box/box.qcow2");
    // Offline, the layered root file system checks clean.
    let raw = s.path("box.raw");
    let converted = Command::new("qemu-img")
        .args(["convert", "-O", "raw"])
        .arg(&image)
        .arg(&raw)
        .status()
        .unwrap();
    assert!(converted.success());
    let table: serde_json::Value =
        serde_json::from_slice(&Command::new("sfdisk").arg("-J").arg(&raw).output().unwrap().stdout).unwrap();
    let root_start = table["partitiontable"]["partitions"][1]["start"].as_u64().unwrap();
    let fsck = Command::new("e2fsck")
        .arg("-fn")
        .arg(format!("{}?offset={}", raw.display(), root_start * 512))
        .output()
        .unwrap();
    assert!(
        fsck.status.success(),
        "e2fsck -fn: {}{}",
        String::from_utf8_lossy(&fsck.stdout),
        String::from_utf8_lossy(&fsck.stderr)
    );
    std::fs::remove_file(&raw).unwrap();

    let _vm = VM.lock().unwrap_or_else(|e| e.into_inner());
    let (mut guest, accel) =
        boot_with_best_accelerator(&image, Firmware::Uefi, "box login:", true).unwrap_or_else(|e| panic!("{e}"));
    println!("booted to the login prompt under {accel}");
    std::thread::sleep(Duration::from_secs(1));
    guest.type_line("admin");
    let asked = guest.wait_for("Password:", Duration::from_secs(60));
    assert!(asked.is_some(), "no password prompt:\n{}", guest.transcript());
    guest.type_line("osbuild");
    let logged_in = guest.wait_for("$ ", Duration::from_secs(120));
    assert!(
        logged_in.is_some(),
        "the admin could not log in:\n{}",
        guest.transcript()
    );

    let (name, _) = guest.run("hostname -f");
    assert_eq!(name, "box.example.test", "/etc/hosts names the host");
    // DHCP on the first Ethernet interface: QEMU's user network gives 10.0.2.15.
    let (addr, _) = guest.run(
        "for i in $(seq 120); do ip -4 -o addr show scope global | grep -q 10.0.2.15 && break; sleep 1; done; ip -4 -o addr show scope global",
    );
    assert!(addr.contains("inet 10.0.2.15/24"), "no DHCP address: {addr}");
    let (dns, _) = guest.run("resolvectl dns");
    assert!(
        dns.contains("10.0.2.3"),
        "systemd-resolved has QEMU's DNS server: {dns}"
    );
    let (id, status) = guest.run("echo osbuild | sudo -S -p '' id -u");
    assert_eq!((id.as_str(), status), ("0", 0), "the admin uses sudo with the password");
    let (locale, status) = guest.run("locale 2>&1 >/dev/null; perl -e 1 2>&1; locale -a | grep -x en_US.utf8");
    assert_eq!(
        (locale.as_str(), status),
        ("en_US.utf8", 0),
        "no locale warning, the locale is generated"
    );
    // sshd starts once the keys exist; the keys were made in this boot (the
    // unit's condition says none were in the image).
    let (ssh, _) = guest.run(
        "for i in $(seq 300); do systemctl is-active -q ssh && break; sleep 1; done; systemctl is-active ssh; \
         systemctl show -P ConditionResult ssh-host-keys; ls /etc/ssh/ssh_host_ed25519_key.pub",
    );
    assert_eq!(
        ssh.lines().collect::<Vec<_>>(),
        ["active", "yes", "/etc/ssh/ssh_host_ed25519_key.pub"],
        "SSH host keys generated at first boot"
    );
    // The disk module's GPT for UEFI: booted by OVMF, the 200 MiB FAT32 ESP mounted.
    let (efi, _) = guest.run(
        "test -d /sys/firmware/efi && echo uefi; findmnt -no FSTYPE /boot/efi; lsblk -dno PTTYPE /dev/vda; \
         lsblk -bdnro PARTLABEL,SIZE /dev/vda1; lsblk -dnro PARTLABEL /dev/vda2",
    );
    assert_eq!(
        efi.lines().collect::<Vec<_>>(),
        ["uefi", "vfat", "gpt", "esp 209715200", "root"],
        "booted by UEFI from the disk module's GPT"
    );
    let (failed, _) = guest.run("systemctl list-units --failed --plain --no-legend --no-pager");
    assert_eq!(failed, "", "no unit failed");
}
