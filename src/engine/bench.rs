//! `synth-city bench queue`: end-to-end throughput and latency of the queue itself.
//!
//! Starts W in-process workers on `noop`, enqueues N jobs in batches from a
//! producer task running alongside them, and waits until every job's
//! completion is recorded. Latency is enqueue-to-complete by the Redis clock
//! (ms resolution). Runs under a fresh random key prefix and deletes its keys.

use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::queue::{EnqueueRequest, Queue, QueueError};
use crate::worker::{Worker, WorkerOptions};

/// Parameters of one run.
#[derive(Debug, Clone)]
pub struct QueueBench {
    pub redis_url: String,
    pub jobs: usize,
    pub workers: usize,
    pub concurrency: usize,
    pub batch: usize,
    pub enqueue_batch: usize,
    /// Concurrent producer tasks, each enqueuing its share of the jobs.
    pub producers: usize,
    /// Offered load in jobs/s; 0 = enqueue as fast as possible (a burn-down).
    pub rate: u64,
    /// The queue's tunables (the CLI's: the environment's, so retention settings apply).
    pub config: crate::config::QueueConfig,
}

/// What one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct QueueBenchReport {
    pub jobs: usize,
    pub workers: usize,
    pub concurrency: usize,
    /// Offered load in jobs/s (0 = as fast as possible).
    pub rate: u64,
    pub seconds: f64,
    pub jobs_per_sec: f64,
    pub enqueue_seconds: f64,
    /// Jobs enqueued per second (all producers together).
    pub enqueue_per_sec: f64,
    pub p50_ms: u64,
    pub p90_ms: u64,
    pub p99_ms: u64,
    pub max_ms: u64,
}

/// Why a benchmark run stopped.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
    #[error("a benchmark task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("{0}")]
    Stalled(String),
}

/// Runs the benchmark.
pub async fn run(b: &QueueBench) -> Result<QueueBenchReport, BenchError> {
    let prefix = format!("bench-{}", ulid::Ulid::new());
    let queue = Queue::new(&b.redis_url, &prefix, b.config.clone())?;
    crate::migrate::migrate(&queue).await?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let shutdown = CancellationToken::new();
    let mut handles = Vec::new();
    for i in 0..b.workers {
        let mut registry = jobs::Registry::new();
        crate::builtin::register(&mut registry);
        let opts = WorkerOptions {
            roles: vec!["noop".into()],
            concurrency: b.concurrency,
            batch: b.batch,
            name: Some(format!("bench{i}")),
            ..Default::default()
        };
        let mut w = Worker::new(queue.clone(), registry, opts)?;
        w.observe(tx.clone());
        handles.push(tokio::spawn(w.run(shutdown.clone())));
    }
    drop(tx);
    // Let the workers register their blocking reads before the clock starts.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let t0 = Instant::now();
    let producers: Vec<_> = (0..b.producers.max(1))
        .map(|p| {
            let queue = queue.clone();
            let np = b.producers.max(1);
            // Producer p enqueues its share; the rate is split evenly.
            let n = b.jobs / np + usize::from(p < b.jobs % np);
            let (chunk, rate) = (b.enqueue_batch.max(1), b.rate / np as u64);
            tokio::spawn(async move {
                let mut sent = 0;
                while sent < n {
                    let k = chunk.min(n - sent);
                    if rate > 0 {
                        // Pace: batch i leaves no earlier than i * chunk / rate seconds in.
                        let due = Duration::from_secs_f64(sent as f64 / rate as f64);
                        if let Some(wait) = due.checked_sub(t0.elapsed()) {
                            tokio::time::sleep(wait).await;
                        }
                    }
                    let reqs = (0..k)
                        .map(|_| EnqueueRequest::new("noop", serde_json::json!({})))
                        .collect();
                    queue.enqueue_many(reqs).await?;
                    sent += k;
                }
                Ok::<_, BenchError>(t0.elapsed())
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(b.jobs);
    while latencies.len() < b.jobs {
        match tokio::time::timeout(Duration::from_secs(60), rx.recv()).await {
            Ok(Some(o)) if o.outcome == "completed" => latencies.push(o.latency_ms),
            Ok(Some(_)) => {}
            Ok(None) => return Err(BenchError::Stalled("workers stopped early".into())),
            Err(_) => {
                return Err(BenchError::Stalled(format!(
                    "no completion for 60 s after {} of {} jobs",
                    latencies.len(),
                    b.jobs
                )))
            }
        }
    }
    let seconds = t0.elapsed().as_secs_f64();
    let mut enqueue_seconds = 0f64;
    for p in producers {
        enqueue_seconds = enqueue_seconds.max(p.await??.as_secs_f64());
    }
    shutdown.cancel();
    for h in handles {
        h.await??;
    }
    cleanup(&queue).await?;
    latencies.sort_unstable();
    let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p).round() as usize];
    Ok(QueueBenchReport {
        jobs: b.jobs,
        workers: b.workers,
        concurrency: b.concurrency,
        rate: b.rate,
        seconds,
        jobs_per_sec: b.jobs as f64 / seconds,
        enqueue_seconds,
        enqueue_per_sec: b.jobs as f64 / enqueue_seconds,
        p50_ms: pct(0.50),
        p90_ms: pct(0.90),
        p99_ms: pct(0.99),
        max_ms: *latencies.last().unwrap_or(&0),
    })
}

/// Deletes every key under the queue's prefix.
pub async fn cleanup(queue: &Queue) -> Result<(), BenchError> {
    let mut c = queue.conn().await?;
    let pattern = format!("{{{}}}:*", queue.prefix());
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut c)
            .await?;
        if !keys.is_empty() {
            let _: () = redis::cmd("UNLINK").arg(&keys).query_async(&mut c).await?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}
