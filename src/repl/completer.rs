//! Tab completion: REPL commands; stdlib modules inside `import "`; module
//! functions after `alias::`; pipeline methods after `.`; variables,
//! functions and the API by name; stage names inside `stage("`; and that
//! stage's option keys (nested ones too) inside its `#{ }`.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};

use osbuild_stages::Kind as StageKind;
use reedline::{Completer, CompletionResult, Span, Suggestion};
use serde_json::Value;

use crate::registry::Registry;
use crate::script::modules::{PRELUDE, STDLIB};

use super::lexer::{tokenize, Kind, Token, KEYWORDS};
use super::session::{function_names, Names};

/// The REPL's commands, with what they do.
pub const COMMANDS: &[(&str, &str)] = &[
    (":help", "what the REPL can do"),
    (":stages", "every stage, or one's options with docs: :stages [NAME]"),
    (":json", "the canonical JSON of a pipeline: :json EXPR"),
    (":inspect", "ids and what is stored: :inspect EXPR"),
    (
        ":build",
        "build a pipeline, or every emitted image: :build [EXPR] [-o DIR]",
    ),
    (":load", "load a script into the session: :load FILE"),
    (":reset", "clear the session"),
    (":quit", "leave the REPL"),
];

/// Functions of the core API scripts call by name.
const API: &[&str] = &[
    "pipeline",
    "emit",
    "param",
    "read_file",
    "uuid",
    "cartesian_product",
    "print",
    "debug",
    "type_of",
];

/// Methods and properties of a pipeline from the core API (the prelude adds more).
const PIPELINE_METHODS: &[&str] = &["stage", "assembler", "build", "base", "named", "name", "meta", "stages"];

pub struct ReplCompleter {
    registry: Arc<Registry>,
    names: Arc<Mutex<Names>>,
    methods: BTreeSet<String>,
}

impl ReplCompleter {
    pub fn new(registry: Arc<Registry>, names: Arc<Mutex<Names>>) -> Self {
        let mut methods = function_names(PRELUDE);
        methods.extend(PIPELINE_METHODS.iter().map(|m| m.to_string()));
        ReplCompleter {
            registry,
            names,
            methods,
        }
    }

    /// Suggestions for `line` with the cursor at `pos`.
    pub fn suggest(&self, line: &str, pos: usize) -> Vec<Suggestion> {
        let before = &line[..pos];
        let trimmed = before.trim_start();
        if !trimmed.starts_with(':') {
            return self.code(line, pos, 0);
        }
        let lead = before.len() - trimmed.len();
        let Some(space) = trimmed.find(char::is_whitespace) else {
            return COMMANDS
                .iter()
                .filter(|(c, _)| c.starts_with(trimmed))
                .map(|(c, doc)| suggestion(c, Some(doc), lead, pos, true))
                .collect();
        };
        let command = &trimmed[..space];
        let word_start = before.rfind(char::is_whitespace).map_or(0, |i| i + 1);
        let word = &before[word_start..];
        match command {
            ":stages" => [StageKind::Stage, StageKind::Assembler]
                .into_iter()
                .flat_map(|k| self.registry.names(k))
                .filter(|n| n.starts_with(word))
                .map(|n| suggestion(n, None, word_start, pos, false))
                .collect(),
            ":load" => files(word, word_start, pos),
            ":json" | ":inspect" | ":build" => {
                let start = lead + space;
                if word == "-o" || before[..word_start].trim_end().ends_with(" -o") {
                    return files(word, word_start, pos);
                }
                self.code(&line[start..], pos - start, start)
            }
            _ => Vec::new(),
        }
    }

