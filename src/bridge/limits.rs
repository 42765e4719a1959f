//! What a caller may send: a request budget per bot (a token bucket of
//! `--rate-per-min` tokens, refilled continuously; over it, 429 with
//! `Retry-After`), a budget of bots this bridge has not seen recently
//! ([`NEW_BOTS_PER_MIN`]: cycling through bot ids to get a fresh budget each time
//! gets 429 too), and the largest request body ([`MAX_BODY`]; 413 beyond).
//!
//! State is bounded: a bucket that has refilled to full says nothing and is
//! dropped once more than [`MAX_TRACKED`] bots are tracked; a bot seen again
//! starts full, as a new one does (and spends the new-bots budget).
//!
//! It does not identify the bot (`auth.rs`) and keeps buckets in this
//! process only: each bridge counts its own requests.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Largest accepted request body.
pub const MAX_BODY: u64 = 1 << 20;

/// Bots not tracked a moment ago that may start calling, per minute (a token bucket of this
/// size shared by all of them).
pub const NEW_BOTS_PER_MIN: u32 = 120;

/// Buckets kept before the full ones are dropped; while more than this many bots are all
/// mid-budget, no new bot is let in.
pub const MAX_TRACKED: usize = 10_000;

/// A bot that has spent its budget, or a new bot over the new-bots budget.
#[derive(Debug, thiserror::Error)]
#[error("{}", self.describe())]
pub(super) struct OverBudget {
    pub bot: String,
    pub per_min: u32,
    /// When the next request would be allowed.
    pub retry_after_s: u64,
    /// Refused as a new bot (the new-bots budget), not for its own requests.
    pub new_bot: bool,
}

impl OverBudget {
    fn describe(&self) -> String {
        if self.new_bot {
            format!(
                "bot {:?} is new to this bridge and more than {} new bots a minute are calling; retry later",
                self.bot, self.per_min
            )
        } else {
            format!(
                "bot {:?} is over its {} requests per minute",
                self.bot, self.per_min
            )
        }
    }
}

/// A token bucket: tokens and when they were last counted.
type Bucket = (f64, Instant);

/// Refills `b` (of `cap` a minute) to `now`.
fn refill(b: &mut Bucket, cap: f64, now: Instant) {
    b.0 = (b.0 + now.duration_since(b.1).as_secs_f64() * cap / 60.0).min(cap);
    b.1 = now;
}

/// Seconds until `b` holds a token.
fn wait_s(b: &Bucket, cap: f64) -> u64 {
    (((1.0 - b.0) * 60.0 / cap).ceil() as u64).max(1)
}

/// The token bucket of every bot that has called, and the new-bots bucket.
pub(super) struct Budgets {
    per_min: u32,
    buckets: Mutex<(HashMap<String, Bucket>, Bucket)>,
}

impl Budgets {
    pub fn new(per_min: u32) -> Self {
        let now = Instant::now();
        Budgets {
            per_min: per_min.max(1),
            buckets: Mutex::new((HashMap::new(), (f64::from(NEW_BOTS_PER_MIN), now))),
        }
    }

    /// How many bots are tracked now.
    #[cfg(test)]
    pub fn tracked(&self) -> usize {
        self.buckets.lock().unwrap().0.len()
    }

    /// Spends one request of the bot's budget (and, for a bot not tracked, one of the
    /// new-bots budget).
    pub fn spend(&self, bot: &str) -> Result<(), OverBudget> {
        let cap = f64::from(self.per_min);
        let mut guard = self.buckets.lock().unwrap();
        let (buckets, newcomers) = &mut *guard;
        let now = Instant::now();
        if !buckets.contains_key(bot) {
            let new_cap = f64::from(NEW_BOTS_PER_MIN);
            refill(newcomers, new_cap, now);
            if buckets.len() >= MAX_TRACKED {
                // a full bucket is what a new bot gets anyway: forget those
                buckets.retain(|_, b| {
                    refill(b, cap, now);
                    b.0 < cap
                });
            }
            if newcomers.0 < 1.0 || buckets.len() >= MAX_TRACKED {
                return Err(OverBudget {
                    bot: bot.to_string(),
                    per_min: NEW_BOTS_PER_MIN,
                    retry_after_s: wait_s(newcomers, new_cap),
                    new_bot: true,
                });
            }
            newcomers.0 -= 1.0;
            buckets.insert(bot.to_string(), (cap, now));
        }
        let b = buckets.get_mut(bot).expect("inserted above");
        refill(b, cap, now);
        if b.0 < 1.0 {
            return Err(OverBudget {
                bot: bot.to_string(),
                per_min: self.per_min,
                retry_after_s: wait_s(b, cap),
                new_bot: false,
            });
        }
        b.0 -= 1.0;
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

    #[test]
    fn cycling_bot_ids_gets_no_fresh_budget_and_state_stays_bounded() {
        let b = Budgets::new(60);
        let mut refused = 0;
        for i in 0..20_000 {
            if let Err(e) = b.spend(&format!("bot-{i}")) {
                assert!(e.new_bot && e.retry_after_s >= 1, "{e:?}");
                assert!(e.to_string().contains("new bots a minute"), "{e}");
                refused += 1;
            }
        }
        // the new-bots bucket lets its 120 in, then (nearly) nobody within the test's time
        assert!(refused >= 20_000 - 200, "{refused} refused");
        assert!(b.tracked() <= MAX_TRACKED);
        // a bot already tracked keeps its own budget
        assert!(b.spend("bot-0").is_ok());
    }
}
