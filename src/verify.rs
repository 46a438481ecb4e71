//! `osbuild verify`: builds every image of a script or manifest twice, in two
//! fresh stores under different conditions, and says whether the images are
//! the same bytes; if not, which stage first made a different tree, and how.
//!
//! Each build is this program's own `build` command in a child process, so
//! the conditions are a real caller's: the second runs later, from another
//! directory with a longer path, with another time zone, locale, umask and
//! `SOURCE_DATE_EPOCH` in its environment. The images are built from their
//! lowered manifests (with the lock's pins), each store fresh; the sources
//! are fetched once (or read from `--sources`) and shared, read-only.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::cli::{finish, msg, Common, Failure};
use crate::manifest::Manifest;
use crate::store::{Difference, Store};

pub struct VerifyArgs {
    pub common: Common,
    pub input: PathBuf,
    pub defines: Vec<(String, String)>,
    /// Keep the two stores and their images (they are removed otherwise).
    pub keep: bool,
}

/// What one of the two builds varies.
struct Conditions {
    /// The directory the build runs in; its store and output are inside.
    dir: PathBuf,
    tz: &'static str,
    locale: &'static str,
    umask: u32,
    /// A `SOURCE_DATE_EPOCH` in the caller's environment, which must not matter.
    caller_epoch: Option<&'static str>,
}

impl Conditions {
    fn describe(&self) -> String {
        format!(
            "TZ={} LC_ALL={} umask {:03o}{}, in {}",
            self.tz,
            self.locale,
            self.umask,
            self.caller_epoch
                .map_or(String::new(), |e| format!(" SOURCE_DATE_EPOCH={e}")),
            self.dir.display()
        )
    }

    fn store(&self) -> PathBuf {
        self.dir.join("store")
    }

    fn output(&self, image: &str) -> PathBuf {
        self.dir.join("out").join(image)
    }
}

/// How many entries of a differing layer are listed (the rest are counted).
const SHOWN: usize = 40;
/// How many differing files diffoscope (when installed) is run on.
const DIFFOSCOPE_FILES: usize = 3;

pub fn verify(args: VerifyArgs) -> i32 {
    let scratch = std::env::temp_dir().join(format!("osbuild-verify-{}", std::process::id()));
    // A dead run's directory with this process id: its stores would make
    // both builds come from cache.
    let _ = fs::remove_dir_all(&scratch);
    let result = verify_in(&args, &scratch);
    if args.keep {
        eprintln!("kept both builds in {}", scratch.display());
    } else {
        let _ = fs::remove_dir_all(&scratch);
    }
    match result {
        Ok(true) => 0,
        Ok(false) => crate::cli::EXIT_FAILED,
        Err(f) => finish(Err(f)),
    }
}

/// Whether every image came out the same both times.
fn verify_in(args: &VerifyArgs, scratch: &Path) -> Result<bool, Failure> {
    let common = &args.common;
    let images = crate::lock::cli::images_of(common, &args.input, &args.defines)?;
    let images = crate::lock::cli::locked(common, &args.input, images)?;
    let locked = images.iter().any(|(_, m)| m.sources.is_some());
    if !locked && !common.json {
        eprintln!(
            "note: {} has no lock: packages come from the mirror as it is now, and times are the build's",
            args.input.display()
        );
    }
    let json = common.json;
    let sources = crate::parallel::images_sources(common, &images, &mut |text| {
        if !json {
            eprintln!("{text}");
        }
    })?;
    let manifests = scratch.join("manifests");
    fs::create_dir_all(&manifests).map_err(|e| io_failure(&manifests, e))?;
    let mut files = Vec::new();
    for (name, manifest) in &images {
        let path = manifests.join(format!("{name}.json"));
        fs::write(&path, manifest.pretty_json()).map_err(|e| io_failure(&path, e))?;
        files.push((name.clone(), path));
    }
    let runs = [
        Conditions {
            dir: scratch.join("1"),
            tz: "UTC",
            locale: "C.UTF-8",
            umask: 0o022,
            caller_epoch: None,
        },
        Conditions {
            dir: scratch.join("2/a/longer/path/elsewhere"),
            tz: "Pacific/Chatham",
            locale: "tr_TR.UTF-8",
            umask: 0o077,
            caller_epoch: Some("1"),
        },
    ];
    // Ctrl-C reaches the child build too (it cleans up after itself); this
    // process waits for it, then removes the scratch directory.
    let interrupts = crate::signals::Interrupts::block().ok();
    let interrupts = interrupts.as_ref();
    for (i, run) in runs.iter().enumerate() {
        fs::create_dir_all(&run.dir).map_err(|e| io_failure(&run.dir, e))?;
        if !common.json {
            eprintln!("build {} of 2: {}", i + 1, run.describe());
        }
        let started = Instant::now();
        for (name, manifest) in &files {
            build(common, run, name, manifest, sources.as_deref(), interrupts).map_err(|e| match e {
                Stopped::Failed(e) => Failure::failed(msg(format!("build {} of {name}: {e}", i + 1))),
                Stopped::Interrupted(signal) => Failure {
                    code: crate::cli::EXIT_INTERRUPTED,
                    report: msg(format!("interrupted by {signal} during build {} of {name}", i + 1)),
                },
            })?;
        }
        if !common.json {
            eprintln!("build {} of 2: done in {:.1} s", i + 1, started.elapsed().as_secs_f64());
        }
    }
    let mut all_same = true;
    let mut report = Vec::new();
    for (name, manifest) in &images {
        let outcome = compare(name, manifest, &runs)?;
        all_same &= outcome.same;
        if common.json {
            report.push(outcome.json);
        } else {
            print!("{}", outcome.text);
        }
    }
    if common.json {
        let doc = json!({ "reproducible": all_same, "locked": locked, "images": report });
        println!("{doc}");
    }
    Ok(all_same)
}

