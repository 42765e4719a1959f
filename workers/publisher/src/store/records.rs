//! The seed's key layout over a [`Store`], and what is read back from it:
//!
//! | key | content |
//! |---|---|
//! | `experiments/{run_id}/{name}-{fingerprint}.json` | `{run_id, name, timestamp, experiment, result, record}` |
//! | `pipeline_runs/{run_id}/summary.json` | the run's summary |
//! | `pipeline_runs/{run_id}/comparison.json` | `{run_id, timestamp, comparison}` (experiments ranked) |
//! | `pipeline_runs/latest.json` | `{run_id, timestamp}` (a pointer, written last) |
//! | `models/{run_id}/{name}/model.safetensors`, `spec.json`, `state.json` | the checkpoint |
//! | `models/{run_id}/{name}/record.json` | the model's manifest: record and file hashes (written after the files) |
//! | `models/production-{timeframe}.json` | the model to serve for that timeframe (a pointer, written last) |
//! | `models/production.json` | the newest published model (a pointer, written last) |
//! | `published/hf/{run_id}.json` | where the run went on the Hugging Face Hub |
//! | `shared/results-{run_id}.json`, `shared/latest.json` | a run's comparison as shared with other miners ([`super::shared`]) |
//! | `experiments/shared-{source}-{run_id}/…` | another miner's shared rows, ingested (each object has `source`) |
//!
//! [`load_history`] is the seed's `load_hippius_history`: every experiment
//! under `experiments/` (at most 2000 objects), best CRPS first, so the
//! planner on a fresh machine pointed at the same bucket continues the
//! research. Objects the seed's Python wrote (`result.crps` or
//! `result.metrics.crps`, no `record`) are listed by [`experiment_rows`] but
//! cannot seed the planner (their specs are not this build's).
//!
//! The metrics history is a local JSON-lines file (`metrics.jsonl` in the
//! store directory), one line per experiment and per publication; with
//! `WANDB_API_KEY` set the same lines also go to Weights & Biases ([`super::wandb`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{ObjectInfo, Store, StoreError, StoreExt};
use crate::store::safe_name;
use trainer::experiments::{unix_now, ExperimentRecord};

/// The pointer to the latest run.
pub const LATEST: &str = "pipeline_runs/latest.json";
/// The pointer to the newest published model (of any timeframe).
pub const PRODUCTION: &str = "models/production.json";

/// The pointer to the model to serve for one timeframe (`models/production-5m.json`).
pub fn production_key(timeframe: jobs::Timeframe) -> String {
    format!("models/production-{timeframe}.json")
}
/// `models/{run_id}/{name}/record.json`: what a published model is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub run_id: String,
    pub record: ExperimentRecord,
    /// The checkpoint objects (not the manifest itself).
    pub files: Vec<ObjectInfo>,
    /// Per asset: first and last bar, bar count, where validation starts.
    #[serde(default)]
    pub data: Value,
}

/// The seed lists at most this many experiment objects.
pub const HISTORY_SCAN_LIMIT: usize = 2000;

pub fn experiment_key(run_id: &str, rec: &ExperimentRecord) -> String {
    format!(
        "experiments/{}/{}-{}.json",
        safe_name(run_id),
        safe_name(&rec.name),
        safe_name(&rec.fingerprint)
    )
}

pub fn summary_key(run_id: &str) -> String {
    format!("pipeline_runs/{}/summary.json", safe_name(run_id))
}

pub fn comparison_key(run_id: &str) -> String {
    format!("pipeline_runs/{}/comparison.json", safe_name(run_id))
}

/// `models/{run_id}/{name}/` (with the slash).
pub fn model_prefix(run_id: &str, name: &str) -> String {
    format!("models/{}/{}/", safe_name(run_id), safe_name(name))
}

pub fn hf_published_key(run_id: &str) -> String {
    format!("published/hf/{}.json", safe_name(run_id))
}

