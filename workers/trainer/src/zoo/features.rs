//! Features from real bars and the windows a model trains on.
//!
//! Per bar: `log_return`, `abs_return`, `realized_vol` (log of the root mean square of the last
//! [`VOL_WINDOW`] returns), `range` (log of log(high/low)), `volume` (log1p), and the time of
//! day and of week as sine/cosine pairs. Every non-time feature is z-scored with a
//! [`Normalizer`] fitted on the training split only. A window (history of `seq_len` bars plus the
//! [`VOL_WINDOW`] bars its features look back on, and `horizon` target bars) is used only if all
//! its bars are consecutive: windows that cross a gap are dropped. The split is time-ordered:
//! training windows end (targets included) before the cutoff bar, validation windows start their
//! targets after it.

use serde::{Deserialize, Serialize};

use sn50::data::Bars;

/// Every feature name, in the order of the default spec.
pub const FEATURES: &[&str] = &[
    "log_return",
    "abs_return",
    "realized_vol",
    "range",
    "volume",
    "tod_sin",
    "tod_cos",
    "dow_sin",
    "dow_cos",
];

/// Returns the realised volatility looks back on (and the bars a window needs before its first).
pub const VOL_WINDOW: usize = 12;

/// Per-feature mean and standard deviation from the training split, plus the per-bar log-return
/// standard deviation that scales the heads' standardised returns back to log returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Normalizer {
    pub ret_std: f64,
    /// `[mean, std]` per raw feature `log_return, abs_return, realized_vol, range, volume`.
    pub stats: Vec<[f64; 2]>,
    /// Bars the statistics were fitted on.
    pub fitted_bars: usize,
}

const RAW: usize = 5;

/// The raw (unnormalised) value of the five non-time features at bar `j` (needs `j >= VOL_WINDOW`).
fn raw_at(b: &Bars, j: usize) -> [f64; RAW] {
    let r = (b.close[j] / b.close[j - 1]).ln();
    let ms: f64 = (j + 1 - VOL_WINDOW..=j)
        .map(|k| (b.close[k] / b.close[k - 1]).ln().powi(2))
        .sum::<f64>()
        / VOL_WINDOW as f64;
    let range = (b.high[j] / b.low[j]).ln().max(0.0);
    [
        r,
        r.abs(),
        (ms.sqrt() + 1e-10).ln(),
        (range + 1e-8).ln(),
        b.volume[j].max(0.0).ln_1p(),
    ]
}

/// For each bar, the index of the first bar of its run of consecutive bars.
pub fn run_starts(b: &Bars) -> Vec<usize> {
    let mut out = Vec::with_capacity(b.len());
    let mut start = 0;
    for j in 0..b.len() {
        if j > 0 && b.timestamps[j] - b.timestamps[j - 1] != b.bar_seconds {
            start = j;
        }
        out.push(start);
    }
    out
}

/// Bars that cannot be made into model inputs; each variant says what is missing and what
/// to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeatureError {
    #[error("only {found} gap-free bars to fit the feature normaliser on; need at least {need}")]
    TooFewBars { found: usize, need: usize },
    #[error("{asset}: {source}")]
    Asset {
        asset: String,
        #[source]
        source: Box<FeatureError>,
    },
    #[error("{asset}: no gap-free training window of {seq_len}+{horizon} bars before the cutoff")]
    NoTrainingWindow {
        asset: String,
        seq_len: usize,
        horizon: usize,
    },
    #[error("{asset}: no gap-free validation window of {seq_len}+{horizon} bars after the cutoff; lower seq_len or raise val_fraction")]
    NoValidationWindow {
        asset: String,
        seq_len: usize,
        horizon: usize,
    },
    #[error("no bar closed by {0}")]
    NoBarBefore(i64),
    #[error("the {need} bars before {as_of} are not consecutive (a gap in the data); the model needs {seq_len} history bars plus {vol_window} for its features")]
    GapInHistory {
        need: usize,
        as_of: i64,
        seq_len: usize,
        vol_window: usize,
    },
}

impl Normalizer {
    /// Fit on bars `[0, end)` (only bars whose look-back is gap-free count).
    pub fn fit(b: &Bars, end: usize) -> Result<Self, FeatureError> {
        let runs = run_starts(b);
        let mut sum = [0f64; RAW];
        let mut sq = [0f64; RAW];
        let mut n = 0usize;
        for (j, &run) in runs
            .iter()
            .enumerate()
            .take(end.min(b.len()))
            .skip(VOL_WINDOW)
        {
            if run + VOL_WINDOW > j {
                continue;
            }
            let v = raw_at(b, j);
            for k in 0..RAW {
                sum[k] += v[k];
                sq[k] += v[k] * v[k];
            }
            n += 1;
        }
        if n < 2 * VOL_WINDOW {
            return Err(FeatureError::TooFewBars {
                found: n,
                need: 2 * VOL_WINDOW,
            });
        }
        let stats: Vec<[f64; 2]> = (0..RAW)
            .map(|k| {
                let m = sum[k] / n as f64;
                let var = (sq[k] / n as f64 - m * m).max(0.0);
                [m, var.sqrt().max(1e-12)]
            })
            .collect();
        // returns: standard deviation around zero (drift is negligible per bar)
        let ret_std = (sq[0] / n as f64).sqrt().max(1e-12);
        Ok(Normalizer {
            ret_std,
            stats,
            fitted_bars: n,
        })
    }

