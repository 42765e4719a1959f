//! LLM agents: the seed's Planner, Trainer, CodeChecker, Debugger and Publisher as tool-calling
//! loops over an OpenAI-compatible chat-completions API (Chutes by default).
//!
//! - [`config`]: base URL, key and model per agent from the environment; retry policy.
//! - [`client`]: the chat-completions client (async-openai wire types, reqwest + rustls),
//!   retries on 429 / 5xx / timeouts, token usage.
//! - [`runner`]: the loop ([`AgentRunner`]), the built-in `finish` tool, [`AgentResult`].
//! - [`coerce`]: the seed's repair of sloppy tool arguments.
//! - [`tools`]: the registry, schemas derived from Rust argument types (schemars).
//! - [`research`]: the tools over this project's zoo and SN50 code, bound to a
//!   [`ResearchSession`].
//! - [`history`]: the [`ExperimentHistory`] and [`Publisher`] traits the engine implements, with
//!   in-memory, JSON-lines and filesystem implementations.
//! - [`pods`]: the GPU pod tools (Basilica) over a [`pods::PodDesk`] the binary implements.
//! - [`prompts`]: the per-agent template files and their fragments.
//! - [`definition`]: agents and prompt modules as data (`synth-city/agent@1`,
//!   `synth-city/prompt@1`): validation, the built-ins as definitions, the system prompt;
//!   [`run_def`] runs one.
//! - [`authoring`]: the authoring agents (author, agent_designer, pipeline_architect) and
//!   their tools over a [`authoring::Workshop`] the engine implements.
//!
//! Without an API key nothing here runs: [`config::ConfigError::NoApiKey`] says so, and the
//! pipeline uses its built-in (non-LLM) agents instead.

pub mod authoring;
pub mod builtin;
pub mod client;
pub mod coerce;
pub mod config;
pub mod definition;
pub mod history;
pub mod pods;
pub mod prompts;
pub mod research;
pub mod runner;
pub mod store_history;
pub mod tools;

use std::sync::Arc;

use serde_json::{Map, Value};

pub use client::{ChatClient, LlmError, Usage};
pub use config::{ConfigError, LlmConfig, RetryPolicy};
pub use history::{
    ExperimentHistory, ExperimentRecord, FsPublisher, HistoryError, JsonlHistory, MemoryHistory,
    PublishFailed, PublishReceipt, PublishRequest, Publisher, RunStatus,
};
pub use research::{ResearchSession, RunBudget};
pub use runner::{AgentResult, AgentRunner};
pub use tools::{ToolDef, ToolError, ToolRegistry};

/// The agents of the default pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AgentName {
    Planner,
    Trainer,
    CodeChecker,
    Debugger,
    Publisher,
}

impl AgentName {
    pub const ALL: [AgentName; 5] = [
        AgentName::Planner,
        AgentName::Trainer,
        AgentName::CodeChecker,
        AgentName::Debugger,
        AgentName::Publisher,
    ];

