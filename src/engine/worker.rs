//! The worker runtime: fetch, run, renew, finish, recover, shut down.
//!
//! One process runs these tasks around a shared table of in-flight jobs:
//!
//! - **fetch** (the main loop): waits for a free slot of `--concurrency`, then
//!   `XREADGROUP ... BLOCK` on its roles' streams, and starts what it gets; a read that
//!   found fewer entries than free slots (jobs trickling in) first gathers what arrives
//!   within `WorkerOptions::gather` (1 ms), so one call starts them together;
//! - **reclaim**: `XAUTOCLAIM`s entries idle longer than the lease — those of a
//!   worker that died — and starts them here (`start.lua` counts the stall);
//! - **lease keeper**: every lease/3 re-claims (`XCLAIM JUSTID`) the entries of
//!   running jobs so their idle time never reaches the lease, and trips a job's
//!   cancellation token when an operator cancelled it or the lease was lost;
//! - **finisher**: batches outcomes into `finish_start.lua` / `fail.lua` /
//!   `handback.lua` calls (and `fan_out.lua` for a job that waits for its
//!   children, `JobError::WaitForChildren`), retrying while Redis is away; a slot
//!   is freed only once its outcome is recorded. `finish_start.lua` also starts
//!   the entries the previous round trip read, and a plain `XREADGROUP` sent beside
//!   it reads new ones into the freed slots, so a steady worker makes one round
//!   trip (one script call) per batch; while the fetch loop
//!   waits on an empty stream, finishes linger (`WorkerOptions::linger`) for the
//!   fetch loop's call that starts the next job to record them;
//! - **promoter**, **heartbeat**, **gauges**, **progress**: small loops.
//!
//! Lease time is the entry's idle time in the consumer group's pending list,
//! measured by Redis, so no worker clock enters. Shutdown: stop fetching, wait
//! `grace` for running jobs, then cancel them and hand their entries back to the
//! stream without counting an attempt.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jobs::{JobContext, JobEnvelope, JobError, ProgressUpdate, Registry};
use redis::streams::{StreamAutoClaimOptions, StreamId, StreamReadOptions, StreamReadReply};
use redis::AsyncCommands;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::keys::GROUP;
use crate::metrics::Metrics;
use crate::queue::{retry_delay, Backoff, Queue, QueueError};

/// How a worker behaves. Defaults suit production; tests shorten the times.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Job types this worker runs.
    pub roles: Vec<String>,
    /// Jobs run at once.
    pub concurrency: usize,
    /// Most entries taken per read.
    pub batch: usize,
    /// Idle time after which another worker may take a job over.
    pub lease: Duration,
    /// How long one blocking read waits for work.
    pub block: Duration,
    /// Shutdown: how long running jobs get to finish.
    pub grace: Duration,
    /// First retry delay of a failed job; doubles per attempt up to `retry_cap`.
    pub retry_base: Duration,
    pub retry_cap: Duration,
    /// Heartbeat period (the registration expires after three).
    pub heartbeat: Duration,
    /// A readable name for this worker; a unique suffix is always added.
    pub name: Option<String>,
    /// The compute device its handlers train on (`cpu`, `cuda:0`), shown in its registration;
    /// the engine only reports it.
    pub device: Option<String>,
    /// How long a finish may wait, while the fetch loop waits on an empty stream, to ride
    /// with the start of the next job it reads (one `finish_start.lua` call for both instead
    /// of a finish call and a start call); zero: finishes never wait.
    pub linger: Duration,
    /// How long the fetch loop, having read fewer entries than it has free slots (jobs
    /// arriving one at a time), waits to gather more before it starts them, so that one
    /// script call starts (and records the lingering finishes of) several jobs rather than
    /// one each; a job starts up to this much later while the queue trickles, never while
    /// it has a backlog. Zero: what a read finds starts at once.
    pub gather: Duration,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        Self {
            roles: vec![],
            concurrency: 8,
            batch: 64,
            lease: Duration::from_secs(30),
            block: Duration::from_secs(1),
            grace: Duration::from_secs(30),
            retry_base: Duration::from_secs(1),
            retry_cap: Duration::from_secs(3600),
            heartbeat: Duration::from_secs(5),
            name: None,
            device: None,
            linger: Duration::from_millis(1),
            gather: Duration::from_millis(1),
        }
    }
}

/// What the worker reports about each recorded job, for benchmarks and tests.
#[derive(Debug, Clone)]
pub struct Observation {
    pub job_id: String,
    pub job_type: String,
    /// completed | cancelled | retrying | dead | handed_back
    pub outcome: &'static str,
    /// Enqueue (or ready) to recorded outcome, by the Redis clock.
    pub latency_ms: u64,
}

/// Why a running job's token was tripped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopReason {
    Cancelled,
    LeaseLost,
    Shutdown,
}

struct InFlight {
    job_type: String,
    stream_id: String,
    token: CancellationToken,
    reason: Arc<Mutex<Option<StopReason>>>,
}

/// An entry delivered to this worker and decoded.
struct Delivery {
    job_type: String,
    stream_id: String,
    raw: String,
    env: JobEnvelope,
    ready_at_ms: u64,
    /// A server time (ms) at or before which this entry was delivered to this worker by a
    /// plain read (`>`: its first delivery), from a `TIME` pipelined ahead of that read; 0
    /// when not known (a reclaimed entry). With half the lease it proves the entry is still
    /// this worker's (`owned_until`), so `start.lua` and `finish_start.lua` need not read the
    /// pending list.
    delivered_after_ms: u64,
    /// Which start of the job this worker runs (set by `start.lua`; 0 until then): with the
    /// stream id, the fencing token `finish.lua`, `fail.lua` and `fan_out.lua` check a
    /// retried call against (`fence` in `lua/common.lua`).
    starts: u32,
    /// What this worker's start read of the job's record (default until started), which its
    /// finish sends back instead of having the record read again.
    seen: Seen,
}

/// What a start (`start_batch`) read of a job's record, for its finish (`finish.lua`'s
/// `known` and `bot`).
#[derive(Debug, Default, PartialEq)]
struct Seen {
    /// The record's bot ("" = none).
    bot: String,
    /// The start looked for flow keys of the job's own (`fanned_by`) and found none
    /// (`start_batch`'s RUN, not RUN_READ).
    known: bool,
}

enum Outcome {
    Finish {
        state: &'static str,
        result: String,
    },
    Fail {
        error: String,
        retry_in: Option<Duration>,
        /// False for a deferral: no attempt is used.
        counts: bool,
    },
    HandBack,
    /// The handler handed its work to these children (`JobError::WaitForChildren`).
    Fan {
        children: Vec<JobEnvelope>,
    },
}

struct Done {
    d: Delivery,
    outcome: Outcome,
    run_time: Duration,
    /// The job's slot, freed once its outcome is recorded (or handed to the entry that
    /// `finish_start.lua` reads in the same call).
    permit: Option<OwnedSemaphorePermit>,
}

struct Inner {
    queue: Queue,
    registry: Registry,
    opts: WorkerOptions,
    id: String,
    metrics: Metrics,
    in_flight: Mutex<HashMap<String, InFlight>>,
    slots: Arc<Semaphore>,
    done_tx: mpsc::UnboundedSender<Done>,
    progress_tx: mpsc::UnboundedSender<ProgressUpdate>,
    observer: Option<mpsc::UnboundedSender<Observation>>,
    processed: std::sync::atomic::AtomicU64,
    /// True while the fetch loop's blocking read waits (its stream had nothing for it), or
    /// gathers what arrives after a short read (`WorkerOptions::gather`).
    fetch_waiting: std::sync::atomic::AtomicBool,
    /// True while the fetch loop's last read found fewer entries than it asked for (jobs
    /// trickle in): its next start call is soon, so finishes linger for it even while it
    /// is busy between reads.
    trickle: std::sync::atomic::AtomicBool,
    /// Finishes the finisher left, while the fetch loop waited, for the fetch loop's next
    /// start call to record (`WorkerOptions::linger`); the finisher takes back what is
    /// left when the linger is over.
    lingering: Mutex<Vec<Done>>,
    /// Wakes the local promoter when this worker schedules a retry.
    promote_now: tokio::sync::Notify,
    /// Fires when the worker is asked to stop fetching.
    shutdown: CancellationToken,
    /// Fires when the finisher must stop; unrecorded outcomes are left to the
    /// reclaimer rather than holding the process hostage while Redis is away.
    closing: CancellationToken,
}

/// A worker process's runtime.
pub struct Worker {
    queue: Queue,
    registry: Registry,
    opts: WorkerOptions,
    metrics: Metrics,
    observer: Option<mpsc::UnboundedSender<Observation>>,
    id: String,
}