/// Checks a run id given by a person: what the store's keys can hold.
pub fn check_run_id(run_id: &str) -> Result<(), StoreError> {
    if run_id.is_empty() || safe_name(run_id) != run_id || run_id.len() > 64 {
        return Err(StoreError::InvalidKey {
            key: run_id.to_string(),
            reason: "a run id is 1-64 letters, digits, '-', '_', '.' or '+'".into(),
        });
    }
    Ok(())
}

/// One experiment object: the seed's fields plus the full record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredExperiment {
    pub run_id: String,
    pub name: String,
    /// Unix seconds.
    pub timestamp: f64,
    /// The spec (the seed: the experiment config).
    pub experiment: Value,
    /// `{crps, gbm_crps, ratio, status, param_count, epochs, error, ...}`.
    pub result: Value,
    /// This build's record, when this build wrote it.
    #[serde(default)]
    pub record: Option<ExperimentRecord>,
    /// The miner whose shared results this came from (`results ingest`);
    /// `None` for our own experiments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl StoredExperiment {
    pub fn from_record(run_id: &str, rec: &ExperimentRecord) -> Self {
        StoredExperiment {
            run_id: run_id.to_string(),
            name: rec.name.clone(),
            timestamp: rec.recorded_at as f64,
            experiment: serde_json::to_value(&rec.spec).unwrap_or(Value::Null),
            result: json!({
                "crps": rec.crps, "gbm_crps": rec.gbm_crps, "ratio": rec.crps_ratio(),
                "status": rec.status, "param_count": rec.param_count, "epochs": rec.epochs,
                "diverged": rec.diverged, "error": rec.error,
                "training_time_s": rec.training_time_s, "fingerprint": rec.fingerprint,
            }),
            record: Some(rec.clone()),
            source: None,
        }
    }
}

/// Saves experiment records under `experiments/{run_id}/`; returns how many.
/// Records without a run id are saved under `run_id` given.
pub async fn save_experiments(
    store: &dyn Store,
    run_id: &str,
    recs: &[ExperimentRecord],
) -> Result<usize, StoreError> {
    check_run_id(run_id)?;
    for r in recs {
        store
            .put_json(
                &experiment_key(run_id, r),
                &StoredExperiment::from_record(run_id, r),
            )
            .await?;
    }
    Ok(recs.len())
}

/// What [`load_history`] found.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// Records this build can plan from, best CRPS first.
    pub records: Vec<ExperimentRecord>,
    /// Objects that are not this build's records (the seed's, or unreadable).
    pub skipped: usize,
}

async fn fetch_all(
    store: Arc<dyn Store>,
    keys: Vec<String>,
) -> Vec<(String, Result<Option<Vec<u8>>, StoreError>)> {
    let sem = Arc::new(tokio::sync::Semaphore::new(16));
    let mut set = tokio::task::JoinSet::new();
    for (i, k) in keys.into_iter().enumerate() {
        let (store, sem) = (store.clone(), sem.clone());
        set.spawn(async move {
            let _p = sem.acquire_owned().await;
            let r = store.get(&k).await;
            (i, k, r)
        });
    }
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        if let Ok(v) = r {
            out.push(v);
        }
    }
    out.sort_by_key(|(i, _, _)| *i);
    out.into_iter().map(|(_, k, r)| (k, r)).collect()
}

/// The seed's `load_hippius_history`: every experiment under `experiments/`
/// (the first [`HISTORY_SCAN_LIMIT`] keys), this build's records best CRPS
/// first, at most `limit`. A store that cannot be listed is an error; a single
/// unreadable object is skipped with a warning.
pub async fn load_history(store: Arc<dyn Store>, limit: usize) -> Result<History, StoreError> {
    let mut keys = store.list("experiments/").await?;
    keys.retain(|k| k.ends_with(".json"));
    keys.truncate(HISTORY_SCAN_LIMIT);
    let mut h = History::default();
    for (k, r) in fetch_all(store, keys).await {
        let parsed = match r {
            Ok(Some(b)) => serde_json::from_slice::<StoredExperiment>(&b)
                .ok()
                .and_then(|s| s.record)
                .or_else(|| serde_json::from_slice::<ExperimentRecord>(&b).ok()),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(key = %k, error = %e, "skipping an unreadable experiment");
                None
            }
        };
        match parsed {
            Some(rec) => h.records.push(rec),
            None => h.skipped += 1,
        }
    }
    h.records.sort_by(|a, b| {
        a.crps
            .unwrap_or(f64::INFINITY)
            .total_cmp(&b.crps.unwrap_or(f64::INFINITY))
    });
    h.records.truncate(limit);
    Ok(h)
}

