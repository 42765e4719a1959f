//! The production pointers: `models/production-{timeframe}.json`, one per [`Timeframe`], and
//! `models/production.json`, the newest publication of any timeframe. One
//! [`ProductionPointer`] type is written here (by [`write`], from the publisher) and read here
//! (by the miner and the shadow scorer, through [`read_local`], [`resolve_local`] and
//! [`resolve`]).
//!
//! A pointer is written after every object it names, and [`mirror`] copies a bucket's
//! pointers into a local filesystem store model files first, so a reader that follows a
//! pointer never finds half a model. This module does not load models (the trainer does).

use std::path::{Path, PathBuf};

use jobs::{ProductionPointer, Timeframe};

use crate::store::records::{production_key, PRODUCTION};
use crate::store::{check_prefix, sha256_hex, Store, StoreError, StoreExt};

/// A pointer could not be read, written or mirrored.
#[derive(Debug, thiserror::Error)]
pub enum ProductionError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{at}: not a production pointer ({reason})")]
    Malformed { at: String, reason: String },
    #[error("{at} names {prefix}, which holds nothing")]
    Empty { at: String, prefix: String },
    #[error("{object}: SHA-256 {got}, but {at} records {want}")]
    WeightsMismatch {
        object: String,
        got: String,
        want: String,
        at: String,
    },
    #[error("{0} went away while it was copied")]
    Vanished(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Several(Vec<ProductionError>),
}

/// A pointer found in a local store: where its model is, the pointer, and its bytes as text
/// (to notice a new publication).
#[derive(Debug, Clone)]
pub struct LocalPointer {
    /// The model folder: `model_dir` taken under the store (an absolute path as it is).
    pub dir: PathBuf,
    pub pointer: ProductionPointer,
    pub text: String,
}

/// The store keys of the production pointers: the newest publication's, then one per
/// timeframe.
pub fn pointer_keys() -> Vec<String> {
    let mut keys = vec![PRODUCTION.to_string()];
    keys.extend(Timeframe::ALL.iter().map(|tf| production_key(*tf)));
    keys
}

/// The key of the pointer for `timeframe`, or of the newest publication for `None`.
pub fn key_for(timeframe: Option<Timeframe>) -> String {
    timeframe.map_or_else(|| PRODUCTION.to_string(), production_key)
}

/// Parses a pointer's bytes; `at` names where they came from in the error.
pub fn parse(bytes: &[u8], at: &str) -> Result<ProductionPointer, ProductionError> {
    let p: ProductionPointer =
        serde_json::from_slice(bytes).map_err(|e| ProductionError::Malformed {
            at: at.to_string(),
            reason: e.to_string(),
        })?;
    if p.model_dir.trim_matches('/').is_empty() {
        return Err(ProductionError::Malformed {
            at: at.to_string(),
            reason: "\"model_dir\" is empty".into(),
        });
    }
    Ok(p)
}

/// Writes `pointer` as its timeframe's pointer, then as the newest publication's. Call it
/// after every object the pointer names is stored.
pub async fn write(store: &dyn Store, pointer: &ProductionPointer) -> Result<(), StoreError> {
    if let Some(tf) = pointer.timeframe {
        store.put_json(&production_key(tf), pointer).await?;
    }
    store.put_json(PRODUCTION, pointer).await?;
    Ok(())
}

/// The pointer for `timeframe` (`None`: the newest publication's) in the filesystem store at
/// `store`; `Ok(None)` when nothing has been published there.
pub fn read_local(
    store: &Path,
    timeframe: Option<Timeframe>,
) -> Result<Option<LocalPointer>, ProductionError> {
    let path = store.join(key_for(timeframe));
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(ProductionError::Io {
                path: path.display().to_string(),
                source,
            })
        }
    };
    let pointer = parse(text.as_bytes(), &path.display().to_string())?;
    Ok(Some(LocalPointer {
        dir: store.join(&pointer.model_dir),
        pointer,
        text,
    }))
}

/// The model folder that serves `timeframe` from the local store: its own pointer, else the
/// newest publication's when that is of this timeframe; `Ok(None)` when neither is.
pub fn resolve_local(
    store: &Path,
    timeframe: Timeframe,
) -> Result<Option<PathBuf>, ProductionError> {
    if let Some(p) = read_local(store, Some(timeframe))? {
        return Ok(Some(p.dir));
    }
    Ok(read_local(store, None)?
        .filter(|p| p.pointer.timeframe == Some(timeframe))
        .map(|p| p.dir))
}

