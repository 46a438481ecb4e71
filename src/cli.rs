//! The commands behind `osbuild`'s subcommands, returning the process's exit
//! status: 0 built, 1 a stage (or the machine) failed, 2 invalid input,
//! 130 interrupted.

use std::path::{Path, PathBuf};

use miette::Report;
use serde_json::json;

use osbuild_stages::progress::human_bytes;

use crate::check::check;
use crate::diagnostic::Source;
use crate::manifest::{parse_manifest, Located};
use crate::monitor::{self, JsonLines, Monitor, Terminal};
use crate::plan::{plan, Plan, PlanError};
use crate::registry::Registry;
use crate::store::{GcOptions, Store};

pub const EXIT_FAILED: i32 = 1;
pub const EXIT_INVALID: i32 = 2;
pub const EXIT_INTERRUPTED: i32 = 130;

/// Options every command shares.
pub struct Common {
    pub store: PathBuf,
    pub libdir: Option<PathBuf>,
    pub json: bool,
    /// What each stage's sandbox may take.
    pub limits: crate::sandbox::Limits,
    /// The `--limit` arguments as given, for child builds.
    pub limit_args: Vec<String>,
    /// `--locked`: build only with a lock that fits (exit status 2 otherwise).
    pub locked: bool,
    /// `--sources DIR`: read locked stages' files from DIR, fetching nothing.
    pub sources: Option<PathBuf>,
    /// `--cache oci://...`: a registry shared with other builds.
    pub cache: Option<crate::oci::Target>,
    /// `--insecure`: plain HTTP to registries off this machine too.
    pub insecure: bool,
    /// `--keep-image`: keep each image in the store as well as in `-o`.
    pub keep_image: bool,
    /// `--sources-checked` (given to child builds): the parent checked the
    /// sources' signature chain.
    pub sources_checked: bool,
}

impl Common {
    /// A client for `--cache`, if given (nothing is sent yet).
    pub fn connect_cache(&self) -> Result<Option<crate::oci::Cache>, Failure> {
        self.cache
            .as_ref()
            .map(crate::oci::Cache::connect)
            .transpose()
            .map_err(|e| Failure::failed(msg(format!("--cache: {e}"))))
    }
}

pub struct BuildArgs {
    pub common: Common,
    pub output: Option<PathBuf>,
    pub verbose: bool,
    pub manifest: Option<PathBuf>,
}

pub enum StoreCommand {
    Ls,
    Du,
    Gc { all: bool, keep_days: u64 },
    Verify { repair: bool },
}

/// A failure with its exit status.
pub struct Failure {
    pub code: i32,
    pub report: Report,
}

impl Failure {
    pub fn invalid(report: impl Into<Report>) -> Self {
        Failure {
            code: EXIT_INVALID,
            report: report.into(),
        }
    }

    pub fn failed(report: impl Into<Report>) -> Self {
        Failure {
            code: EXIT_FAILED,
            report: report.into(),
        }
    }
}

/// Prints a failure's diagnostic and gives the exit status.
pub(crate) fn finish(result: Result<(), Failure>) -> i32 {
    match result {
        Ok(()) => 0,
        Err(f) => {
            eprintln!("{:?}", f.report);
            f.code
        }
    }
}

/// A plain diagnostic from a message.
pub(crate) fn msg(text: impl std::fmt::Display) -> Report {
    miette::miette!("{text}")
}

/// Reads, parses and checks a manifest: everything that can be wrong with the
/// input is reported here, before anything runs.
pub fn load(path: &Path, registry: &Registry) -> Result<Located, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::invalid(msg(format!("cannot read {}: {e}", path.display()))))?;
    let located = parse_manifest(Source::new(path.display().to_string(), text)).map_err(Failure::invalid)?;
    check(&located, registry).map_err(Failure::invalid)?;
    Ok(located)
}

/// Opens the store for building (with `--sources`, reading sources from there).
pub(crate) fn open_store(common: &Common) -> Result<Store, Failure> {
    let mut store = Store::open(&common.store)
        .map_err(|e| Failure::failed(msg(format!("cannot open the store {}: {e}", common.store.display()))))?;
    if let Some(dir) = &common.sources {
        store.read_sources_from(dir);
    }
    if common.sources_checked {
        store.assume_chain_checked();
    }
    Ok(store)
}

fn registry(common: &Common) -> Result<Registry, Failure> {
    Registry::load(common.libdir.as_deref()).map_err(Failure::invalid)
}

