//! The pipeline's stages carried out by the LLM agents of `workers::agents`
//! (a run with `agents: llm`, the default when `CHUTES_API_KEY` is set).
//!
//! Each stage job runs one agent turn loop with the seed's context (the plan,
//! the experiment, the error report, ...), the definition stage's user message
//! (on a retry, the seed's "Previous Attempts" message; on a stall, its
//! warning), the job's temperature, and tools over a [`ResearchSession`] whose
//! history is the engine's experiment history in Redis ([`RedisHistory`]) and
//! whose publisher is the same store publisher the built-in stage uses
//! ([`RunPublisher`]). The agent's result becomes the stage's outcome; the
//! state machine around it (retries, the check/debug loop, stall detection)
//! is the one in `stages.rs`. The session works in the worker's directories; the run's
//! records reach the checker and publisher agents with their checkpoints fetched from the
//! store into the worker's cache.

use std::sync::Arc;

use agents::{
    self, AgentName, AgentResult, ExperimentHistory, LlmConfig, PublishReceipt, PublishRequest,
    Publisher, ResearchSession, RunBudget,
};
use jobs::JobError;
use publisher::artifacts::{self, ArtifactCache};
use serde_json::{json, Map, Value};
use trainer::experiments::ExperimentRecord;
use trainer::zoo::spec::ExperimentSpec;
use trainer::WorkerDirs;

use super::{experiment_history, record_experiments, summarize, Task};
use engine::queue::Queue;

/// Which agents carry out a run's stages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentMode {
    /// The built-in, offline agents of `workers::pipeline`.
    #[default]
    Builtin,
    /// The LLM agents over an OpenAI-compatible API (`CHUTES_API_KEY`, ...).
    Llm,
}

/// An agent mode that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown agent mode {0:?}; use auto, builtin or llm")]
pub struct UnknownAgentMode(pub String);

impl AgentMode {
    /// `auto` (LLM when `CHUTES_API_KEY` is set), `builtin` or `llm`.
    pub fn parse(s: &str) -> Result<AgentMode, UnknownAgentMode> {
        match s.trim().to_ascii_lowercase().as_str() {
            "builtin" | "offline" => Ok(AgentMode::Builtin),
            "llm" => Ok(AgentMode::Llm),
            "auto" => Ok(
                if std::env::var("CHUTES_API_KEY").is_ok_and(|k| !k.trim().is_empty()) {
                    AgentMode::Llm
                } else {
                    AgentMode::Builtin
                },
            ),
            other => Err(UnknownAgentMode(other.to_string())),
        }
    }
}

/// The engine's experiment history (Redis) as the agents' [`ExperimentHistory`].
pub struct RedisHistory {
    pub queue: Queue,
}

#[async_trait::async_trait]
impl ExperimentHistory for RedisHistory {
    async fn load(&self, limit: usize) -> Result<Vec<ExperimentRecord>, agents::HistoryError> {
        let mut v = experiment_history(&self.queue, limit)
            .await
            .map_err(|e| agents::HistoryError(e.to_string()))?;
        v.sort_by_key(|r| r.recorded_at);
        Ok(v)
    }

    async fn save(&self, record: &ExperimentRecord) -> Result<(), agents::HistoryError> {
        record_experiments(&self.queue, std::slice::from_ref(record))
            .await
            .map_err(|e| agents::HistoryError(e.to_string()))
    }
}

/// A run's publication through the built-in publish stage's code (manifest, summary,
/// pointers, the production marker) as the agents' [`Publisher`]. (`agents::store_history`
/// has a publisher for agents outside a run: it copies a checkpoint into the store only.)
pub struct RunPublisher {
    pub dirs: WorkerDirs,
    pub run_id: String,
    /// The run's results (their checkpoints fetched here), to find the record of the
    /// checkpoint being published.
    pub records: Vec<ExperimentRecord>,
    pub summary: Value,
}

#[async_trait::async_trait]
impl Publisher for RunPublisher {
    fn describe(&self) -> String {
        match std::env::var("HIPPIUS_ENDPOINT") {
            Ok(e) if !e.trim().is_empty() => format!("the S3 store at {e}"),
            _ => format!("the filesystem store at {}", self.dirs.store_dir.display()),
        }
    }

    async fn publish(
        &self,
        request: &PublishRequest,
    ) -> Result<PublishReceipt, agents::PublishFailed> {
        let ckpt = &request.checkpoint;
        let rec = self
            .records
            .iter()
            .find(|r| r.checkpoint.as_ref() == Some(ckpt))
            .ok_or_else(|| format!("{} is not a checkpoint of this run", ckpt.display()))?;
        let p = publisher::publish::publish_configured(
            &self.dirs,
            &self.run_id,
            rec,
            &self.summary,
            false,
        )
        .await
        .map_err(|e| e.to_string())?;
        Ok(PublishReceipt {
            location: p.model_dir.clone(),
            files: p.files.iter().map(|f| f.key.clone()).collect(),
        })
    }
}

