//! The fleet's state: `/health` (liveness for anyone; Redis and the schema
//! version only with the key), the live workers, the pipeline-run
//! semaphore (limit, holders, waiters), and the GPU trainer pods on Basilica
//! (`/fleet/pods`, `/fleet/spend`: what `synth-city fleet`'s leader last reported).
//!
//! Pods by hand, through `crate::fleet::desk` (the agents' pod tools' desk, so the same
//! rules): `GET /fleet/offerings`, `GET /fleet/balance`, `POST /fleet/pods` (a bot's pod is
//! its own and goes when it idles; the operator's is pinned; the budget rules apply to both
//! and a refusal is a 409 naming the rule), `DELETE /fleet/pods/{id}` and
//! `GET /fleet/pods/{id}/logs` (the caller's own pods; the operator's: any). Read-only keys
//! reach only the GETs (the router), and without `BASILICA_API_TOKEN` these answer 503.
//!
//! Nothing else here changes the fleet: workers register themselves (`engine::worker`) and
//! the semaphore is taken by runs.

use std::sync::Arc;

use agents::pods::{PodDesk, PodError};
use engine::principals::Role;
use serde::Deserialize;
use serde_json::{json, Value};
use warp::http::{HeaderMap, StatusCode};
use warp::Rejection;

use super::auth;
use super::error::{internal, reject};
use super::route::{header, ok, reply, Answer, Call};
use super::State;
use engine::semaphore::{RedisSemaphore, PIPELINE};

/// `GET /health`: `{"status": "ok"}` to anyone, the details with the key.
pub(super) async fn health(s: Arc<State>, headers: HeaderMap) -> Answer {
    let key = header(&headers, "x-api-key")?;
    if !auth::key_ok(s.cfg.api_key.as_deref(), key.as_deref()) {
        return Ok(ok(json!({"status": "ok"})));
    }
    let (redis, schema) = match s.queue.schema_version().await {
        Ok(v) => ("ok", Some(v)),
        Err(_) => ("unreachable", None),
    };
    Ok(ok(
        json!({"status": "ok", "redis": redis, "schema_version": schema,
               "expected_schema_version": engine::migrate::LATEST,
               "version": env!("CARGO_PKG_VERSION")}),
    ))
}

/// `GET /workers`.
pub(super) async fn workers(c: Call) -> Answer {
    let ws = engine::worker::list_workers(&c.state.queue)
        .await
        .map_err(internal)?;
    Ok(ok(json!({ "workers": ws })))
}

/// `GET /semaphore`.
pub(super) async fn semaphore(c: Call) -> Answer {
    let st = RedisSemaphore::new(c.state.queue.clone(), PIPELINE)
        .status()
        .await
        .map_err(internal)?;
    Ok(ok(serde_json::to_value(st).unwrap()))
}

/// `GET /fleet/pods`: the fleet leader's last report (pods, backlog, why it held back).
pub(super) async fn pods(c: Call) -> Answer {
    let (leader, status) = crate::fleet::read_status(&c.state.queue)
        .await
        .map_err(internal)?;
    Ok(ok(match status {
        Some(s) => json!({"leader": leader, "reported_by": s.leader, "at_ms": s.at_ms,
            "pods": s.pods, "rate_now": s.rate_now, "waiting": s.waiting,
            "in_flight": s.in_flight, "oldest_ms": s.oldest_ms, "wanted": s.wanted,
            "blocked": s.blocked}),
        None => json!({"leader": leader, "reported_by": null, "at_ms": null, "pods": [],
            "rate_now": 0.0, "waiting": 0, "in_flight": 0, "oldest_ms": 0, "wanted": 0,
            "blocked": ["no fleet leader has reported (is `synth-city fleet run` running?)"]}),
    }))
}

