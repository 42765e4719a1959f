//! The shadow scorer follows the champions and scores their challengers (issue 19, item 4),
//! through a real Redis, a real scorer worker and the filesystem store: real checkpoints trained
//! on bars whose volatility is a quarter of the reference GBM's (and one trained on bars twice as
//! volatile as the GBM's, which answers far too wide), published as candidates and forced in as
//! champions; shadow prompts recorded at historical times over eight days, scored once settled
//! with each pair's champion and challengers on the same request. With the policy off, the
//! report says what it would do and nothing changes; `promote` promotes the challenger that
//! passes the gate on that evidence (recorded `by: shadow-policy` with its prompts); under
//! `promote-demote`, a champion the GBM beats is demoted.

mod common;

use std::process::Command;

use common::candidates::{candidate, write_bars, T0};
use common::{bin, spawn_worker_env, RedisServer};
use publisher::artifacts::ArtifactCache;
use publisher::champions::{self, Action, EvalData, EvalOptions, PromoteRequest};
use publisher::store::FsStore;
use serde_json::{json, Value};
use sn50::constants::PromptKind;
use sn50::shadow::{self, ShadowRecord};

fn ok(redis: &RedisServer, args: &[&str]) -> String {
    common::stdout_of(
        common::cli_command(&redis.url())
            .args(args)
            .env_remove("HIPPIUS_ENDPOINT"),
    )
}

/// Enqueues one job and waits for its result.
fn run_job(redis: &RedisServer, job_type: &str, payload: Value) -> Value {
    common::run_job_cli(&redis.url(), job_type, &payload, 900)
}

