//! The CRPS speed benchmark behind `synth-city bench crps`: full-size prompts (1000 paths x 289
//! points for the 24 h prompt, 1000 x 61 for the 1 h prompt) scored one prompt at a time on one
//! thread, and a batch mode that scores many miners' responses to one prompt on all cores.
//!
//! The 24 h cases are the full-size cases of `shared/spec/crps-vectors.json` (the validator's own
//! answers); the 1 h case is built from real 1-minute bars with the reference GBM (1000 paths,
//! rounded as a response carries them). Every timed result is compared bit for bit with the
//! expected value, so a faster scorer that drifts by one ulp fails the benchmark.
//! [`write_cases`] saves the cases in the crps-vectors format for the Python peer
//! (`ops/bench/crps_python.py`), which times the validator's path on exactly the same inputs.

use std::path::Path;
use std::time::Instant;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use serde_json::json;

use super::backtest::{as_sent, candidate_starts};
use super::constants::{intervals_from, ScoringInterval, Sn50Config, HIGH_SCORING_INTERVALS};
use super::crps::{
    calculate_crps_for_miner, calculate_crps_scalar, miner_score, miner_scores_parallel, Paths,
};
use super::data::{asset_file, Bars, DataError};
use super::forecast::{ForecastError, ForecastRequest, Forecaster, Gbm};
use super::vectors::VectorFile;

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

/// Save cases in the `sn50-crps-vectors/1` format (paths and real as they are scored).
pub fn write_cases(path: &Path, cases: &[BenchCase]) -> Result<(), BenchError> {
    let num = |x: f64| {
        if x.is_nan() {
            serde_json::Value::Null
        } else {
            json!(x)
        }
    };
    let cases: Vec<serde_json::Value> = cases
        .iter()
        .map(|c| {
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
        })
        .collect();
    let text = json!({"format": super::vectors::FORMAT, "cases": cases}).to_string();
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
        write_cases(&out, std::slice::from_ref(&c)).unwrap();
        let f = load_vectors(&out).unwrap();
        assert_eq!(f.cases[0].score().unwrap().to_bits(), c.expected.to_bits());
        let _ = std::fs::remove_file(out);
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
