//! The research tools the agents call, over this project's real capabilities: the zoo registry,
//! experiment specs and their validation, parameter and FLOPs counts, training with the SN50
//! evaluation on a data folder, SN50 response checks, data summaries, the experiment history
//! and publishing. A [`ResearchSession`] holds what one agent session did (experiments created,
//! results), the data folder, a training budget and the history/publisher back ends.
//!
//! Not here: GPU deployments (Basilica; [`crate::pods`], added where the session has a desk).
//! Not here, because this project cannot do it: the HF Hub, W&B /
//! trackio, Hippius. No tool pretends to.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::history::{
    fingerprint, safe_name, ExperimentHistory, ExperimentRecord, PublishRequest, Publisher,
    RunStatus,
};
use super::tools::{ToolDef, ToolError, ToolRegistry};
use jobs::Timeframe;
use trainer::zoo::registry::{self, BLOCKS, HEADS};
use trainer::zoo::spec::{ExperimentSpec, SpecIssue};

/// Caps on what `run_experiment` may spend, applied to every spec it trains.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RunBudget {
    pub max_epochs: usize,
    pub max_steps_per_epoch: usize,
    pub max_eval_windows: usize,
    pub max_eval_paths: usize,
    /// At most this many `run_experiment` calls per session.
    pub max_runs: usize,
}

impl Default for RunBudget {
    fn default() -> Self {
        RunBudget {
            max_epochs: 3,
            max_steps_per_epoch: 20,
            max_eval_windows: 8,
            max_eval_paths: 1000,
            max_runs: 5,
        }
    }
}

#[derive(Debug, Default)]
struct SessionState {
    created: usize,
    validated: usize,
    runs: usize,
    results: Vec<ExperimentRecord>,
}

/// One agent session's research state and back ends.
pub struct ResearchSession {
    pub run_id: String,
    /// Bars (`ASSET_5m.csv`, `ASSET_1m.csv`) for training and shape checks.
    pub data_dir: PathBuf,
    /// Checkpoints go to `runs_dir/<run_id>/<experiment>/`.
    pub runs_dir: PathBuf,
    /// `cpu`, or `cuda[:N]` in a CUDA build.
    pub device: String,
    pub budget: RunBudget,
    /// GPU pods for this session's run (`None`: no pod tools; see [`crate::pods`]).
    pub pods: Option<Arc<dyn crate::pods::PodDesk>>,
    history: Arc<dyn ExperimentHistory>,
    publisher: Arc<dyn Publisher>,
    state: Mutex<SessionState>,
}

impl std::fmt::Debug for ResearchSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResearchSession")
            .field("run_id", &self.run_id)
            .field("data_dir", &self.data_dir)
            .field("runs_dir", &self.runs_dir)
            .field("budget", &self.budget)
            .field("publisher", &self.publisher.describe())
            .finish()
    }
}

impl ResearchSession {
    pub fn new(
        run_id: &str,
        data_dir: PathBuf,
        runs_dir: PathBuf,
        history: Arc<dyn ExperimentHistory>,
        publisher: Arc<dyn Publisher>,
    ) -> Self {
        ResearchSession {
            run_id: run_id.to_string(),
            data_dir,
            runs_dir,
            device: "cpu".into(),
            budget: RunBudget::default(),
            pods: None,
            history,
            publisher,
            state: Mutex::new(SessionState::default()),
        }
    }

    /// The results recorded in this session, in run order.
    pub fn results(&self) -> Vec<ExperimentRecord> {
        self.state.lock().expect("session lock").results.clone()
    }

    /// Record a result (also what `run_experiment` does) and save it to the history.
    pub async fn record(&self, rec: ExperimentRecord) -> Result<(), crate::HistoryError> {
        self.state
            .lock()
            .expect("session lock")
            .results
            .push(rec.clone());
        self.history.save(&rec).await
    }

    /// The best successful result of this session (lowest CRPS).
    pub fn best(&self) -> Option<ExperimentRecord> {
        trainer::experiments::best(&self.results()).cloned()
    }
}

fn ranked(mut v: Vec<ExperimentRecord>) -> Vec<ExperimentRecord> {
    v.sort_by(|a, b| {
        let key = |r: &ExperimentRecord| match r.crps {
            Some(c) if r.scored() => (0, c),
            _ => (1, f64::INFINITY),
        };
        let (ka, kb) = (key(a), key(b));
        ka.0.cmp(&kb.0).then(ka.1.total_cmp(&kb.1))
    });
    v
}

/// Read an experiment argument: a spec object, or `{"experiment": spec, ...}` as
/// `create_experiment` returns it.
pub fn parse_spec(experiment: &Map<String, Value>) -> Result<ExperimentSpec, ToolError> {
    let obj = match experiment.get("experiment") {
        Some(Value::Object(inner)) if !experiment.contains_key("model") => inner,
        _ => experiment,
    };
    serde_json::from_value(Value::Object(obj.clone())).map_err(|e| {
        ToolError(format!(
            "experiment is not a valid spec: {e}; build one with create_experiment"
        ))
    })
}

fn issues_json(issues: &[SpecIssue]) -> Value {
    serde_json::to_value(issues).unwrap_or(Value::Null)
}

