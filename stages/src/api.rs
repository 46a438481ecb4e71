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
    /// The verified files a locked stage installs (`sha256/<hex>`),
    /// read-only; only for a built-in that takes a lock, when it is locked.
    pub sources: Option<PathBuf>,
    /// For an assembler: whether it makes the image, its reusable work for a
    /// prefix tree, or the image on that work (see [`crate::assembly`]).
    pub assembly: crate::assembly::Assembly,
}

impl Context {
    /// The tree, opened so that every path resolves inside it (see [`crate::tree`]).
    pub fn open_tree(&self) -> Result<crate::tree::Tree, StageError> {
        Ok(crate::tree::Tree::open(&self.tree)?)
    }

    /// The build's sources, which a locked stage installs from.
    pub fn locked_sources(&self) -> Result<&std::path::Path, StageError> {
        self.sources
            .as_deref()
            .ok_or_else(|| "the stage is locked, but the build gave it no sources".into())
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

impl From<&str> for PathSegment {
    fn from(key: &str) -> Self {
        PathSegment::Key(key.to_string())
    }
}

impl From<&String> for PathSegment {
    fn from(key: &String) -> Self {
        PathSegment::Key(key.clone())
    }
}

impl From<String> for PathSegment {
    fn from(key: String) -> Self {
        PathSegment::Key(key)
    }
}

impl From<usize> for PathSegment {
    fn from(index: usize) -> Self {
        PathSegment::Index(index)
    }
}

/// A path into the options: `at!["partitions", 2, "filesystem", "uuid"]`.
#[macro_export]
macro_rules! at {
    ($($segment:expr),* $(,)?) => {
        vec![$($crate::api::PathSegment::from($segment)),*]
    };
}

/// `users.alice.home`, `partitions[2].uuid`; empty for the options themselves.
pub fn path_text(path: &[PathSegment]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            PathSegment::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            PathSegment::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// What kind of mistake an [`OptionsError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// A key the options do not take.
    Unknown,
    /// A key the options need is absent.
    Missing,
    /// A value that does not fit.
    Invalid,
}

/// Options that do not fit a stage, with where in the options they went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionsError {
    /// From the options object down to the problem: the offending value for
    /// [`ProblemKind::Invalid`]; the key itself for [`ProblemKind::Unknown`] and
    /// [`ProblemKind::Missing`] (the object it is missing from is the path
    /// without its last segment).
    pub path: Vec<PathSegment>,
    pub kind: ProblemKind,
    pub message: String,
}

impl OptionsError {
    /// The value at `path` does not fit.
    pub fn invalid(path: Vec<PathSegment>, message: impl Into<String>) -> Self {
        OptionsError {
            path,
            kind: ProblemKind::Invalid,
            message: message.into(),
        }
    }

    /// The key `path` ends with should not be there.
    pub fn unknown(path: Vec<PathSegment>, message: impl Into<String>) -> Self {
        OptionsError {
            path,
            kind: ProblemKind::Unknown,
            message: message.into(),
        }
    }

    /// The key `path` ends with should be there.
    pub fn missing(path: Vec<PathSegment>, message: impl Into<String>) -> Self {
        OptionsError {
            path,
            kind: ProblemKind::Missing,
            message: message.into(),
        }
    }

    /// Where the problem is, as text (`paths[1]`): the value that does not
    /// fit, or the object with the unknown or missing key.
    pub fn place(&self) -> String {
        match self.kind {
            ProblemKind::Invalid => path_text(&self.path),
            ProblemKind::Unknown | ProblemKind::Missing => path_text(&self.path[..self.path.len().saturating_sub(1)]),
        }
    }

    /// The key an unknown or missing problem is about.
    pub fn key(&self) -> Option<&str> {
        match (self.kind, self.path.last()) {
            (ProblemKind::Unknown | ProblemKind::Missing, Some(PathSegment::Key(k))) => Some(k),
            _ => None,
        }
    }
}

/// "at `path`: message", or the message alone for the options as a whole.
impl fmt::Display for OptionsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let place = self.place();
        if place.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "at `{place}`: {}", self.message)
        }
    }
}

