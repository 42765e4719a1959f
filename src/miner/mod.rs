//! The SN50 miner: a Rust axon that answers validators' `Simulation` requests with the served
//! model's paths (`synth-city mine`).
//!
//! A request goes through [`server`] (route, headers, blacklist, signature and nonce, body
//! hash, in the Python axon's order and with its status codes), then [`Miner::answer`]: the
//! spot price ([`SpotCache`]: Pyth Hermes with a short cache, the last good price when Pyth is
//! unreachable, else the last close in the data directory), the asset's bar history
//! ([`HistoryCache`], re-read when its file changes), the model ([`ModelHolder`], one per step
//! size: checkpoints, `gbm`, or `latest`, which follows the publisher's
//! production pointers (`models/production-5m.json`, `-1m.json`, `production.json`) and swaps
//! models without a restart; a step size with no trained model gets the GBM), and the response encoder ([`encode`]: `sn50::response`'s
//! rounding to 8 significant digits and the validator's digit rule, with a fast exact path). The model runs on a blocking thread under a deadline;
//! when it fails, is too slow, or produces paths the validator would reject, the reference GBM
//! answers instead, and the log and `sc_miner_fallbacks_total` say so.

pub mod auth;
pub mod hotkey;
pub mod metagraph;
pub mod metrics;
pub mod server;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use jobs::Timeframe;
use publisher::store::Store;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use sn50::constants::Sn50Config;
use sn50::data::{asset_file, Bars};
use sn50::forecast::{ForecastRequest, Forecaster, Gbm};
use sn50::pyth::{PythClient, PythConfig};
use sn50::response::{iso_start_timestamp, SimulationInput};
use tokio_util::sync::CancellationToken;

use hotkey::Hotkey;
use metagraph::Blacklist;
use metrics::MinerMetrics;

/// The most paths a request may ask for (the validator asks for 1000).
pub const MAX_SIMULATIONS: i64 = 10_000;
/// The most prices one answer may hold.
pub const MAX_PRICES: i64 = 5_000_000;

/// How the miner runs.
#[derive(Debug, Clone)]
pub struct MinerConfig {
    pub addr: SocketAddr,
    /// The publisher's store (for `--model latest`).
    pub store_dir: PathBuf,
    /// Bars for the models' history and the last-close spot fallback.
    pub data_dir: PathBuf,
    /// The longest the served model may take before the GBM answers instead.
    pub model_budget: Duration,
    /// How long a Pyth price is reused.
    pub spot_ttl: Duration,
    /// After a failed Pyth fetch, how long to use the fallback without asking Pyth again.
    pub spot_retry_after: Duration,
    pub pyth: PythConfig,
    /// How often `latest` looks at `models/production.json`.
    pub reload_every: Duration,
    /// For `latest` from an object store (S3 / Hippius): the store whose production models
    /// are mirrored into `store_dir` before each look ([`mirror_production`]).
    pub remote_store: Option<Arc<dyn Store>>,
    /// How often the metagraph is re-read.
    pub metagraph_every: Duration,
    /// The largest request body accepted.
    pub max_body_bytes: usize,
}

impl Default for MinerConfig {
    fn default() -> Self {
        let mut pyth = PythConfig::from_env();
        // A request has 60-120 s; a spot fetch gets a few seconds before the fallback.
        pyth.timeout = Duration::from_secs(2);
        pyth.attempts = 2;
        pyth.backoff = Duration::from_millis(200);
        pyth.max_backoff = Duration::from_millis(500);
        MinerConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 8091)),
            store_dir: PathBuf::from("store"),
            data_dir: PathBuf::from("data"),
            model_budget: Duration::from_secs(5),
            spot_ttl: Duration::from_secs(5),
            spot_retry_after: Duration::from_secs(30),
            pyth,
            reload_every: Duration::from_secs(10),
            remote_store: None,
            metagraph_every: Duration::from_secs(300),
            max_body_bytes: 1 << 20,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------------------------

