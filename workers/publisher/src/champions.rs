//! Champions: per (asset, prompt), the published model the miner serves, and the only way a
//! published candidate becomes one — through the promotion gate ([`sn50::gate`]).
//!
//! Store layout (keys of the store the publisher writes to):
//!
//! | key | content |
//! |---|---|
//! | `models/champions/{prompt}/{ASSET}.json` | [`Champion`]: the candidate (`run/name`), its content-addressed checkpoint ([`jobs::ArtifactRef`]), the decision that put it there |
//! | `models/decisions/{prompt}/{ASSET}/{ms}-{action}-{rand}.json` | [`Decision`]: one per promotion, refusal or rollback, never rewritten (the append-only history) |
//!
//! [`promote`] scores a published candidate, the pair's champion (none: the GBM serves) and the
//! GBM on the same walk-forward windows that start after the end of both models' training data
//! (the candidate's pinned dataset, or its manifest's data ranges, less its holdout), with the
//! exact SN50 scoring of `score backtest` ([`sn50::backtest::run_backtest`]); the gate decides;
//! the decision is written, then (when it promotes) the champion pointer. `force` (the
//! operator's) promotes whatever the gate says and is recorded as forced. [`rollback`] puts
//! back the champion the current one replaced (the GBM when there was none), at once, and
//! records it.
//!
//! This module does not train, publish or serve models, and does not decide who may promote
//! (the CLI is the operator's); two promotions of one pair at the same moment both record their
//! decision and the last pointer written wins.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use jobs::{ArtifactRef, Timeframe};
use serde::{Deserialize, Serialize};
use sn50::backtest::{run_backtest, BacktestError, BacktestOptions};
use sn50::constants::{PromptKind, Sn50Config, WeightTable};
use sn50::forecast::{Forecaster, Gbm};
use sn50::gate::{self, GateDecision, GateError, GateInput, GateParams, Verdict};

use crate::artifacts::{ArtifactCache, ArtifactError};
use crate::datasets::DatasetError;
use crate::store::records::{check_run_id, model_prefix, Manifest};
use crate::store::{safe_name, Store, StoreError, StoreExt};

/// Where the champion pointers live.
pub const CHAMPIONS_PREFIX: &str = "models/champions/";
/// Where the decisions live.
pub const DECISIONS_PREFIX: &str = "models/decisions/";
/// The record format this build writes.
pub const VERSION: u32 = 1;

/// A promotion, rollback or read that could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum ChampionError {
    #[error("{0}")]
    Input(String),
    #[error("{candidate} is not a published model: {key} is not in {store} (publish it with synth-city publish --run RUN, then name it RUN/NAME)")]
    NotPublished {
        candidate: String,
        key: String,
        store: String,
    },
    #[error("{candidate} has no checkpoint in the store (an older build published it without an artifact): publish its run again")]
    NoArtifact { candidate: String },
    #[error("{candidate}: where its {asset} training data ends is unknown (no pinned dataset and no data range in its record.json): train it in a pipeline run with --dataset")]
    NoTrainingRange { candidate: String, asset: String },
    #[error("{prompt}/{asset} has no champion: the GBM serves it already, nothing to roll back")]
    NothingToRollBack { asset: String, prompt: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    #[error("{what} does not load: {error}")]
    Load { what: String, error: String },
    #[error("scoring {candidate} on {asset}: {error}")]
    Backtest {
        candidate: String,
        asset: String,
        error: Box<BacktestError>,
    },
    #[error(transparent)]
    Gate(#[from] GateError),
    #[error("the evaluation stopped: {0}")]
    Join(String),
}

/// The model serving one (asset, prompt) pair: `models/champions/{prompt}/{ASSET}.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Champion {
    pub version: u32,
    pub asset: String,
    pub prompt: PromptKind,
    /// The published model, `run/name`, or a classical model, `classical:NAME`.
    pub candidate: String,
    /// The run that published it (empty for a classical model).
    pub run_id: String,
    pub name: String,
    /// The checkpoint, by content: what the miner fetches and loads (none for a classical
    /// model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<ArtifactRef>,
    /// A classical model ([`sn50::forecast::MODELS`]) fitted per request on the bars before
    /// it: instead of a checkpoint, or with one (the two answer together, half the paths each).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classical: Option<String>,
    /// The published copy's key prefix, `models/{run}/{name}/` (empty for a classical model).
    pub model_dir: String,
    /// The key of the decision that made it champion.
    pub decision: String,
    /// When (unix seconds).
    pub promoted_at: i64,
    /// Promoted by the operator's `--force`, whatever the gate said.
    pub forced: bool,
    /// The end of its training data for this asset (unix seconds): the gate's windows start
    /// after it. 0 for a classical model, which fits on each request's own history.
    pub trained_until: i64,
    /// The rollback that put it back, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored_by: Option<String>,
}

impl Champion {
    /// What serves the pair, as the shadow scorer and `load_forecaster` name it: the
    /// checkpoint's artifact reference, `classical:NAME`, or both as `mix:REF,classical:NAME`.
    pub fn served(&self) -> String {
        match (&self.artifact, &self.classical) {
            (Some(a), Some(name)) => format!(
                "{}{a},{}{name}",
                sn50::ensemble::PREFIX,
                sn50::forecast::CLASSICAL_PREFIX
            ),
            (Some(a), None) => a.to_string(),
            (None, Some(name)) => format!("{}{name}", sn50::forecast::CLASSICAL_PREFIX),
            (None, None) => "gbm".into(),
        }
    }
}

