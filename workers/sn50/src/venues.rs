//! Realised prices and spot prices from the venues the December 2026 validator reads: Binance
//! spot (BTC ETH SOL XRP) and Hyperliquid (HYPE, and the equities/commodities perps of the
//! `xyz` HIP-3 dex), plus Pyth where an asset's source still says so.
//!
//! - Binance: `GET {base}/api/v3/klines?symbol=..&interval=1m|5m&startTime=..&endTime=..&limit=..`
//!   (paged forward by `startTime`) and `GET {base}/api/v3/ticker/price?symbol=..`.
//! - Hyperliquid: `POST {base}/info` with `{"type":"candleSnapshot","req":{..}}` (paged by
//!   windows of at most [`VenueConfig::hyperliquid_page`] candles, under the server's cap of
//!   about 5000 per answer, and from the last candle on when an answer stops short) and `{"type":"allMids"}` (`"dex":"xyz"` for an `xyz:` coin).
//!
//! [`VenueClient`] speaks the two protocols; [`PriceClient`] picks the venue and symbol of an
//! asset from [`Sn50Config::price_sources`] and answers history bars (the
//! [`HistoryBar`] that `download` merges: open time in unix seconds, close = the bar's close)
//! and the latest spot price. Base URLs come from `BINANCE_API_URL` / `HYPERLIQUID_API_URL`
//! ([`VenueConfig::from_env`]). Failures that may pass (HTTP 429, 5xx, timeouts, connection
//! and body-read errors) are retried with the same backoff policy as [`super::pyth`]; anything
//! else is an error naming the request and what was wrong with the answer.
//!
//! What this module does not do: write files (see [`super::download`]), cache prices (the
//! miner's `spot` module does), or decide which venue an asset uses (the constants do).

use std::collections::BTreeMap;
use std::time::Duration;

use jobs::retry::{Failure, RetryPolicy};
use serde_json::Value;

use super::constants::{PriceSource, Sn50Config, Venue, BINANCE_API_URL, HYPERLIQUID_API_URL};
use super::http::Fault;
use super::pyth::{HistoryBar, PythClient, PythConfig, PythError, Resolution};

/// Environment variable overriding the Binance base URL.
pub const BINANCE_URL_ENV: &str = "BINANCE_API_URL";
/// Environment variable overriding the Hyperliquid base URL.
pub const HYPERLIQUID_URL_ENV: &str = "HYPERLIQUID_API_URL";

/// Errors from the venue clients.
#[derive(Debug, thiserror::Error)]
pub enum VenueError {
    #[error(
        "unknown SN50 asset {0:?}: the SN50 constants give no price source for it (add one under [price_sources] in the constants TOML)"
    )]
    UnknownAsset(String),
    #[error("the {venue} symbol of {asset} is empty: set it under [price_sources] in the constants TOML")]
    EmptySymbol { asset: String, venue: &'static str },
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
    #[error(transparent)]
    Pyth(#[from] PythError),
}

/// Where and how the client talks to Binance and Hyperliquid.
#[derive(Debug, Clone)]
pub struct VenueConfig {
    /// Binance base URL, without a trailing slash.
    pub binance_url: String,
    /// Hyperliquid base URL, without a trailing slash.
    pub hyperliquid_url: String,
    /// Whole-request timeout (connect, send, read the body).
    pub timeout: Duration,
    /// Attempts per request, the first included (at least 1).
    pub attempts: u32,
    /// Delay before the first retry; doubled for each further retry.
    pub backoff: Duration,
    /// The longest delay between attempts (also caps a server's `Retry-After`).
    pub max_backoff: Duration,
    /// Klines per Binance request (`limit`, at most 1000).
    pub binance_limit: u32,
    /// Candles per Hyperliquid request window (the server answers at most about 5000).
    pub hyperliquid_page: u32,
}

impl Default for VenueConfig {
    fn default() -> Self {
        VenueConfig {
            binance_url: BINANCE_API_URL.to_string(),
            hyperliquid_url: HYPERLIQUID_API_URL.to_string(),
            timeout: Duration::from_secs(20),
            attempts: 5,
            backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(16),
            binance_limit: 1000,
            hyperliquid_page: 5000,
        }
    }
}

impl VenueConfig {
    /// The defaults with the base URLs from `BINANCE_API_URL` / `HYPERLIQUID_API_URL` when set.
    pub fn from_env() -> Self {
        let mut c = VenueConfig::default();
        if let Some(u) = std::env::var(BINANCE_URL_ENV)
            .ok()
            .filter(|u| !u.is_empty())
        {
            c.binance_url = u;
        }
        if let Some(u) = std::env::var(HYPERLIQUID_URL_ENV)
            .ok()
            .filter(|u| !u.is_empty())
        {
            c.hyperliquid_url = u;
        }
        c
    }

    /// The retry policy these settings describe (the same shape as Pyth's).
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            attempts: self.attempts.max(1),
            base: self.backoff,
            max_delay: self.max_backoff,
            ..RetryPolicy::default()
        }
    }

    /// The base URL of `venue` (Pyth's are in [`PythConfig`]: `None`).
    pub fn base_url(&self, venue: Venue) -> Option<&str> {
        match venue {
            Venue::Binance => Some(self.binance_url.trim_end_matches('/')),
            Venue::Hyperliquid => Some(self.hyperliquid_url.trim_end_matches('/')),
            Venue::Pyth => None,
        }
    }
}

