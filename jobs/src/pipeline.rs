//! The pipeline's job types: `run` (start a run) and the stages `plan`, `train`, `check`,
//! `debug`, `publish`.
//!
//! Every stage job carries only its run id, the stage attempt it belongs to and
//! the sampling temperature for an LLM agent; the run's state (options, plan,
//! results, reports) lives in the run record, so a re-delivered stage job sees
//! the latest state and a stale one is recognised by its attempt.

use serde::{Deserialize, Serialize};

use crate::{BotAccess, InvalidPayload, JobSpec, Role, Timeframe};

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
    fn check(&self) -> Result<(), InvalidPayload> {
        if self.run_id.is_empty() || self.run_id.len() > 64 {
            return Err("field `run_id` must be 1 to 64 characters".into());
        }
        if !(0.0..=2.0).contains(&self.temperature) {
            return Err(format!(
                "field `temperature` must be within 0.0..=2.0, got {}",
                self.temperature
            )
            .into());
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

            fn validate(&self) -> Result<(), InvalidPayload> {
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
    Author,
    "author",
    Agents,
    "pipeline stage: an authoring agent (author, agent_designer, pipeline_architect) writes components, agents or the pipeline's shape",
    10 * 60_000
);
stage!(
    Publish,
    "publish",
    Publisher,
    "pipeline stage: publish the best model",
    30 * 60_000
);

/// `train-one`: one experiment of a run's train stage, a child of the stage's `train` job
/// (the stage fans out one child per experiment of a successive-halving round, and any number
/// of trainers take them at once; the `train` job runs again once every child has an outcome).
/// The child trains `spec` (resuming from `resume_from` in later rounds) on its worker's bars,
/// puts the checkpoint in the store and returns the experiment's record naming it by
/// [`ArtifactRef`](crate::ArtifactRef); no path travels either way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainOne {
    pub run_id: String,
    /// The run's step of the parent `train` job.
    pub step: u32,
    /// The successive-halving round (0 = first).
    pub round: u32,
    /// The experiment's index in the stage's list of experiments.
    pub index: u32,
    /// A `trainer::zoo::spec::ExperimentSpec` as JSON, with this round's epochs.
    pub spec: serde_json::Value,
    /// The previous round's checkpoint with its optimizer state, to resume from.
    #[serde(default)]
    pub resume_from: Option<crate::ArtifactRef>,
    /// Whether to store this round's optimizer state too (a later round may resume it).
    #[serde(default)]
    pub keep_resume: bool,
}

impl JobSpec for TrainOne {
    const TYPE: &'static str = "train-one";
    const ROLE: Role = Role::Trainer;
    const BOTS: BotAccess = BotAccess::Refused("use POST /pipeline/run");
    const DESCRIPTION: &'static str =
        "pipeline: train one experiment of a run's train stage (a child of the `train` job)";
    const MAX_ATTEMPTS: u32 = 3;
    const TIMEOUT_MS: u64 = 6 * 3_600_000;
    type Output = serde_json::Value;

    fn validate(&self) -> Result<(), InvalidPayload> {
        if self.run_id.is_empty() || self.run_id.len() > 64 {
            return Err("field `run_id` must be 1 to 64 characters".into());
        }
        if !self.spec.is_object() {
            return Err("field `spec` must be a JSON object (an experiment spec)".into());
        }
        Ok(())
    }
}

/// What a pipeline run may spend and on what: the built-in planner's budget. A run starts from
/// [`Budget::default`] and a [`RunRequest`] overrides any of it.
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
    pub timeframe: Timeframe,
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
            timeframe: Timeframe::FiveMinutes,
            rounds: 2,
        }
    }
}

/// The word that stands for the newest run wherever a run id is taken (`runs show latest`,
/// `history run latest`, `publish --run latest`, `GET /runs/latest`, ...). No run id is ever
/// this word: ids are ULIDs, or `r` and hex digits.
pub const LATEST_RUN: &str = "latest";

/// Whether a run id as given names the newest run ([`LATEST_RUN`], any case).
pub fn is_latest_run(id: &str) -> bool {
    id.trim().eq_ignore_ascii_case(LATEST_RUN)
}

