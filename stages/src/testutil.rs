//! Helpers for the stages' unit tests: a temporary tree removed on drop.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::api::Context;

/// A fresh directory under the system temp dir, removed with everything in it on drop.
pub struct TempTree {
    pub path: PathBuf,
}

impl TempTree {
    pub fn new(label: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("osbuild-stages-{label}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempTree { path }
    }

    pub fn ctx(&self) -> Context {
        Context {
            tree: self.path.clone(),
            output_dir: None,
            cache: None,
            sources: None,
            assembly: Default::default(),
        }
    }

    /// The absolute path of `rel` (relative to the tree).
    pub fn join(&self, rel: &str) -> PathBuf {
        self.path.join(rel.trim_start_matches('/'))
    }

    /// Writes a file, creating its parent directories.
    pub fn write(&self, rel: &str, content: &str) -> PathBuf {
        let path = self.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, content).unwrap();
        path
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }

    /// (mode bits, uid, gid) of `rel`, not following a final symlink.
    pub fn stat(&self, rel: &str) -> (u32, u32, u32) {
        let m = std::fs::symlink_metadata(self.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
        (m.mode() & 0o7777, m.uid(), m.gid())
    }

    pub fn link(&self, rel: &str) -> PathBuf {
        std::fs::read_link(self.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }

    pub fn exists(&self, rel: &str) -> bool {
        std::fs::symlink_metadata(self.join(rel)).is_ok()
    }
}

impl Drop for TempTree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

impl AsRef<Path> for TempTree {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}