/// The seed's error categories (`check_experiment_novelty`), over this project's messages.
pub fn error_category(error: &str) -> &'static str {
    let e = error.to_ascii_lowercase();
    // first: the missing-data message names a directory, which may hold any word below
    if e.contains(sn50::data::NO_DATA_FILE) {
        return "data";
    }
    if e.contains("invalid experiment spec") || e.contains("not a valid spec") {
        if e.contains("divisible") {
            "d_model/n_heads"
        } else if e.contains("unknown block") || e.contains("unknown head") {
            "unknown component"
        } else {
            "invalid spec"
        }
    } else if e.contains("shape") || e.contains("mismatch") {
        "tensor shape mismatch"
    } else if e.contains("out of memory") || e.contains("alloc") {
        "out of memory"
    } else if e.contains("nan") || e.contains("diverged") || e.contains("non-finite") {
        "NaN/divergence"
    } else if e.contains("cannot read") || e.contains("no such file") || e.contains("no file") {
        "data"
    } else {
        "other"
    }
}

fn summary_of(r: &ExperimentRecord) -> Value {
    json!({
        "name": r.name,
        "status": r.status,
        "crps": r.crps,
        "gbm_crps": r.gbm_crps,
        "crps_ratio": r.crps_ratio(),
        "classical_crps": r.classical_crps,
        "classical_ratio": r.classical_ratio(),
        "blocks": r.spec.model.backbone.blocks,
        "head": r.spec.model.head.kind,
        "d_model": r.spec.model.backbone.d_model,
        "seq_len": r.spec.model.backbone.seq_len,
        "lr": r.spec.training.lr,
        "param_count": r.param_count,
        "error": r.error,
    })
}

// ---------------------------------------------------------------------------------------------
// Argument types (their schemas are what the model sees)
// ---------------------------------------------------------------------------------------------

/// No arguments.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct NoArgs {}

/// An experiment spec.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ExperimentArg {
    /// The experiment spec (as returned by create_experiment under "experiment").
    pub experiment: Map<String, Value>,
}

/// Build an experiment spec.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct CreateExperimentArgs {
    /// Backbone blocks in order, e.g. ["TransformerBlock", "LSTMBlock"] (see list_blocks).
    pub blocks: Vec<String>,
    /// Distribution head (see list_heads). Default GBMHead.
    #[serde(default)]
    pub head: Option<String>,
    /// "5m" (24 h prompt, horizon 288) or "1m" (1 h prompt, horizon 60). Default 5m. The
    /// horizon is set from it.
    #[serde(default)]
    pub timeframe: Option<String>,
    /// Model width. Default 32.
    #[serde(default)]
    pub d_model: Option<usize>,
    /// History bars per window. Default 64.
    #[serde(default)]
    pub seq_len: Option<usize>,
    /// Sampled paths per window in the training loss. Default 32.
    #[serde(default)]
    pub n_paths: Option<usize>,
    /// Default 16.
    #[serde(default)]
    pub batch_size: Option<usize>,
    /// Learning rate. Default 0.001.
    #[serde(default)]
    pub lr: Option<f64>,
    /// Default 5 (run_experiment caps it to the session budget).
    #[serde(default)]
    pub epochs: Option<usize>,
    /// Default 42.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Assets to train on. Default ["BTC"].
    #[serde(default)]
    pub assets: Option<Vec<String>>,
    /// Head parameters, e.g. {"components": 4} for MixtureHead.
    #[serde(default)]
    pub head_kwargs: Option<Map<String, Value>>,
    /// One object of parameters per block, e.g. [{"n_heads": 2}, {}].
    #[serde(default)]
    pub block_kwargs: Option<Vec<Map<String, Value>>>,
}

/// An architecture to size.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ArchArgs {
    /// Backbone blocks in order.
    pub blocks: Vec<String>,
    /// Default GBMHead.
    #[serde(default)]
    pub head: Option<String>,
    /// Default 32.
    #[serde(default)]
    pub d_model: Option<usize>,
    /// Default 64.
    #[serde(default)]
    pub seq_len: Option<usize>,
    /// "5m" (default) or "1m".
    #[serde(default)]
    pub timeframe: Option<String>,
}

/// Architectures to compare by compute.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct FlopsArgs {
    /// Architectures, e.g. [{"blocks": ["LSTMBlock"], "head": "GBMHead", "d_model": 32}].
    pub architectures: Vec<ArchArgs>,
}

/// Train and score an experiment.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct RunExperimentArgs {
    /// The experiment spec (from create_experiment).
    pub experiment: Map<String, Value>,
    /// Epochs (capped by the session budget).
    #[serde(default)]
    pub epochs: Option<usize>,
    /// A name for the result; default exp-N.
    #[serde(default)]
    pub name: Option<String>,
}

/// Check a model's SN50 response.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct CheckShapesArgs {
    /// "gbm" (the reference model), or the name of an experiment run in this session.
    #[serde(default)]
    pub model: Option<String>,
    /// Asset to simulate. Default BTC.
    #[serde(default)]
    pub asset: Option<String>,
}

/// How much history to read.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct HistoryArgs {
    /// Most recent records to read. Default 100.
    #[serde(default)]
    pub limit: Option<usize>,
}

/// Publish a trained experiment.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct PublishArgs {
    /// The name of a successful experiment run in this session (see compare_results).
    pub experiment_name: String,
    /// Name to publish under; default the experiment name.
    #[serde(default)]
    pub repo_id: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Tool bodies
