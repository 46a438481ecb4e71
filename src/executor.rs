//! Runs a plan: each stage that is not stored runs in its own sandbox on an
//! overlay of its parent's layers, and its diff is committed to the store.
//!
//! An image whose pipeline has an `assembly_base`, made by an assembler that
//! can build on its own work (see `osbuild_stages::assembly`), is made in two
//! runs: the assembler's work for the prefix tree (a store object of its own,
//! shared by every image on that tree), then the image on that work and the
//! delta of the later layers.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Instant;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use osbuild_stages::assembly::{Assembly, OnPrefix};
use osbuild_stages::{Context, Kind};
use serde_json::{json, Value};

use crate::manifest::Stage;
use crate::monitor::{Event, Monitor};
use crate::oci::{Cache, CacheError, Pulled};
use crate::plan::{Plan, PlannedPipeline, PlannedStage};
use crate::registry::{Implementation, Registry};
use crate::sandbox::{self, BuildRoot, Limits, Payload, Spec, Tree, CACHE, DELTA, LIB, OUTPUT, PREFIX, SOURCES, TREE};
use crate::signals::Interrupts;
use crate::store::{Claim, ObjectKind, ObjectMeta, Staging, Store};

/// How much of a failed stage's log to show.
const TAIL_BYTES: usize = 8 * 1024;

/// The most of a stage's log that is kept in the store; the rest is counted
/// and dropped, so a stage cannot fill the disk by printing.
pub const LOG_MAX: u64 = 64 << 20;

/// The longest line shown as one log event: a longer one is cut into pieces
/// of this size, so the reader's memory stays bounded.
const LINE_MAX: usize = 64 * 1024;

/// Why a build stopped.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{} {} ({}) failed with exit status {}", .0.kind, .0.name, .0.short, .0.code)]
    StageFailed(Box<StageFailure>),
    #[error("interrupted by {0}")]
    Interrupted(String),
    #[error("{0}")]
    Io(String),
}

/// A stage or assembler that exited non-zero.
#[derive(Debug)]
pub struct StageFailure {
    pub kind: &'static str,
    pub name: String,
    pub id: String,
    pub short: String,
    pub code: i32,
    /// The end of its log.
    pub tail: String,
    /// Where the whole log is kept.
    pub log: PathBuf,
}

fn io_err(what: &str) -> impl Fn(std::io::Error) -> BuildError + '_ {
    move |e| BuildError::Io(format!("{what}: {e}"))
}

/// What a finished build did.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    pub built: usize,
    /// Stored already, or pulled from the cache.
    pub cached: usize,
    /// Of those cached, the ones pulled from the cache.
    pub pulled: usize,
    /// The main pipeline's image object, if it has an assembler.
    pub image: Option<String>,
    /// The image is in the output directory already (handed over as it
    /// was made); it is in the store only if it could be cloned.
    pub delivered: bool,
    /// The image came from the cache in this build (so the store did not
    /// keep it before: it is handed over, not copied).
    pub image_pulled: bool,
    /// The main pipeline's tree.
    pub tree: Option<String>,
}

pub struct Executor<'a> {
    pub store: &'a Store,
    pub registry: &'a Registry,
    pub monitor: &'a mut dyn Monitor,
    pub interrupts: &'a Interrupts,
    /// What each stage's sandbox may take.
    pub limits: Limits,
    /// A registry to pull missing objects from and push new ones to.
    pub cache: Option<&'a Cache>,
    /// Where the main pipeline's image goes, if anywhere: a new image is
    /// handed over there rather than copied (see `output`).
    pub hand_over: Option<HandOver<'a>>,
}

/// What a step makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Makes {
    /// A stage's layer.
    Layer,
    /// An assembler's image; `main`: the main pipeline's, which is handed
    /// to the output directory and may be built on a prefix.
    Image { main: bool },
    /// An assembler's work for a prefix tree: stored, never handed over.
    Prefix,
}

impl Makes {
    fn kind(self) -> Kind {
        match self {
            Makes::Layer => Kind::Stage,
            Makes::Image { .. } | Makes::Prefix => Kind::Assembler,
        }
    }
}

