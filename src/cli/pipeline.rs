//! `synth-city pipeline` and `synth-city runs`: start research runs and follow them.

use std::path::PathBuf;
use std::time::Duration;

use super::dirs::DirsArgs;

use anyhow::bail;
use clap::{Args, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::pipeline::{self, RunOptions};
use engine::queue::Queue;
use engine::worker::{Worker, WorkerOptions};

/// `synth-city pipeline ...` (a flag given twice: the last one wins)
#[derive(Debug, Args)]
#[command(args_override_self = true)]
pub struct PipelineArgs {
    /// What the run asks for (the same fields as `POST /pipeline/run` and the `run` job).
    #[command(flatten)]
    pub run: jobs::pipeline::RunRequest,
    /// Runs, one after another (each plans from what the last learned).
    #[arg(long, default_value_t = 1)]
    pub loops: usize,
    /// The directories of the in-process workers (with --enqueue-only, unused: the fleet's
    /// workers use their own).
    #[command(flatten)]
    pub dirs: DirsArgs,
    /// The in-process workers' device (with --enqueue-only, unused).
    #[command(flatten)]
    pub device: super::dirs::DeviceArgs,
    /// Only enqueue (for an external fleet, whose workers' settings then apply) and print the
    /// run id.
    #[arg(long)]
    pub enqueue_only: bool,
    /// Concurrency of the in-process workers.
    #[arg(long, default_value_t = 2)]
    pub concurrency: usize,
    #[arg(long, default_value = "default")]
    pub bot_id: String,
    #[arg(long)]
    pub json: bool,
}

/// `synth-city runs ...`
#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// Recent runs, newest first.
    List {
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// One run: state, stages, experiments, summary.
    Show {
        /// The run's id, or `latest` (the run created last).
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Cancel a run.
    Cancel {
        /// The run's id, or `latest` (the run created last).
        id: String,
    },
    /// Follow a run until it ends: each stage as it ends and the running stage's progress on
    /// stderr, then its summary; the exit status is 0 only when the run succeeded.
    Watch {
        /// The run's id, or `latest` (the run created last).
        id: String,
        /// Print the run's summary as JSON (progress still goes to stderr).
        #[arg(long)]
        json: bool,
    },
}

/// `synth-city pipeline-def ...`
#[derive(Debug, Subcommand)]
pub enum PipelineDefCommand {
    /// The definition new runs use (the stored one, or the default).
    Show {
        /// Print the JSON document (what `set` takes).
        #[arg(long)]
        json: bool,
    },
    /// Validate a JSON document (`{"stages": [...], "strategy": {...}}`) and
    /// store it; every problem is named and nothing is stored if any.
    Set {
        /// The file, or `-` for standard input.
        file: PathBuf,
    },
    /// Go back to the default (the seed's pipeline and meta-strategy).
    Reset,
}

/// Runs the pipeline-def command.
pub async fn pipeline_def(q: Queue, c: PipelineDefCommand) -> anyhow::Result<()> {
    use crate::pipeline::definition;
    match c {
        PipelineDefCommand::Show { json } => {
            let def = definition::load(&q).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&def)?);
                return Ok(());
            }
            println!(
                "{:<3} {:<14} {:<12} {:<9} {:<9} {:<5} {:<8}  user message",
                "#", "stage", "agent", "position", "protected", "retry", "optional"
            );
            for (i, s) in def.stages.iter().enumerate() {
                println!(
                    "{:<3} {:<14} {:<12} {:<9} {:<9} {:<5} {:<8}  {}",
                    i + 1,
                    s.name,
                    s.agent,
                    serde_json::to_value(s.position)?.as_str().unwrap_or("?"),
                    s.protected,
                    s.retry,
                    s.optional,
                    s.user_message
                );
            }
            let m = &def.strategy;
            println!(
                "strategy: max_retries {}  base_temperature {}  temperature_step {}  \
                 stall_threshold {}  cooldown_retries {}",
                m.max_retries,
                m.base_temperature,
                m.temperature_step,
                m.stall_threshold,
                m.cooldown_retries
            );
            for (stage, o) in &m.per_stage_overrides {
                println!("  {stage}: {}", serde_json::to_string(o)?);
            }
        }
        PipelineDefCommand::Set { file } => {
            let text = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())?
            } else {
                std::fs::read_to_string(&file)
                    .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?
            };
            let def = definition::PipelineDef::decode(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let def = definition::store(&q, &def)
                .await
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            println!(
                "stored: {} stage(s): {}",
                def.stages.len(),
                def.stages
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(" -> ")
            );
        }
        PipelineDefCommand::Reset => {
            definition::reset(&q).await?;
            println!("reset: new runs use the default pipeline");
        }
    }
    Ok(())
}

