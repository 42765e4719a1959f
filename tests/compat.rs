//! The seed's users keep working, and errors say what to do: the real binary against a real
//! redis-server (issue 16, items 2 and 4). Missing bars are named once, with the command that
//! fetches them, whether a pipeline run, a sweep or a run with no data directory at all meets
//! them; the seed's preset names and horizons are taken; `latest` stands for the newest run
//! wherever a run id is taken (Redis's runs and the store's), and `history hippius` is the
//! store history.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use common::{bin, RedisServer, TINY};
use publisher::store::records;
use publisher::store::{FsStore, Store};
use serde_json::{json, Value};

fn shared_data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data")
}

/// `synth-city ARGS` against `redis` (prefix `compat`), in `dir`, with the store on disk.
fn cli(redis: Option<&RedisServer>, dir: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(bin());
    if let Some(r) = redis {
        cmd.arg("--redis-url").arg(r.url());
    }
    cmd.args(["--prefix", "compat"])
        .args(args)
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .env_remove("HIPPIUS_ENDPOINT")
        .env_remove("SYNTH_DATA_DIR")
        .env_remove("CHUTES_API_KEY")
        .output()
        .unwrap()
}

/// Everything the command printed, stdout then stderr.
fn printed(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "{}", printed(&out));
    String::from_utf8(out.stdout).unwrap()
}

fn fails(out: Output) -> String {
    assert!(!out.status.success(), "succeeded: {}", printed(&out));
    printed(&out)
}

/// The fetch command a missing-data message names takes exactly the flags `data download` has.
fn assert_fetch_command_is_real(dir: &Path, message: &str) {
    let cmd = message
        .split('`')
        .find(|s| s.starts_with("synth-city data download"))
        .unwrap_or_else(|| panic!("no fetch command in: {message}"));
    let help = ok(cli(None, dir, &["data", "download", "--help"]));
    for flag in cmd.split_whitespace().filter(|w| w.starts_with("--")) {
        assert!(
            help.contains(flag),
            "{flag} of `{cmd}` is not a flag of data download"
        );
    }
}

#[test]
fn missing_bars_are_named_once_with_the_command_that_fetches_them() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    ok(cli(Some(&redis), dir.path(), &["migrate"]));
    std::fs::create_dir_all(dir.path().join("data")).unwrap();

    // a run whose every experiment fails for the missing bars: said once, not per experiment
    let mut args = vec!["pipeline", "--max-experiments", "3", "--data-dir", "data"];
    args.extend_from_slice(TINY);
    let all = fails(cli(Some(&redis), dir.path(), &args));
    assert_eq!(all.matches("looked for").count(), 1, "{all}");
    assert_eq!(all.matches("BTC_5m.csv").count(), 1, "{all}");
    let fetch = "`synth-city data download --assets BTC --days 30 --resolution 5 --data-dir data`";
    assert!(
        all.contains(&format!(
            "no data file for BTC (5m bars) in data: looked for BTC_5m.csv; fetch it with {fetch}"
        )),
        "{all}"
    );
    assert!(all.contains("(not recoverable)"), "{all}");
    assert_fetch_command_is_real(dir.path(), &all);

    // no data directory at all: refused before a run is made, every asset and file named once,
    // one command for all of them
    let all = fails(cli(
        Some(&redis),
        dir.path(),
        &[
            "pipeline",
            "--assets",
            "BTC,ETH",
            "--timeframe",
            "1m",
            "--data-dir",
            "nowhere",
        ],
    ));
    assert_eq!(all.matches("looked for").count(), 1, "{all}");
    assert!(
        all.contains(
            "no data file for BTC, ETH (1m bars) in nowhere: looked for BTC_1m.csv, ETH_1m.csv; \
             fetch them with `synth-city data download --assets BTC,ETH --days 30 --resolution 1 \
             --data-dir nowhere`"
        ),
        "{all}"
    );
    let runs: Value = serde_json::from_str(&ok(cli(
        Some(&redis),
        dir.path(),
        &["runs", "list", "--json"],
    )))
    .unwrap();
    assert_eq!(
        runs.as_array().unwrap().len(),
        1,
        "only the first run was made: {runs}"
    );

    // a sweep of three presets: one message before any training
    let all = fails(cli(
        None,
        dir.path(),
        &[
            "sweep",
            "--presets",
            "transformer,lstm,wavenet",
            "--data-dir",
            "data",
        ],
    ));
    assert_eq!(all.matches("looked for").count(), 1, "{all}");
    assert!(all.contains(fetch), "{all}");
}

