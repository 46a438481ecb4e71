//! What scripts call: the `Pipeline` type and the functions registered into the
//! engine. Everything here is pure: the only input besides the script is the
//! `-D` parameters and files read through `read_file` inside the script's tree.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use osbuild_stages::{Kind, PathSegment, ProblemKind};
use rhai::{Array, Dynamic, Engine, EvalAltResult, Map, NativeCallContext, Position};
use serde_json::Value;

use crate::manifest::{self, Stage};
use crate::registry::Registry;

use super::modules::Sources;

/// A pipeline as scripts see it: the manifest's pipeline, plus a `meta` map
/// that stdlib modules use to remember things (the package manager, the dnf
/// repositories) and that never reaches the manifest.
///
/// It is a value: `let web = base;` copies it, so stages added to `web` leave
/// `base` alone and both share `base`'s stages (and so their ids).
///
/// Stages are shared between copies (`Arc`), so a copy costs a few reference
/// counts, not a deep clone of every options object: fleets copy a lot.
#[derive(Debug, Clone, Default)]
pub struct ScriptPipeline {
    pub name: Option<String>,
    pub build: Option<Arc<manifest::Pipeline>>,
    pub base: Option<String>,
    pub source_epoch: Option<u64>,
    pub stages: Vec<Arc<Stage>>,
    pub assembler: Option<Arc<Stage>>,
    pub meta: Map,
}

impl ScriptPipeline {
    /// The manifest's pipeline.
    pub fn to_pipeline(&self) -> manifest::Pipeline {
        manifest::Pipeline {
            name: self.name.clone(),
            build: self.build.as_ref().map(|b| Box::new((**b).clone())),
            runner: None,
            base: self.base.clone(),
            source_epoch: self.source_epoch,
            stages: self.stages.iter().map(|s| (**s).clone()).collect(),
            assembler: self.assembler.as_ref().map(|a| (**a).clone()),
            // Set at lowering, from what the emitted images share.
            assembly_base: None,
        }
    }
}

/// Where in which source something happened.
#[derive(Debug, Clone)]
pub struct Site {
    pub source: String,
    pub pos: Position,
}

/// A `-D key=value` parameter.
#[derive(Debug, Clone)]
pub struct Param {
    /// The text as given.
    pub raw: String,
    /// The text as JSON when it parses, else a string.
    pub value: Value,
}

impl Param {
    pub fn parse(raw: &str) -> Param {
        let value = serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_string()));
        Param {
            raw: raw.to_string(),
            value,
        }
    }
}

/// A `-D` value as the type of the script's default: a string default takes
/// the text as given (`-D release=40` stays "40"), a list takes a JSON list or
/// comma-separated words (`-D envs=staging` is `["staging"]`), a number, a
/// boolean or a map takes only that; with no default (`()`), JSON when it
/// parses, else the text.
fn typed_param(key: &str, param: &Param, default: &Dynamic) -> Result<Dynamic, String> {
    let want = |what: &str, ok: bool| {
        if ok {
            rhai::serde::to_dynamic(&param.value).map_err(|e| e.to_string())
        } else {
            Err(format!(
                "-D {key}={}: the script's default for {key} is {what} ({default}), so the value must be one too",
                param.raw
            ))
        }
    };
    if default.is_string() {
        Ok(param.raw.clone().into())
    } else if default.is_array() {
        if param.value.is_array() {
            return want("a list", true);
        }
        let words: rhai::Array = param
            .raw
            .split(',')
            .map(str::trim)
            .filter(|w| !w.is_empty())
            .map(|w| Dynamic::from(w.to_string()))
            .collect();
        Ok(words.into())
    } else if default.is_int() {
        want("an integer", param.value.is_i64())
    } else if default.is_float() {
        match param.value.as_f64() {
            Some(f) => Ok(Dynamic::from_float(f)),
            None => want("a number", false),
        }
    } else if default.is_bool() {
        want("a boolean", param.value.is_boolean())
    } else if default.is_map() {
        want("a map", param.value.is_object())
    } else {
        rhai::serde::to_dynamic(&param.value).map_err(|e| e.to_string())
    }
}

