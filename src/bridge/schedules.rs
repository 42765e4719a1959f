//! Cron schedules over HTTP: list, add or replace (`POST /schedules`, 201
//! with the next fire time), remove. Schedules belong to no bot: they carry
//! no bot id, and every authenticated caller sees and changes the same list.
//!
//! A bot may schedule only the job types it may enqueue (`jobs::bots_may_enqueue`, 403
//! otherwise). Cron parsing, firing and storage are `engine::scheduler`'s; this module
//! only maps its answers to statuses (a bad schedule is a 422).

use serde_json::{json, Value};
use warp::http::StatusCode;

use super::error::{internal, reject};
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

/// `GET /schedules`.
pub(super) async fn list(c: Call) -> Answer {
    let ls = scheduler::list(&c.state.queue).await.map_err(internal)?;
    Ok(ok(json!({ "schedules": ls })))
}

/// `POST /schedules`.
pub(super) async fn add(c: Call) -> Answer {
    let sch: Schedule = c.json()?;
    // a schedule's fires enqueue its job type: the same rule as `POST /jobs`
    super::jobs::bots_may_enqueue(&c.state.queue, "job_type", &sch.job_type)?;
    match scheduler::add(&c.state.queue, &sch).await {
        Ok(next) => Ok(reply(
            StatusCode::CREATED,
            json!({"name": sch.name, "next_fire_ms": next}),
        )),
        Err(e) if e.is_transient() => Err(internal(e)),
        Err(e) => Err(reject(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())),
    }
}

/// `DELETE /schedules/{name}`.
pub(super) async fn remove(c: Call) -> Answer {
    let name = c.param("name")?;
    if scheduler::remove(&c.state.queue, name)
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
