//! Classical volatility forecasters: the anchors a learned model must beat beside the reference
//! GBM, so that a "win" over a miscalibrated GBM shows for what it is.
//!
//! [`Ewma`] estimates the per-step volatility from the bars that closed before the request (an
//! exponentially weighted mean of squared log returns, RiskMetrics style), optionally shaped by
//! a UTC seasonal profile ([`Profile`]: the mean squared return of each hour of the day over the
//! lookback, weekdays and weekends apart, relative to the whole; the level is then estimated on
//! returns divided by it), scaled by a calibration `width`, and simulates zero-drift log-price
//! paths with Gaussian or unit-variance Student-t steps. It is fitted on nothing but the
//! request's own history, so it can be scored on any window without leaking the future.
//!
//! The EWMA's half-life follows the horizon asked ([`auto_half_life`]: 8 h for a day's paths,
//! 2 h for an hour's).
//!
//! Names (`--model` / `--reference`): `ewma`, `ewma-t` (Student-t, 5 degrees of freedom),
//! `ewma-tod`, `ewma-tod-t`.
//!
//! The helpers the other classical forecasters share (returns before the request, the seasonal
//! profile, innovations, the constant-width random walk) live here too; GARCH-family models are
//! in [`super::garch`], HAR-RV in [`super::har`].
//!
//! It does not fit parameters by likelihood, and needs history: without enough bars it is an
//! error, which the backtest records and answers with the GBM, as the miner would.

use rand::RngCore;
use rand_distr::{Distribution, Normal, StudentT};

use super::crps::Paths;
use super::data::Bars;
use super::forecast::{ForecastError, ForecastRequest, Forecaster};

/// The names [`Ewma::by_name`] knows.
pub const EWMA_MODELS: &[&str] = &["ewma", "ewma-t", "ewma-tod", "ewma-tod-t"];

/// An EWMA-volatility random walk (see the module doc).
#[derive(Debug, Clone, PartialEq)]
pub struct Ewma {
    name: String,
    /// The half-life of the weights, in hours of history; `None`: a third of the request's
    /// horizon, between 2 and 24 hours ([`auto_half_life`]).
    pub half_life_hours: Option<f64>,
    /// How much history is read, in days.
    pub lookback_days: f64,
    /// Multiplies the estimated volatility (1 = as estimated).
    pub width: f64,
    /// Student-t steps with these degrees of freedom (scaled to unit variance); Gaussian if None.
    pub student_t_df: Option<f64>,
    /// Shape the step variance by the hour of day.
    pub time_of_day: bool,
    /// The fewest returns an estimate may rest on.
    pub min_returns: usize,
}

impl Ewma {
    /// A named variant: `ewma`, `ewma-t`, `ewma-tod`, `ewma-tod-t`.
    pub fn by_name(name: &str) -> Option<Ewma> {
        if !EWMA_MODELS.contains(&name) {
            return None;
        }
        Some(Ewma {
            name: name.to_string(),
            half_life_hours: None,
            lookback_days: 14.0,
            width: 1.0,
            student_t_df: name.ends_with("-t").then_some(5.0),
            time_of_day: name.contains("-tod"),
            min_returns: 120,
        })
    }

    /// The per-bar variance of the profile's mean hour: an EWMA of squared returns, each
    /// divided by its hour's profile value (so a calm weekend or night does not drag the level
    /// of the hours after it), oldest first, seeded with the plain mean of the first
    /// half-life's returns.
    fn level(
        &self,
        horizon_seconds: u64,
        rets: &[(i64, f64)],
        bar_seconds: i64,
        profile: &Profile,
    ) -> f64 {
        let half_life_hours = self
            .half_life_hours
            .unwrap_or_else(|| auto_half_life(horizon_seconds));
        let half_life_bars = (half_life_hours * 3600.0 / bar_seconds as f64).max(1.0);
        let lambda = 0.5f64.powf(1.0 / half_life_bars);
        let sq = |(t, r): &(i64, f64)| r * r / profile.at(*t);
        let seed_n = rets.len().min(half_life_bars as usize).max(1);
        let mut var = rets[..seed_n].iter().map(sq).sum::<f64>() / seed_n as f64;
        for r in &rets[seed_n..] {
            var = lambda * var + (1.0 - lambda) * sq(r);
        }
        var
    }