/// An image the script emitted.
#[derive(Debug, Clone)]
pub struct Emitted {
    pub name: String,
    pub pipeline: manifest::Pipeline,
    pub site: Site,
}

/// What to look for inside a call's text to put the label on the exact spot.
#[derive(Debug, Clone)]
pub enum Needle {
    /// An option key: `key:` or `"key":`.
    Key(String),
    /// A literal as written, e.g. a quoted stage name.
    Literal(String),
    /// The value of an option: of the last key, each key found after the one
    /// before (`["/etc/x", "mode"]` in `#{ "/etc/x": #{ mode: 0o600 } }`).
    Value(Vec<String>),
    /// The call's argument at this index (0 is the first inside the parentheses).
    Argument(usize),
}

impl Needle {
    /// Where a stdlib function says a value is: an option key (`"size"`), a
    /// path of keys (`["/etc/x", "mode"]`) or an argument's index.
    pub fn at(at: &Dynamic) -> Option<Needle> {
        if let Ok(i) = at.as_int() {
            return usize::try_from(i).ok().map(Needle::Argument);
        }
        if let Some(keys) = at.clone().try_cast::<Array>() {
            let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
            return (!keys.is_empty()).then_some(Needle::Value(keys));
        }
        at.clone().into_string().ok().map(|k| Needle::Value(vec![k]))
    }
}

/// A mistake found by one of our functions, carried through Rhai as the value
/// of an `ErrorRuntime` and turned into a diagnostic by [`super::errors`].
#[derive(Debug, Clone)]
pub struct ScriptError {
    /// The diagnostic code's last part: `options`, `unknown-stage`, `param`, ...
    pub code: &'static str,
    pub message: String,
    pub label: String,
    pub help: Option<String>,
    pub needle: Option<Needle>,
    /// The mistake is in the arguments the user passed to a stdlib function:
    /// point at the user's line first and show the stdlib lines as notes.
    pub blame_caller: bool,
    /// More places worth showing: (where, message, label).
    pub notes: Vec<(Site, String, String)>,
}

impl ScriptError {
    pub fn new(code: &'static str, message: impl Into<String>, label: impl Into<String>) -> Self {
        ScriptError {
            code,
            message: message.into(),
            label: label.into(),
            help: None,
            needle: None,
            blame_caller: false,
            notes: Vec::new(),
        }
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    fn needle(mut self, needle: Option<Needle>) -> Self {
        self.needle = needle;
        self
    }

    /// As a Rhai error at the call's position.
    pub fn at(self, ctx: &NativeCallContext) -> Box<EvalAltResult> {
        EvalAltResult::ErrorRuntime(Dynamic::from(self), ctx.call_position()).into()
    }
}

type RhaiResult<T> = Result<T, Box<EvalAltResult>>;

/// Everything the registered functions share during one evaluation.
pub struct State {
    pub registry: Arc<Registry>,
    pub params: BTreeMap<String, Param>,
    /// Every parameter key the script read, with where it was first read.
    pub reads: Mutex<BTreeMap<String, Site>>,
    /// Every `base` the script named, with where it first named it.
    pub bases: Mutex<BTreeMap<String, Site>>,
    pub images: Mutex<Vec<Emitted>>,
    pub sources: Arc<Sources>,
}

/// The fixed namespace of `uuid(name)`: the UUIDv5 of the URL
/// `https://github.com/osbuild/osbuild-rs/script/uuid` in the URL namespace.
pub fn uuid_namespace() -> uuid::Uuid {
    uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_URL,
        b"https://github.com/osbuild/osbuild-rs/script/uuid",
    )
}

/// The source (display name) of the code making the current call: the module
/// whose function is running, else the script being evaluated.
pub fn current_source(ctx: &NativeCallContext, sources: &Sources) -> String {
    ctx.iter_namespaces()
        .last()
        .and_then(|m| m.id())
        .or(ctx.call_source())
        .map(str::to_string)
        .unwrap_or_else(|| sources.main_name())
}

