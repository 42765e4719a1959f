//! The producer and operator side of the queue: enqueue, status, cancel, stats,
//! dead letters. Workers use the same [`Queue`] for their Redis access.
//!
//! Every mutation is one Lua script (see `scripts.rs`), so a crash between two
//! Redis calls can never leave a job half-moved. Calls that fail because Redis
//! is unreachable are retried with backoff for `QueueConfig::retry_for`; the
//! scripts are written so that a retried call cannot duplicate its effect
//! (enqueue checks the job id, finish/fail check entry ownership).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jobs::retry::{Failure, RetryPolicy};
use jobs::{Catalog, JobEnvelope, ENVELOPE_VERSION};
use redis::aio::MultiplexedConnection;
use redis::{AsyncCommands, AsyncConnectionConfig, RedisError};
use serde::Serialize;
use thiserror::Error;

use crate::config::{redact_url_credentials, QueueConfig, RedisTls};
use crate::connection::{Pool, PoolManager, SharedSlot};
pub use crate::connection::{PooledConnection, SharedConnection};
use crate::keys::{Keys, GROUP};
use crate::scripts::Scripts;
use crate::sentinel::Locator;

/// What can go wrong talking to the queue.
#[derive(Debug, Error)]
pub enum QueueError {
    #[error("redis: {0}")]
    Redis(#[from] RedisError),
    #[error("redis connection pool: {0}")]
    Pool(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Catalog(#[from] jobs::CatalogError),
    #[error(transparent)]
    Prefix(#[from] crate::config::PrefixError),
    #[error("redis schema is at version {found} but this build expects {expected}: run `synth-city migrate`")]
    Schema { found: u32, expected: u32 },
    #[error(transparent)]
    Config(#[from] crate::config::RedisConfigError),
    #[error("TLS with redis at {url} failed: {detail}; {hint}")]
    Tls {
        url: String,
        detail: String,
        hint: String,
    },
    #[error("redis at {url} is unreachable after retrying for {secs}s: {last}")]
    Unreachable {
        url: String,
        secs: u64,
        last: String,
    },
    #[error(
        "{what}: written, but only {acked} of the {wanted} replicas asked for ({var}) confirmed \
         it within {wait_ms} ms, so it may not survive a failover; a retry that names the same \
         job (its id or idempotency key) creates nothing twice, and check the replicas (INFO \
         replication on the primary)"
    )]
    NotReplicated {
        what: String,
        acked: u32,
        wanted: u32,
        wait_ms: u64,
        var: &'static str,
    },
}

impl QueueError {
    /// Whether waiting and trying again may help (Redis down, restarting, loading, a failover
    /// under way, a write not yet confirmed by its replicas).
    pub fn is_transient(&self) -> bool {
        match self {
            QueueError::Redis(e) => is_transient(e),
            QueueError::Pool(_) => true,
            QueueError::NotReplicated { .. } => true,
            _ => false,
        }
    }
}

/// Transient Redis errors: connection refused or dropped, timeouts, LOADING, TRYAGAIN, and
/// the answers of a demoted or cut-off primary during a failover (READONLY, MASTERDOWN,
/// NOREPLICAS).
pub fn is_transient(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || matches!(e.retry_method(), redis::RetryMethod::WaitAndRetry)
        || matches!(
            e.code(),
            Some("READONLY" | "MASTERDOWN" | "LOADING" | "NOREPLICAS")
        )
}

pub type Result<T, E = QueueError> = std::result::Result<T, E>;

/// A request to enqueue one job. Unset fields take the job type's defaults.
#[derive(Debug, Clone, Default)]
pub struct EnqueueRequest {
    pub job_type: String,
    pub payload: serde_json::Value,
    pub id: Option<String>,
    pub max_attempts: Option<u32>,
    pub timeout_ms: Option<u64>,
    pub idempotency_key: Option<String>,
    /// Run no sooner than this many ms after Redis receives the job.
    pub delay_ms: u64,
    /// Run no sooner than this Unix time in ms (Redis clock).
    pub run_at_ms: u64,
    pub run_id: Option<String>,
    pub bot_id: Option<String>,
}

impl EnqueueRequest {
    pub fn new(job_type: impl Into<String>, payload: serde_json::Value) -> Self {
        Self {
            job_type: job_type.into(),
            payload,
            ..Default::default()
        }
    }

    /// Checks the request against this build's catalog and builds the envelope.
    pub fn into_envelope(self) -> Result<(JobEnvelope, u64, u64)> {
        let info = jobs::find_type(&self.job_type)?;
        self.envelope_of(info)
    }

    /// Checks the request against `catalog` and builds the envelope.
    pub fn into_envelope_in(self, catalog: &Catalog) -> Result<(JobEnvelope, u64, u64)> {
        let info = catalog.find(&self.job_type)?;
        self.envelope_of(info)
    }

    fn envelope_of(self, info: &jobs::JobTypeInfo) -> Result<(JobEnvelope, u64, u64)> {
        (info.validate)(&self.payload)?;
        if let Some(k) = &self.idempotency_key {
            if k.is_empty() || k.len() > 200 {
                return Err(QueueError::Invalid(
                    "idempotency key must be 1 to 200 characters".into(),
                ));
            }
        }
        let max_attempts = self.max_attempts.unwrap_or(info.max_attempts);
        if max_attempts == 0 {
            return Err(QueueError::Invalid(
                "max_attempts must be at least 1".into(),
            ));
        }
        let timeout_ms = self.timeout_ms.unwrap_or(info.timeout_ms);
        if timeout_ms == 0 {
            return Err(QueueError::Invalid("timeout must be at least 1 ms".into()));
        }
        let env = JobEnvelope {
            v: ENVELOPE_VERSION,
            id: self.id.unwrap_or_else(|| ulid::Ulid::new().to_string()),
            job_type: info.name.to_string(),
            payload: self.payload,
            attempt: 0,
            max_attempts,
            timeout_ms,
            idempotency_key: self.idempotency_key,
            run_id: self.run_id,
            bot_id: self.bot_id,
            parent: None,
            enqueued_at_ms: 0,
        };
        Ok((env, self.run_at_ms, self.delay_ms))
    }
}

/// The answer to an enqueue: the job id, and whether this call created it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Enqueued {
    pub id: String,
    pub created: bool,
}

/// A job's status record.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct JobStatus {
    pub id: String,
    #[serde(rename = "type")]
    pub job_type: String,
    pub state: String,
    pub attempt: u32,
    pub starts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    pub enqueued_at_ms: Option<u64>,
    pub started_at_ms: Option<u64>,
    pub finished_at_ms: Option<u64>,
    pub cancel_requested: bool,
    /// The bot that enqueued it, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bot_id: Option<String>,
}

/// What became of one child job of a flow (`JobError::WaitForChildren`), as its parent
/// records it when the child completes, dies or is cancelled. Times are the server's.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ChildOutcome {
    pub id: String,
    #[serde(rename = "type")]
    pub job_type: String,
    /// `completed`, `dead` or `cancelled`.
    pub state: String,
    /// The worker (consumer) that ran its last attempt, if any ran.
    pub worker: Option<String>,
    /// When its last attempt started (Unix ms), if one did.
    pub started_at_ms: Option<u64>,
    /// When it ended (Unix ms).
    pub finished_at_ms: Option<u64>,
    /// The handler's result, when it completed.
    pub result: Option<serde_json::Value>,
    /// Why it died, when it did.
    pub error: Option<String>,
}

