//! Experiments: one spec trained and scored ([`run_experiment`]), the rounds of successive
//! halving over a plan ([`halving`]: which experiments train next, given what the earlier ones
//! gave), and what a run records of each ([`ExperimentRecord`], [`fingerprint`], [`best`]).
//!
//! It does not schedule the rounds: the run state machine (`src/pipeline`) fans each round out
//! as one job per experiment that any trainer may take, and asks [`halving`] again when they
//! have all ended.
//!
//! No Redis and no store here: the run state machine (`src/pipeline` in the binary crate)
//! keeps runs in Redis, and the publisher crate puts checkpoints in the store
//! (`publisher::artifacts`), which is how a record names its checkpoint to other machines
//! ([`ExperimentRecord::artifact`]).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::zoo::registry;
use crate::zoo::spec::ExperimentSpec;
use crate::zoo::{train, ZooError};

pub use jobs::pipeline::Budget;

/// Applies `budget` to `spec` (architecture and learning rate are kept): the planner does
/// this to each spec so that a pipeline run costs what the caller asked for.
pub fn apply_budget(budget: &Budget, spec: &mut ExperimentSpec) {
    let b = &mut spec.model.backbone;
    b.d_model = budget.d_model;
    b.seq_len = budget.seq_len;
    let t = &mut spec.training;
    t.epochs = budget.epochs;
    t.steps_per_epoch = budget.steps_per_epoch;
    t.batch_size = budget.batch_size;
    t.n_paths = budget.n_paths;
    t.eval_windows = budget.eval_windows;
    t.eval_paths = budget.eval_paths;
    t.warmup_steps = t.warmup_steps.min(budget.steps_per_epoch);
    spec.data.assets = budget.assets.clone();
    spec.set_timeframe(budget.timeframe);
}

/// The outcome of one experiment run (serialised as `"ok"` / `"failed"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Ok,
    Failed,
}

/// One experiment and what came of it: the record both the built-in pipeline
/// (kept in Redis by the engine) and the LLM agents' history (`agents::history`)
/// store. Everything but the identity is optional on input, so records written
/// by either side (or by an older build) read back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentRecord {
    pub name: String,
    /// The pipeline run (or agent session) that ran it.
    #[serde(default)]
    pub run_id: Option<String>,
    /// [`fingerprint`] of the spec.
    pub fingerprint: String,
    pub spec: ExperimentSpec,
    pub status: RunStatus,
    /// Mean SN50 CRPS on the validation windows (lower is better).
    #[serde(default)]
    pub crps: Option<f64>,
    /// The GBM baseline's CRPS on the same windows.
    #[serde(default)]
    pub gbm_crps: Option<f64>,
    /// The classical anchor's (`train::CLASSICAL_ANCHOR`, the EWMA-t with the hour-of-day
    /// profiles) CRPS on the same windows: a ratio to the GBM only counts as skill where the
    /// model also beats this.
    #[serde(default)]
    pub classical_crps: Option<f64>,
    #[serde(default)]
    pub param_count: Option<usize>,
    /// Epochs completed.
    #[serde(default)]
    pub epochs: usize,
    /// True when the training loss went NaN or exploded.
    #[serde(default)]
    pub diverged: bool,
    #[serde(default)]
    pub error: Option<String>,
    /// The checkpoint in the store (content-addressed), once it is put there: what another
    /// process or machine loads the model from.
    #[serde(default)]
    pub artifact: Option<jobs::ArtifactRef>,
    /// This process's local copy of the checkpoint (where training wrote it, or where the
    /// artifact was fetched to), if any. In-process only: never serialised, so no record that
    /// leaves the process names a path of this machine (records written with a `checkpoint`
    /// path by older builds still read; the path is ignored).
    #[serde(skip)]
    pub checkpoint: Option<PathBuf>,
    /// Wall-clock seconds of the run (training and scoring).
    #[serde(default, alias = "seconds")]
    pub training_time_s: Option<f64>,
    /// The device it trained on (`cpu`, `cuda:0`): the worker's, or the `experiment` job's.
    #[serde(default)]
    pub device: Option<String>,
    /// Training steps per second of training (scoring excluded), when it trained.
    #[serde(default)]
    pub steps_per_sec: Option<f64>,
    /// Unix seconds.
    #[serde(default)]
    pub recorded_at: i64,
}

impl ExperimentRecord {
    /// CRPS relative to GBM (< 1 beats the baseline), when both are known.
    pub fn crps_ratio(&self) -> Option<f64> {
        match (self.crps, self.gbm_crps) {
            (Some(c), Some(g)) if g > 0.0 => Some(c / g),
            _ => None,
        }
    }

