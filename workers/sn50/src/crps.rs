//! The validator's CRPS, bit for bit: a port of `calculate_crps_for_miner`
//! (`synth/validator/crps_calculation.py`) with properscoring's numba kernel for the
//! sorted-ensemble CRPS and numpy's pairwise summation for the per-block sums.
//!
//! Every step keeps the validator's floating-point operation order, so results are identical to
//! the last bit (checked against `shared/spec/crps-vectors.json` in the tests). See
//! `docs/sn50.md` and the spec's section 2 for the algorithm.

use super::constants::ScoringInterval;
use super::lanes::{self, change_bp, Term};

/// What the validator stores for an invalid prediction.
pub const INVALID_SCORE: f64 = -1.0;

/// Errors where the validator's Python would raise (and so score the miner -1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CrpsError {
    #[error("no simulated paths")]
    NoPaths,
    #[error("path {index} has {got} points, expected {expected} like path 0")]
    Ragged {
        index: usize,
        expected: usize,
        got: usize,
    },
    #[error("simulated paths have {sims} points but the real price path has {real}")]
    LengthMismatch { sims: usize, real: usize },
    #[error("time_increment must be positive")]
    ZeroIncrement,
    #[error("scoring interval {name} ({seconds} s) is shorter than the time increment {increment} s (slice step would be zero)")]
    ZeroStep {
        name: String,
        seconds: u64,
        increment: u64,
    },
}

/// A rectangular set of simulated paths, stored row-major (`n_paths` rows of `n_points`).
#[derive(Debug, Clone, PartialEq)]
pub struct Paths {
    data: Vec<f64>,
    n_paths: usize,
    n_points: usize,
}

impl Paths {
    /// Build from rows, which must all have the same length.
    pub fn from_rows<R: AsRef<[f64]>>(rows: &[R]) -> Result<Self, CrpsError> {
        let first = rows.first().ok_or(CrpsError::NoPaths)?.as_ref().len();
        let mut data = Vec::with_capacity(first * rows.len());
        for (index, r) in rows.iter().enumerate() {
            let r = r.as_ref();
            if r.len() != first {
                return Err(CrpsError::Ragged {
                    index,
                    expected: first,
                    got: r.len(),
                });
            }
            data.extend_from_slice(r);
        }
        Ok(Paths {
            data,
            n_paths: rows.len(),
            n_points: first,
        })
    }

    /// Build from a row-major buffer of `n_paths * n_points` values.
    pub fn from_flat(data: Vec<f64>, n_paths: usize) -> Result<Self, CrpsError> {
        if n_paths == 0 {
            return Err(CrpsError::NoPaths);
        }
        let n_points = data.len() / n_paths;
        if n_points * n_paths != data.len() {
            return Err(CrpsError::Ragged {
                index: n_paths - 1,
                expected: n_points + 1,
                got: data.len() - n_points * (n_paths - 1),
            });
        }
        Ok(Paths {
            data,
            n_paths,
            n_points,
        })
    }

    pub fn n_paths(&self) -> usize {
        self.n_paths
    }
    pub fn n_points(&self) -> usize {
        self.n_points
    }
    /// Path `i`.
    pub fn row(&self, i: usize) -> &[f64] {
        &self.data[i * self.n_points..(i + 1) * self.n_points]
    }
    /// All values, row-major.
    pub fn as_flat(&self) -> &[f64] {
        &self.data
    }
}

