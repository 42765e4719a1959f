//! Market data: a loader for the OHLCV CSV bars in `shared/data` (header
//! `timestamp,open,high,low,close,volume`, `timestamp` = bar open in unix seconds), gap detection
//! (a missing bar is a gap, never interpolated), the realised-price grid the validator builds, and
//! the summary behind `synth-city data info`.
//!
//! The validator's grid (`price_data_provider.py`): `real[k]` is the close of the **1-minute**
//! candle whose open time equals `start + k*time_increment`, else NaN. From a 5-minute file the
//! same rule is applied to 5-minute candles: `real[k]` is the close of the 5-minute bar opening
//! at the grid time, i.e. the price at `t + 300 s` instead of `t + 60 s`. Only 300-second grids
//! (the low prompt) can be built from 5-minute files.

use std::path::{Path, PathBuf};

use jobs::Timeframe;
use serde::Serialize;

/// Errors loading bars or building a grid.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: the header must be timestamp,open,high,low,close,volume, found {found:?}")]
    Header { path: String, found: String },
    #[error("{path} line {line}: {message}")]
    Line {
        path: String,
        line: usize,
        message: String,
    },
    #[error("{path}: no bars")]
    Empty { path: String },
    #[error("cannot tell the bar length of {path}: name it ASSET_1m.csv or ASSET_5m.csv")]
    BarLength { path: String },
    #[error("a {increment} s grid cannot be built from {bar} s bars (the increment must be a multiple of the bar length)")]
    GridResolution { increment: i64, bar: i64 },
    #[error("{0}")]
    NoFile(MissingData),
}

/// The words every missing-data message starts with (the agents sort an experiment's error
/// into "data" by them).
pub const NO_DATA_FILE: &str = "no data file";

/// Bars that are not in a data directory: which assets, at which timeframe, the files looked
/// for (each once), and the command that fetches them. Every "the bars are not there" error of
/// the program is this one message (its `Display`), whoever looked: the trainer, the backtest,
/// the checker, the miner, the shadow scorer, the bridge's market routes, the CLI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingData {
    /// The SN50 assets without bars, in the order asked.
    pub assets: Vec<String>,
    /// The timeframe whose bars the fetch command downloads.
    pub timeframe: Timeframe,
    /// The data directory, as given.
    pub dir: String,
    /// The file names looked for, each once, in the order looked.
    pub files: Vec<String>,
}

impl MissingData {
    /// Bars of `assets` at `timeframe` missing from `dir`, after looking for `files`.
    pub fn new(
        dir: &Path,
        assets: impl IntoIterator<Item = String>,
        timeframe: Timeframe,
        files: impl IntoIterator<Item = String>,
    ) -> Self {
        let mut m = MissingData {
            assets: Vec::new(),
            timeframe,
            dir: dir.display().to_string(),
            files: Vec::new(),
        };
        m.add(assets, files);
        m
    }

    /// Adds more assets and files, keeping each once.
    fn add(
        &mut self,
        assets: impl IntoIterator<Item = String>,
        files: impl IntoIterator<Item = String>,
    ) {
        for a in assets {
            if !self.assets.contains(&a) {
                self.assets.push(a);
            }
        }
        for f in files {
            if !self.files.contains(&f) {
                self.files.push(f);
            }
        }
    }

    /// The command that fetches the missing bars into the directory.
    pub fn fetch_command(&self) -> String {
        format!(
            "synth-city data download --assets {} --days 30 --resolution {} --data-dir {}",
            self.assets.join(","),
            self.timeframe.step_secs() / 60,
            shell_word(&self.dir)
        )
    }
}

/// `s` as one shell word (quoted only when it needs to be).
fn shell_word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:@%,=".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

impl std::fmt::Display for MissingData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let it = if self.assets.len() == 1 { "it" } else { "them" };
        write!(
            f,
            "{NO_DATA_FILE} for {} ({} bars) in {}: looked for {}; fetch {it} with `{}`, or point \
             --data-dir (SYNTH_DATA_DIR) at a folder that has {it}",
            self.assets.join(", "),
            self.timeframe,
            self.dir,
            self.files.join(", "),
            self.fetch_command()
        )
    }
}

