//! `org.osbuild.debootstrap`: creates a base Debian tree with mmdebstrap.
//!
//! mmdebstrap rather than debootstrap: about twice as fast and a smaller
//! tree. It runs in root mode without mounting anything (the stage has no
//! CAP_SYS_ADMIN), with dpkg's `--force-unsafe-io`, and shares downloaded
//! packages with `org.osbuild.apt` through the `deb` cache (see `apt.rs`):
//! before mmdebstrap runs, the cached files of the package set are copied
//! into the tree's `var/cache/apt/archives`, where mmdebstrap takes them as
//! already downloaded. The package set is the one an earlier run with the
//! same options recorded, or else what the build root's apt works out from
//! the package lists; afterwards the new downloads go to the cache, keyed by
//! the SHA256 of the Packages index.

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::api::{Builtin, Context, Kind, Options, OptionsError, StageError, StageResult, WithPath};
use crate::apt::{clean_apt_dirs, PackageName};
use crate::command::{clean_env, output, run};
use crate::debcache::{keep_downloads, parse_print_uris, set_key, DebCache, Download, ARCHIVES};
use crate::tree::Tree;

/// Creates a base Debian system in the (empty) tree.
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Debootstrap {
    /// The release: a codename such as `bookworm`.
    pub(crate) suite: String,
    /// The package set: `essential`, `apt`, `minbase` (= `required`:
    /// Essential and Priority required), `buildd`, `important` or `standard`.
    #[serde(default)]
    pub(crate) variant: Variant,
    /// Archive components.
    #[serde(default = "main")]
    #[schemars(default = "main")]
    pub(crate) components: Vec<String>,
    /// Extra packages to install.
    #[serde(default)]
    pub(crate) packages: Vec<PackageName>,
    /// The Debian architecture; by default the build root's
    /// (`dpkg --print-architecture`, or from `uname`).
    #[serde(default)]
    pub(crate) arch: Option<String>,
    /// The mirror URL; by default the first Debian mirror of the build
    /// root's apt sources (`/etc/apt/sources.list{,.d}`).
    #[serde(default)]
    pub(crate) mirror: Option<String>,
    /// The exact packages to install, as `osbuild lock` pinned them: the
    /// stage then runs without network, from the files fetched for the
    /// build. Written by a locked build, not by hand.
    #[serde(default)]
    pub(crate) locked: Option<crate::lock::Locked>,
}

fn main() -> Vec<String> {
    vec!["main".into()]
}

#[derive(serde::Deserialize, schemars::JsonSchema, Default, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Variant {
    Essential,
    Apt,
    Required,
    #[default]
    Minbase,
    Buildd,
    Important,
    Standard,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Essential => "essential",
            Variant::Apt => "apt",
            Variant::Required => "required",
            Variant::Minbase => "minbase",
            Variant::Buildd => "buildd",
            Variant::Important => "important",
            Variant::Standard => "standard",
        }
    }

    /// The priorities whose packages the variant installs (besides Essential ones).
    pub(crate) fn priorities(self) -> &'static [&'static str] {
        match self {
            Variant::Essential | Variant::Apt => &[],
            Variant::Required | Variant::Minbase | Variant::Buildd => &["required"],
            Variant::Important => &["required", "important"],
            Variant::Standard => &["required", "important", "standard"],
        }
    }

    pub(crate) fn extra(self) -> &'static [&'static str] {
        match self {
            Variant::Apt => &["apt"],
            Variant::Buildd => &["build-essential"],
            _ => &[],
        }
    }
}

fn word(s: &str) -> bool {
    !s.is_empty() && !s.starts_with('-') && !s.chars().any(|c| c.is_whitespace() || c.is_control() || c == ',')
}

impl Options for Debootstrap {
    fn validate(&self) -> Vec<OptionsError> {
        let mut problems = Vec::new();
        if !word(&self.suite) || self.suite.contains('/') {
            problems.push(OptionsError::invalid(
                crate::at!["suite"],
                format!("{:?} is not a suite name", self.suite),
            ));
        }
        if self.components.is_empty() {
            problems.push(OptionsError::invalid(
                crate::at!["components"],
                "components must be a non-empty list of names",
            ));
        }
        for (i, c) in self.components.iter().enumerate() {
            if !word(c) {
                problems.push(OptionsError::invalid(
                    crate::at!["components", i],
                    format!("{c:?} is not a component name"),
                ));
            }
        }
        if let Some(arch) = &self.arch {
            if arch.is_empty()
                || !arch
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            {
                problems.push(OptionsError::invalid(
                    crate::at!["arch"],
                    format!("{arch:?} is not a Debian architecture"),
                ));
            }
        }
        if let Some(m) = &self.mirror {
            if !word(m) || !m.contains(":/") {
                problems.push(OptionsError::invalid(
                    crate::at!["mirror"],
                    format!("{m:?} is not a URL"),
                ));
            }
        }
        problems
    }

