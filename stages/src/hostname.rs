//! `org.osbuild.hostname`: writes `/etc/hostname`.

use crate::api::{Builtin, Context, Kind, Options, StageResult};

/// Sets the static host name of the image.
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Hostname {
    /// The host name, written to `/etc/hostname` (replacing what is there)
    /// with mode 0644, as osbuild's `systemd-firstboot --hostname` leaves it.
    hostname: HostName,
}

/// A host name: dot-separated RFC 1123 labels (letters, digits and inner
/// hyphens), at most 64 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostName(String);

impl HostName {
    pub fn parse(name: &str) -> Result<Self, String> {
        let ok = !name.is_empty()
            && name.len() <= 64
            && name.split('.').all(|label| {
                !label.is_empty()
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        if ok {
            Ok(HostName(name.to_string()))
        } else {
            Err(format!(
                "{name:?} is not a valid host name (dot-separated letters, digits and inner '-', at most 64)"
            ))
        }
    }
}

crate::string_newtype!(
    HostName,
    {
        "type": "string",
        "minLength": 1,
        "maxLength": 64,
        "pattern": "^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$",
    }
);

impl Options for Hostname {
    fn run(self, ctx: &Context) -> StageResult {
        let tree = ctx.open_tree()?;
        tree.create_dir_all("etc")?;
        tree.write("etc/hostname", format!("{}\n", self.hostname))?;
        println!("hostname set to {}", self.hostname);
        Ok(())
    }
}

pub static STAGE: Builtin = Builtin::new::<Hostname>(
    "org.osbuild.hostname",
    Kind::Stage,
    "Sets the host name in /etc/hostname",
);

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{HostName, STAGE};
    use crate::api::ProblemKind;

    #[test]
    fn host_names() {
        for ok in ["web-1.example", "a", "x1", "A-b.c-D", &"a".repeat(64)] {
            assert!(HostName::parse(ok).is_ok(), "{ok:?}");
        }
        for bad in [
            "-bad",
            "-bad host",
            "bad-",
            "has space",
            "",
            "a..b",
            ".a",
            "a.",
            "é",
            &"a".repeat(65),
        ] {
            assert!(HostName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn writes_etc_hostname_as_osbuild_does() {
        let t = crate::testutil::TempTree::new("hostname");
        t.write("etc/hostname", "old\n");
        std::fs::set_permissions(
            t.join("etc/hostname"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        super::STAGE
            .run(&t.ctx(), &serde_json::json!({"hostname": "web"}))
            .unwrap();
        assert_eq!(t.read("etc/hostname"), "web\n");
        assert_eq!(t.stat("etc/hostname"), (0o644, 0, 0));
    }

    #[test]
    fn checked_before_running() {
        assert!(STAGE.check(&json!({"hostname": "web-1"})).is_empty());
        let e = STAGE.check(&json!({"hostname": "-bad host"}));
        assert_eq!(e.len(), 1);
        assert_eq!((e[0].kind, &e[0].path), (ProblemKind::Invalid, &crate::at!["hostname"]));
        assert!(e[0].message.contains("is not a valid host name"), "{}", e[0].message);
    }
}
