//! The connections a [`crate::queue::Queue`] hands out, all made by its
//! [`Locator`](crate::sentinel::Locator) (one server, or the current primary of a Sentinel set):
//!
//! - [`PooledConnection`]: from a small pool (deadpool), for work that holds a connection for
//!   a while (worker loops, migrations). A returned connection is checked with `PING` and
//!   dropped if its primary went stale.
//! - [`SharedConnection`]: the one multiplexed connection every short request pipelines over
//!   ([`crate::queue::Queue::retrying`]); replaced on the next use after it breaks.
//!
//! Both watch the errors that pass through them: one that says the primary may have moved
//! (a broken connection, `READONLY`, `LOADING`, `MASTERDOWN`) marks its generation stale, so
//! the next connection asks the Sentinels again. Dedicated blocking connections are plain
//! `MultiplexedConnection`s from [`Locator::connect`] and are not tracked: their owners
//! reconnect on any error, and every new connection checks `ROLE`.
//!
//! What it does not do: it retries nothing itself (callers do: [`crate::queue::Queue::retrying`]
//! and the worker's loops) and it never reads from replicas.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use deadpool::managed::{self, Metrics, RecycleResult};
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Cmd, Pipeline, RedisError, RedisFuture, Value};

use crate::sentinel::Locator;

/// A connection with the generation of the primary it was made to.
pub struct Tracked {
    conn: MultiplexedConnection,
    generation: u64,
    broken: bool,
}

/// Makes and checks the pool's connections.
pub struct PoolManager {
    pub(crate) locator: Arc<Locator>,
    pub(crate) cfg: AsyncConnectionConfig,
}

impl managed::Manager for PoolManager {
    type Type = Tracked;
    type Error = RedisError;

    async fn create(&self) -> Result<Tracked, RedisError> {
        let (generation, conn) = self.locator.connect(&self.cfg).await?;
        Ok(Tracked {
            conn,
            generation,
            broken: false,
        })
    }

    async fn recycle(&self, t: &mut Tracked, _: &Metrics) -> RecycleResult<RedisError> {
        if t.broken || !self.locator.is_current(t.generation) {
            return Err(managed::RecycleError::message(
                "the connection broke or its primary moved",
            ));
        }
        // As deadpool-redis does: drop any WATCH left behind, and check the line.
        let (pong,): (String,) = redis::pipe()
            .cmd("UNWATCH")
            .ignore()
            .cmd("PING")
            .query_async(&mut t.conn)
            .await?;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(managed::RecycleError::message("unexpected PING reply"))
        }
    }
}

/// The pool of a queue.
pub type Pool = managed::Pool<PoolManager>;

/// A connection from the pool; back to the pool when dropped. Use it as any Redis connection
/// (`AsyncCommands`, `invoke_async`, `query_async`).
pub struct PooledConnection {
    obj: managed::Object<PoolManager>,
    locator: Arc<Locator>,
}

impl PooledConnection {
    pub(crate) fn new(obj: managed::Object<PoolManager>, locator: Arc<Locator>) -> Self {
        Self { obj, locator }
    }

    /// A handle on this connection's socket, as a [`SharedConnection`] (what
    /// [`crate::queue::Queue::retrying`]'s operations take). Keep `self` alive while it is
    /// used, so the pool does not hand the socket to another caller meanwhile.
    pub fn handle(&self) -> SharedConnection {
        SharedConnection {
            conn: self.obj.conn.clone(),
            generation: self.obj.generation,
            broken: Arc::new(AtomicBool::new(false)),
            locator: self.locator.clone(),
        }
    }
}

/// Marks the connection's generation stale (and the connection broken) when `e` says the
/// primary may have moved.
fn watch(locator: &Locator, generation: u64, broken: &mut bool, e: &RedisError) {
    if crate::sentinel::primary_may_have_moved(e) {
        *broken = true;
        locator.saw(generation, e);
    }
}

