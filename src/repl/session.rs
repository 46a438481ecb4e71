//! A live evaluation session: the script front-end's engine (same purity
//! rules, limits, API and stdlib) plus what persists from one input to the
//! next: the variables of a [`Scope`], the functions every input defined
//! (each input's functions become a module of their own, named after the
//! input, so an error inside one shows the input it was defined in), and the
//! modules imported at the top level.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rhai::{Dynamic, Engine, EvalAltResult, Module, Position, Scope};

use crate::manifest::{self, Manifest};
use crate::registry::Registry;
use crate::script::api::{Param, ScriptPipeline, State};
use crate::script::errors::from_eval;
use crate::script::modules::{Sources, STDLIB};
use crate::script::ScriptDiagnostic;

use super::lexer;

/// What the completer knows about the session, refreshed after every input.
#[derive(Debug, Default, Clone)]
pub struct Names {
    pub variables: BTreeSet<String>,
    pub functions: BTreeSet<String>,
    /// Imported modules: alias → the names of their functions.
    pub modules: BTreeMap<String, BTreeSet<String>>,
}

/// An image the session emitted (the latest with each name).
#[derive(Debug, Clone)]
pub struct Emitted {
    pub name: String,
    pub pipeline: manifest::Pipeline,
}

pub type Failure = Box<ScriptDiagnostic>;

pub struct Session {
    registry: Arc<Registry>,
    root: PathBuf,
    sources: Arc<Sources>,
    state: Arc<State>,
    engine: Engine,
    scope: Scope<'static>,
    inputs: usize,
    images: Vec<Emitted>,
    cancel: Arc<AtomicBool>,
    names: Arc<Mutex<Names>>,
    /// The `-D` parameters the session started with; kept across `:reset`.
    params: BTreeMap<String, Param>,
}

/// The public function names a piece of Rhai source defines.
pub fn function_names(text: &str) -> BTreeSet<String> {
    crate::script::engine::parser()
        .compile(text)
        .map(|ast| {
            ast.iter_functions()
                .filter(|f| f.access == rhai::FnAccess::Public)
                .map(|f| f.name.to_string())
                .collect()
        })
        .unwrap_or_default()
}

impl Session {
    /// A fresh session; `root` is the real directory files and modules are read from.
    pub fn new(
        registry: Arc<Registry>,
        root: PathBuf,
        names: Arc<Mutex<Names>>,
        params: BTreeMap<String, Param>,
    ) -> Result<Session, Failure> {
        let sources = Arc::new(Sources::new(root.clone(), "repl".into(), String::new()));
        let state = Arc::new(State {
            registry: registry.clone(),
            params: params.clone(),
            reads: Mutex::new(BTreeMap::new()),
            bases: Mutex::new(BTreeMap::new()),
            images: Mutex::new(Vec::new()),
            sources: sources.clone(),
        });
        let mut engine = crate::script::engine::build(state.clone(), sources.clone())
            .map_err(|e| Box::new(from_eval(*e, &sources)))?;
        let cancel = Arc::new(AtomicBool::new(false));
        let flag = cancel.clone();
        engine.on_progress(move |_| flag.load(Ordering::Relaxed).then_some(Dynamic::UNIT));
        let session = Session {
            registry,
            root,
            sources,
            state,
            engine,
            scope: Scope::new(),
            inputs: 0,
            images: Vec::new(),
            cancel,
            names,
            params,
        };
        *session.names.lock().unwrap() = Names::default();
        Ok(session)
    }

