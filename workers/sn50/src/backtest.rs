//! Offline backtests: pick prompt windows from local bars, ask a [`Forecaster`] for paths as the
//! validator would ask a miner, round them as a response would carry them, and score them with
//! the validator's total score (price CRPS, plus the volatility term for Crypto 1h) against the
//! realised grid; the same windows are scored for a reference (the GBM), and the result is
//! reported per competition (its assets, coefficient-weighted mean, window and beta) with the
//! share of the competition's emission the model would take from the reference in a field of
//! two. Behind `synth-city score backtest`.
//!
//! A window the model cannot answer (a history gap, too little history, a model error) does not
//! abort the run: it is answered with the reference GBM, as the miner answers it, and recorded
//! with its reason (`fallbacks`). The same holds for the reference.
//!
//! The share treats every sampled window as inside the leaderboard window (the backtest's span
//! may be longer than the competition's 5 or 10 days); beta, coefficients and prompt scoring are
//! the competition's. It says nothing of the live field, whose median and softmax denominator
//! are other miners'.
//!
//! Windows: every grid-aligned start time (multiples of the time increment) at which the
//! realised grid has its first and last price, a later candle exists (the validator's settlement
//! guard) and a spot price is known at request time (`start - 60 s`: the close of the last bar
//! that closed by then, at most one hour old). N of them are drawn per asset with a ChaCha8 RNG
//! seeded from the seed and the asset name only, so every model gets the same windows for the
//! same seed; each window's model RNG is seeded from (seed, asset, window).

use std::collections::BTreeMap;
use std::path::Path;

use rand::seq::index::sample;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::competition::Competition;
use super::constants::{PromptKind, Sn50Config, WeightTable};
use super::crps::{Paths, INVALID_SCORE};
use super::data::{asset_file_for_step, Bars, DataError};
use super::forecast::{ForecastError, ForecastRequest, Forecaster, Gbm};
use super::response::encode_price;
use super::rewards::{share_against_reference, CompetitionShare, HeadToHead};
use super::vol::{score_terms, total_score_detailed, TotalScore};

/// How long before `start_time` the request is made (the validator: 60-120 s).
pub const REQUEST_LEAD_SECONDS: i64 = 60;
/// The oldest a spot price may be at request time.
pub const MAX_SPOT_AGE_SECONDS: i64 = 3600;

/// Errors running a backtest.
#[derive(Debug, thiserror::Error)]
pub enum BacktestError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error("{asset}: {error}")]
    Forecast { asset: String, error: ForecastError },
    #[error("{asset}: no usable {prompt} window in {file}")]
    NoWindows {
        asset: String,
        prompt: &'static str,
        file: String,
    },
    #[error("no assets given")]
    NoAssets,
    #[error(
        "no competition scores the {prompt} prompt's time length: check the competitions in the SN50 constants"
    )]
    NoCompetition { prompt: &'static str },
}

/// Backtest settings.
#[derive(Debug, Clone)]
pub struct BacktestOptions {
    pub prompt: PromptKind,
    pub assets: Vec<String>,
    pub windows: usize,
    pub seed: u64,
    /// Paths per window (the validator asks for 1000).
    pub num_simulations: usize,
    pub weights: WeightTable,
    /// Only windows that start within the last this many days of each asset's file (held-out
    /// data, when the model was trained on what comes before); `None`: the whole file.
    pub last_days: Option<f64>,
    /// Leave out the windows that start in the last this many days of each file: with
    /// `last_days`, windows start in the `last_days` before them (one fold of a walk-forward
    /// series, older than the folds after it). 0: none left out.
    pub skip_last_days: f64,
    /// Only windows that start at or after this time (unix seconds): data no contender was
    /// trained on (the promotion gate's walk-forward windows). `None`: no bound.
    pub not_before: Option<i64>,
}

