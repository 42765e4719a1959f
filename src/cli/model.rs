//! Model-zoo commands: `components`, `experiment`, `quick`, `sweep`, `simulate` and
//! `bench train`.
//!
//! Thin clap wrappers over `workers::zoo`: listing the registry, training a spec on local bars
//! and scoring it against the GBM baseline (`experiment`; `quick` is a one-epoch sanity run of a
//! preset; `sweep` trains several presets on the same windows and ranks them with the GBM
//! baseline), simulating an SN50 response from a checkpoint (or the reference GBM), and timing
//! training steps and a 1000 x 289 simulation. Training draws a progress bar on stderr only when
//! stderr is a terminal and `--json` is not given.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::{Args, Subcommand};
use jobs::Timeframe;
use serde_json::json;
use sn50::constants::{PromptKind, Sn50Config};
use sn50::data::{asset_file, Bars};
use sn50::forecast::{ForecastRequest, Forecaster, Gbm};
use sn50::response::MinerResponse;
use trainer::zoo::{self, registry, spec::ExperimentSpec, train};

/// The model-zoo subcommands, flattened into the top level.
#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// List backbone blocks, heads and presets; `components check FILE` validates a component
    /// graph (docs/components.md); `components add|show|remove` keep the registry of authored
    /// ones in Redis.
    Components {
        #[arg(long)]
        json: bool,
        #[command(subcommand)]
        action: Option<ComponentsAction>,
    },
    /// Train a model on local bars, then score it and the GBM baseline with the SN50 CRPS on the
    /// same time-ordered validation windows.
    Experiment(Box<ExperimentArgs>),
    /// A fast sanity run: one preset, one short epoch, scored against GBM on a few windows.
    Quick(QuickArgs),
    /// Train several presets on the same data and validation windows and rank them, with the
    /// GBM baseline, by validation SN50 CRPS.
    Sweep(SweepArgs),
    /// Simulate an SN50 response for a prompt starting at `--at`, from a checkpoint or `gbm`,
    /// using only bars that closed by then.
    Simulate(SimulateArgs),
}

/// `synth-city components ...`
#[derive(Debug, Subcommand)]
pub enum ComponentsAction {
    /// Validate a component graph document and print its estimates (parameters, FLOPs and
    /// activation memory per window, body size) against the bounds; exits non-zero, naming
    /// each problem's node, field and fix, when it is invalid.
    Check {
        file: PathBuf,
        /// The backbone width it is checked for.
        #[arg(long, default_value_t = 32)]
        d_model: usize,
        /// The window length it is checked for.
        #[arg(long, default_value_t = 64)]
        seq_len: usize,
        #[arg(long)]
        json: bool,
    },
    /// Validate a component graph and store it in the registry (Redis) under its name (or
    /// `--name`), owned by `--bot`; experiments then use it as `graph:<name>`. The operator's
    /// command: it may overwrite any bot's component.
    Add {
        file: PathBuf,
        /// The registry name (replaces the document's `name`).
        #[arg(long)]
        name: Option<String>,
        /// The owner of a new component (an existing one keeps its owner).
        #[arg(long, default_value = "default")]
        bot: String,
        #[arg(long)]
        json: bool,
    },
    /// Print a registry component: owner, version, content hash and document.
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Remove a registry component (the operator's command: any owner's).
    Remove { name: String },
}

impl ComponentsAction {
    /// Whether it reads or writes the registry in Redis.
    pub fn uses_registry(&self) -> bool {
        !matches!(self, ComponentsAction::Check { .. })
    }
}

/// `synth-city experiment ...`
#[derive(Debug, Args)]
pub struct ExperimentArgs {
    /// Comma-separated blocks, e.g. `TransformerBlock,LSTMBlock` (see `components`).
    #[arg(long, required_unless_present_any = ["spec", "preset"])]
    pub blocks: Option<String>,
    /// The head, e.g. `GBMHead`.
    #[arg(long, required_unless_present_any = ["spec", "preset"])]
    pub head: Option<String>,
    /// Start from a preset instead of --blocks/--head.
    #[arg(long, conflicts_with_all = ["blocks", "head", "spec"])]
    pub preset: Option<String>,
    /// A whole experiment spec (JSON); other flags given override it.
    #[arg(long)]
    pub spec: Option<PathBuf>,
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Epochs without a better validation loss before training stops.
    #[arg(long)]
    pub patience: Option<usize>,
    /// Comma-separated assets.
    #[arg(long)]
    pub asset: Option<String>,
    /// `5m` (24 h prompts) or `1m` (1 h prompts).
    #[arg(long)]
    pub timeframe: Option<String>,
    /// Steps to forecast, the seed's flag: it follows the timeframe (288 for 5m, 60 for 1m);
    /// 288 or 60 alone picks the timeframe, and the seed's 12, 24 or 48 is replaced by the
    /// timeframe's (with a note).
    #[arg(long)]
    pub horizon: Option<usize>,
    #[arg(long)]
    pub d_model: Option<usize>,
    #[arg(long)]
    pub seq_len: Option<usize>,
    #[arg(long)]
    pub seed: Option<u64>,
    #[arg(long)]
    pub steps_per_epoch: Option<usize>,
    #[arg(long)]
    pub lr: Option<f64>,
    /// Validation windows per asset (loss and SN50 scoring).
    #[arg(long)]
    pub eval_windows: Option<usize>,
    /// Paths per window in the SN50 scoring.
    #[arg(long)]
    pub eval_paths: Option<usize>,
    /// The factor on the Crypto 1 h volatility term in the training loss (default: 1 with
    /// `--timeframe 1m`, 0 with `5m`; 0 trains on the price CRPS alone).
    #[arg(long)]
    pub vol_loss_weight: Option<f64>,
    /// How returns are standardised for the head: `global` (one standard deviation per
    /// asset), `ewma[:HOURS]` (each window's EWMA volatility, 24 h half-life by default),
    /// `ewma-tod[:HOURS]` (the same, each step also scaled by its hour of day's profile), or
    /// `classical` / `classical-tod` (each step's width as the SN50 anchor `ewma` / `ewma-tod`
    /// would draw it from the window's own two weeks: the model learns corrections to it).
    #[arg(long)]
    pub scale: Option<String>,
    /// `drop` (windows of consecutive bars only, the default) or `bridge` (windows across
    /// market closures and gaps, the steps inside them left out of the loss).
    #[arg(long)]
    pub gaps: Option<String>,
    /// Comma-separated input features (see `components`; default the first nine).
    #[arg(long)]
    pub features: Option<String>,
    /// Days at the end of each file left out of training and validation (score them with
    /// `score backtest --model <checkpoint> --last-days N`).
    #[arg(long)]
    pub holdout_days: Option<f64>,
    /// Folder of `ASSET_5m.csv` / `ASSET_1m.csv` bars.
    #[arg(long, default_value = "data")]
    pub data_dir: PathBuf,
    /// Checkpoints go to `OUT/<name>`.
    #[arg(long, default_value = "runs")]
    pub out: PathBuf,
    /// Continue from the checkpoint in the output folder.
    #[arg(long)]
    pub resume: bool,
    /// `cpu` or `cuda[:N]` (needs a build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Validate the spec and print its size, without training.
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long)]
    pub json: bool,
}

