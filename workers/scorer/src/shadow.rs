//! The shadow scorer's job handlers (`shadow-prompt`, `shadow-score`; the arithmetic is in
//! `sn50::shadow`): record the prompts a validator would send to the served model,
//! then score them with the validator's CRPS once their window has passed, beside the GBM.
//! A cron schedule drives both (docs/sn50.md); `synth-city score shadow` reads the results.
//!
//! The model of a prompt is, by default (`champions`), what the miner serves for its (asset,
//! prompt) pair: the pair's champion (`publisher::champions`), the GBM where none, with the
//! pair's challengers ([`crate::policy::challengers`]) recorded beside it and scored on the same
//! request; or the production model of its timeframe in the store (`latest`), `gbm`, or a
//! checkpoint in the store by artifact reference. After scoring, `shadow-score` runs the
//! shadow policy ([`crate::policy::run`]) over the settled evidence. A record names the model by what
//! any machine sharing the store can resolve — the artifact reference (`sha256:<hex>:<size>`)
//! of the checkpoint, or, for a publication older than artifacts, its key prefix
//! (`models/<run>/<name>/`) — never by a path, so a later publication does not change what an
//! older prompt is scored as, and any scorer can score it: artifacts are fetched into the
//! worker's cache, old publications copied from a bucket into its store directory. The store,
//! the bars and the cache are the worker's own ([`WorkerDirs`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use jobs::shadow::{ShadowPrompt, ShadowScore};
use jobs::{ArtifactRef, JobContext, JobError, JobHandler, Registry};
use publisher::artifacts::{ArtifactCache, ArtifactError};
use publisher::production;
use publisher::store::{Store, StoreExt};
use serde_json::{json, Value};
use sn50::backtest::{hash_name, MAX_SPOT_AGE_SECONDS, REQUEST_LEAD_SECONDS};
use sn50::constants::{PromptKind, Sn50Config};
use sn50::data::{asset_file_for_step, Bars, DataError};
use sn50::forecast::{Forecaster, Gbm};
use sn50::shadow::{self, ContenderResult, ShadowRecord, ShadowResult};
use trainer::WorkerDirs;

use crate::policy::{self, PolicyError, ShadowSettings};

/// Registers the two shadow-scoring handlers, on the worker's directories.
pub fn register(registry: &mut Registry, dirs: &WorkerDirs) {
    registry
        .register(Recorder { dirs: dirs.clone() })
        .register(Scorer { dirs: dirs.clone() });
}

fn permanent(e: impl std::fmt::Display) -> JobError {
    JobError::permanent(e)
}

/// The store of `store_dir` (a bucket when `HIPPIUS_ENDPOINT` is set).
fn open_store(store_dir: &Path) -> Result<Arc<dyn Store>, JobError> {
    publisher::store::open(store_dir).map_err(permanent)
}

fn policy_failed(e: PolicyError) -> JobError {
    if e.is_transient() {
        JobError::retry(e)
    } else {
        JobError::permanent(e)
    }
}

fn artifact_failed(e: ArtifactError) -> JobError {
    if e.is_transient() {
        JobError::retry(e)
    } else {
        JobError::permanent(e)
    }
}

/// What a record names for `kind` prompts under the payload's `model`: `gbm`, an artifact
/// reference (checked to be fetchable), or for `latest` the production model's artifact (its
/// key prefix for a publication older than artifacts; `gbm` when nothing is published).
async fn resolve_model(
    model: &str,
    store: &dyn Store,
    cache: &ArtifactCache,
    kind: PromptKind,
) -> Result<String, JobError> {
    match model {
        "gbm" => return Ok("gbm".into()),
        "latest" => {}
        reference => {
            let r: ArtifactRef = reference.parse().map_err(permanent)?;
            cache.fetch(store, &r).await.map_err(artifact_failed)?;
            return Ok(r.to_string());
        }
    }
    let Some(p) = production::resolve(store, kind.timeframe())
        .await
        .map_err(JobError::retry)?
    else {
        return Ok("gbm".into());
    };
    let manifest: Option<publisher::publish::Manifest> = store
        .get_json(&format!("{}record.json", p.model_dir))
        .await
        .map_err(JobError::retry)?;
    Ok(match manifest.and_then(|m| m.record.artifact) {
        Some(r) => r.to_string(),
        None => p.model_dir,
    })
}

