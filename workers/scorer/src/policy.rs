//! Shadow challengers and the shadow policy (issue 19, item 4).
//!
//! A pair's **challengers** ([`challengers`]) are the last K published candidates for that
//! (asset, prompt) that the gate refused for the pair or that are newer than its champion (all
//! of them, newest first, when the GBM serves); the shadow scorer records them beside the
//! champion on every live prompt and scores them on the same request once it settles.
//!
//! The **evidence** of a pair ([`evaluate_pair`]) is its settled prompts answered by the
//! current champion (the GBM where none): per challenger, the prompts where it was scored too.
//! Each challenger is put through the promotion gate ([`sn50::gate::decide`]) on those paired
//! per-prompt scores (candidate = challenger, champion, GBM); the champion is put against the
//! GBM the same way (the GBM in the candidate's seat: its comparison with the champion is the
//! test). Evidence counts once it covers [`ShadowSettings::min_days`] distinct days.
//!
//! The **policy** ([`run`], `SYNTH_SHADOW_POLICY`): `off` (the default) only reports; `promote`
//! promotes the best challenger the gate passes on ready evidence; `promote-demote` also demotes
//! a champion the GBM beats on ready evidence (its predecessor, or the GBM, serves again). Each
//! is a decision in the pair's history (`by: "shadow-policy"`, the gate's decision on the
//! evidence, the evidence's dates), through `publisher::champions`.
//!
//! It does not score prompts (`crate::shadow` does), and reads no bars or checkpoints: only the
//! records in the store.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use jobs::Timeframe;
use publisher::champions::{self, Action, Champion, ChampionError, EvaluationInfo};
use publisher::store::{Store, StoreError, StoreExt};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sn50::constants::PromptKind;
use sn50::gate::{self, GateDecision, GateError, GateInput, GateParams, Verdict};
use sn50::shadow::{date_of, Contender, ShadowRecord};

/// How many challengers a pair has (default 3).
pub const CHALLENGERS_ENV: &str = "SYNTH_SHADOW_CHALLENGERS";
/// `off`, `promote` or `promote-demote` (default `off`).
pub const POLICY_ENV: &str = "SYNTH_SHADOW_POLICY";
/// Settled days of evidence before the policy acts (default 7).
pub const MIN_DAYS_ENV: &str = "SYNTH_SHADOW_MIN_DAYS";
/// Who the policy's decisions name.
pub const BY: &str = "shadow-policy";
/// Where the shadow-score job leaves the policy's last report.
pub const REPORT_KEY: &str = "scores/shadow-policy.json";
/// Where the scorer keeps each day's settled evidence ([`Row`]s), one object per UTC date.
pub const EVIDENCE_PREFIX: &str = "scores/evidence/";

/// The key of a day's evidence.
pub fn evidence_key(date: &str) -> String {
    format!("{EVIDENCE_PREFIX}{date}.json")
}

/// One settled prompt as the policy reads it: what the served model, the GBM and each
/// challenger scored (a compact copy of the record's results, so the policy reads one object
/// per day instead of every record).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub asset: String,
    /// `low` or `high`.
    pub prompt: String,
    /// The prompt's start time (unix seconds).
    pub start: i64,
    /// Its time length (seconds).
    pub length: u64,
    pub paths: usize,
    /// The served model (an artifact reference, or `gbm`).
    pub model: String,
    pub crps: f64,
    pub gbm: f64,
    /// The served model could not answer (scored invalid).
    #[serde(default)]
    pub failed: bool,
    /// `[candidate, score, failed]` per challenger.
    #[serde(default)]
    pub challengers: Vec<(String, f64, bool)>,
}

