//! Running plans: one, or a run of images in order, with progress,
//! interrupts and the image delivered to its output directory. `osbuild
//! build`, `osbuild run` and the REPL's `:build` all build through here; the
//! front-ends only make the plans and say what went wrong in their terms.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::{json, Value};

use osbuild_stages::progress::human_bytes;

use crate::cli::{msg, Failure, EXIT_INTERRUPTED};
use crate::executor::{BuildError, Executor, StageFailure};
use crate::manifest::Manifest;
use crate::monitor::{Event, Monitor};
use crate::oci::Cache;
use crate::plan::{plan, Plan};
use crate::registry::Registry;
use crate::sandbox::Limits;
use crate::signals::Interrupts;
use crate::store::Store;

/// How stages are built, beyond the store and registry.
#[derive(Clone, Copy)]
pub struct BuildWith<'a> {
    /// What each stage's sandbox may take.
    pub limits: Limits,
    /// A registry shared with other builds.
    pub cache: Option<&'a Cache>,
    /// `--keep-image`: keep the image in the store as well as in `-o`.
    pub keep_image: bool,
}

/// Builds a plan and hands its image to `output`; shared by every front-end.
pub fn run_plan(
    plan: &Plan,
    store: &Store,
    registry: &Registry,
    monitor: &mut dyn Monitor,
    output: Option<&Path>,
    with: BuildWith<'_>,
) -> Result<(), Failure> {
    let BuildWith {
        limits,
        cache,
        keep_image,
    } = with;
    let started = Instant::now();
    prepare_sources(plan, store, monitor)?;
    let interrupts = Interrupts::block().map_err(|e| Failure::failed(msg(format!("cannot block signals: {e}"))))?;
    let mut executor = Executor {
        store,
        registry,
        monitor: &mut *monitor,
        interrupts: &interrupts,
        limits,
        cache,
        hand_over: output.map(|to| crate::executor::HandOver { to, keep: keep_image }),
    };
    let mut outcome = crate::executor::Outcome::default();
    let result = executor.build(plan, &mut outcome).map(|()| outcome.clone());
    let duration_ms = started.elapsed().as_millis() as u64;
    let (built, cached, pulled) = (outcome.built, outcome.cached, outcome.pulled);
    let end = |monitor: &mut dyn Monitor, status: &str, output: Option<&str>| {
        monitor.event(&Event::BuildEnd {
            status,
            duration_ms,
            built,
            cached,
            pulled,
            output,
        })
    };
    match result {
        Ok(outcome) => {
            let delivered = match (output, &outcome.image) {
                (Some(dir), Some(_)) if outcome.delivered => Some(dir.display().to_string()),
                (Some(dir), Some(image)) if outcome.image_pulled && !keep_image => {
                    store.take_image(image, dir).map_err(|e| {
                        Failure::failed(msg(format!("cannot write the image to {}: {e}", dir.display())))
                    })?;
                    Some(dir.display().to_string())
                }
                (Some(dir), Some(image)) => {
                    crate::output::deliver(&store.output_dir(image), dir).map_err(|e| {
                        Failure::failed(msg(format!("cannot write the image to {}: {e}", dir.display())))
                    })?;
                    Some(dir.display().to_string())
                }
                (None, Some(image)) => Some(store.output_dir(image).display().to_string()),
                _ => None,
            };
            end(monitor, "success", delivered.as_deref());
            Ok(())
        }
        Err(BuildError::Interrupted(signal)) => {
            end(monitor, "interrupted", None);
            Err(Failure {
                code: EXIT_INTERRUPTED,
                report: msg(format!(
                    "interrupted by {signal}: nothing was stored for the unfinished stage"
                )),
            })
        }
        Err(BuildError::StageFailed(failure)) => {
            let StageFailure {
                kind,
                name,
                short,
                code,
                tail,
                log,
                ..
            } = *failure;
            end(monitor, "failure", None);
            let mut text = format!("{kind} {name} ({short}) failed with exit status {code}");
            if !tail.trim().is_empty() {
                text.push_str("\n\nthe end of its log:\n");
                for line in tail.trim_end().lines() {
                    text.push_str(&format!("  | {line}\n"));
                }
            }
            text.push_str(&format!("\nfull log: {}", log.display()));
            Err(Failure::failed(msg(text)))
        }
        Err(e @ BuildError::Io(_)) => {
            end(monitor, "failure", None);
            Err(Failure::failed(msg(e)))
        }
    }
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

/// One image of a run, for the summary.
pub struct Built {
    pub name: String,
    /// The files it delivered, with their sizes.
    pub files: Vec<(PathBuf, u64)>,
    pub built: usize,
    pub cached: usize,
    pub millis: u128,
    pub failed: bool,
}

/// The sources step: every file the plan's locked stages install, fetched
/// into the store (or found, verified, in `--sources`), before any stage
/// runs. A file that cannot be had or does not match its pin fails the
/// build here, with nothing built.
fn prepare_sources(plan: &Plan, store: &Store, monitor: &mut dyn Monitor) -> Result<(), Failure> {
    let stages = crate::sources::needed(plan);
    let dir = store.sources_dir();
    crate::sources::prepare(
        &stages,
        &dir,
        store.owns_sources(),
        store.chain_checked(),
        &mut |text| monitor.event(&Event::Sources { text }),
    )
    .map(|_| ())
    .map_err(|e| Failure::failed(msg(format!("sources: {e}"))))
}

/// What a run of images builds with.
pub struct Images<'a> {
    pub store: &'a Store,
    pub registry: &'a Registry,
    pub limits: Limits,
    pub cache: Option<&'a Cache>,
    /// `--keep-image`: keep each image in the store as well.
    pub keep_image: bool,
    /// Build the other images when one fails (not when interrupted).
    pub keep_going: bool,
}

