//! What a caller may send: a request budget per bot (a token bucket of
//! `--rate-per-min` tokens, refilled continuously; over it, 429 with
//! `Retry-After`) and the largest request body ([`MAX_BODY`]; 413 beyond).
//!
//! It does not identify the bot (`auth.rs`) and keeps buckets in this
//! process only: each bridge counts its own requests.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Largest accepted request body.
pub const MAX_BODY: u64 = 1 << 20;

/// A bot that has spent its budget.
#[derive(Debug, thiserror::Error)]
#[error("bot {bot:?} is over its {per_min} requests per minute")]
pub(super) struct OverBudget {
    pub bot: String,
    pub per_min: u32,
    /// When the next request would be allowed.
    pub retry_after_s: u64,
}

/// The token bucket of every bot that has called.
pub(super) struct Budgets {
    per_min: u32,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl Budgets {
    pub fn new(per_min: u32) -> Self {
        Budgets {
            per_min: per_min.max(1),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Spends one request of the bot's budget.
    pub fn spend(&self, bot: &str) -> Result<(), OverBudget> {
        let cap = f64::from(self.per_min);
        let mut b = self.buckets.lock().unwrap();
        let now = Instant::now();
        let (tokens, last) = b.entry(bot.to_string()).or_insert((cap, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * cap / 60.0).min(cap);
        *last = now;
        if *tokens < 1.0 {
            let wait = ((1.0 - *tokens) * 60.0 / cap).ceil() as u64;
            return Err(OverBudget {
                bot: bot.to_string(),
                per_min: self.per_min,
                retry_after_s: wait.max(1),
            });
        }
        *tokens -= 1.0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_bot_has_its_own_bucket() {
        let b = Budgets::new(2);
        assert!(b.spend("a").is_ok() && b.spend("a").is_ok());
        let e = b.spend("a").unwrap_err();
        assert!(e.retry_after_s >= 1, "{e:?}");
        assert!(e.to_string().contains("2 requests per minute"), "{e}");
        assert!(b.spend("b").is_ok());
    }
}
