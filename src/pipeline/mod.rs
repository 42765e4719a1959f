//! Pipeline runs as jobs: plan -> train -> check (<-> debug) -> publish.
//!
//! A run is a record in Redis (`run:<id>`: state, stage, attempt, task JSON,
//! summary) driven by its stage jobs. Each stage handler (see `stages.rs`)
//! checks that the run is waiting for exactly its (stage, attempt), holds the
//! run's permit of the `pipeline` semaphore while it works, does the work
//! with the built-in agents of `workers::pipeline`, and then calls
//! `run_advance.lua`, which updates the record and enqueues the next stage job
//! in one step, with a job id derived from (run, stage, attempt). A worker
//! that dies mid-stage leaves the stage job pending; it is redelivered and the
//! run goes on. A replayed or stale job cannot advance the run twice.
//!
//! Which stages a run goes through comes from the pipeline definition
//! (`definition.rs`), copied into the run when it is created: the run's
//! `cursor` points at the current definition stage, and the run record's
//! `attempt` field is a step counter that grows with every stage job (so two
//! stages of the same job type never share a job id).
//!
//! The train stage fans out (`fanout.rs`): one `train-one` job per experiment of a
//! successive-halving round, taken by any number of trainers at once; the `train` job waits
//! for them in the engine's `waiting-children` state and runs again when the last has ended,
//! to fan out the next round or advance the run.
//!
//! Stateless: a run record names no directory. Each stage's worker reads bars, writes
//! checkpoints and opens the store from its own settings ([`trainer::WorkerDirs`]), and the
//! train stage hands checkpoints on by content-addressed reference (`ExperimentRecord::artifact`,
//! `publisher::artifacts`), so the stages of one run may run on different machines that share
//! only Redis and the store.

pub mod authoring;
pub mod definition;
pub mod fanout;
pub mod llm;
pub mod stages;

use std::collections::BTreeMap;

use jobs::pipeline::StageJob;
use jobs::JobEnvelope;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use trainer::experiments::{Budget, ExperimentRecord};

use engine::queue::{EnqueueRequest, Queue, QueueError, Result};

pub use stages::{keep_runs, keep_runs_once, register, run_id_for_job, run_lease};

/// How a run is carried out; stored in the run's task. No directories: each stage's worker
/// has its own (records written by older builds with `data_dir`, `out_dir` and `store_dir`
/// still read; those fields are ignored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunOptions {
    pub budget: Budget,
    /// The meta-strategy's `max_retries` for this run (attempts of a retried
    /// stage, rounds of the check/debug loop). Like the seed, it overrides the
    /// stored strategy only when it differs from the default (5).
    pub retries: u32,
    pub publish: bool,
    pub seed: u64,
    /// LLM temperature schedule (base + attempt x step), overriding the
    /// stored strategy when it differs from the default (0.1 / 0.1). The
    /// built-in agents are deterministic and only record it.
    pub base_temperature: f64,
    pub temperature_step: f64,
    /// Who carries out the stages: the built-in agents or the LLM agents.
    #[serde(default)]
    pub agents: llm::AgentMode,
    /// The LLM agents' prompt channel.
    #[serde(default = "default_channel")]
    pub channel: String,
    /// The first stage's user message for this run, in place of the definition's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The dataset the run reads (`latest` until a stage resolves it; pinned to an id by the
    /// first stage that reads bars: see `stages::run_data`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<String>,
}

fn default_channel() -> String {
    "default".into()
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            budget: Budget::default(),
            retries: DEFAULT_RETRIES,
            publish: false,
            seed: 42,
            base_temperature: 0.1,
            temperature_step: 0.1,
            agents: llm::AgentMode::Builtin,
            channel: default_channel(),
            message: None,
            dataset: None,
        }
    }
}

/// The seed's default `max_retries`.
pub const DEFAULT_RETRIES: u32 = 5;

impl RunOptions {
    /// The run's copy of the stored definition: the strategy with this run's
    /// overrides (only values that differ from the defaults, as in the seed),
    /// and without the publish-position stages unless the run publishes.
    pub fn apply_to(&self, mut def: definition::PipelineDef) -> definition::PipelineDef {
        let d = definition::MetaStrategy::default();
        if self.retries != d.max_retries {
            def.strategy.max_retries = self.retries;
        }
        if self.base_temperature != d.base_temperature {
            def.strategy.base_temperature = self.base_temperature;
        }
        if self.temperature_step != d.temperature_step {
            def.strategy.temperature_step = self.temperature_step;
        }
        if !self.publish {
            def.stages
                .retain(|s| s.position != definition::Position::Publish);
        }
        if let (Some(m), Some(first)) = (&self.message, def.stages.first_mut()) {
            first.user_message = m.clone();
        }
        def
    }

