//! What the fuzz targets share: the registry, diagnostic rendering, and the
//! checks each target runs on one input. The targets in `fuzz_targets/` are
//! one line each, so a crashing input can be replayed from a unit test or a
//! debugger by calling these functions.
//!
//! Every function here must return normally for every input: a panic (or an
//! assertion failing) is a bug in osbuild.
//!
//! tests/fuzz_regressions.rs includes this file too, and runs the inputs in
//! tests/fuzz-regressions/ through it: keep it to osbuild, miette and serde_json.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use miette::{Diagnostic, GraphicalReportHandler, GraphicalTheme};
use osbuild::diagnostic::{InvalidInput, Source};
use osbuild::manifest::json::{self, Node, NodeValue};
use osbuild::manifest::parse_manifest;
use osbuild::plan::{plan, PlanError};
use osbuild::registry::Registry;
use osbuild::script::{self, cli::manifests_json};

/// The built-in stages and assemblers, loaded once.
pub fn registry() -> &'static Arc<Registry> {
    static REGISTRY: OnceLock<Arc<Registry>> = OnceLock::new();
    REGISTRY.get_or_init(|| Arc::new(Registry::load(None).expect("the built-in registry loads")))
}

/// Renders a diagnostic the way the CLI shows it (graphical, with the source
/// lines and labels), twice: wide with Unicode, and narrow with ASCII, so
/// wrapping gets exercised too. Rendering must not fail or panic.
pub fn render(d: &dyn Diagnostic) -> String {
    let mut out = String::new();
    GraphicalReportHandler::new_themed(GraphicalTheme::unicode_nocolor())
        .with_width(100)
        .render_report(&mut out, d)
        .expect("a diagnostic renders");
    let mut narrow = String::new();
    GraphicalReportHandler::new_themed(GraphicalTheme::ascii())
        .with_width(24)
        .render_report(&mut narrow, d)
        .expect("a diagnostic renders narrow");
    out.push_str(&narrow);
    out
}

/// A span must lie inside the text and start and end on character boundaries.
fn assert_span(text: &str, span: &Range<usize>, what: &str) {
    assert!(
        span.start <= span.end && span.end <= text.len(),
        "{what}: span {span:?} outside the text ({} bytes)",
        text.len()
    );
    assert!(
        text.is_char_boundary(span.start) && text.is_char_boundary(span.end),
        "{what}: span {span:?} splits a character"
    );
}

fn check_invalid(e: &InvalidInput, text: &str) {
    assert!(!e.errors.is_empty(), "an invalid manifest has at least one error");
    for err in &e.errors {
        let span = err.span.offset()..err.span.offset() + err.span.len();
        assert_span(text, &span, &err.message);
    }
    render(e);
}

/// Target `manifest`: JSON text → manifest parser → pre-flight check → plan,
/// rendering every diagnostic on the way.
pub fn manifest(text: &str) {
    let located = match parse_manifest(Source::new("fuzz.json", text)) {
        Ok(located) => located,
        Err(e) => return check_invalid(&e, text),
    };
    assert_eq!(located.spans.stages.len(), located.manifest.pipeline.stages.len());
    if let Err(e) = osbuild::check::check(&located, registry()) {
        return check_invalid(&e, text);
    }
    match plan(&located.manifest, None) {
        Ok(_) => {}
        Err(e @ PlanError::UnknownBase(_)) => {
            // As the CLI shows it: at the manifest's `base`.
            let span = located.spans.base.clone().expect("an unknown base was given");
            assert_span(text, &span, "base");
            render(
                &located
                    .source
                    .source
                    .error(span, e.to_string())
                    .label("not in the store"),
            );
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    // The canonical JSON (without v1's `sources`, which only the v1 format
    // has a place for) is a manifest again, the same one.
    if located.manifest.sources.is_none() {
        let canonical = located.manifest.canonical_json();
        let again = parse_manifest(Source::new("canonical.json", canonical.clone()))
            .unwrap_or_else(|e| panic!("the canonical JSON does not parse: {e:?}\n{canonical}"));
        assert_eq!(again.manifest, located.manifest, "{canonical}");
        let _ = located.manifest.pretty_json();
    }
}

/// Target `json`: our spanned parser against serde_json.
///
/// What `manifest::json` documents: `Node::to_value` is exactly what
/// `serde_json::from_str` gives for the same text, and the parser is strict
/// RFC 8259. The documented differences, and so the only ones allowed:
/// - duplicate keys in one object are an error (serde_json keeps the last);
/// - a UTF-8 byte order mark at the start is skipped (serde_json rejects it);
/// - nesting up to [`json::MAX_DEPTH`] (128) levels is accepted, one more than
///   serde_json's reader (127).
pub fn json(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        // What cannot be read as a string never reaches our parser; serde_json
        // must refuse it too, so nothing is lost by that.
        assert!(serde_json::from_slice::<serde_json::Value>(data).is_err());
        return;
    };
    let ours = json::parse(text);
    let without_bom = text.strip_prefix('\u{feff}').unwrap_or(text);
    let theirs = serde_json::from_str::<serde_json::Value>(without_bom);
    match (&ours, &theirs) {
        (Ok(node), Ok(value)) => {
            let ours = node.to_value();
            assert_eq!(&ours, value, "{text:?}");
            // The same representation, not just equal numbers (-0.0 vs 0.0, 1.0 vs 1).
            assert_eq!(ours.to_string(), value.to_string(), "{text:?}");
            assert_eq!(node.span.end, text.trim_end_matches([' ', '\t', '\n', '\r']).len());
            spans(text, node, 1);
        }
        (Err(e), Err(_)) => assert_span(text, &e.span, &e.message),
        (Ok(node), Err(e)) => {
            // Only the one extra level of nesting.
            assert!(
                e.to_string().starts_with("recursion limit exceeded") && depth(node) == json::MAX_DEPTH,
                "we accept what serde_json rejects ({e}): {text:?}"
            );
        }
        (Err(e), Ok(_)) => {
            assert!(
                e.message.starts_with("duplicate key"),
                "serde_json accepts what we reject ({}): {text:?}",
                e.message
            );
            assert_span(text, &e.span, &e.message);
        }
    }
}

/// How deep the arrays and objects nest (a scalar is 0).
fn depth(node: &Node) -> usize {
    match &node.value {
        NodeValue::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        NodeValue::Object(members) => 1 + members.iter().map(|m| depth(&m.value)).max().unwrap_or(0),
        _ => 0,
    }
}

/// Every node's span is exactly its own text: it parses alone to the same value.
/// Checked down to a few levels (deeper, the work grows with depth × size).
fn spans(text: &str, node: &Node, levels: usize) {
    assert_span(text, &node.span, "node");
    let own = &text[node.span.clone()];
    let alone = json::parse(own).unwrap_or_else(|e| panic!("the span {:?} does not parse alone: {e}", node.span));
    assert_eq!(alone.to_value(), node.to_value());
    if levels == 0 {
        return;
    }
    match &node.value {
        NodeValue::Array(items) => items.iter().for_each(|n| spans(text, n, levels - 1)),
        NodeValue::Object(members) => {
            for m in members {
                assert_span(text, &m.key_span, "key");
                let key: String = serde_json::from_str(&text[m.key_span.clone()]).expect("a key's span is a string");
                assert_eq!(key, m.key);
                spans(text, &m.value, levels - 1);
            }
        }
        _ => {}
    }
}

/// The directory scripts of the `lower` target are in: the repository's
/// examples, so `import "./fleet"` and `read_file("keys/ops.pub")` find
/// something. The stdlib is the real one, compiled into osbuild.
fn script_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // fuzz/ when built by cargo-fuzz; the repository when tests/ include this file.
        let here = Path::new(env!("CARGO_MANIFEST_DIR"));
        let repo = if here.join("examples").is_dir() {
            here
        } else {
            here.parent().expect("fuzz/ is in the repository")
        };
        repo.join("examples")
            .canonicalize()
            .expect("the examples directory exists")
    })
}

