//! The session routes: `/bots/sessions`, `/bots/session/{id}` (read,
//! delete), `/session/summary` and `/session/clear`. A bot only ever reads
//! and clears its own session: another bot's id answers 404, exactly like a
//! session that does not exist.
//!
//! The records themselves are `session.rs`'s; this module keeps nothing and
//! runs no Redis command of its own.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use warp::http::StatusCode;
use warp::Rejection;

use super::error::{internal, reject};
use super::route::{ok, Answer, Call};
use super::session::{self, Cleared};
use super::State;

/// The session `{id}` names, if it is the caller's and exists; else 404,
/// the same for another bot's session as for one that does not exist.
async fn own_session(c: &Call) -> Result<(&str, Value), Rejection> {
    let id = c.param("id")?;
    if id != c.bot {
        return Err(reject(
            StatusCode::NOT_FOUND,
            format!("no session {id:?} (a bot sees only its own session)"),
        ));
    }
    match session::session_json(&c.state, id)
        .await
        .map_err(internal)?
    {
        Some(v) => Ok((id, v)),
        None => Err(reject(StatusCode::NOT_FOUND, format!("no session {id:?}"))),
    }
}

/// `GET /bots/sessions`: the caller's own session (bots do not see each other).
pub(super) async fn list(c: Call) -> Answer {
    session::touch(&c.state, &c.bot, 0)
        .await
        .map_err(internal)?;
    let mine = session::session_json(&c.state, &c.bot)
        .await
        .map_err(internal)?;
    let sessions: Vec<Value> = mine.into_iter().collect();
    let n = sessions.len();
    Ok(ok(json!({"sessions": sessions, "total": n})))
}

/// `GET /bots/session/{id}`.
pub(super) async fn show(c: Call) -> Answer {
    let (_, v) = own_session(&c).await?;
    Ok(ok(v))
}

async fn clear_session(s: &State, bot: &str) -> Answer {
    match session::clear(s, bot).await.map_err(internal)? {
        Cleared::Busy { in_flight } => Err(reject(
            StatusCode::CONFLICT,
            format!(
                "bot {bot:?} has {in_flight} run(s) or experiment(s) in flight; cancel them or wait"
            ),
        )),
        Cleared::Done { experiments } => Ok(ok(
            json!({"bot_id": bot, "cleared": true, "experiments_removed": experiments}),
        )),
    }
}

/// `DELETE /bots/session/{id}`: 409 while work is in flight.
pub(super) async fn delete(c: Call) -> Answer {
    let (id, _) = own_session(&c).await?;
    clear_session(&c.state, id).await
}

/// `POST /session/clear`: forget the caller's experiments and session.
pub(super) async fn clear(c: Call) -> Answer {
    clear_session(&c.state, &c.bot).await
}

/// `GET /session/summary`: the session, its experiments ranked, runs.
pub(super) async fn summary(c: Call) -> Answer {
    let (s, bot) = (&c.state, c.bot.as_str());
    session::touch(s, bot, 0).await.map_err(internal)?;
    let session = session::session_json(s, bot).await.map_err(internal)?;
    let exps = session::experiments(s, bot).await.map_err(internal)?;
    let mut by_state: BTreeMap<String, usize> = BTreeMap::new();
    for e in &exps {
        *by_state.entry(e.state.clone()).or_default() += 1;
    }
    let best = exps
        .iter()
        .filter(|e| e.crps.is_some())
        .min_by(|a, b| a.crps.unwrap().total_cmp(&b.crps.unwrap()))
        .map(|e| json!({"id": e.id, "name": e.name, "crps": e.crps, "crps_ratio": e.crps_ratio}));
    let runs = session::own_runs(s, bot, 50).await.map_err(internal)?;
    let list: Vec<Value> = exps
        .iter()
        .map(|e| {
            json!({"id": e.id, "name": e.name, "state": e.state, "crps": e.crps,
                   "crps_ratio": e.crps_ratio, "job_id": e.job_id})
        })
        .collect();
    Ok(ok(json!({
        "bot_id": bot,
        "session": session,
        "experiments": {"total": exps.len(), "by_state": by_state, "list": list},
        "best": best,
        "runs": {"total": runs.len(),
                 "running": runs.iter().filter(|r| !r.is_finished()).count()},
    })))
}