impl Worker {
    /// Builds a worker; `registry` must hold a handler for every role.
    pub fn new(queue: Queue, registry: Registry, opts: WorkerOptions) -> Result<Self, QueueError> {
        if opts.roles.is_empty() {
            return Err(QueueError::Invalid(
                "a worker needs at least one role".into(),
            ));
        }
        for r in &opts.roles {
            queue.catalog().find(r)?;
            if registry.get(r).is_none() {
                return Err(QueueError::Invalid(format!(
                    "no handler for job type `{r}` in this build; handlers: {}",
                    registry.types().join(", ")
                )));
            }
        }
        if opts.concurrency == 0 || opts.batch == 0 {
            return Err(QueueError::Invalid(
                "concurrency and batch must be at least 1".into(),
            ));
        }
        if opts.lease < Duration::from_millis(300) {
            return Err(QueueError::Invalid("lease must be at least 300 ms".into()));
        }
        let host = hostname::get()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "host".into());
        // Unique per process: a reused consumer name would inherit a dead
        // process's pending entries and never see them as orphans.
        let id = format!(
            "{}-{}-{}",
            opts.name.clone().unwrap_or(host),
            std::process::id(),
            &ulid::Ulid::new().to_string()[20..]
        );
        let metrics = Metrics::new();
        metrics.init_types(&opts.roles);
        metrics.slots.set(opts.concurrency as i64);
        Ok(Self {
            queue,
            registry,
            opts,
            metrics,
            observer: None,
            id,
        })
    }

    /// The consumer name this worker reads under.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The worker's metrics (to serve them).
    pub fn metrics(&self) -> Metrics {
        self.metrics.clone()
    }

    /// Sends an [`Observation`] for every recorded outcome.
    pub fn observe(&mut self, tx: mpsc::UnboundedSender<Observation>) {
        self.observer = Some(tx);
    }

    /// Runs until `shutdown` fires, then drains and returns.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), QueueError> {
        crate::migrate::check_schema(&self.queue).await?;
        crate::migrate::ensure_groups(&self.queue, &self.opts.roles).await?;
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let (progress_tx, progress_rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            slots: Arc::new(Semaphore::new(self.opts.concurrency)),
            queue: self.queue,
            registry: self.registry,
            opts: self.opts,
            id: self.id,
            metrics: self.metrics,
            in_flight: Mutex::new(HashMap::new()),
            done_tx,
            progress_tx,
            observer: self.observer,
            processed: Default::default(),
            fetch_waiting: Default::default(),
            trickle: Default::default(),
            lingering: Mutex::new(Vec::new()),
            promote_now: tokio::sync::Notify::new(),
            shutdown: shutdown.clone(),
            closing: CancellationToken::new(),
        });
        tracing::info!(worker = %inner.id, roles = ?inner.opts.roles,
            concurrency = inner.opts.concurrency, "worker started");

        let bg = CancellationToken::new();
        let finisher = tokio::spawn(finisher(inner.clone(), done_rx, inner.closing.clone()));
        let tasks = vec![
            tokio::spawn(lease_keeper(inner.clone(), bg.clone())),
            tokio::spawn(reclaimer(inner.clone(), shutdown.clone())),
            tokio::spawn(promoter(inner.clone(), bg.clone())),
            tokio::spawn(heartbeat(inner.clone(), bg.clone())),
            tokio::spawn(gauges(inner.clone(), bg.clone())),
            tokio::spawn(progress_writer(inner.clone(), progress_rx, bg.clone())),
        ];

        fetch_loop(&inner, &shutdown).await;

        // Drain: running jobs get `grace`, then are cancelled and handed back.
        tracing::info!(worker = %inner.id, "shutting down: no new jobs");
        let all = inner.opts.concurrency as u32;
        let drained = tokio::time::timeout(inner.opts.grace, inner.slots.acquire_many(all)).await;
        if drained.is_err() {
            let n = {
                let map = inner.in_flight.lock().unwrap();
                for f in map.values() {
                    *f.reason.lock().unwrap() = Some(StopReason::Shutdown);
                    f.token.cancel();
                }
                map.len()
            };
            tracing::warn!(worker = %inner.id, jobs = n,
                "grace period over: cancelling running jobs and handing them back");
            let _ =
                tokio::time::timeout(Duration::from_secs(10), inner.slots.acquire_many(all)).await;
        }
        bg.cancel();
        for t in tasks {
            let _ = t.await;
        }
        inner.closing.cancel();
        let _ = finisher.await;
        deregister(&inner.queue, &inner.id).await;
        tracing::info!(worker = %inner.id, "worker stopped");
        Ok(())
    }
}

async fn fetch_loop(inner: &Arc<Inner>, shutdown: &CancellationToken) {
    let streams: Vec<String> = inner
        .opts
        .roles
        .iter()
        .map(|r| inner.queue.keys().stream(r))
        .collect();
    let ids: Vec<&str> = streams.iter().map(|_| ">").collect();
    let mut conn: Option<redis::aio::MultiplexedConnection> = None;
    let mut backoff = Backoff::new();
    while !shutdown.is_cancelled() {
        let first = tokio::select! {
            p = inner.slots.clone().acquire_owned() => p.expect("semaphore never closes"),
            _ = shutdown.cancelled() => break,
        };
        let slots = more_slots(inner, first);
        if conn.is_none() {
            match inner
                .queue
                .dedicated(inner.opts.block + Duration::from_secs(5))
                .await
            {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    let wait = backoff.next_delay();
                    tracing::warn!(%e, ?wait, "fetch: cannot connect to redis, retrying");
                    drop(slots);
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = shutdown.cancelled() => break,
                    }
                    continue;
                }
            }
        }
        let c = conn.as_mut().expect("connected above");
        let opts = StreamReadOptions::default()
            .group(GROUP, &inner.id)
            .count(slots.num_permits())
            .block(inner.opts.block.as_millis() as usize);
        inner.fetch_waiting.store(true, Ordering::Relaxed);
        let reply: redis::RedisResult<(ServerTime, Option<StreamReadReply>)> = redis::pipe()
            .cmd("TIME")
            .xread_options(&streams, &ids, &opts)
            .query_async(c)
            .await;
        match reply {
            Ok((t, Some(reply))) => {
                backoff.reset();
                let mut entries = Vec::new();
                push_entries(inner, &mut entries, reply);
                let asked = slots.num_permits();
                let short = entries.len() < asked;
                inner.trickle.store(short, Ordering::Relaxed);
                if short && !inner.opts.gather.is_zero() {
                    gather(inner, c, &streams, &ids, asked, &mut entries, shutdown).await;
                }
                inner.fetch_waiting.store(false, Ordering::Relaxed);
                let permits = one_each(slots, entries.len());
                start_entries(inner, entries, t.0, permits).await;
            }
            Ok((_, None)) => {
                inner.fetch_waiting.store(false, Ordering::Relaxed);
                inner.trickle.store(false, Ordering::Relaxed);
                backoff.reset()
            }
            Err(e) => {
                inner.fetch_waiting.store(false, Ordering::Relaxed);
                inner.trickle.store(false, Ordering::Relaxed);
                drop(slots);
                conn = None;
                if e.code() == Some("NOGROUP") {
                    // The stream or group was deleted under us (e.g. FLUSHALL): recreate.
                    let _ = crate::migrate::ensure_groups(&inner.queue, &inner.opts.roles).await;
                }
                let wait = backoff.next_delay();
                tracing::warn!(%e, ?wait, "fetch: read failed, retrying");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.cancelled() => break,
                }
            }
        }
    }
}

/// `TIME`'s reply, pipelined ahead of a read: a server time at or before which what the read
/// returns was delivered.
struct ServerTime(u64);

impl redis::FromRedisValue for ServerTime {
    fn from_redis_value(v: redis::Value) -> Result<Self, redis::ParsingError> {
        let (s, us): (u64, u64) = redis::from_redis_value(v)?;
        Ok(ServerTime(s * 1000 + us / 1000))
    }
}

/// Appends a read's entries to `entries`, each with its job type (its stream's role).
fn push_entries(inner: &Inner, entries: &mut Vec<(String, StreamId)>, reply: StreamReadReply) {
    for k in reply.keys {
        let t = type_of_stream(inner, &k.key);
        entries.extend(k.ids.into_iter().map(|e| (t.clone(), e)));
    }
}

/// After a short read (fewer entries than the `asked` free slots: jobs trickle in), waits
/// `WorkerOptions::gather` (or until shutdown), then takes what arrived meanwhile by one
/// `XREADGROUP` without `BLOCK`, so that one start call serves them all. A failed read
/// takes nothing (logged): what it may have taken stays pending with this worker, and the
/// reclaimer offers it again after the lease, as for the blocking read.
async fn gather(
    inner: &Inner,
    c: &mut redis::aio::MultiplexedConnection,
    streams: &[String],
    ids: &[&str],
    asked: usize,
    entries: &mut Vec<(String, StreamId)>,
    shutdown: &CancellationToken,
) {
    tokio::select! {
        _ = tokio::time::sleep(inner.opts.gather) => {}
        _ = shutdown.cancelled() => return,
    }
    let opts = StreamReadOptions::default()
        .group(GROUP, &inner.id)
        .count(asked - entries.len());
    match c.xread_options(streams, ids, &opts).await {
        Ok(Some(reply)) => push_entries(inner, entries, reply),
        Ok(None) => {}
        Err(e) => tracing::warn!(%e, "fetch: gathering read failed; starting what was read"),
    }
}

