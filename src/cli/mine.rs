//! `synth-city mine`: run the SN50 miner's axon (src/miner), check its set-up before going live
//! (`--check`: wallet, model, port, metagraph, the spot venue, and an answer of each timeframe's
//! prompt checked with the validator's rules), or measure it (`--bench`: the miner
//! in-process on a loopback port, called over HTTP by signed dendrite requests, N concurrent
//! callers, p50/p99 of the whole round trip including reading the ~3 MB body).
//!
//! This module turns flags into the miner's parts and reports; it holds no request handling,
//! model loading or authentication of its own (all in `src/miner`).

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use jobs::Timeframe;
use tokio_util::sync::CancellationToken;

use crate::miner::hotkey::{self, Hotkey};
use crate::miner::metagraph::{Blacklist, BlacklistPolicy, MetagraphSource};
use crate::miner::{auth, server, Miner, MinerConfig, ModelHolder, ModelSpec};
use publisher::store::{S3Config, S3Store, Store};

/// A secret URI from the command line; `Debug` never shows it.
#[derive(Clone)]
pub struct SecretUri(pub String);

impl std::fmt::Debug for SecretUri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretUri(<redacted>)")
    }
}

impl std::str::FromStr for SecretUri {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(SecretUri(s.to_string()))
    }
}

