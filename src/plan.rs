//! From a manifest to the work to do: every stage's id, and which are stored.
//!
//! Build pipelines come first (innermost first), since their trees are the
//! build roots of the pipelines that name them.

use crate::manifest::{assembler_id, stage_id, Id, Manifest, Pipeline, Stage};
use crate::store::Store;

/// Every pipeline of a manifest, in the order they are built.
#[derive(Debug)]
pub struct Plan {
    pub pipelines: Vec<PlannedPipeline>,
}

#[derive(Debug)]
pub struct PlannedPipeline {
    /// `"build"` for a build pipeline (`"build.build"` for its own), else the main one.
    pub role: String,
    pub name: Option<String>,
    /// The tree this pipeline's stages run in: `None` is the host.
    pub build_root: Option<Id>,
    /// The stored tree the pipeline starts from.
    pub base: Option<Id>,
    /// The pipeline's `source_epoch`.
    pub source_epoch: Option<u64>,
    pub stages: Vec<PlannedStage>,
    pub assembler: Option<PlannedStage>,
    /// The tree after the pipeline's first `assembly_base` stages, which
    /// its assembler builds its image on (part of the assembler's id).
    pub assembly_base: Option<Id>,
}

impl PlannedPipeline {
    /// The id of the finished tree (`None` for an empty pipeline on nothing).
    pub fn tree(&self) -> Option<&str> {
        self.stages.last().map(|s| s.id.as_str()).or(self.base.as_deref())
    }
}

#[derive(Debug)]
pub struct PlannedStage {
    pub stage: Stage,
    pub id: Id,
    pub parent: Option<Id>,
    pub stored: bool,
}

/// A manifest that is well-formed but cannot be planned.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("base {0:?} is neither an id nor a name in the store")]
    UnknownBase(String),
    #[error("the {0} pipeline is empty: a build root needs at least one stage or a base")]
    EmptyBuild(String),
    #[error("the {role} pipeline's assembly_base is {k}: it must count 1 to {stages} of its stages, and it needs an assembler")]
    BadAssemblyBase { role: String, k: usize, stages: usize },
}

/// Computes ids and looks each up in the store (if there is one).
pub fn plan(manifest: &Manifest, store: Option<&Store>) -> Result<Plan, PlanError> {
    let mut pipelines = Vec::new();
    add(&manifest.pipeline, "main", store, &mut pipelines)?;
    Ok(Plan { pipelines })
}

/// The id of the tree `p` makes (its last stage's, or its base's), as far
/// as it is known without a store: None when that needs a stored name.
pub fn tree_id(p: &Pipeline) -> Option<Id> {
    add(p, "main", None, &mut Vec::new()).ok().flatten()
}

/// The ids of the main pipeline's stages, as planned without a store (none
/// when that needs a stored name).
pub fn main_chain(m: &Manifest) -> Vec<Id> {
    plan(m, None)
        .ok()
        .and_then(|p| {
            p.pipelines
                .last()
                .map(|p| p.stages.iter().map(|s| s.id.clone()).collect())
        })
        .unwrap_or_default()
}

/// Plans `p` after its build pipelines; returns its tree id.
fn add(
    p: &Pipeline,
    role: &str,
    store: Option<&Store>,
    out: &mut Vec<PlannedPipeline>,
) -> Result<Option<Id>, PlanError> {
    let build_root = match &p.build {
        Some(build) => {
            let build_role = if role == "main" {
                "build".to_string()
            } else {
                format!("{role}.build")
            };
            match add(build, &build_role, store, out)? {
                Some(id) => Some(id),
                None => return Err(PlanError::EmptyBuild(build_role)),
            }
        }
        None => None,
    };
    let base = match &p.base {
        Some(b) => Some(resolve_base(b, store)?),
        None => None,
    };
    let stored = |id: &str| store.is_some_and(|s| s.contains(id));
    let mut parent = base.clone();
    let mut stages = Vec::new();
    for stage in &p.stages {
        let id = stage_id(build_root.as_deref(), stage, parent.as_deref(), p.source_epoch);
        stages.push(PlannedStage {
            stage: stage.clone(),
            stored: stored(&id),
            parent: parent.replace(id.clone()),
            id,
        });
    }
    // A manifest made by code rather than parsed may say anything.
    let assembly_base = match p.assembly_base {
        None => None,
        Some(k) if k >= 1 && k <= stages.len() && p.assembler.is_some() => Some(stages[k - 1].id.clone()),
        Some(k) => {
            return Err(PlanError::BadAssemblyBase {
                role: role.to_string(),
                k,
                stages: stages.len(),
            })
        }
    };
    let assembler = p.assembler.as_ref().map(|a| {
        let id = assembler_id(
            build_root.as_deref(),
            a,
            parent.as_deref(),
            p.source_epoch,
            assembly_base.as_deref(),
        );
        PlannedStage {
            stage: a.clone(),
            stored: stored(&id),
            parent: parent.clone(),
            id,
        }
    });
    out.push(PlannedPipeline {
        role: role.to_string(),
        name: p.name.clone(),
        build_root,
        base,
        source_epoch: p.source_epoch,
        stages,
        assembler,
        assembly_base,
    });
    Ok(parent)
}

/// A base is an id (which need not be stored yet when there is no store to
/// ask) or a name that the store knows.
fn resolve_base(base: &str, store: Option<&Store>) -> Result<Id, PlanError> {
    match store.and_then(|s| s.resolve(base)) {
        Some(id) => Ok(id),
        None if crate::manifest::is_id(base) => Ok(base.to_string()),
        None => Err(PlanError::UnknownBase(base.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn manifest(k: Option<usize>, assembler: bool) -> Manifest {
        let stage = |n: u32| Stage {
            name: "org.osbuild.noop".into(),
            options: json!({ "n": n }).as_object().cloned().unwrap(),
        };
        Manifest {
            pipeline: Pipeline {
                stages: vec![stage(1), stage(2), stage(3)],
                assembler: assembler.then(|| stage(0)),
                assembly_base: k,
                ..Default::default()
            },
            sources: None,
        }
    }

    #[test]
    fn the_assembly_base_is_the_tree_after_k_stages_and_part_of_the_image_id() {
        let plain = plan(&manifest(None, true), None).unwrap();
        let plain = plain.pipelines.last().unwrap();
        assert_eq!(plain.assembly_base, None);
        // Without one, the assembler's id is the stage recipe's, as always.
        let a = plain.assembler.as_ref().unwrap();
        assert_eq!(a.id, stage_id(None, &a.stage, plain.tree(), None));
        let on = plan(&manifest(Some(2), true), None).unwrap();
        let on = on.pipelines.last().unwrap();
        assert_eq!(on.assembly_base.as_deref(), Some(on.stages[1].id.as_str()));
        // The stages are the same; only the image's id differs.
        assert_eq!(on.tree(), plain.tree());
        let b = on.assembler.as_ref().unwrap();
        assert_ne!(b.id, a.id);
        assert_eq!(
            b.id,
            assembler_id(None, &b.stage, on.tree(), None, Some(&on.stages[1].id))
        );
        let all = plan(&manifest(Some(3), true), None).unwrap();
        assert_eq!(all.pipelines[0].assembly_base.as_deref(), all.pipelines[0].tree());
    }

    #[test]
    fn a_bad_assembly_base_is_a_plan_error_not_a_panic() {
        for (k, assembler) in [(0, true), (4, true), (1, false)] {
            let err = plan(&manifest(Some(k), assembler), None).unwrap_err();
            assert!(matches!(err, PlanError::BadAssemblyBase { .. }), "{err}");
        }
    }
}