/// Which source `data download`, `data spot` and the `data-download` job ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SourceChoice {
    /// Each asset's realised-price source from the constants (Binance, Hyperliquid, or Pyth
    /// where an asset's source says so): what the validator scores against.
    #[default]
    Venue,
    /// Pyth for every asset (benchmarks history, Hermes spot): the May 2026 source.
    Pyth,
}

impl SourceChoice {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceChoice::Venue => "venue",
            SourceChoice::Pyth => "pyth",
        }
    }
}

/// An unknown `--source` value.
#[derive(Debug, thiserror::Error)]
#[error("unknown price source {0:?}: use `venue` (each asset's realised-price venue from the SN50 constants: Binance, Hyperliquid) or `pyth` (Pyth for every asset)")]
pub struct UnknownSourceChoice(pub String);

impl std::str::FromStr for SourceChoice {
    type Err = UnknownSourceChoice;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "venue" | "venues" => Ok(SourceChoice::Venue),
            "pyth" => Ok(SourceChoice::Pyth),
            other => Err(UnknownSourceChoice(other.to_string())),
        }
    }
}

/// A latest price from an asset's venue.
#[derive(Debug, Clone, PartialEq)]
pub struct VenueSpot {
    pub asset: String,
    pub venue: Venue,
    /// The venue's symbol for the asset (`BTCUSDT`, `xyz:NVDA`, Pyth's feed id).
    pub symbol: String,
    pub price: f64,
    /// The request that answered it.
    pub url: String,
    /// Pyth only: the confidence interval and the publish time (unix seconds).
    pub conf: Option<f64>,
    pub publish_time: Option<i64>,
}

/// The Binance `interval` / Hyperliquid `i` value of a resolution.
fn interval(r: Resolution) -> &'static str {
    match r {
        Resolution::OneMinute => "1m",
        Resolution::FiveMinutes => "5m",
    }
}

fn parse_json(url: &str, body: &str) -> Result<Value, VenueError> {
    serde_json::from_str(body).map_err(|e| VenueError::Json {
        url: url.to_string(),
        message: e.to_string(),
        snippet: body.chars().take(120).collect(),
    })
}

/// A price or volume sent as a decimal string (or, tolerated, a JSON number).
fn number(v: &Value) -> Option<f64> {
    match v {
        Value::String(s) => s.trim().parse::<f64>().ok(),
        Value::Number(n) => n.as_f64(),
        _ => None,
    }
}

