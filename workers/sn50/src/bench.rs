//! The CRPS speed benchmark behind `synth-city bench crps`: full-size prompts (1000 paths x 289
//! points for the 24 h prompt, 1000 x 61 for the 1 h prompt) scored one prompt at a time on one
//! thread, and a batch mode that scores many miners' responses to one prompt on all cores.
//!
//! The 24 h cases are the full-size cases of `shared/spec/crps-vectors.json` (the validator's own
//! answers); the 1 h case is built from real 1-minute bars with the reference GBM (1000 paths,
//! rounded as a response carries them). Every timed result is compared bit for bit with the
//! expected value, so a faster scorer that drifts by one ulp fails the benchmark.
//!
//! The Crypto 1 h prompts are also timed on their whole score, price CRPS plus the volatility
//! term ([`TotalCase`], [`time_total_case`]), through the scorer the reward path uses
//! ([`miner_total_score`] with [`Competition::crypto_1h`]), next to the price part alone on the
//! same prompt. Those cases are the full-size Crypto 1h cases of
//! `shared/spec/crps-vectors-v2.json` (the validator's own totals) and GBM windows on real bars
//! whose expected values come from the scalar price path plus the volatility term, computed apart
//! from the timed path.
//!
//! [`write_cases`] saves every case in the crps-vectors format (`/2`, with the volatility blocks
//! and the price, volatility and total values) for the Python peer
//! (`ops/bench/crps_python.py`), which times the validator's path on exactly the same inputs.
//! Nothing here decides what is fast enough or records figures (`docs/benchmarks.md` does).

use std::path::Path;
use std::time::Instant;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use serde_json::json;

use super::backtest::{as_sent, candidate_starts};
use super::competition::Competition;
use super::constants::{intervals_from, ScoringInterval, Sn50Config, HIGH_SCORING_INTERVALS};
use super::crps::{
    calculate_crps_for_miner, calculate_crps_scalar, miner_score, miner_scores_parallel, Paths,
};
use super::data::{asset_file, Bars, DataError};
use super::forecast::{ForecastError, ForecastRequest, Forecaster, Gbm};
use super::vectors::VectorFile;
use super::vol::{calculate_vol_crps_for_miner, miner_total_score};

