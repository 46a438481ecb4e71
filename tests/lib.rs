//! One integration-test binary that drives the real `osbuild` CLI: real
//! sandboxes, real overlayfs stores, real tar. Needs root (namespaces, mounts).

mod support;

mod assembler_tar;
mod assembly_base;
mod cache;
mod caching;
mod export;
mod fuzz_regressions;
mod hardening;
mod interrupt;
mod locked;
mod manifest_errors;
mod os_image;
mod parallel;
mod planted_symlinks;
mod repl;
mod sandbox;
mod script;
mod slurm;
mod store_cmd;
mod store_hardening;
mod verify;
