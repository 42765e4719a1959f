//! The `sn50-crps-vectors/1` and `/2` file formats (`shared/spec/crps-vectors.json`, the
//! May 2026 validator's price CRPS; `crps-vectors-v2.json`, the December 2026 validator's
//! competitions with the 1 h volatility term): cases produced by the validator's own code, and
//! the `synth-city score crps` command that scores such a file.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::constants::ScoringInterval;
use super::crps::{CrpsError, Paths, INVALID_SCORE};
use super::vol::{calculate_total_score_for_miner, TotalScore, VolBlock};

/// The format tag of price-only cases.
pub const FORMAT: &str = "sn50-crps-vectors/1";
/// The format tag of cases with competitions and the volatility term.
pub const FORMAT_V2: &str = "sn50-crps-vectors/2";

/// Errors reading a vectors file.
#[derive(Debug, thiserror::Error)]
pub enum VectorsError {
    #[error("cannot read CRPS vectors file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("CRPS vectors file {path} is not valid sn50-crps-vectors JSON: {source}")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
    #[error("CRPS vectors file {path} has format {found:?}, expected {FORMAT:?} or {FORMAT_V2:?}")]
    Format { path: String, found: String },
}

/// A whole vectors file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VectorFile {
    #[serde(default)]
    pub format: Option<String>,
    pub cases: Vec<VectorCase>,
}

/// One case: a real price path (null = missing), simulated paths and the validator's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VectorCase {
    #[serde(default)]
    pub competition: Option<String>,
    #[serde(default)]
    pub prompt: Option<String>,
    #[serde(default)]
    pub asset: Option<String>,
    pub time_increment: u64,
    #[serde(default)]
    pub time_length: Option<u64>,
    /// `[[name, seconds], ...]` in scoring order.
    pub intervals: Vec<(String, u64)>,
    pub real: Vec<Option<f64>>,
    /// Simulated paths; a null point is read as NaN (as `np.array(...).astype(float)` does).
    pub paths: Vec<Vec<Option<f64>>>,
    /// `[[name, seconds, weight], ...]`: the volatility term's blocks (v2; empty for none).
    #[serde(default)]
    pub vol_blocks: Vec<(String, u64, f64)>,
    #[serde(default)]
    pub expected: Option<f64>,
    /// v2: the validator's parts of the score (`vol_crps` null for 24 h prompts or a price
    /// score of -1).
    #[serde(default)]
    pub price_crps: Option<f64>,
    #[serde(default)]
    pub vol_crps: Option<f64>,
    #[serde(default)]
    pub total: Option<f64>,
    #[serde(default)]
    pub worker_score: Option<f64>,
}

impl VectorCase {
    /// The real path with missing points as NaN.
    pub fn real_prices(&self) -> Vec<f64> {
        self.real.iter().map(|x| x.unwrap_or(f64::NAN)).collect()
    }

    /// The scoring intervals.
    pub fn scoring_intervals(&self) -> Vec<ScoringInterval> {
        self.intervals
            .iter()
            .map(|(n, s)| ScoringInterval::new(n, *s))
            .collect()
    }

    /// The simulated paths.
    pub fn sim_paths(&self) -> Result<Paths, CrpsError> {
        let rows: Vec<Vec<f64>> = self
            .paths
            .iter()
            .map(|p| p.iter().map(|x| x.unwrap_or(f64::NAN)).collect())
            .collect();
        Paths::from_rows(&rows)
    }

    /// The volatility blocks (none for price-only cases).
    pub fn volatility_blocks(&self) -> Vec<VolBlock> {
        self.vol_blocks
            .iter()
            .map(|(n, s, w)| VolBlock::new(n, *s, *w))
            .collect()
    }

    /// `calculate_total_score_for_miner` on this case: the price CRPS plus the volatility
    /// term where the case has blocks; -1.0 for a zero price, possibly NaN.
    pub fn score(&self) -> Result<f64, CrpsError> {
        self.total_score().map(|t| t.total)
    }

    /// The score with its parts.
    pub fn total_score(&self) -> Result<TotalScore, CrpsError> {
        let sims = self.sim_paths()?;
        calculate_total_score_for_miner(
            &sims,
            &self.real_prices(),
            self.time_increment,
            &self.scoring_intervals(),
            &self.volatility_blocks(),
        )
    }
}

/// Parse vectors JSON text (with serde_json's round-trip float parsing).
pub fn parse_vectors(text: &str, origin: &str) -> Result<VectorFile, VectorsError> {
    let file: VectorFile = serde_json::from_str(text).map_err(|source| VectorsError::Parse {
        path: origin.to_string(),
        source,
    })?;
    if let Some(f) = &file.format {
        if f != FORMAT && f != FORMAT_V2 {
            return Err(VectorsError::Format {
                path: origin.to_string(),
                found: f.clone(),
            });
        }
    }
    Ok(file)
}

