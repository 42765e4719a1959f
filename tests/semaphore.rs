//! The pipeline semaphore: a cap that holds under contention and crashes,
//! first-come first-served waiting, fencing tokens, and refusal without waiting.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{queue, RedisServer};
use engine::semaphore::{RedisSemaphore, TryAcquire};
use rand::Rng;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_contenders_ten_permits_with_crashes() {
    let redis = RedisServer::start();
    let q = queue(&redis).await;
    let mut sem = RedisSemaphore::new(q.clone(), "pipeline");
    sem.lease = Duration::from_millis(900);
    sem.poll = Duration::from_millis(15);
    assert_eq!(
        sem.status().await.unwrap().limit,
        10,
        "migration 2 sets 10 permits"
    );

    let live = Arc::new(AtomicUsize::new(0));
    let max_live = Arc::new(AtomicUsize::new(0));
    let fences = Arc::new(Mutex::new(Vec::new()));
    let crashes = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    // A sampler watches Redis itself: live leases never exceed the limit.
    let sampler = tokio::spawn({
        let sem = sem.clone();
        let done = done.clone();
        async move {
            let mut max = 0;
            while done.load(Ordering::SeqCst) < 100 {
                let s = sem.status().await.unwrap();
                max = max.max(s.holders.len());
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            max
        }
    });
    let mut tasks = Vec::new();
    for i in 0..100 {
        let (sem, live, max_live, fences, crashes, done) = (
            sem.clone(),
            live.clone(),
            max_live.clone(),
            fences.clone(),
            crashes.clone(),
            done.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let holder = format!("run-{i}");
            let permit = sem
                .acquire(&holder, Some(Duration::from_secs(60)))
                .await
                .unwrap()
                .expect("every contender gets a permit in the end");
            let n = live.fetch_add(1, Ordering::SeqCst) + 1;
            max_live.fetch_max(n, Ordering::SeqCst);
            fences.lock().unwrap().push(permit.fence);
            let (hold, crash) = {
                let mut r = rand::rng();
                (r.random_range(10..60), r.random_bool(0.2))
            };
            tokio::time::sleep(Duration::from_millis(hold)).await;
            live.fetch_sub(1, Ordering::SeqCst);
            if crash {
                crashes.fetch_add(1, Ordering::SeqCst);
                permit.abandon(); // no release, no renewals: the lease must expire
            } else {
                assert!(permit.release().await.unwrap(), "a live permit releases");
            }
            done.fetch_add(1, Ordering::SeqCst);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let max_in_redis = sampler.await.unwrap();
    assert!(max_live.load(Ordering::SeqCst) <= 10);
    assert!(
        max_in_redis <= 10,
        "redis showed {max_in_redis} live holders"
    );
    assert!(
        crashes.load(Ordering::SeqCst) > 0,
        "the run had no crash to recover from"
    );
    let fences = fences.lock().unwrap().clone();
    assert_eq!(
        fences.iter().collect::<HashSet<_>>().len(),
        100,
        "fences are unique"
    );
    // Once the lease has passed, no permit is lost: all ten can be taken again.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let mut again = Vec::new();
    for i in 0..10 {
        again.push(
            sem.acquire(&format!("after-{i}"), None)
                .await
                .unwrap()
                .expect("crashed holders' permits have come back"),
        );
    }
    assert!(sem.acquire("eleventh", None).await.unwrap().is_none());
    assert!(again
        .iter()
        .all(|p| p.fence > *fences.iter().max().unwrap()));
}

#[tokio::test]
async fn waiters_are_served_in_order_and_no_wait_is_refused() {
    let redis = RedisServer::start();
    let q = queue(&redis).await;
    let sem = RedisSemaphore::new(q, "one");
    sem.set_limit(1).await.unwrap();
    let a = match sem.try_acquire("a", true).await.unwrap() {
        TryAcquire::Granted(f) => f,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        sem.try_acquire("b", true).await.unwrap(),
        TryAcquire::Waiting(1)
    );
    assert_eq!(
        sem.try_acquire("c", true).await.unwrap(),
        TryAcquire::Waiting(2)
    );
    assert_eq!(
        sem.try_acquire("d", false).await.unwrap(),
        TryAcquire::Refused
    );
    let st = sem.status().await.unwrap();
    assert_eq!(
        (st.holders.len(), st.waiters.clone()),
        (1, vec!["b".to_string(), "c".to_string()])
    );
    assert!(sem.release("a", a).await.unwrap());
    // c asks first, but b is ahead in line.
    assert_eq!(
        sem.try_acquire("c", true).await.unwrap(),
        TryAcquire::Waiting(2)
    );
    let b = sem.try_acquire("b", true).await.unwrap();
    assert!(matches!(b, TryAcquire::Granted(f) if f > a), "{b:?}");
    // A stale fence cannot release or renew someone else's permit.
    assert!(!sem.release("b", a).await.unwrap());
    assert!(!sem.renew("a", a).await.unwrap());
}

#[tokio::test]
async fn a_holder_learns_when_its_lease_is_lost() {
    let redis = RedisServer::start();
    let q = queue(&redis).await;
    let mut sem = RedisSemaphore::new(q.clone(), "lost");
    sem.lease = Duration::from_millis(600);
    let p = sem.acquire("x", None).await.unwrap().unwrap();
    // Someone deletes the holders set (an operator, a FLUSHALL): the keeper notices.
    let mut c = q.conn().await.unwrap();
    let _: () = redis::AsyncCommands::del(&mut c, q.keys().sem("lost", "holders"))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(2), p.lost())
        .await
        .expect("lost is signalled");
    assert!(p.is_lost());
}