fn site(ctx: &NativeCallContext, sources: &Sources) -> Site {
    Site {
        source: current_source(ctx, sources),
        pos: ctx.call_position(),
    }
}

/// Rhai values to JSON; custom types and function pointers cannot be options.
pub fn to_json(value: &Dynamic) -> Result<Value, String> {
    rhai::serde::from_dynamic::<Value>(value).map_err(|e| {
        let mut text = e.to_string();
        if let Some(i) = text.find(" (line") {
            text.truncate(i);
        }
        text
    })
}

/// ": message", or " at `place`: message".
fn with_colon(problem: &osbuild_stages::OptionsError) -> String {
    let place = problem.place();
    if place.is_empty() {
        format!(": {}", problem.message)
    } else {
        format!(" at `{place}`: {}", problem.message)
    }
}

/// Checks `name` and `options` against the registry, as the JSON front-end does.
fn checked_stage(state: &State, kind: Kind, name: &str, options: Map) -> Result<Stage, Box<ScriptError>> {
    let Some(def) = state.registry.get(kind, name) else {
        let unknown = crate::check::unknown_name(&state.registry, kind, name);
        return Err(Box::new(
            ScriptError::new("unknown-stage", unknown.message, format!("not a known {}", kind.noun()))
                .help(unknown.help)
                .needle(Some(Needle::Literal(format!("{name:?}")))),
        ));
    };
    let value = to_json(&Dynamic::from_map(options)).map_err(|e| {
        Box::new(
            ScriptError::new(
                "options",
                format!("invalid options for {name}: {e}"),
                "options must be strings, numbers, booleans, arrays and maps",
            )
            .help(format!("`osbuild stages {}` lists its options", def.name)),
        )
    })?;
    // Room for what holds options in a manifest: the pipeline, its `stages`
    // array and the stage object. Deeper, the JSON front-end would refuse the
    // manifest `osbuild lower -o` writes.
    let depth = manifest::json::depth(&value);
    if depth + 3 > manifest::json::MAX_DEPTH {
        return Err(Box::new(
            ScriptError::new(
                "options",
                format!(
                    "invalid options for {name}: they nest {depth} levels of maps and arrays deep, more than the {} a manifest has room for",
                    manifest::json::MAX_DEPTH - 3
                ),
                "nested too deeply",
            )
            .help(format!(
                "a manifest nests at most {} levels of objects and arrays",
                manifest::json::MAX_DEPTH
            )),
        ));
    }
    let problems = def.check(&value);
    if let Some(first) = problems.first() {
        let place = first.place();
        let (label, needle) = match first.kind {
            ProblemKind::Unknown => {
                let key = first.key().map(str::to_string);
                (
                    format!("unknown option `{}`", key.as_deref().unwrap_or("?")),
                    key.map(Needle::Key),
                )
            }
            ProblemKind::Missing => {
                let at = if place.is_empty() {
                    String::new()
                } else {
                    format!(" in `{place}`")
                };
                (format!("missing option `{}`{at}", first.key().unwrap_or("?")), None)
            }
            ProblemKind::Invalid => {
                let key = first.path.iter().rev().find_map(|s| match s {
                    PathSegment::Key(k) => Some(k.clone()),
                    PathSegment::Index(_) => None,
                });
                (
                    format!("`{}` does not fit", if place.is_empty() { "options" } else { &place }),
                    key.map(Needle::Key),
                )
            }
        };
        let mut help = format!("`osbuild stages {}` lists its options", def.name);
        if problems.len() > 1 {
            let rest: Vec<String> = problems[1..].iter().map(ToString::to_string).collect();
            help = format!("also: {}\n{help}", rest.join("; "));
        }
        return Err(Box::new(
            ScriptError::new(
                "options",
                format!("invalid options for {name}{}", with_colon(first)),
                label,
            )
            .help(help)
            .needle(needle),
        ));
    }
    let Value::Object(options) = value else {
        unreachable!("a map converts to a JSON object")
    };
    // The name as written: an alias stays an alias, as in a JSON manifest
    // (it is part of the stage's id).
    Ok(Stage {
        name: name.to_string(),
        options,
    })
}

