//! From per-request CRPS totals to miner weights, as the validator does it:
//! `compute_prompt_scores` (90th-percentile cap, invalid = cap, minus the lowest), the rolling
//! leaderboard (`prepare_df_for_moving_average` backfill + `compute_smoothed_score`'s
//! coefficient-weighted mean, summed with pandas' Kahan summation in row order), the softmax
//! with beta, `combine_moving_averages` (low + high) and the owner's share.
//!
//! Every step keeps numpy/pandas operation order. One caveat: `np.exp` on CPUs with AVX-512
//! uses numpy's own vectorised exp, which can differ from the platform libm (used here) in the
//! last bit; elsewhere numpy calls libm and the softmax matches exactly.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::constants::{PromptConfig, Sn50Config, WeightTable};
use super::crps::{pairwise_sum, INVALID_SCORE};

/// `np.percentile(values, q)` with the default linear method. NaN if any value is NaN; None for
/// an empty input (numpy raises).
pub fn percentile_linear(values: &[f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    if values.iter().any(|v| v.is_nan()) {
        return Some(f64::NAN);
    }
    let mut v = values.to_vec();
    v.sort_unstable_by(f64::total_cmp);
    let n = v.len();
    let virtual_index = (n - 1) as f64 * (q / 100.0);
    if virtual_index >= (n - 1) as f64 {
        return Some(v[n - 1]);
    }
    if virtual_index < 0.0 {
        return Some(v[0]);
    }
    let prev = virtual_index.floor();
    let gamma = virtual_index - prev;
    let a = v[prev as usize];
    let b = v[prev as usize + 1];
    Some(lerp(a, b, gamma))
}

/// numpy's `_lerp`: `a + (b-a)*t`, or `b - (b-a)*(1-t)` when `t >= 0.5`.
fn lerp(a: f64, b: f64, t: f64) -> f64 {
    let diff = b - a;
    if t >= 0.5 {
        b - diff * (1.0 - t)
    } else {
        a + diff * t
    }
}

/// `np.minimum(a, b)`: NaN if either is NaN.
fn np_minimum(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else if b < a {
        b
    } else {
        a
    }
}

/// `np.min(values)`: NaN if any is NaN.
fn np_min(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::INFINITY, |m, x| {
        if m.is_nan() || x.is_nan() {
            f64::NAN
        } else if x < m {
            x
        } else {
            m
        }
    })
}

/// The result of `compute_prompt_scores` for one request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PromptScores {
    /// `prompt_score_v3` per miner, in input order: best 0, worst `percentile90 - lowest_score`.
    pub scores: Vec<f64>,
    pub percentile90: f64,
    pub lowest_score: f64,
}

impl PromptScores {
    /// The score a backfilled (late-joining) miner gets for this request.
    pub fn worst(&self) -> f64 {
        self.percentile90 - self.lowest_score
    }
}

/// `compute_prompt_scores(score_values)`: `crps` holds each miner's CRPS total, `-1` for an
/// invalid response. None when every response is invalid (the request is skipped).
pub fn compute_prompt_scores(crps: &[f64]) -> Option<PromptScores> {
    if crps.iter().all(|&s| s == INVALID_SCORE) {
        return None;
    }
    let valid: Vec<f64> = crps
        .iter()
        .copied()
        .filter(|&s| s != INVALID_SCORE)
        .collect();
    let p90 = percentile_linear(&valid, 90.0)?;
    let capped: Vec<f64> = crps
        .iter()
        .map(|&s| {
            if s == INVALID_SCORE {
                p90
            } else {
                np_minimum(s, p90)
            }
        })
        .collect();
    let lowest = np_min(&capped);
    Some(PromptScores {
        scores: capped.iter().map(|c| c - lowest).collect(),
        percentile90: p90,
        lowest_score: lowest,
    })
}

/// pandas' `groupby().sum()` accumulator: Kahan summation, with the compensation reset when it
/// turns NaN (an infinite value).
#[derive(Debug, Clone, Copy, Default)]
pub struct KahanSum {
    sum: f64,
    compensation: f64,
}

