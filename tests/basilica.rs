//! GPU trainer pods on Basilica, end to end with real processes: a real Redis, real
//! `synth-city fleet` processes (the autoscaler), and pods that are real `synth-city worker`
//! processes joining through Redis, started by the one stand-in, a local server speaking the
//! Basilica API as our client uses it (tests/common/basilica.rs).
//!
//! Most backlogs are `sleep` jobs and the pods' workers run `sleep` (`--job-types sleep
//! --pod-roles sleep`): what is under test there is the fleet (queue depth to pods, budgets,
//! idle deletion, leases, the create's retry), which is the same whatever the jobs train. One
//! test has a pod that trains: tiny `experiment` jobs on a dataset in the store, run by a pod's
//! `trainer` worker with no bars of its own, and their spend charged to their pipeline run.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::basilica::{offering, Basilica};
use common::{cli_command, stdout_of, Killed, RedisServer};
use serde_json::Value;

fn migrate(redis: &RedisServer) {
    stdout_of(cli_command(&redis.url()).arg("migrate"));
}

/// The flags of a fleet for these tests: A4000 at $1/h allowed, $2.5/h and $10/day, 3 s idle.
const FLEET: &[&str] = &[
    "--job-types",
    "sleep",
    "--pod-roles",
    "sleep",
    "--pod-device",
    "cpu",
    "--allowed-gpu-types",
    "A4000",
    "--max-hourly-rate",
    "1.5",
    "--budget-per-hour",
    "2.5",
    "--budget-per-day",
    "10",
    "--idle-minutes",
    "0.05",
    "--startup-grace-secs",
    "60",
    "--max-pods",
    "4",
    "--tick-ms",
    "200",
    "--lease-ms",
    "1500",
    "--request-timeout-ms",
    "1000",
    "--attempts",
    "3",
];

/// A `fleet` command: [`FLEET`]'s flags, each flag in `extra` (flag, value) replacing its own.
fn fleet_command(redis: &RedisServer, b: &Basilica, sub: &[&str], extra: &[&str]) -> Command {
    let mut flags: Vec<&str> = FLEET.to_vec();
    for pair in extra.chunks(2) {
        match flags.iter().position(|f| *f == pair[0]) {
            Some(i) => flags[i + 1] = pair[1],
            None => flags.extend_from_slice(pair),
        }
    }
    let mut cmd = cli_command(&redis.url());
    cmd.arg("fleet")
        .args(sub)
        .args(flags)
        .env("BASILICA_API_URL", &b.url)
        .env("BASILICA_API_TOKEN", &b.token)
        .env_remove("BASILICA_ALLOWED_GPU_TYPES")
        .env_remove("BASILICA_MAX_HOURLY_RATE");
    cmd
}

fn spawn_fleet(redis: &RedisServer, b: &Basilica, extra: &[&str]) -> Killed {
    let mut cmd = fleet_command(redis, b, &["run"], extra);
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    Killed(cmd.spawn().unwrap())
}

fn status(redis: &RedisServer) -> Value {
    let out = stdout_of(
        cli_command(&redis.url())
            .args(["fleet", "status", "--json"])
            .env("RUST_LOG", "error"),
    );
    serde_json::from_str(out.trim()).unwrap()
}

fn until(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn enqueue_sleeps(redis: &RedisServer, n: usize, ms: u64) -> Vec<String> {
    let out = stdout_of(cli_command(&redis.url()).args([
        "jobs",
        "enqueue",
        "--type",
        "sleep",
        "--payload",
        &format!("{{\"ms\": {ms}}}"),
        "--count",
        &n.to_string(),
        "--json",
    ]));
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    let ids: Vec<String> = v
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|j| j["id"].as_str().map(str::to_string))
                .collect()
        })
        .or_else(|| v["id"].as_str().map(|s| vec![s.to_string()]))
        .unwrap_or_default();
    assert_eq!(ids.len(), n, "{out}");
    ids
}

/// A bridge (prefix `t`, operator key `sekret`) on a free port; its base URL.
fn bridge(redis: &RedisServer) -> (Killed, String) {
    let port = common::free_port();
    let child = cli_command(&redis.url())
        .args(["bridge", "--port", &port.to_string()])
        .env("BRIDGE_API_KEY", "sekret")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    common::wait_listening(port, 20, "the bridge");
    (Killed(child), format!("http://127.0.0.1:{port}"))
}

