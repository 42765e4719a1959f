//! The train stage's fan-out and fan-in: one `train-one` job per experiment of a
//! successive-halving round, which any number of trainer workers take at once.
//!
//! The `train` stage job computes the round to train from what its children have given so far
//! ([`trainer::experiments::halving`], a pure function of the plan, the budget and the
//! outcomes) and answers `JobError::WaitForChildren` with one child envelope per experiment;
//! the engine enqueues them and parks the `train` job in `waiting-children` in one script
//! (`fan_out.lua`). Each child trains one spec on the run's dataset, fetched into its worker's
//! cache (or, for a run with none, its worker's own bars) ([`TrainOneStage`]),
//! resuming from the previous round's checkpoint fetched from the store, puts its checkpoint
//! (and, when a later round may resume it, the optimizer state) in the store, and returns its
//! [`ExperimentRecord`] naming the checkpoint by reference. As each child completes, dies or is
//! cancelled, the engine records its outcome on the `train` job exactly once
//! (`child_done` in `lua/common.lua`); the last one puts the `train` job back on its stream,
//! and it runs again: the next round fans out, or the stage ends with every experiment's
//! record (a child that failed for good is a failed experiment) and the run advances.
//!
//! It does not decide which experiments survive a round (the trainer's `halving` does), keep
//! the run's permit (the keeper of runs renews it while the `train` job waits), or carry a
//! path of any machine: children hand checkpoints on by `ArtifactRef`.

use std::collections::BTreeMap;

use async_trait::async_trait;
use engine::queue::{ChildOutcome, EnqueueRequest, Queue};
use jobs::pipeline::TrainOne;
use jobs::{ArtifactRef, JobContext, JobEnvelope, JobError, JobHandler};
use publisher::artifacts::{self, ArtifactCache};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use trainer::experiments::{
    checkpoint_dir, experiment_name, failed_record, halving, run_experiment_with, ExperimentRecord,
    Halving, RoundItem, ARTIFACT_FILES, RESUME_FILES,
};
use trainer::zoo::spec::ExperimentSpec;
use trainer::WorkerDirs;

use super::{get_run, RunInfo, Task};

/// One `train-one` job of a run, as the run records it once its train stage collected it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChildRun {
    /// The job's id: `<train job id>-r<round>-e<index>`.
    pub job: String,
    pub round: u32,
    pub index: u32,
    /// The experiment's name.
    pub experiment: String,
    /// `completed`, `dead` or `cancelled`.
    pub state: String,
    /// The worker (consumer name) that ran its last attempt.
    #[serde(default)]
    pub worker: Option<String>,
    /// When its last attempt started and when it ended (Unix ms, the server's clock).
    #[serde(default)]
    pub started_at_ms: Option<u64>,
    #[serde(default)]
    pub finished_at_ms: Option<u64>,
    /// Why it failed for good, when it did.
    #[serde(default)]
    pub error: Option<String>,
}

/// What a `train-one` job returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainOneResult {
    pub round: u32,
    pub index: u32,
    /// The experiment's record; its `artifact` names the checkpoint in the store.
    pub record: ExperimentRecord,
    /// The checkpoint with the optimizer state, for a later round to resume from.
    #[serde(default)]
    pub resume: Option<ArtifactRef>,
    /// Whether it resumed from an earlier round's checkpoint (fetched from the store).
    #[serde(default)]
    pub resumed: bool,
}

/// The id of the child that trains `item` for the train job `parent`.
pub fn child_id(parent: &str, round: u32, index: u32) -> String {
    format!("{parent}-r{round}-e{index}")
}

/// The train stage's experiments, fanned out: `Err(JobError::WaitForChildren)` with the
/// children of the next round to train, or, once every round has its outcomes, every
/// experiment's record and the run's record of each child.
pub(super) async fn train_children(
    q: &Queue,
    run: &RunInfo,
    task: &Task,
    specs: &[ExperimentSpec],
    jctx: &JobContext,
) -> Result<(Vec<ExperimentRecord>, Vec<ChildRun>), JobError> {
    let parent = jctx.job_id.as_str();
    let outcomes: BTreeMap<String, ChildOutcome> = q
        .children(parent)
        .await
        .map_err(JobError::retry)?
        .into_iter()
        .map(|o| (o.id.clone(), o))
        .collect();
    // what each child gave: its record, or why it has none (it died, was cancelled, or its
    // result is not one); a failed record needs the spec it trained, which its round knows
    let results: BTreeMap<String, Result<(ExperimentRecord, Option<ArtifactRef>), String>> =
        outcomes
            .values()
            .map(|o| (o.id.clone(), read_outcome(o)))
            .collect();
    let outcome = |round: u32, index: u32| {
        let id = child_id(parent, round, index);
        Some(match results.get(&id)? {
            Ok((r, _)) => r.clone(),
            Err(why) => failed_record(&spec_of(specs, task, round, index), &run.id, why.clone()),
        })
    };
    match halving(specs, &task.options.budget, &outcome) {
        Halving::Train(items) => {
            let children = items
                .iter()
                .map(|it| child_envelope(run, parent, it, &results))
                .collect::<Result<Vec<_>, _>>()?;
            jctx.progress(json!({"stage": "train", "round": items[0].round,
                "experiments": items.len(), "waiting_for_children": true}));
            Err(JobError::WaitForChildren(children))
        }
        Halving::Done(records) => {
            let mut runs: Vec<ChildRun> = outcomes
                .values()
                .map(|o| {
                    let (round, index) = parse_child_id(parent, &o.id).unwrap_or((0, 0));
                    ChildRun {
                        job: o.id.clone(),
                        round,
                        index,
                        experiment: experiment_name(&spec_of(specs, task, round, index)),
                        state: o.state.clone(),
                        worker: o.worker.clone(),
                        started_at_ms: o.started_at_ms,
                        finished_at_ms: o.finished_at_ms,
                        error: results.get(&o.id).and_then(|r| r.clone().err()),
                    }
                })
                .collect();
            runs.sort_by_key(|c| (c.round, c.index));
            Ok((records, runs))
        }
    }
}

