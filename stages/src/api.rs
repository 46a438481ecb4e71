//! The contract between the engine and a built-in stage or assembler.

use std::fmt;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Whether a built-in modifies a tree (stage) or turns a tree into an image (assembler).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Stage,
    Assembler,
}

impl Kind {
    pub fn noun(self) -> &'static str {
        match self {
            Kind::Stage => "stage",
            Kind::Assembler => "assembler",
        }
    }
}

/// What a running built-in sees: paths inside the sandbox.
#[derive(Debug, Clone)]
pub struct Context {
    /// The tree: read-write for a stage, read-only for an assembler.
    pub tree: PathBuf,
    /// Where an assembler writes its image; `None` for a stage.
    pub output_dir: Option<PathBuf>,
    /// A writable directory that outlives the build, shared by every build on
    /// the store (downloaded packages), for built-ins that ask for one.
    pub cache: Option<PathBuf>,
}

impl Context {
    /// The tree, opened so that every path resolves inside it (see [`crate::tree`]).
    pub fn open_tree(&self) -> Result<crate::tree::Tree, StageError> {
        Ok(crate::tree::Tree::open(&self.tree)?)
    }
}

/// A stage's failure, shown at the end of its log.
#[derive(Debug)]
pub struct StageError(pub String);

pub type StageResult = Result<(), StageError>;

impl fmt::Display for StageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StageError {}

impl From<String> for StageError {
    fn from(s: String) -> Self {
        StageError(s)
    }
}

impl From<&str> for StageError {
    fn from(s: &str) -> Self {
        StageError(s.to_string())
    }
}

impl From<std::io::Error> for StageError {
    fn from(e: std::io::Error) -> Self {
        StageError(e.to_string())
    }
}

/// Adds the path a failed operation was about, so a log says which file failed.
pub trait WithPath<T> {
    fn at(self, path: &std::path::Path) -> Result<T, StageError>;
}

impl<T> WithPath<T> for std::io::Result<T> {
    fn at(self, path: &std::path::Path) -> Result<T, StageError> {
        self.map_err(|e| StageError(format!("{}: {e}", path.display())))
    }
}

/// One step into a JSON document: an object key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathSegment {
    Key(String),
    Index(usize),
}

/// Options that do not fit a stage, with where in the options they went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionsError {
    /// From the options object down to the offending value (or its parent object,
    /// for a missing key).
    pub path: Vec<PathSegment>,
    pub message: String,
}

/// The options type of a built-in: deserialized from the manifest, run in the sandbox.
/// Doc comments on its fields become the docs `osbuild stages NAME` prints.
pub trait Options: DeserializeOwned + JsonSchema {
    fn run(self, ctx: &Context) -> StageResult;
}

/// A built-in stage or assembler, erased to function pointers so the engine can
/// list, check and run it without knowing its options type.
pub struct Builtin {
    pub name: &'static str,
    /// Other names the same built-in answers to (osbuild's historic names).
    pub aliases: &'static [&'static str],
    pub kind: Kind,
    /// One line for `osbuild stages`.
    pub summary: &'static str,
    /// Whether it runs with the host's network; every other built-in has loopback only.
    pub network: bool,
    /// A boolean option that, when true, gives this use of the stage the network.
    pub network_option: Option<&'static str>,
    /// The name of a cache directory (`STORE/cache/<name>`) mounted read-write
    /// at `/run/osbuild/cache` for this built-in.
    pub cache: Option<&'static str>,
    /// Whether the tree gets `/proc`, `/dev` and `/tmp` mounted inside it, so
    /// the stage can `chroot` into it and run the tree's own programs.
    pub tree_mounts: bool,
    schema: fn() -> Value,
    check: fn(&Value) -> Result<(), OptionsError>,
    run: fn(&Context, &Value) -> StageResult,
}

impl std::fmt::Debug for Builtin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Builtin({} {})", self.kind.noun(), self.name)
    }
}

impl Builtin {
    pub const fn new<T: Options>(name: &'static str, kind: Kind, summary: &'static str) -> Self {
        Builtin {
            name,
            aliases: &[],
            kind,
            summary,
            network: false,
            network_option: None,
            cache: None,
            tree_mounts: false,
            schema: schema_of::<T>,
            check: check_as::<T>,
            run: run_as::<T>,
        }
    }

    pub const fn with_network(mut self) -> Self {
        self.network = true;
        self
    }

    /// This use of the stage has network when its boolean option `key` is true.
    pub const fn with_network_option(mut self, key: &'static str) -> Self {
        self.network_option = Some(key);
        self
    }

    pub const fn with_cache(mut self, name: &'static str) -> Self {
        self.cache = Some(name);
        self
    }

    pub const fn with_tree_mounts(mut self) -> Self {
        self.tree_mounts = true;
        self
    }

    /// Whether a stage with these options runs with the host's network.
    pub fn needs_network(&self, options: &Value) -> bool {
        self.network
            || self
                .network_option
                .is_some_and(|k| options.get(k) == Some(&Value::Bool(true)))
    }