/// The options type of a built-in: deserialized from the manifest, run in the sandbox.
/// Doc comments on its fields become the docs `osbuild stages NAME` prints.
///
/// What each value must be is checked as it is deserialized (newtypes such as
/// [`FileName`] and [`ImagePath`] refuse what does not fit); rules across
/// values go in [`Options::validate`]. Both run before anything is built, so
/// `run` sees only options that passed them, and keeps to what needs the tree
/// or the tools.
pub trait Options: DeserializeOwned + JsonSchema {
    /// Every problem that deserializing cannot see (one value against another:
    /// both of two alternatives given, duplicates), each with its path.
    fn validate(&self) -> Vec<OptionsError> {
        Vec::new()
    }

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
    /// Whether it takes a `locked` option (the package stages): locked, it
    /// runs without network and gets the build's sources at
    /// `/run/osbuild/sources` instead.
    pub lockable: bool,
    /// For an assembler that can build on its work for a prefix tree: the
    /// options of that work, given the image's (`None`: these cannot).
    prefix: Option<fn(&Value) -> Option<Value>>,
    schema: fn() -> Value,
    check: fn(&Value) -> Vec<OptionsError>,
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
            lockable: false,
            prefix: None,
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

    pub const fn with_lock(mut self) -> Self {
        self.lockable = true;
        self
    }

    /// An assembler that builds on its own work for a prefix tree: `prefix`
    /// gives the options of that work (see [`crate::assembly`]).
    pub const fn with_prefix(mut self, prefix: fn(&Value) -> Option<Value>) -> Self {
        self.prefix = Some(prefix);
        self
    }

    /// The options of the prefix work these options can build on, if any.
    pub fn prefix_options(&self, options: &Value) -> Option<Value> {
        self.prefix.and_then(|f| f(options))
    }

    /// Whether these options pin what the stage installs.
    pub fn is_locked(&self, options: &Value) -> bool {
        self.lockable && options.get("locked").is_some_and(|l| !l.is_null())
    }

    /// Whether a stage with these options runs with the host's network: a
    /// locked stage never does.
    pub fn needs_network(&self, options: &Value) -> bool {
        let asked = self.network
            || self
                .network_option
                .is_some_and(|k| options.get(k) == Some(&Value::Bool(true)));
        asked && !self.is_locked(options)
    }

    pub const fn with_aliases(mut self, aliases: &'static [&'static str]) -> Self {
        self.aliases = aliases;
        self
    }

    /// The JSON Schema of the options, with the doc comments as descriptions.
    pub fn schema(&self) -> Value {
        (self.schema)()
    }

    /// Checks options without running anything: every problem found, none
    /// when they fit. (A value that cannot be deserialized stops the check
    /// there; the rules across values are all checked.)
    pub fn check(&self, options: &Value) -> Vec<OptionsError> {
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
    serde_path_to_error::deserialize(crate::value_de::ValueDe(options)).map_err(|e| {
        let mut path: Vec<PathSegment> = e
            .path()
            .iter()
            .filter_map(|seg| match seg {
                serde_path_to_error::Segment::Map { key } => Some(PathSegment::Key(key.clone())),
                serde_path_to_error::Segment::Seq { index } => Some(PathSegment::Index(*index)),
                _ => None,
            })
            .collect();
        let problem = e.into_inner();
        // The path ends at the object; name the key in it.
        if let Some(key) = problem.key {
            if path.last() != Some(&PathSegment::Key(key.clone())) {
                path.push(PathSegment::Key(key));
            }
        }
        OptionsError {
            path,
            kind: problem.kind,
            message: problem.message,
        }
    })
}

fn check_as<T: Options>(options: &Value) -> Vec<OptionsError> {
    match parse::<T>(options) {
        Ok(typed) => typed.validate(),
        Err(e) => vec![e],
    }
}

