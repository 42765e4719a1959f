//! `ops/setup.sh`, the README's first command, run for real: its own redis-server, scheduler,
//! bridge, worker and miner on free ports (never 6379), its state, data, work and store
//! directories in a temp dir, the market venues pointed at a closed loopback port (so the
//! bundled sample is what it uses, as on a machine without internet), and a small research
//! budget.
//!
//! The first run must end with the run succeeded and its model published in the store, the
//! dashboard's fan chart answering (`/dash/fan?asset=BTC&paths=200`: 200 with paths), the run
//! on the dashboard's snapshot, `mine --check` passed (in setup's output, and again here on
//! another port, exit 0 with the `answer` item ok, the GBM answering: a published model is a
//! candidate until it passes the promotion gate) and the miner serving. The second run must
//! start nothing (the same PIDs, "already running", no second run), and `ops/setup.sh stop`
//! must stop every process it started. A guard stops everything when the test fails part-way.
//!
//! It runs the debug binary (`SYNTH_BIN`) instead of building the release one.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{bin, free_port};
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A process is alive when /proc has it and it is not a zombie.
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .map(|(_, rest)| !rest.starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

/// The command line of a process, arguments joined by spaces.
fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// One copy of the setup: its environment and directories; dropping it stops what it started.
struct Setup {
    tmp: tempfile::TempDir,
    env: Vec<(&'static str, String)>,
    redis_port: u16,
    bridge_port: u16,
    /// Every PID seen in the PID files, for the guard.
    seen: std::cell::RefCell<BTreeMap<String, i32>>,
}

impl Setup {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let d = |s: &str| tmp.path().join(s).display().to_string();
        let mut ports = Vec::new();
        while ports.len() < 6 {
            let p = free_port();
            if p != 6379 && !ports.contains(&p) {
                ports.push(p);
            }
        }
        let closed = format!("http://127.0.0.1:{}", ports[5]);
        let run_args = "--agents builtin --assets BTC --timeframe 5m --publish \
            --max-experiments 2 --epochs 1 --rounds 1 --steps-per-epoch 3 --d-model 8 \
            --seq-len 16 --batch-size 4 --n-paths 8 --eval-windows 2 --eval-paths 50";
        let env = vec![
            ("REDIS_PORT", ports[0].to_string()),
            ("BRIDGE_PORT", ports[1].to_string()),
            ("METRICS_PORT", ports[2].to_string()),
            ("MINER_PORT", ports[3].to_string()),
            ("MINER_METRICS_PORT", ports[4].to_string()),
            ("SYNTH_CITY_PREFIX", "setup-test".to_string()),
            ("SYNTH_STATE_DIR", d("state")),
            ("SYNTH_DATA_DIR", d("data")),
            ("SYNTH_WORK_DIR", d("runs")),
            ("SYNTH_STORE_DIR", d("store")),
            ("SYNTH_BIN", bin().display().to_string()),
            ("SETUP_RUN_ARGS", run_args.to_string()),
            ("SETUP_RUN_TIMEOUT", "150".to_string()),
            ("CONCURRENCY", "2".to_string()),
            // The classical champions, on a pair the BTC checks below do not read, and small.
            ("SETUP_CLASSICAL_ASSETS", "ETH".to_string()),
            ("SETUP_CLASSICAL_WINDOWS", "20".to_string()),
            ("SETUP_CLASSICAL_PATHS", "100".to_string()),
            // No wallet: the dev hotkey; and no venue answers.
            ("BT_WALLET_PATH", d("wallets")),
            ("BINANCE_API_URL", closed.clone()),
            ("HYPERLIQUID_API_URL", closed.clone()),
            ("PYTH_HERMES_URL", closed),
        ];
        Setup {
            redis_port: ports[0],
            bridge_port: ports[1],
            tmp,
            env,
            seen: Default::default(),
        }
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// `ops/setup.sh ARGS` in this copy's environment (nothing inherited that names another
    /// Redis, directory or binary), its output collected, killed after `limit`.
    fn run(&self, args: &[&str], limit: Duration) -> Output {
        let out = self.dir("out.log");
        let err = self.dir("err.log");
        let mut cmd = Command::new("bash");
        cmd.arg(root().join("ops/setup.sh")).args(args);
        for v in [
            "REDIS_URL",
            "SYNTH_CITY_CONFIG",
            "SETUP_RUN",
            "SETUP_DOWNLOAD",
            "SETUP_MINER",
            "MINER_ARGS",
            "BT_WALLET_NAME",
            "BT_HOTKEY_NAME",
            "SYNTH_CITY_SN50_CONSTANTS",
            "RUST_LOG",
        ] {
            cmd.env_remove(v);
        }
        cmd.envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap());
        let mut child = cmd.spawn().unwrap();
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "ops/setup.sh {args:?} ran over {limit:?}; stdout:\n{}\nstderr:\n{}",
                    std::fs::read_to_string(&out).unwrap_or_default(),
                    std::fs::read_to_string(&err).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        self.pids();
        Output {
            status,
            stdout: std::fs::read(&out).unwrap(),
            stderr: std::fs::read(&err).unwrap(),
        }
    }

    /// The PID files under the state directory: name -> PID.
    fn pids(&self) -> BTreeMap<String, i32> {
        let mut m = BTreeMap::new();
        if let Ok(rd) = std::fs::read_dir(self.dir("state/pids")) {
            for e in rd.flatten() {
                let p = e.path();
                let Some(name) = p
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_suffix(".pid"))
                else {
                    continue;
                };
                if let Ok(pid) = std::fs::read_to_string(&p).unwrap().trim().parse::<i32>() {
                    m.insert(name.to_string(), pid);
                }
            }
        }
        self.seen.borrow_mut().extend(m.clone());
        m
    }

    /// `synth-city` against this copy's Redis and prefix.
    fn cli(&self) -> Command {
        let mut c = Command::new(bin());
        c.args([
            "--redis-url",
            &format!("redis://127.0.0.1:{}", self.redis_port),
            "--prefix",
            "setup-test",
        ])
        .env("RUST_LOG", "warn")
        .env_remove("REDIS_URL");
        c
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        self.pids();
        if !self.seen.borrow().values().any(|p| alive(*p)) {
            return;
        }
        let _ = Command::new("bash")
            .arg(root().join("ops/setup.sh"))
            .arg("stop")
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        // Whatever the script left (it failed, or its PID files are gone): by PID, only if the
        // process is still one of ours.
        for pid in self.seen.borrow().values() {
            let c = cmdline(*pid);
            if alive(*pid) && (c.contains("synth-city") || c.contains("redis-server")) {
                unsafe { libc::kill(*pid, libc::SIGKILL) };
            }
        }
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn get(port: u16, path: &str) -> (u16, Value) {
    let url = format!("http://127.0.0.1:{port}{path}");
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let r = reqwest::get(&url).await.unwrap();
            let status = r.status().as_u16();
            let body = r.text().await.unwrap();
            (
                status,
                serde_json::from_str(&body).unwrap_or(Value::String(body)),
            )
        })
}

