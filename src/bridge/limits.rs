//! What a caller may send: a request budget per bot (a token bucket of
//! `--rate-per-min` tokens, refilled continuously; over it, 429 with
//! `Retry-After`), a budget of bots this bridge has not seen recently
//! ([`NEW_BOTS_PER_MIN`]: cycling through bot ids to get a fresh budget each time
//! gets 429 too), a budget of failed authentications over all callers
//! ([`AUTH_FAILURES_PER_MIN`]; 429 beyond), the largest request body ([`MAX_BODY`]; 413 beyond), JSON
//! bodies only (`Content-Type: application/json`; 415 otherwise), and at most
//! so many open `/events` streams per bot ([`Streams`]; 429 beyond).
//!
//! State is bounded: a bucket that has refilled to full says nothing and is
//! dropped once more than [`MAX_TRACKED`] bots are tracked; a bot seen again
//! starts full, as a new one does (and spends the new-bots budget).
//!
//! It does not identify the bot (`auth.rs`) and keeps buckets in this
//! process only: each bridge counts its own requests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Largest accepted request body.
pub const MAX_BODY: u64 = 1 << 20;

/// Bots not tracked a moment ago that may start calling, per minute (a token bucket of this
/// size shared by all of them).
pub const NEW_BOTS_PER_MIN: u32 = 120;

/// Buckets kept before the full ones are dropped; while more than this many bots are all
/// mid-budget, no new bot is let in.
pub const MAX_TRACKED: usize = 10_000;

/// Failed authentications (a missing or wrong `X-API-Key`) answered with 401 per minute, over
/// every caller together; beyond it they get 429 with `Retry-After`, so guessing the key is
/// throttled. A request with the right key is never refused by it.
pub const AUTH_FAILURES_PER_MIN: u32 = 60;

/// A bot that has spent its budget, a new bot over the new-bots budget, or a failed
/// authentication over the failures budget.
#[derive(Debug, thiserror::Error)]
#[error("{}", self.describe())]
pub(super) struct OverBudget {
    pub bot: String,
    pub per_min: u32,
    /// When the next request would be allowed.
    pub retry_after_s: u64,
    /// Which budget was spent.
    pub kind: Over,
}

/// Which budget a refused request spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Over {
    /// The bot's own requests.
    Bot,
    /// The budget of bots this bridge does not track yet.
    NewBot,
    /// The budget of failed authentications.
    AuthFailures,
}

impl OverBudget {
    fn describe(&self) -> String {
        match self.kind {
            Over::NewBot => format!(
                "bot {:?} is new to this bridge and more than {} new bots a minute are calling; retry later",
                self.bot, self.per_min
            ),
            Over::Bot => format!(
                "bot {:?} is over its {} requests per minute",
                self.bot, self.per_min
            ),
            Over::AuthFailures => format!(
                "more than {} requests a minute came with a missing or wrong X-API-Key; send the bridge's key (retry later)",
                self.per_min
            ),
        }
    }
}

/// The failed authentications of the last minute, over every caller (a token bucket).
pub(super) struct AuthFailures(Mutex<Bucket>);

impl AuthFailures {
    pub fn new() -> Self {
        AuthFailures(Mutex::new((
            f64::from(AUTH_FAILURES_PER_MIN),
            Instant::now(),
        )))
    }

    /// Counts one failed authentication: `Err` (429) once the budget is spent.
    pub fn fail(&self) -> Result<(), OverBudget> {
        let cap = f64::from(AUTH_FAILURES_PER_MIN);
        let mut b = self.0.lock().unwrap();
        refill(&mut b, cap, Instant::now());
        if b.0 < 1.0 {
            return Err(OverBudget {
                bot: String::new(),
                per_min: AUTH_FAILURES_PER_MIN,
                retry_after_s: wait_s(&b, cap),
                kind: Over::AuthFailures,
            });
        }
        b.0 -= 1.0;
        Ok(())
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
                    kind: Over::NewBot,
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
                kind: Over::Bot,
            });
        }
        b.0 -= 1.0;
        Ok(())
    }
}

