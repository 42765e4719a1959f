//! `promote`: put a published candidate (or a classical model) through the promotion gate for
//! some assets, on a publisher worker (the evaluation scores three models on tens of windows:
//! minutes of CPU, which no bridge or CLI request should hold). What it does is `publisher::champions`'s; this
//! is only the payload.
//!
//! Who may ask, and for what, is decided before the job exists: bots reach it only through
//! `POST /models/promote`, which sets `requested_by` to the caller and refuses them `force` and
//! the gate's parameters (a bot that could lower the margin or raise alpha could wave its own
//! model through); the operator may enqueue it directly (`jobs enqueue`, `POST /jobs`).

use serde::{Deserialize, Serialize};

use crate::{BotAccess, InvalidPayload, JobSpec, Role};

/// `promote`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Promote {
    /// The published model, `RUN/NAME`, or a classical model, `classical:NAME` (with `prompt`).
    pub candidate: String,
    /// The SN50 assets to decide, each on its own (`["all"]`: every asset the candidate was
    /// trained on, or a classical model's prompt's).
    pub assets: Vec<String>,
    /// `low` or `high`; default: the prompt of the candidate's timeframe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// Score on this dataset (`ds-...` or `latest`) instead of the worker's data directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<String>,
    /// Windows drawn from after the training data (default 40).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub windows: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Paths per window (default the validator's 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paths: Option<usize>,
    /// The operator's override: promote whatever the gate says (recorded as forced).
    #[serde(default)]
    pub force: bool,
    /// The gate's parameters (the operator's only): relative margin, one-sided level, minimum
    /// windows, Newey–West lag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub margin: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_windows: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag: Option<usize>,
    /// Who asked (recorded in each decision): the bridge's caller, else `operator`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
}

impl Promote {
    /// Whether it asks for anything only the operator may: `force` or a gate parameter.
    pub fn operator_fields(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.force {
            out.push("force");
        }
        for (name, set) in [
            ("margin", self.margin.is_some()),
            ("alpha", self.alpha.is_some()),
            ("min_windows", self.min_windows.is_some()),
            ("lag", self.lag.is_some()),
        ] {
            if set {
                out.push(name);
            }
        }
        out
    }
}

impl JobSpec for Promote {
    const TYPE: &'static str = "promote";
    const ROLE: Role = Role::Publisher;
    const BOTS: BotAccess = BotAccess::Refused(
        "use POST /models/promote, which puts your candidate through the gate in your name",
    );
    const DESCRIPTION: &'static str =
        "put a published candidate through the promotion gate per asset: {candidate: RUN/NAME | classical:NAME, assets, prompt?, dataset?, windows?, seed?, paths?, force?, margin?, alpha?, min_windows?, lag?}";
    const MAX_ATTEMPTS: u32 = 2;
    const TIMEOUT_MS: u64 = 3_600_000;
    type Output = serde_json::Value;

    fn validate(&self) -> Result<(), InvalidPayload> {
        let classical = self.candidate.starts_with("classical:");
        if !self.candidate.contains('/') && !classical {
            return Err(format!(
                "field `candidate` must name a published model as RUN/NAME or a classical model as classical:NAME, got {:?}",
                self.candidate
            )
            .into());
        }
        if classical && self.prompt.is_none() {
            return Err(format!(
                "field `prompt`: {} answers either prompt; send \"low\" (24 h) or \"high\" (1 h)",
                self.candidate
            )
            .into());
        }
        if self.assets.is_empty() || self.assets.len() > 32 {
            return Err("field `assets` must name 1 to 32 assets".into());
        }
        if let Some(p) = self
            .prompt
            .as_deref()
            .filter(|p| !matches!(*p, "low" | "high"))
        {
            return Err(format!("field `prompt` must be \"low\" or \"high\", got {p:?}").into());
        }
        if let Some(w) = self.windows.filter(|w| !(1..=1000).contains(w)) {
            return Err(format!("field `windows` must be within 1..=1000, got {w}").into());
        }
        if let Some(p) = self.paths.filter(|p| !(10..=10_000).contains(p)) {
            return Err(format!("field `paths` must be within 10..=10000, got {p}").into());
        }
        Ok(())
    }
}
