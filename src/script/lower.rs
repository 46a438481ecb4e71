//! Lowering: evaluate a script and collect the images it emits as manifests.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rhai::{EvalAltResult, Scope};

use crate::manifest::Manifest;
use crate::registry::Registry;

use super::api::{Needle, Param, Site, State};
use super::errors::{from_eval, ScriptDiagnostic};
use super::modules::Sources;

/// One emitted image.
#[derive(Debug, Clone)]
pub struct Image {
    pub name: String,
    pub manifest: Manifest,
}

/// What a script lowered to, in the order it emitted the images.
#[derive(Debug, Clone)]
pub struct Lowering {
    pub images: Vec<Image>,
    pub bases: Bases,
}

/// Where the script named each `base`: whether the store has it is only known
/// when planning, and a diagnostic then points at the call.
#[derive(Clone)]
pub struct Bases {
    sites: BTreeMap<String, Site>,
    sources: Arc<Sources>,
}

impl std::fmt::Debug for Bases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.sites.iter().map(|(k, v)| (k, &v.source)))
            .finish()
    }
}

impl Bases {
    pub fn new(sites: BTreeMap<String, Site>, sources: Arc<Sources>) -> Bases {
        Bases { sites, sources }
    }

    /// A diagnostic at the call that named `base`, which the store lacks.
    pub fn unknown(&self, base: &str, message: String) -> Option<ScriptDiagnostic> {
        let site = self.sites.get(base)?;
        let quoted = serde_json::to_string(base).ok()?;
        let mut d = ScriptDiagnostic::at(
            &self.sources,
            &site.source,
            site.pos,
            Some(&Needle::Literal(quoted)),
            message,
        );
        d.code = "osbuild::script::base".into();
        d.label = Some("not in the store".into());
        d.help = Some("`osbuild store ls` lists stored trees and their names; build the base first".into());
        Some(d)
    }
}

pub type Failure = Box<ScriptDiagnostic>;

/// Lowers the script at `path` with `-D` parameters (`key`, `value` as given).
pub fn lower_file(path: &Path, params: &[(String, String)], registry: Arc<Registry>) -> Result<Lowering, Failure> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Box::new(ScriptDiagnostic::plain(
            "read",
            format!("cannot read {}: {e}", path.display()),
            None,
        ))
    })?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let root = dir.canonicalize().map_err(|e| {
        Box::new(ScriptDiagnostic::plain(
            "read",
            format!("cannot open {}: {e}", dir.display()),
            None,
        ))
    })?;
    lower_source(&path.display().to_string(), text, root, params, registry)
}

/// Lowers `text`, named `name` in diagnostics; `root` is the real directory
/// it reads files and modules from.
pub fn lower_source(
    name: &str,
    text: String,
    root: PathBuf,
    params: &[(String, String)],
    registry: Arc<Registry>,
) -> Result<Lowering, Failure> {
    lower_source_with_limit(name, text, root, params, registry, super::engine::LIMITS.operations)
}

/// [`lower_source`] with another limit on operations (tests use a small one).
pub fn lower_source_with_limit(
    name: &str,
    text: String,
    root: PathBuf,
    params: &[(String, String)],
    registry: Arc<Registry>,
    max_operations: u64,
) -> Result<Lowering, Failure> {
    let mut given = BTreeMap::new();
    for (key, value) in params {
        if given.insert(key.clone(), Param::parse(value)).is_some() {
            return Err(Box::new(ScriptDiagnostic::plain(
                "param",
                format!("-D {key} is given twice"),
                Some("give each parameter once".into()),
            )));
        }
    }
    let name = name.to_string();
    // Deep call chains need more stack than the main thread may have.
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("rhai".into())
            .stack_size(super::engine::STACK_SIZE)
            .spawn_scoped(scope, move || {
                evaluate(name, text, root, given, registry, max_operations)
            })
            .expect("a thread can be spawned")
            .join()
            .unwrap_or_else(|_| {
                Err(Box::new(ScriptDiagnostic::plain(
                    "internal",
                    "the script engine panicked",
                    None,
                )))
            })
    })
}

fn evaluate(
    name: String,
    text: String,
    root: PathBuf,
    params: BTreeMap<String, Param>,
    registry: Arc<Registry>,
    max_operations: u64,
) -> Result<Lowering, Failure> {
    let mut sources = Sources::new(root, name.clone(), text.clone());
    sources.max_operations = max_operations;
    let sources = Arc::new(sources);
    let state = Arc::new(State {
        registry,
        params,
        reads: Mutex::new(BTreeMap::new()),
        bases: Mutex::new(BTreeMap::new()),
        images: Mutex::new(Vec::new()),
        sources: sources.clone(),
    });
    let fail = |e: Box<EvalAltResult>| Box::new(from_eval(*e, &sources));
    let engine = super::engine::build(state.clone(), sources.clone()).map_err(fail)?;
    let mut ast = engine.compile(&text).map_err(|e| fail(e.into()))?;
    ast.set_source(name.as_str());
    engine.run_ast_with_scope(&mut Scope::new(), &ast).map_err(fail)?;

    unknown_params(&state, &sources)?;
    let images = std::mem::take(&mut *state.images.lock().unwrap());
    let base_sites = std::mem::take(&mut *state.bases.lock().unwrap());
    if images.is_empty() {
        return Err(Box::new(ScriptDiagnostic::plain(
            "no-image",
            format!("{name} emitted no image"),
            Some("call emit(p) for every pipeline that is an image".into()),
        )));
    }
    let mut images: Vec<Image> = images
        .into_iter()
        .map(|e| Image {
            name: e.name,
            manifest: Manifest {
                pipeline: e.pipeline,
                sources: None,
            },
        })
        .collect();
    set_assembly_bases(&mut images.iter_mut().map(|i| &mut i.manifest).collect::<Vec<_>>());
    Ok(Lowering {
        images,
        bases: Bases::new(base_sites, sources),
    })
}

