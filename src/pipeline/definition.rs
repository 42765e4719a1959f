//! The pipeline definition and the meta-strategy: which stages a run goes
//! through, in what order, and how hard it retries.
//!
//! One JSON document in Redis (`{prefix}:pipeline:def`), seeded with the
//! seed's default pipeline (planner, trainer, check_debug, publisher) and its
//! meta-strategy defaults, validated by the seed's rules before it is stored,
//! and edited with `synth-city pipeline-def show|set|reset`. A run copies the
//! document when it is created, so editing the definition never changes a run
//! in flight.
//!
//! A stage may name an authored agent (`crate::agent_defs`, issue 20) besides the
//! five built-ins: [`store`] accepts the names registered at that moment and writes
//! into the stage the built-in part the agent plays (`acts_as`: the stage job type it
//! runs as); its worker reads the agent's current definition when the stage job starts.

use std::collections::BTreeMap;

use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

use engine::queue::{Queue, QueueError, Result};

/// Where a stage sits; positions never go backwards along the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Position {
    Plan,
    Execute,
    Validate,
    Publish,
    Post,
}

impl Position {
    pub const ORDER: [Position; 5] = [
        Position::Plan,
        Position::Execute,
        Position::Validate,
        Position::Publish,
        Position::Post,
    ];
}

fn default_user_message() -> String {
    "Begin the task.".into()
}

fn default_position() -> Position {
    Position::Post
}

/// One stage of the pipeline (the seed's `StageSpec`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageSpec {
    pub name: String,
    /// The agent that carries the stage out: planner, trainer, codechecker
    /// (with the debugger in its check/debug loop), debugger or publisher, or an
    /// authored agent's name (`GET /agents`).
    #[serde(alias = "agent_name")]
    pub agent: String,
    /// For an authored agent, the built-in part it plays (its definition's `acts_as`),
    /// written by [`store`] from the registry; none for a built-in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acts_as: Option<String>,
    /// A protected stage of the default pipeline may not be removed or unprotected.
    #[serde(default)]
    pub protected: bool,
    #[serde(default = "default_position")]
    pub position: Position,
    /// Retry the stage (temperature escalating) when it fails.
    #[serde(default)]
    pub retry: bool,
    /// A failed optional stage does not fail the run.
    #[serde(default)]
    pub optional: bool,
    #[serde(default = "default_user_message")]
    pub user_message: String,
}

/// The agents a stage may name, and the stage job type each runs as. The three authoring
/// agents (`agents::authoring`) run as the `author` stage job: its result is recorded and the
/// run moves on (it plans, trains and publishes nothing).
pub const AGENTS: &[(&str, &str)] = &[
    ("planner", "plan"),
    ("trainer", "train"),
    ("codechecker", "check"),
    ("debugger", "debug"),
    ("publisher", "publish"),
    ("author", "author"),
    ("agent_designer", "author"),
    ("pipeline_architect", "author"),
];

fn job_type_of(agent: &str) -> Option<&'static str> {
    AGENTS.iter().find(|(a, _)| *a == agent).map(|(_, j)| *j)
}

impl StageSpec {
    /// The job type this stage's jobs run as: the built-in agent's, or for an authored agent
    /// the one of the built-in it acts as.
    pub fn job_type(&self) -> &'static str {
        job_type_of(&self.agent)
            .or_else(|| self.acts_as.as_deref().and_then(job_type_of))
            .unwrap_or("plan")
    }

    /// Whether the stage names an authored agent rather than a built-in.
    pub fn is_authored(&self) -> bool {
        job_type_of(&self.agent).is_none()
    }
}

/// Retry parameters that a stage may override (the seed's `per_stage_overrides`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageOverride {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature_step: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stall_threshold: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown_retries: Option<u32>,
}

/// The meta-strategy (the seed's `MetaStrategy`, same defaults and bounds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetaStrategy {
    /// Attempts of a retried stage, and rounds of the check/debug loop: 1..=20.
    pub max_retries: u32,
    /// Temperature of attempt 0: 0..=1.
    pub base_temperature: f64,
    /// Added per attempt: 0..=0.5.
    pub temperature_step: f64,
    /// Unchanged fixes in a row before the debugger is told to change course: 1..=10.
    pub stall_threshold: u32,
    /// Kept for the seed's format (0..=10); the seed never used it either.
    pub cooldown_retries: u32,
    #[serde(default)]
    pub per_stage_overrides: BTreeMap<String, StageOverride>,
}

impl Default for MetaStrategy {
    fn default() -> Self {
        MetaStrategy {
            max_retries: 5,
            base_temperature: 0.1,
            temperature_step: 0.1,
            stall_threshold: 1,
            cooldown_retries: 2,
            per_stage_overrides: BTreeMap::new(),
        }
    }
}

