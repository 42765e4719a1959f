//! The three authoring agents (issue 20): `author` (component graphs), `agent_designer`
//! (agent definitions and prompt modules) and `pipeline_architect` (the pipeline's stages and
//! meta-strategy), as built-in agent definitions of the same kind as the five stage agents,
//! and their tools over a [`Workshop`].
//!
//! The tools are the seed's that fit this design: list/read/validate/write component, reload
//! registry, list/read/write agent and prompt module, get pipeline, add/remove/reorder stage,
//! get/update/reset meta-strategy, run history and strategy effectiveness. The pipeline edits
//! are JSON edits of the stored definition ([`add_stage`], [`remove_stage`],
//! [`reorder_stage`], [`update_strategy`], [`reset_strategy`]); the workshop stores the result
//! under the pipeline's own rules, so an invalid shape is refused by those rules, not here.
//!
//! What it does not do: talk to Redis or the store, validate documents, or decide who may
//! write what. The binary implements [`Workshop`] over its registry, agent definitions and
//! pipeline definition, in the name of the run's principal (a bot writes only its own, the
//! pipeline definition is the operator's). Nothing a tool receives is executed as code.

use std::sync::Arc;

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::definition::{template_fragments, AgentDef, AGENT_FORMAT};
use super::tools::{ToolDef, ToolError, ToolRegistry};

/// The three authoring agents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthoringAgent {
    Author,
    AgentDesigner,
    PipelineArchitect,
}

/// Every authoring tool's name (what [`authoring_tools`] registers).
pub const TOOL_NAMES: &[&str] = &[
    "list_components",
    "read_component",
    "validate_component",
    "write_component",
    "reload_registry",
    "list_agents",
    "read_agent",
    "write_agent",
    "list_prompts",
    "write_prompt",
    "get_pipeline",
    "add_stage",
    "remove_stage",
    "reorder_stage",
    "get_strategy",
    "update_strategy",
    "reset_strategy",
    "run_history",
    "strategy_effectiveness",
];

impl AuthoringAgent {
    pub const ALL: [AuthoringAgent; 3] = [
        AuthoringAgent::Author,
        AuthoringAgent::AgentDesigner,
        AuthoringAgent::PipelineArchitect,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuthoringAgent::Author => "author",
            AuthoringAgent::AgentDesigner => "agent_designer",
            AuthoringAgent::PipelineArchitect => "pipeline_architect",
        }
    }

    /// The authoring agent named `name` exactly.
    pub fn parse(name: &str) -> Option<AuthoringAgent> {
        Self::ALL.into_iter().find(|a| a.as_str() == name)
    }

    /// Its tools: authoring tools, and research tools where they help.
    pub fn tool_names(self) -> &'static [&'static str] {
        match self {
            AuthoringAgent::Author => &[
                "list_components",
                "read_component",
                "validate_component",
                "write_component",
                "reload_registry",
                "list_blocks",
                "list_heads",
            ],
            AuthoringAgent::AgentDesigner => &[
                "list_agents",
                "read_agent",
                "write_agent",
                "list_prompts",
                "write_prompt",
                "get_pipeline",
            ],
            AuthoringAgent::PipelineArchitect => &[
                "run_history",
                "strategy_effectiveness",
                "get_pipeline",
                "add_stage",
                "remove_stage",
                "reorder_stage",
                "get_strategy",
                "update_strategy",
                "reset_strategy",
                "list_agents",
            ],
        }
    }

    fn template(self) -> &'static str {
        match self {
            AuthoringAgent::Author => include_str!("../prompts/author.md"),
            AuthoringAgent::AgentDesigner => include_str!("../prompts/agent_designer.md"),
            AuthoringAgent::PipelineArchitect => include_str!("../prompts/pipeline_architect.md"),
        }
    }

    /// The agent as a read-only definition: its template's fragments, tools and context keys.
    /// `acts_as` is its own name: its stage runs as the `author` stage job.
    pub fn definition(self) -> AgentDef {
        let fragments = template_fragments(self.as_str(), self.template());
        AgentDef {
            format: AGENT_FORMAT.into(),
            name: self.as_str().into(),
            acts_as: self.as_str().into(),
            description: format!("the built-in {} (read-only)", self.as_str()),
            model: None,
            temperature: None,
            max_turns: 20,
            tools: self.tool_names().iter().map(|s| s.to_string()).collect(),
            fragments,
            context_keys: vec!["message".into(), "best_metrics".into(), "comparison".into()],
        }
    }
}

