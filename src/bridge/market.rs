//! Market data over HTTP: the latest price of an asset from its realised-price
//! venue (`sn50::venues::PriceClient`: Binance at `BINANCE_API_URL`, Hyperliquid
//! at `HYPERLIQUID_API_URL`, Pyth Hermes at `PYTH_HERMES_URL` for an asset whose
//! source the constants, `SYNTH_CITY_SN50_CONSTANTS`, set to `pyth`), bars from the data
//! directory (`sn50::data`: `SYNTH_DATA_DIR`, else the bridge's
//! `--data-dir` when it holds bars, else the shipped `data/sample`, else `../shared/data`), and the fan chart's
//! data: paths simulated by the reference GBM from a past moment of the
//! data, against the prices that were realised after it.
//!
//! Assets are SN50's (`BTC`, `ETH`, `SOL`, `XAU`, `SP500`, ...), matched
//! case-insensitively; anything else is a 400 naming the parameter. An
//! upstream failure (a venue unreachable) is a 502 that says so.
//!
//! It only reads: bars are loaded once per (asset, timeframe) and kept for
//! the bridge's lifetime (a restart picks up new data); downloading bars is
//! the `data-download` job's.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::SeedableRng;
use serde_json::{json, Value};
use warp::http::StatusCode;
use warp::Rejection;

use super::error::reject;
use super::route::{ok, Answer, Call};
use super::State;
use sn50::constants::Sn50Config;
use sn50::constants::{asset_info, ASSETS};
use sn50::data::{asset_file, Bars};
use sn50::forecast::{ForecastError, ForecastRequest, Forecaster, Gbm};
use sn50::pyth::PythConfig;
use sn50::venues::{PriceClient, VenueConfig, VenueError};

/// Where market data is read: `SYNTH_DATA_DIR`; else `configured` when it holds bar files
/// (`ASSET_5m.csv`, `ASSET_1m.csv`); else the real sample shipped in `data/sample`; else
/// `../shared/data` (a development checkout's data); else `configured` (whose missing files the
/// market routes then name, with the command that fetches them).
pub(super) fn data_dir(configured: &Path) -> PathBuf {
    if let Some(d) = std::env::var_os("SYNTH_DATA_DIR").filter(|d| !d.is_empty()) {
        return d.into();
    }
    let has_bars = |d: &Path| {
        std::fs::read_dir(d).is_ok_and(|entries| {
            entries.flatten().any(|e| {
                let n = e.file_name();
                let n = n.to_string_lossy();
                n.ends_with("_5m.csv") || n.ends_with("_1m.csv")
            })
        })
    };
    for d in [
        configured,
        Path::new("data/sample"),
        Path::new("../shared/data"),
    ] {
        if has_bars(d) {
            return d.to_path_buf();
        }
    }
    configured.to_path_buf()
}

/// The market data the bridge keeps: bars already loaded, and the price
/// client (or why there is none).
pub(super) struct Market {
    bars: Mutex<HashMap<(String, i64), Arc<Bars>>>,
    prices: Result<PriceClient, VenueError>,
}

impl Market {
    /// A price client from the environment (the venues' and Pyth's base URLs,
    /// the SN50 constants), with short retries: a bridge request should not
    /// hang for minutes on an absent upstream.
    pub fn from_env() -> Self {
        let mut pyth = PythConfig::from_env();
        pyth.attempts = 2;
        pyth.timeout = Duration::from_secs(10);
        pyth.max_backoff = Duration::from_secs(1);
        let mut venues = VenueConfig::from_env();
        venues.attempts = 2;
        venues.timeout = Duration::from_secs(10);
        venues.max_backoff = Duration::from_secs(1);
        let constants =
            match std::env::var_os("SYNTH_CITY_SN50_CONSTANTS").filter(|p| !p.is_empty()) {
                Some(p) => Sn50Config::load_overrides(Path::new(&p))
                    .map_err(|e| VenueError::Client(format!("SYNTH_CITY_SN50_CONSTANTS: {e}"))),
                None => Ok(Sn50Config::default()),
            };
        Market {
            bars: Mutex::new(HashMap::new()),
            prices: constants.and_then(|c| PriceClient::new(venues, pyth, &c)),
        }
    }
}

