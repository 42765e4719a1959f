//! SN50 commands: `score crps|leaderboard|backtest|constants`, `check-shapes`, `data info`.
//!
//! Thin clap wrappers over `workers::sn50`; the arithmetic lives there. Input formats are
//! documented in docs/sn50.md. JSON output is one object on one line, floats printed with
//! round-trip precision.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use workers::sn50::{backtest, constants, data, forecast, response, rewards, vectors};

/// `synth-city score ...`
#[derive(Debug, Args)]
pub struct ScoreArgs {
    #[command(subcommand)]
    pub command: ScoreCommand,
}

/// The scoring subcommands.
#[derive(Debug, Subcommand)]
pub enum ScoreCommand {
    /// Score a file of CRPS cases (the crps-vectors format) with the validator's CRPS.
    Crps {
        /// A `sn50-crps-vectors/1` JSON file.
        #[arg(long)]
        vectors: PathBuf,
        /// Print `{"results": [{"index", "crps"}, ...]}` (-1.0 invalid, null NaN).
        #[arg(long)]
        json: bool,
    },
    /// Turn per-request miner CRPS totals into leaderboards and weights.
    Leaderboard {
        /// The leaderboard input JSON (see docs/sn50.md).
        #[arg(long)]
        input: PathBuf,
        #[arg(long)]
        json: bool,
        /// TOML overrides of the SN50 constants.
        #[arg(long, env = "SYNTH_CITY_SN50_CONSTANTS")]
        constants: Option<PathBuf>,
    },
    /// Backtest a model on local bars with the validator's CRPS.
    Backtest {
        /// The model (`gbm`).
        #[arg(long, default_value = "gbm")]
        model: String,
        /// `low` (24 h at 300 s) or `high` (1 h at 60 s).
        #[arg(long, default_value = "low")]
        prompt: String,
        /// Comma-separated SN50 assets, e.g. BTC,ETH,SPYX.
        #[arg(long, value_delimiter = ',', default_value = "BTC,ETH,SOL")]
        assets: Vec<String>,
        /// The directory holding ASSET_1m.csv / ASSET_5m.csv.
        #[arg(long, default_value = "data")]
        data_dir: PathBuf,
        /// Prompt windows per asset.
        #[arg(long, default_value_t = 20)]
        windows: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Paths per prompt.
        #[arg(long, default_value_t = constants::NUM_SIMULATIONS)]
        paths: usize,
        /// Asset weights for the weighted mean: `validator` or `seed`.
        #[arg(long, default_value = "validator")]
        weights: String,
        #[arg(long)]
        json: bool,
        /// TOML overrides of the SN50 constants.
        #[arg(long, env = "SYNTH_CITY_SN50_CONSTANTS")]
        constants: Option<PathBuf>,
    },
    /// Print the SN50 constants in force (defaults plus overrides) as JSON.
    Constants {
        /// TOML overrides of the SN50 constants.
        #[arg(long, env = "SYNTH_CITY_SN50_CONSTANTS")]
        constants: Option<PathBuf>,
    },
}

/// `synth-city check-shapes ...`
#[derive(Debug, Args)]
pub struct CheckShapesArgs {
    /// A JSON object `{"simulation_input": {...}, "simulation_output": [...]}` (a miner's
    /// response body; `response` is accepted for `simulation_output`).
    #[arg(long)]
    pub input: PathBuf,
    /// Print the verdict as JSON.
    #[arg(long)]
    pub json: bool,
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
        data_dir: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

fn load_constants(path: Option<&Path>) -> anyhow::Result<constants::Sn50Config> {
    Ok(match path {
        Some(p) => constants::Sn50Config::load_overrides(p)?,
        None => constants::Sn50Config::default(),
    })
}

fn read(path: &Path, what: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {what} {}", path.display()))
}

fn print_json(v: &serde_json::Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(v)?);
    Ok(())
}