impl PipelineArgs {
    /// The run's options: the defaults, then the request's fields (checked as the `run` job
    /// and the bridge check them).
    fn options(&self) -> anyhow::Result<RunOptions> {
        let mut o = RunOptions::default();
        pipeline::apply_request(&mut o, &self.run).map_err(anyhow::Error::msg)?;
        Ok(o)
    }
}

/// The stage job types (with `train-one`, the train stage's children).
pub const STAGES: [&str; 7] = [
    "plan",
    "train",
    "train-one",
    "check",
    "debug",
    "publish",
    "author",
];

/// Runs the pipeline command.
pub async fn pipeline(q: Queue, a: PipelineArgs) -> anyhow::Result<()> {
    engine::migrate::check_schema(&q).await?;
    let opts = a.options()?;
    if a.enqueue_only {
        let id = pipeline::create_run(&q, opts, &a.bot_id).await?;
        if a.json {
            println!("{}", serde_json::json!({"run_id": id}));
        } else {
            println!("{id}");
        }
        return Ok(());
    }
    let mut dirs = a.dirs.dirs();
    dirs.device = a.device.resolve()?;
    if !dirs.data_dir.is_dir() {
        // no directory, no bars: the one missing-data message, before any run is made
        sn50::data::check_files(&dirs.data_dir, &opts.budget.assets, opts.budget.timeframe)?;
    }
    let stop = CancellationToken::new();
    let mut registry = jobs::Registry::new();
    pipeline::register(&mut registry, q.clone(), dirs.clone());
    let w = Worker::new(
        q.clone(),
        registry,
        WorkerOptions {
            roles: STAGES.iter().map(|s| s.to_string()).collect(),
            concurrency: a.concurrency,
            batch: a.concurrency,
            name: Some("pipeline".into()),
            device: Some(dirs.device.clone()),
            ..Default::default()
        },
    )?;
    let worker = tokio::spawn(w.run(stop.clone()));
    tokio::spawn(pipeline::keep_runs(q.clone(), dirs, stop.clone()));
    let mut summaries = Vec::new();
    let mut all_ok = true;
    for _ in 0..a.loops.max(1) {
        let id = pipeline::create_run(&q, opts.clone(), &a.bot_id).await?;
        let run = follow(&q, &id, !a.json).await?;
        all_ok &= run.state == "succeeded";
        summaries.push(run.summary.unwrap_or_default());
    }
    stop.cancel();
    worker.await??;
    if a.json {
        let last = summaries.last().cloned().unwrap_or_default();
        let mut out = last.clone();
        out["success"] = serde_json::json!(all_ok);
        if summaries.len() > 1 {
            out["runs"] = serde_json::Value::Array(summaries);
        }
        println!("{out}");
    } else {
        for s in &summaries {
            print_summary(s);
        }
    }
    if !all_ok {
        bail!("the pipeline did not succeed");
    }
    Ok(())
}

/// One line of live progress from a stage job's progress record.
fn progress_line(p: &serde_json::Value) -> Option<String> {
    let f = |k: &str| p[k].as_f64();
    let exp = p["experiment"].as_str()?;
    let mut line = exp.to_string();
    if let (Some(e), Some(n)) = (p["epoch"].as_u64(), p["epochs"].as_u64()) {
        line.push_str(&format!("  epoch {e}/{n}"));
    }
    if let Some(l) = f("loss") {
        line.push_str(&format!("  loss {l:.5}"));
    }
    if let Some(l) = f("val_loss") {
        line.push_str(&format!("  val {l:.5}"));
    }
    if let Some(c) = f("crps") {
        line.push_str(&format!("  CRPS {c:.2}"));
    }
    if let Some(g) = f("gbm_crps") {
        line.push_str(&format!("  (GBM {g:.2})"));
    }
    Some(line)
}