/// What `--model` names.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelSpec {
    Gbm,
    /// Follow the publisher's production pointers (one per timeframe).
    Latest,
    /// Checkpoint folders, at most one per step size.
    Paths(Vec<PathBuf>),
}

impl ModelSpec {
    /// `gbm`, `latest`, or checkpoint folders separated by commas.
    pub fn parse(s: &str) -> Self {
        match s.trim() {
            x if x.eq_ignore_ascii_case("gbm") => ModelSpec::Gbm,
            x if x.eq_ignore_ascii_case("latest") => ModelSpec::Latest,
            x => ModelSpec::Paths(
                x.split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(PathBuf::from)
                    .collect(),
            ),
        }
    }
}

/// A model being served.
pub struct LoadedModel {
    pub forecaster: Arc<dyn Forecaster>,
    /// The checkpoint folder, or `gbm`.
    pub label: String,
    pub is_gbm: bool,
    /// The step size it simulates, in seconds (`None`: any, as the GBM).
    pub increment: Option<u64>,
}

impl LoadedModel {
    fn gbm() -> Self {
        LoadedModel {
            forecaster: Arc::new(Gbm::new(Sn50Config::default())),
            label: "gbm".into(),
            is_gbm: true,
            increment: None,
        }
    }
}

fn load_checkpoint(dir: &Path) -> Result<LoadedModel, String> {
    let f = trainer::zoo::forecaster::load_forecaster(
        &dir.display().to_string(),
        &trainer::Device::Cpu,
    )
    .map_err(|e| e.to_string())?;
    let increment = f.time_increment();
    Ok(LoadedModel {
        forecaster: Arc::from(f),
        label: dir.display().to_string(),
        is_gbm: false,
        increment,
    })
}

/// For `latest` from an object store: copies the production pointers of `store` and the
/// model objects they name into `local` (see [`publisher::production::mirror`]).
pub async fn mirror_production(store: &dyn Store, local: &Path) -> Result<Vec<String>, String> {
    publisher::production::mirror(store, local, trainer::zoo::train::WEIGHTS_FILE)
        .await
        .map_err(|e| e.to_string())
}

/// The models being served, one per step size, each swapped atomically when `latest` sees a
/// new publication. A request whose step size has no trained model gets the GBM baseline.
pub struct ModelHolder {
    pub spec: ModelSpec,
    store_dir: PathBuf,
    models: RwLock<std::collections::BTreeMap<u64, Arc<LoadedModel>>>,
    gbm: Arc<LoadedModel>,
    /// `latest`: each production pointer's text last acted on (loaded, or failed to load).
    seen: Mutex<HashMap<String, String>>,
}

impl ModelHolder {
    fn empty(spec: ModelSpec, store_dir: &Path) -> Self {
        ModelHolder {
            spec,
            store_dir: store_dir.to_path_buf(),
            models: RwLock::new(Default::default()),
            gbm: Arc::new(LoadedModel::gbm()),
            seen: Mutex::new(HashMap::new()),
        }
    }

    fn put(&self, m: LoadedModel) {
        let m = Arc::new(m);
        let mut models = self.models.write().expect("model lock");
        match m.increment {
            Some(i) => {
                models.insert(i, m);
            }
            // a forecaster for any step size serves every one
            None => {
                for tf in Timeframe::ALL {
                    models.insert(tf.step_secs() as u64, m.clone());
                }
            }
        }
    }

    /// Serve a forecaster given directly (embedding, tests): its own step size, or all of them.
    pub fn fixed(forecaster: Arc<dyn Forecaster>, label: &str) -> Self {
        let h = Self::empty(ModelSpec::Paths(vec![PathBuf::from(label)]), Path::new(""));
        let increment = forecaster.time_increment();
        h.put(LoadedModel {
            forecaster,
            label: label.into(),
            is_gbm: false,
            increment,
        });
        h
    }

