//! Resolving the package stages of a pipeline for a lock, without building it.
//!
//! `osbuild lock` needs to know which package files every debootstrap and
//! apt stage would install. Building the pipeline would tell, at the cost of
//! the build; instead the stages are followed in order with apt alone: what
//! a pipeline has installed so far is kept as a dpkg status file
//! ([`Installed`]), each stage's transaction is resolved against it with
//! `apt-get --print-uris` (and `-s` for what it removes), and what it
//! installs is added to it. apt runs outside any tree, on scratch
//! directories, with the sources the stage would have (the mirror of the
//! build machine's apt configuration, or the one the options name, plus the
//! stage's `repositories`), so a lock changes nothing on the machine.
//!
//! What the simulation cannot see (a script stage that installs packages, a
//! file that pins versions) the locked build finds: it installs only what
//! the lock names, and says so when apt wants anything else.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::apt::Apt;
use crate::debootstrap::{host_arch, host_mirror, parse_packages, Debootstrap};
use crate::lock::{hex, Keyring, Locked, Pin, Release, Repository};

/// The Debian archive keyring, in the build root.
pub const DEBIAN_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// The mirror this machine's apt configuration gives for `suite`.
pub fn mirror_for(suite: &str) -> Option<String> {
    host_mirror(Path::new("/"), suite)
}

/// One apt source in effect for a pipeline's tree.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Source {
    /// Given by the stage's options (else the build machine's mirror).
    explicit: bool,
    uri: String,
    suite: String,
    components: Vec<String>,
    key: Key,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Key {
    /// A keyring file on this machine.
    File(String),
    /// An ASCII-armored key given in the options.
    Inline(String),
}

impl Source {
    /// Its deb822 stanza, for apt's scratch configuration.
    fn deb822(&self, arch: &str) -> String {
        let mut s = format!("Types: deb\nURIs: {}\nSuites: {}\n", self.uri, self.suite);
        if !self.components.is_empty() {
            s += &format!("Components: {}\n", self.components.join(" "));
        }
        s += &format!("Architectures: {arch}\n");
        match &self.key {
            Key::File(path) => s += &format!("Signed-By: {path}\n"),
            Key::Inline(key) => {
                s += "Signed-By:\n";
                for line in key.trim().lines() {
                    let line = line.trim_end();
                    s += &format!(" {}\n", if line.is_empty() { "." } else { line });
                }
            }
        }
        s + "\n"
    }

    /// The base every package path of this source is relative to.
    fn base(&self) -> String {
        let uri = self.uri.trim_end_matches('/');
        if self.flat() {
            let sub = self.suite.trim_start_matches("./").trim_end_matches('/');
            if sub.is_empty() {
                format!("{uri}/")
            } else {
                format!("{uri}/{sub}/")
            }
        } else {
            format!("{uri}/")
        }
    }

    fn flat(&self) -> bool {
        self.suite.ends_with('/')
    }

    fn release_path(&self, name: &str) -> String {
        if self.flat() {
            format!("{}{name}", self.suite.trim_start_matches("./"))
        } else {
            format!("dists/{}/{name}", self.suite)
        }
    }
}

/// What a pipeline's package stages have installed so far.
#[derive(Debug, Clone, Default)]
pub struct Installed {
    arch: Option<String>,
    sources: Vec<Source>,
    /// `name:arch` to its dpkg status stanza.
    status: BTreeMap<String, String>,
}

/// An index of the package lists of one set of sources.
struct Lists {
    dir: PathBuf,
    /// `Filename` (relative to the source's base) of each package, per source.
    packages: Vec<BTreeMap<String, Stanza>>,
    releases: Vec<(Release, Keyring)>,
}

#[derive(Clone)]
struct Stanza {
    text: String,
    name: String,
    version: String,
    arch: String,
    size: u64,
    sha256: String,
    essential: bool,
    priority: String,
}

