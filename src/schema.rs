//! JSON Schema for the options of user-supplied stages, with the `jsonschema` crate.
//!
//! A stage program may ship `<name>.meta.json` with a JSON Schema for its options.
//! [`Schema::new`] (and [`check_schema`]) checks the schema itself when stages are
//! loaded; [`Schema::validate`] reports every way an options value breaks it, each
//! with the path to the offending value, so that the manifest check can point at it.
//!
//! - The draft comes from `$schema` (draft-04, -06, -07, 2019-09 and 2020-12). Without
//!   one, the schema is draft-04, as osbuild's own stage schemas are (osbuild checks
//!   them with a draft-04 validator): keywords beside a `$ref` are ignored, `1.0` is
//!   not an integer, boolean subschemas are not allowed. A schema without `$schema`
//!   that uses a keyword from a later draft (`const`, `if`, `prefixItems`, ...) is
//!   refused at load, rather than having that keyword ignored.
//! - Every keyword of the draft is checked, `pattern` (ECMA 262 style, lookarounds
//!   included) and `format` (`uuid`, `ipv4`, `hostname`, `date-time`, ...; unknown
//!   formats are ignored) too.
//! - `$ref` works within the schema (`#/definitions/...`, `#/$defs/...`, `$id`
//!   anchors); nothing is ever fetched, from the network or from files.

use std::cmp::Ordering;
use std::fmt;

use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::{Draft, ValidationError};
use osbuild_stages::PathSegment;
use serde_json::{Map, Value};

/// One way the instance breaks the schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaError {
    /// From the instance's root down to the offending value (the object itself for a
    /// missing key; the key for an unknown one).
    pub path: Vec<PathSegment>,
    pub message: String,
}

/// A checked and compiled schema, ready to validate options.
#[derive(Clone)]
pub struct Schema {
    root: Value,
    validator: jsonschema::Validator,
}

