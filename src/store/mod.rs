//! The content-addressed object store.
//!
//! ```text
//! STORE/
//!   lock                 shared by every build, exclusive for gc
//!   objects/<id>/        complete and immutable, created by one rename
//!     meta.json          ObjectMeta; its mtime is the object's last use
//!     tree/              a stage's layer: the overlayfs upper dir of its run
//!     output/            an assembler's image files
//!     log                everything the stage printed
//!   refs/<name>          a name given to a tree: the id, one line
//!   locks/<id>           flock held while <id> is being built
//!   tmp/<job>/           work in progress; `lock` inside is held by its builder
//!   logs/<id>.failed     the log of the last failed run of <id>
//!   logs/<id>.log        the log of an image handed over to `-o`, not stored
//!   cache/<name>/        caches stages share across builds (downloaded packages)
//! ```
//!
//! A stage's tree is a stack of layers: its own diff on top of its parent's
//! stack, so checkpointing every stage costs only what the stage changed.
//!
//! Trees keep their setuid files (an image needs its sudo), so the store is
//! private to its owner: `STORE` is mode 0700, and a store that others can
//! enter is made private again with a warning. An object that cannot be
//! read (a corrupt `meta.json`, a missing layer) counts as absent: a build
//! replaces it and `gc` removes it. Each object's meta records a content hash
//! of its layer or image, which `verify` checks.

mod content;
mod delta;
mod diff;
mod gc;
mod layer;
mod verify;

use std::fs::{self, File};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

pub use content::hash_dir;
pub(crate) use content::xattrs;
pub use delta::delta_of;
pub use diff::{diff_trees, first_difference, Difference};
pub use gc::{GcOptions, GcReport, Usage};
pub(crate) use layer::{is_opaque_mark, is_whiteout, OPAQUE_XATTRS};
pub use verify::{Problem, VerifyReport};

use crate::manifest::{is_id, Id};

/// What kind of thing an object holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectKind {
    /// A stage's layer of a tree.
    Tree,
    /// An assembler's output files.
    Image,
}

/// What the store knows about an object, in its `meta.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ObjectMeta {
    pub id: Id,
    pub kind: ObjectKind,
    /// The stage or assembler that made it.
    pub stage: String,
    /// The object below it: the previous stage's tree (or, for an image, the tree assembled).
    pub parent: Option<Id>,
    /// The build root's tree, if not the host.
    pub build: Option<Id>,
    /// The objects whose `tree/` directories stack into this tree, bottom first.
    /// Layers that changed nothing are left out.
    #[serde(default)]
    pub layers: Vec<Id>,
    /// Seconds since the epoch.
    pub created: u64,
    pub duration_ms: u64,
    /// The content hash of its `tree/` (for a tree) or `output/` (for an
    /// image) when it was committed; see [`hash_dir`]. Objects made before
    /// hashes were recorded have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// What is under `objects/<id>`.
#[derive(Debug)]
pub enum Lookup {
    Absent,
    Complete(ObjectMeta),
    /// There, but not usable: the reason.
    Unusable(String),
}

/// A store opened by one process.
pub struct Store {
    root: PathBuf,
    _lock: File,
    /// Where locked stages' files are read from: `sources/` of the store,
    /// or a directory given with `--sources` (read-only).
    sources: Option<PathBuf>,
    /// The signature chain of the sources was checked by the osbuild that
    /// started this one (`--sources-checked`).
    chain_checked: bool,
}

/// Whether an object is there already or is ours to build.
pub enum Claim {
    Stored,
    Build {
        staging: Staging,
        /// Why an unusable object of the same id was thrown away first.
        discarded: Option<String>,
    },
}

impl Store {
    /// Opens (creating if needed) a store for building: any number of builds
    /// may share it; `gc` waits for them.
    pub fn open(root: &Path) -> io::Result<Store> {
        Self::open_with(root, nix::fcntl::FlockArg::LockShared)
    }

    /// Opens a store for maintenance, waiting until no build uses it.
    pub fn open_exclusive(root: &Path) -> io::Result<Store> {
        Self::open_with(root, nix::fcntl::FlockArg::LockExclusive)
    }

    fn open_with(root: &Path, how: nix::fcntl::FlockArg) -> io::Result<Store> {
        make_private(root)?;
        for dir in ["objects", "refs", "locks", "tmp", "logs"] {
            private_dir(&root.join(dir))?;
        }
        let root = fs::canonicalize(root)?;
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(root.join("lock"))?;
        flock(&lock, how)?;
        let store = Store {
            root,
            _lock: lock,
            sources: None,
            chain_checked: false,
        };
        store.remove_abandoned()?;
        Ok(store)
    }

