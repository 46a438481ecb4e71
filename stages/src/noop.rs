//! `org.osbuild.noop`: changes nothing; any options, so tests can make distinct ids.

use serde_json::{Map, Value};

use crate::api::{Builtin, Context, Kind, Options, StageResult};

/// Any options at all: they only change the stage's id.
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(transparent)]
pub struct AnyOptions(pub Map<String, Value>);

impl Options for AnyOptions {
    fn run(self, _: &Context) -> StageResult {
        Ok(())
    }
}

pub static STAGE: Builtin = Builtin::new::<AnyOptions>(
    "org.osbuild.noop",
    Kind::Stage,
    "Does nothing; takes any options (useful to make distinct stage ids)",
);
