//! The HTTP bridge (warp): bots and people drive the queue over JSON.
//!
//! This module only wires the bridge together: how it is configured
//! ([`BridgeConfig`]), the state every handler shares (`State`), the filter
//! that serves it ([`routes`]) and the server ([`serve`]). It holds no route,
//! check or error of its own:
//!
//! - `table.rs` lists every route once (method, path, summary, query
//!   parameters, body schema, handler); `router.rs` serves that table and
//!   `openapi.rs` documents it (`/openapi.json`); `route.rs` is what a row
//!   and a handler's request (`Call`) are;
//! - `auth.rs` identifies the caller (`X-API-Key`, constant time; `X-Bot-Id`),
//!   `limits.rs` holds the per-bot request budget and the body cap, and
//!   `error.rs` turns every refusal into `{"error": ...}` with its status;
//! - the route families: `jobs.rs` (jobs, queue stats), `schedules.rs`,
//!   `fleet.rs` (health, workers, semaphore), `sse.rs` (`/events`),
//!   `runs.rs` (pipeline runs), `sessions.rs` (session routes),
//!   `experiments.rs` (experiments, history), `catalog.rs` (the zoo,
//!   registry sources, agents, prompts), `authored.rs` (the registry of
//!   authored components: write, remove, list, read), `market.rs` (prices, bars, the GBM
//!   fan), `hub.rs` (the Hugging Face Hub as a source: `/hf/*`),
//!   `results.rs` (results shared between miners), `models.rs` (champions per
//!   asset and prompt: read, ask for a promotion, roll back) and `dashboard.rs`;
//! - `session.rs` keeps what each bot owns in Redis (session, experiments,
//!   work in flight) and finds its runs; every family that reads or changes
//!   it goes through there.
//!
//! Rules every route follows:
//! - binding anything but loopback needs `BRIDGE_API_KEY`; every route but
//!   `/health`, `/dashboard` and `/openapi.json` needs a principal's key in
//!   `X-API-Key` (`auth.rs`): the operator's (`BRIDGE_API_KEY`, constant
//!   time) or one made by `synth-city bots add` (role `bot`, `read-only` or
//!   `operator`; looked up by its hash); keyless loopback callers are the
//!   operator only with `--loopback-operator`;
//! - the caller's bot is its key's; the operator is bot `default` with every
//!   right, or names in `X-Bot-Id` (`[A-Za-z0-9._-]{1,64}`) a bot to act as,
//!   with that bot's rights; a bot key naming another bot there is a 403; a read-only key gets 403 on every
//!   POST and DELETE; a bot sees and cancels only its own jobs, runs,
//!   experiments and session, and another bot's answers 404, exactly like one
//!   that does not exist (the operator reaches any job by id);
//! - bodies are JSON (`Content-Type: application/json`, 415 otherwise) of at most 1 MiB; errors are `{"error": ...}` with a 4xx
//!   that names the field or header at fault; each bot has a request budget
//!   per minute (429 with `Retry-After` when spent) and a number of open
//!   `/events` streams (429 beyond);
//! - connections: a header-read timeout, a cap on concurrent connections
//!   (`crate::http_server`); client disconnects are logged at debug.

mod agents;
mod auth;
mod authored;
mod catalog;
mod dashboard;
mod error;
mod experiments;
mod fleet;
mod hub;
mod jobs;
mod limits;
mod market;
mod method_override;
mod models;
mod openapi;
mod results;
mod route;
mod router;
mod runs;
mod schedules;
mod session;
mod sessions;
mod sse;
mod table;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use warp::Filter;

use engine::queue::Queue;

pub use crate::http_server::ConnLimits;

pub use auth::Peer;

pub use dashboard::PAGE as DASHBOARD_HTML;
pub use limits::MAX_BODY;
pub use table::{openapi, ROUTES};

/// How the bridge runs.
#[derive(Debug, Clone)]
pub struct BridgeConfig {
    pub addr: SocketAddr,
    pub api_key: Option<String>,
    /// Requests per minute per bot.
    pub rate_per_min: u32,
    /// Market data for the market routes (`SYNTH_DATA_DIR` wins). Runs and experiments
    /// started here name no directory: their workers use their own.
    pub data_dir: PathBuf,
    /// Header-read timeout, concurrent connections, shutdown drain.
    pub conn: ConnLimits,
    /// Concurrent `/events` streams per bot (429 beyond).
    pub sse_per_bot: usize,
    /// Requests without a key from a loopback peer act as the operator
    /// (`--loopback-operator`, `BRIDGE_LOOPBACK_OPERATOR`); off, they are refused (401).
    pub loopback_operator: bool,
}

