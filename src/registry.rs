//! Every stage and assembler the engine can run: the built-ins compiled into this
//! binary, and executables found in a `--libdir`.
//!
//! A libdir holds `stages/<name>` and `assemblers/<name>` executables, each with
//! an optional `<name>.meta.json`:
//! `{"summary": "...", "description": "...", "network": false, "schema": {<JSON Schema of the options>}}`.
//! A libdir entry with the same name as a built-in replaces it.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use osbuild_stages::{Builtin, Kind, OptionsError, PathSegment};
use serde_json::Value;

use crate::schema;

/// How a stage runs.
#[derive(Debug)]
pub enum Implementation {
    /// Compiled in: runs in-process in the sandboxed child.
    Builtin(&'static Builtin),
    /// An executable in the libdir, exec'd in the sandbox as
    /// `/run/osbuild/lib/<kind>s/<name>` with the protocol's JSON on stdin.
    Program {
        path: PathBuf,
        /// The options' schema from the meta file, as written and compiled.
        schema: Option<(Value, schema::Schema)>,
    },
}

/// A stage or assembler, whatever implements it.
#[derive(Debug)]
pub struct StageDef {
    pub name: String,
    pub kind: Kind,
    pub summary: String,
    pub description: Option<String>,
    pub network: bool,
    pub implementation: Implementation,
}

impl StageDef {
    /// Checks options; every mistake, each with the path to it.
    pub fn check(&self, options: &Value) -> Vec<OptionsError> {
        match &self.implementation {
            Implementation::Builtin(b) => b.check(options),
            Implementation::Program {
                schema: Some((_, s)), ..
            } => s.validate(options).into_iter().map(schema_problem).collect(),
            Implementation::Program { schema: None, .. } => Vec::new(),
        }
    }

    /// The options' JSON Schema, if the stage has one.
    pub fn schema(&self) -> Option<Value> {
        match &self.implementation {
            Implementation::Builtin(b) => Some(b.schema()),
            Implementation::Program { schema, .. } => schema.as_ref().map(|(v, _)| v.clone()),
        }
    }

    /// Whether this use of the stage gets the host's network.
    pub fn needs_network(&self, options: &Value) -> bool {
        match &self.implementation {
            Implementation::Builtin(b) => b.needs_network(options),
            Implementation::Program { .. } => self.network,
        }
    }

    /// The store cache directory this stage writes to, if any.
    pub fn cache(&self) -> Option<&'static str> {
        match &self.implementation {
            Implementation::Builtin(b) => b.cache,
            Implementation::Program { .. } => None,
        }
    }

    /// Whether these options pin what the stage installs (a locked package stage).
    pub fn is_locked(&self, options: &Value) -> bool {
        matches!(&self.implementation, Implementation::Builtin(b) if b.is_locked(options))
    }

    /// Whether the stage chroots into the tree and needs /proc, /dev and /tmp there.
    pub fn tree_mounts(&self) -> bool {
        matches!(&self.implementation, Implementation::Builtin(b) if b.tree_mounts)
    }

    pub fn is_builtin(&self) -> bool {
        matches!(self.implementation, Implementation::Builtin(_))
    }
}

/// A libdir schema's complaint as an [`OptionsError`]. The validator says
/// which complaints are about an unknown or a missing key only in its words
/// (`unknown option "x"`, at the key; `missing required option "x"`, at the
/// object), so they are told apart here.
fn schema_problem(e: schema::SchemaError) -> OptionsError {
    if e.message.starts_with("unknown option ") {
        return OptionsError::unknown(e.path, e.message);
    }
    let missing = e
        .message
        .strip_prefix("missing required option ")
        .and_then(|quoted| serde_json::from_str::<String>(quoted).ok());
    match missing {
        Some(key) => {
            let mut path = e.path;
            path.push(PathSegment::Key(key));
            OptionsError::missing(path, e.message)
        }
        None => OptionsError::invalid(e.path, e.message),
    }
}

/// The catalogue of stages and assemblers.
#[derive(Debug, Default)]
pub struct Registry {
    stages: BTreeMap<String, StageDef>,
    assemblers: BTreeMap<String, StageDef>,
    /// Alias name → canonical name, per kind.
    aliases: BTreeMap<(bool, String), String>,
    libdir: Option<PathBuf>,
}

