//! Editing a tree's account databases (`/etc/passwd`, `shadow`, `group`,
//! `gshadow`, `subuid`, `subgid`) in place, for `org.osbuild.users` and
//! `org.osbuild.groups`.
//!
//! The stages edit these files directly rather than running `useradd --root`:
//! `useradd` stamps today's date into `/etc/shadow` (so two builds of the same
//! manifest differ), writes backup files (`passwd-`, `.pwd.lock`), may log to
//! syslog and nscd, and needs a `useradd` whose idea of the files matches the
//! tree's. Editing the text is deterministic and works for any tree with the
//! classic colon-separated files. Policy that `useradd` would take from the tree
//! (`/etc/login.defs`, `/etc/default/useradd`) is read from the tree here too.

use std::collections::{BTreeSet, HashMap};

use crate::api::StageError;
use crate::tree::Tree;

/// A user or group name, checked against osbuild's pattern
/// `^[A-Za-z0-9_.][A-Za-z0-9_.-]{0,31}$`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct AccountName(pub String);

impl AccountName {
    pub fn valid(name: &str) -> bool {
        let mut chars = name.chars();
        let Some(first) = chars.next() else {
            return false;
        };
        name.len() <= 32
            && (first.is_ascii_alphanumeric() || first == '_' || first == '.')
            && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    }
}

impl std::fmt::Display for AccountName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for AccountName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if AccountName::valid(&s) {
            Ok(AccountName(s))
        } else {
            Err(serde::de::Error::custom(format!(
                "{s:?} is not a valid account name (letters, digits, '_', '.', '-', at most 32, not starting with '-')"
            )))
        }
    }
}

impl schemars::JsonSchema for AccountName {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "AccountName".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^[A-Za-z0-9_.][A-Za-z0-9_.-]{0,31}$",
        })
    }
}

/// A value for a field of a colon-separated line (a description, a shell,
/// a password hash): no `:` and no line break, which would break the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field(String);

impl Field {
    pub fn parse(value: &str) -> Result<Self, String> {
        if value.contains([':', '\n', '\r']) {
            return Err(format!("{value:?} must not contain ':' or a line break"));
        }
        Ok(Field(value.to_string()))
    }
}

crate::string_newtype!(
    Field,
    {
        "type": "string",
        "pattern": "^[^:\\n\\r]*$",
    }
);

enum Line {
    Entry(Vec<String>),
    /// A comment, a blank or an unparsable line, kept as it was.
    Other(String),
}

/// One colon-separated database file of the tree, edited in memory and written
/// back (atomically, keeping its mode and owner) only when it changed.
pub struct DbFile {
    /// Path relative to the tree, for messages (`/etc/passwd`).
    pub name: String,
    /// Path relative to the tree (`etc/passwd`).
    rel: String,
    /// Whether the file exists in the tree; an absent optional file is never created.
    pub present: bool,
    fields: usize,
    lines: Vec<Line>,
    changed: bool,
}

impl DbFile {
    /// Loads `rel` (e.g. `etc/passwd`) whose lines have `fields` fields.
    pub fn load(tree: &Tree, rel: &str, fields: usize) -> Result<Self, StageError> {
        let (present, text) = match tree.read_to_string(rel) {
            Ok(text) => (true, text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (false, String::new()),
            Err(e) => return Err(e.into()),
        };
        let lines = text
            .lines()
            .map(|l| {
                if l.trim().is_empty() || l.trim_start().starts_with('#') || !l.contains(':') {
                    Line::Other(l.to_string())
                } else {
                    let mut f: Vec<String> = l.split(':').map(str::to_string).collect();
                    if f.len() < fields {
                        f.resize(fields, String::new());
                    }
                    Line::Entry(f)
                }
            })
            .collect();
        Ok(DbFile {
            name: format!("/{rel}"),
            rel: rel.to_string(),
            present,
            fields,
            lines,
            changed: false,
        })
    }

    /// Like [`DbFile::load`], but the file must exist.
    pub fn load_required(tree: &Tree, rel: &str, fields: usize) -> Result<Self, StageError> {
        let db = Self::load(tree, rel, fields)?;
        if !db.present {
            return Err(format!("the tree has no /{rel}").into());
        }
        Ok(db)
    }

    pub fn entries(&self) -> impl Iterator<Item = &Vec<String>> {
        self.lines.iter().filter_map(|l| match l {
            Line::Entry(f) => Some(f),
            Line::Other(_) => None,
        })
    }

    pub fn get(&self, name: &str) -> Option<&Vec<String>> {
        self.entries().find(|f| f[0] == name)
    }

    /// The entry named `name`, marking the file as changed.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut Vec<String>> {
        let found = self.lines.iter_mut().find_map(|l| match l {
            Line::Entry(f) if f[0] == name => Some(f),
            _ => None,
        });
        if found.is_some() {
            self.changed = true;
        }
        found
    }

    /// Every entry, for edits across the file (group membership); marks it changed.
    pub fn entries_mut(&mut self) -> impl Iterator<Item = &mut Vec<String>> {
        self.changed = true;
        self.lines.iter_mut().filter_map(|l| match l {
            Line::Entry(f) => Some(f),
            Line::Other(_) => None,
        })
    }

