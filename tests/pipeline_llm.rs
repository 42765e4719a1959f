//! The pipeline with the LLM agents (`--agents llm`) through a real Redis,
//! against a local server that speaks the OpenAI chat-completions protocol and
//! plays each agent's part: the planner (after a 429), the trainer (tool calls,
//! one to an unknown tool), a checker that fails once, the debugger's fix, and
//! the publisher. The real client, tools, stage handlers and store are used.

mod common;

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};

use common::chat::{finish, tool_calls};
use common::{bin, RedisServer};
use serde_json::{json, Value};
use trainer::zoo::spec::ExperimentSpec;

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data")
}

fn spec(blocks: &[&str], lr: f64) -> ExperimentSpec {
    let mut s = ExperimentSpec::new(blocks, "GBMHead");
    trainer::experiments::apply_budget(&common::tiny_budget(), &mut s);
    s.training.lr = lr;
    s
}

#[derive(Default)]
struct Script {
    calls: Vec<String>,
    planner_429: bool,
    checks: usize,
}

fn read_request(s: &mut TcpStream) -> Option<Value> {
    let (_, body) = common::read_http_request(s)?;
    serde_json::from_slice(&body).ok()
}

fn respond(s: &mut TcpStream, status: &str, body: &Value) {
    let body = body.to_string();
    let _ = write!(
        s,
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// Which agent a request is from, by the tools it is offered.
fn agent_of(req: &Value) -> &'static str {
    let tools: Vec<&str> = req["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["function"]["name"].as_str())
        .collect();
    let has = |n: &str| tools.contains(&n);
    if has("publish_model") {
        "publisher"
    } else if has("check_shapes") {
        "codechecker"
    } else if has("data_loader_info") {
        "trainer"
    } else if has("run_experiment") {
        "debugger"
    } else {
        "planner"
    }
}

/// The context message `## key` of a request, parsed as JSON.
fn context(req: &Value, key: &str) -> Option<Value> {
    let prefix = format!("## {key}\n\n");
    req["messages"].as_array()?.iter().find_map(|m| {
        let c = m["content"].as_str()?;
        serde_json::from_str(c.strip_prefix(&prefix)?).ok()
    })
}

fn answer(req: &Value, script: &Mutex<Script>) -> (&'static str, Value) {
    let agent = agent_of(req);
    let after_tool = req["messages"]
        .as_array()
        .and_then(|m| m.last())
        .is_some_and(|m| m["role"] == "tool");
    let mut s = script.lock().unwrap();
    s.calls.push(agent.to_string());
    match agent {
        "planner" if !s.planner_429 => {
            s.planner_429 = true;
            (
                "429 Too Many Requests",
                json!({"error": {"message": "slow down"}}),
            )
        }
        "planner" => (
            "200 OK",
            finish(
                true,
                json!({"experiments": [spec(&["LSTMBlock"], 1e-3)]}),
                "one LSTM",
            ),
        ),
        "trainer" if !after_tool => (
            "200 OK",
            tool_calls(&[
                ("no_such_tool", json!({})),
                (
                    "run_experiment",
                    json!({"experiment": spec(&["LSTMBlock"], 1e-3)}),
                ),
            ]),
        ),
        "trainer" => ("200 OK", finish(true, json!({"trained": 1}), "done")),
        "codechecker" => {
            s.checks += 1;
            if s.checks == 1 {
                (
                    "200 OK",
                    finish(false, json!({"success": false}), "lr too high, try 3e-4"),
                )
            } else {
                ("200 OK", finish(true, json!({"success": true}), "fine"))
            }
        }
        "debugger" => (
            "200 OK",
            finish(
                true,
                json!({"experiment": spec(&["TCNBlock"], 3e-4)}),
                "TCN at 3e-4",
            ),
        ),
        _ if !after_tool => {
            // the best of the run's comparison, by CRPS
            let rows = context(req, "comparison").expect("comparison");
            let best = rows
                .as_array()
                .unwrap()
                .iter()
                .filter(|r| r["metrics"]["crps"].is_f64())
                .min_by(|a, b| {
                    let c = |r: &Value| r["metrics"]["crps"].as_f64().unwrap();
                    c(a).total_cmp(&c(b))
                })
                .expect("a scored experiment");
            (
                "200 OK",
                tool_calls(&[("publish_model", json!({"experiment_name": best["name"]}))]),
            )
        }
        _ => ("200 OK", finish(true, json!({}), "published")),
    }
}

fn scripted_server(script: Arc<Mutex<Script>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            let script = script.clone();
            std::thread::spawn(move || {
                if let Some(req) = read_request(&mut s) {
                    let (status, body) = answer(&req, &script);
                    respond(&mut s, status, &body);
                }
            });
        }
    });
    format!("http://{addr}/v1")
}