// ---------------------------------------------------------------------------------------------

/// A tool argument's timeframe (text at the tool's edge), or an error naming the field.
fn timeframe_arg(tf: Option<&str>) -> Result<Option<Timeframe>, ToolError> {
    tf.map(|t| {
        t.parse()
            .map_err(|e: jobs::artifact::UnknownTimeframe| ToolError(format!("timeframe: {e}")))
    })
    .transpose()
}

fn build_spec(a: &CreateExperimentArgs) -> Result<(ExperimentSpec, Vec<String>), ToolError> {
    let blocks: Vec<&str> = a.blocks.iter().map(|s| s.as_str()).collect();
    let mut spec = ExperimentSpec::new(&blocks, a.head.as_deref().unwrap_or("GBMHead"));
    let mut notes = Vec::new();
    let tf = timeframe_arg(a.timeframe.as_deref())?.unwrap_or_default();
    let h = tf.horizon_steps();
    spec.training.horizon = h;
    notes.push(format!("horizon set to {h} for timeframe {tf}"));
    spec.data.timeframe = tf;
    if let Some(v) = a.d_model {
        spec.model.backbone.d_model = v;
    }
    if let Some(v) = a.seq_len {
        spec.model.backbone.seq_len = v;
    }
    if let Some(v) = a.n_paths {
        spec.training.n_paths = v;
    }
    if let Some(v) = a.batch_size {
        spec.training.batch_size = v;
    }
    if let Some(v) = a.lr {
        spec.training.lr = v;
    }
    if let Some(v) = a.epochs {
        spec.training.epochs = v;
    }
    if let Some(v) = a.seed {
        spec.training.seed = v;
    }
    if let Some(v) = &a.assets {
        spec.data.assets = v.clone();
    }
    if let Some(v) = &a.head_kwargs {
        spec.model.head.kwargs = v.clone();
    }
    if let Some(v) = &a.block_kwargs {
        spec.model.backbone.block_kwargs = v.clone();
    }
    Ok((spec, notes))
}

fn validation_json(spec: &ExperimentSpec) -> Value {
    match spec.validate() {
        Ok(_) => {
            let mut warnings = Vec::new();
            let t = &spec.training;
            if !(1e-5..=1e-1).contains(&t.lr) {
                warnings.push(format!("training.lr {} is outside 1e-5..1e-1", t.lr));
            }
            if t.eval_paths != 1000 {
                warnings.push(format!(
                    "training.eval_paths {}: SN50 validators ask for 1000 paths",
                    t.eval_paths
                ));
            }
            if !(2..=64).contains(&t.batch_size) {
                warnings.push(format!(
                    "training.batch_size {} is outside 2..64",
                    t.batch_size
                ));
            }
            let params = spec.param_count().map_err(|e| e.to_string());
            json!({
                "valid": params.is_ok(),
                "errors": match &params { Ok(_) => json!([]), Err(e) => json!([{"field": "model", "message": e}]) },
                "warnings": warnings,
                "param_count": params.ok(),
            })
        }
        Err(issues) => {
            json!({"valid": false, "errors": issues_json(&issues), "warnings": [], "param_count": null})
        }
    }
}

fn describe(spec: &ExperimentSpec) -> Result<Value, ToolError> {
    let r = spec.validate().map_err(|i| {
        ToolError(format!(
            "invalid experiment spec: {}",
            i.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        ))
    })?;
    let comp = |name: &str, p: &registry::Params, info: Option<&registry::ComponentInfo>| json!({"name": name, "params": p.0, "paper": info.map(|c| c.paper), "description": info.map(|c| c.description)});
    let blocks: Vec<Value> = r
        .blocks
        .iter()
        .map(|(n, p)| comp(n, p, registry::find_block(n)))
        .collect();
    let head = comp(r.head.0, &r.head.1, registry::find_head(r.head.0));
    let breakdown = spec
        .param_breakdown()
        .map_err(|e| ToolError(e.to_string()))?;
    Ok(json!({
        "blocks": blocks,
        "head": head,
        "d_model": spec.model.backbone.d_model,
        "seq_len": spec.model.backbone.seq_len,
        "features": spec.model.backbone.features,
        "horizon": spec.training.horizon,
        "timeframe": spec.data.timeframe,
        "bar_seconds": r.bar_seconds,
        "assets": spec.data.assets,
        "param_count": breakdown.iter().map(|(_, n)| n).sum::<usize>(),
        "param_breakdown": breakdown.into_iter().collect::<BTreeMap<_, _>>(),
        "flops_estimate": spec.flops_estimate().ok(),
        "training": spec.training,
        "fingerprint": fingerprint(spec),
    }))
}

fn arch_spec(a: &ArchArgs) -> Result<ExperimentSpec, ToolError> {
    let blocks: Vec<&str> = a.blocks.iter().map(|s| s.as_str()).collect();
    let mut spec = ExperimentSpec::new(&blocks, a.head.as_deref().unwrap_or("GBMHead"));
    if let Some(d) = a.d_model {
        spec.model.backbone.d_model = d;
    }
    if let Some(s) = a.seq_len {
        spec.model.backbone.seq_len = s;
    }
    if let Some(tf) = timeframe_arg(a.timeframe.as_deref())? {
        spec.data.timeframe = tf;
        spec.training.horizon = tf.horizon_steps();
    }
    Ok(spec)
}

