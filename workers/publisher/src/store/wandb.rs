//! Weights & Biases metrics tracking over W&B's HTTP API, spoken the way the
//! official `wandb` client speaks it:
//!
//! 1. `POST {base}/graphql` with the `upsertBucket` mutation creates (or
//!    updates) the run: `name` is the pipeline run id, `modelName` the project
//!    (`WANDB_PROJECT`, default `synth-city`), `entityName` the entity
//!    (`WANDB_ENTITY`, else the key's own entity from the `viewer` query), and
//!    `config` the experiment specs (`{name: {"value": spec}}`). The answer's
//!    `historyLineCount` is where this call's history lines start, so a run
//!    logged from several stages keeps one history.
//! 2. `POST {base}/files/{entity}/{project}/{run}/file_stream`, one request per
//!    metrics row: `{"files": {"wandb-history.jsonl": {"offset": N, "content":
//!    [line]}, "wandb-summary.json": {"offset": 0, "content": [summary]}}}`.
//! 3. The same endpoint with `{"complete": true, "exitcode": 0}`.
//!
//! Authentication is HTTP basic `api:{WANDB_API_KEY}`; the key is never logged
//! and is left out of `Debug`. Each request has a timeout and is retried on
//! 408/429/5xx, timeouts and connection failures (two retries by default);
//! 401/403 is an error naming `WANDB_API_KEY`, at once.
//!
//! [`log_if_configured`] is the pipeline's entry: with `WANDB_API_KEY` set it
//! sends the rows that also went to the local `metrics.jsonl`, and a failure
//! is only a warning.

use std::time::Duration;

use jobs::retry::{Failure, RetryPolicy};
use serde_json::{json, Map, Value};

/// The project runs go to when `WANDB_PROJECT` is unset.
pub const DEFAULT_PROJECT: &str = "synth-city";
/// W&B's public API, used when `WANDB_BASE_URL` is unset.
pub const DEFAULT_BASE_URL: &str = "https://api.wandb.ai";
/// The history file of a run (one JSON object per line, `_step` increasing).
pub const HISTORY_FILE: &str = "wandb-history.jsonl";
/// The summary file of a run (one JSON object, replaced on every write).
pub const SUMMARY_FILE: &str = "wandb-summary.json";
/// The longest [`log_if_configured`] may hold up a pipeline stage.
const OVERALL_DEADLINE: Duration = Duration::from_secs(120);

const UPSERT_BUCKET: &str = "mutation UpsertBucket($name: String, $project: String, \
$entity: String, $displayName: String, $config: JSONString, $jobType: String) {
  upsertBucket(input: {name: $name, modelName: $project, entityName: $entity, \
displayName: $displayName, config: $config, jobType: $jobType}) {
    bucket { id name displayName project { id name entity { id name } } historyLineCount }
    inserted
  }
}";

const VIEWER: &str = "query Viewer { viewer { id entity } }";

/// A W&B call failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WandbError {
    #[error("W&B at {base_url} refused the API key (HTTP {status}); check WANDB_API_KEY")]
    Unauthorized { base_url: String, status: u16 },
    #[error("W&B {op}: no answer after {attempts} attempts (last error: {last})")]
    Unavailable {
        op: String,
        attempts: u32,
        last: String,
    },
    #[error("W&B {op}: {detail}")]
    Failed { op: String, detail: String },
}

/// Where and as whom to log. Built from the environment by [`WandbConfig::from_env`].
#[derive(Clone)]
pub struct WandbConfig {
    api_key: String,
    /// Base URL without a trailing `/`.
    pub base_url: String,
    /// `None`: the entity the key belongs to (asked with the `viewer` query).
    pub entity: Option<String>,
    pub project: String,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Retries after the first attempt.
    pub retries: u32,
    /// Wait before the first retry; doubles with each one.
    pub backoff: Duration,
}

