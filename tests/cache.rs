//! The shared cache: stores on "different machines" (two scratch stores)
//! share work through a real OCI registry (Debian's docker-registry).

use serde_json::{json, Value};

use crate::support::{listing, untar, OciRegistry, Scratch};

const REPO: &str = "osbuild/cache";

/// A tree with every kind of change a layer holds: files, a deletion (a
/// whiteout), a directory replaced (opaque), a symlink, a hard link, a
/// setuid file, a file capability.
pub(crate) fn manifest(s: &Scratch) -> std::path::PathBuf {
    s.stage(
        "stage",
        "test.base",
        "#!/bin/sh\nset -e\nt=/run/osbuild/tree\nmkdir -p $t/etc/old $t/usr/bin\necho a > $t/etc/old/a\n\
         echo gone > $t/etc/gone\necho x > $t/usr/bin/tool\nchmod 4755 $t/usr/bin/tool\n",
        None,
    );
    s.stage(
        "stage",
        "test.change",
        "#!/bin/sh\nset -e\nt=/run/osbuild/tree\nrm $t/etc/gone\nrm -r $t/etc/old\nmkdir $t/etc/old\n\
         echo b > $t/etc/old/b\nln -s ../etc/old/b $t/usr/bin/link\nln $t/usr/bin/tool $t/usr/bin/again\n\
         setfattr -n security.capability -v 0x0100000200200000000000000000000000000000 $t/usr/bin/again\n",
        None,
    );
    s.manifest(
        "m.json",
        &json!({
            "name": "layered",
            "stages": [{"name": "test.base"}, {"name": "test.change"}],
            "assembler": {"name": "org.osbuild.tar", "options": {"filename": "tree.tar"}}
        }),
    )
}

/// `osbuild` on the store `s/<store>` (one machine's) with the test's libdir.
pub(crate) fn osbuild_on(s: &Scratch, store: &str) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_osbuild"));
    cmd.arg("--store").arg(s.path(store)).arg("--libdir").arg(s.libdir());
    cmd
}

fn build_with(s: &Scratch, store: &str, cache: &str, manifest: &std::path::Path, out: &str) -> crate::support::Build {
    let out = osbuild_on(s, store)
        .arg("--cache")
        .arg(cache)
        .args(["build", "--json"])
        .arg(manifest)
        .arg("-o")
        .arg(s.path(out))
        .output()
        .unwrap();
    crate::support::Build::from(out)
}

fn statuses(b: &crate::support::Build) -> Vec<String> {
    b.stages().into_iter().map(|(_, status)| status).collect()
}

#[test]
fn a_fresh_store_with_a_warm_cache_builds_nothing_and_gets_the_same_tree() {
    let s = Scratch::new("cache-share");
    let registry = OciRegistry::start(&s);
    let cache = registry.url(REPO);
    let m = manifest(&s);
    let first = build_with(&s, "a", &cache, &m, "out-a").ok();
    assert_eq!(statuses(&first), ["success"; 3]);
    // Every object is in the registry, tagged by its id.
    let mut sorted = first.ids();
    sorted.sort();
    assert_eq!(registry.tags(REPO), sorted);

    let second = build_with(&s, "b", &cache, &m, "out-b").ok();
    assert_eq!(statuses(&second), ["pulled"; 3], "{}", second.stderr);
    let end = second.events.iter().find(|e| e["type"] == "build-end").unwrap();
    assert_eq!((end["built"].as_u64(), end["pulled"].as_u64()), (Some(0), Some(3)));
    s.assert_same_file("out-a/tree.tar", "out-b/tree.tar");
    // The pulled layers are the pushed ones: the store checks them by content hash.
    let verify = osbuild_on(&s, "b").args(["store", "verify"]).output().unwrap();
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stderr));
    // A build of the tree from those layers: whiteouts, opaque dirs, links
    // and attributes came through.
    untar(&s.path("out-b/tree.tar"), &s.path("x"));
    let tree = listing(&s.path("x"));
    assert!(!tree.contains("./etc/gone") && !tree.contains("./etc/old/a"), "{tree}");
    assert!(
        tree.contains("./etc/old/b f") && tree.contains("./usr/bin/tool f 4755"),
        "{tree}"
    );
    let caps = std::process::Command::new("getfattr")
        .args(["-n", "security.capability", "--only-values"])
        .arg(s.path("x/usr/bin/tool"))
        .output()
        .unwrap();
    assert!(
        !caps.stdout.is_empty(),
        "the capability is on both names of the hard link"
    );

    // A stage after the shared ones: the prefix is pulled, one stage runs.
    let mut more: Value = serde_json::from_str(&std::fs::read_to_string(&m).unwrap()).unwrap();
    more["stages"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "org.osbuild.hostname", "options": {"hostname": "c"}}));
    let m2 = s.manifest("m2.json", &more);
    let third = build_with(&s, "c", &cache, &m2, "out-c").ok();
    assert_eq!(statuses(&third), ["pulled", "pulled", "success", "success"]);
}