/// `GET path` on the bridge as bot `b1`, through `synth-city client call`.
fn get(url: &str, path: &str) -> Value {
    let out = stdout_of(
        Command::new(common::bin())
            .args(["client", "call", "GET", path])
            .env("SYNTH_BRIDGE_URL", url)
            .env("BRIDGE_API_KEY", "sekret")
            .env("SYNTH_BOT_ID", "b1"),
    );
    serde_json::from_str(out.trim()).unwrap()
}

fn job(redis: &RedisServer, id: &str) -> Value {
    let out = stdout_of(cli_command(&redis.url()).args(["jobs", "status", id, "--json"]));
    serde_json::from_str(out.trim()).unwrap()
}

/// `fleet rent --gpu A4000`, which must succeed; its output.
fn rent_a4000(redis: &RedisServer, b: &Basilica) -> String {
    let out = stdout_of(&mut fleet_command(
        redis,
        b,
        &["rent", "--gpu", "A4000"],
        &[],
    ));
    assert!(out.contains("rented sc-"), "{out}");
    out
}

fn a4000() -> Vec<Value> {
    vec![
        offering("o-a4000", "A4000", "1.00"),
        offering("o-h100", "H100", "3.00"),
    ]
}

#[test]
fn a_backlog_rents_pods_up_to_the_budget_the_jobs_finish_on_them_and_idle_pods_go() {
    let redis = RedisServer::start();
    migrate(&redis);
    let b = Basilica::start(a4000(), 100.0);
    let ids = enqueue_sleeps(&redis, 6, 1500);
    let t0 = Instant::now();
    let _fleet = spawn_fleet(&redis, &b, &[]);

    // 6 jobs want 6 pods; $2.5/h at $1/h allows 2
    until(30, "two pods", || b.live().len() == 2);
    let pods = b.live();
    let first_running = {
        until(30, "a pod running", || {
            pods.iter()
                .any(|p| b.phase(p).as_deref() == Some("Running"))
        });
        t0.elapsed()
    };
    let body = b.body(&pods[0]).unwrap();
    assert_eq!(body["resources"]["gpus"]["model"][0], "A4000", "{body}");
    assert_eq!(body["healthCheck"]["liveness"]["path"], "/health", "{body}");
    assert_eq!(body["env"]["SYNTH_CITY_PREFIX"], "t", "{body}");
    let s = status(&redis);
    let blocked = s["status"]["blocked"].to_string();
    assert!(blocked.contains("hourly budget"), "{s}");
    let text = stdout_of(cli_command(&redis.url()).args(["fleet", "status"]));
    assert!(text.contains(&pods[0]) && text.contains(&pods[1]), "{text}");
    assert!(text.contains("held back: hourly budget"), "{text}");
    // bots read the same over the bridge
    let (_bridge, url) = bridge(&redis);
    let p = get(&url, "/fleet/pods");
    assert_eq!(p["pods"].as_array().map(Vec::len), Some(2), "{p}");
    assert!(p["blocked"].to_string().contains("hourly budget"), "{p}");
    assert_eq!(p["leader"], s["leader"], "{p}");
    let dash = get(&url, "/dash/snapshot");
    assert_eq!(
        dash["fleet"]["pods"].as_array().map(Vec::len),
        Some(2),
        "{dash}"
    );
    assert_eq!(dash["fleet"]["budget_per_hour"], 2.5, "{dash}");

    // every job finishes, on the pods' workers
    until(60, "the jobs complete", || {
        ids.iter().all(|id| job(&redis, id)["state"] == "completed")
    });
    for id in &ids {
        let w = job(&redis, id)["worker"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            pods.iter().any(|p| w.starts_with(&format!("{p}-"))),
            "job {id} ran on {w}, not a pod's worker ({pods:?})"
        );
    }
    assert_eq!(b.peak_live(), 2, "never more pods than the budget allows");
    assert_eq!(b.created(), 2);

    // idle for 3 s: both deleted (scale to zero), their spend recorded
    until(30, "idle pods deleted", || b.live().is_empty());
    let mut deleted = b.deleted();
    deleted.sort();
    let mut rented = pods.clone();
    rented.sort();
    assert_eq!(deleted, rented);
    until(10, "a status without pods", || {
        status(&redis)["status"]["pods"]
            .as_array()
            .is_some_and(|p| p.is_empty())
    });
    let s = status(&redis);
    let spent = s["status"]["spent_today"].as_f64().unwrap();
    // two pods at $1/h for some seconds each
    assert!(spent > 0.0 && spent < 0.1, "{s}");
    let mut c = redis.conn();
    let per_pod: std::collections::HashMap<String, f64> = redis::cmd("HGETALL")
        .arg("{t}:fleet:spend:pods")
        .query(&mut c)
        .unwrap();
    assert_eq!(per_pod.len(), 2, "{per_pod:?}");
    let sum: f64 = per_pod.values().sum();
    assert!(
        (sum - spent).abs() < 1e-6,
        "per pod {sum} vs per day {spent}"
    );
    eprintln!("backlog to first pod running: {:?}", first_running);
}