/// `first` and as many more free slots as are there, up to the batch size, as one permit
/// (one semaphore operation, rather than one per slot).
fn more_slots(inner: &Inner, mut first: OwnedSemaphorePermit) -> OwnedSemaphorePermit {
    let more = (inner.opts.batch - 1).min(inner.slots.available_permits());
    if more > 0 {
        if let Ok(p) = inner.slots.clone().try_acquire_many_owned(more as u32) {
            first.merge(p);
        }
    }
    first
}

/// `n` permits of one slot each, split off `all` (as many as it holds); its other slots
/// are freed at once when it drops.
fn one_each(mut all: OwnedSemaphorePermit, n: usize) -> Vec<OwnedSemaphorePermit> {
    (0..n).map_while(|_| all.split(1)).collect()
}

fn type_of_stream(inner: &Inner, stream: &str) -> String {
    inner
        .opts
        .roles
        .iter()
        .find(|r| inner.queue.keys().stream(r) == stream)
        .cloned()
        .unwrap_or_default()
}

/// Decodes delivered entries, dead-letters the malformed ones, marks the rest
/// started (one script call per type) and spawns them. Takes one permit per
/// entry, waiting for more if the read returned more than it had.
///
/// `start.lua` is all or nothing per entry: an entry it cannot start (its record
/// overwritten, or delivered more than [`QueueConfig::max_deliveries`] times) comes back
/// dead-lettered with its reason while the others start.
///
/// [`QueueConfig::max_deliveries`]: crate::config::QueueConfig::max_deliveries
async fn start_entries(
    inner: &Arc<Inner>,
    entries: Vec<(String, StreamId)>,
    delivered_after_ms: u64,
    permits: Vec<OwnedSemaphorePermit>,
) {
    let mut by_type: Vec<(String, Vec<Delivery>)> = Vec::new();
    for (job_type, entry) in entries {
        match decode(&job_type, &entry) {
            Ok(mut d) => {
                d.delivered_after_ms = delivered_after_ms;
                push_by_type(&mut by_type, d)
            }
            Err(bad) => bury_raw(inner, &job_type, &entry, bad).await,
        }
    }
    // Finishes that lingered for this call (the finisher left them while this loop waited):
    // one `finish_start.lua` call records them and starts these entries.
    if !by_type.is_empty() {
        let lingering = std::mem::take(&mut *inner.lingering.lock().unwrap());
        if !lingering.is_empty() {
            let next = Next { by_type, permits };
            let read = finish_and_start(inner, lingering, next, false).await;
            debug_assert!(read.is_empty(), "a call that may not read read entries");
            return;
        }
    }
    start_deliveries(inner, by_type, permits, false).await;
}

/// Adds `d` to its type's group, in first-seen order.
fn push_by_type(by_type: &mut Vec<(String, Vec<Delivery>)>, d: Delivery) {
    match by_type.iter_mut().find(|(t, _)| *t == d.job_type) {
        Some((_, ds)) => ds.push(d),
        None => by_type.push((d.job_type.clone(), vec![d])),
    }
}

/// Marks decoded deliveries started, one `start.lua` call per type, and acts on the
/// answers ([`on_started`]). `retried`: the first call already is a retry of one whose
/// reply was lost (`finish_start.lua`'s, when it failed).
async fn start_deliveries(
    inner: &Arc<Inner>,
    by_type: Vec<(String, Vec<Delivery>)>,
    mut permits: Vec<OwnedSemaphorePermit>,
    mut retried: bool,
) {
    for (job_type, deliveries) in by_type {
        let started = loop {
            let cfg = inner.queue.config();
            let mut inv = inner.queue.scripts().start.prepare_invoke();
            inv.arg(inner.queue.prefix())
                .arg(&job_type)
                .arg(&inner.id)
                .arg(cfg.max_deliveries)
                .arg(inner.queue.retention_arg())
                .arg(if retried { "1" } else { "0" })
                // the lease proof (`owned_until`); a retry proves nothing
                .arg(if retried {
                    0
                } else {
                    owned_until(inner, deliveries.iter())
                });
            for d in &deliveries {
                inv.arg(&d.stream_id)
                    .arg(&d.env.id)
                    .arg(d.env.max_attempts)
                    .arg(parent_of(&d.env));
            }
            // The batch connection: no pool checkout (and its PING) per batch.
            let res: Result<(u64, Vec<Started>), QueueError> = async {
                let mut c = inner.queue.batch_conn().await?;
                let (now, flat, reasons, bots): (u64, Vec<u32>, Vec<String>, Vec<String>) =
                    inv.invoke_async(&mut c).await?;
                Ok((now, start_answers(&flat, reasons, bots)))
            }
            .await;
            match res {
                Ok(v) => break v,
                Err(e) if e.is_transient() && !inner.shutdown.is_cancelled() => {
                    tracing::warn!(%e, "start: redis unavailable, retrying");
                    // The call may have been applied with its reply lost: the retry
                    // answers this worker's own starts again instead of counting stalls.
                    retried = true;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => {
                    // Nothing was written (the script checks before it writes); left
                    // pending, the reclaimer offers them again after the lease.
                    tracing::error!(%e, r#type = %job_type,
                        "start: script failed before any write; entries stay pending");
                    break (0, Vec::new());
                }
            }
        };
        let (now, started) = started;
        on_started(inner, deliveries, now, started, &mut permits).await;
    }
}

/// Acts on the start scripts' answer per delivery (`now`: the call's server time): `run`
/// spawns the job with a slot from `permits` (waiting for one if none is left), `dead`
/// (dead-lettered at start) is counted and observed, `skip` is dropped.
async fn on_started(
    inner: &Arc<Inner>,
    deliveries: Vec<Delivery>,
    now: u64,
    started: Vec<Started>,
    permits: &mut Vec<OwnedSemaphorePermit>,
) {
    for (d, answer) in deliveries.into_iter().zip(started) {
        match answer {
            Started::Run {
                attempt,
                starts,
                seen,
            } => {
                let permit = match permits.pop() {
                    Some(p) => p,
                    None => inner
                        .slots
                        .clone()
                        .acquire_owned()
                        .await
                        .expect("semaphore never closes"),
                };
                let wait = now.saturating_sub(d.ready_at_ms);
                inner
                    .metrics
                    .wait_seconds
                    .with_label_values(&[&d.job_type])
                    .observe(wait as f64 / 1000.0);
                spawn_job(inner, d, attempt, starts, seen, permit);
            }
            Started::Dead { attempt, reason } => {
                inner.metrics.dead.with_label_values(&[&d.job_type]).inc();
                tracing::warn!(job = %d.env.id, r#type = %d.job_type, attempt, %reason,
                    "job dead-lettered at start");
                observe(inner, &d, "dead", now);
            }
            Started::Skip => {
                tracing::debug!(job = %d.env.id, "skipped: already finished or cancelled")
            }
        }
    }
}

/// One entry's answer from `start_batch` (`start.lua`, `finish_start.lua`).
#[derive(Debug, PartialEq)]
enum Started {
    /// Marked active: run it (its attempt, the start it is, for the fencing token, and what
    /// was read of its record).
    Run {
        attempt: u32,
        starts: u32,
        seen: Seen,
    },
    /// Dead-lettered at start, and why.
    Dead { attempt: u32, reason: String },
    /// Already finished or cancelled, or no longer this worker's.
    Skip,
}

/// Reads `start_batch`'s answers: flat, three integers per entry (code: 0 skip, 1 run,
/// 2 dead, 3 run and let the finish read the record; attempt; starts), the dead entries'
/// reasons and the runs' bots, each in order.
fn start_answers(flat: &[u32], reasons: Vec<String>, bots: Vec<String>) -> Vec<Started> {
    let mut reasons = reasons.into_iter();
    let mut bots = bots.into_iter();
    flat.chunks_exact(3)
        .map(|a| match a[0] {
            1 | 3 => Started::Run {
                attempt: a[1],
                starts: a[2],
                seen: Seen {
                    bot: bots.next().unwrap_or_default(),
                    known: a[0] == 1,
                },
            },
            2 => Started::Dead {
                attempt: a[1],
                reason: reasons.next().unwrap_or_default(),
            },
            _ => Started::Skip,
        })
        .collect()
}

/// An entry that does not decode: why, and the job id and flow parent it names (`''` when
/// it names none), so its record and its parent still learn that it is dead.
struct Undecodable {
    reason: String,
    id: String,
    parent: String,
}

impl Undecodable {
    fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            id: String::new(),
            parent: String::new(),
        }
    }
}

/// The flow parent an envelope names, `""` for none (the scripts' argument).
fn parent_of(env: &JobEnvelope) -> &str {
    env.parent.as_deref().unwrap_or("")
}

