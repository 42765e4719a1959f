//! A client for the two Pyth HTTP APIs SN50 uses: Hermes latest prices (the reference miner's
//! spot price, `GET {hermes}/v2/updates/price/latest?ids[]=<feed id>`) and the benchmarks
//! TradingView shim (the validator's realised prices, `GET {benchmarks}/v1/shims/tradingview/
//! history?symbol=..&resolution=..&from=..&to=..`).
//!
//! Base URLs default to the public endpoints and are read from `PYTH_HERMES_URL` /
//! `PYTH_BENCHMARKS_URL` by [`PythConfig::from_env`]. Requests that fail in a way that may pass
//! (HTTP 429, 5xx, timeouts, connection and body-read errors) are retried with exponential
//! backoff; anything else is an error that names the URL and what was wrong with the answer.
//! Spot prices are computed as the reference miner does: `int(price) * 10**int(expo)`.

use std::time::Duration;

use jobs::retry::{Failure, RetryPolicy};
use serde::Deserialize;
use serde_json::Value;

use super::constants::{asset_info, PYTH_BENCHMARKS_URL, PYTH_HERMES_URL};
use super::http::Fault;

/// Environment variable overriding the Hermes base URL.
pub const HERMES_URL_ENV: &str = "PYTH_HERMES_URL";
/// Environment variable overriding the benchmarks base URL.
pub const BENCHMARKS_URL_ENV: &str = "PYTH_BENCHMARKS_URL";

/// Errors from the Pyth client.
#[derive(Debug, thiserror::Error)]
pub enum PythError {
    #[error("unknown SN50 asset {0:?} (no Pyth feed id or symbol for it)")]
    UnknownAsset(String),
    #[error("asset {0} has no Pyth benchmarks symbol: the validator takes its prices elsewhere")]
    NoSymbol(String),
    #[error(
        "asset {0} has no Pyth price feed: take its spot from its realised-price venue (`synth-city score constants` shows it)"
    )]
    NoFeed(String),
    #[error("unsupported resolution {0}: use 1 or 5 (minutes)")]
    Resolution(u32),
    #[error("bad time range: from {from} must not be after to {to}")]
    Range { from: i64, to: i64 },
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    #[error("{url}: HTTP {status} after {attempts} attempt(s): {body}")]
    Status {
        url: String,
        status: u16,
        attempts: u32,
        body: String,
    },
    #[error("{url}: no answer within {timeout_ms} ms, {attempts} attempt(s)")]
    Timeout {
        url: String,
        timeout_ms: u128,
        attempts: u32,
    },
    #[error("{url}: request failed after {attempts} attempt(s): {message}")]
    Transport {
        url: String,
        attempts: u32,
        message: String,
    },
    #[error("{url}: the body is not valid JSON ({message}); it starts with {snippet:?}")]
    Json {
        url: String,
        message: String,
        snippet: String,
    },
    #[error("{url}: unexpected answer: {message}")]
    Shape { url: String, message: String },
    #[error("{url}: Pyth answered s={status:?}: {message}")]
    Upstream {
        url: String,
        status: String,
        message: String,
    },
}

/// Where and how the client talks to Pyth.
#[derive(Debug, Clone)]
pub struct PythConfig {
    /// Hermes base URL, without a trailing slash.
    pub hermes_url: String,
    /// Benchmarks base URL, without a trailing slash.
    pub benchmarks_url: String,
    /// Whole-request timeout (connect, send, read the body).
    pub timeout: Duration,
    /// Attempts per request, the first included (at least 1).
    pub attempts: u32,
    /// Delay before the first retry; doubled for each further retry.
    pub backoff: Duration,
    /// The longest delay between attempts (also caps a server's `Retry-After`).
    pub max_backoff: Duration,
}

impl Default for PythConfig {
    fn default() -> Self {
        PythConfig {
            hermes_url: PYTH_HERMES_URL.to_string(),
            benchmarks_url: PYTH_BENCHMARKS_URL.to_string(),
            timeout: Duration::from_secs(20),
            attempts: 5,
            backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(16),
        }
    }
}

impl PythConfig {
    /// The defaults with the base URLs from `PYTH_HERMES_URL` / `PYTH_BENCHMARKS_URL` when set.
    pub fn from_env() -> Self {
        let mut c = PythConfig::default();
        if let Some(u) = std::env::var(HERMES_URL_ENV).ok().filter(|u| !u.is_empty()) {
            c.hermes_url = u;
        }
        if let Some(u) = std::env::var(BENCHMARKS_URL_ENV)
            .ok()
            .filter(|u| !u.is_empty())
        {
            c.benchmarks_url = u;
        }
        c
    }

