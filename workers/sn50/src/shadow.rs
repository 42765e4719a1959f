//! Shadow scoring: what the validators would score, before they do. A prompt is recorded when
//! a validator would send it (asset, start time, step, the spot price at request time, the
//! model that would answer, a seed) and scored once its window has passed: the model's paths
//! are regenerated from the record (the forecasters are deterministic given the seed, the
//! history before the request and the spot) and scored with the validator's CRPS against the
//! realised prices, beside the reference GBM on the same prompt. Only the record is kept, not
//! the 289,000 prices of an answer. Store layout (the seed's): `scores/prompts/{date}/{id}.json`
//! (the record, with its result once scored), `scores/daily/{date}.json` (that day's summary)
//! and `scores/leaderboard.json` (the last ten days).

use std::collections::BTreeMap;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::backtest::as_sent;
use super::constants::{PromptKind, Sn50Config};
use super::crps::INVALID_SCORE;
use super::data::Bars;
use super::forecast::{ForecastRequest, Forecaster};
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
    /// `gbm`, or the checkpoint folder that answers.
    pub model: String,
    pub seed: u64,
    pub recorded_at: i64,
    #[serde(default)]
    pub result: Option<ShadowResult>,
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
    let prompt = config.prompt(rec.kind());
    let score = |f: &dyn Forecaster| -> Result<f64, String> {
        let mut rng = ChaCha8Rng::seed_from_u64(rec.seed);
        let paths = f
            .forecast(&request(rec, bars), &mut rng)
            .map_err(|e| e.to_string())?;
        Ok(miner_total_score(&as_sent(&paths), &real, prompt))
    };
    let gbm_crps = score(gbm).unwrap_or(INVALID_SCORE);
    let (crps, error) = match model.and_then(score) {
        Ok(c) => (c, None),
        Err(e) => (INVALID_SCORE, Some(e)),
    };
    Some((crps, gbm_crps, error))
}

/// A summary of records: per asset and overall, the prompts recorded and scored, the mean CRPS
/// of the model and of the GBM over the prompts where both are valid, their ratio, the prompts
/// where the model beat the GBM, and the invalid answers.
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
    json!({
        "all": view(&all),
        "assets": per.iter().map(|(k, v)| (k.clone(), view(v))).collect::<BTreeMap<_, _>>(),
    })
}

/// The leaderboard from the newest days' summaries (`(date, summary)`, any order): per day
/// the overall ratio, and over the days the mean of the daily ratios per asset, the best and
/// the worst day.
pub fn leaderboard(mut days: Vec<(String, Value)>) -> Value {
    days.sort_by(|a, b| b.0.cmp(&a.0));
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
        let b = leaderboard(days);
        assert_eq!(b["days"].as_array().unwrap().len(), LEADERBOARD_DAYS);
        assert_eq!(b["days"][0]["date"], "2026-11-12");
        assert_eq!(b["assets"]["BTC"]["days"], 10);
        assert_eq!(b["assets"]["BTC"]["best"]["date"], "2026-11-03");
        assert_eq!(b["assets"]["BTC"]["worst"]["date"], "2026-11-12");
        assert_eq!(date_of(86_400 * 365), "1971-01-01");
    }
}