/// One asset's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AssetResult {
    /// Mean CRPS total over the valid windows.
    pub mean_crps: f64,
    /// Windows scored.
    pub windows: usize,
    /// Windows the validator would have scored -1.
    pub invalid: usize,
    /// The reference's (GBM's) mean CRPS total over the windows where both are valid.
    pub mean_reference_crps: Option<f64>,
    /// The model's mean over those same windows divided by the reference's.
    pub ratio: Option<f64>,
    /// The competition that scores this asset's prompts (`None`: no competition does, e.g. XAU
    /// on the 1 h prompt; it was scored with that prompt's first competition's rules).
    pub competition: Option<String>,
    /// The data file used.
    pub file: String,
    /// The window start times (unix seconds).
    pub starts: Vec<i64>,
    /// Windows the model could not answer (answered with the GBM, as the miner would), with
    /// the reason: `(start, reason)`.
    pub fallbacks: Vec<(i64, String)>,
    /// Windows the reference could not answer (also answered with the GBM).
    pub reference_fallbacks: usize,
    /// Per window: the model's and the reference's total score (`-1` invalid).
    #[serde(skip)]
    pub head_to_head: Vec<(f64, f64)>,
    /// Per window: the realised volatility (standard deviation of the log returns on the grid).
    #[serde(skip)]
    pub realised_vol: Vec<f64>,
    /// Where the score comes from: each term's mean (scoring interval, the folded gap
    /// intervals, each volatility block size) for the model and the reference, over the
    /// windows where both are valid.
    pub terms: Vec<ScoreTerm>,
}

/// One term of the total score, averaged over windows (see [`AssetResult::terms`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScoreTerm {
    pub term: String,
    pub model: f64,
    pub reference: f64,
}

/// A window's worker score (`-1` where the validator's would be) and its terms.
fn scored(t: Option<TotalScore>) -> (f64, Vec<(String, f64)>) {
    match t {
        Some(t) if t.worker_score() != INVALID_SCORE => (t.total, score_terms(&t)),
        _ => (INVALID_SCORE, Vec::new()),
    }
}

/// The ratio to the reference over the windows of one volatility tercile.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VolatilityBand {
    /// `calm`, `middle` or `volatile`: the third of the windows by realised volatility, ranked
    /// per asset.
    pub band: String,
    pub windows: usize,
    /// Coefficient-weighted mean CRPS ratio, model over reference, on those windows.
    pub ratio: Option<f64>,
}

/// One competition's part of a backtest.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CompetitionReport {
    pub id: String,
    pub label: String,
    /// The backtested assets this competition scores.
    pub assets: Vec<String>,
    /// The coefficient-weighted mean of those assets' mean CRPS, for the model and the reference.
    pub weighted_crps: f64,
    pub weighted_reference_crps: f64,
    /// The validator's reward pipeline on a field of two (see the module doc).
    pub share: CompetitionShare,
    /// How stable the ratio is: per tercile of the windows' realised volatility.
    pub by_volatility: Vec<VolatilityBand>,
    /// Where the score comes from: the assets' [`AssetResult::terms`], coefficient-weighted.
    pub terms: Vec<ScoreTerm>,
}

/// The whole result (`--json` prints it).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BacktestResult {
    pub model: String,
    pub prompt: String,
    pub seed: u64,
    pub assets: BTreeMap<String, AssetResult>,
    /// The reference model's name.
    pub reference: String,
    /// The coefficient-weighted mean of the assets' mean CRPS.
    pub weighted_crps: f64,
    /// Per competition with at least one backtested asset, in `ALL_COMPETITIONS` order.
    pub competitions: Vec<CompetitionReport>,
}

/// FNV-1a of a name: a seed stable across runs and platforms.
pub fn hash_name(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}

/// The spot price at request time: the close of the last bar that closed by `as_of`.
fn spot_at(bars: &Bars, as_of: i64) -> Option<f64> {
    bars.close_by(as_of, MAX_SPOT_AGE_SECONDS)
}

