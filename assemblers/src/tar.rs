//! `org.osbuild.tar`: the tree as a (compressed) tarball, byte for byte the
//! same for the same tree and options.
//!
//! It runs the build root's GNU tar with the reproducible-builds recipe: entries
//! sorted by name, mtimes clamped to `source_epoch`, numeric owners only, and
//! pax headers without atime/ctime and with fixed names.
//!
//! # Sparse files
//!
//! Sparse files are stored sparse (`--sparse`): only their data is read and
//! written, so a 1 TiB file made by `truncate` takes a few blocks of the
//! tarball and milliseconds, not a terabyte. GNU tar takes a file for sparse
//! when it has fewer blocks than its size needs, then finds its data with
//! `SEEK_DATA`/`SEEK_HOLE`, which overlayfs (the tree we see) passes to the
//! layer holding the file; a file with no blocks at all is one hole without
//! any seek. Files that are not sparse are written as without `--sparse`.
//! What is a hole is what the store's filesystem reports (in its block size),
//! so the bytes are the same for the same tree on the same kind of filesystem.
//!
//! The format is pax sparse 1.0 (`--sparse-version=1.0`, GNU tar's own
//! default): the map is in the member's data, and GNU tar, libarchive (bsdtar),
//! Python's and Go's tar readers extract it. The older versions are worse:
//! 0.0 repeats pax keywords (against POSIX, and bsdtar refuses a map of more
//! than about 17,000 extents: its pax header exceeds libarchive's 1 MiB), and
//! 0.1 renames the member like 1.0 does. That renaming is 1.0's catch for
//! reproducibility: the member's ustar name is `%d/GNUSparseFile.%p/%f`, with
//! %p tar's PID, which no option overrides (the real name is in the pax
//! `GNU.sparse.name`, so readers that know the format never see it; others
//! extract the condensed data there instead of at the real name). It is
//! deterministic here: an assembler runs as PID 2 of the sandbox's own pid
//! namespace (PID 1 is the sandbox's init) and tar is the first process it
//! starts, so tar is always PID 3 and every sparse member is named
//! `GNUSparseFile.3` (the compressor tar starts later does not change tar's
//! PID). tests/assembler_tar.rs pins that name: if the assembler ever starts
//! another process before tar, or the sandbox another one before it, the pin
//! fails and this reasoning must be redone.

use std::process::Command;

use osbuild_stages::api::{Builtin, Context, FileName, Kind, Options, StageResult};
use osbuild_stages::progress::{written, Heartbeat};

/// Packs the tree into a tarball.
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Tar {
    /// Name of the tarball in the output directory.
    filename: FileName,
    /// Compression (the build root must have the compressor).
    #[serde(default)]
    compression: Compression,
    /// Modification times later than this (seconds since the epoch) are clamped
    /// to it, so the same tree always gives the same bytes.
    /// Default: the pipeline's `source_epoch`, else 0.
    #[serde(default)]
    #[schemars(with = "u64")]
    source_epoch: Option<u64>,
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
    /// (gzip: no name or time). xz and zstd use every core in their
    /// multi-threaded mode, whose output does not depend on the number of
    /// threads (xz 5.4 and zstd 1.5 split the input into blocks of a size set
    /// by the level alone); their single-threaded mode would give other bytes.
    fn program(self) -> Option<&'static str> {
        match self {
            Compression::None => None,
            Compression::Gzip => Some("gzip -n"),
            Compression::Xz => Some("xz -T0"),
            Compression::Zstd => Some("zstd -q -T0"),
            Compression::Bzip2 => Some("bzip2"),
            Compression::Lzip => Some("lzip"),
        }
    }
}

impl Options for Tar {
    fn run(self, ctx: &Context) -> StageResult {
        let output = ctx
            .output_dir
            .as_ref()
            .ok_or("the tar assembler needs an output directory")?;
        let mut tar = Command::new("tar");
        tar.arg("--create")
            .arg("--file")
            .arg(output.join(self.filename.as_str()))
            .arg("--directory")
            .arg(&ctx.tree)
            .args(["--sort=name", "--format=posix", "--numeric-owner"])
            .arg(format!("--mtime=@{}", crate::util::source_epoch(self.source_epoch)))
            .arg("--clamp-mtime")
            .arg("--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime")
            .args(["--xattrs", "--xattrs-include=*"])
            // See the module doc for the version and tar's PID.
            .args(["--sparse", "--sparse-version=1.0"]);
        if let Some(program) = self.compression.program() {
            tar.arg(format!("--use-compress-program={program}"));
        }
        tar.arg(".");
        let mut child = tar.spawn().map_err(|e| format!("cannot run tar: {e}"))?;
        // Started after tar: a thread takes an id from the pid namespace too,
        // and tar's PID is in the archive (see the module doc).
        let file = output.join(self.filename.as_str());
        let alive = Heartbeat::start("tar", move || written(&file));
        let status = child.wait().map_err(|e| format!("waiting for tar: {e}"))?;
        drop(alive);
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::ASSEMBLER;

    #[test]
    fn filename_is_a_plain_name() {
        assert!(ASSEMBLER
            .check(&json!({"filename": "root.tar.gz", "compression": "gzip"}))
            .is_empty());
        for bad in ["sub/dir.tar", "../x.tar", "", ".", ".."] {
            let e = ASSEMBLER.check(&json!({"filename": bad}));
            assert_eq!(e[0].path, osbuild_stages::at!["filename"], "{bad:?}");
        }
    }
}
