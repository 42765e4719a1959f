//! Results sharing between miners: a run's comparison as a public JSON
//! document (`share`), and another miner's document merged into our
//! experiment history, marked with its source (`ingest`).
//!
//! The document (`schema: "synth-city.results"`, `version: 1`) holds, per
//! scored experiment of the run: its name, fingerprint, spec, CRPS, GBM CRPS,
//! the ratio, and the classical anchor's CRPS when scored; nothing of the
//! machine that ran it (no paths, no artifact references). It is stored at
//! `shared/results-{run_id}.json` and `shared/latest.json` in the store, and
//! on the Hub as `results/{run_id}.json` and `results/latest.json`.
//!
//! Reading one is strict: at most [`MAX_DOC_BYTES`], no unknown fields, the
//! schema and version this build writes, 1 to [`MAX_ROWS`] rows, names and
//! fingerprints of safe characters, finite positive CRPS, a ratio that is
//! CRPS / GBM, and a spec this build validates; each refusal names the field.
//!
//! Ingested rows go under `experiments/shared-{source}-{run_id}/` with the
//! document's `source` on each object: the planner's history reads them (it
//! does not plan a tried spec again), `history experiments` shows their
//! source, and they are never runs of ours (no run summary is written).
//!
//! [`fetch`] reads a document from a URL (http or https only, at most
//! [`MAX_DOC_BYTES`], 30 s) or a Hub repo (`hf:namespace/name`: its
//! `results/latest.json`). It does not read local files (the CLI does) and
//! does not train or re-score what it ingests.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use trainer::experiments::{ExperimentRecord, RunStatus};
use trainer::zoo::spec::ExperimentSpec;

use super::hf::{HfClient, HfConfig, HfError, HfFile, HfOutcome};
use super::records::{self, check_run_id, StoredExperiment};
use super::{Store, StoreError, StoreExt};

/// The document's `schema`.
pub const SCHEMA: &str = "synth-city.results";
/// The document's `version` this build writes and reads.
pub const VERSION: u32 = 1;
/// The largest document read.
pub const MAX_DOC_BYTES: usize = 4 << 20;
/// The most rows a document holds.
pub const MAX_ROWS: usize = 2000;

/// A document that cannot be shared or ingested.
#[derive(Debug, thiserror::Error)]
pub enum SharedError {
    /// The document (or request) is wrong at `field`.
    #[error("{field}: {detail}")]
    Invalid { field: String, detail: String },
    /// The run has no scored experiment to share.
    #[error("run {run_id} has no scored experiment in {location}; share a run that scored at least one (see `synth-city history experiments --run {run_id}`)")]
    Empty { run_id: String, location: String },
    /// The document could not be fetched.
    #[error("{from}: {detail}")]
    Fetch { from: String, detail: String },
    #[error(transparent)]
    Hf(#[from] HfError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn invalid(field: impl Into<String>, detail: impl Into<String>) -> SharedError {
    SharedError::Invalid {
        field: field.into(),
        detail: detail.into(),
    }
}

/// One experiment as shared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharedRow {
    pub name: String,
    pub fingerprint: String,
    pub spec: ExperimentSpec,
    pub crps: f64,
    pub gbm_crps: f64,
    /// CRPS / GBM CRPS (< 1 beats the baseline).
    pub ratio: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classical_crps: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub param_count: Option<usize>,
    #[serde(default)]
    pub epochs: usize,
    /// Unix seconds.
    #[serde(default)]
    pub recorded_at: i64,
}

/// The shared document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharedResults {
    pub schema: String,
    pub version: u32,
    /// Who shared it (a miner's name: letters, digits, '-', '_', '.').
    pub source: String,
    pub run_id: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Best ratio first.
    pub experiments: Vec<SharedRow>,
}

/// Checks a miner's name (the document's `source`).
pub fn check_source(field: &str, s: &str) -> Result<(), SharedError> {
    let ok = !s.is_empty()
        && s.len() <= 48
        && !s.starts_with(['-', '.'])
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!("must be 1-48 letters, digits, '-', '_' or '.', got {s:?}"),
        ))
    }
}

fn finite_pos(field: String, v: f64) -> Result<(), SharedError> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!("must be a finite number > 0, got {v}"),
        ))
    }
}