/// `synth-city quick ...`
#[derive(Debug, Args)]
pub struct QuickArgs {
    /// The preset to run (see `components`).
    #[arg(long, default_value = "baseline_gbm")]
    pub preset: String,
    #[arg(long, default_value = "BTC")]
    pub asset: String,
    /// `5m` (the 24 h prompt) or `1m` (the 1 h prompt).
    #[arg(long, default_value = "5m")]
    pub timeframe: Timeframe,
    /// Training steps (one epoch).
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// Validation windows scored.
    #[arg(long, default_value_t = 8)]
    pub eval_windows: usize,
    #[arg(long, default_value_t = 1000)]
    pub eval_paths: usize,
    #[arg(long)]
    pub seed: Option<u64>,
    #[arg(long, default_value = "data")]
    pub data_dir: PathBuf,
    #[arg(long, default_value = "runs/quick")]
    pub out: PathBuf,
    #[arg(long, default_value = "cpu")]
    pub device: String,
    #[arg(long)]
    pub json: bool,
}

/// `synth-city sweep ...`
#[derive(Debug, Args)]
pub struct SweepArgs {
    /// Comma-separated presets (default: all of them).
    #[arg(long)]
    pub presets: Option<String>,
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,
    #[arg(long, default_value_t = 3)]
    pub patience: usize,
    /// Comma-separated assets (one model per preset, trained on all of them).
    #[arg(long, default_value = "BTC")]
    pub asset: String,
    /// `5m` (the 24 h prompt) or `1m` (the 1 h prompt).
    #[arg(long, default_value = "5m")]
    pub timeframe: Timeframe,
    /// One history length for every preset (the presets' own must agree otherwise).
    #[arg(long)]
    pub seq_len: Option<usize>,
    #[arg(long)]
    pub steps_per_epoch: Option<usize>,
    #[arg(long)]
    pub eval_windows: Option<usize>,
    #[arg(long)]
    pub eval_paths: Option<usize>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// Comma-separated seeds: train every preset once per seed and rank by the mean ratio to
    /// GBM, with its spread across seeds (instead of --seed).
    #[arg(long, conflicts_with = "seed")]
    pub seeds: Option<String>,
    #[arg(long, default_value = "data")]
    pub data_dir: PathBuf,
    #[arg(long, default_value = "runs")]
    pub out: PathBuf,
    #[arg(long, default_value = "cpu")]
    pub device: String,
    #[arg(long)]
    pub json: bool,
}

/// `synth-city simulate ...`
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// A checkpoint folder (from `experiment`) or `gbm`.
    #[arg(long)]
    pub model: String,
    #[arg(long, default_value = "BTC")]
    pub asset: String,
    /// `low` (24 h, 5 min) or `high` (1 h, 1 min).
    #[arg(long, default_value = "low")]
    pub prompt: String,
    /// The prompt's start time (unix seconds); only bars that closed by then are used.
    #[arg(long)]
    pub at: i64,
    #[arg(long, default_value = "data")]
    pub data_dir: PathBuf,
    #[arg(long, default_value_t = 1000)]
    pub paths: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, default_value = "cpu")]
    pub device: String,
    #[arg(long)]
    pub json: bool,
}

/// `synth-city bench train ...`
#[derive(Debug, Args)]
pub struct BenchTrainArgs {
    #[arg(long)]
    pub preset: String,
    #[arg(long)]
    pub json: bool,
    #[arg(long, default_value = "data")]
    pub data_dir: PathBuf,
    #[arg(long, default_value = "BTC")]
    pub asset: String,
    /// Timed training steps (after 2 warm-up steps).
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

fn print_json(v: &serde_json::Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(v)?);
    Ok(())
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(|x| x.trim().to_string())
        .filter(|x| !x.is_empty())
        .collect()
}

