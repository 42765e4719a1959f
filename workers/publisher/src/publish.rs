//! The built-in publisher: puts the winning checkpoint and its record in the
//! [`Store`](crate::store::Store) (a directory, or an S3 bucket when
//! `HIPPIUS_ENDPOINT` is set) as a candidate, moves the production pointers (the newest
//! publication, which only `mine --model latest` serves; the default miner serves the
//! champions of [`crate::champions`], which a publication never changes), and — when
//! asked — publishes it to the Hugging Face Hub. The pipeline's publish stage
//! and `synth-city publish` both call [`publish_run`]. The checkpoint comes from the
//! record's artifact (fetched into the worker's cache, [`crate::artifacts`]), so any machine
//! sharing the store can publish what another trained.
//!
//! Order (the seed's key layout, see `store::records`): the checkpoint files
//! (`models/{run_id}/{name}/model.safetensors`, `spec.json`, `state.json`),
//! then the model's manifest `record.json` (record, file hashes, data ranges),
//! then `pipeline_runs/{run_id}/comparison.json` and `summary.json`, and the
//! pointers `pipeline_runs/latest.json`, `models/production-{timeframe}.json` and
//! `models/production.json` last, so
//! a reader that follows a pointer never finds half a publication. Each object
//! is itself whole or absent. Publishing a run twice rewrites the same keys
//! with the same content: no duplicate.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::artifacts::{ArtifactCache, ArtifactError};
use crate::store::hf::{self, HfClient, HfError, HfPublication};
use crate::store::records::{self, model_prefix, LATEST, PRODUCTION};
use crate::store::safe_name;
use crate::store::{ObjectInfo, Store, StoreError, StoreExt};
use trainer::experiments::ExperimentRecord;
use trainer::zoo::train::{SPEC_FILE, STATE_FILE, WEIGHTS_FILE};

/// Where a publication went: store keys (the same on every machine that shares the store).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Published {
    /// The model's key prefix, `models/<run>/<name>/`.
    pub model_dir: String,
    /// The run summary's key.
    pub summary: String,
    /// The production pointer's key.
    pub production: String,
    /// The objects written for the model, with their hashes.
    #[serde(default)]
    pub files: Vec<ObjectInfo>,
    /// The Hub publication, when there was one.
    #[serde(default)]
    pub hf: Option<HfPublication>,
}

pub use crate::store::records::Manifest;

