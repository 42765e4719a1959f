//! The agent loop against a local HTTP server that speaks the OpenAI chat-completions protocol
//! (tokio `TcpListener` on 127.0.0.1:0, a minimal HTTP/1.1 responder) and plays scripted
//! replies. The real client is under test: its base URL points at the server.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

/// One scripted reply.
#[derive(Clone)]
enum Reply {
    /// HTTP status, extra headers, body.
    Http(u16, Vec<(String, String)>, String),
    /// Read the request, then say nothing for this long.
    Hang(Duration),
}

/// The headers (as lines) and JSON body of each request received.
type Seen = Arc<Mutex<Vec<(Vec<String>, Value)>>>;

/// The server: replies in order (the last one repeats), and every request body it received.
struct MockLlm {
    base_url: String,
    requests: Seen,
}

impl MockLlm {
    async fn start(script: Vec<Reply>) -> MockLlm {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let script = Arc::new(script);
        let counter = Arc::new(Mutex::new(0usize));
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let seen = seen.clone();
                let script = script.clone();
                let counter = counter.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 8192];
                    let (head_end, headers) = loop {
                        let n = sock.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..p]).to_string();
                            break (
                                p + 4,
                                head.lines().map(|l| l.to_string()).collect::<Vec<_>>(),
                            );
                        }
                    };
                    let len: usize = headers
                        .iter()
                        .find_map(|h| {
                            let (k, v) = h.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse().ok())?
                        })
                        .unwrap_or(0);
                    while buf.len() < head_end + len {
                        let n = sock.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    let body: Value = serde_json::from_slice(&buf[head_end..head_end + len])
                        .unwrap_or(Value::Null);
                    seen.lock().unwrap().push((headers, body));
                    let reply = {
                        let mut c = counter.lock().unwrap();
                        let r = script[(*c).min(script.len() - 1)].clone();
                        *c += 1;
                        r
                    };
                    match reply {
                        Reply::Hang(d) => tokio::time::sleep(d).await,
                        Reply::Http(status, extra, body) => {
                            let mut resp = format!(
                                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
                                body.len()
                            );
                            for (k, v) in extra {
                                resp.push_str(&format!("{k}: {v}\r\n"));
                            }
                            resp.push_str("\r\n");
                            resp.push_str(&body);
                            let _ = sock.write_all(resp.as_bytes()).await;
                            let _ = sock.shutdown().await;
                        }
                    }
                });
            }
        });
        MockLlm {
            base_url: format!("http://{addr}/v1"),
            requests,
        }
    }

    fn requests(&self) -> Vec<(Vec<String>, Value)> {
        self.requests.lock().unwrap().clone()
    }

    fn config(&self) -> LlmConfig {
        let mut c = LlmConfig::new(&self.base_url, "test-key", "test-model");
        c.request_timeout = Duration::from_millis(500);
        c.connect_timeout = Duration::from_millis(500);
        c.retry = RetryPolicy {
            retries: 2,
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(20),
        };
        c
    }
}

fn completion(message: Value, usage: (u32, u32)) -> Reply {
    let body = json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1_700_000_000u32,
        "model": "test-model",
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": usage.0, "completion_tokens": usage.1,
                  "total_tokens": usage.0 + usage.1},
    });
    Reply::Http(200, vec![], body.to_string())
}

fn tool_calls(calls: &[(&str, &str)]) -> Reply {
    let calls: Vec<Value> = calls
        .iter()
        .enumerate()
        .map(|(i, (name, args))| {
            json!({"id": format!("call_{i}"), "type": "function",
                   "function": {"name": name, "arguments": args}})
        })
        .collect();
    completion(
        json!({"role": "assistant", "content": null, "tool_calls": calls}),
        (100, 10),
    )
}

fn text(t: &str) -> Reply {
    completion(json!({"role": "assistant", "content": t}), (50, 5))
}

fn finish(success: bool, result: &str, summary: &str) -> Reply {
    let args = json!({"success": success, "result": result, "summary": summary}).to_string();
    tool_calls(&[("finish", &args)])
}

