//! The agents' GPU pod tools and the bridge's pod routes, against real parts: a real Redis,
//! the Basilica stand-in (tests/common/basilica.rs: each pod a real `synth-city worker`
//! process), the real fleet code (`synth_city::fleet::desk`), the real agent runner and tools
//! driven by the scripted chat-completions server (tests/common/chat.rs), and a real bridge
//! process over HTTP.

mod common;

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agents::definition::AgentDef;
use agents::pods::POD_TOOLS;
use agents::{AgentName, FsPublisher, LlmConfig, MemoryHistory, ResearchSession, RunOptions};
use common::basilica::{offering, Basilica};
use common::chat::{finish, tool_calls, tool_results, turns, ScriptedChat};
use common::{cli_command, http, stdout_of, Killed, RedisServer};
use engine::queue::Queue;
use serde_json::{json, Map, Value};
use synth_city::basilica::{Client, ClientConfig};
use synth_city::fleet::decide::Policy;
use synth_city::fleet::desk::FleetDesk;
use synth_city::fleet::{Fleet, FleetConfig, PodTemplate, Renter};

/// A4000 at $1/h (allowed) and H100 at $1.2/h (offered, not allowed).
fn offerings() -> Vec<Value> {
    vec![
        offering("a4000-1", "A4000", "1.00"),
        offering("h100-1", "H100", "1.20"),
    ]
}

/// A fleet over `q` and the stand-in: A4000 only, $1.5/GPU/h, `per_hour` $/h, $10/day; pods
/// run `sleep` workers on the CPU.
fn fleet(q: &Queue, redis: &RedisServer, b: &Basilica, per_hour: f64) -> Fleet {
    let mut cc = ClientConfig::from_env();
    cc.base_url = b.url.clone();
    cc.token = Some(b.token.clone());
    cc.timeout = Duration::from_secs(2);
    cc.retry.attempts = 2;
    cc.retry.base = Duration::from_millis(50);
    let cfg = FleetConfig {
        policy: Policy {
            allowed_gpu_types: vec!["A4000".into()],
            max_rate_per_gpu: 1.5,
            budget_per_hour: per_hour,
            budget_per_day: 10.0,
            gpus_per_pod: 1,
            jobs_per_pod: 1,
            max_pods: 4,
            idle_ms: 600_000,
            startup_grace_ms: 60_000,
        },
        template: PodTemplate {
            image: "synth-city-cuda:local".into(),
            roles: vec!["sleep".into()],
            device: "cpu".into(),
            cpu: "2".into(),
            memory: "4Gi".into(),
            min_gpu_memory_gb: None,
            ttl_seconds: Some(3600),
            redis_url: redis.url(),
            prefix: q.prefix().to_string(),
            lease_ms: 5_000,
            heartbeat_ms: 500,
            grace_secs: 2,
            env: Default::default(),
        },
        job_types: vec!["sleep".into()],
        tick: Duration::from_millis(200),
        lease: Duration::from_millis(1500),
    };
    Fleet::new(q.clone(), Client::new(cc).unwrap(), cfg)
}

fn llm(chat: &ScriptedChat) -> LlmConfig {
    let mut c = LlmConfig::new(&chat.base_url, "test-key", "scripted");
    c.request_timeout = Duration::from_secs(60);
    c.connect_timeout = Duration::from_secs(2);
    c
}