/// Every usable window start for a prompt in these bars.
pub fn candidate_starts(bars: &Bars, time_length: i64, increment: i64) -> Vec<i64> {
    let last_ts = match bars.timestamps.last() {
        Some(&t) => t,
        None => return Vec::new(),
    };
    bars.timestamps
        .iter()
        .copied()
        .filter(|t| t % increment == 0)
        .filter(|&t| {
            let end = t + time_length;
            last_ts > end
                && bars.index_of(end).is_some()
                && spot_at(bars, t - REQUEST_LEAD_SECONDS).is_some()
        })
        .collect()
}

/// Round every price as the response serializer would (8 significant digits within the
/// validator's digit rule); non-finite prices stay as they are (and score as the validator would).
pub fn as_sent(paths: &Paths) -> Paths {
    let data: Vec<f64> = paths
        .as_flat()
        .iter()
        .map(|&x| encode_price(x).map(|t| t.value()).unwrap_or(x))
        .collect();
    Paths::from_flat(data, paths.n_paths()).expect("same shape")
}

/// Run a backtest of `model` against `reference` on the bars in `data_dir`.
pub fn run_backtest(
    model: &dyn Forecaster,
    reference: &dyn Forecaster,
    data_dir: &Path,
    opts: &BacktestOptions,
    config: &Sn50Config,
) -> Result<BacktestResult, BacktestError> {
    if opts.assets.is_empty() {
        return Err(BacktestError::NoAssets);
    }
    let prompt = config.prompt(opts.prompt);
    let gbm = Gbm::new(config.clone());
    let prompt_label = if opts.prompt == PromptKind::Low {
        "low"
    } else {
        "high"
    };
    let inc = prompt.time_increment as i64;
    let len = prompt.time_length as i64;
    let mut assets = BTreeMap::new();
    for asset in &opts.assets {
        // The validator's rule needs 1-minute candles; 5-minute files serve 300 s grids only.
        let path = asset_file_for_step(data_dir, asset, inc)?;
        let bars = Bars::load(&path)?;
        let file = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let mut candidates = candidate_starts(&bars, len, inc);
        if let Some(&last) = bars.timestamps.last() {
            let until = last - (opts.skip_last_days * 86_400.0) as i64;
            let from = opts
                .last_days
                .map_or(i64::MIN, |days| until - (days * 86_400.0) as i64);
            candidates.retain(|&t| t >= from && t < until);
        }
        if let Some(t0) = opts.not_before {
            candidates.retain(|&t| t >= t0);
        }
        if candidates.is_empty() {
            return Err(BacktestError::NoWindows {
                asset: asset.clone(),
                prompt: prompt_label,
                file,
            });
        }
        let scoring = config
            .scoring(opts.prompt, asset)
            .ok_or(BacktestError::NoCompetition {
                prompt: prompt_label,
            })?;
        let competition = config
            .competitions_for(opts.prompt, asset)
            .next()
            .map(|c| c.id.clone());
        let mut window_rng = ChaCha8Rng::seed_from_u64(opts.seed ^ hash_name(asset));
        let n = opts.windows.min(candidates.len());
        let mut picks: Vec<usize> = sample(&mut window_rng, candidates.len(), n).into_vec();
        picks.sort_unstable();
        let starts: Vec<i64> = picks.iter().map(|&i| candidates[i]).collect();
        let mut scores = Vec::with_capacity(n);
        let mut fallbacks = Vec::new();
        let mut reference_fallbacks = 0;
        let mut realised_vol = Vec::with_capacity(n);
        let mut terms: Vec<ScoreTerm> = Vec::new();
        let mut both_valid = 0usize;
        for (w, &start) in starts.iter().enumerate() {
            let as_of = start - REQUEST_LEAD_SECONDS;
            let spot = spot_at(&bars, as_of).expect("candidate has a spot");
            let req = ForecastRequest {
                asset: asset.clone(),
                start_time: start,
                time_increment: prompt.time_increment,
                time_length: prompt.time_length,
                num_simulations: opts.num_simulations,
                spot,
                history: Some(&bars),
                as_of,
            };
            let mut rng = ChaCha8Rng::seed_from_u64(
                opts.seed
                    ^ hash_name(asset).rotate_left(17)
                    ^ (w as u64).wrapping_mul(0x9E3779B97F4A7C15),
            );
            let mut reference_rng = rng.clone();
            let gbm_seed = rng.clone();
            // what the miner does when its model fails: answer with the GBM
            let answer = |f: &dyn Forecaster,
                          rng: &mut ChaCha8Rng|
             -> Result<(Paths, Option<String>), BacktestError> {
                match f.forecast(&req, rng) {
                    Ok(p) => Ok((p, None)),
                    Err(e) => {
                        let p = gbm.forecast(&req, &mut gbm_seed.clone()).map_err(|error| {
                            BacktestError::Forecast {
                                asset: asset.clone(),
                                error,
                            }
                        })?;
                        Ok((p, Some(e.to_string())))
                    }
                }
            };
            let (paths, why) = answer(model, &mut rng)?;
            if let Some(why) = why {
                fallbacks.push((start, why));
            }
            let (reference_paths, why) = answer(reference, &mut reference_rng)?;
            reference_fallbacks += why.is_some() as usize;
            let real = bars.price_grid(start, len, inc)?;
            realised_vol.push(grid_volatility(&real));
            let (ours, our_terms) = scored(total_score_detailed(&as_sent(&paths), &real, scoring));
            let (theirs, their_terms) = scored(total_score_detailed(
                &as_sent(&reference_paths),
                &real,
                scoring,
            ));
            if ours != INVALID_SCORE && theirs != INVALID_SCORE {
                both_valid += 1;
                for ((name, m), (_, r)) in our_terms.into_iter().zip(their_terms) {
                    match terms.iter_mut().find(|t| t.term == name) {
                        Some(t) => {
                            t.model += m;
                            t.reference += r;
                        }
                        None => terms.push(ScoreTerm {
                            term: name,
                            model: m,
                            reference: r,
                        }),
                    }
                }
            }
            scores.push((ours, theirs));
        }
        for t in &mut terms {
            t.model /= both_valid as f64;
            t.reference /= both_valid as f64;
        }
        let valid: Vec<f64> = scores
            .iter()
            .map(|s| s.0)
            .filter(|&s| s != INVALID_SCORE)
            .collect();
        let mean = if valid.is_empty() {
            f64::NAN
        } else {
            valid.iter().sum::<f64>() / valid.len() as f64
        };
        let both: Vec<(f64, f64)> = scores
            .iter()
            .copied()
            .filter(|(m, r)| *m != INVALID_SCORE && *r != INVALID_SCORE)
            .collect();
        let (mean_reference_crps, ratio) = if both.is_empty() {
            (None, None)
        } else {
            let m: f64 = both.iter().map(|b| b.0).sum::<f64>();
            let r: f64 = both.iter().map(|b| b.1).sum::<f64>();
            let n = both.len() as f64;
            (Some(r / n), (r > 0.0).then(|| m / r))
        };
        assets.insert(
            asset.clone(),
            AssetResult {
                mean_crps: mean,
                windows: scores.len(),
                invalid: scores.len() - valid.len(),
                mean_reference_crps,
                ratio,
                competition,
                file,
                starts,
                fallbacks,
                reference_fallbacks,
                head_to_head: scores,
                realised_vol,
                terms,
            },
        );
    }
    let competitions = config
        .competitions
        .iter()
        .filter_map(|c| competition_report(c, &assets, len, config, opts.weights))
        .collect();
    let (mut num, mut den) = (0.0, 0.0);
    for (a, r) in &assets {
        if r.mean_crps.is_finite() {
            let c = config.coefficient(a, opts.weights);
            num += c * r.mean_crps;
            den += c;
        }
    }
    Ok(BacktestResult {
        model: model.name().to_string(),
        prompt: opts.prompt.label().to_string(),
        seed: opts.seed,
        reference: reference.name().to_string(),
        assets,
        weighted_crps: if den > 0.0 { num / den } else { f64::NAN },
        competitions,
    })
}