    /// Opens a store only to look at it; `None` when it does not exist.
    pub fn open_existing(root: &Path) -> io::Result<Option<Store>> {
        if root.join("objects").is_dir() {
            Self::open(root).map(Some)
        } else {
            Ok(None)
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn object_dir(&self, id: &str) -> PathBuf {
        self.root.join("objects").join(id)
    }

    /// Whether a complete, usable object `id` is stored.
    pub fn contains(&self, id: &str) -> bool {
        matches!(self.lookup(id), Lookup::Complete(_))
    }

    /// What is stored under `id`: a usable object has readable metadata of
    /// its own id, and its layers (or its output) are all there.
    pub fn lookup(&self, id: &str) -> Lookup {
        let dir = self.object_dir(id);
        match fs::symlink_metadata(&dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Lookup::Absent,
            Err(e) => return Lookup::Unusable(format!("{}: {e}", dir.display())),
            Ok(_) => {}
        }
        let meta = match self.meta(id) {
            Ok(meta) => meta,
            Err(e) => return Lookup::Unusable(e.to_string()),
        };
        if meta.id != id {
            return Lookup::Unusable(format!("its meta.json is about another object ({})", meta.id));
        }
        let missing = match meta.kind {
            ObjectKind::Tree => meta
                .layers
                .iter()
                .map(|l| self.object_dir(l).join("tree"))
                .find(|dir| !dir.is_dir()),
            ObjectKind::Image => Some(self.output_dir(id)).filter(|dir| !dir.is_dir()),
        };
        match missing {
            Some(dir) => Lookup::Unusable(format!("{} is missing", dir.display())),
            None => Lookup::Complete(meta),
        }
    }

    /// Where an object's `meta.json` is.
    pub fn meta_path(&self, id: &str) -> PathBuf {
        self.object_dir(id).join("meta.json")
    }

    pub fn meta(&self, id: &str) -> io::Result<ObjectMeta> {
        let path = self.meta_path(id);
        let text = fs::read_to_string(&path).map_err(|e| context(e, &path))?;
        serde_json::from_str(&text)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", path.display())))
    }

    /// The layer directories of a stored tree, bottom first; an empty tree for `None`.
    pub fn layer_dirs(&self, id: Option<&str>) -> io::Result<Vec<PathBuf>> {
        let Some(id) = id else { return Ok(Vec::new()) };
        Ok(self
            .meta(id)?
            .layers
            .iter()
            .map(|l| self.object_dir(l).join("tree"))
            .collect())
    }

    /// The layer ids of a stored tree, bottom first.
    pub fn layers(&self, id: Option<&str>) -> io::Result<Vec<Id>> {
        match id {
            Some(id) => Ok(self.meta(id)?.layers),
            None => Ok(Vec::new()),
        }
    }

    /// Where a tree object's own layer is (the stage's changes only).
    pub fn layer_dir(&self, id: &str) -> PathBuf {
        self.object_dir(id).join("tree")
    }

    /// Where an image object's files are.
    pub fn output_dir(&self, id: &str) -> PathBuf {
        self.object_dir(id).join("output")
    }

    pub fn log_path(&self, id: &str) -> PathBuf {
        self.object_dir(id).join("log")
    }

    /// A named cache directory shared by every build on this store
    /// (`cache/<name>`), created on first use.
    pub fn cache_dir(&self, name: &str) -> io::Result<PathBuf> {
        private_dir(&self.root.join("cache"))?;
        let dir = self.root.join("cache").join(name);
        fs::create_dir_all(&dir)?;
        Ok(dir)
    }

    /// The directory of verified source files (`sha256/<hex>`) that locked
    /// stages install from: the store's own `sources/`, unless
    /// [`Store::read_sources_from`] named another.
    pub fn sources_dir(&self) -> PathBuf {
        self.sources.clone().unwrap_or_else(|| self.root.join("sources"))
    }

    /// Whether the sources are the store's own (which a fetch may fill).
    pub fn owns_sources(&self) -> bool {
        self.sources.is_none()
    }

    /// Reads locked stages' files from `dir` (`--sources DIR`), never writing to it.
    pub fn read_sources_from(&mut self, dir: &Path) {
        self.sources = Some(dir.to_path_buf());
    }

    /// Trusts that the signature chain of the sources was checked (by the
    /// osbuild that started this one).
    pub fn assume_chain_checked(&mut self) {
        self.chain_checked = true;
    }

    pub fn chain_checked(&self) -> bool {
        self.chain_checked
    }

    /// Marks an object as used now, so `gc` keeps it.
    pub fn touch(&self, id: &str) {
        if let Ok(f) = File::open(self.object_dir(id).join("meta.json")) {
            let _ = f.set_modified(SystemTime::now());
        }
    }

    /// Claims `id` for building. Blocks while another process builds the same
    /// id, then reports it stored, so two builds never do the same work twice.
    /// An unusable object of that id is thrown away (and the reason given), so
    /// the new one can take its place.
    pub fn claim(&self, id: &str) -> io::Result<Claim> {
        if self.contains(id) {
            return Ok(Claim::Stored);
        }
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.root.join("locks").join(id))?;
        flock(&lock, nix::fcntl::FlockArg::LockExclusive)?;
        let discarded = match self.lookup(id) {
            Lookup::Complete(_) => return Ok(Claim::Stored),
            Lookup::Absent => None,
            Lookup::Unusable(why) => {
                self.remove_object(id)?;
                Some(why)
            }
        };
        Ok(Claim::Build {
            staging: Staging::new(self, id, lock)?,
            discarded,
        })
    }

    /// Removes `objects/<id>`: renamed out of `objects/` first, so a crash
    /// mid-delete leaves no half object there.
    pub(crate) fn remove_object(&self, id: &str) -> io::Result<()> {
        let doomed = self.root.join("tmp").join(format!(".removed-{id}-{}", unique()));
        fs::rename(self.object_dir(id), &doomed).map_err(|e| context(e, &self.object_dir(id)))?;
        fs::remove_dir_all(&doomed).map_err(|e| context(e, &doomed))
    }

    /// Hands the stored image `id` to the directory `to` (see
    /// `output::hand_over`) and removes it from the store, which keeps its
    /// tree: the image is not kept twice.
    pub fn take_image(&self, id: &str, to: &Path) -> io::Result<()> {
        let work = self.temp_dir("take")?;
        let object = work.path().join("object");
        fs::rename(self.object_dir(id), &object).map_err(|e| context(e, &self.object_dir(id)))?;
        crate::output::hand_over(&object.join("output"), to).map(drop)
    }

    /// Resolves a `base`: an id in the store, or a name given to a tree.
    pub fn resolve(&self, id_or_name: &str) -> Option<Id> {
        if is_id(id_or_name) && self.contains(id_or_name) {
            return Some(id_or_name.to_string());
        }
        let text = fs::read_to_string(self.root.join("refs").join(ref_file(id_or_name))).ok()?;
        let id = text.trim().to_string();
        self.contains(&id).then_some(id)
    }

    /// Gives a stored tree a name (replacing what the name meant before).
    pub fn set_name(&self, name: &str, id: &str) -> io::Result<()> {
        let refs = self.root.join("refs");
        // Not named after the name: the temporary must fit wherever the ref does.
        let tmp = refs.join(format!(".name-{}", unique()));
        fs::write(&tmp, format!("{id}\n"))?;
        fs::rename(&tmp, refs.join(ref_file(name)))
    }

    /// Every name and the id it points at, sorted by name.
    pub fn names(&self) -> io::Result<Vec<(String, Id)>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(self.root.join("refs"))? {
            let entry = entry?;
            let file = entry.file_name().to_string_lossy().into_owned();
            if file.starts_with('.') {
                continue;
            }
            let id = fs::read_to_string(entry.path())?.trim().to_string();
            out.push((unref_file(&file), id));
        }
        out.sort();
        Ok(out)
    }