impl KahanSum {
    pub fn add(&mut self, val: f64) {
        if val.is_nan() {
            return; // pandas skips NaN (min_count = 0)
        }
        let y = val - self.compensation;
        let t = self.sum + y;
        self.compensation = t - self.sum - y;
        if self.compensation.is_nan() {
            self.compensation = 0.0;
        }
        self.sum = t;
    }
    pub fn value(&self) -> f64 {
        self.sum
    }
}

/// `compute_softmax(score_values, beta)`: `x = beta*L; x -= max(x); e = exp(x); e / sum(e)`.
pub fn softmax(values: &[f64], beta: f64) -> Vec<f64> {
    if values.is_empty() {
        return Vec::new();
    }
    let scaled: Vec<f64> = values.iter().map(|v| beta * v).collect();
    let max = scaled.iter().copied().fold(f64::NEG_INFINITY, |m, x| {
        if m.is_nan() || x.is_nan() {
            f64::NAN
        } else if x > m {
            x
        } else {
            m
        }
    });
    let exps: Vec<f64> = scaled.iter().map(|x| (x - max).exp()).collect();
    let total = pairwise_sum(&exps);
    exps.iter().map(|e| e / total).collect()
}

/// One `miner_scores` row as the leaderboard reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreRow {
    /// `start_time + time_length`, unix seconds.
    pub scored_time: i64,
    pub miner_id: i64,
    /// `prompt_score_v3`; NaN rows are dropped by the leaderboard.
    pub prompt_score: f64,
    pub asset: String,
    /// The request's `percentile90` and `lowest_score` (used to backfill late joiners).
    pub percentile90: f64,
    pub lowest_score: f64,
}

/// `prepare_df_for_moving_average`: miners whose first row comes after the window's earliest
/// `scored_time` get, for every earlier `scored_time`, a row with that request's worst score
/// (`percentile90 - lowest_score` of the first row at that time) and asset. Rows come back
/// sorted by (scored_time, miner_id), ties in input order (real rows before backfill rows).
pub fn prepare_rows(rows: &[ScoreRow]) -> Vec<ScoreRow> {
    let Some(global_min) = rows.iter().map(|r| r.scored_time).min() else {
        return Vec::new();
    };
    // The first row of each scored_time gives its worst score and asset.
    let mut per_time: BTreeMap<i64, (f64, String, f64, f64)> = BTreeMap::new();
    for r in rows {
        per_time.entry(r.scored_time).or_insert((
            r.percentile90 - r.lowest_score,
            r.asset.clone(),
            r.percentile90,
            r.lowest_score,
        ));
    }
    let mut first_seen: BTreeMap<i64, i64> = BTreeMap::new();
    for r in rows {
        let e = first_seen.entry(r.miner_id).or_insert(r.scored_time);
        if r.scored_time < *e {
            *e = r.scored_time;
        }
    }
    let mut out: Vec<ScoreRow> = rows.to_vec();
    for (&miner, &first) in &first_seen {
        if first <= global_min {
            continue;
        }
        for (&t, (worst, asset, p90, low)) in &per_time {
            if t >= first {
                continue;
            }
            out.push(ScoreRow {
                scored_time: t,
                miner_id: miner,
                prompt_score: *worst,
                asset: asset.clone(),
                percentile90: *p90,
                lowest_score: *low,
            });
        }
    }
    out.sort_by_key(|r| (r.scored_time, r.miner_id)); // stable, like pandas' lexsort
    out
}

/// One miner's leaderboard entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaderboardEntry {
    pub miner_id: i64,
    /// The UID the weight goes to (`None` = deregistered: left out of the softmax).
    pub miner_uid: Option<u16>,
    /// The coefficient-weighted mean prompt score over the window (`inf` with no valid score).
    pub smoothed_score: f64,
    /// `softmax(beta * smoothed) * smoothed_score_coefficient`; 0 for deregistered miners.
    pub reward_weight: f64,
}

