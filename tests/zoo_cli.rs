//! End-to-end checks of the model-zoo commands through the built `synth-city` binary:
//! `components`, `experiment` (train, score against GBM, checkpoint), `simulate` from that
//! checkpoint and from `gbm`, with every response checked as the SN50 validator checks it;
//! `quick` and `sweep` (ranking with the GBM baseline); stderr stays quiet when it is not a
//! terminal.

use std::path::{Path, PathBuf};
use std::process::Command;

use sn50::response::{check_response, parse_python_json, PyValue, SimulationInput};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_synth-city"))
}

fn data_dir() -> Option<PathBuf> {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
    d.is_dir().then_some(d)
}

fn run_json(cmd: &mut Command) -> serde_json::Value {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.trim().lines().count(), 1, "one JSON document: {text}");
    serde_json::from_str(text.trim()).unwrap()
}

fn assert_valid_response(text: &str, start: i64, inc: i64, len: i64, n: i64) {
    let v = parse_python_json(text).unwrap();
    let input = SimulationInput {
        asset: "BTC".into(),
        start_time: chrono_iso(start),
        time_increment: inc,
        time_length: len,
        num_simulations: n,
    };
    let report = check_response(&PyValue::from_json(&v), &input, true);
    assert!(
        report.ok,
        "{} {:?}",
        report.format_validation, report.scoring_issue
    );
}

fn chrono_iso(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%S+00:00")
        .to_string()
}

#[test]
fn zoo_components_lists_only_real_components() {
    let v = run_json(bin().args(["components", "--json"]));
    let blocks: Vec<&str> = v["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    let heads: Vec<&str> = v["heads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    for b in [
        "TransformerBlock",
        "LSTMBlock",
        "TCNBlock",
        "WaveNetBlock",
        "MambaBlock",
    ] {
        assert!(blocks.contains(&b), "{b} missing");
    }
    for h in ["GBMHead", "SDEHead", "MixtureHead"] {
        assert!(heads.contains(&h), "{h} missing");
    }
    assert!(v["presets"].as_array().unwrap().len() >= 3);
    let out = bin().arg("components").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("Vaswani"));
}

