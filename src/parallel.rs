//! Building a run's images in parallel (`osbuild run -j N`): each image is a
//! child `osbuild build --json` of its lowered manifest, at most N at once,
//! all on the one store.
//!
//! The store is what keeps the work from being done twice: a stage's id is
//! locked while it is built, so when two images share a prefix the first
//! child builds it and the others wait for it and find it stored. An image
//! that starts from another's tree (`base`) starts once that image is done.
//! Children are processes, not threads: a stage runs in a fork of its
//! builder, which must not inherit another thread's locks.
//!
//! The children's events are relayed: as lines prefixed by the image's name,
//! or with `--json` as the same event objects with an `image` field. The
//! sources step runs once, here, before any child starts.

use std::collections::BTreeSet;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cli::{msg, Common, Failure, EXIT_INTERRUPTED};
use crate::manifest::Manifest;
use crate::monitor::{human, short};
use crate::run::{Built, Run};

/// What a parallel run builds with.
pub struct Parallel<'a> {
    pub common: &'a Common,
    /// At most this many images at once.
    pub jobs: usize,
    pub keep_going: bool,
    pub verbose: bool,
}

/// One image's child, while it runs.
struct Running {
    index: usize,
    child: Child,
    started: Instant,
    built: usize,
    cached: usize,
    stderr: PathBuf,
    /// Reads its event lines into the channel until it closes its stdout.
    reader: Option<std::thread::JoinHandle<()>>,
}

/// An event line from the child of image `.0`.
type Message = (usize, String);

