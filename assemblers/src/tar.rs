//! `org.osbuild.tar`: the tree as a (compressed) tarball, byte for byte the
//! same for the same tree and options.
//!
//! It runs the build root's GNU tar with the reproducible-builds recipe: entries
//! sorted by name, mtimes clamped to `source_epoch`, numeric owners only, and
//! pax headers without atime/ctime and with fixed names.

use std::process::Command;

use osbuild_stages::api::{Builtin, Context, Kind, Options, StageResult};

/// Packs the tree into a tarball.
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Tar {
    /// Name of the tarball in the output directory.
    filename: String,
    /// Compression (the build root must have the compressor).
    #[serde(default)]
    compression: Compression,
    /// Modification times later than this (seconds since the epoch) are clamped
    /// to it, so the same tree always gives the same bytes.
    #[serde(default)]
    source_epoch: u64,
}

#[derive(Default, serde::Deserialize, schemars::JsonSchema, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum Compression {
    #[default]
    None,
    Gzip,
    Xz,
    Zstd,
    Bzip2,
    Lzip,
}

impl Compression {
    /// The compressor, with the flags that keep its output deterministic
    /// (gzip: no name or time; xz and zstd: one thread, whose output does not
    /// depend on the number of cores).
    fn program(self) -> Option<&'static str> {
        match self {
            Compression::None => None,
            Compression::Gzip => Some("gzip -n"),
            Compression::Xz => Some("xz -T1"),
            Compression::Zstd => Some("zstd -q -T1"),
            Compression::Bzip2 => Some("bzip2"),
            Compression::Lzip => Some("lzip"),
        }
    }
}

impl Options for Tar {
    fn run(self, ctx: &Context) -> StageResult {
        if self.filename.is_empty() || self.filename.contains('/') || self.filename == "." || self.filename == ".." {
            return Err(format!("filename {:?} must be a plain file name", self.filename).into());
        }
        let output = ctx
            .output_dir
            .as_ref()
            .ok_or("the tar assembler needs an output directory")?;
        let mut tar = Command::new("tar");
        tar.arg("--create")
            .arg("--file")
            .arg(output.join(&self.filename))
            .arg("--directory")
            .arg(&ctx.tree)
            .args(["--sort=name", "--format=posix", "--numeric-owner"])
            .arg(format!("--mtime=@{}", self.source_epoch))
            .arg("--clamp-mtime")
            .arg("--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime")
            .args(["--xattrs", "--xattrs-include=*"]);
        if let Some(program) = self.compression.program() {
            tar.arg(format!("--use-compress-program={program}"));
        }
        tar.arg(".");
        let status = tar.status().map_err(|e| format!("cannot run tar: {e}"))?;
        if !status.success() {
            return Err(format!("tar failed: {status}").into());
        }
        println!("wrote {}", self.filename);
        Ok(())
    }
}

pub static ASSEMBLER: Builtin = Builtin::new::<Tar>(
    "org.osbuild.tar",
    Kind::Assembler,
    "Packs the tree into a reproducible tarball (none, gzip, xz, zstd, bzip2 or lzip)",
);
