//! The train stage fanned out over trainer processes (real redis-server, real `synth-city
//! worker` processes in separate directories sharing Redis and a store directory): the
//! experiments of a round are `train-one` jobs that several trainers run at once (recorded
//! start and end times overlap, on different workers); a trainer killed with SIGKILL
//! mid-experiment has its child reclaimed and re-run, counted once, and the run succeeds; the
//! survivors of a successive-halving round fan out again, resuming from the store; a
//! child that fails for good (here: cancelled) is recorded as a failed experiment and the run
//! goes on, and when every child fails for good (dead-lettered) the run fails as a failed
//! train stage does; cancelling the run cancels its children and frees its permit.

mod common;

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use common::{RedisServer, TINY};
use serde_json::Value;

fn shared_data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data")
}

/// A worker process in its own directory (its own data and work directories), sharing only
/// Redis and `store`; killed when dropped.
struct Machine {
    child: Child,
}

impl Machine {
    fn start(redis: &RedisServer, root: &Path, store: &Path, flags: &[&str]) -> Machine {
        let data = root.join("data");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::copy(shared_data().join("BTC_5m.csv"), data.join("BTC_5m.csv")).unwrap();
        Machine {
            child: common::machine_command(&redis.url(), root, store, flags)
                .spawn()
                .unwrap(),
        }
    }

    /// SIGKILL, as a crash would.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Redis, a store directory and a root for each machine, migrated.
struct Fleet {
    redis: RedisServer,
    tmp: tempfile::TempDir,
    store: PathBuf,
}

impl Fleet {
    fn new() -> Fleet {
        let redis = RedisServer::start();
        let tmp = tempfile::tempdir().unwrap();
        let store = tmp.path().join("bucket");
        std::fs::create_dir_all(&store).unwrap();
        let f = Fleet { redis, tmp, store };
        f.cli(&["migrate"]);
        f
    }

    fn cli(&self, args: &[&str]) -> String {
        common::stdout_of(
            common::cli_command(&self.redis.url())
                .args(args)
                .current_dir(self.tmp.path())
                .env_remove("CHUTES_API_KEY"),
        )
    }

    /// A worker named `name` serving `roles` with `slots` slots (and `extra` flags).
    fn machine(&self, name: &str, roles: &str, slots: &str, extra: &[&str]) -> Machine {
        let mut flags = vec!["--roles", roles, "--concurrency", slots, "--name", name];
        flags.extend_from_slice(extra);
        Machine::start(
            &self.redis,
            &self.tmp.path().join(name),
            &self.store,
            &flags,
        )
    }

    /// The planner and checker's machine.
    fn agents(&self) -> Machine {
        self.machine("agents", "agents,publisher,engine", "2", &[])
    }

    /// Two trainers of one slot each (`trainer-a`, `trainer-b`) and the agents' machine; a
    /// run of 4 experiments with `extra` flags, followed until it succeeds (or the test
    /// fails). Returns the run's record.
    fn four_on_two_trainers(&self, extra: &[&str]) -> Value {
        let _machines = [
            self.machine("trainer-a", "trainer", "1", &[]),
            self.machine("trainer-b", "trainer", "1", &[]),
            self.agents(),
        ];
        let id = self.run("4", extra);
        let run = self.finished(&id, 150);
        assert_eq!(run["state"], "succeeded", "{run}");
        run
    }

    /// Enqueues a tiny built-in run of `n` experiments, one round, with `extra` flags (later
    /// flags win); returns its id.
    fn run(&self, n: &str, extra: &[&str]) -> String {
        let mut args = vec!["pipeline", "--enqueue-only", "--max-experiments", n];
        args.extend_from_slice(&["--rounds", "1", "--agents", "builtin", "--json"]);
        args.extend_from_slice(TINY);
        args.extend_from_slice(extra);
        let out = self.cli(&args);
        serde_json::from_str::<Value>(out.trim()).unwrap()["run_id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    fn show(&self, id: &str) -> Value {
        serde_json::from_str(&self.cli(&["runs", "show", id, "--json"])).unwrap()
    }

    fn job(&self, id: &str) -> Option<Value> {
        let out = common::cli_command(&self.redis.url())
            .args(["jobs", "status", id, "--json"])
            .output()
            .unwrap();
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).ok())
            .flatten()
    }