/// Why a child build stopped short.
enum Stopped {
    Failed(String),
    Interrupted(String),
}

impl From<String> for Stopped {
    fn from(s: String) -> Self {
        Stopped::Failed(s)
    }
}

/// One `osbuild build` of `manifest` under `run`'s conditions; its output
/// goes to a log, shown (the end of it) when it fails.
fn build(
    common: &Common,
    run: &Conditions,
    name: &str,
    manifest: &Path,
    sources: Option<&Path>,
    interrupts: Option<&crate::signals::Interrupts>,
) -> Result<(), Stopped> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let log_path = run.dir.join(format!("{name}.log"));
    let log = fs::File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
    let mut cmd = crate::parallel::child_build(&exe, common, &run.store(), sources, &run.output(name), &[]);
    cmd.arg(manifest)
        .current_dir(&run.dir)
        .env("TZ", run.tz)
        .env("LC_ALL", run.locale)
        .env("LANG", run.locale)
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log);
    match run.caller_epoch {
        Some(e) => cmd.env("SOURCE_DATE_EPOCH", e),
        None => cmd.env_remove("SOURCE_DATE_EPOCH"),
    };
    let umask = run.umask;
    // SAFETY: umask is async-signal-safe and touches nothing but the child.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(move || {
            libc::umask(umask as libc::mode_t);
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| format!("cannot start osbuild build: {e}"))?;
    let mut interrupted = None;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if let Some(signal) = interrupts.and_then(|i| i.pending()) {
            // A terminal's Ctrl-C reached the child already; a kill of this
            // process alone did not: pass it on, and wait for the clean-up.
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, signal);
            interrupted.get_or_insert(signal.as_str().to_string());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    if let Some(signal) = interrupted {
        return Err(Stopped::Interrupted(signal));
    }
    if status.success() {
        return Ok(());
    }
    let text = fs::read_to_string(&log_path).unwrap_or_default();
    let tail: Vec<&str> = text.lines().rev().take(30).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    Err(Stopped::Failed(format!(
        "{status}; the end of its log ({}):\n{}",
        log_path.display(),
        tail.join("\n")
    )))
}

struct Outcome {
    same: bool,
    text: String,
    json: serde_json::Value,
}

/// Compares an image's files from the two builds; when they differ, finds
/// the first stage whose stored object differs and what differs in it.
fn compare(name: &str, manifest: &Manifest, runs: &[Conditions; 2]) -> Result<Outcome, Failure> {
    let (a, b) = (runs[0].output(name), runs[1].output(name));
    let mut text = String::new();
    let mut files = Vec::new();
    let mut same = true;
    for file in file_names(&a, &b)? {
        let hash = |dir: &Path| -> Result<Option<String>, Failure> {
            let path = dir.join(&file);
            if !path.exists() {
                return Ok(None);
            }
            osbuild_stages::lock::sha256_file(&path)
                .map(Some)
                .map_err(|e| io_failure(&path, e))
        };
        let (x, y) = (hash(&a)?, hash(&b)?);
        let show = |h: &Option<String>| h.as_deref().map_or("nothing".to_string(), |h| format!("sha256:{h}"));
        if x == y {
            text.push_str(&format!("reproducible: {name}/{file} {}\n", show(&x)));
        } else {
            same = false;
            text.push_str(&format!(
                "not reproducible: {name}/{file}: {} (build 1), {} (build 2)\n",
                show(&x),
                show(&y)
            ));
        }
        files.push(json!({"file": file, "sha256": [x, y]}));
    }
    let mut first = serde_json::Value::Null;
    if !same {
        let (line, found) = first_difference(manifest, name, runs)?;
        text.push_str(&line);
        first = found;
    }
    Ok(Outcome {
        same,
        text,
        json: json!({"name": name, "reproducible": same, "files": files, "first_difference": first}),
    })
}

