//! The queue's commands: worker, workers, jobs (and dead letters), semaphore, scheduler,
//! schedule, migrate, bench queue. Each takes the connected [`Queue`]; the dispatch is in
//! `cli/mod.rs`. Nothing here trains, scores or serves HTTP.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};

use super::shutdown_on_signal;
use engine::queue::{CancelOutcome, EnqueueRequest, Queue};
use engine::scheduler;
use engine::semaphore::RedisSemaphore;
use engine::worker::{Worker, WorkerOptions};

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Roles (`engine`, `agents`, `trainer`, `scorer`, `publisher`) or job types to run,
    /// comma-separated (see `jobs types`), or `all`.
    #[arg(long, value_delimiter = ',', required = true)]
    pub roles: Vec<String>,
    /// Jobs run at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Most entries taken per read.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Lease in ms: a job idle this long in a dead worker is taken over.
    #[arg(long, default_value_t = 30_000)]
    pub lease_ms: u64,
    /// Shutdown grace in seconds for running jobs.
    #[arg(long, default_value_t = 30)]
    pub grace_secs: u64,
    /// First retry delay in ms (doubles per attempt, with jitter).
    #[arg(long, default_value_t = 1000)]
    pub retry_base_ms: u64,
    /// Longest retry delay in ms.
    #[arg(long, default_value_t = 3_600_000)]
    pub retry_cap_ms: u64,
    /// Heartbeat period in ms.
    #[arg(long, default_value_t = 5000)]
    pub heartbeat_ms: u64,
    /// Serve Prometheus metrics at ADDR/metrics (e.g. 127.0.0.1:9464).
    #[arg(long)]
    pub metrics_addr: Option<SocketAddr>,
    /// A readable worker name (a unique suffix is added).
    #[arg(long)]
    pub name: Option<String>,
    /// Answer health probes (`GET /health`: 200 while serving, 503 once draining) on this
    /// port (8378 on a Basilica pod).
    #[arg(long, env = "SYNTH_HEALTH_PORT")]
    pub health_port: Option<u16>,
    /// The address the health port binds (0.0.0.0 in a pod, where the probes come from outside).
    #[arg(long, env = "SYNTH_HEALTH_HOST", default_value = "127.0.0.1")]
    pub health_host: std::net::IpAddr,
    /// This worker's own directories (payloads name none).
    #[command(flatten)]
    pub dirs: super::dirs::DirsArgs,
    #[command(flatten)]
    pub device: super::dirs::DeviceArgs,
}

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// Enqueue jobs.
    Enqueue {
        #[arg(long = "type")]
        job_type: String,
        /// The payload as JSON.
        #[arg(long, default_value = "{}")]
        payload: String,
        /// Enqueue this many copies.
        #[arg(long, default_value_t = 1)]
        count: usize,
        #[arg(long)]
        idempotency_key: Option<String>,
        /// Run no sooner than this many seconds from now.
        #[arg(long)]
        delay: Option<f64>,
        /// Run at or after this time: RFC 3339 (`2026-11-25T12:00:00Z`) or Unix seconds.
        #[arg(long, conflicts_with = "delay")]
        at: Option<String>,
        #[arg(long)]
        max_attempts: Option<u32>,
        #[arg(long)]
        timeout_ms: Option<u64>,
        #[arg(long)]
        run_id: Option<String>,
        #[arg(long)]
        bot_id: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// A job's status record.
    Status {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Cancel a job (at once if waiting, cooperatively if running).
    Cancel { id: String },
    /// Per-type counts.
    Stats {
        #[arg(long)]
        json: bool,
    },
    /// The job types this build knows: each with the role that runs it and whether bots may
    /// enqueue it through the bridge.
    Types {
        #[arg(long)]
        json: bool,
    },
    /// Dead letters.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List dead letters, oldest first.
    List {
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Put dead letters back on their streams with a fresh attempt count.
    Retry {
        /// Dead-letter entry ids (from `dlq list`).
        ids: Vec<String>,
        /// Retry every dead letter.
        #[arg(long, conflicts_with = "ids")]
        all: bool,
    },
    /// Delete every dead letter.
    Purge {
        /// Confirm.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum SemaphoreCommand {
    /// Holders, waiters, leases and the limit.
    Status {
        #[arg(long, default_value = engine::semaphore::PIPELINE)]
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Set the number of permits.
    ///
    /// Lowering the limit below the number of holders preempts no one: holders keep their
    /// permits until they release them (their runs finish) or their leases lapse, and new
    /// acquirers wait in line until fewer than the new limit hold one. To shrink in-flight
    /// work faster, cancel runs (`synth-city runs cancel ID`).
    SetLimit {
        limit: u32,
        #[arg(long, default_value = engine::semaphore::PIPELINE)]
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Add or replace a schedule.
    Add {
        #[arg(long)]
        name: String,
        /// Cron expression, UTC: `min hour dom mon dow` (or with seconds first).
        #[arg(long)]
        cron: String,
        #[arg(long = "type")]
        job_type: String,
        #[arg(long, default_value = "{}")]
        payload: String,
        #[arg(long)]
        max_attempts: Option<u32>,
    },
    /// List schedules with their next fire time.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove a schedule: its name, or `BOT:NAME` for a bot's (as `schedule list` shows it).
    Remove { name: String },
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// End-to-end no-op throughput and latency of the queue.
    Queue {
        #[arg(long, default_value_t = 100_000)]
        jobs: usize,
        #[arg(long, default_value_t = 2)]
        workers: usize,
        /// Concurrency of each worker.
        #[arg(long, default_value_t = 256)]
        concurrency: usize,
        #[arg(long, default_value_t = 256)]
        batch: usize,
        #[arg(long, default_value_t = 500)]
        enqueue_batch: usize,
        /// Concurrent producer tasks (they share one multiplexed connection).
        #[arg(long, default_value_t = 1)]
        producers: usize,
        /// Offered load in jobs/s (0 = as fast as possible, a burn-down).
        #[arg(long, default_value_t = 0)]
        rate: u64,
        #[arg(long)]
        json: bool,
    },
    /// SN50 CRPS scoring speed, against the validator's Python path.
    Crps(super::sn50::BenchCrpsArgs),
    /// Model training and simulation speed.
    Train(super::model::BenchTrainArgs),
    /// The store hand-off of one experiment's checkpoint: upload, download and verify.
    Store(super::bench_store::BenchStoreArgs),
}

fn parse_json(what: &str, s: &str) -> anyhow::Result<serde_json::Value> {
    serde_json::from_str(s).with_context(|| format!("{what} is not valid JSON: {s}"))
}

/// Parses RFC 3339 or Unix seconds into Unix ms.
fn parse_time_ms(s: &str) -> Result<u64, String> {
    if let Ok(secs) = s.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Ok((secs * 1000.0) as u64);
        }
        return Err(format!("{s:?} is not a time after 1970"));
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|d| d.timestamp_millis().max(0) as u64)
        .map_err(|e| format!("{s:?} is neither Unix seconds nor RFC 3339 ({e})"))
}

fn fmt_ms(ms: Option<u64>) -> String {
    ms.and_then(|m| chrono::DateTime::from_timestamp_millis(m as i64))
        .map(|d| d.format("%Y-%m-%d %H:%M:%S%.3fZ").to_string())
        .unwrap_or_else(|| "-".into())
}

pub(super) async fn worker(q: Queue, a: WorkerArgs) -> anyhow::Result<()> {
    let mut dirs = a.dirs.dirs();
    dirs.device = a
        .device
        .resolve()
        .with_context(|| format!("--device {}", a.device.device))?;
    tracing::info!(device = %dirs.device, choice = %a.device.device, "training device");
    let registry = crate::handlers::registry(&q, &dirs);
    let roles = crate::handlers::expand_roles(q.catalog(), &a.roles).map_err(anyhow::Error::msg)?;
    let opts = WorkerOptions {
        roles,
        concurrency: a.concurrency,
        batch: a.batch,
        lease: Duration::from_millis(a.lease_ms),
        grace: Duration::from_secs(a.grace_secs),
        retry_base: Duration::from_millis(a.retry_base_ms),
        retry_cap: Duration::from_millis(a.retry_cap_ms),
        heartbeat: Duration::from_millis(a.heartbeat_ms),
        name: a.name,
        device: Some(dirs.device.clone()),
        ..Default::default()
    };
    // a worker of any stage type also keeps runs between stages (their permits while the
    // next stage job waits; runs whose stage job died are failed)
    let keeps_runs = opts
        .roles
        .iter()
        .any(|r| super::pipeline::STAGES.contains(&r.as_str()));
    let keeper_q = q.clone();
    let device = dirs.device.clone();
    let w = Worker::new(q, registry, opts)?;
    let stop = shutdown_on_signal();
    if keeps_runs {
        tokio::spawn(crate::pipeline::keep_runs(keeper_q, dirs, stop.clone()));
    }
    if let Some(addr) = a.metrics_addr {
        w.metrics()
            .spawn_server(addr, stop.clone())
            .await
            .with_context(|| format!("cannot serve metrics on {addr}"))?;
    }
    if let Some(port) = a.health_port {
        let addr = SocketAddr::new(a.health_host, port);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot serve health probes on {addr}"))?;
        tokio::spawn(serve_health(listener, w.id().to_string(), stop.clone()));
    }
    println!("worker {} started on {device}", w.id());
    w.run(stop).await?;
    Ok(())
}

/// The worker's health endpoint: `GET /health` answers 200 with the worker's id while it
/// serves and 503 once it drains (SIGTERM); the listener stays open until the worker ends, so
/// a probe during the drain sees the 503 rather than a refused connection.
async fn serve_health(
    listener: tokio::net::TcpListener,
    id: String,
    draining: tokio_util::sync::CancellationToken,
) {
    let answer = move |path: &str| {
        if path != "/health" {
            (404, "text/plain", "not found; try /health\n".to_string())
        } else if draining.is_cancelled() {
            let body = serde_json::json!({"status": "draining", "worker": id});
            (503, "application/json", body.to_string())
        } else {
            let body = serde_json::json!({"status": "ok", "worker": id});
            (200, "application/json", body.to_string())
        }
    };
    // served until the process ends: the drain answers 503
    crate::http_server::serve_plain(listener, answer, tokio_util::sync::CancellationToken::new())
        .await;
}

pub(super) async fn jobs(q: Queue, c: JobsCommand) -> anyhow::Result<()> {
    match c {
        JobsCommand::Enqueue {
            job_type,
            payload,
            count,
            idempotency_key,
            delay,
            at,
            max_attempts,
            timeout_ms,
            run_id,
            bot_id,
            json,
        } => {
            let run_at_ms = match at.as_deref().map(parse_time_ms) {
                Some(Err(e)) => bail!("--at: {e}"),
                Some(Ok(ms)) => ms,
                None => 0,
            };
            let payload = parse_json("--payload", &payload)?;
            if count == 0 {
                bail!("--count must be at least 1");
            }
            if idempotency_key.is_some() && count > 1 {
                bail!("--idempotency-key names one job; it cannot be used with --count > 1");
            }
            let delay_ms = match delay {
                Some(d) if !(0.0..=1e9).contains(&d) => {
                    bail!("--delay must be between 0 and 1e9 seconds, got {d}")
                }
                Some(d) => (d * 1000.0) as u64,
                None => 0,
            };
            let reqs = (0..count)
                .map(|_| EnqueueRequest {
                    job_type: job_type.clone(),
                    payload: payload.clone(),
                    idempotency_key: idempotency_key.clone(),
                    delay_ms,
                    run_at_ms,
                    max_attempts,
                    timeout_ms,
                    run_id: run_id.clone(),
                    bot_id: bot_id.clone(),
                    ..Default::default()
                })
                .collect();
            let out = q.enqueue_many(reqs).await?;
            if json {
                println!("{}", serde_json::to_string(&out)?);
            } else {
                for e in out {
                    println!(
                        "{} {}",
                        e.id,
                        if e.created {
                            "enqueued"
                        } else {
                            "exists (idempotent)"
                        }
                    );
                }
            }
        }
        JobsCommand::Status { id, json } => match q.status(&id).await? {
            None => bail!("no job {id:?} (unknown, or its record expired)"),
            Some(s) if json => println!("{}", serde_json::to_string(&s)?),
            Some(s) => {
                println!("id        {}", s.id);
                println!("type      {}", s.job_type);
                println!("state     {}", s.state);
                println!("attempt   {} (started {} times)", s.attempt, s.starts);
                println!("enqueued  {}", fmt_ms(s.enqueued_at_ms));
                println!("started   {}", fmt_ms(s.started_at_ms));
                println!("finished  {}", fmt_ms(s.finished_at_ms));
                if let Some(w) = s.worker {
                    println!("worker    {w}");
                }
                if let Some(p) = s.progress {
                    println!("progress  {p}");
                }
                if let Some(r) = s.result {
                    println!("result    {r}");
                }
                if let Some(e) = s.error {
                    println!("error     {e}");
                }
            }
        },
        JobsCommand::Cancel { id } => match q.cancel(&id).await? {
            CancelOutcome::Cancelled => println!("{id}: cancelled"),
            CancelOutcome::Cancelling => println!("{id}: running; asked to stop"),
            CancelOutcome::Missing => bail!("no job {id:?} (unknown, or its record expired)"),
            CancelOutcome::AlreadyFinished(s) => println!("{id}: already {s}; nothing to cancel"),
        },
        JobsCommand::Stats { json } => {
            let stats = q.stats().await?;
            if json {
                println!("{}", serde_json::to_string(&stats)?);
            } else {
                let w = stats.iter().map(|s| s.job_type.len()).max().unwrap_or(4);
                println!(
                    "{:<w$} {:>9} {:>9} {:>8} {:>10} {:>8} {:>8} {:>6} {:>10}",
                    "type",
                    "waiting",
                    "in_flight",
                    "delayed",
                    "completed",
                    "failed",
                    "retried",
                    "dead",
                    "oldest_ms"
                );
                for s in stats {
                    println!(
                        "{:<w$} {:>9} {:>9} {:>8} {:>10} {:>8} {:>8} {:>6} {:>10}",
                        s.job_type,
                        s.waiting,
                        s.in_flight,
                        s.delayed,
                        s.completed,
                        s.failed,
                        s.retried,
                        s.dead,
                        s.oldest_ms
                    );
                }
            }
        }
        JobsCommand::Types { json } => {
            let types = q.catalog().types();
            if json {
                let rows: Vec<_> = types
                    .iter()
                    .map(|t| {
                        serde_json::json!({
                            "type": t.name, "role": t.role.as_str(),
                            "bots": t.bots.allowed(),
                            "bots_instead": match t.bots {
                                jobs::BotAccess::Refused(why) => Some(why),
                                jobs::BotAccess::Allowed => None,
                            },
                            "max_attempts": t.max_attempts, "timeout_ms": t.timeout_ms,
                            "description": t.description,
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string(&rows)?);
                return Ok(());
            }
            let w = types.iter().map(|t| t.name.len()).max().unwrap_or(0).max(4);
            println!(
                "{:<w$}  {:<9}  {:<4}  attempts  {:>11}  description",
                "type", "role", "bots", "timeout"
            );
            for t in types {
                println!(
                    "{:<w$}  {:<9}  {:<4}  {:>8}  {:>8} ms  {}",
                    t.name,
                    t.role.as_str(),
                    if t.bots.allowed() { "yes" } else { "no" },
                    t.max_attempts,
                    t.timeout_ms,
                    t.description
                );
            }
        }
        JobsCommand::Dlq { command } => match command {
            DlqCommand::List { limit, json } => {
                let ls = q.dlq_list(limit).await?;
                if json {
                    println!("{}", serde_json::to_string(&ls)?);
                } else if ls.is_empty() {
                    println!("no dead letters");
                } else {
                    for l in ls {
                        println!(
                            "{}  {:<10} {:<28} {}  {}",
                            l.dlq_id,
                            l.job_type,
                            l.id,
                            fmt_ms(Some(l.at_ms)),
                            l.error
                        );
                    }
                }
            }
            DlqCommand::Retry { ids, all } => {
                if ids.is_empty() && !all {
                    bail!("name dead-letter ids to retry, or pass --all");
                }
                let (n, skipped) = q.dlq_retry(&ids).await?;
                println!("requeued {n}");
                for s in skipped {
                    println!("skipped {s}");
                }
            }
            DlqCommand::Purge { yes } => {
                if !yes {
                    bail!("purge deletes every dead letter; pass --yes to confirm");
                }
                println!("purged {}", q.dlq_purge().await?);
            }
        },
    }
    Ok(())
}

pub(super) async fn semaphore(q: Queue, c: SemaphoreCommand) -> anyhow::Result<()> {
    match c {
        SemaphoreCommand::Status { name, json } => {
            let s = RedisSemaphore::new(q, &name).status().await?;
            if json {
                println!("{}", serde_json::to_string(&s)?);
            } else {
                println!(
                    "semaphore {}: {} of {} permits held, {} waiting, fence {}",
                    s.name,
                    s.holders.len(),
                    s.limit,
                    s.waiters.len(),
                    s.fence
                );
                if s.holders.len() > s.limit as usize {
                    println!("  {}", over_limit(s.holders.len(), s.limit));
                }
                for h in s.holders {
                    println!(
                        "  holder {:<40} fence {:>6}  lease left {} ms",
                        h.holder, h.fence, h.lease_left_ms
                    );
                }
                for (i, w) in s.waiters.iter().enumerate() {
                    println!("  waiter {:>3} {w}", i + 1);
                }
            }
        }
        SemaphoreCommand::SetLimit { limit, name } => {
            let sem = RedisSemaphore::new(q, &name);
            sem.set_limit(limit).await?;
            println!("semaphore {name}: limit {limit}");
            let holders = sem.status().await?.holders.len();
            if holders > limit as usize {
                println!("{}", over_limit(holders, limit));
            }
        }
    }
    Ok(())
}

/// What a semaphore with more holders than its limit does (no preemption).
fn over_limit(holders: usize, limit: u32) -> String {
    format!(
        "{holders} holders are over the limit of {limit}: no permit is taken back; holders keep \
         theirs until they release them (or their leases lapse), and new acquirers wait until \
         fewer than {limit} hold one (`synth-city runs cancel ID` shrinks in-flight work sooner)"
    )
}

pub(super) async fn schedule(q: Queue, c: ScheduleCommand) -> anyhow::Result<()> {
    match c {
        ScheduleCommand::Add {
            name,
            cron,
            job_type,
            payload,
            max_attempts,
        } => {
            let s = scheduler::Schedule {
                name,
                cron,
                job_type,
                payload: parse_json("--payload", &payload)?,
                max_attempts,
                timeout_ms: None,
                owner: None,
            };
            let next = scheduler::add(&q, &s).await?;
            println!(
                "schedule {} added; next fire {}",
                s.name,
                fmt_ms(Some(next))
            );
        }
        ScheduleCommand::List { json } => {
            let ls = scheduler::list(&q).await?;
            if json {
                println!("{}", serde_json::to_string(&ls)?);
            } else if ls.is_empty() {
                println!("no schedules");
            } else {
                for s in ls {
                    println!(
                        "{:<20} {:<18} {:<10} next {}  last {}",
                        // a bot's schedule as `BOT:NAME`, what `schedule remove` takes
                        s.schedule.key(),
                        s.schedule.cron,
                        s.schedule.job_type,
                        fmt_ms(s.next_fire_ms),
                        fmt_ms(s.last_fire_ms)
                    );
                }
            }
        }
        ScheduleCommand::Remove { name } => {
            if !scheduler::remove(&q, &name).await? {
                bail!("no schedule named {name:?}");
            }
            println!("schedule {name} removed");
        }
    }
    Ok(())
}

pub(super) async fn bench(q: Queue, c: BenchCommand) -> anyhow::Result<()> {
    match c {
        BenchCommand::Queue {
            jobs,
            workers,
            concurrency,
            batch,
            enqueue_batch,
            producers,
            rate,
            json,
        } => {
            if jobs == 0 || workers == 0 || producers == 0 {
                bail!("--jobs, --workers and --producers must be at least 1");
            }
            let b = engine::bench::QueueBench {
                redis_url: q.url().to_string(),
                jobs,
                workers,
                concurrency,
                batch,
                enqueue_batch,
                producers,
                rate,
                config: q.config().clone(),
            };
            let r = engine::bench::run(&b).await?;
            if json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                println!(
                    "{} jobs, {} workers x {}: {:.2} s, {:.0} jobs/s, p50 {} ms, p99 {} ms",
                    r.jobs, r.workers, r.concurrency, r.seconds, r.jobs_per_sec, r.p50_ms, r.p99_ms
                );
            }
        }
        BenchCommand::Crps(_) | BenchCommand::Train(_) | BenchCommand::Store(_) => {
            unreachable!("dispatched in run")
        }
    }
    Ok(())
}

/// `synth-city workers`: the live workers, what they run, since when.
pub(super) async fn workers(q: Queue, json: bool) -> anyhow::Result<()> {
    let ws = engine::worker::list_workers(&q).await?;
    if json {
        println!("{}", serde_json::to_string(&ws)?);
    } else if ws.is_empty() {
        println!("no live workers");
    } else {
        println!(
            "{:<40} {:<24} {:<8} {:>5} {:>6} {:>10}  since",
            "worker", "roles", "device", "conc", "busy", "processed"
        );
        for w in ws {
            println!(
                "{:<40} {:<24} {:<8} {:>5} {:>6} {:>10}  {}",
                w.id,
                w.roles.join(","),
                w.device.as_deref().unwrap_or("-"),
                w.concurrency,
                w.in_flight,
                w.processed,
                fmt_ms(Some(w.started_at_ms))
            );
        }
    }
    Ok(())
}

/// `synth-city scheduler`: fires cron schedules until SIGINT/SIGTERM.
pub(super) async fn scheduler(q: Queue, period_ms: u64) -> anyhow::Result<()> {
    let stop = shutdown_on_signal();
    Ok(scheduler::run(q, Duration::from_millis(period_ms.max(50)), stop).await?)
}

/// `synth-city migrate`: applies pending key-layout migrations.
pub(super) async fn migrate(q: Queue) -> anyhow::Result<()> {
    let applied = engine::migrate::migrate(&q).await?;
    if applied.is_empty() {
        println!("schema is up to date (version {})", engine::migrate::LATEST);
    } else {
        println!(
            "applied migrations {:?}; schema is at version {}",
            applied,
            engine::migrate::LATEST
        );
    }
    Ok(())
}
