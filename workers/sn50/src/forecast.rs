//! The [`Forecaster`] trait every SN50 model implements (the reference GBM here, trained models
//! in later work), and [`Gbm`], the reference miner's baseline exactly: zero drift, arithmetic
//! returns `r ~ N(0, sigma*sqrt(dt))` with `dt = time_increment/3600`, paths
//! `S0 * [1, cumprod(1 + r)]` from the spot at request time, the `SIGMA_MAP` hourly sigmas.
//! Rounding to 8 significant digits happens where a response is built
//! ([`super::response::encode_price`]), for every model alike.

use rand::RngCore;
use rand_distr::{Distribution, Normal};

use super::constants::Sn50Config;
use super::crps::Paths;
use super::data::Bars;

/// Errors from a forecaster.
#[derive(Debug, thiserror::Error)]
pub enum ForecastError {
    #[error("spot price {0} must be positive and finite")]
    BadSpot(f64),
    #[error("time_increment {increment} must be positive and divide time_length {length}")]
    BadGrid { increment: u64, length: u64 },
    #[error("sigma {0} must be non-negative and finite")]
    BadSigma(f64),
    #[error("num_simulations must be positive")]
    NoPaths,
    #[error("unknown model {0:?}: available models are {1}")]
    UnknownModel(String, String),
    #[error("{0}")]
    Model(String),
}

/// What a model is asked for: one SN50 request, plus the market history it may look at.
#[derive(Debug, Clone)]
pub struct ForecastRequest<'a> {
    pub asset: String,
    /// `start_time` in unix seconds.
    pub start_time: i64,
    pub time_increment: u64,
    pub time_length: u64,
    pub num_simulations: usize,
    /// The spot price at request time (what the reference miner fetches from Pyth).
    pub spot: f64,
    /// Bars of this asset, if any; a model must only use bars that closed by `as_of`.
    pub history: Option<&'a Bars>,
    /// The request time: the latest moment whose data a model may use.
    pub as_of: i64,
}

impl ForecastRequest<'_> {
    /// `time_length // time_increment + 1`.
    pub fn num_points(&self) -> usize {
        (self.time_length / self.time_increment) as usize + 1
    }

    fn check(&self) -> Result<(), ForecastError> {
        if !(self.spot.is_finite() && self.spot > 0.0) {
            return Err(ForecastError::BadSpot(self.spot));
        }
        if self.time_increment == 0 || self.time_length % self.time_increment != 0 {
            return Err(ForecastError::BadGrid {
                increment: self.time_increment,
                length: self.time_length,
            });
        }
        if self.num_simulations == 0 {
            return Err(ForecastError::NoPaths);
        }
        Ok(())
    }
}

/// A model that simulates price paths for an SN50 request: `num_simulations` rows of
/// `num_points()` prices, the first at `start_time`.
pub trait Forecaster: Send + Sync {
    /// The name used by `--model`.
    fn name(&self) -> &str;
    /// Simulate paths; all randomness must come from `rng` so runs are reproducible.
    fn forecast(
        &self,
        req: &ForecastRequest<'_>,
        rng: &mut dyn RngCore,
    ) -> Result<Paths, ForecastError>;
    /// The one step size, in seconds, this forecaster simulates; `None` when it takes any
    /// (the GBM). The miner serves each step size with its own model.
    fn time_increment(&self) -> Option<u64> {
        None
    }
}

/// The reference miner's GBM.
#[derive(Debug, Clone)]
pub struct Gbm {
    config: Sn50Config,
    /// A fixed sigma for every asset instead of the sigma map.
    pub sigma_override: Option<f64>,
}

impl Gbm {
    /// GBM with the sigmas of `config` (`SIGMA_MAP`, 0.005 for unknown assets).
    pub fn new(config: Sn50Config) -> Self {
        Gbm {
            config,
            sigma_override: None,
        }
    }

    /// The hourly sigma used for `asset`.
    pub fn sigma(&self, asset: &str) -> f64 {
        self.sigma_override
            .unwrap_or_else(|| self.config.sigma(asset))
    }
}

impl Forecaster for Gbm {
    fn name(&self) -> &str {
        "gbm"
    }

    fn forecast(
        &self,
        req: &ForecastRequest<'_>,
        rng: &mut dyn RngCore,
    ) -> Result<Paths, ForecastError> {
        req.check()?;
        let sigma = self.sigma(&req.asset);
        if !(sigma.is_finite() && sigma >= 0.0) {
            return Err(ForecastError::BadSigma(sigma));
        }
        let dt = req.time_increment as f64 / 3600.0;
        let std_dev = sigma * dt.sqrt();
        let normal = Normal::new(0.0, std_dev).map_err(|_| ForecastError::BadSigma(sigma))?;
        let steps = (req.time_length as f64 / req.time_increment as f64) as usize;
        let mut data = Vec::with_capacity(req.num_simulations * (steps + 1));
        for _ in 0..req.num_simulations {
            // cumulative = [1, cumprod(1 + r)]; price = S0 * cumulative
            let mut cumulative = 1.0f64;
            data.push(req.spot * cumulative);
            for _ in 0..steps {
                let r: f64 = normal.sample(rng);
                cumulative *= 1.0 + r;
                data.push(req.spot * cumulative);
            }
        }
        Paths::from_flat(data, req.num_simulations).map_err(|e| ForecastError::Model(e.to_string()))
    }
}

