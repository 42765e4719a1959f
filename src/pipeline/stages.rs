//! The stage handlers: one per stage job type, each a thin shell around a
//! built-in agent of `workers::pipeline`, with the run bookkeeping around it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use jobs::pipeline::{Check, Debug, Plan, Publish, StageJob, Train};
use jobs::{JobContext, JobError, JobHandler, Registry};
use serde_json::{json, Value};
use workers::pipeline::{checker, debugger, planner, publisher, train_plan};

use super::{
    experiment_history, get_run, record_experiments, stage_envelope, summarize, RunInfo,
    StageRecord, Task,
};
use crate::queue::Queue;
use crate::semaphore::{Permit, RedisSemaphore, TryAcquire};

/// A run's permit lease: long enough to cover the hand-over between stages.
pub const RUN_LEASE: Duration = Duration::from_secs(120);

/// What a stage decided.
enum Next {
    Stage(&'static str, u32),
    Finish {
        success: bool,
        error: Option<String>,
    },
}

struct Ctx {
    queue: Queue,
}

/// Registers the five stage handlers on `registry`.
pub fn register(registry: &mut Registry, queue: Queue) {
    let ctx = Arc::new(Ctx { queue });
    registry
        .register(Stage::<Plan>::new(ctx.clone()))
        .register(Stage::<Train>::new(ctx.clone()))
        .register(Stage::<Check>::new(ctx.clone()))
        .register(Stage::<Debug>::new(ctx.clone()))
        .register(Stage::<Publish>::new(ctx));
}

struct Stage<J> {
    ctx: Arc<Ctx>,
    _job: std::marker::PhantomData<fn() -> J>,
}

impl<J> Stage<J> {
    fn new(ctx: Arc<Ctx>) -> Self {
        Self {
            ctx,
            _job: std::marker::PhantomData,
        }
    }
}

macro_rules! handler {
    ($ty:ty, $name:literal) => {
        #[async_trait]
        impl JobHandler for Stage<$ty> {
            type Job = $ty;
            async fn run(&self, jctx: &JobContext, job: $ty) -> Result<Value, JobError> {
                run_stage(&self.ctx, $name, job.0, jctx).await
            }
        }
    };
}
handler!(Plan, "plan");
handler!(Train, "train");
handler!(Check, "check");
handler!(Debug, "debug");
handler!(Publish, "publish");

fn transient(e: impl std::fmt::Display) -> JobError {
    JobError::retry(e)
}

/// How long a run that is waiting for a permit keeps its place in line
/// between two polls (its stage job comes back every [`DEFER`]).
pub const WAITER_TTL: Duration = Duration::from_secs(60);
/// How soon a stage job waiting for a permit is tried again.
pub const DEFER: Duration = Duration::from_millis(500);

/// Takes (or keeps) the run's permit. A run over the limit keeps its place in
/// line and its stage job is deferred — it does not sit in a worker slot,
/// which would starve the stages of the runs that hold permits.
async fn permit(ctx: &Ctx, run: &RunInfo) -> Result<Permit, JobError> {
    let mut sem = RedisSemaphore::new(ctx.queue.clone(), crate::semaphore::PIPELINE);
    sem.lease = RUN_LEASE;
    sem.waiter_ttl = WAITER_TTL;
    match sem.try_acquire(&run.id, true).await.map_err(transient)? {
        TryAcquire::Granted(_) => sem
            .acquire(&run.id, None)
            .await
            .map_err(transient)?
            .ok_or_else(|| JobError::retry("permit lost right after it was granted")),
        TryAcquire::Waiting(pos) => Err(JobError::Defer {
            retry_in_ms: DEFER.as_millis() as u64,
            reason: format!(
                "run {} is waiting for a pipeline permit (position {pos})",
                run.id
            ),
        }),
        TryAcquire::Refused => Err(JobError::retry("the semaphore refused a waiter")),
    }
}

async fn run_stage(
    ctx: &Ctx,
    stage: &'static str,
    job: StageJob,
    jctx: &JobContext,
) -> Result<Value, JobError> {
    let q = &ctx.queue;
    let Some(run) = get_run(q, &job.run_id).await.map_err(transient)? else {
        return Err(JobError::permanent(format!("no run {:?}", job.run_id)));
    };
    if run.is_finished() {
        return Ok(json!({"skipped": format!("run is {}", run.state)}));
    }
    if run.stage != stage || run.attempt != job.attempt {
        return Ok(json!({"skipped": format!(
            "stale: the run is at {}#{}, this job is {stage}#{}", run.stage, run.attempt, job.attempt
        )}));
    }
    let Some(mut task) = run.task.clone() else {
        return Err(JobError::permanent(format!(
            "run {} has an unreadable task",
            run.id
        )));
    };
    let permit = permit(ctx, &run).await?;
    let started = Instant::now();
    jctx.progress(json!({"stage": stage, "attempt": job.attempt}));
    let (next, note, ok) = match stage {
        "plan" => plan(q, &run, &mut task).await?,
        "train" => train(q, &run, &mut task, jctx).await?,
        "check" => check(&run, &mut task).await?,
        "debug" => debug(&run, &mut task).await?,
        "publish" => publish(&run, &mut task).await?,
        other => return Err(JobError::permanent(format!("unknown stage {other}"))),
    };
    task.stages.push(StageRecord {
        stage: stage.into(),
        attempt: job.attempt,
        ok,
        seconds: started.elapsed().as_secs_f64(),
        note: note.clone(),
    });
    let advanced = advance(q, &run, stage, job.attempt, &task, next).await?;
    let finished = advanced.1;
    if finished || advanced.0 < 0 {
        let _ = permit.release().await;
    }
    Ok(json!({"stage": stage, "attempt": job.attempt, "ok": ok, "note": note}))
}

/// Records the stage's outcome and enqueues the next one (one script).
/// Returns (script result, run finished).
async fn advance(
    q: &Queue,
    run: &RunInfo,
    stage: &str,
    attempt: u32,
    task: &Task,
    next: Next,
) -> Result<(i64, bool), JobError> {
    let ttl = q.config().result_ttl.as_millis() as u64;
    let (new_stage, new_attempt, state, summary, env) = match &next {
        Next::Stage(s, a) => {
            let env = stage_envelope(s, &run.id, *a, &task.options, &run.bot)
                .map_err(|e| JobError::permanent(e.to_string()))?;
            (s.to_string(), *a, String::new(), String::new(), Some(env))
        }
        Next::Finish { success, error } => {
            let summary = summarize(&run.id, task, *success, error.as_deref());
            (
                "done".to_string(),
                attempt,
                if *success { "succeeded" } else { "failed" }.to_string(),
                summary.to_string(),
                None,
            )
        }
    };
    let task_json = serde_json::to_string(task).expect("tasks serialise");
    let r: i64 = q
        .retrying("advance run", |mut c| {
            let mut inv = q.scripts().run_advance.prepare_invoke();
            inv.arg(q.prefix())
                .arg(ttl)
                .arg(&run.id)
                .arg(stage)
                .arg(attempt)
                .arg(&new_stage)
                .arg(new_attempt)
                .arg(&task_json)
                .arg(&state)
                .arg(&summary);
            match &env {
                Some(e) => inv.arg(&e.job_type).arg(&e.id).arg(e.to_json()),
                None => inv.arg("").arg("").arg(""),
            };
            async move { Ok(inv.invoke_async(&mut c).await?) }
        })
        .await
        .map_err(transient)?;
    Ok((r, matches!(next, Next::Finish { .. })))
}

type StageOut = (Next, String, bool);

async fn plan(q: &Queue, run: &RunInfo, task: &mut Task) -> Result<StageOut, JobError> {
    let history = experiment_history(q, 500).await.map_err(transient)?;
    let seed = task.options.seed ^ run.created_at_ms;
    let p = planner::plan(&history, &task.options.budget, seed);
    let note = format!(
        "{} experiments planned from a history of {}",
        p.experiments.len(),
        history.len()
    );
    task.plan = Some(p);
    Ok((Next::Stage("train", run.attempt), note, true))
}

async fn train(
    q: &Queue,
    run: &RunInfo,
    task: &mut Task,
    jctx: &JobContext,
) -> Result<StageOut, JobError> {
    let specs = match task.fix.take() {
        Some(fix) => vec![fix],
        None => task
            .plan
            .as_ref()
            .map(|p| p.experiments.clone())
            .unwrap_or_default(),
    };
    if specs.is_empty() {
        return Ok((
            Next::Finish {
                success: false,
                error: Some("nothing to train: the plan is empty".into()),
            },
            "empty plan".into(),
            false,
        ));
    }
    let opts = task.options.clone();
    let run_id = run.id.clone();
    let progress_ctx = jctx.clone();
    let records = tokio::task::spawn_blocking(move || {
        let mut done = 0usize;
        let mut budget = opts.budget.clone();
        if specs.len() == 1 {
            budget.rounds = 1;
        }
        train_plan(
            &specs,
            &budget,
            &opts.data_dir,
            &opts.out_dir,
            &run_id,
            &mut |r| {
                done += 1;
                progress_ctx.progress(json!({"stage": "train", "experiments_done": done,
                "last": r.name, "crps": r.crps, "gbm_crps": r.gbm_crps}));
            },
        )
    })
    .await
    .map_err(|e| JobError::retry(format!("training task failed: {e}")))?;
    record_experiments(q, &records).await.map_err(transient)?;
    let ok = records.iter().filter(|r| r.crps.is_some()).count();
    let note = format!("{ok} of {} experiments trained and scored", records.len());
    task.results.extend(records);
    if task.best().is_none() {
        let errors: Vec<String> = task
            .results
            .iter()
            .filter_map(|r| r.error.clone())
            .take(3)
            .collect();
        return Ok((
            Next::Finish {
                success: false,
                error: Some(format!(
                    "no experiment trained successfully: {}",
                    errors.join("; ")
                )),
            },
            note,
            false,
        ));
    }
    Ok((Next::Stage("check", run.attempt), note, ok > 0))
}

async fn check(run: &RunInfo, task: &mut Task) -> Result<StageOut, JobError> {
    let best = task.best().cloned().expect("train leaves a best result");
    let data_dir = task.options.data_dir.clone();
    let report = tokio::task::spawn_blocking(move || checker::check(&best, &data_dir))
        .await
        .map_err(|e| JobError::retry(format!("check task failed: {e}")))?;
    if report.passed {
        task.problems.clear();
        let next = if task.options.publish {
            Next::Stage("publish", run.attempt)
        } else {
            Next::Finish {
                success: true,
                error: None,
            }
        };
        return Ok((next, "passed".into(), true));
    }
    let note = report.problems.join("; ");
    task.problems = report.problems;
    if run.attempt + 1 >= task.options.retries {
        return Ok((
            Next::Finish {
                success: false,
                error: Some(format!(
                    "check failed after {} rounds: {note}",
                    run.attempt + 1
                )),
            },
            note,
            false,
        ));
    }
    Ok((Next::Stage("debug", run.attempt + 1), note, false))
}

async fn debug(run: &RunInfo, task: &mut Task) -> Result<StageOut, JobError> {
    let best = task
        .best()
        .cloned()
        .expect("a check failed on a best result");
    match debugger::debug(&best, &task.problems, run.attempt) {
        Some(fix) => {
            let note = fix.changes.join("; ");
            task.fix = Some(fix.spec);
            Ok((Next::Stage("train", run.attempt), note, true))
        }
        None => Ok((
            Next::Finish {
                success: false,
                error: Some("the debugger found nothing to change".into()),
            },
            "no fix".into(),
            false,
        )),
    }
}

async fn publish(run: &RunInfo, task: &mut Task) -> Result<StageOut, JobError> {
    let best = task.best().cloned().expect("check passed on a best result");
    let store = task.options.store_dir.clone();
    let summary = summarize(&run.id, task, true, None);
    let run_id = run.id.clone();
    let published =
        tokio::task::spawn_blocking(move || publisher::publish(&store, &run_id, &best, &summary))
            .await
            .map_err(|e| JobError::retry(format!("publish task failed: {e}")))?
            .map_err(|e| JobError::retry(format!("publish: {e}")))?;
    let note = format!("published to {}", published.model_dir);
    task.published = Some(published);
    Ok((
        Next::Finish {
            success: true,
            error: None,
        },
        note,
        true,
    ))
}