/// `synth-city mine`.
#[derive(Debug, clap::Args)]
pub struct MineArgs {
    /// Address to bind (use 0.0.0.0 to serve validators; the tests use loopback).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    #[arg(long, default_value_t = 8091)]
    pub port: u16,
    /// `champions` (each (asset, prompt) pair's model that passed the promotion gate, from the
    /// store; `synth-city models`), `latest` (the publisher's production models, one per
    /// timeframe, ungated: whatever was published last), `gbm`, or checkpoint folders separated
    /// by commas (one per timeframe: a 5m model answers the 24 h prompt, a 1m model the 1 h
    /// prompt). `champions` and `latest` reload when their pointers change; a pair or prompt
    /// without a model gets the --baseline.
    #[arg(long, default_value = "champions")]
    pub model: String,
    /// What answers a prompt whose step size has no model: `gbm` (the reference baseline), or
    /// a classical baseline fitted per request on the bars in `--data-dir` (`garch-tod-t`,
    /// `ewma-tod-t`, `har-tod-t`, ...; `score backtest --help` lists them). Bars more than 4
    /// days old are refused and the GBM answers: keep them fresh with `data download`.
    #[arg(long, default_value = "gbm")]
    pub baseline: String,
    /// A classical model every trained model answers together with, half the paths each
    /// (`garch-tod-t`, ...; fitted per request on the bars in `--data-dir`), or `none`.
    #[arg(long, default_value = "none")]
    pub blend: String,
    /// The publisher's store (for `--model champions` and `latest`); with `HIPPIUS_ENDPOINT`
    /// set, the bucket is read instead (`latest`: copied here first).
    #[arg(long, default_value = "store")]
    pub store_dir: PathBuf,
    /// For `--model champions`: where the champions' checkpoints are fetched to (by content).
    #[arg(long, default_value = ".synth-city/miner-cache")]
    pub cache_dir: PathBuf,
    /// Bars for the model's history and the last-close spot fallback.
    #[arg(long, default_value = "data")]
    pub data_dir: PathBuf,
    /// Bittensor wallets folder [default: ~/.bittensor/wallets].
    #[arg(long, env = "BT_WALLET_PATH")]
    pub wallet_path: Option<PathBuf>,
    #[arg(long, env = "BT_WALLET_NAME", default_value = "default")]
    pub wallet_name: String,
    #[arg(long, env = "BT_HOTKEY_NAME", default_value = "default")]
    pub wallet_hotkey: String,
    /// A substrate secret URI for the hotkey instead of a wallet (`//Bob`; for tests).
    #[arg(long)]
    pub hotkey_uri: Option<SecretUri>,
    /// A metagraph snapshot (JSON of hotkeys, stakes, validator permits), re-read when it changes.
    #[arg(long, conflicts_with = "metagraph_url")]
    pub metagraph_file: Option<PathBuf>,
    /// An HTTP endpoint serving the metagraph JSON.
    #[arg(long)]
    pub metagraph_url: Option<String>,
    #[arg(long, default_value_t = 300)]
    pub metagraph_refresh_secs: u64,
    /// A caller's stake must exceed this (TAO), as the reference miner's
    /// `--blacklist.validator_min_stake`.
    #[arg(long, default_value_t = 1000.0)]
    pub min_stake: f64,
    /// Require a validator permit.
    #[arg(long)]
    pub force_validator_permit: bool,
    /// Hotkeys (ss58) always allowed, metagraph or not.
    #[arg(long, value_delimiter = ',')]
    pub allow_hotkeys: Vec<String>,
    /// The longest the model may take before the GBM baseline answers instead.
    #[arg(long, default_value_t = 5000)]
    pub model_budget_ms: u64,
    /// How often `--model latest` looks for a new publication.
    #[arg(long, default_value_t = 10)]
    pub reload_secs: u64,
    /// How long a spot price from the asset's venue is reused.
    #[arg(long, default_value_t = 5)]
    pub spot_ttl_secs: u64,
    /// Per-attempt timeout of a spot request (2 attempts), to the asset's venue: Binance,
    /// Hyperliquid, or Pyth Hermes where the constants say `pyth`. `--spot-timeout-ms` is the
    /// same flag.
    #[arg(long, alias = "spot-timeout-ms", default_value_t = 2000)]
    pub pyth_timeout_ms: u64,
    /// TOML overrides of the SN50 constants; `[price_sources]` picks each asset's spot venue
    /// and symbol.
    #[arg(long, env = "SYNTH_CITY_SN50_CONSTANTS")]
    pub constants: Option<PathBuf>,
    /// Where the verified nonces (`hotkey:uuid` and its last nonce) are kept across restarts:
    /// a JSON-lines file, read and compacted at start, entries older than the nonce window
    /// dropped. A restart with another file lets a request of the last ~10 minutes be replayed.
    #[arg(long, default_value = ".synth-city/miner-nonces.jsonl")]
    pub nonce_file: PathBuf,
    /// Let dendrites that claim a version below 7.2.0 (or none) skip the nonce's time window,
    /// as bittensor's axon does. UNSAFE: the version header is not signed, so anyone holding
    /// a signed request can replay it with the header lowered, once per uuid, however old. Only
    /// for validators still on bittensor < 7.2 (docs/miner.md).
    #[arg(long)]
    pub allow_legacy_nonce: bool,
    /// Serve Prometheus metrics at this address (`/metrics`).
    #[arg(long)]
    pub metrics_addr: Option<SocketAddr>,
    /// Check the wallet, the model, the port, the metagraph and the spot venue, answer a BTC
    /// prompt of each timeframe with the served models and check it as the validator would,
    /// then exit (status 1 when a required item fails).
    #[arg(long)]
    pub check: bool,
    /// Measure the miner: in-process on a loopback port, signed requests over HTTP.
    #[arg(long, conflicts_with = "check")]
    pub bench: bool,
    #[arg(long, default_value_t = 200)]
    pub bench_requests: usize,
    #[arg(long, default_value_t = 10)]
    pub bench_concurrency: usize,
    /// `low` (24 h, 5 min steps) or `high` (1 h, 1 min steps).
    #[arg(long, default_value = "low")]
    pub bench_prompt: String,
    #[arg(long, default_value = "BTC")]
    pub bench_asset: String,
    /// One JSON object on stdout (for --check and --bench).
    #[arg(long)]
    pub json: bool,
}

fn hotkey(a: &MineArgs) -> anyhow::Result<Hotkey> {
    if let Some(uri) = &a.hotkey_uri {
        return Ok(Hotkey::from_uri(&uri.0)?);
    }
    let dir = a
        .wallet_path
        .clone()
        .unwrap_or_else(hotkey::default_wallets_dir);
    Ok(Hotkey::from_wallet(&dir, &a.wallet_name, &a.wallet_hotkey)?)
}

