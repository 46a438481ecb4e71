//! The qemu assembler's work on a prefix tree (see `osbuild_stages::assembly`),
//! and how an image reads it back.
//!
//! The prefix options are the image's with every identifier that differs
//! between images left out (file name, partition table id, partition and file
//! system UUIDs, partition names, boot loader), so every image of a fleet
//! that shares the stages shares one prefix output:
//!
//! ```text
//! prefix.json            the partitions (start, size), to check the layout
//! disk.raw               the disk with its ext4 file systems (no vfat, no GRUB)
//! fs-<N>.json            what partition N's ext4 holds (a layered::Listing)
//! qcow2-<C>.index/.data  every cluster of disk.raw compressed with C
//! ```

use std::path::{Path, PathBuf};

use osbuild_stages::api::StageError;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::layered::{Change, Listing};
use crate::qcow2::{Compression, Reuse};
use crate::util::derive_uuid;

pub const DISK: &str = "disk.raw";
const META: &str = "prefix.json";

/// The options of the prefix work `options` can build on: `None` without an
/// explicit disk size (the automatic one follows the final tree).
pub fn options(options: &Value) -> Option<Value> {
    let mut o = options.as_object()?.clone();
    if o.get("size").and_then(Value::as_u64).unwrap_or(0) == 0 {
        return None;
    }
    let gpt = o.get("pttype").and_then(Value::as_str) == Some("gpt");
    o.insert("filename".into(), DISK.into());
    o.insert(
        "ptuuid".into(),
        if gpt {
            derive_uuid("osbuild prefix/partition-table").into()
        } else {
            "0x00000000".into()
        },
    );
    let placeholder = derive_uuid("osbuild prefix/file-system");
    if o.contains_key("root_fs_uuid") {
        o.insert("root_fs_uuid".into(), placeholder.clone().into());
    }
    if let Some(Value::Array(parts)) = o.get_mut("partitions") {
        for p in parts.iter_mut().filter_map(Value::as_object_mut) {
            p.remove("uuid");
            p.remove("name");
            p.remove("bootable");
            if let Some(fs) = p.get_mut("filesystem").and_then(Value::as_object_mut) {
                let vfat = fs.get("type").and_then(Value::as_str) == Some("vfat");
                let id = if vfat { "0000-0000".into() } else { placeholder.clone() };
                fs.insert("uuid".into(), id.into());
            }
        }
    }
    for key in ["bootloader", "vmdk_subformat", "qcow2_compat"] {
        o.remove(key);
    }
    // Only a qcow2 image reuses compressed clusters.
    let qcow2 = o.get("format").and_then(Value::as_str).unwrap_or("qcow2") == "qcow2";
    if !qcow2 {
        o.insert("format".into(), "raw".into());
        o.remove("qcow2_compression");
    }
    Some(Value::Object(o))
}

/// `prefix.json`.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Meta {
    /// (start, size) of every partition, in 512-byte sectors.
    pub partitions: Vec<(u64, u64)>,
}

pub fn write_meta(dir: &Path, meta: &Meta) -> Result<(), StageError> {
    write_json(&dir.join(META), meta)
}