/// The agent that runs a stage job of `job_type` for the run's current stage: the stage's
/// authored agent when the job is the stage's own (not the debugger or trainer of a check
/// stage's loop), else the built-in agent of the job type.
pub fn stage_agent(task: &Task, job_type: &str) -> String {
    match task.current() {
        Some(s) if s.is_authored() && s.job_type() == job_type => s.agent.clone(),
        _ => agent_for(job_type).as_str().to_string(),
    }
}

/// The built-in agent of a stage job type (the part any agent of such a job plays).
pub fn agent_for(job_type: &str) -> AgentName {
    match job_type {
        "plan" => AgentName::Planner,
        "train" => AgentName::Trainer,
        "check" => AgentName::CodeChecker,
        "debug" => AgentName::Debugger,
        _ => AgentName::Publisher,
    }
}

fn metrics(r: &ExperimentRecord) -> Value {
    json!({"crps": r.crps, "gbm_crps": r.gbm_crps, "crps_ratio": r.crps_ratio(),
           "param_count": r.param_count, "epochs": r.epochs})
}

/// The seed's user message for a retried stage: what was tried, the last
/// error, and the instruction to change approach.
fn retry_message(task: &Task, stage: &str, base: &str) -> String {
    let failed: Vec<_> = task
        .stages
        .iter()
        .filter(|s| s.name == stage && !s.ok)
        .collect();
    let Some(last) = failed.last() else {
        return base.to_string();
    };
    let mut m = String::from("## Previous Attempts (all failed)\n\n");
    for (i, s) in failed.iter().enumerate() {
        let first: String = s
            .note
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(200)
            .collect();
        m.push_str(&format!("  Attempt {}: {first}\n", i + 1));
    }
    let err: String = last.note.chars().take(3000).collect();
    m.push_str(&format!(
        "\n## Most Recent Error\n\n{err}\n\nYou MUST try a DIFFERENT approach. Do NOT repeat \
         the same experiments listed above. Attempt {}/{}.",
        task.stage_attempt + 1,
        task.strategy().max_retries
    ));
    m
}

/// The task dictionary the agent sees (the seed's keys).
pub(super) async fn agent_task(q: &Queue, task: &Task, job_type: &str) -> Map<String, Value> {
    let stage = task.current().cloned().expect("a current stage");
    let mut t = Map::new();
    let user = match job_type {
        "check" => "Validate the best experiment config and its results.".to_string(),
        "debug" => {
            let report: String = task.problems.join("\n").chars().take(10_000).collect();
            if task.stall_count >= task.strategy().stall_threshold {
                format!(
                    "CRITICAL WARNING: The experiment config has NOT changed since the last \
                     attempt. You MUST take a DIFFERENT approach — change blocks, head, d_model, \
                     or learning rate.\n\nError report:\n{report}"
                )
            } else {
                format!("Fix the experiment. Error report:\n{report}")
            }
        }
        _ if task.stage_attempt > 0 => retry_message(task, &stage.name, &stage.user_message),
        _ => stage.user_message.clone(),
    };
    t.insert("user_message".into(), json!(user));
    t.insert("channel".into(), json!(task.options.channel));
    if let Some(m) = &task.options.message {
        t.insert("message".into(), json!(m));
    }
    t.insert(
        "experiment_budget".into(),
        json!(task.options.budget.experiments),
    );
    if let Some(p) = &task.plan {
        t.insert(
            "plan".into(),
            json!(serde_json::to_string_pretty(p).unwrap_or_default()),
        );
    }
    if let Some(best) = task.best() {
        t.insert("experiment".into(), json!(best.spec));
        t.insert("run_result".into(), json!(best));
        t.insert("best_experiment".into(), json!(best.spec));
        t.insert("best_metrics".into(), metrics(best));
    }
    if !task.problems.is_empty() {
        t.insert("error_report".into(), json!(task.problems.join("\n")));
    }
    if !task.results.is_empty() {
        let rows: Vec<Value> = task
            .results
            .iter()
            .map(|r| json!({"name": r.name, "metrics": metrics(r), "error": r.error}))
            .collect();
        t.insert("comparison".into(), Value::Array(rows));
    }
    if let Ok(h) = experiment_history(q, 10).await {
        let scores: Vec<Value> = h
            .iter()
            .filter(|r| r.crps.is_some())
            .map(|r| json!({"name": r.name, "crps": r.crps, "gbm_crps": r.gbm_crps}))
            .collect();
        if !scores.is_empty() {
            t.insert("crps_scores".into(), Value::Array(scores));
        }
    }
    t
}

