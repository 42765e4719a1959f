//! The three authoring agents (issue 20) over a real Redis, a real bridge and a real worker,
//! driven by a local chat-completions server that plays a script per agent: the pipeline
//! architect reads the run history and strategy effectiveness, adds and reorders a stage and
//! tunes the meta-strategy in an operator's run (a protected stage's removal and a shape out
//! of position order are refused by the pipeline's rules), the next run follows the new
//! shape, and a bot's run cannot change the pipeline; the author and the agent designer write
//! a component, an agent and a prompt module in the run bot's name, and cannot overwrite
//! another bot's component or a built-in.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use common::agents::{call_as, llm_worker, operator_bridge, scripted_chat, tiny_run_to_end};
use common::{stdout_of, Killed, RedisServer};
use serde_json::{json, Value};

fn cli(redis: &RedisServer) -> Command {
    common::cli_command(&redis.url())
}

fn gated_conv() -> Value {
    let file =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("workers/trainer/components/gated_conv.json");
    serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap()
}

use common::agents::tool_call_reply as tool_call;

fn finish(summary: &str) -> Value {
    tool_call(
        "finish",
        json!({"success": true, "summary": summary, "result": "{}"}),
    )
}

/// Which authoring agent sent `req` (by its tools), and its turn (tool results so far).
fn agent_and_turn(req: &Value) -> (&'static str, usize) {
    let tools: Vec<&str> = req["tools"]
        .as_array()
        .map(|t| {
            t.iter()
                .filter_map(|t| t["function"]["name"].as_str())
                .collect()
        })
        .unwrap_or_default();
    let agent = if tools.contains(&"add_stage") {
        "architect"
    } else if tools.contains(&"write_component") {
        "author"
    } else if tools.contains(&"write_agent") {
        "designer"
    } else {
        "other"
    };
    let turn = req["messages"]
        .as_array()
        .map(|m| m.iter().filter(|m| m["role"] == "tool").count())
        .unwrap_or(0);
    (agent, turn)
}

/// Each agent's script: the call of each turn, then `finish`.
fn script(agent: &str, turn: usize) -> Value {
    let step = match (agent, turn) {
        ("architect", 0) => Some(("run_history", json!({"limit": 10}))),
        ("architect", 1) => Some(("strategy_effectiveness", json!({}))),
        ("architect", 2) => Some((
            "add_stage",
            json!({"stage": {"name": "second_opinion", "agent": "planner",
                "position": "plan", "user_message": "Plan once more."}, "after": "planner"}),
        )),
        ("architect", 3) => Some((
            "reorder_stage",
            json!({"name": "second_opinion", "index": 0}),
        )),
        ("architect", 4) => Some(("remove_stage", json!({"name": "trainer"}))),
        ("architect", 5) => Some(("reorder_stage", json!({"name": "architect", "index": 0}))),
        ("architect", 6) => Some((
            "update_strategy",
            json!({"changes": {"stall_threshold": 2}}),
        )),
        ("author", 0) => Some(("list_components", json!({}))),
        ("author", 1) => {
            let mut bad = gated_conv();
            bad["nodes"][0]["op"] = json!("teleport");
            Some(("validate_component", json!({"document": bad})))
        }
        ("author", 2) => Some((
            "write_component",
            json!({"name": "agate", "document": gated_conv()}),
        )),
        ("author", 3) => Some((
            "write_component",
            json!({"name": "bgate", "document": gated_conv()}),
        )),
        ("author", 4) => Some((
            "write_component",
            json!({"name": "TCNBlock", "document": gated_conv()}),
        )),
        ("author", 5) => Some(("reload_registry", json!({}))),
        ("designer", 0) => Some(("read_agent", json!({"name": "planner"}))),
        ("designer", 1) => Some((
            "write_agent",
            json!({"document": {"name": "a_scout", "acts_as": "planner",
                "tools": ["list_blocks"], "fragments": [{"text": "You are A's scout."}]}}),
        )),
        ("designer", 2) => Some((
            "write_prompt",
            json!({"document": {"name": "a_terse", "agent": "a_scout",
                "fragments": [{"text": "Keep it small."}]}}),
        )),
        ("designer", 3) => Some((
            "write_agent",
            json!({"document": {"name": "planner", "acts_as": "planner",
                "tools": [], "fragments": [{"text": "x"}]}}),
        )),
        _ => None,
    };
    match step {
        Some((tool, args)) => tool_call(tool, args),
        None => finish(&format!("{agent} done")),
    }
}

