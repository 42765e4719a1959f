//! The queue's promises, against a real redis-server: delivery, batching,
//! retries and backoff, dead letters, delays, idempotency, timeouts,
//! cancellation, graceful shutdown, malformed entries, crash recovery.

mod common;

use std::time::Duration;

use common::{eventually, job_state as state, queue, queue_with, RedisServer};
use engine::queue::{CancelOutcome, EnqueueRequest, Queue};
use engine::worker::{Observation, Worker, WorkerOptions};
use redis::AsyncCommands;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

struct Running {
    stop: CancellationToken,
    handle: tokio::task::JoinHandle<Result<(), engine::QueueError>>,
    obs: mpsc::UnboundedReceiver<Observation>,
}

impl Running {
    async fn stop(self) {
        self.stop.cancel();
        self.handle.await.unwrap().unwrap();
    }
}

fn opts(roles: &[&str]) -> WorkerOptions {
    WorkerOptions {
        roles: roles.iter().map(|s| s.to_string()).collect(),
        concurrency: 8,
        batch: 16,
        lease: Duration::from_millis(600),
        block: Duration::from_millis(200),
        grace: Duration::from_secs(5),
        retry_base: Duration::from_millis(50),
        retry_cap: Duration::from_millis(400),
        heartbeat: Duration::from_millis(200),
        name: Some("test".into()),
        device: None,
        linger: Duration::from_millis(1),
        gather: Duration::from_millis(1),
    }
}

fn start(q: &Queue, o: WorkerOptions) -> Running {
    let mut reg = jobs::Registry::new();
    engine::builtin::register(&mut reg);
    let mut w = Worker::new(q.clone(), reg, o).unwrap();
    let (tx, obs) = mpsc::unbounded_channel();
    w.observe(tx);
    let stop = CancellationToken::new();
    let handle = tokio::spawn(w.run(stop.clone()));
    Running { stop, handle, obs }
}

async fn wait_state(q: &Queue, id: &str, want: &str, timeout: Duration) {
    eventually(timeout, &format!("job {id} to be {want}"), || async {
        state(q, id).await == want
    })
    .await;
}

async fn xlen(q: &Queue, t: &str) -> u64 {
    let mut c = q.conn().await.unwrap();
    c.xlen(q.keys().stream(t)).await.unwrap()
}

#[tokio::test]
async fn delivers_every_job_once_and_leaves_streams_empty() {
    let redis = RedisServer::start();
    let q = queue(&redis).await;
    let mut reqs: Vec<_> = (0..50)
        .map(|_| EnqueueRequest::new("sleep", json!({"ms": 2})))
        .collect();
    reqs.extend((0..50).map(|_| EnqueueRequest::new("noop", json!({}))));
    let ids = q.enqueue_many(reqs).await.unwrap();
    assert!(ids.iter().all(|e| e.created));
    let mut w = start(&q, opts(&["sleep", "noop"]));
    let mut done = std::collections::HashSet::new();
    while done.len() < 100 {
        let o = tokio::time::timeout(Duration::from_secs(10), w.obs.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(o.outcome, "completed");
        assert!(done.insert(o.job_id), "a job completed twice");
    }
    let s = q.status(&ids[0].id).await.unwrap().unwrap();
    assert_eq!(s.state, "completed");
    assert_eq!(s.result, Some(json!({"slept_ms": 2})));
    assert_eq!(s.progress, Some(json!({"pct": 50})));
    assert_eq!(s.starts, 1);
    assert!(s.payload.is_none(), "the envelope is dropped once finished");
    // Acked entries are deleted: the streams do not grow.
    assert_eq!(xlen(&q, "sleep").await, 0);
    assert_eq!(xlen(&q, "noop").await, 0);
    let stats = q.stats().await.unwrap();
    let sleep = stats.iter().find(|s| s.job_type == "sleep").unwrap();
    assert_eq!(
        (
            sleep.enqueued,
            sleep.completed,
            sleep.waiting,
            sleep.in_flight
        ),
        (50, 50, 0, 0)
    );
    // The result record expires.
    let mut c = q.conn().await.unwrap();
    let ttl: i64 = c.pttl(q.keys().job(&ids[0].id)).await.unwrap();
    assert!(ttl > 0, "finished jobs carry a TTL, got {ttl}");
    w.stop().await;
}

#[tokio::test]
async fn reads_in_batches_without_exceeding_concurrency() {
    let redis = RedisServer::start();
    let q = queue(&redis).await;
    let n = 1000;
    q.enqueue_many(
        (0..n)
            .map(|_| EnqueueRequest::new("noop", json!({})))
            .collect(),
    )
    .await
    .unwrap();
    let mut o = opts(&["noop"]);
    o.concurrency = 32;
    o.batch = 32;
    let mut w = start(&q, o);
    for _ in 0..n {
        let o = tokio::time::timeout(Duration::from_secs(10), w.obs.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(o.outcome, "completed");
    }
    assert_eq!(xlen(&q, "noop").await, 0);
    w.stop().await;
}

#[tokio::test]
async fn failures_retry_with_backoff_then_dead_letter() {
    let redis = RedisServer::start();
    let q = queue(&redis).await;
    let mut req = EnqueueRequest::new("sleep", json!({"ms": 1, "fail_rate": 1.0}));
    req.max_attempts = Some(3);
    let id = q.enqueue(req).await.unwrap().id;
    let mut w = start(&q, opts(&["sleep"]));
    let mut outcomes = Vec::new();
    while outcomes.last() != Some(&"dead") {
        let o = tokio::time::timeout(Duration::from_secs(10), w.obs.recv())
            .await
            .unwrap()
            .unwrap();
        outcomes.push(o.outcome);
    }
    assert_eq!(outcomes, ["retrying", "retrying", "dead"]);
    let s = q.status(&id).await.unwrap().unwrap();
    assert_eq!(s.state, "dead");
    assert_eq!(s.attempt, 3);
    assert_eq!(s.starts, 3);
    assert!(s.error.unwrap().contains("attempt 3 of 3"));
    // Backoff: each retry was scheduled at least base/2 ahead, growing.
    let mut c = q.conn().await.unwrap();
    let ev: redis::streams::StreamRangeReply = c.xrange_all(q.keys().events()).await.unwrap();
    let gaps: Vec<u64> = ev
        .ids
        .iter()
        .filter(|e| e.get::<String>("event").as_deref() == Some("retrying"))
        .map(|e| {
            e.get::<String>("run_at").unwrap().parse::<u64>().unwrap()
                - e.get::<String>("at").unwrap().parse::<u64>().unwrap()
        })
        .collect();
    assert_eq!(gaps.len(), 2);
    assert!(
        gaps[0] >= 25 && gaps[0] <= 51,
        "first retry delay {}",
        gaps[0]
    );
    assert!(
        gaps[1] >= 50 && gaps[1] <= 101,
        "second retry delay {}",
        gaps[1]
    );
    // The dead letter names the error; retrying it puts it back with attempt 0.
    let dlq = q.dlq_list(10).await.unwrap();
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0].id, id);
    assert!(dlq[0].error.contains("injected failure"));
    let stats = q.stats().await.unwrap();
    let st = stats.iter().find(|s| s.job_type == "sleep").unwrap();
    assert_eq!((st.failed, st.retried, st.dead, st.delayed), (3, 2, 1, 0));
    w.stop().await;
    let (n, skipped) = q.dlq_retry(&[]).await.unwrap();
    assert_eq!((n, skipped.len()), (1, 0));
    let s = q.status(&id).await.unwrap().unwrap();
    assert_eq!((s.state.as_str(), s.attempt), ("waiting", 0));
    assert!(q.dlq_list(10).await.unwrap().is_empty());
    assert_eq!(
        q.dlq_retry(&[]).await.unwrap().0,
        0,
        "a letter is retried once"
    );
}

#[tokio::test]
async fn delayed_jobs_wait_their_turn() {
    let redis = RedisServer::start();
    let q = queue(&redis).await;
    let mut req = EnqueueRequest::new("noop", json!({}));
    req.delay_ms = 700;
    let id = q.enqueue(req).await.unwrap().id;
    assert_eq!(state(&q, &id).await, "delayed");
    // Redis stamped the envelope with its own clock when it accepted it.
    let mut c = q.conn().await.unwrap();
    let env: String = c.hget(q.keys().job(&id), "env").await.unwrap();
    let env = jobs::JobEnvelope::from_json(&env).unwrap();
    let st = q.status(&id).await.unwrap().unwrap();
    assert_eq!(Some(env.enqueued_at_ms), st.enqueued_at_ms);
    assert_eq!(
        q.stats()
            .await
            .unwrap()
            .iter()
            .find(|s| s.job_type == "noop")
            .unwrap()
            .delayed,
        1
    );
    let w = start(&q, opts(&["noop"]));
    wait_state(&q, &id, "completed", Duration::from_secs(5)).await;
    let s = q.status(&id).await.unwrap().unwrap();
    let waited = s.started_at_ms.unwrap() - s.enqueued_at_ms.unwrap();
    assert!(waited >= 700, "started after {waited} ms, before its delay");
    let noop = q
        .stats()
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.job_type == "noop")
        .unwrap();
    assert_eq!(
        noop.delayed, 0,
        "promotion takes it out of the delayed count"
    );
    w.stop().await;
}

#[tokio::test]
async fn idempotent_enqueue_returns_the_first_job() {
    let redis = RedisServer::start();
    let q = queue(&redis).await;
    let mk = || {
        let mut r = EnqueueRequest::new("noop", json!({}));
        r.idempotency_key = Some("sweep-2026-11-25".into());
        r
    };
    let a = q.enqueue(mk()).await.unwrap();
    let b = q.enqueue(mk()).await.unwrap();
    assert!(a.created && !b.created);
    assert_eq!(a.id, b.id);
    assert_eq!(xlen(&q, "noop").await, 1);
    // The same id twice is one job too (a retried enqueue after a timeout).
    let mut r = EnqueueRequest::new("noop", json!({}));
    r.id = Some(a.id.clone());
    assert!(!q.enqueue(r).await.unwrap().created);
    assert_eq!(xlen(&q, "noop").await, 1);
}

#[tokio::test]
async fn a_job_over_its_timeout_fails() {
    let redis = RedisServer::start();
    let q = queue(&redis).await;
    let mut req = EnqueueRequest::new("sleep", json!({"ms": 5000}));
    req.timeout_ms = Some(200);
    req.max_attempts = Some(1);
    let id = q.enqueue(req).await.unwrap().id;
    let w = start(&q, opts(&["sleep"]));
    wait_state(&q, &id, "dead", Duration::from_secs(3)).await;
    let s = q.status(&id).await.unwrap().unwrap();
    assert!(s.error.unwrap().contains("timed out after 200 ms"));
    w.stop().await;
}

