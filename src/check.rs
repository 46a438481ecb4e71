//! Checks a parsed manifest against the stage registry before anything runs:
//! every stage name exists, every options object fits its stage, every
//! pipeline name can name a tree in the store, and a locked manifest's
//! `sources` list exactly the files its stages pin. Each mistake becomes a
//! diagnostic at the offending bytes of the manifest.

use osbuild_stages::{Kind, PathSegment, ProblemKind};

use crate::diagnostic::{suggest, InvalidInput, SpannedError};
use crate::manifest::{Located, Pipeline, PipelineSpans, Stage, StageSpans};
use crate::registry::Registry;

/// Every stage-level mistake in the manifest, or `Ok`.
pub fn check(located: &Located, registry: &Registry) -> Result<(), InvalidInput> {
    let mut errors = Vec::new();
    pipeline(
        located,
        registry,
        &located.manifest.pipeline,
        &located.spans,
        &mut errors,
    );
    sources(located, &mut errors);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(InvalidInput {
            name: located.source.source.name.clone(),
            errors,
        })
    }
}

fn pipeline(
    located: &Located,
    registry: &Registry,
    p: &Pipeline,
    spans: &PipelineSpans,
    errors: &mut Vec<SpannedError>,
) {
    if let (Some(build), Some(build_spans)) = (&p.build, &spans.build) {
        pipeline(located, registry, build, build_spans, errors);
    }
    if let (Some(name), Some(span)) = (&p.name, &spans.name) {
        if let Some(problem) = crate::store::name_problem(name) {
            errors.push(
                located
                    .source
                    .source
                    .error(
                        span.clone(),
                        format!("the pipeline name cannot name a tree in the store: {problem}"),
                    )
                    .label("not a store name")
                    .help("the built tree is stored under the pipeline's name: choose a shorter one"),
            );
        }
    }
    for (stage_, span) in p.stages.iter().zip(&spans.stages) {
        stage(located, registry, Kind::Stage, stage_, span, errors);
    }
    if let (Some(assembler), Some(span)) = (&p.assembler, &spans.assembler) {
        stage(located, registry, Kind::Assembler, assembler, span, errors);
    }
}

fn stage(
    located: &Located,
    registry: &Registry,
    kind: Kind,
    stage: &Stage,
    spans: &StageSpans,
    errors: &mut Vec<SpannedError>,
) {
    let source = &located.source.source;
    let Some(def) = registry.get(kind, &stage.name) else {
        errors.push(unknown_name(registry, kind, &stage.name).into_error(source, spans.name.clone()));
        return;
    };
    let options = serde_json::Value::Object(stage.options.clone());
    // In the order they appear in the manifest.
    let mut problems: Vec<_> = def
        .check(&options)
        .into_iter()
        .map(|problem| {
            let mut full = spans.options.clone();
            full.extend(problem.path.iter().cloned());
            (problem_span(located, &full, problem.kind), problem)
        })
        .collect();
    problems.sort_by_key(|(span, _)| span.start);
    for (span, problem) in problems {
        let place = problem.place();
        let at = if place.is_empty() {
            String::new()
        } else {
            format!(" at `{place}`")
        };
        errors.push(
            source
                .error(
                    span,
                    format!("invalid options for {}{at}: {}", stage.name, problem.message),
                )
                .label(label_for(problem.kind))
                .help(format!("`osbuild stages {}` lists its options", def.name)),
        );
    }
}