/// An integer millisecond time (a JSON integer, or tolerated, an integer string).
fn millis(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Check a parsed bar: on the grid, positive finite prices, after the previous one.
fn check_bar(
    url: &str,
    what: &str,
    bar: &HistoryBar,
    step: i64,
    prev: Option<i64>,
) -> Result<(), VenueError> {
    let shape = |message: String| VenueError::Shape {
        url: url.to_string(),
        message,
    };
    if bar.t % step != 0 {
        return Err(shape(format!(
            "{what} opens at {} s, not on the {step} s grid",
            bar.t
        )));
    }
    if ![bar.open, bar.high, bar.low, bar.close]
        .iter()
        .all(|p| p.is_finite() && *p > 0.0)
    {
        return Err(shape(format!(
            "{what} (t={}) has a non-positive or non-finite price",
            bar.t
        )));
    }
    if let Some(p) = prev.filter(|p| bar.t <= *p) {
        return Err(shape(format!(
            "{what} (t={}) is not after the previous bar (t={p})",
            bar.t
        )));
    }
    Ok(())
}

/// Parse a Binance `/api/v3/klines` body: `[[openTime, "o", "h", "l", "c", "v", closeTime, ..]]`.
pub fn parse_binance_klines(
    url: &str,
    body: &str,
    step_secs: i64,
) -> Result<Vec<HistoryBar>, VenueError> {
    let v = parse_json(url, body)?;
    let shape = |message: String| VenueError::Shape {
        url: url.to_string(),
        message,
    };
    let rows = v.as_array().ok_or_else(|| {
        shape(format!(
            "expected a JSON array of klines, got {}",
            v.to_string().chars().take(120).collect::<String>()
        ))
    })?;
    let mut bars: Vec<HistoryBar> = Vec::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        let cells = row
            .as_array()
            .filter(|c| c.len() >= 6)
            .ok_or_else(|| shape(format!("kline {i} is not an array of at least 6 values")))?;
        let open_ms = millis(&cells[0]).ok_or_else(|| {
            shape(format!(
                "kline {i}: open time {} is not an integer",
                cells[0]
            ))
        })?;
        if open_ms % 1000 != 0 {
            return Err(shape(format!(
                "kline {i}: open time {open_ms} ms is not a whole second"
            )));
        }
        let mut vals = [0.0f64; 5];
        for (k, name) in ["open", "high", "low", "close", "volume"]
            .iter()
            .enumerate()
        {
            vals[k] = number(&cells[k + 1]).ok_or_else(|| {
                shape(format!(
                    "kline {i}: {name} {} is not a decimal number",
                    cells[k + 1]
                ))
            })?;
        }
        let bar = HistoryBar {
            t: open_ms / 1000,
            open: vals[0],
            high: vals[1],
            low: vals[2],
            close: vals[3],
            volume: vals[4],
        };
        check_bar(
            url,
            &format!("kline {i}"),
            &bar,
            step_secs,
            bars.last().map(|b| b.t),
        )?;
        bars.push(bar);
    }
    Ok(bars)
}

/// Parse a Hyperliquid `candleSnapshot` body: `[{"t","T","s","i","o","c","h","l","v","n"}]`.
pub fn parse_hyperliquid_candles(
    url: &str,
    body: &str,
    coin: &str,
    step_secs: i64,
) -> Result<Vec<HistoryBar>, VenueError> {
    let v = parse_json(url, body)?;
    let shape = |message: String| VenueError::Shape {
        url: url.to_string(),
        message,
    };
    let rows = v.as_array().ok_or_else(|| {
        shape(format!(
            "expected a JSON array of candles, got {}",
            v.to_string().chars().take(120).collect::<String>()
        ))
    })?;
    let mut bars: Vec<HistoryBar> = Vec::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        let obj = row
            .as_object()
            .ok_or_else(|| shape(format!("candle {i} is not an object")))?;
        if let Some(s) = obj.get("s").and_then(Value::as_str) {
            if s != coin {
                return Err(shape(format!(
                    "candle {i} is for coin {s:?}, expected {coin:?}"
                )));
            }
        }
        let t = obj
            .get("t")
            .and_then(millis)
            .ok_or_else(|| shape(format!("candle {i} has no integer open time \"t\"")))?;
        if t % 1000 != 0 {
            return Err(shape(format!(
                "candle {i}: open time {t} ms is not a whole second"
            )));
        }
        let field = |name: &str| -> Result<f64, VenueError> {
            obj.get(name).and_then(number).ok_or_else(|| {
                shape(format!(
                    "candle {i} has no decimal \"{name}\" (got {})",
                    obj.get(name).map_or("nothing".into(), Value::to_string)
                ))
            })
        };
        let bar = HistoryBar {
            t: t / 1000,
            open: field("o")?,
            high: field("h")?,
            low: field("l")?,
            close: field("c")?,
            volume: field("v").unwrap_or(0.0),
        };
        check_bar(
            url,
            &format!("candle {i}"),
            &bar,
            step_secs,
            bars.last().map(|b| b.t),
        )?;
        bars.push(bar);
    }
    Ok(bars)
}