/// `get_miner_scores` + `prepare_df_for_moving_average` + `compute_smoothed_score` for one
/// prompt type at time `now` (unix seconds). `uid_of` maps a miner id to its current UID (None
/// drops it before the softmax). Entries come sorted by miner id; only those with a positive
/// reward weight are "rewarded" (see [`rewarded`]).
pub fn leaderboard(
    rows: &[ScoreRow],
    now: i64,
    prompt: &PromptConfig,
    config: &Sn50Config,
    table: WeightTable,
    uid_of: &dyn Fn(i64) -> Option<u16>,
) -> Vec<LeaderboardEntry> {
    // The database query: scored_time > now - window_days.
    let min_time = now - (prompt.window_days as i64) * 86_400;
    let in_window: Vec<ScoreRow> = rows
        .iter()
        .filter(|r| r.scored_time > min_time)
        .cloned()
        .collect();
    let prepared = prepare_rows(&in_window);
    if prepared.is_empty() {
        return Vec::new();
    }
    // compute_smoothed_score: scored_time <= now, drop NaN scores.
    let used: Vec<&ScoreRow> = prepared
        .iter()
        .filter(|r| r.scored_time <= now && !r.prompt_score.is_nan())
        .collect();
    let coefs: Vec<f64> = used
        .iter()
        .map(|r| config.coefficient(&r.asset, table))
        .collect();
    let mut coef_sums: BTreeMap<i64, KahanSum> = BTreeMap::new();
    for (r, c) in used.iter().zip(&coefs) {
        coef_sums.entry(r.miner_id).or_default().add(*c);
    }
    let mut sums: BTreeMap<i64, KahanSum> = BTreeMap::new();
    for (r, c) in used.iter().zip(&coefs) {
        let weighted = (r.prompt_score * c) / coef_sums[&r.miner_id].value();
        sums.entry(r.miner_id).or_default().add(weighted);
    }
    let mut smoothed: Vec<(i64, f64)> = sums.iter().map(|(m, s)| (*m, s.value())).collect();
    // Miners in the prepared rows with no valid score get inf, after the others.
    let mut missing: Vec<i64> = prepared
        .iter()
        .map(|r| r.miner_id)
        .filter(|m| !sums.contains_key(m))
        .collect();
    missing.sort_unstable();
    missing.dedup();
    smoothed.extend(missing.into_iter().map(|m| (m, f64::INFINITY)));

    let with_uid: Vec<(i64, Option<u16>, f64)> =
        smoothed.iter().map(|(m, s)| (*m, uid_of(*m), *s)).collect();
    let registered: Vec<f64> = with_uid
        .iter()
        .filter(|(_, u, _)| u.is_some())
        .map(|(_, _, s)| *s)
        .collect();
    let weights = softmax(&registered, prompt.softmax_beta);
    let mut wi = weights.into_iter();
    with_uid
        .into_iter()
        .map(|(miner_id, miner_uid, s)| {
            let reward_weight = if miner_uid.is_some() {
                wi.next().unwrap_or(0.0) * prompt.smoothed_score_coefficient
            } else {
                0.0
            };
            LeaderboardEntry {
                miner_id,
                miner_uid,
                smoothed_score: s,
                reward_weight,
            }
        })
        .collect()
}

/// The entries the validator keeps: registered, with `reward_weight > 0`.
pub fn rewarded(entries: &[LeaderboardEntry]) -> Vec<LeaderboardEntry> {
    entries
        .iter()
        .filter(|e| e.miner_uid.is_some() && e.reward_weight > 0.0)
        .cloned()
        .collect()
}

/// `combine_moving_averages`: per miner id, the reward weights of the prompt types summed, in
/// order of first appearance (low before high).
pub fn combine(per_prompt: &[Vec<LeaderboardEntry>]) -> Vec<LeaderboardEntry> {
    let mut order: Vec<i64> = Vec::new();
    let mut map: HashMap<i64, LeaderboardEntry> = HashMap::new();
    for entries in per_prompt {
        for e in entries {
            match map.get_mut(&e.miner_id) {
                Some(existing) => existing.reward_weight += e.reward_weight,
                None => {
                    order.push(e.miner_id);
                    map.insert(e.miner_id, e.clone());
                }
            }
        }
    }
    order.into_iter().filter_map(|m| map.remove(&m)).collect()
}