impl ChildOutcome {
    /// Decodes the parent's record of child `id` (`record_child` in `lua/common.lua`).
    fn decode(id: &str, raw: &str) -> ChildOutcome {
        let v: serde_json::Value = serde_json::from_str(raw).unwrap_or_default();
        let text = |k: &str| {
            v.get(k)
                .and_then(|s| s.as_str())
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let num = |k: &str| text(k).and_then(|s| s.parse::<u64>().ok());
        let state = text("state").unwrap_or_else(|| "unknown".into());
        let detail = text("detail");
        let (result, error) = match state.as_str() {
            "completed" => (
                detail
                    .as_deref()
                    .and_then(|d| serde_json::from_str(d).ok())
                    .filter(|r: &serde_json::Value| !r.is_null()),
                None,
            ),
            "dead" => (None, detail),
            _ => (None, None),
        };
        ChildOutcome {
            id: id.to_string(),
            job_type: text("type").unwrap_or_default(),
            state,
            worker: text("worker"),
            started_at_ms: num("started_at"),
            finished_at_ms: num("finished_at"),
            result,
            error,
        }
    }
}

/// Per-type counts for `jobs stats`.
#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct TypeStats {
    #[serde(rename = "type")]
    pub job_type: String,
    pub waiting: u64,
    pub in_flight: u64,
    pub delayed: u64,
    pub enqueued: u64,
    pub completed: u64,
    pub failed: u64,
    pub retried: u64,
    pub dead: u64,
    pub cancelled: u64,
    pub stalled: u64,
    /// Age of the oldest waiting-or-running entry, in ms.
    pub oldest_ms: u64,
}

