//! `org.osbuild.apt`: installs Debian packages into the tree with the tree's own
//! apt and dpkg, so that the tree's own maintainer scripts run.
//!
//! What the Debian stages share lives beside it: running programs
//! (`command.rs`) and the package cache (`debcache.rs`).

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;

use crate::api::{Builtin, Context, Kind, Options, OptionsError, PathSegment, StageError, StageResult};
use crate::command::{chroot_cmd, output, run, PATH};
use crate::debcache::{keep_downloads, parse_print_uris, set_key, DebCache, Download, ARCHIVES, LISTS};
use crate::tree::Tree;

/// Installs (and removes) packages with the tree's own apt, in one transaction.
/// Services are kept from starting (`policy-rc.d`), dpkg runs without fsync,
/// and `update-initramfs` runs once at the end instead of after every package.
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Apt {
    /// Packages to install: names, optionally with `=VERSION` or `/RELEASE`.
    pub(crate) packages: Vec<PackageName>,
    /// Packages to remove, with their configuration files (purge).
    #[serde(default)]
    pub(crate) remove: Vec<PackageName>,
    /// Whether recommended packages are installed too.
    #[serde(default)]
    pub(crate) recommends: bool,
    /// Extra package repositories, each written to
    /// `/etc/apt/sources.list.d/NAME.sources` (deb822) before `apt-get update`.
    /// They stay in the tree.
    #[serde(default)]
    pub(crate) repositories: Vec<Repository>,
    /// The exact packages to install, as `osbuild lock` pinned them: the
    /// stage then runs without network, from the files fetched for the
    /// build. Written by a locked build, not by hand.
    #[serde(default)]
    pub(crate) locked: Option<crate::lock::Locked>,
}

/// One deb822 source entry.
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Repository {
    /// File name in `/etc/apt/sources.list.d/`, without `.sources`.
    pub(crate) name: String,
    /// `deb` and/or `deb-src`.
    #[serde(default = "deb")]
    #[schemars(default = "deb")]
    pub(crate) types: Vec<String>,
    /// Base URIs of the repository.
    pub(crate) uris: Vec<String>,
    /// Suites (codenames), or a path ending in `/` for a flat repository.
    pub(crate) suites: Vec<String>,
    /// Components; must be empty for a flat repository.
    #[serde(default)]
    pub(crate) components: Vec<String>,
    /// The key the repository is signed with: a path of a keyring in the tree,
    /// or an ASCII-armored public key block.
    #[serde(default)]
    pub(crate) signed_by: Option<String>,
    /// Restrict the entry to these architectures.
    #[serde(default)]
    pub(crate) architectures: Vec<String>,
}

fn deb() -> Vec<String> {
    vec!["deb".into()]
}

/// A Debian package name, optionally with `:ARCH`, `=VERSION` or `/RELEASE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PackageName(pub String);

impl PackageName {
    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        let (head, rest) = s.split_at(s.find(['=', '/']).unwrap_or(s.len()));
        let (name, arch) = match head.split_once(':') {
            Some((name, arch)) => (name, Some(arch)),
            None => (head, None),
        };
        let ok_name = name.len() >= 2
            && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c));
        let ok_arch = arch.is_none_or(|a| !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        let ok_rest = rest.len() != 1
            && rest
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.:~=/_".contains(c));
        if ok_name && ok_arch && ok_rest {
            Ok(PackageName(s.to_string()))
        } else {
            Err(format!("{s:?} is not a Debian package name"))
        }
    }
}

impl<'de> serde::Deserialize<'de> for PackageName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        PackageName::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for PackageName {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "PackageName".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^[a-z0-9][a-z0-9+.-]+(:[A-Za-z0-9-]+)?([=/][A-Za-z0-9+.:~_/=-]+)?$",
            "description": "a package name, optionally with :ARCH, =VERSION or /RELEASE"
        })
    }
}