#[tokio::test]
async fn cancellation_stops_waiting_and_running_jobs() {
    let redis = RedisServer::start();
    let q = queue(&redis).await;
    // Waiting: never starts.
    let waiting = q
        .enqueue(EnqueueRequest::new("sleep", json!({"ms": 1})))
        .await
        .unwrap()
        .id;
    assert_eq!(q.cancel(&waiting).await.unwrap(), CancelOutcome::Cancelled);
    // Running: the handler sees its token trip.
    let running = q
        .enqueue(EnqueueRequest::new("sleep", json!({"ms": 30_000})))
        .await
        .unwrap()
        .id;
    let w = start(&q, opts(&["sleep"]));
    wait_state(&q, &running, "active", Duration::from_secs(3)).await;
    assert_eq!(q.cancel(&running).await.unwrap(), CancelOutcome::Cancelling);
    wait_state(&q, &running, "cancelled", Duration::from_secs(3)).await;
    let s = q.status(&waiting).await.unwrap().unwrap();
    assert_eq!((s.state.as_str(), s.starts), ("cancelled", 0));
    assert_eq!(
        q.cancel(&running).await.unwrap(),
        CancelOutcome::AlreadyFinished("cancelled".into())
    );
    assert_eq!(q.cancel("nope").await.unwrap(), CancelOutcome::Missing);
    w.stop().await;
}

#[tokio::test]
async fn shutdown_finishes_short_jobs_and_hands_back_long_ones() {
    let redis = RedisServer::start();
    let q = queue(&redis).await;
    let short = q
        .enqueue(EnqueueRequest::new("sleep", json!({"ms": 300})))
        .await
        .unwrap()
        .id;
    let long = q
        .enqueue(EnqueueRequest::new("sleep", json!({"ms": 1500})))
        .await
        .unwrap()
        .id;
    let mut o = opts(&["sleep"]);
    o.grace = Duration::from_millis(600);
    let w = start(&q, o.clone());
    wait_state(&q, &long, "active", Duration::from_secs(3)).await;
    wait_state(&q, &short, "active", Duration::from_secs(3)).await;
    w.stop().await;
    assert_eq!(state(&q, &short).await, "completed");
    let s = q.status(&long).await.unwrap().unwrap();
    assert_eq!(
        (s.state.as_str(), s.attempt),
        ("waiting", 0),
        "handed back, no attempt used"
    );
    // Another worker picks it up at once and finishes it.
    let w2 = start(&q, o);
    wait_state(&q, &long, "completed", Duration::from_secs(5)).await;
    assert_eq!(q.status(&long).await.unwrap().unwrap().starts, 2);
    w2.stop().await;
}

#[tokio::test]
async fn malformed_entries_are_dead_lettered_and_the_worker_goes_on() {
    let redis = RedisServer::start();
    let q = queue(&redis).await;
    let stream = q.keys().stream("sleep");
    let mut c = q.conn().await.unwrap();
    let _: String = c.xadd(&stream, "*", &[("job", "{not json")]).await.unwrap();
    let _: String = c.xadd(&stream, "*", &[("other", "x")]).await.unwrap();
    let wrong_type = json!({"v":1,"id":"w1","type":"noop","payload":{},"attempt":0,
        "max_attempts":1,"timeout_ms":1000})
    .to_string();
    let _: String = c
        .xadd(&stream, "*", &[("job", wrong_type.as_str())])
        .await
        .unwrap();
    let missing = json!({"v":1,"id":"m1","type":"sleep","payload":{},"attempt":0,
        "max_attempts":3,"timeout_ms":1000})
    .to_string();
    let _: String = c
        .xadd(&stream, "*", &[("job", missing.as_str())])
        .await
        .unwrap();
    let good = q
        .enqueue(EnqueueRequest::new("sleep", json!({"ms": 1})))
        .await
        .unwrap()
        .id;
    let w = start(&q, opts(&["sleep"]));
    wait_state(&q, &good, "completed", Duration::from_secs(5)).await;
    eventually(Duration::from_secs(3), "four dead letters", || async {
        q.dlq_list(10).await.unwrap().len() == 4
    })
    .await;
    let reasons: Vec<String> = q
        .dlq_list(10)
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.error)
        .collect();
    let has = |s: &str| reasons.iter().any(|r| r.contains(s));
    assert!(has("envelope is not valid"), "{reasons:?}");
    assert!(has("no `job` field"), "{reasons:?}");
    assert!(has("does not match its stream `sleep`"), "{reasons:?}");
    assert!(has("missing field `ms`"), "{reasons:?}");
    w.stop().await;
    // A letter that does not decode cannot be retried, and says so.
    let (n, skipped) = q.dlq_retry(&[]).await.unwrap();
    assert_eq!(n, 2, "the two decodable envelopes go back");
    assert_eq!(skipped.len(), 2);
    assert!(skipped[0].contains("does not decode"));
    assert_eq!(
        xlen(&q, "sleep").await,
        1,
        "the missing-field job is back on `sleep`"
    );
    assert_eq!(
        xlen(&q, "noop").await,
        1,
        "the wrong-stream job goes to its own type"
    );
    assert_eq!(q.dlq_purge().await.unwrap(), 2);
}

#[tokio::test]
async fn jobs_of_a_dead_consumer_are_reclaimed_after_the_lease() {
    let redis = RedisServer::start();
    let q = queue(&redis).await;
    let a = q
        .enqueue(EnqueueRequest::new("noop", json!({})))
        .await
        .unwrap()
        .id;
    let b = q
        .enqueue(EnqueueRequest::new("noop", json!({})))
        .await
        .unwrap()
        .id;
    // A "worker" reads both and dies: one before starting, one mid-run.
    let mut c = q.conn().await.unwrap();
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("workers")
        .arg("ghost")
        .arg("COUNT")
        .arg(10)
        .arg("STREAMS")
        .arg(q.keys().stream("noop"))
        .arg(">")
        .query_async(&mut c)
        .await
        .unwrap();
    let _: () = c.hset(q.keys().job(&b), "state", "active").await.unwrap();
    let t0 = std::time::Instant::now();
    let w = start(&q, opts(&["noop"]));
    wait_state(&q, &a, "completed", Duration::from_secs(5)).await;
    wait_state(&q, &b, "completed", Duration::from_secs(5)).await;
    assert!(
        t0.elapsed() >= Duration::from_millis(600),
        "not before the lease ran out"
    );
    let sa = q.status(&a).await.unwrap().unwrap();
    let sb = q.status(&b).await.unwrap().unwrap();
    assert_eq!(sa.attempt, 0, "never started: no attempt lost");
    assert_eq!(sb.attempt, 1, "stalled mid-run: counts as an attempt");
    let stats = q.stats().await.unwrap();
    assert_eq!(
        stats.iter().find(|s| s.job_type == "noop").unwrap().stalled,
        1
    );
    w.stop().await;
}

#[tokio::test]
async fn a_live_worker_keeps_its_long_job() {
    let redis = RedisServer::start();
    let q = queue(&redis).await;
    // 2 s job, 600 ms lease, two workers: the lease keeper must stop the
    // second worker's reclaimer from taking it.
    let id = q
        .enqueue(EnqueueRequest::new("sleep", json!({"ms": 2000})))
        .await
        .unwrap()
        .id;
    let w1 = start(&q, opts(&["sleep"]));
    wait_state(&q, &id, "active", Duration::from_secs(3)).await;
    let w2 = start(&q, opts(&["sleep"]));
    wait_state(&q, &id, "completed", Duration::from_secs(5)).await;
    let s = q.status(&id).await.unwrap().unwrap();
    assert_eq!((s.starts, s.attempt), (1, 0));
    w1.stop().await;
    w2.stop().await;
}

#[tokio::test]
async fn workers_refuse_an_unmigrated_redis() {
    let redis = RedisServer::start();
    let q = Queue::new(&redis.url(), "fresh", Default::default()).unwrap();
    let mut reg = jobs::Registry::new();
    engine::builtin::register(&mut reg);
    let w = Worker::new(q, reg, opts(&["noop"])).unwrap();
    let err = w
        .run(CancellationToken::new())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("version 0") && err.contains("run `synth-city migrate`"),
        "{err}"
    );
}

#[tokio::test]
async fn workers_register_with_a_heartbeat() {
    let redis = RedisServer::start();
    let q = queue(&redis).await;
    let w = start(&q, opts(&["noop", "sleep"]));
    eventually(Duration::from_secs(3), "a registered worker", || async {
        engine::worker::list_workers(&q).await.unwrap().len() == 1
    })
    .await;
    let ws = engine::worker::list_workers(&q).await.unwrap();
    assert_eq!(ws[0].roles, ["noop", "sleep"]);
    assert!(ws[0].id.starts_with("test-"));
    w.stop().await;
    assert!(engine::worker::list_workers(&q).await.unwrap().is_empty());
}

#[tokio::test]
async fn bad_requests_never_reach_redis() {
    let redis = RedisServer::start();
    let q = queue(&redis).await;
    for (t, p, want) in [
        ("nope", json!({}), "unknown job type"),
        ("sleep", json!({}), "missing field `ms`"),
        ("sleep", json!({"ms": 1, "fail_rate": 3}), "fail_rate"),
        ("noop", json!({"x": 1}), "unknown field `x`"),
    ] {
        let err = q
            .enqueue(EnqueueRequest::new(t, p))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "{err}");
    }
    assert_eq!(xlen(&q, "sleep").await + xlen(&q, "noop").await, 0);
}

/// Enqueues one job; its id.
async fn enqueue(q: &Queue, t: &str, payload: serde_json::Value) -> String {
    q.enqueue(EnqueueRequest::new(t, payload)).await.unwrap().id
}

/// Dead letters, oldest first.
async fn letters(q: &Queue) -> Vec<engine::queue::DeadLetter> {
    q.dlq_list(100).await.unwrap()
}

/// Entries of `t`'s stream pending in the group (delivered, not acknowledged).
async fn pending(q: &Queue, t: &str) -> u64 {
    let mut c = q.conn().await.unwrap();
    let summary: (u64, redis::Value, redis::Value, redis::Value) = redis::cmd("XPENDING")
        .arg(q.keys().stream(t))
        .arg("workers")
        .query_async(&mut c)
        .await
        .unwrap();
    summary.0
}

