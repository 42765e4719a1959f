//! The SN50 miner: a Rust axon that answers validators' `Simulation` requests with the served
//! model's paths (`synth-city mine`). This module wires the parts together ([`Miner`] and its
//! [`MinerConfig`], and the background work: looking for a new publication under `latest`,
//! refreshing the metagraph) and re-exports what the command and the tests use.
//!
//! A request goes through [`server`] (route, headers, the blacklist of [`metagraph`], the
//! signature of [`auth`] against our [`hotkey`] and the nonce rules of [`nonces`] (kept in a
//! file across restarts), the body hash, in the Python
//! axon's order and with its status codes), then [`answer`]: the spot price ([`spot`]: the
//! asset's realised-price venue, Binance or Hyperliquid (Pyth Hermes where the constants say
//! so), with a short cache, the last good price when the venue is unreachable, else the last
//! close in the data directory), the asset's bar history ([`history`], re-read when its file
//! changes), the model of the request's asset and step size ([`model`]: `champions`, each
//! (asset, prompt) pair's model that passed the promotion gate, checkpoints, `gbm`, or
//! `latest`, which follows the publisher's production pointers, ungated; both swap models
//! without a restart; a pair or step size with no trained model gets the GBM), and the
//! response encoder (`sn50::encode`). The
//! model runs on a blocking thread under a deadline; when it fails, is too slow, or produces
//! paths the validator would reject, the reference GBM answers instead, and the log and
//! [`metrics`] (`sc_miner_fallbacks_total`) say so.
//!
//! This module holds no request logic of its own. The miner never signs, never registers and
//! never reads the chain: `btcli` registers, and the operator provides the metagraph.

pub mod answer;
pub mod auth;
pub mod error;
pub mod history;
pub mod hotkey;
pub mod metagraph;
pub mod metrics;
pub mod model;
pub mod nonces;
pub mod server;
pub mod spot;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use publisher::store::Store;
use sn50::constants::Sn50Config;
use sn50::forecast::Gbm;
use sn50::pyth::PythConfig;
use sn50::venues::{PriceClient, VenueConfig};
use tokio_util::sync::CancellationToken;

pub use answer::{Answer, ApiError, MAX_PRICES, MAX_SIMULATIONS};
pub use error::ErrorText;
pub use history::HistoryCache;
pub use model::{mirror_production, LoadedModel, ModelError, ModelHolder, ModelSpec};
pub use spot::{Spot, SpotCache, SpotError, SpotSource, VenueOutage};

use hotkey::Hotkey;
use metagraph::Blacklist;
use metrics::MinerMetrics;

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
    /// How long a venue's spot price is reused.
    pub spot_ttl: Duration,
    /// After a failed spot fetch, how long to use the fallback without asking the venue again.
    pub spot_retry_after: Duration,
    /// Pyth Hermes, for assets whose price source is `pyth`.
    pub pyth: PythConfig,
    /// Binance and Hyperliquid, the validator's realised-price venues.
    pub venues: VenueConfig,
    /// The SN50 constants: each asset's price source (`price_sources`) and Pyth feed ids.
    pub constants: Sn50Config,
    /// How often `latest` looks at `models/production.json`.
    pub reload_every: Duration,
    /// For `latest` from an object store (S3 / Hippius): the store whose production models
    /// are mirrored into `store_dir` before each look ([`mirror_production`]); for
    /// `champions`, the store whose champion pointers are read (`None`: `store_dir`).
    pub remote_store: Option<Arc<dyn Store>>,
    /// For `champions`: where champions' checkpoints are fetched to (by content).
    pub champion_cache: PathBuf,
    /// How often the metagraph is re-read.
    pub metagraph_every: Duration,
    /// The largest request body accepted.
    pub max_body_bytes: usize,
    /// Where the verified nonces are kept across restarts ([`nonces::NonceStore::open`]);
    /// `None` keeps them in memory only (`mine --bench`, `--check`, tests).
    pub nonce_file: Option<PathBuf>,
    /// `mine --allow-legacy-nonce`: a dendrite claiming a version below 7.2.0 (or none) skips
    /// the nonce's time window, as in the Python axon. Unsafe: that header is not signed, so
    /// a captured request can be replayed with it lowered, once per uuid, however old.
    pub allow_legacy_nonce: bool,
}

