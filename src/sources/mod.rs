//! Sources: the files locked stages install, fetched by SHA256 before any
//! stage runs. This is the only step of a locked build that touches the
//! network; the stages themselves then run without it.
//!
//! A file lands in `DIR/sha256/<hex>` (the store's `sources/`, or the
//! directory of `osbuild fetch --sources DIR`) only once its bytes hash to
//! the pinned SHA256: it is written to a temporary name and renamed, so a
//! file there is a verified one. A directory given to a build with
//! `--sources` is not ours: every file the build needs is hashed again
//! before it is used.
//!
//! Where from: a pin's path is relative to its repository, whose URI is the
//! one the stage's options name or else the mirror this machine's apt
//! configuration gives for the suite, so any mirror of the same archive
//! serves a lock.
//!
//! Then the signature chain from the archive's key to every pin is checked
//! (`chain`), so a lock's checksums are known to be the archive's own.

mod chain;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::manifest::Stage;
use crate::plan::Plan;
use osbuild_stages::lock::{hex, sha256_file, Locked};
use osbuild_stages::offline::source_path;

/// One file a locked stage installs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    pub sha256: String,
    pub size: u64,
    /// Relative to the repository's root.
    pub path: String,
    /// The repository's URI, when the stage's options gave one.
    pub uri: Option<String>,
    pub suite: String,
    /// `name version`, for messages.
    pub what: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{what}: the file at {url} has SHA256 {got}, the lock pins {want}")]
    Mismatch {
        what: String,
        url: String,
        want: String,
        got: String,
    },
    #[error("{what}: {message}")]
    Fetch { what: String, message: String },
    #[error("{what} (sha256 {sha256}) is not in {}{}", dir.display(), if *offline { "" } else { ": osbuild fetch gets it" })]
    Missing {
        what: String,
        sha256: String,
        dir: PathBuf,
        offline: bool,
    },
    #[error("the signature chain of {suite}: {message}")]
    Chain { suite: String, message: String },
    #[error("no mirror for {suite} in this machine's apt sources (/etc/apt/sources.list{{,.d}}) to fetch {what} from")]
    NoMirror { suite: String, what: String },
    #[error("{0}")]
    Io(String),
}

/// The pins of a stage, if it is locked.
pub fn locked_of(stage: &Stage) -> Option<Locked> {
    serde_json::from_value(stage.options.get("locked")?.clone()).ok()
}

/// Every stage of the images, their build pipelines' too.
pub fn stages_of(images: &[(String, crate::manifest::Manifest)]) -> Vec<&Stage> {
    let mut stages = Vec::new();
    for (_, m) in images {
        let mut p = Some(&m.pipeline);
        while let Some(pipeline) = p {
            stages.extend(pipeline.stages.iter());
            p = pipeline.build.as_deref();
        }
    }
    stages
}

/// The stages of `plan` that are not stored yet: those whose files a build needs.
pub fn needed(plan: &Plan) -> Vec<&Stage> {
    let stages = plan.pipelines.iter().flat_map(|p| &p.stages).filter(|s| !s.stored);
    stages.map(|s| &s.stage).collect()
}

/// Every file the given stages install, once each, in order.
pub fn files_of<'a>(stages: impl Iterator<Item = &'a Stage>) -> Vec<SourceFile> {
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for locked in stages.filter_map(locked_of) {
        for r in &locked.repositories {
            for p in &r.packages {
                if seen.insert(p.sha256.clone()) {
                    out.push(SourceFile {
                        sha256: p.sha256.clone(),
                        size: p.size,
                        path: p.path.clone(),
                        uri: r.uri.clone(),
                        suite: r.suite.clone(),
                        what: format!("{} {}", p.name, p.version),
                    });
                }
            }
        }
    }
    out
}