/// The local folder (or `gbm`) of each model the records name: artifacts fetched into the
/// cache, a publication's key prefix taken from the store directory (copied there from a
/// bucket first), and anything else (a classical model's `classical:NAME`, a path an older
/// build recorded) as it is; an ensemble `mix:A,B` member by member. A model that cannot be
/// had is an error for its records; a store that does not answer fails the job, to be retried.
async fn local_models(
    models: BTreeSet<String>,
    dirs: &WorkerDirs,
    store: &dyn Store,
) -> Result<HashMap<String, Result<String, String>>, JobError> {
    let cache = ArtifactCache::of(dirs);
    let mut out = HashMap::new();
    for m in models {
        let local = match sn50::ensemble::member_names(&m) {
            Some(members) => {
                let mut locals = Vec::new();
                for member in members {
                    locals.push(local_model(member, dirs, store, &cache).await?);
                }
                locals
                    .into_iter()
                    .collect::<Result<Vec<String>, String>>()
                    .map(|l| format!("{}{}", sn50::ensemble::PREFIX, l.join(",")))
            }
            None => local_model(&m, dirs, store, &cache).await?,
        };
        out.insert(m, local);
    }
    Ok(out)
}

/// One model of [`local_models`].
async fn local_model(
    m: &str,
    dirs: &WorkerDirs,
    store: &dyn Store,
    cache: &ArtifactCache,
) -> Result<Result<String, String>, JobError> {
    Ok(if m == "gbm" {
        Ok(m.to_string())
    } else if let Ok(r) = m.parse::<ArtifactRef>() {
        match cache.fetch(store, &r).await {
            Ok(dir) => Ok(dir.display().to_string()),
            Err(e) if e.is_transient() => return Err(JobError::retry(e)),
            Err(e) => Err(e.to_string()),
        }
    } else if m.starts_with("models/") {
        let dir = dirs.store_dir.join(m);
        if !dir.is_dir() {
            production::copy_model(store, &dirs.store_dir, m, None, "a shadow record")
                .await
                .map_err(JobError::retry)?;
        }
        Ok(dir.display().to_string())
    } else {
        Ok(m.to_string())
    })
}

/// Bars of `asset` that price prompts of `increment`-second steps.
fn load_bars(data_dir: &Path, asset: &str, increment: u64) -> Result<Bars, DataError> {
    let path = asset_file_for_step(data_dir, asset, increment as i64)?;
    Bars::load(&path)
}

struct Recorder {
    dirs: WorkerDirs,
}

#[async_trait]
impl JobHandler for Recorder {
    type Job = ShadowPrompt;

