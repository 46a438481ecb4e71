//! `osbuild lock`: resolve and write a script's or a manifest's lock.

use std::path::{Path, PathBuf};

use crate::cli::{finish, msg, Common, Failure};
use crate::manifest::Manifest;
use crate::registry::Registry;

use super::{images_stages, make, path_for, Lock};

pub struct LockArgs {
    pub common: Common,
    /// A script (`.rhai`) or a manifest.
    pub input: PathBuf,
    pub defines: Vec<(String, String)>,
    /// Where the lock goes (default: beside the input).
    pub output: Option<PathBuf>,
    /// Resolve everything again, even when the lock is current.
    pub update: bool,
}

/// The images of a script or a manifest, by name, checked as a build checks them.
pub fn images_of(
    common: &Common,
    input: &Path,
    defines: &[(String, String)],
) -> Result<Vec<(String, Manifest)>, Failure> {
    let registry = Registry::load(common.libdir.as_deref()).map_err(Failure::invalid)?;
    if crate::script::is_script(input) {
        let lowering = crate::script::lower::lower_file(input, defines, std::sync::Arc::new(registry))
            .map_err(|d| Failure::invalid(*d))?;
        Ok(lowering.images.into_iter().map(|i| (i.name, i.manifest)).collect())
    } else {
        let located = crate::cli::load(input, &registry)?;
        let name = image_name(&located.manifest, input);
        Ok(vec![(name, located.manifest)])
    }
}

/// A manifest's image name: its pipeline's `name`, else the file's stem.
pub fn image_name(manifest: &Manifest, path: &Path) -> String {
    manifest.pipeline.name.clone().unwrap_or_else(|| {
        path.file_stem()
            .map_or_else(|| "image".into(), |s| s.to_string_lossy().into_owned())
    })
}

/// `images` of `input`, with the pins of the lock beside it when it fits
/// (required with `--locked`); a lock that does not fit is named in a warning.
pub fn locked(
    common: &Common,
    input: &Path,
    images: Vec<(String, Manifest)>,
) -> Result<Vec<(String, Manifest)>, Failure> {
    let mode = if common.locked {
        super::LockUse::Required
    } else {
        super::LockUse::IfCurrent
    };
    let (images, warning) = super::lock_images(input, images, mode).map_err(Failure::invalid)?;
    if let Some(w) = warning {
        if common.json {
            println!("{}", serde_json::json!({"type": "warning", "text": w}));
        } else {
            eprintln!("warning: {w}");
        }
    }
    Ok(images)
}

pub fn lock(args: LockArgs) -> i32 {
    finish(lock_inner(&args))
}

fn lock_inner(args: &LockArgs) -> Result<(), Failure> {
    let images = images_of(&args.common, &args.input, &args.defines)?;
    let path = args.output.clone().unwrap_or_else(|| path_for(&args.input));
    let shown = path.display().to_string();
    let old = match path.exists() {
        true => Some(Lock::read(&path).map_err(Failure::invalid)?),
        false => None,
    };
    let stages = images_stages(&images).map_err(Failure::invalid)?;
    if let (Some(old), false) = (&old, args.update) {
        if old.changes(&shown, &stages).is_empty() {
            eprintln!("{shown} is up to date (--update resolves every package again)");
            return Ok(());
        }
    }
    let started = std::time::Instant::now();
    let scratch = std::env::temp_dir().join(format!("osbuild-lock-{}", std::process::id()));
    let json = args.common.json;
    let new = make::make(&images, &scratch, |line| {
        if !json {
            eprintln!("{line}");
        }
    })
    .map_err(Failure::failed)?;
    let changes = old.as_ref().map(|o| make::diff(o, &new)).unwrap_or_default();
    if old.as_ref() == Some(&new) {
        eprintln!("{shown}: nothing changed");
        return Ok(());
    }
    write_atomically(&path, &new.to_json())?;
    let packages: usize = new.stages.iter().map(|s| s.locked.pins().count()).sum();
    if json {
        let doc = serde_json::json!({
            "lock": shown,
            "images": new.images.len(),
            "stages": new.stages.len(),
            "packages": packages,
            "changes": changes,
            "duration_ms": started.elapsed().as_millis() as u64,
        });
        println!("{doc}");
    } else {
        for line in &changes {
            println!("{line}");
        }
        eprintln!(
            "wrote {shown}: {} images, {} package stages, {packages} packages ({:.1}s)",
            new.images.len(),
            new.stages.len(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

pub struct FetchArgs {
    pub common: Common,
    pub input: PathBuf,
    pub defines: Vec<(String, String)>,
}

/// `osbuild fetch`: every file the locked images install, into the store's
/// sources or `--sources DIR` (the same layout), verified.
pub fn fetch(args: FetchArgs) -> i32 {
    finish(fetch_inner(&args))
}

fn fetch_inner(args: &FetchArgs) -> Result<(), Failure> {
    let images = images_of(&args.common, &args.input, &args.defines)?;
    let (images, _) = super::lock_images(&args.input, images, super::LockUse::Required).map_err(Failure::invalid)?;
    let stages = crate::sources::stages_of(&images);
    let dir = match &args.common.sources {
        Some(dir) => dir.clone(),
        None => crate::cli::open_store(&args.common)?.sources_dir(),
    };
    let json = args.common.json;
    // `osbuild fetch` fills DIR (or the store): it always downloads what is missing.
    let fetched = crate::sources::prepare(&stages, &dir, true, false, &mut |text| {
        if json {
            println!("{}", serde_json::json!({"type": "sources", "text": text}));
        } else {
            eprintln!("{text}");
        }
    })
    .map_err(|e| Failure::failed(msg(format!("sources: {e}"))))?;
    if !json {
        eprintln!(
            "{}: {} files, {} were there already",
            dir.display(),
            fetched.files,
            fetched.present
        );
    }
    Ok(())
}

/// Writes `text` to `path` by a rename, so a reader never sees half a lock.
fn write_atomically(path: &Path, text: &str) -> Result<(), Failure> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let fail = |e: std::io::Error| Failure::failed(msg(format!("cannot write {}: {e}", path.display())));
    std::fs::write(&tmp, text).map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        fail(e)
    })
}