impl Repository {
    /// Every problem of the entry at `at` (`repositories[i]`).
    fn problems(&self, at: &[PathSegment], problems: &mut Vec<OptionsError>) {
        let path = |rest: Vec<PathSegment>| [at, &rest].concat();
        let word = |s: &String| !s.is_empty() && !s.chars().any(|c| c.is_whitespace() || c.is_control());
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
            || self.name.starts_with('.')
        {
            problems.push(OptionsError::invalid(
                path(crate::at!["name"]),
                format!(
                    "repository name {:?}: letters, digits, '_', '.' and '-' only",
                    self.name
                ),
            ));
        }
        if self.types.is_empty() {
            problems.push(OptionsError::invalid(
                path(crate::at!["types"]),
                "types must be \"deb\" and/or \"deb-src\"",
            ));
        }
        for (i, t) in self.types.iter().enumerate() {
            if t != "deb" && t != "deb-src" {
                problems.push(OptionsError::invalid(
                    path(crate::at!["types", i]),
                    format!("{t:?}: types must be \"deb\" and/or \"deb-src\""),
                ));
            }
        }
        for (what, list) in [("uris", &self.uris), ("suites", &self.suites)] {
            if list.is_empty() {
                problems.push(OptionsError::invalid(
                    path(crate::at![what]),
                    format!("{what} must be non-empty words"),
                ));
            }
        }
        for (what, list) in [
            ("uris", &self.uris),
            ("suites", &self.suites),
            ("components", &self.components),
            ("architectures", &self.architectures),
        ] {
            for (i, item) in list.iter().enumerate() {
                if !word(item) {
                    problems.push(OptionsError::invalid(
                        path(crate::at![what, i]),
                        format!("{item:?} is not a single word"),
                    ));
                }
            }
        }
        let flat = self.suites.iter().any(|s| s.ends_with('/'));
        if flat != self.components.is_empty() {
            problems.push(OptionsError::invalid(
                path(crate::at![if flat { "components" } else { "suites" }]),
                "a flat suite (ending in '/') takes no components, any other needs some",
            ));
        }
    }

    /// The deb822 stanza.
    fn deb822(&self) -> String {
        let mut s = format!(
            "Types: {}\nURIs: {}\nSuites: {}\n",
            self.types.join(" "),
            self.uris.join(" "),
            self.suites.join(" ")
        );
        if !self.components.is_empty() {
            s += &format!("Components: {}\n", self.components.join(" "));
        }
        if !self.architectures.is_empty() {
            s += &format!("Architectures: {}\n", self.architectures.join(" "));
        }
        if let Some(key) = &self.signed_by {
            let key = key.trim();
            if key.contains('\n') {
                // An inline key: continuation lines, "." for an empty line.
                s += "Signed-By:\n";
                for line in key.lines() {
                    let line = line.trim_end();
                    s += &format!(" {}\n", if line.is_empty() { "." } else { line });
                }
            } else {
                s += &format!("Signed-By: {key}\n");
            }
        }
        s
    }
}

impl Apt {
    fn problems(&self) -> Vec<OptionsError> {
        let mut problems = Vec::new();
        if self.packages.is_empty() && self.remove.is_empty() {
            problems.push(OptionsError::invalid(
                crate::at!["packages"],
                "nothing to do: both packages and remove are empty",
            ));
        }
        for (i, p) in self.remove.iter().enumerate() {
            if p.0.contains(['=', '/']) {
                problems.push(OptionsError::invalid(
                    crate::at!["remove", i],
                    format!("{:?}: a package to remove takes no version or release", p.0),
                ));
            }
        }
        let mut names = BTreeSet::new();
        for (i, r) in self.repositories.iter().enumerate() {
            r.problems(
                &[PathSegment::Key("repositories".into()), PathSegment::Index(i)],
                &mut problems,
            );
            if !names.insert(&r.name) {
                problems.push(OptionsError::invalid(
                    crate::at!["repositories", i, "name"],
                    format!("repository name {:?} appears twice", r.name),
                ));
            }
        }
        problems
    }