/// Redis migrated, the scripted server, a worker of every role and a bridge (operator key
/// `sekret`; callers name their bot in `X-Bot-Id`).
struct Fleet {
    redis: RedisServer,
    port: u16,
    seen: Arc<Mutex<Vec<Value>>>,
    dir: tempfile::TempDir,
    _procs: Vec<Killed>,
}

fn fleet() -> Fleet {
    let redis = RedisServer::start();
    let out = cli(&redis).arg("migrate").output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let llm = scripted_chat(seen.clone(), |req| {
        let (agent, turn) = agent_and_turn(req);
        script(agent, turn)
    });
    let dir = tempfile::tempdir().unwrap();
    let worker = llm_worker(&redis.url(), &dir.path().join("worker"), &llm);
    let (bridge, port) = operator_bridge(&redis.url());
    Fleet {
        redis,
        port,
        seen,
        dir,
        _procs: vec![worker, bridge],
    }
}

impl Fleet {
    /// A request as `bot` (None: the operator itself).
    fn call(&self, method: &str, path: &str, bot: Option<&str>, body: Value) -> (u16, Value) {
        call_as(self.port, method, path, bot, body)
    }

    /// Stores the pipeline definition with `stages` (`pipeline-def set`).
    fn set_definition(&self, stages: Value) {
        let f = self.dir.path().join("def.json");
        std::fs::write(&f, json!({ "stages": stages }).to_string()).unwrap();
        stdout_of(cli(&self.redis).args(["pipeline-def", "set"]).arg(&f));
    }

    fn definition(&self) -> Value {
        serde_json::from_str(&stdout_of(cli(&self.redis).args([
            "pipeline-def",
            "show",
            "--json",
        ])))
        .unwrap()
    }

    /// A tiny run as `bot` (built-in agents for the stage agents), to its end.
    fn run_to_end(&self, bot: Option<&str>) -> Value {
        tiny_run_to_end(self.port, bot, json!({}))
    }

    /// The tool results `agent` got in the requests seen so far, by turn (the last request
    /// of each conversation holds them all): (tool name, result text).
    fn tool_results(&self, agent: &str) -> Vec<Vec<String>> {
        let seen = self.seen.lock().unwrap();
        seen.iter()
            .filter(|r| agent_and_turn(r).0 == agent)
            .filter(|r| {
                script(agent, agent_and_turn(r).1)["choices"][0]["message"]["tool_calls"][0]
                    ["function"]["name"]
                    == "finish"
            })
            .map(|r| {
                r["messages"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|m| m["role"] == "tool")
                    .map(|m| m["content"].as_str().unwrap_or("").to_string())
                    .collect()
            })
            .collect()
    }
}

/// Asserts that tool result `i` says `needle`.
fn says(results: &[String], i: usize, needle: &str) {
    assert!(
        results[i].contains(needle),
        "tool result {i} does not say {needle:?}: {}",
        results[i]
    );
}

fn names(stages: &Value) -> Vec<String> {
    stages
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect()
}

fn base_stages() -> Vec<Value> {
    vec![
        json!({"name": "planner", "agent": "planner", "protected": true, "position": "plan"}),
        json!({"name": "trainer", "agent": "trainer", "protected": true, "position": "execute", "retry": true}),
        json!({"name": "check_debug", "agent": "codechecker", "protected": true, "position": "validate"}),
    ]
}

