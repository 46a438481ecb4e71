//! `org.osbuild.grub2`: GRUB's configuration in Debian's layout.
//!
//! It writes what the installed system boots with and keeps: a
//! `/boot/grub/grub.cfg` with a menu entry for every kernel in `/boot`
//! (`vmlinuz-VERSION`, with `initrd.img-VERSION` when there is one, newest
//! first), `/boot/grub/grubenv`, and `/etc/default/grub` with the same
//! settings so a later `update-grub` in the image keeps them. Not Fedora's
//! Boot Loader Specification layout.

use std::path::Path;

use crate::api::{Builtin, Context, Kind, Options, OptionsError, StageError, StageResult, WithPath};
use crate::tree::Tree;

/// Configures GRUB 2 the Debian way and sets the kernel command line.
///
/// The root file system is `root_fs_uuid` or `rootfs`; a separate `/boot` is
/// `boot_fs_uuid` or `bootfs`. With `uefi`, the EFI system partition gets
/// `EFI/<vendor>/grub.cfg`, which hands over to `/boot/grub/grub.cfg`.
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Grub2 {
    /// UUID of the root file system.
    #[serde(default)]
    root_fs_uuid: Option<String>,
    /// The root file system, by UUID or label (instead of `root_fs_uuid`).
    #[serde(default)]
    rootfs: Option<FsSpec>,
    /// UUID of the `/boot` file system, when `/boot` is a partition of its own.
    #[serde(default)]
    boot_fs_uuid: Option<String>,
    /// The `/boot` file system, by UUID or label (instead of `boot_fs_uuid`).
    #[serde(default)]
    bootfs: Option<FsSpec>,
    /// Extra kernel command-line options, after `root=... ro`.
    #[serde(default)]
    kernel_opts: String,
    /// Seconds the menu waits (default 0; `config.timeout` is the same).
    #[serde(default)]
    timeout: Option<u32>,
    /// Use the serial console for GRUB's menu and the kernel: adds
    /// `serial --unit=N --speed=S`, `terminal_input/output serial console`,
    /// and `console=tty0 console=ttySN,S` to the command line.
    #[serde(default)]
    serial_console: Option<SerialConsole>,
    /// BIOS support: copies GRUB's modules for this platform (`true` means
    /// `i386-pc`) into `/boot/grub/<platform>`, and its font, as grub-install
    /// would; from the tree's `/usr/lib/grub`, else the build root's.
    #[serde(default)]
    legacy: Option<Legacy>,
    /// UEFI support.
    #[serde(default)]
    uefi: Option<Uefi>,
    /// The `saved_entry` variable in grubenv.
    #[serde(default)]
    saved_entry: Option<String>,
    /// Whether to write `/etc/default/grub`.
    #[serde(default = "yes")]
    write_defaults: bool,
    /// Accepted for compatibility with osbuild: Debian keeps the command line in
    /// grub.cfg and `/etc/default/grub`, not in grubenv.
    #[serde(default = "yes")]
    write_cmdline: bool,
    /// osbuild's ignition support (Fedora CoreOS): not supported here.
    #[serde(default)]
    ignition: bool,
    /// osbuild's greenboot support (boot counting): not supported here.
    #[serde(default)]
    greenboot: bool,
    /// GRUB settings, as in osbuild.
    #[serde(default)]
    config: Config,
}

fn yes() -> bool {
    true
}

/// A file system, by UUID or by label.
#[derive(serde::Deserialize, schemars::JsonSchema, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct FsSpec {
    #[serde(default)]
    uuid: Option<String>,
    #[serde(default)]
    label: Option<String>,
}

/// `true` (i386-pc), `false`, or a GRUB platform name such as `i386-pc`.
#[derive(serde::Deserialize, schemars::JsonSchema, Clone, Debug)]
#[serde(untagged)]
pub enum Legacy {
    Enabled(bool),
    Platform(String),
}