/// The seed's size tiers.
fn tier(params: usize) -> &'static str {
    match params {
        p if p < 50_000 => "very low",
        p if p < 200_000 => "low",
        p if p < 1_000_000 => "medium",
        p if p < 5_000_000 => "high",
        _ => "very high",
    }
}

fn spec_error(issues: &[SpecIssue]) -> ToolError {
    ToolError(format!(
        "invalid experiment spec: {}",
        issues
            .iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join("; ")
    ))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ToolError> + Send + 'static,
) -> Result<T, ToolError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ToolError(format!("worker task failed: {e}")))?
}

async fn run_experiment(s: Arc<ResearchSession>, a: RunExperimentArgs) -> Result<Value, ToolError> {
    let mut spec = parse_spec(&a.experiment)?;
    let run_no = {
        let mut st = s.state.lock().expect("session lock");
        if st.runs >= s.budget.max_runs {
            return Err(ToolError(format!(
                "run budget spent: {} experiments already ran in this session (max_runs {}); \
                 compare_results and finish",
                st.runs, s.budget.max_runs
            )));
        }
        st.runs += 1;
        st.runs
    };
    let name = safe_name(&a.name.clone().unwrap_or_else(|| format!("exp-{run_no}")));
    let b = &s.budget;
    let t = &mut spec.training;
    let asked = (
        a.epochs.unwrap_or(t.epochs),
        t.steps_per_epoch,
        t.eval_windows,
        t.eval_paths,
    );
    t.epochs = asked.0.clamp(1, b.max_epochs);
    t.patience = t.patience.min(t.epochs);
    t.steps_per_epoch = asked.1.clamp(1, b.max_steps_per_epoch);
    t.eval_windows = asked.2.clamp(1, b.max_eval_windows);
    t.eval_paths = asked.3.clamp(1, b.max_eval_paths);
    let budget = json!({"epochs": t.epochs, "steps_per_epoch": t.steps_per_epoch,
        "eval_windows": t.eval_windows, "eval_paths": t.eval_paths});
    let out_dir = s.runs_dir.join(safe_name(&s.run_id)).join(&name);
    let (spec2, data, out, dev) = (
        spec.clone(),
        s.data_dir.clone(),
        out_dir.clone(),
        s.device.clone(),
    );
    let run = blocking(move || {
        Ok(trainer::experiments::run_experiment(
            &spec2, &data, &out, &dev, false,
        ))
    })
    .await?;
    let mut rec = run.record;
    rec.name = name.clone();
    rec.run_id = Some(s.run_id.clone());
    let mut reply = match (rec.status, &rec.error) {
        (RunStatus::Ok, _) => json!({
            "status": "ok", "name": name, "crps": rec.crps, "gbm_crps": rec.gbm_crps,
            "crps_ratio": rec.crps_ratio(), "classical_crps": rec.classical_crps,
            "classical_ratio": rec.classical_ratio(), "windows": run.windows, "param_count": rec.param_count,
            "epochs_run": rec.epochs, "best_epoch": run.best_epoch,
            "best_val_loss": run.best_val_loss, "training_time_s": rec.training_time_s,
            "budget_applied": budget,
        }),
        (RunStatus::Failed, e) => {
            let e = e.clone().unwrap_or_default();
            json!({"status": "failed", "name": name, "error": e,
                   "error_category": error_category(&e), "budget_applied": budget})
        }
    };
    if let Err(e) = s.record(rec).await {
        reply["history_error"] = Value::String(e.to_string());
    }
    Ok(reply)
}

