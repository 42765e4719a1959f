//! Built-in job types for operations and tests: `noop` and `sleep`.

use serde::{Deserialize, Serialize};

use crate::{BotAccess, InvalidPayload, JobSpec, Role};

/// Does nothing; measures the queue itself.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Noop {}

impl JobSpec for Noop {
    const TYPE: &'static str = "noop";
    const ROLE: Role = Role::Engine;
    const BOTS: BotAccess = BotAccess::Allowed;
    const DESCRIPTION: &'static str = "does nothing; for benchmarks and smoke tests";
    type Output = serde_json::Value;
}

/// Sleeps `ms` milliseconds, then fails with probability `fail_rate`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sleep {
    pub ms: u64,
    #[serde(default)]
    pub fail_rate: f64,
}

/// What a `sleep` job returns.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SleepOutput {
    pub slept_ms: u64,
}

impl JobSpec for Sleep {
    const TYPE: &'static str = "sleep";
    const ROLE: Role = Role::Engine;
    const BOTS: BotAccess = BotAccess::Allowed;
    const DESCRIPTION: &'static str =
        "sleeps {\"ms\": N} milliseconds and fails with probability fail_rate; for tests";
    type Output = SleepOutput;

    fn validate(&self) -> Result<(), InvalidPayload> {
        if !(0.0..=1.0).contains(&self.fail_rate) {
            return Err(format!(
                "field `fail_rate` must be within 0.0..=1.0, got {}",
                self.fail_rate
            )
            .into());
        }
        if self.ms > 24 * 3600 * 1000 {
            return Err(format!("field `ms` must be at most one day, got {}", self.ms).into());
        }
        Ok(())
    }
}
