//! `synth-city models list|show|promote|rollback|history|shadow [--json]`: the champion of each
//! (asset, prompt) pair and how it got there (`publisher::champions`). `promote` puts a
//! published candidate through the gate (`sn50::gate`) and `--force` overrides it; both, and
//! `rollback`, are the operator's (this command line), and every one is recorded.
//!
//! It does not publish, train or serve models; it prints what the store holds and asks the
//! publisher's library to change it.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use publisher::artifacts::ArtifactCache;
use publisher::champions::{self, Action, Champion, Decision};
use sn50::constants::PromptKind;

use super::dirs::DirsArgs;

/// `synth-city models ...`
#[derive(Debug, Args)]
pub struct ModelsArgs {
    #[command(subcommand)]
    pub command: ModelsCommand,
}

/// The store to read (a bucket when HIPPIUS_ENDPOINT is set).
#[derive(Debug, Clone, Args)]
pub struct StoreArg {
    #[arg(long, env = "SYNTH_STORE_DIR", default_value = "store")]
    pub store: PathBuf,
}

/// One pair.
#[derive(Debug, Clone, Args)]
pub struct PairArgs {
    /// The SN50 asset, e.g. BTC.
    #[arg(long)]
    pub asset: String,
    /// `low` (24 h at 5 min) or `high` (1 h at 1 min).
    #[arg(long, default_value = "low")]
    pub prompt: String,
}

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// The champion of every pair that has one (the GBM serves the others).
    List {
        #[command(flatten)]
        store: StoreArg,
        #[arg(long)]
        json: bool,
    },
    /// One pair's champion and the decision that made it champion (its windows, scores and test).
    Show {
        #[command(flatten)]
        pair: PairArgs,
        #[command(flatten)]
        store: StoreArg,
        #[arg(long)]
        json: bool,
    },
    /// Put a published candidate (RUN/NAME) or a classical model (`classical:garch-tod-t`, with
    /// --prompt) through the gate for each asset given: scored with the champion and the GBM on
    /// windows after its training data (a classical model fits on each window's own history:
    /// against another classical model or the GBM, windows of the latest 90 days), promoted
    /// only when it beats both by the margin, significantly. Exit status 1 when any pair
    /// refuses it.
    Promote(Box<PromoteArgs>),
    /// Put back the champion the pair's current one replaced (the GBM when there was none).
    Rollback {
        #[command(flatten)]
        pair: PairArgs,
        #[command(flatten)]
        store: StoreArg,
        #[arg(long)]
        json: bool,
    },
    /// The shadow evidence of every pair with recorded prompts: each challenger against the
    /// champion and the GBM on the settled live prompts, through the gate, and what the shadow
    /// policy would do (SYNTH_SHADOW_MIN_DAYS, SYNTH_SHADOW_POLICY); it changes nothing.
    Shadow {
        #[command(flatten)]
        store: StoreArg,
        #[arg(long)]
        json: bool,
    },
    /// Every decision (promotions, refusals, rollbacks), oldest first.
    History {
        /// Only this asset's.
        #[arg(long)]
        asset: Option<String>,
        /// Only this prompt's (`low` or `high`).
        #[arg(long)]
        prompt: Option<String>,
        #[command(flatten)]
        store: StoreArg,
        #[arg(long)]
        json: bool,
    },
}

/// `models promote`.
#[derive(Debug, Args)]
pub struct PromoteArgs {
    /// The published model, RUN/NAME (its `models/RUN/NAME/record.json`), or a classical model,
    /// `classical:NAME` (`ewma-tod-t`, `garch-tod-t`, `har-tod-t`, ...: `score backtest --help`).
    pub candidate: String,
    /// Comma-separated SN50 assets (those it was trained on), or `all` (every asset it was
    /// trained on; a classical model: every asset of the prompt); each pair is decided on its
    /// own.
    #[arg(long, value_delimiter = ',', required = true)]
    pub asset: Vec<String>,
    /// `low` or `high`; default: the prompt of the candidate's timeframe (required for a
    /// classical model, which answers either).
    #[arg(long)]
    pub prompt: Option<String>,
    /// Score on this dataset (`ds-...` or `latest`) instead of the bars in --data-dir.
    #[arg(long)]
    pub dataset: Option<String>,
    /// Windows drawn from after the training data (at least --min-windows are needed).
    #[arg(long, default_value_t = 40)]
    pub windows: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Paths per window.
    #[arg(long, default_value_t = sn50::constants::NUM_SIMULATIONS)]
    pub paths: usize,
    /// The relative margin over the champion and the GBM.
    #[arg(long, default_value_t = 0.01)]
    pub margin: f64,
    /// The Diebold–Mariano test's level (one-sided).
    #[arg(long, default_value_t = 0.05)]
    pub alpha: f64,
    #[arg(long, default_value_t = 20)]
    pub min_windows: usize,
    /// The Newey–West lag (default: the larger of floor(T^(1/3)) and the windows' overlap).
    #[arg(long)]
    pub lag: Option<usize>,
    /// The operator's override: promote whatever the gate says (recorded as forced).
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub dirs: DirsArgs,
    #[arg(long)]
    pub json: bool,
}