/// What the authoring tools act on, in the name of the run's principal. Every method answers
/// JSON for the model, or a [`ToolError`] naming the problem and the fix (the same rules and
/// messages as the HTTP routes).
#[async_trait]
pub trait Workshop: Send + Sync {
    /// The registry's components (built-ins and authored, marked).
    async fn list_components(&self) -> Result<Value, ToolError>;
    /// One component's graph document.
    async fn read_component(&self, name: &str) -> Result<Value, ToolError>;
    /// The graph validator's report on a document, nothing stored.
    async fn check_component(&self, document: Value) -> Result<Value, ToolError>;
    /// Validates and stores a component in the principal's name.
    async fn write_component(
        &self,
        name: Option<String>,
        document: Value,
    ) -> Result<Value, ToolError>;
    /// The registry's version now (what workers compare at job start).
    async fn reload_registry(&self) -> Result<Value, ToolError>;
    async fn list_agents(&self) -> Result<Value, ToolError>;
    async fn read_agent(&self, name: &str) -> Result<Value, ToolError>;
    async fn write_agent(&self, name: Option<String>, document: Value) -> Result<Value, ToolError>;
    /// The principal's prompt modules.
    async fn list_prompts(&self) -> Result<Value, ToolError>;
    async fn write_prompt(&self, name: Option<String>, document: Value)
        -> Result<Value, ToolError>;
    /// The stored pipeline definition (`{stages, strategy}`).
    async fn pipeline(&self) -> Result<Value, ToolError>;
    /// Validates and stores a pipeline definition; answers it as stored.
    async fn store_pipeline(&self, definition: Value) -> Result<Value, ToolError>;
    /// The principal's most recent runs, newest first.
    async fn run_history(&self, limit: usize) -> Result<Value, ToolError>;
    /// Per pipeline shape and block family, from the principal's runs.
    async fn strategy_effectiveness(&self, limit: usize) -> Result<Value, ToolError>;
}

/// A document to write.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct WriteArgs {
    /// Its name (replaces the document's own `name`); optional.
    #[serde(default)]
    pub name: Option<String>,
    /// The JSON document (see read_component / read_agent for the format).
    pub document: Map<String, Value>,
}

/// A document to check.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct DocumentArg {
    /// The JSON document.
    pub document: Map<String, Value>,
}

/// A name.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct NameArg {
    pub name: String,
}

/// How many entries.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct LimitArg {
    /// At most this many (default 20, at most 200).
    #[serde(default)]
    pub limit: Option<usize>,
}

/// A stage to add.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct AddStageArgs {
    /// The stage: {"name", "agent", "position" (plan|execute|validate|publish|post),
    /// "retry"?, "optional"?, "user_message"?}.
    pub stage: Map<String, Value>,
    /// Put it right after the stage of this name; default: at the end.
    #[serde(default)]
    pub after: Option<String>,
}

/// A stage to move.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ReorderArgs {
    /// The stage's name.
    pub name: String,
    /// Its new 0-based index.
    pub index: usize,
}

/// Changes to the meta-strategy.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct StrategyArgs {
    /// Fields to set: max_retries (1..=20), base_temperature (0..=1), temperature_step
    /// (0..=0.5), stall_threshold (1..=10), cooldown_retries (0..=10), per_stage_overrides
    /// ({stage: {field: value}}, merged per stage).
    pub changes: Map<String, Value>,
}

fn stages_of(def: &mut Value) -> Result<&mut Vec<Value>, ToolError> {
    def.get_mut("stages")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| ToolError::new("the pipeline definition has no `stages` list"))
}

fn index_of(stages: &[Value], name: &str) -> Result<usize, ToolError> {
    stages
        .iter()
        .position(|s| s["name"] == name)
        .ok_or_else(|| {
            let names: Vec<&str> = stages.iter().filter_map(|s| s["name"].as_str()).collect();
            ToolError::new(format!(
                "no stage {name:?}; the stages are: {}",
                names.join(", ")
            ))
        })
}

/// `def` with `stage` inserted after the stage `after` (at the end when None). The stage's
/// `acts_as` is dropped: the store writes it from the registry.
pub fn add_stage(
    mut def: Value,
    mut stage: Map<String, Value>,
    after: Option<&str>,
) -> Result<Value, ToolError> {
    stage.remove("acts_as");
    let stages = stages_of(&mut def)?;
    let at = match after {
        Some(a) => index_of(stages, a)? + 1,
        None => stages.len(),
    };
    stages.insert(at, Value::Object(stage));
    Ok(def)
}

