//! `org.osbuild.qemu`: a bootable, partitioned disk image, made without loop
//! devices or mounts and byte for byte the same for the same tree and options.
//!
//! The steps: a sparse raw file; `sfdisk` writes the partition table; every
//! file system is made straight into its partition (`mkfs.ext4 -d -E offset=`,
//! `mkfs.fat --offset` plus mtools), holding the tree's subtree at its mount
//! point, the root file system leaving out what the other partitions hold;
//! GRUB for BIOS (`grub-mkimage -O i386-pc`, `boot.img` into the MBR and the
//! core into the MBR gap or the BIOS boot partition, with the sector numbers
//! patched in as `grub-install` does) and, when there is an EFI system
//! partition, GRUB for UEFI at the removable-media path `EFI/BOOT/BOOTX64.EFI`;
//! then the requested format: qcow2 by our own writer (`qcow2.rs`: parallel
//! compression, reproducible layout), the others by `qemu-img convert`, with
//! the random identifiers some formats carry replaced by ones derived from
//! `ptuuid`.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use osbuild_stages::api::{
    Builtin, Context, FileName, ImagePath, Kind, Options, OptionsError, StageError, StageResult,
};
use osbuild_stages::at;
use osbuild_stages::progress::{written, Heartbeat};
use serde_json::Value;

use crate::ext4::{source_dir, Ext4};
use crate::prefix::{self, Prefix};
use crate::util::{check_uuid, derive_bytes, derive_uuid, run, tool, TempDir, TempFile, Uuid};
use crate::{layered, qcow2};
use osbuild_stages::assembly::Assembly;

const BIOS_BOOT: &str = "21686148-6449-6E6F-744E-656564454649";
const ESP_GPT: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
const LINUX_FS_GPT: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";
/// FAT cannot store times before 1980.
const FAT_EPOCH_MIN: u64 = 315_532_800;

/// Assembles the tree into a bootable, partitioned disk image.
///
/// Either give `root_fs_uuid` (one bootable partition holding the whole tree,
/// osbuild's legacy layout), or `pttype` and `partitions`. Each partition with
/// a `filesystem` gets the tree's subtree at its mount point; the partitions
/// mounted above it leave that subtree out.
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Qemu {
    /// Image file format (default qcow2, as the seed's `io.weldr.qcow2`).
    #[serde(default = "qcow2")]
    #[schemars(default = "qcow2")]
    format: Format,
    /// Name of the image in the output directory.
    filename: FileName,
    /// Virtual disk size in bytes, a multiple of 512. Absent (or 0): the
    /// tree's size plus a quarter and 256 MiB, rounded up to a MiB.
    #[serde(default)]
    size: DiskSize,
    /// Identifier of the partition table: a UUID for GPT, a 32-bit hex number
    /// such as `0x14fc63d2` for MBR. It also seeds every identifier the
    /// options leave out (GPT partition UUIDs, image-format ids). Absent:
    /// derived from the file name and the root file system's UUID.
    #[serde(default)]
    ptuuid: String,
    /// Partition table type; `mbr` and `dos` are the same.
    #[serde(default)]
    pttype: Option<PtType>,
    /// The partitions, in table order (with `pttype`).
    #[serde(default)]
    partitions: Option<Vec<Partition>>,
    /// UUID of the root file system in the legacy single-partition layout.
    #[serde(default)]
    root_fs_uuid: Option<String>,
    /// Type of the root file system in the legacy layout.
    #[serde(default)]
    root_fs_type: Option<FsType>,
    /// Boot loader options.
    #[serde(default)]
    bootloader: Option<Bootloader>,
    /// qcow2 compatibility level: `1.1` (the default: qcow2 version 3, qemu
    /// 1.1 or later) or `0.10` (version 2, any qemu; no zstd).
    #[serde(default)]
    qcow2_compat: Option<qcow2::Version>,
    /// qcow2 cluster compression: `zlib` (the default, as osbuild; any qemu
    /// reads it; about 4 s for 600 MB of data on 2 cores), `zstd` (about
    /// 1.2 s, a little smaller; needs qemu 5.1 or later to read) or `none`
    /// (about 0.6 s, 3 times larger).
    #[serde(default)]
    qcow2_compression: qcow2::Compression,
    /// VMDK sub-format.
    #[serde(default)]
    vmdk_subformat: Option<VmdkSubformat>,
    /// Modification times later than this (seconds since the epoch) are
    /// clamped to it; the other file times follow the modification time, and
    /// the file systems' own times are this.
    /// Default: the pipeline's `source_epoch`, else 0.
    #[serde(default)]
    #[schemars(with = "u64")]
    source_epoch: Option<u64>,
}

#[derive(serde::Deserialize, schemars::JsonSchema, Clone, Copy, PartialEq, Eq, Debug)]
pub enum Format {
    #[serde(rename = "raw")]
    Raw,
    /// raw, compressed with xz (one thread, so reproducible)
    #[serde(rename = "raw.xz")]
    RawXz,
    #[serde(rename = "qcow2")]
    Qcow2,
    #[serde(rename = "vdi")]
    Vdi,
    #[serde(rename = "vmdk")]
    Vmdk,
    /// VHD, fixed size
    #[serde(rename = "vpc")]
    Vpc,
}

#[derive(serde::Deserialize, schemars::JsonSchema, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
pub enum PtType {
    Mbr,
    Dos,
    Gpt,
}

#[derive(serde::Deserialize, schemars::JsonSchema, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
pub enum FsType {
    Ext4,
    Vfat,
    /// osbuild's, refused here: it cannot be made without mounting
    Xfs,
    /// osbuild's, refused here: it cannot be made without mounting
    Btrfs,
}

#[derive(serde::Deserialize, schemars::JsonSchema, Clone, Copy, PartialEq, Eq, Debug)]
#[allow(non_camel_case_types)]
pub enum VmdkSubformat {
    monolithicSparse,
    monolithicFlat,
    twoGbMaxExtentSparse,
    twoGbMaxExtentFlat,
    streamOptimized,
}

/// One partition.
#[derive(serde::Deserialize, schemars::JsonSchema, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct Partition {
    /// Start, in 512-byte sectors (default: after the previous partition, 1 MiB aligned).
    #[serde(default)]
    start: Option<u64>,
    /// Size, in 512-byte sectors (default: the rest of the disk).
    #[serde(default)]
    size: Option<u64>,
    /// Partition type: an MBR type such as `83` or `ef`, or a GPT type UUID
    /// (`21686148-6449-6E6F-744E-656564454649` is a BIOS boot partition,
    /// where GRUB's core goes on GPT).
    #[serde(default, rename = "type")]
    ptype: Option<String>,
    /// Mark the partition bootable (MBR).
    #[serde(default)]
    bootable: bool,
    /// Partition name (GPT).
    #[serde(default)]
    name: Option<String>,
    /// Partition UUID (GPT); derived from `ptuuid` when not given.
    #[serde(default)]
    uuid: Option<Uuid>,
    /// The file system to make in the partition.
    #[serde(default)]
    filesystem: Option<Filesystem>,
}

/// A file system and where the tree mounts it.
#[derive(serde::Deserialize, schemars::JsonSchema, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct Filesystem {
    /// File system type: ext4, or vfat (for an EFI system partition).
    #[serde(rename = "type")]
    fstype: FsType,
    /// File system UUID (for vfat, a volume id such as `7B77-95E7`).
    uuid: String,
    /// File system label.
    #[serde(default)]
    label: Option<String>,
    /// Where the tree mounts it, such as `/`, `/boot` or `/boot/efi`.
    mountpoint: ImagePath,
}

/// A disk size in bytes: whole 512-byte sectors, or 0 for "work it out".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskSize(u64);

impl DiskSize {
    fn parse(size: u64) -> Result<Self, String> {
        if size.is_multiple_of(512) {
            Ok(DiskSize(size))
        } else {
            Err(format!("size {size} must be a multiple of the sector size (512)"))
        }
    }
}

impl<'de> serde::Deserialize<'de> for DiskSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        DiskSize::parse(u64::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

// Serialized only to show the default in the options' schema.
impl serde::Serialize for DiskSize {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl schemars::JsonSchema for DiskSize {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "DiskSize".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "integer",
            "minimum": 0,
            "multipleOf": 512,
        })
    }
}

/// The volume id `mkfs.fat -i` takes for a vfat "uuid" such as `7B77-95E7`:
/// its first 8 hex digits.
fn vfat_volume_id(uuid: &str) -> Option<String> {
    let volid: String = uuid.chars().filter(|c| *c != '-').take(8).collect();
    (volid.len() == 8 && volid.chars().all(|c| c.is_ascii_hexdigit())).then_some(volid)
}

/// What is wrong with `uuid` for a file system of type `fstype` at `at`
/// (with the type at `type_at`), if anything.
fn fs_problems(
    fstype: FsType,
    uuid: &str,
    at: Vec<osbuild_stages::PathSegment>,
    type_at: Vec<osbuild_stages::PathSegment>,
) -> Option<OptionsError> {
    match fstype {
        FsType::Ext4 => check_uuid(uuid).err().map(|e| OptionsError::invalid(at, e)),
        FsType::Vfat => vfat_volume_id(uuid)
            .is_none()
            .then(|| OptionsError::invalid(at, format!("vfat uuid {uuid:?} must be a volume id such as 7B77-95E7"))),
        FsType::Xfs | FsType::Btrfs => Some(OptionsError::invalid(
            type_at,
            format!(
                "{} cannot be made without mounting: only ext4 and vfat can",
                format!("{fstype:?}").to_lowercase()
            ),
        )),
    }
}

/// Which boot loader to install.
#[derive(serde::Deserialize, schemars::JsonSchema, Clone, Copy, Debug)]
#[serde(deny_unknown_fields)]
pub struct Bootloader {
    /// `grub2` (the default with an MBR, or with a GPT that has a BIOS boot
    /// partition or an EFI system partition), or `none`.
    #[serde(rename = "type")]
    kind: BootloaderType,
}

#[derive(serde::Deserialize, schemars::JsonSchema, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
pub enum BootloaderType {
    Grub2,
    None,
}

/// A partition as laid out on the disk.
#[derive(Debug, Clone)]
struct Placed {
    index: usize,
    start: u64,
    size: u64,
    ptype: String,
    fs: Option<Filesystem>,
}

impl Placed {
    fn is(&self, gpt_type: &str, mbr_type: &str) -> bool {
        self.ptype.eq_ignore_ascii_case(gpt_type) || self.ptype.eq_ignore_ascii_case(mbr_type)
    }
}