/// What a decision did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Promote,
    Refuse,
    Rollback,
}

/// One decision about a pair, never rewritten.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub version: u32,
    /// Its own key.
    pub key: String,
    pub action: Action,
    pub asset: String,
    pub prompt: PromptKind,
    /// Unix milliseconds.
    pub at_ms: i64,
    /// Who asked (`operator`, ...).
    pub by: String,
    /// The candidate (promote, refuse).
    #[serde(default)]
    pub candidate: Option<String>,
    /// `--force`: promoted whatever the gate said.
    #[serde(default)]
    pub forced: bool,
    /// The gate's decision: windows, every score, means, ratios, the test.
    #[serde(default)]
    pub gate: Option<GateDecision>,
    /// Where the evaluation bars came from (`dataset ds-...`, `data directory`), and the first
    /// window start it allowed.
    #[serde(default)]
    pub evaluation: Option<EvaluationInfo>,
    pub reason: String,
    /// The champion before (`None`: the GBM).
    pub previous: Option<Champion>,
    /// The champion after (`None`: the GBM).
    pub champion: Option<Champion>,
}

/// How a candidate was evaluated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvaluationInfo {
    /// Where the bars came from: `dataset ds-...` or `data directory` (never a path).
    pub data: String,
    /// Windows start at or after this (unix seconds): the later training end of candidate and
    /// champion.
    pub not_before: i64,
    pub windows_requested: usize,
    pub seed: u64,
    pub num_simulations: usize,
    /// Windows the candidate could not answer (answered by the GBM, as the miner would).
    pub candidate_fallbacks: usize,
    pub champion_fallbacks: usize,
    /// When no trained model took part (a classical candidate against a classical champion or
    /// the GBM): windows were drawn from the latest this many days of each file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recent_days: Option<f64>,
}

/// How to evaluate.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// Windows to draw from the walk-forward period.
    pub windows: usize,
    pub seed: u64,
    /// Paths per window (the validator asks for 1000).
    pub num_simulations: usize,
    pub params: GateParams,
    pub config: Sn50Config,
    /// Where windows come from when no trained model bounds them (classical against classical
    /// or the GBM): the latest this many days of the asset's bars.
    pub recent_days: f64,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            windows: 40,
            seed: 0,
            num_simulations: sn50::constants::NUM_SIMULATIONS,
            params: GateParams::default(),
            config: Sn50Config::default(),
            recent_days: 90.0,
        }
    }
}

/// The bars the candidates are scored on.
#[derive(Debug, Clone)]
pub struct EvalData {
    /// A data directory on this machine (a fetched dataset, or the operator's).
    pub dir: PathBuf,
    /// What to record: `dataset ds-...` or `data directory`.
    pub label: String,
}

/// A promotion request.
#[derive(Debug, Clone)]
pub struct PromoteRequest {
    /// The published model, `run/name`.
    pub candidate: String,
    pub asset: String,
    /// `None`: the prompt of the candidate's timeframe.
    pub prompt: Option<PromptKind>,
    pub force: bool,
    pub by: String,
}

impl ChampionError {
    /// Worth trying again later (the store did not answer, or a fetch from it failed).
    pub fn is_transient(&self) -> bool {
        match self {
            ChampionError::Store(StoreError::Unavailable { .. }) => true,
            ChampionError::Artifact(e) => e.is_transient(),
            ChampionError::Dataset(e) => e.is_transient(),
            _ => false,
        }
    }
}

/// Runs a `promote` job's request ([`jobs::models::Promote`]; also what `synth-city models
/// promote` builds): the gate's parameters (its defaults where the request names none), the
/// bars (the named dataset fetched from `store`, else `data_dir`), then [`promote`] for each
/// asset in turn. Returns the decisions, all in the store.
pub async fn promote_request(
    store: &dyn Store,
    cache: &ArtifactCache,
    data_dir: &Path,
    req: &jobs::models::Promote,
) -> Result<Vec<Decision>, ChampionError> {
    let d = GateParams::default();
    let params = GateParams {
        margin: req.margin.unwrap_or(d.margin),
        alpha: req.alpha.unwrap_or(d.alpha),
        min_windows: req.min_windows.unwrap_or(d.min_windows),
        lag: req.lag.or(d.lag),
    };
    params.check()?;
    let prompt = req
        .prompt
        .as_deref()
        .map(|p| {
            p.parse::<PromptKind>().map_err(|_| {
                ChampionError::Input(format!("prompt {p:?}: use low (24 h) or high (1 h)"))
            })
        })
        .transpose()?;
    let data = match &req.dataset {
        Some(id) => {
            let (dir, m) = crate::datasets::fetch(store, cache, id).await?;
            EvalData {
                dir,
                label: format!("dataset {}", m.id),
            }
        }
        None => EvalData {
            dir: data_dir.to_path_buf(),
            label: "data directory".into(),
        },
    };
    let d = EvalOptions::default();
    let opts = EvalOptions {
        windows: req.windows.unwrap_or(d.windows),
        seed: req.seed.unwrap_or(d.seed),
        num_simulations: req.paths.unwrap_or(d.num_simulations),
        params,
        ..d
    };
    let by = req.requested_by.as_deref().unwrap_or("operator");
    let mut out = Vec::new();
    for asset in &expand_assets(store, req, prompt, &opts, &data.dir).await? {
        let one = PromoteRequest {
            candidate: req.candidate.clone(),
            asset: asset.trim().to_string(),
            prompt,
            force: req.force,
            by: by.to_string(),
        };
        out.push(promote(store, cache, &one, &data, &opts).await?);
    }
    Ok(out)
}