/// Parse a Binance `/api/v3/ticker/price` body for `symbol`.
pub fn parse_binance_ticker(url: &str, body: &str, symbol: &str) -> Result<f64, VenueError> {
    let v = parse_json(url, body)?;
    let shape = |message: String| VenueError::Shape {
        url: url.to_string(),
        message,
    };
    let got = v.get("symbol").and_then(Value::as_str);
    if got != Some(symbol) {
        return Err(shape(format!(
            "expected {{\"symbol\":\"{symbol}\",\"price\":..}}, got symbol {got:?}"
        )));
    }
    let price = v
        .get("price")
        .and_then(number)
        .ok_or_else(|| shape("\"price\" is missing or not a decimal number".into()))?;
    positive(url, price)
}

/// Parse a Hyperliquid `allMids` body for `coin`.
pub fn parse_hyperliquid_mids(url: &str, body: &str, coin: &str) -> Result<f64, VenueError> {
    let v = parse_json(url, body)?;
    let shape = |message: String| VenueError::Shape {
        url: url.to_string(),
        message,
    };
    let mids = v
        .as_object()
        .ok_or_else(|| shape("expected an object of coin -> mid price".into()))?;
    let mid = mids.get(coin).ok_or_else(|| {
        shape(format!(
            "no mid price for coin {coin:?} among {} coin(s); check the asset's Hyperliquid symbol under [price_sources]",
            mids.len()
        ))
    })?;
    let price = number(mid)
        .ok_or_else(|| shape(format!("the mid of {coin} is {mid}, not a decimal number")))?;
    positive(url, price)
}

fn positive(url: &str, price: f64) -> Result<f64, VenueError> {
    if price.is_finite() && price > 0.0 {
        Ok(price)
    } else {
        Err(VenueError::Shape {
            url: url.to_string(),
            message: format!("price {price} is not a positive number"),
        })
    }
}

/// The HIP-3 dex of a Hyperliquid coin (`xyz` for `xyz:NVDA`), `None` for the main dex.
pub fn hyperliquid_dex(coin: &str) -> Option<&str> {
    coin.split_once(':').map(|(dex, _)| dex)
}

/// How a request is sent.
enum Request<'a> {
    Get(&'a [(&'a str, String)]),
    Post(&'a Value),
}

/// The Binance and Hyperliquid client.
#[derive(Debug, Clone)]
pub struct VenueClient {
    http: reqwest::Client,
    config: VenueConfig,
}