fn prompt(s: &str) -> anyhow::Result<PromptKind> {
    s.parse()
        .map_err(|_| anyhow::anyhow!("--prompt {s:?}: use low (24 h) or high (1 h)"))
}

fn utc(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|d| d.format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_else(|| t.to_string())
}

fn print_json(v: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn champion_line(c: &Champion) -> String {
    format!(
        "{:<5} {:<7} {} (since {}{}{})",
        c.prompt.label(),
        c.asset,
        c.candidate,
        utc(c.promoted_at),
        if c.forced { ", forced" } else { "" },
        if c.restored_by.is_some() {
            ", restored by a rollback"
        } else {
            ""
        }
    )
}

fn decision_lines(d: &Decision) -> Vec<String> {
    let action = match d.action {
        Action::Promote if d.forced => "promote (forced)",
        Action::Promote => "promote",
        Action::Refuse => "refuse",
        Action::Rollback => "rollback",
    };
    let mut out = vec![format!(
        "{} {:<5} {:<7} {action:<16} {} by {}: {}",
        utc(d.at_ms / 1000),
        d.prompt.label(),
        d.asset,
        d.candidate.as_deref().unwrap_or("-"),
        d.by,
        d.reason
    )];
    if let Some(g) = &d.gate {
        out.push(format!(
            "    {} windows ({} left out), lag {}, margin {}, alpha {}; means: candidate {:.4}, champion {}, gbm {:.4}",
            g.windows.len(),
            g.excluded.len(),
            g.lag,
            g.params.margin,
            g.params.alpha,
            g.candidate_mean,
            g.champion_mean.map_or("-".into(), |m| format!("{m:.4}")),
            g.gbm_mean
        ));
        for c in g.vs_champion.iter().chain(g.vs_gbm.iter()) {
            if let Some(t) = c.test {
                out.push(format!(
                    "    vs {}: ratio {:.4}, DM {:.3} (HLN {:.3}), p {:.4}",
                    c.against, c.ratio, t.statistic, t.hln_statistic, t.p_value
                ));
            }
        }
    }
    out
}

/// Runs `models ...`.
pub async fn run(a: ModelsArgs) -> anyhow::Result<()> {
    match a.command {
        ModelsCommand::List { store, json } => {
            let s = publisher::store::open(&store.store)?;
            let all = champions::list(&*s).await?;
            if json {
                return print_json(&serde_json::json!({"champions": all}));
            }
            if all.is_empty() {
                println!("no champions: the GBM serves every pair (promote one with synth-city models promote RUN/NAME --asset A)");
            }
            for c in &all {
                println!("{}", champion_line(c));
            }
            Ok(())
        }
        ModelsCommand::Show { pair, store, json } => {
            let p = prompt(&pair.prompt)?;
            champions::check_asset(&pair.asset)?;
            let s = publisher::store::open(&store.store)?;
            let c = champions::current(&*s, p, &pair.asset).await?;
            let d = match &c {
                Some(c) => champions::decision(&*s, &c.decision).await?,
                None => None,
            };
            if json {
                return print_json(&serde_json::json!({"champion": c, "decision": d}));
            }
            match &c {
                None => println!(
                    "{} {}: no champion, the GBM serves it",
                    p.label(),
                    pair.asset
                ),
                Some(c) => {
                    println!("{}", champion_line(c));
                    match (&c.artifact, &c.classical) {
                        (Some(a), _) => println!("  checkpoint {a}"),
                        (None, Some(name)) => {
                            println!("  classical {name}, fitted per request on the bars before it")
                        }
                        (None, None) => println!("  names no model: roll it back"),
                    }
                    if let Some(d) = &d {
                        for l in decision_lines(d) {
                            println!("  {l}");
                        }
                    }
                }
            }
            Ok(())
        }
        ModelsCommand::Rollback { pair, store, json } => {
            let p = prompt(&pair.prompt)?;
            let s = publisher::store::open(&store.store)?;
            let d = champions::rollback(&*s, p, &pair.asset, "operator").await?;
            if json {
                return print_json(&d);
            }
            for l in decision_lines(&d) {
                println!("{l}");
            }
            Ok(())
        }
        ModelsCommand::History {
            asset,
            prompt: pr,
            store,
            json,
        } => {
            let s = publisher::store::open(&store.store)?;
            let p = pr.as_deref().map(prompt).transpose()?;
            if let Some(a) = &asset {
                champions::check_asset(a)?;
            }
            // one pair's prefix when both are given, else everything, filtered
            let all = match (p, &asset) {
                (Some(p), Some(a)) => champions::history(&*s, Some((p, a))).await?,
                _ => champions::history(&*s, None).await?,
            };
            let all: Vec<Decision> = all
                .into_iter()
                .filter(|d| p.is_none_or(|p| d.prompt == p))
                .filter(|d| asset.as_ref().is_none_or(|a| &d.asset == a))
                .collect();
            if json {
                return print_json(&serde_json::json!({"decisions": all}));
            }
            if all.is_empty() {
                println!("no decisions yet");
            }
            for d in &all {
                for l in decision_lines(d) {
                    println!("{l}");
                }
            }
            Ok(())
        }
        ModelsCommand::Promote(a) => promote(*a).await,
        ModelsCommand::Shadow { store, json } => {
            let s = publisher::store::open(&store.store)?;
            let settings = scorer::policy::ShadowSettings::from_env()?;
            let report = scorer::policy::run(&*s, &settings, false).await?;
            if json {
                return print_json(&report);
            }
            let pairs = report["pairs"].as_array().cloned().unwrap_or_default();
            println!(
                "shadow policy {} (acts after {} settled days; `models shadow` only reports)",
                settings.policy.label(),
                settings.min_days
            );
            if pairs.is_empty() {
                println!(
                    "no shadow prompts recorded yet (schedule shadow-prompt and shadow-score jobs)"
                );
            }
            for p in &pairs {
                println!(
                    "{:<5} {:<7} champion {}",
                    p["prompt"].as_str().unwrap_or(""),
                    p["asset"].as_str().unwrap_or(""),
                    p["champion"].as_str().unwrap_or("none (the GBM)")
                );
                for c in p["challengers"].as_array().into_iter().flatten() {
                    println!(
                        "  challenger {}: {} prompts on {} days, {}: {}",
                        c["candidate"].as_str().unwrap_or(""),
                        c["prompts"],
                        c["days"],
                        c["verdict"].as_str().unwrap_or(""),
                        c["reason"].as_str().unwrap_or("")
                    );
                }
                if let Some(d) = p["demotion"].as_object() {
                    println!(
                        "  against the GBM: {} prompts on {} days, {}: {}",
                        d["prompts"],
                        d["days"],
                        d["verdict"].as_str().unwrap_or(""),
                        d["reason"].as_str().unwrap_or("")
                    );
                }
                match p["would"]["action"].as_str() {
                    Some("promote") => println!(
                        "  ready: the policy would promote {}",
                        p["would"]["candidate"].as_str().unwrap_or("")
                    ),
                    Some("demote") => println!("  ready: the policy would demote the champion"),
                    _ => {}
                }
            }
            Ok(())
        }
    }
}

async fn promote(a: PromoteArgs) -> anyhow::Result<()> {
    let dirs = a.dirs.dirs();
    let store = publisher::store::open(&dirs.store_dir)?;
    let cache = ArtifactCache::of(&dirs);
    if let Some(p) = &a.prompt {
        prompt(p)?;
    }
    // the same request a `promote` job carries: one path for the CLI and the job
    let req = jobs::models::Promote {
        candidate: a.candidate.clone(),
        assets: a.asset.iter().map(|s| s.trim().to_string()).collect(),
        prompt: a.prompt.clone(),
        dataset: a.dataset.clone(),
        windows: Some(a.windows),
        seed: Some(a.seed),
        paths: Some(a.paths),
        force: a.force,
        margin: Some(a.margin),
        alpha: Some(a.alpha),
        min_windows: Some(a.min_windows),
        lag: a.lag,
        requested_by: Some("operator".into()),
    };
    let decisions = champions::promote_request(&*store, &cache, &dirs.data_dir, &req)
        .await
        .with_context(|| format!("promoting {} for {}", a.candidate, a.asset.join(", ")))?;
    if !a.json {
        for d in &decisions {
            for l in decision_lines(d) {
                println!("{l}");
            }
        }
    }
    if a.json {
        print_json(&serde_json::json!({"decisions": decisions}))?;
    }
    let refused: Vec<&str> = decisions
        .iter()
        .filter(|d| d.action == Action::Refuse)
        .map(|d| d.asset.as_str())
        .collect();
    if !refused.is_empty() {
        anyhow::bail!(
            "the gate refused {} for {} (the decision says why; synth-city models history)",
            a.candidate,
            refused.join(", ")
        );
    }
    Ok(())
}