    /// The standard deviation of the log return of each step of a grid that starts at
    /// `start_time`, `time_increment` seconds a step over `time_length`, as this model would
    /// simulate it from the bars of `bars` that closed by `as_of` (the variance level, the
    /// seasonal profile at each step's start and the width; not the Student-t shape). What
    /// [`Forecaster::forecast`] samples from, and what a learned model standardised on this
    /// anchor (the trainer's `classical` scales) divides its targets by. An error when the
    /// lookback holds fewer than `min_returns` consecutive returns.
    pub fn step_sds(
        &self,
        bars: &Bars,
        as_of: i64,
        start_time: i64,
        time_increment: u64,
        time_length: u64,
    ) -> Result<Vec<f64>, TooFewReturns> {
        let (var_bar, profile) = self.fit(bars, as_of, time_length)?;
        Ok(self
            .shape(var_bar, bars, &profile)
            .step_sds(start_time, time_increment, time_length))
    }

    /// The per-bar variance level and the seasonal profile from the bars that closed by
    /// `as_of`, for paths `time_length` seconds long.
    fn fit(
        &self,
        bars: &Bars,
        as_of: i64,
        time_length: u64,
    ) -> Result<(f64, Profile), TooFewReturns> {
        let rets = returns_before(bars, as_of, self.lookback_days);
        if rets.len() < self.min_returns {
            return Err(TooFewReturns {
                have: rets.len(),
                need: self.min_returns,
            });
        }
        let profile = profile_if(self.time_of_day, &rets, bars, as_of, self.lookback_days);
        let var_bar = self.level(time_length, &rets, bars.bar_seconds, &profile);
        Ok((var_bar, profile))
    }

    /// The random walk of a fitted level and profile.
    fn shape<'p>(&self, var_bar: f64, bars: &Bars, profile: &'p Profile) -> WalkShape<'p> {
        WalkShape {
            var_bar,
            bar_seconds: bars.bar_seconds,
            profile,
            width: self.width,
            student_t_df: self.student_t_df,
        }
    }
}

/// Too few consecutive returns in a model's lookback to estimate from ([`Ewma::step_sds`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{have} consecutive returns before the request, {need} needed")]
pub struct TooFewReturns {
    pub have: usize,
    pub need: usize,
}

/// The EWMA half-life for a horizon of `horizon_seconds`: a third of it, between 2 and 24
/// hours (8 h for the 24 h prompt, 2 h for the 1 h prompt). On issue 15's walk-forward folds
/// (docs/benchmarks.md, "The EWMA half-life") shorter memories scored better than the
/// RiskMetrics-style day: Crypto 24h 0.9547 at 24 h, 0.9528 at 8 h; Crypto 1h 0.9590 at 24 h,
/// 0.9522 at 1 to 2 h.
pub fn auto_half_life(horizon_seconds: u64) -> f64 {
    (horizon_seconds as f64 / 3600.0 / 3.0).clamp(2.0, 24.0)
}

impl Forecaster for Ewma {
    fn name(&self) -> &str {
        &self.name
    }

    fn forecast(
        &self,
        req: &ForecastRequest<'_>,
        rng: &mut dyn RngCore,
    ) -> Result<Paths, ForecastError> {
        let bars = check_request(&self.name, req)?;
        let (var_bar, profile) = self
            .fit(bars, req.as_of, req.time_length)
            .map_err(|e| too_few(&self.name, req, e.have, e.need))?;
        level_walk(req, &self.shape(var_bar, bars, &profile), rng)
    }
}