#[tokio::test]
async fn one_poison_entry_harms_no_other_job_of_its_batch() {
    let redis = RedisServer::start();
    let q = queue(&redis).await;
    let mut ids = Vec::new();
    for _ in 0..8 {
        ids.push(enqueue(&q, "noop", json!({})).await);
    }
    // The 8th job's record is overwritten with a string: every HMGET/HSET on it is WRONGTYPE.
    let poison = ids[7].clone();
    let mut c = q.conn().await.unwrap();
    let _: () = c.set(q.keys().job(&poison), "not a hash").await.unwrap();
    let o = opts(&["noop"]);
    assert!(o.batch >= 8 && o.concurrency >= 8, "all 8 in one read");
    let lease = o.lease;
    let w = start(&q, o);
    for id in &ids[..7] {
        wait_state(&q, id, "completed", Duration::from_secs(5)).await;
        let s = q.status(id).await.unwrap().unwrap();
        assert_eq!(
            (s.attempt, s.starts),
            (0, 1),
            "job {id}: its first attempt and its first start (no stall charged)"
        );
    }
    eventually(lease, "the poison entry in the dead letters", || async {
        letters(&q).await.len() == 1
    })
    .await;
    let l = &letters(&q).await[0];
    assert_eq!(l.id, poison);
    let key = q.keys().job(&poison);
    assert!(
        l.error.contains(&key) && l.error.contains("WRONGTYPE") && l.error.contains("string"),
        "the reason names the key and what is wrong: {}",
        l.error
    );
    assert!(
        l.job.contains(&poison),
        "the letter keeps the envelope: {}",
        l.job
    );
    // Never redelivered: three leases later nothing is pending, nothing stalled, one letter.
    tokio::time::sleep(lease * 3).await;
    assert_eq!(letters(&q).await.len(), 1);
    assert_eq!((xlen(&q, "noop").await, pending(&q, "noop").await), (0, 0));
    let stats = q.stats().await.unwrap();
    let noop = stats.iter().find(|s| s.job_type == "noop").unwrap();
    assert_eq!((noop.completed, noop.stalled, noop.dead), (7, 0, 1));
    // The key the script could not use is left as it was, for the operator to look at.
    let v: String = c.get(&key).await.unwrap();
    assert_eq!(v, "not a hash");
    w.stop().await;
}

#[tokio::test]
async fn a_record_overwritten_while_delayed_is_dead_lettered_and_a_poisoned_letter_waits_for_repair(
) {
    let redis = RedisServer::start();
    let q = queue(&redis).await;
    let mut c = q.conn().await.unwrap();
    // `late` waits in the delayed set, `early` in its stream, with their records overwritten;
    // `fine` is delayed like `late`.
    let delayed = |ms| EnqueueRequest {
        delay_ms: ms,
        ..EnqueueRequest::new("noop", json!({}))
    };
    let late = q.enqueue(delayed(300)).await.unwrap().id;
    let fine = q.enqueue(delayed(300)).await.unwrap().id;
    let early = enqueue(&q, "noop", json!({})).await;
    for id in [&late, &early] {
        let _: () = c.set(q.keys().job(id), "poison").await.unwrap();
    }
    let w = start(&q, opts(&["noop"]));
    wait_state(&q, &fine, "completed", Duration::from_secs(5)).await;
    eventually(Duration::from_secs(3), "two dead letters", || async {
        letters(&q).await.len() == 2
    })
    .await;
    let l = letters(&q).await;
    let letter = |id: &str| l.iter().find(|l| l.id == id).unwrap().clone();
    assert!(
        letter(&late)
            .error
            .contains("overwritten while it waited to run"),
        "{l:?}"
    );
    assert!(
        letter(&early).job.contains(&early),
        "the envelope is kept: {l:?}"
    );
    // Retrying while the key is still poisoned leaves the letter whole and names the key.
    let (n, skipped) = q.dlq_retry(&[]).await.unwrap();
    assert_eq!(n, 0, "{skipped:?}");
    assert_eq!(skipped.len(), 2, "{skipped:?}");
    let poisoned = format!(
        "cannot be retried while `{}` holds a string",
        q.keys().job(&early)
    );
    assert!(skipped.iter().any(|s| s.contains(&poisoned)), "{skipped:?}");
    assert!(
        skipped.iter().any(|s| s.contains("does not decode")),
        "the lost envelope: {skipped:?}"
    );
    assert_eq!(letters(&q).await.len(), 2);
    assert_eq!(
        xlen(&q, "noop").await,
        0,
        "nothing half-moved onto the stream"
    );
    // Repaired (the key deleted), it is retried and runs.
    let _: () = c.del(q.keys().job(&early)).await.unwrap();
    assert_eq!(q.dlq_retry(&[]).await.unwrap().0, 1);
    wait_state(&q, &early, "completed", Duration::from_secs(5)).await;
    w.stop().await;
}

#[tokio::test]
async fn an_entry_delivered_too_often_is_dead_lettered() {
    let redis = RedisServer::start();
    let q = queue(&redis).await;
    assert_eq!(q.config().max_deliveries, 10, "the default cap");
    let over = enqueue(&q, "noop", json!({})).await;
    let under = enqueue(&q, "noop", json!({})).await;
    // A "worker" takes both and dies before starting them, again and again: the group
    // counts the deliveries (RETRYCOUNT sets the count as if it had happened).
    let stream = q.keys().stream("noop");
    let mut c = q.conn().await.unwrap();
    let read: redis::streams::StreamReadReply = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("workers")
        .arg("ghost")
        .arg("COUNT")
        .arg(10)
        .arg("STREAMS")
        .arg(&stream)
        .arg(">")
        .query_async(&mut c)
        .await
        .unwrap();
    let sids: Vec<String> = read.keys[0].ids.iter().map(|e| e.id.clone()).collect();
    for (sid, count) in sids.iter().zip([10, 8]) {
        let _: redis::Value = redis::cmd("XCLAIM")
            .arg(&stream)
            .arg("workers")
            .arg("ghost")
            .arg(0)
            .arg(sid)
            .arg("RETRYCOUNT")
            .arg(count)
            .query_async(&mut c)
            .await
            .unwrap();
    }
    // The reclaimer's XAUTOCLAIM is delivery 11 for one (over the cap) and 9 for the other.
    let w = start(&q, opts(&["noop"]));
    wait_state(&q, &under, "completed", Duration::from_secs(5)).await;
    wait_state(&q, &over, "dead", Duration::from_secs(5)).await;
    let s = q.status(&over).await.unwrap().unwrap();
    let why = "delivered 11 times without finishing";
    assert!(s.error.as_deref().unwrap_or("").contains(why), "{s:?}");
    let l = letters(&q).await;
    assert_eq!(l.len(), 1);
    assert!(l[0].error.contains(why) && l[0].id == over, "{:?}", l[0]);
    assert_eq!((xlen(&q, "noop").await, pending(&q, "noop").await), (0, 0));
    w.stop().await;
}

#[tokio::test]
async fn a_finish_retried_after_a_lost_reply_counts_once_as_processed() {
    finish_retried_after_a_lost_reply(Default::default()).await;
}

/// The same with completed records dropped at finish: the retry finds no record of its own
/// and still counts the job once, as completed.
#[tokio::test]
async fn a_finish_retried_after_a_lost_reply_counts_once_when_records_are_dropped() {
    finish_retried_after_a_lost_reply(engine::config::Keep::NONE).await;
}

async fn finish_retried_after_a_lost_reply(keep: engine::config::Keep) {
    let redis = RedisServer::start();
    // Replies slower than 300 ms time out, and the finisher retries the call.
    let cfg = engine::config::QueueConfig {
        response_timeout: Duration::from_millis(300),
        keep_completed: keep,
        ..Default::default()
    };
    let q = queue_with(&redis, cfg).await;
    let mut o = opts(&["sleep"]);
    o.lease = Duration::from_secs(20);
    let mut w = start(&q, o);
    // A first job loads the scripts, so the paused call below is the real finish.
    enqueue(&q, "sleep", json!({"ms": 1})).await;
    eventually(
        Duration::from_secs(5),
        "the first job completes",
        || async { q.stats_for(&["sleep"]).await.unwrap()[0].completed == 1 },
    )
    .await;
    let id = enqueue(&q, "sleep", json!({"ms": 600})).await;
    wait_state(&q, &id, "active", Duration::from_secs(5)).await;
    // Writes (scripts included) wait 1.5 s: the finish call times out on our side, is
    // retried, and Redis applies the first call, then the retries, once the pause ends.
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(1500)
        .arg("WRITE")
        .query(&mut redis.conn())
        .unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let o = w.obs.recv().await.unwrap();
            if o.job_id == id {
                return o.outcome;
            }
        }
    })
    .await
    .expect("the retried finish is recognised as this worker's own and observed");
    assert_eq!(seen, "completed");
    let s = q.status(&id).await.unwrap();
    if keep.drops_at_finish() {
        assert!(s.is_none(), "dropped at finish: {s:?}");
    } else {
        let s = s.unwrap();
        assert_eq!((s.state.as_str(), s.starts), ("completed", 1));
    }
    let stats = q.stats().await.unwrap();
    let sleep = stats.iter().find(|s| s.job_type == "sleep").unwrap();
    assert_eq!(sleep.completed, 2, "applied once, not once per retry");
    eventually(
        Duration::from_secs(3),
        "processed = 2 in the heartbeat",
        || async {
            engine::worker::list_workers(&q)
                .await
                .unwrap()
                .first()
                .is_some_and(|w| w.processed == 2)
        },
    )
    .await;
    w.stop().await;
}

#[tokio::test]
async fn a_failure_retried_after_a_lost_reply_is_recorded_once() {
    let redis = RedisServer::start();
    // Replies slower than 300 ms time out, and the finisher retries the call.
    let cfg = engine::config::QueueConfig {
        response_timeout: Duration::from_millis(300),
        ..Default::default()
    };
    let q = queue_with(&redis, cfg).await;
    let mut o = opts(&["sleep"]);
    o.lease = Duration::from_secs(20);
    let mut w = start(&q, o);
    // A first job loads the scripts, so the paused calls below are the real ones.
    let warm = q
        .enqueue(EnqueueRequest {
            max_attempts: Some(1),
            ..EnqueueRequest::new("sleep", json!({"ms": 1, "fail_rate": 1.0}))
        })
        .await
        .unwrap()
        .id;
    wait_state(&q, &warm, "dead", Duration::from_secs(5)).await;
    // Two attempts that both fail: the first is scheduled for a retry, the second
    // dead-letters the job. Each fail.lua call is held back until its reply times out.
    let id = q
        .enqueue(EnqueueRequest {
            max_attempts: Some(2),
            ..EnqueueRequest::new("sleep", json!({"ms": 600, "fail_rate": 1.0}))
        })
        .await
        .unwrap()
        .id;
    for want in ["retrying", "dead"] {
        wait_state(&q, &id, "active", Duration::from_secs(5)).await;
        // Writes (scripts included) wait 1.5 s: the call times out on our side, is
        // retried, and Redis applies the first call, then the retries, once the pause ends.
        let _: () = redis::cmd("CLIENT")
            .arg("PAUSE")
            .arg(1500)
            .arg("WRITE")
            .query(&mut redis.conn())
            .unwrap();
        let outcome = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let o = w.obs.recv().await.unwrap();
                if o.job_id == id {
                    return o.outcome;
                }
            }
        })
        .await
        .expect("an outcome is observed");
        assert_eq!(
            outcome, want,
            "the first outcome observed for the job is that of the paused call"
        );
    }
    let s = q.status(&id).await.unwrap().unwrap();
    assert_eq!((s.state.as_str(), s.attempt, s.starts), ("dead", 2, 2));
    let stats = q.stats().await.unwrap();
    let sleep = stats.iter().find(|s| s.job_type == "sleep").unwrap();
    assert_eq!(
        (sleep.failed, sleep.retried, sleep.dead),
        (3, 1, 2),
        "applied once per attempt, not once per retried call (the first job failed once)"
    );
    let l = letters(&q).await;
    assert_eq!(l.len(), 2, "one dead letter each: {l:?}");
    assert_eq!(
        (l[0].id.as_str(), l[1].id.as_str()),
        (warm.as_str(), id.as_str())
    );
    assert_eq!(
        (xlen(&q, "sleep").await, pending(&q, "sleep").await),
        (0, 0)
    );
    // Nothing else is observed for the job (no second "dead").
    tokio::time::sleep(Duration::from_millis(300)).await;
    while let Ok(o) = w.obs.try_recv() {
        assert_ne!(o.job_id, id, "{o:?}");
    }
    w.stop().await;
}