impl Parallel<'_> {
    /// Builds `images` into `out/<name>/`; `scratch` holds their manifests
    /// and the children's error output.
    pub fn run(&self, images: &[(String, Manifest)], out: &Path, scratch: &Path) -> Run {
        match self.run_in(images, out, scratch) {
            Ok(run) => run,
            Err(failure) => Run {
                done: Vec::new(),
                stopped: Some((failure, images.iter().map(|(n, _)| n.clone()).collect())),
            },
        }
    }

    fn run_in(&self, images: &[(String, Manifest)], out: &Path, scratch: &Path) -> Result<Run, Failure> {
        let io = |path: &Path, e: std::io::Error| Failure::failed(msg(format!("{}: {e}", path.display())));
        std::fs::create_dir_all(scratch).map_err(|e| io(scratch, e))?;
        self.sources(images)?;
        let mut manifests = Vec::new();
        for (name, manifest) in images {
            let path = scratch.join(format!("{name}.json"));
            std::fs::write(&path, manifest.pretty_json()).map_err(|e| io(&path, e))?;
            manifests.push(path);
        }
        let after = dependencies(images);
        let exe =
            std::env::current_exe().map_err(|e| Failure::failed(msg(format!("cannot find this program: {e}"))))?;
        // Ctrl-C reaches the children as well (the terminal signals the
        // whole group); a signal for this process alone is passed on.
        let interrupts = crate::signals::Interrupts::block().ok();
        let (tx, rx) = mpsc::channel();
        let mut running: Vec<Running> = Vec::new();
        let mut done: Vec<Option<Built>> = images.iter().map(|_| None).collect();
        let mut started: BTreeSet<usize> = BTreeSet::new();
        let mut stop: Option<Failure> = None;
        let mut interrupted = None;
        loop {
            // Start what may start: its images before it done and built.
            while stop.is_none() && interrupted.is_none() && running.len() < self.jobs {
                let next = (0..images.len()).find(|i| {
                    !started.contains(i) && after[*i].iter().all(|d| done[*d].as_ref().is_some_and(|b| !b.failed))
                });
                let Some(i) = next else { break };
                started.insert(i);
                running.push(self.spawn(&exe, i, &images[i].0, &manifests[i], out, scratch, &tx)?);
            }
            if running.is_empty() {
                break;
            }
            if let Ok((i, line)) = rx.recv_timeout(Duration::from_millis(100)) {
                self.relay_to(images, &mut running, i, &line);
            }
            if let Some(signal) = interrupts.as_ref().and_then(|i| i.pending()) {
                for r in &running {
                    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(r.child.id() as i32), signal);
                }
                interrupted.get_or_insert(signal.as_str().to_string());
            }
            let mut k = 0;
            while k < running.len() {
                let status = running[k]
                    .child
                    .try_wait()
                    .map_err(|e| Failure::failed(msg(e.to_string())))?;
                let Some(status) = status else {
                    k += 1;
                    continue;
                };
                // Every line it wrote is relayed before it counts as done.
                if let Some(reader) = running[k].reader.take() {
                    let _ = reader.join();
                }
                while let Ok((i, line)) = rx.try_recv() {
                    self.relay_to(images, &mut running, i, &line);
                }
                let r = running.remove(k);
                let name = &images[r.index].0;
                let dir = out.join(name);
                let failed = !status.success();
                if failed {
                    // Its diagnostic, as a build of one image prints it (by image in text).
                    let text = std::fs::read_to_string(&r.stderr).unwrap_or_default();
                    if self.common.json {
                        eprint!("{text}");
                    } else {
                        eprint!("{}", prefixed(name, &text));
                    }
                    if status.code() == Some(EXIT_INTERRUPTED) {
                        interrupted.get_or_insert("SIGINT".to_string());
                    } else if !self.keep_going && stop.is_none() {
                        stop = Some(Failure::failed(msg(format!("{name}: its build failed ({status})"))));
                    }
                }
                done[r.index] = Some(Built {
                    name: name.clone(),
                    files: crate::run::files(&dir),
                    built: r.built,
                    cached: r.cached,
                    millis: r.started.elapsed().as_millis(),
                    failed,
                });
            }
        }
        let rest: Vec<String> = (0..images.len())
            .filter(|i| done[*i].is_none())
            .map(|i| images[i].0.clone())
            .collect();
        let done: Vec<Built> = done.into_iter().flatten().collect();
        Ok(Run::ended(done, rest, interrupted, stop))
    }

    /// Relays an event line of image `i`'s child, counted in its `Running`.
    fn relay_to(&self, images: &[(String, Manifest)], running: &mut [Running], i: usize, line: &str) {
        if let Some(r) = running.iter_mut().find(|r| r.index == i) {
            relay(
                self.common.json,
                self.verbose,
                &images[i].0,
                line,
                &mut r.built,
                &mut r.cached,
            );
        }
    }

    /// The sources step for every image at once (children then find the
    /// files in the store, or read `--sources`).
    fn sources(&self, images: &[(String, Manifest)]) -> Result<(), Failure> {
        let json = self.common.json;
        images_sources(self.common, images, &mut |text| {
            if json {
                println!("{}", serde_json::json!({"type": "sources", "text": text}));
            } else {
                eprintln!("{text}");
            }
        })
        .map(|_| ())
    }

    #[allow(clippy::too_many_arguments)]
    fn spawn(
        &self,
        exe: &Path,
        index: usize,
        name: &str,
        manifest: &Path,
        out: &Path,
        scratch: &Path,
        tx: &mpsc::Sender<Message>,
    ) -> Result<Running, Failure> {
        let stderr = scratch.join(format!("{name}.stderr"));
        let err_file =
            std::fs::File::create(&stderr).map_err(|e| Failure::failed(msg(format!("{}: {e}", stderr.display()))))?;
        let mut cmd = child_build(
            exe,
            self.common,
            &self.common.store,
            self.common.sources.as_deref(),
            &out.join(name),
            &["--json"],
        );
        cmd.arg(manifest)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(err_file);
        let mut child = cmd
            .spawn()
            .map_err(|e| Failure::failed(msg(format!("cannot start the build of {name}: {e}"))))?;
        let stdout = child.stdout.take().expect("piped");
        let tx = tx.clone();
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send((index, line)).is_err() {
                    return;
                }
            }
        });
        if !self.common.json {
            eprintln!("{name}: started");
        }
        Ok(Running {
            index,
            child,
            started: Instant::now(),
            built: 0,
            cached: 0,
            stderr,
            reader: Some(reader),
        })
    }
}