/// `forward_score`'s last step: the owner UID gets `sum(reward weights)` (Python's sequential
/// sum), then the weights are L1-normalised (as `set_weights` does before its u16 quantisation,
/// which is not modelled). Returns `(uid, weight)` in the combined order, the owner last.
pub fn final_weights(combined: &[LeaderboardEntry], owner_uid: u16) -> Vec<(u16, f64)> {
    let mut out: Vec<(u16, f64)> = combined
        .iter()
        .filter_map(|e| e.miner_uid.map(|u| (u, e.reward_weight)))
        .collect();
    let owner: f64 = combined.iter().fold(0.0, |acc, e| acc + e.reward_weight);
    out.push((owner_uid, owner));
    let norm: f64 = out.iter().map(|(_, w)| w.abs()).sum();
    if norm > 0.0 {
        for (_, w) in &mut out {
            *w /= norm;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_matches_numpy() {
        // np.percentile([1, 2, 3, 4], 90) == 3.7 (vi = 2.7, g >= 0.5: 4 - 1*0.3)
        assert_eq!(
            percentile_linear(&[4.0, 1.0, 3.0, 2.0], 90.0),
            Some(4.0 - 1.0 * (1.0 - (3.0 * 0.9 - 2.0)))
        );
        assert_eq!(percentile_linear(&[1.0, 2.0, 3.0, 4.0], 90.0), Some(3.7));
        // np.percentile([10, 20], 90) == 19.0 (vi 0.9)
        assert_eq!(percentile_linear(&[10.0, 20.0], 90.0), Some(19.0));
        // g < 0.5 branch: 11 values, vi = 9.0 exactly -> the 10th value.
        let v: Vec<f64> = (0..11).map(|i| i as f64 * 1.5).collect();
        assert_eq!(percentile_linear(&v, 90.0), Some(13.5));
        // 3 values: vi = 1.8; numpy gives 2.6 for [1, 2, 3]... computed as 3 - 1*0.2
        assert_eq!(
            percentile_linear(&[1.0, 2.0, 3.0], 90.0),
            Some(3.0 - 1.0 * (1.0 - (2.0 * 0.9 - 1.0)))
        );
        assert_eq!(percentile_linear(&[5.0], 90.0), Some(5.0));
        assert_eq!(percentile_linear(&[], 90.0), None);
        assert!(percentile_linear(&[1.0, f64::NAN], 90.0).unwrap().is_nan());
    }

    #[test]
    fn prompt_scores_cap_fill_and_shift() {
        let crps = [100.0, 200.0, -1.0, 300.0, 1000.0];
        let p = compute_prompt_scores(&crps).unwrap();
        // valid = [100, 200, 300, 1000]: vi = 2.7 -> 1000 - 700*0.3 = 790 (numpy: 790.0000000000001?)
        let expected_p90 = 1000.0 - (1000.0 - 300.0) * (1.0 - (3.0 * 0.9 - 2.0));
        assert_eq!(p.percentile90, expected_p90);
        assert_eq!(p.lowest_score, 100.0);
        assert_eq!(p.scores[0], 0.0);
        assert_eq!(p.scores[1], 100.0);
        assert_eq!(p.scores[2], expected_p90 - 100.0); // invalid = cap
        assert_eq!(p.scores[4], expected_p90 - 100.0); // capped
        assert_eq!(p.worst(), expected_p90 - 100.0);
        assert!(compute_prompt_scores(&[-1.0, -1.0]).is_none());
        // One valid miner: it is the cap and the lowest; everyone scores 0.
        let p = compute_prompt_scores(&[-1.0, 50.0]).unwrap();
        assert_eq!(p.scores, vec![0.0, 0.0]);
    }

    #[test]
    fn kahan_differs_from_naive_where_pandas_does() {
        let vals = [1e16, 1.0, 1.0, 1.0, 1.0, -1e16];
        let mut k = KahanSum::default();
        for v in vals {
            k.add(v);
        }
        let naive: f64 = vals.iter().sum();
        assert_eq!(k.value(), 4.0);
        assert_eq!(naive, 0.0);
        let mut k = KahanSum::default();
        k.add(1.0);
        k.add(f64::INFINITY);
        k.add(1.0);
        assert_eq!(k.value(), f64::INFINITY);
        k.add(f64::NAN);
        assert_eq!(k.value(), f64::INFINITY);
    }

    #[test]
    fn softmax_steps() {
        let w = softmax(&[0.0, 10.0, f64::INFINITY], -0.1);
        let e1 = (-1.0f64).exp();
        assert_eq!(w[0], 1.0 / (1.0 + e1 + 0.0));
        assert_eq!(w[1], e1 / (1.0 + e1));
        assert_eq!(w[2], 0.0);
        assert!(softmax(&[], -0.1).is_empty());
        let w = softmax(&[5.0, 5.0], -0.2);
        assert_eq!(w, vec![0.5, 0.5]);
        // NaN anywhere poisons the max, hence everything (as np.max does).
        assert!(softmax(&[1.0, f64::NAN], -0.1).iter().all(|w| w.is_nan()));
    }

    fn row(t: i64, m: i64, s: f64, asset: &str, p90: f64, low: f64) -> ScoreRow {
        ScoreRow {
            scored_time: t,
            miner_id: m,
            prompt_score: s,
            asset: asset.into(),
            percentile90: p90,
            lowest_score: low,
        }
    }

    #[test]
    fn backfill_gives_late_joiners_the_worst_score() {
        let rows = vec![
            row(200, 1, 5.0, "ETH", 50.0, 10.0),
            row(100, 1, 3.0, "BTC", 30.0, 5.0),
            row(200, 2, 7.0, "ETH", 50.0, 10.0),
            row(300, 3, 1.0, "SOL", 20.0, 1.0),
        ];
        let p = prepare_rows(&rows);
        let keys: Vec<(i64, i64)> = p.iter().map(|r| (r.scored_time, r.miner_id)).collect();
        assert_eq!(
            keys,
            vec![
                (100, 1),
                (100, 2),
                (100, 3),
                (200, 1),
                (200, 2),
                (200, 3),
                (300, 3)
            ]
        );
        let r = &p[1]; // miner 2 at 100: backfilled with 30 - 5 in BTC
        assert_eq!((r.prompt_score, r.asset.as_str()), (25.0, "BTC"));
        assert_eq!(p[5].prompt_score, 40.0); // miner 3 at 200
        assert_eq!(p[5].asset, "ETH");
        // Miner 1 was there from the start: no backfill rows for it.
        assert_eq!(p.iter().filter(|r| r.miner_id == 1).count(), 2);
    }

    #[test]
    fn leaderboard_weighted_mean_and_softmax() {
        let cfg = Sn50Config::default();
        let prompt = PromptConfig::low();
        let rows = vec![
            row(1000, 1, 10.0, "BTC", 40.0, 0.0),
            row(1000, 2, 30.0, "BTC", 40.0, 0.0),
            row(2000, 1, 20.0, "SPYX", 60.0, 0.0),
            row(2000, 2, 0.0, "SPYX", 60.0, 0.0),
            row(2000, 3, f64::NAN, "SPYX", 60.0, 0.0),
        ];
        let uid = |m: i64| {
            if m == 2 {
                Some(7u16)
            } else if m == 1 {
                Some(3)
            } else {
                Some(9)
            }
        };
        let lb = leaderboard(&rows, 2000, &prompt, &cfg, WeightTable::Validator, &uid);
        assert_eq!(lb.len(), 3);
        let c = cfg.coefficient("SPYX", WeightTable::Validator);
        let w = 1.0 + c;
        // Miner 1: (10*1)/W + (20*c)/W summed with Kahan in row order.
        let mut k = KahanSum::default();
        k.add(10.0 / w);
        k.add((20.0 * c) / w);
        assert_eq!(lb[0].smoothed_score, k.value());
        assert_eq!(lb[1].smoothed_score, 30.0 / w + 0.0);
        // Miner 3 joined late: backfilled at 1000 with 40, its own NaN dropped.
        assert_eq!(lb[2].smoothed_score, 40.0);
        let sm = softmax(&[lb[0].smoothed_score, lb[1].smoothed_score, 40.0], -0.1);
        assert_eq!(lb[0].reward_weight, sm[0] * 0.5);
        assert_eq!(lb[2].reward_weight, sm[2] * 0.5);
        let total: f64 = lb.iter().map(|e| e.reward_weight).sum();
        assert!((total - 0.5).abs() < 1e-12);
        // Miner 2 scored 0 on the heavily weighted SPYX request: lower mean, more weight.
        assert!(lb[1].smoothed_score < lb[0].smoothed_score);
        assert!(lb[1].reward_weight > lb[0].reward_weight);
        // The window: at now = 1000 + 10 days the 1000 rows fall out (strictly greater).
        let later = 1000 + 10 * 86_400;
        let lb = leaderboard(&rows, later, &prompt, &cfg, WeightTable::Validator, &uid);
        assert_eq!(
            lb.iter().find(|e| e.miner_id == 3).unwrap().smoothed_score,
            f64::INFINITY
        );
        assert_eq!(
            lb.iter().find(|e| e.miner_id == 2).unwrap().smoothed_score,
            0.0
        );
        // A deregistered miner takes no part in the softmax.
        let uid2 = |m: i64| if m == 2 { None } else { Some(m as u16) };
        let lb = leaderboard(&rows, 2000, &prompt, &cfg, WeightTable::Validator, &uid2);
        assert_eq!(lb[1].reward_weight, 0.0);
        assert!(rewarded(&lb).iter().all(|e| e.miner_id != 2));
    }

    #[test]
    fn combine_and_owner_share() {
        let e = |m: i64, w: f64| LeaderboardEntry {
            miner_id: m,
            miner_uid: Some(m as u16),
            smoothed_score: 0.0,
            reward_weight: w,
        };
        let low = vec![e(1, 0.3), e(2, 0.2)];
        let high = vec![e(2, 0.4), e(3, 0.1)];
        let c = combine(&[low, high]);
        let got: Vec<(i64, f64)> = c.iter().map(|x| (x.miner_id, x.reward_weight)).collect();
        assert_eq!(got, vec![(1, 0.3), (2, 0.2 + 0.4), (3, 0.1)]);
        let w = final_weights(&c, 248);
        assert_eq!(w.last().unwrap().0, 248);
        assert!((w.last().unwrap().1 - 0.5).abs() < 1e-15);
        assert!((w.iter().map(|x| x.1).sum::<f64>() - 1.0).abs() < 1e-15);
    }
}

// ---------------------------------------------------------------------------------------------
// The `score leaderboard` command
// ---------------------------------------------------------------------------------------------

/// Errors in a leaderboard input file.
#[derive(Debug, thiserror::Error)]
pub enum LeaderboardError {
    #[error("leaderboard input is not valid JSON for the documented format: {0}")]
    Parse(#[from] serde_json::Error),
    #[error("{prompt} request {index}: {message}")]
    Request {
        prompt: &'static str,
        index: usize,
        message: String,
    },
    #[error("leaderboard input: {0}")]
    Invalid(String),
}

/// A time as unix seconds or an ISO-8601 string.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum TimeValue {
    Unix(i64),
    Iso(String),
}

impl TimeValue {
    fn unix(&self) -> Option<i64> {
        match self {
            TimeValue::Unix(t) => Some(*t),
            TimeValue::Iso(s) => super::response::iso_start_timestamp(s),
        }
    }
}

/// One scored request of the leaderboard input.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestScores {
    /// `start_time + time_length`; or give `start_time`.
    #[serde(default)]
    pub scored_time: Option<TimeValue>,
    #[serde(default)]
    pub start_time: Option<TimeValue>,
    pub asset: String,
    /// miner id -> CRPS total (`-1` or null = invalid response).
    pub scores: BTreeMap<String, Option<f64>>,
}

/// The leaderboard input file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaderboardInput {
    /// The scoring time; default: the latest `scored_time` in the file.
    #[serde(default)]
    pub now: Option<TimeValue>,
    /// The owner UID that gets the miners' total weight appended (default 248, mainnet).
    #[serde(default)]
    pub owner_uid: Option<u16>,
    /// `"validator"` (default) or `"seed"` asset weights.
    #[serde(default)]
    pub weights: Option<String>,
    /// miner id -> current UID; null = deregistered. Default: the miner id is the UID.
    #[serde(default)]
    pub uids: Option<BTreeMap<String, Option<u16>>>,
    #[serde(default)]
    pub low: Vec<RequestScores>,
    #[serde(default)]
    pub high: Vec<RequestScores>,
}

