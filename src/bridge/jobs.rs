//! Jobs over HTTP: enqueue (`POST /jobs`), a job's status record, cancel,
//! and the queue's per-type counts (`/queue/stats`). A bot sees and cancels
//! only its own jobs; another bot's job answers 404, exactly like one that
//! does not exist. Idempotency keys are per bot.
//!
//! Bots may enqueue only the job types that open themselves to bots
//! (`JobSpec::BOTS`, asked of the queue's catalog; the operator any, [`may_enqueue`]); this module does not
//! validate payloads itself (the queue's enqueue does, against the catalog).
//! A `run` job starts a run that belongs to the caller ([`run_as_caller`]): its
//! payload's `bot_id` is set to the caller, and one naming another bot is refused.

use serde::Deserialize;
use serde_json::{json, Value};
use warp::http::StatusCode;
use warp::Rejection;

use super::error::{internal, refused, reject};
use super::route::{ok, reply, Answer, Call};
use engine::principals::Role;
use engine::queue::{CancelOutcome, EnqueueRequest, JobStatus};

/// `POST /jobs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EnqueueBody {
    #[serde(rename = "type")]
    job_type: String,
    #[serde(default = "empty_object")]
    payload: Value,
    #[serde(default)]
    idempotency_key: Option<String>,
    #[serde(default)]
    delay_secs: Option<f64>,
    #[serde(default)]
    max_attempts: Option<u32>,
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default)]
    run_id: Option<String>,
}

fn empty_object() -> Value {
    json!({})
}

impl EnqueueBody {
    /// The request body's JSON schema.
    pub fn schema() -> Value {
        let int = json!({"type": "integer", "minimum": 0});
        json!({"type": "object", "required": ["type"], "properties": {
            "type": {"type": "string"}, "payload": {"type": "object"},
            "idempotency_key": {"type": "string"}, "delay_secs": {"type": "number"},
            "max_attempts": int, "timeout_ms": int, "run_id": {"type": "string"}}})
    }
}

/// The one rule for every path by which a caller's request leads to a job (`POST /jobs`, and
/// `POST /schedules`, whose fires enqueue): the operator may enqueue any type; bots may
/// enqueue only the types that open themselves to bots (`JobSpec::BOTS`). Pipeline stages name a run (possibly another bot's);
/// `experiment` would not be the bot's (its own route records it in its session), and the
/// shadow scorer's jobs and `data-download` spend the fleet's time and write the shared store
/// and bars at the operator's say; a new type is closed by default. `run` is open, as the
/// caller's own ([`run_as_caller`]). `field` names the body field that holds the type. An unknown
/// type passes here and is refused (400) by the queue's own check.
pub(super) fn may_enqueue(
    queue: &engine::Queue,
    role: Role,
    field: &str,
    job_type: &str,
) -> Result<(), warp::Rejection> {
    if role == Role::Operator {
        return Ok(());
    }
    if let Ok(t) = queue.catalog().find(job_type) {
        if let ::jobs::BotAccess::Refused(instead) = t.bots {
            return Err(reject(
                StatusCode::FORBIDDEN,
                format!(
                    "field `{field}`: `{}` jobs are not taken from bots; {instead}",
                    t.name
                ),
            ));
        }
    }
    Ok(())
}

/// Whether `job_type` is `run`, the type that starts a pipeline run.
pub(super) fn starts_run(job_type: &str) -> bool {
    job_type == <::jobs::pipeline::StartRun as ::jobs::JobSpec>::TYPE
}

/// A `run` job a bot asks for starts a run that is the bot's own: the payload's `bot_id` is
/// set to `bot` when absent (or null), kept when it is `bot`, and refused (403 naming `field`)
/// when it names another bot, so no bot starts a run as another. Other types and payloads
/// that are not objects pass unchanged (the queue's own check refuses the latter).
pub(super) fn run_as_caller(
    job_type: &str,
    payload: &mut Value,
    field: &str,
    bot: &str,
) -> Result<(), Rejection> {
    let Some(p) = payload.as_object_mut().filter(|_| starts_run(job_type)) else {
        return Ok(());
    };
    match p.get("bot_id") {
        None | Some(Value::Null) => {
            p.insert("bot_id".into(), Value::String(bot.to_string()));
            Ok(())
        }
        Some(Value::String(b)) if b == bot => Ok(()),
        Some(other) => Err(reject(
            StatusCode::FORBIDDEN,
            format!(
                "field `{field}`: a bot starts runs only as itself ({bot:?}), not as {other}; \
                 leave the field out"
            ),
        )),
    }
}