/// The dataset the children of the train job `parent` trained on (`spec.data.dataset` of the
/// first record they gave), if any has given one: later rounds read the same bars.
pub(super) async fn pinned_dataset(q: &Queue, parent: &str) -> Result<Option<String>, JobError> {
    Ok(q.children(parent)
        .await
        .map_err(JobError::retry)?
        .iter()
        .filter_map(|o| read_outcome(o).ok())
        .find_map(|(r, _)| r.spec.data.dataset))
}

/// The plan's spec of experiment `index` (round 0) as every round has it (only the epochs
/// change between rounds, and a failed record needs the architecture).
fn spec_of(specs: &[ExperimentSpec], task: &Task, round: u32, index: u32) -> ExperimentSpec {
    let mut s = specs[index as usize].clone();
    if round > 0 {
        s.training.epochs = task.options.budget.epochs << round;
    }
    s
}

/// Why a child has no record: it died (the engine's reason) or was cancelled.
fn failure_reason(o: &ChildOutcome) -> String {
    match o.state.as_str() {
        "dead" => format!(
            "train-one job {} failed for good: {}",
            o.id,
            o.error.as_deref().unwrap_or("no reason recorded")
        ),
        "cancelled" => format!("train-one job {} was cancelled", o.id),
        other => format!("train-one job {} ended {other} without a record", o.id),
    }
}

/// A child's record and resume checkpoint, from its result; why it has none otherwise.
fn read_outcome(o: &ChildOutcome) -> Result<(ExperimentRecord, Option<ArtifactRef>), String> {
    match o
        .result
        .clone()
        .map(serde_json::from_value::<TrainOneResult>)
    {
        Some(Ok(r)) => Ok((r.record, r.resume)),
        Some(Err(e)) => Err(format!(
            "train-one job {} ended {} without a record: {e}",
            o.id, o.state
        )),
        None => Err(failure_reason(o)),
    }
}

/// `(round, index)` of a child id of `parent`.
fn parse_child_id(parent: &str, id: &str) -> Option<(u32, u32)> {
    let rest = id.strip_prefix(parent)?.strip_prefix("-r")?;
    let (round, index) = rest.split_once("-e")?;
    Some((round.parse().ok()?, index.parse().ok()?))
}

fn child_envelope(
    run: &RunInfo,
    parent: &str,
    it: &RoundItem,
    results: &BTreeMap<String, Result<(ExperimentRecord, Option<ArtifactRef>), String>>,
) -> Result<JobEnvelope, JobError> {
    let resume_from =
        it.resume_from
            .and_then(|r| match results.get(&child_id(parent, r, it.index)) {
                Some(Ok((_, a))) => a.clone(),
                _ => None,
            });
    let job = TrainOne {
        run_id: run.id.clone(),
        step: run.attempt,
        round: it.round,
        index: it.index,
        spec: serde_json::to_value(&it.spec).expect("specs serialise"),
        resume_from,
        keep_resume: it.keep_resume,
    };
    let req = EnqueueRequest {
        job_type: <TrainOne as jobs::JobSpec>::TYPE.to_string(),
        payload: serde_json::to_value(job).expect("train-one payloads serialise"),
        id: Some(child_id(parent, it.round, it.index)),
        run_id: Some(run.id.clone()),
        bot_id: Some(run.bot.clone()),
        ..Default::default()
    };
    req.into_envelope()
        .map(|(env, _, _)| env)
        .map_err(JobError::permanent)
}

/// `train-one`: trains one experiment of a run's train stage in the worker's own directories
/// and puts its checkpoint in the store.
pub struct TrainOneStage {
    queue: Queue,
    dirs: WorkerDirs,
}