/// A plan error about `base` points at the manifest's `base`.
fn plan_error(located: &Located, e: PlanError) -> Failure {
    match (&e, &located.spans.base) {
        (PlanError::UnknownBase(_), Some(span)) => Failure::invalid(
            located
                .source
                .source
                .error(span.clone(), e.to_string())
                .label("not in the store")
                .help("`osbuild store ls` lists stored trees and their names"),
        ),
        _ => Failure::invalid(msg(e)),
    }
}

pub fn build(args: BuildArgs) -> i32 {
    finish(build_inner(args))
}

fn build_inner(args: BuildArgs) -> Result<(), Failure> {
    let Some(manifest_path) = &args.manifest else {
        return Err(Failure::invalid(msg(
            "no manifest given: osbuild [--store DIR] -o DIR PIPELINE.json (see --help)",
        )));
    };
    let registry = registry(&args.common)?;
    let mut located = load(manifest_path, &registry)?;
    let name = crate::lock::cli::image_name(&located.manifest, manifest_path);
    let images = vec![(name, located.manifest.clone())];
    if let Some((_, locked)) = crate::lock::cli::locked(&args.common, manifest_path, images)?.pop() {
        located.manifest = locked;
    }
    if let Some(out) = &args.output {
        crate::output::check_output_dir(out).map_err(|e| Failure::invalid(msg(e)))?;
    }
    let store = open_store(&args.common)?;
    let plan = plan(&located.manifest, Some(&store)).map_err(|e| plan_error(&located, e))?;
    let mut monitor: Box<dyn Monitor> = if args.common.json {
        Box::new(JsonLines)
    } else {
        Box::new(Terminal { verbose: args.verbose })
    };
    let cache = args.common.connect_cache()?;
    crate::run::run_plan(
        &plan,
        &store,
        &registry,
        monitor.as_mut(),
        args.output.as_deref(),
        crate::run::BuildWith {
            limits: args.common.limits,
            cache: cache.as_ref(),
            keep_image: args.common.keep_image,
        },
    )
}

pub fn export(common: Common, to: &str, tag: &str, tree: &str) -> i32 {
    finish(export_inner(common, to, tag, tree))
}

fn export_inner(common: Common, to: &str, tag: &str, tree: &str) -> Result<(), Failure> {
    use crate::oci::export::{export, Destination};
    let destination =
        Destination::parse(to, common.insecure).map_err(|e| Failure::invalid(msg(format!("--oci: {e}"))))?;
    if !tag_is_valid(tag) {
        return Err(Failure::invalid(msg(format!(
            "--tag {tag:?}: a tag is 1 to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-'"
        ))));
    }
    let store = open_store(&common)?;
    let id = store.resolve(tree).ok_or_else(|| {
        Failure::invalid(msg(format!(
            "no tree {tree:?} in the store {}: give a name a pipeline set, or a tree's id (osbuild store ls)",
            common.store.display()
        )))
    })?;
    let meta = store
        .meta(&id)
        .map_err(|e| Failure::failed(msg(format!("reading {id}: {e}"))))?;
    if meta.kind != crate::store::ObjectKind::Tree {
        return Err(Failure::invalid(msg(format!(
            "{tree} is an image, not a tree: export a tree"
        ))));
    }
    let done = export(&store, &id, &destination, tag).map_err(|e| match e {
        crate::oci::export::ExportError::NotEmpty(_) => Failure::invalid(msg(format!("--oci: {e}"))),
        e => Failure::failed(msg(format!("export: {e}"))),
    })?;
    if common.json {
        println!(
            "{}",
            json!({"tree": id, "digest": done.digest, "layers": done.layers, "bytes": done.bytes, "tag": tag})
        );
    } else {
        println!(
            "exported {tree} ({} layers, {}) to {to} as {tag}: {}",
            done.layers,
            human_bytes(done.bytes),
            done.digest
        );
    }
    Ok(())
}

