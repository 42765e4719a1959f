//! The model zoo: backbone blocks, distribution heads, experiment specs, a trainer and a
//! [`sn50::forecast::Forecaster`] for trained checkpoints, all in candle (CPU by default,
//! `--features cuda` for candle's CUDA backend).
//!
//! The uniform interface (see `docs/zoo.md`):
//! - features `(batch, seq, features)` -> input projection -> `(batch, seq, d_model)`;
//! - every [`blocks::Block`] maps `(batch, seq, d_model)` -> `(batch, seq, d_model)`, so any block
//!   stacks with any other;
//! - every [`heads::Head`] maps the backbone output to a distribution over future log-return
//!   paths and samples `N` paths of `H` steps by reparameterisation (noise from a seeded RNG, the
//!   sample a differentiable function of the parameters), so the sample CRPS trains it.
//!
//! Modules: [`params`] (seeded parameter store, noise), [`spec`] (experiment JSON, validation,
//! parameter and FLOPs counts), [`registry`] (components and presets), [`features`] (bars to
//! windows), [`model`] (backbone + head), [`ops`] (an O(n) differentiable cumsum, the fused LSTM),
//! [`fused`] (layer norm and the CRPS loss as CPU ops with hand-written gradients), [`optim`] (AdamW
//! with persistable moments),
//! [`train`] (loss, loop, checkpoints), [`vol_loss`] (the Crypto 1 h volatility term as a
//! differentiable loss), [`progress`] (the training progress bar),
//! [`forecaster`] (checkpoint -> SN50 paths; [`forecaster::load_forecaster`] for `--model`),
//! [`bench`] (training and simulation speed), [`graph`] (components as graphs of ops: the
//! format, its validation and estimates, and its compilation to a block).

/// `fn $name(args) -> ret` that runs `$body` (an `#[inline(always)]` function of the same
/// arguments) compiled for AVX2 when the CPU has it (checked at run time), else for the baseline
/// target: the kernels' plain loops then vectorise 8 wide instead of 4. The arithmetic is the
/// same either way (no fused multiply-add is enabled), so are the results.
macro_rules! avx2_dispatch {
    ($(#[$m:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? => $body:ident) => {
        $(#[$m])*
        fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU supports AVX2 (checked just above).
                    return unsafe { avx2($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}

pub mod bench;
pub mod blocks;
pub mod features;
pub mod forecaster;
pub mod fused;
pub mod graph;
pub mod heads;
pub mod model;
pub mod ops;
pub mod optim;
pub mod params;
pub mod progress;
pub mod registry;
pub mod spec;
pub mod train;
pub mod vol_loss;

/// Errors from the zoo.
#[derive(Debug, thiserror::Error)]
pub enum ZooError {
    #[error("tensor error: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("invalid experiment spec:\n{}", .0.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n"))]
    Spec(Vec<spec::SpecIssue>),
    #[error(transparent)]
    Data(#[from] sn50::data::DataError),
    #[error(transparent)]
    Features(#[from] features::FeatureError),
    #[error(transparent)]
    Paths(#[from] sn50::crps::CrpsError),
    #[error(transparent)]
    Forecast(#[from] sn50::forecast::ForecastError),
    #[error(transparent)]
    Preset(#[from] registry::PresetError),
    #[error("cannot read or write {path}: {message}")]
    Io { path: String, message: String },
    #[error("checkpoint {path}: {message}")]
    Checkpoint { path: String, message: String },
    #[error("device {0:?} is not available: {1}")]
    Device(String, String),
    #[error("training diverged: {0}")]
    Diverged(String),
    #[error(
        "no SN50 competition scores the {0} prompt: check the competitions in the SN50 constants"
    )]
    NoCompetition(&'static str),
    #[error("training stopped: the job that asked for it was cancelled")]
    Stopped,
    #[error("the model simulates {steps} steps but {scales} step scales were given: a checkpoint and a horizon that disagree")]
    StepScales { steps: usize, scales: usize },
}

/// The compute device by name: `cpu`, or `cuda` / `cuda:N` when built with `--features cuda`.
pub fn device(name: &str) -> Result<candle_core::Device, ZooError> {
    match name {
        "cpu" => Ok(candle_core::Device::Cpu),
        n if n == "cuda" || n.starts_with("cuda:") => {
            let ord: usize = n
                .strip_prefix("cuda:")
                .map(|s| s.parse().unwrap_or(usize::MAX))
                .unwrap_or(0);
            if !cfg!(feature = "cuda") {
                return Err(ZooError::Device(
                    n.into(),
                    "this build has no CUDA support: rebuild with `--features cuda`".into(),
                ));
            }
            candle_core::Device::new_cuda(ord)
                .map_err(|e| ZooError::Device(n.into(), e.to_string()))
        }
        other => Err(ZooError::Device(
            other.into(),
            "use `cpu` or `cuda[:N]`".into(),
        )),
    }
}

/// A worker's `--device` choice resolved to the name it trains on: `auto` is `cuda:0` when this
/// build has the `cuda` feature and a GPU answers, else `cpu`; `cpu` is `cpu`; `cuda` and
/// `cuda:N` must be usable here (in a build without `cuda` the error names the feature to build
/// with). The name is what [`device`] takes. Called once when a worker starts.
pub fn resolve_device(choice: &str) -> Result<String, ZooError> {
    match choice.trim() {
        "auto" => {
            if cfg!(feature = "cuda") && candle_core::Device::new_cuda(0).is_ok() {
                Ok("cuda:0".into())
            } else {
                Ok("cpu".into())
            }
        }
        "cpu" => Ok("cpu".into()),
        n if n == "cuda" || n.starts_with("cuda:") => {
            device(n)?;
            Ok(if n == "cuda" {
                "cuda:0".into()
            } else {
                n.into()
            })
        }
        other => Err(ZooError::Device(
            other.into(),
            "use `auto`, `cpu` or `cuda[:N]`".into(),
        )),
    }
}

#[cfg(test)]
mod tests;
