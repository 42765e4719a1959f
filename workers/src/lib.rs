//! The synth-city job handlers and the domain they need.
//!
//! Nothing here talks to Redis: handlers receive a decoded payload and a
//! [`jobs::JobContext`] and return a result. The engine (the root crate) owns
//! delivery, retries and state. That keeps every handler testable on its own.

pub mod agents;
pub mod data_job;
pub mod experiment;
pub mod ops;
pub mod pipeline;
pub mod sn50;
pub mod store;
pub mod zoo;

pub use ops::register_builtin;