impl fmt::Debug for Schema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Schema")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl Schema {
    /// Checks `schema` against its draft's meta-schema (and, without `$schema`, for
    /// keywords draft-04 would ignore), then compiles it: refs must resolve, patterns
    /// must be regular expressions. The message names the place in the schema.
    pub fn new(schema: &Value) -> Result<Schema, String> {
        let (draft, declared) = draft_of(schema)?;
        let meta = meta_validator(draft);
        let raw: Vec<ValidationError> = meta.iter_errors(schema).collect();
        let meta_errors: Vec<String> = raw.iter().map(meta_message).collect();
        if !meta_errors.is_empty() {
            // Say why draft-04 when the schema would do as a later draft (whose
            // meta-schema does not check the regex format).
            let bad_regex = raw
                .iter()
                .any(|e| matches!(e.kind(), ValidationErrorKind::Format { .. }));
            let hint = if !declared && !bad_regex && meta_validator(Draft::Draft202012).is_valid(schema) {
                format!(" (a schema without \"$schema\" is draft-04, as osbuild's are; {ADD_SCHEMA})")
            } else {
                String::new()
            };
            return Err(format!("{}{hint}", list(&meta_errors)));
        }
        if !declared {
            later_keywords(schema, "#")?;
        }
        let validator = jsonschema::options()
            .with_draft(draft)
            .should_validate_formats(true)
            // Defined from 2019-09 on; osbuild-style draft-04 schemas use it too.
            .with_format("uuid", is_uuid)
            .with_retriever(NoRemote)
            .build(schema)
            .map_err(|e| compile_message(&e))?;
        Ok(Schema {
            root: schema.clone(),
            validator,
        })
    }

    /// Every way `instance` breaks the schema, in document order; empty when it is
    /// valid. Where a value has the wrong type, nothing else is said about it.
    pub fn validate(&self, instance: &Value) -> Vec<SchemaError> {
        let raw: Vec<ValidationError> = self.validator.iter_errors(instance).collect();
        // (instance path, schema object) of each type mismatch.
        let mistyped: Vec<(String, String)> = raw
            .iter()
            .filter(|e| matches!(e.kind(), ValidationErrorKind::Type { .. }))
            .map(|e| {
                (
                    e.instance_path().as_str().to_string(),
                    parent(e.schema_path().as_str()).to_string(),
                )
            })
            .collect();
        let mut errors = Vec::new();
        for e in &raw {
            let is_type = matches!(e.kind(), ValidationErrorKind::Type { .. });
            let here = (
                e.instance_path().as_str().to_string(),
                parent(e.schema_path().as_str()).to_string(),
            );
            if !is_type && mistyped.contains(&here) {
                continue;
            }
            self.explain(e, instance, &mut errors);
        }
        errors.sort_by(|a, b| cmp_paths(&a.path, &b.path));
        errors
    }

    /// The value of the keyword an error is about, found in the root schema.
    fn keyword(&self, e: &ValidationError) -> Option<&Value> {
        self.root.pointer(e.schema_path().as_str())
    }

    /// The schema object holding the keyword an error is about.
    fn holder(&self, e: &ValidationError) -> Option<&Map<String, Value>> {
        self.root.pointer(parent(e.schema_path().as_str()))?.as_object()
    }

    /// Turns one error of the crate into ours (or several: one per unknown key,
    /// duplicate or extra item), appending to `out`.
    fn explain(&self, e: &ValidationError, root_instance: &Value, out: &mut Vec<SchemaError>) {
        let path = to_path(root_instance, e.instance_path().as_str());
        let inst: &Value = e.instance();
        let at = |path: Vec<PathSegment>, message: String| SchemaError { path, message };
        use ValidationErrorKind as K;
        let message = match e.kind() {
            K::AdditionalProperties { unexpected } | K::UnevaluatedProperties { unexpected } => {
                let known: Vec<&str> = self
                    .holder(e)
                    .and_then(|s| s.get("properties"))
                    .and_then(Value::as_object)
                    .map(|p| {
                        p.keys()
                            .filter(|k| inst.get(k.as_str()).is_none())
                            .map(String::as_str)
                            .collect()
                    })
                    .unwrap_or_default();
                for key in unexpected {
                    let hint = crate::diagnostic::suggest(key, known.iter().copied())
                        .map(|k| format!(" (did you mean {}?)", quote(k)))
                        .unwrap_or_default();
                    let mut p = path.clone();
                    p.push(PathSegment::Key(key.clone()));
                    out.push(at(p, format!("unknown option {}{hint}", quote(key))));
                }
                return;
            }
            K::AdditionalItems { limit } => {
                let len = inst.as_array().map_or(0, Vec::len);
                for i in *limit..len {
                    let mut p = path.clone();
                    p.push(PathSegment::Index(i));
                    out.push(at(p, too_many_items(*limit)));
                }
                return;
            }
            K::UniqueItems => {
                let items = inst.as_array().map(Vec::as_slice).unwrap_or_default();
                for (i, item) in items.iter().enumerate() {
                    if let Some(j) = items[..i].iter().position(|earlier| json_eq(earlier, item)) {
                        let mut p = path.clone();
                        p.push(PathSegment::Index(i));
                        out.push(at(p, format!("duplicate of item {j} (items must be unique)")));
                    }
                }
                return;
            }
            K::PropertyNames { error } => {
                let mut p = path.clone();
                let name = error.instance().as_str().unwrap_or_default().to_string();
                p.push(PathSegment::Key(name.clone()));
                let mut inner = Vec::new();
                self.explain(error, error.instance(), &mut inner);
                for i in inner {
                    out.push(at(
                        p.clone(),
                        format!("invalid option name {}: {}", quote(&name), i.message),
                    ));
                }
                return;
            }
            K::Type { .. } => {
                let names = type_names(e.kind()).unwrap_or_default();
                format!("expected {}, found {}", join_or(&names), describe(inst))
            }
            K::Required { property } => {
                let name = property.as_str().unwrap_or_default();
                let requirer = e
                    .schema_path()
                    .as_str()
                    .rsplit('/')
                    .next()
                    .filter(|k| *k == "dependencies" || *k == "dependentRequired")
                    .and_then(|_| self.keyword(e))
                    .and_then(Value::as_object)
                    .and_then(|deps| {
                        deps.iter().find(|(k, needed)| {
                            inst.get(k.as_str()).is_some()
                                && needed.as_array().is_some_and(|n| n.iter().any(|n| n == property))
                        })
                    })
                    .map(|(k, _)| k.clone());
                match requirer {
                    Some(k) => format!("option {} requires option {}", quote(&k), quote(name)),
                    None => format!("missing required option {}", quote(name)),
                }
            }
            K::Enum { options } => one_of_message(options.as_array().map(Vec::as_slice).unwrap_or_default()),
            K::Constant { expected_value } => format!("must be {}", short_json(expected_value)),
            K::Minimum { limit } => format!("must be at least {limit}"),
            K::Maximum { limit } => format!("must be at most {limit}"),
            K::ExclusiveMinimum { limit } => format!("must be greater than {limit}"),
            K::ExclusiveMaximum { limit } => format!("must be less than {limit}"),
            K::MultipleOf { multiple_of } => match self.keyword(e) {
                Some(Value::Number(n)) => format!("must be a multiple of {n}"),
                _ => format!("must be a multiple of {multiple_of}"),
            },
            K::MinLength { limit: 1 } => "must not be empty".to_string(),
            K::MinLength { limit } => format!("must be at least {} long", plural(*limit, "character", "characters")),
            K::MaxLength { limit } => format!("must be at most {} long", plural(*limit, "character", "characters")),
            K::MinItems { limit } => format!("must have at least {}", plural(*limit, "item", "items")),
            K::MaxItems { limit } => format!("must have at most {}", plural(*limit, "item", "items")),
            K::MinProperties { limit } => format!("must have at least {}", plural(*limit, "option", "options")),
            K::MaxProperties { limit } => format!("must have at most {}", plural(*limit, "option", "options")),
            K::Pattern { pattern } => format!("must match the pattern `{pattern}`"),
            K::Format { format } => format!("must be {}", format_name(format)),
            K::Contains => {
                let s = self.holder(e);
                let count = |k: &str| s.and_then(|s| s.get(k)).and_then(Value::as_u64);
                match (count("minContains").unwrap_or(1), count("maxContains")) {
                    (1, None) => "must contain an item matching the \"contains\" schema".to_string(),
                    (min, None) => format!(
                        "must contain at least {} matching the \"contains\" schema",
                        plural(min, "item", "items")
                    ),
                    (min, Some(max)) => format!(
                        "must contain at least {min} and at most {} matching the \"contains\" schema",
                        plural(max, "item", "items")
                    ),
                }
            }
            K::FalseSchema => {
                let prefix = e
                    .schema_path()
                    .as_str()
                    .ends_with("/items")
                    .then(|| {
                        self.holder(e)
                            .and_then(|s| s.get("prefixItems"))
                            .and_then(Value::as_array)
                    })
                    .flatten();
                match (prefix, path.last()) {
                    (Some(p), _) => too_many_items(p.len()),
                    (None, Some(PathSegment::Key(k))) => format!("option {} is not allowed", quote(k)),
                    _ => "no value is allowed here".to_string(),
                }
            }
            K::UnevaluatedItems { .. } => "has items that no schema allows".to_string(),
            K::Not { .. } => "must not match the schema in \"not\"".to_string(),
            K::AnyOf { context } => self.alternatives(context, &path, root_instance, inst, "anyOf"),
            K::OneOfNotValid { context } => self.alternatives(context, &path, root_instance, inst, "oneOf"),
            K::OneOfMultipleValid { context } => {
                let matched: Vec<String> = context
                    .iter()
                    .enumerate()
                    .filter(|(_, errs)| errs.is_empty())
                    .map(|(i, _)| (i + 1).to_string())
                    .collect();
                format!(
                    "must match exactly one of {} alternatives (oneOf), but matches {}",
                    context.len(),
                    join_and(&matched, "alternatives")
                )
            }
            K::ContentEncoding { content_encoding } => format!("must be {content_encoding}-encoded"),
            K::ContentMediaType { content_media_type } => format!("must be valid {content_media_type}"),
            K::FromUtf8 { .. } => "does not decode to UTF-8 text".to_string(),
            K::BacktrackLimitExceeded { error } => format!("cannot check the pattern: {error}"),
            K::RegexEngineFailure { message } => format!("cannot check the pattern: {message}"),
            K::Custom { message, .. } => message.clone(),
            K::Referencing(r) => format!("invalid schema: {r}"),
        };
        out.push(at(path, message));
    }

    /// The message for `anyOf`/`oneOf` when no alternative matches: the types that
    /// would do when only types failed, else each alternative's first complaint.
    fn alternatives(
        &self,
        context: &[Vec<ValidationError<'static>>],
        path: &[PathSegment],
        root_instance: &Value,
        inst: &Value,
        keyword: &str,
    ) -> String {
        let explained: Vec<Vec<SchemaError>> = context
            .iter()
            .map(|errs| {
                let mut out = Vec::new();
                for e in errs {
                    self.explain(e, root_instance, &mut out);
                }
                out.sort_by(|a, b| cmp_paths(&a.path, &b.path));
                out
            })
            .collect();
        let mut types: Vec<String> = Vec::new();
        let only_types = context.iter().all(|errs| match errs.as_slice() {
            [e] if to_path(root_instance, e.instance_path().as_str()) == path => match type_names(e.kind()) {
                Some(names) => {
                    for n in names {
                        if !types.contains(&n) {
                            types.push(n);
                        }
                    }
                    true
                }
                None => false,
            },
            _ => false,
        });
        if only_types && !context.is_empty() {
            return format!("expected {}, found {}", join_or(&types), describe(inst));
        }
        let reasons: Vec<String> = explained
            .iter()
            .enumerate()
            .map(|(i, errs)| {
                let Some(first) = errs.first() else {
                    return format!("({})", i + 1);
                };
                let more = if errs.len() > 1 {
                    format!(" (and {} more)", errs.len() - 1)
                } else {
                    String::new()
                };
                let at = if first.path.len() > path.len() {
                    format!("at {}: ", show_path(&first.path[path.len()..]))
                } else {
                    String::new()
                };
                format!("({}) {at}{}{more}", i + 1, first.message)
            })
            .collect();
        let lead = match (context.len(), keyword) {
            (1, _) => format!("does not match the only alternative of {keyword}"),
            (n, "oneOf") => format!("must match exactly one of {n} alternatives (oneOf), but matches none"),
            (n, _) => format!("must match at least one of {n} alternatives (anyOf), but matches none"),
        };
        format!("{lead}: {}", reasons.join("; "))
    }
}

/// Every way `instance` breaks `schema` (compiled for this one call); empty when it
/// is valid. A schema that does not compile gives one error at the root. For tests
/// only: the registry compiles each stage's schema once, when it loads the libdir,
/// and validates every use of the stage with that [`Schema`].
#[cfg(test)]
pub fn validate(schema: &Value, instance: &Value) -> Vec<SchemaError> {
    match Schema::new(schema) {
        Ok(s) => s.validate(instance),
        Err(message) => vec![SchemaError {
            path: Vec::new(),
            message: format!("invalid schema: {message}"),
        }],
    }
}

/// Checks that `schema` is a well-formed schema of its draft (see [`Schema::new`]).
pub fn check_schema(schema: &Value) -> Result<(), String> {
    Schema::new(schema).map(|_| ())
}

/// The draft a schema is checked with, and whether it says so itself.
fn draft_of(schema: &Value) -> Result<(Draft, bool), String> {
    match schema.get("$schema") {
        // A boolean schema has no keywords: any draft that allows it will do.
        None if schema.is_boolean() => Ok((Draft::Draft202012, true)),
        None => Ok((Draft::Draft4, false)),
        Some(Value::String(uri)) => match Draft::from_schema_uri(uri) {
            Draft::Unknown => Err(format!(
                "#: unsupported \"$schema\" {}: use draft-04, -06, -07, 2019-09 or 2020-12 (e.g. \"https://json-schema.org/draft/2020-12/schema\")",
                quote(uri)
            )),
            draft => Ok((draft, true)),
        },
        Some(other) => Err(format!("#: \"$schema\" must be a string, found {}", describe(other))),
    }
}

