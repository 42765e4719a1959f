//! Each bot's state in Redis, under its own namespace: its session, its
//! experiments, the work it has in flight, and the runs it owns. The one place
//! the route families (`sessions.rs`, `runs.rs`, `experiments.rs`,
//! `dashboard.rs`) read and change what a bot owns; the router also counts
//! each authenticated request here (the session is refreshed in the
//! background, at most every 2 s per bot).
//!
//! | key | type | holds |
//! |---|---|---|
//! | `bot:<bot>:session` | hash | `created_at`, `last_active` (Redis ms), `requests` |
//! | `bot:<bot>:experiments` | hash | experiment id -> [`Experiment`] JSON |
//! | `bot:<bot>:active` | set | `job:<id>` / `run:<id>` the bot has in flight |
//! | `bots` | zset | bot -> last active ms (sessions are found here) |
//!
//! Every change is one Lua script (`src/engine/lua/session_*.lua`, with
//! `session.lua`'s helpers), which also prunes finished work
//! from the active set and then either makes the session persistent (work in
//! flight) or sets its idle TTL (default 3600 s, `BRIDGE_SESSION_TTL_SECS`).
//!
//! It serves no route and checks no ownership of ids: a bot reads only its
//! own records because the routes ask for the caller's bot.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::State;
use engine::queue::{Queue, QueueError};
use trainer::zoo::spec::ExperimentSpec;

/// The keys of one bot's session.
fn bot_key(q: &Queue, bot: &str, part: &str) -> String {
    q.keys().bot(bot, part)
}

/// One experiment of a bot's session.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Experiment {
    pub id: String,
    pub name: String,
    pub fingerprint: String,
    pub spec: ExperimentSpec,
    #[serde(default)]
    pub param_count: Option<usize>,
    pub created_at_ms: u64,
    /// created | queued | running | completed | failed | cancelled | lost
    pub state: String,
    #[serde(default)]
    pub job_id: Option<String>,
    #[serde(default)]
    pub crps: Option<f64>,
    #[serde(default)]
    pub gbm_crps: Option<f64>,
    #[serde(default)]
    pub crps_ratio: Option<f64>,
    /// The job's result (the experiment record and training details).
    #[serde(default)]
    pub result: Option<Value>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub finished_at_ms: Option<u64>,
}

impl Experiment {
    pub fn in_flight(&self) -> bool {
        matches!(self.state.as_str(), "queued" | "running")
    }
}

/// The session TTL in seconds.
pub(super) fn ttl(s: &State) -> u64 {
    s.session_ttl
}

async fn eval<T: redis::FromRedisValue>(
    q: &Queue,
    what: &str,
    script: &engine::scripts::Function,
    args: &[String],
) -> Result<T, QueueError> {
    q.retrying(what, |mut c| {
        let mut inv = script.prepare_invoke();
        for a in args {
            inv.arg(a);
        }
        async move { Ok(inv.invoke_async(&mut c).await?) }
    })
    .await
}

/// Refreshes the bot's session (creating it if needed) and counts `requests`.
pub(super) async fn touch(s: &State, bot: &str, requests: u64) -> Result<u64, QueueError> {
    let q = &s.queue;
    eval(
        q,
        "touch session",
        &q.scripts().session_touch,
        &[
            q.prefix().to_string(),
            bot.to_string(),
            ttl(s).to_string(),
            requests.to_string(),
        ],
    )
    .await
}

/// Stores an experiment (and marks `active` in flight, if given).
pub(super) async fn put_experiment(
    s: &State,
    bot: &str,
    e: &Experiment,
    active: Option<&str>,
) -> Result<(), QueueError> {
    let q = &s.queue;
    let _: u64 = eval(
        q,
        "store experiment",
        &q.scripts().session_put,
        &[
            q.prefix().to_string(),
            bot.to_string(),
            ttl(s).to_string(),
            e.id.clone(),
            serde_json::to_string(e).expect("experiments serialise"),
            active.unwrap_or("").to_string(),
        ],
    )
    .await?;
    Ok(())
}

/// Marks a run or job of the bot as in flight (the session then persists).
pub(super) async fn add_active(s: &State, bot: &str, member: &str) -> Result<(), QueueError> {
    let q = &s.queue;
    let _: u64 = eval(
        q,
        "mark active",
        &q.scripts().session_add_active,
        &[
            q.prefix().to_string(),
            bot.to_string(),
            ttl(s).to_string(),
            member.to_string(),
        ],
    )
    .await?;
    Ok(())
}

