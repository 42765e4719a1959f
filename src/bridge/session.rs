//! Bot sessions: each bot's state in Redis under its own namespace, and the
//! session routes (`/bots/sessions`, `/bots/session/{id}`, `/session/summary`,
//! `/session/clear`, `/pipeline/status`).
//!
//! | key | type | holds |
//! |---|---|---|
//! | `bot:<bot>:session` | hash | `created_at`, `last_active` (Redis ms), `requests` |
//! | `bot:<bot>:experiments` | hash | experiment id -> [`Experiment`] JSON |
//! | `bot:<bot>:active` | set | `job:<id>` / `run:<id>` the bot has in flight |
//! | `bots` | zset | bot -> last active ms (sessions are found here) |
//!
//! Every change is one Lua script (`src/lua/session_*.lua`, with
//! `session.lua`'s helpers), which also prunes finished work
//! from the active set and then either makes the session persistent (work in
//! flight) or sets its idle TTL (default 3600 s, `BRIDGE_SESSION_TTL_SECS`).
//! A bot only ever reads and clears its own session: another bot's id answers
//! 404, exactly like a session that does not exist.

use std::collections::BTreeMap;
use std::sync::Arc;

use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use warp::http::StatusCode;
use warp::Rejection;

use super::{internal, reject, reply, Caller, State};
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
    script: &redis::Script,
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

fn own_id(c: &Caller, id: &str) -> Result<(), Rejection> {
    if id == c.bot {
        Ok(())
    } else {
        Err(reject(
            StatusCode::NOT_FOUND,
            format!("no session {id:?} (a bot sees only its own session)"),
        ))
    }
}

/// `GET /bots/sessions`: the caller's own session (bots do not see each other).
pub(super) async fn list(c: Caller, s: Arc<State>) -> Result<warp::reply::Response, Rejection> {
    touch(&s, &c.bot, 0).await.map_err(internal)?;
    let mine = session_json(&s, &c.bot).await.map_err(internal)?;
    let sessions: Vec<Value> = mine.into_iter().collect();
    let n = sessions.len();
    Ok(reply(
        StatusCode::OK,
        json!({"sessions": sessions, "total": n}),
    ))
}

/// `GET /bots/session/{id}`.
pub(super) async fn show(
    id: String,
    c: Caller,
    s: Arc<State>,
) -> Result<warp::reply::Response, Rejection> {
    own_id(&c, &id)?;
    match session_json(&s, &id).await.map_err(internal)? {
        Some(v) => Ok(reply(StatusCode::OK, v)),
        None => Err(reject(StatusCode::NOT_FOUND, format!("no session {id:?}"))),
    }
}

async fn clear_session(s: &State, bot: &str) -> Result<warp::reply::Response, Rejection> {
    let q = &s.queue;
    let (what, n): (String, u64) = eval(
        q,
        "clear session",
        &q.scripts().session_clear,
        &[q.prefix().to_string(), bot.to_string()],
    )
    .await
    .map_err(internal)?;
    if what == "busy" {
        return Err(reject(
            StatusCode::CONFLICT,
            format!("bot {bot:?} has {n} run(s) or experiment(s) in flight; cancel them or wait"),
        ));
    }
    Ok(reply(
        StatusCode::OK,
        json!({"bot_id": bot, "cleared": true, "experiments_removed": n}),
    ))
}

/// `DELETE /bots/session/{id}`: 409 while work is in flight.
pub(super) async fn delete(
    id: String,
    c: Caller,
    s: Arc<State>,
) -> Result<warp::reply::Response, Rejection> {
    own_id(&c, &id)?;
    if session_json(&s, &id).await.map_err(internal)?.is_none() {
        return Err(reject(StatusCode::NOT_FOUND, format!("no session {id:?}")));
    }
    clear_session(&s, &id).await
}

/// `POST /session/clear`: forget the caller's experiments and session.
pub(super) async fn clear(c: Caller, s: Arc<State>) -> Result<warp::reply::Response, Rejection> {
    clear_session(&s, &c.bot).await
}

/// `GET /session/summary`: the session, its experiments ranked, runs.
pub(super) async fn summary(c: Caller, s: Arc<State>) -> Result<warp::reply::Response, Rejection> {
    touch(&s, &c.bot, 0).await.map_err(internal)?;
    let session = session_json(&s, &c.bot).await.map_err(internal)?;
    let exps = experiments(&s, &c.bot).await.map_err(internal)?;
    let mut by_state: BTreeMap<String, usize> = BTreeMap::new();
    for e in &exps {
        *by_state.entry(e.state.clone()).or_default() += 1;
    }
    let best = exps
        .iter()
        .filter(|e| e.crps.is_some())
        .min_by(|a, b| a.crps.unwrap().total_cmp(&b.crps.unwrap()))
        .map(|e| json!({"id": e.id, "name": e.name, "crps": e.crps, "crps_ratio": e.crps_ratio}));
    let runs = super::runs::own_runs(&s, &c.bot, 50)
        .await
        .map_err(internal)?;
    let list: Vec<Value> = exps
        .iter()
        .map(|e| {
            json!({"id": e.id, "name": e.name, "state": e.state, "crps": e.crps,
                   "crps_ratio": e.crps_ratio, "job_id": e.job_id})
        })
        .collect();
    Ok(reply(
        StatusCode::OK,
        json!({
            "bot_id": c.bot,
            "session": session,
            "experiments": {"total": exps.len(), "by_state": by_state, "list": list},
            "best": best,
            "runs": {"total": runs.len(),
                     "running": runs.iter().filter(|r| !r.is_finished()).count()},
        }),
    ))
}

/// `GET /pipeline/status`: the caller's latest pipeline run.
pub(super) async fn pipeline_status(
    c: Caller,
    s: Arc<State>,
) -> Result<warp::reply::Response, Rejection> {
    let runs = super::runs::own_runs(&s, &c.bot, 200)
        .await
        .map_err(internal)?;
    let running = runs.iter().filter(|r| !r.is_finished()).count();
    let latest = runs.first();
    Ok(reply(
        StatusCode::OK,
        json!({
            "bot_id": c.bot,
            "running": running > 0,
            "runs_in_flight": running,
            "status": latest.map(|r| r.state.clone()).unwrap_or_else(|| "idle".into()),
            "current_stage": latest.filter(|r| !r.is_finished()).map(|r| r.stage.clone()),
            "latest": latest,
        }),
    ))
}
