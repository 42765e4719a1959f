//! Versioned changes to the Redis key layout, applied by `synth-city migrate`.
//!
//! Each migration is a Lua file in `migrations/`, numbered from 1, run once with
//! EVAL (ARGV: prefix, then the catalog's job types) under a lock, after which
//! `meta.schema_version` records its number. Workers refuse to start against any
//! other version, so a fleet never runs on a layout it does not understand. It also loads
//! this build's function library of the scripts (`scripts::load_library`).

use std::time::Duration;

use redis::AsyncCommands;

use crate::queue::{Queue, QueueError, Result};

/// One migration: its number, a name, and its script.
pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub lua: &'static str,
}

/// Every migration of this build, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "consumer_groups",
        lua: include_str!("../../migrations/0001_consumer_groups.lua"),
    },
    Migration {
        version: 2,
        name: "pipeline_semaphore",
        lua: include_str!("../../migrations/0002_pipeline_semaphore.lua"),
    },
];

/// The schema version this build expects.
pub const LATEST: u32 = MIGRATIONS.len() as u32;

/// Refuses to go on unless Redis is at this build's schema version ([`LATEST`]).
pub async fn check_schema(queue: &Queue) -> Result<()> {
    let found = queue.schema_version().await?;
    if found != LATEST {
        return Err(QueueError::Schema {
            found,
            expected: LATEST,
        });
    }
    Ok(())
}

/// Applies the pending migrations; returns the versions applied.
pub async fn migrate(queue: &Queue) -> Result<Vec<u32>> {
    let keys = queue.keys().clone();
    let lock = keys.lock("migrate");
    let token = ulid::Ulid::new().to_string();
    let mut conn = queue.conn().await?;
    // One migrator at a time; the lock expires if this process dies.
    let mut waited = Duration::ZERO;
    loop {
        let got: bool = redis::cmd("SET")
            .arg(&lock)
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(60_000)
            .query_async::<Option<String>>(&mut conn)
            .await?
            .is_some();
        if got {
            break;
        }
        if waited > Duration::from_secs(60) {
            return Err(QueueError::Invalid(
                "another `synth-city migrate` holds the lock; try again later".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        waited += Duration::from_millis(200);
    }
    let result = apply(queue, &mut conn).await;
    let _: () = conn.del(&lock).await?;
    let applied = result?;
    // The scripts' library, so that no role's first call has to load it (only the operator
    // may: `acl.rs`). Redis before 7.0 has no functions: the scripts then run plainly.
    match crate::scripts::load_library(&mut conn).await {
        Ok(()) => {
            tracing::info!(library = %crate::scripts::LIBRARY.name, "function library loaded")
        }
        Err(e) if crate::scripts::functions_refused(&e) => {
            tracing::warn!(
                "the scripts' function library was not loaded ({e}): they run as plain scripts"
            )
        }
        Err(e) => return Err(e.into()),
    }
    Ok(applied)
}

async fn apply(queue: &Queue, conn: &mut crate::queue::PooledConnection) -> Result<Vec<u32>> {
    let meta = queue.keys().meta();
    let current: u32 = conn
        .hget::<_, _, Option<u32>>(&meta, "schema_version")
        .await?
        .unwrap_or(0);
    if current > LATEST {
        return Err(QueueError::Invalid(format!(
            "redis schema is at version {current}, newer than this build's {LATEST}: upgrade synth-city"
        )));
    }
    let mut applied = Vec::new();
    for m in MIGRATIONS.iter().filter(|m| m.version > current) {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(m.lua).arg(0).arg(queue.prefix());
        for t in queue.catalog().types() {
            cmd.arg(t.name);
        }
        let _: redis::Value = cmd.query_async(conn).await.map_err(|e| {
            QueueError::Invalid(format!("migration {:04}_{} failed: {e}", m.version, m.name))
        })?;
        let _: () = conn.hset(&meta, "schema_version", m.version).await?;
        tracing::info!(version = m.version, name = m.name, "migration applied");
        applied.push(m.version);
    }
    Ok(applied)
}

/// Creates the consumer groups of `types` if missing (idempotent). Workers call
/// this so that a job type added after the last migration still gets a group.
pub async fn ensure_groups(queue: &Queue, types: &[String]) -> Result<()> {
    let mut conn = queue.conn().await?;
    for t in types {
        let r: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(queue.keys().stream(t))
            .arg(crate::keys::GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut conn)
            .await;
        match r {
            Ok(()) => {}
            Err(e) if e.code() == Some("BUSYGROUP") => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_dense_and_ordered() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version as usize, i + 1, "{}", m.name);
        }
    }
}