/// A dead letter.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DeadLetter {
    pub dlq_id: String,
    pub id: String,
    #[serde(rename = "type")]
    pub job_type: String,
    pub error: String,
    pub at_ms: u64,
    /// The envelope (or the raw entry when it could not be decoded).
    pub job: String,
}

/// What `cancel` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelOutcome {
    /// It was waiting or delayed and will never run.
    Cancelled,
    /// It is running; its handler has been asked to stop.
    Cancelling,
    /// No such job (or its record expired).
    Missing,
    /// It already finished in this state.
    AlreadyFinished(String),
}

/// A handle on one deployment's queue. Cheap to clone.
#[derive(Clone)]
pub struct Queue {
    pool: Pool,
    /// One multiplexed connection shared by every short request ([`Queue::retrying`]):
    /// concurrent callers pipeline over it, with no per-request checkout round trip.
    /// Created on first use; made again on the next use after it breaks.
    shared: Arc<SharedSlot>,
    /// A second multiplexed connection for the workers' batch scripts ([`Queue::batch_conn`]).
    batch: Arc<SharedSlot>,
    /// Where every connection goes: one server, or the current primary of a Sentinel set
    /// (TLS files and all).
    locator: Arc<Locator>,
    tls: RedisTls,
    url: String,
    keys: Keys,
    scripts: Arc<Scripts>,
    cfg: QueueConfig,
    catalog: Arc<Catalog>,
}

impl Queue {
    /// Builds a handle; connects lazily, so Redis may come up later. A `rediss://` URL uses
    /// the TLS files of the environment (`SYNTH_REDIS_CA`, ...: [`RedisTls::from_env`]); a
    /// `redis+sentinel://` URL follows the primary of a Sentinel set ([`crate::sentinel`]).
    pub fn new(url: &str, prefix: &str, cfg: QueueConfig) -> Result<Self> {
        Self::new_with_tls(url, prefix, cfg, RedisTls::from_env()?)
    }

    /// [`Queue::new`] with TLS files given rather than read from the environment.
    pub fn new_with_tls(url: &str, prefix: &str, cfg: QueueConfig, tls: RedisTls) -> Result<Self> {
        crate::config::validate_prefix(prefix)?;
        let locator = Arc::new(Locator::new(url, &tls)?);
        let conn_cfg = AsyncConnectionConfig::new()
            .set_response_timeout(Some(cfg.response_timeout))
            .set_connection_timeout(Some(Duration::from_secs(2)));
        let manager = PoolManager {
            locator: locator.clone(),
            cfg: conn_cfg,
        };
        // A Sentinel lookup and the ROLE check come before a pooled connection is ready.
        let create_timeout = if locator.is_sentinel() { 8 } else { 3 };
        let pool = Pool::builder(manager)
            .max_size(32)
            .wait_timeout(Some(Duration::from_secs(10)))
            .create_timeout(Some(Duration::from_secs(create_timeout)))
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .map_err(|e| QueueError::Pool(e.to_string()))?;
        Ok(Self {
            pool,
            shared: Arc::new(SharedSlot::default()),
            batch: Arc::new(SharedSlot::default()),
            locator,
            tls,
            url: url.to_string(),
            keys: Keys::new(prefix),
            scripts: Arc::new(Scripts::new()),
            cfg,
            catalog: Arc::new(Catalog::default()),
        })
    }

    /// The same queue accepting the job types of `catalog` (this build's by default).
    pub fn with_catalog(mut self, catalog: Catalog) -> Self {
        self.catalog = Arc::new(catalog);
        self
    }

    /// The job types this queue accepts.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }
    pub fn scripts(&self) -> &Scripts {
        &self.scripts
    }
    /// The retention argument of the scripts that finish jobs: the config's
    /// ([`QueueConfig::retention_arg`]), then `;` and the catalog's types whose records are
    /// read after they finish (`jobs::JobSpec::RECORD_READ_AFTER_FINISH`), comma-separated:
    /// those keep `result_ttl` whatever the `SYNTH_KEEP_*` settings say.
    pub fn retention_arg(&self) -> String {
        let exempt: Vec<&str> = self.catalog.records_read_after_finish().collect();
        format!("{};{}", self.cfg.retention_arg(), exempt.join(","))
    }

    pub fn config(&self) -> &QueueConfig {
        &self.cfg
    }
    pub fn url(&self) -> &str {
        &self.url
    }
    /// The URL with its password hidden, for messages.
    pub fn shown_url(&self) -> String {
        redact_url_credentials(&self.url)
    }

