//! From per-request CRPS totals to miner weights, as the December 2026 validator does it:
//! `compute_prompt_scores` (raw scores clipped at 10x their median, misses filled with the 95th
//! percentile of the scores that were not clipped, minus the lowest), the rolling leaderboard of
//! each competition (`prepare_df_for_moving_average` backfill + `compute_smoothed_score`'s
//! coefficient-weighted mean over the competition's window and assets, summed with pandas' Kahan
//! summation in row order), the softmax with the competition's beta times its third of the
//! emission, `combine_moving_averages` (the competitions summed per miner), and the owner's
//! burn where a deployment still appends it.
//!
//! It also answers the miner's question "what share would we get against the reference GBM":
//! [`share_against_reference`] runs the same pipeline on a two-miner field.
//!
//! It does not compute CRPS ([`super::crps`], [`super::vol`]) or route prompts
//! ([`super::competition`]).
//!
//! Every step keeps numpy/pandas operation order. One caveat: `np.exp` on CPUs with AVX-512
//! uses numpy's own vectorised exp, which can differ from the platform libm (used here) in the
//! last bit; elsewhere numpy calls libm and the softmax matches exactly.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::competition::Competition;
use super::constants::{PromptKind, Sn50Config, WeightTable};
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

/// `np.median(values)`: the middle value, or the mean `(a + b) / 2` of the two middle ones; NaN
/// if any value is NaN; None for an empty input.
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    if values.iter().any(|v| v.is_nan()) {
        return Some(f64::NAN);
    }
    let mut v = values.to_vec();
    v.sort_unstable_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// The result of `compute_prompt_scores` for one request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PromptScores {
    /// `prompt_score_v3` per miner, in input order: best 0, a miss `percentile95 - lowest_score`.
    pub scores: Vec<f64>,
    /// The 95th percentile of the valid scores that were not clipped: what a miss scores.
    pub percentile95: f64,
    pub lowest_score: f64,
    /// Per miner: its raw CRPS was above the cap (`multiple` x the median) and was clipped.
    pub capped: Vec<bool>,
}

impl PromptScores {
    /// The score a backfilled (late-joining) miner gets for this request.
    pub fn worst(&self) -> f64 {
        self.percentile95 - self.lowest_score
    }
}

