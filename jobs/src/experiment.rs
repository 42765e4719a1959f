//! The `experiment` job type: train and score one experiment spec for a bot
//! (enqueued by the bridge's `POST /experiment/run`). The spec travels as JSON
//! (this crate knows nothing of the model zoo); the handler in
//! `trainer::handler` decodes and validates it before training, on the bars of the worker's
//! own data directory, and its result names the checkpoint by [`ArtifactRef`](crate::ArtifactRef)
//! (in the store), never by a path.

use serde::{Deserialize, Serialize};

use crate::{BotAccess, InvalidPayload, JobSpec, Role};

/// Train `spec` on the worker's bars, score it, and put the checkpoint in the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunExperiment {
    /// The bot's experiment id (the bridge's session record).
    pub experiment_id: String,
    /// A `workers::zoo::spec::ExperimentSpec` as JSON.
    pub spec: serde_json::Value,
    /// `cpu` (default) or `cuda[:N]` in a CUDA build.
    #[serde(default)]
    pub device: Option<String>,
}

impl JobSpec for RunExperiment {
    const TYPE: &'static str = "experiment";
    const ROLE: Role = Role::Trainer;
    const BOTS: BotAccess = BotAccess::Refused("use POST /experiment/run");
    const DESCRIPTION: &'static str =
        "train and score one experiment spec on the worker's bars; the result names the checkpoint's artifact: {experiment_id, spec, device?}";
    const MAX_ATTEMPTS: u32 = 2;
    const TIMEOUT_MS: u64 = 6 * 3_600_000;
    const RETIRED_FIELDS: &'static [(&'static str, &'static str)] = crate::retired::DIR_FIELDS;
    // A bridge session reads the result from the record (src/bridge/session.rs, `sync`).
    const RECORD_READ_AFTER_FINISH: bool = true;
    type Output = serde_json::Value;

    fn validate(&self) -> Result<(), InvalidPayload> {
        if self.experiment_id.is_empty() || self.experiment_id.len() > 64 {
            return Err("field `experiment_id` must be 1 to 64 characters".into());
        }
        if !self.spec.is_object() {
            return Err("field `spec` must be a JSON object (an experiment spec)".into());
        }
        Ok(())
    }
}