impl Options for Qemu {
    fn validate(&self) -> Vec<OptionsError> {
        self.problems()
    }

    fn run(mut self, ctx: &Context) -> StageResult {
        // The seed's `io.weldr.qcow2` names neither size nor table id: fill
        // them in deterministically from the tree and the options.
        if self.size.0 == 0 {
            self.size = DiskSize(auto_size(&ctx.tree)?);
        }
        if self.ptuuid.is_empty() {
            let seed = format!("{}/{}", self.filename, self.root_fs_uuid.as_deref().unwrap_or(""));
            self.ptuuid = match self.pttype {
                Some(PtType::Gpt) => derive_uuid(&seed),
                _ => format!(
                    "0x{}",
                    derive_bytes(&seed)[..4]
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect::<String>()
                ),
            };
        }
        let output = ctx
            .output_dir
            .as_ref()
            .ok_or("the qemu assembler needs an output directory")?;
        let gpt = self.pttype == Some(PtType::Gpt);
        let partitions = self.layout(gpt);
        let making_prefix = ctx.assembly == Assembly::Prefix;
        let prefix = match &ctx.assembly {
            Assembly::OnPrefix(on) => Some(Prefix::open(on)?),
            _ => None,
        };

        let raw = TempFile::new(output.join(format!(".{}.raw.tmp", self.filename)));
        match &prefix {
            // The prefix's disk, file systems and all: the partition table
            // and every file system are then made the image's own.
            Some(prefix) => {
                let disk = prefix.disk();
                let src = File::open(&disk).map_err(|e| format!("{}: {e}", disk.display()))?;
                let len = src.metadata().map_err(|e| e.to_string())?.len();
                if len != self.size.0 {
                    return Err(format!("the prefix's disk has {len} bytes, the image {}", self.size.0).into());
                }
                osbuild_stages::sparse::copy(&src, &disk, raw.path()).map_err(|e| e.to_string())?;
            }
            None => {
                let f = File::create(raw.path()).map_err(|e| format!("{}: {e}", raw.path().display()))?;
                f.set_len(self.size.0)
                    .map_err(|e| format!("{}: {e}", raw.path().display()))?;
            }
        }

        let placed = self.partition(raw.path(), gpt, &partitions)?;
        let layout: Vec<(u64, u64)> = placed.iter().map(|p| (p.start, p.size)).collect();
        if let Some(prefix) = &prefix {
            if prefix.meta.partitions != layout {
                return Err("the prefix's partitions are not where the image's are".into());
            }
        }
        let tmp = TempDir::new("osbuild-qemu")?;
        // The prefix has no boot loader: each image installs its own.
        let grub = if making_prefix {
            None
        } else {
            self.grub_plan(ctx, &placed, gpt, tmp.path())?
        };
        let mode = match &prefix {
            Some(p) => FsMode::OnPrefix(p),
            None if making_prefix => FsMode::Prefix(output),
            None => FsMode::Whole,
        };
        self.make_filesystems(ctx, raw.path(), &placed, grub.as_ref(), tmp.path(), &mode)?;
        if let Some(grub) = &grub {
            if let Some(bios) = &grub.bios {
                install_bios(raw.path(), &placed, gpt, bios)?;
            }
        }
        if making_prefix {
            let disk = output.join(prefix::DISK);
            std::fs::rename(raw.keep(), &disk).map_err(|e| format!("{}: {e}", disk.display()))?;
            if self.format == Format::Qcow2 {
                let started = std::time::Instant::now();
                let (index, data) = prefix::reuse_files(output, self.qcow2_compression);
                let held = qcow2::write_reuse(&disk, &index, &data, self.qcow2_compression)?;
                println!(
                    "qcow2: {held} clusters compressed for the images, {:.1}s",
                    started.elapsed().as_secs_f64()
                );
            }
            prefix::write_meta(output, &prefix::Meta { partitions: layout })?;
            println!("wrote the prefix's disk ({} bytes virtual)", self.size.0);
            return Ok(());
        }
        let reuse = match &prefix {
            Some(p) if self.format == Format::Qcow2 => p.reuse(self.qcow2_compression)?,
            _ => None,
        };
        self.convert(raw, output, reuse.as_ref())?;
        println!(
            "wrote {} ({:?}, {} bytes virtual)",
            self.filename, self.format, self.size.0
        );
        Ok(())
    }
}

/// How the file systems are made.
enum FsMode<'a> {
    /// Each from its part of the tree.
    Whole,
    /// Each ext4 from its part of the (prefix) tree, listed into the output
    /// directory; no vfat (each image makes its own).
    Prefix(&'a Path),
    /// Each ext4 from the prefix's copy plus what changed since.
    OnPrefix(&'a Prefix),
}

fn qcow2() -> Format {
    Format::Qcow2
}

/// A disk size for a tree: what its files use, plus a quarter and 256 MiB
/// for file-system metadata and headroom, rounded up to a MiB.
fn auto_size(tree: &Path) -> Result<u64, StageError> {
    fn used(path: &Path, total: &mut u64) -> std::io::Result<()> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::symlink_metadata(path)?;
        *total += meta.blocks() * 512;
        if meta.is_dir() {
            for entry in std::fs::read_dir(path)? {
                used(&entry?.path(), total)?;
            }
        }
        Ok(())
    }
    let mut total = 0;
    used(tree, &mut total).map_err(|e| format!("measuring the tree: {e}"))?;
    const MIB: u64 = 1 << 20;
    Ok((total + total / 4 + 256 * MIB).div_ceil(MIB) * MIB)
}

/// What GRUB needs: where its files are, and the early configuration.
struct GrubPlan {
    /// The i386-pc image: (core.img, boot.img) paths, when BIOS boot applies.
    bios: Option<(PathBuf, PathBuf)>,
    /// BOOTX64.EFI, when UEFI boot applies.
    efi: Option<PathBuf>,
    /// The partition GRUB reads its files from.
    reads: usize,
    /// Whether every GRUB installed reads `metadata_csum_seed` (2.06 on),
    /// which a prefix's ext4 has.
    reads_csum_seed: bool,
}

impl Qemu {
    /// Every problem of the options, each at its place.
    fn problems(&self) -> Vec<OptionsError> {
        let mut problems = Vec::new();
        let gpt = self.pttype == Some(PtType::Gpt);
        match (&self.root_fs_uuid, &self.partitions) {
            (Some(_), Some(_)) => problems.push(OptionsError::invalid(
                at!["root_fs_uuid"],
                "give either root_fs_uuid or partitions, not both",
            )),
            (None, None) => problems.push(OptionsError::missing(
                at!["root_fs_uuid"],
                "give either root_fs_uuid, or pttype and partitions",
            )),
            (Some(uuid), None) => {
                let fstype = self.root_fs_type.unwrap_or(FsType::Ext4);
                problems.extend(fs_problems(fstype, uuid, at!["root_fs_uuid"], at!["root_fs_type"]));
            }
            (None, Some(parts)) => {
                if self.pttype.is_none() {
                    problems.push(OptionsError::missing(
                        at!["pttype"],
                        "partitions need pttype (mbr or gpt)",
                    ));
                }
                let roots = parts
                    .iter()
                    .filter(|p| p.filesystem.as_ref().is_some_and(|f| f.mountpoint.as_str() == "/"))
                    .count();
                if roots != 1 {
                    problems.push(OptionsError::invalid(
                        at!["partitions"],
                        format!("exactly one partition must be mounted at /, not {roots}"),
                    ));
                }
                for (i, p) in parts.iter().enumerate() {
                    if !gpt {
                        for (key, given) in [("uuid", p.uuid.is_some()), ("name", p.name.is_some())] {
                            if given {
                                problems.push(OptionsError::invalid(
                                    at!["partitions", i, key],
                                    "partition uuid and name need a GPT (pttype gpt)",
                                ));
                            }
                        }
                    } else if let Some(n) = p.name.as_ref().filter(|n| n.contains(['"', '\n'])) {
                        problems.push(OptionsError::invalid(
                            at!["partitions", i, "name"],
                            format!("partition name {n:?} has a quote or newline"),
                        ));
                    }
                    if let Some(fs) = &p.filesystem {
                        problems.extend(fs_problems(
                            fs.fstype,
                            &fs.uuid,
                            at!["partitions", i, "filesystem", "uuid"],
                            at!["partitions", i, "filesystem", "type"],
                        ));
                    }
                }
                // A FAT file system cannot have the directories other
                // partitions are mounted on.
                let mounts: Vec<(usize, FsType, String)> = parts
                    .iter()
                    .enumerate()
                    .filter_map(|(i, p)| {
                        p.filesystem
                            .as_ref()
                            .map(|f| (i, f.fstype, normalize_mountpoint(&f.mountpoint)))
                    })
                    .collect();
                for (i, fstype, mp) in &mounts {
                    let holds_others = mounts.iter().any(|(_, _, other)| other != mp && below(other, mp));
                    if *fstype == FsType::Vfat && holds_others {
                        problems.push(OptionsError::invalid(
                            at!["partitions", *i, "filesystem", "mountpoint"],
                            format!("a vfat file system at {mp} cannot hold other mount points"),
                        ));
                    }
                }
            }
        }
        if self.format == Format::Qcow2
            && self.qcow2_compression == qcow2::Compression::Zstd
            && self.qcow2_compat == Some(qcow2::Version::V2)
        {
            problems.push(OptionsError::invalid(
                at!["qcow2_compression"],
                "zstd compression needs qcow2 version 3 (qcow2_compat 1.1)",
            ));
        }
        problems
    }

    /// The partitions asked for, the legacy layout spelled out.
    fn layout(&self, gpt: bool) -> Vec<Partition> {
        match (&self.root_fs_uuid, &self.partitions) {
            (_, Some(p)) => p.clone(),
            (None, None) => unreachable!("validated: root_fs_uuid or partitions"),
            (Some(uuid), None) => {
                let root = Partition {
                    start: None,
                    size: None,
                    ptype: Some(if gpt { LINUX_FS_GPT } else { "83" }.into()),
                    bootable: !gpt,
                    name: gpt.then(|| "root".into()),
                    uuid: None,
                    filesystem: Some(Filesystem {
                        fstype: self.root_fs_type.unwrap_or(FsType::Ext4),
                        uuid: uuid.clone(),
                        label: None,
                        mountpoint: ImagePath::parse("/").expect("an absolute path"),
                    }),
                };
                let mut parts = Vec::new();
                if gpt {
                    parts.push(Partition {
                        start: None,
                        size: Some(2048),
                        ptype: Some(BIOS_BOOT.into()),
                        bootable: false,
                        name: Some("bios".into()),
                        uuid: None,
                        filesystem: None,
                    });
                }
                parts.push(root);
                parts
            }
        }
    }