fn meta_validator(draft: Draft) -> jsonschema::meta::MetaValidator<'static> {
    match draft {
        Draft::Draft4 => jsonschema::draft4::meta::validator(),
        Draft::Draft6 => jsonschema::draft6::meta::validator(),
        Draft::Draft7 => jsonschema::draft7::meta::validator(),
        Draft::Draft201909 => jsonschema::draft201909::meta::validator(),
        _ => jsonschema::draft202012::meta::validator(),
    }
}

const ADD_SCHEMA: &str =
    "add \"$schema\": \"https://json-schema.org/draft/2020-12/schema\" (or the draft it is written for)";

/// Keywords that only later drafts define: draft-04 would ignore them silently.
const LATER_KEYWORDS: [&str; 16] = [
    "const",
    "contains",
    "propertyNames",
    "if",
    "then",
    "else",
    "prefixItems",
    "dependentRequired",
    "dependentSchemas",
    "minContains",
    "maxContains",
    "unevaluatedProperties",
    "unevaluatedItems",
    "$anchor",
    "$dynamicRef",
    "$recursiveRef",
];

/// Refuses, in a schema taken as draft-04, a keyword that only later drafts define.
/// Walks the places draft-04 has subschemas (the meta-schema check passed already).
fn later_keywords(schema: &Value, loc: &str) -> Result<(), String> {
    let Value::Object(s) = schema else {
        return Ok(());
    };
    if let Some(k) = LATER_KEYWORDS.iter().find(|k| s.contains_key(**k)) {
        return Err(format!(
            "{loc}: {} is not a draft-04 keyword, and a schema without \"$schema\" is draft-04 (as osbuild's are), \
             which would ignore it; {ADD_SCHEMA}",
            quote(k)
        ));
    }
    for (key, value) in s {
        let here = format!("{loc}/{}", escape_token(key));
        match (key.as_str(), value) {
            ("properties" | "patternProperties" | "definitions" | "dependencies", Value::Object(map)) => {
                for (name, sub) in map {
                    later_keywords(sub, &format!("{here}/{}", escape_token(name)))?;
                }
            }
            ("items" | "allOf" | "anyOf" | "oneOf", Value::Array(subs)) => {
                for (i, sub) in subs.iter().enumerate() {
                    later_keywords(sub, &format!("{here}/{i}"))?;
                }
            }
            ("items" | "additionalItems" | "additionalProperties" | "not", sub) => later_keywords(sub, &here)?,
            _ => {}
        }
    }
    Ok(())
}

/// The `uuid` format: the hyphenated form, any version, any case (the rule
/// every built-in stage and assembler applies, `osbuild_stages::ids`).
fn is_uuid(s: &str) -> bool {
    osbuild_stages::ids::parse_uuid(s).is_ok()
}

/// Refuses every `$ref` outside the schema: nothing is fetched, ever.
struct NoRemote;

impl jsonschema::Retrieve for NoRemote {
    fn retrieve(&self, uri: &jsonschema::Uri<String>) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        Err(format!("{uri} is outside the schema; only refs within it (\"#/...\") are supported").into())
    }
}

/// A meta-schema complaint: where in the schema, and what, without dumping the
/// offending part of the schema whole.
fn meta_message(e: &ValidationError) -> String {
    let loc = schema_location(e.instance_path().as_str());
    let inst: &Value = e.instance();
    let what = match e.kind() {
        ValidationErrorKind::AnyOf { .. } if loc.ends_with("/type") || loc == "#/type" => format!(
            "{} is not a type: use one of \"array\", \"boolean\", \"integer\", \"null\", \"number\", \"object\", \"string\", or an array of them",
            short_json(inst)
        ),
        ValidationErrorKind::AnyOf { context } | ValidationErrorKind::OneOfNotValid { context } => {
            let here = e.instance_path();
            let mistyped = |c: &ValidationError| c.instance_path() == here && type_names(c.kind()).is_some();
            // The one alternative of the right type says what is wrong inside it.
            let fitting: Vec<&Vec<ValidationError>> =
                context.iter().filter(|errs| !errs.iter().any(mistyped)).collect();
            if let [errs] = fitting.as_slice() {
                if let Some(first) = errs.first() {
                    return meta_message(first);
                }
            }
            let mut types: Vec<String> = Vec::new();
            for c in context.iter().flatten().filter(|c| mistyped(c)) {
                for t in type_names(c.kind()).unwrap_or_default() {
                    if !types.contains(&t) {
                        types.push(t);
                    }
                }
            }
            if fitting.is_empty() && !types.is_empty() {
                format!("expected {}, found {}", join_or(&types), describe(inst))
            } else {
                format!("{} is not allowed here", short_json(inst))
            }
        }
        ValidationErrorKind::Format { format } if format == "regex" => {
            format!("{} is not a regular expression", short_json(inst))
        }
        _ => trim_instance(&e.to_string(), inst),
    };
    format!("{loc}: {what}")
}

/// The types a type mismatch asked for.
fn type_names(kind: &ValidationErrorKind) -> Option<Vec<String>> {
    match kind {
        ValidationErrorKind::Type {
            kind: TypeKind::Single(t),
        } => Some(vec![t.to_string()]),
        ValidationErrorKind::Type {
            kind: TypeKind::Multiple(set),
        } => Some(set.iter().map(|t| t.to_string()).collect()),
        _ => None,
    }
}

/// A compile error (a `$ref` that does not resolve, a pattern that is no regex).
fn compile_message(e: &ValidationError) -> String {
    use jsonschema::ReferencingError as R;
    let pointer = match e.instance_path().as_str() {
        "" => e.schema_path().as_str(),
        p => p,
    };
    let loc = schema_location(pointer);
    match e.kind() {
        ValidationErrorKind::Referencing(R::PointerToNowhere { pointer }) => {
            format!("$ref {} points at nothing in the schema", quote(&format!("#{pointer}")))
        }
        ValidationErrorKind::Referencing(R::Unretrievable { uri, .. }) => format!(
            "$ref {} is outside the schema: only refs within it (\"#/...\") are supported, nothing is fetched",
            quote(uri)
        ),
        ValidationErrorKind::Referencing(r) => format!("bad $ref: {r}"),
        ValidationErrorKind::Format { format } if format == "regex" => {
            format!("{loc}: {} is not a regular expression", short_json(e.instance()))
        }
        _ => format!("{loc}: {}", trim_instance(&e.to_string(), e.instance())),
    }
}

/// The crate's message starts with the offending value: shorten it if long.
fn trim_instance(message: &str, inst: &Value) -> String {
    let full = inst.to_string();
    match message.strip_prefix(&full) {
        Some(rest) if full.chars().count() > 60 => format!("{}{rest}", short_json(inst)),
        _ => message.to_string(),
    }
}

/// `#/properties/a` for the JSON pointer `/properties/a`.
fn schema_location(pointer: &str) -> String {
    format!("#{pointer}")
}

/// The JSON pointer of the object holding the last token of `pointer`.
fn parent(pointer: &str) -> &str {
    pointer.rfind('/').map_or("", |i| &pointer[..i])
}

/// A JSON pointer into `instance` as path segments: a token is an index where the
/// value it goes into is an array, a key otherwise (so the key `"0"` stays a key).
fn to_path(instance: &Value, pointer: &str) -> Vec<PathSegment> {
    let mut out = Vec::new();
    let Some(rest) = pointer.strip_prefix('/') else {
        return out;
    };
    let mut node = Some(instance);
    for raw in rest.split('/') {
        let token = raw.replace("~1", "/").replace("~0", "~");
        match (node, token.parse::<usize>()) {
            (Some(Value::Array(items)), Ok(i)) => {
                node = items.get(i);
                out.push(PathSegment::Index(i));
            }
            (Some(Value::Object(map)), _) => {
                node = map.get(&token);
                out.push(PathSegment::Key(token));
            }
            (None, Ok(i)) => out.push(PathSegment::Index(i)),
            _ => {
                node = None;
                out.push(PathSegment::Key(token));
            }
        }
    }
    out
}

