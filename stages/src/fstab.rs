//! `org.osbuild.fstab`: writes `/etc/fstab` (osbuild's schema).

use std::fmt::Write as _;

use crate::api::{Builtin, Context, Kind, Options, OptionsError, StageResult};

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
#[derive(Clone, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Filesystem {
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
    #[serde(default, deserialize_with = "crate::api::whole::u32")]
    freq: u32,
    /// fsck(8) pass: 1 for the root file system, 2 for others to check, 0 for none.
    #[serde(default, deserialize_with = "crate::api::whole::u32")]
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

impl Filesystem {
    /// Which of `uuid`, `label`, `partlabel` and `device` are given, with their values.
    fn sources(&self) -> Vec<(&'static str, &'static str, &str)> {
        [
            ("uuid", "UUID=", &self.uuid),
            ("label", "LABEL=", &self.label),
            ("partlabel", "PARTLABEL=", &self.partlabel),
            ("device", "", &self.device),
        ]
        .into_iter()
        .filter_map(|(key, prefix, v)| v.as_deref().map(|v| (key, prefix, v)))
        .collect()
    }

    /// `UUID=...`, `LABEL=...`, `PARTLABEL=...` or the device, escaped.
    fn spec(&self) -> String {
        let (_, prefix, value) = self.sources()[0];
        escape(&format!("{prefix}{value}"))
    }

    fn problems(&self, index: usize, problems: &mut Vec<OptionsError>) {
        for (key, value) in [
            ("path", &self.path),
            ("vfs_type", &self.vfs_type),
            ("options", &self.options),
        ] {
            if value.is_empty() {
                problems.push(OptionsError::invalid(
                    crate::at!["filesystems", index, key],
                    format!("{key} must not be empty"),
                ));
            }
        }
        match self.sources().as_slice() {
            [] => problems.push(OptionsError::invalid(
                crate::at!["filesystems", index],
                format!("{}: needs one of uuid, label, partlabel or device", self.path),
            )),
            [(key, _, "")] => problems.push(OptionsError::invalid(
                crate::at!["filesystems", index, *key],
                format!("{key} must not be empty"),
            )),
            [_] => {}
            [_, (second, _, _), ..] => problems.push(OptionsError::invalid(
                crate::at!["filesystems", index, *second],
                format!("{}: give only one of uuid, label, partlabel or device", self.path),
            )),
        }
    }
}

impl Options for Fstab {
    fn validate(&self) -> Vec<OptionsError> {
        let mut problems = Vec::new();
        for (i, fs) in self.filesystems.iter().enumerate() {
            fs.problems(i, &mut problems);
        }
        problems
    }

    fn run(self, ctx: &Context) -> StageResult {
        let mut text = String::new();
        for fs in &self.filesystems {
            let _ = writeln!(
                text,
                "{}\t{}\t{}\t{}\t{}\t{}",
                fs.spec(),
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
        for fs in &self.filesystems {
            println!("fstab: {} on {} ({})", fs.spec(), fs.path, fs.vfs_type);
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
    use crate::OptionsError;

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
        assert!(STAGE.check(&options).is_empty());
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
        assert!(!STAGE.check(&json!({})).is_empty());
        assert!(!STAGE.check(&json!({"filesystems": [{"uuid": "x"}]})).is_empty());
        assert!(!STAGE
            .check(&json!({"filesystems": [{"uuid": "x", "path": "/", "ostree": {}}]}))
            .is_empty());
        let two = json!({"filesystems": [
            {"uuid": "x", "path": "/"},
            {"uuid": "x", "label": "y", "path": "/"},
            {"label": "", "path": "/srv", "options": ""}
        ]});
        let e = STAGE.check(&two);
        assert_eq!(
            e,
            [
                OptionsError::invalid(
                    crate::at!["filesystems", 1, "label"],
                    "/: give only one of uuid, label, partlabel or device"
                ),
                OptionsError::invalid(crate::at!["filesystems", 2, "options"], "options must not be empty"),
                OptionsError::invalid(crate::at!["filesystems", 2, "label"], "label must not be empty"),
            ]
        );
        let none = json!({"filesystems": [{"path": "/"}]});
        let e = STAGE.run(&t.ctx(), &none).unwrap_err();
        assert_eq!(
            e.0,
            "invalid options: at `filesystems[0]`: /: needs one of uuid, label, partlabel or device"
        );
        assert!(!t.exists("etc/fstab"));
    }
}
