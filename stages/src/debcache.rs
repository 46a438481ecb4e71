//! The package cache of the Debian stages (apt and debootstrap).
//!
//! The engine mounts a persistent directory at `ctx.cache` (the store's `deb`
//! cache, shared by every build on the store). Downloaded packages live in
//! `debs/<sha256>.deb` there, keyed by the SHA256 the signed Packages index
//! gives for them, so a file is only ever stored under the hash apt verified
//! it against. Before apt runs, the stage works out which files it will
//! install and copies those found in the cache into the tree's
//! `var/cache/apt/archives`, where apt takes them as already downloaded;
//! afterwards it stores the newly downloaded ones (to a temporary name, then
//! renamed: concurrent builds never see half a file) and empties
//! `var/cache/apt/archives`, so no package file ends up in the stored tree. A
//! copy rather than a hard link: the cache and the tree are different mounts.
//!
//! Which files: the cache's `sets/<key>` records the package files a run
//! installed, under a key over everything that decided them (see
//! `Apt::set_key` and the debootstrap stage's); a run with the same key seeds
//! exactly those. Otherwise apt is asked (`--print-uris`, which gives file
//! name, size and SHA256), which costs a dependency resolution (about half a
//! second, more for the bootstrap's separate apt). apt trusts a file already
//! in `archives` on its name and size, so after the run every seeded file is
//! checked against the updated index (`keep_downloads`).
//!
//! The package lists (`var/lib/apt/lists`) are removed from the tree at the
//! end too (tens of MB, stale as soon as the mirror moves on, and every apt
//! stage runs `apt-get update` first anyway); they are kept in the cache's
//! `lists/` instead and copied in before `apt-get update`, which then only
//! checks that they are current.

use std::collections::BTreeSet;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::api::{StageError, StageResult, WithPath};
use crate::tree::Tree;

/// Where apt keeps package files, in the tree.
pub(crate) const ARCHIVES: &str = "var/cache/apt/archives";
/// Where apt keeps package lists, in the tree.
pub(crate) const LISTS: &str = "var/lib/apt/lists";

/// A package file apt would download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Download {
    /// The file name in `var/cache/apt/archives`.
    pub file: String,
    pub size: u64,
    /// Lower-case hex; empty when the index gives no SHA256.
    pub sha256: String,
}

/// Parses `apt-get --print-uris` output: `'URI' FILE SIZE SHA256:HEX` lines.
pub(crate) fn parse_print_uris(out: &str) -> Vec<Download> {
    out.lines()
        .filter(|l| l.starts_with('\''))
        .filter_map(|l| {
            let rest = l[1..].split_once('\'')?.1;
            let mut words = rest.split_whitespace();
            let file = words.next()?.to_string();
            let size = words.next()?.parse().ok()?;
            let sha256 = words
                .next()
                .and_then(|h| h.strip_prefix("SHA256:"))
                .filter(|h| h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit()))
                .unwrap_or("")
                .to_ascii_lowercase();
            if file.contains('/') || !file.ends_with(".deb") {
                return None;
            }
            Some(Download { file, size, sha256 })
        })
        .collect()
}

/// The `deb` cache: `debs/<sha256>.deb`, `lists/` and `sets/<key>`.
pub(crate) struct DebCache {
    debs: PathBuf,
    lists: PathBuf,
    sets: PathBuf,
}