/// Errors preparing or running the benchmark.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("the vectors file has no full-size case (1000 paths)")]
    NoFullSizeCase,
    #[error("vectors case {index}: {message}")]
    Case { index: usize, message: String },
    #[error("cannot build the 1 h case: {0}")]
    Data(#[from] DataError),
    #[error("cannot build the 1 h case: no usable 1 h window in {0}")]
    NoWindow(String),
    #[error("cannot build the 1 h case: {0}")]
    Forecast(#[from] ForecastError),
    #[error("{case}: got {got:e} ({got_bits:#x}) but expected {expected:e} ({expected_bits:#x}): not bit-exact")]
    NotExact {
        case: String,
        got: f64,
        got_bits: u64,
        expected: f64,
        expected_bits: u64,
    },
    #[error("cannot write the cases to {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// One full-size prompt to score.
#[derive(Debug, Clone)]
pub struct BenchCase {
    /// e.g. `low ETH (vectors case 40)`.
    pub name: String,
    pub prompt: String,
    pub asset: String,
    pub time_increment: u64,
    pub time_length: u64,
    pub intervals: Vec<ScoringInterval>,
    pub real: Vec<f64>,
    pub paths: Paths,
    /// The validator's value (vectors file) or this scorer's (a generated case, which the Python
    /// peer then checks).
    pub expected: f64,
    /// Number of CRPS terms (sorts of `n_paths` values) in one prompt.
    pub terms: usize,
}

/// Number of CRPS terms of a prompt (one ensemble sort each).
fn count_terms(case_real: &[f64], paths: &Paths, inc: u64, iv: &[ScoringInterval]) -> usize {
    super::crps::calculate_crps_detailed(paths, case_real, inc, iv)
        .map(|b| b.intervals.iter().map(|i| i.terms).sum())
        .unwrap_or(0)
}

/// The full-size (1000-path) cases of a vectors file.
pub fn cases_from_vectors(file: &VectorFile) -> Result<Vec<BenchCase>, BenchError> {
    let mut out = Vec::new();
    for (index, c) in file.cases.iter().enumerate() {
        if c.paths.len() != super::constants::NUM_SIMULATIONS {
            continue;
        }
        let paths = c.sim_paths().map_err(|e| BenchError::Case {
            index,
            message: e.to_string(),
        })?;
        let expected = c.expected.ok_or_else(|| BenchError::Case {
            index,
            message: "no expected value".into(),
        })?;
        let real = c.real_prices();
        let intervals = c.scoring_intervals();
        let prompt = c.prompt.clone().unwrap_or_else(|| "?".into());
        let asset = c.asset.clone().unwrap_or_else(|| "?".into());
        out.push(BenchCase {
            name: format!("{prompt} {asset} (vectors case {index})"),
            terms: count_terms(&real, &paths, c.time_increment, &intervals),
            time_length: c
                .time_length
                .unwrap_or(c.time_increment * (real.len() as u64 - 1)),
            prompt,
            asset,
            time_increment: c.time_increment,
            intervals,
            real,
            paths,
            expected,
        });
    }
    if out.is_empty() {
        return Err(BenchError::NoFullSizeCase);
    }
    Ok(out)
}

/// A full-size 1 h case: the reference GBM's 1000 paths (rounded as sent) against the realised
/// 1-minute grid of `asset` in `data_dir`, at the window picked by `seed`.
pub fn high_case_from_data(
    data_dir: &Path,
    asset: &str,
    seed: u64,
) -> Result<BenchCase, BenchError> {
    let path = asset_file(data_dir, asset, jobs::Timeframe::OneMinute)?;
    let bars = Bars::load(&path)?;
    let cands = candidate_starts(&bars, 3600, 60);
    if cands.is_empty() {
        return Err(BenchError::NoWindow(path.display().to_string()));
    }
    let start = cands[(seed as usize).wrapping_mul(7919) % cands.len()];
    let real = bars.price_grid(start, 3600, 60)?;
    let spot = bars
        .close_at(start - 120)
        .or_else(|| real.first().copied().filter(|p| p.is_finite()))
        .ok_or_else(|| BenchError::NoWindow(path.display().to_string()))?;
    let req = ForecastRequest {
        asset: asset.to_string(),
        start_time: start,
        time_increment: 60,
        time_length: 3600,
        num_simulations: super::constants::NUM_SIMULATIONS,
        spot,
        history: None,
        as_of: start - 60,
    };
    let gbm = Gbm::new(Sn50Config::default());
    let paths = as_sent(&gbm.forecast(&req, &mut ChaCha8Rng::seed_from_u64(seed))?);
    let intervals = intervals_from(&HIGH_SCORING_INTERVALS);
    let expected = miner_score(&paths, &real, 60, &intervals);
    Ok(BenchCase {
        name: format!(
            "high {asset} (GBM on {} at {start})",
            path.file_name().unwrap_or_default().to_string_lossy()
        ),
        prompt: "high".into(),
        asset: asset.to_string(),
        time_increment: 60,
        time_length: 3600,
        terms: count_terms(&real, &paths, 60, &intervals),
        intervals,
        real,
        paths,
        expected,
    })
}

/// A Crypto 1 h prompt timed on its whole score: the price CRPS alone and price plus the
/// volatility term, on the same paths.
#[derive(Debug, Clone)]
pub struct TotalCase {
    /// The prompt; its `expected` is the price CRPS.
    pub case: BenchCase,
    /// The competition that scores it (its intervals are the case's).
    pub competition: Competition,
    /// The volatility term: the weighted sum over block sizes.
    pub expected_vol: f64,
    /// `price + vol`, what [`miner_total_score`] must return.
    pub expected_total: f64,
    /// Where the expected values come from: `validator` (a vectors file) or `rust scalar` (the
    /// scalar price path plus [`calculate_vol_crps_for_miner`], apart from the timed path).
    pub expected_from: String,
}

/// The full-size (1000-path) cases of a `/2` vectors file that carry volatility blocks, with the
/// validator's price, volatility and total values. Each must be scored as [`Competition::crypto_1h`]
/// scores it (same increment, intervals and blocks), since that is what is timed.
pub fn total_cases_from_vectors(file: &VectorFile) -> Result<Vec<TotalCase>, BenchError> {
    let competition = Competition::crypto_1h();
    let mut out = Vec::new();
    for (index, c) in file.cases.iter().enumerate() {
        if c.paths.len() != super::constants::NUM_SIMULATIONS || c.vol_blocks.is_empty() {
            continue;
        }
        let err = |message: &str| BenchError::Case {
            index,
            message: message.to_string(),
        };
        if c.time_increment != competition.time_increment
            || c.scoring_intervals() != competition.scoring_intervals
            || c.volatility_blocks() != competition.vol_blocks
        {
            return Err(err("not scored as the Crypto 1h competition scores it"));
        }
        let (Some(price), Some(vol), Some(total)) = (c.price_crps, c.vol_crps, c.total) else {
            return Err(err("no price_crps, vol_crps or total"));
        };
        let paths = c.sim_paths().map_err(|e| err(&e.to_string()))?;
        let real = c.real_prices();
        let asset = c.asset.clone().unwrap_or_else(|| "?".into());
        out.push(TotalCase {
            case: BenchCase {
                name: format!("high {asset} (vectors-v2 case {index})"),
                prompt: c.prompt.clone().unwrap_or_else(|| "high".into()),
                asset,
                time_increment: c.time_increment,
                time_length: c.time_length.unwrap_or(competition.time_length),
                terms: count_terms(
                    &real,
                    &paths,
                    c.time_increment,
                    &competition.scoring_intervals,
                ),
                intervals: competition.scoring_intervals.clone(),
                real,
                paths,
                expected: price,
            },
            competition: competition.clone(),
            expected_vol: vol,
            expected_total: total,
            expected_from: "validator".into(),
        });
    }
    Ok(out)
}

/// A Crypto 1 h total-score case from real bars: [`high_case_from_data`]'s prompt, with the
/// expected price from the scalar path (which must equal the lane path's) and the volatility
/// term from [`calculate_vol_crps_for_miner`].
pub fn total_case_from_data(
    data_dir: &Path,
    asset: &str,
    seed: u64,
) -> Result<TotalCase, BenchError> {
    let competition = Competition::crypto_1h();
    let case = high_case_from_data(data_dir, asset, seed)?;
    let scalar = calculate_crps_scalar(
        &case.paths,
        &case.real,
        competition.time_increment,
        &competition.scoring_intervals,
    )
    .unwrap_or(f64::NAN);
    check_exact(
        &format!("{} (lane vs scalar)", case.name),
        case.expected,
        scalar,
    )?;
    let vol = calculate_vol_crps_for_miner(
        &case.paths,
        &case.real,
        competition.time_increment,
        &competition.vol_blocks,
    )
    .total;
    Ok(TotalCase {
        expected_total: scalar + vol,
        expected_vol: vol,
        case,
        competition,
        expected_from: "rust scalar".into(),
    })
}

/// `windows` Crypto 1 h total-score cases from the 1-minute bars in `data_dir`: window `i` is on
/// the `i mod n`-th Crypto 1h asset that has 1-minute bars there, with seed `seed + 1 + i` (so
/// none repeats the price-only 1 h case of `seed`).
pub fn total_cases_from_data(
    data_dir: &Path,
    windows: usize,
    seed: u64,
) -> Result<Vec<TotalCase>, BenchError> {
    if windows == 0 {
        return Ok(Vec::new());
    }
    let assets: Vec<String> = Competition::crypto_1h()
        .assets
        .into_iter()
        .filter(|a| asset_file(data_dir, a, jobs::Timeframe::OneMinute).is_ok())
        .collect();
    if assets.is_empty() {
        return Err(BenchError::NoWindow(format!(
            "{} (no 1-minute bars of a Crypto 1h asset)",
            data_dir.display()
        )));
    }
    (0..windows)
        .map(|i| {
            total_case_from_data(
                data_dir,
                &assets[i % assets.len()],
                seed.wrapping_add(1 + i as u64),
            )
        })
        .collect()
}

/// Distinct responses [`batch_responses`] builds; further ones repeat them (scoring caches
/// nothing, so a repeat costs as much as a new response, and rounding 1000 x 289 prices the way
/// Python does is slower than scoring them).
pub const DISTINCT_BATCH_RESPONSES: usize = 16;

/// `n` miners' responses to the prompt of `case`: GBM paths from the case's first price with
/// sigmas from 0.5x to 2x the asset's, rounded as sent; [`DISTINCT_BATCH_RESPONSES`] distinct
/// ones, repeated up to `n`.
pub fn batch_responses(case: &BenchCase, n: usize, seed: u64) -> Result<Vec<Paths>, BenchError> {
    let base = Gbm::new(Sn50Config::default());
    let sigma = base.sigma(&case.asset);
    let spot = case.paths.row(0)[0];
    let distinct = n.min(DISTINCT_BATCH_RESPONSES);
    let mut out = Vec::with_capacity(n);
    for i in 0..distinct {
        let mut gbm = base.clone();
        gbm.sigma_override = Some(sigma * (0.5 + 1.5 * i as f64 / distinct.max(1) as f64));
        let req = ForecastRequest {
            asset: case.asset.clone(),
            start_time: 0,
            time_increment: case.time_increment,
            time_length: case.time_length,
            num_simulations: case.paths.n_paths(),
            spot,
            history: None,
            as_of: 0,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_add(i as u64));
        out.push(as_sent(&gbm.forecast(&req, &mut rng)?));
    }
    for i in distinct..n {
        out.push(out[i % distinct].clone());
    }
    Ok(out)
}

/// Timings of one case, per prompt, single thread.
#[derive(Debug, Clone, Serialize)]
pub struct CaseTiming {
    pub name: String,
    pub paths: usize,
    pub points: usize,
    pub terms: usize,
    pub iterations: usize,
    pub mean_ms: f64,
    pub median_ms: f64,
    pub min_ms: f64,
    pub crps: f64,
    pub bit_exact: bool,
}

fn check_exact(name: &str, got: f64, expected: f64) -> Result<(), BenchError> {
    if got.to_bits() == expected.to_bits() {
        Ok(())
    } else {
        Err(BenchError::NotExact {
            case: name.to_string(),
            got,
            got_bits: got.to_bits(),
            expected,
            expected_bits: expected.to_bits(),
        })
    }
}

/// Score `case` `iterations` times on this thread (after one warm-up), checking every result.
/// `scalar` times the scalar path ([`calculate_crps_scalar`]) instead of the lane path.
pub fn time_case(
    case: &BenchCase,
    iterations: usize,
    scalar: bool,
) -> Result<CaseTiming, BenchError> {
    let score = || {
        let f = if scalar {
            calculate_crps_scalar
        } else {
            calculate_crps_for_miner
        };
        f(
            &case.paths,
            &case.real,
            case.time_increment,
            &case.intervals,
        )
        .unwrap_or(f64::NAN)
    };
    check_exact(&case.name, score(), case.expected)?;
    let iterations = iterations.max(1);
    let mut ms = Vec::with_capacity(iterations);
    let mut last = 0.0;
    for _ in 0..iterations {
        let t = Instant::now();
        last = std::hint::black_box(score());
        ms.push(t.elapsed().as_secs_f64() * 1e3);
        check_exact(&case.name, last, case.expected)?;
    }
    ms.sort_by(f64::total_cmp);
    Ok(CaseTiming {
        name: case.name.clone(),
        paths: case.paths.n_paths(),
        points: case.paths.n_points(),
        terms: case.terms,
        iterations,
        mean_ms: ms.iter().sum::<f64>() / iterations as f64,
        median_ms: ms[iterations / 2],
        min_ms: ms[0],
        crps: last,
        bit_exact: true,
    })
}

/// Mean, median and minimum of one prompt's timed runs, milliseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct TimeStats {
    pub mean_ms: f64,
    pub median_ms: f64,
    pub min_ms: f64,
}

impl TimeStats {
    fn of(mut ms: Vec<f64>) -> Self {
        ms.sort_by(f64::total_cmp);
        TimeStats {
            mean_ms: ms.iter().sum::<f64>() / ms.len().max(1) as f64,
            median_ms: ms.get(ms.len() / 2).copied().unwrap_or(f64::NAN),
            min_ms: ms.first().copied().unwrap_or(f64::NAN),
        }
    }
}

/// Timings of one Crypto 1 h prompt, per prompt, single thread: the price part and the total.
#[derive(Debug, Clone, Serialize)]
pub struct TotalTiming {
    pub name: String,
    pub asset: String,
    pub paths: usize,
    pub points: usize,
    pub iterations: usize,
    /// `calculate_crps_for_miner` alone.
    pub price_ms: TimeStats,
    /// `miner_total_score` with the Crypto 1h competition: price plus volatility.
    pub total_ms: TimeStats,
    pub price_crps: f64,
    pub vol_crps: f64,
    pub total_score: f64,
    /// `validator` or `rust scalar`.
    pub expected_from: String,
    pub bit_exact: bool,
}

/// Score `tc` `iterations` times on this thread (after one warm-up), alternating the price part
/// ([`calculate_crps_for_miner`]) and the total ([`miner_total_score`] with the case's
/// competition), checking every result bit for bit.
pub fn time_total_case(tc: &TotalCase, iterations: usize) -> Result<TotalTiming, BenchError> {
    let c = &tc.case;
    let price = || {
        calculate_crps_for_miner(&c.paths, &c.real, c.time_increment, &c.intervals)
            .unwrap_or(f64::NAN)
    };
    let total = || miner_total_score(&c.paths, &c.real, &tc.competition);
    let price_name = format!("{} price", c.name);
    let total_name = format!("{} total", c.name);
    check_exact(&price_name, price(), c.expected)?;
    check_exact(&total_name, total(), tc.expected_total)?;
    let iterations = iterations.max(1);
    let (mut price_ms, mut total_ms) = (
        Vec::with_capacity(iterations),
        Vec::with_capacity(iterations),
    );
    for _ in 0..iterations {
        let t = Instant::now();
        let p = std::hint::black_box(price());
        price_ms.push(t.elapsed().as_secs_f64() * 1e3);
        check_exact(&price_name, p, c.expected)?;
        let t = Instant::now();
        let s = std::hint::black_box(total());
        total_ms.push(t.elapsed().as_secs_f64() * 1e3);
        check_exact(&total_name, s, tc.expected_total)?;
    }
    Ok(TotalTiming {
        name: c.name.clone(),
        asset: c.asset.clone(),
        paths: c.paths.n_paths(),
        points: c.paths.n_points(),
        iterations,
        price_ms: TimeStats::of(price_ms),
        total_ms: TimeStats::of(total_ms),
        price_crps: c.expected,
        vol_crps: tc.expected_vol,
        total_score: tc.expected_total,
        expected_from: tc.expected_from.clone(),
        bit_exact: true,
    })
}

/// The 1 h total-score figures over all prompts: the median over prompts of each prompt's
/// median time.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct TotalSummary {
    pub prompts: usize,
    pub price_median_ms: f64,
    pub total_median_ms: f64,
    /// `total / price` of those medians: what the volatility term adds.
    pub total_over_price: f64,
}

