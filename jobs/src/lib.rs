//! The contract between the synth-city engine and its workers.
//!
//! This crate says *what* a job is — its type name, its payload, its result, how
//! many times it may be tried, which role runs it and whether bots may enqueue it
//! — and *how* a handler is called, plus the vocabulary the contracts share
//! ([`Timeframe`], [`ProductionPointer`], [`ArtifactRef`], [`retry::RetryPolicy`]) and the
//! worker-local directories a handler is given ([`WorkerDirs`], never a payload's). It does no I/O:
//! the engine (`engine`) moves envelopes through Redis, and the role crates under
//! `workers/` implement [`Handler`]s. Everything that crosses the wire is `serde`.
//!
//! Dependencies point one way: `jobs` <- `engine`, `sn50` <- the role crates <-
//! the `synth-city` binary.

pub mod artifact;
pub mod builtin;
mod context;
pub mod data;
pub mod dataset;
mod envelope;
mod error;
pub mod experiment;
mod handler;
pub mod models;
pub mod pipeline;
pub mod retired;
pub mod retry;
pub mod shadow;
mod spec;

pub use artifact::{ArtifactRef, ProductionPointer, Timeframe};
pub use context::{JobContext, ProgressUpdate};
pub use envelope::{EnvelopeError, JobEnvelope, ENVELOPE_VERSION};
pub use error::{CatalogError, InvalidPayload, JobError};
pub use handler::{Handler, JobHandler, Registry};
pub use spec::{
    catalog, decode_payload, find_type, BotAccess, Catalog, JobSpec, JobTypeInfo, Role,
};

/// Whether `s` can name an SN50 asset in a payload: 1 to 16 ASCII letters and digits.
pub fn is_asset_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 16 && s.chars().all(|c| c.is_ascii_alphanumeric())
}
