//! The SN50 miner's axon over real HTTP on loopback: signed requests answered with responses
//! that pass the validator's rules (24 h and 1 h, a trained checkpoint and the GBM), every
//! refusal with the axon's status and `{"message"}` (bad signature, replayed and stale nonces,
//! body-hash mismatch, blacklisted, unknown synapse, garbage headers and bodies, an unknown
//! asset), a two-hour-old signed request with a lowered dendrite version refused (and let
//! through only with the legacy flag), a replay refused after a restart (the nonce file), the GBM
//! fallback when the model errs, is too slow or emits unusable prices, spot prices from a
//! local server speaking Binance's ticker and Pyth Hermes' protocols (and their outage), the metagraph from a file and
//! an HTTP endpoint, `--model latest` following `models/production.json`, `mine --check`, and
//! the real client: Python bittensor 10.0.1's `Dendrite` calling the Rust axon.

mod common;
use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::RngCore;
use sn50::crps::Paths;
use sn50::forecast::{ForecastError, ForecastRequest, Forecaster};
use sn50::response::{check_response, parse_python_json, PyValue, SimulationInput};
use synth_city::miner::auth;
use synth_city::miner::hotkey::Hotkey;
use synth_city::miner::metagraph::{Blacklist, BlacklistPolicy, Metagraph, MetagraphSource};
use synth_city::miner::{ErrorText, Miner, MinerConfig, ModelHolder, ModelSpec};
use tokio_util::sync::CancellationToken;

const ALICE: &str = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY";
const BOB: &str = "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty";
const CHARLIE: &str = "5FLSigC9HGRKVhB9FiEo4Y3koPsNmBmLJbpXg2mp1hXcS59Y";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn data_dir() -> Option<PathBuf> {
    let d = root().join("../shared/data");
    d.is_dir().then_some(d)
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_synth-city"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

// ---------------------------------------------------------------------------------------------
// A tiny HTTP/1.1 server for the stand-ins (Pyth Hermes, a metagraph endpoint)
// ---------------------------------------------------------------------------------------------

type Handler = Arc<dyn Fn(&str) -> (u16, String) + Send + Sync>;

struct Stub {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
}

impl Stub {
    fn start(handler: Handler) -> Stub {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { continue };
                let handler = handler.clone();
                let h = h.clone();
                std::thread::spawn(move || {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    h.fetch_add(1, Ordering::SeqCst);
                    let text = String::from_utf8_lossy(&buf);
                    let target = text.split_whitespace().nth(1).unwrap_or("/").to_string();
                    let (status, body) = handler(&target);
                    let _ = write!(
                        s,
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                });
            }
        });
        Stub { addr, hits }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// The spot venues of BTC and ETH: Binance `/api/v3/ticker/price?symbol=...`
/// (`{"symbol","price"}`, the price a decimal string), and Hermes
/// `/v2/updates/price/latest?ids[]=...` as documented (`parsed[0].price` with a string mantissa
/// and an exponent) for assets whose source is Pyth. Both answer `price_mantissa` x 10^-8.
/// `mode`: 0 up, 1 answers 503, 2 answers garbage.
fn hermes(price_mantissa: i64, mode: Arc<AtomicU8>) -> Stub {
    Stub::start(Arc::new(move |target: &str| {
        match mode.load(Ordering::SeqCst) {
            1 => return (503, "{\"error\":\"overloaded\"}".into()),
            2 => return (200, "<html>".into()),
            _ => {}
        }
        if let Some(symbol) = target
            .strip_prefix("/api/v3/ticker/price?symbol=")
            .filter(|s| s.ends_with("USDT"))
        {
            let price = format!(
                "{}.{:08}",
                price_mantissa / 100_000_000,
                price_mantissa % 100_000_000
            );
            return (
                200,
                serde_json::json!({"symbol": symbol, "price": price}).to_string(),
            );
        }
        if !target.starts_with("/v2/updates/price/latest") {
            return (404, "{}".into());
        }
        let id = target
            .split(['?', '&'])
            .find_map(|kv| {
                kv.strip_prefix("ids%5B%5D=")
                    .or_else(|| kv.strip_prefix("ids[]="))
            })
            .unwrap_or("")
            .to_string();
        let now = chrono::Utc::now().timestamp();
        let p = serde_json::json!({"price": price_mantissa.to_string(), "conf": "1000000", "expo": -8, "publish_time": now});
        let body = serde_json::json!({
            "binary": {"encoding": "hex", "data": ["00"]},
            "parsed": [{"id": id, "price": p, "ema_price": p,
                        "metadata": {"slot": 1, "proof_available_time": now, "prev_publish_time": now}}]
        });
        (200, body.to_string())
    }))
}

// ---------------------------------------------------------------------------------------------
// The miner in-process, and a dendrite
// ---------------------------------------------------------------------------------------------

struct Running {
    miner: Arc<Miner>,
    url: String,
    stop: CancellationToken,
    _pyth: Stub,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn allow_alice() -> Blacklist {
    Blacklist::new(
        BlacklistPolicy {
            allow: [ALICE.to_string()].into_iter().collect(),
            ..BlacklistPolicy::default()
        },
        None,
    )
}

async fn start(
    models: ModelHolder,
    blacklist: Blacklist,
    tweak: impl FnOnce(&mut MinerConfig),
) -> Running {
    // Pyth up, at 60000.0, unless the test points elsewhere.
    let pyth = hermes(6_000_000_000_000, Arc::new(AtomicU8::new(0)));
    let mut cfg = MinerConfig::default();
    cfg.pyth.hermes_url = pyth.url();
    cfg.venues.binance_url = pyth.url();
    cfg.data_dir = data_dir().unwrap_or_else(|| PathBuf::from("/nonexistent"));
    tweak(&mut cfg);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    cfg.addr = addr;
    let miner = Miner::new(cfg, Hotkey::from_uri("//Bob").unwrap(), models, blacklist).unwrap();
    let stop = CancellationToken::new();
    miner.spawn_background(stop.clone());
    tokio::spawn(synth_city::miner::server::serve(
        miner.clone(),
        listener,
        stop.clone(),
    ));
    Running {
        miner,
        url: format!("http://{addr}"),
        stop,
        _pyth: pyth,
    }
}

fn start_time_in(secs: i64) -> (String, i64) {
    let t = (chrono::Utc::now().timestamp() / 60) * 60 + secs;
    (
        chrono::DateTime::from_timestamp(t, 0)
            .unwrap()
            .format("%Y-%m-%dT%H:%M:%S+00:00")
            .to_string(),
        t,
    )
}

fn body(asset: &str, start: &str, inc: i64, len: i64, n: i64) -> serde_json::Value {
    serde_json::json!({
        "name": "Simulation", "timeout": 12.0, "total_size": 0, "header_size": 0,
        "dendrite": {"status_code": null, "nonce": null}, "axon": {"status_code": null},
        "computed_body_hash": "",
        "simulation_input": {"asset": asset, "start_time": start, "time_increment": inc,
                             "time_length": len, "num_simulations": n},
        "simulation_output": null
    })
}

/// A dendrite: a signer, the hotkey it claims, its uuid.
struct Dendrite {
    signer: Hotkey,
    claims: String,
    uuid: String,
    http: reqwest::Client,
}

impl Dendrite {
    fn new(uri: &str) -> Self {
        let signer = Hotkey::from_uri(uri).unwrap();
        Dendrite {
            claims: signer.ss58.clone(),
            signer,
            uuid: format!("uuid-{}", rand::rng().next_u64()),
            http: reqwest::Client::new(),
        }
    }

    fn headers(&self, nonce: i128, axon: &str) -> Vec<(&'static str, String)> {
        auth::dendrite_headers(
            self.signer.keypair().unwrap(),
            &self.claims,
            axon,
            &self.uuid,
            nonce,
            90.0,
        )
    }

    async fn send(
        &self,
        url: &str,
        headers: Vec<(&'static str, String)>,
        body: String,
    ) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
        let mut rb = self.http.post(format!("{url}/Simulation")).body(body);
        for (k, v) in headers {
            rb = rb.header(k, v);
        }
        let r = rb.send().await.unwrap();
        let status = r.status().as_u16();
        let h = r.headers().clone();
        let text = r.text().await.unwrap();
        let v = parse_python_json(&text)
            .unwrap_or_else(|e| panic!("status {status}: body is not JSON ({e:?}): {text:.300}"));
        (status, h, v)
    }

    /// A correctly signed request for the axon at `url` (hotkey //Bob).
    async fn call(
        &self,
        url: &str,
        b: &serde_json::Value,
    ) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
        self.send(url, self.headers(auth::now_ns(), BOB), b.to_string())
            .await
    }
}

fn assert_valid(v: &serde_json::Value, asset: &str, start: &str, inc: i64, len: i64, n: i64) {
    let input = SimulationInput {
        asset: asset.into(),
        start_time: start.into(),
        time_increment: inc,
        time_length: len,
        num_simulations: n,
    };
    assert_eq!(
        v["simulation_input"]["start_time"], start,
        "the body is echoed"
    );
    let report = check_response(&PyValue::from_json(&v["simulation_output"]), &input, true);
    assert!(report.ok, "{report:?}");
}

fn assert_refused(
    r: &(u16, reqwest::header::HeaderMap, serde_json::Value),
    status: u16,
    needle: &str,
) {
    let (s, h, v) = r;
    assert_eq!(*s, status, "{v}");
    let m = v["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no message: {v}"));
    assert!(m.contains(needle), "{needle:?} not in {m:?}");
    assert_eq!(
        h.get("bt_header_axon_status_code")
            .unwrap()
            .to_str()
            .unwrap(),
        status.to_string()
    );
    assert!(h.get("bt_header_axon_status_message").is_some());
}

