//! Redis Sentinel, with real processes: one primary, one replica and three Sentinels
//! (`redis-server --sentinel`) on free ports. The primary is SIGKILLed while two
//! `synth-city worker` processes run 2,000 jobs, a `synth-city scheduler` fires a schedule
//! every second and a `synth-city bridge` takes a bot's jobs; Sentinel promotes the replica,
//! the workers, the scheduler, the bridge and the producer follow it without a restart, and
//! every job whose enqueue was acknowledged (confirmed by a replica:
//! `SYNTH_REDIS_MIN_REPLICAS_ACK=1`) completes, each fire time making one job. Also:
//! a partitioned (SIGSTOPped) primary acknowledges nothing alone; a pipeline run in flight
//! keeps its `pipeline` permit across a failover without the limit being exceeded; the
//! `ops/sentinel/` templates run as shipped (ACL users, a failover that rewrites both files);
//! replicas and bad URLs are named errors.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, RedisServer};
use engine::config::QueueConfig;
use engine::queue::{EnqueueRequest, Queue, QueueError};
use engine::semaphore::RedisSemaphore;
use serde_json::json;

const MASTER: &str = "mymaster";

/// Three Sentinels watching one primary; killed when dropped.
struct Sentinels {
    children: Vec<Child>,
    ports: Vec<u16>,
    /// The name they monitor the primary under.
    name: String,
    _dir: tempfile::TempDir,
}

impl Sentinels {
    fn start(master_port: u16) -> Self {
        // Short timings so a failover takes a few seconds, not a minute.
        Self::start_with(MASTER, |_, port, dir| {
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\n\
                 sentinel monitor {MASTER} 127.0.0.1 {master_port} 2\n\
                 sentinel down-after-milliseconds {MASTER} 1000\n\
                 sentinel failover-timeout {MASTER} 5000\n\
                 sentinel parallel-syncs {MASTER} 1\n",
                dir.display()
            )
        })
    }

    /// Three Sentinels watching the primary under `name`, the i-th with the configuration
    /// `conf(i, port, dir)` on a free port, in a directory of its own.
    fn start_with(name: &str, conf: impl Fn(usize, u16, &std::path::Path) -> String) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut children = Vec::new();
        let mut ports = Vec::new();
        for i in 0..3 {
            let port = free_port();
            let own = dir.path().join(format!("sentinel-{i}"));
            std::fs::create_dir(&own).unwrap();
            let file = own.join("sentinel.conf");
            std::fs::write(&file, conf(i, port, &own)).unwrap();
            let mut cmd = Command::new("redis-server");
            cmd.arg(&file)
                .arg("--sentinel")
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            common::die_with_parent(&mut cmd);
            children.push(
                cmd.spawn()
                    .expect("redis-server (with --sentinel) must be installed"),
            );
            ports.push(port);
        }
        Sentinels {
            children,
            ports,
            name: name.to_string(),
            _dir: dir,
        }
    }

    fn url(&self) -> String {
        self.url_as("")
    }

    /// The Sentinels' URL with `userinfo` (`user:password@`, or empty) for the data nodes.
    fn url_as(&self, userinfo: &str) -> String {
        let hosts: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!(
            "redis+sentinel://{userinfo}{}/{}",
            hosts.join(","),
            self.name
        )
    }

    /// `SENTINEL MASTER` of one Sentinel, as field -> value.
    fn master_info(&self, i: usize) -> Option<std::collections::HashMap<String, String>> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}", self.ports[i])).ok()?;
        let mut c = client.get_connection().ok()?;
        let v: Vec<String> = redis::cmd("SENTINEL")
            .arg("MASTER")
            .arg(&self.name)
            .query(&mut c)
            .ok()?;
        Some(
            v.chunks(2)
                .filter(|p| p.len() == 2)
                .map(|p| (p[0].clone(), p[1].clone()))
                .collect(),
        )
    }

    /// Waits until every Sentinel knows the other two and the replica.
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = (0..3).all(|i| {
                self.master_info(i).is_some_and(|m| {
                    m.get("num-other-sentinels").map(String::as_str) == Some("2")
                        && m.get("num-slaves").map(String::as_str) == Some("1")
                })
            });
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the Sentinels did not find each other and the replica"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The port of the primary as the first Sentinel names it.
    fn primary_port(&self) -> Option<u16> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}", self.ports[0])).ok()?;
        let mut c = client.get_connection().ok()?;
        let (_, port): (String, u16) = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(&self.name)
            .query(&mut c)
            .ok()?;
        Some(port)
    }
}

