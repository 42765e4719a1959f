//! End-to-end checks of the SN50 commands through the built `synth-city` binary.

use std::path::{Path, PathBuf};
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_synth-city"))
}

fn shared(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared")
        .join(rel)
}

fn tmp(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sn50-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// `synth-city score crps --vectors FILE --json`'s output (the command must succeed).
fn score_crps_json(vectors: &Path) -> String {
    let out = bin()
        .args(["score", "crps", "--vectors"])
        .arg(vectors)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn score_crps_json_is_bit_exact_and_ordered() {
    let vectors = shared("spec/crps-vectors.json");
    let text = score_crps_json(&vectors);
    assert_eq!(text.trim().lines().count(), 1, "one JSON object");
    assert!(
        text.starts_with("{\"results\":[{\"index\":0,\"crps\":"),
        "{}",
        &text[..60]
    );
    let got: serde_json::Value = serde_json::from_str(&text).unwrap();
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&vectors).unwrap()).unwrap();
    let results = got["results"].as_array().unwrap();
    let cases = expected["cases"].as_array().unwrap();
    assert_eq!(results.len(), cases.len());
    for (r, c) in results.iter().zip(cases) {
        assert_eq!(
            r["crps"].as_f64().unwrap().to_bits(),
            c["expected"].as_f64().unwrap().to_bits()
        );
    }
}

/// The v2 file (three competitions, the 1 h volatility term): each case's price, volatility,
/// total and worker score printed in the file's own shape, bit for bit.
#[test]
fn score_crps_prints_the_v2_parts_bit_exact() {
    let vectors = shared("spec/crps-vectors-v2.json");
    let got: serde_json::Value = serde_json::from_str(&score_crps_json(&vectors)).unwrap();
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&vectors).unwrap()).unwrap();
    let results = got["results"].as_array().unwrap();
    let cases = file["cases"].as_array().unwrap();
    assert_eq!(results.len(), 64);
    let bits = |v: &serde_json::Value| v.as_f64().map(f64::to_bits);
    for (i, (r, c)) in results.iter().zip(cases).enumerate() {
        for field in ["price_crps", "vol_crps", "total", "worker_score"] {
            assert_eq!(bits(&r[field]), bits(&c[field]), "case {i} {field}");
        }
        assert_eq!(bits(&r["crps"]), bits(&c["expected"]), "case {i}");
    }
}

#[test]
fn check_shapes_reports_the_validator_string_and_exit_code() {
    let good = tmp(
        "good.json",
        r#"{"simulation_input": {"asset": "BTC", "start_time": "2026-06-01T12:00:00+00:00",
            "time_increment": 60, "time_length": 120, "num_simulations": 2},
            "simulation_output": [1780315200, 60, [104523.45, 2, 3], [1, 2, 3]]}"#,
    );
    let out = bin()
        .args(["check-shapes", "--input"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "CORRECT");

    let bad = tmp(
        "bad.json",
        r#"{"simulation_input": {"asset": "BTC", "start_time": "2026-06-01T12:00:00+00:00",
            "time_increment": 60, "time_length": 120, "num_simulations": 2},
            "simulation_output": [1780315200, 60, [123456789.0, 2, 3], [1, 2, 3]]}"#,
    );
    let out = bin()
        .args(["check-shapes", "--json", "--input"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["format_validation"],
        "Price format is incorrect: more than 8 significant digits 123456789.0"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("8 significant digits"));

    let nan = tmp(
        "nan.json",
        r#"{"simulation_input": {"start_time": "2026-06-01T12:00:00+00:00",
            "time_increment": 60, "time_length": 120, "num_simulations": 1},
            "simulation_output": [1780315200, 60, [1, NaN, 3]]}"#,
    );
    let out = bin()
        .args(["check-shapes", "--input"])
        .arg(&nan)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.trim(), "Price is not finite: nan");

    let zero = tmp(
        "zero.json",
        r#"{"simulation_input": {"start_time": "2026-06-01T12:00:00+00:00",
            "time_increment": 60, "time_length": 120, "num_simulations": 1},
            "simulation_output": [1780315200, 60, [1, 0.0, 3]]}"#,
    );
    let out = bin()
        .args(["check-shapes", "--input"])
        .arg(&zero)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("CORRECT") && stdout.contains("zero"),
        "{stdout}"
    );
}

#[test]
fn leaderboard_and_backtest_print_json() {
    let input = tmp(
        "lb.json",
        r#"{"low": [{"scored_time": 100000, "asset": "BTC", "scores": {"1": 10.0, "2": 20.0, "3": -1}}]}"#,
    );
    let out = bin()
        .args(["score", "leaderboard", "--json", "--input"])
        .arg(&input)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // BTC's 24 h prompt is scored by Crypto 24h, the second competition
    let c24 = &v["competitions"][1];
    assert_eq!(c24["id"], "crypto-24h");
    assert_eq!(c24["softmax_beta"], -0.15);
    let lb = c24["leaderboard"].as_array().unwrap();
    assert_eq!(lb.len(), 3);
    assert!(lb[0]["reward_weight"].as_f64().unwrap() > lb[1]["reward_weight"].as_f64().unwrap());
    assert!(v["competitions"][0]["leaderboard"]
        .as_array()
        .unwrap()
        .is_empty());
    // no burn unless the input names the owner
    let weights = v["weights"].as_array().unwrap();
    assert!(weights.iter().all(|w| w["uid"] != 248));

    let data = shared("data");
    if !data.is_dir() {
        return;
    }
    let run = |seed: &str| {
        let out = bin()
            .args([
                "score", "backtest", "--model", "gbm", "--prompt", "high", "--assets", "BTC,XAU",
            ])
            .arg("--data-dir")
            .arg(&data)
            .args(["--windows", "2", "--seed", seed, "--paths", "200", "--json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let a = run("7");
    assert_eq!(a["assets"]["BTC"]["windows"], 2);
    assert!(a["assets"]["XAU"]["mean_crps"].as_f64().unwrap() > 0.0);
    assert!(a["weighted_crps"].as_f64().unwrap() > 0.0);
    // The GBM against the GBM: ratio 1, half of Crypto 1h's pool; XAU is in no 1 h competition.
    assert_eq!(a["assets"]["BTC"]["ratio"], 1.0);
    assert_eq!(a["assets"]["BTC"]["competition"], "crypto-1h");
    assert!(a["assets"]["XAU"]["competition"].is_null());
    assert_eq!(a["competitions"][0]["id"], "crypto-1h");
    assert_eq!(a["competitions"][0]["share"]["pool_share"], 0.5);
    assert_eq!(a, run("7"), "same seed, same result");

    let out = bin()
        .args(["data", "info", "--json", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["files"].as_array().unwrap().len(), 18);
}