/// The operations a fuzzed script may run: a hundredth of the CLI's limit,
/// ample for the examples (a 1000-image fleet needs less than 2M).
pub const MAX_OPERATIONS: u64 = 200_000;

/// Target `lower`: a Rhai script → its manifests (or a diagnostic) → plans.
///
/// Leading lines `//-D key=value` are `-D` parameters, so the fuzzer reaches
/// `param()` with given values too.
pub fn lower(text: &str) {
    let params: Vec<(String, String)> = text
        .lines()
        .map_while(|l| l.strip_prefix("//-D "))
        .filter_map(|d| script::lower::parse_define(d).ok())
        .collect();
    let lowering = match script::lower_source_with_limit(
        "fuzz.rhai",
        text.to_string(),
        script_dir().clone(),
        &params,
        registry().clone(),
        MAX_OPERATIONS,
    ) {
        Ok(lowering) => lowering,
        Err(d) => {
            render(&*d);
            return;
        }
    };
    assert!(!lowering.images.is_empty());
    let _ = manifests_json(&lowering);
    for image in &lowering.images {
        match plan(&image.manifest, None) {
            Ok(_) => {}
            Err(e @ PlanError::UnknownBase(_)) => {
                let base = match &e {
                    PlanError::UnknownBase(b) => b.clone(),
                    _ => unreachable!(),
                };
                let d = lowering
                    .bases
                    .unknown(&base, e.to_string())
                    .unwrap_or_else(|| panic!("no call site for base {base:?}"));
                render(&d);
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
        // `osbuild lower -o DIR` writes this; the JSON front-end takes it
        // back, the same manifest, and its checks agree with the script's.
        let canonical = image.manifest.canonical_json();
        let located = parse_manifest(Source::new("lowered.json", canonical.clone()))
            .unwrap_or_else(|e| panic!("a lowered manifest does not parse: {e:?}\n{canonical}"));
        assert_eq!(located.manifest, image.manifest);
        if let Err(e) = osbuild::check::check(&located, registry()) {
            panic!("a lowered manifest fails the check: {}", render(&e));
        }
    }
}

/// Target `lock`: text → the lock parser. A lock that parses writes out as
/// a lock that parses to the same lock; one that does not gives diagnostics
/// inside the text, which render.
pub fn lock(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match osbuild::lock::Lock::parse(&Source::new("fuzz.lock", text)) {
        Ok(lock) => {
            let written = lock.to_json();
            let again = osbuild::lock::Lock::parse(&Source::new("again.lock", written.clone()))
                .unwrap_or_else(|e| panic!("a written lock does not parse: {e:?}\n{written}"));
            assert_eq!(again, lock, "{written}");
        }
        Err(e) => {
            if let osbuild::lock::LockError::Invalid { errors, .. } = &e {
                assert!(!errors.is_empty(), "an invalid lock has at least one error");
                for err in errors {
                    let span = err.span.offset()..err.span.offset() + err.span.len();
                    assert_span(text, &span, &err.message);
                }
            }
            render(&e);
        }
    }
}