/// The OCI distribution spec's tag grammar.
fn tag_is_valid(tag: &str) -> bool {
    let mut chars = tag.chars();
    tag.len() <= 128
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

pub fn inspect(common: Common, manifest: &Path) -> i32 {
    finish(inspect_inner(common, manifest))
}

fn inspect_inner(common: Common, manifest: &Path) -> Result<(), Failure> {
    let registry = registry(&common)?;
    let located = load(manifest, &registry)?;
    let store =
        Store::open_existing(&common.store).map_err(|e| Failure::failed(msg(format!("cannot open the store: {e}"))))?;
    let plan = plan(&located.manifest, store.as_ref()).map_err(|e| plan_error(&located, e))?;
    print_plan(&plan, common.json);
    Ok(())
}

/// Prints a plan as text or JSON (shared with the script front-end).
pub fn print_plan(plan: &Plan, as_json: bool) {
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&plan_json(plan)).expect("JSON serializes")
        );
        return;
    }
    for p in &plan.pipelines {
        println!(
            "{} pipeline{} (build root: {}{})",
            p.role,
            p.name.as_ref().map(|n| format!(" {n:?}")).unwrap_or_default(),
            p.build_root.as_deref().unwrap_or("host"),
            p.base.as_ref().map(|b| format!(", base: {b}")).unwrap_or_default()
        );
        let width = p
            .stages
            .iter()
            .chain(&p.assembler)
            .map(|s| s.stage.name.len())
            .max()
            .unwrap_or(0);
        for s in &p.stages {
            println!(
                "  {:width$}  {}  {}",
                s.stage.name,
                s.id,
                if s.stored { "stored" } else { "-" }
            );
        }
        if let Some(a) = &p.assembler {
            println!(
                "  {:width$}  {}  {}  (assembler{})",
                a.stage.name,
                a.id,
                if a.stored { "stored" } else { "-" },
                p.assembly_base
                    .as_ref()
                    .map(|b| format!(", on the tree {}", crate::monitor::short(b)))
                    .unwrap_or_default()
            );
        }
    }
}

pub fn plan_json(plan: &Plan) -> serde_json::Value {
    let stage = |s: &crate::plan::PlannedStage| json!({"name": s.stage.name, "id": s.id, "parent": s.parent, "stored": s.stored, "options": s.stage.options});
    json!({
        "pipelines": plan.pipelines.iter().map(|p| {
            let mut doc = json!({
                "role": p.role,
                "name": p.name,
                "build_root": p.build_root,
                "base": p.base,
                "tree": p.tree(),
                "stages": p.stages.iter().map(stage).collect::<Vec<_>>(),
                "assembler": p.assembler.as_ref().map(stage),
            });
            if let Some(base) = &p.assembly_base {
                doc["assembly_base"] = json!(base);
            }
            doc
        }).collect::<Vec<_>>()
    })
}

pub fn stages(common: Common, name: Option<&str>) -> i32 {
    finish(stages_inner(common, name))
}

fn stages_inner(common: Common, name: Option<&str>) -> Result<(), Failure> {
    use osbuild_stages::Kind;
    let registry = registry(&common)?;
    let Some(name) = name else {
        for kind in [Kind::Stage, Kind::Assembler] {
            let defs: Vec<_> = registry.all(kind).collect();
            if common.json {
                continue;
            }
            println!("{}s:", kind.noun());
            let width = defs.iter().map(|d| d.name.len()).max().unwrap_or(0);
            for def in defs {
                let origin = if def.is_builtin() { "" } else { " [libdir]" };
                println!("  {:width$}  {}{origin}", def.name, def.summary);
            }
        }
        if common.json {
            let list = |kind| {
                registry
                    .all(kind)
                    .map(|d| json!({"name": d.name, "summary": d.summary, "builtin": d.is_builtin(), "network": d.network}))
                    .collect::<Vec<_>>()
            };
            println!(
                "{}",
                json!({"stages": list(Kind::Stage), "assemblers": list(Kind::Assembler)})
            );
        }
        return Ok(());
    };
    let defs: Vec<_> = [Kind::Stage, Kind::Assembler]
        .into_iter()
        .filter_map(|k| registry.get(k, name))
        .collect();
    if defs.is_empty() {
        let unknown = crate::check::unknown_name(&registry, Kind::Stage, name);
        return Err(Failure::invalid(msg(format!(
            "{}\nhelp: {}",
            unknown.message, unknown.help
        ))));
    }
    for def in defs {
        if common.json {
            println!(
                "{}",
                json!({"name": def.name, "kind": def.kind.noun(), "summary": def.summary, "network": def.network, "schema": def.schema()})
            );
        } else {
            print!("{}", crate::docs::render(def));
        }
    }
    Ok(())
}

pub fn store(common: Common, command: StoreCommand) -> i32 {
    finish(store_inner(common, command))
}

