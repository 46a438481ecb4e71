//! The one manifest type every front-end ends in, its canonical JSON, and stage ids.
//!
//! A [`Pipeline`] is the seed's format: `{"name", "build", "base", "stages",
//! "assembler", "assembly_base"}`. Everything after this module (plan, executor, store, sandbox)
//! works on these types and knows nothing of JSON files or Rhai scripts.

pub mod json;
mod parse;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

pub use parse::{parse_manifest, Located, ManifestSource, PipelineSpans, StageSpans};

/// One stage or an assembler: a name and its options object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    pub name: String,
    #[serde(default)]
    pub options: Map<String, Value>,
}

/// A pipeline: stages run in order on one tree, then an optional assembler.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pipeline {
    /// Names the finished tree in the store, for reuse as a `base`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The pipeline whose tree is the read-only build root of this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<Box<Pipeline>>,
    /// osbuild v1's build `runner`: recorded, not used (our sandbox sets up
    /// every build root the same way) and not part of any id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner: Option<String>,
    /// A stored tree (an id or a name) to start from instead of an empty one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    /// The time every stage and the assembler build for (seconds since 1970):
    /// their `SOURCE_DATE_EPOCH`, and no file of a layer is newer. A lock sets
    /// it; part of every id of the pipeline when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_epoch: Option<u64>,
    #[serde(default)]
    pub stages: Vec<Stage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assembler: Option<Stage>,
    /// How many of this pipeline's own stages make the tree its assembler
    /// builds its image on (see `osbuild_stages::assembly`): 1 to the number
    /// of stages, only with an assembler. Part of the assembler's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assembly_base: Option<usize>,
}

impl Pipeline {
    /// How deeply this pipeline's canonical JSON nests arrays and objects: a
    /// manifest deeper than [`json::MAX_DEPTH`] is not read back.
    pub fn json_depth(&self) -> usize {
        // A stage object holds its options object: `{"name", "options": {...}}`.
        let stage = |s: &Stage| 2 + s.options.values().map(json::depth).max().unwrap_or(0);
        let mut deepest = 0;
        let mut level = 1;
        let mut p = self;
        loop {
            // `stages` is always written, an array of stage objects.
            let stages = 1 + p.stages.iter().map(stage).max().unwrap_or(0);
            let own = stages.max(p.assembler.as_ref().map_or(0, stage));
            deepest = deepest.max(level + own);
            match &p.build {
                Some(build) => {
                    p = build;
                    level += 1;
                }
                None => return deepest,
            }
        }
    }
}

/// A whole manifest: the pipeline, plus osbuild v1's `sources`, kept verbatim.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Manifest {
    pub pipeline: Pipeline,
    pub sources: Option<Map<String, Value>>,
}

impl Manifest {
    /// The canonical JSON: the seed's format (with `sources` when present), keys
    /// sorted, no insignificant whitespace. The same manifest always gives the same bytes.
    pub fn canonical_json(&self) -> String {
        let mut value = serde_json::to_value(&self.pipeline).expect("a pipeline always serializes");
        if let (Some(sources), Value::Object(map)) = (&self.sources, &mut value) {
            map.insert("sources".into(), Value::Object(sources.clone()));
        }
        // serde_json's Map is a BTreeMap (no `preserve_order`), so keys come out sorted.
        serde_json::to_string(&value).expect("a JSON value always serializes")
    }

    /// The canonical JSON, indented for people (same key order).
    pub fn pretty_json(&self) -> String {
        let value: Value = serde_json::from_str(&self.canonical_json()).expect("canonical JSON parses");
        serde_json::to_string_pretty(&value).expect("a JSON value always serializes")
    }
}

/// A content address: the hex sha256 of a stage (and everything before it).
pub type Id = String;

/// The id of a stage: sha256 over the canonical JSON of
/// `{"build": <build pipeline id or null>, "name": <stage name>, "options": <options>,
///   "parent": <previous stage's id, the base's id, or null>}`, with
/// `"source_epoch": <seconds>` added when the pipeline has one (so ids of
/// pipelines without one are what they always were).
///
/// Assemblers use the same recipe, with the pipeline's id as `parent` (see
/// [`assembler_id`]).
pub fn stage_id(build: Option<&str>, stage: &Stage, parent: Option<&str>, source_epoch: Option<u64>) -> Id {
    let doc = id_doc(
        build,
        &stage.name,
        Value::Object(stage.options.clone()),
        parent,
        source_epoch,
    );
    digest(doc)
}

/// An assembler's id: [`stage_id`]'s recipe, with `"assembly_base": <the
/// tree id after the pipeline's first K stages>` added when the pipeline
/// has an `assembly_base` (ids of the others are what they always were).
pub fn assembler_id(
    build: Option<&str>,
    assembler: &Stage,
    parent: Option<&str>,
    source_epoch: Option<u64>,
    assembly_base: Option<&str>,
) -> Id {
    let mut doc = id_doc(
        build,
        &assembler.name,
        Value::Object(assembler.options.clone()),
        parent,
        source_epoch,
    );
    if let Some(base) = assembly_base {
        doc.insert("assembly_base".into(), Value::String(base.into()));
    }
    digest(doc)
}

