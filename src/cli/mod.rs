//! The `synth-city` command line: one binary, one subcommand per concern.
//!
//! Each subcommand parses its flags (clap), builds what it needs from the
//! library, and prints either a table for people or one JSON object (`--json`)
//! for programs. Long-running commands stop cleanly on SIGINT/SIGTERM.

pub mod agent;
pub mod client;
pub mod config;
pub mod mine;
pub mod model;
mod ops;
pub mod pipeline;
pub mod sn50;
pub mod store;

use clap::{Parser, Subcommand};

pub use ops::run;

/// synth-city: a Redis-streams job-queue worker fleet for Bittensor SN50.
#[derive(Debug, Parser)]
#[command(name = "synth-city", version, about)]
pub struct Cli {
    /// Redis URL [default: REDIS_URL (environment, .env or config file), else
    /// redis://127.0.0.1:6379]
    #[arg(long, global = true)]
    pub redis_url: Option<String>,
    /// Key prefix for this deployment [default: SYNTH_CITY_PREFIX, else "sc"]
    #[arg(long, global = true)]
    pub prefix: Option<String>,
    /// The TOML file of settings [default: synth-city.toml in the working directory, if any]
    /// (read before the command line is parsed; see `config show`).
    #[arg(long, global = true, env = "SYNTH_CITY_CONFIG", value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a stateless worker for some job types.
    Worker(ops::WorkerArgs),
    /// List live workers: what they run and since when.
    Workers {
        #[arg(long)]
        json: bool,
    },
    /// Enqueue, inspect, cancel jobs; dead letters.
    Jobs {
        #[command(subcommand)]
        command: ops::JobsCommand,
    },
    /// The Redis semaphore that caps concurrent pipeline runs.
    Semaphore {
        #[command(subcommand)]
        command: ops::SemaphoreCommand,
    },
    /// Run the cron scheduler (any number may run at once).
    Scheduler {
        /// How often to look for due schedules, in ms.
        #[arg(long, default_value_t = 1000)]
        period_ms: u64,
    },
    /// Add, list and remove cron schedules.
    Schedule {
        #[command(subcommand)]
        command: ops::ScheduleCommand,
    },
    /// Apply pending migrations of the Redis key layout.
    Migrate,
    /// Serve the HTTP bridge for bots and people.
    Bridge(ops::BridgeArgs),
    /// Call the HTTP bridge (SYNTH_BRIDGE_URL, BRIDGE_API_KEY, SYNTH_BOT_ID).
    Client(client::ClientArgs),
    /// Run the research pipeline (plan, train, check, debug, publish) as jobs.
    Pipeline(Box<pipeline::PipelineArgs>),
    /// Run one LLM agent (planner, trainer, codechecker, debugger, publisher).
    Agent(agent::AgentArgs),
    /// Pipeline runs: list, show, cancel.
    Runs {
        #[command(subcommand)]
        command: pipeline::RunsCommand,
    },
    /// The pipeline definition and meta-strategy: show, set, reset.
    PipelineDef {
        #[command(subcommand)]
        command: pipeline::PipelineDefCommand,
    },
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        command: ops::BenchCommand,
    },
    /// SN50 scoring: CRPS, leaderboard, backtests.
    Score(sn50::ScoreArgs),
    /// Validate a miner response as the SN50 validator does.
    CheckShapes(sn50::CheckShapesArgs),
    /// Market data: inspect and download.
    Data(sn50::DataArgs),
    /// Run the SN50 miner's axon (`--check` before going live, `--bench` to measure it).
    Mine(Box<mine::MineArgs>),
    /// Settings: every variable synth-city reads, its value and where it came from.
    Config {
        #[command(subcommand)]
        command: config::ConfigCommand,
    },
    #[command(flatten)]
    Model(model::ModelCommand),
    /// Publish runs and read the store's history.
    #[command(flatten)]
    Store(store::StoreCommand),
}