/// Document order: a parent before its children, indexes by number, keys by name.
fn cmp_paths(a: &[PathSegment], b: &[PathSegment]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        let o = match (x, y) {
            (PathSegment::Index(i), PathSegment::Index(j)) => i.cmp(j),
            (PathSegment::Key(k), PathSegment::Key(l)) => k.cmp(l),
            (PathSegment::Index(_), PathSegment::Key(_)) => Ordering::Less,
            (PathSegment::Key(_), PathSegment::Index(_)) => Ordering::Greater,
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    a.len().cmp(&b.len())
}

/// Equality as JSON Schema defines it: numbers compare by value (`1` equals `1.0`).
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let int = |n: &serde_json::Number| n.as_i64().map(i128::from).or_else(|| n.as_u64().map(i128::from));
            match (int(x), int(y)) {
                (Some(i), Some(j)) => i == j,
                _ => x.as_f64() == y.as_f64(),
            }
        }
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

fn too_many_items(allowed: usize) -> String {
    format!(
        "too many items: at most {} allowed",
        plural(allowed as u64, "is", "are")
    )
}

/// "a valid UUID", "a valid IPv4 address", ...: what a `format` asks for.
fn format_name(format: &str) -> String {
    let name = match format {
        "uuid" => "UUID",
        "ipv4" => "IPv4 address",
        "ipv6" => "IPv6 address",
        "hostname" => "hostname",
        "idn-hostname" => "internationalized hostname",
        "email" => "email address",
        "idn-email" => "internationalized email address",
        "uri" => "URI",
        "uri-reference" => "URI reference",
        "iri" => "IRI",
        "iri-reference" => "IRI reference",
        "uri-template" => "URI template",
        "date-time" => "date and time (RFC 3339)",
        "date" => "date (YYYY-MM-DD)",
        "time" => "time (RFC 3339)",
        "duration" => "duration (ISO 8601)",
        "regex" => "regular expression",
        "json-pointer" => "JSON pointer",
        "relative-json-pointer" => "relative JSON pointer",
        other => return format!("a valid {}", quote(other)),
    };
    format!("a valid {name}")
}

fn quote(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

/// A value as JSON, cut short if long.
fn short_json(v: &Value) -> String {
    if let Value::String(s) = v {
        if s.chars().count() > 60 {
            let cut: String = s.chars().take(57).collect();
            return quote(&format!("{cut}..."));
        }
    }
    let text = v.to_string();
    if text.chars().count() > 60 {
        let cut: String = text.chars().take(57).collect();
        format!("{cut}...")
    } else {
        text
    }
}

/// "number 3", "string \"x\"", "array", ...: the found value, for messages.
fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".to_string(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(_) => format!("string {}", short_json(v)),
        Value::Array(_) => "array".to_string(),
        Value::Object(_) => "object".to_string(),
    }
}

fn one_of_message(options: &[Value]) -> String {
    match options {
        [] => "no value is allowed here (\"enum\" is empty)".to_string(),
        [only] => format!("must be {}", short_json(only)),
        _ => {
            const SHOWN: usize = 12;
            let mut shown: Vec<String> = options.iter().take(SHOWN).map(short_json).collect();
            if options.len() > SHOWN {
                shown.push(format!("... ({} choices in all)", options.len()));
            }
            format!("must be one of {}", shown.join(", "))
        }
    }
}

