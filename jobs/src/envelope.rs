//! The job envelope: everything the engine needs to deliver, retry and trace a job.
//!
//! The envelope travels as JSON in the `job` field of a stream entry. The
//! payload stays an opaque [`serde_json::Value`] here; handlers decode it into
//! their own type, so a malformed payload is caught by the worker that owns it
//! and dead-lettered with the decoder's message.

use serde::{Deserialize, Serialize};

/// Wire-format version written into every envelope (`v`).
pub const ENVELOPE_VERSION: u32 = 1;

/// One job as it sits on a stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobEnvelope {
    /// Wire-format version.
    pub v: u32,
    /// Unique id (a ULID), stable across retries.
    pub id: String,
    /// The job type; equals the stream the envelope sits on.
    #[serde(rename = "type")]
    pub job_type: String,
    /// The type's payload, decoded by its handler.
    pub payload: serde_json::Value,
    /// Failed attempts so far (0 on first delivery).
    pub attempt: u32,
    /// Attempts allowed before the job is dead-lettered.
    pub max_attempts: u32,
    /// Wall-clock budget for one attempt, in milliseconds.
    pub timeout_ms: u64,
    /// Same key, same job: a second enqueue with this key returns the first job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// The pipeline run this job belongs to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// The bot that asked for it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bot_id: Option<String>,
    /// The flow parent that waits for this job (set by the worker that fans the parent out,
    /// `JobError::WaitForChildren`). The job's record names its parent too; this copy lets
    /// the child reach its parent when that record was overwritten or deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// When Redis first accepted the job (Unix ms, Redis clock). Producers
    /// leave it 0; `enqueue.lua` stamps it, and retries keep it.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub enqueued_at_ms: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// A stream entry that is not a job this build can run.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("envelope is not valid: {0}")]
    Decode(#[from] serde_json::Error),
    #[error("envelope version {0} is not supported (expected {ENVELOPE_VERSION})")]
    Version(u32),
    #[error("envelope field `id` is empty")]
    EmptyId,
    #[error("envelope field `max_attempts` must be at least 1")]
    ZeroAttempts,
}

impl JobEnvelope {
    /// Decodes an envelope, naming the problem when it cannot.
    pub fn from_json(raw: &str) -> Result<Self, EnvelopeError> {
        let env: JobEnvelope = serde_json::from_str(raw)?;
        if env.v != ENVELOPE_VERSION {
            return Err(EnvelopeError::Version(env.v));
        }
        if env.id.is_empty() {
            return Err(EnvelopeError::EmptyId);
        }
        if env.max_attempts == 0 {
            return Err(EnvelopeError::ZeroAttempts);
        }
        Ok(env)
    }

    /// Encodes the envelope as compact JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a JobEnvelope always serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> JobEnvelope {
        JobEnvelope {
            v: ENVELOPE_VERSION,
            id: "01J0000000000000000000000".into(),
            job_type: "sleep".into(),
            payload: serde_json::json!({"ms": 5}),
            attempt: 0,
            max_attempts: 3,
            timeout_ms: 1000,
            idempotency_key: None,
            run_id: Some("run-1".into()),
            bot_id: None,
            parent: None,
            enqueued_at_ms: 0,
        }
    }

    #[test]
    fn round_trips() {
        let env = sample();
        assert_eq!(JobEnvelope::from_json(&env.to_json()).unwrap(), env);
        // What enqueue.lua does: append the server's time to the object.
        let json = env.to_json();
        let stamped = format!(
            "{},\"enqueued_at_ms\":1795600000000}}",
            &json[..json.len() - 1]
        );
        assert_eq!(
            JobEnvelope::from_json(&stamped).unwrap().enqueued_at_ms,
            1_795_600_000_000
        );
    }

    #[test]
    fn a_parent_round_trips_and_is_optional() {
        let mut env = sample();
        env.parent = Some("01JPARENT".into());
        let json = env.to_json();
        assert!(json.contains(r#""parent":"01JPARENT""#), "{json}");
        assert_eq!(JobEnvelope::from_json(&json).unwrap(), env);
        // Envelopes written before the field existed (no `parent`) still decode.
        let old = sample().to_json();
        assert!(!old.contains("parent"), "{old}");
        assert_eq!(JobEnvelope::from_json(&old).unwrap().parent, None);
    }

    #[test]
    fn names_missing_field() {
        let err = JobEnvelope::from_json(r#"{"v":1,"id":"x","type":"noop"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing field `payload`"), "{err}");
    }

    #[test]
    fn rejects_unknown_version_and_zero_attempts() {
        let mut env = sample();
        env.v = 9;
        assert!(JobEnvelope::from_json(&env.to_json())
            .unwrap_err()
            .to_string()
            .contains("version 9"));
        let mut env = sample();
        env.max_attempts = 0;
        assert!(JobEnvelope::from_json(&env.to_json())
            .unwrap_err()
            .to_string()
            .contains("max_attempts"));
    }

    #[test]
    fn rejects_bad_json() {
        assert!(JobEnvelope::from_json("{not json")
            .unwrap_err()
            .to_string()
            .starts_with("envelope is not valid"));
    }
}
