//! The operator CLI end to end: the real binary against a real redis-server.

mod common;

use std::io::{Read, Write};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{bin, RedisServer};
use serde_json::Value;

fn run(redis: &RedisServer, args: &[&str]) -> Output {
    Command::new(bin())
        .arg("--redis-url")
        .arg(redis.url())
        .args(["--prefix", "cli"])
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn ok(redis: &RedisServer, args: &[&str]) -> String {
    let out = run(redis, args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn fails(redis: &RedisServer, args: &[&str]) -> String {
    let out = run(redis, args);
    assert!(!out.status.success(), "{args:?} should fail");
    String::from_utf8(out.stderr).unwrap()
}

fn json(s: &str) -> Value {
    serde_json::from_str(s.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

fn http_get(port: u16, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn operator_workflow() {
    let redis = RedisServer::start();
    // Before migrating, a worker refuses and says what to do.
    let err = fails(&redis, &["worker", "--roles", "noop"]);
    assert!(err.contains("run `synth-city migrate`"), "{err}");
    assert!(ok(&redis, &["migrate"]).contains("applied migrations [1, 2]"));
    assert!(ok(&redis, &["migrate"]).contains("up to date"));

    // Bad input: clear errors, nothing enqueued.
    assert!(
        fails(&redis, &["jobs", "enqueue", "--type", "nope"]).contains("unknown job type `nope`")
    );
    assert!(fails(
        &redis,
        &["jobs", "enqueue", "--type", "sleep", "--payload", "{"]
    )
    .contains("--payload is not valid JSON"));
    assert!(fails(
        &redis,
        &["jobs", "enqueue", "--type", "sleep", "--payload", "{}"]
    )
    .contains("missing field `ms`"));

    let out = json(&ok(
        &redis,
        &[
            "jobs",
            "enqueue",
            "--type",
            "sleep",
            "--payload",
            r#"{"ms": 1}"#,
            "--count",
            "3",
            "--json",
        ],
    ));
    let ids: Vec<String> = out
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 3);
    let k = [
        "jobs",
        "enqueue",
        "--type",
        "noop",
        "--idempotency-key",
        "k1",
        "--json",
    ];
    let first = json(&ok(&redis, &k));
    let again = json(&ok(&redis, &k));
    assert_eq!(first[0]["id"], again[0]["id"]);
    assert_eq!(again[0]["created"], false);

    let stats = json(&ok(&redis, &["jobs", "stats", "--json"]));
    let sleep = stats
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["type"] == "sleep")
        .unwrap();
    assert_eq!(sleep["waiting"], 3);

    // A worker with metrics drains the queue; SIGTERM stops it cleanly.
    let port = free_port();
    let mut worker: Child = Command::new(bin())
        .arg("--redis-url")
        .arg(redis.url())
        .args([
            "--prefix",
            "cli",
            "worker",
            "--roles",
            "all",
            "--heartbeat-ms",
            "200",
        ])
        .arg("--metrics-addr")
        .arg(format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = json(&ok(&redis, &["jobs", "status", &ids[2], "--json"]));
        if s["state"] == "completed" {
            assert_eq!(s["result"]["slept_ms"], 1);
            break;
        }
        assert!(Instant::now() < deadline, "job never completed: {s}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let workers = json(&ok(&redis, &["workers", "--json"]));
    assert_eq!(workers.as_array().unwrap().len(), 1);
    let roles = workers[0]["roles"].as_array().unwrap();
    for r in [
        "noop", "sleep", "plan", "train", "check", "debug", "publish",
    ] {
        assert!(roles.iter().any(|x| x == r), "{r} missing from {roles:?}");
    }
    let metrics = http_get(port, "/metrics");
    assert!(metrics.contains("200 OK"), "{metrics}");
    assert!(
        metrics.contains("sc_jobs_processed_total{type=\"sleep\"} 3"),
        "{metrics}"
    );
    assert!(metrics.contains("sc_job_wait_seconds_bucket"));
    sigterm(worker.id());
    let status = worker.wait().unwrap();
    assert!(status.success(), "worker exit {status:?}");
    assert!(json(&ok(&redis, &["workers", "--json"]))
        .as_array()
        .unwrap()
        .is_empty());

    // Cancel, dead letters, schedules, semaphore.
    let waiting = json(&ok(
        &redis,
        &[
            "jobs", "enqueue", "--type", "noop", "--delay", "60", "--json",
        ],
    ))[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let at = json(&ok(
        &redis,
        &[
            "jobs",
            "enqueue",
            "--type",
            "noop",
            "--at",
            "2099-01-01T00:00:00Z",
            "--json",
        ],
    ))[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let stats = json(&ok(&redis, &["jobs", "stats", "--json"]));
    let noop = stats
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["type"] == "noop")
        .unwrap();
    assert_eq!(noop["delayed"], 2);
    assert!(fails(
        &redis,
        &["jobs", "enqueue", "--type", "noop", "--at", "soon"]
    )
    .contains("--at"));
    assert!(ok(&redis, &["jobs", "cancel", &at]).contains("cancelled"));
    assert!(ok(&redis, &["jobs", "cancel", &waiting]).contains("cancelled"));
    assert!(fails(&redis, &["jobs", "status", "missing-id"]).contains("no job"));
    assert!(ok(&redis, &["jobs", "dlq", "list"]).contains("no dead letters"));
    assert!(fails(&redis, &["jobs", "dlq", "purge"]).contains("--yes"));
    assert!(ok(&redis, &["jobs", "dlq", "purge", "--yes"]).contains("purged 0"));
    ok(
        &redis,
        &[
            "schedule",
            "add",
            "--name",
            "hourly",
            "--cron",
            "0 * * * *",
            "--type",
            "noop",
        ],
    );
    let sl = json(&ok(&redis, &["schedule", "list", "--json"]));
    assert_eq!(sl[0]["name"], "hourly");
    assert!(fails(
        &redis,
        &["schedule", "add", "--name", "bad", "--cron", "* *", "--type", "noop"]
    )
    .contains("2 fields"));
    ok(&redis, &["schedule", "remove", "hourly"]);
    assert!(fails(&redis, &["schedule", "remove", "hourly"]).contains("no schedule"));
    ok(&redis, &["semaphore", "set-limit", "3"]);
    let sem = json(&ok(&redis, &["semaphore", "status", "--json"]));
    assert_eq!(
        (
            sem["limit"].as_u64(),
            sem["holders"].as_array().unwrap().len()
        ),
        (Some(3), 0)
    );
}

fn sigterm(pid: u32) {
    let st = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(st.success());
}

#[test]
fn bench_queue_reports_what_it_measured_and_cleans_up() {
    let redis = RedisServer::start();
    let out = json(&ok(
        &redis,
        &[
            "bench",
            "queue",
            "--jobs",
            "300",
            "--workers",
            "2",
            "--concurrency",
            "8",
            "--json",
        ],
    ));
    for k in ["jobs", "seconds", "jobs_per_sec", "p50_ms", "p99_ms"] {
        assert!(out.get(k).is_some(), "missing {k}: {out}");
    }
    assert_eq!(out["jobs"], 300);
    assert!(out["jobs_per_sec"].as_f64().unwrap() > 0.0);
    assert!(out["p50_ms"].as_u64().unwrap() <= out["p99_ms"].as_u64().unwrap());
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query(&mut redis.conn())
        .unwrap();
    assert!(keys.is_empty(), "bench left keys behind: {keys:?}");
}