/// `def` without the stage `name`.
pub fn remove_stage(mut def: Value, name: &str) -> Result<Value, ToolError> {
    let stages = stages_of(&mut def)?;
    let i = index_of(stages, name)?;
    stages.remove(i);
    Ok(def)
}

/// `def` with the stage `name` moved to `index` (clamped to the end).
pub fn reorder_stage(mut def: Value, name: &str, index: usize) -> Result<Value, ToolError> {
    let stages = stages_of(&mut def)?;
    let i = index_of(stages, name)?;
    let s = stages.remove(i);
    let at = index.min(stages.len());
    stages.insert(at, s);
    Ok(def)
}

/// `def` with `changes` set on its strategy (`per_stage_overrides` merged per stage).
pub fn update_strategy(mut def: Value, changes: Map<String, Value>) -> Result<Value, ToolError> {
    let obj = def
        .as_object_mut()
        .ok_or_else(|| ToolError::new("the pipeline definition is not an object"))?;
    let strategy = obj
        .entry("strategy")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or_else(|| ToolError::new("the pipeline definition's strategy is not an object"))?;
    for (k, v) in changes {
        match (k.as_str(), v) {
            ("per_stage_overrides", Value::Object(per)) => {
                let o = strategy
                    .entry("per_stage_overrides")
                    .or_insert_with(|| json!({}));
                for (stage, fields) in per {
                    match (o.get_mut(&stage), fields) {
                        (Some(Value::Object(old)), Value::Object(new)) => old.extend(new),
                        (_, fields) => {
                            o[&stage] = fields;
                        }
                    }
                }
            }
            (_, v) => {
                strategy.insert(k, v);
            }
        }
    }
    Ok(def)
}

/// `def` with the default meta-strategy (the strategy left out: the store's default).
pub fn reset_strategy(mut def: Value) -> Result<Value, ToolError> {
    def.as_object_mut()
        .ok_or_else(|| ToolError::new("the pipeline definition is not an object"))?
        .remove("strategy");
    Ok(def)
}

fn limit(a: &LimitArg) -> usize {
    a.limit.unwrap_or(20).clamp(1, 200)
}

