//! The research pipeline through a real Redis, offline (built-in agents, CPU
//! training on the real bars): a full run to a ranked, published result; a
//! worker killed mid-stage; 30 runs against the limit of 10.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use common::{bin, spawn_worker_env, RedisServer, TINY};
use serde_json::Value;

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data")
}

/// A worker process on this test's directories (its own settings: the shared bars,
/// `<dir>/runs`, `<dir>/store`), with extra environment variables.
fn worker_env_in(redis: &RedisServer, dir: &Path, flags: &[&str], env: &[(&str, &str)]) -> Child {
    let dirs = [
        "--data-dir".to_string(),
        data_dir().display().to_string(),
        "--work-dir".to_string(),
        dir.join("runs").display().to_string(),
        "--store".to_string(),
        dir.join("store").display().to_string(),
    ];
    let mut all: Vec<&str> = flags.to_vec();
    all.extend(dirs.iter().map(String::as_str));
    spawn_worker_env(&redis.url(), &all, env)
}

/// [`worker_env_in`] without extra environment.
fn worker_in(redis: &RedisServer, dir: &Path, flags: &[&str]) -> Child {
    worker_env_in(redis, dir, flags, &[])
}

fn cli(redis: &RedisServer, args: &[&str], dir: &std::path::Path) -> Output {
    cli_with_data(redis, args, dir, &data_dir())
}