#[test]
fn a_pod_killed_mid_job_is_replaced_and_its_job_finishes_elsewhere() {
    let redis = RedisServer::start();
    migrate(&redis);
    let b = Basilica::start(a4000(), 100.0);
    let ids = enqueue_sleeps(&redis, 4, 4000);
    let _fleet = spawn_fleet(
        &redis,
        &b,
        &["--pod-lease-ms", "1500", "--pod-heartbeat-ms", "300"],
    );
    until(30, "two pods", || b.live().len() == 2);
    let pods = b.live();
    // a job running on the first pod
    let mut victim = None;
    until(30, "a job on the first pod", || {
        victim = ids.iter().find(|id| {
            let j = job(&redis, id);
            j["state"] == "active"
                && j["worker"]
                    .as_str()
                    .is_some_and(|w| w.starts_with(&format!("{}-", pods[0])))
        });
        victim.is_some()
    });
    let victim = victim.unwrap().clone();
    b.kill_pod(&pods[0]);

    // the failed pod is deleted and replaced within the budget
    until(30, "a replacement pod", || {
        b.deleted().contains(&pods[0]) && b.created() == 3
    });
    until(60, "every job completes", || {
        ids.iter().all(|id| job(&redis, id)["state"] == "completed")
    });
    let w = job(&redis, &victim)["worker"].as_str().unwrap().to_string();
    assert!(!w.starts_with(&format!("{}-", pods[0])), "{w}");
    assert!(w.starts_with("sc-"), "finished on a pod: {w}");
    assert_eq!(b.peak_live(), 2, "the replacement came after the delete");
}

#[test]
fn a_create_that_fails_or_times_out_rents_exactly_one_pod() {
    let redis = RedisServer::start();
    migrate(&redis);
    let b = Basilica::start(a4000(), 100.0);

    // 500, then success: one pod
    b.fail_next_creates(1);
    let out = rent_a4000(&redis, &b);
    assert_eq!(b.create_requests(), 2);
    assert_eq!(b.live().len(), 1);
    let first = b.live()[0].clone();
    assert!(out.contains(&first), "{out}");

    // the create is carried out but answered after the client's 1 s: looked up, not re-sent
    b.delay_next_create(Duration::from_secs(3));
    rent_a4000(&redis, &b);
    assert_eq!(b.create_requests(), 3, "one request for the slow create");
    assert_eq!(b.live().len(), 2);
    assert_eq!(b.created(), 2);

    // the manual pods are pinned and listed; release deletes one
    let out = stdout_of(&mut fleet_command(&redis, &b, &["release", &first], &[]));
    assert!(out.contains(&format!("released {first}")), "{out}");
    assert_eq!(b.live().len(), 1);
    assert!(!b.live().contains(&first));

    // a third would pass $2.5/h
    let out = fleet_command(&redis, &b, &["rent", "--gpu", "A4000", "--count", "2"], &[])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("hourly budget"), "{err}");
    assert_eq!(b.live().len(), 2, "the first of the two fit");
}