/// A libdir entry that cannot be used.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("{path}: {message}")]
#[diagnostic(code(osbuild::libdir))]
pub struct LibdirError {
    pub path: String,
    pub message: String,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Meta {
    summary: Option<String>,
    description: Option<String>,
    #[serde(default)]
    network: bool,
    schema: Option<Value>,
}

impl Registry {
    /// The built-ins plus whatever `libdir` holds.
    /// The libdir is made absolute: it is bound into sandboxes, which have
    /// another working directory.
    pub fn load(libdir: Option<&Path>) -> Result<Registry, LibdirError> {
        let libdir = match libdir {
            Some(dir) => Some(std::fs::canonicalize(dir).map_err(|e| LibdirError {
                path: dir.display().to_string(),
                message: format!("cannot use the libdir: {e}"),
            })?),
            None => None,
        };
        let libdir = libdir.as_deref();
        let mut registry = Registry {
            libdir: libdir.map(Path::to_path_buf),
            ..Default::default()
        };
        let builtins = osbuild_stages::all().into_iter().chain(osbuild_assemblers::all());
        for builtin in builtins {
            registry.insert(StageDef {
                name: builtin.name.to_string(),
                kind: builtin.kind,
                summary: builtin.summary.to_string(),
                description: None,
                network: builtin.network,
                implementation: Implementation::Builtin(builtin),
            });
            for alias in builtin.aliases {
                registry.aliases.insert(
                    (builtin.kind == Kind::Stage, alias.to_string()),
                    builtin.name.to_string(),
                );
            }
        }
        if let Some(dir) = libdir {
            if !dir.is_dir() {
                return Err(LibdirError {
                    path: dir.display().to_string(),
                    message: "the libdir is not a directory".into(),
                });
            }
            for kind in [Kind::Stage, Kind::Assembler] {
                for def in scan(dir, kind)? {
                    registry.insert(def);
                }
            }
        }
        Ok(registry)
    }

    fn insert(&mut self, def: StageDef) {
        let map = match def.kind {
            Kind::Stage => &mut self.stages,
            Kind::Assembler => &mut self.assemblers,
        };
        map.insert(def.name.clone(), def);
    }

    fn map(&self, kind: Kind) -> &BTreeMap<String, StageDef> {
        match kind {
            Kind::Stage => &self.stages,
            Kind::Assembler => &self.assemblers,
        }
    }

    pub fn get(&self, kind: Kind, name: &str) -> Option<&StageDef> {
        let map = self.map(kind);
        map.get(name).or_else(|| {
            let canonical = self.aliases.get(&(kind == Kind::Stage, name.to_string()))?;
            map.get(canonical)
        })
    }

    pub fn all(&self, kind: Kind) -> impl Iterator<Item = &StageDef> {
        self.map(kind).values()
    }

    /// Every name, aliases included, for completion and "did you mean".
    pub fn names(&self, kind: Kind) -> Vec<&str> {
        let mut names: Vec<&str> = self.map(kind).keys().map(String::as_str).collect();
        names.extend(
            self.aliases
                .iter()
                .filter(|((is_stage, _), _)| *is_stage == (kind == Kind::Stage))
                .map(|((_, alias), _)| alias.as_str()),
        );
        names.sort_unstable();
        names
    }

    pub fn libdir(&self) -> Option<&Path> {
        self.libdir.as_deref()
    }
}

fn scan(libdir: &Path, kind: Kind) -> Result<Vec<StageDef>, LibdirError> {
    let dir = libdir.join(format!("{}s", kind.noun()));
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(LibdirError {
                path: dir.display().to_string(),
                message: e.to_string(),
            })
        }
    };
    let mut defs = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| LibdirError {
            path: dir.display().to_string(),
            message: e.to_string(),
        })?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".meta.json") || name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        let executable = std::fs::metadata(&path)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false);
        if !executable {
            continue;
        }
        let meta_path = dir.join(format!("{name}.meta.json"));
        let (meta, compiled) = match std::fs::read_to_string(&meta_path) {
            Ok(text) => {
                let meta: Meta = serde_json::from_str(&text).map_err(|e| LibdirError {
                    path: meta_path.display().to_string(),
                    message: format!("not a valid meta file: {e}"),
                })?;
                let compiled = match &meta.schema {
                    Some(s) => Some(schema::Schema::new(s).map_err(|message| LibdirError {
                        path: meta_path.display().to_string(),
                        message: format!("invalid schema: {message}"),
                    })?),
                    None => None,
                };
                (meta, compiled)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (
                Meta {
                    summary: None,
                    description: None,
                    network: false,
                    schema: None,
                },
                None,
            ),
            Err(e) => {
                return Err(LibdirError {
                    path: meta_path.display().to_string(),
                    message: e.to_string(),
                })
            }
        };
        defs.push(StageDef {
            name,
            kind,
            summary: meta.summary.unwrap_or_else(|| format!("(from {})", dir.display())),
            description: meta.description,
            network: meta.network,
            implementation: Implementation::Program {
                path,
                schema: meta.schema.zip(compiled),
            },
        });
    }
    Ok(defs)
}