/// Read and parse a vectors file.
pub fn load_vectors(path: &Path) -> Result<VectorFile, VectorsError> {
    let text = std::fs::read_to_string(path).map_err(|source| VectorsError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse_vectors(&text, &path.display().to_string())
}

/// The `score crps --json` output: `{"results": [{"index": i, "crps": x}, ...]}` in case order,
/// `-1.0` for invalid (zero price, or a case the validator's code would raise on, which then also
/// carries `"error"`), `null` for NaN.
pub fn score_vectors_json(file: &VectorFile) -> Value {
    serde_json::to_value(CrpsResults {
        results: score_vectors(file),
    })
    .expect("results serialize")
}

/// The same output as text, with keys in the documented order (`index` before `crps`).
pub fn score_vectors_json_string(file: &VectorFile) -> String {
    serde_json::to_string(&CrpsResults {
        results: score_vectors(file),
    })
    .expect("results serialize")
}

/// One line of the `score crps` results.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CrpsResult {
    pub index: usize,
    /// The total; `-1.0` invalid, `None` (null) for NaN.
    pub crps: Option<f64>,
    /// Why the validator's code would have raised, for cases scored -1 that way.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// v2 files: the parts, in the shape of the file's own fields (`vol_crps` null where the
    /// validator gives none).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub parts: Option<ScoreParts>,
}

/// The parts of a v2 case's score, named as the vectors file names them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScoreParts {
    pub price_crps: Option<f64>,
    pub vol_crps: Option<f64>,
    pub total: Option<f64>,
    pub worker_score: f64,
}

/// `{"results": [...]}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CrpsResults {
    pub results: Vec<CrpsResult>,
}

/// Score every case, in order.
pub fn score_vectors(file: &VectorFile) -> Vec<CrpsResult> {
    let v2 = file.format.as_deref() == Some(FORMAT_V2);
    let finite = |v: f64| (!v.is_nan()).then_some(v);
    file.cases
        .iter()
        .enumerate()
        .map(|(index, case)| match case.total_score() {
            Ok(t) => CrpsResult {
                index,
                crps: finite(t.total),
                error: None,
                parts: v2.then(|| ScoreParts {
                    price_crps: finite(t.price),
                    vol_crps: t.vol.as_ref().map(|v| v.total),
                    total: finite(t.total),
                    worker_score: t.worker_score(),
                }),
            },
            Err(e) => CrpsResult {
                index,
                crps: Some(INVALID_SCORE),
                error: Some(e.to_string()),
                parts: v2.then_some(ScoreParts {
                    price_crps: Some(INVALID_SCORE),
                    vol_crps: None,
                    total: Some(INVALID_SCORE),
                    worker_score: INVALID_SCORE,
                }),
            },
        })
        .collect()
}

/// A plain-text table of the same results, with the expected value and a match flag when the
/// file carries `expected`.
pub fn score_vectors_text(file: &VectorFile) -> String {
    let mut out = String::from(
        "index  prompt asset   paths  crps                     expected                 match\n",
    );
    for (i, case) in file.cases.iter().enumerate() {
        let got = case.score();
        let got_s = match &got {
            Ok(v) => format!("{v:?}"),
            Err(e) => format!("error: {e}"),
        };
        let (exp_s, ok) = match case.expected {
            Some(e) => {
                let ok = match got {
                    Ok(v) => v.to_bits() == e.to_bits() || (v.is_nan() && e.is_nan()),
                    Err(_) => e == INVALID_SCORE,
                };
                (format!("{e:?}"), if ok { "yes" } else { "NO" })
            }
            None => ("-".to_string(), "-"),
        };
        out.push_str(&format!(
            "{:<6} {:<6} {:<7} {:<6} {:<24} {:<24} {}\n",
            i,
            case.prompt.as_deref().unwrap_or("-"),
            case.asset.as_deref().unwrap_or("-"),
            case.paths.len(),
            got_s,
            exp_s,
            ok
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_output_shape() {
        let text = r#"{"format": "sn50-crps-vectors/1", "cases": [
            {"time_increment": 300, "intervals": [["5min", 300], ["24hour_abs", 86400]],
             "real": [92600, 92500, 93500], "paths": [[90000, 91000, 92000], [90000, 91000, 92000]],
             "expected": 284.1200564488584},
            {"time_increment": 300, "intervals": [["5min", 300]],
             "real": [1, 2, 3], "paths": [[1, 0, 3]]},
            {"time_increment": 300, "intervals": [["5min", 300]],
             "real": [1, 2, 3], "paths": [[1, null, 3]]},
            {"time_increment": 300, "intervals": [["1min", 60]],
             "real": [1, 2, 3], "paths": [[1, 2, 3]]}
        ]}"#;
        let f = parse_vectors(text, "inline").unwrap();
        let out = score_vectors_json(&f);
        let r = out["results"].as_array().unwrap();
        assert_eq!(r.len(), 4);
        assert_eq!(r[0]["index"], 0);
        assert_eq!(r[1]["crps"].as_f64(), Some(-1.0));
        assert!(r[2]["crps"].is_null());
        assert_eq!(r[3]["crps"].as_f64(), Some(-1.0));
        assert!(r[3]["error"].as_str().unwrap().contains("1min"));
        // The whole first case: 5min only would differ; the sum includes the abs interval.
        let s = serde_json::to_string(&out).unwrap();
        assert!(s.contains("\"crps\":-1.0"), "{s}");
        let table = score_vectors_text(&f);
        assert!(table.lines().nth(1).unwrap().ends_with("NO") || table.contains("yes"));
    }

    #[test]
    fn wrong_format_is_named() {
        let e = parse_vectors(r#"{"format": "x/2", "cases": []}"#, "f.json").unwrap_err();
        assert!(
            e.to_string().contains("x/2") && e.to_string().contains("f.json"),
            "{e}"
        );
        let e = parse_vectors(r#"{"cases": [{}]}"#, "g.json").unwrap_err();
        assert!(e.to_string().contains("g.json"), "{e}");
    }
}
