//! Redis restarts mid-run (SIGKILL, AOF with appendfsync always): no job whose
//! enqueue was acknowledged is lost, and the workers carry on by themselves.

mod common;

use std::process::Child;
use std::time::{Duration, Instant};

use common::{queue, RedisServer};
use engine::queue::EnqueueRequest;
use serde_json::json;

fn spawn_worker(url: &str) -> Child {
    let flags = [
        "--roles",
        "sleep",
        "--concurrency",
        "4",
        "--lease-ms",
        "2000",
    ];
    common::spawn_worker(url, &flags)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_jobs_survive_a_redis_restart() {
    let mut redis = RedisServer::start_with(&[
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
        "--save",
        "",
    ]);
    let url = redis.url();
    let q = queue(&redis).await;
    let mut workers = vec![spawn_worker(&url), spawn_worker(&url)];

    // The producer enqueues steadily; only acknowledged ids are promised.
    let producer = tokio::spawn({
        let q = q.clone();
        async move {
            let mut acked = Vec::new();
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(4) {
                let batch = (0..5)
                    .map(|_| EnqueueRequest::new("sleep", json!({"ms": 5})))
                    .collect();
                match q.enqueue_many(batch).await {
                    Ok(ids) => acked.extend(ids.into_iter().map(|e| e.id)),
                    Err(e) => panic!("enqueue gave up: {e}"),
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            acked
        }
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    redis.kill();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    redis.restart();
    let acked = producer.await.unwrap();
    assert!(acked.len() > 200, "only {} jobs enqueued", acked.len());

    let deadline = Instant::now() + Duration::from_secs(60);
    let mut pending = acked.clone();
    while !pending.is_empty() {
        let mut still = Vec::new();
        for id in pending {
            match q.status(&id).await.unwrap() {
                Some(s) if s.state == "completed" => {}
                Some(_) => still.push(id),
                None => panic!("acknowledged job {id} was lost"),
            }
        }
        pending = still;
        if !pending.is_empty() {
            assert!(
                Instant::now() < deadline,
                "{} acknowledged jobs never completed",
                pending.len()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    for w in &mut workers {
        assert!(
            w.try_wait().unwrap().is_none(),
            "a worker exited instead of reconnecting"
        );
        w.kill().unwrap();
        w.wait().unwrap();
    }
    eprintln!("restart: {} acknowledged jobs, all completed", acked.len());
}
