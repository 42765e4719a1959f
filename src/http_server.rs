//! Serving HTTP/1.1 (hyper) on a TCP listener with connection limits: a header-read timeout
//! (which also closes a keep-alive connection idle that long: hyper starts it whenever it waits
//! for a request's head), a cap on concurrent connections (a semaphore taken before `accept`:
//! beyond the cap, new connections wait in the kernel's listen backlog until one closes), and
//! a graceful stop that gives open connections a bounded time to finish.
//!
//! Connection errors are the client's doing (a reset, a broken pipe, a request cut off, a
//! header timeout, a malformed request) and are logged at debug, never at error.
//!
//! It knows no route and builds no response: the caller's service does (the bridge's warp
//! filter through [`warp::service`]; for [`serve_plain`], the caller's function of the path). It does not limit requests per caller (the bridge's
//! budgets do) nor body sizes (the service does).

use std::error::Error as StdError;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper::service::HttpService;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// How many connections, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// A client must send a request's whole head within this (and an idle keep-alive
    /// connection is closed after it).
    pub header_read_timeout: Duration,
    /// Connections served at once; beyond it, new ones wait in the listen backlog.
    pub max_connections: usize,
    /// On shutdown, how long open connections (an SSE stream never ends) get to finish.
    pub drain: Duration,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 1024,
            drain: Duration::from_secs(5),
        }
    }
}

/// Serves `listener` until `shutdown`: one hyper HTTP/1.1 connection per accepted socket, with
/// the service `make(remote)` returns, under `limits`. Returns once open connections have
/// finished or `limits.drain` has passed.
pub async fn serve<S, F>(
    listener: TcpListener,
    limits: ConnLimits,
    make: F,
    shutdown: CancellationToken,
) where
    F: Fn(SocketAddr) -> S,
    S: HttpService<Incoming> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    S::ResBody: Send + 'static,
    <S::ResBody as Body>::Data: Send,
    <S::ResBody as Body>::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let max = limits.max_connections.clamp(1, u32::MAX as usize);
    let slots = Arc::new(Semaphore::new(max));
    loop {
        // A slot first: at the cap, stop accepting (connections queue in the backlog).
        let slot = tokio::select! {
            _ = shutdown.cancelled() => break,
            s = slots.clone().acquire_owned() => s.expect("the semaphore is never closed"),
        };
        let (stream, remote) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors, or the like: back off rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let svc = make(remote);
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), svc);
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        log_connection_error(remote, &e);
                    }
                }
                _ = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(limits.drain, conn).await;
                }
            }
        });
    }
    drop(listener);
    // Every slot back means every connection has ended.
    let _ = tokio::time::timeout(limits.drain, slots.acquire_many(max as u32)).await;
}

/// Serves small plain answers (a health probe, Prometheus metrics) under [`serve`]:
/// `answer(path)` gives each request's status, content type and body; at most 16 connections,
/// a 10 s header timeout.
pub async fn serve_plain<F>(listener: TcpListener, answer: F, shutdown: CancellationToken)
where
    F: Fn(&str) -> (u16, &'static str, String) + Clone + Send + Sync + 'static,
{
    use http_body_util::Full;
    use hyper::body::Bytes;
    let limits = ConnLimits {
        max_connections: 16,
        ..Default::default()
    };
    serve(
        listener,
        limits,
        move |_| {
            let answer = answer.clone();
            hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                let (status, kind, body) = answer(req.uri().path());
                let res = hyper::Response::builder()
                    .status(status)
                    .header("content-type", kind)
                    .body(Full::new(Bytes::from(body)));
                async move { res }
            })
        },
        shutdown,
    )
    .await;
}

/// What ended a connection, at debug: every such error is the client's or the network's.
fn log_connection_error(remote: SocketAddr, e: &hyper::Error) {
    let why = if e.is_timeout() {
        "header read timeout"
    } else if e.is_incomplete_message() {
        "request cut off"
    } else if e.is_parse() || e.is_parse_status() {
        "malformed request"
    } else if e.is_canceled() || e.is_closed() {
        "closed"
    } else if e
        .source()
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .is_some()
    {
        "client went away"
    } else {
        "connection error"
    };
    tracing::debug!(%remote, why, error = %e, "connection ended");
}