/// [`TotalSummary`] of some timings (`None` for none).
pub fn summarize_totals(timings: &[TotalTiming]) -> Option<TotalSummary> {
    if timings.is_empty() {
        return None;
    }
    let median = |f: &dyn Fn(&TotalTiming) -> f64| {
        let mut v: Vec<f64> = timings.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        }
    };
    let price = median(&|t| t.price_ms.median_ms);
    let total = median(&|t| t.total_ms.median_ms);
    Some(TotalSummary {
        prompts: timings.len(),
        price_median_ms: price,
        total_median_ms: total,
        total_over_price: total / price,
    })
}

/// Batch-mode throughput on one prompt.
#[derive(Debug, Clone, Serialize)]
pub struct BatchTiming {
    pub name: String,
    pub responses: usize,
    pub threads: usize,
    pub rounds: usize,
    /// Best round, seconds.
    pub best_seconds: f64,
    /// Responses scored per second (best round).
    pub prompts_per_second: f64,
    /// The same responses scored one after another on one thread.
    pub single_thread_prompts_per_second: f64,
    pub bit_exact: bool,
}

/// Score `responses` to `case`'s prompt with [`miner_scores_parallel`] on `threads` threads,
/// `rounds` times, and once sequentially; every parallel score must equal the sequential one.
pub fn time_batch(
    case: &BenchCase,
    responses: &[Paths],
    threads: usize,
    rounds: usize,
) -> Result<BatchTiming, BenchError> {
    let threads = match threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        t => t,
    };
    let seq_start = Instant::now();
    let sequential: Vec<f64> = responses
        .iter()
        .map(|p| miner_score(p, &case.real, case.time_increment, &case.intervals))
        .collect();
    let seq_seconds = seq_start.elapsed().as_secs_f64();
    let mut best = f64::INFINITY;
    for _ in 0..rounds.max(1) {
        let t = Instant::now();
        let got = miner_scores_parallel(
            responses,
            &case.real,
            case.time_increment,
            &case.intervals,
            threads,
        );
        best = best.min(t.elapsed().as_secs_f64());
        for (i, (g, s)) in got.iter().zip(&sequential).enumerate() {
            check_exact(&format!("{} batch response {i}", case.name), *g, *s)?;
        }
    }
    Ok(BatchTiming {
        name: case.name.clone(),
        responses: responses.len(),
        threads,
        rounds: rounds.max(1),
        best_seconds: best,
        prompts_per_second: responses.len() as f64 / best,
        single_thread_prompts_per_second: responses.len() as f64 / seq_seconds,
        bit_exact: true,
    })
}

