//! From a manifest to the work to do: every stage's id, and which are stored.
//!
//! Build pipelines come first (innermost first), since their trees are the
//! build roots of the pipelines that name them.

use crate::manifest::{stage_id, Id, Manifest, Pipeline, Stage};
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
    let assembler = p.assembler.as_ref().map(|a| {
        let id = stage_id(build_root.as_deref(), a, parent.as_deref(), p.source_epoch);
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
