//! Locks: what every package stage of a script's (or a manifest's) images
//! installs, pinned, in `NAME.lock` beside it.
//!
//! A lock is JSON, meant to be read and committed (like Cargo.lock):
//!
//! ```json
//! {
//!   "lock_version": 1,
//!   "inputs": "<sha256 of what the pins were resolved from>",
//!   "source_date_epoch": 1783764997,
//!   "images": { "minimal": ["<key>", "<key>"] },
//!   "stages": [
//!     { "key": "<key>", "stage": "org.osbuild.debootstrap",
//!       "options": { "suite": "bookworm", "variant": "minbase" },
//!       "locked": { "arch": "amd64", "repositories": [ { "suite": "bookworm", ..., "packages": [...] } ] } }
//!   ]
//! }
//! ```
//!
//! A stage's **key** is the SHA256 of the canonical JSON of the package
//! stages of its pipeline up to and including it (`[{"name", "options"}]`,
//! without pins): what decides what apt installs there. A stage shared by
//! several images (a fleet's common base) has one key and is written once.
//! Stages that install nothing are not in the key, so changing a host name
//! keeps the lock current; adding a package does not. `inputs` hashes the
//! images' lists of keys, so a lock is current for a set of images exactly
//! when its `inputs` is theirs.
//!
//! `locked` is the stage's `locked` option (`osbuild_stages::lock::Locked`):
//! a locked build puts it into the stage, so the manifest alone says what
//! it installs.

pub mod cli;
pub mod make;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::diagnostic::{Source, SpannedError};
use crate::manifest::{json, Manifest, Pipeline, Stage};
use osbuild_stages::lock::Locked;
use osbuild_stages::PathSegment;

/// The version of the lock format this osbuild writes and reads.
pub const LOCK_VERSION: u64 = 1;

/// The stages a lock pins.
pub const PACKAGE_STAGES: &[&str] = &["org.osbuild.debootstrap", "org.osbuild.apt", "org.osbuild.dnf"];

// Its JSON Schema (from these types and their comments) is what
// `osbuild lock --schema` prints; docs/lock.schema.json is a copy a test keeps current.
/// An osbuild lock: every package each image's package stages install, pinned
/// (`osbuild lock` writes it as NAME.lock beside NAME.rhai or NAME.json).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "osbuild lock file")]
pub struct Lock {
    /// The version of the format: 1.
    pub lock_version: u64,
    /// The SHA256 of the JSON of `images`: the lock fits a set of images
    /// exactly when theirs is the same.
    pub inputs: String,
    /// The time every locked build is made at: the newest `Date` of the
    /// repositories the pins were resolved from (no package is newer).
    pub source_date_epoch: u64,
    /// Each image's package stages, by key, in the order they run (build
    /// pipelines first).
    pub images: BTreeMap<String, Vec<String>>,
    /// Every package stage of every image, once, in the order first met.
    pub stages: Vec<LockedStage>,
}

/// One package stage and what it installs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LockedStage {
    /// The SHA256 of the JSON of the package stages of its pipeline up to
    /// and including it (`[{"name", "options"}]`, without pins): what decides
    /// what it installs.
    pub key: String,
    /// The stage's name.
    pub stage: String,
    /// The options it was resolved for (without `locked`).
    pub options: Map<String, Value>,
    pub locked: Locked,
}

/// Mistakes in a lock, or a lock that does not fit the images.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum LockError {
    #[error("{name} is not a valid lock ({} {})", errors.len(), if errors.len() == 1 { "error" } else { "errors" })]
    #[diagnostic(code(osbuild::invalid_lock))]
    Invalid {
        name: String,
        #[related]
        errors: Vec<SpannedError>,
    },
    #[error("cannot read {}: {source}", path.display())]
    #[diagnostic(code(osbuild::lock_io))]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{name} is not the lock of these images: {}", changes.join("; "))]
    #[diagnostic(code(osbuild::stale_lock), help("run `osbuild lock` to update it"))]
    Stale { name: String, changes: Vec<String> },
    #[error("cannot lock {image}: {message}")]
    #[diagnostic(code(osbuild::lock_failed))]
    Resolve { image: String, message: String },
}

