//! `synth-city agent --name planner [--message TEXT] [--json]`: run one LLM agent with its tools
//! over this project's zoo and SN50 code (see docs/agents.md). Needs `CHUTES_API_KEY`; without
//! it the command says so and exits non-zero (the pipeline then uses its built-in agents).

use std::path::PathBuf;
use std::sync::Arc;

use agents::store_history::{StoreHistory, StorePublisher};
use agents::{
    self, AgentName, FsPublisher, JsonlHistory, LlmConfig, ResearchSession, RunBudget, RunOptions,
};
use anyhow::Context;
use clap::Args;
use serde_json::{json, Map, Value};

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// planner, trainer, codechecker, debugger or publisher.
    #[arg(long)]
    pub name: String,
    /// The user message [default: the pipeline stage's message for this agent].
    #[arg(long)]
    pub message: Option<String>,
    /// Extra task keys as a JSON object (e.g. '{"plan": ..., "experiment_budget": 2}').
    #[arg(long)]
    pub task: Option<String>,
    /// Market data folder for training and shape checks.
    #[arg(long, default_value = "data")]
    pub data_dir: PathBuf,
    /// Where checkpoints go (runs/agents/<run id>/<experiment>/).
    #[arg(long, default_value = "runs/agents")]
    pub runs_dir: PathBuf,
    /// The store the agent's history and publications live in (the S3 store
    /// when HIPPIUS_ENDPOINT is set), as the pipeline's (docs/storage.md).
    #[arg(long, default_value = "store")]
    pub store: PathBuf,
    /// Keep the history in a JSON-lines file instead of the store.
    #[arg(long)]
    pub history: Option<PathBuf>,
    /// Publish into this directory instead of the store.
    #[arg(long)]
    pub publish_dir: Option<PathBuf>,
    /// Prompt channel.
    #[arg(long, default_value = "default")]
    pub channel: String,
    #[arg(long, default_value_t = agents::config::DEFAULT_MAX_TURNS)]
    pub max_turns: usize,
    #[arg(long, default_value_t = agents::config::DEFAULT_TEMPERATURE)]
    pub temperature: f32,
    /// Cap on epochs per run_experiment.
    #[arg(long, default_value_t = RunBudget::default().max_epochs)]
    pub max_epochs: usize,
    /// Cap on run_experiment calls.
    #[arg(long, default_value_t = RunBudget::default().max_runs)]
    pub max_experiments: usize,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// The seed's stage messages for the agents of the default pipeline.
fn default_message(agent: AgentName) -> &'static str {
    match agent {
        AgentName::Planner => "Discover the available components and produce an experiment plan to find the best architecture for SN50 CRPS.",
        AgentName::CodeChecker => "Validate the best experiment config and its results.",
        AgentName::Publisher => "Publish the best model.",
        _ => "Begin the task.",
    }
}

pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let agent: AgentName = args.name.parse().map_err(|e: String| anyhow::anyhow!(e))?;
    let llm = LlmConfig::from_env(agent)?;
    let mut task: Map<String, Value> = match &args.task {
        None => Map::new(),
        Some(t) => match serde_json::from_str(t).context("--task is not JSON")? {
            Value::Object(m) => m,
            _ => anyhow::bail!("--task must be a JSON object"),
        },
    };
    task.insert(
        "user_message".into(),
        Value::String(
            args.message
                .clone()
                .unwrap_or_else(|| default_message(agent).to_string()),
        ),
    );
    task.entry("experiment_budget").or_insert(json!(1));
    let run_id = format!(
        "{}-{}",
        agent,
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    );
    let store = publisher::store::open(&args.store)?;
    let history: Arc<dyn agents::ExperimentHistory> = match &args.history {
        Some(file) => Arc::new(JsonlHistory::new(file.clone())),
        None => Arc::new(StoreHistory {
            store: store.clone(),
            session: run_id.clone(),
        }),
    };
    let publisher: Arc<dyn agents::Publisher> = match &args.publish_dir {
        Some(dir) => Arc::new(FsPublisher { root: dir.clone() }),
        None => Arc::new(StorePublisher {
            store,
            session: run_id.clone(),
        }),
    };
    let mut session = ResearchSession::new(
        &run_id,
        args.data_dir.clone(),
        args.runs_dir.clone(),
        history,
        publisher,
    );
    session.budget.max_epochs = args.max_epochs.max(1);
    session.budget.max_runs = args.max_experiments;
    let opts = RunOptions {
        temperature: args.temperature,
        max_turns: args.max_turns,
        channel: args.channel.clone(),
    };
    if !args.json {
        eprintln!(
            "agent {agent}: model {} at {}, up to {} turns",
            llm.model, llm.base_url, opts.max_turns
        );
    }
    let session = Arc::new(session);
    let result = agents::run_agent(agent, &llm, session.clone(), &task, &opts).await?;
    if args.json {
        let v = json!({
            "agent": agent.as_str(),
            "model": llm.model,
            "success": result.success,
            "structured": result.structured,
            "raw_text": result.raw_text,
            "turns_used": result.turns_used,
            "usage": result.usage,
            "tool_calls": result.tool_calls,
            "results": session.results(),
        });
        println!("{}", serde_json::to_string(&v)?);
    } else {
        for c in &result.tool_calls {
            eprintln!(
                "  turn {:>2}  {}{}",
                c.turn,
                c.name,
                if c.ok { "" } else { "  (error)" }
            );
        }
        println!(
            "{} after {} turn(s); {} tokens in {} call(s)",
            if result.success { "success" } else { "failure" },
            result.turns_used,
            result.usage.total_tokens,
            result.usage.calls
        );
        match &result.structured {
            Some(s) => println!("{}", serde_json::to_string_pretty(s)?),
            None => println!("{}", result.raw_text),
        }
    }
    if !result.success {
        anyhow::bail!(
            "agent {agent} did not succeed: {}",
            first_line(&result.raw_text)
        );
    }
    Ok(())
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}
