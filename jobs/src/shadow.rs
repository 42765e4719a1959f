//! The shadow scorer's job types: `shadow-prompt` records what the served model is asked at a
//! prompt time (as a validator would ask it), and `shadow-score` scores the recorded prompts
//! whose 24 h (or 1 h) have passed, with the validator's CRPS, against the GBM baseline.
//!
//! A model is named by what every machine can resolve: `champions` (each (asset, prompt) pair's
//! champion, what the miner serves, with the pair's challengers beside it), `latest` (the
//! production pointer in the store), `gbm`, or an artifact reference; the store and the bars are the worker's own
//! ([`WorkerDirs`](crate::WorkerDirs)), never the payload's.

use serde::{Deserialize, Serialize};

use crate::{ArtifactRef, BotAccess, InvalidPayload, JobSpec, Role};

/// `shadow-prompt`: record one prompt per asset.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShadowPrompt {
    /// Assets to prompt (default BTC, ETH, SOL).
    #[serde(default)]
    pub assets: Vec<String>,
    /// `low` (24 h at 5 min) or `high` (1 h at 1 min); default `low`.
    pub prompt: Option<String>,
    /// `champions` (each pair's champion, the GBM where none, and the pair's challengers
    /// scored beside it), `latest` (the production model of the prompt's timeframe in the
    /// store), `gbm`, or a checkpoint in the store by its artifact reference
    /// (`sha256:<hex>:<size>`, e.g. an experiment record's `artifact`); default `champions`.
    pub model: Option<String>,
    /// Prompt start time (unix seconds) for a historical prompt; default: the next minute.
    pub at: Option<i64>,
}

impl JobSpec for ShadowPrompt {
    const TYPE: &'static str = "shadow-prompt";
    const ROLE: Role = Role::Scorer;
    const BOTS: BotAccess =
        BotAccess::Refused("the operator schedules them (synth-city schedule add)");
    const DESCRIPTION: &'static str =
        "record shadow prompts for the served model: {assets?, prompt?, model?: champions|latest|gbm|sha256:<hex>:<size>, at?}";
    const MAX_ATTEMPTS: u32 = 3;
    const TIMEOUT_MS: u64 = 120_000;
    const RETIRED_FIELDS: &'static [(&'static str, &'static str)] = crate::retired::DIR_FIELDS;
    type Output = serde_json::Value;

    fn validate(&self) -> Result<(), InvalidPayload> {
        if let Some(m) = self.model.as_deref() {
            if !["champions", "latest", "gbm"].contains(&m) && m.parse::<ArtifactRef>().is_err() {
                return Err(format!(
                    "field `model` must be champions, latest, gbm or an artifact reference \
                     (sha256:<hex>:<size>, from an experiment record's `artifact`), got {m:?}; \
                     a checkpoint folder is a path of one machine: put it in the store first"
                )
                .into());
            }
        }
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

/// `shadow-score`: score the recorded prompts that can be scored (the served model, the GBM and
/// the challengers), then run the shadow policy over the settled evidence (the worker's
/// `SYNTH_SHADOW_POLICY`; off by default: it only reports).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShadowScore {
    /// How many days of prompts to look through, back from today (default 3).
    pub days: Option<u32>,
    /// These days (`YYYY-MM-DD`) instead, e.g. for prompts recorded with `at` in the past.
    #[serde(default)]
    pub dates: Vec<String>,
}

impl JobSpec for ShadowScore {
    const TYPE: &'static str = "shadow-score";
    const ROLE: Role = Role::Scorer;
    const BOTS: BotAccess =
        BotAccess::Refused("the operator schedules them (synth-city schedule add)");
    const DESCRIPTION: &'static str =
        "score recorded shadow prompts whose window has passed: {days?, dates?}";
    const MAX_ATTEMPTS: u32 = 3;
    const TIMEOUT_MS: u64 = 1_800_000;
    const RETIRED_FIELDS: &'static [(&'static str, &'static str)] = crate::retired::DIR_FIELDS;
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
