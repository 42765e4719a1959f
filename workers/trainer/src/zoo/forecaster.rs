//! [`ZooForecaster`]: a trained checkpoint as an SN50 [`Forecaster`]. It reads the request's
//! history (only bars that closed by `as_of`), builds the model input from the last `seq_len`
//! gap-free bars with the asset's training normaliser, and simulates `num_simulations` paths of
//! `horizon` steps from the request's spot price. [`load_forecaster`] turns a `--model` value
//! (`gbm`, `classical:NAME`, `mix:A,B` or a checkpoint path) into a boxed forecaster.

use std::path::Path;

use candle_core::{Device, Tensor};
use rand::RngCore;

use super::features::{history_input, Normalizer, VOL_WINDOW};
use super::train::{load_checkpoint, simulate, Checkpoint};
use super::ZooError;
use sn50::constants::Sn50Config;
use sn50::crps::Paths;
use sn50::forecast::{ForecastError, ForecastRequest, Forecaster, Gbm};

/// The forecaster a `--model` value names: `gbm` (case-insensitive) is the reference GBM with
/// the default SN50 configuration; `classical:NAME` is that classical model
/// ([`sn50::forecast::model_by_name`], fitted per request on its history); `mix:A,B` is the
/// equal-weight ensemble of the forecasters its members name; anything else is a
/// checkpoint folder written by
/// `experiment` (or a file inside one), loaded on `device`. A path that is not a checkpoint
/// fails with an error naming the path and the missing file.
pub fn load_forecaster(
    name_or_path: &str,
    device: &Device,
) -> Result<Box<dyn Forecaster>, ZooError> {
    if name_or_path.trim().eq_ignore_ascii_case("gbm") {
        return Ok(Box::new(Gbm::new(Sn50Config::default())));
    }
    if let Some(members) = sn50::ensemble::member_names(name_or_path) {
        let members = members
            .into_iter()
            .map(|m| load_forecaster(m, device).map(std::sync::Arc::from))
            .collect::<Result<Vec<_>, _>>()?;
        return sn50::ensemble::Ensemble::new(members)
            .map(|e| Box::new(e) as Box<dyn Forecaster>)
            .map_err(|e| ZooError::Checkpoint {
                path: name_or_path.to_string(),
                message: e.to_string(),
            });
    }
    if let Some(name) = sn50::forecast::classical_name(name_or_path.trim()) {
        return sn50::forecast::model_by_name(name, &Sn50Config::default()).map_err(|e| {
            ZooError::Checkpoint {
                path: name_or_path.to_string(),
                message: e.to_string(),
            }
        });
    }
    let path = Path::new(name_or_path);
    if !path.exists() {
        return Err(ZooError::Checkpoint {
            path: name_or_path.to_string(),
            message: "no such file or folder; pass `gbm` or a checkpoint folder written by \
                      `synth-city experiment` (its \"checkpoint\" field)"
                .into(),
        });
    }
    Ok(Box::new(ZooForecaster::load(path, device)?))
}

/// A checkpoint that answers SN50 requests.
pub struct ZooForecaster {
    ck: Checkpoint,
    name: String,
    device: Device,
}

impl ZooForecaster {
    /// Load a checkpoint directory (or a file inside one).
    pub fn load(path: &Path, device: &Device) -> Result<Self, ZooError> {
        let ck = load_checkpoint(path, device)?;
        Ok(ZooForecaster {
            name: ck.dir.display().to_string(),
            ck,
            device: device.clone(),
        })
    }

    pub fn checkpoint(&self) -> &Checkpoint {
        &self.ck
    }

    /// The normaliser for `asset`: the one fitted on its training split, or for an asset the
    /// model was not trained on, one fitted on the history before the request.
    fn normalizer(
        &self,
        asset: &str,
        history: &sn50::data::Bars,
        as_of: i64,
    ) -> Result<Normalizer, ForecastError> {
        if let Some(n) = self.ck.state.normalizers.get(asset) {
            return Ok(n.clone());
        }
        let end = history
            .timestamps
            .partition_point(|&t| t + history.bar_seconds <= as_of);
        Normalizer::fit(
            history,
            end,
            self.ck.spec.data.scale,
            self.ck.spec.training.horizon,
        )
        .map_err(|e| ForecastError::Model(format!("{asset}: {e}")))
    }
}

