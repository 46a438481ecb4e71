//! Built-in assemblers: they turn a finished tree (read-only at
//! `/run/osbuild/tree`) into image files in `/run/osbuild/output`.

mod ext4;
mod layered;
mod prefix;
mod qcow2;
mod qemu;
mod rawfs;
mod tar;
mod util;

use osbuild_stages::{AnyOptions, Builtin, Kind};

/// `org.osbuild.noop`: assembles nothing.
static NOOP: Builtin = Builtin::new::<AnyOptions>(
    "org.osbuild.noop",
    Kind::Assembler,
    "Produces no image; takes any options",
);

/// Every built-in assembler, in the order `osbuild stages` lists them.
pub fn all() -> Vec<&'static Builtin> {
    vec![&NOOP, &tar::ASSEMBLER, &qemu::ASSEMBLER, &rawfs::ASSEMBLER]
}