#[derive(serde::Deserialize, schemars::JsonSchema, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct Uefi {
    /// The directory under `EFI/` on the EFI system partition, such as `debian`.
    vendor: String,
    /// Copy the signed shim and GRUB from the tree (packages shim-signed and
    /// grub-efi-amd64-signed) to `EFI/<vendor>/` and the removable path `EFI/BOOT/`.
    #[serde(default)]
    install: bool,
    /// Accepted for compatibility: the main configuration is always
    /// `/boot/grub/grub.cfg`, and the ESP's only points to it.
    #[serde(default)]
    unified: bool,
}

#[derive(serde::Deserialize, schemars::JsonSchema, Clone, Copy, Debug)]
#[serde(deny_unknown_fields)]
pub struct SerialConsole {
    /// Serial port number (0 is ttyS0, COM1).
    #[serde(default)]
    unit: u32,
    /// Speed in bits per second.
    #[serde(default = "default_speed")]
    speed: u32,
}

fn default_speed() -> u32 {
    115_200
}

/// GRUB settings (osbuild's `config`).
#[derive(serde::Deserialize, schemars::JsonSchema, Clone, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The default entry: a number, a menu entry id, or `saved`.
    #[serde(default)]
    default: Option<String>,
    /// Input and output terminals, such as `["serial", "console"]`.
    #[serde(default)]
    terminal: Option<Vec<String>>,
    /// Input terminals.
    #[serde(default)]
    terminal_input: Option<Vec<String>>,
    /// Output terminals.
    #[serde(default)]
    terminal_output: Option<Vec<String>>,
    /// Seconds the menu waits.
    #[serde(default)]
    timeout: Option<u32>,
    /// `menu`, `countdown` or `hidden`.
    #[serde(default)]
    timeout_style: Option<String>,
    /// The serial command, such as `serial --unit=0 --speed=115200`.
    #[serde(default)]
    serial: Option<String>,
    /// The distribution name in menu entries (default: NAME from os-release).
    #[serde(default)]
    distributor: Option<String>,
}

/// How GRUB finds a file system, and how the kernel is told.
struct Fs {
    search: String,
    kernel: String,
}

impl FsSpec {
    /// How GRUB and the kernel find it (the spec is valid).
    fn resolve(&self) -> Fs {
        match (&self.uuid, &self.label) {
            (Some(u), _) => Fs {
                search: format!("--fs-uuid {u}"),
                kernel: format!("UUID={u}"),
            },
            (None, l) => {
                let l = l.as_deref().unwrap_or_default();
                Fs {
                    search: format!("--label {l}"),
                    kernel: format!("LABEL={l}"),
                }
            }
        }
    }

    fn problems(&self, at: &str, problems: &mut Vec<OptionsError>) {
        match (&self.uuid, &self.label) {
            (Some(u), None) => {
                if let Err(e) = crate::ids::check_fs_id(u) {
                    problems.push(OptionsError::invalid(crate::at![at, "uuid"], e));
                }
            }
            (None, Some(l)) => {
                if l.is_empty() || l.contains(|c: char| c.is_whitespace() || c == '\'' || c == '"') {
                    problems.push(OptionsError::invalid(
                        crate::at![at, "label"],
                        format!("label {l:?} must be one word without quotes"),
                    ));
                }
            }
            _ => problems.push(OptionsError::invalid(
                crate::at![at],
                "needs exactly one of uuid and label",
            )),
        }
    }
}

/// The file system `{what}_fs_uuid` or `{what}fs` names, if either (not both:
/// the options are valid).
fn pick(uuid: &Option<String>, spec: &Option<FsSpec>) -> Option<Fs> {
    match (uuid, spec) {
        (Some(u), _) => Some(
            FsSpec {
                uuid: Some(u.clone()),
                label: None,
            }
            .resolve(),
        ),
        (None, Some(s)) => Some(s.resolve()),
        (None, None) => None,
    }
}

/// The problems of `{what}_fs_uuid` and `{what}fs`: not both, and each valid.
fn pick_problems(uuid: &Option<String>, spec: &Option<FsSpec>, what: &str, problems: &mut Vec<OptionsError>) {
    let (uuid_key, spec_key) = (format!("{what}_fs_uuid"), format!("{what}fs"));
    if uuid.is_some() && spec.is_some() {
        problems.push(OptionsError::invalid(
            crate::at![&spec_key],
            format!("give {uuid_key} or {spec_key}, not both"),
        ));
    }
    if let Some(Err(e)) = uuid.as_deref().map(crate::ids::check_fs_id) {
        problems.push(OptionsError::invalid(crate::at![uuid_key], e));
    }
    if let Some(s) = spec {
        s.problems(&spec_key, problems);
    }
}