    /// Writes the partition table with sfdisk and reads back where each
    /// partition landed.
    fn partition(&self, image: &Path, gpt: bool, parts: &[Partition]) -> Result<Vec<Placed>, StageError> {
        let mut script = format!(
            "label: {}\nlabel-id: {}\nunit: sectors\n",
            if gpt { "gpt" } else { "dos" },
            self.ptuuid
        );
        for (i, p) in parts.iter().enumerate() {
            let mut fields = Vec::new();
            if let Some(s) = p.start {
                fields.push(format!("start={s}"));
            }
            if let Some(s) = p.size {
                fields.push(format!("size={s}"));
            }
            if let Some(t) = &p.ptype {
                fields.push(format!("type={t}"));
            }
            if gpt {
                let uuid = match &p.uuid {
                    Some(u) => u.to_string(),
                    None => derive_uuid(&format!("{}/partition/{i}", self.ptuuid)),
                };
                fields.push(format!("uuid={uuid}"));
                if let Some(n) = &p.name {
                    fields.push(format!("name=\"{n}\""));
                }
            }
            if p.bootable {
                fields.push("bootable".into());
            }
            script.push_str(&fields.join(", "));
            script.push('\n');
        }
        run(
            tool("sfdisk", crate::util::source_epoch(self.source_epoch))
                .args(["-q", "--no-reread", "--no-tell-kernel", "--wipe", "never"])
                .arg(image),
            Some(&script),
        )?;
        let json = run(
            tool("sfdisk", crate::util::source_epoch(self.source_epoch))
                .arg("--json")
                .arg(image),
            None,
        )?;
        let table: Value = serde_json::from_str(&json).map_err(|e| format!("sfdisk --json: {e}"))?;
        let on_disk = table["partitiontable"]["partitions"]
            .as_array()
            .ok_or("sfdisk --json shows no partitions")?;
        if on_disk.len() != parts.len() {
            return Err(format!("sfdisk made {} partitions, not {}", on_disk.len(), parts.len()).into());
        }
        Ok(on_disk
            .iter()
            .zip(parts)
            .enumerate()
            .map(|(index, (d, p))| Placed {
                index,
                start: d["start"].as_u64().unwrap_or(0),
                size: d["size"].as_u64().unwrap_or(0),
                ptype: d["type"].as_str().unwrap_or("").to_string(),
                fs: p.filesystem.clone(),
            })
            .collect())
    }

    /// Builds GRUB's images, when a boot loader is wanted and possible.
    fn grub_plan(
        &self,
        ctx: &Context,
        placed: &[Placed],
        gpt: bool,
        tmp: &Path,
    ) -> Result<Option<GrubPlan>, StageError> {
        let explicit = self.bootloader.map(|b| b.kind);
        if explicit == Some(BootloaderType::None) {
            return Ok(None);
        }
        let has_bios_part = placed.iter().any(|p| p.is(BIOS_BOOT, "-"));
        let esp = placed
            .iter()
            .find(|p| p.is(ESP_GPT, "ef") && p.fs.as_ref().is_some_and(|f| f.fstype == FsType::Vfat));
        let want_bios = !gpt || has_bios_part;
        if !want_bios && esp.is_none() {
            if explicit == Some(BootloaderType::Grub2) {
                return Err("grub2 on a GPT needs a BIOS boot partition (type 21686148-6449-6E6F-744E-656564454649) or an EFI system partition".into());
            }
            return Ok(None);
        }
        // GRUB's files live on the partition mounted at /boot, else on /.
        let boot = placed
            .iter()
            .find(|p| p.fs.as_ref().is_some_and(|f| f.mountpoint.as_str() == "/boot"))
            .or_else(|| {
                placed
                    .iter()
                    .find(|p| p.fs.as_ref().is_some_and(|f| f.mountpoint.as_str() == "/"))
            })
            .expect("validated: one partition mounted at /");
        let bootfs = boot.fs.as_ref().expect("has a file system");
        let grub_name = if !ctx.tree.join("boot/grub").exists() && ctx.tree.join("boot/grub2").exists() {
            "grub2"
        } else {
            "grub"
        };
        let grub_dir = if bootfs.mountpoint.as_str() == "/boot" {
            format!("/{grub_name}")
        } else {
            format!("/boot/{grub_name}")
        };
        let fs_module = match bootfs.fstype {
            FsType::Ext4 => "ext2",
            FsType::Vfat => "fat",
            FsType::Xfs => "xfs",
            FsType::Btrfs => "btrfs",
        };
        let early = tmp.join("early.cfg");
        let search = if bootfs.fstype == FsType::Vfat {
            bootfs.uuid.to_ascii_uppercase()
        } else {
            bootfs.uuid.to_ascii_lowercase()
        };
        std::fs::write(
            &early,
            format!("search --no-floppy --fs-uuid --set=root {search}\nset prefix=($root){grub_dir}\n"),
        )
        .map_err(|e| format!("{}: {e}", early.display()))?;
        let common = [
            "part_msdos",
            "part_gpt",
            fs_module,
            "search",
            "search_fs_uuid",
            "search_fs_file",
            "search_label",
            "normal",
            "configfile",
            "linux",
            "echo",
            "test",
            "gzio",
            "serial",
            "terminal",
            "halt",
            "reboot",
            "loadenv",
            "ls",
            "cat",
            "all_video",
            "minicmd",
            "sleep",
            "true",
        ];

        // A GRUB image for `format` from the modules in `dir`, with the
        // early configuration and the modules every platform needs.
        let mkimage = |format: &str, dir: &Path, out: &Path, platform_modules: &[&str]| {
            let mut cmd = tool("grub-mkimage", crate::util::source_epoch(self.source_epoch));
            cmd.args(["-O", format, "-d"])
                .arg(dir)
                .args(["-p", &grub_dir, "-c"])
                .arg(&early)
                .arg("-o")
                .arg(out)
                .args(platform_modules)
                .args(common);
            run(&mut cmd, None)
        };
        let mut plan = GrubPlan {
            bios: None,
            efi: None,
            reads: boot.index,
            reads_csum_seed: true,
        };
        if want_bios {
            let dir = grub_lib(&ctx.tree, "i386-pc").ok_or(
                "BIOS boot needs GRUB's i386-pc modules (/usr/lib/grub/i386-pc, package grub-pc-bin) in the tree or the build root",
            )?;
            let core = tmp.join("core.img");
            mkimage("i386-pc", &dir, &core, &["biosdisk", "boot"])?;
            println!(
                "grub: i386-pc core from {}, prefix ({}){grub_dir}",
                dir.display(),
                bootfs.uuid
            );
            plan.bios = Some((core, dir.join("boot.img")));
            plan.reads_csum_seed &= reads_csum_seed(&dir);
        }
        if esp.is_some() {
            match grub_lib(&ctx.tree, "x86_64-efi") {
                Some(dir) => {
                    let efi = tmp.join("BOOTX64.EFI");
                    mkimage("x86_64-efi", &dir, &efi, &["fat", "efi_gop"])?;
                    println!("grub: x86_64-efi image from {}", dir.display());
                    plan.efi = Some(efi);
                    plan.reads_csum_seed &= reads_csum_seed(&dir);
                }
                None => println!("grub: no x86_64-efi modules (grub-efi-amd64-bin): no UEFI boot loader"),
            }
        }
        Ok(Some(plan))
    }

    fn make_filesystems(
        &self,
        ctx: &Context,
        image: &Path,
        placed: &[Placed],
        grub: Option<&GrubPlan>,
        tmp: &Path,
        mode: &FsMode,
    ) -> Result<(), StageError> {
        let empty = tmp.join("empty");
        std::fs::create_dir_all(&empty).map_err(|e| format!("{}: {e}", empty.display()))?;
        let epoch = crate::util::source_epoch(self.source_epoch);
        let mut with_fs: Vec<&Placed> = placed.iter().filter(|p| p.fs.is_some()).collect();
        with_fs.sort_by_key(|p| p.fs.as_ref().map(|f| f.mountpoint.len()));
        let mountpoints: Vec<String> = with_fs
            .iter()
            .map(|p| normalize_mountpoint(&p.fs.as_ref().expect("filtered").mountpoint))
            .collect();
        for (p, mp) in with_fs.iter().zip(&mountpoints) {
            let fs = p.fs.as_ref().expect("filtered");
            // The mount points below this one, relative to it.
            let exclude: Vec<String> = mountpoints
                .iter()
                .filter(|other| *other != mp)
                .filter_map(|other| {
                    let rel = if mp == "/" {
                        Some(other.as_str())
                    } else {
                        other.strip_prefix(mp.as_str()).filter(|r| r.starts_with('/'))
                    };
                    rel.map(str::to_owned)
                })
                .collect();
            let source = source_dir(&ctx.tree, mp, &empty);
            let offset = p.start * 512;
            let size = p.size * 512;
            let started = std::time::Instant::now();
            let _alive = Heartbeat::start(&format!("partition {} ({mp})", p.index + 1), String::new);
            let mut how = "";
            match fs.fstype {
                FsType::Ext4 => {
                    let uuid = fs.uuid.to_ascii_lowercase();
                    let whole = Ext4 {
                        image,
                        offset,
                        size,
                        uuid: &uuid,
                        label: fs.label.as_deref(),
                        source: &source,
                        exclude: &exclude,
                        epoch,
                        csum_seed: false,
                    };
                    match mode {
                        FsMode::Whole => whole.create()?,
                        FsMode::Prefix(output) => {
                            Ext4 {
                                csum_seed: true,
                                ..whole
                            }
                            .create()?;
                            match layered::list(&source, &exclude)? {
                                Some(listing) => prefix::write_listing(output, p.index, &listing)?,
                                None => println!(
                                    "partition {}: a name in it is not UTF-8: images make it whole",
                                    p.index + 1
                                ),
                            }
                        }
                        FsMode::OnPrefix(_) if grub.is_some_and(|g| g.reads == p.index && !g.reads_csum_seed) => {
                            println!(
                                "partition {}: GRUB here predates 2.06 and cannot read the prefix's file system: making it whole",
                                p.index + 1
                            );
                            punch(image, offset, size)?;
                            whole.create()?;
                        }
                        FsMode::OnPrefix(prefix) => how = on_prefix(prefix, p.index, mp, &exclude, &whole, tmp)?,
                    }
                }
                FsType::Vfat => {
                    if matches!(mode, FsMode::Prefix(_)) {
                        continue;
                    }
                    if matches!(mode, FsMode::OnPrefix(_)) {
                        punch(image, offset, size)?;
                    }
                    let esp = p.is(ESP_GPT, "ef");
                    let efi = grub.and_then(|g| g.efi.as_deref()).filter(|_| esp);
                    make_vfat(image, p, fs, &source, efi, epoch)?;
                }
                FsType::Xfs | FsType::Btrfs => unreachable!("validated: only ext4 and vfat"),
            }
            println!(
                "partition {} ({}): {:?} {} at {mp}, {} bytes at {offset}{how}, {:.1}s",
                p.index + 1,
                p.ptype,
                fs.fstype,
                fs.uuid,
                size,
                started.elapsed().as_secs_f64()
            );
        }
        Ok(())
    }

