//! Pipeline runs over HTTP: start one (`POST /pipeline/run`), the caller's
//! latest (`/pipeline/status`), list, read and cancel the caller's own runs
//! (`latest` in place of an id is the caller's newest run).
//! Another bot's run answers 404, exactly like one that does not exist.
//!
//! A run started here only creates the run and enqueues its first stage: the
//! worker fleet carries it out, under the `pipeline` semaphore. This module
//! does not validate budgets itself (`crate::pipeline::apply_request` does)
//! and keeps no state (`session.rs` marks the run as the bot's work in flight).

use serde_json::{json, Map, Value};
use warp::http::StatusCode;
use warp::Rejection;

use super::error::{internal, refused, reject};
use super::route::{ok, reply, Answer, Call};
use super::session;
use super::State;
use crate::pipeline::{self, RunOptions};
use engine::semaphore::{RedisSemaphore, PIPELINE};
use jobs::pipeline::RunRequest;

/// `POST /pipeline/run`: a [`RunRequest`] (every field optional; the
/// directories are those of the workers that carry the run out) and the bridge's
/// own `wait`.
#[derive(Debug)]
pub(super) struct StartBody {
    run: RunRequest,
    /// false: answer 429 instead of queueing when no permit is free.
    wait: Option<bool>,
}

impl StartBody {
    /// The body's `wait`, and the rest as a `RunRequest` (which refuses
    /// unknown fields by name).
    fn parse(c: &Call) -> Result<Self, Rejection> {
        Self::from_fields(c.json()?)
    }

    fn from_fields(mut fields: Map<String, Value>) -> Result<Self, Rejection> {
        let bad = |what: &str, e: serde_json::Error| {
            reject(StatusCode::BAD_REQUEST, format!("request body: {what}{e}"))
        };
        let wait = fields
            .remove("wait")
            .map(serde_json::from_value::<Option<bool>>)
            .transpose()
            .map_err(|e| bad("field `wait`: ", e))?
            .flatten();
        let run = serde_json::from_value(Value::Object(fields)).map_err(|e| bad("", e))?;
        Ok(StartBody { run, wait })
    }

    /// The request body's JSON schema.
    pub fn schema() -> Value {
        let int = json!({"type": "integer", "minimum": 0});
        json!({"type": "object", "properties": {
            "max_experiments": int, "epochs": int, "rounds": int, "steps_per_epoch": int,
            "d_model": int, "seq_len": int, "batch_size": int, "n_paths": int,
            "eval_windows": int, "eval_paths": int,
            "assets": {"type": "array", "items": {"type": "string"}},
            "timeframe": {"type": "string"}, "retries": int, "publish": {"type": "boolean"},
            "seed": int, "wait": {"type": "boolean"},
            "agents": {"type": "string", "enum": ["auto", "builtin", "llm"]},
            "temperature": {"type": "number", "minimum": 0, "maximum": 1},
            "channel": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
            "message": {"type": "string", "minLength": 1, "maxLength": 4000},
            "dataset": {"type": "string", "pattern": "^(latest|ds-[0-9a-f]{16})$"}}})
    }
}