fn fallbacks(m: &Miner, reason: &str) -> u64 {
    m.metrics.fallbacks.with_label_values(&[reason]).get()
}

/// Train a tiny 5-minute BTC checkpoint with the CLI (about a second).
fn train_checkpoint(out: &Path) -> PathBuf {
    train_checkpoint_at(out, "5m")
}

/// Train a tiny BTC checkpoint of `timeframe` with the CLI.
fn train_checkpoint_at(out: &Path, timeframe: &str) -> PathBuf {
    common::tiny_checkpoint(&data_dir().unwrap(), out, timeframe)
}

// ---------------------------------------------------------------------------------------------
// Failing models (test doubles for the fallback paths; the served model is otherwise real)
// ---------------------------------------------------------------------------------------------

struct Broken(&'static str);

impl Forecaster for Broken {
    fn name(&self) -> &str {
        "broken"
    }
    fn forecast(
        &self,
        req: &ForecastRequest<'_>,
        _: &mut dyn RngCore,
    ) -> Result<Paths, ForecastError> {
        match self.0 {
            "slow" => {
                std::thread::sleep(Duration::from_secs(20));
                Err(ForecastError::Model("too late anyway".into()))
            }
            "nan" => Paths::from_flat(
                vec![f64::NAN; req.num_simulations * req.num_points()],
                req.num_simulations,
            )
            .map_err(|e| ForecastError::Model(e.to_string())),
            _ => Err(ForecastError::Model("weights are corrupt".into())),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trained_model_answers_and_both_prompts_pass_the_validators_rules() {
    let Some(_) = data_dir() else {
        eprintln!("skipped: ../shared/data is absent");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let ck = train_checkpoint(tmp.path());
    let mode = Arc::new(AtomicU8::new(0));
    let pyth = hermes(9_876_543_210_000, mode.clone()); // 98765.4321
    let (models, _) = ModelHolder::load(ModelSpec::Paths(vec![ck.clone()]), tmp.path()).unwrap();
    let m = start(models, allow_alice(), |c| {
        c.pyth.hermes_url = pyth.url();
        c.venues.binance_url = pyth.url();
        c.spot_ttl = Duration::from_secs(600);
    })
    .await;
    let d = Dendrite::new("//Alice");
    // 24 h: the checkpoint answers (5-minute model), from the Pyth price.
    let (start_s, _) = start_time_in(120);
    let (s, h, v) = d
        .call(&m.url, &body("BTC", &start_s, 300, 86_400, 1000))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_valid(&v, "BTC", &start_s, 300, 86_400, 1000);
    let out = v["simulation_output"].as_array().unwrap();
    assert_eq!(out.len(), 1002);
    assert_eq!(
        out[2][0].as_f64().unwrap(),
        98765.432,
        "paths start at the spot, rounded"
    );
    assert_eq!(h.get("bt_header_axon_status_code").unwrap(), "200");
    assert_eq!(h.get("bt_header_axon_status_message").unwrap(), "Success");
    assert_eq!(h.get("bt_header_axon_hotkey").unwrap(), BOB);
    assert!(h.get("bt_header_axon_process_time").is_some());
    assert_eq!(v["axon"]["status_code"], 200);
    assert_eq!(fallbacks(&m.miner, "error"), 0, "the model itself answered");
    assert_eq!(pyth.hits.load(Ordering::SeqCst), 1);
    // 1 h: no 1-minute model is loaded; the GBM answers, counted as such (not as an error).
    let (start_s, _) = start_time_in(60);
    let (s, _, v) = d
        .call(&m.url, &body("BTC", &start_s, 60, 3_600, 1000))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_valid(&v, "BTC", &start_s, 60, 3_600, 1000);
    assert_eq!(fallbacks(&m.miner, "no_model"), 1);
    assert_eq!(fallbacks(&m.miner, "error"), 0);
    assert_eq!(
        pyth.hits.load(Ordering::SeqCst),
        1,
        "the spot price was cached"
    );
    // GET is accepted as the axon accepts it.
    let mut rb = d
        .http
        .get(format!("{}/Simulation", m.url))
        .body(body("ETH", &start_s, 60, 3_600, 10).to_string());
    for (k, v) in d.headers(auth::now_ns(), BOB) {
        rb = rb.header(k, v);
    }
    let r = rb.send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // Metrics count what happened.
    let text = m.miner.metrics.render();
    assert!(
        text.contains("sc_miner_fallbacks_total{reason=\"no_model\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("sc_miner_requests_total{status=\"200\"} 3"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_has_the_axons_status_and_message() {
    let mut policy = BlacklistPolicy::default();
    policy.allow.insert(ALICE.to_string());
    let bl = Blacklist::new(policy, None);
    // Charlie is registered with too little stake.
    bl.set(
        Metagraph::parse(&format!(
            r#"{{"hotkeys":["{CHARLIE}"],"stake":[999],"validator_permit":[true]}}"#
        ))
        .unwrap(),
    );
    let m = start(
        ModelHolder::load(ModelSpec::Gbm, Path::new(".")).unwrap().0,
        bl,
        |c| c.max_body_bytes = 64 * 1024,
    )
    .await;
    let (start_s, _) = start_time_in(120);
    let good = body("BTC", &start_s, 60, 3_600, 5).to_string();
    let alice = Dendrite::new("//Alice");

    // Signed by Charlie, claiming to be Alice: a signature mismatch.
    let mut forger = Dendrite::new("//Charlie");
    forger.claims = ALICE.into();
    let r = forger
        .send(&m.url, forger.headers(auth::now_ns(), BOB), good.clone())
        .await;
    assert_refused(&r, 401, "Signature mismatch");
    // Signed for another axon's hotkey.
    let r = alice
        .send(&m.url, alice.headers(auth::now_ns(), CHARLIE), good.clone())
        .await;
    assert_refused(&r, 401, "Signature mismatch");
    // A good request, then its replay.
    let h = alice.headers(auth::now_ns(), BOB);
    let r = alice.send(&m.url, h.clone(), good.clone()).await;
    assert_eq!(r.0, 200, "{}", r.2);
    let r = alice.send(&m.url, h, good.clone()).await;
    assert_refused(&r, 401, "Nonce is too old, a newer one was last processed");
    // A stale first nonce: older than 4 s + the header timeout.
    let stale = Dendrite::new("//Alice");
    let mut h = stale.headers(auth::now_ns() - 200_000_000_000, BOB);
    h.retain(|(k, _)| *k != "timeout");
    h.push(("timeout", "5.0".into()));
    let r = stale.send(&m.url, h, good.clone()).await;
    assert_refused(&r, 401, "Nonce is too old");
    // A missing nonce.
    let mut h = alice.headers(auth::now_ns(), BOB);
    h.retain(|(k, _)| *k != "bt_header_dendrite_nonce");
    assert_refused(
        &alice.send(&m.url, h, good.clone()).await,
        401,
        "Missing Nonce",
    );
    // Body hash: a correctly signed request that claims another body hash.
    let hb = Dendrite::new("//Alice");
    let nonce = auth::now_ns();
    let msg = auth::signed_message(nonce, ALICE, BOB, &hb.uuid, "00");
    let mut h = hb.headers(nonce, BOB);
    for (k, v) in h.iter_mut() {
        if *k == "computed_body_hash" {
            *v = "00".into();
        }
        if *k == "bt_header_dendrite_signature" {
            *v = auth::sign(hb.signer.keypair().unwrap(), &msg);
        }
    }
    assert_refused(
        &hb.send(&m.url, h, good.clone()).await,
        400,
        "Hash mismatch",
    );
    // Blacklisted: unknown, low stake, no hotkey at all; refused before any signature work.
    let dave = Dendrite::new("//Dave");
    assert_refused(
        &dave
            .send(&m.url, dave.headers(auth::now_ns(), BOB), good.clone())
            .await,
        403,
        "Forbidden. Key is blacklisted: Unrecognized hotkey",
    );
    let charlie = Dendrite::new("//Charlie");
    assert_refused(
        &charlie
            .send(&m.url, charlie.headers(auth::now_ns(), BOB), good.clone())
            .await,
        403,
        "low stake",
    );
    let mut h = alice.headers(auth::now_ns(), BOB);
    h.retain(|(k, _)| *k != "bt_header_dendrite_hotkey");
    assert_refused(
        &alice.send(&m.url, h, good.clone()).await,
        403,
        "without a dendrite or hotkey",
    );
    // Unknown synapse, other methods.
    let r = alice
        .http
        .post(format!("{}/Forward", m.url))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("Synapse name 'Forward' not found"),
        "{v}"
    );
    let r = alice.http.get(&m.url).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let r = alice
        .http
        .put(format!("{}/Simulation", m.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);
    // Garbage headers: 400, naming the header.
    for (name, value, needle) in [
        (
            "bt_header_dendrite_nonce",
            "soon",
            "bt_header_dendrite_nonce",
        ),
        (
            "bt_header_dendrite_version",
            "1.2.3",
            "bt_header_dendrite_version",
        ),
        ("timeout", "never", "timeout"),
        ("bt_header_axon_port", "http", "bt_header_axon_port"),
        ("bt_header_input_obj_simulation_input", "%%%", "not base64"),
    ] {
        let mut h = alice.headers(auth::now_ns(), BOB);
        h.retain(|(k, _)| *k != name);
        h.push((name, value.into()));
        assert_refused(&alice.send(&m.url, h, good.clone()).await, 400, needle);
    }
    let mut h = alice.headers(auth::now_ns(), BOB);
    h.retain(|(k, _)| *k != "bt_header_input_obj_simulation_input");
    assert_refused(
        &alice.send(&m.url, h, good.clone()).await,
        400,
        "missing header",
    );
    // Garbage bodies from an authenticated caller: 400 (or 413), each saying what is wrong.
    let huge = format!("{{\"x\":\"{}\"}}", "a".repeat(100_000));
    for (b, status, needle) in [
        ("not json".to_string(), 400, "not JSON"),
        ("[1,2]".to_string(), 400, "JSON object"),
        ("{}".to_string(), 400, "no simulation_input"),
        (r#"{"simulation_input": 5}"#.to_string(), 400, "simulation_input"),
        (r#"{"simulation_input": {"start_time": "tomorrow"}}"#.to_string(), 400, "start_time"),
        (r#"{"simulation_input": {"start_time": "2026-06-01T12:00:00+00:00", "time_increment": 7}}"#.to_string(), 400, "time_increment"),
        (r#"{"simulation_input": {"start_time": "2026-06-01T12:00:00+00:00", "num_simulations": 99999999}}"#.to_string(), 400, "num_simulations"),
        (r#"{"simulation_input": {"asset": "NOPE", "start_time": "2026-06-01T12:00:00+00:00"}}"#.to_string(), 422, "\"NOPE\" is not an asset this miner knows; known assets: "),
        (huge, 413, "larger than"),
    ] {
        let r = alice.send(&m.url, alice.headers(auth::now_ns(), BOB), b).await;
        assert_refused(&r, status, needle);
    }
    // Raw garbage on the socket: the server survives.
    let addr: SocketAddr = m.url.trim_start_matches("http://").parse().unwrap();
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"\x00\x01GARBAGE\r\n\r\n").unwrap();
    let mut sink = Vec::new();
    let _ = s.read_to_end(&mut sink);
    // After all of it, a good request is still answered.
    let r = alice
        .call(&m.url, &body("BTC", &start_s, 60, 3_600, 5))
        .await;
    assert_eq!(r.0, 200, "{}", r.2);
    assert_valid(&r.2, "BTC", &start_s, 60, 3_600, 5);
}

/// `headers` with `name` set to `value` (or removed when `None`).
fn with_header(
    mut headers: Vec<(&'static str, String)>,
    name: &'static str,
    value: Option<&str>,
) -> Vec<(&'static str, String)> {
    headers.retain(|(k, _)| *k != name);
    if let Some(v) = value {
        headers.push((name, v.to_string()));
    }
    headers
}

const TWO_HOURS_NS: i128 = 7_200 * 1_000_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_signed_request_is_refused_whatever_version_it_claims() {
    let gbm = || ModelHolder::load(ModelSpec::Gbm, Path::new(".")).unwrap().0;
    let m = start(gbm(), allow_alice(), |_| {}).await;
    let (start_s, _) = start_time_in(120);
    let good = body("BTC", &start_s, 60, 3_600, 5).to_string();
    // A signed request captured two hours ago, replayed with the unsigned version header
    // lowered below 7.2.0, or removed: each uuid is new to this miner.
    for version in [Some("7001999"), Some("0"), None] {
        let old = Dendrite::new("//Alice");
        let h = old.headers(auth::now_ns() - TWO_HOURS_NS, BOB);
        let h = with_header(h, "bt_header_dendrite_version", version);
        let r = old.send(&m.url, h, good.clone()).await;
        assert_refused(
            &r,
            401,
            "Nonce is too old: acceptable delta is 94.00 seconds",
        );
        assert_refused(&r, 401, "bt_header_dendrite_nonce");
        assert_refused(&r, 401, "whatever bt_header_dendrite_version says");
    }
    assert!(m.miner.nonces.is_empty(), "nothing refused was recorded");
    // A fresh request with an old version header is answered.
    let alice = Dendrite::new("//Alice");
    let h = with_header(
        alice.headers(auth::now_ns(), BOB),
        "bt_header_dendrite_version",
        Some("7001999"),
    );
    let r = alice.send(&m.url, h, good.clone()).await;
    assert_eq!(r.0, 200, "{}", r.2);
    // An unknown asset: 422 naming it and the assets this miner knows.
    let r = alice
        .call(&m.url, &body("DOGEX", &start_s, 60, 3_600, 5))
        .await;
    assert_refused(&r, 422, "\"DOGEX\" is not an asset this miner knows");
    assert_refused(&r, 422, "BTC, ");
    assert_refused(&r, 422, "ETH");
    drop(m);

    // With --allow-legacy-nonce, the old behaviour: an old version skips the window (once
    // per uuid), a version from 7.2.0 on does not.
    let m = start(gbm(), allow_alice(), |c| c.allow_legacy_nonce = true).await;
    let old = Dendrite::new("//Alice");
    let h = with_header(
        old.headers(auth::now_ns() - TWO_HOURS_NS, BOB),
        "bt_header_dendrite_version",
        Some("7001999"),
    );
    let r = old.send(&m.url, h.clone(), good.clone()).await;
    assert_eq!(r.0, 200, "{}", r.2);
    let r = old.send(&m.url, h, good.clone()).await;
    assert_refused(&r, 401, "Nonce is too old, a newer one was last processed");
    let new = Dendrite::new("//Alice");
    let r = new
        .send(
            &m.url,
            new.headers(auth::now_ns() - TWO_HOURS_NS, BOB),
            good.clone(),
        )
        .await;
    assert_refused(&r, 401, "Nonce is too old: acceptable delta");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_is_refused_after_a_restart() {
    let gbm = || ModelHolder::load(ModelSpec::Gbm, Path::new(".")).unwrap().0;
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("state/miner-nonces.jsonl");
    let (start_s, _) = start_time_in(120);
    let good = body("BTC", &start_s, 60, 3_600, 5).to_string();
    let alice = Dendrite::new("//Alice");
    let h = alice.headers(auth::now_ns(), BOB);
    let with_file = |c: &mut MinerConfig| c.nonce_file = Some(file.clone());
    let m = start(gbm(), allow_alice(), with_file).await;
    let r = alice.send(&m.url, h.clone(), good.clone()).await;
    assert_eq!(r.0, 200, "{}", r.2);
    drop(m);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains(&format!("{ALICE}:{}", alice.uuid)),
        "the nonce file: {text}"
    );
    // A new miner on the same file refuses the replay of the answered request.
    let m = start(gbm(), allow_alice(), with_file).await;
    assert_eq!(m.miner.nonces.len(), 1);
    let r = alice.send(&m.url, h.clone(), good.clone()).await;
    assert_refused(&r, 401, "Nonce is too old, a newer one was last processed");
    // The dendrite's next request goes through.
    let r = alice.call(&m.url, &good.parse().unwrap()).await;
    assert_eq!(r.0, 200, "{}", r.2);
    drop(m);
    // Without the file, a restarted miner would have answered the replay (still in its window).
    let m = start(gbm(), allow_alice(), |_| {}).await;
    let r = alice.send(&m.url, h, good.clone()).await;
    assert_eq!(r.0, 200, "{}", r.2);
    // An unusable path is named.
    let blocker = tmp.path().join("blocker");
    std::fs::write(&blocker, "x").unwrap();
    let cfg = MinerConfig {
        nonce_file: Some(blocker.join("nonces.jsonl")),
        ..MinerConfig::default()
    };
    let e = Miner::new(
        cfg,
        Hotkey::from_uri("//Bob").unwrap(),
        gbm(),
        allow_alice(),
    )
    .err()
    .expect("refused");
    assert!(e.contains("--nonce-file") && e.contains("blocker"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gbm_answers_when_the_model_fails_is_slow_or_emits_bad_prices() {
    let pyth = hermes(6_500_000_000_000, Arc::new(AtomicU8::new(0)));
    let (start_s, _) = start_time_in(120);
    let d = Dendrite::new("//Alice");
    // The slow model sleeps 20 s; the budget is 300 ms (a 1 h prompt keeps the GBM quick in a
    // debug build).
    for (kind, reason, inc, len) in [
        ("error", "error", 300, 86_400),
        ("nan", "output", 300, 86_400),
        ("slow", "deadline", 60, 3_600),
    ] {
        let m = start(
            ModelHolder::fixed(Arc::new(Broken(kind)), kind),
            allow_alice(),
            |c| {
                c.pyth.hermes_url = pyth.url();
                c.venues.binance_url = pyth.url();
                c.model_budget = Duration::from_millis(300);
            },
        )
        .await;
        let t0 = Instant::now();
        let (s, _, v) = d.call(&m.url, &body("BTC", &start_s, inc, len, 1000)).await;
        assert_eq!(s, 200, "{kind}: {v}");
        assert_valid(&v, "BTC", &start_s, inc, len, 1000);
        assert_eq!(fallbacks(&m.miner, reason), 1, "{kind}");
        if kind == "slow" {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "did not wait for the slow model: {:?}",
                t0.elapsed()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spot_prices_survive_a_venue_outage() {
    let mode = Arc::new(AtomicU8::new(0));
    let pyth = hermes(10_000_012_345_678, mode.clone()); // 100000.12345678
    let data = tempfile::tempdir().unwrap();
    std::fs::write(
        data.path().join("BTC_5m.csv"),
        "timestamp,open,high,low,close,volume\n1730750700,1,1,1,67695.5,1\n1730751000,1,1,1,67684.25,1\n",
    )
    .unwrap();
    let gbm = || ModelHolder::load(ModelSpec::Gbm, Path::new(".")).unwrap().0;
    let m = start(gbm(), allow_alice(), |c| {
        c.pyth.hermes_url = pyth.url();
        c.venues.binance_url = pyth.url();
        c.data_dir = data.path().to_path_buf();
        c.spot_ttl = Duration::ZERO; // ask the venue every time
        c.spot_retry_after = Duration::ZERO;
    })
    .await;
    let d = Dendrite::new("//Alice");
    let (start_s, _) = start_time_in(120);
    let first = |v: &serde_json::Value| v["simulation_output"][2][0].as_f64().unwrap();
    let (s, _, v) = d.call(&m.url, &body("BTC", &start_s, 60, 3_600, 3)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        first(&v),
        100000.12,
        "8 significant digits of Binance's price"
    );
    let src = |m: &Miner, s: &str| m.metrics.spot_source.with_label_values(&[s]).get();
    assert_eq!(src(&m.miner, "binance"), 1, "BTC's venue is Binance");
    assert_eq!(src(&m.miner, "pyth"), 0);
    // Outage (503, then garbage): the last good price.
    for bad in [1, 2] {
        mode.store(bad, Ordering::SeqCst);
        let (s, _, v) = d.call(&m.url, &body("BTC", &start_s, 60, 3_600, 3)).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(first(&v), 100000.12);
    }
    assert_eq!(src(&m.miner, "stale_cache"), 2);
    // Back up: Binance again.
    mode.store(0, Ordering::SeqCst);
    let (s, _, _) = d.call(&m.url, &body("BTC", &start_s, 60, 3_600, 3)).await;
    assert_eq!(s, 200);
    assert_eq!(src(&m.miner, "binance"), 2);
    // A miner that never reached its venue: the last close in the data directory.
    let m2 = start(gbm(), allow_alice(), |c| {
        c.pyth.hermes_url = format!("http://127.0.0.1:{}", free_port());
        c.venues.binance_url = c.pyth.hermes_url.clone();
        c.data_dir = data.path().to_path_buf();
    })
    .await;
    let (s, _, v) = d.call(&m2.url, &body("BTC", &start_s, 60, 3_600, 3)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(first(&v), 67684.25);
    assert_eq!(src(&m2.miner, "last_close"), 1);
    // And no data either: 503 with the reason.
    let r = d.call(&m2.url, &body("ETH", &start_s, 60, 3_600, 3)).await;
    assert_refused(&r, 503, "no spot price for ETH");
    assert_refused(&r, 503, "binance ETHUSDT at http://127.0.0.1:");
    // An asset whose source the constants set to Pyth: its spot comes from Hermes.
    let m3 = start(gbm(), allow_alice(), |c| {
        c.pyth.hermes_url = pyth.url();
        c.venues.binance_url = format!("http://127.0.0.1:{}", free_port());
        c.constants
            .apply(
                toml::from_str(
                    "[price_sources]\nBTC = { venue = \"pyth\", symbol = \"Crypto.BTC/USD\" }",
                )
                .unwrap(),
            )
            .unwrap();
    })
    .await;
    let (s, _, v) = d.call(&m3.url, &body("BTC", &start_s, 60, 3_600, 3)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        first(&v),
        100000.12,
        "8 significant digits of the Pyth price"
    );
    assert_eq!(src(&m3.miner, "pyth"), 1);
    assert_eq!(src(&m3.miner, "binance"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metagraph_comes_from_an_endpoint_and_a_file_and_is_refreshed() {
    let stake = Arc::new(Mutex::new(5000.0f64));
    let s2 = stake.clone();
    let endpoint = Stub::start(Arc::new(move |target: &str| {
        if target != "/metagraph" {
            return (404, "{}".into());
        }
        let st = *s2.lock().unwrap();
        (
            200,
            format!(
                r#"{{"hotkeys":["{ALICE}","{CHARLIE}"],"stake":[{st},20000],"validator_permit":[true,false]}}"#
            ),
        )
    }));
    let policy = BlacklistPolicy {
        min_stake: 1000.0,
        force_validator_permit: true,
        allow: HashSet::new(),
    };
    let bl = Blacklist::new(
        policy,
        Some(MetagraphSource::Url(format!(
            "{}/metagraph",
            endpoint.url()
        ))),
    );
    assert_eq!(bl.refresh().await.unwrap(), 2);
    let m = start(
        ModelHolder::load(ModelSpec::Gbm, Path::new(".")).unwrap().0,
        bl,
        |c| c.metagraph_every = Duration::from_millis(200),
    )
    .await;
    let (start_s, _) = start_time_in(120);
    let b = body("BTC", &start_s, 60, 3_600, 2);
    let alice = Dendrite::new("//Alice");
    let (s, _, v) = alice.call(&m.url, &b).await;
    assert_eq!(s, 200, "{v}");
    // Charlie has stake but no permit, which this miner requires.
    let charlie = Dendrite::new("//Charlie");
    assert_refused(&charlie.call(&m.url, &b).await, 403, "non-validator");
    // Alice's stake drops: the next refresh refuses her.
    *stake.lock().unwrap() = 10.0;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = alice.call(&m.url, &b).await;
        if r.0 == 403 {
            assert_refused(&r, 403, "low stake");
            break;
        }
        assert!(Instant::now() < deadline, "the metagraph was not refreshed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The endpoint goes away: the last snapshot stays.
    let bl = Blacklist::new(
        BlacklistPolicy::default(),
        Some(MetagraphSource::Url(format!(
            "http://127.0.0.1:{}/m",
            free_port()
        ))),
    );
    assert!(bl.refresh().await.unwrap_err().contains("metagraph"));
    // A file, with the neuron-list form.
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("mg.json");
    std::fs::write(
        &f,
        format!(
            r#"[{{"uid": 3, "hotkey": "{ALICE}", "stake": 2000.5, "validator_permit": true}}]"#
        ),
    )
    .unwrap();
    let bl = Blacklist::new(
        BlacklistPolicy::default(),
        Some(MetagraphSource::File(f.clone())),
    );
    assert_eq!(bl.refresh().await.unwrap(), 1);
    assert_eq!(bl.check(Some(ALICE)), Ok(2000.5));
    std::fs::write(&f, "{broken").unwrap();
    // (a new mtime; on some filesystems the same second: force it)
    let later = std::time::SystemTime::now() + Duration::from_secs(5);
    std::fs::File::options()
        .write(true)
        .open(&f)
        .unwrap()
        .set_modified(later)
        .unwrap();
    assert!(bl.refresh().await.unwrap_err().contains("not JSON"));
    assert_eq!(
        bl.check(Some(ALICE)),
        Ok(2000.5),
        "the last good snapshot stays"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_follows_the_production_pointer_without_a_restart() {
    let Some(_) = data_dir() else {
        eprintln!("skipped: ../shared/data is absent");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let ck = train_checkpoint(&tmp.path().join("runs"));
    let store = tmp.path().join("store");
    let (models, note) = ModelHolder::load(ModelSpec::Latest, &store).unwrap();
    assert!(note.unwrap().contains("nothing is published"));
    let m = start(models, allow_alice(), |c| {
        c.store_dir = store.clone();
        c.reload_every = Duration::from_millis(100);
    })
    .await;
    assert!(m.miner.models.current(300).is_gbm);
    let d = Dendrite::new("//Alice");
    let (start_s, _) = start_time_in(120);
    let b = body("BTC", &start_s, 300, 86_400, 100);
    let (s, _, _) = d.call(&m.url, &b).await;
    assert_eq!(s, 200);
    assert_eq!(fallbacks(&m.miner, "no_model"), 1);
    // Publish: the pointer, as the publisher writes it.
    let publish = |dir: &Path| {
        std::fs::create_dir_all(store.join("models")).unwrap();
        let tmp_p = store.join("models/production.tmp");
        std::fs::write(
            &tmp_p,
            serde_json::json!({"run_id": "r1", "model_dir": dir, "name": "x"}).to_string(),
        )
        .unwrap();
        std::fs::rename(&tmp_p, store.join("models/production.json")).unwrap();
    };
    publish(&ck);
    let wait_for = |want: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while m.miner.models.current(300).label != want {
            assert!(
                Instant::now() < deadline,
                "still serving {}",
                m.miner.models.current(300).label
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait_for(&ck.display().to_string());
    let (s, _, v) = d.call(&m.url, &b).await;
    assert_eq!(s, 200);
    assert_valid(&v, "BTC", &start_s, 300, 86_400, 100);
    assert_eq!(
        fallbacks(&m.miner, "no_model"),
        1,
        "the checkpoint answered"
    );
    // A publication that does not load: still the previous model, a failed reload counted.
    publish(&tmp.path().join("gone"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while m.miner.metrics.reloads.with_label_values(&["failed"]).get() == 0 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(m.miner.models.current(300).label, ck.display().to_string());
    // A second good publication (a copy elsewhere) is picked up.
    let ck2 = tmp.path().join("copy");
    std::fs::create_dir_all(&ck2).unwrap();
    for e in std::fs::read_dir(&ck).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), ck2.join(e.file_name())).unwrap();
    }
    publish(&ck2);
    wait_for(&ck2.display().to_string());
    // the reload is counted just after the swap is visible: wait for the count too
    let deadline = Instant::now() + Duration::from_secs(10);
    while m.miner.metrics.reloads.with_label_values(&["ok"]).get() < 2 {
        assert!(
            Instant::now() < deadline,
            "the second reload was never counted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(m.miner.metrics.reloads.with_label_values(&["ok"]).get(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_prompt_is_answered_by_the_model_of_its_timeframe() {
    let Some(_) = data_dir() else {
        eprintln!("skipped: ../shared/data is absent");
        return;
    };
    use serde_json::json;
    let tmp = tempfile::tempdir().unwrap();
    let five = train_checkpoint_at(&tmp.path().join("runs"), "5m");
    let one = train_checkpoint_at(&tmp.path().join("runs"), "1m");
    let label = |p: &Path| p.display().to_string();
    // two checkpoints of one timeframe are refused, naming both
    let twice = ModelSpec::parse(&format!("{},{}", five.display(), five.display()));
    let e = ModelHolder::load(twice, tmp.path()).err().unwrap();
    assert!(e.contains("both simulate 300 s steps"), "{e}");
    // --model FIVE,ONE: each prompt gets its own model and nothing falls back
    let both = ModelSpec::parse(&format!("{},{}", five.display(), one.display()));
    let (models, note) = ModelHolder::load(both, tmp.path()).unwrap();
    assert!(note.is_none());
    assert_eq!(models.current(300).label, label(&five));
    assert_eq!(models.current(60).label, label(&one));
    let m = start(models, allow_alice(), |_| {}).await;
    let d = Dendrite::new("//Alice");
    for (inc, len, lead) in [(300, 86_400, 120), (60, 3_600, 60)] {
        let (start_s, _) = start_time_in(lead);
        let (s, _, v) = d.call(&m.url, &body("BTC", &start_s, inc, len, 100)).await;
        assert_eq!(s, 200, "{v}");
        assert_valid(&v, "BTC", &start_s, inc, len, 100);
    }
    for reason in ["no_model", "error", "deadline", "output"] {
        assert_eq!(fallbacks(&m.miner, reason), 0, "{reason} fallbacks");
    }
    // latest: a pointer per timeframe, as the publisher writes them, and production.json
    // naming the newest publication (1m), which is not loaded a second time
    let store = tmp.path().join("store");
    std::fs::create_dir_all(store.join("models")).unwrap();
    let write = |file: &str, dir: &Path, tf: &str| {
        let v = json!({"model_dir": dir, "timeframe": tf});
        std::fs::write(store.join("models").join(file), v.to_string()).unwrap();
    };
    // the 5m model as the publisher stores it: under the store, named by its key
    let published = store.join("models/r1/five");
    std::fs::create_dir_all(&published).unwrap();
    for e in std::fs::read_dir(&five).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), published.join(e.file_name())).unwrap();
    }
    write("production-5m.json", Path::new("models/r1/five/"), "5m");
    write("production-1m.json", &one, "1m");
    write("production.json", &one, "1m");
    let (models, note) = ModelHolder::load(ModelSpec::Latest, &store).unwrap();
    assert!(note.is_none(), "{note:?}");
    assert_eq!(
        models.current(300).label,
        label(&store.join("models/r1/five/"))
    );
    assert_eq!(models.current(60).label, label(&one));
    assert_eq!(
        models.describe(),
        format!(
            "5m: {}, 1m: {}",
            label(&store.join("models/r1/five/")),
            label(&one)
        )
    );
    // a timeframe's pointer at a model of the other timeframe is refused by name, and the
    // previous model stays
    write("production-5m.json", &one, "5m");
    let e = models.reload_if_changed().unwrap_err();
    assert!(
        e.contains("production-5m.json") && e.contains("60 s steps"),
        "{e}"
    );
    assert_eq!(
        models.current(300).label,
        label(&store.join("models/r1/five/"))
    );
}

#[test]
fn mine_check_verifies_wallet_model_and_port() {
    let port = free_port();
    let o = bin()
        .args([
            "mine",
            "--check",
            "--json",
            "--hotkey-uri",
            "//Bob",
            "--model",
            "gbm",
        ])
        .args(["--allow-hotkeys", ALICE, "--port", &port.to_string()])
        .arg("--data-dir")
        .arg(root().join("data/sample"))
        .env("PYTH_HERMES_URL", "http://127.0.0.1:9")
        .env("BINANCE_API_URL", "http://127.0.0.1:9")
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        o.status.success(),
        "{v} {}",
        String::from_utf8_lossy(&o.stderr)
    );
    // Both prompts answered (the spot from the bars' last close) and valid by the
    // validator's rules.
    assert_eq!(v["checks"]["answer"]["ok"], true, "{v}");
    let answer = v["checks"]["answer"]["detail"].as_str().unwrap();
    for prompt in [
        "24 h prompt: gbm answered, valid",
        "1 h prompt: gbm answered, valid",
    ] {
        assert!(answer.contains(prompt), "{answer}");
    }
    // No venue and no bars: no spot, so no answer; said, exit 1.
    let empty = tempfile::tempdir().unwrap();
    let o = bin()
        .args(["mine", "--check", "--json", "--hotkey-uri", "//Bob"])
        .args(["--model", "gbm", "--allow-hotkeys", ALICE])
        .args(["--port", &free_port().to_string(), "--data-dir"])
        .arg(empty.path())
        .env("PYTH_HERMES_URL", "http://127.0.0.1:9")
        .env("BINANCE_API_URL", "http://127.0.0.1:9")
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(!o.status.success(), "{v}");
    assert_eq!(v["checks"]["answer"]["ok"], false, "{v}");
    assert!(
        v["checks"]["answer"]["detail"]
            .as_str()
            .unwrap()
            .contains("refused (503): no spot price for BTC"),
        "{v}"
    );
    assert_eq!(v["checks"]["wallet"]["ok"], true);
    assert!(v["checks"]["wallet"]["detail"]
        .as_str()
        .unwrap()
        .contains(BOB));
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains("//Bob"),
        "no secret in the output"
    );
    // A missing wallet, a checkpoint that is not there, a busy port: each named, exit 1.
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let wallets = tempfile::tempdir().unwrap();
    let o = bin()
        .args(["mine", "--check", "--json", "--model", "/no/such/ckpt"])
        .arg("--wallet-path")
        .arg(wallets.path())
        .args([
            "--wallet-name",
            "w",
            "--wallet-hotkey",
            "h",
            "--allow-hotkeys",
            ALICE,
        ])
        .args(["--port", &busy.local_addr().unwrap().port().to_string()])
        .env("PYTH_HERMES_URL", "http://127.0.0.1:9")
        .env("BINANCE_API_URL", "http://127.0.0.1:9")
        .output()
        .unwrap();
    assert!(!o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ok"], false);
    for (item, needle) in [
        ("wallet", "w/hotkeys/h"),
        ("model", "/no/such/ckpt"),
        ("port", "cannot listen"),
    ] {
        assert_eq!(v["checks"][item]["ok"], false, "{v}");
        assert!(
            v["checks"][item]["detail"]
                .as_str()
                .unwrap()
                .contains(needle),
            "{v}"
        );
    }
    // No metagraph and no allow list: nobody could call; said plainly.
    let o = bin()
        .args([
            "mine",
            "--hotkey-uri",
            "//Bob",
            "--model",
            "gbm",
            "--port",
            "0",
        ])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--allow-hotkeys"));
}

// ---------------------------------------------------------------------------------------------
// The real client: Python bittensor 10.0.1
// ---------------------------------------------------------------------------------------------

/// A lock directory (mkdir is atomic), so parallel test runs build the venv once.
struct DirLock(PathBuf);

impl DirLock {
    fn acquire(path: PathBuf) -> DirLock {
        let deadline = Instant::now() + Duration::from_secs(1200);
        loop {
            match std::fs::create_dir(&path) {
                Ok(()) => return DirLock(path),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    // A lock older than 20 minutes belongs to a dead run.
                    let stale = std::fs::metadata(&path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok())
                        .is_some_and(|age| age > Duration::from_secs(1200));
                    if stale {
                        let _ = std::fs::remove_dir(&path);
                        continue;
                    }
                    assert!(
                        Instant::now() < deadline,
                        "waited 20 minutes for {}",
                        path.display()
                    );
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(e) => panic!("cannot create the lock {}: {e}", path.display()),
            }
        }
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// `target/venvs/bittensor/bin/python`, creating the venv from ops/requirements-bittensor.txt
/// when it is missing or broken. A failed install fails the test with pip's own words.
fn bittensor_python() -> PathBuf {
    let venvs = root().join("target/venvs");
    std::fs::create_dir_all(&venvs).unwrap();
    let venv = venvs.join("bittensor");
    let py = venv.join("bin/python");
    let ready = || {
        py.exists()
            && Command::new(&py)
                .args(["-c", "import bittensor, bittensor_wallet; assert bittensor.__version__ == '10.0.1', bittensor.__version__"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
    };
    if ready() {
        return py;
    }
    let _lock = DirLock::acquire(venvs.join(".bittensor.lock"));
    if ready() {
        return py;
    }
    let _ = std::fs::remove_dir_all(&venv);
    let o = Command::new("python3").arg("-m").arg("venv").arg(&venv).output()
        .expect("python3 must be installed for the real-client test (apt-get install python3 python3-venv)");
    assert!(
        o.status.success(),
        "python3 -m venv {} failed: {}",
        venv.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    let reqs = root().join("ops/requirements-bittensor.txt");
    let o = Command::new(venv.join("bin/pip"))
        .args(["install", "--disable-pip-version-check", "-q", "-r"])
        .arg(&reqs)
        .output()
        .unwrap();
    if !o.status.success() {
        let err = String::from_utf8_lossy(&o.stderr);
        let tail: String = err
            .chars()
            .rev()
            .take(3000)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        let _ = std::fs::remove_dir_all(&venv);
        panic!(
            "pip install -r {} failed (the real-client test needs PyPI): {tail}",
            reqs.display()
        );
    }
    assert!(
        ready(),
        "the venv at {} does not import bittensor 10.0.1 after installing",
        venv.display()
    );
    py
}

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn python_bittensor_dendrite_calls_the_rust_axon() {
    let Some(data) = data_dir() else {
        eprintln!("skipped: ../shared/data is absent");
        return;
    };
    let py = bittensor_python();
    let script = root().join("tests/miner_dendrite.py");
    let tmp = tempfile::tempdir().unwrap();
    let ck = train_checkpoint(&tmp.path().join("runs"));
    // The miner's wallet, written by bittensor_wallet itself.
    let wallets = tmp.path().join("wallets");
    let o = Command::new(&py)
        .arg(&script)
        .args(["wallet"])
        .arg(&wallets)
        .args(["miner", "default", "//Bob"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), BOB);
    // The validator (//Alice) in a metagraph snapshot with validator stake.
    let mg = tmp.path().join("metagraph.json");
    std::fs::write(
        &mg,
        format!(
            r#"{{"hotkeys":["{BOB}","{ALICE}"],"stake":[0,50000],"validator_permit":[false,true]}}"#
        ),
    )
    .unwrap();
    let pyth = hermes(9_123_456_780_000, Arc::new(AtomicU8::new(0)));
    let port = free_port();
    let mut child = Child(
        bin()
            .args(["mine", "--host", "127.0.0.1", "--port", &port.to_string()])
            .arg("--model")
            .arg(&ck)
            .arg("--data-dir")
            .arg(&data)
            .arg("--wallet-path")
            .arg(&wallets)
            .args([
                "--wallet-name",
                "miner",
                "--wallet-hotkey",
                "default",
                "--force-validator-permit",
            ])
            .arg("--metagraph-file")
            .arg(&mg)
            .arg("--nonce-file")
            .arg(tmp.path().join("state/nonces.jsonl"))
            .env("PYTH_HERMES_URL", pyth.url())
            .env("BINANCE_API_URL", pyth.url())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    {
        use std::io::BufRead;
        let out = child.0.stdout.take().unwrap();
        std::io::BufReader::new(out).read_line(&mut line).unwrap();
    }
    assert!(
        line.contains("miner listening") && line.contains(BOB),
        "{line}"
    );
    let out = tmp.path().join("dendrite.json");
    let t0 = Instant::now();
    let o = Command::new(&py)
        .arg(&script)
        .arg("call")
        .arg(port.to_string())
        .arg(BOB)
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    eprintln!("the dendrite's calls took {:?}", t0.elapsed());
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    for (case, inc, len) in [("low", 300, 86_400), ("high", 60, 3_600)] {
        let r = &v[case];
        assert_eq!(r["status_code"], 200, "{case}: {}", r["status_message"]);
        assert_eq!(r["python_format_check"], "CORRECT", "{case}");
        let start = r["simulation_input"]["start_time"].as_str().unwrap();
        let input = SimulationInput {
            asset: "BTC".into(),
            start_time: start.into(),
            time_increment: inc,
            time_length: len,
            num_simulations: 1000,
        };
        let report = check_response(&PyValue::from_json(&r["simulation_output"]), &input, true);
        assert!(report.ok, "{case}: {report:?}");
        assert_eq!(
            r["simulation_output"][2][0].as_f64().unwrap(),
            91234.568,
            "{case}: from the Pyth price"
        );
        assert!(
            r["seconds"].as_f64().unwrap() < 30.0,
            "{case}: {}",
            r["seconds"]
        );
    }
    let w = &v["wrong_hotkey"];
    assert_eq!(w["status_code"], 401, "{w}");
    assert!(
        w["status_message"]
            .as_str()
            .unwrap()
            .contains("Signature mismatch"),
        "{w}"
    );
}

/// Minute bars of a random walk (0.23 % a minute) from `from` to `to` (bar opens), written as `name`.
fn write_walk(dir: &Path, name: &str, from: i64, to: i64, seed: u64) {
    use rand::SeedableRng;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut s = String::from("timestamp,open,high,low,close,volume\n");
    let mut p = 60_000.0f64;
    let mut t = from;
    while t <= to {
        let u = (rng.next_u32() as f64 / u32::MAX as f64) - 0.5;
        p *= 1.0 + 0.008 * u;
        s.push_str(&format!("{t},{p},{p},{p},{p},1\n"));
        t += 60;
    }
    std::fs::write(dir.join(name), s).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_classical_baseline_answers_from_fresh_bars_and_stale_bars_get_the_gbm() {
    let data = tempfile::tempdir().unwrap();
    let now = chrono::Utc::now().timestamp() / 60 * 60;
    // BTC: three weeks of minute bars up to now; ETH's end ten days ago
    write_walk(data.path(), "BTC_1m.csv", now - 21 * 86_400, now - 60, 1);
    write_walk(
        data.path(),
        "ETH_1m.csv",
        now - 31 * 86_400,
        now - 10 * 86_400,
        2,
    );
    let gbm = || ModelHolder::load(ModelSpec::Gbm, data.path()).unwrap().0;
    let models = gbm().with_baseline("garch-tod-t").unwrap();
    assert_eq!(models.describe(), "5m: garch-tod-t, 1m: garch-tod-t");
    let bad = gbm()
        .with_baseline("garch-x")
        .err()
        .expect("an unknown name");
    assert!(
        bad.to_string().contains("--baseline garch-x") && bad.to_string().contains("har-tod-t"),
        "{bad}"
    );
    let m = start(models, allow_alice(), |c| {
        c.data_dir = data.path().to_path_buf();
    })
    .await;
    let d = Dendrite::new("//Alice");
    let (start_s, _) = start_time_in(60);
    let (s, _, v) = d
        .call(&m.url, &body("BTC", &start_s, 60, 3_600, 1000))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_valid(&v, "BTC", &start_s, 60, 3_600, 1000);
    assert_eq!(
        fallbacks(&m.miner, "error"),
        0,
        "GARCH answered from fresh bars"
    );
    assert_eq!(fallbacks(&m.miner, "no_model"), 0);
    // the GARCH paths are not the GBM's: their hourly spread follows the bars' volatility
    // (0.23 % a minute, about 1.8 % an hour), not the reference sigma's (about 0.5 % an hour)
    let last: Vec<f64> = v["simulation_output"].as_array().unwrap()[2..]
        .iter()
        .map(|p| p.as_array().unwrap()[60].as_f64().unwrap())
        .collect();
    let mean = last.iter().sum::<f64>() / last.len() as f64;
    let sd = (last.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / last.len() as f64).sqrt();
    assert!(
        sd / mean > 0.012 && sd / mean < 0.025,
        "hourly spread {}",
        sd / mean
    );
    // ETH's bars are ten days old: the model refuses them and the GBM answers, counted
    let (s, _, v) = d.call(&m.url, &body("ETH", &start_s, 60, 3_600, 100)).await;
    assert_eq!(s, 200, "{v}");
    assert_valid(&v, "ETH", &start_s, 60, 3_600, 100);
    assert_eq!(fallbacks(&m.miner, "error"), 1);
}
