//! The Crypto 1 h competition's volatility term, as the validator of 2026-12 computes it
//! (`calculate_vol_crps_for_miner`, `calculate_total_score_for_miner` in synthdataco's
//! `crps_calculation.py`): per-block realised volatility of basis-point step returns, scored
//! with the ensemble CRPS against the miner's paths, weighted per block size, and added to the
//! price CRPS. Bit for bit with the validator on `crps-vectors-v2.json`.
//!
//! It does not decide which competitions carry a volatility term (the competition table does)
//! and does not clip, fill or normalise scores across miners (`rewards` does).

use serde::{Deserialize, Serialize};

use super::competition::Competition;
use super::constants::ScoringInterval;
use super::crps::{
    calculate_crps_detailed, crps_ensemble, pairwise_sum, CrpsError, IntervalCrps, Paths,
    INVALID_SCORE,
};

/// `VOL_CRPS_LAMBDA`: the volatility term's overall weight, split across block sizes.
pub const VOL_CRPS_LAMBDA: f64 = 5.25;

/// One block size of the volatility term: a name, its length in seconds and its weight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VolBlock {
    pub name: String,
    pub seconds: u64,
    pub weight: f64,
}

impl VolBlock {
    pub fn new(name: &str, seconds: u64, weight: f64) -> Self {
        VolBlock {
            name: name.to_string(),
            seconds,
            weight,
        }
    }

    /// The Crypto 1 h competition's blocks: 60, 15 and 5 minutes, weighted λ/3, λ/12, λ/36.
    pub fn crypto_1h() -> Vec<VolBlock> {
        vec![
            VolBlock::new("vol_60min", 3600, VOL_CRPS_LAMBDA / 3.0),
            VolBlock::new("vol_15min", 900, VOL_CRPS_LAMBDA / 12.0),
            VolBlock::new("vol_5min", 300, VOL_CRPS_LAMBDA / 36.0),
        ]
    }
}

/// The volatility term with its per-size sums (unweighted), as the validator details it.
#[derive(Debug, Clone, PartialEq)]
pub struct VolBreakdown {
    /// `Σ weight × sum` over the sizes that had an observed block.
    pub total: f64,
    /// `(name, unweighted sum of block CRPS, weight)` per size that had an observed block.
    pub sizes: Vec<(String, f64, f64)>,
}

/// A miner's whole score for one prompt: the price CRPS, the volatility term (when the
/// competition has one and the price score is valid), and their sum.
#[derive(Debug, Clone, PartialEq)]
pub struct TotalScore {
    pub price: f64,
    /// The price CRPS per scoring interval, as [`calculate_crps_detailed`] details it.
    pub price_detail: Vec<IntervalCrps>,
    pub vol: Option<VolBreakdown>,
    /// `price + vol`; `-1.0` for a zero simulated price.
    pub total: f64,
}

impl TotalScore {
    /// What the reward worker keeps: the total, or `-1.0` when it is not finite.
    pub fn worker_score(&self) -> f64 {
        if self.total.is_finite() {
            self.total
        } else {
            INVALID_SCORE
        }
    }
}

/// Step returns in basis points, `(p[k+1] - p[k]) / p[k] * 10000` (NaN where a price is).
fn bps_returns(prices: &[f64]) -> Vec<f64> {
    prices
        .windows(2)
        .map(|w| (w[1] - w[0]) / w[0] * 10000.0)
        .collect()
}

/// `np.nanstd(x, ddof=1)` of one block, with numpy's arithmetic: NaNs replaced by zero, the
/// pairwise sum over the block divided by the count of observed values, deviations (zero at
/// NaNs) squared and summed pairwise, divided by `count - 1`, square root; NaN when fewer
/// than two values are observed.
pub fn nanstd_ddof1(x: &[f64]) -> f64 {
    nanstd_ddof1_with(x, &mut Vec::with_capacity(x.len()))
}

/// [`nanstd_ddof1`] with a caller's scratch buffer (one per block size, not one per block and
/// path).
fn nanstd_ddof1_with(x: &[f64], arr: &mut Vec<f64>) -> f64 {
    arr.clear();
    arr.extend(x.iter().map(|v| if v.is_nan() { 0.0 } else { *v }));
    let cnt = x.iter().filter(|v| !v.is_nan()).count();
    let avg = pairwise_sum(arr) / cnt as f64;
    for (a, v) in arr.iter_mut().zip(x) {
        *a = if v.is_nan() { 0.0 } else { *a - avg };
    }
    for a in arr.iter_mut() {
        *a *= *a;
    }
    if cnt < 2 {
        return f64::NAN;
    }
    (pairwise_sum(arr) / (cnt - 1) as f64).sqrt()
}