/// The parameters that apply to one stage: the overrides merged over the globals.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct StageStrategy {
    pub max_retries: u32,
    pub base_temperature: f64,
    pub temperature_step: f64,
    pub stall_threshold: u32,
}

impl StageStrategy {
    /// The temperature of attempt `attempt` (0-based).
    pub fn temperature(&self, attempt: u32) -> f64 {
        self.base_temperature + attempt as f64 * self.temperature_step
    }
}

impl MetaStrategy {
    /// The seed's `for_stage`.
    pub fn for_stage(&self, stage: &str) -> StageStrategy {
        let o = self.per_stage_overrides.get(stage);
        let o = o.cloned().unwrap_or_default();
        StageStrategy {
            max_retries: o.max_retries.unwrap_or(self.max_retries),
            base_temperature: o.base_temperature.unwrap_or(self.base_temperature),
            temperature_step: o.temperature_step.unwrap_or(self.temperature_step),
            stall_threshold: o.stall_threshold.unwrap_or(self.stall_threshold),
        }
    }

    fn check(&self, at: &str, errs: &mut Vec<String>) {
        let o = StageOverride {
            max_retries: Some(self.max_retries),
            base_temperature: Some(self.base_temperature),
            temperature_step: Some(self.temperature_step),
            stall_threshold: Some(self.stall_threshold),
            cooldown_retries: Some(self.cooldown_retries),
        };
        check_override(&o, at, errs);
        for (stage, o) in &self.per_stage_overrides {
            check_override(o, &format!("{at}.per_stage_overrides.{stage}"), errs);
        }
    }
}

fn check_override(o: &StageOverride, at: &str, errs: &mut Vec<String>) {
    let int = |v: Option<u32>, name: &str, lo: u32, hi: u32, errs: &mut Vec<String>| {
        if let Some(v) = v {
            if !(lo..=hi).contains(&v) {
                errs.push(format!("{at}.{name}: {v} is outside {lo}..={hi}"));
            }
        }
    };
    let real = |v: Option<f64>, name: &str, hi: f64, errs: &mut Vec<String>| {
        if let Some(v) = v {
            if !(0.0..=hi).contains(&v) {
                errs.push(format!("{at}.{name}: {v} is outside 0..={hi}"));
            }
        }
    };
    int(o.max_retries, "max_retries", 1, 20, errs);
    real(o.base_temperature, "base_temperature", 1.0, errs);
    real(o.temperature_step, "temperature_step", 0.5, errs);
    int(o.stall_threshold, "stall_threshold", 1, 10, errs);
    int(o.cooldown_retries, "cooldown_retries", 0, 10, errs);
}

/// The whole document: the stages in order and the meta-strategy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineDef {
    pub stages: Vec<StageSpec>,
    #[serde(default)]
    pub strategy: MetaStrategy,
}

fn stage(
    name: &str,
    agent: &str,
    protected: bool,
    position: Position,
    retry: bool,
    optional: bool,
    user_message: &str,
) -> StageSpec {
    StageSpec {
        name: name.into(),
        agent: agent.into(),
        acts_as: None,
        protected,
        position,
        retry,
        optional,
        user_message: user_message.into(),
    }
}

impl Default for PipelineDef {
    /// The seed's `DEFAULT_PIPELINE` and meta-strategy defaults.
    fn default() -> Self {
        PipelineDef {
            stages: vec![
                stage(
                    "planner",
                    "planner",
                    true,
                    Position::Plan,
                    false,
                    false,
                    "Discover the available components and produce an experiment plan to find \
                     the best architecture for SN50 CRPS.",
                ),
                stage(
                    "trainer",
                    "trainer",
                    true,
                    Position::Execute,
                    true,
                    false,
                    "Begin the task.",
                ),
                stage(
                    "check_debug",
                    "codechecker",
                    true,
                    Position::Validate,
                    false,
                    false,
                    "Validate the best experiment config and its results.",
                ),
                stage(
                    "publisher",
                    "publisher",
                    false,
                    Position::Publish,
                    false,
                    true,
                    "Publish the best model to HF Hub.",
                ),
            ],
            strategy: MetaStrategy::default(),
        }
    }
}

impl PipelineDef {
    /// The seed's `validate_pipeline` (plus: every agent must be one this build runs, and
    /// the meta-strategy must be within its bounds). Every problem is named at once. A stage
    /// naming an authored agent must carry the part it plays (`acts_as`, as [`store`] writes
    /// it).
    pub fn validate(&self) -> std::result::Result<(), Vec<String>> {
        self.validate_with(None)
    }

