//! `osbuild lower`, `osbuild run` and `osbuild inspect SCRIPT`.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value;

use crate::cli::{finish, msg, open_store, plan_json, print_plan, Common, Failure, EXIT_INTERRUPTED, EXIT_INVALID};
use crate::manifest::Manifest;
use crate::monitor::{JsonLines, Monitor, Terminal};
use crate::plan::{plan, PlanError};
use crate::registry::Registry;
use crate::run::{summary, Images};
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
    /// `run`: how many images at once (1: one after another, in this process).
    pub jobs: usize,
    /// `run --executor slurm`: the images as Slurm jobs instead.
    pub slurm: Option<crate::slurm::SlurmOptions>,
}

/// The script lowered, its images pinned by the lock beside it when it fits
/// (required with `--locked`).
fn load(args: &ScriptArgs) -> Result<(Arc<Registry>, Lowering), Failure> {
    let registry = Arc::new(Registry::load(args.common.libdir.as_deref()).map_err(Failure::invalid)?);
    let mut lowering = lower_file(&args.script, &args.defines, registry.clone()).map_err(|d| Failure::invalid(*d))?;
    let images = lowering
        .images
        .iter()
        .map(|i| (i.name.clone(), i.manifest.clone()))
        .collect();
    let locked = crate::lock::cli::locked(&args.common, &args.script, images)?;
    for (image, (_, manifest)) in lowering.images.iter_mut().zip(locked) {
        image.manifest = manifest;
    }
    Ok((registry, lowering))
}

/// A pipeline serialized with its keys in canonical (sorted) order, without
/// going through a `serde_json::Value` (a 1000-image fleet is megabytes).
#[derive(serde::Serialize)]
struct Sorted<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    assembler: Option<&'a crate::manifest::Stage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    assembly_base: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    base: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    build: Option<Box<Sorted<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    runner: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source_epoch: Option<u64>,
    /// A locked image's pinned files (top level only).
    #[serde(skip_serializing_if = "Option::is_none")]
    sources: Option<&'a serde_json::Map<String, Value>>,
    // A stage's own keys, `name` and `options`, are in order already, and
    // options are sorted maps.
    stages: &'a [crate::manifest::Stage],
}

impl<'a> Sorted<'a> {
    fn new(p: &'a crate::manifest::Pipeline) -> Self {
        Sorted {
            assembler: p.assembler.as_ref(),
            assembly_base: p.assembly_base,
            base: p.base.as_deref(),
            build: p.build.as_deref().map(|b| Box::new(Sorted::new(b))),
            name: p.name.as_deref(),
            runner: p.runner.as_deref(),
            source_epoch: p.source_epoch,
            sources: None,
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
        .map(|i| Sorted {
            sources: i.manifest.sources.as_ref(),
            ..Sorted::new(&i.manifest.pipeline)
        })
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
        if plans.len() > 1 {
            let named: Vec<(String, &crate::plan::Plan)> =
                lowering.images.iter().map(|i| i.name.clone()).zip(&plans).collect();
            print!("{}", crate::sharing::describe(&crate::sharing::sharing(&named)));
        }
    }
    Ok(())
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
    let run = if let Some(options) = &args.slurm {
        let images: Vec<(String, Manifest)> = lowering
            .images
            .iter()
            .map(|i| (i.name.clone(), i.manifest.clone()))
            .collect();
        crate::slurm::Slurm {
            common: &args.common,
            options,
            keep_going: args.keep_going,
            verbose: args.verbose,
        }
        .run(&images, out)?
    } else if args.jobs > 1 && lowering.images.len() > 1 {
        let images: Vec<(String, Manifest)> = lowering
            .images
            .iter()
            .map(|i| (i.name.clone(), i.manifest.clone()))
            .collect();
        let scratch = std::env::temp_dir().join(format!("osbuild-run-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&scratch);
        let run = crate::parallel::Parallel {
            common: &args.common,
            jobs: args.jobs,
            keep_going: args.keep_going,
            verbose: args.verbose,
        }
        .run(&images, out, &scratch);
        let _ = std::fs::remove_dir_all(&scratch);
        run
    } else {
        let mut monitor: Box<dyn Monitor> = if args.common.json {
            Box::new(JsonLines)
        } else {
            Box::new(Terminal { verbose: args.verbose })
        };
        let images: Vec<(Option<&str>, &Manifest)> = lowering
            .images
            .iter()
            .map(|i| (Some(i.name.as_str()), &i.manifest))
            .collect();
        let cache = args.common.connect_cache()?;
        Images {
            store: &store,
            registry: &registry,
            limits: args.common.limits,
            cache: cache.as_ref(),
            keep_image: args.common.keep_image,
            keep_going: args.keep_going,
        }
        .run(&images, Some(out), monitor.as_mut(), |_| {})
    };
    if let Some((failure, rest)) = run.stopped {
        let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
        summary(&run.done, &rest, args.common.json);
        if !rest.is_empty() && failure.code != EXIT_INTERRUPTED {
            let stopper = run.done.iter().find(|b| b.failed).map_or("", |b| b.name.as_str());
            eprintln!(
                "{stopper} stopped the run: not built: {} (--keep-going builds them anyway)",
                rest.join(", ")
            );
        }
        return Err(failure);
    }
    summary(&run.done, &[], args.common.json);
    let failed: Vec<&str> = run.done.iter().filter(|b| b.failed).map(|b| b.name.as_str()).collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Failure::failed(msg(format!(
            "{} of {} images failed: {}",
            failed.len(),
            run.done.len(),
            failed.join(", ")
        ))))
    }
}
