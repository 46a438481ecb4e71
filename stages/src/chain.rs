//! The signature chain from a Debian archive's key to a lock's pins: the
//! keyring signs `InRelease`, `InRelease` lists each package index's SHA256,
//! each index lists each package file's SHA256. A lock records the
//! `InRelease` it was made from (by SHA256) and the keyring; checking the
//! chain again shows that every pin is one the archive signed, so a lock
//! whose checksums were edited (with a mirror serving the edited files) is
//! caught, not only a file that does not match its pin.
//!
//! Parsing is kept apart from I/O: the caller fetches the files (by SHA256,
//! into the sources directory) and hands their bytes here; only the
//! signature check runs a program (`gpgv`, which apt itself uses).

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use crate::lock::Repository;

/// A package index as a signed `Release` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexRef {
    /// Relative to the repository's root: what to fetch (the `by-hash` name
    /// when the archive has them, which outlives the next update).
    pub path: String,
    pub sha256: String,
    pub size: u64,
    /// `main/binary-amd64/Packages.gz`, for messages.
    pub name: String,
}

/// The text `gpgv` found signed in `inrelease` by a key of `keyring`: only
/// that part is read, never what may surround it.
pub fn verify_signature(keyring: &Path, inrelease: &Path) -> Result<String, String> {
    if !keyring.is_file() {
        return Err(format!("the keyring {} is not on this machine", keyring.display()));
    }
    let out = Command::new("gpgv")
        .arg("--keyring")
        .arg(keyring)
        .args(["--output", "-"])
        .arg(inrelease)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("LC_ALL", "C")
        .output()
        .map_err(|e| format!("cannot run gpgv: {e}"))?;
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr);
        let why = why.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("").trim();
        return Err(format!("not signed by a key of {}: {why}", keyring.display()));
    }
    String::from_utf8(out.stdout).map_err(|_| "the signed text is not UTF-8".to_string())
}

/// The package indices of `repo` for `arch` that a signed `Release` text
/// lists: for each component, the `.gz` index (the fastest to read), else
/// `.xz`, else the plain one. An error names a component without any.
pub fn indices(release: &str, repo: &Repository, arch: &str) -> Result<Vec<IndexRef>, String> {
    let hashes = sha256_section(release);
    let by_hash = field(release, "Acquire-By-Hash").is_some_and(|v| v.eq_ignore_ascii_case("yes"));
    // dists/bookworm/InRelease → dists/bookworm; a flat repository's sits beside its indices.
    let dir = repo.release.path.rsplit_once('/').map_or("", |(d, _)| d);
    let components: Vec<String> = if repo.components.is_empty() {
        vec![String::new()]
    } else {
        repo.components.iter().map(|c| format!("{c}/binary-{arch}/")).collect()
    };
    let mut out = Vec::new();
    for prefix in &components {
        let found = ["Packages.gz", "Packages.xz", "Packages"].iter().find_map(|file| {
            let name = format!("{prefix}{file}");
            hashes.get(name.as_str()).map(|(sha, size)| (name, sha.clone(), *size))
        });
        let Some((name, sha256, size)) = found else {
            return Err(format!(
                "the signed Release of {} lists no package index for {}",
                repo.suite,
                if prefix.is_empty() {
                    "the repository"
                } else {
                    prefix.trim_end_matches('/')
                }
            ));
        };
        let within = match (by_hash, name.rsplit_once('/')) {
            (true, Some((d, _))) => format!("{d}/by-hash/SHA256/{sha256}"),
            (true, None) => format!("by-hash/SHA256/{sha256}"),
            (false, _) => name.clone(),
        };
        let path = if dir.is_empty() {
            within
        } else {
            format!("{dir}/{within}")
        };
        out.push(IndexRef {
            path,
            sha256,
            size,
            name,
        });
    }
    Ok(out)
}

