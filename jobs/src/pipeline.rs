//! The pipeline's job types: `run` (start a run) and the stages `plan`, `train`, `check`,
//! `debug`, `publish`.
//!
//! Every stage job carries only its run id, the stage attempt it belongs to and
//! the sampling temperature for an LLM agent; the run's state (options, plan,
//! results, reports) lives in the run record, so a re-delivered stage job sees
//! the latest state and a stale one is recognised by its attempt.

use serde::{Deserialize, Serialize};

use crate::{BotAccess, JobSpec, Role};

/// What every stage job says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageJob {
    pub run_id: String,
    /// The run's stage counter this job was enqueued for.
    pub attempt: u32,
    /// Sampling temperature for an LLM agent (base + attempt x step).
    #[serde(default)]
    pub temperature: f64,
}

impl StageJob {
    fn check(&self) -> Result<(), String> {
        if self.run_id.is_empty() || self.run_id.len() > 64 {
            return Err("field `run_id` must be 1 to 64 characters".into());
        }
        if !(0.0..=2.0).contains(&self.temperature) {
            return Err(format!(
                "field `temperature` must be within 0.0..=2.0, got {}",
                self.temperature
            ));
        }
        Ok(())
    }
}

macro_rules! stage {
    ($name:ident, $ty:literal, $role:ident, $desc:literal, $timeout:expr) => {
        #[doc = $desc]
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub StageJob);

        impl JobSpec for $name {
            const TYPE: &'static str = $ty;
            const ROLE: Role = Role::$role;
            const BOTS: BotAccess = BotAccess::Refused("use POST /pipeline/run");
            const DESCRIPTION: &'static str = $desc;
            const MAX_ATTEMPTS: u32 = 3;
            const TIMEOUT_MS: u64 = $timeout;
            type Output = serde_json::Value;

            fn validate(&self) -> Result<(), String> {
                self.0.check()
            }
        }
    };
}

stage!(
    Plan,
    "plan",
    Agents,
    "pipeline stage: plan the next experiments",
    10 * 60_000
);
stage!(
    Train,
    "train",
    Trainer,
    "pipeline stage: train and score the planned experiments",
    6 * 3_600_000
);
stage!(
    Check,
    "check",
    Agents,
    "pipeline stage: check the best experiment",
    30 * 60_000
);
stage!(
    Debug,
    "debug",
    Agents,
    "pipeline stage: propose a fix for a failed check",
    10 * 60_000
);
stage!(
    Publish,
    "publish",
    Publisher,
    "pipeline stage: publish the best model",
    30 * 60_000
);

/// What a pipeline run asks for: every field optional, the defaults of `synth-city pipeline`
/// otherwise (the budget of the built-in planner, the assets and timeframe, publishing).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    pub max_experiments: Option<usize>,
    pub epochs: Option<usize>,
    pub rounds: Option<usize>,
    pub steps_per_epoch: Option<usize>,
    pub d_model: Option<usize>,
    pub seq_len: Option<usize>,
    pub batch_size: Option<usize>,
    pub n_paths: Option<usize>,
    pub eval_windows: Option<usize>,
    pub eval_paths: Option<usize>,
    pub assets: Option<Vec<String>>,
    pub timeframe: Option<String>,
    pub retries: Option<u32>,
    pub publish: Option<bool>,
    pub seed: Option<u64>,
    /// `auto` (the LLM agents when the worker has CHUTES_API_KEY), `builtin` or `llm`.
    pub agents: Option<String>,
}

/// `run`: start a pipeline run (a cron schedule's nightly research run, say). The handler
/// creates the run and enqueues its first stage; the run's id derives from this job's id, so
/// a schedule's fire (one job id per fire) starts one run even if the job runs twice. The
/// directories are the worker's paths (`data`, `runs`, `store` by default), which is why the
/// bridge does not take this type from bots (they use `POST /pipeline/run`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartRun {
    #[serde(default)]
    pub run: RunRequest,
    pub data_dir: Option<std::path::PathBuf>,
    pub out_dir: Option<std::path::PathBuf>,
    pub store_dir: Option<std::path::PathBuf>,
    /// The bot the run belongs to (`default` when absent).
    pub bot_id: Option<String>,
}

impl JobSpec for StartRun {
    const TYPE: &'static str = "run";
    const ROLE: Role = Role::Engine;
    const BOTS: BotAccess = BotAccess::Refused("use POST /pipeline/run");
    const DESCRIPTION: &'static str =
        "start a pipeline run: {run: {assets, timeframe, publish, ...}, data_dir?, out_dir?, store_dir?, bot_id?}";
    const MAX_ATTEMPTS: u32 = 3;
    const TIMEOUT_MS: u64 = 60_000;
    type Output = serde_json::Value;

    fn validate(&self) -> Result<(), String> {
        if let Some(a) = &self.run.agents {
            if !matches!(a.as_str(), "auto" | "builtin" | "llm") {
                return Err(format!(
                    "field `run.agents` must be auto, builtin or llm, got {a:?}"
                ));
            }
        }
        if let Some(b) = &self.bot_id {
            if b.is_empty() || b.len() > 64 {
                return Err("field `bot_id` must be 1 to 64 characters".into());
            }
        }
        Ok(())
    }
}