/// `np.sum` of a 1-D float64 array: numpy's pairwise summation (8-way unrolled leaves of at most
/// 128 elements, split at a multiple of 8 above that).
pub fn pairwise_sum(a: &[f64]) -> f64 {
    let n = a.len();
    if n < 8 {
        let mut res = -0.0;
        for &x in a {
            res += x;
        }
        res
    } else if n <= 128 {
        let mut r = [0.0f64; 8];
        r.copy_from_slice(&a[..8]);
        let end = n - n % 8;
        let mut i = 8;
        while i < end {
            for j in 0..8 {
                r[j] += a[i + j];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for &x in &a[i..] {
            res += x;
        }
        res
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        pairwise_sum(&a[..n2]) + pairwise_sum(&a[n2..])
    }
}

/// Sort ascending with NaNs last (numpy's order) and return the number of non-NaN values.
pub fn sort_nan_last(v: &mut [f64]) -> usize {
    let mut n = 0;
    for i in 0..v.len() {
        if !v[i].is_nan() {
            v.swap(n, i);
            n += 1;
        }
    }
    v[..n].sort_unstable_by(f64::total_cmp);
    n
}

/// properscoring's `_crps_ensemble_gufunc` with unit weights, on a forecast already sorted by
/// [`sort_nan_last`] (`n_valid` = the number of leading non-NaN members).
pub fn crps_sorted(obs: f64, sorted: &[f64], n_valid: usize) -> f64 {
    if obs.is_nan() {
        return f64::NAN;
    }
    // The kernel adds `weight / total_weight` each step; with unit weights that is 1/W.
    let step = 1.0 / n_valid as f64;
    let mut obs_cdf = 0.0f64;
    let mut fc_cdf = 0.0f64;
    let mut prev = 0.0f64;
    let mut integral = 0.0f64;
    for (i, &f) in sorted.iter().enumerate() {
        if f.is_nan() {
            if i == 0 {
                integral = f64::NAN;
            }
            break;
        }
        if obs_cdf == 0.0 && obs < f {
            integral += (obs - prev) * (fc_cdf * fc_cdf);
            integral += (f - obs) * ((fc_cdf - 1.0) * (fc_cdf - 1.0));
            obs_cdf = 1.0;
        } else {
            let d = fc_cdf - obs_cdf;
            integral += (f - prev) * (d * d);
        }
        fc_cdf += step;
        prev = f;
    }
    if obs_cdf == 0.0 {
        integral += obs - prev;
    }
    integral
}

/// `properscoring.crps_ensemble(obs, forecasts)` for a scalar observation (numba path).
pub fn crps_ensemble(obs: f64, forecasts: &[f64]) -> f64 {
    let mut v = forecasts.to_vec();
    let n = sort_nan_last(&mut v);
    crps_sorted(obs, &v, n)
}

/// The CRPS of one scoring interval: its name, the sum of its terms, and how many terms (observed
/// changes) it had.
#[derive(Debug, Clone, PartialEq)]
pub struct IntervalCrps {
    pub name: String,
    pub total: f64,
    pub terms: usize,
}

/// `calculate_crps_for_miner` with the per-interval totals.
#[derive(Debug, Clone, PartialEq)]
pub struct CrpsBreakdown {
    /// The total; `-1.0` for a zero simulated price, NaN when a term was NaN.
    pub total: f64,
    pub intervals: Vec<IntervalCrps>,
}

/// `int(interval_seconds / time_increment)` (true division, then truncation).
fn interval_steps(seconds: u64, increment: u64) -> usize {
    (seconds as f64 / increment as f64) as usize
}

/// Indices `0, steps, 2*steps, ... <= n-1` (numpy `[::steps]`), cut to 2 for `_gaps`.
fn strided_indices(n: usize, steps: usize, is_gap: bool) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).step_by(steps).collect();
    if is_gap {
        idx.truncate(2);
    }
    idx
}

/// Port of `calculate_crps_for_miner(simulation_runs, real_price_path, time_increment,
/// scoring_intervals)`; returns the total only. See [`calculate_crps_detailed`].
pub fn calculate_crps_for_miner(
    sims: &Paths,
    real: &[f64],
    time_increment: u64,
    intervals: &[ScoringInterval],
) -> Result<f64, CrpsError> {
    calculate_crps_detailed(sims, real, time_increment, intervals).map(|b| b.total)
}

/// Port of `calculate_crps_for_miner` with the per-interval totals. `real` holds NaN for missing
/// points. Returns the validator's value exactly: `-1.0` when any simulated price is zero, NaN
/// when some CRPS term is NaN (the reward worker turns that into -1 too, see [`miner_score`]).
///
/// The validator's loop is followed in two passes: the first walks the intervals in order (the
/// same errors, the same zero check, the same blocks of observed changes) and lists every CRPS
/// term; the terms' CRPS values are then computed four at a time ([`super::lanes`]) and summed
/// per block and interval in the validator's order.
pub fn calculate_crps_detailed(
    sims: &Paths,
    real: &[f64],
    time_increment: u64,
    intervals: &[ScoringInterval],
) -> Result<CrpsBreakdown, CrpsError> {
    crps_detailed_impl(sims, real, time_increment, intervals, false)
}