impl TrainOneStage {
    pub fn new(queue: Queue, dirs: WorkerDirs) -> Self {
        Self { queue, dirs }
    }
}

#[async_trait]
impl JobHandler for TrainOneStage {
    type Job = TrainOne;

    async fn run(&self, jctx: &JobContext, job: TrainOne) -> Result<Value, JobError> {
        let spec: ExperimentSpec = serde_json::from_value(job.spec.clone())
            .map_err(|e| JobError::Malformed(format!("field `spec`: {e}")))?;
        // a run that has ended wants no more training
        if let Some(run) = get_run(&self.queue, &job.run_id)
            .await
            .map_err(JobError::retry)?
        {
            if run.is_finished() {
                return Err(JobError::Cancelled);
            }
        }
        let dirs = &self.dirs;
        let store = super::stages::open_store(dirs)?;
        let dir = checkpoint_dir(&dirs.work_dir, &job.run_id, &spec);
        // an earlier attempt's files (a worker killed mid-training) are not this attempt's
        let _ = tokio::fs::remove_dir_all(&dir).await;
        let resume = match &job.resume_from {
            Some(a) => {
                let cache = ArtifactCache::of(dirs);
                let from = cache
                    .fetch(&*store, a)
                    .await
                    .map_err(super::stages::environment)?;
                copy_files(&from, &dir).map_err(super::stages::environment)?;
                true
            }
            None => false,
        };
        // the run's dataset, from the store into this worker's cache; else its own bars
        let data = match &spec.data.dataset {
            Some(id) => super::stages::dataset_dir(dirs, id).await?,
            None => dirs.data_dir.clone(),
        };
        let device = dirs.device.clone();
        let (progress, cancel, out) = (jctx.clone(), jctx.clone(), dir.clone());
        let name = experiment_name(&spec);
        let mut rec = tokio::task::spawn_blocking(move || {
            run_experiment_with(
                &spec,
                &data,
                &out,
                &device,
                resume,
                &mut |r| {
                    progress.progress(json!({"stage": "train", "experiment": name,
                        "epoch": r.epoch, "epochs": r.epochs, "loss": r.train_loss,
                        "val_loss": r.val_loss}))
                },
                // a cancelled run (or a lost lease, or a worker shutting down) stops
                // training within a step
                &|| cancel.is_cancelled(),
            )
            .record
        })
        .await
        .map_err(|e| JobError::retry(format!("training task failed: {e}")))?;
        if jctx.is_cancelled() {
            let _ = tokio::fs::remove_dir_all(&dir).await;
            return Err(JobError::Cancelled);
        }
        rec.run_id = Some(job.run_id.clone());
        if let Some(e) = &rec.error {
            rec.error = Some(dirs.redact(e));
        }
        let mut resume_ref = None;
        if rec.checkpoint.is_some() {
            let stored = |e: artifacts::ArtifactError| {
                JobError::retry(format!("the checkpoint could not be stored: {e}"))
            };
            rec.artifact = Some(
                artifacts::put_dir(&*store, &dir, &ARTIFACT_FILES)
                    .await
                    .map_err(stored)?,
            );
            if job.keep_resume {
                resume_ref = Some(
                    artifacts::put_dir(&*store, &dir, &RESUME_FILES)
                        .await
                        .map_err(stored)?,
                );
            }
        }
        // once in the store, the scratch copy is clutter (every reader fetches the artifact)
        rec.checkpoint = None;
        let _ = tokio::fs::remove_dir_all(&dir).await;
        if let Some(p) = dir.parent() {
            let _ = std::fs::remove_dir(p);
        }
        let out = TrainOneResult {
            round: job.round,
            index: job.index,
            record: rec,
            resume: resume_ref,
            resumed: resume,
        };
        Ok(serde_json::to_value(out).expect("results serialise"))
    }
}

/// Copies the files of `from` into `to` (created).
fn copy_files(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        if e.file_type()?.is_file() {
            std::fs::copy(e.path(), to.join(e.file_name()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_ids_name_their_round_and_experiment() {
        let id = child_id("run-r1-train-1", 2, 13);
        assert_eq!(id, "run-r1-train-1-r2-e13");
        assert_eq!(parse_child_id("run-r1-train-1", &id), Some((2, 13)));
        assert_eq!(parse_child_id("run-r1-train-2", &id), None);
    }

    #[test]
    fn a_child_that_failed_for_good_says_why() {
        let dead = ChildOutcome {
            id: "p-r0-e1".into(),
            job_type: "train-one".into(),
            state: "dead".into(),
            worker: Some("w-1".into()),
            started_at_ms: Some(1),
            finished_at_ms: Some(2),
            result: None,
            error: Some("worker lost 3 times (lease expired)".into()),
        };
        let e = read_outcome(&dead).unwrap_err();
        assert!(
            e.contains("p-r0-e1") && e.contains("failed for good") && e.contains("lease"),
            "{e}"
        );
    }
}