    /// Every complete object's metadata.
    pub fn objects(&self) -> io::Result<Vec<ObjectMeta>> {
        let mut out: Vec<ObjectMeta> = self
            .lookup_all()?
            .into_iter()
            .filter_map(|(_, found)| match found {
                Lookup::Complete(meta) => Some(meta),
                _ => None,
            })
            .collect();
        out.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
        Ok(out)
    }

    /// Every entry of `objects/`, by id; entries whose name is not an id are
    /// unusable objects too.
    pub fn lookup_all(&self) -> io::Result<Vec<(String, Lookup)>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(self.root.join("objects"))? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if is_id(&name) {
                let found = self.lookup(&name);
                out.push((name, found));
            } else {
                out.push((name, Lookup::Unusable("its name is not an object id".into())));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Removes work left behind by builds that died (their lock is free).
    fn remove_abandoned(&self) -> io::Result<()> {
        for entry in fs::read_dir(self.root.join("tmp"))? {
            let entry = entry?;
            let dir = entry.path();
            if entry.file_name().to_string_lossy().starts_with('.') {
                // Still being set up (see `Staging::new`), or left by a crash
                // in those few microseconds: only the latter is old.
                if age(&dir) > 60 {
                    let _ = fs::remove_dir_all(&dir);
                }
                continue;
            }
            // A visible job dir always holds a lock its builder keeps until it
            // exits; a free (or missing) lock means the builder is gone.
            let abandoned = match File::open(dir.join("lock")) {
                Ok(lock) => flock(&lock, nix::fcntl::FlockArg::LockExclusiveNonblock).is_ok(),
                Err(_) => true,
            };
            if abandoned {
                let _ = fs::remove_dir_all(&dir);
            }
        }
        Ok(())
    }
}

/// Creates the store's root private to us, or makes an existing one so.
/// Trees keep their setuid-root files, so anyone who can enter the store can
/// become root; and whoever owns it can change what our builds run.
fn make_private(root: &Path) -> io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(|e| context(e, parent))?;
    }
    match fs::DirBuilder::new().mode(0o700).create(root) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(context(e, root)),
    }
    let meta = fs::metadata(root).map_err(|e| context(e, root))?;
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} is owned by uid {}, not by you (uid {me}): its owner could change what your builds run; \
                 use a store of your own",
                root.display(),
                meta.uid()
            ),
        ));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        fs::set_permissions(root, fs::Permissions::from_mode(0o700)).map_err(|e| context(e, root))?;
        eprintln!(
            "warning: the store {} was open to other users (mode {mode:04o}); its trees hold setuid-root files, \
             so it is now private to you (0700)",
            root.display()
        );
    }
    Ok(())
}