    /// The features of bar `j` in the order of `names`.
    pub fn features_at(&self, b: &Bars, j: usize, names: &[String], out: &mut Vec<f32>) {
        let raw = raw_at(b, j);
        let ts = b.timestamps[j];
        let tau = std::f64::consts::TAU;
        let day = (ts.rem_euclid(86_400)) as f64 / 86_400.0;
        let week = (ts.rem_euclid(7 * 86_400)) as f64 / (7.0 * 86_400.0);
        for name in names {
            let z = |k: usize| ((raw[k] - self.stats[k][0]) / self.stats[k][1]) as f32;
            let v = match name.as_str() {
                "log_return" => z(0),
                "abs_return" => z(1),
                "realized_vol" => z(2),
                "range" => z(3),
                "volume" => z(4),
                "tod_sin" => (tau * day).sin() as f32,
                "tod_cos" => (tau * day).cos() as f32,
                "dow_sin" => (tau * week).sin() as f32,
                "dow_cos" => (tau * week).cos() as f32,
                _ => 0.0,
            };
            // clip outliers (halts, spikes) so one bar cannot dominate a window
            out.push(v.clamp(-10.0, 10.0));
        }
    }
}

/// One asset's bars with its normaliser and its training and validation windows. A window is
/// named by `i`, the index of its last history bar.
#[derive(Debug, Clone)]
pub struct AssetWindows {
    pub asset: String,
    pub bars: Bars,
    pub norm: Normalizer,
    pub runs: Vec<usize>,
    /// The first bar of the validation period.
    pub cutoff: usize,
    pub train: Vec<usize>,
    pub val: Vec<usize>,
}

impl AssetWindows {
    /// Split `bars` at `1 - val_fraction` of its length, fit the normaliser on the part before,
    /// and list the gap-free windows on each side.
    pub fn new(
        asset: &str,
        bars: Bars,
        seq_len: usize,
        horizon: usize,
        val_fraction: f64,
        stride: usize,
    ) -> Result<Self, FeatureError> {
        let n = bars.len();
        let cutoff = ((n as f64) * (1.0 - val_fraction)).floor() as usize;
        let norm = Normalizer::fit(&bars, cutoff).map_err(|e| FeatureError::Asset {
            asset: asset.to_string(),
            source: Box::new(e),
        })?;
        let runs = run_starts(&bars);
        let need = seq_len + VOL_WINDOW;
        let ok = |i: usize| i + 1 >= need && i + horizon < n && runs[i + horizon] + need <= i + 1;
        let train: Vec<usize> = (need.saturating_sub(1)..cutoff.saturating_sub(horizon))
            .step_by(stride.max(1))
            .filter(|&i| ok(i) && i + horizon < cutoff)
            .collect();
        let val: Vec<usize> = (cutoff..n)
            .step_by(stride.max(1))
            .filter(|&i| ok(i))
            .collect();
        if train.is_empty() {
            return Err(FeatureError::NoTrainingWindow {
                asset: asset.to_string(),
                seq_len,
                horizon,
            });
        }
        if val.is_empty() {
            return Err(FeatureError::NoValidationWindow {
                asset: asset.to_string(),
                seq_len,
                horizon,
            });
        }
        Ok(AssetWindows {
            asset: asset.to_string(),
            bars,
            norm,
            runs,
            cutoff,
            train,
            val,
        })
    }

    /// Whether window `i - 1` has its full history (`seq_len` bars and the features' look-back,
    /// consecutive with bar `i`): what a validator's request for the path after bar `i` sees,
    /// as it is sent before bar `i` closes.
    pub fn has_request_history(&self, i: usize, seq_len: usize) -> bool {
        let need = seq_len + VOL_WINDOW;
        i >= need && i < self.runs.len() && self.runs[i] + need <= i
    }

    /// The model input of window `i`: `seq_len x features`, row-major.
    pub fn input(&self, i: usize, seq_len: usize, names: &[String], out: &mut Vec<f32>) {
        for j in i + 1 - seq_len..=i {
            self.norm.features_at(&self.bars, j, names, out);
        }
    }

    /// The target of window `i`: standardised cumulative log returns `ln(c[i+k]/c[i]) / ret_std`
    /// for `k = 1..=horizon`.
    pub fn target(&self, i: usize, horizon: usize, out: &mut Vec<f32>) {
        let c0 = self.bars.close[i];
        for k in 1..=horizon {
            out.push(((self.bars.close[i + k] / c0).ln() / self.norm.ret_std) as f32);
        }
    }
}

/// `n` indices spread evenly over `0..len` (all of them when `len <= n`).
pub fn spread(len: usize, n: usize) -> Vec<usize> {
    if len <= n {
        return (0..len).collect();
    }
    (0..n).map(|k| k * len / n).collect()
}

/// The input rows of the `seq_len` bars ending at the last bar that closed by `as_of`, for
/// simulation from history. Errors when there is no such gap-free stretch.
pub fn history_input(
    b: &Bars,
    norm: &Normalizer,
    as_of: i64,
    seq_len: usize,
    names: &[String],
) -> Result<(usize, Vec<f32>), FeatureError> {
    let cutoff = as_of - b.bar_seconds;
    let i = match b.timestamps.binary_search(&cutoff) {
        Ok(i) => i,
        Err(0) => return Err(FeatureError::NoBarBefore(as_of)),
        Err(i) => i - 1,
    };
    let need = seq_len + VOL_WINDOW;
    let runs = run_starts(b);
    if i + 1 < need || runs[i] + need > i + 1 {
        return Err(FeatureError::GapInHistory {
            need,
            as_of,
            seq_len,
            vol_window: VOL_WINDOW,
        });
    }
    let mut out = Vec::with_capacity(seq_len * names.len());
    for j in i + 1 - seq_len..=i {
        norm.features_at(b, j, names, &mut out);
    }
    Ok((i, out))
}