impl std::fmt::Debug for WandbConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WandbConfig")
            .field("api_key", &"<redacted>")
            .field("base_url", &self.base_url)
            .field("entity", &self.entity)
            .field("project", &self.project)
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .finish()
    }
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

impl WandbConfig {
    /// A configuration for `api_key` with the defaults (public API, the
    /// viewer's entity, project `synth-city`, 20 s timeout, two retries).
    pub fn new(api_key: impl Into<String>) -> Self {
        WandbConfig {
            api_key: api_key.into(),
            base_url: DEFAULT_BASE_URL.to_string(),
            entity: None,
            project: DEFAULT_PROJECT.to_string(),
            timeout: Duration::from_secs(20),
            retries: 2,
            backoff: Duration::from_millis(500),
        }
    }

    /// `None` when `WANDB_API_KEY` is unset or empty; otherwise the key with
    /// `WANDB_BASE_URL`, `WANDB_ENTITY` and `WANDB_PROJECT` where set.
    pub fn from_env() -> Option<Self> {
        let mut cfg = WandbConfig::new(env_nonempty("WANDB_API_KEY")?);
        if let Some(url) = env_nonempty("WANDB_BASE_URL") {
            cfg.base_url = url.trim_end_matches('/').to_string();
        }
        cfg.entity = env_nonempty("WANDB_ENTITY");
        if let Some(p) = env_nonempty("WANDB_PROJECT") {
            cfg.project = p;
        }
        Some(cfg)
    }
}

/// A run as W&B knows it after `upsertBucket`.
#[derive(Debug, Clone, PartialEq)]
pub struct WandbRun {
    pub entity: String,
    pub project: String,
    /// The run's name in URLs (the pipeline run id).
    pub name: String,
    /// History lines W&B already holds: where the next line goes.
    pub history_line_count: u64,
    /// True when this upsert created the run.
    pub inserted: bool,
}

/// A client for one W&B server and key.
#[derive(Debug, Clone)]
pub struct WandbClient {
    cfg: WandbConfig,
    http: reqwest::Client,
}

