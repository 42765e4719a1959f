//! synth-city's engine: the Redis-streams job queue, the worker runtime, the
//! semaphore, the cron scheduler, migrations, metrics, the HTTP bridge and the CLI.
//!
//! The engine knows nothing of forecasting: job types and their payloads come
//! from the `jobs` crate, their handlers from `workers`. See ARCHITECTURE.md.

#![recursion_limit = "512"]

pub mod bench;
pub mod bridge;
pub mod cli;
pub mod config;
pub mod keys;
pub mod metrics;
pub mod migrate;
pub mod miner;
pub mod pipeline;
pub mod queue;
pub mod scheduler;
pub mod scripts;
pub mod semaphore;
pub mod shadow;
pub mod worker;

pub use queue::{EnqueueRequest, Queue, QueueError};
pub use worker::{Worker, WorkerOptions};
