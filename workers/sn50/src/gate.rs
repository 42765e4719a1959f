//! The promotion gate: given the exact SN50 scores (the validator's total score, lower is
//! better) of a candidate, the current champion (absent: the GBM serves) and the GBM on the
//! same evaluation windows, decide whether the candidate may replace the champion for one
//! (asset, prompt) pair, and record why.
//!
//! The rule ([`decide`]): promote only when the candidate's mean score beats both the champion's
//! and the GBM's by a relative margin ([`GateParams::margin`], 1 % by default) **and** each
//! difference is significant under a one-sided Diebold–Mariano test ([`diebold_mariano`]) on
//! the per-window loss differences `d_t = candidate_t - other_t`: the long-run variance is
//! Newey–West's (Bartlett kernel, [`GateParams::lag`] or the automatic lag of [`auto_lag`]),
//! the statistic gets the Harvey–Leybourne–Newbold small-sample correction with `h = lag + 1`,
//! and is compared with Student-t with `T - 1` degrees of freedom at [`GateParams::alpha`]
//! (0.05). Both tests must pass (an intersection–union test, so the pair is at level alpha
//! without a multiplicity correction). Fewer than [`GateParams::min_windows`] usable windows is
//! a refusal for lack of evidence; so is a candidate the validator would score invalid (-1) on
//! any window. A window where the champion or the GBM is invalid is left out, and listed.
//!
//! This module does not produce the scores (the backtest does, `crate::backtest`), store
//! decisions or move champions (the publisher does): it is the pure statistics and the record.

use serde::{Deserialize, Serialize};

use crate::crps::INVALID_SCORE;

/// The gate's parameters; [`GateParams::default`] is what `models promote` uses.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GateParams {
    /// The relative margin the candidate's mean must beat each other mean by: it must be at
    /// most `(1 - margin)` times the champion's and the GBM's.
    pub margin: f64,
    /// The one-sided test's level.
    pub alpha: f64,
    /// Fewer usable windows than this: refused, not enough evidence.
    pub min_windows: usize,
    /// The Newey–West lag; `None`: [`auto_lag`] of the windows.
    pub lag: Option<usize>,
}

impl Default for GateParams {
    fn default() -> Self {
        GateParams {
            margin: 0.01,
            alpha: 0.05,
            min_windows: 20,
            lag: None,
        }
    }
}

/// Parameters that make no test.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GateError {
    #[error("gate: {0}")]
    Params(String),
    #[error("gate: {what} has {got} scores for {windows} windows: score every contender on the same windows")]
    Lengths {
        what: &'static str,
        got: usize,
        windows: usize,
    },
}

impl GateParams {
    /// Checks the parameters: margin in [0, 1), alpha in (0, 0.5], at least 3 windows.
    pub fn check(&self) -> Result<(), GateError> {
        if !(self.margin.is_finite() && (0.0..1.0).contains(&self.margin)) {
            return Err(GateError::Params(format!(
                "margin {} must be at least 0 and below 1 (0.01 is 1 %)",
                self.margin
            )));
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0 && self.alpha <= 0.5) {
            return Err(GateError::Params(format!(
                "alpha {} must be above 0 and at most 0.5",
                self.alpha
            )));
        }
        if self.min_windows < 3 {
            return Err(GateError::Params(format!(
                "min_windows {} must be at least 3",
                self.min_windows
            )));
        }
        Ok(())
    }
}

/// A one-sided Diebold–Mariano test of `H0: E[d] >= 0` against `H1: E[d] < 0` (the candidate's
/// loss is lower).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DmTest {
    /// Windows.
    pub n: usize,
    /// The mean loss difference.
    pub mean: f64,
    /// The Newey–West long-run variance of `d` (Bartlett weights `1 - k / (lag + 1)`).
    pub long_run_variance: f64,
    pub lag: usize,
    /// `mean / sqrt(long_run_variance / n)`.
    pub statistic: f64,
    /// The statistic times the Harvey–Leybourne–Newbold factor
    /// `sqrt((n + 1 - 2h + h (h - 1) / n) / n)`, `h = lag + 1`.
    pub hln_statistic: f64,
    /// `P(t_{n-1} <= hln_statistic)`.
    pub p_value: f64,
}