impl VenueClient {
    pub fn new(config: VenueConfig) -> Result<Self, VenueError> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .user_agent(concat!("synth-city/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| VenueError::Client(e.to_string()))?;
        Ok(VenueClient { http, config })
    }

    /// A client configured from the environment ([`VenueConfig::from_env`]).
    pub fn from_env() -> Result<Self, VenueError> {
        VenueClient::new(VenueConfig::from_env())
    }

    pub fn config(&self) -> &VenueConfig {
        &self.config
    }

    fn binance(&self, path: &str) -> String {
        format!("{}{path}", self.config.binance_url.trim_end_matches('/'))
    }

    fn hyperliquid_info(&self) -> String {
        format!("{}/info", self.config.hyperliquid_url.trim_end_matches('/'))
    }

    /// Binance klines of `symbol` with open times in `[from, to]` (unix seconds), paged
    /// forward by `startTime` with `limit` klines per request.
    pub async fn binance_klines(
        &self,
        symbol: &str,
        resolution: Resolution,
        from: i64,
        to: i64,
    ) -> Result<Vec<HistoryBar>, VenueError> {
        if from > to {
            return Err(VenueError::Range { from, to });
        }
        let step = resolution.step_secs();
        let limit = self.config.binance_limit.clamp(1, 1000);
        let url = self.binance("/api/v3/klines");
        let mut out: Vec<HistoryBar> = Vec::new();
        let mut start = from;
        while start <= to {
            let query = [
                ("symbol", symbol.to_string()),
                ("interval", interval(resolution).to_string()),
                ("startTime", (start * 1000).to_string()),
                ("endTime", (to * 1000).to_string()),
                ("limit", limit.to_string()),
            ];
            let named = format!(
                "{url}?symbol={symbol}&interval={}&startTime={}&endTime={}&limit={limit}",
                interval(resolution),
                start * 1000,
                to * 1000
            );
            let body = self.send(&named, &url, Request::Get(&query)).await?;
            let bars = parse_binance_klines(&named, &body, step)?;
            let Some(last) = bars.last().map(|b| b.t) else {
                break; // nothing from `start` on
            };
            if last < start {
                return Err(VenueError::Shape {
                    url: named,
                    message: format!(
                        "klines end at {last} s, before the startTime asked ({start} s)"
                    ),
                });
            }
            out.extend(bars.into_iter().filter(|b| b.t >= start && b.t <= to));
            start = last + step;
        }
        Ok(out)
    }

    /// Hyperliquid candles of `coin` with open times in `[from, to]` (unix seconds), asked in
    /// windows of at most `hyperliquid_page` candles so that no answer is cut at the cap; an
    /// answer that stops before its window ends is followed by a request from its last candle
    /// on (an empty answer ends the window: nothing traded there).
    pub async fn hyperliquid_candles(
        &self,
        coin: &str,
        resolution: Resolution,
        from: i64,
        to: i64,
    ) -> Result<Vec<HistoryBar>, VenueError> {
        if from > to {
            return Err(VenueError::Range { from, to });
        }
        let step = resolution.step_secs();
        let page = i64::from(self.config.hyperliquid_page.max(1));
        let url = self.hyperliquid_info();
        let mut out: Vec<HistoryBar> = Vec::new();
        let mut start = from;
        let mut end = (start + (page - 1) * step).min(to);
        while start <= to {
            let req = serde_json::json!({
                "type": "candleSnapshot",
                "req": {
                    "coin": coin,
                    "interval": interval(resolution),
                    "startTime": start * 1000,
                    "endTime": end * 1000,
                },
            });
            let named = format!(
                "{url} (candleSnapshot {coin} {} {}..{} ms)",
                interval(resolution),
                start * 1000,
                end * 1000
            );
            let body = self.send(&named, &url, Request::Post(&req)).await?;
            let bars = parse_hyperliquid_candles(&named, &body, coin, step)?;
            let floor = out.last().map(|b| b.t);
            let before = out.len();
            out.extend(
                bars.into_iter()
                    .filter(|b| b.t >= start && b.t <= end && floor.is_none_or(|f| b.t > f)),
            );
            match out.last().map(|b| b.t) {
                // Cut short (a server capping below the window): go on from the last candle.
                Some(last) if out.len() > before && last < end => start = last + step,
                // The window is done (or empty): the next one.
                _ => {
                    start = end + step;
                    end = (start + (page - 1) * step).min(to);
                }
            }
        }
        Ok(out)
    }

    /// The Binance last price of `symbol`, and the request that answered it.
    pub async fn binance_price(&self, symbol: &str) -> Result<(f64, String), VenueError> {
        let url = self.binance("/api/v3/ticker/price");
        let named = format!("{url}?symbol={symbol}");
        let query = [("symbol", symbol.to_string())];
        let body = self.send(&named, &url, Request::Get(&query)).await?;
        Ok((parse_binance_ticker(&named, &body, symbol)?, named))
    }

    /// The Hyperliquid mid price of `coin` (`allMids`, on the coin's dex), and the request.
    pub async fn hyperliquid_mid(&self, coin: &str) -> Result<(f64, String), VenueError> {
        let url = self.hyperliquid_info();
        let (req, named) = match hyperliquid_dex(coin) {
            Some(dex) => (
                serde_json::json!({"type": "allMids", "dex": dex}),
                format!("{url} (allMids dex {dex})"),
            ),
            None => (
                serde_json::json!({"type": "allMids"}),
                format!("{url} (allMids)"),
            ),
        };
        let body = self.send(&named, &url, Request::Post(&req)).await?;
        Ok((parse_hyperliquid_mids(&named, &body, coin)?, named))
    }

    /// One request with retries; the body of the first 2xx answer. Errors name `named`.
    async fn send(&self, named: &str, url: &str, req: Request<'_>) -> Result<String, VenueError> {
        self.config
            .retry_policy()
            .run("venue request", |attempt| {
                self.try_once(named, url, &req, attempt)
            })
            .await
            .map_err(|e| e.error)
    }

    async fn try_once(
        &self,
        named: &str,
        url: &str,
        req: &Request<'_>,
        attempt: u32,
    ) -> Result<String, Failure<VenueError>> {
        let request = match req {
            Request::Get(query) => self.http.get(url).query(query),
            Request::Post(body) => self.http.post(url).json(body),
        };
        super::http::send_once(request).await.map_err(|f| {
            f.map(|fault| match fault {
                Fault::Timeout => VenueError::Timeout {
                    url: named.to_string(),
                    timeout_ms: self.config.timeout.as_millis(),
                    attempts: attempt,
                },
                Fault::Transport(message) => VenueError::Transport {
                    url: named.to_string(),
                    attempts: attempt,
                    message,
                },
                Fault::Status { status, body } => VenueError::Status {
                    url: named.to_string(),
                    status,
                    attempts: attempt,
                    body,
                },
            })
        })
    }
}

/// Prices of SN50 assets from each asset's realised-price source (venue and symbol from the
/// constants): Binance, Hyperliquid or Pyth.
#[derive(Debug, Clone)]
pub struct PriceClient {
    venues: VenueClient,
    pyth: PythClient,
    sources: BTreeMap<String, PriceSource>,
    tradingview_symbols: BTreeMap<String, String>,
    feeds: BTreeMap<String, String>,
}

impl PriceClient {
    /// A client for the sources of `constants`.
    pub fn new(
        venues: VenueConfig,
        pyth: PythConfig,
        constants: &Sn50Config,
    ) -> Result<Self, VenueError> {
        Ok(PriceClient {
            venues: VenueClient::new(venues)?,
            pyth: PythClient::new(pyth)?,
            sources: constants.price_sources.clone(),
            tradingview_symbols: constants.tradingview_symbols.clone(),
            feeds: constants.pyth_feed_ids.clone(),
        })
    }

