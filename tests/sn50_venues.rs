//! Realised prices and spot prices from the validator's venues over real HTTP: a local server
//! on 127.0.0.1 speaking Binance's (`GET /api/v3/klines`, `GET /api/v3/ticker/price`) and
//! Hyperliquid's (`POST /info` `candleSnapshot` / `allMids`) protocols, driven through
//! `sn50::venues` and through the built binary (`data download`, `data spot`, with
//! `BINANCE_API_URL` / `HYPERLIQUID_API_URL` pointing at it). Nothing here reaches the
//! internet.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sn50::constants::{Sn50Config, Venue};
use sn50::data::Bars;
use sn50::pyth::{PythConfig, Resolution};
use sn50::venues::{PriceClient, VenueClient, VenueConfig, VenueError};

mod common;

/// One request the server saw.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    target: String,
    body: String,
}

/// How the stand-in behaves.
#[derive(Clone, Copy)]
struct Behaviour {
    /// Candles per Hyperliquid answer (earliest first), like the real server's cap.
    hl_cap: usize,
    /// When a Hyperliquid answer would exceed the cap, answer the latest candles instead.
    hl_latest_first: bool,
}

/// A local stand-in for Binance and Hyperliquid.
struct FakeVenues {
    base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

fn query(target: &str) -> HashMap<String, String> {
    target
        .split_once('?')
        .map(|(_, q)| q)
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (percent_decode(k), percent_decode(v)))
        .collect()
}

/// Binance's synthetic close of the bar opening at `t` (unix seconds).
fn binance_close(symbol: &str, t: i64) -> f64 {
    let base = match symbol {
        "BTCUSDT" => 97_000.0,
        "SOLUSDT" => 180.0,
        _ => 1.0,
    };
    base + (t / 60 % 997) as f64 * 0.25
}

/// Hyperliquid's synthetic close of the candle opening at `t` (unix seconds).
fn hyperliquid_close(coin: &str, t: i64) -> f64 {
    let base = match coin {
        "HYPE" => 40.0,
        "xyz:NVDA" => 180.0,
        "xyz:SP500" => 6_800.0,
        _ => 1.0,
    };
    base + (t / 60 % 991) as f64 * 0.125
}

/// A bar is missing when its index is 7 mod 50 (missing bars must stay gaps).
fn present(t: i64, step: i64) -> bool {
    (t / step) % 50 != 7
}

fn step_of(interval: &str) -> i64 {
    match interval {
        "1m" => 60,
        "5m" => 300,
        other => panic!("unexpected interval {other}"),
    }
}

/// Open times on the `step` grid within `[start_ms, end_ms]`, gaps left out.
fn grid(start_ms: i64, end_ms: i64, step: i64) -> Vec<i64> {
    let first = (start_ms / 1000 + step - 1).div_euclid(step) * step;
    (0..)
        .map(|k| first + k * step)
        .take_while(|&t| t * 1000 <= end_ms)
        .filter(|&t| present(t, step))
        .collect()
}

fn binance_klines(q: &HashMap<String, String>) -> (u16, String) {
    let symbol = q["symbol"].as_str();
    let step = step_of(&q["interval"]);
    let limit: usize = q["limit"].parse().unwrap();
    assert!(limit <= 1000, "Binance caps limit at 1000");
    let ts = grid(
        q["startTime"].parse().unwrap(),
        q["endTime"].parse().unwrap(),
        step,
    );
    let rows: Vec<String> = ts
        .iter()
        .take(limit)
        .map(|&t| {
            let c = binance_close(symbol, t);
            format!(
                r#"[{},"{:.8}","{:.8}","{:.8}","{:.8}","1.50000000",{},"145.0",12,"0.7","70.0","0"]"#,
                t * 1000,
                c - 0.5,
                c + 1.0,
                c - 1.0,
                c,
                t * 1000 + step * 1000 - 1
            )
        })
        .collect();
    (200, format!("[{}]", rows.join(",")))
}