/// Resolves package stages in scratch directories under `scratch`.
pub struct Resolver {
    scratch: PathBuf,
    /// Lists already fetched, by the sources they are for.
    lists: BTreeMap<String, Lists>,
    /// dnf stages resolved so far (each gets a scratch directory of its own).
    dnf_runs: usize,
}

type Result<T> = std::result::Result<T, String>;

impl Resolver {
    /// `scratch` is made if missing and belongs to the resolver (removed on drop).
    pub fn new(scratch: &Path) -> Result<Self> {
        std::fs::create_dir_all(scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
        Ok(Resolver {
            scratch: scratch.to_path_buf(),
            lists: BTreeMap::new(),
            dnf_runs: 0,
        })
    }

    /// The pins of one stage of a pipeline whose stages before it left
    /// `installed`, which it then updates; `None` for a stage that installs
    /// no packages.
    pub fn stage(
        &mut self,
        name: &str,
        options: &serde_json::Value,
        installed: &mut Installed,
    ) -> Result<Option<Locked>> {
        match name {
            "org.osbuild.debootstrap" => {
                let d: Debootstrap = parse(options)?;
                self.bootstrap(&d, installed).map(Some)
            }
            "org.osbuild.apt" => {
                let a: Apt = parse(options)?;
                self.apt(&a, installed).map(Some)
            }
            "org.osbuild.dnf" => {
                let d: crate::dnf::Dnf = parse(options)?;
                let scratch = self.scratch.join(format!("dnf-{}", self.dnf_runs));
                self.dnf_runs += 1;
                let result = d.resolve(&scratch);
                let _ = std::fs::remove_dir_all(&scratch);
                result.map(Some)
            }
            _ => Ok(None),
        }
    }

    fn bootstrap(&mut self, d: &Debootstrap, installed: &mut Installed) -> Result<Locked> {
        let arch = match &d.arch {
            Some(a) => a.clone(),
            None => host_arch().ok_or("cannot tell this machine's architecture: set arch")?,
        };
        let (uri, explicit) = match &d.mirror {
            Some(m) => (m.clone(), true),
            None => (
                host_mirror(Path::new("/"), &d.suite)
                    .ok_or("no Debian mirror in this machine's apt sources (/etc/apt/sources.list{,.d}): set mirror")?,
                false,
            ),
        };
        *installed = Installed {
            arch: Some(arch.clone()),
            sources: vec![Source {
                explicit,
                uri,
                suite: d.suite.clone(),
                components: d.components.clone(),
                key: Key::File(DEBIAN_KEYRING.into()),
            }],
            status: BTreeMap::new(),
        };
        let lists = self.update(installed)?;
        // The variant's package set, as mmdebstrap picks it, and the extras.
        let mut names: Vec<String> = d.variant.extra().iter().map(|s| s.to_string()).collect();
        for s in lists.packages.iter().flat_map(|p| p.values()) {
            if s.essential || d.variant.priorities().contains(&s.priority.as_str()) {
                names.push(s.name.clone());
            }
        }
        names.extend(d.packages.iter().map(|p| p.0.clone()));
        // The merged-/usr hook installs the real usr-is-merged after the
        // essential packages.
        if crate::debootstrap::needs_merged_usr_hook(&d.suite) {
            names.push("usr-is-merged".into());
        }
        names.sort();
        names.dedup();
        // mmdebstrap picks the variant's packages by priority.
        let priorities: BTreeMap<(String, String), String> = lists
            .packages
            .iter()
            .flat_map(|p| p.values())
            .map(|s| ((s.name.clone(), s.version.clone()), s.priority.clone()))
            .collect();
        let mut locked = self.transaction(installed, &names, false)?;
        for r in &mut locked.repositories {
            for p in &mut r.packages {
                p.priority = priorities
                    .get(&(p.name.clone(), p.version.clone()))
                    .cloned()
                    .filter(|p| !p.is_empty());
            }
        }
        Ok(locked)
    }

    fn apt(&mut self, a: &Apt, installed: &mut Installed) -> Result<Locked> {
        if installed.arch.is_none() {
            return Err("org.osbuild.apt with no org.osbuild.debootstrap before it: nothing to resolve against".into());
        }
        for r in &a.repositories {
            if !r.types.iter().any(|t| t == "deb") {
                continue;
            }
            let key = match r.signed_by.as_deref().map(str::trim) {
                Some(k) if k.contains('\n') => Key::Inline(k.to_string()),
                Some(path) => {
                    if !Path::new(path).is_file() {
                        return Err(format!(
                            "repository {}: its key {path} is a file in the tree, which a lock cannot read: \
                             give the key itself (signed_by: the ASCII-armored key)",
                            r.name
                        ));
                    }
                    Key::File(path.to_string())
                }
                None => Key::File(DEBIAN_KEYRING.into()),
            };
            for uri in &r.uris {
                for suite in &r.suites {
                    installed.sources.push(Source {
                        explicit: true,
                        uri: uri.clone(),
                        suite: suite.clone(),
                        components: r.components.clone(),
                        key: key.clone(),
                    });
                }
            }
        }
        self.update(installed)?;
        self.transaction(installed, &a.transaction(), a.recommends)
    }

    /// Fetches (once) the package lists of the sources in effect.
    fn update(&mut self, installed: &Installed) -> Result<&Lists> {
        let arch = installed.arch.as_deref().unwrap_or_default();
        let sources: String = installed.sources.iter().map(|s| s.deb822(arch)).collect();
        let key = hex(&Sha256::digest(format!("{arch}\n{sources}")));
        if !self.lists.contains_key(&key) {
            let dir = self.scratch.join(&key[..16]);
            let lists = fetch_lists(&dir, arch, &installed.sources, &sources)?;
            self.lists.insert(key.clone(), lists);
        }
        Ok(&self.lists[&key])
    }

    /// Resolves installing (and, for `name-`, purging) `names` on
    /// `installed`, and records the result in it.
    fn transaction(&mut self, installed: &mut Installed, names: &[String], recommends: bool) -> Result<Locked> {
        let arch = installed.arch.clone().unwrap_or_default();
        let lists = self.update(installed)?;
        let dir = lists.dir.clone();
        let status: String = installed.status.values().map(|s| format!("{s}\n")).collect();
        write(&dir.join("status"), &status)?;
        let recommends = format!("APT::Install-Recommends={recommends}");
        let mut args = vec![
            "-qq",
            "-y",
            "-o",
            &recommends,
            "--print-uris",
            "--purge",
            "install",
            "--",
        ];
        args.extend(names.iter().map(String::as_str));
        let uris = apt(&dir, &args)?;
        let mut sim = vec!["-qq", "-y", "-o", &recommends, "-s", "--purge", "install", "--"];
        sim.extend(names.iter().map(String::as_str));
        let simulated = apt(&dir, &sim)?;

        let lists = self.update(installed)?;
        let mut repositories: Vec<Repository> = Vec::new();
        for line in uris.lines().filter(|l| l.starts_with('\'')) {
            let Some(uri) = line[1..].split('\'').next() else {
                continue;
            };
            // apt quotes the URI (`+` as `%2b`); the lists give plain paths.
            let uri = percent_decode(uri);
            let found = installed.sources.iter().enumerate().find_map(|(i, s)| {
                let path = uri.strip_prefix(&percent_decode(&s.base()))?;
                Some((i, path.to_string(), lists.packages[i].get(path)?))
            });
            let Some((i, path, stanza)) = found else {
                return Err(format!("apt would download {uri}, which no package list names"));
            };
            let source = &installed.sources[i];
            let (release, keyring) = lists.releases[i].clone();
            let at = match repositories
                .iter()
                .position(|r| r.release == release && r.suite == source.suite)
            {
                Some(at) => at,
                None => {
                    repositories.push(Repository {
                        format: crate::lock::Format::Deb,
                        uri: source.explicit.then(|| source.uri.clone()),
                        suite: source.suite.clone(),
                        components: source.components.clone(),
                        release,
                        keyring,
                        packages: Vec::new(),
                    });
                    repositories.len() - 1
                }
            };
            repositories[at].packages.push(Pin {
                name: stanza.name.clone(),
                version: stanza.version.clone(),
                arch: stanza.arch.clone(),
                size: stanza.size,
                sha256: stanza.sha256.clone(),
                path,
                priority: None,
            });
            installed
                .status
                .insert(format!("{}:{}", stanza.name, stanza.arch), status_stanza(&stanza.text));
        }
        // What the transaction removes: `Remv NAME [VERSION]`, `Purg NAME [VERSION]`.
        for line in simulated.lines() {
            if let Some(rest) = line.strip_prefix("Remv ").or_else(|| line.strip_prefix("Purg ")) {
                let name = rest.split_whitespace().next().unwrap_or_default();
                let (name, pkg_arch) = name.split_once(':').unwrap_or((name, ""));
                installed.status.retain(|k, _| {
                    k.split_once(':')
                        .is_none_or(|(n, a)| n != name || (!pkg_arch.is_empty() && a != pkg_arch))
                });
            }
        }
        Ok(Locked { arch, repositories })
    }
}

impl Drop for Resolver {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}

fn parse<T: serde::de::DeserializeOwned>(options: &serde_json::Value) -> Result<T> {
    serde_json::from_value(options.clone()).map_err(|e| format!("invalid options: {e}"))
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Sets up apt's scratch configuration in `dir` and runs `apt-get update`.
fn fetch_lists(dir: &Path, arch: &str, sources: &[Source], text: &str) -> Result<Lists> {
    for d in [
        "etc/apt.conf.d",
        "etc/preferences.d",
        "etc/sources.list.d",
        "lists/partial",
        "cache/archives/partial",
        "log",
    ] {
        std::fs::create_dir_all(dir.join(d)).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    write(&dir.join("etc/sources.list.d/lock.sources"), text)?;
    write(&dir.join("etc/sources.list"), "")?;
    write(&dir.join("status"), "")?;
    let d = dir.display();
    let conf = format!(
        "Dir \"/\";\nDir::Etc \"{d}/etc\";\nDir::Etc::TrustedParts \"/etc/apt/trusted.gpg.d\";\n\
         Dir::State \"{d}\";\nDir::State::Lists \"{d}/lists\";\nDir::State::Status \"{d}/status\";\n\
         Dir::Cache \"{d}/cache\";\nDir::Log \"{d}/log\";\n\
         APT::Architecture \"{arch}\";\nAPT::Architectures \"{arch}\";\n\
         Acquire::Languages \"none\";\nAcquire::GzipIndexes \"false\";\n\
         APT::Sandbox::User \"root\";\nDebug::NoLocking \"true\";\n"
    );
    write(&dir.join("apt.conf"), &conf)?;
    apt(dir, &["-q", "update", "-o", "APT::Update::Error-Mode=any"])?;

    let targets = apt(
        dir,
        &[
            "indextargets",
            "--format",
            "$(FILENAME)\t$(METAKEY)\t$(REPO_URI)\t$(RELEASE)",
        ],
    )?;
    let mut packages = vec![BTreeMap::new(); sources.len()];
    let mut releases = Vec::new();
    for (i, s) in sources.iter().enumerate() {
        let mut release = None;
        for line in targets.lines() {
            let mut f = line.split('\t');
            let (Some(file), Some(metakey), Some(repo), Some(suite)) = (f.next(), f.next(), f.next(), f.next()) else {
                continue;
            };
            if repo.trim_end_matches('/') != s.uri.trim_end_matches('/') || suite != s.suite {
                continue;
            }
            let text = std::fs::read(file).map_err(|e| format!("the package list {file}: {e}"))?;
            let mut count = 0;
            parse_stanzas(&text, |st| {
                count += 1;
                packages[i].insert(st_filename(&st.text).unwrap_or_default(), st);
            });
            if count == 0 {
                continue;
            }
            if release.is_none() {
                // The list is named after its URI: `..._dists_SUITE_` + the meta key.
                let quoted = metakey.replace('/', "_");
                let prefix = file
                    .strip_suffix(&quoted)
                    .ok_or_else(|| format!("unexpected list name {file}"))?;
                release = Some(read_release(prefix, s)?);
            }
        }
        let release = release.ok_or_else(|| {
            format!(
                "{} {}: no package list for {arch} (is the suite or component right?)",
                s.uri, s.suite
            )
        })?;
        releases.push(release);
    }
    Ok(Lists {
        dir: dir.to_path_buf(),
        packages,
        releases,
    })
}

/// The `InRelease` (or `Release`) apt verified for a source, and its keyring.
fn read_release(prefix: &str, s: &Source) -> Result<(Release, Keyring)> {
    for name in ["InRelease", "Release"] {
        let path = format!("{prefix}{name}");
        let Ok(bytes) = std::fs::read(&path) else { continue };
        let text = String::from_utf8_lossy(&bytes);
        let date = text
            .lines()
            .find_map(|l| l.strip_prefix("Date:"))
            .and_then(|d| parse_date(d.trim()))
            .ok_or_else(|| format!("{path}: no Date the lock can read"))?;
        let keyring = match &s.key {
            Key::File(file) => {
                let bytes = std::fs::read(file).map_err(|e| format!("the keyring {file}: {e}"))?;
                Keyring {
                    path: file.clone(),
                    sha256: hex(&Sha256::digest(&bytes)),
                }
            }
            Key::Inline(key) => Keyring {
                path: "inline".into(),
                sha256: hex(&Sha256::digest(key.trim().as_bytes())),
            },
        };
        return Ok((
            Release {
                path: s.release_path(name),
                sha256: hex(&Sha256::digest(&bytes)),
                size: Some(bytes.len() as u64),
                date,
            },
            keyring,
        ));
    }
    Err(format!(
        "no InRelease or Release for {} {} after apt-get update",
        s.uri, s.suite
    ))
}

/// `%XX` escapes replaced by their bytes.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn st_filename(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix("Filename:"))
        .map(|v| v.trim().to_string())
}

/// Each stanza of a Packages list, with its text.
fn parse_stanzas(bytes: &[u8], mut f: impl FnMut(Stanza)) {
    let text = String::from_utf8_lossy(bytes);
    for block in text.split("\n\n") {
        let block = block.trim_matches('\n');
        if block.is_empty() {
            continue;
        }
        let mut p = None;
        let _ = parse_packages(
            std::io::Cursor::new(format!("{block}\n")),
            &mut |pkg: &crate::debootstrap::Package| {
                p = Some(pkg.clone());
            },
        );
        if let Some(p) = p.filter(|p| p.sha256.len() == 64) {
            f(Stanza {
                text: block.to_string(),
                name: p.name,
                version: p.version,
                arch: p.arch,
                size: p.size,
                sha256: p.sha256,
                essential: p.essential,
                priority: p.priority,
            });
        }
    }
}

/// The fields of a Packages stanza dpkg keeps for an installed package,
/// with its `Status`.
fn status_stanza(text: &str) -> String {
    const KEEP: &[&str] = &[
        "Package",
        "Essential",
        "Priority",
        "Section",
        "Installed-Size",
        "Maintainer",
        "Architecture",
        "Multi-Arch",
        "Source",
        "Version",
        "Replaces",
        "Provides",
        "Depends",
        "Pre-Depends",
        "Recommends",
        "Suggests",
        "Breaks",
        "Conflicts",
        "Enhances",
        "Protected",
    ];
    let mut out = String::new();
    let mut keep = false;
    for line in text.lines() {
        if line.starts_with([' ', '\t']) {
            if keep {
                out += line;
                out.push('\n');
            }
            continue;
        }
        let field = line.split(':').next().unwrap_or_default();
        keep = KEEP.contains(&field);
        if keep {
            out += line;
            out.push('\n');
            if field == "Package" {
                out += "Status: install ok installed\n";
            }
        }
    }
    out
}

/// Runs the scratch configuration's apt-get; its output, or an error with
/// the end of what it printed.
fn apt(dir: &Path, args: &[&str]) -> Result<String> {
    let mut cmd = Command::new("apt-get");
    cmd.env_clear()
        .env("PATH", crate::command::PATH)
        .env("LC_ALL", "C")
        .env("APT_CONFIG", dir.join("apt.conf"))
        .args(args);
    let out = cmd.output().map_err(|e| format!("cannot run apt-get: {e}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let tail: Vec<&str> = stderr.lines().rev().take(8).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    Err(format!(
        "apt-get {} failed ({}):\n{}",
        args.iter()
            .find(|a| !a.starts_with('-') && !a.contains('='))
            .unwrap_or(&""),
        out.status,
        tail.join("\n")
    ))
}

/// An RFC 2822 date as a Release file writes it (`Sat, 11 Jul 2026 10:16:37 UTC`),
/// in seconds since 1970.
pub fn parse_date(s: &str) -> Option<u64> {
    let s = s.split_once(", ").map_or(s, |(_, rest)| rest);
    let mut w = s.split_whitespace();
    let day: i64 = w.next()?.parse().ok()?;
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| Some(*m) == w.clone().next())? as i64
        + 1;
    w.next();
    let year: i64 = w.next()?.parse().ok()?;
    let mut hms = w.next()?.split(':').map(|x| x.parse::<i64>().ok());
    let (h, m, sec) = (hms.next()??, hms.next()??, hms.next()??);
    let offset = match w.next() {
        None | Some("UTC") | Some("GMT") | Some("Z") => 0,
        Some(z) if z.len() == 5 && (z.starts_with('+') || z.starts_with('-')) => {
            let sign = if z.starts_with('-') { -1 } else { 1 };
            let hh: i64 = z[1..3].parse().ok()?;
            let mm: i64 = z[3..5].parse().ok()?;
            sign * (hh * 3600 + mm * 60)
        }
        Some(_) => return None,
    };
    if !(1..=31).contains(&day) || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y, mo) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * mo + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    u64::try_from(days * 86400 + h * 3600 + m * 60 + sec - offset).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_dates() {
        assert_eq!(parse_date("Thu, 01 Jan 1970 00:00:00 UTC"), Some(0));
        assert_eq!(parse_date("Sat, 11 Jul 2026 10:16:37 UTC"), Some(1_783_764_997));
        assert_eq!(parse_date("Tue, 29 Feb 2000 12:00:00 +0100"), Some(951_822_000));
        assert_eq!(parse_date("not a date"), None);
        assert_eq!(parse_date("Sat, 11 Foo 2026 10:16:37 UTC"), None);
    }