#[tokio::test]
async fn renew_and_handback_pass_over_a_record_that_is_not_a_hash() {
    let redis = RedisServer::start();
    let q = queue(&redis).await;
    let poison = enqueue(&q, "noop", json!({})).await;
    let good = enqueue(&q, "noop", json!({})).await;
    // Consumer `w` holds both entries, as a worker running them would.
    let mut c = q.conn().await.unwrap();
    let read: redis::streams::StreamReadReply = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("workers")
        .arg("w")
        .arg("COUNT")
        .arg(10)
        .arg("STREAMS")
        .arg(q.keys().stream("noop"))
        .arg(">")
        .query_async(&mut c)
        .await
        .unwrap();
    let held: Vec<(String, String, String)> = read.keys[0]
        .ids
        .iter()
        .map(|e| {
            let env: String = e.get("job").unwrap();
            let id = serde_json::from_str::<serde_json::Value>(&env).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string();
            (e.id.clone(), id, env)
        })
        .collect();
    assert_eq!(
        (held[0].1.as_str(), held[1].1.as_str()),
        (poison.as_str(), good.as_str())
    );
    let _: () = c.set(q.keys().job(&poison), "poison").await.unwrap();
    let _: () = c.hset(q.keys().job(&good), "cancel", 1).await.unwrap();
    // The poisoned record, first in the batch, does not fail the renewal of the others.
    let mut renew = q.scripts().renew.prepare_invoke();
    renew.arg(q.prefix()).arg("noop").arg("w");
    for (sid, id, _) in &held {
        renew.arg(sid).arg(id);
    }
    let codes: Vec<u8> = renew.invoke_async(&mut c).await.unwrap();
    assert_eq!(codes, [0, 2], "renewed; renewed and cancel requested");
    // Nor does it fail the hand-back: both entries go back, and a retried call moves none.
    let mut back = q.scripts().handback.prepare_invoke();
    back.arg(q.prefix()).arg("w").arg("noop");
    for (sid, id, env) in &held {
        back.arg(sid).arg(id).arg(env);
    }
    let n: i64 = back.invoke_async(&mut c).await.unwrap();
    assert_eq!(n, 2);
    let again: i64 = back.invoke_async(&mut c).await.unwrap();
    assert_eq!(again, 0);
    assert_eq!((xlen(&q, "noop").await, pending(&q, "noop").await), (2, 0));
    assert_eq!(state(&q, &good).await, "waiting");
    let v: String = c.get(q.keys().job(&poison)).await.unwrap();
    assert_eq!(
        v, "poison",
        "left for the operator; start.lua dead-letters its entry"
    );
}

#[tokio::test]
async fn a_job_field_that_is_not_utf8_is_dead_lettered_as_such() {
    let redis = RedisServer::start();
    let q = queue(&redis).await;
    let mut c = q.conn().await.unwrap();
    let _: String = c
        .xadd(
            q.keys().stream("noop"),
            "*",
            &[("job", &b"{\"v\":1,\xff\xfe}"[..])],
        )
        .await
        .unwrap();
    let good = enqueue(&q, "noop", json!({})).await;
    let w = start(&q, opts(&["noop"]));
    wait_state(&q, &good, "completed", Duration::from_secs(5)).await;
    eventually(Duration::from_secs(3), "one dead letter", || async {
        letters(&q).await.len() == 1
    })
    .await;
    let e = &letters(&q).await[0].error;
    assert!(e.contains("field `job` is not UTF-8"), "{e}");
    assert!(!e.contains("no `job` field"), "{e}");
    w.stop().await;
}

#[tokio::test]
async fn finished_records_are_kept_for_the_retention_setting() {
    let redis = RedisServer::start();
    let cfg = engine::config::QueueConfig {
        result_ttl: Duration::from_secs(1),
        ..Default::default()
    };
    let q = queue_with(&redis, cfg).await;
    let id = enqueue(&q, "noop", json!({})).await;
    let w = start(&q, opts(&["noop"]));
    wait_state(&q, &id, "completed", Duration::from_secs(5)).await;
    let mut c = q.conn().await.unwrap();
    let ttl: i64 = c.pttl(q.keys().job(&id)).await.unwrap();
    assert!(ttl > 0 && ttl <= 1000, "kept for the 1 s set, got {ttl} ms");
    eventually(Duration::from_secs(3), "the record to expire", || async {
        q.status(&id).await.unwrap().is_none()
    })
    .await;
    w.stop().await;
}

/// The bridge's index of bots forgets those whose sessions expired (a few per session touch),
/// so bots that called once and never again do not pile up in Redis.
#[tokio::test]
async fn the_bots_index_forgets_expired_sessions() {
    let redis = RedisServer::start();
    let q = queue(&redis).await;
    let client = redis::Client::open(redis.url()).unwrap();
    let touch = |bot: String, ttl: u64| {
        let (q, client) = (q.clone(), client.clone());
        async move {
            let mut inv = q.scripts().session_touch.prepare_invoke();
            inv.arg(q.prefix()).arg(bot).arg(ttl).arg(1);
            let mut c = client.get_multiplexed_async_connection().await.unwrap();
            let _: u64 = inv.invoke_async(&mut c).await.unwrap();
        }
    };
    for i in 0..30 {
        touch(format!("once-{i}"), 1).await;
    }
    let mut c = redis.conn();
    let idx = q.keys().bots();
    let n: usize = redis::cmd("ZCARD").arg(&idx).query(&mut c).unwrap();
    assert_eq!(n, 30);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    touch("late".into(), 1).await;
    touch("late".into(), 1).await;
    let left: Vec<String> = redis::cmd("ZRANGE")
        .arg(&idx)
        .arg(0)
        .arg(-1)
        .query(&mut c)
        .unwrap();
    assert_eq!(
        left,
        vec!["late".to_string()],
        "expired sessions are forgotten"
    );
}

/// A queue whose completed and dead records are kept as `completed` and `failed` say.
async fn queue_keeping(
    redis: &RedisServer,
    completed: engine::config::Keep,
    failed: engine::config::Keep,
) -> Queue {
    let cfg = engine::config::QueueConfig {
        keep_completed: completed,
        keep_failed: failed,
        ..Default::default()
    };
    queue_with(redis, cfg).await
}

/// The ids of `kept:<class>:<type>`, oldest first.
async fn kept(q: &Queue, class: &str, t: &str) -> Vec<String> {
    let mut c = q.conn().await.unwrap();
    c.zrange(q.keys().kept(class, t), 0, -1).await.unwrap()
}

/// Enqueues a `noop` job and waits until the stats count it completed (its record may be gone).
async fn run_noop(q: &Queue, n: u64) -> String {
    let id = enqueue(q, "noop", json!({})).await;
    eventually(Duration::from_secs(5), "the job to complete", || async {
        q.stats_for(&["noop"]).await.unwrap()[0].completed >= n
    })
    .await;
    id
}

