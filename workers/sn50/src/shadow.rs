//! Shadow scoring: what the validators would score, before they do. A prompt is recorded when
//! a validator would send it (asset, start time, step, the spot price at request time, the
//! model that would answer, a seed) and scored once its window has passed: the model's paths
//! are regenerated from the record (the forecasters are deterministic given the seed, the
//! history before the request and the spot) and scored with the validator's CRPS against the
//! realised prices, beside the reference GBM on the same prompt. Only the record is kept, not
//! the 289,000 prices of an answer. Store layout (the seed's): `scores/prompts/{date}/{id}.json`
//! (the record, with its result once scored), `scores/daily/{date}.json` (that day's summary,
//! with its head-to-head prompts) and `scores/leaderboard.json` (the last ten days, and per
//! competition, over that competition's own window: the weighted ratio to the GBM and the share
//! of its emission the model would take from the GBM in a field of two).
//!
//! It does not fetch prices or run models (the `shadow-prompt`/`shadow-score` jobs in the scorer
//! crate do) and does not model the live field of miners.

use std::collections::BTreeMap;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::backtest::as_sent;
use super::constants::{PromptKind, Sn50Config, WeightTable};
use super::crps::INVALID_SCORE;
use super::data::Bars;
use super::forecast::{ForecastRequest, Forecaster};
use super::rewards::{share_against_reference, HeadToHead};
use super::vol::miner_total_score;

/// The days the leaderboard covers.
pub const LEADERBOARD_DAYS: usize = 10;
/// The leaderboard's key.
pub const LEADERBOARD_KEY: &str = "scores/leaderboard.json";

/// One recorded prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShadowRecord {
    pub id: String,
    pub asset: String,
    /// `low` or `high`.
    pub prompt: String,
    pub start_time: i64,
    pub time_increment: u64,
    pub time_length: u64,
    pub num_simulations: usize,
    /// When the request would have been sent (the history and spot are from before it).
    pub as_of: i64,
    pub spot: f64,
    /// `pyth` or `last_close`.
    pub spot_source: String,
    /// `gbm`, or the checkpoint that answers (an artifact reference, or an older build's
    /// folder).
    pub model: String,
    pub seed: u64,
    pub recorded_at: i64,
    #[serde(default)]
    pub result: Option<ShadowResult>,
    /// The pair's champion (`run/name`) when `model` is the champion the miner serves; `None`
    /// for the GBM or a model named by the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub champion: Option<String>,
    /// The challengers scored on the same prompt (same request, seed and spot), beside `model`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub challengers: Vec<Contender>,
}

/// A challenger of a recorded prompt: a published candidate scored beside the served model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contender {
    /// The published model, `run/name`.
    pub candidate: String,
    /// Its checkpoint, by artifact reference.
    pub model: String,
    /// Its score once the prompt settles.
    #[serde(default)]
    pub result: Option<ContenderResult>,
}

/// A challenger's score on a settled prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContenderResult {
    /// The validator's score of its paths (`INVALID_SCORE` when invalid or it could not answer).
    pub crps: f64,
    #[serde(default)]
    pub error: Option<String>,
}

/// A scored prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShadowResult {
    /// The validator's CRPS of the model's paths (`INVALID_SCORE`, -1, when they are invalid).
    pub crps: f64,
    /// The reference GBM's CRPS on the same prompt.
    pub gbm_crps: f64,
    pub scored_at: i64,
    /// Why the model could not answer (it is then scored as invalid).
    #[serde(default)]
    pub error: Option<String>,
}

impl ShadowRecord {
    /// The record's store key.
    pub fn key(&self) -> String {
        format!(
            "scores/prompts/{}/{}.json",
            date_of(self.start_time),
            self.id
        )
    }

    /// The prompt kind of the record.
    pub fn kind(&self) -> PromptKind {
        if self.prompt == "high" {
            PromptKind::High
        } else {
            PromptKind::Low
        }
    }
}

/// `YYYY-MM-DD` (UTC) of a unix time.
pub fn date_of(ts: i64) -> String {
    chrono::DateTime::from_timestamp(ts, 0)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| "1970-01-01".into())
}

/// The key of a day's summary.
pub fn daily_key(date: &str) -> String {
    format!("scores/daily/{date}.json")
}

/// The request a record stands for.
fn request<'a>(rec: &ShadowRecord, bars: &'a Bars) -> ForecastRequest<'a> {
    ForecastRequest {
        asset: rec.asset.clone(),
        start_time: rec.start_time,
        time_increment: rec.time_increment,
        time_length: rec.time_length,
        num_simulations: rec.num_simulations,
        spot: rec.spot,
        history: Some(bars),
        as_of: rec.as_of,
    }
}