fn decode(job_type: &str, entry: &StreamId) -> Result<Delivery, Undecodable> {
    let Some(field) = entry.map.get("job") else {
        return Err(Undecodable::new("stream entry has no `job` field"));
    };
    let raw = match redis::from_redis_value_ref::<Vec<u8>>(field).map(String::from_utf8) {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            return Err(Undecodable::new(format!(
                "field `job` is not UTF-8 (invalid byte at {} of {}): an envelope is JSON \
                 text; the producer wrote bytes",
                e.utf8_error().valid_up_to(),
                e.as_bytes().len()
            )))
        }
        Err(_) => {
            return Err(Undecodable::new(format!(
                "field `job` is not a string ({field:?})"
            )))
        }
    };
    let env = JobEnvelope::from_json(&raw).map_err(|reason| {
        let v = serde_json::from_str::<serde_json::Value>(&raw).ok();
        let text = |k: &str| {
            v.as_ref()
                .and_then(|v| v.get(k)?.as_str().map(str::to_string))
                .unwrap_or_default()
        };
        Undecodable {
            reason: reason.to_string(),
            id: text("id"),
            parent: text("parent"),
        }
    })?;
    if env.job_type != job_type {
        return Err(Undecodable {
            reason: format!(
                "envelope type `{}` does not match its stream `{job_type}`",
                env.job_type
            ),
            parent: parent_of(&env).to_string(),
            id: env.id,
        });
    }
    let ready_at_ms = entry
        .get::<String>("at")
        .and_then(|s| s.parse().ok())
        .or_else(|| entry.id.split('-').next()?.parse().ok())
        .unwrap_or(0);
    Ok(Delivery {
        job_type: job_type.to_string(),
        stream_id: entry.id.clone(),
        raw,
        env,
        ready_at_ms,
        delivered_after_ms: 0,
        starts: 0,
        seen: Seen::default(),
    })
}

