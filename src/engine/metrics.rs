//! Prometheus metrics of one worker process, served at `--metrics-addr`/metrics.
//!
//! Counters and histograms are updated by the worker as jobs move; the queue
//! gauges (depth, in flight, delayed, oldest age) are sampled from Redis, so
//! every worker reports the fleet-wide view of the types it runs.

use std::net::SocketAddr;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// The metric families of a worker.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub processed: IntCounterVec,
    pub failed: IntCounterVec,
    pub retried: IntCounterVec,
    pub dead: IntCounterVec,
    pub in_flight: IntGaugeVec,
    pub queue_depth: IntGaugeVec,
    pub queue_in_flight: IntGaugeVec,
    pub queue_delayed: IntGaugeVec,
    pub queue_oldest: IntGaugeVec,
    pub wait_seconds: HistogramVec,
    pub run_seconds: HistogramVec,
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), &["type"]).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), &["type"]).expect("valid metric");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

fn histogram(r: &Registry, name: &str, help: &str) -> HistogramVec {
    let buckets = vec![
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
        300.0, 1800.0, 7200.0,
    ];
    let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), &["type"])
        .expect("valid metric");
    r.register(Box::new(h.clone())).expect("unique metric");
    h
}

impl Metrics {
    pub fn new() -> Self {
        let r = Registry::new();
        Self {
            processed: counter(
                &r,
                "sc_jobs_processed_total",
                "jobs completed by this worker",
            ),
            failed: counter(&r, "sc_jobs_failed_total", "failed attempts in this worker"),
            retried: counter(
                &r,
                "sc_jobs_retried_total",
                "failed attempts scheduled for retry",
            ),
            dead: counter(&r, "sc_jobs_dead_total", "jobs this worker dead-lettered"),
            in_flight: gauge(&r, "sc_jobs_in_flight", "jobs running in this worker"),
            queue_depth: gauge(
                &r,
                "sc_queue_waiting",
                "jobs waiting on the stream (fleet-wide)",
            ),
            queue_in_flight: gauge(
                &r,
                "sc_queue_in_flight",
                "delivered, unacked jobs (fleet-wide)",
            ),
            queue_delayed: gauge(
                &r,
                "sc_queue_delayed",
                "jobs waiting for a retry or a run time",
            ),
            queue_oldest: gauge(
                &r,
                "sc_queue_oldest_ms",
                "age of the oldest entry on the stream",
            ),
            wait_seconds: histogram(&r, "sc_job_wait_seconds", "enqueue (or ready) to start"),
            run_seconds: histogram(&r, "sc_job_run_seconds", "handler run time"),
            registry: r,
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding cannot fail");
        String::from_utf8(buf).expect("prometheus text is utf-8")
    }

    /// Serves `/metrics` until `shutdown` fires (any other path answers 404). Returns once the
    /// port is bound; the server runs as a task of the current runtime.
    pub async fn spawn_server(
        self,
        addr: SocketAddr,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> std::io::Result<tokio::task::JoinHandle<()>> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        tracing::info!(%addr, "metrics listening");
        Ok(tokio::spawn(self.serve(listener, shutdown)))
    }

    async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        use http_body_util::Full;
        use hyper::{body::Bytes, Response, StatusCode};
        loop {
            let stream = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = listener.accept() => match r {
                    Ok((s, _)) => s,
                    Err(e) => {
                        tracing::debug!(%e, "metrics accept failed");
                        continue;
                    }
                },
            };
            let metrics = self.clone();
            let service =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let res = if req.uri().path() == "/metrics" {
                        Response::builder()
                            .header("content-type", "text/plain; version=0.0.4; charset=utf-8")
                            .body(Full::new(Bytes::from(metrics.render())))
                    } else {
                        Response::builder()
                            .status(StatusCode::NOT_FOUND)
                            .body(Full::new(Bytes::from_static(b"not found; try /metrics\n")))
                    };
                    async move { res }
                });
            let io = hyper_util::rt::TokioIo::new(stream);
            let stop = shutdown.clone();
            tokio::spawn(async move {
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(std::time::Duration::from_secs(10))
                    .serve_connection(io, service);
                tokio::pin!(conn);
                tokio::select! {
                    r = conn.as_mut() => if let Err(e) = r { tracing::debug!(%e, "metrics connection"); },
                    _ = stop.cancelled() => conn.as_mut().graceful_shutdown(),
                }
            });
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
