use super::*;
use osbuild_stages::lock::{Keyring, Pin, Release, Repository};
use serde_json::json;

fn stage(name: &str, options: Value) -> Stage {
    Stage {
        name: name.into(),
        options: options.as_object().cloned().unwrap(),
    }
}

fn manifest(stages: Vec<Stage>) -> Manifest {
    Manifest {
        pipeline: Pipeline {
            stages,
            ..Default::default()
        },
        sources: None,
    }
}

fn locked(packages: &[(&str, &str)]) -> Locked {
    Locked {
        arch: "amd64".into(),
        repositories: vec![Repository {
            format: Default::default(),
            uri: None,
            suite: "bookworm".into(),
            components: vec!["main".into()],
            release: Release {
                path: "dists/bookworm/InRelease".into(),
                sha256: "1".repeat(64),
                size: Some(151_000),
                date: 1_783_764_997,
            },
            keyring: Keyring {
                path: osbuild_stages::resolve::DEBIAN_KEYRING.into(),
                sha256: "2".repeat(64),
            },
            packages: packages
                .iter()
                .map(|(name, version)| Pin {
                    name: name.to_string(),
                    version: version.to_string(),
                    arch: "amd64".into(),
                    size: 1000,
                    sha256: format!("{:0>64}", name.len()),
                    path: format!("pool/main/{name}_{version}_amd64.deb"),
                    priority: None,
                })
                .collect(),
        }],
    }
}

/// A lock for `images`, with made-up pins for each stage.
fn lock_for(images: &[(String, Manifest)]) -> Lock {
    let all = images_stages(images).unwrap();
    let mut lock = Lock {
        lock_version: LOCK_VERSION,
        inputs: String::new(),
        source_date_epoch: 1_783_764_997,
        images: BTreeMap::new(),
        stages: Vec::new(),
    };
    for (name, stages) in &all {
        for s in stages {
            if lock.stage(&s.key).is_none() {
                lock.stages.push(LockedStage {
                    key: s.key.clone(),
                    stage: s.stage.name.clone(),
                    options: s.stage.options.clone(),
                    locked: locked(&[("libc6", "2.36-9"), ("hello", "2.10-3")]),
                });
            }
        }
        lock.images
            .insert(name.clone(), stages.iter().map(|s| s.key.clone()).collect());
    }
    lock.inputs = inputs(&lock.images);
    lock
}

fn image(name: &str, extra: &[&str], hostname: &str) -> (String, Manifest) {
    (
        name.to_string(),
        manifest(vec![
            stage("org.osbuild.debootstrap", json!({"suite": "bookworm"})),
            stage("org.osbuild.hostname", json!({"hostname": hostname})),
            stage("org.osbuild.apt", json!({"packages": extra})),
        ]),
    )
}

#[test]
fn a_lock_round_trips() {
    let images = vec![image("web", &["nginx"], "web"), image("db", &["postgresql"], "db")];
    let lock = lock_for(&images);
    let text = lock.to_json();
    assert_eq!(Lock::parse(&Source::new("x.lock", text.clone())).unwrap(), lock);
    assert!(text.ends_with("}\n"));
    // Shared stages are written once: one bootstrap, two apt stages.
    assert_eq!(lock.stages.len(), 3);
    assert_eq!(lock.images["web"][0], lock.images["db"][0]);
}

/// The schema in the docs is the one the types give, and locks fit it.
#[test]
fn the_documented_schema_is_the_lock_format() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/lock.schema.json");
    let committed = std::fs::read_to_string(path).unwrap();
    assert!(
        committed == schema(),
        "docs/lock.schema.json is not what the lock types say: `osbuild lock --schema > docs/lock.schema.json`"
    );
    let schema: Value = serde_json::from_str(&committed).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let images = vec![image("web", &["nginx"], "web")];
    let lock: Value = serde_json::from_str(&lock_for(&images).to_json()).unwrap();
    let errors: Vec<String> = validator.iter_errors(&lock).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?}");
    let mut broken = lock.clone();
    broken["stages"][0]["locked"]["repositories"][0]["packages"][0]
        .as_object_mut()
        .unwrap()
        .remove("sha256");
    assert!(!validator.is_valid(&broken), "a pin without its SHA256 does not fit");
}

#[test]
fn keys_follow_package_stages_only() {
    let a = images_stages(&[image("web", &["nginx"], "one")]).unwrap();
    let b = images_stages(&[image("web", &["nginx"], "two")]).unwrap();
    assert_eq!(a, b, "a host name decides no package");
    let c = images_stages(&[image("web", &["nginx", "htop"], "one")]).unwrap();
    assert_eq!(a[0].1[0].key, c[0].1[0].key, "the bootstrap is the same");
    assert_ne!(a[0].1[1].key, c[0].1[1].key);
    // Pins in the options are not part of the key.
    let mut pinned = image("web", &["nginx"], "one");
    pinned.1.pipeline.stages[0]
        .options
        .insert("locked".into(), serde_json::to_value(locked(&[])).unwrap());
    assert_eq!(images_stages(&[pinned]).unwrap(), a);
}

