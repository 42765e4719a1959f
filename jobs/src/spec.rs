//! Job types: the [`JobSpec`] trait that ties a payload to its type name, and the catalog.
//!
//! The catalog is the list of every job type this build knows. The engine uses
//! it to refuse an enqueue of an unknown type or a payload that does not decode,
//! before anything reaches Redis, and migrations create a consumer group per entry.

use serde::{de::DeserializeOwned, Serialize};

use crate::error::{CatalogError, InvalidPayload};

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
    /// The role whose workers run it.
    const ROLE: Role;
    /// Whether bots may enqueue it through the bridge. Closed by default: a new job type is
    /// refused to bots (403) until its author opens it here.
    const BOTS: BotAccess = BotAccess::Refused("ask the operator to enqueue or schedule it");

    /// Fields this type no longer takes, each with what to do instead. A payload naming one is
    /// refused with that text (at enqueue, and dead-lettered if one is already queued) rather
    /// than serde's bare "unknown field".
    const RETIRED_FIELDS: &'static [(&'static str, &'static str)] = &[];

    /// Whether something reads this type's finished record after it finished (a bridge
    /// session takes an experiment's result from it): the retention settings that drop or
    /// count records (`SYNTH_KEEP_*`) leave it alone, and it is kept for
    /// `SYNTH_JOB_RETENTION_SECS`.
    const RECORD_READ_AFTER_FINISH: bool = false;

    /// Checks the payload beyond what serde checks; the message names the field.
    fn validate(&self) -> Result<(), InvalidPayload> {
        Ok(())
    }
}

/// Decodes `value` as `J` and runs its own checks: a retired field is named with what to do
/// instead, a field serde refuses with serde's message, then [`JobSpec::validate`]. The one
/// decoding path of enqueue checks and of handlers.
pub fn decode_payload<J: JobSpec>(value: serde_json::Value) -> Result<J, InvalidPayload> {
    if let Some(obj) = value.as_object() {
        if let Some((field, instead)) = J::RETIRED_FIELDS
            .iter()
            .find(|(field, _)| obj.contains_key(*field))
        {
            return Err(format!("field `{field}` is no longer taken: {instead}").into());
        }
    }
    let job: J = serde_json::from_value(value).map_err(|e| InvalidPayload(e.to_string()))?;
    job.validate()?;
    Ok(job)
}