/// Checks a request's grid, spot and path count, and returns the history it must have.
pub(crate) fn check_request<'a>(
    model: &str,
    req: &ForecastRequest<'a>,
) -> Result<&'a Bars, ForecastError> {
    if !(req.spot.is_finite() && req.spot > 0.0) {
        return Err(ForecastError::BadSpot(req.spot));
    }
    if req.time_increment == 0 || req.time_length % req.time_increment != 0 {
        return Err(ForecastError::BadGrid {
            increment: req.time_increment,
            length: req.time_length,
        });
    }
    if req.num_simulations == 0 {
        return Err(ForecastError::NoPaths);
    }
    let bars = req
        .history
        .ok_or_else(|| ForecastError::Model(format!("{model}: no history for {}", req.asset)))?;
    let end = bars
        .timestamps
        .partition_point(|&t| t + bars.bar_seconds <= req.as_of);
    let age = match end {
        0 => None,
        n => Some(req.as_of - (bars.timestamps[n - 1] + bars.bar_seconds)),
    };
    match age {
        Some(a) if a <= MAX_HISTORY_AGE_SECONDS => Ok(bars),
        _ => Err(ForecastError::Model(format!(
            "{model}: the history of {} is stale ({}; at most {} h allowed): refresh it with `synth-city data download --assets {}`",
            req.asset,
            age.map_or("no bar before the request".to_string(), |a| format!(
                "its last bar before the request closed {:.1} h earlier",
                a as f64 / 3600.0
            )),
            MAX_HISTORY_AGE_SECONDS / 3600,
            req.asset
        ))),
    }
}

/// The oldest the last bar before a request may be for a classical model to fit on the
/// history: four days, so that a weekend's closure of the equity bars still passes and a data
/// directory nobody refreshes does not.
pub const MAX_HISTORY_AGE_SECONDS: i64 = 4 * 86_400;

/// The error for a history too short to estimate from.
pub(crate) fn too_few(
    model: &str,
    req: &ForecastRequest<'_>,
    have: usize,
    need: usize,
) -> ForecastError {
    ForecastError::Model(format!(
        "{model}: {have} consecutive returns of {} before the request, {need} needed",
        req.asset
    ))
}

/// The indices of the bars that closed by `as_of` and opened within the `lookback_days` before
/// it, each with a bar before it (so `i - 1` is a valid index).
fn lookback(bars: &Bars, as_of: i64, lookback_days: f64) -> std::ops::Range<usize> {
    let end = bars
        .timestamps
        .partition_point(|&t| t + bars.bar_seconds <= as_of);
    let from = as_of - (lookback_days * 86_400.0) as i64;
    let begin = bars.timestamps[..end].partition_point(|&t| t < from);
    begin.max(1)..end
}

/// Log returns of consecutive bars (no gap between them) that closed by `as_of`, within the
/// last `lookback_days`: `(open time of the later bar, return)`, oldest first.
pub(crate) fn returns_before(bars: &Bars, as_of: i64, lookback_days: f64) -> Vec<(i64, f64)> {
    lookback(bars, as_of, lookback_days)
        .filter(|&i| bars.timestamps[i] - bars.timestamps[i - 1] == bars.bar_seconds)
        .map(|i| (bars.timestamps[i], (bars.close[i] / bars.close[i - 1]).ln()))
        .collect()
}

/// The UTC hour of day of a unix time.
pub fn hour_of(t: i64) -> usize {
    (t.rem_euclid(86_400) / 3600) as usize
}

/// Whether a unix time falls on a Saturday or Sunday, UTC (1970-01-01 was a Thursday).
pub fn is_weekend(t: i64) -> bool {
    (t.div_euclid(86_400) + 3).rem_euclid(7) >= 5
}

/// A UTC seasonal variance profile: a multiplier of the per-bar variance for each hour of the
/// day, one set for weekdays and one for weekends (Saturday and Sunday, UTC), so a crypto
/// market's calmer weekends and its weekday sessions (the US open) each get their own shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// `[weekday, weekend][hour]`.
    pub hours: [[f64; 24]; 2],
}

impl Profile {
    /// No shape: every hour 1.
    pub fn flat() -> Profile {
        Profile {
            hours: [[1.0; 24]; 2],
        }
    }