#[test]
fn concurrent_builds_push_the_same_objects_safely() {
    let s = Scratch::new("cache-race");
    let registry = OciRegistry::start(&s);
    let cache = registry.url(REPO);
    let m = manifest(&s);
    let builds: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|store| {
            osbuild_on(&s, store)
                .arg("--cache")
                .arg(&cache)
                .args(["build", "--json"])
                .arg(&m)
                .arg("-o")
                .arg(s.path(&format!("out-{store}")))
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in builds {
        let b = crate::support::Build::from(child.wait_with_output().unwrap()).ok();
        assert!(!b.stderr.contains("warning"), "{}", b.stderr);
    }
    let fresh = build_with(&s, "d", &cache, &m, "out-d").ok();
    assert_eq!(statuses(&fresh), ["pulled"; 3], "{}", fresh.stderr);
    s.assert_same_file("out-a/tree.tar", "out-d/tree.tar");
}

#[test]
fn an_object_that_fails_its_check_is_built_instead() {
    let s = Scratch::new("cache-forged");
    let registry = OciRegistry::start(&s);
    let cache = registry.url(REPO);
    let m = manifest(&s);
    let first = build_with(&s, "a", &cache, &m, "out-a").ok();
    let ids = first.ids();
    // Tag the second stage's object as the first's: its metadata names
    // another id, which the pull refuses.
    let accept = "application/vnd.oci.image.manifest.v1+json";
    let url = |tag: &str| format!("http://{}/v2/{REPO}/manifests/{tag}", registry.address);
    let body = ureq::get(&url(&ids[1]))
        .header("Accept", accept)
        .call()
        .unwrap()
        .body_mut()
        .read_to_vec()
        .unwrap();
    ureq::put(&url(&ids[0]))
        .header("Content-Type", accept)
        .send(&body[..])
        .unwrap();
    let second = build_with(&s, "b", &cache, &m, "out-b").ok();
    assert_eq!(statuses(&second), ["success", "pulled", "pulled"], "{}", second.stderr);
    assert!(
        second.stdout.contains("is about another object"),
        "the refusal is said: {}",
        second.stdout
    );
    s.assert_same_file("out-a/tree.tar", "out-b/tree.tar");
}

#[test]
fn an_unreachable_cache_is_warned_about_once_and_the_build_goes_on() {
    let s = Scratch::new("cache-down");
    let registry = OciRegistry::start(&s);
    let cache = registry.url(REPO);
    drop(registry);
    let m = manifest(&s);
    let b = build_with(&s, "a", &cache, &m, "out").ok();
    assert_eq!(statuses(&b), ["success"; 3]);
    let warnings: Vec<&Value> = b.events.iter().filter(|e| e["type"] == "warning").collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0]["text"]
            .as_str()
            .unwrap()
            .contains("is not used for the rest of this build"),
        "{warnings:?}"
    );
}