/// The request's assets; `all` alone is every asset the candidate was trained on (a classical
/// model: every asset of its prompt) that has bars for its prompt in `data_dir` (the others
/// are logged and left out; none at all is an error naming the directory's gap).
async fn expand_assets(
    store: &dyn Store,
    req: &jobs::models::Promote,
    prompt: Option<PromptKind>,
    opts: &EvalOptions,
    data_dir: &Path,
) -> Result<Vec<String>, ChampionError> {
    if !matches!(req.assets.as_slice(), [a] if a.trim() == "all") {
        return Ok(req.assets.clone());
    }
    let (assets, prompt) = match Contender::read(store, &req.candidate).await? {
        Contender::Published(c) | Contender::Mix(c, _) => {
            let spec = &c.manifest.record.spec;
            (
                spec.data.assets.clone(),
                PromptKind::for_timeframe(spec.data.timeframe),
            )
        }
        Contender::Classical(name) => match prompt {
            Some(p) => (opts.config.prompt(p).assets.clone(), p),
            None => return Err(no_prompt(&name)),
        },
    };
    let step = opts.config.prompt(prompt).time_increment as i64;
    let (mut with_bars, mut missing) = (Vec::new(), Vec::new());
    for a in assets {
        match sn50::data::asset_file_for_step(data_dir, &a, step) {
            Ok(_) => with_bars.push(a),
            Err(e) => missing.push((a, e)),
        }
    }
    for (a, e) in &missing {
        tracing::warn!("promote --asset all: {a} left out: {e}");
    }
    if with_bars.is_empty() {
        return Err(ChampionError::Input(format!(
            "--asset all: no asset has bars for the {} prompt in the evaluation data: {}",
            prompt.label(),
            missing
                .first()
                .map_or(String::new(), |(_, e)| e.to_string())
        )));
    }
    Ok(with_bars)
}

/// What a `promote` job answers per decision: enough to read the verdict (the whole decision,
/// with every window's score, is in the store under `key`).
pub fn summary(d: &Decision) -> serde_json::Value {
    let tests: Vec<serde_json::Value> = d
        .gate
        .iter()
        .flat_map(|g| g.vs_champion.iter().chain(g.vs_gbm.iter()))
        .map(|c| {
            serde_json::json!({"against": c.against, "ratio": c.ratio,
                "p_value": c.test.map(|t| t.p_value)})
        })
        .collect();
    serde_json::json!({
        "asset": d.asset, "prompt": d.prompt.label(), "action": d.action, "forced": d.forced,
        "candidate": d.candidate, "by": d.by, "reason": d.reason, "key": d.key,
        "windows": d.gate.as_ref().map(|g| g.windows.len()), "tests": tests,
        "champion": d.champion.as_ref().map(|c| &c.candidate),
    })
}

/// The key of the champion pointer of a pair.
pub fn champion_key(prompt: PromptKind, asset: &str) -> String {
    format!("{CHAMPIONS_PREFIX}{}/{asset}.json", prompt.label())
}

/// The key prefix of a pair's decisions.
pub fn decisions_prefix(prompt: PromptKind, asset: &str) -> String {
    format!("{DECISIONS_PREFIX}{}/{asset}/", prompt.label())
}

/// Checks `asset` is an SN50 asset.
pub fn check_asset(asset: &str) -> Result<(), ChampionError> {
    if sn50::constants::asset_info(asset).is_none() {
        let known: Vec<&str> = sn50::constants::ASSETS.iter().map(|a| a.symbol).collect();
        return Err(ChampionError::Input(format!(
            "{asset:?} is not an SN50 asset: one of {}",
            known.join(", ")
        )));
    }
    Ok(())
}

/// A published model and where its record is.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// `run/name`.
    pub id: String,
    pub manifest: Manifest,
    pub model_dir: String,
}

/// Reads the published model `run/name` (`models/{run}/{name}/record.json`).
pub async fn load_candidate(store: &dyn Store, id: &str) -> Result<Candidate, ChampionError> {
    let Some((run, name)) = id.split_once('/') else {
        return Err(ChampionError::Input(format!(
            "{id:?}: name a published model as RUN/NAME (synth-city history runs lists runs; models/RUN/NAME/ in the store)"
        )));
    };
    check_run_id(run)?;
    let model_dir = model_prefix(run, &safe_name(name));
    let key = format!("{model_dir}record.json");
    let manifest: Manifest =
        store
            .get_json(&key)
            .await?
            .ok_or_else(|| ChampionError::NotPublished {
                candidate: id.to_string(),
                key: key.clone(),
                store: store.describe(),
            })?;
    if manifest.record.artifact.is_none() {
        return Err(ChampionError::NoArtifact {
            candidate: id.to_string(),
        });
    }
    Ok(Candidate {
        id: id.to_string(),
        manifest,
        model_dir,
    })
}