#[test]
fn zoo_experiment_then_simulate() {
    let Some(data) = data_dir() else { return };
    let out_dir = std::env::temp_dir().join(format!("zoo-cli-{}", std::process::id()));
    let v = run_json(
        bin()
            .args([
                "experiment",
                "--blocks",
                "TCNBlock",
                "--head",
                "GBMHead",
                "--epochs",
                "1",
                "--asset",
                "BTC",
                "--timeframe",
                "5m",
            ])
            .args([
                "--d-model",
                "8",
                "--seq-len",
                "16",
                "--steps-per-epoch",
                "3",
                "--eval-windows",
                "3",
                "--eval-paths",
                "100",
            ])
            .arg("--data-dir")
            .arg(&data)
            .arg("--out")
            .arg(&out_dir)
            .arg("--json"),
    );
    let val = v["val_crps"].as_f64().unwrap();
    let gbm = v["gbm_crps"].as_f64().unwrap();
    assert!(
        val.is_finite() && val > 0.0 && gbm.is_finite() && gbm > 0.0,
        "{v}"
    );
    assert_eq!(v["windows"], 3);
    // the classical anchor, fitted on the bars before each window, scored on the same windows
    assert_eq!(v["classical_model"], "ewma-tod-t");
    let anchor = v["classical_crps"].as_f64().unwrap();
    assert!(anchor.is_finite() && anchor > 0.0 && anchor != gbm, "{v}");
    assert_eq!(v["classical_fallbacks"], 0, "{v}");
    assert!((v["classical_ratio"].as_f64().unwrap() - val / anchor).abs() < 1e-12);
    assert!(v["param_count"].as_u64().unwrap() > 100);
    let ck = v["checkpoint"].as_str().unwrap();
    assert!(Path::new(ck).join("model.safetensors").is_file());
    let at = 1_730_000_100i64;
    for model in [ck, "gbm"] {
        let out = bin()
            .args([
                "simulate",
                "--model",
                model,
                "--asset",
                "BTC",
                "--prompt",
                "low",
                "--at",
                &at.to_string(),
                "--paths",
                "1000",
                "--json",
            ])
            .arg("--data-dir")
            .arg(&data)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{model}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_valid_response(
            &String::from_utf8(out.stdout).unwrap(),
            at,
            300,
            86_400,
            1000,
        );
    }
    // the checkpoint backtests with the validator's CRPS, beside the GBM baseline
    let mut crps = Vec::new();
    for model in [ck, "gbm"] {
        let v = run_json(
            bin()
                .args(["score", "backtest", "--model", model, "--assets", "BTC"])
                .args(["--windows", "2", "--paths", "200", "--json", "--data-dir"])
                .arg(&data),
        );
        let c = v["assets"]["BTC"]["mean_crps"].as_f64().unwrap_or(f64::NAN);
        assert!(c.is_finite() && c > 0.0, "{model}: {v}");
        assert_eq!(v["assets"]["BTC"]["windows"], 2, "{v}");
        crps.push(c);
    }
    assert_ne!(crps[0], crps[1], "the checkpoint must not be the GBM");
    let out = bin()
        .args(["score", "backtest", "--model", "/no/such/ckpt", "--json"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/no/such/ckpt"));
    // invalid specs fail with every problem named
    let out = bin()
        .args([
            "experiment",
            "--blocks",
            "TransformerBlock,Nope",
            "--head",
            "gbm",
            "--d-model",
            "30",
            "--timeframe",
            "15m",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in ["model.backbone.blocks[1]", "n_heads", "data.timeframe"] {
        assert!(err.contains(needle), "{needle} not in {err}");
    }
    let _ = std::fs::remove_dir_all(&out_dir);
}

#[test]
fn zoo_quick_and_sweep_rank_presets_with_the_gbm_baseline() {
    let Some(data) = data_dir() else { return };
    let out_dir = std::env::temp_dir().join(format!("zoo-sweep-{}", std::process::id()));
    let small = [
        "--eval-windows",
        "2",
        "--eval-paths",
        "100",
        "--asset",
        "BTC",
    ];
    let mut quick = bin();
    quick
        .args(["quick", "--preset", "lstm_gbm", "--steps", "2"])
        .args(small)
        .arg("--data-dir")
        .arg(&data)
        .arg("--out")
        .arg(&out_dir)
        .arg("--json");
    let out = quick.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "stderr is not a terminal: nothing may be drawn: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let q: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(q["preset"], "lstm_gbm");
    assert_eq!(q["epochs_run"], 1);
    assert_eq!(q["windows"], 2);
    assert!(q["val_crps"].as_f64().unwrap() > 0.0, "{q}");
    let v = run_json(
        bin()
            .args([
                "sweep",
                "--presets",
                "lstm_gbm,tcn_mixture",
                "--epochs",
                "1",
                "--steps-per-epoch",
                "2",
            ])
            .args(small)
            .arg("--data-dir")
            .arg(&data)
            .arg("--out")
            .arg(&out_dir)
            .arg("--json"),
    );
    let ranking = v["ranking"].as_array().unwrap();
    assert_eq!(ranking.len(), 3, "two presets and the baseline: {v}");
    let mut names: Vec<&str> = ranking
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["gbm", "lstm_gbm", "tcn_mixture"]);
    let crps: Vec<f64> = ranking
        .iter()
        .map(|r| r["val_crps"].as_f64().unwrap())
        .collect();
    assert!(
        crps.windows(2).all(|w| w[0] <= w[1]),
        "not ranked: {crps:?}"
    );
    let ranks: Vec<u64> = ranking
        .iter()
        .map(|r| r["rank"].as_u64().unwrap())
        .collect();
    assert_eq!(ranks, [1, 2, 3]);
    // every preset was scored against the same GBM numbers, i.e. on the same windows
    let gbm = v["gbm_crps"].as_f64().unwrap();
    for r in ranking {
        assert_eq!(r["gbm_crps"].as_f64().unwrap(), gbm, "{r}");
        if r["name"] != "gbm" {
            assert!(Path::new(r["checkpoint"].as_str().unwrap()).is_dir());
            let ratio = r["val_crps"].as_f64().unwrap() / gbm;
            assert!((r["crps_ratio"].as_f64().unwrap() - ratio).abs() < 1e-12);
        }
    }
    // the same lstm_gbm run inside the sweep and as `quick`: same spec, same score
    let lstm = ranking.iter().find(|r| r["name"] == "lstm_gbm").unwrap();
    assert_eq!(lstm["val_crps"], q["val_crps"]);
    // several seeds: one run per seed, the mean ratio with its spread, ranked by the mean
    let v = run_json(
        bin()
            .args([
                "sweep",
                "--presets",
                "lstm_gbm",
                "--epochs",
                "1",
                "--steps-per-epoch",
                "2",
                "--seeds",
                "42,7",
            ])
            .args(small)
            .arg("--data-dir")
            .arg(&data)
            .arg("--out")
            .arg(&out_dir)
            .arg("--json"),
    );
    assert_eq!(v["seeds"], serde_json::json!([42, 7]), "{v}");
    let lstm7 = v["ranking"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "lstm_gbm")
        .unwrap()
        .clone();
    let per_seed = lstm7["seeds"].as_array().unwrap();
    assert_eq!(per_seed.len(), 2, "{lstm7}");
    // seed 42 is the run above, to the bit; seed 7 trains and scores differently
    assert_eq!(per_seed[0]["seed"], 42);
    assert_eq!(per_seed[0]["val_crps"], lstm["val_crps"]);
    assert_ne!(per_seed[1]["val_crps"], per_seed[0]["val_crps"]);
    let ratios: Vec<f64> = per_seed
        .iter()
        .map(|r| r["crps_ratio"].as_f64().unwrap())
        .collect();
    let mean = (ratios[0] + ratios[1]) / 2.0;
    assert!((lstm7["crps_ratio"].as_f64().unwrap() - mean).abs() < 1e-12);
    let sd = (ratios[0] - ratios[1]).abs() / 2f64.sqrt();
    assert!((lstm7["crps_ratio_sd"].as_f64().unwrap() - sd).abs() < 1e-12);
    assert_eq!(
        lstm7["beats_gbm"].as_u64().unwrap() as usize,
        ratios.iter().filter(|&&r| r < 1.0).count()
    );
    // a seed that is not a number, and --seed beside --seeds, are refused before training
    for (args, needle) in [
        (vec!["--seeds", "1,x"], "\"x\" is not a seed"),
        (vec!["--seeds", "3,3"], "3 is given twice"),
        (vec!["--seeds", "1", "--seed", "2"], "cannot be used with"),
    ] {
        let out = bin()
            .args(["sweep", "--presets", "lstm_gbm"])
            .args(&args)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{needle} not in {err}");
    }
    // an unknown preset is refused by name before anything trains
    let out = bin()
        .args(["sweep", "--presets", "lstm_gbm,nope", "--json"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("\"nope\"") && err.contains("baseline_gbm"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&out_dir);
}

#[test]
fn zoo_iso_helper_matches_known_dates() {
    assert_eq!(chrono_iso(0), "1970-01-01T00:00:00+00:00");
    assert_eq!(chrono_iso(1_730_000_100), "2024-10-27T03:35:00+00:00");
}

/// `--timeframe 1m` trains with the volatility term at weight 1 (the spec the dry run prints
/// says so), `--vol-loss-weight` overrides it, and a negative weight is refused by field.
#[test]
fn zoo_experiment_vol_loss_weight_flag() {
    let dry = |extra: &[&str]| {
        let mut c = bin();
        c.args([
            "experiment",
            "--blocks",
            "LSTMBlock",
            "--head",
            "GBMHead",
            "--dry-run",
            "--json",
        ])
        .args(extra);
        c
    };
    let v = run_json(&mut dry(&["--timeframe", "1m"]));
    assert_eq!(v["spec"]["training"]["vol_loss_weight"], 1.0, "{v}");
    assert_eq!(v["spec"]["training"]["horizon"], 60);
    let v = run_json(&mut dry(&[
        "--timeframe",
        "1m",
        "--vol-loss-weight",
        "0.25",
    ]));
    assert_eq!(v["spec"]["training"]["vol_loss_weight"], 0.25, "{v}");
    // 5 m (the default) has no volatility term: the weight is 0 and left out of the spec
    let v = run_json(&mut dry(&[]));
    assert!(v["spec"]["training"]["vol_loss_weight"].is_null(), "{v}");
    let out = dry(&["--timeframe", "1m", "--vol-loss-weight=-1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("training.vol_loss_weight"), "{err}");
}

#[test]
fn zoo_components_check_validates_a_graph_and_names_the_fault() {
    let tcn = Path::new(env!("CARGO_MANIFEST_DIR")).join("workers/trainer/components/tcn.json");
    let out = bin()
        .args(["components", "check"])
        .arg(&tcn)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // TCNBlock's parameter count at d_model 32 with kernel 3: 3 levels x 2 x (32*32*3 + 32)
    assert!(text.starts_with("ok: block \"tcn\""), "{text}");
    assert!(
        text.contains(&format!("{}", 6 * (32 * 32 * 3 + 32))),
        "{text}"
    );
    let v = run_json(
        bin()
            .args(["components", "check", "--json", "--d-model", "16"])
            .arg(&tcn),
    );
    assert_eq!(v["ok"], true);
    assert_eq!(v["report"]["estimate"]["params"], 6 * (16 * 16 * 3 + 16));
    // a graph with an unknown op: non-zero, naming the node, the field and the vocabulary
    let bad = std::env::temp_dir().join(format!("bad-graph-{}.json", std::process::id()));
    let doc = std::fs::read_to_string(&tcn)
        .unwrap()
        .replacen("\"relu\"", "\"fft\"", 1);
    std::fs::write(&bad, doc).unwrap();
    let out = bin()
        .args(["components", "check"])
        .arg(&bad)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("nodes[1].op (node \"l0a_relu\"): unknown op \"fft\"")
            && err.contains("conv1d"),
        "{err}"
    );
    let _ = std::fs::remove_file(&bad);
}

#[test]
fn zoo_experiment_trains_graph_components_and_the_checkpoint_keeps_them() {
    let Some(data) = data_dir() else { return };
    let comp = |name: &str| -> serde_json::Value {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("workers/trainer/components/{name}.json"));
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    };
    let mut spec = serde_json::json!({
        "version": 1,
        "model": {
            "backbone": {"blocks": ["graph:gated_conv"], "d_model": 8, "seq_len": 16,
                         "block_kwargs": [{"dilation": 4}]},
            "head": {"kind": "graph:student_t", "df": 4},
            "components": [comp("gated_conv"), comp("student_t")]
        },
        "training": {"horizon": 288, "n_paths": 16, "batch_size": 8, "lr": 0.003, "epochs": 1,
                     "patience": 1, "seed": 3, "steps_per_epoch": 3},
        "data": {"assets": ["BTC"], "timeframe": "5m"}
    });
    let dir = std::env::temp_dir().join(format!("zoo-cli-graph-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let spec_file = dir.join("spec.json");
    std::fs::write(&spec_file, spec.to_string()).unwrap();
    let out_dir = dir.join("out");
    let v = run_json(
        bin()
            .arg("experiment")
            .arg("--spec")
            .arg(&spec_file)
            .args(["--eval-windows", "3", "--eval-paths", "100", "--json"])
            .arg("--data-dir")
            .arg(&data)
            .arg("--out")
            .arg(&out_dir),
    );
    let val = v["val_crps"].as_f64().unwrap();
    assert!(val.is_finite() && val > 0.0, "{v}");
    let ck = v["checkpoint"].as_str().unwrap().to_string();
    // the author edits the component afterwards: the checkpoint keeps the graph it was trained with
    spec["model"]["components"][0]["nodes"][7]["op"] = "cumsum".into();
    std::fs::write(&spec_file, spec.to_string()).unwrap();
    let saved = std::fs::read_to_string(Path::new(&ck).join("spec.json")).unwrap();
    assert!(saved.contains("\"op\": \"ema\"") && saved.contains("\"graph:student_t\""));
    let at = 1_730_000_100i64;
    let out = bin()
        .args([
            "simulate", "--model", &ck, "--asset", "BTC", "--prompt", "low",
        ])
        .args(["--at", &at.to_string(), "--paths", "1000", "--json"])
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_valid_response(
        &String::from_utf8(out.stdout).unwrap(),
        at,
        300,
        86_400,
        1000,
    );
    // a spec whose graph is invalid fails before training, naming the node and the fix
    spec["model"]["components"][0]["nodes"][7]["op"] = "fft".into();
    std::fs::write(&spec_file, spec.to_string()).unwrap();
    let out = bin()
        .arg("experiment")
        .arg("--spec")
        .arg(&spec_file)
        .arg("--data-dir")
        .arg(&data)
        .arg("--out")
        .arg(dir.join("out2"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("model.components[0].nodes[7].op")
            && err.contains("node \"smooth\"")
            && err.contains("unknown op \"fft\""),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