/// `POST /jobs`: 201 created, 200 for a repeated idempotency key. A `run` job answers the id
/// of the run it starts (`run_id`), the caller's.
pub(super) async fn enqueue(c: Call) -> Answer {
    let mut b: EnqueueBody = c.json()?;
    let s = &c.state;
    may_enqueue(&s.queue, c.role, "type", &b.job_type)?;
    run_as_caller(&b.job_type, &mut b.payload, "payload.bot_id", &c.bot)?;
    let starts_run = starts_run(&b.job_type);
    let delay_ms = match b.delay_secs {
        Some(d) if !(0.0..=1e9).contains(&d) => {
            return Err(reject(
                StatusCode::BAD_REQUEST,
                format!("field `delay_secs` must be within 0..=1e9, got {d}"),
            ))
        }
        Some(d) => (d * 1000.0) as u64,
        None => 0,
    };
    let req = EnqueueRequest {
        job_type: b.job_type,
        payload: b.payload,
        idempotency_key: b.idempotency_key,
        delay_ms,
        max_attempts: b.max_attempts,
        timeout_ms: b.timeout_ms,
        run_id: b.run_id,
        bot_id: Some(c.bot.clone()),
        ..Default::default()
    };
    match s.queue.enqueue(req).await {
        Ok(e) => {
            let mut body = serde_json::to_value(&e).unwrap();
            if starts_run {
                // the session stays while the job that starts the run waits
                super::session::add_active(s, &c.bot, &format!("job:{}", e.id))
                    .await
                    .map_err(internal)?;
                body["run_id"] = crate::pipeline::run_id_for_job(&e.id).into();
            }
            Ok(reply(
                if e.created {
                    StatusCode::CREATED
                } else {
                    StatusCode::OK
                },
                body,
            ))
        }
        Err(e) => Err(refused(e.is_transient(), e)),
    }
}

/// The job's status if it exists and the caller may see it: a bot its own jobs only (a job
/// with no bot, e.g. the CLI's, is no bot's), the operator any.
async fn own_job(c: &Call, id: &str) -> Result<JobStatus, Rejection> {
    match c.state.queue.status(id).await.map_err(internal)? {
        Some(st) if c.role == Role::Operator || st.bot_id.as_deref() == Some(c.bot.as_str()) => {
            Ok(st)
        }
        _ => Err(reject(StatusCode::NOT_FOUND, format!("no job {id:?}"))),
    }
}

/// `GET /jobs/{id}`.
pub(super) async fn status(c: Call) -> Answer {
    let st = own_job(&c, c.param("id")?).await?;
    Ok(ok(serde_json::to_value(st).unwrap()))
}

/// `POST /jobs/{id}/cancel`: 200 cancelled, 202 cancelling (running), 409
/// already finished.
pub(super) async fn cancel(c: Call) -> Answer {
    let id = c.param("id")?;
    own_job(&c, id).await?;
    let out = c.state.queue.cancel(id).await.map_err(internal)?;
    let (status, outcome) = match out {
        CancelOutcome::Cancelled => (StatusCode::OK, "cancelled".to_string()),
        CancelOutcome::Cancelling => (StatusCode::ACCEPTED, "cancelling".to_string()),
        CancelOutcome::Missing => {
            return Err(reject(StatusCode::NOT_FOUND, format!("no job {id:?}")))
        }
        CancelOutcome::AlreadyFinished(st) => (StatusCode::CONFLICT, format!("already {st}")),
    };
    Ok(reply(status, json!({"id": id, "outcome": outcome})))
}

/// `GET /queue/stats`: per job type, waiting, in flight, delayed, completed,
/// failed, retried, dead.
pub(super) async fn stats(c: Call) -> Answer {
    let st = c.state.queue.stats().await.map_err(internal)?;
    Ok(ok(json!({ "types": st })))
}