fn spec_error(e: Vec<zoo::spec::SpecIssue>) -> anyhow::Error {
    anyhow::anyhow!(zoo::ZooError::Spec(e))
}

/// The spec `experiment` runs, and the problems found in the flags themselves (a timeframe
/// that is not one), which are reported with the spec's own.
fn build_spec(a: &ExperimentArgs) -> anyhow::Result<(ExperimentSpec, Vec<zoo::spec::SpecIssue>)> {
    let mut flag_issues = Vec::new();
    let mut spec = if let Some(p) = &a.spec {
        let text =
            std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
        ExperimentSpec::from_json(&text)
            .with_context(|| format!("{} is not a valid experiment spec", p.display()))?
    } else if let Some(name) = a
        .preset
        .as_ref()
        .filter(|n| n.trim().eq_ignore_ascii_case(registry::RECOMMENDED))
    {
        // the recommendation is per (asset, timeframe): the flags name the pair
        let asset = a.asset.as_deref().map(split_list).unwrap_or_default();
        let [asset] = asset.as_slice() else {
            anyhow::bail!(
                "--preset {name} is chosen per asset: pass one --asset (e.g. --asset BTC) and --timeframe 5m or 1m"
            );
        };
        let tf = a
            .timeframe
            .as_deref()
            .unwrap_or("5m")
            .parse::<Timeframe>()
            .map_err(|e| anyhow::anyhow!("{e} (--timeframe)"))?;
        registry::recommended(asset, tf)
    } else if let Some(name) = &a.preset {
        let p = registry::resolve_preset(name).map_err(|e| {
            anyhow::anyhow!(
                "{e}; --preset {} picks the recommendation for one --asset and --timeframe",
                registry::RECOMMENDED
            )
        })?;
        note_alias(name, p);
        let mut s = ExperimentSpec::new(p.blocks, p.head);
        s.model.backbone.d_model = p.d_model;
        s.model.backbone.seq_len = p.seq_len;
        s
    } else {
        let blocks = split_list(a.blocks.as_deref().unwrap_or(""));
        let refs: Vec<&str> = blocks.iter().map(|s| s.as_str()).collect();
        ExperimentSpec::new(&refs, a.head.as_deref().unwrap_or(""))
    };
    if let Some(e) = a.epochs {
        spec.training.epochs = e;
    }
    if let Some(p) = a.patience {
        spec.training.patience = p;
    }
    if let Some(x) = &a.asset {
        spec.data.assets = split_list(x);
    }
    if let Some(tf) = &a.timeframe {
        match tf.parse::<Timeframe>() {
            Ok(tf) => spec.set_timeframe(tf),
            Err(e) => flag_issues.push(zoo::spec::SpecIssue {
                field: "data.timeframe".into(),
                message: format!("{e} (--timeframe)"),
            }),
        }
    }
    if a.horizon.is_some() {
        // a timeframe is given by the flag, or by the spec file
        let given = match &a.timeframe {
            Some(tf) => tf.parse::<Timeframe>().ok(),
            None => a.spec.as_ref().map(|_| spec.data.timeframe),
        };
        match zoo::spec::seed_horizon("--horizon", a.horizon, given) {
            Ok((tf, replaced)) => {
                if let Some(tf) = tf {
                    spec.set_timeframe(tf);
                }
                if let Some(r) = replaced {
                    eprintln!("note: --horizon: {}", r.message);
                }
            }
            Err(issue) => flag_issues.push(zoo::spec::SpecIssue {
                field: "training.horizon".into(),
                message: format!("{} (--horizon)", issue.message),
            }),
        }
    }
    if let Some(d) = a.d_model {
        spec.model.backbone.d_model = d;
    }
    if let Some(s) = a.seq_len {
        spec.model.backbone.seq_len = s;
    }
    if let Some(s) = a.seed {
        spec.training.seed = s;
    }
    if let Some(s) = a.steps_per_epoch {
        spec.training.steps_per_epoch = s;
    }
    if let Some(l) = a.lr {
        spec.training.lr = l;
    }
    if let Some(w) = a.eval_windows {
        spec.training.eval_windows = w;
    }
    if let Some(p) = a.eval_paths {
        spec.training.eval_paths = p;
    }
    if let Some(w) = a.vol_loss_weight {
        spec.training.vol_loss_weight = w;
    }
    if let Some(sc) = &a.scale {
        match sc.parse() {
            Ok(sc) => spec.data.scale = sc,
            Err(e) => flag_issues.push(zoo::spec::SpecIssue {
                field: "data.scale".into(),
                message: format!("{e} (--scale)"),
            }),
        }
    }
    if let Some(g) = &a.gaps {
        match g.trim() {
            "drop" => spec.data.gaps = zoo::features::Gaps::Drop,
            "bridge" => spec.data.gaps = zoo::features::Gaps::Bridge,
            other => flag_issues.push(zoo::spec::SpecIssue {
                field: "data.gaps".into(),
                message: format!("{other:?} is not one: use drop or bridge (--gaps)"),
            }),
        }
    }
    if let Some(f) = &a.features {
        spec.model.backbone.features = split_list(f);
    }
    if let Some(d) = a.holdout_days {
        spec.data.holdout_days = d;
    }
    Ok((spec, flag_issues))
}