/// The bars of every asset in `assets` at `timeframe` are in `dir`; otherwise one error naming
/// every missing asset and file, and the one command that fetches them all.
pub fn check_files(dir: &Path, assets: &[String], timeframe: Timeframe) -> Result<(), DataError> {
    let mut missing: Option<MissingData> = None;
    for a in assets {
        if let Err(DataError::NoFile(m)) = asset_file(dir, a, timeframe) {
            match &mut missing {
                Some(all) => all.add(m.assets, m.files),
                None => missing = Some(m),
            }
        }
    }
    missing.map_or(Ok(()), |m| Err(DataError::NoFile(m)))
}

/// One file of bars, columns in parallel vectors, sorted by open time.
#[derive(Debug, Clone, PartialEq)]
pub struct Bars {
    /// Bar length in seconds (60 or 300 for the shared files).
    pub bar_seconds: i64,
    pub timestamps: Vec<i64>,
    pub open: Vec<f64>,
    pub high: Vec<f64>,
    pub low: Vec<f64>,
    pub close: Vec<f64>,
    pub volume: Vec<f64>,
}

/// A run of missing bars: `from` is the first missing open time, `bars` how many are missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Gap {
    pub from: i64,
    pub bars: i64,
}

impl Bars {
    /// Parse CSV text. `bar_seconds` is the bar length; rows must be sorted, unique and on the
    /// bar grid, with positive prices.
    pub fn parse_csv(text: &str, bar_seconds: i64, origin: &str) -> Result<Bars, DataError> {
        let mut lines = text.lines().enumerate();
        let header = lines.next().map(|(_, l)| l.trim()).unwrap_or("");
        if header != "timestamp,open,high,low,close,volume" {
            return Err(DataError::Header {
                path: origin.into(),
                found: header.into(),
            });
        }
        let mut b = Bars {
            bar_seconds,
            timestamps: Vec::new(),
            open: Vec::new(),
            high: Vec::new(),
            low: Vec::new(),
            close: Vec::new(),
            volume: Vec::new(),
        };
        for (i, line) in lines {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let err = |message: String| DataError::Line {
                path: origin.into(),
                line: i + 1,
                message,
            };
            let mut f = line.split(',');
            let ts_s = f.next().unwrap_or("");
            let ts: i64 = ts_s
                .parse()
                .or_else(|_| ts_s.parse::<f64>().map(|x| x as i64))
                .map_err(|_| err(format!("timestamp {ts_s:?} is not a number")))?;
            let mut vals = [0.0f64; 5];
            for (k, name) in ["open", "high", "low", "close", "volume"]
                .iter()
                .enumerate()
            {
                let s = f.next().ok_or_else(|| err(format!("missing {name}")))?;
                vals[k] = s
                    .trim()
                    .parse()
                    .map_err(|_| err(format!("{name} {s:?} is not a number")))?;
            }
            if f.next().is_some() {
                return Err(err("more than 6 columns".into()));
            }
            if ts % bar_seconds != 0 {
                return Err(err(format!(
                    "timestamp {ts} is not a multiple of the bar length {bar_seconds}"
                )));
            }
            if let Some(&prev) = b.timestamps.last() {
                if ts <= prev {
                    return Err(err(format!(
                        "timestamp {ts} is not after the previous {prev}"
                    )));
                }
            }
            if !vals[..4].iter().all(|v| v.is_finite() && *v > 0.0) {
                return Err(err("prices must be positive and finite".into()));
            }
            b.timestamps.push(ts);
            b.open.push(vals[0]);
            b.high.push(vals[1]);
            b.low.push(vals[2]);
            b.close.push(vals[3]);
            b.volume.push(vals[4]);
        }
        if b.timestamps.is_empty() {
            return Err(DataError::Empty {
                path: origin.into(),
            });
        }
        Ok(b)
    }

    /// Load a file; the bar length comes from its name (`_1m.csv` / `_5m.csv`).
    pub fn load(path: &Path) -> Result<Bars, DataError> {
        let p = path.display().to_string();
        let bar = bar_seconds_from_name(path).ok_or(DataError::BarLength { path: p.clone() })?;
        let text = std::fs::read_to_string(path).map_err(|source| DataError::Read {
            path: p.clone(),
            source,
        })?;
        Bars::parse_csv(&text, bar, &p)
    }

    pub fn len(&self) -> usize {
        self.timestamps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.timestamps.is_empty()
    }

    /// The bars that open before `t` (a held-out tail cut off).
    pub fn before(mut self, t: i64) -> Bars {
        let n = self.timestamps.partition_point(|&x| x < t);
        for v in [
            &mut self.open,
            &mut self.high,
            &mut self.low,
            &mut self.close,
            &mut self.volume,
        ] {
            v.truncate(n);
        }
        self.timestamps.truncate(n);
        self
    }

