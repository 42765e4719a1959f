//! How a handler says an attempt went wrong, and what the engine should do about it.

use thiserror::Error;

/// The failure of one attempt. The variant decides the job's fate.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum JobError {
    /// Worth another attempt (after backoff) while attempts remain.
    #[error("{0}")]
    Retryable(String),
    /// Retrying cannot help: the job is dead-lettered at once.
    #[error("{0}")]
    Permanent(String),
    /// The payload does not decode or validate: dead-lettered at once.
    #[error("malformed payload: {0}")]
    Malformed(String),
    /// The handler noticed cancellation and stopped.
    #[error("cancelled")]
    Cancelled,
    /// Not now, and not a failure (e.g. waiting for a permit): run again after
    /// `retry_in_ms` without using an attempt.
    #[error("deferred: {reason}")]
    Defer { retry_in_ms: u64, reason: String },
}

impl JobError {
    /// A retryable error from anything displayable.
    pub fn retry(msg: impl std::fmt::Display) -> Self {
        JobError::Retryable(msg.to_string())
    }

    /// A permanent error from anything displayable.
    pub fn permanent(msg: impl std::fmt::Display) -> Self {
        JobError::Permanent(msg.to_string())
    }

    /// Whether the engine may try again.
    pub fn is_retryable(&self) -> bool {
        matches!(self, JobError::Retryable(_))
    }
}
