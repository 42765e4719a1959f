//! The research pipeline's domain, without Redis: what each built-in (non-LLM)
//! agent does — plan, train, check, debug, publish — over the model zoo and the
//! exact SN50 scoring. The engine (`src/pipeline` in the root crate) turns each
//! into a job type and keeps the run's state in Redis.

pub mod checker;
pub mod debugger;
pub mod planner;
pub mod publisher;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::zoo::spec::ExperimentSpec;
use crate::zoo::train;

/// The budget a run gives every experiment: the planner applies it to each spec
/// so that a pipeline run costs what the caller asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    /// Experiments per plan.
    pub experiments: usize,
    /// Epochs of the first successive-halving round (doubled for survivors).
    pub epochs: usize,
    pub steps_per_epoch: usize,
    pub d_model: usize,
    pub seq_len: usize,
    pub batch_size: usize,
    pub n_paths: usize,
    pub eval_windows: usize,
    pub eval_paths: usize,
    pub assets: Vec<String>,
    pub timeframe: String,
    /// Successive-halving rounds (1 = train each experiment once).
    pub rounds: usize,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            experiments: 4,
            epochs: 2,
            steps_per_epoch: 20,
            d_model: 16,
            seq_len: 32,
            batch_size: 8,
            n_paths: 16,
            eval_windows: 8,
            eval_paths: 1000,
            assets: vec!["BTC".into()],
            timeframe: "5m".into(),
            rounds: 2,
        }
    }
}

impl Budget {
    /// Applies the budget to a spec (architecture and learning rate are kept).
    pub fn apply(&self, spec: &mut ExperimentSpec) {
        let b = &mut spec.model.backbone;
        b.d_model = self.d_model;
        b.seq_len = self.seq_len;
        let t = &mut spec.training;
        t.epochs = self.epochs;
        t.steps_per_epoch = self.steps_per_epoch;
        t.batch_size = self.batch_size;
        t.n_paths = self.n_paths;
        t.eval_windows = self.eval_windows;
        t.eval_paths = self.eval_paths;
        t.horizon = if self.timeframe == "1m" { 60 } else { 288 };
        t.warmup_steps = t.warmup_steps.min(self.steps_per_epoch);
        spec.data.assets = self.assets.clone();
        spec.data.timeframe = self.timeframe.clone();
    }
}

/// One experiment and what came of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentRecord {
    pub name: String,
    pub fingerprint: String,
    pub spec: ExperimentSpec,
    /// Mean SN50 CRPS on the validation windows (lower is better).
    pub crps: Option<f64>,
    /// The GBM baseline's CRPS on the same windows.
    pub gbm_crps: Option<f64>,
    pub param_count: usize,
    pub epochs: usize,
    pub checkpoint: Option<String>,
    /// ok | failed
    pub status: String,
    pub error: Option<String>,
    /// True when the training loss went NaN or exploded.
    #[serde(default)]
    pub diverged: bool,
    pub seconds: f64,
}

impl ExperimentRecord {
    /// CRPS relative to GBM (< 1 beats the baseline).
    pub fn ratio(&self) -> Option<f64> {
        match (self.crps, self.gbm_crps) {
            (Some(c), Some(g)) if g > 0.0 => Some(c / g),
            _ => None,
        }
    }
}

