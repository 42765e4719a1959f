//! Market data as datasets in the store (see `jobs::dataset`): [`publish`] puts a data
//! directory's bar files in the store as a content-addressed artifact with a
//! [`DatasetManifest`] (asset, timeframe, rows, range, SHA-256 per file) and moves the
//! `latest` pointer to it; [`resolve`] reads a manifest by id (or `latest`); [`fetch`] brings
//! a dataset's files into a worker's artifact cache, verified, and answers the folder, which
//! is then a data directory like any other.
//!
//! Publishing the same files again writes no file twice and gives the same id (only the
//! `latest` pointer moves). The manifest's `created_at` is the first publication's.
//!
//! What it does not do: download bars (`sn50::download` does, and the `data-download` job
//! publishes what it merged), choose a run's dataset (the pipeline pins one), or delete
//! datasets (they are immutable and small; nothing collects them yet).

use std::path::{Path, PathBuf};

use jobs::dataset::{
    dataset_id, dataset_key, DatasetFile, DatasetManifest, DATASET_PREFIX, LATEST,
    LATEST_DATASET_KEY,
};
use jobs::Timeframe;
use serde::{Deserialize, Serialize};

use crate::artifacts::{put_dir, ArtifactCache, ArtifactError};
use crate::store::{sha256_hex, Store, StoreError, StoreExt};

/// The command that makes a dataset, for messages.
pub const PUBLISH_HINT: &str = "synth-city data publish --data-dir DIR [--assets A,B] [--timeframe 5m|1m] (or a data-download job, which publishes what it merged)";

/// A dataset could not be published, found or fetched. Every variant names the dataset (or
/// the folder) and what to do.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("dataset {id} is not in {store}: publish the bars with `{PUBLISH_HINT}` and pin the id it prints, or pass `latest`")]
    Missing { id: String, store: String },
    #[error(
        "no dataset in {store} yet, so `latest` names none: publish one with `{PUBLISH_HINT}`"
    )]
    NoLatest { store: String },
    #[error("dataset {id} has no {timeframe} bars for {}: publish a dataset that has them (`{PUBLISH_HINT}`) and pin its id", .assets.join(", "))]
    Lacks {
        id: String,
        timeframe: String,
        assets: Vec<String>,
    },
    #[error("dataset {id}: {reason}")]
    Bad { id: String, reason: String },
    #[error(transparent)]
    Data(#[from] sn50::data::DataError),
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl DatasetError {
    /// Worth trying again later (the store did not answer).
    pub fn is_transient(&self) -> bool {
        match self {
            DatasetError::Store(e) => matches!(e, StoreError::Unavailable { .. }),
            DatasetError::Artifact(e) => e.is_transient(),
            _ => false,
        }
    }
}

/// The `latest` pointer's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct LatestPointer {
    id: String,
}

/// Which files of a data directory [`publish`] takes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selection {
    /// These SN50 assets (each must have a file for every timeframe); all files when empty.
    pub assets: Vec<String>,
    /// These timeframes; both when empty.
    pub timeframes: Vec<Timeframe>,
}

/// The bar files of `dir` that `sel` picks: (asset, timeframe, path), sorted by file name.
fn select(dir: &Path, sel: &Selection) -> Result<Vec<(String, Timeframe, PathBuf)>, DatasetError> {
    let tfs: Vec<Timeframe> = if sel.timeframes.is_empty() {
        Timeframe::ALL.to_vec()
    } else {
        sel.timeframes.clone()
    };
    let mut out = Vec::new();
    if sel.assets.is_empty() {
        for info in sn50::data::data_info(dir)? {
            if let Some(tf) = Timeframe::from_step_secs(info.bar_seconds) {
                if tfs.contains(&tf) {
                    out.push((info.asset, tf, dir.join(info.file)));
                }
            }
        }
    } else {
        for tf in &tfs {
            sn50::data::check_files(dir, &sel.assets, *tf)?;
            for a in &sel.assets {
                out.push((a.clone(), *tf, sn50::data::asset_file(dir, a, *tf)?));
            }
        }
    }
    if out.is_empty() {
        return Err(DatasetError::Bad {
            id: dir.display().to_string(),
            reason: "the folder holds no ASSET_5m.csv / ASSET_1m.csv bar files to publish".into(),
        });
    }
    out.sort_by(|a, b| a.2.cmp(&b.2));
    out.dedup_by(|a, b| a.2 == b.2);
    Ok(out)
}