#[cfg(test)]
thread_local! {
    /// (hits, misses) of the last `seed` on this thread, for the tests.
    pub(crate) static LAST_SEED: std::cell::Cell<(usize, usize)> = const { std::cell::Cell::new((0, 0)) };
    /// How many packages the last `store` on this thread added: what was downloaded.
    pub(crate) static LAST_STORE: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

impl DebCache {
    pub(crate) fn open(root: &Path) -> Result<Self, StageError> {
        let cache = DebCache {
            debs: root.join("debs"),
            lists: root.join("lists"),
            sets: root.join("sets"),
        };
        for d in [&cache.debs, &cache.lists, &cache.sets] {
            std::fs::create_dir_all(d).at(d)?;
        }
        Ok(cache)
    }

    fn path(&self, sha256: &str) -> PathBuf {
        self.debs.join(format!("{sha256}.deb"))
    }

    /// Copies the cached ones of `wanted` into `archives`; logs them and
    /// returns those copied.
    pub(crate) fn seed(&self, wanted: &[Download], tree: &Tree, archives: &str) -> Result<Vec<Download>, StageError> {
        tree.create_dir_all(format!("{archives}/partial"))?;
        let mut copied = Vec::new();
        let mut bytes = 0;
        for d in wanted {
            let src = self.path(&d.sha256);
            let dest = Path::new(archives).join(&d.file);
            let cached = !d.sha256.is_empty() && std::fs::metadata(&src).is_ok_and(|m| m.len() == d.size);
            if cached && tree.copy_in(&src, &dest, 0o644)? == d.size {
                bytes += d.size;
                copied.push(d.clone());
                // Marks it used for `store gc` (best effort: only a hint).
                if let Ok(f) = std::fs::File::open(&src) {
                    let _ = f.set_modified(std::time::SystemTime::now());
                }
            }
        }
        let (hits, misses) = (copied.len(), wanted.len() - copied.len());
        println!(
            "package cache: {hits} of {} packages from the cache ({} MB), {misses} not cached",
            wanted.len(),
            bytes / 1_000_000
        );
        #[cfg(test)]
        LAST_SEED.with(|c| c.set((hits, misses)));
        Ok(copied)
    }

    /// The package files a stage installed the last time it ran with the
    /// same inputs (`key`), if it has run.
    pub(crate) fn recorded(&self, key: &str) -> Option<Vec<Download>> {
        let text = std::fs::read_to_string(self.sets.join(key)).ok()?;
        text.lines()
            .map(|l| {
                let mut w = l.split(' ');
                let (sha256, size, file) = (w.next()?, w.next()?.parse().ok()?, w.next()?);
                let valid = sha256.len() == 64 && file.ends_with(".deb") && !file.contains('/');
                valid.then(|| Download {
                    file: file.into(),
                    size,
                    sha256: sha256.into(),
                })
            })
            .collect()
    }

    /// Records the package files a stage installed, for its next run with
    /// the same inputs.
    pub(crate) fn record(&self, key: &str, installed: &[Download]) -> StageResult {
        let text: String = installed
            .iter()
            .filter(|d| !d.sha256.is_empty())
            .map(|d| format!("{} {} {}\n", d.sha256, d.size, d.file))
            .collect();
        let dest = self.sets.join(key);
        let tmp = self.sets.join(format!(".{key}.{}.tmp", std::process::id()));
        std::fs::write(&tmp, text).at(&tmp)?;
        std::fs::rename(&tmp, &dest).at(&dest)?;
        Ok(())
    }

    /// Stores the files of `got` found in `archives` that the cache lacks.
    pub(crate) fn store(&self, got: &[Download], tree: &Tree, archives: &str) -> Result<usize, StageError> {
        let mut stored = 0;
        for d in got.iter().filter(|d| !d.sha256.is_empty()) {
            let src = Path::new(archives).join(&d.file);
            let dest = self.path(&d.sha256);
            if dest.exists()
                || !tree
                    .symlink_metadata(&src)
                    .is_ok_and(|m| m.is_file() && m.len() == d.size)
            {
                continue;
            }
            let tmp = self.debs.join(format!(".{}.{}.tmp", d.sha256, std::process::id()));
            copy_out(tree, &src, &tmp, None)?;
            std::fs::rename(&tmp, &dest).at(&dest)?;
            stored += 1;
        }
        println!("package cache: stored {stored} new packages");
        #[cfg(test)]
        LAST_STORE.with(|c| c.set(stored));
        Ok(stored)
    }

    /// Copies the cached package lists into the tree before `apt-get update`.
    /// (Atomically, keeping the modification time apt relies on, skipping
    /// those already there with the same size and time.)
    pub(crate) fn lists_in(&self, tree: &Tree) -> StageResult {
        tree.create_dir_all(format!("{LISTS}/partial"))?;
        let Ok(entries) = std::fs::read_dir(&self.lists) else {
            return Ok(());
        };
        for e in entries.flatten() {
            let name = e.file_name();
            if !e.file_type().at(&e.path())?.is_file() || skipped(&name) {
                continue;
            }
            let src = e.path();
            let meta = e.metadata().at(&src)?;
            let dest = Path::new(LISTS).join(&name);
            if tree.symlink_metadata(&dest).is_ok_and(|m| same(&m, &meta)) {
                continue;
            }
            let mut from = std::fs::File::open(&src).at(&src)?;
            tree.write_with(&dest, 0o644, None, |f| {
                std::io::copy(&mut from, f)?;
                f.set_modified(meta.modified()?)
            })?;
        }
        Ok(())
    }

    /// Keeps the tree's package lists for the next `apt-get update`.
    pub(crate) fn lists_out(&self, tree: &Tree) -> StageResult {
        let Ok(entries) = tree.read_dir(LISTS) else {
            return Ok(());
        };
        for e in entries {
            if e.kind != crate::tree::Kind::File || skipped(&e.name) {
                continue;
            }
            let src = Path::new(LISTS).join(&e.name);
            let meta = tree.symlink_metadata(&src)?;
            let dest = self.lists.join(&e.name);
            if std::fs::metadata(&dest).is_ok_and(|m| same(&m, &meta)) {
                continue;
            }
            let tmp = self
                .lists
                .join(format!(".{}.{}.tmp", e.name.to_string_lossy(), std::process::id()));
            copy_out(tree, &src, &tmp, Some(meta.modified().at(&src)?))?;
            std::fs::rename(&tmp, &dest).at(&dest)?;
        }
        Ok(())
    }
}

/// The key under which the cache records a stage's package set: a SHA256
/// over everything that decides what the package tool installs.
pub(crate) fn set_key(stage: &str, inputs: &[&[u8]]) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(stage.as_bytes());
    for i in inputs {
        h.update((i.len() as u64).to_le_bytes());
        h.update(i);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// After mmdebstrap or apt ran with `seeded` taken from the cache: checks that
/// each of those is the file the (now current) index names, stores the new
/// downloads, and records which package files the tree now has installed.
///
/// apt takes a file already in `var/cache/apt/archives` on its name and size
/// alone, so a cached file whose name the index now gives to other contents
/// would be installed unverified: that fails the stage. (A Debian archive
/// never reuses a file name, so this guards against a damaged cache.)
pub(crate) fn keep_downloads(cache: &DebCache, tree: &Tree, key: &str, seeded: &[Download]) -> StageResult {
    let index = crate::debootstrap::package_index(tree, None)?;
    check_seeded(seeded, &index)?;
    let installed = installed_files(tree)?;
    let used: Vec<Download> = tree
        .read_dir(ARCHIVES)?
        .into_iter()
        .filter_map(|e| {
            let name = e.name.into_string().ok()?;
            installed.contains(&name).then(|| index.get(&name).cloned())?
        })
        .collect();
    cache.store(&used, tree, ARCHIVES)?;
    cache.record(key, &used)
}

fn check_seeded(seeded: &[Download], index: &std::collections::BTreeMap<String, Download>) -> StageResult {
    for d in seeded {
        if let Some(i) = index.get(&d.file) {
            if i.sha256 != d.sha256 || i.size != d.size {
                return Err(format!(
                    "the package cache gave {} with SHA256 {}, but the index says {}: \
                     the cache is damaged (remove the store's cache/deb)",
                    d.file, d.sha256, i.sha256
                )
                .into());
            }
        }
    }
    Ok(())
}

/// The archive file names (`NAME_VERSION_ARCH.deb`) of the packages dpkg
/// has installed in the tree.
pub(crate) fn installed_files(tree: &Tree) -> Result<BTreeSet<String>, StageError> {
    let text = tree.read_to_string("var/lib/dpkg/status")?;
    Ok(text
        .split("\n\n")
        .filter_map(|stanza| {
            let field = |k: &str| {
                stanza
                    .lines()
                    .find_map(|l| l.strip_prefix(k)?.strip_prefix(':').map(str::trim))
            };
            if field("Status")? != "install ok installed" {
                return None;
            }
            Some(crate::debootstrap::archive_file(
                field("Package")?,
                field("Version")?,
                field("Architecture")?,
            ))
        })
        .collect())
}

/// Lock files and temporaries are not package lists.
fn skipped(name: &std::ffi::OsStr) -> bool {
    name == "lock" || name.as_bytes().starts_with(b".")
}

fn same(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    a.len() == b.len() && a.modified().ok() == b.modified().ok()
}

/// Copies a file of the tree to `to` outside it (the cache), with `mtime`.
fn copy_out(tree: &Tree, from: &Path, to: &Path, mtime: Option<std::time::SystemTime>) -> StageResult {
    let mut src = tree.open_file(from)?;
    let mut f = std::fs::File::create(to).at(to)?;
    std::io::copy(&mut src, &mut f).at(to)?;
    if let Some(t) = mtime {
        f.set_modified(t).at(to)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn print_uris() {
        let out = "'http://mirror.example/debian/pool/main/h/hello/hello_2.10-3_amd64.deb' hello_2.10-3_amd64.deb 53096 SHA256:0AbC3fe0b0b5a1e8c7f1d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2\n\
                   'http://mirror.example/debian/pool/main/l/less/less_590-2_amd64.deb' less_590-2_amd64.deb 132000 MD5Sum:0123\n\
                   Reading package lists...\n";
        let d = parse_print_uris(out);
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].file, "hello_2.10-3_amd64.deb");
        assert_eq!(d[0].size, 53096);
        assert_eq!(
            d[0].sha256,
            "0abc3fe0b0b5a1e8c7f1d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2"
        );
        assert_eq!(d[1].sha256, "", "no SHA256: not cacheable");
    }

    #[test]
    fn cache_seed_and_store() {
        let base = std::env::temp_dir().join(format!("osbuild-debcache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let cache = DebCache::open(&base.join("cache")).unwrap();
        let archives = base.join("tree/archives");
        std::fs::create_dir_all(&archives).unwrap();
        let tree = Tree::open(&base.join("tree")).unwrap();
        let sha = "a".repeat(64);
        let d = vec![Download {
            file: "x_1_all.deb".into(),
            size: 3,
            sha256: sha.clone(),
        }];
        assert_eq!(cache.seed(&d, &tree, "archives").unwrap(), vec![]);
        std::fs::write(archives.join("x_1_all.deb"), "abc").unwrap();
        assert_eq!(cache.store(&d, &tree, "archives").unwrap(), 1);
        assert_eq!(cache.store(&d, &tree, "archives").unwrap(), 0, "already cached");
        std::fs::remove_file(archives.join("x_1_all.deb")).unwrap();
        assert_eq!(cache.seed(&d, &tree, "archives").unwrap(), d);
        assert_eq!(std::fs::read_to_string(archives.join("x_1_all.deb")).unwrap(), "abc");
        // A size that does not match is never taken from the cache.
        let wrong = vec![Download {
            size: 4,
            ..d[0].clone()
        }];
        assert_eq!(cache.seed(&wrong, &tree, "archives").unwrap(), vec![]);

        // Recorded sets round-trip; an unknown key has none.
        assert_eq!(cache.recorded("k"), None);
        cache.record("k", &d).unwrap();
        assert_eq!(cache.recorded("k"), Some(d.clone()));
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn seeded_files_must_match_the_index() {
        let d = |file: &str, sha: char| Download {
            file: file.into(),
            size: 3,
            sha256: sha.to_string().repeat(64),
        };
        let index: std::collections::BTreeMap<String, Download> =
            [("x_1_all.deb".to_string(), d("x_1_all.deb", 'a'))].into();
        assert!(check_seeded(&[d("x_1_all.deb", 'a')], &index).is_ok());
        assert!(
            check_seeded(&[d("y_1_all.deb", 'b')], &index).is_ok(),
            "not in the index: not used"
        );
        let err = check_seeded(&[d("x_1_all.deb", 'b')], &index).unwrap_err();
        assert!(err.to_string().contains("x_1_all.deb"), "{err}");
    }

    #[test]
    fn installed_archive_files() {
        let tree = std::env::temp_dir().join(format!("osbuild-dpkg-status-{}", std::process::id()));
        std::fs::create_dir_all(tree.join("var/lib/dpkg")).unwrap();
        std::fs::write(
            tree.join("var/lib/dpkg/status"),
            "Package: login\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1:4.13+dfsg1-1\n\n\
             Package: gone\nStatus: deinstall ok config-files\nArchitecture: amd64\nVersion: 1.0\n\n\
             Package: tzdata\nStatus: install ok installed\nArchitecture: all\nVersion: 2024a-0\n",
        )
        .unwrap();
        let files = installed_files(&Tree::open(&tree).unwrap()).unwrap();
        std::fs::remove_dir_all(&tree).unwrap();
        assert_eq!(
            files.into_iter().collect::<Vec<_>>(),
            ["login_1%3a4.13+dfsg1-1_amd64.deb", "tzdata_2024a-0_all.deb"]
        );
    }
}