/// Gets every file `stages` install into `dir` (`fetching`: downloading
/// what is missing; else `dir` is someone's, every file is hashed again),
/// then checks the signature chain of their repositories (unless
/// `chain_checked`: the osbuild that started this one did, for these very
/// stages). `progress` hears how it goes, and what of the chain could not
/// be checked.
pub fn prepare(
    stages: &[&Stage],
    dir: &Path,
    fetching: bool,
    chain_checked: bool,
    progress: &mut dyn FnMut(&str),
) -> Result<Fetched, SourceError> {
    let files = files_of(stages.iter().copied());
    if files.is_empty() {
        return Ok(Fetched::default());
    }
    let fetched = if fetching {
        fetch(&files, dir, progress)?
    } else {
        verify(&files, dir)?;
        Fetched {
            files: files.len(),
            present: files.len(),
        }
    };
    if chain_checked {
        return Ok(fetched);
    }
    for note in chain::check(stages.iter().copied(), dir, fetching, progress)? {
        progress(&format!("note: {note}"));
    }
    Ok(fetched)
}

/// What a fetch did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub files: usize,
    /// Already there before the fetch.
    pub present: usize,
}

/// Parallel downloads, and tries per file.
const JOBS: usize = 4;
const TRIES: u32 = 3;

/// Makes sure every file of `files` is in `dir`, downloading what is not
/// (in parallel, with retries); `progress` hears how far it is now and then.
pub fn fetch(files: &[SourceFile], dir: &Path, progress: &mut dyn FnMut(&str)) -> Result<Fetched, SourceError> {
    let store = dir.join("sha256");
    std::fs::create_dir_all(&store).map_err(|e| SourceError::Io(format!("{}: {e}", store.display())))?;
    let missing: Vec<&SourceFile> = files
        .iter()
        .filter(|f| !std::fs::metadata(source_path(dir, &f.sha256)).is_ok_and(|m| m.len() == f.size))
        .collect();
    let fetched = Fetched {
        files: files.len(),
        present: files.len() - missing.len(),
    };
    if missing.is_empty() {
        return Ok(fetched);
    }
    let total: u64 = missing.iter().map(|f| f.size).sum();
    progress(&format!(
        "fetching {} of {} source files ({})",
        missing.len(),
        files.len(),
        osbuild_stages::progress::human_bytes(total)
    ));
    let mirrors = Mutex::new(std::collections::BTreeMap::<String, Option<String>>::new());
    let base = |f: &SourceFile| -> Result<String, SourceError> {
        if let Some(uri) = &f.uri {
            return Ok(uri.trim_end_matches('/').to_string());
        }
        let mut m = mirrors.lock().expect("not poisoned");
        let mirror = m
            .entry(f.suite.clone())
            .or_insert_with(|| osbuild_stages::resolve::mirror_for(&f.suite))
            .clone();
        mirror.ok_or_else(|| SourceError::NoMirror {
            suite: f.suite.clone(),
            what: f.what.clone(),
        })
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_body(Some(Duration::from_secs(300)))
        .build()
        .into();
    let next = AtomicUsize::new(0);
    let done_bytes = AtomicU64::new(0);
    let done_files = AtomicUsize::new(0);
    let finished = AtomicUsize::new(0);
    let started = Instant::now();
    let first_error: Mutex<Option<SourceError>> = Mutex::new(None);
    // Each worker takes the next file until none is left or one failed.
    let work = || loop {
        if first_error.lock().expect("not poisoned").is_some() {
            return;
        }
        let Some(f) = missing.get(next.fetch_add(1, Ordering::Relaxed)) else {
            return;
        };
        match base(f).and_then(|b| download(&agent, &format!("{b}/{}", f.path), f, dir)) {
            Ok(()) => {
                done_bytes.fetch_add(f.size, Ordering::Relaxed);
                done_files.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                first_error.lock().expect("not poisoned").get_or_insert(e);
                return;
            }
        }
    };
    let workers = JOBS.min(missing.len());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                work();
                finished.fetch_add(1, Ordering::Release);
            });
        }
        // This thread reports, every 10 seconds, until the workers are done.
        let mut last = Instant::now();
        while finished.load(Ordering::Acquire) < workers {
            std::thread::sleep(Duration::from_millis(50));
            if last.elapsed() >= Duration::from_secs(10) {
                last = Instant::now();
                progress(&format!(
                    "sources: {} of {} files, {} of {}, {}s",
                    done_files.load(Ordering::Relaxed),
                    missing.len(),
                    osbuild_stages::progress::human_bytes(done_bytes.load(Ordering::Relaxed)),
                    osbuild_stages::progress::human_bytes(total),
                    started.elapsed().as_secs()
                ));
            }
        }
    });
    if let Some(e) = first_error.into_inner().expect("not poisoned") {
        return Err(e);
    }
    progress(&format!(
        "fetched {} source files ({}) in {:.1}s",
        missing.len(),
        osbuild_stages::progress::human_bytes(total),
        started.elapsed().as_secs_f64()
    ));
    Ok(fetched)
}