#[test]
fn only_the_leader_rents_and_a_standby_takes_over_without_renting_twice() {
    let redis = RedisServer::start();
    migrate(&redis);
    let b = Basilica::start(a4000(), 100.0);
    // pods that run `noop` never take the `sleep` backlog: it stays, and so do they
    enqueue_sleeps(&redis, 5, 1000);
    let metrics = common::free_port();
    let addr = format!("127.0.0.1:{metrics}");
    let mut a = spawn_fleet(
        &redis,
        &b,
        &["--pod-roles", "noop", "--metrics-addr", &addr],
    );
    until(30, "two pods", || b.live().len() == 2);
    // its gauges: leading, two pods, $2/h, two more wanted (5 jobs, at most 4 pods)
    until(10, "the gauges", || {
        let Some((_, m)) = common::basilica::http_get(metrics, "/metrics") else {
            return false;
        };
        let pods: f64 = m
            .lines()
            .filter(|l| l.starts_with("sc_fleet_pods{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        m.contains("sc_fleet_leader 1")
            && pods == 2.0
            && m.contains("sc_fleet_rate_dollars_per_hour 2")
            && m.contains("sc_fleet_wanted_pods 2")
    });
    let leader_a = status(&redis)["leader"].as_str().unwrap().to_string();
    let _standby = spawn_fleet(&redis, &b, &["--pod-roles", "noop"]);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(status(&redis)["leader"], leader_a.as_str());
    assert_eq!(b.created(), 2);

    // the leader dies without resigning: the standby takes over within a lease
    let pid = a.0.id();
    let _ = a.0.kill();
    let _ = a.0.wait();
    let t = Instant::now();
    until(10, "a new leader", || {
        let s = status(&redis);
        s["leader"].as_str().is_some_and(|l| l != leader_a) && s["status"]["leader"] == s["leader"]
    });
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        b.created(),
        2,
        "nothing rented twice (old leader pid {pid})"
    );
    assert_eq!(b.live().len(), 2);
    let s = status(&redis);
    assert_eq!(s["status"]["pods"].as_array().unwrap().len(), 2, "{s}");
}

#[test]
fn a_low_balance_or_an_unoffered_gpu_rents_nothing_and_says_why() {
    let redis = RedisServer::start();
    migrate(&redis);
    let b = Basilica::start(a4000(), 0.40);
    enqueue_sleeps(&redis, 2, 1000);
    {
        let _f = spawn_fleet(&redis, &b, &[]);
        until(20, "a status naming the balance", || {
            status(&redis)["status"]["blocked"]
                .to_string()
                .contains("balance too low")
        });
    }
    assert_eq!(b.created(), 0);

    b.set_balance(100.0);
    {
        let _f = spawn_fleet(&redis, &b, &["--allowed-gpu-types", "B200"]);
        until(20, "a status naming the GPU type", || {
            let s = status(&redis)["status"]["blocked"].to_string();
            s.contains("GPU type not offered") && s.contains("B200")
        });
    }
    assert_eq!(b.created(), 0);
    let out = fleet_command(
        &redis,
        &b,
        &["rent", "--gpu", "B200"],
        &["--allowed-gpu-types", "A4000,B200"],
    )
    .output()
    .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("GPU type not offered") && err.contains("1xA4000"),
        "{err}"
    );
    // a manual rental keeps to the allowed types too
    let out = fleet_command(
        &redis,
        &b,
        &["rent", "--gpu", "A4000"],
        &["--allowed-gpu-types", "B200"],
    )
    .output()
    .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("GPU type not allowed: A4000 is not in BASILICA_ALLOWED_GPU_TYPES (B200)"),
        "{err}"
    );
    assert_eq!(b.create_requests(), 0);

    // a 4xx is not retried and names what was wrong
    let out = fleet_command(&redis, &b, &["rent", "--gpu", "A4000"], &[])
        .env("BASILICA_API_TOKEN", "wrong")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("HTTP 401") && err.contains("BASILICA_API_TOKEN"),
        "{err}"
    );
    assert!(!err.contains("retrying"), "a 4xx is not retried: {err}");
}

