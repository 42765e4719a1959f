//! Features from real bars and the windows a model trains on.
//!
//! Per bar: `log_return`, `abs_return`, `realized_vol` (log of the root mean square of the last
//! [`VOL_WINDOW`] returns), `range` (log of log(high/low)), `volume` (log1p), the time of day
//! and of week as sine/cosine pairs, and (on request) `ewma_vol`, the log of an exponentially
//! weighted volatility over days of bars relative to the training split's, the long-memory
//! context a 64-bar window lacks, and beside it `ewma_vol_2h` and `ewma_vol_3d`, the same with
//! half-lives of two hours and three days (multi-scale context). Every non-time feature is z-scored with a [`Normalizer`]
//! fitted on the training split only.
//!
//! Targets and simulated paths are log returns divided by a [`Scale`]: one standard deviation
//! per asset (`global`, fitted on the training split), or each window's EWMA volatility at its
//! last history bar (`ewma`), so that a head's standard normal is the classical EWMA forecast
//! and the network learns corrections to it rather than the level of volatility, which moves
//! between regimes the training split may not have seen. `ewma-tod` also divides each target
//! step by its hour of day's share of the variance ([`Normalizer::tod`], fitted on the training
//! split's last [`TOD_PROFILE_DAYS`]), so a head with one width per window still draws paths
//! that are wider at the busy hours (the US open) and narrower at night. `classical` and
//! `classical-tod` divide each target step by exactly what the SN50 anchor `ewma` /
//! `ewma-tod` (`sn50::classical::Ewma`) would sample it with, fitted on the window's own last
//! two weeks (level on deseasonalised returns, weekday and weekend profiles, the half-life
//! following the horizon): the head then learns corrections to the best classical forecaster
//! itself. A window (history of `seq_len` bars plus the
//! [`VOL_WINDOW`] bars its features look back on, and `horizon` target bars) is used only if all
//! its bars are consecutive: windows that cross a gap are dropped. The split is time-ordered:
//! training windows end (targets included) before the cutoff bar, validation windows start their
//! targets after it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use sn50::classical::{hour_of, Ewma};
use sn50::data::Bars;

/// Every feature name: the default spec's ([`DEFAULT_FEATURES`]) and then the optional ones.
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
    "ewma_vol",
    "ewma_vol_2h",
    "ewma_vol_3d",
];

/// The features of a spec that names none, in order.
pub const DEFAULT_FEATURES: &[&str] = FEATURES.split_at(9).0;

/// The half-life of the `ewma_vol` feature's weights when the scale is `global`, in hours.
pub const EWMA_FEATURE_HALF_LIFE_HOURS: f64 = 24.0;

/// The half-lives of the multi-scale EWMA features `ewma_vol_2h` and `ewma_vol_3d`, in hours:
/// the last hours' volatility and the last days', beside `ewma_vol`'s day, so a network can see
/// where the volatility stands against its recent and its slower level (and revert to the latter).
const EWMA_SCALE_FEATURES: &[(&str, f64)] = &[("ewma_vol_2h", 2.0), ("ewma_vol_3d", 72.0)];

/// Half-lives of history an EWMA volatility looks back on; older bars would weigh under 1/16.
const EWMA_LOOKBACK_HALF_LIVES: f64 = 4.0;

/// How log returns are standardised for the head: see the module's documentation. Written
/// `global`, `ewma` (a 24-hour half-life), `ewma:HOURS`, `ewma-tod[:HOURS]`, `classical` or
/// `classical-tod`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Scale {
    /// One standard deviation per asset, fitted on the training split.
    #[default]
    Global,
    /// Each window's EWMA volatility at its last history bar, weights halving every
    /// `half_life_hours` of bars, started from the training split's standard deviation; with
    /// `tod`, each step also scaled by its hour of day's profile ([`Normalizer::tod`]).
    Ewma { half_life_hours: f64, tod: bool },
    /// Each target step's standard deviation as the SN50 classical anchor `ewma` (without
    /// `tod`) or `ewma-tod` would simulate it from the window's own history
    /// ([`classical_step_sds`]).
    Classical { tod: bool },
}

