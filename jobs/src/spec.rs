//! Job types: the [`JobSpec`] trait that ties a payload to its type name, and the catalog.
//!
//! The catalog is the list of every job type this build knows. The engine uses
//! it to refuse an enqueue of an unknown type or a payload that does not decode,
//! before anything reaches Redis, and migrations create a consumer group per entry.

use serde::{de::DeserializeOwned, Serialize};

/// A job type: its payload (`Self`), its result, its name and its defaults.
pub trait JobSpec: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The stream / type name, `[a-z0-9_.-]+`.
    const TYPE: &'static str;
    /// What the handler returns on success.
    type Output: Serialize + DeserializeOwned + Send + 'static;
    /// One line for `synth-city jobs types`.
    const DESCRIPTION: &'static str;
    /// Attempts allowed unless the enqueuer says otherwise.
    const MAX_ATTEMPTS: u32 = 3;
    /// Per-attempt timeout unless the enqueuer says otherwise.
    const TIMEOUT_MS: u64 = 60_000;

    /// Checks the payload beyond what serde checks; the message names the field.
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }
}

/// A catalog entry: what the engine knows about a type without knowing its Rust type.
#[derive(Debug, Clone, Copy)]
pub struct JobTypeInfo {
    pub name: &'static str,
    pub description: &'static str,
    pub max_attempts: u32,
    pub timeout_ms: u64,
    /// Decodes and validates a payload, naming what is wrong.
    pub validate: fn(&serde_json::Value) -> Result<(), String>,
}

impl JobTypeInfo {
    /// The catalog entry of `J`.
    pub const fn of<J: JobSpec>() -> Self {
        JobTypeInfo {
            name: J::TYPE,
            description: J::DESCRIPTION,
            max_attempts: J::MAX_ATTEMPTS,
            timeout_ms: J::TIMEOUT_MS,
            validate: validate_payload::<J>,
        }
    }
}

/// Decodes `value` as `J` and runs its own checks.
pub fn validate_payload<J: JobSpec>(value: &serde_json::Value) -> Result<(), String> {
    let job: J = serde_json::from_value(value.clone())
        .map_err(|e| format!("payload for `{}`: {e}", J::TYPE))?;
    job.validate()
        .map_err(|e| format!("payload for `{}`: {e}", J::TYPE))
}

/// Every job type of this build.
pub fn catalog() -> &'static [JobTypeInfo] {
    static CATALOG: &[JobTypeInfo] = &[
        JobTypeInfo::of::<crate::ops::Noop>(),
        JobTypeInfo::of::<crate::ops::Sleep>(),
        JobTypeInfo::of::<crate::pipeline::StartRun>(),
        JobTypeInfo::of::<crate::pipeline::Plan>(),
        JobTypeInfo::of::<crate::pipeline::Train>(),
        JobTypeInfo::of::<crate::pipeline::Check>(),
        JobTypeInfo::of::<crate::pipeline::Debug>(),
        JobTypeInfo::of::<crate::pipeline::Publish>(),
        JobTypeInfo::of::<crate::experiment::RunExperiment>(),
        JobTypeInfo::of::<crate::data::DataDownload>(),
        JobTypeInfo::of::<crate::shadow::ShadowPrompt>(),
        JobTypeInfo::of::<crate::shadow::ShadowScore>(),
    ];
    CATALOG
}

/// The catalog entry for `name`, or an error listing the known types.
pub fn find_type(name: &str) -> Result<&'static JobTypeInfo, String> {
    catalog().iter().find(|t| t.name == name).ok_or_else(|| {
        let known: Vec<_> = catalog().iter().map(|t| t.name).collect();
        format!(
            "unknown job type `{name}`; known types: {}",
            known.join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_names_are_unique_and_stream_safe() {
        let mut names: Vec<_> = catalog().iter().map(|t| t.name).collect();
        for n in &names {
            assert!(n
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.-".contains(c)));
        }
        names.sort();
        names.dedup();
        assert_eq!(names.len(), catalog().len());
    }

    #[test]
    fn unknown_type_lists_known_ones() {
        let err = find_type("nope").unwrap_err();
        assert!(
            err.contains("unknown job type `nope`") && err.contains("sleep"),
            "{err}"
        );
    }

    #[test]
    fn payload_errors_name_the_field() {
        let sleep = find_type("sleep").unwrap();
        let err = (sleep.validate)(&serde_json::json!({"fail_rate": 0.5})).unwrap_err();
        assert!(err.contains("missing field `ms`"), "{err}");
        let err = (sleep.validate)(&serde_json::json!({"ms": 1, "fail_rate": 2.0})).unwrap_err();
        assert!(err.contains("fail_rate"), "{err}");
        assert!((sleep.validate)(&serde_json::json!({"ms": 1})).is_ok());
    }
}
