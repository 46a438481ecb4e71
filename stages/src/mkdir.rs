//! `org.osbuild.mkdir`: creates directories (osbuild's schema).

use crate::api::{option_path, Builtin, Context, Kind, Mode, Options, StageResult};

/// Creates directories in the tree.
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Mkdir {
    /// The directories to create, in order.
    paths: Vec<Dir>,
}

/// One directory.
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Dir {
    /// Absolute path inside the tree; a `tree://` prefix is accepted as in osbuild.
    path: String,
    /// Permission bits of the new directory (not of created parents, which get 0755).
    #[serde(default = "default_mode")]
    #[schemars(default = "default_mode")]
    mode: Mode,
    /// Create missing parent directories too.
    #[serde(default)]
    parents: bool,
    /// Succeed when the directory already exists.
    #[serde(default)]
    exist_ok: bool,
}

fn default_mode() -> Mode {
    Mode(0o755)
}

impl Options for Mkdir {
    fn run(self, ctx: &Context) -> StageResult {
        let tree = ctx.open_tree()?;
        for dir in self.paths {
            let raw = dir.path.strip_prefix("tree://").unwrap_or(&dir.path);
            let path = option_path(raw)?;
            if tree.is_dir(&path) {
                if dir.exist_ok {
                    continue;
                }
                return Err(format!("{raw} already exists").into());
            }
            if dir.parents {
                tree.create_parents(&path)?;
            }
            tree.create_dir(&path, 0o755)?;
            // mkdir's mode is filtered by the umask; set the bits exactly.
            tree.set_mode(&path, dir.mode.0)?;
            println!("created {raw} ({:04o})", dir.mode.0);
        }
        Ok(())
    }
}

pub static STAGE: Builtin = Builtin::new::<Mkdir>(
    "org.osbuild.mkdir",
    Kind::Stage,
    "Creates directories with the given modes",
);