fn run_name(spec: &ExperimentSpec) -> String {
    let blocks: Vec<String> = spec
        .model
        .backbone
        .blocks
        .iter()
        .map(|b| b.to_ascii_lowercase())
        .collect();
    format!(
        "{}_{}_{}_{}_s{}",
        blocks.join("+"),
        spec.model.head.kind.to_ascii_lowercase(),
        spec.data.assets.join("+"),
        spec.data.timeframe,
        spec.training.seed
    )
}

/// Train `spec` into `out_root/<run name>`, then score the best weights and the GBM baseline
/// with the SN50 CRPS on the same validation windows: the `experiment --json` object.
fn run_spec(
    spec: &ExperimentSpec,
    data_dir: &Path,
    out_root: &Path,
    device_name: &str,
    resume: bool,
    show_progress: bool,
    label: &str,
) -> anyhow::Result<serde_json::Value> {
    spec.validate().map_err(spec_error)?;
    let params = spec.param_count()?;
    let flops = spec.flops_estimate()?;
    let device = zoo::device(device_name)?;
    let out_dir = out_root.join(run_name(spec));
    let opts = train::TrainOptions {
        data_dir: data_dir.to_path_buf(),
        out_dir: out_dir.clone(),
        device: device.clone(),
        resume,
    };
    let started = Instant::now();
    let mut bar = zoo::progress::TrainBar::new(show_progress, label);
    let result = train::train_observed(spec, &opts, &mut bar);
    bar.finish();
    let result = result?;
    let train_s = started.elapsed().as_secs_f64();
    let data = train::load_windows(spec, data_dir)?;
    let ck = train::load_checkpoint(&out_dir, &device)?;
    let eval = train::evaluate_sn50(spec, &ck.model, &data, &device)?;
    Ok(json!({
        "status": "ok",
        "val_crps": eval.val_crps,
        "gbm_crps": eval.gbm_crps,
        "crps_ratio": eval.val_crps / eval.gbm_crps,
        "classical_model": train::CLASSICAL_ANCHOR,
        "classical_crps": eval.anchor_crps,
        "classical_ratio": eval.val_crps / eval.anchor_crps,
        "classical_fallbacks": eval.anchor_fallbacks,
        "val_price_crps": eval.val_parts.0,
        "val_vol_crps": eval.val_parts.1,
        "gbm_price_crps": eval.gbm_parts.0,
        "gbm_vol_crps": eval.gbm_parts.1,
        "vol_loss_weight": spec.training.vol_loss_weight,
        "windows": eval.windows,
        "invalid_windows": {"model": eval.invalid.0, "gbm": eval.invalid.1},
        "per_asset": eval.per_asset.iter().map(|(k, (m, g))| (k.clone(), json!({"val_crps": m, "gbm_crps": g, "crps_ratio": m / g}))).collect::<serde_json::Map<_, _>>(),
        "param_count": params,
        "flops_estimate": flops,
        "checkpoint": out_dir.display().to_string(),
        "epochs_run": result.state.epochs_done,
        "best_epoch": result.state.best_epoch,
        "best_val_loss": result.state.best_val_loss,
        "stopped_early": result.state.stopped_early,
        "optimizer_restored": result.optimizer_restored,
        "training_time_s": train_s,
        "history": result.state.history,
    }))
}

fn print_experiment(v: &serde_json::Value, json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(v);
    }
    let f = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    println!(
        "val CRPS {:.2} vs GBM {:.2} (ratio {:.3}) on {} windows; {} parameters; checkpoint {}",
        f("val_crps"),
        f("gbm_crps"),
        f("crps_ratio"),
        v["windows"],
        v["param_count"],
        v["checkpoint"].as_str().unwrap_or("")
    );
    if v["val_vol_crps"].is_number() {
        println!(
            "  price {:.2} + volatility {:.2} (GBM {:.2} + {:.2})",
            f("val_price_crps"),
            f("val_vol_crps"),
            f("gbm_price_crps"),
            f("gbm_vol_crps")
        );
    }
    Ok(())
}

fn experiment(a: ExperimentArgs) -> anyhow::Result<()> {
    let (spec, flag_issues) = build_spec(&a)?;
    match spec.validate() {
        Ok(_) if flag_issues.is_empty() => {}
        Ok(_) => return Err(spec_error(flag_issues)),
        Err(mut issues) => {
            issues.extend(flag_issues);
            return Err(spec_error(issues));
        }
    }
    if a.dry_run {
        let params = spec.param_count()?;
        let flops = spec.flops_estimate()?;
        let v = json!({"status": "valid", "param_count": params, "flops_estimate": flops, "spec": spec});
        return if a.json {
            print_json(&v)
        } else {
            println!("valid: {params} parameters, about {flops} FLOPs per window");
            Ok(())
        };
    }
    let label = a.preset.clone().unwrap_or_else(|| run_name(&spec));
    let v = run_spec(
        &spec,
        &a.data_dir,
        &a.out,
        &a.device,
        a.resume,
        !a.json,
        &label,
    )?;
    print_experiment(&v, a.json)
}

/// Says on stderr which preset an alias (a seed's preset name, a short name) stands for.
fn note_alias(given: &str, p: &registry::Preset) {
    if let Some(a) = registry::find_alias(given) {
        eprintln!("note: preset {given} is {} here ({})", p.name, a.note);
    }
}

/// The spec `quick` runs: the preset, one epoch of `steps` steps, a few scored windows.
fn quick_spec(a: &QuickArgs) -> anyhow::Result<ExperimentSpec> {
    let p = registry::resolve_preset(&a.preset)?;
    note_alias(&a.preset, p);
    let mut spec = zoo::bench::preset_spec(p.name)?;
    spec.data.assets = vec![a.asset.clone()];
    spec.set_timeframe(a.timeframe);
    spec.training.epochs = 1;
    spec.training.steps_per_epoch = a.steps;
    spec.training.eval_windows = a.eval_windows;
    spec.training.eval_paths = a.eval_paths;
    if let Some(s) = a.seed {
        spec.training.seed = s;
    }
    Ok(spec)
}

