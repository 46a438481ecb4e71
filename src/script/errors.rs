//! Rhai errors as miette diagnostics: the source line with a label at the
//! exact call, a help line, and, when the call was made inside a stdlib or user
//! module, the chain of calls back to the user's line.
//!
//! Rhai nests errors: `ErrorInFunctionCall(fn, fn's source, inner, call position)`
//! and `ErrorInModule(module, inner, import position)`. Each layer's position is
//! in the source of the layer around it, the innermost error's in the source of
//! the innermost function. Positions are (line, character column) and become
//! byte offsets into the kept source texts.

use std::fmt;

use miette::{Diagnostic, LabeledSpan, Severity, SourceCode, SourceSpan};
use rhai::{EvalAltResult, Position};

use super::api::{Needle, ScriptError};
use super::engine::{parser, LIMITS};
use super::modules::{is_stdlib, Sources, STDLIB};
use crate::diagnostic::Excerpt;

/// One diagnostic about a script; the call chain comes as related advice.
#[derive(Debug)]
pub struct ScriptDiagnostic {
    pub code: String,
    pub message: String,
    pub src: Option<Excerpt>,
    pub span: Option<SourceSpan>,
    pub label: Option<String>,
    pub help: Option<String>,
    pub severity: Severity,
    pub related: Vec<ScriptDiagnostic>,
    /// Rhai counts columns up to 65535 only: the place may be further right.
    capped: bool,
}

impl ScriptDiagnostic {
    /// A diagnostic with no place in any source.
    pub fn plain(code: &str, message: impl Into<String>, help: Option<String>) -> Self {
        ScriptDiagnostic {
            code: format!("osbuild::script::{code}"),
            message: message.into(),
            src: None,
            span: None,
            label: None,
            help,
            severity: Severity::Error,
            related: Vec::new(),
            capped: false,
        }
    }

    /// A diagnostic at `pos` of the source `name`.
    pub fn at(sources: &Sources, name: &str, pos: Position, needle: Option<&Needle>, message: String) -> Self {
        Self::at_needle(sources, name, pos, needle, message).0
    }

    /// As [`Self::at`], and whether `needle` was found in the call there.
    fn at_needle(
        sources: &Sources,
        name: &str,
        pos: Position,
        needle: Option<&Needle>,
        message: String,
    ) -> (Self, bool) {
        let text = sources.text(name).unwrap_or_default();
        let (span, found) = span_for(&text, pos, needle);
        let (src, span) = Excerpt::new(name, "rhai", text, span);
        let diag = ScriptDiagnostic {
            code: "osbuild::script".into(),
            message,
            src: Some(src),
            span: Some(span),
            label: None,
            help: None,
            severity: Severity::Error,
            related: Vec::new(),
            capped: pos.position() == Some(u16::MAX as usize),
        };
        (diag, found)
    }

    fn code(mut self, code: &str) -> Self {
        self.code = format!("osbuild::script::{code}");
        self
    }

    fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    fn help(mut self, help: Option<String>) -> Self {
        self.help = help;
        self
    }

    fn advice(mut self) -> Self {
        self.severity = Severity::Advice;
        self
    }
}

impl fmt::Display for ScriptDiagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ScriptDiagnostic {}

impl Diagnostic for ScriptDiagnostic {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        (self.severity == Severity::Error).then(|| Box::new(&self.code) as Box<dyn fmt::Display>)
    }

    fn severity(&self) -> Option<Severity> {
        Some(self.severity)
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help.as_ref().map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        self.src.as_ref().map(|s| s as &dyn SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let span = self.span?;
        let mut label = self.label.clone().unwrap_or_else(|| "here".into());
        if self.capped {
            label.push_str(" (somewhere from here on: Rhai counts columns only up to 65535)");
        }
        Some(Box::new(std::iter::once(LabeledSpan::new_with_span(Some(label), span))))
    }

    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn Diagnostic> + 'a>> {
        if self.related.is_empty() {
            return None;
        }
        Some(Box::new(self.related.iter().map(|d| d as &dyn Diagnostic)))
    }
}