/// The first error reply in a pipeline's answers, if any.
fn first_server_error(values: &[Value]) -> Option<RedisError> {
    values.iter().find_map(|v| match v {
        Value::ServerError(e) => Some(RedisError::from(e.clone())),
        _ => None,
    })
}

impl ConnectionLike for PooledConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let t: &mut Tracked = &mut self.obj;
            let res = t.conn.req_packed_command(cmd).await;
            match &res {
                Err(e) => watch(&self.locator, t.generation, &mut t.broken, e),
                Ok(Value::ServerError(e)) => watch(
                    &self.locator,
                    t.generation,
                    &mut t.broken,
                    &RedisError::from(e.clone()),
                ),
                Ok(_) => {}
            }
            res
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let t: &mut Tracked = &mut self.obj;
            let res = t.conn.req_packed_commands(pipeline, offset, count).await;
            match &res {
                Err(e) => watch(&self.locator, t.generation, &mut t.broken, e),
                Ok(values) => {
                    if let Some(e) = first_server_error(values) {
                        watch(&self.locator, t.generation, &mut t.broken, &e);
                    }
                }
            }
            res
        })
    }

    fn get_db(&self) -> i64 {
        self.obj.conn.get_db()
    }
}

/// The shared multiplexed connection of a queue. Cheap to clone; every clone talks over the
/// same socket.
#[derive(Clone)]
pub struct SharedConnection {
    conn: MultiplexedConnection,
    generation: u64,
    broken: Arc<AtomicBool>,
    locator: Arc<Locator>,
}

/// Where a queue keeps its shared connection between uses.
#[derive(Default)]
pub struct SharedSlot {
    /// The connection in use (read by every call: a lock held for a clone).
    current: std::sync::RwLock<Option<SharedConnection>>,
    /// Held while a new connection is made, so only one caller makes it.
    connecting: tokio::sync::Mutex<()>,
}

impl SharedSlot {
    /// The slot's connection if it may still be used.
    fn usable(&self, locator: &Locator) -> Option<SharedConnection> {
        let cur = self.current.read().unwrap_or_else(|e| e.into_inner());
        cur.as_ref()
            .filter(|c| !c.broken.load(Ordering::Acquire) && locator.is_current(c.generation))
            .cloned()
    }

    /// The shared connection, made (or made again, when the last one broke or its primary
    /// moved) with `cfg`.
    pub async fn get(
        &self,
        locator: &Arc<Locator>,
        cfg: &AsyncConnectionConfig,
    ) -> Result<SharedConnection, RedisError> {
        if let Some(c) = self.usable(locator) {
            return Ok(c);
        }
        let _making = self.connecting.lock().await;
        // Another caller may have made it while this one waited.
        if let Some(c) = self.usable(locator) {
            return Ok(c);
        }
        let (generation, conn) = locator.connect(cfg).await?;
        let c = SharedConnection {
            conn,
            generation,
            broken: Arc::new(AtomicBool::new(false)),
            locator: locator.clone(),
        };
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(c.clone());
        Ok(c)
    }
}

impl SharedConnection {
    fn watch(&self, e: &RedisError) {
        if crate::sentinel::primary_may_have_moved(e) {
            self.broken.store(true, Ordering::Release);
            self.locator.saw(self.generation, e);
        }
    }
}

impl ConnectionLike for SharedConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let res = self.conn.req_packed_command(cmd).await;
            match &res {
                Err(e) => self.watch(e),
                Ok(Value::ServerError(e)) => self.watch(&RedisError::from(e.clone())),
                Ok(_) => {}
            }
            res
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let res = self.conn.req_packed_commands(pipeline, offset, count).await;
            match &res {
                Err(e) => self.watch(e),
                Ok(values) => {
                    if let Some(e) = first_server_error(values) {
                        self.watch(&e);
                    }
                }
            }
            res
        })
    }

    fn get_db(&self) -> i64 {
        self.conn.get_db()
    }
}