/// A signed Release's `SHA256:` section: path → (sha256, size).
fn sha256_section(release: &str) -> HashMap<&str, (String, u64)> {
    let mut out = HashMap::new();
    let mut inside = false;
    for line in release.lines() {
        if !line.starts_with(' ') {
            inside = line.trim_end() == "SHA256:";
            continue;
        }
        if !inside {
            continue;
        }
        let mut parts = line.split_whitespace();
        if let (Some(sha), Some(size), Some(path)) = (parts.next(), parts.next(), parts.next()) {
            if let Ok(size) = size.parse() {
                out.insert(path, (sha.to_ascii_lowercase(), size));
            }
        }
    }
    out
}

fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k == key).then(|| v.trim())
    })
}

/// An index's files: `Filename` → (`SHA256`, `Size`).
pub fn index_files(index: &[u8]) -> HashMap<String, (String, u64)> {
    let text = String::from_utf8_lossy(index);
    let mut out = HashMap::new();
    let (mut filename, mut sha, mut size) = (None, None, None);
    for line in text.lines().chain(std::iter::once("")) {
        if line.is_empty() {
            if let (Some(f), Some(s), Some(n)) = (filename.take(), sha.take(), size.take()) {
                out.insert(f, (s, n));
            }
            (filename, sha, size) = (None, None, None);
        } else if let Some(v) = line.strip_prefix("Filename:") {
            filename = Some(v.trim().to_string());
        } else if let Some(v) = line.strip_prefix("SHA256:") {
            sha = Some(v.trim().to_ascii_lowercase());
        } else if let Some(v) = line.strip_prefix("Size:") {
            size = v.trim().parse().ok();
        }
    }
    out
}

/// An index's bytes, decompressed as its name says.
pub fn decompress(name: &str, data: &[u8]) -> Result<Vec<u8>, String> {
    let ext = [".gz", ".xz", ".zst"]
        .into_iter()
        .find(|e| name.ends_with(e))
        .unwrap_or("");
    crate::deb::decompress(ext, data).map_err(|e| format!("{name}: {e}"))
}

