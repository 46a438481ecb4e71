//! What a lock pins for one package stage: the exact package files it
//! installs, and the repositories they were resolved from.
//!
//! The same types are a package stage's `locked` option (so a locked
//! manifest alone says what each stage installs) and a stage's entry in a
//! lock file. They hold no mirror: a package's `path` is relative to its
//! repository's root (`pool/main/h/hello/hello_2.10-3_amd64.deb`), so any
//! mirror of the same archive serves it, and a repository names its own URI
//! only when the stage's options named one.

use serde::{Deserialize, Serialize};

/// The packages one stage installs, by repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Locked {
    /// The Debian architecture the packages were resolved for.
    pub arch: String,
    /// Every repository the stage's packages come from, each with its packages.
    pub repositories: Vec<Repository>,
}

/// What kind of repository: Debian's (the default, left out of the JSON) or
/// an RPM one (dnf's: `uri` is its base URL, `suite` its id, `release` its
/// `repodata/repomd.xml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Deb,
    Rpm,
}

impl Format {
    pub fn is_deb(&self) -> bool {
        *self == Format::Deb
    }

    /// The name of a manifest's `sources` entry that lists such files.
    pub fn source_kind(&self) -> &'static str {
        match self {
            Format::Deb => "org.osbuild.deb",
            Format::Rpm => "org.osbuild.rpm",
        }
    }

    /// What a package file's name ends with.
    pub fn extension(&self) -> &'static str {
        match self {
            Format::Deb => ".deb",
            Format::Rpm => ".rpm",
        }
    }
}

/// A repository a lock resolved packages from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Repository {
    #[serde(default, skip_serializing_if = "Format::is_deb")]
    pub format: Format,
    /// The repository's URI, when the stage's options give one (`mirror`, or
    /// a repository of `repositories`); absent for the build machine's mirror.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// The suite (codename), or a path ending in `/` for a flat repository.
    pub suite: String,
    /// Components; empty for a flat repository.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<String>,
    /// The signed `InRelease` (or `Release`) the packages were resolved from.
    pub release: Release,
    /// The keyring its signature was checked with.
    pub keyring: Keyring,
    /// The packages, in the order apt installs them.
    pub packages: Vec<Pin>,
}

/// A repository's `InRelease` file as the lock saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Release {
    /// Its path under the repository's root: `dists/bookworm/InRelease`.
    pub path: String,
    /// The SHA256 of the whole file, lower-case hex.
    pub sha256: String,
    /// Its size in bytes, so it can be fetched like any pinned file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Its `Date`, in seconds since 1970 (UTC).
    pub date: u64,
}

/// The keyring a repository's signature was checked with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Keyring {
    /// A path in the build root (`/usr/share/keyrings/debian-archive-keyring.gpg`),
    /// or `inline` for a key given in the stage's options.
    pub path: String,
    /// The SHA256 of the keyring file (or of the inline key's text).
    pub sha256: String,
}

/// One package file, pinned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Pin {
    pub name: String,
    pub version: String,
    /// `amd64`, `all`, ...
    pub arch: String,
    /// In bytes.
    pub size: u64,
    /// The SHA256 of the file, lower-case hex: the store keeps it as
    /// `sources/sha256/<sha256>`.
    pub sha256: String,
    /// Relative to the repository's root: `pool/main/h/hello/hello_2.10-3_amd64.deb`.
    pub path: String,
    /// The archive's priority for it, where the stage picks packages by
    /// priority (a bootstrap's variant): the archive's overrides, which the
    /// file's own control fields may not agree with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<String>,
}

impl Locked {
    /// The newest `Date` of the repositories the pins come from.
    pub fn release_date(&self) -> u64 {
        self.repositories.iter().map(|r| r.release.date).max().unwrap_or(0)
    }

    /// Fails unless the pins are for the stage's architecture.
    pub fn check_arch(&self, arch: &str) -> Result<(), String> {
        if self.arch == arch {
            Ok(())
        } else {
            Err(format!(
                "the lock pins packages for {}, the stage is for {arch}",
                self.arch
            ))
        }
    }

    /// Every pinned package, repository by repository.
    pub fn pins(&self) -> impl Iterator<Item = &Pin> {
        self.repositories.iter().flat_map(|r| &r.packages)
    }