    /// Clears everything: variables, functions, imports and emitted images.
    pub fn reset(&mut self) -> Result<(), Failure> {
        *self = Session::new(
            self.registry.clone(),
            self.root.clone(),
            self.names.clone(),
            self.params.clone(),
        )?;
        Ok(())
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Set from another thread to stop the evaluation that is running.
    pub fn cancel_flag(&self) -> Arc<AtomicBool> {
        self.cancel.clone()
    }

    /// The images emitted so far, in the order they were first emitted.
    pub fn images(&self) -> &[Emitted] {
        &self.images
    }

    /// Where the session named each `base`, for a diagnostic when the store lacks one.
    pub fn bases(&self) -> crate::script::Bases {
        crate::script::Bases::new(self.state.bases.lock().unwrap().clone(), self.sources.clone())
    }

    /// A name for the next input: `in[N]`.
    pub fn next_input_name(&mut self) -> String {
        self.inputs += 1;
        format!("in[{}]", self.inputs)
    }

    /// Evaluates `text` (named `name` in diagnostics, reading relative paths
    /// from `dir`) in the session; its variables, functions and imports stay.
    pub fn eval(&mut self, name: &str, text: &str, dir: Option<PathBuf>) -> Result<Dynamic, Failure> {
        self.cancel.store(false, Ordering::Relaxed);
        let dir = dir.unwrap_or_else(|| self.root.clone());
        self.sources.add(name, Arc::new(text.to_string()), Some(dir.clone()));
        // A file loaded from outside the session's directory reads (and
        // imports) inside its own, as `osbuild run FILE` would.
        if !dir.starts_with(&self.root) {
            self.sources.set_root(name, dir);
        }
        self.sources.set_main(name);
        let result = self.eval_inner(name, text);
        self.collect_images();
        self.refresh_names();
        let cancelled = self.cancel.swap(false, Ordering::Relaxed);
        result.map_err(|e| {
            if cancelled && matches!(*e, EvalAltResult::ErrorTerminated(..)) {
                Box::new(ScriptDiagnostic::plain("interrupted", "interrupted", None))
            } else {
                Box::new(from_eval(*e, &self.sources))
            }
        })
    }

    fn eval_inner(&mut self, name: &str, text: &str) -> Result<Dynamic, Box<EvalAltResult>> {
        let mut ast = self.engine.compile_with_scope(&self.scope, text)?;
        ast.set_source(name);
        if ast.iter_functions().next().is_some() {
            // The functions outlive the input, as a module named after it.
            let mut functions = ast.clone_functions_only();
            functions.set_source(name);
            let mut module = Module::eval_ast_as_new(Scope::new(), &functions, &self.engine)?;
            module.set_id(name);
            self.engine.register_global_module(module.into());
            let mut names = self.names.lock().unwrap();
            names.functions.extend(
                ast.iter_functions()
                    .filter(|f| f.access == rhai::FnAccess::Public)
                    .map(|f| f.name.to_string()),
            );
        }
        let value = self.engine.eval_ast_with_scope::<Dynamic>(&mut self.scope, &ast)?;
        // Top-level imports stay, as modules the next inputs can name.
        for (path, alias) in lexer::top_level_imports(text) {
            let module = self
                .engine
                .module_resolver()
                .resolve(&self.engine, Some(name), &path, Position::NONE)?;
            let functions = match STDLIB.iter().find(|(n, _)| *n == path) {
                Some((_, source)) => function_names(source),
                None => self
                    .sources
                    .text(&imported_name(name, &path))
                    .map(|t| function_names(&t))
                    .unwrap_or_default(),
            };
            self.names.lock().unwrap().modules.insert(alias.clone(), functions);
            self.engine.register_static_module(alias, module);
        }
        Ok(value)
    }

    /// Moves what `emit` recorded into the session's images: a later image
    /// with the same name replaces the earlier one.
    fn collect_images(&mut self) {
        let emitted = std::mem::take(&mut *self.state.images.lock().unwrap());
        for e in emitted {
            let image = Emitted {
                name: e.name,
                pipeline: e.pipeline,
            };
            match self.images.iter_mut().find(|i| i.name == image.name) {
                Some(old) => *old = image,
                None => self.images.push(image),
            }
        }
    }

    fn refresh_names(&mut self) {
        let mut names = self.names.lock().unwrap();
        names.variables = self.scope.iter_raw().map(|(n, ..)| n.to_string()).collect();
    }
}

/// The manifest of a value that must be a pipeline (`expr` is what gave it).
pub fn as_manifest(value: Dynamic, expr: &str) -> Result<Manifest, Failure> {
    let type_name = value.type_name().to_string();
    match value.try_cast::<ScriptPipeline>() {
        Some(p) => Ok(Manifest {
            pipeline: p.to_pipeline(),
            sources: None,
        }),
        None => Err(Box::new(ScriptDiagnostic::plain(
            "repl",
            format!("`{}` is {type_name}, not a pipeline", expr.trim()),
            Some("give an expression whose value is a pipeline, e.g. a variable set with pipeline(\"name\")".into()),
        ))),
    }
}

/// The display name the resolver gives a relative import from `importer`.
fn imported_name(importer: &str, path: &str) -> String {
    let mut rel = PathBuf::from(path);
    if rel.extension().is_none() {
        rel.set_extension("rhai");
    }
    let joined = Path::new(importer).parent().unwrap_or(Path::new("")).join(rel);
    let mut out: Vec<std::path::Component> = Vec::new();
    for c in joined.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir if matches!(out.last(), Some(std::path::Component::Normal(_))) => {
                out.pop();
            }
            _ => out.push(c),
        }
    }
    out.iter().collect::<PathBuf>().display().to_string()
}

/// How a value is shown after `=>`.
pub fn show(value: &Dynamic) -> Option<String> {
    if value.is_unit() {
        return None;
    }
    if let Some(p) = value.clone().try_cast::<ScriptPipeline>() {
        let mut text = format!(
            "pipeline {:?} ({} stage{}",
            p.name.as_deref().unwrap_or(""),
            p.stages.len(),
            if p.stages.len() == 1 { "" } else { "s" }
        );
        if let Some(a) = &p.assembler {
            text.push_str(&format!(", assembler {}", a.name));
        }
        if let Some(b) = &p.base {
            text.push_str(&format!(", base {b}"));
        }
        if p.build.is_some() {
            text.push_str(", with a build pipeline");
        }
        text.push(')');
        return Some(text);
    }
    Some(format!("{value:?}"))
}