    /// The delay before retry number `retry` (1-based).
    pub fn backoff_for(&self, retry: u32) -> Duration {
        self.retry_policy().delay(retry)
    }

    /// The retry policy these settings describe (the one every client uses).
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            attempts: self.attempts.max(1),
            base: self.backoff,
            max_delay: self.max_backoff,
            ..RetryPolicy::default()
        }
    }
}

/// A Hermes latest price, as the reference miner reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct SpotPrice {
    pub asset: String,
    /// The feed id Hermes answered for (hex, no `0x`).
    pub feed_id: String,
    /// `int(price) * 10**int(expo)`, as the reference miner computes it.
    pub price: f64,
    /// The raw integer mantissa and exponent.
    pub mantissa: i64,
    pub expo: i32,
    /// The confidence interval, scaled like the price.
    pub conf: f64,
    /// Unix seconds of the price.
    pub publish_time: i64,
}

/// One TradingView bar: open time (unix seconds) and OHLCV.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HistoryBar {
    pub t: i64,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: f64,
}

/// The bar length of a benchmarks history request: a [`Timeframe`] (1 or 5 minutes).
pub use jobs::Timeframe as Resolution;

/// The resolution of `m` minutes (1 or 5).
pub fn resolution_from_minutes(m: u32) -> Result<Resolution, PythError> {
    match m {
        1 => Ok(Resolution::OneMinute),
        5 => Ok(Resolution::FiveMinutes),
        other => Err(PythError::Resolution(other)),
    }
}

/// The `resolution` query value of the benchmarks history endpoint (minutes).
fn resolution_query(r: Resolution) -> &'static str {
    match r {
        Resolution::OneMinute => "1",
        Resolution::FiveMinutes => "5",
    }
}

/// The Hermes feed id of an SN50 asset.
pub fn feed_id(asset: &str) -> Result<&'static str, PythError> {
    let info = asset_info(asset).ok_or_else(|| PythError::UnknownAsset(asset.to_string()))?;
    info.pyth_feed_id
        .ok_or_else(|| PythError::NoFeed(asset.to_string()))
}

/// The benchmarks TradingView symbol of an SN50 asset (`Crypto.XAUT/USD` for XAU).
pub fn tradingview_symbol(asset: &str) -> Result<&'static str, PythError> {
    let info = asset_info(asset).ok_or_else(|| PythError::UnknownAsset(asset.to_string()))?;
    info.tradingview_symbol
        .ok_or_else(|| PythError::NoSymbol(asset.to_string()))
}

/// `10**expo` as Python computes it for an int base: exact for `expo >= 0`, the correctly
/// rounded double of the power otherwise (what `pow(10.0, expo)` gives).
fn pow10(expo: i32) -> f64 {
    format!("1e{expo}").parse().unwrap_or(f64::NAN)
}

/// Parse a Hermes `/v2/updates/price/latest` body for `feed` (`parsed[0].price`).
pub fn parse_hermes_latest(
    url: &str,
    asset: &str,
    feed: &str,
    body: &str,
) -> Result<SpotPrice, PythError> {
    let v: Value = parse_json(url, body)?;
    let shape = |message: String| PythError::Shape {
        url: url.to_string(),
        message,
    };
    let parsed = v
        .get("parsed")
        .and_then(Value::as_array)
        .ok_or_else(|| shape("no \"parsed\" array".into()))?;
    let entry = parsed
        .first()
        .ok_or_else(|| shape(format!("\"parsed\" is empty: no price for feed {feed}")))?;
    let id = entry
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .trim_start_matches("0x")
        .to_ascii_lowercase();
    if id != feed {
        return Err(shape(format!("price is for feed {id:?}, expected {feed}")));
    }
    let price = entry
        .get("price")
        .ok_or_else(|| shape("parsed[0] has no \"price\" object".into()))?;
    let int_field = |name: &str| -> Result<i64, PythError> {
        match price.get(name) {
            Some(Value::String(s)) => s
                .trim()
                .parse::<i64>()
                .map_err(|_| shape(format!("price.{name} {s:?} is not an integer"))),
            Some(Value::Number(n)) => n
                .as_i64()
                .ok_or_else(|| shape(format!("price.{name} {n} is not an integer"))),
            Some(other) => Err(shape(format!("price.{name} is {other}, not an integer"))),
            None => Err(shape(format!("price.{name} is missing"))),
        }
    };
    let mantissa = int_field("price")?;
    let conf = int_field("conf").unwrap_or(0);
    let expo = int_field("expo")?;
    let expo = i32::try_from(expo)
        .ok()
        .filter(|e| e.abs() <= 300)
        .ok_or_else(|| shape(format!("price.expo {expo} is out of range")))?;
    let publish_time = int_field("publish_time").unwrap_or(0);
    let scale = pow10(expo);
    let value = mantissa as f64 * scale;
    if !(value.is_finite() && value > 0.0) {
        return Err(shape(format!(
            "price {mantissa} x 10^{expo} is not a positive price"
        )));
    }
    Ok(SpotPrice {
        asset: asset.to_string(),
        feed_id: id,
        price: value,
        mantissa,
        expo,
        conf: conf as f64 * scale,
        publish_time,
    })
}