    fn job_state(&self, id: &str) -> String {
        self.job(id)
            .map(|j| j["state"].as_str().unwrap_or("").to_string())
            .unwrap_or_default()
    }

    /// Polls `f` every 50 ms for up to `secs`; fails naming `what`.
    fn until<T>(&self, secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(v) = f() {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out: {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn finished(&self, id: &str, secs: u64) -> Value {
        self.until(secs, "the run never finished", || {
            let r = self.show(id);
            ["succeeded", "failed", "cancelled"]
                .contains(&r["state"].as_str().unwrap_or(""))
                .then_some(r)
        })
    }
}

/// The run's first train stage job (plan is step 0).
fn train_job(id: &str) -> String {
    format!("run-{id}-train-1")
}

/// The child of the first train stage for experiment `i` of round 0.
fn child(id: &str, i: u32) -> String {
    format!("{}-r0-e{i}", train_job(id))
}

/// The run's record of its first train stage's children of `round`.
fn children_of(run: &Value, round: u64) -> Vec<Value> {
    run["task"]["children"]
        .as_array()
        .unwrap_or_else(|| panic!("no children recorded: {run}"))
        .iter()
        .filter(|c| c["round"] == round && c["job"].as_str().unwrap().contains("-train-1-"))
        .cloned()
        .collect()
}

/// [`children_of`] round 0.
fn children(run: &Value) -> Vec<Value> {
    children_of(run, 0)
}

fn ms(c: &Value, k: &str) -> u64 {
    c[k].as_u64().unwrap_or_else(|| panic!("no {k}: {c}"))
}

#[test]
fn two_trainers_train_the_experiments_of_a_round_at_once() {
    let f = Fleet::new();
    let run = f.four_on_two_trainers(&["--steps-per-epoch", "6"]);
    let id = run["id"].as_str().unwrap().to_string();
    let kids = children(&run);
    assert_eq!(kids.len(), 4, "one child per experiment: {kids:?}");
    assert!(kids.iter().all(|c| c["state"] == "completed"), "{kids:?}");
    // by both trainers, and at least two of them at the same time on different workers
    let by = |c: &Value| c["worker"].as_str().unwrap().to_string();
    assert!(
        kids.iter().any(|c| by(c).starts_with("trainer-a")),
        "{kids:?}"
    );
    assert!(
        kids.iter().any(|c| by(c).starts_with("trainer-b")),
        "{kids:?}"
    );
    let overlapping = kids.iter().enumerate().any(|(i, x)| {
        kids[i + 1..].iter().any(|y| {
            by(x) != by(y)
                && ms(x, "started_at_ms") < ms(y, "finished_at_ms")
                && ms(y, "started_at_ms") < ms(x, "finished_at_ms")
        })
    });
    assert!(overlapping, "no two experiments overlapped: {kids:?}");
    for c in &kids {
        eprintln!(
            "{} on {}: {} .. {}",
            c["job"],
            by(c),
            ms(c, "started_at_ms"),
            ms(c, "finished_at_ms")
        );
    }
    // every experiment was recorded, each naming its checkpoint in the store
    let results = run["task"]["results"].as_array().unwrap();
    assert!(results.len() >= 4, "{run}");
    for r in results.iter().take(4) {
        let key = r["artifact"]["key"]
            .as_str()
            .unwrap_or_else(|| panic!("{r}"));
        assert!(f.store.join(key).is_file(), "{key}");
        assert!(r.get("checkpoint").is_none(), "{r}");
    }
    // the train job ran twice (fan-out, fan-in) and used no attempt
    let parent = f.job(&train_job(&id)).unwrap();
    assert_eq!(parent["state"], "completed", "{parent}");
    assert_eq!(
        (parent["starts"].as_u64(), parent["attempt"].as_u64()),
        (Some(2), Some(0))
    );
}

#[test]
fn successive_halving_rounds_fan_out_again_and_resume_from_the_store() {
    let f = Fleet::new();
    let run = f.four_on_two_trainers(&["--rounds", "2"]);
    let id = run["id"].as_str().unwrap().to_string();
    // four experiments, then the better half again for twice the epochs
    let (first, second) = (children_of(&run, 0), children_of(&run, 1));
    assert_eq!(first.len(), 4, "{first:?}");
    assert_eq!(second.len(), 2, "{second:?}");
    for c in &second {
        let job = f.job(c["job"].as_str().unwrap()).unwrap();
        let r = &job["result"];
        assert_eq!(r["resumed"], true, "round 1 resumes from round 0: {job}");
        assert_eq!(r["record"]["epochs"], 2, "{job}");
    }
    // the train job ran once per round and once to collect the last
    let parent = f.job(&train_job(&id)).unwrap();
    assert_eq!(parent["starts"], 3, "{parent}");
    // every round-0 child stored the optimizer state a later round may resume
    for c in &first {
        let job = f.job(c["job"].as_str().unwrap()).unwrap();
        let key = job["result"]["resume"]["key"]
            .as_str()
            .unwrap_or_else(|| panic!("{job}"));
        assert!(f.store.join(key).is_file(), "{key}");
    }
}

#[test]
fn a_trainer_killed_mid_experiment_has_its_child_reclaimed_and_the_run_succeeds() {
    let f = Fleet::new();
    let lease = ["--lease-ms", "1000"];
    let mut a = f.machine("trainer-a", "trainer", "1", &lease);
    let _agents = f.agents();
    let id = f.run("2", &["--steps-per-epoch", "40"]);
    // trainer A alone: it takes the first child; kill it mid-training
    let victim = f.until(60, "a child never started on trainer A", || {
        (0..2).map(|i| child(&id, i)).find(|c| {
            f.job(c).is_some_and(|j| {
                j["state"] == "active"
                    && j["worker"].as_str().unwrap_or("").starts_with("trainer-a")
            })
        })
    });
    std::thread::sleep(Duration::from_millis(500));
    a.kill();
    let _b = f.machine("trainer-b", "trainer", "1", &lease);
    let run = f.finished(&id, 120);
    assert_eq!(run["state"], "succeeded", "{run}");
    let job = f.job(&victim).unwrap();
    assert_eq!(job["state"], "completed", "{job}");
    assert!(job["starts"].as_u64().unwrap() >= 2, "re-run: {job}");
    assert!(
        job["worker"].as_str().unwrap().starts_with("trainer-b"),
        "{job}"
    );
    // counted once: one record per child, the re-run's
    let kids = children(&run);
    assert_eq!(kids.len(), 2, "{kids:?}");
    let k = kids.iter().find(|c| c["job"] == victim.as_str()).unwrap();
    assert!(
        k["worker"].as_str().unwrap().starts_with("trainer-b"),
        "{k}"
    );
    assert_eq!(k["state"], "completed");
    let trained = run["task"]["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] == "ok")
        .count();
    assert!(trained >= 2, "{run}");
}

#[test]
fn a_child_that_fails_for_good_is_recorded_and_the_run_goes_on() {
    let f = Fleet::new();
    let _a = f.machine("trainer-a", "trainer", "1", &[]);
    let _agents = f.agents();
    let id = f.run("3", &["--steps-per-epoch", "10"]);
    // one trainer of one slot: the last child waits while the first trains; it fails for
    // good (cancelled by an operator)
    let last = child(&id, 2);
    f.until(60, "the train job never waited for its children", || {
        (f.job_state(&train_job(&id)) == "waiting-children").then_some(())
    });
    let said = f.cli(&["jobs", "cancel", &last]);
    assert!(said.contains("cancel"), "{said}");
    let run = f.finished(&id, 120);
    assert_eq!(run["state"], "succeeded", "the run goes on: {run}");
    let kids = children(&run);
    assert_eq!(kids.len(), 3, "{kids:?}");
    let k = kids.iter().find(|c| c["job"] == last.as_str()).unwrap();
    assert_eq!(k["state"], "cancelled", "{k}");
    assert!(
        k["error"].as_str().unwrap().contains("was cancelled"),
        "{k}"
    );
    let results = run["task"]["results"].as_array().unwrap();
    let failed: Vec<&Value> = results
        .iter()
        .filter(|r| {
            r["status"] == "failed"
                && r["error"]
                    .as_str()
                    .is_some_and(|e| e.contains(&last) && e.contains("cancelled"))
        })
        .collect();
    assert_eq!(failed.len(), 1, "{results:?}");
    assert!(
        results.iter().filter(|r| r["status"] == "ok").count() >= 2,
        "{results:?}"
    );
    let train = &run["task"]["stages"].as_array().unwrap()[1];
    assert_eq!(train["stage"], "train");
    assert!(
        train["note"].as_str().unwrap().starts_with("2 of 3"),
        "{train}"
    );
}

/// Every child dead-lettered (the only worker that takes `train-one` jobs has a broken store,
/// so it can read neither the run's dataset nor store a checkpoint; each child's attempts are
/// spent): each is recorded as a failed experiment saying why, and the train stage fails as a
/// train stage whose experiments all fail does: the run fails. (The `train` job itself runs on
/// a worker with the real store, which pins the run's dataset.)
#[test]
fn when_every_child_fails_for_good_the_run_fails_like_a_failed_train_stage() {
    let f = Fleet::new();
    let broken = f.tmp.path().join("not-a-store");
    std::fs::write(&broken, b"a file where the store should be").unwrap();
    let root = f.tmp.path().join("trainer-a");
    std::fs::create_dir_all(root.join("data")).unwrap();
    std::fs::copy(
        shared_data().join("BTC_5m.csv"),
        root.join("data/BTC_5m.csv"),
    )
    .unwrap();
    let flags = [
        "--roles",
        "train-one",
        "--concurrency",
        "2",
        "--name",
        "trainer-a",
        "--retry-base-ms",
        "50",
        "--retry-cap-ms",
        "200",
    ];
    let _a = Machine {
        child: common::machine_command(&f.redis.url(), &root, &broken, &flags)
            .spawn()
            .unwrap(),
    };
    let _agents = f.agents();
    let _parent = f.machine("parent", "train", "1", &[]);
    let id = f.run("2", &["--retries", "1"]);
    let run = f.finished(&id, 120);
    assert_eq!(run["state"], "failed", "{run}");
    let kids = children(&run);
    assert_eq!(kids.len(), 2, "{kids:?}");
    for k in &kids {
        assert_eq!(k["state"], "dead", "{k}");
        let e = k["error"].as_str().unwrap();
        assert!(
            e.contains("failed for good") && e.contains("environment"),
            "{k}"
        );
        let job = f.job(k["job"].as_str().unwrap()).unwrap();
        assert_eq!(job["attempt"], 3, "its attempts were spent: {job}");
    }
    let error = run["summary"]["error"].as_str().unwrap();
    assert!(
        error.contains("stage trainer failed") && error.contains("no experiment trained"),
        "{error}"
    );
    let failed = run["task"]["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] == "failed")
        .count();
    assert_eq!(failed, 2, "{run}");
}

#[test]
fn cancelling_a_run_cancels_its_children() {
    let f = Fleet::new();
    // a short lease: the running child's worker sees the cancel within a second
    let _a = f.machine("trainer-a", "trainer", "1", &["--lease-ms", "3000"]);
    let _agents = f.agents();
    // experiments of about a minute each
    let id = f.run("4", &["--steps-per-epoch", "6000"]);
    let running = f.until(60, "no child started", || {
        (0..4)
            .map(|i| child(&id, i))
            .find(|c| f.job_state(c) == "active")
    });
    assert_eq!(f.job_state(&train_job(&id)), "waiting-children");
    let said = f.cli(&["runs", "cancel", &id]);
    assert!(said.contains("cancel"), "{said}");
    // the waiting children at once, the running one as soon as its training stops
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let states: Vec<Option<Value>> = (0..4).map(|i| f.job(&child(&id, i))).collect();
        if states
            .iter()
            .all(|s| s.as_ref().is_some_and(|s| s["state"] == "cancelled"))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not every child cancelled: {states:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(f.job_state(&train_job(&id)), "cancelled");
    let job = f.job(&running).unwrap();
    assert!(
        job["result"].is_null(),
        "it stopped before it trained: {job}"
    );
    assert!(
        job["finished_at_ms"].as_u64().unwrap() - job["started_at_ms"].as_u64().unwrap() < 30_000,
        "the running child stopped early: {job}"
    );
    let run = f.show(&id);
    assert_eq!(run["state"], "cancelled", "{run}");
    // its permit is back
    let holders = f.cli(&["semaphore", "status", "--json"]);
    assert!(!holders.contains(&id), "{holders}");
}