/// The end of `c`'s training data for `asset` (unix seconds; windows starting then are unseen):
/// the last bar of its pinned dataset's file (or of its manifest's data range) plus one step,
/// less the spec's holdout days.
pub async fn trained_until(
    store: &dyn Store,
    c: &Candidate,
    asset: &str,
) -> Result<i64, ChampionError> {
    let spec = &c.manifest.record.spec;
    let tf = spec.data.timeframe;
    let holdout = (spec.data.holdout_days * 86_400.0) as i64;
    let last = match &spec.data.dataset {
        Some(id) => crate::datasets::resolve(store, id)
            .await?
            .file_for(asset, tf.as_str())
            .map(|f| f.last),
        None => None,
    };
    let last = last.or_else(|| {
        c.manifest.data.as_array()?.iter().find_map(|row| {
            if row["asset"].as_str()? != asset {
                return None;
            }
            let s = row["last_utc"].as_str()?;
            chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M")
                .ok()
                .map(|d| d.and_utc().timestamp())
        })
    });
    let last = last.ok_or_else(|| ChampionError::NoTrainingRange {
        candidate: c.id.clone(),
        asset: asset.to_string(),
    })?;
    Ok(last + tf.step_secs() - holdout)
}

/// The champion of a pair, if any.
pub async fn current(
    store: &dyn Store,
    prompt: PromptKind,
    asset: &str,
) -> Result<Option<Champion>, ChampionError> {
    Ok(store.get_json(&champion_key(prompt, asset)).await?)
}

/// Every champion in the store, by prompt then asset.
pub async fn list(store: &dyn Store) -> Result<Vec<Champion>, ChampionError> {
    let mut out = Vec::new();
    for key in store.list(CHAMPIONS_PREFIX).await? {
        if key.ends_with(".json") {
            if let Some(c) = store.get_json::<Champion>(&key).await? {
                out.push(c);
            }
        }
    }
    Ok(out)
}

/// The decisions of one pair (or every pair: `None`), oldest first.
pub async fn history(
    store: &dyn Store,
    pair: Option<(PromptKind, &str)>,
) -> Result<Vec<Decision>, ChampionError> {
    let prefix = pair.map_or_else(
        || DECISIONS_PREFIX.to_string(),
        |(p, a)| decisions_prefix(p, a),
    );
    let mut out = Vec::new();
    for key in store.list(&prefix).await? {
        if key.ends_with(".json") {
            if let Some(d) = store.get_json::<Decision>(&key).await? {
                out.push(d);
            }
        }
    }
    out.sort_by(|a, b| (a.at_ms, &a.key).cmp(&(b.at_ms, &b.key)));
    Ok(out)
}

/// The newest `limit` decisions, newest first, of the pairs `prompt` and `asset` select (`None`:
/// any). The keys name the pair and start with the decision's time, so only the `limit` files
/// returned are read (what the dashboard and the bridge ask on every refresh).
pub async fn recent(
    store: &dyn Store,
    prompt: Option<PromptKind>,
    asset: Option<&str>,
    limit: usize,
) -> Result<Vec<Decision>, ChampionError> {
    let prefix = match (prompt, asset) {
        (Some(p), Some(a)) => decisions_prefix(p, a),
        (Some(p), None) => format!("{DECISIONS_PREFIX}{}/", p.label()),
        _ => DECISIONS_PREFIX.to_string(),
    };
    // `{prefix}{prompt}/{ASSET}/{ms:013}-{action}-{rand}.json`
    let mut keys: Vec<(String, String)> = store
        .list(&prefix)
        .await?
        .into_iter()
        .filter(|k| k.ends_with(".json"))
        .filter_map(|k| {
            let rest = k.strip_prefix(DECISIONS_PREFIX)?;
            let mut parts = rest.splitn(3, '/');
            let (_, a, file) = (parts.next()?, parts.next()?, parts.next()?);
            if asset.is_some_and(|want| want != a) {
                return None;
            }
            Some((file.to_string(), k))
        })
        .collect();
    keys.sort_unstable_by(|x, y| y.cmp(x));
    let mut out = Vec::new();
    for (_, key) in keys.into_iter().take(limit) {
        if let Some(d) = store.get_json::<Decision>(&key).await? {
            out.push(d);
        }
    }
    Ok(out)
}