#[test]
fn the_pipeline_architect_reshapes_the_pipeline_and_the_next_run_follows() {
    let f = fleet();
    let mut stages = base_stages();
    stages.push(
        json!({"name": "architect", "agent": "pipeline_architect", "position": "post",
        "user_message": "Improve the pipeline."}),
    );
    f.set_definition(Value::Array(stages));

    // the operator's run: the architect reads the history, adds and reorders a stage, tunes
    // the strategy; the pipeline's rules refuse a protected stage's removal and a stage out of
    // position order
    let run = f.run_to_end(None);
    let rows = common::stage_rows(&run["task"]["stages"]);
    let shape: Vec<(&str, &str, bool)> = rows
        .iter()
        .map(|(n, s, ok)| (n.as_str(), s.as_str(), *ok))
        .collect();
    assert_eq!(
        &shape[shape.len() - 1..],
        &[("architect", "author", true)],
        "{run}"
    );
    assert_eq!(run["state"], "succeeded", "{run}");
    let note = run["task"]["stages"].as_array().unwrap().last().unwrap()["note"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        note.contains("3 change(s) [add_stage, reorder_stage, update_strategy], 2 refused"),
        "{note}"
    );
    let results = f.tool_results("architect");
    assert_eq!(results.len(), 1, "one architect conversation so far");
    let r = &results[0];
    says(r, 0, run["id"].as_str().unwrap());
    says(r, 1, "pipeline_shapes");
    says(r, 4, "the protected stage \\\"trainer\\\"");
    says(r, 4, "refused by the pipeline's rules");
    says(r, 5, "positions must follow");
    let def = f.definition();
    assert_eq!(
        names(&def["stages"]),
        [
            "second_opinion",
            "planner",
            "trainer",
            "check_debug",
            "architect"
        ],
        "{def}"
    );
    assert_eq!(def["strategy"]["stall_threshold"], 2, "{def}");

    // the next run follows the new shape; the architect saw the first run's effectiveness
    let run2 = f.run_to_end(None);
    assert_eq!(run2["state"], "succeeded", "{run2}");
    let rows: Vec<String> = common::stage_rows(&run2["task"]["stages"])
        .into_iter()
        .map(|(n, _, _)| n)
        .collect();
    assert_eq!(
        rows,
        [
            "second_opinion",
            "planner",
            "trainer",
            "check_debug",
            "architect"
        ],
        "{run2}"
    );
    let results = f.tool_results("architect");
    let eff: Value = serde_json::from_str(&results[1][1]).unwrap();
    let first = eff["pipeline_shapes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stages"] == "planner -> trainer -> check_debug -> architect")
        .unwrap_or_else(|| panic!("{eff}"));
    assert_eq!(
        (first["runs"].as_u64(), first["succeeded"].as_u64()),
        (Some(1), Some(1)),
        "{eff}"
    );
    says(&results[1], 2, "appears twice");

    // a bot's run cannot change the pipeline: each edit is a tool error saying why
    let run3 = f.run_to_end(Some("bot-a"));
    assert_eq!(run3["state"], "succeeded", "{run3}");
    let note = run3["task"]["stages"].as_array().unwrap().last().unwrap()["note"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(note.contains("0 change(s) [], 5 refused"), "{note}");
    let results = f.tool_results("architect");
    says(&results[2], 2, "the operator's act");
    assert_eq!(f.definition(), def, "unchanged by the bot's run");
}

#[test]
fn the_author_and_agent_designer_write_in_the_run_bots_name() {
    let f = fleet();
    // bot B's component, which bot A's author may not overwrite
    let (st, w) = f.call(
        "POST",
        "/registry/write",
        Some("bot-b"),
        json!({"name": "bgate", "document": gated_conv()}),
    );
    assert_eq!(st, 201, "{w}");
    let mut stages = base_stages();
    stages.push(json!({"name": "author", "agent": "author", "position": "post"}));
    stages.push(json!({"name": "designer", "agent": "agent_designer", "position": "post"}));
    f.set_definition(Value::Array(stages));

    let run = f.run_to_end(Some("bot-a"));
    assert_eq!(run["state"], "succeeded", "{run}");
    let notes: Vec<&str> = run["task"]["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["note"].as_str().unwrap())
        .collect();
    let n = notes.len();
    assert!(
        notes[n - 2].contains("the author agent made 1 change(s) [write_component], 2 refused"),
        "{notes:?}"
    );
    assert!(
        notes[n - 1].contains(
            "the agent_designer agent made 2 change(s) [write_agent, write_prompt], 1 refused"
        ),
        "{notes:?}"
    );

    // what was written is bot A's; bot B's component and the built-ins are untouched
    let (st, c) = f.call(
        "GET",
        "/registry/component/agate",
        Some("bot-a"),
        Value::Null,
    );
    assert_eq!((st, c["owner"].as_str()), (200, Some("bot-a")), "{c}");
    let (_, c) = f.call(
        "GET",
        "/registry/component/bgate",
        Some("bot-b"),
        Value::Null,
    );
    assert_eq!(
        (c["owner"].as_str(), c["version"].as_u64()),
        (Some("bot-b"), Some(1)),
        "{c}"
    );
    let (st, a) = f.call("GET", "/agents/a_scout", Some("bot-a"), Value::Null);
    assert_eq!(st, 200, "{a}");
    assert_eq!(a["owner"], "bot-a", "{a}");
    let author = &f.tool_results("author")[0];
    says(author, 1, "teleport");
    says(author, 3, "belongs to bot \\\"bot-b\\\"");
    says(author, 4, "read-only");
    let designer = &f.tool_results("designer")[0];
    says(designer, 3, "read-only");
}
