//! From JSON text to a [`Manifest`], remembering where every stage came from.
//!
//! Structural mistakes (wrong types, unknown keys, a missing stage name) are all
//! collected, each with the span of the offending bytes; stage names and options
//! are checked later against the stage registry, using the spans kept here.

use std::ops::Range;

use osbuild_stages::PathSegment;
use serde_json::{Map, Value};

use super::json::{self, Member, Node, NodeValue};
use super::{Manifest, Pipeline, Stage};
use crate::diagnostic::{suggest, InvalidInput, Source, SpannedError};

/// A parsed manifest with the source it came from and where each stage is in it.
#[derive(Debug)]
pub struct Located {
    pub manifest: Manifest,
    pub source: ManifestSource,
    pub spans: PipelineSpans,
}

/// The text of a manifest and its span-annotated JSON tree.
#[derive(Debug)]
pub struct ManifestSource {
    pub source: Source,
    pub root: Node,
}

/// Where a pipeline's parts are, mirroring [`Pipeline`].
#[derive(Debug, Default)]
pub struct PipelineSpans {
    pub build: Option<Box<PipelineSpans>>,
    pub name: Option<Range<usize>>,
    pub base: Option<Range<usize>>,
    pub stages: Vec<StageSpans>,
    pub assembler: Option<StageSpans>,
    pub assembly_base: Option<Range<usize>>,
}

/// Where one stage is: its name, and the path from the root to its options.
#[derive(Debug)]
pub struct StageSpans {
    pub whole: Range<usize>,
    pub name: Range<usize>,
    /// Path to the `options` object; when the stage has none, to the stage itself.
    pub options: Vec<PathSegment>,
}

/// Parses a manifest in the seed's format or osbuild's v1 format.
pub fn parse_manifest(source: Source) -> Result<Located, InvalidInput> {
    let root = match json::parse(&source.text) {
        Ok(root) => root,
        Err(e) => {
            return Err(InvalidInput {
                name: source.name.clone(),
                errors: vec![source.error(e.span, e.message).label("not valid JSON")],
            })
        }
    };
    let mut walker = Walker {
        source: &source,
        errors: Vec::new(),
    };
    let parsed = walker.manifest(&root);
    match parsed {
        Some((manifest, spans)) if walker.errors.is_empty() => Ok(Located {
            manifest,
            spans,
            source: ManifestSource { source, root },
        }),
        _ => Err(InvalidInput {
            name: source.name.clone(),
            errors: walker.errors,
        }),
    }
}

struct Walker<'a> {
    source: &'a Source,
    errors: Vec<SpannedError>,
}

const SEED_KEYS: &[&str] = &[
    "name",
    "build",
    "runner",
    "base",
    "source_epoch",
    "stages",
    "assembler",
    "assembly_base",
];
/// The top level of the seed's format may list a locked manifest's files.
const SEED_TOP_KEYS: &[&str] = &[
    "name",
    "build",
    "runner",
    "base",
    "source_epoch",
    "stages",
    "assembler",
    "assembly_base",
    "sources",
];
const V1_KEYS: &[&str] = &["pipeline", "sources"];
const V1_PIPELINE_KEYS: &[&str] = &["build", "stages", "assembler"];
const V1_BUILD_KEYS: &[&str] = &["pipeline", "runner"];
const STAGE_KEYS: &[&str] = &["name", "options"];

