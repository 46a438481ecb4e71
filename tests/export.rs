//! `osbuild export --oci`: a stored tree as an OCI image that container
//! tools (skopeo, umoci) read, in a layout directory or a real registry.

use std::process::Command;

use serde_json::Value;

use crate::cache::{manifest, osbuild_on};
use crate::support::{listing, OciRegistry, Scratch};

fn export(s: &Scratch, to: &str, extra: &[&str]) -> std::process::Output {
    osbuild_on(s, "store")
        .args(["--json", "export", "--oci", to])
        .args(extra)
        .arg("layered")
        .output()
        .unwrap()
}

fn json_of(out: &std::process::Output) -> Value {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn skopeo_inspect(args: &[&str]) -> Value {
    let out = Command::new("skopeo").arg("inspect").args(args).output().unwrap();
    assert!(out.status.success(), "skopeo: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_tree_exports_as_an_image_that_skopeo_and_umoci_read() {
    let s = Scratch::new("export-layout");
    let m = manifest(&s);
    s.build(&m, None).ok();
    let dir = s.path("image");
    let done = json_of(&export(&s, dir.to_str().unwrap(), &[]));
    assert_eq!(done["layers"], 2, "one layer per stage that changed the tree: {done}");
    let inspected = skopeo_inspect(&[&format!("oci:{}:latest", dir.display())]);
    assert_eq!(inspected["Digest"], done["digest"]);
    assert_eq!(inspected["Layers"].as_array().unwrap().len(), 2);
    assert_eq!(inspected["Architecture"], "amd64");

    // umoci applies the layers in order, whiteouts and opaque directories too.
    let bundle = s.path("bundle");
    let unpack = Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:latest", dir.display()))
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(
        unpack.status.success(),
        "umoci: {}",
        String::from_utf8_lossy(&unpack.stderr)
    );
    let tree = listing(&bundle.join("rootfs"));
    assert!(!tree.contains("./etc/gone"), "the deleted file is gone: {tree}");
    assert!(
        !tree.contains("./etc/old/a"),
        "the replaced directory hides what was in it: {tree}"
    );
    assert!(tree.contains("./etc/old/b f 644"), "{tree}");
    assert!(
        tree.contains("./usr/bin/tool f 4755 0:0"),
        "setuid and owner kept: {tree}"
    );
    assert!(tree.contains("./usr/bin/link l"), "{tree}");

    // The same tree, the same image, byte for byte.
    let again = json_of(&export(&s, s.path("again").to_str().unwrap(), &[]));
    assert_eq!(again["digest"], done["digest"]);

    // A directory with something in it is not written into.
    std::fs::create_dir_all(s.path("full")).unwrap();
    s.write("full/keep", "mine");
    let refused = export(&s, s.path("full").to_str().unwrap(), &[]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("is not empty"));
    assert_eq!(std::fs::read_dir(s.path("full")).unwrap().count(), 1);
    assert!(
        !std::fs::read_dir(&s.dir)
            .unwrap()
            .any(|e| e.unwrap().file_name().to_string_lossy().contains("partial")),
        "no half layout left"
    );
}

#[test]
fn a_tree_exports_to_a_registry_under_a_tag() {
    let s = Scratch::new("export-registry");
    let registry = OciRegistry::start(&s);
    let m = manifest(&s);
    s.build(&m, None).ok();
    let url = registry.url("images/layered");
    let done = json_of(&export(&s, &url, &["--tag", "v1"]));
    let inspected = skopeo_inspect(&[
        "--tls-verify=false",
        &format!("docker://{}/images/layered:v1", registry.address),
    ]);
    assert_eq!(inspected["Digest"], done["digest"]);
    assert_eq!(inspected["Layers"].as_array().unwrap().len(), 2);
    assert_eq!(registry.tags("images/layered"), ["v1"]);
    let bad = export(&s, &url, &["--tag", "-no"]);
    assert_eq!(bad.status.code(), Some(2));
}