fn quick(a: QuickArgs) -> anyhow::Result<()> {
    let spec = quick_spec(&a)?;
    spec.validate().map_err(spec_error)?;
    let mut v = run_spec(
        &spec,
        &a.data_dir,
        &a.out,
        &a.device,
        false,
        !a.json,
        &a.preset,
    )?;
    v["preset"] = json!(a.preset);
    print_experiment(&v, a.json)
}

/// The specs a sweep trains, one per preset, after checking that they share the data and
/// validation windows (same assets, timeframe, horizon, history length, split and stride).
fn sweep_specs(a: &SweepArgs) -> anyhow::Result<Vec<(String, ExperimentSpec)>> {
    let names: Vec<String> = match &a.presets {
        Some(p) => split_list(p),
        None => registry::PRESETS
            .iter()
            .map(|p| p.name.to_string())
            .collect(),
    };
    if names.is_empty() {
        anyhow::bail!("--presets is empty; name at least one preset (see `components`)");
    }
    let mut out: Vec<(String, ExperimentSpec)> = Vec::new();
    for given in names {
        let p = registry::resolve_preset(&given)?;
        if out.iter().any(|(n, _)| n == p.name) {
            eprintln!(
                "note: --presets: {given} is {} again; it is trained once",
                p.name
            );
            continue;
        }
        note_alias(&given, p);
        let name = p.name.to_string();
        let mut spec = zoo::bench::preset_spec(p.name)?;
        spec.data.assets = split_list(&a.asset);
        spec.set_timeframe(a.timeframe);
        spec.training.epochs = a.epochs;
        spec.training.patience = a.patience;
        if let Some(s) = a.seq_len {
            spec.model.backbone.seq_len = s;
        }
        if let Some(s) = a.steps_per_epoch {
            spec.training.steps_per_epoch = s;
        }
        if let Some(w) = a.eval_windows {
            spec.training.eval_windows = w;
        }
        if let Some(p) = a.eval_paths {
            spec.training.eval_paths = p;
        }
        if let Some(s) = a.seed {
            spec.training.seed = s;
        }
        spec.validate()
            .map_err(|e| anyhow::anyhow!("preset {name}: {}", zoo::ZooError::Spec(e)))?;
        out.push((name, spec));
    }
    let key = |s: &ExperimentSpec| {
        (
            s.data.assets.clone(),
            s.data.timeframe,
            s.training.horizon,
            s.model.backbone.seq_len,
            s.data.val_fraction.to_bits(),
            s.data.stride,
            s.training.eval_windows,
            s.training.eval_paths,
            s.training.seed,
        )
    };
    let first = key(&out[0].1);
    if let Some((name, s)) = out.iter().find(|(_, s)| key(s) != first) {
        anyhow::bail!(
            "preset {name} uses seq_len {} where {} uses {}: the presets would be scored on \
             different windows; pass --seq-len to give them one history length",
            s.model.backbone.seq_len,
            out[0].0,
            out[0].1.model.backbone.seq_len
        );
    }
    Ok(out)
}

/// Rank sweep rows by validation CRPS (failed runs last), with the GBM baseline as a row.
fn rank_sweep(rows: &mut Vec<serde_json::Value>, gbm: Option<f64>) {
    if let Some(g) = gbm {
        rows.push(json!({"name": "gbm", "baseline": true, "status": "ok", "val_crps": g, "gbm_crps": g, "crps_ratio": 1.0}));
    }
    let score = |v: &serde_json::Value| {
        v["val_crps"]
            .as_f64()
            .filter(|x| x.is_finite() && v["status"] == "ok")
            .unwrap_or(f64::INFINITY)
    };
    rows.sort_by(|a, b| score(a).total_cmp(&score(b)));
    for (i, r) in rows.iter_mut().enumerate() {
        r["rank"] = json!(i + 1);
    }
}

/// The seeds of a sweep: `--seeds`, else `--seed` (or the spec's default) alone.
fn sweep_seeds(a: &SweepArgs) -> anyhow::Result<Vec<Option<u64>>> {
    let Some(list) = &a.seeds else {
        return Ok(vec![a.seed]);
    };
    let mut seeds = Vec::new();
    for t in split_list(list) {
        let s: u64 = t
            .parse()
            .map_err(|_| anyhow::anyhow!("--seeds: {t:?} is not a seed (a whole number)"))?;
        if seeds.contains(&Some(s)) {
            anyhow::bail!("--seeds: {s} is given twice");
        }
        seeds.push(Some(s));
    }
    if seeds.is_empty() {
        anyhow::bail!("--seeds is empty; give at least one, e.g. --seeds 1,2,3");
    }
    Ok(seeds)
}

