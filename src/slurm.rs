//! `osbuild run SCRIPT --executor slurm --cache oci://... -o DIR`: the
//! fleet's job graph (see `jobs`) as Slurm batch jobs.
//!
//! Each job is a small shell script (`sbatch` copies it to the node) that
//! writes its manifest into a private directory on the node and runs
//! `osbuild build --json` there on a store of its own, against the shared
//! cache; a job that depends on others is submitted with
//! `--dependency=afterok:...` and `--kill-on-invalid-dep=yes`, so a failed
//! prefix cancels what needs it. The jobs' output files (events on stdout,
//! the diagnostic on stderr) go to a directory in this store, which the
//! nodes must see (as a cluster's shared file system gives them); so must
//! this program, at the same path.
//!
//! This process waits: it relays each job's events as they are written
//! (the same lines as a local run), shows a failed job's error output,
//! cancels every job on Ctrl-C (`scancel`), then pulls each image from the
//! cache into DIR and prints the per-image summary.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::cli::{msg, Common, Failure, EXIT_INVALID};
use crate::jobs::{graph, Job};
use crate::manifest::Manifest;
use crate::oci::{Cache, Pulled};
use crate::parallel::{prefixed, relay};
use crate::run::{Built, Run};

/// `--partition` and `--slurm-option`s.
#[derive(Debug, Clone, Default)]
pub struct SlurmOptions {
    pub partition: Option<String>,
    /// Passed to every `sbatch` as they are.
    pub options: Vec<String>,
}

/// How often the jobs' state and output are read.
const POLL: Duration = Duration::from_millis(500);

pub struct Slurm<'a> {
    pub common: &'a Common,
    pub options: &'a SlurmOptions,
    pub keep_going: bool,
    pub verbose: bool,
}

/// One submitted job while it is watched.
struct Submitted {
    id: String,
    out: PathBuf,
    err: PathBuf,
    /// How much of its output has been relayed; the unfinished last line.
    read: u64,
    partial: String,
    state: Option<String>,
    /// The status of the `build-end` it wrote, if it got that far.
    ended: Option<String>,
    /// Polls in a row that Slurm did not list it.
    unlisted: u32,
    built: usize,
    cached: usize,
}

/// Polls (of [`POLL`]) a job may go unlisted by Slurm (purged, or scontrol
/// failing) before it counts as ended, as its own output says: a run never
/// waits for ever on a job Slurm has forgotten.
const UNLISTED_MAX: u32 = 60;