/// Waits for a run to finish, printing each stage as it completes and the
/// running stage's progress (experiment, epoch, loss) as it changes.
async fn follow(q: &Queue, id: &str, live: bool) -> anyhow::Result<pipeline::RunInfo> {
    let mut printed = 0;
    // the last progress line printed per job
    let mut last_progress: std::collections::HashMap<String, String> = Default::default();
    loop {
        let Some(run) = pipeline::get_run(q, id).await? else {
            bail!("run {id} disappeared");
        };
        if live {
            if let Some(t) = &run.task {
                for s in t.stages.iter().skip(printed) {
                    eprintln!(
                        "[{id}] {:<12} {:<8} #{} {:<4} {:>6.1}s  {}",
                        s.name,
                        s.stage,
                        s.attempt,
                        if s.ok { "ok" } else { "FAIL" },
                        s.seconds,
                        s.note
                    );
                }
                printed = t.stages.len();
            }
            if let Some(job) = run.job.as_deref().filter(|_| !run.is_finished()) {
                // a train stage waiting for its experiments (`train-one` children): theirs
                let mut jobs = q.pending_children(job).await?;
                if jobs.is_empty() {
                    jobs.push(job.to_string());
                }
                for j in jobs {
                    let line = q
                        .status(&j)
                        .await?
                        .and_then(|s| s.progress)
                        .and_then(|p| progress_line(&p))
                        .map(|l| format!("[{id}] {:<12} {l}", run.stage));
                    if let Some(line) = line.filter(|l| last_progress.get(&j) != Some(l)) {
                        eprintln!("{line}");
                        last_progress.insert(j, line);
                    }
                }
            }
        }
        if run.is_finished() {
            return Ok(run);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn print_summary(s: &serde_json::Value) {
    println!(
        "run {}: {}",
        s["run_id"].as_str().unwrap_or("?"),
        if s["success"].as_bool() == Some(true) {
            "succeeded".to_string()
        } else {
            format!("failed: {}", s["error"].as_str().unwrap_or("?"))
        }
    );
    println!(
        "{:>3}  {:<44} {:>10} {:>10} {:>7} {:>8}",
        "#", "experiment", "CRPS", "GBM", "ratio", "params"
    );
    for (i, e) in s["experiments"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let f = |k: &str| {
            e[k].as_f64()
                .map(|v| format!("{v:.2}"))
                .unwrap_or("-".into())
        };
        println!(
            "{:>3}  {:<44} {:>10} {:>10} {:>7} {:>8}",
            i + 1,
            e["name"].as_str().unwrap_or("?"),
            f("crps"),
            f("gbm_crps"),
            e["ratio"]
                .as_f64()
                .map(|v| format!("{v:.3}"))
                .unwrap_or("-".into()),
            e["param_count"]
        );
    }
}

/// Runs the runs command.
pub async fn runs(q: Queue, c: RunsCommand) -> anyhow::Result<()> {
    match c {
        RunsCommand::List { limit, json } => {
            let rs = pipeline::list_runs(&q, limit).await?;
            if json {
                println!("{}", serde_json::to_string(&rs)?);
            } else if rs.is_empty() {
                println!("no runs");
            } else {
                for r in rs {
                    println!(
                        "{}  {:<10} {:<8} #{}  best {}",
                        r.id,
                        r.state,
                        r.stage,
                        r.attempt,
                        r.summary
                            .as_ref()
                            .and_then(|s| s["best_crps"].as_f64())
                            .map(|c| format!("{c:.2}"))
                            .unwrap_or_else(|| "-".into())
                    );
                }
            }
        }
        RunsCommand::Show { id, json } => {
            let id = pipeline::resolve_run_id(&q, &id, None).await?;
            let Some(r) = pipeline::get_run(&q, &id).await? else {
                bail!("no run {id:?}");
            };
            if json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                println!(
                    "run {}  state {}  stage {} #{}",
                    r.id, r.state, r.stage, r.attempt
                );
                if let Some(t) = &r.task {
                    for s in &t.stages {
                        println!(
                            "  {:<8} #{} {:<4} {:>6.1}s  {}",
                            s.stage,
                            s.attempt,
                            if s.ok { "ok" } else { "FAIL" },
                            s.seconds,
                            s.note
                        );
                    }
                }
                if let Some(s) = &r.summary {
                    print_summary(s);
                }
            }
        }
        RunsCommand::Watch { id, json } => {
            let id = pipeline::resolve_run_id(&q, &id, None).await?;
            if pipeline::get_run(&q, &id).await?.is_none() {
                bail!("no run {id:?} (synth-city runs list shows the runs)");
            }
            let run = follow(&q, &id, true).await?;
            let summary = run.summary.unwrap_or_default();
            if json {
                println!("{summary}");
            } else {
                print_summary(&summary);
            }
            if run.state != "succeeded" {
                bail!("run {id} {}", run.state);
            }
        }
        RunsCommand::Cancel { id } => {
            let id = pipeline::resolve_run_id(&q, &id, None).await?;
            let before = pipeline::cancel_run(&q, &id).await?;
            match before.as_str() {
                "missing" => bail!("no run {id:?}"),
                "succeeded" | "failed" | "cancelled" => println!("{id}: already {before}"),
                _ => println!("{id}: cancelled (was {before})"),
            }
        }
    }
    Ok(())
}
