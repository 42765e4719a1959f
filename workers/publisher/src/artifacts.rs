//! Checkpoints in the store by content, so that one machine can hand a trained model to
//! another: [`put_dir`] stores a folder's files as immutable content-addressed objects
//! (`artifacts/sha256/<hex>`) plus a small JSON manifest (file name -> SHA-256 and size),
//! itself content-addressed, and returns the [`ArtifactRef`] that names the manifest;
//! [`ArtifactCache::fetch`] brings an artifact into a bounded local cache under the worker's
//! work directory (`<work_dir>/cache/<manifest sha256>/`) and answers the folder.
//!
//! The cache downloads into a temporary folder on the same filesystem, checks every file's
//! SHA-256 and size against the manifest (and the manifest's against the reference), and
//! renames the folder into place: an entry is whole or absent, and two workers sharing one
//! cache are safe (the one whose rename loses uses the winner's copy). Beyond its byte cap it
//! evicts the least recently used entries (by the folder's modification time, renewed on every
//! use), except the one just used and any used in the last [`ArtifactCache::min_age`].
//!
//! What it does not do: decide which files make a checkpoint (the trainer's
//! `ARTIFACT_FILES`), load models (the trainer does), or garbage-collect the store
//! (artifacts are immutable and shared; a publication copies its files to `models/` anyway).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use jobs::artifact::{artifact_key, ArtifactFile, ArtifactManifest};
use jobs::ArtifactRef;
use trainer::experiments::ExperimentRecord;
use trainer::WorkerDirs;

use crate::store::{sha256_hex, Store, StoreError};