    /// Every run of missing bars between the first and the last.
    pub fn gaps(&self) -> Vec<Gap> {
        self.timestamps
            .windows(2)
            .filter(|w| w[1] - w[0] > self.bar_seconds)
            .map(|w| Gap {
                from: w[0] + self.bar_seconds,
                bars: (w[1] - w[0]) / self.bar_seconds - 1,
            })
            .collect()
    }

    /// These bars aggregated into `bar_seconds` bars (a multiple of this file's bar length),
    /// aligned to multiples of `bar_seconds` since the epoch, from the sub-bars that open in
    /// `[since, until)` and close by `until`. A bucket missing any sub-bar is left out (it
    /// becomes a gap), so a coarse bar is never built from part of its interval.
    pub fn resample(&self, bar_seconds: i64, since: i64, until: i64) -> Result<Bars, DataError> {
        if bar_seconds < self.bar_seconds || bar_seconds % self.bar_seconds != 0 {
            return Err(DataError::GridResolution {
                increment: bar_seconds,
                bar: self.bar_seconds,
            });
        }
        let per = (bar_seconds / self.bar_seconds) as usize;
        let from = self.timestamps.partition_point(|&t| t < since);
        let to = self
            .timestamps
            .partition_point(|&t| t + self.bar_seconds <= until);
        let mut out = Bars {
            bar_seconds,
            timestamps: Vec::new(),
            open: Vec::new(),
            high: Vec::new(),
            low: Vec::new(),
            close: Vec::new(),
            volume: Vec::new(),
        };
        let mut i = from;
        while i < to {
            let bucket = self.timestamps[i].div_euclid(bar_seconds) * bar_seconds;
            let end = i + self.timestamps[i..to].partition_point(|&t| t < bucket + bar_seconds);
            if end - i == per {
                out.timestamps.push(bucket);
                out.open.push(self.open[i]);
                out.high
                    .push(self.high[i..end].iter().copied().fold(f64::MIN, f64::max));
                out.low
                    .push(self.low[i..end].iter().copied().fold(f64::MAX, f64::min));
                out.close.push(self.close[end - 1]);
                out.volume.push(self.volume[i..end].iter().sum());
            }
            i = end;
        }
        Ok(out)
    }

    /// Index of the bar opening exactly at `t`.
    pub fn index_of(&self, t: i64) -> Option<usize> {
        self.timestamps.binary_search(&t).ok()
    }

    /// The spot price at request time `as_of`: the close of the last bar that closed by then,
    /// if it closed at most `max_age` seconds before.
    pub fn close_by(&self, as_of: i64, max_age: i64) -> Option<f64> {
        let i = self
            .timestamps
            .partition_point(|&t| t + self.bar_seconds <= as_of);
        if i == 0 {
            return None;
        }
        (as_of - (self.timestamps[i - 1] + self.bar_seconds) <= max_age).then(|| self.close[i - 1])
    }

    /// The close of the bar opening at `t`, if there is one.
    pub fn close_at(&self, t: i64) -> Option<f64> {
        self.index_of(t).map(|i| self.close[i])
    }

    /// The realised price grid for a prompt starting at `start`: `real[k]` = close of the bar
    /// opening at `start + k*increment`, NaN where there is none.
    pub fn price_grid(
        &self,
        start: i64,
        time_length: i64,
        increment: i64,
    ) -> Result<Vec<f64>, DataError> {
        if increment <= 0 || increment % self.bar_seconds != 0 {
            return Err(DataError::GridResolution {
                increment,
                bar: self.bar_seconds,
            });
        }
        let n = time_length / increment;
        Ok((0..=n)
            .map(|k| self.close_at(start + k * increment).unwrap_or(f64::NAN))
            .collect())
    }

    /// Whether the validator would score a request on this grid: the settlement guard (a candle
    /// after `start + time_length` exists) and a non-NaN last price.
    pub fn scoreable(&self, start: i64, time_length: i64, grid: &[f64]) -> bool {
        let end = start + time_length;
        let after = self.timestamps.last().is_some_and(|&t| t > end);
        after && grid.last().is_some_and(|p| !p.is_nan())
    }
}

/// `60` for `*_1m.csv`, `300` for `*_5m.csv`.
pub fn bar_seconds_from_name(path: &Path) -> Option<i64> {
    let name = path.file_name()?.to_str()?;
    if name.ends_with("_1m.csv") {
        Some(60)
    } else if name.ends_with("_5m.csv") {
        Some(300)
    } else {
        None
    }
}

