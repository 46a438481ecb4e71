//! Locks against the host's real mirror: `osbuild lock`, `osbuild fetch`,
//! a locked build without any network (`unshare -n`), a tampered pin, a
//! stale lock. A small image (mmdebstrap's `apt` variant and one apt
//! stage) keeps it to about half a minute.

use std::process::Command;

use serde_json::{json, Value};

use crate::support::{unwrapped, Build, Scratch};

fn image(packages: &[&str]) -> Value {
    json!({
        "name": "locked-small",
        "stages": [
            {"name": "org.osbuild.debootstrap", "options": {"suite": "bookworm", "variant": "apt"}},
            {"name": "org.osbuild.hostname", "options": {"hostname": "locked"}},
            {"name": "org.osbuild.apt", "options": {"packages": packages}}
        ],
        "assembler": {"name": "org.osbuild.tar", "options": {"filename": "root.tar"}}
    })
}

/// A locked build from `sources` in a network namespace of its own (no
/// network at all); the build and the listing of its `root.tar`.
fn build_offline(
    store: &std::path::Path,
    sources: &std::path::Path,
    manifest: &std::path::Path,
    out: &std::path::Path,
) -> (Build, String) {
    let mut offline = Command::new("unshare");
    offline
        .arg("--net")
        .arg(env!("CARGO_BIN_EXE_osbuild"))
        .arg("--store")
        .arg(store)
        .arg("--sources")
        .arg(sources)
        .args(["build", "--locked", "--json", "-o"])
        .arg(out)
        .arg(manifest);
    let built = run(&mut offline).ok();
    let listing = Command::new("tar")
        .arg("-tf")
        .arg(out.join("root.tar"))
        .output()
        .unwrap();
    (built, String::from_utf8_lossy(&listing.stdout).into_owned())
}

/// `text` (from the signature chain check) is in the output of `osbuild
/// verify --keep` once, and in none of its child builds' logs, which it
/// then removes with the rest of what it kept.
#[track_caller]
fn said_once_by_verify(verify: &Build, text: &str) {
    assert_eq!(verify.stderr.matches(text).count(), 1, "{}", verify.stderr);
    let kept = verify
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("kept both builds in "))
        .expect("--keep says where");
    let logs = Command::new("sh")
        .args(["-c", "find \"$1\" -name '*.log' -exec cat {} +", "sh", kept])
        .output()
        .unwrap();
    let logs = String::from_utf8_lossy(&logs.stdout);
    assert!(logs.contains("build success") && !logs.contains(text), "{logs}");
    std::fs::remove_dir_all(kept).unwrap();
}

fn run(cmd: &mut Command) -> Build {
    cmd.env("NO_COLOR", "1");
    Build::from(cmd.output().unwrap())
}

