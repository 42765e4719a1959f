//! Where results live between runs and machines: one [`Store`] interface over
//! a local directory ([`FsStore`], the default) or any S3-compatible service
//! ([`S3Store`], Hippius by default, chosen whenever `HIPPIUS_ENDPOINT` is
//! set), the seed's key layout on top of it ([`records`]), Hugging Face
//! Hub publishing and reading ([`hf`]), results shared between miners
//! ([`shared`]) and Weights & Biases metrics ([`wandb`]).
//!
//! Guarantees every backend keeps:
//! - an object is visible whole or not at all (a file renamed into place; an
//!   S3 PUT, or a multipart upload that only appears when completed and is
//!   aborted when it fails);
//! - every `put` records the SHA-256 of the content (a sidecar under
//!   `.sha256/` for files, `x-amz-meta-sha256` for S3) and every `get`
//!   verifies it (objects written by other tools, without a recorded hash,
//!   are read as they are);
//! - keys are checked before any I/O: relative, `/`-separated, ASCII letters,
//!   digits and `-_.+=@,` only, no empty, `.`-leading or `..` segments.
//!
//! Callers that write several objects (a publication) write the pointer
//! objects (`pipeline_runs/latest.json`, `models/production.json`) last, so a
//! reader that follows a pointer never finds half a publication.

pub mod hf;
pub mod records;
mod s3;
pub mod shared;
pub mod wandb;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use s3::{S3Config, S3Store};

/// A store operation failed. Every variant names what went wrong and where.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StoreError {
    #[error("invalid store key {key:?}: {reason}")]
    InvalidKey { key: String, reason: String },
    #[error("store configuration: {0}")]
    Config(String),
    #[error("{endpoint} rejected the credentials ({detail}); check HIPPIUS_ACCESS_KEY and HIPPIUS_SECRET_KEY")]
    Credentials { endpoint: String, detail: String },
    #[error("bucket {bucket:?} does not exist at {endpoint} (create it, or leave HIPPIUS_CREATE_BUCKET unset so it is created)")]
    BucketMissing { bucket: String, endpoint: String },
    #[error("{location}: content hash mismatch (recorded sha256 {expected}, read {actual}); the object is corrupt or was replaced by a partial write")]
    Integrity {
        location: String,
        expected: String,
        actual: String,
    },
    #[error(
        "{op} {location}: the store did not answer after {attempts} attempts (last error: {last})"
    )]
    Unavailable {
        op: String,
        location: String,
        attempts: u32,
        last: String,
    },
    #[error(
        "no pipeline run in {location} yet, so `latest` names none: a run is saved there when \
         it ends; start one with `synth-city pipeline`"
    )]
    NoRuns { location: String },
    #[error("{op} {location}: {detail}")]
    Failed {
        op: String,
        location: String,
        detail: String,
    },
}

/// What a `put` stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    /// Hex SHA-256 of the content, as recorded.
    pub sha256: String,
    /// True when the object went up as a multipart upload.
    #[serde(default)]
    pub multipart: bool,
}

/// A key-value object store: put, get, list, delete, with content hashes.
#[async_trait::async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// One line saying where objects go (`directory store/`, `s3://bucket at https://...`).
    fn describe(&self) -> String;
    /// Where `key` lives, for messages and records (a path or an `s3://` URI).
    fn location(&self, key: &str) -> String;
    /// Stores `bytes` under `key` (replacing what was there) and records their
    /// SHA-256. The object is visible whole or not at all.
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<ObjectInfo, StoreError>;
    /// Reads `key`; `None` when there is no such object. The recorded hash is verified.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Every key under `prefix` (`""` for all, else ending in `/` or a key
    /// start), sorted.
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError>;
    /// Removes `key` (and its recorded hash); no error when it is absent.
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
}

/// JSON helpers over any [`Store`].
#[async_trait::async_trait]
pub trait StoreExt: Store {
    /// Stores `value` as pretty JSON.
    async fn put_json<T: Serialize + Sync + ?Sized>(
        &self,
        key: &str,
        value: &T,
    ) -> Result<ObjectInfo, StoreError> {
        let bytes = serde_json::to_vec_pretty(value).map_err(|e| StoreError::Failed {
            op: "encode".into(),
            location: self.location(key),
            detail: e.to_string(),
        })?;
        self.put(key, bytes).await
    }