impl Forecaster for ZooForecaster {
    fn name(&self) -> &str {
        &self.name
    }

    fn time_increment(&self) -> Option<u64> {
        Some(self.ck.spec.data.timeframe.step_secs() as u64)
    }

    fn forecast(
        &self,
        req: &ForecastRequest<'_>,
        rng: &mut dyn RngCore,
    ) -> Result<Paths, ForecastError> {
        let spec = &self.ck.spec;
        let (bar, horizon) = (
            spec.data.timeframe.step_secs(),
            spec.data.timeframe.horizon_steps(),
        );
        if req.time_increment != bar as u64 || req.num_points() != horizon + 1 {
            return Err(ForecastError::Model(format!(
                "this model simulates {horizon} steps of {bar} s ({} timeframe); the request asks for {} s steps over {} s",
                spec.data.timeframe, req.time_increment, req.time_length
            )));
        }
        if !(req.spot.is_finite() && req.spot > 0.0) {
            return Err(ForecastError::BadSpot(req.spot));
        }
        if req.num_simulations == 0 {
            return Err(ForecastError::NoPaths);
        }
        let history = req.history.ok_or_else(|| {
            ForecastError::Model(format!(
                "{}: a trained model needs the asset's bar history",
                req.asset
            ))
        })?;
        let bb = &spec.model.backbone;
        let resampled;
        let history = if history.bar_seconds == bar {
            history
        } else if bar % history.bar_seconds == 0 {
            // Finer bars (the validator's 1-minute candles) aggregated into the model's bars:
            // only the tail the features need when the normaliser is known.
            let since = if let Some(n) = self.ck.state.normalizers.get(&req.asset) {
                let look = n.lookback_bars(bar, &bb.features);
                req.as_of - (bb.seq_len + VOL_WINDOW + 2 + look) as i64 * bar
            } else {
                i64::MIN
            };
            resampled = history
                .resample(bar, since, req.as_of)
                .map_err(|e| ForecastError::Model(e.to_string()))?;
            &resampled
        } else {
            return Err(ForecastError::Model(format!(
                "{}: history has {} s bars, the model was trained on {bar} s bars",
                req.asset, history.bar_seconds
            )));
        };
        let norm = self.normalizer(&req.asset, history, req.as_of)?;
        let (i, x) = history_input(
            history,
            &norm,
            req.as_of,
            bb.seq_len,
            &bb.features,
            spec.data.gaps,
        )
        .map_err(|e| ForecastError::Model(format!("{}: {e}", req.asset)))?;
        let scales = norm.step_scales(history, i, horizon);
        let x = Tensor::from_vec(x, (1, bb.seq_len, bb.features.len()), &self.device)
            .map_err(|e| ForecastError::Model(e.to_string()))?;
        simulate(
            &self.ck.model,
            &x,
            req.spot,
            req.num_simulations,
            &scales,
            rng.next_u64(),
        )
        .map_err(|e| ForecastError::Model(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `classical:NAME` is the classical model, as champions and shadow records name it; an
    /// unknown one lists the models there are.
    #[test]
    fn classical_names_load_as_classical_models() {
        let f = load_forecaster("classical:garch-tod-t", &Device::Cpu).unwrap();
        assert_eq!(f.time_increment(), None);
        let e = load_forecaster("classical:arima", &Device::Cpu)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("garch-tod-t") && e.contains("arima"), "{e}");
        let m = load_forecaster("mix:gbm,classical:ewma-tod-t", &Device::Cpu).unwrap();
        assert_eq!(m.name(), "mix:gbm,ewma-tod-t");
    }
}