/// Which kind of worker runs a job type. A worker process serves the types of the roles it is
/// started with (`synth-city worker --roles trainer,scorer`, or type names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// The queue's own types (`noop`, `sleep`) and starting pipeline runs (`run`).
    Engine,
    /// LLM or built-in agents: planning, checking, debugging.
    Agents,
    /// Training in candle (CPU or CUDA).
    Trainer,
    /// SN50 scoring and market data.
    Scorer,
    /// The store, the Hub, W&B.
    Publisher,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 5] = [
        Role::Engine,
        Role::Agents,
        Role::Trainer,
        Role::Scorer,
        Role::Publisher,
    ];

    /// The role's name on the command line.
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Engine => "engine",
            Role::Agents => "agents",
            Role::Trainer => "trainer",
            Role::Scorer => "scorer",
            Role::Publisher => "publisher",
        }
    }

    /// The role named `s`, if any.
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether bots may enqueue a job type through the bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BotAccess {
    /// Any authenticated bot may enqueue it (`POST /jobs`).
    Allowed,
    /// Refused with 403; the text says what a bot should do instead.
    Refused(&'static str),
}

impl BotAccess {
    /// Whether bots may enqueue it.
    pub const fn allowed(self) -> bool {
        matches!(self, BotAccess::Allowed)
    }
}

/// A catalog entry: what the engine knows about a type without knowing its Rust type.
#[derive(Debug, Clone, Copy)]
pub struct JobTypeInfo {
    pub name: &'static str,
    pub description: &'static str,
    pub max_attempts: u32,
    pub timeout_ms: u64,
    pub role: Role,
    pub bots: BotAccess,
    /// [`JobSpec::RECORD_READ_AFTER_FINISH`].
    pub record_read_after_finish: bool,
    /// Decodes and validates a payload, naming what is wrong.
    pub validate: fn(&serde_json::Value) -> Result<(), CatalogError>,
}

impl JobTypeInfo {
    /// The catalog entry of `J`.
    pub const fn of<J: JobSpec>() -> Self {
        JobTypeInfo {
            name: J::TYPE,
            description: J::DESCRIPTION,
            max_attempts: J::MAX_ATTEMPTS,
            timeout_ms: J::TIMEOUT_MS,
            role: J::ROLE,
            bots: J::BOTS,
            record_read_after_finish: J::RECORD_READ_AFTER_FINISH,
            validate: validate_payload::<J>,
        }
    }
}

/// Decodes `value` as `J` and runs its own checks.
pub fn validate_payload<J: JobSpec>(value: &serde_json::Value) -> Result<(), CatalogError> {
    decode_payload::<J>(value.clone())
        .map(|_| ())
        .map_err(|e| CatalogError::Payload {
            job_type: J::TYPE,
            message: e.0,
        })
}

/// Every job type of this build.
pub fn catalog() -> &'static [JobTypeInfo] {
    static CATALOG: &[JobTypeInfo] = &[
        JobTypeInfo::of::<crate::builtin::Noop>(),
        JobTypeInfo::of::<crate::builtin::Sleep>(),
        JobTypeInfo::of::<crate::pipeline::StartRun>(),
        JobTypeInfo::of::<crate::pipeline::Plan>(),
        JobTypeInfo::of::<crate::pipeline::Train>(),
        JobTypeInfo::of::<crate::pipeline::TrainOne>(),
        JobTypeInfo::of::<crate::pipeline::Check>(),
        JobTypeInfo::of::<crate::pipeline::Debug>(),
        JobTypeInfo::of::<crate::pipeline::Publish>(),
        JobTypeInfo::of::<crate::pipeline::Author>(),
        JobTypeInfo::of::<crate::experiment::RunExperiment>(),
        JobTypeInfo::of::<crate::data::DataDownload>(),
        JobTypeInfo::of::<crate::shadow::ShadowPrompt>(),
        JobTypeInfo::of::<crate::shadow::ShadowScore>(),
        JobTypeInfo::of::<crate::models::Promote>(),
    ];
    CATALOG
}

/// The catalog entry for `name` in this build's [`catalog`], or an error listing the known
/// types.
pub fn find_type(name: &str) -> Result<&'static JobTypeInfo, CatalogError> {
    find_in(catalog(), name)
}

fn find_in<'a>(types: &'a [JobTypeInfo], name: &str) -> Result<&'a JobTypeInfo, CatalogError> {
    types
        .iter()
        .find(|t| t.name == name)
        .ok_or_else(|| CatalogError::UnknownType {
            name: name.to_string(),
            known: types.iter().map(|t| t.name).collect::<Vec<_>>().join(", "),
        })
}

/// The job types a queue accepts: this build's [`catalog`], plus any a program adds (an
/// embedding application's own types, a test's). The queue checks every enqueue against it,
/// workers their roles, and the bridge its bot rule.
#[derive(Debug, Clone)]
pub struct Catalog {
    types: Vec<JobTypeInfo>,
}

impl Default for Catalog {
    fn default() -> Self {
        Catalog {
            types: catalog().to_vec(),
        }
    }
}

impl Catalog {
    /// Adds (or replaces) the type `J`.
    pub fn with<J: JobSpec>(mut self) -> Self {
        self.types.retain(|t| t.name != J::TYPE);
        self.types.push(JobTypeInfo::of::<J>());
        self
    }

    /// The entry for `name`, or an error listing the known types.
    /// The types whose finished records are read after they finish
    /// ([`JobSpec::RECORD_READ_AFTER_FINISH`]).
    pub fn records_read_after_finish(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.types
            .iter()
            .filter(|t| t.record_read_after_finish)
            .map(|t| t.name)
    }