/// A publication failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PublishError {
    #[error("publish: {0}")]
    Input(String),
    #[error("publish: {0}")]
    Store(#[from] StoreError),
    #[error("publish to the Hugging Face Hub: {0}")]
    Hub(#[from] HfError),
    #[error("publish: the checkpoint: {0}")]
    Artifact(#[from] ArtifactError),
}

/// The data the model was trained and validated on, per asset (best effort:
/// an asset whose bars cannot be read is left out).
pub fn data_ranges(rec: &ExperimentRecord, data_dir: &Path) -> Value {
    let utc = |t: i64| {
        chrono::DateTime::from_timestamp(t, 0)
            .map(|d| d.format("%Y-%m-%d %H:%M").to_string())
            .unwrap_or_else(|| t.to_string())
    };
    let mut rows = Vec::new();
    for asset in &rec.spec.data.assets {
        let Ok(path) = sn50::data::asset_file(data_dir, asset, rec.spec.data.timeframe) else {
            continue;
        };
        let Ok(bars) = sn50::data::Bars::load(&path) else {
            continue;
        };
        let n = bars.timestamps.len();
        if n == 0 {
            continue;
        }
        let split = ((n as f64) * (1.0 - rec.spec.data.val_fraction)).floor() as usize;
        rows.push(json!({
            "asset": asset, "bars": n,
            "first_utc": utc(bars.timestamps[0]), "last_utc": utc(bars.timestamps[n - 1]),
            "validation_from_utc": utc(bars.timestamps[split.min(n - 1)]),
        }));
    }
    Value::Array(rows)
}

/// Publishes `best` of run `run_id` with the run's `summary` to `store`, copying the
/// checkpoint from its artifact (through `cache`). `data_dir`, when given, is read for the
/// data ranges in the manifest.
pub async fn publish(
    store: &dyn Store,
    cache: &ArtifactCache,
    run_id: &str,
    best: &ExperimentRecord,
    summary: &Value,
    data_dir: Option<&Path>,
) -> Result<Published, PublishError> {
    records::check_run_id(run_id)?;
    let ckpt = crate::artifacts::local_checkpoint(store, cache, best).await?;
    let ckpt = ckpt.as_path();
    if !ckpt.join(WEIGHTS_FILE).is_file() {
        return Err(PublishError::Input(format!(
            "{} has no {WEIGHTS_FILE}: not a trained checkpoint",
            ckpt.display()
        )));
    }
    let name = safe_name(&best.name);
    let prefix = model_prefix(run_id, &name);
    let mut files = Vec::new();
    for file in [WEIGHTS_FILE, SPEC_FILE, STATE_FILE] {
        let path = ckpt.join(file);
        if path.is_file() {
            files.push(store.put_file(&format!("{prefix}{file}"), &path).await?);
        }
    }
    if !files.iter().any(|f| f.key.ends_with(SPEC_FILE)) {
        files.push(
            store
                .put_json(&format!("{prefix}{SPEC_FILE}"), &best.spec)
                .await?,
        );
    }
    let data = data_dir
        .map(|d| data_ranges(best, d))
        .unwrap_or(Value::Null);
    let manifest = Manifest {
        run_id: run_id.to_string(),
        record: best.clone(),
        files: files.clone(),
        data,
    };
    store
        .put_json(&format!("{prefix}record.json"), &manifest)
        .await?;
    records::save_experiments(store, run_id, std::slice::from_ref(best)).await?;
    records::save_run_summary(store, run_id, summary).await?;
    // The pointers, last.
    store
        .put_json(
            LATEST,
            &json!({"run_id": run_id, "timestamp": trainer::experiments::unix_now()}),
        )
        .await?;
    let weights = files
        .iter()
        .find(|f| f.key.ends_with(WEIGHTS_FILE))
        .map(|f| f.sha256.clone());
    // the model's own timeframe pointer (the miner serves each prompt from the model of its
    // step size), then the newest publication's
    let pointer = jobs::ProductionPointer {
        run_id: run_id.to_string(),
        name: best.name.clone(),
        model_dir: prefix.clone(),
        location: store.location(&prefix),
        crps: best.crps,
        gbm_crps: best.gbm_crps,
        weights_sha256: weights,
        timeframe: Some(best.spec.data.timeframe),
    };
    crate::production::write(store, &pointer).await?;
    Ok(Published {
        model_dir: prefix,
        summary: records::summary_key(run_id),
        production: PRODUCTION.to_string(),
        files,
        hf: None,
    })
}

/// [`publish`], then the Hub when `hf` is given (from the store's copy, so
/// what the Hub gets is what the store verified). The metrics history gets
/// a `publish` line when `metrics` is given.
#[allow(clippy::too_many_arguments)]
pub async fn publish_run(
    store: &dyn Store,
    cache: &ArtifactCache,
    run_id: &str,
    best: &ExperimentRecord,
    summary: &Value,
    data_dir: Option<&Path>,
    hf: Option<&HfClient>,
    metrics: Option<&Path>,
) -> Result<Published, PublishError> {
    let mut published = publish(store, cache, run_id, best, summary, data_dir).await?;
    if let Some(client) = hf {
        published.hf = Some(hf::publish_run(client, store, run_id).await?);
    }
    if let Some(path) = metrics {
        let line = json!({"event": "publish", "ts": trainer::experiments::unix_now(), "run_id": run_id,
            "name": best.name, "crps": best.crps, "gbm_crps": best.gbm_crps,
            "ratio": best.crps_ratio(), "location": published.model_dir,
            "hf_commit": published.hf.as_ref().and_then(|h| h.outcome.commit_oid.clone())});
        if let Err(e) = records::append_lines(path, std::slice::from_ref(&line)) {
            tracing::warn!(path = %path.display(), error = %e, "cannot append to the metrics history");
        }
        crate::store::wandb::log_if_configured(run_id, None, &[line]).await;
    }
    Ok(published)
}

impl PublishError {
    /// Worth retrying later (the store or the Hub did not answer).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            PublishError::Store(StoreError::Unavailable { .. })
                | PublishError::Artifact(ArtifactError::Store(StoreError::Unavailable { .. }))
                | PublishError::Hub(HfError::Unavailable { .. })
                | PublishError::Hub(HfError::Store(StoreError::Unavailable { .. }))
        )
    }
}

/// What the pipeline's publish stage and `synth-city publish` run, on a worker's directories:
/// opens the configured store (`store_dir`, or the bucket when `HIPPIUS_ENDPOINT` is set),
/// publishes there (the checkpoint through the cache under `work_dir`, the data ranges from
/// `data_dir`), then to the Hub when `hub` is true or the environment has `HF_TOKEN` and
/// `HF_REPO_ID` (`hub` makes them required), and appends to the metrics history in
/// `store_dir`.
pub async fn publish_configured(
    dirs: &trainer::WorkerDirs,
    run_id: &str,
    best: &ExperimentRecord,
    summary: &Value,
    hub: bool,
) -> Result<Published, PublishError> {
    let store_dir = dirs.store_dir.as_path();
    let store = crate::store::open(store_dir)?;
    let cfg = if hub {
        Some(hf::HfConfig::require_from_env()?)
    } else {
        hf::HfConfig::from_env()?
    };
    let client = cfg.map(HfClient::new).transpose()?;
    let metrics = records::metrics_path(store_dir);
    publish_run(
        &*store,
        &ArtifactCache::of(dirs),
        run_id,
        best,
        summary,
        Some(&dirs.data_dir),
        client.as_ref(),
        Some(&metrics),
    )
    .await
}
