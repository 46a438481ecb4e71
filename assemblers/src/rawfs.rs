//! `org.osbuild.rawfs`: the tree as a bare ext4 file system image, made
//! without mounting (`mkfs.ext4 -d`), byte for byte the same for the same
//! tree and options.

use osbuild_stages::api::{Builtin, Context, FileName, Kind, Options, OptionsError, StageResult};

use crate::ext4::Ext4;
use crate::util::{TempFile, Uuid};

/// Assembles the tree into a raw file system image: a sparse file of `size`
/// bytes holding one file system with the UUID `root_fs_uuid`. The tree must
/// fit; unused space costs no disk space.
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawFs {
    /// Name of the image in the output directory.
    filename: FileName,
    /// UUID of the file system (8-4-4-4-12 hex digits). It also seeds the
    /// directory hash, so the image is reproducible.
    root_fs_uuid: Uuid,
    /// Size of the file system in bytes (rounded down to a whole KiB), at least 1 MiB.
    #[schemars(range(min = MIN_SIZE))]
    size: u64,
    /// File system type. Only ext4 can be made without mounting; xfs and
    /// btrfs are osbuild's, and refused before anything is built.
    #[serde(default)]
    fs_type: FsType,
    /// Label of the file system.
    #[serde(default)]
    label: Option<String>,
    /// Modification times later than this (seconds since the epoch) are
    /// clamped to it; access, change and creation times are set to the
    /// modification time, and the file system's own times to this.
    /// Default: the pipeline's `source_epoch`, else 0.
    #[serde(default)]
    #[schemars(with = "u64")]
    source_epoch: Option<u64>,
}

#[derive(Default, serde::Deserialize, schemars::JsonSchema, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
pub enum FsType {
    #[default]
    Ext4,
    Xfs,
    Btrfs,
}

/// The smallest ext4 file system `mkfs.ext4` makes here.
const MIN_SIZE: u64 = 1 << 20;

impl Options for RawFs {
    fn validate(&self) -> Vec<OptionsError> {
        let mut problems = Vec::new();
        if self.fs_type != FsType::Ext4 {
            problems.push(OptionsError::invalid(
                osbuild_stages::at!["fs_type"],
                format!(
                    "{} is not supported: only ext4 can be built without mounting",
                    format!("{:?}", self.fs_type).to_lowercase()
                ),
            ));
        }
        if self.size / 1024 * 1024 < MIN_SIZE {
            problems.push(OptionsError::invalid(
                osbuild_stages::at!["size"],
                format!("an ext4 file system needs at least 1 MiB, not {} bytes", self.size),
            ));
        }
        problems
    }

    fn run(self, ctx: &Context) -> StageResult {
        let uuid = self.root_fs_uuid.as_str();
        let output = ctx
            .output_dir
            .as_ref()
            .ok_or("the rawfs assembler needs an output directory")?;
        let size = self.size / 1024 * 1024;
        let tmp = TempFile::new(output.join(format!(".{}.tmp", self.filename)));
        let f = std::fs::File::create(tmp.path()).map_err(|e| format!("{}: {e}", tmp.path().display()))?;
        f.set_len(size).map_err(|e| format!("{}: {e}", tmp.path().display()))?;
        drop(f);
        let alive = osbuild_stages::progress::Heartbeat::start("ext4", String::new);
        Ext4 {
            image: tmp.path(),
            offset: 0,
            size,
            uuid,
            label: self.label.as_deref(),
            source: &ctx.tree,
            exclude: &[],
            epoch: crate::util::source_epoch(self.source_epoch),
            csum_seed: false,
        }
        .create()?;
        drop(alive);
        let dest = output.join(self.filename.as_str());
        std::fs::rename(tmp.keep(), &dest).map_err(|e| format!("{}: {e}", dest.display()))?;
        println!("wrote {} (ext4, {} bytes, UUID {uuid})", self.filename, size);
        Ok(())
    }
}