    /// Completions in Rhai code; spans are shifted by `offset`.
    fn code(&self, text: &str, pos: usize, offset: usize) -> Vec<Suggestion> {
        let tokens = tokenize(&text[..pos]);
        let significant: Vec<Token> = tokens
            .iter()
            .copied()
            .filter(|t| !matches!(t.kind, Kind::Space | Kind::Comment))
            .collect();
        let names = self.names.lock().unwrap().clone();

        // Inside a string that is still open.
        if let Some(last) = tokens.last().filter(|t| t.kind == (Kind::Str { closed: false })) {
            if !text[last.start..].starts_with('"') {
                return Vec::new();
            }
            let prefix = &text[last.start + 1..pos];
            let close = if text[pos..].starts_with('"') { "" } else { "\"" };
            let before: Vec<&str> = significant[..significant.len() - 1]
                .iter()
                .map(|t| t.text(text))
                .collect();
            let candidates: Vec<String> = match before.as_slice() {
                [.., "stage", "("] => self
                    .registry
                    .names(StageKind::Stage)
                    .iter()
                    .map(|n| n.to_string())
                    .collect(),
                [.., "assembler", "("] => self
                    .registry
                    .names(StageKind::Assembler)
                    .iter()
                    .map(|n| n.to_string())
                    .collect(),
                [.., "import"] => STDLIB.iter().map(|(n, _)| n.to_string()).collect(),
                _ => Vec::new(),
            };
            return candidates
                .iter()
                .filter(|c| c.starts_with(prefix))
                .map(|c| {
                    suggestion(
                        &format!("{c}{close}"),
                        None,
                        offset + last.start + 1,
                        offset + pos,
                        false,
                    )
                })
                .collect();
        }

        // A name being typed, possibly empty.
        let (start, prefix, before) = match significant.last() {
            Some(t) if matches!(t.kind, Kind::Ident | Kind::Keyword) && t.end == pos => {
                (t.start, t.text(text), &significant[..significant.len() - 1])
            }
            _ => (pos, "", &significant[..]),
        };
        let make = |candidates: Vec<(String, Option<String>)>| -> Vec<Suggestion> {
            candidates
                .into_iter()
                .filter(|(c, _)| c.starts_with(prefix))
                .map(|(c, d)| suggestion(&c, d.as_deref(), offset + start, offset + pos, false))
                .collect()
        };
        match before.last().map(|t| t.text(text)) {
            Some(".") => return make(self.methods.iter().map(|m| (m.clone(), None)).collect()),
            Some("::") => {
                let module = before
                    .len()
                    .checked_sub(2)
                    .map(|i| before[i].text(text))
                    .unwrap_or_default();
                let functions = names.modules.get(module).cloned().unwrap_or_default();
                return make(functions.into_iter().map(|f| (f, None)).collect());
            }
            _ => {}
        }
        if let Some(schema) = self.option_keys_at(text, before) {
            let props = schema.get("properties").and_then(Value::as_object);
            return make(
                props
                    .into_iter()
                    .flatten()
                    .map(|(key, prop)| {
                        let doc = prop
                            .get("description")
                            .and_then(Value::as_str)
                            .and_then(|d| d.lines().next())
                            .map(|d| format!("{}: {d}", crate::docs::type_name(prop)))
                            .unwrap_or_else(|| crate::docs::type_name(prop));
                        (key.clone(), Some(doc))
                    })
                    .collect(),
            );
        }
        if prefix.is_empty() {
            return Vec::new();
        }
        let mut all: BTreeSet<String> = BTreeSet::new();
        all.extend(names.variables.iter().cloned());
        all.extend(names.functions.iter().cloned());
        all.extend(names.modules.keys().map(|m| format!("{m}::")));
        all.extend(API.iter().map(|a| a.to_string()));
        all.extend(KEYWORDS.iter().map(|k| k.to_string()));
        make(all.into_iter().map(|c| (c, None)).collect())
    }

    /// The schema of the options map whose key is being typed, if the cursor
    /// is at a key of a stage's options (or of a map nested in them).
    fn option_keys_at(&self, text: &str, tokens: &[Token]) -> Option<Value> {
        enum Frame {
            Call {
                kind: Option<StageKind>,
                args: usize,
                name: Option<String>,
            },
            Map {
                schema: Option<Value>,
                expect_key: bool,
                key: Option<String>,
            },
            Array {
                items: Option<Value>,
            },
            Block,
        }
        let property = |schema: &Option<Value>, key: &Option<String>| -> Option<Value> {
            schema.as_ref()?.get("properties")?.get(key.as_ref()?).cloned()
        };
        let mut stack: Vec<Frame> = Vec::new();
        for (i, t) in tokens.iter().enumerate() {
            let s = t.text(text);
            match (t.kind, s) {
                (Kind::Punct, "(") => {
                    let kind = match i.checked_sub(1).map(|j| tokens[j].text(text)) {
                        Some("stage") => Some(StageKind::Stage),
                        Some("assembler") => Some(StageKind::Assembler),
                        _ => None,
                    };
                    stack.push(Frame::Call {
                        kind,
                        args: 0,
                        name: None,
                    });
                }
                (Kind::Punct, "[") => {
                    let items = match stack.last() {
                        Some(Frame::Map { schema, key, .. }) => {
                            property(schema, key).and_then(|p| p.get("items").cloned())
                        }
                        Some(Frame::Array { items: Some(items) }) => items.get("items").cloned(),
                        _ => None,
                    };
                    stack.push(Frame::Array { items });
                }
                (Kind::Punct, "#{") => {
                    let schema = match stack.last() {
                        Some(Frame::Call {
                            kind: Some(kind),
                            args: 1,
                            name: Some(name),
                        }) => self.registry.get(*kind, name).and_then(|d| d.schema()),
                        Some(Frame::Map { schema, key, .. }) => property(schema, key),
                        Some(Frame::Array { items }) => items.clone(),
                        _ => None,
                    };
                    stack.push(Frame::Map {
                        schema,
                        expect_key: true,
                        key: None,
                    });
                }
                (Kind::Punct, "{") => stack.push(Frame::Block),
                (Kind::Punct, ")" | "]" | "}") => {
                    stack.pop();
                }
                (Kind::Punct, ",") => match stack.last_mut() {
                    Some(Frame::Call { args, .. }) => *args += 1,
                    Some(Frame::Map { expect_key, key, .. }) => {
                        *expect_key = true;
                        *key = None;
                    }
                    _ => {}
                },
                (Kind::Punct, ":") => {
                    if let Some(Frame::Map { expect_key, .. }) = stack.last_mut() {
                        *expect_key = false;
                    }
                }
                (Kind::Str { closed: true }, _) => {
                    let unquoted = s[1..s.len() - 1].to_string();
                    match stack.last_mut() {
                        Some(Frame::Call { args: 0, name, .. }) => *name = Some(unquoted),
                        Some(Frame::Map {
                            expect_key: true, key, ..
                        }) => *key = Some(unquoted),
                        _ => {}
                    }
                }
                (Kind::Ident | Kind::Keyword, _) => {
                    if let Some(Frame::Map {
                        expect_key: true, key, ..
                    }) = stack.last_mut()
                    {
                        *key = Some(s.to_string());
                    }
                }
                _ => {}
            }
        }
        match stack.pop() {
            Some(Frame::Map {
                schema: Some(schema),
                expect_key: true,
                key: None,
            }) => Some(schema),
            _ => None,
        }
    }
}