fn store_inner(common: Common, command: StoreCommand) -> Result<(), Failure> {
    let io = |e: std::io::Error| Failure::failed(msg(format!("store {}: {e}", common.store.display())));
    match command {
        StoreCommand::Ls => {
            let Some(store) = Store::open_existing(&common.store).map_err(io)? else {
                return Err(Failure::invalid(msg(format!(
                    "there is no store at {}",
                    common.store.display()
                ))));
            };
            let names = store.names().map_err(io)?;
            let objects = store.objects().map_err(io)?;
            if common.json {
                println!(
                    "{}",
                    json!({"objects": objects, "names": names.iter().map(|(n, id)| json!({"name": n, "id": id})).collect::<Vec<_>>()})
                );
                return Ok(());
            }
            for o in &objects {
                let named: Vec<&str> = names
                    .iter()
                    .filter(|(_, id)| *id == o.id)
                    .map(|(n, _)| n.as_str())
                    .collect();
                println!(
                    "{}  {:5}  {:24}  {}{}",
                    o.id,
                    if o.kind == crate::store::ObjectKind::Tree {
                        "tree"
                    } else {
                        "image"
                    },
                    o.stage,
                    monitor::human(o.duration_ms),
                    if named.is_empty() {
                        String::new()
                    } else {
                        format!("  name: {}", named.join(", "))
                    }
                );
            }
            println!("{} objects, {} names", objects.len(), names.len());
        }
        StoreCommand::Du => {
            let Some(store) = Store::open_existing(&common.store).map_err(io)? else {
                return Err(Failure::invalid(msg(format!(
                    "there is no store at {}",
                    common.store.display()
                ))));
            };
            let usage = store.usage().map_err(io)?;
            if common.json {
                println!(
                    "{}",
                    json!({"total_bytes": usage.total_bytes, "objects": usage.objects, "per_object": usage.per_object,
                        "cache_bytes": usage.cache_bytes})
                );
            } else {
                let mut largest: Vec<_> = usage.per_object.iter().collect();
                largest.sort_by_key(|(_, b)| std::cmp::Reverse(**b));
                for (id, bytes) in largest.iter().take(10) {
                    println!("{:>10}  {id}", human_bytes(**bytes));
                }
                println!("{:>10}  package caches", human_bytes(usage.cache_bytes));
                println!(
                    "{:>10}  total in {} objects ({})",
                    human_bytes(usage.total_bytes),
                    usage.objects,
                    store.root().display()
                );
            }
        }
        StoreCommand::Gc { all, keep_days } => {
            let store = Store::open_exclusive(&common.store).map_err(io)?;
            let report = store.gc(&GcOptions { all, keep_days }).map_err(io)?;
            if common.json {
                println!(
                    "{}",
                    json!({"removed": report.removed, "kept": report.kept, "freed_bytes": report.freed_bytes,
                        "cache_files_removed": report.cache_files_removed,
                        "cache_freed_bytes": report.cache_freed_bytes})
                );
            } else {
                println!(
                    "removed {} objects ({}), kept {}; removed {} cache files ({})",
                    report.removed,
                    human_bytes(report.freed_bytes),
                    report.kept,
                    report.cache_files_removed,
                    human_bytes(report.cache_freed_bytes)
                );
            }
        }
        StoreCommand::Verify { repair } => return verify(&common, repair),
    }
    Ok(())
}

/// `store verify [--repair]`: bad objects are a failure unless repaired.
fn verify(common: &Common, repair: bool) -> Result<(), Failure> {
    let io = |e: std::io::Error| Failure::failed(msg(format!("store {}: {e}", common.store.display())));
    let store = if repair {
        Store::open_exclusive(&common.store).map_err(io)?
    } else {
        match Store::open_existing(&common.store).map_err(io)? {
            Some(store) => store,
            None => {
                return Err(Failure::invalid(msg(format!(
                    "there is no store at {}",
                    common.store.display()
                ))))
            }
        }
    };
    let report = store.verify(repair).map_err(io)?;
    if common.json {
        let problems: Vec<_> = report
            .problems
            .iter()
            .map(|(id, p)| json!({"id": id, "problem": p.to_string()}))
            .collect();
        println!(
            "{}",
            json!({"verified": report.verified, "unhashed": report.unhashed, "problems": problems,
                "repaired": report.repaired})
        );
    } else {
        for (id, problem) in &report.problems {
            println!("{id}  {problem}{}", if report.repaired { " (removed)" } else { "" });
        }
        println!(
            "{} objects verified, {} bad{}{}",
            report.verified,
            report.problems.len(),
            if report.unhashed.is_empty() {
                String::new()
            } else {
                format!(
                    ", {} stored without a content hash (not checked)",
                    report.unhashed.len()
                )
            },
            if report.repaired && !report.problems.is_empty() {
                "; the bad ones were removed and will be built again"
            } else {
                ""
            }
        );
    }
    if report.problems.is_empty() || report.repaired {
        Ok(())
    } else {
        Err(Failure::failed(msg(format!(
            "{} stored objects are not what was committed: `osbuild store verify --repair` removes them",
            report.problems.len()
        ))))
    }
}