/// What an LLM stage produced, for `stages.rs` to turn into the run's next step.
pub enum Outcome {
    Planned(Vec<ExperimentSpec>),
    Trained(Vec<ExperimentRecord>),
    Checked {
        passed: bool,
        report: String,
    },
    Fixed(Box<ExperimentSpec>),
    Published(String),
    /// The agent failed; `recoverable` is false for the seed's environment errors.
    Failed {
        error: String,
        recoverable: bool,
    },
}

/// The `result` object of a `finish` call (or the finish arguments themselves).
fn result_of(r: &AgentResult) -> Value {
    let s = r.structured.clone().unwrap_or(Value::Null);
    match s.get("result") {
        Some(v) if v.is_object() || v.is_array() => v.clone(),
        _ => s,
    }
}

/// The seed's non-recoverable stop: `error_type == "environment"` unless
/// `recoverable` is true.
fn not_recoverable(r: &AgentResult) -> bool {
    let v = result_of(r);
    let env = v["error_type"] == "environment" && v["recoverable"] != Value::Bool(true);
    let raw = r.raw_text.contains("\"error_type\": \"environment\"")
        && r.raw_text.contains("\"recoverable\": false");
    env || raw
}

fn specs_in(v: &Value) -> Vec<Result<ExperimentSpec, String>> {
    let list = v
        .get("experiments")
        .or_else(|| v.get("validated_experiments"))
        .and_then(|e| e.as_array())
        .cloned()
        .or_else(|| v.as_array().cloned())
        .unwrap_or_default();
    list.iter()
        .map(|e| match e {
            Value::Object(m) => agents::research::parse_spec(m).map_err(|e| e.to_string()),
            other => Err(format!("not an experiment object: {other}")),
        })
        .collect()
}

/// The run's results with their checkpoints fetched from the store into the worker's cache,
/// for the agents that load them (the checker's and publisher's tools). A checkpoint that
/// cannot be had (a store that does not answer, a missing or corrupt artifact, a full disk)
/// fails the stage job as an environment error, to be retried and then dead-lettered with
/// its cause; the agents never see it as the model's problem.
async fn with_checkpoints(
    dirs: &WorkerDirs,
    records: &[ExperimentRecord],
) -> Result<Vec<ExperimentRecord>, JobError> {
    let store = publisher::store::open(&dirs.store_dir).map_err(JobError::permanent)?;
    let cache = ArtifactCache::of(dirs);
    let mut out = records.to_vec();
    for r in out.iter_mut().filter(|r| r.artifact.is_some()) {
        match artifacts::local_checkpoint(&*store, &cache, r).await {
            Ok(dir) => r.checkpoint = Some(dir),
            Err(e) => return Err(super::stages::environment(e)),
        }
    }
    Ok(out)
}

/// The GPU pods the run's agents may rent, where Basilica is configured (the agents'
/// `create_training_deployment` and the rest; `crate::fleet::desk`): charged to the run,
/// deletable by its bot. A fleet the environment misconfigures leaves the agents without pod
/// tools, with a warning.
fn pod_desk(q: &Queue, run_id: &str, bot: &str) -> Option<Arc<dyn agents::pods::PodDesk>> {
    match crate::cli::fleet::fleet_from_env(q.clone()) {
        Ok(Some(f)) => Some(Arc::new(crate::fleet::desk::FleetDesk::for_run(
            f, run_id, bot,
        ))),
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(%e, "Basilica is configured but the fleet's settings are not usable; the agents get no pod tools");
            None
        }
    }
}

