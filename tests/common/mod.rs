//! Test harness: a real `redis-server` per test on a free port, in a temp dir.
//!
//! Never touches port 6379. Each server is killed when its handle drops.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use engine::queue::Queue;

pub mod agents;
pub mod basilica;
pub mod candidates;
pub mod chat;
pub mod s3;
pub mod tls;

/// A child process killed (and reaped) when dropped.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    pub dir: tempfile::TempDir,
    args: Vec<String>,
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl RedisServer {
    /// A throwaway server: no persistence.
    pub fn start() -> Self {
        Self::start_with(&["--save", "", "--appendonly", "no"])
    }

    /// A server with extra arguments (e.g. AOF settings).
    pub fn start_with(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut s = RedisServer {
            child: None,
            port: free_port(),
            dir,
            args: extra.iter().map(|s| s.to_string()).collect(),
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "redis-server must be installed (apt-get install redis-server; .ci/run does it)",
            );
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut c) = engine::config::redis_client(&self.url())
                .map_err(|e| redis::RedisError::from(std::io::Error::other(e)))
                .and_then(|c| c.get_connection())
            {
                if redis::cmd("PING").query::<String>(&mut c).is_ok() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not come up on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The server's process id, while it runs (to SIGSTOP it, say).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Starts it again on the same port and directory.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn conn(&self) -> redis::Connection {
        engine::config::redis_client(&self.url())
            .unwrap()
            .get_connection()
            .unwrap()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A migrated queue under a fresh prefix.
pub async fn queue(redis: &RedisServer) -> Queue {
    queue_with(redis, Default::default()).await
}

/// A migrated queue under a fresh prefix, with these tunables.
pub async fn queue_with(redis: &RedisServer, cfg: engine::config::QueueConfig) -> Queue {
    let q = Queue::new(&redis.url(), "t", cfg).unwrap();
    engine::migrate::migrate(&q).await.unwrap();
    q
}

/// The `synth-city` binary of this build (for a program outside the tests, such as
/// examples/bench_fleet.rs, the one in the target directory above its own).
pub fn bin() -> PathBuf {
    match option_env!("CARGO_BIN_EXE_synth-city") {
        Some(p) => PathBuf::from(p),
        None => {
            let exe = std::env::current_exe().unwrap();
            exe.ancestors().nth(2).unwrap().join("synth-city")
        }
    }
}

/// A `synth-city` command against `url` under prefix `t`, logging only warnings.
pub fn cli_command(url: &str) -> Command {
    let mut cmd = Command::new(bin());
    cmd.args(["--redis-url", url, "--prefix", "t"])
        .env("RUST_LOG", "warn");
    cmd
}

/// Runs `cmd`, fails the test with its stderr unless it succeeds, and returns its stdout.
pub fn stdout_of(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Enqueues one job with the CLI (prefix `t`, no store credentials) and waits up to `secs` for
/// its result; fails the test if it dies or never finishes.
pub fn run_job_cli(
    url: &str,
    job_type: &str,
    payload: &serde_json::Value,
    secs: u64,
) -> serde_json::Value {
    let cli = |args: &[&str]| stdout_of(cli_command(url).args(args).env_remove("HIPPIUS_ENDPOINT"));
    let out = cli(&[
        "jobs",
        "enqueue",
        "--type",
        job_type,
        "--payload",
        &payload.to_string(),
        "--json",
    ]);
    let id = serde_json::from_str::<serde_json::Value>(&out).unwrap()[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        let st: serde_json::Value =
            serde_json::from_str(&cli(&["jobs", "status", &id, "--json"])).unwrap();
        match st["state"].as_str() {
            Some("completed") => return st["result"].clone(),
            Some("dead") => panic!("{job_type} died: {st}"),
            _ => {}
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{job_type} never finished: {st}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// A pipeline budget small enough for a debug build: tiny models, few steps, few windows
/// (`synth-city pipeline` flags).
pub const TINY: &[&str] = &[
    "--epochs",
    "1",
    "--steps-per-epoch",
    "2",
    "--d-model",
    "8",
    "--seq-len",
    "16",
    "--batch-size",
    "2",
    "--n-paths",
    "4",
    "--eval-windows",
    "2",
    "--eval-paths",
    "50",
];

/// [`TINY`] as a budget, with one experiment in one round.
pub fn tiny_budget() -> trainer::experiments::Budget {
    trainer::experiments::Budget {
        experiments: 1,
        epochs: 1,
        steps_per_epoch: 2,
        d_model: 8,
        seq_len: 16,
        batch_size: 2,
        n_paths: 4,
        eval_windows: 2,
        eval_paths: 50,
        rounds: 1,
        ..Default::default()
    }
}

/// Trains a tiny BTC checkpoint of `timeframe` (TCN + GBM head, 3 steps) on the bars in `data`
/// with the CLI, under `out`; returns its folder.
pub fn tiny_checkpoint(data: &std::path::Path, out: &std::path::Path, timeframe: &str) -> PathBuf {
    let o = Command::new(bin())
        .args([
            "experiment",
            "--blocks",
            "TCNBlock",
            "--head",
            "GBMHead",
            "--epochs",
            "1",
        ])
        .args([
            "--asset",
            "BTC",
            "--timeframe",
            timeframe,
            "--d-model",
            "8",
            "--seq-len",
            "16",
        ])
        .args([
            "--steps-per-epoch",
            "3",
            "--eval-windows",
            "2",
            "--eval-paths",
            "50",
            "--json",
        ])
        .arg("--data-dir")
        .arg(data)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    PathBuf::from(v["checkpoint"].as_str().unwrap())
}

/// Polls `f` until it returns true or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while !f().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Starts a `synth-city worker` process (prefix `t`) with extra flags; its
/// output is discarded. The worker is killed when the thread that started it
/// ends (a test that panics leaves no worker behind; workers reconnect to a
/// vanished Redis forever, by design).
pub fn spawn_worker(url: &str, flags: &[&str]) -> Child {
    spawn_worker_env(url, flags, &[])
}

/// [`spawn_worker`] with extra environment variables.
pub fn spawn_worker_env(url: &str, flags: &[&str], env: &[(&str, &str)]) -> Child {
    let mut cmd = worker_command(url, flags);
    cmd.envs(env.iter().copied());
    cmd.spawn().unwrap()
}

/// The command of a `synth-city worker` process (prefix `t`) with `flags`, its output
/// discarded, killed when the thread that spawns it ends; the caller adds what else it needs
/// (environment, working directory) and spawns it.
pub fn worker_command(url: &str, flags: &[&str]) -> Command {
    let mut cmd = Command::new(bin());
    cmd.args(["--redis-url", url, "--prefix", "t", "worker"])
        .args(flags)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    die_with_parent(&mut cmd);
    cmd
}

/// Makes the process `cmd` spawns die (SIGKILL) when the thread that spawned it ends, so a
/// test that panics leaves nothing running.
pub fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// The command of a worker on a machine of its own: working directory `root`, bars in
/// `<root>/data`, scratch in `<root>/work`, sharing only Redis (`url`) and the store
/// directory `store` (no bucket, device or LLM key from this environment); the caller
/// spawns it.
pub fn machine_command(
    url: &str,
    root: &std::path::Path,
    store: &std::path::Path,
    flags: &[&str],
) -> Command {
    let mut cmd = worker_command(url, flags);
    cmd.arg("--data-dir")
        .arg(root.join("data"))
        .arg("--work-dir")
        .arg(root.join("work"))
        .arg("--store")
        .arg(store)
        .current_dir(root)
        .env_remove("HIPPIUS_ENDPOINT")
        .env_remove("SYNTH_DEVICE")
        .env_remove("CHUTES_API_KEY");
    cmd
}

/// A job's state (`""` when it has no record).
pub async fn job_state(q: &Queue, id: &str) -> String {
    q.status(id)
        .await
        .unwrap()
        .map(|s| s.state)
        .unwrap_or_default()
}

/// Reads one HTTP/1.1 request: its head (request line and headers, lower-cased) and its
/// body (`content-length` bytes). `None` when the peer closes or fails first.
pub fn read_http_request(s: &mut impl std::io::Read) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..p]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= p + 4 + len {
                return Some((head, buf[p + 4..p + 4 + len].to_vec()));
            }
        }
    }
}

/// A local OpenAI-compatible chat-completions stand-in: answers every request with one
/// `finish` tool call (std threads; enough for one agent turn). `base_url` ends in `/v1`;
/// `heads` holds each request's head (request line and headers, lower-cased).
pub struct ChatServer {
    pub base_url: String,
    pub heads: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl ChatServer {
    pub fn start() -> Self {
        use std::io::Write;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let heads = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = heads.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { return };
                if let Some((head, _)) = read_http_request(&mut s) {
                    seen.lock().unwrap().push(head);
                }
                let args = serde_json::json!({"success": true, "result": "{\"experiments\": []}", "summary": "plan"}).to_string();
                let body = serde_json::json!({
                    "id": "c1", "object": "chat.completion", "created": 1, "model": "m",
                    "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant",
                        "tool_calls": [{"id": "call_0", "type": "function", "function": {"name": "finish", "arguments": args}}]}}],
                    "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
                })
                .to_string();
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        ChatServer {
            base_url: format!("http://{addr}/v1"),
            heads,
        }
    }
}

