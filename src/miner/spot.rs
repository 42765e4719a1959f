//! Spot prices from each asset's realised-price venue (Binance last price, Hyperliquid mid, or
//! Pyth Hermes where the asset's source in the SN50 constants says `pyth`), cached for a short
//! TTL and fetched once per asset at a time ([`SpotCache`]); when the venue fails, the last
//! good price, else the last close in the data directory, and where each price came from
//! ([`SpotSource`]).
//!
//! This module does not read bar files itself (the caller passes the last close, see
//! [`super::history`]), does not speak any venue's protocol (`sn50::venues` does) and does not
//! turn a missing price into an HTTP status (the answer does).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sn50::constants::Venue;
use sn50::venues::{PriceClient, VenueError};

/// Why the venue gave no price for this request.
#[derive(Debug, thiserror::Error)]
pub enum VenueOutage {
    /// It failed for this asset within the retry pause; it was not asked again.
    #[error("it failed a moment ago and is not asked again yet")]
    Recent,
    /// It was asked and failed.
    #[error(transparent)]
    Failed(#[from] VenueError),
}

/// No spot price.
#[derive(Debug, thiserror::Error)]
pub enum SpotError {
    /// The price client cannot be built (its configuration).
    #[error(transparent)]
    Client(Box<VenueError>),
    /// The venue is unreachable and there is nothing to fall back on (the 503 body).
    #[error("no spot price for {asset}: {from} gave none ({why}); no earlier price is cached and the data directory has no bars for it")]
    Unavailable {
        asset: String,
        /// The venue, symbol and base URL asked (or why none could be).
        from: String,
        why: Box<VenueOutage>,
    },
}

/// Where a spot price came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpotSource {
    /// Fetched from the asset's venue for this request.
    Venue(Venue),
    /// A venue price younger than the cache TTL.
    Cache,
    /// The venue failed: the last good price, however old.
    StaleCache,
    /// The venue failed and never answered: the last close in the data directory.
    LastClose,
}

impl SpotSource {
    /// The metrics label: the venue's name (`binance`, `hyperliquid`, `pyth`) or the fallback.
    pub fn as_str(self) -> &'static str {
        match self {
            SpotSource::Venue(v) => v.as_str(),
            SpotSource::Cache => "cache",
            SpotSource::StaleCache => "stale_cache",
            SpotSource::LastClose => "last_close",
        }
    }

    /// Every label [`SpotSource::as_str`] can give.
    pub const LABELS: [&'static str; 6] = [
        "binance",
        "hyperliquid",
        "pyth",
        "cache",
        "stale_cache",
        "last_close",
    ];
}

/// A spot price and its provenance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spot {
    pub price: f64,
    pub source: SpotSource,
    /// Seconds since the price was fetched (or since the bar closed, for `LastClose`).
    pub age_s: f64,
}

/// Venue spot prices with a cache and a fallback.
pub struct SpotCache {
    client: PriceClient,
    ttl: Duration,
    retry_after: Duration,
    last: Mutex<HashMap<String, (f64, Instant)>>,
    down_until: Mutex<HashMap<String, Instant>>,
    fetching: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl SpotCache {
    pub fn new(client: PriceClient, ttl: Duration, retry_after: Duration) -> Self {
        SpotCache {
            client,
            ttl,
            retry_after,
            last: Mutex::new(HashMap::new()),
            down_until: Mutex::new(HashMap::new()),
            fetching: Mutex::new(HashMap::new()),
        }
    }

    pub fn client(&self) -> &PriceClient {
        &self.client
    }

    /// Where `asset`'s spot is asked (`binance BTCUSDT at https://api.binance.com`), for logs
    /// and errors.
    pub fn describe(&self, asset: &str) -> String {
        match self.client.source(asset) {
            Ok(s) => self.client.describe(&s, true),
            Err(_) => "its price source".to_string(),
        }
    }

    fn cached(&self, asset: &str) -> Option<(f64, Instant)> {
        self.last.lock().expect("spot lock").get(asset).copied()
    }

    /// The spot price of `asset`: a fresh cached price, else its venue, else the last good
    /// price, else `last_close` (price, close time in unix seconds).
    pub async fn get(
        &self,
        asset: &str,
        last_close: impl FnOnce() -> Option<(f64, i64)> + Send + 'static,
    ) -> Result<Spot, SpotError> {
        let fresh = |c: Option<(f64, Instant)>| {
            c.filter(|(_, at)| at.elapsed() < self.ttl)
                .map(|(p, at)| Spot {
                    price: p,
                    source: SpotSource::Cache,
                    age_s: at.elapsed().as_secs_f64(),
                })
        };
        if let Some(s) = fresh(self.cached(asset)) {
            return Ok(s);
        }
        // One fetch per asset at a time; the others wait for its price.
        let lock = self
            .fetching
            .lock()
            .expect("spot lock")
            .entry(asset.to_string())
            .or_default()
            .clone();
        let _guard = lock.lock().await;
        if let Some(s) = fresh(self.cached(asset)) {
            return Ok(s);
        }
        let down = self
            .down_until
            .lock()
            .expect("spot lock")
            .get(asset)
            .is_some_and(|t| Instant::now() < *t);
        let mut why = VenueOutage::Recent;
        if !down {
            match self.client.spot(asset).await {
                Ok(p) => {
                    self.last
                        .lock()
                        .expect("spot lock")
                        .insert(asset.to_string(), (p.price, Instant::now()));
                    return Ok(Spot {
                        price: p.price,
                        source: SpotSource::Venue(p.venue),
                        age_s: 0.0,
                    });
                }
                Err(e) => {
                    tracing::warn!(asset, error = %e, retry_in_s = self.retry_after.as_secs(),
                        "venue spot price failed; using the fallback");
                    self.down_until
                        .lock()
                        .expect("spot lock")
                        .insert(asset.to_string(), Instant::now() + self.retry_after);
                    why = VenueOutage::Failed(e);
                }
            }
        }
        if let Some((p, at)) = self.cached(asset) {
            return Ok(Spot {
                price: p,
                source: SpotSource::StaleCache,
                age_s: at.elapsed().as_secs_f64(),
            });
        }
        // Reading the data directory may parse a file: off the async threads.
        let close = tokio::task::spawn_blocking(last_close).await.ok().flatten();
        if let Some((p, t)) = close.filter(|(p, _)| p.is_finite() && *p > 0.0) {
            let now = chrono::Utc::now().timestamp();
            return Ok(Spot {
                price: p,
                source: SpotSource::LastClose,
                age_s: (now - t).max(0) as f64,
            });
        }
        Err(SpotError::Unavailable {
            asset: asset.to_string(),
            from: self.describe(asset),
            why: Box::new(why),
        })
    }
}
