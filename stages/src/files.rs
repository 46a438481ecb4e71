//! `org.osbuild.files`: writes files given inline in the manifest.

use std::os::unix::fs::PermissionsExt;

use crate::api::{in_tree, Builtin, Context, Kind, Mode, Options, Owner, StageResult, WithPath};
use crate::passwd;

/// Writes files whose content is carried in the manifest, so that the content
/// is part of the stage's id.
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Files {
    /// The files to write, in order; a later entry for the same path wins.
    files: Vec<File>,
}

/// One file.
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct File {
    /// Absolute path inside the tree. Missing parent directories are created (0755).
    path: String,
    /// The file's content, as UTF-8 text.
    content: String,
    /// Permission bits.
    #[serde(default = "default_mode")]
    #[schemars(default = "default_mode")]
    mode: Mode,
    /// Owner: a uid, or a user name from the tree's /etc/passwd.
    #[serde(default = "root")]
    #[schemars(default = "root")]
    user: Owner,
    /// Group: a gid, or a group name from the tree's /etc/group.
    #[serde(default = "root")]
    #[schemars(default = "root")]
    group: Owner,
}

fn default_mode() -> Mode {
    Mode(0o644)
}

fn root() -> Owner {
    Owner::Id(0)
}

impl Options for Files {
    fn run(self, ctx: &Context) -> StageResult {
        for file in self.files {
            let path = in_tree(&ctx.tree, &file.path)?;
            let uid = passwd::uid(&ctx.tree, &file.user)?;
            let gid = passwd::gid(&ctx.tree, &file.group)?;
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).at(parent)?;
            }
            // Replace rather than write through: the path may be a symlink into
            // the build root, or a hard link shared with another file.
            let _ = std::fs::remove_file(&path);
            std::fs::write(&path, file.content.as_bytes()).at(&path)?;
            std::os::unix::fs::lchown(&path, Some(uid), Some(gid)).at(&path)?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(file.mode.0)).at(&path)?;
            println!(
                "wrote {} ({:04o}, {uid}:{gid}, {} bytes)",
                file.path,
                file.mode.0,
                file.content.len()
            );
        }
        Ok(())
    }
}

pub static STAGE: Builtin = Builtin::new::<Files>(
    "org.osbuild.files",
    Kind::Stage,
    "Writes files given inline, with mode and owner",
);