    /// A client with every base URL from the environment.
    pub fn from_env(constants: &Sn50Config) -> Result<Self, VenueError> {
        PriceClient::new(VenueConfig::from_env(), PythConfig::from_env(), constants)
    }

    pub fn venue_config(&self) -> &VenueConfig {
        self.venues.config()
    }

    pub fn pyth_config(&self) -> &PythConfig {
        self.pyth.config()
    }

    /// Where `asset`'s realised prices come from.
    pub fn source(&self, asset: &str) -> Result<PriceSource, VenueError> {
        let s = self
            .sources
            .get(asset)
            .ok_or_else(|| VenueError::UnknownAsset(asset.to_string()))?;
        if s.symbol.trim().is_empty() {
            return Err(VenueError::EmptySymbol {
                asset: asset.to_string(),
                venue: s.venue.as_str(),
            });
        }
        Ok(s.clone())
    }

    /// `asset`'s Pyth benchmarks source (the TradingView symbol), whatever its venue is: what
    /// `--source pyth` downloads.
    pub fn pyth_source(&self, asset: &str) -> Result<PriceSource, VenueError> {
        let known = self.sources.contains_key(asset) || self.feeds.contains_key(asset);
        match self.tradingview_symbols.get(asset) {
            Some(s) if !s.trim().is_empty() => Ok(PriceSource {
                venue: Venue::Pyth,
                symbol: s.clone(),
            }),
            _ if known => Err(PythError::NoSymbol(asset.to_string()).into()),
            _ => Err(PythError::UnknownAsset(asset.to_string()).into()),
        }
    }

    /// Where `asset`'s prices come from under `choice`.
    pub fn source_for(&self, asset: &str, choice: SourceChoice) -> Result<PriceSource, VenueError> {
        match choice {
            SourceChoice::Venue => self.source(asset),
            SourceChoice::Pyth => self.pyth_source(asset),
        }
    }