/// [`cli`] with bars from `data`.
fn cli_with_data(
    redis: &RedisServer,
    args: &[&str],
    dir: &std::path::Path,
    data: &std::path::Path,
) -> Output {
    Command::new(bin())
        .arg("--redis-url")
        .arg(redis.url())
        .args(["--prefix", "t"])
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .arg("--out")
        .arg(dir.join("runs"))
        .arg("--store")
        .arg(dir.join("store"))
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn plain(redis: &RedisServer, args: &[&str]) -> String {
    common::stdout_of(common::cli_command(&redis.url()).args(args))
}

fn migrate(redis: &RedisServer) {
    plain(redis, &["migrate"]);
}

/// Enqueues a one-experiment, one-round run with the [`TINY`] budget and `extra` flags (later
/// flags win), from `dir`; returns its id.
fn enqueue_tiny_run(redis: &RedisServer, dir: &Path, extra: &[&str]) -> String {
    let mut args = vec!["pipeline", "--enqueue-only", "--max-experiments", "1"];
    args.extend_from_slice(&["--rounds", "1", "--json"]);
    args.extend_from_slice(TINY);
    args.extend_from_slice(extra);
    let out = cli(redis, &args, dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str::<Value>(String::from_utf8_lossy(&out.stdout).trim()).unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// One field of run `id`'s hash in Redis.
fn run_field(conn: &mut redis::Connection, id: &str, f: &str) -> Option<String> {
    redis::cmd("HGET")
        .arg(format!("{{t}}:run:{id}"))
        .arg(f)
        .query(conn)
        .unwrap()
}

fn run_state(redis: &RedisServer, id: &str) -> Value {
    serde_json::from_str(&plain(redis, &["runs", "show", id, "--json"])).unwrap()
}

#[test]
fn offline_pipeline_ranks_experiments_and_publishes() {
    let redis = RedisServer::start();
    migrate(&redis);
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec![
        "pipeline",
        "--max-experiments",
        "2",
        "--rounds",
        "2",
        "--publish",
        "--json",
    ];
    args.extend_from_slice(TINY);
    let out = cli(&redis, &args, dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("{e}: {stdout} {}", String::from_utf8_lossy(&out.stderr)));
    let run_id = v["run_id"].as_str().unwrap().to_string();
    for k in [
        "success",
        "run_id",
        "best_experiment",
        "best_crps",
        "gbm_crps",
    ] {
        assert!(v.get(k).is_some(), "missing {k}: {v}");
    }
    let exps = v["experiments"].as_array().unwrap();
    assert!(exps.len() >= 2, "{v}");
    let crps: Vec<f64> = exps.iter().filter_map(|e| e["crps"].as_f64()).collect();
    assert!(
        crps.windows(2).all(|w| w[0] <= w[1]),
        "ranked by CRPS: {crps:?}"
    );
    assert!(v["gbm_crps"].as_f64().unwrap() > 0.0);
    let stages: Vec<&str> = v["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stage"].as_str().unwrap())
        .collect();
    assert_eq!(stages[..3], ["plan", "train", "check"], "{stages:?}");
    if v["success"] == true {
        assert_eq!(*stages.last().unwrap(), "publish");
        assert!(dir.path().join("store/models/production.json").exists());
        assert!(dir
            .path()
            .join(format!("store/pipeline_runs/{run_id}/summary.json"))
            .exists());
        assert_eq!(v["best_crps"], crps[0]);
    } else {
        assert!(v["error"].as_str().unwrap().contains("check failed"), "{v}");
    }
    let listed: Value = serde_json::from_str(&plain(&redis, &["runs", "list", "--json"])).unwrap();
    assert_eq!(listed[0]["id"], run_id.as_str());
    assert!(listed[0]["state"] == "succeeded" || listed[0]["state"] == "failed");

    // A second run learns from the first: nothing is trained twice.
    let mut args2 = vec![
        "pipeline",
        "--max-experiments",
        "2",
        "--rounds",
        "1",
        "--json",
    ];
    args2.extend_from_slice(TINY);
    let out2 = cli(&redis, &args2, dir.path());
    let v2: Value = serde_json::from_str(String::from_utf8_lossy(&out2.stdout).trim()).unwrap();
    let first: Vec<&str> = exps.iter().map(|e| e["name"].as_str().unwrap()).collect();
    let second = v2["experiments"].as_array().unwrap();
    let planned_again = second
        .iter()
        .take(2)
        .filter(|e| first.contains(&e["name"].as_str().unwrap()))
        .count();
    assert_eq!(planned_again, 0, "first {first:?}, second {second:?}");
}

#[test]
fn a_worker_killed_mid_stage_does_not_lose_the_run() {
    let redis = RedisServer::start();
    migrate(&redis);
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec![
        "pipeline",
        "--enqueue-only",
        "--max-experiments",
        "2",
        "--rounds",
        "1",
        "--retries",
        "1",
        "--json",
    ];
    args.extend_from_slice(TINY);
    args.extend_from_slice(&["--steps-per-epoch", "40"]);
    let out = cli(&redis, &args, dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = serde_json::from_str::<Value>(String::from_utf8_lossy(&out.stdout).trim()).unwrap()
        ["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let flags = ["--roles", "all", "--concurrency", "2", "--lease-ms", "1000"];
    let mut first = worker_in(&redis, dir.path(), &flags);
    // the run's second step (plan is step 0) trains each experiment as a child job
    let train_job = format!("run-{id}-train-1");
    let children = [format!("{train_job}-r0-e0"), format!("{train_job}-r0-e1")];
    let deadline = Instant::now() + Duration::from_secs(60);
    let training = loop {
        let active = children.iter().find(|c| {
            let out = Command::new(bin())
                .arg("--redis-url")
                .arg(redis.url())
                .args(["--prefix", "t", "jobs", "status", c, "--json"])
                .output()
                .unwrap();
            out.status.success()
                && serde_json::from_slice::<Value>(&out.stdout).unwrap()["state"] == "active"
        });
        if let Some(c) = active {
            break c.clone();
        }
        assert!(Instant::now() < deadline, "training never started");
        std::thread::sleep(Duration::from_millis(20));
    };
    first.kill().unwrap();
    first.wait().unwrap();
    let mut second = worker_in(&redis, dir.path(), &flags);
    let deadline = Instant::now() + Duration::from_secs(120);
    let run = loop {
        let r = run_state(&redis, &id);
        if ["succeeded", "failed"].contains(&r["state"].as_str().unwrap()) {
            break r;
        }
        assert!(Instant::now() < deadline, "run never finished: {r}");
        std::thread::sleep(Duration::from_millis(100));
    };
    second.kill().unwrap();
    second.wait().unwrap();
    let job: Value =
        serde_json::from_str(&plain(&redis, &["jobs", "status", &training, "--json"])).unwrap();
    assert_eq!(job["state"], "completed");
    assert!(
        job["starts"].as_u64().unwrap() >= 2,
        "the experiment was re-run: {job}"
    );
    let job: Value =
        serde_json::from_str(&plain(&redis, &["jobs", "status", &train_job, "--json"])).unwrap();
    assert_eq!(job["state"], "completed", "{job}");
    let trains = run["task"]["stages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["stage"] == "train")
        .count();
    assert!(trains >= 1, "{run}");
    assert!(run["summary"]["experiments"].as_array().unwrap().len() >= 2);
}

#[test]
fn thirty_runs_never_exceed_ten_permits() {
    let redis = RedisServer::start();
    migrate(&redis);
    let dir = tempfile::tempdir().unwrap();
    let mut ids = Vec::new();
    for _ in 0..30 {
        let mut args = vec![
            "pipeline",
            "--enqueue-only",
            "--max-experiments",
            "1",
            "--rounds",
            "1",
            "--retries",
            "1",
            "--json",
        ];
        args.extend_from_slice(TINY);
        args.extend_from_slice(&[
            "--steps-per-epoch",
            "1",
            "--eval-windows",
            "1",
            "--eval-paths",
            "20",
        ]);
        let out = cli(&redis, &args, dir.path());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        ids.push(
            serde_json::from_str::<Value>(String::from_utf8_lossy(&out.stdout).trim()).unwrap()
                ["run_id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let flags = ["--roles", "all", "--concurrency", "8", "--lease-ms", "5000"];
    let mut workers = vec![
        worker_in(&redis, dir.path(), &flags),
        worker_in(&redis, dir.path(), &flags),
    ];
    let mut conn = redis.conn();
    let holders_key = "{t}:sem:pipeline:holders";
    let mut max_holders = 0usize;
    let mut max_running = 0usize;
    // generous: a loaded machine trains slowly; the assertions below are what matter
    let deadline = Instant::now() + Duration::from_secs(480);
    loop {
        let (s, us): (u64, u64) = redis::cmd("TIME").query(&mut conn).unwrap();
        let now = s * 1000 + us / 1000;
        let live: usize = redis::cmd("ZCOUNT")
            .arg(holders_key)
            .arg(now)
            .arg("+inf")
            .query(&mut conn)
            .unwrap();
        max_holders = max_holders.max(live);
        let mut done = 0;
        let mut running = 0;
        for id in &ids {
            let st: Option<String> = redis::cmd("HGET")
                .arg(format!("{{t}}:run:{id}"))
                .arg("state")
                .query(&mut conn)
                .unwrap();
            match st.as_deref() {
                Some("succeeded") | Some("failed") => done += 1,
                Some("running") => running += 1,
                _ => {}
            }
        }
        max_running = max_running.max(running);
        if done == ids.len() {
            break;
        }
        assert!(Instant::now() < deadline, "{done} of 30 runs finished");
        std::thread::sleep(Duration::from_millis(20));
    }
    for w in &mut workers {
        w.kill().unwrap();
        w.wait().unwrap();
    }
    eprintln!("30 runs: at most {max_holders} permits held, {max_running} runs running");
    assert!(max_holders <= 10, "{max_holders} permits held at once");
    assert!(max_running <= 10, "{max_running} runs running at once");
    assert!(
        max_holders >= 2,
        "the runs never overlapped: nothing was tested"
    );
}

/// Runs `pipeline-def ...` with `input` on stdin.
fn pipeline_def(redis: &RedisServer, args: &[&str], input: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(bin())
        .arg("--redis-url")
        .arg(redis.url())
        .args(["--prefix", "t", "pipeline-def"])
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn the_stored_definition_and_strategy_drive_runs() {
    let redis = RedisServer::start();
    migrate(&redis);
    let dir = tempfile::tempdir().unwrap();
    // the default: the seed's four stages
    let shown: Value =
        serde_json::from_str(&plain(&redis, &["pipeline-def", "show", "--json"])).unwrap();
    let names: Vec<&str> = shown["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["planner", "trainer", "check_debug", "publisher"]);
    assert_eq!(shown["strategy"]["max_retries"], 5);

    // an invalid document is refused with every problem named, and nothing is stored
    let mut bad = shown.clone();
    bad["stages"].as_array_mut().unwrap().remove(0);
    bad["strategy"]["stall_threshold"] = 0.into();
    let out = pipeline_def(&redis, &["set", "-"], &bad.to_string());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "\"planner\" (planner) may not be removed",
        "stall_threshold: 0",
    ] {
        assert!(err.contains(needle), "{needle} not in {err}");
    }
    let again: Value =
        serde_json::from_str(&plain(&redis, &["pipeline-def", "show", "--json"])).unwrap();
    assert_eq!(again, shown);

    // the trainer retries twice at its own temperatures
    let mut def = shown.clone();
    def["strategy"]["per_stage_overrides"] = serde_json::json!({
        "trainer": {"max_retries": 2, "base_temperature": 0.3, "temperature_step": 0.2}
    });
    let out = pipeline_def(&redis, &["set", "-"], &def.to_string());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // bars too short to train on: a recoverable failure, retried, then the run fails
    let short = dir.path().join("short");
    std::fs::create_dir_all(&short).unwrap();
    let bars = std::fs::read_to_string(data_dir().join("BTC_5m.csv")).unwrap();
    let head: Vec<&str> = bars.lines().take(40).collect();
    std::fs::write(short.join("BTC_5m.csv"), head.join("\n") + "\n").unwrap();
    let mut args = vec![
        "pipeline",
        "--max-experiments",
        "1",
        "--rounds",
        "1",
        "--json",
    ];
    args.extend_from_slice(TINY);
    // a run that fails: its JSON summary
    let failed_run = |data: &std::path::Path| -> Value {
        let out = cli_with_data(&redis, &args, dir.path(), data);
        assert!(!out.status.success());
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap()
    };
    let summary = failed_run(&short);
    let err = summary["error"].as_str().unwrap();
    assert!(
        err.contains("stage trainer failed after 2 attempt(s) (retries exhausted)"),
        "{summary}"
    );
    let trains: Vec<&Value> = summary["stages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["stage"] == "train")
        .collect();
    assert_eq!(trains.len(), 2, "{summary}");
    let temps: Vec<f64> = trains
        .iter()
        .map(|s| s["temperature"].as_f64().unwrap())
        .collect();
    assert!(
        (temps[0] - 0.3).abs() < 1e-9 && (temps[1] - 0.5).abs() < 1e-9,
        "{temps:?}"
    );
    assert_eq!(trains[1]["attempt"], 1);

    // missing data is not recoverable: one attempt, whatever the strategy says
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let summary = failed_run(&empty);
    assert!(
        summary["error"]
            .as_str()
            .unwrap()
            .contains("after 1 attempt(s) (not recoverable)"),
        "{summary}"
    );

    // reset: the default again
    let out = pipeline_def(&redis, &["reset"], "");
    assert!(out.status.success());
    let back: Value =
        serde_json::from_str(&plain(&redis, &["pipeline-def", "show", "--json"])).unwrap();
    assert_eq!(back, shown);
}

#[test]
fn a_cancelled_run_gives_its_permit_back_at_once() {
    let redis = RedisServer::start();
    migrate(&redis);
    let dir = tempfile::tempdir().unwrap();
    // long enough a training stage to be caught holding the permit
    let id = enqueue_tiny_run(&redis, dir.path(), &["--steps-per-epoch", "400"]);
    let mut conn = redis.conn();
    let holders = "{t}:sem:pipeline:holders";
    let held = |conn: &mut redis::Connection| -> Option<f64> {
        redis::cmd("ZSCORE")
            .arg(holders)
            .arg(&id)
            .query(conn)
            .unwrap()
    };
    let mut worker = worker_in(
        &redis,
        dir.path(),
        &["--roles", "all", "--concurrency", "2"],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while held(&mut conn).is_none() {
        assert!(Instant::now() < deadline, "the run never took a permit");
        std::thread::sleep(Duration::from_millis(20));
    }
    // the worker dies mid-run: nothing will release the permit but the cancel
    worker.kill().unwrap();
    worker.wait().unwrap();
    assert!(held(&mut conn).is_some());
    let said = plain(&redis, &["runs", "cancel", &id]);
    assert!(said.contains("cancelled"), "{said}");
    assert_eq!(held(&mut conn), None, "the permit is back at once");
    let fence: Option<String> = redis::cmd("HGET")
        .arg("{t}:sem:pipeline:fences")
        .arg(&id)
        .query(&mut conn)
        .unwrap();
    assert_eq!(fence, None);
    assert_eq!(run_state(&redis, &id)["state"], "cancelled");
}

#[test]
fn a_waiting_stage_job_keeps_its_runs_permit_and_a_cancelled_one_fails_the_run() {
    let redis = RedisServer::start();
    migrate(&redis);
    let dir = tempfile::tempdir().unwrap();
    let id = enqueue_tiny_run(&redis, dir.path(), &[]);
    let mut conn = redis.conn();
    let field = |conn: &mut redis::Connection, f: &str| run_field(conn, &id, f);
    // the permit's lease left, by Redis's clock (None: not held)
    let lease_left_ms = |conn: &mut redis::Connection| -> Option<i64> {
        let exp: Option<f64> = redis::cmd("ZSCORE")
            .arg("{t}:sem:pipeline:holders")
            .arg(&id)
            .query(conn)
            .unwrap();
        let (s, us): (i64, i64) = redis::cmd("TIME").query(conn).unwrap();
        exp.map(|e| e as i64 - (s * 1000 + us / 1000))
    };
    // a worker for the plan stage only, with a 2 s permit lease: after the plan, the train job
    // waits in its stream with no worker to take it
    let lease = [("SYNTH_CITY_RUN_LEASE_MS", "2000")];
    let mut worker = worker_env_in(
        &redis,
        dir.path(),
        &["--roles", "plan", "--concurrency", "1"],
        &lease,
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while field(&mut conn, "stage").as_deref() != Some("train") {
        assert!(Instant::now() < deadline, "the plan stage never finished");
        std::thread::sleep(Duration::from_millis(50));
    }
    // three leases later the run still holds its permit, kept alive while its job waits
    std::thread::sleep(Duration::from_secs(6));
    let left = lease_left_ms(&mut conn);
    assert!(
        matches!(left, Some(ms) if ms > 0),
        "the waiting run lost its permit: {left:?}"
    );
    assert_eq!(field(&mut conn, "state").as_deref(), Some("running"));
    // the train job is cancelled behind the run's back: it can never advance the run, so the
    // keeper fails the run, which frees the permit
    let job = field(&mut conn, "job").unwrap();
    let said = plain(&redis, &["jobs", "cancel", &job]);
    assert!(said.contains("cancelled"), "{said}");
    let deadline = Instant::now() + Duration::from_secs(15);
    while field(&mut conn, "state").as_deref() != Some("failed") {
        assert!(Instant::now() < deadline, "the stuck run was never failed");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(lease_left_ms(&mut conn), None, "the permit is back");
    let run = run_state(&redis, &id);
    let error = run["summary"]["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        error.contains(&job) && error.contains("cancelled"),
        "the summary names the job and why: {run}"
    );
    worker.kill().unwrap();
    worker.wait().unwrap();
}

/// A `run` payload with the tiny budget (the directories are the workers' own).
fn run_payload(extra: Value) -> String {
    let mut run = serde_json::json!({"max_experiments": 1, "rounds": 1, "epochs": 1,
        "steps_per_epoch": 2, "d_model": 8, "seq_len": 16, "batch_size": 2, "n_paths": 4,
        "eval_windows": 2, "eval_paths": 50, "agents": "builtin"});
    if let (Some(r), Value::Object(e)) = (run.as_object_mut(), extra) {
        r.extend(e);
    }
    serde_json::json!({ "run": run }).to_string()
}

#[test]
fn a_run_job_starts_one_run_and_a_schedule_starts_one_per_fire() {
    let redis = RedisServer::start();
    migrate(&redis);
    let dir = tempfile::tempdir().unwrap();
    let mut worker = worker_in(
        &redis,
        dir.path(),
        &["--roles", "all", "--concurrency", "2"],
    );
    // a `run` job: its result names the run, which goes through every stage
    let payload = run_payload(serde_json::json!({}));
    let out = plain(
        &redis,
        &[
            "jobs",
            "enqueue",
            "--type",
            "run",
            "--payload",
            &payload,
            "--json",
        ],
    );
    let job = serde_json::from_str::<Value>(&out).unwrap()[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(120);
    let run_id = loop {
        let st: Value =
            serde_json::from_str(&plain(&redis, &["jobs", "status", &job, "--json"])).unwrap();
        if st["state"] == "completed" {
            assert_eq!(st["result"]["created"], true, "{st}");
            break st["result"]["run_id"].as_str().unwrap().to_string();
        }
        assert!(
            Instant::now() < deadline,
            "the run job never finished: {st}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let state = run_state(&redis, &run_id)["state"]
            .as_str()
            .unwrap()
            .to_string();
        if state == "succeeded" || state == "failed" {
            break;
        }
        assert!(Instant::now() < deadline, "run {run_id} is still {state}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let summary = run_state(&redis, &run_id)["summary"].clone();
    assert!(
        summary["experiments"]
            .as_array()
            .is_some_and(|e| !e.is_empty()),
        "{summary}"
    );
    // a payload the run options refuse is dead-lettered with the reason; an unknown field is
    // refused when it is enqueued,
    let bad = run_payload(serde_json::json!({"timeframe": "7m"}));
    plain(
        &redis,
        &["jobs", "enqueue", "--type", "run", "--payload", &bad],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let dead = plain(&redis, &["jobs", "dlq", "list", "--json"]);
        if dead.contains("7m") {
            break;
        }
        assert!(Instant::now() < deadline, "not dead-lettered: {dead}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // so is a directory, which is no longer a payload's to name: the refusal says where a
    // worker's directories come from now
    for (payload, needles) in [
        (run_payload(serde_json::json!({"bogus": 1})), &["bogus"][..]),
        (
            serde_json::json!({"run": {}, "store_dir": "/srv/store"}).to_string(),
            &["`store_dir` is no longer taken", "--store"][..],
        ),
    ] {
        let out = Command::new(bin())
            .args(["--redis-url", &redis.url(), "--prefix", "t"])
            .args(["jobs", "enqueue", "--type", "run", "--payload", &payload])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(needles.iter().all(|n| err.contains(n)), "{err}");
    }
    // a schedule every 2 s, with two schedulers: one run per fire
    let every = run_payload(serde_json::json!({"max_experiments": 1}));
    plain(
        &redis,
        &[
            "schedule",
            "add",
            "--name",
            "research",
            "--cron",
            "*/2 * * * * *",
            "--type",
            "run",
            "--payload",
            &every,
        ],
    );
    let schedulers: Vec<_> = (0..2)
        .map(|_| {
            Command::new(bin())
                .args(["--redis-url", &redis.url(), "--prefix", "t", "scheduler"])
                .env("RUST_LOG", "warn")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_secs(5));
    plain(&redis, &["schedule", "remove", "research"]);
    for mut s in schedulers {
        s.kill().unwrap();
        s.wait().unwrap();
    }
    // every fired `run` job finishes, each with its own run
    let deadline = Instant::now() + Duration::from_secs(60);
    let runs = loop {
        let listed: Value =
            serde_json::from_str(&plain(&redis, &["runs", "list", "--json"])).unwrap();
        let stats: Value =
            serde_json::from_str(&plain(&redis, &["jobs", "stats", "--json"])).unwrap();
        let fired = stats
            .as_array()
            .and_then(|a| a.iter().find(|t| t["type"] == "run"))
            .map(|t| t["enqueued"].as_u64().unwrap_or(0))
            .unwrap_or(0);
        let runs = listed.as_array().unwrap().len() as u64;
        // the first run, the dead-lettered one (no run), then one run per fire
        if fired >= 4 && runs == fired - 1 {
            break runs;
        }
        assert!(
            Instant::now() < deadline,
            "{fired} run jobs enqueued, {runs} runs: {listed}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(runs >= 3, "the schedule fired at least twice in 5 s");
    worker.kill().unwrap();
    worker.wait().unwrap();
}

/// A cancelled run stops its training within a step: the train job is cancelled at once and
/// its running child (`train-one`) ends `cancelled` in seconds, not when its long budget would have run out, and the worker is free again.
#[test]
fn a_cancelled_run_stops_its_training() {
    let redis = RedisServer::start();
    migrate(&redis);
    let dir = tempfile::tempdir().unwrap();
    // one experiment of 40 epochs x 50,000 steps: even if early stopping ends it after a few
    // epochs (a tiny model's validation stops improving at once), minutes of training; with
    // 500 steps an epoch, it once finished by itself before the cancel reached it (CI, loaded)
    let id = enqueue_tiny_run(
        &redis,
        dir.path(),
        &["--epochs", "40", "--steps-per-epoch", "50000"],
    );
    let mut worker = worker_in(
        &redis,
        dir.path(),
        &["--roles", "all", "--concurrency", "2"],
    );
    let mut conn = redis.conn();
    let field = |conn: &mut redis::Connection, f: &str| run_field(conn, &id, f);
    let job_state = |job: &str| -> String {
        let v: Value =
            serde_json::from_str(&plain(&redis, &["jobs", "status", job, "--json"])).unwrap();
        v["state"].as_str().unwrap_or_default().to_string()
    };
    // the train job waits for its one child, which trains
    let deadline = Instant::now() + Duration::from_secs(90);
    let (parent, job) = loop {
        if field(&mut conn, "stage").as_deref() == Some("train") {
            let parent = field(&mut conn, "job").unwrap();
            let job = format!("{parent}-r0-e0");
            if job_state(&parent) == "waiting-children" && job_state(&job) == "active" {
                break (parent, job);
            }
        }
        assert!(Instant::now() < deadline, "training never started");
        std::thread::sleep(Duration::from_millis(100));
    };
    std::thread::sleep(Duration::from_secs(2));
    let said = plain(&redis, &["runs", "cancel", &id]);
    assert!(said.contains("cancelled"), "{said}");
    assert_eq!(job_state(&parent), "cancelled");
    let cancelled_at = Instant::now();
    loop {
        let state = job_state(&job);
        if state == "cancelled" {
            break;
        }
        assert!(
            cancelled_at.elapsed() < Duration::from_secs(20),
            "the train-one job {job} is still {state} 20 s after its run was cancelled"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(run_state(&redis, &id)["state"], "cancelled");
    worker.kill().unwrap();
    worker.wait().unwrap();
}