    /// The multiplier at a unix time.
    pub fn at(&self, t: i64) -> f64 {
        self.hours[is_weekend(t) as usize][hour_of(t)]
    }
}

/// The per-bar variance of the price's moves across the market's overnight closures in the
/// `lookback_days` before `as_of`: each closure's log move (close before it to the first close
/// after it) squared, summed, over the bars the closures span. Closures are holes of more than
/// one bar and at most a day (a weekend, or a hole of days in the data, is left out: an
/// overnight closure is what a 24 h window crosses); `None` when there were none.
pub(crate) fn closure_variance(bars: &Bars, as_of: i64, lookback_days: f64) -> Option<f64> {
    let (mut sum_sq, mut spanned) = (0.0, 0.0);
    for i in lookback(bars, as_of, lookback_days) {
        let span = bars.timestamps[i] - bars.timestamps[i - 1];
        if span > bars.bar_seconds && span <= 86_400 {
            sum_sq += (bars.close[i] / bars.close[i - 1]).ln().powi(2);
            spanned += (span / bars.bar_seconds) as f64;
        }
    }
    (spanned > 0.0 && sum_sq.is_finite()).then(|| sum_sq / spanned)
}

/// How far a seasonal profile's open buckets move from 1: each bucket's estimate `x` is used
/// as `1 + PROFILE_SHRINK * (x - 1)`. A bucket rests on 10 to 200 returns of one to four weeks,
/// and its noise is sampled into every path; shrinking toward the flat profile scored better on
/// issue 15's walk-forward folds (docs/benchmarks.md, "Seasonal profiles": 0.5 to 0.75 about
/// alike for crypto, 0.75 best with the equities' sessions).
pub const PROFILE_SHRINK: f64 = 0.75;

/// The seasonal variance profile of some returns ([`Profile`]). Each (day kind, hour) bucket
/// with at least ten returns gets its mean absolute return relative to the open buckets' mean,
/// squared (a robust estimate of its variance ratio: one crash in an hour does not make that
/// hour loud for a month, as a mean square would), shrunk toward 1 by [`PROFILE_SHRINK`], then
/// scaled so the open buckets' mean is 1 (weekday buckets weighing 5, weekend ones 2: the mean
/// hour of a week). A weekend hour with fewer returns takes its weekday hour's value (a market
/// shut at weekends keeps the weekday shape); a weekday hour with fewer (a market's closed
/// hours) gets `closed_var`, the per-bar variance of the moves across its closures
/// ([`closure_variance`]), relative to the open buckets' mean square return, so paths move
/// through a closure about as far as the price jumps over one; without it it keeps 1.
pub(crate) fn hour_profile(rets: &[(i64, f64)], closed_var: Option<f64>) -> Profile {
    const MIN: usize = 10;
    const WEIGHT: [f64; 2] = [5.0, 2.0];
    let (mut sq, mut ab, mut n) = ([[0.0; 24]; 2], [[0.0; 24]; 2], [[0usize; 24]; 2]);
    for (t, r) in rets {
        let (w, h) = (is_weekend(*t) as usize, hour_of(*t));
        sq[w][h] += r * r;
        ab[w][h] += r.abs();
        n[w][h] += 1;
    }
    // the open buckets' mean square and mean absolute return, weighted by day kind
    let (mut var_open, mut abs_open, mut weight) = (0.0, 0.0, 0.0);
    for w in 0..2 {
        for h in 0..24 {
            if n[w][h] >= MIN {
                var_open += WEIGHT[w] * sq[w][h] / n[w][h] as f64;
                abs_open += WEIGHT[w] * ab[w][h] / n[w][h] as f64;
                weight += WEIGHT[w];
            }
        }
    }
    let mut profile = Profile::flat();
    if weight == 0.0 || var_open <= 0.0 || abs_open <= 0.0 {
        return profile;
    }
    let (var_open, abs_open) = (var_open / weight, abs_open / weight);
    let mut total = 0.0;
    for w in 0..2 {
        for h in 0..24 {
            if n[w][h] >= MIN {
                let raw = (ab[w][h] / n[w][h] as f64 / abs_open).powi(2);
                profile.hours[w][h] = 1.0 + PROFILE_SHRINK * (raw - 1.0);
                total += WEIGHT[w] * profile.hours[w][h];
            }
        }
    }
    // the level is the recent hours' mix: keep the open buckets' mean at 1
    let mean = total / weight;
    if mean <= 0.0 {
        return Profile::flat();
    }
    let [weekday, weekend] = &mut profile.hours;
    for (h, (d, e)) in weekday.iter_mut().zip(weekend.iter_mut()).enumerate() {
        if n[0][h] >= MIN {
            *d /= mean;
        } else if let Some(v) = closed_var {
            *d = (v / var_open).max(1e-3);
        }
        *e = if n[1][h] >= MIN { *e / mean } else { *d };
    }
    profile
}