impl SharedResults {
    /// Checks everything a reader relies on; the error names the field.
    pub fn validate(&self) -> Result<(), SharedError> {
        if self.schema != SCHEMA {
            return Err(invalid(
                "schema",
                format!("must be {SCHEMA:?}, got {:?}", self.schema),
            ));
        }
        if self.version != VERSION {
            return Err(invalid(
                "version",
                format!(
                    "version {} is not supported; this build reads version {VERSION}",
                    self.version
                ),
            ));
        }
        check_source("source", &self.source)?;
        check_run_id(&self.run_id).map_err(|e| invalid("run_id", e.to_string()))?;
        if self.experiments.is_empty() || self.experiments.len() > MAX_ROWS {
            return Err(invalid(
                "experiments",
                format!(
                    "must hold 1 to {MAX_ROWS} rows, got {}",
                    self.experiments.len()
                ),
            ));
        }
        for (i, r) in self.experiments.iter().enumerate() {
            let at = |f: &str| format!("experiments[{i}].{f}");
            let ok_name = !r.name.is_empty()
                && r.name.len() <= 200
                && r.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+'));
            if !ok_name {
                return Err(invalid(
                    at("name"),
                    format!(
                        "must be 1-200 letters, digits, '-', '_', '.' or '+', got {:?}",
                        r.name
                    ),
                ));
            }
            if r.fingerprint.is_empty()
                || r.fingerprint.len() > 64
                || !r.fingerprint.chars().all(|c| c.is_ascii_hexdigit())
            {
                return Err(invalid(
                    at("fingerprint"),
                    format!("must be 1-64 hex digits, got {:?}", r.fingerprint),
                ));
            }
            finite_pos(at("crps"), r.crps)?;
            finite_pos(at("gbm_crps"), r.gbm_crps)?;
            finite_pos(at("ratio"), r.ratio)?;
            if let Some(c) = r.classical_crps {
                finite_pos(at("classical_crps"), c)?;
            }
            let want = r.crps / r.gbm_crps;
            if (r.ratio - want).abs() > 1e-6 * want.max(1.0) {
                return Err(invalid(
                    at("ratio"),
                    format!("must be crps / gbm_crps ({want}), got {}", r.ratio),
                ));
            }
            if let Err(issues) = r.spec.validate() {
                let first = &issues[0];
                return Err(invalid(
                    at(&format!("spec.{}", first.field)),
                    first.message.clone(),
                ));
            }
        }
        Ok(())
    }
}

/// Parses and validates a document; every refusal names what is wrong.
pub fn parse(bytes: &[u8]) -> Result<SharedResults, SharedError> {
    if bytes.len() > MAX_DOC_BYTES {
        return Err(invalid(
            "document",
            format!("is {} bytes, over the cap of {MAX_DOC_BYTES}", bytes.len()),
        ));
    }
    let doc: SharedResults = serde_json::from_slice(bytes).map_err(|e| {
        invalid(
            "document",
            format!("not a {SCHEMA} version {VERSION} document: {e}"),
        )
    })?;
    doc.validate()?;
    Ok(doc)
}

/// Where a run's shared document is stored.
pub fn shared_key(run_id: &str) -> String {
    format!("shared/results-{run_id}.json")
}

/// The newest shared document.
pub const SHARED_LATEST: &str = "shared/latest.json";

/// A run's comparison as a shared document: its scored experiments, best
/// ratio first.
pub async fn build(
    store: &dyn Store,
    run_id: &str,
    source: &str,
    now: i64,
) -> Result<SharedResults, SharedError> {
    check_run_id(run_id)?;
    check_source("source", source)?;
    let mut rows = Vec::new();
    for key in store.list(&format!("experiments/{run_id}/")).await? {
        if !key.ends_with(".json") {
            continue;
        }
        let Some(obj) = store
            .get_json::<StoredExperiment>(&key)
            .await
            .ok()
            .flatten()
        else {
            continue;
        };
        if obj.source.is_some() {
            continue; // another miner's row: not ours to share again
        }
        let Some(rec) = obj.record else { continue };
        let (Some(crps), Some(gbm)) = (rec.crps, rec.gbm_crps) else {
            continue;
        };
        if rec.status != RunStatus::Ok || !(crps.is_finite() && gbm.is_finite() && gbm > 0.0) {
            continue;
        }
        rows.push(SharedRow {
            ratio: crps / gbm,
            name: rec.name,
            fingerprint: rec.fingerprint,
            spec: rec.spec,
            crps,
            gbm_crps: gbm,
            classical_crps: rec.classical_crps.filter(|c| c.is_finite() && *c > 0.0),
            param_count: rec.param_count,
            epochs: rec.epochs,
            recorded_at: rec.recorded_at,
        });
    }
    if rows.is_empty() {
        return Err(SharedError::Empty {
            run_id: run_id.into(),
            location: store.describe(),
        });
    }
    rows.sort_by(|a, b| a.ratio.total_cmp(&b.ratio));
    rows.truncate(MAX_ROWS);
    let doc = SharedResults {
        schema: SCHEMA.into(),
        version: VERSION,
        source: source.into(),
        run_id: run_id.into(),
        created_at: now,
        experiments: rows,
    };
    doc.validate()?;
    Ok(doc)
}

/// Writes a document to the store (its run's key and `shared/latest.json`);
/// returns the run's key.
pub async fn save(store: &dyn Store, doc: &SharedResults) -> Result<String, SharedError> {
    let key = shared_key(&doc.run_id);
    store.put_json(&key, doc).await?;
    store.put_json(SHARED_LATEST, doc).await?;
    Ok(key)
}

