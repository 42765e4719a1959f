//! What the agent tests share: a bridge with an operator key whose callers name their bot, a
//! request as a bot, a local chat-completions server that answers each request with what a
//! script says, a worker of every role pointed at it, and a tiny pipeline run to its end.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{cli_command, free_port, http, Killed};

/// `../shared/data`, the real bars the runs train on.
pub fn shared_data() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data")
        .display()
        .to_string()
}

/// A bridge with the operator key `sekret` (callers name their bot in `X-Bot-Id`).
pub fn operator_bridge(url: &str) -> (Killed, u16) {
    let port = free_port();
    let mut cmd = cli_command(url);
    cmd.args(["bridge", "--port", &port.to_string(), "--data-dir"])
        .arg(shared_data())
        .env("BRIDGE_API_KEY", "sekret")
        .env_remove("BRIDGE_LOOPBACK_OPERATOR")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    super::die_with_parent(&mut cmd);
    let child = Killed(cmd.spawn().unwrap());
    super::wait_listening(port, 10, "the bridge");
    (child, port)
}

/// A request to an [`operator_bridge`] as `bot` (None: the operator itself).
pub fn call_as(
    port: u16,
    method: &str,
    path: &str,
    bot: Option<&str>,
    body: Value,
) -> (u16, Value) {
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let mut headers = vec![("X-API-Key", "sekret")];
    if let Some(b) = bot {
        headers.push(("X-Bot-Id", b));
    }
    let (st, _, text) = http(port, method, path, &headers, &body);
    (
        st,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// A completion that calls `tool` with `args` ([`super::chat::tool_calls`] of one call).
pub fn tool_call_reply(tool: &str, args: Value) -> Value {
    super::chat::tool_calls(&[(tool, args)])
}

/// A chat-completions server on 127.0.0.1 that keeps each request's body in `seen` and
/// answers it with `reply(request)` ([`super::chat::ScriptedChat`]); its base URL.
pub fn scripted_chat(
    seen: Arc<Mutex<Vec<Value>>>,
    reply: impl Fn(&Value) -> Value + Send + Sync + 'static,
) -> String {
    super::chat::ScriptedChat::recording(seen, reply).base_url
}

/// A worker of every role in `dir`, on the shared bars, whose LLM agents talk to `llm`.
pub fn llm_worker(url: &str, dir: &Path, llm: &str) -> Killed {
    std::fs::create_dir_all(dir).unwrap();
    let mut cmd = super::worker_command(
        url,
        &[
            "--roles",
            "all",
            "--data-dir",
            &shared_data(),
            "--work-dir",
            "work",
            "--store",
            "store",
        ],
    );
    cmd.current_dir(dir)
        .env("CHUTES_API_KEY", "test-key")
        .env("CHUTES_BASE_URL", llm)
        .env_remove("HIPPIUS_ENDPOINT");
    Killed(cmd.spawn().unwrap())
}

/// Starts a tiny run as `bot` (built-in agents but for authored and authoring stages) with
/// the `extra` fields and waits for its end; the run record.
pub fn tiny_run_to_end(port: u16, bot: Option<&str>, extra: Value) -> Value {
    let mut run = json!({"max_experiments": 1, "epochs": 1, "rounds": 1, "steps_per_epoch": 2,
        "d_model": 8, "seq_len": 16, "batch_size": 2, "n_paths": 4, "eval_windows": 2,
        "eval_paths": 50, "retries": 1, "agents": "builtin"});
    if let (Some(r), Some(e)) = (run.as_object_mut(), extra.as_object()) {
        r.extend(e.clone());
    }
    let (st, r) = call_as(port, "POST", "/pipeline/run", bot, run);
    assert_eq!(st, 202, "{r}");
    let id = r["run_id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let (_, run) = call_as(port, "GET", &format!("/runs/{id}"), bot, Value::Null);
        if matches!(run["state"].as_str(), Some("succeeded" | "failed")) {
            return run;
        }
        assert!(Instant::now() < deadline, "the run did not end: {run}");
        std::thread::sleep(Duration::from_millis(300));
    }
}