/// The authoring tools over `desk` (every name of [`TOOL_NAMES`]).
pub fn authoring_tools(desk: Arc<dyn Workshop>) -> ToolRegistry {
    let mut reg = ToolRegistry::new();
    macro_rules! tool {
        ($name:literal, $desc:literal, |$d:ident, $a:ident: $ty:ty| $body:expr) => {{
            let desk = desk.clone();
            reg.register(ToolDef::typed($name, $desc, move |$a: $ty| {
                let $d = desk.clone();
                async move { $body }
            }));
        }};
    }
    use super::research::NoArgs;
    tool!(
        "list_components",
        "List the registry's components: built-in blocks and heads, and authored graphs with owner and version.",
        |d, _a: NoArgs| d.list_components().await
    );
    tool!(
        "read_component",
        "Read one authored component's graph document (synth-city/component@1).",
        |d, a: NameArg| d.read_component(&a.name).await
    );
    tool!(
        "validate_component",
        "Check a component graph without storing it: inferred shapes, parameters, FLOPs, or every problem with node, field and fix.",
        |d, a: DocumentArg| d.check_component(Value::Object(a.document)).await
    );
    tool!(
        "write_component",
        "Validate and store a component graph in the run owner's name (only the owner's own components may be overwritten; built-ins never).",
        |d, a: WriteArgs| d.write_component(a.name, Value::Object(a.document)).await
    );
    tool!(
        "reload_registry",
        "The registry's version now; workers read the registry at each job's start, so a written component is used without a restart.",
        |d, _a: NoArgs| d.reload_registry().await
    );
    tool!(
        "list_agents",
        "List the agents: the built-ins (read-only) and the authored ones with owner, version, acts_as and tools.",
        |d, _a: NoArgs| d.list_agents().await
    );
    tool!(
        "read_agent",
        "Read one agent's definition (synth-city/agent@1).",
        |d, a: NameArg| d.read_agent(&a.name).await
    );
    tool!(
        "write_agent",
        "Validate and store an agent definition (synth-city/agent@1) in the run owner's name.",
        |d, a: WriteArgs| d.write_agent(a.name, Value::Object(a.document)).await
    );
    tool!(
        "list_prompts",
        "List the run owner's prompt modules.",
        |d, _a: NoArgs| d.list_prompts().await
    );
    tool!(
        "write_prompt",
        "Validate and store a prompt module (synth-city/prompt@1: name, agent, fragments) in the run owner's name.",
        |d, a: WriteArgs| d.write_prompt(a.name, Value::Object(a.document)).await
    );
    tool!(
        "get_pipeline",
        "The stored pipeline definition: the stages in order (name, agent, position, retry, optional) and the meta-strategy.",
        |d, _a: NoArgs| d.pipeline().await
    );
    tool!(
        "add_stage",
        "Add a stage to the pipeline definition (after a named stage, or at the end); refused with the reason when the new shape breaks the pipeline's rules. Applies from the next run.",
        |d, a: AddStageArgs| {
            let def = add_stage(d.pipeline().await?, a.stage, a.after.as_deref())?;
            d.store_pipeline(def).await
        }
    );
    tool!(
        "remove_stage",
        "Remove a stage from the pipeline definition (protected stages stay). Applies from the next run.",
        |d, a: NameArg| {
            let def = remove_stage(d.pipeline().await?, &a.name)?;
            d.store_pipeline(def).await
        }
    );
    tool!(
        "reorder_stage",
        "Move a stage to a new 0-based index; positions must still follow plan, execute, validate, publish, post. Applies from the next run.",
        |d, a: ReorderArgs| {
            let def = reorder_stage(d.pipeline().await?, &a.name, a.index)?;
            d.store_pipeline(def).await
        }
    );
    tool!(
        "get_strategy",
        "The meta-strategy: retries, temperatures, stall threshold, per-stage overrides.",
        |d, _a: NoArgs| Ok(d.pipeline().await?["strategy"].clone())
    );
    tool!(
        "update_strategy",
        "Set fields of the meta-strategy (bounds checked; refused with the reason). Applies from the next run.",
        |d, a: StrategyArgs| {
            let def = update_strategy(d.pipeline().await?, a.changes)?;
            Ok(d.store_pipeline(def).await?["strategy"].clone())
        }
    );
    tool!(
        "reset_strategy",
        "Put the meta-strategy back to its defaults. Applies from the next run.",
        |d, _a: NoArgs| {
            let def = reset_strategy(d.pipeline().await?)?;
            Ok(d.store_pipeline(def).await?["strategy"].clone())
        }
    );
    tool!(
        "run_history",
        "The most recent runs (newest first): stages with outcome and note, best CRPS and GBM ratio, state.",
        |d, a: LimitArg| d.run_history(limit(&a)).await
    );
    tool!(
        "strategy_effectiveness",
        "Per pipeline shape and per block family over recent runs: runs, succeeded, best CRPS, mean best CRPS/GBM ratio, share of runs that improved on the best before them.",
        |d, a: LimitArg| d.strategy_effectiveness(limit(&a)).await
    );
    reg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def() -> Value {
        json!({"stages": [
            {"name": "planner", "agent": "planner", "position": "plan"},
            {"name": "trainer", "agent": "trainer", "position": "execute"},
            {"name": "check_debug", "agent": "codechecker", "position": "validate"}
        ], "strategy": {"max_retries": 5, "per_stage_overrides": {"trainer": {"max_retries": 2}}}})
    }

    fn names(d: &Value) -> Vec<&str> {
        d["stages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn edits_change_the_shape_and_name_what_is_missing() {
        let stage =
            json!({"name": "second", "agent": "planner", "position": "plan", "acts_as": "x"});
        let d = add_stage(def(), stage.as_object().unwrap().clone(), Some("planner")).unwrap();
        assert_eq!(names(&d), ["planner", "second", "trainer", "check_debug"]);
        assert!(
            d["stages"][1].get("acts_as").is_none(),
            "the store writes acts_as"
        );
        let d = reorder_stage(d, "second", 0).unwrap();
        assert_eq!(names(&d), ["second", "planner", "trainer", "check_debug"]);
        let d = reorder_stage(d, "second", 99).unwrap();
        assert_eq!(names(&d), ["planner", "trainer", "check_debug", "second"]);
        let d = remove_stage(d, "second").unwrap();
        assert_eq!(names(&d), ["planner", "trainer", "check_debug"]);
        let e = remove_stage(d, "ghost").unwrap_err().to_string();
        assert!(
            e.contains("no stage \"ghost\"") && e.contains("check_debug"),
            "{e}"
        );
    }

    #[test]
    fn strategy_updates_merge_and_reset_drops_it() {
        let changes = json!({"base_temperature": 0.3,
            "per_stage_overrides": {"trainer": {"stall_threshold": 3}, "planner": {"max_retries": 1}}});
        let d = update_strategy(def(), changes.as_object().unwrap().clone()).unwrap();
        let s = &d["strategy"];
        assert_eq!(s["base_temperature"], 0.3);
        assert_eq!(s["max_retries"], 5);
        assert_eq!(
            s["per_stage_overrides"]["trainer"],
            json!({"max_retries": 2, "stall_threshold": 3})
        );
        assert_eq!(s["per_stage_overrides"]["planner"]["max_retries"], 1);
        assert!(reset_strategy(d).unwrap().get("strategy").is_none());
    }

    #[test]
    fn the_agents_are_definitions_with_registered_tools() {
        let session = Arc::new(super::super::ResearchSession::new(
            "t",
            "data".into(),
            std::env::temp_dir(),
            Arc::new(super::super::MemoryHistory::default()),
            Arc::new(super::super::FsPublisher {
                root: std::env::temp_dir(),
            }),
        ));
        struct Nothing;
        #[async_trait]
        impl Workshop for Nothing {
            async fn list_components(&self) -> Result<Value, ToolError> {
                Ok(json!([]))
            }
            async fn read_component(&self, _: &str) -> Result<Value, ToolError> {
                Ok(Value::Null)
            }
            async fn check_component(&self, _: Value) -> Result<Value, ToolError> {
                Ok(Value::Null)
            }
            async fn write_component(
                &self,
                _: Option<String>,
                _: Value,
            ) -> Result<Value, ToolError> {
                Ok(Value::Null)
            }
            async fn reload_registry(&self) -> Result<Value, ToolError> {
                Ok(Value::Null)
            }
            async fn list_agents(&self) -> Result<Value, ToolError> {
                Ok(Value::Null)
            }
            async fn read_agent(&self, _: &str) -> Result<Value, ToolError> {
                Ok(Value::Null)
            }
            async fn write_agent(&self, _: Option<String>, _: Value) -> Result<Value, ToolError> {
                Ok(Value::Null)
            }
            async fn list_prompts(&self) -> Result<Value, ToolError> {
                Ok(Value::Null)
            }
            async fn write_prompt(&self, _: Option<String>, _: Value) -> Result<Value, ToolError> {
                Ok(Value::Null)
            }
            async fn pipeline(&self) -> Result<Value, ToolError> {
                Ok(def())
            }
            async fn store_pipeline(&self, d: Value) -> Result<Value, ToolError> {
                Err(ToolError::new(format!("refused: {}", names(&d).join(","))))
            }
            async fn run_history(&self, _: usize) -> Result<Value, ToolError> {
                Ok(Value::Null)
            }
            async fn strategy_effectiveness(&self, _: usize) -> Result<Value, ToolError> {
                Ok(Value::Null)
            }
        }
        let tools = authoring_tools(Arc::new(Nothing));
        let mut want: Vec<&str> = TOOL_NAMES.to_vec();
        want.sort();
        assert_eq!(tools.names(), want);
        let research = super::super::research::research_tools(session);
        for a in AuthoringAgent::ALL {
            let d = a.definition();
            assert!(d.fragments.len() >= 3, "{a:?}");
            assert_eq!(AuthoringAgent::parse(a.as_str()), Some(a));
            for t in &d.tools {
                assert!(
                    tools.get(t).is_some() || research.get(t).is_some(),
                    "{a:?}: {t}"
                );
            }
            assert!(crate::definition::is_builtin(a.as_str()));
            assert!(crate::definition::tool_names()
                .iter()
                .any(|n| n == "add_stage"));
        }
        // a pipeline edit goes through the workshop's store (which applies the rules)
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let args = json!({"name": "trainer", "index": 0});
        let e = rt
            .block_on(
                tools
                    .get("reorder_stage")
                    .unwrap()
                    .call(args.as_object().unwrap().clone()),
            )
            .unwrap_err()
            .to_string();
        assert_eq!(e, "refused: trainer,planner,check_debug");
    }
}