async fn bury_raw(inner: &Inner, job_type: &str, entry: &StreamId, bad: Undecodable) {
    let Undecodable { reason, id, parent } = bad;
    let fields: serde_json::Map<String, serde_json::Value> = entry
        .map
        .iter()
        .map(|(k, v)| {
            let s = redis::from_redis_value_ref::<String>(v).unwrap_or_else(|_| format!("{v:?}"));
            (k.clone(), serde_json::Value::String(s))
        })
        .collect();
    // Keep the envelope itself when there is one, so `dlq retry` can use it.
    let raw = match fields.get("job") {
        Some(serde_json::Value::String(job)) => job.clone(),
        _ => serde_json::Value::Object(fields).to_string(),
    };
    tracing::warn!(stream_id = %entry.id, r#type = job_type, %reason, "malformed entry dead-lettered");
    let mut inv = inner.queue.scripts().bury_raw.prepare_invoke();
    inv.arg(inner.queue.prefix())
        .arg(&inner.id)
        .arg(job_type)
        .arg(&entry.id)
        .arg(raw)
        .arg(format!("malformed entry: {reason}"))
        .arg(id)
        .arg(parent);
    let res: Result<i64, QueueError> = async {
        let mut c = inner.queue.conn().await?;
        Ok(inv.invoke_async(&mut c).await?)
    }
    .await;
    match res {
        Ok(_) => inner.metrics.dead.with_label_values(&[job_type]).inc(),
        Err(e) => tracing::error!(%e, "could not dead-letter a malformed entry; it stays pending"),
    }
}

fn spawn_job(
    inner: &Arc<Inner>,
    mut d: Delivery,
    attempt: u32,
    starts: u32,
    seen: Seen,
    permit: OwnedSemaphorePermit,
) {
    d.starts = starts;
    d.seen = seen;
    let token = CancellationToken::new();
    let reason = Arc::new(Mutex::new(None));
    inner.in_flight.lock().unwrap().insert(
        d.env.id.clone(),
        InFlight {
            job_type: d.job_type.clone(),
            stream_id: d.stream_id.clone(),
            token: token.clone(),
            reason: reason.clone(),
        },
    );
    inner
        .metrics
        .in_flight
        .with_label_values(&[&d.job_type])
        .inc();
    let inner = inner.clone();
    tokio::spawn(async move {
        let handler = inner
            .registry
            .get(&d.job_type)
            .expect("roles are checked against the registry at start");
        let ctx = JobContext::new(
            d.env.id.clone(),
            d.job_type.clone(),
            attempt,
            d.env.max_attempts,
            format!("{}/{starts}", d.stream_id),
            d.env.run_id.clone(),
            d.env.bot_id.clone(),
            token.clone(),
            Some(inner.progress_tx.clone()),
        );
        let t0 = Instant::now();
        let timeout = Duration::from_millis(d.env.timeout_ms);
        // The handler runs in its own task so that a panic is caught as a failure.
        let handle = tokio::spawn({
            // Moved, not cloned: a failure re-reads it from `raw` (`record_fail`).
            let payload = std::mem::take(&mut d.env.payload);
            async move { handler.handle(ctx, payload).await }
        });
        let abort = handle.abort_handle();
        let res = tokio::time::timeout(timeout, handle).await;
        let run_time = t0.elapsed();
        let stop = *reason.lock().unwrap();
        let outcome = match (stop, res) {
            (Some(StopReason::Shutdown), _) => {
                abort.abort();
                Outcome::HandBack
            }
            (_, Err(_elapsed)) => {
                token.cancel();
                abort.abort();
                failure(
                    &inner,
                    &d,
                    attempt,
                    JobError::retry(format!("timed out after {} ms", d.env.timeout_ms)),
                )
            }
            (_, Ok(Err(join))) => failure(
                &inner,
                &d,
                attempt,
                JobError::retry(format!("handler panicked: {join}")),
            ),
            (Some(StopReason::Cancelled), Ok(Ok(_))) => Outcome::Finish {
                state: "cancelled",
                result: "null".into(),
            },
            (_, Ok(Ok(Ok(v)))) => Outcome::Finish {
                state: "completed",
                result: v.to_string(),
            },
            (_, Ok(Ok(Err(JobError::Cancelled)))) => Outcome::Finish {
                state: "cancelled",
                result: "null".into(),
            },
            (_, Ok(Ok(Err(e)))) => failure(&inner, &d, attempt, e),
        };
        let _ = inner.done_tx.send(Done {
            d,
            outcome,
            run_time,
            permit: Some(permit),
        });
    });
}

fn failure(inner: &Inner, d: &Delivery, attempt: u32, e: JobError) -> Outcome {
    if let JobError::WaitForChildren(children) = e {
        return Outcome::Fan { children };
    }
    if let JobError::Defer {
        retry_in_ms,
        reason,
    } = e
    {
        return Outcome::Fail {
            error: reason,
            retry_in: Some(Duration::from_millis(retry_in_ms)),
            counts: false,
        };
    }
    let next = attempt + 1;
    let retry_in = (e.is_retryable() && next < d.env.max_attempts)
        .then(|| retry_delay(inner.opts.retry_base, inner.opts.retry_cap, attempt));
    let error = match &e {
        JobError::Retryable(_) if retry_in.is_none() => {
            format!("{e} (attempt {next} of {})", d.env.max_attempts)
        }
        JobError::Permanent(_) => format!("non-retryable: {e}"),
        _ => e.to_string(),
    };
    Outcome::Fail {
        error,
        retry_in,
        counts: true,
    }
}

/// Entries the finisher read with its last `finish_start.lua` call, decoded, each with a
/// slot (permit), for its next call to start.
#[derive(Default)]
struct Next {
    by_type: Vec<(String, Vec<Delivery>)>,
    permits: Vec<OwnedSemaphorePermit>,
}

impl Next {
    fn is_empty(&self) -> bool {
        self.by_type.is_empty()
    }
}

/// Records outcomes in Redis, batching successes. A slot is released (the
/// permit dropped) only after its outcome is recorded or found stale.
///
/// Finishes go with `finish_start.lua`, which also starts the entries the previous call
/// read and reads new ones into the slots that the finishes free: a steady worker makes one
/// script call per batch, and the fetch loop's blocking read serves what is left (an idle
/// queue, slots this loop did not fill). While that read waits on an empty stream (jobs
/// arrive one at a time), finishes linger up to `WorkerOptions::linger` in
/// `Inner::lingering`: the fetch loop's call that starts the next job records them too
/// (`start_entries`), so such a job costs two round trips (the read and one script call)
/// instead of three.
async fn finisher(
    inner: Arc<Inner>,
    mut rx: mpsc::UnboundedReceiver<Done>,
    stop: CancellationToken,
) {
    let mut buf = Vec::new();
    let mut next = Next::default();
    // When the finishes left in `inner.lingering` are taken back (None: none left there).
    let mut linger_until: Option<tokio::time::Instant> = None;
    loop {
        let mut linger_over = false;
        if next.is_empty() {
            // Stops only once told to and nothing is left to record.
            let n = tokio::select! {
                n = rx.recv_many(&mut buf, 256) => n,
                _ = tokio::time::sleep_until(linger_until.unwrap_or_else(tokio::time::Instant::now)),
                    if linger_until.is_some() => {
                    linger_over = true;
                    0
                }
                // Shutting down: the drain waits for these slots, so they go now.
                _ = inner.shutdown.cancelled(), if linger_until.is_some() => {
                    linger_over = true;
                    0
                }
                _ = stop.cancelled() => {
                    while let Ok(d) = rx.try_recv() {
                        buf.push(d);
                    }
                    if buf.is_empty() && inner.lingering.lock().unwrap().is_empty() {
                        return;
                    }
                    // (what lingers is taken back below: the worker is stopping)
                    buf.len()
                }
            };
            if n == 0 && !linger_over {
                // The channel closed: record what lingers, then stop.
                if inner.lingering.lock().unwrap().is_empty() {
                    return;
                }
                linger_over = true;
            }
        } else {
            // Entries wait to start: go now, with the outcomes already here (a short job
            // that the last call started may have finished meanwhile).
            tokio::task::yield_now().await;
            while buf.len() < 256 {
                match rx.try_recv() {
                    Ok(d) => buf.push(d),
                    Err(_) => break,
                }
            }
        }
        let batch = std::mem::take(&mut buf);
        let (mut finishes, rest): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .partition(|d| matches!(d.outcome, Outcome::Finish { .. }));
        if stop.is_cancelled() && !next.is_empty() {
            // Closing: what was read stays pending, for the reclaimer.
            next = Next::default();
        }
        // Linger only while the fetch loop waits on an empty stream, nothing read waits to
        // start, and the worker is not stopping.
        let idle = !inner.opts.linger.is_zero()
            && next.is_empty()
            && (inner.fetch_waiting.load(Ordering::Relaxed)
                // (busy between reads of a trickle, with a slot free for its next read)
                || (inner.trickle.load(Ordering::Relaxed) && inner.slots.available_permits() > 0))
            && !stop.is_cancelled()
            && !inner.shutdown.is_cancelled();
        {
            let mut lingering = inner.lingering.lock().unwrap();
            if idle && !linger_over {
                if !finishes.is_empty() {
                    lingering.append(&mut finishes);
                    linger_until.get_or_insert_with(|| {
                        // the fetch loop's next start call may gather first
                        tokio::time::Instant::now() + inner.opts.linger + inner.opts.gather
                    });
                }
            } else {
                // Over, or the fetch loop is busy: what it did not take goes now.
                finishes.append(&mut lingering);
                linger_until = None;
            }
            if lingering.is_empty() {
                linger_until = None;
            }
        }
        if !finishes.is_empty() || !next.is_empty() {
            next = finish_and_start(&inner, finishes, std::mem::take(&mut next), true).await;
        }
        let (handbacks, fails): (Vec<_>, Vec<_>) = rest
            .into_iter()
            .partition(|d| matches!(d.outcome, Outcome::HandBack));
        for f in fails {
            if matches!(f.outcome, Outcome::Fan { .. }) {
                record_fan(&inner, f).await;
            } else {
                record_fail(&inner, f).await;
            }
        }
        if !handbacks.is_empty() {
            record_handbacks(&inner, handbacks).await;
        }
    }
}

/// `finish_start.lua`'s reply: server time, a code per finish, per group of starts its type,
/// answers, dead entries' reasons and runs' bots (`start_answers`).
type FinishStartReply = (
    u64,
    Vec<u64>,
    Vec<(String, Vec<u32>, Vec<String>, Vec<String>)>,
);

/// The finisher's read: up to `n` new entries over the worker's roles, each role's share
/// (`n` split evenly, so the whole never exceeds the slots it was sized for) by a plain
/// `XREADGROUP` (no `BLOCK`), the roles' reads pipelined. Sent beside a `finish_start.lua`
/// call on the same connection, so both take one round trip; reading inside the script
/// cost Redis about 25k more instructions per entry (the reply converted into Lua and back
/// out, measured under callgrind). A failed read reads nothing (logged): whatever it may
/// have taken stays pending with this worker, and the reclaimer offers it again after the
/// lease, as for the fetch loop's reads.
async fn read_more(inner: &Inner, n: usize) -> (u64, Vec<(String, StreamId)>) {
    let roles = &inner.opts.roles;
    if n == 0 || roles.is_empty() {
        return (0, Vec::new());
    }
    let mut pipe = redis::pipe();
    // a server time at or before which what the reads return is delivered
    pipe.cmd("TIME");
    let mut asked = Vec::new();
    for (i, role) in roles.iter().enumerate() {
        let share = n / roles.len() + usize::from(i < n % roles.len());
        if share == 0 {
            continue;
        }
        pipe.cmd("XREADGROUP")
            .arg("GROUP")
            .arg(GROUP)
            .arg(&inner.id)
            .arg("COUNT")
            .arg(share)
            .arg("STREAMS")
            .arg(inner.queue.keys().stream(role))
            .arg(">");
        asked.push(role);
    }
    let res: Result<(ServerTime, Vec<Option<StreamReadReply>>), QueueError> = async {
        let mut c = inner.queue.batch_conn().await?;
        let mut replies: Vec<redis::Value> = pipe.query_async(&mut c).await?;
        let time = redis::from_redis_value(replies.remove(0)).map_err(redis::RedisError::from)?;
        let reads = replies
            .into_iter()
            .map(redis::from_redis_value)
            .collect::<Result<_, _>>()
            .map_err(redis::RedisError::from)?;
        Ok((time, reads))
    }
    .await;
    match res {
        Ok((time, replies)) => (
            time.0,
            replies
                .into_iter()
                .zip(asked)
                .flat_map(|(reply, role)| {
                    reply
                        .into_iter()
                        .flat_map(|r| r.keys)
                        .flat_map(|k| k.ids)
                        .map(move |e| (role.clone(), e))
                })
                .collect(),
        ),
        Err(e) => {
            tracing::warn!(%e, "finish: read failed; the fetch loop reads instead");
            (0, Vec::new())
        }
    }
}

/// One `finish_start.lua` call: records `done` (finishes), starts `next` (what the last call
/// read, or what the fetch loop read) and, when `may_read`, reads new entries into the
/// finished jobs' slots (up to the batch size; none once the worker is shutting down) by
/// [`read_more`] in the same round trip. Returns the entries read, decoded, each with its
/// slot; a malformed one is dead-lettered (`bury_raw`). When the call fails for good (not a
/// lost connection: that is retried, as a retry), the finishes and starts go the separate
/// ways, `finish.lua` and `start.lua`, as retries of this call, and the entries read are
/// started with them.
async fn finish_and_start(
    inner: &Arc<Inner>,
    mut done: Vec<Done>,
    next: Next,
    may_read: bool,
) -> Next {
    let Next {
        by_type,
        mut permits,
    } = next;
    permits.extend(done.iter_mut().filter_map(|d| d.permit.take()));
    let held: usize = by_type.iter().map(|(_, ds)| ds.len()).sum();
    // Only the finished jobs' slots: free ones stay with the fetch loop, whose blocking
    // read serves a job that arrives while this call runs. While that read is waiting the
    // stream had nothing left for it: jobs trickle in, each is the fetch loop's at once
    // (Redis serves a blocked read right after the XADD), and a read here would only take
    // one and start it a call later; so this call reads only while the fetch loop is not
    // waiting on an empty stream (it waits for slots: a backlog).
    let read = if !may_read
        || inner.shutdown.is_cancelled()
        || inner.fetch_waiting.load(Ordering::Relaxed)
    {
        0
    } else {
        (permits.len() - held).min(inner.opts.batch)
    };
    let keep = inner.queue.retention_arg();
    let max_deliveries = inner.queue.config().max_deliveries;
    let owned_until = owned_until(
        inner,
        done.iter()
            .map(|d| &d.d)
            .chain(by_type.iter().flat_map(|(_, ds)| ds)),
    );
    let mut tries = 0u32;
    let call = persist(&inner.closing, "finish", || {
        tries += 1;
        let mut inv = inner.queue.scripts().finish_start.prepare_invoke();
        inv.arg(inner.queue.prefix())
            .arg(&keep)
            .arg(&inner.id)
            .arg(max_deliveries)
            .arg(if tries > 1 { "1" } else { "0" })
            // a retry proves nothing: the first try may have been applied
            .arg(if tries > 1 { 0 } else { owned_until })
            .arg(done.len());
        finish_args(&mut inv, &done);
        for (t, ds) in &by_type {
            inv.arg(t).arg(ds.len());
            for d in ds {
                inv.arg(&d.stream_id)
                    .arg(&d.env.id)
                    .arg(d.env.max_attempts)
                    .arg(parent_of(&d.env));
            }
        }
        async move {
            let mut c = inner.queue.batch_conn().await?;
            Ok(inv.invoke_async(&mut c).await?)
        }
    });
    // The call is sent first (join! polls in order), the read right behind it.
    let (res, (delivered_after_ms, entries)): (Option<FinishStartReply>, _) =
        tokio::join!(call, read_more(inner, read));
    let mut out = Next::default();
    for (job_type, entry) in entries {
        match decode(&job_type, &entry) {
            Ok(mut d) => {
                d.delivered_after_ms = delivered_after_ms;
                push_by_type(&mut out.by_type, d)
            }
            Err(bad) => bury_raw(inner, &job_type, &entry, bad).await,
        }
    }
    let Some((now, oks, started)) = res else {
        if !done.is_empty() {
            record_finishes(inner, done).await;
        }
        // What was read starts with the rest, on the finished jobs' slots (it was sized by them).
        let mut by_type = by_type;
        for d in out.by_type.into_iter().flat_map(|(_, ds)| ds) {
            push_by_type(&mut by_type, d);
        }
        start_deliveries(inner, by_type, permits, true).await;
        return Next::default();
    };
    on_finished(inner, &done, now, oks);
    let mut by_type = by_type.into_iter();
    for (t, flat, reasons, bots) in started {
        let Some((_, ds)) = by_type.next() else { break };
        debug_assert_eq!(
            t,
            ds.first().map(|d| d.job_type.clone()).unwrap_or_default()
        );
        on_started(
            inner,
            ds,
            now,
            start_answers(&flat, reasons, bots),
            &mut permits,
        )
        .await;
    }
    // One slot for each entry read (the read asked for no more than the slots held).
    for (_, ds) in &mut out.by_type {
        ds.retain(|d| match permits.pop() {
            Some(p) => {
                out.permits.push(p);
                true
            }
            // Cannot happen; left pending, the reclaimer would offer it again after the lease.
            None => {
                tracing::error!(job = %d.env.id, "read an entry without a free slot");
                false
            }
        });
    }
    out.by_type.retain(|(_, ds)| !ds.is_empty());
    out
}

/// Until when (server time, ms) the lease proves that every entry of `ds` is still this
/// worker's: the earliest time they were delivered at or after, plus half the lease; 0 when
/// any of them has no such time (a reclaimed entry) or there are none. Another worker takes
/// an entry over only once it has been idle a whole lease (`finish_start.lua` says why this
/// holds on the server's clock alone); the half is the margin. Workers of a deployment share
/// one lease, as their lease keepers already assume.
fn owned_until<'a>(inner: &Inner, ds: impl Iterator<Item = &'a Delivery>) -> u64 {
    let mut since = None;
    for d in ds {
        if d.delivered_after_ms == 0 {
            return 0;
        }
        since = Some(since.map_or(d.delivered_after_ms, |s: u64| s.min(d.delivered_after_ms)));
    }
    since.map_or(0, |s| s + inner.opts.lease.as_millis() as u64 / 2)
}

