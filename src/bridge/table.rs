//! The route table: every route of the bridge, declared once — method, path,
//! summary, the query parameters it reads, its body's schema and its
//! handler. `router.rs` serves exactly these rows and `openapi.rs` documents
//! exactly these rows, so a route cannot be served undocumented or
//! documented unserved.
//!
//! It holds no handler code (the family modules do) and no serving logic.

use std::sync::Arc;

use serde_json::Value;
use warp::http::HeaderMap;

use super::route::{ok, Answer, Handler, Param, Route};
use super::{
    agents, authored, catalog, dashboard, experiments, fleet, hub, jobs, market, models, results,
    runs, schedules, sessions, sse, State,
};

/// A bot route's handler from an `async fn(Call) -> Answer`.
macro_rules! bot {
    ($f:path) => {
        Handler::Bot(|c| Box::pin($f(c)))
    };
}

/// As `bot!`, for a route whose key and bot may also come in the query string.
macro_rules! bot_or_query {
    ($f:path) => {
        Handler::BotOrQuery(|c| Box::pin($f(c)))
    };
}

/// A public route's handler from an `async fn(Arc<State>, HeaderMap) -> Answer`.
macro_rules! public {
    ($f:path) => {
        Handler::Public(|s, h| Box::pin($f(s, h)))
    };
}