#[test]
fn a_cache_that_is_not_an_oci_address_is_refused_before_anything_runs() {
    let s = Scratch::new("cache-url");
    let bad = s
        .osbuild()
        .args(["build", "--cache", "registry:5000/x"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("oci://HOST[:PORT]/REPOSITORY"));
}

#[test]
fn run_j_children_share_the_cache_too() {
    let s = Scratch::new("cache-run-j");
    manifest(&s); // its stages
    let script = s.write(
        "two.rhai",
        r#"for name in ["a", "b"] {
    let p = pipeline(name);
    p.stage("test.base", #{});
    p.hostname(name);
    p.assembler("org.osbuild.tar", #{ filename: name + ".tar" });
    emit(p);
}
"#,
    );
    let registry = OciRegistry::start(&s);
    let cache = registry.url(REPO);
    let run = |store: &str, out: &str| {
        let out = osbuild_on(&s, store)
            .args(["--json", "--cache", &cache, "run", "-j", "2", "-o"])
            .arg(s.path(out))
            .arg(&script)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        crate::support::Build::from(out)
    };
    let first = run("a", "out-a");
    assert_eq!(
        first.ran(),
        5,
        "the shared stage once, each image's two: {:?}",
        first.stages()
    );
    let second = run("b", "out-b");
    // Nothing runs: each image's child pulls what it needs; the stage both
    // share is pulled by both, or by one while the other finds it stored.
    let statuses: Vec<String> = statuses(&second);
    assert_eq!(statuses.len(), 6, "{statuses:?}");
    let cached = statuses.iter().filter(|s| *s == "cached").count();
    assert!(
        cached <= 1 && statuses.iter().all(|s| s == "pulled" || s == "cached"),
        "{statuses:?}"
    );
    for image in ["a", "b"] {
        s.assert_same_file(
            &format!("out-a/{image}/{image}.tar"),
            &format!("out-b/{image}/{image}.tar"),
        );
    }
    // Pulled images are handed over too: the second store keeps none.
    let images_kept = std::fs::read_dir(s.path("b/objects"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().join("output").exists())
        .count();
    assert_eq!(images_kept, 0);
    // The images were handed over, not stored; their logs were kept.
    let logs: Vec<String> = std::fs::read_dir(s.path("a/logs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(logs.iter().filter(|l| l.ends_with(".log")).count(), 2, "{logs:?}");
}

#[test]
fn a_registry_that_wants_a_login_gets_the_users_docker_credentials() {
    let s = Scratch::new("cache-login");
    // bcrypt of "secret", as `htpasswd -B -C 4` writes it (the lowest
    // cost: the registry checks it on every request).
    let hash = "$2b$04$sFxOeVkHdSsRVFWswgGr7uu8.KHQEjha.Utla74lm8uj3nB7poV/y";
    let registry = OciRegistry::start_with_login(&s, "osbuild", hash, "secret");
    let cache = registry.url(REPO);
    let m = manifest(&s);
    let build = |store: &str, out: &str, docker: &std::path::Path| {
        let out = osbuild_on(&s, store)
            .env("DOCKER_CONFIG", docker)
            .args(["--cache", &cache, "build", "--json"])
            .arg(&m)
            .arg("-o")
            .arg(s.path(out))
            .output()
            .unwrap();
        crate::support::Build::from(out).ok()
    };
    // No credentials: refused, warned about once, built anyway.
    std::fs::create_dir_all(s.path("nobody")).unwrap();
    let anonymous = build("a", "out-a", &s.path("nobody"));
    let warnings: Vec<&Value> = anonymous.events.iter().filter(|e| e["type"] == "warning").collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(registry.tags(REPO).is_empty());
    // The user's Docker configuration, as `docker login` writes it.
    let auth = crate::support::base64(b"osbuild:secret");
    s.write(
        "docker/config.json",
        &json!({"auths": {registry.address.clone(): {"auth": auth}}}).to_string(),
    );
    let pushed = build("b", "out-b", &s.path("docker"));
    assert!(!pushed.stdout.contains("\"warning\""), "{}", pushed.stdout);
    assert_eq!(registry.tags(REPO).len(), 3);
    let pulled = build("c", "out-c", &s.path("docker"));
    assert_eq!(statuses(&pulled), ["pulled"; 3]);
}