/// `POST /pipeline/run`.
pub(super) async fn start(c: Call) -> Answer {
    let b = StartBody::parse(&c)?;
    let s = &c.state;
    let mut o = RunOptions::default();
    pipeline::apply_request(&mut o, &b.run)
        .map_err(|e| reject(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
    if b.wait == Some(false) {
        let st = RedisSemaphore::new(s.queue.clone(), PIPELINE)
            .status()
            .await
            .map_err(internal)?;
        if st.holders.len() as u32 >= st.limit || !st.waiters.is_empty() {
            return Err(reject(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "all {} pipeline permits are taken ({} runs waiting); retry later or send \"wait\": true",
                    st.limit,
                    st.waiters.len()
                ),
            ));
        }
    }
    let id = pipeline::create_run(&s.queue, o, &c.bot)
        .await
        .map_err(|e| refused(e.is_transient(), e))?;
    session::add_active(s, &c.bot, &format!("run:{id}"))
        .await
        .map_err(internal)?;
    // Where the run stands: permits taken and runs already waiting for one.
    let sem = RedisSemaphore::new(s.queue.clone(), PIPELINE)
        .status()
        .await
        .map_err(internal)?;
    let full = sem.holders.len() as u32 >= sem.limit;
    Ok(reply(
        StatusCode::ACCEPTED,
        json!({"run_id": id, "state": "queued", "bot_id": c.bot,
               "queue_position": if full { sem.waiters.len() + 1 } else { 0 },
               "permits": {"limit": sem.limit, "taken": sem.holders.len(),
                           "waiting": sem.waiters.len()}}),
    ))
}

/// The run if it exists and belongs to `bot`; `latest` is the bot's newest run.
pub(super) async fn own(s: &State, bot: &str, id: &str) -> Result<pipeline::RunInfo, Rejection> {
    let id = &pipeline::resolve_run_id(&s.queue, id, Some(bot))
        .await
        .map_err(|e| match e {
            pipeline::RunIdError::Queue(e) => internal(e),
            e => reject(StatusCode::NOT_FOUND, e.to_string()),
        })?;
    match pipeline::get_run(&s.queue, id).await.map_err(internal)? {
        Some(r) if r.bot == bot => Ok(r),
        _ => Err(reject(StatusCode::NOT_FOUND, format!("no run {id:?}"))),
    }
}

/// `GET /runs`.
pub(super) async fn list(c: Call) -> Answer {
    let runs = session::own_runs(&c.state, &c.bot, 200)
        .await
        .map_err(internal)?;
    Ok(ok(json!({ "runs": runs })))
}

/// `GET /runs/{id}` and `GET /history/run/{id}`.
pub(super) async fn show(c: Call) -> Answer {
    let r = own(&c.state, &c.bot, c.param("id")?).await?;
    Ok(ok(serde_json::to_value(r).expect("runs serialise")))
}

/// `POST /runs/{id}/cancel`: 409 if the run already ended.
pub(super) async fn cancel(c: Call) -> Answer {
    let run = own(&c.state, &c.bot, c.param("id")?).await?;
    let id = run.id.as_str();
    let before = pipeline::cancel_run(&c.state.queue, id)
        .await
        .map_err(internal)?;
    match before.as_str() {
        "succeeded" | "failed" | "cancelled" => Err(reject(
            StatusCode::CONFLICT,
            format!("run {id} already {before}"),
        )),
        _ => Ok(ok(json!({"run_id": id, "state": "cancelled"}))),
    }
}

/// `GET /pipeline/status`: the caller's latest pipeline run.
pub(super) async fn status(c: Call) -> Answer {
    let runs = session::own_runs(&c.state, &c.bot, 200)
        .await
        .map_err(internal)?;
    let running = runs.iter().filter(|r| !r.is_finished()).count();
    let latest = runs.first();
    Ok(ok(json!({
        "bot_id": c.bot,
        "running": running > 0,
        "runs_in_flight": running,
        "status": latest.map(|r| r.state.clone()).unwrap_or_else(|| "idle".into()),
        "current_stage": latest.filter(|r| !r.is_finished()).map(|r| r.stage.clone()),
        "latest": latest,
    })))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::error::ApiError;
    use super::StartBody;

    fn parse(v: serde_json::Value) -> Result<StartBody, (u16, String)> {
        StartBody::from_fields(v.as_object().unwrap().clone()).map_err(|r| {
            let e = r.find::<ApiError>().expect("an ApiError");
            (e.status.as_u16(), e.message.clone())
        })
    }

    #[test]
    fn the_body_is_a_run_request_and_wait() {
        let b = parse(json!({"batch_size": 8, "n_paths": 50, "epochs": 1, "wait": false})).unwrap();
        assert_eq!(
            (b.run.batch_size, b.run.n_paths, b.run.epochs, b.wait),
            (Some(8), Some(50), Some(1), Some(false))
        );
        // ... and reach the run's budget.
        let mut o = crate::pipeline::RunOptions::default();
        let _ = crate::pipeline::apply_request(&mut o, &b.run); // the data dir may be absent
        assert_eq!((o.budget.batch_size, o.budget.n_paths), (8, 50));
        assert_eq!(parse(json!({"wait": null})).unwrap().wait, None);
        let (st, e) = parse(json!({"colour": 1})).unwrap_err();
        assert_eq!(st, 400);
        assert!(e.contains("unknown field `colour`"), "{e}");
        let (st, e) = parse(json!({"wait": "no"})).unwrap_err();
        assert_eq!(st, 400);
        assert!(e.contains("field `wait`"), "{e}");
    }
}
