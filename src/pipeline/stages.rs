//! The stage handlers: one per stage job type, each a thin shell around a
//! built-in agent of `workers::pipeline`, with the run bookkeeping around it.
//!
//! Every handler works in its worker's own directories ([`WorkerDirs`]): bars from its data
//! directory, checkpoints trained under its work directory and put in the store as artifacts
//! before the run records them, checkpoints to check or publish fetched from the store into
//! its cache. Nothing a stage writes to the run names a path of its machine.

use std::sync::Arc;
use std::time::{Duration, Instant};

use agents::builtin::{checker, debugger, planner};
use async_trait::async_trait;
use jobs::pipeline::{Author, Check, Debug, Plan, Publish, StageJob, StartRun, Train};
use jobs::{JobContext, JobError, JobHandler, Registry};
use publisher::artifacts::{self, ArtifactCache};
use serde_json::{json, Value};
use trainer::WorkerDirs;

use super::llm;
use super::{
    experiment_history, get_run, record_experiments, stage_envelope, summarize, RunInfo,
    StageRecord, Task,
};
use engine::queue::Queue;
use engine::semaphore::{Permit, RedisSemaphore, TryAcquire};

/// A run's permit lease when `SYNTH_CITY_RUN_LEASE_MS` does not set one: long enough to cover
/// the hand-over between stages. While a stage runs, its worker renews the permit; while the
/// next stage job waits, [`keep_runs`] does.
pub const DEFAULT_RUN_LEASE: Duration = Duration::from_secs(120);

/// A run's permit lease: `SYNTH_CITY_RUN_LEASE_MS` (at least 1000), else [`DEFAULT_RUN_LEASE`].
/// Every process of a deployment must agree on it.
pub fn run_lease() -> Duration {
    static LEASE: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    *LEASE.get_or_init(|| {
        std::env::var("SYNTH_CITY_RUN_LEASE_MS")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|&ms| ms >= 1000)
            .map(Duration::from_millis)
            .unwrap_or(DEFAULT_RUN_LEASE)
    })
}

/// What a stage decided.
enum Next {
    Stage(&'static str),
    Finish {
        success: bool,
        error: Option<String>,
    },
}

struct Ctx {
    queue: Queue,
    dirs: WorkerDirs,
}

/// Registers the `run` handler, the five stage handlers and `train-one` (the train stage's
/// children) on `registry`; the stages work in `dirs`.
pub fn register(registry: &mut Registry, queue: Queue, dirs: WorkerDirs) {
    registry.register(Starter {
        queue: queue.clone(),
    });
    let ctx = Arc::new(Ctx { queue, dirs });
    registry
        .register(Stage::<Plan>::new(ctx.clone()))
        .register(Stage::<Train>::new(ctx.clone()))
        .register(Stage::<Check>::new(ctx.clone()))
        .register(Stage::<Debug>::new(ctx.clone()))
        .register(Stage::<Publish>::new(ctx.clone()))
        .register(Stage::<Author>::new(ctx.clone()))
        .register(super::fanout::TrainOneStage::new(
            ctx.queue.clone(),
            ctx.dirs.clone(),
        ));
}

/// `run`: creates a pipeline run from a [`StartRun`] job. The run's id derives from the job's
/// id, so a replay of the job (or a second delivery after a crash) finds the run there and
/// starts no other.
struct Starter {
    queue: Queue,
}

#[async_trait]
impl JobHandler for Starter {
    type Job = StartRun;

    async fn run(&self, jctx: &JobContext, job: StartRun) -> Result<Value, JobError> {
        let mut o = super::RunOptions::default();
        super::apply_request(&mut o, &job.run).map_err(JobError::permanent)?;
        let bot = job.bot_id.as_deref().unwrap_or("default");
        let run_id = run_id_for_job(&jctx.job_id);
        let created = super::create_run_with_id(&self.queue, o, bot, &run_id)
            .await
            .map_err(|e| {
                if e.is_transient() {
                    transient(e)
                } else {
                    JobError::permanent(e)
                }
            })?;
        Ok(json!({"run_id": run_id, "created": created}))
    }
}

/// The id of the run a `run` job starts: `r` and 11 hex digits of the job id's SHA-256 (the
/// bridge answers it when a bot enqueues a `run` job).
pub fn run_id_for_job(job_id: &str) -> String {
    format!(
        "r{}",
        &publisher::store::sha256_hex(job_id.as_bytes())[..11]
    )
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
handler!(Author, "author");

fn transient(e: impl std::fmt::Display) -> JobError {
    JobError::retry(e)
}

/// A failure of the machine or the store around a stage (an artifact that cannot be fetched):
/// retried, then dead-lettered with this cause; never a problem for the debugger.
pub(super) fn environment(e: impl std::fmt::Display) -> JobError {
    JobError::retry(format!("environment: {e}"))
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
    let mut sem = RedisSemaphore::new(ctx.queue.clone(), engine::semaphore::PIPELINE);
    sem.lease = run_lease();
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
            "stale: the run is at {} step {}, this job is {stage} step {}",
            run.stage, run.attempt, job.attempt
        )}));
    }
    let Some(mut task) = run.task.clone() else {
        return Err(JobError::permanent(format!(
            "run {} has an unreadable task",
            run.id
        )));
    };
    let Some(spec) = task.current().cloned() else {
        return Err(JobError::permanent(format!(
            "run {} points past the end of its pipeline definition",
            run.id
        )));
    };
    let permit = permit(ctx, &run).await?;
    let started = Instant::now();
    let attempt = task.attempt(stage);
    let temperature = task.temperature(stage);
    jctx.progress(json!({"stage": stage, "name": spec.name, "attempt": attempt}));
    // an authored agent's stage runs as an LLM stage whatever the run's mode
    let llm_mode = task.options.agents == llm::AgentMode::Llm
        || (spec.is_authored() && spec.job_type() == stage);
    let children_before = task.children.len();
    let (next, note, ok) = match stage {
        "plan" | "train" | "check" | "debug" | "publish" if llm_mode => {
            llm_stage(ctx, &run, &mut task, stage, temperature, jctx).await?
        }
        "plan" => plan(ctx, &run, &mut task).await?,
        "train" => train(ctx, &run, &mut task, jctx).await?,
        "check" => check(ctx, &mut task).await?,
        "debug" => debug(&mut task).await?,
        "publish" => publish(ctx, &run, &mut task).await?,
        "author" => author(ctx, &run, &mut task, temperature).await?,
        other => return Err(JobError::permanent(format!("unknown stage {other}"))),
    };
    // a fanned-out train stage took from its first child's start to its last child's end
    let seconds = children_span(&task.children[children_before..])
        .unwrap_or(0.0)
        .max(started.elapsed().as_secs_f64());
    task.stages.push(StageRecord {
        stage: stage.into(),
        name: spec.name.clone(),
        attempt,
        temperature,
        ok,
        seconds,
        note: note.clone(),
    });
    let advanced = advance(q, &ctx.dirs, &run, stage, job.attempt, &task, next).await?;
    let finished = advanced.1;
    if finished || advanced.0 < 0 {
        let _ = permit.release().await;
    }
    Ok(json!({"stage": stage, "name": spec.name, "attempt": attempt, "ok": ok, "note": note}))
}