/// The Diebold–Mariano test on loss differences `d` with a Newey–West variance of `lag` lags
/// (`lag` is capped at `n - 2`, where the HLN factor stays positive). `None` with fewer than 3
/// differences or a non-finite one. A zero variance (every difference equal) gives a p-value
/// of 0 when the mean is negative and 1 otherwise.
pub fn diebold_mariano(d: &[f64], lag: usize) -> Option<DmTest> {
    let n = d.len();
    if n < 3 || d.iter().any(|x| !x.is_finite()) {
        return None;
    }
    let lag = lag.min(n - 2);
    let nf = n as f64;
    let mean = d.iter().sum::<f64>() / nf;
    let gamma = |k: usize| -> f64 {
        (k..n)
            .map(|t| (d[t] - mean) * (d[t - k] - mean))
            .sum::<f64>()
            / nf
    };
    let mut lrv = gamma(0);
    for k in 1..=lag {
        lrv += 2.0 * (1.0 - k as f64 / (lag as f64 + 1.0)) * gamma(k);
    }
    let h = (lag + 1) as f64;
    let hln = ((nf + 1.0 - 2.0 * h + h * (h - 1.0) / nf) / nf).sqrt();
    let (statistic, p_value) = if lrv > 0.0 && lrv.is_finite() {
        let s = mean / (lrv / nf).sqrt();
        (s, student_t_cdf(s * hln, nf - 1.0))
    } else if mean < 0.0 {
        (f64::NEG_INFINITY, 0.0)
    } else {
        (
            if mean > 0.0 { f64::INFINITY } else { 0.0 },
            if mean > 0.0 { 1.0 } else { 0.5 },
        )
    };
    Some(DmTest {
        n,
        mean,
        long_run_variance: lrv,
        lag,
        statistic,
        hln_statistic: statistic * hln,
        p_value,
    })
}

/// The automatic Newey–West lag for windows starting at `starts` (sorted) whose realised paths
/// last `horizon_secs`: the larger of `floor(T^(1/3))` and the most later windows one window's
/// path overlaps (overlapping windows share realised prices, so their scores are correlated up
/// to that many windows apart).
pub fn auto_lag(starts: &[i64], horizon_secs: i64) -> usize {
    let n = starts.len();
    let rule = (n as f64).cbrt().floor() as usize;
    let overlap = (0..n)
        .map(|i| {
            starts[i + 1..]
                .iter()
                .take_while(|&&s| s < starts[i] + horizon_secs)
                .count()
        })
        .max()
        .unwrap_or(0);
    rule.max(overlap)
}

/// The candidate against one other contender.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// `champion <name>` or `gbm`.
    pub against: String,
    pub mean: f64,
    /// Candidate mean over this one's.
    pub ratio: f64,
    /// `ratio <= 1 - margin`.
    pub beats_margin: bool,
    pub test: Option<DmTest>,
    /// `p_value < alpha`.
    pub significant: bool,
}

/// Promote or refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Promote,
    Refuse,
}

/// Scores on the same windows, one per window, `-1` where the validator would score the answer
/// invalid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateInput {
    /// The candidate's name (a published model, `run/name`).
    pub candidate: String,
    /// The champion's name; `None`: no model has passed the gate, the GBM serves.
    pub champion: Option<String>,
    pub asset: String,
    /// `low` (24 h) or `high` (1 h).
    pub prompt: String,
    /// The windows' start times (unix seconds), sorted.
    pub windows: Vec<i64>,
    /// The prompt's time length: how long a window's realised path lasts.
    pub horizon_secs: i64,
    pub candidate_scores: Vec<f64>,
    /// `None` when there is no champion.
    pub champion_scores: Option<Vec<f64>>,
    pub gbm_scores: Vec<f64>,
}

