//! How a locked package stage installs without network: from the pinned
//! files the engine fetched and verified before the build, bound read-only
//! at [`SOURCES`] (`sha256/<hex>`).
//!
//! The stage copies each pinned file into the tree's
//! `var/cache/apt/archives` under the name apt gives it (as the package
//! cache does), and points apt at a local flat repository whose `Packages`
//! index is made from those files' own control fields: apt resolves among
//! exactly the pinned versions and finds every file already downloaded. If
//! apt wants anything else (the lock is stale, or a stage before changed
//! what apt sees), it says so before installing anything: nothing can come
//! from anywhere but the lock.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::api::{StageError, StageResult};
use crate::debcache::{parse_print_uris, ARCHIVES};
use crate::debootstrap::archive_file;
use crate::lock::Locked;
use crate::tree::Tree;

/// Where the sandbox binds the verified sources, read-only.
pub const SOURCES: &str = "/run/osbuild/sources";

/// The stored file of a pinned SHA256, under a sources directory.
pub fn source_path(sources: &Path, sha256: &str) -> PathBuf {
    sources.join("sha256").join(sha256)
}

/// Copies every pinned file into the tree's archives; the bytes copied.
pub(crate) fn seed_archives(locked: &Locked, sources: &Path, tree: &Tree) -> Result<u64, StageError> {
    tree.create_dir_all(format!("{ARCHIVES}/partial"))?;
    let mut bytes = 0;
    for p in locked.pins() {
        let src = source_path(sources, &p.sha256);
        let dest = Path::new(ARCHIVES).join(archive_file(&p.name, &p.version, &p.arch));
        let copied = tree
            .copy_in(&src, &dest, 0o644)
            .map_err(|e| format!("{} {} ({}): {e}", p.name, p.version, src.display()))?;
        if copied != p.size {
            return Err(format!(
                "{} {}: {} has {copied} bytes, the lock says {}",
                p.name,
                p.version,
                src.display(),
                p.size
            )
            .into());
        }
        bytes += copied;
    }
    Ok(bytes)
}

/// Writes a flat repository for the pins at `dir` (a `Packages` index from
/// each file's control fields, and a `Release` naming it) and returns its
/// sources line, for an apt that sees `dir` as `seen_as`. `epoch` is the
/// Release's date.
pub(crate) fn local_repository(
    locked: &Locked,
    sources: &Path,
    dir: &Path,
    seen_as: &Path,
    epoch: u64,
) -> Result<String, StageError> {
    let suite = locked.repositories.first().map_or("locked", |r| r.suite.as_str());
    let mut index = String::new();
    for p in locked.pins() {
        let file = source_path(sources, &p.sha256);
        let control = crate::deb::control(&file)?;
        let named = (
            crate::deb::field(&control, "Package"),
            crate::deb::field(&control, "Version"),
        );
        if named != (Some(p.name.as_str()), Some(p.version.as_str())) {
            return Err(format!(
                "{}: the lock pins {} {}, but the file is {} {}",
                file.display(),
                p.name,
                p.version,
                named.0.unwrap_or("?"),
                named.1.unwrap_or("?")
            )
            .into());
        }
        index += &crate::deb::stanza(&control, &p.path, p.size, &p.sha256, p.priority.as_deref());
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))
    };
    write("Packages", &index)?;
    let sha = crate::lock::hex(&Sha256::digest(index.as_bytes()));
    write(
        "Release",
        &format!(
            // mmdebstrap picks the essential set by suite or codename.
            "Origin: osbuild\nLabel: locked packages\nSuite: {suite}\nCodename: {suite}\nDate: {}\nSHA256:\n {sha} {} Packages\n",
            release_date(epoch),
            index.len()
        ),
    )?;
    Ok(format!("deb [trusted=yes] copy:{}/ ./\n", seen_as.display()))
}

/// Fails unless apt's `--print-uris` output is empty: with every pinned file
/// in the archives, anything apt would still download is not in the lock.
pub(crate) fn nothing_else(print_uris: &str) -> StageResult {
    let extra: Vec<String> = parse_print_uris(print_uris).into_iter().map(|d| d.file).collect();
    if extra.is_empty() {
        return Ok(());
    }
    Err(format!(
        "apt would install {} which the lock does not pin: the lock is stale (run osbuild lock)",
        extra.join(", ")
    )
    .into())
}

/// Fails unless dpkg installed every pinned package (apt may leave out a
/// pinned one that nothing needs once the tree differs from what the lock
/// was resolved for).
pub(crate) fn all_installed(locked: &Locked, tree: &Tree) -> StageResult {
    let installed = crate::debcache::installed_files(tree)?;
    let missing: Vec<String> = locked
        .pins()
        .map(|p| archive_file(&p.name, &p.version, &p.arch))
        .filter(|f| !installed.contains(f))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(format!(
        "the lock pins {}, which apt did not install: the lock is stale (run osbuild lock)",
        missing.join(", ")
    )
    .into())
}

/// `epoch` as a Release file's `Date`.
fn release_date(epoch: u64) -> String {
    let days = (epoch / 86400) as i64;
    let secs = epoch % 86400;
    // Civil date from days (Howard Hinnant's algorithm).
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(days.rem_euclid(7)) as usize];
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{weekday}, {day:02} {} {year} {:02}:{:02}:{:02} UTC",
        months[(month - 1) as usize],
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_dates_read_back() {
        for epoch in [0, 951_822_000 - 3600, 1_783_764_997] {
            let text = release_date(epoch);
            assert_eq!(crate::resolve::parse_date(&text), Some(epoch), "{text}");
        }
        assert_eq!(release_date(1_783_764_997), "Sat, 11 Jul 2026 10:16:37 UTC");
    }

    #[test]
    fn anything_apt_would_download_is_named() {
        assert!(nothing_else("").is_ok());
        let err = nothing_else(
            "'copy:/tmp/r/pool/htop_3.2.2-2_amd64.deb' htop_3.2.2-2_amd64.deb 100 SHA256:0000000000000000000000000000000000000000000000000000000000000000\n",
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("htop_3.2.2-2_amd64.deb which the lock does not pin"),
            "{err}"
        );
    }
}
