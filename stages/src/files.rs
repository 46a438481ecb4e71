//! `org.osbuild.files`: writes files given inline in the manifest.

use std::io::Write;

use crate::api::{Builtin, Context, ImagePath, Kind, Mode, Options, Owner, StageResult};
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
    path: ImagePath,
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
        let tree = ctx.open_tree()?;
        for file in self.files {
            let path = file.path.rel();
            let uid = passwd::uid(&tree, &file.user)?;
            let gid = passwd::gid(&tree, &file.group)?;
            tree.create_parents(&path)?;
            // A new file, replacing rather than writing through what is there:
            // a symlink, or a hard link shared with another file.
            tree.write_with(&path, file.mode.0, Some((uid, gid)), |f| {
                f.write_all(file.content.as_bytes())
            })?;
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
