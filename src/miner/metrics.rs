//! The miner's Prometheus metrics: requests by status, answer latency by prompt, answers by
//! what made them (the served model or the GBM), GBM fallbacks by reason (model error,
//! deadline, unusable output, no model), answers ready after the dendrite's timeout, where each
//! spot price came from, and model reloads. Served at `--metrics-addr`/metrics, never on the
//! axon port. Every known label value starts at zero, so `rate`, `increase` and the alerts in
//! `ops/prometheus/rules.yml` see the first event.
//!
//! This module only defines and renders the families; it does not serve them
//! ([`super::server::serve_metrics`] does) and decides nothing from them.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

/// The metric families of one miner.
#[derive(Clone)]
pub struct MinerMetrics {
    pub registry: Registry,
    pub requests: IntCounterVec,
    pub fallbacks: IntCounterVec,
    pub spot_source: IntCounterVec,
    pub reloads: IntCounterVec,
    pub answer_seconds: HistogramVec,
    /// Answers by `answered_by`: `model` (the served model) or `gbm` (the baseline, served
    /// by choice or as a fallback).
    pub answers: IntCounterVec,
    /// Answers whose body was ready only after the dendrite's own timeout, by prompt.
    pub late: IntCounterVec,
}

/// The `reason` label values of `sc_miner_fallbacks_total`.
pub const FALLBACK_REASONS: [&str; 4] = ["error", "output", "deadline", "no_model"];
/// The `prompt` label values of the latency families.
pub const PROMPTS: [&str; 3] = ["low", "high", "other"];

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
        let m = MinerMetrics {
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
            answers: counter(
                &r,
                "sc_miner_answers_total",
                "Answers by what made them: the served model or the GBM baseline",
                "answered_by",
            ),
            late: counter(
                &r,
                "sc_miner_late_answers_total",
                "Answers ready after the dendrite's timeout (the validator had given up), by prompt",
                "prompt",
            ),
            answer_seconds,
            registry: r,
        };
        for reason in FALLBACK_REASONS {
            m.fallbacks.with_label_values(&[reason]);
        }
        for by in ["model", "gbm"] {
            m.answers.with_label_values(&[by]);
        }
        for prompt in PROMPTS {
            m.late.with_label_values(&[prompt]);
            m.answer_seconds.with_label_values(&[prompt]);
        }
        for source in super::spot::SpotSource::LABELS {
            m.spot_source.with_label_values(&[source]);
        }
        m.requests.with_label_values(&["200"]);
        for outcome in ["ok", "failed"] {
            m.reloads.with_label_values(&[outcome]);
        }
        m
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        engine::metrics::render(&self.registry)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_label_starts_at_zero() {
        let text = MinerMetrics::new().render();
        for reason in FALLBACK_REASONS {
            let line = format!("sc_miner_fallbacks_total{{reason=\"{reason}\"}} 0");
            assert!(text.contains(&line), "{line} missing from:\n{text}");
        }
        for line in [
            "sc_miner_answers_total{answered_by=\"gbm\"} 0",
            "sc_miner_answers_total{answered_by=\"model\"} 0",
            "sc_miner_late_answers_total{prompt=\"high\"} 0",
            "sc_miner_answer_seconds_count{prompt=\"low\"} 0",
            "sc_miner_spot_source_total{source=\"binance\"} 0",
            "sc_miner_model_reloads_total{outcome=\"failed\"} 0",
            "sc_miner_requests_total{status=\"200\"} 0",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
    }
}
