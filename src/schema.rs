//! A JSON Schema validator for the options of user-supplied stages.
//!
//! A stage program may ship `<name>.meta.json` with a JSON Schema for its options, in the
//! draft-04 … 2020-12 style osbuild's stages use. [`check_schema`] checks the schema
//! itself when stages are loaded; [`validate`] reports every way an options value breaks
//! it, each with the path to the offending value.
//!
//! Supported keywords (everything else is ignored silently, as the spec asks of unknown
//! keywords):
//!
//! - any type: `type` (a name or an array of names; `"integer"` accepts any number
//!   without a fractional part, `1.0` included), `enum`, `const` (numbers compare by
//!   value, so `1` equals `1.0`)
//! - numbers: `minimum`, `maximum`, `exclusiveMinimum`, `exclusiveMaximum` (the
//!   numeric form, and draft-04's boolean form that modifies `minimum`/`maximum`),
//!   `multipleOf`
//! - strings: `minLength`, `maxLength` (counting characters, not bytes)
//! - arrays: `items` (a schema for every item, or draft-04's array form for tuples with
//!   `additionalItems`), `prefixItems` (2020-12 tuples; `items` then covers the rest),
//!   `minItems`, `maxItems`, `uniqueItems`, `contains` with `minContains`/`maxContains`
//! - objects: `properties`, `required`, `additionalProperties` (boolean or schema),
//!   `minProperties`, `maxProperties`, `propertyNames`, `dependencies` (array and
//!   schema forms), `dependentRequired`, `dependentSchemas`
//! - combinators: `allOf`, `anyOf`, `oneOf`, `not`, `if`/`then`/`else`, and the
//!   boolean schemas `true` and `false`
//! - `$ref` to a local JSON pointer: `"#"`, `"#/definitions/…"`, `"#/$defs/…"` and any
//!   other `#/…` pointer into the root schema (`~0`/`~1` and %-escapes are decoded).
//!   `$id` is not honored, so refs always resolve against the root. Under a
//!   `$schema` of draft-03 … draft-07, keywords beside a `$ref` are ignored (as those
//!   drafts specify); otherwise they apply too. `$ref` cycles that never move to a
//!   deeper value (say `{"$ref": "#"}`) are reported instead of recursing forever.
//!
//! Not supported: `pattern` and `patternProperties` (they would need a regex engine),
//! `format`, `unevaluatedProperties`/`unevaluatedItems`, remote refs and anchors. As
//! `patternProperties` cannot be evaluated, a schema that has it gets no
//! `additionalProperties` check, rather than rejecting keys a pattern would allow.

use osbuild_stages::PathSegment;
use serde_json::{Map, Number, Value};
use std::cmp::Ordering;
use std::collections::HashSet;

/// One way the instance breaks the schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaError {
    /// From the instance's root down to the offending value (the object itself for a
    /// missing key; the key for an unknown one).
    pub path: Vec<PathSegment>,
    pub message: String,
}

/// Every way `instance` breaks `schema`; empty when it is valid.
pub fn validate(schema: &Value, instance: &Value) -> Vec<SchemaError> {
    let v = Validator {
        root: schema,
        ref_overrides_siblings: old_draft(schema),
    };
    let mut errors = Vec::new();
    v.check(schema, instance, &mut Vec::new(), None, &mut errors);
    errors
        .into_iter()
        .map(|e| SchemaError {
            path: e.path,
            message: e.message,
        })
        .collect()
}

/// Checks that `schema` is well formed for the keywords this module supports: the
/// keyword values have the right types, every `$ref` is local and resolves, and no
/// `$ref` cycle could recurse forever. The message names the place in the schema.
pub fn check_schema(schema: &Value) -> Result<(), String> {
    let mut c = Checker {
        root: schema,
        seen: HashSet::new(),
        nodes: Vec::new(),
    };
    c.walk(schema, "#".to_string())?;
    c.find_cycles()
}

/// Whether the root declares a draft in which `$ref` overrides its sibling keywords.
fn old_draft(root: &Value) -> bool {
    match root.get("$schema").and_then(Value::as_str) {
        Some(s) => ["draft-03", "draft-04", "draft-06", "draft-07"]
            .iter()
            .any(|d| s.contains(d)),
        None => false,
    }
}

/// An error while validating; `expected` is set for a plain type mismatch so that
/// `anyOf`/`oneOf` can merge "expected X" errors of their alternatives.
struct Error {
    path: Vec<PathSegment>,
    message: String,
    expected: Option<Vec<String>>,
}

/// The `$ref` targets entered since the validator last moved to a deeper value.
struct RefChain<'a> {
    target: *const Value,
    parent: Option<&'a RefChain<'a>>,
}

impl RefChain<'_> {
    fn contains(&self, target: *const Value) -> bool {
        let mut link = Some(self);
        while let Some(l) = link {
            if std::ptr::eq(l.target, target) {
                return true;
            }
            link = l.parent;
        }
        false
    }
}

struct Validator<'s> {
    root: &'s Value,
    ref_overrides_siblings: bool,
}

fn err(path: &[PathSegment], message: impl Into<String>) -> Error {
    Error {
        path: path.to_vec(),
        message: message.into(),
        expected: None,
    }
}

impl<'s> Validator<'s> {
    fn is_valid(&self, schema: &Value, inst: &Value, path: &mut Vec<PathSegment>, chain: Option<&RefChain>) -> bool {
        let mut errors = Vec::new();
        self.check(schema, inst, path, chain, &mut errors);
        errors.is_empty()
    }

