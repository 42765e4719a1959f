//! The fleet's state: `/health` (liveness for anyone; Redis and the schema
//! version only with the key), the live workers and the pipeline-run
//! semaphore (limit, holders, waiters).
//!
//! Read-only: nothing here changes the fleet; workers register themselves
//! (`engine::worker`) and the semaphore is taken by runs.

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
