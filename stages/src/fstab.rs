//! `org.osbuild.fstab`: writes `/etc/fstab` (osbuild's schema).

use std::fmt::Write as _;

use crate::api::{Builtin, Context, Kind, Options, StageResult};

/// Writes `/etc/fstab` with one line per file system, replacing any existing
/// file. Each entry names its file system by exactly one of `uuid`, `label`,
/// `partlabel` or `device`.
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Fstab {
    /// The file systems, in mount order (`/` first).
    filesystems: Vec<Filesystem>,
}

/// One `/etc/fstab` line.
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(try_from = "RawFilesystem")]
struct Filesystem {
    /// `UUID=...`, `LABEL=...`, `PARTLABEL=...` or the device, escaped.
    spec: String,
    raw: RawFilesystem,
}

/// One `/etc/fstab` line.
#[derive(Clone, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawFilesystem {
    /// File system UUID: `UUID=...` (as `blkid` shows it).
    uuid: Option<String>,
    /// File system label: `LABEL=...`.
    label: Option<String>,
    /// GPT partition label: `PARTLABEL=...`.
    partlabel: Option<String>,
    /// A device node, such as `/dev/vda1` or `/dev/mapper/root`.
    device: Option<String>,
    /// The mount point, such as `/`, `/boot/efi` or `none` for swap.
    path: String,
    /// File system type, such as `ext4`, `vfat`, `xfs` or `swap`.
    #[serde(default = "default_vfs_type")]
    #[schemars(default = "default_vfs_type")]
    vfs_type: String,
    /// Mount options, comma-separated.
    #[serde(default = "default_options")]
    #[schemars(default = "default_options")]
    options: String,
    /// dump(8) period in days (usually 0).
    #[serde(default)]
    freq: u32,
    /// fsck(8) pass: 1 for the root file system, 2 for others to check, 0 for none.
    #[serde(default)]
    passno: u32,
}

fn default_vfs_type() -> String {
    "none".into()
}

fn default_options() -> String {
    "defaults".into()
}

/// Escapes what would split an fstab field, as fstab(5) asks (`\040` for a space).
fn escape(field: &str) -> String {
    let mut out = String::new();
    for c in field.chars() {
        match c {
            ' ' | '\t' | '\n' | '\\' | '#' => {
                let _ = write!(out, "\\{:03o}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

impl TryFrom<RawFilesystem> for Filesystem {
    type Error = String;

    fn try_from(raw: RawFilesystem) -> Result<Self, String> {
        if raw.path.is_empty() || raw.vfs_type.is_empty() || raw.options.is_empty() {
            return Err("path, vfs_type and options must not be empty".into());
        }
        Ok(Filesystem { spec: raw.spec()?, raw })
    }
}

impl RawFilesystem {
    fn spec(&self) -> Result<String, String> {
        let given: Vec<String> = [
            ("UUID=", &self.uuid),
            ("LABEL=", &self.label),
            ("PARTLABEL=", &self.partlabel),
            ("", &self.device),
        ]
        .iter()
        .filter_map(|(prefix, v)| v.as_ref().map(|v| format!("{prefix}{v}")))
        .collect();
        match given.as_slice() {
            [one] if one.ends_with('=') || one.is_empty() => {
                Err(format!("{}: empty uuid, label, partlabel or device", self.path))
            }
            [one] => Ok(escape(one)),
            [] => Err(format!("{}: needs one of uuid, label, partlabel or device", self.path)),
            _ => Err(format!(
                "{}: give only one of uuid, label, partlabel or device",
                self.path
            )),
        }
    }
}

impl Options for Fstab {
    fn run(self, ctx: &Context) -> StageResult {
        let mut text = String::new();
        for Filesystem { spec, raw: fs } in &self.filesystems {
            let _ = writeln!(
                text,
                "{spec}\t{}\t{}\t{}\t{}\t{}",
                escape(&fs.path),
                escape(&fs.vfs_type),
                escape(&fs.options),
                fs.freq,
                fs.passno
            );
        }
        let tree = ctx.open_tree()?;
        tree.create_dir_all("etc")?;
        tree.write("etc/fstab", text)?;
        for Filesystem { spec, raw } in &self.filesystems {
            println!("fstab: {spec} on {} ({})", raw.path, raw.vfs_type);
        }
        Ok(())
    }
}

pub static STAGE: Builtin = Builtin::new::<Fstab>("org.osbuild.fstab", Kind::Stage, "Writes /etc/fstab");

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::STAGE;
    use crate::testutil::TempTree;
    use crate::PathSegment;

    #[test]
    fn writes_fstab() {
        let t = TempTree::new("fstab");
        t.write("etc/fstab", "# UNCONFIGURED FSTAB FOR BASE SYSTEM\n");
        // The options of an osbuild-composer qcow2 manifest, plus a swap partition.
        let options = json!({"filesystems": [
            {"uuid": "6e4ff95f-f662-45ee-a82a-bdf44a2d0b75", "vfs_type": "ext4", "path": "/", "options": "defaults", "freq": 1, "passno": 1},
            {"uuid": "7B77-95E7", "vfs_type": "vfat", "path": "/boot/efi", "options": "defaults,uid=0,gid=0,umask=077,shortname=winnt", "passno": 2},
            {"label": "data disk", "vfs_type": "xfs", "path": "/srv/my data"},
            {"partlabel": "swap", "path": "none", "vfs_type": "swap"},
            {"device": "/dev/mapper/vg-var", "path": "/var"}
        ]});
        STAGE.check(&options).unwrap();
        STAGE.run(&t.ctx(), &options).unwrap();
        assert_eq!(
            t.read("etc/fstab"),
            "UUID=6e4ff95f-f662-45ee-a82a-bdf44a2d0b75\t/\text4\tdefaults\t1\t1\n\
             UUID=7B77-95E7\t/boot/efi\tvfat\tdefaults,uid=0,gid=0,umask=077,shortname=winnt\t0\t2\n\
             LABEL=data\\040disk\t/srv/my\\040data\txfs\tdefaults\t0\t0\n\
             PARTLABEL=swap\tnone\tswap\tdefaults\t0\t0\n\
             /dev/mapper/vg-var\t/var\tnone\tdefaults\t0\t0\n"
        );
        assert_eq!(t.stat("etc/fstab").0, 0o644);
    }

    #[test]
    fn needs_exactly_one_source() {
        let t = TempTree::new("fstab-bad");
        assert!(STAGE.check(&json!({})).is_err());
        assert!(STAGE.check(&json!({"filesystems": [{"uuid": "x"}]})).is_err());
        assert!(STAGE
            .check(&json!({"filesystems": [{"uuid": "x", "path": "/", "ostree": {}}]}))
            .is_err());
        let two = json!({"filesystems": [{"uuid": "x", "path": "/"}, {"uuid": "x", "label": "y", "path": "/"}]});
        let e = STAGE.check(&two).unwrap_err();
        assert_eq!(e.message, "/: give only one of uuid, label, partlabel or device");
        assert_eq!(
            e.path,
            vec![PathSegment::Key("filesystems".into()), PathSegment::Index(1)]
        );
        let none = json!({"filesystems": [{"path": "/"}]});
        let e = STAGE.run(&t.ctx(), &none).unwrap_err();
        assert_eq!(e.0, "invalid options: /: needs one of uuid, label, partlabel or device");
        assert!(!t.exists("etc/fstab"));
    }
}
