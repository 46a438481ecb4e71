//! Disk usage and garbage collection.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::{age, Lookup, ObjectMeta, Store};
use crate::manifest::Id;

/// What `gc` may remove.
#[derive(Debug, Clone)]
pub struct GcOptions {
    /// Remove every object that no name needs, however recently used.
    pub all: bool,
    /// Otherwise keep objects used within this many days.
    pub keep_days: u64,
}

#[derive(Debug, Default)]
pub struct GcReport {
    pub removed: usize,
    pub kept: usize,
    pub freed_bytes: u64,
    /// Files removed from the package caches (`cache/<name>`).
    pub cache_files_removed: usize,
    pub cache_freed_bytes: u64,
}

/// Sizes on disk, counting each hard-linked inode once.
#[derive(Debug, Default)]
pub struct Usage {
    pub total_bytes: u64,
    pub objects: usize,
    /// Per object: bytes of its own directory (its layer, image or log).
    pub per_object: BTreeMap<Id, u64>,
    /// The package caches (`cache/<name>`), part of the total.
    pub cache_bytes: u64,
}

impl Store {
    /// Bytes used by each object and in all.
    pub fn usage(&self) -> io::Result<Usage> {
        let mut usage = Usage::default();
        let mut seen = HashSet::new();
        for meta in self.objects()? {
            let bytes = dir_bytes(&self.object_dir(&meta.id), &mut seen)?;
            usage.total_bytes += bytes;
            usage.objects += 1;
            usage.per_object.insert(meta.id, bytes);
        }
        usage.total_bytes += dir_bytes(&self.root.join("tmp"), &mut seen)?;
        usage.cache_bytes = dir_bytes(&self.root.join("cache"), &mut seen)?;
        usage.total_bytes += usage.cache_bytes;
        Ok(usage)
    }

    /// Removes objects nothing needs. Named trees are always kept, and so is
    /// every stage before them and every build root they were built in.
    /// Unusable objects (see [`Lookup`]) are removed too, unless a kept tree
    /// still stacks their layer.
    pub fn gc(&self, options: &GcOptions) -> io::Result<GcReport> {
        let mut objects = BTreeMap::new();
        let mut unusable = Vec::new();
        for (id, found) in self.lookup_all()? {
            match found {
                Lookup::Complete(meta) => {
                    objects.insert(id, meta);
                }
                Lookup::Unusable(_) => unusable.push(id),
                Lookup::Absent => {}
            }
        }
        let objects: BTreeMap<Id, ObjectMeta> = objects;
        let mut keep: BTreeSet<Id> = self.names()?.into_iter().map(|(_, id)| id).collect();
        if !options.all {
            let limit = options.keep_days * 24 * 3600;
            for id in objects.keys() {
                if age(&self.object_dir(id).join("meta.json")) <= limit {
                    keep.insert(id.clone());
                }
            }
        }
        // Close over what a kept object stands on: its parent chain (which
        // holds its layers, and makes rebuilding it a no-op) and its build root.
        let mut todo: Vec<Id> = keep.iter().cloned().collect();
        while let Some(id) = todo.pop() {
            let Some(meta) = objects.get(&id) else { continue };
            for dep in meta.parent.iter().chain(&meta.build).chain(&meta.layers) {
                if keep.insert(dep.clone()) {
                    todo.push(dep.clone());
                }
            }
        }
        let mut report = GcReport::default();
        let mut seen = HashSet::new();
        for id in objects.keys() {
            if keep.contains(id) {
                report.kept += 1;
                continue;
            }
            self.remove_counted(id, &mut seen, &mut report)?;
        }
        for id in unusable.iter().filter(|id| !keep.contains(*id)) {
            self.remove_counted(id, &mut seen, &mut report)?;
        }
        // Names whose object is gone mean nothing any more.
        for (name, id) in self.names()? {
            if !self.contains(&id) {
                let _ = fs::remove_file(self.root.join("refs").join(super::ref_file(&name)));
            }
        }
        prune_cache(&self.root.join("cache"), options, &mut report)?;
        // Logs of failed runs and handed-over images, and kept Slurm runs.
        for dir in ["logs", "slurm"] {
            prune_old(&self.root.join(dir), options)?;
        }
        Ok(report)
    }

    fn remove_counted(&self, id: &str, seen: &mut HashSet<(u64, u64)>, report: &mut GcReport) -> io::Result<()> {
        report.freed_bytes += dir_bytes(&self.object_dir(id), seen)?;
        self.remove_object(id)?;
        let _ = fs::remove_file(self.root.join("locks").join(id));
        report.removed += 1;
        Ok(())
    }
}

