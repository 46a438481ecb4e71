//! Built-in stages, and the contract every built-in stage and assembler fulfils.
//!
//! A built-in is a typed options struct (serde + schemars) that knows how to run.
//! The engine never sees the struct: it sees a [`Builtin`], a table of plain
//! function pointers that check options, describe them as a JSON Schema, and run
//! them inside the sandbox. The engine calls `run` in the sandboxed child process,
//! after the mounts are in place, so a built-in works in any build root, even one
//! with no shell or libc of its own.

mod accounts;
pub mod api;
mod apt;
pub mod assembly;
pub mod chain;
mod command;
mod deb;
mod debcache;
mod debootstrap;
mod dnf;
mod files;
mod fstab;
mod groups;
mod grub2;
mod hostname;
pub mod ids;
mod kernel_cmdline;
mod keymap;
mod leftovers;
mod locale;
pub mod lock;
mod machine_id;
mod mkdir;
mod noop;
pub mod offline;
pub mod passwd;
pub mod progress;
pub mod resolve;
mod script;
pub mod sparse;
mod systemd;
#[cfg(test)]
mod testutil;
mod timezone;
pub mod tree;
mod users;
mod value_de;
pub mod xattr;

pub use api::{Builtin, Context, Kind, OptionsError, PathSegment, ProblemKind, StageError, StageResult};
pub use noop::AnyOptions;

/// Every built-in stage, in the order `osbuild stages` lists them.
pub fn all() -> Vec<&'static Builtin> {
    vec![
        &noop::STAGE,
        &debootstrap::STAGE,
        &apt::STAGE,
        &dnf::STAGE,
        &mkdir::STAGE,
        &files::STAGE,
        &hostname::STAGE,
        &locale::STAGE,
        &timezone::STAGE,
        &keymap::STAGE,
        &machine_id::STAGE,
        &groups::STAGE,
        &users::STAGE,
        &fstab::STAGE,
        &kernel_cmdline::STAGE,
        &systemd::STAGE,
        &script::STAGE,
        &grub2::STAGE,
    ]
}