/// A run's stage records (`task.stages` of a run, `stages` of a summary) as (definition
/// stage name, stage job type, ok), in order.
pub fn stage_rows(stages: &serde_json::Value) -> Vec<(String, String, bool)> {
    stages
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["stage"].as_str().unwrap().to_string(),
                s["ok"].as_bool().unwrap(),
            )
        })
        .collect()
}

/// The stage names of a run record (`runs show --json`, `GET /pipeline/runs/{id}`), in order.
pub fn stage_names(run: &serde_json::Value) -> Vec<&str> {
    run["task"]["stages"]
        .as_array()
        .map(|a| a.iter().filter_map(|s| s["stage"].as_str()).collect())
        .unwrap_or_default()
}

/// Spawns a long-running `synth-city` process with its stderr in `log`, killed with the test.
pub fn spawn_logged(mut cmd: Command, log: &std::path::Path) -> Child {
    cmd.stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    die_with_parent(&mut cmd);
    cmd.spawn().unwrap()
}

/// The text of the file at `path`; empty when it cannot be read (a log not written yet).
pub fn read_log(path: &std::path::Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// Every string in `v`, with where it is.
pub fn strings<'a>(v: &'a serde_json::Value, at: String, out: &mut Vec<(String, &'a str)>) {
    match v {
        serde_json::Value::String(s) => out.push((at, s)),
        serde_json::Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                strings(x, format!("{at}[{i}]"), out);
            }
        }
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                strings(x, format!("{at}.{k}"), out);
            }
        }
        _ => {}
    }
}

