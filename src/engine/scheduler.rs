//! Cron schedules that enqueue jobs, safe to run in any number of processes.
//!
//! A schedule lives in Redis (`cron:defs`), its next fire time in the
//! `cron:next` ZSET. Every scheduler process polls the due ones and calls
//! `cron_fire.lua`, which moves the next-fire score only if it still holds the
//! value the caller saw (compare-and-set) and enqueues with a job id derived
//! from (name, fire time). One fire time therefore makes exactly one job, with
//! no leader to elect. Missed fire times (all schedulers down) collapse into a
//! single fire when one comes back. Times are UTC, from the Redis clock.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::queue::{EnqueueRequest, Queue, QueueError, Result};

/// A schedule as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub name: String,
    /// Five fields (`min hour dom mon dow`) or six/seven with seconds (and year).
    pub cron: String,
    pub job_type: String,
    pub payload: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// The bot whose schedule it is (set by the bridge to the caller; none for the operator's,
    /// added from the CLI). Names are per owner: the schedule is stored under [`Schedule::key`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// A schedule with its next and last fire times.
#[derive(Debug, Clone, Serialize)]
pub struct ScheduleInfo {
    #[serde(flatten)]
    pub schedule: Schedule,
    pub next_fire_ms: Option<u64>,
    pub last_fire_ms: Option<u64>,
}

/// Parses a cron expression; five-field expressions get a leading `0` seconds field.
pub fn parse_cron(expr: &str) -> Result<cron::Schedule> {
    let n = expr.split_whitespace().count();
    let full = match n {
        5 => format!("0 {expr}"),
        6 | 7 => expr.to_string(),
        _ => {
            return Err(QueueError::Invalid(format!(
                "cron expression {expr:?} has {n} fields; expected 5 (min hour dom mon dow), 6 or 7"
            )))
        }
    };
    cron::Schedule::from_str(&full)
        .map_err(|e| QueueError::Invalid(format!("cron expression {expr:?}: {e}")))
}

/// The first fire time strictly after `after_ms`.
pub fn next_after(s: &cron::Schedule, after_ms: u64) -> Option<u64> {
    let t: DateTime<Utc> = Utc.timestamp_millis_opt(after_ms as i64).single()?;
    s.after(&t).next().map(|d| d.timestamp_millis() as u64)
}

fn validate_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > 100
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
    {
        return Err(QueueError::Invalid(format!(
            "schedule name {name:?} must be 1 to 100 of [A-Za-z0-9_.-]"
        )));
    }
    Ok(())
}

impl Schedule {
    /// Where the schedule is stored: `OWNER:NAME` for a bot's, `NAME` for the operator's (a
    /// name and an owner hold no `:`, so two owners' names never meet).
    pub fn key(&self) -> String {
        match &self.owner {
            Some(o) => format!("{o}:{}", self.name),
            None => self.name.clone(),
        }
    }

    fn request(&self, fire_ms: u64) -> EnqueueRequest {
        EnqueueRequest {
            job_type: self.job_type.clone(),
            payload: self.payload.clone(),
            id: Some(format!("cron-{}-{fire_ms}", self.key())),
            max_attempts: self.max_attempts,
            timeout_ms: self.timeout_ms,
            ..Default::default()
        }
    }
}

/// Adds or replaces a schedule; returns its next fire time.
pub async fn add(queue: &Queue, s: &Schedule) -> Result<u64> {
    validate_name(&s.name)?;
    if let Some(o) = &s.owner {
        validate_name(o).map_err(|_| {
            QueueError::Invalid(format!(
                "schedule owner {o:?} must be 1 to 100 of [A-Za-z0-9_.-]"
            ))
        })?;
    }
    let key = s.key();
    let cron = parse_cron(&s.cron)?;
    s.request(0).into_envelope_in(queue.catalog())?; // checks type and payload now, not at fire time
    let now = queue.time_ms().await?;
    let next = next_after(&cron, now).ok_or_else(|| {
        QueueError::Invalid(format!("cron expression {:?} never fires again", s.cron))
    })?;
    let def = serde_json::to_string(s).expect("schedules serialise");
    let keys = queue.keys().clone();
    queue
        .retrying("schedule add", |mut c| {
            let (keys, def, key) = (keys.clone(), def.clone(), key.clone());
            async move {
                let _: () = redis::pipe()
                    .atomic()
                    .hset(keys.cron("defs"), &key, def)
                    .zadd(keys.cron("next"), &key, next)
                    .query_async(&mut c)
                    .await?;
                Ok(())
            }
        })
        .await?;
    Ok(next)
}