/// [`calculate_crps_for_miner`] on the scalar path only (one ensemble at a time, no lanes): the
/// reference the lane path is compared with, and the "before" of `bench crps --scalar`.
pub fn calculate_crps_scalar(
    sims: &Paths,
    real: &[f64],
    time_increment: u64,
    intervals: &[ScoringInterval],
) -> Result<f64, CrpsError> {
    crps_detailed_impl(sims, real, time_increment, intervals, true).map(|b| b.total)
}

/// An interval's share of the term list: its blocks of observed changes as ranges of terms.
struct IntervalPlan {
    name: String,
    is_abs: bool,
    blocks: Vec<std::ops::Range<usize>>,
}

fn crps_detailed_impl(
    sims: &Paths,
    real: &[f64],
    time_increment: u64,
    intervals: &[ScoringInterval],
    force_scalar: bool,
) -> Result<CrpsBreakdown, CrpsError> {
    if time_increment == 0 {
        return Err(CrpsError::ZeroIncrement);
    }
    if sims.n_paths == 0 {
        return Err(CrpsError::NoPaths);
    }
    if sims.n_points != real.len() {
        return Err(CrpsError::LengthMismatch {
            sims: sims.n_points,
            real: real.len(),
        });
    }
    let t = real.len();
    let mut terms: Vec<Term> = Vec::new();
    let mut plans: Vec<IntervalPlan> = Vec::with_capacity(intervals.len());
    let mut has_zero: Option<bool> = None;

    for iv in intervals {
        let mut steps = interval_steps(iv.seconds, time_increment);
        if steps == 0 {
            return Err(CrpsError::ZeroStep {
                name: iv.name.clone(),
                seconds: iv.seconds,
                increment: time_increment,
            });
        }
        let is_abs = iv.is_abs();
        let is_gap = iv.is_gap();
        if is_abs {
            // while len(real[::steps]) == 1 and steps > 1: steps -= 1
            while t.div_ceil(steps) == 1 && steps > 1 {
                steps -= 1;
            }
        }
        // np.any(simulation_runs == 0), checked inside the loop as the validator does (so
        // before anything is scored: the first interval reaching here decides).
        let zero = *has_zero.get_or_insert_with(|| sims.data.contains(&0.0));
        if zero {
            return Ok(CrpsBreakdown {
                total: INVALID_SCORE,
                intervals: Vec::new(),
            });
        }
        let idx = strided_indices(t, steps, is_gap);
        if idx.len() < 2 {
            // No changes: `len(data_blocks) == 0` -> continue.
            continue;
        }
        let n_changes = idx.len() - 1;
        let real_change = |j: usize| -> f64 {
            if is_abs {
                real[idx[j + 1]]
            } else {
                change_bp(real[idx[j]], real[idx[j + 1]])
            }
        };
        let mut blocks = Vec::new();
        let mut j = 0;
        while j < n_changes {
            if real_change(j).is_nan() {
                j += 1;
                continue;
            }
            // A maximal block of observed changes [j, end).
            let first = terms.len();
            while j < n_changes {
                let obs = real_change(j);
                if obs.is_nan() {
                    break;
                }
                terms.push(Term {
                    a: idx[j],
                    b: idx[j + 1],
                    abs: is_abs,
                    obs,
                });
                j += 1;
            }
            blocks.push(first..terms.len());
        }
        plans.push(IntervalPlan {
            name: iv.name.clone(),
            is_abs,
            blocks,
        });
    }

    let mut values = lanes::term_values(sims, &terms, force_scalar);
    let last_real = real[t - 1];
    let mut sum_all = 0.0f64;
    let mut out = Vec::with_capacity(plans.len());
    for plan in plans {
        let mut interval_sum = 0.0f64;
        let mut n_terms = 0;
        for block in plan.blocks {
            let block_values = &mut values[block.clone()];
            if plan.is_abs {
                for v in block_values.iter_mut() {
                    *v = *v / last_real * 10_000.0;
                }
            }
            interval_sum += pairwise_sum(block_values);
            n_terms += block.len();
        }
        sum_all += interval_sum;
        out.push(IntervalCrps {
            name: plan.name,
            total: interval_sum,
            terms: n_terms,
        });
    }
    Ok(CrpsBreakdown {
        total: sum_all,
        intervals: out,
    })
}