/// The pod's side: a worker with `--health-port` answers `GET /health` 200 while it serves;
/// on SIGTERM it drains (503 on the probe), and a job still running when the grace ends goes
/// back to the queue without using an attempt.
#[test]
fn a_pods_worker_answers_its_probe_and_drains_on_sigterm() {
    let redis = RedisServer::start();
    migrate(&redis);
    let port = common::free_port();
    let mut w = Killed(common::spawn_worker(
        &redis.url(),
        &[
            "--roles",
            "sleep",
            "--health-port",
            &port.to_string(),
            "--grace-secs",
            "2",
        ],
    ));
    until(20, "the probe answers 200", || {
        common::basilica::http_get(port, "/health")
            .is_some_and(|(s, b)| s.contains(" 200") && b.contains("\"ok\""))
    });
    let id = enqueue_sleeps(&redis, 1, 30_000).remove(0);
    until(20, "the job runs", || job(&redis, &id)["state"] == "active");
    let attempt = job(&redis, &id)["attempt"].clone();

    // SAFETY: signalling a child this test spawned and has not reaped.
    unsafe {
        libc::kill(w.0.id() as i32, libc::SIGTERM);
    }
    until(5, "the probe says draining", || {
        common::basilica::http_get(port, "/health")
            .is_some_and(|(s, b)| s.contains(" 503") && b.contains("draining"))
    });
    until(20, "the worker exits", || {
        matches!(w.0.try_wait(), Ok(Some(_)))
    });
    let j = job(&redis, &id);
    assert_eq!(j["state"], "waiting", "handed back: {j}");
    assert_eq!(j["attempt"], attempt, "no attempt used: {j}");
}

/// In a deployment with ACL users over TLS (docs/ops.md): the fleet runs as the `operator`
/// user, its pods' workers as the `worker` user (`--pod-redis-url`, the CA passed with
/// `--pod-env`), a backlog gets a pod whose worker finishes it, and Redis refuses nothing to
/// anyone (its ACL LOG stays empty: the fleet's scripts are in the rules).
#[test]
fn over_tls_the_fleet_runs_as_the_operator_and_its_pods_as_workers() {
    use common::tls::{acl_file, assert_nothing_refused, ok, sc, TlsRedis};
    let tmp = tempfile::tempdir().unwrap();
    let redis = TlsRedis::start(tmp.path(), &acl_file("t", &[]), false);
    let (op, ca) = (redis.url("operator"), redis.ca.clone());
    ok(sc(&op, &ca).arg("migrate"));
    let b = Basilica::start(a4000(), 100.0);
    let id = common::tls::enqueue_sleep(&op, &ca, 200);
    let mut flags: Vec<String> = FLEET.iter().map(|s| s.to_string()).collect();
    flags.extend([
        "--pod-redis-url".to_string(),
        redis.url("worker"),
        "--pod-env".to_string(),
        format!("SYNTH_REDIS_CA={}", ca.display()),
    ]);
    let mut cmd = sc(&op, &ca);
    cmd.args(["fleet", "run"])
        .args(&flags)
        .env("BASILICA_API_URL", &b.url)
        .env("BASILICA_API_TOKEN", &b.token)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _fleet = Killed(cmd.spawn().unwrap());
    until(60, "the job completes on a pod", || {
        let j: Value =
            serde_json::from_str(&ok(sc(&op, &ca).args(["jobs", "status", &id, "--json"])))
                .unwrap();
        j["state"] == "completed" && j["worker"].as_str().is_some_and(|w| w.starts_with("sc-"))
    });
    let pod = b.live().first().cloned().expect("a pod");
    assert!(
        b.body(&pod).unwrap()["env"]["REDIS_URL"]
            .as_str()
            .unwrap()
            .starts_with("rediss://worker:"),
        "the pod is the worker user"
    );
    until(30, "the idle pod deleted", || b.live().is_empty());
    assert_nothing_refused(&redis, &redis.tls());
}

/// A tiny `experiment` spec (common's) on the BTC 5m bars of dataset `ds`.
fn tiny_experiment(ds: &str) -> Value {
    let mut s = common::tiny_experiment_spec();
    s["data"]["dataset"] = serde_json::json!(ds);
    s
}

