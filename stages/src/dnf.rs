//! `org.osbuild.dnf`: installs RPM packages into the tree with the build
//! root's `dnf --installroot`.
//!
//! Only the manifest's repositories are used (`reposdir` points at a
//! directory holding just them, and the build root's `dnf.conf` is not read).
//! Downloaded packages and metadata are kept in the `rpm` cache
//! (`ctx.cache/dnf`, `keepcache`), never in the tree.
//!
//! Locked (`locked`, from `osbuild lock`), it installs exactly the pinned
//! files, from the build's sources, with every repository disabled and no
//! network. A lock is made by dnf's own resolver ([`Dnf::resolve`], dnf's
//! Python API on this machine), so the pins are the transaction an unlocked
//! stage would run.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use crate::api::{Builtin, Context, Kind, Options, OptionsError, StageResult, WithPath};
use crate::command::{clean_env, run};
use crate::lock::{Format, Keyring, Locked, Pin, Release, Repository};

/// Installs RPM packages (and `@group`s) with dnf.
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Dnf {
    /// The release version (`$releasever`), e.g. `41`.
    releasever: String,
    /// The architecture (`$basearch`), e.g. `x86_64`; default: the build
    /// machine's (as `uname -m` names it), so the seed's manifest works as is.
    #[serde(default)]
    basearch: Option<String>,
    /// The repositories, by id.
    repos: BTreeMap<String, Repo>,
    /// Packages to install; `@name` for a group.
    packages: Vec<String>,
    /// Where the tree's rpm database lives.
    #[serde(default = "dbpath")]
    #[schemars(default = "dbpath")]
    dbpath: String,
    /// What to install, pinned (written by `osbuild lock`, not by hand):
    /// exactly these files are installed, from the build's sources.
    #[serde(default)]
    locked: Option<Locked>,
}

fn dbpath() -> String {
    "/usr/lib/sysimage/rpm".into()
}

/// One repository.
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Repo {
    /// A human-readable name.
    #[serde(default)]
    name: Option<String>,
    /// The repository URL (either this or `metalink`).
    #[serde(default)]
    baseurl: Option<String>,
    /// A metalink URL (either this or `baseurl`).
    #[serde(default)]
    metalink: Option<String>,
    /// URL(s) of the signing key(s), space-separated.
    #[serde(default)]
    gpgkey: Option<String>,
    /// Whether package signatures are checked.
    #[serde(default = "yes")]
    #[schemars(default = "yes")]
    gpgcheck: bool,
}

fn yes() -> bool {
    true
}

fn line_ok(s: &str) -> bool {
    !s.is_empty() && !s.chars().any(|c| c == '\n' || c == '\r' || c.is_control())
}

impl Dnf {
    /// The given architecture, or the build machine's.
    fn basearch(&self) -> String {
        self.basearch.clone().unwrap_or_else(|| {
            nix::sys::utsname::uname().map_or_else(|_| "x86_64".into(), |u| u.machine().to_string_lossy().into_owned())
        })
    }

