//! Cron schedules over HTTP: list, add or replace (`POST /schedules`, 201
//! with the next fire time), remove. Schedules belong to no bot: they carry
//! no bot id, and every authenticated caller sees and changes the same list.
//!
//! A bot may schedule only the job types it may enqueue (`jobs::bots_may_enqueue`, 403
//! otherwise). A `run` schedule's runs are the caller's (`jobs::run_as_caller`: its payload's
//! `bot_id` is set to the caller; naming another bot is a 403), and a `run` schedule whose
//! runs are another bot's can be neither replaced nor removed by this bot (403 naming
//! `name`); the check reads the schedule before the change, so two bots racing on one name
//! can still both pass. Cron parsing, firing and storage are `engine::scheduler`'s; this module
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

/// Refuses (403 naming `name`) when the schedule `name` exists, starts runs, and its runs are
/// another bot's than `bot`.
async fn not_anothers_runs(c: &Call, name: &str) -> Result<(), warp::Rejection> {
    let ls = scheduler::list(&c.state.queue).await.map_err(internal)?;
    let Some(existing) = ls.iter().find(|s| s.schedule.name == name) else {
        return Ok(());
    };
    let s = &existing.schedule;
    let owner = s.payload["bot_id"].as_str().unwrap_or("default");
    if super::jobs::starts_run(&s.job_type) && owner != c.bot {
        return Err(reject(
            StatusCode::FORBIDDEN,
            format!("`name`: schedule {name:?} starts another bot's runs; only that bot may replace or remove it"),
        ));
    }
    Ok(())
}

/// `POST /schedules`.
pub(super) async fn add(c: Call) -> Answer {
    let mut sch: Schedule = c.json()?;
    // a schedule's fires enqueue its job type: the same rule as `POST /jobs`
    super::jobs::bots_may_enqueue(&c.state.queue, "job_type", &sch.job_type)?;
    super::jobs::run_as_caller(&sch.job_type, &mut sch.payload, "payload.bot_id", &c.bot)?;
    not_anothers_runs(&c, &sch.name).await?;
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
    not_anothers_runs(&c, name).await?;
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