/// The gate's decision with everything it was decided on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateDecision {
    pub candidate: String,
    pub champion: Option<String>,
    pub asset: String,
    pub prompt: String,
    /// Every window scored (start times), with every score.
    pub windows: Vec<i64>,
    pub candidate_scores: Vec<f64>,
    pub champion_scores: Option<Vec<f64>>,
    pub gbm_scores: Vec<f64>,
    /// Windows left out of the test because the champion or the GBM was invalid there.
    pub excluded: Vec<i64>,
    /// Means over the windows the test used (NaN when none).
    pub candidate_mean: f64,
    pub champion_mean: Option<f64>,
    pub gbm_mean: f64,
    pub vs_champion: Option<Comparison>,
    pub vs_gbm: Option<Comparison>,
    /// The Newey–West lag used.
    pub lag: usize,
    pub params: GateParams,
    pub verdict: Verdict,
    /// Why, in words.
    pub reason: String,
}

fn mean(x: &[f64]) -> f64 {
    if x.is_empty() {
        f64::NAN
    } else {
        x.iter().sum::<f64>() / x.len() as f64
    }
}

/// Decides whether `input.candidate` is promoted (see the module doc for the rule).
pub fn decide(input: GateInput, params: GateParams) -> Result<GateDecision, GateError> {
    params.check()?;
    let w = input.windows.len();
    let check = |what, got: usize| {
        if got == w {
            Ok(())
        } else {
            Err(GateError::Lengths {
                what,
                got,
                windows: w,
            })
        }
    };
    check("the candidate", input.candidate_scores.len())?;
    check("the GBM", input.gbm_scores.len())?;
    if let Some(c) = &input.champion_scores {
        check("the champion", c.len())?;
    }
    let invalid = |x: f64| x == INVALID_SCORE || !x.is_finite();
    let candidate_invalid = input
        .candidate_scores
        .iter()
        .filter(|&&x| invalid(x))
        .count();
    let mut kept = Vec::new();
    let mut excluded = Vec::new();
    for i in 0..w {
        let other_invalid = invalid(input.gbm_scores[i])
            || input
                .champion_scores
                .as_ref()
                .is_some_and(|c| invalid(c[i]));
        if other_invalid {
            excluded.push(input.windows[i]);
        } else if !invalid(input.candidate_scores[i]) {
            kept.push(i);
        }
    }
    let pick = |s: &[f64]| kept.iter().map(|&i| s[i]).collect::<Vec<f64>>();
    let cand = pick(&input.candidate_scores);
    let gbm = pick(&input.gbm_scores);
    let champ = input.champion_scores.as_deref().map(pick);
    let starts: Vec<i64> = kept.iter().map(|&i| input.windows[i]).collect();
    let lag = params
        .lag
        .unwrap_or_else(|| auto_lag(&starts, input.horizon_secs))
        .min(starts.len().saturating_sub(2));
    let compare = |against: String, other: &[f64]| -> Comparison {
        let m = mean(other);
        let ratio = mean(&cand) / m;
        let d: Vec<f64> = cand.iter().zip(other).map(|(a, b)| a - b).collect();
        let test = diebold_mariano(&d, lag);
        Comparison {
            against,
            mean: m,
            ratio,
            beats_margin: ratio.is_finite() && ratio <= 1.0 - params.margin,
            significant: test.is_some_and(|t| t.p_value < params.alpha),
            test,
        }
    };
    let enough = kept.len() >= params.min_windows && candidate_invalid == 0;
    let vs_gbm = enough.then(|| compare("gbm".into(), &gbm));
    let vs_champion = match (&champ, &input.champion) {
        (Some(c), Some(name)) if enough => Some(compare(format!("champion {name}"), c)),
        _ => None,
    };
    let rel = |x: f64| {
        if x <= 1.0 {
            format!("{:.2} % better", 100.0 * (1.0 - x))
        } else {
            format!("{:.2} % worse", 100.0 * (x - 1.0))
        }
    };
    let (verdict, reason) = if candidate_invalid > 0 {
        (
            Verdict::Refuse,
            format!(
                "the validator would score the candidate invalid (-1) on {candidate_invalid} of {w} windows"
            ),
        )
    } else if kept.len() < params.min_windows {
        (
            Verdict::Refuse,
            format!(
                "not enough evidence: {} usable windows ({} left out where the champion or the GBM was invalid), at least {} needed",
                kept.len(),
                excluded.len(),
                params.min_windows
            ),
        )
    } else {
        let mut why = Vec::new();
        for c in vs_champion.iter().chain(vs_gbm.iter()) {
            let p = c.test.map_or(f64::NAN, |t| t.p_value);
            if !c.beats_margin {
                why.push(format!(
                    "its mean score is {:.4} of the {}'s ({}; at least {:.2} % better needed)",
                    c.ratio,
                    c.against,
                    rel(c.ratio),
                    100.0 * params.margin
                ));
            } else if !c.significant {
                why.push(format!(
                    "its lead over the {} ({:.4} of its mean) is not significant: Diebold-Mariano p = {p:.4}, alpha {}",
                    c.against, c.ratio, params.alpha
                ));
            }
        }
        if why.is_empty() {
            let parts: Vec<String> = vs_champion
                .iter()
                .chain(vs_gbm.iter())
                .map(|c| {
                    format!(
                        "{:.4} of the {}'s mean (p = {:.4})",
                        c.ratio,
                        c.against,
                        c.test.map_or(f64::NAN, |t| t.p_value)
                    )
                })
                .collect();
            (
                Verdict::Promote,
                format!(
                    "beats {} on {} windows: {}",
                    if vs_champion.is_some() {
                        "the champion and the GBM"
                    } else {
                        "the GBM (no champion yet)"
                    },
                    kept.len(),
                    parts.join("; ")
                ),
            )
        } else {
            (Verdict::Refuse, why.join("; "))
        }
    };
    Ok(GateDecision {
        candidate: input.candidate,
        champion: input.champion,
        asset: input.asset,
        prompt: input.prompt,
        windows: input.windows,
        candidate_scores: input.candidate_scores,
        champion_scores: input.champion_scores,
        gbm_scores: input.gbm_scores,
        excluded,
        candidate_mean: mean(&cand),
        champion_mean: champ.as_deref().map(mean),
        gbm_mean: mean(&gbm),
        vs_champion,
        vs_gbm,
        lag,
        params,
        verdict,
        reason,
    })
}