impl Slurm<'_> {
    pub fn run(&self, images: &[(String, Manifest)], out: &Path) -> Result<Run, Failure> {
        let Some(target) = &self.common.cache else {
            return Err(Failure {
                code: EXIT_INVALID,
                report: msg(
                    "--executor slurm needs --cache oci://HOST[:PORT]/REPOSITORY: the jobs run on other machines \
                     and share their work, and give back their images, through it",
                ),
            });
        };
        let cache = self.common.connect_cache()?.expect("a cache is given");
        let started = Instant::now();
        let jobs = graph(images);
        let store = crate::cli::open_store(self.common)?;
        let dir = store
            .root()
            .join("slurm")
            .join(format!("run-{}-{}", std::process::id(), crate::store::now_secs()));
        std::fs::create_dir_all(&dir).map_err(|e| Failure::failed(msg(format!("{}: {e}", dir.display()))))?;
        let exe =
            std::env::current_exe().map_err(|e| Failure::failed(msg(format!("cannot find this program: {e}"))))?;
        let interrupts = crate::signals::Interrupts::block().ok();

        let mut submitted: Vec<Submitted> = Vec::new();
        for (index, job) in jobs.iter().enumerate() {
            let script = dir.join(format!("job-{index}.sh"));
            std::fs::write(&script, self.script(&exe, job, &target.to_string()))
                .map_err(|e| Failure::failed(msg(format!("{}: {e}", script.display()))))?;
            let after: Vec<&str> = job.after.iter().map(|j| submitted[*j].id.as_str()).collect();
            let out_file = dir.join(format!("job-{index}.out"));
            let err_file = dir.join(format!("job-{index}.err"));
            match self.sbatch(job, &script, &out_file, &err_file, &after) {
                Ok(id) => {
                    if !self.common.json {
                        let waits = if after.is_empty() {
                            String::new()
                        } else {
                            format!(", after {}", after.join(", "))
                        };
                        eprintln!("{}: Slurm job {id}{waits}", label(job, images));
                    }
                    submitted.push(Submitted {
                        id,
                        out: out_file,
                        err: err_file,
                        read: 0,
                        partial: String::new(),
                        state: None,
                        ended: None,
                        unlisted: 0,
                        built: 0,
                        cached: 0,
                    });
                }
                Err(e) => {
                    scancel(&submitted.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), false);
                    return Err(Failure::failed(msg(e)));
                }
            }
        }

        let mut interrupted: Option<String> = None;
        let mut stop: Option<Failure> = None;
        let mut shown: Vec<BTreeSet<String>> = images.iter().map(|_| BTreeSet::new()).collect();
        loop {
            for (job, s) in jobs.iter().zip(submitted.iter_mut()) {
                relay_one(self, job, images, s, &mut shown[job.image]);
            }
            let states = job_states(&submitted.iter().map(|s| s.id.as_str()).collect::<Vec<_>>());
            for (job, s) in jobs.iter().zip(submitted.iter_mut()) {
                if s.state.as_deref().is_some_and(finished) {
                    continue;
                }
                let state = match states.get(&s.id) {
                    Some(state) => {
                        s.unlisted = 0;
                        state.clone()
                    }
                    None => {
                        s.unlisted += 1;
                        if s.unlisted < UNLISTED_MAX {
                            continue;
                        }
                        relay_one(self, job, images, s, &mut shown[job.image]);
                        match s.ended.as_deref() {
                            Some("success") => "COMPLETED".to_string(),
                            _ => "FAILED".to_string(),
                        }
                    }
                };
                let state = &state;
                s.state = Some(state.clone());
                if !finished(state) {
                    continue;
                }
                // Whatever it wrote before it ended.
                relay_one(self, job, images, s, &mut shown[job.image]);
                let never_ran = state == "CANCELLED" && s.read == 0;
                if state != "COMPLETED" && !never_ran {
                    let text = std::fs::read_to_string(&s.err).unwrap_or_default();
                    let name = label(job, images);
                    if self.common.json {
                        eprint!("{text}");
                    } else {
                        eprint!("{}", prefixed(&name, &text));
                        eprintln!("{name}: Slurm job {} ended {state}", s.id);
                    }
                    if interrupted.is_none() && !self.keep_going && stop.is_none() {
                        stop = Some(Failure::failed(msg(format!(
                            "{name}: Slurm job {} ended {state} (its output: {})",
                            s.id,
                            s.err.display()
                        ))));
                        // Start nothing new: the jobs still waiting go.
                        let waiting: Vec<&str> = submitted_ids_pending(&states);
                        scancel(&waiting, false);
                    }
                }
            }
            if submitted.iter().all(|s| s.state.as_deref().is_some_and(finished)) {
                break;
            }
            if interrupted.is_none() {
                if let Some(signal) = interrupts.as_ref().and_then(|i| i.pending()) {
                    interrupted = Some(signal.as_str().to_string());
                    eprintln!("interrupted by {}: cancelling the Slurm jobs", signal.as_str());
                    scancel(&submitted.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), true);
                }
            }
            std::thread::sleep(POLL);
        }

        // Each image from the cache into DIR/<name>.
        let mut done = Vec::new();
        let mut rest = Vec::new();
        for (job, s) in jobs.iter().zip(&submitted) {
            let Some(object) = &job.delivers else { continue };
            let name = &images[job.image].0;
            let state = s.state.as_deref().unwrap_or("");
            if state == "CANCELLED" && s.read == 0 {
                rest.push(name.clone());
                continue;
            }
            let mut failed = state != "COMPLETED";
            let dir = out.join(name);
            if !failed {
                if let Err(e) = deliver(&cache, &store, object, &dir, self.common.keep_image) {
                    eprintln!("{name}: {e}");
                    failed = true;
                    stop.get_or_insert_with(|| Failure::failed(msg(format!("{name}: {e}"))));
                }
            }
            // The stages its prefix jobs ran count where they are shown.
            let (built, cached) = jobs
                .iter()
                .zip(&submitted)
                .filter(|(j, _)| j.image == job.image)
                .fold((0, 0), |(b, c), (_, s)| (b + s.built, c + s.cached));
            done.push(Built {
                name: name.clone(),
                files: crate::run::files(&dir),
                built,
                cached,
                millis: started.elapsed().as_millis(),
                failed,
            });
        }
        let run = Run::ended(done, rest, interrupted, stop);
        if run.stopped.is_none() {
            // Nothing to look into: the job files go.
            let _ = std::fs::remove_dir_all(&dir);
        }
        Ok(run)
    }

    /// The job's batch script: its manifest inline, built on a store of its
    /// own in the node's temporary directory, removed when it ends.
    fn script(&self, exe: &Path, job: &Job, cache: &str) -> String {
        // One line: the canonical JSON has no insignificant whitespace.
        let json = job.manifest.canonical_json();
        let mut cmd = vec![
            quote(&exe.to_string_lossy()),
            "--store".into(),
            "\"$work/store\"".into(),
        ];
        cmd.extend(["--cache".into(), quote(cache)]);
        if self.common.cache.as_ref().is_some_and(|c| c.insecure) {
            cmd.push("--insecure".into());
        }
        if let Some(libdir) = &self.common.libdir {
            let libdir = std::fs::canonicalize(libdir).unwrap_or_else(|_| libdir.clone());
            cmd.extend(["--libdir".into(), quote(&libdir.to_string_lossy())]);
        }
        if let Some(sources) = &self.common.sources {
            let sources = std::fs::canonicalize(sources).unwrap_or_else(|_| sources.clone());
            cmd.extend(["--sources".into(), quote(&sources.to_string_lossy())]);
        }
        for limit in &self.common.limit_args {
            cmd.extend(["--limit".into(), quote(limit)]);
        }
        cmd.extend(["build".into(), "--json".into(), "\"$work/manifest.json\"".into()]);
        // A delimiter the one-line JSON cannot be.
        let end = format!(
            "OSBUILD_MANIFEST_{}",
            &osbuild_stages::lock::sha256(json.as_bytes())[..16]
        );
        format!(
            "#!/bin/sh\n\
             # osbuild: job {name} of a fleet; built on this node, shared through {cache}.\n\
             set -u\n\
             work=$(mktemp -d \"${{TMPDIR:-/tmp}}/osbuild-job-XXXXXXXX\") || exit 1\n\
             trap 'rm -rf \"$work\"' EXIT\n\
             trap 'exit 143' TERM INT\n\
             cat > \"$work/manifest.json\" <<'{end}'\n\
             {json}\n\
             {end}\n\
             {cmd}\n",
            name = job.name,
            cmd = cmd.join(" "),
        )
    }

    fn sbatch(&self, job: &Job, script: &Path, out: &Path, err: &Path, after: &[&str]) -> Result<String, String> {
        let mut cmd = Command::new("sbatch");
        cmd.arg("--parsable")
            .arg(format!("--job-name=osbuild-{}", job.name))
            .arg(format!("--output={}", out.display()))
            .arg(format!("--error={}", err.display()))
            .arg("--kill-on-invalid-dep=yes");
        if !after.is_empty() {
            cmd.arg(format!("--dependency=afterok:{}", after.join(":")));
        }
        if let Some(p) = &self.options.partition {
            cmd.arg(format!("--partition={p}"));
        }
        cmd.args(&self.options.options).arg(script);
        let output = cmd
            .output()
            .map_err(|e| format!("cannot run sbatch (is Slurm's client installed?): {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "sbatch refused the job {}: {}",
                job.name,
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        let text = String::from_utf8_lossy(&output.stdout);
        // `--parsable`: "ID" or "ID;CLUSTER".
        let id = text.trim().split(';').next().unwrap_or("").to_string();
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("sbatch gave no job id for {}: {text:?}", job.name));
        }
        Ok(id)
    }
}