fn run_as<T: Options>(ctx: &Context, options: &Value) -> StageResult {
    let typed: T = parse(options).map_err(|e| StageError(format!("invalid options: {e}")))?;
    let problems = typed.validate();
    if !problems.is_empty() {
        let all: Vec<String> = problems.iter().map(ToString::to_string).collect();
        return Err(StageError(format!("invalid options: {}", all.join("; "))));
    }
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

/// A string option with a rule of its own: `string_newtype!(Name, {schema})`
/// for a `struct Name(String)` with `fn parse(&str) -> Result<Name, String>`
/// makes it deserialize only strings `parse` takes, and gives it the JSON
/// Schema that states the rule (`pattern`, `minLength`, ...), for the docs.
#[macro_export]
macro_rules! string_newtype {
    ($name:ident, $schema:tt) => {
        $crate::string_newtype!($name);

        impl schemars::JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }

            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!($schema)
            }
        }
    };
    ($name:ident) => {
        impl $name {
            #[allow(dead_code)]
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;

            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                $name::parse(&s).map_err(serde::de::Error::custom)
            }
        }

        // Serialized only to show defaults in the options' schema.
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
    };
}

/// An absolute path in the image, as an option names a file: it starts with
/// `/` and has no `..` (so it never leaves the tree).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImagePath(String);

impl ImagePath {
    pub fn parse(s: &str) -> Result<Self, String> {
        option_path(s).map_err(|e| e.0)?;
        Ok(ImagePath(s.to_string()))
    }

    /// The path relative to the tree's top, for [`crate::tree::Tree`].
    pub fn rel(&self) -> PathBuf {
        option_path(&self.0).expect("checked when deserialized")
    }
}

crate::string_newtype!(
    ImagePath,
    {
        "type": "string",
        "pattern": "^/(?!(.*/)?\\.\\.(/.*)?$)",
        "description": "an absolute path in the image, without `..`",
    }
);

/// A plain file name, such as an image's name in the output directory: not
/// empty, no `/`, not `.` or `..`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileName(String);

impl FileName {
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() || s.contains('/') || s == "." || s == ".." {
            return Err(format!("{s:?} must be a plain file name (no '/', not '.' or '..')"));
        }
        Ok(FileName(s.to_string()))
    }
}

crate::string_newtype!(
    FileName,
    {
        "type": "string",
        "pattern": "^(?!\\.\\.?$)[^/]+$",
        "description": "a plain file name: no `/`, not `.` or `..`",
    }
);

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

/// Fields whose osbuild schema says `"type": "number"` (uids, gids, fstab's
/// `freq` and `passno`, mkdir's `mode`): osbuild's draft-04 validator takes
/// `1000.0` there, as Python's `json` may write it, so they take a
/// whole-number float too; a fraction or a negative number is refused. Fields
/// osbuild types `integer` stay strict, as there.
pub(crate) mod whole {
    use serde::de::{self, Deserializer, Visitor};

    struct WholeU32;

    impl Visitor<'_> for WholeU32 {
        type Value = u32;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a whole number from 0 to 4294967295")
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<u32, E> {
            u32::try_from(v).map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<u32, E> {
            u32::try_from(v).map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<u32, E> {
            if v.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&v) {
                Ok(v as u32)
            } else {
                Err(E::invalid_value(de::Unexpected::Float(v), &self))
            }
        }
    }

    pub fn u32<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
        d.deserialize_any(WholeU32)
    }

    pub fn opt_u32<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
        u32(d).map(Some)
    }

    /// A mode given as a JSON number: its value, if whole.
    pub fn mode_number(n: &serde_json::Number) -> Option<u64> {
        n.as_u64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && *f >= 0.0).map(|f| f as u64))
    }
}