impl Default for MinerConfig {
    fn default() -> Self {
        let mut pyth = PythConfig::from_env();
        // A request has 60-120 s; a spot fetch gets a few seconds before the fallback.
        pyth.timeout = Duration::from_secs(2);
        pyth.attempts = 2;
        pyth.backoff = Duration::from_millis(200);
        pyth.max_backoff = Duration::from_millis(500);
        let mut venues = VenueConfig::from_env();
        venues.timeout = pyth.timeout;
        venues.attempts = pyth.attempts;
        venues.backoff = pyth.backoff;
        venues.max_backoff = pyth.max_backoff;
        MinerConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 8091)),
            store_dir: PathBuf::from("store"),
            data_dir: PathBuf::from("data"),
            model_budget: Duration::from_secs(5),
            spot_ttl: Duration::from_secs(5),
            spot_retry_after: Duration::from_secs(30),
            pyth,
            venues,
            constants: Sn50Config::default(),
            reload_every: Duration::from_secs(10),
            remote_store: None,
            champion_cache: PathBuf::from(".synth-city/miner-cache"),
            metagraph_every: Duration::from_secs(300),
            max_body_bytes: 1 << 20,
            nonce_file: None,
            allow_legacy_nonce: false,
        }
    }
}

/// Why a miner cannot be assembled.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Spot(#[from] SpotError),
    #[error(transparent)]
    Nonces(#[from] nonces::NonceFileError),
}

impl ErrorText for StartError {}

/// The miner: configuration, key, model, caches, nonces, blacklist, metrics.
pub struct Miner {
    pub config: MinerConfig,
    pub hotkey: Hotkey,
    pub models: ModelHolder,
    pub spot: SpotCache,
    pub history: Arc<HistoryCache>,
    pub nonces: nonces::NonceStore,
    pub blacklist: Blacklist,
    pub metrics: MinerMetrics,
    gbm: Arc<Gbm>,
}

impl Miner {
    /// Assemble a miner; fails when the price client cannot be built or the nonce file
    /// cannot be read or written.
    pub fn new(
        config: MinerConfig,
        hotkey: Hotkey,
        models: ModelHolder,
        blacklist: Blacklist,
    ) -> Result<Arc<Self>, StartError> {
        let prices = PriceClient::new(
            config.venues.clone(),
            config.pyth.clone(),
            &config.constants,
        )
        .map_err(|e| SpotError::Client(Box::new(e)))?;
        let spot = SpotCache::new(prices, config.spot_ttl, config.spot_retry_after);
        let nonces = match &config.nonce_file {
            Some(path) => {
                nonces::NonceStore::open(path, config.allow_legacy_nonce, auth::now_ns())?
            }
            None => nonces::NonceStore::in_memory(config.allow_legacy_nonce),
        };
        Ok(Arc::new(Miner {
            history: Arc::new(HistoryCache::new(config.data_dir.clone())),
            config,
            hotkey,
            models,
            spot,
            nonces,
            blacklist,
            metrics: MinerMetrics::new(),
            gbm: Arc::new(Gbm::new(Sn50Config::default())),
        }))
    }

    /// The store `champions` reads: the remote one, else the filesystem store at `store_dir`.
    pub fn champion_store(config: &MinerConfig) -> Arc<dyn Store> {
        config
            .remote_store
            .clone()
            .unwrap_or_else(|| Arc::new(publisher::store::FsStore::new(config.store_dir.clone())))
    }

    /// The cache `champions` fetches checkpoints into.
    pub fn champion_cache(config: &MinerConfig) -> publisher::artifacts::ArtifactCache {
        publisher::artifacts::ArtifactCache::new(
            config.champion_cache.clone(),
            trainer::dirs::DEFAULT_CACHE_MAX_BYTES,
        )
    }

    /// Background work until `shutdown`: reload `latest` or `champions`, refresh the
    /// metagraph.
    pub fn spawn_background(self: &Arc<Self>, shutdown: CancellationToken) {
        if self.models.spec == ModelSpec::Champions {
            let m = self.clone();
            let stop = shutdown.clone();
            tokio::spawn(async move {
                let store = Miner::champion_store(&m.config);
                let cache = Miner::champion_cache(&m.config);
                let mut tick = tokio::time::interval(m.config.reload_every);
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tick.tick() => {}
                    }
                    match m.models.reload_champions(store.as_ref(), &cache).await {
                        Ok(labels) => {
                            for label in labels {
                                m.metrics.reloads.with_label_values(&["ok"]).inc();
                                tracing::info!(model = %label, "serving a new champion");
                            }
                        }
                        Err(e) => {
                            m.metrics.reloads.with_label_values(&["failed"]).inc();
                            tracing::error!(error = %e, models = %m.models.describe(),
                                "could not load a champion; still serving the previous model");
                        }
                    }
                }
            });
        }
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