/// `GET /fleet/spend`: spend today and per pod, the budgets and what is left of today's.
pub(super) async fn spend(c: Call) -> Answer {
    let r = crate::fleet::read_spend(&c.state.queue)
        .await
        .map_err(internal)?;
    Ok(ok(serde_json::to_value(r).unwrap()))
}

/// The caller's desk; a 503 where Basilica is not configured.
fn desk(c: &Call) -> Result<crate::fleet::desk::FleetDesk, Rejection> {
    match crate::cli::fleet::fleet_from_env(c.state.queue.clone()) {
        Ok(Some(f)) => Ok(crate::fleet::desk::FleetDesk::for_caller(
            f,
            &c.bot,
            c.role == Role::Operator,
        )),
        Ok(None) => Err(reject(
            StatusCode::SERVICE_UNAVAILABLE,
            "Basilica is not configured on this bridge: the operator sets BASILICA_API_TOKEN \
             (and the fleet's BASILICA_* settings) in its environment",
        )),
        Err(e) => Err(reject(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the fleet's settings on this bridge are not usable: {e:#}"),
        )),
    }
}

/// A pod call's refusal as HTTP: a rule 409, not yours 403, unknown 404, bad 400, the
/// backends 503.
fn refused(e: PodError) -> Rejection {
    let status = match e {
        PodError::Refused(_) => StatusCode::CONFLICT,
        PodError::Forbidden(_) => StatusCode::FORBIDDEN,
        PodError::NotFound(_) => StatusCode::NOT_FOUND,
        PodError::Invalid(_) => StatusCode::BAD_REQUEST,
        PodError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    reject(status, e.to_string())
}

/// `GET /fleet/offerings`: the GPU offerings with their prices and whether the rules allow each.
pub(super) async fn offerings(c: Call) -> Answer {
    let o = desk(&c)?.offerings().await.map_err(refused)?;
    Ok(ok(json!({ "offerings": o })))
}

/// `GET /fleet/balance`: the balance, the fleet's $/h now, spend today and the budgets.
pub(super) async fn balance(c: Call) -> Answer {
    let b = desk(&c)?.budget().await.map_err(refused)?;
    Ok(ok(serde_json::to_value(b).unwrap()))
}

/// `POST /fleet/pods`'s body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RentBody {
    pub gpu_type: String,
}

impl RentBody {
    pub fn schema() -> Value {
        json!({"type": "object", "required": ["gpu_type"], "additionalProperties": false,
            "properties": {"gpu_type": {"type": "string", "description": "A4000, H100, ... (GET /fleet/offerings)"}}})
    }
}

/// `POST /fleet/pods`: rent one pod within the rules; 201 with the pod.
pub(super) async fn rent(c: Call) -> Answer {
    let b: RentBody = c.json()?;
    let pod = desk(&c)?.rent(&b.gpu_type).await.map_err(refused)?;
    Ok(reply(StatusCode::CREATED, json!({ "pod": pod })))
}

/// `DELETE /fleet/pods/{id}`: delete one of the caller's pods (the operator: any).
pub(super) async fn release(c: Call) -> Answer {
    let id = c.param("id")?.to_string();
    desk(&c)?.delete(&id).await.map_err(refused)?;
    Ok(ok(json!({ "deleted": id })))
}

/// `GET /fleet/pods/{id}/logs?tail=N`: the last lines of one of the caller's pods' logs.
pub(super) async fn logs(c: Call) -> Answer {
    let id = c.param("id")?.to_string();
    let tail = match c.query.get("tail") {
        None => 100,
        Some(t) => t.parse::<u32>().ok().filter(|n| *n >= 1).ok_or_else(|| {
            reject(
                StatusCode::BAD_REQUEST,
                format!(
                    "tail={t}: give a number of lines from 1 to {}",
                    agents::pods::MAX_LOG_LINES
                ),
            )
        })?,
    };
    let logs = desk(&c)?.logs(&id, tail).await.map_err(refused)?;
    Ok(ok(json!({ "name": id, "logs": logs })))
}