/// The JSON Schema of a lock file, as `osbuild lock --schema` prints it.
pub fn schema() -> String {
    let schema = schemars::schema_for!(Lock);
    serde_json::to_string_pretty(&schema).expect("a schema serializes") + "\n"
}

/// Where a lock for `input` goes by default: `NAME.lock` beside `NAME.rhai` or `NAME.json`.
pub fn path_for(input: &Path) -> PathBuf {
    input.with_extension("lock")
}

/// One package stage of an image, where it is and its key.
#[derive(Debug, Clone, PartialEq)]
pub struct PackageStage {
    /// 0 for the image's own pipeline, 1 for its build pipeline, 2 for that one's, ...
    pub depth: usize,
    /// Its index among its pipeline's stages.
    pub index: usize,
    pub key: String,
    pub stage: Stage,
}

/// The package stages of an image, build pipelines first. `chains` gives,
/// for the tree id of each image met before, its chain of package stages,
/// so a pipeline whose `base` is one of them continues that chain.
pub fn package_stages(manifest: &Manifest, chains: &BTreeMap<String, Vec<Value>>) -> Result<Vec<PackageStage>, String> {
    let mut out = Vec::new();
    walk(&manifest.pipeline, 0, chains, &mut out)?;
    Ok(out)
}

fn walk(
    p: &Pipeline,
    depth: usize,
    chains: &BTreeMap<String, Vec<Value>>,
    out: &mut Vec<PackageStage>,
) -> Result<(), String> {
    if let Some(build) = &p.build {
        walk(build, depth + 1, chains, out)?;
    }
    let mut chain = match &p.base {
        None => Vec::new(),
        Some(base) => match chains.get(base) {
            Some(chain) => chain.clone(),
            None if p.stages.iter().any(|s| PACKAGE_STAGES.contains(&s.name.as_str())) => {
                return Err(format!(
                    "it starts from the stored tree {base}, whose packages no lock pins: \
                     build it from its own stages, or from an image of the same script"
                ))
            }
            None => Vec::new(),
        },
    };
    for (index, s) in p.stages.iter().enumerate() {
        if !PACKAGE_STAGES.contains(&s.name.as_str()) {
            continue;
        }
        let stage = unpinned(s);
        chain.push(serde_json::json!({"name": stage.name, "options": stage.options}));
        out.push(PackageStage {
            depth,
            index,
            key: sha256_hex(&serde_json::to_string(&chain).expect("JSON always serializes")),
            stage,
        });
    }
    Ok(())
}

/// The chain of package stages of a pipeline's finished tree, for images
/// that start from it (`base`).
pub fn chain_of(p: &Pipeline, chains: &BTreeMap<String, Vec<Value>>) -> Vec<Value> {
    let mut chain = p.base.as_ref().and_then(|b| chains.get(b)).cloned().unwrap_or_default();
    for s in &p.stages {
        if PACKAGE_STAGES.contains(&s.name.as_str()) {
            let s = unpinned(s);
            chain.push(serde_json::json!({"name": s.name, "options": s.options}));
        }
    }
    chain
}

/// A stage without its pins.
fn unpinned(s: &Stage) -> Stage {
    let mut s = s.clone();
    s.options.remove("locked");
    s
}

pub(crate) fn sha256_hex(text: &str) -> String {
    osbuild_stages::lock::sha256(text.as_bytes())
}

/// The `inputs` of a lock for images with these keys.
pub fn inputs(images: &BTreeMap<String, Vec<String>>) -> String {
    sha256_hex(&serde_json::to_string(images).expect("JSON always serializes"))
}