/// The canonical asset name, or a 400 naming `param`.
pub(super) fn asset(raw: &str, param: &str) -> Result<&'static str, Rejection> {
    let up = raw.trim().to_ascii_uppercase();
    asset_info(&up).map(|a| a.symbol).ok_or_else(|| {
        let known: Vec<&str> = ASSETS.iter().map(|a| a.symbol).collect();
        reject(
            StatusCode::BAD_REQUEST,
            format!(
                "{param}: unknown asset {raw:?}; use one of {}",
                known.join(", ")
            ),
        )
    })
}

/// `GET /market/price/{asset}`.
pub(super) async fn price(c: Call) -> Answer {
    let a = asset(c.param("asset")?, "path parameter `asset`")?;
    let client = c.state.market.prices.as_ref().map_err(|e| {
        reject(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("no price client: {e}"),
        )
    })?;
    match client.spot(a).await {
        Ok(p) => Ok(ok(
            json!({"asset": p.asset, "price": p.price, "venue": p.venue.as_str(),
                   "symbol": p.symbol, "conf": p.conf, "publish_time": p.publish_time,
                   "source": p.url}),
        )),
        Err(e) => Err(reject(
            StatusCode::BAD_GATEWAY,
            format!("no price for {a} from its venue: {e}"),
        )),
    }
}

fn timeframe(q: &HashMap<String, String>) -> Result<(&'static str, i64), Rejection> {
    match q.get("timeframe").map(String::as_str) {
        None | Some("5m") => Ok(("5m", 300)),
        Some("1m") => Ok(("1m", 60)),
        Some(other) => Err(reject(
            StatusCode::BAD_REQUEST,
            format!("query parameter `timeframe` must be 1m or 5m, got {other:?}"),
        )),
    }
}

/// The bars of an asset, loaded once and kept.
pub(super) async fn bars(s: &State, a: &str, bar_seconds: i64) -> Result<Arc<Bars>, Rejection> {
    let k = (a.to_string(), bar_seconds);
    if let Some(b) = s.market.bars.lock().unwrap().get(&k) {
        return Ok(b.clone());
    }
    let tf = jobs::Timeframe::from_step_secs(bar_seconds).ok_or_else(|| {
        reject(
            StatusCode::BAD_REQUEST,
            format!("no timeframe has {bar_seconds} s bars; use 1m or 5m"),
        )
    })?;
    let dir = s.data_dir.clone();
    let a2 = a.to_string();
    let loaded = tokio::task::spawn_blocking(move || {
        let path = asset_file(&dir, &a2, tf)?;
        Bars::load(&path)
    })
    .await
    .map_err(|e| reject(StatusCode::SERVICE_UNAVAILABLE, format!("loader: {e}")))?;
    match loaded {
        Ok(b) => {
            let b = Arc::new(b);
            s.market.bars.lock().unwrap().insert(k, b.clone());
            Ok(b)
        }
        // the missing-data message already names the asset, the files and the fix
        Err(e @ sn50::data::DataError::NoFile(_)) => {
            Err(reject(StatusCode::NOT_FOUND, e.to_string()))
        }
        Err(e) => Err(reject(
            StatusCode::NOT_FOUND,
            format!("no market data for {a}: {e}"),
        )),
    }
}