/// The id of an assembler's reusable work for the prefix tree `parent` (see
/// `osbuild_stages::assembly`): [`stage_id`]'s recipe over its prefix
/// options, with `"prefix": true` added, so it is never an image's id.
pub fn prefix_id(
    build: Option<&str>,
    name: &str,
    options: &Value,
    parent: Option<&str>,
    source_epoch: Option<u64>,
) -> Id {
    let mut doc = id_doc(build, name, options.clone(), parent, source_epoch);
    doc.insert("prefix".into(), Value::Bool(true));
    digest(doc)
}

fn id_doc(
    build: Option<&str>,
    name: &str,
    options: Value,
    parent: Option<&str>,
    source_epoch: Option<u64>,
) -> Map<String, Value> {
    let mut doc = Map::new();
    doc.insert("build".into(), build.map_or(Value::Null, |b| Value::String(b.into())));
    doc.insert("name".into(), Value::String(name.into()));
    doc.insert("options".into(), options);
    doc.insert("parent".into(), parent.map_or(Value::Null, |p| Value::String(p.into())));
    if let Some(epoch) = source_epoch {
        doc.insert("source_epoch".into(), Value::from(epoch));
    }
    doc
}

/// The hex sha256 of a document's canonical JSON.
fn digest(doc: Map<String, Value>) -> Id {
    let canonical = serde_json::to_string(&Value::Object(doc)).expect("a JSON value always serializes");
    hex(&Sha256::digest(canonical.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether a string has the shape of an id (64 lowercase hex digits).
pub fn is_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stage(name: &str, options: Value) -> Stage {
        Stage {
            name: name.into(),
            options: options.as_object().cloned().unwrap_or_default(),
        }
    }

    /// The recipe is a contract: stored trees are found by these ids. If this
    /// test has to change, every store in the world is invalidated.
    #[test]
    fn stage_id_test_vector() {
        let first = stage_id(None, &stage("org.osbuild.noop", json!({})), None, None);
        assert_eq!(
            first,
            hex(&Sha256::digest(
                br#"{"build":null,"name":"org.osbuild.noop","options":{},"parent":null}"#
            ))
        );
        assert_eq!(
            first,
            "b5018cd90fd26a5acd22ddb4ca8eabdb9e17d8126764786124c31eeefcf095df"
        );
        let second = stage_id(
            Some("ab"),
            &stage("org.osbuild.hostname", json!({"hostname": "h"})),
            Some(&first),
            None,
        );
        assert_eq!(
            second,
            "057c73d9ce891a2e92dd213d8d4a9b9853c998d5e4d52b039d24b4de5e159199"
        );
    }

    /// Numbers as a manifest's parser reads them, then as the id recipe writes them.
    /// Cargo unifies features: a dependency that turns on serde_json's
    /// `arbitrary_precision` (numbers kept as their text) or `float_roundtrip`
    /// (another float parser) would change these bytes, and so every id of a stage
    /// with such options. This vector catches that.
    #[test]
    fn stage_id_test_vector_with_numbers() {
        let text = r#"{"f": 0.1, "one_float": 1.0, "one": 1, "neg_zero": -0.0, "e20": 1e20,
            "max_u64": 18446744073709551615, "past_u64": 18446744073709551616,
            "min_i64": -9223372036854775808, "tiny": 5e-324, "long": 3.14159265358979323846264,
            "hard": 77946897817735677e-110, "list": [1.5, -2, 0.0, 2E+3]}"#;
        let options = json::parse(text).unwrap().to_value();
        let s = stage("org.osbuild.noop", options);
        // "hard" reads as serde_json's default parser has it, one ulp above the
        // correctly rounded 7.794689781773567e-94 that `float_roundtrip` would give.
        let expected = concat!(
            r#"{"build":null,"name":"org.osbuild.noop","options":{"e20":1e+20,"f":0.1,"hard":7.794689781773568e-94,"#,
            r#""list":[1.5,-2,0.0,2000.0],"long":3.141592653589793,"max_u64":18446744073709551615,"#,
            r#""min_i64":-9223372036854775808,"neg_zero":-0.0,"one":1,"one_float":1.0,"#,
            r#""past_u64":1.8446744073709552e+19,"tiny":5e-324},"parent":null}"#
        );
        let id = stage_id(None, &s, None, None);
        assert_eq!(id, hex(&Sha256::digest(expected.as_bytes())), "canonical form changed");
        assert_eq!(id, "995221b3ee49951921530ceb3d917586bbaf9c22f85668afdd7349338577712d");
        // 1 and 1.0 are different options, so different stages.
        assert_ne!(
            stage_id(None, &stage("n", json!({"a": 1})), None, None),
            stage_id(None, &stage("n", json!({"a": 1.0})), None, None)
        );
        // Out of f64's range: rejected, not kept as text or turned into infinity.
        assert!(json::parse(r#"{"a": 1e400}"#).is_err());
        assert!(json::parse(r#"{"a": -1e400}"#).is_err());
    }

    #[test]
    fn ids_depend_on_everything_before() {
        let s = stage("org.osbuild.noop", json!({"a": 1}));
        let a = stage_id(None, &s, None, None);
        assert_ne!(a, stage_id(Some("b"), &s, None, None));
        assert_ne!(a, stage_id(None, &s, Some("p"), None));
        assert_ne!(
            a,
            stage_id(None, &stage("org.osbuild.noop", json!({"a": 2})), None, None)
        );
        // The time a pipeline builds for is part of what it makes.
        let at = stage_id(None, &s, None, Some(1_700_000_000));
        assert_ne!(a, at);
        assert_ne!(at, stage_id(None, &s, None, Some(1_700_000_001)));
        assert_eq!(
            at,
            hex(&Sha256::digest(
                br#"{"build":null,"name":"org.osbuild.noop","options":{"a":1},"parent":null,"source_epoch":1700000000}"#
            ))
        );
        // Key order in the input does not matter.
        let x = stage("n", json!({"a": 1, "b": 2}));
        let y = stage("n", serde_json::from_str(r#"{"b": 2, "a": 1}"#).unwrap());
        assert_eq!(stage_id(None, &x, None, None), stage_id(None, &y, None, None));
        assert!(is_id(&a));
    }

    /// An assembler's id names its assembly base only when the pipeline has
    /// one; without, it is the stage recipe's (so every stored image stays).
    #[test]
    fn assembler_ids_name_their_assembly_base_only_when_there_is_one() {
        let tar = stage("org.osbuild.tar", json!({"filename": "a.tar"}));
        let parent = "p".repeat(64);
        let plain = assembler_id(Some("b"), &tar, Some(&parent), Some(7), None);
        assert_eq!(plain, stage_id(Some("b"), &tar, Some(&parent), Some(7)));
        let doc = format!(
            r#"{{"build":"b","name":"org.osbuild.tar","options":{{"filename":"a.tar"}},"parent":"{parent}","source_epoch":7}}"#
        );
        assert_eq!(plain, hex(&Sha256::digest(doc.as_bytes())));
        let on = assembler_id(Some("b"), &tar, Some(&parent), Some(7), Some("k"));
        let doc = format!(
            r#"{{"assembly_base":"k","build":"b","name":"org.osbuild.tar","options":{{"filename":"a.tar"}},"parent":"{parent}","source_epoch":7}}"#
        );
        assert_eq!(on, hex(&Sha256::digest(doc.as_bytes())));
        assert_ne!(on, assembler_id(Some("b"), &tar, Some(&parent), Some(7), Some("l")));
    }

    /// A prefix object's id can never be an image's: the `prefix` member.
    #[test]
    fn prefix_ids_are_their_own() {
        let options = json!({"size": 1});
        let id = prefix_id(None, "org.osbuild.qemu", &options, Some("t"), None);
        assert_eq!(
            id,
            hex(&Sha256::digest(
                br#"{"build":null,"name":"org.osbuild.qemu","options":{"size":1},"parent":"t","prefix":true}"#
            ))
        );
        let as_image = stage_id(None, &stage("org.osbuild.qemu", options), Some("t"), None);
        assert_ne!(id, as_image);
    }

    #[test]
    fn json_depth_is_the_depth_of_the_canonical_json() {
        let leaf = Pipeline {
            stages: vec![stage("a", json!({"x": [[1]], "y": 2}))],
            ..Default::default()
        };
        let cases = [
            Pipeline::default(),
            Pipeline {
                assembler: Some(stage("t", json!({}))),
                ..Default::default()
            },
            Pipeline {
                assembler: Some(stage("t", json!({"a": {"b": {"c": {}}}}))),
                ..Default::default()
            },
            leaf.clone(),
            Pipeline {
                build: Some(Box::new(leaf.clone())),
                ..Default::default()
            },
            Pipeline {
                build: Some(Box::new(Pipeline {
                    build: Some(Box::new(leaf.clone())),
                    ..Default::default()
                })),
                stages: vec![stage("b", json!({}))],
                ..Default::default()
            },
        ];
        for p in cases {
            let m = Manifest {
                pipeline: p.clone(),
                sources: None,
            };
            let doc: Value = serde_json::from_str(&m.canonical_json()).unwrap();
            assert_eq!(p.json_depth(), json::depth(&doc), "{}", m.canonical_json());
        }
    }

    #[test]
    fn canonical_json_is_sorted_and_compact() {
        let m = Manifest {
            pipeline: Pipeline {
                name: Some("img".into()),
                stages: vec![stage("org.osbuild.hostname", json!({"hostname": "h"}))],
                ..Default::default()
            },
            sources: None,
        };
        assert_eq!(
            m.canonical_json(),
            r#"{"name":"img","stages":[{"name":"org.osbuild.hostname","options":{"hostname":"h"}}]}"#
        );
        let mut with = m.clone();
        with.pipeline.assembly_base = Some(1);
        assert_eq!(
            with.canonical_json(),
            r#"{"assembly_base":1,"name":"img","stages":[{"name":"org.osbuild.hostname","options":{"hostname":"h"}}]}"#
        );
    }
}