/// The TradingView UDF history body.
#[derive(Debug, Deserialize)]
struct UdfHistory {
    s: String,
    #[serde(default)]
    errmsg: Option<String>,
    #[serde(default)]
    t: Vec<i64>,
    #[serde(default)]
    o: Vec<f64>,
    #[serde(default)]
    h: Vec<f64>,
    #[serde(default)]
    l: Vec<f64>,
    #[serde(default)]
    c: Vec<f64>,
    #[serde(default)]
    v: Option<Vec<f64>>,
}

/// Parse a TradingView shim history body: `{"s":"ok","t":[..],"o":[..],"h","l","c","v"}`.
/// `{"s":"no_data"}` is an empty history (nothing traded in the range), `{"s":"error",
/// "errmsg"}` an error.
pub fn parse_history(url: &str, body: &str) -> Result<Vec<HistoryBar>, PythError> {
    let v: Value = parse_json(url, body)?;
    let shape = |message: String| PythError::Shape {
        url: url.to_string(),
        message,
    };
    let udf: UdfHistory = serde_json::from_value(v).map_err(|e| {
        shape(format!(
            "not a TradingView history object ({e}); expected {{\"s\", \"t\", \"o\", \"h\", \"l\", \"c\", \"v\"}}"
        ))
    })?;
    match udf.s.as_str() {
        "ok" => {}
        "no_data" => return Ok(Vec::new()),
        other => {
            return Err(PythError::Upstream {
                url: url.to_string(),
                status: other.to_string(),
                message: udf.errmsg.unwrap_or_else(|| "no errmsg".into()),
            })
        }
    }
    let n = udf.t.len();
    for (name, len) in [
        ("o", udf.o.len()),
        ("h", udf.h.len()),
        ("l", udf.l.len()),
        ("c", udf.c.len()),
        ("v", udf.v.as_ref().map_or(n, Vec::len)),
    ] {
        if len != n {
            return Err(shape(format!(
                "\"{name}\" has {len} values but \"t\" has {n}"
            )));
        }
    }
    let mut bars = Vec::with_capacity(n);
    for i in 0..n {
        let bar = HistoryBar {
            t: udf.t[i],
            open: udf.o[i],
            high: udf.h[i],
            low: udf.l[i],
            close: udf.c[i],
            volume: udf.v.as_ref().map_or(0.0, |v| v[i]),
        };
        if ![bar.open, bar.high, bar.low, bar.close]
            .iter()
            .all(|p| p.is_finite() && *p > 0.0)
        {
            return Err(shape(format!(
                "bar {i} (t={}) has a non-positive or non-finite price",
                bar.t
            )));
        }
        if let Some(prev) = bars.last().map(|b: &HistoryBar| b.t) {
            if bar.t <= prev {
                return Err(shape(format!(
                    "bar {i} (t={}) is not after the previous bar (t={prev})",
                    bar.t
                )));
            }
        }
        bars.push(bar);
    }
    Ok(bars)
}

fn parse_json(url: &str, body: &str) -> Result<Value, PythError> {
    serde_json::from_str(body).map_err(|e| PythError::Json {
        url: url.to_string(),
        message: e.to_string(),
        snippet: body.chars().take(120).collect(),
    })
}

/// The Pyth client.
#[derive(Debug, Clone)]
pub struct PythClient {
    http: reqwest::Client,
    config: PythConfig,
}

