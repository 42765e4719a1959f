//! The `synth-city` command line: one binary, one subcommand per concern.
//!
//! Each subcommand parses its flags (clap), builds what it needs from the
//! library, and prints either a table for people or one JSON object (`--json`)
//! for programs. Long-running commands stop cleanly on SIGINT/SIGTERM.

pub mod agent;
pub mod agents;
mod bench_store;
mod bots;
mod bridge;
pub mod client;
pub mod config;
pub mod dirs;
pub mod fleet;
pub mod mine;
pub mod model;
pub mod models;
pub mod ops;
pub mod pipeline;
mod queue;
pub mod sn50;
pub mod store;

use clap::{Parser, Subcommand};
use engine::queue::Queue;
use tokio_util::sync::CancellationToken;

use crate::settings::Settings;

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
    Worker(queue::WorkerArgs),
    /// List live workers: what they run and since when.
    Workers {
        #[arg(long)]
        json: bool,
    },
    /// Enqueue, inspect, cancel jobs; dead letters.
    Jobs {
        #[command(subcommand)]
        command: queue::JobsCommand,
    },
    /// The Redis semaphore that caps concurrent pipeline runs.
    Semaphore {
        #[command(subcommand)]
        command: queue::SemaphoreCommand,
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
        command: queue::ScheduleCommand,
    },
    /// Apply pending migrations of the Redis key layout.
    Migrate,
    /// GPU trainer pods on Basilica: the autoscaler (`run`), `status`, manual `rent` and
    /// `release`.
    Fleet {
        #[command(subcommand)]
        command: fleet::FleetCommand,
    },
    /// Serve the HTTP bridge for bots and people.
    Bridge(bridge::BridgeArgs),
    /// The bridge's principals: a key per bot (add, list, revoke).
    Bots {
        #[command(subcommand)]
        command: bots::BotsCommand,
    },
    /// Call the HTTP bridge (SYNTH_BRIDGE_URL, BRIDGE_API_KEY, SYNTH_BOT_ID).
    Client(client::ClientArgs),
    /// Run the research pipeline (plan, train, check, debug, publish) as jobs.
    Pipeline(Box<pipeline::PipelineArgs>),
    /// Run one LLM agent (planner, trainer, codechecker, debugger, publisher).
    Agent(agent::AgentArgs),
    /// Agents as data: list, show, add (a definition or a prompt module), remove.
    Agents {
        #[command(subcommand)]
        command: agents::AgentsCommand,
    },
    /// Pipeline runs: list, show, watch, cancel.
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
        command: queue::BenchCommand,
    },
    /// SN50 scoring: CRPS, leaderboard, backtests.
    Score(sn50::ScoreArgs),
    /// Validate a miner response as the SN50 validator does.
    CheckShapes(sn50::CheckShapesArgs),
    /// Market data: inspect and download.
    Data(sn50::DataArgs),
    /// Run the SN50 miner's axon (`--check` before going live, `--bench` to measure it).
    Mine(Box<mine::MineArgs>),
    /// Deployment chores: the Redis ACL file of a deployment (`ops redis-acl`).
    Ops {
        #[command(subcommand)]
        command: ops::OpsCommand,
    },
    /// Settings: every variable synth-city reads, its value and where it came from.
    Config {
        #[command(subcommand)]
        command: config::ConfigCommand,
    },
    /// Champions per (asset, prompt): list, show, promote (through the gate), rollback, history.
    Models(models::ModelsArgs),
    #[command(flatten)]
    Model(model::ModelCommand),
    /// Publish runs and read the store's history.
    #[command(flatten)]
    Store(store::StoreCommand),
}