/// What a pipeline run asks for: every field optional, [`Budget::default`] and the run
/// defaults otherwise. The one declaration of these fields: `POST /pipeline/run` takes it as
/// JSON, the `run` job as its `run` field, and `synth-city pipeline` as flags (with the `clap`
/// feature).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    /// Experiments per plan (default 4).
    #[cfg_attr(feature = "clap", arg(long))]
    pub max_experiments: Option<usize>,
    /// First-round epochs per experiment, doubled for survivors (default 2).
    #[cfg_attr(feature = "clap", arg(long))]
    pub epochs: Option<usize>,
    /// Successive-halving rounds (default 2).
    #[cfg_attr(feature = "clap", arg(long))]
    pub rounds: Option<usize>,
    /// Training steps per epoch (default 20).
    #[cfg_attr(feature = "clap", arg(long))]
    pub steps_per_epoch: Option<usize>,
    /// Model width (default 16).
    #[cfg_attr(feature = "clap", arg(long))]
    pub d_model: Option<usize>,
    /// Bars of context (default 32).
    #[cfg_attr(feature = "clap", arg(long))]
    pub seq_len: Option<usize>,
    /// Training batch size (default 8).
    #[cfg_attr(feature = "clap", arg(long))]
    pub batch_size: Option<usize>,
    /// Paths sampled per training window (default 16).
    #[cfg_attr(feature = "clap", arg(long))]
    pub n_paths: Option<usize>,
    /// Validation windows scored with the SN50 CRPS (default 8).
    #[cfg_attr(feature = "clap", arg(long))]
    pub eval_windows: Option<usize>,
    /// Paths per validation window (default 1000).
    #[cfg_attr(feature = "clap", arg(long))]
    pub eval_paths: Option<usize>,
    /// Assets, comma-separated (default BTC).
    #[cfg_attr(feature = "clap", arg(long, value_delimiter = ','))]
    pub assets: Option<Vec<String>>,
    /// `5m` (the 24 h prompt, default) or `1m` (the 1 h prompt). Text on the wire, checked
    /// into a [`Timeframe`] when the run's options are built, so that a bad value in a
    /// queued `run` job is dead-lettered with its reason.
    #[cfg_attr(feature = "clap", arg(long))]
    pub timeframe: Option<String>,
    /// Attempts of a retried stage and rounds of the check/debug loop (default 5; overrides
    /// the stored meta-strategy when not 5).
    #[cfg_attr(feature = "clap", arg(long))]
    pub retries: Option<u32>,
    /// Publish the best model to the store when the check passes.
    #[cfg_attr(
        feature = "clap",
        arg(long, num_args = 0..=1, default_missing_value = "true")
    )]
    pub publish: Option<bool>,
    /// Seed of the planner and of training (default 42).
    #[cfg_attr(feature = "clap", arg(long))]
    pub seed: Option<u64>,
    /// Who carries out the stages: `auto` (the LLM agents when the worker has
    /// CHUTES_API_KEY; the default), `builtin` (offline) or `llm`.
    #[cfg_attr(feature = "clap", arg(long))]
    pub agents: Option<String>,
    /// The LLM agents' base sampling temperature, raised by the strategy's step on each retry
    /// (default 0.1; within 0..=1). The seed's `temperature`.
    #[cfg_attr(feature = "clap", arg(long))]
    pub temperature: Option<f64>,
    /// The prompt channel whose fragments the LLM agents' prompts add (default `default`;
    /// letters, digits, `-` and `_`, at most 64). The seed's `channel`.
    #[cfg_attr(feature = "clap", arg(long))]
    pub channel: Option<String>,
    /// The planner's instructions for this run, in place of the pipeline definition's first
    /// stage's user message (at most 4,000 characters). The seed's `message`. The built-in
    /// planner follows its directives (`favour block tcn; avoid head SDEHead; only family
    /// attention`, docs/pipeline.md) and says which it applied.
    #[cfg_attr(feature = "clap", arg(long))]
    pub message: Option<String>,
    /// The market data the run trains and checks on: a dataset id from `synth-city data
    /// publish` (`ds-` and 16 hex digits), or `latest` (the store's most recent). Without one,
    /// the training worker's own bars are published as a dataset and pinned, so every later
    /// stage, on any machine, reads the same bars.
    #[cfg_attr(feature = "clap", arg(long))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<String>,
}

impl RunRequest {
    /// Overrides `budget` with what this request sets. A timeframe that is not one is an
    /// error naming the field.
    pub fn apply_budget(&self, budget: &mut Budget) -> Result<(), InvalidPayload> {
        macro_rules! set {
            ($($field:ident => $target:ident),*) => {
                $(if let Some(v) = self.$field.clone() { budget.$target = v; })*
            };
        }
        set!(max_experiments => experiments, epochs => epochs, rounds => rounds,
             steps_per_epoch => steps_per_epoch, d_model => d_model, seq_len => seq_len,
             batch_size => batch_size, n_paths => n_paths, eval_windows => eval_windows,
             eval_paths => eval_paths, assets => assets);
        if let Some(tf) = &self.timeframe {
            budget.timeframe = tf.parse().map_err(|e: crate::artifact::UnknownTimeframe| {
                InvalidPayload(format!("timeframe: {e}"))
            })?;
        }
        Ok(())
    }
}

/// `run`: start a pipeline run (a cron schedule's nightly research run, say). The handler
/// creates the run and enqueues its first stage; the run's id derives from this job's id, so
/// a schedule's fire (one job id per fire) starts one run even if the job runs twice. Each
/// stage's worker uses its own directories ([`WorkerDirs`](crate::WorkerDirs)); the payload
/// names none. Open to bots: the run belongs to the bot that enqueues it (the bridge sets
/// `bot_id` to the caller and refuses a payload naming another bot).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartRun {
    #[serde(default)]
    pub run: RunRequest,
    /// The bot the run belongs to (`default` when absent). Over the bridge, always the
    /// caller: set when absent, refused when it names another bot.
    pub bot_id: Option<String>,
}

impl JobSpec for StartRun {
    const TYPE: &'static str = "run";
    const ROLE: Role = Role::Engine;
    const BOTS: BotAccess = BotAccess::Allowed;
    const DESCRIPTION: &'static str =
        "start a pipeline run: {run: {assets, timeframe, publish, ...}, bot_id?}";
    const MAX_ATTEMPTS: u32 = 3;
    const TIMEOUT_MS: u64 = 60_000;
    const RETIRED_FIELDS: &'static [(&'static str, &'static str)] = crate::retired::DIR_FIELDS;
    type Output = serde_json::Value;

    fn validate(&self) -> Result<(), InvalidPayload> {
        if let Some(a) = &self.run.agents {
            if !matches!(a.as_str(), "auto" | "builtin" | "llm") {
                return Err(
                    format!("field `run.agents` must be auto, builtin or llm, got {a:?}").into(),
                );
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