/// "a", "a or b", "a, b or c".
fn join_or(names: &[String]) -> String {
    match names {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// "alternative 1", "alternatives 1 and 2", "alternatives 1, 2 and 3".
fn join_and(items: &[String], noun: &str) -> String {
    match items {
        [] => String::new(),
        [one] => format!("{} {one}", noun.trim_end_matches('s')),
        [init @ .., last] => format!("{noun} {} and {last}", init.join(", ")),
    }
}

/// Several complaints about one schema in one message.
fn list(messages: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut unique: Vec<String> = Vec::new();
    for m in messages {
        if !unique.contains(m) {
            unique.push(m.clone());
        }
    }
    let messages = &unique;
    let mut text = messages.iter().take(SHOWN).cloned().collect::<Vec<_>>().join("; ");
    if messages.len() > SHOWN {
        text.push_str(&format!("; and {} more", messages.len() - SHOWN));
    }
    text
}

fn plural(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// A path relative to some value, like `paths[0].mode`.
fn show_path(path: &[PathSegment]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            PathSegment::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            PathSegment::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

fn escape_token(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn k(s: &str) -> PathSegment {
        PathSegment::Key(s.to_string())
    }
    fn i(n: usize) -> PathSegment {
        PathSegment::Index(n)
    }

    /// The schema with `"$schema"` set to 2020-12 (for keywords draft-04 lacks).
    fn d2020(mut schema: Value) -> Value {
        schema["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
        schema
    }

    /// (path, message) of every error.
    fn errs(schema: &Value, inst: Value) -> Vec<(Vec<PathSegment>, String)> {
        let compiled = Schema::new(schema).unwrap_or_else(|e| panic!("{schema}: {e}"));
        compiled
            .validate(&inst)
            .into_iter()
            .map(|e| (e.path, e.message))
            .collect()
    }

    fn one(schema: &Value, inst: Value) -> (Vec<PathSegment>, String) {
        let mut e = errs(schema, inst.clone());
        assert_eq!(e.len(), 1, "{inst}: {e:?}");
        e.remove(0)
    }

    fn msg(schema: &Value, inst: Value) -> String {
        one(schema, inst).1
    }

    fn valid(schema: &Value, inst: Value) {
        assert_eq!(errs(schema, inst.clone()), vec![], "{inst}");
    }

    fn bad_schema(schema: &Value) -> String {
        check_schema(schema).expect_err(&schema.to_string())
    }

    fn copy_schema() -> Value {
        json!({
            "additionalProperties": false,
            "required": ["paths"],
            "properties": {
                "paths": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "additionalProperties": false,
                        "required": ["path"],
                        "properties": {
                            "path": {"type": "string"},
                            "mode": {"type": "number", "default": 493},
                            "parents": {"type": "boolean"}
                        }
                    }
                }
            }
        })
    }

    #[test]
    fn osbuild_like_schema() {
        let s = copy_schema();
        check_schema(&s).unwrap();
        valid(&s, json!({"paths": []}));
        valid(
            &s,
            json!({"paths": [{"path": "/etc"}, {"path": "/var", "mode": 448, "parents": true}]}),
        );
        assert_eq!(
            one(&s, json!({})),
            (vec![], "missing required option \"paths\"".to_string())
        );
        assert_eq!(
            one(&s, json!({"paths": 3})),
            (vec![k("paths")], "expected array, found number 3".to_string())
        );
        // Every error at once, in document order.
        let e = errs(
            &s,
            json!({"paths": [{"path": 1}, {"mode": "0755", "parnets": true}], "extra": null}),
        );
        assert_eq!(
            e,
            vec![
                (vec![k("extra")], "unknown option \"extra\"".to_string()),
                (
                    vec![k("paths"), i(0), k("path")],
                    "expected string, found number 1".to_string()
                ),
                (vec![k("paths"), i(1)], "missing required option \"path\"".to_string()),
                (
                    vec![k("paths"), i(1), k("mode")],
                    "expected number, found string \"0755\"".to_string()
                ),
                (
                    vec![k("paths"), i(1), k("parnets")],
                    "unknown option \"parnets\" (did you mean \"parents\"?)".to_string()
                ),
            ]
        );
    }

    /// osbuild's stages guard paths with this pattern; it needs lookaheads.
    const OSBUILD_PATH: &str = "^\\/(?!\\.\\.)((?!\\/\\.\\.\\/).)+$";

    #[test]
    fn pattern_rejects_escaping_paths() {
        let s = json!({"properties": {"path": {"type": "string", "pattern": OSBUILD_PATH}}});
        check_schema(&s).unwrap();
        valid(&s, json!({"path": "/etc/shadow"}));
        valid(&s, json!({"path": "/a/..b/c.."}));
        for bad in ["../../etc/shadow", "/../etc/shadow", "/a/../../etc/shadow", "etc", "/"] {
            assert_eq!(
                one(&s, json!({ "path": bad })),
                (vec![k("path")], format!("must match the pattern `{OSBUILD_PATH}`")),
                "{bad}"
            );
        }
        // ECMA 262 semantics: a pattern matches anywhere unless anchored.
        valid(&json!({"pattern": "b"}), json!("abc"));
        assert_eq!(
            msg(&json!({"pattern": "^b"}), json!("abc")),
            "must match the pattern `^b`"
        );
        // Only strings are matched.
        valid(&json!({"pattern": "^b"}), json!(1));
        // patternProperties is evaluated too, and so additionalProperties beside it.
        let s = json!({"patternProperties": {"^x-": {"type": "string"}}, "additionalProperties": false});
        valid(&s, json!({"x-a": "1"}));
        assert_eq!(
            errs(&s, json!({"x-a": 1, "b": 2})),
            vec![
                (vec![k("b")], "unknown option \"b\"".to_string()),
                (vec![k("x-a")], "expected string, found number 1".to_string())
            ]
        );
        // A pattern that is no regular expression is refused at load.
        let e = bad_schema(&json!({"properties": {"a": {"pattern": "(unclosed"}}}));
        assert_eq!(e, "#/properties/a/pattern: \"(unclosed\" is not a regular expression");
        let e = bad_schema(&d2020(json!({"properties": {"a": {"pattern": "[z-a]"}}})));
        assert_eq!(e, "#/properties/a/pattern: \"[z-a]\" is not a regular expression");
    }

    #[test]
    fn formats_are_checked() {
        let s = json!({"properties": {
            "id": {"type": "string", "format": "uuid"},
            "ip": {"type": "string", "format": "ipv4"},
            "host": {"type": "string", "format": "hostname"},
            "when": {"type": "string", "format": "date-time"},
            "custom": {"type": "string", "format": "x-osbuild-thing"}
        }});
        valid(
            &s,
            json!({"id": "3f1c0c4e-6e84-4b4e-9b44-1d5d1f8b8a4e", "ip": "192.168.0.1",
                   "host": "web-1.example.com", "when": "2024-01-02T03:04:05Z", "custom": "anything"}),
        );
        assert_eq!(
            errs(
                &s,
                json!({"id": "not-a-uuid", "ip": "1.2.3", "host": "-bad-", "when": "yesterday"})
            ),
            vec![
                (vec![k("host")], "must be a valid hostname".to_string()),
                (vec![k("id")], "must be a valid UUID".to_string()),
                (vec![k("ip")], "must be a valid IPv4 address".to_string()),
                (vec![k("when")], "must be a valid date and time (RFC 3339)".to_string()),
            ]
        );
        // Formats are checked under 2020-12 too, where the spec makes them optional.
        assert_eq!(
            msg(&d2020(json!({"format": "ipv6"})), json!("::g")),
            "must be a valid IPv6 address"
        );
        assert_eq!(format_name("x-y"), "a valid \"x-y\"");
    }

    #[test]
    fn unknown_option_suggestions() {
        let s = json!({"additionalProperties": false, "properties": {"mirror": {}, "suite": {}}});
        assert_eq!(
            one(&s, json!({"mirorr": "x"})),
            (
                vec![k("mirorr")],
                "unknown option \"mirorr\" (did you mean \"mirror\"?)".to_string()
            )
        );
        assert_eq!(msg(&s, json!({"zzzzzz": 1})), "unknown option \"zzzzzz\"");
        // A property already given is not suggested.
        assert_eq!(msg(&s, json!({"mirror": 1, "mirorr": 1})), "unknown option \"mirorr\"");
        // Several unknown options: one error each.
        assert_eq!(
            errs(&s, json!({"a": 1, "b": 2})),
            vec![
                (vec![k("a")], "unknown option \"a\"".to_string()),
                (vec![k("b")], "unknown option \"b\"".to_string())
            ]
        );
        // Through a $ref, the suggestion comes from the schema referred to.
        let s = json!({"definitions": {"repo": {"additionalProperties": false, "properties": {"baseurl": {}}}},
                       "properties": {"repo": {"$ref": "#/definitions/repo"}}});
        assert_eq!(
            one(&s, json!({"repo": {"baseurl": "x", "baseulr": "y"}})),
            (vec![k("repo"), k("baseulr")], "unknown option \"baseulr\"".to_string())
        );
        assert_eq!(
            msg(&s, json!({"repo": {"baseulr": "y"}})),
            "unknown option \"baseulr\" (did you mean \"baseurl\"?)"
        );
    }

    #[test]
    fn types() {
        let s = json!({"type": "integer"});
        valid(&s, json!(1));
        valid(&s, json!(-1));
        valid(&s, json!(u64::MAX));
        // Draft-04 (osbuild's): 1.0 is a number, not an integer. Later drafts: it is.
        assert_eq!(msg(&s, json!(1.0)), "expected integer, found number 1.0");
        valid(&d2020(s.clone()), json!(1.0));
        assert_eq!(msg(&s, json!(1.5)), "expected integer, found number 1.5");
        assert_eq!(msg(&s, json!("1")), "expected integer, found string \"1\"");
        let s = json!({"type": ["string", "null"]});
        valid(&s, json!("x"));
        valid(&s, json!(null));
        assert_eq!(msg(&s, json!(true)), "expected null or string, found boolean true");
        let s = json!({"type": ["string", "array", "object"]});
        assert_eq!(msg(&s, json!(3)), "expected string, array or object, found number 3");
        assert_eq!(
            msg(&json!({"type": "object"}), json!([])),
            "expected object, found array"
        );
        assert_eq!(
            msg(&json!({"type": "number"}), json!(null)),
            "expected number, found null"
        );
        valid(&json!({"type": "number"}), json!(1));
        valid(&json!({"type": "number"}), json!(1.5));
        // A type mismatch stops other keywords of the same schema from piling on.
        assert_eq!(
            msg(&json!({"type": "string", "enum": ["a"], "minLength": 3}), json!(3)),
            "expected string, found number 3"
        );
        let long = "x".repeat(100);
        assert!(msg(&json!({"type": "number"}), json!(long)).ends_with("...\""));
    }

    #[test]
    fn enum_and_const() {
        let s = json!({"enum": ["none", "gzip", "xz"]});
        valid(&s, json!("xz"));
        assert_eq!(msg(&s, json!("bz2")), "must be one of \"none\", \"gzip\", \"xz\"");
        assert_eq!(msg(&json!({"enum": ["only"]}), json!(1)), "must be \"only\"");
        valid(&json!({"enum": [1, [1, {"a": 2}]]}), json!([1.0, {"a": 2.0}]));
        valid(&json!({"enum": [null]}), json!(null));
        let many: Vec<i32> = (0..20).collect();
        assert!(msg(&json!({ "enum": many }), json!(99)).ends_with("... (20 choices in all)"));
        let s = d2020(json!({"const": {"a": [1, 2]}}));
        valid(&s, json!({"a": [1, 2.0]}));
        assert_eq!(msg(&s, json!({"a": [1]})), "must be {\"a\":[1,2]}");
        assert_eq!(msg(&d2020(json!({"const": 1})), json!(1.5)), "must be 1");
        valid(&d2020(json!({"const": 1})), json!(1.0));
        assert_eq!(msg(&d2020(json!({"const": "1"})), json!(1)), "must be \"1\"");
        assert_eq!(msg(&d2020(json!({"const": false})), json!(0)), "must be false");
    }

    #[test]
    fn numbers() {
        let s = json!({"minimum": 1, "maximum": 10});
        valid(&s, json!(1));
        valid(&s, json!(10));
        valid(&s, json!(5.5));
        assert_eq!(msg(&s, json!(0)), "must be at least 1");
        assert_eq!(msg(&s, json!(0.5)), "must be at least 1");
        assert_eq!(msg(&s, json!(11)), "must be at most 10");
        // Draft-04's boolean exclusiveMinimum/Maximum.
        let s = json!({"minimum": 0, "exclusiveMinimum": true, "maximum": 5, "exclusiveMaximum": true});
        assert_eq!(msg(&s, json!(0)), "must be greater than 0");
        assert_eq!(msg(&s, json!(5.0)), "must be less than 5");
        valid(&s, json!(4));
        valid(&json!({"minimum": 0, "exclusiveMinimum": false}), json!(0));
        // The numeric form of later drafts.
        let s = d2020(json!({"exclusiveMinimum": 0, "exclusiveMaximum": 5}));
        valid(&s, json!(0.1));
        assert_eq!(msg(&s, json!(0)), "must be greater than 0");
        assert_eq!(msg(&s, json!(5)), "must be less than 5");
        // Exact integer comparison beyond f64 precision.
        assert_eq!(
            msg(&json!({"maximum": 9007199254740992u64}), json!(9007199254740993u64)),
            "must be at most 9007199254740992"
        );
        valid(&json!({"minimum": -9223372036854775808i64}), json!(u64::MAX));
        assert_eq!(
            msg(&json!({"minimum": 0}), json!(-9223372036854775808i64)),
            "must be at least 0"
        );
        // multipleOf
        assert_eq!(msg(&json!({"multipleOf": 2}), json!(3)), "must be a multiple of 2");
        valid(&json!({"multipleOf": 2}), json!(4));
        valid(&json!({"multipleOf": 2}), json!(4.0));
        valid(&json!({"multipleOf": 0.1}), json!(0.3));
        valid(&json!({"multipleOf": 0.01}), json!(19.99));
        assert_eq!(
            msg(&json!({"multipleOf": 0.1}), json!(0.35)),
            "must be a multiple of 0.1"
        );
        assert_eq!(msg(&json!({"multipleOf": 2}), json!(2.5)), "must be a multiple of 2");
        // Number keywords ignore non-numbers.
        valid(&json!({"minimum": 5}), json!("x"));
    }

    #[test]
    fn strings() {
        let s = json!({"minLength": 2, "maxLength": 3});
        valid(&s, json!("ab"));
        valid(&s, json!("éé😀")); // 3 chars, 8 bytes
        assert_eq!(msg(&s, json!("a")), "must be at least 2 characters long");
        assert_eq!(msg(&s, json!("abcd")), "must be at most 3 characters long");
        assert_eq!(msg(&json!({"minLength": 1}), json!("")), "must not be empty");
        assert_eq!(
            msg(&json!({"maxLength": 1}), json!("ab")),
            "must be at most 1 character long"
        );
        valid(&json!({"maxLength": 1}), json!(123));
    }

    #[test]
    fn arrays() {
        let s = json!({"minItems": 1, "maxItems": 2});
        assert_eq!(msg(&s, json!([])), "must have at least 1 item");
        assert_eq!(msg(&s, json!([1, 2, 3])), "must have at most 2 items");
        valid(&s, json!([1]));
        let s = json!({"uniqueItems": true});
        valid(&s, json!([1, "1", [1], {"a": 1}, {"a": 2}]));
        assert_eq!(
            one(&s, json!([1, 2, 1.0])),
            (vec![i(2)], "duplicate of item 0 (items must be unique)".to_string())
        );
        assert_eq!(
            errs(&s, json!([{"a": [1]}, "x", {"a": [1.0]}, "x"])),
            vec![
                (vec![i(2)], "duplicate of item 0 (items must be unique)".to_string()),
                (vec![i(3)], "duplicate of item 1 (items must be unique)".to_string())
            ]
        );
        valid(&json!({"uniqueItems": false}), json!([1, 1]));
        valid(&s, json!([0.5, 0.25, 1e300, 1e-300]));
        // Tuples, draft-04 style.
        let s = json!({"items": [{"type": "string"}, {"type": "integer"}], "additionalItems": false});
        valid(&s, json!(["a", 1]));
        valid(&s, json!(["a"]));
        assert_eq!(
            one(&s, json!([1, 1])),
            (vec![i(0)], "expected string, found number 1".to_string())
        );
        assert_eq!(
            errs(&s, json!(["a", 1, 2, 3])),
            vec![
                (vec![i(2)], "too many items: at most 2 are allowed".to_string()),
                (vec![i(3)], "too many items: at most 2 are allowed".to_string())
            ]
        );
        let s = json!({"items": [{"type": "string"}], "additionalItems": {"type": "number"}});
        assert_eq!(
            one(&s, json!(["a", 1, "b"])),
            (vec![i(2)], "expected number, found string \"b\"".to_string())
        );
        // Tuples, 2020-12 style.
        let s = d2020(json!({"prefixItems": [{"const": "a"}], "items": false}));
        valid(&s, json!(["a"]));
        assert_eq!(
            one(&s, json!(["a", "b"])),
            (vec![i(1)], "too many items: at most 1 is allowed".to_string())
        );
        let s = d2020(json!({"items": false}));
        assert_eq!(
            one(&s, json!([1])),
            (vec![i(0)], "no value is allowed here".to_string())
        );
        valid(&s, json!([]));
        // contains
        let s = d2020(json!({"contains": {"const": 3}}));
        valid(&s, json!([1, 3]));
        assert_eq!(
            msg(&s, json!([1, 2])),
            "must contain an item matching the \"contains\" schema"
        );
        let s = d2020(json!({"contains": {"type": "string"}, "minContains": 2, "maxContains": 3}));
        valid(&s, json!(["a", "b", 1]));
        let expected = "must contain at least 2 and at most 3 items matching the \"contains\" schema";
        assert_eq!(msg(&s, json!(["a", 1])), expected);
        assert_eq!(msg(&s, json!(["a", "b", "c", "d"])), expected);
        // Array keywords ignore non-arrays.
        valid(&json!({"minItems": 3, "items": {"type": "string"}}), json!({"a": 1}));
    }

    #[test]
    fn objects() {
        let s = json!({"minProperties": 1, "maxProperties": 2});
        assert_eq!(msg(&s, json!({})), "must have at least 1 option");
        assert_eq!(msg(&s, json!({"a": 1, "b": 2, "c": 3})), "must have at most 2 options");
        let s = json!({"properties": {"a": {"type": "string"}}, "additionalProperties": {"type": "integer"}});
        valid(&s, json!({"a": "x", "b": 1, "c": 2}));
        assert_eq!(
            one(&s, json!({"a": "x", "b": "y"})),
            (vec![k("b")], "expected integer, found string \"y\"".to_string())
        );
        let s = d2020(json!({"properties": {"a": false}}));
        assert_eq!(
            one(&s, json!({"a": 1})),
            (vec![k("a")], "option \"a\" is not allowed".to_string())
        );
        // Required lists every missing one, in order.
        let s = json!({"required": ["b", "a", "c"]});
        assert_eq!(
            errs(&s, json!({"a": 1})),
            vec![
                (vec![], "missing required option \"b\"".to_string()),
                (vec![], "missing required option \"c\"".to_string())
            ]
        );
        valid(&s, json!("not an object"));
        // Dependencies, both forms, and their 2019 names.
        let s = json!({"dependencies": {"a": ["b"], "c": {"required": ["d"]}}});
        valid(&s, json!({"x": 1}));
        valid(&s, json!({"a": 1, "b": 1}));
        assert_eq!(
            one(&s, json!({"a": 1})),
            (vec![], "option \"a\" requires option \"b\"".to_string())
        );
        assert_eq!(
            one(&s, json!({"c": 1})),
            (vec![], "missing required option \"d\"".to_string())
        );
        let s = d2020(json!({"dependentRequired": {"a": ["b", "c"]},
                             "dependentSchemas": {"b": {"properties": {"a": {"type": "string"}}}}}));
        assert_eq!(
            errs(&s, json!({"a": 1, "b": 1})),
            vec![
                (vec![], "option \"a\" requires option \"c\"".to_string()),
                (vec![k("a")], "expected string, found number 1".to_string())
            ]
        );
        // propertyNames
        let s = d2020(json!({"propertyNames": {"maxLength": 3}}));
        assert_eq!(
            one(&s, json!({"abcd": 1, "ab": 2})),
            (
                vec![k("abcd")],
                "invalid option name \"abcd\": must be at most 3 characters long".to_string()
            )
        );
    }

    #[test]
    fn combinators() {
        let s = json!({"allOf": [{"type": "object", "required": ["a"]}, {"required": ["b"]}]});
        assert_eq!(
            errs(&s, json!({})),
            vec![
                (vec![], "missing required option \"a\"".to_string()),
                (vec![], "missing required option \"b\"".to_string())
            ]
        );
        let s = json!({"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]});
        valid(&s, json!("x"));
        valid(&s, json!(["x"]));
        assert_eq!(
            one(&s, json!(3)),
            (vec![], "expected string or array, found number 3".to_string())
        );
        assert_eq!(
            one(&s, json!(["x", 1])),
            (
                vec![],
                "must match at least one of 2 alternatives (anyOf), but matches none: (1) expected string, found array; (2) at [1]: expected string, found number 1".to_string()
            )
        );
        let s = json!({"oneOf": [{"required": ["url"]}, {"required": ["path"]}]});
        valid(&s, json!({"url": 1}));
        assert_eq!(
            msg(&s, json!({})),
            "must match exactly one of 2 alternatives (oneOf), but matches none: (1) missing required option \"url\"; (2) missing required option \"path\""
        );
        assert_eq!(
            msg(&s, json!({"url": 1, "path": 2})),
            "must match exactly one of 2 alternatives (oneOf), but matches alternatives 1 and 2"
        );
        let s = json!({"oneOf": [{"type": "integer"}, {"type": "number"}, {"type": "string"}]});
        assert_eq!(
            msg(&s, json!(1)),
            "must match exactly one of 3 alternatives (oneOf), but matches alternatives 1 and 2"
        );
        valid(&s, json!(1.5));
        assert_eq!(msg(&s, json!(null)), "expected integer, number or string, found null");
        let s = json!({"anyOf": [{"properties": {"a": {"type": "string"}, "b": {"minimum": 3}}}]});
        assert_eq!(
            msg(&s, json!({"a": 1, "b": 1})),
            "does not match the only alternative of anyOf: (1) at a: expected string, found number 1 (and 1 more)"
        );
        let s = json!({"not": {"required": ["a"]}});
        valid(&s, json!({}));
        assert_eq!(msg(&s, json!({"a": 1})), "must not match the schema in \"not\"");
        // if/then/else
        let s = d2020(json!({
            "if": {"properties": {"kind": {"const": "url"}}},
            "then": {"required": ["url"]},
            "else": {"required": ["path"]}
        }));
        valid(&s, json!({"kind": "url", "url": "x"}));
        valid(&s, json!({"kind": "file", "path": "x"}));
        assert_eq!(msg(&s, json!({"kind": "url"})), "missing required option \"url\"");
        assert_eq!(msg(&s, json!({"kind": "file"})), "missing required option \"path\"");
        valid(&d2020(json!({"if": {"type": "string"}})), json!(1));
        valid(&d2020(json!({"then": false})), json!(1));
    }

    #[test]
    fn boolean_schemas() {
        valid(&json!(true), json!({"anything": [1]}));
        assert_eq!(
            one(&json!(false), json!(1)),
            (vec![], "no value is allowed here".to_string())
        );
        check_schema(&json!(true)).unwrap();
        check_schema(&json!(false)).unwrap();
        valid(&json!({}), json!(null));
        // Draft-04 has no boolean subschemas; the message says why it is draft-04.
        let e = bad_schema(&json!({"properties": {"a": false}}));
        assert!(e.starts_with("#/properties/a: false is not of type \"object\""), "{e}");
        assert!(
            e.contains("(a schema without \"$schema\" is draft-04, as osbuild's are; add \"$schema\""),
            "{e}"
        );
        // No such hint where no draft would take the schema.
        let e = bad_schema(&json!({"required": [1]}));
        assert_eq!(e, "#/required/0: 1 is not of type \"string\"");
    }

    #[test]
    fn refs() {
        let s = json!({
            "definitions": {
                "mode": {"type": "integer", "minimum": 0},
                "a/b": {"type": "string"},
                "t~n": {"type": "boolean"},
                "sp ace": {"enum": [1]},
                "node": {"type": "object", "properties": {"children": {"type": "array", "items": {"$ref": "#/definitions/node"}}, "m": {"$ref": "#/definitions/mode"}}}
            },
            "properties": {
                "mode": {"$ref": "#/definitions/mode"},
                "slash": {"$ref": "#/definitions/a~1b"},
                "tilde": {"$ref": "#/definitions/t~0n"},
                "pct": {"$ref": "#/definitions/sp%20ace"},
                "tree": {"$ref": "#/definitions/node"},
                "self": {"$ref": "#"},
                "first_prop": {"$ref": "#/properties/mode"}
            }
        });
        check_schema(&s).unwrap();
        valid(
            &s,
            json!({"mode": 3, "slash": "x", "tilde": true, "pct": 1, "self": {"mode": 1}}),
        );
        assert_eq!(
            one(&s, json!({"mode": -1})),
            (vec![k("mode")], "must be at least 0".to_string())
        );
        assert_eq!(msg(&s, json!({"slash": 1})), "expected string, found number 1");
        assert_eq!(msg(&s, json!({"tilde": 1})), "expected boolean, found number 1");
        assert_eq!(msg(&s, json!({"pct": 2})), "must be 1");
        assert_eq!(
            one(&s, json!({"self": {"self": {"mode": 1.5}}})).0,
            vec![k("self"), k("self"), k("mode")]
        );
        assert_eq!(
            msg(&s, json!({"first_prop": "x"})),
            "expected integer, found string \"x\""
        );
        let tree = json!({"tree": {"children": [{"children": [{"m": -2}]}, {"children": 1}]}});
        assert_eq!(
            errs(&s, tree),
            vec![
                (
                    vec![k("tree"), k("children"), i(0), k("children"), i(0), k("m")],
                    "must be at least 0".to_string()
                ),
                (
                    vec![k("tree"), k("children"), i(1), k("children")],
                    "expected array, found number 1".to_string()
                )
            ]
        );
        // 2020-12's $defs.
        let s = d2020(json!({"$defs": {"n": {"type": "integer"}}, "properties": {"a": {"$ref": "#/$defs/n"}}}));
        assert_eq!(msg(&s, json!({"a": "x"})), "expected integer, found string \"x\"");
    }

    #[test]
    fn ref_siblings_depend_on_draft() {
        let s = json!({"definitions": {"s": {"type": "string"}}, "properties": {"a": {"$ref": "#/definitions/s", "maxLength": 1}}});
        // Draft-04 (the default, and osbuild's): keywords beside $ref are ignored.
        valid(&s, json!({"a": "xy"}));
        assert_eq!(msg(&s, json!({"a": 1})), "expected string, found number 1");
        let s = d2020(s);
        assert_eq!(msg(&s, json!({"a": "xy"})), "must be at most 1 character long");
    }

    #[test]
    fn ref_cycles_terminate() {
        for s in [
            json!({"$ref": "#"}),
            json!({"definitions": {"a": {"$ref": "#/definitions/b"}, "b": {"$ref": "#/definitions/a"}}, "$ref": "#/definitions/a"}),
            json!({"allOf": [{"$ref": "#"}]}),
            json!({"definitions": {"a": {"anyOf": [{"type": "string"}, {"not": {"$ref": "#/definitions/a"}}]}}, "properties": {"x": {"$ref": "#/definitions/a"}}}),
        ] {
            // Whether it loads or not, nothing recurses forever.
            if let Ok(compiled) = Schema::new(&s) {
                let _ = compiled.validate(&json!({"x": 1}));
            }
        }
        // Recursion through a deeper value is fine.
        let s = json!({"properties": {"next": {"$ref": "#"}}, "type": "object"});
        check_schema(&s).unwrap();
        valid(&s, json!({"next": {"next": {}}}));
        assert_eq!(one(&s, json!({"next": {"next": 1}})).0, vec![k("next"), k("next")]);
    }

    #[test]
    fn refs_that_do_not_resolve_are_refused_at_load() {
        let s = json!({"properties": {"a": {"$ref": "#/definitions/nope"}}});
        let e = bad_schema(&s);
        assert_eq!(e, "$ref \"#/definitions/nope\" points at nothing in the schema");
        // validate() on such a schema says so instead of passing everything.
        assert_eq!(
            validate(&s, &json!({"a": 1})),
            vec![SchemaError {
                path: vec![],
                message: format!("invalid schema: {e}")
            }]
        );
        // Nothing is fetched: remote refs and files are refused.
        for r in ["http://example.com/s.json", "file:///etc/passwd", "other.json#/x"] {
            let e = bad_schema(&json!({ "$ref": r }));
            assert!(e.contains("is outside the schema: only refs within it"), "{r}: {e}");
        }
    }

    #[test]
    fn check_schema_reports_bad_keywords() {
        let cases = [
            (json!(3), "#: 3 is not of type \"object\""),
            (json!({"type": "str"}), "#/type: \"str\" is not a type: use one of"),
            (json!({"type": []}), "#/type: [] is not a type"),
            (
                json!({"properties": {"a": {"minItems": -1}}}),
                "#/properties/a/minItems: -1 is less than the minimum of 0",
            ),
            (
                json!({"properties": {"a/b": {"maxLength": "3"}}}),
                "#/properties/a~1b/maxLength: \"3\" is not of type \"integer\"",
            ),
            (json!({"required": "a"}), "#/required: \"a\" is not of type \"array\""),
            (json!({"enum": "a"}), "#/enum: \"a\" is not of type \"array\""),
            (json!({"properties": []}), "#/properties: [] is not of type \"object\""),
            (
                json!({"additionalProperties": "no"}),
                "#/additionalProperties: expected boolean or object, found string \"no\"",
            ),
            (json!({"items": [{"type": 1}]}), "#/items/0/type: 1 is not a type"),
            (json!({"anyOf": []}), "#/anyOf: [] has less than 1 item"),
            (json!({"oneOf": {}}), "#/oneOf: {} is not of type \"array\""),
            (json!({"allOf": [{}, 1]}), "#/allOf/1: 1 is not of type \"object\""),
            (json!({"minimum": "0"}), "#/minimum: \"0\" is not of type \"number\""),
            (
                json!({"multipleOf": 0}),
                "#/multipleOf: 0 is less than or equal to the minimum of 0",
            ),
            (json!({"uniqueItems": 1}), "#/uniqueItems: 1 is not of type \"boolean\""),
            (json!({"$schema": 4}), "#: \"$schema\" must be a string, found number 4"),
            (
                json!({"$schema": "http://json-schema.org/draft-03/schema#"}),
                "#: unsupported \"$schema\" \"http://json-schema.org/draft-03/schema#\"",
            ),
        ];
        for (schema, expected) in cases {
            let e = bad_schema(&schema);
            assert!(e.starts_with(expected), "{schema}: {e}");
        }
        // Every complaint at once.
        let e = bad_schema(&json!({"required": "a", "minItems": -1}));
        assert!(e.contains("#/minItems") && e.contains("#/required"), "{e}");
        // A huge value in the schema is not dumped whole.
        let big: Vec<String> = (0..100).map(|n| format!("value{n}")).collect();
        let e = bad_schema(&json!({ "required": {"a": big} }));
        assert!(e.len() < 200, "{e}");
        // Unknown keywords and annotations are fine.
        check_schema(&json!({
            "$schema": "http://json-schema.org/draft-07/schema#",
            "title": "x", "description": "y", "default": {"a": 1}, "examples": [1],
            "pattern": "^a", "format": "uri", "patternProperties": {"^x": {}},
            "x-custom": [1, 2], "minItems": 1, "minimum": 0,
            "dependencies": {"a": ["b"], "c": {"type": "object"}}, "items": {"type": "string"}
        }))
        .unwrap();
        check_schema(&json!({"title": "x", "x-custom": {"const": 1}, "exclusiveMinimum": true, "minimum": 0})).unwrap();
    }

    #[test]
    fn later_keywords_need_a_schema_uri() {
        for (schema, at, keyword) in [
            (json!({"const": 1}), "#", "const"),
            (
                json!({"properties": {"a": {"if": {}, "then": {}}}}),
                "#/properties/a",
                "if",
            ),
            (json!({"items": {"prefixItems": [{}]}}), "#/items", "prefixItems"),
            (json!({"anyOf": [{}, {"contains": {}}]}), "#/anyOf/1", "contains"),
            (
                json!({"definitions": {"x": {"propertyNames": {}}}}),
                "#/definitions/x",
                "propertyNames",
            ),
        ] {
            let e = bad_schema(&schema);
            assert!(
                e.starts_with(&format!("{at}: \"{keyword}\" is not a draft-04 keyword")),
                "{schema}: {e}"
            );
            assert!(e.contains("add \"$schema\""), "{e}");
            check_schema(&d2020(schema)).unwrap();
        }
        let e = bad_schema(&json!({"items": [{}, {"const": 1}]}));
        assert!(e.starts_with("#/items/1: \"const\" is not a draft-04 keyword"), "{e}");
        // A property that happens to be named like a keyword is no keyword.
        check_schema(&json!({"properties": {"const": {"type": "string"}, "if": {}}})).unwrap();
        // Each draft by its $schema.
        for uri in [
            "http://json-schema.org/draft-04/schema#",
            "http://json-schema.org/draft-06/schema#",
            "http://json-schema.org/draft-07/schema#",
            "https://json-schema.org/draft/2019-09/schema",
            "https://json-schema.org/draft/2020-12/schema",
        ] {
            let s = json!({"$schema": uri, "properties": {"a": {"type": "integer"}}});
            assert_eq!(
                msg(&s, json!({"a": "x"})),
                "expected integer, found string \"x\"",
                "{uri}"
            );
        }
    }

    #[test]
    fn pointers_become_paths() {
        let inst = json!({"a": [{"0": {"x/y": {"t~": 1}}}], "": 2});
        assert_eq!(
            to_path(&inst, "/a/0/0/x~1y/t~0"),
            vec![k("a"), i(0), k("0"), k("x/y"), k("t~")]
        );
        assert_eq!(to_path(&inst, ""), vec![]);
        assert_eq!(to_path(&inst, "/"), vec![k("")]);
        // Past the end of the value (a missing key), digits read as indexes.
        assert_eq!(to_path(&inst, "/nope/3/z"), vec![k("nope"), i(3), k("z")]);
        let s = json!({"properties": {"0": {"type": "string"}, "": {"type": "string"}}});
        assert_eq!(
            errs(&s, json!({"0": 1, "": 2})),
            vec![
                (vec![k("")], "expected string, found number 2".to_string()),
                (vec![k("0")], "expected string, found number 1".to_string())
            ]
        );
        assert_eq!(cmp_paths(&[k("a")], &[k("a"), i(0)]), Ordering::Less);
        assert_eq!(cmp_paths(&[i(2)], &[i(10)]), Ordering::Less);
        assert_eq!(cmp_paths(&[k("b")], &[k("a"), i(0)]), Ordering::Greater);
    }

    #[test]
    fn json_eq_compares_numbers_by_value() {
        assert!(json_eq(&json!(1), &json!(1.0)));
        assert!(json_eq(&json!({"a": [1]}), &json!({"a": [1.0]})));
        assert!(!json_eq(&json!(u64::MAX), &json!(u64::MAX - 1)));
        assert!(!json_eq(&json!(1), &json!("1")));
        assert!(!json_eq(&json!({"a": 1}), &json!({"a": 1, "b": 1})));
    }

    #[test]
    fn helpers() {
        assert_eq!(show_path(&[k("paths"), i(0), k("mode")]), "paths[0].mode");
        assert_eq!(join_or(&["a".into(), "b".into(), "c".into()]), "a, b or c");
        assert_eq!(join_and(&["1".into()], "alternatives"), "alternative 1");
        assert_eq!(parent("/properties/a/type"), "/properties/a");
        assert_eq!(parent("/type"), "");
    }
}