/// Scores a record: `None` while `bars` do not settle its window yet (the validator's rule:
/// a candle after the window and a last price), else the
/// model's and the GBM's CRPS (a model that errs scores `INVALID_SCORE`, with the reason).
/// The same record, model and bars always give the same numbers.
pub fn score_record(
    rec: &ShadowRecord,
    model: Result<&dyn Forecaster, String>,
    gbm: &dyn Forecaster,
    bars: &Bars,
    config: &Sn50Config,
) -> Option<(f64, f64, Option<String>)> {
    let mut out = score_record_with(rec, model, gbm, &[], bars, config)?;
    Some((out.0, out.1, out.2.take()))
}

/// What [`score_record_with`] gives: the served model's score, the GBM's, why the model could
/// not answer, and each challenger's score and error.
pub type RecordScores = (f64, f64, Option<String>, Vec<(f64, Option<String>)>);

/// [`score_record`] with challengers: each of `challengers` answers the same request with the
/// same seed and is scored against the same realised prices (a challenger that errs scores
/// `INVALID_SCORE`, with the reason). `None` while the window is not settled.
pub fn score_record_with(
    rec: &ShadowRecord,
    model: Result<&dyn Forecaster, String>,
    gbm: &dyn Forecaster,
    challengers: &[Result<&dyn Forecaster, String>],
    bars: &Bars,
    config: &Sn50Config,
) -> Option<RecordScores> {
    let real = bars
        .price_grid(
            rec.start_time,
            rec.time_length as i64,
            rec.time_increment as i64,
        )
        .ok()?;
    // the validator's settlement guard: a candle after the window, and its last price
    if !bars.scoreable(rec.start_time, rec.time_length as i64, &real) {
        return None;
    }
    // the rules of the competition that scores this prompt (`None`: no competition has the
    // prompt's time length, a configuration the constants' validation does not rule out)
    let prompt = config.scoring(rec.kind(), &rec.asset)?;
    let score = |f: &dyn Forecaster| -> Result<f64, String> {
        let mut rng = ChaCha8Rng::seed_from_u64(rec.seed);
        let paths = f
            .forecast(&request(rec, bars), &mut rng)
            .map_err(|e| e.to_string())?;
        Ok(miner_total_score(&as_sent(&paths), &real, prompt))
    };
    let gbm_crps = score(gbm).unwrap_or(INVALID_SCORE);
    let scored = |m: Result<&dyn Forecaster, String>| match m.and_then(score) {
        Ok(c) => (c, None),
        Err(e) => (INVALID_SCORE, Some(e)),
    };
    let (crps, error) = scored(model);
    let others = challengers.iter().map(|c| scored(c.clone())).collect();
    Some((crps, gbm_crps, error, others))
}

/// A summary of records: per asset and overall, the prompts recorded and scored, the mean CRPS
/// of the model and of the GBM over the prompts where both are valid, their ratio, the prompts
/// where the model beat the GBM, and the invalid answers; and `prompts`, every scored prompt as
/// `[scored_time, asset, prompt, crps, gbm_crps]`, which the leaderboard's per-competition
/// shares are computed from.
pub fn summarize(records: &[ShadowRecord]) -> Value {
    #[derive(Default)]
    struct Acc {
        recorded: usize,
        scored: usize,
        invalid: usize,
        both: usize,
        crps: f64,
        gbm: f64,
        wins: usize,
    }
    let mut per: BTreeMap<String, Acc> = BTreeMap::new();
    let mut all = Acc::default();
    for r in records {
        for acc in [per.entry(r.asset.clone()).or_default(), &mut all] {
            acc.recorded += 1;
            let Some(res) = &r.result else { continue };
            acc.scored += 1;
            if res.crps == INVALID_SCORE {
                acc.invalid += 1;
            } else if res.gbm_crps != INVALID_SCORE {
                acc.both += 1;
                acc.crps += res.crps;
                acc.gbm += res.gbm_crps;
                acc.wins += (res.crps < res.gbm_crps) as usize;
            }
        }
    }
    let view = |a: &Acc| {
        let mean = |x: f64| (a.both > 0).then(|| x / a.both as f64);
        json!({
            "recorded": a.recorded, "scored": a.scored, "invalid": a.invalid,
            "mean_crps": mean(a.crps), "mean_gbm_crps": mean(a.gbm),
            "ratio": (a.both > 0 && a.gbm > 0.0).then(|| a.crps / a.gbm),
            "beats_gbm": a.wins,
        })
    };
    let prompts: Vec<Value> = records
        .iter()
        .filter_map(|r| {
            let res = r.result.as_ref()?;
            Some(json!([
                r.start_time + r.time_length as i64,
                r.asset,
                r.kind().label(),
                res.crps,
                res.gbm_crps
            ]))
        })
        .collect();
    json!({
        "all": view(&all),
        "assets": per.iter().map(|(k, v)| (k.clone(), view(v))).collect::<BTreeMap<_, _>>(),
        "prompts": prompts,
    })
}

