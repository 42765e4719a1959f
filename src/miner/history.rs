//! Bar history from the data directory: an asset's bars at a step size, loaded once and
//! re-read when the file changes ([`HistoryCache`]), and the last close (the spot price of last
//! resort).
//!
//! This module does not download bars (`synth-city data download` does), and does not cut the
//! history at the request time (the forecaster uses only bars closed by then).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use jobs::Timeframe;
use sn50::data::{asset_file, Bars, DataError};

/// Loaded bar files by (asset, timeframe), with the file's modification time.
type BarFiles = HashMap<(String, Timeframe), (Option<SystemTime>, Arc<Bars>)>;

/// Bar files from the data directory, loaded once and re-read when they change.
pub struct HistoryCache {
    dir: PathBuf,
    loaded: Mutex<BarFiles>,
}

impl HistoryCache {
    pub fn new(dir: PathBuf) -> Self {
        HistoryCache {
            dir,
            loaded: Mutex::new(HashMap::new()),
        }
    }

    /// The bars of `asset` at the step of `timeframe` (blocking: may read a file).
    pub fn get(&self, asset: &str, timeframe: Timeframe) -> Result<Arc<Bars>, DataError> {
        let path = asset_file(&self.dir, asset, timeframe)?;
        let mtime = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        let key = (asset.to_string(), timeframe);
        if let Some((t, b)) = self.loaded.lock().expect("history lock").get(&key) {
            if *t == mtime {
                return Ok(b.clone());
            }
        }
        let bars = Arc::new(Bars::load(&path)?);
        self.loaded
            .lock()
            .expect("history lock")
            .insert(key, (mtime, bars.clone()));
        Ok(bars)
    }

    /// The last close of `asset` in the data directory: (price, close time), the latest of its
    /// bar files; on a tie, the 5-minute bar's.
    pub fn last_close(&self, asset: &str) -> Option<(f64, i64)> {
        Timeframe::ALL
            .into_iter()
            .filter_map(|tf| Some((tf, self.get(asset, tf).ok()?)))
            .filter_map(|(tf, b)| {
                let i = b.len().checked_sub(1)?;
                Some((tf, b.close[i], b.timestamps[i] + b.bar_seconds))
            })
            .max_by_key(|&(tf, _, t)| (t, tf == Timeframe::FiveMinutes))
            .map(|(_, price, t)| (price, t))
    }
}
