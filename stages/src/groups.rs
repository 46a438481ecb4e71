//! `org.osbuild.groups`: creates groups (osbuild's schema), editing the tree's
//! `/etc/group` and `/etc/gshadow` directly (see [`crate::accounts`] for why not
//! `groupadd --root`).

use std::collections::BTreeMap;

use crate::accounts::{self, AccountName, DbFile, LoginDefs};
use crate::api::{Builtin, Context, Kind, Options, StageResult};

/// Creates groups in the tree's `/etc/group` (and `/etc/gshadow` when present),
/// optionally with fixed gids.
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Groups {
    /// The groups to create, keyed by name, handled in name order. A group that
    /// already exists, or a gid already in use, is an error unless `force` is set.
    /// Each group is an object with an optional `gid`: without one, the next id
    /// after the highest in use between `GID_MIN` and `GID_MAX` of the tree's
    /// `/etc/login.defs` (1000 and 60000 by default).
    #[serde(default)]
    groups: BTreeMap<AccountName, Group>,
    /// Succeed when a group already exists (leaving it as it is), and pick a free
    /// gid instead when the given one is taken, like `groupadd --force`.
    #[serde(default)]
    force: bool,
}

/// One group.
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Group {
    /// The numeric group id. When absent, the next id after the highest one in use
    /// between `GID_MIN` and `GID_MAX` of the tree's `/etc/login.defs` (1000 and
    /// 60000 by default).
    #[serde(default, deserialize_with = "crate::api::whole::opt_u32")]
    gid: Option<u32>,
}

impl Options for Groups {
    fn run(self, ctx: &Context) -> StageResult {
        let tree = ctx.open_tree()?;
        let defs = LoginDefs::load(&tree);
        let mut group = DbFile::load_required(&tree, "etc/group", 4)?;
        let mut gshadow = DbFile::load(&tree, "etc/gshadow", 4)?;
        let (min, max) = (defs.num("GID_MIN", 1000), defs.num("GID_MAX", 60000));
        for (name, options) in &self.groups {
            let name = &name.0;
            if let Some(existing) = group.get(name) {
                if self.force {
                    println!("group {name} exists (gid {}); left as it is", existing[2]);
                    continue;
                }
                return Err(format!("group {name} already exists in /etc/group (gid {})", existing[2]).into());
            }
            let used = group.ids(2);
            let gid = match options.gid {
                Some(gid) if !used.contains(&gid) => gid,
                Some(gid) if !self.force => {
                    let owner = group.entries().find(|f| f[2] == gid.to_string()).map(|f| f[0].clone());
                    return Err(format!(
                        "group {name}: gid {gid} is already used by group {}",
                        owner.unwrap_or_default()
                    )
                    .into());
                }
                _ => accounts::next_id(&used, min, max)
                    .ok_or_else(|| format!("group {name}: no free gid between {min} and {max}"))?,
            };
            accounts::add_group(&mut group, &mut gshadow, name, gid, "");
            match options.gid {
                Some(wanted) if wanted != gid => println!("added group {name} (gid {gid}; {wanted} is taken)"),
                _ => println!("added group {name} (gid {gid})"),
            }
        }
        group.save(&tree)?;
        gshadow.save(&tree)
    }
}

pub static STAGE: Builtin =
    Builtin::new::<Groups>("org.osbuild.groups", Kind::Stage, "Creates groups with optional gids");

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::STAGE;
    use crate::users::tests::{debian_tree, GROUP, GSHADOW};

    #[test]
    fn osbuild_options_check() {
        // As osbuild's test/data/stages/groups manifests and osbuild-composer write them.
        assert!(STAGE
            .check(&json!({"groups": {"testgroup": {"gid": 1001}, "other": {}}}))
            .is_empty());
        assert!(STAGE
            .check(&json!({"groups": {"g": {"gid": 5}}, "force": true}))
            .is_empty());
        assert!(!STAGE.check(&json!({"groups": {"g:x": {}}})).is_empty());
    }

    #[test]
    fn adds_groups() {
        let t = debian_tree("groups-add");
        let options = json!({"groups": {"web": {}, "dev": {"gid": 1500}, "ops": {}}});
        STAGE.run(&t.ctx(), &options).unwrap();
        // Name order: dev takes 1500, then ops and web follow the highest gid in use.
        assert_eq!(
            t.read("etc/group"),
            format!("{GROUP}dev:x:1500:\nops:x:1501:\nweb:x:1502:\n")
        );
        assert_eq!(t.read("etc/gshadow"), format!("{GSHADOW}dev:!::\nops:!::\nweb:!::\n"));
        assert_eq!(t.stat("etc/gshadow"), (0o640, 0, 42));
    }

    #[test]
    fn conflicts_and_force() {
        let t = debian_tree("groups-force");
        let exists = json!({"groups": {"sudo": {}}});
        let e = STAGE.run(&t.ctx(), &exists).unwrap_err();
        assert_eq!(e.0, "group sudo already exists in /etc/group (gid 27)");
        let taken = json!({"groups": {"web": {"gid": 27}}});
        let e = STAGE.run(&t.ctx(), &taken).unwrap_err();
        assert_eq!(e.0, "group web: gid 27 is already used by group sudo");
        assert_eq!(t.read("etc/group"), GROUP);

        let forced = json!({"groups": {"sudo": {"gid": 5000}, "web": {"gid": 27}}, "force": true});
        STAGE.run(&t.ctx(), &forced).unwrap();
        assert_eq!(t.read("etc/group"), format!("{GROUP}web:x:1000:\n"));
    }
}
