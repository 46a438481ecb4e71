//! Where scripts come from: the user's script, modules beside it
//! (`import "./mylib" as mylib;`) and the stdlib embedded in the binary
//! (`import "debian" as debian;`). Every source text is kept by its display
//! name, so diagnostics can show any line of any of them.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use rhai::{Engine, EvalAltResult, Module, ModuleResolver, Position, Scope, Shared};

/// The stdlib modules, by import name.
pub const STDLIB: &[(&str, &str)] = &[
    ("debian", include_str!("../../stdlib/debian.rhai")),
    ("disk", include_str!("../../stdlib/disk.rhai")),
    ("fedora", include_str!("../../stdlib/fedora.rhai")),
    ("fleet", include_str!("../../stdlib/fleet.rhai")),
    ("users", include_str!("../../stdlib/users.rhai")),
];

/// Methods every script has without an import (`p.packages(...)`, `p.hostname(...)`, ...).
pub const PRELUDE: &str = include_str!("../../stdlib/prelude.rhai");
pub const PRELUDE_NAME: &str = "stdlib/prelude.rhai";

pub fn stdlib_name(module: &str) -> String {
    format!("stdlib/{module}.rhai")
}

pub fn is_stdlib(source: &str) -> bool {
    source.starts_with("stdlib/")
}

struct SourceFile {
    text: Arc<String>,
    /// The real directory of a user file (relative imports and `read_file`).
    dir: Option<PathBuf>,
    /// The tree it may read in, when not the script's: a file the REPL
    /// loads from elsewhere reads inside its own directory, and so do the
    /// modules it imports.
    root: Option<PathBuf>,
}

/// Every source text seen in one evaluation, by display name.
pub struct Sources {
    /// The limit on operations the evaluation runs with (for diagnostics).
    pub max_operations: u64,
    root: PathBuf,
    /// The source being evaluated: the script, or the REPL's current input.
    main: Mutex<String>,
    files: Mutex<BTreeMap<String, SourceFile>>,
}

impl Sources {
    /// `root` is the script's real (canonical) directory; `main` its display name.
    pub fn new(root: PathBuf, main: String, text: String) -> Sources {
        let sources = Sources {
            max_operations: super::engine::LIMITS.operations,
            root: root.clone(),
            main: Mutex::new(main.clone()),
            files: Mutex::new(BTreeMap::new()),
        };
        sources.add(&main, Arc::new(text), Some(root));
        sources.add(PRELUDE_NAME, Arc::new(PRELUDE.to_string()), None);
        sources
    }

    pub fn add(&self, name: &str, text: Arc<String>, dir: Option<PathBuf>) {
        self.files
            .lock()
            .unwrap()
            .insert(name.to_string(), SourceFile { text, dir, root: None });
    }

    /// Lets `name` (added first) and what it imports read inside `root`.
    pub fn set_root(&self, name: &str, root: PathBuf) {
        if let Some(f) = self.files.lock().unwrap().get_mut(name) {
            f.root = Some(root);
        }
    }

    /// The tree `name` may read in: the script's directory, unless set.
    pub fn root_of(&self, name: &str) -> PathBuf {
        self.path_of(name, |f| f.root.clone())
    }

    /// A path `pick` takes from `name`'s entry, else the script's directory.
    fn path_of(&self, name: &str, pick: impl Fn(&SourceFile) -> Option<PathBuf>) -> PathBuf {
        self.files
            .lock()
            .unwrap()
            .get(name)
            .and_then(pick)
            .unwrap_or_else(|| self.root.clone())
    }

    pub fn main_name(&self) -> String {
        self.main.lock().unwrap().clone()
    }

    /// Makes `name` (added first) the source being evaluated: the REPL
    /// evaluates one input after another, each a source of its own.
    pub fn set_main(&self, name: &str) {
        *self.main.lock().unwrap() = name.to_string();
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every source's name, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.files.lock().unwrap().keys().cloned().collect();
        names.sort();
        names
    }

    pub fn text(&self, name: &str) -> Option<Arc<String>> {
        self.files.lock().unwrap().get(name).map(|f| f.text.clone())
    }

    /// The real directory relative paths in `name` start from (the script's
    /// for the stdlib).
    pub fn dir_of(&self, name: &str) -> PathBuf {
        self.path_of(name, |f| f.dir.clone())
    }
}

/// `a/b/../c` → `a/c`, without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut out: Vec<Component> = Vec::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir if matches!(out.last(), Some(Component::Normal(_))) => {
                out.pop();
            }
            _ => out.push(c),
        }
    }
    out.iter().collect()
}