pub static ASSEMBLER: Builtin = Builtin::new::<RawFs>(
    "org.osbuild.rawfs",
    Kind::Assembler,
    "Makes a reproducible ext4 file system image of the tree, without mounting",
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::testing::{debugfs, fsck, make_tree};
    use crate::util::TempDir;
    use serde_json::json;

    #[test]
    fn ext4_image_is_complete_and_reproducible() {
        let tmp = TempDir::new("rawfs-test").unwrap();
        let out = tmp.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let uuid = "6e4ff95f-f662-45ee-a82a-bdf44a2d0b75";
        let opts =
            json!({"filename": "root.img", "root_fs_uuid": uuid, "size": 64 << 20, "source_epoch": 1_700_000_000});
        let mut digests = Vec::new();
        for (i, mtime) in [1_800_000_000u64, 1_750_000_000].into_iter().enumerate() {
            let tree = tmp.path().join(format!("tree{i}"));
            make_tree(&tree, mtime, "echo hi\n");
            let ctx = Context {
                tree,
                output_dir: Some(out.clone()),
                cache: None,
                sources: None,
                assembly: Default::default(),
            };
            ASSEMBLER.run(&ctx, &opts).unwrap();
            digests.push(std::fs::read(out.join("root.img")).unwrap());
        }
        assert!(digests[0] == digests[1], "two assemblies differ");
        let img = out.join("root.img");
        assert_eq!(std::fs::metadata(&img).unwrap().len(), 64 << 20);
        fsck(&img, 0);
        let sb = crate::util::testing::output(std::process::Command::new("dumpe2fs").arg("-h").arg(&img));
        assert!(sb.contains(uuid), "{sb}");
        let stat = debugfs(&img, 0, "stat /usr/bin/hello");
        assert!(stat.contains("Mode:  0755"), "{stat}");
        assert!(stat.contains("Links: 2"), "{stat}");
        assert!(stat.contains("0x6553f100"), "mtime clamped to the epoch: {stat}");
        assert!(!stat.contains("2027") && !stat.contains("2026"), "{stat}");
        let home = debugfs(&img, 0, "stat /home/user");
        assert!(home.contains("User:  1000") && home.contains("Mode:  0700"), "{home}");
        let link = debugfs(&img, 0, "stat /etc/os-release");
        assert!(link.contains("Fast link dest: \"../usr/lib/os-release\""), "{link}");
    }

    #[test]
    fn refuses_what_needs_mounts() {
        let tmp = TempDir::new("rawfs-test").unwrap();
        let ctx = Context {
            tree: tmp.path().to_path_buf(),
            output_dir: Some(tmp.path().to_path_buf()),
            cache: None,
            sources: None,
            assembly: Default::default(),
        };
        let opts = json!({"filename": "x.img", "root_fs_uuid": "6e4ff95f-f662-45ee-a82a-bdf44a2d0b75", "size": 1 << 26, "fs_type": "xfs"});
        assert!(ASSEMBLER.run(&ctx, &opts).unwrap_err().0.contains("only ext4"));
        assert!(!ASSEMBLER
            .check(&json!({"filename": "x", "root_fs_uuid": "u", "size": 1, "bogus": 1}))
            .is_empty());
        let paths = |v| -> Vec<String> {
            ASSEMBLER
                .check(&v)
                .iter()
                .map(|e| osbuild_stages::api::path_text(&e.path))
                .collect()
        };
        assert_eq!(
            paths(json!({"filename": "a/x", "root_fs_uuid": "u", "size": 1})),
            ["filename"]
        );
        assert_eq!(
            paths(json!({"filename": "x", "root_fs_uuid": "u", "size": 1})),
            ["root_fs_uuid"]
        );
        let uuid = "6e4ff95f-f662-45ee-a82a-bdf44a2d0b75";
        assert_eq!(
            paths(json!({"filename": "x", "root_fs_uuid": uuid, "size": (1 << 20) - 1, "fs_type": "btrfs"})),
            ["fs_type", "size"]
        );
        assert!(paths(json!({"filename": "x", "root_fs_uuid": uuid, "size": 1 << 20})).is_empty());
    }
}