/// Every experiment of a bot, synced with its job, oldest first.
pub(super) async fn experiments(s: &State, bot: &str) -> Result<Vec<Experiment>, QueueError> {
    let k = bot_key(&s.queue, bot, "experiments");
    let raw: BTreeMap<String, String> = s
        .queue
        .retrying("experiments", |mut c| {
            let k = k.clone();
            async move { Ok(c.hgetall(k).await?) }
        })
        .await?;
    let mut out: Vec<Experiment> = raw
        .values()
        .filter_map(|v| serde_json::from_str(v).ok())
        .collect();
    for e in out.iter_mut() {
        sync(s, bot, e).await?;
    }
    out.sort_by(|a, b| a.created_at_ms.cmp(&b.created_at_ms).then(a.id.cmp(&b.id)));
    Ok(out)
}

/// One experiment of a bot, synced with its job.
pub(super) async fn experiment(
    s: &State,
    bot: &str,
    id: &str,
) -> Result<Option<Experiment>, QueueError> {
    let k = bot_key(&s.queue, bot, "experiments");
    let raw: Option<String> = s
        .queue
        .retrying("experiment", |mut c| {
            let (k, id) = (k.clone(), id.to_string());
            async move { Ok(c.hget(k, id).await?) }
        })
        .await?;
    let Some(mut e) = raw.and_then(|v| serde_json::from_str::<Experiment>(&v).ok()) else {
        return Ok(None);
    };
    sync(s, bot, &mut e).await?;
    Ok(Some(e))
}

/// Brings an in-flight experiment up to date with its job's status record
/// and writes the change back (job records expire; the session keeps it).
async fn sync(s: &State, bot: &str, e: &mut Experiment) -> Result<(), QueueError> {
    if !e.in_flight() {
        return Ok(());
    }
    let Some(job) = e.job_id.clone() else {
        return Ok(());
    };
    let before = e.state.clone();
    match s.queue.status(&job).await? {
        None => {
            e.state = "lost".into();
            e.error = Some(format!("job {job} is gone (its record expired)"));
        }
        Some(st) => match st.state.as_str() {
            "waiting" | "delayed" => e.state = "queued".into(),
            "active" => e.state = "running".into(),
            "completed" => {
                let rec = st.result.as_ref().map(|r| r["record"].clone());
                let ok = rec.as_ref().is_some_and(|r| r["status"] == "ok");
                e.crps = rec.as_ref().and_then(|r| r["crps"].as_f64());
                e.gbm_crps = rec.as_ref().and_then(|r| r["gbm_crps"].as_f64());
                e.crps_ratio = st.result.as_ref().and_then(|r| r["crps_ratio"].as_f64());
                e.error = rec
                    .as_ref()
                    .and_then(|r| r["error"].as_str().map(String::from));
                e.result = st.result.clone();
                e.state = if ok { "completed" } else { "failed" }.into();
                e.finished_at_ms = st.finished_at_ms;
            }
            "dead" => {
                e.state = "failed".into();
                e.error = st.error.clone();
                e.finished_at_ms = st.finished_at_ms;
            }
            "cancelled" => {
                e.state = "cancelled".into();
                e.finished_at_ms = st.finished_at_ms;
            }
            _ => {}
        },
    }
    if e.state != before {
        let q = &s.queue;
        let _: u64 = eval(
            q,
            "update experiment",
            &q.scripts().session_update,
            &[
                q.prefix().to_string(),
                bot.to_string(),
                e.id.clone(),
                serde_json::to_string(&*e).expect("experiments serialise"),
            ],
        )
        .await?;
    }
    Ok(())
}

/// The bots with a session, most recently active first; expired ones are
/// dropped from the index on the way.
pub(super) async fn bots(s: &State) -> Result<Vec<String>, QueueError> {
    let q = &s.queue;
    let idx = q.keys().bots();
    let ids: Vec<String> = q
        .retrying("bots", |mut c| {
            let idx = idx.clone();
            async move { Ok(c.zrevrange(idx, 0, 9999).await?) }
        })
        .await?;
    let mut p = redis::pipe();
    for b in &ids {
        p.exists(bot_key(q, b, "session"));
    }
    let alive: Vec<bool> = q
        .retrying("bots alive", |mut c| {
            let p = p.clone();
            async move { Ok(p.query_async(&mut c).await?) }
        })
        .await?;
    let mut out = Vec::new();
    let mut gone = Vec::new();
    for (b, a) in ids.into_iter().zip(alive) {
        if a {
            out.push(b);
        } else {
            gone.push(b);
        }
    }
    if !gone.is_empty() {
        let _: () = q
            .retrying("prune bots", |mut c| {
                let (idx, gone) = (idx.clone(), gone.clone());
                async move { Ok(c.zrem(idx, gone).await?) }
            })
            .await?;
    }
    Ok(out)
}

