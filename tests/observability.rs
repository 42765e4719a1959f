//! Observability end to end: a real Prometheus (Debian's package) scrapes a real worker, the
//! real miner and a real GPU pod fleet (`fleet run` against the Basilica stand-in of
//! tests/common/basilica.rs), started with `--metrics-addr` beside a redis-server of the test's own, under
//! the scrape configuration and rules shipped in `ops/prometheus/` (only the targets, the
//! intervals and the rules' path swapped for the test's). After some work (jobs completed, one
//! retried and dead-lettered, a pipeline permit held, two signed miner requests), every query of
//! every panel of `ops/grafana/synth-city.json` must return at least one series, a few of them
//! the exact values the work produced, and the dead-letter alert must fire while the miner's
//! fallback alert stays quiet. `promtool` checks the shipped configuration and rules.
//!
//! Prometheus absent: the tests fail naming `apt-get install prometheus` (ops/test.sh installs
//! it), unless `SYNTH_SKIP_PROMETHEUS=1`, which skips them with a line saying so.

mod common;

use std::collections::BTreeSet;
use std::io::BufRead;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{bin, cli_command, free_port, stdout_of, worker_command, RedisServer};
use serde_json::Value;
use synth_city::miner::auth;
use synth_city::miner::hotkey::Hotkey;

const ALICE: &str = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY";
const BOB: &str = "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty";
/// The targets of ops/prometheus/prometheus.yml that the test points at its own processes.
const WORKER_TARGET: &str = "127.0.0.1:9464";
const MINER_TARGET: &str = "127.0.0.1:9465";
const FLEET_TARGET: &str = "127.0.0.1:9467";
/// What `$__rate_interval` becomes in the test (scrapes every second).
const RATE_INTERVAL: &str = "30s";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `prometheus` and `promtool` on PATH; `None` when skipped; a failure naming the fix otherwise.
fn prometheus_tools() -> Option<(PathBuf, PathBuf)> {
    let find = |name: &str| {
        std::env::var_os("PATH").and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(name))
                .find(|f| f.is_file())
        })
    };
    match (find("prometheus"), find("promtool")) {
        (Some(p), Some(t)) => Some((p, t)),
        _ if std::env::var("SYNTH_SKIP_PROMETHEUS").as_deref() == Ok("1") => {
            eprintln!(
                "skipped: prometheus/promtool not on PATH and SYNTH_SKIP_PROMETHEUS=1 \
                 (apt-get install prometheus to run this test)"
            );
            None
        }
        _ => panic!(
            "prometheus and promtool are not on PATH: install Debian's package with \
             `apt-get install prometheus` (ops/test.sh does it), or set SYNTH_SKIP_PROMETHEUS=1 \
             to skip the observability tests"
        ),
    }
}

fn dashboard() -> Value {
    let path = root().join("ops/grafana/synth-city.json");
    let text = std::fs::read_to_string(&path).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()))
}

/// Every (panel title, PromQL) of the dashboard, rows' nested panels included.
fn panel_queries(d: &Value) -> Vec<(String, String)> {
    fn walk(panels: &[Value], out: &mut Vec<(String, String)>) {
        for p in panels {
            if let Some(nested) = p["panels"].as_array() {
                walk(nested, out);
            }
            for t in p["targets"].as_array().into_iter().flatten() {
                out.push((
                    p["title"].as_str().unwrap_or("?").to_string(),
                    t["expr"].as_str().unwrap_or("").to_string(),
                ));
            }
        }
    }
    let mut out = Vec::new();
    walk(d["panels"].as_array().unwrap(), &mut out);
    out
}

/// A panel's query with the template variables made concrete: every job type, the test's
/// rate window.
fn concrete(expr: &str) -> String {
    let e = expr
        .replace("${type}", ".*")
        .replace("$type", ".*")
        .replace("$__rate_interval", RATE_INTERVAL);
    assert!(
        !e.contains('$'),
        "a dashboard query uses a variable the test does not know: {expr}"
    );
    e
}

/// The `sc_*` metric names a PromQL text mentions.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let b = expr.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let starts = expr[i..].starts_with("sc_")
            && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_'));
        if starts {
            let end = expr[i..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .map_or(b.len(), |n| i + n);
            out.insert(expr[i..end].to_string());
            i = end;
        } else {
            i += 1;
        }
    }
    out
}