    fn run(self, ctx: &Context) -> StageResult {
        let arch = match &self.arch {
            Some(a) => a.clone(),
            None => host_arch().ok_or("cannot tell the build root's architecture: set arch")?,
        };
        let mirror = match &self.mirror {
            Some(m) => m.clone(),
            None => host_mirror(Path::new("/"), &self.suite)
                .ok_or("no Debian mirror in the build root's apt sources (/etc/apt/sources.list{,.d}): set mirror")?,
        };
        if !Path::new("/usr/bin/mmdebstrap").exists() {
            return Err("mmdebstrap is not installed in the build root (package mmdebstrap)".into());
        }
        std::fs::create_dir_all(&ctx.tree).at(&ctx.tree)?;
        let tree = &ctx.open_tree()?;
        if !tree.read_dir("/")?.is_empty() {
            println!("note: the tree is not empty; bootstrapping over it");
        }
        let before = crate::leftovers::Before::look(tree);
        println!(
            "bootstrapping {} {} ({arch}) from {mirror}",
            self.suite,
            self.variant.name()
        );

        if let Some(locked) = &self.locked {
            return self.run_locked(ctx, tree, locked, &arch, &mirror, &before);
        }

        let cache = ctx.cache.as_deref().map(DebCache::open).transpose()?;
        let names: Vec<&str> = self.packages.iter().map(|p| p.0.as_str()).collect();
        let key = set_key(
            "org.osbuild.debootstrap",
            &[
                self.suite.as_bytes(),
                self.variant.name().as_bytes(),
                self.components.join(" ").as_bytes(),
                names.join(" ").as_bytes(),
                arch.as_bytes(),
                mirror.as_bytes(),
            ],
        );
        let mut seeded = Vec::new();
        if let Some(cache) = &cache {
            // Only an optimisation: on failure, mmdebstrap downloads everything.
            match self.seed(cache, &key, tree, &arch, &mirror) {
                Ok(s) => seeded = s,
                Err(e) => println!("package cache not used: {e}"),
            }
        }

        let mut cmd = self.mmdebstrap(&arch);
        // mmdebstrap runs outside the tree, but most of its work chrooted into it.
        cmd.arg(&self.suite).arg(tree.path()).arg(&mirror);
        run(&mut cmd, "mmdebstrap")?;

        if let Some(cache) = &cache {
            keep_downloads(cache, tree, &key, &seeded)?;
            cache.lists_out(tree)?;
        }
        clean_apt_dirs(tree)?;
        tidy(tree, &before)
    }
}

impl Debootstrap {
    /// mmdebstrap with every argument but the suite, target and mirror.
    fn mmdebstrap(&self, arch: &str) -> Command {
        let mut cmd = Command::new("/usr/bin/mmdebstrap");
        clean_env(&mut cmd).args([
            "--mode=root",
            &format!("--variant={}", self.variant.name()),
            &format!("--architectures={arch}"),
            &format!("--components={}", self.components.join(",")),
            // No mounts (no CAP_SYS_ADMIN), the cache handled here, apt's
            // directories emptied here after the cache has taken its share.
            "--skip=chroot/mount",
            "--skip=check/empty",
            "--skip=download/empty",
            "--skip=essential/unlink",
            "--skip=cleanup/apt",
            // fsync dominates package installation.
            "--dpkgopt=force-unsafe-io",
        ]);
        if !self.packages.is_empty() {
            let names: Vec<&str> = self.packages.iter().map(|p| p.0.as_str()).collect();
            cmd.arg(format!("--include={}", names.join(",")));
        }
        if needs_merged_usr_hook(&self.suite) {
            cmd.arg("--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr");
        }
        cmd
    }

    /// The locked bootstrap: the pinned files, from a local repository made
    /// of them (see `offline.rs`), with no network; then the tree's apt
    /// sources name the real mirror, as an unlocked bootstrap leaves them.
    fn run_locked(
        &self,
        ctx: &Context,
        tree: &Tree,
        locked: &crate::lock::Locked,
        arch: &str,
        mirror: &str,
        before: &crate::leftovers::Before,
    ) -> StageResult {
        let sources = ctx.locked_sources()?;
        locked.check_arch(arch)?;
        let epoch = locked.release_date();
        let repo = std::env::temp_dir().join("osbuild-locked");
        let line = crate::offline::local_repository(locked, sources, &repo, &repo, epoch)?;
        let bytes = crate::offline::seed_archives(locked, sources, tree)?;
        println!(
            "locked: {} packages ({}) from the build's sources",
            locked.pins().count(),
            crate::progress::human_bytes(bytes)
        );
        let mut cmd = self.mmdebstrap(arch);
        cmd.arg(&self.suite).arg(tree.path()).arg(line.trim_end());
        run(&mut cmd, "mmdebstrap")?;
        crate::offline::all_installed(locked, tree)?;
        tree.write(
            "etc/apt/sources.list",
            format!("deb {mirror} {} {}\n", self.suite, self.components.join(" ")),
        )?;
        clean_apt_dirs(tree)?;
        tidy(tree, before)
    }

