//! `osbuild lower`, `osbuild run` and `osbuild inspect SCRIPT`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};

use crate::cli::{
    bytes_human, finish, msg, open_store, plan_json, print_plan, run_plan, Common, Failure, EXIT_INVALID,
};
use crate::monitor::{Event, JsonLines, Monitor, Terminal};
use crate::plan::{plan, PlanError};
use crate::registry::Registry;
use crate::store::Store;

use super::lower::{lower_file, Image, Lowering};

/// What `lower`, `run` and `inspect` take.
pub struct ScriptArgs {
    pub common: Common,
    pub script: PathBuf,
    /// `-D key=value`, in order.
    pub defines: Vec<(String, String)>,
    pub output: Option<PathBuf>,
    pub verbose: bool,
    /// `run`: build the other images when one fails.
    pub keep_going: bool,
}

fn load(args: &ScriptArgs) -> Result<(Arc<Registry>, Lowering), Failure> {
    let registry = Arc::new(Registry::load(args.common.libdir.as_deref()).map_err(Failure::invalid)?);
    let lowering = lower_file(&args.script, &args.defines, registry.clone()).map_err(|d| Failure::invalid(*d))?;
    Ok((registry, lowering))
}

/// A pipeline serialized with its keys in canonical (sorted) order, without
/// going through a `serde_json::Value` (a 1000-image fleet is megabytes).
#[derive(serde::Serialize)]
struct Sorted<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    assembler: Option<&'a crate::manifest::Stage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    base: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    build: Option<Box<Sorted<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    runner: Option<&'a str>,
    // A stage's own keys, `name` and `options`, are in order already, and
    // options are sorted maps.
    stages: &'a [crate::manifest::Stage],
}

impl<'a> Sorted<'a> {
    fn new(p: &'a crate::manifest::Pipeline) -> Self {
        Sorted {
            assembler: p.assembler.as_ref(),
            base: p.base.as_deref(),
            build: p.build.as_deref().map(|b| Box::new(Sorted::new(b))),
            name: p.name.as_deref(),
            runner: p.runner.as_deref(),
            stages: &p.stages,
        }
    }
}

/// The manifests as printed by `lower`: one manifest object for one image,
/// an array of them for several. Keys are sorted (canonical order), indented.
pub fn write_manifests(lowering: &Lowering, out: impl std::io::Write) -> serde_json::Result<()> {
    let sorted: Vec<Sorted> = lowering
        .images
        .iter()
        .map(|i| Sorted::new(&i.manifest.pipeline))
        .collect();
    match sorted.as_slice() {
        [one] => serde_json::to_writer_pretty(out, one),
        many => serde_json::to_writer_pretty(out, many),
    }
}

/// [`write_manifests`] as a string.
pub fn manifests_json(lowering: &Lowering) -> String {
    let mut out = Vec::new();
    write_manifests(lowering, &mut out).expect("JSON serializes");
    String::from_utf8(out).expect("JSON is UTF-8")
}

pub fn lower(args: ScriptArgs) -> i32 {
    finish(lower_inner(&args))
}

fn lower_inner(args: &ScriptArgs) -> Result<(), Failure> {
    let (_, lowering) = load(args)?;
    let Some(dir) = &args.output else {
        use std::io::Write;
        let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
        write_manifests(&lowering, &mut out)
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(out))
            .and_then(|()| out.flush())
            .map_err(|e| Failure::failed(msg(format!("cannot write the manifests: {e}"))))?;
        // Freeing megabytes of manifests just before exiting is wasted time.
        std::mem::forget(lowering);
        return Ok(());
    };
    std::fs::create_dir_all(dir).map_err(|e| Failure::failed(msg(format!("cannot create {}: {e}", dir.display()))))?;
    for image in &lowering.images {
        let path = dir.join(format!("{}.json", image.name));
        std::fs::write(&path, image.manifest.canonical_json())
            .map_err(|e| Failure::failed(msg(format!("cannot write {}: {e}", path.display()))))?;
        println!("{}", path.display());
    }
    Ok(())
}

/// A plan error of one image; an unknown base points at the call that named it.
fn plan_error(lowering: &Lowering, image: &Image, e: PlanError) -> Failure {
    let message = format!("{}: {e}", image.name);
    match &e {
        PlanError::UnknownBase(base) => match lowering.bases.unknown(base, message.clone()) {
            Some(d) => Failure::invalid(d),
            None => Failure::invalid(msg(message)),
        },
        _ => Failure::invalid(msg(message)),
    }
}

pub fn inspect(args: ScriptArgs) -> i32 {
    finish(inspect_inner(&args))
}

fn inspect_inner(args: &ScriptArgs) -> Result<(), Failure> {
    let (_, lowering) = load(args)?;
    let store = Store::open_existing(&args.common.store)
        .map_err(|e| Failure::failed(msg(format!("cannot open the store: {e}"))))?;
    let mut plans = Vec::new();
    for image in &lowering.images {
        plans.push(plan(&image.manifest, store.as_ref()).map_err(|e| plan_error(&lowering, image, e))?);
    }
    if args.common.json {
        let docs: Vec<Value> = plans.iter().map(plan_json).collect();
        let doc = match <[Value; 1]>::try_from(docs) {
            Ok([one]) => one,
            Err(many) => Value::Array(many),
        };
        println!("{}", serde_json::to_string_pretty(&doc).expect("JSON serializes"));
    } else {
        for p in &plans {
            print_plan(p, false);
        }
    }
    Ok(())
}

/// Passes events on and remembers the build's totals.
struct Counting<'a> {
    inner: &'a mut dyn Monitor,
    built: usize,
    cached: usize,
}