/// File modes are written either as numbers or as octal strings ("0755").
pub fn parse_mode(mode: &Value) -> Result<u32, String> {
    match mode {
        Value::Number(n) => whole::mode_number(n)
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
    use serde_json::json;

    use super::*;

    #[test]
    fn in_tree_refuses_escapes() {
        let tree = std::path::Path::new("/t");
        assert_eq!(in_tree(tree, "/etc/x").unwrap(), PathBuf::from("/t/etc/x"));
        assert!(in_tree(tree, "/etc/../../x").is_err());
        assert!(in_tree(tree, "etc").is_err());
    }

    #[derive(Debug, serde::Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        #[serde(default)]
        a: Vec<Inner>,
    }

    #[derive(Debug, serde::Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        a: u32,
        #[serde(default)]
        #[allow(dead_code)]
        file: Option<FileName>,
    }

    impl Options for Outer {
        fn validate(&self) -> Vec<OptionsError> {
            self.a
                .iter()
                .enumerate()
                .filter(|(_, inner)| inner.a == 0)
                .map(|(i, _)| OptionsError::invalid(crate::at!["a", i, "a"], "must not be 0"))
                .collect()
        }

        fn run(self, _: &Context) -> StageResult {
            Ok(())
        }
    }

    static OUTER: Builtin = Builtin::new::<Outer>("test.outer", Kind::Stage, "test");

    /// Unknown and missing keys are told apart by kind, and their path ends
    /// at the key, whatever the key is called.
    #[test]
    fn problems_have_a_kind_and_a_path() {
        let e = &OUTER.check(&json!({"a": [{"a": 1}, {}]}))[..];
        assert_eq!(e, [OptionsError::missing(crate::at!["a", 1, "a"], "missing field `a`")]);
        assert_eq!(e[0].key(), Some("a"));
        assert_eq!(e[0].to_string(), "at `a[1]`: missing field `a`");
        let e = &OUTER.check(&json!({"a": [{"a": 1, "b": 2}]}))[..];
        assert_eq!(e[0].kind, ProblemKind::Unknown);
        assert_eq!(e[0].path, crate::at!["a", 0, "b"]);
        assert!(e[0].message.starts_with("unknown field `b`"), "{}", e[0].message);
        let e = &OUTER.check(&json!({"b": 1}))[..];
        assert_eq!((e[0].kind, &e[0].path), (ProblemKind::Unknown, &crate::at!["b"]));
        let e = &OUTER.check(&json!({"a": [{"a": 1, "file": "x/y"}]}))[..];
        assert_eq!(
            e,
            [OptionsError::invalid(
                crate::at!["a", 0, "file"],
                "\"x/y\" must be a plain file name (no '/', not '.' or '..')"
            )]
        );
        // Every rule across values is reported, and a run refuses them too.
        let bad = json!({"a": [{"a": 0}, {"a": 1}, {"a": 0}]});
        let e = OUTER.check(&bad);
        assert_eq!(e.len(), 2);
        assert_eq!(e[1].path, crate::at!["a", 2, "a"]);
        let ctx = Context {
            tree: PathBuf::from("/nonexistent"),
            output_dir: None,
            cache: None,
            sources: None,
            assembly: Default::default(),
        };
        assert_eq!(
            OUTER.run(&ctx, &bad).unwrap_err().0,
            "invalid options: at `a[0].a`: must not be 0; at `a[2].a`: must not be 0"
        );
        assert!(OUTER.check(&json!({"a": [{"a": 1, "file": "x.img"}]})).is_empty());
    }

    #[test]
    fn image_paths() {
        for ok in ["/", "/etc/x", "/a..b/..c", "/srv/my data/"] {
            assert_eq!(ImagePath::parse(ok).unwrap().as_str(), ok);
        }
        assert_eq!(ImagePath::parse("/etc//x/").unwrap().rel(), PathBuf::from("etc/x"));
        for bad in ["", "etc", "./etc", "/etc/../x", "/..", "~/x"] {
            assert!(ImagePath::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn file_names() {
        for ok in ["x.qcow2", "...", ".hidden", "a b"] {
            assert!(FileName::parse(ok).is_ok(), "{ok:?}");
        }
        for bad in ["", ".", "..", "../x.qcow2", "sub/dir.tar", "/x"] {
            assert!(FileName::parse(bad).is_err(), "{bad:?}");
        }
    }

    /// The JSON Schema patterns say what `parse` checks.
    #[test]
    fn schemas_state_the_rules() {
        let schema = |s: schemars::Schema| s.as_value()["pattern"].as_str().unwrap().to_string();
        let mut generator = schemars::SchemaGenerator::default();
        assert_eq!(
            schema(ImagePath::json_schema(&mut generator)),
            "^/(?!(.*/)?\\.\\.(/.*)?$)"
        );
        assert_eq!(schema(FileName::json_schema(&mut generator)), "^(?!\\.\\.?$)[^/]+$");
    }

    #[test]
    fn modes() {
        assert_eq!(parse_mode(&Value::from(0o755)).unwrap(), 0o755);
        assert_eq!(parse_mode(&Value::from("0644")).unwrap(), 0o644);
        assert!(parse_mode(&Value::from("999")).is_err());
        assert!(parse_mode(&Value::from(70000)).is_err());
    }
}