/// The data file that prices a prompt of `increment`-second steps and gives its models their
/// history: the 5-minute file for steps that are whole multiples of 5 minutes (the 24 h prompt:
/// its grid prices are the same closes either way, and the 5-minute files reach further back),
/// the 1-minute file otherwise; the other file when the preferred one is missing and its bars fit
/// the grid.
pub fn asset_file_for_step(dir: &Path, asset: &str, increment: i64) -> Result<PathBuf, DataError> {
    if increment % 300 == 0 {
        asset_file(dir, asset, Timeframe::FiveMinutes).or_else(|e| {
            asset_file(dir, asset, Timeframe::OneMinute).map_err(|e1| match (e, e1) {
                // neither file: name both, and fetch the preferred (5-minute) bars
                (DataError::NoFile(mut m), DataError::NoFile(m1)) => {
                    m.add(m1.assets, m1.files);
                    DataError::NoFile(m)
                }
                (e, _) => e,
            })
        })
    } else {
        asset_file(dir, asset, Timeframe::OneMinute)
    }
}

/// The data file for an SN50 asset in `dir`: the asset's own `{ASSET}_1m.csv` /
/// `{ASSET}_5m.csv` (what `data download` writes from the asset's venue) when it exists, else
/// the shared data's legacy stem (`SPY_1m.csv` for SP500, `NVDA_5m.csv` for NVDAX, ...).
pub fn asset_file(dir: &Path, asset: &str, timeframe: Timeframe) -> Result<PathBuf, DataError> {
    let mut stems = vec![asset.to_string()];
    if let Some(info) = super::constants::asset_info(asset) {
        if let Some(s) = info.data_stem.filter(|s| *s != asset) {
            stems.push(s.to_string());
        }
    }
    let candidates: Vec<PathBuf> = stems
        .iter()
        .map(|s| dir.join(timeframe.data_file(s)))
        .collect();
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| {
            DataError::NoFile(MissingData::new(
                dir,
                [asset.to_string()],
                timeframe,
                candidates.iter().map(|p| {
                    p.file_name()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .into_owned()
                }),
            ))
        })
}

/// The SN50 asset a data file stem stands for (`SPY` -> `SP500`), or the stem itself.
pub fn asset_for_stem(stem: &str) -> String {
    super::constants::ASSETS
        .iter()
        .find(|a| a.data_stem == Some(stem))
        .map(|a| a.symbol.to_string())
        .unwrap_or_else(|| stem.to_string())
}

/// One line of `data info`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileInfo {
    pub file: String,
    pub asset: String,
    pub bar_seconds: i64,
    pub bars: usize,
    pub first: i64,
    pub last: i64,
    pub first_utc: String,
    pub last_utc: String,
    pub gaps: usize,
    pub missing_bars: i64,
    pub largest_gap_bars: i64,
}

fn utc(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|d| d.format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_else(|| t.to_string())
}

/// Summarise every `*_1m.csv` / `*_5m.csv` file in `dir`, sorted by file name.
pub fn data_info(dir: &Path) -> Result<Vec<FileInfo>, DataError> {
    let rd = std::fs::read_dir(dir).map_err(|source| DataError::Read {
        path: dir.display().to_string(),
        source,
    })?;
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| bar_seconds_from_name(p).is_some())
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| {
            let b = Bars::load(p)?;
            let gaps = b.gaps();
            let name = p
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            let stem = name.rsplit_once('_').map(|(s, _)| s).unwrap_or(&name);
            Ok(FileInfo {
                asset: asset_for_stem(stem),
                file: name.clone(),
                bar_seconds: b.bar_seconds,
                bars: b.len(),
                first: b.timestamps[0],
                last: *b.timestamps.last().unwrap_or(&0),
                first_utc: utc(b.timestamps[0]),
                last_utc: utc(*b.timestamps.last().unwrap_or(&0)),
                gaps: gaps.len(),
                missing_bars: gaps.iter().map(|g| g.bars).sum(),
                largest_gap_bars: gaps.iter().map(|g| g.bars).max().unwrap_or(0),
            })
        })
        .collect()
}