/// A user module's path (with `.rhai`) and display name, as imported by
/// `import "path"` in `importer`.
fn user_module(importer: &str, path: &str) -> (PathBuf, String) {
    let mut rel = PathBuf::from(path);
    if rel.extension().is_none() {
        rel.set_extension("rhai");
    }
    let display = normalize(&Path::new(importer).parent().unwrap_or(Path::new("")).join(&rel))
        .display()
        .to_string();
    (rel, display)
}

/// The text of the module `import "path"` in `importer` names, if it was
/// loaded (the stdlib's always is).
pub fn module_text(sources: &Sources, importer: &str, path: &str) -> Option<Arc<String>> {
    if !(path.starts_with("./") || path.starts_with("../")) {
        return STDLIB
            .iter()
            .find(|(n, _)| *n == path)
            .map(|(_, text)| Arc::new(text.to_string()));
    }
    sources.text(&user_module(importer, path).1)
}

/// Resolves imports; each module is evaluated once per lowering.
pub struct Resolver {
    sources: Arc<Sources>,
    cache: Mutex<BTreeMap<String, Shared<Module>>>,
    loading: Mutex<Vec<String>>,
}

impl Resolver {
    pub fn new(sources: Arc<Sources>) -> Resolver {
        Resolver {
            sources,
            cache: Mutex::new(BTreeMap::new()),
            loading: Mutex::new(Vec::new()),
        }
    }

    /// The display name and text of the module `path` imported from `importer`.
    fn locate(&self, importer: &str, path: &str, pos: Position) -> Result<(String, Arc<String>), Box<EvalAltResult>> {
        let not_found = || Box::new(EvalAltResult::ErrorModuleNotFound(path.to_string(), pos));
        if !(path.starts_with("./") || path.starts_with("../")) {
            let (name, text) = STDLIB.iter().find(|(n, _)| *n == path).ok_or_else(not_found)?;
            let display = stdlib_name(name);
            return Ok((display, Arc::new(text.to_string())));
        }
        if is_stdlib(importer) {
            return Err(not_found());
        }
        let (rel, display) = user_module(importer, path);
        if let Some(text) = self.sources.text(&display) {
            return Ok((display, text));
        }
        let dir = self.sources.dir_of(importer);
        let root = self.sources.root_of(importer);
        let real = normalize(&dir.join(&rel));
        let canonical = real.canonicalize().map_err(|_| not_found())?;
        if !canonical.starts_with(&root) {
            return Err(Box::new(EvalAltResult::ErrorInModule(
                display,
                EvalAltResult::ErrorRuntime(
                    format!("`{path}` is outside the script's directory: modules must be inside it").into(),
                    pos,
                )
                .into(),
                pos,
            )));
        }
        let text = std::fs::read_to_string(&canonical).map_err(|_| not_found())?;
        let text = Arc::new(text);
        self.sources
            .add(&display, text.clone(), canonical.parent().map(Path::to_path_buf));
        self.sources.set_root(&display, root);
        Ok((display, text))
    }
}

impl ModuleResolver for Resolver {
    fn resolve(
        &self,
        engine: &Engine,
        source: Option<&str>,
        path: &str,
        pos: Position,
    ) -> Result<Shared<Module>, Box<EvalAltResult>> {
        let importer = source.map(str::to_string).unwrap_or_else(|| self.sources.main_name());
        let (name, text) = self.locate(&importer, path, pos)?;
        if let Some(module) = self.cache.lock().unwrap().get(&name) {
            return Ok(module.clone());
        }
        if self.loading.lock().unwrap().contains(&name) {
            return Err(Box::new(EvalAltResult::ErrorInModule(
                name.clone(),
                EvalAltResult::ErrorRuntime(format!("`{name}` imports itself (an import cycle)").into(), pos).into(),
                pos,
            )));
        }
        if self.sources.text(&name).is_none() {
            self.sources.add(&name, text.clone(), None);
        }
        let mut ast = engine
            .compile(text.as_str())
            .map_err(|e| Box::new(EvalAltResult::ErrorInModule(name.clone(), e.into(), pos)))?;
        ast.set_source(name.as_str());
        self.loading.lock().unwrap().push(name.clone());
        let result = Module::eval_ast_as_new(Scope::new(), &ast, engine);
        self.loading.lock().unwrap().retain(|n| n != &name);
        let mut module = result.map_err(|e| Box::new(EvalAltResult::ErrorInModule(name.clone(), e, pos)))?;
        module.set_id(name.as_str());
        let module: Shared<Module> = module.into();
        self.cache.lock().unwrap().insert(name, module.clone());
        Ok(module)
    }
}