/// Creates a directory of the store private to us, or makes it so.
fn private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let meta = fs::metadata(dir).map_err(|e| context(e, dir))?;
            if meta.mode() & 0o077 != 0 {
                fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(|e| context(e, dir))?;
            }
            Ok(())
        }
        Err(e) => Err(context(e, dir)),
    }
}

fn age(path: &Path) -> u64 {
    fs::symlink_metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .map_or(0, |d| d.as_secs())
}

/// A private directory in `tmp/` for one job, removed when dropped. Its
/// `lock` is held while it lives, so a build cleaning up abandoned work
/// (see [`Store::open`]) leaves it alone.
pub struct TempDir {
    dir: PathBuf,
    _lock: File,
}

impl TempDir {
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

impl Store {
    /// A new private directory in `tmp/` named after `what`.
    pub fn temp_dir(&self, what: &str) -> io::Result<TempDir> {
        // Set up under a hidden name and lock before the dir is visible, so a
        // build cleaning up abandoned work never sees it unlocked. The lock
        // is on the open file, so it survives the rename.
        let name = format!("{what}-{}", unique());
        let tmp = self.root.join("tmp");
        let hidden = tmp.join(format!(".{name}"));
        fs::create_dir(&hidden)?;
        let lock = File::create(hidden.join("lock"))?;
        flock(&lock, nix::fcntl::FlockArg::LockExclusive)?;
        let dir = tmp.join(name);
        fs::rename(&hidden, &dir)?;
        Ok(TempDir { dir, _lock: lock })
    }
}

/// An object being built: a private directory in `tmp/`, renamed into
/// `objects/` in one step when complete, removed if dropped uncommitted.
pub struct Staging {
    work: TempDir,
    objects: PathBuf,
    id: Id,
    _id_lock: File,
}

impl Staging {
    fn new(store: &Store, id: &str, id_lock: File) -> io::Result<Staging> {
        let work = store.temp_dir(&id[..12])?;
        let dir = work.path();
        for sub in ["object", "object/tree", "work", "scratch"] {
            fs::create_dir(dir.join(sub))?;
        }
        // The new layer's root is the tree's root: its mode must not be the
        // caller's umask (a 0700 root would lock every user out of the image).
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir.join("object/tree"), fs::Permissions::from_mode(0o755))?;
        Ok(Staging {
            work,
            objects: store.root.join("objects"),
            id: id.to_string(),
            _id_lock: id_lock,
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The overlayfs upper directory: becomes the object's `tree/`.
    pub fn upper(&self) -> PathBuf {
        self.work.path().join("object/tree")
    }

    /// The overlayfs work directory (same filesystem as `upper`).
    pub fn work(&self) -> PathBuf {
        self.work.path().join("work")
    }

    /// An empty directory for the sandbox's own use.
    pub fn scratch(&self) -> PathBuf {
        self.work.path().join("scratch")
    }

    /// Where an assembler's delta file goes (see `Store::delta`): beside
    /// the scratch directory, never part of the object.
    pub fn delta_path(&self) -> PathBuf {
        self.work.path().join("delta.json")
    }

    /// Where an assembler writes: becomes the object's `output/`.
    pub fn output(&self) -> io::Result<PathBuf> {
        use std::os::unix::fs::PermissionsExt;
        let out = self.work.path().join("object/output");
        fs::create_dir_all(&out)?;
        fs::set_permissions(&out, fs::Permissions::from_mode(0o755))?;
        Ok(out)
    }

    pub fn log_path(&self) -> PathBuf {
        self.work.path().join("object/log")
    }

    /// Moves the log of a failed run out of the staging area, which is about
    /// to be removed, to `logs/<id>.failed`.
    pub fn keep_log(&self) -> io::Result<PathBuf> {
        self.keep_log_as("failed")
    }

    /// Moves the log out of the staging area to `logs/<id>.<suffix>`: for a
    /// failed run, or an image handed over instead of stored (`log`).
    pub fn keep_log_as(&self, suffix: &str) -> io::Result<PathBuf> {
        let logs = self.objects.with_file_name("logs");
        let target = logs.join(format!("{}.{suffix}", self.id));
        fs::rename(self.log_path(), &target)?;
        Ok(target)
    }

    /// Gives the new layer's root the mode and owner of the root below it
    /// (`lower`, the top layer of the parent): overlayfs shows the upper
    /// root's, so a mode an earlier stage gave `/` stays.
    pub fn inherit_root(&self, lower: &Path) -> io::Result<()> {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let meta = fs::metadata(lower)?;
        let upper = self.upper();
        std::os::unix::fs::lchown(&upper, Some(meta.uid()), Some(meta.gid()))?;
        fs::set_permissions(&upper, fs::Permissions::from_mode(meta.mode() & 0o7777))
    }

    /// Clamps the new layer's (or output's) times to `epoch` and drops
    /// overlayfs' per-mount xattrs (see `layer`), so it holds what the stage
    /// did and nothing of when or where.
    pub fn seal(&self, kind: ObjectKind, epoch: Option<u64>) -> io::Result<()> {
        match kind {
            ObjectKind::Tree => layer::seal(&self.upper(), epoch),
            ObjectKind::Image => layer::seal(&self.output()?, epoch),
        }
    }

    /// Whether the stage changed nothing in its tree.
    pub fn upper_is_empty(&self) -> io::Result<bool> {
        Ok(fs::read_dir(self.upper())?.next().is_none())
    }

    /// Records the content hash, writes the metadata and moves the object
    /// into place atomically. A `meta` that names a content hash already (an
    /// object pulled from a cache) must match what is here, or nothing is
    /// stored.
    pub fn commit(self, meta: &ObjectMeta) -> io::Result<()> {
        let object = self.work.path().join("object");
        let content = match meta.kind {
            ObjectKind::Image => {
                let _ = fs::remove_dir(object.join("tree"));
                object.join("output")
            }
            ObjectKind::Tree => object.join("tree"),
        };
        let hash = hash_dir(&content)?;
        if let Some(expected) = meta.content.as_ref().filter(|e| **e != hash) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("its content hash is {hash}, not the {expected} its metadata names"),
            ));
        }
        let meta = ObjectMeta {
            content: Some(hash),
            ..meta.clone()
        };
        let json = serde_json::to_string_pretty(&meta).map_err(io::Error::other)?;
        fs::write(object.join("meta.json"), json)?;
        // rename(2) is atomic: readers see no object or a whole one. If another
        // process got there first (it cannot while we hold the id lock, but a
        // store shared across machines might), keep theirs.
        match fs::rename(&object, self.objects.join(&self.id)) {
            Ok(()) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::EEXIST | libc::ENOTEMPTY)) => {}
            Err(e) => return Err(e),
        }
        drop(self.work);
        Ok(())
    }
}