    /// The seed's `agent_name`.
    pub fn as_str(self) -> &'static str {
        match self {
            AgentName::Planner => "planner",
            AgentName::Trainer => "trainer",
            AgentName::CodeChecker => "codechecker",
            AgentName::Debugger => "debugger",
            AgentName::Publisher => "publisher",
        }
    }

    /// The agent's tools (the seed's `build_tools` lists, restricted to what this project can
    /// really do; see `docs/agents.md` for what was left out and why).
    pub fn tool_names(self) -> &'static [&'static str] {
        match self {
            AgentName::Planner => &[
                "list_blocks",
                "list_heads",
                "list_presets",
                "session_summary",
                "compare_results",
                "scan_experiment_history",
                "check_experiment_novelty",
                "estimate_params",
                "estimate_flops",
            ],
            AgentName::Trainer => &[
                "create_experiment",
                "validate_experiment",
                "compare_results",
                "session_summary",
                "data_loader_info",
                "scan_experiment_history",
                "check_experiment_novelty",
                "estimate_params",
                "estimate_flops",
                "run_experiment",
            ],
            AgentName::CodeChecker => &[
                "validate_experiment",
                "describe_experiment",
                "list_blocks",
                "list_heads",
                "check_shapes",
            ],
            AgentName::Debugger => &[
                "create_experiment",
                "validate_experiment",
                "list_blocks",
                "list_heads",
                "scan_experiment_history",
                "run_experiment",
            ],
            AgentName::Publisher => &["validate_experiment", "publish_model", "compare_results"],
        }
    }

    /// The task keys whose values the agent gets as context messages (the seed's
    /// `build_context`).
    pub fn context_keys(self) -> &'static [&'static str] {
        match self {
            AgentName::Planner => &["crps_scores", "prior_comparison", "experiment_budget"],
            AgentName::Trainer => &["plan", "experiment_budget"],
            AgentName::CodeChecker => &["experiment", "run_result"],
            AgentName::Debugger => &["error_report", "experiment"],
            AgentName::Publisher => &["best_experiment", "best_metrics", "comparison"],
        }
    }
}

impl std::fmt::Display for AgentName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for AgentName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let n = s.trim().to_ascii_lowercase();
        AgentName::ALL
            .into_iter()
            .find(|a| a.as_str() == n || (n == "code_checker" && *a == AgentName::CodeChecker))
            .ok_or_else(|| {
                format!(
                    "unknown agent {s:?}; use one of {}",
                    AgentName::ALL.map(|a| a.as_str()).join(", ")
                )
            })
    }
}

/// The context messages for `agent` from the task, as the seed builds them: one message per
/// present key, `experiment_budget` as the seed's instruction.
pub fn context_messages(agent: AgentName, task: &Map<String, Value>) -> Vec<String> {
    context_for(agent.context_keys(), agent, task)
}

/// The context messages for `keys` from the task, for an agent playing the part of `role`.
pub fn context_for(keys: &[&str], role: AgentName, task: &Map<String, Value>) -> Vec<String> {
    let mut out = Vec::new();
    for key in keys {
        let Some(v) = task.get(*key).filter(|v| !v.is_null()) else {
            continue;
        };
        let text = match v {
            Value::String(s) => s.clone(),
            other => serde_json::to_string_pretty(other).unwrap_or_else(|_| other.to_string()),
        };
        out.push(match (*key, role) {
            ("experiment_budget", AgentName::Planner) => {
                format!("Your plan MUST include exactly {text} experiment(s).")
            }
            ("experiment_budget", _) => {
                format!("Run at most {text} experiment(s) SEQUENTIALLY.")
            }
            _ => format!("## {key}\n\n{text}"),
        });
    }
    out
}

/// The agent's tools bound to `session`.
pub fn tools_for(agent: AgentName, session: Arc<ResearchSession>) -> ToolRegistry {
    research::research_tools(session)
        .subset(agent.tool_names())
        .expect("every agent's tool names are registered research tools")
}

/// Options of one agent run besides the LLM configuration.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub temperature: f32,
    pub max_turns: usize,
    /// The prompt channel (`default` unless a bot's channel has its own fragments).
    pub channel: String,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            temperature: config::DEFAULT_TEMPERATURE,
            max_turns: config::DEFAULT_MAX_TURNS,
            channel: "default".into(),
        }
    }
}

/// Run one agent on a task: system prompt from its template, context from the task, user
/// message `task["user_message"]` (default "Begin the task."), its tools over `session`.
pub async fn run_agent(
    agent: AgentName,
    llm: &LlmConfig,
    session: Arc<ResearchSession>,
    task: &Map<String, Value>,
    opts: &RunOptions,
) -> Result<AgentResult, LlmError> {
    let mut def = definition::AgentDef::builtin(agent);
    def.max_turns = opts.max_turns;
    run_def(&def, &[], llm, session, task, opts).await
}

