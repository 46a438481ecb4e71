//! `osbuild export --oci DIR|oci://HOST/REPOSITORY TREE`: a stored tree as
//! an OCI image, for container tools (`podman`, `skopeo`, `umoci`).
//!
//! The image's layers are the store's layers of the tree, bottom first, each
//! a gzip tar (every OCI tool reads gzip; the cache's zstd is not yet
//! everywhere) with whiteouts as OCI whiteouts and overlayfs' own xattrs
//! left out. Everything in it is a function of the tree: no creation time,
//! gzip without a timestamp, so exporting a tree twice gives the same
//! digests.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use oci_client::manifest::{
    OciDescriptor, OciImageManifest, IMAGE_CONFIG_MEDIA_TYPE, IMAGE_LAYER_GZIP_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE,
};
use serde_json::json;

use super::digest::{self, Hashing};
use super::layer::{write_layer, OverlayXattrs};
use super::remote::{Remote, RemoteError, Target};
use crate::store::Store;

/// Where an export goes.
#[derive(Debug, Clone)]
pub enum Destination {
    /// An OCI image layout directory (absent or empty).
    Layout(PathBuf),
    Registry(Target),
}

impl Destination {
    pub fn parse(text: &str, insecure: bool) -> Result<Destination, String> {
        if text.starts_with("oci://") {
            Target::parse(text, insecure).map(Destination::Registry)
        } else {
            Ok(Destination::Layout(PathBuf::from(text)))
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{0}")]
    Remote(#[from] RemoteError),
    #[error("{what}: {error}")]
    Local { what: String, error: io::Error },
    #[error("{} is not empty: an OCI layout is written into an absent or empty directory", .0.display())]
    NotEmpty(PathBuf),
}

impl From<io::Error> for ExportError {
    fn from(error: io::Error) -> Self {
        ExportError::Local {
            what: "writing the layout".into(),
            error,
        }
    }
}

fn local(what: impl Into<String>) -> impl FnOnce(io::Error) -> ExportError {
    move |error| ExportError::Local {
        what: what.into(),
        error,
    }
}

/// What was exported.
#[derive(Debug)]
pub struct Exported {
    /// The image manifest's digest.
    pub digest: String,
    pub layers: usize,
    /// The compressed size of the layers.
    pub bytes: u64,
}

/// One packed layer: its blob file, digests and size.
struct Blob {
    path: PathBuf,
    digest: String,
    diff_id: String,
    size: u64,
}

/// Exports the stored tree `tree` (an id) as an image tagged `tag`.
pub fn export(store: &Store, tree: &str, to: &Destination, tag: &str) -> Result<Exported, ExportError> {
    let meta = store.meta(tree).map_err(local(format!("reading the tree {tree}")))?;
    let work = store.temp_dir("export").map_err(local("making a work directory"))?;
    let mut blobs = Vec::new();
    let mut history = Vec::new();
    for (i, layer) in meta.layers.iter().enumerate() {
        let path = work.path().join(format!("layer-{i}.tar.gz"));
        blobs.push(pack(&store.layer_dir(layer), &path).map_err(local(format!("packing the layer {layer}")))?);
        let stage = store.meta(layer).map(|m| m.stage).unwrap_or_default();
        history.push(json!({ "created_by": format!("osbuild: {stage} ({layer})") }));
    }
    let config = json!({
        "architecture": oci_arch(),
        "os": "linux",
        "config": {},
        "rootfs": {
            "type": "layers",
            "diff_ids": blobs.iter().map(|b| b.diff_id.clone()).collect::<Vec<_>>(),
        },
        "history": history,
    });
    let config = serde_json::to_vec(&config).expect("JSON serializes");
    let manifest = OciImageManifest {
        schema_version: 2,
        media_type: Some(OCI_IMAGE_MEDIA_TYPE.to_string()),
        config: OciDescriptor {
            media_type: IMAGE_CONFIG_MEDIA_TYPE.to_string(),
            digest: digest::of(&config),
            size: config.len() as i64,
            ..Default::default()
        },
        layers: blobs
            .iter()
            .map(|b| OciDescriptor {
                media_type: IMAGE_LAYER_GZIP_MEDIA_TYPE.to_string(),
                digest: b.digest.clone(),
                size: b.size as i64,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let bytes = blobs.iter().map(|b| b.size).sum();
    let layers = blobs.len();
    let digest = match to {
        Destination::Layout(dir) => write_layout(dir, &blobs, &config, &manifest, tag)?,
        Destination::Registry(target) => {
            let remote = Remote::connect(target)?;
            for blob in &blobs {
                remote.push_blob_file(&blob.path, &blob.digest)?;
            }
            let config_digest = manifest.config.digest.clone();
            remote.push_blob(config, &config_digest)?;
            remote.push_manifest(tag, manifest)?
        }
    };
    Ok(Exported { digest, layers, bytes })
}

/// Writes an OCI image layout: `oci-layout`, `index.json` naming the image
/// `tag`, and `blobs/sha256/`; beside `dir` first, so a failed export
/// leaves nothing.
fn write_layout(
    dir: &Path,
    blobs: &[Blob],
    config: &[u8],
    manifest: &OciImageManifest,
    tag: &str,
) -> Result<String, ExportError> {
    use crate::output::OutputDirError;
    crate::output::check_output_dir(dir).map_err(|e| match e {
        OutputDirError::NotEmpty(dir) => ExportError::NotEmpty(dir),
        OutputDirError::Unreadable(dir, error) => ExportError::Local {
            what: format!("reading {}", dir.display()),
            error,
        },
    })?;
    crate::output::build_beside(dir, |temp| fill_layout(temp, blobs, config, manifest, tag))
}

fn fill_layout(
    dir: &Path,
    blobs: &[Blob],
    config: &[u8],
    manifest: &OciImageManifest,
    tag: &str,
) -> Result<String, ExportError> {
    let sha = dir.join("blobs/sha256");
    fs::create_dir_all(&sha).map_err(local(format!("creating {}", sha.display())))?;
    let blob_path = |digest: &str| sha.join(digest.trim_start_matches("sha256:"));
    for blob in blobs {
        let to = blob_path(&blob.digest);
        // The work directory is in the store, maybe another file system.
        if fs::rename(&blob.path, &to).is_err() {
            fs::copy(&blob.path, &to).map_err(local(format!("writing {}", to.display())))?;
        }
    }
    let write =
        |path: PathBuf, bytes: &[u8]| fs::write(&path, bytes).map_err(local(format!("writing {}", path.display())));
    write(blob_path(&manifest.config.digest), config)?;
    let manifest_json = serde_json::to_vec(manifest).expect("JSON serializes");
    let digest = digest::of(&manifest_json);
    write(blob_path(&digest), &manifest_json)?;
    let index = json!({
        "schemaVersion": 2,
        "mediaType": OCI_IMAGE_INDEX_MEDIA_TYPE,
        "manifests": [{
            "mediaType": OCI_IMAGE_MEDIA_TYPE,
            "digest": digest,
            "size": manifest_json.len(),
            "annotations": { "org.opencontainers.image.ref.name": tag },
        }],
    });
    write(
        dir.join("index.json"),
        &serde_json::to_vec(&index).expect("JSON serializes"),
    )?;
    write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    Ok(digest)
}

/// Packs a layer as a gzip tar: the blob's digest, and the diff id (the
/// uncompressed tar's digest) the image config lists.
fn pack(dir: &Path, path: &Path) -> io::Result<Blob> {
    let file = Hashing::new(BufWriter::new(File::create(path)?));
    let tar = Hashing::new(GzEncoder::new(file, flate2::Compression::default()));
    let (gzip, diff_id, _) = write_layer(dir, tar, OverlayXattrs::Drop)?.finish();
    let (mut file, digest, size) = gzip.finish()?.finish();
    file.flush()?;
    Ok(Blob {
        path: path.to_path_buf(),
        digest,
        diff_id,
        size,
    })
}

/// This machine's architecture as OCI names it.
fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}