/// The longest `saved_entry` that fits in the 1024 bytes of grubenv.
const MAX_SAVED_ENTRY: usize = 1024 - GRUBENV_HEADER.len() - "saved_entry=\n".len();
const GRUBENV_HEADER: &str = "# GRUB Environment Block\n";

/// A name that becomes a directory (`EFI/<vendor>`, `/boot/grub/<platform>`).
fn plain_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(['/', '.'])
}

impl Grub2 {
    fn problems(&self) -> Vec<OptionsError> {
        let mut problems = Vec::new();
        for (key, set) in [("ignition", self.ignition), ("greenboot", self.greenboot)] {
            if set {
                problems.push(OptionsError::invalid(
                    crate::at![key],
                    format!("{key} is not supported for the Debian layout"),
                ));
            }
        }
        if self.root_fs_uuid.is_none() && self.rootfs.is_none() {
            problems.push(OptionsError::missing(
                crate::at!["root_fs_uuid"],
                "give root_fs_uuid or rootfs",
            ));
        }
        pick_problems(&self.root_fs_uuid, &self.rootfs, "root", &mut problems);
        pick_problems(&self.boot_fs_uuid, &self.bootfs, "boot", &mut problems);
        for (path, v) in [
            (crate::at!["kernel_opts"], Some(self.kernel_opts.trim())),
            (crate::at!["config", "serial"], self.config.serial.as_deref()),
        ] {
            if v.is_some_and(|v| v.contains(['\n', '\''])) {
                problems.push(OptionsError::invalid(path, "no newlines or single quotes, please"));
            }
        }
        if let Some(entry) = &self.saved_entry {
            if entry.contains('\n') {
                problems.push(OptionsError::invalid(
                    crate::at!["saved_entry"],
                    "saved_entry must be one line",
                ));
            } else if entry.len() > MAX_SAVED_ENTRY {
                problems.push(OptionsError::invalid(
                    crate::at!["saved_entry"],
                    format!("saved_entry is too long for grubenv (at most {MAX_SAVED_ENTRY} bytes)"),
                ));
            }
        }
        if let Some(Legacy::Platform(p)) = &self.legacy {
            if !plain_name(p) {
                problems.push(OptionsError::invalid(
                    crate::at!["legacy"],
                    format!("{p:?} is not a GRUB platform"),
                ));
            }
        }
        if let Some(uefi) = &self.uefi {
            if !plain_name(&uefi.vendor) {
                problems.push(OptionsError::invalid(
                    crate::at!["uefi", "vendor"],
                    format!("uefi vendor {:?} must be a plain directory name", uefi.vendor),
                ));
            }
        }
        problems
    }
}

/// Compares kernel versions the way people read them: digit runs as numbers.
fn version_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn parts(s: &str) -> Vec<(bool, String)> {
        let mut out: Vec<(bool, String)> = Vec::new();
        for c in s.chars() {
            let d = c.is_ascii_digit();
            match out.last_mut() {
                Some((kind, run)) if *kind == d => run.push(c),
                _ => out.push((d, c.to_string())),
            }
        }
        out
    }
    let (pa, pb) = (parts(a), parts(b));
    for (x, y) in pa.iter().zip(&pb) {
        let ord = if x.0 && y.0 {
            let (nx, ny) = (x.1.trim_start_matches('0'), y.1.trim_start_matches('0'));
            nx.len().cmp(&ny.len()).then_with(|| nx.cmp(ny))
        } else {
            x.1.cmp(&y.1)
        };
        if ord.is_ne() {
            return ord;
        }
    }
    pa.len().cmp(&pb.len())
}

