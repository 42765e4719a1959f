//! Agents and prompts as data (issue 20) over a real Redis, a real bridge and real workers:
//! an agent definition written over HTTP by bot A is placed in the pipeline definition as a new
//! stage and runs on a worker started before it existed, against a local server speaking the
//! OpenAI chat-completions protocol (its prompt, bot A's prompt module and not bot B's, its
//! model, temperature and tools reach the model; its plan is what the run trains; its next
//! version reaches the same worker, not restarted, at the next run); the
//! built-in planner says which directives of the run's message it applied. The 4xx of the
//! agent routes (invalid, too large, built-in, another bot's, unknown agent, in use) and the
//! `agents` command.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use common::agents::{
    call_as as call, llm_worker, operator_bridge, scripted_chat, tool_call_reply,
};
use common::{bin, stdout_of, RedisServer};
use serde_json::{json, Value};
use trainer::zoo::spec::ExperimentSpec;

const PREFIX: &str = "t";

fn cli(redis: &RedisServer) -> Command {
    let mut c = Command::new(bin());
    c.args(["--redis-url", &redis.url(), "--prefix", PREFIX]);
    c
}

fn bridge(redis: &RedisServer) -> (common::Killed, u16) {
    operator_bridge(&redis.url())
}

/// The scout's plan: one TCN at a learning rate no built-in planner proposes.
fn scout_spec() -> ExperimentSpec {
    let mut s = ExperimentSpec::new(&["TCNBlock"], "GBMHead");
    trainer::experiments::apply_budget(&common::tiny_budget(), &mut s);
    s.training.lr = 7e-4;
    s
}

fn scout(text: &str) -> Value {
    json!({
        "format": "synth-city/agent@1", "name": "scout", "acts_as": "planner",
        "description": "plans one convolutional experiment",
        "model": "scout-model", "temperature": 0.3, "max_turns": 3,
        "tools": ["list_blocks", "scan_experiment_history"],
        "fragments": [
            {"name": "role", "priority": 10, "text": text},
            {"name": "budget", "priority": 30, "text": "Plan {experiment_budget} experiment(s)."},
            {"name": "elsewhere", "channel": "discord", "text": "DISCORD ONLY"}
        ],
        "context_keys": ["experiment_budget", "message"]
    })
}

/// A chat-completions server that answers every request with the scout's plan and keeps
/// each request's body.
fn scripted(seen: Arc<Mutex<Vec<Value>>>) -> String {
    scripted_chat(seen, |_| {
        let args = json!({"success": true, "summary": "one TCN",
            "result": json!({"experiments": [scout_spec()]}).to_string()});
        tool_call_reply("finish", args)
    })
}

fn migrate(redis: &RedisServer) {
    let out = cli(redis).arg("migrate").output().unwrap();
    assert!(out.status.success(), "{out:?}");
}

/// The pipeline definition with `agent` as a new plan stage after the built-in planner.
fn definition_with(agent: &str, dir: &Path) -> std::path::PathBuf {
    let def = json!({"stages": [
        {"name": "planner", "agent": "planner", "protected": true, "position": "plan"},
        {"name": "scout", "agent": agent, "position": "plan",
         "user_message": "Plan the next experiment."},
        {"name": "trainer", "agent": "trainer", "protected": true, "position": "execute", "retry": true},
        {"name": "check_debug", "agent": "codechecker", "protected": true, "position": "validate"}
    ]});
    let f = dir.join(format!("def-{agent}.json"));
    std::fs::write(&f, def.to_string()).unwrap();
    f
}

/// Starts a tiny run as bot A (built-in agents but for authored stages) with `message` and
/// waits for its end; the run record.
fn run_to_end(port: u16, message: &str) -> Value {
    common::agents::tiny_run_to_end(port, Some("bot-a"), json!({ "message": message }))
}