    /// apt-get's arguments naming the transaction: installs, then `name-`
    /// (removals; `--purge` makes them purges).
    pub(crate) fn transaction(&self) -> Vec<String> {
        let mut args: Vec<String> = self.packages.iter().map(|p| p.0.clone()).collect();
        args.extend(self.remove.iter().map(|p| format!("{}-", p.0)));
        args
    }
}

impl Options for Apt {
    fn validate(&self) -> Vec<OptionsError> {
        self.problems()
    }

    fn run(self, ctx: &Context) -> StageResult {
        let tree = &ctx.open_tree()?;
        if !tree.is_file("usr/bin/apt-get") {
            return Err("the tree has no /usr/bin/apt-get: bootstrap it first (org.osbuild.debootstrap)".into());
        }
        for r in &self.repositories {
            tree.create_dir_all("etc/apt/sources.list.d")?;
            tree.write(format!("etc/apt/sources.list.d/{}.sources", r.name), r.deb822())?;
            println!("wrote /etc/apt/sources.list.d/{}.sources", r.name);
        }

        let before = crate::leftovers::Before::look(tree);
        let mut env = BuildEnv::set_up(tree)?;
        let result = match &self.locked {
            Some(locked) => self.install_locked(tree, ctx, &mut env, locked),
            None => self.install(tree, ctx, &mut env),
        };
        let undone = env.undo();
        result?;
        undone?;
        env.run_initramfs()?;
        clean_apt_dirs(tree)?;
        crate::leftovers::remove(tree, &before)
    }
}

/// Where a locked apt stage's local repository and lists live, in the
/// tree's `/tmp` (the sandbox's tmpfs, so nothing of it is stored).
const LOCKED_DIR: &str = "tmp/osbuild-locked";