/// Runs a parsed command line with the settings `main` loaded.
pub async fn run(cli: Cli, settings: Settings) -> anyhow::Result<()> {
    if let Command::Model(model::ModelCommand::Components {
        action: Some(a), ..
    }) = &cli.command
    {
        if a.uses_registry() {
            let q = connect(&cli)?;
            if let Command::Model(model::ModelCommand::Components {
                action: Some(a), ..
            }) = cli.command
            {
                return model::registry_command(q, a).await;
            }
        }
    }
    // `components` alone: the built-ins, and the registry's authored components when Redis
    // answers (the zoo's listing needs no Redis; one that is away is said, not fatal)
    if let Command::Model(model::ModelCommand::Components { action: None, json }) = &cli.command {
        let authored = match connect(&cli) {
            Ok(q) => model::authored_components(&q).await,
            Err(e) => Err(e.to_string()),
        };
        return model::list_components(*json, authored);
    }
    match cli.command {
        Command::Config { command } => {
            let mut s = settings;
            if let Some(url) = &cli.redis_url {
                s.set_flag("REDIS_URL", "--redis-url", url);
            }
            if let Some(p) = &cli.prefix {
                s.set_flag("SYNTH_CITY_PREFIX", "--prefix", p);
            }
            return config::run(command, &s);
        }
        Command::Score(a) => return sn50::score(a).await,
        Command::CheckShapes(a) => return sn50::check_shapes(a).await,
        Command::Data(a) => return sn50::data(a).await,
        Command::Model(c) => return model::run(c).await,
        Command::Models(a) => return models::run(a).await,
        Command::Agent(a) => return agent::run(a).await,
        Command::Client(a) => return client::run(a).await,
        Command::Mine(a) => return mine::run(*a).await,
        Command::Store(c) => return store::run(cli.redis_url, cli.prefix, c).await,
        Command::Ops { command } => return ops::run(cli.prefix, command).await,
        Command::Bench {
            command: queue::BenchCommand::Crps(a),
        } => return sn50::bench_crps(a).await,
        Command::Bench {
            command: queue::BenchCommand::Train(a),
        } => return model::bench_train(a).await,
        Command::Bench {
            command: queue::BenchCommand::Store(a),
        } => return bench_store::bench_store(a).await,
        _ => {}
    }
    let q = connect(&cli)?;
    match cli.command {
        Command::Worker(a) => queue::worker(q, a).await,
        Command::Workers { json } => queue::workers(q, json).await,
        Command::Jobs { command } => queue::jobs(q, command).await,
        Command::Semaphore { command } => queue::semaphore(q, command).await,
        Command::Scheduler { period_ms } => queue::scheduler(q, period_ms).await,
        Command::Schedule { command } => queue::schedule(q, command).await,
        Command::Migrate => queue::migrate(q).await,
        Command::Bench { command } => queue::bench(q, command).await,
        Command::Pipeline(a) => pipeline::pipeline(q, *a).await,
        Command::Runs { command } => pipeline::runs(q, command).await,
        Command::PipelineDef { command } => pipeline::pipeline_def(q, command).await,
        Command::Bridge(a) => bridge::run(q, a, &settings).await,
        Command::Bots { command } => bots::run(q, command).await,
        Command::Agents { command } => agents::run(q, command).await,
        Command::Fleet { command } => fleet::run(q, command).await,
        Command::Score(_)
        | Command::CheckShapes(_)
        | Command::Data(_)
        | Command::Model(_)
        | Command::Models(_)
        | Command::Store(_)
        | Command::Mine(_)
        | Command::Agent(_)
        | Command::Client(_)
        | Command::Ops { .. }
        | Command::Config { .. } => {
            unreachable!("dispatched above")
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub(crate) fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("install SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("signal received: shutting down");
        t.cancel();
    });
    token
}

/// The queue the global flags (and the settings) name.
fn connect(cli: &Cli) -> anyhow::Result<Queue> {
    let url = engine::config::redis_url(cli.redis_url.as_deref());
    let prefix = engine::config::prefix(cli.prefix.as_deref()).map_err(anyhow::Error::msg)?;
    let cfg = engine::config::QueueConfig::from_env()?;
    Ok(Queue::new(&url, &prefix, cfg)?)
}
