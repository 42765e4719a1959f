//! Prometheus metrics of one worker process, served at `--metrics-addr`/metrics.
//!
//! Counters and histograms are updated by the worker as jobs move; the queue
//! gauges (depth, in flight, delayed, oldest age), the dead-letter stream's
//! length, the `pipeline` semaphore's permits and the number of live workers
//! are sampled from Redis, so every worker reports the fleet-wide view (sum the
//! counters over workers, take the `max` of the sampled gauges). The names are
//! listed in docs/observability.md; `ops/grafana/synth-city.json` and
//! `ops/prometheus/rules.yml` query them (tests/observability.rs checks they
//! return series).
//!
//! Does not: decide anything from the numbers, or serve anything but `/metrics`.

use std::net::SocketAddr;

use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// A registry's metrics in the Prometheus text exposition format (every process's
/// `/metrics`: a worker's, the miner's, the fleet's).
pub fn render(registry: &Registry) -> String {
    let mut buf = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut buf)
        .expect("text encoding cannot fail");
    String::from_utf8(buf).expect("prometheus text is utf-8")
}

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
    /// Jobs this worker runs at once (`--concurrency`).
    pub slots: IntGauge,
    /// Redis time of this worker's last successful heartbeat, in Unix seconds.
    pub heartbeat: Gauge,
    /// Workers whose registration has not expired (fleet-wide).
    pub workers_alive: IntGauge,
    /// Entries in the dead-letter stream (fleet-wide).
    pub dlq_length: IntGauge,
    /// Permits held (live leases) of a Redis semaphore, by `name` (fleet-wide).
    pub sem_in_use: IntGaugeVec,
    /// A Redis semaphore's limit, by `name`.
    pub sem_limit: IntGaugeVec,
    /// Holders waiting in a Redis semaphore's line, by `name`.
    pub sem_waiters: IntGaugeVec,
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), &["type"]).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGaugeVec {
    labelled_gauge(r, name, help, "type")
}

fn labelled_gauge(r: &Registry, name: &str, help: &str, label: &str) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), &[label]).expect("valid metric");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

fn plain_gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric");
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
            slots: plain_gauge(&r, "sc_worker_slots", "jobs this worker runs at once"),
            heartbeat: {
                let g = Gauge::new(
                    "sc_worker_heartbeat_timestamp_seconds",
                    "Redis time of this worker's last successful heartbeat",
                )
                .expect("valid metric");
                r.register(Box::new(g.clone())).expect("unique metric");
                g
            },
            workers_alive: plain_gauge(
                &r,
                "sc_workers_alive",
                "workers whose registration has not expired (fleet-wide)",
            ),
            dlq_length: plain_gauge(
                &r,
                "sc_dlq_length",
                "entries in the dead-letter stream (fleet-wide)",
            ),
            sem_in_use: labelled_gauge(
                &r,
                "sc_semaphore_permits_in_use",
                "permits held under a live lease (fleet-wide)",
                "name",
            ),
            sem_limit: labelled_gauge(
                &r,
                "sc_semaphore_permits_limit",
                "permits a semaphore hands out",
                "name",
            ),
            sem_waiters: labelled_gauge(
                &r,
                "sc_semaphore_waiters",
                "holders waiting in a semaphore's line (fleet-wide)",
                "name",
            ),
            registry: r,
        }
    }

    /// Creates every per-type series at zero for the types this worker runs, so a counter's
    /// first increment is seen as an increase (`rate`, `increase` and alerts need the zero)
    /// and every type has its series before its first job.
    pub fn init_types<S: AsRef<str>>(&self, types: &[S]) {
        for t in types {
            let t = [t.as_ref()];
            for c in [&self.processed, &self.failed, &self.retried, &self.dead] {
                c.with_label_values(&t);
            }
            self.in_flight.with_label_values(&t);
            self.wait_seconds.with_label_values(&t);
            self.run_seconds.with_label_values(&t);
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        render(&self.registry)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_starts_at_zero_and_the_fleet_gauges_are_exported() {
        let m = Metrics::new();
        m.init_types(&["noop", "sleep"]);
        m.slots.set(4);
        m.sem_limit.with_label_values(&["pipeline"]).set(10);
        let text = m.render();
        for line in [
            "sc_jobs_processed_total{type=\"noop\"} 0",
            "sc_jobs_dead_total{type=\"sleep\"} 0",
            "sc_job_wait_seconds_count{type=\"sleep\"} 0",
            "sc_worker_slots 4",
            "sc_workers_alive 0",
            "sc_dlq_length 0",
            "sc_worker_heartbeat_timestamp_seconds 0",
            "sc_semaphore_permits_limit{name=\"pipeline\"} 10",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
        assert!(!text.contains("type=\"train\""), "only the worker's types");
    }
}