#[test]
fn an_agent_written_over_http_runs_as_a_new_stage_with_its_bots_prompt_modules() {
    let redis = RedisServer::start();
    migrate(&redis);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let llm = scripted(seen.clone());
    let dir = tempfile::tempdir().unwrap();
    // the worker starts before the agent exists; it reads the definition at the job's start
    let _worker = llm_worker(&redis.url(), &dir.path().join("worker"), &llm);
    let (_b, port) = bridge(&redis);

    // bot A writes the agent and a prompt module for it; bot B a module of its own
    let (st, w) = call(
        port,
        "POST",
        "/agents/write",
        Some("bot-a"),
        json!({"document": scout("You are the Scout of synth-city.")}),
    );
    assert_eq!(st, 201, "{w}");
    assert_eq!(
        (w["owner"].as_str(), w["version"].as_u64()),
        (Some("bot-a"), Some(1))
    );
    let module = |name: &str, text: &str| {
        json!({"document": {"name": name, "agent": "scout",
            "fragments": [{"priority": 20, "text": text}]}})
    };
    let (st, m) = call(
        port,
        "POST",
        "/agents/prompts/write",
        Some("bot-a"),
        module("terse", "Bot A says: keep it small."),
    );
    assert_eq!(st, 201, "{m}");
    let (st, _) = call(
        port,
        "POST",
        "/agents/prompts/write",
        Some("bot-b"),
        module("loud", "Bot B says: go huge."),
    );
    assert_eq!(st, 201);

    // the pipeline definition takes it as a new stage (and refuses an unknown agent by name)
    let out = cli(&redis)
        .args(["pipeline-def", "set"])
        .arg(definition_with("ghost", dir.path()))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("unknown agent \"ghost\"") && err.contains("scout"),
        "{err}"
    );
    let out = stdout_of(
        cli(&redis)
            .args(["pipeline-def", "set"])
            .arg(definition_with("scout", dir.path())),
    );
    assert!(
        out.contains("planner -> scout -> trainer -> check_debug"),
        "{out}"
    );
    let shown: Value = serde_json::from_str(&stdout_of(cli(&redis).args([
        "pipeline-def",
        "show",
        "--json",
    ])))
    .unwrap();
    assert_eq!(shown["stages"][1]["acts_as"], "planner", "{shown}");
    // in use: not removable
    let (st, e) = call(port, "DELETE", "/agents/scout", Some("bot-a"), Value::Null);
    assert_eq!(st, 409, "{e}");
    assert!(
        e["error"].as_str().unwrap().contains("stage \"scout\""),
        "{e}"
    );

    // bot A's run, with built-in agents for the other stages and a steering message
    let run = run_to_end(port, "favour block lstm; be brilliant");
    let stages = common::stage_rows(&run["task"]["stages"]);
    assert_eq!(
        &stages[..3],
        &[
            ("planner".to_string(), "plan".to_string(), true),
            ("scout".to_string(), "plan".to_string(), true),
            ("trainer".to_string(), "train".to_string(), true),
        ],
        "{run}"
    );
    // the built-in planner said which directives it applied
    let note = run["task"]["stages"][0]["note"].as_str().unwrap();
    assert!(
        note.contains("applied: favour block lstm") && note.contains("ignored: \"be brilliant\""),
        "{note}"
    );
    // the scout's plan is what was trained
    assert!(
        run["task"]["stages"][1]["note"]
            .as_str()
            .unwrap()
            .contains("planned by the scout agent"),
        "{run}"
    );
    let specs: Vec<&Value> = run["task"]["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["spec"])
        .collect();
    assert!(!specs.is_empty(), "{run}");
    assert_eq!(specs[0]["model"]["backbone"]["blocks"], json!(["TCNBlock"]));
    assert!((specs[0]["training"]["lr"].as_f64().unwrap() - 7e-4).abs() < 1e-12);
    assert_eq!(run["task"]["usage"]["scout"]["calls"], 1, "{run}");

    // what reached the model: the scout's prompt and bot A's module (not bot B's), its model,
    // temperature and tools, its context keys
    let reqs = seen.lock().unwrap().clone();
    assert_eq!(reqs.len(), 1, "only the scout talks to the LLM: {reqs:?}");
    let req = &reqs[0];
    assert_eq!(req["model"], "scout-model");
    assert!((req["temperature"].as_f64().unwrap() - 0.3).abs() < 1e-6);
    let mut tools: Vec<&str> = req["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    tools.sort();
    assert_eq!(tools, ["finish", "list_blocks", "scan_experiment_history"]);
    let msgs = req["messages"].as_array().unwrap();
    let system = msgs[0]["content"].as_str().unwrap();
    assert_eq!(
        system,
        "You are the Scout of synth-city.\n\nBot A says: keep it small.\n\nPlan 1 experiment(s)."
    );
    let texts: Vec<&str> = msgs.iter().filter_map(|m| m["content"].as_str()).collect();
    assert!(
        texts.contains(&"## message\n\nfavour block lstm; be brilliant"),
        "{texts:?}"
    );
    assert_eq!(texts.last(), Some(&"Plan the next experiment."));

    // bot A changes its agent: the same worker, not restarted, runs the new version
    let (st, w) = call(
        port,
        "POST",
        "/agents/write",
        Some("bot-a"),
        json!({"document": scout("You are the Scout, second edition.")}),
    );
    assert_eq!((st, w["version"].as_u64()), (200, Some(2)), "{w}");
    let again = run_to_end(port, "favour block lstm");
    assert_eq!(again["task"]["stages"][1]["ok"], true, "{again}");
    let reqs = seen.lock().unwrap().clone();
    assert_eq!(reqs.len(), 2);
    let system = reqs[1]["messages"][0]["content"].as_str().unwrap();
    assert!(
        system.starts_with("You are the Scout, second edition.\n\nBot A says"),
        "{system}"
    );
}

#[test]
fn agent_routes_validate_isolate_and_refuse_with_the_fix() {
    let redis = RedisServer::start();
    migrate(&redis);
    let (_b, port) = bridge(&redis);
    let write = |bot: &str, doc: Value| {
        call(
            port,
            "POST",
            "/agents/write",
            Some(bot),
            json!({"document": doc}),
        )
    };
    // an unknown tool: 422 naming it and the valid ones; nothing stored
    let mut bad = scout("x");
    bad["tools"] = json!(["list_blocks", "rm_rf"]);
    bad["max_turns"] = json!(0);
    let (st, e) = write("bot-a", bad);
    assert_eq!(st, 422, "{e}");
    let msg = e["error"].as_str().unwrap();
    assert!(
        msg.contains("tools[1]: unknown tool \"rm_rf\"; the registered tools are: ")
            && msg.contains("run_experiment")
            && msg.contains("max_turns: 0 is outside 1..=50"),
        "{msg}"
    );
    assert!(e["issues"].as_array().unwrap().len() >= 2, "{e}");
    assert_eq!(
        call(port, "GET", "/agents/scout", Some("bot-a"), Value::Null).0,
        404
    );
    // too large: 413; a built-in's name: 403; not an object: 422
    let mut big = scout("x");
    big["description"] = json!("y".repeat(70_000));
    assert_eq!(write("bot-a", big).0, 413);
    let mut builtin = scout("x");
    builtin["name"] = json!("planner");
    let (st, e) = write("bot-a", builtin);
    assert_eq!(st, 403, "{e}");
    assert!(e["error"].as_str().unwrap().contains("read-only"), "{e}");
    assert_eq!(write("bot-a", json!([1])).0, 422);
    let (st, e) = call(port, "POST", "/agents/write", Some("bot-a"), json!({}));
    assert_eq!(st, 400, "{e}");

    // bot A's agent: bot B may read it but neither overwrite nor remove it
    let (st, _) = write("bot-a", scout("A's scout"));
    assert_eq!(st, 201);
    let (st, e) = write("bot-b", scout("B's takeover"));
    assert_eq!(st, 403, "{e}");
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains("belongs to bot \"bot-a\""),
        "{e}"
    );
    assert_eq!(
        call(port, "DELETE", "/agents/scout", Some("bot-b"), Value::Null).0,
        403
    );
    let (st, w) = write("bot-a", scout("A's scout, v2"));
    assert_eq!(
        (st, w["version"].as_u64(), w["created"].as_bool()),
        (200, Some(2), Some(false))
    );
    let (st, l) = call(port, "GET", "/agents", Some("bot-b"), Value::Null);
    assert_eq!(st, 200);
    let agents = l["agents"].as_array().unwrap();
    assert_eq!(
        agents.len(),
        9,
        "the 5 stage agents, the 3 authoring agents, scout: {l}"
    );
    let a = agents
        .iter()
        .find(|a| a["name"] == "pipeline_architect")
        .unwrap();
    assert_eq!(
        (a["source"].as_str(), a["acts_as"].as_str()),
        (Some("built-in"), Some("pipeline_architect"))
    );
    let s = agents.iter().find(|a| a["name"] == "scout").unwrap();
    assert_eq!(
        (
            s["source"].as_str(),
            s["owner"].as_str(),
            s["writable"].as_bool()
        ),
        (Some("authored"), Some("bot-a"), Some(false)),
        "{s}"
    );
    let p = agents.iter().find(|a| a["name"] == "planner").unwrap();
    assert_eq!(
        (p["source"].as_str(), p["writable"].as_bool()),
        (Some("built-in"), Some(false))
    );
    let (_, one) = call(port, "GET", "/agents/scout", Some("bot-b"), Value::Null);
    assert_eq!(
        one["document"]["fragments"][0]["text"], "A's scout, v2",
        "{one}"
    );
    let (_, planner) = call(port, "GET", "/agents/planner", Some("bot-b"), Value::Null);
    assert!(
        planner["document"]["fragments"][0]["text"]
            .as_str()
            .unwrap()
            .contains("You are the Planner"),
        "{planner}"
    );
    // the old catalog routes still answer beside /agents/{name}
    assert_eq!(
        call(port, "GET", "/agents/list", Some("bot-b"), Value::Null).0,
        200
    );
    assert_eq!(
        call(port, "GET", "/agents/tools", Some("bot-b"), Value::Null).0,
        200
    );

    // prompt modules: an unknown agent is a 422; a bot sees only its own
    let (st, e) = call(
        port,
        "POST",
        "/agents/prompts/write",
        Some("bot-a"),
        json!({"document": {"name": "m", "agent": "ghost", "fragments": [{"text": "t"}]}}),
    );
    assert_eq!(st, 422, "{e}");
    assert!(
        e["error"].as_str().unwrap().contains("no agent \"ghost\""),
        "{e}"
    );
    for (bot, name) in [("bot-a", "a_mod"), ("bot-b", "b_mod")] {
        let (st, _) = call(
            port,
            "POST",
            "/agents/prompts/write",
            Some(bot),
            json!({"document": {"name": name, "agent": "planner",
                "fragments": [{"channel": "discord", "text": "hi"}]}}),
        );
        assert_eq!(st, 201);
    }
    let (_, a) = call(port, "GET", "/agents/planner", Some("bot-a"), Value::Null);
    let names: Vec<&str> = a["prompt_modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a_mod"]);
    let (_, op) = call(port, "GET", "/agents/planner", None, Value::Null);
    assert_eq!(op["prompt_modules"].as_array().unwrap().len(), 2, "{op}");
    assert_eq!(
        call(
            port,
            "DELETE",
            "/agents/prompts/a_mod",
            Some("bot-b"),
            Value::Null
        )
        .0,
        403
    );
    assert_eq!(
        call(
            port,
            "DELETE",
            "/agents/prompts/a_mod",
            Some("bot-a"),
            Value::Null
        )
        .0,
        200
    );

    // the command line: list, show, add (a file), remove; built-ins refused
    let list = stdout_of(cli(&redis).args(["agents", "list"]));
    assert!(
        list.contains("scout") && list.contains("authored") && list.contains("bot-a"),
        "{list}"
    );
    let shown: Value =
        serde_json::from_str(&stdout_of(cli(&redis).args(["agents", "show", "scout"]))).unwrap();
    assert_eq!(shown["owner"], "bot-a");
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("critic.json");
    let mut critic = scout("You are the critic.");
    critic["name"] = json!("critic");
    critic["acts_as"] = json!("codechecker");
    critic["tools"] = json!(["validate_experiment", "check_shapes"]);
    std::fs::write(&f, critic.to_string()).unwrap();
    let out = stdout_of(cli(&redis).args(["agents", "add"]).arg(&f));
    assert!(
        out.contains("added \"critic\" (acts as codechecker; owner default"),
        "{out}"
    );
    let out = cli(&redis)
        .args(["agents", "remove", "planner"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("read-only"));
    let out = stdout_of(cli(&redis).args(["agents", "remove", "critic"]));
    assert!(out.contains("removed \"critic\""), "{out}");
    assert_eq!(
        call(port, "GET", "/agents/critic", Some("bot-a"), Value::Null).0,
        404
    );
}