    /// Turns the raw image into the final file, and makes the format's own
    /// identifiers reproducible.
    fn convert(&self, raw: TempFile, output: &Path, reuse: Option<&qcow2::Reuse>) -> Result<(), StageError> {
        let dest = output.join(self.filename.as_str());
        let fmt = match self.format {
            Format::Raw => {
                std::fs::rename(raw.keep(), &dest).map_err(|e| format!("{}: {e}", dest.display()))?;
                return Ok(());
            }
            Format::RawXz => {
                let out = File::create(&dest).map_err(|e| format!("{}: {e}", dest.display()))?;
                // Every core, in xz's multi-threaded mode: the same bytes for
                // any number of threads (see the tar assembler).
                let _alive = Heartbeat::start("xz", {
                    let dest = dest.clone();
                    move || written(&dest)
                });
                let status = tool("xz", crate::util::source_epoch(self.source_epoch))
                    .args(["-T0", "-0", "--stdout"])
                    .arg(raw.path())
                    .stdout(out)
                    .status()
                    .map_err(|e| format!("cannot run xz: {e}"))?;
                if !status.success() {
                    return Err(format!("xz failed: {status}").into());
                }
                return Ok(());
            }
            Format::Qcow2 => {
                let started = std::time::Instant::now();
                let version = self.qcow2_compat.unwrap_or(qcow2::Version::V3);
                let s = qcow2::convert(raw.path(), &dest, self.qcow2_compression, version, reuse)?;
                println!(
                    "qcow2: {} clusters compressed, {} stored as is ({} of these taken from the prefix), {} zero; {} bytes, {:.1}s",
                    s.compressed,
                    s.plain,
                    s.reused,
                    s.zero,
                    s.bytes,
                    started.elapsed().as_secs_f64()
                );
                return Ok(());
            }
            Format::Vdi => "vdi",
            Format::Vmdk => "vmdk",
            Format::Vpc => "vpc",
        };
        let mut cmd = tool("qemu-img", crate::util::source_epoch(self.source_epoch));
        cmd.args(["convert", "-O", fmt]);
        match self.format {
            Format::Vmdk => {
                cmd.arg("-c");
                if let Some(sub) = self.vmdk_subformat {
                    cmd.args(["-o", &format!("subformat={sub:?}")]);
                }
            }
            Format::Vpc => {
                cmd.args(["-o", "subformat=fixed,force_size"]);
            }
            _ => {}
        }
        cmd.arg(raw.path()).arg(&dest);
        {
            let _alive = Heartbeat::start(fmt, {
                let dest = dest.clone();
                move || written(&dest)
            });
            run(&mut cmd, None)?;
        }
        drop(raw);
        let seed = format!("{}/{}", self.ptuuid, self.filename);
        match self.format {
            Format::Vdi => fix_vdi(&dest, &seed),
            Format::Vmdk => fix_vmdk(&dest, &seed),
            Format::Vpc => fix_vpc(&dest, &seed, crate::util::source_epoch(self.source_epoch)),
            _ => Ok(()),
        }
    }
}

/// `/`, or the path without a trailing slash.
fn normalize_mountpoint(mp: &ImagePath) -> String {
    let trimmed = mp.trim_end_matches('/');
    if trimmed.is_empty() {
        "/".into()
    } else {
        trimmed.replace("//", "/")
    }
}

/// Whether the (normalized) mount point `inner` is below `outer`.
fn below(inner: &str, outer: &str) -> bool {
    outer == "/" || inner.strip_prefix(outer).is_some_and(|r| r.starts_with('/'))
}

/// GRUB's modules for `platform`: the tree's own, so the boot loader matches
/// the GRUB the image has, else the build root's.
fn grub_lib(tree: &Path, platform: &str) -> Option<PathBuf> {
    [
        tree.join("usr/lib/grub").join(platform),
        Path::new("/usr/lib/grub").join(platform),
    ]
    .into_iter()
    .find(|d| d.join("moddep.lst").is_file() && d.join("kernel.img").is_file())
}