/// One event line of image `name`'s build (a child, or a cluster job):
/// counted into `built` and `cached`, and shown (`json`: as it came, with
/// an `image` field; else as a line prefixed with the image's name, logs
/// only when `verbose`).
pub(crate) fn relay(json: bool, verbose: bool, name: &str, line: &str, built: &mut usize, cached: &mut usize) {
    let Ok(mut event) = serde_json::from_str::<Value>(line) else {
        return;
    };
    let text = |key: &str| event.get(key).and_then(Value::as_str).unwrap_or("").to_string();
    let kind = text("type");
    if kind == "stage-end" {
        match text("status").as_str() {
            "success" => *built += 1,
            "cached" | "pulled" => *cached += 1,
            _ => {}
        }
    }
    if json {
        event["image"] = Value::String(name.to_string());
        println!("{event}");
        return;
    }
    let arrow = if text("kind") == "assembler" { "=>" } else { "->" };
    let shown = match kind.as_str() {
        "stage-begin" => format!("{arrow} {} {} ...", text("name"), short(&text("id"))),
        "stage-end" => {
            let ms = event.get("duration_ms").and_then(Value::as_u64).unwrap_or(0);
            let how = match text("status").as_str() {
                "cached" => "cached".to_string(),
                "pulled" => "pulled from the cache".to_string(),
                "success" => format!("ran in {}", human(ms)),
                other => format!("{other} after {}", human(ms)),
            };
            format!("{arrow} {} {} {how}", text("name"), short(&text("id")))
        }
        "progress" => format!("   {}", text("text")),
        "warning" => format!("warning: {}", text("text")),
        "sources" => text("text"),
        "log" if verbose => {
            eprint!("{}", prefixed(name, &text("text")));
            return;
        }
        _ => return,
    };
    eprintln!("{name}: {shown}");
}

/// The sources step for `images` (fetched into the store, or verified in
/// `--sources`); the directory their builds read, none when nothing is locked.
pub(crate) fn images_sources(
    common: &Common,
    images: &[(String, Manifest)],
    progress: &mut dyn FnMut(&str),
) -> Result<Option<PathBuf>, Failure> {
    let stages = crate::sources::stages_of(images);
    if crate::sources::files_of(stages.iter().copied()).is_empty() {
        return Ok(None);
    }
    let (dir, fetching) = match &common.sources {
        Some(dir) => (dir.clone(), false),
        None => (crate::cli::open_store(common)?.sources_dir(), true),
    };
    crate::sources::prepare(&stages, &dir, fetching, false, progress)
        .map_err(|e| Failure::failed(msg(format!("sources: {e}"))))?;
    Ok(Some(dir))
}

/// `osbuild build` (then `extra`) of a manifest the caller adds, into `out`
/// on `store`, as a child: with the libdir, `sources` and limits of this
/// run (paths made absolute, as the child may run elsewhere), dying with
/// this process. The caller has run the sources step ([`images_sources`])
/// for the child's image: the child checks each file again, not the
/// signature chain.
pub(crate) fn child_build(
    exe: &Path,
    common: &Common,
    store: &Path,
    sources: Option<&Path>,
    out: &Path,
    extra: &[&str],
) -> Command {
    let absolute = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let mut cmd = Command::new(exe);
    cmd.arg("build")
        .args(extra)
        .arg("--store")
        .arg(store)
        .arg("-o")
        .arg(out);
    if let Some(libdir) = &common.libdir {
        cmd.arg("--libdir").arg(absolute(libdir));
    }
    if let Some(dir) = sources {
        cmd.arg("--sources").arg(absolute(dir));
    }
    cmd.arg("--sources-checked");
    for limit in &common.limit_args {
        cmd.arg("--limit").arg(limit);
    }
    if common.keep_image {
        cmd.arg("--keep-image");
    }
    if let Some(cache) = &common.cache {
        cmd.arg("--cache").arg(cache.to_string());
        if cache.insecure {
            cmd.arg("--insecure");
        }
    }
    die_with_parent(&mut cmd);
    cmd
}

/// A child build that outlives this process (killed, say) is sent SIGTERM,
/// on which it stops its stage and cleans up, as on Ctrl-C.
fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches only the child.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Each line of `text` after `name: `.
pub(crate) fn prefixed(name: &str, text: &str) -> String {
    text.lines().map(|l| format!("{name}: {l}\n")).collect()
}

/// For each image, the images it must wait for: those whose tree (by id or
/// by name) its pipelines start from.
fn dependencies(images: &[(String, Manifest)]) -> Vec<Vec<usize>> {
    let trees: Vec<(Option<String>, Option<String>)> = images
        .iter()
        .map(|(_, m)| (crate::plan::tree_id(&m.pipeline), m.pipeline.name.clone()))
        .collect();
    images
        .iter()
        .enumerate()
        .map(|(i, (_, m))| {
            let mut bases = Vec::new();
            let mut p = Some(&m.pipeline);
            while let Some(pipeline) = p {
                bases.extend(pipeline.base.clone());
                p = pipeline.build.as_deref();
            }
            (0..i)
                .filter(|j| {
                    let (id, name) = &trees[*j];
                    bases.iter().any(|b| Some(b) == id.as_ref() || Some(b) == name.as_ref())
                })
                .collect()
        })
        .collect()
}

/// The default `-j`: this machine's cores.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