    /// CRPS relative to the classical anchor (< 1 beats it), when both are known.
    pub fn classical_ratio(&self) -> Option<f64> {
        match (self.crps, self.classical_crps) {
            (Some(c), Some(a)) if a > 0.0 => Some(c / a),
            _ => None,
        }
    }

    /// Whether the run succeeded with a finite CRPS.
    pub fn scored(&self) -> bool {
        self.status == RunStatus::Ok && self.crps.is_some_and(f64::is_finite)
    }
}

/// A stable fingerprint of what makes an experiment distinct, for novelty
/// checks: blocks, head, width, context, learning rate, horizon and data
/// (assets, timeframe). Block and head names are canonicalised first, so
/// `lstm` and `LSTMBlock` are the same experiment; a component graph
/// (`graph:<name>`) is named with its document's content hash, so an edited
/// graph is a new experiment. 16 hex digits of FNV-1a (64 bit): stable across
/// runs and builds (unlike `DefaultHasher`).
pub fn fingerprint(spec: &ExperimentSpec) -> String {
    let graph = |b: &str| {
        let name = b.trim().strip_prefix(crate::zoo::spec::GRAPH_PREFIX)?;
        let doc = spec.model.components.iter().find(|c| c.name == name)?;
        Some(format!(
            "graph:{name}@{}",
            crate::zoo::graph::content_hash(doc)
        ))
    };
    let block = |b: &String| {
        registry::find_block(b)
            .map(|c| c.name.to_string())
            .or_else(|| graph(b))
            .unwrap_or_else(|| b.trim().to_ascii_lowercase())
    };
    let head = registry::find_head(&spec.model.head.kind)
        .map(|c| c.name.to_string())
        .or_else(|| graph(&spec.model.head.kind))
        .unwrap_or_else(|| spec.model.head.kind.trim().to_ascii_lowercase());
    let blocks: Vec<String> = spec.model.backbone.blocks.iter().map(block).collect();
    let assets: Vec<String> = spec
        .data
        .assets
        .iter()
        .map(|a| a.trim().to_ascii_uppercase())
        .collect();
    let key = format!(
        "{}|{}|{}|{}|{:e}|{}|{}|{}",
        blocks.join("+"),
        head,
        spec.model.backbone.d_model,
        spec.model.backbone.seq_len,
        spec.training.lr,
        spec.training.horizon,
        assets.join("+"),
        spec.data.timeframe,
    );
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

/// Now, in Unix seconds.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// What [`run_experiment`] did: the record, and training details for reports.
#[derive(Debug, Clone, PartialEq)]
pub struct ExperimentRun {
    pub record: ExperimentRecord,
    /// Validation windows scored (0 when the run failed before scoring).
    pub windows: usize,
    /// The epoch with the best validation loss.
    pub best_epoch: usize,
    /// That loss, when finite.
    pub best_val_loss: Option<f64>,
}

/// Trains `spec` on `device` (`cpu`, or `cuda[:N]` in a CUDA build) into
/// `out_dir` (resuming from it when `resume`), then scores it and the GBM
/// baseline with the exact SN50 CRPS on the validation windows. A failure
/// (an invalid spec, an unavailable device, a training error, a non-finite
/// CRPS) is recorded, not raised: the pipeline and the agents learn from it.
/// The record is named by [`experiment_name`] and has no `run_id`; callers
/// set both as they need.
pub fn run_experiment(
    spec: &ExperimentSpec,
    data_dir: &Path,
    out_dir: &Path,
    device: &str,
    resume: bool,
) -> ExperimentRun {
    run_experiment_with(
        spec,
        data_dir,
        out_dir,
        device,
        resume,
        &mut |_| {},
        &|| false,
    )
}

/// [`run_experiment`], calling `on_epoch` after every training epoch.
pub fn run_experiment_with(
    spec: &ExperimentSpec,
    data_dir: &Path,
    out_dir: &Path,
    device: &str,
    resume: bool,
    on_epoch: &mut dyn FnMut(&train::EpochReport),
    stop: &dyn Fn() -> bool,
) -> ExperimentRun {
    let started = std::time::Instant::now();
    let mut run = ExperimentRun {
        record: ExperimentRecord {
            device: Some(device.to_string()),
            ..untrained(spec)
        },
        windows: 0,
        best_epoch: 0,
        best_val_loss: None,
    };
    let mut train_s = 0.0;
    let outcome = (|| -> Result<(train::TrainResult, bool, train::Sn50Eval), ZooError> {
        spec.validate().map_err(ZooError::Spec)?;
        let device = crate::zoo::device(device)?;
        let opts = train::TrainOptions {
            data_dir: data_dir.to_path_buf(),
            out_dir: out_dir.to_path_buf(),
            device: device.clone(),
            resume,
        };
        let t0 = std::time::Instant::now();
        let result = train::train_observed(spec, &opts, &mut Observe { on_epoch, stop })?;
        train_s = t0.elapsed().as_secs_f64();
        let diverged = result
            .step_losses
            .iter()
            .any(|l| !l.is_finite() || *l > 1e6);
        let data = train::load_windows(spec, data_dir)?;
        let ck = train::load_checkpoint(out_dir, &device)?;
        let eval = train::evaluate_sn50(spec, &ck.model, &data, &device)?;
        Ok((result, diverged, eval))
    })();
    let rec = &mut run.record;
    match outcome {
        Ok((result, diverged, eval)) => {
            rec.param_count = Some(result.param_count);
            rec.epochs = result.state.epochs_done;
            rec.diverged = diverged || !eval.val_crps.is_finite();
            rec.crps = eval.val_crps.is_finite().then_some(eval.val_crps);
            rec.gbm_crps = eval.gbm_crps.is_finite().then_some(eval.gbm_crps);
            rec.classical_crps = eval.anchor_crps.is_finite().then_some(eval.anchor_crps);
            rec.checkpoint = Some(out_dir.to_path_buf());
            rec.steps_per_sec = (train_s > 0.0 && !result.step_losses.is_empty())
                .then(|| result.step_losses.len() as f64 / train_s);
            if rec.crps.is_some() {
                rec.status = RunStatus::Ok;
            } else {
                rec.error = Some("validation CRPS is not finite (the model diverged)".into());
            }
            run.windows = eval.windows;
            run.best_epoch = result.state.best_epoch;
            run.best_val_loss = result
                .state
                .best_val_loss
                .is_finite()
                .then_some(result.state.best_val_loss);
        }
        Err(e) => {
            let msg = e.to_string();
            rec.diverged = msg.contains("NaN") || msg.contains("nan");
            rec.error = Some(msg);
        }
    }
    rec.training_time_s = Some(started.elapsed().as_secs_f64());
    run
}

/// The files of a checkpoint folder that another machine needs to load, check and publish the
/// model (the optimizer state and last-epoch weights, for resuming, stay behind).
pub const ARTIFACT_FILES: [&str; 3] = [train::WEIGHTS_FILE, train::SPEC_FILE, train::STATE_FILE];

/// Where a run's checkpoints go: `<out>/<run_id>/<fingerprint>`.
pub fn checkpoint_dir(out: &Path, run_id: &str, spec: &ExperimentSpec) -> PathBuf {
    out.join(run_id).join(fingerprint(spec))
}

/// The files a later successive-halving round resumes from, on any machine: the checkpoint
/// ([`ARTIFACT_FILES`]) plus the last epoch's weights and the optimizer's state.
pub const RESUME_FILES: [&str; 5] = [
    train::WEIGHTS_FILE,
    train::SPEC_FILE,
    train::STATE_FILE,
    train::LAST_WEIGHTS_FILE,
    train::OPTIM_FILE,
];

/// One experiment of one successive-halving round: what one trainer trains (a `train-one`
/// job of the pipeline).
#[derive(Debug, Clone, PartialEq)]
pub struct RoundItem {
    /// The round (0 = first).
    pub round: u32,
    /// The experiment's index in the plan.
    pub index: u32,
    /// The plan's spec with this round's epochs.
    pub spec: ExperimentSpec,
    /// The earlier round whose checkpoint of this experiment it resumes from (`None` in the
    /// first round).
    pub resume_from: Option<u32>,
    /// Whether a later round may resume from this one (its optimizer state is worth keeping).
    pub keep_resume: bool,
}

/// What successive halving does next: train a round's experiments, or the final records.
#[derive(Debug, Clone, PartialEq)]
pub enum Halving {
    Train(Vec<RoundItem>),
    Done(Vec<ExperimentRecord>),
}

/// Successive halving over `specs`, one round at a time: every spec trains for the budget's
/// epochs; the better half (by validation CRPS) continues for twice as many, resuming from
/// its checkpoint, and so on for the budget's `rounds` (one round for a single spec).
/// `outcome(round, index)` is the record of an item that has trained (failed or not). The
/// answer is the first round with an item that has no outcome yet (every item of it, so the
/// caller can train them at once, anywhere), or the final record of every experiment once all
/// rounds have one: an experiment's record is its last round that scored, under its
/// first-round fingerprint. Deterministic in its arguments, so the caller keeps no state but
/// the outcomes.
pub fn halving(
    specs: &[ExperimentSpec],
    budget: &Budget,
    outcome: &dyn Fn(u32, u32) -> Option<ExperimentRecord>,
) -> Halving {
    let rounds = if specs.len() == 1 {
        1
    } else {
        budget.rounds.max(1) as u32
    };
    let first: Vec<RoundItem> = specs
        .iter()
        .enumerate()
        .map(|(i, s)| RoundItem {
            round: 0,
            index: i as u32,
            spec: s.clone(),
            resume_from: None,
            keep_resume: rounds > 1,
        })
        .collect();
    let Some(mut records) = first
        .iter()
        .map(|it| outcome(0, it.index))
        .collect::<Option<Vec<_>>>()
    else {
        return Halving::Train(first);
    };
    let mut from = vec![0u32; records.len()];
    let mut alive: Vec<usize> = (0..records.len()).collect();
    for round in 1..rounds {
        alive.retain(|&i| records[i].crps.is_some());
        alive.sort_by(|&a, &b| {
            let c = |i: usize| records[i].crps.unwrap_or(f64::INFINITY);
            c(a).total_cmp(&c(b))
        });
        alive.truncate(alive.len().div_ceil(2));
        if alive.is_empty() || (alive.len() <= 1 && round > 1) {
            break;
        }
        let items: Vec<RoundItem> = alive
            .iter()
            .map(|&i| {
                let mut spec = records[i].spec.clone();
                spec.training.epochs = budget.epochs << round;
                RoundItem {
                    round,
                    index: i as u32,
                    spec,
                    resume_from: Some(from[i]),
                    keep_resume: round + 1 < rounds,
                }
            })
            .collect();
        let Some(got) = items
            .iter()
            .map(|it| outcome(round, it.index))
            .collect::<Option<Vec<_>>>()
        else {
            return Halving::Train(items);
        };
        for (it, mut r) in items.iter().zip(got) {
            let i = it.index as usize;
            if r.crps.is_some() {
                r.fingerprint = records[i].fingerprint.clone();
                records[i] = r;
                from[i] = round;
            }
        }
    }
    Halving::Done(records)
}

/// The record of an experiment that never trained (its job failed for good): failed, with
/// `error`, for the run's record and the planner's history.
pub fn failed_record(spec: &ExperimentSpec, run_id: &str, error: String) -> ExperimentRecord {
    ExperimentRecord {
        run_id: Some(run_id.to_string()),
        error: Some(error),
        ..untrained(spec)
    }
}

/// The record of `spec` before it trains: failed, with nothing measured.
fn untrained(spec: &ExperimentSpec) -> ExperimentRecord {
    ExperimentRecord {
        name: experiment_name(spec),
        run_id: None,
        fingerprint: fingerprint(spec),
        spec: spec.clone(),
        status: RunStatus::Failed,
        crps: None,
        gbm_crps: None,
        classical_crps: None,
        param_count: spec.param_count().ok(),
        epochs: 0,
        diverged: false,
        error: None,
        artifact: None,
        checkpoint: None,
        training_time_s: None,
        device: None,
        steps_per_sec: None,
        recorded_at: unix_now(),
    }
}

/// The observer [`run_experiment_with`] trains under: each epoch to `on_epoch`, stopping
/// when `stop` says so.
struct Observe<'a> {
    on_epoch: &'a mut dyn FnMut(&train::EpochReport),
    stop: &'a dyn Fn() -> bool,
}

