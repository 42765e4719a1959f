//! The pipeline's stage job types: `plan`, `train`, `check`, `debug`, `publish`.
//!
//! Every stage job carries only its run id, the stage attempt it belongs to and
//! the sampling temperature for an LLM agent; the run's state (options, plan,
//! results, reports) lives in the run record, so a re-delivered stage job sees
//! the latest state and a stale one is recognised by its attempt.

use serde::{Deserialize, Serialize};

use crate::JobSpec;

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
    ($name:ident, $ty:literal, $desc:literal, $timeout:expr) => {
        #[doc = $desc]
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub StageJob);

        impl JobSpec for $name {
            const TYPE: &'static str = $ty;
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
    "pipeline stage: plan the next experiments",
    10 * 60_000
);
stage!(
    Train,
    "train",
    "pipeline stage: train and score the planned experiments",
    6 * 3_600_000
);
stage!(
    Check,
    "check",
    "pipeline stage: check the best experiment",
    30 * 60_000
);
stage!(
    Debug,
    "debug",
    "pipeline stage: propose a fix for a failed check",
    10 * 60_000
);
stage!(
    Publish,
    "publish",
    "pipeline stage: publish the best model",
    30 * 60_000
);