/// Removes the cache files not used within `keep_days` (all of them with
/// `all`). A cache file only saves a download, so losing one costs time, never
/// correctness. Used means read or written: the newer of the access time
/// (which `relatime` still moves once a day) and the modification time (which
/// the deb cache sets on every use, for file systems mounted `noatime`).
fn prune_cache(dir: &Path, options: &GcOptions, report: &mut GcReport) -> io::Result<()> {
    let limit = options.keep_days * 24 * 3600;
    for entry in entries_if_any(dir)? {
        let meta = entry.metadata()?;
        if meta.is_dir() {
            prune_cache(&entry.path(), options, report)?;
            continue;
        }
        if options.all || idle_secs(&meta) > limit {
            fs::remove_file(entry.path())?;
            report.cache_files_removed += 1;
            report.cache_freed_bytes += meta.blocks() * 512;
        }
    }
    Ok(())
}

/// Removes the entries of `dir` (files, or whole directories) not changed
/// within `keep_days` (all of them with `all`).
fn prune_old(dir: &Path, options: &GcOptions) -> io::Result<()> {
    let limit = options.keep_days * 24 * 3600;
    for entry in entries_if_any(dir)? {
        let meta = entry.metadata()?;
        let age = meta
            .modified()
            .ok()
            .and_then(|t| t.elapsed().ok())
            .map_or(0, |d| d.as_secs());
        if options.all || age > limit {
            if meta.is_dir() {
                fs::remove_dir_all(entry.path())?;
            } else {
                fs::remove_file(entry.path())?;
            }
        }
    }
    Ok(())
}

/// The entries of `dir`; none if it does not exist.
fn entries_if_any(dir: &Path) -> io::Result<Vec<fs::DirEntry>> {
    match fs::read_dir(dir) {
        Ok(entries) => entries.collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// Seconds since a file was last read or written.
fn idle_secs(meta: &fs::Metadata) -> u64 {
    let since = |t: io::Result<std::time::SystemTime>| t.ok().and_then(|t| t.elapsed().ok()).map_or(0, |d| d.as_secs());
    since(meta.accessed()).min(since(meta.modified()))
}

fn dir_bytes(path: &Path, seen: &mut HashSet<(u64, u64)>) -> io::Result<u64> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut total = 0;
    if seen.insert((meta.dev(), meta.ino())) {
        total += meta.blocks() * 512;
    }
    if meta.is_dir() {
        for entry in fs::read_dir(path)? {
            total += dir_bytes(&entry?.path(), seen)?;
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{commit_for_test, ObjectKind};

    /// An assembler's work for a prefix tree is an image like any: kept
    /// while used recently (with the tree it stands on), removed by `--all`
    /// when nothing named needs it.
    #[test]
    fn prefix_objects_are_images_like_any() {
        let root = std::env::temp_dir().join(format!("osbuild-gc-prefix-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let store = Store::open(&root).unwrap();
        let [base, tree, prefix, image] = ["a", "b", "c", "d"].map(|x| x.repeat(64));
        commit_for_test(&store, &base, ObjectKind::Tree, None, vec![base.clone()], |dir| {
            fs::write(dir.join("motd"), "hi\n").unwrap();
        });
        let layers = vec![base.clone(), tree.clone()];
        commit_for_test(&store, &tree, ObjectKind::Tree, Some(&base), layers, |dir| {
            fs::write(dir.join("hostname"), "web\n").unwrap();
        });
        commit_for_test(&store, &prefix, ObjectKind::Image, Some(&base), vec![], |dir| {
            fs::write(dir.join("disk.img"), "prefix").unwrap();
        });
        commit_for_test(&store, &image, ObjectKind::Image, Some(&tree), vec![], |dir| {
            fs::write(dir.join("disk.img"), "image").unwrap();
        });
        let report = store
            .gc(&GcOptions {
                all: false,
                keep_days: 14,
            })
            .unwrap();
        assert_eq!((report.removed, report.kept), (0, 4));
        store.set_name("web", &tree).unwrap();
        let report = store
            .gc(&GcOptions {
                all: true,
                keep_days: 14,
            })
            .unwrap();
        assert_eq!((report.removed, report.kept), (2, 2));
        assert!(store.contains(&base) && store.contains(&tree));
        assert!(!store.contains(&prefix) && !store.contains(&image));
        drop(store);
        fs::remove_dir_all(&root).unwrap();
    }
}