/// A name an image can have: it becomes `DIR/<name>.json` and `DIR/<name>/`,
/// and names the built tree in the store.
fn image_name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        Some("an image needs a name: pipeline(\"name\")".into())
    } else if name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        Some("an image name becomes a file name: no `/`, and not `.` or `..`".into())
    } else if let Some(p) = crate::store::name_problem(name) {
        Some(format!("an image name names its tree in the store, and {p}"))
    } else if name.len() + ".json".len() > 255 {
        Some(format!(
            "an image name becomes a file name `<name>.json` of at most 255 bytes; this one takes {}",
            name.len() + 5
        ))
    } else {
        None
    }
}

/// Resolves `rel` against the directory of the file `source`, refusing paths
/// that leave the script's tree.
fn resolve_in_tree(sources: &Sources, source: &str, rel: &str) -> Result<PathBuf, String> {
    let rel_path = Path::new(rel);
    if rel_path.is_absolute() {
        return Err(format!("`{rel}` is absolute: paths are relative to the script"));
    }
    let base = sources.dir_of(source);
    let root = sources.root_of(source);
    // Lexically first: `..` that climbs out of the tree is refused even if it
    // would come back in.
    let mut parts: Vec<Component> = Vec::new();
    let start = base.strip_prefix(&root).unwrap_or(Path::new("")).to_path_buf();
    for c in start.components().chain(rel_path.components()) {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if parts.pop().is_none() {
                    return Err(format!("`{rel}` leaves the script's directory"));
                }
            }
            Component::Normal(_) => parts.push(c),
            _ => return Err(format!("`{rel}` is not a relative path")),
        }
    }
    let path: PathBuf = root.join(parts.iter().collect::<PathBuf>());
    // Then for real: a symlink must not lead out either.
    let real = path.canonicalize().map_err(|e| format!("cannot read `{rel}`: {e}"))?;
    if !real.starts_with(&root) {
        return Err(format!("`{rel}` leads out of the script's directory"));
    }
    Ok(real)
}

