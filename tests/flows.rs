//! The engine's flows (BullMQ's parent and children) against a real redis-server, with
//! in-process workers: a job that answers `JobError::WaitForChildren` waits in
//! `waiting-children` while its children run on any worker; each child's outcome (completed,
//! dead, cancelled) is recorded on the parent once, with its worker and times; the last one
//! puts the parent back on its stream, and it runs again without using an attempt. A child
//! finished a second time (retried from the dead letters) counts nothing; cancelling the
//! parent cancels its children. A child whose record was overwritten (poison) or deleted
//! still reaches its parent through its envelope, and a fan-out whose reply was lost is
//! recognised when the worker retries it.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use common::{eventually, job_state as state, RedisServer};
use engine::queue::{CancelOutcome, EnqueueRequest, Queue};
use engine::worker::{Worker, WorkerOptions};
use jobs::{JobContext, JobError, JobHandler, JobSpec, Role};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

/// A parent: `n` children, the one at `fail` failing for good; it works `pause` ms before
/// it fans out.
#[derive(Serialize, Deserialize)]
struct Whole {
    n: u32,
    fail: Option<u32>,
    ms: u64,
    #[serde(default)]
    pause: u64,
}
impl JobSpec for Whole {
    const TYPE: &'static str = "whole";
    const DESCRIPTION: &'static str = "a flow parent (tests/flows.rs)";
    const ROLE: Role = Role::Engine;
    type Output = Value;
}

/// A child: sleeps `ms` (0 = until cancelled), then answers `i`, or fails for good.
#[derive(Serialize, Deserialize)]
struct Part {
    i: u32,
    fail: bool,
    ms: u64,
}
impl JobSpec for Part {
    const TYPE: &'static str = "part";
    const DESCRIPTION: &'static str = "a flow child (tests/flows.rs)";
    const ROLE: Role = Role::Engine;
    const MAX_ATTEMPTS: u32 = 1;
    type Output = Value;
}

fn catalog() -> jobs::Catalog {
    jobs::Catalog::default().with::<Whole>().with::<Part>()
}

struct WholeHandler {
    queue: Queue,
}

#[async_trait]
impl JobHandler for WholeHandler {
    type Job = Whole;
    async fn run(&self, ctx: &JobContext, job: Whole) -> Result<Value, JobError> {
        let done = self.queue.children(&ctx.job_id).await.unwrap();
        if done.is_empty() {
            tokio::time::sleep(Duration::from_millis(job.pause)).await;
            let children = (0..job.n)
                .map(|i| {
                    let req = EnqueueRequest {
                        job_type: "part".into(),
                        payload: json!({"i": i, "fail": job.fail == Some(i), "ms": job.ms}),
                        id: Some(format!("{}-c{i}", ctx.job_id)),
                        ..Default::default()
                    };
                    req.into_envelope_in(&catalog()).unwrap().0
                })
                .collect();
            return Err(JobError::WaitForChildren(children));
        }
        let count = |s: &str| done.iter().filter(|c| c.state == s).count();
        let sum: u64 = done
            .iter()
            .filter_map(|c| c.result.as_ref()?.as_u64())
            .sum();
        Ok(
            json!({"completed": count("completed"), "dead": count("dead"),
                  "cancelled": count("cancelled"), "sum": sum}),
        )
    }
}

struct PartHandler {
    /// While set, the child told to fail fails.
    failing: Arc<AtomicBool>,
}

#[async_trait]
impl JobHandler for PartHandler {
    type Job = Part;
    async fn run(&self, ctx: &JobContext, job: Part) -> Result<Value, JobError> {
        if job.ms == 0 {
            ctx.cancelled().await;
            return Err(JobError::Cancelled);
        }
        tokio::time::sleep(Duration::from_millis(job.ms)).await;
        if job.fail && self.failing.load(Ordering::SeqCst) {
            return Err(JobError::permanent(format!("child {} refuses", job.i)));
        }
        Ok(json!(job.i))
    }
}

async fn flow_queue(redis: &RedisServer) -> Queue {
    flow_queue_with(redis, Default::default()).await
}

async fn flow_queue_with(redis: &RedisServer, cfg: engine::config::QueueConfig) -> Queue {
    let q = Queue::new(&redis.url(), "t", cfg)
        .unwrap()
        .with_catalog(catalog());
    engine::migrate::migrate(&q).await.unwrap();
    q
}

/// A worker of both types named `name`, with `concurrency` slots.
fn start(
    q: &Queue,
    name: &str,
    concurrency: usize,
    failing: Arc<AtomicBool>,
) -> (
    CancellationToken,
    tokio::task::JoinHandle<Result<(), engine::QueueError>>,
) {
    let (stop, handle, _) = start_roles(q, name, &["whole", "part"], concurrency, failing);
    (stop, handle)
}

