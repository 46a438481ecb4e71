//! The Rhai front-end: examples lower to snapshotted manifests, lowering is
//! deterministic, every kind of diagnostic renders as snapshotted, and a small
//! fleet really builds, its shared prefix once.
//!
//! The examples use OS stages (debootstrap, apt, dnf, grub2, qemu ...). Where
//! the registry does not have one yet, these tests stand in a libdir stub
//! without a schema (it accepts any options), so lowering is tested now and
//! the real option checks apply on their own once the stages are registered.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use miette::{GraphicalReportHandler, GraphicalTheme};
use osbuild::registry::Registry;
use osbuild::script::{self, cli::manifests_json, ScriptDiagnostic};
use serde_json::{json, Value};

use crate::support::Scratch;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The registry plus schema-less stubs for OS stages it does not have yet.
fn render(d: &ScriptDiagnostic) -> String {
    let mut out = String::new();
    GraphicalReportHandler::new_themed(GraphicalTheme::unicode_nocolor())
        .with_width(100)
        .render_report(&mut out, d)
        .unwrap();
    out
}

/// Lowers `text` (named `test.rhai`, in `dir`) and expects a diagnostic.
fn diagnose_in(dir: &Path, text: &str, params: &[(&str, &str)]) -> String {
    let params: Vec<(String, String)> = params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let registry = Arc::new(Registry::load(None).unwrap());
    match script::lower_source_with_limit(
        "test.rhai",
        text.to_string(),
        dir.canonicalize().unwrap(),
        &params,
        registry,
        200_000,
    ) {
        Ok(l) => panic!("expected an error, lowered {} images", l.images.len()),
        Err(d) => render(&d),
    }
}

fn diagnose(text: &str) -> String {
    let s = Scratch::new("script-diag");
    diagnose_in(&s.dir, text, &[])
}

fn lower_text(dir: &Path, text: &str, params: &[(&str, &str)]) -> script::Lowering {
    let params: Vec<(String, String)> = params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    script::lower_source(
        "test.rhai",
        text.to_string(),
        dir.canonicalize().unwrap(),
        &params,
        Arc::new(Registry::load(None).unwrap()),
    )
    .unwrap_or_else(|d| panic!("{}", render(&d)))
}

// ---- examples -------------------------------------------------------------

fn lower_example(name: &str) -> script::Lowering {
    let registry = Arc::new(Registry::load(None).unwrap());
    script::lower_file(&repo().join("examples").join(name), &[], registry)
        .unwrap_or_else(|d| panic!("{name}:\n{}", render(&d)))
}

#[test]
fn example_minimal_lowers_to_one_bootable_image() {
    let l = lower_example("minimal.rhai");
    assert_eq!(l.images.len(), 1);
    insta::assert_snapshot!("example_minimal", manifests_json(&l));
}

#[test]
fn example_fleet_lowers_to_six_images_sharing_a_base() {
    let l = lower_example("fleet.rhai");
    assert_eq!(l.images.len(), 6);
    insta::assert_snapshot!("example_fleet", manifests_json(&l));
    // The shared base (debootstrap, boot packages, locale, time zone, sudo,
    // the ops account and its sudoers file): the same ids everywhere.
    let plans: Vec<_> = l
        .images
        .iter()
        .map(|i| osbuild::plan::plan(&i.manifest, None).unwrap())
        .collect();
    let ids = |n: usize| -> Vec<&str> { plans.iter().map(|p| p.pipelines[0].stages[n].id.as_str()).collect() };
    for n in 0..7 {
        assert!(ids(n).windows(2).all(|w| w[0] == w[1]), "stage {n} differs");
    }
    assert!(ids(7).windows(2).all(|w| w[0] != w[1]), "stage 7 is per image");
    let mut names: Vec<&str> = l.images.iter().map(|i| i.name.as_str()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 6);
}

#[test]
fn example_seed_lowers_to_the_seeds_manifest() {
    // examples/seed.json is the seed's manifest, verbatim; the script must
    // lower to exactly it, and it must pass the real stages' checks.
    let text = std::fs::read_to_string(repo().join("examples/seed.json")).unwrap();
    let seed = osbuild::manifest::parse_manifest(osbuild::diagnostic::Source::new("seed.json", text))
        .unwrap_or_else(|_| panic!("the seed parses"));
    let registry = Arc::new(Registry::load(None).unwrap());
    osbuild::check::check(&seed, &registry).unwrap_or_else(|e| panic!("the seed is valid: {e:?}"));
    let l = script::lower_file(&repo().join("examples/seed.rhai"), &[], registry)
        .unwrap_or_else(|d| panic!("{}", render(&d)));
    assert_eq!(l.images.len(), 1);
    assert_eq!(l.images[0].manifest.canonical_json(), seed.manifest.canonical_json());
}

// ---- the language surface -------------------------------------------------

#[test]
fn assignment_copies_and_copies_share_their_prefix() {
    let s = Scratch::new("script-copy");
    let l = lower_text(
        &s.dir,
        r#"
        let base = pipeline("base");
        base.mkdir("/srv");
        let web = base.named("web");
        web.hostname("web");
        let db = base;
        db.name = "db";
        db.hostname("db");
        emit(web);
        emit(db);
        emit(base);
        "#,
        &[],
    );
    let stages: Vec<usize> = l.images.iter().map(|i| i.manifest.pipeline.stages.len()).collect();
    assert_eq!(stages, [2, 2, 1]);
    let plans: Vec<_> = l
        .images
        .iter()
        .map(|i| osbuild::plan::plan(&i.manifest, None).unwrap())
        .collect();
    assert_eq!(plans[0].pipelines[0].stages[0].id, plans[2].pipelines[0].stages[0].id);
    assert_eq!(plans[1].pipelines[0].stages[0].id, plans[2].pipelines[0].stages[0].id);
}