    /// Load what `spec` names (blocking). A checkpoint path that does not load, or two for
    /// the same step size, is an error; `latest` with nothing published, or with a
    /// publication that does not load, serves the GBM and says why in the second value (the
    /// reload loop picks up the next publication).
    pub fn load(spec: ModelSpec, store_dir: &Path) -> Result<(Self, Option<String>), String> {
        let h = Self::empty(spec.clone(), store_dir);
        match &spec {
            ModelSpec::Gbm => Ok((h, None)),
            ModelSpec::Paths(paths) => {
                if paths.is_empty() {
                    return Err("no checkpoint folder given".into());
                }
                for p in paths {
                    let m = load_checkpoint(p)?;
                    let i = m.increment;
                    if let Some(other) =
                        i.and_then(|i| h.models.read().expect("lock").get(&i).cloned())
                    {
                        return Err(format!(
                            "{} and {} both simulate {} s steps: give one checkpoint per timeframe",
                            other.label,
                            p.display(),
                            i.unwrap_or(0)
                        ));
                    }
                    h.put(m);
                }
                Ok((h, None))
            }
            ModelSpec::Latest => {
                let r = h.reload_if_changed();
                let note = match r {
                    Ok(loaded) if !loaded.is_empty() => None,
                    Ok(_) => Some(format!(
                        "nothing is published in {} yet (no models/production*.json): serving the GBM baseline until it is",
                        store_dir.display()
                    )),
                    Err(e) => Some(format!("{e}: serving the GBM baseline where no model loaded")),
                };
                Ok((h, note))
            }
        }
    }

    /// The model for requests of `increment`-second steps (the GBM when none is loaded).
    pub fn current(&self, increment: u64) -> Arc<LoadedModel> {
        self.models
            .read()
            .expect("model lock")
            .get(&increment)
            .cloned()
            .unwrap_or_else(|| self.gbm.clone())
    }

