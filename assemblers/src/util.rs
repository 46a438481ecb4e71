//! Small helpers the disk assemblers share: running the build root's tools,
//! checksums, deterministic UUIDs, temporary directories.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use osbuild_stages::api::StageError;

/// Runs a command, failing with its name, status and standard error.
/// `input` is written to its standard input; its standard output is returned.
pub fn run(cmd: &mut Command, input: Option<&str>) -> Result<String, StageError> {
    use std::io::Write;
    let name = cmd.get_program().to_string_lossy().into_owned();
    cmd.stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("cannot run {name}: {e}"))?;
    if let Some(input) = input {
        let mut stdin = child.stdin.take().expect("piped stdin");
        stdin
            .write_all(input.as_bytes())
            .map_err(|e| format!("{name}: cannot write its input: {e}"))?;
    }
    let out = child.wait_with_output().map_err(|e| format!("{name}: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        return Err(format!("{name} failed ({}): {}{}", out.status, err.trim(), stdout.trim()).into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// An assembler's `source_epoch`: the option when given, else the
/// pipeline's (the engine's `SOURCE_DATE_EPOCH`), else 0.
pub fn source_epoch(option: Option<u64>) -> u64 {
    option.unwrap_or_else(|| {
        std::env::var("SOURCE_DATE_EPOCH")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    })
}

/// A command with a fixed, clean environment, so tools neither pick up the
/// caller's locale nor the clock: `SOURCE_DATE_EPOCH` and
/// `E2FSPROGS_FAKE_TIME` pin the times mkfs, mtools and friends record.
pub fn tool(program: impl AsRef<OsStr>, epoch: u64) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("LC_ALL", "C")
        .env("TZ", "UTC")
        .env("SOURCE_DATE_EPOCH", epoch.to_string())
        .env("E2FSPROGS_FAKE_TIME", epoch.to_string());
    cmd
}

/// The canonical 8-4-4-4-12 form of a UUID, lowercased; an error otherwise.
pub fn check_uuid(uuid: &str) -> Result<String, String> {
    osbuild_stages::ids::parse_uuid(uuid).map(|u| u.to_string())
}

/// A UUID in the 8-4-4-4-12 form, either case, kept lowercased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uuid(String);

impl Uuid {
    pub fn parse(uuid: &str) -> Result<Self, String> {
        check_uuid(uuid).map(Uuid)
    }
}

osbuild_stages::string_newtype!(
    Uuid,
    {
        "type": "string",
        "pattern": "^[0-9A-Fa-f]{8}(-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}$",
    }
);

/// 128 bits from `seed`, by SplitMix64 over FNV-1a: not cryptographic, only
/// stable, so derived identifiers never depend on the clock or randomness.
pub fn derive_bytes(seed: &str) -> [u8; 16] {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in seed.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let mut next = || {
        h = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = h;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&next().to_be_bytes());
    out[8..].copy_from_slice(&next().to_be_bytes());
    out
}

/// A version-4-shaped UUID derived from `seed` (see [`derive_bytes`]).
pub fn derive_uuid(seed: &str) -> String {
    let mut b = derive_bytes(seed);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Raw CRC-32C (Castagnoli), continuing from `crc` without pre- or
/// post-inversion: what e2fsprogs calls `ext2fs_crc32c_le`.
pub fn crc32c(mut crc: u32, data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, slot) in t.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 { (c >> 1) ^ 0x82f6_3b78 } else { c >> 1 };
            }
            *slot = c;
        }
        t
    });
    for &b in data {
        crc = table[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    crc
}

/// A directory under `/tmp` removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> Result<TempDir, StageError> {
        use std::sync::atomic::{AtomicU32, Ordering};
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let base = std::env::temp_dir();
        for _ in 0..100 {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = base.join(format!("{prefix}-{}-{n}", std::process::id()));
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(TempDir(path)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(format!("{}: {e}", path.display()).into()),
            }
        }
        Err("cannot create a temporary directory".into())
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Removes a file when dropped, unless [`TempFile::keep`] was called.
pub struct TempFile(Option<PathBuf>);

impl TempFile {
    pub fn new(path: PathBuf) -> TempFile {
        TempFile(Some(path))
    }

    pub fn path(&self) -> &Path {
        self.0.as_deref().expect("temp file kept")
    }

    pub fn keep(mut self) -> PathBuf {
        self.0.take().expect("temp file kept")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_check_value() {
        // The standard check value of CRC-32C over "123456789".
        assert_eq!(!crc32c(!0, b"123456789"), 0xe306_9283);
    }

    #[test]
    fn uuids() {
        assert_eq!(derive_uuid("a"), derive_uuid("a"));
        assert_ne!(derive_uuid("a"), derive_uuid("b"));
        assert!(check_uuid(&derive_uuid("x")).is_ok());
        assert_eq!(
            check_uuid("0D4E2E3A-8B3C-4A7E-9F65-2D1B6A3C4E5F").unwrap(),
            "0d4e2e3a-8b3c-4a7e-9f65-2d1b6a3c4e5f"
        );
        assert!(check_uuid("0d4e2e3a-8b3c-4a7e-9f65").is_err());
        assert_eq!(
            Uuid::parse("0D4E2E3A-8B3C-4A7E-9F65-2D1B6A3C4E5F").unwrap().as_str(),
            "0d4e2e3a-8b3c-4a7e-9f65-2d1b6a3c4e5f"
        );
        for bad in [
            "not-a-uuid",
            "",
            "0d4e2e3a8b3c4a7e9f652d1b6a3c4e5f",
            "0d4e2e3a-8b3c-4a7e-9f65-2d1b6a3c4e5g",
        ] {
            assert!(Uuid::parse(bad).is_err(), "{bad:?}");
        }
    }
}

/// Helpers for the disk assemblers' tests: a small tree, tool output.
#[cfg(test)]
pub mod testing {
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;
    use std::process::Command;

    /// Writes a small Debian-like tree into `dir`, every mtime set to `mtime`.
    pub fn make_tree(dir: &Path, mtime: u64, grub_cfg: &str) {
        let w = |rel: &str, data: &[u8], mode: u32| {
            let p = dir.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, data).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        w("etc/hostname", b"test\n", 0o644);
        w("etc/shadow", b"root:*:19000:0:99999:7:::\n", 0o640);
        std::os::unix::fs::chown(dir.join("etc/shadow"), Some(0), Some(42)).unwrap();
        w("usr/bin/hello", b"#!/bin/sh\necho hello\n", 0o755);
        std::fs::hard_link(dir.join("usr/bin/hello"), dir.join("usr/bin/hello-again")).unwrap();
        w(
            "usr/lib/os-release",
            b"PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nID=debian\n",
            0o644,
        );
        std::os::unix::fs::symlink("../usr/lib/os-release", dir.join("etc/os-release")).unwrap();
        w("home/user/.profile", b"# profile\n", 0o644);
        std::os::unix::fs::chown(dir.join("home/user/.profile"), Some(1000), Some(1000)).unwrap();
        std::os::unix::fs::chown(dir.join("home/user"), Some(1000), Some(1000)).unwrap();
        std::fs::set_permissions(dir.join("home/user"), std::fs::Permissions::from_mode(0o700)).unwrap();
        let kernel: Vec<u8> = (0..200_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        w("boot/vmlinuz-6.1.0-test-amd64", &kernel, 0o644);
        w("boot/initrd.img-6.1.0-test-amd64", &kernel[..50_000], 0o644);
        w("boot/grub/grub.cfg", grub_cfg.as_bytes(), 0o644);
        w(
            "boot/efi/EFI/debian/grub.cfg",
            b"configfile /boot/grub/grub.cfg\n",
            0o644,
        );
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        std::fs::set_permissions(dir.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
        let ok = Command::new("find")
            .arg(dir)
            .args(["-exec", "touch", "-h", "-d", &format!("@{mtime}"), "{}", "+"])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }

    /// Runs a command and returns its standard output, panicking on failure.
    pub fn output(cmd: &mut Command) -> String {
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{:?} failed: {}",
            cmd,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `debugfs -R REQUEST` on the ext4 file system at `offset` in `image`.
    pub fn debugfs(image: &Path, offset: u64, request: &str) -> String {
        output(
            Command::new("debugfs")
                .args(["-R", request])
                .arg(format!("{}?offset={offset}", image.display())),
        )
    }

    /// Checks the ext4 file system at `offset` with `e2fsck -fn`.
    pub fn fsck(image: &Path, offset: u64) {
        let out = Command::new("e2fsck")
            .arg("-fn")
            .arg(format!("{}?offset={offset}", image.display()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "e2fsck: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
