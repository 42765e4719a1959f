//! The trainer role: the candle model zoo ([`zoo`]), experiments and their successive-halving
//! training plans ([`experiments`]), and the `experiment` job's handler ([`handler`]).
//!
//! This is the only crate of the workspace that depends on candle, and the one a GPU machine
//! builds with `--features cuda`. It does not talk to Redis, serve HTTP or touch the store:
//! a handler gets a decoded payload and returns a result; the engine delivers jobs, and the
//! binary gives the `experiment` handler its directories and the sink that stores checkpoints
//! ([`handler::CheckpointSink`]).

pub mod dirs;
pub mod experiments;
pub mod handler;
pub mod zoo;

pub use dirs::WorkerDirs;

/// The compute device models run on (candle's), re-exported so that callers need no candle.
pub use candle_core::Device;

/// Registers the trainer role's handlers (`experiment`): training on the worker's own
/// directories, checkpoints stored through `sink`.
pub fn register(
    registry: &mut jobs::Registry,
    dirs: WorkerDirs,
    sink: std::sync::Arc<dyn handler::CheckpointSink>,
) {
    registry.register(handler::ExperimentHandler { dirs, sink });
}
