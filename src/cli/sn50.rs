//! SN50 commands: `score crps|leaderboard|backtest|constants`, `check-shapes`,
//! `data info|download|spot`, `bench crps`.
//!
//! Thin clap wrappers over `workers::sn50`; the arithmetic lives there. Input formats are
//! documented in docs/sn50.md. JSON output is one object on one line, floats printed with
//! round-trip precision.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use sn50::{
    backtest, bench, constants, data, download, forecast, pyth, response, rewards, vectors,
    venues::{self, SourceChoice},
};

/// `synth-city score ...`
#[derive(Debug, Args)]
pub struct ScoreArgs {
    #[command(subcommand)]
    pub command: ScoreCommand,
}

/// The scoring subcommands.
#[derive(Debug, Subcommand)]
pub enum ScoreCommand {
    /// Score a file of CRPS cases (the crps-vectors format) with the validator's scoring: the
    /// price CRPS, plus the 1 h volatility term where a case has volatility blocks.
    Crps {
        /// A `sn50-crps-vectors/1` or `/2` JSON file.
        #[arg(long)]
        vectors: PathBuf,
        /// Print `{"results": [{"index", "crps"}, ...]}` (-1.0 invalid, null NaN); for a `/2`
        /// file each result also carries `price_crps`, `vol_crps`, `total` and `worker_score`,
        /// the shape of the file's own fields.
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
    /// The shadow scorer's results: the last days' CRPS of the served model against the GBM
    /// on the prompts it recorded (the `shadow-prompt` and `shadow-score` jobs).
    Shadow {
        /// The store the jobs write to (a bucket when `HIPPIUS_ENDPOINT` is set).
        #[arg(long, default_value = "store")]
        store: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Backtest a model on local bars with the validator's CRPS.
    Backtest {
        /// The model: `gbm`, a classical baseline (`ewma`, `ewma-t`, `ewma-tod`, `ewma-tod-t`,
        /// `garch`, `garch-t`, `garch-tod`, `garch-tod-t`, `gjr-tod-t`, `har`, `har-tod`,
        /// `har-tod-t`; `cal-` before a name fits its width on the asset's recent prompts, e.g.
        /// `cal-garch-tod-t`), or a checkpoint folder written by `experiment` / `model quick`;
        /// `mix:A,B` and `vov:NU:A` wrap them; `hindsight`, `hindsight-t`, `hindsight-tod-t` are
        /// the ceiling that reads each window's own realised volatility (not a forecaster).
        #[arg(long, default_value = "gbm")]
        model: String,
        /// The reference scored on the same windows (its share of each competition is the
        /// model's complement): a name as for `--model`, or a checkpoint folder.
        #[arg(long, default_value = "gbm")]
        reference: String,
        /// Where a checkpoint runs: `cpu` or `cuda` (a build with `--features cuda`).
        #[arg(long, default_value = "cpu")]
        device: String,
        /// `low` (24 h at 300 s) or `high` (1 h at 60 s).
        #[arg(long, default_value = "low")]
        prompt: String,
        /// Comma-separated SN50 assets, e.g. BTC,ETH,SP500.
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
        /// Only windows starting in the last DAYS of each file (held-out data).
        #[arg(long)]
        last_days: Option<f64>,
        /// Leave out windows starting in the last DAYS of each file: with --last-days D, score
        /// the D days before them (a walk-forward fold; see ops/bench/walkforward.sh).
        #[arg(long, default_value_t = 0.0)]
        skip_last_days: f64,
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
    /// Download history from each asset's realised-price venue (Binance klines for BTC ETH SOL
    /// XRP, Hyperliquid candles for HYPE and the `xyz:` equities/commodities), merged into
    /// ASSET_1m.csv / ASSET_5m.csv. `BINANCE_API_URL`, `HYPERLIQUID_API_URL` (and, with
    /// `--source pyth`, `PYTH_BENCHMARKS_URL`) override the servers.
    Download {
        /// Comma-separated SN50 assets, e.g. BTC,ETH.
        #[arg(long, value_delimiter = ',', required = true)]
        assets: Vec<String>,
        /// Days of history up to --end.
        #[arg(long)]
        days: u32,
        #[arg(long, default_value = "data")]
        data_dir: PathBuf,
        /// Bar length in minutes: 1 or 5.
        #[arg(long, default_value_t = 1)]
        resolution: u32,
        /// End of the range in unix seconds (default: now); only bars closed by then are kept.
        #[arg(long)]
        end: Option<i64>,
        /// Bars per request.
        #[arg(long, default_value_t = download::DEFAULT_CHUNK_BARS)]
        chunk_bars: i64,
        /// No progress bar.
        #[arg(long)]
        no_progress: bool,
        #[arg(long)]
        json: bool,
        /// `venue`: each asset's realised-price source from the SN50 constants (what the
        /// validator scores against); `pyth`: Pyth benchmarks for every asset (the May 2026
        /// source; bars go to the existing or legacy-stem file, e.g. SPY_1m.csv).
        #[arg(long, default_value = "venue")]
        source: SourceChoice,
        /// TOML overrides of the SN50 constants (`[price_sources]` picks venues and symbols).
        #[arg(long, env = "SYNTH_CITY_SN50_CONSTANTS")]
        constants: Option<PathBuf>,
        /// Then publish the downloaded assets' bars to the store as a dataset (as the
        /// `data-download` job does), into this store directory (or the bucket when
        /// HIPPIUS_ENDPOINT is set).
        #[arg(long, value_name = "STORE_DIR", num_args = 0..=1, default_missing_value = "store")]
        publish: Option<PathBuf>,
    },
    /// Put a data directory's bar files in the store as a dataset (content-addressed: the same
    /// files give the same id) and make it the store's `latest`; prints its id, which runs pin
    /// with `pipeline --dataset ID` (or `--dataset latest`) so that workers on any machine read
    /// these bars. With HIPPIUS_ENDPOINT set, the store is the bucket.
    Publish {
        #[arg(long, default_value = "data")]
        data_dir: PathBuf,
        /// Only these SN50 assets (each must have a file for every timeframe); default: every
        /// bar file in the directory.
        #[arg(long, value_delimiter = ',')]
        assets: Vec<String>,
        /// Only this timeframe: 5m or 1m (default: both).
        #[arg(long)]
        timeframe: Option<jobs::Timeframe>,
        /// The store directory (when HIPPIUS_ENDPOINT is unset).
        #[arg(long, env = "SYNTH_STORE_DIR", default_value = "store")]
        store: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// List the datasets in the store (oldest first; `latest` marked).
    Datasets {
        /// The store directory (when HIPPIUS_ENDPOINT is unset).
        #[arg(long, env = "SYNTH_STORE_DIR", default_value = "store")]
        store: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Print the latest price of assets from each asset's venue (Binance last price,
    /// Hyperliquid mid), or Pyth Hermes with `--source pyth`. `BINANCE_API_URL`,
    /// `HYPERLIQUID_API_URL` and `PYTH_HERMES_URL` override the servers.
    Spot {
        /// Comma-separated SN50 assets.
        #[arg(long, value_delimiter = ',', required = true)]
        assets: Vec<String>,
        #[arg(long)]
        json: bool,
        /// `venue` (each asset's realised-price source) or `pyth` (Hermes for every asset).
        #[arg(long, default_value = "venue")]
        source: SourceChoice,
        /// TOML overrides of the SN50 constants (`[price_sources]`, `[pyth_feed_ids]`).
        #[arg(long, env = "SYNTH_CITY_SN50_CONSTANTS")]
        constants: Option<PathBuf>,
    },
}

fn load_constants(path: Option<&Path>) -> anyhow::Result<sn50::constants::Sn50Config> {
    Ok(match path {
        Some(p) => sn50::constants::Sn50Config::load_overrides(p)?,
        None => sn50::constants::Sn50Config::default(),
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
            for c in out["competitions"].as_array().into_iter().flatten() {
                println!(
                    "{} ({} days, beta {}): {} scored request(s)",
                    c["label"].as_str().unwrap_or("?"),
                    c["window_days"],
                    c["softmax_beta"],
                    c["requests"]
                );
                println!(
                    "  {:>8} {:>6} {:>22} {:>24}",
                    "miner", "uid", "smoothed score", "reward weight"
                );
                for e in c["leaderboard"].as_array().into_iter().flatten() {
                    println!(
                        "  {:>8} {:>6} {:>22} {:>24}",
                        e["miner_id"], e["miner_uid"], e["smoothed_score"], e["reward_weight"]
                    );
                }
            }
            if out["unscored_requests"].as_u64().unwrap_or(0) > 0 {
                println!(
                    "{} request(s) on an asset no competition scores were left out",
                    out["unscored_requests"]
                );
            }
            println!("weights (uid: weight):");
            for w in out["weights"].as_array().into_iter().flatten() {
                println!("  {:>6}: {}", w["uid"], w["weight"]);
            }
            Ok(())
        }
        ScoreCommand::Backtest {
            model,
            reference,
            device,
            prompt,
            assets,
            data_dir,
            windows,
            seed,
            paths,
            weights,
            last_days,
            skip_last_days,
            json,
            constants,
        } => {
            let cfg = load_constants(constants.as_deref())?;
            if last_days.is_some_and(|d| !(d.is_finite() && d > 0.0)) {
                anyhow::bail!("--last-days must be a positive number of days");
            }
            if !(skip_last_days.is_finite() && skip_last_days >= 0.0) {
                anyhow::bail!("--skip-last-days must be 0 or a positive number of days");
            }
            let device = trainer::zoo::device(&device)?;
            let forecaster = load_model(&model, &cfg, &device)?;
            let reference = load_model(&reference, &cfg, &device)?;
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
                last_days,
                skip_last_days,
                not_before: None,
            };
            let result = tokio::task::spawn_blocking(move || {
                backtest::run_backtest(
                    forecaster.as_ref(),
                    reference.as_ref(),
                    &data_dir,
                    &opts,
                    &cfg,
                )
            })
            .await??;
            if json {
                return print_json(&backtest::backtest_json(&result));
            }
            println!(
                "model {} against {} prompt {} seed {}",
                result.model, result.reference, result.prompt, result.seed
            );
            let opt = |v: Option<f64>, p: usize| {
                v.map(|x| format!("{x:.p$}")).unwrap_or_else(|| "-".into())
            };
            for (a, r) in &result.assets {
                println!(
                    "  {a:<7} mean CRPS {:>14.6} (reference {:>14}, ratio {:>7}) over {} window(s) ({} invalid) from {} [{}]",
                    r.mean_crps,
                    opt(r.mean_reference_crps, 6),
                    opt(r.ratio, 4),
                    r.windows,
                    r.invalid,
                    r.file,
                    r.competition.as_deref().unwrap_or("no competition")
                );
                if !r.terms.is_empty() {
                    println!("          {}", terms_line(&r.terms));
                }
                if !r.fallbacks.is_empty() || r.reference_fallbacks > 0 {
                    println!(
                        "          answered by the GBM: {} model window(s){}, {} reference window(s)",
                        r.fallbacks.len(),
                        r.fallbacks
                            .first()
                            .map(|(t, why)| format!(" (first at {t}: {why})"))
                            .unwrap_or_default(),
                        r.reference_fallbacks
                    );
                }
            }
            println!("weighted CRPS {:.6}", result.weighted_crps);
            for c in &result.competitions {
                println!(
                    "{} ({} days, beta {}): weighted CRPS {:.6} vs {:.6}, {} prompt(s): {:.1} % of its pool against the reference, {:.2} % of emission",
                    c.label,
                    c.share.window_days,
                    c.share.softmax_beta,
                    c.weighted_crps,
                    c.weighted_reference_crps,
                    c.share.prompts,
                    100.0 * c.share.pool_share,
                    100.0 * c.share.emission
                );
                let bands: Vec<String> = c
                    .by_volatility
                    .iter()
                    .map(|b| {
                        format!(
                            "{} {} ({} windows)",
                            b.band,
                            b.ratio
                                .map(|r| format!("{r:.4}"))
                                .unwrap_or_else(|| "-".into()),
                            b.windows
                        )
                    })
                    .collect();
                println!("  ratio by realised volatility: {}", bands.join(", "));
                println!("  {}", terms_line(&c.terms));
            }
            Ok(())
        }
        ScoreCommand::Shadow { store, json } => {
            use publisher::store::StoreExt;
            let st = publisher::store::open(&store)?;
            let Some(board) = st
                .get_json::<serde_json::Value>(sn50::shadow::LEADERBOARD_KEY)
                .await?
            else {
                anyhow::bail!(
                    "no shadow scores in {} yet: schedule `shadow-prompt` and `shadow-score` jobs (docs/sn50.md)",
                    st.describe()
                );
            };
            if json {
                return print_json(&board);
            }
            println!("{:<12} {:>8} {:>10}", "day", "scored", "vs GBM");
            for d in board["days"].as_array().into_iter().flatten() {
                println!(
                    "{:<12} {:>8} {:>10}",
                    d["date"].as_str().unwrap_or("?"),
                    d["scored"].as_u64().unwrap_or(0),
                    d["ratio"]
                        .as_f64()
                        .map(|r| format!("{r:.4}"))
                        .unwrap_or_else(|| "-".into())
                );
            }
            println!();
            println!(
                "{:<8} {:>5} {:>11} {:>22} {:>22}",
                "asset", "days", "mean ratio", "best day", "worst day"
            );
            for (asset, a) in board["assets"].as_object().into_iter().flatten() {
                let day = |k: &str| {
                    format!(
                        "{} {:.4}",
                        a[k]["date"].as_str().unwrap_or("?"),
                        a[k]["ratio"].as_f64().unwrap_or(f64::NAN)
                    )
                };
                println!(
                    "{:<8} {:>5} {:>11.4} {:>22} {:>22}",
                    asset,
                    a["days"].as_u64().unwrap_or(0),
                    a["mean_ratio"].as_f64().unwrap_or(f64::NAN),
                    day("best"),
                    day("worst")
                );
            }
            let comps = board["competitions"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if !comps.is_empty() {
                println!();
                println!(
                    "{:<26} {:>5} {:>6} {:>8} {:>10} {:>12} {:>10}",
                    "competition", "days", "beta", "prompts", "vs GBM", "pool share", "emission"
                );
                for c in &comps {
                    println!(
                        "{:<26} {:>5} {:>6} {:>8} {:>10} {:>11.1}% {:>9.2}%",
                        c["label"].as_str().unwrap_or("?"),
                        c["window_days"],
                        c["softmax_beta"],
                        c["prompts"],
                        c["ratio"]
                            .as_f64()
                            .map(|r| format!("{r:.4}"))
                            .unwrap_or_else(|| "-".into()),
                        100.0 * c["pool_share"].as_f64().unwrap_or(0.0),
                        100.0 * c["emission"].as_f64().unwrap_or(0.0)
                    );
                }
                println!(
                    "against the GBM alone, the model would take {:.2} % of the miners' emission",
                    100.0 * board["emission"].as_f64().unwrap_or(0.0)
                );
            }
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
        DataCommand::Download {
            assets,
            days,
            data_dir,
            resolution,
            end,
            chunk_bars,
            no_progress,
            json,
            source,
            constants,
            publish,
        } => {
            let end = match end {
                Some(e) => e,
                None => std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)?
                    .as_secs() as i64,
            };
            let assets: Vec<String> = assets
                .iter()
                .map(|a| a.trim().to_string())
                .filter(|a| !a.is_empty())
                .collect();
            let mut opts = download::DownloadOptions::last_days(
                assets,
                days,
                end,
                pyth::resolution_from_minutes(resolution)?,
                data_dir,
            )?;
            opts.chunk_bars = chunk_bars;
            opts.progress = !no_progress;
            opts.source = source;
            let client = venues::PriceClient::from_env(&load_constants(constants.as_deref())?)?;
            let done = download::download(&client, &opts).await?;
            let dataset = match publish {
                Some(store) => {
                    let st = publisher::store::open(&store)?;
                    let sel = publisher::datasets::Selection {
                        assets: opts.assets.clone(),
                        timeframes: vec![if resolution == 5 {
                            jobs::Timeframe::FiveMinutes
                        } else {
                            jobs::Timeframe::OneMinute
                        }],
                    };
                    Some(
                        publisher::datasets::publish(&*st, &opts.data_dir, &sel)
                            .await?
                            .id,
                    )
                }
                None => None,
            };
            if json {
                return print_json(&serde_json::json!({
                    "from": opts.from,
                    "end": opts.end,
                    "assets": done,
                    "dataset": dataset,
                }));
            }
            if let Some(id) = &dataset {
                println!(
                    "published as dataset {id} (pin it with `synth-city pipeline --dataset {id}`)"
                );
            }
            for d in &done {
                println!(
                    "{:<7} {} ({} {}): {} chunk(s), {} bar(s) fetched, {} added, {} already present ({} with another close), {} in the file",
                    d.asset,
                    d.file,
                    d.venue,
                    d.symbol,
                    d.requests,
                    d.fetched,
                    d.added,
                    d.already_present,
                    d.differing,
                    d.total
                );
            }
            Ok(())
        }
        DataCommand::Publish {
            data_dir,
            assets,
            timeframe,
            store,
            json,
        } => {
            let st = publisher::store::open(&store)?;
            let sel = publisher::datasets::Selection {
                assets: assets
                    .iter()
                    .map(|a| a.trim().to_string())
                    .filter(|a| !a.is_empty())
                    .collect(),
                timeframes: timeframe.into_iter().collect(),
            };
            let m = publisher::datasets::publish(&*st, &data_dir, &sel).await?;
            if json {
                return print_json(&serde_json::to_value(&m)?);
            }
            println!("{}", m.id);
            eprintln!(
                "dataset {} in {}: {} file(s), {} bars; pin it with `synth-city pipeline --dataset {}`",
                m.id,
                st.describe(),
                m.files.len(),
                m.files.iter().map(|f| f.rows).sum::<u64>(),
                m.id
            );
            Ok(())
        }
        DataCommand::Datasets { store, json } => {
            let st = publisher::store::open(&store)?;
            let all = publisher::datasets::list(&*st).await?;
            let latest = publisher::datasets::latest_id(&*st).await?;
            if json {
                return print_json(&serde_json::json!({"latest": latest, "datasets": all}));
            }
            if all.is_empty() {
                println!(
                    "no datasets in {}: publish one with `{}`",
                    st.describe(),
                    publisher::datasets::PUBLISH_HINT
                );
            }
            for m in &all {
                let files: Vec<String> = m
                    .files
                    .iter()
                    .map(|f| format!("{} {} ({} bars)", f.asset, f.timeframe, f.rows))
                    .collect();
                let mark = if latest.as_deref() == Some(m.id.as_str()) {
                    " (latest)"
                } else {
                    ""
                };
                println!("{}{mark}  {}", m.id, files.join(", "));
            }
            Ok(())
        }
        DataCommand::Spot {
            assets,
            json,
            source,
            constants,
        } => {
            let client = venues::PriceClient::from_env(&load_constants(constants.as_deref())?)?;
            let mut out = Vec::new();
            for a in assets.iter().map(|a| a.trim()).filter(|a| !a.is_empty()) {
                let p = client
                    .spot_with(a, source)
                    .await
                    .with_context(|| format!("no spot price for {a}"))?;
                if !json {
                    match (p.conf, p.publish_time) {
                        (Some(conf), Some(t)) => println!(
                            "{:<7} {} ({} {}, conf {conf}, published {t})",
                            p.asset,
                            p.price,
                            p.venue.as_str(),
                            p.symbol
                        ),
                        _ => println!(
                            "{:<7} {} ({} {})",
                            p.asset,
                            p.price,
                            p.venue.as_str(),
                            p.symbol
                        ),
                    }
                }
                let mut row = serde_json::json!({
                    "asset": p.asset,
                    "venue": p.venue.as_str(),
                    "symbol": p.symbol,
                    "price": p.price,
                    "url": p.url,
                });
                if p.venue == constants::Venue::Pyth {
                    row["feed_id"] = serde_json::json!(p.symbol);
                    row["conf"] = serde_json::json!(p.conf);
                    row["publish_time"] = serde_json::json!(p.publish_time);
                }
                out.push(row);
            }
            if json {
                print_json(&serde_json::json!({ "prices": out }))?;
            }
            Ok(())
        }
    }
}

/// `synth-city bench crps ...`
#[derive(Debug, clap::Args)]
pub struct BenchCrpsArgs {
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Timed runs per case (after one warm-up run); every run is checked bit for bit.
    #[arg(long, default_value_t = 200)]
    pub iterations: usize,
    /// Also run the batch mode: many miners' responses to one prompt scored across threads.
    #[arg(long)]
    pub batch: bool,
    /// Threads for the batch mode (0 = every available core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Miner responses per prompt in the batch mode (16 distinct GBM responses, repeated).
    #[arg(long, default_value_t = 256)]
    pub miners: usize,
    /// Timed rounds of the batch mode (the best is reported).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// The crps-vectors file whose full-size (1000-path) cases are the 24 h prompts.
    #[arg(long, default_value = "../shared/spec/crps-vectors.json")]
    pub vectors: PathBuf,
    /// The data directory the 1 h case is built from (1-minute bars of --high-asset).
    #[arg(long, default_value = "../shared/data")]
    pub data_dir: PathBuf,
    /// The asset of the 1 h case.
    #[arg(long, default_value = "BTC")]
    pub high_asset: String,
    /// Seed of the 1 h case's window and GBM paths.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Time the scalar path (one ensemble at a time, no AVX2 lanes) instead, for comparison.
    #[arg(long)]
    pub scalar: bool,
    /// Write the cases (crps-vectors `/2` format, with expected values and, for the 1 h total
    /// cases, the volatility blocks and the price, volatility and total values) for
    /// ops/bench/crps_python.py.
    #[arg(long)]
    pub write_cases: Option<PathBuf>,
    /// The crps-vectors-v2 file whose full-size Crypto 1h cases (the validator's own totals) are
    /// timed on the 1 h total score.
    #[arg(long, default_value = "../shared/spec/crps-vectors-v2.json")]
    pub vectors_v2: PathBuf,
    /// 1 h prompts built from --data-dir (GBM on real 1-minute bars, cycling over the Crypto 1h
    /// assets that have bars there) timed on the total score, price plus volatility, beside
    /// the vectors-v2 cases.
    #[arg(long, default_value_t = 6)]
    pub high_windows: usize,
}

/// `synth-city bench crps`: per-prompt CRPS time on one thread (bit-exact checked), the Crypto
/// 1 h total score (price plus volatility) beside its price part, optionally the multi-core batch
/// mode.
pub async fn bench_crps(args: BenchCrpsArgs) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(move || bench_crps_blocking(&args)).await?
}

fn bench_crps_blocking(args: &BenchCrpsArgs) -> anyhow::Result<()> {
    let file = vectors::load_vectors(&args.vectors)?;
    let mut cases = bench::cases_from_vectors(&file)?;
    cases.push(bench::high_case_from_data(
        &args.data_dir,
        &args.high_asset,
        args.seed,
    )?);
    let mut totals = bench::total_cases_from_vectors(&vectors::load_vectors(&args.vectors_v2)?)?;
    totals.extend(bench::total_cases_from_data(
        &args.data_dir,
        args.high_windows,
        args.seed,
    )?);
    if let Some(p) = &args.write_cases {
        bench::write_cases(p, &cases, &totals)?;
        if !args.json {
            println!(
                "wrote {} case(s) to {}",
                cases.len() + totals.len(),
                p.display()
            );
        }
    }
    let mut timings = Vec::new();
    for c in &cases {
        timings.push(bench::time_case(c, args.iterations, args.scalar)?);
    }
    let mut total_timings = Vec::new();
    for t in &totals {
        total_timings.push(bench::time_total_case(t, args.iterations)?);
    }
    let summary = bench::summarize_totals(&total_timings);
    let mut batches = Vec::new();
    if args.batch {
        let mut seen = std::collections::BTreeSet::new();
        for c in cases.iter().filter(|c| seen.insert(c.prompt.clone())) {
            let responses = bench::batch_responses(c, args.miners, args.seed)?;
            batches.push(bench::time_batch(c, &responses, args.threads, args.rounds)?);
        }
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let path = if args.scalar {
        "scalar"
    } else if sn50::lanes::lanes_available() {
        "avx2 lanes"
    } else {
        "scalar (no AVX2 on this CPU)"
    };
    if args.json {
        return print_json(&serde_json::json!({
            "path": path,
            "cases": timings,
            "totals": total_timings,
            "totals_summary": summary,
            "batch": batches,
            "available_parallelism": threads,
        }));
    }
    println!("CRPS path: {path}");
    println!(
        "{:<44} {:>11} {:>6} {:>10} {:>10} {:>10}  bit-exact",
        "case (one thread)", "paths x pts", "terms", "mean ms", "median ms", "min ms"
    );
    for t in &timings {
        println!(
            "{:<44} {:>11} {:>6} {:>10.3} {:>10.3} {:>10.3}  {}",
            t.name,
            format!("{}x{}", t.paths, t.points),
            t.terms,
            t.mean_ms,
            t.median_ms,
            t.min_ms,
            if t.bit_exact { "yes" } else { "NO" }
        );
    }
    if !total_timings.is_empty() {
        println!(
            "\n{:<44} {:>11} {:>15} {:>15} {:>12}  bit-exact (expected from)",
            "1 h total = price + vol (one thread)",
            "paths x pts",
            "price median ms",
            "total median ms",
            "total/price"
        );
    }
    for t in &total_timings {
        println!(
            "{:<44} {:>11} {:>15.3} {:>15.3} {:>12.2}  {} ({})",
            t.name,
            format!("{}x{}", t.paths, t.points),
            t.price_ms.median_ms,
            t.total_ms.median_ms,
            t.total_ms.median_ms / t.price_ms.median_ms,
            if t.bit_exact { "yes" } else { "NO" },
            t.expected_from
        );
    }
    if let Some(s) = &summary {
        println!(
            "1 h prompts: {}; median per prompt: price {:.3} ms, total {:.3} ms ({:.2}x the price part)",
            s.prompts, s.price_median_ms, s.total_median_ms, s.total_over_price
        );
    }
    for b in &batches {
        println!(
            "batch {}: {} responses on {} thread(s): {:.1} prompts/s (one thread: {:.1} prompts/s), bit-exact {}",
            b.name,
            b.responses,
            b.threads,
            b.prompts_per_second,
            b.single_thread_prompts_per_second,
            if b.bit_exact { "yes" } else { "NO" }
        );
    }
    Ok(())
}

/// A forecaster by `--model` name: `gbm` or a classical model, a checkpoint folder, an
/// ensemble `mix:A,B,...` of those, or one of them with path-level volatility of volatility
/// (`vov:NU:MODEL`); here only (a backtest), the hindsight ceiling (`hindsight[-tod]-t`, which
/// reads the window it is scored on).
fn load_model(
    name: &str,
    cfg: &sn50::constants::Sn50Config,
    device: &trainer::Device,
) -> anyhow::Result<Box<dyn forecast::Forecaster>> {
    let name = name.trim();
    Ok(if let Some(v) = sn50::vov::parse(name) {
        let (nu, inner) = v.map_err(anyhow::Error::msg)?;
        Box::new(sn50::vov::Vov::new(nu, load_model(inner, cfg, device)?))
    } else if let Some(members) = sn50::ensemble::member_names(name) {
        let members = members
            .iter()
            .map(|m| load_model(m, cfg, device).map(std::sync::Arc::from))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Box::new(sn50::ensemble::Ensemble::new(members)?)
    } else if forecast::is_model_name(name) {
        forecast::model_by_name(name, cfg)?
    } else if let Some(h) = sn50::hindsight::by_name(name) {
        Box::new(h)
    } else {
        trainer::zoo::forecaster::load_forecaster(name, device)?
    })
}

/// A backtest's score terms on one line: each term's share of the reference's total and the
/// model's ratio to the reference on that term.
fn terms_line(terms: &[backtest::ScoreTerm]) -> String {
    let total: f64 = terms.iter().map(|t| t.reference).sum();
    let parts: Vec<String> = terms
        .iter()
        .map(|t| {
            format!(
                "{} {:.0} % x{:.4}",
                t.term,
                100.0 * t.reference / total,
                t.model / t.reference
            )
        })
        .collect();
    format!(
        "terms (share of the reference's score, ratio): {}",
        parts.join(", ")
    )
}