impl train::TrainObserver for Observe<'_> {
    fn epoch(&mut self, e: &train::EpochReport) {
        (self.on_epoch)(e)
    }
    fn stop(&self) -> bool {
        (self.stop)()
    }
}

/// The best successful record by CRPS (lowest first).
pub fn best(records: &[ExperimentRecord]) -> Option<&ExperimentRecord> {
    records.iter().filter(|r| r.scored()).min_by(|a, b| {
        a.crps
            .unwrap_or(f64::INFINITY)
            .total_cmp(&b.crps.unwrap_or(f64::INFINITY))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halving_trains_a_round_at_a_time_and_keeps_the_better_half() {
        let specs: Vec<ExperimentSpec> =
            ["LSTMBlock", "TransformerBlock", "TCNBlock", "WaveNetBlock"]
                .iter()
                .map(|b| ExperimentSpec::new(&[b], "GBMHead"))
                .collect();
        let budget = Budget {
            rounds: 2,
            epochs: 3,
            ..Budget::default()
        };
        let crps0 = [4.0, 1.0, 3.0, 2.0];
        let scored = |round: u32, i: u32, crps: Option<f64>| {
            let mut r = failed_record(&specs[i as usize], "r", "x".into());
            r.crps = crps;
            r.status = RunStatus::Ok;
            r.epochs = 3 << round;
            r.fingerprint = format!("round{round}");
            r
        };
        // nothing trained yet: the whole first round, each keeping what round 1 resumes
        let Halving::Train(first) = halving(&specs, &budget, &|_, _| None) else {
            panic!("the first round trains first")
        };
        assert_eq!(first.len(), 4);
        assert!(first
            .iter()
            .all(|it| it.round == 0 && it.resume_from.is_none() && it.keep_resume));
        // round 0 done: the better half (indices 1 and 3) resumes for twice the epochs
        let round0 =
            |round: u32, i: u32| (round == 0).then(|| scored(0, i, Some(crps0[i as usize])));
        let Halving::Train(second) = halving(&specs, &budget, &round0) else {
            panic!("round 1 follows")
        };
        let idx: Vec<u32> = second.iter().map(|it| it.index).collect();
        assert_eq!(idx, [1, 3]);
        assert!(second.iter().all(|it| it.round == 1
            && it.spec.training.epochs == 6
            && it.resume_from == Some(0)
            && !it.keep_resume));
        // round 1 done: index 1 improved, index 3 failed and keeps its round-0 record
        let all = |round: u32, i: u32| match round {
            0 => Some(scored(0, i, Some(crps0[i as usize]))),
            _ => Some(scored(1, i, (i == 1).then_some(0.5))),
        };
        let Halving::Done(recs) = halving(&specs, &budget, &all) else {
            panic!("two rounds are all")
        };
        assert_eq!(recs.len(), 4);
        assert_eq!((recs[1].crps, recs[1].epochs), (Some(0.5), 6));
        assert_eq!(
            recs[1].fingerprint, "round0",
            "the first round's fingerprint is kept"
        );
        assert_eq!((recs[3].crps, recs[3].epochs), (Some(2.0), 3));
        // a single spec trains once
        let Halving::Train(one) = halving(&specs[..1], &budget, &|_, _| None) else {
            panic!()
        };
        assert!(!one[0].keep_resume);
    }

    #[test]
    fn records_carry_an_artifact_and_never_a_local_path() {
        let spec = ExperimentSpec::new(&["LSTMBlock"], "GBMHead");
        let mut rec = ExperimentRecord {
            name: experiment_name(&spec),
            run_id: Some("r1".into()),
            fingerprint: fingerprint(&spec),
            spec,
            status: RunStatus::Ok,
            crps: Some(1.0),
            gbm_crps: Some(2.0),
            classical_crps: None,
            param_count: None,
            epochs: 1,
            diverged: false,
            error: None,
            artifact: Some(jobs::ArtifactRef::of_manifest(&"1f".repeat(32), 180)),
            checkpoint: Some(PathBuf::from("/home/worker-a/runs/r1/abc")),
            training_time_s: None,
            device: Some("cpu".into()),
            steps_per_sec: Some(12.5),
            recorded_at: 1,
        };
        let v = serde_json::to_value(&rec).unwrap();
        assert!(v.get("checkpoint").is_none(), "{v}");
        assert_eq!(
            v["artifact"]["key"],
            format!("artifacts/sha256/{}", "1f".repeat(32))
        );
        assert!(!v.to_string().contains("/home/"), "{v}");
        // a record an older build wrote, with a local path: it reads, and the path is dropped
        let mut old = v.clone();
        old["checkpoint"] = "/old/machine/runs/r1/abc".into();
        for field in ["artifact", "device", "steps_per_sec"] {
            old.as_object_mut().unwrap().remove(field);
        }
        let back: ExperimentRecord = serde_json::from_value(old).unwrap();
        assert_eq!((back.checkpoint, back.artifact), (None, None));
        assert_eq!((back.device, back.steps_per_sec), (None, None));
        assert_eq!(v["device"], "cpu");
        rec.checkpoint = None;
        assert_eq!(serde_json::from_value::<ExperimentRecord>(v).unwrap(), rec);
    }
}