/// Save cases in the `sn50-crps-vectors/2` format (paths and real as they are scored, null for
/// NaN): the price-only `cases` with their expected price CRPS, then the `totals` with their
/// competition, volatility blocks `[[name, seconds, weight]]`, `price_crps`, `vol_crps`, `total`,
/// `worker_score` and `expected` (= total), and where those values come from.
pub fn write_cases(
    path: &Path,
    cases: &[BenchCase],
    totals: &[TotalCase],
) -> Result<(), BenchError> {
    let num = |x: f64| {
        if x.is_nan() {
            serde_json::Value::Null
        } else {
            json!(x)
        }
    };
    let base = |c: &BenchCase| {
        let paths: Vec<Vec<serde_json::Value>> = (0..c.paths.n_paths())
            .map(|i| c.paths.row(i).iter().map(|&x| num(x)).collect())
            .collect();
        json!({
            "name": c.name,
            "prompt": c.prompt,
            "asset": c.asset,
            "time_increment": c.time_increment,
            "time_length": c.time_length,
            "intervals": c.intervals.iter().map(|i| json!([i.name, i.seconds])).collect::<Vec<_>>(),
            "real": c.real.iter().map(|&x| num(x)).collect::<Vec<_>>(),
            "paths": paths,
            "expected": c.expected,
        })
    };
    let mut out: Vec<serde_json::Value> = cases.iter().map(base).collect();
    for t in totals {
        let mut v = base(&t.case);
        let o = v.as_object_mut().expect("a case is an object");
        o.insert("competition".into(), json!(t.competition.label));
        o.insert(
            "vol_blocks".into(),
            json!(t
                .competition
                .vol_blocks
                .iter()
                .map(|b| json!([b.name, b.seconds, b.weight]))
                .collect::<Vec<_>>()),
        );
        o.insert("price_crps".into(), json!(t.case.expected));
        o.insert("vol_crps".into(), json!(t.expected_vol));
        o.insert("total".into(), json!(t.expected_total));
        o.insert("worker_score".into(), json!(t.expected_total));
        o.insert("expected".into(), json!(t.expected_total));
        o.insert("expected_from".into(), json!(t.expected_from));
        out.push(v);
    }
    let text = json!({"format": super::vectors::FORMAT_V2, "cases": out}).to_string();
    std::fs::write(path, text).map_err(|source| BenchError::Write {
        path: path.display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vectors::load_vectors;
    use std::path::PathBuf;

    fn shared(rel: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared")
            .join(rel)
    }

    #[test]
    fn full_size_cases_time_bit_exactly_and_a_wrong_expectation_fails() {
        let p = shared("spec/crps-vectors.json");
        if !p.is_file() {
            return;
        }
        let cases = cases_from_vectors(&load_vectors(&p).unwrap()).unwrap();
        assert_eq!(cases.len(), 2);
        assert!(cases
            .iter()
            .all(|c| c.paths.n_paths() == 1000 && c.terms == 345));
        let t = time_case(&cases[0], 1, false).unwrap();
        assert!(time_case(&cases[0], 1, true).unwrap().bit_exact);
        assert!(t.bit_exact && t.min_ms > 0.0);
        let mut bad = cases[0].clone();
        bad.expected = f64::from_bits(bad.expected.to_bits() + 1);
        assert!(matches!(
            time_case(&bad, 1, false),
            Err(BenchError::NotExact { .. })
        ));
        // Batch: parallel scores equal sequential ones.
        let responses = batch_responses(&cases[0], 6, 1).unwrap();
        assert_eq!(responses.len(), 6);
        assert_ne!(responses[0], responses[1]);
        let b = time_batch(&cases[0], &responses, 2, 1).unwrap();
        assert!(b.bit_exact && b.prompts_per_second > 0.0);
    }

    #[test]
    fn high_case_is_full_size_with_121_terms() {
        let dir = shared("data");
        if !dir.is_dir() {
            return;
        }
        let c = high_case_from_data(&dir, "BTC", 1).unwrap();
        assert_eq!((c.paths.n_paths(), c.paths.n_points()), (1000, 61));
        assert_eq!(c.terms, 121);
        assert!(c.expected > 0.0 && c.expected.is_finite());
        let again = high_case_from_data(&dir, "BTC", 1).unwrap();
        assert_eq!(again.expected.to_bits(), c.expected.to_bits());
        // Round trip through the vectors format.
        let out = std::env::temp_dir().join(format!("sn50-bench-{}.json", std::process::id()));
        write_cases(&out, std::slice::from_ref(&c), &[]).unwrap();
        let f = load_vectors(&out).unwrap();
        assert_eq!(f.cases[0].score().unwrap().to_bits(), c.expected.to_bits());
        let _ = std::fs::remove_file(out);
    }

    #[test]
    fn total_cases_time_bit_exactly_against_the_validator_and_the_scalar_path() {
        let v2 = shared("spec/crps-vectors-v2.json");
        let dir = shared("data");
        if !v2.is_file() || !dir.is_dir() {
            return;
        }
        let from_validator = total_cases_from_vectors(&load_vectors(&v2).unwrap()).unwrap();
        // The two full-size Crypto 1h cases (SOL, BTC with 10 missing real points).
        assert_eq!(from_validator.len(), 2);
        assert!(from_validator
            .iter()
            .all(|t| t.expected_from == "validator" && t.expected_vol > 0.0));
        let generated = total_cases_from_data(&dir, 4, 1).unwrap();
        let assets: Vec<&str> = generated.iter().map(|t| t.case.asset.as_str()).collect();
        assert_eq!(assets, ["BTC", "ETH", "SOL", "BTC"]);
        // Window 0 is BTC at seed 2, not the price-only case's seed 1.
        let price_only = high_case_from_data(&dir, "BTC", 1).unwrap();
        assert_ne!(generated[0].case.real, price_only.real);
        for t in from_validator.iter().chain(&generated) {
            let timing = time_total_case(t, 1).unwrap();
            assert!(timing.bit_exact);
            assert_eq!((timing.paths, timing.points), (1000, 61));
            assert_eq!(
                timing.total_score.to_bits(),
                (timing.price_crps + timing.vol_crps).to_bits()
            );
            assert!(timing.total_ms.min_ms > 0.0 && timing.price_ms.min_ms > 0.0);
        }
        // A total one ulp off fails; so does a price one ulp off.
        let mut bad = generated[0].clone();
        bad.expected_total = f64::from_bits(bad.expected_total.to_bits() + 1);
        assert!(matches!(
            time_total_case(&bad, 1),
            Err(BenchError::NotExact { case, .. }) if case.ends_with("total")
        ));
        let mut bad = from_validator[0].clone();
        bad.case.expected = f64::from_bits(bad.case.expected.to_bits() - 1);
        assert!(matches!(
            time_total_case(&bad, 1),
            Err(BenchError::NotExact { case, .. }) if case.ends_with("price")
        ));
        // A case with other blocks is not timed as Crypto 1h.
        let mut file = load_vectors(&v2).unwrap();
        let i = file
            .cases
            .iter()
            .rposition(|c| !c.vol_blocks.is_empty() && c.paths.len() == 1000);
        file.cases[i.unwrap()].vol_blocks[0].2 = 2.0;
        assert!(matches!(
            total_cases_from_vectors(&file),
            Err(BenchError::Case { .. })
        ));
        // The cases file scores to the written values, total and parts.
        let out =
            std::env::temp_dir().join(format!("sn50-bench-total-{}.json", std::process::id()));
        write_cases(&out, std::slice::from_ref(&price_only), &generated[..1]).unwrap();
        let f = load_vectors(&out).unwrap();
        assert_eq!(f.format.as_deref(), Some(crate::vectors::FORMAT_V2));
        assert!(f.cases[0].vol_blocks.is_empty());
        assert_eq!(f.cases[1].vol_blocks.len(), 3);
        let got = f.cases[1].total_score().unwrap();
        assert_eq!(got.total.to_bits(), generated[0].expected_total.to_bits());
        assert_eq!(
            got.price.to_bits(),
            f.cases[1].price_crps.unwrap().to_bits()
        );
        assert_eq!(f.cases[1].expected, f.cases[1].total);
        let _ = std::fs::remove_file(out);
        let s = summarize_totals(&[time_total_case(&generated[1], 1).unwrap()]).unwrap();
        assert_eq!(s.prompts, 1);
        assert!(
            s.total_over_price.is_finite() && s.total_median_ms > 0.0,
            "{s:?}"
        );
        assert!(summarize_totals(&[]).is_none());
    }

    #[test]
    #[ignore = "speed measurement; run with --release -- --ignored --nocapture"]
    fn speed() {
        let cases =
            cases_from_vectors(&load_vectors(&shared("spec/crps-vectors.json")).unwrap()).unwrap();
        let high = high_case_from_data(&shared("data"), "BTC", 1).unwrap();
        for c in cases.iter().chain(std::iter::once(&high)) {
            let t = time_case(c, 200, false).unwrap();
            println!(
                "{}: mean {:.3} ms, median {:.3} ms, min {:.3} ms",
                t.name, t.mean_ms, t.median_ms, t.min_ms
            );
        }
    }
}