#[tokio::test]
async fn retention_by_count_keeps_the_newest_completed_records_of_a_type() {
    let redis = RedisServer::start();
    let keep = engine::config::Keep::newest(3);
    let q = queue_keeping(&redis, keep, Default::default()).await;
    let w = start(&q, opts(&["noop"]));
    let mut ids = Vec::new();
    for n in 1..=7 {
        ids.push(run_noop(&q, n).await);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for (i, id) in ids.iter().enumerate() {
        let st = q.status(id).await.unwrap();
        if i < 4 {
            assert!(
                st.is_none(),
                "job {i} ({id}) is beyond the newest 3: {st:?}"
            );
        } else {
            assert_eq!(st.map(|s| s.state).as_deref(), Some("completed"), "job {i}");
        }
    }
    assert_eq!(kept(&q, "completed", "noop").await, ids[4..].to_vec());
    w.stop().await;
}

#[tokio::test]
async fn retention_by_age_drops_older_records_and_forgets_them_in_the_index() {
    let redis = RedisServer::start();
    let keep = engine::config::Keep {
        count: Some(100),
        age: Some(Duration::from_millis(400)),
    };
    let q = queue_keeping(&redis, keep, Default::default()).await;
    let w = start(&q, opts(&["noop"]));
    let old = run_noop(&q, 1).await;
    let mut c = q.conn().await.unwrap();
    let ttl: i64 = c.pttl(q.keys().job(&old)).await.unwrap();
    assert!(
        ttl > 0 && ttl <= 400,
        "kept for the 400 ms set, got {ttl} ms"
    );
    eventually(
        Duration::from_secs(3),
        "the old record to expire",
        || async { q.status(&old).await.unwrap().is_none() },
    )
    .await;
    let new = run_noop(&q, 2).await;
    assert_eq!(state(&q, &new).await, "completed");
    assert_eq!(kept(&q, "completed", "noop").await, vec![new]);
    w.stop().await;
}

#[tokio::test]
async fn retention_zero_drops_completed_records_at_finish_and_failed_follow_their_own() {
    let redis = RedisServer::start();
    let drop = engine::config::Keep::NONE;
    let one = engine::config::Keep::newest(1);
    let q = queue_keeping(&redis, drop, one).await;
    let w = start(&q, opts(&["noop", "sleep"]));
    let done = run_noop(&q, 1).await;
    assert!(
        q.status(&done).await.unwrap().is_none(),
        "dropped at finish"
    );
    let mut c = q.conn().await.unwrap();
    let left: bool = c.exists(q.keys().job(&done)).await.unwrap();
    assert!(!left);
    assert!(
        kept(&q, "completed", "noop").await.is_empty(),
        "no index under 0"
    );
    // two dead-lettered jobs: the newer one's record is kept, the older one's dropped, and
    // both dead letters stay (retention is about records)
    let mut dead = Vec::new();
    for n in 1..=2u64 {
        let id = q
            .enqueue(EnqueueRequest {
                max_attempts: Some(1),
                ..EnqueueRequest::new("sleep", json!({"ms": 0, "fail_rate": 1.0}))
            })
            .await
            .unwrap()
            .id;
        eventually(Duration::from_secs(5), "the job to die", || async {
            q.stats_for(&["sleep"]).await.unwrap()[0].dead >= n
        })
        .await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        dead.push(id);
    }
    assert!(q.status(&dead[0]).await.unwrap().is_none());
    assert_eq!(state(&q, &dead[1]).await, "dead");
    assert_eq!(kept(&q, "dead", "sleep").await, vec![dead[1].clone()]);
    assert_eq!(q.dlq_list(10).await.unwrap().len(), 2);
    // a retried dead letter leaves the index: a later trim cannot drop its live record
    w.stop().await;
    let letters = q.dlq_list(10).await.unwrap();
    let letter = letters.iter().find(|l| l.id == dead[1]).unwrap();
    let (n, _) = q
        .dlq_retry(std::slice::from_ref(&letter.dlq_id))
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert!(kept(&q, "dead", "sleep").await.is_empty());
    assert_eq!(state(&q, &dead[1]).await, "waiting");
}

/// The ids of the events of kind `event` in the events stream, and how many entries held them.
async fn event_ids(q: &Queue, event: &str) -> (Vec<String>, usize) {
    let (ids, entries) = event_bots(q, event).await;
    (ids.into_iter().map(|(id, _)| id).collect(), entries)
}

/// The jobs named by `event` entries of the events stream with each one's bot ("" = none),
/// in order, and how many entries named them.
async fn event_bots(q: &Queue, event: &str) -> (Vec<(String, String)>, usize) {
    let mut c = q.conn().await.unwrap();
    let ev: redis::streams::StreamRangeReply = c.xrange_all(q.keys().events()).await.unwrap();
    let mut ids = Vec::new();
    let mut entries = 0;
    for e in ev.ids.iter() {
        if e.get::<String>("event").as_deref() != Some(event) {
            continue;
        }
        entries += 1;
        let batch: Vec<String> = serde_json::from_str(&e.get::<String>("ids").unwrap()).unwrap();
        let bots: Vec<String> = serde_json::from_str(&e.get::<String>("bots").unwrap()).unwrap();
        assert_eq!(batch.len(), bots.len(), "a bot per job");
        ids.extend(batch.into_iter().zip(bots));
    }
    (ids, entries)
}

#[tokio::test]
async fn events_are_written_once_per_script_call_naming_every_job() {
    let redis = RedisServer::start();
    let q = queue(&redis).await;
    // Every other job a bot's: each event names it, the finish's from what the start read.
    let bot_of = |i: usize| if i % 2 == 0 { "bot-a" } else { "" };
    let reqs = (0..40)
        .map(|i| {
            let mut r = EnqueueRequest::new("noop", json!({}));
            r.bot_id = Some(bot_of(i).to_string()).filter(|b| !b.is_empty());
            r
        })
        .collect();
    let made = q.enqueue_many(reqs).await.unwrap();
    let mut want: Vec<(String, String)> = made
        .iter()
        .enumerate()
        .map(|(i, e)| (e.id.clone(), bot_of(i).to_string()))
        .collect();
    want.sort();
    let ids: Vec<String> = want.iter().map(|(id, _)| id.clone()).collect();
    let w = start(&q, opts(&["noop"]));
    eventually(Duration::from_secs(5), "every job completes", || async {
        q.stats_for(&["noop"]).await.unwrap()[0].completed == 40
    })
    .await;
    w.stop().await;
    for (event, most) in [("enqueued", 1), ("started", 39), ("completed", 39)] {
        let (mut got, entries) = event_ids(&q, event).await;
        got.sort();
        assert_eq!(got, ids, "{event}: every job once");
        assert!(
            entries >= 1 && entries <= most,
            "{event}: {entries} entries for 40 jobs"
        );
        let mut bots = event_bots(&q, event).await.0;
        bots.sort();
        assert_eq!(bots, want, "{event}: each job's own bot");
    }
}

/// A type whose finished record is read after it finishes (as the bridge's sessions read an
/// `experiment`'s): retention by count leaves it alone.
#[derive(serde::Serialize, serde::Deserialize)]
struct ReadLater {}
impl jobs::JobSpec for ReadLater {
    const TYPE: &'static str = "read-later";
    const DESCRIPTION: &'static str = "a job whose record is read after it finished (tests)";
    const ROLE: jobs::Role = jobs::Role::Engine;
    const RECORD_READ_AFTER_FINISH: bool = true;
    type Output = serde_json::Value;
}

struct ReadLaterHandler;
#[async_trait::async_trait]
impl jobs::JobHandler for ReadLaterHandler {
    type Job = ReadLater;
    async fn run(
        &self,
        _: &jobs::JobContext,
        _: ReadLater,
    ) -> Result<serde_json::Value, jobs::JobError> {
        Ok(json!("read me"))
    }
}

#[tokio::test]
async fn a_type_whose_record_is_read_after_finish_keeps_it_under_retention_zero() {
    let redis = RedisServer::start();
    let cfg = engine::config::QueueConfig {
        keep_completed: engine::config::Keep::NONE,
        ..Default::default()
    };
    let catalog = jobs::Catalog::default()
        .with::<jobs::builtin::Noop>()
        .with::<ReadLater>();
    let q = Queue::new(&redis.url(), "t", cfg)
        .unwrap()
        .with_catalog(catalog);
    engine::migrate::migrate(&q).await.unwrap();
    // the build's `experiment` (a bridge session reads its result) and this test's type
    let arg = q.retention_arg();
    let exempt: Vec<&str> = arg.split_once(';').unwrap().1.split(',').collect();
    assert!(
        exempt.contains(&"experiment")
            && exempt.contains(&"read-later")
            && !exempt.contains(&"noop"),
        "{arg}"
    );
    let mut reg = jobs::Registry::new();
    engine::builtin::register(&mut reg);
    reg.register(ReadLaterHandler);
    let w = Worker::new(q.clone(), reg, opts(&["noop", "read-later"])).unwrap();
    let stop = CancellationToken::new();
    let handle = tokio::spawn(w.run(stop.clone()));
    let kept = enqueue(&q, "read-later", json!({})).await;
    let dropped = enqueue(&q, "noop", json!({})).await;
    wait_state(&q, &kept, "completed", Duration::from_secs(5)).await;
    eventually(Duration::from_secs(5), "the noop job completes", || async {
        q.stats_for(&["noop"]).await.unwrap()[0].completed == 1
    })
    .await;
    let st = q.status(&kept).await.unwrap().unwrap();
    assert_eq!(st.result, Some(json!("read me")));
    let mut c = q.conn().await.unwrap();
    let ttl: i64 = c.pttl(q.keys().job(&kept)).await.unwrap();
    assert!(
        ttl > 3_600_000,
        "kept for SYNTH_JOB_RETENTION_SECS, got {ttl} ms"
    );
    assert!(q.status(&dropped).await.unwrap().is_none());
    stop.cancel();
    handle.await.unwrap().unwrap();
}

/// `finish_start.lua`'s reply (time, finish codes, start answers per type), then the entries
/// the read beside it took (type, stream id, fields).
type FinishStart = (
    u64,
    Vec<u64>,
    Vec<(String, Vec<(String, u64, u32, u32, String)>)>,
    Vec<(
        String,
        String,
        std::collections::HashMap<String, redis::Value>,
    )>,
);

/// A server time (ms) a century from now: a lease proof that holds for any test.
const CENTURY: u64 = 4_102_444_800_000;

/// One group of `finish_start.lua`'s start answers: type, flat answers, dead reasons, the
/// runs' bots.
type StartGroup = (String, Vec<u32>, Vec<String>, Vec<String>);

/// One `finish_start.lua` call as consumer `who`: finishes (stream id, job id, starts) of
/// `noop` as completed, starts (stream id, job id) of `noop`; then, as the worker does beside
/// that call, reads up to `read` entries of `noop` (a plain XREADGROUP). `owned_until`: the
/// worker's lease proof (a server time in ms; 0: none, the pending list is read).
async fn finish_start(
    q: &Queue,
    who: &str,
    retried: bool,
    owned_until: u64,
    read: usize,
    finishes: &[(&str, &str, u32)],
    starts: &[(&str, &str)],
) -> FinishStart {
    let mut inv = q.scripts().finish_start.prepare_invoke();
    inv.arg(q.prefix())
        .arg(q.retention_arg())
        .arg(who)
        .arg(q.config().max_deliveries)
        .arg(if retried { "1" } else { "0" })
        .arg(owned_until)
        .arg(finishes.len());
    for (sid, id, n) in finishes {
        inv.arg("noop")
            .arg(sid)
            .arg(id)
            .arg("completed")
            .arg("{}")
            .arg(n)
            .arg("")
            // not known (`finish_seen` sends what a start read): the record is read
            .arg("0")
            .arg("");
    }
    if !starts.is_empty() {
        inv.arg("noop").arg(starts.len());
        for (sid, id) in starts {
            inv.arg(sid).arg(id).arg(3).arg("");
        }
    }
    let mut c = q.conn().await.unwrap();
    let (now, oks, groups): (u64, Vec<u64>, Vec<StartGroup>) =
        inv.invoke_async(&mut c).await.unwrap();
    // start_batch's flat answers (code 0 skip, 1 run, 2 dead, 3 run with flow keys; attempt;
    // starts), as tuples.
    let started = groups
        .into_iter()
        .map(|(t, flat, reasons, _bots)| {
            let mut reasons = reasons.into_iter();
            let answers = flat
                .chunks_exact(3)
                .map(|a| {
                    let (code, reason) = match a[0] {
                        1 => ("run", String::new()),
                        3 => ("run_read", String::new()),
                        2 => ("dead", reasons.next().unwrap()),
                        _ => ("skip", String::new()),
                    };
                    (code.to_string(), now, a[1], a[2], reason)
                })
                .collect();
            (t, answers)
        })
        .collect();
    let mut entries = Vec::new();
    if read > 0 {
        let opts = redis::streams::StreamReadOptions::default()
            .group("workers", who)
            .count(read);
        let reply: Option<redis::streams::StreamReadReply> = c
            .xread_options(&[q.keys().stream("noop")], &[">"], &opts)
            .await
            .unwrap();
        for e in reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids) {
            entries.push(("noop".to_string(), e.id, e.map));
        }
    }
    (now, oks, started, entries)
}

/// The stream id of job `id`'s entry (its record's `stream_id`).
async fn stream_id_of(q: &Queue, id: &str) -> String {
    let mut c = q.conn().await.unwrap();
    c.hget(q.keys().job(id), "stream_id").await.unwrap()
}

