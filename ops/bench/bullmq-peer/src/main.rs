//! The benchmark peer: the official BullMQ Rust port (`bullmq-official`) measured the way
//! `synth-city bench queue` measures ours: one worker with a no-op processor runs while one
//! producer adds N jobs (in `add_bulk` chunks, or one `add` per call with chunk 1); the clock
//! stops when the worker has processed every job. Jobs are removed on completion (BullMQ's
//! cheapest setting). Prints one JSON line like ours (jobs, seconds, jobs_per_sec,
//! enqueue_seconds, enqueue_per_sec). It does not measure latency.
//!
//!     bullmq-peer REDIS_URL JOBS [CONCURRENCY=100] [CHUNK=1000]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bullmq::options::RedisConnectionOptions;
use bullmq::types::RemoveOnFinish;
use bullmq::{BulkJob, JobOptions, Queue, QueueOptions, Worker, WorkerOptions};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        return Err("usage: bullmq-peer REDIS_URL JOBS [CONCURRENCY=100] [CHUNK=1000]".into());
    }
    let url = args[1].clone();
    let jobs: usize = args[2].parse()?;
    let concurrency: usize = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(100);
    let chunk: usize = args
        .get(4)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(1000)
        .max(1);
    let name = format!(
        "peer{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos()
    );
    let conn = RedisConnectionOptions {
        url,
        ..Default::default()
    };
    let queue = Queue::with_options(
        &name,
        QueueOptions {
            connection: conn.clone(),
            default_job_options: JobOptions::default()
                .remove_on_complete(RemoveOnFinish::Bool(true)),
            ..Default::default()
        },
    )
    .await?;
    let done = Arc::new(AtomicUsize::new(0));
    let d = done.clone();
    let worker = Worker::with_options(
        &name,
        move |_job: bullmq::Job, _token| {
            let d = d.clone();
            async move {
                d.fetch_add(1, Ordering::Relaxed);
                Ok(serde_json::Value::Null)
            }
        },
        WorkerOptions {
            connection: conn,
            concurrency,
            remove_on_complete: Some(RemoveOnFinish::Bool(true)),
            ..Default::default()
        },
    )
    .await?;
    let start = Instant::now();
    let mut added = 0;
    while added < jobs {
        let n = chunk.min(jobs - added);
        if chunk == 1 {
            queue.add("noop", serde_json::json!({})).await?;
        } else {
            let batch = (0..n)
                .map(|_| BulkJob::new("noop", serde_json::json!({})))
                .collect();
            queue.add_bulk(batch).await?;
        }
        added += n;
    }
    let enqueue_seconds = start.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(300);
    while done.load(Ordering::Relaxed) < jobs {
        if Instant::now() > deadline {
            return Err(format!("stalled: {} of {jobs} done", done.load(Ordering::Relaxed)).into());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "jobs": jobs, "seconds": seconds, "jobs_per_sec": jobs as f64 / seconds,
            "enqueue_seconds": enqueue_seconds, "enqueue_per_sec": jobs as f64 / enqueue_seconds,
        })
    );
    worker.close(5000).await?;
    queue.obliterate(true, 1000).await?;
    Ok(())
}