#[test]
fn a_locked_image_builds_offline_from_its_fetched_sources() {
    let s = Scratch::new("locked");
    let manifest = s.manifest("small.json", &image(&["less"]));
    let lock_path = s.path("small.lock");

    // The lock, beside the manifest.
    let out = run(s.osbuild().arg("lock").arg(&manifest));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let lock: Value = serde_json::from_str(&std::fs::read_to_string(&lock_path).unwrap()).unwrap();
    let pins = |stage: usize| -> Vec<String> {
        lock["stages"][stage]["locked"]["repositories"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r["packages"].as_array().unwrap())
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(pins(0).iter().any(|n| n == "libc6"), "{:?}", pins(0));
    assert!(pins(1).iter().any(|n| n == "less"), "{:?}", pins(1));
    assert!(lock["source_date_epoch"].as_u64().unwrap() > 1_600_000_000);

    // Locking again changes nothing, with or without --update.
    let again = run(s.osbuild().arg("lock").arg(&manifest));
    assert!(again.stderr.contains("is up to date"), "{}", again.stderr);
    let update = run(s.osbuild().arg("lock").arg("--update").arg(&manifest));
    assert!(update.stderr.contains("nothing changed"), "{}", update.stderr);

    // What the image holds, as SPDX: every pin, with its checksum and purl.
    let sbom = run(s.osbuild().arg("sbom").arg(&manifest));
    assert_eq!(sbom.code, 0, "{}", sbom.stderr);
    let doc: Value = serde_json::from_str(&sbom.stdout).unwrap();
    assert_eq!(doc["spdxVersion"], json!("SPDX-2.3"));
    let packages = doc["packages"].as_array().unwrap();
    assert_eq!(
        packages.len(),
        1 + pins(0).len() + pins(1).len(),
        "the image and every pin"
    );
    let less = packages
        .iter()
        .find(|p| p["name"] == json!("less"))
        .expect("less is listed");
    let purl = less["externalRefs"][0]["referenceLocator"].as_str().unwrap();
    assert!(
        purl.starts_with("pkg:deb/debian/less@") && purl.ends_with("&distro=bookworm"),
        "{purl}"
    );
    assert_eq!(less["checksums"][0]["algorithm"], json!("SHA256"));

    // Every pinned file, into a directory of its own.
    let sources = s.path("sources");
    let fetch = run(s.osbuild().arg("--sources").arg(&sources).arg("fetch").arg(&manifest));
    assert_eq!(fetch.code, 0, "{}", fetch.stderr);
    let count = std::fs::read_dir(sources.join("sha256")).unwrap().count();
    // The packages, and the signed InRelease and package index they are checked by.
    assert_eq!(count, pins(0).len() + pins(1).len() + 2);
    let release = lock["stages"][0]["locked"]["repositories"][0]["release"]["sha256"]
        .as_str()
        .unwrap();
    assert!(sources.join("sha256").join(release).is_file(), "the InRelease is kept");
    assert!(
        fetch
            .stderr
            .contains("pins are the archive's, by its signed InRelease and package indices"),
        "{}",
        fetch.stderr
    );

    // Built with no network at all: a network namespace of its own.
    let out_dir = s.path("out");
    let (built, listing) = build_offline(&s.path("store-offline"), &sources, &manifest, &out_dir);
    assert_eq!(built.ran(), 4);
    assert!(listing.contains("./usr/bin/less"), "less is installed");
    assert!(
        !listing.contains("var/cache/apt/archives/less"),
        "no package file is left"
    );

    // Two more builds in fresh stores, from other directories, time zones,
    // locales and umasks, a little later: the same bytes as the offline one.
    let verify = run(s
        .osbuild()
        .arg("--sources")
        .arg(&sources)
        .args(["verify", "--keep"])
        .arg(&manifest));
    assert_eq!(verify.code, 0, "{}{}", verify.stdout, verify.stderr);
    // The signature chain is checked once, by verify; its child builds
    // check each file's SHA256 only.
    said_once_by_verify(&verify, "pins are the archive's");
    let tar = std::fs::read(out_dir.join("root.tar")).unwrap();
    let digest = sha2_hex(&tar);
    assert_eq!(
        verify.stdout.trim(),
        format!("reproducible: locked-small/root.tar sha256:{digest}"),
        "{}",
        verify.stderr
    );

    // A lock edited to pin another file, with that file in the sources: each
    // file matches its pin, but the archive never signed it.
    let mut edited = lock.clone();
    let pin = &mut edited["stages"][1]["locked"]["repositories"][0]["packages"][0];
    let real = pin["sha256"].as_str().unwrap().to_string();
    let mut bytes = std::fs::read(sources.join("sha256").join(&real)).unwrap();
    bytes.extend_from_slice(b"\n");
    let fake = sha2_hex(&bytes);
    std::fs::write(sources.join("sha256").join(&fake), &bytes).unwrap();
    pin["sha256"] = json!(fake);
    pin["size"] = json!(bytes.len());
    let name = pin["name"].as_str().unwrap().to_string();
    std::fs::write(&lock_path, serde_json::to_string_pretty(&edited).unwrap()).unwrap();
    // (This test's own store has built nothing: the builds above had theirs.)
    let forged = run(s
        .osbuild()
        .arg("--sources")
        .arg(&sources)
        .args(["build", "--locked", "--json"])
        .arg(&manifest));
    assert_ne!(forged.code, 0);
    let text = unwrapped(&forged.stderr);
    assert!(
        text.contains("the signature chain of bookworm: 1 pins are not what the archive signed")
            && text.contains(&format!("{name} "))
            && text.contains(&fake),
        "{text}"
    );
    assert_eq!(forged.ran(), 0, "no stage ran");
}

fn sha2_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn a_lock_that_does_not_fit_builds_nothing() {
    let s = Scratch::new("locked-stale");
    let manifest = s.manifest("small.json", &image(&["less"]));
    assert_eq!(run(s.osbuild().arg("lock").arg(&manifest)).code, 0);

    // Another package asked for: --locked refuses, naming it.
    s.manifest("small.json", &image(&["less", "htop"]));
    let stale = run(s.osbuild().args(["build", "--locked"]).arg(&manifest));
    assert_eq!(stale.code, 2, "{}", stale.stderr);
    assert!(unwrapped(&stale.stderr).contains("htop is not in"), "{}", stale.stderr);
    assert!(s.objects().is_empty(), "nothing was built");

    // A tampered checksum: the sources step fails, naming the package,
    // before any stage runs.
    s.manifest("small.json", &image(&["less"]));
    let path = s.path("small.lock");
    let mut lock: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let pin = &mut lock["stages"][1]["locked"]["repositories"][0]["packages"][0];
    let name = pin["name"].as_str().unwrap().to_string();
    let real = pin["sha256"].as_str().unwrap().to_string();
    let fake = format!("{}{}", if real.starts_with('0') { "1" } else { "0" }, &real[1..]);
    pin["sha256"] = json!(fake);
    std::fs::write(&path, serde_json::to_string_pretty(&lock).unwrap()).unwrap();
    let tampered = s.build(&manifest, None);
    assert_ne!(tampered.code, 0);
    let text = unwrapped(&tampered.stderr);
    assert!(
        text.contains(&name) && text.contains(&real) && text.contains(&fake),
        "{text}"
    );
    assert_eq!(tampered.ran(), 0, "no stage ran");
}

/// Two noarch RPMs (`osbuild-app` requires `osbuild-base`) in a local
/// repository made with rpmbuild and createrepo_c.
fn rpm_repository(s: &Scratch) -> std::path::PathBuf {
    let (top, repo) = (s.path("rpmbuild"), s.path("repo"));
    for (name, requires) in [("osbuild-base", ""), ("osbuild-app", "Requires: osbuild-base\n")] {
        let spec = s.write(
            &format!("{name}.spec"),
            &format!(
                "Name: {name}\nVersion: 1.0\nRelease: 1\nSummary: {name}\nLicense: MIT\nBuildArch: noarch\n{requires}\
                 %description\n{name}\n%install\nmkdir -p %{{buildroot}}/usr/share/{name}\n\
                 echo {name} > %{{buildroot}}/usr/share/{name}/hello\n%files\n/usr/share/{name}/hello\n"
            ),
        );
        let built = Command::new("rpmbuild")
            .arg("--define")
            .arg(format!("_topdir {}", top.display()))
            .arg("--define")
            .arg(format!("_rpmdir {}", repo.display()))
            .args(["--quiet", "-bb"])
            .arg(&spec)
            .status()
            .expect("rpmbuild (package rpm) runs");
        assert!(built.success(), "rpmbuild {name}");
    }
    let made = Command::new("createrepo_c").arg("-q").arg(&repo).status();
    assert!(made.expect("createrepo_c (package createrepo-c) runs").success());
    repo
}

#[test]
fn a_locked_dnf_stage_installs_its_pins_offline() {
    let s = Scratch::new("locked-dnf");
    let repo = rpm_repository(&s);
    let manifest = s.manifest(
        "rpms.json",
        &json!({
            "name": "rpms",
            "stages": [{"name": "org.osbuild.dnf", "options": {
                "releasever": "1", "basearch": "x86_64", "packages": ["osbuild-app"],
                "repos": {"local": {"baseurl": format!("file://{}", repo.display()), "gpgcheck": false}}
            }}],
            "assembler": {"name": "org.osbuild.tar", "options": {"filename": "root.tar"}}
        }),
    );
    let out = run(s.osbuild().arg("lock").arg(&manifest));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let lock: Value = serde_json::from_str(&std::fs::read_to_string(s.path("rpms.lock")).unwrap()).unwrap();
    let r = &lock["stages"][0]["locked"]["repositories"][0];
    assert_eq!(r["format"], json!("rpm"));
    let names: Vec<&str> = r["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["osbuild-app", "osbuild-base"]);

    // Fetched (from the file: URL), then the repository is gone: the
    // build has only the sources, and no network.
    let sources = s.path("sources");
    let fetch = run(s.osbuild().arg("--sources").arg(&sources).arg("fetch").arg(&manifest));
    assert_eq!(fetch.code, 0, "{}", fetch.stderr);
    assert!(
        fetch.stderr.contains("an RPM repository"),
        "the unchecked chain is said: {}",
        fetch.stderr
    );
    std::fs::remove_dir_all(&repo).unwrap();
    let out_dir = s.path("out");
    let (built, listing) = build_offline(&s.store(), &sources, &manifest, &out_dir);
    assert_eq!(built.ran(), 2);
    for name in ["osbuild-app", "osbuild-base"] {
        assert!(
            listing.contains(&format!("./usr/share/{name}/hello")),
            "{name} is installed:\n{listing}"
        );
    }

    // Reproducible: two more builds, varied, give the same bytes.
    let verify = run(s
        .osbuild()
        .arg("--sources")
        .arg(&sources)
        .args(["verify", "--keep"])
        .arg(&manifest));
    assert_eq!(verify.code, 0, "{}{}", verify.stdout, verify.stderr);
    // What the chain check has to say is said once, by verify; its child
    // builds check each file's SHA256 only.
    said_once_by_verify(&verify, "an RPM repository");
    let tar = std::fs::read(out_dir.join("root.tar")).unwrap();
    assert_eq!(
        verify.stdout.trim(),
        format!("reproducible: rpms/root.tar sha256:{}", sha2_hex(&tar))
    );

    // Its SBOM names RPMs as RPMs.
    let sbom = run(s.osbuild().arg("sbom").arg(&manifest));
    assert_eq!(sbom.code, 0, "{}", sbom.stderr);
    assert!(
        sbom.stdout.contains("pkg:rpm/local/osbuild-app@1.0-1?arch=noarch"),
        "{}",
        sbom.stdout
    );
}