/// One call finishes and starts what the last read took (the read beside it takes the next
/// entries without starting them); a stale finisher (its lease lost, the entry now another consumer's)
/// records nothing, and the starts of that same call still go ahead.
#[tokio::test]
async fn a_combined_finish_and_start_keeps_ownership() {
    let redis = RedisServer::start();
    let q = queue(&redis).await;
    let a = enqueue(&q, "noop", json!({})).await;
    let b = enqueue(&q, "noop", json!({})).await;
    let c3 = enqueue(&q, "noop", json!({})).await;
    let (sa, sb) = (stream_id_of(&q, &a).await, stream_id_of(&q, &b).await);
    // First call: nothing to finish or start; reads two entries for "w1", starts none.
    let (_, oks, started, read) = finish_start(&q, "w1", false, 0, 2, &[], &[]).await;
    assert!(oks.is_empty() && started.is_empty());
    let got: Vec<&str> = read.iter().map(|(_, sid, _)| sid.as_str()).collect();
    assert_eq!(got, [sa.as_str(), sb.as_str()]);
    assert_eq!(read[0].0, "noop");
    assert!(read[0].2.contains_key("job") && read[0].2.contains_key("at"));
    assert_eq!(state(&q, &a).await, "waiting", "read, not started");
    assert_eq!(pending(&q, "noop").await, 2);
    // Second: start a.
    let (_, _, started, read) = finish_start(&q, "w1", false, 0, 0, &[], &[(&sa, &a)]).await;
    assert!(read.is_empty(), "read count 0 reads nothing");
    assert_eq!(started.len(), 1);
    assert_eq!(started[0].1[0].0, "run");
    assert_eq!(started[0].1[0].3, 1, "first start");
    assert_eq!(state(&q, &a).await, "active");
    // a's lease is lost: another worker takes its entry over.
    let mut c = q.conn().await.unwrap();
    let _: redis::Value = redis::cmd("XCLAIM")
        .arg(q.keys().stream("noop"))
        .arg("workers")
        .arg("w2")
        .arg(0)
        .arg(&sa)
        .query_async(&mut c)
        .await
        .unwrap();
    // w1 finishes a (stale: not recorded) and starts b in the same call, and reads c.
    let (_, oks, started, read) =
        // (a lease proof that ran out long ago: the pending list is read, as with none)
        finish_start(&q, "w1", false, 1, 5, &[(&sa, &a, 1)], &[(&sb, &b)]).await;
    assert_eq!(oks, [0], "a stale finisher changes nothing");
    assert_eq!(state(&q, &a).await, "active", "still the other worker's");
    assert_eq!(started[0].1[0].0, "run", "the same call's start goes ahead");
    assert_eq!(state(&q, &b).await, "active");
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].1, stream_id_of(&q, &c3).await);
    let s = &q.stats_for(&["noop"]).await.unwrap()[0];
    assert_eq!((s.completed, s.stalled), (0, 0));
    // w1 finishes b: recorded.
    let (_, oks, _, _) = finish_start(&q, "w1", false, 0, 0, &[(&sb, &b, 1)], &[]).await;
    assert_eq!(oks, [1]);
    assert_eq!(state(&q, &b).await, "completed");
}

/// Two `noop` jobs enqueued and read (not started) by consumer `w1`: their ids and stream ids.
async fn two_read_by_w1(q: &Queue) -> (String, String, String, String) {
    let a = enqueue(q, "noop", json!({})).await;
    let b = enqueue(q, "noop", json!({})).await;
    let (sa, sb) = (stream_id_of(q, &a).await, stream_id_of(q, &b).await);
    let (_, _, _, read) = finish_start(q, "w1", false, 0, 2, &[], &[]).await;
    assert_eq!(read.len(), 2);
    (a, b, sa, sb)
}

/// `start.lua` as consumer `who` over entries (stream id, job id) of `noop`, with a lease
/// proof: its flat answers and the runs' bots.
async fn start_proven(q: &Queue, who: &str, entries: &[(&str, &str)]) -> (Vec<u32>, Vec<String>) {
    let mut inv = q.scripts().start.prepare_invoke();
    inv.arg(q.prefix())
        .arg("noop")
        .arg(who)
        .arg(q.config().max_deliveries)
        .arg(q.retention_arg())
        .arg("0")
        .arg(CENTURY);
    for (sid, id) in entries {
        inv.arg(sid).arg(id).arg(3).arg("");
    }
    let mut c = q.conn().await.unwrap();
    let (_, flat, _, bots): (u64, Vec<u32>, Vec<String>, Vec<String>) =
        inv.invoke_async(&mut c).await.unwrap();
    (flat, bots)
}

/// One `finish.lua` call as consumer `who` completing `noop` job `id` (entry `sid`, start
/// `starts`) with what its start read of the record (`known`, and the record's `bot`).
async fn finish_seen(
    q: &Queue,
    who: &str,
    (sid, id, starts): (&str, &str, u32),
    known: bool,
    bot: &str,
) -> u64 {
    let mut inv = q.scripts().finish.prepare_invoke();
    inv.arg(q.prefix())
        .arg(q.retention_arg())
        .arg(who)
        .arg("noop")
        .arg(sid)
        .arg(id)
        .arg("completed")
        .arg("{}")
        .arg(starts)
        .arg("")
        .arg(if known { "1" } else { "0" })
        .arg(bot);
    let mut c = q.conn().await.unwrap();
    let oks: Vec<u64> = inv.invoke_async(&mut c).await.unwrap();
    oks[1]
}

/// A start answers each run's bot, and tells apart a job whose record names flow keys of its
/// own (it fanned out before: code 3, its finish reads the record). A finish that
/// vouches for its record (`known`) writes it without reading it (no HMGET), its event names
/// the bot the start answered, and the write itself finds what a read would have: a record
/// deleted under the job (its flow keys then expire with the new one), or overwritten by
/// another type (dead-lettered, the key left as it is). Retried after a lost reply, such a
/// finish is recognised as applied.
#[tokio::test]
async fn a_finish_that_vouches_for_its_record_does_not_read_it() {
    let redis = RedisServer::start();
    let q = queue(&redis).await;
    let mut ids = Vec::new();
    for _ in 0..4 {
        let mut r = EnqueueRequest::new("noop", json!({}));
        r.bot_id = Some("b7".into());
        ids.push(q.enqueue(r).await.unwrap().id);
    }
    let mut sids = Vec::new();
    for id in &ids {
        sids.push(stream_id_of(&q, id).await);
    }
    let (_, _, _, read) = finish_start(&q, "w1", false, 0, 4, &[], &[]).await;
    assert_eq!(read.len(), 4);
    let mut c = q.conn().await.unwrap();
    let _: () = c
        .hset(q.keys().job(&ids[3]), "fanned_by", "w0/1-0/1")
        .await
        .unwrap();
    let entries: Vec<(&str, &str)> = sids
        .iter()
        .map(String::as_str)
        .zip(ids.iter().map(String::as_str))
        .collect();
    let (flat, bots) = start_proven(&q, "w1", &entries).await;
    let codes: Vec<u32> = flat.chunks_exact(3).map(|a| a[0]).collect();
    assert_eq!(
        codes,
        [1, 1, 1, 3],
        "the fanned-out job runs with its flow keys"
    );
    assert_eq!(bots, ["b7", "b7", "b7", "b7"]);

    // Known: written, not read.
    let h0 = command_calls(&q, "hmget").await;
    assert_eq!(
        finish_seen(&q, "w1", (&sids[0], &ids[0], 1), true, "b7").await,
        1
    );
    assert_eq!(
        command_calls(&q, "hmget").await,
        h0,
        "no read of the record"
    );
    assert_eq!(state(&q, &ids[0]).await, "completed");
    let ev: redis::streams::StreamRangeReply = c.xrange_all(q.keys().events()).await.unwrap();
    let done = ev
        .ids
        .iter()
        .rev()
        .find(|e| e.get::<String>("event").as_deref() == Some("completed"))
        .unwrap();
    assert_eq!(done.get::<String>("bots").as_deref(), Some(r#"["b7"]"#));

    // Deleted under the job, beside a flow key of its own: the finish writes a new record
    // and the flow key expires with it.
    let (jk, children) = (
        q.keys().job(&ids[1]),
        format!("{}:children", q.keys().job(&ids[1])),
    );
    let _: () = c.del(&jk).await.unwrap();
    let _: () = c.hset(&children, "x", "{}").await.unwrap();
    assert_eq!(
        finish_seen(&q, "w1", (&sids[1], &ids[1], 1), true, "b7").await,
        1
    );
    assert_eq!(state(&q, &ids[1]).await, "completed");
    let (tj, tc): (i64, i64) = (c.pttl(&jk).await.unwrap(), c.pttl(&children).await.unwrap());
    assert!(tj > 0 && tc > 0, "record {tj} ms, flow key {tc} ms");

    // Overwritten by a string: dead-lettered by the write, the key left alone.
    let jk = q.keys().job(&ids[2]);
    let _: () = c.set(&jk, "x").await.unwrap();
    assert_eq!(
        finish_seen(&q, "w1", (&sids[2], &ids[2], 1), true, "b7").await,
        3
    );
    let got: String = c.get(&jk).await.unwrap();
    assert_eq!(got, "x");
    let l = letters(&q).await;
    assert!(
        l.iter()
            .any(|l| l.id == ids[2] && l.error.contains("not a hash")),
        "{l:?}"
    );

    // The first finish again (its reply lost): recognised as its own.
    assert_eq!(
        finish_seen(&q, "w1", (&sids[0], &ids[0], 1), true, "b7").await,
        2
    );
    let s = &q.stats_for(&["noop"]).await.unwrap()[0];
    assert_eq!((s.completed, s.dead), (2, 1));
}

/// Where completed records are dropped at finish, a start does not look for flow keys (every
/// run is answered code 3): a finish of a job without a parent reads only whether it has
/// any (its record's `type` and `fanned_by`), and drops the record with them; a record
/// overwritten by another type is dead-lettered and left as it is.
#[tokio::test]
async fn where_records_are_dropped_a_finish_reads_only_whether_there_are_flow_keys() {
    let redis = RedisServer::start();
    let q = queue_keeping(
        &redis,
        engine::config::Keep::NONE,
        engine::config::Keep::default(),
    )
    .await;
    let (a, b, sa, sb) = two_read_by_w1(&q).await;
    let (flat, bots) = start_proven(&q, "w1", &[(&sa, &a), (&sb, &b)]).await;
    let codes: Vec<u32> = flat.chunks_exact(3).map(|a| a[0]).collect();
    assert_eq!(codes, [3, 3]);
    assert_eq!(bots, ["", ""]);
    let mut c = q.conn().await.unwrap();
    let children = format!("{}:children", q.keys().job(&a));
    let _: () = c.hset(&children, "x", "{}").await.unwrap();
    let _: () = c
        .hset(q.keys().job(&a), "fanned_by", "w0/1-0/1")
        .await
        .unwrap();
    assert_eq!(finish_seen(&q, "w1", (&sa, &a, 1), false, "").await, 1);
    let left: u64 = c.exists(&[q.keys().job(&a), children]).await.unwrap();
    assert_eq!(left, 0, "the record and its flow key dropped");
    let _: () = c.set(q.keys().job(&b), "x").await.unwrap();
    assert_eq!(finish_seen(&q, "w1", (&sb, &b, 1), false, "").await, 3);
    let got: String = c.get(q.keys().job(&b)).await.unwrap();
    assert_eq!(got, "x");
    let s = &q.stats_for(&["noop"]).await.unwrap()[0];
    assert_eq!((s.completed, s.dead), (1, 1));
}

/// How many times Redis has run `command` (INFO commandstats), scripts' calls included.
async fn command_calls(q: &Queue, command: &str) -> u64 {
    let mut c = q.conn().await.unwrap();
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut c)
        .await
        .unwrap();
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next()?.parse().ok())
        .unwrap_or(0)
}