    fn problems(&self) -> Vec<OptionsError> {
        let word = |s: &str| line_ok(s) && !s.starts_with('-') && !s.contains(char::is_whitespace);
        let mut problems = Vec::new();
        let mut bad =
            |path: Vec<crate::PathSegment>, message: String| problems.push(OptionsError::invalid(path, message));
        for (key, value) in [
            ("releasever", Some(&self.releasever)),
            ("basearch", self.basearch.as_ref()),
        ] {
            if let Some(v) = value.filter(|v| !word(v)) {
                bad(crate::at![key], format!("{v:?} must be a single word"));
            }
        }
        if self.repos.is_empty() {
            bad(crate::at!["repos"], "at least one repository is needed".into());
        }
        if self.packages.is_empty() {
            bad(
                crate::at!["packages"],
                "packages must be a non-empty list of names".into(),
            );
        }
        for (i, p) in self.packages.iter().enumerate() {
            if !word(p) {
                bad(crate::at!["packages", i], format!("{p:?} is not a package name"));
            }
        }
        if !self.dbpath.starts_with('/') || self.dbpath.contains("..") || !word(&self.dbpath) {
            bad(
                crate::at!["dbpath"],
                format!("{:?} must be an absolute path", self.dbpath),
            );
        }
        for (id, r) in &self.repos {
            if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c)) {
                bad(
                    crate::at!["repos", id],
                    format!("repository id {id:?}: letters, digits, '-', '_', '.' and ':' only"),
                );
            }
            if r.baseurl.is_some() == r.metalink.is_some() {
                bad(
                    crate::at!["repos", id],
                    "give exactly one of baseurl and metalink".into(),
                );
            }
            for (key, v) in [
                ("name", &r.name),
                ("baseurl", &r.baseurl),
                ("metalink", &r.metalink),
                ("gpgkey", &r.gpgkey),
            ] {
                if let Some(v) = v.as_ref().filter(|v| !line_ok(v)) {
                    bad(crate::at!["repos", id, key], format!("{v:?} must be a single line"));
                }
            }
        }
        problems
    }

    fn repo_file(&self) -> String {
        let mut s = String::new();
        for (id, r) in &self.repos {
            s += &format!("[{id}]\nname={}\nenabled=1\n", r.name.as_deref().unwrap_or(id));
            if let Some(u) = &r.baseurl {
                s += &format!("baseurl={u}\n");
            }
            if let Some(u) = &r.metalink {
                s += &format!("metalink={u}\n");
            }
            s += &format!("gpgcheck={}\n", u8::from(r.gpgcheck));
            if let Some(k) = &r.gpgkey {
                s += &format!("gpgkey={k}\n");
            }
            s.push('\n');
        }
        s
    }
}

impl Options for Dnf {
    fn validate(&self) -> Vec<OptionsError> {
        self.problems()
    }

