//! Width calibration on recent windows: a forecaster wrapped so that, at every request, the
//! spread of its paths is scaled by the factor that would have scored best on the asset's own
//! last few realised prompts of the same shape.
//!
//! [`Calibrated`] replays the wrapped model on up to `windows` earlier prompts (the same grid,
//! realised before the request; the most recent first, one prompt length apart, within
//! `2 x windows` prompt lengths), each with the
//! history and spot it would have had then, scores its paths with every candidate width (log
//! returns from the spot multiplied by the width) by the validator's total score of the
//! competition of that time length, and answers the request with the width of the lowest summed
//! score. Nothing after the request is read.
//!
//! Names: `cal-` before any classical name (`cal-garch-tod-t`, `cal-ewma-tod-t`, ...).
//!
//! It does not calibrate the shape (tails, skew) or per hour of day, and costs `windows` extra
//! forecasts per request; with fewer than `min_windows` realised earlier prompts it answers with
//! the wrapped model's own width.

use rand::RngCore;

use super::classical::check_request;
use super::competition::Competition;
use super::crps::Paths;
use super::forecast::{ForecastError, ForecastRequest, Forecaster};

/// The prefix that wraps a model name in [`Calibrated`].
pub const PREFIX: &str = "cal-";

/// A forecaster whose path width is fitted on recent realised prompts (see the module doc).
pub struct Calibrated {
    name: String,
    inner: Box<dyn Forecaster>,
    /// The candidate widths.
    pub widths: Vec<f64>,
    /// How many earlier prompts are replayed.
    pub windows: usize,
    /// The fewest realised earlier prompts a width may be chosen on.
    pub min_windows: usize,
    /// Paths per replayed prompt.
    pub replay_paths: usize,
}

impl Calibrated {
    /// Wrap `inner`, named `cal-{its name}`.
    pub fn new(inner: Box<dyn Forecaster>) -> Calibrated {
        Calibrated {
            name: format!("{PREFIX}{}", inner.name()),
            inner,
            widths: vec![0.7, 0.8, 0.9, 1.0, 1.1, 1.25],
            windows: 8,
            min_windows: 4,
            replay_paths: 200,
        }
    }

    /// The width that scored best on the earlier prompts, and how many were scored.
    pub fn fit_width(
        &self,
        req: &ForecastRequest<'_>,
        rng: &mut dyn RngCore,
    ) -> Result<(f64, usize), ForecastError> {
        let bars = check_request(&self.name, req)?;
        let Some(competition) = Competition::all()
            .into_iter()
            .find(|c| c.time_length == req.time_length)
        else {
            return Ok((1.0, 0));
        };
        let lead = req.start_time - req.as_of;
        let mut totals = vec![0.0; self.widths.len()];
        let mut scored = 0;
        // the window ending at the request's start is not realised yet; look back far enough
        // to find `windows` whole ones across a few gaps
        for k in 1..=2 * self.windows {
            if scored == self.windows {
                break;
            }
            let start = req.start_time - k as i64 * req.time_length as i64;
            // realised by the request: the window's last price is a close before as_of
            if start + req.time_length as i64 > req.as_of {
                continue;
            }
            let as_of = start - lead;
            let Some(spot) = bars.close_by(as_of, 600) else {
                continue;
            };
            let Ok(real) =
                bars.price_grid(start, req.time_length as i64, req.time_increment as i64)
            else {
                continue;
            };
            // the validator skips missing prices (closed hours); a window needs its last price
            // and at least a tenth of the others to say anything
            let present = real.iter().filter(|p| !p.is_nan()).count();
            if real.last().is_none_or(|p| p.is_nan()) || present * 10 < real.len() {
                continue;
            }
            let past = ForecastRequest {
                start_time: start,
                as_of,
                spot,
                num_simulations: self.replay_paths.min(req.num_simulations).max(1),
                ..req.clone()
            };
            let Ok(paths) = self.inner.forecast(&past, rng) else {
                continue;
            };
            for (w, total) in self.widths.iter().zip(totals.iter_mut()) {
                let s =
                    super::vol::miner_total_score(&scale(&paths, spot, *w)?, &real, &competition);
                if !s.is_finite() || s < 0.0 {
                    continue;
                }
                *total += s;
            }
            scored += 1;
        }
        if scored < self.min_windows {
            return Ok((1.0, scored));
        }
        let best = (0..self.widths.len())
            .min_by(|&a, &b| totals[a].total_cmp(&totals[b]))
            .map_or(1.0, |i| self.widths[i]);
        Ok((best, scored))
    }
}