/// Every image's package stages, with the chains across images (`base`).
pub fn images_stages(images: &[(String, Manifest)]) -> Result<Vec<(String, Vec<PackageStage>)>, LockError> {
    let mut chains = BTreeMap::new();
    let mut out = Vec::new();
    for (name, manifest) in images {
        let stages = package_stages(manifest, &chains).map_err(|message| LockError::Resolve {
            image: name.clone(),
            message,
        })?;
        if let Some(id) = crate::plan::tree_id(&manifest.pipeline) {
            chains.insert(id, chain_of(&manifest.pipeline, &chains));
        }
        if let Some(n) = &manifest.pipeline.name {
            chains.insert(n.clone(), chain_of(&manifest.pipeline, &chains));
        }
        out.push((name.clone(), stages));
    }
    Ok(out)
}

impl Lock {
    /// Parses a lock, every mistake a diagnostic at its place.
    pub fn parse(source: &Source) -> Result<Lock, LockError> {
        let invalid = |errors| LockError::Invalid {
            name: source.name.clone(),
            errors,
        };
        let root = json::parse(&source.text)
            .map_err(|e| invalid(vec![source.error(e.span, e.message).label("not valid JSON")]))?;
        let value = root.to_value();
        let lock: Lock = match serde_path_to_error::deserialize(&value) {
            Ok(lock) => lock,
            Err(e) => {
                let path = segments(e.path());
                let span = root.key_span(&path).unwrap_or_else(|| root.best_span(&path));
                return Err(invalid(vec![source.error(span, e.inner().to_string())]));
            }
        };
        let mut errors = Vec::new();
        let mut at = |path: Vec<PathSegment>, message: String| {
            errors.push(source.error(root.best_span(&path), message));
        };
        use PathSegment::{Index, Key};
        if lock.lock_version != LOCK_VERSION {
            at(
                vec![Key("lock_version".into())],
                format!(
                    "lock version {} is not one this osbuild reads ({LOCK_VERSION})",
                    lock.lock_version
                ),
            );
        }
        let keys: BTreeSet<&str> = lock.stages.iter().map(|s| s.key.as_str()).collect();
        for (name, list) in &lock.images {
            for (i, k) in list.iter().enumerate() {
                if !keys.contains(k.as_str()) {
                    at(
                        vec![Key("images".into()), Key(name.clone()), Index(i)],
                        format!("image {name} names a stage the lock does not have"),
                    );
                }
            }
        }
        let mut seen = BTreeSet::new();
        for (i, s) in lock.stages.iter().enumerate() {
            let here = |rest: &[PathSegment]| [vec![Key("stages".into()), Index(i)], rest.to_vec()].concat();
            if !osbuild_stages::lock::is_sha256(&s.key) {
                at(
                    here(&[Key("key".into())]),
                    "not a SHA256 (64 lower-case hex digits)".into(),
                );
            } else if !seen.insert(&s.key) {
                at(here(&[Key("key".into())]), "this stage appears twice".into());
            }
            if !PACKAGE_STAGES.contains(&s.stage.as_str()) {
                at(
                    here(&[Key("stage".into())]),
                    format!("{} is not a stage a lock pins", s.stage),
                );
            }
            for (place, problem) in s.locked.problems() {
                let mut path = here(&[Key("locked".into())]);
                path.extend(parse_place(&place));
                at(path, problem);
            }
        }
        if !errors.is_empty() {
            return Err(invalid(errors));
        }
        Ok(lock)
    }

    /// Reads and parses `path`.
    pub fn read(path: &Path) -> Result<Lock, LockError> {
        let text = std::fs::read_to_string(path).map_err(|source| LockError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Lock::parse(&Source::new(path.display().to_string(), text))
    }

    /// The lock's text: indented JSON, keys in a fixed order, a final newline.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a lock always serializes") + "\n"
    }

    /// The stage with this key.
    pub fn stage(&self, key: &str) -> Option<&LockedStage> {
        self.stages.iter().find(|s| s.key == key)
    }