/// Each image with an assembler (and no `base`) builds its image on the
/// longest prefix of its stages another of `images` shares (the same ids,
/// so the same build root), if any: its `assembly_base`. The assembler's
/// work for that prefix is then done once for all of them.
pub fn set_assembly_bases(images: &mut [&mut Manifest]) {
    let chains: Vec<_> = images.iter().map(|m| crate::plan::main_chain(m)).collect();
    let shared = crate::sharing::shared_prefixes(&chains);
    for (m, k) in images.iter_mut().zip(shared) {
        let p = &mut m.pipeline;
        if p.assembler.is_some() && p.base.is_none() && k >= 1 {
            p.assembly_base = Some(k);
        }
    }
}

/// A `-D` key the script never read is a mistake (a typo must not pass silently).
fn unknown_params(state: &State, sources: &Sources) -> Result<(), Failure> {
    let reads = state.reads.lock().unwrap();
    let Some(key) = state.params.keys().find(|k| !reads.contains_key(*k)) else {
        return Ok(());
    };
    let message = format!("unknown parameter -D {key}: the script never reads it");
    let suggestion = crate::diagnostic::suggest(key, reads.keys().map(String::as_str));
    let diag = match suggestion {
        Some(s) => {
            let site = &reads[s];
            let mut d = ScriptDiagnostic::at(sources, &site.source, site.pos, None, message);
            d.code = "osbuild::script::param".into();
            d.label = Some(format!("the script reads `{s}` here"));
            d.help = Some(format!("did you mean -D {s}=...?"));
            d
        }
        None if reads.is_empty() => ScriptDiagnostic::plain(
            "param",
            message,
            Some("this script reads no parameters: param(key, default) reads one".into()),
        ),
        None => ScriptDiagnostic::plain(
            "param",
            message,
            Some(format!(
                "the script reads: {}",
                reads.keys().cloned().collect::<Vec<_>>().join(", ")
            )),
        ),
    };
    Err(Box::new(diag))
}

/// The parameter keys and values of `-D key=value` arguments.
pub fn parse_define(arg: &str) -> Result<(String, String), String> {
    match arg.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("`{arg}` is not key=value")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{Pipeline, Stage};
    use serde_json::json;

    fn image(stages: &[u32], assembler: bool) -> Manifest {
        let stage = |n: &u32| Stage {
            name: "org.osbuild.noop".into(),
            options: json!({ "n": n }).as_object().cloned().unwrap(),
        };
        Manifest {
            pipeline: Pipeline {
                stages: stages.iter().map(stage).collect(),
                assembler: assembler.then(|| stage(&0)),
                ..Default::default()
            },
            sources: None,
        }
    }

    fn bases(mut images: Vec<Manifest>) -> Vec<Option<usize>> {
        set_assembly_bases(&mut images.iter_mut().collect::<Vec<_>>());
        images.iter().map(|m| m.pipeline.assembly_base).collect()
    }

    #[test]
    fn each_image_builds_on_the_longest_prefix_another_shares() {
        let images = vec![
            image(&[1, 2, 3], true),
            image(&[1, 2, 4], true),
            image(&[1, 5], true),
            image(&[6], true),
            // No assembler: shares, but has nothing to build on it.
            image(&[1, 2, 3, 7], false),
        ];
        assert_eq!(bases(images), [Some(3), Some(2), Some(1), None, None]);
        assert_eq!(bases(vec![image(&[1, 2], true)]), [None], "one image alone");
        // The whole tree shared: the image adds nothing after its base.
        assert_eq!(bases(vec![image(&[1], true), image(&[1], true)]), [Some(1), Some(1)]);
        // Another build root: other ids, nothing shared.
        let mut other = image(&[1, 2], true);
        other.pipeline.build = Some(Box::new(image(&[9], false).pipeline));
        assert_eq!(bases(vec![image(&[1, 2], true), other]), [None, None]);
        // An image on a base is left as it is.
        let mut based = image(&[1, 2], true);
        based.pipeline.base = Some("b".repeat(64));
        assert_eq!(bases(vec![image(&[1, 2], true), based]), [None, None]);
    }
}
