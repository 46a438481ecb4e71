//! `org.osbuild.timezone`: sets the time zone (osbuild's schema).

use crate::api::{Builtin, Context, Kind, Options, StageResult};

/// Sets the system time zone: `/etc/localtime` becomes a symlink to
/// `../usr/share/zoneinfo/ZONE` (as `systemd-firstboot` and `timedatectl` make
/// it), and `/etc/timezone` names the zone (read by Debian's `tzdata`). The zone
/// file must exist in the tree (package `tzdata`).
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Timezone {
    /// A time zone from the tz database, such as `Europe/Berlin`, `America/New_York` or `UTC`.
    #[schemars(example = "Europe/Berlin")]
    zone: ZoneName,
}

/// `/`-separated parts of letters, digits, `_`, `-`, `+` and `.`, none of
/// them `.` or `..`: a file under `/usr/share/zoneinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ZoneName(String);

impl ZoneName {
    fn parse(zone: &str) -> Result<Self, String> {
        let ok = !zone.is_empty()
            && zone
                .split('/')
                .all(|part| !part.is_empty() && part != "." && part != "..")
            && zone
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '+' | '/' | '.'));
        if ok {
            Ok(ZoneName(zone.to_string()))
        } else {
            Err(format!("{zone:?} is not a time zone name (like Europe/Berlin)"))
        }
    }
}

crate::string_newtype!(
    ZoneName,
    {
        "type": "string",
        "pattern": "^(?!(.*/)?\\.\\.?(/.*)?$)[A-Za-z0-9_+.-]+(/[A-Za-z0-9_+.-]+)*$",
    }
);

impl Options for Timezone {
    fn run(self, ctx: &Context) -> StageResult {
        let zone = &self.zone;
        let tree = ctx.open_tree()?;
        if !tree.is_file(format!("usr/share/zoneinfo/{zone}")) {
            return Err(format!(
                "time zone {zone}: /usr/share/zoneinfo/{zone} is not in the tree (is tzdata installed?)"
            )
            .into());
        }
        tree.create_dir_all("etc")?;
        if tree.exists("etc/localtime") {
            tree.remove_file("etc/localtime")?;
        }
        tree.symlink(format!("../usr/share/zoneinfo/{zone}"), "etc/localtime")?;
        tree.write("etc/timezone", format!("{zone}\n"))?;
        println!("time zone set to {zone}");
        Ok(())
    }
}

pub static STAGE: Builtin = Builtin::new::<Timezone>(
    "org.osbuild.timezone",
    Kind::Stage,
    "Sets the time zone (/etc/localtime, /etc/timezone)",
);

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::STAGE;
    use crate::testutil::TempTree;

    /// The start of a real TZif file (the format's magic and version).
    const TZIF: &str = "TZif2\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0";

    #[test]
    fn sets_zone() {
        let t = TempTree::new("timezone");
        t.write("usr/share/zoneinfo/Europe/Berlin", TZIF);
        t.write("usr/share/zoneinfo/Etc/UTC", TZIF);
        std::os::unix::fs::symlink("Etc/UTC", t.join("usr/share/zoneinfo/UTC")).unwrap();
        // Debian's debootstrap leaves /etc/localtime pointing at UTC.
        std::fs::create_dir_all(t.join("etc")).unwrap();
        std::os::unix::fs::symlink("/usr/share/zoneinfo/Etc/UTC", t.join("etc/localtime")).unwrap();
        t.write("etc/timezone", "Etc/UTC\n");

        let options = json!({"zone": "Europe/Berlin"});
        assert!(STAGE.check(&options).is_empty());
        STAGE.run(&t.ctx(), &options).unwrap();
        assert_eq!(
            t.link("etc/localtime").to_str(),
            Some("../usr/share/zoneinfo/Europe/Berlin")
        );
        assert_eq!(t.read("etc/timezone"), "Europe/Berlin\n");
        assert_eq!(t.read("etc/localtime"), TZIF);

        // osbuild's manifests use "UTC", a symlink in tzdata.
        STAGE.run(&t.ctx(), &json!({"zone": "UTC"})).unwrap();
        assert_eq!(t.link("etc/localtime").to_str(), Some("../usr/share/zoneinfo/UTC"));
        assert_eq!(t.read("etc/timezone"), "UTC\n");
    }

    #[test]
    fn refuses_unknown_zones() {
        let t = TempTree::new("timezone-bad");
        let e = STAGE.run(&t.ctx(), &json!({"zone": "Mars/Olympus"})).unwrap_err();
        assert_eq!(
            e.0,
            "time zone Mars/Olympus: /usr/share/zoneinfo/Mars/Olympus is not in the tree (is tzdata installed?)"
        );
        assert!(!t.exists("etc/localtime"));
        for bad in [
            "../../etc/passwd",
            "/etc/passwd",
            "Europe//Berlin",
            "Europe/.",
            "",
            "Mars Olympus",
        ] {
            let e = STAGE.check(&json!({"zone": bad}));
            assert!(e[0].message.contains("is not a time zone name"), "{bad:?}: {e:?}");
        }
        for ok in ["UTC", "Etc/GMT+1", "America/Port-au-Prince", "right/UTC"] {
            assert!(STAGE.check(&json!({"zone": ok})).is_empty(), "{ok}");
        }
    }
}