    /// What is wrong with the pins' shapes, as (place, problem): hashes that
    /// are not SHA256 hex, paths that could leave the repository, names apt
    /// would not take.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (r, repo) in self.repositories.iter().enumerate() {
            let at = |rest: String| format!("repositories[{r}]{rest}");
            if !is_sha256(&repo.release.sha256) {
                out.push((
                    at(".release.sha256".into()),
                    "not a SHA256 (64 lower-case hex digits)".into(),
                ));
            }
            if !relative_path(&repo.release.path) {
                out.push((
                    at(".release.path".into()),
                    "not a relative path inside the repository".into(),
                ));
            }
            if !is_sha256(&repo.keyring.sha256) {
                out.push((
                    at(".keyring.sha256".into()),
                    "not a SHA256 (64 lower-case hex digits)".into(),
                ));
            }
            for (i, p) in repo.packages.iter().enumerate() {
                let at = |field: &str| at(format!(".packages[{i}].{field}"));
                if !is_sha256(&p.sha256) {
                    out.push((
                        at("sha256"),
                        format!("{}: not a SHA256 (64 lower-case hex digits)", p.name),
                    ));
                }
                let ext = repo.format.extension();
                if !relative_path(&p.path) || !p.path.ends_with(ext) {
                    out.push((at("path"), format!("{}: not a relative path to a {ext}", p.name)));
                }
                let word =
                    |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "+-.:~_".contains(c));
                let priority = p.priority.as_deref().unwrap_or("optional");
                for (field, value) in [
                    ("name", &p.name),
                    ("version", &p.version),
                    ("arch", &p.arch),
                    ("priority", &priority.to_string()),
                ] {
                    if !word(value) {
                        out.push((at(field), format!("{value:?} is not a package {field}")));
                    }
                }
            }
        }
        out
    }
}

/// The SHA256 of `bytes`, lower-case hex.
pub fn sha256(bytes: &[u8]) -> String {
    hex(&<sha2::Sha256 as sha2::Digest>::digest(bytes))
}

/// The SHA256 of a file's bytes, lower-case hex, read in pieces.
pub fn sha256_file(path: &std::path::Path) -> std::io::Result<String> {
    use sha2::Digest;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = sha2::Sha256::new();
    std::io::copy(&mut file, &mut hasher)?;
    Ok(hex(&hasher.finalize()))
}

/// Bytes (a digest) as lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// 64 lower-case hex digits.
pub fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A path with no `..`, no leading `/` and no empty part.
fn relative_path(p: &str) -> bool {
    !p.is_empty()
        && !p.starts_with('/')
        && p.split('/')
            .all(|part| !part.is_empty() && part != ".." && part != "." && !part.contains('\0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> Locked {
        Locked {
            arch: "amd64".into(),
            repositories: vec![Repository {
                format: Default::default(),
                uri: None,
                suite: "bookworm".into(),
                components: vec!["main".into()],
                release: Release {
                    path: "dists/bookworm/InRelease".into(),
                    sha256: "a".repeat(64),
                    size: Some(150_000),
                    date: 1_783_765_000,
                },
                keyring: Keyring {
                    path: "/usr/share/keyrings/debian-archive-keyring.gpg".into(),
                    sha256: "b".repeat(64),
                },
                packages: vec![Pin {
                    name: "hello".into(),
                    version: "2.10-3".into(),
                    arch: "amd64".into(),
                    size: 53096,
                    sha256: "c".repeat(64),
                    path: "pool/main/h/hello/hello_2.10-3_amd64.deb".into(),
                    priority: None,
                }],
            }],
        }
    }

    #[test]
    fn pins_are_checked() {
        assert!(sample().problems().is_empty());
        let mut bad = sample();
        bad.repositories[0].packages[0].sha256 = "C".repeat(64);
        bad.repositories[0].packages[0].path = "../../etc/passwd.deb".into();
        bad.repositories[0].packages[0].version = "1 2".into();
        let places: Vec<String> = bad.problems().into_iter().map(|(at, _)| at).collect();
        assert_eq!(
            places,
            [
                "repositories[0].packages[0].sha256",
                "repositories[0].packages[0].path",
                "repositories[0].packages[0].version"
            ]
        );
    }
}