/// How an assembler's run uses a prefix (host paths).
enum Using {
    /// None: a stage, or an image from the whole tree.
    Nothing,
    /// It makes the work for its tree (the prefix tree).
    MakingPrefix,
    /// It makes the image on the prefix object's output and the delta file.
    Prefix { output: PathBuf, delta: PathBuf },
}

/// Where a new image goes, and whether the store keeps it too.
#[derive(Debug, Clone, Copy)]
pub struct HandOver<'a> {
    pub to: &'a std::path::Path,
    /// `--keep-image`: stored as well, even where that is a second copy.
    pub keep: bool,
}

impl Executor<'_> {
    /// Builds every pipeline of the plan, in order. `outcome` counts what
    /// was built and cached even when the build fails.
    pub fn build(&mut self, plan: &Plan, outcome: &mut Outcome) -> Result<(), BuildError> {
        for pipeline in &plan.pipelines {
            self.monitor.event(&Event::PipelineBegin {
                role: &pipeline.role,
                name: pipeline.name.as_deref(),
                build_root: pipeline.build_root.as_deref(),
                stages: pipeline.stages.len(),
            });
            if let Some(base) = &pipeline.base {
                if !self.store.contains(base) && !self.pull(base) {
                    return Err(BuildError::Io(format!("base {base} is not in the store")));
                }
            }
            for stage in &pipeline.stages {
                self.step(pipeline, stage, Makes::Layer, outcome)?;
            }
            if let Some(assembler) = &pipeline.assembler {
                let main = pipeline.role == "main";
                self.step(pipeline, assembler, Makes::Image { main }, outcome)?;
            }
            if let (Some(name), Some(tree)) = (&pipeline.name, pipeline.tree()) {
                self.store.set_name(name, tree).map_err(io_err("naming the tree"))?;
            }
            if pipeline.role == "main" {
                outcome.tree = pipeline.tree().map(str::to_string);
                outcome.image = pipeline.assembler.as_ref().map(|a| a.id.clone());
            }
        }
        Ok(())
    }

    fn step(
        &mut self,
        pipeline: &PlannedPipeline,
        planned: &PlannedStage,
        makes: Makes,
        outcome: &mut Outcome,
    ) -> Result<(), BuildError> {
        if let Some(signal) = self.interrupts.pending() {
            return Err(BuildError::Interrupted(signal.as_str().to_string()));
        }
        let kind = makes.kind();
        let name = planned.stage.name.as_str();
        if !self.store.contains(&planned.id) && self.pull(&planned.id) {
            outcome.cached += 1;
            outcome.pulled += 1;
            outcome.image_pulled |= makes == Makes::Image { main: true };
            self.monitor.event(&Event::StageEnd {
                name,
                id: &planned.id,
                kind: kind.noun(),
                status: "pulled",
                duration_ms: 0,
                exit_code: None,
            });
            return Ok(());
        }
        let staging = match self
            .store
            .claim(&planned.id)
            .map_err(io_err("claiming a store object"))?
        {
            Claim::Stored => {
                self.store.touch(&planned.id);
                self.push(&planned.id);
                outcome.cached += 1;
                self.monitor.event(&Event::StageEnd {
                    name,
                    id: &planned.id,
                    kind: kind.noun(),
                    status: "cached",
                    duration_ms: 0,
                    exit_code: None,
                });
                return Ok(());
            }
            Claim::Build { staging, discarded } => {
                if let Some(why) = discarded {
                    let text = format!(
                        "the stored {} {name} was unusable ({why}): building it again",
                        kind.noun()
                    );
                    self.monitor.event(&Event::Warning {
                        id: Some(&planned.id),
                        text: &text,
                    });
                }
                staging
            }
        };
        // Only now that the image must be made: its prefix, if it has one.
        let using = match makes {
            Makes::Image { main: true } => self.prefix_for(pipeline, planned, &staging, outcome)?,
            Makes::Prefix => Using::MakingPrefix,
            Makes::Layer | Makes::Image { main: false } => Using::Nothing,
        };
        self.monitor.event(&Event::StageBegin {
            name,
            id: &planned.id,
            kind: kind.noun(),
        });
        let started = Instant::now();
        let result = self.run(pipeline, planned, kind, &using, &staging);
        let duration_ms = started.elapsed().as_millis() as u64;
        let (status, code) = match &result {
            Ok(()) => ("success", Some(0)),
            Err(BuildError::StageFailed(f)) => ("failure", Some(f.code)),
            Err(BuildError::Interrupted(_)) => ("interrupted", None),
            Err(BuildError::Io(_)) => ("failure", None),
        };
        self.monitor.event(&Event::StageEnd {
            name,
            id: &planned.id,
            kind: kind.noun(),
            status,
            duration_ms,
            exit_code: code,
        });
        result?;
        let object_kind = match kind {
            Kind::Stage => ObjectKind::Tree,
            Kind::Assembler => ObjectKind::Image,
        };
        staging
            .seal(object_kind, pipeline.source_epoch)
            .map_err(io_err("sealing the new object"))?;
        let hand_over = self
            .hand_over
            .filter(|h| makes == Makes::Image { main: true } && !h.keep);
        let layers = match kind {
            Kind::Stage => {
                let mut layers = self
                    .store
                    .layers(planned.parent.as_deref())
                    .map_err(io_err("reading the parent"))?;
                if !staging.upper_is_empty().map_err(io_err("reading the new layer"))? {
                    layers.push(planned.id.clone());
                }
                layers
            }
            Kind::Assembler => Vec::new(),
        };
        let mut meta = ObjectMeta {
            id: planned.id.clone(),
            kind: object_kind,
            stage: name.to_string(),
            parent: planned.parent.clone(),
            build: pipeline.build_root.clone(),
            layers,
            created: crate::store::now_secs(),
            duration_ms,
            content: None,
        };
        if let Some(h) = hand_over {
            let output = staging.output().map_err(io_err("reading the output"))?;
            // Pushed first: a move uses the files up. Only the cache needs
            // the content hash now (a commit makes its own).
            if let Some(cache) = self.cache.filter(|c| c.usable()) {
                meta.content = Some(crate::store::hash_dir(&output).map_err(io_err("hashing the image"))?);
                if let Err(e) = cache.push_unstored(self.store, &meta, &output) {
                    self.cache_warning(cache, &planned.id, "pushing", &e);
                }
            }
            let how = crate::output::hand_over(&output, h.to)
                .map_err(|e| BuildError::Io(format!("cannot write the image to {}: {e}", h.to.display())))?;
            outcome.delivered = true;
            if how == crate::output::Handed::Moved {
                staging.keep_log_as("log").map_err(io_err("keeping the log"))?;
                outcome.built += 1;
                return Ok(());
            }
        }
        staging.commit(&meta).map_err(io_err("committing to the store"))?;
        outcome.built += 1;
        self.push(&planned.id);
        Ok(())
    }

    /// What the main image's run builds on: its prefix object (made first if
    /// it is not stored, by the same steps as any object) and the delta of
    /// the later layers, written beside the image's scratch directory. The
    /// whole tree when the pipeline has no `assembly_base`, its assembler
    /// cannot build on a prefix, or a changed path has a name the delta
    /// cannot hold.
    fn prefix_for(
        &mut self,
        pipeline: &PlannedPipeline,
        image: &PlannedStage,
        staging: &Staging,
        outcome: &mut Outcome,
    ) -> Result<Using, BuildError> {
        let Some(base) = &pipeline.assembly_base else {
            return Ok(Using::Nothing);
        };
        let name = &image.stage.name;
        let Some(Implementation::Builtin(builtin)) =
            self.registry.get(Kind::Assembler, name).map(|d| &d.implementation)
        else {
            return Ok(Using::Nothing);
        };
        let Some(options) = builtin.prefix_options(&Value::Object(image.stage.options.clone())) else {
            return Ok(Using::Nothing);
        };
        let Value::Object(options) = options else {
            return Err(BuildError::Io(format!(
                "assembler {name} gave options for its prefix work that are not an object"
            )));
        };
        let tree = image.parent.as_deref().unwrap_or(base);
        let delta = self
            .store
            .delta(base, tree)
            .map_err(|e| BuildError::Io(format!("reading what changed after the assembly base: {e}")))?;
        let Some(delta) = delta else {
            return Ok(Using::Nothing);
        };
        let id = crate::manifest::prefix_id(
            pipeline.build_root.as_deref(),
            name,
            &Value::Object(options.clone()),
            Some(base),
            pipeline.source_epoch,
        );
        let prefix = PlannedStage {
            stage: Stage {
                name: name.clone(),
                options,
            },
            stored: self.store.contains(&id),
            parent: Some(base.clone()),
            id,
        };
        self.step(pipeline, &prefix, Makes::Prefix, outcome)?;
        let path = staging.delta_path();
        let json = serde_json::to_vec(&delta).expect("a delta serializes");
        std::fs::write(&path, json).map_err(io_err("writing the delta"))?;
        Ok(Using::Prefix {
            output: self.store.output_dir(&prefix.id),
            delta: path,
        })
    }

    /// Pulls `id` from the cache, if there is one and it has it: whether it
    /// is stored now. A cache that fails is warned about, and the object built.
    fn pull(&mut self, id: &str) -> bool {
        let Some(cache) = self.cache.filter(|c| c.usable()) else {
            return false;
        };
        match cache.pull(self.store, id) {
            Ok(Pulled::Stored) => true,
            Ok(Pulled::Absent) => false,
            Err(e) => {
                self.cache_warning(cache, id, "pulling", &e);
                false
            }
        }
    }

    /// Pushes the stored object `id` to the cache, if there is one and it
    /// lacks it; a failed push is warned about and the build goes on.
    fn push(&mut self, id: &str) {
        let Some(cache) = self.cache.filter(|c| c.usable()) else {
            return;
        };
        if let Err(e) = cache.push(self.store, id) {
            self.cache_warning(cache, id, "pushing", &e);
        }
    }

    fn cache_warning(&mut self, cache: &Cache, id: &str, doing: &str, e: &CacheError) {
        let mut text = format!("{doing} {}: {e}", crate::monitor::short(id));
        if cache.usable() {
            text.push_str(if doing == "pulling" {
                " (built here instead)"
            } else {
                " (the build goes on)"
            });
        } else {
            text.push_str(&format!("; {} is not used for the rest of this build", cache.target()));
        }
        self.monitor.event(&Event::Warning {
            id: Some(id),
            text: &text,
        });
    }

    /// Runs one stage or assembler in a sandbox, its log to the staging area.
    fn run(
        &mut self,
        pipeline: &PlannedPipeline,
        planned: &PlannedStage,
        kind: Kind,
        using: &Using,
        staging: &Staging,
    ) -> Result<(), BuildError> {
        let def = self
            .registry
            .get(kind, &planned.stage.name)
            .ok_or_else(|| BuildError::Io(format!("unknown {} {}", kind.noun(), planned.stage.name)))?;
        let store = self.store;
        let build_root = match &pipeline.build_root {
            None => BuildRoot::Host,
            Some(id) => BuildRoot::Layers(store.layer_dirs(Some(id)).map_err(io_err("reading the build root"))?),
        };
        let lower = store
            .layer_dirs(planned.parent.as_deref())
            .map_err(io_err("reading the tree's layers"))?;
        if let (Kind::Stage, Some(top)) = (kind, lower.last()) {
            staging.inherit_root(top).map_err(io_err("preparing the new layer"))?;
        }
        let options = Value::Object(planned.stage.options.clone());
        let (tree, output) = match kind {
            Kind::Stage => (
                Tree::Writable {
                    lower,
                    upper: staging.upper(),
                    work: staging.work(),
                },
                None,
            ),
            Kind::Assembler => (
                Tree::ReadOnly { lower },
                Some(staging.output().map_err(io_err("creating the output directory"))?),
            ),
        };
        let spec = Spec {
            build_root,
            tree,
            output,
            libdir: self.registry.libdir().map(PathBuf::from),
            network: def.needs_network(&options),
            cache: match def.cache() {
                Some(name) => Some(store.cache_dir(name).map_err(io_err("creating the cache"))?),
                None => None,
            },
            // The sources step has fetched (or verified) every file it pins.
            sources: def.is_locked(&options).then(|| store.sources_dir()),
            prefix: match using {
                Using::Prefix { output, .. } => Some(output.clone()),
                _ => None,
            },
            delta: match using {
                Using::Prefix { delta, .. } => Some(delta.clone()),
                _ => None,
            },
            tree_mounts: def.tree_mounts(),
            scratch: staging.scratch(),
            limits: self.limits,
        };
        let payload = match &def.implementation {
            Implementation::Builtin(builtin) => {
                let builtin = *builtin;
                let epoch = pipeline.source_epoch;
                let assembly = match using {
                    Using::Nothing => Assembly::Image,
                    Using::MakingPrefix => Assembly::Prefix,
                    Using::Prefix { .. } => Assembly::OnPrefix(OnPrefix {
                        prefix: PREFIX.into(),
                        delta: DELTA.into(),
                    }),
                };
                Payload::Call(Box::new(move || {
                    // This runs in the sandbox's own process: give the tools the
                    // stage starts the same fixed environment an executable gets.
                    for (key, _) in std::env::vars_os() {
                        std::env::remove_var(key);
                    }
                    for (key, value) in stage_env(epoch) {
                        std::env::set_var(key, value);
                    }
                    let ctx = Context {
                        tree: TREE.into(),
                        output_dir: (kind == Kind::Assembler).then(|| OUTPUT.into()),
                        cache: builtin.cache.map(|_| CACHE.into()),
                        sources: builtin.is_locked(&options).then(|| SOURCES.into()),
                        assembly,
                    };
                    let code = match builtin.run(&ctx, &options) {
                        Ok(()) => 0,
                        Err(e) => {
                            eprintln!("error: {e}");
                            1
                        }
                    };
                    let _ = std::io::stdout().flush();
                    code
                }))
            }
            Implementation::Program { .. } => {
                let mut input = json!({ "tree": TREE, "options": options });
                if kind == Kind::Assembler {
                    input["output_dir"] = json!(OUTPUT);
                }
                Payload::Exec {
                    argv: vec![format!("{LIB}/{}s/{}", kind.noun(), def.name)],
                    stdin: serde_json::to_vec(&input).expect("JSON serializes"),
                    env: stage_env(pipeline.source_epoch),
                }
            }
        };
        let running =
            sandbox::spawn(&spec, payload).map_err(|e| BuildError::Io(format!("starting the sandbox: {e}")))?;
        let mut log = LogFile {
            file: std::fs::File::create(staging.log_path()).map_err(io_err("creating the log"))?,
            written: 0,
            dropped: 0,
            last: b'\n',
        };
        let mut tail = Vec::new();
        let mut interrupted = None;
        let mut pending = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut reader = std::fs::File::from(running.log().try_clone_to_owned().map_err(io_err("log pipe"))?);
        loop {
            let mut fds = [
                PollFd::new(running.log(), PollFlags::POLLIN),
                PollFd::new(self.interrupts.fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(BuildError::Io(format!("waiting for the stage: {e}"))),
            }
            if interrupted.is_none() {
                if let Some(signal) = self.interrupts.pending() {
                    interrupted = Some(signal.as_str().to_string());
                    // Killing PID 1 of the sandbox's pid namespace kills all of it.
                    running.kill();
                }
            }
            let readable = fds[0].revents().is_some_and(|r| !r.is_empty());
            if !readable {
                continue;
            }
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(BuildError::Io(format!("reading the stage's log: {e}"))),
            };
            let chunk = &buf[..n];
            log.write(chunk).map_err(io_err("writing the log"))?;
            tail.extend_from_slice(chunk);
            if tail.len() > 2 * TAIL_BYTES {
                tail.drain(..tail.len() - TAIL_BYTES);
            }
            // Emit whole lines, so a character split across reads stays
            // whole; only the new bytes are searched for the line end, and a
            // line longer than LINE_MAX goes out in pieces.
            let end = chunk.iter().rposition(|b| *b == b'\n').map(|i| pending.len() + i);
            pending.extend_from_slice(chunk);
            let cut = match end {
                Some(end) => Some(end + 1),
                None if pending.len() >= LINE_MAX => Some(utf8_boundary(&pending, pending.len())),
                None => None,
            };
            if let Some(cut) = cut.filter(|cut| *cut > 0) {
                let text = String::from_utf8_lossy(&pending[..cut]);
                self.monitor.event(&Event::Log {
                    id: &planned.id,
                    text: &text,
                });
                for line in text.lines() {
                    if let Some(progress) = line.strip_prefix(osbuild_stages::progress::PREFIX) {
                        self.monitor.event(&Event::Progress {
                            id: &planned.id,
                            text: progress,
                        });
                    }
                }
                pending.drain(..cut);
            }
        }
        if !pending.is_empty() {
            self.monitor.event(&Event::Log {
                id: &planned.id,
                text: &String::from_utf8_lossy(&pending),
            });
        }
        drop(reader);
        let exit = running.wait().map_err(io_err("waiting for the sandbox"))?;
        let code = exit.code;
        if let Some(signal) = interrupted {
            return Err(BuildError::Interrupted(signal));
        }
        let mut notes = Vec::new();
        if log.dropped > 0 {
            notes.push(format!(
                "osbuild: the log was cut at {} ({} more bytes were printed)",
                sandbox::show_size(LOG_MAX),
                log.dropped
            ));
        }
        if let Some(hit) = &exit.limit {
            notes.push(format!("osbuild: {hit}"));
        }
        for note in &notes {
            let line = if log.last == b'\n' {
                format!("{note}\n")
            } else {
                format!("\n{note}\n")
            };
            log.last = b'\n';
            log.file.write_all(line.as_bytes()).map_err(io_err("writing the log"))?;
            tail.extend_from_slice(line.as_bytes());
            self.monitor.event(&Event::Log {
                id: &planned.id,
                text: &line,
            });
        }
        if code != 0 {
            let start = tail.len().saturating_sub(TAIL_BYTES);
            return Err(BuildError::StageFailed(Box::new(StageFailure {
                kind: kind.noun(),
                name: planned.stage.name.clone(),
                id: planned.id.clone(),
                short: crate::monitor::short(&planned.id),
                code,
                tail: String::from_utf8_lossy(&tail[start..]).into_owned(),
                log: staging.keep_log().map_err(io_err("keeping the log"))?,
            })));
        }
        if kind == Kind::Assembler {
            // Stored, a FIFO would hang every later delivery of the image.
            let output = staging.output().map_err(io_err("reading the output"))?;
            crate::output::check_deliverable(&output).map_err(|e| {
                let path = e.to_string().replace(&*output.to_string_lossy(), "output");
                BuildError::Io(format!(
                    "assembler {} made an output that cannot be delivered: {path}",
                    planned.stage.name
                ))
            })?;
        }
        Ok(())
    }
}

