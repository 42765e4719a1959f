//! Cron schedules over HTTP: list, add or replace (`POST /schedules`, 201
//! with the next fire time), remove. A bot's schedules are its own: `POST` sets the
//! schedule's owner to the caller, names are per owner (two bots may both have a
//! `nightly`; the scheduler stores them apart, `engine::scheduler::Schedule::key`), and a bot
//! lists, replaces and removes only its own; the operator's schedules (the CLI's, no owner)
//! are not seen by bots.
//!
//! A bot may schedule only the job types it may enqueue (`jobs::may_enqueue`, 403
//! otherwise): the same rule as `POST /jobs`. A `run` schedule's runs are the caller's
//! (`jobs::run_as_caller`: its payload's `bot_id` is set to the caller; naming another bot is
//! a 403). Cron parsing, firing and storage are `engine::scheduler`'s; this module only maps
//! its answers to statuses (a bad schedule is a 422).

use serde_json::{json, Value};
use warp::http::StatusCode;

use super::error::{internal, refused, reject};
use super::route::{ok, reply, Answer, Call};
use engine::scheduler::{self, Schedule};

/// The JSON schema of `POST /schedules`'s body ([`Schedule`]).
pub(super) fn schema() -> Value {
    let int = json!({"type": "integer", "minimum": 0});
    json!({"type": "object", "required": ["name", "cron", "job_type"],
        "properties": {"name": {"type": "string"}, "cron": {"type": "string"},
        "job_type": {"type": "string"}, "payload": {"type": "object"},
        "max_attempts": int, "timeout_ms": int}})
}

/// `GET /schedules`: the caller's.
pub(super) async fn list(c: Call) -> Answer {
    let mut ls = scheduler::list(&c.state.queue).await.map_err(internal)?;
    ls.retain(|s| s.schedule.owner.as_deref() == Some(c.bot.as_str()));
    Ok(ok(json!({ "schedules": ls })))
}

/// `POST /schedules`.
pub(super) async fn add(c: Call) -> Answer {
    let mut sch: Schedule = c.json()?;
    // a schedule's fires enqueue its job type: the same rule as `POST /jobs`
    super::jobs::may_enqueue(&c.state.queue, c.role, "job_type", &sch.job_type)?;
    super::jobs::run_as_caller(&sch.job_type, &mut sch.payload, "payload.bot_id", &c.bot)?;
    if sch.owner.is_some() {
        return Err(reject(
            StatusCode::BAD_REQUEST,
            "field `owner` is not taken: a schedule is the caller's (its key's bot); leave it out",
        ));
    }
    sch.owner = Some(c.bot.clone());
    match scheduler::add(&c.state.queue, &sch).await {
        Ok(next) => Ok(reply(
            StatusCode::CREATED,
            json!({"name": sch.name, "next_fire_ms": next}),
        )),
        Err(e) => Err(refused(e.is_transient(), e)),
    }
}

/// `DELETE /schedules/{name}`.
pub(super) async fn remove(c: Call) -> Answer {
    let name = c.param("name")?;
    let key = format!("{}:{name}", c.bot);
    if scheduler::remove(&c.state.queue, &key)
        .await
        .map_err(internal)?
    {
        Ok(ok(json!({"removed": name})))
    } else {
        Err(reject(
            StatusCode::NOT_FOUND,
            format!("no schedule named {name:?}"),
        ))
    }
}
