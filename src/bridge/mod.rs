//! The HTTP bridge (warp): bots and people drive the queue over JSON.
//!
//! It serves the engine — health, jobs (enqueue, status, cancel), queue stats,
//! workers, the semaphore, cron schedules, live events (SSE), the OpenAPI
//! document — pipeline runs (start, list, show, cancel; `runs.rs`), bot
//! sessions (`session.rs`), experiments and history (`experiments.rs`), the
//! zoo's components, registry sources, agents and prompts (`catalog.rs`),
//! market data (`market.rs`) and the dashboard (`dashboard.rs`).
//!
//! Rules every route follows:
//! - binding anything but loopback needs `BRIDGE_API_KEY`; with a key set,
//!   every route but `/health` needs `X-API-Key` (compared in constant time);
//! - the caller's bot is `X-Bot-Id` (`[A-Za-z0-9._-]{1,64}`, default
//!   `default`); a bot sees and cancels only its own jobs, and another bot's
//!   job answers 404, exactly like a job that does not exist;
//! - bodies are JSON of at most 1 MiB; errors are `{"error": ...}` with a 4xx
//!   that names the field or header at fault; each bot has a request budget
//!   per minute (429 with `Retry-After` when spent).

mod catalog;
mod dashboard;
mod experiments;
mod market;
mod openapi;
mod runs;
mod session;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use engine::queue::{CancelOutcome, EnqueueRequest, Queue};
use engine::scheduler::{self, Schedule};
use engine::semaphore::RedisSemaphore;

pub use dashboard::PAGE as DASHBOARD_HTML;
pub use openapi::{openapi, ROUTES};

/// Largest accepted request body.
pub const MAX_BODY: u64 = 1 << 20;

/// How the bridge runs.
#[derive(Debug, Clone)]
pub struct BridgeConfig {
    pub addr: SocketAddr,
    pub api_key: Option<String>,
    /// Requests per minute per bot.
    pub rate_per_min: u32,
    /// Market data for pipeline runs started over HTTP.
    pub data_dir: std::path::PathBuf,
    /// Checkpoints of those runs.
    pub out_dir: std::path::PathBuf,
    /// The store their publisher writes to.
    pub store_dir: std::path::PathBuf,
}

impl BridgeConfig {
    /// Refuses a public bind without an API key.
    pub fn check(&self) -> Result<(), String> {
        if !self.addr.ip().is_loopback() && self.api_key.is_none() {
            return Err(format!(
                "refusing to listen on {} without BRIDGE_API_KEY: anyone who can reach it could \
                 enqueue jobs. Set BRIDGE_API_KEY, or bind 127.0.0.1",
                self.addr
            ));
        }
        if self.api_key.as_deref() == Some("") {
            return Err("BRIDGE_API_KEY is set but empty".into());
        }
        Ok(())
    }
}

/// A 4xx/5xx with a message, as a warp rejection.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: String,
    retry_after: Option<u64>,
    /// Extra fields for the error body (e.g. every spec issue).
    detail: Option<Value>,
}

impl warp::reject::Reject for ApiError {}

fn reject(status: StatusCode, message: impl Into<String>) -> Rejection {
    warp::reject::custom(ApiError {
        status,
        message: message.into(),
        retry_after: None,
        detail: None,
    })
}

/// Like [`reject`], with extra fields merged into the error body.
fn reject_with(status: StatusCode, message: impl Into<String>, detail: Value) -> Rejection {
    warp::reject::custom(ApiError {
        status,
        message: message.into(),
        retry_after: None,
        detail: Some(detail),
    })
}

fn internal(e: impl std::fmt::Display) -> Rejection {
    tracing::error!(%e, "bridge: request failed");
    reject(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("backend unavailable: {e}"),
    )
}

/// Who is calling.
#[derive(Debug, Clone)]
struct Caller {
    bot: String,
}

struct State {
    queue: Queue,
    cfg: BridgeConfig,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
    /// Per bot: when its session was last refreshed, requests since.
    touched: Mutex<HashMap<String, (Instant, u64)>>,
    /// Idle sessions expire after this many seconds (`BRIDGE_SESSION_TTL_SECS`).
    session_ttl: u64,
    /// Market data (see `market.rs`).
    data_dir: std::path::PathBuf,
    bars: Mutex<HashMap<(String, i64), Arc<sn50::data::Bars>>>,
    pyth: Result<sn50::pyth::PythClient, String>,
}