impl Monitor for Counting<'_> {
    fn event(&mut self, event: &Event<'_>) {
        if let Event::BuildEnd { built, cached, .. } = event {
            self.built = *built;
            self.cached = *cached;
        }
        self.inner.event(event);
    }
}

/// One built image, for the summary.
struct Built {
    name: String,
    files: Vec<(PathBuf, u64)>,
    built: usize,
    cached: usize,
    millis: u128,
    failed: bool,
}

pub fn run(args: ScriptArgs) -> i32 {
    finish(run_inner(&args))
}

fn run_inner(args: &ScriptArgs) -> Result<(), Failure> {
    let Some(out) = &args.output else {
        return Err(Failure {
            code: EXIT_INVALID,
            report: msg("osbuild run needs -o DIR: every image goes to DIR/<image name>/"),
        });
    };
    let (registry, lowering) = load(args)?;
    crate::output::check_output_dir(out).map_err(|e| Failure::invalid(msg(e)))?;
    let store = open_store(&args.common)?;
    // Plan everything first: a bad base fails before anything is built.
    let mut plans = Vec::new();
    for image in &lowering.images {
        plans.push(plan(&image.manifest, Some(&store)).map_err(|e| plan_error(&lowering, image, e))?);
    }
    let mut inner: Box<dyn Monitor> = if args.common.json {
        Box::new(JsonLines)
    } else {
        Box::new(Terminal { verbose: args.verbose })
    };
    let mut done = Vec::new();
    let mut failed = Vec::new();
    for (index, image) in lowering.images.iter().enumerate() {
        let started = Instant::now();
        // Planned again now: earlier images may have stored shared stages.
        let p = plan(&image.manifest, Some(&store)).map_err(|e| Failure::invalid(msg(e)))?;
        let dir = out.join(&image.name);
        let mut counting = Counting {
            inner: inner.as_mut(),
            built: 0,
            cached: 0,
        };
        let result = run_plan(&p, &store, &registry, &mut counting, Some(&dir), args.common.limits);
        done.push(Built {
            name: image.name.clone(),
            files: files(&dir),
            built: counting.built,
            cached: counting.cached,
            millis: started.elapsed().as_millis(),
            failed: result.is_err(),
        });
        let Err(failure) = result else { continue };
        let interrupted = failure.code == crate::cli::EXIT_INTERRUPTED;
        if args.keep_going && !interrupted {
            eprintln!("{:?}", failure.report);
            failed.push(image.name.clone());
            continue;
        }
        let rest: Vec<&str> = lowering.images[index + 1..].iter().map(|i| i.name.as_str()).collect();
        summary(&done, &rest, args.common.json);
        if !rest.is_empty() && !interrupted {
            eprintln!(
                "{} stopped the run: not built: {} (--keep-going builds them anyway)",
                image.name,
                rest.join(", ")
            );
        }
        return Err(failure);
    }
    summary(&done, &[], args.common.json);
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Failure::failed(msg(format!(
            "{} of {} images failed: {}",
            failed.len(),
            done.len(),
            failed.join(", ")
        ))))
    }
}

fn files(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut files: Vec<(PathBuf, u64)> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| Some((e.path(), e.metadata().ok()?.len())))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// The per-image table: what each image gave, or that it failed, and the
/// images a failure left unbuilt (`skipped`).
fn summary(done: &[Built], skipped: &[&str], as_json: bool) {
    if as_json {
        let mut images: Vec<Value> = done
            .iter()
            .map(|b| {
                json!({
                    "image": b.name,
                    "status": if b.failed { "failure" } else { "success" },
                    "files": b.files.iter().map(|(p, s)| json!({"path": p.display().to_string(), "size": s})).collect::<Vec<_>>(),
                    "built": b.built,
                    "cached": b.cached,
                    "duration_ms": b.millis as u64,
                })
            })
            .collect();
        images.extend(skipped.iter().map(|name| json!({"image": name, "status": "skipped"})));
        println!("{}", json!({"type": "summary", "images": images}));
        return;
    }
    let mut rows: Vec<[String; 5]> = done
        .iter()
        .map(|b| {
            let output = match b.files.as_slice() {
                _ if b.failed => "(failed)".to_string(),
                [] => "(no image)".to_string(),
                [(p, _)] => p.display().to_string(),
                [(p, _), rest @ ..] => format!("{} (+{} more)", p.display(), rest.len()),
            };
            let size: u64 = b.files.iter().map(|(_, s)| s).sum();
            [
                b.name.clone(),
                output,
                if b.files.is_empty() || b.failed {
                    "-".into()
                } else {
                    bytes_human(size)
                },
                format!("{} built, {} cached", b.built, b.cached),
                crate::monitor::human(b.millis as u64),
            ]
        })
        .collect();
    rows.extend(skipped.iter().map(|name| {
        [
            name.to_string(),
            "(not built)".into(),
            "-".into(),
            "-".into(),
            "-".into(),
        ]
    }));
    let header = ["image", "output", "size", "stages", "time"].map(String::from);
    let mut widths = [0usize; 5];
    for row in std::iter::once(&header).chain(&rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row.iter().zip(widths).map(|(cell, w)| format!("{cell:w$}")).collect();
        println!("{}", line.join("  ").trim_end());
    }
    let built: usize = done.iter().map(|b| b.built).sum();
    let cached: usize = done.iter().map(|b| b.cached).sum();
    let failed = done.iter().filter(|b| b.failed).count();
    let mut tally = format!("{} images", done.len() - failed);
    if failed > 0 {
        tally.push_str(&format!(", {failed} failed"));
    }
    if !skipped.is_empty() {
        tally.push_str(&format!(", {} not built", skipped.len()));
    }
    println!("{tally}: {built} stages built, {cached} from the store");
}