impl Apt {
    /// The locked install: apt sees only a local repository of the pinned
    /// files (see `offline.rs`), not the tree's sources, and finds every file
    /// already in the archives; the tree's own apt sources and lists stay as
    /// they are.
    fn install_locked(
        &self,
        tree: &Tree,
        ctx: &Context,
        env: &mut BuildEnv,
        locked: &crate::lock::Locked,
    ) -> StageResult {
        let sources = ctx.locked_sources()?;
        let epoch = locked.release_date();
        let inside = Path::new("/").join(LOCKED_DIR);
        let dir = tree.path().join(LOCKED_DIR);
        let line = crate::offline::local_repository(locked, sources, &dir.join("repo"), &inside.join("repo"), epoch)?;
        for d in ["parts", "lists/partial"] {
            std::fs::create_dir_all(dir.join(d)).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        std::fs::write(dir.join("sources.list"), line).map_err(|e| format!("{}: {e}", dir.display()))?;
        let i = inside.display();
        let opts = [
            format!("Dir::Etc::SourceList={i}/sources.list"),
            format!("Dir::Etc::SourceParts={i}/parts"),
            format!("Dir::State::Lists={i}/lists"),
        ];
        let apt = || {
            let mut cmd = chroot_cmd(tree.path(), "/usr/bin/apt-get");
            cmd.args(opts.iter().flat_map(|o| ["-o", o.as_str()]));
            cmd
        };
        run(apt().args(["-q", "update"]), "apt-get update (locked)")?;
        let bytes = crate::offline::seed_archives(locked, sources, tree)?;
        println!(
            "locked: {} packages ({}) from the build's sources",
            locked.pins().count(),
            crate::progress::human_bytes(bytes)
        );
        let recommends = format!("APT::Install-Recommends={}", self.recommends);
        let wanted = output(
            apt()
                .args([
                    "-qq",
                    "-y",
                    "--print-uris",
                    "-o",
                    &recommends,
                    "--purge",
                    "install",
                    "--",
                ])
                .args(self.transaction()),
            "apt-get --print-uris (locked)",
        )?;
        crate::offline::nothing_else(&wanted)?;
        let before = kernels(tree);
        run(
            apt()
                .args(["-q", "-y", "-o", &recommends])
                .args(DPKG_OPTS.iter().flat_map(|o| ["-o", o]))
                .args(["--purge", "install", "--"])
                .args(self.transaction()),
            "apt-get install",
        )?;
        env.new_kernels = kernels(tree).difference(&before).cloned().collect();
        crate::offline::all_installed(locked, tree)?;
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }

    fn install(&self, tree: &Tree, ctx: &Context, env: &mut BuildEnv) -> StageResult {
        let cache = ctx.cache.as_deref().map(DebCache::open).transpose()?;
        if let Some(cache) = &cache {
            cache.lists_in(tree)?;
        }
        run(
            chroot_cmd(tree.path(), "/usr/bin/apt-get").args(["-q", "-o", "Acquire::Languages=none", "update"]),
            "apt-get update",
        )?;
        if let Some(cache) = &cache {
            cache.lists_out(tree)?;
        }

        let recommends = format!("APT::Install-Recommends={}", self.recommends);
        let transaction = self.transaction();
        let (key, seeded) = match &cache {
            None => (String::new(), Vec::new()),
            Some(cache) => {
                let key = self.set_key(tree, &recommends)?;
                let seeded = self.seed(cache, &key, tree, &recommends)?;
                (key, seeded)
            }
        };

        let before = kernels(tree);
        run(
            chroot_cmd(tree.path(), "/usr/bin/apt-get")
                .args(["-q", "-y", "-o", &recommends])
                .args(DPKG_OPTS.iter().flat_map(|o| ["-o", o]))
                .args(["--purge", "install", "--"])
                .args(&transaction),
            "apt-get install",
        )?;
        env.new_kernels = kernels(tree).difference(&before).cloned().collect();

        if let Some(cache) = &cache {
            keep_downloads(cache, tree, &key, &seeded)?;
        }
        Ok(())
    }

    /// Copies the packages apt will install from the cache into the tree:
    /// those an earlier run on the same tree installed, as recorded in the
    /// cache; else the ones `apt-get --print-uris` names.
    fn seed(&self, cache: &DebCache, key: &str, tree: &Tree, recommends: &str) -> Result<Vec<Download>, StageError> {
        if let Some(set) = cache.recorded(key) {
            println!("package cache: the package set of an earlier run on this tree");
            return cache.seed(&set, tree, ARCHIVES);
        }
        let out = output(
            chroot_cmd(tree.path(), "/usr/bin/apt-get")
                .args([
                    "-qq",
                    "-y",
                    "--print-uris",
                    "-o",
                    recommends,
                    "--purge",
                    "install",
                    "--",
                ])
                .args(self.transaction()),
            "apt-get --print-uris",
        )?;
        let mut uris = parse_print_uris(&out);
        crate::debootstrap::fill_sha256(tree, &mut uris)?;
        cache.seed(&uris, tree, ARCHIVES)
    }

    /// What decides the packages this stage installs: the tree's installed
    /// packages, its apt sources and preferences, and the transaction.
    fn set_key(&self, tree: &Tree, recommends: &str) -> Result<String, StageError> {
        let mut inputs: Vec<Vec<u8>> = vec![
            recommends.as_bytes().to_vec(),
            self.transaction().join(" ").into_bytes(),
        ];
        for name in [
            "var/lib/dpkg/status",
            "etc/apt/sources.list",
            "etc/apt/sources.list.d",
            "etc/apt/preferences",
            "etc/apt/preferences.d",
        ] {
            inputs.push(name.as_bytes().to_vec());
            if tree.is_dir(name) {
                // Sorted by name.
                for e in tree.read_dir(name)? {
                    inputs.push(e.name.as_encoded_bytes().to_vec());
                    inputs.push(tree.read(Path::new(name).join(&e.name)).unwrap_or_default());
                }
            } else {
                inputs.push(tree.read(name).unwrap_or_default());
            }
        }
        let refs: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
        Ok(set_key("org.osbuild.apt", &refs))
    }
}

/// apt options for dpkg: no fsync (the tree is thrown away on failure anyway),
/// keep existing configuration files without asking, no pty.
const DPKG_OPTS: &[&str] = &[
    "Dpkg::Options::=--force-unsafe-io",
    "Dpkg::Options::=--force-confdef",
    "Dpkg::Options::=--force-confold",
    "Dpkg::Use-Pty=0",
];

/// Kernel versions in the tree: `/usr/lib/modules/*` (or `/lib/modules/*`).
fn kernels(tree: &Tree) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for dir in ["usr/lib/modules", "lib/modules"] {
        if let Ok(entries) = tree.read_dir(dir) {
            for e in entries {
                if tree.is_dir(Path::new(dir).join(&e.name)) {
                    out.insert(e.name.to_string_lossy().into_owned());
                }
            }
        }
    }
    out
}