/// One preset's row over several seeds: the mean validation CRPS, GBM CRPS and ratio, the
/// ratio's sample standard deviation, range and wins against GBM, and each seed's numbers.
fn seeds_row(name: &str, runs: Vec<(u64, anyhow::Result<serde_json::Value>)>) -> serde_json::Value {
    let mut per_seed = Vec::new();
    let mut errors = Vec::new();
    let mut first: Option<serde_json::Value> = None;
    for (seed, run) in runs {
        match run {
            Ok(v) => {
                per_seed.push(json!({
                    "seed": seed,
                    "val_crps": v["val_crps"],
                    "gbm_crps": v["gbm_crps"],
                    "crps_ratio": v["crps_ratio"],
                    "epochs_run": v["epochs_run"],
                    "training_time_s": v["training_time_s"],
                    "checkpoint": v["checkpoint"],
                }));
                first.get_or_insert(v);
            }
            Err(e) => errors.push(format!("seed {seed}: {e:#}")),
        }
    }
    if !errors.is_empty() {
        return json!({"name": name, "status": "error", "error": errors.join("; "), "seeds": per_seed});
    }
    let col = |k: &str| -> Vec<f64> {
        per_seed
            .iter()
            .map(|r| r[k].as_f64().unwrap_or(f64::NAN))
            .collect()
    };
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let ratios = col("crps_ratio");
    let m = mean(&ratios);
    let sd = if ratios.len() > 1 {
        (ratios.iter().map(|r| (r - m) * (r - m)).sum::<f64>() / (ratios.len() - 1) as f64).sqrt()
    } else {
        0.0
    };
    let first = first.unwrap_or_default();
    json!({
        "name": name,
        "status": "ok",
        "val_crps": mean(&col("val_crps")),
        "gbm_crps": mean(&col("gbm_crps")),
        "crps_ratio": m,
        "crps_ratio_sd": sd,
        "crps_ratio_min": ratios.iter().copied().fold(f64::INFINITY, f64::min),
        "crps_ratio_max": ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        "beats_gbm": ratios.iter().filter(|&&r| r < 1.0).count(),
        "param_count": first["param_count"],
        "windows": first["windows"],
        "epochs_run": mean(&col("epochs_run")),
        "training_time_s": col("training_time_s").iter().sum::<f64>(),
        "seeds": per_seed,
    })
}

fn sweep(a: SweepArgs) -> anyhow::Result<()> {
    let specs = sweep_specs(&a)?;
    let seeds = sweep_seeds(&a)?;
    // every preset trains on the same bars: if they are missing, say so once, before any
    sn50::data::check_files(&a.data_dir, &specs[0].1.data.assets, a.timeframe)?;
    let multi = a.seeds.is_some();
    let started = Instant::now();
    let mut rows = Vec::new();
    let mut gbm: Option<f64> = None;
    for (name, spec) in &specs {
        let row = if multi {
            let mut runs = Vec::new();
            for &seed in &seeds {
                let mut spec = spec.clone();
                let seed = seed.expect("--seeds gives every seed");
                spec.training.seed = seed;
                let label = format!("{name} seed {seed}");
                runs.push((
                    seed,
                    run_spec(
                        &spec,
                        &a.data_dir,
                        &a.out,
                        &a.device,
                        false,
                        !a.json,
                        &label,
                    ),
                ));
            }
            let row = seeds_row(name, runs);
            if gbm.is_none() {
                gbm = row["gbm_crps"].as_f64();
            }
            row
        } else {
            match run_spec(spec, &a.data_dir, &a.out, &a.device, false, !a.json, name) {
                Ok(mut v) => {
                    if gbm.is_none() {
                        gbm = v["gbm_crps"].as_f64();
                    }
                    if let serde_json::Value::Object(m) = &mut v {
                        m.remove("history");
                        m.remove("status");
                    }
                    let mut row = json!({"name": name, "status": "ok"});
                    if let (serde_json::Value::Object(r), serde_json::Value::Object(m)) =
                        (&mut row, v)
                    {
                        r.extend(m);
                    }
                    row
                }
                Err(e) => json!({"name": name, "status": "error", "error": format!("{e:#}")}),
            }
        };
        if !a.json && std::io::stderr().is_terminal() {
            match row["status"].as_str() {
                Some("ok") => eprintln!(
                    "{name}: val CRPS {:.2} (ratio {:.3})",
                    row["val_crps"].as_f64().unwrap_or(f64::NAN),
                    row["crps_ratio"].as_f64().unwrap_or(f64::NAN)
                ),
                _ => eprintln!("{name}: failed: {}", row["error"]),
            }
        }
        rows.push(row);
    }
    rank_sweep(&mut rows, gbm);
    let windows = rows.iter().find_map(|r| r["windows"].as_u64());
    let v = json!({
        "status": "ok",
        "assets": specs[0].1.data.assets,
        "timeframe": specs[0].1.data.timeframe,
        "windows": windows,
        "gbm_crps": gbm,
        "epochs": a.epochs,
        "seeds": seeds.iter().flatten().collect::<Vec<_>>(),
        "total_time_s": started.elapsed().as_secs_f64(),
        "ranking": rows,
    });
    if a.json {
        return print_json(&v);
    }
    println!(
        "{:<4} {:<20} {:>12} {:>9} {:>9} {:>7} {:>8}{}",
        "rank",
        "model",
        "val CRPS",
        "vs GBM",
        "params",
        "epochs",
        "train s",
        if multi { "  sd across seeds, wins" } else { "" }
    );
    for r in v["ranking"].as_array().into_iter().flatten() {
        let name = r["name"].as_str().unwrap_or("?");
        if r["status"] != "ok" {
            println!(
                "{:<4} {:<20} failed: {}",
                r["rank"].as_u64().unwrap_or(0),
                name,
                r["error"].as_str().unwrap_or("?")
            );
            continue;
        }
        let opt = |k: &str| {
            r.get(k)
                .and_then(|x| x.as_f64())
                .map(|x| format!("{x:.0}"))
                .unwrap_or_else(|| "-".into())
        };
        println!(
            "{:<4} {:<20} {:>12.2} {:>9.3} {:>9} {:>7} {:>8}{}",
            r["rank"].as_u64().unwrap_or(0),
            if r["baseline"] == true {
                "gbm (baseline)"
            } else {
                name
            },
            r["val_crps"].as_f64().unwrap_or(f64::NAN),
            r["crps_ratio"].as_f64().unwrap_or(f64::NAN),
            opt("param_count"),
            opt("epochs_run"),
            r["training_time_s"]
                .as_f64()
                .map(|x| format!("{x:.1}"))
                .unwrap_or_else(|| "-".into()),
            match (r["crps_ratio_sd"].as_f64(), r["beats_gbm"].as_u64()) {
                (Some(sd), Some(w)) => format!("  {sd:.4}, {w}/{}", seeds.len()),
                _ => String::new(),
            }
        );
    }
    println!(
        "{} windows of {} {}",
        windows.unwrap_or(0),
        a.asset,
        a.timeframe
    );
    Ok(())
}

