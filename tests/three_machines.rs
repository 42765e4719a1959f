//! Three "machines" in one box, sharing only a Redis URL (TLS, one ACL user per role) and an
//! S3 endpoint (moto, IAM authentication on), each with its own directory as working
//! directory and HOME, its own data, work and store directories, its own copy of the CA, and
//! an environment cleared of everything else. A runs trainers; B runs plan, check, debug and
//! publish and the operator's CLI; C runs the miner with `--model latest` and no Redis.
//!
//! - A pipeline run of 4 experiments succeeds and publishes, and C's `mine --check` serves the
//!   published model, mirrored from the bucket. Every path a live process of A or B holds
//!   (arguments, environment, working directory, open files) is under its own root; the run
//!   record and the stage jobs' results carry no path; B's cache holds the checkpoint and the
//!   run's dataset and C's store the model, byte for byte the bucket's objects; Redis's ACL
//!   LOG is empty.
//! - A trainer SIGKILLed while it uploads checkpoints (moto frozen with SIGSTOP at its first
//!   checkpoint PUT): no object under `artifacts/` is ever partial (each object's bytes hash to
//!   its key), a second trainer reclaims the work, and the run succeeds.
//! - The store frozen (SIGSTOP) when the check stage starts: the check job fails twice with an
//!   `environment:` error and is retried, the debugger never runs, and once the store answers
//!   again the third attempt passes and the run succeeds.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::s3::Moto;
use common::tls::{acl_file, assert_nothing_refused, pw, TlsRedis};
use common::{assert_no_paths, bin, free_port, read_log};
use serde_json::Value;
use sha2::Digest;

const BUCKET: &str = "three-machines";
/// A hotkey the miner lets through (`//Alice`); C's own is `//Bob`.
const ALICE: &str = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY";
/// Quick job retries, so a test waits on no backoff.
const QUICK: &[&str] = &["--retry-base-ms", "50", "--retry-cap-ms", "200"];

fn shared_data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data")
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

/// One machine: `root` is its working directory and HOME and holds everything it is given
/// (`data/`, `work/`, `store/`, `ca.crt`, `logs/`); its processes get only `env` (and PATH).
struct Machine {
    root: PathBuf,
    env: Vec<(String, String)>,
    redis_port: Option<u16>,
    procs: Vec<Child>,
}

impl Machine {
    /// A machine under `parent/name` that reaches `redis` (when given) and the bucket, with
    /// the S3 client's `s3_timeout` seconds per request and no retries of its own.
    fn new(
        parent: &Path,
        name: &str,
        redis: Option<&TlsRedis>,
        moto: &Moto,
        s3_timeout: u32,
    ) -> Machine {
        let root = parent.join(name);
        for d in ["data", "work", "store", "logs"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        let mut env = moto.env(BUCKET, s3_timeout, 0);
        env.push(("HOME".into(), root.display().to_string()));
        env.push(("RUST_LOG".into(), "warn".into()));
        env.push(("PATH".into(), std::env::var("PATH").unwrap_or_default()));
        if let Some(r) = redis {
            std::fs::copy(&r.ca, root.join("ca.crt")).unwrap();
            env.push((
                "SYNTH_REDIS_CA".into(),
                root.join("ca.crt").display().to_string(),
            ));
        }
        Machine {
            root,
            env,
            redis_port: redis.map(|r| r.port),
            procs: Vec::new(),
        }
    }

    /// Copies the shared bars `files` into this machine's data directory.
    fn with_bars(self, files: &[&str]) -> Machine {
        for f in files {
            std::fs::copy(shared_data().join(f), self.root.join("data").join(f)).unwrap();
        }
        self
    }

    fn dir(&self, d: &str) -> PathBuf {
        self.root.join(d)
    }

    /// `synth-city` on this machine, logged in to Redis as `user` when given (prefix `t`).
    fn command(&self, user: Option<&str>) -> Command {
        let mut cmd = Command::new(bin());
        cmd.env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&self.root)
            .stdin(Stdio::null());
        if let Some(u) = user {
            let port = self.redis_port.expect("this machine has no Redis");
            cmd.args([
                "--redis-url",
                &format!("rediss://{u}:{}@127.0.0.1:{port}/", pw(u)),
                "--prefix",
                "t",
            ]);
        }
        cmd
    }