#[test]
fn params_take_the_type_of_their_default() {
    let s = Scratch::new("script-params");
    let script = r#"
        let n = param("count", 1);
        let flag = param("flag", false);
        let list = param("list", []);
        let envs = param("envs", ["prod"]);
        let pair = param("pair", ["a"]);
        let ratio = param("ratio", 0.5);
        if envs != ["staging"] { throw `envs: ${envs}`; }
        if pair != ["x", "y"] { throw `pair: ${pair}`; }
        if type_of(ratio) != "f64" || ratio != 2.0 { throw `ratio: ${type_of(ratio)}`; }
        let name = param("name", ());
        let release = param("release", "39");
        if type_of(n) != "i64" || n != 3 { throw `count: ${type_of(n)}`; }
        if flag != true { throw "flag"; }
        if list != [1, 2] { throw "list"; }
        if name != "web" { throw "name"; }
        if release != "40" { throw `release: ${type_of(release)}`; }
        let p = pipeline(name);
        p.hostname(`${name}-${n}`);
        emit(p);
    "#;
    let l = lower_text(
        &s.dir,
        script,
        &[
            ("count", "3"),
            ("flag", "true"),
            ("list", "[1,2]"),
            ("envs", "staging"),
            ("pair", "x, y"),
            ("ratio", "2"),
            ("name", "web"),
            ("release", "40"),
        ],
    );
    assert_eq!(l.images[0].name, "web");
    // Defaults without -D.
    let l = lower_text(
        &s.dir,
        r#"let p = pipeline(`${param("name", 0)}-${param("release", "39")}`); emit(p);"#,
        &[],
    );
    assert_eq!(l.images[0].name, "0-39");
}