/// One layer of the call chain: a call (or import) at `pos` of `source`.
struct Frame {
    source: String,
    pos: Position,
    /// "in `image` (stdlib/debian.rhai)", and the label at the call.
    what: String,
    label: String,
}

/// What the innermost error says.
struct Inner {
    code: &'static str,
    message: String,
    label: String,
    help: Option<String>,
    needle: Option<Needle>,
    blame_caller: bool,
    notes: Vec<(super::api::Site, String, String)>,
}

/// A Rhai error (from evaluating `main`, or a parse error of it) as a diagnostic.
pub fn from_eval(err: EvalAltResult, sources: &Sources) -> ScriptDiagnostic {
    let mut frames: Vec<Frame> = Vec::new();
    let mut current = sources.main_name();
    let mut err = err;
    loop {
        match err {
            EvalAltResult::ErrorInFunctionCall(name, src, inner, pos) => {
                let callee = if !src.is_empty() && sources.text(&src).is_some() {
                    src
                } else {
                    current.clone()
                };
                // Where a closure was written Rhai does not say (see below).
                let what = if name.starts_with("anon$") {
                    "inside a closure, which was called here".to_string()
                } else {
                    format!("inside `{name}` ({callee}), which was called here")
                };
                frames.push(Frame {
                    source: current,
                    pos,
                    what,
                    label: if name.starts_with("anon$") {
                        "called here".into()
                    } else {
                        format!("`{name}` called here")
                    },
                });
                current = callee;
                err = *inner;
            }
            EvalAltResult::ErrorInModule(name, inner, pos) => {
                let module = if sources.text(&name).is_some() {
                    name
                } else {
                    current.clone()
                };
                frames.push(Frame {
                    source: current,
                    pos,
                    what: format!("while importing {module}"),
                    label: "imported here".into(),
                });
                current = module;
                err = *inner;
            }
            _ => break,
        }
    }
    let mut err = err;
    let mut pos = err.take_position();
    if matches!(err, EvalAltResult::ErrorTooManyOperations(_)) {
        // Point at the loop that kept running, not at wherever it stopped.
        if let Some(text) = sources.text(&current) {
            pos = enclosing_loop(&text, pos).unwrap_or(pos);
        }
    }
    let inner = describe(err, sources, &current);
    // A closure runs in the module that calls it (`fleet::each`), so Rhai
    // names that module, but its position is in the source that wrote the
    // closure: the one whose text at that position holds what the error is
    // about (the user's files first).
    if let Some(needle) = &inner.needle {
        let holds = |name: &str| sources.text(name).is_some_and(|t| span_for(&t, pos, Some(needle)).1);
        if !holds(&current) {
            let mut names = sources.names();
            names.sort_by_key(|n| is_stdlib(n));
            if let Some(home) = names.into_iter().find(|n| holds(n)) {
                current = home;
            }
        }
    }

    // Where the main label goes: the innermost place, or for a mistake in the
    // arguments given to a stdlib function, the user's call into the stdlib.
    let mut places: Vec<(String, Position, String, String)> =
        frames.into_iter().map(|f| (f.source, f.pos, f.what, f.label)).collect();
    places.push((current, pos, String::new(), inner.label.clone()));
    let primary_index = if inner.blame_caller {
        places
            .iter()
            .rposition(|(s, ..)| !is_stdlib(s))
            .unwrap_or(places.len() - 1)
    } else {
        places.len() - 1
    };
    let (p_source, p_pos, ..) = places[primary_index].clone();
    let (diag, found) = ScriptDiagnostic::at_needle(sources, &p_source, p_pos, inner.needle.as_ref(), inner.message);
    // The label says what is wrong with the value when it is under it; at
    // the call (the value is in a variable), which option it is too.
    let label = match &inner.needle {
        Some(Needle::Value(keys)) if !found => format!("`{}`: {}", keys.join("` `"), inner.label),
        _ => inner.label.clone(),
    };
    let mut diag = diag.code(inner.code).label(label).help(inner.help);
    for (site, message, label) in inner.notes {
        diag.related.push(
            ScriptDiagnostic::at(sources, &site.source, site.pos, None, message)
                .label(label)
                .advice(),
        );
    }
    // The rest of the chain, innermost first, back to the user's line.
    for (i, (source, pos, what, label)) in places.iter().enumerate().rev() {
        if i == primary_index {
            continue;
        }
        let message = if i == places.len() - 1 {
            format!("the error comes from here ({source})")
        } else {
            what.clone()
        };
        diag.related.push(
            ScriptDiagnostic::at(sources, source, *pos, None, message)
                .label(label.clone())
                .advice(),
        );
    }
    diag
}

