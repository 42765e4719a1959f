//! synth-city's queue core: the Redis-streams job queue ([`queue`]), the worker runtime
//! ([`worker`]), one Lua script per atomic step ([`scripts`]), the counting semaphore
//! ([`semaphore`]), cron schedules ([`scheduler`]), migrations ([`migrate`]), the key layout
//! ([`keys`]), Prometheus metrics ([`metrics`]), the queue benchmark ([`bench`]), where Redis is
//! and how to reach it over TLS ([`config`]) or through Redis Sentinel ([`sentinel`], [`connection`]), the per-role Redis ACL users ([`acl`]), the
//! bridge's principals, each with its own API key and role ([`principals`]) and the store of
//! authored components ([`registry`]).
//!
//! It knows nothing of forecasting: job types and payloads come from the `jobs` crate and
//! handlers are registered by the binary. It does not depend on candle, warp or any object
//! store, and its tests need only a redis-server.

pub mod acl;
pub mod bench;
pub mod builtin;
pub mod config;
pub mod connection;
pub mod keys;
pub mod metrics;
pub mod migrate;
pub mod principals;
pub mod queue;
pub mod registry;
pub mod scheduler;
pub mod scripts;
pub mod semaphore;
pub mod sentinel;
pub mod worker;

pub use queue::{EnqueueRequest, Queue, QueueError};
pub use worker::{Worker, WorkerOptions};