/// A bot with every one of its `/events` streams open.
#[derive(Debug, thiserror::Error)]
#[error(
    "bot {bot:?} already has {max} open /events streams (the limit per bot, \
     SYNTH_BRIDGE_MAX_SSE_PER_BOT / --max-sse-per-bot): close one first"
)]
pub(super) struct TooManyStreams {
    pub bot: String,
    pub max: usize,
}

/// The open `/events` streams of every bot.
pub(super) struct Streams {
    max: usize,
    open: Arc<Mutex<HashMap<String, usize>>>,
}

/// One open stream; dropping it (the client went away) frees its place.
#[derive(Debug)]
pub(super) struct StreamSlot {
    bot: String,
    open: Arc<Mutex<HashMap<String, usize>>>,
}

impl Streams {
    pub fn new(max: usize) -> Self {
        Streams {
            max: max.max(1),
            open: Arc::default(),
        }
    }

    /// A place for one more of the bot's streams, or the refusal.
    pub fn open(&self, bot: &str) -> Result<StreamSlot, TooManyStreams> {
        let mut open = self.open.lock().unwrap();
        let n = open.entry(bot.to_string()).or_insert(0);
        if *n >= self.max {
            return Err(TooManyStreams {
                bot: bot.to_string(),
                max: self.max,
            });
        }
        *n += 1;
        Ok(StreamSlot {
            bot: bot.to_string(),
            open: self.open.clone(),
        })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap();
        if let Some(n) = open.get_mut(&self.bot) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.bot);
            }
        }
    }
}

/// The refusal of a body that is not declared JSON.
#[derive(Debug, thiserror::Error)]
#[error(
    "the request body must be JSON: send the header `Content-Type: application/json` \
     (got {got}); e.g. curl -H 'Content-Type: application/json' -d '{{...}}'"
)]
pub(super) struct NotJson {
    got: String,
}

/// Checks that a request with a body declares it JSON (`application/json`, parameters
/// such as `; charset=utf-8` allowed). A request without a body passes.
pub(super) fn json_content_type(
    content_type: Option<&str>,
    body_len: usize,
) -> Result<(), NotJson> {
    if body_len == 0 {
        return Ok(());
    }
    let Some(ct) = content_type else {
        return Err(NotJson {
            got: "no Content-Type".into(),
        });
    };
    let essence = ct.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(NotJson {
            got: format!("`{ct}`"),
        })
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
    fn failed_authentications_are_throttled_together() {
        let f = AuthFailures::new();
        for _ in 0..AUTH_FAILURES_PER_MIN {
            assert!(f.fail().is_ok());
        }
        let e = f.fail().unwrap_err();
        assert!(
            e.kind == Over::AuthFailures && e.retry_after_s >= 1,
            "{e:?}"
        );
        assert!(e.to_string().contains("X-API-Key"), "{e}");
    }

    #[test]
    fn cycling_bot_ids_gets_no_fresh_budget_and_state_stays_bounded() {
        let b = Budgets::new(60);
        let mut refused = 0;
        for i in 0..20_000 {
            if let Err(e) = b.spend(&format!("bot-{i}")) {
                assert!(e.kind == Over::NewBot && e.retry_after_s >= 1, "{e:?}");
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

    #[test]
    fn each_bot_has_its_own_streams_and_a_closed_one_frees_its_place() {
        let s = Streams::new(2);
        let a1 = s.open("a").unwrap();
        let _a2 = s.open("a").unwrap();
        let e = s.open("a").unwrap_err();
        assert!(e.to_string().contains("2 open /events streams"), "{e}");
        assert!(s.open("b").is_ok());
        drop(a1);
        assert!(s.open("a").is_ok());
    }

    #[test]
    fn only_json_bodies_pass() {
        assert!(json_content_type(Some("application/json"), 2).is_ok());
        assert!(json_content_type(Some("Application/JSON; charset=utf-8"), 2).is_ok());
        assert!(json_content_type(None, 0).is_ok());
        let e = json_content_type(Some("text/plain"), 2).unwrap_err();
        assert!(
            e.to_string().contains("Content-Type: application/json"),
            "{e}"
        );
        assert!(e.to_string().contains("text/plain"), "{e}");
        assert!(json_content_type(None, 2).is_err());
        assert!(json_content_type(Some("application/jsonx"), 2).is_err());
    }
}