/// What the innermost error says; `current` is the source it happened in.
fn describe(err: EvalAltResult, sources: &Sources, current: &str) -> Inner {
    let simple = |code, message: String, label: &str, help: Option<String>| Inner {
        code,
        message,
        label: label.to_string(),
        help,
        needle: None,
        blame_caller: false,
        notes: Vec::new(),
    };
    match err {
        EvalAltResult::ErrorRuntime(value, _) if value.is::<ScriptError>() => {
            let e = value.cast::<ScriptError>();
            Inner {
                code: e.code,
                message: e.message,
                label: e.label,
                help: e.help,
                needle: e.needle,
                blame_caller: e.blame_caller,
                notes: e.notes,
            }
        }
        EvalAltResult::ErrorRuntime(value, _) => simple(
            "thrown",
            value.to_string(),
            "thrown here",
            Some("the script threw this error".into()),
        ),
        EvalAltResult::ErrorParsing(kind, _) => {
            let help = match &kind {
                rhai::ParseErrorType::MissingToken(token, what) => Some(format!("add `{token}` {what}")),
                rhai::ParseErrorType::VariableUndefined(name) => Some(format!(
                    "declare it first: `let {name} = ...;` (or import the module it belongs to)"
                )),
                rhai::ParseErrorType::ModuleUndefined(name) if STDLIB.iter().any(|(n, _)| n == name) => {
                    Some(format!("add `import \"{name}\" as {name};` at the top of the script"))
                }
                rhai::ParseErrorType::ModuleUndefined(name) => Some(format!(
                    "import it first: `import \"./{name}\" as {name};` for {name}.rhai beside the script"
                )),
                _ => Some("scripts are written in Rhai: https://rhai.rs/book/".into()),
            };
            simple("syntax", kind.to_string(), "here", help)
        }
        EvalAltResult::ErrorTooManyOperations(_) => simple(
            "limit",
            format!(
                "the script ran too long (more than {} operations)",
                sources.max_operations
            ),
            "this loop was still running",
            Some("a script must finish within the operation limit: is there a loop that never ends?".into()),
        ),
        EvalAltResult::ErrorStackOverflow(_) => simple(
            "limit",
            format!("too many nested calls (more than {} levels)", LIMITS.call_levels),
            "one call too deep",
            Some("is there a recursion that never ends?".into()),
        ),
        EvalAltResult::ErrorTooManyModules(_) => simple(
            "limit",
            format!("too many modules (more than {})", LIMITS.modules),
            "one import too many",
            None,
        ),
        EvalAltResult::ErrorDataTooLarge(what, _) => simple(
            "limit",
            format!("{what} is larger than the limit"),
            "too large",
            Some(format!(
                "limits: strings {} bytes, arrays {} items, maps {} entries",
                LIMITS.string_size, LIMITS.array_size, LIMITS.map_size
            )),
        ),
        EvalAltResult::ErrorModuleNotFound(path, _) => simple(
            "module",
            format!("no module `{path}`"),
            "not found",
            Some(format!(
                "the stdlib has {}; a file beside the script is imported as \"./name\"",
                STDLIB
                    .iter()
                    .map(|(n, _)| format!("\"{n}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        ),
        EvalAltResult::ErrorFunctionNotFound(signature, _) => {
            let name = signature.split(['(', ' ']).next().unwrap_or("").to_string();
            let short = name.rsplit("::").next().unwrap_or(&name).to_string();
            let help = match signatures(sources, current, &name, &signature) {
                Some(signatures) => signatures,
                None => crate::diagnostic::suggest(&short, API_NAMES.iter().copied())
                    .filter(|s| *s != short)
                    .map(|s| format!("did you mean `{s}`?"))
                    .unwrap_or_else(|| "check the name and the types of the arguments".into()),
            };
            simple(
                "function",
                format!("no function {}", readable(&signature)),
                "not found",
                Some(help),
            )
        }
        EvalAltResult::ErrorVariableNotFound(name, _) => simple(
            "variable",
            format!("unknown variable `{name}`"),
            "not declared",
            Some(format!("declare it first: `let {name} = ...;`")),
        ),
        other => {
            let message = other.to_string();
            simple("runtime", message, "here", Some("the script stopped here".into()))
        }
    }
}

/// The position of the `loop`, `while`, `for` or `do` whose block holds `pos`.
fn enclosing_loop(text: &str, pos: Position) -> Option<Position> {
    let bytes = text.as_bytes();
    let mut i = offset(text, pos);
    let mut depth = 0usize;
    while i > 0 {
        i -= 1;
        match bytes[i] {
            b'}' => depth += 1,
            b'{' if depth > 0 => depth -= 1,
            b'{' => {
                // The statement this block belongs to starts after the last `;`, `{` or `}`.
                let start = text[..i].rfind([';', '{', '}']).map_or(0, |s| s + 1);
                let header = &text[start..i];
                for keyword in ["loop", "while", "for", "do"] {
                    let found = header.match_indices(keyword).find(|(k, _)| {
                        let before = k.checked_sub(1).map(|b| header.as_bytes()[b]);
                        let after = header.as_bytes().get(k + keyword.len());
                        before.is_none_or(|c| !is_ident(c)) && after.is_none_or(|c| !is_ident(*c))
                    });
                    if let Some((k, _)) = found {
                        return Some(position_of(text, start + k));
                    }
                }
            }
            _ => {}
        }
    }
    None
}

/// The Rhai position (line, character column) of a byte offset.
fn position_of(text: &str, offset: usize) -> Position {
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = text[line_start..offset].chars().count() + 1;
    Position::new(line.min(u16::MAX as usize) as u16, col.min(u16::MAX as usize) as u16)
}

/// Names for "did you mean" when a function is not found.
const API_NAMES: &[&str] = &[
    "pipeline",
    "stage",
    "assembler",
    "build",
    "base",
    "emit",
    "param",
    "read_file",
    "uuid",
    "named",
    "packages",
    "hostname",
    "enable",
    "disable",
    "file",
    "mkdir",
    "timezone",
    "locale",
    "keymap",
    "script",
    "user",
    "group",
];

/// Byte offset of a Rhai position (1-based line, 1-based character column).
pub fn offset(text: &str, pos: Position) -> usize {
    let Some(line) = pos.line() else { return 0 };
    let mut start = 0;
    for _ in 1..line {
        match text[start..].find('\n') {
            Some(i) => start += i + 1,
            None => return text.len(),
        }
    }
    let col = pos.position().unwrap_or(1);
    let line_text = &text[start..];
    start
        + line_text
            .char_indices()
            .nth(col - 1)
            .map(|(i, _)| i)
            .unwrap_or_else(|| line_text.find('\n').unwrap_or(line_text.len()))
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// The span to label for `pos`: the identifier (with `ns::`) or literal
/// there, or a key or literal inside the call's parentheses when `needle` is
/// found there.
fn span_for(text: &str, pos: Position, needle: Option<&Needle>) -> (std::ops::Range<usize>, bool) {
    let bytes = text.as_bytes();
    let mut start = offset(text, pos);
    // A method call's position can be at the dot.
    while start < bytes.len() && (bytes[start] == b'.' || bytes[start] == b' ') {
        start += 1;
    }
    let mut end = start;
    if end < bytes.len() && bytes[end] == b'"' {
        end += 1;
        while end < bytes.len() && bytes[end] != b'"' && bytes[end] != b'\n' {
            end += if bytes[end] == b'\\' { 2 } else { 1 };
        }
        end = (end + 1).min(bytes.len());
    } else {
        while end < bytes.len() && (is_ident(bytes[end]) || (bytes[end] == b':' && bytes.get(end + 1) == Some(&b':'))) {
            end += if bytes[end] == b':' { 2 } else { 1 };
        }
        if end == start && end < bytes.len() {
            end += text[end..].chars().next().map_or(1, char::len_utf8);
        }
    }
    if let Some(needle) = needle {
        if let Some(span) = find_in_call(text, end, needle) {
            return (span, true);
        }
    }
    (start..end, false)
}

/// The end of the call whose name ends at `from`: after its matching `)`.
fn call_end(text: &str, from: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut i = from;
    while i < bytes.len() && bytes[i].is_ascii_whitespace() {
        i += 1;
    }
    if bytes.get(i) != Some(&b'(') {
        return None;
    }
    let mut depth = 0usize;
    while i < bytes.len() {
        match bytes[i] {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

fn find_in_call(text: &str, from: usize, needle: &Needle) -> Option<std::ops::Range<usize>> {
    let end = call_end(text, from)?;
    let region = &text[from..end];
    let span = match needle {
        Needle::Literal(lit) => region.find(lit.as_str()).map(|i| i..i + lit.len()),
        Needle::Key(key) => find_key(region, 0, key).map(|(key, _)| key),
        Needle::Value(keys) => {
            let mut after = 0;
            for key in keys {
                after = match key.parse::<usize>() {
                    // An index into the list the path has reached.
                    Ok(index) if region.as_bytes().get(skip_spaces(region, after)) == Some(&b'[') => {
                        nth_expression(region, skip_spaces(region, after) + 1, index)?
                    }
                    _ => find_key(region, after, key)?.1,
                };
            }
            Some(expression_at(region, after))
        }
        Needle::Argument(index) => {
            // The call's parentheses: the first `(` after the name.
            let start = nth_expression(region, region.find('(')? + 1, *index)?;
            let span = expression_at(region, start);
            (!span.is_empty()).then_some(span)
        }
    }?;
    Some(from + span.start..from + span.end)
}

/// Where the `index`th of the comma-separated expressions from `start` (just
/// inside a `(` or `[`) begins.
fn nth_expression(text: &str, mut start: usize, index: usize) -> Option<usize> {
    for _ in 0..index {
        let e = expression_at(text, start).end;
        if text.as_bytes().get(skip_spaces(text, e)) != Some(&b',') {
            return None;
        }
        start = skip_spaces(text, e) + 1;
    }
    Some(start)
}

fn skip_spaces(text: &str, mut i: usize) -> usize {
    let bytes = text.as_bytes();
    while i < bytes.len() && bytes[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// The option key `key` (`key:` or `"key":`) in `region`, from `search` on:
/// the key's span and the offset after its colon.
fn find_key(region: &str, mut search: usize, key: &str) -> Option<(std::ops::Range<usize>, usize)> {
    let bytes = region.as_bytes();
    while let Some(i) = region.get(search..)?.find(key) {
        let at = search + i;
        let after = at + key.len();
        let quoted = at > 0 && bytes[at - 1] == b'"' && bytes.get(after) == Some(&b'"');
        let before_ok = at == 0 || !is_ident(bytes[at - 1]) || quoted;
        let mut j = if quoted { after + 1 } else { after };
        while j < bytes.len() && bytes[j] == b' ' {
            j += 1;
        }
        let after_ok = (quoted || bytes.get(after).is_none_or(|c| !is_ident(*c)))
            && bytes.get(j) == Some(&b':')
            && bytes.get(j + 1) != Some(&b':');
        if before_ok && after_ok {
            let span = if quoted { at - 1..after + 1 } else { at..after };
            return Some((span, j + 1));
        }
        search = after;
    }
    None
}

/// The expression starting at `start` (after spaces): up to the `,` or the
/// closing bracket that ends it, strings and nested brackets skipped.
fn expression_at(text: &str, start: usize) -> std::ops::Range<usize> {
    let bytes = text.as_bytes();
    let start = skip_spaces(text, start);
    let mut i = start;
    let mut depth = 0usize;
    while i < bytes.len() {
        match bytes[i] {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' if depth == 0 => break,
            b')' | b']' | b'}' => depth -= 1,
            b',' | b';' if depth == 0 => break,
            b'"' | b'`' | b'\'' => {
                let quote = bytes[i];
                i += 1;
                while i < bytes.len() && bytes[i] != quote {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            _ => {}
        }
        i += 1;
    }
    let mut end = i.min(bytes.len());
    while end > start && bytes[end - 1].is_ascii_whitespace() {
        end -= 1;
    }
    start..end
}

/// How `name` (as called: `users::admin`, `file`) is called, when it is a
/// function of a module, a prelude method or the core API: "users::admin
/// takes (p, name, key) or (p, name, options)".
fn signatures(sources: &Sources, current: &str, name: &str, signature: &str) -> Option<String> {
    let join = |lists: Vec<String>| lists.join(" or ");
    if let Some((alias, short)) = name.rsplit_once("::") {
        let text = sources.text(current)?;
        let path = import_path(&text, alias)?;
        let module = super::modules::module_text(sources, current, &path)?;
        let lists = script_signatures(&module, short)?;
        return Some(format!("{name} takes {}", join(lists)));
    }
    // A method of the prelude, called on a pipeline (or without one).
    let on_pipeline = signature.contains("(Pipeline") || signature.contains("(osbuild::script::api::ScriptPipeline");
    if let Some(lists) = script_signatures(super::modules::PRELUDE, name) {
        let calls: Vec<String> = lists.iter().map(|l| format!("p.{name}{l}")).collect();
        let note = if on_pipeline { "" } else { ", on a pipeline" };
        return Some(format!("{name} is called as {}{note}", join(calls)));
    }
    let calls: Vec<String> = CORE_SIGNATURES
        .iter()
        .filter(|(n, _)| *n == name)
        .map(|(_, call)| call.to_string())
        .collect();
    (!calls.is_empty()).then(|| format!("{name} is called as {}", join(calls)))
}

/// The core API's calls, with the types they take.
const CORE_SIGNATURES: &[(&str, &str)] = &[
    ("pipeline", "pipeline(name: string)"),
    ("stage", "p.stage(name: string)"),
    ("stage", "p.stage(name: string, options: map)"),
    ("assembler", "p.assembler(name: string)"),
    ("assembler", "p.assembler(name: string, options: map)"),
    ("build", "p.build(build: pipeline)"),
    ("base", "p.base(name: string)"),
    ("named", "p.named(name: string)"),
    ("emit", "emit(p: pipeline)"),
    ("param", "param(key: string, default)"),
    ("read_file", "read_file(path: string)"),
    ("uuid", "uuid(name: string)"),
];

/// The path `alias` is imported from in `text` (`import "path" as alias;`).
fn import_path(text: &str, alias: &str) -> Option<String> {
    text.match_indices("import").find_map(|(i, _)| {
        let rest = text[i + "import".len()..].trim_start();
        let rest = rest.strip_prefix('"')?;
        let (path, rest) = rest.split_once('"')?;
        let rest = rest.trim_start().strip_prefix("as")?;
        let name: String = rest
            .trim_start()
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        (name == alias).then(|| path.to_string())
    })
}

/// The parameter lists of the public function `name` of a module's source,
/// fewest parameters first: `(p, name, key)`. (The prelude's methods have
/// their pipeline as `this`, not as a parameter.)
fn script_signatures(text: &str, name: &str) -> Option<Vec<String>> {
    let ast = parser().compile(text).ok()?;
    let mut lists: Vec<Vec<String>> = ast
        .iter_functions()
        .filter(|f| f.name == name && f.access == rhai::FnAccess::Public)
        .map(|f| f.params.iter().map(|p| p.to_string()).collect())
        .collect();
    lists.sort_by_key(Vec::len);
    lists.dedup();
    (!lists.is_empty()).then(|| lists.iter().map(|l| format!("({})", l.join(", "))).collect())
}

/// Rhai's signature with the script's names for its types.
fn readable(signature: &str) -> String {
    let mut text = signature.to_string();
    for (rust, script) in [
        ("&str | ImmutableString | String", "string"),
        ("osbuild::script::api::ScriptPipeline", "pipeline"),
        ("ScriptPipeline", "pipeline"),
        ("Pipeline", "pipeline"),
        ("rhai::Map", "map"),
        ("Map", "map"),
        ("rhai::Array", "array"),
        ("Array", "array"),
        ("ImmutableString", "string"),
        ("i64", "int"),
        ("f64", "float"),
        ("bool", "bool"),
        ("()", "()"),
    ] {
        text = text.replace(rust, script);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_to_offsets() {
        let text = "let a = 1;\nlet é = stage(x);\n";
        assert_eq!(offset(text, Position::new(1, 5)), 4);
        assert_eq!(offset(text, Position::new(2, 9)), 11 + 9);
        assert_eq!(&text[offset(text, Position::new(2, 9))..][..5], "stage");
        assert_eq!(offset(text, Position::new(9, 1)), text.len());
    }

    #[test]
    fn needles_find_keys_in_the_call() {
        let text = r#"p.stage("x", #{ hostname: "a", "domain": 1 });"#;
        let from = 7;
        assert_eq!(
            find_in_call(text, from, &Needle::Key("domain".into())).map(|r| &text[r]),
            Some("\"domain\"")
        );
        assert_eq!(
            find_in_call(text, from, &Needle::Key("hostname".into())).map(|r| &text[r]),
            Some("hostname")
        );
        assert_eq!(find_in_call(text, from, &Needle::Key("host".into())), None);
    }

    #[test]
    fn every_module_and_the_prelude_list_their_signatures() {
        assert_eq!(
            script_signatures(super::super::modules::PRELUDE, "file").unwrap(),
            ["(path, content)", "(path, content, mode)"]
        );
        for (name, text) in STDLIB.iter().chain([&("prelude", super::super::modules::PRELUDE)]) {
            let ast = parser().compile(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            let public: Vec<_> = ast
                .iter_functions()
                .filter(|f| f.access == rhai::FnAccess::Public)
                .collect();
            assert!(!public.is_empty(), "{name}");
            for f in public {
                assert!(script_signatures(text, f.name).is_some(), "{name}: {}", f.name);
            }
        }
        // Private functions are not offered.
        assert_eq!(script_signatures(STDLIB[1].1, "assemble"), None);
        assert_eq!(
            import_path("import \"users\" as u;\nimport \"./lib/x\"  as  xs;", "xs").as_deref(),
            Some("./lib/x")
        );
        assert_eq!(import_path("import \"users\" as users2;", "users"), None);
    }

    #[test]
    fn needles_find_values_and_arguments() {
        let text = r#"p.files(#{ "/a": #{ mode: 1 }, "/b": #{ content: "x, }", mode: [1, 2] } }, f(1, 2), "c");"#;
        let from = 7;
        let find = |n: Needle| find_in_call(text, from, &n).map(|r| &text[r]);
        let keys = |k: &[&str]| Needle::Value(k.iter().map(|k| k.to_string()).collect());
        assert_eq!(find(keys(&["mode"])), Some("1"));
        assert_eq!(find(keys(&["/b", "mode"])), Some("[1, 2]"));
        assert_eq!(find(keys(&["/b", "content"])), Some(r#""x, }""#));
        assert_eq!(find(keys(&["/c", "mode"])), None);
        assert_eq!(find(keys(&["/b", "mode", "1"])), Some("2"));
        assert_eq!(find(keys(&["/b", "mode", "2"])), None);
        assert_eq!(find(Needle::Argument(1)), Some("f(1, 2)"));
        assert_eq!(find(Needle::Argument(2)), Some(r#""c""#));
        assert_eq!(find(Needle::Argument(3)), None);
        assert!(find(Needle::Argument(0)).unwrap().starts_with("#{ \"/a\""));
        let empty = "f( )";
        assert_eq!(find_in_call(empty, 1, &Needle::Argument(0)), None);
    }
}