#[test]
fn the_dashboard_is_an_importable_grafana_model_of_what_the_issue_asks() {
    let d = dashboard();
    assert_eq!(d["uid"], "synth-city-fleet");
    let vars = d["templating"]["list"].as_array().unwrap();
    let ds = vars
        .iter()
        .find(|v| v["name"] == "datasource")
        .expect("a `datasource` template variable");
    assert_eq!(ds["type"], "datasource");
    assert_eq!(ds["query"], "prometheus");
    let ty = vars
        .iter()
        .find(|v| v["name"] == "type")
        .expect("a `type` template variable");
    assert_eq!(ty["allValue"], ".*", "All must select every type");
    let mut ids = BTreeSet::new();
    fn check(panels: &[Value], ids: &mut BTreeSet<i64>) {
        for p in panels {
            let id = p["id"].as_i64().expect("every panel has a numeric id");
            assert!(ids.insert(id), "panel id {id} is used twice");
            for k in ["h", "w", "x", "y"] {
                assert!(p["gridPos"][k].is_i64(), "panel {id} has no gridPos.{k}");
            }
            if p["type"] == "row" {
                check(p["panels"].as_array().unwrap(), ids);
                continue;
            }
            assert_eq!(
                p["datasource"]["uid"], "${datasource}",
                "panel {:?} must use the datasource variable",
                p["title"]
            );
            let targets = p["targets"].as_array().unwrap();
            assert!(!targets.is_empty(), "panel {:?} has no query", p["title"]);
            for t in targets {
                assert_eq!(t["datasource"]["uid"], "${datasource}");
                assert!(!t["expr"].as_str().unwrap().is_empty());
            }
        }
    }
    check(d["panels"].as_array().unwrap(), &mut ids);
    // What issue 16 item 6 names: queue depth and age, throughput, failures, permits, workers,
    // miner latency and fallbacks.
    let used: BTreeSet<String> = panel_queries(&d)
        .iter()
        .flat_map(|(_, q)| metric_names(q))
        .collect();
    for m in [
        "sc_queue_waiting",
        "sc_queue_oldest_ms",
        "sc_jobs_processed_total",
        "sc_jobs_failed_total",
        "sc_jobs_retried_total",
        "sc_jobs_dead_total",
        "sc_dlq_length",
        "sc_semaphore_permits_in_use",
        "sc_semaphore_permits_limit",
        "sc_workers_alive",
        "sc_worker_heartbeat_timestamp_seconds",
        "sc_miner_answer_seconds_bucket",
        "sc_miner_answers_total",
        "sc_miner_fallbacks_total",
        "sc_miner_late_answers_total",
        // issue 21: the GPU pod fleet's gauges
        "sc_fleet_pods",
        "sc_fleet_wanted_pods",
        "sc_fleet_rate_dollars_per_hour",
        "sc_fleet_spend_today_dollars",
        "sc_fleet_budget_left_today_dollars",
        "sc_fleet_balance_dollars",
        "sc_fleet_leader",
    ] {
        assert!(used.contains(m), "no panel queries {m}; used: {used:?}");
    }
}