    /// Reads and decodes a JSON object; a decode error names the object.
    async fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        match self.get(key).await? {
            None => Ok(None),
            Some(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| StoreError::Failed {
                    op: "decode".into(),
                    location: self.location(key),
                    detail: format!("not the JSON expected: {e}"),
                }),
        }
    }

    /// Stores the content of a local file.
    async fn put_file(&self, key: &str, path: &Path) -> Result<ObjectInfo, StoreError> {
        let bytes = tokio::fs::read(path)
            .await
            .map_err(|e| StoreError::Failed {
                op: "read".into(),
                location: path.display().to_string(),
                detail: e.to_string(),
            })?;
        self.put(key, bytes).await
    }
}

impl<S: Store + ?Sized> StoreExt for S {}

/// Hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn invalid(key: &str, reason: &str) -> StoreError {
    StoreError::InvalidKey {
        key: key.to_string(),
        reason: reason.to_string(),
    }
}

fn allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+' | '=' | '@' | ',')
}

/// Checks an object key: relative, `/`-separated segments of allowed
/// characters, none empty, none starting with `.`.
pub fn check_key(key: &str) -> Result<(), StoreError> {
    if key.is_empty() {
        return Err(invalid(key, "empty"));
    }
    if key.len() > 512 {
        return Err(invalid(key, "longer than 512 bytes"));
    }
    if key.starts_with('/') || key.ends_with('/') {
        return Err(invalid(key, "must not start or end with '/'"));
    }
    for seg in key.split('/') {
        if seg.is_empty() {
            return Err(invalid(key, "empty path segment ('//')"));
        }
        if seg.starts_with('.') {
            return Err(invalid(key, "a segment starts with '.'"));
        }
        if let Some(c) = seg.chars().find(|c| !allowed(*c)) {
            return Err(invalid(
                key,
                &format!("character {c:?} is not allowed (letters, digits and -_.+=@, only)"),
            ));
        }
    }
    Ok(())
}

/// Checks a list prefix: empty, or a key start (may end in `/`).
pub fn check_prefix(prefix: &str) -> Result<(), StoreError> {
    if prefix.is_empty() {
        return Ok(());
    }
    check_key(prefix.trim_end_matches('/'))
}

/// Opens the configured store: [`S3Store`] when `HIPPIUS_ENDPOINT` is set (and
/// non-empty), else an [`FsStore`] rooted at `data_dir`.
pub fn open(data_dir: &Path) -> Result<Arc<dyn Store>, StoreError> {
    match S3Config::from_env()? {
        Some(cfg) => Ok(Arc::new(S3Store::new(cfg)?)),
        None => Ok(Arc::new(FsStore::new(data_dir))),
    }
}

/// Objects as files under a root directory: `root/<key>`, with the recorded
/// hash in `root/.sha256/<key>` and temporary files in `root/.tmp/`.
#[derive(Debug, Clone)]
pub struct FsStore {
    root: PathBuf,
}

static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

impl FsStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        FsStore { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    fn hash_path(&self, key: &str) -> PathBuf {
        self.root.join(".sha256").join(key)
    }

    fn fail(&self, op: &str, key: &str, e: impl std::fmt::Display) -> StoreError {
        StoreError::Failed {
            op: op.into(),
            location: self.location(key),
            detail: e.to_string(),
        }
    }

