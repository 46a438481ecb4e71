//! Human documentation of a stage's options, rendered from its JSON Schema:
//! names, types, defaults, whether required, and the doc comments.

use std::fmt::Write;

use serde_json::Value;

use crate::registry::StageDef;

/// The text `osbuild stages NAME` prints.
pub fn render(def: &StageDef) -> String {
    let mut out = String::new();
    let origin = if def.is_builtin() {
        "built-in"
    } else {
        "from the libdir"
    };
    let _ = writeln!(out, "{} ({}, {origin})", def.name, def.kind.noun());
    let _ = writeln!(out, "  {}", def.summary);
    let schema_doc = def
        .schema()
        .and_then(|s| s.get("description").and_then(Value::as_str).map(str::to_string));
    if let Some(d) = def.description.as_ref().or(schema_doc.as_ref()) {
        let _ = writeln!(out, "\n  {}", d.replace('\n', "\n  "));
    }
    if def.network {
        let _ = writeln!(out, "  runs with network access");
    }
    match def.schema() {
        None => {
            let _ = writeln!(out, "\noptions: not described (no schema in its meta.json)");
        }
        Some(schema) => {
            let mut lines = Vec::new();
            options(&schema, "", &mut lines);
            if lines.is_empty() {
                let note = if schema.get("additionalProperties") == Some(&Value::Bool(false)) {
                    "none"
                } else {
                    "any"
                };
                let _ = writeln!(out, "\noptions: {note}");
            } else {
                let _ = writeln!(out, "\noptions:");
                for line in lines {
                    let _ = writeln!(out, "{line}");
                }
            }
        }
    }
    out
}

/// Every option as `path  type  [required|default]` plus its description,
/// recursing into nested objects and arrays of objects.
pub fn options(schema: &Value, prefix: &str, out: &mut Vec<String>) {
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return;
    };
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let depth = prefix.matches('.').count() + usize::from(!prefix.is_empty());
    let indent = "  ".repeat(depth + 1);
    for (key, prop) in props {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        let mut line = format!("{indent}{path}: {}", type_name(prop));
        if required.contains(&key.as_str()) {
            line.push_str(" (required)");
        } else if let Some(d) = prop.get("default") {
            line.push_str(&format!(" (default: {d})"));
        }
        out.push(line);
        if let Some(desc) = prop.get("description").and_then(Value::as_str) {
            for l in desc.lines() {
                out.push(format!("{indent}    {l}"));
            }
        }
        let rules = rules(prop);
        if !rules.is_empty() {
            out.push(format!("{indent}    constraints: {}", rules.join(", ")));
        }
        options(prop, &path, out);
        if let Some(items) = prop.get("items") {
            options(items, &format!("{path}[]"), out);
        }
        // A map (users by name, say): document the schema of its values.
        let values = prop
            .get("additionalProperties")
            .filter(|v| v.is_object())
            .into_iter()
            .chain(
                prop.get("patternProperties")
                    .and_then(Value::as_object)
                    .into_iter()
                    .flat_map(|m| m.values()),
            );
        for value in values {
            options(value, &format!("{path}.<name>"), out);
        }
    }
}

/// A short type description: `string`, `array of object`, `one of "a", "b"`.
pub fn type_name(schema: &Value) -> String {
    if let Some(names) = allowed_values(schema).filter(|v| !v.is_empty()) {
        return format!("one of {}", names.join(", "));
    }
    if let Some(alts) = schema
        .get("anyOf")
        .or_else(|| schema.get("oneOf"))
        .and_then(Value::as_array)
    {
        let names: Vec<String> = alts.iter().map(type_name).filter(|n| n != "null").collect();
        return names.join(" or ");
    }
    let base = match schema.get("type") {
        Some(Value::String(t)) => t.clone(),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .filter(|t| *t != "null")
            .collect::<Vec<_>>()
            .join(" or "),
        _ if schema.get("properties").is_some() => "object".into(),
        _ => "any".into(),
    };
    match (base.as_str(), schema.get("items")) {
        ("array", Some(items)) => format!("array of {}", type_name(items)),
        _ => base,
    }
}