/// A pod that trains: the operator publishes bars to the store as a dataset, a backlog of
/// tiny `experiment` jobs on it rents a pod whose worker (`--pod-roles trainer`, in a directory
/// of its own, sharing only Redis and the store: no bars of its own) reads the dataset from the
/// store, trains, puts the checkpoint in the store, and the idle pod is deleted after.
#[test]
fn a_backlog_of_experiments_trains_on_a_pod_that_reads_its_bars_from_the_store() {
    let redis = RedisServer::start();
    migrate(&redis);
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let sample = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/sample");
    let ds = stdout_of(
        cli_command(&redis.url())
            .args(["data", "publish", "--assets", "BTC", "--timeframe", "5m"])
            .arg("--data-dir")
            .arg(&sample)
            .arg("--store")
            .arg(&store)
            .current_dir(tmp.path()),
    )
    .trim()
    .to_string();
    assert!(ds.starts_with("ds-"), "{ds}");
    let spec = tiny_experiment(&ds);
    // the first belongs to a pipeline run (its envelope's run id), the second to none
    let ids: Vec<String> = (0..2)
        .map(|i| {
            let mut spec = spec.clone();
            if i == 0 {
                // long enough (a few hundred steps) for the fleet's ticks to see it held
                spec["training"]["steps_per_epoch"] = serde_json::json!(1000);
            }
            let payload = serde_json::json!({"experiment_id": format!("e{i}"), "spec": spec});
            let mut cmd = cli_command(&redis.url());
            cmd.args([
                "jobs",
                "enqueue",
                "--type",
                "experiment",
                "--payload",
                &payload.to_string(),
                "--json",
            ]);
            if i == 0 {
                cmd.args(["--run-id", "run-a"]);
            }
            let out = stdout_of(&mut cmd);
            let v: Value = serde_json::from_str(out.trim()).unwrap();
            v[0]["id"].as_str().expect(&out).to_string()
        })
        .collect();

    let b = Basilica::start(a4000(), 100.0);
    let store_env = format!("SYNTH_STORE_DIR={}", store.display());
    let _fleet = spawn_fleet(
        &redis,
        &b,
        &[
            "--job-types",
            "experiment",
            "--pod-roles",
            "trainer",
            "--max-pods",
            "1",
            "--pod-env",
            &store_env,
        ],
    );
    until(30, "a pod", || b.live().len() == 1);
    let pod = b.live()[0].clone();
    until(60, "the experiments complete", || {
        ids.iter().all(|id| {
            let j = job(&redis, id);
            assert_ne!(j["state"], "dead", "{j}\npod log:\n{}", b.log(&pod));
            j["state"] == "completed"
        })
    });
    for id in &ids {
        let j = job(&redis, id);
        let w = j["worker"].as_str().unwrap_or_default();
        assert!(w.starts_with(&format!("{pod}-")), "ran on {w}, not {pod}");
        let record = &j["result"]["record"];
        assert_eq!(record["status"], "ok", "{j}");
        assert_eq!(record["spec"]["data"]["dataset"], ds.as_str(), "{j}");
        assert!(record["crps"].as_f64().is_some_and(f64::is_finite), "{j}");
        // the checkpoint is in the shared store, named by its artifact
        let key = record["artifact"]["key"].as_str().expect("an artifact");
        assert!(store.join(key).is_file(), "{key} in the store");
    }
    // the pod had no bars of its own: what it trained on came from the store
    let pod_dir = b.root.path().join(&pod);
    assert!(pod_dir.is_dir());
    assert!(
        !pod_dir.join("data").exists(),
        "the pod has no data directory"
    );

    until(30, "the idle pod deleted", || b.live().is_empty());
    assert_eq!(b.deleted(), vec![pod.clone()]);
    assert_eq!(b.created(), 1);

    // spend per run: run-a was charged its share of the pod while the pod held its job, and
    // no more than the pod cost; the job outside a run charged no run
    let spend = status(&redis)["spend"].clone();
    let per_run = spend["per_run"].as_object().expect("per_run").clone();
    assert_eq!(per_run.keys().collect::<Vec<_>>(), vec!["run-a"], "{spend}");
    let run_a = per_run["run-a"].as_f64().unwrap();
    let pod_spent = spend["per_pod"][&pod].as_f64().unwrap();
    assert!(run_a > 0.0 && run_a < pod_spent, "{spend}");
    assert_eq!(
        spend["rate_now"].to_string(),
        "0.0",
        "no pods, $0/h: {spend}"
    );
    let text = stdout_of(cli_command(&redis.url()).args(["fleet", "status"]));
    assert!(text.contains("run run-a: $"), "{text}");
    assert!(text.contains("$0.00/h now"), "{text}");
    let (_bridge, url) = bridge(&redis);
    let over_http = get(&url, "/fleet/spend");
    assert_eq!(
        over_http["per_run"]["run-a"].as_f64(),
        Some(run_a),
        "{over_http}"
    );
}