/// Retries `call` while Redis is unreachable; gives up (leaving the entry to
/// the reclaimer) on any other error.
async fn persist<T, F, Fut>(closing: &CancellationToken, what: &str, mut call: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, QueueError>>,
{
    let mut backoff = Backoff::new();
    loop {
        match call().await {
            Ok(v) => return Some(v),
            Err(e) if e.is_transient() && !closing.is_cancelled() => {
                let wait = backoff.next_delay();
                tracing::warn!(%e, ?wait, "{what}: redis unavailable, retrying");
                tokio::time::sleep(wait).await;
            }
            Err(e) => {
                tracing::error!(%e, "{what}: failed; the entry stays pending for the reclaimer");
                return None;
            }
        }
    }
}

/// Appends the nine arguments per finished job that `finish.lua` and `finish_start.lua`
/// share (type, stream id, job id, state, result, starts, parent, known, bot); `done` holds
/// finishes only. Known and bot: what this worker's start read of the record ([`Seen`]),
/// which spares a job without a parent the script's read of it.
fn finish_args(inv: &mut crate::scripts::FunctionInvocation<'_>, done: &[Done]) {
    for d in done {
        let Outcome::Finish { state, result } = &d.outcome else {
            unreachable!("only finishes are recorded by the finish scripts")
        };
        inv.arg(&d.d.job_type)
            .arg(&d.d.stream_id)
            .arg(&d.d.env.id)
            .arg(*state)
            .arg(result)
            .arg(d.d.starts)
            .arg(parent_of(&d.d.env))
            .arg(if d.d.seen.known { "1" } else { "0" })
            .arg(&d.d.seen.bot);
    }
}

/// Records finishes with `finish.lua` alone (when `finish_start.lua` failed for good).
async fn record_finishes(inner: &Inner, done: Vec<Done>) {
    let keep = inner.queue.retention_arg();
    let res: Option<Vec<u64>> = persist(&inner.closing, "finish", || {
        let mut inv = inner.queue.scripts().finish.prepare_invoke();
        inv.arg(inner.queue.prefix()).arg(&keep).arg(&inner.id);
        finish_args(&mut inv, &done);
        async move {
            let mut c = inner.queue.batch_conn().await?;
            Ok(inv.invoke_async(&mut c).await?)
        }
    })
    .await;
    let (now, oks) = match res {
        Some(v) if !v.is_empty() => (v[0], v[1..].to_vec()),
        _ => (0, vec![0; done.len()]),
    };
    on_finished(inner, &done, now, oks);
}

/// Acts on the finish codes (`finish.lua`'s) of `done`: counts, observes and forgets each job.
fn on_finished(inner: &Inner, done: &[Done], now: u64, oks: Vec<u64>) {
    for (d, ok) in done.iter().zip(oks.into_iter().chain(std::iter::repeat(0))) {
        let Outcome::Finish { state, .. } = &d.outcome else {
            continue;
        };
        let t = &d.d.job_type;
        if ok == 2 {
            // A retry of a call whose reply was lost (a timeout) after Redis applied it.
            tracing::debug!(job = %d.d.env.id, "finish was already recorded by this worker");
        }
        if ok == 1 || ok == 2 {
            if *state == "completed" {
                inner.metrics.processed.with_label_values(&[t]).inc();
            }
            inner
                .processed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            observe(inner, &d.d, state, now);
        } else if ok == 3 {
            inner.metrics.dead.with_label_values(&[t]).inc();
            tracing::warn!(job = %d.d.env.id, r#type = %t,
                "finished a job whose record was overwritten (not a hash); dead-lettered");
            observe(inner, &d.d, "dead", now);
        } else {
            tracing::warn!(job = %d.d.env.id, "finished a job whose lease was lost; not recorded");
        }
        finish_local(inner, d);
    }
}

async fn record_fail(inner: &Inner, d: Done) {
    let Outcome::Fail {
        error,
        retry_in,
        counts,
    } = &d.outcome
    else {
        return;
    };
    let keep = inner.queue.retention_arg();
    // The handler took the payload (`spawn_job`): the envelope is read again from the entry.
    let mut next = JobEnvelope::from_json(&d.d.raw).unwrap_or_else(|_| d.d.env.clone());
    if *counts {
        next.attempt += 1;
    }
    let next = next.to_json();
    let delay: i64 = retry_in.map(|r| r.as_millis() as i64).unwrap_or(-1);
    let res: Option<i64> = persist(&inner.closing, "fail", || {
        let mut inv = inner.queue.scripts().fail.prepare_invoke();
        inv.arg(inner.queue.prefix())
            .arg(&keep)
            .arg(&inner.id)
            .arg(&d.d.job_type)
            .arg(&d.d.stream_id)
            .arg(&d.d.env.id)
            .arg(&next)
            .arg(error)
            .arg(delay)
            .arg(if *counts { "1" } else { "0" })
            .arg(d.d.starts)
            .arg(parent_of(&d.d.env));
        async move {
            let mut c = inner.queue.conn().await?;
            Ok(inv.invoke_async(&mut c).await?)
        }
    })
    .await;
    let t = &d.d.job_type;
    if res == Some(3) {
        // A retry of a call whose reply was lost (a timeout) after Redis applied it.
        tracing::debug!(job = %d.d.env.id, "failure was already recorded by this worker");
    }
    let res = if res == Some(3) { Some(1) } else { res };
    if res == Some(0) {
        tracing::warn!(job = %d.d.env.id, r#type = %t, %error,
            "failed a job whose lease was lost; not recorded");
    } else if res == Some(2) {
        inner.metrics.dead.with_label_values(&[t]).inc();
        tracing::warn!(job = %d.d.env.id, r#type = %t, %error,
            "failed job's record was overwritten (not a hash); dead-lettered");
        observe(inner, &d.d, "dead", 0);
    } else if res == Some(1) && !*counts {
        tracing::debug!(job = %d.d.env.id, r#type = %t, reason = %error, "job deferred");
        inner.promote_now.notify_one();
        observe(inner, &d.d, "deferred", 0);
    } else if res == Some(1) {
        inner.metrics.failed.with_label_values(&[t]).inc();
        if retry_in.is_some() {
            inner.metrics.retried.with_label_values(&[t]).inc();
            inner.promote_now.notify_one();
            tracing::info!(job = %d.d.env.id, r#type = %t, %error, ?retry_in, "job failed; will retry");
            observe(inner, &d.d, "retrying", 0);
        } else {
            inner.metrics.dead.with_label_values(&[t]).inc();
            tracing::warn!(job = %d.d.env.id, r#type = %t, %error, "job dead-lettered");
            observe(inner, &d.d, "dead", 0);
        }
    }
    finish_local(inner, &d);
}

/// Parks a job in `waiting-children` and enqueues its children, in one script
/// (`fan_out.lua`); the last child's outcome puts the job back on its stream.
async fn record_fan(inner: &Inner, d: Done) {
    let Outcome::Fan { children } = &d.outcome else {
        return;
    };
    // Each child's envelope names this job as its parent: a child whose record is later
    // overwritten or deleted still reaches it (child_done in common.lua).
    let children: Vec<JobEnvelope> = children
        .iter()
        .map(|c| JobEnvelope {
            parent: Some(d.d.env.id.clone()),
            ..c.clone()
        })
        .collect();
    let ttl = inner.queue.config().result_ttl.as_millis() as u64;
    let res: Option<i64> = persist(&inner.closing, "fan out", || {
        let mut inv = inner.queue.scripts().fan_out.prepare_invoke();
        inv.arg(inner.queue.prefix())
            .arg(ttl)
            .arg(&inner.id)
            .arg(&d.d.job_type)
            .arg(&d.d.stream_id)
            .arg(&d.d.env.id)
            .arg(d.d.starts)
            .arg(parent_of(&d.d.env))
            .arg(&d.d.raw);
        for c in &children {
            inv.arg(&c.job_type).arg(&c.id).arg(c.to_json());
        }
        async move {
            let mut c = inner.queue.conn().await?;
            Ok(inv.invoke_async(&mut c).await?)
        }
    })
    .await;
    let t = &d.d.job_type;
    match res {
        Some(1) | Some(3) => {
            tracing::debug!(job = %d.d.env.id, r#type = %t, children = children.len(), "job waits for its children");
            observe(inner, &d.d, "waiting_children", 0);
        }
        Some(2) => observe(inner, &d.d, "cancelled", 0),
        Some(4) => {
            inner.metrics.dead.with_label_values(&[t]).inc();
            tracing::warn!(job = %d.d.env.id, r#type = %t,
                "fanning out a job whose record was overwritten (not a hash); dead-lettered");
            observe(inner, &d.d, "dead", 0);
        }
        _ => {
            tracing::warn!(job = %d.d.env.id, "fanned out a job whose lease was lost; not recorded")
        }
    }
    finish_local(inner, &d);
}

async fn record_handbacks(inner: &Inner, done: Vec<Done>) {
    let mut by_type: HashMap<&str, Vec<&Done>> = HashMap::new();
    for d in &done {
        by_type.entry(&d.d.job_type).or_default().push(d);
    }
    for (t, ds) in by_type {
        let _: Option<i64> = persist(&inner.closing, "hand back", || {
            let mut inv = inner.queue.scripts().handback.prepare_invoke();
            inv.arg(inner.queue.prefix()).arg(&inner.id).arg(t);
            for d in &ds {
                inv.arg(&d.d.stream_id).arg(&d.d.env.id).arg(&d.d.raw);
            }
            async move {
                let mut c = inner.queue.conn().await?;
                Ok(inv.invoke_async(&mut c).await?)
            }
        })
        .await;
    }
    for d in &done {
        observe(inner, &d.d, "handed_back", 0);
        finish_local(inner, d);
    }
}

fn observe(inner: &Inner, d: &Delivery, outcome: &'static str, now: u64) {
    if let Some(tx) = &inner.observer {
        let _ = tx.send(Observation {
            job_id: d.env.id.clone(),
            job_type: d.job_type.clone(),
            outcome,
            latency_ms: now.saturating_sub(d.ready_at_ms),
        });
    }
}

fn finish_local(inner: &Inner, d: &Done) {
    inner.in_flight.lock().unwrap().remove(&d.d.env.id);
    let t = &d.d.job_type;
    inner.metrics.in_flight.with_label_values(&[t]).dec();
    inner
        .metrics
        .run_seconds
        .with_label_values(&[t])
        .observe(d.run_time.as_secs_f64());
}

/// Keeps the leases of running jobs alive and relays cancellations.
async fn lease_keeper(inner: Arc<Inner>, stop: CancellationToken) {
    let period = inner.opts.lease / 3;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = stop.cancelled() => return,
        }
        let snapshot: Vec<(String, String, String)> = inner
            .in_flight
            .lock()
            .unwrap()
            .iter()
            .map(|(id, f)| (f.job_type.clone(), f.stream_id.clone(), id.clone()))
            .collect();
        let mut by_type: HashMap<String, Vec<(String, String)>> = HashMap::new();
        for (t, sid, id) in snapshot {
            by_type.entry(t).or_default().push((sid, id));
        }
        for (t, items) in by_type {
            let mut inv = inner.queue.scripts().renew.prepare_invoke();
            inv.arg(inner.queue.prefix()).arg(&t).arg(&inner.id);
            for (sid, id) in &items {
                inv.arg(sid).arg(id);
            }
            let res: Result<Vec<u8>, QueueError> = async {
                let mut c = inner.queue.conn().await?;
                Ok(inv.invoke_async(&mut c).await?)
            }
            .await;
            let codes = match res {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(%e, "lease renewal failed; will try again");
                    continue;
                }
            };
            let map = inner.in_flight.lock().unwrap();
            for ((_, id), code) in items.iter().zip(codes) {
                let Some(f) = map.get(id) else { continue };
                let why = match code {
                    1 => StopReason::LeaseLost,
                    2 => StopReason::Cancelled,
                    _ => continue,
                };
                let mut r = f.reason.lock().unwrap();
                if r.is_none() {
                    *r = Some(why);
                    if why == StopReason::LeaseLost {
                        tracing::warn!(job = %id, "lease lost: another worker took the job over");
                    } else {
                        tracing::info!(job = %id, "cancel requested: stopping the job");
                    }
                    f.token.cancel();
                }
            }
        }
    }
}

/// Takes over entries whose worker stopped renewing them.
async fn reclaimer(inner: Arc<Inner>, stop: CancellationToken) {
    let period = (inner.opts.lease / 2).max(Duration::from_millis(100));
    let lease_ms = inner.opts.lease.as_millis() as u64;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = stop.cancelled() => return,
        }
        for t in inner.opts.roles.clone() {
            let stream = inner.queue.keys().stream(&t);
            let mut cursor = "0-0".to_string();
            loop {
                // Wait in the (fair) slot line like the fetcher does; the
                // fetcher gives its slots back after each blocking read.
                let first = tokio::select! {
                    p = inner.slots.clone().acquire_owned() => p.expect("semaphore never closes"),
                    _ = stop.cancelled() => return,
                };
                let slots = more_slots(&inner, first);
                let res: Result<redis::streams::StreamAutoClaimReply, QueueError> = async {
                    let mut c = inner.queue.conn().await?;
                    Ok(c.xautoclaim_options(
                        &stream,
                        GROUP,
                        &inner.id,
                        lease_ms,
                        &cursor,
                        StreamAutoClaimOptions::default().count(slots.num_permits()),
                    )
                    .await?)
                }
                .await;
                let reply = match res {
                    Ok(r) => r,
                    Err(e) => {
                        if !e.is_transient() {
                            tracing::warn!(%e, "reclaim failed");
                        }
                        break;
                    }
                };
                if !reply.claimed.is_empty() {
                    tracing::info!(r#type = %t, n = reply.claimed.len(),
                        "reclaimed jobs from a worker whose lease expired");
                    let entries: Vec<_> =
                        reply.claimed.into_iter().map(|e| (t.clone(), e)).collect();
                    let permits = one_each(slots, entries.len());
                    // (0: a reclaimed entry's delivery is not this worker's proof)
                    start_entries(&inner, entries, 0, permits).await;
                }
                cursor = reply.next_stream_id;
                if cursor == "0-0" {
                    break;
                }
            }
        }
    }
}

