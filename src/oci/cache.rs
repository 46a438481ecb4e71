//! The store's objects in an OCI registry (`--cache oci://HOST/REPOSITORY`),
//! so builds on other machines (other stores) share their work.
//!
//! An object is an OCI artifact tagged with its id: the image manifest's
//! config is the object's `meta.json`, its one layer a zstd-compressed tar of
//! the object's layer (a stage) or output (an assembler), whiteouts as OCI
//! whiteouts (see `oci::layer`). A pulled object is checked three times
//! before the store takes it: each blob against its digest, its metadata
//! against the id it was asked for, and the unpacked files against the
//! content hash in that metadata.
//!
//! Pushes are safe to race: blobs are addressed by their digest and a tag
//! names a whole object, so two builds pushing the same object leave one
//! of their two complete, valid copies. Anyone who can push to the
//! repository can put files into the images built from it: it is trusted
//! as the store is.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use oci_client::manifest::{OciDescriptor, OciImageManifest, OCI_IMAGE_MEDIA_TYPE};

use super::digest::{self, Hashing};
use super::layer::{unpack_layer, write_layer, OverlayXattrs};
use super::remote::{Remote, RemoteError, Target};
use crate::store::{Claim, ObjectKind, ObjectMeta, Store};

/// The config of an object's artifact: its metadata.
pub const META_MEDIA_TYPE: &str = "application/vnd.osbuild.object.meta.v1+json";
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// The largest `meta.json` taken from a registry.
const META_MAX: u64 = 1 << 20;
/// zstd's default level: about as fast as a disk writes, a third of the size.
const ZSTD_LEVEL: i32 = 3;

/// Why an object could not be pulled or pushed.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error(transparent)]
    Remote(#[from] RemoteError),
    #[error("{target}: the object {id} is not one osbuild pushed: {why}")]
    Foreign { target: String, id: String, why: String },
    #[error("{target}: the object {id} failed its check: {why}")]
    Corrupt { target: String, id: String, why: String },
    #[error("{what}: {error}")]
    Local { what: String, error: io::Error },
}

fn local(what: impl Into<String>) -> impl FnOnce(io::Error) -> CacheError {
    move |error| CacheError::Local {
        what: what.into(),
        error,
    }
}

/// What a pull gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Pulled {
    /// The registry has no object of that id.
    Absent,
    /// It is in the store now (pulled, or stored by another build meanwhile).
    Stored,
}

/// A registry repository used as a cache of store objects.
pub struct Cache {
    remote: Remote,
    /// Set when the registry could not be reached or refused us: one build
    /// does not wait on it again and again.
    failed: Cell<bool>,
}

impl Cache {
    pub fn connect(target: &Target) -> Result<Cache, CacheError> {
        Ok(Cache {
            remote: Remote::connect(target)?,
            failed: Cell::new(false),
        })
    }

    /// Whether it is still worth asking (no call has failed to reach it).
    pub fn usable(&self) -> bool {
        !self.failed.get()
    }

    /// Marks the cache unusable after a failure to reach the registry
    /// (not after a bad object, which says nothing of the others).
    fn note<T>(&self, result: Result<T, CacheError>) -> Result<T, CacheError> {
        if let Err(CacheError::Remote(_)) = &result {
            self.failed.set(true);
        }
        result
    }

    pub fn target(&self) -> &Target {
        &self.remote.target
    }

    /// Pulls the object `id` into the store, with the layers below it that
    /// the store lacks (each an object of its own).
    pub fn pull(&self, store: &Store, id: &str) -> Result<Pulled, CacheError> {
        self.note(self.pull_inner(store, id))
    }

    /// Pushes the stored object `id` unless the registry has it.
    pub fn push(&self, store: &Store, id: &str) -> Result<(), CacheError> {
        self.note(self.push_inner(store, id))
    }