/// Removes the schedule stored under `name` (its [`Schedule::key`]); false if there was none.
pub async fn remove(queue: &Queue, name: &str) -> Result<bool> {
    let keys = queue.keys().clone();
    queue
        .retrying("schedule remove", |mut c| {
            let keys = keys.clone();
            async move {
                let (n, _, _): (u32, u32, u32) = redis::pipe()
                    .atomic()
                    .hdel(keys.cron("defs"), name)
                    .zrem(keys.cron("next"), name)
                    .hdel(keys.cron("last"), name)
                    .query_async(&mut c)
                    .await?;
                Ok(n == 1)
            }
        })
        .await
}

/// Every schedule, by name.
pub async fn list(queue: &Queue) -> Result<Vec<ScheduleInfo>> {
    let keys = queue.keys().clone();
    queue
        .retrying("schedule list", |mut c| {
            let keys = keys.clone();
            async move {
                let defs: std::collections::BTreeMap<String, String> =
                    c.hgetall(keys.cron("defs")).await?;
                let last: std::collections::HashMap<String, u64> =
                    c.hgetall(keys.cron("last")).await?;
                let mut out = Vec::new();
                for (name, def) in defs {
                    let schedule: Schedule = serde_json::from_str(&def).map_err(|e| {
                        QueueError::Invalid(format!("stored schedule {name:?} is unreadable: {e}"))
                    })?;
                    let next: Option<u64> = c.zscore(keys.cron("next"), &name).await?;
                    out.push(ScheduleInfo {
                        schedule,
                        next_fire_ms: next,
                        last_fire_ms: last.get(&name).copied(),
                    });
                }
                Ok(out)
            }
        })
        .await
}

/// Fires every due schedule once; returns how many this call fired.
pub async fn tick(queue: &Queue) -> Result<usize> {
    let keys = queue.keys().clone();
    let mut c = queue.conn().await?;
    let (s, us): (u64, u64) = redis::cmd("TIME").query_async(&mut c).await?;
    let now = s * 1000 + us / 1000;
    let due: Vec<(String, u64)> = c
        .zrangebyscore_limit_withscores(keys.cron("next"), "-inf", now, 0, 100)
        .await?;
    let mut fired = 0;
    for (name, due_ms) in due {
        let def: Option<String> = c.hget(keys.cron("defs"), &name).await?;
        let Some(def) = def else {
            let _: () = c.zrem(keys.cron("next"), &name).await?;
            continue;
        };
        let s: Schedule = match serde_json::from_str(&def) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(schedule = %name, %e, "unreadable schedule skipped");
                continue;
            }
        };
        let next = parse_cron(&s.cron)
            .ok()
            .and_then(|cron| next_after(&cron, now.max(due_ms)));
        // A schedule that never fires again parks far in the future.
        let next = next.unwrap_or(u64::MAX / 4);
        let env = match s.request(due_ms).into_envelope_in(queue.catalog()) {
            Ok((env, _, _)) => env,
            Err(e) => {
                tracing::error!(schedule = %name, %e, "schedule's job is invalid; not fired");
                continue;
            }
        };
        let mut inv = queue.scripts().cron_fire.prepare_invoke();
        inv.arg(queue.prefix())
            .arg(queue.config().result_ttl.as_millis() as u64)
            .arg(&name)
            .arg(due_ms)
            .arg(next)
            .arg(&env.job_type)
            .arg(&env.id)
            .arg(env.to_json());
        let ok: u8 = inv.invoke_async(&mut c).await?;
        if ok == 1 {
            tracing::info!(schedule = %name, job = %env.id, "schedule fired");
            fired += 1;
        }
    }
    Ok(fired)
}

/// Runs the scheduler loop until `shutdown`.
pub async fn run(queue: Queue, period: Duration, shutdown: CancellationToken) -> Result<()> {
    crate::migrate::check_schema(&queue).await?;
    tracing::info!("scheduler started");
    let mut backoff = crate::queue::Backoff::new();
    loop {
        let wait = match tick(&queue).await {
            Ok(_) => {
                backoff.reset();
                period
            }
            Err(e) => {
                let w = backoff.next_delay();
                tracing::warn!(%e, wait = ?w, "scheduler tick failed; retrying");
                w
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.cancelled() => break,
        }
    }
    tracing::info!("scheduler stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_field_cron_fires_on_the_minute() {
        let s = parse_cron("*/5 * * * *").unwrap();
        // 2026-01-01T00:01:30Z
        let t = 1_767_225_690_000;
        let next = next_after(&s, t).unwrap();
        assert_eq!(next, 1_767_225_900_000); // 00:05:00
        assert_eq!(next_after(&s, next).unwrap(), next + 300_000);
    }

    #[test]
    fn bad_cron_names_the_problem() {
        assert!(parse_cron("* *")
            .unwrap_err()
            .to_string()
            .contains("2 fields"));
        assert!(parse_cron("99 * * * *").is_err());
    }

    #[test]
    fn names_are_checked() {
        assert!(validate_name("sweep-hourly").is_ok());
        assert!(validate_name("a b").is_err());
    }
}