/// An enqueue whose ids the client drew skips the existence check on its first try
/// (`enqueue.lua`'s `fresh`), and only there: a given id is looked up, and so is every job
/// of a try that repeats one whose reply was lost, which answers the job the first created.
#[tokio::test]
async fn only_the_first_try_of_drawn_ids_skips_the_existence_check() {
    let redis = RedisServer::start();
    let q = queue(&redis).await;
    let e0 = command_calls(&q, "exists").await;
    let reqs = (0..3)
        .map(|_| EnqueueRequest::new("noop", json!({})))
        .collect();
    let made = q.enqueue_many(reqs).await.unwrap();
    assert!(made.iter().all(|e| e.created));
    assert_eq!(
        command_calls(&q, "exists").await,
        e0,
        "drawn ids: no lookup"
    );
    let mut r = EnqueueRequest::new("noop", json!({}));
    r.id = Some(made[0].id.clone());
    assert!(!q.enqueue(r).await.unwrap().created);
    assert_eq!(
        command_calls(&q, "exists").await,
        e0 + 1,
        "a given id: looked up"
    );
    // A later try of the first call (fresh '0'), with its first job's very envelope.
    let env = q.status(&made[0].id).await.unwrap().unwrap();
    let envelope = json!({"v": 1, "id": made[0].id, "type": "noop", "payload": env.payload,
        "attempt": 0, "max_attempts": 3, "timeout_ms": 60000});
    let mut inv = q.scripts().enqueue.prepare_invoke();
    inv.arg(q.prefix()).arg(86_400_000u64).arg("0");
    inv.arg("noop")
        .arg(&made[0].id)
        .arg(envelope.to_string())
        .arg("")
        .arg(0)
        .arg(0)
        .arg("");
    let mut c = q.conn().await.unwrap();
    let again: Vec<(String, i64)> = inv.invoke_async(&mut c).await.unwrap();
    assert_eq!(
        again,
        [(made[0].id.clone(), 0)],
        "answered, not added again"
    );
    assert_eq!(xlen(&q, "noop").await, 3);
    assert_eq!(command_calls(&q, "exists").await, e0 + 2);
}

/// With the worker's lease proof (`owned until` ahead of the server's time) a combined call
/// starts and finishes without reading the pending list for ownership; with none, or one
/// that ran out, it reads it (one XPENDING per type). (A finish also asks for the group's
/// oldest pending entry, one XPENDING summary, to trim what it acked: `ackdel_all`.)
#[tokio::test]
async fn a_lease_proof_spares_the_pending_list_read() {
    let redis = RedisServer::start();
    let q = queue(&redis).await;
    let (a, b, sa, sb) = two_read_by_w1(&q).await;
    let x0 = command_calls(&q, "xpending").await;
    let (_, _, started, _) =
        finish_start(&q, "w1", false, CENTURY, 0, &[], &[(&sa, &a), (&sb, &b)]).await;
    assert!(started[0].1.iter().all(|s| s.0 == "run"), "{started:?}");
    assert_eq!(
        command_calls(&q, "xpending").await,
        x0,
        "proven: no XPENDING"
    );
    let (_, oks, _, _) = finish_start(&q, "w1", false, CENTURY, 0, &[(&sa, &a, 1)], &[]).await;
    assert_eq!(oks, [1]);
    assert_eq!(
        command_calls(&q, "xpending").await,
        x0 + 1,
        "proven: the trim's only"
    );
    let (now, oks, _, _) = finish_start(&q, "w1", false, 1, 0, &[(&sb, &b, 1)], &[]).await;
    assert_eq!(oks, [1]);
    assert!(now > 1);
    assert_eq!(command_calls(&q, "xpending").await, x0 + 3, "ran out: read");
    let s = &q.stats_for(&["noop"]).await.unwrap()[0];
    assert_eq!((s.completed, s.stalled), (2, 0));
    assert_eq!((xlen(&q, "noop").await, pending(&q, "noop").await), (0, 0));
}

/// Finished entries leave the stream whatever the order they finish in: those before the
/// group's oldest pending entry by one trim, a newer one (finished out of order) by XDEL;
/// an entry not yet delivered stays, and is read next.
#[tokio::test]
async fn finished_entries_leave_the_stream_in_any_order() {
    let redis = RedisServer::start();
    let q = queue(&redis).await;
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(enqueue(&q, "noop", json!({})).await);
    }
    let mut sids = Vec::new();
    for id in &ids {
        sids.push(stream_id_of(&q, id).await);
    }
    let (_, _, _, read) = finish_start(&q, "w1", false, 0, 3, &[], &[]).await;
    assert_eq!(read.len(), 3);
    let starts: Vec<(&str, &str)> = (0..3)
        .map(|i| (sids[i].as_str(), ids[i].as_str()))
        .collect();
    finish_start(&q, "w1", false, 0, 0, &[], &starts).await;
    let finish = |i: usize| (sids[i].as_str(), ids[i].as_str(), 1u32);
    // the second first: the first is still pending, so it goes by XDEL
    let (_, oks, _, _) = finish_start(&q, "w1", false, 0, 0, &[finish(1)], &[]).await;
    assert_eq!(oks, [1]);
    assert_eq!((xlen(&q, "noop").await, pending(&q, "noop").await), (3, 2));
    // the first: trimmed up to the third, pending
    let (_, oks, _, _) = finish_start(&q, "w1", false, 0, 0, &[finish(0)], &[]).await;
    assert_eq!(oks, [1]);
    assert_eq!((xlen(&q, "noop").await, pending(&q, "noop").await), (2, 1));
    // the third: nothing pending after it; the fourth, never delivered, stays
    let (_, oks, _, _) = finish_start(&q, "w1", false, 0, 0, &[finish(2)], &[]).await;
    assert_eq!(oks, [1]);
    assert_eq!((xlen(&q, "noop").await, pending(&q, "noop").await), (1, 0));
    let (_, _, _, read) = finish_start(&q, "w1", false, 0, 5, &[], &[]).await;
    let got: Vec<&str> = read.iter().map(|(_, sid, _)| sid.as_str()).collect();
    assert_eq!(got, [sids[3].as_str()]);
    let s = &q.stats_for(&["noop"]).await.unwrap()[0];
    assert_eq!((s.completed, s.waiting), (3, 0));
}

/// A combined call retried after its reply was lost (applied once already): its finishes
/// answer 2 (already recorded by this very call), its starts answer `run` again with the
/// same start and attempt, and nothing is counted twice or as a stall.
#[tokio::test]
async fn a_combined_call_retried_after_a_lost_reply_is_applied_once() {
    let redis = RedisServer::start();
    let q = queue(&redis).await;
    let (a, b, sa, sb) = two_read_by_w1(&q).await;
    let (_, _, started, _) = finish_start(&q, "w1", false, 0, 0, &[], &[(&sa, &a)]).await;
    assert_eq!(started[0].1[0].3, 1);
    // The call: finish a, start b. Applied, then sent again as a retry.
    // Both with a lease proof good for a century: a retry does not trust it (its first try
    // may have been applied) and reads the pending list.
    let first = finish_start(&q, "w1", false, CENTURY, 0, &[(&sa, &a, 1)], &[(&sb, &b)]).await;
    let again = finish_start(&q, "w1", true, CENTURY, 0, &[(&sa, &a, 1)], &[(&sb, &b)]).await;
    assert_eq!(first.1, [1]);
    assert_eq!(again.1, [2], "the retry finds its own finish");
    let (f, g) = (&first.2[0].1[0], &again.2[0].1[0]);
    assert_eq!((f.0.as_str(), f.2, f.3), ("run", 0, 1));
    assert_eq!(
        (g.0.as_str(), g.2, g.3),
        ("run", 0, 1),
        "the same start, answered again"
    );
    let s = &q.stats_for(&["noop"]).await.unwrap()[0];
    assert_eq!((s.completed, s.stalled), (1, 0));
    let st = q.status(&b).await.unwrap().unwrap();
    assert_eq!((st.state.as_str(), st.attempt, st.starts), ("active", 0, 1));
    // Without the retry flag the same start is a stall (another start of an active job).
    let third = finish_start(&q, "w1", false, 0, 0, &[], &[(&sb, &b)]).await;
    assert_eq!(third.2[0].1[0].2, 1, "a stall counts an attempt");
    assert_eq!(q.stats_for(&["noop"]).await.unwrap()[0].stalled, 1);
}

/// The combined call checks a started type's shared keys before its first write: a stats key
/// of the wrong type fails the whole call, and its finishes are not applied either.
#[tokio::test]
async fn a_combined_call_with_a_broken_shared_key_writes_nothing() {
    let redis = RedisServer::start();
    let q = queue(&redis).await;
    let (a, b, sa, sb) = two_read_by_w1(&q).await;
    finish_start(&q, "w1", false, 0, 0, &[], &[(&sa, &a)]).await;
    let mut c = q.conn().await.unwrap();
    let _: () = c.del(q.keys().stats("noop")).await.unwrap();
    let _: () = c.set(q.keys().stats("noop"), "x").await.unwrap();
    let mut inv = q.scripts().finish_start.prepare_invoke();
    inv.arg(q.prefix())
        .arg(q.retention_arg())
        .arg("w1")
        .arg(10)
        .arg("0")
        .arg(0)
        .arg(1)
        .arg("noop")
        .arg(&sa)
        .arg(&a)
        .arg("completed")
        .arg("{}")
        .arg(1)
        .arg("")
        .arg("0")
        .arg("")
        .arg("noop")
        .arg(1)
        .arg(&sb)
        .arg(&b)
        .arg(3)
        .arg("");
    let err = inv
        .invoke_async::<redis::Value>(&mut c)
        .await
        .expect_err("a wrong-typed stats key stops the call");
    assert!(err.to_string().contains("WRONGTYPE"), "{err}");
    assert_eq!(state(&q, &a).await, "active", "the finish was not applied");
    assert_eq!(state(&q, &b).await, "waiting", "nor the start");
    assert_eq!(pending(&q, "noop").await, 2);
}