/// Port of `calculate_vol_crps_for_miner(simulation_runs, real_price_path, time_increment,
/// vol_blocks)`: for each block size, the sum over the blocks whose real volatility is
/// observed of the ensemble CRPS of the paths' block volatilities against the real one; then
/// the weighted sum over sizes. A size with no observed block is left out.
pub fn calculate_vol_crps_for_miner(
    sims: &Paths,
    real: &[f64],
    time_increment: u64,
    blocks: &[VolBlock],
) -> VolBreakdown {
    let real_r = bps_returns(real);
    let sim_r: Vec<Vec<f64>> = (0..sims.n_paths())
        .map(|i| bps_returns(sims.row(i)))
        .collect();
    let mut total = 0.0f64;
    let mut sizes = Vec::new();
    for b in blocks {
        let steps = (b.seconds / time_increment) as usize;
        if steps == 0 {
            continue;
        }
        let n_blocks = real_r.len() / steps;
        let mut sum: Option<f64> = None;
        let mut vols = vec![0.0f64; sim_r.len()];
        let mut scratch = Vec::with_capacity(steps);
        for j in 0..n_blocks {
            let range = j * steps..(j + 1) * steps;
            let real_vol = nanstd_ddof1_with(&real_r[range.clone()], &mut scratch);
            if real_vol.is_nan() {
                continue;
            }
            for (v, r) in vols.iter_mut().zip(&sim_r) {
                *v = nanstd_ddof1_with(&r[range.clone()], &mut scratch);
            }
            let c = crps_ensemble(real_vol, &vols);
            // `float(0 + c_0 + c_1 + ...)`: a left fold from the integer 0
            sum = Some(match sum {
                None => 0.0 + c,
                Some(s) => s + c,
            });
        }
        if let Some(s) = sum {
            total += b.weight * s;
            sizes.push((b.name.clone(), s, b.weight));
        }
    }
    VolBreakdown { total, sizes }
}

/// A miner's whole score for one prompt scored by `competition`, with its parts (`None` where
/// the validator's calculation raises, which the reward worker turns into `-1`).
pub fn total_score_detailed(
    sims: &Paths,
    real: &[f64],
    competition: &Competition,
) -> Option<TotalScore> {
    calculate_total_score_for_miner(
        sims,
        real,
        competition.time_increment,
        &competition.scoring_intervals,
        &competition.vol_blocks,
    )
    .ok()
}

/// A total score's parts as `(term, value)`: each scoring interval's price CRPS (the `_gaps`
/// intervals folded into one `gaps` term, as the validator's detail rows fold them) and each
/// volatility block size's weighted sum. The terms add up to the total (up to rounding).
pub fn score_terms(t: &TotalScore) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = Vec::new();
    for i in &t.price_detail {
        let name = if i.name.ends_with("_gaps") {
            "gaps"
        } else {
            i.name.as_str()
        };
        match out.iter_mut().find(|(n, _)| n == name) {
            Some(e) => e.1 += i.total,
            None => out.push((name.to_string(), i.total)),
        }
    }
    for (name, sum, weight) in t.vol.iter().flat_map(|v| &v.sizes) {
        out.push((name.clone(), sum * weight));
    }
    out
}

/// The score the reward worker stores for one prompt scored by `competition`: the total (price
/// CRPS plus the competition's volatility term), or `-1` when the validator would (zero price, a
/// total that is not finite, or an exception inside the calculation).
pub fn miner_total_score(sims: &Paths, real: &[f64], competition: &Competition) -> f64 {
    total_score_detailed(sims, real, competition).map_or(INVALID_SCORE, |t| t.worker_score())
}

/// Port of `calculate_total_score_for_miner`: the price CRPS, plus the volatility term when
/// `blocks` is not empty and the price score is not `-1`.
pub fn calculate_total_score_for_miner(
    sims: &Paths,
    real: &[f64],
    time_increment: u64,
    intervals: &[ScoringInterval],
    blocks: &[VolBlock],
) -> Result<TotalScore, CrpsError> {
    let detail = calculate_crps_detailed(sims, real, time_increment, intervals)?;
    let price = detail.total;
    if price == INVALID_SCORE || blocks.is_empty() {
        return Ok(TotalScore {
            price,
            price_detail: detail.intervals,
            vol: None,
            total: price,
        });
    }
    let vol = calculate_vol_crps_for_miner(sims, real, time_increment, blocks);
    Ok(TotalScore {
        price,
        price_detail: detail.intervals,
        total: price + vol.total,
        vol: Some(vol),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The spec's worked example: blocks of 2 steps, weight 1.75.
    #[test]
    fn the_worked_example() {
        let real = [100.0, 101.0, 102.0, 101.0, f64::NAN];
        let sims = Paths::from_rows(&[
            vec![100.0, 100.5, 101.0, 101.5, 102.0],
            vec![100.0, 102.0, 100.0, 102.0, 100.0],
        ])
        .unwrap();
        let v = calculate_vol_crps_for_miner(&sims, &real, 60, &[VolBlock::new("b", 120, 1.75)]);
        assert_eq!(v.sizes.len(), 1);
        assert!((v.sizes[0].1 - 69.97346187400241).abs() < 1e-9, "{v:?}");
        assert!((v.total - 122.45355827950422).abs() < 1e-9, "{v:?}");
    }

    #[test]
    fn nanstd_matches_numpy_on_small_cases() {
        // np.nanstd([1, 2, nan, 4], ddof=1) = 1.5275252316519468
        // sqrt(((1 - 7/3)^2 + (2 - 7/3)^2 + (4 - 7/3)^2) / 2) = sqrt(7/3)
        assert!((nanstd_ddof1(&[1.0, 2.0, f64::NAN, 4.0]) - (7.0f64 / 3.0).sqrt()).abs() < 1e-15);
        assert!(nanstd_ddof1(&[1.0, f64::NAN]).is_nan());
        assert!(nanstd_ddof1(&[f64::NAN, f64::NAN]).is_nan());
    }
}