    /// Checks the options, naming every problem.
    pub fn validate(&self) -> std::result::Result<(), InvalidRun> {
        let mut errs = Vec::new();
        if !(1..=20).contains(&self.retries) {
            errs.push(format!(
                "retries must be within 1..=20, got {}",
                self.retries
            ));
        }
        if !(1..=64).contains(&self.budget.experiments) {
            errs.push(format!(
                "max experiments must be within 1..=64, got {}",
                self.budget.experiments
            ));
        }
        if self.budget.epochs == 0 {
            errs.push("epochs must be at least 1".into());
        }
        let b = &self.budget;
        for (name, v, min) in [
            ("rounds", b.rounds, 1),
            ("steps per epoch", b.steps_per_epoch, 1),
            ("d_model", b.d_model, 1),
            ("seq_len", b.seq_len, 2),
            ("batch size", b.batch_size, 1),
            ("n_paths", b.n_paths, 2),
            ("eval windows", b.eval_windows, 1),
            ("eval paths", b.eval_paths, 1),
        ] {
            if v < min {
                errs.push(format!("{name} must be at least {min}, got {v}"));
            }
        }
        if b.assets.is_empty() {
            errs.push("assets must name at least one asset (e.g. BTC)".into());
        }
        for a in &b.assets {
            if !jobs::is_asset_name(a) {
                errs.push(format!(
                    "asset {a:?} is not an asset name (letters and digits, at most 16)"
                ));
            }
        }
        if self.channel.is_empty()
            || self.channel.len() > 64
            || !self
                .channel
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            errs.push(format!(
                "channel {:?} must be 1 to 64 letters, digits, - or _ (e.g. default)",
                self.channel
            ));
        }
        if let Some(m) = &self.message {
            if m.trim().is_empty() || m.chars().count() > 4000 {
                errs.push(
                    "message must be 1 to 4000 characters (the planner's instructions)".into(),
                );
            }
        }
        if !(0.0..=1.0).contains(&self.base_temperature)
            || !(0.0..=0.5).contains(&self.temperature_step)
        {
            errs.push("base temperature must be within 0..=1 and its step within 0..=0.5".into());
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(InvalidRun(errs))
        }
    }
}

/// One stage attempt, as the run records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageRecord {
    /// The job type (plan, train, check, debug, publish).
    pub stage: String,
    /// The definition stage it belongs to (e.g. `check_debug` for a debug job).
    #[serde(default)]
    pub name: String,
    /// The stage attempt (retried stages) or check/debug round.
    pub attempt: u32,
    #[serde(default)]
    pub temperature: f64,
    pub ok: bool,
    pub seconds: f64,
    pub note: String,
}

/// A run's working state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub options: RunOptions,
    #[serde(default)]
    pub plan: Option<agents::builtin::planner::Plan>,
    #[serde(default)]
    pub results: Vec<ExperimentRecord>,
    /// The experiment the debugger asked to train next, if any.
    #[serde(default)]
    pub fix: Option<trainer::zoo::spec::ExperimentSpec>,
    #[serde(default)]
    pub problems: Vec<String>,
    #[serde(default)]
    pub stages: Vec<StageRecord>,
    #[serde(default)]
    pub published: Option<publisher::publish::Published>,
    /// The run's copy of the pipeline definition and meta-strategy.
    #[serde(default)]
    pub definition: definition::PipelineDef,
    /// Index of the current stage in `definition.stages`.
    #[serde(default)]
    pub cursor: usize,
    /// Attempt of the current stage (a retried stage counts up).
    #[serde(default)]
    pub stage_attempt: u32,
    /// Round of the check/debug loop of the current validate stage.
    #[serde(default)]
    pub round: u32,
    /// Debugger fixes in a row that repeated an experiment already tried.
    #[serde(default)]
    pub stall_count: u32,
    /// Token usage of the LLM agents, summed over the run.
    #[serde(default)]
    pub usage: Option<serde_json::Value>,
    /// Every `train-one` job the run's train stages fanned out, in the order they were
    /// collected: which worker ran it and when (the server's clock).
    #[serde(default)]
    pub children: Vec<fanout::ChildRun>,
}

impl Task {
    /// A fresh task for `options` over the definition `def`.
    pub fn new(options: RunOptions, def: definition::PipelineDef) -> Self {
        Task {
            definition: options.apply_to(def),
            options,
            plan: None,
            results: vec![],
            fix: None,
            problems: vec![],
            stages: vec![],
            published: None,
            cursor: 0,
            stage_attempt: 0,
            round: 0,
            stall_count: 0,
            usage: None,
            children: vec![],
        }
    }