/// The kernels in `boot`: (version, has an initrd), newest first.
fn kernels(tree: &Tree) -> Result<Vec<(String, bool)>, StageError> {
    let mut found = Vec::new();
    let entries = match tree.read_dir("boot") {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(found),
        Err(e) => return Err(e.into()),
    };
    for e in entries {
        let name = e.name.to_string_lossy().into_owned();
        if let Some(version) = name.strip_prefix("vmlinuz-") {
            if version.is_empty() || version.contains(['\'', '"', ' ', '\\']) {
                continue;
            }
            let initrd = tree.is_file(format!("boot/initrd.img-{version}"));
            found.push((version.to_string(), initrd));
        }
    }
    found.sort_by(|a, b| version_cmp(&b.0, &a.0));
    Ok(found)
}

/// NAME from the tree's os-release, as Debian's menu entries show it.
fn distributor(tree: &Tree) -> String {
    for rel in ["etc/os-release", "usr/lib/os-release"] {
        if let Ok(text) = tree.read_to_string(rel) {
            for line in text.lines() {
                if let Some(v) = line.strip_prefix("NAME=") {
                    let v = v.trim_matches('"').trim_matches('\'');
                    if !v.is_empty() {
                        return v.replace('\'', "");
                    }
                }
            }
        }
    }
    "Debian GNU/Linux".into()
}

/// Double-quotes a value for `/etc/default/grub` (a shell file).
fn shell_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        if matches!(c, '"' | '\\' | '$' | '`') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

impl Options for Grub2 {
    fn validate(&self) -> Vec<OptionsError> {
        self.problems()
    }