/// The settled records among `records`, as rows.
pub fn rows(records: &[ShadowRecord]) -> Vec<Row> {
    records
        .iter()
        .filter_map(|r| {
            let res = r.result.as_ref()?;
            Some(Row {
                asset: r.asset.clone(),
                prompt: r.prompt.clone(),
                start: r.start_time,
                length: r.time_length,
                paths: r.num_simulations,
                model: r.model.clone(),
                crps: res.crps,
                gbm: res.gbm_crps,
                failed: res.error.is_some(),
                challengers: r
                    .challengers
                    .iter()
                    .filter_map(|c| {
                        let cr = c.result.as_ref()?;
                        Some((c.candidate.clone(), cr.crps, cr.error.is_some()))
                    })
                    .collect(),
            })
        })
        .collect()
}

/// How many of the newest days of evidence the policy reads: twice the days it needs, at
/// least 14.
pub fn lookback_dates(settings: &ShadowSettings) -> usize {
    (2 * settings.min_days).max(14)
}

/// A setting that makes no policy, or the store.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{name}={value:?}: {fix}")]
    Setting {
        name: &'static str,
        value: String,
        fix: &'static str,
    },
    #[error(transparent)]
    Champion(#[from] ChampionError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Gate(#[from] GateError),
}

impl PolicyError {
    /// Worth trying again later (the store did not answer).
    pub fn is_transient(&self) -> bool {
        match self {
            PolicyError::Champion(e) => e.is_transient(),
            PolicyError::Store(e) => matches!(e, StoreError::Unavailable { .. }),
            _ => false,
        }
    }
}

/// What the policy may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Report only.
    Off,
    /// Promote a challenger that passes the gate on ready evidence.
    Promote,
    /// Also demote a champion the GBM beats on ready evidence.
    PromoteDemote,
}

impl Policy {
    pub fn label(self) -> &'static str {
        match self {
            Policy::Off => "off",
            Policy::Promote => "promote",
            Policy::PromoteDemote => "promote-demote",
        }
    }
}

impl FromStr for Policy {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Self, PolicyError> {
        match s.trim() {
            "" | "off" => Ok(Policy::Off),
            "promote" => Ok(Policy::Promote),
            "promote-demote" => Ok(Policy::PromoteDemote),
            _ => Err(PolicyError::Setting {
                name: POLICY_ENV,
                value: s.to_string(),
                fix: "use off (report only), promote, or promote-demote",
            }),
        }
    }
}

/// The shadow scorer's settings.
#[derive(Debug, Clone)]
pub struct ShadowSettings {
    /// Challengers per pair (`SYNTH_SHADOW_CHALLENGERS`, 3).
    pub challengers: usize,
    /// `SYNTH_SHADOW_POLICY`, off.
    pub policy: Policy,
    /// Distinct days of settled evidence before the policy acts (`SYNTH_SHADOW_MIN_DAYS`, 7).
    pub min_days: usize,
    /// The gate's parameters (its defaults, as `models promote`).
    pub params: GateParams,
}

impl Default for ShadowSettings {
    fn default() -> Self {
        ShadowSettings {
            challengers: 3,
            policy: Policy::Off,
            min_days: 7,
            params: GateParams::default(),
        }
    }
}

impl ShadowSettings {
    /// From the environment (defaults for what is unset); a bad value is an error naming it.
    pub fn from_env() -> Result<Self, PolicyError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// From any lookup of the three settings.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, PolicyError> {
        let mut s = ShadowSettings::default();
        let num = |name: &'static str,
                   max: usize,
                   fix: &'static str|
         -> Result<Option<usize>, PolicyError> {
            match get(name) {
                None => Ok(None),
                Some(v) if v.trim().is_empty() => Ok(None),
                Some(v) => match v.trim().parse::<usize>() {
                    Ok(n) if n <= max => Ok(Some(n)),
                    _ => Err(PolicyError::Setting {
                        name,
                        value: v,
                        fix,
                    }),
                },
            }
        };
        if let Some(n) = num(
            CHALLENGERS_ENV,
            20,
            "a whole number of challengers per pair, 0 to 20",
        )? {
            s.challengers = n;
        }
        if let Some(n) = num(MIN_DAYS_ENV, 366, "a whole number of days, 1 to 366")? {
            if n == 0 {
                return Err(PolicyError::Setting {
                    name: MIN_DAYS_ENV,
                    value: "0".into(),
                    fix: "a whole number of days, 1 to 366",
                });
            }
            s.min_days = n;
        }
        if let Some(p) = get(POLICY_ENV) {
            s.policy = p.parse()?;
        }
        Ok(s)
    }
}