    /// `e` as it should reach a person: a failed TLS handshake or a certificate that does not
    /// verify becomes [`QueueError::Tls`], naming the TLS variables and files to check (and is
    /// not retried); anything else stays a Redis error.
    pub fn explain(&self, e: RedisError) -> QueueError {
        let detail = e.to_string();
        let lower = detail.to_ascii_lowercase();
        let tls_url =
            self.url.starts_with("rediss://") || self.url.starts_with("rediss+sentinel://");
        if !tls_url
            || !(lower.contains("certificate") || lower.contains("alert") || lower.contains("tls"))
        {
            return QueueError::Redis(e);
        }
        let trust = match &self.tls.ca {
            Some(ca) => format!("the CA in {}={}", crate::config::ENV_CA, ca.display()),
            None => format!(
                "the system's root certificates ({} is not set; point it at the PEM file of the \
                 CA that signed the server's certificate)",
                crate::config::ENV_CA
            ),
        };
        let client = match &self.tls.client {
            Some((c, k)) => format!(
                "the client certificate {}={} (key {}={}) must be one the server's CA accepts",
                crate::config::ENV_CLIENT_CERT,
                c.display(),
                crate::config::ENV_CLIENT_KEY,
                k.display()
            ),
            None => format!(
                "if the server asks for a client certificate (tls-auth-clients), set {} and {}",
                crate::config::ENV_CLIENT_CERT,
                crate::config::ENV_CLIENT_KEY
            ),
        };
        let server =
            format!("the server's certificate must be signed by {trust} and name the URL's host");
        // A certificate we reject says so; a server that rejects us sends an alert.
        let hint = if lower.contains("peer certificate") {
            server
        } else if lower.contains("alert") {
            client
        } else {
            format!("{server}; {client}")
        };
        QueueError::Tls {
            url: self.shown_url(),
            detail,
            hint,
        }
    }

    pub fn prefix(&self) -> &str {
        self.keys.prefix()
    }

    /// A pooled connection (to the current primary). Long-lived loops keep one until it errors.
    pub async fn conn(&self) -> Result<PooledConnection> {
        match self.pool.get().await {
            Ok(obj) => Ok(PooledConnection::new(obj, self.locator.clone())),
            Err(deadpool::managed::PoolError::Backend(e)) => Err(self.explain(e)),
            Err(other) => Err(QueueError::Pool(other.to_string())),
        }
    }

    /// A dedicated connection for blocking reads, with its own timeout (to the current
    /// primary, checked with `ROLE` for a Sentinel set). Its owner makes a new one after any
    /// error.
    pub async fn dedicated(&self, response_timeout: Duration) -> Result<MultiplexedConnection> {
        let cfg = AsyncConnectionConfig::new()
            .set_response_timeout(Some(response_timeout))
            .set_connection_timeout(Some(Duration::from_secs(2)));
        self.locator
            .connect(&cfg)
            .await
            .map(|(_, c)| c)
            .map_err(|e| self.explain(e))
    }

    /// The shared multiplexed connection (a cheap clone), connecting on first use and again
    /// after it broke or its primary moved.
    pub async fn shared(&self) -> Result<SharedConnection> {
        self.slot_conn(&self.shared).await
    }

    /// The workers' multiplexed connection for their batch scripts (`start.lua`,
    /// `finish.lua`; a cheap clone, connecting on first use and again after it broke or its
    /// primary moved): no pool checkout (and its `PING`) per batch, and their large requests
    /// and replies never queue ahead of the short requests on [`Queue::shared`].
    pub async fn batch_conn(&self) -> Result<SharedConnection> {
        self.slot_conn(&self.batch).await
    }

    async fn slot_conn(&self, slot: &SharedSlot) -> Result<SharedConnection> {
        let cfg = AsyncConnectionConfig::new()
            .set_response_timeout(Some(self.cfg.response_timeout))
            .set_connection_timeout(Some(Duration::from_secs(2)));
        slot.get(&self.locator, &cfg)
            .await
            .map_err(|e| self.explain(e))
    }

