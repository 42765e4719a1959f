//! Model-zoo commands: components, experiment, simulate, quick, sweep, bench train.
//!
//! Thin clap wrappers over `workers::zoo`.

use clap::{Args, Subcommand};

/// The model-zoo subcommands, flattened into the top level.
#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// List backbone blocks, heads and presets.
    Components {
        #[arg(long)]
        json: bool,
    },
}

/// `synth-city bench train ...`
#[derive(Debug, Args)]
pub struct BenchTrainArgs {
    #[arg(long)]
    pub preset: String,
    #[arg(long)]
    pub json: bool,
}

pub async fn run(_cmd: ModelCommand) -> anyhow::Result<()> {
    anyhow::bail!("model zoo: under construction")
}

pub async fn bench_train(_args: BenchTrainArgs) -> anyhow::Result<()> {
    anyhow::bail!("bench train: under construction")
}
