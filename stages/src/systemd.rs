//! `org.osbuild.systemd`: enables, disables and masks units (osbuild's schema).
//!
//! Enabling follows a unit's `[Install]` section (`WantedBy=`, `Alias=`, `Also=`,
//! `DefaultInstance=`), which `systemctl --root=TREE` implements offline; the
//! stage runs the build root's `systemctl`, as osbuild does, rather than
//! re-implementing those rules. The default target is a plain symlink.

use std::path::Path;
use std::process::Command;

use crate::api::{Builtin, Context, Kind, Options, OptionsError, StageError, StageResult};
use crate::tree::Tree;

/// Enables, disables and masks systemd units in the tree and sets the default
/// target, with the build root's `systemctl --root`. Units are first enabled, then
/// disabled, then masked, then the default target is set.
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Systemd {
    /// Units to enable (`systemctl enable`): the symlinks their `[Install]`
    /// section asks for are created under `/etc/systemd/system`. A name without a
    /// unit suffix means `.service`; `getty@tty2.service` enables an instance of
    /// a template. Each unit must exist in the tree.
    #[serde(default)]
    enabled_services: Vec<UnitName>,
    /// Units to disable (`systemctl disable`): every symlink to them under
    /// `/etc/systemd/system` is removed, including ones a package's preset made.
    /// Each unit must exist in the tree.
    #[serde(default)]
    disabled_services: Vec<UnitName>,
    /// Units to mask (`systemctl mask`): `/etc/systemd/system/UNIT` becomes a
    /// symlink to `/dev/null`, so nothing can start them. A unit that is not in
    /// the tree is masked anyway (it may be installed later), with a note in the log.
    #[serde(default)]
    masked_services: Vec<UnitName>,
    /// Generators to mask: `/etc/systemd/system-generators/NAME` becomes a
    /// symlink to `/dev/null` (e.g. `systemd-gpt-auto-generator`).
    #[serde(default)]
    masked_generators: Vec<UnitName>,
    /// The target to boot into, e.g. `multi-user.target` or `graphical.target`
    /// (`.target` is added when missing): `/etc/systemd/system/default.target`
    /// becomes a symlink to it. It must exist in the tree.
    default_target: Option<UnitName>,
}

/// A unit (or generator) name: no `/`, no blanks, not starting with `.` or
/// `--`. A leading `-` is systemd's escape of `/` (`-.mount` mounts the root).
#[derive(Debug, Clone, PartialEq, Eq)]
struct UnitName(String);

const UNIT_TYPES: &[&str] = &[
    "service",
    "socket",
    "device",
    "mount",
    "automount",
    "swap",
    "target",
    "path",
    "timer",
    "slice",
    "scope",
];

/// Where units are searched in the tree, most specific first.
const UNIT_DIRS: &[&str] = &[
    "etc/systemd/system",
    "run/systemd/system",
    "usr/local/lib/systemd/system",
    "usr/lib/systemd/system",
    "lib/systemd/system",
];

impl<'de> serde::Deserialize<'de> for UnitName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let ok = !s.is_empty()
            && s.len() <= 255
            && !s.starts_with('.')
            && !s.starts_with("--")
            && !s.chars().any(|c| c == '/' || c.is_whitespace() || c.is_control());
        if ok {
            Ok(UnitName(s))
        } else {
            Err(serde::de::Error::custom(format!("{s:?} is not a valid unit name")))
        }
    }
}

impl schemars::JsonSchema for UnitName {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "UnitName".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^([^-./\\s]|-[^-/\\s])[^/\\s]*$",
            "examples": ["sshd.service", "cron", "getty@tty1.service"],
        })
    }
}

impl UnitName {
    /// The full unit name, with `default_suffix` added when it has no unit type.
    fn full(&self, default_suffix: &str) -> String {
        match self.0.rsplit_once('.') {
            Some((_, ty)) if UNIT_TYPES.contains(&ty) => self.0.clone(),
            _ => format!("{}.{default_suffix}", self.0),
        }
    }
}

/// The unit's path inside the tree (`/usr/lib/systemd/system/x.service`), if any;
/// an instance (`a@b.service`) is found by its template (`a@.service`).
fn find_unit(tree: &Tree, unit: &str) -> Option<String> {
    let template = unit.split_once('@').and_then(|(prefix, rest)| {
        let (_, ty) = rest.rsplit_once('.')?;
        Some(format!("{prefix}@.{ty}"))
    });
    for name in std::iter::once(unit.to_string()).chain(template) {
        for dir in UNIT_DIRS {
            let rel = format!("{dir}/{name}");
            if tree.exists(&rel) {
                return Some(format!("/{rel}"));
            }
        }
    }
    None
}

