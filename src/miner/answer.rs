//! Answering one `simulation_input`: the request checked (`check_input`; an asset the SN50
//! constants give no price source is a 422 naming the known ones), the spot price and history
//! gathered, the served model of its step size run on a blocking thread under the
//! deadline, and the paths encoded as the validator reads them; the reference GBM answers
//! instead when there is no model, or the model errs, is too slow, or gives paths the validator
//! would reject ([`Answer::fallback`] says why).
//!
//! This module does not parse HTTP, authenticate callers or echo the synapse ([`super::server`]
//! does), and does not choose or reload the model ([`super::model`]).

use std::sync::Arc;
use std::time::Duration;

use jobs::Timeframe;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use sn50::data::Bars;
use sn50::forecast::{ForecastError, ForecastRequest, Forecaster};
use sn50::response::{iso_start_timestamp, SimulationInput};

use super::model::ModelSpec;
use super::spot::Spot;
use super::Miner;

/// The most paths a request may ask for (the validator asks for 1000).
pub const MAX_SIMULATIONS: i64 = 10_000;
/// The most prices one answer may hold.
pub const MAX_PRICES: i64 = 5_000_000;

/// An error answer: HTTP status and message.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }
}

/// One answered request.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The JSON text of `simulation_output`.
    pub output_json: String,
    /// The model that answered (`gbm` after a fallback).
    pub model: String,
    /// Why the GBM answered instead of the served model.
    pub fallback: Option<String>,
    pub spot: Spot,
}

/// Why the model's paths cannot be sent (the GBM answers instead).
#[derive(Debug, thiserror::Error)]
enum SimulateError {
    /// The forecaster failed (no history for the asset, a model error, ...).
    #[error(transparent)]
    Forecast(#[from] ForecastError),
    /// It returned another number of paths or points than the request asks for.
    #[error("the model returned {paths} x {points} prices, the request needs {want_paths} x {want_points}")]
    Shape {
        paths: usize,
        points: usize,
        want_paths: usize,
        want_points: usize,
    },
    /// The encoder refused the prices (NaN, infinite or zero: `unusable output: ...`), or
    /// could not write one.
    #[error(transparent)]
    Encode(#[from] sn50::encode::EncodeError),
}

impl SimulateError {
    /// The `reason` label of `sc_miner_fallbacks_total`: `output` for prices the validator
    /// would reject, else `error`.
    fn fallback_reason(&self) -> &'static str {
        match self {
            SimulateError::Encode(
                sn50::encode::EncodeError::NotFinite { .. }
                | sn50::encode::EncodeError::Zero { .. },
            ) => "output",
            _ => "error",
        }
    }
}

/// A checked `simulation_input`.
struct Prompt {
    asset: String,
    start: i64,
    increment: u64,
    length: u64,
    paths: usize,
}

fn check_input(input: &SimulationInput) -> Result<Prompt, ApiError> {
    let bad = |m: String| ApiError::new(400, m);
    let asset = input.asset.trim();
    if asset.is_empty() || asset.len() > 32 {
        return Err(bad(format!(
            "simulation_input.asset {:?} is not an asset name",
            input.asset
        )));
    }
    let start = iso_start_timestamp(&input.start_time).ok_or_else(|| {
        bad(format!(
            "simulation_input.start_time {:?} is not an ISO-8601 time",
            input.start_time
        ))
    })?;
    if input.time_increment <= 0
        || input.time_length <= 0
        || input.time_length % input.time_increment != 0
    {
        return Err(bad(format!(
            "simulation_input.time_increment {} must be positive and divide time_length {}",
            input.time_increment, input.time_length
        )));
    }
    if !(1..=MAX_SIMULATIONS).contains(&input.num_simulations) {
        return Err(bad(format!(
            "simulation_input.num_simulations {} must be between 1 and {MAX_SIMULATIONS}",
            input.num_simulations
        )));
    }
    let points = input.time_length / input.time_increment + 1;
    if points.saturating_mul(input.num_simulations) > MAX_PRICES {
        return Err(bad(format!(
            "{} paths of {points} points is more than the {MAX_PRICES} prices an answer may hold",
            input.num_simulations
        )));
    }
    Ok(Prompt {
        asset: asset.to_string(),
        start,
        increment: input.time_increment as u64,
        length: input.time_length as u64,
        paths: input.num_simulations as usize,
    })
}

/// Simulate and encode (blocking).
fn simulate_encoded(
    f: &dyn Forecaster,
    job: &Prompt,
    spot: f64,
    history: Option<&Bars>,
    as_of: i64,
) -> Result<String, SimulateError> {
    let req = ForecastRequest {
        asset: job.asset.clone(),
        start_time: job.start,
        time_increment: job.increment,
        time_length: job.length,
        num_simulations: job.paths,
        spot,
        history,
        as_of,
    };
    let mut rng = ChaCha8Rng::from_rng(&mut rand::rng());
    let paths = f.forecast(&req, &mut rng)?;
    if paths.n_paths() != job.paths || paths.n_points() != req.num_points() {
        return Err(SimulateError::Shape {
            paths: paths.n_paths(),
            points: paths.n_points(),
            want_paths: job.paths,
            want_points: req.num_points(),
        });
    }
    sn50::encode::simulation_output_json(job.start, job.increment as i64, &paths)
        .map_err(SimulateError::Encode)
}

impl Miner {
    /// A 422 naming the asset and the known ones when the SN50 constants give `asset` no
    /// price source (the validator's assets, plus any `--constants` adds).
    fn check_asset(&self, asset: &str) -> Result<(), ApiError> {
        let known = &self.config.constants.price_sources;
        if known.contains_key(asset) {
            return Ok(());
        }
        let names: Vec<&str> = known.keys().map(String::as_str).collect();
        Err(ApiError::new(
            422,
            format!(
                "simulation_input.asset {asset:?} is not an asset this miner knows; known assets: \
                 {} (an operator adds one with --constants, [price_sources])",
                names.join(", ")
            ),
        ))
    }