impl PythClient {
    pub fn new(config: PythConfig) -> Result<Self, PythError> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .user_agent(concat!("synth-city/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| PythError::Client(e.to_string()))?;
        Ok(PythClient { http, config })
    }

    /// A client configured from the environment ([`PythConfig::from_env`]).
    pub fn from_env() -> Result<Self, PythError> {
        PythClient::new(PythConfig::from_env())
    }

    pub fn config(&self) -> &PythConfig {
        &self.config
    }

    /// The latest Hermes price of an SN50 asset.
    pub async fn latest_price(&self, asset: &str) -> Result<SpotPrice, PythError> {
        self.latest_feed_price(asset, feed_id(asset)?).await
    }

    /// The latest Hermes price of feed `feed` (hex, no `0x`), reported under `asset` (for a
    /// feed id taken from overridden constants rather than the static table).
    pub async fn latest_feed_price(&self, asset: &str, feed: &str) -> Result<SpotPrice, PythError> {
        let feed = feed.trim_start_matches("0x").to_ascii_lowercase();
        let feed = feed.as_str();
        let url = format!(
            "{}/v2/updates/price/latest",
            self.config.hermes_url.trim_end_matches('/')
        );
        let query = [("ids[]", feed.to_string())];
        let body = self.get_text(&url, &query).await?;
        parse_hermes_latest(&url, asset, feed, &body)
    }

    /// Bars of a TradingView symbol with open times in `[from, to]` (one request).
    pub async fn history(
        &self,
        symbol: &str,
        resolution: Resolution,
        from: i64,
        to: i64,
    ) -> Result<Vec<HistoryBar>, PythError> {
        if from > to {
            return Err(PythError::Range { from, to });
        }
        let url = format!(
            "{}/v1/shims/tradingview/history",
            self.config.benchmarks_url.trim_end_matches('/')
        );
        let query = [
            ("symbol", symbol.to_string()),
            ("resolution", resolution_query(resolution).to_string()),
            ("from", from.to_string()),
            ("to", to.to_string()),
        ];
        let body = self.get_text(&url, &query).await?;
        let bars = parse_history(&url, &body)?;
        if let Some(b) = bars.iter().find(|b| b.t % resolution.step_secs() != 0) {
            return Err(PythError::Shape {
                url,
                message: format!(
                    "bar time {} is not on the {} s grid of resolution {}",
                    b.t,
                    resolution.step_secs(),
                    resolution_query(resolution)
                ),
            });
        }
        Ok(bars)
    }

    /// Bars of an SN50 asset (by its benchmarks symbol) with open times in `[from, to]`.
    pub async fn asset_history(
        &self,
        asset: &str,
        resolution: Resolution,
        from: i64,
        to: i64,
    ) -> Result<Vec<HistoryBar>, PythError> {
        self.history(tradingview_symbol(asset)?, resolution, from, to)
            .await
    }

    /// GET with retries; the body of the first 2xx answer.
    async fn get_text(&self, url: &str, query: &[(&str, String)]) -> Result<String, PythError> {
        self.config
            .retry_policy()
            .run("Pyth request", |attempt| self.try_once(url, query, attempt))
            .await
            .map_err(|e| e.error)
    }

    async fn try_once(
        &self,
        url: &str,
        query: &[(&str, String)],
        attempt: u32,
    ) -> Result<String, Failure<PythError>> {
        let request = self.http.get(url).query(query);
        super::http::send_once(request).await.map_err(|f| {
            f.map(|fault| match fault {
                Fault::Timeout => PythError::Timeout {
                    url: url.to_string(),
                    timeout_ms: self.config.timeout.as_millis(),
                    attempts: attempt,
                },
                Fault::Transport(message) => PythError::Transport {
                    url: url.to_string(),
                    attempts: attempt,
                    message,
                },
                Fault::Status { status, body } => PythError::Status {
                    url: url.to_string(),
                    status,
                    attempts: attempt,
                    body,
                },
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    /// What the local server does with a request.
    enum Reply {
        /// Status and JSON body.
        Json(u16, String),
        /// Accept, read the request and never answer.
        Hang,
    }

    /// A minimal HTTP/1.1 server on 127.0.0.1:0, one thread per connection, `Connection:
    /// close`. The handler gets the request number (0-based) and the request target.
    struct LocalServer {
        base: String,
        targets: Arc<Mutex<Vec<String>>>,
    }

    impl LocalServer {
        fn start(handler: impl Fn(usize, &str) -> Reply + Send + Sync + 'static) -> LocalServer {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let base = format!("http://{}", listener.local_addr().unwrap());
            let targets = Arc::new(Mutex::new(Vec::new()));
            let seen = targets.clone();
            let handler = Arc::new(handler);
            let count = Arc::new(AtomicUsize::new(0));
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    let Ok(stream) = stream else { return };
                    let (handler, seen, count) = (handler.clone(), seen.clone(), count.clone());
                    std::thread::spawn(move || serve_one(stream, &*handler, &seen, &count));
                }
            });
            LocalServer { base, targets }
        }

        fn targets(&self) -> Vec<String> {
            self.targets.lock().unwrap().clone()
        }
    }

    fn serve_one(
        mut stream: TcpStream,
        handler: &(dyn Fn(usize, &str) -> Reply + Send + Sync),
        seen: &Mutex<Vec<String>>,
        count: &AtomicUsize,
    ) {
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        let target = head.split(' ').nth(1).unwrap_or("").to_string();
        seen.lock().unwrap().push(target.clone());
        let n = count.fetch_add(1, Ordering::SeqCst);
        match handler(n, &target) {
            Reply::Json(status, body) => {
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
            Reply::Hang => std::thread::sleep(Duration::from_secs(5)),
        }
    }

    fn client(server: &LocalServer, attempts: u32, timeout_ms: u64) -> PythClient {
        PythClient::new(PythConfig {
            hermes_url: server.base.clone(),
            benchmarks_url: format!("{}/", server.base),
            timeout: Duration::from_millis(timeout_ms),
            attempts,
            backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
        })
        .unwrap()
    }

    const BTC_FEED: &str = "e62df6c8b4a85fe1a67db44dc12de5db330f7ac66b72dc658afedf0f4a415b43";

    fn hermes_body(id: &str, price: &str, expo: i32) -> String {
        format!(
            r#"{{"binary":{{"encoding":"hex","data":["504e4155"]}},"parsed":[{{"id":"{id}","price":{{"price":"{price}","conf":"3021000000","expo":{expo},"publish_time":1780315500}},"ema_price":{{"price":"10444412000000","conf":"3100000000","expo":-8,"publish_time":1780315500}},"metadata":{{"slot":1,"proof_available_time":1780315501,"prev_publish_time":1780315499}}}}]}}"#
        )
    }

    fn udf(ts: &[i64]) -> String {
        let c: Vec<String> = ts
            .iter()
            .map(|t| format!("{}", 100.0 + (*t % 1000) as f64 / 8.0))
            .collect();
        let c = c.join(",");
        let t: Vec<String> = ts.iter().map(|t| t.to_string()).collect();
        let zeros = vec!["0"; ts.len()].join(",");
        format!(
            r#"{{"s":"ok","t":[{}],"o":[{c}],"h":[{c}],"l":[{c}],"c":[{c}],"v":[{zeros}]}}"#,
            t.join(",")
        )
    }

    #[tokio::test]
    async fn latest_price_reads_hermes_like_the_reference_miner() {
        let server = LocalServer::start(|_, target| {
            assert!(target.starts_with("/v2/updates/price/latest?"), "{target}");
            Reply::Json(200, hermes_body(BTC_FEED, "10452345678901", -8))
        });
        let spot = client(&server, 1, 2000).latest_price("BTC").await.unwrap();
        // Python: int("10452345678901") * 10**-8
        assert_eq!(spot.price, 10452345678901.0 * 1e-8);
        assert_eq!(spot.price, 104523.45678901);
        assert_eq!((spot.mantissa, spot.expo), (10452345678901, -8));
        assert_eq!(spot.conf, 30.21);
        assert_eq!(spot.publish_time, 1780315500);
        let t = &server.targets()[0];
        assert!(
            t.contains(&format!("ids%5B%5D={BTC_FEED}"))
                || t.contains(&format!("ids[]={BTC_FEED}")),
            "{t}"
        );
    }

    #[tokio::test]
    async fn latest_price_rejects_the_wrong_feed_and_unknown_assets() {
        let server = LocalServer::start(|_, _| Reply::Json(200, hermes_body("abcd", "1", 0)));
        let c = client(&server, 1, 2000);
        let e = c.latest_price("BTC").await.unwrap_err();
        assert!(matches!(e, PythError::Shape { .. }), "{e}");
        assert!(e.to_string().contains("expected e62df6c8"), "{e}");
        let e = c.latest_price("DOGE").await.unwrap_err();
        assert!(matches!(e, PythError::UnknownAsset(_)), "{e}");
        let e = c
            .asset_history("WTIOIL", Resolution::OneMinute, 0, 60)
            .await
            .unwrap_err();
        assert!(matches!(e, PythError::NoSymbol(_)), "{e}");
        // Nothing reached the server for the last two.
        assert_eq!(server.targets().len(), 1);
    }

    #[tokio::test]
    async fn history_parses_udf_bars_with_the_spec_symbol() {
        let server = LocalServer::start(|_, _| Reply::Json(200, udf(&[600, 660, 780])));
        let bars = client(&server, 1, 2000)
            .asset_history("XAU", Resolution::OneMinute, 600, 840)
            .await
            .unwrap();
        assert_eq!(bars.len(), 3);
        assert_eq!(bars[2].t, 780);
        assert_eq!(bars[2].close, 100.0 + 780.0 / 8.0);
        assert_eq!(bars[0].volume, 0.0);
        let t = &server.targets()[0];
        assert!(t.starts_with("/v1/shims/tradingview/history?"), "{t}");
        assert!(t.contains("symbol=Crypto.XAUT%2FUSD"), "{t}");
        assert!(
            t.contains("resolution=1") && t.contains("from=600") && t.contains("to=840"),
            "{t}"
        );
    }

    #[tokio::test]
    async fn no_data_is_an_empty_history_and_error_is_an_error() {
        let server = LocalServer::start(|n, _| {
            if n == 0 {
                Reply::Json(200, r#"{"s":"no_data","nextTime":1700000000}"#.into())
            } else {
                Reply::Json(200, r#"{"s":"error","errmsg":"Symbol not found"}"#.into())
            }
        });
        let c = client(&server, 3, 2000);
        let bars = c
            .asset_history("BTC", Resolution::FiveMinutes, 0, 3000)
            .await
            .unwrap();
        assert!(bars.is_empty());
        let e = c
            .asset_history("BTC", Resolution::FiveMinutes, 0, 3000)
            .await
            .unwrap_err();
        assert!(matches!(e, PythError::Upstream { .. }), "{e}");
        assert!(e.to_string().contains("Symbol not found"), "{e}");
        assert_eq!(
            server.targets().len(),
            2,
            "an upstream error is not retried"
        );
    }

    #[tokio::test]
    async fn retries_5xx_and_429_then_succeeds() {
        let server = LocalServer::start(|n, _| match n {
            0 => Reply::Json(503, "busy".into()),
            1 => Reply::Json(429, "slow down".into()),
            _ => Reply::Json(200, udf(&[300, 600])),
        });
        let bars = client(&server, 3, 2000)
            .asset_history("ETH", Resolution::FiveMinutes, 300, 600)
            .await
            .unwrap();
        assert_eq!(bars.len(), 2);
        assert_eq!(server.targets().len(), 3);
    }

    #[tokio::test]
    async fn gives_up_after_the_attempts_and_names_the_status() {
        let server = LocalServer::start(|_, _| Reply::Json(502, "bad gateway".into()));
        let e = client(&server, 3, 2000)
            .latest_price("ETH")
            .await
            .unwrap_err();
        match &e {
            PythError::Status {
                status,
                attempts,
                body,
                ..
            } => {
                assert_eq!((*status, *attempts), (502, 3));
                assert_eq!(body, "bad gateway");
            }
            other => panic!("{other}"),
        }
        assert_eq!(server.targets().len(), 3);
    }

    #[tokio::test]
    async fn client_errors_are_not_retried() {
        let server =
            LocalServer::start(|_, _| Reply::Json(404, r#"{"detail":"not found"}"#.into()));
        let e = client(&server, 5, 2000)
            .latest_price("SOL")
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                PythError::Status {
                    status: 404,
                    attempts: 1,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("HTTP 404"), "{e}");
        assert_eq!(server.targets().len(), 1);
    }

    #[tokio::test]
    async fn malformed_bodies_are_named() {
        let server = LocalServer::start(|n, _| match n {
            0 => Reply::Json(200, "<html>oops</html>".into()),
            1 => Reply::Json(
                200,
                r#"{"s":"ok","t":[60,120],"o":[1],"h":[1,1],"l":[1,1],"c":[1,1]}"#.into(),
            ),
            2 => Reply::Json(
                200,
                r#"{"s":"ok","t":[61],"o":[1],"h":[1],"l":[1],"c":[1],"v":[0]}"#.into(),
            ),
            3 => Reply::Json(200, r#"{"parsed":[]}"#.into()),
            _ => Reply::Json(200, r#"[1,2,3]"#.into()),
        });
        let c = client(&server, 1, 2000);
        let e = c
            .asset_history("BTC", Resolution::OneMinute, 0, 60)
            .await
            .unwrap_err();
        assert!(matches!(e, PythError::Json { .. }), "{e}");
        assert!(e.to_string().contains("<html>oops"), "{e}");
        let e = c
            .asset_history("BTC", Resolution::OneMinute, 0, 120)
            .await
            .unwrap_err();
        assert!(
            e.to_string().contains("\"o\" has 1 values but \"t\" has 2"),
            "{e}"
        );
        let e = c
            .asset_history("BTC", Resolution::OneMinute, 0, 120)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("not on the 60 s grid"), "{e}");
        let e = c.latest_price("BTC").await.unwrap_err();
        assert!(e.to_string().contains("\"parsed\" is empty"), "{e}");
        let e = c
            .asset_history("BTC", Resolution::OneMinute, 0, 120)
            .await
            .unwrap_err();
        assert!(
            e.to_string().contains("not a TradingView history object"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_server_that_never_answers_times_out_after_retries() {
        let server = LocalServer::start(|_, _| Reply::Hang);
        let started = std::time::Instant::now();
        let e = client(&server, 2, 150)
            .latest_price("BTC")
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                PythError::Timeout {
                    attempts: 2,
                    timeout_ms: 150,
                    ..
                }
            ),
            "{e}"
        );
        assert!(started.elapsed() < Duration::from_secs(3));
        assert_eq!(server.targets().len(), 2);
    }

    #[tokio::test]
    async fn connection_refused_is_retried_then_reported() {
        // Bind then drop: nothing listens on the port any more.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let c = PythClient::new(PythConfig {
            hermes_url: format!("http://127.0.0.1:{port}"),
            benchmarks_url: format!("http://127.0.0.1:{port}"),
            timeout: Duration::from_millis(500),
            attempts: 2,
            backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(1),
        })
        .unwrap();
        let e = c.latest_price("BTC").await.unwrap_err();
        assert!(matches!(e, PythError::Transport { attempts: 2, .. }), "{e}");
    }

    #[test]
    fn spot_price_follows_python_int_times_pow() {
        // int(p) * 10**expo for negative and non-negative exponents.
        for (m, e, want) in [
            // repr(6512345 * 10**-2) == '65123.450000000004' in CPython.
            (6512345i64, -2i32, 65123.450000000004f64),
            (123456789, -8, 1.2345678900000001),
            (42, 0, 42.0),
            (7, 3, 7000.0),
        ] {
            let body = hermes_body(BTC_FEED, &m.to_string(), e);
            let s = parse_hermes_latest("u", "BTC", BTC_FEED, &body).unwrap();
            assert_eq!(s.price, want, "{m}e{e}");
        }
        let body = hermes_body(BTC_FEED, "-5", -2);
        assert!(parse_hermes_latest("u", "BTC", BTC_FEED, &body).is_err());
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let c = PythConfig {
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(350),
            ..PythConfig::default()
        };
        assert_eq!(c.backoff_for(1), Duration::from_millis(100));
        assert_eq!(c.backoff_for(2), Duration::from_millis(200));
        assert_eq!(c.backoff_for(3), Duration::from_millis(350));
        assert_eq!(c.backoff_for(40), Duration::from_millis(350));
    }

    #[test]
    fn symbols_and_feeds_come_from_the_constants() {
        assert_eq!(tradingview_symbol("XAU").unwrap(), "Crypto.XAUT/USD");
        assert!(matches!(
            tradingview_symbol("SP500"),
            Err(PythError::NoSymbol(_))
        ));
        assert!(matches!(feed_id("SPCX"), Err(PythError::NoFeed(_))));
        assert!(matches!(feed_id("SPYX"), Err(PythError::UnknownAsset(_))));
        assert_eq!(feed_id("BTC").unwrap(), BTC_FEED);
        assert!(resolution_from_minutes(15).is_err());
    }
}