const POLICY_RC_D: &str = "usr/sbin/policy-rc.d";
const UPDATE_INITRAMFS: &str = "/usr/sbin/update-initramfs";
const INITRAMFS_CALLS: &str = "var/lib/osbuild-update-initramfs.calls";
/// Where the do-nothing `sync` for update-initramfs lives, in the tree.
const NOSYNC_DIR: &str = "tmp/osbuild-nosync";

/// What the apt stage puts in place for the build and takes away afterwards:
/// `policy-rc.d`, the build root's `resolv.conf`, and `update-initramfs`
/// diverted to a stub that only records it was called.
struct BuildEnv {
    tree: Tree,
    policy_saved: Option<Vec<u8>>,
    resolv_saved: Option<&'static str>,
    /// What was put at `/etc/resolv.conf`, to tell it from what a package
    /// (systemd-resolved, resolvconf) puts there instead.
    resolv_placed: Option<Vec<u8>>,
    diverted: bool,
    undone: bool,
    new_kernels: Vec<String>,
}

impl BuildEnv {
    fn set_up(tree: &Tree) -> Result<Self, StageError> {
        let mut env = BuildEnv {
            tree: tree.try_clone()?,
            policy_saved: None,
            resolv_saved: None,
            resolv_placed: None,
            diverted: false,
            undone: false,
            new_kernels: Vec::new(),
        };
        // Services must not start in the tree during the build.
        env.policy_saved = tree.read(POLICY_RC_D).ok();
        write_exec(
            tree,
            POLICY_RC_D,
            "#!/bin/sh\n# osbuild: no service starts during the build\nexit 101\n",
        )?;

        // Name resolution inside the chroot: the build root's resolv.conf.
        // The tree's own may be a dangling symlink (systemd-resolved's stub
        // lives in /run): it is moved aside whatever it is, and comes back.
        let resolv = "etc/resolv.conf";
        if let Ok(content) = std::fs::read("/etc/resolv.conf") {
            if tree.symlink_metadata(resolv).is_ok() {
                let saved = "etc/resolv.conf.osbuild-saved";
                tree.rename(resolv, saved)?;
                env.resolv_saved = Some(saved);
            }
            tree.write(resolv, &content)?;
            tree.set_mode(resolv, 0o644)?;
            env.resolv_placed = Some(content);
        }

        // update-initramfs: once at the end, not after every kernel or hook.
        run(
            chroot_cmd(tree.path(), "/usr/bin/dpkg-divert").args(["--local", "--rename", "--add", UPDATE_INITRAMFS]),
            "dpkg-divert update-initramfs",
        )?;
        env.diverted = true;
        let stub = format!(
            "#!/bin/sh\n# osbuild: update-initramfs runs once at the end of the apt stage\necho \"$*\" >> /{INITRAMFS_CALLS}\nexit 0\n"
        );
        write_exec(tree, UPDATE_INITRAMFS, &stub)?;
        Ok(env)
    }