/// Registers the `Pipeline` type and every function of the core API.
pub fn register(engine: &mut Engine, state: Arc<State>) {
    engine
        .register_type_with_name::<ScriptPipeline>("Pipeline")
        .register_fn("pipeline", |name: &str| ScriptPipeline {
            name: Some(name.to_string()),
            ..Default::default()
        })
        .register_get_set(
            "name",
            |p: &mut ScriptPipeline| p.name.clone().unwrap_or_default(),
            |p: &mut ScriptPipeline, name: String| p.name = Some(name),
        )
        .register_fn("named", |p: &mut ScriptPipeline, name: &str| {
            let mut copy = p.clone();
            copy.name = Some(name.to_string());
            copy
        })
        // The time the pipeline builds for; `()` when it has none. A lock sets it
        // for every image it pins.
        .register_get("source_epoch", |p: &mut ScriptPipeline| {
            p.source_epoch.map_or(Dynamic::UNIT, |s| Dynamic::from_int(s as i64))
        })
        .register_set(
            "source_epoch",
            |ctx: NativeCallContext, p: &mut ScriptPipeline, seconds: rhai::INT| -> RhaiResult<()> {
                if !(0..=1 << 53).contains(&seconds) {
                    return Err(Box::new(EvalAltResult::ErrorRuntime(
                        format!("source_epoch must be seconds since 1970, 0 to 2^53, not {seconds}").into(),
                        ctx.call_position(),
                    )));
                }
                p.source_epoch = Some(seconds as u64);
                Ok(())
            },
        )
        .register_get_set(
            "meta",
            |p: &mut ScriptPipeline| p.meta.clone(),
            |p: &mut ScriptPipeline, meta: Map| p.meta = meta,
        )
        .register_get("stages", |p: &mut ScriptPipeline| {
            p.stages
                .iter()
                .map(|s| {
                    let mut m = Map::new();
                    m.insert("name".into(), s.name.clone().into());
                    m.insert(
                        "options".into(),
                        rhai::serde::to_dynamic(&s.options).unwrap_or(Dynamic::UNIT),
                    );
                    Dynamic::from_map(m)
                })
                .collect::<Array>()
        })
        .register_fn("to_string", |p: &mut ScriptPipeline| describe(p))
        .register_fn("to_debug", |p: &mut ScriptPipeline| describe(p))
        .register_fn("uuid", |name: &str| {
            uuid::Uuid::new_v5(&uuid_namespace(), name.as_bytes()).to_string()
        });

    for (fname, kind) in [("stage", Kind::Stage), ("assembler", Kind::Assembler)] {
        let s = state.clone();
        engine.register_fn(
            fname,
            move |ctx: NativeCallContext, p: &mut ScriptPipeline, name: &str, options: Map| -> RhaiResult<()> {
                add(&s, &ctx, p, kind, name, options)
            },
        );
        let s = state.clone();
        engine.register_fn(
            fname,
            move |ctx: NativeCallContext, p: &mut ScriptPipeline, name: &str| -> RhaiResult<()> {
                add(&s, &ctx, p, kind, name, Map::new())
            },
        );
    }

    engine.register_fn(
        "build",
        |ctx: NativeCallContext, p: &mut ScriptPipeline, build: ScriptPipeline| -> RhaiResult<()> {
            if build.assembler.is_some() {
                return Err(ScriptError::new(
                    "build",
                    "a build pipeline cannot have an assembler",
                    "this pipeline has one",
                )
                .help("a build pipeline only provides the tree the stages run in")
                .at(&ctx));
            }
            if build.stages.is_empty() && build.base.is_none() {
                return Err(ScriptError::new(
                    "build",
                    "a build pipeline needs at least one stage or a base",
                    "this pipeline is empty",
                )
                .help("without build(...), stages run with the host as their root")
                .at(&ctx));
            }
            let build = build.to_pipeline();
            // `{"build": ...}` is one level more; a manifest has room for so many.
            let depth = 1 + build.json_depth();
            if depth > manifest::json::MAX_DEPTH {
                return Err(ScriptError::new(
                    "build",
                    format!(
                        "build pipelines nest too deeply: this would be {depth} levels of objects and arrays, more than the {} of a manifest",
                        manifest::json::MAX_DEPTH
                    ),
                    "nested too deeply",
                )
                .help("a build pipeline rarely needs a build pipeline of its own")
                .at(&ctx));
            }
            p.build = Some(Arc::new(build));
            Ok(())
        },
    );

    let s = state.clone();
    engine.register_fn(
        "base",
        move |ctx: NativeCallContext, p: &mut ScriptPipeline, base: &str| {
            // An image this script emitted earlier: its tree's id, which the
            // run builds before this one (images build in emit order).
            let emitted = s
                .images
                .lock()
                .unwrap()
                .iter()
                .find(|i| i.name == base)
                .map(|i| i.pipeline.clone());
            if let Some(id) = emitted.as_ref().and_then(crate::plan::tree_id) {
                p.base = Some(id);
                return;
            }
            // Else a stored tree; whether the store has it is known only
            // when planning: keep where it was named, for the diagnostic then.
            s.bases
                .lock()
                .unwrap()
                .entry(base.to_string())
                .or_insert_with(|| site(&ctx, &s.sources));
            p.base = Some(base.to_string());
        },
    );

    let s = state.clone();
    engine.register_fn(
        "emit",
        move |ctx: NativeCallContext, p: ScriptPipeline| -> RhaiResult<()> {
            let name = p.name.clone().unwrap_or_default();
            if let Some(problem) = image_name_problem(&name) {
                return Err(
                    ScriptError::new("image-name", format!("invalid image name {name:?}"), problem)
                        .help("give the pipeline another name: p.name = \"web\", or p.named(\"web\")")
                        .at(&ctx),
                );
            }
            let mut images = s.images.lock().unwrap();
            if let Some(first) = images.iter().find(|i| i.name == name) {
                let mut err = ScriptError::new(
                    "duplicate-image",
                    format!("an image named {name:?} was already emitted"),
                    "emitted a second time here",
                )
                .help("every image needs its own name: rename the copy with p.named(\"...\") or p.name = \"...\"");
                err.notes.push((
                    first.site.clone(),
                    format!("{name:?} was first emitted here"),
                    "first emitted here".to_string(),
                ));
                return Err(err.at(&ctx));
            }
            images.push(Emitted {
                name,
                pipeline: p.to_pipeline(),
                site: site(&ctx, &s.sources),
            });
            Ok(())
        },
    );

    let s = state.clone();
    engine.register_fn(
        "param",
        move |ctx: NativeCallContext, key: &str, default: Dynamic| -> RhaiResult<Dynamic> {
            s.reads
                .lock()
                .unwrap()
                .entry(key.to_string())
                .or_insert_with(|| site(&ctx, &s.sources));
            let Some(param) = s.params.get(key) else {
                return Ok(default);
            };
            typed_param(key, param, &default).map_err(|message| {
                ScriptError::new("param", message, "takes this parameter")
                    .help(format!("the default here says what -D {key}=... must be"))
                    .at(&ctx)
            })
        },
    );

    let s = state.clone();
    engine.register_fn(
        "read_file",
        move |ctx: NativeCallContext, rel: &str| -> RhaiResult<String> {
            let source = current_source(&ctx, &s.sources);
            let path = resolve_in_tree(&s.sources, &source, rel).map_err(|e| {
                ScriptError::new("read-file", e, "cannot be read")
                    .help("read_file reads files inside the script's directory tree, relative to the calling file")
                    .at(&ctx)
            })?;
            let bytes = std::fs::read(&path).map_err(|e| {
                ScriptError::new("read-file", format!("cannot read `{rel}`: {e}"), "cannot be read").at(&ctx)
            })?;
            let max = ctx.engine().max_string_size();
            if max > 0 && bytes.len() > max {
                return Err(ScriptError::new(
                    "read-file",
                    format!("`{rel}` is {} bytes, more than the limit of {max}", bytes.len()),
                    "too large",
                )
                .at(&ctx));
            }
            String::from_utf8(bytes).map_err(|_| {
                ScriptError::new("read-file", format!("`{rel}` is not UTF-8 text"), "not text")
                    .help("manifests hold text; encode binary content first")
                    .at(&ctx)
            })
        },
    );

    // The fleet module's product, natively: built in Rhai, every push would
    // re-check the size of the growing array.
    engine.register_fn(
        "cartesian_product",
        |ctx: NativeCallContext, dimensions: Map| -> RhaiResult<Array> {
            let mut combos: Vec<Map> = vec![Map::new()];
            for (key, values) in dimensions {
                let values = values.into_array().map_err(|t| {
                    ScriptError::new(
                        "fleet",
                        format!("dimension `{key}` is {t}, not an array of values"),
                        "not an array",
                    )
                    .at(&ctx)
                })?;
                let max = ctx.engine().max_array_size();
                if max > 0 && combos.len().saturating_mul(values.len()) > max {
                    return Err(EvalAltResult::ErrorDataTooLarge("the product".into(), ctx.call_position()).into());
                }
                let key = &key;
                combos = combos
                    .iter()
                    .flat_map(|c| {
                        values.iter().map(move |v| {
                            let mut n = c.clone();
                            n.insert(key.clone(), v.clone());
                            n
                        })
                    })
                    .collect();
            }
            Ok(combos.into_iter().map(Dynamic::from_map).collect())
        },
    );

    engine.register_fn(
        "check_options",
        |ctx: NativeCallContext, options: Map, allowed: Array, what: &str| -> RhaiResult<()> {
            let allowed: Vec<String> = allowed.into_iter().map(|a| a.to_string()).collect();
            for key in options.keys() {
                if !allowed.iter().any(|a| a == key.as_str()) {
                    let help = match crate::diagnostic::suggest(key, allowed.iter().map(String::as_str)) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => format!("{what} takes: {}", allowed.join(", ")),
                    };
                    let mut err = ScriptError::new(
                        "options",
                        format!("unknown option `{key}` for {what}"),
                        format!("unknown option `{key}`"),
                    )
                    .help(help)
                    .needle(Some(Needle::Key(key.to_string())));
                    err.blame_caller = true;
                    return Err(err.at(&ctx));
                }
            }
            Ok(())
        },
    );

    // For stdlib functions: a bad option value, shown at the user's line (at
    // the value, when the user's call spells it) rather than the stdlib's.
    // `at` is the option's key, a path of keys or an argument's index; the
    // label (at the value) says what is wrong with it, the help how to fix it.
    engine.register_fn(
        "option_error",
        |ctx: NativeCallContext, at: Dynamic, message: &str, label: &str, help: &str| -> RhaiResult<()> {
            Err(option_error(&ctx, &at, message, label, help))
        },
    );
    engine.register_fn(
        "option_error",
        |ctx: NativeCallContext, at: Dynamic, message: &str, help: &str| -> RhaiResult<()> {
            Err(option_error(&ctx, &at, message, "does not fit", help))
        },
    );

    // A disk size in bytes (see values::disk_size), or an error at the user's line.
    engine.register_fn(
        "disk_size",
        |ctx: NativeCallContext, size: Dynamic, at: Dynamic| -> RhaiResult<i64> {
            super::values::disk_size(&size).map_err(|p| value_error(&ctx, &at, p))
        },
    );

    // A file mode as given, once checked (see values::file_mode).
    engine.register_fn(
        "file_mode",
        |ctx: NativeCallContext, mode: Dynamic, at: Dynamic| -> RhaiResult<Dynamic> {
            super::values::file_mode(&mode).map_err(|p| value_error(&ctx, &at, p))
        },
    );

    // The /etc/locale.gen line of a locale (empty for C.UTF-8 and the like),
    // or an error at the user's line naming the locale meant.
    engine.register_fn(
        "debian_locale",
        |ctx: NativeCallContext, locale: &str| -> RhaiResult<String> {
            match super::locales::lookup(locale) {
                Ok(super::locales::Locale::Builtin) => Ok(String::new()),
                Ok(super::locales::Locale::Generated(line)) => Ok(line.to_string()),
                Err(message) => {
                    let mut err = ScriptError::new("locale", message, "not a locale Debian has")
                        .help("the names are those of /usr/share/i18n/SUPPORTED, such as en_US.UTF-8 or de_DE.UTF-8")
                        .needle(Some(Needle::Value(vec!["locale".into()])));
                    err.blame_caller = true;
                    Err(err.at(&ctx))
                }
            }
        },
    );
}