    fn pull_inner(&self, store: &Store, id: &str) -> Result<Pulled, CacheError> {
        if store.contains(id) {
            return Ok(Pulled::Stored);
        }
        let Some((manifest, _)) = self.remote.manifest(id)? else {
            return Ok(Pulled::Absent);
        };
        let foreign = |why: String| CacheError::Foreign {
            target: self.target().to_string(),
            id: id.to_string(),
            why,
        };
        let corrupt = |why: String| CacheError::Corrupt {
            target: self.target().to_string(),
            id: id.to_string(),
            why,
        };
        if manifest.config.media_type != META_MEDIA_TYPE {
            return Err(foreign(format!("its config is a {}", manifest.config.media_type)));
        }
        let [layer] = manifest.layers.as_slice() else {
            return Err(foreign(format!("it has {} layers, not one", manifest.layers.len())));
        };
        if layer.media_type != LAYER_MEDIA_TYPE {
            return Err(foreign(format!("its layer is a {}", layer.media_type)));
        }
        let config = self.remote.blob(&manifest.config, META_MAX)?;
        let meta: ObjectMeta =
            serde_json::from_slice(&config).map_err(|e| corrupt(format!("its metadata does not read: {e}")))?;
        if meta.id != id {
            return Err(corrupt(format!("its metadata is about another object ({})", meta.id)));
        }
        if meta.content.is_none() {
            return Err(corrupt("its metadata has no content hash to check it by".into()));
        }
        if meta.kind == ObjectKind::Tree {
            for below in meta.layers.iter().filter(|l| *l != id) {
                if self.pull_inner(store, below)? == Pulled::Absent {
                    return Err(corrupt(format!("its layer {below} is not in the cache")));
                }
            }
        }
        let staging = match store.claim(id).map_err(local("claiming a store object"))? {
            Claim::Stored => return Ok(Pulled::Stored),
            Claim::Build { staging, .. } => staging,
        };
        let blob = staging.scratch().join("layer.tar.zst");
        self.remote.blob_to_file(layer, &blob)?;
        let into = match meta.kind {
            ObjectKind::Tree => staging.upper(),
            ObjectKind::Image => staging.output().map_err(local("making the output directory"))?,
        };
        let file = File::open(&blob).map_err(local(format!("opening {}", blob.display())))?;
        let tar = zstd::Decoder::new(file).map_err(local("decompressing the layer"))?;
        unpack_layer(tar, &into).map_err(|e| corrupt(format!("its layer does not unpack: {e}")))?;
        std::fs::remove_file(&blob).map_err(local(format!("removing {}", blob.display())))?;
        staging.commit(&meta).map_err(|e| match e.kind() {
            io::ErrorKind::InvalidData => corrupt(e.to_string()),
            _ => CacheError::Local {
                what: "committing to the store".into(),
                error: e,
            },
        })?;
        Ok(Pulled::Stored)
    }

    fn push_inner(&self, store: &Store, id: &str) -> Result<(), CacheError> {
        if self.remote.has(id)? {
            return Ok(());
        }
        let meta = store.meta(id).map_err(local(format!("reading the object {id}")))?;
        let config = std::fs::read(store.meta_path(id)).map_err(local(format!("reading the object {id}")))?;
        let content = match meta.kind {
            ObjectKind::Tree => store.layer_dir(id),
            ObjectKind::Image => store.output_dir(id),
        };
        self.upload(store, &meta, config, &content)
    }

    /// Pushes an object that is not in the store (an image about to be
    /// handed over): its metadata, with its content hash, and its files.
    pub fn push_unstored(&self, store: &Store, meta: &ObjectMeta, content: &Path) -> Result<(), CacheError> {
        self.note((|| {
            if self.remote.has(&meta.id)? {
                return Ok(());
            }
            let config = serde_json::to_vec_pretty(meta).expect("JSON serializes");
            self.upload(store, meta, config, content)
        })())
    }

    fn upload(&self, store: &Store, meta: &ObjectMeta, config: Vec<u8>, content: &Path) -> Result<(), CacheError> {
        let id = &meta.id;
        let work = store.temp_dir("push").map_err(local("making a work directory"))?;
        let blob = work.path().join("layer.tar.zst");
        let (digest, size) = pack(content, &blob).map_err(local(format!("packing the object {id}")))?;
        self.remote.push_blob_file(&blob, &digest)?;
        let config_digest = digest::of(&config);
        let config_size = config.len() as i64;
        self.remote.push_blob(config, &config_digest)?;
        let manifest = OciImageManifest {
            schema_version: 2,
            media_type: Some(OCI_IMAGE_MEDIA_TYPE.to_string()),
            config: OciDescriptor {
                media_type: META_MEDIA_TYPE.to_string(),
                digest: config_digest,
                size: config_size,
                ..Default::default()
            },
            layers: vec![OciDescriptor {
                media_type: LAYER_MEDIA_TYPE.to_string(),
                digest,
                size: size as i64,
                ..Default::default()
            }],
            annotations: Some(BTreeMap::from([
                ("org.osbuild.stage".to_string(), meta.stage.clone()),
                (
                    "org.osbuild.kind".to_string(),
                    match meta.kind {
                        ObjectKind::Tree => "tree",
                        ObjectKind::Image => "image",
                    }
                    .to_string(),
                ),
            ])),
            ..Default::default()
        };
        self.remote.push_manifest(id, manifest)?;
        Ok(())
    }
}

/// Writes `dir` as a zstd tar to `blob`: its sha256 digest and size.
fn pack(dir: &Path, blob: &Path) -> io::Result<(String, u64)> {
    let hashing = Hashing::new(BufWriter::new(File::create(blob)?));
    let mut encoder = zstd::Encoder::new(hashing, ZSTD_LEVEL)?;
    // zstd's own threads, for this call only (joined when it ends): packing
    // a base system's layer is most of a push.
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    encoder.multithread(workers as u32)?;
    let encoder = write_layer(dir, encoder, OverlayXattrs::Keep)?;
    let (mut file, digest, size) = encoder.finish()?.finish();
    file.flush()?;
    file.get_ref().sync_all()?;
    Ok((digest, size))
}