fn check_shapes(s: &ResearchSession, a: CheckShapesArgs) -> Result<Value, ToolError> {
    use sn50::constants::{PromptKind, Sn50Config};
    use sn50::data::{asset_file, Bars};
    use sn50::forecast::{ForecastRequest, Forecaster, Gbm};
    use sn50::response::{check_response, MinerResponse, SimulationInput};

    let model = a.model.unwrap_or_else(|| "gbm".into());
    let asset = a.asset.unwrap_or_else(|| "BTC".into());
    let cfg = Sn50Config::default();
    let err = |e: &dyn std::fmt::Display| ToolError(e.to_string());
    let (forecaster, tf): (Box<dyn Forecaster>, Timeframe) = if model.eq_ignore_ascii_case("gbm") {
        (Box::new(Gbm::new(cfg.clone())), Timeframe::FiveMinutes)
    } else {
        let rec = s
            .results()
            .into_iter()
            .find(|r| r.name == model && r.checkpoint.is_some())
            .ok_or_else(|| {
                ToolError(format!(
                    "no trained experiment named {model:?} in this session; use \"gbm\" or a name \
                     from compare_results"
                ))
            })?;
        let device = trainer::zoo::device(&s.device).map_err(|e| err(&e))?;
        let dir = rec.checkpoint.clone().unwrap_or_default();
        let f =
            trainer::zoo::forecaster::ZooForecaster::load(&dir, &device).map_err(|e| err(&e))?;
        let tf = f.checkpoint().spec.data.timeframe;
        (Box::new(f), tf)
    };
    let kind = PromptKind::for_timeframe(tf);
    let prompt = cfg.prompt(kind).clone();
    let path = asset_file(&s.data_dir, &asset, tf).map_err(|e| err(&e))?;
    let bars = Bars::load(&path).map_err(|e| err(&e))?;
    let last = bars
        .len()
        .checked_sub(1)
        .ok_or_else(|| ToolError(format!("{} has no bars", path.display())))?;
    let at = bars.timestamps[last] + bars.bar_seconds;
    let req = ForecastRequest {
        asset: asset.clone(),
        start_time: at,
        time_increment: prompt.time_increment,
        time_length: prompt.time_length,
        num_simulations: prompt.num_simulations,
        spot: bars.close[last],
        history: Some(&bars),
        as_of: at,
    };
    let paths = forecaster
        .forecast(&req, &mut trainer::zoo::params::seeded_rng(0))
        .map_err(|e| err(&e))?;
    let resp =
        MinerResponse::from_paths(at, prompt.time_increment as i64, &paths).map_err(|e| err(&e))?;
    let start_time = chrono::DateTime::from_timestamp(at, 0)
        .map(|d| d.to_rfc3339())
        .unwrap_or_default();
    let input = SimulationInput {
        asset: asset.clone(),
        start_time: start_time.clone(),
        time_increment: prompt.time_increment as i64,
        time_length: prompt.time_length as i64,
        num_simulations: prompt.num_simulations as i64,
    };
    let report = check_response(&resp.to_py(), &input, true);
    Ok(json!({
        "model": model, "asset": asset, "prompt": kind.label(), "start_time": start_time,
        "paths": paths.n_paths(), "points": paths.n_points(),
        "expected": [prompt.num_simulations, req.num_points()],
        "format_validation": report.format_validation, "scoring_issue": report.scoring_issue,
        "ok": report.ok,
    }))
}

fn scan(records: &[ExperimentRecord]) -> Value {
    let ok: Vec<&ExperimentRecord> = records
        .iter()
        .filter(|r| r.status == RunStatus::Ok)
        .collect();
    let failed: Vec<&ExperimentRecord> = records
        .iter()
        .filter(|r| r.status == RunStatus::Failed)
        .collect();
    let best: Vec<Value> = ranked(records.to_vec())
        .iter()
        .filter(|r| r.status == RunStatus::Ok && r.crps.is_some())
        .take(5)
        .map(summary_of)
        .collect();
    let mut categories: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &failed {
        *categories
            .entry(error_category(r.error.as_deref().unwrap_or("")))
            .or_default() += 1;
    }
    let examples: Vec<Value> = failed
        .iter()
        .rev()
        .take(5)
        .map(|r| json!({"name": r.name, "blocks": r.spec.model.backbone.blocks, "head": r.spec.model.head.kind,
                        "category": error_category(r.error.as_deref().unwrap_or("")), "error": r.error}))
        .collect();
    #[derive(Default)]
    struct Stat {
        runs: usize,
        ok: usize,
        ratios: Vec<f64>,
    }
    let mut blocks: BTreeMap<String, Stat> = BTreeMap::new();
    let mut heads: BTreeMap<String, Stat> = BTreeMap::new();
    let canon_b = |b: &str| {
        registry::find_block(b)
            .map(|c| c.name.to_string())
            .unwrap_or(b.to_string())
    };
    let canon_h = |h: &str| {
        registry::find_head(h)
            .map(|c| c.name.to_string())
            .unwrap_or(h.to_string())
    };
    for r in records {
        let uniq: BTreeSet<String> = r
            .spec
            .model
            .backbone
            .blocks
            .iter()
            .map(|b| canon_b(b))
            .collect();
        let add = |st: &mut Stat| {
            st.runs += 1;
            if r.status == RunStatus::Ok {
                st.ok += 1;
                if let Some(x) = r.crps_ratio() {
                    st.ratios.push(x);
                }
            }
        };
        for b in uniq {
            add(blocks.entry(b).or_default());
        }
        add(heads.entry(canon_h(&r.spec.model.head.kind)).or_default());
    }
    let stats = |m: &BTreeMap<String, Stat>| -> Value {
        m.iter()
            .map(|(k, s)| {
                let mean = (!s.ratios.is_empty()).then(|| s.ratios.iter().sum::<f64>() / s.ratios.len() as f64);
                let best = s.ratios.iter().copied().reduce(f64::min);
                (k.clone(), json!({"runs": s.runs, "ok": s.ok, "best_crps_ratio": best, "mean_crps_ratio": mean}))
            })
            .collect::<Map<_, _>>()
            .into()
    };
    let mut fp_count: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for r in records {
        fp_count
            .entry(r.fingerprint.as_str())
            .or_default()
            .push(r.name.as_str());
    }
    let duplicates: Vec<Value> = fp_count
        .iter()
        .filter(|(_, v)| v.len() > 1)
        .map(|(fp, v)| json!({"fingerprint": fp, "names": v}))
        .collect();
    json!({
        "total": records.len(), "ok": ok.len(), "failed": failed.len(),
        "best": best,
        "failure_patterns": {"categories": categories, "recent": examples},
        "block_stats": stats(&blocks), "head_stats": stats(&heads),
        "untried_blocks": BLOCKS.iter().map(|b| b.name).filter(|n| !blocks.contains_key(*n)).collect::<Vec<_>>(),
        "untried_heads": HEADS.iter().map(|h| h.name).filter(|n| !heads.contains_key(*n)).collect::<Vec<_>>(),
        "duplicates": duplicates,
        "note": "crps_ratio = model CRPS / GBM CRPS on the same windows; below 1 beats the baseline",
    })
}

