//! The hindsight ceiling: paths whose width is the window's own realised volatility, read from
//! the bars of the window being scored. Not a forecaster (it reads the future); a ruler's mark
//! for what a volatility forecast could reach at best, so a target can be set against it.
//!
//! `hindsight` is a constant-width Gaussian random walk at the window's realised per-bar
//! variance (the "GBM that knew each window's realised volatility in advance" of issue 15);
//! `hindsight-t` the same with unit-variance Student-t steps (5 degrees of freedom);
//! `hindsight-tod-t` spreads that variance over the window by the seasonal profile of the bars
//! before the request ([`super::classical::Profile`]), as `garch-tod-t` does, so it is the
//! ceiling of the classical models' family: a perfect level with their shape.
//!
//! Only `synth-city score backtest` builds it ([`by_name`] is not in
//! [`super::forecast::MODELS`]); the miner, the champions and the gate cannot name it. A window
//! with fewer than ten consecutive-bar returns of its own is an error (the backtest answers it
//! with the GBM and records why).

use rand::RngCore;

use super::classical::{check_request, level_walk, profile_if, returns_before, WalkShape};
use super::crps::Paths;
use super::forecast::{ForecastError, ForecastRequest, Forecaster};

/// The names [`by_name`] knows.
pub const HINDSIGHT_MODELS: &[&str] = &["hindsight", "hindsight-t", "hindsight-tod-t"];

/// The fewest returns of the window a width may rest on.
const MIN_RETURNS: usize = 10;

/// The hindsight ceiling (see the module doc).
#[derive(Debug, Clone, PartialEq)]
pub struct Hindsight {
    name: String,
    time_of_day: bool,
    student_t_df: Option<f64>,
}

/// A named variant (see [`HINDSIGHT_MODELS`]).
pub fn by_name(name: &str) -> Option<Hindsight> {
    HINDSIGHT_MODELS.contains(&name).then(|| Hindsight {
        name: name.to_string(),
        time_of_day: name.contains("-tod"),
        student_t_df: name.ends_with("-t").then_some(5.0),
    })
}

impl Forecaster for Hindsight {
    fn name(&self) -> &str {
        &self.name
    }

    fn forecast(
        &self,
        req: &ForecastRequest<'_>,
        rng: &mut dyn RngCore,
    ) -> Result<Paths, ForecastError> {
        let bars = check_request(&self.name, req)?;
        let lookback_days = 30.0;
        let past = returns_before(bars, req.as_of, lookback_days);
        let profile = profile_if(self.time_of_day, &past, bars, req.as_of, lookback_days);
        // the returns of the bars that open and close inside the window, deseasonalised
        let end = req.start_time + req.time_length as i64;
        let window: Vec<f64> = returns_before(bars, end, req.time_length as f64 / 86_400.0)
            .into_iter()
            .map(|(t, r)| r * r / profile.at(t))
            .collect();
        if window.len() < MIN_RETURNS {
            return Err(ForecastError::Model(format!(
                "{}: {} returns of {} inside the window, {MIN_RETURNS} needed",
                self.name,
                window.len(),
                req.asset
            )));
        }
        let shape = WalkShape {
            var_bar: window.iter().sum::<f64>() / window.len() as f64,
            bar_seconds: bars.bar_seconds,
            profile: &profile,
            width: 1.0,
            student_t_df: self.student_t_df,
        };
        level_walk(req, &shape, rng)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Bars;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn the_width_is_the_windows_own() {
        // minute bars: steps of +-0.001 for two days, then +-0.004 in the window
        let mut s = String::from("timestamp,open,high,low,close,volume\n");
        let mut p = 100.0f64;
        for k in 0..(2 * 1440 + 120i64) {
            let a = if k >= 2 * 1440 { 0.004f64 } else { 0.001 };
            p *= if k % 2 == 0 { a.exp() } else { (-a).exp() };
            s.push_str(&format!("{},{p},{p},{p},{p},1\n", k * 60));
        }
        let b = Bars::parse_csv(&s, 60, "t").unwrap();
        let start = 2 * 86_400 + 60;
        let req = ForecastRequest {
            asset: "BTC".into(),
            start_time: start,
            time_increment: 60,
            time_length: 3600,
            num_simulations: 4000,
            spot: 100.0,
            history: Some(&b),
            as_of: start - 60,
        };
        let m = by_name("hindsight").unwrap();
        let paths = m.forecast(&req, &mut ChaCha8Rng::seed_from_u64(1)).unwrap();
        let sd = ((0..paths.n_paths())
            .map(|i| (paths.row(i)[1] / paths.row(i)[0]).ln().powi(2))
            .sum::<f64>()
            / paths.n_paths() as f64)
            .sqrt();
        assert!((sd / 0.004 - 1.0).abs() < 0.05, "{sd}");
        assert!(by_name("garch-tod-t").is_none());
        assert!(!crate::forecast::is_model_name("hindsight"));
        // a window past the bars' end has nothing to read
        let late = ForecastRequest {
            start_time: 2 * 86_400 + 7200,
            as_of: 2 * 86_400 + 7140,
            ..req
        };
        let e = m.forecast(&late, &mut ChaCha8Rng::seed_from_u64(1));
        assert!(e.unwrap_err().to_string().contains("inside the window"));
    }
}