/// One experiment as `synth-city history experiments` shows it; read from
/// this build's objects and the seed's alike.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExperimentRow {
    pub key: String,
    pub run_id: String,
    pub name: String,
    pub crps: Option<f64>,
    pub gbm_crps: Option<f64>,
    /// CRPS / GBM CRPS (< 1 beats the baseline).
    pub ratio: Option<f64>,
    pub status: Option<String>,
    pub param_count: Option<u64>,
    /// The miner it was ingested from; absent for our own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

fn row_from(key: &str, v: &Value) -> ExperimentRow {
    let res = &v["result"];
    let f = |x: &Value| x.as_f64().filter(|c| c.is_finite());
    let crps = f(&res["crps"]).or_else(|| f(&res["metrics"]["crps"]));
    let gbm = f(&res["gbm_crps"]).or_else(|| f(&res["metrics"]["gbm_crps"]));
    ExperimentRow {
        key: key.to_string(),
        run_id: v["run_id"].as_str().unwrap_or("").to_string(),
        name: v["name"].as_str().unwrap_or("").to_string(),
        crps,
        gbm_crps: gbm,
        ratio: match (crps, gbm) {
            (Some(c), Some(g)) if g > 0.0 => Some(c / g),
            _ => None,
        },
        status: res["status"].as_str().map(str::to_string),
        param_count: res["param_count"].as_u64(),
        source: v["source"].as_str().map(str::to_string),
    }
}

/// Every experiment object under `experiments/` (or `experiments/{run_id}/`),
/// ranked by CRPS relative to GBM (then by CRPS; unscored last).
pub async fn experiment_rows(
    store: Arc<dyn Store>,
    run_id: Option<&str>,
) -> Result<Vec<ExperimentRow>, StoreError> {
    let prefix = match run_id {
        Some(r) => {
            check_run_id(r)?;
            format!("experiments/{r}/")
        }
        None => "experiments/".to_string(),
    };
    let mut keys = store.list(&prefix).await?;
    keys.retain(|k| k.ends_with(".json") && !k.ends_with("/_init.json"));
    keys.truncate(HISTORY_SCAN_LIMIT);
    let mut rows = Vec::new();
    for (k, r) in fetch_all(store, keys).await {
        match r {
            Ok(Some(b)) => match serde_json::from_slice::<Value>(&b) {
                Ok(v) => rows.push(row_from(&k, &v)),
                Err(e) => {
                    tracing::warn!(key = %k, error = %e, "skipping an experiment that is not JSON")
                }
            },
            Ok(None) => {}
            Err(e) => tracing::warn!(key = %k, error = %e, "skipping an unreadable experiment"),
        }
    }
    let inf = f64::INFINITY;
    rows.sort_by(|a, b| {
        a.ratio
            .unwrap_or(inf)
            .total_cmp(&b.ratio.unwrap_or(inf))
            .then(a.crps.unwrap_or(inf).total_cmp(&b.crps.unwrap_or(inf)))
    });
    Ok(rows)
}

/// A run as `synth-city history runs` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunRow {
    pub run_id: String,
    pub success: Option<bool>,
    pub best_experiment: Option<String>,
    pub best_crps: Option<f64>,
    pub gbm_crps: Option<f64>,
    pub experiments: usize,
    pub latest: bool,
}