/// What a value must be beyond its type, as the schema states it: lengths,
/// bounds, `multipleOf`, a `pattern` (looking through an optional value's
/// `anyOf` with `null`).
fn rules(schema: &Value) -> Vec<String> {
    if let Some(alts) = schema
        .get("anyOf")
        .or_else(|| schema.get("oneOf"))
        .and_then(Value::as_array)
    {
        let real: Vec<&Value> = alts
            .iter()
            .filter(|a| a.get("type").and_then(Value::as_str) != Some("null"))
            .collect();
        return match real.as_slice() {
            [one] => rules(one),
            _ => Vec::new(),
        };
    }
    let num = |key: &str| schema.get(key).and_then(Value::as_f64);
    let mut out = Vec::new();
    match (num("minLength"), num("maxLength")) {
        (Some(min), Some(max)) => out.push(format!("{min} to {max} characters")),
        (Some(min), None) if min > 0.0 => out.push(format!("at least {min} characters")),
        (None, Some(max)) => out.push(format!("at most {max} characters")),
        _ => {}
    }
    // Unsigned integers all have "minimum": 0; that says nothing new.
    if num("minimum").is_some_and(|m| m != 0.0) {
        out.push(format!("at least {}", schema["minimum"]));
    }
    if num("maximum").is_some() {
        out.push(format!("at most {}", schema["maximum"]));
    }
    if num("multipleOf").is_some() {
        out.push(format!("a multiple of {}", schema["multipleOf"]));
    }
    if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
        out.push(format!("matching `{pattern}`"));
    }
    out
}

/// The values a schema allows when it lists them: an `enum`, a `const`, or
/// alternatives of those (as schemars writes an enum with documented
/// variants). `null` is left out: optional options say so elsewhere.
fn allowed_values(schema: &Value) -> Option<Vec<String>> {
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        return Some(values.iter().filter(|v| !v.is_null()).map(Value::to_string).collect());
    }
    if let Some(value) = schema.get("const") {
        return Some(if value.is_null() {
            vec![]
        } else {
            vec![value.to_string()]
        });
    }
    let alternatives = schema.get("anyOf").or_else(|| schema.get("oneOf"))?.as_array()?;
    let mut out = Vec::new();
    for alt in alternatives {
        if alt.get("type").and_then(Value::as_str) == Some("null") {
            continue;
        }
        out.extend(allowed_values(alt)?);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lists_the_values_of_enums_however_written() {
        let documented = json!({"anyOf": [
            {"oneOf": [
                {"enum": ["ext4", "vfat"], "type": "string"},
                {"const": "xfs", "description": "x", "type": "string"}
            ]},
            {"type": "null"}
        ]});
        assert_eq!(type_name(&documented), "one of \"ext4\", \"vfat\", \"xfs\"");
        assert_eq!(
            type_name(&json!({"enum": ["0.10", "1.1", null]})),
            "one of \"0.10\", \"1.1\""
        );
        assert_eq!(
            type_name(&json!({"anyOf": [{"type": "string"}, {"type": "integer"}]})),
            "string or integer"
        );
    }

    #[test]
    fn renders_nested_options() {
        let schema = json!({
            "type": "object",
            "required": ["paths"],
            "properties": {
                "paths": {"type": "array", "description": "Dirs.", "items": {
                    "type": "object", "required": ["path"],
                    "properties": {"path": {"type": "string"}, "mode": {"type": ["integer", "string"], "default": "0755"}}
                }},
                "compression": {"type": "string", "enum": ["none", "gzip"], "default": "none"},
                "host": {"anyOf": [{"type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[a-z]+$"}, {"type": "null"}]},
                "size": {"type": "integer", "minimum": 0, "multipleOf": 512, "default": 0},
                "count": {"type": "integer", "minimum": 1, "maximum": 9}
            }
        });
        let mut lines = Vec::new();
        options(&schema, "", &mut lines);
        assert_eq!(
            lines,
            vec![
                "  compression: one of \"none\", \"gzip\" (default: \"none\")",
                "  count: integer",
                "      constraints: at least 1, at most 9",
                "  host: string",
                "      constraints: 1 to 64 characters, matching `^[a-z]+$`",
                "  paths: array of object (required)",
                "      Dirs.",
                "    paths[].mode: integer or string (default: \"0755\")",
                "    paths[].path: string (required)",
                "  size: integer (default: 0)",
                "      constraints: a multiple of 512",
            ]
        );
    }
}