/// One decision by key.
pub async fn decision(store: &dyn Store, key: &str) -> Result<Option<Decision>, ChampionError> {
    Ok(store.get_json(key).await?)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn new_key(prompt: PromptKind, asset: &str, at_ms: i64, action: Action) -> String {
    let action = match action {
        Action::Promote => "promote",
        Action::Refuse => "refuse",
        Action::Rollback => "rollback",
    };
    format!(
        "{}{at_ms:013}-{action}-{:08x}.json",
        decisions_prefix(prompt, asset),
        rand::random::<u32>()
    )
}

/// Loads a checkpoint folder as a forecaster on the CPU.
pub fn load_checkpoint(dir: &Path, what: &str) -> Result<Box<dyn Forecaster>, ChampionError> {
    trainer::zoo::forecaster::load_forecaster(&dir.display().to_string(), &trainer::Device::Cpu)
        .map_err(|e| ChampionError::Load {
            what: what.to_string(),
            error: e.to_string(),
        })
}

/// Scores `candidate`, `champion` (when there is one) and the GBM with the exact SN50 scoring
/// of `score backtest` on the same windows of `asset`'s bars in `data_dir` that start at or
/// after `not_before` (0 or less: in the latest `opts.recent_days` of the bars, as when no
/// trained model takes part), and hands the scores to the gate. No window at all is a refusal
/// for lack of evidence, like too few.
#[allow(clippy::too_many_arguments)]
pub fn evaluate(
    candidate: (&str, &dyn Forecaster),
    champion: Option<(&str, &dyn Forecaster)>,
    asset: &str,
    prompt: PromptKind,
    data_dir: &Path,
    not_before: i64,
    opts: &EvalOptions,
) -> Result<(GateDecision, usize, usize), ChampionError> {
    let gbm = Gbm::new(opts.config.clone());
    let bt = BacktestOptions {
        prompt,
        assets: vec![asset.to_string()],
        windows: opts.windows,
        seed: opts.seed,
        num_simulations: opts.num_simulations,
        weights: WeightTable::Validator,
        last_days: (not_before <= 0).then_some(opts.recent_days),
        skip_last_days: 0.0,
        not_before: (not_before > 0).then_some(not_before),
    };
    let horizon_secs = opts.config.prompt(prompt).time_length as i64;
    let run =
        |name: &str, f: &dyn Forecaster| match run_backtest(f, &gbm, data_dir, &bt, &opts.config) {
            Ok(mut r) => Ok(r.assets.remove(asset)),
            Err(BacktestError::NoWindows { .. }) => Ok(None),
            Err(error) => Err(ChampionError::Backtest {
                candidate: name.to_string(),
                asset: asset.to_string(),
                error: Box::new(error),
            }),
        };
    let cand = run(candidate.0, candidate.1)?;
    let champ = match champion {
        Some((name, f)) => Some((name, run(name, f)?)),
        None => None,
    };
    let scores = |r: &Option<sn50::backtest::AssetResult>, pick: fn(&(f64, f64)) -> f64| {
        r.as_ref()
            .map(|r| r.head_to_head.iter().map(pick).collect::<Vec<f64>>())
            .unwrap_or_default()
    };
    let windows = cand.as_ref().map(|r| r.starts.clone()).unwrap_or_default();
    if let Some((_, Some(c))) = &champ {
        if c.starts != windows {
            return Err(ChampionError::Input(
                "the champion was scored on other windows than the candidate (the bars changed while they were scored): try again".into(),
            ));
        }
    }
    let input = GateInput {
        candidate: candidate.0.to_string(),
        champion: champ.as_ref().map(|(n, _)| n.to_string()),
        asset: asset.to_string(),
        prompt: prompt.label().to_string(),
        windows,
        horizon_secs,
        candidate_scores: scores(&cand, |s| s.0),
        champion_scores: champ.as_ref().map(|(_, r)| scores(r, |s| s.0)),
        gbm_scores: scores(&cand, |s| s.1),
    };
    let fallbacks =
        |r: &Option<sn50::backtest::AssetResult>| r.as_ref().map_or(0, |r| r.fallbacks.len());
    let champion_fallbacks = champ.as_ref().map_or(0, |(_, r)| fallbacks(r));
    Ok((
        gate::decide(input, opts.params)?,
        fallbacks(&cand),
        champion_fallbacks,
    ))
}

/// Writes a decision, then (when it changes what serves) the pointer.
async fn commit(store: &dyn Store, d: &Decision) -> Result<(), ChampionError> {
    store.put_json(&d.key, d).await?;
    let key = champion_key(d.prompt, &d.asset);
    match (d.action, &d.champion) {
        (Action::Refuse, _) => {}
        (_, Some(c)) => {
            store.put_json(&key, c).await?;
        }
        (_, None) => store.delete(&key).await?,
    }
    Ok(())
}

/// Evaluates the published `req.candidate` for (`req.asset`, its prompt) against the pair's
/// champion and the GBM on the bars of `data`, and promotes it when the gate passes (or
/// `req.force`). Returns the decision, which is in the store either way.
pub async fn promote(
    store: &dyn Store,
    cache: &ArtifactCache,
    req: &PromoteRequest,
    data: &EvalData,
    opts: &EvalOptions,
) -> Result<Decision, ChampionError> {
    check_asset(&req.asset)?;
    let cand = Contender::read(store, &req.candidate).await?;
    let prompt = match &cand {
        Contender::Published(c) | Contender::Mix(c, _) => {
            let spec = &c.manifest.record.spec;
            let tf: Timeframe = spec.data.timeframe;
            let prompt = PromptKind::for_timeframe(tf);
            if let Some(p) = req.prompt.filter(|p| *p != prompt) {
                return Err(ChampionError::Input(format!(
                    "{} simulates {tf} steps, which answer the {} prompt, not {}",
                    c.id,
                    prompt.label(),
                    p.label()
                )));
            }
            if !spec.data.assets.iter().any(|a| a == &req.asset) {
                return Err(ChampionError::Input(format!(
                    "{} was not trained on {} (it was on {}): promote it for one of those",
                    c.id,
                    req.asset,
                    spec.data.assets.join(", ")
                )));
            }
            prompt
        }
        Contender::Classical(name) => req.prompt.ok_or_else(|| no_prompt(name))?,
    };
    let previous = current(store, prompt, &req.asset).await?;
    let cand_until = cand.trained_until(store, &req.asset).await?;
    let not_before = cand_until.max(previous.as_ref().map_or(i64::MIN, |c| c.trained_until));
    let cand_f: Arc<dyn Forecaster> = Arc::from(cand.forecaster(store, cache, opts).await?);
    let champ_f: Option<(String, Arc<dyn Forecaster>)> = match &previous {
        Some(c) => Some((
            c.candidate.clone(),
            Arc::from(champion_forecaster(store, cache, c, opts).await?),
        )),
        None => None,
    };
    let (asset, id, dir, o) = (req.asset.clone(), cand.id(), data.dir.clone(), opts.clone());
    let (gate, cand_fb, champ_fb) = tokio::task::spawn_blocking(move || {
        evaluate(
            (&id, cand_f.as_ref()),
            champ_f.as_ref().map(|(n, f)| (n.as_str(), f.as_ref())),
            &asset,
            prompt,
            &dir,
            not_before,
            &o,
        )
    })
    .await
    .map_err(|e| ChampionError::Join(e.to_string()))??;
    let at_ms = now_ms();
    let promoted = gate.verdict == Verdict::Promote || req.force;
    let action = if promoted {
        Action::Promote
    } else {
        Action::Refuse
    };
    let key = new_key(prompt, &req.asset, at_ms, action);
    let champion = promoted.then(|| {
        let mut c = cand.champion(&req.asset, prompt, &key, cand_until);
        c.promoted_at = at_ms / 1000;
        c.forced = req.force && gate.verdict != Verdict::Promote;
        c
    });
    let reason = if promoted && gate.verdict != Verdict::Promote {
        format!(
            "forced by {} although the gate refused: {}",
            req.by, gate.reason
        )
    } else {
        gate.reason.clone()
    };
    let d = Decision {
        version: VERSION,
        key,
        action,
        asset: req.asset.clone(),
        prompt,
        at_ms,
        by: req.by.clone(),
        candidate: Some(cand.id()),
        forced: champion.as_ref().is_some_and(|c| c.forced),
        evaluation: Some(EvaluationInfo {
            data: data.label.clone(),
            not_before,
            windows_requested: opts.windows,
            seed: opts.seed,
            num_simulations: opts.num_simulations,
            candidate_fallbacks: cand_fb,
            champion_fallbacks: champ_fb,
            recent_days: (not_before <= 0).then_some(opts.recent_days),
        }),
        gate: Some(gate),
        reason,
        champion: if promoted { champion } else { previous.clone() },
        previous,
    };
    commit(store, &d).await?;
    Ok(d)
}

/// A classical champion's `trained_until`: it fits on each request's own history, so every
/// window is unseen.
pub const CLASSICAL_TRAINED_UNTIL: i64 = 0;

/// What a promotion puts forward: a published checkpoint, a classical model by name, or the
/// two answering together (half the paths each, [`sn50::ensemble`]).
#[derive(Debug, Clone)]
pub enum Contender {
    Published(Box<Candidate>),
    Classical(String),
    Mix(Box<Candidate>, String),
}

impl Contender {
    /// `classical:NAME` (a name of [`sn50::forecast::MODELS`] other than `gbm`, which is what
    /// serves without a champion), `mix:RUN/NAME,NAME` (a published model and a classical one),
    /// else a published model `RUN/NAME` read from the store.
    pub async fn read(store: &dyn Store, id: &str) -> Result<Contender, ChampionError> {
        if let Some(members) = sn50::ensemble::member_names(id) {
            let bad = || {
                ChampionError::Input(format!(
                    "{id:?}: an ensemble candidate is {}RUN/NAME,CLASSICAL (a published model and a classical one, e.g. {}run-x/m,garch-tod-t)",
                    sn50::ensemble::PREFIX,
                    sn50::ensemble::PREFIX
                ))
            };
            let [model, classical] = members.as_slice() else {
                return Err(bad());
            };
            let classical = sn50::forecast::classical_name(classical).unwrap_or(classical);
            if !model.contains('/') {
                return Err(bad());
            }
            let name = check_classical(classical, id)?;
            return Ok(Contender::Mix(
                Box::new(load_candidate(store, model).await?),
                name,
            ));
        }
        let Some(name) = sn50::forecast::classical_name(id) else {
            return Ok(Contender::Published(Box::new(
                load_candidate(store, id).await?,
            )));
        };
        Ok(Contender::Classical(check_classical(name, id)?))
    }

    /// As decisions and champions name it: `RUN/NAME`, `classical:NAME` or
    /// `mix:RUN/NAME,NAME`.
    pub fn id(&self) -> String {
        match self {
            Contender::Published(c) => c.id.clone(),
            Contender::Classical(name) => format!("{}{name}", sn50::forecast::CLASSICAL_PREFIX),
            Contender::Mix(c, name) => format!("{}{},{name}", sn50::ensemble::PREFIX, c.id),
        }
    }

    /// The end of its training data for `asset` ([`trained_until`]; a classical model's:
    /// [`CLASSICAL_TRAINED_UNTIL`]).
    pub async fn trained_until(
        &self,
        store: &dyn Store,
        asset: &str,
    ) -> Result<i64, ChampionError> {
        match self {
            Contender::Published(c) | Contender::Mix(c, _) => trained_until(store, c, asset).await,
            Contender::Classical(_) => Ok(CLASSICAL_TRAINED_UNTIL),
        }
    }

    /// The forecaster it answers with (a checkpoint fetched by content and loaded on the CPU).
    async fn forecaster(
        &self,
        store: &dyn Store,
        cache: &ArtifactCache,
        opts: &EvalOptions,
    ) -> Result<Box<dyn Forecaster>, ChampionError> {
        let published = |c: &Candidate| {
            let c = c.clone();
            async move {
                let dir =
                    crate::artifacts::local_checkpoint(store, cache, &c.manifest.record).await?;
                load_checkpoint(&dir, &format!("candidate {}", c.id))
            }
        };
        match self {
            Contender::Published(c) => published(c).await,
            Contender::Classical(name) => classical_forecaster(name, opts),
            Contender::Mix(c, name) => mix(published(c).await?, classical_forecaster(name, opts)?),
        }
    }

    /// The champion record it becomes for (`asset`, `prompt`) by decision `key` (promotion
    /// time and `forced` left for the caller).
    fn champion(&self, asset: &str, prompt: PromptKind, key: &str, trained_until: i64) -> Champion {
        let (run_id, name, artifact, classical, model_dir) = match self {
            Contender::Published(c) => (
                c.manifest.run_id.clone(),
                c.manifest.record.name.clone(),
                c.manifest.record.artifact.clone(),
                None,
                c.model_dir.clone(),
            ),
            Contender::Classical(name) => (
                String::new(),
                name.clone(),
                None,
                Some(name.clone()),
                String::new(),
            ),
            Contender::Mix(c, name) => (
                c.manifest.run_id.clone(),
                c.manifest.record.name.clone(),
                c.manifest.record.artifact.clone(),
                Some(name.clone()),
                c.model_dir.clone(),
            ),
        };
        Champion {
            version: VERSION,
            asset: asset.to_string(),
            prompt,
            candidate: self.id(),
            run_id,
            name,
            artifact,
            classical,
            model_dir,
            decision: key.to_string(),
            promoted_at: 0,
            forced: false,
            trained_until,
            restored_by: None,
        }
    }
}

/// `name` when it is a classical model other than the GBM, else what the names are.
fn check_classical(name: &str, id: &str) -> Result<String, ChampionError> {
    if name == "gbm" || !sn50::forecast::is_model_name(name) {
        let known: Vec<&str> = sn50::forecast::MODELS
            .iter()
            .copied()
            .filter(|m| *m != "gbm")
            .collect();
        return Err(ChampionError::Input(format!(
                "{id:?} is no classical model: name one of {} after {} (the GBM serves a pair with no champion already)",
                known.join(", "),
                sn50::forecast::CLASSICAL_PREFIX
            )));
    }
    Ok(name.to_string())
}

/// A checkpoint and a classical model answering together, half the paths each.
fn mix(
    model: Box<dyn Forecaster>,
    classical: Box<dyn Forecaster>,
) -> Result<Box<dyn Forecaster>, ChampionError> {
    sn50::ensemble::Ensemble::new(vec![Arc::from(model), Arc::from(classical)])
        .map(|e| Box::new(e) as Box<dyn Forecaster>)
        .map_err(|e| ChampionError::Load {
            what: "an ensemble".into(),
            error: e.to_string(),
        })
}

fn no_prompt(name: &str) -> ChampionError {
    ChampionError::Input(format!(
        "{}{name} answers either prompt: name one (--prompt low for 24 h, high for 1 h)",
        sn50::forecast::CLASSICAL_PREFIX
    ))
}

fn classical_forecaster(
    name: &str,
    opts: &EvalOptions,
) -> Result<Box<dyn Forecaster>, ChampionError> {
    sn50::forecast::model_by_name(name, &opts.config).map_err(|e| ChampionError::Load {
        what: format!("{}{name}", sn50::forecast::CLASSICAL_PREFIX),
        error: e.to_string(),
    })
}

/// The forecaster a champion answers with: its checkpoint fetched by content (loaded on the
/// CPU), its classical model, or the two together when it names both.
pub async fn champion_forecaster(
    store: &dyn Store,
    cache: &ArtifactCache,
    c: &Champion,
    opts: &EvalOptions,
) -> Result<Box<dyn Forecaster>, ChampionError> {
    match (&c.artifact, &c.classical) {
        (Some(a), classical) => {
            let dir = cache.fetch(store, a).await?;
            let model = load_checkpoint(&dir, &format!("champion {}", c.candidate))?;
            match classical {
                Some(name) => mix(model, classical_forecaster(name, opts)?),
                None => Ok(model),
            }
        }
        (None, Some(name)) => classical_forecaster(name, opts),
        (None, None) => Err(ChampionError::Input(format!(
            "{}: the champion {} names neither a checkpoint nor a classical model: roll it back or promote another",
            champion_key(c.prompt, &c.asset),
            c.candidate
        ))),
    }
}

/// Puts back the champion the pair's current one replaced (none: the GBM serves again), and
/// records it. Rolling back again goes one further back.
pub async fn rollback(
    store: &dyn Store,
    prompt: PromptKind,
    asset: &str,
    by: &str,
) -> Result<Decision, ChampionError> {
    let cur = serving(store, prompt, asset).await?;
    let installed = decision(store, &cur.decision).await?.ok_or_else(|| {
        ChampionError::Input(format!(
            "{}: the decision that made {} champion ({}) is not in {}: the history is incomplete; promote a model with --force instead",
            champion_key(prompt, asset),
            cur.candidate,
            cur.decision,
            store.describe()
        ))
    })?;
    let what = format!("rolled back {}", cur.candidate);
    let d = rollback_decision(prompt, asset, by, cur, installed.previous, None, &what);
    commit(store, &d).await?;
    Ok(d)
}

/// The pair's champion, or the error that there is none to roll back or demote.
async fn serving(
    store: &dyn Store,
    prompt: PromptKind,
    asset: &str,
) -> Result<Champion, ChampionError> {
    check_asset(asset)?;
    current(store, prompt, asset)
        .await?
        .ok_or_else(|| ChampionError::NothingToRollBack {
            asset: asset.to_string(),
            prompt: prompt.label().to_string(),
        })
}

/// The decision that takes `cur` out of service and puts `previous` (the champion it
/// replaced; `None`: the GBM) back: a rollback by `by`, or a demotion when it carries the
/// gate's evidence. `what` says what happened to `cur` ("rolled back X", "demoted X: why").
fn rollback_decision(
    prompt: PromptKind,
    asset: &str,
    by: &str,
    cur: Champion,
    previous: Option<Champion>,
    evidence: Option<(GateDecision, EvaluationInfo)>,
    what: &str,
) -> Decision {
    let at_ms = now_ms();
    let key = new_key(prompt, asset, at_ms, Action::Rollback);
    let restored = previous.map(|mut c| {
        c.restored_by = Some(key.clone());
        c
    });
    let reason = format!(
        "{by} {what}; {} serves again",
        restored
            .as_ref()
            .map_or("the GBM".to_string(), |c| c.candidate.clone())
    );
    let (gate, evaluation) = evidence.unzip();
    Decision {
        version: VERSION,
        key,
        action: Action::Rollback,
        asset: asset.to_string(),
        prompt,
        at_ms,
        by: by.to_string(),
        candidate: Some(cur.candidate.clone()),
        forced: false,
        gate,
        evaluation,
        reason,
        previous: Some(cur),
        champion: restored,
    }
}

/// Every published candidate with a checkpoint in the store (`models/{run}/{name}/record.json`),
/// newest record first. Publications older than artifacts are left out (nothing can fetch them
/// by content).
pub async fn published(store: &dyn Store) -> Result<Vec<Candidate>, ChampionError> {
    let mut out = Vec::new();
    for key in store.list("models/").await? {
        let Some(prefix) = key.strip_suffix("record.json") else {
            continue;
        };
        if key.starts_with(CHAMPIONS_PREFIX) || key.starts_with(DECISIONS_PREFIX) {
            continue;
        }
        let Some(m) = store.get_json::<Manifest>(&key).await? else {
            continue;
        };
        if m.record.artifact.is_none() {
            continue;
        }
        out.push(Candidate {
            id: format!("{}/{}", m.run_id, m.record.name),
            model_dir: prefix.to_string(),
            manifest: m,
        });
    }
    out.sort_by(|a, b| {
        (b.manifest.record.recorded_at, &b.id).cmp(&(a.manifest.record.recorded_at, &a.id))
    });
    Ok(out)
}

/// Promotes `candidate` for (`asset`, `prompt`) on evidence gathered elsewhere (the shadow
/// scorer's settled live prompts): `gate` is the gate's decision on that evidence and must say
/// promote; `evaluation` says what the evidence was. Recorded like any promotion (decision
/// first, then the pointer), `by` naming who decided (`shadow-policy`).
pub async fn promote_on_evidence(
    store: &dyn Store,
    candidate: &str,
    asset: &str,
    prompt: PromptKind,
    gate: GateDecision,
    evaluation: EvaluationInfo,
    by: &str,
) -> Result<Decision, ChampionError> {
    check_asset(asset)?;
    if gate.verdict != Verdict::Promote {
        return Err(ChampionError::Input(format!(
            "{candidate}: the gate refused it on this evidence ({}): nothing to promote",
            gate.reason
        )));
    }
    let cand = Contender::read(store, candidate).await?;
    let previous = current(store, prompt, asset).await?;
    let trained = cand.trained_until(store, asset).await?;
    let at_ms = now_ms();
    let key = new_key(prompt, asset, at_ms, Action::Promote);
    let mut champion = cand.champion(asset, prompt, &key, trained);
    champion.promoted_at = at_ms / 1000;
    let d = Decision {
        version: VERSION,
        key,
        action: Action::Promote,
        asset: asset.to_string(),
        prompt,
        at_ms,
        by: by.to_string(),
        candidate: Some(cand.id()),
        forced: false,
        reason: format!("{by}: {}", gate.reason),
        gate: Some(gate),
        evaluation: Some(evaluation),
        previous,
        champion: Some(champion),
    };
    commit(store, &d).await?;
    Ok(d)
}

/// Demotes the pair's champion on evidence gathered elsewhere (the GBM beat it on the shadow
/// scorer's settled live prompts): like [`rollback`] (the champion it replaced serves again,
/// the GBM when there was none), recorded with `by`, the gate's decision on the evidence and
/// `reason`.
pub async fn demote(
    store: &dyn Store,
    prompt: PromptKind,
    asset: &str,
    gate: GateDecision,
    evaluation: EvaluationInfo,
    by: &str,
    reason: &str,
) -> Result<Decision, ChampionError> {
    let cur = serving(store, prompt, asset).await?;
    let previous = decision(store, &cur.decision)
        .await?
        .and_then(|installed| installed.previous);
    let what = format!("demoted {}: {reason}", cur.candidate);
    let d = rollback_decision(
        prompt,
        asset,
        by,
        cur,
        previous,
        Some((gate, evaluation)),
        &what,
    );
    commit(store, &d).await?;
    Ok(d)
}