    fn run(self, ctx: &Context) -> StageResult {
        let root = pick(&self.root_fs_uuid, &self.rootfs).expect("validated: a root file system");
        let boot = pick(&self.boot_fs_uuid, &self.bootfs);
        let grub_fs = boot.as_ref().unwrap_or(&root);
        // Paths as GRUB sees them on the file system that holds /boot.
        let kdir = if boot.is_some() { "" } else { "/boot" };
        let cfg = &self.config;
        let timeout = self.timeout.or(cfg.timeout).unwrap_or(0);

        let mut serial = cfg.serial.clone();
        let mut term_in = cfg.terminal_input.clone().or_else(|| cfg.terminal.clone());
        let mut term_out = cfg.terminal_output.clone().or_else(|| cfg.terminal.clone());
        let mut cmdline = self.kernel_opts.trim().to_string();
        if let Some(sc) = self.serial_console {
            serial.get_or_insert(format!("serial --unit={} --speed={}", sc.unit, sc.speed));
            let both = || vec!["serial".to_string(), "console".to_string()];
            term_in.get_or_insert_with(both);
            term_out.get_or_insert_with(both);
            if !cmdline.split_whitespace().any(|w| w.starts_with("console=")) {
                let console = format!("console=tty0 console=ttyS{},{}", sc.unit, sc.speed);
                cmdline = format!("{cmdline} {console}").trim().to_string();
            }
        }
        let default = cfg.default.clone().unwrap_or_else(|| "0".into());
        let tree = ctx.open_tree()?;
        let distro = cfg.distributor.clone().unwrap_or_else(|| distributor(&tree));
        let kernels = kernels(&tree)?;

        // /boot/grub/grub.cfg
        let mut g = String::new();
        g.push_str("# Written by the org.osbuild.grub2 stage; update-grub regenerates it from /etc/default/grub.\n");
        g.push_str("if [ -s $prefix/grubenv ]; then\n  load_env\nfi\n");
        let default_line = if default == "saved" {
            "   set default=\"${saved_entry}\"".to_string()
        } else {
            format!("   set default=\"{default}\"")
        };
        g.push_str(&format!(
            "if [ \"${{next_entry}}\" ] ; then\n   set default=\"${{next_entry}}\"\n   set next_entry=\n   save_env next_entry\n   set boot_once=true\nelse\n{default_line}\nfi\n"
        ));
        if let Some(s) = &serial {
            g.push_str(&format!("{s}\n"));
        }
        if let Some(t) = &term_in {
            g.push_str(&format!("terminal_input {}\n", t.join(" ")));
        }
        if let Some(t) = &term_out {
            g.push_str(&format!("terminal_output {}\n", t.join(" ")));
        }
        if let Some(style) = &cfg.timeout_style {
            g.push_str(&format!("set timeout_style={style}\n"));
        }
        g.push_str(&format!("set timeout={timeout}\n"));
        g.push_str(&format!("search --no-floppy {} --set=root\n", grub_fs.search));
        let root_id = root.kernel.to_ascii_lowercase().replace(['=', ' '], "-");
        for (version, initrd) in &kernels {
            g.push_str(&format!(
                "menuentry '{distro}, with Linux {version}' --class debian --class gnu-linux --class gnu --class os $menuentry_id_option 'gnulinux-{version}-advanced-{root_id}' {{\n"
            ));
            g.push_str("\tinsmod gzio\n\tinsmod part_gpt\n\tinsmod part_msdos\n\tinsmod ext2\n");
            g.push_str(&format!("\tsearch --no-floppy {} --set=root\n", grub_fs.search));
            g.push_str(&format!("\techo\t'Loading Linux {version} ...'\n"));
            g.push_str(&format!(
                "\tlinux\t{kdir}/vmlinuz-{version} root={} ro {cmdline}\n",
                root.kernel
            ));
            if *initrd {
                g.push_str("\techo\t'Loading initial ramdisk ...'\n");
                g.push_str(&format!("\tinitrd\t{kdir}/initrd.img-{version}\n"));
            }
            g.push_str("}\n");
        }
        if kernels.is_empty() {
            println!("grub2: no /boot/vmlinuz-* in the tree: grub.cfg has no menu entries");
        }
        tree.create_dir_all("boot/grub")?;
        tree.write("boot/grub/grub.cfg", &g)?;

        // /boot/grub/grubenv: exactly 1024 bytes, padded with '#'.
        let mut env = String::from(GRUBENV_HEADER);
        if let Some(s) = &self.saved_entry {
            env.push_str(&format!("saved_entry={s}\n"));
        }
        env.push_str(&"#".repeat(1024 - env.len()));
        tree.write("boot/grub/grubenv", env)?;

        if self.write_defaults {
            let mut d =
                String::from("# Written by the org.osbuild.grub2 stage; see info -f grub -n 'Simple configuration'.\n");
            d.push_str(&format!("GRUB_DEFAULT={}\n", shell_quote(&default)));
            if default == "saved" {
                d.push_str("GRUB_SAVEDEFAULT=false\n");
            }
            d.push_str(&format!("GRUB_TIMEOUT={timeout}\n"));
            if let Some(style) = &cfg.timeout_style {
                d.push_str(&format!("GRUB_TIMEOUT_STYLE={}\n", shell_quote(style)));
            }
            match &cfg.distributor {
                Some(name) => d.push_str(&format!("GRUB_DISTRIBUTOR={}\n", shell_quote(name))),
                None => d.push_str("GRUB_DISTRIBUTOR=`lsb_release -i -s 2> /dev/null || echo Debian`\n"),
            }
            d.push_str("GRUB_CMDLINE_LINUX_DEFAULT=\"\"\n");
            d.push_str(&format!("GRUB_CMDLINE_LINUX={}\n", shell_quote(&cmdline)));
            if let Some(t) = &term_in {
                d.push_str(&format!("GRUB_TERMINAL_INPUT={}\n", shell_quote(&t.join(" "))));
            }
            if let Some(t) = &term_out {
                d.push_str(&format!("GRUB_TERMINAL_OUTPUT={}\n", shell_quote(&t.join(" "))));
            }
            if let Some(s) = &serial {
                d.push_str(&format!("GRUB_SERIAL_COMMAND={}\n", shell_quote(s)));
            }
            tree.create_dir_all("etc/default")?;
            tree.write("etc/default/grub", d)?;
        }

        match &self.legacy {
            None | Some(Legacy::Enabled(false)) => {}
            Some(Legacy::Enabled(true)) => copy_modules(&tree, "i386-pc")?,
            Some(Legacy::Platform(p)) => copy_modules(&tree, p)?,
        }

        if let Some(uefi) = &self.uefi {
            let _ = uefi.unified;
            let dir = format!("boot/efi/EFI/{}", uefi.vendor);
            tree.create_dir_all(&dir)?;
            let (kind, id) = grub_fs.search.split_once(' ').expect("two words");
            let search = if kind == "--fs-uuid" {
                format!("search.fs_uuid {id} root")
            } else {
                format!("search.fs_label {id} root")
            };
            let grub_path = if boot.is_some() { "/grub" } else { "/boot/grub" };
            let redirect = format!("{search}\nset prefix=($root)'{grub_path}'\nconfigfile $prefix/grub.cfg\n");
            tree.write(format!("{dir}/grub.cfg"), redirect)?;
            if uefi.install {
                install_signed(&tree, &uefi.vendor)?;
            }
        }
        let _ = self.write_cmdline;
        println!(
            "grub2: {} menu entries, root={}, timeout {timeout}",
            kernels.len(),
            root.kernel
        );
        Ok(())
    }
}