/// A worker of `roles` named `name`, with `concurrency` slots, and what it observes.
fn start_roles(
    q: &Queue,
    name: &str,
    roles: &[&str],
    concurrency: usize,
    failing: Arc<AtomicBool>,
) -> (
    CancellationToken,
    tokio::task::JoinHandle<Result<(), engine::QueueError>>,
    tokio::sync::mpsc::UnboundedReceiver<engine::worker::Observation>,
) {
    let mut reg = jobs::Registry::new();
    reg.register(WholeHandler { queue: q.clone() })
        .register(PartHandler { failing });
    let o = WorkerOptions {
        roles: roles.iter().map(|r| r.to_string()).collect(),
        concurrency,
        batch: concurrency,
        lease: Duration::from_millis(600),
        block: Duration::from_millis(100),
        grace: Duration::from_secs(5),
        retry_base: Duration::from_millis(50),
        retry_cap: Duration::from_millis(400),
        heartbeat: Duration::from_millis(200),
        name: Some(name.into()),
        device: None,
        linger: Duration::from_millis(1),
        gather: Duration::from_millis(1),
    };
    let mut w = Worker::new(q.clone(), reg, o).unwrap();
    let (tx, obs) = tokio::sync::mpsc::unbounded_channel();
    w.observe(tx);
    let stop = CancellationToken::new();
    (stop.clone(), tokio::spawn(w.run(stop)), obs)
}