/// A competition's report over the backtested assets it scores, or `None` if it scores none.
fn competition_report(
    c: &Competition,
    assets: &BTreeMap<String, AssetResult>,
    time_length: i64,
    config: &Sn50Config,
    table: WeightTable,
) -> Option<CompetitionReport> {
    let mine: Vec<(&String, &AssetResult)> = assets
        .iter()
        .filter(|(_, r)| r.competition.as_deref() == Some(c.id.as_str()))
        .collect();
    if mine.is_empty() {
        return None;
    }
    let weighted = |f: &dyn Fn(&AssetResult) -> Option<f64>| {
        let (mut num, mut den) = (0.0, 0.0);
        for (a, r) in &mine {
            if let Some(v) = f(r).filter(|v| v.is_finite()) {
                let w = config.coefficient(a, table);
                num += w * v;
                den += w;
            }
        }
        if den > 0.0 {
            num / den
        } else {
            f64::NAN
        }
    };
    let mut prompts = Vec::new();
    for (a, r) in &mine {
        for (start, (m, g)) in r.starts.iter().zip(&r.head_to_head) {
            prompts.push(HeadToHead {
                scored_time: start + time_length,
                asset: a.to_string(),
                ours: *m,
                reference: *g,
            });
        }
    }
    let now = prompts.iter().map(|p| p.scored_time).max().unwrap_or(0);
    let first = prompts.iter().map(|p| p.scored_time).min().unwrap_or(0);
    // Every sampled window counts: widen the leaderboard window to the backtest's span.
    let mut whole = c.clone();
    whole.window_days = whole.window_days.max(((now - first) / 86_400 + 1) as u64);
    let mut share = share_against_reference(&prompts, now, &whole, config, table);
    share.window_days = c.window_days;
    // per asset, rank its windows by realised volatility and cut them in thirds
    let bands = ["calm", "middle", "volatile"];
    let mut counts = [0usize; 3];
    let mut per_band: Vec<BTreeMap<&str, (f64, f64, usize)>> = vec![BTreeMap::new(); 3];
    for (a, r) in &mine {
        let mut order: Vec<usize> = (0..r.head_to_head.len()).collect();
        order.sort_by(|&i, &j| r.realised_vol[i].total_cmp(&r.realised_vol[j]));
        let n = order.len();
        for (rank, &i) in order.iter().enumerate() {
            let (m, g) = r.head_to_head[i];
            if m == INVALID_SCORE || g == INVALID_SCORE {
                continue;
            }
            let b = (rank * 3 / n.max(1)).min(2);
            let e = per_band[b].entry(a.as_str()).or_default();
            e.0 += m;
            e.1 += g;
            e.2 += 1;
            counts[b] += 1;
        }
    }
    let by_volatility = bands
        .iter()
        .enumerate()
        .map(|(b, name)| {
            let (mut num, mut den) = (0.0, 0.0);
            for (a, (m, g, k)) in &per_band[b] {
                let w = config.coefficient(a, table);
                num += w * m / *k as f64;
                den += w * g / *k as f64;
            }
            VolatilityBand {
                band: name.to_string(),
                windows: counts[b],
                ratio: (den > 0.0).then(|| num / den),
            }
        })
        .collect();
    let mut terms: Vec<ScoreTerm> = Vec::new();
    let mut total_weight = 0.0;
    for (a, r) in &mine {
        if r.terms.is_empty() {
            continue;
        }
        let w = config.coefficient(a, table);
        total_weight += w;
        for t in &r.terms {
            match terms.iter_mut().find(|x| x.term == t.term) {
                Some(x) => {
                    x.model += w * t.model;
                    x.reference += w * t.reference;
                }
                None => terms.push(ScoreTerm {
                    term: t.term.clone(),
                    model: w * t.model,
                    reference: w * t.reference,
                }),
            }
        }
    }
    for t in &mut terms {
        t.model /= total_weight;
        t.reference /= total_weight;
    }
    Some(CompetitionReport {
        id: c.id.clone(),
        label: c.label.clone(),
        assets: mine.iter().map(|(a, _)| a.to_string()).collect(),
        weighted_crps: weighted(&|r| Some(r.mean_crps)),
        weighted_reference_crps: weighted(&|r| r.mean_reference_crps),
        share,
        by_volatility,
        terms,
    })
}

