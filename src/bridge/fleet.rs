//! The fleet's state: `/health` (liveness for anyone; Redis and the schema
//! version only with the key), the live workers, the pipeline-run
//! semaphore (limit, holders, waiters), and the GPU trainer pods on Basilica
//! (`/fleet/pods`, `/fleet/spend`: what `synth-city fleet`'s leader last reported).
//!
//! Read-only: nothing here changes the fleet; workers register themselves
//! (`engine::worker`), the semaphore is taken by runs, and pods are rented by
//! `synth-city fleet` (a bot cannot rent one here).

use std::sync::Arc;

use serde_json::json;
use warp::http::HeaderMap;

use super::auth;
use super::error::internal;
use super::route::{header, ok, Answer, Call};
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