/// Each pin of `repo` that the signed indices do not list as it is, as
/// "name version: why".
pub fn unsigned_pins(repo: &Repository, files: &HashMap<String, (String, u64)>) -> Vec<String> {
    let mut out = Vec::new();
    for p in &repo.packages {
        match files.get(&p.path) {
            None => out.push(format!(
                "{} {}: {} is in no package index {} signed",
                p.name, p.version, p.path, repo.suite
            )),
            Some((sha, size)) if *sha != p.sha256 || *size != p.size => out.push(format!(
                "{} {}: the lock pins SHA256 {} ({} bytes), {}'s signed index says {sha} ({size} bytes)",
                p.name, p.version, p.sha256, p.size, repo.suite
            )),
            Some(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lock::{Keyring, Pin, Release};

    fn repo(components: &[&str], release_path: &str) -> Repository {
        Repository {
            format: Default::default(),
            uri: None,
            suite: "bookworm".into(),
            components: components.iter().map(|c| c.to_string()).collect(),
            release: Release {
                path: release_path.into(),
                sha256: "0".repeat(64),
                size: None,
                date: 0,
            },
            keyring: Keyring {
                path: "/usr/share/keyrings/debian-archive-keyring.gpg".into(),
                sha256: "1".repeat(64),
            },
            packages: vec![Pin {
                name: "less".into(),
                version: "590-2".into(),
                arch: "amd64".into(),
                size: 131_000,
                sha256: "a".repeat(64),
                path: "pool/main/l/less/less_590-2_amd64.deb".into(),
                priority: None,
            }],
        }
    }

    const RELEASE: &str = "Origin: Debian\nSuite: stable\nAcquire-By-Hash: yes\nMD5Sum:\n \
        f230d61720e789abf5df55d6026230c6 50060337 main/binary-amd64/Packages\nSHA256:\n \
        515e692f2c4121c6fcec444ef100cc18f79a991910615f3a88c8b7becfc94d2f 50060337 main/binary-amd64/Packages\n \
        6777ea16514725f9427f48c240d92e0a6b8496138e37a1491d8597e66774e309 12084798 main/binary-amd64/Packages.gz\n \
        9e0b5aabb2465b3d2e7a7fe27f9913846277833f7a2826e7767acccff5b588c5  8790396 main/binary-amd64/Packages.xz\n";

    #[test]
    fn the_gz_index_of_each_component_by_hash() {
        let found = indices(RELEASE, &repo(&["main"], "dists/bookworm/InRelease"), "amd64").unwrap();
        assert_eq!(
            found,
            [IndexRef {
                path: "dists/bookworm/main/binary-amd64/by-hash/SHA256/6777ea16514725f9427f48c240d92e0a6b8496138e37a1491d8597e66774e309".into(),
                sha256: "6777ea16514725f9427f48c240d92e0a6b8496138e37a1491d8597e66774e309".into(),
                size: 12_084_798,
                name: "main/binary-amd64/Packages.gz".into(),
            }]
        );
        // Without by-hash, the index's own name; a component the Release lacks is an error.
        let plain = RELEASE.replace("Acquire-By-Hash: yes\n", "");
        let found = indices(&plain, &repo(&["main"], "dists/bookworm/InRelease"), "amd64").unwrap();
        assert_eq!(found[0].path, "dists/bookworm/main/binary-amd64/Packages.gz");
        let err = indices(
            RELEASE,
            &repo(&["main", "contrib"], "dists/bookworm/InRelease"),
            "amd64",
        )
        .unwrap_err();
        assert!(err.contains("contrib/binary-amd64"), "{err}");
        // The MD5Sum section is not read as SHA256.
        let md5_only = "MD5Sum:\n f230d61720e789abf5df55d6026230c6 50060337 main/binary-amd64/Packages.gz\n";
        assert!(indices(md5_only, &repo(&["main"], "dists/bookworm/InRelease"), "amd64").is_err());
    }

    #[test]
    fn pins_are_checked_against_the_index() {
        let index = "Package: less\nVersion: 590-2\nFilename: pool/main/l/less/less_590-2_amd64.deb\nSize: 131000\n\
            SHA256: AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n\nPackage: other\n";
        let files = index_files(index.as_bytes());
        let r = repo(&["main"], "dists/bookworm/InRelease");
        assert!(unsigned_pins(&r, &files).is_empty(), "hashes compare in lower case");
        let mut edited = r.clone();
        edited.packages[0].sha256 = "b".repeat(64);
        let problems = unsigned_pins(&edited, &files);
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].starts_with("less 590-2: the lock pins SHA256 bbbb"),
            "{}",
            problems[0]
        );
        let mut moved = r;
        moved.packages[0].path = "pool/main/l/less/less_999_amd64.deb".into();
        assert!(unsigned_pins(&moved, &files)[0].contains("is in no package index bookworm signed"));
    }

    #[test]
    fn gpgv_refuses_text_not_signed_by_the_keyring() {
        let dir = std::env::temp_dir().join(format!("osbuild-chain-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fake = dir.join("InRelease");
        std::fs::write(
            &fake,
            "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nOrigin: Debian\n\
             -----BEGIN PGP SIGNATURE-----\n\niQIzBAEBCAAdFiEE\n-----END PGP SIGNATURE-----\n",
        )
        .unwrap();
        // Debian's keyring is on every Debian machine (apt needs it).
        let keyring = Path::new(crate::resolve::DEBIAN_KEYRING);
        let err = verify_signature(keyring, &fake).unwrap_err();
        assert!(err.starts_with("not signed by a key of"), "{err}");
        let err = verify_signature(&dir.join("no-keyring.gpg"), &fake).unwrap_err();
        assert!(err.contains("is not on this machine"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
