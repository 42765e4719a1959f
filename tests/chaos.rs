//! Chaos: 2,000 `sleep` jobs, three worker processes, one killed with SIGKILL
//! about every second and restarted. Every job must complete, none be lost, and
//! the re-runs (starts beyond the first) must not exceed the kills.
//!
//! Workers run with concurrency 1, so a kill interrupts at most one job: that
//! is what makes "duplicates <= kills" the exact bound.

mod common;

use std::process::Child;
use std::time::{Duration, Instant};

use common::{queue, RedisServer};
use engine::queue::EnqueueRequest;
use rand::Rng;
use serde_json::json;

fn spawn_worker(url: &str, n: usize) -> Child {
    let name = format!("chaos{n}");
    common::spawn_worker(
        url,
        &[
            "--roles",
            "sleep",
            "--concurrency",
            "1",
            "--lease-ms",
            "1000",
            "--heartbeat-ms",
            "500",
            "--grace-secs",
            "2",
            "--retry-base-ms",
            "50",
            "--name",
            &name,
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_nine_loses_nothing() {
    let redis = RedisServer::start();
    let q = queue(&redis).await;
    let n = 2000;
    let ids: Vec<String> = q
        .enqueue_many(
            (0..n)
                .map(|_| {
                    let mut r = EnqueueRequest::new("sleep", json!({"ms": 10}));
                    r.max_attempts = Some(25);
                    r
                })
                .collect(),
        )
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    let mut workers: Vec<Child> = (0..3).map(|i| spawn_worker(&redis.url(), i)).collect();
    let mut kills = 0u64;
    let t0 = Instant::now();
    let mut next_kill = Instant::now() + Duration::from_millis(800);
    loop {
        let stats = q.stats_for(&["sleep"]).await.unwrap().remove(0);
        if stats.completed >= n as u64 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(150),
            "stuck: {stats:?} after {kills} kills"
        );
        if Instant::now() >= next_kill {
            let i = rand::rng().random_range(0..workers.len());
            workers[i].kill().unwrap();
            workers[i].wait().unwrap();
            kills += 1;
            workers[i] = spawn_worker(&redis.url(), i);
            next_kill = Instant::now() + Duration::from_millis(rand::rng().random_range(700..1300));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for w in &mut workers {
        w.kill().unwrap();
        w.wait().unwrap();
    }
    let mut duplicates = 0u64;
    for id in &ids {
        let s = q.status(id).await.unwrap().expect("every job has a record");
        assert_eq!(s.state, "completed", "job {id}: {s:?}");
        duplicates += u64::from(s.starts.saturating_sub(1));
    }
    let stats = q.stats_for(&["sleep"]).await.unwrap().remove(0);
    eprintln!(
        "chaos: {n} jobs in {:.1}s, {kills} kills, {duplicates} re-runs, stats {stats:?}",
        t0.elapsed().as_secs_f64()
    );
    assert!(
        kills >= 3,
        "the run was too short to test anything ({kills} kills)"
    );
    assert_eq!(
        stats.completed, n as u64,
        "each job recorded complete exactly once"
    );
    assert_eq!(stats.dead, 0);
    assert!(
        duplicates <= kills,
        "{duplicates} re-runs for {kills} kills"
    );
    assert_eq!((stats.waiting, stats.in_flight), (0, 0));
}