/// Describes one bar file: its rows, range and content hash.
fn describe(asset: &str, tf: Timeframe, path: &Path) -> Result<DatasetFile, DatasetError> {
    let bytes = std::fs::read(path).map_err(|source| sn50::data::DataError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let bars = sn50::data::Bars::load(path)?;
    Ok(DatasetFile {
        file: path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned(),
        asset: asset.to_string(),
        timeframe: tf.as_str().to_string(),
        rows: bars.len() as u64,
        first: bars.timestamps.first().copied().unwrap_or(0),
        last: bars.timestamps.last().copied().unwrap_or(0),
        sha256: sha256_hex(&bytes),
        size: bytes.len() as u64,
    })
}

/// Puts the bar files of `dir` that `sel` picks in `store` as a dataset, moves `latest` to
/// it and answers its manifest. The same files give the same id.
pub async fn publish(
    store: &dyn Store,
    dir: &Path,
    sel: &Selection,
) -> Result<DatasetManifest, DatasetError> {
    let (dir2, sel2) = (dir.to_path_buf(), sel.clone());
    let files = tokio::task::spawn_blocking(move || {
        select(&dir2, &sel2)?
            .iter()
            .map(|(a, tf, p)| describe(a, *tf, p))
            .collect::<Result<Vec<_>, _>>()
    })
    .await
    .map_err(|e| DatasetError::Bad {
        id: dir.display().to_string(),
        reason: format!("reading the bar files failed: {e}"),
    })??;
    let names: Vec<&str> = files.iter().map(|f| f.file.as_str()).collect();
    let artifact = put_dir(store, dir, &names).await?;
    let id = dataset_id(&artifact);
    let key = dataset_key(&id);
    let manifest = match store.get_json::<DatasetManifest>(&key).await? {
        Some(m) if m.artifact == artifact => m,
        _ => {
            let m = DatasetManifest {
                version: DatasetManifest::VERSION,
                id: id.clone(),
                artifact,
                files,
                created_at: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs() as i64)
                    .unwrap_or(0),
            };
            store.put_json(&key, &m).await?;
            m
        }
    };
    // the pointer last: a reader that follows it finds the whole dataset
    store
        .put_json(LATEST_DATASET_KEY, &LatestPointer { id: id.clone() })
        .await?;
    Ok(manifest)
}

/// The manifest of dataset `id` (or of the `latest` one).
pub async fn resolve(store: &dyn Store, id: &str) -> Result<DatasetManifest, DatasetError> {
    let id = if id == LATEST {
        store
            .get_json::<LatestPointer>(LATEST_DATASET_KEY)
            .await?
            .ok_or_else(|| DatasetError::NoLatest {
                store: store.describe(),
            })?
            .id
    } else {
        id.to_string()
    };
    jobs::dataset::check_dataset_id(&id).map_err(|e| DatasetError::Bad {
        id: id.clone(),
        reason: e.to_string(),
    })?;
    let m = store
        .get_json::<DatasetManifest>(&dataset_key(&id))
        .await?
        .ok_or_else(|| DatasetError::Missing {
            id: id.clone(),
            store: store.describe(),
        })?;
    if m.version != DatasetManifest::VERSION || m.id != id || dataset_id(&m.artifact) != id {
        return Err(DatasetError::Bad {
            id,
            reason: format!(
                "the manifest (version {}, id {}) is not one this build reads or does not match its key",
                m.version, m.id
            ),
        });
    }
    Ok(m)
}

/// Dataset `id` (or `latest`) in `cache`, fetched from `store` when it is not there: the
/// folder (a data directory) and the manifest.
pub async fn fetch(
    store: &dyn Store,
    cache: &ArtifactCache,
    id: &str,
) -> Result<(PathBuf, DatasetManifest), DatasetError> {
    let m = resolve(store, id).await?;
    let dir = cache.fetch(store, &m.artifact).await?;
    Ok((dir, m))
}