fn request_rows(
    reqs: &[RequestScores],
    prompt: &PromptConfig,
    label: &'static str,
) -> Result<(Vec<ScoreRow>, usize), LeaderboardError> {
    let mut rows = Vec::new();
    let mut scored = 0;
    for (index, r) in reqs.iter().enumerate() {
        let err = |message: String| LeaderboardError::Request {
            prompt: label,
            index,
            message,
        };
        let t = match (&r.scored_time, &r.start_time) {
            (Some(t), _) => t
                .unix()
                .ok_or_else(|| err("scored_time is not a time".into()))?,
            (None, Some(s)) => {
                s.unix()
                    .ok_or_else(|| err("start_time is not a time".into()))?
                    + prompt.time_length as i64
            }
            (None, None) => return Err(err("needs scored_time or start_time".into())),
        };
        let mut ids = Vec::with_capacity(r.scores.len());
        let mut crps = Vec::with_capacity(r.scores.len());
        for (k, v) in &r.scores {
            let id: i64 = k
                .parse()
                .map_err(|_| err(format!("miner id {k:?} is not an integer")))?;
            ids.push(id);
            crps.push(v.unwrap_or(INVALID_SCORE));
        }
        let Some(p) = compute_prompt_scores(&crps) else {
            continue; // every response invalid: the validator skips the request
        };
        scored += 1;
        for (id, s) in ids.into_iter().zip(p.scores.iter()) {
            rows.push(ScoreRow {
                scored_time: t,
                miner_id: id,
                prompt_score: *s,
                asset: r.asset.clone(),
                percentile90: p.percentile90,
                lowest_score: p.lowest_score,
            });
        }
    }
    Ok((rows, scored))
}

