//! The Rhai front-end: a script is evaluated, purely and within limits, into
//! one [`Manifest`] per image it emits.
//!
//! - [`engine`] builds the pure, bounded engine (no clock, randomness,
//!   environment, network or writes);
//! - [`api`] is what scripts call: `pipeline`, `stage`, `emit`, `param`, ...;
//! - [`modules`] resolves `import`: the embedded stdlib and files beside the script;
//! - [`lower`] runs a script and collects the images;
//! - [`values`] checks disk sizes and file modes for the stdlib;
//! - [`errors`] turns Rhai errors into miette diagnostics with the call chain;
//! - [`cli`] is `osbuild lower`, `osbuild run` and `osbuild inspect SCRIPT`.

pub mod api;
pub mod cli;
pub mod engine;
pub mod errors;
pub mod locales;
pub mod lower;
pub mod modules;
pub mod values;

pub use errors::ScriptDiagnostic;
pub use lower::{lower_file, lower_source, lower_source_with_limit, set_assembly_bases, Bases, Image, Lowering};

/// Whether a path names a script (by its extension) rather than a JSON manifest.
pub fn is_script(path: &std::path::Path) -> bool {
    path.extension().is_some_and(|e| e == "rhai")
}