/// Downloads one file to `dir/sha256/<hex>`, verified; retries what may
/// pass on a second try (the network, a short read), never a wrong hash.
fn download(agent: &ureq::Agent, url: &str, f: &SourceFile, dir: &Path) -> Result<(), SourceError> {
    let dest = source_path(dir, &f.sha256);
    let tmp = dir
        .join("sha256")
        .join(format!(".{}.{}.tmp", f.sha256, std::process::id()));
    let mut last = String::new();
    for attempt in 0..TRIES {
        if attempt > 0 {
            std::thread::sleep(Duration::from_secs(1 << (attempt - 1)));
        }
        match try_download(agent, url, f, &tmp) {
            Ok(got) if got == f.sha256 => {
                return std::fs::rename(&tmp, &dest).map_err(|e| SourceError::Io(format!("{}: {e}", dest.display())));
            }
            Ok(got) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(SourceError::Mismatch {
                    what: f.what.clone(),
                    url: url.to_string(),
                    want: f.sha256.clone(),
                    got,
                });
            }
            Err((message, retry)) => {
                let _ = std::fs::remove_file(&tmp);
                last = message;
                if !retry {
                    break;
                }
            }
        }
    }
    Err(SourceError::Fetch {
        what: f.what.clone(),
        message: format!("{url}: {last}"),
    })
}

/// The SHA256 of what `url` gave, written to `tmp`; or why not, and
/// whether another try may do better.
/// A `file://` URL (a local repository) is read from the file.
fn try_download(agent: &ureq::Agent, url: &str, f: &SourceFile, tmp: &Path) -> Result<String, (String, bool)> {
    let mut body: Box<dyn Read> = match url.strip_prefix("file://") {
        Some(path) => Box::new(std::fs::File::open(path).map_err(|e| (format!("{path}: {e}"), false))?),
        None => {
            let response = agent.get(url).call().map_err(|e| {
                let retry = !matches!(e, ureq::Error::StatusCode(code) if (400..500).contains(&code));
                (e.to_string(), retry)
            })?;
            Box::new(response.into_body().into_reader())
        }
    };
    let mut out = std::fs::File::create(tmp).map_err(|e| (format!("{}: {e}", tmp.display()), false))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = body.read(&mut buf).map_err(|e| (e.to_string(), true))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        if size > f.size {
            return Err((format!("more than the {} bytes the lock pins", f.size), false));
        }
        hasher.update(&buf[..n]);
        std::io::Write::write_all(&mut out, &buf[..n]).map_err(|e| (format!("{}: {e}", tmp.display()), false))?;
    }
    if size != f.size {
        return Err((format!("{size} bytes, the lock pins {}", f.size), true));
    }
    Ok(hex(&hasher.finalize()))
}

/// Checks that every file of `files` is in `dir` with its pinned SHA256
/// (hashing each: `dir` may be anyone's).
pub fn verify(files: &[SourceFile], dir: &Path) -> Result<(), SourceError> {
    for f in files {
        let path = source_path(dir, &f.sha256);
        let missing = || SourceError::Missing {
            what: f.what.clone(),
            sha256: f.sha256.clone(),
            dir: dir.to_path_buf(),
            offline: true,
        };
        if !path.is_file() {
            return Err(missing());
        }
        let got = sha256_file(&path).map_err(|e| SourceError::Io(format!("{}: {e}", path.display())))?;
        if got != f.sha256 {
            return Err(SourceError::Mismatch {
                what: f.what.clone(),
                url: path.display().to_string(),
                want: f.sha256.clone(),
                got,
            });
        }
    }
    Ok(())
}
