//! `synth-city bench crps` through the built binary: full-size cases, bit-exact checks, the 1 h
//! total score (price plus volatility) beside its price part, the batch mode and the cases file
//! for the Python peer (timings are not asserted; the Python peer itself is run by hand).

use std::path::{Path, PathBuf};
use std::process::Command;

fn shared(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared")
        .join(rel)
}

#[test]
fn bench_crps_scores_full_prompts_bit_exactly_and_writes_the_cases() {
    let vectors = shared("spec/crps-vectors.json");
    let vectors_v2 = shared("spec/crps-vectors-v2.json");
    let data = shared("data");
    if !vectors.is_file() || !vectors_v2.is_file() || !data.is_dir() {
        return; // the shared inputs are not part of every checkout
    }
    let cases = std::env::temp_dir().join(format!("sn50-bench-cases-{}.json", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_synth-city"))
        .args(["bench", "crps", "--json", "--iterations", "2", "--batch"])
        .args(["--miners", "6", "--threads", "2", "--rounds", "1"])
        .args(["--high-windows", "1"])
        .arg("--vectors")
        .arg(&vectors)
        .arg("--vectors-v2")
        .arg(&vectors_v2)
        .arg("--data-dir")
        .arg(&data)
        .arg("--write-cases")
        .arg(&cases)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let timed = v["cases"].as_array().unwrap();
    assert_eq!(timed.len(), 3);
    let shapes: Vec<(u64, u64, u64)> = timed
        .iter()
        .map(|c| {
            assert_eq!(c["bit_exact"], true);
            assert!(c["mean_ms"].as_f64().unwrap() > 0.0);
            (
                c["paths"].as_u64().unwrap(),
                c["points"].as_u64().unwrap(),
                c["terms"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        shapes,
        vec![(1000, 289, 345), (1000, 289, 345), (1000, 61, 121)]
    );
    // The validator's values for the two vectors cases.
    assert_eq!(timed[0]["crps"].as_f64().unwrap(), 6566.079546905769);
    assert_eq!(timed[1]["crps"].as_f64().unwrap(), 9141.662164265708);
    let batch = v["batch"].as_array().unwrap();
    assert_eq!(batch.len(), 2, "one batch per prompt type");
    for b in batch {
        assert_eq!(b["responses"], 6);
        assert_eq!(b["threads"], 2);
        assert_eq!(b["bit_exact"], true);
        assert!(b["prompts_per_second"].as_f64().unwrap() > 0.0);
    }
    // The 1 h total: the two validator cases of vectors-v2, then one GBM window.
    let totals = v["totals"].as_array().unwrap();
    assert_eq!(totals.len(), 3);
    let from: Vec<&str> = totals
        .iter()
        .map(|t| t["expected_from"].as_str().unwrap())
        .collect();
    assert_eq!(from, ["validator", "validator", "rust scalar"]);
    for t in totals {
        assert_eq!(t["bit_exact"], true);
        assert_eq!(
            (t["paths"].as_u64(), t["points"].as_u64()),
            (Some(1000), Some(61))
        );
        assert!(t["total_ms"]["median_ms"].as_f64().unwrap() > 0.0);
        assert!(t["price_ms"]["median_ms"].as_f64().unwrap() > 0.0);
        let (p, vol) = (
            t["price_crps"].as_f64().unwrap(),
            t["vol_crps"].as_f64().unwrap(),
        );
        assert!(vol > 0.0);
        assert_eq!(t["total_score"].as_f64().unwrap(), p + vol);
    }
    // The validator's own values for vectors-v2 case 62 (SOL).
    assert_eq!(
        totals[0]["price_crps"].as_f64().unwrap(),
        1887.1276140962063
    );
    assert_eq!(
        totals[0]["total_score"].as_f64().unwrap(),
        1946.100091741818
    );
    let summary = &v["totals_summary"];
    assert_eq!(summary["prompts"], 3);
    assert!(summary["total_median_ms"].as_f64().unwrap() > 0.0);
    // The cases file is in the crps-vectors format and scores to its expected values.
    let out = Command::new(env!("CARGO_BIN_EXE_synth-city"))
        .args(["score", "crps", "--vectors"])
        .arg(&cases)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // ... with the 1 h cases' volatility blocks and parts, as the Python peer reads them.
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cases).unwrap()).unwrap();
    assert_eq!(file["format"], "sn50-crps-vectors/2");
    let written = file["cases"].as_array().unwrap();
    assert_eq!(written.len(), 6, "3 price-only cases and 3 total cases");
    let with_blocks: Vec<&serde_json::Value> = written
        .iter()
        .filter(|c| c["vol_blocks"].is_array())
        .collect();
    assert_eq!(with_blocks.len(), 3);
    for (c, t) in with_blocks.iter().zip(totals) {
        assert_eq!(
            c["vol_blocks"],
            serde_json::json!([
                ["vol_60min", 3600, 1.75],
                ["vol_15min", 900, 0.4375],
                ["vol_5min", 300, 0.14583333333333334]
            ])
        );
        assert_eq!(c["competition"], "Crypto 1h");
        assert_eq!(c["total"], t["total_score"]);
        assert_eq!(c["expected"], t["total_score"]);
        assert_eq!(c["price_crps"], t["price_crps"]);
        assert_eq!(c["vol_crps"], t["vol_crps"]);
    }
    // The BTC case of vectors-v2 keeps its 10 missing real points as nulls.
    let nulls = with_blocks[1]["real"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x.is_null())
        .count();
    assert_eq!(nulls, 10);
    let _ = std::fs::remove_file(&cases);
}

#[test]
fn bench_crps_high_windows_zero_times_only_the_validator_totals_in_text() {
    let (vectors, vectors_v2, data) = (
        shared("spec/crps-vectors.json"),
        shared("spec/crps-vectors-v2.json"),
        shared("data"),
    );
    if !vectors.is_file() || !vectors_v2.is_file() || !data.is_dir() {
        return;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_synth-city"))
        .args(["bench", "crps", "--iterations", "1", "--high-windows", "0"])
        .arg("--vectors")
        .arg(&vectors)
        .arg("--vectors-v2")
        .arg(&vectors_v2)
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("1 h total = price + vol"), "{text}");
    let rows: Vec<&str> = text.lines().filter(|l| l.contains("(validator)")).collect();
    assert_eq!(rows.len(), 2, "{text}");
    assert!(rows.iter().all(|l| l.contains(" yes ")), "{text}");
    assert!(!text.contains("(rust scalar)"), "{text}");
    assert!(text.contains("1 h prompts: 2;"), "{text}");
}

#[test]
fn bench_crps_reports_a_missing_vectors_v2_file() {
    let vectors = shared("spec/crps-vectors.json");
    let data = shared("data");
    if !vectors.is_file() || !data.is_dir() {
        return;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_synth-city"))
        .args(["bench", "crps", "--vectors-v2", "/nonexistent/v2.json"])
        .arg("--vectors")
        .arg(&vectors)
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/v2.json"), "{err}");
}

#[test]
fn bench_crps_reports_a_missing_vectors_file() {
    let out = Command::new(env!("CARGO_BIN_EXE_synth-city"))
        .args(["bench", "crps", "--vectors", "/nonexistent/vectors.json"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/vectors.json"), "{err}");
}