#[test]
fn the_llm_agents_carry_a_run_through_check_debug_and_publish() {
    let redis = RedisServer::start();
    let out = Command::new(bin())
        .args(["--redis-url", &redis.url(), "--prefix", "t", "migrate"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let script = Arc::new(Mutex::new(Script::default()));
    let url = scripted_server(script.clone());
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bin())
        .args(["--redis-url", &redis.url(), "--prefix", "t", "pipeline"])
        .args(["--agents", "llm", "--publish", "--json"])
        .args(["--max-experiments", "1", "--rounds", "1"])
        // common::tiny_budget(), as flags
        .args(common::TINY)
        .arg("--data-dir")
        .arg(data_dir())
        .arg("--out")
        .arg(dir.path().join("runs"))
        .arg("--store")
        .arg(dir.path().join("store"))
        .env("CHUTES_API_KEY", "test-key")
        .env("CHUTES_BASE_URL", &url)
        .env("LLM_RETRY_BASE_DELAY_MS", "20")
        .env("LLM_RETRY_MAX_DELAY_MS", "50")
        .env_remove("HIPPIUS_ENDPOINT")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(summary["success"], true, "{summary}");
    assert_eq!(summary["agents"], "llm");
    let stages = common::stage_rows(&summary["stages"]);
    let expect = [
        ("planner", "plan", true),
        ("trainer", "train", true),
        ("check_debug", "check", false),
        ("check_debug", "debug", true),
        ("check_debug", "train", true),
        ("check_debug", "check", true),
        ("publisher", "publish", true),
    ];
    let got: Vec<(&str, &str, bool)> = stages
        .iter()
        .map(|(a, b, c)| (a.as_str(), b.as_str(), *c))
        .collect();
    assert_eq!(got, expect, "{summary}");
    // the checker at the base temperature, the debugger escalated by its round
    let temps: Vec<f64> = summary["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["temperature"].as_f64().unwrap())
        .collect();
    assert!(
        (temps[2] - 0.1).abs() < 1e-9 && (temps[3] - 0.2).abs() < 1e-9,
        "{temps:?}"
    );
    // both experiments trained: the trainer's LSTM and the debugger's TCN
    let names: Vec<&str> = summary["experiments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{summary}");
    assert!(
        names.contains(&"exp-1"),
        "the trainer agent's run: {names:?}"
    );
    assert!(names.iter().any(|n| n.starts_with("tcnblock")), "{names:?}");
    // token usage per agent and in total (100 + 10 per answered call)
    let usage = &summary["usage"];
    assert!(
        usage["total"]["total_tokens"].as_u64().unwrap() >= 110 * 7,
        "{usage}"
    );
    assert_eq!(
        usage["planner"]["calls"], 1,
        "the 429 is not a counted call: {usage}"
    );
    assert_eq!(usage["trainer"]["calls"], 2, "{usage}");
    // the publisher agent's publish_model went through the store
    let production = dir.path().join("store/models/production.json");
    assert!(production.is_file(), "no {}", production.display());
    let calls = script.lock().unwrap().calls.clone();
    assert_eq!(
        calls.iter().filter(|c| *c == "planner").count(),
        2,
        "{calls:?}"
    );
}