/// `GET /market/history/{asset}?days=30&timeframe=5m`: the last `days` of
/// bars in the data directory (counted back from its last bar).
pub(super) async fn history(c: Call) -> Answer {
    let (q, s) = (&c.query, &c.state);
    let a = asset(c.param("asset")?, "path parameter `asset`")?;
    let days = match q.get("days") {
        None => 30.0,
        Some(v) => match v.parse::<f64>() {
            Ok(d) if d > 0.0 && d <= 3650.0 => d,
            _ => {
                return Err(reject(
                    StatusCode::BAD_REQUEST,
                    format!("query parameter `days` must be a number in (0, 3650], got {v:?}"),
                ))
            }
        },
    };
    let (tf, secs) = timeframe(q)?;
    let b = bars(s, a, secs).await?;
    let last = *b.timestamps.last().unwrap_or(&0);
    let from = last - (days * 86_400.0) as i64;
    let start = b.timestamps.partition_point(|t| *t < from);
    let rows: Vec<Value> = (start..b.len())
        .map(|i| {
            json!([
                b.timestamps[i],
                b.open[i],
                b.high[i],
                b.low[i],
                b.close[i],
                b.volume[i]
            ])
        })
        .collect();
    Ok(ok(json!({"asset": a, "timeframe": tf, "days": days,
                 "columns": ["t", "open", "high", "low", "close", "volume"],
                 "first": b.timestamps.get(start), "last": last,
                 "count": rows.len(), "bars": rows})))
}

/// `GET /dash/fan?asset=BTC&paths=200`: a 24 h GBM fan (5-minute grid) from
/// the last moment of the data that has 24 h of realised prices after it.
pub(super) async fn fan(c: Call) -> Answer {
    let q = &c.query;
    let a = asset(
        q.get("asset").map(String::as_str).unwrap_or("BTC"),
        "query parameter `asset`",
    )?;
    let n = match q.get("paths") {
        None => 200,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (2..=2000).contains(&n) => n,
            _ => {
                return Err(reject(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "query parameter `paths` must be a whole number from 2 to 2000, got {v:?}"
                    ),
                ))
            }
        },
    };
    let b = bars(&c.state, a, 300).await?;
    let (inc, len) = (300i64, 86_400i64);
    let steps = (len / inc) as usize;
    if b.len() < steps + 2 {
        return Err(reject(
            StatusCode::NOT_FOUND,
            format!("{a} has fewer than {} five-minute bars", steps + 2),
        ));
    }
    let t0 = b.timestamps[b.len() - 1] - len;
    let Some(spot) = b.close_at(t0) else {
        return Err(reject(
            StatusCode::NOT_FOUND,
            format!("{a}: no bar at the fan's start {t0} (a gap in the data)"),
        ));
    };
    let b2 = b.clone();
    let out = tokio::task::spawn_blocking(move || -> Result<Value, ForecastError> {
        let gbm = Gbm::new(Default::default());
        let req = ForecastRequest {
            asset: a.to_string(),
            start_time: t0,
            time_increment: inc as u64,
            time_length: len as u64,
            num_simulations: n,
            spot,
            history: Some(&b2),
            as_of: t0,
        };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(t0 as u64);
        let paths = gbm.forecast(&req, &mut rng)?;
        let pts = paths.n_points();
        let mut q: Vec<Vec<f64>> = (0..5).map(|_| Vec::with_capacity(pts)).collect();
        let mut col = Vec::with_capacity(n);
        for k in 0..pts {
            col.clear();
            col.extend((0..paths.n_paths()).map(|i| paths.row(i)[k]));
            col.sort_by(f64::total_cmp);
            for (j, p) in [0.05, 0.25, 0.5, 0.75, 0.95].iter().enumerate() {
                let idx = ((col.len() - 1) as f64 * p).round() as usize;
                q[j].push(col[idx]);
            }
        }
        let realised: Vec<Option<f64>> =
            (0..pts).map(|k| b2.close_at(t0 + k as i64 * inc)).collect();
        let samples: Vec<&[f64]> = (0..paths.n_paths().min(8)).map(|i| paths.row(i)).collect();
        Ok(
            json!({"asset": a, "model": gbm.name(), "start": t0, "time_increment": inc,
                  "points": pts, "paths": n, "spot": spot,
                  "quantiles": {"p05": q[0], "p25": q[1], "p50": q[2], "p75": q[3], "p95": q[4]},
                  "samples": samples, "realised": realised}),
        )
    })
    .await
    .map_err(|e| reject(StatusCode::SERVICE_UNAVAILABLE, format!("simulation: {e}")))?
    .map_err(|e| reject(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
    Ok(ok(out))
}