/// `compute_prompt_scores(score_values)`: `crps` holds each miner's total score, `-1` for an
/// invalid response; `multiple` is `OUTLIER_SCORE_MEDIAN_MULTIPLE` (10). When the median `m` of
/// the valid scores is positive, every score is clipped to `multiple * m` (misses stay `-1`);
/// misses get the 95th percentile of the valid scores that were not clipped (of all valid ones
/// if every one was); the minimum is subtracted. None when every response is invalid (the
/// request is skipped).
pub fn compute_prompt_scores(crps: &[f64], multiple: f64) -> Option<PromptScores> {
    if crps.iter().all(|&s| s == INVALID_SCORE) {
        return None;
    }
    let valid: Vec<f64> = crps
        .iter()
        .copied()
        .filter(|&s| s != INVALID_SCORE)
        .collect();
    let m = median(&valid)?;
    let mut values = crps.to_vec();
    let mut capped = vec![false; crps.len()];
    if m > 0.0 {
        let cap = m * multiple;
        for (v, c) in values.iter_mut().zip(capped.iter_mut()) {
            *c = *v > cap;
            *v = np_minimum(*v, cap);
        }
    }
    let uncapped: Vec<f64> = values
        .iter()
        .zip(&capped)
        .filter(|(v, c)| **v != INVALID_SCORE && !**c)
        .map(|(v, _)| *v)
        .collect();
    let p95 = if uncapped.is_empty() {
        let clipped_valid: Vec<f64> = values
            .iter()
            .copied()
            .filter(|&v| v != INVALID_SCORE)
            .collect();
        percentile_linear(&clipped_valid, 95.0)?
    } else {
        percentile_linear(&uncapped, 95.0)?
    };
    let filled: Vec<f64> = values
        .iter()
        .map(|&v| if v == INVALID_SCORE { p95 } else { v })
        .collect();
    let lowest = np_min(&filled);
    Some(PromptScores {
        scores: filled.iter().map(|f| f - lowest).collect(),
        percentile95: p95,
        lowest_score: lowest,
        capped,
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
    /// The request's `percentile95` and `lowest_score` (used to backfill late joiners).
    pub percentile95: f64,
    pub lowest_score: f64,
}

/// `prepare_df_for_moving_average`: miners whose first row comes after the window's earliest
/// `scored_time` get, for every earlier `scored_time`, a row with that request's worst score
/// (`percentile95 - lowest_score` of the first row at that time) and asset. Rows come back
/// sorted by (scored_time, miner_id), ties in input order (real rows before backfill rows).
pub fn prepare_rows(rows: &[ScoreRow]) -> Vec<ScoreRow> {
    let Some(global_min) = rows.iter().map(|r| r.scored_time).min() else {
        return Vec::new();
    };
    // The first row of each scored_time gives its worst score and asset.
    let mut per_time: BTreeMap<i64, (f64, String, f64, f64)> = BTreeMap::new();
    for r in rows {
        per_time.entry(r.scored_time).or_insert((
            r.percentile95 - r.lowest_score,
            r.asset.clone(),
            r.percentile95,
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
        for (&t, (worst, asset, p95, low)) in &per_time {
            if t >= first {
                continue;
            }
            out.push(ScoreRow {
                scored_time: t,
                miner_id: miner,
                prompt_score: *worst,
                asset: asset.clone(),
                percentile95: *p95,
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
    /// `softmax(beta * smoothed) * smoothed_score_coefficient` (a third); 0 for deregistered
    /// miners.
    pub reward_weight: f64,
}

/// `get_miner_scores` + `prepare_df_for_moving_average` + `compute_smoothed_score` for one
/// competition at time `now` (unix seconds). `rows` are the competition's prompt scores (the
/// caller routes prompts; see [`super::competition`]). `uid_of` maps a miner id to its current
/// UID (None drops it before the softmax). Entries come sorted by miner id; only those with a
/// positive reward weight are "rewarded" (see [`rewarded`]).
pub fn leaderboard(
    rows: &[ScoreRow],
    now: i64,
    competition: &Competition,
    config: &Sn50Config,
    table: WeightTable,
    uid_of: &dyn Fn(i64) -> Option<u16>,
) -> Vec<LeaderboardEntry> {
    // The database query: scored_time > now - window_days.
    let min_time = now - (competition.window_days as i64) * 86_400;
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
    let weights = softmax(&registered, competition.softmax_beta);
    let mut wi = weights.into_iter();
    with_uid
        .into_iter()
        .map(|(miner_id, miner_uid, s)| {
            let reward_weight = if miner_uid.is_some() {
                wi.next().unwrap_or(0.0) * config.smoothed_score_coefficient
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

/// `combine_moving_averages`: per miner id, the reward weights of the competitions summed, in
/// order of first appearance (competitions in `ALL_COMPETITIONS` order).
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

/// `forward_score`'s last step: where the deployment still burns half (the May 2026 validator,
/// and the `neurons/validator.py` still readable in December; the CHANGELOG says the burn is
/// removed), the owner UID gets `sum(reward weights)` (Python's sequential sum); then the
/// weights are L1-normalised (as `set_weights` does before its u16 quantisation, which is not
/// modelled). Returns `(uid, weight)` in the combined order, the owner last.
pub fn final_weights(combined: &[LeaderboardEntry], owner_uid: Option<u16>) -> Vec<(u16, f64)> {
    let mut out: Vec<(u16, f64)> = combined
        .iter()
        .filter_map(|e| e.miner_uid.map(|u| (u, e.reward_weight)))
        .collect();
    if let Some(owner_uid) = owner_uid {
        let owner: f64 = combined.iter().fold(0.0, |acc, e| acc + e.reward_weight);
        out.push((owner_uid, owner));
    }
    let norm: f64 = out.iter().map(|(_, w)| w.abs()).sum();
    if norm > 0.0 {
        for (_, w) in &mut out {
            *w /= norm;
        }
    }
    out
}

/// One prompt scored for our model and for the reference on the same paths' prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadToHead {
    /// `start_time + time_length`, unix seconds.
    pub scored_time: i64,
    pub asset: String,
    /// Our total score (`-1` for an invalid answer).
    pub ours: f64,
    /// The reference's (the GBM's) total score on the same prompt.
    pub reference: f64,
}

/// What a competition would pay us in a field of two: us and the reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompetitionShare {
    pub id: String,
    pub label: String,
    pub window_days: u64,
    pub softmax_beta: f64,
    /// Prompts inside the window that were scored (at least one valid answer).
    pub prompts: usize,
    /// Our smoothed score and the reference's (lower is better; `None` = no valid score).
    pub ours_smoothed: Option<f64>,
    pub reference_smoothed: Option<f64>,
    /// Our share of this competition's pool (0.5 = a tie with the reference).
    pub pool_share: f64,
    /// `pool_share` times the competition's share of emission (a third).
    pub emission: f64,
}

/// Our share of `competition`'s rewards at `now` in a field of two (us as miner 0, the
/// reference as miner 1, both registered): the validator's prompt scores, window, asset
/// coefficients, softmax with the competition's beta. Prompts whose asset the competition does
/// not score are ignored. The difference to the live subnet is the field: there, the other
/// miners set the median, the fill and the softmax's denominator.
pub fn share_against_reference(
    prompts: &[HeadToHead],
    now: i64,
    competition: &Competition,
    config: &Sn50Config,
    table: WeightTable,
) -> CompetitionShare {
    let mut rows = Vec::new();
    let mut scored = 0;
    let min_time = now - (competition.window_days as i64) * 86_400;
    for p in prompts {
        if !competition.assets.contains(&p.asset) {
            continue;
        }
        let Some(ps) =
            compute_prompt_scores(&[p.ours, p.reference], config.outlier_median_multiple)
        else {
            continue;
        };
        if p.scored_time > min_time && p.scored_time <= now {
            scored += 1;
        }
        for (id, s) in [0i64, 1].into_iter().zip(&ps.scores) {
            rows.push(ScoreRow {
                scored_time: p.scored_time,
                miner_id: id,
                prompt_score: *s,
                asset: p.asset.clone(),
                percentile95: ps.percentile95,
                lowest_score: ps.lowest_score,
            });
        }
    }
    let uid = |m: i64| u16::try_from(m).ok();
    let board = leaderboard(&rows, now, competition, config, table, &uid);
    let find = |m: i64| board.iter().find(|e| e.miner_id == m);
    let smoothed = |m: i64| find(m).map(|e| e.smoothed_score).filter(|s| s.is_finite());
    let emission = find(0).map(|e| e.reward_weight).unwrap_or(0.0);
    CompetitionShare {
        id: competition.id.clone(),
        label: competition.label.clone(),
        window_days: competition.window_days,
        softmax_beta: competition.softmax_beta,
        prompts: scored,
        ours_smoothed: smoothed(0),
        reference_smoothed: smoothed(1),
        pool_share: if board.is_empty() {
            0.0
        } else {
            emission / config.smoothed_score_coefficient
        },
        emission,
    }
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
    fn median_matches_numpy() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[0.1, 0.2]), Some((0.1 + 0.2) / 2.0));
        assert_eq!(median(&[]), None);
        assert!(median(&[1.0, f64::NAN]).unwrap().is_nan());
    }

    #[test]
    fn prompt_scores_clip_at_ten_medians_and_fill_misses_with_the_unclipped_p95() {
        // valid = [100, 200, 300, 5000]: median 250, cap 2500; 5000 is clipped to 2500.
        let crps = [100.0, 200.0, -1.0, 300.0, 5000.0];
        let p = compute_prompt_scores(&crps, 10.0).unwrap();
        assert_eq!(p.capped, vec![false, false, false, false, true]);
        // The miss gets the p95 of the unclipped [100, 200, 300]: vi = 1.9 -> 300 - 100*0.1.
        let p95 = 300.0 - (300.0 - 200.0) * (1.0 - (2.0 * 0.95 - 1.0));
        assert_eq!(p.percentile95, p95);
        assert_eq!(p.lowest_score, 100.0);
        assert_eq!(p.scores, vec![0.0, 100.0, p95 - 100.0, 200.0, 2400.0]);
        assert_eq!(p.worst(), p95 - 100.0);
        // The old rule (p90 cap, fill with p90) would have given the miss 300 + ...: not the same.
        assert!(p.scores[2] < 200.0);
        assert!(compute_prompt_scores(&[-1.0, -1.0], 10.0).is_none());
        // One valid miner: it is the p95 and the lowest; everyone scores 0.
        let p = compute_prompt_scores(&[-1.0, 50.0], 10.0).unwrap();
        assert_eq!(p.scores, vec![0.0, 0.0]);
        // A zero median clips nothing (a perfect score is not an outlier cap of 0).
        let p = compute_prompt_scores(&[0.0, 0.0, 7.0], 10.0).unwrap();
        assert_eq!(p.scores, vec![0.0, 0.0, 7.0]);
        assert_eq!(p.capped, vec![false; 3]);
        // Every valid score clipped is impossible (the median is never above 10x itself), but
        // two clipped of three falls back on nothing: the unclipped one is the p95.
        let p = compute_prompt_scores(&[1.0, 1000.0, 2000.0, -1.0], 10.0).unwrap();
        // median 1000 -> cap 10000: nothing clipped; p95 of [1, 1000, 2000].
        assert_eq!(p.capped, vec![false; 4]);
        assert_eq!(
            p.percentile95,
            percentile_linear(&[1.0, 1000.0, 2000.0], 95.0).unwrap()
        );
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

    fn row(t: i64, m: i64, s: f64, asset: &str, p95: f64, low: f64) -> ScoreRow {
        ScoreRow {
            scored_time: t,
            miner_id: m,
            prompt_score: s,
            asset: asset.into(),
            percentile95: p95,
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
        let prompt = Competition::com_equ_24h();
        let rows = vec![
            row(1000, 1, 10.0, "XAU", 40.0, 0.0),
            row(1000, 2, 30.0, "XAU", 40.0, 0.0),
            row(2000, 1, 20.0, "SP500", 60.0, 0.0),
            row(2000, 2, 0.0, "SP500", 60.0, 0.0),
            row(2000, 3, f64::NAN, "SP500", 60.0, 0.0),
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
        let x = cfg.coefficient("XAU", WeightTable::Validator);
        let c = cfg.coefficient("SP500", WeightTable::Validator);
        let w = x + c;
        // Miner 1: (10*x)/W + (20*c)/W summed with Kahan in row order.
        let mut k = KahanSum::default();
        k.add((10.0 * x) / w);
        k.add((20.0 * c) / w);
        assert_eq!(lb[0].smoothed_score, k.value());
        assert_eq!(lb[1].smoothed_score, (30.0 * x) / w + 0.0);
        // Miner 3 joined late: backfilled at 1000 with 40, its own NaN dropped.
        assert_eq!(lb[2].smoothed_score, 40.0);
        let sm = softmax(&[lb[0].smoothed_score, lb[1].smoothed_score, 40.0], -0.15);
        assert_eq!(lb[0].reward_weight, sm[0] * (1.0 / 3.0));
        assert_eq!(lb[2].reward_weight, sm[2] * (1.0 / 3.0));
        let total: f64 = lb.iter().map(|e| e.reward_weight).sum();
        assert!((total - 1.0 / 3.0).abs() < 1e-12);
        // Miner 2 scored 0 on the heavily weighted SP500 request: lower mean, more weight.
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
        let w = final_weights(&c, Some(248));
        assert_eq!(w.last().unwrap().0, 248);
        assert!((w.last().unwrap().1 - 0.5).abs() < 1e-15);
        assert!((w.iter().map(|x| x.1).sum::<f64>() - 1.0).abs() < 1e-15);
        // Without the burn the miners share everything.
        let w = final_weights(&c, None);
        assert_eq!(w.len(), 3);
        assert!((w[1].1 - 0.6 / 1.0).abs() < 1e-15);
    }

    #[test]
    fn a_two_miner_field_pays_the_better_one_more() {
        let cfg = Sn50Config::default();
        let c1 = Competition::crypto_1h();
        let day = 86_400;
        let now = 100 * day;
        // Ours 10 % better than the reference on every prompt, over 7 days (5 in the window).
        let prompts: Vec<HeadToHead> = (0..7 * 24)
            .map(|h| HeadToHead {
                scored_time: now - h * 3600,
                asset: ["BTC", "ETH", "XAU"][(h % 3) as usize].into(),
                ours: 90.0,
                reference: 100.0,
            })
            .collect();
        let s = share_against_reference(&prompts, now, &c1, &cfg, WeightTable::Validator);
        // XAU is not Crypto 1h's: 2 of 3 prompts count, those in the 5-day window.
        let in_window = prompts
            .iter()
            .filter(|p| p.asset != "XAU" && p.scored_time > now - 5 * day)
            .count();
        assert_eq!(s.prompts, in_window);
        assert_eq!(s.ours_smoothed, Some(0.0));
        // 10 per prompt, as a coefficient-weighted mean (not exactly 10 in floating point)
        let r = s.reference_smoothed.unwrap();
        assert!((r - 10.0).abs() < 1e-12, "{r}");
        // softmax(-0.3 * [0, r]) -> 1 / (1 + e^(-0.3 r))
        let expect = 1.0 / (1.0 + (-0.3 * r).exp());
        assert_eq!(s.pool_share, expect);
        assert!((s.emission - expect / 3.0).abs() < 1e-12);
        // A tie is half; the reference better means less than half.
        let tie: Vec<HeadToHead> = prompts
            .iter()
            .map(|p| HeadToHead {
                ours: 100.0,
                ..p.clone()
            })
            .collect();
        let s = share_against_reference(&tie, now, &c1, &cfg, WeightTable::Validator);
        assert_eq!(s.pool_share, 0.5);
        let worse: Vec<HeadToHead> = prompts
            .iter()
            .map(|p| HeadToHead {
                ours: 110.0,
                ..p.clone()
            })
            .collect();
        let s = share_against_reference(&worse, now, &c1, &cfg, WeightTable::Validator);
        assert!(s.pool_share < 0.5);
        // An invalid answer is filled with the p95 of the one valid score: a tie on that prompt.
        let missed = [HeadToHead {
            scored_time: now,
            asset: "BTC".into(),
            ours: -1.0,
            reference: 100.0,
        }];
        let s = share_against_reference(&missed, now, &c1, &cfg, WeightTable::Validator);
        assert_eq!(s.pool_share, 0.5);
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
    /// The owner UID that gets the miners' total weight appended (the 50 % burn of the May 2026
    /// validator; 248 on mainnet). Default: none, the December 2026 CHANGELOG's "burn removed".
    #[serde(default)]
    pub owner_uid: Option<u16>,
    /// `"validator"` (default) or `"seed"` asset weights.
    #[serde(default)]
    pub weights: Option<String>,
    /// miner id -> current UID; null = deregistered. Default: the miner id is the UID.
    #[serde(default)]
    pub uids: Option<BTreeMap<String, Option<u16>>>,
    /// The 24 h (low) prompts' scores; each goes to the competition that scores its asset.
    #[serde(default)]
    pub low: Vec<RequestScores>,
    /// The 1 h (high) prompts' scores.
    #[serde(default)]
    pub high: Vec<RequestScores>,
}

/// The prompt score rows of one request profile's requests, per competition id (requests on
/// an asset no competition scores are counted in `unscored`), and the requests scored.
struct Routed {
    rows: BTreeMap<String, Vec<ScoreRow>>,
    requests: BTreeMap<String, usize>,
    unscored: usize,
}

fn request_rows(
    reqs: &[RequestScores],
    kind: PromptKind,
    config: &Sn50Config,
    label: &'static str,
    out: &mut Routed,
) -> Result<(), LeaderboardError> {
    let prompt = config.prompt(kind);
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
        let Some(competition) = config.competitions_for(kind, &r.asset).next() else {
            out.unscored += 1;
            continue;
        };
        let Some(p) = compute_prompt_scores(&crps, config.outlier_median_multiple) else {
            continue; // every response invalid: the validator skips the request
        };
        *out.requests.entry(competition.id.clone()).or_default() += 1;
        let rows = out.rows.entry(competition.id.clone()).or_default();
        for (id, s) in ids.into_iter().zip(p.scores.iter()) {
            rows.push(ScoreRow {
                scored_time: t,
                miner_id: id,
                prompt_score: *s,
                asset: r.asset.clone(),
                percentile95: p.percentile95,
                lowest_score: p.lowest_score,
            });
        }
    }
    Ok(())
}

/// Run the whole reward pipeline on a leaderboard input and return the `--json` output:
/// `{"now", "competitions": [{"id", "label", "window_days", "softmax_beta", "requests",
/// "leaderboard": [...]}, ...], "unscored_requests", "combined": [...], "weights": [{"uid",
/// "weight"}, ...]}` (smoothed scores of miners without a valid score are `null`, i.e.
/// infinite). Each request goes to the competition that scores its prompt and asset.
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
    let mut routed = Routed {
        rows: BTreeMap::new(),
        requests: BTreeMap::new(),
        unscored: 0,
    };
    request_rows(&input.low, PromptKind::Low, config, "low", &mut routed)?;
    request_rows(&input.high, PromptKind::High, config, "high", &mut routed)?;
    let now = match &input.now {
        Some(t) => t
            .unix()
            .ok_or_else(|| LeaderboardError::Invalid("now is not a time".into()))?,
        None => routed
            .rows
            .values()
            .flatten()
            .map(|r| r.scored_time)
            .max()
            .ok_or_else(|| LeaderboardError::Invalid("no scored request in the input".into()))?,
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
    let mut boards = Vec::new();
    let mut rewarded_per = Vec::new();
    for c in &config.competitions {
        let rows = routed.rows.get(&c.id).map(Vec::as_slice).unwrap_or(&[]);
        let board = leaderboard(rows, now, c, config, table, &uid_of);
        boards.push(serde_json::json!({
            "id": c.id,
            "label": c.label,
            "window_days": c.window_days,
            "softmax_beta": c.softmax_beta,
            "requests": routed.requests.get(&c.id).copied().unwrap_or(0),
            "leaderboard": entries(&board),
        }));
        rewarded_per.push(rewarded(&board));
    }
    let combined = combine(&rewarded_per);
    let weights = if combined.is_empty() {
        Vec::new()
    } else {
        final_weights(&combined, input.owner_uid)
    };
    Ok(serde_json::json!({
        "now": now,
        "competitions": boards,
        "unscored_requests": routed.unscored,
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
                {"scored_time": 20000, "asset": "ETH", "scores": {"1": 300.0, "2": 100.0, "4": null}},
                {"scored_time": 20000, "asset": "XAU", "scores": {"1": 5.0, "2": 6.0}},
                {"scored_time": 20000, "asset": "DOGE", "scores": {"1": 5.0, "2": 6.0}}
            ],
            "high": [
                {"scored_time": 19000, "asset": "SOL", "scores": {"2": 10.0, "1": 20.0}},
                {"scored_time": 19000, "asset": "XAU", "scores": {"2": 10.0, "1": 20.0}}
            ]
        }"#;
        let out = leaderboard_from_json(text, &Sn50Config::default()).unwrap();
        assert_eq!(out["now"], 20000);
        let comps = out["competitions"].as_array().unwrap();
        let ids: Vec<&str> = comps.iter().map(|c| c["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["com-equ-24h", "crypto-24h", "crypto-1h"]);
        // BTC and ETH low prompts are Crypto 24h's (the all-invalid one is skipped); XAU low is
        // Com/Equ's; SOL high is Crypto 1h's; DOGE low and XAU high are nobody's.
        assert_eq!(comps[0]["requests"], 1);
        assert_eq!(comps[1]["requests"], 2);
        assert_eq!(comps[2]["requests"], 1);
        assert_eq!(out["unscored_requests"], 2);
        assert_eq!(comps[2]["softmax_beta"], -0.3);
        assert_eq!(comps[2]["window_days"], 5);
        let c24 = comps[1]["leaderboard"].as_array().unwrap();
        assert_eq!(c24.len(), 4);
        // Miner 4 joined late: backfilled with request 0's worst score.
        assert_eq!(c24[3]["miner_id"], 4);
        assert!(c24[2]["reward_weight"].as_f64().unwrap() == 0.0); // deregistered miner 3
        let total: f64 = c24
            .iter()
            .map(|e| e["reward_weight"].as_f64().unwrap())
            .sum();
        assert!((total - 1.0 / 3.0).abs() < 1e-12);
        // No burn by default: the weights are the miners' only.
        let weights = out["weights"].as_array().unwrap();
        assert!(weights.iter().all(|w| w["uid"] != 248));
        let sum: f64 = weights.iter().map(|w| w["weight"].as_f64().unwrap()).sum();
        assert!((sum - 1.0).abs() < 1e-12);
        let combined = out["combined"].as_array().unwrap();
        let m2 = combined.iter().find(|c| c["miner_id"] == 2).unwrap();
        let w2 = |i: usize| {
            comps[i]["leaderboard"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["miner_id"] == 2)
                .unwrap()["reward_weight"]
                .as_f64()
                .unwrap()
        };
        assert_eq!(m2["reward_weight"].as_f64().unwrap(), w2(0) + w2(1) + w2(2));
        // The burn is there when asked for.
        let burned = text.replacen("\"now\": 20000,", "\"now\": 20000, \"owner_uid\": 248,", 1);
        let out = leaderboard_from_json(&burned, &Sn50Config::default()).unwrap();
        let weights = out["weights"].as_array().unwrap();
        assert_eq!(weights.last().unwrap()["uid"], 248);
        assert!((weights.last().unwrap()["weight"].as_f64().unwrap() - 0.5).abs() < 1e-12);
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
