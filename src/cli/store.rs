//! `synth-city publish` and `synth-city history`: the store from the command line.
//!
//! `publish --run ID [--hf]` runs the same code as the pipeline's publish
//! stage (`publisher::publish::publish_configured`) on a run Redis
//! remembers; with `--hf`, a run already in the store is published to the
//! Hugging Face Hub even when Redis no longer has it. `history` reads the
//! store (a directory, or the bucket when `HIPPIUS_ENDPOINT` is set): runs'
//! summaries, one run, experiments ranked by CRPS vs GBM, and the local
//! metrics history (JSON lines); `history hf` reads the Hugging Face Hub
//! (models, a model card, one file). `results share` and `results ingest`
//! exchange runs' comparisons with other miners (`publisher::store::shared`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use clap::{Args, Subcommand};
use publisher::store::hf::{self, HfClient, HfConfig};
use publisher::store::{records, shared};
use publisher::store::{Store, StoreExt};
use serde_json::{json, Value};

use engine::queue::Queue;

/// `publish` and `history`.
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Publish a run's best model to the store (and the Hub with --hf).
    Publish(PublishArgs),
    /// Read the store: runs, one run, experiments, metrics.
    History(HistoryArgs),
    /// Share a run's comparison with other miners, or ingest theirs.
    Results(ResultsArgs),
}

/// `synth-city results ...`
#[derive(Debug, Args)]
pub struct ResultsArgs {
    #[command(subcommand)]
    pub what: ResultsWhat,
    /// The store directory (when HIPPIUS_ENDPOINT is unset).
    #[arg(long, global = true, env = "SYNTH_STORE_DIR", default_value = "store")]
    pub store: PathBuf,
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ResultsWhat {
    /// Write a run's comparison (its scored experiments: names, specs, CRPS, ratios to GBM)
    /// as a public JSON document to the store (shared/results-RUN.json), and to the Hub repo
    /// (results/RUN.json) with --hf.
    Share {
        /// The run's id, or `latest` (the run the store saved last).
        #[arg(long = "run")]
        run: String,
        /// Also put it in the Hub repo (needs HF_TOKEN and HF_REPO_ID).
        #[arg(long)]
        hf: bool,
        /// Who is sharing (the document's `source`; default SYNTH_MINER_NAME, else synth-city).
        #[arg(long, env = "SYNTH_MINER_NAME", default_value = "synth-city")]
        source: String,
    },
    /// Merge another miner's shared document into the experiment history, marked with its
    /// source (the planner sees the rows as prior knowledge, never as runs of ours).
    Ingest {
        /// A file, an http(s) URL, or hf:namespace/name (that repo's results/latest.json).
        #[arg(long = "from")]
        from: String,
    },
}

/// `synth-city publish ...`
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The pipeline run's id, or `latest` (the run created last).
    #[arg(long = "run")]
    pub run: String,
    /// Also publish to the Hugging Face Hub (needs HF_TOKEN and HF_REPO_ID).
    #[arg(long)]
    pub hf: bool,
    /// Where this process works, as a worker would: the store (ignored for the bucket when
    /// HIPPIUS_ENDPOINT is set, but still holds metrics.jsonl), the market data for the data
    /// ranges in the model card, and the cache the checkpoint is fetched into.
    #[command(flatten)]
    pub dirs: super::dirs::DirsArgs,
    #[arg(long)]
    pub json: bool,
}

