//! Redis over TLS with per-role ACL users, against a real `redis-server` in TLS mode whose
//! CA, server and client certificates the test makes with the `openssl` CLI, and whose users
//! come from `synth-city ops redis-acl`.
//!
//! A worker, a scheduler and a bridge each log in as their own user over `rediss://`; jobs
//! enqueued by the operator (CLI), the scheduler (cron) and a bot (the bridge) finish, a bot's
//! pipeline run goes through every stage, and Redis's ACL LOG shows that nothing they sent was
//! refused. The worker user cannot FLUSHALL, EVAL or read another deployment's keys; a plain
//! `redis://` connection to the TLS port, a client trusting the wrong CA, and (with
//! `--tls-auth-clients yes`) a client without a certificate all fail, the last two with
//! messages naming the variables and files to check.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use common::tls::{acl_file, assert_nothing_refused, connect, ok, pw, run, sc, TlsRedis};
use common::{bin, free_port, read_log as read, spawn_logged as spawn};
use engine::config::RedisTls;
use serde_json::Value;

/// Waits for `id` to complete, asking as the operator.
fn wait_completed(url: &str, ca: &Path, id: &str, logs: &[&PathBuf]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s: Value =
            serde_json::from_str(&ok(sc(url, ca).args(["jobs", "status", id, "--json"]))).unwrap();
        if s["state"] == "completed" {
            return;
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = logs.iter().map(|p| read(p)).collect();
            panic!("job {id} did not complete: {s}\nlogs: {logs:#?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether Redis refused `e` for the user's ACL (NOPERM).
fn denied(e: &redis::RedisError) -> bool {
    e.to_string().contains("no permissions")
}

/// A `synth-city bridge` logged in as `bridge` on a free port (its stderr in
/// `<dir>/bridge.log`), and a bot `b1` calling it with `synth-city client`.
struct Bridge {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Bridge {
    fn start(redis: &TlsRedis, ca: &Path, dir: &Path) -> Self {
        let port = free_port();
        let log = dir.join("bridge.log");
        let mut b = sc(&redis.url("bridge"), ca);
        b.args(["bridge", "--port", &port.to_string(), "--loopback-operator"])
            .env_remove("BRIDGE_API_KEY")
            .current_dir(dir);
        Bridge {
            child: spawn(b, &log),
            port,
            log,
        }
    }

    /// `synth-city client ARGS` as bot `b1`.
    fn client(&self, args: &[&str]) -> Output {
        let mut c = Command::new(bin());
        c.args([
            "client",
            "--url",
            &format!("http://127.0.0.1:{}", self.port),
        ])
        .args(["--bot", "b1"])
        .args(args)
        .env_remove("BRIDGE_API_KEY");
        run(&mut c)
    }

    /// The JSON answer to `client ARGS`, retried while the bridge starts (up to 20 s).
    fn first_answer(&self, args: &[&str]) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = self.client(args);
            if out.status.success() {
                return serde_json::from_slice(&out.stdout).unwrap();
            }
            assert!(
                Instant::now() < deadline,
                "the bridge never answered {args:?}: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                read(&self.log)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn kill(mut c: Child) {
    let _ = c.kill();
    let _ = c.wait();
}

#[test]
fn roles_run_over_tls_and_the_acl_confines_them() {
    let t0 = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // This deployment's users, and another deployment's (prefixed names), in one file.
    let ours = acl_file("t", &[]);
    let other = acl_file("other", &["--prefixed-names", "--keep-default-user"]);
    assert!(ours.contains("user default off"), "{ours}");
    assert!(ours.contains("user worker reset on #"), "{ours}");
    assert!(
        other.contains("user other-worker ") && other.contains("~{other}:*"),
        "{other}"
    );
    let redis = TlsRedis::start(dir, &format!("{ours}{other}"), false);
    let (ca, tls) = (redis.ca.clone(), redis.tls());

    // The operator migrates and adds a schedule that fires every second.
    let op = redis.url("operator");
    ok(sc(&op, &ca).arg("migrate"));
    ok(sc(&op, &ca).args([
        "schedule",
        "add",
        "--name",
        "tick",
        "--cron",
        "* * * * * *",
        "--type",
        "noop",
    ]));

    // A worker, a scheduler and a bridge, each as its own user.
    let worker_log = dir.join("worker.log");
    let mut w = sc(&redis.url("worker"), &ca);
    w.args(["worker", "--roles", "noop,sleep", "--heartbeat-ms", "200"])
        .arg("--metrics-addr")
        .arg(format!("127.0.0.1:{}", free_port()))
        .current_dir(dir);
    let worker = spawn(w, &worker_log);
    let sched_log = dir.join("scheduler.log");
    let mut s = sc(&redis.url("scheduler"), &ca);
    s.args(["scheduler", "--period-ms", "200"]);
    let scheduler = spawn(s, &sched_log);
    let bridge = Bridge::start(&redis, &ca, dir);
    let logs = [&worker_log, &sched_log, &bridge.log];

    // A job enqueued by the operator finishes.
    let id = common::tls::enqueue_sleep(&op, &ca, 1);
    wait_completed(&op, &ca, &id, &logs);

    // A job a bot enqueues through the bridge finishes.
    let bot_job = bridge.first_answer(&["jobs", "enqueue", "--type", "noop"])["id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_completed(&op, &ca, &bot_job, &logs);
    let status = bridge.first_answer(&["jobs", "status", &bot_job]);
    assert_eq!(status["state"], "completed", "{status}");

    // The scheduler's cron fires become noop jobs that finish.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let stats: Value =
            serde_json::from_str(&ok(sc(&op, &ca).args(["jobs", "stats", "--json"]))).unwrap();
        let noop = stats
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["type"] == "noop")
            .cloned()
            .unwrap_or_default();
        // One noop came from the bot; the rest from the schedule.
        if noop["completed"].as_u64().unwrap_or(0) >= 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the schedule's jobs did not finish: {noop}\n{}",
            read(&sched_log)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The operator's chores: a dead letter listed, retried and purged, the semaphore, the
    // schedules, the pipeline definition, runs, a cancel.
    ok(sc(&op, &ca).args([
        "jobs",
        "enqueue",
        "--type",
        "sleep",
        "--payload",
        r#"{"ms":1,"fail_rate":1.0}"#,
        "--max-attempts",
        "1",
    ]));
    let deadline = Instant::now() + Duration::from_secs(20);
    while serde_json::from_str::<Value>(&ok(sc(&op, &ca).args(["jobs", "dlq", "list", "--json"])))
        .unwrap()
        .as_array()
        .is_none_or(|a| a.is_empty())
    {
        assert!(Instant::now() < deadline, "no dead letter");
        std::thread::sleep(Duration::from_millis(100));
    }
    let def = ok(sc(&op, &ca).args(["pipeline-def", "show", "--json"]));
    fs::write(dir.join("def.json"), def).unwrap();
    for args in [
        &["jobs", "dlq", "retry", "--all"][..],
        &["jobs", "dlq", "purge", "--yes"],
        &["jobs", "cancel", &id],
        &["semaphore", "set-limit", "7"],
        &["semaphore", "status", "--json"],
        &["schedule", "list", "--json"],
        &["pipeline-def", "set", "def.json"],
        &["pipeline-def", "reset"],
        &["runs", "list", "--json"],
        &["schedule", "remove", "tick"],
    ] {
        ok(sc(&op, &ca).args(args).current_dir(dir));
    }
    let workers: Value =
        serde_json::from_str(&ok(sc(&op, &ca).args(["workers", "--json"]))).unwrap();
    assert_eq!(workers.as_array().unwrap().len(), 1, "{workers}");
    // Let the worker sample its fleet gauges (every few seconds) under its ACL too.
    std::thread::sleep(Duration::from_millis(1500));
    kill(bridge.child);
    kill(scheduler);
    kill(worker);
    for log in logs {
        let text = read(log);
        assert!(
            !text.contains("no permissions"),
            "{}: {text}",
            log.display()
        );
    }
    // Redis logs every command or key an ACL refused, also those only logged at debug level
    // by our processes (the worker's gauges): none so far.
    assert_nothing_refused(&redis, &tls);

    // The worker user: its own keys yes; FLUSHALL, another deployment's keys, no.
    let mut c = connect(&redis.url("worker"), &tls).unwrap();
    let v: Option<String> = redis::cmd("HGET")
        .arg("{t}:meta")
        .arg("schema_version")
        .query(&mut c)
        .unwrap();
    assert!(v.is_some());
    let mut oc = connect(
        &format!(
            "rediss://other-operator:{}@127.0.0.1:{}/",
            pw("operator"),
            redis.port
        ),
        &tls,
    )
    .unwrap();
    let _: () = redis::cmd("SET")
        .arg("{other}:job:x")
        .arg("secret")
        .query(&mut oc)
        .unwrap();
    let e = redis::cmd("FLUSHALL").query::<()>(&mut c).unwrap_err();
    assert!(denied(&e), "{e}");
    let e = redis::cmd("GET")
        .arg("{other}:job:x")
        .query::<Option<String>>(&mut c)
        .unwrap_err();
    assert!(denied(&e), "{e}");
    let e = redis::cmd("KEYS")
        .arg("*")
        .query::<Vec<String>>(&mut c)
        .unwrap_err();
    assert!(denied(&e), "{e}");
    // The worker may not EVAL (only the queue's own scripts, by FCALL or EVALSHA) ...
    let e = redis::cmd("EVAL")
        .arg("return 1")
        .arg(0)
        .query::<i64>(&mut c)
        .unwrap_err();
    assert!(denied(&e), "{e}");
    // ... and a script reaches only the caller's keys: Redis checks each redis.call.
    let mut opc = connect(&op, &tls).unwrap();
    let e = redis::cmd("EVAL")
        .arg("return redis.call('GET', '{other}:job:x')")
        .arg(0)
        .query::<Option<String>>(&mut opc)
        .unwrap_err();
    assert!(e.to_string().contains("can't access"), "{e}");
    // Even the operator may not FLUSHALL.
    let e = redis::cmd("FLUSHALL").query::<()>(&mut opc).unwrap_err();
    assert!(denied(&e), "{e}");
    // Without a password: the default user is off.
    let mut anon = connect(&format!("rediss://127.0.0.1:{}/", redis.port), &tls).unwrap();
    let e = redis::cmd("GET")
        .arg("{t}:meta")
        .query::<()>(&mut anon)
        .unwrap_err();
    assert!(
        e.to_string().contains("NOAUTH") || e.to_string().contains("NOPERM"),
        "{e}"
    );

    // A plain redis:// connection to the TLS port gets nowhere.
    let plain = RedisTls::default()
        .client(&format!(
            "redis://worker:{}@127.0.0.1:{}/",
            pw("worker"),
            redis.port
        ))
        .unwrap();
    let r = plain
        .get_connection_with_timeout(Duration::from_secs(2))
        .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
    assert!(r.is_err(), "plain redis:// to the TLS port answered: {r:?}");

    // The wrong CA: a clear error naming the variable and the file, and no 30 s of retries.
    let other_ca = dir.join("other-ca.crt");
    let started = Instant::now();
    let out = run(sc(&redis.url("worker"), &other_ca).args(["jobs", "stats"]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("TLS") && err.contains(&format!("SYNTH_REDIS_CA={}", other_ca.display())),
        "{err}"
    );
    assert!(!err.contains(pw("worker")), "the password leaked: {err}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    // A CA file that is not there: named with its variable.
    let out = run(sc(&redis.url("worker"), &dir.join("missing.crt")).args(["jobs", "stats"]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("SYNTH_REDIS_CA=") && err.contains("missing.crt"),
        "{err}"
    );
    // TLS files with a plain URL: refused before connecting.
    let out = run(sc(&format!("redis://127.0.0.1:{}/", redis.port), &ca).args(["jobs", "stats"]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("rediss://"), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(60), "{:?}", t0.elapsed());
}

#[test]
fn mutual_tls_needs_the_client_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let redis = TlsRedis::start(dir, &acl_file("t", &["--users", "operator,worker"]), true);
    let ca = redis.ca.clone();
    let op = redis.url("operator");

    // Without a client certificate: refused, and the message says which variables to set.
    let started = Instant::now();
    let out = run(sc(&op, &ca).arg("migrate"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "migrated without a client certificate"
    );
    assert!(
        err.contains("SYNTH_REDIS_CLIENT_CERT") && err.contains("SYNTH_REDIS_CLIENT_KEY"),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    // A certificate without its key: named.
    let out = run(sc(&op, &ca)
        .env("SYNTH_REDIS_CLIENT_CERT", dir.join("client.crt"))
        .arg("migrate"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("SYNTH_REDIS_CLIENT_KEY"),
        "{err}"
    );

    // With it: the operator migrates, a worker runs a job.
    let with_cert = |mut c: Command| {
        c.env("SYNTH_REDIS_CLIENT_CERT", dir.join("client.crt"))
            .env("SYNTH_REDIS_CLIENT_KEY", dir.join("client.key"));
        c
    };
    ok(&mut with_cert({
        let mut c = sc(&op, &ca);
        c.arg("migrate");
        c
    }));
    let log = dir.join("worker.log");
    let worker = spawn(
        with_cert({
            let mut c = sc(&redis.url("worker"), &ca);
            c.args(["worker", "--roles", "noop"]).current_dir(dir);
            c
        }),
        &log,
    );
    let out = ok(&mut with_cert({
        let mut c = sc(&op, &ca);
        c.args(["jobs", "enqueue", "--type", "noop", "--json"]);
        c
    }));
    let v: Value = serde_json::from_str(&out).unwrap();
    let id = v[0]["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s: Value = serde_json::from_str(&ok(&mut with_cert({
            let mut c = sc(&op, &ca);
            c.args(["jobs", "status", &id, "--json"]);
            c
        })))
        .unwrap();
        if s["state"] == "completed" {
            break;
        }
        assert!(Instant::now() < deadline, "{s}\n{}", read(&log));
        std::thread::sleep(Duration::from_millis(100));
    }
    kill(worker);
    assert!(!read(&log).contains("no permissions"), "{}", read(&log));
}

/// A pipeline run (plan, train, check, publish) a bot starts through a bridge logged in as
/// `bridge`, carried out by a worker logged in as `worker`: every stage's commands and
/// scripts are the worker's, the bot's routes the bridge's.
#[test]
fn a_bots_pipeline_run_needs_nothing_the_bridge_and_worker_users_lack() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let redis = TlsRedis::start(dir, &acl_file("t", &[]), false);
    let (ca, tls) = (redis.ca.clone(), redis.tls());
    let op = redis.url("operator");
    ok(sc(&op, &ca).arg("migrate"));
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
    // A bot starts the run through a bridge that logs in as `bridge`.
    let bridge = Bridge::start(&redis, &ca, dir);
    // common::TINY's budget as body fields.
    let tiny = concat!(
        r#"{"steps_per_epoch":2,"d_model":8,"seq_len":16,"batch_size":2,"n_paths":4,"#,
        r#""eval_windows":2,"eval_paths":50}"#
    );
    let run_args = [
        "run",
        "--max-experiments",
        "1",
        "--epochs",
        "1",
        "--rounds",
        "1",
        "--publish",
        "--body",
        tiny,
    ];
    let run_id = bridge.first_answer(&run_args)["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let log = dir.join("worker.log");
    let mut w = sc(&redis.url("worker"), &ca);
    w.args(["worker", "--roles", "all", "--data-dir"])
        .arg(&data)
        .arg("--work-dir")
        .arg(dir.join("runs"))
        .arg("--store")
        .arg(dir.join("store"))
        .current_dir(dir);
    let worker = spawn(w, &log);
    let deadline = Instant::now() + Duration::from_secs(120);
    let run = loop {
        let r: Value =
            serde_json::from_str(&ok(sc(&op, &ca).args(["runs", "show", &run_id, "--json"])))
                .unwrap();
        if ["succeeded", "failed"].contains(&r["state"].as_str().unwrap_or("")) {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "run never finished: {r}\n{}",
            read(&log)
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    // The bot's reads of runs, workers, the semaphore, experiments, stats and its session,
    // and a schedule of its own added and removed.
    let schedule = r#"{"name":"b1-nightly","cron":"0 2 * * *","job_type":"noop","payload":{}}"#;
    for args in [
        &["status"][..],
        &["summary"],
        &["call", "GET", "/bots/sessions"],
        &["call", "POST", "/schedules", "--body", schedule],
        &["call", "GET", "/schedules"],
        &["call", "DELETE", "/schedules/b1-nightly"],
        &["runs"],
        &["runs", &run_id],
        &["workers"],
        &["semaphore"],
        &["compare", "--all"],
        &["jobs", "stats"],
    ] {
        let out = bridge.client(args);
        assert!(
            out.status.success(),
            "client {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The bot's event stream (/events: XREAD on the events stream), opened and read.
    let mut sse = std::net::TcpStream::connect(("127.0.0.1", bridge.port)).unwrap();
    write!(
        sse,
        "GET /events HTTP/1.1\r\nHost: x\r\nX-Bot-Id: b1\r\n\r\n"
    )
    .unwrap();
    sse.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut head = [0u8; 256];
    let n = sse.read(&mut head).unwrap_or(0);
    let head = String::from_utf8_lossy(&head[..n]);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    std::thread::sleep(Duration::from_millis(500));
    drop(sse);
    kill(bridge.child);
    kill(worker);
    assert_nothing_refused(&redis, &tls);
    let stages = common::stage_names(&run);
    assert_eq!(stages[..3], ["plan", "train", "check"], "{run}");
    // A tiny model may fail its check; a run that fails for any other reason is a fault.
    if run["state"] == "failed" {
        let err = run.to_string();
        assert!(err.contains("check failed"), "{run}\n{}", read(&log));
    } else {
        assert_eq!(stages.last(), Some(&"publish"), "{run}");
    }
    assert!(!read(&log).contains("no permissions"), "{}", read(&log));
}