/// How often a bot's session is refreshed by ordinary requests.
const TOUCH_EVERY: Duration = Duration::from_secs(2);

/// Counts a request against the bot's session, refreshing it in the
/// background at most every [`TOUCH_EVERY`].
fn note_request(state: &Arc<State>, bot: &str) {
    let due = {
        let mut t = state.touched.lock().unwrap();
        let now = Instant::now();
        let e = t
            .entry(bot.to_string())
            .or_insert((now - TOUCH_EVERY * 2, 0));
        e.1 += 1;
        if now.duration_since(e.0) >= TOUCH_EVERY {
            e.0 = now;
            Some(std::mem::take(&mut e.1))
        } else {
            None
        }
    };
    if let Some(n) = due {
        let (state, bot) = (state.clone(), bot.to_string());
        tokio::spawn(async move {
            if let Err(e) = session::touch(&state, &bot, n).await {
                tracing::warn!(%e, bot, "bridge: session refresh failed");
            }
        });
    }
}

/// Where market data is read: `SYNTH_DATA_DIR`, else `--data-dir` if it
/// exists, else `../shared/data`.
fn market_dir(cfg: &BridgeConfig) -> std::path::PathBuf {
    if let Some(d) = std::env::var_os("SYNTH_DATA_DIR").filter(|d| !d.is_empty()) {
        return d.into();
    }
    if cfg.data_dir.is_dir() {
        return cfg.data_dir.clone();
    }
    "../shared/data".into()
}

/// Constant-time equality, so response timing does not leak the key.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn valid_bot(b: &str) -> bool {
    (1..=64).contains(&b.len())
        && b.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

/// Authenticates, identifies the bot and spends one unit of its budget.
fn caller(state: Arc<State>) -> impl Filter<Extract = (Caller,), Error = Rejection> + Clone {
    warp::header::optional::<String>("x-api-key")
        .and(warp::header::optional::<String>("x-bot-id"))
        .and_then(move |key: Option<String>, bot: Option<String>| {
            let state = state.clone();
            async move { authenticate(&state, key, bot) }
        })
}

/// Like [`caller`], also taking `api_key` and `bot_id` from the query string:
/// for `/events`, which browsers open with EventSource (it cannot set headers).
fn caller_or_query(
    state: Arc<State>,
) -> impl Filter<Extract = (Caller,), Error = Rejection> + Clone {
    warp::header::optional::<String>("x-api-key")
        .and(warp::header::optional::<String>("x-bot-id"))
        .and(query())
        .and_then(
            move |key: Option<String>, bot: Option<String>, q: HashMap<String, String>| {
                let state = state.clone();
                async move {
                    let key = key.or_else(|| q.get("api_key").cloned());
                    let bot = bot.or_else(|| q.get("bot_id").cloned());
                    authenticate(&state, key, bot)
                }
            },
        )
}

fn authenticate(
    state: &Arc<State>,
    key: Option<String>,
    bot: Option<String>,
) -> Result<Caller, Rejection> {
    if let Some(want) = &state.cfg.api_key {
        match key {
            Some(k) if same(k.as_bytes(), want.as_bytes()) => {}
            Some(_) => return Err(reject(StatusCode::UNAUTHORIZED, "X-API-Key is wrong")),
            None => {
                return Err(reject(
                    StatusCode::UNAUTHORIZED,
                    "X-API-Key header is required",
                ))
            }
        }
    }
    let bot = bot.unwrap_or_else(|| "default".into());
    if !valid_bot(&bot) {
        return Err(reject(
            StatusCode::BAD_REQUEST,
            "X-Bot-Id must be 1 to 64 of [A-Za-z0-9._-]",
        ));
    }
    spend(state, &bot)?;
    note_request(state, &bot);
    Ok(Caller { bot })
}

/// The query string as a map (empty when there is none), decoded as HTML
/// forms are (warp's `serde_urlencoded`: `+` is a space, `%XX` escapes).
fn query() -> impl Filter<Extract = (HashMap<String, String>,), Error = Rejection> + Clone {
    warp::query::<HashMap<String, String>>()
}