/// The seasonal profile of a request's returns ([`hour_profile`], closed hours from the
/// closures in the same lookback) when `on`, else a flat profile.
pub(crate) fn profile_if(
    on: bool,
    rets: &[(i64, f64)],
    bars: &Bars,
    as_of: i64,
    lookback_days: f64,
) -> Profile {
    if on {
        hour_profile(rets, closure_variance(bars, as_of, lookback_days))
    } else {
        Profile::flat()
    }
}

/// A constant-level random walk: the per-bar variance, shaped by the hour of day and scaled
/// by a width, with Gaussian or Student-t steps.
pub(crate) struct WalkShape<'p> {
    pub var_bar: f64,
    pub bar_seconds: i64,
    pub profile: &'p Profile,
    pub width: f64,
    pub student_t_df: Option<f64>,
}

impl WalkShape<'_> {
    /// The standard deviation of each step of a grid that starts at `start_time`,
    /// `time_increment` seconds a step over `time_length`: the per-bar variance times the bars
    /// in a step and the profile at the step's start, its root times the width.
    pub(crate) fn step_sds(
        &self,
        start_time: i64,
        time_increment: u64,
        time_length: u64,
    ) -> Vec<f64> {
        let per_step = time_increment as f64 / self.bar_seconds as f64;
        let steps = (time_length / time_increment.max(1)) as i64;
        (0..steps)
            .map(|k| {
                let t = start_time + k * time_increment as i64;
                self.width * (self.var_bar * per_step * self.profile.at(t)).sqrt()
            })
            .collect()
    }
}

/// The paths of a [`WalkShape`] on the request's grid ([`WalkShape::step_sds`]).
pub(crate) fn level_walk(
    req: &ForecastRequest<'_>,
    shape: &WalkShape<'_>,
    rng: &mut dyn RngCore,
) -> Result<Paths, ForecastError> {
    let sd = shape.step_sds(req.start_time, req.time_increment, req.time_length);
    if sd.iter().any(|s| !s.is_finite()) {
        return Err(ForecastError::BadSigma(shape.var_bar));
    }
    random_walk(req, &sd, shape.student_t_df, rng)
}

/// Innovations: standard normal, or Student-t with `df` degrees of freedom scaled to unit
/// variance.
pub(crate) enum Innovations {
    Normal(Normal<f64>),
    StudentT(StudentT<f64>, f64),
}

impl Innovations {
    pub(crate) fn new(student_t_df: Option<f64>) -> Result<Innovations, ForecastError> {
        Ok(match student_t_df {
            Some(df) if df > 2.0 => Innovations::StudentT(
                StudentT::new(df).map_err(|e| ForecastError::Model(e.to_string()))?,
                (df / (df - 2.0)).sqrt(),
            ),
            _ => Innovations::Normal(
                Normal::new(0.0, 1.0).map_err(|e| ForecastError::Model(e.to_string()))?,
            ),
        })
    }

    pub(crate) fn sample(&self, rng: &mut dyn RngCore) -> f64 {
        match self {
            Innovations::Normal(d) => d.sample(rng),
            Innovations::StudentT(d, scale) => d.sample(rng) / scale,
        }
    }
}