    /// Runs `synth-city ARGS` here as `user`; its output, whatever the exit status.
    fn run(&self, user: Option<&str>, args: &[&str]) -> Output {
        self.command(user).args(args).output().unwrap()
    }

    /// Runs `synth-city ARGS` here as `user`; fails the test unless it succeeds; its stdout.
    fn ok(&self, user: Option<&str>, args: &[&str]) -> String {
        let out = self.run(user, args);
        assert!(
            out.status.success(),
            "{args:?} on {}: {}",
            self.root.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// The operator's JSON answer to `ARGS`.
    fn json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.ok(Some("operator"), args)).unwrap()
    }

    /// Starts a worker for `roles` logged in as `worker`, in this machine's directories, with
    /// `extra` flags; returns its index in `procs`.
    fn worker(&mut self, roles: &str, extra: &[&str]) -> usize {
        let n = self.procs.len();
        let mut cmd = self.command(Some("worker"));
        cmd.args(["worker", "--roles", roles, "--concurrency", "2"])
            .args(extra)
            .arg("--data-dir")
            .arg(self.dir("data"))
            .arg("--work-dir")
            .arg(self.dir("work"))
            .arg("--store")
            .arg(self.dir("store"));
        let log = self.dir("logs").join(format!("worker-{n}.log"));
        self.procs.push(common::spawn_logged(cmd, &log));
        n
    }

    /// The workers' logs, for a failure message.
    fn logs(&self) -> String {
        (0..self.procs.len())
            .map(|n| read_log(&self.dir("logs").join(format!("worker-{n}.log"))))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// SIGKILLs the process `n`, as a crash would.
    fn kill(&mut self, n: usize) {
        let _ = self.procs[n].kill();
        let _ = self.procs[n].wait();
    }

    /// Fails unless every path each live process of this machine holds is under its root:
    /// its arguments, environment (PATH aside), working directory and open files (devices,
    /// sockets and pipes aside).
    fn assert_reads_only_its_own(&mut self) {
        let root = self.root.display().to_string();
        let exe = bin().display().to_string();
        let mut checked = 0;
        for p in &mut self.procs {
            if p.try_wait().unwrap().is_some() {
                continue;
            }
            let proc_dir = PathBuf::from(format!("/proc/{}", p.id()));
            let mut held: Vec<(String, String)> = Vec::new();
            let cmdline = std::fs::read(proc_dir.join("cmdline")).unwrap();
            for a in cmdline.split(|b| *b == 0).skip(1) {
                held.push(("argument".into(), String::from_utf8_lossy(a).into()));
            }
            let environ = std::fs::read(proc_dir.join("environ")).unwrap();
            for kv in environ.split(|b| *b == 0) {
                let kv = String::from_utf8_lossy(kv);
                if let Some((k, v)) = kv.split_once('=') {
                    // a credential is no path, whatever its first character (moto's secret
                    // keys are base64 and may start with '/')
                    let credential = ["_KEY", "_SECRET", "_TOKEN", "_PASSWORD"]
                        .iter()
                        .any(|s| k.ends_with(s));
                    if k != "PATH" && !credential {
                        held.push((format!("${k}"), v.to_string()));
                    }
                }
            }
            let cwd = std::fs::read_link(proc_dir.join("cwd")).unwrap();
            held.push(("cwd".into(), cwd.display().to_string()));
            for fd in std::fs::read_dir(proc_dir.join("fd")).unwrap().flatten() {
                if let Ok(target) = std::fs::read_link(fd.path()) {
                    let t = target.display().to_string();
                    if t.starts_with('/') && !t.starts_with("/dev/") && t != exe {
                        held.push((format!("fd {:?}", fd.file_name()), t));
                    }
                }
            }
            for (what, v) in held {
                if v.starts_with('/') {
                    assert!(
                        v.starts_with(&root),
                        "pid {} holds {v} ({what}), outside its machine {root}",
                        p.id()
                    );
                }
            }
            checked += 1;
        }
        assert!(checked > 0, "no live process on {root}");
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        for p in &mut self.procs {
            let _ = p.kill();
            let _ = p.wait();
        }
    }
}

/// The box: Redis over TLS with the deployment's ACL users, moto, and a temporary directory
/// holding the machines, migrated by B's operator.
struct World {
    tmp: tempfile::TempDir,
    redis: TlsRedis,
    moto: Moto,
}

impl World {
    fn new() -> World {
        let tmp = tempfile::tempdir().unwrap();
        let redis_host = tmp.path().join("redis-host");
        std::fs::create_dir_all(&redis_host).unwrap();
        let redis = TlsRedis::start(&redis_host, &acl_file("t", &[]), false);
        let moto = Moto::start();
        World { tmp, redis, moto }
    }