    /// What is served, per timeframe: `5m: runs/a, 1m: gbm`.
    pub fn describe(&self) -> String {
        Timeframe::ALL
            .iter()
            .map(|tf| format!("{tf}: {}", self.current(tf.step_secs() as u64).label))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// For `latest`: load the production models whose pointers changed since last time
    /// (blocking), and return their labels. A pointer per timeframe
    /// (`models/production-5m.json`, `-1m.json`) wins over `models/production.json` (the
    /// newest publication of any timeframe, as older publishers wrote only it) for its step
    /// size. A model that does not load leaves the previous one served and is reported in
    /// the error (after the others are loaded).
    pub fn reload_if_changed(&self) -> Result<Vec<String>, String> {
        if self.spec != ModelSpec::Latest {
            return Ok(Vec::new());
        }
        let (mut loaded, mut errors) = (Vec::new(), Vec::new());
        let mut pointers = vec![None];
        pointers.extend(Timeframe::ALL.into_iter().map(Some));
        let has_timeframe_pointer = |tf: Timeframe| {
            self.store_dir
                .join(publisher::production::key_for(Some(tf)))
                .exists()
        };
        for timeframe in pointers {
            let file = publisher::production::key_for(timeframe);
            let (dir, pointer, text) =
                match publisher::production::read_local(&self.store_dir, timeframe) {
                    Ok(Some(p)) => (p.dir, p.pointer, p.text),
                    Ok(None) => continue,
                    Err(e) => {
                        errors.push(e.to_string());
                        continue;
                    }
                };
            {
                let mut seen = self.seen.lock().expect("seen lock");
                if seen.get(&file).map(String::as_str) == Some(text.as_str()) {
                    continue;
                }
                seen.insert(file.clone(), text.clone());
            }
            // the newest publication's own timeframe pointer serves it (no second load)
            if timeframe.is_none() && pointer.timeframe.is_some_and(has_timeframe_pointer) {
                continue;
            }
            let m = match load_checkpoint(&dir) {
                Ok(m) => m,
                Err(e) => {
                    errors.push(format!(
                        "the production model {} ({file}) does not load: {e}",
                        dir.display()
                    ));
                    continue;
                }
            };
            if let (Some(tf), Some(got)) = (timeframe, m.increment) {
                if tf.step_secs() as u64 != got {
                    errors.push(format!(
                        "{file} points at {}, a model of {got} s steps, not {tf}",
                        dir.display()
                    ));
                    continue;
                }
            }
            if timeframe.is_none() {
                // an older pointer: its model's step size decides, unless that timeframe has
                // its own pointer
                let tf = m
                    .increment
                    .and_then(|i| Timeframe::from_step_secs(i as i64));
                if tf.is_some_and(has_timeframe_pointer) {
                    continue;
                }
            }
            loaded.push(m.label.clone());
            self.put(m);
        }
        if errors.is_empty() {
            Ok(loaded)
        } else {
            Err(errors.join("; "))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Spot prices and history
// ---------------------------------------------------------------------------------------------

/// Where a spot price came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpotSource {
    /// Fetched from Pyth for this request.
    Pyth,
    /// A Pyth price younger than the cache TTL.
    Cache,
    /// Pyth failed: the last good Pyth price, however old.
    StaleCache,
    /// Pyth failed and never answered: the last close in the data directory.
    LastClose,
}

impl SpotSource {
    pub fn as_str(self) -> &'static str {
        match self {
            SpotSource::Pyth => "pyth",
            SpotSource::Cache => "cache",
            SpotSource::StaleCache => "stale_cache",
            SpotSource::LastClose => "last_close",
        }
    }
}

/// A spot price and its provenance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spot {
    pub price: f64,
    pub source: SpotSource,
    /// Seconds since the price was fetched (or since the bar closed, for `LastClose`).
    pub age_s: f64,
}

/// Pyth Hermes spot prices with a cache and a fallback.
pub struct SpotCache {
    client: PythClient,
    ttl: Duration,
    retry_after: Duration,
    last: Mutex<HashMap<String, (f64, Instant)>>,
    down_until: Mutex<HashMap<String, Instant>>,
    fetching: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl SpotCache {
    pub fn new(pyth: PythConfig, ttl: Duration, retry_after: Duration) -> Result<Self, String> {
        Ok(SpotCache {
            client: PythClient::new(pyth).map_err(|e| e.to_string())?,
            ttl,
            retry_after,
            last: Mutex::new(HashMap::new()),
            down_until: Mutex::new(HashMap::new()),
            fetching: Mutex::new(HashMap::new()),
        })
    }

    pub fn hermes_url(&self) -> &str {
        &self.client.config().hermes_url
    }

    fn cached(&self, asset: &str) -> Option<(f64, Instant)> {
        self.last.lock().expect("spot lock").get(asset).copied()
    }

    /// The spot price of `asset`: a fresh cached price, else Pyth, else the last good price,
    /// else `last_close` (price, close time in unix seconds).
    pub async fn get(
        &self,
        asset: &str,
        last_close: impl FnOnce() -> Option<(f64, i64)> + Send + 'static,
    ) -> Result<Spot, String> {
        let fresh = |c: Option<(f64, Instant)>| {
            c.filter(|(_, at)| at.elapsed() < self.ttl)
                .map(|(p, at)| Spot {
                    price: p,
                    source: SpotSource::Cache,
                    age_s: at.elapsed().as_secs_f64(),
                })
        };
        if let Some(s) = fresh(self.cached(asset)) {
            return Ok(s);
        }
        // One fetch per asset at a time; the others wait for its price.
        let lock = self
            .fetching
            .lock()
            .expect("spot lock")
            .entry(asset.to_string())
            .or_default()
            .clone();
        let _guard = lock.lock().await;
        if let Some(s) = fresh(self.cached(asset)) {
            return Ok(s);
        }
        let down = self
            .down_until
            .lock()
            .expect("spot lock")
            .get(asset)
            .is_some_and(|t| Instant::now() < *t);
        let mut why = "Pyth failed a moment ago".to_string();
        if !down {
            match self.client.latest_price(asset).await {
                Ok(p) => {
                    self.last
                        .lock()
                        .expect("spot lock")
                        .insert(asset.to_string(), (p.price, Instant::now()));
                    return Ok(Spot {
                        price: p.price,
                        source: SpotSource::Pyth,
                        age_s: 0.0,
                    });
                }
                Err(e) => {
                    tracing::warn!(asset, error = %e, retry_in_s = self.retry_after.as_secs(),
                        "Pyth spot price failed; using the fallback");
                    self.down_until
                        .lock()
                        .expect("spot lock")
                        .insert(asset.to_string(), Instant::now() + self.retry_after);
                    why = e.to_string();
                }
            }
        }
        if let Some((p, at)) = self.cached(asset) {
            return Ok(Spot {
                price: p,
                source: SpotSource::StaleCache,
                age_s: at.elapsed().as_secs_f64(),
            });
        }
        // Reading the data directory may parse a file: off the async threads.
        let close = tokio::task::spawn_blocking(last_close).await.ok().flatten();
        if let Some((p, t)) = close.filter(|(p, _)| p.is_finite() && *p > 0.0) {
            let now = chrono::Utc::now().timestamp();
            return Ok(Spot {
                price: p,
                source: SpotSource::LastClose,
                age_s: (now - t).max(0) as f64,
            });
        }
        Err(format!(
            "no spot price for {asset}: Pyth ({}) is unreachable ({why}), no earlier Pyth price is cached and the data directory has no bars for it",
            self.hermes_url()
        ))
    }
}

/// Loaded bar files by (asset, bar seconds), with the file's modification time.
type BarFiles = HashMap<(String, i64), (Option<SystemTime>, Arc<Bars>)>;

/// Bar files from the data directory, loaded once and re-read when they change.
pub struct HistoryCache {
    dir: PathBuf,
    loaded: Mutex<BarFiles>,
}

impl HistoryCache {
    pub fn new(dir: PathBuf) -> Self {
        HistoryCache {
            dir,
            loaded: Mutex::new(HashMap::new()),
        }
    }