    /// Answer a `simulation_input` within a dendrite timeout of `timeout_s`.
    pub async fn answer(
        &self,
        input: &SimulationInput,
        timeout_s: f64,
    ) -> Result<Answer, ApiError> {
        let job = Arc::new(check_input(input)?);
        self.check_asset(&job.asset)?;
        let as_of = chrono::Utc::now().timestamp();
        let model = self.models.current_for(&job.asset, job.increment);
        // The model's history: the asset's bars at the request's step (the GBM needs none).
        let timeframe = Timeframe::from_step_secs(job.increment as i64).filter(|_| !model.is_gbm);
        let history = match timeframe {
            None => None,
            Some(tf) => {
                let (h, a) = (self.history.clone(), job.asset.clone());
                tokio::task::spawn_blocking(move || h.get(&a, tf))
                    .await
                    .ok()
                    .and_then(|r| {
                        r.map_err(|e| tracing::debug!(error = %e, "no history for the request"))
                            .ok()
                    })
            }
        };
        let spot = {
            let (h, a) = (self.history.clone(), job.asset.clone());
            self.spot
                .get(&job.asset, move || h.last_close(&a))
                .await
                .map_err(|e| ApiError::new(503, e.to_string()))?
        };
        self.metrics
            .spot_source
            .with_label_values(&[spot.source.as_str()])
            .inc();
        let mut fallback = None;
        if model.is_gbm && self.models.spec != ModelSpec::Gbm {
            fallback = Some((
                "no_model",
                if self.models.spec == ModelSpec::Champions {
                    format!(
                        "{} has no champion for {} s steps (none has passed the promotion gate)",
                        job.asset, job.increment
                    )
                } else {
                    format!("no trained model for {} s steps is loaded", job.increment)
                },
            ));
        }
        if !model.is_gbm {
            let budget = self
                .config
                .model_budget
                .min(Duration::from_secs_f64((timeout_s - 1.0).max(0.0)));
            let (m, j, h) = (model.clone(), job.clone(), history.clone());
            let task = tokio::task::spawn_blocking(move || {
                simulate_encoded(m.forecaster.as_ref(), &j, spot.price, h.as_deref(), as_of)
            });
            match tokio::time::timeout(budget, task).await {
                Ok(Ok(Ok(json))) => {
                    return Ok(Answer {
                        output_json: json,
                        model: model.label.clone(),
                        fallback: None,
                        spot,
                    })
                }
                Ok(Ok(Err(e))) => fallback = Some((e.fallback_reason(), e.to_string())),
                Ok(Err(join)) => fallback = Some(("error", format!("the model panicked: {join}"))),
                Err(_) => {
                    fallback = Some((
                        "deadline",
                        format!("no answer within {} ms", budget.as_millis()),
                    ))
                }
            }
        }
        if let Some((reason, why)) = &fallback {
            self.metrics.fallbacks.with_label_values(&[reason]).inc();
            if *reason != "no_model" {
                tracing::warn!(model = %model.label, asset = %job.asset, reason, error = %why,
                    "the served model failed; answering with the GBM baseline");
            }
        }
        let (g, j) = (self.gbm.clone(), job.clone());
        let json = tokio::task::spawn_blocking(move || {
            simulate_encoded(g.as_ref(), &j, spot.price, None, as_of)
        })
        .await
        .map_err(|e| ApiError::new(500, format!("the GBM baseline panicked: {e}")))?
        .map_err(|e| ApiError::new(500, format!("the GBM baseline failed: {e}")))?;
        Ok(Answer {
            output_json: json,
            model: "gbm".into(),
            fallback: fallback.map(|(r, w)| format!("{r}: {w}")),
            spot,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_are_checked() {
        let ok = SimulationInput {
            asset: "BTC".into(),
            start_time: "2026-06-01T12:05:00+00:00".into(),
            time_increment: 300,
            time_length: 86400,
            num_simulations: 1000,
        };
        assert!(check_input(&ok).is_ok());
        for (f, needle) in [
            (
                Box::new(|i: &mut SimulationInput| i.start_time = "soon".into())
                    as Box<dyn Fn(&mut SimulationInput)>,
                "start_time",
            ),
            (Box::new(|i| i.time_increment = 7), "time_increment"),
            (Box::new(|i| i.time_increment = 0), "time_increment"),
            (Box::new(|i| i.num_simulations = 0), "num_simulations"),
            (
                Box::new(|i| i.num_simulations = 1_000_000),
                "num_simulations",
            ),
            (Box::new(|i| i.asset = " ".into()), "asset"),
            (
                Box::new(|i| {
                    i.time_increment = 1;
                    i.num_simulations = 10_000
                }),
                "prices",
            ),
        ] {
            let mut i = ok.clone();
            f(&mut i);
            let e = check_input(&i).err().expect("refused");
            assert_eq!(e.status, 400);
            assert!(e.message.contains(needle), "{} / {needle}", e.message);
        }
    }
}