/// A locked manifest says twice what it installs: each package stage's
/// `locked` pins, and the `sources` files (the items of `org.osbuild.deb`
/// and `org.osbuild.rpm`). The pins are what is built; `sources` must not
/// say otherwise.
fn sources(located: &Located, errors: &mut Vec<SpannedError>) {
    let Some(sources) = located.manifest.sources.as_ref() else {
        return;
    };
    let mut pinned: std::collections::BTreeMap<(&str, String), (osbuild_stages::lock::Pin, String)> =
        std::collections::BTreeMap::new();
    let mut p = Some(&located.manifest.pipeline);
    while let Some(pipeline) = p {
        for stage in &pipeline.stages {
            for r in crate::sources::locked_of(stage)
                .map(|l| l.repositories)
                .unwrap_or_default()
            {
                for pin in r.packages {
                    let key = (r.format.source_kind(), format!("sha256:{}", pin.sha256));
                    pinned.insert(key, (pin, stage.name.clone()));
                }
            }
        }
        p = pipeline.build.as_deref();
    }
    let source = &located.source.source;
    let root = &located.source.root;
    for kind in ["org.osbuild.deb", "org.osbuild.rpm"] {
        let Some(items) = sources
            .get(kind)
            .and_then(|d| d.get("items"))
            .and_then(|i| i.as_object())
        else {
            continue;
        };
        let at = |key: Option<&str>| -> std::ops::Range<usize> {
            let mut path: Vec<PathSegment> = vec!["sources".into(), kind.into(), "items".into()];
            match key {
                Some(k) => {
                    path.push(k.into());
                    root.key_span(&path).unwrap_or_else(|| root.best_span(&path))
                }
                None => root.best_span(&path),
            }
        };
        for ((_, key), (pin, stage)) in pinned.iter().filter(|((k, _), _)| *k == kind) {
            let listed = items.get(key);
            let fits = listed.is_some_and(|v| {
                v.get("path").and_then(|x| x.as_str()) == Some(pin.path.as_str())
                    && v.get("size").and_then(|x| x.as_u64()) == Some(pin.size)
            });
            if !fits {
                let what = if listed.is_some() {
                    "lists another path or size for"
                } else {
                    "lack"
                };
                errors.push(
                    source
                        .error(
                            at(listed.map(|_| key.as_str())),
                            format!(
                                "the manifest's sources {what} {} {} ({key}), which {stage} pins",
                                pin.name, pin.version
                            ),
                        )
                        .label("not what the stages pin")
                        .help(FIT_HELP),
                );
            }
        }
        for key in items.keys().filter(|k| !pinned.contains_key(&(kind, k.to_string()))) {
            errors.push(
                source
                    .error(
                        at(Some(key)),
                        format!("{key} is in the manifest's sources, but no stage pins it"),
                    )
                    .label("pinned by no stage")
                    .help(FIT_HELP),
            );
        }
    }
}

const FIT_HELP: &str = "the stages' `locked` pins are what is built: `osbuild lower` writes sources that fit them";

/// What to say about a name that is neither a stage nor an assembler.
pub struct UnknownName {
    pub message: String,
    pub help: String,
}

impl UnknownName {
    fn into_error(self, source: &crate::diagnostic::Source, span: std::ops::Range<usize>) -> SpannedError {
        source.error(span, self.message).label("not known").help(self.help)
    }
}

/// The message and hint for an unknown stage or assembler name, shared with the script front-end.
pub fn unknown_name(registry: &Registry, kind: Kind, name: &str) -> UnknownName {
    let other = match kind {
        Kind::Stage => Kind::Assembler,
        Kind::Assembler => Kind::Stage,
    };
    let help = if registry.get(other, name).is_some() {
        format!(
            "{name} is {} {}, not {} {}",
            article(other),
            other.noun(),
            article(kind),
            kind.noun()
        )
    } else if let Some(s) = suggest(name, registry.names(kind)) {
        format!("did you mean `{s}`?")
    } else {
        format!("`osbuild stages` lists every {}", kind.noun())
    };
    UnknownName {
        message: format!("unknown {} `{name}`", kind.noun()),
        help,
    }
}

fn article(kind: Kind) -> &'static str {
    match kind {
        Kind::Stage => "a",
        Kind::Assembler => "an",
    }
}

fn label_for(kind: ProblemKind) -> &'static str {
    match kind {
        ProblemKind::Unknown => "unknown option",
        ProblemKind::Missing => "missing an option",
        ProblemKind::Invalid => "does not fit",
    }
}

/// Where to show a problem at `path`: the key itself for an unknown key, the
/// object for a missing one, else the value (or, when the path leads into
/// what the manifest does not have, the deepest part of it that it does).
fn problem_span(located: &Located, path: &[PathSegment], kind: ProblemKind) -> std::ops::Range<usize> {
    let root = &located.source.root;
    match kind {
        ProblemKind::Unknown => root.key_span(path).unwrap_or_else(|| root.best_span(path)),
        ProblemKind::Missing => root.best_span(&path[..path.len().saturating_sub(1)]),
        ProblemKind::Invalid => root.best_span(path),
    }
}
