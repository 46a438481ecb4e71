//! Inputs the fuzz targets found (or that were found by reading the code the
//! targets exercise), replayed through the very checks of the targets:
//! fuzz/src/lib.rs is included here. One directory per target in
//! tests/fuzz-regressions/.

use std::path::PathBuf;

#[allow(dead_code)]
#[path = "../fuzz/src/lib.rs"]
mod checks;

fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz-regressions")
        .join(target);
    let mut files: Vec<_> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries.map(|e| e.unwrap().path()).collect(),
        Err(_) => return Vec::new(),
    };
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let data = std::fs::read(&p).unwrap();
            (p, data)
        })
        .collect()
}

fn replay(target: &str, check: fn(&[u8])) {
    for (path, data) in inputs(target) {
        eprintln!("{target}: {}", path.display());
        check(&data);
    }
}

#[test]
fn manifest_regressions() {
    replay("manifest", |data| {
        if let Ok(text) = std::str::from_utf8(data) {
            checks::manifest(text);
        }
    });
}

#[test]
fn json_regressions() {
    replay("json", checks::json);
}

#[test]
fn lower_regressions() {
    replay("lower", |data| {
        if let Ok(text) = std::str::from_utf8(data) {
            checks::lower(text);
        }
    });
}

/// What the deep inputs lower to: a diagnostic at the call, or (at the limit)
/// a manifest the JSON front-end takes back.
#[test]
fn too_deep_for_a_manifest_is_a_diagnostic() {
    let lower = |name: &str| {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fuzz-regressions/lower")
            .join(name);
        let text = std::fs::read_to_string(&path).unwrap();
        osbuild::script::lower_source_with_limit(
            name,
            text,
            path.parent().unwrap().canonicalize().unwrap(),
            &[],
            checks::registry().clone(),
            checks::MAX_OPERATIONS,
        )
    };
    let message = |name: &str| match lower(name) {
        Ok(_) => panic!("{name} lowered"),
        Err(d) => d.message,
    };
    let m = message("deep-options.rhai");
    assert!(
        m.contains("they nest 131 levels of maps and arrays deep, more than the 125"),
        "{m}"
    );
    let m = message("deep-build-chain.rhai");
    assert!(m.contains("build pipelines nest too deeply"), "{m}");
    let deepest = lower("deep-options-at-the-limit.rhai").unwrap_or_else(|d| panic!("{}", checks::render(&*d)));
    let json = deepest.images[0].manifest.canonical_json();
    let node = osbuild::manifest::json::parse(&json).unwrap();
    assert_eq!(osbuild::manifest::json::depth(&node.to_value()), 128);
}

#[test]
fn lock_regressions() {
    replay("lock", checks::lock);
}