/// Run the whole reward pipeline on a leaderboard input and return the `--json` output:
/// `{"now", "low": {"requests", "leaderboard": [...]}, "high": {...}, "combined": [...],
/// "weights": [{"uid", "weight"}, ...]}` (smoothed scores of miners without a valid score are
/// `null`, i.e. infinite).
pub fn leaderboard_from_json(
    text: &str,
    config: &Sn50Config,
) -> Result<serde_json::Value, LeaderboardError> {
    let input: LeaderboardInput = serde_json::from_str(text)?;
    let table = match input.weights.as_deref() {
        None => WeightTable::Validator,
        Some(w) => w.parse().map_err(|e: super::constants::ConstantsError| {
            LeaderboardError::Invalid(e.to_string())
        })?,
    };
    let mut uids: HashMap<i64, Option<u16>> = HashMap::new();
    if let Some(m) = &input.uids {
        for (k, v) in m {
            let id: i64 = k.parse().map_err(|_| {
                LeaderboardError::Invalid(format!("uids: miner id {k:?} is not an integer"))
            })?;
            uids.insert(id, *v);
        }
    }
    let explicit = input.uids.is_some();
    let uid_of = |m: i64| -> Option<u16> {
        if explicit {
            uids.get(&m).copied().flatten()
        } else {
            u16::try_from(m).ok()
        }
    };
    let (low_rows, low_n) = request_rows(&input.low, &config.low, "low")?;
    let (high_rows, high_n) = request_rows(&input.high, &config.high, "high")?;
    let now = match &input.now {
        Some(t) => t
            .unix()
            .ok_or_else(|| LeaderboardError::Invalid("now is not a time".into()))?,
        None => low_rows
            .iter()
            .chain(&high_rows)
            .map(|r| r.scored_time)
            .max()
            .ok_or_else(|| LeaderboardError::Invalid("no scored request in the input".into()))?,
    };
    let low = leaderboard(&low_rows, now, &config.low, config, table, &uid_of);
    let high = leaderboard(&high_rows, now, &config.high, config, table, &uid_of);
    let combined = combine(&[rewarded(&low), rewarded(&high)]);
    let owner = input
        .owner_uid
        .unwrap_or(super::constants::OWNER_UID_MAINNET);
    let weights = if combined.is_empty() {
        Vec::new()
    } else {
        final_weights(&combined, owner)
    };
    let entries = |v: &[LeaderboardEntry]| -> Vec<serde_json::Value> {
        v.iter()
            .map(|e| {
                serde_json::json!({
                    "miner_id": e.miner_id,
                    "miner_uid": e.miner_uid,
                    "smoothed_score": if e.smoothed_score.is_finite() { serde_json::json!(e.smoothed_score) } else { serde_json::Value::Null },
                    "reward_weight": e.reward_weight,
                })
            })
            .collect()
    };
    Ok(serde_json::json!({
        "now": now,
        "low": {"requests": low_n, "leaderboard": entries(&low)},
        "high": {"requests": high_n, "leaderboard": entries(&high)},
        "combined": combined.iter().map(|e| serde_json::json!({
            "miner_id": e.miner_id, "miner_uid": e.miner_uid, "reward_weight": e.reward_weight
        })).collect::<Vec<_>>(),
        "weights": weights.iter().map(|(u, w)| serde_json::json!({"uid": u, "weight": w})).collect::<Vec<_>>(),
    }))
}

