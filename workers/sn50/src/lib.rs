//! Subnet 50 (Synth): everything that defines "good" exactly as the validator does.
//!
//! - [`constants`]: assets, coefficients, prompt types, sigmas, feed ids (TOML overridable).
//! - [`crps`]: the validator's `calculate_crps_for_miner`, bit for bit.
//! - [`lanes`]: the CRPS of four ensembles at once (AVX2 sorting network), bit-identical.
//! - [`vectors`]: the `sn50-crps-vectors/1` file format and the `score crps` command.
//! - [`pyfloat`]: Python float `repr`/`round` semantics the format rules depend on.
//! - [`response`]: the miner response serializer and the validator's format checks.
//! - [`rewards`]: prompt scores, the rolling leaderboard, softmax and weights.
//! - [`data`]: CSV bars, gaps, the realised-price grid, `data info`.
//! - [`pyth`]: the Pyth Hermes (spot) and benchmarks (history) client, with retries.
//! - [`download`]: `data download`, Pyth history merged into the local CSV files.
//! - [`forecast`]: the [`forecast::Forecaster`] trait and the reference GBM.
//! - [`backtest`]: windows from local data scored with the validator's CRPS.
//! - [`shadow`]: shadow-scoring records, their re-scoring once settled, daily summaries.
//! - [`bench`]: the CRPS speed benchmark (per prompt on one core, and a many-miner batch).
//!
//! The arithmetic follows synth-subnet `ec8a625` (see `docs/sn50.md`).

pub mod backtest;
pub mod bench;
pub mod constants;
pub mod crps;
pub mod data;
pub mod download;
pub mod encode;
pub mod forecast;
pub mod lanes;
pub mod pyfloat;
pub mod pyth;
pub mod response;
pub mod rewards;
pub mod shadow;
pub mod vectors;
pub mod vol;

#[cfg(test)]
mod vector_tests;