impl WandbClient {
    pub fn new(cfg: WandbConfig) -> Result<Self, WandbError> {
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("synth-city/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| WandbError::Failed {
                op: "client".into(),
                detail: e.to_string(),
            })?;
        Ok(WandbClient { cfg, http })
    }

    pub fn config(&self) -> &WandbConfig {
        &self.cfg
    }

    /// POSTs `body` as JSON to `{base}{path}` with retries; returns the
    /// answer's JSON (`null` for an empty body).
    async fn post(&self, op: &str, path: &str, body: &Value) -> Result<Value, WandbError> {
        let url = format!("{}{path}", self.cfg.base_url);
        let policy = RetryPolicy {
            attempts: self.cfg.retries + 1,
            base: self.cfg.backoff,
            // doubling with no cap of its own beyond the last retry's delay
            max_delay: self.cfg.backoff * 2u32.saturating_pow(self.cfg.retries),
            ..RetryPolicy::default()
        };
        policy
            .run(op, |attempt| self.attempt(op, &url, body, attempt))
            .await
            .map_err(|e| e.error)
    }

    async fn attempt(
        &self,
        op: &str,
        url: &str,
        body: &Value,
        attempt: u32,
    ) -> Result<Value, Failure<WandbError>> {
        let retry = |last: String| {
            Failure::transient(WandbError::Unavailable {
                op: op.to_string(),
                attempts: attempt,
                last,
            })
        };
        let res = self
            .http
            .post(url)
            .basic_auth("api", Some(&self.cfg.api_key))
            .json(body)
            .send()
            .await;
        let resp = match res {
            Ok(r) => r,
            // Timeouts, refused or reset connections: worth another try.
            Err(e) => return Err(retry(format!("{url}: {e}"))),
        };
        let status = resp.status().as_u16();
        let text = match resp.text().await {
            Ok(t) => t,
            Err(e) => return Err(retry(format!("{url}: reading the answer: {e}"))),
        };
        match status {
            200..=299 => {}
            401 | 403 => {
                return Err(Failure::Permanent(WandbError::Unauthorized {
                    base_url: self.cfg.base_url.clone(),
                    status,
                }))
            }
            408 | 429 | 500..=599 => {
                return Err(retry(format!("{url}: HTTP {status}: {}", excerpt(&text))))
            }
            _ => {
                return Err(Failure::Permanent(WandbError::Failed {
                    op: op.to_string(),
                    detail: format!("{url}: HTTP {status}: {}", excerpt(&text)),
                }))
            }
        }
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|e| {
            Failure::Permanent(WandbError::Failed {
                op: op.to_string(),
                detail: format!("{url}: the answer is not JSON ({e}): {}", excerpt(&text)),
            })
        })
    }

    /// One GraphQL request; GraphQL `errors` are an error naming them.
    async fn graphql(&self, op: &str, query: &str, variables: Value) -> Result<Value, WandbError> {
        let v = self
            .post(
                op,
                "/graphql",
                &json!({"query": query, "variables": variables}),
            )
            .await?;
        if let Some(errors) = v.get("errors").and_then(Value::as_array) {
            if !errors.is_empty() {
                let msgs: Vec<String> = errors
                    .iter()
                    .map(|e| {
                        e["message"]
                            .as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| e.to_string())
                    })
                    .collect();
                return Err(WandbError::Failed {
                    op: op.to_string(),
                    detail: msgs.join("; "),
                });
            }
        }
        Ok(v.get("data").cloned().unwrap_or(Value::Null))
    }

    /// The entity the API key belongs to (the `viewer` query).
    pub async fn viewer_entity(&self) -> Result<String, WandbError> {
        let data = self.graphql("viewer", VIEWER, json!({})).await?;
        data["viewer"]["entity"]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .ok_or_else(|| WandbError::Failed {
                op: "viewer".into(),
                detail: "the answer names no entity; set WANDB_ENTITY".into(),
            })
    }

    /// Creates or updates the run `name` (`upsertBucket`); `config`, when
    /// given, is W&B's config object (`{key: {"value": v}}`).
    pub async fn upsert_run(
        &self,
        name: &str,
        config: Option<&Value>,
    ) -> Result<WandbRun, WandbError> {
        let entity = match &self.cfg.entity {
            Some(e) => e.clone(),
            None => self.viewer_entity().await?,
        };
        let vars = json!({
            "name": name,
            "project": self.cfg.project,
            "entity": entity,
            "displayName": name,
            "jobType": "pipeline",
            "config": config.map(|c| c.to_string()),
        });
        let data = self.graphql("upsertBucket", UPSERT_BUCKET, vars).await?;
        let up = &data["upsertBucket"];
        let bucket = &up["bucket"];
        if !bucket.is_object() {
            return Err(WandbError::Failed {
                op: "upsertBucket".into(),
                detail: format!("no run in the answer: {}", excerpt(&data.to_string())),
            });
        }
        let s = |v: &Value, d: &str| v.as_str().unwrap_or(d).to_string();
        Ok(WandbRun {
            entity: s(&bucket["project"]["entity"]["name"], &entity),
            project: s(&bucket["project"]["name"], &self.cfg.project),
            name: s(&bucket["name"], name),
            history_line_count: bucket["historyLineCount"].as_u64().unwrap_or(0),
            inserted: up["inserted"].as_bool().unwrap_or(false),
        })
    }

    /// One file-stream request for `run`.
    pub async fn file_stream(&self, run: &WandbRun, body: &Value) -> Result<(), WandbError> {
        let path = format!(
            "/files/{}/{}/{}/file_stream",
            seg(&run.entity),
            seg(&run.project),
            seg(&run.name)
        );
        self.post("file_stream", &path, body).await.map(|_| ())
    }

    /// Logs `rows` to the run `run_id`: upserts it (with `config`), sends
    /// each row as the next history line with the summary so far, then marks
    /// the run complete. Returns the run and the offset after the last line.
    pub async fn log_rows(
        &self,
        run_id: &str,
        config: Option<&Value>,
        rows: &[Value],
    ) -> Result<(WandbRun, u64), WandbError> {
        let run = self.upsert_run(run_id, config).await?;
        let mut offset = run.history_line_count;
        let mut summary = Map::new();
        for row in rows {
            let line = history_line(row, offset);
            if let Value::Object(m) = &line {
                summary.extend(m.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            let body = json!({"files": {
                HISTORY_FILE: {"offset": offset, "content": [line.to_string()]},
                SUMMARY_FILE: {"offset": 0, "content": [Value::Object(summary.clone()).to_string()]},
            }});
            self.file_stream(&run, &body).await?;
            offset += 1;
        }
        self.file_stream(&run, &json!({"complete": true, "exitcode": 0}))
            .await?;
        Ok((run, offset))
    }
}

/// A metrics row as a W&B history line: the row's fields, `_step` (its
/// line number in the run's history) and `_timestamp` (the row's `ts`).
pub fn history_line(row: &Value, step: u64) -> Value {
    let mut m = match row {
        Value::Object(m) => m.clone(),
        other => {
            let mut m = Map::new();
            m.insert("value".into(), other.clone());
            m
        }
    };
    let ts = m.get("ts").and_then(Value::as_f64);
    m.insert("_step".into(), json!(step));
    if let Some(ts) = ts {
        m.insert("_timestamp".into(), json!(ts));
    }
    Value::Object(m)
}

/// W&B's config object for a set of experiments: `{name: {"value": spec}}`.
pub fn config_of<'a>(specs: impl IntoIterator<Item = (&'a str, Value)>) -> Value {
    let m: Map<String, Value> = specs
        .into_iter()
        .map(|(name, spec)| (name.to_string(), json!({"value": spec})))
        .collect();
    Value::Object(m)
}