#[cfg(test)]
mod command_tests {
    use super::*;

    #[test]
    fn leaderboard_command_end_to_end() {
        let text = r#"{
            "now": 20000,
            "uids": {"1": 11, "2": 12, "3": null},
            "low": [
                {"scored_time": 10000, "asset": "BTC", "scores": {"1": 100.0, "2": 200.0, "3": -1}},
                {"start_time": "1970-01-01T00:00:00+00:00", "asset": "ETH", "scores": {"1": -1, "2": -1}},
                {"scored_time": 20000, "asset": "ETH", "scores": {"1": 300.0, "2": 100.0, "4": null}}
            ],
            "high": [
                {"scored_time": 19000, "asset": "SOL", "scores": {"2": 10.0, "1": 20.0}}
            ]
        }"#;
        let out = leaderboard_from_json(text, &Sn50Config::default()).unwrap();
        assert_eq!(out["now"], 20000);
        assert_eq!(out["low"]["requests"], 2); // the all-invalid request is skipped
        let low = out["low"]["leaderboard"].as_array().unwrap();
        assert_eq!(low.len(), 4);
        // Miner 4 joined late: backfilled with request 0's worst score.
        assert_eq!(low[3]["miner_id"], 4);
        assert!(low[2]["reward_weight"].as_f64().unwrap() == 0.0); // deregistered miner 3
        let weights = out["weights"].as_array().unwrap();
        assert_eq!(weights.last().unwrap()["uid"], 248);
        let sum: f64 = weights.iter().map(|w| w["weight"].as_f64().unwrap()).sum();
        assert!((sum - 1.0).abs() < 1e-12);
        let combined = out["combined"].as_array().unwrap();
        let m2 = combined.iter().find(|c| c["miner_id"] == 2).unwrap();
        let low2 = low.iter().find(|c| c["miner_id"] == 2).unwrap()["reward_weight"]
            .as_f64()
            .unwrap();
        let high2 = out["high"]["leaderboard"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["miner_id"] == 2)
            .unwrap()["reward_weight"]
            .as_f64()
            .unwrap();
        assert_eq!(m2["reward_weight"].as_f64().unwrap(), low2 + high2);
    }

    #[test]
    fn leaderboard_input_errors_name_the_request() {
        let e = leaderboard_from_json(
            r#"{"low": [{"asset": "BTC", "scores": {}}]}"#,
            &Sn50Config::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("low request 0"), "{e}");
        let e = leaderboard_from_json(
            r#"{"low": [{"scored_time": 1, "asset": "BTC", "scores": {"x": 1.0}}]}"#,
            &Sn50Config::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("\"x\""), "{e}");
        let e = leaderboard_from_json(r#"{"lo": []}"#, &Sn50Config::default()).unwrap_err();
        assert!(e.to_string().contains("lo"), "{e}");
        let e = leaderboard_from_json(r#"{}"#, &Sn50Config::default()).unwrap_err();
        assert!(e.to_string().contains("no scored request"), "{e}");
    }
}