    /// The base URL a source is asked at (for messages).
    pub fn describe(&self, source: &PriceSource, spot: bool) -> String {
        let base = match source.venue {
            Venue::Pyth if spot => self.pyth.config().hermes_url.clone(),
            Venue::Pyth => self.pyth.config().benchmarks_url.clone(),
            v => self
                .venues
                .config()
                .base_url(v)
                .unwrap_or_default()
                .to_string(),
        };
        format!("{} {} at {base}", source.venue.as_str(), source.symbol)
    }

    /// Bars from `source` with open times in `[from, to]` (unix seconds), paged as the venue
    /// needs (one request for Pyth).
    pub async fn history(
        &self,
        source: &PriceSource,
        resolution: Resolution,
        from: i64,
        to: i64,
    ) -> Result<Vec<HistoryBar>, VenueError> {
        match source.venue {
            Venue::Binance => {
                self.venues
                    .binance_klines(&source.symbol, resolution, from, to)
                    .await
            }
            Venue::Hyperliquid => {
                self.venues
                    .hyperliquid_candles(&source.symbol, resolution, from, to)
                    .await
            }
            Venue::Pyth => Ok(self
                .pyth
                .history(&source.symbol, resolution, from, to)
                .await?),
        }
    }

    /// Bars of `asset` from its own source.
    pub async fn asset_history(
        &self,
        asset: &str,
        resolution: Resolution,
        from: i64,
        to: i64,
    ) -> Result<Vec<HistoryBar>, VenueError> {
        let source = self.source(asset)?;
        self.history(&source, resolution, from, to).await
    }

    /// The latest price of `asset` from its own source.
    pub async fn spot(&self, asset: &str) -> Result<VenueSpot, VenueError> {
        let source = self.source(asset)?;
        self.spot_from(asset, &source).await
    }

    /// The latest price of `asset` under `choice` (Pyth: its Hermes feed, benchmarks symbol
    /// or not).
    pub async fn spot_with(
        &self,
        asset: &str,
        choice: SourceChoice,
    ) -> Result<VenueSpot, VenueError> {
        match choice {
            SourceChoice::Venue => self.spot(asset).await,
            SourceChoice::Pyth => {
                if !self.feeds.contains_key(asset) && !self.sources.contains_key(asset) {
                    return Err(PythError::UnknownAsset(asset.to_string()).into());
                }
                let pyth = PriceSource {
                    venue: Venue::Pyth,
                    symbol: String::new(),
                };
                self.spot_from(asset, &pyth).await
            }
        }
    }