/// The files either build delivered for an image, sorted.
fn file_names(a: &Path, b: &Path) -> Result<Vec<String>, Failure> {
    let mut names = std::collections::BTreeSet::new();
    for dir in [a, b] {
        for e in fs::read_dir(dir).map_err(|e| io_failure(dir, e))? {
            let e = e.map_err(|e| io_failure(dir, e))?;
            names.insert(e.file_name().to_string_lossy().into_owned());
        }
    }
    Ok(names.into_iter().collect())
}

/// The first stage (in build order) whose object differs between the two
/// stores, with the entries of its layer that differ.
fn first_difference(
    manifest: &Manifest,
    name: &str,
    runs: &[Conditions; 2],
) -> Result<(String, serde_json::Value), Failure> {
    let open = |run: &Conditions| {
        Store::open(&run.store())
            .map_err(|e| Failure::failed(msg(format!("cannot open {}: {e}", run.store().display()))))
    };
    let (sa, sb) = (open(&runs[0])?, open(&runs[1])?);
    let plan = crate::plan::plan(manifest, Some(&sa)).map_err(|e| Failure::failed(msg(e.to_string())))?;
    for pipeline in &plan.pipelines {
        let stages = pipeline
            .stages
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("stage {}", i + 1), s, false));
        let assembler = pipeline
            .assembler
            .iter()
            .map(|a| ("the assembler".to_string(), a, true));
        for (place, planned, is_assembler) in stages.chain(assembler) {
            let content = |s: &Store| s.meta(&planned.id).ok().and_then(|m| m.content);
            if content(&sa) == content(&sb) {
                continue;
            }
            let mut text = format!(
                "  the first difference: {place} of the {} pipeline of {name}, {} ({})\n",
                pipeline.role,
                planned.stage.name,
                &planned.id[..12]
            );
            let (dir_a, dir_b) = if is_assembler {
                (sa.output_dir(&planned.id), sb.output_dir(&planned.id))
            } else {
                (sa.layer_dir(&planned.id), sb.layer_dir(&planned.id))
            };
            let differences =
                crate::store::diff_trees(&dir_a, &dir_b).map_err(|e| Failure::failed(msg(e.to_string())))?;
            text.push_str(&match differences.len() {
                1 => "  1 entry differs:\n".to_string(),
                n => format!("  {n} entries differ:\n"),
            });
            for d in differences.iter().take(SHOWN) {
                text.push_str(&format!("    {}: {}\n", d.path, d.what));
            }
            if differences.len() > SHOWN {
                text.push_str(&format!("    ... and {} more\n", differences.len() - SHOWN));
            }
            text.push_str(&explain_contents(&differences));
            let json = json!({
                "pipeline": pipeline.role,
                "place": place,
                "stage": planned.stage.name,
                "id": planned.id,
                "differences": differences,
            });
            return Ok((text, json));
        }
    }
    Ok((
        "  every stored object is the same in both stores: the difference is in delivery\n".into(),
        serde_json::Value::Null,
    ))
}

/// For files whose bytes differ: diffoscope's account when it is installed,
/// else where the bytes first differ.
fn explain_contents(differences: &[Difference]) -> String {
    let mut text = String::new();
    let diffoscope = Path::new("/usr/bin/diffoscope").exists();
    for d in differences
        .iter()
        .filter(|d| d.contents.is_some())
        .take(DIFFOSCOPE_FILES)
    {
        let (a, b) = d.contents.as_ref().expect("filtered");
        if diffoscope {
            let out = Command::new("/usr/bin/diffoscope")
                .args(["--text", "-", "--max-text-report-size", "8192"])
                .arg(a)
                .arg(b)
                .stdin(Stdio::null())
                .output();
            if let Ok(out) = out {
                text.push_str(&format!("  diffoscope {}:\n", d.path));
                for line in String::from_utf8_lossy(&out.stdout).lines().take(60) {
                    text.push_str(&format!("    {line}\n"));
                }
                continue;
            }
        }
        if let Ok(Some(at)) = crate::store::first_difference(a, b) {
            text.push_str(&format!("  {}: the bytes first differ at offset {at}\n", d.path));
        }
    }
    text
}

fn io_failure(path: &Path, e: std::io::Error) -> Failure {
    Failure::failed(msg(format!("{}: {e}", path.display())))
}
