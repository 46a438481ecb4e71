//! How an assembler builds on its own work for a prefix of the pipeline.
//!
//! A pipeline may name an `assembly_base`: the tree after its first K stages.
//! An assembler that can reuse work ([`crate::api::Builtin::with_prefix`])
//! first runs on that tree with its *prefix options* (the options with every
//! per-image identifier left out), making a prefix output that the store
//! keeps like any image; images that share those K stages share it. The
//! image's own run then gets that output and the list of paths the later
//! stages changed, and adds only those.
//!
//! The image depends on the prefix tree and the final tree alone, never on
//! whether the prefix output was stored, so it stays byte-reproducible.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Where the prefix output is bound in the sandbox, read-only.
pub const PREFIX: &str = "/run/osbuild/prefix";
/// Where the delta file is bound in the sandbox, read-only.
pub const DELTA: &str = "/run/osbuild/delta.json";

/// What this run of an assembler makes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Assembly {
    /// The image, from the whole tree.
    #[default]
    Image,
    /// The reusable work for this (prefix) tree, from the prefix options.
    Prefix,
    /// The image, from the prefix output and the changes after it.
    OnPrefix(OnPrefix),
}

/// The inputs of an image built on a prefix output (paths in the sandbox).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnPrefix {
    /// The prefix output: what the same assembler made as `Assembly::Prefix`.
    pub prefix: PathBuf,
    /// A JSON [`Delta`].
    pub delta: PathBuf,
}

/// What the stages after the prefix changed, from their layers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delta {
    /// Every path a later layer holds, sorted, each once. A path below a
    /// changed directory is listed itself when it changed too.
    pub changes: Vec<Change>,
}

/// One path a later layer holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Change {
    /// Absolute, as `/etc/hostname`.
    pub path: String,
    /// A later layer removed what the prefix tree had here, or made it an
    /// opaque directory (none of the prefix's entries below it show): the
    /// prefix's entry, and everything below it, is gone; the final tree's
    /// entry (if any) replaces it.
    pub replaced: bool,
}
