//! The promotion gate end to end on the filesystem store: real checkpoints trained on bars
//! whose volatility is a quarter of the reference GBM's, published as candidates, scored with
//! the exact SN50 scoring on walk-forward windows after their training data, promoted or
//! refused per (asset, prompt), and rolled back.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::candidates::{candidate, write_bars};
use publisher::artifacts::ArtifactCache;
use publisher::champions::{self, Action, EvalData, EvalOptions, PromoteRequest};
use publisher::store::{FsStore, Store};
use sn50::constants::PromptKind;

/// A temp dir with BTC and ETH bars a quarter as volatile as the reference GBM assumes, a
/// store and a cache in it, and the gate's evaluation on those bars (24 windows of 200 paths).
fn gate_bench() -> (
    tempfile::TempDir,
    std::path::PathBuf,
    FsStore,
    ArtifactCache,
    EvalData,
    EvalOptions,
) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    write_bars(&data, "BTC", 1, 0.25);
    write_bars(&data, "ETH", 2, 0.25);
    let store = FsStore::new(dir.path().join("store"));
    let cache = ArtifactCache::new(dir.path().join("cache"), 1 << 30);
    let eval = EvalData {
        dir: data.clone(),
        label: "data directory".into(),
    };
    let opts = EvalOptions {
        windows: 24,
        num_simulations: 200,
        ..EvalOptions::default()
    };
    (dir, data, store, cache, eval, opts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_candidate_that_passes_the_gate_becomes_champion_of_its_pair() {
    let (dir, data, store, cache, eval, opts) = gate_bench();
    let work = dir.path().join("runs");
    let req = |c: &str, asset: &str| PromoteRequest {
        candidate: c.into(),
        asset: asset.into(),
        prompt: None,
        force: false,
        by: "operator".into(),
    };

    // a trained model against the GBM alone (no champion yet): promoted for BTC
    let good = candidate(&store, &cache, &data, &work, "run-good", 3, 30, None).await;
    let d = champions::promote(&store, &cache, &req(&good, "BTC"), &eval, &opts)
        .await
        .unwrap();
    eprintln!("good: {}", d.reason);
    let gate = d.gate.as_ref().unwrap();
    assert_eq!(d.action, Action::Promote, "{}", d.reason);
    assert!(gate.champion.is_none() && d.previous.is_none());
    assert!(gate.windows.len() >= 20, "{}", gate.windows.len());
    // every window starts after the training data (the last 7 days were held out)
    let not_before = d.evaluation.as_ref().unwrap().not_before;
    assert!(gate.windows.iter().all(|&t| t >= not_before));
    assert!(gate.vs_gbm.as_ref().unwrap().ratio < 0.99);
    assert!(!d.forced);
    let btc = champions::current(&store, PromptKind::Low, "BTC")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(btc.candidate, good);
    assert_eq!(btc.decision, d.key);
    // that pair only: ETH's 24 h prompt and BTC's 1 h prompt still have none (the GBM serves)
    assert!(champions::current(&store, PromptKind::Low, "ETH")
        .await
        .unwrap()
        .is_none());
    assert!(champions::current(&store, PromptKind::High, "BTC")
        .await
        .unwrap()
        .is_none());

    // one training step on bars half as volatile as those it answers on (a head starts at
    // its scale's width, so one step on the right bars is no longer weak): refused against
    // the champion, which keeps serving, and the record says why
    let calm = dir.path().join("calm");
    std::fs::create_dir_all(&calm).unwrap();
    write_bars(&calm, "BTC", 1, 0.125);
    write_bars(&calm, "ETH", 2, 0.125);
    let weak = candidate(&store, &cache, &calm, &work, "run-weak", 1, 1, None).await;
    let d = champions::promote(&store, &cache, &req(&weak, "BTC"), &eval, &opts)
        .await
        .unwrap();
    eprintln!("weak: {}", d.reason);
    assert_eq!(d.action, Action::Refuse, "{}", d.reason);
    assert!(
        d.reason.contains(&format!("champion {good}")),
        "{}",
        d.reason
    );
    let gate = d.gate.as_ref().unwrap();
    assert_eq!(gate.champion.as_deref(), Some(good.as_str()));
    assert_eq!(
        gate.champion_scores.as_ref().unwrap().len(),
        gate.windows.len()
    );
    assert_eq!(
        champions::current(&store, PromptKind::Low, "BTC")
            .await
            .unwrap()
            .unwrap(),
        btc
    );
    // the refusal is in the history, as stored JSON
    let stored: serde_json::Value =
        serde_json::from_slice(&store.get(&d.key).await.unwrap().unwrap()).unwrap();
    assert_eq!(stored["action"], "refuse");
    assert_eq!(stored["gate"]["verdict"], "refuse");
    assert!(stored["gate"]["vs_champion"]["test"]["p_value"].is_f64());

    // the operator forces it in anyway: recorded as forced; rollback restores the champion at once
    let mut forced = req(&weak, "BTC");
    forced.force = true;
    let d = champions::promote(&store, &cache, &forced, &eval, &opts)
        .await
        .unwrap();
    assert_eq!(d.action, Action::Promote);
    assert!(
        d.forced && d.reason.starts_with("forced by operator"),
        "{}",
        d.reason
    );
    let now = champions::current(&store, PromptKind::Low, "BTC")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(now.candidate, weak);
    assert!(now.forced);
    let r = champions::rollback(&store, PromptKind::Low, "BTC", "operator")
        .await
        .unwrap();
    assert_eq!(r.action, Action::Rollback);
    let back = champions::current(&store, PromptKind::Low, "BTC")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(back.candidate, good);
    assert_eq!(back.restored_by.as_deref(), Some(r.key.as_str()));
    // again: before the good model there was none, so the GBM serves BTC again
    champions::rollback(&store, PromptKind::Low, "BTC", "operator")
        .await
        .unwrap();
    assert!(champions::current(&store, PromptKind::Low, "BTC")
        .await
        .unwrap()
        .is_none());
    let e = champions::rollback(&store, PromptKind::Low, "BTC", "operator")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("nothing to roll back"), "{e}");
    let h = champions::history(&store, Some((PromptKind::Low, "BTC")))
        .await
        .unwrap();
    let actions: Vec<Action> = h.iter().map(|d| d.action).collect();
    assert_eq!(
        actions,
        [
            Action::Promote,
            Action::Refuse,
            Action::Promote,
            Action::Rollback,
            Action::Rollback
        ]
    );

    // the operator's command line reads the same store
    let cli = |args: &[&str]| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_synth-city"))
            .arg("models")
            .args(args)
            .arg("--store")
            .arg(dir.path().join("store"))
            .env_remove("HIPPIUS_ENDPOINT")
            .output()
            .unwrap();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (ok, out, err) = cli(&["history", "--asset", "BTC", "--prompt", "low", "--json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["decisions"].as_array().unwrap().len(), 5);
    assert_eq!(v["decisions"][1]["action"], "refuse");
    let (ok, out, err) = cli(&["history"]);
    assert!(
        ok && out.contains("refuse") && out.contains("DM "),
        "{out}{err}"
    );
    let (ok, out, _) = cli(&["list", "--json"]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["champions"].as_array().unwrap().len(), 0);
    let (ok, out, _) = cli(&["show", "--asset", "BTC"]);
    assert!(ok && out.contains("the GBM serves it"), "{out}");
    // a rollback with nothing to roll back, and a bad prompt, fail with the reason
    let (ok, _, err) = cli(&["rollback", "--asset", "BTC"]);
    assert!(!ok && err.contains("nothing to roll back"), "{err}");
    let (ok, _, err) = cli(&["show", "--asset", "BTC", "--prompt", "daily"]);
    assert!(!ok && err.contains("use low (24 h) or high (1 h)"), "{err}");
    // ETH's champion is the weak model (forced in); the good one must beat it, on the same
    // windows, through the gate
    let mut weak_eth = req(&weak, "ETH");
    weak_eth.force = true;
    champions::promote(&store, &cache, &weak_eth, &eval, &opts)
        .await
        .unwrap();
    // promote from the command line: gated, per pair, and the refusal is the exit status
    let (ok, out, err) = cli(&[
        "promote",
        &good,
        "--asset",
        "ETH",
        "--data-dir",
        data.to_str().unwrap(),
        "--work-dir",
        work.to_str().unwrap(),
        "--windows",
        "24",
        "--paths",
        "200",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
    eprintln!(
        "cli ETH over the weak champion: {}",
        v["decisions"][0]["reason"]
    );
    assert!(ok, "{out}{err}");
    assert_eq!(v["decisions"][0]["action"], "promote");
    assert_eq!(v["decisions"][0]["asset"], "ETH");
    let vc = &v["decisions"][0]["gate"]["vs_champion"];
    assert_eq!(vc["against"], format!("champion {weak}"));
    assert!(
        vc["beats_margin"] == true && vc["significant"] == true,
        "{vc}"
    );
    assert_eq!(v["decisions"][0]["previous"]["candidate"], weak.as_str());
    let (ok, out, _) = cli(&["show", "--asset", "ETH", "--json"]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["champion"]["candidate"], good.as_str());
    assert_eq!(v["decision"]["gate"]["verdict"], "promote");

    // the miner serves each pair's champion, the GBM elsewhere, and follows changes without
    // a restart; a publication alone changes nothing it serves
    use synth_city::miner::{ModelHolder, ModelSpec};
    let (models, _) = ModelHolder::load(ModelSpec::Champions, &dir.path().join("store")).unwrap();
    let mcache = ArtifactCache::new(dir.path().join("miner-cache"), 1 << 30);
    let loaded = models.reload_champions(&store, &mcache).await.unwrap();
    assert_eq!(loaded.len(), 1, "{loaded:?}");
    assert_eq!(models.current_for("ETH", 300).label, good);
    assert!(!models.current_for("ETH", 300).is_gbm);
    assert!(models.current_for("BTC", 300).is_gbm);
    assert!(models.current_for("ETH", 60).is_gbm);
    assert!(
        models.describe().contains(&format!("5m ETH {good}")),
        "{}",
        models.describe()
    );
    let again = candidate(&store, &cache, &data, &work, "run-again", 1, 1, None).await;
    assert!(models
        .reload_champions(&store, &mcache)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(models.current_for("ETH", 300).label, good);
    // promoted (forced) for BTC: BTC swaps, ETH stays
    let mut f = req(&again, "BTC");
    f.force = true;
    champions::promote(&store, &cache, &f, &eval, &opts)
        .await
        .unwrap();
    assert_eq!(
        models
            .reload_champions(&store, &mcache)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(models.current_for("BTC", 300).label, again);
    assert_eq!(models.current_for("ETH", 300).label, good);
    // rolled back: ETH's previous champion (the weak one) answers at the next look, then,
    // rolled back again, the GBM
    champions::rollback(&store, PromptKind::Low, "ETH", "operator")
        .await
        .unwrap();
    models.reload_champions(&store, &mcache).await.unwrap();
    assert_eq!(models.current_for("ETH", 300).label, weak);
    champions::rollback(&store, PromptKind::Low, "ETH", "operator")
        .await
        .unwrap();
    models.reload_champions(&store, &mcache).await.unwrap();
    assert!(models.current_for("ETH", 300).is_gbm);
    assert_eq!(models.current_for("BTC", 300).label, again);

    // bad requests say what is wrong
    let e = champions::promote(&store, &cache, &req(&good, "NOPE"), &eval, &opts)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("not an SN50 asset"), "{e}");
    let e = champions::promote(&store, &cache, &req(&good, "SOL"), &eval, &opts)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("was not trained on SOL"), "{e}");
    let e = champions::promote(&store, &cache, &req("run-none/m", "BTC"), &eval, &opts)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("not a published model"), "{e}");
}

/// A blocking HTTP request with `key`; (status, JSON body).
fn http(
    port: u16,
    method: &str,
    path: &str,
    key: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    use std::io::{Read, Write};
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-API-Key: {key}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, rest) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (
        status,
        serde_json::from_str(rest).unwrap_or(serde_json::Value::String(rest.into())),
    )
}

/// Promotion over HTTP (issue 19's "who may promote"): a bot asks for its candidate to be put
/// through the gate (a `promote` job a publisher worker runs, in the bot's name); it may not
/// force it, change the gate or roll a champion back (403 naming why); a read-only key may not
/// ask; the operator rolls back; champions and decisions are readable, and the dashboard's
/// snapshot shows them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bots_ask_for_promotion_and_only_the_operator_forces_or_rolls_back() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    write_bars(&data, "BTC", 1, 0.25);
    write_bars(&data, "ETH", 2, 0.25);
    let store_dir = dir.path().join("store");
    let store = FsStore::new(&store_dir);
    let cache = ArtifactCache::new(dir.path().join("cache"), 1 << 30);
    let good = candidate(
        &store,
        &cache,
        &data,
        &dir.path().join("runs"),
        "run-good",
        3,
        30,
        None,
    )
    .await;

    let redis = common::RedisServer::start();
    let sc = |args: &[&str]| {
        let mut c = Command::new(common::bin());
        c.args(["--redis-url", &redis.url(), "--prefix", "pr"])
            .args(args);
        c.env("SYNTH_STORE_DIR", &store_dir)
            .env("SYNTH_DATA_DIR", &data)
            .env("SYNTH_WORK_DIR", dir.path().join("work"))
            .env_remove("HIPPIUS_ENDPOINT")
            .env_remove("BRIDGE_LOOPBACK_OPERATOR")
            .env("RUST_LOG", "warn");
        c
    };
    assert!(sc(&["migrate"]).status().unwrap().success());
    let key_of = |name: &str, role: &str| -> String {
        let o = sc(&["bots", "add", name, "--role", role]).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    let bot = key_of("alice", "bot");
    let viewer = key_of("viewer", "read-only");
    let port = common::free_port();
    let _bridge = common::Killed(
        sc(&["bridge", "--port", &port.to_string()])
            .env("BRIDGE_API_KEY", "op-key")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let _worker = common::Killed(
        sc(&["worker", "--roles", "publisher", "--concurrency", "1"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the bridge did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let ask =
        serde_json::json!({"candidate": good, "assets": ["BTC"], "windows": 24, "paths": 200});

    // what a bot may not do: force, change the gate, roll back; a read-only key may not ask
    for (field, extra) in [
        ("force", serde_json::json!(true)),
        ("alpha", serde_json::json!(0.5)),
    ] {
        let mut body = ask.clone();
        body[field] = extra;
        let (st, e) = http(port, "POST", "/models/promote", &bot, Some(body));
        assert_eq!(st, 403, "{e}");
        assert!(
            e["error"]
                .as_str()
                .unwrap()
                .contains(&format!("field `{field}`")),
            "{e}"
        );
    }
    let (st, e) = http(
        port,
        "POST",
        "/models/rollback",
        &bot,
        Some(serde_json::json!({"asset": "BTC"})),
    );
    assert_eq!(st, 403, "{e}");
    assert_eq!(
        http(port, "POST", "/models/promote", &viewer, Some(ask.clone())).0,
        403
    );
    let (st, e) = http(
        port,
        "POST",
        "/models/promote",
        &bot,
        Some(serde_json::json!({"candidate": good, "assets": ["DOGE"]})),
    );
    assert_eq!(st, 400, "{e}");
    assert!(
        e["error"].as_str().unwrap().contains("not an SN50 asset"),
        "{e}"
    );
    // a bot's request goes through the gate on a publisher worker, in the bot's name
    let (st, r) = http(port, "POST", "/models/promote", &bot, Some(ask.clone()));
    assert_eq!(st, 202, "{r}");
    assert_eq!(r["requested_by"], "alice");
    let job = r["job_id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(240);
    let done = loop {
        let (st, j) = http(port, "GET", &format!("/jobs/{job}"), &bot, None);
        assert_eq!(st, 200, "{j}");
        if ["completed", "dead", "failed"].contains(&j["state"].as_str().unwrap_or("")) {
            break j;
        }
        assert!(
            Instant::now() < deadline,
            "the promote job did not finish: {j}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(done["state"], "completed", "{done}");
    let result = &done["result"];
    assert_eq!(result["promoted"], serde_json::json!(["BTC"]), "{result}");
    assert_eq!(result["decisions"][0]["by"], "alice", "{result}");
    // readable by anyone with a key, the viewer too
    let (st, c) = http(port, "GET", "/models/champions", &viewer, None);
    assert_eq!(st, 200, "{c}");
    assert_eq!(c["champions"][0]["candidate"], good.as_str());
    let (st, h) = http(
        port,
        "GET",
        "/models/history?asset=BTC&prompt=low",
        &bot,
        None,
    );
    assert_eq!(st, 200, "{h}");
    assert_eq!(h["decisions"][0]["action"], "promote");
    assert!(
        h["decisions"][0]["gate"]["vs_gbm"]["test"]["p_value"].is_f64(),
        "{h}"
    );
    assert_eq!(
        http(port, "GET", "/models/history?prompt=mid", &bot, None).0,
        400
    );
    // no shadow-score job has run here: the shadow policy has no report yet
    let (st, sh) = http(port, "GET", "/models/shadow", &viewer, None);
    assert_eq!((st, &sh["report"]), (200, &serde_json::Value::Null), "{sh}");
    let (st, snap) = http(port, "GET", "/dash/snapshot", &bot, None);
    assert_eq!(st, 200);
    assert_eq!(
        snap["champions"][0]["asset"], "BTC",
        "{}",
        snap["champions"]
    );
    assert_eq!(snap["decisions"][0]["by"], "alice");
    // the operator rolls back at once: the GBM serves BTC again; a second rollback has nothing
    let (st, r) = http(
        port,
        "POST",
        "/models/rollback",
        "op-key",
        Some(serde_json::json!({"asset": "BTC"})),
    );
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["decision"]["action"], "rollback");
    let (_, c) = http(port, "GET", "/models/champions", &bot, None);
    assert_eq!(c["champions"], serde_json::json!([]), "{c}");
    // newest first: the rollback, then the promotion; `limit` keeps the newest
    let (_, h) = http(port, "GET", "/models/history?asset=BTC", &bot, None);
    let actions: Vec<&str> = h["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["rollback", "promote"], "{h}");
    let (_, h) = http(
        port,
        "GET",
        "/models/history?prompt=low&limit=1",
        &bot,
        None,
    );
    assert_eq!(h["decisions"].as_array().unwrap().len(), 1);
    assert_eq!(h["decisions"][0]["action"], "rollback");
    let (st, e) = http(
        port,
        "POST",
        "/models/rollback",
        "op-key",
        Some(serde_json::json!({"asset": "BTC"})),
    );
    assert_eq!(st, 409, "{e}");
}

/// A classical model goes through the same gate as a trained one (on windows of the latest
/// days, since it fits on each window's own history), becomes its pair's champion, is served
/// by the miner for that pair only, and is the champion a trained candidate must then beat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_classical_model_passes_the_same_gate_and_serves_its_pair() {
    let (dir, data, store, cache, eval, opts) = gate_bench();
    let req = |c: &str, asset: &str, prompt: Option<PromptKind>| PromoteRequest {
        candidate: c.into(),
        asset: asset.into(),
        prompt,
        force: false,
        by: "operator".into(),
    };
    let garch = "classical:garch-tod-t";

    // bars a quarter as volatile as the reference GBM assumes: GARCH tracks them and wins
    let d = champions::promote(
        &store,
        &cache,
        &req(garch, "BTC", Some(PromptKind::Low)),
        &eval,
        &opts,
    )
    .await
    .unwrap();
    assert_eq!(d.action, Action::Promote, "{}", d.reason);
    let gate = d.gate.as_ref().unwrap();
    assert!(gate.windows.len() >= 20, "{}", gate.windows.len());
    assert!(gate.vs_gbm.as_ref().unwrap().ratio < 0.9, "{}", d.reason);
    let ev = d.evaluation.as_ref().unwrap();
    assert_eq!(ev.recent_days, Some(90.0));
    let c = champions::current(&store, PromptKind::Low, "BTC")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            c.candidate.as_str(),
            c.classical.as_deref(),
            c.artifact.is_none()
        ),
        (garch, Some("garch-tod-t"), true)
    );
    assert_eq!(c.served(), garch);
    assert_eq!(c.trained_until, champions::CLASSICAL_TRAINED_UNTIL);

    // the miner serves it for BTC's 24 h prompt only
    use synth_city::miner::{ModelHolder, ModelSpec};
    let (models, _) = ModelHolder::load(ModelSpec::Champions, &dir.path().join("store")).unwrap();
    let mcache = ArtifactCache::new(dir.path().join("miner-cache"), 1 << 30);
    models.reload_champions(&store, &mcache).await.unwrap();
    assert_eq!(models.current_for("BTC", 300).label, garch);
    assert!(!models.current_for("BTC", 300).is_gbm);
    assert!(models.current_for("BTC", 60).is_gbm);
    assert!(models.current_for("ETH", 300).is_gbm);

    // a trained candidate now has the classical champion to beat, on the windows after its
    // own training data, both scored on the same windows
    let work = dir.path().join("runs");
    let good = candidate(&store, &cache, &data, &work, "run-good", 3, 30, None).await;
    let d = champions::promote(&store, &cache, &req(&good, "BTC", None), &eval, &opts)
        .await
        .unwrap();
    eprintln!("trained vs classical: {}", d.reason);
    let gate = d.gate.as_ref().unwrap();
    assert_eq!(gate.champion.as_deref(), Some(garch));
    assert_eq!(
        gate.champion_scores.as_ref().map(Vec::len),
        Some(gate.windows.len())
    );
    assert!(d.evaluation.as_ref().unwrap().recent_days.is_none());
    assert_eq!(d.previous.as_ref().unwrap().candidate, garch);

    // the trained model and the classical one answering together (half the paths each), put
    // forward as one candidate on the trained model's unseen windows; forced here, to check
    // what the champion records and the miner serves
    let mix = format!("mix:{good},garch-tod-t");
    let mut f = req(&mix, "BTC", None);
    f.force = true;
    let d = champions::promote(&store, &cache, &f, &eval, &opts)
        .await
        .unwrap();
    assert_eq!(d.action, Action::Promote);
    assert!(d.evaluation.as_ref().unwrap().recent_days.is_none());
    let c = d.champion.as_ref().unwrap();
    assert_eq!(c.candidate, mix);
    assert_eq!(c.classical.as_deref(), Some("garch-tod-t"));
    let artifact = c
        .artifact
        .as_ref()
        .expect("the checkpoint travels by content");
    assert_eq!(c.served(), format!("mix:{artifact},{garch}"));
    models.reload_champions(&store, &mcache).await.unwrap();
    let served = models.current_for("BTC", 300);
    assert_eq!(served.label, mix);
    assert!(
        served.forecaster.name().starts_with("mix:")
            && served.forecaster.name().ends_with(",garch-tod-t"),
        "{}",
        served.forecaster.name()
    );

    // what is not a classical candidate, or has no prompt, says so and changes nothing
    for (bad, prompt, says) in [
        ("classical:gbm", Some(PromptKind::Low), "no classical model"),
        ("classical:arima", Some(PromptKind::Low), "garch-tod-t"),
        (garch, None, "--prompt"),
        ("mix:garch-tod-t,ewma", None, "RUN/NAME,CLASSICAL"),
        ("mix:run-good/m", None, "RUN/NAME,CLASSICAL"),
        ("mix:run-good/m,arima", None, "garch-tod-t"),
    ] {
        let e = champions::promote(&store, &cache, &req(bad, "ETH", prompt), &eval, &opts)
            .await
            .unwrap_err();
        assert!(e.to_string().contains(says), "{bad}: {e}");
    }
    assert!(champions::current(&store, PromptKind::Low, "ETH")
        .await
        .unwrap()
        .is_none());
}