    /// The bars of `asset` at `bar_seconds` (blocking: may read a file).
    pub fn get(&self, asset: &str, bar_seconds: i64) -> Result<Arc<Bars>, String> {
        let path = asset_file(&self.dir, asset, bar_seconds).map_err(|e| e.to_string())?;
        let mtime = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        let key = (asset.to_string(), bar_seconds);
        if let Some((t, b)) = self.loaded.lock().expect("history lock").get(&key) {
            if *t == mtime {
                return Ok(b.clone());
            }
        }
        let bars = Arc::new(Bars::load(&path).map_err(|e| e.to_string())?);
        self.loaded
            .lock()
            .expect("history lock")
            .insert(key, (mtime, bars.clone()));
        Ok(bars)
    }

    /// The last close of `asset` in the data directory: (price, close time).
    pub fn last_close(&self, asset: &str) -> Option<(f64, i64)> {
        [60, 300]
            .iter()
            .filter_map(|&s| self.get(asset, s).ok())
            .filter_map(|b| {
                let i = b.len().checked_sub(1)?;
                Some((b.close[i], b.timestamps[i] + b.bar_seconds))
            })
            .max_by_key(|&(_, t)| t)
    }
}

// ---------------------------------------------------------------------------------------------
// The miner
// ---------------------------------------------------------------------------------------------

/// An error answer: HTTP status and message.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }
}

/// One answered request.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The JSON text of `simulation_output`.
    pub output_json: String,
    /// The model that answered (`gbm` after a fallback).
    pub model: String,
    /// Why the GBM answered instead of the served model.
    pub fallback: Option<String>,
    pub spot: Spot,
}

/// A checked request.
struct Job {
    asset: String,
    start: i64,
    increment: u64,
    length: u64,
    paths: usize,
}