    async fn run(&self, _ctx: &JobContext, job: ShadowPrompt) -> Result<Value, JobError> {
        let data_dir = self.dirs.data_dir.clone();
        let kind = match job.prompt.as_deref() {
            Some("high") => PromptKind::High,
            _ => PromptKind::Low,
        };
        let cfg = Sn50Config::default();
        let p = cfg.prompt(kind).clone();
        // a job that names no assets prompts every asset the validator asks on this prompt
        // (those without a spot price or bars are reported as skipped)
        let assets: Vec<String> = if job.assets.is_empty() {
            p.assets.clone()
        } else {
            job.assets
        };
        let now = chrono::Utc::now().timestamp();
        // live: the next minute, asked now; historical (`at`): asked a request lead before
        let (start, as_of) = match job.at {
            Some(t) => (t, t - REQUEST_LEAD_SECONDS),
            None => ((now / 60 + 1) * 60, now),
        };
        let store = open_store(&self.dirs.store_dir)?;
        let cache = ArtifactCache::of(&self.dirs);
        let mode = job.model.as_deref().unwrap_or("champions");
        // `champions`: each asset's own champion and challengers, below; else one model for all
        let (model, settings) = if mode == "champions" {
            (
                "champions".to_string(),
                Some(ShadowSettings::from_env().map_err(permanent)?),
            )
        } else {
            (resolve_model(mode, &*store, &cache, kind).await?, None)
        };
        let mut served = serde_json::Map::new();
        // the published candidates, read once for every asset's challengers
        let published = match &settings {
            Some(_) => publisher::champions::published(&*store)
                .await
                .map_err(|e| policy_failed(e.into()))?,
            None => Vec::new(),
        };
        // live: the spot from each asset's realised-price venue (Binance, Hyperliquid, or Pyth
        // where the constants say so)
        let prices = match job.at {
            Some(_) => None,
            None => {
                let mut pyth = sn50::pyth::PythConfig::from_env();
                pyth.timeout = std::time::Duration::from_secs(3);
                pyth.attempts = 2;
                let mut venues = sn50::venues::VenueConfig::from_env();
                venues.timeout = pyth.timeout;
                venues.attempts = pyth.attempts;
                sn50::venues::PriceClient::new(venues, pyth, &cfg).ok()
            }
        };
        let (mut recorded, mut skipped) = (Vec::new(), Vec::new());
        for asset in assets {
            let mut spot = None;
            if let Some(client) = &prices {
                match client.spot(&asset).await {
                    Ok(s) => spot = Some((s.price, s.venue.as_str())),
                    Err(e) => tracing::warn!(%asset, error = %e,
                        "venue spot price failed; using the last close"),
                }
            }
            if spot.is_none() {
                let (d, a, inc) = (data_dir.clone(), asset.clone(), p.time_increment);
                let close = tokio::task::spawn_blocking(move || {
                    load_bars(&d, &a, inc).map(|b| b.close_by(as_of, MAX_SPOT_AGE_SECONDS))
                })
                .await
                .map_err(JobError::retry)?;
                match close {
                    Ok(Some(c)) => spot = Some((c, "last_close")),
                    Ok(None) => {
                        skipped.push(json!({"asset": asset, "error": "no price within the hour before the request"}));
                        continue;
                    }
                    Err(e) => {
                        skipped.push(json!({"asset": asset, "error": e.to_string()}));
                        continue;
                    }
                }
            }
            let (price, source) = spot.expect("set above");
            let (answers, champion, challengers) = match &settings {
                Some(settings) => {
                    let champion = publisher::champions::current(&*store, kind, &asset)
                        .await
                        .map_err(|e| policy_failed(e.into()))?;
                    let challengers = policy::challengers(
                        &*store,
                        &published,
                        kind,
                        &asset,
                        champion.as_ref(),
                        settings.challengers,
                    )
                    .await
                    .map_err(policy_failed)?;
                    (
                        policy::served_model(champion.as_ref()),
                        champion.map(|c| c.candidate),
                        challengers,
                    )
                }
                None => (model.clone(), None, Vec::new()),
            };
            served.insert(
                asset.clone(),
                json!({"model": answers, "champion": champion,
                    "challengers": challengers.iter().map(|c| &c.candidate).collect::<Vec<_>>()}),
            );
            let id = format!("{asset}-{}-{start}", kind.label());
            let rec = ShadowRecord {
                seed: hash_name(&id),
                id,
                asset,
                prompt: kind.label().into(),
                start_time: start,
                time_increment: p.time_increment,
                time_length: p.time_length,
                num_simulations: p.num_simulations,
                as_of,
                spot: price,
                spot_source: source.into(),
                model: answers,
                recorded_at: now,
                result: None,
                champion,
                challengers,
            };
            store
                .put_json(&rec.key(), &rec)
                .await
                .map_err(JobError::retry)?;
            recorded.push(rec.id);
        }
        Ok(json!({"recorded": recorded, "skipped": skipped, "model": model, "served": served}))
    }
}

struct Scorer {
    dirs: WorkerDirs,
}

#[async_trait]
impl JobHandler for Scorer {
    type Job = ShadowScore;