/// The timeframe whose models answer `prompt`.
fn timeframe_of(prompt: PromptKind) -> Timeframe {
    prompt.timeframe()
}

/// What a pair's records name as the served model: the champion's checkpoint, its classical
/// model (`classical:NAME`), or `gbm`.
pub fn served_model(champion: Option<&Champion>) -> String {
    champion.map_or_else(|| "gbm".to_string(), Champion::served)
}

/// The pair's challengers, at most `k`, newest published first: candidates among `published`
/// ([`champions::published`], read once for every pair) for the pair's timeframe trained on
/// `asset` that the gate refused for this pair or that were recorded after the champion's own
/// record; with no champion, every such candidate. Never the champion itself.
pub async fn challengers(
    store: &dyn Store,
    published: &[champions::Candidate],
    prompt: PromptKind,
    asset: &str,
    champion: Option<&Champion>,
    k: usize,
) -> Result<Vec<Contender>, PolicyError> {
    if k == 0 {
        return Ok(Vec::new());
    }
    let refused: BTreeSet<String> = champions::history(store, Some((prompt, asset)))
        .await?
        .into_iter()
        .filter(|d| d.action == Action::Refuse)
        .filter_map(|d| d.candidate)
        .collect();
    let champion_at = champion.and_then(|ch| {
        published
            .iter()
            .find(|c| c.id == ch.candidate)
            .map(|c| c.manifest.record.recorded_at)
    });
    let tf = timeframe_of(prompt);
    let mut out = Vec::new();
    for c in published {
        let spec = &c.manifest.record.spec;
        if champion.is_some_and(|ch| ch.candidate == c.id)
            || spec.data.timeframe != tf
            || !spec.data.assets.iter().any(|a| a == asset)
        {
            continue;
        }
        let newer = match (champion, champion_at) {
            (None, _) => true,
            (Some(_), Some(t)) => c.manifest.record.recorded_at > t,
            (Some(_), None) => false,
        };
        if newer || refused.contains(&c.id) {
            let Some(artifact) = &c.manifest.record.artifact else {
                continue;
            };
            out.push(Contender {
                candidate: c.id.clone(),
                model: artifact.to_string(),
                result: None,
            });
            if out.len() == k {
                break;
            }
        }
    }
    Ok(out)
}

/// Paired per-prompt scores of one contender against the served model and the GBM.
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    /// Prompt start times, sorted.
    pub windows: Vec<i64>,
    pub contender: Vec<f64>,
    pub served: Vec<f64>,
    pub gbm: Vec<f64>,
    /// Distinct UTC days of the prompts.
    pub dates: BTreeSet<String>,
    /// Prompts the contender could not answer (scored invalid).
    pub errors: usize,
    pub served_errors: usize,
    pub horizon_secs: i64,
    pub num_simulations: usize,
}

impl Evidence {
    fn push(&mut self, row: &Row, contender: f64, error: bool) {
        self.windows.push(row.start);
        self.contender.push(contender);
        self.served.push(row.crps);
        self.gbm.push(row.gbm);
        self.dates.insert(date_of(row.start));
        self.errors += error as usize;
        self.served_errors += row.failed as usize;
        self.horizon_secs = row.length as i64;
        self.num_simulations = row.paths;
    }