/// Run an agent definition with its prompt modules: the system prompt from its fragments and
/// the modules' for `opts.channel`, context from its keys, the user message
/// `task["user_message"]` (default "Begin the task."), its tools over `session`, its model
/// (else `llm`'s), temperature (else `opts`'s) and turn limit. A tool it names that this build
/// lacks is left out with a warning (definitions are checked when written).
pub async fn run_def(
    def: &definition::AgentDef,
    modules: &[definition::PromptModule],
    llm: &LlmConfig,
    session: Arc<ResearchSession>,
    task: &Map<String, Value>,
    opts: &RunOptions,
) -> Result<AgentResult, LlmError> {
    run_def_with(def, modules, llm, session, None, task, opts).await
}

/// [`run_def`] with `extra` tools besides the research tools (the authoring tools of an
/// authoring stage).
pub async fn run_def_with(
    def: &definition::AgentDef,
    modules: &[definition::PromptModule],
    llm: &LlmConfig,
    session: Arc<ResearchSession>,
    extra: Option<&ToolRegistry>,
    task: &Map<String, Value>,
    opts: &RunOptions,
) -> Result<AgentResult, LlmError> {
    let mut all = research::research_tools(session.clone());
    pods::add_pod_tools(&mut all, session.pods.clone());
    for t in extra.map(|e| e.names()).unwrap_or_default() {
        all.register(extra.and_then(|e| e.get(t)).expect("a listed tool").clone());
    }
    let names: Vec<&str> = def
        .tools
        .iter()
        .map(String::as_str)
        .filter(|t| {
            let there = all.get(t).is_some();
            if !there {
                tracing::warn!(agent = %def.name, tool = %t, "the definition names a tool this build lacks; left out");
            }
            there
        })
        .collect();
    let tools = all.subset(&names).expect("only registered tools are kept");
    let runner = AgentRunner {
        client: ChatClient::new(llm)?,
        model: def.model.clone().unwrap_or_else(|| llm.model.clone()),
        temperature: def.temperature.unwrap_or(opts.temperature),
        max_turns: def.max_turns,
        tools,
    };
    let system = def.system_prompt(modules, &opts.channel, task);
    let context = def.context_messages(task);
    let user = task
        .get("user_message")
        .and_then(|v| v.as_str())
        .unwrap_or("Begin the task.");
    Ok(runner.run(&system, &context, user).await)
}

#[cfg(test)]
mod unit_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_parse_and_every_tool_set_is_registered() {
        for a in AgentName::ALL {
            assert_eq!(a.as_str().parse::<AgentName>().unwrap(), a);
        }
        assert!("author"
            .parse::<AgentName>()
            .unwrap_err()
            .contains("planner"));
        let session = Arc::new(ResearchSession::new(
            "t",
            "data".into(),
            std::env::temp_dir(),
            Arc::new(MemoryHistory::default()),
            Arc::new(FsPublisher {
                root: std::env::temp_dir(),
            }),
        ));
        for a in AgentName::ALL {
            let reg = tools_for(a, session.clone());
            assert_eq!(reg.len(), a.tool_names().len(), "{a}");
        }
        assert!(tools_for(AgentName::Planner, session.clone())
            .get("run_experiment")
            .is_none());
    }

    #[test]
    fn context_follows_the_seed() {
        let task = json!({"plan": {"experiments": []}, "experiment_budget": 2, "other": 1});
        let c = context_messages(AgentName::Trainer, task.as_object().unwrap());
        assert_eq!(c.len(), 2);
        assert!(c[0].starts_with("## plan"));
        assert_eq!(c[1], "Run at most 2 experiment(s) SEQUENTIALLY.");
        let c = context_messages(AgentName::Planner, task.as_object().unwrap());
        assert_eq!(c, vec!["Your plan MUST include exactly 2 experiment(s)."]);
    }
}

#[cfg(test)]
mod tests;