    /// Restores everything; safe to call twice.
    fn undo(&mut self) -> StageResult {
        if self.undone {
            return Ok(());
        }
        self.undone = true;
        let tree = &self.tree;
        let mut first_err: Option<StageError> = None;
        let mut note = |r: StageResult| {
            if let Err(e) = r {
                eprintln!("{e}");
                first_err.get_or_insert(e);
            }
        };
        if self.diverted {
            note(tree.remove_file(UPDATE_INITRAMFS).map_err(Into::into));
            note(run(
                chroot_cmd(tree.path(), "/usr/bin/dpkg-divert").args([
                    "--local",
                    "--rename",
                    "--remove",
                    UPDATE_INITRAMFS,
                ]),
                "dpkg-divert --remove update-initramfs",
            ));
        }
        note(match &self.policy_saved {
            Some(old) => write_exec(tree, POLICY_RC_D, old),
            None => tree.remove_file(POLICY_RC_D).map_err(Into::into),
        });
        let resolv = "etc/resolv.conf";
        if let Some(placed) = &self.resolv_placed {
            let ours = tree.symlink_metadata(resolv).is_ok_and(|m| m.is_file())
                && tree.read(resolv).is_ok_and(|now| now == *placed);
            if ours {
                note(tree.remove_file(resolv).map_err(Into::into));
                if let Some(saved) = self.resolv_saved {
                    note(tree.rename(saved, resolv).map_err(Into::into));
                }
            } else {
                // A package installed here replaced it (systemd-resolved
                // links it to its stub): that is the image's now.
                println!("keeping the /etc/resolv.conf a package put in place");
                if let Some(saved) = self.resolv_saved {
                    note(tree.remove_file(saved).map_err(Into::into));
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Builds the initramfs of every kernel installed by this stage (or of
    /// every kernel, if a hook asked for an update), once.
    fn run_initramfs(&self) -> StageResult {
        let tree = &self.tree;
        let called = tree.exists(INITRAMFS_CALLS);
        let _ = tree.remove_file(INITRAMFS_CALLS);
        if !tree.is_file(UPDATE_INITRAMFS) {
            return Ok(());
        }
        let versions: Vec<String> = if called {
            kernels(tree).into_iter().collect()
        } else {
            self.new_kernels.clone()
        };
        // update-initramfs ends with `sync -f` on the new image, which writes
        // out every dirty page of the file system the store is on, most of
        // them the packages just unpacked. The tree needs no durability while
        // it is built (a failed build is thrown away: the reason for dpkg's
        // --force-unsafe-io too), so a `sync` that does nothing comes first
        // on its PATH, in the tree's /tmp (removed again).
        write_exec(tree, &format!("{NOSYNC_DIR}/sync"), "#!/bin/sh\nexit 0\n")?;
        let result = versions.iter().try_for_each(|v| {
            if !tree.exists(format!("boot/vmlinuz-{v}")) {
                return Ok(());
            }
            let mode = if tree.exists(format!("boot/initrd.img-{v}")) {
                "-u"
            } else {
                "-c"
            };
            run(
                chroot_cmd(tree.path(), UPDATE_INITRAMFS)
                    .env("PATH", format!("/{NOSYNC_DIR}:{PATH}"))
                    .args([mode, "-k", v]),
                &format!("update-initramfs {mode} -k {v}"),
            )
        });
        tree.remove_dir_all(NOSYNC_DIR)?;
        result
    }
}

impl Drop for BuildEnv {
    fn drop(&mut self) {
        let _ = self.undo();
    }
}

/// An executable file in the tree, replacing what is there.
fn write_exec(tree: &Tree, path: &str, content: impl AsRef<[u8]>) -> StageResult {
    tree.create_parents(path)?;
    tree.write_with(path, 0o755, None, |f| f.write_all(content.as_ref()))?;
    Ok(())
}

/// Empties `var/cache/apt/archives` and `var/lib/apt/lists` (keeping their
/// `partial/` directories and lock files), so neither package files nor
/// package lists end up in the stored tree.
pub(crate) fn clean_apt_dirs(tree: &Tree) -> StageResult {
    for dir in [ARCHIVES, LISTS] {
        let Ok(entries) = tree.read_dir(dir) else { continue };
        for e in entries {
            let path = Path::new(dir).join(&e.name);
            if e.kind == crate::tree::Kind::Dir {
                for f in tree.read_dir(&path).unwrap_or_default() {
                    let _ = tree.remove_file(path.join(&f.name));
                }
            } else if e.name != "lock" {
                tree.remove_file(&path)?;
            }
        }
    }
    for f in ["var/cache/apt/pkgcache.bin", "var/cache/apt/srcpkgcache.bin"] {
        let _ = tree.remove_file(f);
    }
    Ok(())
}

pub static STAGE: Builtin = Builtin::new::<Apt>(
    "org.osbuild.apt",
    Kind::Stage,
    "Installs Debian packages with the tree's own apt, sharing downloads across builds",
)
.with_network()
.with_cache("deb")
.with_tree_mounts()
.with_lock();

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn package_names() {
        for ok in [
            "hello",
            "libc6:amd64",
            "linux-image-amd64",
            "g++",
            "hello=2.10-3",
            "hello/bookworm-backports",
        ] {
            assert!(PackageName::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["-o", "Hello", "a", "has space", "x;rm", "", "hello:", "--purge"] {
            assert!(PackageName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn options_are_checked() {
        assert!(STAGE.check(&json!({"packages": ["hello"]})).is_empty());
        let err = STAGE.check(&json!({"packages": ["hello", "-oAPT::x"]}));
        assert_eq!(err[0].path, crate::at!["packages", 1]);
        assert!(!STAGE.check(&json!({"packages": ["hello"], "bogus": 1})).is_empty());
        assert!(
            !STAGE.check(&json!({"remove": ["hello"]})).is_empty(),
            "packages is required"
        );

        let paths = |v: serde_json::Value| -> Vec<String> {
            STAGE.check(&v).iter().map(|e| crate::api::path_text(&e.path)).collect()
        };
        assert_eq!(paths(json!({"packages": [], "remove": ["hello=1"]})), ["remove[0]"]);
        assert_eq!(paths(json!({"packages": []})), ["packages"]);
        let repo = |r: serde_json::Value| paths(json!({"packages": ["x1"], "repositories": [r]}));
        assert!(repo(json!({"name": "extra", "uris": ["http://mirror.example/debian"], "suites": ["bookworm"], "components": ["main"]})).is_empty());
        assert_eq!(
            repo(json!({"name": "../x", "uris": ["u"], "suites": ["s"], "components": ["main"]})),
            ["repositories[0].name"]
        );
        assert!(repo(json!({"name": "flat", "uris": ["file:///repo"], "suites": ["./"]})).is_empty());
        assert_eq!(
            repo(json!({"name": "flat", "uris": ["file:///repo"], "suites": ["./"], "components": ["main"]})),
            ["repositories[0].components"]
        );
        assert_eq!(
            repo(json!({"name": "nocomp", "uris": ["u"], "suites": ["bookworm"]})),
            ["repositories[0].suites"]
        );
        assert_eq!(
            repo(json!({"name": "t", "types": ["rpm"], "uris": ["u"], "suites": ["s"], "components": ["c"]})),
            ["repositories[0].types[0]"]
        );
        // Every problem at once, each where it is.
        let r = json!({"name": "a", "uris": [], "suites": ["s"], "components": ["c d"], "architectures": [""]});
        assert_eq!(
            paths(json!({"packages": ["x1"], "repositories": [r.clone(), r]})),
            [
                "repositories[0].uris",
                "repositories[0].components[0]",
                "repositories[0].architectures[0]",
                "repositories[1].uris",
                "repositories[1].components[0]",
                "repositories[1].architectures[0]",
                "repositories[1].name"
            ]
        );
    }

    #[test]
    fn deb822_entries() {
        let r: Repository = serde_json::from_value(json!({
            "name": "extra",
            "uris": ["http://mirror.example/debian"],
            "suites": ["bookworm", "bookworm-updates"],
            "components": ["main", "contrib"],
            "signed_by": "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nabc\n-----END PGP PUBLIC KEY BLOCK-----\n",
        }))
        .unwrap();
        assert_eq!(
            r.deb822(),
            "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n\
             Components: main contrib\nSigned-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n abc\n \
             -----END PGP PUBLIC KEY BLOCK-----\n"
        );
    }
}
