//! `org.osbuild.dnf`: installs RPM packages into the tree with the build
//! root's `dnf --installroot`.
//!
//! Only the manifest's repositories are used (`reposdir` points at a
//! directory holding just them, and the build root's `dnf.conf` is not read).
//! Downloaded packages and metadata are kept in the `rpm` cache
//! (`ctx.cache/dnf`, `keepcache`), never in the tree.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use crate::api::{Builtin, Context, Kind, Options, OptionsError, StageResult, WithPath};
use crate::command::{clean_env, run};

/// Installs RPM packages (and `@group`s) with dnf.
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Dnf {
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
        let result = self.install(ctx, &tmp);
        let _ = std::fs::remove_dir_all(&tmp);
        result?;
        crate::leftovers::remove(&tree, &before)
    }
}

impl Dnf {
    fn install(&self, ctx: &Context, tmp: &Path) -> StageResult {
        let repos = tmp.join("repos.d");
        let logs = tmp.join("log");
        let home = tmp.join("home");
        for d in [&repos, &logs, &home] {
            std::fs::create_dir_all(d).at(d)?;
        }
        std::fs::write(repos.join("osbuild.repo"), self.repo_file()).at(&repos)?;
        std::fs::write(tmp.join("dnf.conf"), "[main]\n").at(tmp)?;
        // rpm reads ~/.rpmmacros: fix where the tree's database goes (the
        // build root's rpm may default to somewhere odd, Debian's to ~/.rpmdb).
        std::fs::write(home.join(".rpmmacros"), format!("%_dbpath {}\n", self.dbpath)).at(&home)?;
        let tree = ctx.open_tree()?;
        tree.create_dir_all(self.dbpath.trim_start_matches('/'))?;

        let cachedir = match &ctx.cache {
            Some(c) => c.join("dnf"),
            None => tmp.join("cache"),
        };
        std::fs::create_dir_all(&cachedir).at(&cachedir)?;

        let mut cmd = Command::new("/usr/bin/dnf");
        clean_env(&mut cmd).env("HOME", &home);
        cmd.arg("-y")
            .arg(format!("--installroot={}", ctx.tree.display()))
            .arg(format!("--config={}", tmp.join("dnf.conf").display()))
            .arg(format!("--setopt=reposdir={}", repos.display()))
            .arg(format!("--setopt=cachedir={}", cachedir.display()))
            .arg(format!("--setopt=logdir={}", logs.display()))
            .arg(format!("--releasever={}", self.releasever))
            .arg(format!("--forcearch={}", self.basearch()))
            .args([
                "--setopt=keepcache=True",
                "--setopt=install_weak_deps=False",
                "--setopt=tsflags=nodocs",
                "--noplugins",
                "install",
                "--",
            ])
            .args(&self.packages);
        run(&mut cmd, "dnf install")?;
        // dnf keeps its own state under the installroot; the package cache is outside.
        // (dnf and rpm resolve paths under --installroot themselves.)
        tree.remove_dir_all("var/cache/dnf")?;
        Ok(())
    }
}

pub static STAGE: Builtin = Builtin::new::<Dnf>(
    "org.osbuild.dnf",
    Kind::Stage,
    "Installs RPM packages with dnf --installroot",
)
.with_network()
.with_cache("rpm");

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
        });
        let _ = std::fs::remove_dir_all(&base);
        if let Err(e) = result {
            std::panic::resume_unwind(e);
        }
    }
}
