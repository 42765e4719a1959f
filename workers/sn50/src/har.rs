//! HAR-RV forecasters (Corsi's heterogeneous autoregression of realised variance): a classical
//! anchor that reads volatility at three horizons, fitted on each request's own history.
//!
//! For every request, [`Har`] cuts the consecutive log returns of the bars that closed before
//! the request (the last `lookback_days`) into UTC days, and measures each day's realised
//! variance per bar (the mean squared return, so days with closures or missing bars stay
//! comparable; days with fewer than `min_day_returns` returns are left out). It fits by least
//! squares `m[d+1] = b0 + b1·m[d] + b2·mean(m[d-4..=d]) + b3·mean(m[d-21..=d])` over the days it
//! has, forecasts the next day's per-bar variance from the latest complete days, and simulates a
//! zero-drift random walk with that width (optionally shaped by the hour-of-day profile, with
//! Gaussian or unit-variance Student-t steps). A forecast that is not positive, or a fit that is
//! singular, falls back to the last week's mean.
//!
//! Names (`--model` / `--reference`): `har`, `har-tod`, `har-tod-t`.
//!
//! It does not use the request's own (incomplete) day, intraday jumps, or overnight returns as
//! separate regressors.

use rand::RngCore;

use super::classical::{check_request, level_walk, profile_if, returns_before, too_few, WalkShape};
use super::crps::Paths;
use super::forecast::{ForecastError, ForecastRequest, Forecaster};

/// The names [`Har::by_name`] knows.
pub const HAR_MODELS: &[&str] = &["har", "har-tod", "har-tod-t"];

/// The longest lag the regression reads, in days.
const MONTH: usize = 22;
/// The middle lag, in days.
const WEEK: usize = 5;

/// A HAR-RV random walk (see the module doc).
#[derive(Debug, Clone, PartialEq)]
pub struct Har {
    name: String,
    /// How much history is read, in days.
    pub lookback_days: f64,
    /// A day counts if it has at least this many returns.
    pub min_day_returns: usize,
    /// The fewest usable days a fit may rest on.
    pub min_days: usize,
    /// Student-t steps with these degrees of freedom (unit variance); Gaussian if None.
    pub student_t_df: Option<f64>,
    /// Shape the step variance by the hour of day.
    pub time_of_day: bool,
    /// Multiplies the forecast volatility (1 = as fitted).
    pub width: f64,
}

impl Har {
    /// A named variant (see [`HAR_MODELS`]).
    pub fn by_name(name: &str) -> Option<Har> {
        if !HAR_MODELS.contains(&name) {
            return None;
        }
        Some(Har {
            name: name.to_string(),
            lookback_days: 120.0,
            min_day_returns: 12,
            min_days: MONTH + 10,
            student_t_df: name.ends_with("-t").then_some(5.0),
            time_of_day: name.contains("-tod"),
            width: 1.0,
        })
    }
}

/// Per-bar realised variance of each complete UTC day before `as_of` with enough returns,
/// oldest first.
pub fn daily_variances(rets: &[(i64, f64)], as_of: i64, min_day_returns: usize) -> Vec<f64> {
    let today = as_of.div_euclid(86_400);
    let mut out = Vec::new();
    let mut i = 0;
    while i < rets.len() {
        let day = rets[i].0.div_euclid(86_400);
        let mut j = i;
        let mut sum = 0.0;
        while j < rets.len() && rets[j].0.div_euclid(86_400) == day {
            sum += rets[j].1 * rets[j].1;
            j += 1;
        }
        if day < today && j - i >= min_day_returns {
            out.push(sum / (j - i) as f64);
        }
        i = j;
    }
    out
}

/// The HAR regressors for the day after index `d`: `[1, m[d], weekly mean, monthly mean]`.
fn regressors(m: &[f64], d: usize) -> [f64; 4] {
    let mean = |n: usize| m[d + 1 - n..=d].iter().sum::<f64>() / n as f64;
    [1.0, m[d], mean(WEEK), mean(MONTH)]
}

/// Solve the 4x4 system `a x = b` by Gaussian elimination with partial pivoting.
fn solve4(mut a: [[f64; 4]; 4], mut b: [f64; 4]) -> Option<[f64; 4]> {
    for c in 0..4 {
        let p = (c..4).max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs()))?;
        if a[p][c].abs() < 1e-300 {
            return None;
        }
        a.swap(c, p);
        b.swap(c, p);
        let pivot = a[c];
        for r in c + 1..4 {
            let f = a[r][c] / pivot[c];
            for (x, p) in a[r][c..].iter_mut().zip(&pivot[c..]) {
                *x -= f * p;
            }
            b[r] -= f * b[c];
        }
    }
    let mut x = [0.0; 4];
    for c in (0..4).rev() {
        let s: f64 = (c + 1..4).map(|k| a[c][k] * x[k]).sum();
        x[c] = (b[c] - s) / a[c][c];
    }
    x.iter().all(|v| v.is_finite()).then_some(x)
}