    fn run(self, ctx: &Context) -> StageResult {
        if !Path::new("/usr/bin/dnf").exists() {
            return Err("dnf is not installed in the build root (package dnf)".into());
        }
        let tmp = std::env::temp_dir().join(format!("osbuild-dnf-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        let tree = ctx.open_tree()?;
        let before = crate::leftovers::Before::look(&tree);
        let had_tmp = tree.exists("tmp");
        let result = match &self.locked {
            Some(locked) => self.install_locked(ctx, &tmp, locked),
            None => self.install(ctx, &tmp),
        };
        let _ = std::fs::remove_dir_all(&tmp);
        result?;
        // dnf puts its logdir under the installroot too: the same path in
        // the tree, which is not the image's.
        let in_tree = tmp.strip_prefix("/").unwrap_or(&tmp);
        if tree.exists(in_tree) {
            tree.remove_dir_all(in_tree)?;
        }
        if !had_tmp && tree.read_dir("tmp").is_ok_and(|e| e.is_empty()) {
            tree.remove_dir_all("tmp")?;
        }
        crate::leftovers::remove(&tree, &before)
    }
}

impl Dnf {
    fn install(&self, ctx: &Context, tmp: &Path) -> StageResult {
        let cachedir = match &ctx.cache {
            Some(c) => c.join("dnf"),
            None => tmp.join("cache"),
        };
        let repos = tmp.join("repos.d");
        std::fs::create_dir_all(&repos).at(&repos)?;
        std::fs::write(repos.join("osbuild.repo"), self.repo_file()).at(&repos)?;
        let mut cmd = self.dnf(ctx, tmp, &repos, &cachedir)?;
        cmd.arg("--setopt=keepcache=True")
            .args(["install", "--"])
            .args(&self.packages);
        run(&mut cmd, "dnf install")?;
        // dnf keeps its own state under the installroot; the package cache is outside.
        // (dnf and rpm resolve paths under --installroot themselves.)
        ctx.open_tree()?.remove_dir_all("var/cache/dnf")?;
        Ok(())
    }

    /// The locked install: the pinned files, named `*.rpm` (dnf takes local
    /// packages by their suffix) beside each other in scratch, installed as
    /// local packages with every repository disabled. dnf resolves among
    /// exactly them: anything else it wanted would fail the stage.
    fn install_locked(&self, ctx: &Context, tmp: &Path, locked: &Locked) -> StageResult {
        let sources = ctx.locked_sources()?;
        locked.check_arch(&self.basearch())?;
        let files = tmp.join("locked");
        let empty = tmp.join("no-repos.d");
        for d in [&files, &empty] {
            std::fs::create_dir_all(d).at(d)?;
        }
        let mut paths = Vec::new();
        for (i, pin) in locked.pins().enumerate() {
            let source = crate::offline::source_path(sources, &pin.sha256);
            if !source.is_file() {
                return Err(format!(
                    "{} {} (sha256 {}) is not in the build's sources",
                    pin.name, pin.version, pin.sha256
                )
                .into());
            }
            let base = pin.path.rsplit('/').next().unwrap_or(&pin.path);
            let link = files.join(format!("{i:04}-{base}"));
            std::os::unix::fs::symlink(&source, &link).at(&link)?;
            paths.push(link);
        }
        println!("locked: {} packages from the build's sources", paths.len());
        let mut cmd = self.dnf(ctx, tmp, &empty, &tmp.join("cache"))?;
        cmd.args(["--disablerepo=*", "--setopt=localpkg_gpgcheck=False", "install", "--"])
            .args(&paths);
        run(&mut cmd, "dnf install (locked)")?;
        ctx.open_tree()?.remove_dir_all("var/cache/dnf")?;
        Ok(())
    }

    /// dnf on the tree, configured by nothing but these options: `reposdir`
    /// holds the repositories it may use.
    fn dnf(
        &self,
        ctx: &Context,
        tmp: &Path,
        reposdir: &Path,
        cachedir: &Path,
    ) -> Result<Command, crate::api::StageError> {
        let logs = tmp.join("log");
        let home = tmp.join("home");
        for d in [&logs, &home, &cachedir.to_path_buf()] {
            std::fs::create_dir_all(d).at(d)?;
        }
        std::fs::write(tmp.join("dnf.conf"), "[main]\n").at(tmp)?;
        // rpm reads ~/.rpmmacros: fix where the tree's database goes (the
        // build root's rpm may default to somewhere odd, Debian's to ~/.rpmdb).
        std::fs::write(home.join(".rpmmacros"), format!("%_dbpath {}\n", self.dbpath)).at(&home)?;
        let tree = ctx.open_tree()?;
        tree.create_dir_all(self.dbpath.trim_start_matches('/'))?;
        let mut cmd = Command::new("/usr/bin/dnf");
        clean_env(&mut cmd).env("HOME", &home);
        cmd.arg("-y")
            .arg(format!("--installroot={}", ctx.tree.display()))
            .arg(format!("--config={}", tmp.join("dnf.conf").display()))
            .arg(format!("--setopt=reposdir={}", reposdir.display()))
            .arg(format!("--setopt=cachedir={}", cachedir.display()))
            .arg(format!("--setopt=logdir={}", logs.display()))
            .arg(format!("--releasever={}", self.releasever))
            .arg(format!("--forcearch={}", self.basearch()))
            .args([
                "--setopt=install_weak_deps=False",
                "--setopt=tsflags=nodocs",
                "--noplugins",
            ]);
        Ok(cmd)
    }

    /// The pins of this stage: what dnf's resolver (its Python API, on this
    /// machine, against the stage's repositories, in `scratch`) would
    /// install into an empty tree, each file with its repository's base URL
    /// (the mirror a metalink chose) and SHA256.
    pub(crate) fn resolve(&self, scratch: &Path) -> Result<Locked, String> {
        let err = |e: std::io::Error| format!("{}: {e}", scratch.display());
        let (repos, root, cache, home) = (
            scratch.join("repos.d"),
            scratch.join("root"),
            scratch.join("cache"),
            scratch.join("home"),
        );
        for d in [&repos, &root, &cache, &home] {
            std::fs::create_dir_all(d).map_err(err)?;
        }
        std::fs::write(repos.join("osbuild.repo"), self.repo_file()).map_err(err)?;
        let input = serde_json::json!({
            "root": root, "cache": cache, "reposdir": repos,
            "releasever": self.releasever, "basearch": self.basearch(), "packages": self.packages,
        });
        let mut child = Command::new("/usr/bin/python3")
            .args(["-c", RESOLVE_PY])
            .env_clear()
            .env("PATH", crate::command::PATH)
            .env("HOME", &home)
            .env("LC_ALL", "C")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run /usr/bin/python3 for dnf's resolver: {e}"))?;
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(input.to_string().as_bytes())
            .map_err(|e| format!("dnf's resolver: {e}"))?;
        let out = child.wait_with_output().map_err(|e| format!("dnf's resolver: {e}"))?;
        if !out.status.success() {
            let text = String::from_utf8_lossy(&out.stderr);
            let last = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
            return Err(if last.contains("No module named 'dnf'") {
                "resolving org.osbuild.dnf needs dnf's Python module on this machine (package python3-dnf)".into()
            } else {
                format!("dnf could not resolve the packages: {last}")
            });
        }
        let found: Resolved = serde_json::from_slice(&out.stdout)
            .map_err(|e| format!("dnf's resolver said something unexpected: {e}"))?;
        self.pins(found)
    }

    /// The resolver's answer as a lock: one repository entry per repository
    /// packages come from, in the order dnf lists them.
    fn pins(&self, found: Resolved) -> Result<Locked, String> {
        let mut repositories: Vec<Repository> = Vec::new();
        for p in found.packages {
            if p.checksum != "sha256" {
                return Err(format!(
                    "{}: the repository {} gives it a {} checksum; a lock pins SHA256",
                    p.name, p.repo, p.checksum
                ));
            }
            let base = p
                .url
                .strip_suffix(&p.location)
                .ok_or_else(|| {
                    format!(
                        "{}: its URL {} does not end in its location {}",
                        p.name, p.url, p.location
                    )
                })?
                .trim_end_matches('/')
                .to_string();
            let at = match repositories
                .iter()
                .position(|r| r.suite == p.repo && r.uri.as_deref() == Some(&base))
            {
                Some(at) => at,
                None => {
                    let info = found
                        .repos
                        .iter()
                        .find(|r| r.id == p.repo)
                        .ok_or_else(|| format!("{}: from {}, a repository dnf did not list", p.name, p.repo))?;
                    repositories.push(Repository {
                        format: Format::Rpm,
                        uri: Some(base),
                        suite: p.repo.clone(),
                        components: Vec::new(),
                        release: info.release()?,
                        keyring: self.keyring(&p.repo)?,
                        packages: Vec::new(),
                    });
                    repositories.len() - 1
                }
            };
            let version = match p.epoch {
                0 => format!("{}-{}", p.version, p.release),
                e => format!("{e}:{}-{}", p.version, p.release),
            };
            repositories[at].packages.push(Pin {
                name: p.name,
                version,
                arch: p.arch,
                size: p.size,
                sha256: p.digest,
                path: p.location,
                priority: None,
            });
        }
        Ok(Locked {
            arch: self.basearch(),
            repositories,
        })
    }

    /// The key a repository's packages are signed with, as the lock records
    /// it: the `gpgkey` (its file's SHA256 for a `file://` key, else the
    /// SHA256 of the URL), or `none` without `gpgcheck`.
    fn keyring(&self, id: &str) -> Result<Keyring, String> {
        let sha = crate::lock::sha256;
        let repo = &self.repos[id];
        Ok(match (&repo.gpgkey, repo.gpgcheck) {
            (Some(key), true) => match key.strip_prefix("file://") {
                Some(path) => Keyring {
                    path: key.clone(),
                    sha256: sha(&std::fs::read(path).map_err(|e| format!("the gpgkey {key}: {e}"))?),
                },
                None => Keyring {
                    path: key.clone(),
                    sha256: sha(key.as_bytes()),
                },
            },
            _ => Keyring {
                path: "none".into(),
                sha256: sha(b"none"),
            },
        })
    }
}

/// dnf's resolver, run with this machine's Python and dnf: reads the
/// request (JSON) on stdin, prints the transaction's packages and the
/// repositories (JSON) on stdout.
const RESOLVE_PY: &str = r#"
import glob, json, os, sys
import dnf, hawkey
o = json.load(sys.stdin)
b = dnf.Base()
c = b.conf
c.installroot = o["root"]
c.cachedir = o["cache"]
c.reposdir = [o["reposdir"]]
c.install_weak_deps = False
for k in ("releasever", "basearch"):
    c.substitutions[k] = o[k]
c.substitutions["arch"] = o["basearch"]
b.read_all_repos()
b.fill_sack(load_system_repo=False)
for p in o["packages"]:
    if p.startswith("@"):
        b.read_comps()
        b.group_install(p[1:], ["mandatory", "default"])
    else:
        b.install(p)
b.resolve()
packages = []
for p in b.transaction.install_set:
    kind, digest = p.chksum
    packages.append({"name": p.name, "epoch": p.epoch, "version": p.version, "release": p.release,
        "arch": p.arch, "location": p.location, "size": p.downloadsize,
        "checksum": hawkey.chksum_name(kind), "digest": digest.hex(), "repo": p.reponame,
        "url": p.remote_location()})
packages.sort(key=lambda p: (p["name"], p["arch"]))
repos = []
for r in b.repos.iter_enabled():
    md = glob.glob(os.path.join(c.cachedir, r.id + "-*", "repodata", "repomd.xml"))
    repos.append({"id": r.id, "repomd": md[0] if md else None, "timestamp": r._repo.getMaxTimestamp()})
print(json.dumps({"packages": packages, "repos": repos}))
"#;

/// What [`RESOLVE_PY`] prints.
#[derive(serde::Deserialize)]
struct Resolved {
    packages: Vec<ResolvedPackage>,
    repos: Vec<ResolvedRepo>,
}

#[derive(serde::Deserialize)]
struct ResolvedPackage {
    name: String,
    epoch: u64,
    version: String,
    release: String,
    arch: String,
    location: String,
    size: u64,
    checksum: String,
    digest: String,
    repo: String,
    url: String,
}

#[derive(serde::Deserialize)]
struct ResolvedRepo {
    id: String,
    repomd: Option<String>,
    timestamp: i64,
}

impl ResolvedRepo {
    /// The repository's `repomd.xml` as the resolver read it.
    fn release(&self) -> Result<Release, String> {
        let path = self
            .repomd
            .as_ref()
            .ok_or_else(|| format!("dnf kept no repomd.xml for {}", self.id))?;
        let bytes = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
        Ok(Release {
            path: "repodata/repomd.xml".into(),
            sha256: crate::lock::sha256(&bytes),
            size: Some(bytes.len() as u64),
            date: self.timestamp.max(0) as u64,
        })
    }
}

pub static STAGE: Builtin = Builtin::new::<Dnf>(
    "org.osbuild.dnf",
    Kind::Stage,
    "Installs RPM packages with dnf --installroot",
)
.with_network()
.with_cache("rpm")
.with_lock();

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn opts(repos: serde_json::Value) -> serde_json::Value {
        json!({"releasever": "41", "basearch": "x86_64", "repos": repos, "packages": ["@core", "kernel"]})
    }

    #[test]
    fn options_are_checked() {
        let ok = opts(
            json!({"fedora": {"metalink": "https://mirror.example/metalink?repo=fedora-$releasever", "gpgkey": "file:///k"}}),
        );
        assert!(STAGE.check(&ok).is_empty());
        let d: Dnf = serde_json::from_value(ok).unwrap();
        assert!(d
            .repo_file()
            .contains("[fedora]\nname=fedora\nenabled=1\nmetalink=https://mirror.example/"));
        assert!(d.repo_file().contains("gpgcheck=1\ngpgkey=file:///k\n"));
        assert!(!STAGE
            .check(&json!({"releasever": "41", "basearch": "x86_64", "repos": {}}))
            .is_empty());
        let bad = |v| {
            let paths: Vec<String> = STAGE.check(&v).iter().map(|e| crate::api::path_text(&e.path)).collect();
            paths
        };
        assert_eq!(bad(opts(json!({"r": {}}))), ["repos.r"], "no url");
        assert_eq!(bad(opts(json!({"r": {"baseurl": "u", "metalink": "m"}}))), ["repos.r"]);
        assert_eq!(bad(opts(json!({"r]\n[x": {"baseurl": "u"}}))), ["repos.r]\n[x"]);
        assert_eq!(
            bad(opts(json!({"r": {"baseurl": "u\ngpgcheck=0"}}))),
            ["repos.r.baseurl"]
        );
        let mut o = opts(json!({}));
        o["releasever"] = json!("4 1");
        o["packages"] = json!(["ok", "-x"]);
        o["dbpath"] = json!("var/lib/rpm");
        assert_eq!(bad(o), ["releasever", "repos", "packages[1]", "dbpath"]);
    }

    fn spec_text(name: &str, requires: Option<&str>) -> String {
        format!(
            "Name: {name}\nVersion: 1.0\nRelease: 1\nSummary: {name}\nLicense: MIT\nBuildArch: noarch\n{}\n\
             %description\n{name}\n%install\nmkdir -p %{{buildroot}}/usr/share/{name}\n\
             echo {name} > %{{buildroot}}/usr/share/{name}/hello\n%files\n/usr/share/{name}/hello\n",
            requires.map(|r| format!("Requires: {r}")).unwrap_or_default()
        )
    }

    /// Builds a local repository (two noarch packages, one requiring the
    /// other) and installs the dependent one into an empty tree.
    #[test]
    fn installs_from_a_local_repository() {
        let tools = ["/usr/bin/dnf", "/usr/bin/rpmbuild", "/usr/bin/createrepo_c"];
        assert!(nix::unistd::geteuid().is_root(), "the dnf test needs root");
        for tool in tools {
            assert!(
                Path::new(tool).exists(),
                "the dnf test needs {tool} (packages dnf, rpm, createrepo-c)"
            );
        }
        let base = std::env::temp_dir().join(format!("osbuild-dnf-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let (top, repo, tree, cache) = (
            base.join("rpmbuild"),
            base.join("repo"),
            base.join("tree"),
            base.join("cache"),
        );
        for d in [&top, &repo, &tree] {
            std::fs::create_dir_all(d).unwrap();
        }
        let result = std::panic::catch_unwind(|| {
            for (name, req) in [("osbuild-base", None), ("osbuild-app", Some("osbuild-base"))] {
                let spec = base.join(format!("{name}.spec"));
                std::fs::write(&spec, spec_text(name, req)).unwrap();
                let st = Command::new("rpmbuild")
                    .arg("--define")
                    .arg(format!("_topdir {}", top.display()))
                    .arg("--define")
                    .arg(format!("_rpmdir {}", repo.display()))
                    .args(["--quiet", "-bb"])
                    .arg(&spec)
                    .status()
                    .unwrap();
                assert!(st.success(), "rpmbuild {name}");
            }
            assert!(Command::new("createrepo_c")
                .arg("-q")
                .arg(&repo)
                .status()
                .unwrap()
                .success());
            let ctx = Context {
                tree: tree.clone(),
                output_dir: None,
                cache: Some(cache.clone()),
                sources: None,
                assembly: Default::default(),
            };
            let options = json!({
                "releasever": "1",
                "basearch": "x86_64",
                "repos": {"local": {"baseurl": format!("file://{}", repo.display()), "gpgcheck": false}},
                "packages": ["osbuild-app"],
            });
            STAGE.run(&ctx, &options).unwrap();
            for name in ["osbuild-base", "osbuild-app"] {
                assert!(tree.join(format!("usr/share/{name}/hello")).exists(), "{name}'s file");
                let q = Command::new("rpm")
                    .arg(format!("--root={}", tree.display()))
                    .args(["--dbpath=/usr/lib/sysimage/rpm", "-q", name])
                    .output()
                    .unwrap();
                assert!(
                    q.status.success(),
                    "{name} in the rpm database: {}",
                    String::from_utf8_lossy(&q.stdout)
                );
            }
            assert!(!tree.join("var/cache/dnf").exists(), "no dnf cache in the tree");
            assert!(cache.join("dnf").is_dir());

            // Locked: dnf's resolver pins both files, with the repository's URL.
            let d: Dnf = serde_json::from_value(options.clone()).unwrap();
            let locked = d.resolve(&base.join("resolve")).unwrap();
            assert_eq!(locked.arch, "x86_64");
            assert_eq!(locked.repositories.len(), 1);
            let r = &locked.repositories[0];
            assert_eq!(r.format, Format::Rpm);
            assert_eq!(r.uri.as_deref(), Some(format!("file://{}", repo.display()).as_str()));
            assert_eq!(r.suite, "local");
            assert_eq!(r.release.path, "repodata/repomd.xml");
            let sha = |p: &Path| crate::lock::sha256_file(p).unwrap();
            assert_eq!(r.release.sha256, sha(&repo.join("repodata/repomd.xml")));
            assert_eq!(r.keyring.path, "none");
            let pins: Vec<(&str, &str, &str)> = r
                .packages
                .iter()
                .map(|p| (p.name.as_str(), p.version.as_str(), p.path.as_str()))
                .collect();
            assert_eq!(
                pins,
                [
                    ("osbuild-app", "1.0-1", "noarch/osbuild-app-1.0-1.noarch.rpm"),
                    ("osbuild-base", "1.0-1", "noarch/osbuild-base-1.0-1.noarch.rpm")
                ]
            );
            assert!(locked.problems().is_empty(), "{:?}", locked.problems());

            // Installed from the pinned files alone: the repository is gone.
            let sources = base.join("sources");
            std::fs::create_dir_all(sources.join("sha256")).unwrap();
            for p in &r.packages {
                let file = repo.join(&p.path);
                assert_eq!(p.sha256, sha(&file));
                std::fs::copy(&file, crate::offline::source_path(&sources, &p.sha256)).unwrap();
            }
            std::fs::remove_dir_all(&repo).unwrap();
            let tree2 = base.join("tree2");
            std::fs::create_dir_all(&tree2).unwrap();
            let ctx = Context {
                tree: tree2.clone(),
                output_dir: None,
                cache: None,
                sources: Some(sources.clone()),
                assembly: Default::default(),
            };
            let mut locked_options = options.clone();
            locked_options["locked"] = serde_json::to_value(&locked).unwrap();
            assert!(STAGE.check(&locked_options).is_empty());
            assert!(!STAGE.needs_network(&locked_options), "a locked dnf stage runs offline");
            STAGE.run(&ctx, &locked_options).unwrap();
            for name in ["osbuild-base", "osbuild-app"] {
                assert!(
                    tree2.join(format!("usr/share/{name}/hello")).exists(),
                    "{name}'s file, locked"
                );
            }
            // A pin whose file is not in the sources fails the stage, naming it.
            let mut missing = locked.clone();
            missing.repositories[0].packages[0].sha256 = "0".repeat(64);
            locked_options["locked"] = serde_json::to_value(&missing).unwrap();
            let tree3 = base.join("tree3");
            std::fs::create_dir_all(&tree3).unwrap();
            let ctx = Context { tree: tree3, ..ctx };
            let err = STAGE.run(&ctx, &locked_options).unwrap_err().to_string();
            assert!(
                err.contains("osbuild-app 1.0-1") && err.contains("is not in the build's sources"),
                "{err}"
            );
        });
        let _ = std::fs::remove_dir_all(&base);
        if let Err(e) = result {
            std::panic::resume_unwind(e);
        }
    }
}