/// Percent-encodes what is not safe in one URL path segment.
fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn excerpt(text: &str) -> String {
    let t = text.trim();
    match t.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &t[..i]),
        None => t.to_string(),
    }
}

/// Best effort, for the pipeline: when `WANDB_API_KEY` is set, logs `rows`
/// (the lines also written to `metrics.jsonl`) to the W&B run `run_id`. A
/// failure, or taking longer than two minutes, is a warning, never an error.
pub async fn log_if_configured(run_id: &str, config: Option<Value>, rows: &[Value]) {
    let Some(cfg) = WandbConfig::from_env() else {
        return;
    };
    if rows.is_empty() {
        return;
    }
    let client = match WandbClient::new(cfg) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(run_id, error = %e, "metrics not sent to W&B");
            return;
        }
    };
    let sent = tokio::time::timeout(
        OVERALL_DEADLINE,
        client.log_rows(run_id, config.as_ref(), rows),
    )
    .await;
    match sent {
        Ok(Ok((run, _))) => tracing::info!(
            run_id, entity = %run.entity, project = %run.project, rows = rows.len(),
            "metrics sent to W&B"
        ),
        Ok(Err(e)) => tracing::warn!(run_id, error = %e, "metrics not sent to W&B"),
        Err(_) => tracing::warn!(
            run_id,
            "metrics not sent to W&B: no answer within {}s",
            OVERALL_DEADLINE.as_secs()
        ),
    }
}

#[cfg(test)]
mod tests {
    //! Against an in-test HTTP/1.1 server on 127.0.0.1 that speaks the two
    //! W&B endpoints (GraphQL `viewer`/`upsertBucket`, and `file_stream`),
    //! keeps each run's history line count like W&B does, and records every
    //! request.

    use super::*;
    use std::collections::{HashMap, VecDeque};
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    const KEY: &str = "test-key-0123456789";

    #[derive(Debug, Clone)]
    struct Req {
        path: String,
        auth: Option<String>,
        body: Value,
    }