/// Zero-drift log-price paths from the spot with independent steps of standard deviation
/// `sd[k]` (one per step of the request's grid).
pub(crate) fn random_walk(
    req: &ForecastRequest<'_>,
    sd: &[f64],
    student_t_df: Option<f64>,
    rng: &mut dyn RngCore,
) -> Result<Paths, ForecastError> {
    let z = Innovations::new(student_t_df)?;
    let mut data = Vec::with_capacity(req.num_simulations * (sd.len() + 1));
    for _ in 0..req.num_simulations {
        let mut log_p = req.spot.ln();
        data.push(req.spot);
        for s in sd {
            log_p += s * z.sample(rng);
            data.push(log_p.exp());
        }
    }
    Paths::from_flat(data, req.num_simulations).map_err(|e| ForecastError::Model(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// Minute bars with a return of `+a`/`-a` alternating, `a` larger in UTC hours 14-15.
    fn bars(n: i64, a: f64) -> Bars {
        let mut s = String::from("timestamp,open,high,low,close,volume\n");
        let mut p = 100.0f64;
        for k in 0..n {
            let t = k * 60;
            let h = (t % 86_400) / 3600;
            let step = if (14..16).contains(&h) { 3.0 * a } else { a };
            p *= if k % 2 == 0 {
                (step).exp()
            } else {
                (-step).exp()
            };
            s.push_str(&format!("{t},{p},{p},{p},{p},1\n"));
        }
        Bars::parse_csv(&s, 60, "t").unwrap()
    }

    fn req<'a>(b: &'a Bars, start: i64) -> ForecastRequest<'a> {
        ForecastRequest {
            asset: "BTC".into(),
            start_time: start,
            time_increment: 60,
            time_length: 3600,
            num_simulations: 2000,
            spot: 100.0,
            history: Some(b),
            as_of: start - 60,
        }
    }

    fn step_sd(p: &Paths, k: usize) -> f64 {
        let r: Vec<f64> = (0..p.n_paths())
            .map(|i| (p.row(i)[k + 1] / p.row(i)[k]).ln())
            .collect();
        (r.iter().map(|x| x * x).sum::<f64>() / r.len() as f64).sqrt()
    }

    #[test]
    fn ewma_tracks_the_recent_volatility_and_the_hour_of_day() {
        let b = bars(3 * 1440, 0.001);
        let start = 3 * 86_400 + 12 * 3600; // noon UTC, after three days of bars
        let m = Ewma::by_name("ewma").unwrap();
        let p = m
            .forecast(&req(&b, start), &mut ChaCha8Rng::seed_from_u64(1))
            .unwrap();
        assert_eq!((p.n_paths(), p.n_points()), (2000, 61));
        assert!(p.row(0)[0] == 100.0);
        // the EWMA level mixes the calm hours and the two loud ones: between 1 and 3 x 0.001
        let sd = step_sd(&p, 0);
        assert!(sd > 0.001 && sd < 0.003, "{sd}");
        // with the hour-of-day profile, the 14:00 steps are about 3x the noon steps, less
        // the shrinkage toward a flat profile (2.55x with 0.75)
        let tod = Ewma::by_name("ewma-tod").unwrap();
        let mut r = req(&b, 3 * 86_400 + 13 * 3600 + 30 * 60);
        r.time_length = 3600;
        let p = tod.forecast(&r, &mut ChaCha8Rng::seed_from_u64(2)).unwrap();
        let (calm, loud) = (step_sd(&p, 0), step_sd(&p, 40)); // 13:30 and 14:10
        let m = (22.0 + 2.0 * 3.0) / 24.0; // the mean absolute step, in units of 0.001
        let shrunk = |x: f64| 1.0 + PROFILE_SHRINK * (x - 1.0);
        let want = (shrunk((3.0f64 / m).powi(2)) / shrunk((1.0f64 / m).powi(2))).sqrt();
        assert!(
            (loud / calm / want - 1.0).abs() < 0.1,
            "{calm} {loud} {want}"
        );
        // Student-t steps keep the variance but fatten the tails
        let t = Ewma::by_name("ewma-t").unwrap();
        let p = t
            .forecast(&req(&b, start), &mut ChaCha8Rng::seed_from_u64(3))
            .unwrap();
        assert!((step_sd(&p, 0) / sd - 1.0).abs() < 0.1);
        // deterministic given the seed
        let again = t
            .forecast(&req(&b, start), &mut ChaCha8Rng::seed_from_u64(3))
            .unwrap();
        assert_eq!(p, again);
    }

    #[test]
    fn ewma_uses_only_the_past_and_needs_enough_of_it() {
        let b = bars(3 * 1440, 0.001);
        let m = Ewma::by_name("ewma").unwrap();
        // one hour of history: 59 returns, fewer than 120
        let e = m
            .forecast(&req(&b, 3600), &mut ChaCha8Rng::seed_from_u64(1))
            .unwrap_err();
        assert!(e.to_string().contains("120 needed"), "{e}");
        // bars after as_of do not change the forecast
        let start = 2 * 86_400;
        let cut = bars(2 * 1440 - 1, 0.001);
        let a = m
            .forecast(&req(&b, start), &mut ChaCha8Rng::seed_from_u64(4))
            .unwrap();
        let c = m
            .forecast(&req(&cut, start), &mut ChaCha8Rng::seed_from_u64(4))
            .unwrap();
        assert_eq!(a, c);
        assert!(Ewma::by_name("garch").is_none());
        // the half-life follows the horizon: 8 h for a day, 2 h (the floor) for an hour
        assert_eq!((auto_half_life(86_400), auto_half_life(3600)), (8.0, 2.0));
        assert_eq!(auto_half_life(30 * 86_400), 24.0);
        let mut r = req(&b, start);
        r.history = None;
        assert!(m.forecast(&r, &mut ChaCha8Rng::seed_from_u64(1)).is_err());
        // history that ended days before the request is refused, with the command that fixes it
        let r = req(&b, 3 * 86_400 + 5 * 86_400);
        let e = m
            .forecast(&r, &mut ChaCha8Rng::seed_from_u64(1))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("stale") && e.contains("data download --assets BTC"),
            "{e}"
        );
    }

    #[test]
    fn weekends_get_their_own_hours() {
        // 1970-01-03 and -04 were a Saturday and a Sunday
        assert!(!is_weekend(0) && !is_weekend(86_400) && !is_weekend(7 * 86_400 - 1));
        assert!(is_weekend(2 * 86_400) && is_weekend(4 * 86_400 - 1) && !is_weekend(4 * 86_400));
        // three weeks of minute bars, steps of +-a on weekdays and +-a/2 at weekends
        let a = 0.001f64;
        let mut s = String::from("timestamp,open,high,low,close,volume\n");
        let mut p = 100.0f64;
        for k in 0..21 * 1440i64 {
            let t = k * 60;
            let step = if is_weekend(t) { a / 2.0 } else { a };
            p *= if k % 2 == 0 {
                step.exp()
            } else {
                (-step).exp()
            };
            s.push_str(&format!("{t},{p},{p},{p},{p},1\n"));
        }
        let b = Bars::parse_csv(&s, 60, "t").unwrap();
        // the profile: a week's mean hour is 1; a weekend hour's absolute returns are half a
        // weekday hour's, its variance a quarter of it before the shrinkage
        let rets = returns_before(&b, 21 * 86_400, 14.0);
        let profile = hour_profile(&rets, None);
        let (wd, we) = (profile.hours[0][12], profile.hours[1][12]);
        let shrunk = |x: f64| 1.0 + PROFILE_SHRINK * (x - 1.0);
        let (raw_wd, raw_we) = ((7.0f64 / 6.0).powi(2), (7.0f64 / 12.0).powi(2));
        let mean = (5.0 * shrunk(raw_wd) + 2.0 * shrunk(raw_we)) / 7.0;
        assert!((wd - shrunk(raw_wd) / mean).abs() < 0.02, "{wd}");
        assert!((we - shrunk(raw_we) / mean).abs() < 0.02, "{we}");
        assert!(we / wd < 0.5, "{wd} {we}");
        // a forecast for Saturday, made on Friday night, is narrower than one for a weekday by
        // the profile: the level is the mean hour's, whichever days the last half-life held
        let m = Ewma::by_name("ewma-tod").unwrap();
        let saturday = 16 * 86_400 + 12 * 3600; // 1970-01-17
        let wednesday = 20 * 86_400 + 12 * 3600; // 1970-01-21
        let mut r = req(&b, saturday);
        r.as_of = saturday - 12 * 3600 - 60; // Friday 23:59
        let sat = step_sd(
            &m.forecast(&r, &mut ChaCha8Rng::seed_from_u64(5)).unwrap(),
            0,
        );
        let wed = step_sd(
            &m.forecast(&req(&b, wednesday), &mut ChaCha8Rng::seed_from_u64(5))
                .unwrap(),
            0,
        );
        assert!((sat / (a * (we / wd).sqrt()) - 1.0).abs() < 0.1, "{sat}");
        assert!((wed / a - 1.0).abs() < 0.1, "{wed}");
    }

    /// Five-minute bars of a market open 14:00-20:00 UTC on every day, steps of `+a`/`-a`,
    /// and an overnight jump of `+g`/`-g` (alternating nights) at each open.
    fn session_bars(days: i64, a: f64, g: f64) -> Bars {
        let mut s = String::from("timestamp,open,high,low,close,volume\n");
        let mut p = 100.0f64;
        for d in 0..days {
            for k in 0..72 {
                let t = d * 86_400 + 14 * 3600 + k * 300;
                let r = if k == 0 && d > 0 {
                    if d % 2 == 0 {
                        g
                    } else {
                        -g
                    }
                } else if k % 2 == 0 {
                    a
                } else {
                    -a
                };
                p *= r.exp();
                s.push_str(&format!("{t},{p},{p},{p},{p},1\n"));
            }
        }
        Bars::parse_csv(&s, 300, "t").unwrap()
    }

    #[test]
    fn closed_hours_move_as_far_as_the_price_jumps_over_a_closure() {
        let (a, g) = (0.001, 0.01);
        let b = session_bars(40, a, g);
        let as_of = 39 * 86_400 + 15 * 3600;
        // each night's jump spread over the 217 bars from the last close (19:55) to the open
        let v = closure_variance(&b, as_of, 30.0).unwrap();
        assert!((v / (g * g / 217.0) - 1.0).abs() < 1e-9, "{v}");
        let rets = returns_before(&b, as_of, 30.0);
        let profile = hour_profile(&rets, Some(v));
        assert!(
            (profile.hours[0][15] - 1.0).abs() < 1e-9,
            "open hours average 1: {profile:?}"
        );
        let closed = g * g / 217.0 / (a * a);
        assert!(
            (profile.hours[0][2] / closed - 1.0).abs() < 1e-6,
            "{profile:?}"
        );
        assert_eq!(
            hour_profile(&rets, None).hours[0][2],
            1.0,
            "no closures: as before"
        );
        // a day's paths spread as far as the bars do over a day: 72 steps and one jump
        let m = Ewma::by_name("ewma-tod").unwrap();
        let r = ForecastRequest {
            asset: "NVDAX".into(),
            start_time: as_of + 60,
            time_increment: 300,
            time_length: 86_400,
            num_simulations: 4000,
            spot: 100.0,
            history: Some(&b),
            as_of,
        };
        let p = m.forecast(&r, &mut ChaCha8Rng::seed_from_u64(4)).unwrap();
        let last = p.n_points() - 1;
        let day: Vec<f64> = (0..p.n_paths())
            .map(|i| (p.row(i)[last] / 100.0).ln())
            .collect();
        let sd = (day.iter().map(|x| x * x).sum::<f64>() / day.len() as f64).sqrt();
        let want = (72.0 * a * a + g * g).sqrt();
        assert!((sd / want - 1.0).abs() < 0.1, "{sd} vs {want}");
    }
}