    /// The current definition stage.
    pub fn current(&self) -> Option<&definition::StageSpec> {
        self.definition.stages.get(self.cursor)
    }

    /// The strategy of the current stage.
    pub fn strategy(&self) -> definition::StageStrategy {
        let name = self.current().map(|s| s.name.as_str()).unwrap_or("");
        self.definition.strategy.for_stage(name)
    }

    /// The sampling temperature of a `job_type` job at the task's position:
    /// the checker at the base temperature (as in the seed), the debugger and
    /// the fix's training by round, a retried stage by attempt.
    pub fn temperature(&self, job_type: &str) -> f64 {
        let s = self.strategy();
        let t = match job_type {
            "check" => s.base_temperature,
            _ => s.temperature(self.attempt(job_type)),
        };
        t.clamp(0.0, 2.0)
    }

    /// The attempt a `job_type` job is at: its check/debug round inside the
    /// validate stage's loop (a fix's training included), else the stage's attempt.
    pub fn attempt(&self, job_type: &str) -> u32 {
        match job_type {
            "check" | "debug" => self.round,
            "train" if self.fix.is_some() => self.round,
            _ => self.stage_attempt,
        }
    }

    /// The best result so far.
    pub fn best(&self) -> Option<&ExperimentRecord> {
        trainer::experiments::best(&self.results)
    }
}

/// A run as `runs show` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct RunInfo {
    pub id: String,
    pub bot: String,
    pub state: String,
    pub stage: String,
    pub attempt: u32,
    pub created_at_ms: u64,
    pub finished_at_ms: Option<u64>,
    /// The id of the stage job the run waits on (or last ran).
    pub job: Option<String>,
    pub task: Option<Task>,
    pub summary: Option<serde_json::Value>,
}

impl RunInfo {
    pub fn is_finished(&self) -> bool {
        matches!(self.state.as_str(), "succeeded" | "failed" | "cancelled")
    }
}

fn stage_job_id(run_id: &str, stage: &str, step: u32) -> String {
    format!("run-{run_id}-{stage}-{step}")
}

/// Builds the envelope of the stage job for step `step` of a run.
fn stage_envelope(
    stage: &str,
    run_id: &str,
    step: u32,
    task: &Task,
    bot: &str,
) -> Result<JobEnvelope> {
    let job = StageJob {
        run_id: run_id.to_string(),
        attempt: step,
        temperature: task.temperature(stage),
    };
    let req = EnqueueRequest {
        job_type: stage.to_string(),
        payload: serde_json::to_value(job).expect("stage jobs serialise"),
        id: Some(stage_job_id(run_id, stage, step)),
        run_id: Some(run_id.to_string()),
        bot_id: Some(bot.to_string()),
        ..Default::default()
    };
    Ok(req.into_envelope()?.0)
}

/// Creates a run over the stored pipeline definition and enqueues its first
/// stage; returns the run id.
pub async fn create_run(queue: &Queue, opts: RunOptions, bot: &str) -> Result<String> {
    let run_id = ulid::Ulid::new().to_string().to_lowercase()[..12].to_string();
    create_run_with_id(queue, opts, bot, &run_id).await?;
    Ok(run_id)
}

/// [`create_run`] under a given id; `Ok(false)` (and nothing changed) when a run of that id
/// exists already, so a replayed request starts one run.
pub async fn create_run_with_id(
    queue: &Queue,
    opts: RunOptions,
    bot: &str,
    run_id: &str,
) -> Result<bool> {
    opts.validate()
        .map_err(|e| QueueError::Invalid(e.to_string()))?;
    let def = definition::load(queue).await?;
    let run_id = run_id.to_string();
    let task = Task::new(opts, def);
    let first = task
        .current()
        .map(|s| s.job_type())
        .ok_or_else(|| QueueError::Invalid("the pipeline definition has no stages".into()))?;
    let env = stage_envelope(first, &run_id, 0, &task, bot)?;
    let task_json = serde_json::to_string(&task).expect("tasks serialise");
    let ttl = queue.config().result_ttl.as_millis() as u64;
    let created: i64 = queue
        .retrying_acked("create run", |mut c| {
            let mut inv = queue.scripts().run_create.prepare_invoke();
            inv.arg(queue.prefix())
                .arg(ttl)
                .arg(&run_id)
                .arg(bot)
                .arg(&task_json)
                .arg(first)
                .arg(&env.id)
                .arg(env.to_json());
            async move { Ok(inv.invoke_async(&mut c).await?) }
        })
        .await?;
    Ok(created == 1)
}

