//! Prometheus metrics of one worker process, served at `--metrics-addr`/metrics.
//!
//! Counters and histograms are updated by the worker as jobs move; the queue
//! gauges (depth, in flight, delayed, oldest age) are sampled from Redis, so
//! every worker reports the fleet-wide view of the types it runs.

use std::net::SocketAddr;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};
use warp::Filter;

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

    /// Serves `/metrics` on its own thread until `shutdown` fires. (warp 0.4's
    /// server future cannot be proven `Send`, so it gets a current-thread runtime
    /// rather than a `tokio::spawn`.) Returns once the port is bound.
    pub fn spawn_server(
        self,
        addr: SocketAddr,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        tracing::info!(%addr, "metrics listening");
        Ok(std::thread::spawn(move || {
            rt.block_on(async move {
                match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => self.serve(l, shutdown).await,
                    Err(e) => tracing::error!(%e, "metrics listener failed"),
                }
            });
        }))
    }

    async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        let route = warp::path("metrics").and(warp::path::end()).map(
            move || -> warp::http::Response<String> {
                let mut res = warp::http::Response::new(self.render());
                res.headers_mut().insert(
                    warp::http::header::CONTENT_TYPE,
                    warp::http::HeaderValue::from_static(
                        "text/plain; version=0.0.4; charset=utf-8",
                    ),
                );
                res
            },
        );
        warp::serve(route)
            .incoming(listener)
            .graceful(async move { shutdown.cancelled().await })
            .run()
            .await;
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
