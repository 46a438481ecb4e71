//! `org.osbuild.machine-id`: decides what `/etc/machine-id` holds (osbuild's schema).

use crate::api::{Builtin, Context, Kind, Options, StageResult};

/// Sets the state of `/etc/machine-id`, which must not be shared by the machines
/// made from one image. With `yes` or `no`, a `/var/lib/dbus/machine-id` that is
/// a regular file (an old D-Bus copy of the id) is removed too; D-Bus then reads
/// `/etc/machine-id`.
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MachineId {
    /// What the machine id is at first boot:
    /// - `yes`: `/etc/machine-id` holds `uninitialized`; systemd makes a new id at
    ///   boot and runs first-boot units (`ConditionFirstBoot=yes`, presets).
    /// - `no`: `/etc/machine-id` is empty; systemd makes a new id at boot, but it is
    ///   not a first boot.
    /// - `preserve`: keep the tree's `/etc/machine-id` as it is (it must exist);
    ///   every machine made from the image then shares it.
    #[serde(rename = "first-boot", default = "default_first_boot")]
    #[schemars(default = "default_first_boot")]
    first_boot: FirstBoot,
}

/// The values of `first-boot`.
#[derive(Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
enum FirstBoot {
    Yes,
    No,
    Preserve,
}

fn default_first_boot() -> FirstBoot {
    FirstBoot::No
}

impl Options for MachineId {
    fn run(self, ctx: &Context) -> StageResult {
        let tree = ctx.open_tree()?;
        let path = "etc/machine-id";
        let content = match self.first_boot {
            FirstBoot::Preserve => {
                if !tree.is_file(path) {
                    return Err("/etc/machine-id cannot be preserved: it is not in the tree".into());
                }
                println!("/etc/machine-id preserved");
                return Ok(());
            }
            FirstBoot::Yes => "uninitialized\n",
            FirstBoot::No => "",
        };
        tree.create_dir_all("etc")?;
        // As osbuild leaves it: the mode of the file it replaces (systemd's
        // packages make it 0444), 0644 for a new one.
        tree.rewrite(path, content)?;
        println!(
            "/etc/machine-id {}",
            if content.is_empty() {
                "emptied"
            } else {
                "set to uninitialized (first boot)"
            }
        );
        let dbus = "var/lib/dbus/machine-id";
        if tree.symlink_metadata(dbus).is_ok_and(|m| m.is_file()) {
            tree.remove_file(dbus)?;
            println!("removed /var/lib/dbus/machine-id");
        }
        Ok(())
    }
}

pub static STAGE: Builtin = Builtin::new::<MachineId>(
    "org.osbuild.machine-id",
    Kind::Stage,
    "Empties /etc/machine-id (or marks it for first boot) so each machine gets its own",
);

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::STAGE;
    use crate::testutil::TempTree;

    const ID: &str = "4c4c4544004d3910804bc4c04f443232\n";

    #[test]
    fn modes() {
        let t = TempTree::new("machine-id");
        t.write("etc/machine-id", ID);
        std::fs::set_permissions(
            t.join("etc/machine-id"),
            std::os::unix::fs::PermissionsExt::from_mode(0o444),
        )
        .unwrap();
        t.write("var/lib/dbus/machine-id", ID);
        assert!(STAGE.check(&json!({})).is_empty());
        assert!(!STAGE.check(&json!({"first-boot": "maybe"})).is_empty());

        STAGE.run(&t.ctx(), &json!({"first-boot": "preserve"})).unwrap();
        assert_eq!(t.read("etc/machine-id"), ID);
        assert!(t.exists("var/lib/dbus/machine-id"));

        STAGE.run(&t.ctx(), &json!({})).unwrap();
        assert_eq!(t.read("etc/machine-id"), "");
        assert_eq!(t.stat("etc/machine-id"), (0o444, 0, 0));
        assert!(!t.exists("var/lib/dbus/machine-id"));

        std::os::unix::fs::symlink("/etc/machine-id", t.join("var/lib/dbus/machine-id")).unwrap();
        STAGE.run(&t.ctx(), &json!({"first-boot": "yes"})).unwrap();
        assert_eq!(t.read("etc/machine-id"), "uninitialized\n");
        assert_eq!(t.stat("etc/machine-id"), (0o444, 0, 0));
        // A symlink to /etc/machine-id is what D-Bus should have; it stays.
        assert!(t.exists("var/lib/dbus/machine-id"));

        STAGE.run(&t.ctx(), &json!({"first-boot": "no"})).unwrap();
        assert_eq!(t.read("etc/machine-id"), "");

        let new = TempTree::new("machine-id-new");
        STAGE.run(&new.ctx(), &json!({"first-boot": "yes"})).unwrap();
        assert_eq!(new.stat("etc/machine-id"), (0o644, 0, 0));

        let empty = TempTree::new("machine-id-none");
        let e = STAGE.run(&empty.ctx(), &json!({"first-boot": "preserve"})).unwrap_err();
        assert_eq!(e.0, "/etc/machine-id cannot be preserved: it is not in the tree");
    }
}