fn hyperliquid_candles(req: &serde_json::Value, b: Behaviour) -> (u16, String) {
    let coin = req["coin"].as_str().unwrap();
    let interval = req["interval"].as_str().unwrap();
    let step = step_of(interval);
    let ts = grid(
        req["startTime"].as_i64().unwrap(),
        req["endTime"].as_i64().unwrap(),
        step,
    );
    let ts: Vec<i64> = if ts.len() > b.hl_cap && b.hl_latest_first {
        ts[ts.len() - b.hl_cap..].to_vec()
    } else {
        ts.into_iter().take(b.hl_cap).collect()
    };
    let rows: Vec<serde_json::Value> = ts
        .iter()
        .map(|&t| {
            let c = hyperliquid_close(coin, t);
            serde_json::json!({"t": t * 1000, "T": t * 1000 + step * 1000 - 1, "s": coin,
                "i": interval, "o": format!("{}", c - 0.25), "c": format!("{c}"),
                "h": format!("{}", c + 0.5), "l": format!("{}", c - 0.5), "v": "12.5", "n": 7})
        })
        .collect();
    (200, serde_json::Value::Array(rows).to_string())
}

impl FakeVenues {
    fn start(b: Behaviour) -> FakeVenues {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let log = log.clone();
                std::thread::spawn(move || serve(stream, &log, b));
            }
        });
        FakeVenues { base, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// How many earlier requests match `pred`.
    fn count(&self, pred: impl Fn(&Seen) -> bool) -> usize {
        self.seen().iter().filter(|s| pred(s)).count()
    }
}