/// Whether the GRUB whose modules are in `dir` reads an ext4 with
/// `metadata_csum_seed`: 2.06 and later do (its `modinfo.sh` says which
/// it is; without one, it is taken to be older).
fn reads_csum_seed(dir: &Path) -> bool {
    let info = std::fs::read_to_string(dir.join("modinfo.sh")).unwrap_or_default();
    let version = info
        .lines()
        .find_map(|l| l.strip_prefix("grub_version="))
        .map(|v| v.trim_matches(|c| c == '"' || c == '\''));
    let Some(version) = version else { return false };
    let mut parts = version
        .split(['.', '~', '-', '+'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (2, 6)
}

/// Writes `boot.img` into the MBR and the core image into the MBR gap or the
/// BIOS boot partition, patching the sector numbers as grub-install does.
fn install_bios(
    image: &Path,
    placed: &[Placed],
    gpt: bool,
    (core_path, boot_path): &(PathBuf, PathBuf),
) -> StageResult {
    let core = std::fs::read(core_path).map_err(|e| format!("{}: {e}", core_path.display()))?;
    let boot = std::fs::read(boot_path).map_err(|e| format!("{}: {e}", boot_path.display()))?;
    if boot.len() != 512 || core.len() < 512 {
        return Err("GRUB's boot.img or core.img has an unexpected size".into());
    }
    let core_sectors = (core.len() as u64).div_ceil(512);
    let mut core = core;
    let core_sector = if gpt {
        let bb = placed
            .iter()
            .find(|p| p.is(BIOS_BOOT, "-"))
            .ok_or("GRUB on GPT needs a BIOS boot partition")?;
        if bb.size < core_sectors {
            return Err(format!(
                "the BIOS boot partition has {} sectors; GRUB's core needs {core_sectors}",
                bb.size
            )
            .into());
        }
        // diskboot.img's first blocklist entry: where the rest of the core starts.
        core[0x1f4..0x1fc].copy_from_slice(&(bb.start + 1).to_le_bytes());
        bb.start
    } else {
        let first = placed.iter().map(|p| p.start).min().unwrap_or(0);
        if first < 1 + core_sectors {
            return Err(format!(
                "GRUB's core needs {core_sectors} sectors before the first partition, which starts at sector {first}"
            )
            .into());
        }
        1
    };
    let f = File::options()
        .write(true)
        .open(image)
        .map_err(|e| format!("{}: {e}", image.display()))?;
    let io = |e: std::io::Error| StageError(format!("{}: {e}", image.display()));
    let mut mbr = boot[..440].to_vec();
    // GRUB_BOOT_MACHINE_KERNEL_SECTOR: where boot.img loads the core from.
    mbr[0x5c..0x64].copy_from_slice(&core_sector.to_le_bytes());
    // GRUB_BOOT_MACHINE_DRIVE_CHECK: on hard disks, always trust the BIOS
    // drive number, as grub-install does (two NOPs over the jump).
    mbr[0x66] = 0x90;
    mbr[0x67] = 0x90;
    f.write_all_at(&mbr, 0).map_err(io)?;
    f.write_all_at(&core, core_sector * 512).map_err(io)?;
    println!("grub: boot.img in the MBR, core ({core_sectors} sectors) at sector {core_sector}");
    Ok(())
}

/// A FAT file system in the partition, filled with mtools in sorted order
/// (mcopy -s would follow the source's directory order).
fn make_vfat(image: &Path, p: &Placed, fs: &Filesystem, source: &Path, efi: Option<&Path>, epoch: u64) -> StageResult {
    let epoch = epoch.max(FAT_EPOCH_MIN);
    let volid = vfat_volume_id(&fs.uuid).expect("validated: a vfat volume id");
    let mut mkfs = tool("mkfs.fat", epoch);
    // --invariant: the volume label entry gets a fixed time (mkfs.fat 4.2
    // ignores SOURCE_DATE_EPOCH there); -i still sets the volume id.
    mkfs.args(["--invariant", "--offset", &p.start.to_string(), "-i", &volid]);
    // mkfs.fat guesses the FAT type from the whole image, not the partition:
    // a 200 MiB partition on a 4 GiB disk gets FAT32 with 4 KiB clusters,
    // too few clusters to be FAT32, and mkfs.fat gives up.
    let (bits, cluster) = fat_geometry(p.size);
    mkfs.args(["-F", &bits.to_string(), "-s", &cluster.to_string()]);
    if let Some(label) = &fs.label {
        mkfs.args(["-n", label]);
    }
    mkfs.arg(image).arg((p.size * 512 / 1024).to_string());
    run(&mut mkfs, None)?;

    let drive = format!("{}@@{}", image.display(), p.start * 512);
    let mtool = |name: &str| {
        let mut c = tool(name, epoch);
        c.env("MTOOLS_SKIP_CHECK", "1").args(["-i", &drive]);
        c
    };
    copy_fat_dir(&mtool, source, "::")?;
    if let Some(efi) = efi {
        if !source.join("EFI/BOOT/BOOTX64.EFI").exists() {
            for d in ["::/EFI", "::/EFI/BOOT"] {
                let exists = run(mtool("mdir").arg(d), None).is_ok();
                if !exists {
                    run(mtool("mmd").arg(d), None)?;
                }
            }
            run(mtool("mcopy").arg(efi).arg("::/EFI/BOOT/BOOTX64.EFI"), None)?;
            println!("grub: EFI/BOOT/BOOTX64.EFI on the EFI system partition");
        }
    }
    Ok(())
}

/// The FAT type (12, 16 or 32) and sectors per cluster for a partition of
/// `sectors`. FAT32 wherever it fits (the UEFI specification's choice for
/// an ESP): at least 65,525 clusters, the biggest cluster up to 4 KiB that
/// leaves that many, as firmware tells the FAT type by the count of clusters.
/// Below that (about 33 MiB) FAT16, and FAT12 for a partition under 2 MiB.
fn fat_geometry(sectors: u64) -> (u32, u64) {
    const FAT32_MIN: u64 = 65_525;
    const FAT16_MIN: u64 = 4_085;
    // Clusters left after the reserved sectors and two FATs of four-byte entries.
    let clusters = |per: u64, entry: u64| sectors.saturating_sub(64) * 512 / (per * 512 + 2 * entry);
    if let Some(per) = [8, 4, 2, 1].into_iter().find(|per| clusters(*per, 4) >= FAT32_MIN + 16) {
        return (32, per);
    }
    if clusters(1, 2) >= FAT16_MIN + 16 {
        return (16, 1);
    }
    (12, 1)
}

fn copy_fat_dir(mtool: &dyn Fn(&str) -> Command, dir: &Path, at: &str) -> StageResult {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    entries.sort_by_key(|e| e.file_name());
    let mut files = Vec::new();
    let mut dirs = Vec::new();
    for e in entries {
        // Follows symbolic links: FAT has none.
        match std::fs::metadata(e.path()) {
            Ok(m) if m.is_dir() => dirs.push(e),
            Ok(m) if m.is_file() => files.push(e.path()),
            _ => println!("vfat: skipping {}", e.path().display()),
        }
    }
    if !files.is_empty() {
        run(mtool("mcopy").args(&files).arg(format!("{at}/")), None)?;
    }
    for d in dirs {
        let name = d.file_name();
        let sub = format!("{at}/{}", name.to_string_lossy());
        run(mtool("mmd").arg(&sub), None)?;
        copy_fat_dir(mtool, &d.path(), &sub)?;
    }
    Ok(())
}

/// Makes the ext4 of partition `index` (mounted at `mp`) from the prefix's
/// copy in the image plus the changes below `mp`; whole when they cannot be
/// written so. Returns how it was made, for the log.
fn on_prefix(
    prefix: &Prefix,
    index: usize,
    mp: &str,
    exclude: &[String],
    whole: &Ext4,
    tmp: &Path,
) -> Result<&'static str, StageError> {
    let values = tmp.join(format!("xattrs-{index}"));
    std::fs::create_dir_all(&values).map_err(|e| format!("{}: {e}", values.display()))?;
    let changes = prefix.changes_in(mp, exclude);
    let planned = match prefix.listing(index)? {
        Some(listing) => layered::plan(&listing, &changes, whole.source, &values)?,
        None => Err("the prefix could not list it".to_string()),
    };
    match planned {
        Ok(script) => {
            layered::apply(whole.image, whole.offset, &script, &values, whole.epoch)?;
            layered::set_uuid(whole.image, whole.offset, whole.uuid, whole.epoch)?;
            crate::ext4::normalize_times(whole.image, whole.offset, whole.epoch)?;
            if changes.is_empty() {
                return Ok(", the prefix's");
            }
            println!(
                "partition {}: {} paths changed since the prefix",
                index + 1,
                changes.len()
            );
            Ok(", on the prefix's")
        }
        Err(why) => {
            println!(
                "partition {}: cannot build on the prefix's file system ({why}): making it whole",
                index + 1
            );
            punch(whole.image, whole.offset, whole.size)?;
            whole.create()?;
            Ok("")
        }
    }
}

/// Zeroes `len` bytes at `offset` of the image, leaving a hole where the
/// file system allows one, as a fresh sparse image has.
fn punch(image: &Path, offset: u64, len: u64) -> StageResult {
    use nix::fcntl::{fallocate, FallocateFlags};
    let f = File::options()
        .write(true)
        .open(image)
        .map_err(|e| format!("{}: {e}", image.display()))?;
    let flags = FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE;
    if fallocate(&f, flags, offset as i64, len as i64).is_ok() {
        return Ok(());
    }
    let zeros = vec![0u8; 1 << 20];
    let mut at = offset;
    while at < offset + len {
        let n = zeros.len().min((offset + len - at) as usize);
        f.write_all_at(&zeros[..n], at)
            .map_err(|e| format!("{}: {e}", image.display()))?;
        at += n as u64;
    }
    Ok(())
}

fn patch(path: &Path, at: u64, bytes: &[u8]) -> StageResult {
    let f = File::options()
        .write(true)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all_at(bytes, at)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(())
}

/// VDI: the image and last-snapshot UUIDs qemu-img draws at random.
fn fix_vdi(path: &Path, seed: &str) -> StageResult {
    patch(path, 0x188, &derive_bytes(&format!("{seed}/vdi/image")))?;
    patch(path, 0x198, &derive_bytes(&format!("{seed}/vdi/snap")))
}

/// VMDK: the content id (`CID=`) in the descriptor, drawn at random.
fn fix_vmdk(path: &Path, seed: &str) -> StageResult {
    let io = |e: std::io::Error| StageError(format!("{}: {e}", path.display()));
    let f = File::options().read(true).write(true).open(path).map_err(io)?;
    let mut head = vec![0u8; 64 * 1024];
    let n = f.read_at(&mut head, 0).map_err(io)?;
    head.truncate(n);
    let cid: String = derive_bytes(&format!("{seed}/vmdk"))[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let at = head
        .windows(5)
        .position(|w| w == b"\nCID=")
        .ok_or("qemu-img wrote a VMDK without a CID")?
        + 5;
    // qemu-img prints the CID with %x: its length varies, so the rest of
    // the descriptor text moves with it.
    let line_end = at
        + head[at..]
            .iter()
            .position(|b| *b == b'\n')
            .ok_or("VMDK descriptor without newline")?;
    match sparse_descriptor(&head) {
        // An embedded descriptor (the sparse sub-formats): the header says
        // where its sectors are; the new text fills them, zero-padded.
        Some(region) => {
            if !region.contains(&at) {
                return Err("the VMDK's CID is not in the descriptor its header names".into());
            }
            let text_end = head[at..region.end]
                .iter()
                .position(|b| *b == 0)
                .map_or(region.end, |p| at + p);
            let mut tail = cid.into_bytes();
            tail.extend_from_slice(&head[line_end..text_end]);
            if at + tail.len() > region.end {
                return Err("no room to rewrite the VMDK descriptor".into());
            }
            tail.resize(region.end - at, 0);
            f.write_all_at(&tail, at as u64).map_err(io)?;
        }
        // A descriptor file of its own (the flat sub-formats).
        None => {
            if n == head.len() {
                return Err("VMDK descriptor file larger than expected".into());
            }
            let mut tail = cid.into_bytes();
            tail.extend_from_slice(&head[line_end..]);
            f.set_len(at as u64).map_err(io)?;
            f.write_all_at(&tail, at as u64).map_err(io)?;
        }
    }
    Ok(())
}

/// The bytes of a sparse VMDK's embedded descriptor, from its header
/// (`KDMV`, then version, flags, capacity, grain size, and the descriptor's
/// offset and size in sectors, little-endian), when `head` holds all of it.
fn sparse_descriptor(head: &[u8]) -> Option<std::ops::Range<usize>> {
    if head.len() < 44 || &head[..4] != b"KDMV" {
        return None;
    }
    let sectors = |at: usize| u64::from_le_bytes(head[at..at + 8].try_into().expect("8 bytes"));
    let (offset, size) = (sectors(28), sectors(36));
    let start = usize::try_from(offset.checked_mul(512)?).ok()?;
    let end = start.checked_add(usize::try_from(size.checked_mul(512)?).ok()?)?;
    (offset > 0 && end <= head.len()).then_some(start..end)
}

/// VHD (fixed): the footer's time stamp and unique id, then its checksum.
fn fix_vpc(path: &Path, seed: &str, epoch: u64) -> StageResult {
    let len = std::fs::metadata(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .len();
    let f = File::options()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let at = len - 512;
    let mut footer = [0u8; 512];
    f.read_exact_at(&mut footer, at)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if &footer[..8] != b"conectix" {
        return Err("qemu-img wrote a VHD without a footer".into());
    }
    let stamp = epoch.saturating_sub(946_684_800).min(u64::from(u32::MAX)) as u32;
    footer[24..28].copy_from_slice(&stamp.to_be_bytes());
    footer[68..84].copy_from_slice(&derive_bytes(&format!("{seed}/vhd")));
    footer[64..68].copy_from_slice(&[0; 4]);
    let sum: u32 = footer.iter().map(|b| u32::from(*b)).sum();
    footer[64..68].copy_from_slice(&(!sum).to_be_bytes());
    f.write_all_at(&footer, at)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(())
}

pub static ASSEMBLER: Builtin = Builtin::new::<Qemu>(
    "org.osbuild.qemu",
    Kind::Assembler,
    "Makes a bootable partitioned disk image (raw, qcow2, vdi, vmdk, vpc) with GRUB, without loop devices or mounts",
)
.with_aliases(&["io.weldr.qcow2"])
.with_prefix(prefix::options);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::testing::{debugfs, fsck, make_tree, output};
    use schemars::JsonSchema;
    use serde_json::json;
    use std::io::Read;
    use std::time::{Duration, Instant};

    const MARKER: &str = "OSBUILD-BOOT-MARKER";

    fn grub_cfg() -> String {
        format!("serial --unit=0 --speed=115200\nterminal_output serial\necho {MARKER}\nhalt\n")
    }

    /// Runs the assembler as `assembly` on `tree` into the new directory `t/out`.
    fn run_in(t: &Path, tree: &Path, out: &str, assembly: Assembly, opts: &Value) -> PathBuf {
        let out = t.join(out);
        std::fs::create_dir(&out).unwrap();
        let ctx = Context {
            tree: tree.to_path_buf(),
            output_dir: Some(out.clone()),
            cache: None,
            sources: None,
            assembly,
        };
        ASSEMBLER.run(&ctx, opts).unwrap();
        out
    }

    /// Writes the delta the engine would give for `changes`.
    fn write_delta(t: &Path, changes: Vec<osbuild_stages::assembly::Change>) -> PathBuf {
        let delta = t.join("delta.json");
        let json = serde_json::to_vec(&osbuild_stages::assembly::Delta { changes }).unwrap();
        std::fs::write(&delta, json).unwrap();
        delta
    }

    /// Assembles `opts` from a fresh tree whose mtimes are `mtime`.
    fn assemble(tmp: &Path, name: &str, mtime: u64, opts: &Value) -> PathBuf {
        let tree = tmp.join(format!("tree-{name}"));
        make_tree(&tree, mtime, &grub_cfg());
        let started = Instant::now();
        let out = run_in(tmp, &tree, &format!("out-{name}"), Assembly::Image, opts);
        println!("assembled {name} in {:.2}s", started.elapsed().as_secs_f64());
        let files: Vec<_> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(files.len(), 1, "only the image is left in the output: {files:?}");
        out.join(opts["filename"].as_str().unwrap())
    }

    fn table(image: &Path) -> Value {
        serde_json::from_str(&output(Command::new("sfdisk").arg("-J").arg(image))).unwrap()
    }

    fn read_at(image: &Path, at: u64, len: usize) -> Vec<u8> {
        let mut buf = vec![0u8; len];
        File::open(image).unwrap().read_exact_at(&mut buf, at).unwrap();
        buf
    }

    /// Boots the image under TCG and reports whether GRUB printed the marker.
    /// qemu-system-x86_64 and OVMF are required (scripts/test installs them):
    /// a missing tool fails the test rather than skipping the check.
    fn boots(image: &Path, uefi: bool) -> bool {
        let ovmf = Path::new("/usr/share/ovmf/OVMF.fd");
        assert!(
            Command::new("qemu-system-x86_64").arg("--version").output().is_ok(),
            "the boot check needs qemu-system-x86_64 (package qemu-system-x86)"
        );
        assert!(
            !uefi || ovmf.exists(),
            "the UEFI boot check needs {} (package ovmf)",
            ovmf.display()
        );
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args([
            "-accel",
            "tcg",
            "-m",
            "256",
            "-display",
            "none",
            "-serial",
            "stdio",
            "-no-reboot",
            "-nodefaults",
        ])
        .arg("-drive")
        .arg(format!("file={},format=raw,if=ide,snapshot=on", image.display()))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
        if uefi {
            cmd.arg("-bios").arg(ovmf);
        }
        let mut child = cmd.spawn().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                seen.extend_from_slice(&buf[..n]);
                if String::from_utf8_lossy(&seen).contains(MARKER) {
                    let _ = tx.send(true);
                    return;
                }
            }
            let _ = tx.send(false);
        });
        let found = rx.recv_timeout(Duration::from_secs(60)).unwrap_or(false);
        let _ = child.kill();
        let _ = child.wait();
        found
    }

    #[test]
    fn mbr_legacy_layout_boots_and_is_reproducible() {
        let tmp = TempDir::new("qemu-test").unwrap();
        let uuid = "76a22bf4-f153-4541-b6c7-0332c0dfaeac";
        let mut opts = json!({
            "format": "qcow2", "filename": "disk.qcow2", "size": 128 << 20,
            "ptuuid": "0x14fc63d2", "root_fs_uuid": uuid, "source_epoch": 1_700_000_000
        });
        let a = assemble(tmp.path(), "a", 1_800_000_000, &opts);
        let b = assemble(tmp.path(), "b", 1_750_000_000, &opts);
        assert!(
            std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(),
            "two assemblies differ"
        );
        let info = output(Command::new("qemu-img").arg("info").arg(&a));
        assert!(info.contains("file format: qcow2"), "{info}");

        opts["format"] = json!("raw");
        opts["filename"] = json!("disk.raw");
        let raw = assemble(tmp.path(), "raw", 1_800_000_000, &opts);
        assert_eq!(std::fs::metadata(&raw).unwrap().len(), 128 << 20);
        let t = table(&raw);
        let pt = &t["partitiontable"];
        assert_eq!(pt["label"], "dos");
        assert_eq!(pt["id"], "0x14fc63d2");
        let p = &pt["partitions"][0];
        assert_eq!(
            (p["start"].as_u64(), p["type"].as_str(), p["bootable"].as_bool()),
            (Some(2048), Some("83"), Some(true))
        );
        assert_eq!(p["size"].as_u64(), Some((128 << 11) - 2048));
        let offset = 2048 * 512;
        fsck(&raw, offset);
        let sb = debugfs(&raw, offset, "stats");
        assert!(sb.contains(uuid), "{sb}");
        let boot = debugfs(&raw, offset, "ls -l /boot/grub");
        assert!(boot.contains("grub.cfg"), "{boot}");

        // boot.img in the MBR (code only: the partition table survives),
        // pointing at the core in sector 1, which starts with diskboot.img.
        let mbr = read_at(&raw, 0, 512);
        let boot_img = std::fs::read("/usr/lib/grub/i386-pc/boot.img").unwrap();
        assert_eq!(&mbr[..0x5c], &boot_img[..0x5c]);
        assert_eq!(u64::from_le_bytes(mbr[0x5c..0x64].try_into().unwrap()), 1);
        assert_eq!(&mbr[510..], &[0x55, 0xaa]);
        let core = read_at(&raw, 512, 512);
        let diskboot = std::fs::read("/usr/lib/grub/i386-pc/diskboot.img").unwrap();
        assert_eq!(&core[..0x1f4], &diskboot[..0x1f4]);
        assert_eq!(u64::from_le_bytes(core[0x1f4..0x1fc].try_into().unwrap()), 2);

        assert!(
            boots(&raw, false),
            "GRUB did not print the marker from /boot/grub/grub.cfg"
        );
    }

    fn split_opts(format: &str, filename: &str) -> Value {
        json!({
            "format": format, "filename": filename, "size": 160 << 20,
            "ptuuid": "d2c6c8b4-52a4-4bb0-a32b-3f1f44a8b6a2", "pttype": "gpt", "source_epoch": 1_700_000_000,
            "partitions": [
                {"start": 2048, "size": 2048, "type": BIOS_BOOT, "name": "bios"},
                {"start": 4096, "size": 40960, "type": ESP_GPT, "name": "esp",
                 "filesystem": {"type": "vfat", "uuid": "7B77-95E7", "label": "ESP", "mountpoint": "/boot/efi"}},
                {"start": 45056, "size": 65536, "type": LINUX_FS_GPT, "name": "boot",
                 "filesystem": {"type": "ext4", "uuid": "0194fdc2-fa2f-4cc0-81d3-ff12045b73c8", "mountpoint": "/boot"}},
                {"type": LINUX_FS_GPT, "uuid": "6264d520-3fb9-423f-8ab8-7a0a8e3d3562", "name": "root",
                 "filesystem": {"type": "ext4", "uuid": "f4b3bd3a-0c8e-4b0a-a3c8-7e2c5bca6e39", "label": "root", "mountpoint": "/"}}
            ]
        })
    }

    #[test]
    fn gpt_with_boot_and_esp_partitions() {
        let tmp = TempDir::new("qemu-test").unwrap();
        let raw = assemble(tmp.path(), "gpt", 1_800_000_000, &split_opts("raw", "disk.raw"));
        let t = table(&raw);
        let pt = &t["partitiontable"];
        assert_eq!(pt["label"], "gpt");
        assert_eq!(pt["id"], "D2C6C8B4-52A4-4BB0-A32B-3F1F44A8B6A2");
        let parts = pt["partitions"].as_array().unwrap();
        let starts: Vec<_> = parts.iter().map(|p| p["start"].as_u64().unwrap()).collect();
        assert_eq!(starts, [2048, 4096, 45056, 110592]);
        assert_eq!(parts[1]["type"], ESP_GPT);
        assert_eq!(parts[3]["uuid"], "6264D520-3FB9-423F-8AB8-7A0A8E3D3562");
        // A partition uuid left out is derived from ptuuid, not random.
        let derived = derive_uuid("d2c6c8b4-52a4-4bb0-a32b-3f1f44a8b6a2/partition/0").to_ascii_uppercase();
        assert_eq!(parts[0]["uuid"].as_str(), Some(derived.as_str()));

        // The root file system has /boot and /boot/efi as empty mount points.
        let root = 110592 * 512;
        fsck(&raw, root);
        let entries = |ls: &str| ls.split_whitespace().filter(|w| w.starts_with('(')).count();
        let ls = debugfs(&raw, root, "ls /boot");
        assert_eq!(entries(&ls), 2, "only . and ..: {ls}");
        let rootls = debugfs(&raw, root, "ls /");
        assert!(rootls.contains("usr") && rootls.contains("home"), "{rootls}");
        // The /boot file system holds the kernel and GRUB's files at its root.
        let bootfs = 45056 * 512;
        fsck(&raw, bootfs);
        let ls = debugfs(&raw, bootfs, "ls /");
        assert!(
            ls.contains("vmlinuz-6.1.0-test-amd64") && ls.contains("grub") && ls.contains("efi"),
            "{ls}"
        );
        let ls = debugfs(&raw, bootfs, "ls /efi");
        assert_eq!(entries(&ls), 2, "only . and ..: {ls}");
        // The ESP: the tree's files plus GRUB for UEFI.
        let esp = format!("{}@@{}", raw.display(), 4096 * 512);
        let dir = output(
            Command::new("mdir")
                .env("MTOOLS_SKIP_CHECK", "1")
                .args(["-i", &esp, "-/", "-b", "::/EFI"]),
        );
        assert!(dir.contains("::/EFI/BOOT/BOOTX64.EFI"), "{dir}");
        assert!(dir.contains("::/EFI/debian/grub.cfg"), "{dir}");
        // boot.img points at the BIOS boot partition; the core's blocklist at the sector after.
        let mbr = read_at(&raw, 0, 512);
        assert_eq!(u64::from_le_bytes(mbr[0x5c..0x64].try_into().unwrap()), 2048);
        let core = read_at(&raw, 2048 * 512, 512);
        assert_eq!(u64::from_le_bytes(core[0x1f4..0x1fc].try_into().unwrap()), 2049);

        assert!(boots(&raw, false), "GRUB (BIOS, GPT) did not print the marker");
    }

    /// Everything a directory tree holds, for comparing two: each entry's
    /// path, type, mode, owner, size and link target, and the files' bytes.
    fn contents(dir: &Path) -> String {
        let list = output(
            Command::new("find")
                .arg(dir)
                .args(["-mindepth", "1", "-printf", "%P %y %m %U %G %s %l\n"]),
        );
        let mut lines: Vec<&str> = list.lines().collect();
        lines.sort_unstable();
        let sums = output(
            Command::new("sh")
                .arg("-c")
                .arg("cd \"$1\" && find . -type f -print0 | sort -z | xargs -0r sha256sum")
                .arg("sh")
                .arg(dir),
        );
        format!("{}\n{sums}", lines.join("\n"))
    }

    /// The file system at `offset`, dumped into a new directory `to`.
    fn dump(image: &Path, offset: u64, to: &Path) -> String {
        std::fs::create_dir(to).unwrap();
        for name in debugfs(image, offset, "ls -p /")
            .lines()
            .filter_map(|l| l.split('/').nth(5))
        {
            if !name.is_empty() && name != "." && name != ".." && name != "lost+found" {
                debugfs(image, offset, &format!("rdump \"/{name}\" {}", to.display()));
            }
        }
        contents(to)
    }

    #[test]
    fn an_image_on_the_prefix_holds_its_tree_checks_clean_and_boots() {
        use osbuild_stages::assembly::{Change, OnPrefix};
        use std::os::unix::fs::PermissionsExt;
        let tmp = TempDir::new("qemu-test").unwrap();
        let t = tmp.path();
        let opts = split_opts("qcow2", "img.qcow2");
        // The prefix tree, and the image's: what its own stages did to a copy.
        let k = t.join("tree-k");
        make_tree(&k, 1_600_000_000, &grub_cfg());
        let n = t.join("tree-n");
        assert!(Command::new("cp").arg("-a").arg(&k).arg(&n).status().unwrap().success());
        std::fs::write(n.join("etc/hostname"), "other\n").unwrap();
        std::fs::remove_dir_all(n.join("home/user")).unwrap();
        std::fs::create_dir_all(n.join("srv/data")).unwrap();
        std::fs::write(n.join("srv/data/f"), "data\n").unwrap();
        std::fs::set_permissions(n.join("srv/data"), std::fs::Permissions::from_mode(0o750)).unwrap();
        std::os::unix::fs::chown(n.join("srv/data"), Some(7), Some(8)).unwrap();
        assert!(Command::new("setfattr")
            .args(["-n", "user.role", "-v", "web"])
            .arg(n.join("srv/data"))
            .status()
            .unwrap()
            .success());
        std::os::unix::fs::symlink("/srv/data/f", n.join("etc/motd")).unwrap();
        std::fs::create_dir(n.join("run")).unwrap();
        nix::unistd::mkfifo(&n.join("run/ctl"), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        std::fs::write(n.join("boot/grub/extra.cfg"), "set timeout=1\n").unwrap();
        std::fs::write(
            n.join("boot/efi/EFI/debian/grub.cfg"),
            "configfile (hd0,gpt3)/grub/grub.cfg\n",
        )
        .unwrap();
        // usr/lib made anew (an opaque directory): only os-release is left.
        let lib = n.join("usr/lib");
        std::fs::rename(lib.join("os-release"), n.join("os-release")).unwrap();
        std::fs::remove_dir_all(&lib).unwrap();
        std::fs::create_dir(&lib).unwrap();
        std::fs::rename(n.join("os-release"), lib.join("os-release")).unwrap();
        let changes: Vec<Change> = [
            ("/boot", false),
            ("/boot/efi", false),
            ("/boot/efi/EFI", false),
            ("/boot/efi/EFI/debian", false),
            ("/boot/efi/EFI/debian/grub.cfg", false),
            ("/boot/grub", false),
            ("/boot/grub/extra.cfg", false),
            ("/etc", false),
            ("/etc/hostname", false),
            ("/etc/motd", false),
            ("/home", false),
            ("/home/user", true),
            ("/run", false),
            ("/run/ctl", false),
            ("/srv", false),
            ("/srv/data", false),
            ("/srv/data/f", false),
            ("/usr", false),
            ("/usr/lib", true),
            ("/usr/lib/os-release", false),
        ]
        .iter()
        .map(|(p, r)| Change {
            path: p.to_string(),
            replaced: *r,
        })
        .collect();
        let delta = write_delta(t, changes);

        let prefix = run_in(t, &k, "out-prefix", Assembly::Prefix, &prefix::options(&opts).unwrap());
        let mut held: Vec<String> = std::fs::read_dir(&prefix)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        held.sort();
        assert_eq!(
            held,
            [
                "disk.raw",
                "fs-2.json",
                "fs-3.json",
                "prefix.json",
                "qcow2-zlib.data",
                "qcow2-zlib.index"
            ]
        );
        let on = || {
            Assembly::OnPrefix(OnPrefix {
                prefix: prefix.clone(),
                delta: delta.clone(),
            })
        };
        let a = run_in(t, &n, "out-a", on(), &opts).join("img.qcow2");
        let b = run_in(t, &n, "out-b", on(), &opts).join("img.qcow2");
        assert!(std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(), "reproducible");
        let whole = run_in(t, &n, "out-whole", Assembly::Image, &opts).join("img.qcow2");

        let raw = |q: &Path, name: &str| {
            let r = t.join(name);
            output(Command::new("qemu-img").args(["convert", "-O", "raw"]).arg(q).arg(&r));
            r
        };
        let (on_raw, whole_raw) = (raw(&a, "on.raw"), raw(&whole, "whole.raw"));
        for (offset, uuid) in [
            (110592 * 512, "f4b3bd3a-0c8e-4b0a-a3c8-7e2c5bca6e39"),
            (45056 * 512, "0194fdc2-fa2f-4cc0-81d3-ff12045b73c8"),
        ] {
            fsck(&on_raw, offset);
            let head = output(
                Command::new("dumpe2fs")
                    .arg("-h")
                    .arg(format!("{}?offset={offset}", on_raw.display())),
            );
            assert!(head.contains(uuid), "{head}");
            let on_files = dump(&on_raw, offset, &t.join(format!("on-{offset}")));
            let whole_files = dump(&whole_raw, offset, &t.join(format!("whole-{offset}")));
            assert!(
                on_files.contains("grub/extra.cfg f 644") || on_files.contains("srv/data d 750 7 8"),
                "{on_files}"
            );
            assert_eq!(
                on_files, whole_files,
                "the file system at {offset} holds the final tree"
            );
        }
        let root = 110592 * 512;
        assert!(debugfs(&on_raw, root, "ea_get /srv/data user.role").contains("web"));
        assert!(debugfs(&on_raw, root, "stat /run/ctl").contains("Type: FIFO"));
        let usr_lib = debugfs(&on_raw, root, "ls /usr/lib");
        assert!(usr_lib.contains("os-release") && !usr_lib.contains("grub"), "{usr_lib}");
        // The UUID changed in the superblock alone: the checksums' seed is kept there.
        let head = output(
            Command::new("dumpe2fs")
                .arg("-h")
                .arg(format!("{}?offset={root}", on_raw.display())),
        );
        assert!(head.contains("metadata_csum_seed"), "{head}");
        assert!(
            boots(&on_raw, false),
            "GRUB (BIOS) did not boot the image made on the prefix"
        );
    }

    #[test]
    fn a_grub_before_2_06_gets_its_boot_file_system_whole() {
        use osbuild_stages::assembly::{Change, OnPrefix};
        let tmp = TempDir::new("qemu-test").unwrap();
        let t = tmp.path();
        let opts = split_opts("raw", "img.raw");
        // The tree's own GRUB, which says it is 2.04.
        let k = t.join("tree-k");
        make_tree(&k, 1_600_000_000, &grub_cfg());
        let grub = k.join("usr/lib/grub");
        std::fs::create_dir_all(&grub).unwrap();
        assert!(Command::new("cp")
            .arg("-a")
            .arg("/usr/lib/grub/i386-pc")
            .arg(&grub)
            .status()
            .unwrap()
            .success());
        let info = grub.join("i386-pc/modinfo.sh");
        let text = std::fs::read_to_string(&info).unwrap();
        let old: String = text
            .lines()
            .map(|l| {
                if l.starts_with("grub_version=") {
                    "grub_version=\"2.04\"\n".into()
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        std::fs::write(&info, old).unwrap();
        assert!(!reads_csum_seed(&grub.join("i386-pc")));
        assert!(
            reads_csum_seed(Path::new("/usr/lib/grub/i386-pc")),
            "the host's GRUB is 2.06 or later"
        );
        let n = t.join("tree-n");
        assert!(Command::new("cp").arg("-a").arg(&k).arg(&n).status().unwrap().success());
        std::fs::write(n.join("etc/hostname"), "other\n").unwrap();
        std::fs::write(n.join("boot/grub/extra.cfg"), "set timeout=1\n").unwrap();
        let changes = ["/boot", "/boot/grub", "/boot/grub/extra.cfg", "/etc", "/etc/hostname"]
            .iter()
            .map(|p| Change {
                path: p.to_string(),
                replaced: false,
            })
            .collect();
        let delta = write_delta(t, changes);
        let prefix = run_in(t, &k, "out-prefix", Assembly::Prefix, &prefix::options(&opts).unwrap());
        let on = Assembly::OnPrefix(OnPrefix { prefix, delta });
        let raw = run_in(t, &n, "out", on, &opts).join("img.raw");
        let features = |offset: u64| {
            fsck(&raw, offset);
            output(
                Command::new("dumpe2fs")
                    .arg("-h")
                    .arg(format!("{}?offset={offset}", raw.display())),
            )
        };
        assert!(
            !features(45056 * 512).contains("metadata_csum_seed"),
            "GRUB reads /boot: made whole"
        );
        assert!(
            features(110592 * 512).contains("metadata_csum_seed"),
            "/ is built on the prefix's"
        );
        assert!(boots(&raw, false), "GRUB (BIOS) did not boot");
    }

    #[test]
    fn other_formats_are_reproducible() {
        let tmp = TempDir::new("qemu-test").unwrap();
        for (fmt, name, magic) in [
            ("raw", "d.raw", "raw"),
            ("vdi", "d.vdi", "vdi"),
            ("qcow2", "d.qcow2", "qcow2"),
            ("vmdk", "d.vmdk", "vmdk"),
            ("vpc", "d.vhd", "vpc"),
        ] {
            let mut opts = split_opts(fmt, name);
            if fmt == "qcow2" {
                opts["qcow2_compression"] = json!("zstd");
            }
            let a = assemble(tmp.path(), &format!("{fmt}-a"), 1_800_000_000, &opts);
            if fmt == "raw" {
                // Change times (which no one can set) then differ by a second.
                std::thread::sleep(Duration::from_millis(1100));
            }
            let b = assemble(tmp.path(), &format!("{fmt}-b"), 1_750_000_000, &opts);
            let (x, y) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
            let diff: Vec<usize> = (0..x.len().min(y.len())).filter(|i| x[*i] != y[*i]).take(20).collect();
            assert!(x == y, "{fmt}: two assemblies differ at {diff:?}");
            let info = output(Command::new("qemu-img").args(["info", "--output=json"]).arg(&a));
            let info: Value = serde_json::from_str(&info).unwrap();
            if fmt == "vpc" {
                // A fixed VHD is a raw image with a footer: probing sees raw.
                let len = std::fs::metadata(&a).unwrap().len();
                assert_eq!(&read_at(&a, len - 512, 8), b"conectix");
            } else {
                assert_eq!(info["format"], magic);
            }
            if fmt == "vdi" || fmt == "vmdk" {
                output(Command::new("qemu-img").args(["check"]).arg(&a).arg("-f").arg(fmt));
            }
        }
    }

    /// qemu-img draws the CID at random and prints it with %x, so it can be
    /// shorter than 8 digits: the rewrite gives the same bytes whatever it was.
    #[test]
    fn a_vmdk_cid_of_any_length_is_rewritten_alike() {
        let tmp = TempDir::new("qemu-vmdk").unwrap();
        let mut made = Vec::new();
        for (i, old) in ["1a", "75998837", "0"].iter().enumerate() {
            // The same name in each: the descriptor names its extent file.
            let dir = tmp.path().join(format!("{i}"));
            std::fs::create_dir(&dir).unwrap();
            let path = dir.join("d.vmdk");
            output(
                Command::new("qemu-img")
                    .args(["create", "-q", "-f", "vmdk"])
                    .arg(&path)
                    .arg("16M"),
            );
            let mut bytes = std::fs::read(&path).unwrap();
            let region = sparse_descriptor(&bytes).expect("a sparse VMDK names its descriptor");
            let text = String::from_utf8_lossy(&bytes[region.clone()])
                .trim_end_matches('\0')
                .to_string();
            let cid_line = text.lines().find(|l| l.starts_with("CID=")).unwrap().to_string();
            let text = text.replacen(&cid_line, &format!("CID={old}"), 1);
            let mut new = text.into_bytes();
            new.resize(region.len(), 0);
            bytes[region].copy_from_slice(&new);
            std::fs::write(&path, &bytes).unwrap();
            fix_vmdk(&path, "seed").unwrap();
            output(Command::new("qemu-img").args(["check", "-f", "vmdk"]).arg(&path));
            made.push(std::fs::read(&path).unwrap());
        }
        assert!(made.windows(2).all(|w| w[0] == w[1]), "the same bytes from any CID");
    }

    #[test]
    fn uefi_boot() {
        let tmp = TempDir::new("qemu-test").unwrap();
        let mut opts = split_opts("raw", "disk.raw");
        opts["partitions"].as_array_mut().unwrap().remove(0);
        let raw = assemble(tmp.path(), "uefi", 1_800_000_000, &opts);
        // No BIOS boot partition: no boot.img in the protective MBR.
        assert!(read_at(&raw, 0, 440).iter().all(|b| *b == 0));
        assert!(boots(&raw, true), "GRUB (UEFI) did not print the marker");
    }

    /// An ESP of any size on a big disk (mkfs.fat judged by the disk, not
    /// the partition, and failed at 200 MiB on 4 GiB): a FAT whose type is
    /// the one its count of clusters says, and that fsck.fat finds clean.
    #[test]
    fn esp_of_any_size_on_a_big_disk() {
        let tmp = TempDir::new("qemu-test").unwrap();
        let image = tmp.path().join("disk.raw");
        File::create(&image).unwrap().set_len(8 << 30).unwrap();
        let source = tmp.path().join("esp");
        std::fs::create_dir_all(source.join("EFI/debian")).unwrap();
        std::fs::write(source.join("EFI/debian/grub.cfg"), "configfile /boot/grub/grub.cfg\n").unwrap();
        let fs: Filesystem = serde_json::from_value(json!({
            "type": "vfat", "uuid": "7B77-95E7", "label": "ESP", "mountpoint": "/boot/efi"
        }))
        .unwrap();
        for (mib, bits) in [(1, 12), (20, 16), (200, 32), (512, 32), (2048, 32)] {
            let p = Placed {
                index: 0,
                start: 2048,
                size: mib << 11,
                ptype: ESP_GPT.into(),
                fs: Some(fs.clone()),
            };
            make_vfat(&image, &p, &fs, &source, None, 1_700_000_000).unwrap();
            let bpb = read_at(&image, 2048 * 512, 512);
            let word = |at: usize| u16::from_le_bytes([bpb[at], bpb[at + 1]]) as u64;
            let long = |at: usize| u32::from_le_bytes(bpb[at..at + 4].try_into().unwrap()) as u64;
            let total = if word(0x13) != 0 { word(0x13) } else { long(0x20) };
            let fat = if word(0x16) != 0 { word(0x16) } else { long(0x24) };
            let root_dir = (word(0x11) * 32).div_ceil(512);
            let clusters = (total - word(0x0e) - bpb[0x10] as u64 * fat - root_dir) / bpb[0x0d] as u64;
            let counted = match clusters {
                ..4085 => 12,
                4085..65525 => 16,
                _ => 32,
            };
            // mkfs.fat may round the file system down to whole tracks.
            assert!(
                total <= mib << 11 && total > (mib << 11) * 19 / 20,
                "{mib} MiB: {total} sectors"
            );
            assert_eq!(counted, bits, "{mib} MiB: {clusters} clusters");
            let label = if bits == 32 { &bpb[0x52..0x5a] } else { &bpb[0x36..0x3e] };
            assert_eq!(label, format!("FAT{bits:<5}").as_bytes(), "{mib} MiB");
            if mib <= 200 {
                let part = tmp.path().join("part.img");
                let all = read_at(&image, 2048 * 512, (mib << 20) as usize);
                std::fs::write(&part, all).unwrap();
                output(Command::new("fsck.fat").arg("-n").arg(&part));
            }
        }
    }

    #[test]
    fn disk_sizes_are_whole_sectors() {
        for ok in [0, 512, 4 << 30] {
            assert_eq!(DiskSize::parse(ok), Ok(DiskSize(ok)));
        }
        for bad in [1, 511, 1000, (4 << 30) + 1] {
            assert!(DiskSize::parse(bad).is_err(), "{bad}");
        }
        let schema = DiskSize::json_schema(&mut schemars::SchemaGenerator::default());
        assert_eq!(schema.as_value()["multipleOf"], json!(512));
    }

    #[test]
    fn bad_options() {
        let tmp = TempDir::new("qemu-test").unwrap();
        let ctx = Context {
            tree: tmp.path().to_path_buf(),
            output_dir: Some(tmp.path().to_path_buf()),
            cache: None,
            sources: None,
            assembly: Default::default(),
        };
        let run = |v: Value| ASSEMBLER.run(&ctx, &v).unwrap_err().0;
        let paths = |v: Value| -> Vec<String> {
            ASSEMBLER
                .check(&v)
                .iter()
                .map(|e| osbuild_stages::api::path_text(&e.path))
                .collect()
        };
        let uuid = "6e4ff95f-f662-45ee-a82a-bdf44a2d0b75";
        let base = json!({"format": "raw", "filename": "x", "size": 1 << 26, "ptuuid": "0x1", "root_fs_uuid": uuid});
        assert!(paths(base.clone()).is_empty());
        let with = |key: &str, value: Value| {
            let mut o = base.clone();
            o[key] = value;
            o
        };
        assert_eq!(paths(with("size", json!(1000))), ["size"]);
        assert!(run(with("size", json!(1000))).contains("multiple"));
        assert_eq!(paths(with("filename", json!("../x.qcow2"))), ["filename"]);
        assert_eq!(paths(with("root_fs_uuid", json!("not-a-uuid"))), ["root_fs_uuid"]);
        assert_eq!(paths(with("root_fs_uuid", Value::Null)), ["root_fs_uuid"]);
        assert!(run(with("root_fs_uuid", Value::Null)).contains("root_fs_uuid"));
        assert_eq!(paths(with("root_fs_type", json!("xfs"))), ["root_fs_type"]);
        assert!(run(with("root_fs_type", json!("xfs"))).contains("without mounting"));
        let vfat_root = with("root_fs_type", json!("vfat"));
        assert!(
            paths(vfat_root.clone()).is_empty(),
            "a vfat volume id from the first 8 hex digits"
        );
        let mut o = vfat_root;
        o["root_fs_uuid"] = json!("7B77-95E");
        assert_eq!(paths(o), ["root_fs_uuid"]);
        let mut zstd = with("format", json!("qcow2"));
        zstd["qcow2_compression"] = json!("zstd");
        assert!(paths(zstd.clone()).is_empty());
        zstd["qcow2_compat"] = json!("0.10");
        assert_eq!(paths(zstd), ["qcow2_compression"]);
        assert!(!ASSEMBLER
            .check(&json!({"format": "vhdx", "filename": "x", "size": 512, "ptuuid": "0x1", "root_fs_uuid": "u"}))
            .is_empty());

        // Partitions: every mistake at once, each where it is.
        let esp = json!({"type": "vfat", "uuid": "7B77-95E7", "mountpoint": "/boot"});
        let mut o = split_opts("raw", "d.raw");
        o["root_fs_uuid"] = json!(uuid);
        assert_eq!(paths(o.clone()), ["root_fs_uuid"]);
        o.as_object_mut().unwrap().remove("root_fs_uuid");
        o.as_object_mut().unwrap().remove("pttype");
        o["partitions"][0]["filesystem"] = esp;
        o["partitions"][1]["filesystem"]["uuid"] = json!("nope");
        o["partitions"][2]["filesystem"]["type"] = json!("btrfs");
        o["partitions"][3]["filesystem"]["mountpoint"] = json!("/root");
        assert_eq!(
            paths(o.clone()),
            [
                "pttype",
                "partitions",
                "partitions[0].name",
                "partitions[1].name",
                "partitions[1].filesystem.uuid",
                "partitions[2].name",
                "partitions[2].filesystem.type",
                "partitions[3].uuid",
                "partitions[3].name",
                "partitions[0].filesystem.mountpoint"
            ]
        );
        let mut gpt = split_opts("raw", "d.raw");
        gpt["partitions"][3]["uuid"] = json!("not-a-uuid");
        assert_eq!(paths(gpt.clone()), ["partitions[3].uuid"]);
        gpt["partitions"][3]["uuid"] = json!(uuid);
        gpt["partitions"][3]["name"] = json!("a\"b");
        gpt["partitions"][3]["filesystem"]["mountpoint"] = json!("root");
        assert_eq!(paths(gpt.clone()), ["partitions[3].filesystem.mountpoint"]);
        gpt["partitions"][3]["filesystem"]["mountpoint"] = json!("/");
        assert_eq!(paths(gpt), ["partitions[3].name"]);
        assert!(ASSEMBLER.answers_to("io.weldr.qcow2"));
    }
}
