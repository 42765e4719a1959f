//! The miner's Prometheus metrics: requests by status, answer latency by prompt, GBM fallbacks
//! by reason (model error, deadline, unusable output, no model), where each spot price came from,
//! and model reloads. Served at `--metrics-addr`/metrics, never on the axon port.
//!
//! This module only defines and renders the families; it does not serve them
//! ([`super::server::serve_metrics`] does) and decides nothing from them.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

/// The metric families of one miner.
#[derive(Clone)]
pub struct MinerMetrics {
    pub registry: Registry,
    pub requests: IntCounterVec,
    pub fallbacks: IntCounterVec,
    pub spot_source: IntCounterVec,
    pub reloads: IntCounterVec,
    pub answer_seconds: HistogramVec,
}

fn counter(r: &Registry, name: &str, help: &str, label: &str) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), &[label]).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

impl MinerMetrics {
    pub fn new() -> Self {
        let r = Registry::new();
        let answer_seconds = HistogramVec::new(
            HistogramOpts::new(
                "sc_miner_answer_seconds",
                "Time from the request's headers to the answer's body being ready, by prompt",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
            ]),
            &["prompt"],
        )
        .expect("valid metric");
        r.register(Box::new(answer_seconds.clone()))
            .expect("unique metric");
        MinerMetrics {
            requests: counter(
                &r,
                "sc_miner_requests_total",
                "Axon requests by HTTP status",
                "status",
            ),
            fallbacks: counter(
                &r,
                "sc_miner_fallbacks_total",
                "Answers made by the GBM baseline instead of the served model, by reason",
                "reason",
            ),
            spot_source: counter(
                &r,
                "sc_miner_spot_source_total",
                "Where the spot price of an answer came from",
                "source",
            ),
            reloads: counter(
                &r,
                "sc_miner_model_reloads_total",
                "Attempts to load a newly published production model, by outcome",
                "outcome",
            ),
            answer_seconds,
            registry: r,
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding cannot fail");
        String::from_utf8(buf).expect("prometheus text is utf-8")
    }

    /// The count of one label value of a counter (tests, logs).
    pub fn count(c: &IntCounterVec, label: &str) -> u64 {
        c.with_label_values(&[label]).get()
    }
}

impl Default for MinerMetrics {
    fn default() -> Self {
        Self::new()
    }
}