fn pair<'a>(report: &'a Value, asset: &str) -> &'a Value {
    report["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["asset"] == asset && p["prompt"] == "low")
        .unwrap_or_else(|| panic!("no {asset} pair in {report}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shadow_policy_promotes_a_challenger_and_demotes_a_champion_worse_than_the_gbm() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let hot = dir.path().join("hot");
    let calm = dir.path().join("calm");
    for (d, scale) in [(&data, 0.25), (&hot, 2.0), (&calm, 0.125)] {
        std::fs::create_dir_all(d).unwrap();
        write_bars(d, "BTC", 1, scale);
        write_bars(d, "ETH", 2, scale);
    }
    let store_dir = dir.path().join("store");
    let store = FsStore::new(&store_dir);
    let cache = ArtifactCache::new(dir.path().join("cache"), 1 << 30);
    let work = dir.path().join("runs");
    // published in this order: weak (one step, on bars half as volatile as those it will
    // answer on: a head starts at its scale's width, so one step on the right bars is no
    // longer weak), good, bad (trained on bars eight times as volatile)
    let weak = candidate(&store, &cache, &calm, &work, "run-weak", 1, 1, Some(1_000)).await;
    let good = candidate(&store, &cache, &data, &work, "run-good", 3, 30, Some(2_000)).await;
    let bad = candidate(&store, &cache, &hot, &work, "run-bad", 3, 30, Some(3_000)).await;
    // the operator forces weak in for BTC and bad for ETH (the gate's verdict does not matter)
    let eval = EvalData {
        dir: data.clone(),
        label: "data directory".into(),
    };
    let opts = EvalOptions {
        windows: 4,
        num_simulations: 50,
        ..EvalOptions::default()
    };
    for (c, asset) in [(&weak, "BTC"), (&bad, "ETH")] {
        let req = PromoteRequest {
            candidate: c.clone(),
            asset: asset.into(),
            prompt: None,
            force: true,
            by: "operator".into(),
        };
        let d = champions::promote(&store, &cache, &req, &eval, &opts)
            .await
            .unwrap();
        assert_eq!(d.action, Action::Promote);
    }

    let redis = RedisServer::start();
    ok(&redis, &["migrate"]);
    let (d, s, w) = (
        data.display().to_string(),
        store_dir.display().to_string(),
        dir.path().join("work").display().to_string(),
    );
    let flags = [
        "--roles",
        "scorer",
        "--concurrency",
        "1",
        "--data-dir",
        &d,
        "--store",
        &s,
        "--work-dir",
        &w,
    ];
    let worker = |policy: &str| {
        common::Killed(spawn_worker_env(
            &redis.url(),
            &flags,
            &[("SYNTH_SHADOW_POLICY", policy)],
        ))
    };
    let mut scorer = worker("off");

    // prompts every 6 h over eight days after the training data (the default model: each
    // pair's champion, with its challengers)
    let starts: Vec<i64> = (0..28).map(|k| T0 + 13 * 86_400 + k * 6 * 3_600).collect();
    for &at in &starts {
        let r = run_job(
            &redis,
            "shadow-prompt",
            json!({"assets": ["BTC", "ETH"], "at": at}),
        );
        assert_eq!(r["recorded"].as_array().unwrap().len(), 2, "{r}");
        assert_eq!(r["model"], "champions");
        assert_eq!(r["served"]["BTC"]["champion"], weak.as_str(), "{r}");
        // BTC's challengers: the candidates newer than its champion, newest first; ETH's
        // champion is the newest candidate, and none was refused for it: no challengers
        assert_eq!(
            r["served"]["BTC"]["challengers"],
            json!([bad.clone(), good.clone()]),
            "{r}"
        );
        assert_eq!(r["served"]["ETH"]["challengers"], json!([]), "{r}");
    }
    let read = |asset: &str, at: i64| -> ShadowRecord {
        let key = format!(
            "scores/prompts/{}/{asset}-low-{at}.json",
            shadow::date_of(at)
        );
        serde_json::from_slice(&std::fs::read(store_dir.join(key)).unwrap()).unwrap()
    };
    let btc_champion = champions::current(&store, PromptKind::Low, "BTC")
        .await
        .unwrap()
        .unwrap();
    let rec = read("BTC", starts[0]);
    assert_eq!(rec.model, btc_champion.served());
    assert_eq!(rec.champion.as_deref(), Some(weak.as_str()));
    assert!(rec.result.is_none());

    let mut dates: Vec<String> = starts.iter().map(|&t| shadow::date_of(t)).collect();
    dates.dedup();
    assert_eq!(dates.len(), 8, "{dates:?}");
    let score = json!({"dates": dates});

    // policy off: scored, reported, nothing changes
    let r = run_job(&redis, "shadow-score", score.clone());
    assert_eq!(r["scored"], 56, "{}", r["scored"]);
    let rep = &r["policy"];
    eprintln!("off: {}", serde_json::to_string_pretty(rep).unwrap());
    assert_eq!(rep["policy"], "off");
    assert_eq!(rep["acted"], false);
    // every challenger answered the same prompt, scored against the same prices
    let rec = read("BTC", starts[0]);
    let res = rec.result.as_ref().unwrap();
    assert!(res.crps > 0.0 && res.gbm_crps > 0.0, "{res:?}");
    assert_eq!(rec.challengers.len(), 2);
    for c in &rec.challengers {
        let cr = c.result.as_ref().unwrap();
        assert!(cr.crps > 0.0 && cr.error.is_none(), "{c:?}");
    }
    // the day's evidence, as the policy reads it: one row per settled prompt and asset
    let ev: Value = serde_json::from_slice(
        &std::fs::read(store_dir.join(format!("scores/evidence/{}.json", dates[1]))).unwrap(),
    )
    .unwrap();
    let btc_rows: Vec<&Value> = ev
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["asset"] == "BTC")
        .collect();
    assert_eq!(btc_rows.len(), 4, "four prompts a day: {ev}");
    assert_eq!(btc_rows[0]["challengers"].as_array().unwrap().len(), 2);
    let btc = pair(rep, "BTC");
    assert_eq!(btc["champion"], weak.as_str());
    let good_row = btc["challengers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["candidate"] == good.as_str())
        .unwrap();
    assert_eq!(good_row["prompts"], 28, "{good_row}");
    assert_eq!(good_row["days"], 8);
    assert_eq!(good_row["verdict"], "promote", "{good_row}");
    assert_eq!(btc["would"]["candidate"], good.as_str(), "{btc}");
    assert!(btc["action"].is_null());
    let eth = pair(rep, "ETH");
    assert_eq!(eth["demotion"]["verdict"], "demote", "{eth}");
    assert!(eth["action"].is_null());
    let unchanged = |c: Option<champions::Champion>, name: &str| {
        assert_eq!(c.map(|c| c.candidate).as_deref(), Some(name));
    };
    unchanged(
        champions::current(&store, PromptKind::Low, "BTC")
            .await
            .unwrap(),
        &weak,
    );
    unchanged(
        champions::current(&store, PromptKind::Low, "ETH")
            .await
            .unwrap(),
        &bad,
    );
    let shadow_decisions = || async {
        champions::history(&store, None)
            .await
            .unwrap()
            .into_iter()
            .filter(|d| d.by == "shadow-policy")
            .collect::<Vec<_>>()
    };
    assert!(shadow_decisions().await.is_empty());
    // the operator's report reads the same, and changes nothing either
    let out = Command::new(bin())
        .args(["models", "shadow", "--json", "--store", &s])
        .env_remove("HIPPIUS_ENDPOINT")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(pair(&shown, "BTC")["would"]["candidate"], good.as_str());
    // with fewer settled days than required, nothing would be done
    let out = Command::new(bin())
        .args(["models", "shadow", "--json", "--store", &s])
        .env("SYNTH_SHADOW_MIN_DAYS", "9")
        .env_remove("HIPPIUS_ENDPOINT")
        .output()
        .unwrap();
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(pair(&shown, "BTC")["would"].is_null(), "{shown}");
    let out = Command::new(bin())
        .args(["models", "shadow", "--store", &s])
        .env("SYNTH_SHADOW_POLICY", "sometimes")
        .env_remove("HIPPIUS_ENDPOINT")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("SYNTH_SHADOW_POLICY"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // promote: the challenger that passed the gate on the settled prompts is BTC's champion,
    // recorded with its evidence; ETH's champion is not demoted under this policy
    drop(scorer);
    scorer = worker("promote");
    let r = run_job(&redis, "shadow-score", score.clone());
    assert_eq!(r["scored"], 0, "nothing left to score");
    let btc = pair(&r["policy"], "BTC");
    assert_eq!(btc["action"]["action"], "promote", "{btc}");
    unchanged(
        champions::current(&store, PromptKind::Low, "BTC")
            .await
            .unwrap(),
        &good,
    );
    unchanged(
        champions::current(&store, PromptKind::Low, "ETH")
            .await
            .unwrap(),
        &bad,
    );
    let ds = shadow_decisions().await;
    assert_eq!(ds.len(), 1, "{ds:?}");
    let d = &ds[0];
    assert_eq!((d.action, d.asset.as_str()), (Action::Promote, "BTC"));
    assert_eq!(d.candidate.as_deref(), Some(good.as_str()));
    assert_eq!(d.previous.as_ref().unwrap().candidate, weak);
    let g = d.gate.as_ref().unwrap();
    assert_eq!(g.windows, starts, "the evidence is the settled prompts");
    assert_eq!(g.champion.as_deref(), Some(weak.as_str()));
    assert!(g.vs_champion.as_ref().unwrap().significant);
    assert!(d
        .evaluation
        .as_ref()
        .unwrap()
        .data
        .starts_with("shadow prompts"));
    // the new champion has no evidence yet: a second look changes nothing
    let r = run_job(&redis, "shadow-score", score.clone());
    assert!(pair(&r["policy"], "BTC")["action"].is_null());
    assert_eq!(shadow_decisions().await.len(), 1);

    // promote-demote: ETH's champion, worse than the GBM on its settled prompts, is demoted;
    // it replaced no one, so the GBM serves ETH again
    drop(scorer);
    let _scorer = worker("promote-demote");
    let r = run_job(&redis, "shadow-score", score);
    let eth = pair(&r["policy"], "ETH");
    assert_eq!(eth["action"]["action"], "demote", "{eth}");
    assert!(champions::current(&store, PromptKind::Low, "ETH")
        .await
        .unwrap()
        .is_none());
    unchanged(
        champions::current(&store, PromptKind::Low, "BTC")
            .await
            .unwrap(),
        &good,
    );
    let ds = shadow_decisions().await;
    assert_eq!(ds.len(), 2, "{ds:?}");
    let d = &ds[1];
    assert_eq!((d.action, d.asset.as_str()), (Action::Rollback, "ETH"));
    assert!(d.champion.is_none() && d.previous.as_ref().unwrap().candidate == bad);
    let g = d.gate.as_ref().unwrap();
    assert_eq!(g.candidate, "gbm");
    let vc = g.vs_champion.as_ref().unwrap();
    assert!(vc.ratio < 0.99 && vc.significant, "{vc:?}");
    assert!(d.reason.contains("the GBM beats it"), "{}", d.reason);
}