    /// Validates `inst` (found at `path`) against `schema`, appending to `errors`.
    fn check(
        &self,
        schema: &Value,
        inst: &Value,
        path: &mut Vec<PathSegment>,
        chain: Option<&RefChain>,
        errors: &mut Vec<Error>,
    ) {
        let s = match schema {
            Value::Bool(true) => return,
            Value::Bool(false) => {
                let message = match path.last() {
                    Some(PathSegment::Key(k)) => format!("option {} is not allowed", quote(k)),
                    _ => "no value is allowed here".to_string(),
                };
                errors.push(err(path, message));
                return;
            }
            Value::Object(s) => s,
            // Not a schema; check_schema reports it.
            _ => return,
        };

        if let Some(r) = s.get("$ref").and_then(Value::as_str) {
            match resolve(self.root, r) {
                None => errors.push(err(path, format!("invalid schema: cannot resolve $ref {}", quote(r)))),
                Some(target) => {
                    let ptr = target as *const Value;
                    if chain.is_some_and(|c| c.contains(ptr)) {
                        errors.push(err(path, format!("invalid schema: $ref cycle through {}", quote(r))));
                    } else {
                        let link = RefChain {
                            target: ptr,
                            parent: chain,
                        };
                        self.check(target, inst, path, Some(&link), errors);
                    }
                }
            }
            if self.ref_overrides_siblings {
                return;
            }
        }

        if let Some(t) = s.get("type") {
            let names: Vec<&str> = match t {
                Value::String(n) => vec![n.as_str()],
                Value::Array(ns) => ns.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            if !names.is_empty() && !names.iter().any(|n| has_type(inst, n)) {
                let expected: Vec<String> = names.iter().map(|n| n.to_string()).collect();
                errors.push(Error {
                    path: path.clone(),
                    message: format!("expected {}, found {}", join_or(&expected), describe(inst)),
                    expected: Some(expected),
                });
                // Nothing else about a value of the wrong type is worth saying.
                return;
            }
        }

        if let Some(Value::Array(options)) = s.get("enum") {
            if !options.iter().any(|o| json_eq(o, inst)) {
                errors.push(err(path, one_of_message(options)));
            }
        }
        if let Some(c) = s.get("const") {
            if !json_eq(c, inst) {
                errors.push(err(path, format!("must be {}", short_json(c))));
            }
        }

        match inst {
            Value::Number(n) => self.check_number(s, n, path, errors),
            Value::String(text) => check_string(s, text, path, errors),
            Value::Array(items) => self.check_array(s, items, path, errors),
            Value::Object(map) => self.check_object(s, inst, map, path, chain, errors),
            _ => {}
        }

        if let Some(Value::Array(all)) = s.get("allOf") {
            for sub in all {
                self.check(sub, inst, path, chain, errors);
            }
        }
        if let Some(Value::Array(alts)) = s.get("anyOf") {
            self.check_alternatives(alts, inst, path, chain, errors, false);
        }
        if let Some(Value::Array(alts)) = s.get("oneOf") {
            self.check_alternatives(alts, inst, path, chain, errors, true);
        }
        if let Some(not) = s.get("not") {
            if self.is_valid(not, inst, path, chain) {
                errors.push(err(path, "must not match the schema in \"not\""));
            }
        }
        if let Some(cond) = s.get("if") {
            let branch = if self.is_valid(cond, inst, path, chain) {
                s.get("then")
            } else {
                s.get("else")
            };
            if let Some(b) = branch {
                self.check(b, inst, path, chain, errors);
            }
        }
    }

    fn check_alternatives(
        &self,
        alts: &[Value],
        inst: &Value,
        path: &mut Vec<PathSegment>,
        chain: Option<&RefChain>,
        errors: &mut Vec<Error>,
        exactly_one: bool,
    ) {
        let mut failures: Vec<Vec<Error>> = Vec::new();
        let mut matched: Vec<usize> = Vec::new();
        for (i, alt) in alts.iter().enumerate() {
            let mut errs = Vec::new();
            self.check(alt, inst, path, chain, &mut errs);
            if errs.is_empty() {
                matched.push(i + 1);
            }
            failures.push(errs);
        }
        let keyword = if exactly_one { "oneOf" } else { "anyOf" };
        if matched.is_empty() {
            if alts.is_empty() {
                errors.push(err(path, format!("invalid schema: \"{keyword}\" has no alternatives")));
                return;
            }
            // Only type mismatches: say which types would do.
            let mut types: Vec<String> = Vec::new();
            let all_types = failures.iter().all(|errs| match errs.as_slice() {
                [e] if e.path.len() == path.len() => match &e.expected {
                    Some(t) => {
                        for name in t {
                            if !types.contains(name) {
                                types.push(name.clone());
                            }
                        }
                        true
                    }
                    None => false,
                },
                _ => false,
            });
            if all_types {
                errors.push(Error {
                    path: path.clone(),
                    message: format!("expected {}, found {}", join_or(&types), describe(inst)),
                    expected: Some(types),
                });
                return;
            }
            let reasons: Vec<String> = failures
                .iter()
                .enumerate()
                .map(|(i, errs)| {
                    let first = &errs[0];
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
            let lead = if alts.len() == 1 {
                format!("does not match the only alternative of {keyword}")
            } else if exactly_one {
                format!(
                    "must match exactly one of {} alternatives (oneOf), but matches none",
                    alts.len()
                )
            } else {
                format!(
                    "must match at least one of {} alternatives (anyOf), but matches none",
                    alts.len()
                )
            };
            errors.push(err(path, format!("{lead}: {}", reasons.join("; "))));
        } else if exactly_one && matched.len() > 1 {
            let list: Vec<String> = matched.iter().map(|i| i.to_string()).collect();
            errors.push(err(
                path,
                format!(
                    "must match exactly one of {} alternatives (oneOf), but matches {}",
                    alts.len(),
                    join_and(&list, "alternatives")
                ),
            ));
        }
    }

    fn check_number(&self, s: &Map<String, Value>, n: &Number, path: &[PathSegment], errors: &mut Vec<Error>) {
        let x = Num::from(n);
        let bound = |key: &str| s.get(key).and_then(Value::as_number).map(|b| (Num::from(b), b));
        let excl_flag = |key: &str| s.get(key).and_then(Value::as_bool).unwrap_or(false);
        if let Some((min, shown)) = bound("minimum") {
            if excl_flag("exclusiveMinimum") {
                if x.cmp(min) != Some(Ordering::Greater) {
                    errors.push(err(path, format!("must be greater than {shown}")));
                }
            } else if x.cmp(min) == Some(Ordering::Less) {
                errors.push(err(path, format!("must be at least {shown}")));
            }
        }
        if let Some((max, shown)) = bound("maximum") {
            if excl_flag("exclusiveMaximum") {
                if x.cmp(max) != Some(Ordering::Less) {
                    errors.push(err(path, format!("must be less than {shown}")));
                }
            } else if x.cmp(max) == Some(Ordering::Greater) {
                errors.push(err(path, format!("must be at most {shown}")));
            }
        }
        if let Some((min, shown)) = bound("exclusiveMinimum") {
            if x.cmp(min) != Some(Ordering::Greater) {
                errors.push(err(path, format!("must be greater than {shown}")));
            }
        }
        if let Some((max, shown)) = bound("exclusiveMaximum") {
            if x.cmp(max) != Some(Ordering::Less) {
                errors.push(err(path, format!("must be less than {shown}")));
            }
        }
        if let Some((m, shown)) = bound("multipleOf") {
            if !is_multiple(x, m) {
                errors.push(err(path, format!("must be a multiple of {shown}")));
            }
        }
    }

    fn check_array(
        &self,
        s: &Map<String, Value>,
        items: &[Value],
        path: &mut Vec<PathSegment>,
        errors: &mut Vec<Error>,
    ) {
        if let Some(min) = count(s, "minItems") {
            if (items.len() as u64) < min {
                errors.push(err(
                    path,
                    format!("must have at least {}", plural(min, "item", "items")),
                ));
            }
        }
        if let Some(max) = count(s, "maxItems") {
            if items.len() as u64 > max {
                errors.push(err(path, format!("must have at most {}", plural(max, "item", "items"))));
            }
        }
        if s.get("uniqueItems") == Some(&Value::Bool(true)) {
            let mut first_seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
            for (i, item) in items.iter().enumerate() {
                if let Some(j) = first_seen.get(&canonical(item)) {
                    path.push(PathSegment::Index(i));
                    errors.push(err(path, format!("duplicate of item {j} (items must be unique)")));
                    path.pop();
                } else {
                    first_seen.insert(canonical(item), i);
                }
            }
        }

        // Which schema covers item i: a tuple prefix, then the rest.
        let (prefix, rest): (&[Value], Option<&Value>) = match (s.get("prefixItems"), s.get("items")) {
            (Some(Value::Array(p)), items) => (p, items),
            (_, Some(Value::Array(p))) => (p, s.get("additionalItems")),
            (_, items) => (&[], items),
        };
        for (i, item) in items.iter().enumerate() {
            let sub = if i < prefix.len() { Some(&prefix[i]) } else { rest };
            if let Some(sub) = sub {
                path.push(PathSegment::Index(i));
                if sub == &Value::Bool(false) && i >= prefix.len() && !prefix.is_empty() {
                    errors.push(err(
                        path,
                        format!(
                            "too many items: at most {} allowed",
                            plural(prefix.len() as u64, "is", "are")
                        ),
                    ));
                } else {
                    self.check(sub, item, path, None, errors);
                }
                path.pop();
            }
        }

        if let Some(contains) = s.get("contains") {
            let matching = items
                .iter()
                .enumerate()
                .filter(|(i, item)| {
                    path.push(PathSegment::Index(*i));
                    let ok = self.is_valid(contains, item, path, None);
                    path.pop();
                    ok
                })
                .count() as u64;
            let min = count(s, "minContains").unwrap_or(1);
            if matching < min {
                let message = if min == 1 {
                    "must contain an item matching the \"contains\" schema".to_string()
                } else {
                    format!(
                        "must contain at least {} matching the \"contains\" schema, found {matching}",
                        plural(min, "item", "items")
                    )
                };
                errors.push(err(path, message));
            }
            if let Some(max) = count(s, "maxContains") {
                if matching > max {
                    errors.push(err(
                        path,
                        format!(
                            "must contain at most {} matching the \"contains\" schema, found {matching}",
                            plural(max, "item", "items")
                        ),
                    ));
                }
            }
        }
    }

    fn check_object(
        &self,
        s: &Map<String, Value>,
        inst: &Value,
        map: &Map<String, Value>,
        path: &mut Vec<PathSegment>,
        chain: Option<&RefChain>,
        errors: &mut Vec<Error>,
    ) {
        if let Some(Value::Array(required)) = s.get("required") {
            for name in required.iter().filter_map(Value::as_str) {
                if !map.contains_key(name) {
                    errors.push(err(path, format!("missing required option {}", quote(name))));
                }
            }
        }
        let properties = s.get("properties").and_then(Value::as_object);
        // patternProperties cannot be evaluated; don't reject what a pattern might allow.
        let additional = match s.get("patternProperties") {
            Some(Value::Object(p)) if !p.is_empty() => None,
            _ => s.get("additionalProperties"),
        };
        for (key, value) in map {
            path.push(PathSegment::Key(key.clone()));
            match properties.and_then(|p| p.get(key)) {
                Some(sub) => self.check(sub, value, path, None, errors),
                None => match additional {
                    Some(Value::Bool(false)) => {
                        let hint = properties
                            .and_then(|p| {
                                crate::diagnostic::suggest(
                                    key,
                                    p.keys().filter(|k| !map.contains_key(*k)).map(String::as_str),
                                )
                            })
                            .map(|k| format!(" (did you mean {}?)", quote(k)))
                            .unwrap_or_default();
                        errors.push(err(path, format!("unknown option {}{hint}", quote(key))));
                    }
                    Some(sub) => self.check(sub, value, path, None, errors),
                    None => {}
                },
            }
            path.pop();
        }

        if let Some(names) = s.get("propertyNames") {
            for key in map.keys() {
                path.push(PathSegment::Key(key.clone()));
                let mut errs = Vec::new();
                self.check(names, &Value::String(key.clone()), path, None, &mut errs);
                for e in errs {
                    errors.push(err(path, format!("invalid option name {}: {}", quote(key), e.message)));
                }
                path.pop();
            }
        }

        let dependent_required = |deps: &Map<String, Value>, errors: &mut Vec<Error>| {
            for (key, dep) in deps {
                if let (true, Value::Array(needed)) = (map.contains_key(key), dep) {
                    for n in needed.iter().filter_map(Value::as_str) {
                        if !map.contains_key(n) {
                            errors.push(err(path, format!("option {} requires option {}", quote(key), quote(n))));
                        }
                    }
                }
            }
        };
        if let Some(Value::Object(deps)) = s.get("dependentRequired") {
            dependent_required(deps, errors);
        }
        if let Some(Value::Object(deps)) = s.get("dependencies") {
            dependent_required(deps, errors);
        }
        for keyword in ["dependencies", "dependentSchemas"] {
            if let Some(Value::Object(deps)) = s.get(keyword) {
                for (key, dep) in deps {
                    if map.contains_key(key) && !dep.is_array() {
                        self.check(dep, inst, path, chain, errors);
                    }
                }
            }
        }

        if let Some(min) = count(s, "minProperties") {
            if (map.len() as u64) < min {
                errors.push(err(
                    path,
                    format!("must have at least {}", plural(min, "option", "options")),
                ));
            }
        }
        if let Some(max) = count(s, "maxProperties") {
            if map.len() as u64 > max {
                errors.push(err(
                    path,
                    format!("must have at most {}", plural(max, "option", "options")),
                ));
            }
        }
    }
}

fn check_string(s: &Map<String, Value>, text: &str, path: &[PathSegment], errors: &mut Vec<Error>) {
    let min = count(s, "minLength");
    let max = count(s, "maxLength");
    if min.is_none() && max.is_none() {
        return;
    }
    let len = text.chars().count() as u64;
    if let Some(min) = min {
        if len < min {
            let message = if min == 1 {
                "must not be empty".to_string()
            } else {
                format!("must be at least {} long", plural(min, "character", "characters"))
            };
            errors.push(err(path, message));
        }
    }
    if let Some(max) = max {
        if len > max {
            errors.push(err(
                path,
                format!("must be at most {} long", plural(max, "character", "characters")),
            ));
        }
    }
}

/// A count keyword's value (a non-negative integer, `2.0` included).
fn count(s: &Map<String, Value>, key: &str) -> Option<u64> {
    let n = s.get(key)?.as_number()?;
    n.as_u64().or_else(|| {
        let f = n.as_f64()?;
        (f >= 0.0 && f.fract() == 0.0 && f < 1.8e19).then_some(f as u64)
    })
}

fn has_type(v: &Value, name: &str) -> bool {
    match name {
        "null" => v.is_null(),
        "boolean" => v.is_boolean(),
        "string" => v.is_string(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        "number" => v.is_number(),
        "integer" => match v {
            Value::Number(n) => {
                n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.is_finite() && f.fract() == 0.0)
            }
            _ => false,
        },
        _ => false,
    }
}

/// A number for comparisons: exact for integers, f64 otherwise.
#[derive(Clone, Copy)]
enum Num {
    Int(i128),
    Float(f64),
}

impl From<&Number> for Num {
    fn from(n: &Number) -> Num {
        if let Some(u) = n.as_u64() {
            Num::Int(u as i128)
        } else if let Some(i) = n.as_i64() {
            Num::Int(i as i128)
        } else {
            Num::Float(n.as_f64().unwrap_or(f64::NAN))
        }
    }
}

impl Num {
    fn as_f64(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        }
    }

    fn cmp(self, other: Num) -> Option<Ordering> {
        match (self, other) {
            (Num::Int(a), Num::Int(b)) => Some(a.cmp(&b)),
            (a, b) => a.as_f64().partial_cmp(&b.as_f64()),
        }
    }
}

fn is_multiple(x: Num, m: Num) -> bool {
    match (x, m) {
        (Num::Int(x), Num::Int(m)) if m != 0 => x % m == 0,
        _ => {
            let (x, m) = (x.as_f64(), m.as_f64());
            if m == 0.0 || !m.is_finite() {
                return false;
            }
            let q = x / m;
            if !q.is_finite() {
                return false;
            }
            (q - q.round()).abs() <= 4.0 * f64::EPSILON * q.abs().max(1.0)
        }
    }
}

/// Equality as JSON Schema defines it: numbers compare by value.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => Num::from(x).cmp(Num::from(y)) == Some(Ordering::Equal),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

/// A text that is equal for exactly the values [`json_eq`] calls equal.
fn canonical(v: &Value) -> String {
    fn write(v: &Value, out: &mut String) {
        match v {
            Value::Number(n) => match Num::from(n) {
                Num::Int(i) => out.push_str(&i.to_string()),
                Num::Float(f) if f.fract() == 0.0 && f.abs() < 1e38 => out.push_str(&(f as i128).to_string()),
                Num::Float(f) => out.push_str(&format!("{f:e}")),
            },
            Value::Array(items) => {
                out.push('[');
                for i in items {
                    write(i, out);
                    out.push(',');
                }
                out.push(']');
            }
            Value::Object(map) => {
                // serde_json's map keeps keys sorted (no preserve_order), but don't rely on it.
                let mut entries: Vec<_> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                out.push('{');
                for (k, v) in entries {
                    out.push_str(&quote(k));
                    out.push(':');
                    write(v, out);
                    out.push(',');
                }
                out.push('}');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut out = String::new();
    write(v, &mut out);
    out
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

/// Resolves a local `$ref` ("#" or "#/json/pointer") against the root schema.
fn resolve<'a>(root: &'a Value, reference: &str) -> Option<&'a Value> {
    let fragment = percent_decode(reference.strip_prefix('#')?)?;
    if fragment.is_empty() {
        return Some(root);
    }
    let pointer = fragment.strip_prefix('/')?;
    let mut node = root;
    for token in pointer.split('/') {
        let token = token.replace("~1", "/").replace("~0", "~");
        node = match node {
            Value::Object(map) => map.get(&token)?,
            Value::Array(items) => {
                if token.len() > 1 && token.starts_with('0') {
                    return None;
                }
                items.get(token.parse::<usize>().ok()?)?
            }
            _ => return None,
        };
    }
    Some(node)
}

fn percent_decode(s: &str) -> Option<String> {
    if !s.contains('%') {
        return Some(s.to_string());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Walks a schema checking keyword values; remembers every schema for the cycle check.
struct Checker<'s> {
    root: &'s Value,
    seen: HashSet<*const Value>,
    nodes: Vec<(&'s Value, String)>,
}

const TYPE_NAMES: [&str; 7] = ["null", "boolean", "object", "array", "number", "string", "integer"];

impl<'s> Checker<'s> {
    fn walk(&mut self, schema: &'s Value, loc: String) -> Result<(), String> {
        if !self.seen.insert(schema as *const Value) {
            return Ok(());
        }
        let s = match schema {
            Value::Bool(_) => return Ok(()),
            Value::Object(s) => s,
            other => {
                return Err(format!(
                    "{loc}: a schema must be an object or a boolean, found {}",
                    describe(other)
                ))
            }
        };
        self.nodes.push((schema, loc.clone()));
        let bad = |key: &str, what: &str, found: &Value| {
            Err(format!("{loc}: \"{key}\" must be {what}, found {}", describe(found)))
        };
        for (key, value) in s {
            let sub = |k: &str| format!("{loc}/{}", escape_token(k));
            match key.as_str() {
                "$ref" => {
                    let Value::String(r) = value else {
                        return bad(key, "a string", value);
                    };
                    if !r.starts_with('#') {
                        return Err(format!(
                            "{loc}: unsupported $ref {} (only local refs starting with '#' are supported)",
                            quote(r)
                        ));
                    }
                    let Some(target) = resolve(self.root, r) else {
                        return Err(format!("{loc}: cannot resolve $ref {}", quote(r)));
                    };
                    self.walk(target, r.clone())?;
                }
                "type" => {
                    let ok_name = |v: &Value| v.as_str().is_some_and(|n| TYPE_NAMES.contains(&n));
                    let ok = match value {
                        Value::String(_) => ok_name(value),
                        Value::Array(names) => !names.is_empty() && names.iter().all(ok_name),
                        _ => false,
                    };
                    if !ok {
                        return Err(format!(
                            "{loc}: \"type\" must be one of {} or a non-empty array of them, found {}",
                            TYPE_NAMES.map(|n| format!("\"{n}\"")).join(", "),
                            short_json(value)
                        ));
                    }
                }
                "enum" if !value.is_array() => {
                    return bad(key, "an array", value);
                }
                "required" => match value {
                    Value::Array(names) if names.iter().all(Value::is_string) => {}
                    _ => return bad(key, "an array of strings", value),
                },
                "properties" | "definitions" | "$defs" | "dependentSchemas" => {
                    let Value::Object(map) = value else {
                        return bad(key, "an object", value);
                    };
                    for (name, subschema) in map {
                        self.walk(subschema, format!("{}/{}", sub(key), escape_token(name)))?;
                    }
                }
                "dependentRequired" | "dependencies" => {
                    let Value::Object(map) = value else {
                        return bad(key, "an object", value);
                    };
                    for (name, dep) in map {
                        match dep {
                            Value::Array(names) if names.iter().all(Value::is_string) => {}
                            Value::Array(_) => {
                                return Err(format!(
                                    "{}: \"{key}\" of {} must list option names (strings)",
                                    loc,
                                    quote(name)
                                ))
                            }
                            _ if key == "dependencies" => {
                                self.walk(dep, format!("{}/{}", sub(key), escape_token(name)))?
                            }
                            _ => return bad(key, "an object of string arrays", value),
                        }
                    }
                }
                "additionalProperties"
                | "additionalItems"
                | "not"
                | "if"
                | "then"
                | "else"
                | "contains"
                | "propertyNames" => self.walk(value, sub(key))?,
                "items" => match value {
                    Value::Array(schemas) => {
                        for (i, subschema) in schemas.iter().enumerate() {
                            self.walk(subschema, format!("{}/{i}", sub(key)))?;
                        }
                    }
                    _ => self.walk(value, sub(key))?,
                },
                "prefixItems" | "allOf" | "anyOf" | "oneOf" => {
                    let Value::Array(schemas) = value else {
                        return bad(key, "a non-empty array of schemas", value);
                    };
                    if schemas.is_empty() {
                        return bad(key, "a non-empty array of schemas", value);
                    }
                    for (i, subschema) in schemas.iter().enumerate() {
                        self.walk(subschema, format!("{}/{i}", sub(key)))?;
                    }
                }
                "minItems" | "maxItems" | "minLength" | "maxLength" | "minProperties" | "maxProperties"
                | "minContains" | "maxContains"
                    if count(s, key).is_none() =>
                {
                    return bad(key, "a non-negative integer", value);
                }
                "minimum" | "maximum" if !value.is_number() => {
                    return bad(key, "a number", value);
                }
                "exclusiveMinimum" | "exclusiveMaximum" if !value.is_number() && !value.is_boolean() => {
                    return bad(key, "a number (or, draft-04 style, a boolean)", value);
                }
                "multipleOf" if !value.as_f64().is_some_and(|m| m > 0.0) => {
                    return bad(key, "a number greater than 0", value);
                }
                "uniqueItems" if !value.is_boolean() => {
                    return bad(key, "a boolean", value);
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Reports a cycle of schemas applied to the same value (through `$ref`s).
    fn find_cycles(&self) -> Result<(), String> {
        #[derive(Clone, Copy, PartialEq)]
        enum State {
            Active,
            Done,
        }
        let mut state: std::collections::HashMap<*const Value, State> = std::collections::HashMap::new();
        let mut stack: Vec<(&Value, String)> = Vec::new();

        fn visit<'v>(
            node: &'v Value,
            loc: String,
            root: &'v Value,
            state: &mut std::collections::HashMap<*const Value, State>,
            stack: &mut Vec<(&'v Value, String)>,
        ) -> Result<(), String> {
            let ptr = node as *const Value;
            match state.get(&ptr) {
                Some(State::Done) => return Ok(()),
                Some(State::Active) => {
                    let from = stack.iter().position(|(n, _)| std::ptr::eq(*n, node)).unwrap_or(0);
                    let mut names: Vec<&str> = stack[from..].iter().map(|(_, l)| l.as_str()).collect();
                    names.push(&loc);
                    return Err(format!(
                        "$ref cycle that never reaches a deeper value: {}",
                        names.join(" -> ")
                    ));
                }
                None => {}
            }
            state.insert(ptr, State::Active);
            stack.push((node, loc.clone()));
            for (child, child_loc) in in_place_children(node, &loc, root) {
                visit(child, child_loc, root, state, stack)?;
            }
            stack.pop();
            state.insert(ptr, State::Done);
            Ok(())
        }

        for (node, loc) in &self.nodes {
            visit(node, loc.clone(), self.root, &mut state, &mut stack)?;
        }
        Ok(())
    }
}

/// The subschemas that apply to the same value as `schema` does.
fn in_place_children<'v>(schema: &'v Value, loc: &str, root: &'v Value) -> Vec<(&'v Value, String)> {
    let mut out = Vec::new();
    let Value::Object(s) = schema else {
        return out;
    };
    if let Some(target) = s.get("$ref").and_then(Value::as_str).and_then(|r| resolve(root, r)) {
        out.push((target, s["$ref"].as_str().unwrap_or_default().to_string()));
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        if let Some(Value::Array(subs)) = s.get(key) {
            out.extend(subs.iter().enumerate().map(|(i, v)| (v, format!("{loc}/{key}/{i}"))));
        }
    }
    for key in ["not", "if", "then", "else"] {
        if let Some(v) = s.get(key) {
            out.push((v, format!("{loc}/{key}")));
        }
    }
    for key in ["dependencies", "dependentSchemas"] {
        if let Some(Value::Object(deps)) = s.get(key) {
            out.extend(
                deps.iter()
                    .filter(|(_, v)| !v.is_array())
                    .map(|(k, v)| (v, format!("{loc}/{key}/{}", escape_token(k)))),
            );
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

    /// (path, message) of every error.
    fn errs(schema: &Value, inst: Value) -> Vec<(Vec<PathSegment>, String)> {
        validate(schema, &inst)
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
    }

    #[test]
    fn types() {
        let s = json!({"type": "integer"});
        valid(&s, json!(1));
        valid(&s, json!(-1));
        valid(&s, json!(1.0));
        valid(&s, json!(u64::MAX));
        assert_eq!(msg(&s, json!(1.5)), "expected integer, found number 1.5");
        assert_eq!(msg(&s, json!("1")), "expected integer, found string \"1\"");
        let s = json!({"type": ["string", "null"]});
        valid(&s, json!("x"));
        valid(&s, json!(null));
        assert_eq!(msg(&s, json!(true)), "expected string or null, found boolean true");
        let s = json!({"type": ["string", "array", "object"]});
        assert_eq!(msg(&s, json!(3)), "expected string, array or object, found number 3");
        assert_eq!(
            msg(&json!({"type": "object"}), json!([])),
            "expected object, found array"
        );
        assert_eq!(
            msg(&json!({"type": "array"}), json!({})),
            "expected array, found object"
        );
        assert_eq!(
            msg(&json!({"type": "number"}), json!(null)),
            "expected number, found null"
        );
        valid(&json!({"type": "number"}), json!(1));
        valid(&json!({"type": "number"}), json!(1.5));
        // A type mismatch stops other keywords from piling on.
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
        assert_eq!(
            msg(&json!({"enum": []}), json!(1)),
            "no value is allowed here (\"enum\" is empty)"
        );
        valid(&json!({"enum": [1, [1, {"a": 2}]]}), json!([1.0, {"a": 2.0}]));
        valid(&json!({"enum": [null]}), json!(null));
        let many: Vec<i32> = (0..20).collect();
        assert!(msg(&json!({ "enum": many }), json!(99)).ends_with("... (20 choices in all)"));
        let s = json!({"const": {"a": [1, 2]}});
        valid(&s, json!({"a": [1, 2.0]}));
        assert_eq!(msg(&s, json!({"a": [1]})), "must be {\"a\":[1,2]}");
        assert_eq!(msg(&json!({"const": 1}), json!(1.5)), "must be 1");
        valid(&json!({"const": 1}), json!(1.0));
        assert_eq!(msg(&json!({"const": "1"}), json!(1)), "must be \"1\"");
        assert_eq!(msg(&json!({"const": false}), json!(0)), "must be false");
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
        let s = json!({"exclusiveMinimum": 0, "exclusiveMaximum": 5});
        valid(&s, json!(0.1));
        assert_eq!(msg(&s, json!(0)), "must be greater than 0");
        assert_eq!(msg(&s, json!(5)), "must be less than 5");
        let s = json!({"minimum": 0, "exclusiveMinimum": true, "maximum": 5, "exclusiveMaximum": true});
        assert_eq!(msg(&s, json!(0)), "must be greater than 0");
        assert_eq!(msg(&s, json!(5.0)), "must be less than 5");
        valid(&s, json!(4));
        let s = json!({"minimum": 0, "exclusiveMinimum": false});
        valid(&s, json!(0));
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
        valid(&json!({"multipleOf": 1e-300}), json!(1));
        assert_eq!(
            msg(&json!({"multipleOf": 1e-308}), json!(1e308)),
            "must be a multiple of 1e-308"
        );
        // Number keywords ignore non-numbers.
        valid(&json!({"minimum": 5}), json!("x"));
        assert!(is_multiple(Num::Int(0), Num::Int(7)));
        assert!(!is_multiple(Num::Int(1), Num::Int(0)));
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
        valid(&json!({"maxLength": 2.0}), json!("ab"));
        // pattern and format are ignored.
        valid(&json!({"pattern": "^a$", "format": "uri"}), json!("zzz"));
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
            one(&s, json!(["a", 1, 2])),
            (vec![i(2)], "too many items: at most 2 are allowed".to_string())
        );
        let s = json!({"items": [{"type": "string"}], "additionalItems": {"type": "number"}});
        assert_eq!(
            one(&s, json!(["a", 1, "b"])),
            (vec![i(2)], "expected number, found string \"b\"".to_string())
        );
        // Tuples, 2020-12 style.
        let s = json!({"prefixItems": [{"const": "a"}], "items": false});
        valid(&s, json!(["a"]));
        assert_eq!(
            one(&s, json!(["a", "b"])),
            (vec![i(1)], "too many items: at most 1 is allowed".to_string())
        );
        let s = json!({"items": false});
        assert_eq!(
            one(&s, json!([1])),
            (vec![i(0)], "no value is allowed here".to_string())
        );
        valid(&s, json!([]));
        // contains
        let s = json!({"contains": {"const": 3}});
        valid(&s, json!([1, 3]));
        assert_eq!(
            msg(&s, json!([1, 2])),
            "must contain an item matching the \"contains\" schema"
        );
        let s = json!({"contains": {"type": "string"}, "minContains": 2, "maxContains": 3});
        assert_eq!(
            msg(&s, json!(["a", 1])),
            "must contain at least 2 items matching the \"contains\" schema, found 1"
        );
        assert_eq!(
            msg(&s, json!(["a", "b", "c", "d"])),
            "must contain at most 3 items matching the \"contains\" schema, found 4"
        );
        // Array keywords ignore non-arrays.
        valid(&json!({"minItems": 3, "items": false}), json!({"a": 1}));
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
        let s = json!({"properties": {"a": false}});
        assert_eq!(
            one(&s, json!({"a": 1})),
            (vec![k("a")], "option \"a\" is not allowed".to_string())
        );
        // patternProperties can't be evaluated, so additionalProperties is not enforced.
        let s = json!({"patternProperties": {"^x-": {}}, "additionalProperties": false});
        valid(&s, json!({"x-a": 1, "b": 2}));
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
        let s = json!({"dependentRequired": {"a": ["b", "c"]}, "dependentSchemas": {"b": {"properties": {"a": {"type": "string"}}}}});
        assert_eq!(
            errs(&s, json!({"a": 1, "b": 1})),
            vec![
                (vec![], "option \"a\" requires option \"c\"".to_string()),
                (vec![k("a")], "expected string, found number 1".to_string())
            ]
        );
        // propertyNames
        let s = json!({"propertyNames": {"maxLength": 3}});
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
        let s = json!({
            "if": {"properties": {"kind": {"const": "url"}}},
            "then": {"required": ["url"]},
            "else": {"required": ["path"]}
        });
        valid(&s, json!({"kind": "url", "url": "x"}));
        valid(&s, json!({"kind": "file", "path": "x"}));
        assert_eq!(msg(&s, json!({"kind": "url"})), "missing required option \"url\"");
        assert_eq!(msg(&s, json!({"kind": "file"})), "missing required option \"path\"");
        valid(&json!({"if": {"type": "string"}}), json!(1));
        valid(&json!({"then": false}), json!(1));
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
    }

    #[test]
    fn refs() {
        let s = json!({
            "definitions": {
                "mode": {"type": "integer", "minimum": 0},
                "a/b": {"type": "string"},
                "t~n": {"type": "boolean"},
                "sp ace": {"const": 1}
            },
            "$defs": {"node": {"type": "object", "properties": {"children": {"type": "array", "items": {"$ref": "#/$defs/node"}}, "m": {"$ref": "#/definitions/mode"}}}},
            "properties": {
                "mode": {"$ref": "#/definitions/mode"},
                "slash": {"$ref": "#/definitions/a~1b"},
                "tilde": {"$ref": "#/definitions/t~0n"},
                "pct": {"$ref": "#/definitions/sp%20ace"},
                "tree": {"$ref": "#/$defs/node"},
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
        assert_eq!(resolve(&json!([1, [2, 3]]), "#/1/0"), Some(&json!(2)));
        assert_eq!(resolve(&json!([1, [2, 3]]), "#/01"), None);
        assert_eq!(resolve(&json!({"": 5}), "#/"), Some(&json!(5)));
        assert_eq!(resolve(&json!({}), "other.json#/x"), None);
        assert_eq!(resolve(&json!({}), "#anchor"), None);
    }

    #[test]
    fn ref_siblings_depend_on_draft() {
        let s = json!({"definitions": {"s": {"type": "string"}}, "properties": {"a": {"$ref": "#/definitions/s", "maxLength": 1}}});
        assert_eq!(msg(&s, json!({"a": "xy"})), "must be at most 1 character long");
        let mut old = s.clone();
        old["$schema"] = json!("http://json-schema.org/draft-04/schema#");
        valid(&old, json!({"a": "xy"}));
        assert_eq!(msg(&old, json!({"a": 1})), "expected string, found number 1");
    }

    #[test]
    fn ref_cycles() {
        for s in [
            json!({"$ref": "#"}),
            json!({"definitions": {"a": {"$ref": "#/definitions/b"}, "b": {"$ref": "#/definitions/a"}}, "$ref": "#/definitions/a"}),
            json!({"allOf": [{"$ref": "#"}]}),
            json!({"definitions": {"a": {"anyOf": [{"type": "string"}, {"not": {"$ref": "#/definitions/a"}}]}}, "properties": {"x": {"$ref": "#/definitions/a"}}}),
        ] {
            let e = check_schema(&s).unwrap_err();
            assert!(e.contains("$ref cycle"), "{e}");
            // validate must not recurse forever either (and reports the cycle unless a
            // "not" turns the failure into a success).
            let found = errs(&s, json!({"x": 1}));
            assert!(
                s.to_string().contains("not") || found.iter().any(|(_, m)| m.contains("$ref cycle")),
                "{s}: {found:?}"
            );
        }
        let e = check_schema(&json!({"definitions": {"a": {"$ref": "#/definitions/a"}}})).unwrap_err();
        assert_eq!(
            e,
            "$ref cycle that never reaches a deeper value: #/definitions/a -> #/definitions/a"
        );
        // Recursion through a deeper value is fine.
        let s = json!({"properties": {"next": {"$ref": "#"}}, "type": "object"});
        check_schema(&s).unwrap();
        valid(&s, json!({"next": {"next": {}}}));
        assert_eq!(one(&s, json!({"next": {"next": 1}})).0, vec![k("next"), k("next")]);
    }

    #[test]
    fn unresolvable_ref_at_validation() {
        let s = json!({"properties": {"a": {"$ref": "#/definitions/nope"}}});
        assert_eq!(
            one(&s, json!({"a": 1})),
            (
                vec![k("a")],
                "invalid schema: cannot resolve $ref \"#/definitions/nope\"".to_string()
            )
        );
        assert!(check_schema(&s)
            .unwrap_err()
            .contains("cannot resolve $ref \"#/definitions/nope\""));
    }

    #[test]
    fn check_schema_reports_bad_keywords() {
        let cases = [
            (json!(3), "#: a schema must be an object or a boolean, found number 3"),
            (json!({"type": "str"}), "#: \"type\" must be one of"),
            (json!({"type": []}), "#: \"type\" must be one of"),
            (
                json!({"properties": {"a": {"minItems": -1}}}),
                "#/properties/a: \"minItems\" must be a non-negative integer, found number -1",
            ),
            (
                json!({"properties": {"a/b": {"maxLength": "3"}}}),
                "#/properties/a~1b: \"maxLength\" must be a non-negative integer, found string \"3\"",
            ),
            (json!({"required": "a"}), "#: \"required\" must be an array of strings"),
            (json!({"required": true}), "#: \"required\" must be an array of strings"),
            (json!({"enum": "a"}), "#: \"enum\" must be an array"),
            (
                json!({"properties": []}),
                "#: \"properties\" must be an object, found array",
            ),
            (
                json!({"additionalProperties": "no"}),
                "#/additionalProperties: a schema must be an object or a boolean",
            ),
            (json!({"items": [{"type": 1}]}), "#/items/0: \"type\" must be one of"),
            (
                json!({"anyOf": []}),
                "#: \"anyOf\" must be a non-empty array of schemas",
            ),
            (
                json!({"oneOf": {}}),
                "#: \"oneOf\" must be a non-empty array of schemas",
            ),
            (
                json!({"allOf": [{}, 1]}),
                "#/allOf/1: a schema must be an object or a boolean",
            ),
            (json!({"minimum": "0"}), "#: \"minimum\" must be a number"),
            (
                json!({"exclusiveMaximum": "0"}),
                "#: \"exclusiveMaximum\" must be a number (or, draft-04 style, a boolean)",
            ),
            (
                json!({"multipleOf": 0}),
                "#: \"multipleOf\" must be a number greater than 0",
            ),
            (json!({"uniqueItems": 1}), "#: \"uniqueItems\" must be a boolean"),
            (json!({"$ref": 1}), "#: \"$ref\" must be a string"),
            (
                json!({"$ref": "http://example.com/s.json"}),
                "unsupported $ref \"http://example.com/s.json\"",
            ),
            (
                json!({"$ref": "#/definitions/x"}),
                "#: cannot resolve $ref \"#/definitions/x\"",
            ),
            (
                json!({"definitions": {"x": {"not": 5}}}),
                "#/definitions/x/not: a schema must be",
            ),
            (
                json!({"dependencies": {"a": [1]}}),
                "\"dependencies\" of \"a\" must list option names",
            ),
            (
                json!({"dependentRequired": {"a": {}}}),
                "\"dependentRequired\" must be an object of string arrays",
            ),
            (
                json!({"definitions": {"x": {"type": "string"}}, "$ref": "#/definitions/x/type"}),
                "#/definitions/x/type: a schema must be an object or a boolean",
            ),
        ];
        for (schema, expected) in cases {
            let e = check_schema(&schema).unwrap_err();
            assert!(e.starts_with(expected) || e.contains(expected), "{schema}: {e}");
        }
        // Unknown keywords and unsupported-but-known ones are fine.
        check_schema(&json!({
            "$schema": "http://json-schema.org/draft-07/schema#",
            "title": "x", "description": "y", "default": {"a": 1}, "examples": [1],
            "pattern": "^a", "format": "uri", "patternProperties": {"^x": {}},
            "x-custom": [1, 2], "minItems": 1.0, "exclusiveMinimum": true, "minimum": 0,
            "dependencies": {"a": ["b"], "c": {"type": "object"}}, "items": {"type": "string"}
        }))
        .unwrap();
    }

    #[test]
    fn canonical_matches_json_eq() {
        let values = [
            json!(1),
            json!(1.0),
            json!(-1),
            json!(1.5),
            json!(1e20),
            json!(100000000000000000000.0),
            json!(u64::MAX),
            json!("1"),
            json!([1]),
            json!([1.0]),
            json!({"a": 1}),
            json!({"a": 1.0}),
            json!({"b": 1}),
            json!(null),
            json!(false),
        ];
        for a in &values {
            for b in &values {
                assert_eq!(json_eq(a, b), canonical(a) == canonical(b), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn helpers() {
        assert_eq!(show_path(&[k("paths"), i(0), k("mode")]), "paths[0].mode");
        assert_eq!(join_or(&["a".into(), "b".into(), "c".into()]), "a, b or c");
        assert_eq!(join_and(&["1".into()], "alternatives"), "alternative 1");
        assert_eq!(percent_decode("a%2Fb"), Some("a/b".into()));
        assert_eq!(percent_decode("a%2"), None);
    }
}