/// Paths with their log returns from `spot` multiplied by `width`.
fn scale(paths: &Paths, spot: f64, width: f64) -> Result<Paths, ForecastError> {
    if width == 1.0 {
        return Ok(paths.clone());
    }
    let ln_spot = spot.ln();
    let data: Vec<f64> = paths
        .as_flat()
        .iter()
        .map(|p| (ln_spot + width * (p.ln() - ln_spot)).exp())
        .collect();
    Paths::from_flat(data, paths.n_paths()).map_err(|e| ForecastError::Model(e.to_string()))
}

impl Forecaster for Calibrated {
    fn name(&self) -> &str {
        &self.name
    }

    fn forecast(
        &self,
        req: &ForecastRequest<'_>,
        rng: &mut dyn RngCore,
    ) -> Result<Paths, ForecastError> {
        let (width, _) = self.fit_width(req, rng)?;
        let paths = self.inner.forecast(req, rng)?;
        scale(&paths, req.spot, width)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classical::Ewma;
    use crate::data::Bars;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use rand_distr::{Distribution, Normal};

    /// Minute bars whose true per-minute volatility is `sd`, `days` long.
    fn bars(days: i64, sd: f64) -> Bars {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let z = Normal::new(0.0, sd).unwrap();
        let mut s = String::from("timestamp,open,high,low,close,volume\n");
        let mut p = 100.0f64;
        for k in 0..days * 1440 {
            p *= f64::exp(z.sample(&mut rng));
            s.push_str(&format!("{},{p},{p},{p},{p},1\n", k * 60));
        }
        Bars::parse_csv(&s, 60, "t").unwrap()
    }

    #[test]
    fn a_model_twice_too_wide_is_narrowed_and_a_right_one_is_kept() {
        let b = bars(4, 0.001);
        let start = 3 * 86_400 + 12 * 3600;
        let req = ForecastRequest {
            asset: "BTC".into(),
            start_time: start,
            time_increment: 60,
            time_length: 3600,
            num_simulations: 500,
            spot: b.close_by(start - 60, 60).unwrap(),
            history: Some(&b),
            as_of: start - 60,
        };
        let mut wide = Ewma::by_name("ewma").unwrap();
        wide.width = 2.0;
        let cal = Calibrated::new(Box::new(wide));
        assert_eq!(cal.name(), "cal-ewma");
        let (w, n) = cal
            .fit_width(&req, &mut ChaCha8Rng::seed_from_u64(1))
            .unwrap();
        assert_eq!(n, 8);
        assert!(w <= 0.8, "{w}");
        let right = Calibrated::new(Box::new(Ewma::by_name("ewma").unwrap()));
        let (w, _) = right
            .fit_width(&req, &mut ChaCha8Rng::seed_from_u64(1))
            .unwrap();
        assert!((0.8..=1.1).contains(&w), "{w}");
        // the answer is the wrapped model's paths at that width, from the spot
        let p = right
            .forecast(&req, &mut ChaCha8Rng::seed_from_u64(2))
            .unwrap();
        assert_eq!((p.n_paths(), p.n_points()), (500, 61));
        assert_eq!(p.row(3)[0], req.spot);
        // without earlier realised prompts, the model's own width
        let early = ForecastRequest {
            start_time: 3 * 3600,
            as_of: 3 * 3600 - 60,
            spot: b.close_by(3 * 3600 - 60, 60).unwrap(),
            ..req.clone()
        };
        let mut short = Ewma::by_name("ewma").unwrap();
        short.min_returns = 10;
        let (w, n) = Calibrated::new(Box::new(short))
            .fit_width(&early, &mut ChaCha8Rng::seed_from_u64(1))
            .unwrap();
        assert_eq!((w, n), (1.0, 1));
    }
}