    /// Runs `op` with the shared connection, retrying transient failures with
    /// exponential backoff for `retry_for`, logging each wait. `op` must not
    /// block the connection (no blocking reads: use [`Queue::dedicated`]).
    pub async fn retrying<T, F, Fut>(&self, what: &str, op: F) -> Result<T>
    where
        F: FnMut(SharedConnection) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        self.retry(what, false, op).await
    }

    /// [`Queue::retrying`] for the writes that must survive a failover once reported done
    /// (enqueue, run advance). With `SYNTH_REDIS_MIN_REPLICAS_ACK` = 0 (the default) it is
    /// `retrying`. Otherwise `op` runs on a pooled connection of its own, and after it that
    /// connection sends `INCR {prefix}:ack_mark` and `WAIT n SYNTH_REDIS_WAIT_MS`: the mark
    /// is a write of this connection after `op`'s, so the `WAIT` also covers a write that an
    /// earlier try (or an earlier call) made and this one found already done. Fewer replicas
    /// than asked confirming it is [`QueueError::NotReplicated`], returned at once (not retried
    /// here; it is transient, and `op` must be idempotent for a caller's retry to be safe).
    pub async fn retrying_acked<T, F, Fut>(&self, what: &str, op: F) -> Result<T>
    where
        F: FnMut(SharedConnection) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        self.retry(what, self.cfg.min_replicas_ack > 0, op).await
    }

    async fn retry<T, F, Fut>(&self, what: &str, acked: bool, op: F) -> Result<T>
    where
        F: FnMut(SharedConnection) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        // 50 ms doubling to 5 s, jittered, for as long as `retry_for` allows.
        let policy = RetryPolicy {
            attempts: u32::MAX,
            base: Duration::from_millis(50),
            max_delay: Duration::from_secs(5),
            jitter: true,
            max_total_delay: Some(self.cfg.retry_for),
        };
        let op = std::sync::Mutex::new(op);
        let op = &op;
        let not_replicated = |e: &QueueError| matches!(e, QueueError::NotReplicated { .. });
        policy
            .run(what, |_| async move {
                let res = async {
                    if !acked {
                        let c = self.shared().await?;
                        let fut = (op.lock().expect("retrying: op lock"))(c);
                        return fut.await;
                    }
                    // Held until the WAIT has answered: no other caller writes on it meanwhile.
                    let pooled = self.conn().await?;
                    let c = pooled.handle();
                    let fut = (op.lock().expect("retrying: op lock"))(c.clone());
                    let v = fut.await?;
                    self.wait_for_replicas(what, c).await?;
                    Ok(v)
                }
                .await;
                res.map_err(|e| {
                    if e.is_transient() && !not_replicated(&e) {
                        Failure::transient(e)
                    } else {
                        Failure::Permanent(e)
                    }
                })
            })
            .await
            .map_err(|x| {
                if x.error.is_transient() && !not_replicated(&x.error) {
                    QueueError::Unreachable {
                        url: self.shown_url(),
                        secs: self.cfg.retry_for.as_secs(),
                        last: x.error.to_string(),
                    }
                } else {
                    x.error
                }
            })
    }

    /// After a write on `c`: a write of the mark, then `WAIT` for the replicas asked for.
    async fn wait_for_replicas(&self, what: &str, mut c: SharedConnection) -> Result<()> {
        let wanted = self.cfg.min_replicas_ack;
        let wait_ms = self.cfg.replica_wait.as_millis() as u64;
        let (acked,): (u32,) = redis::pipe()
            .cmd("INCR")
            .arg(self.keys.ack_mark())
            .ignore()
            .cmd("WAIT")
            .arg(wanted)
            .arg(wait_ms)
            .query_async(&mut c)
            .await?;
        if acked < wanted {
            return Err(QueueError::NotReplicated {
                what: what.to_string(),
                acked,
                wanted,
                wait_ms,
                var: crate::config::ENV_MIN_REPLICAS_ACK,
            });
        }
        Ok(())
    }

    /// Redis server time in Unix ms.
    pub async fn time_ms(&self) -> Result<u64> {
        self.retrying("time", |mut c| async move {
            let (s, us): (u64, u64) = redis::cmd("TIME").query_async(&mut c).await?;
            Ok(s * 1000 + us / 1000)
        })
        .await
    }

    /// Enqueues one job.
    pub async fn enqueue(&self, req: EnqueueRequest) -> Result<Enqueued> {
        Ok(self.enqueue_many(vec![req]).await?.remove(0))
    }

    /// Enqueues many jobs in one atomic script call per 500 jobs.
    pub async fn enqueue_many(&self, reqs: Vec<EnqueueRequest>) -> Result<Vec<Enqueued>> {
        let mut prepared = Vec::with_capacity(reqs.len());
        // Whether every id was drawn here (none given): then the first try of a call needs no
        // existence check per job (`enqueue.lua`'s `fresh`).
        let mut drawn = true;
        for r in reqs {
            drawn &= r.id.is_none();
            prepared.push(r.into_envelope_in(&self.catalog)?);
        }
        let mut out = Vec::with_capacity(prepared.len());
        for chunk in prepared.chunks(500) {
            let ttl = self.cfg.result_ttl.as_millis() as u64;
            let mut tries = 0u32;
            let res: Vec<(String, i64)> = self
                .retrying_acked("enqueue", |mut c| {
                    tries += 1;
                    // a later try may follow one that was applied (its reply lost)
                    let fresh = drawn && tries == 1;
                    let mut inv = self.scripts.enqueue.prepare_invoke();
                    inv.arg(self.prefix())
                        .arg(ttl)
                        .arg(if fresh { "1" } else { "0" });
                    for (env, run_at, delay) in chunk {
                        inv.arg(&env.job_type)
                            .arg(&env.id)
                            .arg(env.to_json())
                            .arg(env.idempotency_key.as_deref().unwrap_or(""))
                            .arg(*run_at)
                            .arg(*delay)
                            .arg(env.bot_id.as_deref().unwrap_or(""));
                    }
                    async move { Ok(inv.invoke_async(&mut c).await?) }
                })
                .await?;
            out.extend(res.into_iter().map(|(id, created)| Enqueued {
                id,
                created: created == 1,
            }));
        }
        Ok(out)
    }

    /// The status record of a job, or `None` if unknown or expired.
    pub async fn status(&self, id: &str) -> Result<Option<JobStatus>> {
        let key = self.keys.job(id);
        let h: BTreeMap<String, String> = self
            .retrying("status", |mut c| {
                let key = key.clone();
                async move { Ok(c.hgetall(key).await?) }
            })
            .await?;
        if h.is_empty() {
            return Ok(None);
        }
        let num = |k: &str| h.get(k).and_then(|v| v.parse::<u64>().ok());
        let json = |k: &str| {
            h.get(k)
                .map(|v| serde_json::from_str(v).unwrap_or(serde_json::Value::String(v.clone())))
        };
        let payload = h
            .get("env")
            .and_then(|e| serde_json::from_str::<serde_json::Value>(e).ok())
            .and_then(|mut e| e.get_mut("payload").map(serde_json::Value::take));
        Ok(Some(JobStatus {
            id: id.to_string(),
            job_type: h.get("type").cloned().unwrap_or_default(),
            state: h.get("state").cloned().unwrap_or_else(|| "unknown".into()),
            attempt: num("attempt").unwrap_or(0) as u32,
            starts: num("starts").unwrap_or(0) as u32,
            payload,
            result: json("result").filter(|v| !v.is_null()),
            error: h.get("error").cloned(),
            progress: json("progress"),
            worker: h.get("worker").cloned(),
            enqueued_at_ms: num("enqueued_at"),
            started_at_ms: num("started_at"),
            finished_at_ms: num("finished_at"),
            cancel_requested: h.get("cancel").map(|v| v == "1").unwrap_or(false),
            bot_id: h.get("bot").filter(|b| !b.is_empty()).cloned(),
        }))
    }

    /// The outcomes of the children of flow parent `id` that have one (every child once the
    /// parent runs again), by child id.
    pub async fn children(&self, id: &str) -> Result<Vec<ChildOutcome>> {
        let key = self.keys.children(id);
        let h: BTreeMap<String, String> = self
            .retrying("children", |mut c| {
                let key = key.clone();
                async move { Ok(c.hgetall(key).await?) }
            })
            .await?;
        Ok(h.iter()
            .map(|(id, raw)| ChildOutcome::decode(id, raw))
            .collect())
    }

    /// The children of flow parent `id` that have no outcome yet (waiting or running).
    pub async fn pending_children(&self, id: &str) -> Result<Vec<String>> {
        let key = self.keys.pending(id);
        let mut ids: Vec<String> = self
            .retrying("pending children", |mut c| {
                let key = key.clone();
                async move { Ok(c.smembers(key).await?) }
            })
            .await?;
        ids.sort();
        Ok(ids)
    }

    /// Cancels a job: at once if not yet running, cooperatively if running (a job waiting
    /// for its children is cancelled with every child that has not ended).
    pub async fn cancel(&self, id: &str) -> Result<CancelOutcome> {
        let ttl = self.cfg.result_ttl.as_millis() as u64;
        let s: String = self
            .retrying("cancel", |mut c| {
                let mut inv = self.scripts.cancel.prepare_invoke();
                inv.arg(self.prefix()).arg(ttl).arg(id);
                async move { Ok(inv.invoke_async(&mut c).await?) }
            })
            .await?;
        Ok(match s.as_str() {
            "cancelled" => CancelOutcome::Cancelled,
            "cancelling" => CancelOutcome::Cancelling,
            "missing" => CancelOutcome::Missing,
            other => {
                CancelOutcome::AlreadyFinished(other.trim_start_matches("finished:").to_string())
            }
        })
    }

    /// Counts per job type, for every type in the catalog.
    pub async fn stats(&self) -> Result<Vec<TypeStats>> {
        let types: Vec<&str> = self.catalog.types().iter().map(|t| t.name).collect();
        self.stats_for(&types).await
    }

    /// Counts for the given types.
    pub async fn stats_for(&self, types: &[&str]) -> Result<Vec<TypeStats>> {
        self.retrying("stats", |mut c| async move {
            let now = {
                let (s, us): (u64, u64) = redis::cmd("TIME").query_async(&mut c).await?;
                s * 1000 + us / 1000
            };
            let mut out = Vec::new();
            for t in types {
                let stream = self.keys.stream(t);
                let len: u64 = c.xlen(&stream).await?;
                let pending: u64 = match redis::cmd("XPENDING")
                    .arg(&stream)
                    .arg(GROUP)
                    .query_async::<redis::Value>(&mut c)
                    .await
                {
                    Ok(redis::Value::Array(v)) => match v.first() {
                        Some(redis::Value::Int(n)) => *n as u64,
                        _ => 0,
                    },
                    Ok(_) => 0,
                    Err(e) if e.code() == Some("NOGROUP") => 0,
                    Err(e) => return Err(e.into()),
                };
                let first: redis::streams::StreamRangeReply =
                    c.xrange_count(&stream, "-", "+", 1).await?;
                let oldest_ms = first
                    .ids
                    .first()
                    .and_then(|e| e.id.split('-').next()?.parse::<u64>().ok())
                    .map(|ms| now.saturating_sub(ms))
                    .unwrap_or(0);
                let h: BTreeMap<String, u64> = c.hgetall(self.keys.stats(t)).await?;
                let g = |k: &str| h.get(k).copied().unwrap_or(0);
                out.push(TypeStats {
                    job_type: t.to_string(),
                    waiting: len.saturating_sub(pending),
                    in_flight: pending,
                    // Maintained by the scripts that add to / remove from `delayed`.
                    delayed: g("delayed_now"),
                    enqueued: g("enqueued"),
                    completed: g("completed"),
                    failed: g("failed"),
                    retried: g("retried"),
                    dead: g("dead"),
                    cancelled: g("cancelled"),
                    stalled: g("stalled"),
                    oldest_ms,
                });
            }
            Ok(out)
        })
        .await
    }

    /// The oldest `limit` dead letters.
    pub async fn dlq_list(&self, limit: usize) -> Result<Vec<DeadLetter>> {
        let key = self.keys.dlq();
        let reply: redis::streams::StreamRangeReply = self
            .retrying("dlq list", |mut c| {
                let key = key.clone();
                async move { Ok(c.xrange_count(key, "-", "+", limit).await?) }
            })
            .await?;
        Ok(reply
            .ids
            .into_iter()
            .map(|e| {
                let f = |k: &str| e.get::<String>(k).unwrap_or_default();
                DeadLetter {
                    id: f("id"),
                    job_type: f("type"),
                    error: f("error"),
                    at_ms: f("at").parse().unwrap_or(0),
                    job: f("job"),
                    dlq_id: e.id.clone(),
                }
            })
            .collect())
    }

    /// Puts dead letters back on their streams with a fresh attempt count.
    /// `ids` are dead-letter entry ids; empty means every retryable letter.
    /// Returns (requeued, skipped with reasons): a letter that does not decode, or whose
    /// job's record is not a hash (it stays in the dead letters until that key is deleted).
    pub async fn dlq_retry(&self, ids: &[String]) -> Result<(usize, Vec<String>)> {
        let letters = self.dlq_list(100_000).await?;
        let mut skipped = Vec::new();
        let mut batch = Vec::new();
        for l in letters {
            if !ids.is_empty() && !ids.contains(&l.dlq_id) {
                continue;
            }
            match JobEnvelope::from_json(&l.job) {
                Ok(mut env) => {
                    env.attempt = 0;
                    batch.push((l.dlq_id, env));
                }
                Err(e) => skipped.push(format!(
                    "{}: cannot be retried, its entry does not decode ({e})",
                    l.dlq_id
                )),
            }
        }
        let mut n = 0;
        for chunk in batch.chunks(200) {
            // {moved, then (letter id, record type) per letter left because its job's
            // record is not a hash}
            let reply: Vec<String> = self
                .retrying("dlq retry", |mut c| {
                    let mut inv = self.scripts.requeue.prepare_invoke();
                    inv.arg(self.prefix());
                    for (did, env) in chunk {
                        inv.arg(did)
                            .arg(&env.job_type)
                            .arg(&env.id)
                            .arg(env.to_json());
                    }
                    async move { Ok(inv.invoke_async(&mut c).await?) }
                })
                .await?;
            n += reply
                .first()
                .and_then(|m| m.parse::<usize>().ok())
                .unwrap_or(0);
            for left in reply.get(1..).unwrap_or_default().chunks(2) {
                let [did, kind] = left else { continue };
                let id = chunk
                    .iter()
                    .find(|(d, _)| d == did)
                    .map(|(_, env)| env.id.as_str())
                    .unwrap_or_default();
                skipped.push(format!(
                    "{did}: cannot be retried while `{}` holds a {kind}, not a hash (the \
                     job's record was overwritten); delete that key, then retry again",
                    self.keys.job(id)
                ));
            }
        }
        Ok((n, skipped))
    }

    /// Deletes every dead letter; returns how many.
    pub async fn dlq_purge(&self) -> Result<u64> {
        let key = self.keys.dlq();
        self.retrying("dlq purge", |mut c| {
            let key = key.clone();
            async move {
                let n: u64 = c.xlen(&key).await?;
                let _: () = c.del(&key).await?;
                Ok(n)
            }
        })
        .await
    }

    /// The schema version recorded by `synth-city migrate` (0 = never migrated).
    pub async fn schema_version(&self) -> Result<u32> {
        let key = self.keys.meta();
        self.retrying("schema version", |mut c| {
            let key = key.clone();
            async move {
                let v: Option<u32> = c.hget(key, "schema_version").await?;
                Ok(v.unwrap_or(0))
            }
        })
        .await
    }
}

