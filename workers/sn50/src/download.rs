//! `synth-city data download`: history from each asset's realised-price venue (Binance klines,
//! Hyperliquid candles, see [`super::venues`]), or from Pyth benchmarks with
//! [`SourceChoice::Pyth`], into the local data directory, in the CSV format of `shared/data`
//! (`timestamp,open,high,low,close,volume`, `timestamp` = bar open in unix seconds).
//!
//! Venue bars go to the asset's own file, `{ASSET}_1m.csv` / `{ASSET}_5m.csv` (`SP500_1m.csv`:
//! the venue's index is not the legacy `SPY_*` series); Pyth bars go where they always went,
//! the existing file or the shared data's stem. The range is fetched in chunks of at most `chunk_bars` bars, one request each, with a progress
//! bar. Only closed bars are stored (open time + bar length <= the end of the range). New bars are
//! merged into the asset's existing file: a bar already present is kept as it is (never
//! duplicated, never overwritten), missing bars stay gaps. The file is written to a temporary
//! name and renamed into place.
//!
//! What this module does not do: speak HTTP itself (the clients do) or pick an asset's venue
//! (the constants do).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use super::constants::asset_info;
use super::constants::{PriceSource, Venue};
use super::data::{asset_file, Bars, DataError};
use super::pyth::{HistoryBar, Resolution};
pub use super::venues::SourceChoice;
use super::venues::{PriceClient, VenueError};

/// Errors from a download.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("no assets to download")]
    NoAssets,
    #[error("--days must be at least 1")]
    NoDays,
    #[error("chunk size must be at least 1 bar")]
    ChunkBars,
    #[error("{asset}: {source}")]
    Asset {
        asset: String,
        source: Box<VenueError>,
    },
    #[error("{asset}: {venue} request for {from}..{to} failed ({source}); {saved}")]
    Fetch {
        asset: String,
        venue: &'static str,
        from: i64,
        to: i64,
        source: Box<VenueError>,
        saved: String,
    },
    #[error("cannot merge into the existing data file: {0}")]
    Existing(#[from] DataError),
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// What to download.
#[derive(Debug, Clone)]
pub struct DownloadOptions {
    /// SN50 asset names (BTC, ETH, XAU, ...).
    pub assets: Vec<String>,
    pub resolution: Resolution,
    /// First bar open time wanted (unix seconds, rounded up to the bar grid).
    pub from: i64,
    /// End of the range (unix seconds): only bars closed by then are stored.
    pub end: i64,
    pub data_dir: PathBuf,
    /// Bars per request.
    pub chunk_bars: i64,
    /// Draw a progress bar on stderr (drawn only when stderr is a terminal).
    pub progress: bool,
    /// Each asset's venue (the default) or Pyth for all.
    pub source: SourceChoice,
}

impl DownloadOptions {
    /// `days` days of bars ending at `end` (unix seconds).
    pub fn last_days(
        assets: Vec<String>,
        days: u32,
        end: i64,
        resolution: Resolution,
        data_dir: PathBuf,
    ) -> Result<Self, DownloadError> {
        if days == 0 {
            return Err(DownloadError::NoDays);
        }
        Ok(DownloadOptions {
            assets,
            resolution,
            from: end - i64::from(days) * 86_400,
            end,
            data_dir,
            chunk_bars: DEFAULT_CHUNK_BARS,
            progress: true,
            source: SourceChoice::Venue,
        })
    }

    /// Open times of the first and last bar in range, or `None` when no closed bar fits.
    pub fn bar_range(&self) -> Option<(i64, i64)> {
        let bar = self.resolution.step_secs();
        let first = self.from.div_euclid(bar) * bar
            + if self.from.rem_euclid(bar) == 0 {
                0
            } else {
                bar
            };
        let last = (self.end - bar).div_euclid(bar) * bar;
        (first <= last).then_some((first, last))
    }

    /// The `[from, to]` (inclusive open times) of each request.
    pub fn chunks(&self) -> Vec<(i64, i64)> {
        let bar = self.resolution.step_secs();
        let Some((first, last)) = self.bar_range() else {
            return Vec::new();
        };
        let span = self.chunk_bars.max(1) * bar;
        let mut out = Vec::new();
        let mut from = first;
        while from <= last {
            let to = (from + span - bar).min(last);
            out.push((from, to));
            from = to + bar;
        }
        out
    }
}

/// Bars per chunk by default: one day of 1-minute bars (one Pyth request; the venue clients
/// page inside a chunk as their servers need).
pub const DEFAULT_CHUNK_BARS: i64 = 1440;

/// The outcome for one asset.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AssetDownload {
    pub asset: String,
    /// `binance`, `hyperliquid` or `pyth`.
    pub venue: String,
    /// The venue's symbol (`BTCUSDT`, `xyz:NVDA`, `Crypto.BTC/USD`).
    pub symbol: String,
    pub file: String,
    /// Chunks of the range (each one request to Pyth; one or more to a venue).
    pub requests: usize,
    /// Bars the source returned inside the range.
    pub fetched: usize,
    /// Bars added to the file.
    pub added: usize,
    /// Bars already in the file (kept as they were).
    pub already_present: usize,
    /// Of those, how many had a different close in the source's answer.
    pub differing: usize,
    /// Bars in the file afterwards.
    pub total: usize,
}