/// A stable fingerprint of what makes an experiment distinct (architecture,
/// width, context, learning rate, horizon, data), for novelty checks.
pub fn fingerprint(spec: &ExperimentSpec) -> String {
    let key = format!(
        "{}|{}|{}|{}|{:e}|{}|{}|{}",
        spec.model.backbone.blocks.join("+").to_ascii_lowercase(),
        spec.model.head.kind.to_ascii_lowercase(),
        spec.model.backbone.d_model,
        spec.model.backbone.seq_len,
        spec.training.lr,
        spec.training.horizon,
        spec.data.assets.join("+"),
        spec.data.timeframe,
    );
    // FNV-1a, 64 bit: stable across runs and builds (unlike `DefaultHasher`).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// A readable name for an experiment.
pub fn experiment_name(spec: &ExperimentSpec) -> String {
    format!(
        "{}-{}-d{}-lr{:.0e}",
        spec.model.backbone.blocks.join("+").to_ascii_lowercase(),
        spec.model.head.kind.to_ascii_lowercase(),
        spec.model.backbone.d_model,
        spec.training.lr
    )
}

/// Trains `spec` (resuming from `out_dir` when `resume`), then scores it and
/// the GBM baseline with the exact SN50 CRPS on the validation windows. A
/// failure is recorded, not raised: the pipeline learns from it.
pub fn run_experiment(
    spec: &ExperimentSpec,
    data_dir: &Path,
    out_dir: &Path,
    resume: bool,
) -> ExperimentRecord {
    let started = std::time::Instant::now();
    let name = experiment_name(spec);
    let mut rec = ExperimentRecord {
        fingerprint: fingerprint(spec),
        name,
        spec: spec.clone(),
        crps: None,
        gbm_crps: None,
        param_count: spec.param_count().unwrap_or(0),
        epochs: 0,
        checkpoint: None,
        status: "failed".into(),
        error: None,
        diverged: false,
        seconds: 0.0,
    };
    let device = candle_core::Device::Cpu;
    let opts = train::TrainOptions {
        data_dir: data_dir.to_path_buf(),
        out_dir: out_dir.to_path_buf(),
        device: device.clone(),
        resume,
    };
    let outcome =
        (|| -> Result<(usize, bool, crate::zoo::train::Sn50Eval), crate::zoo::ZooError> {
            let result = train::train(spec, &opts, &mut |_| {})?;
            let diverged = result
                .step_losses
                .iter()
                .any(|l| !l.is_finite() || *l > 1e6);
            let r = spec.validate().map_err(crate::zoo::ZooError::Spec)?;
            let data = train::load_windows(spec, &r, data_dir)?;
            let ck = train::load_checkpoint(out_dir, &device)?;
            let eval = train::evaluate_sn50(spec, &ck.model, &data, &device)?;
            Ok((result.state.epochs_done, diverged, eval))
        })();
    match outcome {
        Ok((epochs, diverged, eval)) => {
            rec.epochs = epochs;
            rec.diverged = diverged || !eval.val_crps.is_finite();
            rec.crps = eval.val_crps.is_finite().then_some(eval.val_crps);
            rec.gbm_crps = Some(eval.gbm_crps);
            rec.checkpoint = Some(out_dir.display().to_string());
            rec.status = if rec.crps.is_some() { "ok" } else { "failed" }.into();
            if rec.crps.is_none() {
                rec.error = Some("validation CRPS is not finite (the model diverged)".into());
            }
        }
        Err(e) => {
            let msg = e.to_string();
            rec.diverged = msg.contains("NaN") || msg.contains("nan");
            rec.error = Some(msg);
        }
    }
    rec.seconds = started.elapsed().as_secs_f64();
    rec
}

/// Where a run's checkpoints go: `<out>/<run_id>/<fingerprint>`.
pub fn checkpoint_dir(out: &Path, run_id: &str, spec: &ExperimentSpec) -> PathBuf {
    out.join(run_id).join(fingerprint(spec))
}

/// Successive halving over `specs`: every spec trains for the budget's epochs;
/// the better half (by validation CRPS) continues for twice as many, and so on
/// for `rounds` rounds. Returns the final record of every experiment.
pub fn train_plan(
    specs: &[ExperimentSpec],
    budget: &Budget,
    data_dir: &Path,
    out: &Path,
    run_id: &str,
    progress: &mut dyn FnMut(&ExperimentRecord),
) -> Vec<ExperimentRecord> {
    let mut records: Vec<ExperimentRecord> = specs
        .iter()
        .map(|s| {
            let r = run_experiment(s, data_dir, &checkpoint_dir(out, run_id, s), false);
            progress(&r);
            r
        })
        .collect();
    let mut alive: Vec<usize> = (0..records.len()).collect();
    for round in 1..budget.rounds.max(1) {
        alive.retain(|&i| records[i].crps.is_some());
        alive.sort_by(|&a, &b| records[a].crps.partial_cmp(&records[b].crps).unwrap());
        alive.truncate(alive.len().div_ceil(2));
        if alive.len() <= 1 && round > 1 {
            break;
        }
        for &i in &alive {
            let mut spec = records[i].spec.clone();
            spec.training.epochs = budget.epochs << round;
            let dir = checkpoint_dir(out, run_id, &records[i].spec);
            let mut r = run_experiment(&spec, data_dir, &dir, true);
            r.fingerprint = records[i].fingerprint.clone();
            if r.crps.is_some() {
                progress(&r);
                records[i] = r;
            }
        }
    }
    records
}

/// The best record by CRPS.
pub fn best(records: &[ExperimentRecord]) -> Option<&ExperimentRecord> {
    records
        .iter()
        .filter(|r| r.crps.is_some())
        .min_by(|a, b| a.crps.partial_cmp(&b.crps).unwrap())
}