/// The score the reward worker stores: the CRPS total, or -1 when the validator would (zero
/// price, NaN total, or an exception inside the calculation).
pub fn miner_score(
    sims: &Paths,
    real: &[f64],
    time_increment: u64,
    intervals: &[ScoringInterval],
) -> f64 {
    match calculate_crps_for_miner(sims, real, time_increment, intervals) {
        Ok(v) if v.is_nan() => INVALID_SCORE,
        Ok(v) => v,
        Err(_) => INVALID_SCORE,
    }
}

/// [`miner_score`] of many miners' responses to one prompt, on `threads` threads (`0` = every
/// available core). Responses are handed out one at a time, so uneven costs balance; the scores
/// come back in input order and are identical to scoring each response alone.
pub fn miner_scores_parallel(
    responses: &[Paths],
    real: &[f64],
    time_increment: u64,
    intervals: &[ScoringInterval],
    threads: usize,
) -> Vec<f64> {
    let threads = match threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        t => t,
    }
    .min(responses.len().max(1));
    if threads <= 1 {
        return responses
            .iter()
            .map(|p| miner_score(p, real, time_increment, intervals))
            .collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut out = vec![0.0f64; responses.len()];
    let parts: Vec<Vec<(usize, f64)>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(p) = responses.get(i) else { break };
                        mine.push((i, miner_score(p, real, time_increment, intervals)));
                    }
                    mine
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("a scoring thread panicked"))
            .collect()
    });
    for (i, v) in parts.into_iter().flatten() {
        out[i] = v;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::constants::{intervals_from, HIGH_SCORING_INTERVALS, LOW_SCORING_INTERVALS};

    fn low() -> Vec<ScoringInterval> {
        intervals_from(&LOW_SCORING_INTERVALS)
    }

    fn score(paths: &[Vec<f64>], real: &[f64], inc: u64) -> f64 {
        calculate_crps_for_miner(&Paths::from_rows(paths).unwrap(), real, inc, &low()).unwrap()
    }

    // The synth-subnet repository's tests/test_calculate_crps.py values.
    #[test]
    fn seed_repo_vector_two_identical_paths() {
        let p = vec![vec![90000.0, 91000.0, 92000.0]; 2];
        assert_eq!(
            score(&p, &[92600.0, 92500.0, 93500.0], 300),
            284.1200564488584
        );
    }

    #[test]
    fn seed_repo_vector_five_points() {
        let p = vec![vec![90000.0, 91000.0, 92000.0, 92500.0, 92600.0]];
        let r = [92600.0, 92500.0, 92600.0, 92500.0, 93500.0];
        assert_eq!(score(&p, &r, 300), 479.6904902048716);
    }

    #[test]
    fn seed_repo_vector_same_real() {
        let p = vec![vec![50000.0, 51000.0, 52000.0]];
        assert_eq!(
            score(&p, &[92600.0, 92500.0, 93500.0], 300),
            4737.272133130346
        );
    }

    #[test]
    fn seed_repo_vector_three_paths() {
        let p = vec![
            vec![50000.0, 51000.0, 52000.0],
            vec![10000.0, 70000.0, 50000.0],
            vec![90000.0, 70000.0, 50000.0],
        ];
        let r = [105165.69445825, 105016.21888945, 105066.94377502];
        assert_eq!(score(&p, &r, 300), 13413.599141058676);
    }

    #[test]
    fn seed_repo_vectors_with_missing_real_points() {
        let nan = f64::NAN;
        let r = [50.0, 60.0, nan, 80.0, 90.0, nan, nan, 120.0, 130.0];
        let p = vec![vec![
            55.0, 64.0, 70.0, 82.5, 89.2, 100.0, 110.0, 123.5, 131.2,
        ]];
        assert_eq!(score(&p, &r, 300), 1103.6743957796587);
        let p = vec![vec![
            55.0, 64.0, 70.0, 82.5, 89.2, 100.0, 110.0, 123.0, 131.0,
        ]];
        assert_eq!(score(&p, &r, 300), 1061.3650577065207);
    }

    #[test]
    fn zero_price_is_invalid_and_nan_propagates() {
        let p = vec![vec![90000.0, 0.0, 92000.0], vec![90000.0, 91000.0, 92000.0]];
        assert_eq!(score(&p, &[92600.0, 92500.0, 93500.0], 300), -1.0);
        let p = vec![vec![-0.0, 91000.0, 92000.0]];
        assert_eq!(score(&p, &[92600.0, 92500.0, 93500.0], 300), -1.0);
        let p = vec![vec![90000.0, f64::NAN, 92000.0]];
        let v = score(&p, &[92600.0, 92500.0, 93500.0], 300);
        assert!(v.is_nan());
        let sims = Paths::from_rows(&p).unwrap();
        assert_eq!(
            miner_score(&sims, &[92600.0, 92500.0, 93500.0], 300, &low()),
            -1.0
        );
    }

    #[test]
    fn structural_errors_are_reported() {
        assert_eq!(
            Paths::from_rows(&[vec![1.0, 2.0], vec![1.0]]).unwrap_err(),
            CrpsError::Ragged {
                index: 1,
                expected: 2,
                got: 1
            }
        );
        assert_eq!(
            Paths::from_rows::<Vec<f64>>(&[]).unwrap_err(),
            CrpsError::NoPaths
        );
        let sims = Paths::from_rows(&[vec![1.0, 2.0, 3.0]]).unwrap();
        assert!(matches!(
            calculate_crps_for_miner(&sims, &[1.0, 2.0], 300, &low()),
            Err(CrpsError::LengthMismatch { .. })
        ));
        // 1-minute intervals on a 5-minute grid: numpy would fail on a zero slice step.
        let high = intervals_from(&HIGH_SCORING_INTERVALS);
        assert!(matches!(
            calculate_crps_for_miner(&sims, &[1.0, 2.0, 3.0], 300, &high),
            Err(CrpsError::ZeroStep { .. })
        ));
        assert_eq!(miner_score(&sims, &[1.0, 2.0, 3.0], 300, &high), -1.0);
    }

    #[test]
    fn no_intervals_or_no_observations_give_zero() {
        let sims = Paths::from_rows(&[vec![1.0, 0.0, 3.0]]).unwrap();
        // The zero check sits inside the interval loop: no intervals, no check.
        assert_eq!(
            calculate_crps_for_miner(&sims, &[1.0, 2.0, 3.0], 300, &[]).unwrap(),
            0.0
        );
        let sims = Paths::from_rows(&[vec![1.0, 2.0, 3.0]]).unwrap();
        let nan = f64::NAN;
        let b = calculate_crps_detailed(&sims, &[nan, nan, 3.0], 300, &low()).unwrap();
        assert_eq!(b.intervals[0].terms, 0);
        assert_eq!(b.intervals[0].total, 0.0);
        // Only the _abs interval has an observation (the last price).
        assert_eq!(b.intervals.last().unwrap().terms, 1);
        assert_eq!(b.total, b.intervals.last().unwrap().total);
    }

    #[test]
    fn pairwise_sum_matches_numpy_structure() {
        // Small: sequential from -0.0.
        assert_eq!(pairwise_sum(&[]).to_bits(), (-0.0f64).to_bits());
        assert_eq!(pairwise_sum(&[1.0, 2.0]), 3.0);
        // 8..=128: eight accumulators; with values where order matters, compare to the formula.
        let a: Vec<f64> = (0..20).map(|i| 1.0 / (i as f64 + 3.0)).collect();
        let mut r = [0.0; 8];
        r.copy_from_slice(&a[..8]);
        for j in 0..8 {
            r[j] += a[8 + j];
        }
        let mut expect = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for x in &a[16..] {
            expect += x;
        }
        assert_eq!(pairwise_sum(&a), expect);
        // > 128 splits at n/2 rounded down to a multiple of 8.
        let a: Vec<f64> = (0..300).map(|i| (i as f64 * 0.7).sin() * 1e3).collect();
        assert_eq!(
            pairwise_sum(&a),
            pairwise_sum(&a[..144]) + pairwise_sum(&a[144..])
        );
        // Differs from a naive sum on this input (so the structure is really tested elsewhere).
        let naive: f64 = a.iter().sum();
        assert!((pairwise_sum(&a) - naive).abs() < 1e-9);
    }

    #[test]
    fn crps_of_point_forecast_is_absolute_error() {
        assert_eq!(crps_ensemble(3.0, &[5.0]), 2.0);
        assert_eq!(crps_ensemble(7.0, &[5.0]), 2.0);
        assert!(crps_ensemble(f64::NAN, &[5.0]).is_nan());
        assert!(crps_ensemble(1.0, &[f64::NAN, 2.0]).is_finite());
        assert!(crps_ensemble(1.0, &[f64::NAN]).is_nan());
        // Two members {0, 2}, obs 1: E|X-y| = 1, E|X-X'|/2 = 0.5.
        assert_eq!(crps_ensemble(1.0, &[2.0, 0.0]), 0.5);
    }

    mod properties {
        use super::super::*;
        use crate::constants::{intervals_from, HIGH_SCORING_INTERVALS};
        use proptest::prelude::*;

        /// `E|X-y| - E|X-X'|/2` by brute force.
        fn energy_form(obs: f64, fc: &[f64]) -> (f64, f64) {
            let m = fc.len() as f64;
            let e1 = fc.iter().map(|x| (x - obs).abs()).sum::<f64>() / m;
            let mut e2 = 0.0;
            for a in fc {
                for b in fc {
                    e2 += (a - b).abs();
                }
            }
            (e1 - 0.5 * e2 / (m * m), e1)
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(300))]

            #[test]
            fn crps_is_non_negative(obs in -1e4f64..1e4, fc in prop::collection::vec(-1e4f64..1e4, 1..300)) {
                prop_assert!(crps_ensemble(obs, &fc) >= 0.0);
            }

            #[test]
            fn crps_equals_the_energy_form(obs in -1e3f64..1e3, fc in prop::collection::vec(-1e3f64..1e3, 1..200)) {
                let got = crps_ensemble(obs, &fc);
                let (expected, e1) = energy_form(obs, &fc);
                let scale = expected.abs().max(1e-12 * e1).max(f64::MIN_POSITIVE);
                prop_assert!((got - expected).abs() <= 1e-9 * scale,
                    "got {got}, expected {expected}");
            }

            #[test]
            fn crps_ignores_member_order(obs in -10f64..10.0, mut fc in prop::collection::vec(-10f64..10.0, 1..50)) {
                let a = crps_ensemble(obs, &fc);
                fc.reverse();
                prop_assert_eq!(a.to_bits(), crps_ensemble(obs, &fc).to_bits());
            }

            #[test]
            fn pairwise_sum_is_exact_on_integers(v in prop::collection::vec(-1000i32..1000, 0..700)) {
                let xs: Vec<f64> = v.iter().map(|&x| x as f64).collect();
                let exact: i64 = v.iter().map(|&x| x as i64).sum();
                prop_assert_eq!(pairwise_sum(&xs), exact as f64);
            }

            #[test]
            fn miner_crps_is_non_negative(seed in 0u64..1000, n_paths in 1usize..20) {
                // Positive random-walk paths on the 1 h grid, scored with every HIGH interval.
                let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let mut next = || { x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407); ((x >> 11) as f64 / (1u64 << 53) as f64) - 0.5 };
                let mut rows = Vec::new();
                for _ in 0..=n_paths {
                    let mut p = vec![100.0];
                    for _ in 0..60 { let last = *p.last().unwrap(); p.push(last * (1.0 + 0.01 * next())); }
                    rows.push(p);
                }
                let real = rows.pop().unwrap();
                let sims = Paths::from_rows(&rows).unwrap();
                let v = calculate_crps_for_miner(&sims, &real, 60, &intervals_from(&HIGH_SCORING_INTERVALS)).unwrap();
                prop_assert!(v >= 0.0 && v.is_finite());
            }
        }
    }
}