/// The standard deviation of the log returns between consecutive known prices of a grid (NaN
/// with fewer than two returns).
fn grid_volatility(real: &[f64]) -> f64 {
    let r: Vec<f64> = real
        .windows(2)
        .filter(|w| w[0].is_finite() && w[1].is_finite() && w[0] > 0.0 && w[1] > 0.0)
        .map(|w| (w[1] / w[0]).ln())
        .collect();
    if r.len() < 2 {
        return f64::NAN;
    }
    let mean = r.iter().sum::<f64>() / r.len() as f64;
    (r.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (r.len() - 1) as f64).sqrt()
}

/// The `--json` output: `{"assets": {"BTC": {"mean_crps", "windows", ...}}, "weighted_crps",
/// "model", "prompt", "seed"}`.
pub fn backtest_json(r: &BacktestResult) -> serde_json::Value {
    serde_json::to_value(r).expect("a backtest result serializes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forecast::Gbm;

    /// A synthetic 1-minute file: a slow sine around 100 with a gap.
    fn write_bars(dir: &Path, name: &str, start: i64, n: i64, gap: Option<(i64, i64)>) {
        let mut s = String::from("timestamp,open,high,low,close,volume\n");
        for k in 0..n {
            if let Some((a, b)) = gap {
                if k >= a && k < b {
                    continue;
                }
            }
            let p = 100.0 + (k as f64 / 50.0).sin();
            s.push_str(&format!("{},{p},{p},{p},{p},1\n", start + k * 60));
        }
        std::fs::write(dir.join(name), s).unwrap();
    }

    fn opts(prompt: PromptKind, windows: usize, seed: u64) -> BacktestOptions {
        BacktestOptions {
            prompt,
            assets: vec!["BTC".into(), "ETH".into()],
            windows,
            seed,
            num_simulations: 50,
            weights: WeightTable::Validator,
            last_days: None,
            skip_last_days: 0.0,
            not_before: None,
        }
    }

    /// A model that cannot answer windows starting in the first `until` seconds.
    struct Picky {
        until: i64,
        gbm: Gbm,
    }

    impl Forecaster for Picky {
        fn name(&self) -> &str {
            "picky"
        }
        fn forecast(
            &self,
            req: &ForecastRequest<'_>,
            rng: &mut dyn rand::RngCore,
        ) -> Result<Paths, ForecastError> {
            if req.start_time < self.until {
                return Err(ForecastError::Model(
                    "the 76 bars before are not consecutive".into(),
                ));
            }
            self.gbm.forecast(req, rng)
        }
    }

    #[test]
    fn a_window_the_model_cannot_answer_is_answered_by_the_gbm_and_recorded() {
        let dir = std::env::temp_dir().join(format!("sn50-bt-fb-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let t0 = 1_699_999_200;
        write_bars(&dir, "BTC_1m.csv", t0, 3 * 24 * 60, None);
        write_bars(&dir, "ETH_1m.csv", t0, 3 * 24 * 60, None);
        let cfg = Sn50Config::default();
        let gbm = Gbm::new(cfg.clone());
        let picky = Picky {
            until: t0 + 36 * 3600,
            gbm: gbm.clone(),
        };
        let o = opts(PromptKind::High, 20, 5);
        let r = run_backtest(&picky, &gbm, &dir, &o, &cfg).unwrap();
        let btc = &r.assets["BTC"];
        assert_eq!(btc.windows, 20, "no window is lost");
        let early = btc.starts.iter().filter(|&&s| s < t0 + 36 * 3600).count();
        assert!(early > 0 && early < 20, "{early}");
        assert_eq!(btc.fallbacks.len(), early);
        assert!(btc.fallbacks[0].1.contains("not consecutive"));
        // answered by the GBM with the same seed as the reference: the same score there
        assert_eq!(btc.ratio, Some(1.0));
        assert_eq!(btc.reference_fallbacks, 0);
        // the classical baseline as the reference: a real, different score on the same windows
        let ewma = crate::classical::Ewma::by_name("ewma").unwrap();
        let e = run_backtest(&gbm, &ewma, &dir, &o, &cfg).unwrap();
        assert_eq!(e.assets["BTC"].starts, btc.starts);
        assert_eq!(e.reference, "ewma");
        assert!(e.assets["BTC"].ratio.is_some_and(|x| x != 1.0));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn spot_is_the_last_closed_bar() {
        let b = Bars::parse_csv(
            "timestamp,open,high,low,close,volume\n0,1,1,1,10,1\n60,1,1,1,11,1\n180,1,1,1,13,1\n",
            60,
            "t",
        )
        .unwrap();
        assert_eq!(spot_at(&b, 120), Some(11.0)); // bar 60 closed at 120
        assert_eq!(spot_at(&b, 119), Some(10.0));
        assert_eq!(spot_at(&b, 239), Some(11.0)); // bar 180 closes at 240
        assert_eq!(spot_at(&b, 30), None);
    }

    #[test]
    fn backtest_is_reproducible_and_windows_do_not_depend_on_the_model() {
        let dir = std::env::temp_dir().join(format!("sn50-bt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        write_bars(
            &dir,
            "BTC_1m.csv",
            1_699_999_200,
            3 * 24 * 60,
            Some((2000, 2100)),
        );
        write_bars(&dir, "ETH_1m.csv", 1_699_999_260, 3 * 24 * 60, None);
        let cfg = Sn50Config::default();
        let gbm = Gbm::new(cfg.clone());
        let a = run_backtest(&gbm, &gbm, &dir, &opts(PromptKind::High, 5, 42), &cfg).unwrap();
        let b = run_backtest(&gbm, &gbm, &dir, &opts(PromptKind::High, 5, 42), &cfg).unwrap();
        assert_eq!(a, b);
        // The GBM against itself, same seeds: ratio 1 and half of Crypto 1h's pool.
        assert_eq!(a.assets["BTC"].ratio, Some(1.0));
        assert_eq!(a.competitions.len(), 1);
        assert_eq!(a.competitions[0].id, "crypto-1h");
        assert_eq!(a.competitions[0].share.pool_share, 0.5);
        assert_eq!(a.competitions[0].share.softmax_beta, -0.3);
        assert_eq!(a.competitions[0].share.window_days, 5);
        let btc = &a.assets["BTC"];
        assert_eq!(btc.windows, 5);
        assert!(btc.mean_crps > 0.0 && btc.mean_crps.is_finite());
        let mut wide = Gbm::new(cfg.clone());
        wide.sigma_override = Some(0.05);
        let c = run_backtest(&wide, &gbm, &dir, &opts(PromptKind::High, 5, 42), &cfg).unwrap();
        assert_eq!(
            c.assets["BTC"].starts, btc.starts,
            "same windows for every model"
        );
        assert_ne!(c.assets["BTC"].mean_crps, btc.mean_crps);
        // A sigma ten times too wide loses to the GBM on this calm sine: less than half the pool.
        assert!(c.assets["BTC"].ratio.unwrap() > 1.0);
        assert!(c.competitions[0].share.pool_share < 0.5);
        assert_eq!(c.assets["BTC"].mean_reference_crps, btc.mean_reference_crps);
        // the terms: the 1 h prompt's five plain intervals, the folded gaps and three volatility
        // sizes, adding up to the mean totals; the too-wide sigma loses on every one of them
        let terms = &c.assets["BTC"].terms;
        let names: Vec<&str> = terms.iter().map(|t| t.term.as_str()).collect();
        assert_eq!(
            names,
            [
                "1min",
                "2min",
                "5min",
                "15min",
                "30min",
                "60min_abs",
                "gaps",
                "vol_60min",
                "vol_15min",
                "vol_5min"
            ]
        );
        let sum = |f: fn(&ScoreTerm) -> f64| terms.iter().map(f).sum::<f64>();
        assert!(
            (sum(|t| t.model) - c.assets["BTC"].mean_crps).abs() < 1e-9 * c.assets["BTC"].mean_crps
        );
        assert!(
            (sum(|t| t.reference) - btc.mean_reference_crps.unwrap()).abs()
                < 1e-9 * btc.mean_reference_crps.unwrap()
        );
        assert!(terms.iter().all(|t| t.model > t.reference), "{terms:?}");
        assert_eq!(c.competitions[0].terms.len(), terms.len());
        // three bands of windows by realised volatility, each a ratio of 1 for the GBM vs itself
        let bands = &a.competitions[0].by_volatility;
        assert_eq!(bands.len(), 3);
        assert_eq!(bands.iter().map(|b| b.windows).sum::<usize>(), 10);
        assert!(bands.iter().all(|b| b.ratio == Some(1.0)));
        // held-out windows only: every start within the last day of the file
        let mut last = opts(PromptKind::High, 5, 42);
        last.last_days = Some(1.0);
        let h = run_backtest(&gbm, &gbm, &dir, &last, &cfg).unwrap();
        let end = 1_699_999_260 + (3 * 24 * 60 - 1) * 60;
        assert!(h.assets["ETH"].starts.iter().all(|&t| t >= end - 86_400));
        // an older fold: the day before the last one, none of the last day's windows
        last.skip_last_days = 1.0;
        let older = run_backtest(&gbm, &gbm, &dir, &last, &cfg).unwrap();
        let starts = &older.assets["ETH"].starts;
        assert!(!starts.is_empty());
        assert!(starts
            .iter()
            .all(|&t| t >= end - 2 * 86_400 && t < end - 86_400));
        // walk-forward from a training end: no window starts before it
        let mut fresh = opts(PromptKind::High, 5, 42);
        fresh.not_before = Some(end - 12 * 3600);
        let f = run_backtest(&gbm, &gbm, &dir, &fresh, &cfg).unwrap();
        assert_eq!(f.assets["ETH"].windows, 5);
        assert!(f.assets["ETH"].starts.iter().all(|&t| t >= end - 12 * 3600));
        let d = run_backtest(&gbm, &gbm, &dir, &opts(PromptKind::High, 5, 43), &cfg).unwrap();
        assert_ne!(d.assets["BTC"].starts, btc.starts);
        // Weighted mean uses the validator coefficients.
        let ce = cfg.coefficient("ETH", WeightTable::Validator);
        let expected = (btc.mean_crps + ce * a.assets["ETH"].mean_crps) / (1.0 + ce);
        assert!((a.weighted_crps - expected).abs() < 1e-9 * expected);
        // The low prompt works on 1-minute files too; every start is a 300 s multiple.
        let l = run_backtest(&gbm, &gbm, &dir, &opts(PromptKind::Low, 3, 1), &cfg).unwrap();
        assert!(l.assets["ETH"].starts.iter().all(|s| s % 300 == 0));
        assert_eq!(l.competitions[0].id, "crypto-24h");
        assert_eq!(l.competitions[0].share.softmax_beta, -0.15);
        let json = backtest_json(&l);
        assert!(json["assets"]["BTC"]["mean_crps"].is_f64());
        assert!(json["weighted_crps"].is_f64());
        assert_eq!(json["competitions"][0]["share"]["pool_share"], 0.5);
        assert_eq!(json["assets"]["BTC"]["competition"], "crypto-24h");
        // A missing asset file is named.
        let mut o = opts(PromptKind::High, 1, 1);
        o.assets = vec!["XRP".into()];
        let e = run_backtest(&gbm, &gbm, &dir, &o, &cfg).unwrap_err();
        assert!(e.to_string().contains("XRP"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
