//! `org.osbuild.apt`: installs Debian packages into the tree with the tree's own
//! apt and dpkg, so that the tree's own maintainer scripts run.
//!
//! Also home of what the Debian stages share: running programs inside the
//! tree, and the package cache.
//!
//! # The package cache
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
use std::ffi::CString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::api::{Builtin, Context, Kind, Options, OptionsError, PathSegment, StageError, StageResult, WithPath};
use crate::tree::Tree;

/// Installs (and removes) packages with the tree's own apt, in one transaction.
/// Services are kept from starting (`policy-rc.d`), dpkg runs without fsync,
/// and `update-initramfs` runs once at the end instead of after every package.
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Apt {
    /// Packages to install: names, optionally with `=VERSION` or `/RELEASE`.
    packages: Vec<PackageName>,
    /// Packages to remove, with their configuration files (purge).
    #[serde(default)]
    remove: Vec<PackageName>,
    /// Whether recommended packages are installed too.
    #[serde(default)]
    recommends: bool,
    /// Extra package repositories, each written to
    /// `/etc/apt/sources.list.d/NAME.sources` (deb822) before `apt-get update`.
    /// They stay in the tree.
    #[serde(default)]
    repositories: Vec<Repository>,
}

/// One deb822 source entry.
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Repository {
    /// File name in `/etc/apt/sources.list.d/`, without `.sources`.
    name: String,
    /// `deb` and/or `deb-src`.
    #[serde(default = "deb")]
    #[schemars(default = "deb")]
    types: Vec<String>,
    /// Base URIs of the repository.
    uris: Vec<String>,
    /// Suites (codenames), or a path ending in `/` for a flat repository.
    suites: Vec<String>,
    /// Components; must be empty for a flat repository.
    #[serde(default)]
    components: Vec<String>,
    /// The key the repository is signed with: a path of a keyring in the tree,
    /// or an ASCII-armored public key block.
    #[serde(default)]
    signed_by: Option<String>,
    /// Restrict the entry to these architectures.
    #[serde(default)]
    architectures: Vec<String>,
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

    /// apt-get's arguments naming the transaction: installs, then `name_` (purge).
    fn transaction(&self) -> Vec<String> {
        let mut args: Vec<String> = self.packages.iter().map(|p| p.0.clone()).collect();
        args.extend(self.remove.iter().map(|p| format!("{}_", p.0)));
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

        let mut env = BuildEnv::set_up(tree)?;
        let result = self.install(tree, ctx, &mut env);
        let undone = env.undo();
        result?;
        undone?;
        env.run_initramfs()?;
        clean_apt_dirs(tree)?;
        Ok(())
    }
}

impl Apt {
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
                .args(["install", "--"])
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
                .args(["-qq", "-y", "--print-uris", "-o", recommends, "install", "--"])
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

/// Where apt keeps package files, in the tree.
pub(crate) const ARCHIVES: &str = "var/cache/apt/archives";
/// Where apt keeps package lists, in the tree.
const LISTS: &str = "var/lib/apt/lists";

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

// ---------------------------------------------------------------------------
// Running programs

/// A command run inside the tree (chroot), with a clean, non-interactive
/// environment.
pub(crate) fn chroot_cmd(tree: &Path, program: &str) -> Command {
    let mut cmd = Command::new(program);
    clean_env(&mut cmd);
    let root = CString::new(tree.as_os_str().as_bytes()).expect("tree path without NUL");
    // SAFETY: only async-signal-safe calls (chroot, chdir) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::chroot(root.as_ptr()) != 0 || libc::chdir(c"/".as_ptr()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The environment every package tool runs with.
pub(crate) fn clean_env(cmd: &mut Command) -> &mut Command {
    cmd.env_clear()
        .env("PATH", PATH)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .env("DEBCONF_NONINTERACTIVE_SEEN", "true")
        .env("LC_ALL", "C")
        .env("HOME", "/root")
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs a command with its output going to the log.
pub(crate) fn run(cmd: &mut Command, what: &str) -> StageResult {
    println!("+ {}", describe(cmd));
    let _ = std::io::stdout().flush();
    let status = cmd
        .status()
        .map_err(|e| format!("{what}: cannot run {}: {e}", cmd.get_program().to_string_lossy()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({status})").into())
    }
}

/// Runs a command and returns its standard output (its standard error goes to the log).
pub(crate) fn output(cmd: &mut Command, what: &str) -> Result<String, StageError> {
    let _ = std::io::stdout().flush();
    let out = cmd
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("{what}: cannot run {}: {e}", cmd.get_program().to_string_lossy()))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("{what} failed ({})", out.status).into())
    }
}

// ---------------------------------------------------------------------------
// The package cache

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
fn installed_files(tree: &Tree) -> Result<BTreeSet<String>, StageError> {
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

pub static STAGE: Builtin = Builtin::new::<Apt>(
    "org.osbuild.apt",
    Kind::Stage,
    "Installs Debian packages with the tree's own apt, sharing downloads across builds",
)
.with_network()
.with_cache("deb")
.with_tree_mounts();

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