fn respond(seen: &Seen, earlier: &[Seen], b: Behaviour) -> (u16, String) {
    let q = query(&seen.target);
    let path = seen.target.split('?').next().unwrap_or("");
    match (seen.method.as_str(), path) {
        ("GET", "/api/v3/klines") => match q.get("symbol").map(String::as_str) {
            Some("BTCUSDT") => binance_klines(&q),
            // SOL: rate-limited once, then answers.
            Some("SOLUSDT") => {
                let before = earlier
                    .iter()
                    .filter(|s| s.target.contains("symbol=SOLUSDT"))
                    .count();
                if before == 0 {
                    (429, r#"{"code":-1003,"msg":"Too many requests."}"#.into())
                } else {
                    binance_klines(&q)
                }
            }
            // XRP: a truncated body.
            Some("XRPUSDT") => (200, r#"[[1700000000000,"0.5","0.6""#.into()),
            // ETH: an unknown symbol, as Binance answers it.
            _ => (400, r#"{"code":-1121,"msg":"Invalid symbol."}"#.into()),
        },
        ("GET", "/api/v3/ticker/price") => {
            let symbol = q.get("symbol").cloned().unwrap_or_default();
            match symbol.as_str() {
                "BTCUSDT" => (
                    200,
                    r#"{"symbol":"BTCUSDT","price":"97123.45000000"}"#.into(),
                ),
                _ => (400, r#"{"code":-1121,"msg":"Invalid symbol."}"#.into()),
            }
        }
        ("POST", "/info") => {
            let Ok(req) = serde_json::from_str::<serde_json::Value>(&seen.body) else {
                return (422, "Failed to deserialize the JSON body".into());
            };
            match req["type"].as_str() {
                Some("candleSnapshot") => {
                    let coin = req["req"]["coin"].as_str().unwrap_or("");
                    if coin == "xyz:TSLA" {
                        // Not candles at all.
                        return (200, r#"{"error":"unknown coin"}"#.into());
                    }
                    hyperliquid_candles(&req["req"], b)
                }
                Some("allMids") => match req["dex"].as_str() {
                    None => (
                        200,
                        r#"{"BTC":"97100.5","HYPE":"41.2345","@107":"41.2"}"#.into(),
                    ),
                    Some("xyz") => (
                        200,
                        r#"{"xyz:NVDA":"181.25","xyz:SP500":"6850.5","xyz:GOLD":"4101.0"}"#.into(),
                    ),
                    Some(_) => (200, "{}".into()),
                },
                _ => (422, "unknown type".into()),
            }
        }
        _ => (404, "no such route".into()),
    }
}

fn serve(mut stream: TcpStream, log: &Mutex<Vec<Seen>>, b: Behaviour) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + length {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let mut words = head.split(' ');
    let seen = Seen {
        method: words.next().unwrap_or("").to_string(),
        target: words.next().unwrap_or("").to_string(),
        body: String::from_utf8_lossy(&buf[head_end..head_end + length]).into_owned(),
    };
    let earlier = {
        let mut l = log.lock().unwrap();
        let e = l.clone();
        l.push(seen.clone());
        e
    };
    let (status, body) = respond(&seen, &earlier, b);
    let _ = write!(
        stream,
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

const REAL_CAP: Behaviour = Behaviour {
    hl_cap: 5000,
    hl_latest_first: false,
};

fn config(server: &FakeVenues) -> VenueConfig {
    VenueConfig {
        binance_url: server.base.clone(),
        hyperliquid_url: format!("{}/", server.base),
        timeout: Duration::from_secs(5),
        attempts: 3,
        backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
        ..VenueConfig::default()
    }
}

fn prices(server: &FakeVenues) -> PriceClient {
    PriceClient::new(
        config(server),
        PythConfig {
            hermes_url: "http://127.0.0.1:9".into(),
            benchmarks_url: "http://127.0.0.1:9".into(),
            ..PythConfig::default()
        },
        &Sn50Config::default(),
    )
    .unwrap()
}

/// 1970-01-11 00:00 UTC; the day before it starts at 777600.
const END: i64 = 864_000;

// ---------------------------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn binance_klines_page_by_start_time_across_the_limit() {
    let server = FakeVenues::start(REAL_CAP);
    let mut cfg = config(&server);
    cfg.binance_limit = 100;
    let client = VenueClient::new(cfg).unwrap();
    // 250 minutes: three pages of at most 100 klines.
    let (from, to) = (777_600, 777_600 + 249 * 60);
    let bars = client
        .binance_klines("BTCUSDT", Resolution::OneMinute, from, to)
        .await
        .unwrap();
    let want = grid(from * 1000, to * 1000, 60);
    assert_eq!(bars.iter().map(|b| b.t).collect::<Vec<_>>(), want);
    for b in &bars {
        assert_eq!(b.close, binance_close("BTCUSDT", b.t), "t={}", b.t);
    }
    let reqs = server.seen();
    assert_eq!(reqs.len(), 3, "{reqs:?}");
    let starts: Vec<String> = reqs
        .iter()
        .map(|s| query(&s.target)["startTime"].clone())
        .collect();
    // The second page starts one bar after the last kline of the first.
    let last_first_page = grid(from * 1000, to * 1000, 60)[99];
    assert_eq!(starts[0], (from * 1000).to_string());
    assert_eq!(starts[1], ((last_first_page + 60) * 1000).to_string());
    assert!(reqs.iter().all(|s| s.method == "GET"
        && query(&s.target)["interval"] == "1m"
        && query(&s.target)["limit"] == "100"
        && query(&s.target)["endTime"] == (to * 1000).to_string()));
}

#[tokio::test]
async fn hyperliquid_candles_page_past_the_cap_either_way() {
    // A server that stops at 300 candles (earliest first): the client goes on from the last.
    let server = FakeVenues::start(Behaviour {
        hl_cap: 300,
        hl_latest_first: false,
    });
    let client = VenueClient::new(config(&server)).unwrap();
    let (from, to) = (777_600, 777_600 + 799 * 60);
    let bars = client
        .hyperliquid_candles("xyz:NVDA", Resolution::OneMinute, from, to)
        .await
        .unwrap();
    assert_eq!(
        bars.iter().map(|b| b.t).collect::<Vec<_>>(),
        grid(from * 1000, to * 1000, 60)
    );
    assert!(bars
        .iter()
        .all(|b| b.close == hyperliquid_close("xyz:NVDA", b.t)));
    let reqs = server.seen();
    assert_eq!(reqs.len(), 3, "800 minutes, 16 missing, 300 per answer");
    let body: serde_json::Value = serde_json::from_str(&reqs[0].body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"type": "candleSnapshot", "req": {"coin": "xyz:NVDA",
            "interval": "1m", "startTime": from * 1000, "endTime": to * 1000}})
    );
    assert!(reqs
        .iter()
        .all(|s| s.method == "POST" && s.target == "/info"));

    // A server that answers the latest candles past its cap: windows of at most the page.
    let server = FakeVenues::start(Behaviour {
        hl_cap: 300,
        hl_latest_first: true,
    });
    let mut cfg = config(&server);
    cfg.hyperliquid_page = 300;
    let client = VenueClient::new(cfg).unwrap();
    let bars = client
        .hyperliquid_candles("HYPE", Resolution::FiveMinutes, from, END - 300)
        .await
        .unwrap();
    assert_eq!(
        bars.iter().map(|b| b.t).collect::<Vec<_>>(),
        grid(from * 1000, (END - 300) * 1000, 300)
    );
    assert_eq!(
        server.seen().len(),
        1,
        "288 five-minute candles fit one window"
    );
}

#[tokio::test]
async fn a_429_is_retried_then_the_answer_is_used() {
    let server = FakeVenues::start(REAL_CAP);
    let bars = prices(&server)
        .asset_history("SOL", Resolution::FiveMinutes, 777_600, 777_600 + 3_000)
        .await
        .unwrap();
    assert_eq!(bars.len(), 11);
    assert_eq!(bars[0].close, binance_close("SOLUSDT", 777_600));
    assert_eq!(server.count(|s| s.target.contains("SOLUSDT")), 2);
}

#[tokio::test]
async fn malformed_answers_and_client_errors_name_the_url() {
    let server = FakeVenues::start(REAL_CAP);
    let p = prices(&server);
    let e = p
        .asset_history("XRP", Resolution::OneMinute, 777_600, 777_660)
        .await
        .unwrap_err();
    assert!(matches!(e, VenueError::Json { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("{}/api/v3/klines?symbol=XRPUSDT", server.base))
            && msg.contains("not valid JSON"),
        "{msg}"
    );
    let e = p
        .asset_history("TSLAX", Resolution::OneMinute, 777_600, 777_660)
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("{}/info (candleSnapshot xyz:TSLA", server.base))
            && msg.contains("expected a JSON array of candles"),
        "{msg}"
    );
    // A 400 is not retried.
    let e = p.spot("ETH").await.unwrap_err();
    assert!(
        matches!(
            e,
            VenueError::Status {
                status: 400,
                attempts: 1,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("Invalid symbol"), "{e}");
    assert_eq!(server.count(|s| s.target.contains("ETHUSDT")), 1);
    // An asset with no source: refused before any request.
    let before = server.seen().len();
    assert!(matches!(
        p.spot("DOGE").await,
        Err(VenueError::UnknownAsset(_))
    ));
    assert_eq!(server.seen().len(), before);
}

#[tokio::test]
async fn spot_comes_from_each_assets_venue() {
    let server = FakeVenues::start(REAL_CAP);
    let p = prices(&server);
    let btc = p.spot("BTC").await.unwrap();
    assert_eq!((btc.venue, btc.price), (Venue::Binance, 97123.45));
    assert!(
        btc.url.ends_with("/api/v3/ticker/price?symbol=BTCUSDT"),
        "{}",
        btc.url
    );
    let hype = p.spot("HYPE").await.unwrap();
    assert_eq!((hype.venue, hype.price), (Venue::Hyperliquid, 41.2345));
    let nvda = p.spot("NVDAX").await.unwrap();
    assert_eq!((nvda.symbol.as_str(), nvda.price), ("xyz:NVDA", 181.25));
    let sp = p.spot("SP500").await.unwrap();
    assert_eq!(sp.price, 6850.5);
    let bodies: Vec<serde_json::Value> = server
        .seen()
        .iter()
        .filter(|s| s.method == "POST")
        .map(|s| serde_json::from_str(&s.body).unwrap())
        .collect();
    assert_eq!(bodies[0], serde_json::json!({"type": "allMids"}));
    assert_eq!(
        bodies[1],
        serde_json::json!({"type": "allMids", "dex": "xyz"})
    );
    // A coin the dex does not list: named, with where to fix it.
    let e = p.spot("AAPLX").await.unwrap_err().to_string();
    assert!(
        e.contains("no mid price for coin \"xyz:AAPL\"") && e.contains("[price_sources]"),
        "{e}"
    );
}

// ---------------------------------------------------------------------------------------------
// The binary
// ---------------------------------------------------------------------------------------------

fn tmp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sn50-venues-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn bin(server: &FakeVenues) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_synth-city"));
    c.env("BINANCE_API_URL", &server.base)
        .env("HYPERLIQUID_API_URL", &server.base)
        .env("PYTH_BENCHMARKS_URL", "http://127.0.0.1:9") // never used here
        .env("PYTH_HERMES_URL", "http://127.0.0.1:9")
        .env_remove("SYNTH_CITY_SN50_CONSTANTS");
    c
}

fn download(server: &FakeVenues, dir: &Path, extra: &[&str]) -> Output {
    bin(server)
        .args(["data", "download", "--no-progress", "--json", "--data-dir"])
        .arg(dir)
        .args(extra)
        .output()
        .unwrap()
}

fn json_of(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn download_writes_each_assets_venue_bars_to_its_own_file() {
    // Hyperliquid answers at most 1000 candles here, so two days page past it too.
    let server = FakeVenues::start(Behaviour {
        hl_cap: 1000,
        hl_latest_first: false,
    });
    let dir = tmp_dir("download");
    let end = END.to_string();
    let args = [
        "--assets",
        "BTC,HYPE,NVDAX",
        "--days",
        "2",
        "--end",
        end.as_str(),
    ];
    let v = json_of(&download(&server, &dir, &args));
    let from = END - 2 * 86_400;
    let want = grid(from * 1000, (END - 60) * 1000, 60);
    let assets = v["assets"].as_array().unwrap();
    for (row, (asset, venue, symbol)) in assets.iter().zip([
        ("BTC", "binance", "BTCUSDT"),
        ("HYPE", "hyperliquid", "HYPE"),
        ("NVDAX", "hyperliquid", "xyz:NVDA"),
    ]) {
        assert_eq!(row["asset"], asset);
        assert_eq!(row["venue"], venue);
        assert_eq!(row["symbol"], symbol);
        assert_eq!(row["added"].as_u64().unwrap(), want.len() as u64, "{row}");
        let file = dir.join(format!("{asset}_1m.csv"));
        assert_eq!(row["file"], file.display().to_string());
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            text.starts_with(&format!("timestamp,open,high,low,close,volume\n{from},")),
            "{}",
            &text[..80]
        );
        let bars = Bars::load(&file).unwrap();
        assert_eq!(
            bars.timestamps, want,
            "{asset}: only closed bars, gaps kept"
        );
        let close = |t| match venue {
            "binance" => binance_close(symbol, t),
            _ => hyperliquid_close(symbol, t),
        };
        for (i, &t) in bars.timestamps.iter().enumerate() {
            assert_eq!(bars.close[i], close(t), "{asset} t={t}");
        }
        let missing = (from / 60..END / 60).filter(|m| m % 50 == 7).count();
        assert_eq!(
            bars.gaps().len(),
            missing,
            "{asset}: missing bars stay gaps"
        );
    }
    // Binance: 1440-bar chunks in pages of 1000 -> 2 requests per chunk; each page after the
    // first starts one bar after the last kline of the page before.
    let klines: Vec<HashMap<String, String>> = server
        .seen()
        .iter()
        .filter(|s| s.target.starts_with("/api/v3/klines"))
        .map(|s| query(&s.target))
        .collect();
    assert_eq!(klines.len(), 4, "{klines:?}");
    let chunk = grid(from * 1000, (from + 1439 * 60) * 1000, 60);
    assert_eq!(
        klines[1]["startTime"],
        ((chunk[999] + 60) * 1000).to_string()
    );
    // Hyperliquid: 1440-bar chunks in answers of at most 1000 -> 2 requests per chunk per coin.
    let candles = server.count(|s| s.method == "POST" && s.body.contains("candleSnapshot"));
    assert_eq!(candles, 8);

    // The same range again adds nothing and duplicates nothing.
    let v = json_of(&download(&server, &dir, &args));
    for row in v["assets"].as_array().unwrap() {
        assert_eq!(row["added"], 0, "{row}");
        assert_eq!(row["already_present"].as_u64().unwrap(), want.len() as u64);
        assert_eq!(row["differing"], 0);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sp500_goes_to_its_own_file_not_the_legacy_spy_series() {
    let server = FakeVenues::start(REAL_CAP);
    let dir = tmp_dir("sp500");
    // A legacy SPY file (a tenth of the index's price) that must stay untouched.
    let legacy = "timestamp,open,high,low,close,volume\n777600,680,680,680,680,0\n";
    std::fs::write(dir.join("SPY_5m.csv"), legacy).unwrap();
    let end = END.to_string();
    let v = json_of(&download(
        &server,
        &dir,
        &[
            "--assets",
            "SP500",
            "--days",
            "1",
            "--end",
            end.as_str(),
            "--resolution",
            "5",
        ],
    ));
    assert_eq!(v["assets"][0]["symbol"], "xyz:SP500");
    assert_eq!(
        std::fs::read_to_string(dir.join("SPY_5m.csv")).unwrap(),
        legacy
    );
    let bars = Bars::load(&dir.join("SP500_5m.csv")).unwrap();
    assert_eq!(bars.bar_seconds, 300);
    assert_eq!(bars.timestamps, grid(777_600_000, (END - 300) * 1000, 300));
    assert_eq!(
        bars.close_at(777_600),
        Some(hyperliquid_close("xyz:SP500", 777_600))
    );
    // Both files present: the asset's own file is the one the rest of the code reads.
    assert!(
        sn50::data::asset_file(&dir, "SP500", Resolution::FiveMinutes)
            .unwrap()
            .ends_with("SP500_5m.csv")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn download_retries_a_429_and_names_the_url_of_a_bad_answer() {
    let server = FakeVenues::start(REAL_CAP);
    let dir = tmp_dir("errors");
    let end = END.to_string();
    let v = json_of(&download(
        &server,
        &dir,
        &["--assets", "SOL", "--days", "1", "--end", end.as_str()],
    ));
    assert_eq!(
        v["assets"][0]["added"].as_u64().unwrap(),
        grid(777_600_000, (END - 60) * 1000, 60).len() as u64
    );
    assert_eq!(
        server.count(|s| s.target.contains("SOLUSDT")),
        3,
        "one 429, then two pages"
    );
    // A truncated body: the asset, the URL and the reason; nothing written.
    let out = download(
        &server,
        &dir,
        &["--assets", "XRP", "--days", "1", "--end", end.as_str()],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("XRP")
            && err.contains("binance request")
            && err.contains(&format!("{}/api/v3/klines?symbol=XRPUSDT", server.base))
            && err.contains("not valid JSON"),
        "{err}"
    );
    assert!(!dir.join("XRP_1m.csv").exists());
    // Not candles: named with the Hyperliquid request.
    let out = download(
        &server,
        &dir,
        &["--assets", "TSLAX", "--days", "1", "--end", end.as_str()],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("TSLAX") && err.contains("/info (candleSnapshot xyz:TSLA"),
        "{err}"
    );
    // An unknown asset and an unknown --source: before any request.
    let before = server.seen().len();
    let out = download(&server, &dir, &["--assets", "DOGE", "--days", "1"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown SN50 asset \"DOGE\""));
    let out = download(
        &server,
        &dir,
        &["--assets", "BTC", "--days", "1", "--source", "kraken"],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("kraken") && err.contains("venue") && err.contains("pyth"),
        "{err}"
    );
    assert_eq!(server.seen().len(), before);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_constants_override_moves_an_asset_to_another_venue() {
    let server = FakeVenues::start(REAL_CAP);
    let dir = tmp_dir("override");
    let toml = dir.join("sn50.toml");
    std::fs::write(
        &toml,
        "[price_sources]\nBTC = { venue = \"hyperliquid\", symbol = \"BTC\" }\n",
    )
    .unwrap();
    let end = END.to_string();
    let out = download(
        &server,
        &dir,
        &[
            "--assets",
            "BTC",
            "--days",
            "1",
            "--end",
            end.as_str(),
            "--resolution",
            "5",
        ],
    );
    assert_eq!(json_of(&out)["assets"][0]["venue"], "binance");
    let out = bin(&server)
        .args(["data", "spot", "--assets", "BTC", "--json", "--constants"])
        .arg(&toml)
        .output()
        .unwrap();
    let v = json_of(&out);
    assert_eq!(v["prices"][0]["venue"], "hyperliquid");
    assert_eq!(v["prices"][0]["price"], 97100.5);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn data_spot_reads_each_venue() {
    let server = FakeVenues::start(REAL_CAP);
    let out = bin(&server)
        .args(["data", "spot", "--assets", "BTC,HYPE,NVDAX", "--json"])
        .output()
        .unwrap();
    let v = json_of(&out);
    let p = v["prices"].as_array().unwrap();
    assert_eq!(p.len(), 3);
    assert_eq!(
        (p[0]["venue"].as_str(), p[0]["price"].as_f64()),
        (Some("binance"), Some(97123.45))
    );
    assert_eq!(
        (p[1]["symbol"].as_str(), p[1]["price"].as_f64()),
        (Some("HYPE"), Some(41.2345))
    );
    assert_eq!(
        (p[2]["symbol"].as_str(), p[2]["price"].as_f64()),
        (Some("xyz:NVDA"), Some(181.25))
    );
    // A failing venue: a clear error naming the asset and the request, non-zero exit.
    let out = bin(&server)
        .args(["data", "spot", "--assets", "ETH"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no spot price for ETH")
            && err.contains("/api/v3/ticker/price?symbol=ETHUSDT")
            && err.contains("HTTP 400"),
        "{err}"
    );
}

/// The `data-download` job through a real Redis and worker: without a `source` it asks each
/// asset's venue, like the command.
#[test]
fn the_data_download_job_asks_each_assets_venue() {
    let server = FakeVenues::start(REAL_CAP);
    let dir = tmp_dir("job");
    let redis = common::RedisServer::start();
    let cli = |args: &[&str]| -> Output {
        Command::new(common::bin())
            .args(["--redis-url", &redis.url(), "--prefix", "t"])
            .args(args)
            .output()
            .unwrap()
    };
    assert!(cli(&["migrate"]).status.success());
    let env = [
        ("BINANCE_API_URL", server.base.as_str()),
        ("HYPERLIQUID_API_URL", server.base.as_str()),
        ("PYTH_BENCHMARKS_URL", "http://127.0.0.1:9"),
    ];
    // the bars go to the worker's own data directory (payloads name none)
    let data = dir.display().to_string();
    let mut worker = common::spawn_worker_env(
        &redis.url(),
        &[
            "--roles",
            "data-download",
            "--retry-base-ms",
            "10",
            "--data-dir",
            &data,
        ],
        &env,
    );
    let payload = serde_json::json!({"assets": ["BTC", "NVDAX"], "days": 1, "end": END,
        "resolution": 5});
    let out = cli(&[
        "jobs",
        "enqueue",
        "--type",
        "data-download",
        "--payload",
        &payload.to_string(),
        "--json",
    ]);
    let id = json_of(&out)[0]["id"].as_str().unwrap().to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let result = loop {
        let st = json_of(&cli(&["jobs", "status", &id, "--json"]));
        if st["state"] == "completed" {
            break st["result"].clone();
        }
        assert!(std::time::Instant::now() < deadline, "{st}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let want = grid(777_600_000, (END - 300) * 1000, 300);
    assert_eq!(result["assets"][0]["venue"], "binance");
    assert_eq!(result["assets"][1]["venue"], "hyperliquid");
    for (asset, close) in [
        ("BTC", binance_close("BTCUSDT", 777_600)),
        ("NVDAX", hyperliquid_close("xyz:NVDA", 777_600)),
    ] {
        let bars = Bars::load(&dir.join(format!("{asset}_5m.csv"))).unwrap();
        assert_eq!(bars.timestamps, want, "{asset}");
        assert_eq!(bars.close_at(777_600), Some(close), "{asset}");
    }
    worker.kill().unwrap();
    worker.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