/// Copies GRUB's modules and lists for `platform` to /boot/grub/<platform>,
/// and its font to /boot/grub/fonts, as grub-install does.
fn copy_modules(tree: &Tree, platform: &str) -> StageResult {
    let dir = format!("usr/lib/grub/{platform}");
    let host = Path::new("/").join(&dir);
    // The tree's own modules when it has them, else the build root's.
    let names = |list: Vec<String>| -> Vec<String> {
        list.into_iter()
            .filter(|n| n.ends_with(".mod") || n.ends_with(".lst"))
            .collect()
    };
    let (from_tree, files) = if tree.is_file(format!("{dir}/moddep.lst")) {
        let entries = tree.read_dir(&dir)?;
        let files = entries
            .into_iter()
            .filter(|e| e.kind != crate::tree::Kind::Dir)
            .map(|e| e.name.to_string_lossy().into_owned());
        (true, names(files.collect()))
    } else if host.join("moddep.lst").is_file() {
        let mut files = Vec::new();
        for e in std::fs::read_dir(&host).at(&host)? {
            files.push(e.at(&host)?.file_name().to_string_lossy().into_owned());
        }
        (false, names(files))
    } else {
        return Err(
            format!("no GRUB modules for {platform} (/usr/lib/grub/{platform}) in the tree or the build root").into(),
        );
    };
    let target = format!("boot/grub/{platform}");
    tree.create_dir_all(&target)?;
    for name in &files {
        let dest = format!("{target}/{name}");
        if from_tree {
            tree.copy(format!("{dir}/{name}"), &dest)?;
        } else {
            tree.copy_in(&host.join(name), &dest, 0o644)?;
        }
    }
    let font = "usr/share/grub/unicode.pf2";
    let host_font = Path::new("/").join(font);
    if tree.is_file(font) || host_font.is_file() {
        tree.create_dir_all("boot/grub/fonts")?;
        let dest = "boot/grub/fonts/unicode.pf2";
        if tree.is_file(font) {
            tree.copy(font, dest)?;
        } else {
            tree.copy_in(&host_font, dest, 0o644)?;
        }
    }
    println!(
        "grub2: copied {} files from {} to /boot/grub/{platform}",
        files.len(),
        if from_tree {
            format!("the tree's /{dir}")
        } else {
            host.display().to_string()
        }
    );
    Ok(())
}

/// Debian's signed shim and GRUB, from the tree, onto the ESP.
fn install_signed(tree: &Tree, vendor: &str) -> StageResult {
    let shim = "usr/lib/shim/shimx64.efi.signed";
    let mm = "usr/lib/shim/mmx64.efi.signed";
    let grub = "usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed";
    if !tree.is_file(grub) {
        return Err("uefi.install needs the signed GRUB in the tree (package grub-efi-amd64-signed)".into());
    }
    let mut copies = vec![(grub, format!("{vendor}/grubx64.efi"))];
    if tree.is_file(shim) {
        copies.push((shim, format!("{vendor}/shimx64.efi")));
        copies.push((shim, "BOOT/BOOTX64.EFI".into()));
        copies.push((grub, "BOOT/grubx64.efi".into()));
        if tree.is_file(mm) {
            copies.push((mm, format!("{vendor}/mmx64.efi")));
            copies.push((mm, "BOOT/mmx64.efi".into()));
        }
    } else {
        copies.push((grub, "BOOT/BOOTX64.EFI".into()));
    }
    for (from, to) in copies {
        let dest = format!("boot/efi/EFI/{to}");
        tree.create_parents(&dest)?;
        tree.copy(from, &dest)?;
    }
    Ok(())
}

