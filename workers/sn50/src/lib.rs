//! Subnet 50 (Synth): everything that defines "good" exactly as the validator does.
//!
//! - [`constants`]: assets, coefficients, request profiles, sigmas, feed ids and realised-price
//!   sources (TOML overridable).
//! - [`competition`]: the three competitions (assets, intervals, volatility blocks, window, beta)
//!   and how a prompt is routed to one.
//! - [`crps`]: the validator's `calculate_crps_for_miner`, bit for bit.
//! - [`vol`]: the Crypto 1 h volatility term and the total score, bit for bit.
//! - [`lanes`]: the CRPS of four ensembles at once (AVX2 sorting network), bit-identical.
//! - [`vectors`]: the `sn50-crps-vectors/1` file format and the `score crps` command.
//! - [`pyfloat`]: Python float `repr`/`round` semantics the format rules depend on.
//! - [`response`]: the miner response serializer and the validator's format checks.
//! - [`rewards`]: prompt scores, the rolling leaderboard, softmax and weights.
//! - [`data`]: CSV bars, gaps, the realised-price grid, `data info`.
//! - [`pyth`]: the Pyth Hermes (spot) and benchmarks (history) client, with retries.
//! - [`venues`]: Binance and Hyperliquid klines and spot prices, and the [`venues::PriceClient`]
//!   that asks each asset's realised-price source (Pyth included).
//! - [`download`]: `data download`, venue (or Pyth) history merged into the local CSV files.
//! - [`forecast`]: the [`forecast::Forecaster`] trait and the reference GBM.
//! - [`classical`]: classical volatility baselines (EWMA, time-of-day profile, Student-t).
//! - [`backtest`]: windows from local data scored with the validator's CRPS.
//! - [`gate`]: the promotion gate (margin and a Diebold–Mariano test on per-window scores).
//! - [`shadow`]: shadow-scoring records, their re-scoring once settled, daily summaries.
//! - [`bench`]: the CRPS speed benchmark (per prompt on one core, and a many-miner batch).
//!
//! The rules are the December 2026 validator's (synthdataco/synth-subnet, described in
//! `shared/spec/sn50-validator-2026-12.md`; see `docs/sn50.md`). The May 2026 rules (two
//! prompt profiles, p90 clipping, the `len(str(x)) <= 8` digit rule) are gone: nothing needs
//! them, and the price CRPS itself did not change.

pub mod backtest;
pub mod bench;
pub mod calibrate;
pub mod classical;
pub mod competition;
pub mod constants;
pub mod crps;
pub mod data;
pub mod download;
pub mod encode;
pub mod ensemble;
pub mod forecast;
pub mod garch;
pub mod gate;
pub mod har;
pub mod hindsight;
mod http;
pub mod lanes;
pub mod pyfloat;
pub mod pyth;
pub mod response;
pub mod rewards;
pub mod shadow;
pub mod vectors;
pub mod venues;
pub mod vol;
pub mod vov;

#[cfg(test)]
mod vector_tests;