/// Seconds from the first child's start to the last child's end (the server's clock).
fn children_span(children: &[super::fanout::ChildRun]) -> Option<f64> {
    let start = children.iter().filter_map(|c| c.started_at_ms).min()?;
    let end = children.iter().filter_map(|c| c.finished_at_ms).max()?;
    Some(end.saturating_sub(start) as f64 / 1000.0)
}

/// The engine's keeper of runs between stages, run by every worker that handles a stage type
/// until `stop`: every quarter lease, `run_keepalive.lua` extends the permits of runs whose
/// current stage job is still queued or running, and the runs whose stage job can no longer
/// run (dead, cancelled, or gone) are failed, which frees their permits (their summaries go to
/// the store of `dirs`).
pub async fn keep_runs(queue: Queue, dirs: WorkerDirs, stop: tokio_util::sync::CancellationToken) {
    let every = run_lease() / 4;
    loop {
        match keep_runs_once(&queue, &dirs).await {
            Ok(failed) => {
                for id in failed {
                    tracing::warn!(run = %id, "failed a run whose stage job can no longer run");
                }
            }
            Err(e) => tracing::warn!(%e, "run keeper"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// One pass of [`keep_runs`]; returns the runs it failed.
pub async fn keep_runs_once(
    q: &Queue,
    dirs: &WorkerDirs,
) -> Result<Vec<String>, engine::queue::QueueError> {
    let stuck: Vec<String> = q
        .retrying("run keepalive", |mut c| {
            let mut inv = q.scripts().run_keepalive.prepare_invoke();
            inv.arg(q.prefix()).arg(run_lease().as_millis() as u64);
            async move { Ok(inv.invoke_async(&mut c).await?) }
        })
        .await?;
    let mut failed = Vec::new();
    for s in stuck.chunks_exact(4) {
        let (run_id, job, state, error) = (&s[0], &s[1], &s[2], &s[3]);
        let Some(run) = get_run(q, run_id).await? else {
            continue;
        };
        let Some(task) = run.task.clone() else {
            continue;
        };
        let why = match state.as_str() {
            "missing" => format!("its {} stage job {job} is gone", run.stage),
            "dead" => format!("its {} stage job {job} is dead: {error}", run.stage),
            other => format!(
                "its {} stage job {job} is {other} and cannot advance it",
                run.stage
            ),
        };
        let next = Next::Finish {
            success: false,
            error: Some(why),
        };
        // a run that moved on meanwhile is left alone (the script checks stage and step)
        match advance(q, dirs, &run, &run.stage, run.attempt, &task, next).await {
            Ok((1, _)) => failed.push(run.id.clone()),
            Ok(_) => {}
            Err(e) => tracing::warn!(run = %run.id, error = ?e, "could not fail a stuck run"),
        }
    }
    Ok(failed)
}

/// Records the stage's outcome and enqueues the next one (one script).
/// Returns (script result, run finished).
async fn advance(
    q: &Queue,
    dirs: &WorkerDirs,
    run: &RunInfo,
    stage: &str,
    step: u32,
    task: &Task,
    next: Next,
) -> Result<(i64, bool), JobError> {
    let ttl = q.config().result_ttl.as_millis() as u64;
    let (new_stage, new_step, state, summary, env) = match &next {
        Next::Stage(s) => {
            let env = stage_envelope(s, &run.id, step + 1, task, &run.bot)
                .map_err(|e| JobError::permanent(e.to_string()))?;
            (
                s.to_string(),
                step + 1,
                String::new(),
                String::new(),
                Some(env),
            )
        }
        Next::Finish { success, error } => {
            let mut summary = summarize(&run.id, task, *success, error.as_deref());
            dirs.redact_json(&mut summary);
            publisher::run_log::record_summary(&dirs.store_dir, &run.id, &summary).await;
            (
                "done".to_string(),
                step,
                if *success { "succeeded" } else { "failed" }.to_string(),
                summary.to_string(),
                None,
            )
        }
    };
    // the run record names none of this worker's directories (errors and notes may quote them)
    let mut task_value = serde_json::to_value(task).expect("tasks serialise");
    dirs.redact_json(&mut task_value);
    let task_json = task_value.to_string();
    let r: i64 = q
        .retrying_acked("advance run", |mut c| {
            let mut inv = q.scripts().run_advance.prepare_invoke();
            inv.arg(q.prefix())
                .arg(ttl)
                .arg(&run.id)
                .arg(stage)
                .arg(step)
                .arg(&new_stage)
                .arg(new_step)
                .arg(&task_json)
                .arg(&state)
                .arg(&summary);
            match &env {
                Some(e) => inv.arg(&e.job_type).arg(&e.id).arg(e.to_json()),
                None => inv.arg("").arg("").arg(""),
            };
            inv.arg(run_lease().as_millis() as u64);
            async move { Ok(inv.invoke_async(&mut c).await?) }
        })
        .await
        .map_err(transient)?;
    Ok((r, matches!(next, Next::Finish { .. })))
}

type StageOut = (Next, String, bool);

/// The current stage succeeded: on to the next definition stage, or done.
fn next_stage(task: &mut Task) -> Next {
    task.cursor += 1;
    task.stage_attempt = 0;
    task.round = 0;
    task.stall_count = 0;
    task.fix = None;
    match task.current() {
        Some(s) => Next::Stage(s.job_type()),
        None => Next::Finish {
            success: true,
            error: None,
        },
    }
}

/// The current stage failed with `error`. A retry stage tries again (the
/// temperature escalates with the attempt) until its `max_retries`, unless
/// the error is not recoverable; an optional stage lets the run go on; any
/// other failure ends the run.
fn stage_failed(task: &mut Task, error: String, recoverable: bool) -> Next {
    let spec = task.current().cloned().expect("a current stage");
    let strategy = task.strategy();
    if spec.retry && recoverable && task.stage_attempt + 1 < strategy.max_retries {
        task.stage_attempt += 1;
        return Next::Stage(spec.job_type());
    }
    let why = if !recoverable {
        "not recoverable"
    } else if spec.retry {
        "retries exhausted"
    } else {
        "no retry"
    };
    if spec.optional {
        task.problems.push(format!(
            "optional stage {} failed ({why}): {error}",
            spec.name
        ));
        return next_stage(task);
    }
    Next::Finish {
        success: false,
        error: Some(format!(
            "stage {} failed after {} attempt(s) ({why}): {error}",
            spec.name,
            task.stage_attempt + 1
        )),
    }
}

/// The first `n` different errors, each said once, joined by "; " (experiments of a plan
/// that fail for one reason, e.g. the bars are missing, fail with the same message).
fn distinct_errors(errors: &[String], n: usize) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for e in errors {
        if !seen.contains(&e.as_str()) {
            seen.push(e);
        }
    }
    let more = seen.len().saturating_sub(n);
    let mut out = seen[..seen.len().min(n)].join("; ");
    if more > 0 {
        out.push_str(&format!("; and {more} other error(s)"));
    }
    out
}

/// The seed's non-recoverable errors are environment errors: here, a data
/// directory or file that is not there. Retrying cannot fix them.
fn not_recoverable(errors: &[String]) -> bool {
    !errors.is_empty()
        && errors
            .iter()
            .all(|e| agents::research::error_category(e) == "data")
}

async fn plan(ctx: &Ctx, run: &RunInfo, task: &mut Task) -> Result<StageOut, JobError> {
    let mut history = experiment_history(&ctx.queue, 500)
        .await
        .map_err(transient)?;
    let stored = publisher::store::records::history_from(&ctx.dirs.store_dir, 500).await;
    publisher::store::records::merge_history(&mut history, stored);
    let seed = task.options.seed ^ run.created_at_ms ^ u64::from(task.stage_attempt);
    // the run's message steers the built-in planner (docs/pipeline.md, "Steering")
    let steer =
        agents::builtin::steering::Steering::parse(task.options.message.as_deref().unwrap_or(""));
    let mut p = planner::plan_steered(&history, &task.options.budget, seed, &steer);
    favour_components(&ctx.queue, &steer, &task.options.budget, seed, &mut p).await;
    let steered = if p.steering.is_empty() {
        String::new()
    } else {
        format!("; steering: {}", p.steering.join("; "))
    };
    if p.experiments.is_empty() {
        let note = format!("the planner produced no experiments{steered}");
        return Ok((stage_failed(task, note.clone(), true), note, false));
    }
    let note = format!(
        "{} experiments planned from a history of {}{steered}",
        p.experiments.len(),
        history.len()
    );
    task.plan = Some(p);
    Ok((next_stage(task), note, true))
}

/// Puts the registry components a run's message favours (`favour block graph:NAME`) first in
/// the plan, each as the one block of an experiment with the favoured head (else the GBM head),
/// its document copied into the spec as the bridge copies it ([`crate::registry::resolve`]), so
/// the train job carries it and any trainer trains it; the plan stays `budget.experiments`
/// long. Each is noted as applied (with its owner and version) or ignored (no such component,
/// or one that does not validate).
async fn favour_components(
    queue: &engine::queue::Queue,
    steer: &agents::builtin::steering::Steering,
    budget: &trainer::experiments::Budget,
    seed: u64,
    p: &mut planner::Plan,
) {
    let head = steer.favour_heads.first().copied().unwrap_or("GBMHead");
    let mut picked = Vec::new();
    for name in &steer.components {
        let block = format!("graph:{name}");
        let mut s = trainer::zoo::spec::ExperimentSpec::new(&[block.as_str()], head);
        s.training.seed = seed;
        trainer::experiments::apply_budget(budget, &mut s);
        let used = crate::registry::resolve(queue, &mut s).await;
        let valid = s.validate().map(|_| ()).map_err(|issues| {
            issues
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        });
        let note = match (used, valid) {
            (Ok(used), Ok(())) if !used.is_empty() => {
                let u = &used[0];
                picked.push((s, format!("favoured: registry component {name} + {head}")));
                format!(
                    "applied: favour block {block} (the registry's, by {} version {})",
                    u.owner, u.version
                )
            }
            (Err(e), _) => format!("ignored: favour block {block}: {e}"),
            (Ok(_), Err(e)) => format!("ignored: favour block {block}: {e}"),
            (Ok(_), Ok(())) => {
                format!("ignored: favour block {block}: no registry component {name:?}")
            }
        };
        p.steering.push(note);
    }
    if picked.is_empty() {
        return;
    }
    let k = budget.experiments.max(1);
    let (specs, why): (Vec<_>, Vec<_>) = picked.into_iter().take(k).unzip();
    let keep = k - specs.len();
    p.experiments.truncate(keep);
    p.rationale.truncate(keep);
    p.experiments.splice(0..0, specs);
    p.rationale.splice(0..0, why);
}

/// The specs a train job trains: the debugger's fix in the check/debug loop;
/// on a retry of the trainer, the failed experiments of the last attempt
/// changed by the debugger's rules; otherwise the plan.
fn training_specs(task: &Task) -> Vec<trainer::zoo::spec::ExperimentSpec> {
    if let Some(fix) = &task.fix {
        return vec![fix.clone()];
    }
    let plan = task
        .plan
        .as_ref()
        .map(|p| p.experiments.clone())
        .unwrap_or_default();
    if task.stage_attempt == 0 {
        return plan;
    }
    let tried: std::collections::BTreeSet<String> =
        task.results.iter().map(|r| r.fingerprint.clone()).collect();
    let failed: Vec<_> = task.results.iter().filter(|r| r.crps.is_none()).collect();
    let fixed: Vec<_> = failed
        .iter()
        .filter_map(|r| {
            let problems: Vec<String> = r.error.iter().cloned().collect();
            debugger::debug(r, &problems, task.stage_attempt).map(|f| f.spec)
        })
        .filter(|s| !tried.contains(&trainer::experiments::fingerprint(s)))
        .collect();
    if fixed.is_empty() {
        plan
    } else {
        fixed
    }
}

/// The configured store of the worker (a bucket when `HIPPIUS_ENDPOINT` is set); a store that
/// cannot be opened (its configuration) fails the stage job for good.
pub(super) fn open_store(dirs: &WorkerDirs) -> Result<Arc<dyn publisher::store::Store>, JobError> {
    publisher::store::open(&dirs.store_dir).map_err(JobError::permanent)
}

/// The directories a stage of this run works in: the worker's own, with the data directory
/// replaced by the run's dataset, fetched into the worker's cache (verified; a second stage
/// on the same machine finds it there). The first stage that reads bars pins the dataset in
/// `task` (saved with the run when the stage advances it): the one the run named (`latest`
/// resolved to its id), else this worker's own bars for the run's assets and timeframe,
/// published to the store. So every stage, on any machine, reads the same bars, and each
/// record names them (`spec.data.dataset`). With neither, the worker's own directories (the
/// stage reports the missing bars).
///
/// A store that does not answer, a dataset that is not there, bars that are in neither the
/// dataset nor this worker's data directory: the environment's failures (retried, then
/// dead-lettered with the cause), never the model's.
async fn run_dirs(ctx: &Ctx, task: &mut Task) -> Result<WorkerDirs, JobError> {
    let Some(m) = pin_dataset(ctx, task).await? else {
        return Ok(ctx.dirs.clone());
    };
    // the manifest pin_dataset read: its files into this worker's cache
    let store = open_store(&ctx.dirs)?;
    let mut dirs = ctx.dirs.clone();
    dirs.data_dir = ArtifactCache::of(&ctx.dirs)
        .fetch(&*store, &m.artifact)
        .await
        .map_err(environment)?;
    Ok(dirs)
}

/// The folder of dataset `id` in the cache of the worker of `dirs`, fetched from its store
/// when it is not there; the environment's failure when it cannot be.
pub(super) async fn dataset_dir(
    dirs: &WorkerDirs,
    id: &str,
) -> Result<std::path::PathBuf, JobError> {
    let store = open_store(dirs)?;
    let cache = ArtifactCache::of(dirs);
    publisher::datasets::fetch(&*store, &cache, id)
        .await
        .map(|(dir, _)| dir)
        .map_err(environment)
}

/// Pins the run's dataset in `task` (see [`run_dirs`]): the one it names, checked to be in the
/// store and to hold the run's assets (`latest` resolved to its id); else this worker's own
/// bars for the run's assets and timeframe, published; else none (the worker's bars, which
/// training reports missing). Answers the pinned dataset's manifest.
async fn pin_dataset(
    ctx: &Ctx,
    task: &mut Task,
) -> Result<Option<jobs::dataset::DatasetManifest>, JobError> {
    use publisher::datasets::{self, DatasetError, Selection};
    let store = open_store(&ctx.dirs)?;
    let assets = task.options.budget.assets.clone();
    let tf = task.options.budget.timeframe;
    let m = match task.options.dataset.clone() {
        Some(id) => datasets::resolve(&*store, &id).await.map_err(environment)?,
        // no dataset named: this worker's own bars, published and pinned; without them the
        // stage goes on in its own directories and training fails saying which files are
        // missing and how to fetch them, once, not recoverable (a fleet whose trainers have
        // no bars runs with --dataset)
        None => match sn50::data::check_files(&ctx.dirs.data_dir, &assets, tf) {
            Ok(()) => {
                let sel = Selection {
                    assets: assets.clone(),
                    timeframes: vec![tf],
                };
                datasets::publish(&*store, &ctx.dirs.data_dir, &sel)
                    .await
                    .map_err(|e| environment(ctx.dirs.redact(&e.to_string())))?
            }
            Err(_) => return Ok(None),
        },
    };
    let lacking = m.missing(&assets, tf.as_str());
    if !lacking.is_empty() {
        let e = DatasetError::Lacks {
            id: m.id,
            timeframe: tf.as_str().to_string(),
            assets: lacking.iter().map(|s| s.to_string()).collect(),
        };
        return Err(JobError::permanent(e));
    }
    task.options.dataset = Some(m.id.clone());
    Ok(Some(m))
}

/// Puts the freshly trained checkpoints of `records` in the store and names them in the
/// records (before anything records them), so that any machine can check or publish them. A
/// store that refuses is a retryable failure of the stage job.
async fn store_checkpoints(
    dirs: &WorkerDirs,
    records: &mut [trainer::experiments::ExperimentRecord],
) -> Result<(), JobError> {
    let store = open_store(dirs)?;
    artifacts::store_checkpoints(&*store, records)
        .await
        .map_err(|e| JobError::retry(format!("the checkpoints could not be stored: {e}")))?;
    // once in the store, a checkpoint's scratch copy is the work dir's clutter: every later
    // reader (check, publish, the miner) fetches the artifact into its cache
    let mut parents = std::collections::BTreeSet::new();
    for r in records.iter_mut() {
        if let (Some(_), Some(dir)) = (&r.artifact, &r.checkpoint) {
            if dir.starts_with(&dirs.work_dir) && !dir.starts_with(dirs.cache_dir()) {
                if let Err(e) = std::fs::remove_dir_all(dir) {
                    tracing::warn!(dir = %dir.display(), %e, "could not remove a stored checkpoint's scratch copy");
                }
                if let Some(p) = dir.parent() {
                    parents.insert(p.to_path_buf());
                }
                r.checkpoint = None;
            }
        }
    }
    for p in parents {
        // the run's scratch folder, when nothing else is left in it
        let _ = std::fs::remove_dir(&p);
    }
    Ok(())
}

async fn train(
    ctx: &Ctx,
    run: &RunInfo,
    task: &mut Task,
    jctx: &JobContext,
) -> Result<StageOut, JobError> {
    let specs = training_specs(task);
    if specs.is_empty() {
        let note = "nothing to train: the plan is empty".to_string();
        return Ok((stage_failed(task, note.clone(), false), note, false));
    }
    let in_loop = task.fix.is_some();
    // the bars every child reads: the dataset its first round pinned (this job runs again
    // for each round, and a task's changes are saved only when the stage ends), else the
    // run's, pinned now
    if task.options.dataset.is_none() {
        task.options.dataset = super::fanout::pinned_dataset(&ctx.queue, &jctx.job_id).await?;
    }
    pin_dataset(ctx, task).await?;
    let mut specs = specs;
    for s in &mut specs {
        s.data.dataset = task.options.dataset.clone();
    }
    // one `train-one` job per experiment of the round, on any trainer; this job runs again
    // when they have all ended (Err(WaitForChildren) until the last round is in)
    let (mut records, children) =
        super::fanout::train_children(&ctx.queue, run, task, &specs, jctx).await?;
    task.children.extend(children);
    jctx.progress(json!({"stage": "train", "experiments_done": records.len()}));
    // a failed experiment's error may quote this worker's directories: records travel
    for r in &mut records {
        if let Some(e) = &r.error {
            r.error = Some(ctx.dirs.redact(e));
        }
    }
    store_checkpoints(&ctx.dirs, &mut records).await?;
    record_experiments(&ctx.queue, &records)
        .await
        .map_err(transient)?;
    publisher::run_log::record_run(&ctx.dirs.store_dir, &run.id, &records).await;
    let ok = records.iter().filter(|r| r.crps.is_some()).count();
    let note = format!("{ok} of {} experiments trained and scored", records.len());
    let errors: Vec<String> = records.iter().filter_map(|r| r.error.clone()).collect();
    task.results.extend(records);
    if in_loop {
        // The fix goes back to the checker of the same validate stage.
        task.fix = None;
        if task.best().is_some() {
            return Ok((Next::Stage("check"), note, ok > 0));
        }
    }
    if ok == 0 || task.best().is_none() {
        let error = format!(
            "no experiment trained successfully: {}",
            distinct_errors(&errors, 3)
        );
        let next = stage_failed(task, error, !not_recoverable(&errors));
        return Ok((next, note, false));
    }
    Ok((next_stage(task), note, true))
}

async fn check(ctx: &Ctx, task: &mut Task) -> Result<StageOut, JobError> {
    let Some(mut best) = task.best().cloned() else {
        let note = "nothing to check: no experiment has a score".to_string();
        return Ok((stage_failed(task, note.clone(), false), note, false));
    };
    // the checkpoint from the store, into this worker's cache: a store that does not answer,
    // an artifact that is missing or corrupt, a disk that is full are the environment's
    // failures, not the model's, so the stage job is retried (then dead-lettered with the
    // cause, and the run fails saying it) and the debugger never sees them
    let store = open_store(&ctx.dirs)?;
    let cache = ArtifactCache::of(&ctx.dirs);
    let dir = artifacts::local_checkpoint(&*store, &cache, &best)
        .await
        .map_err(environment)?;
    best.checkpoint = Some(dir);
    // so are bars this worker does not have: the check reads the run's dataset
    let data_dir = run_dirs(ctx, task).await?.data_dir;
    let assets = match best.spec.data.assets.first() {
        Some(a) => vec![a.clone()],
        None => vec!["BTC".to_string()],
    };
    sn50::data::check_files(&data_dir, &assets, best.spec.data.timeframe).map_err(environment)?;
    let report = tokio::task::spawn_blocking(move || checker::check(&best, &data_dir))
        .await
        .map_err(|e| JobError::retry(format!("check task failed: {e}")))?;
    Ok(checked(task, report.passed, report.problems))
}

/// A check's verdict: on to the next stage, or a round of the debug loop
/// (until the validate stage's `max_retries` rounds).
fn checked(task: &mut Task, passed: bool, problems: Vec<String>) -> StageOut {
    if passed {
        task.problems.clear();
        return (next_stage(task), "passed".into(), true);
    }
    let note = problems.join("; ");
    task.problems = problems;
    if task.round + 1 >= task.strategy().max_retries {
        let error = format!("check failed after {} round(s): {note}", task.round + 1);
        return (stage_failed(task, error, true), note, false);
    }
    task.round += 1;
    (Next::Stage("debug"), note, false)
}

/// The debugger, with the seed's stall detection: a fix that repeats an
/// experiment already tried counts as a stall, and at `stall_threshold`
/// stalls in a row the debugger changes course (another architecture).
async fn debug(task: &mut Task) -> Result<StageOut, JobError> {
    Ok(debug_with(task, None))
}

/// The debug step around a proposed fix: the LLM debugger's, or (None) the
/// built-in debugger's.
fn debug_with(task: &mut Task, proposal: Option<debugger::Fix>) -> StageOut {
    let Some(best) = task.best().cloned() else {
        let note = "nothing to debug: no experiment has a score".to_string();
        return (stage_failed(task, note.clone(), false), note, false);
    };
    let tried: std::collections::BTreeSet<String> =
        task.results.iter().map(|r| r.fingerprint.clone()).collect();
    let mut fix = proposal.or_else(|| debugger::debug(&best, &task.problems, task.round));
    let repeats = fix
        .as_ref()
        .is_none_or(|f| tried.contains(&trainer::experiments::fingerprint(&f.spec)));
    let mut stalled = false;
    if repeats {
        task.stall_count += 1;
        if task.stall_count >= task.strategy().stall_threshold {
            let archs = task
                .results
                .iter()
                .map(|r| debugger::architecture(&r.spec))
                .collect();
            fix = debugger::change_course(&best, &archs);
            stalled = true;
        }
    } else {
        task.stall_count = 0;
    }
    match fix {
        Some(fix) => {
            let mut note = fix.changes.join("; ");
            if stalled {
                note = format!("stall detected; {note}");
                task.stall_count = 0;
            }
            task.fix = Some(fix.spec);
            (Next::Stage("train"), note, true)
        }
        None => {
            let error = "the debugger found nothing new to change".to_string();
            (stage_failed(task, error.clone(), false), error, false)
        }
    }
}

/// A stage carried out by an LLM agent (`agents: llm`). Training a fix of
/// the check/debug loop needs no decision and stays built-in.
async fn llm_stage(
    ctx: &Ctx,
    run: &RunInfo,
    task: &mut Task,
    stage: &'static str,
    temperature: f64,
    jctx: &JobContext,
) -> Result<StageOut, JobError> {
    if stage == "train" && task.fix.is_some() {
        return train(ctx, run, task, jctx).await;
    }
    // the agents' tools train, check and score on the run's dataset, as the built-in stages do
    let dirs = match stage {
        "train" | "check" => run_dirs(ctx, task).await?,
        _ => ctx.dirs.clone(),
    };
    let agent = llm::stage_agent(task, stage);
    let (outcome, usage) = llm::run_stage(
        &ctx.queue,
        &dirs,
        (&run.id, &run.bot),
        task,
        stage,
        temperature,
    )
    .await?;
    add_usage(task, &agent, &usage);
    Ok(match outcome {
        llm::Outcome::Failed { error, recoverable } => {
            let next = stage_failed(task, error.clone(), recoverable);
            (next, error, false)
        }
        llm::Outcome::Planned(specs) => {
            let note = format!("{} experiments planned by the {agent} agent", specs.len());
            task.plan = Some(planner::Plan {
                rationale: specs
                    .iter()
                    .map(|s| {
                        format!(
                            "{}: the {agent} agent",
                            trainer::experiments::experiment_name(s)
                        )
                    })
                    .collect(),
                experiments: specs,
                steering: Vec::new(),
            });
            (next_stage(task), note, true)
        }
        llm::Outcome::Trained(mut records) => {
            store_checkpoints(&ctx.dirs, &mut records).await?;
            let ok = records.iter().filter(|r| r.crps.is_some()).count();
            let note = format!(
                "{ok} of {} experiments trained by the trainer agent",
                records.len()
            );
            let errors: Vec<String> = records.iter().filter_map(|r| r.error.clone()).collect();
            record_experiments(&ctx.queue, &records)
                .await
                .map_err(transient)?;
            publisher::run_log::record_run(&ctx.dirs.store_dir, &run.id, &records).await;
            task.results.extend(records);
            if ok == 0 {
                let error = format!(
                    "the trainer agent trained no experiment successfully: {}",
                    distinct_errors(&errors, 3)
                );
                let next = stage_failed(task, error, !not_recoverable(&errors));
                (next, note, false)
            } else {
                (next_stage(task), note, true)
            }
        }
        llm::Outcome::Checked { passed, report } => checked(task, passed, vec![report]),
        llm::Outcome::Fixed(spec) => debug_with(
            task,
            Some(debugger::Fix {
                spec: *spec,
                changes: vec!["the debugger agent's experiment".into()],
            }),
        ),
        llm::Outcome::Published(note) => (next_stage(task), note, true),
    })
}

/// An authoring stage (`author`, `agent_designer`, `pipeline_architect`, or an authored agent
/// acting as one): its result is recorded and the run moves on.
async fn author(
    ctx: &Ctx,
    run: &RunInfo,
    task: &mut Task,
    temperature: f64,
) -> Result<StageOut, JobError> {
    let (agent, outcome, usage) =
        super::authoring::run_stage(&ctx.queue, &ctx.dirs, run, task, temperature).await?;
    add_usage(task, &agent, &usage);
    Ok(match outcome {
        Ok(note) => (next_stage(task), note, true),
        Err((error, recoverable)) => (stage_failed(task, error.clone(), recoverable), error, false),
    })
}

/// Adds an agent's token usage to the run's tally (per agent and in total).
fn add_usage(task: &mut Task, agent: &str, usage: &agents::Usage) {
    let mut tally: std::collections::BTreeMap<String, agents::Usage> = task
        .usage
        .as_ref()
        .and_then(|u| serde_json::from_value(u.clone()).ok())
        .unwrap_or_default();
    tally.entry(agent.to_string()).or_default().add(usage);
    tally.entry("total".to_string()).or_default().add(usage);
    task.usage = serde_json::to_value(tally).ok();
}

async fn publish(ctx: &Ctx, run: &RunInfo, task: &mut Task) -> Result<StageOut, JobError> {
    let Some(best) = task.best().cloned() else {
        let note = "nothing to publish: no experiment has a score".to_string();
        return Ok((stage_failed(task, note.clone(), false), note, false));
    };
    let summary = summarize(&run.id, task, true, None);
    let published =
        publisher::publish::publish_configured(&ctx.dirs, &run.id, &best, &summary, false).await;
    match published {
        Ok(p) => {
            let note = format!("published to {}", p.model_dir);
            task.published = Some(p);
            Ok((next_stage(task), note, true))
        }
        Err(e) => {
            let error = publish_failure(e)?;
            Ok((stage_failed(task, error.clone(), true), error, false))
        }
    }
}

/// A publish that failed, sorted by cause: the store, the Hub or the checkpoint's artifact
/// not answering (or refusing the credentials) is the environment's failure, retried with
/// backoff and then dead-lettered with its cause (`Err`); what is wrong with the run's own
/// input fails the stage like a model problem (`Ok`, the stage's error text).
fn publish_failure(e: publisher::publish::PublishError) -> Result<String, JobError> {
    use publisher::publish::PublishError;
    match e {
        PublishError::Input(_) => Ok(e.to_string()),
        PublishError::Store(_) | PublishError::Hub(_) | PublishError::Artifact(_) => {
            Err(environment(e))
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::pipeline::definition::PipelineDef;
    use crate::pipeline::RunOptions;
    use trainer::experiments::{fingerprint, ExperimentRecord, RunStatus};
    use trainer::zoo::spec::ExperimentSpec;

    pub(in crate::pipeline) fn record(spec: ExperimentSpec, crps: Option<f64>) -> ExperimentRecord {
        ExperimentRecord {
            name: trainer::experiments::experiment_name(&spec),
            run_id: None,
            fingerprint: fingerprint(&spec),
            spec,
            status: if crps.is_some() {
                RunStatus::Ok
            } else {
                RunStatus::Failed
            },
            crps,
            gbm_crps: Some(5.0),
            classical_crps: None,
            param_count: None,
            epochs: 1,
            diverged: false,
            error: None,
            artifact: None,
            checkpoint: None,
            training_time_s: None,
            device: None,
            steps_per_sec: None,
            recorded_at: 0,
        }
    }

    fn task_at(stage: &str) -> Task {
        let opts = RunOptions {
            publish: true,
            ..Default::default()
        };
        let mut t = Task::new(opts, PipelineDef::default());
        t.cursor = t
            .definition
            .stages
            .iter()
            .position(|s| s.name == stage)
            .unwrap();
        t
    }

    #[test]
    fn publish_failures_are_sorted_by_cause() {
        use publisher::publish::PublishError;
        use publisher::store::StoreError;
        let down = PublishError::Store(StoreError::Config("the bucket does not answer".into()));
        match publish_failure(down) {
            Err(JobError::Retryable(m)) => {
                assert!(
                    m.starts_with("environment:") && m.contains("does not answer"),
                    "{m}"
                )
            }
            other => panic!("a store failure is the environment's: {other:?}"),
        }
        let bad = PublishError::Input("the run has no checkpoint".into());
        assert_eq!(
            publish_failure(bad).unwrap(),
            "publish: the run has no checkpoint"
        );
    }

    #[test]
    fn retry_stages_retry_then_give_up_and_optional_stages_do_not_fail_the_run() {
        let mut t = task_at("trainer");
        t.definition.strategy.max_retries = 3;
        for attempt in 1..3 {
            assert!(matches!(
                stage_failed(&mut t, "x".into(), true),
                Next::Stage("train")
            ));
            assert_eq!(t.stage_attempt, attempt);
            assert!((t.temperature("train") - (0.1 + 0.1 * attempt as f64)).abs() < 1e-12);
        }
        match stage_failed(&mut t, "boom".into(), true) {
            Next::Finish { success, error } => {
                assert!(!success);
                assert!(error
                    .unwrap()
                    .contains("after 3 attempt(s) (retries exhausted): boom"));
            }
            Next::Stage(s) => panic!("retried {s} past max_retries"),
        }
        let mut t = task_at("trainer");
        assert!(matches!(
            stage_failed(&mut t, "no data".into(), false),
            Next::Finish { .. }
        ));
        // the publisher is optional (and last): its failure ends the run successfully
        let mut t = task_at("publisher");
        match stage_failed(&mut t, "store down".into(), true) {
            Next::Finish { success, .. } => assert!(success),
            Next::Stage(s) => panic!("went on to {s}"),
        }
        assert!(t.problems[0].contains("optional stage publisher failed"));
        // a stage that succeeds moves the cursor and resets the counters
        let mut t = task_at("planner");
        t.stage_attempt = 2;
        assert!(matches!(next_stage(&mut t), Next::Stage("train")));
        assert_eq!((t.cursor, t.stage_attempt), (1, 0));
    }

    #[test]
    fn a_reason_shared_by_every_experiment_is_said_once() {
        let e = |s: &str| s.to_string();
        let same = [
            e("no data file for BTC"),
            e("no data file for BTC"),
            e("no data file for BTC"),
        ];
        assert_eq!(distinct_errors(&same, 3), "no data file for BTC");
        let mixed = [e("a"), e("b"), e("a"), e("c"), e("d"), e("e")];
        assert_eq!(distinct_errors(&mixed, 3), "a; b; c; and 2 other error(s)");
        assert_eq!(distinct_errors(&[], 3), "");
    }

    /// A run record an older build wrote, with directories in its options and a checkpoint
    /// path in its results, still reads; written again, it names no directory.
    #[test]
    fn old_run_records_read_and_are_written_without_paths() {
        let mut t = serde_json::to_value(task_at("trainer")).unwrap();
        t["options"]["data_dir"] = "/old/data".into();
        t["options"]["out_dir"] = "/old/runs".into();
        t["options"]["store_dir"] = "/old/store".into();
        let mut rec = serde_json::to_value(record(
            ExperimentSpec::new(&["LSTMBlock"], "GBMHead"),
            Some(1.0),
        ))
        .unwrap();
        rec["checkpoint"] = "/old/runs/r/abc".into();
        t["results"] = serde_json::json!([rec]);
        let task: Task = serde_json::from_value(t).unwrap();
        assert_eq!(task.results[0].checkpoint, None);
        let again = serde_json::to_string(&task).unwrap();
        assert!(!again.contains("/old/"), "{again}");
    }

    #[tokio::test]
    async fn a_repeated_fix_is_a_stall_and_changes_course() {
        let mut t = task_at("check_debug");
        let best = record(ExperimentSpec::new(&["LSTMBlock"], "GBMHead"), Some(10.0));
        t.problems = vec!["CRPS 10 is more than 1.5x the GBM baseline's 5".into()];
        let fix = debugger::debug(&best, &t.problems, 0).unwrap();
        // the debugger's fix was already tried (and did worse)
        t.results = vec![best.clone(), record(fix.spec.clone(), Some(20.0))];
        let (next, note, ok) = debug(&mut t).await.unwrap();
        assert!(ok && matches!(next, Next::Stage("train")));
        assert!(note.starts_with("stall detected"), "{note}");
        let new = t.fix.clone().unwrap();
        assert_ne!(fingerprint(&new), fingerprint(&fix.spec));
        assert_ne!(
            debugger::architecture(&new),
            debugger::architecture(&best.spec)
        );
        // under the threshold, the repeated fix stands
        let mut t2 = task_at("check_debug");
        t2.definition.strategy.stall_threshold = 2;
        t2.problems = t.problems.clone();
        t2.results = vec![best.clone(), record(fix.spec.clone(), Some(20.0))];
        let (_, note, _) = debug(&mut t2).await.unwrap();
        assert!(!note.contains("stall"), "{note}");
        assert_eq!(t2.stall_count, 1);
    }
}