pub fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A name unique within this machine for now: pid plus a counter plus time.
fn unique() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// The longest file name Linux file systems take, in bytes.
const MAX_FILE_NAME: usize = 255;

/// Why `name` cannot name a tree in the store, if it cannot: it becomes the
/// file `refs/<name>`, percent-encoded (see [`ref_file`]), so it must not be
/// empty and its encoding must fit in a file name.
pub fn name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("it is empty".into());
    }
    let len = ref_file(name).len();
    (len > MAX_FILE_NAME).then(|| {
        format!(
            "it is kept as the file refs/<name>, percent-encoded (3 bytes for each byte other than \
             A-Z, a-z, 0-9, '_', '-' and '.'), and takes {len} bytes where a file name has at most {MAX_FILE_NAME}"
        )
    })
}

/// Tree names may hold any character; file names in `refs/` keep
/// `[A-Za-z0-9._-]` and percent-encode the rest.
fn ref_file(name: &str) -> String {
    let mut out = String::new();
    for b in name.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' => out.push(b as char),
            b'.' if !out.is_empty() => out.push('.'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn unref_file(file: &str) -> String {
    let bytes = file.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&file[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn flock(file: &File, how: nix::fcntl::FlockArg) -> io::Result<()> {
    #[allow(deprecated)] // nix's Flock wrapper takes ownership of the file; we keep ours.
    nix::fcntl::flock(file.as_raw_fd(), how).map_err(io::Error::from)
}

fn context(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// Commits an object for a test: `fill` writes its layer or output.
#[cfg(test)]
pub(crate) fn commit_for_test(
    store: &Store,
    id: &str,
    kind: ObjectKind,
    parent: Option<&str>,
    layers: Vec<Id>,
    fill: impl FnOnce(&Path),
) {
    let Claim::Build { staging, .. } = store.claim(id).unwrap() else {
        panic!("{id} is stored already")
    };
    match kind {
        ObjectKind::Tree => fill(&staging.upper()),
        ObjectKind::Image => fill(&staging.output().unwrap()),
    }
    fs::write(staging.log_path(), "").unwrap();
    let meta = ObjectMeta {
        id: id.into(),
        kind,
        stage: "org.osbuild.noop".into(),
        parent: parent.map(str::to_string),
        build: None,
        layers,
        created: now_secs(),
        duration_ms: 0,
        content: None,
    };
    staging.commit(&meta).unwrap();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opening_a_store_removes_only_abandoned_work() {
        let root = std::env::temp_dir().join(format!("osbuild-store-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let store = Store::open(&root).unwrap();
        let id = "ab".repeat(32);
        let Claim::Build { staging: live, .. } = store.claim(&id).unwrap() else {
            panic!("nothing is stored yet")
        };
        let tmp = root.join("tmp");
        // A dead builder's work: its lock is no longer held.
        fs::create_dir_all(tmp.join("dead")).unwrap();
        File::create(tmp.join("dead/lock")).unwrap();
        // One being set up right now, still under its hidden name.
        fs::create_dir_all(tmp.join(".young")).unwrap();
        let again = Store::open(&root).unwrap();
        let mut left: Vec<String> = fs::read_dir(&tmp)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left.len(), 2, "{left:?}");
        assert_eq!(left[0], ".young");
        assert!(live.upper().is_dir(), "a live build's work is kept");
        drop((live, again, store));
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn names_that_fit_the_store() {
        assert!(name_problem("web").is_none());
        assert!(name_problem(&"a".repeat(255)).is_none());
        assert!(name_problem(&"a".repeat(256)).is_some());
        // "é" is two bytes, each %XX: 6 bytes of file name.
        assert!(name_problem(&"é".repeat(42)).is_none());
        assert!(name_problem(&"é".repeat(43)).is_some());
        assert!(name_problem(&"é".repeat(300)).unwrap().contains("takes 1800 bytes"));
        assert!(name_problem("").is_some());
        let root = std::env::temp_dir().join(format!("osbuild-store-names-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let store = Store::open(&root).unwrap();
        let longest = format!("{}{}", "é".repeat(42), "abc");
        assert_eq!(ref_file(&longest).len(), 255);
        store.set_name(&longest, "x").unwrap();
        assert_eq!(store.names().unwrap(), [(longest, "x".to_string())]);
        drop(store);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn ref_names_round_trip() {
        for name in ["Example Image", "web/db", "..", ".hidden", "plain-name_1.2", "ünï"] {
            let file = ref_file(name);
            assert!(!file.starts_with('.') && !file.contains('/'), "{file}");
            assert_eq!(unref_file(&file), name);
        }
    }
}