fn novelty(spec: &ExperimentSpec, records: &[ExperimentRecord]) -> Value {
    let fp = fingerprint(spec);
    let exact: Vec<Value> = records
        .iter()
        .filter(|r| r.fingerprint == fp)
        .map(summary_of)
        .collect();
    let canon = |b: &str| registry::find_block(b).map(|c| c.name).unwrap_or("?");
    let mine: BTreeSet<&str> = spec
        .model
        .backbone
        .blocks
        .iter()
        .map(|b| canon(b))
        .collect();
    let my_head = registry::find_head(&spec.model.head.kind).map(|h| h.name);
    let similar: Vec<&ExperimentRecord> = records
        .iter()
        .filter(|r| r.fingerprint != fp)
        .filter(|r| {
            r.spec
                .model
                .backbone
                .blocks
                .iter()
                .any(|b| mine.contains(canon(b)))
                || registry::find_head(&r.spec.model.head.kind).map(|h| h.name) == my_head
        })
        .collect();
    let warnings: Vec<String> = similar
        .iter()
        .filter(|r| r.status == RunStatus::Failed)
        .take(3)
        .map(|r| {
            format!(
                "{} ({} + {}) failed: {}",
                r.name,
                r.spec.model.backbone.blocks.join("+"),
                r.spec.model.head.kind,
                error_category(r.error.as_deref().unwrap_or(""))
            )
        })
        .collect();
    json!({
        "fingerprint": fp,
        "novel": exact.is_empty(),
        "exact_matches": exact,
        "similar": similar.iter().take(5).map(|r| summary_of(r)).collect::<Vec<_>>(),
        "failure_warnings": warnings,
    })
}

// ---------------------------------------------------------------------------------------------
// Registration
// ---------------------------------------------------------------------------------------------

