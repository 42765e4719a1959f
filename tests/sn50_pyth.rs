//! `synth-city data download --source pyth` and `data spot --source pyth` (the May 2026 price
//! source, still selectable) through the built binary, against a local HTTP server standing in
//! for Pyth (`PYTH_BENCHMARKS_URL` / `PYTH_HERMES_URL` point at it); nothing here reaches the
//! internet. The default venues (Binance, Hyperliquid) are tested in `sn50_venues.rs`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use sn50::data::Bars;

mod common;

/// A local stand-in for the benchmarks TradingView shim and Hermes.
struct FakePyth {
    base: String,
    requests: Arc<Mutex<Vec<String>>>,
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
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

fn query(target: &str) -> Vec<(String, String)> {
    target
        .split_once('?')
        .map(|(_, q)| q)
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (percent_decode(k), percent_decode(v)))
        .collect()
}

/// The price of a synthetic bar.
fn close_of(t: i64) -> f64 {
    1000.0 + (t / 60 % 997) as f64 * 0.25
}

/// Minute bars in `[from, to]`, except the missing ones (every minute whose index is 7 mod 50).
fn udf_bars(from: i64, to: i64, res: i64) -> String {
    let first = (from + res - 1) / res * res;
    let ts: Vec<i64> = (0..)
        .map(|k| first + k * res)
        .take_while(|&t| t <= to)
        .filter(|t| (t / res) % 50 != 7)
        .collect();
    let list = |f: &dyn Fn(i64) -> String| ts.iter().map(|&t| f(t)).collect::<Vec<_>>().join(",");
    format!(
        r#"{{"s":"ok","t":[{}],"o":[{}],"h":[{}],"l":[{}],"c":[{}],"v":[{}]}}"#,
        list(&|t| t.to_string()),
        list(&|t| (close_of(t) - 0.5).to_string()),
        list(&|t| (close_of(t) + 1.0).to_string()),
        list(&|t| (close_of(t) - 1.0).to_string()),
        list(&|t| close_of(t).to_string()),
        list(&|_| "0".to_string()),
    )
}

