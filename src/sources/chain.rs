//! The signature chain of every locked repository, checked after its files
//! are fetched: the `InRelease` the lock names (by SHA256) is verified with
//! `gpgv` against the lock's keyring, the package indices it signs are
//! fetched by SHA256, and every pin must be in them as pinned. The
//! `InRelease` and indices are kept in the sources directory like the
//! package files, so an offline build (`--sources DIR`) checks the chain
//! again without any network. The Debian rules are in
//! `osbuild_stages::chain`; this module fetches and reports.
//!
//! What cannot be checked is said, not hidden: a mirror that has moved on
//! since the lock was made (its `InRelease` is another), a repository with
//! only a detached `Release.gpg`, a key given inline, an RPM repository
//! (dnf's: its `repomd.xml` is rarely signed; rpm signs each package).
//! Each file's SHA256 is checked all the same.

use std::collections::BTreeMap;
use std::path::Path;

use osbuild_stages::chain;
use osbuild_stages::lock::{Locked, Repository};
use osbuild_stages::offline::source_path;

use super::{fetch, verify, SourceError, SourceFile};
use crate::manifest::Stage;

/// Checks the chain of every repository the stages' pins come from;
/// `fetching` says whether missing files may be downloaded into `dir` (else
/// `dir` must hold them). Returns what could not be checked, and why.
pub fn check<'a>(
    stages: impl Iterator<Item = &'a Stage>,
    dir: &Path,
    fetching: bool,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<String>, SourceError> {
    let mut notes = Vec::new();
    for (arch, repo) in repositories(stages) {
        if let Some(note) = check_one(&arch, &repo, dir, fetching, progress)? {
            notes.push(note);
        }
    }
    Ok(notes)
}

/// The locked repositories, each once with the pins of every stage that
/// installs from it (the same `InRelease`), with the architecture.
fn repositories<'a>(stages: impl Iterator<Item = &'a Stage>) -> Vec<(String, Repository)> {
    let mut groups: BTreeMap<(String, String, String), (String, Repository)> = BTreeMap::new();
    for locked in stages.filter_map(super::locked_of) {
        let Locked { arch, repositories } = locked;
        for r in repositories {
            let key = (
                arch.clone(),
                r.uri.clone().unwrap_or_default(),
                r.release.sha256.clone(),
            );
            match groups.get_mut(&key) {
                Some((_, known)) => {
                    for p in r.packages {
                        if !known.packages.iter().any(|q| q.sha256 == p.sha256) {
                            known.packages.push(p);
                        }
                    }
                }
                None => {
                    groups.insert(key, (arch.clone(), r));
                }
            }
        }
    }
    groups.into_values().collect()
}

fn check_one(
    arch: &str,
    repo: &Repository,
    dir: &Path,
    fetching: bool,
    progress: &mut dyn FnMut(&str),
) -> Result<Option<String>, SourceError> {
    let suite = &repo.suite;
    if repo.format == osbuild_stages::lock::Format::Rpm {
        return Ok(Some(format!(
            "{suite}: an RPM repository, whose metadata is not signed as Debian's is; each file's SHA256 is checked"
        )));
    }
    if repo.keyring.path == "inline" {
        return Ok(Some(format!(
            "{suite}: signed by a key given inline; its chain is not checked again"
        )));
    }
    if !repo.release.path.ends_with("InRelease") {
        return Ok(Some(format!(
            "{suite}: has no InRelease, only a Release; its chain is not checked again"
        )));
    }
    let Some(size) = repo.release.size else {
        return Ok(Some(format!(
            "{suite}: the lock does not record its InRelease's size (osbuild lock --update does); its chain is not checked"
        )));
    };
    let inrelease = SourceFile {
        sha256: repo.release.sha256.clone(),
        size,
        path: repo.release.path.clone(),
        uri: repo.uri.clone(),
        suite: suite.clone(),
        what: format!("{suite}'s InRelease"),
    };
    match have(&inrelease, dir, fetching) {
        Ok(()) => {}
        Err(SourceError::Mismatch { .. }) if fetching => {
            return Ok(Some(format!(
                "{suite}: the mirror's InRelease is not the one the lock was made from (the archive has \
                 changed since); its chain is not checked again, each file's SHA256 is"
            )))
        }
        Err(SourceError::Missing { dir, .. }) if !fetching => {
            return Ok(Some(format!(
                "{suite}: its InRelease is not in {} (osbuild fetch puts it there); its chain is not checked",
                dir.display()
            )))
        }
        Err(e) => return Err(e),
    }
    let chain_error = |message: String| SourceError::Chain {
        suite: suite.clone(),
        message,
    };
    let signed = chain::verify_signature(Path::new(&repo.keyring.path), &source_path(dir, &inrelease.sha256))
        .map_err(|e| chain_error(format!("its InRelease (sha256 {}) is {e}", inrelease.sha256)))?;
    let mut files = std::collections::HashMap::new();
    for index in chain::indices(&signed, repo, arch).map_err(chain_error)? {
        let file = SourceFile {
            sha256: index.sha256.clone(),
            size: index.size,
            path: index.path.clone(),
            uri: repo.uri.clone(),
            suite: suite.clone(),
            what: format!("{suite}'s {}", index.name),
        };
        have(&file, dir, fetching)?;
        let bytes = std::fs::read(source_path(dir, &file.sha256))
            .map_err(|e| SourceError::Io(format!("{}: {e}", file.what)))?;
        let bytes = chain::decompress(&index.name, &bytes).map_err(chain_error)?;
        files.extend(chain::index_files(&bytes));
    }
    let problems = chain::unsigned_pins(repo, &files);
    if !problems.is_empty() {
        return Err(chain_error(format!(
            "{} pins are not what the archive signed:\n  {}",
            problems.len(),
            problems.join("\n  ")
        )));
    }
    progress(&format!(
        "{suite}: {} pins are the archive's, by its signed InRelease and package indices",
        repo.packages.len()
    ));
    Ok(None)
}

/// Makes sure `file` is in `dir` with its SHA256: downloaded if `fetching`
/// and absent, hashed again if `dir` may be anyone's (not fetching).
fn have(file: &SourceFile, dir: &Path, fetching: bool) -> Result<(), SourceError> {
    let one = std::slice::from_ref(file);
    if fetching {
        fetch(one, dir, &mut |_| {}).map(|_| ())
    } else {
        verify(one, dir)
    }
}
