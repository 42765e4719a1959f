//! The OpenAPI document of the bridge, generated from the route table so the
//! two cannot drift apart (a test checks every listed route answers).

use serde_json::{json, Map, Value};

/// Every route: method, path (OpenAPI template), summary.
pub const ROUTES: &[(&str, &str, &str)] = &[
    ("get", "/health", "liveness; details only with a valid X-API-Key"),
    ("post", "/jobs", "enqueue a job: {type, payload, idempotency_key?, delay_secs?, max_attempts?, timeout_ms?, run_id?}"),
    ("get", "/jobs/{id}", "a job's status record (own bot only)"),
    ("post", "/jobs/{id}/cancel", "cancel a job (own bot only)"),
    ("get", "/queue/stats", "per job type: waiting, in flight, delayed, completed, failed, retried, dead"),
    ("get", "/workers", "live workers"),
    ("get", "/semaphore", "the pipeline-run semaphore: holders, waiters, limit"),
    ("get", "/schedules", "cron schedules"),
    ("post", "/schedules", "add or replace a schedule: {name, cron, job_type, payload}"),
    ("delete", "/schedules/{name}", "remove a schedule"),
    ("get", "/events", "server-sent job events for the caller's bot"),
    ("post", "/pipeline/run", "start a pipeline run (budget fields optional; \"wait\": false answers 429 when no permit is free)"),
    ("get", "/runs", "the caller's pipeline runs"),
    ("get", "/runs/{id}", "one run: state, stages, experiments, summary"),
    ("post", "/runs/{id}/cancel", "cancel a run"),
    ("get", "/openapi.json", "this document"),
];

/// The OpenAPI 3.0 document.
pub fn openapi() -> Value {
    let mut paths: Map<String, Value> = Map::new();
    for (method, path, summary) in ROUTES {
        let entry = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        let mut op = json!({
            "summary": summary,
            "responses": {"200": {"description": "OK"}, "4XX": {"description": "{\"error\": ...}"}},
        });
        let params: Vec<Value> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .chain(std::iter::once(json!({"name": "X-Bot-Id", "in": "header", "required": false,
                "schema": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"}})))
            .collect();
        op["parameters"] = Value::Array(params);
        if *method == "post" {
            op["requestBody"] = json!({"required": true,
                "content": {"application/json": {"schema": {"type": "object"}}}});
        }
        entry[*method] = op;
    }
    json!({
        "openapi": "3.0.3",
        "info": {"title": "synth-city bridge", "version": env!("CARGO_PKG_VERSION")},
        "components": {"securitySchemes": {"apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}}},
        "security": [{"apiKey": []}],
        "paths": paths,
    })
}