    async fn run(&self, _ctx: &JobContext, job: ShadowScore) -> Result<Value, JobError> {
        let data_dir = self.dirs.data_dir.clone();
        let store = open_store(&self.dirs.store_dir)?;
        let now = chrono::Utc::now().timestamp();
        let dates: Vec<String> = if job.dates.is_empty() {
            (0..job.days.unwrap_or(3) as i64)
                .map(|d| shadow::date_of(now - d * 86_400))
                .collect()
        } else {
            job.dates
        };
        let mut pending = Vec::new();
        let mut by_date: BTreeMap<String, Vec<ShadowRecord>> = BTreeMap::new();
        for date in &dates {
            let keys = store
                .list(&format!("scores/prompts/{date}/"))
                .await
                .map_err(JobError::retry)?;
            for k in keys {
                let Some(rec) = store
                    .get_json::<ShadowRecord>(&k)
                    .await
                    .map_err(JobError::retry)?
                else {
                    continue;
                };
                if rec.result.is_none() {
                    pending.push(rec.clone());
                }
                by_date.entry(date.clone()).or_default().push(rec);
            }
        }
        // the models on this machine, then the arithmetic on a blocking thread: models and bars
        // loaded once per job
        let names = pending
            .iter()
            .flat_map(|r| {
                std::iter::once(r.model.clone())
                    .chain(r.challengers.iter().map(|c| c.model.clone()))
            })
            .collect();
        let models = local_models(names, &self.dirs, &*store).await?;
        let scored =
            tokio::task::spawn_blocking(move || score_all(pending, &models, &data_dir, now))
                .await
                .map_err(JobError::retry)?;
        let mut touched = BTreeSet::new();
        for rec in &scored {
            store
                .put_json(&rec.key(), rec)
                .await
                .map_err(JobError::retry)?;
            let date = shadow::date_of(rec.start_time);
            if let Some(list) = by_date.get_mut(&date) {
                if let Some(slot) = list.iter_mut().find(|r| r.id == rec.id) {
                    *slot = rec.clone();
                }
            }
            touched.insert(date);
        }
        for date in &touched {
            let summary = shadow::summarize(&by_date[date]);
            store
                .put_json(&shadow::daily_key(date), &summary)
                .await
                .map_err(JobError::retry)?;
            // the day's settled prompts as the shadow policy reads them
            store
                .put_json(&policy::evidence_key(date), &policy::rows(&by_date[date]))
                .await
                .map_err(JobError::retry)?;
        }
        let mut days = Vec::new();
        for k in store.list("scores/daily/").await.map_err(JobError::retry)? {
            let date = k
                .trim_start_matches("scores/daily/")
                .trim_end_matches(".json")
                .to_string();
            if let Some(v) = store.get_json::<Value>(&k).await.map_err(JobError::retry)? {
                days.push((date, v));
            }
        }
        let board = shadow::leaderboard(days, &Sn50Config::default());
        store
            .put_json(shadow::LEADERBOARD_KEY, &board)
            .await
            .map_err(JobError::retry)?;
        // the policy over the settled evidence (off: it only reports)
        let settings = ShadowSettings::from_env().map_err(permanent)?;
        let report = policy::run(&*store, &settings, true)
            .await
            .map_err(policy_failed)?;
        store
            .put_json(policy::REPORT_KEY, &report)
            .await
            .map_err(JobError::retry)?;
        Ok(
            json!({"scored": scored.len(), "dates": touched, "leaderboard": board,
            "policy": report}),
        )
    }
}

/// Scores what can be scored of `pending` (records whose window the bars cover), each model
/// loaded from its local folder in `local`.
fn score_all(
    pending: Vec<ShadowRecord>,
    local: &HashMap<String, Result<String, String>>,
    data_dir: &Path,
    now: i64,
) -> Vec<ShadowRecord> {
    let config = Sn50Config::default();
    let gbm = Gbm::new(config.clone());
    let mut models: HashMap<String, Result<Box<dyn Forecaster>, String>> = HashMap::new();
    let mut bars: HashMap<(String, u64), Result<Bars, String>> = HashMap::new();
    let mut out = Vec::new();
    for mut rec in pending {
        let b = bars
            .entry((rec.asset.clone(), rec.time_increment))
            .or_insert_with(|| {
                load_bars(data_dir, &rec.asset, rec.time_increment).map_err(|e| e.to_string())
            });
        let Ok(b) = b else { continue };
        let names = std::iter::once(rec.model.clone())
            .chain(rec.challengers.iter().map(|c| c.model.clone()));
        for name in names {
            models.entry(name.clone()).or_insert_with(|| {
                let dir = local
                    .get(&name)
                    .cloned()
                    .unwrap_or_else(|| Ok(name.clone()));
                dir.and_then(|dir| {
                    trainer::zoo::forecaster::load_forecaster(&dir, &trainer::Device::Cpu)
                        .map_err(|e| e.to_string())
                })
                .map_err(|e| format!("the model {name} does not load: {e}"))
            });
        }
        let get = |name: &str| match &models[name] {
            Ok(m) => Ok(m.as_ref()),
            Err(e) => Err(e.clone()),
        };
        let challengers: Vec<Result<&dyn Forecaster, String>> =
            rec.challengers.iter().map(|c| get(&c.model)).collect();
        let scores =
            shadow::score_record_with(&rec, get(&rec.model), &gbm, &challengers, b, &config);
        if let Some((crps, gbm_crps, error, others)) = scores {
            rec.result = Some(ShadowResult {
                crps,
                gbm_crps,
                scored_at: now,
                error,
            });
            for (c, (crps, error)) in rec.challengers.iter_mut().zip(others) {
                c.result = Some(ContenderResult { crps, error });
            }
            out.push(rec);
        }
    }
    out
}