/// How a run of images went.
#[derive(Default)]
pub struct Run {
    /// Every image that was built or failed, in order.
    pub done: Vec<Built>,
    /// The failure that stopped the run, and the images left unbuilt.
    pub stopped: Option<(Failure, Vec<String>)>,
}

impl Run {
    /// A run of many images at once (children or cluster jobs) as it ended:
    /// interrupted, stopped by a failure, or with images left unbuilt
    /// because what they start from failed (with --keep-going).
    pub fn ended(done: Vec<Built>, rest: Vec<String>, interrupted: Option<String>, stop: Option<Failure>) -> Run {
        let stopped = match (interrupted, stop) {
            (Some(signal), _) => Some((
                Failure {
                    code: EXIT_INTERRUPTED,
                    report: msg(format!("interrupted by {signal}")),
                },
                rest,
            )),
            (None, Some(f)) => Some((f, rest)),
            (None, None) if !rest.is_empty() => {
                Some((Failure::failed(msg("images they start from failed".to_string())), rest))
            }
            (None, None) => None,
        };
        Run { done, stopped }
    }
}

impl Images<'_> {
    /// Builds `images` in order, each into `out/<name>/` (an image without
    /// a name: into `out` itself), or its store directory without `out`.
    /// Each is planned just before it is built, as the images before it may
    /// have stored stages it shares; `before` is told each image's name.
    pub fn run(
        &self,
        images: &[(Option<&str>, &Manifest)],
        out: Option<&Path>,
        monitor: &mut dyn Monitor,
        mut before: impl FnMut(Option<&str>),
    ) -> Run {
        let mut run = Run::default();
        for (index, (name, manifest)) in images.iter().enumerate() {
            let started = Instant::now();
            let dir = match (out, name) {
                (Some(out), Some(name)) => Some(out.join(name)),
                (out, _) => out.map(Path::to_path_buf),
            };
            before(*name);
            let mut counting = Counting {
                inner: &mut *monitor,
                built: 0,
                cached: 0,
            };
            let result = plan(manifest, Some(self.store))
                .map_err(|e| Failure::invalid(msg(e)))
                .and_then(|p| {
                    run_plan(
                        &p,
                        self.store,
                        self.registry,
                        &mut counting,
                        dir.as_deref(),
                        BuildWith {
                            limits: self.limits,
                            cache: self.cache,
                            keep_image: self.keep_image,
                        },
                    )
                });
            run.done.push(Built {
                name: name.unwrap_or("").to_string(),
                files: dir.as_deref().map(files).unwrap_or_default(),
                built: counting.built,
                cached: counting.cached,
                millis: started.elapsed().as_millis(),
                failed: result.is_err(),
            });
            let Err(failure) = result else { continue };
            if self.keep_going && failure.code != EXIT_INTERRUPTED {
                eprintln!("{:?}", failure.report);
                continue;
            }
            let rest = images[index + 1..]
                .iter()
                .map(|(n, _)| n.unwrap_or("").to_string())
                .collect();
            run.stopped = Some((failure, rest));
            break;
        }
        run
    }
}

pub(crate) fn files(dir: &Path) -> Vec<(PathBuf, u64)> {
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
pub fn summary(done: &[Built], skipped: &[&str], as_json: bool) {
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
                    human_bytes(size)
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