#[test]
fn a_stale_lock_names_what_changed() {
    let lock = lock_for(&[image("web", &["nginx"], "web")]);
    let now = |images: &[(String, Manifest)]| lock.changes("web.lock", &images_stages(images).unwrap());
    assert!(now(&[image("web", &["nginx"], "other")]).is_empty());
    assert_eq!(
        now(&[image("web", &["nginx", "htop"], "web")]),
        ["htop is not in web.lock"]
    );
    assert_eq!(
        now(&[image("web", &[], "web")]),
        ["nginx is in web.lock but no longer asked for"]
    );
    assert_eq!(now(&[image("db", &["nginx"], "web")]), ["image db is not in web.lock"]);
    let mut other_suite = image("web", &["nginx"], "web");
    other_suite.1.pipeline.stages[0]
        .options
        .insert("suite".into(), json!("trixie"));
    assert_eq!(
        now(&[other_suite]),
        ["the suite of org.osbuild.debootstrap (image web) changed since web.lock"]
    );
    let err = lock.check("web.lock", &images_stages(&[image("web", &["htop"], "web")]).unwrap());
    assert!(matches!(err, Err(LockError::Stale { .. })));
}

#[test]
fn an_image_on_an_earlier_image_continues_its_chain() {
    let base = image("base", &["nginx"], "base");
    let id = crate::plan::tree_id(&base.1.pipeline).unwrap();
    let on_top = (
        "top".to_string(),
        Manifest {
            pipeline: Pipeline {
                base: Some(id),
                stages: vec![stage("org.osbuild.apt", json!({"packages": ["htop"]}))],
                ..Default::default()
            },
            sources: None,
        },
    );
    let alone = (
        "alone".to_string(),
        manifest(vec![stage("org.osbuild.apt", json!({"packages": ["htop"]}))]),
    );
    let all = images_stages(&[base, on_top, alone]).unwrap();
    assert_ne!(all[1].1[0].key, all[2].1[0].key, "what was installed before decides");
    let unknown = Manifest {
        pipeline: Pipeline {
            base: Some("someone-elses-tree".into()),
            stages: vec![stage("org.osbuild.apt", json!({"packages": ["htop"]}))],
            ..Default::default()
        },
        sources: None,
    };
    let err = images_stages(&[("x".into(), unknown)]).unwrap_err();
    assert!(err.to_string().contains("stored tree someone-elses-tree"), "{err}");
}

#[test]
fn mistakes_in_a_lock_are_shown_where_they_are() {
    let lock = lock_for(&[image("web", &["nginx"], "web")]);
    let mut value: Value = serde_json::from_str(&lock.to_json()).unwrap();
    value["stages"][1]["locked"]["repositories"][0]["packages"][1]["sha256"] = json!("nothex");
    value["lock_version"] = json!(7);
    let text = serde_json::to_string_pretty(&value).unwrap();
    let err = Lock::parse(&Source::new("web.lock", text.clone())).unwrap_err();
    let LockError::Invalid { errors, .. } = err else {
        panic!("{err:?}")
    };
    let places: Vec<&str> = errors
        .iter()
        .map(|e| &text[e.span.offset()..e.span.offset() + e.span.len()])
        .collect();
    assert_eq!(places, ["7", "\"nothex\""]);
    assert!(
        errors[1].message.contains("hello: not a SHA256"),
        "{}",
        errors[1].message
    );

    let text = lock.to_json().replace("\"lock_version\"", "\"lock_versoin\"");
    let err = Lock::parse(&Source::new("web.lock", text)).unwrap_err();
    assert!(err.to_string().contains("not a valid lock (1 error)"), "{err}");
}

#[test]
fn the_diff_of_two_locks_is_one_line_a_package() {
    let images = [image("web", &["nginx"], "web")];
    let old = lock_for(&images);
    assert!(make::diff(&old, &old).is_empty());
    let mut new = old.clone();
    let pins = &mut new.stages[1].locked.repositories[0].packages;
    pins[0].version = "2.36-9+deb12u1".into();
    pins.remove(1);
    pins.push(locked(&[("htop", "3.2.2-2")]).repositories[0].packages[0].clone());
    let d = make::diff(&old, &new);
    assert_eq!(d[0], "web:");
    assert!(d[1].starts_with("  + htop:amd64 3.2.2-2"), "{d:?}");
    assert!(
        d.iter()
            .any(|l| l.starts_with("  libc6:amd64: 2.36-9 (") && l.contains("→ 2.36-9+deb12u1")),
        "{d:?}"
    );
}