/// Fit the HAR regression to daily per-bar variances and forecast the next day's; the last
/// week's mean if the fit is singular or its forecast not positive. `None` with fewer than
/// `MONTH + 1` days.
pub fn forecast_variance(m: &[f64]) -> Option<f64> {
    if m.len() < MONTH + 1 {
        return None;
    }
    // scale to O(1) so the normal equations are well conditioned
    let scale = m.iter().sum::<f64>() / m.len() as f64;
    if !(scale.is_finite() && scale > 0.0) {
        return None;
    }
    let m: Vec<f64> = m.iter().map(|v| v / scale).collect();
    let mut xtx = [[0.0; 4]; 4];
    let mut xty = [0.0; 4];
    for d in MONTH - 1..m.len() - 1 {
        let x = regressors(&m, d);
        for i in 0..4 {
            for j in 0..4 {
                xtx[i][j] += x[i] * x[j];
            }
            xty[i] += x[i] * m[d + 1];
        }
    }
    let last = regressors(&m, m.len() - 1);
    let fallback = last[2];
    let f = solve4(xtx, xty)
        .map(|b| (0..4).map(|i| b[i] * last[i]).sum::<f64>())
        .filter(|f| f.is_finite() && *f > 0.0)
        .unwrap_or(fallback);
    Some(f * scale)
}

impl Forecaster for Har {
    fn name(&self) -> &str {
        &self.name
    }

    fn forecast(
        &self,
        req: &ForecastRequest<'_>,
        rng: &mut dyn RngCore,
    ) -> Result<Paths, ForecastError> {
        let bars = check_request(&self.name, req)?;
        let rets = returns_before(bars, req.as_of, self.lookback_days);
        let days = daily_variances(&rets, req.as_of, self.min_day_returns);
        if days.len() < self.min_days.max(MONTH + 1) {
            return Err(ForecastError::Model(format!(
                "{}: {} usable days of {} before the request ({} returns), {} needed",
                self.name,
                days.len(),
                req.asset,
                rets.len(),
                self.min_days.max(MONTH + 1)
            )));
        }
        let var_bar = forecast_variance(&days).ok_or_else(|| too_few(&self.name, req, 0, 1))?;
        let profile = profile_if(self.time_of_day, &rets, bars, req.as_of, self.lookback_days);
        let shape = WalkShape {
            var_bar,
            bar_seconds: bars.bar_seconds,
            profile: &profile,
            width: self.width,
            student_t_df: self.student_t_df,
        };
        level_walk(req, &shape, rng)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daily_variances_keep_complete_days_with_enough_returns() {
        let day = 86_400;
        let mut rets = Vec::new();
        for k in 0..20 {
            rets.push((k * 300, 0.01)); // day 0: 20 returns of 1e-4
        }
        for k in 0..5 {
            rets.push((day + k * 300, 0.1)); // day 1: only 5 returns
        }
        for k in 0..30 {
            rets.push((2 * day + k * 300, if k % 2 == 0 { 0.02 } else { -0.02 }));
        }
        for k in 0..30 {
            rets.push((3 * day + k * 300, 0.5)); // day 3: the request's own day
        }
        let m = daily_variances(&rets, 3 * day + 10 * 3600, 12);
        assert_eq!(m.len(), 2);
        assert!(
            (m[0] - 1e-4).abs() < 1e-12 && (m[1] - 4e-4).abs() < 1e-12,
            "{m:?}"
        );
    }

    #[test]
    fn har_forecasts_a_persistent_series_and_falls_back_when_it_cannot() {
        // an AR(1) in variance: m[d+1] = 0.2e-4 + 0.8 m[d] (+ a weekly wobble)
        let mut m = vec![3e-4];
        for d in 0..80 {
            let wobble = if d % 7 == 0 { 0.3e-4 } else { 0.0 };
            m.push(0.2e-4 + 0.8 * m[d] + wobble);
        }
        let f = forecast_variance(&m).unwrap();
        let last = *m.last().unwrap();
        let naive = 0.2e-4 + 0.8 * last;
        assert!((f / naive - 1.0).abs() < 0.15, "{f} {naive}");
        assert!(forecast_variance(&m[..10]).is_none());
        // a constant series is singular: the weekly mean
        let flat = vec![2e-4; 40];
        assert!((forecast_variance(&flat).unwrap() - 2e-4).abs() < 1e-12);
        assert!(Har::by_name("har-tod-t").unwrap().time_of_day);
        assert!(Har::by_name("harv").is_none());
    }
}
