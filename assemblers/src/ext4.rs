//! ext4 file systems written straight into an image file, without mounting:
//! `mkfs.ext4 -d` copies a directory into the new file system at an offset
//! in the disk image; `debugfs` takes out what belongs to other partitions;
//! and [`normalize_times`] rewrites every inode's timestamps, because
//! `mkfs.ext4 -d` (1.47) copies atime, mtime and ctime from the source, and
//! nobody can set a ctime, so two copies of the same tree would differ.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use osbuild_stages::api::StageError;

use crate::util::{crc32c, run, tool};

/// One ext4 file system to create.
pub struct Ext4<'a> {
    pub image: &'a Path,
    /// Byte offset of the file system in `image`.
    pub offset: u64,
    /// Size in bytes.
    pub size: u64,
    pub uuid: &'a str,
    pub label: Option<&'a str>,
    /// The directory copied into the file system (may be empty).
    pub source: &'a Path,
    /// Paths in the file system (absolute, as `/boot/efi`) whose contents
    /// another partition holds: they stay as empty directories here.
    pub exclude: &'a [String],
    /// mtimes later than this are clamped to it; every other time is set to
    /// the (clamped) mtime.
    pub epoch: u64,
    /// Keep the metadata checksums' seed in the superblock
    /// (`metadata_csum_seed`), so the UUID can change without rewriting
    /// every checksum: for a prefix's file system, which each image gives
    /// its own UUID. Linux 4.4, e2fsprogs 1.43 and GRUB 2.06 read it.
    pub csum_seed: bool,
}

impl Ext4<'_> {
    pub fn create(&self) -> Result<(), StageError> {
        if self.size < 1024 * 1024 {
            return Err(format!("an ext4 file system needs at least 1 MiB, not {} bytes", self.size).into());
        }
        let mut ext = format!("offset={},hash_seed={},nodiscard", self.offset, self.uuid);
        if mke2fs_at_least(1, 47)? {
            // The image is a fresh sparse file: nothing to zero, and the
            // inode tables can be marked zeroed.
            ext.push_str(",assume_storage_prezeroed=1");
        } else {
            ext.push_str(",lazy_itable_init=1,lazy_journal_init=1");
        }
        let mut mkfs = tool("mkfs.ext4", self.epoch);
        mkfs.args(["-q", "-F", "-t", "ext4", "-U", self.uuid, "-E", &ext]);
        if self.csum_seed {
            mkfs.args(["-O", "metadata_csum_seed"]);
        }
        if let Some(label) = self.label {
            mkfs.args(["-L", label]);
        }
        mkfs.arg("-d")
            .arg(self.source)
            .arg(self.image)
            .arg(format!("{}k", self.size / 1024));
        run(&mut mkfs, None)?;

        self.remove_excluded()?;
        normalize_times(self.image, self.offset, self.epoch)?;
        Ok(())
    }

    /// Deletes the contents of the excluded directories with `debugfs`, and
    /// zeroes the data blocks they occupied so no stale copy stays in the image.
    fn remove_excluded(&self) -> Result<(), StageError> {
        let mut files = Vec::new();
        let mut dirs = Vec::new();
        let mut script = String::new();
        for ex in outermost(self.exclude) {
            let src = self.source.join(ex.trim_start_matches('/'));
            if std::fs::symlink_metadata(&src).map(|m| m.is_dir()).unwrap_or(false) {
                walk(&src, ex, &mut files, &mut dirs)?;
            } else {
                // The tree lacks the mount point: make it (and its parents).
                let mut at = String::new();
                for part in ex.split('/').filter(|p| !p.is_empty()) {
                    at.push('/');
                    at.push_str(part);
                    if !self.source.join(at.trim_start_matches('/')).exists() {
                        script.push_str(&format!("mkdir {}\n", quote(&at)?));
                    }
                }
            }
        }
        if files.is_empty() && dirs.is_empty() && script.is_empty() {
            return Ok(());
        }
        for f in &files {
            script.push_str(&format!("blocks {}\n", quote(f)?));
        }
        for f in &files {
            script.push_str(&format!("rm {}\n", quote(f)?));
        }
        // Children before their parents.
        for d in dirs.iter().rev() {
            script.push_str(&format!("rmdir {}\n", quote(d)?));
        }
        let cmds = crate::util::TempDir::new("osbuild-debugfs")?;
        let out = debugfs(self.image, self.offset, &script, cmds.path(), self.epoch)?;
        zero_blocks(self.image, self.offset, &out)
    }
}