/// The public view of a session, or `None` when it does not exist.
pub(super) async fn session_json(s: &State, bot: &str) -> Result<Option<Value>, QueueError> {
    let q = &s.queue;
    let (sk, ek, ak) = (
        bot_key(q, bot, "session"),
        bot_key(q, bot, "experiments"),
        bot_key(q, bot, "active"),
    );
    let (h, n, active, ttl): (BTreeMap<String, String>, u64, Vec<String>, i64) = q
        .retrying("session", |mut c| {
            let mut p = redis::pipe();
            p.hgetall(&sk).hlen(&ek).smembers(&ak).ttl(&sk);
            async move { Ok(p.query_async(&mut c).await?) }
        })
        .await?;
    if h.is_empty() {
        return Ok(None);
    }
    let num = |k: &str| h.get(k).and_then(|v| v.parse::<u64>().ok());
    Ok(Some(json!({
        "bot_id": bot,
        "created_at_ms": num("created_at"),
        "last_active_ms": num("last_active"),
        "requests": num("requests").unwrap_or(0),
        "experiments": n,
        "active": active,
        "running": !active.is_empty(),
        "expires_in_s": if ttl >= 0 { Some(ttl) } else { None },
        "ttl_s": s.session_ttl,
    })))
}

/// What clearing a session did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cleared {
    /// Forgotten, with this many experiments.
    Done { experiments: u64 },
    /// Not cleared: this many runs or experiment jobs are in flight.
    Busy { in_flight: u64 },
}

/// Forgets a bot's session and experiments, unless work is in flight.
pub(super) async fn clear(s: &State, bot: &str) -> Result<Cleared, QueueError> {
    let q = &s.queue;
    let (what, n): (String, u64) = eval(
        q,
        "clear session",
        &q.scripts().session_clear,
        &[q.prefix().to_string(), bot.to_string()],
    )
    .await?;
    Ok(if what == "busy" {
        Cleared::Busy { in_flight: n }
    } else {
        Cleared::Done { experiments: n }
    })
}

/// The bot's pipeline runs, newest first (of the most recent `limit` runs).
pub(super) async fn own_runs(
    s: &State,
    bot: &str,
    limit: usize,
) -> Result<Vec<crate::pipeline::RunInfo>, QueueError> {
    Ok(crate::pipeline::list_runs(&s.queue, limit)
        .await?
        .into_iter()
        .filter(|r| r.bot == bot)
        .collect())
}

/// Idle sessions expire after `BRIDGE_SESSION_TTL_SECS` seconds (default 3600).
pub(super) fn ttl_from_env() -> u64 {
    std::env::var("BRIDGE_SESSION_TTL_SECS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|v| *v > 0)
        .unwrap_or(3600)
}

/// How often a bot's session is refreshed by ordinary requests.
const TOUCH_EVERY: Duration = Duration::from_secs(2);

/// Per bot: when its session was last refreshed, and requests since.
#[derive(Default)]
pub(super) struct Activity {
    touched: Mutex<HashMap<String, (Instant, u64)>>,
}

/// Counts a request against the bot's session, refreshing it in the
/// background at most every [`TOUCH_EVERY`].
pub(super) fn note_request(state: &Arc<State>, bot: &str) {
    let due = {
        let mut t = state.activity.touched.lock().unwrap();
        let now = Instant::now();
        let e = t
            .entry(bot.to_string())
            .or_insert((now - TOUCH_EVERY * 2, 0));
        e.1 += 1;
        if now.duration_since(e.0) >= TOUCH_EVERY {
            e.0 = now;
            Some(std::mem::take(&mut e.1))
        } else {
            None
        }
    };
    if let Some(n) = due {
        let (state, bot) = (state.clone(), bot.to_string());
        tokio::spawn(async move {
            if let Err(e) = touch(&state, &bot, n).await {
                tracing::warn!(%e, bot, "bridge: session refresh failed");
            }
        });
    }
}