pub fn write_listing(dir: &Path, partition: usize, listing: &Listing) -> Result<(), StageError> {
    write_json(&dir.join(format!("fs-{partition}.json")), listing)
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), StageError> {
    let text = serde_json::to_vec(value).expect("JSON serializes");
    std::fs::write(path, text).map_err(|e| StageError(format!("{}: {e}", path.display())))
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, StageError> {
    let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_slice(&text).map_err(|e| StageError(format!("{}: {e}", path.display())))
}

pub fn reuse_files(dir: &Path, compression: Compression) -> (PathBuf, PathBuf) {
    let name = format!("qcow2-{compression:?}").to_lowercase();
    (dir.join(format!("{name}.index")), dir.join(format!("{name}.data")))
}

/// A prefix output, opened for an image.
pub struct Prefix {
    pub dir: PathBuf,
    pub meta: Meta,
    /// Every path the later layers hold (absolute in the tree), sorted.
    changes: Vec<Change>,
}

impl Prefix {
    pub fn open(on: &osbuild_stages::assembly::OnPrefix) -> Result<Prefix, StageError> {
        let delta: osbuild_stages::assembly::Delta = read_json(&on.delta)?;
        Ok(Prefix {
            meta: read_json(&on.prefix.join(META))?,
            dir: on.prefix.clone(),
            changes: delta.changes,
        })
    }

    pub fn disk(&self) -> PathBuf {
        self.dir.join(DISK)
    }

    /// What partition `index`'s ext4 holds; `None` when the prefix could not list it.
    pub fn listing(&self, index: usize) -> Result<Option<Listing>, StageError> {
        let path = self.dir.join(format!("fs-{index}.json"));
        if !path.exists() {
            return Ok(None);
        }
        read_json(&path).map(Some)
    }

    /// The changes in the file system mounted at `mountpoint`, relative to
    /// it, leaving out what the `exclude`d mount points below it hold.
    pub fn changes_in(&self, mountpoint: &str, exclude: &[String]) -> Vec<Change> {
        self.changes
            .iter()
            .filter_map(|c| {
                let rel = if mountpoint == "/" {
                    c.path.clone()
                } else {
                    c.path
                        .strip_prefix(mountpoint)
                        .filter(|r| r.starts_with('/'))?
                        .to_string()
                };
                let hidden = exclude
                    .iter()
                    .any(|ex| rel.strip_prefix(ex.as_str()).is_some_and(|r| r.starts_with('/')));
                (!hidden).then_some(Change {
                    path: rel,
                    replaced: c.replaced,
                })
            })
            .collect()
    }

    /// The compressed clusters of the prefix disk, when it has them for `compression`.
    pub fn reuse(&self, compression: Compression) -> Result<Option<Reuse>, StageError> {
        let (index, data) = reuse_files(&self.dir, compression);
        if !index.exists() {
            return Ok(None);
        }
        Ok(Some(Reuse::open(&self.disk(), &index, &data)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn images_that_differ_in_identifiers_share_prefix_options() {
        let image = |name: &str, uuid: &str| {
            json!({
                "filename": format!("{name}.qcow2"), "size": 4294967296u64, "pttype": "gpt",
                "ptuuid": derive_uuid(name),
                "partitions": [
                    {"size": 2048, "type": "21686148-6449-6E6F-744E-656564454649", "name": "bios", "uuid": derive_uuid("x")},
                    {"type": "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
                     "filesystem": {"type": "ext4", "uuid": uuid, "mountpoint": "/"}}
                ]
            })
        };
        let a = options(&image("a", &derive_uuid("a/root"))).unwrap();
        let b = options(&image("b", &derive_uuid("b/root"))).unwrap();
        assert_eq!(a, b);
        assert_eq!(a["filename"], DISK);
        assert!(a["partitions"][0].get("uuid").is_none());
        let mut auto = image("c", &derive_uuid("c"));
        auto.as_object_mut().unwrap().remove("size");
        assert_eq!(options(&auto), None, "an automatic size follows the final tree");
    }

    #[test]
    fn changes_are_taken_relative_to_their_file_system() {
        let p = Prefix {
            dir: PathBuf::new(),
            meta: Meta { partitions: vec![] },
            changes: ["/boot/efi/EFI/x", "/boot/grub/grub.cfg", "/etc/hostname"]
                .iter()
                .map(|p| Change {
                    path: p.to_string(),
                    replaced: false,
                })
                .collect(),
        };
        let paths = |cs: Vec<Change>| cs.into_iter().map(|c| c.path).collect::<Vec<_>>();
        assert_eq!(
            paths(p.changes_in("/", &["/boot".into()])),
            ["/etc/hostname"],
            "what /boot holds is another file system's"
        );
        assert_eq!(paths(p.changes_in("/boot", &["/efi".into()])), ["/grub/grub.cfg"]);
    }
}
