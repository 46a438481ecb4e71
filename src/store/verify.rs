//! `store verify`: rehashes every object and finds the ones that are no longer
//! what was committed, and with `repair`, removes them and every tree that
//! stacks one of their layers, so the next build makes them again.

use std::collections::BTreeMap;
use std::io;

use super::{hash_dir, Lookup, ObjectKind, Store};
use crate::manifest::Id;

/// What is wrong with one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// Its content hash is not the one recorded when it was committed.
    Changed { expected: String, found: String },
    /// It cannot be used at all (see [`Lookup::Unusable`]).
    Unusable(String),
    /// One of the layers it stacks is changed or unusable.
    Stacks(Id),
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Changed { expected, found } => write!(f, "changed: its content is {found}, not {expected}"),
            Problem::Unusable(why) => write!(f, "unusable: {why}"),
            Problem::Stacks(layer) => write!(f, "stacks the bad layer {layer}"),
        }
    }
}

#[derive(Debug, Default)]
pub struct VerifyReport {
    /// Objects whose content matched their hash.
    pub verified: usize,
    /// Objects committed before hashes were recorded: nothing to check against.
    pub unhashed: Vec<Id>,
    /// Every bad object, by id.
    pub problems: BTreeMap<Id, Problem>,
    /// Whether the bad objects were removed.
    pub repaired: bool,
}

impl Store {
    /// Checks every object; with `repair`, removes the bad ones. Repairing
    /// needs a store opened with [`Store::open_exclusive`], so that no build
    /// is using what is removed.
    pub fn verify(&self, repair: bool) -> io::Result<VerifyReport> {
        let mut report = VerifyReport::default();
        let mut trees = Vec::new();
        for (id, found) in self.lookup_all()? {
            let meta = match found {
                Lookup::Complete(meta) => meta,
                Lookup::Unusable(why) => {
                    report.problems.insert(id, Problem::Unusable(why));
                    continue;
                }
                Lookup::Absent => continue,
            };
            let Some(expected) = meta.content.clone() else {
                report.unhashed.push(id);
                continue;
            };
            let dir = match meta.kind {
                ObjectKind::Tree => self.object_dir(&id).join("tree"),
                ObjectKind::Image => self.output_dir(&id),
            };
            let found = hash_dir(&dir)?;
            if found == expected {
                report.verified += 1;
                if meta.kind == ObjectKind::Tree {
                    trees.push(meta);
                }
            } else {
                report.problems.insert(id, Problem::Changed { expected, found });
            }
        }
        // A tree is its whole stack of layers: one bad layer spoils it.
        for meta in &trees {
            if let Some(bad) = meta.layers.iter().find(|l| report.problems.contains_key(*l)) {
                report.verified -= 1;
                report.problems.insert(meta.id.clone(), Problem::Stacks(bad.clone()));
            }
        }
        if repair {
            for id in report.problems.keys() {
                self.remove_object(id)?;
            }
            report.repaired = true;
        }
        Ok(report)
    }
}