fn published_model(store: &Path) -> PathBuf {
    let p: Value = serde_json::from_slice(
        &std::fs::read(store.join("models/production-5m.json"))
            .expect("a production pointer for 5m in the store"),
    )
    .unwrap();
    store.join(p["model_dir"].as_str().unwrap())
}

#[test]
fn setup_starts_the_main_job_is_idempotent_and_stops_what_it_started() {
    let s = Setup::new();

    // First run: everything, offline.
    let first = s.run(&[], Duration::from_secs(200));
    let out = text(&first);
    assert!(first.status.success(), "ops/setup.sh failed:\n{out}");
    assert!(
        out.contains("the market venues do not answer") && out.contains("filled 12 file(s)"),
        "the sample was not used as the offline fallback:\n{out}"
    );
    assert!(
        s.dir("data/BTC_5m.csv").is_file() && s.dir("data/BTC_1m.csv").is_file(),
        "{out}"
    );
    assert!(out.contains("mine --check passed"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.trim_start().starts_with("answer") && l.contains(" ok ")),
        "mine --check's answer item did not pass:\n{out}"
    );
    for name in ["redis", "scheduler", "bridge", "worker", "miner"] {
        assert!(
            out.contains(&format!("{name} started (pid")) || name == "redis",
            "{name} not started:\n{out}"
        );
    }
    let pids = s.pids();
    assert_eq!(
        pids.keys().cloned().collect::<Vec<_>>(),
        ["bridge", "miner", "redis", "scheduler", "worker"],
        "{out}"
    );
    for (name, pid) in &pids {
        assert!(alive(*pid), "{name} (pid {pid}) is not running:\n{out}");
    }

    // The run finished and its model is in the store.
    let run_id = std::fs::read_to_string(s.dir("state/run-id"))
        .unwrap()
        .trim()
        .to_string();
    let shown = common::stdout_of(s.cli().args(["runs", "show", &run_id, "--json"]));
    let run: Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(run["state"], "succeeded", "{shown}");
    let model = published_model(&s.dir("store"));
    assert!(
        model.join("model.safetensors").is_file(),
        "{}",
        model.display()
    );

    // The dashboard: the fan chart, and the run.
    let (status, fan) = get(s.bridge_port, "/dash/fan?asset=BTC&paths=200");
    assert_eq!(status, 200, "{fan}");
    assert_eq!(fan["paths"], 200);
    let points = fan["points"].as_u64().unwrap() as usize;
    assert_eq!(points, 289);
    assert_eq!(fan["quantiles"]["p50"].as_array().unwrap().len(), points);
    assert!(!fan["samples"].as_array().unwrap().is_empty());
    let (status, snap) = get(s.bridge_port, "/dash/snapshot");
    assert_eq!(status, 200, "{snap}");
    assert!(
        snap["runs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == run_id.as_str()),
        "run {run_id} not on the dashboard: {snap}"
    );

    // mine --check against the published model, on another free port (the miner holds its own).
    let check = s
        .cli()
        .args(["mine", "--check", "--json", "--hotkey-uri", "//Bob"])
        .args([
            "--allow-hotkeys",
            "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY",
        ])
        .args(["--port", &free_port().to_string()])
        .arg("--store-dir")
        .arg(s.dir("store"))
        .arg("--data-dir")
        .arg(s.dir("data"))
        .envs(s.env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&check.stdout).unwrap_or(Value::Null);
    assert!(
        check.status.success() && report["ok"] == true,
        "mine --check: {report} {}",
        String::from_utf8_lossy(&check.stderr)
    );
    // Published is not served: the run's model is a candidate until it passes the promotion
    // gate (`models promote`), so the GBM answers the 24 h prompt and the check says why.
    let answer = report["checks"]["answer"]["detail"].as_str().unwrap();
    assert!(
        answer.contains("24 h prompt: gbm (no BTC 5m champion), valid")
            && !answer.contains(model.to_str().unwrap()),
        "a model that did not pass the gate answered the 24 h prompt: {answer}"
    );
    // (ETH's pairs may have their classical champion already: the setup's promote jobs)
    assert!(
        report["checks"]["model"]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("champions: ") && !d.contains(" BTC ")),
        "{report}"
    );

    // The classical model went through the gate for ETH's two prompts on the worker, in the
    // background: a decision per pair, recorded (promoted or refused, as the sample decides).
    assert!(
        out.contains("classical:ewma-tod-t enqueued for the promotion gate"),
        "{out}"
    );
    let deadline = Instant::now() + Duration::from_secs(240);
    let decisions = loop {
        let h: Value = serde_json::from_str(&common::stdout_of(s.cli().args([
            "models",
            "history",
            "--asset",
            "ETH",
            "--json",
            "--store",
            s.dir("store").to_str().unwrap(),
        ])))
        .unwrap();
        let d = h["decisions"].as_array().cloned().unwrap_or_default();
        if d.len() >= 2 || Instant::now() > deadline {
            break d;
        }
        std::thread::sleep(Duration::from_secs(2));
    };
    let mut prompts: Vec<&str> = decisions
        .iter()
        .map(|d| {
            assert_eq!(d["candidate"], "classical:ewma-tod-t", "{d}");
            assert_eq!(d["by"], "operator", "{d}");
            d["prompt"].as_str().unwrap()
        })
        .collect();
    prompts.sort();
    assert_eq!(prompts, ["high", "low"], "{decisions:?}");

    // Second run: nothing new.
    let second = s.run(&[], Duration::from_secs(120));
    let out2 = text(&second);
    assert!(!out2.contains("enqueued for the promotion gate"), "{out2}");
    assert!(
        second.status.success(),
        "second ops/setup.sh failed:\n{out2}"
    );
    assert_eq!(
        s.pids(),
        pids,
        "the second run changed the processes:\n{out2}"
    );
    for name in ["scheduler", "bridge", "worker"] {
        assert!(
            out2.contains(&format!("{name} already running (pid {})", pids[name])),
            "{out2}"
        );
    }
    assert!(
        out2.contains(&format!(
            "redis-server already running (pid {}",
            pids["redis"]
        )),
        "{out2}"
    );
    assert!(out2.contains("the miner is already running"), "{out2}");
    assert!(out2.contains("no new run"), "{out2}");
    assert!(
        out2.contains("nothing to add from the bundled sample"),
        "{out2}"
    );
    let runs: Value =
        serde_json::from_str(&common::stdout_of(s.cli().args(["runs", "list", "--json"]))).unwrap();
    assert_eq!(runs.as_array().unwrap().len(), 1, "{runs}");

    // Stop: every process it started is gone, and nothing else was touched.
    let stop = s.run(&["stop"], Duration::from_secs(90));
    let out3 = text(&stop);
    assert!(stop.status.success(), "{out3}");
    for (name, pid) in &pids {
        assert!(
            out3.contains(&format!("stopped {name} (pid {pid})")),
            "{out3}"
        );
        assert!(!alive(*pid), "{name} (pid {pid}) still runs after stop");
    }
    assert!(s.pids().is_empty(), "PID files left: {:?}", s.pids());
    let status = s.run(&["status"], Duration::from_secs(30));
    assert!(text(&status).contains("worker not running"));
}