/// Copies the production pointers of `store` and the model objects they name into `local`,
/// laid out by key as a filesystem store. Each object's recorded SHA-256 is checked as it is
/// read ([`Store::get`]), and the weights against the pointer's `weights_sha256` as well
/// (`weights_file` names the weights within a model folder); a model's files are written
/// before its pointer, each by rename, so the local pointer never names a half-copied model.
/// A pointer whose bytes match the local copy costs one read. Returns the pointer keys that
/// changed; a pointer that cannot be mirrored is reported after the others are done and
/// leaves its old local copy.
pub async fn mirror(
    store: &dyn Store,
    local: &Path,
    weights_file: &str,
) -> Result<Vec<String>, ProductionError> {
    let (mut changed, mut errors) = (Vec::new(), Vec::new());
    for key in pointer_keys() {
        match mirror_pointer(store, local, &key, weights_file).await {
            Ok(true) => changed.push(key),
            Ok(false) => {}
            Err(e) => errors.push(e),
        }
    }
    match errors.len() {
        0 => Ok(changed),
        1 => Err(errors.remove(0)),
        _ => Err(ProductionError::Several(errors)),
    }
}

async fn mirror_pointer(
    store: &dyn Store,
    local: &Path,
    key: &str,
    weights_file: &str,
) -> Result<bool, ProductionError> {
    let Some(bytes) = store.get(key).await? else {
        return Ok(false);
    };
    let dest = local.join(key);
    if std::fs::read(&dest).ok().as_deref() == Some(&bytes[..]) {
        return Ok(false);
    }
    let at = store.location(key);
    let pointer = parse(&bytes, &at)?;
    // the pointer's own record of the weights, whatever the object's metadata says
    let weights = pointer
        .weights_sha256
        .as_deref()
        .map(|want| (weights_file, want));
    copy_model(store, local, &pointer.model_dir, weights, &at).await?;
    write_by_rename(&dest, &bytes)?;
    Ok(true)
}

/// Copies the model objects under the key prefix `model_dir` of `store` into `local`, laid out
/// by key, each by rename (each object's recorded SHA-256 checked as it is read; with
/// `weights = Some((file, sha256))`, the weights file against that hash too). `at` names what
/// asked for the model in errors.
pub async fn copy_model(
    store: &dyn Store,
    local: &Path,
    model_dir: &str,
    weights: Option<(&str, &str)>,
    at: &str,
) -> Result<(), ProductionError> {
    check_prefix(model_dir).map_err(|e| ProductionError::Malformed {
        at: at.to_string(),
        reason: format!("\"model_dir\" is not a key prefix of the store: {e}"),
    })?;
    let keys = store.list(model_dir).await?;
    if keys.is_empty() {
        return Err(ProductionError::Empty {
            at: at.to_string(),
            prefix: store.location(model_dir),
        });
    }
    for k in keys {
        let b = store
            .get(&k)
            .await?
            .ok_or_else(|| ProductionError::Vanished(store.location(&k)))?;
        if let Some((_, want)) = weights.filter(|(file, _)| k.ends_with(file)) {
            let got = sha256_hex(&b);
            if got != want {
                return Err(ProductionError::WeightsMismatch {
                    object: store.location(&k),
                    got,
                    want: want.to_string(),
                    at: at.to_string(),
                });
            }
        }
        write_by_rename(&local.join(&k), &b)?;
    }
    Ok(())
}

/// The pointer that serves `timeframe` in `store` (any backend): its own pointer, else the
/// newest publication's when that is of this timeframe; `Ok(None)` when neither is.
pub async fn resolve(
    store: &dyn Store,
    timeframe: Timeframe,
) -> Result<Option<ProductionPointer>, ProductionError> {
    for (key, own) in [(key_for(Some(timeframe)), true), (key_for(None), false)] {
        let Some(bytes) = store.get(&key).await? else {
            continue;
        };
        let p = parse(&bytes, &store.location(&key))?;
        if own || p.timeframe == Some(timeframe) {
            return Ok(Some(p));
        }
    }
    Ok(None)
}

/// Writes `bytes` to `path` through a temporary file beside it and a rename.
fn write_by_rename(path: &Path, bytes: &[u8]) -> Result<(), ProductionError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| ProductionError::Io { path, source }
    };
    let parent = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    let tmp = parent.join(format!(
        ".{}.tmp-{}",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("object"),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_local_pointer() {
        let d = std::env::temp_dir().join(format!("sc-production-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        assert!(read_local(&d, None).unwrap().is_none());
        std::fs::create_dir_all(d.join("models")).unwrap();
        std::fs::write(d.join("models/production.json"), "{").unwrap();
        assert!(read_local(&d, None).is_err());
        std::fs::write(
            d.join("models/production.json"),
            r#"{"model_dir": "/x/y", "run_id": "r"}"#,
        )
        .unwrap();
        assert_eq!(
            read_local(&d, None).unwrap().unwrap().dir,
            PathBuf::from("/x/y")
        );
        // no pointer of its own and the newest publication of unknown timeframe: nothing
        assert_eq!(resolve_local(&d, Timeframe::OneMinute).unwrap(), None);
        std::fs::write(
            d.join("models/production-1m.json"),
            r#"{"model_dir": "models/r/m/", "timeframe": "1m"}"#,
        )
        .unwrap();
        assert_eq!(
            resolve_local(&d, Timeframe::OneMinute).unwrap(),
            Some(d.join("models/r/m/"))
        );
        let _ = std::fs::remove_dir_all(&d);
    }
}