/// A stdlib check's problem with a value the user passed, at the user's line.
fn value_error(ctx: &NativeCallContext, at: &Dynamic, problem: super::values::Problem) -> Box<EvalAltResult> {
    option_error(ctx, at, &problem.message, problem.label, &problem.help)
}

/// A bad value the user passed to a stdlib function: at the user's line, at
/// the value itself when the call spells it (`at` as for [`Needle::at`]).
fn option_error(ctx: &NativeCallContext, at: &Dynamic, message: &str, label: &str, help: &str) -> Box<EvalAltResult> {
    let mut err = ScriptError::new("options", message, label).needle(Needle::at(at));
    if !help.is_empty() {
        err = err.help(help);
    }
    err.blame_caller = true;
    err.at(ctx)
}

fn describe(p: &ScriptPipeline) -> String {
    format!(
        "pipeline {:?} ({} stages{})",
        p.name.as_deref().unwrap_or(""),
        p.stages.len(),
        p.assembler
            .as_ref()
            .map(|a| format!(", assembler {}", a.name))
            .unwrap_or_default()
    )
}

fn add(
    state: &State,
    ctx: &NativeCallContext,
    p: &mut ScriptPipeline,
    kind: Kind,
    name: &str,
    options: Map,
) -> RhaiResult<()> {
    // A stdlib function's stage is checked with what the user passed it:
    // the user's line comes first, the stdlib's lines as notes.
    let stage = checked_stage(state, kind, name, options).map_err(|mut e| {
        e.blame_caller = true;
        e.at(ctx)
    })?;
    match kind {
        Kind::Stage => p.stages.push(Arc::new(stage)),
        Kind::Assembler => p.assembler = Some(Arc::new(stage)),
    }
    Ok(())
}
