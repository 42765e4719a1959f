//! A counting semaphore in Redis: at most `limit` holders (10 pipeline runs by default).
//!
//! A permit is a lease with a TTL (server clock) that its holder's keeper task
//! renews every lease/3, and a fencing token that only grows: pass it to side
//! effects so a holder that paused past its lease can be told apart from the
//! one that replaced it. A holder that crashes stops renewing and its permit
//! returns when the lease runs out. Waiters stand in a line ordered by a ticket
//! counter, so permits go first come, first served; a waiter that stops polling
//! drops out of line after `waiter_ttl`.

use std::time::Duration;

use redis::AsyncCommands;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::queue::{Queue, QueueError, Result};

/// The semaphore the pipeline uses for runs.
pub const PIPELINE: &str = "pipeline";
/// Its limit unless `semaphore set-limit` says otherwise.
pub const DEFAULT_LIMIT: u32 = 10;

/// One attempt's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TryAcquire {
    /// Granted, with the fencing token.
    Granted(u64),
    /// In line, at this 1-based position.
    Waiting(u64),
    /// Refused: no free permit and the caller would not wait.
    Refused,
}

/// A client for one named semaphore.
#[derive(Clone)]
pub struct RedisSemaphore {
    queue: Queue,
    name: String,
    /// Lease of a permit; the keeper renews it every lease/3.
    pub lease: Duration,
    /// How long a waiter stays in line without polling.
    pub waiter_ttl: Duration,
    /// How often a waiter polls.
    pub poll: Duration,
}

/// A held permit. Dropping it without [`Permit::release`] leaves the lease to
/// expire, exactly as a crash would.
pub struct Permit {
    sem: RedisSemaphore,
    pub holder: String,
    pub fence: u64,
    lost: CancellationToken,
    keeper: tokio::task::JoinHandle<()>,
}