fn respond(target: &str) -> (u16, String) {
    let q = query(target);
    let get = |k: &str| {
        q.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    if target.starts_with("/v2/updates/price/latest") {
        let id = get("ids[]");
        return (
            200,
            format!(
                r#"{{"binary":{{"encoding":"hex","data":[]}},"parsed":[{{"id":"{id}","price":{{"price":"6512345","conf":"1200","expo":-2,"publish_time":1780315500}}}}]}}"#
            ),
        );
    }
    if !target.starts_with("/v1/shims/tradingview/history") {
        return (404, "no such route".into());
    }
    let (from, to): (i64, i64) = (get("from").parse().unwrap(), get("to").parse().unwrap());
    let res: i64 = get("resolution").parse::<i64>().unwrap() * 60;
    match get("symbol").as_str() {
        "Crypto.BTC/USD" => (200, udf_bars(from, to, res)),
        // ETH: nothing in the first day asked for, bars afterwards.
        "Crypto.ETH/USD" if from < 777_600 => (200, r#"{"s":"no_data"}"#.into()),
        "Crypto.ETH/USD" => (200, udf_bars(from, to, res)),
        "Crypto.SOL/USD" => (404, r#"{"detail":"symbol not found"}"#.into()),
        "Crypto.XAUT/USD" => (200, "{\"s\":\"ok\",\"t\":[".into()),
        other => (400, format!("unexpected symbol {other}")),
    }
}

impl FakePyth {
    fn start() -> FakePyth {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let seen = seen.clone();
                std::thread::spawn(move || serve(stream, &seen));
            }
        });
        FakePyth { base, requests }
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

fn serve(mut stream: TcpStream, seen: &Mutex<Vec<String>>) {
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
    let (status, body) = respond(&target);
    let _ = write!(
        stream,
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

fn tmp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sn50-pyth-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn download(server: &FakePyth, dir: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_synth-city"))
        .args([
            "data",
            "download",
            "--source",
            "pyth",
            "--no-progress",
            "--json",
        ])
        .arg("--data-dir")
        .arg(dir)
        .args(extra)
        .env("PYTH_BENCHMARKS_URL", &server.base)
        .env("PYTH_HERMES_URL", "http://127.0.0.1:9") // never used here
        .env("BINANCE_API_URL", "http://127.0.0.1:9") // nor these
        .env("HYPERLIQUID_API_URL", "http://127.0.0.1:9")
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

const END: &str = "864000"; // 1970-01-11 00:00 UTC; two days before it start at 691200

#[test]
fn download_writes_merges_and_never_duplicates() {
    let server = FakePyth::start();
    let dir = tmp_dir("merge");
    let args = ["--assets", "BTC,ETH", "--days", "2", "--end", END];
    let v = json_of(&download(&server, &dir, &args));
    let btc = &v["assets"][0];
    let eth = &v["assets"][1];
    // 2880 minutes, every 50th (index 7 mod 50) missing: 2880 - 58 = 2822 bars.
    let missing = (691_200i64 / 60..864_000 / 60)
        .filter(|m| m % 50 == 7)
        .count() as u64;
    assert_eq!(btc["asset"], "BTC");
    assert_eq!(btc["requests"], 2, "two days in chunks of 1440 bars");
    assert_eq!(btc["added"].as_u64().unwrap(), 2880 - missing);
    assert_eq!(btc["already_present"], 0);
    // ETH had no data in the first chunk.
    let eth_missing = (777_600i64 / 60..864_000 / 60)
        .filter(|m| m % 50 == 7)
        .count() as u64;
    assert_eq!(eth["added"].as_u64().unwrap(), 1440 - eth_missing);
    assert_eq!(server.requests().len(), 4);
    let reqs = server.requests();
    assert!(
        reqs.iter()
            .any(|r| r.contains("from=691200") && r.contains("to=777540")),
        "{reqs:?}"
    );
    assert!(reqs.iter().all(|r| r.contains("resolution=1")), "{reqs:?}");

    // The files are in the shared data's format and load with the project's loader.
    let text = std::fs::read_to_string(dir.join("BTC_1m.csv")).unwrap();
    assert!(
        text.starts_with("timestamp,open,high,low,close,volume\n691200,"),
        "{}",
        &text[..80]
    );
    let bars = Bars::load(&dir.join("BTC_1m.csv")).unwrap();
    assert_eq!(bars.len() as u64, 2880 - missing);
    assert_eq!(bars.timestamps[0], 691_200);
    assert_eq!(
        *bars.timestamps.last().unwrap(),
        863_940,
        "only bars closed by --end"
    );
    assert_eq!(bars.close_at(700_020), Some(close_of(700_020)));
    assert_eq!(bars.gaps().len() as u64, missing, "missing bars stay gaps");

    // The same range again adds nothing and duplicates nothing.
    let v = json_of(&download(&server, &dir, &args));
    assert_eq!(v["assets"][0]["added"], 0);
    assert_eq!(
        v["assets"][0]["already_present"].as_u64().unwrap(),
        2880 - missing
    );
    assert_eq!(v["assets"][0]["differing"], 0);
    assert_eq!(
        Bars::load(&dir.join("BTC_1m.csv")).unwrap().len(),
        bars.len()
    );

    // An hour later: only the new hour is added.
    let later = ["--assets", "BTC", "--days", "1", "--end", "867600"];
    let v = json_of(&download(&server, &dir, &later));
    let new_missing = (864_000i64 / 60..867_600 / 60)
        .filter(|m| m % 50 == 7)
        .count() as u64;
    assert_eq!(v["assets"][0]["added"].as_u64().unwrap(), 60 - new_missing);
    let after = Bars::load(&dir.join("BTC_1m.csv")).unwrap();
    assert_eq!(after.len() as u64, bars.len() as u64 + 60 - new_missing);
    assert!(after.timestamps.windows(2).all(|w| w[0] < w[1]));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn five_minute_resolution_goes_to_the_5m_file() {
    let server = FakePyth::start();
    let dir = tmp_dir("five");
    let out = download(
        &server,
        &dir,
        &[
            "--assets",
            "BTC",
            "--days",
            "1",
            "--end",
            END,
            "--resolution",
            "5",
        ],
    );
    let v = json_of(&out);
    assert_eq!(v["assets"][0]["requests"], 1);
    let bars = Bars::load(&dir.join("BTC_5m.csv")).unwrap();
    assert_eq!(bars.bar_seconds, 300);
    let missing = (777_600i64 / 300..864_000 / 300)
        .filter(|m| m % 50 == 7)
        .count();
    assert_eq!(bars.len(), 288 - missing);
    assert!(server.requests()[0].contains("resolution=5"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn download_errors_name_the_asset_and_the_cause() {
    let server = FakePyth::start();
    let dir = tmp_dir("errors");
    // 404 is not retried: one request, a clear error, non-zero exit.
    let out = download(
        &server,
        &dir,
        &["--assets", "SOL", "--days", "1", "--end", END],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("SOL") && err.contains("HTTP 404"), "{err}");
    assert!(err.contains("symbol not found"), "{err}");
    // A truncated body.
    let out = download(
        &server,
        &dir,
        &["--assets", "XAU", "--days", "1", "--end", END],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("XAU") && err.contains("not valid JSON"),
        "{err}"
    );
    // Unknown assets and assets without a benchmarks symbol fail before any request.
    let before = server.requests().len();
    for (asset, msg) in [
        ("DOGE", "unknown SN50 asset"),
        ("WTIOIL", "no Pyth benchmarks symbol"),
    ] {
        let out = download(
            &server,
            &dir,
            &["--assets", asset, "--days", "1", "--end", END],
        );
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(msg), "{asset}: {err}");
    }
    let out = download(
        &server,
        &dir,
        &["--assets", "BTC", "--days", "1", "--resolution", "15"],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("resolution 15"));
    assert_eq!(server.requests().len(), before);
    assert!(!dir.join("SOL_1m.csv").exists() && !dir.join("XAU_1m.csv").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn spot_reads_hermes_from_the_configured_url() {
    let server = FakePyth::start();
    let out = Command::new(env!("CARGO_BIN_EXE_synth-city"))
        .args([
            "data", "spot", "--assets", "BTC,XAU", "--json", "--source", "pyth",
        ])
        .env("PYTH_HERMES_URL", &server.base)
        .env("BINANCE_API_URL", "http://127.0.0.1:9")
        .env("HYPERLIQUID_API_URL", "http://127.0.0.1:9")
        .output()
        .unwrap();
    let v = json_of(&out);
    let prices = v["prices"].as_array().unwrap();
    assert_eq!(prices.len(), 2);
    // Python: int("6512345") * 10**-2 == 65123.450000000004
    assert_eq!(prices[0]["price"].as_f64().unwrap(), 65123.450000000004);
    assert_eq!(
        prices[1]["feed_id"],
        "44465e17d2e9d390e70c999d5a11fda4f092847fcd2e3e5aa089d96c98a30e67"
    );
    assert!(server.requests()[0].starts_with("/v2/updates/price/latest?"));
}

/// The `data-download` job through a real Redis and worker (a cron schedule runs it in
/// production): the same bars as the command, and a bad request dead-lettered with its reason.
#[test]
fn the_data_download_job_merges_bars_like_the_command() {
    let server = FakePyth::start();
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
    let env = [("PYTH_BENCHMARKS_URL", server.base.as_str())];
    // the bars go to the worker's own data directory (payloads name none)
    let data = dir.display().to_string();
    let mut worker = common::spawn_worker_env(
        &redis.url(),
        &["--roles", "data-download", "--retry-base-ms", "10"],
        &[&env[..], &[("SYNTH_DATA_DIR", data.as_str())]].concat(),
    );
    let payload = serde_json::json!({"assets": ["BTC"], "days": 2, "end": 864_000,
        "source": "pyth"});
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
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let result = loop {
        let st = json_of(&cli(&["jobs", "status", &id, "--json"]));
        if st["state"] == "completed" {
            break st["result"].clone();
        }
        assert!(std::time::Instant::now() < deadline, "{st}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let missing = (691_200i64 / 60..864_000 / 60)
        .filter(|m| m % 50 == 7)
        .count() as u64;
    assert_eq!(
        result["assets"][0]["added"].as_u64().unwrap(),
        2880 - missing
    );
    let bars = Bars::load(&dir.join("BTC_1m.csv")).unwrap();
    assert_eq!(bars.len() as u64, 2880 - missing);
    // an asset without a benchmarks symbol: retried, then dead-lettered naming it
    let bad = serde_json::json!({"assets": ["WTIOIL"], "days": 1, "end": 864_000,
        "source": "pyth"});
    let out = cli(&[
        "jobs",
        "enqueue",
        "--type",
        "data-download",
        "--payload",
        &bad.to_string(),
    ]);
    assert!(out.status.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let dead = String::from_utf8(cli(&["jobs", "dlq", "list", "--json"]).stdout).unwrap();
        if dead.contains("WTIOIL") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not dead-lettered: {dead}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // a resolution Pyth has no bars for is refused when it is enqueued
    let out = cli(&[
        "jobs",
        "enqueue",
        "--type",
        "data-download",
        "--payload",
        r#"{"assets": ["BTC"], "resolution": 3}"#,
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("resolution"));
    // so is a source that is neither the venues nor Pyth
    let out = cli(&[
        "jobs",
        "enqueue",
        "--type",
        "data-download",
        "--payload",
        r#"{"assets": ["BTC"], "source": "kraken"}"#,
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("source") && err.contains("kraken"), "{err}");
    worker.kill().unwrap();
    worker.wait().unwrap();
}