/// A steady worker starts jobs through `finish_start.lua` (what its last finish call read)
/// as well as through its fetch loop; every job still starts and completes once, and the
/// streams end empty.
#[tokio::test]
async fn a_steady_worker_starts_jobs_with_its_finish_calls() {
    let redis = RedisServer::start();
    let q = queue(&redis).await;
    let w = start(&q, opts(&["noop"]));
    let n = 600;
    for _ in 0..6 {
        let reqs = (0..n / 6)
            .map(|_| EnqueueRequest::new("noop", json!({})))
            .collect();
        q.enqueue_many(reqs).await.unwrap();
    }
    eventually(Duration::from_secs(20), "every job completes", || async {
        q.stats_for(&["noop"]).await.unwrap()[0].completed == n
    })
    .await;
    w.stop().await;
    let (started, _) = event_ids(&q, "started").await;
    assert_eq!(started.len() as u64, n, "each job started once");
    let s = &q.stats_for(&["noop"]).await.unwrap()[0];
    assert_eq!((s.stalled, s.dead), (0, 0));
    assert_eq!((xlen(&q, "noop").await, pending(&q, "noop").await), (0, 0));
}

/// The index of the events-stream entry of kind `event` that names job `id`, and its `at`.
async fn event_of(q: &Queue, event: &str, id: &str) -> (usize, String) {
    let mut c = q.conn().await.unwrap();
    let ev: redis::streams::StreamRangeReply = c.xrange_all(q.keys().events()).await.unwrap();
    for (i, e) in ev.ids.iter().enumerate() {
        if e.get::<String>("event").as_deref() != Some(event) {
            continue;
        }
        let ids: Vec<String> = match e.get::<String>("ids") {
            Some(ids) => serde_json::from_str(&ids).unwrap(),
            None => vec![e.get::<String>("id").unwrap_or_default()],
        };
        if ids.iter().any(|x| x == id) {
            return (i, e.get::<String>("at").unwrap());
        }
    }
    panic!("no {event} event for job {id}");
}

/// Jobs arriving one at a time: while the fetch loop waits on an empty stream, a finished
/// job's finish lingers (`WorkerOptions::linger`) and is recorded by the call that starts the
/// next job the fetch loop reads (its `completed` event and the next job's `started` event
/// written by one script call, back to back); the last one is recorded when the linger is
/// over, and a worker told to stop records what lingers at once instead of waiting.
#[tokio::test]
async fn a_finish_lingers_to_ride_with_the_next_jobs_start() {
    let redis = RedisServer::start();
    let q = queue(&redis).await;
    let mut o = opts(&["sleep"]);
    o.linger = Duration::from_secs(2);
    let mut w = start(&q, o);
    let a = enqueue(&q, "sleep", json!({"ms": 20})).await;
    wait_state(&q, &a, "active", Duration::from_secs(5)).await;
    // `a` ran (20 ms) and its finish lingers: nothing else is there to start.
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(state(&q, &a).await, "active", "the finish lingers");
    let b = enqueue(&q, "sleep", json!({"ms": 20})).await;
    wait_state(&q, &a, "completed", Duration::from_secs(1)).await;
    let (done_a, at_a) = event_of(&q, "completed", &a).await;
    let (start_b, at_b) = event_of(&q, "started", &b).await;
    assert_eq!(
        (start_b, &at_b),
        (done_a + 1, &at_a),
        "one call: a's finish, b's start"
    );
    // `b` lingers with nothing to ride on: the linger's end records it.
    let t0 = std::time::Instant::now();
    wait_state(&q, &b, "completed", Duration::from_secs(5)).await;
    assert!(
        t0.elapsed() >= Duration::from_millis(1000),
        "{:?}",
        t0.elapsed()
    );
    let outcomes: Vec<&str> = [w.obs.recv().await.unwrap(), w.obs.recv().await.unwrap()]
        .iter()
        .map(|o| o.outcome)
        .collect();
    assert_eq!(outcomes, ["completed", "completed"]);
    // A third job's finish lingers; stopping the worker records it without waiting.
    let c = enqueue(&q, "sleep", json!({"ms": 20})).await;
    wait_state(&q, &c, "active", Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    let t0 = std::time::Instant::now();
    w.stop().await;
    assert!(
        t0.elapsed() < Duration::from_millis(1500),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(state(&q, &c).await, "completed");
    let (started, _) = event_ids(&q, "started").await;
    assert_eq!(started.len(), 3, "each job started once");
    let s = &q.stats_for(&["sleep"]).await.unwrap()[0];
    assert_eq!((s.completed, s.stalled, s.dead), (3, 0, 0));
    assert_eq!(
        (xlen(&q, "sleep").await, pending(&q, "sleep").await),
        (0, 0)
    );
}

/// Jobs arriving one at a time, a few ms apart: the fetch loop's read finds the first alone,
/// waits `WorkerOptions::gather` for more, and one script call starts them all (one
/// `started_at`, the call's server time); with no gather each starts on its own read.
#[tokio::test]
async fn a_trickle_of_jobs_is_gathered_into_one_start() {
    async fn started_ats(gather: Duration) -> Vec<u64> {
        let redis = RedisServer::start();
        let q = queue(&redis).await;
        let mut o = opts(&["noop"]);
        o.gather = gather;
        let w = start(&q, o);
        // the worker's blocking read is waiting before the first job arrives
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut ids = Vec::new();
        for _ in 0..4 {
            ids.push(enqueue(&q, "noop", json!({})).await);
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
        let mut at = Vec::new();
        for id in &ids {
            wait_state(&q, id, "completed", Duration::from_secs(5)).await;
            let s = q.status(id).await.unwrap().unwrap();
            at.push(s.started_at_ms.unwrap());
            assert_eq!(s.starts, 1);
        }
        let st = &q.stats_for(&["noop"]).await.unwrap()[0];
        assert_eq!((st.completed, st.stalled, st.dead), (4, 0, 0));
        assert_eq!((xlen(&q, "noop").await, pending(&q, "noop").await), (0, 0));
        w.stop().await;
        at
    }
    let gathered = started_ats(Duration::from_millis(500)).await;
    assert!(
        gathered.iter().all(|a| *a == gathered[0]),
        "one start call: {gathered:?}"
    );
    let each = started_ats(Duration::ZERO).await;
    assert!(
        each[3] >= each[0] + 30,
        "no gather: each job starts as it arrives: {each:?}"
    );
}

/// The names of the libraries `FUNCTION LIST` shows.
async fn libraries(q: &Queue) -> Vec<String> {
    fn strings(v: &redis::Value, out: &mut Vec<String>) {
        match v {
            redis::Value::BulkString(b) => out.push(String::from_utf8_lossy(b).into_owned()),
            redis::Value::SimpleString(s) => out.push(s.clone()),
            redis::Value::Array(a) | redis::Value::Set(a) => a.iter().for_each(|v| strings(v, out)),
            redis::Value::Map(m) => m.iter().for_each(|(k, v)| {
                strings(k, out);
                strings(v, out)
            }),
            _ => {}
        }
    }
    let mut c = q.conn().await.unwrap();
    let list: redis::Value = redis::cmd("FUNCTION")
        .arg("LIST")
        .query_async(&mut c)
        .await
        .unwrap();
    let mut all = Vec::new();
    strings(&list, &mut all);
    all.into_iter()
        .filter(|s| s.starts_with("synth_city_"))
        .collect()
}

/// Enqueues a noop job and waits until a worker has completed it.
async fn noop_completes(q: &Queue) {
    let id = q
        .enqueue(EnqueueRequest::new("noop", json!({})))
        .await
        .unwrap()
        .id;
    wait_state(q, &id, "completed", Duration::from_secs(10)).await;
}

#[tokio::test]
async fn the_scripts_library_is_reloaded_after_a_function_flush_beside_another_version() {
    let redis = RedisServer::start();
    let q = queue(&redis).await;
    let lib = &*engine::scripts::LIBRARY;
    // Another version's library (another hash) already on this Redis, as in a rolling upgrade.
    let other = engine::scripts::library_source("0123456789ab");
    let mut c = q.conn().await.unwrap();
    let name: String = redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg(&other)
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(name, "synth_city_0123456789ab");
    let w = start(&q, opts(&["noop"]));
    // The first calls load ours beside it; each calls its own functions.
    noop_completes(&q).await;
    let mut libs = libraries(&q).await;
    libs.sort();
    let mut want = vec![lib.name.clone(), name.clone()];
    want.sort();
    assert_eq!(libs, want);
    let other_fn = "sc0123456789ab_sem_renew";
    let renewed: i64 = redis::cmd("FCALL")
        .arg(other_fn)
        .arg(0)
        .arg(q.prefix())
        .arg("pipeline")
        .arg("nobody")
        .arg("0")
        .arg(1000)
        .query_async(&mut c)
        .await
        .unwrap_or_else(|e| panic!("{other_fn}: {e}"));
    assert_eq!(renewed, 0, "no permit held");
    // A FUNCTION FLUSH (or a Redis restarted without persistence): the next calls of the
    // producer and the worker reload the library, and the job completes.
    let _: () = redis::cmd("FUNCTION")
        .arg("FLUSH")
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(libraries(&q).await.is_empty());
    noop_completes(&q).await;
    assert_eq!(libraries(&q).await, vec![lib.name.clone()]);
    w.stop().await;
}

#[tokio::test]
async fn a_user_that_may_not_load_the_library_runs_the_scripts_as_plain_scripts() {
    let redis = RedisServer::start();
    let q = queue(&redis).await;
    // A user with every command but FUNCTION, on a Redis whose library is gone.
    let mut c = q.conn().await.unwrap();
    let _: () = redis::cmd("ACL")
        .arg(&[
            "SETUSER",
            "nofn",
            "on",
            ">pw",
            "~*",
            "&*",
            "+@all",
            "-function",
        ])
        .query_async(&mut c)
        .await
        .unwrap();
    let _: () = redis::cmd("FUNCTION")
        .arg("FLUSH")
        .query_async(&mut c)
        .await
        .unwrap();
    let url = redis.url().replace("redis://", "redis://nofn:pw@");
    let limited = Queue::new(&url, "t", Default::default()).unwrap();
    let w = start(&limited, opts(&["noop"]));
    noop_completes(&limited).await;
    noop_completes(&limited).await;
    // The library was not loaded; the calls went by EVALSHA after one refused load.
    assert!(libraries(&q).await.is_empty());
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut c)
        .await
        .unwrap();
    let calls = |name: &str| -> u64 {
        stats
            .lines()
            .find_map(|l| l.strip_prefix(&format!("cmdstat_{name}:calls=")))
            .and_then(|r| r.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    assert!(calls("evalsha") >= 4, "{stats}");
    assert!(calls("fcall") >= 1, "{stats}");
    let load = stats
        .lines()
        .find(|l| l.starts_with("cmdstat_function|load:"))
        .unwrap_or_else(|| panic!("no FUNCTION LOAD tried: {stats}"));
    assert!(!load.contains("rejected_calls=0,"), "{load}");
    w.stop().await;
}
