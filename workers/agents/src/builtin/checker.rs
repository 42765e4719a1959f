//! The built-in checker: is the best experiment fit to serve?
//!
//! Rules, each naming what failed: the spec validates; training did not
//! diverge; the SN50 CRPS is finite, positive and not far worse than the GBM
//! baseline's on the same windows; and the checkpoint, asked for a real 24 h
//! prompt, answers with a response the validator accepts. The checkpoint is the record's local
//! copy (`ExperimentRecord::checkpoint`): a caller holding a record from another process
//! fetches its artifact first (`publisher::artifacts`).

use std::path::Path;

use serde::{Deserialize, Serialize};

use sn50::data::{asset_file, Bars};
use sn50::forecast::{ForecastRequest, Forecaster};
use sn50::response::{check_response, MinerResponse, SimulationInput};
use trainer::experiments::ExperimentRecord;
use trainer::zoo::forecaster::ZooForecaster;

/// The checker's verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckReport {
    pub passed: bool,
    pub problems: Vec<String>,
}

/// Worse than GBM by more than this factor fails the check.
pub const MAX_RATIO: f64 = 1.5;

/// Checks `rec` against the rules above, using bars from `data_dir`.
pub fn check(rec: &ExperimentRecord, data_dir: &Path) -> CheckReport {
    let mut problems = Vec::new();
    if let Err(issues) = rec.spec.validate() {
        for i in issues {
            problems.push(format!("spec: {i}"));
        }
    }
    if rec.diverged {
        problems.push("training diverged (NaN or exploding loss)".into());
    }
    if let Some(e) = &rec.error {
        problems.push(format!("experiment failed: {e}"));
    }
    match (rec.crps, rec.gbm_crps) {
        (Some(c), Some(g)) if c.is_finite() && c > 0.0 => {
            if c > g * MAX_RATIO {
                problems.push(format!(
                    "CRPS {c:.2} is more than {MAX_RATIO}x the GBM baseline's {g:.2}"
                ));
            }
        }
        (c, _) => problems.push(format!("CRPS {c:?} is not a finite positive number")),
    }
    match &rec.checkpoint {
        None => problems.push("no checkpoint to serve".into()),
        Some(dir) if problems.is_empty() => {
            if let Err(e) = serve_check(rec, Path::new(dir), data_dir) {
                problems.push(e);
            }
        }
        Some(_) => {}
    }
    CheckReport {
        passed: problems.is_empty(),
        problems,
    }
}

/// Asks the checkpoint for 1,000 paths at the last bar of the data and runs
/// the validator's checks on the answer.
fn serve_check(rec: &ExperimentRecord, ckpt: &Path, data_dir: &Path) -> Result<(), String> {
    let f =
        ZooForecaster::load(ckpt, &trainer::Device::Cpu).map_err(|e| format!("checkpoint: {e}"))?;
    let asset = rec
        .spec
        .data
        .assets
        .first()
        .cloned()
        .unwrap_or_else(|| "BTC".into());
    let tf = rec.spec.data.timeframe;
    let path = asset_file(data_dir, &asset, tf).map_err(|e| format!("data: {e}"))?;
    let bars = Bars::load(&path).map_err(|e| format!("data: {e}"))?;
    let n = bars.timestamps.len();
    let as_of = bars.timestamps[n - 1] + bars.bar_seconds;
    let (inc, len) = (tf.step_secs() as u64, tf.horizon_secs() as u64);
    let req = ForecastRequest {
        asset: asset.clone(),
        start_time: as_of,
        time_increment: inc,
        time_length: len,
        num_simulations: 1000,
        spot: bars.close[n - 1],
        history: Some(&bars),
        as_of,
    };
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(1);
    let paths = f
        .forecast(&req, &mut rng)
        .map_err(|e| format!("simulate: {e}"))?;
    let resp = MinerResponse::from_paths(as_of, inc as i64, &paths)
        .map_err(|e| format!("response: {e}"))?;
    let start = chrono::DateTime::from_timestamp(as_of, 0)
        .ok_or("bad start time")?
        .format("%Y-%m-%dT%H:%M:%S+00:00")
        .to_string();
    let input = SimulationInput {
        asset,
        start_time: start,
        time_increment: inc as i64,
        time_length: len as i64,
        num_simulations: 1000,
    };
    let report = check_response(&resp.to_py(), &input, true);
    if report.ok {
        Ok(())
    } else {
        Err(format!(
            "SN50 validation: {}{}",
            report.format_validation,
            report
                .scoring_issue
                .map(|i| format!(" ({i})"))
                .unwrap_or_default()
        ))
    }
}
