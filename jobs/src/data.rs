//! `data-download`: keep the data directory's bars fresh from each asset's realised-price venue
//! (Binance, Hyperliquid; Pyth benchmarks with `"source": "pyth"`), as `synth-city data
//! download` does; a cron schedule runs it so that the miner's history and the shadow scorer's
//! realised prices stay current. The data directory is the worker's own
//! ([`WorkerDirs`](crate::WorkerDirs)), never the payload's.

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
    /// `venue` (each asset's realised-price venue, the default) or `pyth`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl JobSpec for DataDownload {
    const TYPE: &'static str = "data-download";
    const ROLE: Role = Role::Scorer;
    const BOTS: BotAccess =
        BotAccess::Refused("the operator schedules them (synth-city schedule add)");
    const DESCRIPTION: &'static str =
        "merge each asset's venue bars (or Pyth's) into the worker's data dir: {assets, days?, resolution?, end?, source?: venue|pyth}";
    const MAX_ATTEMPTS: u32 = 3;
    const TIMEOUT_MS: u64 = 1_800_000;
    const RETIRED_FIELDS: &'static [(&'static str, &'static str)] = crate::retired::DIR_FIELDS;
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
        if let Some(s) = self
            .source
            .as_deref()
            .filter(|s| !matches!(*s, "venue" | "pyth"))
        {
            return Err(format!(
                "field `source` must be \"venue\" (each asset's realised-price venue) or \"pyth\", got {s:?}"
            )
            .into());
        }
        Ok(())
    }
}
