//! The OpenAPI 3.0.3 document of a route table: one operation per route,
//! with its path parameters, the query parameters it reads, the `X-Bot-Id`
//! header and, for a route that reads a body, the body's JSON schema.
//!
//! It lists no routes of its own (the table in `table.rs` is the only list)
//! and does not serve the document (`/openapi.json` is a row of that table).

use serde_json::{json, Map, Value};

use super::route::Route;

/// The OpenAPI 3.0 document of `routes`.
pub(super) fn document(routes: &[Route]) -> Value {
    let mut paths: Map<String, Value> = Map::new();
    for r in routes {
        let entry = paths.entry(r.path.to_string()).or_insert_with(|| json!({}));
        let mut op = json!({
            "summary": r.summary,
            "responses": {"200": {"description": "OK"}, "201": {"description": "created"},
                "202": {"description": "accepted: enqueued, fetch the result by id"},
                "4XX": {"description": "{\"error\": ...} naming what is wrong"},
                "502": {"description": "an upstream (Pyth) failed"},
                "503": {"description": "Redis unavailable"}},
        });
        let params: Vec<Value> = r
            .path_params()
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .chain(r.query.iter().map(|q| {
                json!({"name": q.name, "in": "query", "required": q.required,
                       "schema": serde_json::from_str::<Value>(q.schema).expect("schemas are JSON")})
            }))
            .chain(std::iter::once(json!({"name": "X-Bot-Id", "in": "header", "required": false,
                "description": "With the operator's key, the bot to act as (with that bot's \
                    rights); with a bot's key, absent or the key's own bot (another is a 403)",
                "schema": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"}})))
            .collect();
        op["parameters"] = Value::Array(params);
        if super::method_override::reaches(routes, r) {
            op["description"] = json!(format!(
                "Also reached by POST {} with the body {{\"_method\": \"{}\"}} (the seed's \
                 method override), under the same key, bot and rules.",
                r.path,
                r.method.as_str().to_ascii_uppercase()
            ));
        }
        if let Some(schema) = r.body {
            op["requestBody"] = json!({"required": true,
                "content": {"application/json": {"schema": schema()}}});
        }
        entry[r.method.as_str()] = op;
    }
    json!({
        "openapi": "3.0.3",
        "info": {"title": "synth-city bridge", "version": env!("CARGO_PKG_VERSION")},
        "components": {"securitySchemes": {"apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}}},
        "security": [{"apiKey": []}],
        "paths": paths,
    })
}
