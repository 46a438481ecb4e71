//! `org.osbuild.mkdir`: creates directories (osbuild's schema).

use crate::api::{Builtin, Context, ImagePath, Kind, Mode, Options, StageResult};

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
    path: DirPath,
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

/// An [`ImagePath`], with or without osbuild's `tree://` in front. A relative
/// path is taken from the tree's root, as osbuild does (with a warning in
/// the log): `srv/www` is `/srv/www`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DirPath(ImagePath, Relative);

/// Whether the path was given relative, to warn about it when it is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Relative(bool);

impl DirPath {
    fn parse(s: &str) -> Result<Self, String> {
        let path = s.strip_prefix("tree://").unwrap_or(s);
        if path.is_empty() {
            return Err("must not be empty".into());
        }
        let relative = !path.starts_with('/');
        let absolute = if relative { format!("/{path}") } else { path.to_string() };
        ImagePath::parse(&absolute).map(|p| DirPath(p, Relative(relative)))
    }
}

impl<'de> serde::Deserialize<'de> for DirPath {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        DirPath::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for DirPath {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "DirPath".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^(tree://)?/?(?!(.*/)?\\.\\.(/.*)?$).",
        })
    }
}

fn default_mode() -> Mode {
    Mode(0o755)
}

impl Options for Mkdir {
    fn run(self, ctx: &Context) -> StageResult {
        let tree = ctx.open_tree()?;
        for dir in self.paths {
            let raw = dir.path.0.as_str();
            let path = dir.path.0.rel();
            if dir.path.1 .0 {
                println!(
                    "warning: {:?} is relative: made from the tree's root, as {raw}",
                    path.display().to_string()
                );
            }
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::STAGE;
    use crate::testutil::TempTree;

    #[test]
    fn paths_are_checked_first() {
        let ok = json!({"paths": [{"path": "/a"}, {"path": "tree:///a/b", "parents": true, "mode": "0700"}]});
        assert!(STAGE.check(&ok).is_empty());
        let t = TempTree::new("mkdir");
        STAGE.run(&t.ctx(), &ok).unwrap();
        assert_eq!(t.stat("a/b").0, 0o700);
        for bad in ["", "tree://", "/a/../../b", "tree:///..", "../x", "a/../../b"] {
            let e = STAGE.check(&json!({"paths": [{"path": "/ok"}, {"path": bad}]}));
            assert_eq!(e[0].path, crate::at!["paths", 1, "path"], "{bad}");
        }
        // Relative, as osbuild's tests have them: from the root.
        let relative = json!({"paths": [{"path": "srv/www", "parents": true}, {"path": "tree://c"}]});
        assert!(STAGE.check(&relative).is_empty());
        STAGE.run(&t.ctx(), &relative).unwrap();
        assert!(t.join("srv/www").is_dir() && t.join("c").is_dir());
    }
}