/// Relays the whole lines a job has added to its output since last time,
/// so that they read as a local run's: a prefix job's stages are its first
/// image's (without the prefix build's own beginning and end), and that
/// image's job does not show them again.
fn relay_one(
    slurm: &Slurm<'_>,
    job: &Job,
    images: &[(String, Manifest)],
    s: &mut Submitted,
    shown: &mut BTreeSet<String>,
) {
    let Ok(mut file) = std::fs::File::open(&s.out) else {
        return;
    };
    if file.seek(SeekFrom::Start(s.read)).is_err() {
        return;
    }
    let mut bytes = Vec::new();
    if file.read_to_end(&mut bytes).is_err() {
        return;
    }
    s.read += bytes.len() as u64;
    s.partial.push_str(&String::from_utf8_lossy(&bytes));
    let Some(end) = s.partial.rfind('\n') else { return };
    let lines: String = s.partial.drain(..=end).collect();
    let name = &images[job.image].0;
    let prefix = job.delivers.is_none();
    for line in lines.lines() {
        let Ok(event) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let kind = event["type"].as_str().unwrap_or("");
        if kind == "build-end" {
            s.ended = event["status"].as_str().map(str::to_string);
        }
        if prefix && matches!(kind, "pipeline-begin" | "build-end") {
            continue;
        }
        if let Some(id) = event["id"].as_str().filter(|_| kind.starts_with("stage-")) {
            if prefix {
                shown.insert(id.to_string());
            } else if shown.contains(id) {
                continue;
            }
        }
        relay(
            slurm.common.json,
            slurm.verbose,
            name,
            line,
            &mut s.built,
            &mut s.cached,
        );
    }
}