pub async fn score(args: ScoreArgs) -> anyhow::Result<()> {
    match args.command {
        ScoreCommand::Crps {
            vectors: path,
            json,
        } => {
            let file = vectors::load_vectors(&path)?;
            if json {
                println!("{}", vectors::score_vectors_json_string(&file));
                Ok(())
            } else {
                let table = vectors::score_vectors_text(&file);
                print!("{table}");
                let mismatches = table.lines().filter(|l| l.ends_with(" NO")).count();
                if mismatches > 0 {
                    anyhow::bail!("{mismatches} case(s) differ from their expected value");
                }
                Ok(())
            }
        }
        ScoreCommand::Leaderboard {
            input,
            json,
            constants,
        } => {
            let cfg = load_constants(constants.as_deref())?;
            let text = read(&input, "leaderboard input")?;
            let out = rewards::leaderboard_from_json(&text, &cfg)
                .with_context(|| format!("in {}", input.display()))?;
            if json {
                return print_json(&out);
            }
            for label in ["low", "high"] {
                println!("{label}: {} scored request(s)", out[label]["requests"]);
                println!(
                    "  {:>8} {:>6} {:>22} {:>24}",
                    "miner", "uid", "smoothed score", "reward weight"
                );
                for e in out[label]["leaderboard"].as_array().into_iter().flatten() {
                    println!(
                        "  {:>8} {:>6} {:>22} {:>24}",
                        e["miner_id"], e["miner_uid"], e["smoothed_score"], e["reward_weight"]
                    );
                }
            }
            println!("weights (uid: weight):");
            for w in out["weights"].as_array().into_iter().flatten() {
                println!("  {:>6}: {}", w["uid"], w["weight"]);
            }
            Ok(())
        }
        ScoreCommand::Backtest {
            model,
            prompt,
            assets,
            data_dir,
            windows,
            seed,
            paths,
            weights,
            json,
            constants,
        } => {
            let cfg = load_constants(constants.as_deref())?;
            let forecaster = forecast::model_by_name(&model, &cfg)?;
            let opts = backtest::BacktestOptions {
                prompt: prompt.parse()?,
                assets: assets
                    .iter()
                    .map(|a| a.trim().to_string())
                    .filter(|a| !a.is_empty())
                    .collect(),
                windows,
                seed,
                num_simulations: paths,
                weights: weights.parse()?,
            };
            let result = tokio::task::spawn_blocking(move || {
                backtest::run_backtest(forecaster.as_ref(), &data_dir, &opts, &cfg)
            })
            .await??;
            if json {
                return print_json(&backtest::backtest_json(&result));
            }
            println!(
                "model {} prompt {} seed {}",
                result.model, result.prompt, result.seed
            );
            for (a, r) in &result.assets {
                println!(
                    "  {a:<7} mean CRPS {:>14.6} over {} window(s) ({} invalid) from {}",
                    r.mean_crps, r.windows, r.invalid, r.file
                );
            }
            println!("weighted CRPS {:.6}", result.weighted_crps);
            Ok(())
        }
        ScoreCommand::Constants { constants } => {
            let cfg = load_constants(constants.as_deref())?;
            print_json(&serde_json::to_value(&cfg)?)
        }
    }
}

pub async fn check_shapes(args: CheckShapesArgs) -> anyhow::Result<()> {
    let text = read(&args.input, "check-shapes input")?;
    let report = response::check_shapes_text(&text)
        .with_context(|| format!("in {}", args.input.display()))?;
    if args.json {
        print_json(&serde_json::to_value(&report)?)?;
    } else {
        println!("{}", report.format_validation);
        if let Some(issue) = &report.scoring_issue {
            println!("scoring: {issue}");
        }
    }
    if report.ok {
        return Ok(());
    }
    match &report.scoring_issue {
        Some(issue) if report.format_validation == response::CORRECT => {
            anyhow::bail!("the response would score -1 or lose members: {issue}")
        }
        _ => anyhow::bail!("invalid response: {}", report.format_validation),
    }
}

pub async fn data(args: DataArgs) -> anyhow::Result<()> {
    match args.command {
        DataCommand::Info { data_dir, json } => {
            let infos = data::data_info(&data_dir)?;
            if infos.is_empty() {
                anyhow::bail!(
                    "no ASSET_1m.csv / ASSET_5m.csv files in {}",
                    data_dir.display()
                );
            }
            if json {
                print_json(&serde_json::json!({ "files": infos }))
            } else {
                print!("{}", data::data_info_text(&infos));
                Ok(())
            }
        }
    }
}

/// `synth-city bench crps ...`
#[derive(Debug, clap::Args)]
pub struct BenchCrpsArgs {
    #[arg(long)]
    pub json: bool,
}

/// Runs the CRPS benchmark.
pub async fn bench_crps(_args: BenchCrpsArgs) -> anyhow::Result<()> {
    anyhow::bail!("bench crps: under construction")
}