    #[test]
    fn status_keeps_what_dpkg_keeps() {
        let s = status_stanza(
            "Package: hello\nVersion: 2.10-3\nArchitecture: amd64\nDepends: libc6 (>= 2.34)\n\
             Description: hi\n more\nFilename: pool/main/h/hello/hello_2.10-3_amd64.deb\nSHA256: ab\n",
        );
        assert_eq!(
            s,
            "Package: hello\nStatus: install ok installed\nVersion: 2.10-3\nArchitecture: amd64\nDepends: libc6 (>= 2.34)\n"
        );
    }

    #[test]
    fn sources_and_their_bases() {
        let s = Source {
            explicit: false,
            uri: "http://mirror.example/debian/".into(),
            suite: "bookworm".into(),
            components: vec!["main".into()],
            key: Key::File(DEBIAN_KEYRING.into()),
        };
        assert_eq!(s.base(), "http://mirror.example/debian/");
        assert_eq!(s.release_path("InRelease"), "dists/bookworm/InRelease");
        assert_eq!(
            s.deb822("amd64"),
            format!("Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm\nComponents: main\nArchitectures: amd64\nSigned-By: {DEBIAN_KEYRING}\n\n")
        );
        let flat = Source {
            suite: "./".into(),
            components: vec![],
            ..s.clone()
        };
        assert_eq!(flat.base(), "http://mirror.example/debian/");
        assert_eq!(flat.release_path("InRelease"), "InRelease");
    }
}