const LIMIT: Param = Param::optional("limit", r#"{"type":"integer","minimum":1,"maximum":1000}"#);
const STRING: &str = r#"{"type":"string"}"#;

/// Every route, in the order they are tried.
pub(super) static TABLE: &[Route] = &[
    Route::get("/health", "liveness; details only with a valid X-API-Key", public!(fleet::health)),
    Route::post("/jobs", "enqueue a job: {type, payload, idempotency_key?, delay_secs?, max_attempts?, timeout_ms?, run_id?}", bot!(jobs::enqueue))
        .body(jobs::EnqueueBody::schema),
    Route::get("/jobs/{id}", "a job's status record (own bot only)", bot!(jobs::status)),
    Route::post("/jobs/{id}/cancel", "cancel a job (own bot only)", bot!(jobs::cancel)),
    Route::get("/queue/stats", "per job type: waiting, in flight, delayed, completed, failed, retried, dead", bot!(jobs::stats)),
    Route::get("/workers", "live workers", bot!(fleet::workers)),
    Route::get("/semaphore", "the pipeline-run semaphore: holders, waiters, limit", bot!(fleet::semaphore)),
    Route::get("/fleet/pods", "GPU trainer pods on Basilica: the fleet leader's last report (pods, backlog, why it held back)", bot!(fleet::pods)),
    Route::get("/fleet/spend", "GPU pod spend: today, per pod, the budgets and what is left today", bot!(fleet::spend)),
    Route::get("/fleet/offerings", "GPU offerings on Basilica with their prices and whether the fleet's rules allow each (503 without BASILICA_API_TOKEN)", bot!(fleet::offerings)),
    Route::get("/fleet/balance", "the Basilica balance, the pods' $/h now, spend today and the budgets every rental must fit", bot!(fleet::balance)),
    Route::post("/fleet/pods", "rent one GPU pod within the rules (allowed types, price cap, hourly and daily budgets, balance): {gpu_type}; a bot's pod is its own and is deleted when it idles, the operator's is pinned; 201 with the pod, 409 naming the rule that refused it", bot!(fleet::rent))
        .body(fleet::RentBody::schema),
    Route::delete("/fleet/pods/{id}", "delete a pod: a bot its own (rented by it or its runs' agents), the operator any", bot!(fleet::release)),
    Route::get("/fleet/pods/{id}/logs", "the last lines of a pod's logs (?tail=100, at most 1000): a bot its own pods, the operator any", bot!(fleet::logs))
        .query(&[Param::optional("tail", r#"{"type":"integer","minimum":1,"maximum":1000}"#)]),
    Route::get("/schedules", "cron schedules", bot!(schedules::list)),
    Route::post("/schedules", "add or replace a schedule: {name, cron, job_type, payload}", bot!(schedules::add))
        .body(schedules::schema),
    Route::delete("/schedules/{name}", "remove a schedule", bot!(schedules::remove)),
    Route::get("/events", "server-sent job events for the caller's bot", bot_or_query!(sse::events))
        .query(&[
            Param::optional("api_key", STRING),
            Param::optional("bot_id", STRING),
        ]),
    Route::post("/pipeline/run", "start a pipeline run (budget fields optional; \"wait\": false answers 429 when no permit is free)", bot!(runs::start))
        .body(runs::StartBody::schema),
    Route::get("/runs", "the caller's pipeline runs", bot!(runs::list)),
    Route::get("/runs/{id}", "one run: state, stages, experiments, summary (id `latest`: the caller's newest)", bot!(runs::show)),
    Route::post("/runs/{id}/cancel", "cancel a run (id `latest`: the caller's newest)", bot!(runs::cancel)),
    Route::get("/pipeline/status", "the caller's latest pipeline run: running, status, current stage", bot!(runs::status)),
    Route::get("/bots/sessions", "the caller's session (bots never see each other's)", bot!(sessions::list)),
    Route::get("/bots/session/{id}", "one session (own bot only)", bot!(sessions::show)),
    Route::delete("/bots/session/{id}", "remove the caller's session; 409 while work is in flight", bot!(sessions::delete)),
    Route::get("/session/summary", "the caller's session: experiments by state, the best, runs", bot!(sessions::summary)),
    Route::post("/session/clear", "forget the caller's experiments and session; 409 while work is in flight", bot!(sessions::clear)),
    Route::post("/experiment/create", "validate and store a spec: {blocks | preset, head?, d_model?, seq_len?, horizon?, n_paths?, lr?, epochs?, assets?, timeframe?, name?, ...}", bot!(experiments::create))
        .body(experiments::CreateBody::schema),
    Route::post("/experiment/validate", "validate a spec: {experiment}; 200 with valid and every issue", bot!(experiments::validate))
        .body(experiments::ValidateBody::schema),
    Route::post("/experiment/run", "run a stored experiment {id} or a spec {experiment}; 202 with the job id", bot!(experiments::run))
        .body(experiments::RunBody::schema),
    Route::get("/experiment/results/{id}", "one experiment of the caller: state, CRPS, the job's result", bot!(experiments::results)),
    Route::get("/experiment/compare", "the caller's scored experiments and run results, best CRPS first", bot!(experiments::compare)),
    Route::get("/experiment/compare/all", "every bot's scored experiments, tagged bot_id, best CRPS first", bot!(experiments::compare_all)),
    Route::get("/history/runs", "the caller's pipeline runs, newest first (?limit=50)", bot!(experiments::history_runs))
        .query(&[LIMIT]),
    Route::get("/history/run/{id}", "one pipeline run of the caller (id `latest`: the newest)", bot!(runs::show)),
    Route::get("/history/experiments", "the caller's experiments, best first (?limit=50)", bot!(experiments::history_experiments))
        .query(&[LIMIT]),
    Route::get("/hf/models", "models on the Hugging Face Hub (?author= | ?repo_id= (its owner) | ?search=, default HF_REPO_ID's owner; ?limit=50)", bot!(hub::models))
        .query(&[
            Param::optional("repo_id", STRING),
            Param::optional("author", STRING),
            Param::optional("search", STRING),
            LIMIT,
        ]),
    Route::get("/hf/model-card", "a Hub repo's model card, README.md at a revision (?repo_id= default HF_REPO_ID, ?revision=main)", bot!(hub::model_card))
        .query(&[Param::optional("repo_id", STRING), Param::optional("revision", STRING)]),
    Route::get("/hf/artifact", "one file of a Hub repo at a revision, at most 10 MiB: text or base64 (?filename= required, ?repo_id=, ?revision=main)", bot!(hub::artifact))
        .query(&[
            Param::required("filename", STRING),
            Param::optional("repo_id", STRING),
            Param::optional("revision", STRING),
        ]),
    Route::post("/results/share", "write one of the caller's runs' comparison (scored experiments: names, specs, CRPS, ratios to GBM) as a public document to the store, and the Hub with hf: {run_id | \"latest\", hf?, source?}", bot!(results::share))
        .body(results::ShareBody::schema),
    Route::post("/results/ingest", "merge another miner's shared results into the experiment history, marked with their source: {url (http/https) | repo_id (Hub) | document}", bot!(results::ingest))
        .body(results::IngestBody::schema),
    Route::get("/models/champions", "each (asset, prompt) pair's champion, the model the miner serves (the GBM serves pairs without one)", bot!(models::list)),
    Route::get("/models/history", "promotion decisions, newest first: windows, scores, the Diebold-Mariano test, who asked (?asset=, ?prompt=low|high, ?limit=50)", bot!(models::history))
        .query(&[
            Param::optional("asset", STRING),
            Param::optional("prompt", r#"{"type":"string","enum":["low","high"]}"#),
            LIMIT,
        ]),
    Route::get("/models/shadow", "the shadow policy's last report: per pair, the champion's and each challenger's settled live evidence, the gate's verdict on it, what the policy did or would do (null before the first)", bot!(models::shadow)),
    Route::post("/models/promote", "put a published candidate through the promotion gate per asset, as a job in the caller's name: {candidate: RUN/NAME, assets, prompt?, dataset?, windows?, seed?, paths?}; force and the gate's parameters are the operator's; 202 with the job id", bot!(models::promote))
        .body(models::promote_schema),
    Route::post("/models/rollback", "the operator's: the pair's previous champion (or the GBM) serves again at once: {asset, prompt?}", bot!(models::rollback))
        .body(models::RollbackBody::schema),
    Route::get("/components/blocks", "backbone blocks with their parameters", bot!(catalog::blocks)),
    Route::get("/components/heads", "heads with their parameters", bot!(catalog::heads)),
    Route::get("/components/presets", "known-good block and head combinations", bot!(catalog::presets)),
    Route::post("/registry/write", "store an authored component graph under a global name, as the caller's: {name?, document}; validated first (422 naming node and field, 413 past 256 KiB); 201 new, 200 overwritten; a built-in's name or another bot's component is a 403", bot!(authored::write))
        .body(authored::WriteBody::schema),
    Route::delete("/registry/{name}", "remove an authored component: the owner's (the operator any); built-ins are read-only (403)", bot!(authored::delete)),
    Route::get("/registry/components", "every component, built-in and authored, marked, with owner, version and content hash, and the registry version", bot!(authored::list)),
    Route::get("/registry/component/{name}", "one component: an authored one with its document, or a built-in's description", bot!(authored::show)),
    Route::get("/registry/files", "the components' source files", bot!(catalog::registry_files)),
    Route::get("/registry/read", "one component source file (?path=blocks/recurrent.rs)", bot!(catalog::registry_read))
        .query(&[Param::required("path", STRING)]),
    Route::get("/agents/list", "the LLM agents: model, tools, context keys", bot!(catalog::agents_list)),
    Route::get("/agents/read", "one agent's configuration (?filename=planner)", bot!(catalog::agents_read))
        .query(&[Param::required("filename", STRING)]),
    Route::get("/agents/tools", "every agent tool and the agents that use it", bot!(catalog::agents_tools)),
    Route::get("/agents/prompts/list", "the prompt templates", bot!(catalog::prompts_list)),
    Route::get("/agents/prompts/read", "one prompt template and its fragments (?filename=planner.md)", bot!(catalog::prompts_read))
        .query(&[Param::required("filename", STRING)]),
    Route::get("/agents", "every agent, the five built-ins (read-only) and the authored ones, marked, with acts_as, tools, owner and version, and the agent shelf's version", bot!(agents::list)),
    Route::post("/agents/write", "store an agent definition (synth-city/agent@1: name, acts_as, model?, temperature?, max_turns, tools, fragments, context_keys) under a global name, as the caller's: {name?, document}; validated first (422 naming each field, 413 past 64 KiB); 201 new, 200 overwritten; a built-in's name or another bot's agent is a 403", bot!(agents::write))
        .body(agents::write_schema),
    Route::post("/agents/prompts/write", "store a prompt module (synth-city/prompt@1: name, agent, fragments with channel and priority) as the caller's; it reaches only the caller's runs: {name?, document}; 422 naming each field or an unknown agent; 201 new, 200 overwritten; another bot's module is a 403", bot!(agents::write_prompt))
        .body(agents::write_schema),
    Route::delete("/agents/prompts/{name}", "remove a prompt module: the owner's (the operator any)", bot!(agents::delete_prompt)),
    Route::get("/agents/{name}", "one agent: its definition (a built-in's: its template's fragments, tools and context keys) and the caller's prompt modules for it", bot!(agents::show)),
    Route::delete("/agents/{name}", "remove an authored agent: the owner's (the operator any); built-ins are read-only (403); 409 while the pipeline definition names it", bot!(agents::delete)),
    Route::get("/market/price/{asset}", "the latest price of an SN50 asset from its realised-price venue", bot!(market::price)),
    Route::get("/market/history/{asset}", "bars from the data directory (?days=30&timeframe=5m)", bot!(market::history))
        .query(&[
            Param::optional("days", r#"{"type":"number","minimum":0,"exclusiveMinimum":true,"maximum":3650}"#),
            Param::optional("timeframe", r#"{"type":"string","enum":["1m","5m"]}"#),
        ]),
    Route::get("/dashboard", "the live dashboard (HTML)", public!(dashboard::page)),
    Route::get("/dash/snapshot", "what the dashboard draws: queues, workers, semaphore, runs, leaderboard, CRPS over time", bot!(dashboard::snapshot)),
    Route::get("/dash/fan", "a 24 h GBM fan of simulated paths against realised prices (?asset=BTC&paths=200)", bot!(market::fan))
        .query(&[
            Param::optional("asset", STRING),
            Param::optional("paths", r#"{"type":"integer","minimum":2,"maximum":2000}"#),
        ]),
    Route::get("/openapi.json", "this document", public!(openapi_json)),
];

/// Every route as (method, path, summary), in table order.
pub static ROUTES: &[(&str, &str, &str)] = &summaries();

const N: usize = TABLE.len();

const fn summaries() -> [(&'static str, &'static str, &'static str); N] {
    let mut out = [("", "", ""); N];
    let mut i = 0;
    while i < N {
        let r = &TABLE[i];
        out[i] = (r.method.as_str(), r.path, r.summary);
        i += 1;
    }
    out
}

/// The OpenAPI document of the bridge (`/openapi.json`).
pub fn openapi() -> Value {
    super::openapi::document(TABLE)
}

async fn openapi_json(_s: Arc<State>, _h: HeaderMap) -> Answer {
    Ok(ok(openapi()))
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashSet};

    use serde::de::{self, Deserializer, Visitor};
    use serde_json::Value;

    use super::super::route::Handler;
    use super::super::{authored, experiments, fleet, jobs, models, results, BridgeConfig};
    use super::{openapi, ROUTES, TABLE};

    #[test]
    fn each_method_and_path_is_one_row() {
        let mut seen = HashSet::new();
        for r in TABLE {
            assert!(
                seen.insert((r.method, r.path)),
                "{} {} twice",
                r.method.as_str(),
                r.path
            );
        }
    }

    #[test]
    fn routes_lists_the_table() {
        assert_eq!(ROUTES.len(), TABLE.len());
        for (t, r) in ROUTES.iter().zip(TABLE) {
            assert_eq!(*t, (r.method.as_str(), r.path, r.summary));
        }
    }

    #[test]
    fn handler_kinds_fit_what_rows_declare() {
        for r in TABLE {
            let names: Vec<&str> = r.query.iter().map(|q| q.name).collect();
            match r.handler {
                Handler::Public(_) => assert!(
                    names.is_empty() && r.body.is_none() && r.path_params().next().is_none(),
                    "{}: a public route reads no parameters and no body",
                    r.path
                ),
                Handler::BotOrQuery(_) => assert!(
                    names.contains(&"api_key") && names.contains(&"bot_id"),
                    "{}: declare the query parameters the caller may come in",
                    r.path
                ),
                Handler::Bot(_) => {}
            }
        }
    }

    /// The field names serde expects of the struct `T`.
    fn fields_of<T: serde::de::DeserializeOwned>() -> BTreeSet<&'static str> {
        struct Probe<'a>(&'a mut BTreeSet<&'static str>);
        impl<'de> Deserializer<'de> for Probe<'_> {
            type Error = de::value::Error;
            fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
                Err(de::Error::custom("not a struct"))
            }
            fn deserialize_struct<V: Visitor<'de>>(
                self,
                _: &'static str,
                fields: &'static [&'static str],
                _: V,
            ) -> Result<V::Value, Self::Error> {
                self.0.extend(fields);
                Err(de::Error::custom("probed"))
            }
            serde::forward_to_deserialize_any! {
                bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
                byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
                identifier ignored_any
            }
        }
        let mut fields = BTreeSet::new();
        let _ = T::deserialize(Probe(&mut fields));
        fields
    }

    /// Each documented body names exactly the fields its route decodes.
    #[test]
    fn body_schemas_name_every_field() {
        let mut run = fields_of::<::jobs::pipeline::RunRequest>();
        run.insert("wait");
        // a schedule's owner is the caller, never the body's
        let mut schedule = fields_of::<engine::scheduler::Schedule>();
        schedule.remove("owner");
        // a promotion is asked in the caller's name, never the body's
        let mut promote = fields_of::<::jobs::models::Promote>();
        promote.remove("requested_by");
        let bodies = [
            ("/jobs", fields_of::<jobs::EnqueueBody>()),
            ("/schedules", schedule),
            ("/pipeline/run", run),
            ("/experiment/create", fields_of::<experiments::CreateBody>()),
            (
                "/experiment/validate",
                fields_of::<experiments::ValidateBody>(),
            ),
            ("/experiment/run", fields_of::<experiments::RunBody>()),
            ("/results/share", fields_of::<results::ShareBody>()),
            ("/results/ingest", fields_of::<results::IngestBody>()),
            ("/models/promote", promote),
            ("/models/rollback", fields_of::<models::RollbackBody>()),
            ("/registry/write", fields_of::<authored::WriteBody>()),
            ("/agents/write", fields_of::<authored::WriteBody>()),
            ("/agents/prompts/write", fields_of::<authored::WriteBody>()),
            ("/fleet/pods", fields_of::<fleet::RentBody>()),
        ];
        for r in TABLE {
            let Some(schema) = r.body else { continue };
            let (_, fields) = bodies
                .iter()
                .find(|(p, _)| *p == r.path)
                .unwrap_or_else(|| panic!("{}: name its body type in this test", r.path));
            let schema = schema();
            let documented: BTreeSet<&str> = schema["properties"]
                .as_object()
                .unwrap_or_else(|| panic!("{}: the schema has no properties", r.path))
                .keys()
                .map(String::as_str)
                .collect();
            assert!(!fields.is_empty(), "{}: no fields probed", r.path);
            assert_eq!(&documented, fields, "{}", r.path);
        }
    }

    #[test]
    fn the_document_has_every_row_and_its_parameters() {
        let doc = openapi();
        assert_eq!(doc["openapi"], "3.0.3");
        for r in TABLE {
            let op = &doc["paths"][r.path][r.method.as_str()];
            assert!(
                op.is_object(),
                "{} {} undocumented",
                r.method.as_str(),
                r.path
            );
            let params: Vec<(&str, &str)> = op["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| (p["in"].as_str().unwrap(), p["name"].as_str().unwrap()))
                .collect();
            for name in r.path_params() {
                assert!(params.contains(&("path", name)), "{}: {name}", r.path);
            }
            for q in r.query {
                assert!(
                    params.contains(&("query", q.name)),
                    "{}: {}",
                    r.path,
                    q.name
                );
            }
            assert_eq!(
                op["requestBody"].is_object(),
                r.body.is_some(),
                "{}",
                r.path
            );
        }
        let documented: usize = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .map(|p| p.as_object().unwrap().len())
            .sum();
        assert_eq!(documented, TABLE.len(), "the document lists only the table");
    }

    /// Every row answers (no Redis needed: with a key set and none sent, bot
    /// routes answer 401 before any Redis call), and nothing else does.
    #[tokio::test]
    async fn every_row_is_served_and_nothing_else() {
        let queue = engine::Queue::new("redis://127.0.0.1:1", "t", Default::default()).unwrap();
        let cfg = BridgeConfig {
            addr: "127.0.0.1:0".parse().unwrap(),
            api_key: Some("k".into()),
            rate_per_min: 10_000,
            data_dir: "data".into(),
            conn: Default::default(),
            sse_per_bot: 4,
            loopback_operator: false,
        };
        // failed authentications are throttled over every caller (60 a minute): a fresh
        // bridge for each chunk of rows
        let fresh = || super::super::routes(queue.clone(), cfg.clone());
        let mut routes = fresh();
        macro_rules! call {
            ($routes:expr, $method:expr, $path:expr) => {
                warp::test::request()
                    .method($method)
                    .path($path)
                    .header("content-length", "2")
                    .body("{}")
                    .reply(&$routes)
                    .await
            };
        }
        for (i, r) in TABLE.iter().enumerate() {
            if i > 0 && i % 50 == 0 {
                routes = fresh();
            }
            let path = r
                .path
                .replace("{id}", "x")
                .replace("{name}", "x")
                .replace("{asset}", "BTC");
            let res = call!(routes, &r.method.as_str().to_uppercase(), &path);
            let want = match r.handler {
                Handler::Public(_) => 200,
                Handler::Bot(_) | Handler::BotOrQuery(_) => 401,
            };
            assert_eq!(
                res.status(),
                want,
                "{} {path}: {:?}",
                r.method.as_str(),
                res.body()
            );
        }
        routes = fresh();
        let res = call!(routes, "GET", "/nowhere");
        assert_eq!(res.status(), 404);
        let body: Value = serde_json::from_slice(res.body()).unwrap();
        assert_eq!(body["error"], "no such route; see /openapi.json");
        assert_eq!(call!(routes, "PUT", "/jobs").status(), 405);
        // the method override checks the caller as the real method does
        assert_eq!(call!(routes, "POST", "/bots/session/x").status(), 401);
        assert_eq!(call!(routes, "GET", "/jobs/x/cancel").status(), 405);
    }
}