/// The backoff of a long-lived loop (a worker's fetch loop, the scheduler's tick) while Redis
/// is away: 50 ms doubling to 5 s, jittered, reset after a success. Calls that give up use
/// [`jobs::retry::RetryPolicy`] instead (see [`Queue::retrying`]).
#[derive(Debug, Clone)]
pub struct Backoff {
    attempt: u32,
    base: Duration,
    cap: Duration,
}

impl Backoff {
    pub fn new() -> Self {
        Self::with(Duration::from_millis(50), Duration::from_secs(5))
    }

    pub fn with(base: Duration, cap: Duration) -> Self {
        Self {
            attempt: 0,
            base,
            cap,
        }
    }

    /// The next delay: uniform in [d/2, d] where d = min(cap, base * 2^attempt).
    pub fn next_delay(&mut self) -> Duration {
        let d = retry_delay(self.base, self.cap, self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        d
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

/// Exponential backoff with jitter for attempt `n` (0-based): a uniform draw
/// from [d/2, d], d = min(cap, base * 2^n). Jitter keeps a crowd of failed jobs
/// from retrying in lockstep.
pub fn retry_delay(base: Duration, cap: Duration, n: u32) -> Duration {
    use rand::Rng;
    let exp = base.saturating_mul(2u32.saturating_pow(n.min(30)));
    let d = exp.min(cap);
    let half = d / 2;
    let jitter_ms = rand::rng().random_range(0..=half.as_millis().max(1) as u64);
    half + Duration::from_millis(jitter_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_within_bounds() {
        let base = Duration::from_millis(100);
        let cap = Duration::from_secs(2);
        for n in 0..20 {
            let d = retry_delay(base, cap, n);
            let full = base.saturating_mul(2u32.pow(n.min(30))).min(cap);
            assert!(
                d >= full / 2 && d <= full + Duration::from_millis(1),
                "{n}: {d:?}"
            );
        }
    }

    #[test]
    fn enqueue_request_is_checked_against_the_catalog() {
        let err = EnqueueRequest::new("nope", serde_json::json!({}))
            .into_envelope()
            .unwrap_err();
        assert!(err.to_string().contains("unknown job type `nope`"));
        let err = EnqueueRequest::new("sleep", serde_json::json!({"ms": -1}))
            .into_envelope()
            .unwrap_err();
        assert!(err.to_string().contains("payload for `sleep`"), "{err}");
        let (env, _, _) = EnqueueRequest::new("sleep", serde_json::json!({"ms": 5}))
            .into_envelope()
            .unwrap();
        assert_eq!(env.max_attempts, 3);
        assert_eq!(env.attempt, 0);
    }
}