/// The trainer, as a model would drive it: offerings, balance and a rental it may not make
/// (H100); then an A4000; wait for it; its logs and the list; delete it; finish.
fn trainer_script(req: &Value) -> Value {
    let results = tool_results(req);
    let pod = || {
        results
            .iter()
            .find_map(|r| r["pod"]["name"].as_str())
            .expect("a rented pod's name")
            .to_string()
    };
    match turns(req) {
        0 => tool_calls(&[
            ("list_gpu_offerings", json!({})),
            ("get_balance", json!({})),
            ("create_training_deployment", json!({"gpu_type": "H100"})),
        ]),
        1 => tool_calls(&[("create_training_deployment", json!({"gpu_type": "A4000"}))]),
        2 => tool_calls(&[(
            "wait_for_deployment",
            json!({"name": pod(), "timeout_secs": 30}),
        )]),
        3 => tool_calls(&[
            ("deployment_logs", json!({"name": pod(), "tail": 20})),
            ("list_deployments", json!({})),
        ]),
        4 => tool_calls(&[("delete_deployment", json!({"name": pod()}))]),
        _ => finish(
            true,
            json!({"pod": pod()}),
            "rented, used and released a pod",
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_llm_trainer_lists_offerings_rents_a_pod_waits_until_ready_and_releases_it() {
    let started = Instant::now();
    let redis = RedisServer::start();
    let q = common::queue(&redis).await;
    let b = Basilica::start(offerings(), 100.0);
    let chat = ScriptedChat::start(trainer_script);
    let dir = tempfile::tempdir().unwrap();

    let desk = FleetDesk::for_run(fleet(&q, &redis, &b, 2.5), "run-pods-1", "alice");
    let mut session = ResearchSession::new(
        "run-pods-1",
        dir.path().join("data"),
        dir.path().join("runs"),
        Arc::new(MemoryHistory::default()),
        Arc::new(FsPublisher {
            root: dir.path().join("models"),
        }),
    );
    session.pods = Some(Arc::new(desk));
    // the built-in trainer names the pod tools where BASILICA_API_TOKEN is set (this test
    // process does not set it: `the_trainer_has_the_pod_tools_only_where_basilica_is_configured`)
    let mut def = AgentDef::builtin(AgentName::Trainer);
    def.tools.extend(POD_TOOLS.iter().map(|t| t.to_string()));
    let task: Map<String, Value> = Map::new();
    let result = agents::run_def(
        &def,
        &[],
        &llm(&chat),
        Arc::new(session),
        &task,
        &RunOptions::default(),
    )
    .await
    .unwrap();
    assert!(result.success, "{}", result.raw_text);

    let calls: Vec<(&str, bool)> = result
        .tool_calls
        .iter()
        .map(|c| (c.name.as_str(), c.ok))
        .collect();
    assert_eq!(
        calls,
        [
            ("list_gpu_offerings", true),
            ("get_balance", true),
            ("create_training_deployment", false),
            ("create_training_deployment", true),
            ("wait_for_deployment", true),
            ("deployment_logs", true),
            ("list_deployments", true),
            ("delete_deployment", true),
            ("finish", true),
        ]
    );
    // what the model read: the offerings marked, the refusal naming the rule, a ready pod
    let reqs = chat.requests.lock().unwrap().clone();
    let last = tool_results(reqs.last().unwrap());
    let offered = &last[0]["offerings"];
    let allowed = |t: &str| {
        offered
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["gpu_type"] == t)
            .unwrap()["allowed"]
            .clone()
    };
    assert_eq!(
        (allowed("A4000"), allowed("H100")),
        (json!(true), json!(false))
    );
    assert_eq!(last[1]["balance"], 100.0);
    assert_eq!(last[1]["budget_per_hour"], 2.5);
    let refusal = last[2]["error"].as_str().unwrap();
    assert!(
        refusal.contains("GPU type not allowed") && refusal.contains("H100"),
        "{refusal}"
    );
    let pod = last[3]["pod"]["name"].as_str().unwrap().to_string();
    assert_eq!(last[3]["pod"]["run_id"], "run-pods-1");
    assert_eq!(last[3]["pod"]["bot"], "alice");
    assert_eq!(last[4]["ready"], true, "{}", last[4]);
    assert_eq!(last[4]["pod"]["phase"], "Running");
    assert!(last[5]["logs"].is_string(), "{}", last[5]);
    assert_eq!(last[6]["pods"][0]["name"], pod.as_str());
    assert_eq!(last[6]["pods"][0]["yours"], true);
    assert_eq!(last[7]["deleted"], pod.as_str());

    // one pod rented and deleted at Basilica, no record left, its spend charged to the run
    assert_eq!(b.created(), 1, "the H100 was never asked for");
    assert_eq!(b.deleted(), vec![pod.clone()]);
    assert!(synth_city::fleet::read_status(&q).await.is_ok());
    let f = fleet(&q, &redis, &b, 2.5);
    assert!(f.records().await.unwrap().is_empty());
    let per_pod = f.spent_per_pod().await.unwrap();
    let per_run = synth_city::fleet::read_spent_per_run(&q).await.unwrap();
    assert!(per_pod[&pod] > 0.0, "{per_pod:?}");
    assert!(
        (per_run["run-pods-1"] - per_pod[&pod]).abs() < 1e-9,
        "the run rented the pod: all of it is the run's: {per_run:?} {per_pod:?}"
    );
    let today = f.spent_on(q.time_ms().await.unwrap()).await.unwrap();
    assert!((today - per_pod[&pod]).abs() < 1e-9, "{today}");
    eprintln!(
        "agent rent/wait/release: {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

/// One tool call on the agents' pod tools over `desk`; its error text.
async fn refused(desk: FleetDesk, gpu: &str) -> String {
    let tools = agents::pods::pod_tools(Arc::new(desk), Duration::from_millis(100));
    let mut args = Map::new();
    args.insert("gpu_type".into(), json!(gpu));
    tools
        .get("create_training_deployment")
        .unwrap()
        .call(args)
        .await
        .unwrap_err()
        .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rental_over_the_budget_or_of_a_gpu_type_not_allowed_is_refused_naming_the_rule() {
    let redis = RedisServer::start();
    let q = common::queue(&redis).await;
    let b = Basilica::start(offerings(), 100.0);

    // $0.50/h of budget: an A4000 at $1/h would pass it
    let e = refused(
        FleetDesk::for_run(fleet(&q, &redis, &b, 0.5), "r1", "alice"),
        "A4000",
    )
    .await;
    assert!(e.contains("refused: hourly budget"), "{e}");
    // allowed: A4000 only
    let e = refused(
        FleetDesk::for_run(fleet(&q, &redis, &b, 2.5), "r1", "alice"),
        "H100",
    )
    .await;
    assert!(e.contains("GPU type not allowed: H100"), "{e}");
    // a balance that does not cover an hour
    b.set_balance(0.5);
    let e = refused(
        FleetDesk::for_run(fleet(&q, &redis, &b, 2.5), "r1", "alice"),
        "A4000",
    )
    .await;
    assert!(e.contains("balance too low"), "{e}");

    assert_eq!(b.create_requests(), 0, "nothing was asked of Basilica");
    let f = fleet(&q, &redis, &b, 2.5);
    assert!(f.records().await.unwrap().is_empty(), "nothing recorded");
}

/// Rentals at the same instant from several processes (here: six fleets of their own over one
/// Redis, as the autoscaler, `fleet rent`, the bridge and agents would be) never pass the hourly
/// budget together: the budget check and the pod's record are one script
/// (`fleet_reserve.lua`), not a check on a snapshot followed by a write.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rentals_at_the_same_instant_never_pass_the_budget_together() {
    let redis = RedisServer::start();
    let q = common::queue(&redis).await;
    let b = Basilica::start(offerings(), 100.0);
    // $2.5/h: two A4000s at $1/h fit, a third does not
    let rentals: Vec<_> = (0..6)
        .map(|i| {
            let f = fleet(&q, &redis, &b, 2.5);
            let who = Renter {
                bot: Some(format!("bot-{i}")),
                ..Renter::default()
            };
            tokio::spawn(async move { f.rent_checked("A4000", &who).await })
        })
        .collect();
    let (mut rented, mut refused) = (0, Vec::new());
    for r in rentals {
        match r.await.unwrap() {
            Ok(_) => rented += 1,
            Err(e) => refused.push(e.to_string()),
        }
    }
    assert_eq!(rented, 2, "{refused:?}");
    assert!(
        refused.iter().all(|e| e.contains("hourly budget")),
        "{refused:?}"
    );
    let f = fleet(&q, &redis, &b, 2.5);
    assert_eq!(f.records().await.unwrap().len(), 2);
    assert_eq!(
        b.create_requests(),
        2,
        "Basilica was asked for two pods only"
    );
}

#[test]
fn the_trainer_has_the_pod_tools_only_where_basilica_is_configured() {
    let redis = RedisServer::start();
    stdout_of(cli_command(&redis.url()).arg("migrate"));
    let tools = |token: Option<&str>| -> Vec<String> {
        let mut cmd = cli_command(&redis.url());
        cmd.args(["agents", "show", "trainer"]);
        match token {
            Some(t) => cmd.env("BASILICA_API_TOKEN", t),
            None => cmd.env_remove("BASILICA_API_TOKEN"),
        };
        let v: Value = serde_json::from_str(stdout_of(&mut cmd).trim()).unwrap();
        assert_eq!(v["source"], "built-in", "{v}");
        v["document"]["tools"]
            .as_array()
            .unwrap_or_else(|| panic!("no tools in {v}"))
            .iter()
            .map(|t| t.as_str().unwrap().to_string())
            .collect()
    };
    let without = tools(None);
    assert!(without.contains(&"run_experiment".to_string()));
    assert!(!without.iter().any(|t| POD_TOOLS.contains(&t.as_str())));
    let with = tools(Some("tok"));
    for t in POD_TOOLS {
        assert!(with.contains(&t.to_string()), "{t} missing from {with:?}");
    }
    assert_eq!(with.len(), without.len() + POD_TOOLS.len());
}

fn key_of(redis: &RedisServer, name: &str, role: &str) -> String {
    stdout_of(cli_command(&redis.url()).args(["bots", "add", name, "--role", role]))
        .trim()
        .to_string()
}

#[test]
fn the_pod_routes_serve_bots_their_own_pods_and_refuse_read_only_keys() {
    let started = Instant::now();
    let redis = RedisServer::start();
    stdout_of(cli_command(&redis.url()).arg("migrate"));
    let b = Basilica::start(offerings(), 100.0);
    let alice = key_of(&redis, "alice", "bot");
    let bob = key_of(&redis, "bob", "bot");
    let viewer = key_of(&redis, "viewer", "read-only");
    let port = common::free_port();
    let _bridge = Killed(
        cli_command(&redis.url())
            .args(["bridge", "--port", &port.to_string()])
            .env("BRIDGE_API_KEY", "op-key")
            .env_remove("BRIDGE_LOOPBACK_OPERATOR")
            .env("BASILICA_API_URL", &b.url)
            .env("BASILICA_API_TOKEN", &b.token)
            .env("BASILICA_ALLOWED_GPU_TYPES", "A4000")
            .env("BASILICA_MAX_HOURLY_RATE", "1.5")
            .env("BASILICA_BUDGET_PER_HOUR", "2.5")
            .env("BASILICA_BUDGET_PER_DAY", "10")
            .env("SYNTH_POD_ROLES", "sleep")
            .env("SYNTH_POD_DEVICE", "cpu")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    common::wait_listening(port, 20, "the bridge");
    let call = |key: &str, method: &str, path: &str, body: &str| -> (u16, Value) {
        let (status, _, text) = http(port, method, path, &[("X-API-Key", key)], body);
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    };

    // reads: any key, read-only included
    let (s, v) = call(&viewer, "GET", "/fleet/offerings", "");
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["offerings"].as_array().unwrap().len(), 2);
    let (s, v) = call(&viewer, "GET", "/fleet/balance", "");
    assert_eq!((s, v["balance"].clone()), (200, json!(100.0)), "{v}");

    // a read-only key rents nothing
    let (s, v) = call(&viewer, "POST", "/fleet/pods", r#"{"gpu_type": "A4000"}"#);
    assert_eq!(s, 403, "{v}");
    // bad bodies and refused types: 400 and 409 naming the rule; nothing rented
    let (s, v) = call(&alice, "POST", "/fleet/pods", r#"{"gpu": "A4000"}"#);
    assert_eq!(s, 400, "{v}");
    let (s, v) = call(&alice, "POST", "/fleet/pods", r#"{"gpu_type": "H100"}"#);
    assert_eq!(s, 409, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("GPU type not allowed"),
        "{v}"
    );
    assert_eq!(b.create_requests(), 0);

    // alice rents; two of $1/h fit $2.5/h, a third does not
    let (s, v) = call(&alice, "POST", "/fleet/pods", r#"{"gpu_type": "A4000"}"#);
    assert_eq!(s, 201, "{v}");
    let pod = v["pod"]["name"].as_str().unwrap().to_string();
    assert_eq!(v["pod"]["bot"], "alice");
    let (s, v) = call("op-key", "POST", "/fleet/pods", r#"{"gpu_type": "a4000"}"#);
    assert_eq!(s, 201, "{v}");
    let pinned = v["pod"]["name"].as_str().unwrap().to_string();
    assert_eq!(
        (v["pod"]["pinned"].clone(), v["pod"]["bot"].clone()),
        (json!(true), Value::Null)
    );
    let (s, v) = call(&bob, "POST", "/fleet/pods", r#"{"gpu_type": "A4000"}"#);
    assert_eq!(s, 409, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("hourly budget"),
        "{v}"
    );
    assert_eq!(b.created(), 2);

    // another bot may neither read its logs nor delete it; a read-only key deletes nothing
    let (s, v) = call(&bob, "GET", &format!("/fleet/pods/{pod}/logs"), "");
    assert_eq!(s, 403, "{v}");
    assert!(v["error"].as_str().unwrap().contains("bot alice"), "{v}");
    let (s, v) = call(&bob, "DELETE", &format!("/fleet/pods/{pod}"), "");
    assert_eq!(s, 403, "{v}");
    let (s, _) = call(&viewer, "DELETE", &format!("/fleet/pods/{pod}"), "");
    assert_eq!(s, 403);
    // nor may alice touch the operator's pinned pod
    let (s, v) = call(&alice, "DELETE", &format!("/fleet/pods/{pinned}"), "");
    assert_eq!(s, 403, "{v}");
    let (s, v) = call(&alice, "GET", "/fleet/pods/no-such-pod/logs?tail=5", "");
    assert_eq!(s, 404, "{v}");
    let (s, v) = call(&alice, "GET", &format!("/fleet/pods/{pod}/logs?tail=0"), "");
    assert_eq!(s, 400, "{v}");

    // alice reads her pod's logs and deletes it; the operator deletes its own
    let (s, v) = call(&alice, "GET", &format!("/fleet/pods/{pod}/logs?tail=5"), "");
    assert_eq!(s, 200, "{v}");
    assert!(v["logs"].is_string(), "{v}");
    let (s, v) = call(&alice, "DELETE", &format!("/fleet/pods/{pod}"), "");
    assert_eq!((s, v["deleted"].as_str()), (200, Some(pod.as_str())), "{v}");
    let (s, _) = call("op-key", "DELETE", &format!("/fleet/pods/{pinned}"), "");
    assert_eq!(s, 200);
    let mut gone = b.deleted();
    gone.sort();
    let mut want = vec![pod, pinned];
    want.sort();
    assert_eq!(gone, want);

    // the document lists the routes
    let (s, doc) = call("op-key", "GET", "/openapi.json", "");
    assert_eq!(s, 200);
    for (path, method) in [
        ("/fleet/offerings", "get"),
        ("/fleet/balance", "get"),
        ("/fleet/pods", "post"),
        ("/fleet/pods/{id}", "delete"),
        ("/fleet/pods/{id}/logs", "get"),
    ] {
        assert!(doc["paths"][path][method].is_object(), "{path} {method}");
    }
    eprintln!("pod routes: {:.1}s", started.elapsed().as_secs_f64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agents_pod_is_the_fleets_idle_pods_go_and_the_run_pays_for_its_pod() {
    let started = Instant::now();
    let redis = RedisServer::start();
    let q = common::queue(&redis).await;
    let b = Basilica::start(offerings(), 100.0);
    let agent = agents::pods::pod_tools(
        Arc::new(FleetDesk::for_run(
            fleet(&q, &redis, &b, 2.5),
            "run-idle",
            "alice",
        )),
        Duration::from_millis(100),
    );
    let mut args = Map::new();
    args.insert("gpu_type".into(), json!("A4000"));
    let v = agent
        .get("create_training_deployment")
        .unwrap()
        .call(args)
        .await
        .unwrap();
    let pod = v["pod"]["name"].as_str().unwrap().to_string();
    let pinned = FleetDesk::for_caller(fleet(&q, &redis, &b, 2.5), "default", true);
    let pinned = agents::pods::PodDesk::rent(&pinned, "A4000")
        .await
        .unwrap()
        .name;

    // the autoscaler: 3 s idle; nothing waits, so the agent's pod goes and the pinned one stays
    let _fleet = Killed(
        cli_command(&redis.url())
            .args([
                "fleet",
                "run",
                "--job-types",
                "sleep",
                "--pod-roles",
                "sleep",
            ])
            .args(["--pod-device", "cpu", "--allowed-gpu-types", "A4000"])
            .args(["--max-hourly-rate", "1.5", "--budget-per-hour", "2.5"])
            .args([
                "--idle-minutes",
                "0.05",
                "--tick-ms",
                "200",
                "--lease-ms",
                "1500",
            ])
            .env("BASILICA_API_URL", &b.url)
            .env("BASILICA_API_TOKEN", &b.token)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !b.deleted().contains(&pod) {
        assert!(
            Instant::now() < deadline,
            "the idle agent's pod was not deleted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(b.live(), vec![pinned.clone()], "the pinned pod stays");
    let per_pod = synth_city::fleet::read_spent_per_pod(&q).await.unwrap();
    let per_run = synth_city::fleet::read_spent_per_run(&q).await.unwrap();
    assert!(per_pod[&pod] > 0.0, "{per_pod:?}");
    assert!(
        (per_run["run-idle"] - per_pod[&pod]).abs() < 1e-9,
        "the leader's ticks charge the renting run all of its pod: {per_run:?} {per_pod:?}"
    );
    assert_eq!(
        per_run.len(),
        1,
        "the pinned pod held no run's job: {per_run:?}"
    );
    eprintln!(
        "idle agent pod reaped: {:.1}s",
        started.elapsed().as_secs_f64()
    );
}