fn blacklist(a: &MineArgs) -> anyhow::Result<Blacklist> {
    let mut allow = HashSet::new();
    for hk in &a.allow_hotkeys {
        let hk = hk.trim();
        if hk.is_empty() {
            continue;
        }
        hotkey::ss58_decode(hk).with_context(|| "--allow-hotkeys".to_string())?;
        allow.insert(hk.to_string());
    }
    if !a.min_stake.is_finite() {
        bail!("--min-stake must be a number of TAO");
    }
    let source = match (&a.metagraph_file, &a.metagraph_url) {
        (Some(f), _) => Some(MetagraphSource::File(f.clone())),
        (None, Some(u)) => Some(MetagraphSource::Url(u.clone())),
        (None, None) => None,
    };
    if source.is_none() && allow.is_empty() {
        bail!(
            "no validator could call this miner: give --metagraph-file or --metagraph-url (JSON of \
             hotkeys, stakes and validator permits), or --allow-hotkeys"
        );
    }
    Ok(Blacklist::new(
        BlacklistPolicy {
            min_stake: a.min_stake,
            force_validator_permit: a.force_validator_permit,
            allow,
        },
        source,
    ))
}

fn config(a: &MineArgs, addr: SocketAddr) -> anyhow::Result<MinerConfig> {
    let mut c = MinerConfig {
        addr,
        store_dir: a.store_dir.clone(),
        data_dir: a.data_dir.clone(),
        model_budget: Duration::from_millis(a.model_budget_ms),
        spot_ttl: Duration::from_secs(a.spot_ttl_secs),
        reload_every: Duration::from_secs(a.reload_secs.max(1)),
        metagraph_every: Duration::from_secs(a.metagraph_refresh_secs.max(1)),
        allow_legacy_nonce: a.allow_legacy_nonce,
        champion_cache: a.cache_dir.clone(),
        ..MinerConfig::default()
    };
    c.pyth.timeout = Duration::from_millis(a.pyth_timeout_ms.max(1));
    c.venues.timeout = c.pyth.timeout;
    if let Some(p) = &a.constants {
        c.constants = sn50::constants::Sn50Config::load_overrides(p)?;
    }
    c.remote_store = remote_store(a)?;
    Ok(c)
}

/// For `--model latest` or `champions` with `HIPPIUS_ENDPOINT` set: the object store the
/// publisher writes to (`latest`: its production models are mirrored into `--store-dir`;
/// `champions`: its champion pointers are read there).
fn remote_store(a: &MineArgs) -> anyhow::Result<Option<Arc<dyn Store>>> {
    if !matches!(
        ModelSpec::parse(&a.model),
        ModelSpec::Latest | ModelSpec::Champions
    ) {
        return Ok(None);
    }
    match S3Config::from_env()? {
        Some(cfg) => Ok(Some(Arc::new(S3Store::new(cfg)?))),
        None => Ok(None),
    }
}

/// The models `--model` names; for `latest` from an object store, after mirroring its
/// production models (a failed copy is a note: the local copies, if any, still serve); for
/// `champions`, each pair's champion from the store (one that does not load is a note: the
/// baseline serves that pair, and the reload loop tries again).
async fn load_model(a: &MineArgs) -> anyhow::Result<(ModelHolder, Option<String>)> {
    let spec = ModelSpec::parse(&a.model);
    let mut notes = Vec::new();
    if spec == ModelSpec::Champions {
        let (models, _) = ModelHolder::load(spec, &a.store_dir)?;
        let models = models.with_baseline(&a.baseline)?.with_blend(&a.blend)?;
        let remote = remote_store(a)?;
        let store: Arc<dyn Store> =
            remote.unwrap_or_else(|| Arc::new(publisher::store::FsStore::new(a.store_dir.clone())));
        let cache = publisher::artifacts::ArtifactCache::new(
            a.cache_dir.clone(),
            trainer::dirs::DEFAULT_CACHE_MAX_BYTES,
        );
        // no champion at all is no fault: the baseline serves until one passes the gate
        // (`describe` says so)
        if let Err(e) = models.reload_champions(store.as_ref(), &cache).await {
            notes.push(format!("{e}: the baseline serves those pairs"));
        }
        return Ok((models, (!notes.is_empty()).then(|| notes.join("; "))));
    }
    if let Some(remote) = remote_store(a)? {
        if let Err(e) = crate::miner::mirror_production(remote.as_ref(), &a.store_dir).await {
            notes.push(format!(
                "could not copy the production models from {}: {e}",
                remote.describe()
            ));
        }
    }
    let store = a.store_dir.clone();
    let (models, note) = tokio::task::spawn_blocking(move || ModelHolder::load(spec, &store))
        .await?
        .map_err(|e| anyhow!("--model {}: {e}", a.model))?;
    let models = models.with_baseline(&a.baseline)?.with_blend(&a.blend)?;
    notes.extend(note);
    Ok((models, (!notes.is_empty()).then(|| notes.join("; "))))
}

fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term => {}
        }
        tracing::info!("signal received: shutting down");
        t.cancel();
    });
    token
}

/// Runs `synth-city mine`.
pub async fn run(a: MineArgs) -> anyhow::Result<()> {
    if a.check {
        return check(&a).await;
    }
    if a.bench {
        return bench(&a).await;
    }
    let key = hotkey(&a)?;
    let bl = blacklist(&a)?;
    if let Some(src) = &bl.source {
        let n = bl
            .refresh()
            .await
            .map_err(|e| anyhow!("the metagraph does not load: {e}"))?;
        tracing::info!(neurons = n, source = %src, "metagraph loaded");
        if bl
            .snapshot()
            .is_some_and(|m| !m.neurons.contains_key(&key.ss58))
        {
            tracing::warn!(hotkey = %key.ss58, "our hotkey is not in the metagraph: register it with `btcli subnet register`");
        }
    }
    let (models, note) = load_model(&a).await?;
    if let Some(n) = note {
        tracing::warn!("{n}");
    }
    let addr = SocketAddr::new(a.host, a.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    let model_label = models.describe();
    let mut cfg = config(&a, local)?;
    cfg.nonce_file = Some(a.nonce_file.clone());
    let miner = Miner::new(cfg, key, models, bl)?;
    if a.allow_legacy_nonce {
        tracing::warn!("--allow-legacy-nonce: requests claiming a dendrite version below 7.2.0 skip the nonce's time window; a captured request can be replayed once per uuid");
    }
    let shutdown = shutdown_on_signal();
    miner.spawn_background(shutdown.clone());
    if let Some(m) = a.metrics_addr {
        let l = tokio::net::TcpListener::bind(m)
            .await
            .with_context(|| format!("cannot listen on --metrics-addr {m}"))?;
        tokio::spawn(server::serve_metrics(miner.clone(), l, shutdown.clone()));
    }
    tracing::info!(addr = %local, hotkey = %miner.hotkey.ss58, model = %model_label,
        spot = %miner.spot.describe("BTC"), nonce_file = %a.nonce_file.display(),
        nonces = miner.nonces.len(), "miner listening");
    println!(
        "miner listening on http://{local} as {} serving {model_label}",
        miner.hotkey.ss58
    );
    server::serve(miner, listener, shutdown).await?;
    Ok(())
}

/// `mine --check`: every item reported, exit status 1 if any required one fails.
async fn check(a: &MineArgs) -> anyhow::Result<()> {
    let mut items: Vec<(&str, bool, String)> = Vec::new();
    let key = hotkey(a);
    match &key {
        Ok(k) => items.push((
            "wallet",
            true,
            format!("hotkey {} from {}", k.ss58, k.source),
        )),
        Err(e) => items.push(("wallet", false, format!("{e:#}"))),
    }
    let mut served = None;
    match load_model(a).await {
        Ok((m, None)) => {
            items.push(("model", true, format!("serving {}", m.describe())));
            served = Some(m);
        }
        Ok((_, Some(note))) => items.push(("model", false, note)),
        Err(e) => items.push(("model", false, format!("{e:#}"))),
    }
    let addr = SocketAddr::new(a.host, a.port);
    match tokio::net::TcpListener::bind(addr).await {
        Ok(_) => items.push(("port", true, format!("{addr} is free"))),
        Err(e) => items.push(("port", false, format!("cannot listen on {addr}: {e}"))),
    }
    match blacklist(a) {
        Err(e) => items.push(("metagraph", false, format!("{e:#}"))),
        Ok(bl) => match bl.refresh().await {
            Err(e) => items.push(("metagraph", false, e.to_string())),
            Ok(n) => {
                let mut msg = match &bl.source {
                    Some(s) => format!("{n} neurons from {s}"),
                    None => "no metagraph; allow list only".into(),
                };
                if !bl.policy.allow.is_empty() {
                    msg.push_str(&format!(", {} allowed hotkeys", bl.policy.allow.len()));
                }
                if let (Some(m), Ok(k)) = (bl.snapshot(), &key) {
                    if !m.neurons.contains_key(&k.ss58) {
                        msg.push_str(&format!(
                            "; note: our hotkey {} is not in it (btcli subnet register)",
                            k.ss58
                        ));
                    }
                }
                items.push(("metagraph", true, msg))
            }
        },
    }
    // The spot venue: informative only (the miner falls back when it is away).
    let cfg = config(a, addr).unwrap_or_else(|e| {
        items.push(("store", false, format!("{e:#}")));
        let mut c = MinerConfig::default();
        c.pyth.timeout = Duration::from_millis(a.pyth_timeout_ms.max(1));
        c.venues.timeout = c.pyth.timeout;
        c
    });
    match sn50::venues::PriceClient::new(cfg.venues.clone(), cfg.pyth.clone(), &cfg.constants) {
        Ok(c) => {
            let from = c
                .source("BTC")
                .map(|s| c.describe(&s, true))
                .unwrap_or_else(|e| e.to_string());
            match c.spot("BTC").await {
                Ok(p) => items.push(("spot", true, format!("BTC {} from {from}", p.price))),
                Err(e) => items.push((
                    "spot",
                    true,
                    format!("unreachable, the miner will use its fallback: {e}"),
                )),
            }
        }
        Err(e) => items.push(("spot", true, e.to_string())),
    }
    if let Some(models) = served {
        let key = match &key {
            Ok(k) => k.clone(),
            Err(_) => Hotkey::from_uri("//Bob")?,
        };
        let (ok, detail) = check_answers(cfg, key, models).await;
        items.push(("answer", ok, detail));
    }
    let ok = items.iter().all(|(_, ok, _)| *ok);
    if a.json {
        let v: serde_json::Map<String, serde_json::Value> = items
            .iter()
            .map(|(k, ok, m)| ((*k).to_string(), serde_json::json!({"ok": ok, "detail": m})))
            .collect();
        println!("{}", serde_json::json!({"ok": ok, "checks": v}));
    } else {
        for (k, ok, m) in &items {
            println!("{:<10} {:<4} {m}", k, if *ok { "ok" } else { "FAIL" });
        }
    }
    if ok {
        Ok(())
    } else {
        bail!("the miner is not ready to go live")
    }
}

/// `mine --check`'s `answer` item: a BTC prompt of each timeframe answered in-process by the
/// served models, as a request would be (spot, history from `--data-dir`, the deadline), and
/// checked with the validator's rules. Fails when an answer is refused or invalid, or when a
/// loaded model fails and the GBM answers in its place (a timeframe with no model is noted).
async fn check_answers(cfg: MinerConfig, key: Hotkey, models: ModelHolder) -> (bool, String) {
    let miner = match Miner::new(cfg, key, models, Blacklist::new(Default::default(), None)) {
        Ok(m) => m,
        Err(e) => return (false, e.to_string()),
    };
    let mut ok = true;
    let mut parts = Vec::new();
    for tf in Timeframe::ALL {
        let input = sn50::response::SimulationInput {
            asset: "BTC".into(),
            start_time: next_start_time(),
            time_increment: tf.step_secs(),
            time_length: tf.horizon_secs(),
            num_simulations: 1000,
        };
        let prompt = format!("{} h prompt", tf.horizon_secs() / 3600);
        let t0 = Instant::now();
        let answer = match miner.answer(&input, 12.0).await {
            Ok(a) => a,
            Err(e) => {
                ok = false;
                parts.push(format!("{prompt}: refused ({}): {}", e.status, e.message));
                continue;
            }
        };
        let ms = t0.elapsed().as_millis();
        let report = sn50::response::parse_python_json(&answer.output_json)
            .map(|v| {
                sn50::response::check_response(
                    &sn50::response::PyValue::from_json(&v),
                    &input,
                    true,
                )
            })
            .map_err(|e| e.to_string());
        let valid = match report {
            Ok(r) if r.ok => true,
            Ok(r) => {
                parts.push(format!(
                    "{prompt}: {} answered, but the validator would refuse it: {r:?}",
                    answer.model
                ));
                false
            }
            Err(e) => {
                parts.push(format!("{prompt}: unreadable answer: {e}"));
                false
            }
        };
        ok &= valid;
        match &answer.fallback {
            Some(why) if !why.starts_with("no_model") => {
                ok = false;
                parts.push(format!(
                    "{prompt}: the served model failed, the GBM answered: {why}"
                ));
            }
            Some(_) if valid => parts.push(if miner.models.spec == ModelSpec::Champions {
                format!("{prompt}: gbm (no BTC {tf} champion), valid, {ms} ms")
            } else {
                format!("{prompt}: gbm (no trained {tf} model), valid, {ms} ms")
            }),
            None if valid => parts.push(format!(
                "{prompt}: {} answered, valid by the validator's rules, {ms} ms",
                answer.model
            )),
            _ => {}
        }
    }
    (ok, parts.join("; "))
}

fn percentile(sorted_ms: &[f64], q: f64) -> f64 {
    if sorted_ms.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted_ms.len() as f64).ceil() as usize).clamp(1, sorted_ms.len());
    sorted_ms[rank - 1]
}