/// `semaphore status`.
#[derive(Debug, Clone, Serialize)]
pub struct SemaphoreStatus {
    pub name: String,
    pub limit: u32,
    pub holders: Vec<HolderInfo>,
    pub waiters: Vec<String>,
    /// The highest fencing token issued so far.
    pub fence: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct HolderInfo {
    pub holder: String,
    pub fence: u64,
    pub lease_left_ms: i64,
}

impl RedisSemaphore {
    pub fn new(queue: Queue, name: &str) -> Self {
        Self {
            queue,
            name: name.to_string(),
            lease: Duration::from_secs(30),
            waiter_ttl: Duration::from_secs(10),
            poll: Duration::from_millis(100),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// One atomic attempt: take a permit, join (or keep) a place in line, or be refused.
    pub async fn try_acquire(&self, holder: &str, wait: bool) -> Result<TryAcquire> {
        let (ok, fence, pos): (u8, u64, i64) = self
            .queue
            .retrying("semaphore acquire", |mut c| {
                let mut inv = self.queue.scripts().sem_acquire.prepare_invoke();
                inv.arg(self.queue.prefix())
                    .arg(&self.name)
                    .arg(holder)
                    .arg(self.lease.as_millis() as u64)
                    .arg(if wait { 1 } else { 0 })
                    .arg(self.waiter_ttl.as_millis() as u64)
                    .arg(DEFAULT_LIMIT);
                async move { Ok(inv.invoke_async(&mut c).await?) }
            })
            .await?;
        Ok(match (ok, pos) {
            (1, _) => TryAcquire::Granted(fence),
            (_, p) if p > 0 => TryAcquire::Waiting(p as u64),
            _ => TryAcquire::Refused,
        })
    }

    /// Takes a permit, waiting in line up to `timeout` (`None`: refuse at once
    /// if none is free). Returns `None` when refused or timed out.
    pub async fn acquire(&self, holder: &str, timeout: Option<Duration>) -> Result<Option<Permit>> {
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        loop {
            match self.try_acquire(holder, timeout.is_some()).await? {
                TryAcquire::Granted(fence) => return Ok(Some(self.keep(holder, fence))),
                TryAcquire::Refused => return Ok(None),
                TryAcquire::Waiting(_) => {
                    if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                        self.leave_line(holder).await?;
                        return Ok(None);
                    }
                    tokio::time::sleep(self.poll).await;
                }
            }
        }
    }

    fn keep(&self, holder: &str, fence: u64) -> Permit {
        let lost = CancellationToken::new();
        let keeper = tokio::spawn({
            let sem = self.clone();
            let holder = holder.to_string();
            let lost = lost.clone();
            async move {
                loop {
                    tokio::time::sleep(sem.lease / 3).await;
                    match sem.renew(&holder, fence).await {
                        Ok(true) => {}
                        Ok(false) => {
                            tracing::warn!(%holder, fence, "semaphore permit lost");
                            lost.cancel();
                            return;
                        }
                        Err(e) => tracing::warn!(%e, "semaphore renew failed; retrying"),
                    }
                }
            }
        });
        Permit {
            sem: self.clone(),
            holder: holder.to_string(),
            fence,
            lost,
            keeper,
        }
    }

    /// Extends a permit's lease; false when it was lost.
    pub async fn renew(&self, holder: &str, fence: u64) -> Result<bool> {
        let r: u8 = self
            .queue
            .retrying("semaphore renew", |mut c| {
                let mut inv = self.queue.scripts().sem_renew.prepare_invoke();
                inv.arg(self.queue.prefix())
                    .arg(&self.name)
                    .arg(holder)
                    .arg(fence)
                    .arg(self.lease.as_millis() as u64);
                async move { Ok(inv.invoke_async(&mut c).await?) }
            })
            .await?;
        Ok(r == 1)
    }

    /// Gives a permit back; false when it had already been lost.
    pub async fn release(&self, holder: &str, fence: u64) -> Result<bool> {
        self.release_raw(holder, &fence.to_string()).await
    }

    async fn leave_line(&self, holder: &str) -> Result<bool> {
        self.release_raw(holder, "").await
    }

    async fn release_raw(&self, holder: &str, fence: &str) -> Result<bool> {
        let r: u8 = self
            .queue
            .retrying("semaphore release", |mut c| {
                let mut inv = self.queue.scripts().sem_release.prepare_invoke();
                inv.arg(self.queue.prefix())
                    .arg(&self.name)
                    .arg(holder)
                    .arg(fence);
                async move { Ok(inv.invoke_async(&mut c).await?) }
            })
            .await?;
        Ok(r == 1)
    }

    /// Sets the number of permits for every process using this semaphore.
    pub async fn set_limit(&self, limit: u32) -> Result<()> {
        if limit == 0 {
            return Err(QueueError::Invalid("limit must be at least 1".into()));
        }
        let key = self.queue.keys().sem(&self.name, "limit");
        self.queue
            .retrying("semaphore limit", |mut c| {
                let key = key.clone();
                async move { Ok(c.set(key, limit).await?) }
            })
            .await
    }

    /// Holders (live leases only), waiters in order, the limit and the fence.
    pub async fn status(&self) -> Result<SemaphoreStatus> {
        let k = |p: &str| self.queue.keys().sem(&self.name, p);
        let (hk, fk, qk, lk, fencek) = (
            k("holders"),
            k("fences"),
            k("queue"),
            k("limit"),
            k("fence"),
        );
        self.queue
            .retrying("semaphore status", |mut c| {
                let (hk, fk, qk, lk, fencek) = (
                    hk.clone(),
                    fk.clone(),
                    qk.clone(),
                    lk.clone(),
                    fencek.clone(),
                );
                async move {
                    let (s, us): (i64, i64) = redis::cmd("TIME").query_async(&mut c).await?;
                    let now = s * 1000 + us / 1000;
                    let holders: Vec<(String, i64)> = c.zrange_withscores(&hk, 0, -1).await?;
                    let fences: std::collections::HashMap<String, u64> = c.hgetall(&fk).await?;
                    let waiters: Vec<String> = c.zrange(&qk, 0, -1).await?;
                    let limit: Option<u32> = c.get(&lk).await?;
                    let fence: Option<u64> = c.get(&fencek).await?;
                    Ok(SemaphoreStatus {
                        name: self.name.clone(),
                        limit: limit.unwrap_or(DEFAULT_LIMIT),
                        holders: holders
                            .into_iter()
                            .filter(|(_, exp)| *exp > now)
                            .map(|(h, exp)| HolderInfo {
                                fence: fences.get(&h).copied().unwrap_or(0),
                                holder: h,
                                lease_left_ms: exp - now,
                            })
                            .collect(),
                        waiters,
                        fence: fence.unwrap_or(0),
                    })
                }
            })
            .await
    }
}

impl Permit {
    /// Resolves if the lease was lost (the holder should stop its work).
    pub async fn lost(&self) {
        self.lost.cancelled().await
    }

    pub fn is_lost(&self) -> bool {
        self.lost.is_cancelled()
    }

    /// Gives the permit back now.
    pub async fn release(self) -> Result<bool> {
        self.keeper.abort();
        self.sem.release(&self.holder, self.fence).await
    }

    /// Stops renewing without releasing, as a crashed holder would.
    pub fn abandon(self) {
        self.keeper.abort();
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.keeper.abort();
    }
}