/// A configuration the bridge refuses to start with.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "refusing to listen on {0} without BRIDGE_API_KEY: anyone who can reach it could \
         enqueue jobs. Set BRIDGE_API_KEY, or bind 127.0.0.1"
    )]
    PublicWithoutKey(SocketAddr),
    #[error("BRIDGE_API_KEY is set but empty: set it to a secret, or unset it and bind 127.0.0.1")]
    EmptyKey,
}

impl BridgeConfig {
    /// Refuses a public bind without an API key, and an empty key.
    pub fn check(&self) -> Result<(), ConfigError> {
        if !self.addr.ip().is_loopback() && self.api_key.is_none() {
            return Err(ConfigError::PublicWithoutKey(self.addr));
        }
        if self.api_key.as_deref() == Some("") {
            return Err(ConfigError::EmptyKey);
        }
        Ok(())
    }
}

/// What every handler shares.
struct State {
    queue: Queue,
    cfg: BridgeConfig,
    /// Each bot's request budget.
    budgets: limits::Budgets,
    auth_failures: limits::AuthFailures,
    /// Each bot's open `/events` streams.
    streams: limits::Streams,
    /// When each bot's session was last refreshed.
    activity: session::Activity,
    /// Idle sessions expire after this many seconds (`BRIDGE_SESSION_TTL_SECS`).
    session_ttl: u64,
    /// Market data.
    data_dir: PathBuf,
    /// Bars loaded, and the Pyth client.
    market: market::Market,
}

/// The routes, ready to serve.
pub fn routes(
    queue: Queue,
    cfg: BridgeConfig,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Infallible> + Clone {
    let state = Arc::new(State {
        queue,
        budgets: limits::Budgets::new(cfg.rate_per_min),
        auth_failures: limits::AuthFailures::new(),
        streams: limits::Streams::new(cfg.sse_per_bot),
        activity: session::Activity::default(),
        session_ttl: session::ttl_from_env(),
        data_dir: market::data_dir(&cfg.data_dir),
        market: market::Market::from_env(),
        cfg,
    });
    router::serve(table::TABLE, state)
        .recover(error::recover)
        .unify()
}

/// Serves until `shutdown`, through hyper under `cfg.conn`'s limits
/// ([`crate::http_server`]); open connections get `cfg.conn.drain` to finish.
pub async fn serve(
    queue: Queue,
    cfg: BridgeConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    cfg.check()?;
    let listener = tokio::net::TcpListener::bind(cfg.addr).await?;
    tracing::info!(addr = %cfg.addr, operator_key = cfg.api_key.is_some(),
        loopback_operator = cfg.loopback_operator,
        header_timeout_s = cfg.conn.header_read_timeout.as_secs_f64(),
        max_connections = cfg.conn.max_connections, sse_per_bot = cfg.sse_per_bot,
        "bridge listening");
    println!("bridge listening on http://{}", listener.local_addr()?);
    let limits = cfg.conn;
    let filter = routes(queue, cfg);
    crate::http_server::serve(
        listener,
        limits,
        move |remote| {
            hyper_util::service::TowerToHyperService::new(WithPeer {
                inner: warp::service(filter.clone()),
                peer: auth::Peer(remote),
            })
        },
        shutdown,
    )
    .await;
    Ok(())
}

/// A service that puts the connection's peer into each request's extensions (where
/// `auth::credentials` reads it) before `inner` answers.
#[derive(Clone)]
struct WithPeer<S> {
    inner: S,
    peer: auth::Peer,
}

impl<S, B> tower_service::Service<warp::http::Request<B>> for WithPeer<S>
where
    S: tower_service::Service<warp::http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: warp::http::Request<B>) -> Self::Future {
        req.extensions_mut().insert(self.peer);
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_bind_needs_a_key() {
        let mut cfg = BridgeConfig {
            addr: "0.0.0.0:8377".parse().unwrap(),
            api_key: None,
            rate_per_min: 60,
            data_dir: "data".into(),
            conn: ConnLimits::default(),
            sse_per_bot: 4,
            loopback_operator: false,
        };
        assert!(cfg
            .check()
            .unwrap_err()
            .to_string()
            .contains("BRIDGE_API_KEY"));
        cfg.api_key = Some("k".into());
        assert!(cfg.check().is_ok());
        cfg.api_key = Some(String::new());
        assert!(matches!(cfg.check(), Err(ConfigError::EmptyKey)));
        cfg.addr = "127.0.0.1:8377".parse().unwrap();
        cfg.api_key = None;
        assert!(cfg.check().is_ok());
    }
}