/// Run options that cannot be used: every problem, each naming the field and the way to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.join("; "))]
pub struct InvalidRun(pub Vec<String>);

/// Applies what a [`RunRequest`](jobs::pipeline::RunRequest) asks for to `o`; the message of
/// an error names the field.
pub fn apply_request(
    o: &mut RunOptions,
    r: &jobs::pipeline::RunRequest,
) -> std::result::Result<(), InvalidRun> {
    r.apply_budget(&mut o.budget)
        .map_err(|e| InvalidRun(vec![e.0]))?;
    if let Some(v) = r.retries {
        o.retries = v;
    }
    if let Some(v) = r.publish {
        o.publish = v;
    }
    if let Some(v) = r.seed {
        o.seed = v;
    }
    if let Some(v) = r.temperature {
        o.base_temperature = v;
    }
    if let Some(v) = &r.channel {
        o.channel = v.trim().to_string();
    }
    if let Some(v) = &r.message {
        o.message = Some(v.clone());
    }
    if let Some(v) = &r.dataset {
        let v = v.trim();
        jobs::dataset::check_dataset_id(v).map_err(|e| InvalidRun(vec![e.to_string()]))?;
        o.dataset = Some(v.to_string());
    }
    o.agents = llm::AgentMode::parse(r.agents.as_deref().unwrap_or("auto"))
        .map_err(|e| InvalidRun(vec![format!("agents: {e}")]))?;
    o.validate()
}

/// Reads a run.
pub async fn get_run(queue: &Queue, id: &str) -> Result<Option<RunInfo>> {
    let key = queue.keys().run(id);
    let h: BTreeMap<String, String> = queue
        .retrying("run", |mut c| {
            let key = key.clone();
            async move { Ok(c.hgetall(key).await?) }
        })
        .await?;
    if h.is_empty() {
        return Ok(None);
    }
    let n = |k: &str| h.get(k).and_then(|v| v.parse::<u64>().ok());
    Ok(Some(RunInfo {
        id: id.to_string(),
        bot: h.get("bot").cloned().unwrap_or_default(),
        state: h.get("state").cloned().unwrap_or_default(),
        stage: h.get("stage").cloned().unwrap_or_default(),
        attempt: n("attempt").unwrap_or(0) as u32,
        created_at_ms: n("created_at").unwrap_or(0),
        finished_at_ms: n("finished_at"),
        job: h.get("job").cloned(),
        task: h.get("task").and_then(|t| serde_json::from_str(t).ok()),
        summary: h.get("summary").and_then(|t| serde_json::from_str(t).ok()),
    }))
}

/// The most recent runs, newest first.
pub async fn list_runs(queue: &Queue, limit: usize) -> Result<Vec<RunInfo>> {
    let key = queue.keys().runs();
    let ids: Vec<String> = queue
        .retrying("runs", |mut c| {
            let key = key.clone();
            async move {
                Ok(c.zrevrange(key, 0, limit.saturating_sub(1) as isize)
                    .await?)
            }
        })
        .await?;
    let mut out = Vec::new();
    for id in ids {
        if let Some(mut r) = get_run(queue, &id).await? {
            r.task = None; // the list stays small; `runs show` has it all
            out.push(r);
        }
    }
    Ok(out)
}

/// A run id that names no run: `latest` when there is no run at all (of the bot, when one is
/// asked about).
#[derive(Debug, thiserror::Error)]
pub enum RunIdError {
    #[error(
        "no pipeline run {}yet, so `latest` names none: start one with `synth-city pipeline` \
         (or POST /pipeline/run, or `synth-city client run`)",
        .bot.as_ref().map(|b| format!("of bot {b:?} ")).unwrap_or_default()
    )]
    NoRuns { bot: Option<String> },
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// The run id `id` names: [`jobs::pipeline::LATEST_RUN`] (any case) stands for the newest run,
/// the one created last by the run index (`{prefix}:runs`, scored by creation time on Redis's
/// clock), only `bot`'s runs when a bot is given; any other id is returned as given (whether
/// it exists is the caller's question). The one resolver of every command and route that
/// takes the id of a run in Redis (`runs show|cancel`, `publish --run`, `/runs/{id}`,
/// `/runs/{id}/cancel`, `/history/run/{id}`); the store's runs have their own index
/// (`publisher::store::records::resolve_run_id`).
pub async fn resolve_run_id(
    queue: &Queue,
    id: &str,
    bot: Option<&str>,
) -> std::result::Result<String, RunIdError> {
    if !jobs::pipeline::is_latest_run(id) {
        return Ok(id.to_string());
    }
    const PAGE: isize = 100;
    let key = queue.keys().runs();
    let mut start = 0;
    loop {
        let ids: Vec<String> = queue
            .retrying("runs", |mut c| {
                let key = key.clone();
                async move { Ok(c.zrevrange(key, start, start + PAGE - 1).await?) }
            })
            .await?;
        if ids.is_empty() {
            return Err(RunIdError::NoRuns {
                bot: bot.map(str::to_string),
            });
        }
        for id in ids {
            let rk = queue.keys().run(&id);
            let owner: Option<String> = queue
                .retrying("run", |mut c| {
                    let rk = rk.clone();
                    async move { Ok(c.hget(rk, "bot").await?) }
                })
                .await?;
            // a run whose record has expired is no longer a run
            if owner.is_some_and(|o| bot.is_none_or(|b| b == o)) {
                return Ok(id);
            }
        }
        start += PAGE;
    }
}