/// How a job is shown: its image, and which prefix for a prefix job.
fn label(job: &Job, images: &[(String, Manifest)]) -> String {
    match &job.delivers {
        Some(_) => job.name.clone(),
        None => format!("{} ({})", images[job.image].0, job.name),
    }
}

/// Pulls the image object from the cache and hands its files to `dir`
/// (kept in the store as well only with `keep`).
fn deliver(cache: &Cache, store: &crate::store::Store, object: &str, dir: &Path, keep: bool) -> Result<(), String> {
    match cache.pull(store, object) {
        Ok(Pulled::Stored) => {}
        Ok(Pulled::Absent) => return Err(format!("its image {object} is not in the cache")),
        Err(e) => return Err(format!("pulling its image: {e}")),
    }
    match store.meta(object) {
        Ok(meta) if meta.kind == crate::store::ObjectKind::Image && keep => {
            crate::output::deliver(&store.output_dir(object), dir)
                .map(drop)
                .map_err(|e| format!("delivering it: {e}"))
        }
        Ok(meta) if meta.kind == crate::store::ObjectKind::Image => {
            store.take_image(object, dir).map_err(|e| format!("delivering it: {e}"))
        }
        // A tree without an assembler: nothing to deliver but the tree, stored.
        Ok(_) => Ok(()),
        Err(e) => Err(format!("reading its image: {e}")),
    }
}

/// Whether a Slurm job state is one a job ends in.
fn finished(state: &str) -> bool {
    !matches!(
        state,
        "PENDING"
            | "RUNNING"
            | "CONFIGURING"
            | "COMPLETING"
            | "REQUEUED"
            | "RESIZING"
            | "SUSPENDED"
            | "SIGNALING"
            | "STAGE_OUT"
            | "REQUEUE_HOLD"
            | "REQUEUE_FED"
            | "RESV_DEL_HOLD"
            | "STOPPED"
    )
}

/// The state of each of `ids` that Slurm still knows, from `scontrol`.
fn job_states(ids: &[&str]) -> BTreeMap<String, String> {
    let mut states = BTreeMap::new();
    let Ok(output) = Command::new("scontrol").args(["show", "job", "-o"]).output() else {
        return states;
    };
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let field = |key: &str| {
            line.split_whitespace()
                .find_map(|f| f.strip_prefix(key))
                .map(str::to_string)
        };
        if let (Some(id), Some(state)) = (field("JobId="), field("JobState=")) {
            if ids.contains(&id.as_str()) {
                states.insert(id, state);
            }
        }
    }
    states
}

fn submitted_ids_pending(states: &BTreeMap<String, String>) -> Vec<&str> {
    states
        .iter()
        .filter(|(_, state)| state.as_str() == "PENDING")
        .map(|(id, _)| id.as_str())
        .collect()
}

/// Cancels jobs; `wait`: until Slurm says each has ended (30 s at most).
fn scancel(ids: &[&str], wait: bool) {
    if ids.is_empty() {
        return;
    }
    let _ = Command::new("scancel").args(ids).status();
    if !wait {
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let states = job_states(ids);
        if states.values().all(|s| finished(s)) {
            return;
        }
        std::thread::sleep(POLL);
    }
}

/// `text` as one word for sh.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_for_sh() {
        assert_eq!(quote("/usr/bin/osbuild"), "'/usr/bin/osbuild'");
        assert_eq!(quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn job_states_that_end() {
        for s in [
            "COMPLETED",
            "FAILED",
            "CANCELLED",
            "TIMEOUT",
            "OUT_OF_MEMORY",
            "NODE_FAIL",
        ] {
            assert!(finished(s), "{s}");
        }
        for s in ["PENDING", "RUNNING", "COMPLETING"] {
            assert!(!finished(s), "{s}");
        }
    }
}
