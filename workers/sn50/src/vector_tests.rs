//! Tests: every case of shared/spec/crps-vectors.json (made by the validator's own code) must come
//! out bit-identical from the Rust port.

use std::path::Path;

use super::vectors::{load_vectors, score_vectors_json};

fn vectors_path() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/spec/crps-vectors.json")
}

#[test]
fn all_crps_vectors_are_bit_identical() {
    let file = load_vectors(&vectors_path()).expect("crps-vectors.json");
    assert_eq!(
        file.cases.len(),
        42,
        "the vectors file should hold 42 cases"
    );
    let mut failures = Vec::new();
    let mut invalid = 0;
    let mut full_size = 0;
    for (i, case) in file.cases.iter().enumerate() {
        let expected = case.expected.expect("every case has an expected value");
        let got = case.score().unwrap_or_else(|e| panic!("case {i}: {e}"));
        if expected == -1.0 {
            invalid += 1;
        }
        if case.paths.len() == 1000 {
            full_size += 1;
        }
        if got.to_bits() != expected.to_bits() {
            failures.push(format!("case {i}: got {got:?}, expected {expected:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(invalid, 2, "two cases hold a zero price");
    assert_eq!(full_size, 2, "two full-size cases");
}

#[test]
fn json_results_follow_case_order() {
    let file = load_vectors(&vectors_path()).expect("crps-vectors.json");
    let out = score_vectors_json(&file);
    let results = out["results"].as_array().unwrap();
    assert_eq!(results.len(), file.cases.len());
    for (i, (r, case)) in results.iter().zip(&file.cases).enumerate() {
        assert_eq!(r["index"].as_u64(), Some(i as u64));
        // Round-trip through the printed text must give the same bits.
        let text = serde_json::to_string(&r["crps"]).unwrap();
        let back: f64 = serde_json::from_str(&text).unwrap();
        assert_eq!(back.to_bits(), case.expected.unwrap().to_bits(), "case {i}");
    }
}

#[test]
fn the_scalar_path_is_bit_identical_too() {
    use super::crps::calculate_crps_scalar;
    let file = load_vectors(&vectors_path()).expect("crps-vectors.json");
    for (i, case) in file.cases.iter().enumerate() {
        let sims = case.sim_paths().unwrap();
        let got = calculate_crps_scalar(
            &sims,
            &case.real_prices(),
            case.time_increment,
            &case.scoring_intervals(),
        )
        .unwrap();
        assert_eq!(got.to_bits(), case.expected.unwrap().to_bits(), "case {i}");
    }
}

fn vectors_v2_path() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/spec/crps-vectors-v2.json")
}

/// Every case of crps-vectors-v2.json (the December 2026 validator's own functions, three
/// competitions, the 1 h volatility term): price, volatility, total and worker score, bit for
/// bit, and the volatility term's per-size sums.
#[test]
fn all_v2_vectors_are_bit_identical() {
    let file = load_vectors(&vectors_v2_path()).expect("crps-vectors-v2.json");
    assert_eq!(file.cases.len(), 64, "the v2 file should hold 64 cases");
    let bits = |x: Option<f64>| x.map(f64::to_bits);
    let mut failures = Vec::new();
    let mut with_vol = 0;
    for (i, case) in file.cases.iter().enumerate() {
        let t = case
            .total_score()
            .unwrap_or_else(|e| panic!("case {i}: {e}"));
        let vol = t.vol.as_ref().map(|v| v.total);
        if vol.is_some() {
            with_vol += 1;
        }
        for (what, got, want) in [
            ("price_crps", Some(t.price), case.price_crps),
            ("vol_crps", vol, case.vol_crps),
            ("total", Some(t.total), case.total),
            ("worker_score", Some(t.worker_score()), case.worker_score),
            ("expected", Some(t.total), case.expected),
        ] {
            if bits(got) != bits(want) {
                failures.push(format!("case {i} {what}: got {got:?}, expected {want:?}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(
        with_vol, 22,
        "the 22 Crypto 1h cases carry the volatility term"
    );
}

/// The default competitions score as the December 2026 validator does: every v2 case, routed by
/// this build's default configuration (prompt kind and asset) to a competition and scored with
/// that competition's intervals and volatility blocks (not the case's own), lands in the case's
/// competition and gives the validator's worker score bit for bit.
#[test]
fn the_default_competitions_carry_todays_scoring() {
    use super::constants::{PromptKind, Sn50Config};
    use super::vol::miner_total_score;
    let file = load_vectors(&vectors_v2_path()).expect("crps-vectors-v2.json");
    let cfg = Sn50Config::default();
    for (i, case) in file.cases.iter().enumerate() {
        let kind = match case.prompt.as_deref() {
            Some("high") => PromptKind::High,
            _ => PromptKind::Low,
        };
        let asset = case.asset.as_deref().expect("v2 cases name their asset");
        let routed: Vec<_> = cfg.competitions_for(kind, asset).collect();
        assert_eq!(routed.len(), 1, "case {i}: {asset} {kind:?}");
        assert_eq!(
            Some(routed[0].label.as_str()),
            case.competition.as_deref(),
            "case {i} is routed to its competition"
        );
        let sims = case.sim_paths().unwrap();
        let got = miner_total_score(&sims, &case.real_prices(), routed[0]);
        assert_eq!(
            got.to_bits(),
            case.worker_score.unwrap().to_bits(),
            "case {i} ({:?})",
            case.competition
        );
    }
}