/// Every run with a summary under `pipeline_runs/`, newest pointer first.
pub async fn run_rows(store: Arc<dyn Store>) -> Result<Vec<RunRow>, StoreError> {
    let latest: Option<Value> = store.get_json(LATEST).await?;
    let latest = latest
        .as_ref()
        .and_then(|v| v["run_id"].as_str())
        .map(str::to_string);
    let mut keys = store.list("pipeline_runs/").await?;
    keys.retain(|k| k.ends_with("/summary.json"));
    let mut rows = Vec::new();
    for (k, r) in fetch_all(store, keys).await {
        let Ok(Some(b)) = r else { continue };
        let Ok(v) = serde_json::from_slice::<Value>(&b) else {
            continue;
        };
        let run_id = v["run_id"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| k.split('/').nth(1).unwrap_or("").to_string());
        rows.push(RunRow {
            latest: latest.as_deref() == Some(run_id.as_str()),
            success: v["success"].as_bool(),
            best_experiment: v["best_experiment"].as_str().map(str::to_string),
            best_crps: v["best_crps"].as_f64(),
            gbm_crps: v["gbm_crps"].as_f64(),
            experiments: v["experiments"].as_array().map(Vec::len).unwrap_or(0),
            run_id,
        });
    }
    rows.sort_by(|a, b| b.latest.cmp(&a.latest).then(b.run_id.cmp(&a.run_id)));
    Ok(rows)
}

fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The run id `id` names in `store`: `latest` (any case, `jobs::pipeline::LATEST_RUN`) stands
/// for the newest run saved there, the one whose comparison (written with its summary when
/// the run ends, `save_run_summary`) is the most recent (`saved_at_ms`, else the
/// seconds of `timestamp`; ties go to the greater run id); any other id is checked and
/// returned as given. The store's counterpart of `synth_city::pipeline::resolve_run_id`, for
/// `history run`, `history experiments --run` and `history hippius --run-id`.
pub async fn resolve_run_id(store: Arc<dyn Store>, id: &str) -> Result<String, StoreError> {
    if !jobs::pipeline::is_latest_run(id) {
        check_run_id(id)?;
        return Ok(id.to_string());
    }
    let mut keys = store.list("pipeline_runs/").await?;
    keys.retain(|k| k.ends_with("/comparison.json"));
    let location = store.describe();
    let mut newest: Option<(u64, String)> = None;
    for (k, r) in fetch_all(store, keys).await {
        let Some(v) = r?.and_then(|b| serde_json::from_slice::<Value>(&b).ok()) else {
            continue;
        };
        let run_id = v["run_id"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| k.split('/').nth(1).unwrap_or("").to_string());
        let at = v["saved_at_ms"]
            .as_u64()
            .or_else(|| v["timestamp"].as_u64().map(|s| s * 1000))
            .unwrap_or(0);
        if newest.as_ref().is_none_or(|n| (at, &run_id) > (n.0, &n.1)) {
            newest = Some((at, run_id));
        }
    }
    newest
        .map(|(_, id)| id)
        .ok_or(StoreError::NoRuns { location })
}

/// Saves a finished run's summary and comparison (the ranked experiments).
pub async fn save_run_summary(
    store: &dyn Store,
    run_id: &str,
    summary: &Value,
) -> Result<(), StoreError> {
    check_run_id(run_id)?;
    store
        .put_json(
            &comparison_key(run_id),
            &json!({"run_id": run_id, "timestamp": unix_now(), "saved_at_ms": unix_now_ms(),
                    "comparison": summary.get("experiments").cloned().unwrap_or(Value::Null)}),
        )
        .await?;
    store.put_json(&summary_key(run_id), summary).await?;
    Ok(())
}

/// Where the metrics history of a store directory lives.
pub fn metrics_path(store_dir: &Path) -> PathBuf {
    store_dir.join("metrics.jsonl")
}

/// The metrics history's lines for a run's experiments (one each).
pub fn metrics_lines(run_id: &str, recs: &[ExperimentRecord]) -> Vec<Value> {
    recs.iter()
        .map(|r| {
            json!({"event": "experiment", "ts": unix_now(), "run_id": run_id, "name": r.name,
                   "fingerprint": r.fingerprint, "crps": r.crps, "gbm_crps": r.gbm_crps,
                   "ratio": r.crps_ratio(), "status": r.status, "param_count": r.param_count,
                   "epochs": r.epochs, "training_time_s": r.training_time_s})
        })
        .collect()
}

/// Appends one line per experiment to the metrics history.
pub fn append_metrics(path: &Path, run_id: &str, recs: &[ExperimentRecord]) -> std::io::Result<()> {
    append_lines(path, &metrics_lines(run_id, recs))
}