#[test]
fn the_seeds_preset_names_and_horizons_are_taken() {
    let dir = tempfile::tempdir().unwrap();
    let data = shared_data();
    let data = data.to_str().unwrap();
    let dry = |extra: &[&str]| {
        let mut args = vec!["experiment", "--dry-run", "--json", "--data-dir", data];
        args.extend_from_slice(extra);
        cli(None, dir.path(), &args)
    };
    // an OSM preset name: the preset it stands for, said on stderr
    let out = dry(&["--preset", "sde_transformer"]);
    assert!(out.status.success(), "{}", printed(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["spec"]["model"]["backbone"]["blocks"],
        json!(["TransformerBlock"])
    );
    assert_eq!(v["spec"]["model"]["head"]["kind"], "SDEHead");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("preset sde_transformer is transformer_sde"),
        "{}",
        printed(&out)
    );
    // a seed name with no counterpart: the closest presets and where to list them
    let e = fails(dry(&["--preset", "conv_gru"]));
    assert!(
        e.contains("closest: tcn_mixture, lstm_gbm") && e.contains("`synth-city components`"),
        "{e}"
    );
    // the seed's `experiment --horizon 12`: the timeframe's horizon, with a note
    let out = dry(&["--blocks", "lstm", "--head", "gbm", "--horizon", "12"]);
    assert!(out.status.success(), "{}", printed(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["spec"]["training"]["horizon"], 288);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("horizon 12 replaced by 288"),
        "{}",
        printed(&out)
    );
    let v: Value = serde_json::from_str(&ok(dry(&[
        "--blocks",
        "lstm",
        "--head",
        "gbm",
        "--horizon",
        "60",
    ])))
    .unwrap();
    assert_eq!(v["spec"]["data"]["timeframe"], "1m");
    let e = fails(dry(&[
        "--blocks",
        "lstm",
        "--head",
        "gbm",
        "--horizon",
        "100",
    ]));
    assert!(
        e.contains("training.horizon") && e.contains("--horizon") && e.contains("288"),
        "{e}"
    );
    // listing presets shows the aliases
    let text = ok(cli(None, dir.path(), &["components"]));
    assert!(
        text.contains("also: sde_transformer, pure_transformer, sde_evolution, transformer"),
        "{text}"
    );
    assert!(text.contains("conv_gru"), "{text}");

    // the seed README's sweep, on the real bars with a tiny budget
    let out = cli(
        None,
        dir.path(),
        &[
            "sweep",
            "--presets",
            "transformer,lstm,wavenet",
            "--epochs",
            "1",
            "--steps-per-epoch",
            "1",
            "--seq-len",
            "16",
            "--eval-windows",
            "1",
            "--eval-paths",
            "20",
            "--data-dir",
            data,
            "--out",
            "runs",
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", printed(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = v["ranking"].as_array().unwrap_or_else(|| panic!("{v}"));
    let trained: Vec<&Value> = rows.iter().filter(|r| r["baseline"] != true).collect();
    assert!(trained.iter().all(|r| r["status"] == "ok"), "{v}");
    let mut names: Vec<&str> = trained
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["lstm_gbm", "transformer_sde", "wavenet_copula"],
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn latest_names_the_newest_run_wherever_a_run_id_is_taken() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(cli(Some(&redis), d, &["migrate"]));

    // no run at all: says so, and how to start one
    for args in [
        &["runs", "show", "latest"][..],
        &["runs", "cancel", "latest"],
        &["publish", "--run", "latest"],
    ] {
        let e = fails(cli(Some(&redis), d, args));
        assert!(
            e.contains("no pipeline run yet") && e.contains("synth-city pipeline"),
            "{args:?}: {e}"
        );
    }
    let e = fails(cli(
        None,
        d,
        &["history", "run", "latest", "--store", "store"],
    ));
    assert!(
        e.contains("no pipeline run in") && e.contains("synth-city pipeline"),
        "{e}"
    );

    // two runs in Redis: latest is the one created last
    let enqueue = || {
        let out = ok(cli(
            Some(&redis),
            d,
            &[
                "pipeline",
                "--enqueue-only",
                "--json",
                "--max-experiments",
                "1",
            ],
        ));
        serde_json::from_str::<Value>(&out).unwrap()["run_id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let first = enqueue();
    let second = enqueue();
    assert_ne!(first, second);
    let shown: Value = serde_json::from_str(&ok(cli(
        Some(&redis),
        d,
        &["runs", "show", "LATEST", "--json"],
    )))
    .unwrap();
    assert_eq!(shown["id"], second.as_str());
    // publish resolves it too (the run has nothing scored yet, which it says of that run)
    let e = fails(cli(
        Some(&redis),
        d,
        &["publish", "--run", "latest", "--store", "store"],
    ));
    assert!(
        e.contains(&format!("run {second} has no scored experiment")),
        "{e}"
    );
    let out = ok(cli(Some(&redis), d, &["runs", "cancel", "latest"]));
    assert!(out.contains(&format!("{second}: cancelled")), "{out}");
    let shown: Value = serde_json::from_str(&ok(cli(
        Some(&redis),
        d,
        &["runs", "show", &first, "--json"],
    )))
    .unwrap();
    assert_eq!(shown["state"], "queued", "only the newest was cancelled");

    // the store's runs: latest is the one saved last
    let store: Arc<dyn Store> = Arc::new(FsStore::new(d.join("store")));
    for id in ["zz-older", "aa-newer"] {
        records::save_run_summary(
            &*store,
            id,
            &json!({"run_id": id, "success": true, "best_experiment": format!("{id}-best"),
                    "best_crps": 1.0, "gbm_crps": 2.0, "experiments": [{"name": "x"}]}),
        )
        .await
        .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let history = |args: &[&str]| {
        let mut all = vec!["history"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--store", "store", "--json"]);
        serde_json::from_str::<Value>(&ok(cli(None, d, &all))).unwrap()
    };
    assert_eq!(history(&["run", "latest"])["run_id"], "aa-newer");
    assert_eq!(history(&["run", "zz-older"])["run_id"], "zz-older");
    // the seed's `history hippius`: one run by --run-id (latest too), or the runs
    assert_eq!(
        history(&["hippius", "--run-id", "latest"])["summary"]["best_experiment"],
        "aa-newer-best"
    );
    assert_eq!(history(&["hippius"]).as_array().unwrap().len(), 2);
    assert_eq!(
        history(&["hippius", "--limit", "1"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let e = fails(cli(
        None,
        d,
        &["history", "run", "nope", "--store", "store"],
    ));
    assert!(e.contains("no run \"nope\""), "{e}");
}