/// The head-to-head prompts of a daily summary: `(prompt kind, prompt)`.
fn summary_prompts(summary: &Value) -> Vec<(PromptKind, HeadToHead)> {
    summary["prompts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            let kind = match p[2].as_str()? {
                "high" => PromptKind::High,
                _ => PromptKind::Low,
            };
            Some((
                kind,
                HeadToHead {
                    scored_time: p[0].as_i64()?,
                    asset: p[1].as_str()?.to_string(),
                    ours: p[3].as_f64()?,
                    reference: p[4].as_f64()?,
                },
            ))
        })
        .collect()
}

/// The leaderboard from the days' summaries (`(date, summary)`, any order): per day the overall
/// ratio, over the newest ten days the mean of the daily ratios per asset with the best and the
/// worst day, and per competition, over its own window ending at the newest scored prompt: the
/// prompts, the coefficient-weighted ratio of mean CRPS to the GBM's, and the share of the
/// competition's emission against the GBM in a field of two ([`share_against_reference`]);
/// `emission` sums those shares (each competition pays a third).
pub fn leaderboard(mut days: Vec<(String, Value)>, config: &Sn50Config) -> Value {
    days.sort_by(|a, b| b.0.cmp(&a.0));
    let all_prompts: Vec<(PromptKind, HeadToHead)> =
        days.iter().flat_map(|(_, s)| summary_prompts(s)).collect();
    let now = all_prompts.iter().map(|p| p.1.scored_time).max();
    let mut competitions = Vec::new();
    let mut emission = 0.0;
    for c in &config.competitions {
        let Some(kind) = config.prompt_of(c) else {
            continue;
        };
        let mine: Vec<HeadToHead> = all_prompts
            .iter()
            .filter(|(k, p)| *k == kind && c.assets.contains(&p.asset))
            .map(|(_, p)| p.clone())
            .collect();
        let Some(now) = now.filter(|_| !mine.is_empty()) else {
            continue;
        };
        let share = share_against_reference(&mine, now, c, config, WeightTable::Validator);
        // the weighted ratio over the window, per asset mean then coefficient-weighted
        let from = now - c.window_days as i64 * 86_400;
        let mut per: BTreeMap<&str, (f64, f64, usize)> = BTreeMap::new();
        for p in &mine {
            if p.scored_time > from && p.ours != INVALID_SCORE && p.reference != INVALID_SCORE {
                let e = per.entry(p.asset.as_str()).or_default();
                e.0 += p.ours;
                e.1 += p.reference;
                e.2 += 1;
            }
        }
        let (mut num, mut den) = (0.0, 0.0);
        for (a, (m, r, n)) in &per {
            let w = config.coefficient(a, WeightTable::Validator);
            num += w * m / *n as f64;
            den += w * r / *n as f64;
        }
        emission += share.emission;
        competitions.push(json!({
            "id": c.id, "label": c.label, "window_days": c.window_days,
            "softmax_beta": c.softmax_beta, "prompts": share.prompts,
            "ratio": (den > 0.0).then(|| num / den),
            "pool_share": share.pool_share, "emission": share.emission,
        }));
    }
    days.truncate(LEADERBOARD_DAYS);
    let mut per: BTreeMap<String, Vec<(String, f64)>> = BTreeMap::new();
    for (date, s) in &days {
        for (asset, v) in s["assets"].as_object().into_iter().flatten() {
            if let Some(r) = v["ratio"].as_f64() {
                per.entry(asset.clone())
                    .or_default()
                    .push((date.clone(), r));
            }
        }
    }
    let assets: BTreeMap<String, Value> = per
        .into_iter()
        .map(|(asset, rs)| {
            let mean = rs.iter().map(|x| x.1).sum::<f64>() / rs.len() as f64;
            let best = rs.iter().min_by(|a, b| a.1.total_cmp(&b.1)).cloned();
            let worst = rs.iter().max_by(|a, b| a.1.total_cmp(&b.1)).cloned();
            (
                asset,
                json!({"days": rs.len(), "mean_ratio": mean,
                       "best": best.map(|(d, r)| json!({"date": d, "ratio": r})),
                       "worst": worst.map(|(d, r)| json!({"date": d, "ratio": r}))}),
            )
        })
        .collect();
    json!({
        "days": days.iter().map(|(d, s)| json!({"date": d, "ratio": s["all"]["ratio"],
            "scored": s["all"]["scored"]})).collect::<Vec<_>>(),
        "assets": assets,
        "competitions": competitions,
        "emission": emission,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(asset: &str, crps: Option<(f64, f64)>) -> ShadowRecord {
        ShadowRecord {
            id: format!("{asset}-low-0"),
            asset: asset.into(),
            prompt: "low".into(),
            start_time: 0,
            time_increment: 300,
            time_length: 86_400,
            num_simulations: 1000,
            as_of: -60,
            spot: 1.0,
            spot_source: "last_close".into(),
            model: "gbm".into(),
            seed: 1,
            recorded_at: 0,
            champion: None,
            challengers: Vec::new(),
            result: crps.map(|(crps, gbm_crps)| ShadowResult {
                crps,
                gbm_crps,
                scored_at: 0,
                error: None,
            }),
        }
    }

    #[test]
    fn summaries_and_the_leaderboard() {
        let s = summarize(&[
            rec("BTC", Some((90.0, 100.0))),
            rec("BTC", Some((120.0, 100.0))),
            rec("BTC", Some((INVALID_SCORE, 100.0))),
            rec("ETH", None),
        ]);
        let btc = &s["assets"]["BTC"];
        assert_eq!(btc["recorded"], 3);
        assert_eq!(btc["scored"], 3);
        assert_eq!(btc["invalid"], 1);
        assert_eq!(btc["beats_gbm"], 1);
        assert_eq!(btc["mean_crps"], 105.0);
        assert_eq!(btc["ratio"], 1.05);
        assert_eq!(s["assets"]["ETH"]["scored"], 0);
        assert!(s["assets"]["ETH"]["ratio"].is_null());
        assert_eq!(s["all"]["recorded"], 4);
        // twelve days: the newest ten count; best and worst by ratio
        let days: Vec<(String, Value)> = (1..=12)
            .map(|d| {
                let r = 0.9 + d as f64 / 100.0;
                (
                    format!("2026-11-{d:02}"),
                    json!({"all": {"ratio": r, "scored": 5}, "assets": {"BTC": {"ratio": r}}}),
                )
            })
            .collect();
        let b = leaderboard(days, &Sn50Config::default());
        assert_eq!(b["days"].as_array().unwrap().len(), LEADERBOARD_DAYS);
        assert_eq!(b["competitions"].as_array().unwrap().len(), 0);
        assert_eq!(b["days"][0]["date"], "2026-11-12");
        assert_eq!(b["assets"]["BTC"]["days"], 10);
        assert_eq!(b["assets"]["BTC"]["best"]["date"], "2026-11-03");
        assert_eq!(b["assets"]["BTC"]["worst"]["date"], "2026-11-12");
        assert_eq!(date_of(86_400 * 365), "1971-01-01");
    }

    #[test]
    fn the_leaderboard_reports_each_competition_over_its_window() {
        let day = 86_400;
        let mk = |asset: &str, prompt: &str, t: i64, crps: f64| {
            let mut r = rec(asset, Some((crps, 100.0)));
            r.prompt = prompt.into();
            r.time_length = if prompt == "high" { 3600 } else { 86_400 };
            r.start_time = t - r.time_length as i64;
            r
        };
        // Day 1: the model loses on Crypto 1h; days 4-8 it wins on Crypto 1h (BTC) and ties on
        // Com/Equ 24h (XAU). Crypto 1h's window is 5 days: day 1 falls out.
        let mut days = Vec::new();
        for d in [1i64, 4, 5, 6, 7, 8] {
            let t = d * day;
            let c1 = if d == 1 { 200.0 } else { 90.0 };
            let recs = vec![mk("BTC", "high", t, c1), mk("XAU", "low", t, 100.0)];
            days.push((date_of(t), summarize(&recs)));
        }
        let b = leaderboard(days, &Sn50Config::default());
        let comps = b["competitions"].as_array().unwrap();
        let ids: Vec<&str> = comps.iter().map(|c| c["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["com-equ-24h", "crypto-1h"]);
        let c1 = &comps[1];
        assert_eq!(c1["window_days"], 5);
        assert_eq!(c1["prompts"], 5, "day 1 is outside Crypto 1h's window");
        assert_eq!(c1["ratio"], 0.9);
        let expect = 1.0 / (1.0 + (-0.3f64 * 10.0).exp());
        assert!((c1["pool_share"].as_f64().unwrap() - expect).abs() < 1e-12);
        let ce = &comps[0];
        assert_eq!(ce["prompts"], 6);
        assert_eq!(ce["pool_share"], 0.5);
        let total = b["emission"].as_f64().unwrap();
        assert!((total - (0.5 + expect) / 3.0).abs() < 1e-12);
    }
}