    /// Writes `bytes` to `dest` through a temporary file in `root/.tmp` and a rename.
    fn write_atomic(&self, dest: &Path, bytes: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        let tmp_dir = self.root.join(".tmp");
        std::fs::create_dir_all(&tmp_dir)?;
        if let Some(dir) = dest.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = tmp_dir.join(format!(
            "{}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
            TMP_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let res = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, dest)
        })();
        if res.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        res
    }

    fn put_blocking(&self, key: &str, bytes: &[u8]) -> Result<ObjectInfo, StoreError> {
        check_key(key)?;
        let path = self.path(key);
        if path.is_dir() {
            return Err(self.fail("put", key, "a folder of objects already has this name"));
        }
        let sha = sha256_hex(bytes);
        // The hash first, then the content: a crash between the two leaves a
        // mismatch that `get` reports, never a silently wrong object.
        self.write_atomic(&self.hash_path(key), sha.as_bytes())
            .map_err(|e| self.fail("put", key, e))?;
        self.write_atomic(&path, bytes)
            .map_err(|e| self.fail("put", key, e))?;
        Ok(ObjectInfo {
            key: key.to_string(),
            size: bytes.len() as u64,
            sha256: sha,
            multipart: false,
        })
    }

    fn get_blocking(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        check_key(key)?;
        let path = self.path(key);
        // A writer replacing the object renames the hash and then the content;
        // a read that falls between the two sees a mismatch, so it reads again.
        for attempt in 0..3 {
            let bytes = match std::fs::read(&path) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) if path.is_dir() => {
                    return Err(self.fail("get", key, format!("is a folder, not an object ({e})")))
                }
                Err(e) => return Err(self.fail("get", key, e)),
            };
            let recorded = match std::fs::read_to_string(self.hash_path(key)) {
                Ok(s) => s.trim().to_string(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Some(bytes)),
                Err(e) => return Err(self.fail("get", key, e)),
            };
            let actual = sha256_hex(&bytes);
            if actual == recorded {
                return Ok(Some(bytes));
            }
            if attempt == 2 {
                return Err(StoreError::Integrity {
                    location: self.location(key),
                    expected: recorded,
                    actual,
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        unreachable!("the loop returns")
    }

    fn list_blocking(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        check_prefix(prefix)?;
        let mut out = Vec::new();
        let mut stack = vec![(self.root.clone(), String::new())];
        while let Some((dir, rel)) = stack.pop() {
            let rd = match std::fs::read_dir(&dir) {
                Ok(rd) => rd,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(self.fail("list", &rel, e)),
            };
            for entry in rd {
                let entry = entry.map_err(|e| self.fail("list", &rel, e))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') {
                    continue;
                }
                let key = if rel.is_empty() {
                    name
                } else {
                    format!("{rel}/{name}")
                };
                let ft = entry.file_type().map_err(|e| self.fail("list", &key, e))?;
                if ft.is_dir() {
                    // Descend only where the prefix can still match.
                    let k = format!("{key}/");
                    if k.starts_with(prefix) || prefix.starts_with(&k) {
                        stack.push((entry.path(), key));
                    }
                } else if ft.is_file() && key.starts_with(prefix) && check_key(&key).is_ok() {
                    out.push(key);
                }
            }
        }
        out.sort();
        Ok(out)
    }

    fn delete_blocking(&self, key: &str) -> Result<(), StoreError> {
        check_key(key)?;
        for p in [self.path(key), self.hash_path(key)] {
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(self.fail("delete", key, e)),
            }
        }
        Ok(())
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Failed {
            op: "file store".into(),
            location: String::new(),
            detail: format!("the I/O task failed: {e}"),
        })?
}

#[async_trait::async_trait]
impl Store for FsStore {
    fn describe(&self) -> String {
        format!("the directory {}", self.root.display())
    }

    fn location(&self, key: &str) -> String {
        self.path(key).display().to_string()
    }

    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<ObjectInfo, StoreError> {
        let (s, k) = (self.clone(), key.to_string());
        blocking(move || s.put_blocking(&k, &bytes)).await
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let (s, k) = (self.clone(), key.to_string());
        blocking(move || s.get_blocking(&k)).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let (s, p) = (self.clone(), prefix.to_string());
        blocking(move || s.list_blocking(&p)).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let (s, k) = (self.clone(), key.to_string());
        blocking(move || s.delete_blocking(&k)).await
    }
}