impl Walker<'_> {
    fn error(&mut self, span: Range<usize>, message: impl Into<String>, label: &str, help: Option<String>) {
        let err = self.source.error(span, message).label(label).maybe_help(help);
        self.errors.push(err);
    }

    fn manifest(&mut self, root: &Node) -> Option<(Manifest, PipelineSpans)> {
        let members = self.object(root, "a manifest")?;
        let path = Vec::new();
        if members.iter().any(|m| m.key == "pipeline") {
            self.keys(members, V1_KEYS, "osbuild's v1 manifest format");
            let sources = match root.member("sources") {
                Some(m) => self.object(&m.value, "`sources`").map(|_| to_map(&m.value)),
                None => None,
            };
            let pipeline = root.member("pipeline").expect("checked above");
            let (pipeline, spans) = self.v1_pipeline(&pipeline.value, child(&path, "pipeline"))?;
            Some((Manifest { pipeline, sources }, spans))
        } else {
            // A locked manifest lists its pinned files as `sources`, as v1 does.
            let sources = match root.member("sources") {
                Some(m) => self.object(&m.value, "`sources`").map(|_| to_map(&m.value)),
                None => None,
            };
            let (pipeline, spans) = self.pipeline(root, path)?;
            Some((Manifest { pipeline, sources }, spans))
        }
    }

    /// The seed's format: `name`, `build`, `base`, `stages`, `assembler`.
    fn pipeline(&mut self, node: &Node, path: Vec<PathSegment>) -> Option<(Pipeline, PipelineSpans)> {
        let members = self.object(node, "a pipeline")?;
        let keys = if path.is_empty() { SEED_TOP_KEYS } else { SEED_KEYS };
        self.keys(members, keys, "a pipeline");
        let mut pipeline = Pipeline::default();
        let mut spans = PipelineSpans::default();
        pipeline.name = self.optional_string(node, "name");
        spans.name = node.member("name").map(|m| m.value.span.clone());
        pipeline.runner = self.optional_string(node, "runner");
        pipeline.base = self.optional_string(node, "base");
        spans.base = node.member("base").map(|m| m.value.span.clone());
        pipeline.source_epoch = self.optional_seconds(node, "source_epoch");
        if let Some(build) = node.member("build") {
            let (b, s) = self.pipeline(&build.value, child(&path, "build"))?;
            pipeline.build = Some(Box::new(b));
            spans.build = Some(Box::new(s));
        }
        self.stages_and_assembler(node, &path, &mut pipeline, &mut spans);
        pipeline.assembly_base = self.assembly_base(node, &pipeline);
        spans.assembly_base = node.member("assembly_base").map(|m| m.value.span.clone());
        Some((pipeline, spans))
    }

    /// `assembly_base`: how many of the pipeline's stages make the tree its
    /// assembler builds on, so a whole number of them, with an assembler.
    fn assembly_base(&mut self, node: &Node, pipeline: &Pipeline) -> Option<usize> {
        let member = node.member("assembly_base")?;
        let stages = pipeline.stages.len();
        let problem = match &member.value.value {
            NodeValue::Number(n) => match n.as_u64() {
                None => format!("`assembly_base` must be a whole number of stages, not {n}"),
                Some(_) if pipeline.assembler.is_none() => {
                    "`assembly_base` is only for a pipeline with an assembler".to_string()
                }
                Some(0) => "`assembly_base` must be at least 1 stage".to_string(),
                Some(k) if k > stages as u64 => {
                    format!("`assembly_base` is {k} stages, but the pipeline has {stages}")
                }
                Some(k) => return Some(k as usize),
            },
            _ => {
                self.wrong_type(&member.value, "`assembly_base`", "a whole number of stages");
                return None;
            }
        };
        let help = match stages {
            0 => "it counts the pipeline's first stages the assembler builds its image on, and it has none".to_string(),
            _ => format!("it counts the pipeline's first stages the assembler builds its image on: 1 to {stages}"),
        };
        self.error(member.value.span.clone(), problem, "not an assembly base", Some(help));
        None
    }

    /// osbuild's v1 format: `{"build": {"pipeline", "runner"}, "stages", "assembler"}`.
    fn v1_pipeline(&mut self, node: &Node, path: Vec<PathSegment>) -> Option<(Pipeline, PipelineSpans)> {
        let members = self.object(node, "`pipeline`")?;
        self.keys(members, V1_PIPELINE_KEYS, "a v1 pipeline");
        let mut pipeline = Pipeline::default();
        let mut spans = PipelineSpans::default();
        if let Some(build) = node.member("build") {
            let build_members = self.object(&build.value, "a v1 build")?;
            self.keys(build_members, V1_BUILD_KEYS, "a v1 build");
            let build_path = child(&path, "build");
            match build.value.member("pipeline") {
                Some(inner) => {
                    let (mut b, s) = self.v1_pipeline(&inner.value, child(&build_path, "pipeline"))?;
                    b.runner = self.optional_string(&build.value, "runner");
                    pipeline.build = Some(Box::new(b));
                    spans.build = Some(Box::new(s));
                }
                None => self.error(
                    build.key_span.clone(),
                    "a v1 build has no `pipeline`",
                    "this build",
                    Some("write it as {\"pipeline\": {...}, \"runner\": \"...\"}".into()),
                ),
            }
        }
        self.stages_and_assembler(node, &path, &mut pipeline, &mut spans);
        Some((pipeline, spans))
    }

    fn stages_and_assembler(
        &mut self,
        node: &Node,
        path: &[PathSegment],
        pipeline: &mut Pipeline,
        spans: &mut PipelineSpans,
    ) {
        if let Some(stages) = node.member("stages") {
            let stages_path = child(path, "stages");
            if let NodeValue::Array(items) = &stages.value.value {
                for (i, item) in items.iter().enumerate() {
                    let mut item_path = stages_path.clone();
                    item_path.push(PathSegment::Index(i));
                    if let Some((stage, span)) = self.stage(item, item_path, "a stage") {
                        pipeline.stages.push(stage);
                        spans.stages.push(span);
                    }
                }
            } else {
                self.wrong_type(&stages.value, "`stages`", "an array of stages");
            }
        }
        if let Some(assembler) = node.member("assembler") {
            if let Some((stage, span)) = self.stage(&assembler.value, child(path, "assembler"), "an assembler") {
                pipeline.assembler = Some(stage);
                spans.assembler = Some(span);
            }
        }
    }

    fn stage(&mut self, node: &Node, path: Vec<PathSegment>, what: &str) -> Option<(Stage, StageSpans)> {
        let members = self.object(node, what)?;
        self.keys(members, STAGE_KEYS, what);
        let name = match node.member("name") {
            Some(m) => match &m.value.value {
                NodeValue::String(s) => Some((s.clone(), m.value.span.clone())),
                _ => {
                    self.wrong_type(&m.value, "a stage name", "a string");
                    None
                }
            },
            None => {
                self.error(
                    node.span.clone(),
                    format!("{what} without a `name`"),
                    "this object",
                    Some("every stage and assembler is {\"name\": \"org.osbuild....\", \"options\": {...}}".into()),
                );
                None
            }
        };
        let (options, options_path) = match node.member("options") {
            Some(m) => match &m.value.value {
                NodeValue::Object(_) => (to_map(&m.value), child(&path, "options")),
                _ => {
                    self.wrong_type(&m.value, "`options`", "an object");
                    (Map::new(), path.clone())
                }
            },
            None => (Map::new(), path.clone()),
        };
        let (name, name_span) = name?;
        Some((
            Stage { name, options },
            StageSpans {
                whole: node.span.clone(),
                name: name_span,
                options: options_path,
            },
        ))
    }

    fn object<'n>(&mut self, node: &'n Node, what: &str) -> Option<&'n [Member]> {
        match &node.value {
            NodeValue::Object(members) => Some(members),
            _ => {
                self.wrong_type(node, what, "an object");
                None
            }
        }
    }

    /// A whole number of seconds since 1970 (at most 2^53, which any JSON
    /// reader keeps exactly).
    fn optional_seconds(&mut self, node: &Node, key: &str) -> Option<u64> {
        let member = node.member(key)?;
        match &member.value.value {
            NodeValue::Number(n) if n.as_u64().is_some_and(|s| s <= 1 << 53) => n.as_u64(),
            _ => {
                self.wrong_type(
                    &member.value,
                    &format!("`{key}`"),
                    "a whole number of seconds since 1970 (0 to 2^53)",
                );
                None
            }
        }
    }

    fn optional_string(&mut self, node: &Node, key: &str) -> Option<String> {
        let member = node.member(key)?;
        match &member.value.value {
            NodeValue::String(s) => Some(s.clone()),
            _ => {
                self.wrong_type(&member.value, &format!("`{key}`"), "a string");
                None
            }
        }
    }

    fn wrong_type(&mut self, node: &Node, what: &str, expected: &str) {
        self.error(
            node.span.clone(),
            format!(
                "{what} must be {expected}, not {} {}",
                article(node.kind()),
                node.kind()
            ),
            &format!("expected {expected}"),
            None,
        );
    }

    fn keys(&mut self, members: &[Member], allowed: &[&str], what: &str) {
        for m in members {
            if !allowed.contains(&m.key.as_str()) {
                let help = match suggest(&m.key, allowed.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!(
                        "{what} has the keys {}",
                        allowed.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
                    ),
                };
                self.error(
                    m.key_span.clone(),
                    format!("unknown key `{}` in {what}", m.key),
                    "unknown key",
                    Some(help),
                );
            }
        }
    }
}

