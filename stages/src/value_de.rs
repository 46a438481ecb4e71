//! Deserializing options from a [`serde_json::Value`] with an error type that
//! knows what went wrong: an unknown key, a missing key, or a value that does
//! not fit.
//!
//! serde reports unknown and missing fields by calling
//! [`serde::de::Error::unknown_field`] and [`serde::de::Error::missing_field`]
//! on the deserializer's error type; `serde_json::Error` turns them into text
//! at once. This deserializer's error type keeps the kind instead, so nothing
//! downstream has to read it back out of a message. Everything else behaves as
//! deserializing from `&serde_json::Value` does, messages included.

use std::fmt;

use serde::de::value::{BorrowedStrDeserializer, MapAccessDeserializer, MapDeserializer, SeqDeserializer};
use serde::de::{self, IntoDeserializer, Unexpected, Visitor};
use serde_json::Value;

use crate::api::ProblemKind;

/// What went wrong while deserializing options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    pub kind: ProblemKind,
    /// The key that is missing (for [`ProblemKind::Missing`]) or unknown
    /// (for [`ProblemKind::Unknown`]).
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Problem {}

impl de::Error for Problem {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Problem {
            kind: ProblemKind::Invalid,
            key: None,
            message: msg.to_string(),
        }
    }

    // The same words as serde's own defaults.
    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        let message = if expected.is_empty() {
            format!("unknown field `{field}`, there are no fields")
        } else {
            format!("unknown field `{field}`, expected {}", one_of(expected))
        };
        Problem {
            kind: ProblemKind::Unknown,
            key: Some(field.to_string()),
            message,
        }
    }

    fn missing_field(field: &'static str) -> Self {
        Problem {
            kind: ProblemKind::Missing,
            key: Some(field.to_string()),
            message: format!("missing field `{field}`"),
        }
    }
}

/// "`a`", "`a` or `b`", "one of `a`, `b`, `c`", as serde words it.
fn one_of(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    match quoted.as_slice() {
        [one] => one.clone(),
        [a, b] => format!("{a} or {b}"),
        _ => format!("one of {}", quoted.join(", ")),
    }
}

/// A deserializer over a borrowed JSON value.
pub(crate) struct ValueDe<'a>(pub &'a Value);

impl<'de> IntoDeserializer<'de, Problem> for ValueDe<'de> {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

fn unexpected(v: &Value) -> Unexpected<'_> {
    match v {
        Value::Null => Unexpected::Unit,
        Value::Bool(b) => Unexpected::Bool(*b),
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => Unexpected::Unsigned(u),
            (None, Some(i)) => Unexpected::Signed(i),
            _ => Unexpected::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Unexpected::Str(s),
        Value::Array(_) => Unexpected::Seq,
        Value::Object(_) => Unexpected::Map,
    }
}

impl<'de> de::Deserializer<'de> for ValueDe<'de> {
    type Error = Problem;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Problem> {
        match self.0 {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Number(n) => match (n.as_u64(), n.as_i64()) {
                (Some(u), _) => visitor.visit_u64(u),
                (None, Some(i)) => visitor.visit_i64(i),
                _ => visitor.visit_f64(n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::String(s) => visitor.visit_borrowed_str(s),
            Value::Array(items) => {
                let mut seq = SeqDeserializer::new(items.iter().map(ValueDe));
                let value = visitor.visit_seq(&mut seq)?;
                seq.end()?;
                Ok(value)
            }
            Value::Object(members) => {
                let mut map = MapDeserializer::new(members.iter().map(|(k, v)| (k.as_str(), ValueDe(v))));
                let value = visitor.visit_map(&mut map)?;
                map.end()?;
                Ok(value)
            }
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Problem> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _: &'static str, visitor: V) -> Result<V::Value, Problem> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Problem> {
        match self.0 {
            Value::String(s) => visitor.visit_enum(BorrowedStrDeserializer::new(s)),
            Value::Object(members) if members.len() == 1 => visitor.visit_enum(MapAccessDeserializer::new(
                MapDeserializer::new(members.iter().map(|(k, v)| (k.as_str(), ValueDe(v)))),
            )),
            Value::Object(_) => Err(de::Error::invalid_value(Unexpected::Map, &"map with a single key")),
            other => Err(de::Error::invalid_type(unexpected(other), &"string or map")),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Problem> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct identifier
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;

    #[test]
    fn integer_fields_refuse_floats() {
        // osbuild's draft-04 `integer` refuses 7.0 too; fields whose osbuild
        // schema says `number` opt in with `api::whole`.
        let e = serde_path_to_error::deserialize::<_, S>(ValueDe(&json!({"a": 7.0}))).unwrap_err();
        assert!(e.inner().message.contains("floating point"), "{}", e.inner().message);
    }

    #[derive(Debug, serde::Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct S {
        a: u8,
        #[serde(default)]
        b: Option<String>,
        #[serde(default)]
        e: Option<E>,
        #[serde(default)]
        m: BTreeMap<String, Vec<f64>>,
    }

    #[derive(Debug, serde::Deserialize, PartialEq)]
    #[serde(rename_all = "lowercase")]
    enum E {
        Unit,
        New(u32),
    }

    fn de<T: serde::de::DeserializeOwned>(v: &Value) -> Result<T, Problem> {
        T::deserialize(ValueDe(v))
    }

    /// Each mistake's kind and words; the words are serde_json's.
    #[test]
    fn kinds_and_messages() {
        let cases = [
            (json!({}), ProblemKind::Missing, "missing field `a`"),
            (
                json!({"a": 1, "c": 2}),
                ProblemKind::Unknown,
                "unknown field `c`, expected one of `a`, `b`, `e`, `m`",
            ),
            (
                json!({"a": "x"}),
                ProblemKind::Invalid,
                "invalid type: string \"x\", expected u8",
            ),
            (
                json!({"a": 300}),
                ProblemKind::Invalid,
                "invalid value: integer `300`, expected u8",
            ),
            (
                json!({"a": 1, "e": "rar"}),
                ProblemKind::Invalid,
                "unknown variant `rar`, expected `unit` or `new`",
            ),
            (
                json!({"a": 1, "b": 42}),
                ProblemKind::Invalid,
                "invalid type: integer `42`, expected a string",
            ),
            (
                json!("x"),
                ProblemKind::Invalid,
                "invalid type: string \"x\", expected struct S",
            ),
            (
                json!({"a": 1, "m": {"k": [1, "2"]}}),
                ProblemKind::Invalid,
                "invalid type: string \"2\", expected f64",
            ),
        ];
        for (value, kind, message) in cases {
            let e = de::<S>(&value).unwrap_err();
            assert_eq!((e.kind, e.message.as_str()), (kind, message), "{value}");
            let from_json = serde_json::from_value::<S>(value).unwrap_err().to_string();
            assert_eq!(from_json, message, "same words as serde_json");
        }
    }

    #[test]
    fn values_as_from_json() {
        let v = json!({"a": 7, "b": null, "e": {"new": 3}, "m": {"x": [1, -2, 0.5]}});
        assert_eq!(de::<S>(&v).unwrap(), serde_json::from_value::<S>(v.clone()).unwrap());
        assert_eq!(de::<S>(&json!({"a": 0, "e": "unit"})).unwrap().e, Some(E::Unit));
        let any = json!({"k": [null, true, 1, -1, 1.5, "s", {"n": {}}]});
        assert_eq!(de::<Value>(&any).unwrap(), any);
    }
}