    /// Copies the packages mmdebstrap will install from the cache into the
    /// tree, with the cached package lists (so mmdebstrap's own `apt-get
    /// update` only checks they are current). Which packages: those an
    /// earlier run with the same options installed, as recorded in the cache;
    /// else the set the build root's apt works out, which takes a second or two.
    fn seed(
        &self,
        cache: &DebCache,
        key: &str,
        tree: &Tree,
        arch: &str,
        mirror: &str,
    ) -> Result<Vec<Download>, StageError> {
        cache.lists_in(tree)?;
        if let Some(set) = cache.recorded(key) {
            println!("package cache: the package set of an earlier run with these options");
            return cache.seed(&set, tree, ARCHIVES);
        }
        let tmp = std::env::temp_dir().join(format!("osbuild-debootstrap-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        let result = self.resolve(tree, arch, mirror, &tmp);
        let _ = std::fs::remove_dir_all(&tmp);
        cache.seed(&result?, tree, ARCHIVES)
    }

    /// The package files mmdebstrap would download, as the build root's apt
    /// works them out from the tree's package lists.
    fn resolve(&self, tree: &Tree, arch: &str, mirror: &str, tmp: &Path) -> Result<Vec<Download>, StageError> {
        for d in ["etc/apt.conf.d", "etc/preferences.d", "log"] {
            std::fs::create_dir_all(tmp.join(d)).at(tmp)?;
        }
        for d in [
            "var/lib/apt/lists/partial",
            "var/cache/apt/archives/partial",
            "var/lib/dpkg",
        ] {
            tree.create_dir_all(d)?;
        }
        let status = "var/lib/dpkg/status";
        if !tree.exists(status) {
            tree.write(status, "")?;
        }
        let keyring = "/usr/share/keyrings/debian-archive-keyring.gpg";
        let signed = if Path::new(keyring).exists() {
            format!("[signed-by={keyring}] ")
        } else {
            String::new()
        };
        let sources = format!("deb {signed}{mirror} {} {}\n", self.suite, self.components.join(" "));
        std::fs::write(tmp.join("etc/sources.list"), sources).at(tmp)?;
        let t = tmp.display();
        // The build root's apt reaches the tree by path, as the sandbox
        // resolves it. Only the package cache depends on what it writes
        // (the lists are read back through Tree, and nothing of it stays in
        // the image): a planted `var/lib/apt` link leaves the cache unused.
        let r = tree.path().display();
        let conf = format!(
            "Dir \"/\";\nDir::Etc \"{t}/etc\";\nDir::Etc::TrustedParts \"/etc/apt/trusted.gpg.d\";\n\
             Dir::State \"{r}/var/lib/apt\";\nDir::State::Status \"{r}/var/lib/dpkg/status\";\n\
             Dir::Cache \"{r}/var/cache/apt\";\nDir::Log \"{t}/log\";\n\
             APT::Architecture \"{arch}\";\nAPT::Architectures \"{arch}\";\n\
             Acquire::Languages \"none\";\nAPT::Sandbox::User \"root\";\nDebug::NoLocking \"true\";\n"
        );
        let conf_path = tmp.join("apt.conf");
        std::fs::write(&conf_path, conf).at(&conf_path)?;
        let apt = |args: &[&str]| {
            let mut cmd = Command::new("/usr/bin/apt-get");
            clean_env(&mut cmd).env("APT_CONFIG", &conf_path).args(args);
            cmd
        };
        run(&mut apt(&["-q", "update"]), "apt-get update (package cache)")?;

        // The variant's package set, as mmdebstrap picks it.
        let mut names: BTreeSet<String> = self.variant.extra().iter().map(|s| s.to_string()).collect();
        for_each_package(tree, |p| {
            if p.essential || self.variant.priorities().contains(&p.priority.as_str()) {
                names.insert(p.name.clone());
            }
        })?;
        names.extend(self.packages.iter().map(|p| p.0.clone()));
        let mut args = vec![
            "-qq",
            "-y",
            "--print-uris",
            "-o",
            "APT::Install-Recommends=false",
            "install",
            "--",
        ];
        args.extend(names.iter().map(String::as_str));
        let out = output(&mut apt(&args), "apt-get --print-uris (package cache)")?;
        let mut wanted = parse_print_uris(&out);
        fill_sha256(tree, &mut wanted)?;
        Ok(wanted)
    }
}

/// bookworm's minbase is not merged-/usr by itself; later releases are.
pub(crate) fn needs_merged_usr_hook(suite: &str) -> bool {
    matches!(suite, "bookworm" | "bullseye")
}

/// Removes what mmdebstrap leaves that belongs to the build, not the image:
/// its dpkg configuration (`force-unsafe-io`), the build root's `hostname`
/// and `resolv.conf` it copied in, and the regular files that maintainer
/// scripts created in the unmounted `/dev` by writing to `/dev/null` (the
/// booted system mounts a devtmpfs there; later stages mount a real one).
fn tidy(tree: &Tree, before: &crate::leftovers::Before) -> StageResult {
    if tree.is_dir("dev") {
        for entry in tree.read_dir("dev")? {
            if entry.kind == crate::tree::Kind::File {
                let path = Path::new("dev").join(&entry.name);
                println!(
                    "removing /{}: a regular file a maintainer script left in /dev",
                    path.display()
                );
                tree.remove_file(&path)?;
            }
        }
    }
    let dpkg_cfg = "etc/dpkg/dpkg.cfg.d/99mmdebstrap";
    if tree
        .read_to_string(dpkg_cfg)
        .is_ok_and(|s| s.trim() == "force-unsafe-io")
    {
        tree.remove_file(dpkg_cfg)?;
    }
    for f in ["etc/hostname", "etc/resolv.conf"] {
        let host = Path::new("/").join(f);
        if let (Ok(a), Ok(b)) = (tree.read(f), std::fs::read(&host)) {
            if a == b && tree.symlink_metadata(f).is_ok_and(|m| m.is_file()) {
                tree.remove_file(f)?;
            }
        }
    }
    crate::leftovers::remove(tree, before)
}

/// One stanza of a Packages index, the fields the stages need.
#[derive(Debug, Default, Clone)]
pub(crate) struct Package {
    pub name: String,
    pub version: String,
    pub arch: String,
    pub priority: String,
    pub essential: bool,
    pub size: u64,
    pub sha256: String,
}

impl Package {
    fn archive_file(&self) -> String {
        archive_file(&self.name, &self.version, &self.arch)
    }
}

/// The file name apt gives a package in `var/cache/apt/archives`.
pub(crate) fn archive_file(name: &str, version: &str, arch: &str) -> String {
    format!("{name}_{}_{arch}.deb", version.replace(':', "%3a"))
}

/// Calls `f` for each stanza of each (uncompressed) `*_Packages` list in the tree.
fn for_each_package(tree: &Tree, mut f: impl FnMut(&Package)) -> StageResult {
    let lists = Path::new("var/lib/apt/lists");
    let mut found = false;
    for e in tree.read_dir(lists)? {
        if !e.name.to_string_lossy().ends_with("_Packages") {
            continue;
        }
        found = true;
        let path = lists.join(&e.name);
        let file = tree.open_file(&path)?;
        parse_packages(std::io::BufReader::new(file), &mut f).map_err(|e| format!("/{}: {e}", path.display()))?;
    }
    if found {
        Ok(())
    } else {
        Err(format!("no package index in /{}", lists.display()).into())
    }
}

pub(crate) fn parse_packages(r: impl BufRead, f: &mut impl FnMut(&Package)) -> std::io::Result<()> {
    let mut p = Package::default();
    for line in r.lines() {
        let line = line?;
        if line.is_empty() {
            if !p.name.is_empty() {
                f(&p);
            }
            p = Package::default();
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        if key.starts_with([' ', '\t']) {
            continue;
        }
        let value = value.trim();
        match key {
            "Package" => p.name = value.into(),
            "Version" => p.version = value.into(),
            "Architecture" => p.arch = value.into(),
            "Priority" => p.priority = value.into(),
            "Essential" => p.essential = value == "yes",
            "Size" => p.size = value.parse().unwrap_or(0),
            "SHA256" => p.sha256 = value.to_ascii_lowercase(),
            _ => {}
        }
    }
    if !p.name.is_empty() {
        f(&p);
    }
    Ok(())
}

/// Archive file name to its download (size, SHA256), from the tree's lists;
/// only the names in `only`, if given.
pub(crate) fn package_index(
    tree: &Tree,
    only: Option<&BTreeSet<String>>,
) -> Result<BTreeMap<String, Download>, StageError> {
    let mut index = BTreeMap::new();
    for_each_package(tree, |p| {
        if p.sha256.len() == 64 {
            let file = p.archive_file();
            if only.is_none_or(|o| o.contains(&file)) {
                let d = Download {
                    file: file.clone(),
                    size: p.size,
                    sha256: p.sha256.clone(),
                };
                index.insert(file, d);
            }
        }
    })?;
    Ok(index)
}

/// Fills in the SHA256 of each download from the Packages index in the tree's
/// lists (`apt-get --print-uris` gives only the MD5 sum), where the size agrees.
pub(crate) fn fill_sha256(tree: &Tree, downloads: &mut [Download]) -> StageResult {
    let names: BTreeSet<String> = downloads.iter().map(|d| d.file.clone()).collect();
    let index = package_index(tree, Some(&names))?;
    for d in downloads.iter_mut() {
        if let Some(i) = index.get(&d.file).filter(|i| i.size == d.size) {
            d.sha256 = i.sha256.clone();
        }
    }
    Ok(())
}

/// The build root's Debian architecture.
pub(crate) fn host_arch() -> Option<String> {
    let out = Command::new("dpkg").arg("--print-architecture").output().ok();
    if let Some(out) = out.filter(|o| o.status.success()) {
        let a = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !a.is_empty() {
            return Some(a);
        }
    }
    let machine = nix::sys::utsname::uname()
        .ok()?
        .machine()
        .to_string_lossy()
        .into_owned();
    debian_arch(&machine).map(str::to_string)
}

fn debian_arch(machine: &str) -> Option<&'static str> {
    Some(match machine {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "i386" | "i486" | "i586" | "i686" => "i386",
        "armv7l" => "armhf",
        "ppc64le" => "ppc64el",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        "mips64" => "mips64el",
        _ => return None,
    })
}

// ---------------------------------------------------------------------------
// The build root's mirror

/// One entry of an apt sources file (either format).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct SourceEntry {
    pub types: Vec<String>,
    pub uris: Vec<String>,
    pub suites: Vec<String>,
    pub components: Vec<String>,
    pub signed_by: Option<String>,
}

/// Parses deb822 `.sources` text (stanzas separated by blank lines; `#`
/// comments; continuation lines; `Enabled: no` entries dropped).
pub(crate) fn parse_deb822(text: &str) -> Vec<SourceEntry> {
    let mut out = Vec::new();
    let mut fields: Vec<(String, String)> = Vec::new();
    let mut flush = |fields: &mut Vec<(String, String)>| {
        if fields.is_empty() {
            return;
        }
        let get = |k: &str| {
            fields
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(k))
                .map(|(_, v)| v.clone())
        };
        let words = |k: &str| {
            get(k)
                .map(|v| v.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default()
        };
        let enabled = get("Enabled").is_none_or(|v| !v.trim().eq_ignore_ascii_case("no"));
        if enabled {
            out.push(SourceEntry {
                types: words("Types"),
                uris: words("URIs"),
                suites: words("Suites"),
                components: words("Components"),
                signed_by: get("Signed-By").map(|v| v.trim().to_string()),
            });
        }
        fields.clear();
    };
    for line in text.lines() {
        if line.trim_start().starts_with('#') {
            continue;
        }
        if line.trim().is_empty() {
            flush(&mut fields);
        } else if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = fields.last_mut() {
                v.push('\n');
                v.push_str(line.trim());
            }
        } else if let Some((k, v)) = line.split_once(':') {
            fields.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    flush(&mut fields);
    out
}

/// Parses one-line `sources.list` text: `deb [opt=value ...] URI SUITE COMPONENT...`.
pub(crate) fn parse_one_line(text: &str) -> Vec<SourceEntry> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let Some((ty, mut rest)) = line.split_once(char::is_whitespace) else {
            continue;
        };
        let mut signed_by = None;
        rest = rest.trim_start();
        if let Some(opts) = rest.strip_prefix('[') {
            let Some((opts, after)) = opts.split_once(']') else {
                continue;
            };
            for opt in opts.split_whitespace() {
                if let Some(v) = opt.strip_prefix("signed-by=") {
                    signed_by = Some(v.to_string());
                }
            }
            rest = after;
        }
        let mut words = rest.split_whitespace().map(str::to_string);
        let (Some(uri), Some(suite)) = (words.next(), words.next()) else {
            continue;
        };
        out.push(SourceEntry {
            types: vec![ty.to_string()],
            uris: vec![uri],
            suites: vec![suite],
            components: words.collect(),
            signed_by,
        });
    }
    out
}