#[test]
fn promtool_accepts_the_shipped_scrape_config_and_rules() {
    let Some((_, promtool)) = prometheus_tools() else {
        return;
    };
    for args in [
        ["check", "config", "ops/prometheus/prometheus.yml"],
        ["check", "rules", "ops/prometheus/rules.yml"],
    ] {
        let o = Command::new(&promtool)
            .args(args)
            .current_dir(root())
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

/// The processes the test started, stopped by PID when it ends (SIGTERM, then SIGKILL).
#[derive(Default)]
struct Procs(Vec<Child>);

impl Procs {
    fn add(&mut self, c: Child) -> u32 {
        let pid = c.id();
        self.0.push(c);
        pid
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            // SAFETY: kill(2) on the pid of a child we started and have not reaped.
            unsafe {
                libc::kill(c.id() as libc::pid_t, libc::SIGTERM);
            }
        }
        for c in &mut self.0 {
            let deadline = Instant::now() + Duration::from_secs(5);
            while c.try_wait().ok().flatten().is_none() {
                if Instant::now() > deadline {
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// A spot venue for the miner: Binance's `/api/v3/ticker/price` at 60000.
fn binance_stub() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        use std::io::Write;
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let Some((head, _)) = common::read_http_request(&mut s) else {
                continue;
            };
            let target = head.split_whitespace().nth(1).unwrap_or("").to_string();
            let (status, body) = match target.strip_prefix("/api/v3/ticker/price?symbol=") {
                Some(sym) => (
                    200,
                    serde_json::json!({"symbol": sym.to_ascii_uppercase(), "price": "60000.00000000"})
                        .to_string(),
                ),
                None => (404, "{}".to_string()),
            };
            let _ = write!(
                s,
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://{addr}")
}

/// The Prometheus configuration of the test: ops/prometheus/prometheus.yml with its targets
/// pointed at the test's processes, scrapes and evaluations every second.
fn test_config(dir: &Path, worker: u16, miner: u16, fleet: u16) -> PathBuf {
    let shipped = std::fs::read_to_string(root().join("ops/prometheus/prometheus.yml")).unwrap();
    for needle in [
        WORKER_TARGET,
        MINER_TARGET,
        FLEET_TARGET,
        "scrape_interval: 15s",
        "evaluation_interval: 15s",
        "- rules.yml",
    ] {
        assert!(
            shipped.contains(needle),
            "ops/prometheus/prometheus.yml no longer has {needle:?}; update tests/observability.rs"
        );
    }
    let text = shipped
        .replace(WORKER_TARGET, &format!("127.0.0.1:{worker}"))
        .replace(MINER_TARGET, &format!("127.0.0.1:{miner}"))
        .replace(FLEET_TARGET, &format!("127.0.0.1:{fleet}"))
        .replace("scrape_interval: 15s", "scrape_interval: 1s")
        .replace("evaluation_interval: 15s", "evaluation_interval: 1s");
    std::fs::copy(
        root().join("ops/prometheus/rules.yml"),
        dir.join("rules.yml"),
    )
    .unwrap();
    let path = dir.join("prometheus.yml");
    std::fs::write(&path, text).unwrap();
    path
}

struct Prom {
    base: String,
    http: reqwest::Client,
    log: PathBuf,
}

impl Prom {
    async fn get(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .query(query)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}\n{}", self.log_tail()));
        let status = r.status();
        let v: Value = r.json().await.unwrap();
        assert!(status.is_success(), "{path} {query:?}: {status} {v}");
        v
    }

    /// An instant query's result vector (status success asserted).
    async fn query(&self, q: &str) -> Vec<Value> {
        let v = self.get("/api/v1/query", &[("query", q)]).await;
        assert_eq!(v["status"], "success", "{q}: {v}");
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// The single value of a query that must return exactly one series.
    async fn value(&self, q: &str) -> f64 {
        let r = self.query(q).await;
        assert_eq!(r.len(), 1, "{q} should return one series: {r:?}");
        r[0]["value"][1].as_str().unwrap().parse().unwrap()
    }

    async fn wait_until(&self, what: &str, timeout: Duration, mut ok: impl AsyncFnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while !ok().await {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        format!(
            "prometheus log (last lines):\n{}",
            lines[lines.len().saturating_sub(15)..].join("\n")
        )
    }
}

/// The miner's answer to one signed request from //Alice.
async fn ask_miner(http: &reqwest::Client, port: u16, inc: i64, len: i64) -> u16 {
    let alice = Hotkey::from_uri("//Alice").unwrap();
    let t = (chrono::Utc::now().timestamp() / 60) * 60 + 120;
    let start = chrono::DateTime::from_timestamp(t, 0)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%S+00:00")
        .to_string();
    let body = serde_json::json!({
        "name": "Simulation", "timeout": 12.0, "total_size": 0, "header_size": 0,
        "dendrite": {"status_code": null, "nonce": null}, "axon": {"status_code": null},
        "computed_body_hash": "",
        "simulation_input": {"asset": "BTC", "start_time": start, "time_increment": inc,
                             "time_length": len, "num_simulations": 10},
        "simulation_output": null
    });
    let headers = auth::dendrite_headers(
        alice.keypair().unwrap(),
        ALICE,
        BOB,
        &format!("observability-{}-{inc}", std::process::id()),
        auth::now_ns(),
        12.0,
    );
    let mut rb = http
        .post(format!("http://127.0.0.1:{port}/Simulation"))
        .body(body.to_string());
    for (k, v) in headers {
        rb = rb.header(k, v);
    }
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    assert_eq!(status, 200, "the miner refused: {text:.300}");
    status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_returns_series_from_a_real_prometheus() {
    let Some((prometheus, _)) = prometheus_tools() else {
        return;
    };
    let t0 = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let redis = RedisServer::start();
    let url = redis.url();
    let mut procs = Procs::default();
    stdout_of(cli_command(&url).arg("migrate"));
    stdout_of(cli_command(&url).args(["semaphore", "set-limit", "3"]));
    // One pipeline permit held (as a run would), for the permits panel.
    {
        let q = engine::queue::Queue::new(&url, "t", Default::default()).unwrap();
        let mut sem = engine::semaphore::RedisSemaphore::new(q, engine::semaphore::PIPELINE);
        sem.lease = Duration::from_secs(600);
        let got = sem.try_acquire("observability-test", false).await.unwrap();
        assert!(matches!(got, engine::semaphore::TryAcquire::Granted(_)));
    }

    // The worker and the miner, each with its metrics on a free loopback port.
    let (worker_metrics, miner_metrics, miner_port) = (free_port(), free_port(), free_port());
    procs.add(
        worker_command(
            &url,
            &[
                "--roles",
                "engine",
                "--concurrency",
                "4",
                "--heartbeat-ms",
                "500",
                "--retry-base-ms",
                "50",
                "--retry-cap-ms",
                "100",
            ],
        )
        .arg("--metrics-addr")
        .arg(format!("127.0.0.1:{worker_metrics}"))
        .spawn()
        .unwrap(),
    );
    let venue = binance_stub();
    let mut miner = Command::new(bin())
        .args([
            "mine",
            "--host",
            "127.0.0.1",
            "--port",
            &miner_port.to_string(),
        ])
        .args([
            "--hotkey-uri",
            "//Bob",
            "--model",
            "gbm",
            "--allow-hotkeys",
            ALICE,
        ])
        .arg("--metrics-addr")
        .arg(format!("127.0.0.1:{miner_metrics}"))
        .arg("--data-dir")
        .arg(tmp.path().join("no-data"))
        .arg("--nonce-file")
        .arg(tmp.path().join("miner-nonces.jsonl"))
        .env("BINANCE_API_URL", &venue)
        .env("PYTH_HERMES_URL", "http://127.0.0.1:9")
        .env("HYPERLIQUID_API_URL", "http://127.0.0.1:9")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let out = miner.stdout.take().unwrap();
    procs.add(miner);
    let mut line = String::new();
    std::io::BufReader::new(out).read_line(&mut line).unwrap();
    assert!(line.contains("miner listening"), "the miner said: {line:?}");

    // The GPU pod fleet's leader (`fleet run`) against the Basilica stand-in, with no backlog
    // of its job type: it rents nothing and exports its gauges (no pods, $0/h, the balance).
    let basilica = common::basilica::Basilica::start(
        vec![common::basilica::offering("o-a4000", "A4000", "1.00")],
        100.0,
    );
    let fleet_metrics = free_port();
    procs.add(
        cli_command(&url)
            .args(["fleet", "run", "--job-types", "experiment"])
            .args(["--allowed-gpu-types", "A4000", "--max-hourly-rate", "1.5"])
            .args(["--budget-per-hour", "2.5", "--budget-per-day", "10"])
            .args(["--tick-ms", "500"])
            .arg("--metrics-addr")
            .arg(format!("127.0.0.1:{fleet_metrics}"))
            .env("BASILICA_API_URL", &basilica.url)
            .env("BASILICA_API_TOKEN", &basilica.token)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    // Prometheus under the shipped configuration, pointed at them.
    let config = test_config(tmp.path(), worker_metrics, miner_metrics, fleet_metrics);
    let prom_port = free_port();
    let log = tmp.path().join("prometheus.log");
    procs.add(
        Command::new(&prometheus)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                tmp.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let prom = Prom {
        base: format!("http://127.0.0.1:{prom_port}"),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap(),
        log,
    };
    prom.wait_until("both targets up", Duration::from_secs(30), async || {
        let Ok(r) = prom
            .http
            .get(format!("{}/api/v1/targets", prom.base))
            .send()
            .await
        else {
            return false;
        };
        let Ok(v) = r.json::<Value>().await else {
            return false;
        };
        let targets = v["data"]["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let jobs: BTreeSet<&str> = targets
            .iter()
            .filter(|t| t["health"] == "up")
            .filter_map(|t| t["labels"]["job"].as_str())
            .collect();
        jobs.contains("synth-city-worker") && jobs.contains("synth-city-miner")
    })
    .await;

    // Work: jobs that complete, one that fails twice and is dead-lettered, two miner answers.
    let enqueue = |args: &[&str]| {
        let mut c = cli_command(&url);
        c.args(["jobs", "enqueue"]).args(args).arg("--json");
        serde_json::from_str::<Value>(&stdout_of(&mut c)).unwrap()
    };
    enqueue(&[
        "--type",
        "sleep",
        "--payload",
        r#"{"ms":1}"#,
        "--count",
        "5",
    ]);
    enqueue(&["--type", "noop", "--count", "3"]);
    let doomed = enqueue(&[
        "--type",
        "sleep",
        "--payload",
        r#"{"ms":1,"fail_rate":1.0}"#,
        "--max-attempts",
        "2",
    ])[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let http = reqwest::Client::new();
    ask_miner(&http, miner_port, 300, 86_400).await;
    ask_miner(&http, miner_port, 60, 3_600).await;

    // The worker's gauges sample Redis every 5 s: wait for the dead letter to reach Prometheus.
    prom.wait_until(
        "the dead letter in sc_dlq_length",
        Duration::from_secs(30),
        async || {
            prom.query("max(sc_dlq_length) == 1").await.len() == 1
                && prom.query("sum(sc_jobs_processed_total) == 8").await.len() == 1
        },
    )
    .await;
    let status: Value = serde_json::from_str(&stdout_of(
        cli_command(&url).args(["jobs", "status", &doomed, "--json"]),
    ))
    .unwrap();
    assert_eq!(status["state"], "dead", "{status}");
    // Two more scrapes, so every rate has its samples.
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Every panel's every query returns at least one series.
    let d = dashboard();
    let queries = panel_queries(&d);
    assert!(queries.len() >= 20, "{} queries", queries.len());
    let mut empty = Vec::new();
    for (title, expr) in &queries {
        let q = concrete(expr);
        if prom.query(&q).await.is_empty() {
            empty.push(format!("{title}: {q}"));
        }
    }
    assert!(
        empty.is_empty(),
        "these dashboard queries returned no series:\n{}",
        empty.join("\n")
    );

    // And the numbers are the work's.
    for (q, want) in [
        ("sum(sc_jobs_processed_total{type=\"sleep\"})", 5.0),
        ("sum(sc_jobs_processed_total{type=\"noop\"})", 3.0),
        ("sum(sc_jobs_failed_total)", 2.0),
        ("sum(sc_jobs_retried_total)", 1.0),
        ("sum(sc_jobs_dead_total{type=\"sleep\"})", 1.0),
        ("max(sc_semaphore_permits_in_use{name=\"pipeline\"})", 1.0),
        ("max(sc_semaphore_permits_limit{name=\"pipeline\"})", 3.0),
        ("max(sc_workers_alive)", 1.0),
        ("sum(sc_worker_slots)", 4.0),
        ("sum(sc_miner_answers_total{answered_by=\"gbm\"})", 2.0),
        ("sum(sc_miner_answers_total{answered_by=\"model\"})", 0.0),
        ("sum(sc_miner_fallbacks_total)", 0.0),
        ("sum(sc_miner_answer_seconds_count)", 2.0),
        ("sum(sc_miner_requests_total{status=\"200\"})", 2.0),
        ("sum(sc_miner_spot_source_total)", 2.0),
        ("sum(sc_fleet_leader)", 1.0),
        ("sum(sc_fleet_pods)", 0.0),
        ("max(sc_fleet_balance_dollars)", 100.0),
    ] {
        assert_eq!(prom.value(q).await, want, "{q}");
    }
    // The first answer asked the venue; the second may have reused its cached price.
    let venue = prom
        .value("sum(sc_miner_spot_source_total{source=\"binance\"})")
        .await;
    assert!(venue >= 1.0, "binance spot prices: {venue}");
    let age = prom
        .value("max(time() - sc_worker_heartbeat_timestamp_seconds)")
        .await;
    assert!((-5.0..5.0).contains(&age), "heartbeat age {age} s");

    // The rules load and evaluate; the dead letter fires its alert, the miner's stay quiet.
    let rules = prom.get("/api/v1/rules", &[]).await;
    let mut names = Vec::new();
    for g in rules["data"]["groups"].as_array().unwrap() {
        for r in g["rules"].as_array().unwrap() {
            assert_eq!(r["health"], "ok", "rule {r}");
            names.push(r["name"].as_str().unwrap().to_string());
        }
    }
    assert!(names.len() >= 10, "rules loaded: {names:?}");
    for r in names.iter().filter(|n| n.starts_with("synth_city:")) {
        assert!(
            !prom.query(r).await.is_empty(),
            "recording rule {r} has no series"
        );
    }
    let mut firing = BTreeSet::new();
    prom.wait_until(
        "SynthCityDeadLetters to fire",
        Duration::from_secs(15),
        async || {
            let v = prom.get("/api/v1/alerts", &[]).await;
            firing = v["data"]["alerts"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|a| a["labels"]["alertname"].as_str().map(str::to_string))
                .collect();
            firing.contains("SynthCityDeadLetters")
        },
    )
    .await;
    for quiet in [
        "SynthCityMinerFallbacks",
        "SynthCityMinerLateAnswers",
        "SynthCityNoWorkers",
        "SynthCityMinerDown",
    ] {
        assert!(!firing.contains(quiet), "{quiet} fired: {firing:?}");
    }
    eprintln!(
        "{} dashboard queries answered in {:?}",
        queries.len(),
        t0.elapsed()
    );
}
