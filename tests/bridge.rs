//! The HTTP bridge over real HTTP, against a real redis-server: auth, bot
//! isolation, validation errors, idempotency, rate limits, SSE, OpenAPI.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{bin, RedisServer};
use serde_json::{json, Value};

struct Bridge {
    child: Child,
    port: u16,
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(redis: &RedisServer, key: Option<&str>, extra: &[&str]) -> Bridge {
    let port = free_port();
    let mut cmd = Command::new(bin());
    cmd.arg("--redis-url")
        .arg(redis.url())
        .args(["--prefix", "br", "bridge", "--port"]);
    cmd.arg(port.to_string())
        .args(extra)
        .env("RUST_LOG", "warn");
    cmd.env_remove("BRIDGE_API_KEY");
    if let Some(k) = key {
        cmd.env("BRIDGE_API_KEY", k);
    }
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "bridge did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Bridge { child, port }
}

/// One request; returns (status, raw headers, body).
fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!(
        "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    ));
    s.write_all(req.as_bytes()).unwrap();
    // The server may answer (413) and close before the whole body is sent.
    let _ = s.write_all(body.as_bytes());
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8_lossy(&raw).to_string();
    let (head, rest) = raw.split_once("\r\n\r\n").unwrap();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    (status, head.to_string(), body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    loop {
        let (len, rest) = s.split_once("\r\n").unwrap();
        let n = usize::from_str_radix(len.trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
}

fn call(b: &Bridge, method: &str, path: &str, bot: &str, body: Value) -> (u16, Value) {
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let (st, _, text) = http(
        b.port,
        method,
        path,
        &[("X-API-Key", "sekret"), ("X-Bot-Id", bot)],
        &body,
    );
    (
        st,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[test]
fn jobs_over_http_are_authenticated_isolated_and_validated() {
    let redis = RedisServer::start();
    let out = Command::new(bin())
        .arg("--redis-url")
        .arg(redis.url())
        .args(["--prefix", "br", "migrate"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let b = start(&redis, Some("sekret"), &[]);

    // Health: "ok" for anyone, details with the key.
    let (st, _, body) = http(b.port, "GET", "/health", &[], "");
    assert_eq!((st, body.as_str()), (200, r#"{"status":"ok"}"#));
    let (st, h) = call(&b, "GET", "/health", "default", Value::Null);
    assert_eq!((st, h["redis"].as_str()), (200, Some("ok")));
    assert_eq!(h["schema_version"], h["expected_schema_version"]);

    // No key or a wrong key: 401, naming the header.
    let (st, _, body) = http(b.port, "GET", "/queue/stats", &[], "");
    assert_eq!(st, 401);
    assert!(body.contains("X-API-Key"));
    let (st, _, _) = http(
        b.port,
        "GET",
        "/queue/stats",
        &[("X-API-Key", "sekreT")],
        "",
    );
    assert_eq!(st, 401);

    // Enqueue as bot A; B cannot see or cancel it.
    let (st, a) = call(
        &b,
        "POST",
        "/jobs",
        "bot-a",
        json!({"type": "sleep", "payload": {"ms": 1}, "delay_secs": 60}),
    );
    assert_eq!(st, 201, "{a}");
    let id = a["id"].as_str().unwrap().to_string();
    let (st, s) = call(&b, "GET", &format!("/jobs/{id}"), "bot-a", Value::Null);
    assert_eq!(
        (st, s["state"].as_str(), s["bot_id"].as_str()),
        (200, Some("delayed"), Some("bot-a"))
    );
    assert_eq!(
        call(&b, "GET", &format!("/jobs/{id}"), "bot-b", Value::Null).0,
        404
    );
    assert_eq!(
        call(
            &b,
            "POST",
            &format!("/jobs/{id}/cancel"),
            "bot-b",
            Value::Null
        )
        .0,
        404
    );
    let (st, c) = call(
        &b,
        "POST",
        &format!("/jobs/{id}/cancel"),
        "bot-a",
        Value::Null,
    );
    assert_eq!((st, c["outcome"].as_str()), (200, Some("cancelled")));
    assert_eq!(
        call(
            &b,
            "POST",
            &format!("/jobs/{id}/cancel"),
            "bot-a",
            Value::Null
        )
        .0,
        409
    );

    // Idempotency keys are per bot.
    let body = json!({"type": "noop", "idempotency_key": "sweep-1"});
    let (st1, a1) = call(&b, "POST", "/jobs", "bot-a", body.clone());
    let (st2, a2) = call(&b, "POST", "/jobs", "bot-a", body.clone());
    let (st3, b1) = call(&b, "POST", "/jobs", "bot-b", body);
    assert_eq!((st1, st2, st3), (201, 200, 201));
    assert_eq!(a1["id"], a2["id"]);
    assert_ne!(a1["id"], b1["id"]);

    // Bad input: a 4xx that names what is wrong.
    let (st, e) = call(&b, "POST", "/jobs", "bot-a", json!({"payload": {}}));
    assert_eq!(st, 400);
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains("missing field `type`"),
        "{e}"
    );
    let (st, e) = call(&b, "POST", "/jobs", "bot-a", json!({"type": "nope"}));
    assert_eq!(st, 422);
    assert!(e["error"]
        .as_str()
        .unwrap()
        .contains("unknown job type `nope`"));
    let (st, e) = call(
        &b,
        "POST",
        "/jobs",
        "bot-a",
        json!({"type": "sleep", "payload": {"ms": "x"}}),
    );
    assert_eq!(st, 422);
    assert!(e["error"].as_str().unwrap().contains("payload for `sleep`"));
    let (st, e) = call(
        &b,
        "POST",
        "/jobs",
        "bot-a",
        json!({"type": "noop", "colour": 1}),
    );
    assert_eq!(st, 400);
    assert!(e["error"]
        .as_str()
        .unwrap()
        .contains("unknown field `colour`"));
    let (st, _, _) = http(
        b.port,
        "POST",
        "/jobs",
        &[("X-API-Key", "sekret")],
        "{not json",
    );
    assert_eq!(st, 400);
    let big = format!(
        "{{\"type\":\"noop\",\"payload\":{{\"x\":\"{}\"}}}}",
        "a".repeat(1 << 20)
    );
    let (st, _, body) = http(b.port, "POST", "/jobs", &[("X-API-Key", "sekret")], &big);
    assert_eq!(st, 413, "{body}");
    let (st, _, body) = http(
        b.port,
        "GET",
        "/workers",
        &[("X-API-Key", "sekret"), ("X-Bot-Id", "no spaces")],
        "",
    );
    assert_eq!(st, 400);
    assert!(body.contains("X-Bot-Id"));
    assert_eq!(call(&b, "GET", "/nowhere", "bot-a", Value::Null).0, 404);

    // The rest of the engine.
    let (st, s) = call(&b, "GET", "/queue/stats", "bot-a", Value::Null);
    assert_eq!(st, 200);
    assert!(s["types"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["type"] == "noop"));
    assert_eq!(call(&b, "GET", "/workers", "bot-a", Value::Null).0, 200);
    let (st, s) = call(&b, "GET", "/semaphore", "bot-a", Value::Null);
    assert_eq!((st, s["limit"].as_u64()), (200, Some(10)));
    let sched = json!({"name": "hourly", "cron": "0 * * * *", "job_type": "noop", "payload": {}});
    assert_eq!(call(&b, "POST", "/schedules", "bot-a", sched).0, 201);
    let bad = json!({"name": "bad", "cron": "nope", "job_type": "noop", "payload": {}});
    assert_eq!(call(&b, "POST", "/schedules", "bot-a", bad).0, 422);
    let (st, l) = call(&b, "GET", "/schedules", "bot-a", Value::Null);
    assert_eq!(
        (st, l["schedules"][0]["name"].as_str()),
        (200, Some("hourly"))
    );
    assert_eq!(
        call(&b, "DELETE", "/schedules/hourly", "bot-a", Value::Null).0,
        200
    );
    assert_eq!(
        call(&b, "DELETE", "/schedules/hourly", "bot-a", Value::Null).0,
        404
    );

    // The OpenAPI document lists exactly the routes that answer.
    let (st, doc) = call(&b, "GET", "/openapi.json", "bot-a", Value::Null);
    assert_eq!(st, 200);
    let paths = doc["paths"].as_object().unwrap();
    for (method, path, _) in synth_city::bridge::ROUTES {
        assert!(
            paths[*path][*method].is_object(),
            "{method} {path} missing from the doc"
        );
        if *method == "get" && !path.contains('{') && *path != "/events" {
            assert_eq!(
                call(&b, "GET", path, "bot-a", Value::Null).0,
                200,
                "GET {path}"
            );
        }
    }
}

#[test]
fn events_stream_shows_only_the_callers_jobs() {
    let redis = RedisServer::start();
    let b = start(&redis, None, &[]);
    let mut s = TcpStream::connect(("127.0.0.1", b.port)).unwrap();
    s.write_all(b"GET /events HTTP/1.1\r\nHost: x\r\nX-Bot-Id: bot-a\r\n\r\n")
        .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.contains("200"), "{line}");
    std::thread::sleep(Duration::from_millis(300)); // the tail starts at "now"
    let (_, theirs) = call(&b, "POST", "/jobs", "bot-b", json!({"type": "noop"}));
    let (_, mine) = call(&b, "POST", "/jobs", "bot-a", json!({"type": "noop"}));
    let (theirs, mine) = (
        theirs["id"].as_str().unwrap().to_string(),
        mine["id"].as_str().unwrap().to_string(),
    );
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(8);
    while !seen.contains(&mine) {
        assert!(
            Instant::now() < deadline,
            "no event for our job; saw: {seen}"
        );
        let mut l = String::new();
        if r.read_line(&mut l).is_ok() {
            seen.push_str(&l);
        }
    }
    assert!(
        seen.contains("event:enqueued") || seen.contains("event: enqueued"),
        "{seen}"
    );
    assert!(
        !seen.contains(&theirs),
        "another bot's job leaked into the stream: {seen}"
    );
}

#[test]
fn limits_and_refusals() {
    let redis = RedisServer::start();
    let b = start(&redis, None, &["--rate-per-min", "3"]);
    for _ in 0..3 {
        assert_eq!(call(&b, "GET", "/workers", "bot-a", Value::Null).0, 200);
    }
    let (st, head, _) = http(b.port, "GET", "/workers", &[("X-Bot-Id", "bot-a")], "");
    assert_eq!(st, 429);
    assert!(head.to_ascii_lowercase().contains("retry-after"), "{head}");
    assert_eq!(
        call(&b, "GET", "/workers", "bot-b", Value::Null).0,
        200,
        "budgets are per bot"
    );

    let out = Command::new(bin())
        .arg("--redis-url")
        .arg(redis.url())
        .args([
            "bridge",
            "--host",
            "0.0.0.0",
            "--port",
            &free_port().to_string(),
        ])
        .env_remove("BRIDGE_API_KEY")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("without BRIDGE_API_KEY"));
}

#[test]
fn pipeline_runs_over_http_belong_to_their_bot() {
    let redis = RedisServer::start();
    let out = Command::new(bin())
        .arg("--redis-url")
        .arg(redis.url())
        .args(["--prefix", "br", "migrate"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let dir = tempfile::tempdir().unwrap();
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
    let (d, o, s) = (
        data.display().to_string(),
        dir.path().join("runs").display().to_string(),
        dir.path().join("store").display().to_string(),
    );
    let b = start(
        &redis,
        None,
        &["--data-dir", &d, "--out", &o, "--store", &s],
    );
    let tiny = json!({"max_experiments": 1, "epochs": 1, "rounds": 1, "steps_per_epoch": 1,
        "d_model": 8, "seq_len": 16, "eval_windows": 1, "eval_paths": 20, "retries": 1});
    let (st, r) = call(&b, "POST", "/pipeline/run", "bot-a", tiny.clone());
    assert_eq!(st, 202, "{r}");
    let id = r["run_id"].as_str().unwrap().to_string();
    let (st, run) = call(&b, "GET", &format!("/runs/{id}"), "bot-a", Value::Null);
    assert_eq!(
        (st, run["state"].as_str(), run["bot"].as_str()),
        (200, Some("queued"), Some("bot-a"))
    );
    assert_eq!(
        call(&b, "GET", &format!("/runs/{id}"), "bot-b", Value::Null).0,
        404
    );
    assert_eq!(
        call(
            &b,
            "POST",
            &format!("/runs/{id}/cancel"),
            "bot-b",
            Value::Null
        )
        .0,
        404
    );
    let (_, mine) = call(&b, "GET", "/runs", "bot-a", Value::Null);
    let (_, theirs) = call(&b, "GET", "/runs", "bot-b", Value::Null);
    assert_eq!(mine["runs"].as_array().unwrap().len(), 1);
    assert!(theirs["runs"].as_array().unwrap().is_empty());
    assert_eq!(
        call(
            &b,
            "POST",
            &format!("/runs/{id}/cancel"),
            "bot-a",
            Value::Null
        )
        .0,
        200
    );
    assert_eq!(
        call(
            &b,
            "POST",
            &format!("/runs/{id}/cancel"),
            "bot-a",
            Value::Null
        )
        .0,
        409
    );

    // Bad budgets are named; unknown fields refused.
    let (st, e) = call(
        &b,
        "POST",
        "/pipeline/run",
        "bot-a",
        json!({"max_experiments": 0}),
    );
    assert_eq!(st, 422);
    assert!(
        e["error"].as_str().unwrap().contains("max experiments"),
        "{e}"
    );
    let (st, e) = call(&b, "POST", "/pipeline/run", "bot-a", json!({"colour": 1}));
    assert_eq!(st, 400);
    assert!(e["error"]
        .as_str()
        .unwrap()
        .contains("unknown field `colour`"));

    // With every permit taken, a caller that will not wait gets 429.
    let mut c = redis.conn();
    let _: () = redis::cmd("SET")
        .arg("{br}:sem:pipeline:limit")
        .arg(1)
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("ZADD")
        .arg("{br}:sem:pipeline:holders")
        .arg(4_102_444_800_000u64) // year 2100
        .arg("someone")
        .query(&mut c)
        .unwrap();
    let mut nowait = tiny.clone();
    nowait["wait"] = json!(false);
    let (st, e) = call(&b, "POST", "/pipeline/run", "bot-a", nowait);
    assert_eq!(st, 429, "{e}");
    assert!(e["error"].as_str().unwrap().contains("permits are taken"));
    assert_eq!(
        call(&b, "POST", "/pipeline/run", "bot-a", tiny).0,
        202,
        "waiting is the default"
    );
}
