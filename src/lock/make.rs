//! Making a lock: every image's package stages resolved against the mirror
//! (`osbuild_stages::resolve`), each distinct stage once; and the readable
//! difference between two locks, for `osbuild lock --update`.

use std::collections::BTreeMap;
use std::path::Path;

use super::{images_stages, inputs, Lock, LockError, LockedStage, LOCK_VERSION};
use crate::manifest::{Manifest, Pipeline};
use osbuild_stages::resolve::{Installed, Resolver};

/// Resolves every package stage of `images`, in scratch directories under
/// `scratch`; `progress` hears of each stage as it is resolved.
pub fn make(images: &[(String, Manifest)], scratch: &Path, mut progress: impl FnMut(&str)) -> Result<Lock, LockError> {
    let all = images_stages(images)?;
    let fail = |image: &str, message: String| LockError::Resolve {
        image: image.to_string(),
        message,
    };
    let mut resolver = Resolver::new(scratch).map_err(|m| fail("any image", m))?;
    // By key: what the stage pins, and what the tree has installed after it.
    let mut done: BTreeMap<String, (usize, Installed)> = BTreeMap::new();
    // By tree id and name: what an image's finished tree has installed.
    let mut trees: BTreeMap<String, Installed> = BTreeMap::new();
    let mut lock = Lock {
        lock_version: LOCK_VERSION,
        inputs: String::new(),
        source_date_epoch: 0,
        images: BTreeMap::new(),
        stages: Vec::new(),
    };
    for ((name, manifest), (_, stages)) in images.iter().zip(&all) {
        let mut keys = Vec::new();
        let mut depth = None;
        let mut state = Installed::default();
        for s in stages {
            if depth != Some(s.depth) {
                depth = Some(s.depth);
                state = start(pipeline_at(&manifest.pipeline, s.depth), &trees);
            }
            keys.push(s.key.clone());
            if let Some((_, after)) = done.get(&s.key) {
                state = after.clone();
                continue;
            }
            progress(&format!("resolving {} (stage {} of {name})", s.stage.name, s.index + 1));
            let options = serde_json::Value::Object(s.stage.options.clone());
            let locked = resolver
                .stage(&s.stage.name, &options, &mut state)
                .map_err(|m| fail(name, format!("{} (stage {}): {m}", s.stage.name, s.index + 1)))?
                .ok_or_else(|| fail(name, format!("{} pins nothing", s.stage.name)))?;
            progress(&format!(
                "  {} packages from {}",
                locked.pins().count(),
                locked
                    .repositories
                    .iter()
                    .map(|r| r.suite.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            for r in &locked.repositories {
                lock.source_date_epoch = lock.source_date_epoch.max(r.release.date);
            }
            done.insert(s.key.clone(), (lock.stages.len(), state.clone()));
            lock.stages.push(LockedStage {
                key: s.key.clone(),
                stage: s.stage.name.clone(),
                options: s.stage.options.clone(),
                locked,
            });
        }
        // What the image's own tree has installed, for images built on it.
        let own = if depth == Some(0) {
            state
        } else {
            start(&manifest.pipeline, &trees)
        };
        if let Some(id) = crate::plan::tree_id(&manifest.pipeline) {
            trees.insert(id, own.clone());
        }
        if let Some(n) = &manifest.pipeline.name {
            trees.insert(n.clone(), own);
        }
        lock.images.insert(name.clone(), keys);
    }
    lock.inputs = inputs(&lock.images);
    Ok(lock)
}

/// The pipeline `depth` build pipelines down.
fn pipeline_at(p: &Pipeline, depth: usize) -> &Pipeline {
    let mut p = p;
    for _ in 0..depth {
        p = p.build.as_deref().expect("a package stage's depth is a pipeline's");
    }
    p
}

/// What a pipeline's tree has installed before its first stage.
fn start(p: &Pipeline, trees: &BTreeMap<String, Installed>) -> Installed {
    p.base.as_ref().and_then(|b| trees.get(b)).cloned().unwrap_or_default()
}

/// What changed from `old` to `new`, one line a package: `libc6: 2.36-9 → 2.36-9+deb12u1`,
/// `+ htop 3.2.2-2`, `- nano 7.2-1`, per image; empty when the pins are the same.
pub fn diff(old: &Lock, new: &Lock) -> Vec<String> {
    let versions = |lock: &Lock, image: &str| -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for key in lock.images.get(image).into_iter().flatten() {
            if let Some(s) = lock.stage(key) {
                for p in s.locked.pins() {
                    out.insert(
                        format!("{}:{}", p.name, p.arch),
                        format!("{} ({})", p.version, &p.sha256[..12]),
                    );
                }
            }
        }
        out
    };
    let mut lines = Vec::new();
    let names: std::collections::BTreeSet<&String> = old.images.keys().chain(new.images.keys()).collect();
    for image in names {
        let (a, b) = (versions(old, image), versions(new, image));
        let mut changes = Vec::new();
        for (pkg, v) in &b {
            match a.get(pkg) {
                None => changes.push(format!("  + {pkg} {v}")),
                Some(old) if old != v => changes.push(format!("  {pkg}: {old} → {v}")),
                _ => {}
            }
        }
        for (pkg, v) in &a {
            if !b.contains_key(pkg) {
                changes.push(format!("  - {pkg} {v}"));
            }
        }
        if !new.images.contains_key(image) {
            lines.push(format!("{image}: no longer in the lock"));
        } else if !old.images.contains_key(image) {
            lines.push(format!("{image}: new, {} packages", b.len()));
        } else if !changes.is_empty() {
            lines.push(format!("{image}:"));
            lines.extend(changes);
        }
    }
    lines
}
