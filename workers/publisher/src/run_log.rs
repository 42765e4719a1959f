//! A run's record outside Redis: after training, its experiments go to the store
//! (`experiments/`), the metrics history (`metrics.jsonl`) and, when `WANDB_API_KEY` is set,
//! Weights & Biases; at its end, its summary and comparison go to the store.
//!
//! Everything here is best effort: a failure is logged, never raised, because the run's
//! records are in Redis already. The key layout itself is [`crate::store::records`].

use std::path::Path;

use serde_json::Value;
use trainer::experiments::ExperimentRecord;

use crate::store::records::{
    append_lines, metrics_lines, metrics_path, save_experiments, save_run_summary,
};

/// After training: saves the run's records to the store and appends them to
/// the metrics history. Failures are logged, not raised (the records are in
/// Redis already).
pub async fn record_run(store_dir: &Path, run_id: &str, recs: &[ExperimentRecord]) {
    let mut problems = Vec::new();
    match crate::store::open(store_dir) {
        Ok(store) => {
            if let Err(e) = save_experiments(&*store, run_id, recs).await {
                problems.push(format!("store: {e}"));
            }
        }
        Err(e) => problems.push(format!("store: {e}")),
    }
    let lines = metrics_lines(run_id, recs);
    if let Err(e) = append_lines(&metrics_path(store_dir), &lines) {
        problems.push(format!("metrics history: {e}"));
    }
    if !problems.is_empty() {
        let msg = problems.join("; ");
        tracing::warn!(run_id, error = %msg, "experiments not recorded outside Redis");
    }
    // The same rows to Weights & Biases when WANDB_API_KEY is set (best effort).
    let specs = recs.iter().map(|r| {
        (
            r.name.as_str(),
            serde_json::to_value(&r.spec).unwrap_or(Value::Null),
        )
    });
    crate::store::wandb::log_if_configured(
        run_id,
        Some(crate::store::wandb::config_of(specs)),
        &lines,
    )
    .await;
}

/// At the end of a run: saves its summary and comparison to the store
/// (logged, not raised, on failure).
pub async fn record_summary(store_dir: &Path, run_id: &str, summary: &Value) {
    let res = match crate::store::open(store_dir) {
        Ok(store) => save_run_summary(&*store, run_id, summary).await,
        Err(e) => Err(e),
    };
    if let Err(e) = res {
        tracing::warn!(run_id, error = %e, "cannot save the run summary to the store");
    }
}