pub static STAGE: Builtin = Builtin::new::<Grub2>(
    "org.osbuild.grub2",
    Kind::Stage,
    "Configures GRUB 2 in Debian's layout: /boot/grub/grub.cfg, grubenv and /etc/default/grub",
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempTree;
    use serde_json::json;

    const ROOT: &str = "76a22bf4-f153-4541-b6c7-0332c0dfaeac";

    fn tree() -> TempTree {
        let t = TempTree::new("grub2");
        t.write("boot/vmlinuz-6.1.0-9-amd64", "k");
        t.write("boot/initrd.img-6.1.0-9-amd64", "i");
        t.write("boot/vmlinuz-6.1.0-18-amd64", "k");
        t.write("boot/initrd.img-6.1.0-18-amd64", "i");
        t.write("boot/vmlinuz-5.10.0-1-amd64", "k");
        t.write("etc/os-release", "NAME=\"Debian GNU/Linux\"\nID=debian\n");
        t
    }

    #[test]
    fn debian_layout_with_serial_console() {
        let t = tree();
        let opts = json!({"root_fs_uuid": ROOT, "kernel_opts": "quiet", "timeout": 3, "serial_console": {}});
        STAGE.run(&t.ctx(), &opts).unwrap();
        let cfg = std::fs::read_to_string(t.join("boot/grub/grub.cfg")).unwrap();
        assert!(
            cfg.contains(
                "serial --unit=0 --speed=115200\nterminal_input serial console\nterminal_output serial console\n"
            ),
            "{cfg}"
        );
        assert!(cfg.contains("set timeout=3\n"));
        assert!(cfg.contains(&format!("search --no-floppy --fs-uuid {ROOT} --set=root")));
        let line = format!(
            "\tlinux\t/boot/vmlinuz-6.1.0-18-amd64 root=UUID={ROOT} ro quiet console=tty0 console=ttyS0,115200\n"
        );
        assert!(cfg.contains(&line), "{cfg}");
        assert!(cfg.contains("\tinitrd\t/boot/initrd.img-6.1.0-18-amd64\n"));
        // Newest first; a kernel without an initrd gets no initrd line.
        let order: Vec<usize> = ["6.1.0-18", "6.1.0-9", "5.10.0-1"]
            .iter()
            .map(|v| cfg.find(&format!("with Linux {v}-amd64")).unwrap())
            .collect();
        assert!(order[0] < order[1] && order[1] < order[2], "{cfg}");
        assert!(!cfg.contains("initrd.img-5.10.0-1"));
        assert!(cfg.contains("menuentry 'Debian GNU/Linux, with Linux 6.1.0-18-amd64'"));
        let env = std::fs::read(t.join("boot/grub/grubenv")).unwrap();
        assert_eq!(env.len(), 1024);
        let defaults = std::fs::read_to_string(t.join("etc/default/grub")).unwrap();
        assert!(defaults.contains("GRUB_TIMEOUT=3\n"));
        assert!(
            defaults.contains("GRUB_CMDLINE_LINUX=\"quiet console=tty0 console=ttyS0,115200\"\n"),
            "{defaults}"
        );
        assert!(defaults.contains("GRUB_SERIAL_COMMAND=\"serial --unit=0 --speed=115200\"\n"));
        assert!(defaults.contains("GRUB_TERMINAL_OUTPUT=\"serial console\"\n"));
    }

    #[test]
    fn separate_boot_uefi_and_osbuild_config() {
        let t = tree();
        let boot = "0194fdc2-fa2f-4cc0-81d3-ff12045b73c8";
        let opts = json!({
            "rootfs": {"label": "root"}, "boot_fs_uuid": boot, "uefi": {"vendor": "debian"},
            "saved_entry": "x", "config": {"default": "saved", "timeout": 5, "terminal_output": ["console"]},
            "write_defaults": false
        });
        STAGE.run(&t.ctx(), &opts).unwrap();
        let cfg = std::fs::read_to_string(t.join("boot/grub/grub.cfg")).unwrap();
        assert!(
            cfg.contains("\tlinux\t/vmlinuz-6.1.0-18-amd64 root=LABEL=root ro \n"),
            "{cfg}"
        );
        assert!(cfg.contains(&format!("--fs-uuid {boot} --set=root")));
        assert!(cfg.contains("set default=\"${saved_entry}\"") && cfg.contains("set timeout=5"));
        let esp = std::fs::read_to_string(t.join("boot/efi/EFI/debian/grub.cfg")).unwrap();
        assert_eq!(
            esp,
            format!("search.fs_uuid {boot} root\nset prefix=($root)'/grub'\nconfigfile $prefix/grub.cfg\n")
        );
        let env = std::fs::read_to_string(t.join("boot/grub/grubenv")).unwrap();
        assert!(env.starts_with("# GRUB Environment Block\nsaved_entry=x\n#"));
        assert!(!t.join("etc/default/grub").exists());
    }

    #[test]
    fn options_are_checked() {
        assert!(STAGE
            .check(&json!({"root_fs_uuid": ROOT, "legacy": "i386-pc", "uefi": {"vendor": "debian", "install": false}}))
            .is_empty());
        assert!(STAGE
            .check(&json!({"rootfs": {"label": "root"}, "kernel_opts": "quiet\n", "saved_entry": "x".repeat(MAX_SAVED_ENTRY)}))
            .is_empty());
        assert!(!STAGE.check(&json!({"root_fs_uuid": ROOT, "bogus": 1})).is_empty());
        let paths = |v: serde_json::Value| -> Vec<String> {
            STAGE.check(&v).iter().map(|e| crate::api::path_text(&e.path)).collect()
        };
        assert_eq!(paths(json!({"kernel_opts": "x"})), ["root_fs_uuid"]);
        assert_eq!(STAGE.check(&json!({}))[0].kind, crate::ProblemKind::Missing);
        assert_eq!(paths(json!({"root_fs_uuid": "nope"})), ["root_fs_uuid"]);
        assert_eq!(
            paths(json!({"root_fs_uuid": ROOT, "greenboot": true, "ignition": true})),
            ["ignition", "greenboot"]
        );
        let all = json!({
            "root_fs_uuid": ROOT, "rootfs": {"uuid": ROOT, "label": "x"}, "bootfs": {"label": "a b"},
            "kernel_opts": "it's", "config": {"serial": "serial\n--unit=0"},
            "saved_entry": "x".repeat(MAX_SAVED_ENTRY + 1), "legacy": "../i386-pc",
            "uefi": {"vendor": "EFI/debian"}
        });
        assert_eq!(
            paths(all),
            [
                "rootfs",
                "rootfs",
                "bootfs.label",
                "kernel_opts",
                "config.serial",
                "saved_entry",
                "legacy",
                "uefi.vendor"
            ]
        );
        let t = tree();
        let e = STAGE.run(&t.ctx(), &json!({"root_fs_uuid": "nope"})).unwrap_err();
        assert!(e.0.starts_with("invalid options: at `root_fs_uuid`:"), "{}", e.0);
        assert_eq!(version_cmp("6.1.0-18", "6.1.0-9"), std::cmp::Ordering::Greater);
    }

    #[test]
    fn legacy_copies_modules() {
        assert!(
            Path::new("/usr/lib/grub/i386-pc/moddep.lst").exists(),
            "this test needs grub-pc-bin in the build root"
        );
        let t = tree();
        STAGE
            .run(&t.ctx(), &json!({"root_fs_uuid": ROOT, "legacy": true}))
            .unwrap();
        assert!(t.join("boot/grub/i386-pc/normal.mod").is_file());
        assert!(t.join("boot/grub/i386-pc/command.lst").is_file());
    }
}