    /// What a decision records as its evaluation.
    pub fn info(&self) -> EvaluationInfo {
        let first = self.dates.first().cloned().unwrap_or_default();
        let last = self.dates.last().cloned().unwrap_or_default();
        EvaluationInfo {
            data: format!(
                "shadow prompts {first}..{last}: {} settled prompts on {} days",
                self.windows.len(),
                self.dates.len()
            ),
            not_before: self.windows.first().copied().unwrap_or(0),
            windows_requested: self.windows.len(),
            seed: 0,
            num_simulations: self.num_simulations,
            candidate_fallbacks: self.errors,
            champion_fallbacks: self.served_errors,
            recent_days: None,
        }
    }
}

/// A pair's settled prompts answered by `served`, sorted by start time (one per start).
fn settled<'a>(rows: &'a [Row], served: &str) -> Vec<&'a Row> {
    let mut out: Vec<&Row> = rows.iter().filter(|r| r.model == served).collect();
    out.sort_by_key(|r| r.start);
    out.dedup_by_key(|r| r.start);
    out
}

/// Per challenger (by candidate, in the order first seen), its evidence against `served`.
pub fn challenger_evidence(rows: &[Row], served: &str) -> Vec<(String, Evidence)> {
    let mut order = Vec::new();
    let mut by: BTreeMap<String, Evidence> = BTreeMap::new();
    for r in settled(rows, served) {
        for (candidate, crps, failed) in &r.challengers {
            if !by.contains_key(candidate) {
                order.push(candidate.clone());
            }
            by.entry(candidate.clone())
                .or_default()
                .push(r, *crps, *failed);
        }
    }
    order
        .into_iter()
        .map(|c| {
            let e = by.remove(&c).unwrap_or_default();
            (c, e)
        })
        .collect()
}

/// The served model's own evidence against the GBM (every settled prompt it answered).
pub fn champion_evidence(rows: &[Row], served: &str) -> Evidence {
    let mut e = Evidence::default();
    for r in settled(rows, served) {
        e.push(r, r.crps, r.failed);
    }
    e
}

/// The gate on a challenger's evidence: candidate = the challenger, the champion (none: the
/// GBM serves), the GBM.
pub fn challenger_gate(
    candidate: &str,
    champion: Option<&Champion>,
    asset: &str,
    prompt: PromptKind,
    e: &Evidence,
    params: GateParams,
) -> Result<GateDecision, GateError> {
    gate::decide(
        GateInput {
            candidate: candidate.to_string(),
            champion: champion.map(|c| c.candidate.clone()),
            asset: asset.to_string(),
            prompt: prompt.label().to_string(),
            windows: e.windows.clone(),
            horizon_secs: e.horizon_secs,
            candidate_scores: e.contender.clone(),
            champion_scores: champion.map(|_| e.served.clone()),
            gbm_scores: e.gbm.clone(),
        },
        params,
    )
}

/// The gate on the champion's evidence with the GBM in the candidate's seat: its verdict is
/// `promote` when the GBM beats the champion by the margin, significantly (the comparison
/// `vs_champion`; the GBM against itself, `vs_gbm`, is dropped).
pub fn demotion_gate(
    champion: &Champion,
    e: &Evidence,
    params: GateParams,
) -> Result<GateDecision, GateError> {
    let mut d = gate::decide(
        GateInput {
            candidate: "gbm".into(),
            champion: Some(champion.candidate.clone()),
            asset: champion.asset.clone(),
            prompt: champion.prompt.label().to_string(),
            windows: e.windows.clone(),
            horizon_secs: e.horizon_secs,
            candidate_scores: e.gbm.clone(),
            champion_scores: Some(e.served.clone()),
            gbm_scores: e.gbm.clone(),
        },
        params,
    )?;
    d.vs_gbm = None;
    if let Some(c) = &d.vs_champion {
        let p = c.test.map_or(f64::NAN, |t| t.p_value);
        let (verdict, reason) = if c.beats_margin && c.significant {
            (
                Verdict::Promote,
                format!(
                    "the GBM beats it on {} settled prompts: the GBM's mean score is {:.4} of the champion's (p = {p:.4})",
                    e.windows.len(),
                    c.ratio
                ),
            )
        } else if !c.beats_margin {
            (
                Verdict::Refuse,
                format!(
                    "the GBM's mean score is {:.4} of the champion's (a demotion needs at most {:.4})",
                    c.ratio,
                    1.0 - params.margin
                ),
            )
        } else {
            (
                Verdict::Refuse,
                format!(
                    "the GBM's lead ({:.4} of the champion's mean) is not significant: Diebold-Mariano p = {p:.4}, alpha {}",
                    c.ratio, params.alpha
                ),
            )
        };
        d.verdict = verdict;
        d.reason = reason;
    }
    Ok(d)
}

