//! `org.osbuild.kernel-cmdline`: writes `/etc/kernel/cmdline` (osbuild's schema).

use crate::api::{Builtin, Context, Kind, Options, OptionsError, StageResult};

/// Writes the kernel command line to `/etc/kernel/cmdline`, where
/// `kernel-install` (systemd-boot, UKIs) and osbuild's boot loader stages read
/// it: `root=UUID=...` followed by `kernel_opts`. The file is replaced.
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KernelCmdline {
    /// UUID of the root file system, giving `root=UUID=<uuid>`: the usual
    /// `8-4-4-4-12` form, or the `XXXX-XXXX` form of FAT.
    root_fs_uuid: Option<FsUuid>,
    /// Further kernel parameters, space-separated, such as `ro console=ttyS0,115200n8`.
    #[serde(default)]
    kernel_opts: String,
    /// The most bytes `kernel_opts` may take, 256 to 4096, as osbuild checks
    /// it. By default the kernel's limit on the build machine's architecture
    /// (as osbuild, which asks `platform.machine()`): 2048 on x86_64 and
    /// aarch64, 1024 on 32-bit ARM, 4096 elsewhere.
    kernel_cmdline_size: Option<u32>,
}

/// The kernel's command-line limit (COMMAND_LINE_SIZE) on `arch`.
fn default_cmdline_size(arch: &str) -> u32 {
    match arch {
        "x86_64" | "x86" | "aarch64" => 2048,
        "arm" => 1024,
        _ => 4096,
    }
}

/// A file system UUID in one of the two shapes of osbuild's schema.
#[derive(Debug, Clone)]
struct FsUuid(String);

impl<'de> serde::Deserialize<'de> for FsUuid {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        crate::ids::check_fs_id(&s).map_err(serde::de::Error::custom)?;
        Ok(FsUuid(s))
    }
}

impl schemars::JsonSchema for FsUuid {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "FsUuid".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": crate::ids::FS_ID_PATTERN,
            "examples": ["9c6ae55b-cf88-45b8-84e8-64990759f39d", "6699-AFB5"],
        })
    }
}

impl Options for KernelCmdline {
    fn validate(&self) -> Vec<OptionsError> {
        let mut problems = Vec::new();
        if self.kernel_opts.contains(['\n', '\r']) {
            problems.push(OptionsError::invalid(
                crate::at!["kernel_opts"],
                "must be a single line",
            ));
        }
        match self.kernel_cmdline_size {
            Some(size) if !(256..=4096).contains(&size) => problems.push(OptionsError::invalid(
                crate::at!["kernel_cmdline_size"],
                format!("{size} is not between 256 and 4096"),
            )),
            size => {
                let limit = size.unwrap_or_else(|| default_cmdline_size(std::env::consts::ARCH));
                if self.kernel_opts.len() > limit as usize {
                    problems.push(OptionsError::invalid(
                        crate::at!["kernel_opts"],
                        format!(
                            "the kernel options take {} bytes, more than the kernel command line's {limit}",
                            self.kernel_opts.len()
                        ),
                    ));
                }
            }
        }
        problems
    }

    fn run(self, ctx: &Context) -> StageResult {
        let mut params = Vec::new();
        if let Some(FsUuid(uuid)) = &self.root_fs_uuid {
            params.push(format!("root=UUID={uuid}"));
        }
        let opts = self.kernel_opts.trim();
        if !opts.is_empty() {
            params.push(opts.to_string());
        }
        let line = params.join(" ");
        let tree = ctx.open_tree()?;
        tree.create_dir_all("etc/kernel")?;
        // No newline at the end, as osbuild writes it.
        tree.write("etc/kernel/cmdline", &line)?;
        println!("kernel command line: {line}");
        Ok(())
    }
}

pub static STAGE: Builtin = Builtin::new::<KernelCmdline>(
    "org.osbuild.kernel-cmdline",
    Kind::Stage,
    "Writes the kernel command line to /etc/kernel/cmdline",
);

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::STAGE;
    use crate::testutil::TempTree;

    #[test]
    fn writes_cmdline() {
        let t = TempTree::new("kernel-cmdline");
        // From osbuild's test/data/stages/kernel-cmdline manifest.
        let options = json!({"root_fs_uuid": "6e4ff95f-f662-45ee-a82a-bdf44a2d0b75", "kernel_opts": "ro biosdevname=0 net.ifnames=0"});
        assert!(STAGE.check(&options).is_empty());
        STAGE.run(&t.ctx(), &options).unwrap();
        assert_eq!(
            t.read("etc/kernel/cmdline"),
            "root=UUID=6e4ff95f-f662-45ee-a82a-bdf44a2d0b75 ro biosdevname=0 net.ifnames=0"
        );
        STAGE.run(&t.ctx(), &json!({"root_fs_uuid": "6699-AFB5"})).unwrap();
        assert_eq!(t.read("etc/kernel/cmdline"), "root=UUID=6699-AFB5");
        STAGE
            .run(&t.ctx(), &json!({"kernel_opts": "console=ttyS0 quiet"}))
            .unwrap();
        assert_eq!(t.read("etc/kernel/cmdline"), "console=ttyS0 quiet");
        let e = STAGE.check(&json!({"root_fs_uuid": "not-a-uuid"}));
        assert!(
            e[0].message
                .starts_with("\"not-a-uuid\" is not a file system UUID (8-4-4-4-12"),
            "{}",
            e[0].message
        );
        assert!(!STAGE.check(&json!({"kernel_opts": "x", "extra": 1})).is_empty());
        let e = STAGE.check(&json!({"kernel_opts": "a\nb"}));
        assert_eq!(e[0].path, crate::at!["kernel_opts"]);
    }

    #[test]
    fn the_command_line_size_is_checked() {
        // As osbuild's stage tests have them.
        assert!(STAGE.check(&json!({"kernel_cmdline_size": 256})).is_empty());
        assert!(STAGE.check(&json!({"kernel_cmdline_size": 4096})).is_empty());
        for bad in [json!({"kernel_cmdline_size": 0}), json!({"kernel_cmdline_size": 4097})] {
            let e = STAGE.check(&bad);
            assert_eq!(e[0].path, crate::at!["kernel_cmdline_size"], "{bad}");
        }
        assert!(!STAGE.check(&json!({"kernel_cmdline_size": "not integer"})).is_empty());
        let e = STAGE.check(&json!({"kernel_opts": "a".repeat(257), "kernel_cmdline_size": 256}));
        assert!(
            e[0].message
                .contains("257 bytes, more than the kernel command line's 256"),
            "{}",
            e[0].message
        );
        assert_eq!(super::default_cmdline_size("x86_64"), 2048);
        assert_eq!(super::default_cmdline_size("arm"), 1024);
        let long = STAGE.check(&json!({"kernel_opts": "a".repeat(4097)}));
        assert_eq!(long[0].path, crate::at!["kernel_opts"]);
    }
}