impl Drop for Sentinels {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A throwaway replica of the server on `port`.
fn replica_of(port: u16) -> RedisServer {
    let port = port.to_string();
    RedisServer::start_with(&[
        "--save",
        "",
        "--appendonly",
        "no",
        "--replicaof",
        "127.0.0.1",
        &port,
    ])
}

/// A primary, its replica (synced) and three Sentinels that know both and each other.
fn three_nodes() -> (RedisServer, RedisServer, Sentinels) {
    let primary = RedisServer::start();
    let replica = replica_of(primary.port);
    wait_synced(&replica);
    let sentinels = Sentinels::start(primary.port);
    sentinels.wait_ready();
    (primary, replica, sentinels)
}

/// A migrated queue (prefix `t`) on `url` whose acknowledged writes wait for one replica
/// (300 ms), retrying calls for `retry_for` while no primary answers.
async fn acked_queue(url: &str, retry_for: Duration) -> Queue {
    let cfg = QueueConfig {
        min_replicas_ack: 1,
        replica_wait: Duration::from_millis(300),
        retry_for,
        ..Default::default()
    };
    let q = Queue::new(url, "t", cfg).unwrap();
    engine::migrate::migrate(&q).await.unwrap();
    q
}

/// Waits until the replica at `replica` has finished its first sync from its primary.
fn wait_synced(replica: &RedisServer) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query(&mut replica.conn())
            .unwrap();
        if info.contains("master_link_status:up") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the replica never synced: {info}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The schedule the failover test's scheduler fires: a `sleep` job every second.
const EVERY_SECOND: &str = "every-second";

/// A `synth-city bridge` on a free loopback port that knows only `url`, whose keyless
/// loopback callers are the operator, its enqueues acknowledged by one replica (300 ms); its
/// stderr in `log`. Returns it and its port once it listens.
fn spawn_bridge(url: &str, log: &std::path::Path) -> (Child, u16) {
    let port = free_port();
    let mut cmd = common::cli_command(url);
    cmd.args(["bridge", "--port", &port.to_string(), "--loopback-operator"])
        .env_remove("BRIDGE_API_KEY")
        .env_remove("BRIDGE_LOOPBACK_OPERATOR")
        .env("SYNTH_REDIS_MIN_REPLICAS_ACK", "1")
        .env("SYNTH_REDIS_WAIT_MS", "300");
    let child = common::spawn_logged(cmd, log);
    common::wait_listening(port, 10, "the bridge");
    (child, port)
}

/// What a bot calling the bridge through a failover saw.
#[derive(Default)]
struct Posts {
    /// Jobs the bridge answered 201 or 200 for (acknowledged), with when.
    acked: Vec<(String, Instant)>,
    /// 503 answers (no primary, or no replica confirmed the write yet), each retried.
    unavailable: u32,
    /// Anything else: an answer that is neither, or no answer at all.
    failures: Vec<String>,
}

/// Posts one `sleep` job after another to the bridge on `port` (`POST /jobs`, each with an
/// idempotency key of its own) until `stop`, as a client should: a 503 is retried with the
/// same key, so a write made but not confirmed is found, not made twice.
async fn post_jobs(
    port: u16,
    posts: std::sync::Arc<std::sync::Mutex<Posts>>,
    stop: tokio_util::sync::CancellationToken,
) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(40))
        .build()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/jobs");
    let mut i = 0u32;
    while !stop.is_cancelled() {
        let body =
            json!({"type": "sleep", "payload": {"ms": 5}, "idempotency_key": format!("b-{i}")});
        let answer = match http.post(&url).json(&body).send().await {
            Ok(r) => {
                let status = r.status().as_u16();
                (
                    status,
                    r.json::<serde_json::Value>().await.unwrap_or_default(),
                )
            }
            Err(e) => (0, json!({"error": e.to_string()})),
        };
        {
            let mut p = posts.lock().unwrap();
            match answer {
                (200 | 201, v) => {
                    p.acked
                        .push((v["id"].as_str().unwrap().to_string(), Instant::now()));
                    i += 1;
                }
                (503, _) => p.unavailable += 1,
                (status, v) => p.failures.push(format!("{status}: {v}")),
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The fire times in the ids of the jobs of schedule `name` in `text` (`cron-NAME-MS`), with
/// how often each occurs.
fn fire_times(text: &str, name: &str) -> std::collections::BTreeMap<u64, u32> {
    let tag = format!("cron-{name}-");
    let mut out = std::collections::BTreeMap::new();
    for (at, _) in text.match_indices(&tag) {
        let digits: String = text[at + tag.len()..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        if let Ok(ms) = digits.parse() {
            *out.entry(ms).or_insert(0) += 1;
        }
    }
    out
}

/// Waits (up to 20 s) until the schedule has fired `n` times at or after `since.0` (the
/// server's ms) and the bridge acknowledged `n` jobs after `since.1`.
async fn at_work(q: &Queue, posts: &std::sync::Mutex<Posts>, n: usize, since: (u64, Instant)) {
    let what = format!("the scheduler fires {n} times and the bridge takes {n} jobs");
    common::eventually(Duration::from_secs(20), &what, || async move {
        let fired = fire_times(&cron_jobs(q, EVERY_SECOND).await.join(" "), EVERY_SECOND);
        let bridged = posts
            .lock()
            .unwrap()
            .acked
            .iter()
            .filter(|(_, at)| *at > since.1)
            .count();
        fired.range(since.0..).count() >= n && bridged >= n
    })
    .await;
}

/// The ids of the job records of schedule `name` (on the current primary).
async fn cron_jobs(q: &Queue, name: &str) -> Vec<String> {
    let pattern = q.keys().job(&format!("cron-{name}-*"));
    let keys: Vec<String> = q
        .retrying("cron jobs", |mut c| {
            let pattern = pattern.clone();
            async move { Ok(redis::cmd("KEYS").arg(pattern).query_async(&mut c).await?) }
        })
        .await
        .unwrap();
    let cut = q.keys().job("");
    keys.iter().map(|k| k[cut.len()..].to_string()).collect()
}

/// The run: two workers, a scheduler (a `sleep` job every second) and a bridge (a bot
/// posting a job every 100 ms) know only the Sentinels; 2,000 jobs are enqueued and the primary
/// is SIGKILLed half-way. Every acknowledged job completes (the producer's, the bridge's and
/// every fire's); each fire time makes one job, fired a second time only when the kill lost
/// the first; the scheduler fires and the bridge answers `/health` and `POST /jobs` on the new
/// primary; no process was restarted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_jobs_survive_a_sentinel_failover() {
    let (mut primary, replica, sentinels) = three_nodes();
    let url = sentinels.url();
    let q = acked_queue(&url, Duration::from_secs(20)).await;
    let logs = tempfile::tempdir().unwrap();

    let flags = [
        "--roles",
        "sleep",
        "--concurrency",
        "8",
        "--lease-ms",
        "5000",
    ];
    let mut workers = [
        common::spawn_worker(&url, &flags),
        common::spawn_worker(&url, &flags),
    ];
    engine::scheduler::add(
        &q,
        &engine::scheduler::Schedule {
            name: EVERY_SECOND.into(),
            cron: "* * * * * *".into(),
            job_type: "sleep".into(),
            payload: json!({"ms": 5}),
            max_attempts: None,
            timeout_ms: None,
            owner: None,
        },
    )
    .await
    .unwrap();
    let scheduler_log = logs.path().join("scheduler.log");
    let mut scheduler = common::cli_command(&url);
    scheduler
        .args(["scheduler", "--period-ms", "200"])
        .env("RUST_LOG", "warn,engine::scheduler=info");
    let mut scheduler = common::spawn_logged(scheduler, &scheduler_log);
    let bridge_log = logs.path().join("bridge.log");
    let (mut bridge, bridge_port) = spawn_bridge(&url, &bridge_log);
    let pids = (scheduler.id(), bridge.id());
    let posts = std::sync::Arc::new(std::sync::Mutex::new(Posts::default()));
    let stop_posting = tokio_util::sync::CancellationToken::new();
    let poster = tokio::spawn(post_jobs(bridge_port, posts.clone(), stop_posting.clone()));
    // Both at work before the kill.
    at_work(&q, &posts, 2, (0, Instant::now())).await;

    // The producer enqueues 2,000 jobs in batches of 10; only the ids of a call that
    // returned Ok (written and confirmed by a replica) are promised. The primary is killed
    // half-way; the old primary comes back (as Sentinel's replica of the new one) once a write
    // has been refused for want of a replica.
    let t0 = Instant::now();
    let mut acked: Vec<String> = Vec::new();
    let mut not_replicated = 0;
    let mut other_errors = Vec::new();
    let mut killed_at = None;
    let mut spare = None;
    let mut answered_after: Option<Duration> = None;
    let mut killed_at_ms = 0;
    let mut acked_again: Option<Duration> = None;
    while acked.len() < 2000 {
        assert!(
            t0.elapsed() < Duration::from_secs(90),
            "enqueueing stalled: {} acknowledged, {not_replicated} not replicated, errors: {other_errors:?}",
            acked.len()
        );
        let batch = (0..10)
            .map(|_| EnqueueRequest::new("sleep", json!({"ms": 5})))
            .collect();
        match q.enqueue_many(batch).await {
            Ok(ids) => {
                acked.extend(ids.into_iter().map(|e| e.id));
                if let (Some(k), None) = (killed_at, acked_again) {
                    acked_again = Some(Instant::elapsed(&k));
                }
            }
            Err(QueueError::NotReplicated { acked: n, .. }) => {
                assert_eq!(n, 0);
                not_replicated += 1;
                // The first write the new primary took (and could not get confirmed).
                if let (Some(k), None) = (killed_at, answered_after) {
                    answered_after = Some(Instant::elapsed(&k));
                }
            }
            Err(e) => other_errors.push(e.to_string()),
        }
        if killed_at.is_none() && acked.len() >= 1000 {
            killed_at_ms = q.time_ms().await.unwrap();
            primary.kill();
            killed_at = Some(Instant::now());
        }
        if killed_at.is_some() && spare.is_none() && not_replicated > 0 {
            // The new primary has no replica now: writes are refused, not acknowledged.
            spare = Some(replica_of(replica.port));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let killed_at = killed_at.expect("the primary was killed");
    assert!(
        spare.is_some(),
        "no enqueue was refused while the new primary had no replica"
    );
    assert_eq!(
        sentinels.primary_port(),
        Some(replica.port),
        "Sentinel promoted the replica"
    );

    // On the new primary (with its fresh replica), the scheduler keeps firing and the bridge
    // keeps taking jobs, from the processes first started.
    let resumed = Instant::now();
    let resumed_ms = q.time_ms().await.unwrap();
    at_work(&q, &posts, 3, (resumed_ms, resumed)).await;
    let health: serde_json::Value = reqwest::get(format!("http://127.0.0.1:{bridge_port}/health"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (health["status"].as_str(), health["redis"].as_str()),
        (Some("ok"), Some("ok")),
        "the bridge's /health after the failover: {health}"
    );
    stop_posting.cancel();
    poster.await.unwrap();
    let posts = std::mem::take(&mut *posts.lock().unwrap());
    assert!(
        posts.failures.is_empty(),
        "the bridge answered neither 2xx nor 503: {:?}\n{}",
        posts.failures,
        common::read_log(&bridge_log)
    );
    let bridged: Vec<String> = posts.acked.iter().map(|(id, _)| id.clone()).collect();
    let unique: std::collections::HashSet<&String> = bridged.iter().collect();
    assert_eq!(
        unique.len(),
        bridged.len(),
        "one key, two jobs: {bridged:?}"
    );
    let cron_ids = cron_jobs(&q, EVERY_SECOND).await;

    // Every acknowledged job completes; none is lost.
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut pending: Vec<String> = acked
        .iter()
        .chain(&bridged)
        .chain(&cron_ids)
        .cloned()
        .collect();
    let mut extra_starts = 0u32;
    let mut most_starts = 0u32;
    while !pending.is_empty() {
        let mut still = Vec::new();
        for id in pending {
            match q.status(&id).await.unwrap() {
                Some(s) if s.state == "completed" => {
                    extra_starts += s.starts.saturating_sub(1);
                    most_starts = most_starts.max(s.starts);
                }
                Some(_) => still.push(id),
                None => panic!("acknowledged job {id} was lost in the failover"),
            }
        }
        pending = still;
        if !pending.is_empty() {
            assert!(
                Instant::now() < deadline,
                "{} acknowledged jobs never completed after the failover",
                pending.len()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // At least once: a job runs again only when the failover lost its start or finish, or its
    // lease ran out while no primary answered. Jobs in flight at the kill are at most the two
    // workers' 8 slots each (plus the entries each had read ahead), so re-runs stay in the tens,
    // and no job uses up its 3 attempts.
    assert!(
        most_starts <= 3,
        "a job started {most_starts} times: more than its attempts"
    );
    assert!(
        extra_starts <= 64,
        "{extra_starts} extra starts: more than the jobs in flight at the failover"
    );

    // The schedule: one job per fire time, on the second, before and after the kill. A fire is
    // made twice only when the kill lost the first (its job and the schedule's move went
    // together, so the new primary fires the same time again, as the same job): at most the
    // one fire made in the moment before the kill.
    let fires = fire_times(&cron_ids.join(" "), EVERY_SECOND);
    assert_eq!(fires.len(), cron_ids.len(), "{cron_ids:?}");
    let times: Vec<u64> = fires.keys().copied().collect();
    assert!(
        times.iter().all(|t| t % 1000 == 0) && times.windows(2).all(|w| w[1] - w[0] >= 1000),
        "fire times not one a second: {times:?}"
    );
    assert!(
        fires.range(..killed_at_ms).count() >= 2 && fires.range(resumed_ms..).count() >= 3,
        "fires before the kill ({killed_at_ms}) and after the failover ({resumed_ms}): {times:?}"
    );
    // The log is read after the jobs were listed: it may name later fires.
    let last = *times.last().unwrap();
    let mut logged = fire_times(&common::read_log(&scheduler_log), EVERY_SECOND);
    logged.retain(|t, _| *t <= last);
    assert_eq!(
        logged.keys().collect::<Vec<_>>(),
        fires.keys().collect::<Vec<_>>(),
        "the scheduler's log and the jobs disagree on the fires (kill at {killed_at_ms}, \
         resumed at {resumed_ms})"
    );
    let refired: Vec<(&u64, &u32)> = logged.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        refired.len() <= 1
            && refired
                .iter()
                .all(|(t, n)| **n == 2
                    && (killed_at_ms.saturating_sub(2000)..=resumed_ms).contains(*t)),
        "fires made more than once beyond the one the kill may lose: {refired:?} \
         (kill at {killed_at_ms}, resumed at {resumed_ms})"
    );
    // The gaps: a fire not made while no primary answered collapses into the first made after.
    let skipped: u64 = times.windows(2).map(|w| (w[1] - w[0]) / 1000 - 1).sum();

    let offsets: Vec<i64> = times
        .iter()
        .map(|t| *t as i64 - killed_at_ms as i64)
        .collect();
    let bridge_back = posts
        .acked
        .iter()
        .find(|(_, at)| *at > killed_at)
        .map(|(_, at)| at.duration_since(killed_at));

    // Nobody was restarted: the processes first started are alive, and the workers registered
    // on the new primary are those two.
    assert_eq!((scheduler.id(), bridge.id()), pids);
    for (what, p) in [("scheduler", &mut scheduler), ("bridge", &mut bridge)] {
        assert!(
            p.try_wait().unwrap().is_none(),
            "the {what} exited instead of following the new primary"
        );
    }
    let mut registered: Vec<u32> = engine::worker::list_workers(&q)
        .await
        .unwrap()
        .iter()
        .map(|w| w.pid)
        .collect();
    registered.sort();
    let mut started: Vec<u32> = workers.iter().map(Child::id).collect();
    started.sort();
    assert_eq!(registered, started, "the workers on the new primary");
    for w in workers.iter_mut().chain([&mut scheduler, &mut bridge]) {
        assert!(
            w.try_wait().unwrap().is_none(),
            "a worker exited instead of following the new primary"
        );
        w.kill().unwrap();
        w.wait().unwrap();
    }
    eprintln!(
        "sentinel failover: {} acknowledged jobs all completed; {not_replicated} enqueues refused \
         as not replicated, {} other errors ({other_errors:?}); {extra_starts} extra starts; \
         the new primary took a write {answered_after:?} after the kill and acknowledged one \
         {acked_again:?} after it (with the fresh replica); \
         {:.1}s from the kill to the end. Scheduler: {} fires ({} after the failover), \
         {skipped} fire times skipped, made twice: {refired:?}, fire times from the kill (ms): \
         {offsets:?}. Bridge: {} jobs acknowledged ({} after the failover), {} answers 503, the \
         first 2xx after the kill {bridge_back:?} after it",
        acked.len(),
        other_errors.len(),
        killed_at.elapsed().as_secs_f64(),
        fires.len(),
        fires.range(resumed_ms..).count(),
        posts.acked.len(),
        posts.acked.iter().filter(|(_, at)| *at > resumed).count(),
        posts.unavailable,
    );
}

/// The old primary is cut off (SIGSTOP) rather than killed, and comes back (SIGCONT) once
/// Sentinel has promoted the replica: the writes it took alone (the calls that were waiting on
/// it) were never reported acknowledged, so every acknowledged job is on the new primary and
/// completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_primary_acknowledges_nothing_alone() {
    let (primary, replica, sentinels) = three_nodes();
    let url = sentinels.url();
    let cfg = QueueConfig {
        min_replicas_ack: 1,
        replica_wait: Duration::from_millis(300),
        response_timeout: Duration::from_secs(1),
        retry_for: Duration::from_secs(20),
        ..Default::default()
    };
    let q = Queue::new(&url, "t", cfg).unwrap();
    engine::migrate::migrate(&q).await.unwrap();
    let flags = [
        "--roles",
        "sleep",
        "--concurrency",
        "8",
        "--lease-ms",
        "5000",
    ];
    let mut workers = vec![
        common::spawn_worker(&url, &flags),
        common::spawn_worker(&url, &flags),
    ];
    let pid = primary.pid().expect("running") as libc::pid_t;
    let t0 = Instant::now();
    let mut acked: Vec<String> = Vec::new();
    let mut refused = 0;
    let mut stopped = None;
    let mut resumed = None;
    let mut spare = None;
    while acked.len() < 1000 {
        assert!(
            t0.elapsed() < Duration::from_secs(90),
            "enqueueing stalled: {} acknowledged, {refused} refused",
            acked.len()
        );
        let batch = (0..10)
            .map(|_| EnqueueRequest::new("sleep", json!({"ms": 5})))
            .collect();
        match q.enqueue_many(batch).await {
            Ok(ids) => acked.extend(ids.into_iter().map(|e| e.id)),
            Err(_) => refused += 1,
        }
        if stopped.is_none() && acked.len() >= 300 {
            // SAFETY: a signal to the redis-server this test started.
            assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
            stopped = Some(Instant::now());
        }
        if let (Some(at), None) = (stopped, resumed) {
            if sentinels.primary_port() != Some(replica.port) {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
            // Failover done: the old primary comes back, still believing it is the primary
            // until Sentinel demotes it; a fresh replica lets the new primary acknowledge.
            assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
            resumed = Some(at.elapsed());
            spare = Some(replica_of(replica.port));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let failover = resumed.expect("Sentinel promoted the replica");
    assert!(spare.is_some());

    // Read from the new primary itself: every acknowledged job is there and completes.
    let deadline = Instant::now() + Duration::from_secs(45);
    let mut pending = acked.clone();
    while !pending.is_empty() {
        let mut still = Vec::new();
        for id in pending {
            match q.status(&id).await.unwrap() {
                Some(s) if s.state == "completed" => {}
                Some(_) => still.push(id),
                None => panic!("acknowledged job {id} is not on the new primary"),
            }
        }
        pending = still;
        if !pending.is_empty() {
            assert!(
                Instant::now() < deadline,
                "{} acknowledged jobs never completed after the partition",
                pending.len()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    for w in &mut workers {
        assert!(
            w.try_wait().unwrap().is_none(),
            "a worker exited instead of following the new primary"
        );
        w.kill().unwrap();
        w.wait().unwrap();
    }
    eprintln!(
        "partition: {} acknowledged jobs all completed on the new primary, {refused} calls refused; \
         failover {failover:?} after the SIGSTOP; {:.1}s in all",
        acked.len(),
        t0.elapsed().as_secs_f64()
    );
}

/// One snapshot of the `pipeline` semaphore and two runs' states, read in one MULTI (so a run
/// that finishes, which frees its permit in the same script, is never seen half-way).
struct Snapshot {
    limit: usize,
    /// Holders with a live lease (the server's clock), with their fencing tokens.
    holders: Vec<(String, u64)>,
    states: [Option<String>; 2],
}

async fn snapshot(q: &Queue, runs: [&str; 2]) -> Result<Snapshot, QueueError> {
    let k = |p: &str| format!("{{t}}:sem:pipeline:{p}");
    let (holders_key, fences_key, limit_key) = (k("holders"), k("fences"), k("limit"));
    let run_keys = runs.map(|r| format!("{{t}}:run:{r}"));
    type Raw = (
        (i64, i64),
        Vec<(String, i64)>,
        std::collections::HashMap<String, u64>,
        Option<usize>,
        Option<String>,
        Option<String>,
    );
    let (time, holders, fences, limit, a, b): Raw = q
        .retrying("semaphore snapshot", |mut c| {
            let mut p = redis::pipe();
            p.atomic()
                .cmd("TIME")
                .cmd("ZRANGE")
                .arg(&holders_key)
                .arg(0)
                .arg(-1)
                .arg("WITHSCORES")
                .cmd("HGETALL")
                .arg(&fences_key)
                .cmd("GET")
                .arg(&limit_key)
                .cmd("HGET")
                .arg(&run_keys[0])
                .arg("state")
                .cmd("HGET")
                .arg(&run_keys[1])
                .arg("state");
            async move { Ok(p.query_async(&mut c).await?) }
        })
        .await?;
    let now = time.0 * 1000 + time.1 / 1000;
    Ok(Snapshot {
        limit: limit.unwrap_or(engine::semaphore::DEFAULT_LIMIT as usize),
        holders: holders
            .into_iter()
            .filter(|(_, exp)| *exp > now)
            .map(|(h, _)| {
                let fence = fences.get(&h).copied().unwrap_or(0);
                (h, fence)
            })
            .collect(),
        states: [a, b],
    })
}

/// A pipeline run in flight across a failover: one `synth-city worker --roles all` that knows
/// only the Sentinels, the `pipeline` semaphore's limit set to 1, run A training and run B
/// waiting in line for the one permit. The primary is SIGKILLed while A's experiment trains;
/// Sentinel promotes the replica. Polled all along (one MULTI per poll): the semaphore never
/// has more live holders than its limit, never are two runs `running`, A holds its permit
/// whenever it is running (with one fencing token: never re-taken), B gets it only after A
/// finished, both runs succeed, and the worker is the process first started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_run_keeps_its_permit_across_a_failover() {
    let (mut primary, replica, sentinels) = three_nodes();
    let url = sentinels.url();
    let q = acked_queue(&url, Duration::from_secs(30)).await;
    let sem = RedisSemaphore::new(q.clone(), engine::semaphore::PIPELINE);
    sem.set_limit(1).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/data/sample");
    let (work, store) = (dir.path().join("work"), dir.path().join("store"));
    let acked = [
        ("SYNTH_REDIS_MIN_REPLICAS_ACK", "1"),
        ("SYNTH_REDIS_WAIT_MS", "300"),
    ];
    let enqueue = || {
        // Enough steps that the experiment trains for a few seconds.
        let mut args = common::tiny_run_args("1", &[]);
        args.extend_from_slice(&["--steps-per-epoch", "60"]);
        common::run_id_of(&common::stdout_of(
            common::cli_command(&url)
                .args(&args)
                .current_dir(dir.path())
                .envs(acked)
                .env_remove("CHUTES_API_KEY"),
        ))
    };
    let a = enqueue();
    let mut worker = common::worker_command(
        &url,
        &["--roles", "all", "--concurrency", "2", "--data-dir", sample],
    );
    worker
        .arg("--work-dir")
        .arg(&work)
        .arg("--store")
        .arg(&store)
        .current_dir(dir.path())
        .envs(acked)
        .env_remove("CHUTES_API_KEY")
        .env_remove("HIPPIUS_ENDPOINT");
    let mut worker = worker.spawn().unwrap();

    // A's experiment is training: B joins, and waits in line for the one permit.
    let child = format!("run-{a}-train-1-r0-e0");
    common::eventually(Duration::from_secs(90), "run A's experiment trains", || {
        let (q, child) = (&q, &child);
        async move { common::job_state(q, child).await == "active" }
    })
    .await;
    let b = enqueue();
    let before = snapshot(&q, [&a, &b]).await.unwrap();
    let fence_a = before
        .holders
        .iter()
        .find(|(h, _)| *h == a)
        .map(|(_, f)| *f)
        .expect("run A holds a permit while it trains");
    assert_eq!(before.holders.len(), 1, "{:?}", before.holders);
    let killed_at_ms = q.time_ms().await.unwrap();
    primary.kill();
    let killed_at = Instant::now();

    let deadline = killed_at + Duration::from_secs(180);
    let mut spare = None;
    let mut promoted_after = None;
    let mut polls = 0u32;
    let mut fences_b = std::collections::BTreeSet::new();
    let mut a_finished_at_poll = None;
    let mut a_trained_through = false;
    // Polls give up after 200 ms without a primary (rather than backing off for seconds), so
    // the promotion is seen, and the fresh replica started, within a poll of it.
    let poll_q = Queue::new(
        &url,
        "t",
        QueueConfig {
            retry_for: Duration::from_millis(200),
            ..Default::default()
        },
    )
    .unwrap();
    loop {
        if promoted_after.is_none() && sentinels.primary_port() == Some(replica.port) {
            promoted_after = Some(killed_at.elapsed());
            // The new primary needs a replica to acknowledge the runs' advances.
            spare = Some(replica_of(replica.port));
        }
        let s = match snapshot(&poll_q, [&a, &b]).await {
            Ok(s) => s,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "no primary answered after the kill: {e}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        polls += 1;
        assert_eq!(s.limit, 1);
        assert!(
            s.holders.len() <= s.limit,
            "poll {polls}: {} live holders over a limit of {}: {:?}",
            s.holders.len(),
            s.limit,
            s.holders
        );
        let running = s
            .states
            .iter()
            .filter(|st| st.as_deref() == Some("running"))
            .count();
        assert!(
            running <= 1,
            "poll {polls}: two runs running: {:?}",
            s.states
        );
        let holds = |run: &str| s.holders.iter().find(|(h, _)| h == run).map(|(_, f)| *f);
        match s.states[0].as_deref() {
            Some("running") => {
                assert_eq!(
                    holds(&a),
                    Some(fence_a),
                    "poll {polls}, {:.1}s after the kill: run A is running without its permit \
                     (fence {fence_a}): {:?}",
                    killed_at.elapsed().as_secs_f64(),
                    s.holders
                );
                if spare.is_some() {
                    a_trained_through = true;
                }
            }
            Some("succeeded") => {
                a_finished_at_poll.get_or_insert(polls);
                assert_ne!(holds(&a), Some(fence_a), "a finished run keeps its permit");
            }
            other => panic!("run A is {other:?} after the failover"),
        }
        if s.states[1].as_deref() == Some("running") {
            assert!(
                a_finished_at_poll.is_some(),
                "poll {polls}: run B runs before A finished"
            );
            let fence = holds(&b).expect("run B is running without a permit");
            assert!(fence > fence_a, "B's fence {fence} is not newer than A's");
            fences_b.insert(fence);
        }
        let finished = |st: &Option<String>| {
            matches!(st.as_deref(), Some("succeeded" | "failed" | "cancelled"))
        };
        if s.states.iter().all(finished) {
            assert_eq!(s.states[1].as_deref(), Some("succeeded"), "run B");
            assert!(s.holders.is_empty(), "{:?}", s.holders);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the runs never finished after the failover: {:?}",
            s.states
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let promoted_after = promoted_after.expect("Sentinel promoted the replica");
    assert!(
        a_trained_through,
        "run A finished before the new primary was found: nothing was tested"
    );
    assert_eq!(
        fences_b.len(),
        1,
        "run B's permit changed hands: {fences_b:?}"
    );
    assert!(
        worker.try_wait().unwrap().is_none(),
        "the worker exited instead of following the new primary"
    );
    worker.kill().unwrap();
    worker.wait().unwrap();
    let child = q.status(&child).await.unwrap().unwrap();
    assert_eq!(child.state, "completed");
    let finished_ms = child.finished_at_ms.unwrap();
    assert!(
        finished_ms > killed_at_ms,
        "A's experiment finished before the kill: nothing was in flight"
    );
    // Two permits were ever granted, one per run: A's was never re-taken.
    let status = sem.status().await.unwrap();
    assert_eq!((status.fence, status.holders.len()), (2, 0), "{status:?}");
    eprintln!(
        "pipeline failover: run A kept permit {fence_a} through the kill, run B took {fences_b:?} \
         after; the replica was promoted {promoted_after:?} after the kill; A's experiment started \
         {} times and finished {} ms after the kill; {polls} polls, {:.1}s from the kill to \
         both runs done",
        child.starts,
        finished_ms - killed_at_ms,
        killed_at.elapsed().as_secs_f64()
    );
}

/// The three-node example as shipped: `ops/sentinel/redis-node.conf` and `sentinel.conf`
/// rendered for nodes A, B and C on loopback addresses of their own (127.0.0.2 to .4, free
/// ports, temporary directories), with the deployment's ACL users (`ops redis-acl`) and the
/// replication and Sentinel users exactly as docs/ops.md gives them. The replica syncs as
/// `replicator`, the Sentinels (as `sentinel`) find each other and the replica, and a failover
/// (`SENTINEL FAILOVER`) promotes B and turns A into its replica, rewriting both files, so a
/// restarted node keeps its role; the worker user then enqueues through the Sentinels' URL,
/// acknowledged by A.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ops_sentinel_example_runs_as_written() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
    let (node_conf, sentinel_conf, ops_md) = (
        read("ops/sentinel/redis-node.conf"),
        read("ops/sentinel/sentinel.conf"),
        read("docs/ops.md"),
    );
    let tmp = tempfile::tempdir().unwrap();
    let acl = tmp.path().join("users.acl");
    let users = common::stdout_of(common::cli_command("redis://127.0.0.1:1").args([
        "ops",
        "redis-acl",
        "--worker-password",
        "worker-password-1",
        "--scheduler-password",
        "scheduler-password-1",
        "--bridge-password",
        "bridge-password-1",
        "--operator-password",
        "operator-password-1",
    ]));
    let docs_users: Vec<&str> = ops_md
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("user replicator ") || l.starts_with("user sentinel "))
        .collect();
    assert_eq!(
        docs_users.len(),
        2,
        "docs/ops.md gives the replicator and sentinel users"
    );
    let extra = docs_users
        .join("\n")
        .replace("REPLICATOR-PASSWORD", "replicator-pw")
        .replace("SENTINEL-USER-PASSWORD", "sentinel-pw");
    std::fs::write(&acl, format!("{users}{extra}\n")).unwrap();

    // Nodes A (127.0.0.2) and B (127.0.0.3, `replicaof` A), each with its own file.
    let (ip_a, ip_b) = ("127.0.0.2", "127.0.0.3");
    let (port_a, port_b) = (free_port(), free_port());
    let node = |name: &str, ip: &str, port: u16, replica: bool| {
        let dir = tmp.path().join(name);
        std::fs::create_dir(&dir).unwrap();
        let mut conf = node_conf
            .replace("NODE_IP", ip)
            .replace("port 6379", &format!("port {port}"))
            .replace("dir /var/lib/redis", &format!("dir {}", dir.display()))
            .replace("/etc/redis/users.acl", &acl.display().to_string())
            .replace("REPLICATOR-PASSWORD", "replicator-pw");
        if replica {
            conf = conf.replace(
                "# replicaof NODE_A_IP 6379",
                &format!("replicaof {ip_a} {port_a}"),
            );
        }
        let file = dir.join("synth-city.conf");
        std::fs::write(&file, conf).unwrap();
        let mut cmd = Command::new("redis-server");
        cmd.arg(&file).stdout(Stdio::null()).stderr(Stdio::null());
        common::die_with_parent(&mut cmd);
        let child = common::Killed(cmd.spawn().unwrap());
        common::wait_listening(port, 10, name);
        (child, file)
    };
    let (_a, file_a) = node("a", ip_a, port_a, false);
    let (_b, file_b) = node("b", ip_b, port_b, true);
    // INFO is the Sentinels' command (the deployment's users have none of it).
    let replication = |port: u16| -> String {
        let url = format!("redis://sentinel:sentinel-pw@127.0.0.1:{port}");
        let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
        redis::cmd("INFO")
            .arg("replication")
            .query(&mut c)
            .unwrap_or_else(|e| format!("INFO: {e}"))
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !replication(port_b).contains("master_link_status:up") {
        assert!(
            Instant::now() < deadline,
            "B never synced from A as `replicator`: {}",
            replication(port_b)
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // Sentinels on A, B and C, from the one template.
    let ips = [ip_a, ip_b, "127.0.0.4"];
    let sentinels = Sentinels::start_with("synth-city", |i, port, dir| {
        sentinel_conf
            .replace("NODE_A_IP 6379", &format!("{ip_a} {port_a}"))
            .replace("NODE_IP", ips[i])
            .replace("port 26379", &format!("port {port}"))
            .replace("dir /var/lib/redis", &format!("dir {}", dir.display()))
            .replace("SENTINEL-USER-PASSWORD", "sentinel-pw")
    });
    sentinels.wait_ready();

    // A failover: B is promoted and A follows it; both files say so.
    let mut c = redis::Client::open(format!("redis://127.0.0.1:{}", sentinels.ports[0]))
        .unwrap()
        .get_connection()
        .unwrap();
    let t0 = Instant::now();
    let _: String = redis::cmd("SENTINEL")
        .arg("FAILOVER")
        .arg("synth-city")
        .query(&mut c)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let a = replication(port_a);
        if sentinels.primary_port() == Some(port_b)
            && a.contains("role:slave")
            && a.contains("master_link_status:up")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the failover to B never finished: A says {a}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let failover = t0.elapsed();
    let conf_a = std::fs::read_to_string(&file_a).unwrap();
    let conf_b = std::fs::read_to_string(&file_b).unwrap();
    assert!(
        conf_a.contains(&format!("replicaof {ip_b} {port_b}")),
        "A's file does not name B as its primary:\n{conf_a}"
    );
    assert!(
        !conf_b.lines().any(|l| l.starts_with("replicaof")),
        "B's file still makes it a replica:\n{conf_b}"
    );

    // The deployment's users through the Sentinels: the operator migrates, the worker
    // enqueues, acknowledged by A.
    let url = sentinels.url_as("operator:operator-password-1@");
    common::stdout_of(common::cli_command(&url).arg("migrate"));
    let q = Queue::new(
        &sentinels.url_as("worker:worker-password-1@"),
        "t",
        QueueConfig {
            min_replicas_ack: 1,
            ..Default::default()
        },
    )
    .unwrap();
    let id = q
        .enqueue(EnqueueRequest::new("sleep", json!({"ms": 1})))
        .await
        .unwrap()
        .id;
    assert_eq!(common::job_state(&q, &id).await, "waiting");
    eprintln!(
        "ops example: the templates' failover to B took {failover:?}; A follows it; an \
         acknowledged enqueue as `worker` through the Sentinels"
    );
}

/// A replica answers writes with READONLY, a primary cut off from its replicas NOREPLICAS:
/// transient (retried, then reported as Redis being unavailable, with the server's answer),
/// not a hard failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_is_a_transient_failure() {
    let primary = RedisServer::start();
    let port = primary.port.to_string();
    let replica = RedisServer::start_with(&["--save", "", "--replicaof", "127.0.0.1", &port]);
    wait_synced(&replica);
    let q = Queue::new(&primary.url(), "t", Default::default()).unwrap();
    engine::migrate::migrate(&q).await.unwrap();
    let on_replica = Queue::new(
        &replica.url(),
        "t",
        QueueConfig {
            retry_for: Duration::from_millis(300),
            ..Default::default()
        },
    )
    .unwrap();
    let e = on_replica
        .enqueue(EnqueueRequest::new("sleep", json!({"ms": 1})))
        .await
        .unwrap_err();
    assert!(
        matches!(e, QueueError::Unreachable { .. }) && e.to_string().contains("read only replica"),
        "{e}"
    );

    // A primary told to refuse writes without a replica (min-replicas-to-write) and cut off
    // from it: NOREPLICAS, transient too.
    let cut_off = RedisServer::start();
    let q_cut = Queue::new(
        &cut_off.url(),
        "t",
        QueueConfig {
            retry_for: Duration::from_millis(300),
            ..Default::default()
        },
    )
    .unwrap();
    engine::migrate::migrate(&q_cut).await.unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("min-replicas-to-write")
        .arg("1")
        .query(&mut cut_off.conn())
        .unwrap();
    let e = q_cut
        .enqueue(EnqueueRequest::new("sleep", json!({"ms": 1})))
        .await
        .unwrap_err();
    assert!(
        matches!(e, QueueError::Unreachable { .. }) && e.to_string().contains("NOREPLICAS"),
        "{e}"
    );

    // With a replica asked for and none there, the write is done but not acknowledged.
    let alone = RedisServer::start();
    let q = Queue::new(
        &alone.url(),
        "t",
        QueueConfig {
            min_replicas_ack: 1,
            replica_wait: Duration::from_millis(50),
            ..Default::default()
        },
    )
    .unwrap();
    engine::migrate::migrate(&q).await.unwrap();
    let e = q
        .enqueue(EnqueueRequest {
            id: Some("j1".into()),
            ..EnqueueRequest::new("sleep", json!({"ms": 1}))
        })
        .await
        .unwrap_err();
    assert!(e.is_transient(), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("0 of the 1 replicas")
            && msg.contains("SYNTH_REDIS_MIN_REPLICAS_ACK")
            && msg.contains("may not survive a failover"),
        "{msg}"
    );
    assert_eq!(common::job_state(&q, "j1").await, "waiting");
    // The same Queue with the replica confirming: acknowledged.
    let q = Queue::new(
        &primary.url(),
        "t",
        QueueConfig {
            min_replicas_ack: 1,
            ..Default::default()
        },
    )
    .unwrap();
    q.enqueue(EnqueueRequest::new("sleep", json!({"ms": 1})))
        .await
        .unwrap();
}

/// A Sentinel URL that cannot be used says which part is wrong; Sentinels that do not know
/// the name say so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_urls_are_checked() {
    let e = Queue::new("redis+sentinel://127.0.0.1:x/m", "t", Default::default())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("sentinel host `127.0.0.1:x`"), "{e}");
    let primary = RedisServer::start();
    let sentinels = Sentinels::start(primary.port);
    let url = sentinels.url().replace(MASTER, "othername");
    let q = Queue::new(
        &url,
        "t",
        QueueConfig {
            retry_for: Duration::from_millis(500),
            ..Default::default()
        },
    )
    .unwrap();
    let mut e = String::new();
    // The Sentinels may still be starting: wait for their answer.
    for _ in 0..50 {
        e = q.time_ms().await.unwrap_err().to_string();
        if e.contains("knows no master named `othername`") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(e.contains("knows no master named `othername`"), "{e}");
    // The right name reaches the primary.
    let q = Queue::new(&sentinels.url(), "t", Default::default()).unwrap();
    assert!(q.time_ms().await.unwrap() > 0);
}