/// The `start_time` a validator would send now: the next minute boundary at least 60 s ahead.
fn next_start_time() -> String {
    let now = chrono::Utc::now().timestamp();
    let start = (now / 60 + 2) * 60;
    chrono::DateTime::from_timestamp(start, 0)
        .expect("valid time")
        .format("%Y-%m-%dT%H:%M:%S+00:00")
        .to_string()
}

/// `mine --bench`.
async fn bench(a: &MineArgs) -> anyhow::Result<()> {
    let timeframe = match a.bench_prompt.as_str() {
        "low" => Timeframe::FiveMinutes,
        "high" => Timeframe::OneMinute,
        other => bail!("--bench-prompt {other:?}: use low or high"),
    };
    let (inc, len) = (timeframe.step_secs(), timeframe.horizon_secs());
    if a.bench_concurrency == 0 || a.bench_requests == 0 {
        bail!("--bench-requests and --bench-concurrency must be positive");
    }
    let key = match &a.hotkey_uri {
        Some(_) => hotkey(a)?,
        None => Hotkey::from_uri("//Bob")?,
    };
    let caller = Hotkey::from_uri("//Alice")?;
    let bl = Blacklist::new(
        BlacklistPolicy {
            allow: [caller.ss58.clone()].into_iter().collect(),
            ..BlacklistPolicy::default()
        },
        None,
    );
    let (models, note) = load_model(a).await?;
    if let Some(n) = note {
        tracing::warn!("{n}");
    }
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let addr = listener.local_addr()?;
    let model_label = models.describe();
    let miner = Miner::new(config(a, addr)?, key, models, bl)?;
    let stop = CancellationToken::new();
    let server = tokio::spawn(server::serve(miner.clone(), listener, stop.clone()));
    let url = format!("http://{addr}/Simulation");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()?;
    let caller = Arc::new(caller);
    let axon = miner.hotkey.ss58.clone();
    let asset = a.bench_asset.clone();
    // One caller = one dendrite process (its own uuid, its nonces in order).
    let call = {
        let (http, url, caller, axon, asset) = (
            http.clone(),
            url.clone(),
            caller.clone(),
            axon.clone(),
            asset.clone(),
        );
        move |uuid: String| {
            let (http, url, caller, axon, asset) = (
                http.clone(),
                url.clone(),
                caller.clone(),
                axon.clone(),
                asset.clone(),
            );
            async move {
                let start_time = next_start_time();
                let body = serde_json::json!({
                    "name": "Simulation", "timeout": 12.0, "total_size": 0, "header_size": 0,
                    "dendrite": {}, "axon": {}, "computed_body_hash": "",
                    "simulation_input": {"asset": asset, "start_time": start_time,
                        "time_increment": inc, "time_length": len, "num_simulations": 1000},
                    "simulation_output": null,
                });
                let headers = auth::dendrite_headers(
                    caller.keypair().expect("dev key"),
                    &caller.ss58,
                    &axon,
                    &uuid,
                    auth::now_ns(),
                    90.0,
                );
                let t0 = Instant::now();
                let mut rb = http.post(&url).body(body.to_string());
                for (k, v) in headers {
                    rb = rb.header(k, v);
                }
                let resp = rb.send().await.map_err(|e| e.to_string())?;
                let status = resp.status().as_u16();
                let bytes = resp.bytes().await.map_err(|e| e.to_string())?;
                let ms = t0.elapsed().as_secs_f64() * 1e3;
                if status != 200 {
                    return Err(format!(
                        "HTTP {status}: {}",
                        String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
                    ));
                }
                Ok::<_, String>((ms, bytes, start_time))
            }
        }
    };
    // Warm up: history files, the spot cache, the first allocation of everything; and check
    // one answer as the validator would.
    for i in 0..3 {
        let (_, bytes, start_time) = call(format!("warmup-{i}"))
            .await
            .map_err(|e| anyhow!("warm-up request: {e}"))?;
        if i == 0 {
            let v = sn50::response::parse_python_json(std::str::from_utf8(&bytes)?)?;
            let input = sn50::response::SimulationInput {
                asset: asset.clone(),
                start_time,
                time_increment: inc,
                time_length: len,
                num_simulations: 1000,
            };
            let report = sn50::response::check_response(
                &sn50::response::PyValue::from_json(&v["simulation_output"]),
                &input,
                true,
            );
            if !report.ok {
                bail!("the miner's answer fails the validator's checks: {report:?}");
            }
        }
    }
    let fallbacks_before: u64 = ["error", "deadline", "output", "no_model"]
        .iter()
        .map(|r| miner.metrics.fallbacks.with_label_values(&[r]).get())
        .sum();
    let per_caller = a.bench_requests.div_ceil(a.bench_concurrency);
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..a.bench_concurrency {
        let call = call.clone();
        let n = per_caller.min(a.bench_requests.saturating_sub(c * per_caller));
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            let uuid = format!("bench-{c}-{}", ulid::Ulid::new());
            for _ in 0..n {
                out.push(call(uuid.clone()).await.map(|(ms, b, _)| (ms, b.len())));
            }
            out
        }));
    }
    let mut ms = Vec::new();
    let mut errors = Vec::new();
    let mut body_bytes = 0usize;
    for t in tasks {
        for r in t.await? {
            match r {
                Ok((m, n)) => {
                    ms.push(m);
                    body_bytes = n;
                }
                Err(e) => errors.push(e),
            }
        }
    }
    let wall = t0.elapsed().as_secs_f64();
    stop.cancel();
    let _ = server.await;
    ms.sort_by(f64::total_cmp);
    let fallbacks: u64 = ["error", "deadline", "output", "no_model"]
        .iter()
        .map(|r| miner.metrics.fallbacks.with_label_values(&[r]).get())
        .sum::<u64>()
        - fallbacks_before;
    let mean = ms.iter().sum::<f64>() / ms.len().max(1) as f64;
    let spot_sources: serde_json::Map<String, serde_json::Value> = crate::miner::SpotSource::LABELS
        .iter()
        .map(|s| {
            let n = miner.metrics.spot_source.with_label_values(&[s]).get();
            (s.to_string(), serde_json::json!(n))
        })
        .collect();
    let report = serde_json::json!({
        "prompt": a.bench_prompt, "asset": asset, "model": model_label,
        "requests": ms.len(), "errors": errors.len(), "concurrency": a.bench_concurrency,
        "p50_ms": percentile(&ms, 0.50), "p90_ms": percentile(&ms, 0.90),
        "p99_ms": percentile(&ms, 0.99), "max_ms": ms.last().copied().unwrap_or(f64::NAN),
        "mean_ms": mean, "requests_per_s": ms.len() as f64 / wall,
        "body_bytes": body_bytes, "fallbacks": fallbacks,
        "spot_sources": spot_sources,
        "first_error": errors.first(),
    });
    if a.json {
        println!("{report}");
    } else {
        println!(
            "{} requests ({} errors), {} concurrent, {} prompt, model {}: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms, {:.1} req/s, {} GBM fallbacks",
            ms.len(), errors.len(), a.bench_concurrency, a.bench_prompt, model_label,
            percentile(&ms, 0.5), percentile(&ms, 0.9), percentile(&ms, 0.99),
            ms.last().copied().unwrap_or(f64::NAN), ms.len() as f64 / wall, fallbacks
        );
    }
    if !errors.is_empty() {
        bail!("{} requests failed; the first: {}", errors.len(), errors[0]);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn the_secret_uri_never_shows_in_debug_output() {
        let cli = crate::cli::Cli::parse_from(["synth-city", "mine", "--hotkey-uri", "//Bob"]);
        let d = format!("{cli:?}");
        assert!(!d.contains("//Bob") && d.contains("redacted"), "{d}");
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 50.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&v[..1], 0.99), 1.0);
        assert!(percentile(&[], 0.5).is_nan());
    }
}