/// Every dataset in `store`, oldest first.
pub async fn list(store: &dyn Store) -> Result<Vec<DatasetManifest>, DatasetError> {
    let mut out = Vec::new();
    for key in store.list(DATASET_PREFIX).await? {
        if key == LATEST_DATASET_KEY || !key.ends_with(".json") {
            continue;
        }
        if let Some(m) = store.get_json::<DatasetManifest>(&key).await? {
            out.push(m);
        }
    }
    out.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    Ok(out)
}

/// The id `latest` names now, if any.
pub async fn latest_id(store: &dyn Store) -> Result<Option<String>, DatasetError> {
    Ok(store
        .get_json::<LatestPointer>(LATEST_DATASET_KEY)
        .await?
        .map(|p| p.id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::FsStore;

    fn bars(dir: &Path, name: &str, n: usize, start: i64, step: i64) {
        let mut s = String::from("timestamp,open,high,low,close,volume\n");
        for i in 0..n {
            let t = start + i as i64 * step;
            let p = 100.0 + (i % 7) as f64;
            s.push_str(&format!("{t},{p},{},{},{p},1\n", p + 1.0, p - 1.0));
        }
        std::fs::write(dir.join(name), s).unwrap();
    }

    #[tokio::test]
    async fn publish_is_content_addressed_resolves_and_fetches_verified() {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        bars(&data, "BTC_5m.csv", 50, 1_700_000_100, 300);
        bars(&data, "ETH_5m.csv", 40, 1_700_000_100, 300);
        bars(&data, "BTC_1m.csv", 30, 1_700_000_100, 60);
        let store = FsStore::new(root.path().join("store"));

        let sel = Selection {
            assets: vec!["BTC".into(), "ETH".into()],
            timeframes: vec![Timeframe::FiveMinutes],
        };
        let a = publish(&store, &data, &sel).await.unwrap();
        assert_eq!(a.files.len(), 2);
        let btc = a.file_for("BTC", "5m").unwrap();
        assert_eq!((btc.rows, btc.first), (50, 1_700_000_100));
        assert_eq!(btc.last, 1_700_000_100 + 49 * 300);
        assert!(a.missing(&["BTC".into(), "SOL".into()], "5m") == vec!["SOL"]);
        // again: the same id, the first publication's time
        let b = publish(&store, &data, &sel).await.unwrap();
        assert_eq!((b.id.clone(), b.created_at), (a.id.clone(), a.created_at));
        // everything in the folder: another dataset, now `latest`
        let all = publish(&store, &data, &Selection::default()).await.unwrap();
        assert_ne!(all.id, a.id);
        assert_eq!(all.files.len(), 3);
        assert_eq!(resolve(&store, "latest").await.unwrap().id, all.id);
        assert_eq!(list(&store).await.unwrap().len(), 2);

        // another machine's cache gets the same bytes
        let cache = ArtifactCache::new(root.path().join("cache"), 1 << 30);
        let (dir, m) = fetch(&store, &cache, &a.id).await.unwrap();
        assert_eq!(m.id, a.id);
        assert_eq!(
            std::fs::read(dir.join("BTC_5m.csv")).unwrap(),
            std::fs::read(data.join("BTC_5m.csv")).unwrap()
        );
        assert!(!dir.join("BTC_1m.csv").exists());

        // a changed file is a new dataset; an unknown id says how to make one
        bars(&data, "BTC_5m.csv", 51, 1_700_000_100, 300);
        let c = publish(&store, &data, &sel).await.unwrap();
        assert_ne!(c.id, a.id);
        let e = resolve(&store, "ds-0000000000000000").await.unwrap_err();
        assert!(matches!(e, DatasetError::Missing { .. }));
        assert!(e.to_string().contains("synth-city data publish"), "{e}");
        // an asset with no file is the one missing-data message
        let e = publish(
            &store,
            &data,
            &Selection {
                assets: vec!["SOL".into()],
                timeframes: vec![],
            },
        )
        .await
        .unwrap_err();
        assert!(e.to_string().contains("SOL"), "{e}");
    }

    #[tokio::test]
    async fn latest_in_an_empty_store_says_how_to_publish() {
        let root = tempfile::tempdir().unwrap();
        let store = FsStore::new(root.path().join("store"));
        let e = resolve(&store, "latest").await.unwrap_err();
        assert!(matches!(e, DatasetError::NoLatest { .. }), "{e}");
        assert!(latest_id(&store).await.unwrap().is_none());
    }
}
