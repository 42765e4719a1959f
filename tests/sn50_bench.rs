//! `synth-city bench crps` through the built binary: full-size cases, bit-exact checks, the batch
//! mode and the cases file for the Python peer (timings are not asserted).

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
    let data = shared("data");
    if !vectors.is_file() || !data.is_dir() {
        return; // the shared inputs are not part of every checkout
    }
    let cases = std::env::temp_dir().join(format!("sn50-bench-cases-{}.json", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_synth-city"))
        .args(["bench", "crps", "--json", "--iterations", "2", "--batch"])
        .args(["--miners", "6", "--threads", "2", "--rounds", "1"])
        .arg("--vectors")
        .arg(&vectors)
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
    let _ = std::fs::remove_file(&cases);
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