/// Whether `systemctl` can act on the unit: a unit file, or (Debian) a SysV
/// init script that `systemctl` hands to `systemd-sysv-install`.
fn known(tree: &Tree, unit: &str) -> bool {
    find_unit(tree, unit).is_some()
        || unit
            .strip_suffix(".service")
            .is_some_and(|base| tree.is_file(format!("etc/init.d/{base}")))
}

fn systemctl() -> Result<&'static str, StageError> {
    ["/usr/bin/systemctl", "/bin/systemctl"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .ok_or_else(|| StageError("systemctl is not in the build root (/usr/bin/systemctl)".into()))
}

/// `systemctl --root` resolves every path in the tree itself (systemd's
/// `chase()` with the root as prefix), so planted symlinks stay inside too.
fn run_systemctl(tree: &Tree, verb: &str, unit: &str) -> StageResult {
    let bin = systemctl()?;
    println!("systemctl {verb} {unit}");
    let status = Command::new(bin)
        .arg(format!("--root={}", tree.path().display()))
        .arg(verb)
        // Units may start with `-` (`-.mount`, the root file system's).
        .arg("--")
        .arg(unit)
        .status()
        .map_err(|e| format!("cannot run {bin}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("systemctl {verb} {unit} failed ({status})").into())
    }
}

/// Replaces whatever is at `link` with a symlink to `target`.
fn symlink(tree: &Tree, link: &str, target: &str) -> StageResult {
    tree.create_parents(link)?;
    match tree.symlink_metadata(link) {
        Ok(m) if m.is_dir() => return Err(format!("/{link} is a directory").into()),
        Ok(_) => tree.remove_file(link)?,
        Err(_) => {}
    }
    Ok(tree.symlink(target, link)?)
}

impl Options for Systemd {
    fn validate(&self) -> Vec<OptionsError> {
        let mut problems = Vec::new();
        if let Some(target) = &self.default_target {
            let full = target.full("target");
            if !full.ends_with(".target") {
                problems.push(OptionsError::invalid(
                    crate::at!["default_target"],
                    format!("{full} is not a .target unit"),
                ));
            }
        }
        problems
    }

    fn run(self, ctx: &Context) -> StageResult {
        let tree = &ctx.open_tree()?;
        // Check every name first, so a typo fails before anything changed.
        for (verb, units) in [("enable", &self.enabled_services), ("disable", &self.disabled_services)] {
            for unit in units {
                let full = unit.full("service");
                if !known(tree, &full) {
                    return Err(format!(
                        "cannot {verb} {full}: no such unit in the tree (looked in /{})",
                        UNIT_DIRS.join(", /")
                    )
                    .into());
                }
            }
        }
        let default_target = match &self.default_target {
            Some(t) => {
                let full = t.full("target");
                let path = find_unit(tree, &full)
                    .filter(|p| p != "/etc/systemd/system/default.target")
                    .ok_or_else(|| format!("default_target {full}: no such unit in the tree"))?;
                Some((full, path))
            }
            None => None,
        };

        for unit in &self.enabled_services {
            run_systemctl(tree, "enable", &unit.full("service"))?;
        }
        for unit in &self.disabled_services {
            run_systemctl(tree, "disable", &unit.full("service"))?;
        }
        for unit in &self.masked_services {
            let full = unit.full("service");
            if !known(tree, &full) {
                println!("note: {full} is not in the tree; masking it anyway");
            }
            run_systemctl(tree, "mask", &full)?;
        }
        for generator in &self.masked_generators {
            symlink(
                tree,
                &format!("etc/systemd/system-generators/{}", generator.0),
                "/dev/null",
            )?;
            println!("masked generator {}", generator.0);
        }
        if let Some((full, path)) = default_target {
            symlink(tree, "etc/systemd/system/default.target", &path)?;
            println!("default target set to {full} ({path})");
        }
        Ok(())
    }
}

pub static STAGE: Builtin = Builtin::new::<Systemd>(
    "org.osbuild.systemd",
    Kind::Stage,
    "Enables, disables and masks systemd units; sets the default target",
);

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::STAGE;
    use crate::testutil::TempTree;
    use crate::OptionsError;

    const SSH: &str = "\
[Unit]
Description=OpenBSD Secure Shell server
Documentation=man:sshd(8) man:sshd_config(5)
After=network.target auditd.service
ConditionPathExists=!/etc/ssh/sshd_not_to_be_run

[Service]
EnvironmentFile=-/etc/default/ssh
ExecStartPre=/usr/sbin/sshd -t
ExecStart=/usr/sbin/sshd -D $SSHD_OPTS
ExecReload=/usr/sbin/sshd -t
ExecReload=/bin/kill -HUP $MAINPID
KillMode=process
Restart=on-failure
RestartPreventExitStatus=255
Type=notify
RuntimeDirectory=sshd
RuntimeDirectoryMode=0755

[Install]
WantedBy=multi-user.target
Alias=sshd.service
";
    const CRON: &str = "\
[Unit]
Description=Regular background program processing daemon
Documentation=man:cron(8)
After=remote-fs.target nss-user-lookup.target

[Service]
EnvironmentFile=-/etc/default/cron
ExecStart=/usr/sbin/cron -f -P $EXTRA_OPTS
IgnoreSIGPIPE=false
KillMode=process
Restart=on-failure

[Install]
WantedBy=multi-user.target
";
    const FSTRIM_TIMER: &str = "\
[Unit]
Description=Discard unused blocks once a week
Documentation=man:fstrim
ConditionVirtualization=!container
ConditionPathExists=!/etc/initrd-release

[Timer]
OnCalendar=weekly
AccuracySec=1h
Persistent=true
RandomizedDelaySec=6000

[Install]
WantedBy=timers.target
";
    const GETTY: &str = "\
[Unit]
Description=Getty on %I
Before=getty.target
ConditionPathExists=/dev/tty0

[Service]
ExecStart=-/sbin/agetty -o '-p -- \\\\u' --noclear - $TERM
Type=idle
Restart=always

[Install]
WantedBy=getty.target
DefaultInstance=tty1
";

    fn target(description: &str) -> String {
        format!("[Unit]\nDescription={description}\nDocumentation=man:systemd.special(7)\n")
    }

    /// A merged-/usr Debian tree with a few real units, cron enabled by its package.
    fn tree() -> TempTree {
        let t = TempTree::new("systemd");
        std::fs::create_dir_all(t.join("usr/lib/systemd/system")).unwrap();
        std::os::unix::fs::symlink("usr/lib", t.join("lib")).unwrap();
        let units = t.join("usr/lib/systemd/system");
        for (name, text) in [
            ("ssh.service", SSH.to_string()),
            ("cron.service", CRON.to_string()),
            ("fstrim.timer", FSTRIM_TIMER.to_string()),
            ("fstrim.service", "[Unit]\nDescription=Discard unused blocks\n\n[Service]\nType=oneshot\nExecStart=/sbin/fstrim --listed-in /etc/fstab:/proc/self/mountinfo --verbose --quiet-unsupported\n".to_string()),
            ("getty@.service", GETTY.to_string()),
            ("apt-daily.timer", "[Unit]\nDescription=Daily apt download activities\n\n[Timer]\nOnCalendar=*-*-* 6,18:00\n\n[Install]\nWantedBy=timers.target\n".to_string()),
            ("multi-user.target", target("Multi-User System")),
            ("graphical.target", target("Graphical Interface")),
            ("getty.target", target("Login Prompts")),
            ("timers.target", target("Timer Units")),
        ] {
            std::fs::write(units.join(name), text).unwrap();
        }
        std::fs::create_dir_all(t.join("etc/systemd/system/multi-user.target.wants")).unwrap();
        std::os::unix::fs::symlink(
            "/lib/systemd/system/cron.service",
            t.join("etc/systemd/system/multi-user.target.wants/cron.service"),
        )
        .unwrap();
        t
    }

    #[test]
    fn osbuild_manifest_checks() {
        // From osbuild's test/data/stages/systemd/b.mpp.yaml.
        let b =
            json!({"enabled_services": ["nftables"], "masked_services": ["ldconfig"], "disabled_services": ["sshd"]});
        assert!(STAGE.check(&b).is_empty());
        assert!(STAGE
            .check(&json!({"default_target": "multi-user.target", "masked_generators": ["systemd-gpt-auto-generator"]}))
            .is_empty());
        assert!(!STAGE.check(&json!({"enabled_services": ["../x"]})).is_empty());
        assert!(!STAGE.check(&json!({"enabled_services": ["--now"]})).is_empty());
        // From osbuild's stage tests: the root file system's mount unit.
        assert!(STAGE.check(&json!({"enabled_services": ["-.mount"]})).is_empty());
        let e = STAGE.check(&json!({"default_target": "ssh.service"}));
        assert_eq!(
            e,
            [OptionsError::invalid(
                crate::at!["default_target"],
                "ssh.service is not a .target unit"
            )]
        );
    }

    #[test]
    fn enables_disables_masks() {
        let t = tree();
        let options = json!({
            "enabled_services": ["ssh", "fstrim.timer", "getty@tty2.service"],
            "disabled_services": ["cron.service"],
            "masked_services": ["apt-daily.timer", "not-installed.service"],
            "masked_generators": ["systemd-gpt-auto-generator"],
            "default_target": "graphical"
        });
        assert!(STAGE.check(&options).is_empty());
        STAGE.run(&t.ctx(), &options).unwrap();
        let link = |rel: &str| {
            t.link(&format!("etc/systemd/system/{rel}"))
                .to_string_lossy()
                .into_owned()
        };
        let lib = |name: &str| {
            // Debian's systemctl names units by /lib, others by /usr/lib.
            let l = link(name);
            assert!(
                l == format!("/lib/systemd/system/{}", name.rsplit('/').next().unwrap())
                    || l == format!("/usr/lib/systemd/system/{}", name.rsplit('/').next().unwrap()),
                "{name} -> {l}"
            );
        };
        lib("multi-user.target.wants/ssh.service");
        assert!(link("sshd.service").ends_with("/systemd/system/ssh.service"));
        lib("timers.target.wants/fstrim.timer");
        assert!(link("getty.target.wants/getty@tty2.service").ends_with("/systemd/system/getty@.service"));
        assert!(!t.exists("etc/systemd/system/multi-user.target.wants/cron.service"));
        assert_eq!(link("apt-daily.timer"), "/dev/null");
        assert_eq!(link("not-installed.service"), "/dev/null");
        assert_eq!(
            t.link("etc/systemd/system-generators/systemd-gpt-auto-generator")
                .to_str(),
            Some("/dev/null")
        );
        assert_eq!(link("default.target"), "/usr/lib/systemd/system/graphical.target");
    }

    #[test]
    fn enables_the_root_mount_unit() {
        let t = tree();
        std::fs::write(
            t.join("etc/systemd/system/-.mount"),
            "[Unit]\nDescription=Root\n\n[Mount]\nWhat=/dev/vda1\nWhere=/\n\n[Install]\nWantedBy=local-fs.target\n",
        )
        .unwrap();
        STAGE.run(&t.ctx(), &json!({"enabled_services": ["-.mount"]})).unwrap();
        assert_eq!(
            t.link("etc/systemd/system/local-fs.target.wants/-.mount").to_str(),
            Some("/etc/systemd/system/-.mount")
        );
    }

    #[test]
    fn missing_units_fail_before_changes() {
        let t = tree();
        let e = STAGE
            .run(&t.ctx(), &json!({"enabled_services": ["ssh", "nginx"]}))
            .unwrap_err();
        assert!(
            e.0.starts_with("cannot enable nginx.service: no such unit in the tree"),
            "{}",
            e.0
        );
        assert!(!t.exists("etc/systemd/system/multi-user.target.wants/ssh.service"));
        let e = STAGE
            .run(&t.ctx(), &json!({"disabled_services": ["nope.socket"]}))
            .unwrap_err();
        assert!(e.0.starts_with("cannot disable nope.socket"), "{}", e.0);
        let e = STAGE
            .run(&t.ctx(), &json!({"default_target": "rescue.target"}))
            .unwrap_err();
        assert_eq!(e.0, "default_target rescue.target: no such unit in the tree");
    }

    #[test]
    fn replaces_default_target() {
        let t = tree();
        std::os::unix::fs::symlink(
            "/lib/systemd/system/graphical.target",
            t.join("etc/systemd/system/default.target"),
        )
        .unwrap();
        STAGE
            .run(&t.ctx(), &json!({"default_target": "multi-user.target"}))
            .unwrap();
        assert_eq!(
            t.link("etc/systemd/system/default.target").to_str(),
            Some("/usr/lib/systemd/system/multi-user.target")
        );
    }
}