/// An artifact could not be stored or fetched. Every variant names the reference (or the
/// folder) and what went wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ArtifactError {
    /// The store has no such object.
    #[error("artifact {reference} is not in {store}: its {what} is missing")]
    Missing {
        reference: String,
        store: String,
        what: String,
    },
    /// The store gave bytes that are not the ones the reference (or manifest) names.
    #[error("artifact {reference}: {what} is not what the reference names ({detail})")]
    Integrity {
        reference: String,
        what: String,
        detail: String,
    },
    /// Not an artifact reference, manifest or folder this build can use.
    #[error("artifact {reference}: {reason}")]
    Bad { reference: String, reason: String },
    #[error("{path}: {detail}")]
    Io { path: String, detail: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ArtifactError {
    /// Worth trying again later (the store did not answer).
    pub fn is_transient(&self) -> bool {
        matches!(self, ArtifactError::Store(StoreError::Unavailable { .. }))
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ArtifactError {
    let path = path.display().to_string();
    move |e| ArtifactError::Io {
        path,
        detail: e.to_string(),
    }
}

/// Whether the object `key` exists (one listing, no download).
async fn exists(store: &dyn Store, key: &str) -> Result<bool, StoreError> {
    Ok(store.list(key).await?.iter().any(|k| k == key))
}

/// Stores `bytes` under their content address unless the object is there already; returns
/// their hash and size.
async fn put_content(store: &dyn Store, bytes: Vec<u8>) -> Result<ArtifactFile, StoreError> {
    let sha256 = sha256_hex(&bytes);
    let size = bytes.len() as u64;
    let key = artifact_key(&sha256);
    if !exists(store, &key).await? {
        store.put(&key, bytes).await?;
    }
    Ok(ArtifactFile { sha256, size })
}

/// Stores the files `files` of the folder `dir` (those that exist; at least one must) as a
/// content-addressed artifact in `store` and returns its reference. Storing the same files
/// again writes nothing and gives the same reference.
pub async fn put_dir(
    store: &dyn Store,
    dir: &Path,
    files: &[&str],
) -> Result<ArtifactRef, ArtifactError> {
    let mut manifest = ArtifactManifest {
        version: ArtifactManifest::VERSION,
        ..Default::default()
    };
    for name in files {
        let path = dir.join(name);
        if !path.is_file() {
            continue;
        }
        let bytes = tokio::fs::read(&path).await.map_err(io(&path))?;
        manifest
            .files
            .insert(name.to_string(), put_content(store, bytes).await?);
    }
    if manifest.files.is_empty() {
        return Err(ArtifactError::Bad {
            reference: dir.display().to_string(),
            reason: format!("the folder has none of {}", files.join(", ")),
        });
    }
    manifest.check().map_err(|e| ArtifactError::Bad {
        reference: dir.display().to_string(),
        reason: e.to_string(),
    })?;
    let bytes = serde_json::to_vec(&manifest).expect("manifests serialise");
    let stored = put_content(store, bytes).await?;
    Ok(ArtifactRef::of_manifest(&stored.sha256, stored.size))
}

/// Stores the checkpoint of every record that has a local one and no artifact yet (the
/// trainer's [`ARTIFACT_FILES`](trainer::experiments::ARTIFACT_FILES)) and sets its
/// `artifact`. Records without a checkpoint (failed runs) are left as they are.
pub async fn store_checkpoints(
    store: &dyn Store,
    recs: &mut [ExperimentRecord],
) -> Result<(), ArtifactError> {
    for r in recs.iter_mut().filter(|r| r.artifact.is_none()) {
        if let Some(dir) = &r.checkpoint {
            r.artifact = Some(put_dir(store, dir, &trainer::experiments::ARTIFACT_FILES).await?);
        }
    }
    Ok(())
}

/// The folder of `rec`'s checkpoint on this machine: its artifact fetched into `cache`, else
/// (in the process that trained it) its local checkpoint; an error when it has neither.
pub async fn local_checkpoint(
    store: &dyn Store,
    cache: &ArtifactCache,
    rec: &ExperimentRecord,
) -> Result<PathBuf, ArtifactError> {
    match (&rec.artifact, &rec.checkpoint) {
        (Some(a), _) => cache.fetch(store, a).await,
        (None, Some(dir)) => Ok(dir.clone()),
        (None, None) => Err(ArtifactError::Bad {
            reference: format!("of experiment {}", rec.name),
            reason: "the experiment has no checkpoint in the store (it failed before one was \
                     written, or an older build recorded only a local path)"
                .into(),
        }),
    }
}

/// The binary's [`CheckpointSink`](trainer::handler::CheckpointSink) for the `experiment`
/// handler: the configured store of `store_dir` (the bucket when `HIPPIUS_ENDPOINT` is set).
#[derive(Debug, Clone)]
pub struct StoreSink {
    pub store_dir: PathBuf,
    /// Where datasets are fetched to (the worker's cache).
    pub cache: ArtifactCache,
}

#[async_trait::async_trait]
impl trainer::handler::CheckpointSink for StoreSink {
    async fn put_checkpoint(&self, dir: &Path) -> Result<ArtifactRef, String> {
        let store = crate::store::open(&self.store_dir).map_err(|e| e.to_string())?;
        put_dir(&*store, dir, &trainer::experiments::ARTIFACT_FILES)
            .await
            .map_err(|e| e.to_string())
    }

    async fn dataset_dir(&self, id: &str) -> Result<PathBuf, String> {
        let store = crate::store::open(&self.store_dir).map_err(|e| e.to_string())?;
        crate::datasets::fetch(&*store, &self.cache, id)
            .await
            .map(|(dir, _)| dir)
            .map_err(|e| e.to_string())
    }
}

static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// A bounded local cache of artifacts: `<root>/<manifest sha256>/<file>`, temporary folders
/// in `<root>/.tmp/`.
#[derive(Debug, Clone)]
pub struct ArtifactCache {
    root: PathBuf,
    /// Most bytes kept; beyond it the least recently used entries go.
    pub max_bytes: u64,
    /// Entries used more recently than this are never evicted (another worker sharing the
    /// cache may be loading them), even when that leaves the cache over its cap for a while.
    pub min_age: Duration,
}

impl ArtifactCache {
    /// How long a used entry is safe from eviction by default.
    pub const DEFAULT_MIN_AGE: Duration = Duration::from_secs(120);

    /// A cache at `root` keeping at most `max_bytes`.
    pub fn new(root: impl Into<PathBuf>, max_bytes: u64) -> Self {
        ArtifactCache {
            root: root.into(),
            max_bytes,
            min_age: Self::DEFAULT_MIN_AGE,
        }
    }

    /// The cache of a worker: `<work_dir>/cache`, with the worker's cap.
    pub fn of(dirs: &WorkerDirs) -> Self {
        Self::new(dirs.cache_dir(), dirs.cache_max_bytes)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The folder an artifact has (or would have) here.
    pub fn entry(&self, r: &ArtifactRef) -> PathBuf {
        self.root.join(&r.sha256)
    }

    /// The folder of artifact `r` in this cache, fetched from `store` first when it is not
    /// here; every file checked against the manifest, and the manifest against `r`.
    pub async fn fetch(
        &self,
        store: &dyn Store,
        r: &ArtifactRef,
    ) -> Result<PathBuf, ArtifactError> {
        let bad = |reason: String| ArtifactError::Bad {
            reference: r.to_string(),
            reason,
        };
        r.check().map_err(|e| bad(e.to_string()))?;
        let dest = self.entry(r);
        if dest.is_dir() {
            touch(&dest);
            return Ok(dest);
        }
        let missing = |what: String| ArtifactError::Missing {
            reference: r.to_string(),
            store: store.describe(),
            what,
        };
        let bytes = store
            .get(&r.key)
            .await?
            .ok_or_else(|| missing(format!("manifest ({})", r.key)))?;
        check_content(r, "the manifest", &bytes, &r.sha256, r.size)?;
        let manifest: ArtifactManifest =
            serde_json::from_slice(&bytes).map_err(|e| bad(format!("manifest: {e}")))?;
        manifest.check().map_err(|e| bad(e.to_string()))?;
        let tmp_root = self.root.join(".tmp");
        let tmp = tmp_root.join(format!(
            "{}-{}-{}-{}",
            r.sha256,
            std::process::id(),
            TMP_SEQ.fetch_add(1, Ordering::Relaxed),
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        tokio::fs::create_dir_all(&tmp).await.map_err(io(&tmp))?;
        let filled = async {
            for (name, f) in &manifest.files {
                let key = artifact_key(&f.sha256);
                let b = store
                    .get(&key)
                    .await?
                    .ok_or_else(|| missing(format!("file {name} ({key})")))?;
                check_content(r, &format!("file {name}"), &b, &f.sha256, f.size)?;
                let path = tmp.join(name);
                tokio::fs::write(&path, &b).await.map_err(io(&path))?;
            }
            Ok::<(), ArtifactError>(())
        }
        .await;
        if let Err(e) = filled {
            let _ = tokio::fs::remove_dir_all(&tmp).await;
            return Err(e);
        }
        let (cache, dest2, tmp2) = (self.clone(), dest.clone(), tmp.clone());
        tokio::task::spawn_blocking(move || cache.settle(&tmp2, &dest2))
            .await
            .map_err(|e| ArtifactError::Io {
                path: dest.display().to_string(),
                detail: format!("the cache task failed: {e}"),
            })??;
        Ok(dest)
    }

    /// Renames the filled `tmp` into place (or, when another fetch got there first, drops it
    /// and keeps the winner's), marks the entry used and evicts beyond the cap.
    fn settle(&self, tmp: &Path, dest: &Path) -> Result<(), ArtifactError> {
        if let Err(e) = std::fs::rename(tmp, dest) {
            let _ = std::fs::remove_dir_all(tmp);
            if !dest.is_dir() {
                return Err(io(dest)(e));
            }
        }
        touch(dest);
        self.evict(Some(dest));
        Ok(())
    }

    /// The cache's entries: (folder, bytes, last use), oldest first.
    pub fn entries(&self) -> Vec<(PathBuf, u64, SystemTime)> {
        let Ok(rd) = std::fs::read_dir(&self.root) else {
            return vec![];
        };
        let mut out: Vec<(PathBuf, u64, SystemTime)> = rd
            .flatten()
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| {
                let p = e.path();
                let size = std::fs::read_dir(&p)
                    .map(|files| {
                        files
                            .flatten()
                            .filter_map(|f| f.metadata().ok())
                            .map(|m| m.len())
                            .sum()
                    })
                    .unwrap_or(0);
                let used = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .unwrap_or(SystemTime::UNIX_EPOCH);
                (p, size, used)
            })
            .collect();
        out.sort_by_key(|(_, _, used)| *used);
        out
    }

    /// Removes the least recently used entries while the cache holds more than its cap, never
    /// `keep` nor an entry used within [`Self::min_age`]; an entry goes by a rename into
    /// `.tmp/` first, so no reader ever finds half of one. Also clears temporary folders older
    /// than an hour (left by a crash).
    pub fn evict(&self, keep: Option<&Path>) {
        let now = SystemTime::now();
        let young = |t: SystemTime| now.duration_since(t).unwrap_or_default() < self.min_age;
        let entries = self.entries();
        let mut total: u64 = entries.iter().map(|(_, s, _)| s).sum();
        let trash = self.root.join(".tmp");
        for (path, size, used) in entries {
            if total <= self.max_bytes {
                break;
            }
            if Some(path.as_path()) == keep || young(used) {
                continue;
            }
            let gone = trash.join(format!(
                "evict-{}-{}",
                std::process::id(),
                TMP_SEQ.fetch_add(1, Ordering::Relaxed)
            ));
            if std::fs::create_dir_all(&trash).is_ok() && std::fs::rename(&path, &gone).is_ok() {
                let _ = std::fs::remove_dir_all(&gone);
                total = total.saturating_sub(size);
            }
        }
        if let Ok(rd) = std::fs::read_dir(&trash) {
            for e in rd.flatten() {
                let old = e.metadata().and_then(|m| m.modified()).is_ok_and(|t| {
                    now.duration_since(t).unwrap_or_default() > Duration::from_secs(3600)
                });
                if old {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
    }
}

/// Checks `bytes` against the SHA-256 and size a reference or manifest records.
fn check_content(
    r: &ArtifactRef,
    what: &str,
    bytes: &[u8],
    sha256: &str,
    size: u64,
) -> Result<(), ArtifactError> {
    let got = sha256_hex(bytes);
    if got != sha256 || bytes.len() as u64 != size {
        return Err(ArtifactError::Integrity {
            reference: r.to_string(),
            what: what.to_string(),
            detail: format!(
                "read {} bytes with SHA-256 {got}, expected {size} bytes with {sha256}",
                bytes.len()
            ),
        });
    }
    Ok(())
}

/// Marks an entry used now (its folder's modification time).
fn touch(dir: &Path) {
    if let Ok(f) = std::fs::File::open(dir) {
        let _ = f.set_modified(SystemTime::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{FsStore, StoreExt};

    /// A store and a checkpoint folder `ck` of `files` in a fresh temporary directory.
    fn setup(files: &[(&str, Vec<u8>)]) -> (tempfile::TempDir, FsStore, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let store = FsStore::new(tmp.path().join("store"));
        let ck = folder(tmp.path(), "ck", files);
        (tmp, store, ck)
    }

    fn folder(root: &Path, name: &str, files: &[(&str, Vec<u8>)]) -> PathBuf {
        let d = root.join(name);
        std::fs::create_dir_all(&d).unwrap();
        for (f, b) in files {
            std::fs::write(d.join(f), b).unwrap();
        }
        d
    }

    fn bytes(n: usize, seed: u8) -> Vec<u8> {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    #[tokio::test]
    async fn a_folder_round_trips_by_content_and_stores_nothing_twice() {
        let (tmp, store, ck) = setup(&[
            ("model.safetensors", bytes(3000, 1)),
            ("spec.json", b"{}".to_vec()),
        ]);
        std::fs::write(ck.join("optimizer.safetensors"), b"left behind").unwrap();
        let files = ["model.safetensors", "spec.json", "state.json"];
        let r = put_dir(&store, &ck, &files).await.unwrap();
        r.check().unwrap();
        // the same files, the same reference; a changed file, another
        assert_eq!(put_dir(&store, &ck, &files).await.unwrap(), r);
        let keys = store.list("artifacts/").await.unwrap();
        assert_eq!(keys.len(), 3, "two files and the manifest: {keys:?}");
        let cache = ArtifactCache::new(tmp.path().join("cache"), 1 << 20);
        let got = cache.fetch(&store, &r).await.unwrap();
        assert_eq!(got, tmp.path().join("cache").join(&r.sha256));
        assert_eq!(
            std::fs::read(got.join("model.safetensors")).unwrap(),
            bytes(3000, 1)
        );
        assert!(!got.join("optimizer.safetensors").exists());
        // a second fetch is a hit (the store is not read again)
        let gone = FsStore::new(tmp.path().join("nowhere"));
        assert_eq!(cache.fetch(&gone, &r).await.unwrap(), got);
        // a reference the store does not hold names itself and the store
        let other = ArtifactRef::of_manifest(&"0a".repeat(32), 10);
        let err = cache.fetch(&store, &other).await.unwrap_err();
        assert!(matches!(err, ArtifactError::Missing { .. }), "{err}");
        let text = err.to_string();
        assert!(
            text.contains(&other.sha256) && text.contains("store"),
            "{text}"
        );
        // an empty folder is refused
        let empty = folder(tmp.path(), "empty", &[]);
        assert!(put_dir(&store, &empty, &files).await.is_err());
    }

    #[tokio::test]
    async fn a_file_whose_bytes_do_not_match_the_manifest_is_refused() {
        let (tmp, store, ck) = setup(&[("model.safetensors", bytes(500, 2))]);
        let r = put_dir(&store, &ck, &["model.safetensors"]).await.unwrap();
        // the store's own hash matches (the object was rewritten through it), the content is not
        // what the manifest names
        let file_key = artifact_key(&sha256_hex(&bytes(500, 2)));
        store.put(&file_key, bytes(500, 3)).await.unwrap();
        let cache = ArtifactCache::new(tmp.path().join("cache"), 1 << 20);
        let err = cache.fetch(&store, &r).await.unwrap_err();
        assert!(matches!(err, ArtifactError::Integrity { .. }), "{err}");
        assert!(err.to_string().contains("model.safetensors"), "{err}");
        // nothing half-fetched is left in the cache
        assert!(!cache.entry(&r).exists());
        assert!(cache.entries().is_empty());
        // a manifest that is not the referenced one is refused too
        let wrong = ArtifactRef::of_manifest(&r.sha256, r.size + 1);
        let err = cache.fetch(&store, &wrong).await.unwrap_err();
        assert!(matches!(err, ArtifactError::Integrity { .. }), "{err}");
        store
            .put_json(&r.key, &serde_json::json!({"version": 1, "files": {}}))
            .await
            .unwrap();
        let err = cache.fetch(&store, &r).await.unwrap_err();
        assert!(err.to_string().contains("the manifest"), "{err}");
    }

    #[tokio::test]
    async fn two_fetches_of_one_reference_at_once_both_succeed() {
        let (tmp, store, ck) = setup(&[
            ("model.safetensors", bytes(200_000, 4)),
            ("spec.json", b"{\"a\":1}".to_vec()),
        ]);
        let r = put_dir(&store, &ck, &["model.safetensors", "spec.json"])
            .await
            .unwrap();
        // two caches over one folder, as two worker processes on one machine
        let a = ArtifactCache::new(tmp.path().join("cache"), 1 << 30);
        let b = ArtifactCache::new(tmp.path().join("cache"), 1 << 30);
        for _ in 0..5 {
            let _ = std::fs::remove_dir_all(a.entry(&r));
            let (x, y) = tokio::join!(a.fetch(&store, &r), b.fetch(&store, &r));
            let (x, y) = (x.unwrap(), y.unwrap());
            assert_eq!(x, y);
            assert_eq!(
                std::fs::read(x.join("model.safetensors")).unwrap(),
                bytes(200_000, 4)
            );
        }
        // no temporary folder is left behind
        let left: Vec<_> = std::fs::read_dir(tmp.path().join("cache/.tmp"))
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "{left:?}");
    }

    #[tokio::test]
    async fn eviction_keeps_the_cap_and_the_recently_used() {
        let tmp = tempfile::tempdir().unwrap();
        let store = FsStore::new(tmp.path().join("store"));
        let mut refs = Vec::new();
        for i in 0..4u8 {
            let ck = folder(tmp.path(), &format!("ck{i}"), &[("w", bytes(1000, i))]);
            refs.push(put_dir(&store, &ck, &["w"]).await.unwrap());
        }
        let mut cache = ArtifactCache::new(tmp.path().join("cache"), 2500);
        cache.min_age = Duration::ZERO;
        let pause = || tokio::time::sleep(Duration::from_millis(20));
        cache.fetch(&store, &refs[0]).await.unwrap();
        pause().await;
        cache.fetch(&store, &refs[1]).await.unwrap();
        pause().await;
        // a use of the first makes the second the least recently used
        cache.fetch(&store, &refs[0]).await.unwrap();
        pause().await;
        cache.fetch(&store, &refs[2]).await.unwrap();
        let held: Vec<PathBuf> = cache.entries().into_iter().map(|e| e.0).collect();
        assert_eq!(held, [cache.entry(&refs[0]), cache.entry(&refs[2])]);
        assert!(cache.entries().iter().map(|e| e.1).sum::<u64>() <= 2500);
        // entries in use are not evicted, even over the cap
        cache.min_age = Duration::from_secs(3600);
        cache.fetch(&store, &refs[3]).await.unwrap();
        assert_eq!(cache.entries().len(), 3);
        // an entry larger than the cap is still served (the one just fetched stays)
        cache.min_age = Duration::ZERO;
        cache.max_bytes = 10;
        let p = cache.fetch(&store, &refs[1]).await.unwrap();
        assert!(p.join("w").is_file());
        assert_eq!(cache.entries().len(), 1);
    }
}