/// Runs the agent of `job_type` for the run's current stage in the worker's directories: the
/// stage's agent ([`stage_agent`]) as the registry defines it when the job starts, with the
/// run bot's prompt modules for it. Returns the outcome and the tokens it used.
pub async fn run_stage(
    q: &Queue,
    dirs: &WorkerDirs,
    run: (&str, &str),
    task: &Task,
    job_type: &str,
    temperature: f64,
) -> Result<(Outcome, agents::Usage), JobError> {
    let (run_id, bot) = run;
    let agent = agent_for(job_type);
    let name = stage_agent(task, job_type);
    let failed = |error: String, recoverable: bool| {
        Ok((
            Outcome::Failed { error, recoverable },
            agents::Usage::default(),
        ))
    };
    let (def, modules) = match crate::agent_defs::for_stage(q, &name, bot).await {
        Ok(d) => d,
        Err(crate::agent_defs::DefError::Store(engine::registry::RegistryError::Queue(e))) => {
            return Err(JobError::retry(format!("the agent registry: {e}")))
        }
        Err(e) => {
            return failed(
                format!("the stage's agent {name:?} cannot be had: {e}"),
                false,
            )
        }
    };
    let llm = match LlmConfig::from_env(agent) {
        Ok(c) => c,
        Err(e) => return failed(format!("the {name} agent cannot run: {e}"), false),
    };
    let o = &task.options;
    let loads_models = matches!(agent, AgentName::Publisher | AgentName::CodeChecker);
    let records = if loads_models {
        with_checkpoints(dirs, &task.results).await?
    } else {
        task.results.clone()
    };
    let publisher = RunPublisher {
        dirs: dirs.clone(),
        run_id: run_id.to_string(),
        records: records.clone(),
        summary: summarize(run_id, task, true, None),
    };
    let mut session = ResearchSession::new(
        run_id,
        dirs.data_dir.clone(),
        dirs.work_dir.clone(),
        Arc::new(RedisHistory { queue: q.clone() }),
        Arc::new(publisher),
    );
    session.device = dirs.device.clone();
    session.pods = pod_desk(q, run_id, bot);
    session.budget = RunBudget {
        max_epochs: o.budget.epochs << o.budget.rounds.saturating_sub(1),
        max_steps_per_epoch: o.budget.steps_per_epoch,
        max_eval_windows: o.budget.eval_windows,
        max_eval_paths: o.budget.eval_paths,
        max_runs: o.budget.experiments.max(1),
    };
    let session = Arc::new(session);
    if loads_models {
        for r in records {
            let _ = session.record(r).await;
        }
    }
    let map = agent_task(q, task, job_type).await;
    let opts = agents::RunOptions {
        temperature: temperature as f32,
        channel: task.options.channel.clone(),
        ..Default::default()
    };
    let result = match agents::run_def(&def, &modules, &llm, session.clone(), &map, &opts).await {
        Ok(r) => r,
        Err(e) => return failed(format!("the {name} agent could not start: {e}"), true),
    };
    let usage = result.usage;
    if agent == AgentName::CodeChecker && !result.success && !not_recoverable(&result) {
        // The seed: a checker that does not pass (for whatever reason) sends
        // its report to the debugger.
        let report: String = result.raw_text.chars().take(10_000).collect();
        return Ok((
            Outcome::Checked {
                passed: false,
                report,
            },
            usage,
        ));
    }
    if !result.success {
        let raw: String = result.raw_text.chars().take(3000).collect();
        return Ok((
            Outcome::Failed {
                error: format!("the {name} agent failed: {raw}"),
                recoverable: !not_recoverable(&result),
            },
            usage,
        ));
    }
    let v = result_of(&result);
    let outcome = match agent {
        AgentName::Planner => {
            let (ok, bad): (Vec<_>, Vec<_>) = specs_in(&v).into_iter().partition(|s| s.is_ok());
            let specs: Vec<ExperimentSpec> = ok.into_iter().flatten().collect();
            if specs.is_empty() {
                let why: Vec<String> = bad.into_iter().filter_map(|b| b.err()).take(3).collect();
                Outcome::Failed {
                    error: format!(
                        "the plan has no valid experiments{}",
                        if why.is_empty() {
                            String::new()
                        } else {
                            format!(": {}", why.join("; "))
                        }
                    ),
                    recoverable: true,
                }
            } else {
                Outcome::Planned(specs)
            }
        }
        AgentName::Trainer => Outcome::Trained(session.results()),
        AgentName::CodeChecker => Outcome::Checked {
            passed: v.get("success").and_then(|s| s.as_bool()) != Some(false)
                && result
                    .structured
                    .as_ref()
                    .and_then(|s| s["success"].as_bool())
                    != Some(false),
            report: result.raw_text.chars().take(10_000).collect(),
        },
        AgentName::Debugger => {
            let spec = ["experiment", "result", "config"]
                .iter()
                .find_map(|k| v.get(*k).and_then(|e| e.as_object()))
                .or_else(|| v.as_object())
                .map(|m| agents::research::parse_spec(m).map_err(|e| e.to_string()));
            match spec {
                Some(Ok(s)) => Outcome::Fixed(Box::new(s)),
                Some(Err(e)) => Outcome::Failed {
                    error: format!("the debugger's experiment is not valid: {e}"),
                    recoverable: true,
                },
                None => Outcome::Failed {
                    error: "the debugger returned no experiment".into(),
                    recoverable: true,
                },
            }
        }
        AgentName::Publisher => {
            match result
                .tool_calls
                .iter()
                .find(|c| c.name == "publish_model" && c.ok)
            {
                Some(c) => Outcome::Published(format!("published {}", c.arguments)),
                None => Outcome::Failed {
                    error: "the publisher agent finished without a successful publish_model call"
                        .into(),
                    recoverable: true,
                },
            }
        }
    };
    Ok((outcome, usage))
}