/// The file an asset's bars go to: the existing file `data::asset_file` finds, else
/// `{stem}_{1m|5m}.csv` with the shared data's stem (`SPY` for SP500) or the asset name.
pub fn target_file(dir: &Path, asset: &str, resolution: Resolution) -> PathBuf {
    let tf = resolution;
    asset_file(dir, asset, tf).unwrap_or_else(|_| {
        let stem = asset_info(asset).and_then(|a| a.data_stem).unwrap_or(asset);
        dir.join(tf.data_file(stem))
    })
}

/// The file bars from `venue` go to: for Pyth, [`target_file`]; for a venue, the asset's own
/// `{ASSET}_{1m|5m}.csv` (never a legacy stem's file, which holds another series).
pub fn target_file_for(dir: &Path, asset: &str, resolution: Resolution, venue: Venue) -> PathBuf {
    match venue {
        Venue::Pyth => target_file(dir, asset, resolution),
        Venue::Binance | Venue::Hyperliquid => dir.join(resolution.data_file(asset)),
    }
}

/// One CSV row.
type Row = [f64; 5];

/// Merge `fetched` into the file at `path` (created if missing) and write it back.
pub fn merge_into_file(
    path: &Path,
    bar_seconds: i64,
    fetched: &[HistoryBar],
) -> Result<(usize, usize, usize, usize), DownloadError> {
    let mut rows: BTreeMap<i64, Row> = BTreeMap::new();
    if path.is_file() {
        let b = Bars::load(path)?;
        for i in 0..b.len() {
            rows.insert(
                b.timestamps[i],
                [b.open[i], b.high[i], b.low[i], b.close[i], b.volume[i]],
            );
        }
    }
    let (mut added, mut present, mut differing) = (0, 0, 0);
    for h in fetched {
        match rows.get(&h.t) {
            Some(r) => {
                present += 1;
                if r[3] != h.close {
                    differing += 1;
                }
            }
            None => {
                rows.insert(h.t, [h.open, h.high, h.low, h.close, h.volume]);
                added += 1;
            }
        }
    }
    if rows.is_empty() {
        // Nothing fetched and no file: do not create a file without bars (the loader refuses it).
        return Ok((0, 0, 0, 0));
    }
    debug_assert!(rows.keys().all(|t| t % bar_seconds == 0));
    let mut text = String::with_capacity(rows.len() * 64 + 40);
    text.push_str("timestamp,open,high,low,close,volume\n");
    for (t, r) in &rows {
        text.push_str(&format!(
            "{t},{},{},{},{},{}\n",
            r[0], r[1], r[2], r[3], r[4]
        ));
    }
    let werr = |source| DownloadError::Write {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(werr)?;
    }
    let tmp = path.with_extension(format!("csv.tmp{}", std::process::id()));
    std::fs::write(&tmp, text).map_err(werr)?;
    std::fs::rename(&tmp, path).map_err(werr)?;
    Ok((added, present, differing, rows.len()))
}