/// Appends JSON values as lines (one `write` per call, so concurrent writers
/// on one machine do not interleave within a line).
pub fn append_lines(path: &Path, values: &[Value]) -> std::io::Result<()> {
    use std::io::Write;
    if values.is_empty() {
        return Ok(());
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut buf = String::new();
    for v in values {
        buf.push_str(&v.to_string());
        buf.push('\n');
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    f.write_all(buf.as_bytes())
}

/// Reads the metrics history (the last `limit` lines); a bad line is an
/// error naming its number.
pub fn read_metrics(path: &Path, limit: usize) -> Result<Vec<Value>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        out.push(
            serde_json::from_str(line)
                .map_err(|e| format!("{} line {}: {e}", path.display(), i + 1))?,
        );
    }
    Ok(out.split_off(out.len().saturating_sub(limit)))
}

/// The planner's view of the store: this build's records (best first, at
/// most `limit`) from the store at `store_dir` (or the S3 bucket when
/// `HIPPIUS_ENDPOINT` is set). A store that cannot be read gives an empty
/// history and a warning: planning goes on from what Redis remembers.
pub async fn history_from(store_dir: &Path, limit: usize) -> Vec<ExperimentRecord> {
    let loaded = match super::open(store_dir) {
        Ok(store) => load_history(store, limit).await,
        Err(e) => Err(e),
    };
    match loaded {
        Ok(h) => h.records,
        Err(e) => {
            tracing::warn!(error = %e, "cannot load the experiment history from the store");
            Vec::new()
        }
    }
}

/// Adds to `history` the records of `more` whose fingerprint it lacks;
/// returns how many were added.
pub fn merge_history(history: &mut Vec<ExperimentRecord>, more: Vec<ExperimentRecord>) -> usize {
    let mut seen: std::collections::HashSet<String> =
        history.iter().map(|r| r.fingerprint.clone()).collect();
    let before = history.len();
    for r in more {
        if seen.insert(r.fingerprint.clone()) {
            history.push(r);
        }
    }
    history.len() - before
}

/// The period [`trends`] groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrendPeriod {
    Day,
    /// ISO weeks, Monday to Sunday.
    Week,
}

/// One experiment family in one period: how many experiments, how many
/// scored, the best and median CRPS / GBM ratio of the scored ones.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrendRow {
    /// `blocks+...` and the head: `lstm+attention/gbm`.
    pub family: String,
    /// The period's first day (UTC), `YYYY-MM-DD`.
    pub period: String,
    pub count: usize,
    pub scored: usize,
    pub best_ratio: Option<f64>,
    pub median_ratio: Option<f64>,
}

/// An experiment's family: its blocks joined by `+`, `/`, its head.
pub fn family(rec: &ExperimentRecord) -> String {
    format!(
        "{}/{}",
        rec.spec.model.backbone.blocks.join("+"),
        rec.spec.model.head.kind
    )
}