/// Days of history the `classical` scales fit on, as the anchor does
/// (`sn50::classical::Ewma::lookback_days`).
const CLASSICAL_LOOKBACK_DAYS: i64 = 14;

/// Days at the end of the training split the hour-of-day profile of `ewma-tod` is fitted on:
/// recent enough to follow the seasons' shifts of the sessions, long enough for every hour to
/// have hundreds of returns.
pub const TOD_PROFILE_DAYS: i64 = 90;

impl fmt::Display for Scale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scale::Global => f.write_str("global"),
            Scale::Ewma {
                half_life_hours,
                tod: false,
            } => write!(f, "ewma:{half_life_hours}"),
            Scale::Ewma {
                half_life_hours,
                tod: true,
            } => write!(f, "ewma-tod:{half_life_hours}"),
            Scale::Classical { tod: false } => f.write_str("classical"),
            Scale::Classical { tod: true } => f.write_str("classical-tod"),
        }
    }
}

impl FromStr for Scale {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "scale {s:?} is not one: use `global`, `ewma` (24 h half-life), `ewma:HOURS` (0 < HOURS <= 720), `ewma-tod[:HOURS]` (the same with an hour-of-day profile), `classical` or `classical-tod` (the SN50 anchor `ewma` / `ewma-tod` per window)"
            )
        };
        let t = s.trim();
        match t {
            "global" => return Ok(Scale::Global),
            "classical" => return Ok(Scale::Classical { tod: false }),
            "classical-tod" => return Ok(Scale::Classical { tod: true }),
            _ => {}
        }
        let (tod, rest) = match t.strip_prefix("ewma-tod") {
            Some(rest) => (true, rest),
            None => (false, t.strip_prefix("ewma").ok_or_else(bad)?),
        };
        let half_life_hours = match rest {
            "" => 24.0,
            r => r
                .strip_prefix(':')
                .and_then(|h| h.parse::<f64>().ok())
                .filter(|h| *h > 0.0 && *h <= 720.0)
                .ok_or_else(bad)?,
        };
        Ok(Scale::Ewma {
            half_life_hours,
            tod,
        })
    }
}

impl TryFrom<String> for Scale {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<Scale> for String {
    fn from(s: Scale) -> String {
        s.to_string()
    }
}

/// What windows do with gaps in the bars (market closures, missing data).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Gaps {
    /// Only windows whose history and target bars are all consecutive.
    #[default]
    Drop,
    /// Windows across gaps: the history is the bars before the window's end as one sequence
    /// (a closure's jump is the return of the first bar after it), at most
    /// [`MAX_BRIDGED_HISTORY_SECS`] long; target steps that fall in a gap are missing (left
    /// out of the loss, NaN in the evaluation's realised grid, as validators leave them). A
    /// window needs its last target step and at least a quarter of the others.
    Bridge,
}

/// The longest stretch of time a bridged history may span (a long weekend and some).
pub const MAX_BRIDGED_HISTORY_SECS: i64 = 5 * 86_400;

/// The EWMA volatility of the log returns up to bar `i` (inclusive), weights halving every
/// `half_life_hours`, over at most four half-lives of bars, starting from `prior` (a per-bar
/// standard deviation). Returns across a gap in the bars (a closure, missing data) are left
/// out: the closure's jump is not a bar's return.
pub fn ewma_sigma(b: &Bars, i: usize, half_life_hours: f64, prior: f64) -> f64 {
    let hl = (half_life_hours * 3600.0 / b.bar_seconds as f64).max(1.0);
    let look = (hl * EWMA_LOOKBACK_HALF_LIVES).ceil() as usize;
    let var = ewma_step(b, i.saturating_sub(look).max(1), i, hl, prior * prior);
    var.sqrt().max(1e-12)
}