#[cfg(test)]
mod mirror_tests {
    use super::*;
    use serde_json::json;

    /// The debian-minimal image's two package stages, resolved against the
    /// build machine's mirror.
    #[test]
    fn a_bootstrap_and_an_apt_stage_resolve_against_the_mirror() {
        let scratch = std::env::temp_dir().join(format!("osbuild-resolve-{}", std::process::id()));
        let mut r = Resolver::new(&scratch).unwrap();
        let mut installed = Installed::default();
        let t = std::time::Instant::now();
        let boot = r
            .stage(
                "org.osbuild.debootstrap",
                &json!({"suite": "bookworm", "variant": "minbase"}),
                &mut installed,
            )
            .unwrap()
            .unwrap();
        eprintln!("bootstrap resolved in {:?}", t.elapsed());
        let t = std::time::Instant::now();
        assert_eq!(
            r.stage("org.osbuild.hostname", &json!({"hostname": "x"}), &mut installed)
                .unwrap(),
            None
        );
        let apt = r
            .stage(
                "org.osbuild.apt",
                &json!({"packages": ["linux-image-amd64", "systemd-sysv"]}),
                &mut installed,
            )
            .unwrap()
            .unwrap();
        eprintln!("apt resolved in {:?}", t.elapsed());
        let names = |l: &Locked| l.pins().map(|p| p.name.clone()).collect::<Vec<_>>();
        let (boot_names, apt_names) = (names(&boot), names(&apt));
        eprintln!("{} + {} packages", boot_names.len(), apt_names.len());
        for n in ["libc6", "apt", "dpkg", "base-files"] {
            assert!(boot_names.iter().any(|b| b == n), "{n} in {boot_names:?}");
        }
        assert!(
            apt_names.iter().any(|n| n.starts_with("linux-image-6")),
            "{apt_names:?}"
        );
        assert!(apt_names.iter().any(|n| n == "systemd"), "{apt_names:?}");
        assert!(
            !apt_names.iter().any(|n| n == "libc6"),
            "already installed by the bootstrap"
        );
        assert!(boot.problems().is_empty() && apt.problems().is_empty());
        assert!(boot.pins().all(|p| p.path.starts_with("pool/")));
        assert_eq!(boot.repositories.len(), 1);
        assert_eq!(
            boot.repositories[0].uri, None,
            "the build machine's mirror is not written down"
        );
        assert_eq!(boot.repositories[0].release.path, "dists/bookworm/InRelease");
        assert!(boot.repositories[0].release.date > 1_600_000_000);

        // Purging what an earlier stage installed takes it out of the status.
        let mut after = installed.clone();
        let purge = r
            .stage(
                "org.osbuild.apt",
                &json!({"packages": [], "remove": ["linux-image-amd64"]}),
                &mut after,
            )
            .unwrap()
            .unwrap();
        assert_eq!(purge.pins().count(), 0);
        assert!(installed.status.contains_key("linux-image-amd64:amd64"));
        assert!(!after.status.contains_key("linux-image-amd64:amd64"));
    }
}