/// Trends of experiment families over time (the seed's trackio trends):
/// per family and day (or week) of `recorded_at`, oldest period first, then
/// by family. Records without a time are left out.
pub fn trends(recs: &[ExperimentRecord], by: TrendPeriod) -> Vec<TrendRow> {
    use std::collections::BTreeMap;
    let mut groups: BTreeMap<(i64, String), (usize, Vec<f64>)> = BTreeMap::new();
    for r in recs.iter().filter(|r| r.recorded_at > 0) {
        let day = r.recorded_at.div_euclid(86_400);
        // 1970-01-01 was a Thursday: Monday is 3 days before.
        let start = match by {
            TrendPeriod::Day => day,
            TrendPeriod::Week => day - (day + 3).rem_euclid(7),
        };
        let g = groups.entry((start, family(r))).or_default();
        g.0 += 1;
        if let Some(x) = r.crps_ratio().filter(|x| x.is_finite()) {
            g.1.push(x);
        }
    }
    groups
        .into_iter()
        .map(|((start, family), (count, mut ratios))| {
            ratios.sort_by(f64::total_cmp);
            let n = ratios.len();
            let median = match n {
                0 => None,
                _ if n % 2 == 1 => Some(ratios[n / 2]),
                _ => Some((ratios[n / 2 - 1] + ratios[n / 2]) / 2.0),
            };
            let period = chrono::DateTime::from_timestamp(start * 86_400, 0)
                .map(|d| d.format("%Y-%m-%d").to_string())
                .unwrap_or_default();
            TrendRow {
                family,
                period,
                count,
                scored: n,
                best_ratio: ratios.first().copied(),
                median_ratio: median,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {

    #[test]
    fn trends_group_families_by_day_and_week() {
        let spec = |blocks: &[&str]| trainer::zoo::spec::ExperimentSpec::new(blocks, "gbm");
        let rec = |blocks: &[&str], crps: Option<f64>, at: i64| -> ExperimentRecord {
            serde_json::from_value(
                json!({"name": "x", "fingerprint": "f", "spec": spec(blocks),
                "status": "ok", "crps": crps, "gbm_crps": 10.0, "recorded_at": at}),
            )
            .unwrap()
        };
        // 2024-01-01 is a Monday.
        let mon = 1_704_067_200;
        let recs = vec![
            rec(&["lstm"], Some(9.0), mon + 10),
            rec(&["lstm"], Some(5.0), mon + 20),
            rec(&["lstm"], Some(7.0), mon + 30),
            rec(&["lstm"], None, mon + 40),
            rec(&["lstm"], Some(4.0), mon + 86_400 * 6 + 5), // Sunday, same week
            rec(&["lstm", "attention"], Some(2.0), mon + 86_400 * 7), // next Monday
            rec(&["lstm"], Some(1.0), 0),                    // no time: left out
        ];
        let days = trends(&recs, TrendPeriod::Day);
        assert_eq!(days.len(), 3);
        assert_eq!(
            (days[0].family.as_str(), days[0].period.as_str()),
            ("lstm/gbm", "2024-01-01")
        );
        assert_eq!((days[0].count, days[0].scored), (4, 3));
        assert_eq!(days[0].best_ratio, Some(0.5));
        assert_eq!(days[0].median_ratio, Some(0.7));
        assert_eq!(days[1].period, "2024-01-07");
        let weeks = trends(&recs, TrendPeriod::Week);
        assert_eq!(weeks.len(), 2);
        assert_eq!(
            (weeks[0].period.as_str(), weeks[0].count),
            ("2024-01-01", 5)
        );
        assert_eq!(weeks[0].median_ratio, Some(0.6));
        assert_eq!(
            (weeks[1].family.as_str(), weeks[1].period.as_str()),
            ("lstm+attention/gbm", "2024-01-08")
        );
    }

    use super::*;
    use crate::store::FsStore;
    use trainer::experiments::RunStatus;
    use trainer::zoo::spec::ExperimentSpec;

    pub(crate) fn record(name: &str, crps: Option<f64>, lr: f64) -> ExperimentRecord {
        let mut spec = ExperimentSpec::new(&["lstm"], "gbm");
        spec.training.lr = lr;
        ExperimentRecord {
            name: name.into(),
            run_id: Some("r1".into()),
            fingerprint: trainer::experiments::fingerprint(&spec),
            spec,
            status: if crps.is_some() {
                RunStatus::Ok
            } else {
                RunStatus::Failed
            },
            crps,
            gbm_crps: Some(10.0),
            classical_crps: None,
            param_count: Some(100),
            epochs: 2,
            diverged: false,
            error: None,
            artifact: None,
            checkpoint: None,
            training_time_s: Some(1.0),
            device: Some("cpu".into()),
            steps_per_sec: Some(20.0),
            recorded_at: 1_700_000_000,
        }
    }

    fn tmp() -> PathBuf {
        let p = std::env::temp_dir().join(format!(
            "sc-records-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    #[tokio::test]
    async fn history_round_trips_and_ranks_including_the_seeds_objects() {
        let dir = tmp();
        let store: Arc<dyn Store> = Arc::new(FsStore::new(&dir));
        let recs = vec![
            record("b", Some(9.0), 1e-3),
            record("a", Some(5.0), 3e-3),
            record("f", None, 1e-2),
        ];
        assert_eq!(save_experiments(&*store, "r1", &recs).await.unwrap(), 3);
        // An object in the seed's format (no record): listed, not planned from.
        store
            .put_json(
                "experiments/seedrun/exp-1.json",
                &json!({"run_id": "seedrun", "name": "exp-1", "timestamp": 1.0,
                        "experiment": {"model": {}}, "result": {"metrics": {"crps": 4.0}}}),
            )
            .await
            .unwrap();
        let h = load_history(store.clone(), 10).await.unwrap();
        assert_eq!(h.skipped, 1);
        let names: Vec<&str> = h.records.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "f"]);
        assert_eq!(h.records[0], recs[1]);
        assert_eq!(
            load_history(store.clone(), 1).await.unwrap().records.len(),
            1
        );

        let rows = experiment_rows(store.clone(), None).await.unwrap();
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[0].name, "a");
        assert_eq!(rows[0].ratio, Some(0.5));
        assert!(rows
            .iter()
            .any(|r| r.name == "exp-1" && r.crps == Some(4.0)));
        assert_eq!(rows.last().unwrap().name, "f");
        let only = experiment_rows(store.clone(), Some("seedrun"))
            .await
            .unwrap();
        assert_eq!(only.len(), 1);
        assert!(experiment_rows(store.clone(), Some("../x")).await.is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn run_summaries_are_listed_latest_first() {
        let dir = tmp();
        let store: Arc<dyn Store> = Arc::new(FsStore::new(&dir));
        for id in ["r1", "r2"] {
            save_run_summary(
                &*store,
                id,
                &json!({"run_id": id, "success": true,
                "best_crps": 3.0, "experiments": [{"name": "x"}]}),
            )
            .await
            .unwrap();
        }
        store
            .put_json(LATEST, &json!({"run_id": "r1"}))
            .await
            .unwrap();
        let rows = run_rows(store.clone()).await.unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].run_id, "r1");
        assert!(rows[0].latest);
        assert_eq!(rows[0].experiments, 1);
        let cmp: Value = store
            .get_json(&comparison_key("r2"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(cmp["comparison"][0]["name"], "x");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn latest_names_the_run_saved_last() {
        let dir = tmp();
        let store: Arc<dyn Store> = Arc::new(FsStore::new(&dir));
        let e = resolve_run_id(store.clone(), "latest").await.unwrap_err();
        assert!(matches!(e, StoreError::NoRuns { .. }), "{e}");
        assert!(e.to_string().contains("synth-city pipeline"), "{e}");
        // saved later wins over a greater id
        for id in ["zz-first", "aa-second"] {
            save_run_summary(&*store, id, &json!({"run_id": id, "success": true}))
                .await
                .unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert_eq!(
            resolve_run_id(store.clone(), " LATEST ").await.unwrap(),
            "aa-second"
        );
        assert_eq!(
            resolve_run_id(store.clone(), "zz-first").await.unwrap(),
            "zz-first"
        );
        assert!(resolve_run_id(store.clone(), "../x").await.is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn metrics_history_appends_and_names_bad_lines() {
        let dir = tmp();
        let p = metrics_path(&dir);
        assert!(read_metrics(&p, 10).unwrap().is_empty());
        append_metrics(&p, "r1", &[record("a", Some(5.0), 1e-3)]).unwrap();
        append_metrics(&p, "r2", &[record("b", Some(6.0), 1e-3)]).unwrap();
        let m = read_metrics(&p, 10).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[1]["run_id"], "r2");
        assert_eq!(m[0]["ratio"], 0.5);
        assert_eq!(read_metrics(&p, 1).unwrap().len(), 1);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"{oops\n"))
            .unwrap();
        assert!(read_metrics(&p, 10).unwrap_err().contains("line 3"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn run_ids_are_checked() {
        check_run_id("01jabc-x").unwrap();
        for bad in ["", "../x", "a/b", "a b"] {
            assert!(check_run_id(bad).is_err(), "{bad:?}");
        }
    }
}