fn is_security(suite: &str, uri: &str) -> bool {
    suite.ends_with("-security") || suite.contains("/updates") || uri.contains("security")
}

/// The mirror to bootstrap `suite` from: the first `deb` entry whose suites
/// include `suite`; else one that includes its base name (`bookworm` for
/// `bookworm-backports`); else the first that is signed by the Debian
/// archive keyring or looks like a Debian archive — never a security one.
pub(crate) fn pick_mirror(entries: &[SourceEntry], suite: &str) -> Option<String> {
    let base = suite.split('-').next().unwrap_or(suite);
    let debs: Vec<&SourceEntry> = entries
        .iter()
        .filter(|e| e.types.iter().any(|t| t == "deb") && !e.uris.is_empty())
        .collect();
    let uri = |e: &SourceEntry| e.uris[0].trim_end_matches('/').to_string();
    let main_suites = |e: &SourceEntry| {
        e.suites
            .iter()
            .filter(|s| !is_security(s, &e.uris[0]))
            .cloned()
            .collect::<Vec<_>>()
    };
    if let Some(e) = debs.iter().find(|e| main_suites(e).iter().any(|s| s == suite)) {
        return Some(uri(e));
    }
    if let Some(e) = debs.iter().find(|e| main_suites(e).iter().any(|s| s == base)) {
        return Some(uri(e));
    }
    let debian_signed = |e: &SourceEntry| {
        e.signed_by
            .as_deref()
            .is_some_and(|k| k.contains("debian-archive-keyring"))
    };
    let debian_uri = |e: &SourceEntry| e.uris[0].trim_end_matches('/').ends_with("/debian");
    debs.iter()
        .filter(|e| !main_suites(e).is_empty())
        .find(|e| debian_signed(e) || debian_uri(e))
        .map(|e| uri(e))
}

