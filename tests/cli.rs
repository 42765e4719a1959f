//! The operator CLI end to end: the real binary against a real redis-server.

mod common;

use std::io::{Read, Write};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{bin, RedisServer};
use serde_json::Value;

/// `synth-city --redis-url URL --prefix cli`, logging only warnings.
fn sc(redis: &RedisServer) -> Command {
    let mut c = Command::new(bin());
    c.arg("--redis-url")
        .arg(redis.url())
        .args(["--prefix", "cli"])
        .env("RUST_LOG", "warn");
    c
}

fn run(redis: &RedisServer, args: &[&str]) -> Output {
    sc(redis).args(args).output().unwrap()
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

/// `synth-city --redis-url URL --prefix cli ARGS | head -1` in bash: head's output, and
/// synth-city's own exit status and stderr.
fn piped_to_head(redis: &RedisServer, args: &[&str]) -> (String, Option<i32>, String) {
    let direct = sc(redis);
    let out = Command::new("bash")
        .arg("-c")
        .arg(r#""$@" | head -1; exit "${PIPESTATUS[0]}""#)
        .arg("bash")
        .arg(direct.get_program())
        .args(direct.get_args())
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    (
        String::from_utf8(out.stdout).unwrap(),
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Adds `n` live holders (leases a minute long) to the `pipeline` semaphore of prefix `cli`.
fn add_holders(redis: &RedisServer, n: usize) {
    let mut c = redis.conn();
    let (s, _us): (u64, u64) = redis::cmd("TIME").query(&mut c).unwrap();
    let mut z = redis::cmd("ZADD");
    z.arg("{cli}:sem:pipeline:holders");
    for i in 0..n {
        z.arg(s * 1000 + 60_000).arg(format!("holder-{i:05}"));
    }
    let _: i64 = z.query(&mut c).unwrap();
}

#[test]
fn output_piped_to_head_ends_quietly_after_the_work() {
    let redis = RedisServer::start();
    ok(&redis, &["migrate"]);
    // 5000 ids (~180 KB) overflow the pipe once head has gone: the writes get EPIPE.
    let (line, code, err) = piped_to_head(
        &redis,
        &["jobs", "enqueue", "--type", "noop", "--count", "5000"],
    );
    assert_eq!(code, Some(0), "exit status; stderr: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(line.trim_end().ends_with(" enqueued"), "{line}");
    let n: u64 = redis::cmd("XLEN")
        .arg("{cli}:q:noop")
        .query(&mut redis.conn())
        .unwrap();
    assert_eq!(n, 5000, "every job was enqueued before the output was cut");

    add_holders(&redis, 3000);
    let (line, code, err) = piped_to_head(&redis, &["semaphore", "status"]);
    assert_eq!(code, Some(0), "exit status; stderr: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        line.starts_with("semaphore pipeline: 3000 of 10 permits held"),
        "{line}"
    );
}

#[test]
fn lowering_the_limit_below_the_holders_says_what_happens() {
    let redis = RedisServer::start();
    ok(&redis, &["migrate"]);
    add_holders(&redis, 10);
    let out = ok(&redis, &["semaphore", "set-limit", "3"]);
    assert!(out.contains("semaphore pipeline: limit 3"), "{out}");
    for want in [
        "10 holders are over the limit of 3",
        "no permit is taken back",
        "until they release them",
        "new acquirers wait until fewer than 3 hold one",
    ] {
        assert!(out.contains(want), "missing {want:?} in: {out}");
    }
    let status = ok(&redis, &["semaphore", "status"]);
    assert!(
        status.contains("10 of 3 permits held") && status.contains("no permit is taken back"),
        "{status}"
    );
    // At or under the limit: no note.
    let out = ok(&redis, &["semaphore", "set-limit", "10"]);
    assert!(!out.contains("over the limit"), "{out}");
    let help = ok(&redis, &["semaphore", "set-limit", "--help"]);
    assert!(help.contains("preempts no one"), "{help}");
}

#[test]
fn job_retention_is_a_setting() {
    let redis = RedisServer::start();
    ok(&redis, &["migrate"]);
    let with_retention = |v: &str, args: &[&str]| {
        sc(&redis)
            .args(args)
            .env("SYNTH_JOB_RETENTION_SECS", v)
            .output()
            .unwrap()
    };
    let out = with_retention("1", &["jobs", "enqueue", "--type", "noop", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let id = json(&String::from_utf8(out.stdout).unwrap())[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Cancelling a waiting job finishes its record, which is then kept for the setting.
    assert!(with_retention("1", &["jobs", "cancel", &id])
        .status
        .success());
    let ttl: i64 = redis::cmd("PTTL")
        .arg(format!("{{cli}}:job:{id}"))
        .query(&mut redis.conn())
        .unwrap();
    assert!(ttl > 0 && ttl <= 1000, "kept 1 s, got {ttl} ms");
    let out = with_retention("1h", &["jobs", "stats"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("SYNTH_JOB_RETENTION_SECS=\"1h\"") && err.contains("whole number"),
        "{err}"
    );
}
