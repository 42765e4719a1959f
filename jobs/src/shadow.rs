//! The shadow scorer's job types: `shadow-prompt` records what the served model is asked at a
//! prompt time (as a validator would ask it), and `shadow-score` scores the recorded prompts
//! whose 24 h (or 1 h) have passed, with the validator's CRPS, against the GBM baseline.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::{BotAccess, InvalidPayload, JobSpec, Role};

/// `shadow-prompt`: record one prompt per asset.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShadowPrompt {
    /// Assets to prompt (default BTC, ETH, SOL).
    #[serde(default)]
    pub assets: Vec<String>,
    /// `low` (24 h at 5 min) or `high` (1 h at 1 min); default `low`.
    pub prompt: Option<String>,
    /// `latest` (the production model of the prompt's timeframe in the store), `gbm`, or a
    /// checkpoint folder; default `latest`.
    pub model: Option<String>,
    /// Prompt start time (unix seconds) for a historical prompt; default: the next minute.
    pub at: Option<i64>,
    pub store_dir: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
}

impl JobSpec for ShadowPrompt {
    const TYPE: &'static str = "shadow-prompt";
    const ROLE: Role = Role::Scorer;
    const BOTS: BotAccess =
        BotAccess::Refused("the operator schedules them (synth-city schedule add)");
    const DESCRIPTION: &'static str =
        "record shadow prompts for the served model: {assets?, prompt?, model?, at?, store_dir?, data_dir?}";
    const MAX_ATTEMPTS: u32 = 3;
    const TIMEOUT_MS: u64 = 120_000;
    type Output = serde_json::Value;

    fn validate(&self) -> Result<(), InvalidPayload> {
        if let Some(p) = &self.prompt {
            if p != "low" && p != "high" {
                return Err(format!("field `prompt` must be low or high, got {p:?}").into());
            }
        }
        for a in &self.assets {
            if !crate::is_asset_name(a) {
                return Err(format!("field `assets`: {a:?} is not an asset name").into());
            }
        }
        Ok(())
    }
}

/// `shadow-score`: score the recorded prompts that can be scored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShadowScore {
    /// How many days of prompts to look through, back from today (default 3).
    pub days: Option<u32>,
    /// These days (`YYYY-MM-DD`) instead, e.g. for prompts recorded with `at` in the past.
    #[serde(default)]
    pub dates: Vec<String>,
    pub store_dir: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
}

impl JobSpec for ShadowScore {
    const TYPE: &'static str = "shadow-score";
    const ROLE: Role = Role::Scorer;
    const BOTS: BotAccess =
        BotAccess::Refused("the operator schedules them (synth-city schedule add)");
    const DESCRIPTION: &'static str =
        "score recorded shadow prompts whose window has passed: {days?, store_dir?, data_dir?}";
    const MAX_ATTEMPTS: u32 = 3;
    const TIMEOUT_MS: u64 = 1_800_000;
    type Output = serde_json::Value;

    fn validate(&self) -> Result<(), InvalidPayload> {
        if let Some(d) = self.days.filter(|d| !(1..=366).contains(d)) {
            return Err(format!("field `days` must be within 1..=366, got {d}").into());
        }
        for d in &self.dates {
            let ok = d.len() == 10
                && d.chars().enumerate().all(|(i, c)| {
                    if i == 4 || i == 7 {
                        c == '-'
                    } else {
                        c.is_ascii_digit()
                    }
                });
            if !ok {
                return Err(format!("field `dates`: {d:?} is not a YYYY-MM-DD date").into());
            }
        }
        Ok(())
    }
}