    /// The latest price of `asset` from `source`. A Pyth source takes the asset's Hermes feed
    /// id from the constants (its `symbol` is a benchmarks symbol, not a feed).
    pub async fn spot_from(
        &self,
        asset: &str,
        source: &PriceSource,
    ) -> Result<VenueSpot, VenueError> {
        let (price, url, symbol, conf, publish_time) = match source.venue {
            Venue::Binance => {
                let (p, url) = self.venues.binance_price(&source.symbol).await?;
                (p, url, source.symbol.clone(), None, None)
            }
            Venue::Hyperliquid => {
                let (p, url) = self.venues.hyperliquid_mid(&source.symbol).await?;
                (p, url, source.symbol.clone(), None, None)
            }
            Venue::Pyth => {
                let feed = self
                    .feeds
                    .get(asset)
                    .ok_or_else(|| PythError::NoFeed(asset.to_string()))?;
                let p = self.pyth.latest_feed_price(asset, feed).await?;
                let url = format!(
                    "{}/v2/updates/price/latest",
                    self.pyth.config().hermes_url.trim_end_matches('/')
                );
                (p.price, url, p.feed_id, Some(p.conf), Some(p.publish_time))
            }
        };
        Ok(VenueSpot {
            asset: asset.to_string(),
            venue: source.venue,
            symbol,
            price,
            url,
            conf,
            publish_time,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn klines_parse_closes_at_open_times() {
        let body = r#"[[1700000040000,"97000.10","97010.00","96990.00","97005.50","12.5",1700000099999,"0",10,"0","0","0"],
                       [1700000100000,"97005.50","97020.00","97000.00","97012.25","3",1700000159999,"0",4,"0","0","0"]]"#;
        let bars = parse_binance_klines("u", body, 60).unwrap();
        assert_eq!(bars.len(), 2);
        assert_eq!((bars[0].t, bars[0].close), (1_700_000_040, 97005.5));
        assert_eq!(
            (bars[1].t, bars[1].close, bars[1].volume),
            (1_700_000_100, 97012.25, 3.0)
        );
        let e =
            parse_binance_klines("u", r#"[[1700000040000,"x","1","1","1","1"]]"#, 60).unwrap_err();
        assert!(e.to_string().contains("open \"x\" is not a decimal"), "{e}");
        let e =
            parse_binance_klines("u", r#"[[1700000010000,"1","1","1","1","1"]]"#, 60).unwrap_err();
        assert!(e.to_string().contains("not on the 60 s grid"), "{e}");
        let e =
            parse_binance_klines("u", r#"{"code":-1121,"msg":"Invalid symbol."}"#, 60).unwrap_err();
        assert!(
            e.to_string().contains("expected a JSON array of klines"),
            "{e}"
        );
    }

    #[test]
    fn candles_parse_and_check_the_coin() {
        let body = r#"[{"t":1700000100000,"T":1700000399999,"s":"xyz:NVDA","i":"5m","o":"181.2","c":"181.9","h":"182","l":"181","v":"100.5","n":12}]"#;
        let bars = parse_hyperliquid_candles("u", body, "xyz:NVDA", 300).unwrap();
        assert_eq!(
            (bars[0].t, bars[0].close, bars[0].volume),
            (1_700_000_100, 181.9, 100.5)
        );
        let e = parse_hyperliquid_candles("u", body, "xyz:TSLA", 300).unwrap_err();
        assert!(e.to_string().contains("expected \"xyz:TSLA\""), "{e}");
        let e = parse_hyperliquid_candles(
            "u",
            r#"[{"t":1700000100000,"o":"1","h":"1","l":"1"}]"#,
            "HYPE",
            300,
        )
        .unwrap_err();
        assert!(e.to_string().contains("no decimal \"c\""), "{e}");
    }

    #[test]
    fn spot_bodies_parse() {
        let b = r#"{"symbol":"BTCUSDT","price":"97000.12000000"}"#;
        assert_eq!(parse_binance_ticker("u", b, "BTCUSDT").unwrap(), 97000.12);
        assert!(parse_binance_ticker("u", b, "ETHUSDT").is_err());
        let m = r#"{"xyz:NVDA":"181.25","xyz:GOLD":"4100.5"}"#;
        assert_eq!(parse_hyperliquid_mids("u", m, "xyz:NVDA").unwrap(), 181.25);
        let e = parse_hyperliquid_mids("u", m, "xyz:AAPL").unwrap_err();
        assert!(
            e.to_string().contains("no mid price for coin \"xyz:AAPL\""),
            "{e}"
        );
        assert!(parse_hyperliquid_mids("u", r#"{"HYPE":"0"}"#, "HYPE").is_err());
        assert_eq!(hyperliquid_dex("xyz:SP500"), Some("xyz"));
        assert_eq!(hyperliquid_dex("HYPE"), None);
    }

    #[test]
    fn sources_come_from_the_constants() {
        let c = PriceClient::new(
            VenueConfig::default(),
            PythConfig::default(),
            &Sn50Config::default(),
        )
        .unwrap();
        assert_eq!(c.source("BTC").unwrap().venue, Venue::Binance);
        assert_eq!(c.source("NVDAX").unwrap().symbol, "xyz:NVDA");
        assert!(matches!(c.source("DOGE"), Err(VenueError::UnknownAsset(_))));
        assert_eq!(c.pyth_source("XAU").unwrap().symbol, "Crypto.XAUT/USD");
        let e = c.pyth_source("WTIOIL").unwrap_err();
        assert!(e.to_string().contains("no Pyth benchmarks symbol"), "{e}");
        let e = c.pyth_source("DOGE").unwrap_err();
        assert!(e.to_string().contains("unknown SN50 asset"), "{e}");
    }
}