    #[derive(Default)]
    struct State {
        requests: Vec<Req>,
        /// Statuses to answer the next requests with, before serving them.
        inject: VecDeque<u16>,
        /// History lines per `entity/project/run`.
        lines: HashMap<String, u64>,
        /// Offsets that did not continue the history.
        offset_errors: Vec<String>,
    }

    struct Server {
        base: String,
        state: Arc<Mutex<State>>,
    }

    impl Server {
        async fn start() -> Server {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let base = format!("http://{}", listener.local_addr().unwrap());
            let state = Arc::new(Mutex::new(State::default()));
            let st = state.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((sock, _)) = listener.accept().await else {
                        return;
                    };
                    tokio::spawn(serve(sock, st.clone()));
                }
            });
            Server { base, state }
        }

        fn requests(&self) -> Vec<Req> {
            self.state.lock().unwrap().requests.clone()
        }

        fn client(&self, key: &str) -> WandbClient {
            let mut cfg = WandbConfig::new(key);
            cfg.base_url = self.base.clone();
            cfg.timeout = Duration::from_secs(5);
            cfg.backoff = Duration::from_millis(10);
            WandbClient::new(cfg).unwrap()
        }
    }

    /// Reads one request (headers, then `Content-Length` bytes), answers it
    /// and closes the connection.
    async fn serve(mut sock: tokio::net::TcpStream, st: Arc<Mutex<State>>) {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match sock.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let mut lines = head.split("\r\n");
        let request_line = lines.next().unwrap_or_default().to_string();
        let mut headers = HashMap::new();
        for l in lines {
            if let Some((k, v)) = l.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let len: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while buf.len() < head_end + len {
            match sock.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body: Value =
            serde_json::from_slice(&buf[head_end..head_end + len]).unwrap_or(Value::Null);
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_string();
        let (status, answer) = respond(
            &st,
            Req {
                path,
                auth: headers.get("authorization").cloned(),
                body,
            },
        );
        let text = answer.to_string();
        let out = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
            text.len()
        );
        let _ = sock.write_all(out.as_bytes()).await;
        let _ = sock.shutdown().await;
    }

    fn respond(st: &Mutex<State>, req: Req) -> (u16, Value) {
        use base64::Engine;
        let mut s = st.lock().unwrap();
        s.requests.push(req.clone());
        if let Some(code) = s.inject.pop_front() {
            return (code, json!({"error": "injected"}));
        }
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("api:{KEY}"))
        );
        if req.auth.as_deref() != Some(expected.as_str()) {
            return (
                401,
                json!({"errors": [{"message": "user is not logged in"}]}),
            );
        }
        if req.path == "/graphql" {
            let q = req.body["query"].as_str().unwrap_or_default();
            let v = &req.body["variables"];
            if q.contains("viewer") {
                return (
                    200,
                    json!({"data": {"viewer": {"id": "u1", "entity": "alice"}}}),
                );
            }
            if q.contains("upsertBucket") {
                let key = format!(
                    "{}/{}/{}",
                    v["entity"].as_str().unwrap_or_default(),
                    v["project"].as_str().unwrap_or_default(),
                    v["name"].as_str().unwrap_or_default()
                );
                let inserted = !s.lines.contains_key(&key);
                let count = *s.lines.entry(key).or_insert(0);
                return (
                    200,
                    json!({"data": {"upsertBucket": {"inserted": inserted, "bucket": {
                        "id": "b1", "name": v["name"], "displayName": v["displayName"],
                        "project": {"id": "p1", "name": v["project"],
                                    "entity": {"id": "e1", "name": v["entity"]}},
                        "historyLineCount": count}}}}),
                );
            }
            return (400, json!({"errors": [{"message": "unknown query"}]}));
        }
        let parts: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
        if let ["files", e, p, r, "file_stream"] = parts[..] {
            let key = format!("{e}/{p}/{r}");
            let Some(count) = s.lines.get(&key).copied() else {
                return (404, json!({"error": "run not found"}));
            };
            if let Some(h) = req.body["files"].get(HISTORY_FILE) {
                let offset = h["offset"].as_u64().unwrap_or(u64::MAX);
                let n = h["content"].as_array().map_or(0, |c| c.len()) as u64;
                if offset != count {
                    s.offset_errors
                        .push(format!("{key}: offset {offset}, expected {count}"));
                }
                s.lines.insert(key, offset + n);
            }
            return (200, json!({"exitcode": null, "limits": {}}));
        }
        (404, json!({"error": "no such endpoint"}))
    }

    fn rows(run_id: &str, names: &[&str]) -> Vec<Value> {
        names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                json!({"event": "experiment", "ts": 1_700_000_000 + i as u64, "run_id": run_id,
                       "name": n, "crps": 1.0 + i as f64, "gbm_crps": 2.0, "ratio": 0.5})
            })
            .collect()
    }

    fn stream_bodies(reqs: &[Req]) -> Vec<Value> {
        reqs.iter()
            .filter(|r| r.path.ends_with("/file_stream"))
            .map(|r| r.body.clone())
            .collect()
    }

    #[tokio::test]
    async fn wandb_logs_a_run_through_upsert_bucket_and_file_stream() {
        let server = Server::start().await;
        let client = server.client(KEY);
        let config = config_of([("gru-small", json!({"model": {"hidden": 64}}))]);
        let (run, end) = client
            .log_rows(
                "01jabcdef123",
                Some(&config),
                &rows("01jabcdef123", &["a", "b", "c"]),
            )
            .await
            .unwrap();
        assert_eq!(
            run.entity, "alice",
            "the viewer's entity is used without WANDB_ENTITY"
        );
        assert_eq!(run.project, DEFAULT_PROJECT);
        assert_eq!(run.name, "01jabcdef123");
        assert!(run.inserted);
        assert_eq!(end, 3);

        let reqs = server.requests();
        let expected_auth = format!(
            "Basic {}",
            base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                format!("api:{KEY}")
            )
        );
        assert!(reqs
            .iter()
            .all(|r| r.auth.as_deref() == Some(&expected_auth[..])));
        // viewer, upsertBucket, three rows, complete.
        assert_eq!(reqs.len(), 6, "{reqs:#?}");
        assert!(reqs[0].body["query"].as_str().unwrap().contains("viewer"));
        let up = &reqs[1];
        assert_eq!(up.path, "/graphql");
        assert!(up.body["query"].as_str().unwrap().contains("upsertBucket("));
        let vars = &up.body["variables"];
        assert_eq!(vars["name"], "01jabcdef123");
        assert_eq!(vars["project"], "synth-city");
        assert_eq!(vars["entity"], "alice");
        let sent_config: Value = serde_json::from_str(vars["config"].as_str().unwrap()).unwrap();
        assert_eq!(sent_config["gru-small"]["value"]["model"]["hidden"], 64);

        let bodies = stream_bodies(&reqs);
        assert_eq!(bodies.len(), 4);
        for (i, b) in bodies[..3].iter().enumerate() {
            let h = &b["files"][HISTORY_FILE];
            assert_eq!(h["offset"], i as u64, "offsets increase from 0");
            let content = h["content"].as_array().unwrap();
            assert_eq!(content.len(), 1);
            let line: Value = serde_json::from_str(content[0].as_str().unwrap()).unwrap();
            assert_eq!(line["_step"], i as u64);
            assert_eq!(line["name"], ["a", "b", "c"][i]);
            assert_eq!(line["crps"], 1.0 + i as f64);
            let summary: Value =
                serde_json::from_str(b["files"][SUMMARY_FILE]["content"][0].as_str().unwrap())
                    .unwrap();
            assert_eq!(b["files"][SUMMARY_FILE]["offset"], 0);
            assert_eq!(
                summary["name"],
                ["a", "b", "c"][i],
                "the summary is the latest row"
            );
        }
        assert_eq!(bodies[3], json!({"complete": true, "exitcode": 0}));
        assert!(reqs[2].path == "/files/alice/synth-city/01jabcdef123/file_stream");
        assert!(server.state.lock().unwrap().offset_errors.is_empty());
    }

    #[tokio::test]
    async fn wandb_a_second_call_continues_the_history_of_the_run() {
        let server = Server::start().await;
        let mut cfg = server.client(KEY).config().clone();
        cfg.entity = Some("team".into());
        cfg.project = "research".into();
        let client = WandbClient::new(cfg).unwrap();
        client
            .log_rows("r2", None, &rows("r2", &["a", "b"]))
            .await
            .unwrap();
        let publish = json!({"event": "publish", "ts": 1_700_000_100, "run_id": "r2", "name": "a"});
        let (run, end) = client.log_rows("r2", None, &[publish]).await.unwrap();
        assert!(!run.inserted);
        assert_eq!(
            (run.entity.as_str(), run.project.as_str()),
            ("team", "research")
        );
        assert_eq!(run.history_line_count, 2);
        assert_eq!(end, 3);
        let reqs = server.requests();
        assert!(
            !reqs.iter().any(|r| r.body["query"]
                .as_str()
                .is_some_and(|q| q.contains("viewer"))),
            "WANDB_ENTITY set: no viewer query"
        );
        let bodies = stream_bodies(&reqs);
        let offsets: Vec<u64> = bodies
            .iter()
            .filter_map(|b| b["files"][HISTORY_FILE]["offset"].as_u64())
            .collect();
        assert_eq!(offsets, vec![0, 1, 2]);
        assert_eq!(bodies.iter().filter(|b| b["complete"] == true).count(), 2);
        assert!(server.state.lock().unwrap().offset_errors.is_empty());
    }

    #[tokio::test]
    async fn wandb_a_wrong_key_is_a_clear_error_at_once() {
        let server = Server::start().await;
        let client = server.client("wrong-key-abcdef");
        let err = client
            .log_rows("r3", None, &rows("r3", &["a"]))
            .await
            .unwrap_err();
        assert!(
            matches!(err, WandbError::Unauthorized { status: 401, .. }),
            "{err}"
        );
        let msg = err.to_string();
        assert!(msg.contains("WANDB_API_KEY"), "{msg}");
        assert!(
            !msg.contains("wrong-key-abcdef"),
            "the key is never shown: {msg}"
        );
        assert_eq!(server.requests().len(), 1, "401 is not retried");
        let dbg = format!("{:?}", client.config());
        assert!(!dbg.contains("wrong-key-abcdef"), "{dbg}");
    }

    #[tokio::test]
    async fn wandb_5xx_and_429_are_retried() {
        let server = Server::start().await;
        server.state.lock().unwrap().inject.extend([500, 429]);
        let client = server.client(KEY);
        let (_, end) = client
            .log_rows("r4", None, &rows("r4", &["a"]))
            .await
            .unwrap();
        assert_eq!(end, 1);
        let reqs = server.requests();
        // viewer tried three times (500, 429, 200), then upsert, one row, complete.
        assert_eq!(reqs.len(), 6, "{reqs:#?}");
        assert!(reqs[..3]
            .iter()
            .all(|r| r.body["query"].as_str().unwrap().contains("viewer")));

        // A server that keeps failing: three attempts, then Unavailable.
        server.state.lock().unwrap().inject.extend([503, 503, 503]);
        let err = client.viewer_entity().await.unwrap_err();
        assert!(
            matches!(err, WandbError::Unavailable { attempts: 3, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("503"), "{err}");
    }

    #[tokio::test]
    async fn wandb_an_unreachable_server_is_unavailable_after_retries() {
        // A port nothing listens on.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let mut cfg = WandbConfig::new(KEY);
        cfg.base_url = format!("http://127.0.0.1:{port}");
        cfg.backoff = Duration::from_millis(5);
        let err = WandbClient::new(cfg)
            .unwrap()
            .viewer_entity()
            .await
            .unwrap_err();
        assert!(
            matches!(err, WandbError::Unavailable { attempts: 3, .. }),
            "{err}"
        );
    }

    fn record(name: &str, crps: f64) -> trainer::experiments::ExperimentRecord {
        let spec = trainer::zoo::spec::ExperimentSpec::new(&["lstm"], "gbm");
        trainer::experiments::ExperimentRecord {
            name: name.into(),
            run_id: Some("r5".into()),
            fingerprint: trainer::experiments::fingerprint(&spec),
            spec,
            status: trainer::experiments::RunStatus::Ok,
            crps: Some(crps),
            gbm_crps: Some(10.0),
            classical_crps: None,
            param_count: Some(100),
            epochs: 2,
            diverged: false,
            error: None,
            artifact: None,
            checkpoint: None,
            training_time_s: Some(1.0),
            device: Some("cpu".into()),
            steps_per_sec: Some(20.0),
            recorded_at: 1_700_000_000,
        }
    }

    /// The pipeline's hook: `run_log::record_run` writes `metrics.jsonl` and,
    /// with `WANDB_API_KEY` set, sends the same rows; a W&B that does not
    /// answer costs a warning, never the local history. (The only test that
    /// sets `WANDB_*`; both halves run in it, one after the other.)
    #[tokio::test]
    async fn wandb_record_run_sends_the_jsonl_rows_and_is_best_effort() {
        use crate::store::records;
        let server = Server::start().await;
        let dir = std::env::temp_dir().join(format!(
            "sc-wandb-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::env::set_var("WANDB_API_KEY", KEY);
        std::env::set_var("WANDB_BASE_URL", format!("{}/", server.base));
        std::env::set_var("WANDB_ENTITY", "ent");
        std::env::set_var("WANDB_PROJECT", "proj");
        let recs = [record("a", 5.0), record("b", 6.0)];
        crate::run_log::record_run(&dir, "r5", &recs).await;
        let local = records::read_metrics(&records::metrics_path(&dir), 10).unwrap();
        assert_eq!(local.len(), 2);
        let reqs = server.requests();
        let up = &reqs[0].body["variables"];
        assert_eq!(
            (up["entity"].as_str(), up["project"].as_str()),
            (Some("ent"), Some("proj"))
        );
        let config: Value = serde_json::from_str(up["config"].as_str().unwrap()).unwrap();
        assert!(config["a"]["value"].is_object(), "{config}");
        let sent: Vec<Value> = stream_bodies(&reqs)
            .iter()
            .filter_map(|b| b["files"][HISTORY_FILE]["content"][0].as_str())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(sent.len(), 2);
        for (s, l) in sent.iter().zip(&local) {
            let mut s = s.as_object().unwrap().clone();
            s.remove("_step");
            s.remove("_timestamp");
            assert_eq!(&Value::Object(s), l, "W&B gets the JSONL row");
        }
        assert_eq!(reqs.last().unwrap().body["complete"], true);

        // W&B away: the local history is still written and nothing fails.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        std::env::set_var("WANDB_BASE_URL", format!("http://127.0.0.1:{port}"));
        crate::run_log::record_run(&dir, "r6", &[record("c", 7.0)]).await;
        for k in [
            "WANDB_API_KEY",
            "WANDB_BASE_URL",
            "WANDB_ENTITY",
            "WANDB_PROJECT",
        ] {
            std::env::remove_var(k);
        }
        let local = records::read_metrics(&records::metrics_path(&dir), 10).unwrap();
        assert_eq!(local.len(), 3);
        assert_eq!(local[2]["run_id"], "r6");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn wandb_history_lines_carry_step_and_timestamp() {
        let l = history_line(&json!({"name": "x", "ts": 12, "crps": 1.5}), 7);
        assert_eq!(l["_step"], 7);
        assert_eq!(l["_timestamp"], 12.0);
        assert_eq!(l["crps"], 1.5);
        assert_eq!(seg("a b/c"), "a%20b%2Fc");
    }
}