/// The EWMA recursion over bars `from..=to` from variance `var`, half-life `hl` bars.
fn ewma_step(b: &Bars, from: usize, to: usize, hl: f64, mut var: f64) -> f64 {
    let lambda = 0.5f64.powf(1.0 / hl);
    for j in from.max(1)..=to {
        if b.timestamps[j] - b.timestamps[j - 1] == b.bar_seconds {
            let r = (b.close[j] / b.close[j - 1]).ln();
            var = lambda * var + (1.0 - lambda) * r * r;
        }
    }
    var
}

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
    /// How returns are standardised (checkpoints from before it: `global`).
    #[serde(default)]
    pub scale: Scale,
    /// With `ewma-tod`: the variance of each UTC hour's returns relative to the mean hour's,
    /// 24 values averaging 1 over the hours that trade; hours that do not trade get the
    /// per-bar variance of the moves across closures (see `tod_profile`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tod: Option<Vec<f64>>,
    /// Bars a window's paths span: the `classical` scales' EWMA half-life follows it, as the
    /// anchor's follows the prompt's horizon (0 in checkpoints from before them).
    #[serde(default)]
    pub horizon: usize,
}

/// The per-step standard deviations of the `horizon` bars after bar `i` (the last history bar)
/// as the SN50 anchor `ewma-tod` (`tod`) or `ewma` would simulate them, fitted on the bars that
/// closed by bar `i`'s close (`sn50::classical::Ewma::step_sds`: two weeks of history, the
/// level on deseasonalised returns, weekday and weekend hour profiles, the half-life a third of
/// the horizon); `None` when those two weeks hold too few consecutive returns.
pub fn classical_step_sds(b: &Bars, i: usize, horizon: usize, tod: bool) -> Option<Vec<f64>> {
    let model = Ewma::by_name(if tod { "ewma-tod" } else { "ewma" })?;
    let as_of = b.timestamps[i] + b.bar_seconds;
    let step = b.bar_seconds as u64;
    model
        .step_sds(b, as_of, as_of, step, horizon as u64 * step)
        .ok()
        .filter(|sd| sd.iter().all(|s| s.is_finite() && *s > 0.0))
}

/// Returns an hour needs in the profile's days to get its own value in [`Normalizer::tod`].
const TOD_MIN_RETURNS: usize = 30;

/// The hour-of-day variance profile of the returns of bars `[0, end)` that open in the last
/// [`TOD_PROFILE_DAYS`] before bar `end`: see [`Normalizer::tod`]. Hours that trade (with
/// [`TOD_MIN_RETURNS`] consecutive-bar returns or more) get their mean square return; hours that
/// do not (a market's nights and weekends) get the per-bar variance of the moves across its
/// closures (each closure's return spread over the bars it spans), so paths drift through a
/// closure about as far as the price jumps over one; all relative to the trading hours' mean.
fn tod_profile(b: &Bars, end: usize) -> Vec<f64> {
    let end = end.min(b.len());
    let mut profile = vec![1.0; 24];
    if end < 2 {
        return profile;
    }
    let from = b.timestamps[end - 1] - TOD_PROFILE_DAYS * 86_400;
    let (mut sum, mut n) = ([0f64; 24], [0usize; 24]);
    let (mut gap_sq, mut gap_bars) = (0f64, 0f64);
    for j in 1..end {
        if b.timestamps[j] < from {
            continue;
        }
        let r = (b.close[j] / b.close[j - 1]).ln();
        let span = b.timestamps[j] - b.timestamps[j - 1];
        if span == b.bar_seconds {
            let h = hour_of(b.timestamps[j]);
            sum[h] += r * r;
            n[h] += 1;
        } else if span > b.bar_seconds {
            gap_sq += r * r;
            gap_bars += (span / b.bar_seconds) as f64;
        }
    }
    let hours: Vec<usize> = (0..24).filter(|&h| n[h] >= TOD_MIN_RETURNS).collect();
    let mean = hours.iter().map(|&h| sum[h] / n[h] as f64).sum::<f64>() / hours.len().max(1) as f64;
    if mean > 0.0 {
        let closed = (gap_bars > 0.0).then(|| (gap_sq / gap_bars / mean).max(1e-3));
        for (h, p) in profile.iter_mut().enumerate() {
            if n[h] >= TOD_MIN_RETURNS {
                *p = (sum[h] / n[h] as f64 / mean).max(1e-3);
            } else if let Some(c) = closed {
                *p = c;
            }
        }
    }
    profile
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
    #[error("the {need} bars before {as_of} are not consecutive (a gap in the data), or for a model that bridges gaps are missing or span more than 5 days; the model needs {seq_len} history bars plus {vol_window} for its features")]
    GapInHistory {
        need: usize,
        as_of: i64,
        seq_len: usize,
        vol_window: usize,
    },
}