/// Download every asset of `opts` and merge the bars into its file.
pub async fn download(
    client: &PriceClient,
    opts: &DownloadOptions,
) -> Result<Vec<AssetDownload>, DownloadError> {
    if opts.assets.is_empty() {
        return Err(DownloadError::NoAssets);
    }
    if opts.chunk_bars < 1 {
        return Err(DownloadError::ChunkBars);
    }
    // Check every asset before the first request.
    let mut sources: Vec<PriceSource> = Vec::new();
    for a in &opts.assets {
        let s = client
            .source_for(a, opts.source)
            .map_err(|source| DownloadError::Asset {
                asset: a.clone(),
                source: Box::new(source),
            })?;
        sources.push(s);
    }
    let chunks = opts.chunks();
    let bar = opts.resolution.step_secs();
    let pb = if opts.progress {
        ProgressBar::new((chunks.len() * opts.assets.len()) as u64)
    } else {
        ProgressBar::hidden()
    };
    pb.set_style(
        ProgressStyle::with_template(
            "{spinner} {msg:<8} [{bar:30}] {pos}/{len} requests, {elapsed} (eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let mut out = Vec::new();
    for (asset, source) in opts.assets.iter().zip(sources) {
        pb.set_message(asset.clone());
        let path = target_file_for(&opts.data_dir, asset, opts.resolution, source.venue);
        let mut fetched: Vec<HistoryBar> = Vec::new();
        for &(from, to) in &chunks {
            match client.history(&source, opts.resolution, from, to).await {
                Ok(bars) => {
                    fetched.extend(bars.into_iter().filter(|b| b.t >= from && b.t <= to));
                    pb.inc(1);
                }
                Err(error) => {
                    pb.abandon();
                    let saved = if fetched.is_empty() {
                        "nothing saved".to_string()
                    } else {
                        match merge_into_file(&path, bar, &fetched) {
                            Ok((added, ..)) => format!(
                                "{added} new bar(s) fetched before it were saved to {}",
                                path.display()
                            ),
                            Err(e) => format!("the bars fetched before it were not saved: {e}"),
                        }
                    };
                    return Err(DownloadError::Fetch {
                        asset: asset.clone(),
                        venue: source.venue.as_str(),
                        from,
                        to,
                        source: Box::new(error),
                        saved,
                    });
                }
            }
        }
        let (added, already_present, differing, total) = merge_into_file(&path, bar, &fetched)?;
        out.push(AssetDownload {
            asset: asset.clone(),
            venue: source.venue.as_str().to_string(),
            symbol: source.symbol.clone(),
            file: path.display().to_string(),
            requests: chunks.len(),
            fetched: fetched.len(),
            added,
            already_present,
            differing,
            total,
        });
    }
    pb.finish_and_clear();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(from: i64, end: i64, res: Resolution, chunk: i64) -> DownloadOptions {
        DownloadOptions {
            assets: vec!["BTC".into()],
            resolution: res,
            from,
            end,
            data_dir: PathBuf::from("."),
            chunk_bars: chunk,
            progress: false,
            source: SourceChoice::Venue,
        }
    }

    #[test]
    fn chunks_cover_closed_bars_without_overlap() {
        // 1-minute bars, from 10:00:30 to 10:10:30: bars 10:01 .. 10:09 are closed.
        let o = opts(36_030, 36_630, Resolution::OneMinute, 4);
        assert_eq!(o.bar_range(), Some((36_060, 36_540)));
        assert_eq!(
            o.chunks(),
            vec![(36_060, 36_240), (36_300, 36_480), (36_540, 36_540)]
        );
        let o = opts(0, 3_000, Resolution::FiveMinutes, 1440);
        assert_eq!(o.chunks(), vec![(0, 2_700)]);
        // Nothing closed yet.
        assert!(opts(60, 100, Resolution::OneMinute, 10).chunks().is_empty());
        assert!(
            DownloadOptions::last_days(vec![], 0, 0, Resolution::OneMinute, ".".into()).is_err()
        );
        let d = DownloadOptions::last_days(vec![], 2, 864_000, Resolution::OneMinute, ".".into())
            .unwrap();
        assert_eq!(d.chunks().len(), 2);
        assert_eq!(d.chunks()[0], (691_200, 691_200 + 1439 * 60));
    }

    fn bar(t: i64, c: f64) -> HistoryBar {
        HistoryBar {
            t,
            open: c,
            high: c + 1.0,
            low: c - 1.0,
            close: c,
            volume: 0.5,
        }
    }

    #[test]
    fn merge_keeps_existing_bars_and_adds_missing_ones() {
        let dir = std::env::temp_dir().join(format!("sn50-merge-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = target_file(&dir, "SP500", Resolution::OneMinute);
        assert!(path.ends_with("SPY_1m.csv"));
        assert_eq!(merge_into_file(&path, 60, &[]).unwrap(), (0, 0, 0, 0));
        assert!(!path.exists(), "no file without bars");
        let r = merge_into_file(&path, 60, &[bar(60, 10.0), bar(180, 12.5)]).unwrap();
        assert_eq!(r, (2, 0, 0, 2));
        // Overlap: 180 is present (with another close), 120 and 240 are new.
        let r = merge_into_file(
            &path,
            60,
            &[bar(120, 11.0), bar(180, 99.0), bar(240, 13.25)],
        )
        .unwrap();
        assert_eq!(r, (2, 1, 1, 4));
        let b = Bars::load(&path).unwrap();
        assert_eq!(b.timestamps, vec![60, 120, 180, 240]);
        assert_eq!(b.close, vec![10.0, 11.0, 12.5, 13.25]);
        assert_eq!(b.high[3], 14.25);
        assert!(b.gaps().is_empty());
        // The existing file is found again (not a second file).
        assert_eq!(target_file(&dir, "SP500", Resolution::OneMinute), path);
        assert!(target_file(&dir, "HYPE", Resolution::FiveMinutes).ends_with("HYPE_5m.csv"));
        // Venue bars never go to the legacy stem's file.
        assert!(
            target_file_for(&dir, "SP500", Resolution::OneMinute, Venue::Hyperliquid)
                .ends_with("SP500_1m.csv")
        );
        assert_eq!(
            target_file_for(&dir, "SP500", Resolution::OneMinute, Venue::Pyth),
            path
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
