//! The built-in publisher: copies the winning checkpoint and its record into a
//! filesystem store, and marks it as the production model.
//!
//! Layout (the seed's key layout, as files): `models/{run_id}/{name}/` (the
//! checkpoint files and `record.json`), `pipeline_runs/{run_id}/summary.json`,
//! `pipeline_runs/latest.json`, and `models/production.json` pointing at the
//! model to serve. Each file is written to a temporary name and renamed, and
//! the pointers last, so a reader never sees half a publication. Publishing a
//! run twice rewrites the same files: no duplicate.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ExperimentRecord;

/// Where a publication went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Published {
    pub model_dir: String,
    pub summary: String,
    pub production: String,
}

fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// Publishes `best` of run `run_id` with the run's `summary` under `store`.
pub fn publish(
    store: &Path,
    run_id: &str,
    best: &ExperimentRecord,
    summary: &serde_json::Value,
) -> std::io::Result<Published> {
    let ckpt = best.checkpoint.as_deref().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "the best experiment has no checkpoint",
        )
    })?;
    let model_dir: PathBuf = store.join("models").join(run_id).join(&best.fingerprint);
    std::fs::create_dir_all(&model_dir)?;
    for entry in std::fs::read_dir(ckpt)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            let to = model_dir.join(entry.file_name());
            let tmp = to.with_extension("part");
            std::fs::copy(entry.path(), &tmp)?;
            std::fs::rename(&tmp, &to)?;
        }
    }
    write_atomic(
        &model_dir.join("record.json"),
        &serde_json::to_string_pretty(best).expect("records serialise"),
    )?;
    let summary_path = store
        .join("pipeline_runs")
        .join(run_id)
        .join("summary.json");
    write_atomic(
        &summary_path,
        &serde_json::to_string_pretty(summary).expect("json"),
    )?;
    write_atomic(
        &store.join("pipeline_runs").join("latest.json"),
        &serde_json::json!({"run_id": run_id}).to_string(),
    )?;
    let production = store.join("models").join("production.json");
    write_atomic(
        &production,
        &serde_json::json!({"run_id": run_id, "model_dir": model_dir, "crps": best.crps,
                            "gbm_crps": best.gbm_crps, "name": best.name})
        .to_string(),
    )?;
    Ok(Published {
        model_dir: model_dir.display().to_string(),
        summary: summary_path.display().to_string(),
        production: production.display().to_string(),
    })
}