/// `ln Γ(x)` for `x > 0` (Lanczos, g = 7, 9 coefficients; about 15 significant digits).
fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // reflection
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = G[0];
    let t = x + 7.5;
    for (i, g) in G.iter().enumerate().skip(1) {
        a += g / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// The continued fraction of the regularized incomplete beta function (modified Lentz).
fn beta_cf(a: f64, b: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..=300 {
        let m = m as f64;
        let m2 = 2.0 * m;
        let aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 + aa * d;
        if d.abs() < TINY {
            d = TINY;
        }
        c = 1.0 + aa / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        h *= d * c;
        let aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 + aa * d;
        if d.abs() < TINY {
            d = TINY;
        }
        c = 1.0 + aa / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        let del = d * c;
        h *= del;
        if (del - 1.0).abs() < 1e-15 {
            break;
        }
    }
    h
}

/// The regularized incomplete beta function `I_x(a, b)`.
fn inc_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let front =
        (ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln()).exp();
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_cf(a, b, x) / a
    } else {
        1.0 - front * beta_cf(b, a, 1.0 - x) / b
    }
}

/// `P(T <= t)` for Student's t with `df` degrees of freedom.
pub fn student_t_cdf(t: f64, df: f64) -> f64 {
    if t.is_nan() || df.is_nan() || df <= 0.0 {
        return f64::NAN;
    }
    if t.is_infinite() {
        return if t > 0.0 { 1.0 } else { 0.0 };
    }
    let tail = 0.5 * inc_beta(df / 2.0, 0.5, df / (df + t * t));
    if t > 0.0 {
        1.0 - tail
    } else {
        tail
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * b.abs().max(1e-300)
    }

    /// Values from Python's standard library: Simpson's rule (200,000 intervals) on the t
    /// density after `x = sqrt(df) tan(θ)` (a finite interval), with `math.lgamma`.
    #[test]
    fn student_t_matches_an_independent_integration() {
        for (t, df, want) in [
            (-1.0, 4.0, 0.186_950_483_150_030_63),
            (2.5, 10.0, 0.984_276_577_881_687_2),
            (-3.2, 19.0, 0.002_357_094_514_131_587),
            (0.0, 7.0, 0.5),
            // df = 2 has a closed form: 0.5 + t / (2 sqrt(2 + t^2))
            (-0.7, 2.0, 0.278_196_512_316_432_7),
        ] {
            let got = student_t_cdf(t, df);
            assert!(close(got, want, 1e-9), "t={t} df={df}: {got} vs {want}");
        }
        assert_eq!(student_t_cdf(f64::NEG_INFINITY, 5.0), 0.0);
    }

    /// A small series whose statistic was computed independently in Python (standard library
    /// only):
    ///
    /// ```text
    /// d=[-0.3,0.1,-0.5,-0.2,0.05,-0.4,-0.1,-0.25,0.2,-0.35]; n=len(d); m=sum(d)/n; L=2
    /// g=lambda k: sum((d[t]-m)*(d[t-k]-m) for t in range(k,n))/n
    /// lrv=g(0)+sum(2*(1-k/(L+1))*g(k) for k in range(1,L+1)); dm=m/math.sqrt(lrv/n)
    /// h=L+1; hln=dm*math.sqrt((n+1-2*h+h*(h-1)/n)/n)
    /// p = the t(n-1) CDF at hln, integrated as in the test above
    /// ```
    #[test]
    fn diebold_mariano_matches_a_hand_computed_case() {
        let d = [-0.3, 0.1, -0.5, -0.2, 0.05, -0.4, -0.1, -0.25, 0.2, -0.35];
        let t = diebold_mariano(&d, 2).unwrap();
        assert_eq!(t.n, 10);
        assert!(close(t.mean, -0.175, 1e-12));
        assert!(
            close(t.long_run_variance, 0.012_458_333_333_333_342, 1e-9),
            "{t:?}"
        );
        assert!(close(t.statistic, -4.958_017_728_823_797, 1e-9), "{t:?}");
        assert!(
            close(t.hln_statistic, -3.710_240_731_761_943_7, 1e-9),
            "{t:?}"
        );
        assert!(close(t.p_value, 0.002_421_589_076_201_758, 1e-8), "{t:?}");
        // lag 0: the plain variance over n
        let t0 = diebold_mariano(&d, 0).unwrap();
        assert!(close(t0.long_run_variance, 0.048_125, 1e-9), "{t0:?}");
        // too few windows, or a non-finite difference: no test
        assert!(diebold_mariano(&d[..2], 0).is_none());
        assert!(diebold_mariano(&[1.0, f64::NAN, 2.0], 0).is_none());
    }

    #[test]
    fn the_automatic_lag_counts_overlapping_windows() {
        // 24 h windows 6 h apart overlap the next three
        let starts: Vec<i64> = (0..30).map(|i| i * 6 * 3600).collect();
        assert_eq!(auto_lag(&starts, 86_400), 3);
        // 2 days apart: no overlap, floor(30^(1/3)) = 3
        let apart: Vec<i64> = (0..30).map(|i| i * 2 * 86_400).collect();
        assert_eq!(auto_lag(&apart, 86_400), 3);
        let dense: Vec<i64> = (0..30).map(|i| i * 3600).collect();
        assert_eq!(auto_lag(&dense, 86_400), 23);
    }

    /// A pseudo-random but fixed series: the GBM's scores around 100.
    fn noise(n: usize, seed: u64) -> Vec<f64> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((x >> 33) as f64 / (1u64 << 31) as f64) - 0.5
            })
            .collect()
    }

    fn input(cand: Vec<f64>, champ: Option<Vec<f64>>, gbm: Vec<f64>) -> GateInput {
        let n = gbm.len();
        GateInput {
            candidate: "run-b/m".into(),
            champion: champ.as_ref().map(|_| "run-a/m".into()),
            asset: "BTC".into(),
            prompt: "low".into(),
            windows: (0..n as i64)
                .map(|i| 1_700_000_000 + i * 2 * 86_400)
                .collect(),
            horizon_secs: 86_400,
            candidate_scores: cand,
            champion_scores: champ,
            gbm_scores: gbm,
        }
    }

    #[test]
    fn a_candidate_worse_than_the_gbm_is_refused() {
        let gbm: Vec<f64> = noise(30, 1).iter().map(|e| 100.0 + 20.0 * e).collect();
        let cand: Vec<f64> = gbm
            .iter()
            .zip(noise(30, 2))
            .map(|(g, e)| g * 1.05 + e)
            .collect();
        let d = decide(input(cand, None, gbm), GateParams::default()).unwrap();
        assert_eq!(d.verdict, Verdict::Refuse);
        assert!(d.reason.contains("of the gbm's"), "{}", d.reason);
        let c = d.vs_gbm.as_ref().unwrap();
        assert!(c.ratio > 1.04 && !c.beats_margin);
        assert!(c.test.unwrap().p_value > 0.5);
        assert!(d.vs_champion.is_none());
        // the record serializes with every score
        let j = serde_json::to_value(&d).unwrap();
        assert_eq!(j["verdict"], "refuse");
        assert_eq!(j["candidate_scores"].as_array().unwrap().len(), 30);
    }

    #[test]
    fn a_clearly_better_candidate_is_promoted() {
        let gbm: Vec<f64> = noise(30, 3).iter().map(|e| 100.0 + 20.0 * e).collect();
        let champ: Vec<f64> = gbm
            .iter()
            .zip(noise(30, 4))
            .map(|(g, e)| g * 0.97 + e)
            .collect();
        let cand: Vec<f64> = gbm
            .iter()
            .zip(noise(30, 5))
            .map(|(g, e)| g * 0.90 + e)
            .collect();
        let d = decide(input(cand, Some(champ), gbm), GateParams::default()).unwrap();
        assert_eq!(d.verdict, Verdict::Promote, "{}", d.reason);
        let vc = d.vs_champion.as_ref().unwrap();
        assert!(vc.beats_margin && vc.significant && vc.ratio < 0.95);
        assert!(vc.test.unwrap().p_value < 1e-6);
        assert!(
            d.reason.contains("the champion and the GBM"),
            "{}",
            d.reason
        );
        assert_eq!(d.lag, 3);
    }

    #[test]
    fn a_tiny_improvement_is_not_significant() {
        // beats the GBM by 1.5 % on average, but with window-to-window noise of about 20 %
        let gbm: Vec<f64> = noise(30, 6).iter().map(|e| 100.0 + 20.0 * e).collect();
        let cand: Vec<f64> = gbm
            .iter()
            .zip(noise(30, 7))
            .map(|(g, e)| g * 0.985 + 40.0 * e)
            .collect();
        let d = decide(input(cand, None, gbm), GateParams::default()).unwrap();
        let c = d.vs_gbm.as_ref().unwrap();
        assert!(c.beats_margin, "{c:?}");
        assert!(!c.significant, "{c:?}");
        assert_eq!(d.verdict, Verdict::Refuse);
        assert!(d.reason.contains("not significant"), "{}", d.reason);
    }

    #[test]
    fn too_few_or_invalid_windows_are_refused() {
        let gbm: Vec<f64> = (0..10).map(|i| 100.0 + i as f64).collect();
        let cand: Vec<f64> = gbm.iter().map(|g| g * 0.5).collect();
        let d = decide(
            input(cand.clone(), None, gbm.clone()),
            GateParams::default(),
        )
        .unwrap();
        assert_eq!(d.verdict, Verdict::Refuse);
        assert!(d.reason.starts_with("not enough evidence"), "{}", d.reason);
        let mut bad = cand.clone();
        bad[3] = INVALID_SCORE;
        let p = GateParams {
            min_windows: 5,
            ..GateParams::default()
        };
        let d = decide(input(bad, None, gbm.clone()), p).unwrap();
        assert!(d.reason.contains("invalid (-1) on 1 of 10"), "{}", d.reason);
        // a GBM-invalid window is left out and listed
        let mut g = gbm.clone();
        g[0] = INVALID_SCORE;
        let d = decide(input(cand.clone(), None, g), p).unwrap();
        assert_eq!(d.excluded.len(), 1);
        assert_eq!(d.verdict, Verdict::Promote, "{}", d.reason);
        // mismatched lengths and bad parameters are errors
        assert!(decide(input(cand[..9].to_vec(), None, gbm.clone()), p).is_err());
        let e = decide(
            input(cand, None, gbm),
            GateParams {
                alpha: 0.0,
                ..GateParams::default()
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("alpha"), "{e}");
    }
}