    /// [`validate`](Self::validate), with the authored agents registered now (name -> the
    /// built-in part it plays): a stage may name one of them, and only them besides the
    /// built-ins.
    pub fn validate_with(
        &self,
        authored: Option<&BTreeMap<String, String>>,
    ) -> std::result::Result<(), Vec<String>> {
        let mut errs = Vec::new();
        if self.stages.is_empty() {
            errs.push("stages: the pipeline has no stages".into());
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, s) in self.stages.iter().enumerate() {
            if s.name.trim().is_empty() {
                errs.push(format!("stages[{i}].name: empty"));
            } else if !seen.insert(s.name.as_str()) {
                errs.push(format!(
                    "stages[{i}].name: {:?} appears twice; names must be unique",
                    s.name
                ));
            }
            let known = match authored {
                _ if !s.is_authored() => true,
                Some(map) => map.contains_key(&s.agent),
                None => s.acts_as.as_deref().and_then(job_type_of).is_some(),
            };
            if !known {
                let names: Vec<&str> = authored
                    .map(|m| m.keys().map(String::as_str).collect())
                    .unwrap_or_default();
                errs.push(format!(
                    "stages[{i}].agent: unknown agent {:?}; one of {}, or an authored agent \
                     (GET /agents, `synth-city agents list`){}",
                    s.agent,
                    AGENTS
                        .iter()
                        .map(|(a, _)| *a)
                        .collect::<Vec<_>>()
                        .join(", "),
                    if names.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", names.join(", "))
                    }
                ));
            }
            if i > 0 && s.position < self.stages[i - 1].position {
                errs.push(format!(
                    "stages[{i}].position: {:?} comes after {:?} ({}); positions must follow \
                     plan, execute, validate, publish, post",
                    s.position,
                    self.stages[i - 1].position,
                    self.stages[i - 1].name
                ));
            }
        }
        if !self.stages.iter().any(|s| {
            matches!(
                s.position,
                Position::Plan | Position::Execute | Position::Validate
            )
        }) {
            errs.push("stages: at least one plan, execute or validate stage is required".into());
        }
        for d in PipelineDef::default().stages.iter().filter(|s| s.protected) {
            match self.stages.iter().find(|s| s.name == d.name) {
                None => errs.push(format!(
                    "stages: the protected stage {:?} ({}) may not be removed",
                    d.name, d.agent
                )),
                Some(s) if !s.protected => errs.push(format!(
                    "stages: the stage {:?} must stay protected",
                    d.name
                )),
                Some(_) => {}
            }
        }
        self.strategy.check("strategy", &mut errs);
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs)
        }
    }

    /// Parses and validates a stored document.
    pub fn parse(text: &str) -> std::result::Result<PipelineDef, DefinitionError> {
        let def = PipelineDef::decode(text)?;
        def.validate().map_err(DefinitionError::Invalid)?;
        Ok(def)
    }

    /// Parses a document without checking it ([`store`] checks it against the registry).
    pub fn decode(text: &str) -> std::result::Result<PipelineDef, DefinitionError> {
        serde_json::from_str(text).map_err(DefinitionError::Decode)
    }
}

/// A pipeline definition that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DefinitionError {
    #[error("not a pipeline definition: {0}")]
    Decode(serde_json::Error),
    /// Every problem, each naming its field and how to fix it.
    #[error("{}", .0.join("; "))]
    Invalid(Vec<String>),
}

/// The stored definition, or the default when none is stored. A stored document that no
/// longer parses (edited by hand) is an error naming the problem and the way out.
pub async fn load(queue: &Queue) -> Result<PipelineDef> {
    let key = queue.keys().pipeline_def();
    let text: Option<String> = queue
        .retrying("pipeline def", |mut c| {
            let key = key.clone();
            async move { Ok(c.get(key).await?) }
        })
        .await?;
    match text {
        None => Ok(PipelineDef::default()),
        Some(t) => PipelineDef::parse(&t).map_err(|e| {
            QueueError::Invalid(format!(
                "the stored pipeline definition is invalid ({e}); fix it with \
                 `synth-city pipeline-def set FILE` or `pipeline-def reset`"
            ))
        }),
    }
}

/// Validates and stores a definition: its stages may name the built-in agents and the
/// authored agents registered now, whose `acts_as` is written into their stages. Answers the
/// definition as stored.
pub async fn store(queue: &Queue, def: &PipelineDef) -> Result<PipelineDef> {
    let roles = crate::agent_defs::authored_roles(queue)
        .await
        .map_err(|e| QueueError::Invalid(format!("the agent registry cannot be read: {e}")))?;
    let mut def = def.clone();
    for s in &mut def.stages {
        s.acts_as = if s.is_authored() {
            roles.get(&s.agent).cloned()
        } else {
            None
        };
    }
    def.validate_with(Some(&roles))
        .map_err(|e| QueueError::Invalid(e.join("; ")))?;
    let key = queue.keys().pipeline_def();
    let text = serde_json::to_string_pretty(&def).expect("definitions serialise");
    queue
        .retrying("set pipeline def", |mut c| {
            let (key, text) = (key.clone(), text.clone());
            async move {
                let _: () = c.set(key, text).await?;
                Ok(())
            }
        })
        .await?;
    Ok(def)
}