fn suggestion(value: &str, description: Option<&str>, start: usize, end: usize, space: bool) -> Suggestion {
    Suggestion {
        value: value.to_string(),
        description: description.map(str::to_string),
        span: Span::new(start, end),
        append_whitespace: space,
        ..Default::default()
    }
}

/// File names starting with `word` (a path typed so far).
fn files(word: &str, start: usize, end: usize) -> Vec<Suggestion> {
    let (dir, prefix) = match word.rfind('/') {
        Some(i) => (&word[..=i], &word[i + 1..]),
        None => ("", word),
    };
    let Ok(entries) = std::fs::read_dir(if dir.is_empty() { Path::new(".") } else { Path::new(dir) }) else {
        return Vec::new();
    };
    let mut found: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.starts_with(prefix) || (name.starts_with('.') && !prefix.starts_with('.')) {
                return None;
            }
            let slash = if e.path().is_dir() { "/" } else { "" };
            Some(format!("{dir}{name}{slash}"))
        })
        .collect();
    found.sort();
    found.iter().map(|f| suggestion(f, None, start, end, false)).collect()
}

impl Completer for ReplCompleter {
    fn complete(&mut self, line: &str, pos: usize) -> CompletionResult {
        CompletionResult::fresh(self.suggest(line, pos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn completer() -> ReplCompleter {
        let names = Names {
            variables: ["web".to_string(), "base".to_string()].into(),
            functions: ["webify".to_string()].into(),
            modules: [("debian".to_string(), ["image".to_string(), "base".to_string()].into())].into(),
        };
        ReplCompleter::new(Arc::new(Registry::load(None).unwrap()), Arc::new(Mutex::new(names)))
    }

    fn values(line: &str) -> Vec<String> {
        completer()
            .suggest(line, line.len())
            .into_iter()
            .map(|s| s.value)
            .collect()
    }

    #[test]
    fn every_stdlib_function_is_known() {
        // A module the parser refused (too deeply nested, say) would offer nothing.
        let prelude = function_names(PRELUDE);
        assert!(prelude.contains("hostname") && prelude.contains("files"), "{prelude:?}");
        for (name, text) in STDLIB {
            assert!(!function_names(text).is_empty(), "{name}");
        }
    }

    #[test]
    fn stage_names_inside_stage() {
        assert_eq!(values("p.stage(\"org.osbuild.host"), ["org.osbuild.hostname\""]);
        assert!(values("p.assembler(\"org.osbuild.").contains(&"org.osbuild.tar\"".to_string()));
        assert!(!values("p.assembler(\"org.osbuild.").contains(&"org.osbuild.mkdir\"".to_string()));
        assert_eq!(values("import \"deb"), ["debian\""]);
    }

    #[test]
    fn option_keys_inside_the_options_map() {
        assert_eq!(values("p.stage(\"org.osbuild.hostname\", #{ host"), ["hostname"]);
        assert_eq!(values("p.stage(\"org.osbuild.hostname\", #{ "), ["hostname"]);
        // Nested: the keys of an entry of `paths`.
        let nested = values("p.stage(\"org.osbuild.mkdir\", #{ paths: [#{ path: \"/a\", mo");
        assert_eq!(nested, ["mode"]);
        // A value is not a key.
        assert!(values("p.stage(\"org.osbuild.hostname\", #{ hostname: ho").is_empty());
    }

    #[test]
    fn names_methods_modules_and_commands() {
        assert_eq!(values("let x = we"), ["web", "webify"]);
        assert!(values("web.host").contains(&"hostname".to_string()));
        assert!(values("web.sta").contains(&"stage".to_string()));
        assert_eq!(values("debian::im"), ["image"]);
        assert_eq!(values(":st"), [":stages"]);
        assert_eq!(values(":stages org.osbuild.hostn"), ["org.osbuild.hostname"]);
        assert_eq!(values(":json web.sta").first().map(String::as_str), Some("stage"));
        assert!(values("pipe").contains(&"pipeline".to_string()));
    }
}
