//! `data-download`: keep the data directory's bars fresh from Pyth's benchmarks history (the
//! validator's price source), as `synth-city data download` does; a cron schedule runs it so
//! that the miner's history and the shadow scorer's realised prices stay current.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::{BotAccess, InvalidPayload, JobSpec, Role};

/// `data-download`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataDownload {
    /// SN50 asset names (BTC, ETH, XAU, ...).
    pub assets: Vec<String>,
    /// Days of history up to `end` (default 2).
    pub days: Option<u32>,
    /// Bar minutes: 1 or 5 (default 1).
    pub resolution: Option<u32>,
    /// End of the range (unix seconds; default now).
    pub end: Option<i64>,
    pub data_dir: Option<PathBuf>,
}

impl JobSpec for DataDownload {
    const TYPE: &'static str = "data-download";
    const ROLE: Role = Role::Scorer;
    const BOTS: BotAccess =
        BotAccess::Refused("the operator schedules them (synth-city schedule add)");
    const DESCRIPTION: &'static str =
        "merge Pyth benchmarks bars into the data dir: {assets, days?, resolution?, end?, data_dir?}";
    const MAX_ATTEMPTS: u32 = 3;
    const TIMEOUT_MS: u64 = 1_800_000;
    type Output = serde_json::Value;

    fn validate(&self) -> Result<(), InvalidPayload> {
        if self.assets.is_empty() {
            return Err("field `assets` must name at least one asset".into());
        }
        if let Some(d) = self.days.filter(|d| !(1..=3660).contains(d)) {
            return Err(format!("field `days` must be within 1..=3660, got {d}").into());
        }
        if let Some(r) = self.resolution.filter(|r| *r != 1 && *r != 5) {
            return Err(format!("field `resolution` must be 1 or 5, got {r}").into());
        }
        Ok(())
    }
}