/// Every research tool, bound to `session`.
pub fn research_tools(session: Arc<ResearchSession>) -> ToolRegistry {
    let mut reg = ToolRegistry::new();
    reg.register(ToolDef::typed("list_blocks", "List every backbone block with its paper, description and parameters (name, default, range). Blocks map (batch, seq, d_model) to the same shape, so any stack works.", |_: NoArgs| async {
        Ok(json!({"blocks": BLOCKS}))
    }));
    reg.register(ToolDef::typed(
        "list_heads",
        "List every distribution head (how paths are sampled) with its parameters.",
        |_: NoArgs| async { Ok(json!({"heads": HEADS})) },
    ));
    reg.register(ToolDef::typed(
        "list_presets",
        "List the known-good block/head combinations (each with the seed's names it also takes).",
        |_: NoArgs| async { Ok(json!({"presets": registry::presets_json()})) },
    ));
    let s = session.clone();
    reg.register(ToolDef::typed("create_experiment", "Build an experiment spec from blocks, head and hyper-parameters; returns the spec under \"experiment\" with its validation result. The horizon follows the timeframe (5m -> 288, 1m -> 60).", move |a: CreateExperimentArgs| {
        let s = s.clone();
        async move {
            let (spec, notes) = build_spec(&a)?;
            s.state.lock().expect("session lock").created += 1;
            let v = validation_json(&spec);
            Ok(json!({"experiment": spec, "valid": v["valid"], "errors": v["errors"], "notes": notes}))
        }
    }));
    let s = session.clone();
    reg.register(ToolDef::typed("validate_experiment", "Validate an experiment spec: every problem with its field and fix, warnings, and the parameter count.", move |a: ExperimentArg| {
        let s = s.clone();
        async move {
            let spec = parse_spec(&a.experiment)?;
            s.state.lock().expect("session lock").validated += 1;
            blocking(move || Ok(validation_json(&spec))).await
        }
    }));
    reg.register(ToolDef::typed("describe_experiment", "Describe a valid experiment: resolved components and parameters, parameters per component, FLOPs per window, fingerprint.", |a: ExperimentArg| async move {
        let spec = parse_spec(&a.experiment)?;
        blocking(move || describe(&spec)).await
    }));
    reg.register(ToolDef::typed("estimate_params", "Exact trainable parameter count of an architecture (built on the CPU), per component, with a size tier and the training memory for weights and AdamW moments.", |a: ArchArgs| async move {
        blocking(move || {
            let spec = arch_spec(&a)?;
            spec.validate().map_err(|i| spec_error(&i))?;
            let parts = spec.param_breakdown().map_err(|e| ToolError(e.to_string()))?;
            let n: usize = parts.iter().map(|(_, n)| n).sum();
            Ok(json!({"param_count": n, "breakdown": parts.into_iter().collect::<BTreeMap<_, _>>(),
                      "tier": tier(n), "weights_and_adam_bytes": n * 4 * 3}))
        }).await
    }));
    reg.register(ToolDef::typed("estimate_flops", "Rank architectures by estimated forward FLOPs per window (cheapest first), relative to the cheapest.", |a: FlopsArgs| async move {
        blocking(move || {
            let mut rows: Vec<Value> = Vec::new();
            for arch in &a.architectures {
                let spec = match arch_spec(arch) {
                    Ok(spec) => spec,
                    Err(e) => {
                        rows.push(json!({"blocks": arch.blocks, "error": e.0}));
                        continue;
                    }
                };
                let row = match spec.validate() {
                    Err(i) => json!({"blocks": arch.blocks, "head": spec.model.head.kind, "error": spec_error(&i).0}),
                    Ok(_) => match (spec.flops_estimate(), spec.param_count()) {
                        (Ok(f), Ok(p)) => json!({"blocks": arch.blocks, "head": spec.model.head.kind,
                            "d_model": spec.model.backbone.d_model, "seq_len": spec.model.backbone.seq_len,
                            "flops": f, "param_count": p}),
                        (Err(e), _) | (_, Err(e)) => json!({"blocks": arch.blocks, "error": e.to_string()}),
                    },
                };
                rows.push(row);
            }
            let min = rows.iter().filter_map(|r| r["flops"].as_u64()).min().unwrap_or(1).max(1);
            for r in rows.iter_mut() {
                if let Some(f) = r["flops"].as_u64() {
                    r["relative"] = json!(f as f64 / min as f64);
                }
            }
            rows.sort_by_key(|r| r["flops"].as_u64().unwrap_or(u64::MAX));
            Ok(json!({"ranking": rows}))
        }).await
    }));
    let s = session.clone();
    reg.register(ToolDef::typed("run_experiment", "Train an experiment on the session's market data (capped by the session budget) and score it with the SN50 CRPS against the GBM baseline on the same validation windows. Records the result.", move |a: RunExperimentArgs| {
        run_experiment(s.clone(), a)
    }));
    let s = session.clone();
    reg.register(ToolDef::typed(
        "compare_results",
        "Rank this session's experiment results by CRPS (lower is better; failures last).",
        move |_: NoArgs| {
            let s = s.clone();
            async move {
                let ranking: Vec<Value> = ranked(s.results())
                    .iter()
                    .map(|r| {
                        let mut v = summary_of(r);
                        v["experiment"] = serde_json::to_value(&r.spec).unwrap_or(Value::Null);
                        v
                    })
                    .collect();
                Ok(json!({"ranking": ranking}))
            }
        },
    ));
    let s = session.clone();
    reg.register(ToolDef::typed("session_summary", "What this session did so far: experiments created, validated and run, the best result, the data folder and the budget.", move |_: NoArgs| {
        let s = s.clone();
        async move {
            let (created, validated, runs) = {
                let st = s.state.lock().expect("session lock");
                (st.created, st.validated, st.runs)
            };
            let results = s.results();
            Ok(json!({
                "run_id": s.run_id, "experiments_created": created, "experiments_validated": validated,
                "experiments_run": runs,
                "ok": results.iter().filter(|r| r.status == RunStatus::Ok).count(),
                "failed": results.iter().filter(|r| r.status == RunStatus::Failed).count(),
                "best": s.best().as_ref().map(summary_of),
                "data_dir": s.data_dir.display().to_string(), "budget": s.budget,
            }))
        }
    }));
    let s = session.clone();
    reg.register(ToolDef::typed("check_shapes", "Simulate one SN50 response (1000 paths for the prompt the model's timeframe answers, from the last bar of the data) with \"gbm\" or a model trained in this session, and run the validator's format checks on it.", move |a: CheckShapesArgs| {
        let s = s.clone();
        async move { blocking(move || check_shapes(&s, a)).await }
    }));
    let s = session.clone();
    reg.register(ToolDef::typed("data_loader_info", "The market data available for training: per file the asset, bar length, bars, time range and gaps; the input features; the timeframes and horizons; the split.", move |_: NoArgs| {
        let s = s.clone();
        async move {
            let dir = s.data_dir.clone();
            blocking(move || {
                let files = sn50::data::data_info(&dir).map_err(|e| ToolError(e.to_string()))?;
                Ok(json!({
                    "data_dir": dir.display().to_string(), "files": files,
                    "features": trainer::zoo::features::FEATURES,
                    "timeframes": Timeframe::ALL.iter().map(|tf| (tf.to_string(), json!({
                        "bar_seconds": tf.step_secs(), "horizon": tf.horizon_steps(),
                        "prompt": match sn50::constants::PromptKind::for_timeframe(*tf) {
                            sn50::constants::PromptKind::Low => "low (24 h)",
                            sn50::constants::PromptKind::High => "high (1 h)",
                        },
                    }))).collect::<serde_json::Map<_, _>>(),
                    "split": "walk-forward per asset: the last val_fraction (default 0.2) of bars is validation; windows never cross gaps",
                }))
            }).await
        }
    }));
    let s = session.clone();
    reg.register(ToolDef::typed("scan_experiment_history", "Lessons from past experiments: best configs, failure patterns, per-block and per-head CRPS ratios, untried blocks and heads, duplicates.", move |a: HistoryArgs| {
        let s = s.clone();
        async move {
            let recs = s.history.load(a.limit.unwrap_or(100)).await.map_err(|e| ToolError(e.to_string()))?;
            Ok(scan(&recs))
        }
    }));
    let s = session.clone();
    reg.register(ToolDef::typed("check_experiment_novelty", "Whether an experiment was already run (same blocks, head, d_model, seq_len, lr, horizon, assets and timeframe), similar past runs and their failures.", move |a: ExperimentArg| {
        let s = s.clone();
        async move {
            let spec = parse_spec(&a.experiment)?;
            let recs = s.history.load(2000).await.map_err(|e| ToolError(e.to_string()))?;
            Ok(novelty(&spec, &recs))
        }
    }));
    let s = session;
    let desc = format!(
        "Publish a successful experiment of this session (checkpoint, spec, metrics) to {}.",
        s.publisher.describe()
    );
    reg.register(ToolDef::typed("publish_model", &desc, move |a: PublishArgs| {
        let s = s.clone();
        async move {
            let rec = s.results().into_iter().rev()
                .find(|r| r.name == a.experiment_name && r.status == RunStatus::Ok && r.checkpoint.is_some())
                .ok_or_else(|| ToolError(format!("no successful experiment named {:?} in this session; see compare_results", a.experiment_name)))?;
            let req = PublishRequest {
                name: a.repo_id.clone().unwrap_or_else(|| rec.name.clone()),
                checkpoint: rec.checkpoint.clone().unwrap_or_default(),
                spec: rec.spec.clone(),
                metrics: json!({"crps": rec.crps, "gbm_crps": rec.gbm_crps, "crps_ratio": rec.crps_ratio(),
                                "param_count": rec.param_count, "fingerprint": rec.fingerprint, "run_id": rec.run_id}),
            };
            let receipt = s
                .publisher
                .publish(&req)
                .await
                .map_err(|e| ToolError(e.to_string()))?;
            Ok(json!({"published": true, "location": receipt.location, "files": receipt.files}))
        }
    }));
    reg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_categories() {
        assert_eq!(
            error_category("invalid experiment spec: x: d_model 30 is not divisible by n_heads 4"),
            "d_model/n_heads"
        );
        assert_eq!(
            error_category(
                "invalid experiment spec: model.backbone.blocks[0]: unknown block \"Nope\""
            ),
            "unknown component"
        );
        assert_eq!(
            error_category("training diverged: loss is NaN"),
            "NaN/divergence"
        );
        assert_eq!(
            error_category("cannot read or write data/BTC_5m.csv"),
            "data"
        );
        // the missing-data message, whatever its directory is called
        let missing = sn50::data::asset_file(
            std::path::Path::new("/home/nan/mismatch-shape"),
            "BTC",
            jobs::Timeframe::FiveMinutes,
        )
        .unwrap_err()
        .to_string();
        assert_eq!(error_category(&missing), "data");
        assert_eq!(error_category("something else"), "other");
    }

    #[test]
    fn fingerprint_ignores_spelling_and_sees_changes() {
        let a = ExperimentSpec::new(&["lstm"], "gbm");
        let b = ExperimentSpec::new(&["LSTMBlock"], "GBMHead");
        assert_eq!(fingerprint(&a), fingerprint(&b));
        let mut c = b.clone();
        c.training.lr = 0.0005;
        assert_ne!(fingerprint(&b), fingerprint(&c));
    }

    #[test]
    fn scan_and_novelty_over_records() {
        let rec =
            |name: &str, blocks: &[&str], head: &str, crps: Option<f64>, err: Option<&str>| {
                let spec = ExperimentSpec::new(blocks, head);
                ExperimentRecord {
                    name: name.into(),
                    run_id: None,
                    fingerprint: fingerprint(&spec),
                    spec,
                    status: if err.is_some() {
                        RunStatus::Failed
                    } else {
                        RunStatus::Ok
                    },
                    crps,
                    gbm_crps: crps.map(|_| 100.0),
                    classical_crps: None,
                    param_count: None,
                    epochs: 0,
                    diverged: false,
                    error: err.map(String::from),
                    artifact: None,
                    checkpoint: None,
                    training_time_s: None,
                    device: None,
                    steps_per_sec: None,
                    recorded_at: 0,
                }
            };
        let recs = vec![
            rec("a", &["LSTMBlock"], "GBMHead", Some(95.0), None),
            rec("b", &["TCNBlock"], "MixtureHead", Some(90.0), None),
            rec(
                "c",
                &["TransformerBlock"],
                "GBMHead",
                None,
                Some("training diverged: NaN"),
            ),
            rec("d", &["LSTMBlock"], "GBMHead", Some(97.0), None),
        ];
        let v = scan(&recs);
        assert_eq!(v["total"], 4);
        assert_eq!(v["best"][0]["name"], "b");
        assert_eq!(v["failure_patterns"]["categories"]["NaN/divergence"], 1);
        assert_eq!(v["block_stats"]["LSTMBlock"]["runs"], 2);
        assert!(v["untried_blocks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b == "MambaBlock"));
        assert!(!v["untried_blocks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b == "LSTMBlock"));
        assert_eq!(v["duplicates"].as_array().unwrap().len(), 1);
        let n = novelty(&ExperimentSpec::new(&["lstm"], "gbm"), &recs);
        assert_eq!(n["novel"], false);
        assert_eq!(n["exact_matches"].as_array().unwrap().len(), 2);
        let n = novelty(
            &ExperimentSpec::new(&["TransformerBlock", "MambaBlock"], "FlowHead"),
            &recs,
        );
        assert_eq!(n["novel"], true);
        assert_eq!(n["failure_warnings"].as_array().unwrap().len(), 1);
    }
}
