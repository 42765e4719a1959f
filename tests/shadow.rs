//! The shadow scorer through a real Redis and worker: prompts recorded for a trained
//! checkpoint (in the store, by artifact reference) at historical times, scored with the
//! validator's CRPS once the bars cover their window (and not before), beside the GBM; the
//! day's summary, the leaderboard and `score shadow`; a re-score gives the same numbers; the
//! model is fetched into the worker's own cache, and no record names a path.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{bin, spawn_worker, RedisServer};
use serde_json::{json, Value};
use sn50::constants::Sn50Config;
use sn50::data::Bars;
use sn50::forecast::Gbm;
use sn50::shadow::{self, ShadowRecord};

fn data_dir() -> Option<PathBuf> {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
    d.is_dir().then_some(d)
}

fn cli(redis: &RedisServer, args: &[&str]) -> std::process::Output {
    Command::new(bin())
        .args(["--redis-url", &redis.url(), "--prefix", "t"])
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("HIPPIUS_ENDPOINT")
        .output()
        .unwrap()
}

fn ok(redis: &RedisServer, args: &[&str]) -> String {
    let out = cli(redis, args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Enqueues one job and waits for its result.
fn run_job(redis: &RedisServer, job_type: &str, payload: Value) -> Value {
    common::run_job_cli(&redis.url(), job_type, &payload, 180)
}

#[test]
fn shadow_prompts_are_recorded_then_scored_once_their_window_has_passed() {
    let Some(data) = data_dir() else {
        eprintln!("skipped: ../shared/data is absent");
        return;
    };
    let redis = RedisServer::start();
    ok(&redis, &["migrate"]);
    let tmp = tempfile::tempdir().unwrap();
    let ck = common::tiny_checkpoint(&data, &tmp.path().join("runs"), "5m");
    let store = tmp.path().join("store");
    // the checkpoint goes to the store; the scorer gets its reference, not its folder
    let artifact = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(publisher::artifacts::put_dir(
            &publisher::store::FsStore::new(&store),
            &ck,
            &trainer::experiments::ARTIFACT_FILES,
        ))
        .unwrap();
    let model_ref = artifact.to_string();
    let work = tmp.path().join("work");
    let (d, s, w) = (
        data.display().to_string(),
        store.display().to_string(),
        work.display().to_string(),
    );
    let mut worker = spawn_worker(
        &redis.url(),
        &[
            "--roles",
            "all",
            "--concurrency",
            "2",
            "--data-dir",
            &d,
            "--store",
            &s,
            "--work-dir",
            &w,
        ],
    );
    let btc = Bars::load(&data.join("BTC_1m.csv")).unwrap();
    let last = *btc.timestamps.last().unwrap();
    // two days before the end of the bars: the 24 h window is realised; an hour before the end
    // it is not yet
    let past = (last - 2 * 86_400) / 300 * 300;
    let recent = (last - 3_600) / 300 * 300;
    let common = json!({"model": model_ref});
    let with = |extra: Value| {
        let mut v = common.clone();
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        v
    };
    let r = run_job(
        &redis,
        "shadow-prompt",
        with(json!({"assets": ["BTC", "ETH"], "at": past})),
    );
    assert_eq!(r["recorded"].as_array().unwrap().len(), 2, "{r}");
    assert_eq!(r["model"], model_ref.as_str());
    // the worker fetched the model into its own cache
    assert!(work.join("cache").join(&artifact.sha256).is_dir());
    let r = run_job(
        &redis,
        "shadow-prompt",
        with(json!({"assets": ["BTC"], "at": recent})),
    );
    assert_eq!(r["recorded"].as_array().unwrap().len(), 1, "{r}");
    let dates = [shadow::date_of(past), shadow::date_of(recent)];
    let score = json!({"dates": dates});
    let r = run_job(&redis, "shadow-score", score.clone());
    assert_eq!(r["scored"], 2, "the realised prompts only: {r}");
    // the records: results on the realised ones, none on the recent one
    let read = |asset: &str, at: i64| -> ShadowRecord {
        let key = format!(
            "scores/prompts/{}/{asset}-low-{at}.json",
            shadow::date_of(at)
        );
        serde_json::from_slice(&std::fs::read(store.join(key)).unwrap()).unwrap()
    };
    let config = Sn50Config::default();
    let gbm = Gbm::new(config.clone());
    let model =
        trainer::zoo::forecaster::load_forecaster(&ck.display().to_string(), &trainer::Device::Cpu)
            .unwrap();
    for asset in ["BTC", "ETH"] {
        let rec = read(asset, past);
        assert_eq!(
            rec.model, model_ref,
            "the record names the model by reference"
        );
        assert_eq!(rec.as_of, past - 60);
        assert_eq!(rec.spot_source, "last_close");
        let res = rec
            .result
            .clone()
            .unwrap_or_else(|| panic!("{asset} not scored"));
        assert!(res.crps > 0.0 && res.gbm_crps > 0.0, "{res:?}");
        assert_eq!(res.error, None);
        // scoring the record again gives the same numbers, to the bit
        // the bars the scorer priced the 24 h prompt with (the 5-minute file)
        let file = sn50::data::asset_file_for_step(&data, asset, 300).unwrap();
        assert!(file.ends_with(format!("{asset}_5m.csv")), "{file:?}");
        let bars = Bars::load(&file).unwrap();
        let again = shadow::score_record(&rec, Ok(model.as_ref()), &gbm, &bars, &config).unwrap();
        assert_eq!((again.0, again.1), (res.crps, res.gbm_crps));
    }
    assert!(read("BTC", recent).result.is_none());
    // the day's summary and the leaderboard
    let day: Value = serde_json::from_slice(
        &std::fs::read(store.join(shadow::daily_key(&shadow::date_of(past)))).unwrap(),
    )
    .unwrap();
    assert_eq!(day["all"]["scored"], 2, "{day}");
    assert_eq!(day["assets"]["BTC"]["recorded"], 1);
    let (c, g) = (
        read("BTC", past).result.unwrap(),
        read("ETH", past).result.unwrap(),
    );
    let ratio = (c.crps + g.crps) / (c.gbm_crps + g.gbm_crps);
    assert!(
        (day["all"]["ratio"].as_f64().unwrap() - ratio).abs() < 1e-12,
        "{day}"
    );
    // nothing new to score: nothing scored twice
    let r = run_job(&redis, "shadow-score", score);
    assert_eq!(r["scored"], 0, "{r}");
    let shown: Value = serde_json::from_str(&ok(
        &redis,
        &[
            "score",
            "shadow",
            "--store",
            store.to_str().unwrap(),
            "--json",
        ],
    ))
    .unwrap();
    assert!(
        shown["assets"]["BTC"]["mean_ratio"].as_f64().is_some(),
        "{shown}"
    );
    assert!(shown["days"]
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d["date"] == shadow::date_of(past).as_str()));
    // a prompt kind the validator does not send is refused when it is enqueued
    let out = cli(
        &redis,
        &[
            "jobs",
            "enqueue",
            "--type",
            "shadow-prompt",
            "--payload",
            r#"{"prompt": "medium"}"#,
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("low or high"));
    worker.kill().unwrap();
    worker.wait().unwrap();
}