impl Normalizer {
    /// Fit on bars `[0, end)` (only bars whose look-back is gap-free count), for windows whose
    /// paths span `horizon` bars.
    pub fn fit(b: &Bars, end: usize, scale: Scale, horizon: usize) -> Result<Self, FeatureError> {
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
        let tod = matches!(scale, Scale::Ewma { tod: true, .. }).then(|| tod_profile(b, end));
        Ok(Normalizer {
            ret_std,
            stats,
            fitted_bars: n,
            scale,
            tod,
            horizon,
        })
    }

    /// Whether the steps of a window have scales of their own (an hour-of-day profile), so
    /// targets are summed step by step rather than divided once.
    pub fn per_step(&self) -> bool {
        self.tod.is_some() || self.scale == Scale::Classical { tod: true }
    }

    /// The per-bar log-return standard deviation of each of the `horizon` steps after bar `i`
    /// (the last history bar): the window's [`Normalizer::scale_at`], times the square root
    /// of the hour-of-day profile at each step's bar with `ewma-tod` (step `k`'s return is
    /// the bar opening `k` bars after bar `i`'s open); on the `classical` scales the anchor's
    /// own ([`classical_step_sds`]; where it has too few returns, the 24 h EWMA). Targets are
    /// divided by these, and simulated increments multiplied by them.
    pub fn step_scales(&self, b: &Bars, i: usize, horizon: usize) -> Vec<f64> {
        if let Scale::Classical { tod } = self.scale {
            return classical_step_sds(b, i, horizon, tod).unwrap_or_else(|| {
                vec![ewma_sigma(b, i, EWMA_FEATURE_HALF_LIFE_HOURS, self.ret_std); horizon]
            });
        }
        let level = self.scale_at(b, i);
        match &self.tod {
            None => vec![level; horizon],
            Some(p) => (1..=horizon as i64)
                .map(|k| level * p[hour_of(b.timestamps[i] + k * b.bar_seconds)].sqrt())
                .collect(),
        }
    }

    /// The per-bar standard deviation that standardises the returns after bar `i` (the last
    /// history bar of a window): see [`Scale`]; on the `classical` scales the root mean square
    /// of the window's [`Normalizer::step_scales`] over [`Normalizer::horizon`] bars.
    pub fn scale_at(&self, b: &Bars, i: usize) -> f64 {
        match self.scale {
            Scale::Global => self.ret_std,
            Scale::Ewma {
                half_life_hours, ..
            } => ewma_sigma(b, i, half_life_hours, self.ret_std),
            Scale::Classical { .. } => {
                let sd = self.step_scales(b, i, self.horizon.max(1));
                (sd.iter().map(|s| s * s).sum::<f64>() / sd.len() as f64).sqrt()
            }
        }
    }