/// Steering reaches registry components (issue 20): a run whose message favours a block bot A
/// wrote into the registry after the worker started has it planned first by the built-in
/// planner, its document carried in the train job, and trained; a favoured component the
/// registry lacks is noted as ignored, and the run trains what the planner proposes.
#[test]
fn a_run_favouring_a_registry_component_trains_it_on_a_worker_started_before_it() {
    let redis = RedisServer::start();
    migrate(&redis);
    let dir = tempfile::tempdir().unwrap();
    let llm = scripted(Arc::new(Mutex::new(Vec::new())));
    let _worker = llm_worker(&redis.url(), &dir.path().join("worker"), &llm);
    let (_b, port) = bridge(&redis);
    let skip = json!({"format": "synth-city/component@1", "kind": "block", "name": "skip_mix",
        "inputs": ["x"],
        "nodes": [{"id": "a", "op": "linear", "in": ["x"], "out": "d_model"},
                  {"id": "r", "op": "add", "in": ["x", "a"]}],
        "output": "r"});
    let (st, w) = call(
        port,
        "POST",
        "/registry/write",
        Some("bot-a"),
        json!({"name": "skip_mix", "document": skip}),
    );
    assert_eq!(st, 201, "{w}");

    let run = run_to_end(port, "favour block graph:skip_mix");
    let note = run["task"]["stages"][0]["note"].as_str().unwrap();
    assert!(
        note.contains("applied: favour block graph:skip_mix (the registry's, by bot-a version 1)"),
        "{note}"
    );
    let planned = &run["task"]["plan"]["experiments"];
    assert_eq!(planned.as_array().map(Vec::len), Some(1), "{run}");
    assert_eq!(
        planned[0]["model"]["backbone"]["blocks"][0], "graph:skip_mix",
        "{run}"
    );
    let results = run["task"]["results"].as_array().unwrap();
    assert_eq!(results.len(), 1, "{run}");
    assert_eq!(
        results[0]["spec"]["model"]["backbone"]["blocks"][0], "graph:skip_mix",
        "{run}"
    );
    assert!(
        results[0]["crps"].as_f64().is_some_and(f64::is_finite),
        "{run}"
    );

    let run = run_to_end(port, "favour block graph:nowhere");
    let note = run["task"]["stages"][0]["note"].as_str().unwrap();
    assert!(
        note.contains("ignored: favour block graph:nowhere"),
        "{note}"
    );
    let planned = &run["task"]["plan"]["experiments"];
    assert_ne!(
        planned[0]["model"]["backbone"]["blocks"][0], "graph:nowhere",
        "{run}"
    );
}