/// What [`ingest`] did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ingested {
    pub source: String,
    pub run_id: String,
    /// Where the rows went: `experiments/{history_run}/`.
    pub history_run: String,
    pub rows: usize,
    /// Rows that were already there as is.
    pub unchanged: usize,
}

/// Merges a validated document's rows into the experiment history, marked
/// with its source. Ingesting the same document twice changes nothing.
pub async fn ingest(store: &dyn Store, doc: &SharedResults) -> Result<Ingested, SharedError> {
    doc.validate()?;
    let history_run = format!("shared-{}-{}", doc.source, doc.run_id);
    let history_run: String = history_run.chars().take(64).collect();
    check_run_id(&history_run)?;
    let mut out = Ingested {
        source: doc.source.clone(),
        run_id: doc.run_id.clone(),
        history_run: history_run.clone(),
        rows: 0,
        unchanged: 0,
    };
    for r in &doc.experiments {
        // Only what the document says; the rest (artifact, device, ...) stays unset.
        let rec: ExperimentRecord = serde_json::from_value(serde_json::json!({
            "name": r.name, "run_id": history_run, "fingerprint": r.fingerprint,
            "spec": r.spec, "status": RunStatus::Ok, "crps": r.crps, "gbm_crps": r.gbm_crps,
            "classical_crps": r.classical_crps, "param_count": r.param_count,
            "epochs": r.epochs, "recorded_at": r.recorded_at,
        }))
        .map_err(|e| invalid("document", format!("cannot be made a record: {e}")))?;
        let mut obj = StoredExperiment::from_record(&history_run, &rec);
        obj.source = Some(doc.source.clone());
        let key = records::experiment_key(&history_run, &rec);
        let same = store
            .get_json::<Value>(&key)
            .await?
            .is_some_and(|v| v == serde_json::to_value(&obj).unwrap_or(Value::Null));
        if same {
            out.unchanged += 1;
        } else {
            store.put_json(&key, &obj).await?;
        }
        out.rows += 1;
    }
    Ok(out)
}

/// Where the Hub keeps shared results.
pub fn hub_path(run_id: &str) -> String {
    format!("results/{run_id}.json")
}

/// The Hub's newest shared document.
pub const HUB_LATEST: &str = "results/latest.json";

/// Puts a document in the Hub repo (`results/{run_id}.json` and
/// `results/latest.json`, one commit; none when both are there as is).
pub async fn share_to_hub(
    client: &HfClient,
    doc: &SharedResults,
) -> Result<HfOutcome, SharedError> {
    let bytes = serde_json::to_vec_pretty(doc).map_err(|e| invalid("document", e.to_string()))?;
    let files = [
        HfFile {
            path: hub_path(&doc.run_id),
            bytes: bytes.clone(),
        },
        HfFile {
            path: HUB_LATEST.into(),
            bytes,
        },
    ];
    let summary = format!(
        "synth-city results of run {} ({} experiments, best ratio to GBM {:.4})",
        doc.run_id,
        doc.experiments.len(),
        doc.experiments[0].ratio
    );
    Ok(client
        .upload(
            &files,
            &summary,
            "Shared with `synth-city results share --hf`",
        )
        .await?)
}

/// Reads a document from `from`: an `http(s)://` URL or `hf:namespace/name`
/// (that repo's `results/latest.json` at `main`, through `HF_ENDPOINT`).
pub async fn fetch(from: &str) -> Result<SharedResults, SharedError> {
    let from = from.trim();
    if let Some(repo) = from.strip_prefix("hf:") {
        let mut cfg = HfConfig::reader_from_env()?;
        cfg.attempts = 2;
        cfg.timeout = std::time::Duration::from_secs(30);
        let f = HfClient::reader(cfg)?
            .read_file(Some(repo), "main", HUB_LATEST, MAX_DOC_BYTES)
            .await?;
        return parse(&f.bytes);
    }
    let url = reqwest::Url::parse(from).map_err(|e| {
        invalid(
            "from",
            format!("{from:?} is not a URL ({e}); give http(s)://... or hf:namespace/name"),
        )
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(
            "from",
            format!("only http and https URLs are read, got {:?}", url.scheme()),
        ));
    }
    let fetch_err = |detail: String| SharedError::Fetch {
        from: from.to_string(),
        detail,
    };
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .connect_timeout(std::time::Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::limited(3))
        .user_agent(concat!("synth-city/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| fetch_err(e.to_string()))?;
    let resp = http
        .get(url)
        .send()
        .await
        .map_err(|e| fetch_err(format!("cannot fetch: {e}")))?;
    let status = resp.status();
    let bytes = super::hf::read_capped(resp, MAX_DOC_BYTES)
        .await
        .map_err(|e| match e {
            None => invalid(
                "document",
                format!("is over the cap of {MAX_DOC_BYTES} bytes"),
            ),
            Some(e) => fetch_err(format!("the body broke off: {e}")),
        })?;
    if !status.is_success() {
        return Err(fetch_err(format!(
            "HTTP {}: {}",
            status.as_u16(),
            String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
        )));
    }
    parse(&bytes)
}
