//! Cron: several schedulers at once, and each fire time enqueues exactly one job.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{queue, RedisServer};
use engine::queue::Queue;
use engine::scheduler::{self, Schedule};
use serde_json::json;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_schedulers_fire_each_time_once() {
    let redis = RedisServer::start();
    let q = queue(&redis).await;
    let s = Schedule {
        name: "every-second".into(),
        cron: "* * * * * *".into(),
        job_type: "noop".into(),
        payload: json!({}),
        max_attempts: None,
        timeout_ms: None,
        owner: None,
    };
    scheduler::add(&q, &s).await.unwrap();
    let stop = CancellationToken::new();
    let mut runs = Vec::new();
    for _ in 0..3 {
        // Separate pools, as separate processes would have.
        let q = Queue::new(&redis.url(), "t", Default::default()).unwrap();
        runs.push(tokio::spawn(scheduler::run(
            q,
            Duration::from_millis(20),
            stop.clone(),
        )));
    }
    tokio::time::sleep(Duration::from_millis(3500)).await;
    stop.cancel();
    for r in runs {
        r.await.unwrap().unwrap();
    }
    let mut c = q.conn().await.unwrap();
    let entries: redis::streams::StreamRangeReply =
        redis::AsyncCommands::xrange_all(&mut c, q.keys().stream("noop"))
            .await
            .unwrap();
    let ids: Vec<String> = entries
        .ids
        .iter()
        .map(|e| {
            let env: serde_json::Value =
                serde_json::from_str(&e.get::<String>("job").unwrap()).unwrap();
            env["id"].as_str().unwrap().to_string()
        })
        .collect();
    let unique: HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "duplicate fires: {ids:?}");
    assert!(
        (3..=4).contains(&ids.len()),
        "3.5 s of a 1 s schedule fired {} times",
        ids.len()
    );
    let mut fires: Vec<u64> = ids
        .iter()
        .map(|id| id.rsplit('-').next().unwrap().parse().unwrap())
        .collect();
    fires.sort();
    assert!(fires.windows(2).all(|w| w[1] - w[0] == 1000), "{fires:?}");
    let listed = scheduler::list(&q).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].last_fire_ms, fires.last().copied());
    assert!(listed[0].next_fire_ms.unwrap() > *fires.last().unwrap());
}

#[tokio::test]
async fn schedules_are_checked_listed_and_removed() {
    let redis = RedisServer::start();
    let q = queue(&redis).await;
    let mut s = Schedule {
        name: "sweep".into(),
        cron: "0 * * * *".into(),
        job_type: "sleep".into(),
        payload: json!({"ms": 1}),
        max_attempts: Some(2),
        timeout_ms: None,
        owner: None,
    };
    let next = scheduler::add(&q, &s).await.unwrap();
    assert_eq!(next % 3_600_000, 0, "an hourly schedule fires on the hour");
    s.cron = "61 * * * *".into();
    assert!(scheduler::add(&q, &s).await.is_err());
    s.cron = "0 * * * *".into();
    s.payload = json!({"ms": "soon"});
    let err = scheduler::add(&q, &s).await.unwrap_err().to_string();
    assert!(err.contains("payload for `sleep`"), "{err}");
    s.job_type = "nope".into();
    assert!(scheduler::add(&q, &s)
        .await
        .unwrap_err()
        .to_string()
        .contains("unknown job type"));
    assert_eq!(scheduler::list(&q).await.unwrap().len(), 1);
    assert!(scheduler::remove(&q, "sweep").await.unwrap());
    assert!(!scheduler::remove(&q, "sweep").await.unwrap());
    assert!(scheduler::list(&q).await.unwrap().is_empty());
}