/// A token bucket per bot: `rate_per_min` tokens, refilled continuously.
fn spend(state: &State, bot: &str) -> Result<(), Rejection> {
    let cap = f64::from(state.cfg.rate_per_min.max(1));
    let mut b = state.buckets.lock().unwrap();
    let now = Instant::now();
    let (tokens, last) = b.entry(bot.to_string()).or_insert((cap, now));
    *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * cap / 60.0).min(cap);
    *last = now;
    if *tokens < 1.0 {
        let wait = ((1.0 - *tokens) * 60.0 / cap).ceil() as u64;
        return Err(warp::reject::custom(ApiError {
            status: StatusCode::TOO_MANY_REQUESTS,
            message: format!("bot {bot:?} is over its {} requests per minute", cap as u32),
            retry_after: Some(wait.max(1)),
            detail: None,
        }));
    }
    *tokens -= 1.0;
    Ok(())
}

/// A JSON body of at most [`MAX_BODY`], decoded with errors that name the field.
fn json_body<T: serde::de::DeserializeOwned + Send>(
) -> impl Filter<Extract = (T,), Error = Rejection> + Clone {
    warp::body::content_length_limit(MAX_BODY)
        .and(warp::body::bytes())
        .and_then(|b: bytes::Bytes| async move {
            serde_json::from_slice::<T>(&b)
                .map_err(|e| reject(StatusCode::BAD_REQUEST, format!("request body: {e}")))
        })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnqueueBody {
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

fn reply(status: StatusCode, v: Value) -> warp::reply::Response {
    warp::reply::with_status(warp::reply::json(&v), status).into_response()
}

type Routes = warp::filters::BoxedFilter<(warp::reply::Response,)>;

fn ok(v: Value) -> warp::reply::Response {
    reply(StatusCode::OK, v)
}

/// The routes, ready to serve.
pub fn routes(
    queue: Queue,
    cfg: BridgeConfig,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Infallible> + Clone {
    let session_ttl = std::env::var("BRIDGE_SESSION_TTL_SECS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|v| *v > 0)
        .unwrap_or(3600);
    let pyth = {
        let mut c = sn50::pyth::PythConfig::from_env();
        // A bridge request should not hang for minutes on an absent upstream.
        c.attempts = 2;
        c.timeout = Duration::from_secs(10);
        c.max_backoff = Duration::from_secs(1);
        sn50::pyth::PythClient::new(c).map_err(|e| e.to_string())
    };
    let state = Arc::new(State {
        queue,
        data_dir: market_dir(&cfg),
        cfg,
        buckets: Mutex::new(HashMap::new()),
        touched: Mutex::new(HashMap::new()),
        session_ttl,
        bars: Mutex::new(HashMap::new()),
        pyth,
    });
    engine_routes(state.clone())
        .or(run_routes(state.clone()))
        .unify()
        .or(session_routes(state.clone()))
        .unify()
        .or(experiment_routes(state.clone()))
        .unify()
        .or(catalog_routes(state.clone()))
        .unify()
        .or(market_routes(state))
        .unify()
        .recover(recover)
        .unify()
}

fn with_state(s: Arc<State>) -> impl Filter<Extract = (Arc<State>,), Error = Infallible> + Clone {
    warp::any().map(move || s.clone())
}

fn engine_routes(state: Arc<State>) -> Routes {
    let with = with_state(state.clone());
    let who = caller(state.clone());

    let health = warp::path!("health")
        .and(warp::get())
        .and(warp::header::optional::<String>("x-api-key"))
        .and(with.clone())
        .and_then(health);
    let enqueue = warp::path!("jobs")
        .and(warp::post())
        .and(who.clone())
        .and(with.clone())
        .and(json_body::<EnqueueBody>())
        .and_then(enqueue);
    let status = warp::path!("jobs" / String)
        .and(warp::get())
        .and(who.clone())
        .and(with.clone())
        .and_then(job_status);
    let cancel = warp::path!("jobs" / String / "cancel")
        .and(warp::post())
        .and(who.clone())
        .and(with.clone())
        .and_then(job_cancel);
    let stats = warp::path!("queue" / "stats")
        .and(warp::get())
        .and(who.clone())
        .and(with.clone())
        .and_then(|_c: Caller, s: Arc<State>| async move {
            let st = s.queue.stats().await.map_err(internal)?;
            Ok::<_, Rejection>(ok(json!({ "types": st })))
        });
    let workers = warp::path!("workers")
        .and(warp::get())
        .and(who.clone())
        .and(with.clone())
        .and_then(|_c: Caller, s: Arc<State>| async move {
            let ws = engine::worker::list_workers(&s.queue)
                .await
                .map_err(internal)?;
            Ok::<_, Rejection>(ok(json!({ "workers": ws })))
        });
    let semaphore = warp::path!("semaphore")
        .and(warp::get())
        .and(who.clone())
        .and(with.clone())
        .and_then(|_c: Caller, s: Arc<State>| async move {
            let st = RedisSemaphore::new(s.queue.clone(), engine::semaphore::PIPELINE)
                .status()
                .await
                .map_err(internal)?;
            Ok::<_, Rejection>(ok(serde_json::to_value(st).unwrap()))
        });
    let schedules_list = warp::path!("schedules")
        .and(warp::get())
        .and(who.clone())
        .and(with.clone())
        .and_then(|_c: Caller, s: Arc<State>| async move {
            let ls = scheduler::list(&s.queue).await.map_err(internal)?;
            Ok::<_, Rejection>(ok(json!({ "schedules": ls })))
        });
    let schedules_add = warp::path!("schedules")
        .and(warp::post())
        .and(who.clone())
        .and(with.clone())
        .and(json_body::<Schedule>())
        .and_then(|_c: Caller, s: Arc<State>, sch: Schedule| async move {
            match scheduler::add(&s.queue, &sch).await {
                Ok(next) => Ok(reply(
                    StatusCode::CREATED,
                    json!({"name": sch.name, "next_fire_ms": next}),
                )),
                Err(e) if e.is_transient() => Err(internal(e)),
                Err(e) => Err(reject(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())),
            }
        });
    let schedules_remove = warp::path!("schedules" / String)
        .and(warp::delete())
        .and(who.clone())
        .and(with.clone())
        .and_then(|name: String, _c: Caller, s: Arc<State>| async move {
            if scheduler::remove(&s.queue, &name).await.map_err(internal)? {
                Ok(ok(json!({"removed": name})))
            } else {
                Err(reject(
                    StatusCode::NOT_FOUND,
                    format!("no schedule named {name:?}"),
                ))
            }
        });
    let events = warp::path!("events")
        .and(warp::get())
        .and(caller_or_query(state.clone()))
        .and(with.clone())
        .and(warp::header::optional::<String>("last-event-id"))
        .map(|c: Caller, s: Arc<State>, last: Option<String>| {
            let stream = event_stream(s.queue.clone(), c.bot, last);
            warp::sse::reply(warp::sse::keep_alive().stream(stream)).into_response()
        });
    let doc = warp::path!("openapi.json")
        .and(warp::get())
        .map(|| ok(openapi()));

    health
        .or(enqueue)
        .unify()
        .or(status)
        .unify()
        .or(cancel)
        .unify()
        .or(stats)
        .unify()
        .or(workers)
        .unify()
        .or(semaphore)
        .unify()
        .or(schedules_list)
        .unify()
        .or(schedules_add)
        .unify()
        .or(schedules_remove)
        .unify()
        .or(events)
        .unify()
        .or(doc)
        .unify()
        .boxed()
}

fn run_routes(state: Arc<State>) -> Routes {
    let with = with_state(state.clone());
    let who = caller(state);
    let run_start = warp::path!("pipeline" / "run")
        .and(warp::post())
        .and(who.clone())
        .and(with.clone())
        .and(json_body::<runs::RunBody>())
        .and_then(runs::start);
    let pipeline_status = warp::path!("pipeline" / "status")
        .and(warp::get())
        .and(who.clone())
        .and(with.clone())
        .and_then(session::pipeline_status);
    let runs_list = warp::path!("runs")
        .and(warp::get())
        .and(who.clone())
        .and(with.clone())
        .and_then(runs::list);
    let run_show = warp::path!("runs" / String)
        .and(warp::get())
        .and(who.clone())
        .and(with.clone())
        .and_then(runs::show);
    let run_cancel = warp::path!("runs" / String / "cancel")
        .and(warp::post())
        .and(who.clone())
        .and(with.clone())
        .and_then(runs::cancel);
    run_start
        .or(pipeline_status)
        .unify()
        .or(runs_list)
        .unify()
        .or(run_show)
        .unify()
        .or(run_cancel)
        .unify()
        .boxed()
}

fn session_routes(state: Arc<State>) -> Routes {
    let with = with_state(state.clone());
    let who = caller(state);
    let list = warp::path!("bots" / "sessions")
        .and(warp::get())
        .and(who.clone())
        .and(with.clone())
        .and_then(session::list);
    let show = warp::path!("bots" / "session" / String)
        .and(warp::get())
        .and(who.clone())
        .and(with.clone())
        .and_then(session::show);
    let delete = warp::path!("bots" / "session" / String)
        .and(warp::delete())
        .and(who.clone())
        .and(with.clone())
        .and_then(session::delete);
    let summary = warp::path!("session" / "summary")
        .and(warp::get())
        .and(who.clone())
        .and(with.clone())
        .and_then(session::summary);
    let clear = warp::path!("session" / "clear")
        .and(warp::post())
        .and(who.clone())
        .and(with.clone())
        .and_then(session::clear);
    list.or(show)
        .unify()
        .or(delete)
        .unify()
        .or(summary)
        .unify()
        .or(clear)
        .unify()
        .boxed()
}

fn experiment_routes(state: Arc<State>) -> Routes {
    let with = with_state(state.clone());
    let who = caller(state);
    let create = warp::path!("experiment" / "create")
        .and(warp::post())
        .and(who.clone())
        .and(with.clone())
        .and(json_body::<experiments::CreateBody>())
        .and_then(experiments::create);
    let validate = warp::path!("experiment" / "validate")
        .and(warp::post())
        .and(who.clone())
        .and(with.clone())
        .and(json_body::<experiments::ValidateBody>())
        .and_then(experiments::validate);
    let run = warp::path!("experiment" / "run")
        .and(warp::post())
        .and(who.clone())
        .and(with.clone())
        .and(json_body::<experiments::RunBody>())
        .and_then(experiments::run);
    let results = warp::path!("experiment" / "results" / String)
        .and(warp::get())
        .and(who.clone())
        .and(with.clone())
        .and_then(experiments::results);
    let compare = warp::path!("experiment" / "compare")
        .and(warp::get())
        .and(who.clone())
        .and(with.clone())
        .and_then(experiments::compare);
    let compare_all = warp::path!("experiment" / "compare" / "all")
        .and(warp::get())
        .and(who.clone())
        .and(with.clone())
        .and_then(experiments::compare_all);
    let h_runs = warp::path!("history" / "runs")
        .and(warp::get())
        .and(query())
        .and(who.clone())
        .and(with.clone())
        .and_then(experiments::history_runs);
    let h_run = warp::path!("history" / "run" / String)
        .and(warp::get())
        .and(who.clone())
        .and(with.clone())
        .and_then(runs::show);
    let h_exps = warp::path!("history" / "experiments")
        .and(warp::get())
        .and(query())
        .and(who.clone())
        .and(with.clone())
        .and_then(experiments::history_experiments);
    create
        .or(validate)
        .unify()
        .or(run)
        .unify()
        .or(results)
        .unify()
        .or(compare)
        .unify()
        .or(compare_all)
        .unify()
        .or(h_runs)
        .unify()
        .or(h_run)
        .unify()
        .or(h_exps)
        .unify()
        .boxed()
}

fn catalog_routes(state: Arc<State>) -> Routes {
    let with = with_state(state.clone());
    let who = caller(state);
    let component = |kind: &'static str| {
        warp::path("components")
            .and(warp::path(kind))
            .and(warp::path::end())
            .and(warp::get())
            .and(who.clone())
            .map(move |_c: Caller| ok(catalog::components(kind)))
    };
    let files = warp::path!("registry" / "files")
        .and(warp::get())
        .and(who.clone())
        .and(with.clone())
        .and_then(catalog::registry_files);
    let read = warp::path!("registry" / "read")
        .and(warp::get())
        .and(query())
        .and(who.clone())
        .and(with.clone())
        .and_then(catalog::registry_read);
    let agents_list = warp::path!("agents" / "list")
        .and(warp::get())
        .and(who.clone())
        .map(|_c: Caller| ok(catalog::agents_list()));
    let agents_read = warp::path!("agents" / "read")
        .and(warp::get())
        .and(query())
        .and(who.clone())
        .and_then(|q: HashMap<String, String>, _c: Caller| async move {
            catalog::agents_read(&q).map(ok)
        });
    let agents_tools = warp::path!("agents" / "tools")
        .and(warp::get())
        .and(who.clone())
        .map(|_c: Caller| ok(catalog::agents_tools()));
    let prompts_list = warp::path!("agents" / "prompts" / "list")
        .and(warp::get())
        .and(who.clone())
        .map(|_c: Caller| ok(catalog::prompts_list()));
    let prompts_read = warp::path!("agents" / "prompts" / "read")
        .and(warp::get())
        .and(query())
        .and(who.clone())
        .and_then(|q: HashMap<String, String>, _c: Caller| async move {
            catalog::prompts_read(&q).map(ok)
        });
    component("blocks")
        .or(component("heads"))
        .unify()
        .or(component("presets"))
        .unify()
        .or(files)
        .unify()
        .or(read)
        .unify()
        .or(agents_list)
        .unify()
        .or(agents_read)
        .unify()
        .or(agents_tools)
        .unify()
        .or(prompts_list)
        .unify()
        .or(prompts_read)
        .unify()
        .boxed()
}

fn market_routes(state: Arc<State>) -> Routes {
    let with = with_state(state.clone());
    let who = caller(state);
    let price = warp::path!("market" / "price" / String)
        .and(warp::get())
        .and(who.clone())
        .and(with.clone())
        .and_then(market::price);
    let history = warp::path!("market" / "history" / String)
        .and(warp::get())
        .and(query())
        .and(who.clone())
        .and(with.clone())
        .and_then(market::history);
    let page = warp::path!("dashboard")
        .and(warp::get())
        .map(dashboard::page);
    let snapshot = warp::path!("dash" / "snapshot")
        .and(warp::get())
        .and(who.clone())
        .and(with.clone())
        .and_then(dashboard::snapshot);
    let fan = warp::path!("dash" / "fan")
        .and(warp::get())
        .and(query())
        .and(who.clone())
        .and(with.clone())
        .and_then(market::fan);
    price
        .or(history)
        .unify()
        .or(page)
        .unify()
        .or(snapshot)
        .unify()
        .or(fan)
        .unify()
        .boxed()
}

async fn health(key: Option<String>, s: Arc<State>) -> Result<warp::reply::Response, Rejection> {
    let authed = match &s.cfg.api_key {
        None => true,
        Some(want) => key.is_some_and(|k| same(k.as_bytes(), want.as_bytes())),
    };
    if !authed {
        return Ok(reply(StatusCode::OK, json!({"status": "ok"})));
    }
    let (redis, schema) = match s.queue.schema_version().await {
        Ok(v) => ("ok", Some(v)),
        Err(_) => ("unreachable", None),
    };
    Ok(reply(
        StatusCode::OK,
        json!({"status": "ok", "redis": redis, "schema_version": schema,
               "expected_schema_version": engine::migrate::LATEST,
               "version": env!("CARGO_PKG_VERSION")}),
    ))
}

async fn enqueue(
    c: Caller,
    s: Arc<State>,
    b: EnqueueBody,
) -> Result<warp::reply::Response, Rejection> {
    // Bots may enqueue only the types that open themselves to bots (`JobSpec::BOTS`):
    // pipeline stages name a run (possibly another bot's); `run`, `experiment`, the shadow
    // scorer's jobs and `data-download` name server paths. A new type is closed by default.
    if let Ok(t) = s.queue.catalog().find(&b.job_type) {
        if let jobs::BotAccess::Refused(instead) = t.bots {
            return Err(reject(
                StatusCode::FORBIDDEN,
                format!(
                    "field `type`: `{}` jobs are not taken from bots; {instead}",
                    t.name
                ),
            ));
        }
    }
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
        bot_id: Some(c.bot),
        ..Default::default()
    };
    match s.queue.enqueue(req).await {
        Ok(e) => Ok(reply(
            if e.created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            },
            serde_json::to_value(e).unwrap(),
        )),
        Err(e) if e.is_transient() => Err(internal(e)),
        Err(e) => Err(reject(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())),
    }
}

/// The job's status if it exists and belongs to the caller's bot.
async fn own_job(s: &State, c: &Caller, id: &str) -> Result<engine::queue::JobStatus, Rejection> {
    match s.queue.status(id).await.map_err(internal)? {
        Some(st) if st.bot_id.as_deref().unwrap_or("default") == c.bot => Ok(st),
        _ => Err(reject(StatusCode::NOT_FOUND, format!("no job {id:?}"))),
    }
}

async fn job_status(
    id: String,
    c: Caller,
    s: Arc<State>,
) -> Result<warp::reply::Response, Rejection> {
    let st = own_job(&s, &c, &id).await?;
    Ok(reply(StatusCode::OK, serde_json::to_value(st).unwrap()))
}

async fn job_cancel(
    id: String,
    c: Caller,
    s: Arc<State>,
) -> Result<warp::reply::Response, Rejection> {
    own_job(&s, &c, &id).await?;
    let out = s.queue.cancel(&id).await.map_err(internal)?;
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

/// Job events for one bot, from the engine's events stream, as SSE. A task
/// tails the stream and feeds a bounded channel; it stops when the client
/// goes away (the channel closes).
fn event_stream(
    queue: Queue,
    bot: String,
    last: Option<String>,
) -> impl futures::Stream<Item = Result<warp::sse::Event, Infallible>> + Send + Sync + 'static {
    use futures::{SinkExt, StreamExt};
    let (mut tx, rx) = futures::channel::mpsc::channel::<warp::sse::Event>(256);
    tokio::spawn(async move {
        let mut cursor = last.unwrap_or_else(|| "$".into());
        let mut conn = None;
        loop {
            match read_events(&queue, &mut conn, &bot, &cursor).await {
                Ok((next, evs)) => {
                    cursor = next;
                    for ev in evs {
                        if tx.send(ev).await.is_err() {
                            return;
                        }
                    }
                    if tx.is_closed() {
                        return;
                    }
                }
                Err(e) => {
                    conn = None;
                    tracing::warn!(%e, "events: read failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    });
    rx.map(Ok)
}

async fn read_events(
    queue: &Queue,
    conn: &mut Option<redis::aio::MultiplexedConnection>,
    bot: &str,
    cursor: &str,
) -> Result<(String, Vec<warp::sse::Event>), engine::QueueError> {
    if conn.is_none() {
        *conn = Some(queue.dedicated(Duration::from_secs(10)).await?);
    }
    let c = conn.as_mut().expect("connected above");
    let opts = redis::streams::StreamReadOptions::default()
        .block(5000)
        .count(200);
    let reply: Option<redis::streams::StreamReadReply> =
        redis::AsyncCommands::xread_options(c, &[queue.keys().events()], &[cursor], &opts).await?;
    let mut next = cursor.to_string();
    let mut out = Vec::new();
    let entries = reply
        .map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect::<Vec<_>>())
        .unwrap_or_default();
    if entries.is_empty() {
        return Ok((next, out));
    }
    // Which bot does each job belong to? One pipelined read per batch.
    let mut p = redis::pipe();
    for e in &entries {
        let id = e.get::<String>("id").unwrap_or_default();
        // Run events name the run; job events the job.
        if e.get::<String>("type").as_deref() == Some("run") {
            p.hget(queue.keys().run(&id), "bot");
        } else {
            p.hget(queue.keys().job(&id), "bot");
        }
    }
    let bots: Vec<Option<String>> = p.query_async(c).await?;
    for (e, owner) in entries.into_iter().zip(bots) {
        next = e.id.clone();
        let owner = owner
            .filter(|b| !b.is_empty())
            .unwrap_or_else(|| "default".into());
        if owner != bot {
            continue;
        }
        let data: serde_json::Map<String, Value> = e
            .map
            .iter()
            .map(|(k, v)| {
                let s = redis::from_redis_value_ref::<String>(v).unwrap_or_default();
                (k.clone(), Value::String(s))
            })
            .collect();
        let name = e.get::<String>("event").unwrap_or_else(|| "event".into());
        out.push(
            warp::sse::Event::default()
                .id(e.id.clone())
                .event(name)
                .json_data(data)
                .expect("a JSON map serialises"),
        );
    }
    Ok((next, out))
}

async fn recover(r: Rejection) -> Result<warp::reply::Response, Infallible> {
    let mut detail = None;
    let (status, message, retry_after) = if let Some(e) = r.find::<ApiError>() {
        detail = e.detail.clone();
        (e.status, e.message.clone(), e.retry_after)
    } else if r.is_not_found() {
        (
            StatusCode::NOT_FOUND,
            "no such route; see /openapi.json".into(),
            None,
        )
    } else if r.find::<warp::reject::PayloadTooLarge>().is_some() {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body is over {MAX_BODY} bytes"),
            None,
        )
    } else if r.find::<warp::reject::MethodNotAllowed>().is_some() {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed on this route".into(),
            None,
        )
    } else if let Some(e) = r.find::<warp::reject::InvalidHeader>() {
        (
            StatusCode::BAD_REQUEST,
            format!("header {}: invalid", e.name()),
            None,
        )
    } else if let Some(e) = r.find::<warp::reject::InvalidQuery>() {
        (StatusCode::BAD_REQUEST, format!("query string: {e}"), None)
    } else if r.find::<warp::reject::UnsupportedMediaType>().is_some() {
        (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported media type; send JSON".into(),
            None,
        )
    } else if let Some(e) = r.find::<warp::reject::MissingHeader>() {
        (
            StatusCode::BAD_REQUEST,
            format!("header {} is required", e.name()),
            None,
        )
    } else if r.find::<warp::reject::LengthRequired>().is_some() {
        (
            StatusCode::LENGTH_REQUIRED,
            "Content-Length is required".into(),
            None,
        )
    } else {
        (StatusCode::BAD_REQUEST, format!("bad request: {r:?}"), None)
    };
    let mut body = json!({ "error": message });
    if let Some(Value::Object(extra)) = detail {
        for (k, v) in extra {
            body[k] = v;
        }
    }
    let mut res = reply(status, body);
    if let Some(s) = retry_after {
        res.headers_mut().insert(
            warp::http::header::RETRY_AFTER,
            warp::http::HeaderValue::from(s),
        );
    }
    Ok(res)
}

/// Serves until `shutdown`. Runs on the calling task: warp 0.4's server
/// future is not `Send`, so it is driven by the binary's main task.
pub async fn serve(
    queue: Queue,
    cfg: BridgeConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    cfg.check().map_err(anyhow::Error::msg)?;
    let listener = tokio::net::TcpListener::bind(cfg.addr).await?;
    tracing::info!(addr = %cfg.addr, auth = cfg.api_key.is_some(), "bridge listening");
    println!("bridge listening on http://{}", listener.local_addr()?);
    warp::serve(routes(queue, cfg))
        .incoming(listener)
        .graceful(async move { shutdown.cancelled().await })
        .run()
        .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_compare_and_bot_ids() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd") && !same(b"abc", b"ab"));
        assert!(valid_bot("openclaw-7.a_b"));
        assert!(!valid_bot("") && !valid_bot("a b") && !valid_bot(&"x".repeat(65)));
    }

    #[test]
    fn public_bind_needs_a_key() {
        let mut cfg = BridgeConfig {
            addr: "0.0.0.0:8377".parse().unwrap(),
            api_key: None,
            rate_per_min: 60,
            data_dir: "data".into(),
            out_dir: "runs".into(),
            store_dir: "store".into(),
        };
        assert!(cfg.check().unwrap_err().contains("BRIDGE_API_KEY"));
        cfg.api_key = Some("k".into());
        assert!(cfg.check().is_ok());
        cfg.addr = "127.0.0.1:8377".parse().unwrap();
        cfg.api_key = None;
        assert!(cfg.check().is_ok());
    }
}