fn simulate(a: SimulateArgs) -> anyhow::Result<()> {
    let kind: PromptKind = a
        .prompt
        .parse()
        .map_err(|e| anyhow::anyhow!("--prompt: {e}"))?;
    let cfg = Sn50Config::default();
    let prompt = cfg.prompt(kind).clone();
    let device = zoo::device(&a.device)?;
    let (forecaster, tf): (Box<dyn Forecaster>, Timeframe) = if a.model == "gbm" {
        let tf = if asset_file(&a.data_dir, &a.asset, Timeframe::OneMinute).is_ok() {
            Timeframe::OneMinute
        } else {
            Timeframe::FiveMinutes
        };
        (Box::new(Gbm::new(cfg.clone())), tf)
    } else {
        let f = zoo::forecaster::ZooForecaster::load(Path::new(&a.model), &device)?;
        let tf = f.checkpoint().spec.data.timeframe;
        (Box::new(f), tf)
    };
    let path = asset_file(&a.data_dir, &a.asset, tf)?;
    let bars = Bars::load(&path)?;
    let spot = bars
        .close_by(a.at, sn50::backtest::MAX_SPOT_AGE_SECONDS)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "{}: no bar closed within the hour before {} in {}",
                a.asset,
                a.at,
                path.display()
            )
        })?;
    let req = ForecastRequest {
        asset: a.asset.clone(),
        start_time: a.at,
        time_increment: prompt.time_increment,
        time_length: prompt.time_length,
        num_simulations: a.paths,
        spot,
        history: Some(&bars),
        as_of: a.at,
    };
    let paths = forecaster.forecast(&req, &mut zoo::params::seeded_rng(a.seed))?;
    let resp = MinerResponse::from_paths(a.at, prompt.time_increment as i64, &paths)?;
    if a.json {
        println!("{}", resp.to_json());
    } else {
        let last: Vec<f64> = (0..paths.n_paths())
            .map(|i| *paths.row(i).last().unwrap_or(&f64::NAN))
            .collect();
        let mean = last.iter().sum::<f64>() / last.len().max(1) as f64;
        println!(
            "{} paths x {} points from spot {spot} at {}; mean final price {mean:.6}",
            paths.n_paths(),
            paths.n_points(),
            a.at
        );
    }
    Ok(())
}

pub async fn run(cmd: ModelCommand) -> anyhow::Result<()> {
    match cmd {
        ModelCommand::Components {
            action:
                Some(ComponentsAction::Check {
                    file,
                    d_model,
                    seq_len,
                    json,
                }),
            ..
        } => check_component(&file, d_model, seq_len, json),
        ModelCommand::Components {
            action: Some(_), ..
        } => {
            anyhow::bail!("components add|show|remove need Redis: run them with the queue's flags")
        }
        ModelCommand::Components { json, .. } => list_components(json, Err("not read".into())),
        ModelCommand::Experiment(a) => tokio::task::spawn_blocking(move || experiment(*a)).await?,
        ModelCommand::Quick(a) => tokio::task::spawn_blocking(move || quick(a)).await?,
        ModelCommand::Sweep(a) => tokio::task::spawn_blocking(move || sweep(a)).await?,
        ModelCommand::Simulate(a) => tokio::task::spawn_blocking(move || simulate(a)).await?,
    }
}

/// The registry's authored components (name, kind, owner, version, hash), or why they could
/// not be read: one connection attempt first, so a machine without Redis lists the built-ins
/// at once.
pub async fn authored_components(q: &engine::Queue) -> Result<Vec<serde_json::Value>, String> {
    if let Err(e) = q.dedicated(std::time::Duration::from_secs(2)).await {
        return Err(format!("Redis at {} does not answer: {e}", q.shown_url()));
    }
    match tokio::time::timeout(std::time::Duration::from_secs(3), engine::registry::list(q)).await {
        Ok(Ok(all)) => Ok(all
            .into_iter()
            .map(|a| {
                serde_json::json!({"name": a.name, "kind": a.kind, "owner": a.owner,
                    "version": a.version, "content_hash": a.content_hash, "source": "authored"})
            })
            .collect()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("Redis at {} did not answer in 3 s", q.shown_url())),
    }
}