/// The mirror for `suite` from the apt sources under `root` (`/` in the
/// sandbox: the build root's), in apt's order: `sources.list`, then
/// `sources.list.d/` sorted by name.
pub(crate) fn host_mirror(root: &Path, suite: &str) -> Option<String> {
    let etc = root.join("etc/apt");
    let mut entries = Vec::new();
    if let Ok(text) = std::fs::read_to_string(etc.join("sources.list")) {
        entries.extend(parse_one_line(&text));
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(etc.join("sources.list.d"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        match f.extension().and_then(|e| e.to_str()) {
            Some("list") => entries.extend(parse_one_line(&text)),
            Some("sources") => entries.extend(parse_deb822(&text)),
            _ => {}
        }
    }
    pick_mirror(&entries, suite)
}

pub static STAGE: Builtin = Builtin::new::<Debootstrap>(
    "org.osbuild.debootstrap",
    Kind::Stage,
    "Creates a base Debian tree with mmdebstrap, sharing downloads across builds",
)
.with_network()
.with_cache("deb")
.with_lock();

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const DEB822: &str = "\
Types: deb
# http://old.example/debian
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
";

    #[test]
    fn deb822_sources() {
        let e = parse_deb822(DEB822);
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].uris, ["http://mirror.example/debian"]);
        assert_eq!(e[0].suites, ["bookworm", "bookworm-updates"]);
        assert_eq!(e[1].suites, ["bookworm-security"]);
        let disabled = "Types: deb\nURIs: http://off.example/debian\nSuites: bookworm\nEnabled: no\n";
        assert!(parse_deb822(disabled).is_empty());
        let inline_key =
            "Types: deb\nURIs: http://x.example/debian\nSuites: trixie\nSigned-By:\n -----BEGIN PGP\n .\n x\n";
        assert!(parse_deb822(inline_key)[0]
            .signed_by
            .as_deref()
            .unwrap()
            .contains("BEGIN PGP"));
    }

    #[test]
    fn one_line_sources() {
        let text = "# comment\n\
                    deb-src http://src.example/debian bookworm main\n\
                    deb [ arch=amd64 signed-by=/k.gpg ] http://mirror.example/debian/ bookworm main contrib # x\n\
                    deb http://mirror.example/debian-security bookworm-security main\n";
        let e = parse_one_line(text);
        assert_eq!(e.len(), 3);
        assert_eq!(e[1].uris, ["http://mirror.example/debian/"]);
        assert_eq!(e[1].components, ["main", "contrib"]);
        assert_eq!(e[1].signed_by.as_deref(), Some("/k.gpg"));
        assert_eq!(
            pick_mirror(&e, "bookworm").as_deref(),
            Some("http://mirror.example/debian")
        );
    }

    #[test]
    fn picking_the_mirror() {
        let e = parse_deb822(DEB822);
        assert_eq!(
            pick_mirror(&e, "bookworm").as_deref(),
            Some("http://mirror.example/debian")
        );
        assert_eq!(
            pick_mirror(&e, "bookworm-backports").as_deref(),
            Some("http://mirror.example/debian")
        );
        // Another release: the Debian-signed, non-security entry.
        assert_eq!(
            pick_mirror(&e, "trixie").as_deref(),
            Some("http://mirror.example/debian")
        );
        // Security first in the file: still not picked.
        let mut rev = e.clone();
        rev.reverse();
        assert_eq!(
            pick_mirror(&rev, "trixie").as_deref(),
            Some("http://mirror.example/debian")
        );
        let other = parse_one_line("deb http://other.example/ubuntu jammy main\n");
        assert_eq!(pick_mirror(&other, "bookworm"), None);
        let plain = parse_one_line(
            "deb http://other.example/repo stable main\ndeb http://plain.example/debian bullseye main\n",
        );
        assert_eq!(
            pick_mirror(&plain, "trixie").as_deref(),
            Some("http://plain.example/debian")
        );
    }

    #[test]
    fn packages_index() {
        let text = "Package: libfoo1\nVersion: 1:2.0-1\nArchitecture: amd64\nPriority: required\nSize: 10\n\
                    SHA256: ABCD\nDescription: x\n more: y\n\nPackage: dash\nEssential: yes\nVersion: 0.5\nArchitecture: amd64\n";
        let mut got = Vec::new();
        parse_packages(text.as_bytes(), &mut |p: &Package| got.push(p.clone())).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].archive_file(), "libfoo1_1%3a2.0-1_amd64.deb");
        assert_eq!(got[0].sha256, "abcd");
        assert_eq!(got[0].priority, "required");
        assert!(got[1].essential);
    }

    #[test]
    fn tidy_removes_regular_files_from_dev() {
        let dir = crate::testutil::TempTree::new("tidy-dev");
        std::fs::create_dir_all(dir.join("dev/pts")).unwrap();
        dir.write("dev/null", "");
        dir.write("dev/zero", "x");
        let tree = Tree::open(&dir.path).unwrap();
        tidy(&tree, &crate::leftovers::Before::look(&tree)).unwrap();
        let left: Vec<_> = std::fs::read_dir(dir.join("dev"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["pts"]);
    }

    #[test]
    fn options_are_checked() {
        assert!(STAGE.check(&json!({"suite": "bookworm"})).is_empty());
        assert!(!STAGE.check(&json!({"suite": "bookworm", "variant": "fat"})).is_empty());
        assert!(
            !STAGE.check(&json!({"variant": "minbase"})).is_empty(),
            "suite is required"
        );
        assert!(!STAGE
            .check(&json!({"suite": "bookworm", "packages": ["ok1", "--bad"]}))
            .is_empty());
        let check = |v| -> Vec<String> { STAGE.check(&v).iter().map(|e| crate::api::path_text(&e.path)).collect() };
        assert_eq!(check(json!({"suite": "book worm"})), ["suite"]);
        assert_eq!(check(json!({"suite": "bookworm", "components": []})), ["components"]);
        assert_eq!(check(json!({"suite": "bookworm", "arch": "AMD64"})), ["arch"]);
        assert_eq!(check(json!({"suite": "bookworm", "mirror": "--help"})), ["mirror"]);
        assert!(check(json!({"suite": "bookworm", "mirror": "http://mirror.example/debian"})).is_empty());
        assert_eq!(
            check(json!({"suite": "a/b", "components": ["main", "non free"], "arch": "", "mirror": "x"})),
            ["suite", "components[1]", "arch", "mirror"]
        );
        assert_eq!(debian_arch("x86_64"), Some("amd64"));
    }

    /// Mounts what the engine mounts for a `with_tree_mounts` stage (`/proc`,
    /// a minimal `/dev`, `/tmp`) in a mount namespace private to this test
    /// thread, runs `f`, and unmounts again.
    pub(crate) fn with_tree_mounts<T>(tree: &Path, f: impl FnOnce() -> T) -> T {
        use nix::mount::{mount, umount2, MntFlags, MsFlags};
        use nix::sys::stat::{makedev, mknod, Mode, SFlag};
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).expect("unshare(CLONE_NEWNS)");
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .unwrap();
        let (proc_, dev, tmp) = (tree.join("proc"), tree.join("dev"), tree.join("tmp"));
        for d in [&proc_, &dev, &tmp] {
            std::fs::create_dir_all(d).unwrap();
        }
        let nosuid = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        mount(Some("proc"), &proc_, Some("proc"), nosuid, None::<&str>).unwrap();
        mount(
            Some("tmpfs"),
            &dev,
            Some("tmpfs"),
            MsFlags::MS_NOSUID,
            Some("mode=0755"),
        )
        .unwrap();
        for (name, minor) in [("null", 3), ("zero", 5), ("full", 7), ("random", 8), ("urandom", 9)] {
            mknod(
                &dev.join(name),
                SFlag::S_IFCHR,
                Mode::from_bits_truncate(0o666),
                makedev(1, minor),
            )
            .unwrap();
            std::fs::set_permissions(dev.join(name), std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
        }
        std::os::unix::fs::symlink("/proc/self/fd", dev.join("fd")).unwrap();
        mount(
            Some("tmpfs"),
            &tmp,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some("mode=1777"),
        )
        .unwrap();
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        for d in [&tmp, &dev, &proc_] {
            umount2(d, MntFlags::MNT_DETACH).unwrap();
        }
        out.unwrap_or_else(|e| std::panic::resume_unwind(e))
    }

    /// The slow tests need root, mmdebstrap and a mirror (scripts/test
    /// installs what it can): a missing one fails, it does not skip.
    fn require_bootstrap() {
        assert!(nix::unistd::geteuid().is_root(), "the bootstrap test needs root");
        assert!(
            Path::new("/usr/bin/mmdebstrap").exists(),
            "the bootstrap test needs mmdebstrap"
        );
        assert!(
            host_mirror(Path::new("/"), "bookworm").is_some(),
            "no Debian mirror in the host's /etc/apt"
        );
    }

    fn dpkg_installed(tree: &Path, package: &str) -> bool {
        let status = std::fs::read_to_string(tree.join("var/lib/dpkg/status")).unwrap();
        status.split("\n\n").any(|s| {
            s.lines().any(|l| l == format!("Package: {package}")) && s.contains("Status: install ok installed")
        })
    }

    fn no_debs(tree: &Path) {
        let debs = std::fs::read_dir(tree.join("var/cache/apt/archives"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".deb"))
            .count();
        assert_eq!(debs, 0, "package files left in the tree");
        let lists = std::fs::read_dir(tree.join("var/lib/apt/lists"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_type().unwrap().is_file() && e.file_name() != "lock")
            .count();
        assert_eq!(lists, 0, "package lists left in the tree");
    }

    /// Bootstraps bookworm minbase twice (cold and warm cache) and installs
    /// packages into each tree with the apt stage (cold and warm).
    #[test]
    fn bootstrap_and_install_share_the_cache() {
        require_bootstrap();
        let base = std::env::temp_dir().join(format!("osbuild-debootstrap-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let cache = base.join("cache");
        let ctx = |name: &str| Context {
            tree: base.join(name),
            output_dir: None,
            cache: Some(cache.clone()),
            sources: None,
            assembly: Default::default(),
        };
        let timed = |what: &str, f: &mut dyn FnMut()| {
            let t = std::time::Instant::now();
            f();
            let hits = crate::debcache::LAST_SEED.with(|c| c.get()).0;
            let downloaded = crate::debcache::LAST_STORE.with(|c| c.get());
            eprintln!(
                "TIMING {what}: {:.1} s, {hits} from the cache, {downloaded} downloaded",
                t.elapsed().as_secs_f64()
            );
            (hits, downloaded)
        };
        let boot = json!({"suite": "bookworm"});
        let install = json!({"packages": ["hello", "less"]});
        let result = std::panic::catch_unwind(|| {
            let a = ctx("a");
            let (_, cold) = timed("debootstrap cold", &mut || STAGE.run(&a, &boot).unwrap());
            assert!(cold > 50, "a cold bootstrap downloads");
            assert!(dpkg_installed(&a.tree, "apt"));
            assert!(std::fs::read_link(a.tree.join("bin")).is_ok(), "merged /usr");
            assert!(!a.tree.join("etc/dpkg/dpkg.cfg.d/99mmdebstrap").exists());
            // Device nodes where mmdebstrap may make them (not in the
            // sandbox, which has no CAP_MKNOD), but no regular files.
            let stray: Vec<_> = std::fs::read_dir(a.tree.join("dev"))
                .unwrap()
                .map(|e| e.unwrap())
                .filter(|e| e.file_type().unwrap().is_file())
                .map(|e| e.file_name())
                .collect();
            assert!(stray.is_empty(), "no stray files in /dev: {stray:?}");
            no_debs(&a.tree);

            let (_, apt_cold) = timed("apt cold", &mut || {
                with_tree_mounts(&a.tree, || crate::apt::STAGE.run(&a, &install).unwrap())
            });
            assert!(apt_cold >= 2);
            assert!(dpkg_installed(&a.tree, "hello") && dpkg_installed(&a.tree, "less"));
            assert!(a.tree.join("usr/bin/hello").exists());
            assert!(!a.tree.join("usr/sbin/policy-rc.d").exists());
            assert!(!a.tree.join("usr/sbin/update-initramfs").exists());
            let diversions = std::fs::read_to_string(a.tree.join("var/lib/dpkg/diversions")).unwrap_or_default();
            assert!(!diversions.contains("update-initramfs"), "diversion removed");
            no_debs(&a.tree);

            let b = ctx("b");
            let (hits, misses) = timed("debootstrap warm", &mut || STAGE.run(&b, &boot).unwrap());
            assert_eq!(misses, 0, "a warm bootstrap downloads no package");
            assert!(hits * 10 >= cold * 9, "{hits} of {cold} from the cache");
            no_debs(&b.tree);
            let (hits, misses) = timed("apt warm", &mut || {
                with_tree_mounts(&b.tree, || crate::apt::STAGE.run(&b, &install).unwrap())
            });
            assert_eq!((hits, misses), (apt_cold, 0));
            assert!(b.tree.join("usr/bin/hello").exists());
        });
        let _ = std::fs::remove_dir_all(&base);
        if let Err(e) = result {
            std::panic::resume_unwind(e);
        }
    }
}