fn article(kind: &str) -> &'static str {
    match kind.as_bytes().first() {
        Some(b'a' | b'o') => "an",
        _ => "a",
    }
}

fn child(path: &[PathSegment], key: &str) -> Vec<PathSegment> {
    let mut p = path.to_vec();
    p.push(PathSegment::Key(key.into()));
    p
}

fn to_map(node: &Node) -> Map<String, Value> {
    match node.to_value() {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Located, InvalidInput> {
        parse_manifest(Source::new("m.json", text))
    }

    #[test]
    fn seed_format() {
        let m = parse(r#"{"name": "x", "stages": [{"name": "org.osbuild.noop"}], "assembler": {"name": "org.osbuild.tar", "options": {"filename": "a.tar"}}}"#).unwrap();
        assert_eq!(m.manifest.pipeline.name.as_deref(), Some("x"));
        assert_eq!(m.manifest.pipeline.stages.len(), 1);
        assert_eq!(
            m.manifest.pipeline.assembler.as_ref().unwrap().options["filename"],
            "a.tar"
        );
        assert_eq!(
            m.spans.stages[0].options,
            vec![PathSegment::Key("stages".into()), PathSegment::Index(0)]
        );
    }

    #[test]
    fn v1_format_with_build() {
        let text = r#"{"pipeline": {"build": {"pipeline": {"stages": [{"name": "a"}]}, "runner": "org.osbuild.linux"},
                       "stages": [{"name": "b", "options": {"k": 1}}]}, "sources": {"org.osbuild.files": {}}}"#;
        let m = parse(text).unwrap();
        let build = m.manifest.pipeline.build.as_ref().unwrap();
        assert_eq!(build.stages[0].name, "a");
        assert_eq!(build.runner.as_deref(), Some("org.osbuild.linux"));
        assert!(m.manifest.sources.is_some());
        let opts = &m.spans.stages[0].options;
        assert_eq!(
            m.source.root.find(opts).unwrap().to_value(),
            serde_json::json!({"k": 1})
        );
    }

    #[test]
    fn collects_every_structural_error_with_its_span() {
        let text = r#"{"nmae": "x", "stages": [{"options": {}}, {"name": 3}], "assembler": []}"#;
        let err = parse(text).unwrap_err();
        let messages: Vec<_> = err.errors.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(messages.len(), 4, "{messages:?}");
        assert!(messages[0].contains("unknown key `nmae`"));
        assert_eq!(err.errors[0].help.as_deref(), Some("did you mean `name`?"));
        assert_eq!(err.errors[0].span.offset(), 1);
        assert!(messages.iter().any(|m| m.contains("without a `name`")));
        assert!(messages.iter().any(|m| m.contains("must be a string, not a number")));
        assert!(messages
            .iter()
            .any(|m| m.contains("an assembler must be an object, not an array")));
    }

    #[test]
    fn assembly_base_counts_stages_of_a_pipeline_with_an_assembler() {
        let two = r#"[{"name": "a"}, {"name": "b"}]"#;
        let ok = parse(&format!(
            r#"{{"stages": {two}, "assembler": {{"name": "t"}}, "assembly_base": 2}}"#
        ))
        .unwrap();
        assert_eq!(ok.manifest.pipeline.assembly_base, Some(2));
        assert!(ok.spans.assembly_base.is_some());
        for (text, message) in [
            (
                format!(r#"{{"stages": {two}, "assembler": {{"name": "t"}}, "assembly_base": 3}}"#),
                "`assembly_base` is 3 stages, but the pipeline has 2",
            ),
            (
                format!(r#"{{"stages": {two}, "assembler": {{"name": "t"}}, "assembly_base": 0}}"#),
                "`assembly_base` must be at least 1 stage",
            ),
            (
                format!(r#"{{"stages": {two}, "assembly_base": 1}}"#),
                "`assembly_base` is only for a pipeline with an assembler",
            ),
            (
                format!(r#"{{"stages": {two}, "assembler": {{"name": "t"}}, "assembly_base": 1.5}}"#),
                "`assembly_base` must be a whole number of stages, not 1.5",
            ),
            (
                format!(r#"{{"stages": {two}, "assembler": {{"name": "t"}}, "assembly_base": -1}}"#),
                "`assembly_base` must be a whole number of stages, not -1",
            ),
            (
                format!(r#"{{"stages": {two}, "assembler": {{"name": "t"}}, "assembly_base": "1"}}"#),
                "`assembly_base` must be a whole number of stages, not a string",
            ),
        ] {
            let err = parse(&text).unwrap_err();
            assert_eq!(err.errors.len(), 1, "{text}");
            assert_eq!(err.errors[0].message, message, "{text}");
            let at = text.find(r#""assembly_base": "#).unwrap() + r#""assembly_base": "#.len();
            assert_eq!(err.errors[0].span.offset(), at, "{text}");
        }
        // In a build pipeline too.
        let err = parse(&format!(
            r#"{{"build": {{"stages": {two}, "assembly_base": 1}}, "stages": []}}"#
        ))
        .unwrap_err();
        assert_eq!(err.errors.len(), 1);
    }

    #[test]
    fn bad_json_points_at_the_problem() {
        let err = parse("{\"stages\": [}").unwrap_err();
        assert_eq!(err.errors.len(), 1);
        assert_eq!(err.errors[0].span.offset(), 12);
    }
}
