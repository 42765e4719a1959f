//! Volatility of volatility as a wrapper: `vov:NU:MODEL` answers with MODEL's paths, each
//! path's log move from the spot multiplied by its own random factor `exp(NU*z - NU^2)`,
//! `z ~ N(0, 1)`, so that the paths' mean square move is kept (`E[m^2] = 1`) while their
//! spread of widths is that of a log-normal volatility with standard deviation `NU`.
//!
//! Why: per-step fat-tailed innovations (Student-t) average out over the 60 or 288 steps of a
//! prompt (the sum of many t steps is close to normal), but the realised moves of a day are
//! fat-tailed because the day's volatility itself is unknown. A scale mixture over whole
//! paths keeps that uncertainty to the end of the horizon, where the SN50 scoring intervals
//! weigh it.
//!
//! What it does not do: fit `NU` (it is given; `score backtest` compares values), or change
//! the model's median path or its per-step shape other than by the one factor per path.

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use super::crps::Paths;
use super::forecast::{ForecastError, ForecastRequest, Forecaster};

/// The prefix of a wrapped name: `vov:NU:MODEL`.
pub const PREFIX: &str = "vov:";

/// `(NU, MODEL)` of `vov:NU:MODEL`; `None` when `name` is not one; an error naming the fix
/// when NU is not a number in `(0, 2]`.
pub fn parse(name: &str) -> Option<Result<(f64, &str), String>> {
    let rest = name.trim().strip_prefix(PREFIX)?;
    let (nu, model) = match rest.split_once(':') {
        Some(x) => x,
        None => {
            return Some(Err(format!(
                "{name:?}: write vov:NU:MODEL, e.g. vov:0.3:garch-tod-t"
            )))
        }
    };
    Some(match nu.parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 2.0 => Ok((v, model)),
        _ => Err(format!(
            "{name:?}: NU {nu:?} must be a number in (0, 2] (the log-volatility's standard deviation)"
        )),
    })
}

/// A forecaster whose paths get one random width factor each.
pub struct Vov {
    name: String,
    nu: f64,
    inner: Box<dyn Forecaster>,
}

impl Vov {
    pub fn new(nu: f64, inner: Box<dyn Forecaster>) -> Self {
        Vov {
            name: format!("{PREFIX}{nu}:{}", inner.name()),
            nu,
            inner,
        }
    }
}

impl Forecaster for Vov {
    fn name(&self) -> &str {
        &self.name
    }

    fn time_increment(&self) -> Option<u64> {
        self.inner.time_increment()
    }

    fn forecast(
        &self,
        req: &ForecastRequest<'_>,
        rng: &mut dyn RngCore,
    ) -> Result<Paths, ForecastError> {
        let mut inner_rng = ChaCha8Rng::seed_from_u64(rng.next_u64());
        let paths = self.inner.forecast(req, &mut inner_rng)?;
        let mut factor_rng = ChaCha8Rng::seed_from_u64(rng.next_u64());
        let points = paths.n_points();
        let mut data = paths.as_flat().to_vec();
        for row in data.chunks_mut(points) {
            let z: f64 = StandardNormal.sample(&mut factor_rng);
            let m = (self.nu * z - self.nu * self.nu).exp();
            let s0 = row[0];
            for x in row.iter_mut().skip(1) {
                *x = s0 * ((*x / s0).ln() * m).exp();
            }
        }
        Paths::from_flat(data, paths.n_paths()).map_err(|e| ForecastError::Model(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::constants::Sn50Config;
    use crate::forecast::Gbm;

    #[test]
    fn each_path_is_widened_or_narrowed_as_a_whole() {
        let req = ForecastRequest {
            asset: "BTC".into(),
            start_time: 1_700_000_000,
            time_increment: 300,
            time_length: 86_400,
            num_simulations: 4000,
            spot: 100.0,
            history: None,
            as_of: 1_700_000_000,
        };
        let v = Vov::new(0.5, Box::new(Gbm::new(Sn50Config::default())));
        assert_eq!(v.name(), "vov:0.5:gbm");
        let p = v.forecast(&req, &mut ChaCha8Rng::seed_from_u64(3)).unwrap();
        let g = Gbm::new(Sn50Config::default())
            .forecast(&req, &mut ChaCha8Rng::seed_from_u64(9))
            .unwrap();
        let last = |p: &Paths| -> Vec<f64> {
            p.as_flat()
                .chunks(p.n_points())
                .map(|r| (r[r.len() - 1] / r[0]).ln())
                .collect()
        };
        let moments = |x: &[f64]| {
            let n = x.len() as f64;
            let m2 = x.iter().map(|v| v * v).sum::<f64>() / n;
            let m4 = x.iter().map(|v| v.powi(4)).sum::<f64>() / n;
            (m2, m4 / (m2 * m2))
        };
        let (v2, vk) = moments(&last(&p));
        let (g2, gk) = moments(&last(&g));
        // the mean square move is kept (within sampling error), the tails are fatter
        assert!((v2 / g2 - 1.0).abs() < 0.15, "{v2} vs {g2}");
        assert!(gk < 3.5 && vk > 4.0, "kurtosis gbm {gk}, vov {vk}");
        assert!(p.as_flat().chunks(p.n_points()).all(|r| r[0] == 100.0));
        assert_eq!(parse("vov:0.3:garch-tod-t"), Some(Ok((0.3, "garch-tod-t"))));
        assert!(parse("vov:x:gbm").unwrap().unwrap_err().contains("(0, 2]"));
        assert!(parse("vov:0.3")
            .unwrap()
            .unwrap_err()
            .contains("vov:NU:MODEL"));
        assert_eq!(parse("gbm"), None);
    }
}