/// A plain-text table of [`data_info`].
pub fn data_info_text(infos: &[FileInfo]) -> String {
    let mut out = format!(
        "{:<14} {:<7} {:>4} {:>8}  {:<16}  {:<16} {:>6} {:>9} {:>11}\n",
        "file",
        "asset",
        "bar",
        "bars",
        "first (UTC)",
        "last (UTC)",
        "gaps",
        "missing",
        "largest gap"
    );
    for i in infos {
        out.push_str(&format!(
            "{:<14} {:<7} {:>3}s {:>8}  {:<16}  {:<16} {:>6} {:>9} {:>11}\n",
            i.file,
            i.asset,
            i.bar_seconds,
            i.bars,
            i.first_utc,
            i.last_utc,
            i.gaps,
            i.missing_bars,
            i.largest_gap_bars
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const CSV: &str = "timestamp,open,high,low,close,volume\n\
        600,1,1,1,10,5\n660,1,1,1,11,5\n720,1,1,1,12,5\n900,1,1,1,15,5\n960,1,1,1,16,5\n";

    #[test]
    fn resample_builds_only_complete_buckets() {
        // 1-minute bars 0..=14 minutes with minute 7 missing; 5-minute buckets at 0, 300, 600.
        let mut csv = String::from("timestamp,open,high,low,close,volume\n");
        for m in (0..15).filter(|&m| m != 7) {
            let t = m * 60;
            let p = m + 10;
            csv.push_str(&format!("{t},{p},{},{},{p}.5,1\n", p + 1, p as f64 - 0.5));
        }
        let b = Bars::parse_csv(&csv, 60, "t").unwrap();
        let r = b.resample(300, 0, 900).unwrap();
        assert_eq!(r.bar_seconds, 300);
        assert_eq!(
            r.timestamps,
            vec![0, 600],
            "the bucket at 300 lacks minute 7"
        );
        assert_eq!(r.open, vec![10.0, 20.0]);
        assert_eq!(r.high, vec![15.0, 25.0]);
        assert_eq!(r.low, vec![9.5, 19.5]);
        assert_eq!(r.close, vec![14.5, 24.5]);
        assert_eq!(r.volume, vec![5.0, 5.0]);
        // `until` cuts a bucket that has not closed yet
        assert_eq!(b.resample(300, 0, 899).unwrap().timestamps, vec![0]);
        assert!(b.resample(90, 0, 900).is_err(), "not a multiple of 60 s");
    }

    #[test]
    fn parse_and_gaps() {
        let b = Bars::parse_csv(CSV, 60, "t").unwrap();
        assert_eq!(b.len(), 5);
        assert_eq!(b.gaps(), vec![Gap { from: 780, bars: 2 }]);
        assert_eq!(b.close_at(900), Some(15.0));
        assert_eq!(b.close_at(780), None);
    }

    #[test]
    fn grid_uses_the_candle_opening_at_each_time() {
        let b = Bars::parse_csv(CSV, 60, "t").unwrap();
        let g = b.price_grid(600, 360, 60).unwrap();
        assert_eq!(g.len(), 7);
        assert_eq!(g[0], 10.0);
        assert!(g[3].is_nan() && g[4].is_nan()); // the gap stays a gap
        assert_eq!(g[5], 15.0);
        assert_eq!(g[6], 16.0);
        assert!(!b.scoreable(600, 360, &g)); // no candle after 960: not settled yet
        let g = b.price_grid(600, 300, 60).unwrap();
        assert!(b.scoreable(600, 300, &g)); // the 960 candle settles it
        let g = b.price_grid(600, 120, 60).unwrap();
        assert!(b.scoreable(600, 120, &g));
        let g = b.price_grid(600, 180, 60).unwrap();
        assert!(!b.scoreable(600, 180, &g)); // the last price is missing
        let g = b.price_grid(600, 300, 300).unwrap();
        assert_eq!(g, vec![10.0, 15.0]);
        let b5 = Bars::parse_csv(
            "timestamp,open,high,low,close,volume\n300,1,1,1,1,1\n",
            300,
            "t",
        )
        .unwrap();
        assert!(matches!(
            b5.price_grid(300, 3600, 60),
            Err(DataError::GridResolution { .. })
        ));
    }

    #[test]
    fn bad_rows_are_named() {
        let e = Bars::parse_csv("time,o\n", 60, "f.csv").unwrap_err();
        assert!(e.to_string().contains("f.csv"), "{e}");
        let e = Bars::parse_csv(
            "timestamp,open,high,low,close,volume\n60,1,1,1,1,1\n60,1,1,1,1,1\n",
            60,
            "f.csv",
        )
        .unwrap_err();
        assert!(e.to_string().contains("line 3"), "{e}");
        let e = Bars::parse_csv(
            "timestamp,open,high,low,close,volume\n61,1,1,1,1,1\n",
            60,
            "f.csv",
        )
        .unwrap_err();
        assert!(e.to_string().contains("multiple"), "{e}");
        let e = Bars::parse_csv(
            "timestamp,open,high,low,close,volume\n60,1,1,1,0,1\n",
            60,
            "f.csv",
        )
        .unwrap_err();
        assert!(e.to_string().contains("positive"), "{e}");
        let e = Bars::parse_csv(
            "timestamp,open,high,low,close,volume\n60,1,1,x,1,1\n",
            60,
            "f.csv",
        )
        .unwrap_err();
        assert!(e.to_string().contains("low"), "{e}");
    }

    #[test]
    fn shared_data_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
        if !dir.is_dir() {
            return; // the shared data is not part of every checkout
        }
        let infos = data_info(&dir).unwrap();
        assert_eq!(infos.len(), 18);
        let btc = infos.iter().find(|i| i.file == "BTC_1m.csv").unwrap();
        assert_eq!(btc.bars, 220_000);
        assert_eq!(btc.first, 1672531200);
        assert!(btc.gaps > 0, "the crypto files are joined windows");
        let spy = infos.iter().find(|i| i.file == "SPY_5m.csv").unwrap();
        assert_eq!(spy.asset, "SP500");
        assert!(data_info_text(&infos).contains("GOOGLX"));
        assert_eq!(
            asset_file(&dir, "NVDAX", Timeframe::FiveMinutes)
                .unwrap()
                .file_name()
                .unwrap(),
            "NVDA_5m.csv"
        );
        assert!(asset_file(&dir, "HYPE", Timeframe::OneMinute).is_err());
    }

    #[test]
    fn a_missing_file_is_named_once_with_the_command_that_fetches_it() {
        let dir = std::env::temp_dir().join(format!("sc-no-data-{}", std::process::id()));
        let d = dir.display();
        let e = asset_file(&dir, "BTC", Timeframe::FiveMinutes)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            format!(
                "no data file for BTC (5m bars) in {d}: looked for BTC_5m.csv; fetch it with \
                 `synth-city data download --assets BTC --days 30 --resolution 5 --data-dir {d}`, \
                 or point --data-dir (SYNTH_DATA_DIR) at a folder that has it"
            )
        );
        assert!(e.starts_with(NO_DATA_FILE));
        let e = asset_file(&dir, "SP500", Timeframe::OneMinute)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("(1m bars)")
                && e.contains("looked for SP500_1m.csv, SPY_1m.csv;")
                && e.contains("--assets SP500 --days 30 --resolution 1"),
            "{e}"
        );
        // the 24 h prompt's file falls back to the 1-minute one: both named, each once
        let e = asset_file_for_step(&dir, "BTC", 300)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("looked for BTC_5m.csv, BTC_1m.csv;") && e.contains("--resolution 5"),
            "{e}"
        );
        // several assets: one message, one command for all of them
        let assets = ["BTC", "ETH", "BTC"].map(String::from);
        let e = check_files(&dir, &assets, Timeframe::FiveMinutes)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("no data file for BTC, ETH (5m bars)")
                && e.contains("looked for BTC_5m.csv, ETH_5m.csv;")
                && e.contains("--assets BTC,ETH --days 30")
                && e.contains("has them"),
            "{e}"
        );
        assert_eq!(e.matches("BTC_5m.csv").count(), 1, "{e}");
        // a directory that needs quoting is quoted in the command
        let odd = std::path::Path::new("my data");
        let e = asset_file(odd, "ETH", Timeframe::OneMinute)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--data-dir 'my data'`"), "{e}");
    }

    #[test]
    fn the_assets_own_file_wins_over_the_legacy_stem() {
        let dir = std::env::temp_dir().join(format!("sc-own-file-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let csv = "timestamp,open,high,low,close,volume\n60,1,1,1,1,0\n";
        std::fs::write(dir.join("SPY_1m.csv"), csv).unwrap();
        let name = |tf| {
            asset_file(&dir, "SP500", tf)
                .unwrap()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        };
        assert_eq!(
            name(Timeframe::OneMinute),
            "SPY_1m.csv",
            "the legacy file alone"
        );
        std::fs::write(dir.join("SP500_1m.csv"), csv).unwrap();
        assert_eq!(
            name(Timeframe::OneMinute),
            "SP500_1m.csv",
            "both: the asset's own"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