    pub fn find(&self, name: &str) -> Result<&JobTypeInfo, CatalogError> {
        find_in(&self.types, name)
    }

    /// Every entry.
    pub fn types(&self) -> &[JobTypeInfo] {
        &self.types
    }

    /// The names of the types `role` runs.
    pub fn of_role(&self, role: Role) -> Vec<&'static str> {
        self.types
            .iter()
            .filter(|t| t.role == role)
            .map(|t| t.name)
            .collect()
    }
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
    fn bots_are_refused_unless_a_type_opens_itself() {
        #[derive(serde::Serialize, serde::Deserialize)]
        struct Internal {}
        impl JobSpec for Internal {
            const TYPE: &'static str = "internal-thing";
            const DESCRIPTION: &'static str = "a type that says nothing about bots";
            const ROLE: Role = Role::Engine;
            type Output = ();
        }
        let c = Catalog::default().with::<Internal>();
        let t = c.find("internal-thing").unwrap();
        assert!(!t.bots.allowed());
        assert!(c.find("noop").unwrap().bots.allowed());
        let open: Vec<_> = catalog()
            .iter()
            .filter(|t| t.bots.allowed())
            .map(|t| t.name)
            .collect();
        assert_eq!(open, ["noop", "sleep", "run"]);
        assert_eq!(
            c.of_role(Role::Trainer),
            ["train", "train-one", "experiment"]
        );
    }

    #[test]
    fn unknown_type_lists_known_ones() {
        let err = find_type("nope").unwrap_err().to_string();
        assert!(
            err.contains("unknown job type `nope`") && err.contains("sleep"),
            "{err}"
        );
    }

    #[test]
    fn payload_errors_name_the_field() {
        let sleep = find_type("sleep").unwrap();
        let err = (sleep.validate)(&serde_json::json!({"fail_rate": 0.5}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing field `ms`"), "{err}");
        let err = (sleep.validate)(&serde_json::json!({"ms": 1, "fail_rate": 2.0}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("fail_rate"), "{err}");
        assert!((sleep.validate)(&serde_json::json!({"ms": 1})).is_ok());
    }

    #[test]
    fn retired_directory_fields_say_what_to_do_instead() {
        for (ty, payload) in [
            ("run", serde_json::json!({"run": {}, "data_dir": "/data"})),
            ("run", serde_json::json!({"out_dir": "/runs"})),
            (
                "experiment",
                serde_json::json!({"experiment_id": "e", "spec": {}, "out_dir": "/x"}),
            ),
            ("shadow-score", serde_json::json!({"store_dir": "/s"})),
            ("shadow-prompt", serde_json::json!({"data_dir": "/d"})),
            (
                "data-download",
                serde_json::json!({"assets": ["BTC"], "data_dir": "/d"}),
            ),
        ] {
            let t = find_type(ty).unwrap();
            let err = (t.validate)(&payload).unwrap_err().to_string();
            assert!(
                err.contains("is no longer taken") && err.contains("synth-city worker --data-dir"),
                "{ty}: {err}"
            );
            let field = payload
                .as_object()
                .unwrap()
                .keys()
                .find(|k| k.ends_with("_dir"))
                .unwrap();
            assert!(err.contains(&format!("`{field}`")), "{ty}: {err}");
        }
        // other unknown fields keep serde's message
        let err = (find_type("run").unwrap().validate)(&serde_json::json!({"bogus": 1}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `bogus`"), "{err}");
        // a model by path is refused; by reference it is taken
        let prompt = find_type("shadow-prompt").unwrap();
        let err = (prompt.validate)(&serde_json::json!({"model": "/tmp/ck"}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("field `model`"), "{err}");
        let r = crate::ArtifactRef::of_manifest(&"0f".repeat(32), 99);
        assert!((prompt.validate)(&serde_json::json!({"model": r.to_string()})).is_ok());
    }
}
