//! The contract between the synth-city engine and its workers.
//!
//! This crate says *what* a job is — its type name, its payload, its result, how
//! many times it may be tried — and *how* a handler is called. It does no I/O:
//! the engine (the root crate) moves envelopes through Redis, and the `workers`
//! crate implements [`Handler`]s. Everything that crosses the wire is `serde`.
//!
//! Dependencies point one way: `jobs` <- `workers` <- `synth-city`.

pub mod artifact;
mod context;
pub mod data;
mod envelope;
mod error;
pub mod experiment;
mod handler;
pub mod ops;
pub mod pipeline;
pub mod retry;
pub mod shadow;
mod spec;

pub use artifact::{ProductionPointer, Timeframe};
pub use context::{JobContext, ProgressUpdate};
pub use envelope::{JobEnvelope, ENVELOPE_VERSION};
pub use error::JobError;
pub use handler::{Handler, JobHandler, Registry};
pub use spec::{catalog, find_type, BotAccess, Catalog, JobSpec, JobTypeInfo, Role};

/// Whether `s` can name an SN50 asset in a payload: 1 to 16 ASCII letters and digits.
pub fn is_asset_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 16 && s.chars().all(|c| c.is_ascii_alphanumeric())
}