/// The models `--model` knows by name: the reference GBM and the classical baselines
/// ([`super::classical`], [`super::garch`], [`super::har`]); any of them with `cal-` before
/// it is width-calibrated on recent prompts ([`super::calibrate`]).
pub const MODELS: &[&str] = &[
    "gbm",
    "ewma",
    "ewma-t",
    "ewma-tod",
    "ewma-tod-t",
    "garch",
    "garch-t",
    "garch-tod",
    "garch-tod-t",
    "gjr-tod-t",
    "har",
    "har-tod",
    "har-tod-t",
];

/// How a classical model is named where a checkpoint could be named too (a champion, a
/// shadow record, `load_forecaster`): `classical:garch-tod-t`.
pub const CLASSICAL_PREFIX: &str = "classical:";

/// The model name in `classical:NAME`, when `s` has that form (the name itself unchecked).
pub fn classical_name(s: &str) -> Option<&str> {
    s.strip_prefix(CLASSICAL_PREFIX)
}

/// Whether `name` is a model [`model_by_name`] builds: one of [`MODELS`], or `cal-` before one.
pub fn is_model_name(name: &str) -> bool {
    let base = name.strip_prefix(super::calibrate::PREFIX).unwrap_or(name);
    MODELS.contains(&base)
}

/// Build a forecaster by name.
pub fn model_by_name(
    name: &str,
    config: &Sn50Config,
) -> Result<Box<dyn Forecaster>, ForecastError> {
    if let Some(inner) = name.strip_prefix(super::calibrate::PREFIX) {
        let inner = model_by_name(inner, config)?;
        return Ok(Box::new(super::calibrate::Calibrated::new(inner)));
    }
    match name {
        "gbm" => Ok(Box::new(Gbm::new(config.clone()))),
        other => {
            if let Some(m) = super::classical::Ewma::by_name(other) {
                Ok(Box::new(m))
            } else if let Some(m) = super::garch::Garch::by_name(other) {
                Ok(Box::new(m))
            } else if let Some(m) = super::har::Har::by_name(other) {
                Ok(Box::new(m))
            } else {
                Err(ForecastError::UnknownModel(other.into(), MODELS.join(", ")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn req(asset: &str, n: usize) -> ForecastRequest<'static> {
        ForecastRequest {
            asset: asset.into(),
            start_time: 1_780_315_200,
            time_increment: 300,
            time_length: 86_400,
            num_simulations: n,
            spot: 100_000.0,
            history: None,
            as_of: 1_780_315_140,
        }
    }

    #[test]
    fn gbm_shape_start_and_determinism() {
        let g = Gbm::new(Sn50Config::default());
        let p = g
            .forecast(&req("BTC", 50), &mut ChaCha8Rng::seed_from_u64(7))
            .unwrap();
        assert_eq!((p.n_paths(), p.n_points()), (50, 289));
        assert!((0..50).all(|i| p.row(i)[0] == 100_000.0));
        let q = g
            .forecast(&req("BTC", 50), &mut ChaCha8Rng::seed_from_u64(7))
            .unwrap();
        assert_eq!(p, q);
        let r = g
            .forecast(&req("BTC", 50), &mut ChaCha8Rng::seed_from_u64(8))
            .unwrap();
        assert_ne!(p, r);
    }

    #[test]
    fn gbm_step_returns_have_the_sigma_map_volatility() {
        let g = Gbm::new(Sn50Config::default());
        let p = g
            .forecast(&req("HYPE", 400), &mut ChaCha8Rng::seed_from_u64(1))
            .unwrap();
        let mut rets = Vec::new();
        for i in 0..p.n_paths() {
            for w in p.row(i).windows(2) {
                rets.push(w[1] / w[0] - 1.0);
            }
        }
        let n = rets.len() as f64;
        let mean = rets.iter().sum::<f64>() / n;
        let sd = (rets.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / n).sqrt();
        let expected = 0.01131 * (300.0f64 / 3600.0).sqrt();
        assert!((sd / expected - 1.0).abs() < 0.01, "sd {sd} vs {expected}");
        assert!(
            mean.abs() < 4.0 * expected / n.sqrt(),
            "zero drift, mean {mean}"
        );
        // Unknown assets use 0.005.
        assert_eq!(g.sigma("DOGE"), 0.005);
    }

    #[test]
    fn bad_requests_are_refused() {
        let g = Gbm::new(Sn50Config::default());
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut r = req("BTC", 1);
        r.spot = 0.0;
        assert!(matches!(
            g.forecast(&r, &mut rng),
            Err(ForecastError::BadSpot(_))
        ));
        let mut r = req("BTC", 1);
        r.time_increment = 7;
        assert!(matches!(
            g.forecast(&r, &mut rng),
            Err(ForecastError::BadGrid { .. })
        ));
        assert!(model_by_name("lstm", &Sn50Config::default()).is_err());
        assert!(model_by_name("cal-lstm", &Sn50Config::default()).is_err());
        assert_eq!(
            model_by_name("cal-garch-tod-t", &Sn50Config::default())
                .unwrap()
                .name(),
            "cal-garch-tod-t"
        );
        assert!(is_model_name("cal-ewma") && is_model_name("har") && !is_model_name("cal-"));
        for name in MODELS {
            assert_eq!(
                model_by_name(name, &Sn50Config::default()).unwrap().name(),
                *name
            );
        }
        assert_eq!(
            model_by_name("gbm", &Sn50Config::default()).unwrap().name(),
            "gbm"
        );
    }
}