/// Fails naming the place when a string of `v` is an absolute path or names any of `dirs`.
pub fn assert_no_paths(what: &str, v: &serde_json::Value, dirs: &[&std::path::Path]) {
    let mut all = Vec::new();
    strings(v, String::new(), &mut all);
    for (at, s) in all {
        assert!(!s.starts_with('/'), "{what}{at} is an absolute path: {s:?}");
        for d in dirs {
            let d = d.display().to_string();
            assert!(!s.contains(&d), "{what}{at} names {d}: {s:?}");
        }
    }
}

/// A Python venv `target/venvs/<name>` with `pip install <pip_args>` (shell words) done, made
/// once under `flock` so parallel tests install it once; fails, saying why, when it cannot be
/// installed. Returns the venv's folder.
pub fn python_venv(name: &str, pip_args: &str) -> PathBuf {
    let venvs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/venvs");
    let venv = venvs.join(name);
    let marker = venv.join(".installed");
    if marker.exists() {
        return venv;
    }
    std::fs::create_dir_all(&venvs).unwrap();
    let script = format!(
        "test -f '{m}' || {{ rm -rf '{v}' && python3 -m venv '{v}' && '{v}/bin/pip' install -q {pip_args} && touch '{m}'; }}",
        m = marker.display(),
        v = venv.display(),
    );
    let out = Command::new("flock")
        .arg(venvs.join(format!("{name}.lock")))
        .args(["sh", "-c", &script])
        .output()
        .expect("run flock (util-linux; ops/test.sh installs it) to install a Python venv");
    assert!(
        out.status.success() && marker.exists(),
        "could not install {name} into {} (python3 -m venv + pip install {pip_args}): {}\n{}",
        venv.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    venv
}

/// Waits until something listens on 127.0.0.1:`port` (`what` in the failure), up to `secs`.
pub fn wait_listening(port: u16, secs: u64, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The arguments of `synth-city pipeline --enqueue-only --json` for a tiny built-in run of
/// `experiments` experiments in one round ([`TINY`]'s budget), with `extra` flags.
pub fn tiny_run_args<'a>(experiments: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "pipeline",
        "--enqueue-only",
        "--max-experiments",
        experiments,
    ];
    args.extend_from_slice(&["--rounds", "1", "--agents", "builtin", "--json"]);
    args.extend_from_slice(extra);
    args.extend_from_slice(TINY);
    args
}

/// The `run_id` in `pipeline --json`'s output.
pub fn run_id_of(out: &str) -> String {
    serde_json::from_str::<serde_json::Value>(out.trim()).unwrap()["run_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no run_id in {out}"))
        .to_string()
}

/// One HTTP/1.1 request to 127.0.0.1:`port` (JSON body, `Connection: close`); returns
/// (status, raw headers, body).
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
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

pub fn dechunk(mut s: &str) -> String {
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

/// A tiny `experiment` spec (LSTM, GBM head, d_model 8, seq_len 16, one epoch of one step, 4
/// paths, one evaluation window of 20 paths) on BTC 5m bars: seconds on a CPU.
pub fn tiny_experiment_spec() -> serde_json::Value {
    let mut s = serde_json::to_value(trainer::zoo::spec::ExperimentSpec::new(
        &["LSTMBlock"],
        "GBMHead",
    ))
    .unwrap();
    s["model"]["backbone"]["d_model"] = serde_json::json!(8);
    s["model"]["backbone"]["seq_len"] = serde_json::json!(16);
    for (k, v) in [
        ("epochs", 1),
        ("steps_per_epoch", 1),
        ("batch_size", 2),
        ("n_paths", 4),
        ("eval_windows", 1),
        ("eval_paths", 20),
    ] {
        s["training"][k] = serde_json::json!(v);
    }
    s
}