fn session(dir: &Path) -> Arc<ResearchSession> {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
    let mut s = ResearchSession::new(
        "test-run",
        data,
        dir.join("runs"),
        Arc::new(MemoryHistory::default()),
        Arc::new(FsPublisher {
            root: dir.join("published"),
        }),
    );
    s.budget = RunBudget {
        max_epochs: 1,
        max_steps_per_epoch: 2,
        max_eval_windows: 2,
        max_eval_paths: 1000,
        max_runs: 3,
    };
    Arc::new(s)
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sc-agents-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn runner(server: &MockLlm, tools: ToolRegistry, max_turns: usize) -> AgentRunner {
    AgentRunner {
        client: ChatClient::new(&server.config()).unwrap(),
        model: "test-model".into(),
        temperature: 0.3,
        max_turns,
        tools,
    }
}

/// The tool messages of a request body, in order.
fn tool_messages(body: &Value) -> Vec<String> {
    body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| m["content"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn valid_spec() -> Value {
    serde_json::to_value(trainer::zoo::spec::ExperimentSpec::new(
        &["LSTMBlock"],
        "GBMHead",
    ))
    .unwrap()
}

#[tokio::test]
async fn agents_codechecker_drives_real_tools_and_finishes() {
    let dir = tmp("checker");
    let mut bad = valid_spec();
    bad["model"]["backbone"]["blocks"] = json!(["NopeBlock"]);
    let validate_good = json!({"experiment": valid_spec()}).to_string();
    let validate_bad = json!({"experiment": bad}).to_string();
    let server = MockLlm::start(vec![
        tool_calls(&[("list_blocks", "{}")]),
        tool_calls(&[
            ("validate_experiment", &validate_bad),
            ("validate_experiment", &validate_good),
        ]),
        finish(
            true,
            "{\"passed\": true, \"param_count\": 1}",
            "spec is valid",
        ),
    ])
    .await;
    let r = runner(
        &server,
        tools_for(AgentName::CodeChecker, session(&dir)),
        10,
    )
    .run(
        "system prompt",
        &["## experiment\n\n{}".into()],
        "Validate it.",
    )
    .await;
    assert!(r.success, "{}", r.raw_text);
    assert_eq!(r.turns_used, 3);
    assert_eq!(r.structured.as_ref().unwrap()["result"]["passed"], true);
    assert_eq!(r.structured.as_ref().unwrap()["summary"], "spec is valid");
    assert_eq!(r.usage.calls, 3);
    assert_eq!(r.usage.total_tokens, 3 * 110);
    assert_eq!(r.usage_per_call.len(), 3);
    let reqs = server.requests();
    assert_eq!(reqs.len(), 3);
    // the protocol: key, model, temperature, messages, tools (the agent's plus finish)
    assert!(reqs[0]
        .0
        .iter()
        .any(|h| h.eq_ignore_ascii_case("authorization: Bearer test-key")));
    assert!(reqs[0].0[0].starts_with("POST /v1/chat/completions"));
    let b0 = &reqs[0].1;
    assert_eq!(b0["model"], "test-model");
    assert!((b0["temperature"].as_f64().unwrap() - 0.3).abs() < 1e-6);
    let roles: Vec<&str> = b0["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["system", "user", "user"]);
    let names: Vec<&str> = b0["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    for n in AgentName::CodeChecker
        .tool_names()
        .iter()
        .chain(["finish"].iter())
    {
        assert!(names.contains(n), "{n} missing from {names:?}");
    }
    // real tool output went back to the model
    let t1 = tool_messages(&reqs[1].1);
    assert_eq!(t1.len(), 1);
    assert!(t1[0].contains("TransformerBlock") && t1[0].contains("MambaBlock"));
    let t2 = tool_messages(&reqs[2].1);
    assert_eq!(t2.len(), 3);
    let bad_v: Value = serde_json::from_str(&t2[1]).unwrap();
    assert_eq!(bad_v["valid"], false);
    assert!(bad_v["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("NopeBlock"));
    let good_v: Value = serde_json::from_str(&t2[2]).unwrap();
    assert_eq!(good_v["valid"], true);
    assert!(good_v["param_count"].as_u64().unwrap() > 1000);
    // the assistant message with the tool calls precedes the tool results
    let msgs = reqs[2].1["messages"].as_array().unwrap();
    let a = msgs.iter().rposition(|m| m["role"] == "assistant").unwrap();
    assert_eq!(msgs[a]["tool_calls"].as_array().unwrap().len(), 2);
    assert_eq!(msgs[a + 1]["tool_call_id"], "call_0");
    assert_eq!(msgs[a + 2]["tool_call_id"], "call_1");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn agents_malformed_arguments_are_repaired_or_reported() {
    let dir = tmp("malformed");
    // bad JSON -> {}; a spec sent as a JSON string -> an object; an integer as a string
    let spec_as_string = json!({"experiment": valid_spec().to_string()}).to_string();
    let server = MockLlm::start(vec![
        tool_calls(&[
            ("list_heads", "{not json"),
            ("validate_experiment", &spec_as_string),
            (
                "validate_experiment",
                "{\"experiment\": \"{\\\"version\\\": 1}\"}",
            ),
            (
                "estimate_params",
                "{\"blocks\": \"LSTMBlock\", \"d_model\": \"16\"}",
            ),
            ("validate_experiment", "{}"),
        ]),
        finish(true, "not json at all", "ok"),
    ])
    .await;
    let mut tools = tools_for(AgentName::CodeChecker, session(&dir));
    tools.register(
        tools_for(AgentName::Planner, session(&dir))
            .get("estimate_params")
            .unwrap()
            .clone(),
    );
    let r = runner(&server, tools, 5).run("s", &[], "go").await;
    assert!(r.success);
    assert_eq!(
        r.structured.as_ref().unwrap()["result"],
        "not json at all",
        "non-JSON result kept as a string"
    );
    let t = tool_messages(&server.requests()[1].1);
    assert_eq!(t.len(), 5);
    assert!(
        t[0].contains("GBMHead"),
        "bad JSON arguments became {{}}: {}",
        t[0]
    );
    assert_eq!(serde_json::from_str::<Value>(&t[1]).unwrap()["valid"], true);
    let e: Value = serde_json::from_str(&t[2]).unwrap();
    assert!(
        e["error"].as_str().unwrap().contains("not a valid spec"),
        "{e}"
    );
    let p: Value = serde_json::from_str(&t[3]).unwrap();
    assert!(p["param_count"].as_u64().unwrap() > 0, "{p}");
    let missing: Value = serde_json::from_str(&t[4]).unwrap();
    assert!(
        missing["error"]
            .as_str()
            .unwrap()
            .contains("missing field `experiment`"),
        "{missing}"
    );
    assert_eq!(r.tool_calls[3].arguments["blocks"], json!(["LSTMBlock"]));
    assert_eq!(r.tool_calls[3].arguments["d_model"], json!(16));
    assert!(!r.tool_calls[2].ok && r.tool_calls[1].ok);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn agents_unknown_tool_then_implicit_finish() {
    let dir = tmp("unknown");
    let server = MockLlm::start(vec![
        tool_calls(&[("create_training_deployment", "{}")]),
        text("I am done: nothing to deploy."),
    ])
    .await;
    let r = runner(&server, tools_for(AgentName::Planner, session(&dir)), 5)
        .run("s", &[], "go")
        .await;
    assert!(r.success);
    assert!(r.structured.is_none());
    assert_eq!(r.raw_text, "I am done: nothing to deploy.");
    assert_eq!(r.turns_used, 2);
    let t = tool_messages(&server.requests()[1].1);
    assert_eq!(
        serde_json::from_str::<Value>(&t[0]).unwrap(),
        json!({"error": "Unknown tool: create_training_deployment"})
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn agents_finish_false_is_a_failure_with_its_result() {
    let server = MockLlm::start(vec![finish(
        false,
        "{\"errors\": [\"lr too high\"]}",
        "bad",
    )])
    .await;
    let r = runner(&server, ToolRegistry::new(), 5)
        .run("s", &[], "go")
        .await;
    assert!(!r.success);
    assert_eq!(r.structured.unwrap()["result"]["errors"][0], "lr too high");
    let raw: Value = serde_json::from_str(&r.raw_text).unwrap();
    assert_eq!(raw["success"], false);
}

#[tokio::test]
async fn agents_429_then_success() {
    let server = MockLlm::start(vec![
        Reply::Http(
            429,
            vec![("retry-after".into(), "0".into())],
            "{\"detail\": \"slow down\"}".into(),
        ),
        text("fine"),
    ])
    .await;
    let r = runner(&server, ToolRegistry::new(), 5)
        .run("s", &[], "go")
        .await;
    assert!(r.success, "{}", r.raw_text);
    assert_eq!(r.raw_text, "fine");
    assert_eq!(server.requests().len(), 2);
    assert_eq!(r.usage.calls, 1, "only the successful call has usage");
    assert_eq!(r.usage.prompt_tokens, 50);
}

#[tokio::test]
async fn agents_500_fails_clearly_after_the_last_retry() {
    let server = MockLlm::start(vec![Reply::Http(500, vec![], "upstream exploded".into())]).await;
    let r = runner(&server, ToolRegistry::new(), 5)
        .run("s", &[], "go")
        .await;
    assert!(!r.success);
    assert_eq!(server.requests().len(), 3, "1 attempt + 2 retries");
    assert!(
        r.raw_text
            .starts_with("LLM call failed: LLM call failed after 3 attempt(s)"),
        "{}",
        r.raw_text
    );
    assert!(
        r.raw_text.contains("HTTP 500") && r.raw_text.contains("upstream exploded"),
        "{}",
        r.raw_text
    );
    assert_eq!(r.usage.calls, 0);
}

#[tokio::test]
async fn agents_400_is_not_retried() {
    let server = MockLlm::start(vec![Reply::Http(
        400,
        vec![],
        "{\"error\": {\"message\": \"bad model\"}}".into(),
    )])
    .await;
    let r = runner(&server, ToolRegistry::new(), 5)
        .run("s", &[], "go")
        .await;
    assert!(!r.success);
    assert_eq!(server.requests().len(), 1);
    assert!(
        r.raw_text.contains("HTTP 400") && r.raw_text.contains("bad model"),
        "{}",
        r.raw_text
    );
}

#[tokio::test]
async fn agents_timeout_is_retried_then_reported() {
    let server = MockLlm::start(vec![
        Reply::Hang(Duration::from_secs(3)),
        text("after a timeout"),
    ])
    .await;
    let r = runner(&server, ToolRegistry::new(), 5)
        .run("s", &[], "go")
        .await;
    assert!(r.success, "{}", r.raw_text);
    assert_eq!(r.raw_text, "after a timeout");
    assert_eq!(server.requests().len(), 2);

    let server = MockLlm::start(vec![Reply::Hang(Duration::from_secs(3))]).await;
    let r = runner(&server, ToolRegistry::new(), 5)
        .run("s", &[], "go")
        .await;
    assert!(!r.success);
    assert_eq!(server.requests().len(), 3);
    assert!(
        r.raw_text.contains("after 3 attempt(s)") && r.raw_text.contains("timed out"),
        "{}",
        r.raw_text
    );
}

#[tokio::test]
async fn agents_turn_limit_when_the_model_never_finishes() {
    let dir = tmp("turns");
    let server = MockLlm::start(vec![tool_calls(&[("list_heads", "{}")])]).await;
    let r = runner(&server, tools_for(AgentName::Planner, session(&dir)), 4)
        .run("s", &[], "go")
        .await;
    assert!(!r.success);
    assert_eq!(r.raw_text, "max turns exhausted");
    assert_eq!(r.turns_used, 4);
    assert_eq!(server.requests().len(), 4);
    assert_eq!(r.usage.total_tokens, 4 * 110);
    assert_eq!(r.tool_calls.len(), 4);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn agents_run_agent_sends_prompt_context_and_user_message() {
    let dir = tmp("run-agent");
    let server = MockLlm::start(vec![finish(true, "{\"experiments\": []}", "plan")]).await;
    let task: Map<String, Value> = json!({
        "experiment_budget": 2,
        "prior_comparison": {"best": "lstm"},
        "user_message": "Discover the components and plan.",
    })
    .as_object()
    .unwrap()
    .clone();
    let r = run_agent(
        AgentName::Planner,
        &server.config(),
        session(&dir),
        &task,
        &RunOptions::default(),
    )
    .await
    .unwrap();
    assert!(r.success);
    let body = &server.requests()[0].1;
    let msgs = body["messages"].as_array().unwrap();
    let system = msgs[0]["content"].as_str().unwrap();
    assert!(
        system.contains("Planner") && system.contains("exactly 2 experiment(s)"),
        "{system}"
    );
    assert!(msgs[1]["content"]
        .as_str()
        .unwrap()
        .contains("\"best\": \"lstm\""));
    assert_eq!(
        msgs[2]["content"],
        "Your plan MUST include exactly 2 experiment(s)."
    );
    assert_eq!(msgs[3]["content"], "Discover the components and plan.");
    assert_eq!(
        body["tools"].as_array().unwrap().len(),
        AgentName::Planner.tool_names().len() + 1
    );
    assert!((body["temperature"].as_f64().unwrap() - 0.1).abs() < 1e-6);
    let _ = std::fs::remove_dir_all(dir);
}

/// A trainer that creates, runs (tiny budget, real BTC bars), compares, checks shapes and a
/// publisher that publishes. Skipped without `shared/data`.
#[tokio::test]
async fn agents_trainer_runs_a_real_experiment_and_publisher_publishes() {
    let dir = tmp("trainer");
    let s = session(&dir);
    if !s.data_dir.join("BTC_5m.csv").is_file() {
        eprintln!("skipped: no {}", s.data_dir.display());
        return;
    }
    let create = json!({"blocks": ["LSTMBlock"], "head": "GBMHead", "d_model": 8, "seq_len": 32,
                        "n_paths": 8, "batch_size": 4})
    .to_string();
    let server = MockLlm::start(vec![tool_calls(&[("create_experiment", &create)])]).await;
    let r = runner(&server, tools_for(AgentName::Trainer, s.clone()), 1)
        .run("s", &[], "go")
        .await;
    assert_eq!(r.raw_text, "max turns exhausted");
    let created: Value = serde_json::from_str(
        &tool_messages(&{
            // the tool result is only sent on a next turn; read it from the runner's messages
            let m: Vec<Value> = r
                .messages
                .iter()
                .map(|m| serde_json::to_value(m).unwrap())
                .collect();
            json!({"messages": m})
        })[0],
    )
    .unwrap();
    assert_eq!(created["valid"], true, "{created}");
    let mut spec = created["experiment"].clone();
    spec["training"]["eval_paths"] = json!(100);
    let run = json!({"experiment": spec, "name": "tiny-lstm", "epochs": 9}).to_string();
    let shapes = json!({"model": "tiny-lstm"}).to_string();
    let server = MockLlm::start(vec![
        tool_calls(&[("run_experiment", &run)]),
        tool_calls(&[("compare_results", "{}"), ("session_summary", "{}")]),
        finish(true, "{}", "trained"),
    ])
    .await;
    let r = runner(&server, tools_for(AgentName::Trainer, s.clone()), 5)
        .run("s", &[], "go")
        .await;
    assert!(r.success, "{}", r.raw_text);
    let reqs = server.requests();
    let ran: Value = serde_json::from_str(&tool_messages(&reqs[1].1)[0]).unwrap();
    assert_eq!(ran["status"], "ok", "{ran}");
    assert_eq!(
        ran["budget_applied"]["epochs"], 1,
        "the session budget caps epochs"
    );
    assert_eq!(ran["budget_applied"]["eval_paths"], 100);
    let crps = ran["crps"].as_f64().unwrap();
    assert!(crps > 0.0 && ran["gbm_crps"].as_f64().unwrap() > 0.0);
    let t = tool_messages(&reqs[2].1);
    let cmp: Value = serde_json::from_str(&t[1]).unwrap();
    assert_eq!(cmp["ranking"][0]["name"], "tiny-lstm");
    assert_eq!(cmp["ranking"][0]["crps"].as_f64().unwrap(), crps);
    assert_eq!(s.results().len(), 1);

    // codechecker: the trained model's response passes the validator's format checks
    let server = MockLlm::start(vec![tool_calls(&[("check_shapes", &shapes)]), text("ok")]).await;
    let r = runner(&server, tools_for(AgentName::CodeChecker, s.clone()), 3)
        .run("s", &[], "go")
        .await;
    assert!(r.success);
    let sh: Value = serde_json::from_str(&tool_messages(&server.requests()[1].1)[0]).unwrap();
    assert_eq!(sh["format_validation"], "CORRECT", "{sh}");
    assert_eq!(sh["paths"], 1000);
    assert_eq!(sh["points"], 289);
    assert_eq!(sh["ok"], true);

    // publisher: to the local directory
    let server = MockLlm::start(vec![
        tool_calls(&[
            ("publish_model", "{\"experiment_name\": \"tiny-lstm\"}"),
            ("publish_model", "{\"experiment_name\": \"nope\"}"),
        ]),
        text("published"),
    ])
    .await;
    let r = runner(&server, tools_for(AgentName::Publisher, s.clone()), 3)
        .run("s", &[], "go")
        .await;
    assert!(r.success);
    let t = tool_messages(&server.requests()[1].1);
    let p: Value = serde_json::from_str(&t[0]).unwrap();
    assert_eq!(p["published"], true, "{p}");
    let published = dir.join("published/tiny-lstm");
    assert!(published.join("model.safetensors").is_file());
    let metrics: Value =
        serde_json::from_str(&std::fs::read_to_string(published.join("metrics.json")).unwrap())
            .unwrap();
    assert_eq!(metrics["crps"].as_f64().unwrap(), crps);
    assert!(
        t[1].contains("no successful experiment named \\\"nope\\\""),
        "{}",
        t[1]
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn agents_tool_schemas_are_flat_objects_with_descriptions() {
    let s = Arc::new(ResearchSession::new(
        "t",
        "data".into(),
        std::env::temp_dir(),
        Arc::new(MemoryHistory::default()),
        Arc::new(FsPublisher {
            root: std::env::temp_dir(),
        }),
    ));
    let reg = research::research_tools(s);
    assert_eq!(reg.len(), 16);
    for name in reg.names() {
        let t = reg.get(name).unwrap();
        let p = &t.parameters;
        assert_eq!(p["type"], "object", "{name}");
        assert!(
            p.get("$schema").is_none() && p.get("definitions").is_none(),
            "{name}: {p}"
        );
        assert!(
            !p.to_string().contains("$ref"),
            "{name}: refs must be inlined: {p}"
        );
        assert!(!t.description.is_empty());
    }
    let c = &reg.get("create_experiment").unwrap().parameters;
    assert_eq!(c["required"], json!(["blocks"]));
    assert_eq!(c["properties"]["blocks"]["type"], "array");
    assert_eq!(
        coerce::declared_type(&c["properties"]["d_model"]),
        Some("integer")
    );
    assert_eq!(
        coerce::declared_type(&c["properties"]["lr"]),
        Some("number")
    );
    assert!(c["properties"]["timeframe"]["description"]
        .as_str()
        .unwrap()
        .contains("288"));
    let f = &reg.get("estimate_flops").unwrap().parameters;
    assert_eq!(
        f["properties"]["architectures"]["items"]["properties"]["blocks"]["type"],
        "array"
    );
    let v = &reg.get("validate_experiment").unwrap().parameters;
    assert_eq!(v["properties"]["experiment"]["type"], "object");
    let fin = runner::finish_tool();
    assert_eq!(fin.parameters["required"], json!(["success"]));
    assert_eq!(fin.parameters["properties"]["success"]["type"], "boolean");
    assert_eq!(
        coerce::declared_type(&fin.parameters["properties"]["result"]),
        Some("string")
    );
}