#[tokio::test]
async fn a_parent_waits_for_its_children_and_runs_again_with_their_outcomes() {
    let redis = RedisServer::start();
    let q = flow_queue(&redis).await;
    let failing = Arc::new(AtomicBool::new(true));
    let (stop_a, a) = start(&q, "wa", 2, failing.clone());
    let (stop_b, b) = start(&q, "wb", 2, failing.clone());
    let p = q
        .enqueue(EnqueueRequest::new(
            "whole",
            json!({"n": 4, "fail": 1, "ms": 300}),
        ))
        .await
        .unwrap()
        .id;
    eventually(Duration::from_secs(5), "the parent waits", || async {
        state(&q, &p).await == "waiting-children"
    })
    .await;
    eventually(Duration::from_secs(10), "the parent completes", || async {
        state(&q, &p).await == "completed"
    })
    .await;
    let s = q.status(&p).await.unwrap().unwrap();
    assert_eq!(
        s.result,
        Some(json!({"completed": 3, "dead": 1, "cancelled": 0, "sum": 5}))
    );
    assert_eq!(s.attempt, 0, "waiting for children uses no attempt");
    assert_eq!(s.starts, 2, "once to fan out, once with the outcomes");
    let kids = q.children(&p).await.unwrap();
    assert_eq!(kids.len(), 4);
    for k in &kids {
        let (start, end) = (k.started_at_ms.unwrap(), k.finished_at_ms.unwrap());
        assert!(start <= end && end - start >= 250, "{k:?}");
        assert!(k.worker.as_deref().is_some_and(|w| w.starts_with('w')));
    }
    let dead = kids.iter().find(|k| k.state == "dead").unwrap();
    assert!(
        dead.error.as_deref().unwrap().contains("child 1 refuses"),
        "{dead:?}"
    );
    // four children of 300 ms on two workers of two slots: they ran at once, on both workers
    let workers: std::collections::BTreeSet<&str> =
        kids.iter().filter_map(|k| k.worker.as_deref()).collect();
    assert_eq!(workers.len(), 2, "{kids:?}");
    let first_end = kids.iter().filter_map(|k| k.finished_at_ms).min().unwrap();
    let last_start = kids.iter().filter_map(|k| k.started_at_ms).max().unwrap();
    assert!(last_start < first_end, "the children overlap: {kids:?}");

    // the dead child, retried from the dead letters, now completes: its second outcome
    // counts nothing (the parent's record and result stay as they were)
    failing.store(false, Ordering::SeqCst);
    let (n, _) = q.dlq_retry(&[]).await.unwrap();
    assert_eq!(n, 1);
    eventually(
        Duration::from_secs(5),
        "the retried child completes",
        || async { state(&q, &dead.id).await == "completed" },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let again = q.status(&p).await.unwrap().unwrap();
    assert_eq!((again.state.as_str(), again.starts), ("completed", 2));
    let kids = q.children(&p).await.unwrap();
    assert_eq!(kids.iter().filter(|k| k.state == "dead").count(), 1);

    stop_a.cancel();
    stop_b.cancel();
    a.await.unwrap().unwrap();
    b.await.unwrap().unwrap();
}

#[tokio::test]
async fn cancelling_a_waiting_parent_cancels_its_children() {
    let redis = RedisServer::start();
    let q = flow_queue(&redis).await;
    let (stop, w) = start(&q, "wa", 2, Arc::new(AtomicBool::new(false)));
    // children that run until cancelled: two run, two wait
    let p = q
        .enqueue(EnqueueRequest::new("whole", json!({"n": 4, "ms": 0})))
        .await
        .unwrap()
        .id;
    let kid = |i: u32| format!("{p}-c{i}");
    eventually(Duration::from_secs(5), "two children run", || async {
        let mut active = 0;
        for i in 0..4 {
            active += usize::from(state(&q, &kid(i)).await == "active");
        }
        active == 2
    })
    .await;
    assert_eq!(state(&q, &p).await, "waiting-children");
    assert_eq!(q.cancel(&p).await.unwrap(), CancelOutcome::Cancelled);
    eventually(
        Duration::from_secs(5),
        "every child is cancelled",
        || async {
            let mut n = 0;
            for i in 0..4 {
                n += usize::from(state(&q, &kid(i)).await == "cancelled");
            }
            n == 4
        },
    )
    .await;
    let kids = q.children(&p).await.unwrap();
    assert_eq!(kids.len(), 4);
    assert!(kids.iter().all(|k| k.state == "cancelled"), "{kids:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let s = q.status(&p).await.unwrap().unwrap();
    assert_eq!(
        (s.state.as_str(), s.starts),
        ("cancelled", 1),
        "never woken"
    );
    stop.cancel();
    w.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_child_whose_record_was_overwritten_or_deleted_still_counts_for_its_parent() {
    let redis = RedisServer::start();
    let q = flow_queue(&redis).await;
    let failing = Arc::new(AtomicBool::new(true));
    // Only parents run at first: the children wait in their stream.
    let (stop_a, a, _) = start_roles(&q, "wa", &["whole"], 2, failing.clone());
    let p = q
        .enqueue(EnqueueRequest::new(
            "whole",
            json!({"n": 5, "fail": 4, "ms": 1500}),
        ))
        .await
        .unwrap()
        .id;
    eventually(Duration::from_secs(5), "the parent waits", || async {
        state(&q, &p).await == "waiting-children"
    })
    .await;
    let kid = |i: u32| format!("{p}-c{i}");
    let mut c = q.conn().await.unwrap();
    // c0's record is overwritten while it waits: start.lua dead-letters it as poison;
    // c1's record is deleted while it waits: it runs and completes all the same.
    let _: () = c.set(q.keys().job(&kid(0)), "poison").await.unwrap();
    let _: () = c.del(q.keys().job(&kid(1))).await.unwrap();
    let (stop_b, b, _) = start_roles(&q, "wb", &["part"], 4, failing.clone());
    eventually(Duration::from_secs(5), "c2, c3 and c4 run", || async {
        let mut n = 0;
        for i in 2..5 {
            n += usize::from(state(&q, &kid(i)).await == "active");
        }
        n == 3
    })
    .await;
    // c2 (it will complete: finish.lua) and c4 (it will fail: fail.lua) are overwritten
    // while they run.
    let _: () = c.set(q.keys().job(&kid(2)), "poison").await.unwrap();
    let _: () = c.set(q.keys().job(&kid(4)), "poison").await.unwrap();
    eventually(
        Duration::from_secs(10),
        "the parent hears of every child and completes",
        || async { state(&q, &p).await == "completed" },
    )
    .await;
    let s = q.status(&p).await.unwrap().unwrap();
    assert_eq!(
        s.result,
        Some(json!({"completed": 2, "dead": 3, "cancelled": 0, "sum": 4})),
        "c1 and c3 completed; the three poisoned children count as failed children"
    );
    assert_eq!(s.starts, 2, "woken once");
    let kids = q.children(&p).await.unwrap();
    let outcome = |i: u32| kids.iter().find(|k| k.id == kid(i)).unwrap();
    for (i, why) in [
        (0, "not a hash (WRONGTYPE)"),
        (2, "its result is lost"),
        (4, "last error: "),
    ] {
        let k = outcome(i);
        assert_eq!(k.state, "dead", "{k:?}");
        assert!(k.error.as_deref().unwrap_or("").contains(why), "{k:?}");
    }
    assert!(outcome(4)
        .error
        .as_deref()
        .unwrap()
        .contains("child 4 refuses"));
    assert_eq!(outcome(1).state, "completed");
    assert_eq!(
        outcome(4).worker.as_deref().map(|w| w.starts_with("wb")),
        Some(true)
    );
    let mut dead: Vec<String> = q
        .dlq_list(10)
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.id)
        .collect();
    dead.sort();
    assert_eq!(dead, vec![kid(0), kid(2), kid(4)]);
    assert!(q.pending_children(&p).await.unwrap().is_empty());
    for (stop, w) in [(stop_a, a), (stop_b, b)] {
        stop.cancel();
        w.await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn a_fan_out_retried_after_a_lost_reply_is_recognised() {
    let redis = RedisServer::start();
    // Replies slower than 300 ms time out, and the finisher retries the call.
    let cfg = engine::config::QueueConfig {
        response_timeout: Duration::from_millis(300),
        ..Default::default()
    };
    let q = flow_queue_with(&redis, cfg).await;
    let (stop, w, mut obs) = start_roles(
        &q,
        "wa",
        &["whole", "part"],
        4,
        Arc::new(AtomicBool::new(false)),
    );
    // A first flow loads the scripts, so the paused call below is the real fan-out.
    let warm = q
        .enqueue(EnqueueRequest::new("whole", json!({"n": 1, "ms": 1})))
        .await
        .unwrap()
        .id;
    eventually(
        Duration::from_secs(5),
        "the first flow completes",
        || async { state(&q, &warm).await == "completed" },
    )
    .await;
    let p = q
        .enqueue(EnqueueRequest::new(
            "whole",
            json!({"n": 2, "ms": 50, "pause": 600}),
        ))
        .await
        .unwrap()
        .id;
    eventually(Duration::from_secs(5), "the parent runs", || async {
        state(&q, &p).await == "active"
    })
    .await;
    // Writes (scripts included) wait 1.5 s: the fan-out times out on our side, is retried,
    // and Redis applies the first call, then the retries, once the pause ends.
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(1500)
        .arg("WRITE")
        .query(&mut redis.conn())
        .unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let o = obs.recv().await.unwrap();
            if o.job_id == p {
                return o.outcome;
            }
        }
    })
    .await
    .expect("the retried fan-out is recognised as this worker's own and observed");
    assert_eq!(seen, "waiting_children");
    eventually(Duration::from_secs(5), "the parent completes", || async {
        state(&q, &p).await == "completed"
    })
    .await;
    let s = q.status(&p).await.unwrap().unwrap();
    assert_eq!(
        s.result,
        Some(json!({"completed": 2, "dead": 0, "cancelled": 0, "sum": 1}))
    );
    assert_eq!(s.starts, 2, "fanned out once, woken once");
    let stats = q.stats().await.unwrap();
    let part = stats.iter().find(|s| s.job_type == "part").unwrap();
    assert_eq!(
        (part.enqueued, part.completed),
        (3, 3),
        "the children were made once"
    );
    stop.cancel();
    w.await.unwrap().unwrap();
}

/// Completed records dropped at finish (`SYNTH_KEEP_COMPLETED_COUNT=0`): the children's
/// outcomes still reach their parent (they live on `job:<parent>:children`, not in the
/// children's records), which runs once more with them and does not fan out again.
#[tokio::test]
async fn a_parent_gets_its_childrens_outcomes_when_completed_records_are_dropped_at_finish() {
    let redis = RedisServer::start();
    let cfg = engine::config::QueueConfig {
        keep_completed: engine::config::Keep::NONE,
        ..Default::default()
    };
    let q = flow_queue_with(&redis, cfg).await;
    let (stop, w) = start(&q, "w", 4, Arc::new(AtomicBool::new(true)));
    let p = q
        .enqueue(EnqueueRequest::new(
            "whole",
            json!({"n": 3, "fail": 1, "ms": 50}),
        ))
        .await
        .unwrap()
        .id;
    let stats = |t: &'static str| {
        let q = q.clone();
        async move { q.stats_for(&[t]).await.unwrap().remove(0) }
    };
    eventually(Duration::from_secs(10), "the parent completes", || async {
        stats("whole").await.completed == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (parent, part) = (stats("whole").await, stats("part").await);
    assert_eq!((parent.completed, parent.enqueued), (1, 1));
    assert_eq!(
        (part.enqueued, part.completed, part.dead),
        (3, 2, 1),
        "one fan-out: the parent read its children's outcomes"
    );
    assert!(q.status(&p).await.unwrap().is_none(), "dropped at finish");
    assert!(q.status(&format!("{p}-c0")).await.unwrap().is_none());
    // the dead child follows the failed setting (default: kept)
    assert_eq!(state(&q, &format!("{p}-c1")).await, "dead");
    let mut c = q.conn().await.unwrap();
    let events: Vec<(String, Vec<(String, String)>)> =
        c.xrange_all(q.keys().events()).await.unwrap();
    let woke = events.iter().any(|(_, f)| {
        f.contains(&("event".into(), "children_done".into()))
            && f.contains(&("id".into(), p.clone()))
    });
    assert!(woke, "the last child woke the parent");
    stop.cancel();
    w.await.unwrap().unwrap();
}