/// `components`: the built-in blocks, heads and presets, then the authored components (or why
/// they are missing: JSON `authored_error`, a line on stderr).
pub fn list_components(
    json: bool,
    authored: Result<Vec<serde_json::Value>, String>,
) -> anyhow::Result<()> {
    if json {
        let mut v = registry::components_json();
        match authored {
            Ok(a) => v["authored"] = serde_json::json!(a),
            Err(e) => v["authored_error"] = serde_json::json!(e),
        }
        return print_json(&v);
    }
    print!("{}", registry::components_text());
    match authored {
        Ok(a) if a.is_empty() => println!("\nAuthored (the registry): none"),
        Ok(a) => {
            println!("\nAuthored (the registry; use as graph:<name>):");
            for c in &a {
                println!(
                    "  {:<18} {:<5} owner {} v{} {}",
                    c["name"].as_str().unwrap_or(""),
                    c["kind"].as_str().unwrap_or(""),
                    c["owner"].as_str().unwrap_or(""),
                    c["version"],
                    c["content_hash"].as_str().unwrap_or("")
                );
            }
        }
        Err(e) => eprintln!("(authored components not listed: {e})"),
    }
    Ok(())
}

/// `components add|show|remove`: the registry of authored components in Redis.
pub async fn registry_command(q: engine::Queue, action: ComponentsAction) -> anyhow::Result<()> {
    use crate::registry::{self, WriteError};
    match action {
        ComponentsAction::Add {
            file,
            name,
            bot,
            json,
        } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let doc: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", file.display()))?;
            match registry::write(&q, name.as_deref(), doc, &bot, true).await {
                Ok((p, w)) => {
                    if json {
                        print_json(&json!({"name": p.doc.name, "owner": w.owner,
                            "version": w.version, "created": w.created,
                            "content_hash": p.content_hash, "report": p.report}))
                    } else {
                        println!(
                            "{} {:?} (owner {}, registry version {}, content hash {}); use it as graph:{}",
                            if w.created { "added" } else { "updated" },
                            p.doc.name, w.owner, w.version, p.content_hash, p.doc.name
                        );
                        print!("{}", p.report.text());
                        Ok(())
                    }
                }
                Err(WriteError::Invalid(issues)) => anyhow::bail!(
                    "{} is not a valid component graph; nothing stored:\n{}",
                    file.display(),
                    issues
                        .iter()
                        .map(|i| format!("  - {i}"))
                        .collect::<Vec<_>>()
                        .join("\n")
                ),
                Err(e) => Err(anyhow::anyhow!("{e}; nothing stored")),
            }
        }
        ComponentsAction::Show { name, json } => {
            let name = name.strip_prefix("graph:").unwrap_or(&name);
            let Some(a) = engine::registry::get(&q, name).await? else {
                anyhow::bail!(
                    "no authored component {name:?} in the registry{}",
                    registry::builtin(name)
                        .map(|(k, n)| format!(
                            " ({name} is the built-in {k} {n}: see `components`)"
                        ))
                        .unwrap_or_default()
                );
            };
            if json {
                print_json(&serde_json::to_value(&a)?)
            } else {
                println!(
                    "{} {:?}: owner {}, version {}, content hash {}, use as graph:{}",
                    a.kind, a.name, a.owner, a.version, a.content_hash, a.name
                );
                println!("{}", serde_json::to_string_pretty(&a.document)?);
                Ok(())
            }
        }
        ComponentsAction::Remove { name } => {
            let v = registry::remove(&q, &name, "default", true).await?;
            println!("removed {name:?} (registry version {v})");
            Ok(())
        }
        ComponentsAction::Check { .. } => unreachable!("checked without Redis"),
    }
}

fn check_component(file: &Path, d_model: usize, seq_len: usize, json: bool) -> anyhow::Result<()> {
    use std::io::Read;
    use zoo::graph;
    let mut text = String::new();
    std::fs::File::open(file)
        .with_context(|| format!("cannot open {}", file.display()))?
        .take(graph::MAX_BODY_BYTES as u64 + 1)
        .read_to_string(&mut text)
        .with_context(|| format!("{} is not UTF-8 text", file.display()))?;
    let ctx = graph::Ctx { d_model, seq_len };
    match graph::check_text(&text, ctx) {
        Ok(c) => {
            let r = c.report();
            if json {
                print_json(&serde_json::json!({"ok": true, "report": r}))
            } else {
                print!("{}", r.text());
                Ok(())
            }
        }
        Err(issues) => {
            if json {
                print_json(&serde_json::json!({"ok": false, "issues": issues}))?;
            }
            anyhow::bail!(
                "{} is not a valid component graph:\n{}",
                file.display(),
                issues
                    .iter()
                    .map(|i| format!("  - {i}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        }
    }
}

fn bench(a: BenchTrainArgs) -> anyhow::Result<serde_json::Value> {
    let device = zoo::device(&a.device)?;
    let r = zoo::bench::bench_train(&a.preset, &a.data_dir, &a.asset, a.steps, &device)?;
    let mut v = serde_json::to_value(&r)?;
    v["device"] = json!(a.device);
    Ok(v)
}

pub async fn bench_train(args: BenchTrainArgs) -> anyhow::Result<()> {
    let json = args.json;
    let v = tokio::task::spawn_blocking(move || bench(args)).await??;
    if json {
        print_json(&v)
    } else {
        println!(
            "{}: {:.2} training steps/s (batch {}, {} paths), 1000x289 simulation {:.1} ms (median of 5)",
            v["preset"], v["steps_per_s"].as_f64().unwrap_or(0.0), v["batch_size"], v["n_paths"], v["simulate_1000x289_ms_median"].as_f64().unwrap_or(0.0)
        );
        Ok(())
    }
}