#[test]
fn read_file_and_user_modules_resolve_beside_the_script() {
    let s = Scratch::new("script-files");
    s.write("files/motd", "hello\n");
    s.write(
        "lib/web.rhai",
        r#"fn web(name) { let p = pipeline(name); p.file("/etc/motd", read_file("../files/motd")); p }"#,
    );
    let l = lower_text(
        &s.dir,
        r#"
        import "./lib/web" as web;
        emit(web::web("a"));
        let p = pipeline("b");
        p.file("/etc/motd", read_file("files/motd"), "0600");
        p.stage("org.osbuild.noop", #{ id: uuid("b/root") });
        emit(p);
        "#,
        &[],
    );
    let a = l.images[0].manifest.canonical_json();
    assert!(a.contains(r#""content":"hello\n""#), "{a}");
    let b = l.images[1].manifest.canonical_json();
    assert!(b.contains(r#""mode":"0600""#), "{b}");
    // UUIDv5 in the fixed namespace: stable forever.
    assert!(b.contains(&uuid::Uuid::new_v5(&osbuild::script::api::uuid_namespace(), b"b/root").to_string()));
    assert_eq!(
        osbuild::script::api::uuid_namespace().to_string(),
        uuid::Uuid::new_v5(
            &uuid::Uuid::NAMESPACE_URL,
            b"https://github.com/osbuild/osbuild-rs/script/uuid"
        )
        .to_string()
    );
}

#[test]
fn fleet_module_makes_the_cartesian_product() {
    let s = Scratch::new("script-fleet-module");
    let l = lower_text(
        &s.dir,
        r#"
        import "fleet" as fleet;
        let n = fleet::each(#{ role: ["web", "db", "cache"], size: ["s", "l"] }, |c| {
            let p = pipeline(fleet::name(c));
            p.hostname(c.role);
            p
        });
        if n != 6 { throw "six"; }
        "#,
        &[],
    );
    let names: Vec<&str> = l.images.iter().map(|i| i.name.as_str()).collect();
    // Dimensions in name order, the first outermost; values in the given order.
    assert_eq!(names, ["web-s", "web-l", "db-s", "db-l", "cache-s", "cache-l"]);
}

#[test]
fn the_engine_is_pure() {
    for (code, what) in [
        ("timestamp()", "timestamp"),
        ("eval(\"1\")", "eval"),
        ("let b = blob(10);", "blob"),
    ] {
        let out = diagnose(code);
        assert!(out.contains(what), "{code}: {out}");
    }
}

// ---- diagnostics -------------------------------------------------------------

/// The stdlib's usable-machine defaults, as the manifest says them: DHCP by
/// systemd-networkd (or a static address, or nothing), /etc/hosts, SSH host
/// keys made at first boot, sudo for an admin, a generated locale.
#[test]
fn debian_images_are_configured_to_be_usable() {
    let s = Scratch::new("script-usable");
    let l = lower_text(
        &s.dir,
        r#"
        import "debian" as debian;
        import "users" as users;
        let p = debian::system("a", #{ locale: "de_DE.UTF-8" });
        p = users::admin(p, "ops.admin", "ssh-ed25519 AAAA ops");
        p = users::admin(p, "second", "ssh-ed25519 AAAA second");
        emit(debian::finish(p, #{ hostname: "a.example.test" }));
        emit(debian::image("b", #{ network: #{ address: "192.0.2.10/24", gateway: "192.0.2.1", dns: ["192.0.2.53"] } }));
        emit(debian::image("c", #{ network: "none" }));
        "#,
        &[],
    );
    let json: Vec<String> = l.images.iter().map(|i| i.manifest.canonical_json()).collect();
    let a = &json[0];
    for wanted in [
        r#""content":"de_DE.UTF-8 UTF-8\n","path":"/etc/locale.gen""#,
        r#""locales""#,
        r#""systemd-resolved""#,
        r#""packages":["sudo"]"#,
        r#""groups":["sudo"]"#,
        r#"ops.admin ALL=(ALL:ALL) NOPASSWD: ALL\n","mode":"0440","path":"/etc/sudoers.d/ops_admin""#,
        r#"127.0.1.1\ta.example.test a\n"#,
        r#"[Match]\nType=ether\n\n[Network]\nDHCP=yes\n"#,
        r#""enabled_services":["systemd-networkd.service","systemd-resolved.service"]"#,
        r#"rm -f /etc/ssh/ssh_host_*_key"#,
        r#""enabled_services":["ssh-host-keys.service","ssl-cert-snakeoil.service"]"#,
    ] {
        assert!(a.contains(wanted), "image a lacks {wanted}:\n{a}");
    }
    assert_eq!(
        a.matches(r#""packages":["sudo"]"#).count(),
        1,
        "two admins, one sudo stage:\n{a}"
    );
    assert!(
        json[1].contains(r#"Address=192.0.2.10/24\nGateway=192.0.2.1\nDNS=192.0.2.53\n"#),
        "{}",
        json[1]
    );
    assert!(!json[1].contains("locales"), "C.UTF-8 needs no locales package");
    assert!(!json[2].contains("systemd-networkd"), "network none configures nothing");

    // An extra apt repository, its key and packages: checked by the apt stage.
    s.write(
        "tools.asc",
        "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQINBF\n-----END PGP PUBLIC KEY BLOCK-----\n",
    );
    let l = lower_text(
        &s.dir,
        r#"
        import "debian" as debian;
        let p = debian::system("r", #{});
        p = debian::repository(p, "tools", #{ uri: "https://apt.example.org/debian", key: read_file("tools.asc"), packages: ["example-tool"] });
        p = debian::repository(p, "flat", #{ uri: "file:///srv/repo", suite: "./", packages: ["local-tool"] });
        emit(p);
        "#,
        &[],
    );
    let r = l.images[0].manifest.canonical_json();
    assert!(
        r.contains(
            r#""repositories":[{"components":["main"],"name":"tools","signed_by":"-----BEGIN PGP PUBLIC KEY BLOCK-----"#
        ) && r.contains(r#""suites":["bookworm"],"uris":["https://apt.example.org/debian"]"#)
            && r.contains(r#"{"name":"flat","suites":["./"],"uris":["file:///srv/repo"]}"#),
        "{r}"
    );

    let l = lower_text(
        &s.dir,
        r#"
        import "fedora" as fedora;
        emit(fedora::image("f", #{ packages: ["vim"], users: #{ bob: #{} }, files: #{ "/etc/motd": "hi\n" } }));
        "#,
        &[],
    );
    let f = l.images[0].manifest.canonical_json();
    for wanted in [
        r#""packages":["@Core","kernel","grub2-pc","vim"]"#,
        r#""users":{"bob":{}}"#,
        r#"{"content":"hi\n","path":"/etc/motd"}"#,
        r#"rm -f /etc/ssh/ssh_host_*_key"#,
    ] {
        assert!(f.contains(wanted), "the fedora image lacks {wanted}:\n{f}");
    }
}

#[test]
fn disk_layouts_lower_to_partitions_fstab_and_grub() {
    let s = Scratch::new("script-disk");
    let l = lower_text(
        &s.dir,
        r#"import "disk" as disk;
           let p = pipeline("u"); emit(disk::image(p, #{ boot: "uefi", esp_size: "200M" }));
           let p = pipeline("h"); emit(disk::image(p, #{ format: "raw", size: "8G", boot_size: "1G",
               partitions: [#{ mountpoint: "/srv/data", size: "64M", type: "vfat" }, #{ mountpoint: "/home", size: "2G", label: "home" }] }));
           let p = pipeline("m"); emit(disk::image(p, #{ table: "mbr", boot: "hybrid" }));
           let p = pipeline("n"); emit(disk::image(p, #{ boot: "none" }));
           let p = pipeline("legacy"); emit(disk::image(p, #{}));"#,
        &[],
    );
    let assembler = |i: usize| {
        l.images[i]
            .manifest
            .pipeline
            .assembler
            .as_ref()
            .unwrap()
            .options
            .clone()
    };
    let stages = |i: usize| -> Vec<(String, Value)> {
        l.images[i]
            .manifest
            .pipeline
            .stages
            .iter()
            .map(|s| (s.name.clone(), Value::Object(s.options.clone())))
            .collect()
    };
    let summary = |i: usize| -> Vec<String> {
        assembler(i)["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let fs = &p["filesystem"];
                format!("{} {} {} {}", p["type"], p["size"], fs["type"], fs["mountpoint"]).replace('"', "")
            })
            .collect()
    };
    let ids = |name: &str| uuid::Uuid::new_v5(&osbuild::script::api::uuid_namespace(), name.as_bytes()).to_string();

    // UEFI only: a GPT with the ESP and the root; GRUB for UEFI.
    let u = assembler(0);
    assert_eq!((u["pttype"].as_str(), u["size"].as_u64()), (Some("gpt"), Some(4 << 30)));
    assert_eq!(u["ptuuid"].as_str(), Some(ids("u/partition-table").as_str()));
    assert_eq!(
        summary(0),
        [
            "C12A7328-F81F-11D2-BA4B-00A0C93EC93B 409600 vfat /boot/efi",
            "0FC63DAF-8483-4772-8E79-3D69D8477DE4 null ext4 /"
        ]
    );
    let volid = ids("u/esp")[..8].to_ascii_uppercase();
    assert_eq!(
        u["partitions"][0]["filesystem"]["uuid"].as_str(),
        Some(format!("{}-{}", &volid[..4], &volid[4..]).as_str())
    );
    let st = stages(0);
    assert_eq!(st[0].1["filesystems"][1]["path"], "/boot/efi");
    assert_eq!(st[1].1["uefi"], json!({"vendor": "debian"}));
    assert_eq!(st[1].1["root_fs_uuid"].as_str(), Some(ids("u/root").as_str()));

    // Hybrid by default on GPT: BIOS boot partition, ESP, /boot, the extras, the root.
    assert_eq!(
        summary(1),
        [
            "21686148-6449-6E6F-744E-656564454649 2048 null null",
            "C12A7328-F81F-11D2-BA4B-00A0C93EC93B 1048576 vfat /boot/efi",
            "0FC63DAF-8483-4772-8E79-3D69D8477DE4 2097152 ext4 /boot",
            "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7 131072 vfat /srv/data",
            "0FC63DAF-8483-4772-8E79-3D69D8477DE4 4194304 ext4 /home",
            "0FC63DAF-8483-4772-8E79-3D69D8477DE4 null ext4 /",
        ]
    );
    let h = assembler(1);
    let names: Vec<&str> = h["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["bios", "esp", "boot", "srv-data", "home", "root"]);
    let h = stages(1);
    let fstab: Vec<&str> = h[0].1["filesystems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(fstab, ["/", "/boot/efi", "/boot", "/srv/data", "/home"]);
    assert_eq!(stages(1)[1].1["boot_fs_uuid"].as_str(), Some(ids("h/boot").as_str()));

    // MBR: an ESP of type ef and a bootable root; the table id is 32 bits.
    let m = assembler(2);
    assert_eq!(
        m["ptuuid"].as_str(),
        Some(format!("0x{}", &ids("m/partition-table")[..8]).as_str())
    );
    assert_eq!(summary(2), ["ef 1048576 vfat /boot/efi", "83 null ext4 /"]);
    assert_eq!(m["partitions"][1]["bootable"], true);

    // No boot loader: neither GRUB's stage nor the assembler's.
    assert_eq!(assembler(3)["bootloader"], json!({"type": "none"}));
    assert_eq!(
        stages(3).iter().map(|s| s.0.as_str()).collect::<Vec<_>>(),
        ["org.osbuild.fstab"]
    );
    assert_eq!(summary(3), ["0FC63DAF-8483-4772-8E79-3D69D8477DE4 null ext4 /"]);

    // No layout option: osbuild's legacy layout, as before.
    let legacy = assembler(4);
    assert_eq!(legacy.get("partitions"), None);
    assert_eq!(legacy["root_fs_uuid"].as_str(), Some(ids("legacy/root").as_str()));
}

#[test]
fn diagnostic_disk_layout_mistakes_at_the_users_value() {
    let cases = [
        (r#"boot: "efi""#, "unknown way to boot \"efi\""),
        (r#"esp_size: 8"#, "a disk of 8 bytes is too small"),
        (
            r#"boot: "bios", esp_size: "200M""#,
            "an EFI system partition is for UEFI",
        ),
        (
            r#"partitions: [#{ mountpoint: "/a", size: "1G" }, #{ mountpoint: "b", size: "1G" }]"#,
            "not \"b\"",
        ),
        (
            r#"partitions: [#{ mountpoint: "/boot/efi", size: "1G" }]"#,
            "/boot/efi already has a file system",
        ),
        (
            r#"partitions: [#{ mountpoint: "/a" }]"#,
            "needs a mountpoint and a size",
        ),
        (r#"esp_size: "3G", boot_size: "2G""#, "a disk of 4096 MiB is too small"),
        (
            r#"table: "mbr", boot_size: "1G", partitions: [#{ mountpoint: "/a", size: "1G" }, #{ mountpoint: "/b", size: "1G" }, #{ mountpoint: "/c", size: "1G" }]"#,
            "an MBR holds 4 partitions",
        ),
    ];
    for (options, message) in cases {
        let out = diagnose(&format!(
            "import \"debian\" as debian;\nlet p = debian::system(\"a\", #{{}});\nemit(debian::finish(p, #{{ disk: #{{ {options} }} }}));\n"
        ));
        assert!(out.contains(message), "{options}: {out}");
        assert!(out.contains("test.rhai:3:"), "{options}: not at the user's line: {out}");
    }
    insta::assert_snapshot!(diagnose(
        "import \"disk\" as disk;\nlet p = pipeline(\"a\");\np = disk::image(p, #{ partitions: [\n    #{ mountpoint: \"/home\", size: \"2G\" },\n    #{ mountpoint: \"/srv\", size: 512 },\n] });\nemit(p);\n"
    ));
}

#[test]
fn diagnostic_disk_size_at_the_users_line() {
    insta::assert_snapshot!(diagnose(
        "import \"debian\" as debian;\nemit(debian::image(\"a\", #{ size: 8 }));\n"
    ));
}

#[test]
fn diagnostic_bad_size_string_at_the_users_line() {
    insta::assert_snapshot!(diagnose(
        "import \"disk\" as disk;\nlet p = pipeline(\"a\");\np = disk::qcow2(p, #{ size: \"4X\" });\nemit(p);\n"
    ));
}

#[test]
fn diagnostic_bad_mode_at_the_users_line() {
    insta::assert_snapshot!(diagnose(
        "let p = pipeline(\"a\");\np.file(\"/etc/x\", \"hi\", \"rw-r--r--\");\nemit(p);\n"
    ));
}

#[test]
fn modes_are_integers_or_octal_strings() {
    let s = Scratch::new("script-modes");
    let l = lower_text(
        &s.dir,
        r#"let p = pipeline("a"); p.file("/x", "", 0o600); p.file("/y", "", "0640"); p.files(#{ "/z": #{ content: "", mode: 0o755 } }); emit(p);"#,
        &[],
    );
    let json = l.images[0].manifest.canonical_json();
    assert!(
        json.contains(r#""mode":384"#) && json.contains(r#""mode":"0640""#) && json.contains(r#""mode":493"#),
        "{json}"
    );
}

#[test]
fn diagnostic_disk_size_in_a_variable_names_the_option() {
    insta::assert_snapshot!(diagnose(
        "import \"disk\" as disk;\nlet p = pipeline(\"a\");\nlet o = #{ size: \"99999999999T\" };\np = disk::raw(p, o);\nemit(p);\n"
    ));
}

#[test]
fn diagnostic_mode_too_large_at_the_users_value() {
    insta::assert_snapshot!(diagnose(
        "let p = pipeline(\"a\");\np.file(\"/etc/x\", \"hi\", 0o10000);\nemit(p);\n"
    ));
}

#[test]
fn diagnostic_mode_in_files_at_its_path() {
    // The second file's mode is wrong: the label is at it, not at the first `mode:`.
    insta::assert_snapshot!(diagnose(
        "let p = pipeline(\"a\");\np.files(#{\n    \"/etc/a\": #{ content: \"a\", mode: 0o600 },\n    \"/etc/b\": #{ content: \"b\", mode: \"rwxr-x---\" },\n});\nemit(p);\n"
    ));
}

#[test]
fn disk_sizes_are_bytes_or_a_number_and_a_unit() {
    let s = Scratch::new("script-sizes");
    let l = lower_text(
        &s.dir,
        r#"import "disk" as disk;
           let i = 0;
           for size in [4294967296, "4G", "4GiB", "4096M", " 4 GB "] {
               let p = pipeline("a" + i); p = disk::qcow2(p, #{ size: size }); emit(p);
               i += 1;
           }
           let p = pipeline("fs"); p = disk::fs(p, #{ size: "512M" }); emit(p);
           let p = pipeline("raw"); p = disk::raw(p); emit(p);"#,
        &[],
    );
    let sizes: Vec<Value> = l
        .images
        .iter()
        .map(|i| i.manifest.pipeline.assembler.as_ref().unwrap().options["size"].clone())
        .collect();
    let g4 = Value::from(4u64 << 30);
    assert_eq!(
        sizes,
        [&g4, &g4, &g4, &g4, &g4, &Value::from(512u64 << 20), &g4].map(Clone::clone)
    );
}

#[test]
fn diagnostic_wrong_arguments_to_a_prelude_method_list_its_calls() {
    insta::assert_snapshot!(diagnose("let p = pipeline(\"a\");\np.file(\"/etc/x\");\n"));
}

#[test]
fn diagnostic_wrong_arguments_to_the_core_api_list_its_calls() {
    insta::assert_snapshot!(diagnose(
        "let p = pipeline(\"a\");\np.stage(\"org.osbuild.noop\", 1, 2);\n"
    ));
}

#[test]
fn diagnostic_wrong_arguments_to_a_user_module_under_another_name() {
    let s = Scratch::new("script-diag-sig");
    s.write(
        "lib/roles.rhai",
        "fn web(name, size) { pipeline(name) }\nprivate fn helper(a) { a }\n",
    );
    insta::assert_snapshot!(diagnose_in(
        &s.dir,
        "import \"./lib/roles\" as r;\nimport \"debian\" as deb;\nemit(r::web(\"a\"));\n",
        &[]
    ));
}

#[test]
fn diagnostic_wrong_arguments_to_debian_image() {
    insta::assert_snapshot!(diagnose(
        "import \"debian\" as debian;\nemit(debian::image(\"a\", #{}, 3));\n"
    ));
}

#[test]
fn diagnostic_missing_import_suggests_it() {
    insta::assert_snapshot!(diagnose("emit(debian::image(\"a\"));\n"));
}

#[test]
fn diagnostic_wrong_arguments_list_the_signatures() {
    insta::assert_snapshot!(diagnose(
        "import \"users\" as users;\nlet p = pipeline(\"a\");\np = users::add(p);\n"
    ));
}

#[test]
fn diagnostic_plain_text_password_at_the_users_line() {
    insta::assert_snapshot!(diagnose(
        "import \"users\" as users;\nlet p = pipeline(\"a\");\np = users::admin(p, \"ops\", #{ password: \"secret\" });\n"
    ));
}

#[test]
fn diagnostic_repository_without_packages() {
    insta::assert_snapshot!(diagnose(
        "import \"debian\" as debian;\nlet p = debian::system(\"a\", #{});\np = debian::repository(p, \"x\", #{ uri: \"https://apt.example.org\", packages: [] });\n"
    ));
}

#[test]
fn diagnostic_unknown_locale() {
    insta::assert_snapshot!(diagnose(
        "import \"debian\" as debian;\nlet p = debian::system(\"a\", #{ locale: \"en_US.utf8\" });\n"
    ));
}

#[test]
fn diagnostic_syntax_error() {
    insta::assert_snapshot!(diagnose("let p = pipeline(\"a\")\np.hostname(\"a\");\n"));
}

#[test]
fn diagnostic_runtime_error() {
    insta::assert_snapshot!(diagnose("let p = pipeline(\"a\");\nlet n = 1 + \"x\" * 2;\n"));
}

#[test]
fn diagnostic_thrown_error() {
    insta::assert_snapshot!(diagnose(
        "fn check(x) {\n    if x > 1 { throw \"too many\"; }\n}\ncheck(2);\n"
    ));
}

#[test]
fn diagnostic_unknown_method_suggests() {
    insta::assert_snapshot!(diagnose("let p = pipeline(\"a\");\np.hostnme(\"a\");\n"));
}

#[test]
fn diagnostic_unknown_option() {
    insta::assert_snapshot!(diagnose(
        "let p = pipeline(\"a\");\np.stage(\"org.osbuild.hostname\", #{\n    hostname: \"a\",\n    domain: \"example.org\",\n});\n"
    ));
}

#[test]
fn diagnostic_wrong_option_type() {
    insta::assert_snapshot!(diagnose(
        "let p = pipeline(\"a\");\np.stage(\"org.osbuild.mkdir\", #{ paths: [#{ path: 42 }] });\n"
    ));
}

#[test]
fn diagnostic_missing_option() {
    insta::assert_snapshot!(diagnose(
        "let p = pipeline(\"a\");\np.stage(\"org.osbuild.hostname\", #{});\n"
    ));
}

#[test]
fn diagnostic_unknown_stage() {
    insta::assert_snapshot!(diagnose(
        "let p = pipeline(\"a\");\np.stage(\"org.osbuild.hostnme\", #{ hostname: \"a\" });\n"
    ));
}

#[test]
fn diagnostic_unknown_assembler() {
    insta::assert_snapshot!(diagnose(
        "let p = pipeline(\"a\");\np.assembler(\"org.osbuild.hostname\", #{ hostname: \"a\" });\n"
    ));
}

#[test]
fn diagnostic_unknown_param() {
    let s = Scratch::new("script-diag-param");
    let text = "let suite = param(\"suite\", \"bookworm\");\nlet p = pipeline(suite);\nemit(p);\n";
    insta::assert_snapshot!(
        "diagnostic_unknown_param_suggests",
        diagnose_in(&s.dir, text, &[("siute", "trixie")])
    );
    insta::assert_snapshot!(
        "diagnostic_unknown_param_unrelated",
        diagnose_in(&s.dir, text, &[("colour", "blue")])
    );
}

#[test]
fn diagnostic_param_of_the_wrong_type() {
    let s = Scratch::new("script-diag-param-type");
    let text = "let n = param(\"count\", 3);\nlet p = pipeline(`web-${n}`);\nemit(p);\n";
    let shown = diagnose_in(&s.dir, text, &[("count", "many")]);
    assert!(
        shown.contains("-D count=many: the script's default for count is an integer (3)"),
        "{shown}"
    );
    assert!(shown.contains("1 │ let n = param(\"count\", 3);"), "{shown}");
}

#[test]
fn diagnostic_duplicate_image() {
    insta::assert_snapshot!(diagnose(
        "let p = pipeline(\"web\");\nemit(p);\nlet q = p;\nq.hostname(\"q\");\nemit(q);\n"
    ));
}

#[test]
fn an_image_name_the_store_cannot_keep_is_refused() {
    let out = diagnose("let n = \"\";\nfor i in 0..300 { n += \"é\"; }\nemit(pipeline(n));\n");
    assert!(out.contains("an image name names its tree in the store"), "{out}");
    assert!(out.contains("takes 1800 bytes"), "{out}");
    assert!(out.contains("test.rhai:3"), "{out}");
    let out = diagnose(&format!("emit(pipeline(\"{}\"));\n", "a".repeat(251)));
    assert!(out.contains("`<name>.json` of at most 255 bytes"), "{out}");
    lower_text(
        &Scratch::new("script-name-ok").dir,
        &format!("emit(pipeline(\"{}\"));\n", "a".repeat(250)),
        &[],
    );
}

#[test]
fn diagnostic_in_the_prelude_shows_the_call_chain() {
    insta::assert_snapshot!(diagnose("let p = pipeline(\"a\");\np.hostname(42);\n"));
}

#[test]
fn diagnostic_in_a_user_module_shows_the_call_chain() {
    let s = Scratch::new("script-diag-chain");
    s.write(
        "lib/roles.rhai",
        "fn web(name) {\n    let p = pipeline(name);\n    p.stage(\"org.osbuild.mkdir\", #{ paths: [#{ path: \"/srv\", mode: \"bad\" }] });\n    p\n}\n\nfn role(name) {\n    web(name)\n}\n",
    );
    insta::assert_snapshot!(diagnose_in(
        &s.dir,
        "import \"./lib/roles\" as roles;\n\nemit(roles::role(\"web\"));\n",
        &[]
    ));
}

#[test]
fn diagnostic_stdlib_option_typo_points_at_the_users_line() {
    insta::assert_snapshot!(diagnose(
        "import \"debian\" as debian;\nemit(debian::image(\"web\", #{ hostnme: \"web\" }));\n"
    ));
}

#[test]
fn diagnostic_syntax_error_in_a_module() {
    let s = Scratch::new("script-diag-module-syntax");
    s.write("broken.rhai", "fn f( {\n}\n");
    insta::assert_snapshot!(diagnose_in(&s.dir, "import \"./broken\" as b;\n", &[]));
}

#[test]
fn diagnostic_unknown_module() {
    insta::assert_snapshot!(diagnose("import \"debain\" as debian;\n"));
}

#[test]
fn diagnostic_endless_loop_points_at_the_loop() {
    insta::assert_snapshot!(diagnose("let n = 0;\nloop {\n    n += 1;\n}\n"));
}

#[test]
fn diagnostic_read_file_outside_the_tree() {
    let s = Scratch::new("script-diag-escape");
    std::fs::create_dir_all(s.path("project")).unwrap();
    s.write("secret", "x");
    let out = diagnose_in(&s.path("project"), "let s = read_file(\"../secret\");\n", &[]);
    insta::assert_snapshot!(out);
    std::os::unix::fs::symlink(s.path("secret"), s.path("project/link")).unwrap();
    let out = diagnose_in(&s.path("project"), "let s = read_file(\"link\");\n", &[]);
    assert!(out.contains("leads out of the script's directory"), "{out}");
}

#[test]
fn diagnostic_no_image() {
    insta::assert_snapshot!(diagnose("let p = pipeline(\"a\");\n"));
}

// ---- the command line ----------------------------------------------------------

const LIGHT_FLEET: &str = r#"
// A fleet of light stages: three images sharing two stages.
import "fleet" as fleet;

let greeting = param("greeting", "hello");
let base = pipeline("base");
base.mkdir("/srv/www");
base.file("/etc/motd", greeting + "\n");

fleet::each(#{ role: ["web", "db", "cache"] }, |c| {
    let p = base.named(c.role);
    p.hostname(c.role);
    p.assembler("org.osbuild.tar", #{ filename: c.role + ".tar" });
    p
});
"#;

#[test]
fn lower_prints_and_writes_manifests_the_same_from_any_directory() {
    let s = Scratch::new("script-cli-lower");
    let script = s.write("proj/fleet.rhai", LIGHT_FLEET);
    std::fs::create_dir_all(s.path("elsewhere/deeper")).unwrap();
    let run = |cwd: &Path, path: &str| {
        let out = s
            .osbuild()
            .current_dir(cwd)
            .args(["lower", path, "-D", "greeting=hi"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    };
    let a = run(&s.path("proj"), "fleet.rhai");
    let b = run(&s.path("elsewhere/deeper"), "../../proj/fleet.rhai");
    let c = run(&s.path("elsewhere"), script.to_str().unwrap());
    assert_eq!(a, b);
    assert_eq!(a, c);
    let doc: Value = serde_json::from_slice(&a).unwrap();
    assert_eq!(doc.as_array().unwrap().len(), 3);

    let out = s
        .osbuild()
        .args(["lower", "-D", "greeting=hi", "-o"])
        .arg(s.path("manifests"))
        .arg(&script)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for (i, name) in ["web", "db", "cache"].iter().enumerate() {
        let written = std::fs::read_to_string(s.path(&format!("manifests/{name}.json"))).unwrap();
        let value: Value = serde_json::from_str(&written).unwrap();
        assert_eq!(value, doc[i]);
        assert_eq!(written, serde_json::to_string(&value).unwrap(), "canonical bytes");
        // Each file is a manifest the JSON front-end takes.
        let inspect = s
            .osbuild()
            .arg("inspect")
            .arg(s.path(&format!("manifests/{name}.json")))
            .output()
            .unwrap();
        assert!(inspect.status.success());
    }

    // A typo in -D is an error (exit 2), not silence.
    let out = s
        .osbuild()
        .args(["lower", "-D", "greting=hi"])
        .arg(&script)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("did you mean -D greeting"));
}

/// Runs `osbuild lower SCRIPT -o DIR`; returns a reader of the manifest it
/// wrote for an image, by name.
fn lower_to_files(s: &Scratch, script: &std::path::Path, dir: &str) -> impl Fn(&str) -> Value {
    let out = s
        .osbuild()
        .arg("lower")
        .arg(script)
        .arg("-o")
        .arg(s.path(dir))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let dir = s.path(dir);
    move |name| serde_json::from_str(&std::fs::read_to_string(dir.join(format!("{name}.json"))).unwrap()).unwrap()
}

/// Images that share their first stages each build their image on the
/// longest prefix another shares: `lower` shows it as `assembly_base`.
#[test]
fn lower_gives_each_image_the_stages_it_shares_as_its_assembly_base() {
    let s = Scratch::new("script-cli-assembly-base");
    let script = s.write(
        "two.rhai",
        "let base = pipeline(\"base\");\n\
         base.mkdir(\"/srv\");\n\
         base.hostname(\"shared\");\n\
         for name in [\"a\", \"b\"] {\n\
             let p = base.named(name);\n\
             p.file(\"/etc/motd\", name + \"\\n\");\n\
             p.assembler(\"org.osbuild.tar\", #{ filename: name + \".tar\" });\n\
             emit(p);\n\
         }\n\
         let alone = pipeline(\"alone\");\n\
         alone.mkdir(\"/opt\");\n\
         alone.assembler(\"org.osbuild.tar\", #{ filename: \"alone.tar\" });\n\
         emit(alone);\n",
    );
    let out = s.osbuild().arg("lower").arg(&script).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let bases: Vec<&Value> = doc.as_array().unwrap().iter().map(|m| &m["assembly_base"]).collect();
    assert_eq!(bases, [&json!(2), &json!(2), &Value::Null], "{doc:#}");
    // The same for the files `lower -o` writes, which the JSON front-end takes.
    let a = lower_to_files(&s, &script, "m")("a");
    assert_eq!(a, doc[0]);
    let plan = s.inspect(&s.path("m/a.json"));
    let main = &plan["pipelines"][0];
    assert_eq!(main["assembly_base"], main["stages"][1]["id"], "{plan:#}");
}

#[test]
fn inspect_takes_a_script() {
    let s = Scratch::new("script-cli-inspect");
    let script = s.write("fleet.rhai", LIGHT_FLEET);
    let out = s.osbuild().args(["inspect", "--json"]).arg(&script).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let plans: Value = serde_json::from_slice(&out.stdout).unwrap();
    let plans = plans.as_array().unwrap();
    assert_eq!(plans.len(), 3);
    let first = |p: &Value| p["pipelines"][0]["stages"][1]["id"].clone();
    assert_eq!(first(&plans[0]), first(&plans[2]));
    let text = s.osbuild().arg("inspect").arg(&script).output().unwrap();
    assert!(String::from_utf8_lossy(&text.stdout).contains("main pipeline \"cache\""));
}

/// Needs root and the real sandbox.
#[test]
fn a_base_may_name_an_image_emitted_earlier() {
    let s = Scratch::new("script-cli-emitted-base");
    let script = s.write(
        "based.rhai",
        "let a = pipeline(\"a\");\n\
         a.mkdir(\"/srv\");\n\
         a.assembler(\"org.osbuild.tar\", #{ filename: \"a.tar\" });\n\
         emit(a);\n\
         let b = pipeline(\"b\");\n\
         b.base(\"a\");\n\
         b.hostname(\"b\");\n\
         b.assembler(\"org.osbuild.tar\", #{ filename: \"b.tar\" });\n\
         emit(b);\n",
    );
    let manifest = lower_to_files(&s, &script, "m");
    let (a, b) = (manifest("a"), manifest("b"));
    let a_plan = s.inspect(&s.path("m/a.json"));
    let a_tree = a_plan["pipelines"][0]["stages"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(
        b["base"].as_str(),
        Some(a_tree.as_str()),
        "b starts from a's tree: {b}\n{a}"
    );

    let out = s
        .osbuild()
        .args(["run", "--json", "-o"])
        .arg(s.path("out"))
        .arg(&script)
        .output()
        .unwrap();
    crate::support::Build::from(out).ok();
    crate::support::untar(&s.path("out/b/b.tar"), &s.path("x"));
    assert!(s.path("x/srv").is_dir(), "b has a's directory");
    assert_eq!(std::fs::read_to_string(s.path("x/etc/hostname")).unwrap().trim(), "b");
}

#[test]
fn an_unknown_base_is_shown_at_the_call_that_names_it() {
    let s = Scratch::new("script-cli-base");
    let script = s.write(
        "based.rhai",
        "let p = pipeline(\"web\");\n\
         p.base(\"no-such-tree\");\n\
         p.stage(\"org.osbuild.mkdir\", #{ paths: [#{ path: \"/srv\" }] });\n\
         emit(p);\n",
    );
    for command in ["inspect", "run"] {
        let mut cmd = s.osbuild();
        cmd.arg(command);
        if command == "run" {
            cmd.arg("-o").arg(s.path("out"));
        }
        let out = cmd.arg(&script).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{command}: {stderr}");
        assert!(
            stderr.contains("web: base \"no-such-tree\" is neither an id nor a name"),
            "{command}: {stderr}"
        );
        assert!(stderr.contains("not in the store"), "{command}: the label: {stderr}");
        assert!(stderr.contains("based.rhai:2:"), "{command}: at line 2: {stderr}");
        assert!(!s.path("out/web").exists(), "{command}: nothing built");
    }
}

/// Needs root and the real sandbox.
#[test]
fn run_builds_a_fleet_and_its_shared_prefix_once() {
    let s = Scratch::new("script-cli-run");
    let script = s.write("fleet.rhai", LIGHT_FLEET);
    // One image after another, so which one builds the shared stages is known.
    let out = s
        .osbuild()
        .args(["run", "-j1", "--json", "-o"])
        .arg(s.path("out"))
        .arg(&script)
        .output()
        .unwrap();
    let build = crate::support::Build::from(out).ok();
    // mkdir and files once; hostname and tar three times each.
    let ran: Vec<String> = build
        .stages()
        .into_iter()
        .filter(|(_, status)| status == "success")
        .map(|(name, _)| name)
        .collect();
    assert_eq!(ran.iter().filter(|n| *n == "org.osbuild.mkdir").count(), 1, "{ran:?}");
    assert_eq!(ran.iter().filter(|n| *n == "org.osbuild.files").count(), 1, "{ran:?}");
    assert_eq!(
        ran.iter().filter(|n| *n == "org.osbuild.hostname").count(),
        3,
        "{ran:?}"
    );
    assert_eq!(ran.iter().filter(|n| *n == "org.osbuild.tar").count(), 3, "{ran:?}");
    for name in ["web", "db", "cache"] {
        let tar = s.path(&format!("out/{name}/{name}.tar"));
        assert!(tar.is_file(), "{}", tar.display());
        crate::support::untar(&tar, &s.path(&format!("x/{name}")));
        assert_eq!(
            std::fs::read_to_string(s.path(&format!("x/{name}/etc/hostname")))
                .unwrap()
                .trim(),
            name
        );
        assert_eq!(
            std::fs::read_to_string(s.path(&format!("x/{name}/etc/motd"))).unwrap(),
            "hello\n"
        );
    }
    let summary = build.events.iter().find(|e| e["type"] == "summary").expect("a summary");
    let images = summary["images"].as_array().unwrap();
    assert_eq!(images.len(), 3);
    assert_eq!(
        (images[0]["built"].as_u64(), images[0]["cached"].as_u64()),
        (Some(4), Some(0))
    );
    assert_eq!(
        (images[1]["built"].as_u64(), images[1]["cached"].as_u64()),
        (Some(2), Some(2))
    );

    // Again, as text, into another directory: every stage from the store,
    // each image assembled again (handed over before, not kept).
    let out = s
        .osbuild()
        .arg("run")
        .arg("-o")
        .arg(s.path("out2"))
        .arg(&script)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("3 images: 3 stages built, 9 from the store"), "{text}");
    assert!(text.contains("out2/web/web.tar"), "{text}");
}

/// Needs root and the real sandbox.
#[test]
fn a_failing_image_names_what_it_left_unbuilt_and_keep_going_builds_the_rest() {
    let s = Scratch::new("script-cli-keep-going");
    s.stage("stage", "test.fail", "#!/bin/sh\necho broken >&2\nexit 3\n", None);
    let script = s.write(
        "three.rhai",
        r#"for name in ["a", "b", "c"] {
    let p = pipeline(name);
    p.hostname(name);
    if name == "b" { p.stage("test.fail", #{}); }
    p.assembler("org.osbuild.tar", #{ filename: name + ".tar" });
    emit(p);
}
"#,
    );
    // One image after another: a failure stops what would come after it.
    let run = |extra: &[&str], out: &str| {
        let out = s
            .osbuild()
            .args(["run", "-j1"])
            .args(extra)
            .arg("-o")
            .arg(s.path(out))
            .arg(&script)
            .output()
            .unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stdout, stderr) = run(&[], "out");
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stdout.contains("(failed)") && stdout.contains("(not built)"),
        "{stdout}"
    );
    assert!(stdout.contains("1 images, 1 failed, 1 not built"), "{stdout}");
    assert!(
        stderr.contains("b stopped the run: not built: c (--keep-going"),
        "{stderr}"
    );
    // The failed build's own summary counts what ran before the failure.
    assert!(stderr.contains("build failure in"), "{stderr}");
    assert!(stderr.contains(": 1 ran, 0 cached"), "{stderr}");
    assert!(!s.path("out/c").exists());

    let (code, stdout, stderr) = run(&["--keep-going"], "out2");
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stdout.contains("2 images, 1 failed"), "{stdout}");
    assert!(stderr.contains("1 of 3 images failed: b"), "{stderr}");
    assert!(stderr.contains("broken"), "the failure's log is shown: {stderr}");
    assert!(s.path("out2/c/c.tar").is_file());
}

/// A mistake late in a very long script line is shown in a window cut around
/// it, through the CLI; miette used to panic (exit 101).
#[test]
fn a_mistake_late_in_a_70000_character_line_is_shown_cut_around_it() {
    let s = Scratch::new("script-long-line");
    let run = |name: &str, text: &str| {
        let path = s.write(name, text);
        let out = s
            .osbuild()
            .arg("run")
            .arg(&path)
            .arg("-o")
            .arg(s.path("out"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        let widest = stderr.lines().map(|l| l.chars().count()).max().unwrap_or(0);
        assert!(widest < 300, "a line of {widest} characters:\n{stderr}");
        assert!(!s.path("out").exists());
        crate::support::unwrapped(&stderr)
    };

    // Past column 65535, where Rhai stops counting: the right line, and a note.
    let x = "x".repeat(70_000);
    let out = run(
        "long.rhai",
        &format!("let p = pipeline(\"a\");\nlet pad = \"{x}\"; p.hostnme(\"h\");\n"),
    );
    for expected in [
        "no function hostnme",
        "did you mean `hostname`?",
        "long.rhai:2:",
        "2 │ …xxx",
        "Rhai counts columns only up to 65535",
    ] {
        assert!(out.contains(expected), "expected {expected:?} in:\n{out}");
    }

    // Within Rhai's count but 80,000 columns wide (tabs): the exact place.
    let tabs = "\t".repeat(20_000);
    let out = run(
        "tabs.rhai",
        &format!("let p = pipeline(\"a\");\n{tabs}p.hostnme(\"h\");\n"),
    );
    for expected in ["no function hostnme", "tabs.rhai:2:20003", "p.hostnme(\"h\");"] {
        assert!(out.contains(expected), "expected {expected:?} in:\n{out}");
    }
}

/// `lower` prints what the executor runs: every field of the manifest, the
/// time a pipeline builds for included, and a typo'd epoch is an error.
#[test]
fn a_scripts_source_epoch_reaches_the_manifest_and_lower() {
    let s = Scratch::new("script-epoch");
    let l = lower_text(
        &s.dir,
        "let b = pipeline(\"b\");\nb.stage(\"org.osbuild.noop\");\nlet p = pipeline(\"p\");\n\
         p.source_epoch = 1700000000;\nb.source_epoch = 1600000000;\np.build(b);\n\
         p.stage(\"org.osbuild.noop\");\nemit(p);\n",
        &[],
    );
    let manifest = &l.images[0].manifest;
    assert_eq!(manifest.pipeline.source_epoch, Some(1_700_000_000));
    assert_eq!(
        manifest.pipeline.build.as_ref().unwrap().source_epoch,
        Some(1_600_000_000)
    );
    let printed: Value = serde_json::from_str(&manifests_json(&l)).unwrap();
    let canonical: Value = serde_json::from_str(&manifest.canonical_json()).unwrap();
    assert_eq!(printed, canonical, "lower prints the manifest whole");
    let err = diagnose("let p = pipeline(\"p\");\np.source_epoch = -1;\nemit(p);\n");
    assert!(err.contains("source_epoch must be seconds since 1970"), "{err}");
}

/// A mistake inside a closure that a stdlib function calls (`fleet::each`)
/// is shown in the closure, where the user wrote it, not at the same line
/// and column of the stdlib module that called it.
#[test]
fn a_mistake_in_a_closure_the_stdlib_calls_is_shown_where_it_was_written() {
    let text = diagnose(
        "import \"fleet\" as fleet;\nfleet::each(#{ role: [\"web\"] }, |c| {\n    let p = pipeline(c.role);\n    \
         p.stage(\"org.osbuild.nope\", #{});\n    p\n});\n",
    );
    assert!(text.contains("unknown stage `org.osbuild.nope`"), "{text}");
    assert!(text.contains("test.rhai:4:13"), "at the user's line: {text}");
    assert!(
        !text.contains("the error comes from here (stdlib/fleet.rhai)"),
        "{text}"
    );
    assert!(text.contains("inside a closure, which was called here"), "{text}");
    assert!(
        text.contains("inside `each` (stdlib/fleet.rhai), which was called here"),
        "{text}"
    );
}