    /// A (the BTC bars in its data directory) and B (none), both with Redis, each S3 client
    /// with its own per-request timeout; B's operator migrates.
    fn a_and_b(&self, a_s3_timeout: u32, b_s3_timeout: u32) -> (Machine, Machine) {
        let a = self
            .machine("machine-a", true, a_s3_timeout)
            .with_bars(&["BTC_5m.csv"]);
        let b = self.machine("machine-b", true, b_s3_timeout);
        b.ok(Some("operator"), &["migrate"]);
        (a, b)
    }

    fn machine(&self, name: &str, redis: bool, s3_timeout: u32) -> Machine {
        Machine::new(
            self.tmp.path(),
            name,
            redis.then_some(&self.redis),
            &self.moto,
            s3_timeout,
        )
    }
}

/// Enqueues a tiny built-in run of `experiments` experiments (one round) from `op` with
/// `extra` flags; returns its id.
fn enqueue_run(op: &Machine, experiments: &str, extra: &[&str]) -> String {
    common::run_id_of(&op.ok(Some("operator"), &common::tiny_run_args(experiments, extra)))
}

/// Waits (up to `secs`) until `done` holds of the run record (read by `op`), and returns it;
/// on timeout fails with the record and `logs()`.
fn wait_run(
    op: &Machine,
    id: &str,
    secs: u64,
    logs: impl Fn() -> String,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let r = op.json(&["runs", "show", id, "--json"]);
        if done(&r) {
            return r;
        }
        assert!(Instant::now() < deadline, "run {id}: {r}\n{}", logs());
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn finished(r: &Value) -> bool {
    ["succeeded", "failed", "cancelled"].contains(&r["state"].as_str().unwrap_or(""))
}

/// `field` of `jobs stats`, summed over the types `types` (every type when empty).
fn stat(op: &Machine, types: &[&str], field: &str) -> u64 {
    op.json(&["jobs", "stats", "--json"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| types.is_empty() || types.contains(&s["type"].as_str().unwrap_or("")))
        .map(|s| s[field].as_u64().unwrap_or(0))
        .sum()
}

/// Fails unless every object under `artifacts/` in the bucket is whole: its bytes hash to the
/// hex in its key (and to the hash recorded with it); returns how many there are.
fn assert_artifacts_whole(moto: &Moto, when: &str) -> usize {
    let objects = moto.objects(BUCKET, "artifacts/");
    for (key, o) in &objects {
        let hex = key.strip_prefix("artifacts/sha256/").unwrap_or(key);
        assert_eq!(o.sha256, hex, "{when}: {key} is partial ({} bytes)", o.size);
        if let Some(r) = &o.recorded {
            assert_eq!(r, hex, "{when}: {key} records another hash");
        }
    }
    objects.len()
}

/// The files of an artifact: its manifest in the bucket, read with boto3 (name -> SHA-256).
fn manifest_files(moto: &Moto, sha: &str) -> Vec<(String, String)> {
    let m: Value =
        serde_json::from_slice(&moto.object_bytes(BUCKET, &format!("artifacts/sha256/{sha}")))
            .unwrap();
    m["files"]
        .as_object()
        .unwrap_or_else(|| panic!("manifest {sha}: {m}"))
        .iter()
        .map(|(name, f)| (name.clone(), f["sha256"].as_str().unwrap().to_string()))
        .collect()
}

/// Fails unless the folder `dir` holds the artifact `sha` file for file, each byte for byte
/// the bucket's object.
fn assert_holds_artifact(moto: &Moto, dir: &Path, sha: &str) {
    let files = manifest_files(moto, sha);
    assert!(!files.is_empty());
    for (name, file_sha) in files {
        let local = std::fs::read(dir.join(&name))
            .unwrap_or_else(|e| panic!("{}/{name}: {e}", dir.display()));
        assert_eq!(sha256_hex(&local), file_sha, "{}/{name}", dir.display());
        let remote = moto.object_bytes(BUCKET, &format!("artifacts/sha256/{file_sha}"));
        assert!(
            local == remote,
            "{}/{name} is not the bucket's",
            dir.display()
        );
    }
}

#[test]
fn three_machines_share_only_tls_redis_and_the_bucket() {
    let t0 = Instant::now();
    let w = World::new();
    let (mut a, mut b) = w.a_and_b(30, 30);
    let c = w
        .machine("machine-c", false, 30)
        .with_bars(&["BTC_5m.csv", "BTC_1m.csv"]);
    a.worker("trainer", QUICK);
    b.worker("agents,publisher,engine", QUICK);
    let id = enqueue_run(&b, "4", &["--publish"]);
    let logs = || format!("A: {}\nB: {}", a.logs(), b.logs());
    let run = wait_run(&b, &id, 240, logs, finished);
    let ran_s = t0.elapsed().as_secs_f64();
    assert_eq!(run["state"], "succeeded", "{run}\n{}", logs());
    let stages = common::stage_names(&run);
    assert_eq!(stages.last(), Some(&"publish"), "{stages:?}");
    let results = run["task"]["results"].as_array().unwrap();
    assert_eq!(results.len(), 4, "{run}");

    // every path a live process of A or B holds is its own
    a.assert_reads_only_its_own();
    b.assert_reads_only_its_own();

    // no record carries a path of any machine
    let roots = [
        a.root.as_path(),
        b.root.as_path(),
        c.root.as_path(),
        w.tmp.path(),
    ];
    assert_no_paths("run", &run, &roots);
    let steps = run["attempt"].as_u64().unwrap();
    for step in 0..=steps {
        for stage in ["plan", "train", "check", "debug", "publish"] {
            let job = format!("run-{id}-{stage}-{step}");
            let out = b.run(Some("operator"), &["jobs", "status", &job, "--json"]);
            if out.status.success() {
                let st: Value = serde_json::from_slice(&out.stdout).unwrap();
                assert_no_paths(&format!("job {job}"), &st, &roots);
            }
        }
    }

    // B has no bars: it read the run's dataset, published by A's train stage, from the bucket
    // into its cache; and the checkpoint, by reference
    assert!(std::fs::read_dir(b.dir("data")).unwrap().next().is_none());
    let ds = run["task"]["options"]["dataset"].as_str().unwrap();
    let manifest: Value =
        serde_json::from_slice(&w.moto.object_bytes(BUCKET, &format!("datasets/{ds}.json")))
            .unwrap();
    let bars_sha = manifest["artifact"]["sha256"].as_str().unwrap();
    assert_holds_artifact(&w.moto, &b.dir("work/cache").join(bars_sha), bars_sha);
    let best = run["summary"]["best_artifact"]["sha256"]
        .as_str()
        .unwrap_or_else(|| panic!("{run}"));
    assert_holds_artifact(&w.moto, &b.dir("work/cache").join(best), best);
    assert!(
        !a.dir("work/cache").join(best).exists(),
        "A fetched no checkpoint"
    );
    assert!(!b.dir("work").join(&id).exists(), "B trained nothing");
    // the bucket holds only whole artifacts
    assert!(assert_artifacts_whole(&w.moto, "after the run") >= 5);

    // C, with no Redis, serves the published model, mirrored from the bucket
    let model_dir = run["task"]["published"]["model_dir"].as_str().unwrap();
    assert!(model_dir.starts_with(&format!("models/{id}/")), "{run}");
    let port = free_port().to_string();
    let mut check = c.command(None);
    check
        .args([
            "mine",
            "--check",
            "--json",
            "--model",
            "latest",
            "--store-dir",
        ])
        .arg(c.dir("store"))
        .arg("--data-dir")
        .arg(c.dir("data"))
        .args(["--hotkey-uri", "//Bob", "--allow-hotkeys", ALICE])
        .args(["--port", &port])
        // a debug build on a busy machine: the model's answer may take longer than 5 s
        .args(["--model-budget-ms", "60000"])
        .env("PYTH_HERMES_URL", "http://127.0.0.1:9")
        .env("BINANCE_API_URL", "http://127.0.0.1:9")
        .env("HYPERLIQUID_API_URL", "http://127.0.0.1:9");
    let out = check.output().unwrap();
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    assert!(out.status.success(), "{v}");
    let served = v["checks"]["model"]["detail"].as_str().unwrap();
    let ours = c.dir("store").join(model_dir);
    let ours = ours.display().to_string();
    assert!(
        served.contains(ours.trim_end_matches('/')),
        "mine --check does not name {model_dir}: {v}"
    );
    let answer = v["checks"]["answer"]["detail"].as_str().unwrap();
    assert!(
        answer.contains(&format!("24 h prompt: {}", ours.trim_end_matches('/'))),
        "the 24 h prompt was not answered by the published model: {answer}"
    );
    for f in ["model.safetensors", "spec.json"] {
        let key = format!("{}/{f}", model_dir.trim_end_matches('/'));
        let local = std::fs::read(c.dir("store").join(&key)).unwrap();
        assert!(
            local == w.moto.object_bytes(BUCKET, &key),
            "C's copy of {key} is not the bucket's"
        );
    }

    // nothing any role sent was refused by its ACL
    assert_nothing_refused(&w.redis, &w.redis.tls());
    eprintln!(
        "three machines: run of 4 in {ran_s:.1} s, all checks in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}

#[test]
fn a_trainer_killed_mid_upload_leaves_no_partial_object_and_the_run_succeeds() {
    let t0 = Instant::now();
    let w = World::new();
    let (mut a, mut b) = w.a_and_b(60, 30);
    // the bars go to the bucket first, so every artifact PUT of the run is a checkpoint's
    let (data, store) = (a.dir("data"), a.dir("store"));
    let (data, store) = (data.to_str().unwrap(), store.to_str().unwrap());
    let publish = ["data", "publish", "--assets", "BTC", "--timeframe", "5m"];
    let publish: Vec<&str> = publish
        .into_iter()
        .chain(["--data-dir", data, "--store", store])
        .collect();
    let ds = a.ok(None, &publish).trim().to_string();
    let bars = assert_artifacts_whole(&w.moto, "after the bars");
    let lease = ["--lease-ms", "2000", "--heartbeat-ms", "500"];
    let flags: Vec<&str> = QUICK.iter().chain(lease.iter()).copied().collect();
    let first = a.worker("trainer", &flags);
    b.worker("agents,publisher,engine", &flags);
    let is_artifact_put = |l: &String| l.starts_with(&format!("PUT /{BUCKET}/artifacts/"));
    let puts_before = w
        .moto
        .requests()
        .iter()
        .filter(|l| is_artifact_put(l))
        .count();
    let id = enqueue_run(&b, "2", &["--dataset", &ds]);
    // the first checkpoint PUT: freeze the store, so the trainer's next request hangs
    let deadline = Instant::now() + Duration::from_secs(120);
    while w
        .moto
        .requests()
        .iter()
        .filter(|l| is_artifact_put(l))
        .count()
        == puts_before
    {
        assert!(
            Instant::now() < deadline,
            "no checkpoint upload: {:?}\n{}",
            w.moto.requests(),
            a.logs()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    w.moto.signal("STOP");
    let puts_at_stop = w
        .moto
        .requests()
        .iter()
        .filter(|l| is_artifact_put(l))
        .count();
    std::thread::sleep(Duration::from_millis(500));
    let run = b.json(&["runs", "show", &id, "--json"]);
    assert_eq!(
        run["stage"], "train",
        "the trainer finished uploading before the store froze: {run}"
    );
    a.kill(first);
    w.moto.signal("CONT");
    // part of a checkpoint is there, and only whole objects
    let whole = assert_artifacts_whole(&w.moto, "right after the kill");
    assert!(whole > bars, "no checkpoint object before the kill");
    // a second trainer takes the killed one's work over once its lease lapses
    a.worker("trainer", &flags);
    let logs = || format!("A: {}\nB: {}", a.logs(), b.logs());
    let run = wait_run(&b, &id, 120, logs, finished);
    assert_eq!(run["state"], "succeeded", "{run}\n{}", logs());
    // the killed trainer's job (the train stage's, or its children: whichever types the
    // trainer runs) was reclaimed, counted as a stalled attempt, and none died
    let stalled = stat(&b, &[], "stalled");
    assert!(
        stalled >= 1,
        "no job was reclaimed: {}",
        b.ok(Some("operator"), &["jobs", "stats", "--json"])
    );
    assert_eq!(stat(&b, &[], "dead"), 0);
    let n = assert_artifacts_whole(&w.moto, "after the run");
    assert!(
        n > whole,
        "the second trainer stored the checkpoints ({n} objects)"
    );
    let best = run["summary"]["best_artifact"]["sha256"].as_str().unwrap();
    assert_holds_artifact(&w.moto, &b.dir("work/cache").join(best), best);
    eprintln!(
        "trainer killed mid-upload: {} checkpoint PUTs before the freeze, {whole} whole \
         artifacts after the kill ({bars} of them the bars), {n} at the end, {stalled} \
         reclaimed; run succeeded in {:.1} s",
        puts_at_stop - puts_before,
        t0.elapsed().as_secs_f64()
    );
}

#[test]
fn a_store_frozen_during_the_check_is_an_environment_error_retried_never_debugged() {
    let t0 = Instant::now();
    let w = World::new();
    // B's S3 client gives up after 1 s and does not retry, so each check attempt is quick
    let (mut a, mut b) = w.a_and_b(30, 1);
    let planner = b.worker("agents,engine", QUICK);
    let id = enqueue_run(&b, "1", &[]);
    let logs = || format!("A: {}\nB: {}", a.logs(), b.logs());
    wait_run(&b, &id, 60, logs, |r| r["stage"] == "train");
    // B is gone while A trains; the store freezes before B comes back to check
    b.kill(planner);
    a.worker("trainer", QUICK);
    let logs = || format!("A: {}\nB: {}", a.logs(), b.logs());
    let run = wait_run(&b, &id, 90, logs, |r| r["stage"] == "check");
    let check_job = format!("run-{id}-check-{}", run["attempt"]);
    w.moto.signal("STOP");
    // a second after each failure, so the test sees two go by and wakes the store before the
    // third and last attempt
    let slow = ["--retry-base-ms", "1000", "--retry-cap-ms", "1000"];
    b.worker("agents,engine", &slow);
    let deadline = Instant::now() + Duration::from_secs(30);
    let failed = loop {
        let out = b.run(Some("operator"), &["jobs", "status", &check_job, "--json"]);
        if out.status.success() {
            let st: Value = serde_json::from_slice(&out.stdout).unwrap();
            if st["error"].is_string() && st["attempt"].as_u64() >= Some(2) {
                break st;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the check never failed\n{}",
            b.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    w.moto.signal("CONT");
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.starts_with("environment:") && error.contains("answer"),
        "{failed}"
    );
    assert_ne!(failed["state"], "dead", "{failed}");
    let logs = || format!("A: {}\nB: {}", a.logs(), b.logs());
    let run = wait_run(&b, &id, 60, logs, finished);
    assert_eq!(run["state"], "succeeded", "{run}\n{}", logs());
    let stages = common::stage_names(&run);
    assert!(stages.contains(&"check"), "{stages:?}");
    assert!(!stages.contains(&"debug"), "the debugger ran: {stages:?}");
    let st = b.json(&["jobs", "status", &check_job, "--json"]);
    assert_eq!(st["state"], "completed", "{st}");
    assert!(st["starts"].as_u64().unwrap_or(0) >= 3, "{st}");
    assert!(stat(&b, &["check"], "retried") >= 2);
    assert_eq!(
        stat(&b, &["debug"], "enqueued"),
        0,
        "a debug job was enqueued"
    );
    eprintln!(
        "store frozen during the check: failure {error:?} on attempt {}; the check job ended {} \
         after {} starts; run succeeded in {:.1} s",
        failed["attempt"],
        st["state"],
        st["starts"],
        t0.elapsed().as_secs_f64()
    );
}