    pub fn push(&mut self, mut fields: Vec<String>) {
        fields.resize(self.fields.max(fields.len()), String::new());
        self.lines.push(Line::Entry(fields));
        self.changed = true;
    }

    /// The numeric ids in field `index` (the third field of passwd and group).
    pub fn ids(&self, index: usize) -> BTreeSet<u32> {
        self.entries().filter_map(|f| f[index].parse().ok()).collect()
    }

    /// Writes the file back (atomically, keeping its mode and owner: shadow
    /// is root:shadow 0640 on Debian) if it exists in the tree and was changed.
    pub fn save(&self, tree: &Tree) -> Result<(), StageError> {
        if !self.present || !self.changed {
            return Ok(());
        }
        let mut text = String::new();
        for line in &self.lines {
            match line {
                Line::Entry(f) => text.push_str(&f.join(":")),
                Line::Other(s) => text.push_str(s),
            }
            text.push('\n');
        }
        tree.rewrite(&self.rel, text)?;
        Ok(())
    }
}

/// `KEY VALUE` settings from the tree's `/etc/login.defs` (absent file: all defaults).
pub struct LoginDefs(HashMap<String, String>);

impl LoginDefs {
    /// No settings: every default applies.
    pub fn empty() -> Self {
        LoginDefs(HashMap::new())
    }

    pub fn load(tree: &Tree) -> Self {
        let text = tree.read_to_string("etc/login.defs").unwrap_or_default();
        LoginDefs(
            text.lines()
                .filter(|l| !l.trim_start().starts_with('#'))
                .filter_map(|l| {
                    let mut words = l.split_whitespace();
                    Some((words.next()?.to_string(), words.next()?.to_string()))
                })
                .collect(),
        )
    }

    pub fn str(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// A number, decimal or (with a leading 0) octal as in `UMASK 022`.
    pub fn num(&self, key: &str, default: u32) -> u32 {
        self.str(key)
            .and_then(|v| {
                if v.len() > 1 && v.starts_with('0') {
                    u32::from_str_radix(&v[1..], 8).ok()
                } else {
                    v.parse().ok()
                }
            })
            .unwrap_or(default)
    }
}

/// `KEY=VALUE` settings of `/etc/default/useradd`.
pub type UseraddDefaults = HashMap<String, String>;

/// `KEY=VALUE` settings from the tree's `/etc/default/useradd`.
pub fn useradd_defaults(tree: &Tree) -> UseraddDefaults {
    let text = tree.read_to_string("etc/default/useradd").unwrap_or_default();
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let (k, v) = l.split_once('=')?;
            Some((k.trim().to_string(), v.trim().trim_matches('"').to_string()))
        })
        .collect()
}

/// The id `useradd`/`groupadd` would pick: one above the highest id in use
/// within `[min, max]`, or `min` when none is; when that overflows `max`, the
/// lowest free id in the range.
pub fn next_id(used: &BTreeSet<u32>, min: u32, max: u32) -> Option<u32> {
    match used.range(min..=max).next_back() {
        None => Some(min),
        Some(&highest) if highest < max => Some(highest + 1),
        Some(_) => (min..=max).find(|id| !used.contains(id)),
    }
}

/// Adds a group (and its gshadow line, when the tree has gshadow).
pub fn add_group(group: &mut DbFile, gshadow: &mut DbFile, name: &str, gid: u32, members: &str) {
    group.push(vec![name.into(), "x".into(), gid.to_string(), members.into()]);
    if gshadow.present {
        gshadow.push(vec![name.into(), "!".into(), String::new(), members.into()]);
    }
}

/// Splits a comma-separated member list, dropping empty items.
pub fn members(list: &str) -> Vec<&str> {
    list.split(',').filter(|m| !m.is_empty()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_useradd() {
        let used: BTreeSet<u32> = [0, 1, 100, 1000, 1001, 65534].into();
        assert_eq!(next_id(&used, 1000, 60000), Some(1002));
        assert_eq!(next_id(&[0].into(), 1000, 60000), Some(1000));
        assert_eq!(next_id(&[1000, 1002].into(), 1000, 1002), Some(1001));
        assert_eq!(next_id(&[1000, 1001].into(), 1000, 1001), None);
    }

    #[test]
    fn names() {
        assert!(AccountName::valid("test.user_42-OSBUILD"));
        assert!(AccountName::valid("_apt"));
        assert!(!AccountName::valid("-bad"));
        assert!(!AccountName::valid("has:colon"));
        assert!(!AccountName::valid(""));
        assert!(!AccountName::valid(&"a".repeat(33)));
    }

    #[test]
    fn fields() {
        assert!(Field::parse("Alice Example, Room 3").is_ok());
        assert!(Field::parse("").is_ok());
        for bad in ["a:b", "a\nb", "a\r"] {
            assert!(Field::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn login_defs_numbers() {
        let defs = LoginDefs(
            [
                ("UMASK".to_string(), "022".to_string()),
                ("UID_MIN".to_string(), "1000".to_string()),
            ]
            .into(),
        );
        assert_eq!(defs.num("UMASK", 0), 0o22);
        assert_eq!(defs.num("UID_MIN", 0), 1000);
        assert_eq!(defs.num("GID_MIN", 7), 7);
    }
}