    /// What keeps this lock from being the lock of these images, in words
    /// ("htop is not in image.lock"); empty when it fits.
    pub fn changes(&self, name: &str, images: &[(String, Vec<PackageStage>)]) -> Vec<String> {
        let mut out = Vec::new();
        for (image, stages) in images {
            let Some(locked) = self.images.get(image) else {
                if !stages.is_empty() {
                    out.push(format!("image {image} is not in {name}"));
                }
                continue;
            };
            for (n, s) in stages.iter().enumerate() {
                if self.stage(&s.key).is_some() {
                    continue;
                }
                // Compare with the stage the lock has in the same place.
                let before = locked.get(n).and_then(|k| self.stage(k));
                out.extend(describe_change(image, name, s, before));
                break;
            }
            if stages.len() < locked.len() {
                out.push(format!("image {image} has fewer package stages than {name} pins"));
            }
        }
        out
    }

    /// Fails with what changed unless this is the lock of these images.
    pub fn check(&self, name: &str, images: &[(String, Vec<PackageStage>)]) -> Result<(), LockError> {
        let changes = self.changes(name, images);
        if changes.is_empty() {
            Ok(())
        } else {
            Err(LockError::Stale {
                name: name.to_string(),
                changes,
            })
        }
    }
}

impl Lock {
    /// `manifest` with each of its package stages (`stages`, from
    /// [`images_stages`]) given its pins as its `locked` option, and the
    /// files they name listed in the manifest's `sources`, so the manifest
    /// alone says what it installs; every pipeline gets the lock's
    /// `source_date_epoch` as its `source_epoch`. The lock must fit (see [`Lock::check`]).
    pub fn apply(&self, manifest: &Manifest, stages: &[PackageStage]) -> Manifest {
        let mut out = manifest.clone();
        // Every pipeline builds for the lock's time (one the input sets stays).
        let mut p = Some(&mut out.pipeline);
        while let Some(pipeline) = p {
            pipeline.source_epoch.get_or_insert(self.source_date_epoch);
            p = pipeline.build.as_deref_mut();
        }
        for s in stages {
            let Some(locked) = self.stage(&s.key) else { continue };
            let mut p = &mut out.pipeline;
            for _ in 0..s.depth {
                p = p.build.as_deref_mut().expect("a package stage's depth is a pipeline's");
            }
            p.stages[s.index].options.insert(
                "locked".into(),
                serde_json::to_value(&locked.locked).expect("pins serialize"),
            );
        }
        // Per kind of file: `org.osbuild.deb`, `org.osbuild.rpm`.
        let mut kinds: BTreeMap<&str, Map<String, Value>> = BTreeMap::new();
        for s in stages.iter().filter_map(|s| self.stage(&s.key)) {
            for r in &s.locked.repositories {
                for p in &r.packages {
                    kinds.entry(r.format.source_kind()).or_default().insert(
                        format!("sha256:{}", p.sha256),
                        serde_json::json!({"path": p.path, "size": p.size}),
                    );
                }
            }
        }
        if !kinds.is_empty() {
            let mut sources = out.sources.take().unwrap_or_default();
            for (kind, items) in kinds {
                sources.insert(kind.into(), serde_json::json!({ "items": items }));
            }
            out.sources = Some(sources);
        }
        out
    }
}

/// How a build uses the lock beside its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockUse {
    /// `--locked`: the lock must exist and fit, else nothing is built.
    Required,
    /// The default: a lock that fits is used; one that does not is
    /// ignored with a warning.
    IfCurrent,
}

/// Images by name.
pub type Images = Vec<(String, Manifest)>;

