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
    ("get", "/pipeline/status", "the caller's latest pipeline run: running, status, current stage"),
    ("get", "/bots/sessions", "the caller's session (bots never see each other's)"),
    ("get", "/bots/session/{id}", "one session (own bot only)"),
    ("delete", "/bots/session/{id}", "remove the caller's session; 409 while work is in flight"),
    ("get", "/session/summary", "the caller's session: experiments by state, the best, runs"),
    ("post", "/session/clear", "forget the caller's experiments and session; 409 while work is in flight"),
    ("post", "/experiment/create", "validate and store a spec: {blocks | preset, head?, d_model?, seq_len?, horizon?, n_paths?, lr?, epochs?, assets?, timeframe?, name?, ...}"),
    ("post", "/experiment/validate", "validate a spec: {experiment}; 200 with valid and every issue"),
    ("post", "/experiment/run", "run a stored experiment {id} or a spec {experiment}; 202 with the job id"),
    ("get", "/experiment/results/{id}", "one experiment of the caller: state, CRPS, the job's result"),
    ("get", "/experiment/compare", "the caller's scored experiments and run results, best CRPS first"),
    ("get", "/experiment/compare/all", "every bot's scored experiments, tagged bot_id, best CRPS first"),
    ("get", "/history/runs", "the caller's pipeline runs, newest first (?limit=50)"),
    ("get", "/history/run/{id}", "one pipeline run of the caller"),
    ("get", "/history/experiments", "the caller's experiments, best first (?limit=50)"),
    ("get", "/components/blocks", "backbone blocks with their parameters"),
    ("get", "/components/heads", "heads with their parameters"),
    ("get", "/components/presets", "known-good block and head combinations"),
    ("get", "/registry/files", "the components' source files"),
    ("get", "/registry/read", "one component source file (?path=blocks/lstm.rs)"),
    ("get", "/agents/list", "the LLM agents: model, tools, context keys"),
    ("get", "/agents/read", "one agent's configuration (?filename=planner)"),
    ("get", "/agents/tools", "every agent tool and the agents that use it"),
    ("get", "/agents/prompts/list", "the prompt templates"),
    ("get", "/agents/prompts/read", "one prompt template and its fragments (?filename=planner.md)"),
    ("get", "/market/price/{asset}", "the latest Pyth Hermes price of an SN50 asset"),
    ("get", "/market/history/{asset}", "bars from the data directory (?days=30&timeframe=5m)"),
    ("get", "/dashboard", "the live dashboard (HTML)"),
    ("get", "/dash/snapshot", "what the dashboard draws: queues, workers, semaphore, runs, leaderboard, CRPS over time"),
    ("get", "/dash/fan", "a 24 h GBM fan of simulated paths against realised prices (?asset=BTC&paths=200)"),
    ("get", "/openapi.json", "this document"),
];

/// Query parameters: path, name, JSON schema, required.
const QUERY: &[(&str, &str, &str, bool)] = &[
    (
        "/history/runs",
        "limit",
        r#"{"type":"integer","minimum":1,"maximum":1000}"#,
        false,
    ),
    (
        "/history/experiments",
        "limit",
        r#"{"type":"integer","minimum":1,"maximum":1000}"#,
        false,
    ),
    ("/registry/read", "path", r#"{"type":"string"}"#, true),
    ("/agents/read", "filename", r#"{"type":"string"}"#, true),
    (
        "/agents/prompts/read",
        "filename",
        r#"{"type":"string"}"#,
        true,
    ),
    (
        "/market/history/{asset}",
        "days",
        r#"{"type":"number","minimum":0,"exclusiveMinimum":true,"maximum":3650}"#,
        false,
    ),
    (
        "/market/history/{asset}",
        "timeframe",
        r#"{"type":"string","enum":["1m","5m"]}"#,
        false,
    ),
    ("/dash/fan", "asset", r#"{"type":"string"}"#, false),
    (
        "/dash/fan",
        "paths",
        r#"{"type":"integer","minimum":2,"maximum":2000}"#,
        false,
    ),
];

/// The request body schema of a POST route.
fn body_schema(path: &str) -> Value {
    let int = json!({"type": "integer", "minimum": 0});
    match path {
        "/jobs" => json!({"type": "object", "required": ["type"], "properties": {
            "type": {"type": "string"}, "payload": {"type": "object"},
            "idempotency_key": {"type": "string"}, "delay_secs": {"type": "number"},
            "max_attempts": int, "timeout_ms": int, "run_id": {"type": "string"}}}),
        "/schedules" => json!({"type": "object", "required": ["name", "cron", "job_type"],
            "properties": {"name": {"type": "string"}, "cron": {"type": "string"},
            "job_type": {"type": "string"}, "payload": {"type": "object"}}}),
        "/experiment/create" => json!({"type": "object", "properties": {
            "blocks": {"type": "array", "items": {"type": "string"}}, "head": {"type": "string"},
            "preset": {"type": "string"}, "name": {"type": "string"}, "d_model": int,
            "seq_len": int, "horizon": int, "n_paths": int, "batch_size": int,
            "lr": {"type": "number"}, "epochs": int, "patience": int, "steps_per_epoch": int,
            "eval_windows": int, "eval_paths": int, "seed": int,
            "assets": {"type": "array", "items": {"type": "string"}},
            "timeframe": {"type": "string"}}}),
        "/experiment/validate" => json!({"type": "object", "required": ["experiment"],
            "properties": {"experiment": {"type": "object"}}}),
        "/experiment/run" => json!({"type": "object", "properties": {
            "id": {"type": "string"}, "experiment": {"type": "object"}, "epochs": int,
            "name": {"type": "string"}, "device": {"type": "string"}}}),
        "/pipeline/run" => json!({"type": "object", "properties": {
            "max_experiments": int, "epochs": int, "rounds": int, "steps_per_epoch": int,
            "d_model": int, "seq_len": int, "eval_windows": int, "eval_paths": int,
            "assets": {"type": "array", "items": {"type": "string"}},
            "timeframe": {"type": "string"}, "retries": int, "publish": {"type": "boolean"},
            "seed": int, "wait": {"type": "boolean"},
            "agents": {"type": "string", "enum": ["auto", "builtin", "llm"]}}}),
        _ => json!({"type": "object"}),
    }
}

/// The OpenAPI 3.0 document.
pub fn openapi() -> Value {
    let mut paths: Map<String, Value> = Map::new();
    for (method, path, summary) in ROUTES {
        let entry = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        let mut op = json!({
            "summary": summary,
            "responses": {"200": {"description": "OK"}, "201": {"description": "created"},
                "202": {"description": "accepted: enqueued, fetch the result by id"},
                "4XX": {"description": "{\"error\": ...} naming what is wrong"},
                "502": {"description": "an upstream (Pyth) failed"},
                "503": {"description": "Redis unavailable"}},
        });
        let params: Vec<Value> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .chain(QUERY.iter().filter(|q| q.0 == *path).map(|(_, name, schema, req)| {
                json!({"name": name, "in": "query", "required": req,
                       "schema": serde_json::from_str::<Value>(schema).expect("schemas are JSON")})
            }))
            .chain(std::iter::once(json!({"name": "X-Bot-Id", "in": "header", "required": false,
                "schema": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"}})))
            .collect();
        op["parameters"] = Value::Array(params);
        if *method == "post" {
            op["requestBody"] = json!({"required": true,
                "content": {"application/json": {"schema": body_schema(path)}}});
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