/// Forgets the stored definition: runs use the default again.
pub async fn reset(queue: &Queue) -> Result<()> {
    let key = queue.keys().pipeline_def();
    queue
        .retrying("reset pipeline def", |mut c| {
            let key = key.clone();
            async move {
                let _: () = c.del(key).await?;
                Ok(())
            }
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_the_seeds_and_valid() {
        let d = PipelineDef::default();
        d.validate().unwrap();
        let names: Vec<_> = d.stages.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["planner", "trainer", "check_debug", "publisher"]);
        assert!(d.stages[1].retry && d.stages[3].optional && !d.stages[3].protected);
        assert_eq!(d.stages[2].job_type(), "check");
        let s = d.strategy.for_stage("trainer");
        assert_eq!((s.max_retries, s.stall_threshold), (5, 1));
        assert!((s.temperature(4) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn every_rule_is_named() {
        let mut d = PipelineDef::default();
        d.stages.remove(0); // planner: protected
        d.stages[0].protected = false; // trainer
        d.stages.push(d.stages[2].clone()); // publisher twice
        d.stages.push(stage(
            "x",
            "ghost",
            false,
            Position::Plan,
            false,
            false,
            "m",
        ));
        d.strategy.max_retries = 0;
        d.strategy.per_stage_overrides.insert(
            "trainer".into(),
            StageOverride {
                temperature_step: Some(0.9),
                ..Default::default()
            },
        );
        let errs = d.validate().unwrap_err().join("\n");
        for needle in [
            "\"planner\" (planner) may not be removed",
            "\"trainer\" must stay protected",
            "\"publisher\" appears twice",
            "unknown agent \"ghost\"",
            "stages[4].position",
            "strategy.max_retries: 0 is outside 1..=20",
            "strategy.per_stage_overrides.trainer.temperature_step: 0.9",
        ] {
            assert!(errs.contains(needle), "{needle} not in\n{errs}");
        }
        assert!(PipelineDef {
            stages: vec![],
            strategy: MetaStrategy::default()
        }
        .validate()
        .unwrap_err()
        .iter()
        .any(|e| e.contains("no stages")));
    }

    #[test]
    fn a_stage_may_name_a_registered_authored_agent() {
        let mut d = PipelineDef::default();
        let mut scout = stage("scout", "scout", false, Position::Plan, false, false, "go");
        d.stages.insert(1, scout.clone());
        // not registered: refused, naming it and the registered ones
        let none = BTreeMap::new();
        let errs = d.validate_with(Some(&none)).unwrap_err().join("\n");
        assert!(errs.contains("unknown agent \"scout\""), "{errs}");
        let mut roles = BTreeMap::new();
        roles.insert("critic".to_string(), "codechecker".to_string());
        let errs = d.validate_with(Some(&roles)).unwrap_err().join("\n");
        assert!(errs.contains(": critic"), "{errs}");
        roles.insert("scout".to_string(), "planner".to_string());
        d.validate_with(Some(&roles)).unwrap();
        // stored, the stage carries the part it plays, which decides its job type
        assert!(
            d.validate().is_err(),
            "without acts_as a stored stage is unknown"
        );
        scout.acts_as = Some("planner".into());
        d.stages[1] = scout;
        d.validate().unwrap();
        assert!(d.stages[1].is_authored() && !d.stages[0].is_authored());
        assert_eq!(d.stages[1].job_type(), "plan");
        let text = serde_json::to_string(&d).unwrap();
        assert_eq!(PipelineDef::parse(&text).unwrap(), d);
    }

    #[test]
    fn overrides_merge_over_the_globals() {
        let mut m = MetaStrategy::default();
        m.per_stage_overrides.insert(
            "check_debug".into(),
            StageOverride {
                max_retries: Some(2),
                ..Default::default()
            },
        );
        assert_eq!(m.for_stage("check_debug").max_retries, 2);
        assert_eq!(m.for_stage("check_debug").base_temperature, 0.1);
        assert_eq!(m.for_stage("trainer").max_retries, 5);
    }

    #[test]
    fn parse_names_unknown_fields() {
        let e = PipelineDef::parse(r#"{"stages": [], "strategy": {"max_retries": 1, "nope": 2}}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("nope"), "{e}");
    }
}