fn check_input(input: &SimulationInput) -> Result<Job, ApiError> {
    let bad = |m: String| ApiError::new(400, m);
    let asset = input.asset.trim();
    if asset.is_empty() || asset.len() > 32 {
        return Err(bad(format!(
            "simulation_input.asset {:?} is not an asset name",
            input.asset
        )));
    }
    let start = iso_start_timestamp(&input.start_time).ok_or_else(|| {
        bad(format!(
            "simulation_input.start_time {:?} is not an ISO-8601 time",
            input.start_time
        ))
    })?;
    if input.time_increment <= 0
        || input.time_length <= 0
        || input.time_length % input.time_increment != 0
    {
        return Err(bad(format!(
            "simulation_input.time_increment {} must be positive and divide time_length {}",
            input.time_increment, input.time_length
        )));
    }
    if !(1..=MAX_SIMULATIONS).contains(&input.num_simulations) {
        return Err(bad(format!(
            "simulation_input.num_simulations {} must be between 1 and {MAX_SIMULATIONS}",
            input.num_simulations
        )));
    }
    let points = input.time_length / input.time_increment + 1;
    if points.saturating_mul(input.num_simulations) > MAX_PRICES {
        return Err(bad(format!(
            "{} paths of {points} points is more than the {MAX_PRICES} prices an answer may hold",
            input.num_simulations
        )));
    }
    Ok(Job {
        asset: asset.to_string(),
        start,
        increment: input.time_increment as u64,
        length: input.time_length as u64,
        paths: input.num_simulations as usize,
    })
}

/// Simulate and encode (blocking).
fn simulate_encoded(
    f: &dyn Forecaster,
    job: &Job,
    spot: f64,
    history: Option<&Bars>,
    as_of: i64,
) -> Result<String, String> {
    let req = ForecastRequest {
        asset: job.asset.clone(),
        start_time: job.start,
        time_increment: job.increment,
        time_length: job.length,
        num_simulations: job.paths,
        spot,
        history,
        as_of,
    };
    let mut rng = ChaCha8Rng::from_rng(&mut rand::rng());
    let paths = f.forecast(&req, &mut rng).map_err(|e| e.to_string())?;
    if paths.n_paths() != job.paths || paths.n_points() != req.num_points() {
        return Err(format!(
            "the model returned {} x {} prices, the request needs {} x {}",
            paths.n_paths(),
            paths.n_points(),
            job.paths,
            req.num_points()
        ));
    }
    sn50::encode::simulation_output_json(job.start, job.increment as i64, &paths)
}

/// The miner: configuration, key, model, caches, nonces, blacklist, metrics.
pub struct Miner {
    pub config: MinerConfig,
    pub hotkey: Hotkey,
    pub models: ModelHolder,
    pub spot: SpotCache,
    pub history: Arc<HistoryCache>,
    pub nonces: auth::NonceStore,
    pub blacklist: Blacklist,
    pub metrics: MinerMetrics,
    gbm: Arc<Gbm>,
}

impl Miner {
    pub fn new(
        config: MinerConfig,
        hotkey: Hotkey,
        models: ModelHolder,
        blacklist: Blacklist,
    ) -> Result<Arc<Self>, String> {
        let spot = SpotCache::new(
            config.pyth.clone(),
            config.spot_ttl,
            config.spot_retry_after,
        )?;
        Ok(Arc::new(Miner {
            history: Arc::new(HistoryCache::new(config.data_dir.clone())),
            config,
            hotkey,
            models,
            spot,
            nonces: auth::NonceStore::new(),
            blacklist,
            metrics: MinerMetrics::new(),
            gbm: Arc::new(Gbm::new(Sn50Config::default())),
        }))
    }