/// The images of `input`, locked by the lock beside it as `mode` says; the
/// warning to show when a lock was there but not used.
pub fn lock_images(input: &Path, images: Images, mode: LockUse) -> Result<(Images, Option<String>), LockError> {
    let path = path_for(input);
    let name = path.display().to_string();
    if !path.exists() {
        return match mode {
            LockUse::Required => Err(LockError::Stale {
                name: name.clone(),
                changes: vec![format!("there is no {name}")],
            }),
            LockUse::IfCurrent => Ok((images, None)),
        };
    }
    let lock = Lock::read(&path)?;
    let stages = images_stages(&images)?;
    let changes = lock.changes(&name, &stages);
    if !changes.is_empty() {
        return match mode {
            LockUse::Required => Err(LockError::Stale { name, changes }),
            LockUse::IfCurrent => Ok((
                images,
                Some(format!(
                    "{name} is not used, it does not fit: {} (run osbuild lock)",
                    changes.join("; ")
                )),
            )),
        };
    }
    // Pins change ids: an image built on an earlier one names its new tree.
    let mut renamed: BTreeMap<String, String> = BTreeMap::new();
    let mut locked = Vec::new();
    for ((n, m), (_, s)) in images.iter().zip(&stages) {
        let mut pinned = lock.apply(m, s);
        let mut p = Some(&mut pinned.pipeline);
        while let Some(pipeline) = p {
            if let Some(new) = pipeline.base.as_ref().and_then(|b| renamed.get(b)) {
                pipeline.base = Some(new.clone());
            }
            p = pipeline.build.as_deref_mut();
        }
        if let (Some(old), Some(new)) = (
            crate::plan::tree_id(&m.pipeline),
            crate::plan::tree_id(&pinned.pipeline),
        ) {
            renamed.insert(old, new);
        }
        locked.push((n.clone(), pinned));
    }
    Ok((locked, None))
}

/// Why an image's package stage `now` has no pins in the lock `name`, whose
/// stage in the same place is `before`.
fn describe_change(image: &str, name: &str, now: &PackageStage, before: Option<&LockedStage>) -> Vec<String> {
    let Some(before) = before else {
        return vec![format!(
            "{} (stage {} of image {image}) is not in {name}",
            now.stage.name,
            now.index + 1
        )];
    };
    if before.stage != now.stage.name {
        return vec![format!(
            "image {image} has {} where {name} has {}",
            now.stage.name, before.stage
        )];
    }
    let names = |o: &Map<String, Value>, key: &str| -> BTreeSet<String> {
        o.get(key)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    for key in ["packages", "remove"] {
        let (old, new) = (names(&before.options, key), names(&now.stage.options, key));
        for added in new.difference(&old) {
            out.push(match key {
                "packages" => format!("{added} is not in {name}"),
                _ => format!("removing {added} is not in {name}"),
            });
        }
        for gone in old.difference(&new) {
            out.push(match key {
                "packages" => format!("{gone} is in {name} but no longer asked for"),
                _ => format!("{name} removes {gone}, which is no longer asked for"),
            });
        }
    }
    let other: Vec<&String> = before
        .options
        .keys()
        .chain(now.stage.options.keys())
        .filter(|k| !["packages", "remove"].contains(&k.as_str()))
        .filter(|k| before.options.get(*k) != now.stage.options.get(*k))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if !other.is_empty() {
        let list: Vec<&str> = other.iter().map(|s| s.as_str()).collect();
        out.push(format!(
            "the {} of {} (image {image}) changed since {name}",
            list.join(", "),
            now.stage.name
        ));
    }
    if out.is_empty() {
        out.push(format!(
            "a package stage before {} (stage {} of image {image}) changed since {name}",
            now.stage.name,
            now.index + 1
        ));
    }
    out
}

fn segments(path: &serde_path_to_error::Path) -> Vec<PathSegment> {
    use serde_path_to_error::Segment;
    path.iter()
        .filter_map(|s| match s {
            Segment::Seq { index } => Some(PathSegment::Index(*index)),
            Segment::Map { key } => Some(PathSegment::Key(key.clone())),
            Segment::Enum { variant } => Some(PathSegment::Key(variant.clone())),
            Segment::Unknown => None,
        })
        .collect()
}

/// `repositories[0].packages[3].sha256` as path segments.
fn parse_place(place: &str) -> Vec<PathSegment> {
    let mut out = Vec::new();
    for part in place.split('.') {
        let (key, rest) = part.split_once('[').unwrap_or((part, ""));
        if !key.is_empty() {
            out.push(PathSegment::Key(key.to_string()));
        }
        for idx in rest.split('[') {
            if let Ok(i) = idx.trim_end_matches(']').parse() {
                out.push(PathSegment::Index(i));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