/// A name safe as one path component: ASCII letters, digits, `-`, `_`, `.`, `+`; others `_`.
pub fn safe_name(name: &str) -> String {
    let s: String = name
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let s = s.trim_matches('.').to_string();
    if s.is_empty() {
        "model".into()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempdir::Dir, FsStore) {
        let d = tempdir::Dir::new();
        let s = FsStore::new(d.path());
        (d, s)
    }

    /// A temporary directory removed on drop (no extra dev-dependency).
    mod tempdir {
        pub struct Dir(std::path::PathBuf);
        impl Dir {
            pub fn new() -> Self {
                let p = std::env::temp_dir().join(format!(
                    "sc-store-{}-{}",
                    std::process::id(),
                    super::TMP_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                ));
                std::fs::create_dir_all(&p).unwrap();
                Dir(p)
            }
            pub fn path(&self) -> &std::path::Path {
                &self.0
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[tokio::test]
    async fn put_get_list_overwrite_delete() {
        let (_d, s) = store();
        let info = s
            .put("experiments/r1/a.json", b"{}".to_vec())
            .await
            .unwrap();
        assert_eq!(info.sha256, sha256_hex(b"{}"));
        assert_eq!(info.size, 2);
        s.put("experiments/r1/b.json", b"[1]".to_vec())
            .await
            .unwrap();
        s.put("pipeline_runs/latest.json", b"x".to_vec())
            .await
            .unwrap();
        assert_eq!(
            s.get("experiments/r1/a.json").await.unwrap().as_deref(),
            Some(&b"{}"[..])
        );
        assert_eq!(s.get("experiments/r1/zzz.json").await.unwrap(), None);
        assert_eq!(
            s.list("experiments/").await.unwrap(),
            vec!["experiments/r1/a.json", "experiments/r1/b.json"]
        );
        assert_eq!(s.list("").await.unwrap().len(), 3);
        assert_eq!(
            s.list("experiments/r1/b").await.unwrap(),
            vec!["experiments/r1/b.json"]
        );
        s.put("experiments/r1/a.json", b"{\"v\":2}".to_vec())
            .await
            .unwrap();
        assert_eq!(
            s.get("experiments/r1/a.json").await.unwrap().as_deref(),
            Some(&b"{\"v\":2}"[..])
        );
        s.delete("experiments/r1/a.json").await.unwrap();
        s.delete("experiments/r1/a.json").await.unwrap();
        assert_eq!(s.get("experiments/r1/a.json").await.unwrap(), None);
        assert_eq!(
            s.list("experiments/").await.unwrap(),
            vec!["experiments/r1/b.json"]
        );
        // No temporary files or hash sidecars are listed.
        assert!(s
            .list("")
            .await
            .unwrap()
            .iter()
            .all(|k| !k.contains(".tmp")));
    }

    #[tokio::test]
    async fn a_corrupted_object_is_reported_not_returned() {
        let (d, s) = store();
        s.put("models/r/m/model.safetensors", vec![7u8; 1000])
            .await
            .unwrap();
        std::fs::write(d.path().join("models/r/m/model.safetensors"), [7u8; 999]).unwrap();
        let err = s.get("models/r/m/model.safetensors").await.unwrap_err();
        assert!(matches!(err, StoreError::Integrity { .. }), "{err}");
        assert!(err.to_string().contains("hash mismatch"), "{err}");
        // An object written by another tool (no recorded hash) reads as is.
        std::fs::create_dir_all(d.path().join("experiments/old")).unwrap();
        std::fs::write(d.path().join("experiments/old/x.json"), b"{}").unwrap();
        assert_eq!(
            s.get("experiments/old/x.json").await.unwrap().as_deref(),
            Some(&b"{}"[..])
        );
    }

    #[tokio::test]
    async fn bad_keys_are_refused_before_any_io() {
        let (d, s) = store();
        for (key, why) in [
            ("", "empty"),
            ("/abs", "start or end"),
            ("a/../b", "starts with '.'"),
            ("a//b", "empty path segment"),
            ("a/b c", "not allowed"),
            ("dir/", "start or end"),
            (".sha256/x", "starts with '.'"),
        ] {
            let err = s.put(key, b"x".to_vec()).await.unwrap_err();
            assert!(err.to_string().contains(why), "{key:?}: {err}");
            assert!(s.get(key).await.is_err(), "{key:?}");
        }
        assert!(s.list("../").await.is_err());
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn json_helpers_name_the_object_on_bad_json() {
        let (_d, s) = store();
        s.put_json("a/b.json", &serde_json::json!({"x": 1}))
            .await
            .unwrap();
        let v: Option<serde_json::Value> = s.get_json("a/b.json").await.unwrap();
        assert_eq!(v.unwrap()["x"], 1);
        s.put("a/c.json", b"not json".to_vec()).await.unwrap();
        let err = s
            .get_json::<serde_json::Value>("a/c.json")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("a/c.json"), "{err}");
        assert!(s
            .get_json::<serde_json::Value>("a/none.json")
            .await
            .unwrap()
            .is_none());
    }

    #[tokio::test]
    async fn an_unwritable_root_is_a_clear_error() {
        let (d, _) = store();
        let file = d.path().join("plain-file");
        std::fs::write(&file, b"x").unwrap();
        let s = FsStore::new(&file);
        let err = s.put("a/b.json", b"{}".to_vec()).await.unwrap_err();
        assert!(matches!(err, StoreError::Failed { .. }), "{err}");
        assert!(err.to_string().contains("plain-file"), "{err}");
    }

    #[test]
    fn open_picks_the_file_store_without_an_endpoint() {
        if std::env::var("HIPPIUS_ENDPOINT").is_ok_and(|v| !v.is_empty()) {
            return; // configured for S3 in this environment; covered by tests/store.rs
        }
        let s = open(Path::new("some-dir")).unwrap();
        assert!(s.describe().contains("some-dir"), "{}", s.describe());
    }
}
