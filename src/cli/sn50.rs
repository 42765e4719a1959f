//! SN50 commands: `score crps|leaderboard|backtest`, `check-shapes`, `data info|download`.
//!
//! Thin clap wrappers over `workers::sn50`; the arithmetic lives there.

use clap::{Args, Subcommand};

/// `synth-city score ...`
#[derive(Debug, Args)]
pub struct ScoreArgs {
    #[command(subcommand)]
    pub command: ScoreCommand,
}

/// The scoring subcommands.
#[derive(Debug, Subcommand)]
pub enum ScoreCommand {
    /// Score a file of CRPS cases (the crps-vectors format).
    Crps {
        #[arg(long)]
        vectors: std::path::PathBuf,
        #[arg(long)]
        json: bool,
    },
}

/// `synth-city check-shapes ...`
#[derive(Debug, Args)]
pub struct CheckShapesArgs {
    #[arg(long)]
    pub input: std::path::PathBuf,
}

/// `synth-city data ...`
#[derive(Debug, Args)]
pub struct DataArgs {
    #[command(subcommand)]
    pub command: DataCommand,
}

/// The market-data subcommands.
#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Summarise the CSV bar files in a data directory.
    Info {
        #[arg(long, default_value = "data")]
        data_dir: std::path::PathBuf,
    },
}

pub async fn score(_args: ScoreArgs) -> anyhow::Result<()> {
    anyhow::bail!("score: under construction")
}

pub async fn check_shapes(_args: CheckShapesArgs) -> anyhow::Result<()> {
    anyhow::bail!("check-shapes: under construction")
}

pub async fn data(_args: DataArgs) -> anyhow::Result<()> {
    anyhow::bail!("data: under construction")
}