    pub const fn with_aliases(mut self, aliases: &'static [&'static str]) -> Self {
        self.aliases = aliases;
        self
    }

    /// The JSON Schema of the options, with the doc comments as descriptions.
    pub fn schema(&self) -> Value {
        (self.schema)()
    }

    /// Checks options without running anything.
    pub fn check(&self, options: &Value) -> Result<(), OptionsError> {
        (self.check)(options)
    }

    pub fn run(&self, ctx: &Context, options: &Value) -> StageResult {
        (self.run)(ctx, options)
    }

    pub fn answers_to(&self, name: &str) -> bool {
        self.name == name || self.aliases.contains(&name)
    }
}

fn schema_of<T: JsonSchema>() -> Value {
    // Inline every sub-schema: the docs printer and the REPL's completer walk
    // one self-contained tree instead of chasing `$ref`s.
    let settings = schemars::generate::SchemaSettings::draft2020_12().with(|s| {
        s.inline_subschemas = true;
    });
    settings.into_generator().into_root_schema_for::<T>().to_value()
}

fn parse<T: DeserializeOwned>(options: &Value) -> Result<T, OptionsError> {
    serde_path_to_error::deserialize(options).map_err(|e| {
        let path = e
            .path()
            .iter()
            .filter_map(|seg| match seg {
                serde_path_to_error::Segment::Map { key } => Some(PathSegment::Key(key.clone())),
                serde_path_to_error::Segment::Seq { index } => Some(PathSegment::Index(*index)),
                _ => None,
            })
            .collect();
        OptionsError {
            path,
            message: e.into_inner().to_string(),
        }
    })
}

fn check_as<T: Options>(options: &Value) -> Result<(), OptionsError> {
    parse::<T>(options).map(drop)
}

fn run_as<T: Options>(ctx: &Context, options: &Value) -> StageResult {
    let typed: T = parse(options).map_err(|e| StageError(format!("invalid options: {}", e.message)))?;
    typed.run(ctx)
}

/// Joins an absolute path from a manifest onto the tree, refusing `..` so an
/// option can never name a file outside the tree.
pub fn in_tree(tree: &std::path::Path, path: &str) -> Result<PathBuf, StageError> {
    Ok(tree.join(option_path(path)?))
}

/// An absolute path from a manifest, relative to the tree's top (for
/// [`crate::tree::Tree`]), refusing `..`: an option names a file as the image
/// sees it, plainly.
pub fn option_path(path: &str) -> Result<PathBuf, StageError> {
    use std::path::Component;
    let rel = std::path::Path::new(path);
    if !rel.is_absolute() {
        return Err(format!("path {path:?} must be absolute").into());
    }
    let mut out = PathBuf::new();
    for c in rel.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(p) => out.push(p),
            Component::ParentDir | Component::Prefix(_) => {
                return Err(format!("path {path:?} must not contain '..'").into())
            }
        }
    }
    Ok(out)
}

/// A file mode, written in a manifest as a number (`493`) or an octal string (`"0755"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mode(pub u32);

impl<'de> serde::Deserialize<'de> for Mode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        parse_mode(&v).map(Mode).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Mode {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Mode".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": ["integer", "string"],
            "description": "file mode: a number, or an octal string such as \"0755\""
        })
    }
}

// Serialized only to show defaults in the options' schema.
impl serde::Serialize for Mode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{:04o}", self.0))
    }
}

/// A user or group: a number, or a name looked up in the tree's own files.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Owner {
    Id(u32),
    Name(String),
}

// Serialized only to show defaults in the options' schema.
impl serde::Serialize for Owner {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Owner::Id(id) => s.serialize_u32(*id),
            Owner::Name(name) => s.serialize_str(name),
        }
    }
}

/// File modes are written either as numbers or as octal strings ("0755").
pub fn parse_mode(mode: &Value) -> Result<u32, String> {
    match mode {
        Value::Number(n) => n
            .as_u64()
            .filter(|m| *m <= 0o7777)
            .map(|m| m as u32)
            .ok_or_else(|| format!("mode {n} is not a file mode")),
        Value::String(s) => u32::from_str_radix(s.trim_start_matches("0o"), 8)
            .ok()
            .filter(|m| *m <= 0o7777)
            .ok_or_else(|| format!("mode {s:?} is not an octal file mode")),
        other => Err(format!("mode {other} is not a file mode")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_tree_refuses_escapes() {
        let tree = std::path::Path::new("/t");
        assert_eq!(in_tree(tree, "/etc/x").unwrap(), PathBuf::from("/t/etc/x"));
        assert!(in_tree(tree, "/etc/../../x").is_err());
        assert!(in_tree(tree, "etc").is_err());
    }

    #[test]
    fn modes() {
        assert_eq!(parse_mode(&Value::from(0o755)).unwrap(), 0o755);
        assert_eq!(parse_mode(&Value::from("0644")).unwrap(), 0o644);
        assert!(parse_mode(&Value::from("999")).is_err());
        assert!(parse_mode(&Value::from(70000)).is_err());
    }
}