/// `synth-city history ...`
#[derive(Debug, Args)]
pub struct HistoryArgs {
    #[command(subcommand)]
    pub what: HistoryWhat,
    /// The store directory (when HIPPIUS_ENDPOINT is unset) and its metrics.jsonl.
    #[arg(long, global = true, default_value = "store")]
    pub store: PathBuf,
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum HistoryWhat {
    /// Runs with a summary in the store, the latest first.
    Runs,
    /// One run: its summary, experiments and publications.
    Run {
        /// The run's id, or `latest` (the run the store saved last).
        id: String,
    },
    /// Experiments, ranked by CRPS relative to GBM.
    Experiments {
        /// Only this run's (an id, or `latest`).
        #[arg(long = "run")]
        run: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// The seed's `history hippius` (our store is the Hippius bucket when HIPPIUS_ENDPOINT is
    /// set): the runs, as `history runs`, or with --run-id one run, as `history run`.
    Hippius {
        /// One run: an id, or `latest`.
        #[arg(long)]
        run_id: Option<String>,
        /// Runs listed at most.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// The Hugging Face Hub as a source (the seed's `history hf`): the models of the repo's
    /// owner; with --card the repo's model card; with --artifact FILE one file of the repo.
    /// HF_ENDPOINT, HF_TOKEN (for private repos) and HF_REPO_ID (the default repo) apply.
    Hf {
        /// The repo (namespace/name); default HF_REPO_ID.
        #[arg(long)]
        repo_id: Option<String>,
        /// The branch, tag or commit read by --card and --artifact.
        #[arg(long, default_value = "main")]
        revision: String,
        /// Print the repo's model card (README.md).
        #[arg(long, conflicts_with = "artifact")]
        card: bool,
        /// Read this file of the repo (a path in it, e.g. runs/ID/spec.json).
        #[arg(long)]
        artifact: Option<String>,
        /// Write the file read by --card or --artifact here instead of printing it.
        #[arg(long)]
        out: Option<PathBuf>,
        /// List models whose id contains this (instead of the owner's).
        #[arg(long)]
        search: Option<String>,
        /// Models listed at most.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// The largest file read, in bytes.
        #[arg(long, default_value_t = hf::ARTIFACT_CAP)]
        max_bytes: usize,
    },
    /// The local metrics history (metrics.jsonl), the last lines; with --trends, per
    /// experiment family (blocks and head) and day or week: how many experiments, the best
    /// and median CRPS / GBM ratio (from the store's experiments; the seed's
    /// `history trackio --trends`).
    #[command(alias = "trackio")]
    Metrics {
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Trends per experiment family over time instead of the last lines.
        #[arg(long)]
        trends: bool,
        /// The trends' period.
        #[arg(long, value_parser = ["day", "week"], default_value = "day")]
        by: String,
        /// Count rows ingested from other miners (`results ingest`) in the trends too.
        #[arg(long)]
        with_shared: bool,
    },
}

/// Runs `publish` or `history`. Redis (for `publish`) comes from the global flags.
pub async fn run(
    redis_url: Option<String>,
    prefix: Option<String>,
    c: StoreCommand,
) -> anyhow::Result<()> {
    match c {
        StoreCommand::Publish(a) => publish(redis_url, prefix, a).await,
        StoreCommand::History(a) => history(a).await,
        StoreCommand::Results(a) => results(a).await,
    }
}

async fn results(a: ResultsArgs) -> anyhow::Result<()> {
    let store: Arc<dyn Store> = publisher::store::open(&a.store)?;
    match a.what {
        ResultsWhat::Share { run, hf, source } => {
            let hub = if hf {
                Some(HfClient::new(HfConfig::require_from_env()?)?)
            } else {
                None
            };
            let id = records::resolve_run_id(store.clone(), &run).await?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0);
            let doc = shared::build(&*store, &id, &source, now).await?;
            let key = shared::save(&*store, &doc).await?;
            let hub_out = match &hub {
                Some(c) => Some(shared::share_to_hub(c, &doc).await?),
                None => None,
            };
            if a.json {
                println!(
                    "{}",
                    json!({"run_id": id, "key": key, "location": store.location(&key),
                           "experiments": doc.experiments.len(), "hf": hub_out})
                );
            } else {
                println!(
                    "shared run {id}: {} experiments (best ratio to GBM {:.4}) at {}",
                    doc.experiments.len(),
                    doc.experiments[0].ratio,
                    store.location(&key)
                );
                if let Some(o) = hub_out {
                    println!(
                        "  Hugging Face: {} {} ({})",
                        o.repo_id,
                        shared::hub_path(&id),
                        o.commit_oid.as_deref().unwrap_or("unchanged, no commit")
                    );
                }
            }
        }
        ResultsWhat::Ingest { from } => {
            let doc = if from.starts_with("hf:") || from.contains("://") {
                shared::fetch(&from).await?
            } else {
                let path = PathBuf::from(&from);
                let meta = std::fs::metadata(&path).map_err(|e| {
                    anyhow::anyhow!(
                        "--from {from}: {e}; give a file, an http(s) URL or hf:namespace/name"
                    )
                })?;
                if meta.len() > shared::MAX_DOC_BYTES as u64 {
                    bail!(
                        "--from {from}: {} bytes, over the cap of {}",
                        meta.len(),
                        shared::MAX_DOC_BYTES
                    );
                }
                let bytes =
                    std::fs::read(&path).map_err(|e| anyhow::anyhow!("--from {from}: {e}"))?;
                shared::parse(&bytes).map_err(|e| anyhow::anyhow!("--from {from}: {e}"))?
            };
            let out = shared::ingest(&*store, &doc).await?;
            if a.json {
                println!("{}", serde_json::to_string(&out)?);
            } else {
                println!(
                    "ingested {} experiments of {} (run {}) into {} as experiments/{}/ ({} already there)",
                    out.rows,
                    out.source,
                    out.run_id,
                    store.describe(),
                    out.history_run,
                    out.unchanged
                );
            }
        }
    }
    Ok(())
}

async fn publish(
    redis_url: Option<String>,
    prefix: Option<String>,
    a: PublishArgs,
) -> anyhow::Result<()> {
    if !jobs::pipeline::is_latest_run(&a.run) {
        records::check_run_id(&a.run)?;
    }
    let hf_cfg = if a.hf {
        Some(HfConfig::require_from_env()?)
    } else {
        None
    };
    // The run as Redis remembers it (the same input the publish stage has).
    let url = engine::config::redis_url(redis_url.as_deref());
    let prefix = engine::config::prefix(prefix.as_deref()).map_err(anyhow::Error::msg)?;
    let q = Queue::new(&url, &prefix, engine::config::QueueConfig::from_env()?)?;
    let run_id = latest_to_publish(&q, &url, &a).await?;
    let a = PublishArgs { run: run_id, ..a };
    let run = match tokio::time::timeout(
        Duration::from_secs(10),
        crate::pipeline::get_run(&q, &a.run),
    )
    .await
    {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            eprintln!("note: cannot read run {} from Redis ({e})", a.run);
            None
        }
        Err(_) => {
            eprintln!("note: Redis at {url} did not answer in 10 s");
            None
        }
    };
    let out = match run.and_then(|r| r.task.clone().map(|t| (r, t))) {
        Some((r, task)) => {
            let Some(best) = task.best().cloned() else {
                bail!("run {} has no scored experiment to publish", a.run);
            };
            let summary = r
                .summary
                .clone()
                .unwrap_or_else(|| crate::pipeline::summarize(&r.id, &task, true, None));
            let p = publisher::publish::publish_configured(
                &a.dirs.dirs(),
                &a.run,
                &best,
                &summary,
                a.hf,
            )
            .await?;
            serde_json::to_value(&p)?
        }
        None => {
            // Not in Redis: with --hf, publish what the store already holds.
            let Some(cfg) = hf_cfg else {
                bail!(
                    "run {} is not in Redis; only a run already published to the store can be \
                     sent on, with --hf",
                    a.run
                );
            };
            let store = publisher::store::open(&a.dirs.store)?;
            let client = HfClient::new(cfg)?;
            let p = hf::publish_run(&client, &*store, &a.run).await?;
            json!({"hf": p, "store": store.describe()})
        }
    };
    if a.json {
        println!("{out}");
    } else {
        if let Some(dir) = out["model_dir"].as_str() {
            println!("published run {} to {dir}", a.run);
        }
        let h = &out["hf"];
        if !h.is_null() {
            match h["commit_oid"].as_str() {
                Some(c) => println!(
                    "Hugging Face: committed {} to {} ({})",
                    c,
                    h["repo_id"].as_str().unwrap_or("?"),
                    h["commit_url"].as_str().unwrap_or("")
                ),
                None => println!(
                    "Hugging Face: {} already holds run {} as is; nothing committed",
                    h["repo_id"].as_str().unwrap_or("?"),
                    a.run
                ),
            }
        }
    }
    Ok(())
}

/// The run `publish --run` names: `latest` is the run Redis created last
/// (`pipeline::resolve_run_id`); with `--hf` and no run in Redis (or no Redis), the newest run
/// the store holds (`records::resolve_run_id`), since that is what `--hf` can send on.
async fn latest_to_publish(q: &Queue, url: &str, a: &PublishArgs) -> anyhow::Result<String> {
    if !jobs::pipeline::is_latest_run(&a.run) {
        return Ok(a.run.clone());
    }
    let why = match tokio::time::timeout(
        Duration::from_secs(10),
        crate::pipeline::resolve_run_id(q, &a.run, None),
    )
    .await
    {
        Ok(Ok(id)) => {
            eprintln!("note: latest is run {id}");
            return Ok(id);
        }
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("Redis at {url} did not answer in 10 s"),
    };
    if !a.hf {
        bail!("{why}; or name the run: --run ID (`synth-city runs list`)");
    }
    let store = publisher::store::open(&a.dirs.store)?;
    let id = records::resolve_run_id(store, &a.run).await?;
    eprintln!("note: {why}; latest is the store's newest run, {id}");
    Ok(id)
}

fn f(v: Option<f64>, d: usize) -> String {
    v.filter(|x| x.is_finite())
        .map(|x| format!("{x:.d$}"))
        .unwrap_or_else(|| "-".into())
}

/// `history hf`: reads the Hub.
#[allow(clippy::too_many_arguments)]
async fn history_hf(
    json_out: bool,
    repo_id: Option<String>,
    revision: String,
    card: bool,
    artifact: Option<String>,
    out: Option<PathBuf>,
    search: Option<String>,
    limit: usize,
    max_bytes: usize,
) -> anyhow::Result<()> {
    let hub = HfClient::reader(HfConfig::reader_from_env()?)?;
    let file = if card {
        Some(hub.model_card(repo_id.as_deref(), &revision).await?)
    } else if let Some(name) = &artifact {
        Some(
            hub.read_file(repo_id.as_deref(), &revision, name, max_bytes)
                .await?,
        )
    } else {
        None
    };
    if let Some(f) = file {
        if let Some(path) = &out {
            std::fs::write(path, &f.bytes)
                .map_err(|e| anyhow::anyhow!("--out {}: {e}", path.display()))?;
            eprintln!(
                "wrote {} ({} bytes) of {} at {} to {}",
                f.filename,
                f.bytes.len(),
                f.repo_id,
                f.revision,
                path.display()
            );
        } else if json_out {
            println!("{}", f.to_json());
        } else {
            match std::str::from_utf8(&f.bytes) {
                Ok(t) => print!("{t}"),
                Err(_) => bail!(
                    "{} is binary ({} bytes); write it with --out FILE or see it with --json (base64)",
                    f.filename,
                    f.bytes.len()
                ),
            }
        }
        return Ok(());
    }
    if out.is_some() {
        bail!("--out needs --card or --artifact FILE");
    }
    let author = match (&repo_id, &search) {
        (Some(r), _) => Some(hub.repo_or_default(Some(r))?),
        (None, None) => Some(hub.repo_or_default(None).map_err(|_| {
            anyhow::anyhow!("history hf: give --repo-id namespace/name or --search TEXT, or set HF_REPO_ID (its owner's models are listed)")
        })?),
        (None, Some(_)) => None,
    }
    .map(|r| r.split('/').next().unwrap_or_default().to_string());
    let models = hub
        .list_models(&hf::ModelQuery {
            author: author.clone(),
            search,
            limit,
        })
        .await?;
    if json_out {
        println!("{}", serde_json::to_string(&models)?);
    } else if models.is_empty() {
        println!(
            "no models on the Hub for {}",
            author.as_deref().unwrap_or("that search")
        );
    } else {
        println!(
            "{:<50} {:<26} {:>9} {:>6}",
            "model", "last modified", "downloads", "likes"
        );
        for m in &models {
            println!(
                "{:<50} {:<26} {:>9} {:>6}",
                m.id,
                m.last_modified.as_deref().unwrap_or("-"),
                m.downloads.map(|d| d.to_string()).unwrap_or("-".into()),
                m.likes.map(|d| d.to_string()).unwrap_or("-".into())
            );
        }
    }
    Ok(())
}

async fn history(a: HistoryArgs) -> anyhow::Result<()> {
    if let HistoryWhat::Hf {
        repo_id,
        revision,
        card,
        artifact,
        out,
        search,
        limit,
        max_bytes,
    } = a.what
    {
        return history_hf(
            a.json, repo_id, revision, card, artifact, out, search, limit, max_bytes,
        )
        .await;
    }
    if let HistoryWhat::Metrics {
        trends: true,
        by,
        with_shared,
        limit,
    } = &a.what
    {
        let store: Arc<dyn Store> = publisher::store::open(&a.store)?;
        let mut recs = records::load_history(store.clone(), usize::MAX)
            .await?
            .records;
        if !with_shared {
            recs.retain(|r| {
                !r.run_id
                    .as_deref()
                    .is_some_and(|id| id.starts_with("shared-"))
            });
        }
        let period = if by == "week" {
            records::TrendPeriod::Week
        } else {
            records::TrendPeriod::Day
        };
        let mut rows = records::trends(&recs, period);
        rows = rows.split_off(rows.len().saturating_sub(*limit));
        if a.json {
            println!("{}", serde_json::to_string(&rows)?);
        } else if rows.is_empty() {
            println!("no experiments with a time in {}", store.describe());
        } else {
            println!(
                "{:<11} {:<40} {:>6} {:>6} {:>8} {:>8}",
                if by == "week" { "week of" } else { "day" },
                "family (blocks/head)",
                "exps",
                "scored",
                "best",
                "median"
            );
            for r in rows {
                println!(
                    "{:<11} {:<40} {:>6} {:>6} {:>8} {:>8}",
                    r.period,
                    r.family,
                    r.count,
                    r.scored,
                    f(r.best_ratio, 4),
                    f(r.median_ratio, 4)
                );
            }
        }
        return Ok(());
    }
    if let HistoryWhat::Metrics { limit, .. } = a.what {
        let path = records::metrics_path(&a.store);
        let lines = records::read_metrics(&path, limit).map_err(anyhow::Error::msg)?;
        if std::env::var("WANDB_API_KEY").is_ok_and(|v| !v.is_empty()) {
            eprintln!(
                "note: WANDB_API_KEY is set: runs also log these rows to W&B; this is the local history in {}",
                path.display()
            );
        }
        if a.json {
            println!("{}", Value::Array(lines));
        } else if lines.is_empty() {
            println!("no metrics in {}", path.display());
        } else {
            println!(
                "{:<10} {:<14} {:<44} {:>10} {:>10} {:>7}",
                "event", "run", "name", "CRPS", "GBM", "ratio"
            );
            for l in &lines {
                println!(
                    "{:<10} {:<14} {:<44} {:>10} {:>10} {:>7}",
                    l["event"].as_str().unwrap_or("?"),
                    l["run_id"].as_str().unwrap_or("?"),
                    l["name"].as_str().unwrap_or("?"),
                    f(l["crps"].as_f64(), 2),
                    f(l["gbm_crps"].as_f64(), 2),
                    f(l["ratio"].as_f64(), 3)
                );
            }
        }
        return Ok(());
    }
    let store: Arc<dyn Store> = publisher::store::open(&a.store)?;
    let (what, limit) = match a.what {
        HistoryWhat::Hippius {
            run_id: Some(id), ..
        } => (HistoryWhat::Run { id }, None),
        HistoryWhat::Hippius {
            run_id: None,
            limit,
        } => (HistoryWhat::Runs, Some(limit)),
        w => (w, None),
    };
    match what {
        HistoryWhat::Runs => {
            let mut rows = records::run_rows(store.clone()).await?;
            rows.truncate(limit.unwrap_or(usize::MAX));
            if a.json {
                println!("{}", serde_json::to_string(&rows)?);
            } else if rows.is_empty() {
                println!("no runs in {}", store.describe());
            } else {
                println!(
                    "{:<16} {:<9} {:<44} {:>10} {:>10} {:>5}",
                    "run", "result", "best", "CRPS", "GBM", "exps"
                );
                for r in rows {
                    println!(
                        "{:<16} {:<9} {:<44} {:>10} {:>10} {:>5}{}",
                        r.run_id,
                        match r.success {
                            Some(true) => "ok",
                            Some(false) => "failed",
                            None => "?",
                        },
                        r.best_experiment.as_deref().unwrap_or("-"),
                        f(r.best_crps, 2),
                        f(r.gbm_crps, 2),
                        r.experiments,
                        if r.latest { "  (published latest)" } else { "" }
                    );
                }
            }
        }
        HistoryWhat::Run { id } => {
            let id = records::resolve_run_id(store.clone(), &id).await?;
            let summary: Option<Value> = store.get_json(&records::summary_key(&id)).await?;
            let hf: Option<Value> = store.get_json(&records::hf_published_key(&id)).await?;
            let exps = records::experiment_rows(store.clone(), Some(&id)).await?;
            if summary.is_none() && exps.is_empty() {
                bail!("no run {id:?} in {}", store.describe());
            }
            if a.json {
                println!(
                    "{}",
                    json!({"run_id": id, "summary": summary, "experiments": exps, "hf": hf})
                );
            } else {
                println!("run {id}");
                if let Some(s) = &summary {
                    println!(
                        "  result {}  best {}  CRPS {}  GBM {}",
                        match s["success"].as_bool() {
                            Some(true) => "ok",
                            Some(false) => "failed",
                            None => "?",
                        },
                        s["best_experiment"].as_str().unwrap_or("-"),
                        f(s["best_crps"].as_f64(), 4),
                        f(s["gbm_crps"].as_f64(), 4)
                    );
                }
                if let Some(h) = &hf {
                    println!(
                        "  Hugging Face: {} commit {}",
                        h["repo_id"].as_str().unwrap_or("?"),
                        h["commit_oid"].as_str().unwrap_or("-")
                    );
                }
                print_experiments(&exps);
            }
        }
        HistoryWhat::Experiments { run, limit } => {
            let run = match run {
                Some(r) => Some(records::resolve_run_id(store.clone(), &r).await?),
                None => None,
            };
            let mut rows = records::experiment_rows(store.clone(), run.as_deref()).await?;
            rows.truncate(limit);
            if a.json {
                println!("{}", serde_json::to_string(&rows)?);
            } else if rows.is_empty() {
                println!("no experiments in {}", store.describe());
            } else {
                print_experiments(&rows);
            }
        }
        HistoryWhat::Metrics { .. } | HistoryWhat::Hippius { .. } | HistoryWhat::Hf { .. } => {
            unreachable!("handled above")
        }
    }
    Ok(())
}

fn print_experiments(rows: &[records::ExperimentRow]) {
    println!(
        "{:>3}  {:<14} {:<44} {:>10} {:>10} {:>7}",
        "#", "run", "experiment", "CRPS", "GBM", "ratio"
    );
    for (i, r) in rows.iter().enumerate() {
        println!(
            "{:>3}  {:<14} {:<44} {:>10} {:>10} {:>7}",
            i + 1,
            r.run_id,
            r.name,
            f(r.crps, 2),
            f(r.gbm_crps, 2),
            f(r.ratio, 3)
        );
    }
}