    /// Answer a `simulation_input` within a dendrite timeout of `timeout_s`.
    pub async fn answer(
        &self,
        input: &SimulationInput,
        timeout_s: f64,
    ) -> Result<Answer, ApiError> {
        let job = Arc::new(check_input(input)?);
        let as_of = chrono::Utc::now().timestamp();
        let model = self.models.current(job.increment);
        let bar_seconds = job.increment as i64;
        // History: for the model, and for the last-close fallback of the spot price.
        let history = if model.is_gbm {
            None
        } else {
            let (h, a) = (self.history.clone(), job.asset.clone());
            tokio::task::spawn_blocking(move || h.get(&a, bar_seconds))
                .await
                .ok()
                .and_then(|r| {
                    r.map_err(|e| tracing::debug!(error = %e, "no history for the request"))
                        .ok()
                })
        };
        let spot = {
            let (h, a) = (self.history.clone(), job.asset.clone());
            self.spot
                .get(&job.asset, move || h.last_close(&a))
                .await
                .map_err(|e| ApiError::new(503, e))?
        };
        self.metrics
            .spot_source
            .with_label_values(&[spot.source.as_str()])
            .inc();
        let mut fallback = None;
        if model.is_gbm && self.models.spec != ModelSpec::Gbm {
            fallback = Some((
                "no_model",
                format!("no trained model for {} s steps is loaded", job.increment),
            ));
        }
        if !model.is_gbm {
            let budget = self
                .config
                .model_budget
                .min(Duration::from_secs_f64((timeout_s - 1.0).max(0.0)));
            let (m, j, h) = (model.clone(), job.clone(), history.clone());
            let task = tokio::task::spawn_blocking(move || {
                simulate_encoded(m.forecaster.as_ref(), &j, spot.price, h.as_deref(), as_of)
            });
            match tokio::time::timeout(budget, task).await {
                Ok(Ok(Ok(json))) => {
                    return Ok(Answer {
                        output_json: json,
                        model: model.label.clone(),
                        fallback: None,
                        spot,
                    })
                }
                Ok(Ok(Err(e))) => {
                    let reason = if e.starts_with("unusable output") {
                        "output"
                    } else {
                        "error"
                    };
                    fallback = Some((reason, e));
                }
                Ok(Err(join)) => fallback = Some(("error", format!("the model panicked: {join}"))),
                Err(_) => {
                    fallback = Some((
                        "deadline",
                        format!("no answer within {} ms", budget.as_millis()),
                    ))
                }
            }
        }
        if let Some((reason, why)) = &fallback {
            self.metrics.fallbacks.with_label_values(&[reason]).inc();
            if *reason != "no_model" {
                tracing::warn!(model = %model.label, asset = %job.asset, reason, error = %why,
                    "the served model failed; answering with the GBM baseline");
            }
        }
        let (g, j) = (self.gbm.clone(), job.clone());
        let json = tokio::task::spawn_blocking(move || {
            simulate_encoded(g.as_ref(), &j, spot.price, None, as_of)
        })
        .await
        .map_err(|e| ApiError::new(500, format!("the GBM baseline panicked: {e}")))?
        .map_err(|e| ApiError::new(500, format!("the GBM baseline failed: {e}")))?;
        Ok(Answer {
            output_json: json,
            model: "gbm".into(),
            fallback: fallback.map(|(r, w)| format!("{r}: {w}")),
            spot,
        })
    }

