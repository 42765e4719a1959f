//! The `experiment` job type: train and score one experiment spec for a bot
//! (enqueued by the bridge's `POST /experiment/run`). The spec travels as JSON
//! (this crate knows nothing of the model zoo); the handler in
//! `workers::experiment` decodes and validates it before training.

use serde::{Deserialize, Serialize};

use crate::{BotAccess, InvalidPayload, JobSpec, Role};

/// Train `spec` on the bars in `data_dir`, checkpoint into `out_dir`, score it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunExperiment {
    /// The bot's experiment id (the bridge's session record).
    pub experiment_id: String,
    /// A `workers::zoo::spec::ExperimentSpec` as JSON.
    pub spec: serde_json::Value,
    pub data_dir: String,
    pub out_dir: String,
    /// `cpu` (default) or `cuda[:N]` in a CUDA build.
    #[serde(default)]
    pub device: Option<String>,
}

impl JobSpec for RunExperiment {
    const TYPE: &'static str = "experiment";
    const ROLE: Role = Role::Trainer;
    const BOTS: BotAccess = BotAccess::Refused("use POST /experiment/run");
    const DESCRIPTION: &'static str =
        "train and score one experiment spec: {experiment_id, spec, data_dir, out_dir, device?}";
    const MAX_ATTEMPTS: u32 = 2;
    const TIMEOUT_MS: u64 = 6 * 3_600_000;
    type Output = serde_json::Value;

    fn validate(&self) -> Result<(), InvalidPayload> {
        if self.experiment_id.is_empty() || self.experiment_id.len() > 64 {
            return Err("field `experiment_id` must be 1 to 64 characters".into());
        }
        if !self.spec.is_object() {
            return Err("field `spec` must be a JSON object (an experiment spec)".into());
        }
        if self.data_dir.is_empty() {
            return Err("field `data_dir` must not be empty".into());
        }
        if self.out_dir.is_empty() {
            return Err("field `out_dir` must not be empty".into());
        }
        Ok(())
    }
}