    /// Bars before a window's first that its scale and `names`' `ewma_vol` look back on, for
    /// `bar_seconds` bars (0 when neither is an EWMA).
    pub fn lookback_bars(&self, bar_seconds: i64, names: &[String]) -> usize {
        let classical = match self.scale {
            // the anchor's lookback, and the bar before its first return
            Scale::Classical { .. } => CLASSICAL_LOOKBACK_DAYS * 86_400 / bar_seconds + 1,
            _ => 0,
        } as usize;
        // the scale's own EWMA (every scale but `global`) and the `ewma_vol` features named
        let scale_ewma = !matches!(self.scale, Scale::Global);
        let longest = self
            .ewma_half_lives(names)
            .into_iter()
            .flatten()
            .chain(scale_ewma.then(|| self.feature_half_life()))
            .fold(0.0f64, f64::max);
        if longest == 0.0 {
            return 0;
        }
        let hl = (longest * 3600.0 / bar_seconds as f64).max(1.0);
        classical.max((hl * EWMA_LOOKBACK_HALF_LIVES).ceil() as usize)
    }

    /// Per name of `names`, the half-life in hours of the EWMA volatility it reads, if it is
    /// one of the `ewma_vol` features.
    fn ewma_half_lives(&self, names: &[String]) -> Vec<Option<f64>> {
        names
            .iter()
            .map(|n| match n.as_str() {
                "ewma_vol" => Some(self.feature_half_life()),
                n => EWMA_SCALE_FEATURES
                    .iter()
                    .find(|(name, _)| *name == n)
                    .map(|(_, h)| *h),
            })
            .collect()
    }

    /// The half-life of the `ewma_vol` feature: the scale's, or a day's.
    fn feature_half_life(&self) -> f64 {
        match self.scale {
            Scale::Global | Scale::Classical { .. } => EWMA_FEATURE_HALF_LIFE_HOURS,
            Scale::Ewma {
                half_life_hours, ..
            } => half_life_hours,
        }
    }

    /// The rows of bars `first..=last` in the order of `names`, appended to `out`. Each
    /// `ewma_vol` feature named starts from [`ewma_sigma`] at `first` with its half-life and
    /// steps on.
    pub fn rows(&self, b: &Bars, first: usize, last: usize, names: &[String], out: &mut Vec<f32>) {
        // per name: (half-life in bars, variance) of the EWMA features
        let mut ewmas: Vec<Option<(f64, f64)>> = self
            .ewma_half_lives(names)
            .into_iter()
            .map(|h| {
                h.map(|hours| {
                    let hl = (hours * 3600.0 / b.bar_seconds as f64).max(1.0);
                    (hl, ewma_sigma(b, first, hours, self.ret_std).powi(2))
                })
            })
            .collect();
        let mut logs = vec![0.0; names.len()];
        for j in first..=last {
            for (k, e) in ewmas.iter_mut().enumerate() {
                if let Some((hl, var)) = e {
                    if j > first {
                        *var = ewma_step(b, j, j, *hl, *var);
                    }
                    logs[k] = (var.sqrt().max(1e-12) / self.ret_std).ln();
                }
            }
            self.features_at(b, j, names, &logs, out);
        }
    }

    /// The features of bar `j` in the order of `names`; `ewma[k]` is the value of `names[k]`
    /// where that is an `ewma_vol` feature.
    fn features_at(&self, b: &Bars, j: usize, names: &[String], ewma: &[f64], out: &mut Vec<f32>) {
        let raw = raw_at(b, j);
        let ts = b.timestamps[j];
        let tau = std::f64::consts::TAU;
        let day = (ts.rem_euclid(86_400)) as f64 / 86_400.0;
        let week = (ts.rem_euclid(7 * 86_400)) as f64 / (7.0 * 86_400.0);
        for (n, name) in names.iter().enumerate() {
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
                "ewma_vol" | "ewma_vol_2h" | "ewma_vol_3d" => ewma[n] as f32,
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
    pub gaps: Gaps,
}

/// How an asset's bars are cut into windows: history and horizon lengths, the validation
/// split, the training stride and the return scale.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowOptions {
    pub seq_len: usize,
    pub horizon: usize,
    /// The last fraction of the bars held out for validation.
    pub val_fraction: f64,
    /// Bars between consecutive training windows.
    pub stride: usize,
    pub scale: Scale,
    pub gaps: Gaps,
}

impl AssetWindows {
    /// Split `bars` at `1 - val_fraction` of its length, fit the normaliser on the part before,
    /// and list the gap-free windows on each side (returns on the `global` scale).
    pub fn new(
        asset: &str,
        bars: Bars,
        seq_len: usize,
        horizon: usize,
        val_fraction: f64,
        stride: usize,
    ) -> Result<Self, FeatureError> {
        let opts = WindowOptions {
            seq_len,
            horizon,
            val_fraction,
            stride,
            scale: Scale::Global,
            gaps: Gaps::Drop,
        };
        Self::build(asset, bars, &opts)
    }

