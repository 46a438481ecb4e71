//! Name look-ups in a tree's own `/etc/passwd` and `/etc/group`.
//!
//! Stages resolve user and group names against the tree they build, never the
//! host: NSS would consult the build root, and a static binary has no NSS at all.

use std::path::Path;

use crate::tree::Tree;

/// One `name:x:id:...` line's name and numeric id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub id: u32,
}

/// Parses the `name` and third field of a passwd- or group-style file.
pub fn parse(text: &str) -> Vec<Entry> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?.to_string();
            let id = fields.nth(1)?.parse().ok()?;
            Some(Entry { name, id })
        })
        .collect()
}

fn lookup(tree: &Tree, file: &str, name: &str) -> Result<u32, String> {
    let text = tree
        .read_to_string(file)
        .map_err(|e| format!("cannot look up {name:?}: {e}"))?;
    parse(&text)
        .into_iter()
        .find(|e| e.name == name)
        .map(|e| e.id)
        .ok_or_else(|| format!("{name:?} is not in the tree's {}", Path::new("/").join(file).display()))
}

/// A user given as a number or as a name known to the tree.
pub fn uid(tree: &Tree, user: &crate::api::Owner) -> Result<u32, String> {
    match user {
        crate::api::Owner::Id(id) => Ok(*id),
        crate::api::Owner::Name(name) => lookup(tree, "etc/passwd", name),
    }
}

/// A group given as a number or as a name known to the tree.
pub fn gid(tree: &Tree, group: &crate::api::Owner) -> Result<u32, String> {
    match group {
        crate::api::Owner::Id(id) => Ok(*id),
        crate::api::Owner::Name(name) => lookup(tree, "etc/group", name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_passwd_lines() {
        let text =
            "root:x:0:0:root:/root:/bin/bash\n# comment\nbroken\n_apt:x:42:65534::/nonexistent:/usr/sbin/nologin\n";
        assert_eq!(
            parse(text),
            vec![
                Entry {
                    name: "root".into(),
                    id: 0
                },
                Entry {
                    name: "_apt".into(),
                    id: 42
                }
            ]
        );
    }
}
