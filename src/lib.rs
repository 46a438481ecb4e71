//! osbuild: build operating-system images from pipelines of sandboxed stages.
//!
//! Front-ends (JSON manifests; Rhai scripts and the REPL to come) produce a
//! [`manifest::Manifest`]; [`plan`] gives every stage its content address;
//! [`executor`] runs what the [`store`] lacks, each stage in a [`sandbox`].

pub mod check;
pub mod cli;
pub mod diagnostic;
pub mod docs;
pub mod executor;
pub mod jobs;
pub mod lock;
pub mod manifest;
pub mod monitor;
pub mod oci;
pub mod output;
pub mod parallel;
pub mod plan;
pub mod registry;
pub mod repl;
pub mod run;
pub mod sandbox;
pub mod sbom;
pub mod schema;
pub mod script;
pub mod sharing;
pub mod signals;
pub mod slurm;
pub mod sources;
pub mod store;
pub mod verify;