    /// Background work until `shutdown`: reload `latest`, refresh the metagraph.
    pub fn spawn_background(self: &Arc<Self>, shutdown: CancellationToken) {
        if self.models.spec == ModelSpec::Latest {
            let m = self.clone();
            let stop = shutdown.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(m.config.reload_every);
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tick.tick() => {}
                    }
                    if let Some(remote) = &m.config.remote_store {
                        if let Err(e) =
                            mirror_production(remote.as_ref(), &m.config.store_dir).await
                        {
                            m.metrics.reloads.with_label_values(&["failed"]).inc();
                            tracing::error!(error = %e, store = %remote.describe(),
                                "could not copy a published model; still serving the previous one");
                        }
                    }
                    let m2 = m.clone();
                    let r =
                        tokio::task::spawn_blocking(move || m2.models.reload_if_changed()).await;
                    match r {
                        Ok(Ok(labels)) => {
                            for label in labels {
                                m.metrics.reloads.with_label_values(&["ok"]).inc();
                                tracing::info!(model = %label, "serving the newly published production model");
                            }
                        }
                        Ok(Err(e)) => {
                            m.metrics.reloads.with_label_values(&["failed"]).inc();
                            tracing::error!(error = %e, models = %m.models.describe(),
                                "could not load a published model; still serving the previous one");
                        }
                        Err(e) => tracing::error!(error = %e, "model reload panicked"),
                    }
                }
            });
        }
        if self.blacklist.source.is_some() {
            let m = self.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(m.config.metagraph_every);
                tick.tick().await; // loaded at start
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tick.tick() => {}
                    }
                    match m.blacklist.refresh().await {
                        Ok(n) => tracing::debug!(neurons = n, "metagraph refreshed"),
                        Err(e) => {
                            tracing::warn!(error = %e, "metagraph refresh failed; keeping the last snapshot")
                        }
                    }
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_specs() {
        assert_eq!(ModelSpec::parse("GBM"), ModelSpec::Gbm);
        assert_eq!(ModelSpec::parse("latest"), ModelSpec::Latest);
        assert_eq!(
            ModelSpec::parse("runs/x"),
            ModelSpec::Paths(vec![PathBuf::from("runs/x")])
        );
        assert_eq!(
            ModelSpec::parse(" runs/a , runs/b,"),
            ModelSpec::Paths(vec![PathBuf::from("runs/a"), PathBuf::from("runs/b")])
        );
    }

    #[test]
    fn inputs_are_checked() {
        let ok = SimulationInput {
            asset: "BTC".into(),
            start_time: "2026-06-01T12:05:00+00:00".into(),
            time_increment: 300,
            time_length: 86400,
            num_simulations: 1000,
        };
        assert!(check_input(&ok).is_ok());
        for (f, needle) in [
            (
                Box::new(|i: &mut SimulationInput| i.start_time = "soon".into())
                    as Box<dyn Fn(&mut SimulationInput)>,
                "start_time",
            ),
            (Box::new(|i| i.time_increment = 7), "time_increment"),
            (Box::new(|i| i.time_increment = 0), "time_increment"),
            (Box::new(|i| i.num_simulations = 0), "num_simulations"),
            (
                Box::new(|i| i.num_simulations = 1_000_000),
                "num_simulations",
            ),
            (Box::new(|i| i.asset = " ".into()), "asset"),
            (
                Box::new(|i| {
                    i.time_increment = 1;
                    i.num_simulations = 10_000
                }),
                "prices",
            ),
        ] {
            let mut i = ok.clone();
            f(&mut i);
            let e = check_input(&i).err().expect("refused");
            assert_eq!(e.status, 400);
            assert!(e.message.contains(needle), "{} / {needle}", e.message);
        }
    }

    #[test]
    fn the_production_pointer() {
        // (reading the pointer itself is tested in publisher::production)
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("models")).unwrap();
        std::fs::write(
            d.path().join("models/production.json"),
            r#"{"model_dir": "/x/y", "run_id": "r"}"#,
        )
        .unwrap();
        // latest with a pointer that does not load: GBM, with the reason.
        let (h, note) = ModelHolder::load(ModelSpec::Latest, d.path()).unwrap();
        assert!(h.current(300).is_gbm && h.current(60).is_gbm);
        assert!(note.unwrap().contains("/x/y"));
        // a timeframe pointer that does not load is named too
        std::fs::write(
            d.path().join("models/production-1m.json"),
            r#"{"model_dir": "/x/one-minute", "timeframe": "1m"}"#,
        )
        .unwrap();
        let (h, note) = ModelHolder::load(ModelSpec::Latest, d.path()).unwrap();
        assert!(h.current(60).is_gbm);
        let note = note.unwrap();
        assert!(
            note.contains("/x/one-minute") && note.contains("production-1m.json"),
            "{note}"
        );
        // A checkpoint path that does not exist is an error, and so is none at all.
        assert!(ModelHolder::load(ModelSpec::Paths(vec!["/no/such".into()]), d.path()).is_err());
        assert!(ModelHolder::load(ModelSpec::Paths(vec![]), d.path()).is_err());
    }
}