/// A stage's log in the store, cut at [`LOG_MAX`].
struct LogFile {
    file: std::fs::File,
    written: u64,
    dropped: u64,
    /// The last byte kept, so a note starts on a line of its own.
    last: u8,
}

impl LogFile {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let room = LOG_MAX.saturating_sub(self.written).min(bytes.len() as u64) as usize;
        self.file.write_all(&bytes[..room])?;
        self.written += room as u64;
        self.dropped += (bytes.len() - room) as u64;
        if room > 0 {
            self.last = bytes[room - 1];
        }
        Ok(())
    }
}

/// The largest cut at or below `at` that does not split a UTF-8 character
/// (at most 3 bytes back; invalid bytes are cut anywhere).
fn utf8_boundary(bytes: &[u8], at: usize) -> usize {
    (at.saturating_sub(3)..=at)
        .rev()
        .find(|&i| i == bytes.len() || i == 0 || (bytes[i] & 0xC0) != 0x80)
        .unwrap_or(at)
}

/// The environment of every stage: fixed, so a build does not depend on who
/// runs it or when. `SOURCE_DATE_EPOCH` is the pipeline's `source_epoch`, 0
/// without one.
pub fn stage_env(source_epoch: Option<u64>) -> Vec<(String, String)> {
    [
        ("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
        ("LANG", "C.UTF-8"),
        ("LC_ALL", "C.UTF-8"),
        ("HOME", "/tmp"),
        ("TMPDIR", "/tmp"),
        ("TZ", "UTC"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .chain([("SOURCE_DATE_EPOCH".to_string(), source_epoch.unwrap_or(0).to_string())])
    .collect()
}
