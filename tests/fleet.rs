//! The fleet as separate machines would run it: two worker processes in separate working
//! directories, each with its own data and work directories, that share only Redis and the
//! store (a directory standing in for the bucket). One trains (`--roles trainer`); the other
//! plans, checks, debugs, publishes and starts runs (`--roles agents,publisher,engine`). A
//! pipeline run enqueued from a third directory succeeds and publishes; the checker's worker
//! reads the checkpoint from its own cache, fetched from the store by reference; neither the
//! run record nor any job result names a path of either machine; and a queued job that still
//! names a directory is dead-lettered saying where directories come from now. A checkpoint
//! that has gone from the store between training and the check is the environment's failure:
//! the check job is retried, then dead-lettered with the cause, the run fails saying so, and
//! the debugger is never asked. Bars travel as a dataset: the train stage publishes the
//! trainer's bars to the store and pins the run to them, and a machine with no bars of its own
//! checks from them; a run pinned to a dataset the store lacks fails for the environment.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::{assert_no_paths, bin, RedisServer};
use serde_json::Value;

fn shared_data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data")
}

/// One machine: its own working directory, data (a copy of the BTC bars) and work directory.
struct Machine {
    root: PathBuf,
    work: PathBuf,
    child: Child,
}

impl Machine {
    fn start(redis: &RedisServer, root: &Path, roles: &str, store: &Path) -> Machine {
        Self::start_with(redis, root, roles, store, &[])
    }

    /// [`Machine::start`] with more worker flags.
    fn start_with(
        redis: &RedisServer,
        root: &Path,
        roles: &str,
        store: &Path,
        extra: &[&str],
    ) -> Machine {
        let data = root.join("data");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::copy(shared_data().join("BTC_5m.csv"), data.join("BTC_5m.csv")).unwrap();
        Self::spawn(redis, root, roles, store, extra)
    }