/// Cancels a run and its current stage job. Returns the state it had.
pub async fn cancel_run(queue: &Queue, id: &str) -> Result<String> {
    let (before, job): (String, String) = queue
        .retrying("cancel run", |mut c| {
            let mut inv = queue.scripts().run_cancel.prepare_invoke();
            inv.arg(queue.prefix()).arg(id);
            async move { Ok(inv.invoke_async(&mut c).await?) }
        })
        .await?;
    if !job.is_empty() {
        queue.cancel(&job).await?;
    }
    Ok(before)
}

/// Records experiment results for every future plan to learn from.
pub async fn record_experiments(queue: &Queue, recs: &[ExperimentRecord]) -> Result<()> {
    if recs.is_empty() {
        return Ok(());
    }
    let keys = queue.keys().clone();
    queue
        .retrying("record experiments", |mut c| {
            let mut p = redis::pipe();
            for r in recs {
                p.hset(
                    keys.experiments(),
                    &r.fingerprint,
                    serde_json::to_string(r).expect("records serialise"),
                )
                .ignore();
                if let Some(crps) = r.crps {
                    p.zadd(keys.experiments_by_crps(), &r.fingerprint, crps)
                        .ignore();
                }
            }
            async move {
                let _: () = p.query_async(&mut c).await?;
                Ok(())
            }
        })
        .await
}

/// Every recorded experiment (the planner's history), best first.
pub async fn experiment_history(queue: &Queue, limit: usize) -> Result<Vec<ExperimentRecord>> {
    let keys = queue.keys().clone();
    let all: BTreeMap<String, String> = queue
        .retrying("experiment history", |mut c| {
            let keys = keys.clone();
            async move { Ok(c.hgetall(keys.experiments()).await?) }
        })
        .await?;
    let mut recs: Vec<ExperimentRecord> = all
        .values()
        .filter_map(|v| serde_json::from_str(v).ok())
        .collect();
    recs.sort_by(|a, b| {
        a.crps
            .unwrap_or(f64::INFINITY)
            .partial_cmp(&b.crps.unwrap_or(f64::INFINITY))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    recs.truncate(limit);
    Ok(recs)
}

/// The run's summary: stages, attempts, experiments ranked, best vs GBM.
pub fn summarize(
    run_id: &str,
    task: &Task,
    success: bool,
    error: Option<&str>,
) -> serde_json::Value {
    let mut ranked: Vec<&ExperimentRecord> = task.results.iter().collect();
    ranked.sort_by(|a, b| {
        a.crps
            .unwrap_or(f64::INFINITY)
            .partial_cmp(&b.crps.unwrap_or(f64::INFINITY))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let best = task.best();
    serde_json::json!({
        "run_id": run_id,
        "success": success,
        "error": error,
        "best_experiment": best.map(|b| b.name.clone()),
        "best_crps": best.and_then(|b| b.crps),
        "gbm_crps": best.and_then(|b| b.gbm_crps),
        "best_artifact": best.and_then(|b| b.artifact.clone()),
        "experiments": ranked.iter().map(|r| serde_json::json!({
            "name": r.name, "crps": r.crps, "gbm_crps": r.gbm_crps, "ratio": r.crps_ratio(),
            "param_count": r.param_count, "epochs": r.epochs, "status": r.status, "error": r.error,
        })).collect::<Vec<_>>(),
        "stages": task.stages,
        "published": task.published,
        "agents": task.options.agents,
        "usage": task.usage,
    })
}
