//! How a handler says an attempt went wrong, and what the engine should do about it.

use thiserror::Error;

/// A payload that decodes but does not hold: the message names the field, what is wrong and
/// how to fix it (`field `days` must be within 1..=366, got 0`).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0}")]
pub struct InvalidPayload(pub String);

impl From<String> for InvalidPayload {
    fn from(s: String) -> Self {
        InvalidPayload(s)
    }
}

impl From<&str> for InvalidPayload {
    fn from(s: &str) -> Self {
        InvalidPayload(s.to_string())
    }
}

/// A job the catalog refuses before anything reaches Redis.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CatalogError {
    #[error("unknown job type `{name}`; known types: {known}")]
    UnknownType { name: String, known: String },
    /// The payload does not decode (serde's message) or does not validate.
    #[error("payload for `{job_type}`: {message}")]
    Payload {
        job_type: &'static str,
        message: String,
    },
}

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
    /// Not a failure: the job has handed its work to these child jobs and waits for them
    /// (BullMQ's flows). The engine enqueues them and parks the job in `waiting-children`
    /// in one step (`fan_out.lua`), records each child's outcome on the job as the child
    /// completes, dies or is cancelled, and runs the job again, without using an attempt,
    /// once the last child has an outcome (`Queue::children` reads them). Children whose ids
    /// already have an outcome are not run again.
    #[error("waiting for {} child job(s)", .0.len())]
    WaitForChildren(Vec<crate::JobEnvelope>),
}

impl JobError {
    /// The same error with its message passed through `f` (the kind is kept).
    pub fn map_message(self, f: impl Fn(&str) -> String) -> Self {
        match self {
            JobError::Retryable(m) => JobError::Retryable(f(&m)),
            JobError::Permanent(m) => JobError::Permanent(f(&m)),
            JobError::Malformed(m) => JobError::Malformed(f(&m)),
            JobError::Cancelled => JobError::Cancelled,
            JobError::Defer {
                retry_in_ms,
                reason,
            } => JobError::Defer {
                retry_in_ms,
                reason: f(&reason),
            },
            JobError::WaitForChildren(c) => JobError::WaitForChildren(c),
        }
    }

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