    /// [`AssetWindows::new`] with every option.
    pub fn build(asset: &str, bars: Bars, opts: &WindowOptions) -> Result<Self, FeatureError> {
        let &WindowOptions {
            seq_len,
            horizon,
            val_fraction,
            stride,
            scale,
            gaps,
        } = opts;
        let n = bars.len();
        let cutoff = ((n as f64) * (1.0 - val_fraction)).floor() as usize;
        let norm =
            Normalizer::fit(&bars, cutoff, scale, horizon).map_err(|e| FeatureError::Asset {
                asset: asset.to_string(),
                source: Box::new(e),
            })?;
        let runs = run_starts(&bars);
        let need = seq_len + VOL_WINDOW;
        // the index of window i's last target bar, when the window may be used
        let end = |i: usize| -> Option<usize> {
            if i + 1 < need {
                return None;
            }
            match gaps {
                Gaps::Drop => {
                    (i + horizon < n && runs[i + horizon] + need <= i + 1).then_some(i + horizon)
                }
                Gaps::Bridge => {
                    let t = &bars.timestamps;
                    let last = bars.index_of(t[i] + horizon as i64 * bars.bar_seconds)?;
                    let span_ok = t[i] - t[i + 1 - need] <= MAX_BRIDGED_HISTORY_SECS;
                    (span_ok && 4 * (last - i) >= horizon).then_some(last)
                }
            }
        };
        let train: Vec<usize> = (need.saturating_sub(1)..cutoff.saturating_sub(horizon))
            .step_by(stride.max(1))
            .filter(|&i| end(i).is_some_and(|e| e < cutoff))
            .collect();
        let val: Vec<usize> = (cutoff..n)
            .step_by(stride.max(1))
            .filter(|&i| end(i).is_some())
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
            gaps,
        })
    }

    /// Whether window `i - 1` has its full history (`seq_len` bars and the features' look-back,
    /// consecutive with bar `i`): what a validator's request for the path after bar `i` sees,
    /// as it is sent before bar `i` closes.
    pub fn has_request_history(&self, i: usize, seq_len: usize) -> bool {
        let need = seq_len + VOL_WINDOW;
        if i < need || i >= self.runs.len() {
            return false;
        }
        match self.gaps {
            Gaps::Drop => self.runs[i] + need <= i,
            Gaps::Bridge => {
                let t = &self.bars.timestamps;
                t[i - 1] - t[i - need] <= MAX_BRIDGED_HISTORY_SECS
            }
        }
    }

    /// The model input of window `i`: `seq_len x features`, row-major.
    pub fn input(&self, i: usize, seq_len: usize, names: &[String], out: &mut Vec<f32>) {
        self.norm.rows(&self.bars, i + 1 - seq_len, i, names, out);
    }

    /// The per-bar standard deviation of window `i`'s returns ([`Normalizer::scale_at`]).
    pub fn scale(&self, i: usize) -> f64 {
        self.norm.scale_at(&self.bars, i)
    }

    /// The per-step scales of window `i`'s `horizon` target steps ([`Normalizer::step_scales`]).
    pub fn step_scales(&self, i: usize, horizon: usize) -> Vec<f64> {
        self.norm.step_scales(&self.bars, i, horizon)
    }

    /// The target of window `i`: standardised cumulative log returns, the sum over steps
    /// `j <= k` of `ln(c[i+j]/c[i+j-1]) / scale_j` for `k = 1..=horizon`, `scale_j` the
    /// window's [`AssetWindows::step_scales`] (one value on the `global` and `ewma` scales,
    /// so the target is `ln(c[i+k]/c[i]) / scale`).
    pub fn target(&self, i: usize, horizon: usize, out: &mut Vec<f32>) {
        let mut mask = Vec::new();
        self.target_masked(i, horizon, out, &mut mask);
    }

    /// [`AssetWindows::target`] on the time grid: step `k` is the close of the bar opening
    /// `k` bars after bar `i`'s; a step with no such bar (a gap, with [`Gaps::Bridge`]) gets
    /// the value 0 and mask 0, every other step mask 1. Returns whether any step is missing.
    pub fn target_masked(
        &self,
        i: usize,
        horizon: usize,
        out: &mut Vec<f32>,
        mask: &mut Vec<f32>,
    ) -> bool {
        let b = &self.bars;
        let c0 = b.close[i];
        let scales = self.step_scales(i, horizon);
        let flat = !self.norm.per_step();
        let (mut prev, mut cum) = (c0, 0f64);
        let whole = i + horizon < b.len()
            && b.timestamps[i + horizon] - b.timestamps[i] == horizon as i64 * b.bar_seconds;
        let mut j = i;
        for k in 1..=horizon {
            let close = if whole {
                Some(b.close[i + k])
            } else {
                // the bars are sorted: walk forward to step k's open time
                let t = b.timestamps[i] + k as i64 * b.bar_seconds;
                while j + 1 < b.len() && b.timestamps[j + 1] <= t {
                    j += 1;
                }
                (b.timestamps[j] == t).then(|| b.close[j])
            };
            match close {
                Some(c) => {
                    if flat {
                        cum = (c / c0).ln() / scales[0];
                    } else {
                        // a step after a gap carries the gap's move at its own hour's scale
                        cum += (c / prev).ln() / scales[k - 1];
                        prev = c;
                    }
                    out.push(cum as f32);
                    mask.push(1.0);
                }
                None => {
                    out.push(0.0);
                    mask.push(0.0);
                }
            }
        }
        !whole
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
/// simulation from history. Errors when there is no such gap-free stretch (with
/// [`Gaps::Bridge`]: no such `need` bars within [`MAX_BRIDGED_HISTORY_SECS`]).
pub fn history_input(
    b: &Bars,
    norm: &Normalizer,
    as_of: i64,
    seq_len: usize,
    names: &[String],
    gaps: Gaps,
) -> Result<(usize, Vec<f32>), FeatureError> {
    let cutoff = as_of - b.bar_seconds;
    let i = match b.timestamps.binary_search(&cutoff) {
        Ok(i) => i,
        Err(0) => return Err(FeatureError::NoBarBefore(as_of)),
        Err(i) => i - 1,
    };
    let need = seq_len + VOL_WINDOW;
    let whole = match gaps {
        Gaps::Drop => i + 1 >= need && run_starts(b)[i] + need <= i + 1,
        Gaps::Bridge => {
            i + 1 >= need
                && b.timestamps[i] - b.timestamps[i + 1 - need] <= MAX_BRIDGED_HISTORY_SECS
        }
    };
    if !whole {
        return Err(FeatureError::GapInHistory {
            need,
            as_of,
            seq_len,
            vol_window: VOL_WINDOW,
        });
    }
    let mut out = Vec::with_capacity(seq_len * names.len());
    norm.rows(b, i + 1 - seq_len, i, names, &mut out);
    Ok((i, out))
}