    /// [`Machine::start_with`] on whatever the machine's data directory holds (nothing is
    /// copied into it).
    fn spawn(
        redis: &RedisServer,
        root: &Path,
        roles: &str,
        store: &Path,
        extra: &[&str],
    ) -> Machine {
        std::fs::create_dir_all(root.join("data")).unwrap();
        let mut flags = vec!["--roles", roles, "--concurrency", "2"];
        flags.extend_from_slice(extra);
        let mut cmd = common::machine_command(&redis.url(), root, store, &flags);
        Machine {
            root: root.to_path_buf(),
            work: root.join("work"),
            child: cmd.spawn().unwrap(),
        }
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the CLI in `cwd` (no directory flags: the operator's machine is a third one).
fn cli(redis: &RedisServer, cwd: &Path, args: &[&str]) -> String {
    common::stdout_of(
        common::cli_command(&redis.url())
            .args(args)
            .current_dir(cwd)
            .env_remove("CHUTES_API_KEY"),
    )
}

/// Three "machines" in one temporary directory (A, B, and the operator's) and the shared
/// bucket, created, with the key layout migrated.
struct Fleet {
    redis: RedisServer,
    tmp: tempfile::TempDir,
    root_a: PathBuf,
    root_b: PathBuf,
    operator: PathBuf,
    store: PathBuf,
}

impl Fleet {
    fn new() -> Fleet {
        let redis = RedisServer::start();
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path();
        let (root_a, root_b, operator, store) = (
            p.join("machine-a"),
            p.join("machine-b"),
            p.join("operator"),
            p.join("bucket"),
        );
        for d in [&root_a, &root_b, &operator, &store] {
            std::fs::create_dir_all(d).unwrap();
        }
        cli(&redis, &operator, &["migrate"]);
        Fleet {
            redis,
            tmp,
            root_a,
            root_b,
            operator,
            store,
        }
    }

    /// Enqueues a tiny built-in run of `experiments` experiments (one round) from the
    /// operator's machine, with `extra` flags; returns its id.
    fn enqueue_run(&self, experiments: &str, extra: &[&str]) -> String {
        let args = common::tiny_run_args(experiments, extra);
        common::run_id_of(&cli(&self.redis, &self.operator, &args))
    }

    /// `runs show ID --json`.
    fn show(&self, id: &str) -> Value {
        serde_json::from_str(&cli(
            &self.redis,
            &self.operator,
            &["runs", "show", id, "--json"],
        ))
        .unwrap()
    }

    /// Waits (up to `secs`) until `done` holds of the run record, and returns it.
    fn wait(&self, id: &str, secs: u64, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let r = self.show(id);
            if done(&r) {
                return r;
            }
            assert!(Instant::now() < deadline, "{what}: {r}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the run has finished, and returns its record.
    fn finished(&self, id: &str, secs: u64) -> Value {
        self.wait(id, secs, "the run never finished", |r| {
            ["succeeded", "failed", "cancelled"].contains(&r["state"].as_str().unwrap_or(""))
        })
    }
}

#[test]
fn workers_on_separate_machines_share_only_redis_and_the_store() {
    let f = Fleet::new();
    let (redis, operator, store) = (&f.redis, &f.operator, &f.store);
    let trainer = Machine::start(redis, &f.root_a, "trainer", store);
    let agents = Machine::start(redis, &f.root_b, "agents,publisher,engine", store);
    let id = f.enqueue_run("2", &["--publish"]);
    let run = f.finished(&id, 480);
    assert_eq!(run["state"], "succeeded", "{run}");
    let stages = common::stage_names(&run);
    assert_eq!(stages.first(), Some(&"plan"), "{stages:?}");
    assert_eq!(stages.last(), Some(&"publish"), "{stages:?}");
    assert!(stages.contains(&"check"), "{stages:?}");

    // published to the shared store, from the artifact the trainer put there
    let published = &run["task"]["published"];
    let model_dir = published["model_dir"].as_str().unwrap();
    assert!(
        model_dir.starts_with(&format!("models/{id}/")),
        "{published}"
    );
    assert!(store.join(model_dir).join("model.safetensors").is_file());
    assert!(store.join("models/production.json").is_file());
    let best = run["summary"]["best_artifact"].clone();
    let sha = best["sha256"].as_str().unwrap_or_else(|| panic!("{run}"));
    assert!(store.join(best["key"].as_str().unwrap()).is_file());
    let results = run["task"]["results"].as_array().unwrap();
    assert!(
        results
            .iter()
            .filter(|r| r["status"] == "ok")
            .all(|r| r["artifact"]["sha256"].is_string() && r.get("checkpoint").is_none()),
        "{run}"
    );
    // trained on the trainer's device (`auto`, which is the CPU on a machine without a GPU),
    // recorded with its speed
    assert!(
        results
            .iter()
            .filter(|r| r["status"] == "ok")
            .all(|r| r["device"] == "cpu"
                && r["steps_per_sec"].as_f64().is_some_and(|s| s > 0.0)
                && r["training_time_s"].as_f64().is_some_and(|s| s > 0.0)),
        "{run}"
    );
    // both workers say which device they train on
    let ws: Value = serde_json::from_str(&cli(redis, operator, &["workers", "--json"])).unwrap();
    let devices: Vec<&Value> = ws
        .as_array()
        .unwrap()
        .iter()
        .map(|w| &w["device"])
        .collect();
    assert!(
        devices.len() >= 2 && devices.iter().all(|d| *d == "cpu"),
        "{ws}"
    );
    // a worker asking for CUDA from a build without it stops at once, naming the feature
    if !cfg!(feature = "cuda") {
        let out = common::cli_command(&redis.url())
            .args(["worker", "--roles", "trainer", "--device", "cuda"])
            .current_dir(operator)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{err}");
        assert!(
            err.contains("--device cuda") && err.contains("--features cuda"),
            "{err}"
        );
    }

    // the run pinned a dataset: A's own BTC bars, published to the store by the train stage;
    // every record names it, and both machines read the bars from it
    let ds = run["task"]["options"]["dataset"]
        .as_str()
        .unwrap_or_else(|| panic!("{run}"));
    assert!(ds.starts_with("ds-") && ds.len() == 19, "{ds}");
    assert!(store.join(format!("datasets/{ds}.json")).is_file());
    assert!(
        results
            .iter()
            .all(|r| r["spec"]["data"]["dataset"].as_str() == Some(ds)),
        "{run}"
    );
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(store.join(format!("datasets/{ds}.json"))).unwrap())
            .unwrap();
    let bars_sha = manifest["artifact"]["sha256"].as_str().unwrap();
    for m in [&trainer, &agents] {
        let bars = m.work.join("cache").join(bars_sha).join("BTC_5m.csv");
        assert_eq!(
            std::fs::read(&bars).unwrap(),
            std::fs::read(shared_data().join("BTC_5m.csv")).unwrap(),
            "{} holds the dataset's bars",
            bars.display()
        );
    }

    // machine A trained in its own work directory, removed its scratch checkpoints once they
    // were in the store, and fetched no checkpoint; machine B trained nothing and read the
    // checkpoint from its own cache
    assert!(
        !trainer.work.join(&id).exists(),
        "A's scratch checkpoints are gone once stored"
    );
    assert!(
        !trainer.work.join("cache").join(sha).exists(),
        "A fetched no checkpoint"
    );
    assert!(!agents.work.join(&id).exists(), "B trained nothing");
    let cached = agents.work.join("cache").join(sha);
    assert!(
        cached.join("model.safetensors").is_file(),
        "B's cache has the checkpoint"
    );
    assert!(cached.join("spec.json").is_file());

    // no path of either machine (nor any absolute path) in the run record or a job result
    let dirs = [
        trainer.root.as_path(),
        agents.root.as_path(),
        operator.as_path(),
        store.as_path(),
        f.tmp.path(),
    ];
    assert_no_paths("run", &run, &dirs);
    let steps = run["attempt"].as_u64().unwrap();
    let mut seen = 0;
    for step in 0..=steps {
        for stage in ["plan", "train", "check", "debug", "publish"] {
            let job = format!("run-{id}-{stage}-{step}");
            let out = Command::new(bin())
                .args(["--redis-url", &redis.url(), "--prefix", "t"])
                .args(["jobs", "status", &job, "--json"])
                .current_dir(operator)
                .output()
                .unwrap();
            if !out.status.success() {
                continue;
            }
            let st: Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(st["state"], "completed", "{st}");
            assert_no_paths(&format!("job {job} result"), &st["result"], &dirs);
            seen += 1;
        }
    }
    assert_eq!(seen as u64, steps + 1, "one stage job per step");
    // nor do the results of the train stages' children (one `train-one` job per experiment)
    let children = run["task"]["children"].as_array().unwrap();
    assert!(children.len() >= 2, "{run}");
    for c in children {
        let job = c["job"].as_str().unwrap();
        let st: Value =
            serde_json::from_str(&cli(redis, operator, &["jobs", "status", job, "--json"]))
                .unwrap();
        assert_eq!(st["state"], "completed", "{st}");
        assert!(
            st["result"]["record"]["artifact"]["sha256"].is_string(),
            "{st}"
        );
        assert_no_paths(&format!("job {job} result"), &st["result"], &dirs);
    }

    // a job queued before the upgrade that still names a directory: dead-lettered, saying
    // where a worker's directories come from now
    let old = serde_json::json!({"v": 1, "id": "old-run", "type": "run",
        "payload": {"run": {}, "data_dir": "/srv/data"}, "attempt": 0, "max_attempts": 3,
        "timeout_ms": 60000});
    let mut c = redis.conn();
    let _: String = redis::cmd("XADD")
        .arg("{t}:q:run")
        .arg("*")
        .arg("job")
        .arg(old.to_string())
        .query(&mut c)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let dead = cli(redis, operator, &["jobs", "dlq", "list", "--json"]);
        if dead.contains("old-run") {
            assert!(
                dead.contains("`data_dir` is no longer taken")
                    && dead.contains("synth-city worker --data-dir"),
                "{dead}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "not dead-lettered: {dead}");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(agents);
    drop(trainer);
}

/// Machine B plans; then, with B gone, machine A trains; then `break_it` takes something the
/// check needs away before B comes back to check (B's retries quick, so the test does not wait
/// on backoff; with `copy_data` B's bars are copied in again as it starts). The check must fail
/// as the environment's failure: the run failed naming the check stage job and `environment`,
/// and the debugger never asked. Returns the run's id and record.
fn check_fails_for_the_environment(
    f: &Fleet,
    break_it: impl FnOnce(),
    copy_data: bool,
) -> (String, Value) {
    let (redis, store) = (&f.redis, &f.store);
    let quick = ["--retry-base-ms", "50", "--retry-cap-ms", "200"];
    let agents = Machine::start_with(redis, &f.root_b, "agents,engine", store, &quick);
    let id = f.enqueue_run("1", &[]);
    f.wait(&id, 300, "never planned", |r| r["stage"] == "train");
    drop(agents);
    let trainer = Machine::start(redis, &f.root_a, "trainer", store);
    f.wait(&id, 300, "never trained", |r| r["stage"] == "check");
    drop(trainer);
    break_it();
    let _agents = if copy_data {
        Machine::start_with(redis, &f.root_b, "agents,engine", store, &quick)
    } else {
        Machine::spawn(redis, &f.root_b, "agents,engine", store, &quick)
    };
    let run = f.finished(&id, 120);
    assert_eq!(run["state"], "failed", "{run}");
    let error = run["summary"]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("check stage job") && error.contains("environment"),
        "the run's error names the cause: {run}"
    );
    let stages = common::stage_names(&run);
    assert!(
        !stages.contains(&"debug"),
        "the debugger was asked: {stages:?}"
    );
    (id, run)
}

#[test]
fn a_checkpoint_gone_from_the_store_is_an_environment_error_not_a_model_problem() {
    let f = Fleet::new();
    // the artifacts vanish from the bucket before B checks
    let artifacts = f.store.join("artifacts");
    let (id, run) =
        check_fails_for_the_environment(&f, || std::fs::remove_dir_all(artifacts).unwrap(), true);
    let error = run["summary"]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("is not in"),
        "the run's error names the cause: {run}"
    );
    let dead = cli(&f.redis, &f.operator, &["jobs", "dlq", "list", "--json"]);
    assert!(
        dead.contains(&format!("run-{id}-check")) && dead.contains("environment"),
        "{dead}"
    );
}

/// The machine that checks a model has no bars of its own: it reads the run's dataset,
/// pinned by the train stage on the machine that had them, from the store, and the run
/// succeeds. A run pinned to a dataset that is not in the store fails as the environment's
/// failure (retried, dead-lettered naming the id and the command that makes one), before
/// anything trains, and the debugger is never asked.
#[test]
fn a_machine_without_bars_reads_the_runs_dataset_and_a_missing_dataset_is_an_environment_error() {
    let f = Fleet::new();
    let (redis, store) = (&f.redis, &f.store);
    let quick = ["--retry-base-ms", "50", "--retry-cap-ms", "200"];
    let trainer = Machine::start_with(redis, &f.root_a, "trainer", store, &quick);
    let agents = Machine::spawn(redis, &f.root_b, "agents,publisher,engine", store, &quick);
    let id = f.enqueue_run("1", &[]);
    let run = f.finished(&id, 300);
    assert_eq!(run["state"], "succeeded", "{run}");
    let stages = common::stage_names(&run);
    assert!(stages.contains(&"check"), "{stages:?}");
    assert!(
        std::fs::read_dir(f.root_b.join("data"))
            .unwrap()
            .next()
            .is_none(),
        "B has no bars of its own"
    );
    let ds = run["task"]["options"]["dataset"]
        .as_str()
        .unwrap()
        .to_string();

    // the operator lists it; the same bars published again are the same dataset
    let listed = cli(
        redis,
        &f.operator,
        &["data", "datasets", "--store", store.to_str().unwrap()],
    );
    assert!(
        listed.contains(&ds) && listed.contains("(latest)"),
        "{listed}"
    );
    let again = cli(
        redis,
        &f.operator,
        &[
            "data",
            "publish",
            "--data-dir",
            f.root_a.join("data").to_str().unwrap(),
            "--assets",
            "BTC",
            "--timeframe",
            "5m",
            "--store",
            store.to_str().unwrap(),
        ],
    );
    assert_eq!(again.trim(), ds);

    // a trainer with no bars of its own trains a run pinned to `latest` from the store
    drop(trainer);
    let root_c = f.tmp.path().join("machine-c");
    let bare = Machine::spawn(redis, &root_c, "trainer", store, &quick);
    let id = f.enqueue_run("1", &["--dataset", "latest"]);
    let run = f.finished(&id, 300);
    assert_eq!(run["state"], "succeeded", "{run}");
    assert_eq!(
        run["task"]["options"]["dataset"].as_str(),
        Some(ds.as_str()),
        "{run}"
    );
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(store.join(format!("datasets/{ds}.json"))).unwrap())
            .unwrap();
    let bars_sha = manifest["artifact"]["sha256"].as_str().unwrap();
    assert!(bare
        .work
        .join("cache")
        .join(bars_sha)
        .join("BTC_5m.csv")
        .is_file());
    drop(bare);
    let trainer = Machine::start_with(redis, &f.root_a, "trainer", store, &quick);

    // a dataset nobody published: the train stage fails for the environment, naming it
    let missing = "ds-0123456789abcdef";
    let id = f.enqueue_run("1", &["--dataset", missing]);
    let run = f.finished(&id, 120);
    assert_eq!(run["state"], "failed", "{run}");
    let error = run["summary"]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("train stage job")
            && error.contains("environment")
            && error.contains(missing)
            && error.contains("synth-city data publish"),
        "the run's error names the dataset and how to make one: {run}"
    );
    let machines = [f.root_a.as_path(), f.root_b.as_path(), f.tmp.path()];
    assert_no_paths("the failed run", &run, &machines);
    // a malformed id is refused when the run is made
    let out = common::cli_command(&redis.url())
        .args(["pipeline", "--enqueue-only", "--dataset", "../etc"])
        .current_dir(&f.operator)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("not a dataset id"),
        "{err}"
    );
    drop(agents);
    drop(trainer);
}