/// The excluded directories not inside another: what is below one goes
/// with it (`/boot/efi` with `/boot`).
pub(crate) fn outermost(exclude: &[String]) -> impl Iterator<Item = &String> {
    exclude.iter().filter(|ex| {
        !exclude.iter().any(|other| {
            ex.strip_prefix(other.as_str())
                .is_some_and(|rest| rest.starts_with('/'))
        })
    })
}

/// Runs a debugfs command file, failing on any command's error (debugfs
/// itself exits 0 after one).
pub(crate) fn debugfs(image: &Path, offset: u64, commands: &str, dir: &Path, epoch: u64) -> Result<String, StageError> {
    let file = dir.join("debugfs-commands");
    std::fs::write(&file, commands).map_err(|e| format!("{}: {e}", file.display()))?;
    let out = tool("debugfs", epoch)
        .arg("-w")
        .arg("-f")
        .arg(&file)
        .arg(device(image, offset))
        .output()
        .map_err(|e| format!("cannot run debugfs: {e}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.starts_with("debugfs ") && !l.trim().is_empty())
        .collect();
    if !out.status.success() || !errors.is_empty() {
        return Err(format!("debugfs failed ({}): {}", out.status, errors.join("; ")).into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// How e2fsprogs name a file system at an offset in an image file.
pub(crate) fn device(image: &Path, offset: u64) -> String {
    format!("{}?offset={offset}", image.display())
}

/// Zeroes the blocks that the `blocks` commands of a debugfs run listed in
/// its output `out` (the freed blocks of deleted files, so no stale copy
/// stays in the image).
pub(crate) fn zero_blocks(image: &Path, offset: u64, out: &str) -> Result<(), StageError> {
    let mut blocks: Vec<u64> = out
        .lines()
        .filter(|l| !l.starts_with("debugfs"))
        .flat_map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .filter_map(|w| w.parse().ok())
        .collect();
    if blocks.is_empty() {
        return Ok(());
    }
    blocks.sort_unstable();
    blocks.dedup();
    let f = File::options()
        .write(true)
        .read(true)
        .open(image)
        .map_err(|e| format!("{}: {e}", image.display()))?;
    let sb = Superblock::read(&f, offset)?;
    let zeros = vec![0u8; sb.block_size as usize];
    for b in blocks {
        f.write_all_at(&zeros, offset + b * sb.block_size)
            .map_err(|e| format!("{}: {e}", image.display()))?;
    }
    Ok(())
}

/// Collects the entries under `dir` (shown in the file system as `at`):
/// non-directories into `files`, directories (parents first) into `dirs`.
fn walk(dir: &Path, at: &str, files: &mut Vec<String>, dirs: &mut Vec<String>) -> Result<(), StageError> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name();
        let name = name
            .to_str()
            .ok_or_else(|| format!("{}: file name is not UTF-8", e.path().display()))?;
        let path = format!("{}/{name}", at.trim_end_matches('/'));
        if e.file_type()
            .map_err(|err| format!("{}: {err}", e.path().display()))?
            .is_dir()
        {
            dirs.push(path.clone());
            walk(&e.path(), &path, files, dirs)?;
        } else {
            files.push(path);
        }
    }
    Ok(())
}

pub(crate) fn quote(path: &str) -> Result<String, StageError> {
    if path.contains(['"', '\n', '\\']) {
        return Err(
            format!("cannot move {path:?} to its own partition: its name has a quote, backslash or newline").into(),
        );
    }
    Ok(format!("\"{path}\""))
}

fn mke2fs_at_least(major: u32, minor: u32) -> Result<bool, StageError> {
    let out = std::process::Command::new("mke2fs")
        .arg("-V")
        .output()
        .map_err(|e| format!("cannot run mke2fs: {e}"))?;
    let text = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    let version = text
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .split('.')
        .map(|p| p.parse::<u32>().unwrap_or(0))
        .collect::<Vec<_>>();
    Ok(version.first().copied().unwrap_or(0) > major
        || (version.first() == Some(&major) && version.get(1).copied().unwrap_or(0) >= minor))
}

/// The fields of an ext4 superblock the time normalizer needs.
struct Superblock {
    block_size: u64,
    first_data_block: u64,
    inodes_per_group: u32,
    groups: u64,
    first_ino: u32,
    inode_size: usize,
    desc_size: usize,
    /// `Some(seed)` when inodes carry CRC-32C checksums (metadata_csum).
    csum_seed: Option<u32>,
    /// Whether `bg_itable_unused` is maintained (gdt_csum or metadata_csum).
    itable_unused: bool,
}

fn le16(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}

fn le32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

fn put32(b: &mut [u8], o: usize, v: u32) {
    b[o..o + 4].copy_from_slice(&v.to_le_bytes());
}

impl Superblock {
    fn read(f: &File, offset: u64) -> Result<Superblock, StageError> {
        let mut sb = [0u8; 1024];
        f.read_exact_at(&mut sb, offset + 1024)
            .map_err(|e| format!("cannot read the ext4 superblock: {e}"))?;
        if le16(&sb, 0x38) != 0xef53 {
            return Err("no ext4 superblock where one was just made".into());
        }
        let incompat = le32(&sb, 0x60);
        let ro_compat = le32(&sb, 0x64);
        let block_size = 1024u64 << le32(&sb, 0x18);
        let blocks = u64::from(le32(&sb, 0x04))
            | if incompat & 0x80 != 0 {
                u64::from(le32(&sb, 0x150)) << 32
            } else {
                0
            };
        let first_data_block = u64::from(le32(&sb, 0x14));
        let per_group = u64::from(le32(&sb, 0x20));
        let metadata_csum = ro_compat & 0x400 != 0;
        let csum_seed = metadata_csum.then(|| {
            if incompat & 0x2000 != 0 {
                le32(&sb, 0x270)
            } else {
                crc32c(!0, &sb[0x68..0x78])
            }
        });
        Ok(Superblock {
            block_size,
            first_data_block,
            inodes_per_group: le32(&sb, 0x28),
            groups: (blocks - first_data_block).div_ceil(per_group),
            first_ino: le32(&sb, 0x54),
            inode_size: usize::from(le16(&sb, 0x58)),
            desc_size: if incompat & 0x80 != 0 {
                usize::from(le16(&sb, 0xfe)).max(32)
            } else {
                32
            },
            csum_seed,
            itable_unused: metadata_csum || ro_compat & 0x10 != 0,
        })
    }
}

/// Decodes an ext4 timestamp (32 low bits, signed, plus 2 epoch bits).
fn decode_time(lo: u32, extra: u32) -> i64 {
    i64::from(lo as i32) + (i64::from(extra & 3) << 32)
}

/// Encodes seconds as (low 32 bits, extra field with no nanoseconds).
fn encode_time(secs: i64) -> (u32, u32) {
    let lo = secs as u32;
    let extra = ((secs - i64::from(lo as i32)) >> 32) as u32 & 3;
    (lo, extra)
}

/// Sets every used inode's mtime to min(mtime, epoch), and its atime, ctime
/// and crtime to that same value (nanoseconds zero), and the deletion time of
/// inodes `debugfs` freed to the epoch; then recomputes the inode checksums.
pub fn normalize_times(image: &Path, offset: u64, epoch: u64) -> Result<(), StageError> {
    let epoch = epoch.min(i64::MAX as u64) as i64;
    let f = File::options()
        .read(true)
        .write(true)
        .open(image)
        .map_err(|e| format!("{}: {e}", image.display()))?;
    let io = |e: std::io::Error| StageError(format!("{}: {e}", image.display()));
    let sb = Superblock::read(&f, offset)?;
    let gdt_at = offset + (sb.first_data_block + 1) * sb.block_size;
    let mut gdt = vec![0u8; sb.groups as usize * sb.desc_size];
    f.read_exact_at(&mut gdt, gdt_at).map_err(io)?;
    let isz = sb.inode_size;
    for g in 0..sb.groups as usize {
        let d = &gdt[g * sb.desc_size..(g + 1) * sb.desc_size];
        if le16(d, 0x12) & 1 != 0 {
            continue; // INODE_UNINIT: no inode of this group is used
        }
        let mut table = u64::from(le32(d, 0x08));
        let mut unused = u32::from(le16(d, 0x1c));
        if sb.desc_size >= 64 {
            table |= u64::from(le32(d, 0x28)) << 32;
            unused |= u32::from(le16(d, 0x32)) << 16;
        }
        let used = if sb.itable_unused {
            sb.inodes_per_group.saturating_sub(unused)
        } else {
            sb.inodes_per_group
        };
        if used == 0 {
            continue;
        }
        let at = offset + table * sb.block_size;
        let mut buf = vec![0u8; used as usize * isz];
        f.read_exact_at(&mut buf, at).map_err(io)?;
        let mut changed = false;
        for i in 0..used as usize {
            let ino = (g as u32) * sb.inodes_per_group + i as u32 + 1;
            if ino != 2 && ino < sb.first_ino {
                continue; // reserved inodes keep mkfs's (fake) times
            }
            let inode = &mut buf[i * isz..(i + 1) * isz];
            if le16(inode, 0) == 0 && le32(inode, 0x14) == 0 {
                continue; // never used
            }
            changed |= normalize_inode(inode, ino, epoch, sb.csum_seed);
        }
        if changed {
            f.write_all_at(&buf, at).map_err(io)?;
        }
    }
    Ok(())
}

fn normalize_inode(inode: &mut [u8], ino: u32, epoch: i64, csum_seed: Option<u32>) -> bool {
    let before = inode.to_vec();
    let len = inode.len();
    let extra_isize = if len > 128 { usize::from(le16(inode, 0x80)) } else { 0 };
    let has = |field: usize| len > 128 && 128 + extra_isize >= field + 4;
    let (has_mtime_x, has_crtime) = (has(0x88), has(0x94));
    let mtime_extra = if has_mtime_x { le32(inode, 0x88) } else { 0 };
    let mtime = decode_time(le32(inode, 0x10), mtime_extra).min(epoch);
    let (lo, extra) = encode_time(mtime);
    for field in [0x08, 0x0c, 0x10] {
        put32(inode, field, lo);
    }
    if le32(inode, 0x14) != 0 {
        put32(inode, 0x14, encode_time(epoch).0);
    }
    for field in [0x84, 0x88, 0x8c] {
        if has(field) {
            put32(inode, field, extra);
        }
    }
    if has_crtime {
        put32(inode, 0x90, lo);
        put32(inode, 0x94, extra);
    }
    if inode == &before[..] {
        return false;
    }
    if let Some(seed) = csum_seed {
        let has_hi = len > 128 && extra_isize >= 4;
        inode[0x7c..0x7e].copy_from_slice(&[0, 0]);
        if has_hi {
            inode[0x82..0x84].copy_from_slice(&[0, 0]);
        }
        let gen = le32(inode, 0x64);
        let mut crc = crc32c(seed, &ino.to_le_bytes());
        crc = crc32c(crc, &gen.to_le_bytes());
        crc = crc32c(crc, inode);
        inode[0x7c..0x7e].copy_from_slice(&(crc as u16).to_le_bytes());
        if has_hi {
            inode[0x82..0x84].copy_from_slice(&((crc >> 16) as u16).to_le_bytes());
        }
    }
    true
}

/// Where a file system's contents come from: `tree` + `mountpoint`, or an
/// empty directory when the tree has nothing there.
pub fn source_dir(tree: &Path, mountpoint: &str, empty: &Path) -> PathBuf {
    let p = tree.join(mountpoint.trim_start_matches('/'));
    if p.is_dir() {
        p
    } else {
        empty.to_path_buf()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip() {
        for secs in [0i64, 1, 1_700_000_000, i64::from(i32::MAX) + 10, -5] {
            let (lo, extra) = encode_time(secs);
            assert_eq!(decode_time(lo, extra), secs);
        }
    }
}