/// Evaluates one pair's evidence and, when `act` and the policy allow it, promotes or demotes.
/// Returns the pair's report.
pub async fn evaluate_pair(
    store: &dyn Store,
    prompt: PromptKind,
    asset: &str,
    rows: &[Row],
    settings: &ShadowSettings,
    act: bool,
) -> Result<Value, PolicyError> {
    let champion = champions::current(store, prompt, asset).await?;
    let served = served_model(champion.as_ref());
    let ready = |e: &Evidence| e.dates.len() >= settings.min_days;
    let mut report = Vec::new();
    let mut best: Option<(f64, String, GateDecision, EvaluationInfo)> = None;
    for (candidate, e) in challenger_evidence(rows, &served) {
        let g = challenger_gate(
            &candidate,
            champion.as_ref(),
            asset,
            prompt,
            &e,
            settings.params,
        )?;
        let passes = g.verdict == Verdict::Promote && ready(&e);
        report.push(json!({
            "candidate": candidate, "prompts": e.windows.len(), "days": e.dates.len(),
            "ready": ready(&e), "errors": e.errors,
            "mean": finite(g.candidate_mean), "champion_mean": g.champion_mean.and_then(finite),
            "gbm_mean": finite(g.gbm_mean),
            "vs_champion": g.vs_champion.as_ref().map(|c| json!({"ratio": finite(c.ratio), "p_value": c.test.map(|t| t.p_value)})),
            "vs_gbm": g.vs_gbm.as_ref().map(|c| json!({"ratio": finite(c.ratio), "p_value": c.test.map(|t| t.p_value)})),
            "verdict": g.verdict, "reason": g.reason,
        }));
        if passes && best.as_ref().is_none_or(|b| g.candidate_mean < b.0) {
            best = Some((g.candidate_mean, candidate, g, e.info()));
        }
    }
    let mut demotion = None;
    let mut demote_gate = None;
    if let Some(ch) = &champion {
        let e = champion_evidence(rows, &served);
        let g = demotion_gate(ch, &e, settings.params)?;
        demotion = Some(json!({
            "prompts": e.windows.len(), "days": e.dates.len(), "ready": ready(&e),
            "mean": g.champion_mean.and_then(finite), "gbm_mean": finite(g.gbm_mean),
            "verdict": if g.verdict == Verdict::Promote { "demote" } else { "keep" },
            "reason": g.reason,
        }));
        if g.verdict == Verdict::Promote && ready(&e) {
            demote_gate = Some((g, e.info()));
        }
    }
    let mut action = Value::Null;
    let mut would = Value::Null;
    if let Some((_, candidate, _, _)) = &best {
        would = json!({"action": "promote", "candidate": candidate});
    } else if demote_gate.is_some() {
        would = json!({"action": "demote"});
    }
    if act {
        if let (Some((_, candidate, g, info)), true) = (best, settings.policy != Policy::Off) {
            let d = champions::promote_on_evidence(store, &candidate, asset, prompt, g, info, BY)
                .await?;
            action = json!({"action": "promote", "candidate": candidate, "key": d.key});
        } else if let (Some((g, info)), Policy::PromoteDemote) = (demote_gate, settings.policy) {
            let reason = g.reason.clone();
            let d = champions::demote(store, prompt, asset, g, info, BY, &reason).await?;
            action = json!({"action": "demote", "key": d.key,
                "champion": d.champion.as_ref().map(|c| &c.candidate)});
        }
    }
    Ok(json!({
        "asset": asset, "prompt": prompt.label(),
        "champion": champion.as_ref().map(|c| &c.candidate), "served": served,
        "challengers": report, "demotion": demotion, "would": would, "action": action,
    }))
}

fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

/// Reads the newest [`lookback_dates`] days of evidence and evaluates each pair found there
/// ([`evaluate_pair`]); acts only when `act` (the `shadow-score` job; `models shadow` reports).
pub async fn run(
    store: &dyn Store,
    settings: &ShadowSettings,
    act: bool,
) -> Result<Value, PolicyError> {
    let mut keys: Vec<String> = store
        .list(EVIDENCE_PREFIX)
        .await?
        .into_iter()
        .filter(|k| k.ends_with(".json"))
        .collect();
    keys.sort_unstable();
    let skip = keys.len().saturating_sub(lookback_dates(settings));
    let mut by_pair: BTreeMap<(String, String), Vec<Row>> = BTreeMap::new();
    for k in &keys[skip..] {
        for r in store.get_json::<Vec<Row>>(k).await?.unwrap_or_default() {
            by_pair
                .entry((r.prompt.clone(), r.asset.clone()))
                .or_default()
                .push(r);
        }
    }
    let mut pairs = Vec::new();
    for ((prompt, asset), rows) in by_pair {
        let kind: PromptKind = if prompt == "high" {
            PromptKind::High
        } else {
            PromptKind::Low
        };
        pairs.push(evaluate_pair(store, kind, &asset, &rows, settings, act).await?);
    }
    Ok(json!({
        "policy": settings.policy.label(), "min_days": settings.min_days,
        "challengers": settings.challengers, "acted": act && settings.policy != Policy::Off,
        "pairs": pairs,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A settled 24 h prompt every 6 h from `t0`, answered by `served` with `challenger`.
    fn records(
        served: &str,
        n: usize,
        scores: impl Fn(usize) -> (f64, f64, f64),
    ) -> Vec<ShadowRecord> {
        (0..n)
            .map(|i| {
                let (champ, gbm, chall) = scores(i);
                let start = 1_764_000_000 + i as i64 * 6 * 3_600;
                ShadowRecord {
                    id: format!("BTC-low-{start}"),
                    asset: "BTC".into(),
                    prompt: "low".into(),
                    start_time: start,
                    time_increment: 300,
                    time_length: 86_400,
                    num_simulations: 1000,
                    as_of: start - 60,
                    spot: 1.0,
                    spot_source: "last_close".into(),
                    model: served.into(),
                    seed: i as u64,
                    recorded_at: 0,
                    result: Some(sn50::shadow::ShadowResult {
                        crps: champ,
                        gbm_crps: gbm,
                        scored_at: 0,
                        error: None,
                    }),
                    champion: None,
                    challengers: vec![Contender {
                        candidate: "run-c/m".into(),
                        model: "sha256:c".into(),
                        result: Some(sn50::shadow::ContenderResult {
                            crps: chall,
                            error: None,
                        }),
                    }],
                }
            })
            .collect()
    }

    #[test]
    fn the_evidence_pairs_prompts_of_the_served_model_and_the_gate_decides_on_it() {
        // the challenger is 20 % better than the champion, which is 10 % better than the GBM,
        // with a wobble; prompts answered by another model do not count
        let wobble = |i: usize| 1.0 + 0.05 * ((i * 7 % 5) as f64 - 2.0);
        let mut recs = records("sha256:champ", 28, |i| {
            let g = 100.0 * wobble(i);
            (0.9 * g, g, 0.72 * g * wobble(i + 1))
        });
        recs.extend(records("sha256:older", 5, |_| (1.0, 1.0, 9.0)));
        let recs = rows(&recs);
        let ev = challenger_evidence(&recs, "sha256:champ");
        assert_eq!(ev.len(), 1);
        let (name, e) = &ev[0];
        assert_eq!(name, "run-c/m");
        assert_eq!(e.windows.len(), 28);
        assert_eq!(e.dates.len(), 8, "{:?}", e.dates);
        let champion = Champion {
            version: 1,
            asset: "BTC".into(),
            prompt: PromptKind::Low,
            candidate: "run-champ/m".into(),
            run_id: "run-champ".into(),
            name: "m".into(),
            artifact: Some(format!("sha256:{}:1", "0".repeat(64)).parse().unwrap()),
            classical: None,
            model_dir: "models/run-champ/m/".into(),
            decision: "models/decisions/low/BTC/x.json".into(),
            promoted_at: 0,
            forced: false,
            trained_until: 0,
            restored_by: None,
        };
        let g = challenger_gate(
            name,
            Some(&champion),
            "BTC",
            PromptKind::Low,
            e,
            GateParams::default(),
        )
        .unwrap();
        assert_eq!(g.verdict, Verdict::Promote, "{}", g.reason);
        assert!(g.vs_champion.as_ref().unwrap().ratio < 0.85);
        // the champion beats the GBM: no demotion; a champion 20 % worse is demoted
        let own = champion_evidence(&recs, "sha256:champ");
        assert_eq!(own.windows.len(), 28);
        let d = demotion_gate(&champion, &own, GateParams::default()).unwrap();
        assert_eq!(d.verdict, Verdict::Refuse, "{}", d.reason);
        assert!(d.vs_gbm.is_none());
        let worse = records("sha256:champ", 28, |i| {
            let g = 100.0 * wobble(i);
            (1.2 * g * wobble(i + 2), g, g)
        });
        let worse = rows(&worse);
        let d = demotion_gate(
            &champion,
            &champion_evidence(&worse, "sha256:champ"),
            GateParams::default(),
        )
        .unwrap();
        assert_eq!(d.verdict, Verdict::Promote, "{}", d.reason);
        assert!(
            d.reason.starts_with("the GBM beats it on 28"),
            "{}",
            d.reason
        );
        // too few prompts: not enough evidence, whatever the scores
        let few = champion_evidence(&worse[..10], "sha256:champ");
        let d = demotion_gate(&champion, &few, GateParams::default()).unwrap();
        assert_eq!(d.verdict, Verdict::Refuse);
        assert!(d.reason.contains("not enough evidence"), "{}", d.reason);
    }

    #[test]
    fn settings_parse_and_bad_values_are_named() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let s = ShadowSettings::from_lookup(env(&[])).unwrap();
        assert_eq!((s.challengers, s.policy, s.min_days), (3, Policy::Off, 7));
        let s = ShadowSettings::from_lookup(env(&[
            (POLICY_ENV, "promote-demote"),
            (MIN_DAYS_ENV, "2"),
            (CHALLENGERS_ENV, "0"),
        ]))
        .unwrap();
        assert_eq!(
            (s.challengers, s.policy, s.min_days),
            (0, Policy::PromoteDemote, 2)
        );
        let e = ShadowSettings::from_lookup(env(&[(POLICY_ENV, "yes")])).unwrap_err();
        assert!(e.to_string().contains("SYNTH_SHADOW_POLICY=\"yes\""), "{e}");
        assert!(e.to_string().contains("promote-demote"), "{e}");
        let e = ShadowSettings::from_lookup(env(&[(MIN_DAYS_ENV, "0")])).unwrap_err();
        assert!(e.to_string().contains("SYNTH_SHADOW_MIN_DAYS"), "{e}");
        let e = ShadowSettings::from_lookup(env(&[(CHALLENGERS_ENV, "x")])).unwrap_err();
        assert!(e.to_string().contains("0 to 20"), "{e}");
    }
}