/// Moves due delayed jobs onto their streams; sleeps until the next is due.
async fn promoter(inner: Arc<Inner>, stop: CancellationToken) {
    loop {
        let res: Result<(u64, i64), QueueError> = async {
            let mut inv = inner.queue.scripts().promote.prepare_invoke();
            inv.arg(inner.queue.prefix()).arg(1000);
            let mut c = inner.queue.conn().await?;
            Ok(inv.invoke_async(&mut c).await?)
        }
        .await;
        let wait = match res {
            Ok((moved, _)) if moved >= 1000 => Duration::ZERO,
            Ok((_, next)) if next >= 0 => Duration::from_millis((next as u64).clamp(5, 1000)),
            Ok(_) => Duration::from_secs(1),
            Err(e) => {
                if !e.is_transient() {
                    tracing::warn!(%e, "promote failed");
                }
                Duration::from_secs(1)
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = inner.promote_now.notified() => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// Registers this worker and keeps the registration fresh.
async fn heartbeat(inner: Arc<Inner>, stop: CancellationToken) {
    let started = tokio::select! {
        t = inner.queue.time_ms() => t.unwrap_or(0),
        _ = stop.cancelled() => return,
    };
    let ttl = inner.opts.heartbeat * 3;
    loop {
        let res: Result<u64, QueueError> = async {
            let mut c = inner.queue.conn().await?;
            let (s, us): (u64, u64) = redis::cmd("TIME").query_async(&mut c).await?;
            let now = s * 1000 + us / 1000;
            let in_flight = inner.in_flight.lock().unwrap().len();
            let key = inner.queue.keys().worker(&inner.id);
            let mut p = redis::pipe();
            p.zadd(inner.queue.keys().workers(), &inner.id, now)
                .hset_multiple(
                    &key,
                    &[
                        ("id", inner.id.clone()),
                        ("roles", inner.opts.roles.join(",")),
                        ("concurrency", inner.opts.concurrency.to_string()),
                        ("in_flight", in_flight.to_string()),
                        (
                            "processed",
                            inner
                                .processed
                                .load(std::sync::atomic::Ordering::Relaxed)
                                .to_string(),
                        ),
                        ("started_at", started.to_string()),
                        ("seen_at", now.to_string()),
                        ("pid", std::process::id().to_string()),
                        ("device", inner.opts.device.clone().unwrap_or_default()),
                    ],
                )
                .pexpire(&key, ttl.as_millis() as i64);
            let _: () = p.query_async(&mut c).await?;
            Ok(now)
        }
        .await;
        match res {
            Ok(now) => inner.metrics.heartbeat.set(now as f64 / 1000.0),
            Err(e) if !e.is_transient() => tracing::warn!(%e, "heartbeat failed"),
            Err(_) => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(inner.opts.heartbeat) => {}
            _ = stop.cancelled() => return,
        }
    }
}

async fn deregister(queue: &Queue, id: &str) {
    if let Ok(mut c) = queue.conn().await {
        let _: redis::RedisResult<()> = redis::pipe()
            .zrem(queue.keys().workers(), id)
            .del(queue.keys().worker(id))
            .query_async(&mut c)
            .await;
    }
}

/// Samples queue depth for this worker's roles, the dead-letter stream, the `pipeline`
/// semaphore and the live workers into the gauges.
async fn gauges(inner: Arc<Inner>, stop: CancellationToken) {
    let roles: Vec<&str> = inner.opts.roles.iter().map(String::as_str).collect();
    let pipeline =
        crate::semaphore::RedisSemaphore::new(inner.queue.clone(), crate::semaphore::PIPELINE);
    loop {
        let fleet = tokio::select! {
            f = fleet_gauges(&inner, &pipeline) => f,
            _ = stop.cancelled() => return,
        };
        if let Err(e) = fleet {
            tracing::debug!(%e, "fleet gauges not sampled");
        }
        let sampled = tokio::select! {
            s = inner.queue.stats_for(&roles) => s,
            _ = stop.cancelled() => return,
        };
        if let Ok(stats) = sampled {
            for s in stats {
                let t = [s.job_type.as_str()];
                let m = &inner.metrics;
                m.queue_depth.with_label_values(&t).set(s.waiting as i64);
                m.queue_in_flight
                    .with_label_values(&t)
                    .set(s.in_flight as i64);
                m.queue_delayed.with_label_values(&t).set(s.delayed as i64);
                m.queue_oldest.with_label_values(&t).set(s.oldest_ms as i64);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// The fleet-wide gauges that do not depend on the job type.
async fn fleet_gauges(
    inner: &Inner,
    pipeline: &crate::semaphore::RedisSemaphore,
) -> Result<(), QueueError> {
    let m = &inner.metrics;
    let dlq = inner.queue.keys().dlq();
    let len: u64 = inner
        .queue
        .retrying("dlq length", |mut c| {
            let dlq = dlq.clone();
            async move { Ok(c.xlen(dlq).await?) }
        })
        .await?;
    m.dlq_length.set(len as i64);
    let sem = pipeline.status().await?;
    let name = [sem.name.as_str()];
    m.sem_in_use
        .with_label_values(&name)
        .set(sem.holders.len() as i64);
    m.sem_limit.with_label_values(&name).set(sem.limit as i64);
    m.sem_waiters
        .with_label_values(&name)
        .set(sem.waiters.len() as i64);
    m.workers_alive
        .set(list_workers(&inner.queue).await?.len() as i64);
    Ok(())
}

/// Writes progress reports to the job records and the events stream.
async fn progress_writer(
    inner: Arc<Inner>,
    mut rx: mpsc::UnboundedReceiver<ProgressUpdate>,
    stop: CancellationToken,
) {
    let mut buf = Vec::new();
    loop {
        let n = tokio::select! {
            n = rx.recv_many(&mut buf, 256) => n,
            _ = stop.cancelled() => return,
        };
        if n == 0 {
            return;
        }
        let batch = std::mem::take(&mut buf);
        let res: Result<(), QueueError> = async {
            let mut c = inner.queue.conn().await?;
            let mut p = redis::pipe();
            for u in &batch {
                let v = u.progress.to_string();
                p.hset(inner.queue.keys().job(&u.job_id), "progress", &v)
                    .ignore();
                p.cmd("XADD")
                    .arg(inner.queue.keys().events())
                    .arg("MAXLEN")
                    .arg("~")
                    .arg(10_000)
                    .arg("*")
                    .arg("event")
                    .arg("progress")
                    .arg("type")
                    .arg(&u.job_type)
                    .arg("id")
                    .arg(&u.job_id)
                    .arg("progress")
                    .arg(&v)
                    .ignore();
            }
            let _: () = p.query_async(&mut c).await?;
            Ok(())
        }
        .await;
        if let Err(e) = res {
            // Progress is advisory: losing a report while Redis is away is fine.
            tracing::debug!(%e, "progress not written");
        }
    }
}

/// A registered worker, as `synth-city workers` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WorkerInfo {
    pub id: String,
    pub roles: Vec<String>,
    pub concurrency: u32,
    pub in_flight: u32,
    pub processed: u64,
    pub started_at_ms: u64,
    pub seen_at_ms: u64,
    pub pid: u32,
    /// The device it trains on (`cpu`, `cuda:0`); absent for workers that did not say.
    pub device: Option<String>,
}

/// The live workers (registration not expired); prunes the dead from the index.
pub async fn list_workers(queue: &Queue) -> Result<Vec<WorkerInfo>, QueueError> {
    queue
        .retrying("workers", |mut c| async move {
            let ids: Vec<String> = c.zrange(queue.keys().workers(), 0, -1).await?;
            let mut out = Vec::new();
            for id in ids {
                let h: HashMap<String, String> = c.hgetall(queue.keys().worker(&id)).await?;
                if h.is_empty() {
                    let _: () = c.zrem(queue.keys().workers(), &id).await?;
                    continue;
                }
                let n = |k: &str| h.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
                out.push(WorkerInfo {
                    roles: h
                        .get("roles")
                        .map(|r| r.split(',').map(str::to_string).collect())
                        .unwrap_or_default(),
                    concurrency: n("concurrency") as u32,
                    in_flight: n("in_flight") as u32,
                    processed: n("processed"),
                    started_at_ms: n("started_at"),
                    seen_at_ms: n("seen_at"),
                    pid: n("pid") as u32,
                    device: h.get("device").filter(|d| !d.is_empty()).cloned(),
                    id,
                });
            }
            Ok(out)
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::{start_answers, Seen, Started};

    #[test]
    fn start_answers_read_three_integers_per_entry_and_the_reasons_and_bots_in_order() {
        let flat = [1, 0, 1, 2, 3, 0, 0, 0, 0, 2, 1, 0, 1, 2, 5, 3, 0, 2];
        let reasons = vec!["lost 3 times".to_string(), "overwritten".to_string()];
        let bots = vec!["b1".to_string(), String::new(), String::new()];
        let got = start_answers(&flat, reasons, bots);
        let want = [
            Started::Run {
                attempt: 0,
                starts: 1,
                seen: Seen {
                    bot: "b1".into(),
                    known: true,
                },
            },
            Started::Dead {
                attempt: 3,
                reason: "lost 3 times".into(),
            },
            Started::Skip,
            Started::Dead {
                attempt: 1,
                reason: "overwritten".into(),
            },
            Started::Run {
                attempt: 2,
                starts: 5,
                seen: Seen {
                    bot: String::new(),
                    known: true,
                },
            },
            // its finish reads the record (flow keys, or not looked for)
            Started::Run {
                attempt: 0,
                starts: 2,
                seen: Seen {
                    bot: String::new(),
                    known: false,
                },
            },
        ];
        assert_eq!(got, want);
    }
}
