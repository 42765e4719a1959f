//! Prometheus gauges of a `synth-city fleet run` process, served at `--metrics-addr`/metrics:
//! whether it leads, and from the leader's last report, the pods by phase, $/h now, spend
//! today, what is left of today's budget, the balance and the pods the backlog still wants.
//! A standby reports `sc_fleet_leader 0` and the report it last saw as leader (take the
//! leader's series: `sc_fleet_leader == 1`). Names in docs/observability.md.
//!
//! Does not: decide anything from the numbers.

use prometheus::{Gauge, IntGauge, IntGaugeVec, Opts, Registry};

use super::FleetStatus;

/// The fleet's gauges.
#[derive(Clone)]
pub struct FleetMetrics {
    registry: Registry,
    leader: IntGauge,
    pods: IntGaugeVec,
    rate: Gauge,
    spent_today: Gauge,
    budget_left_today: Gauge,
    balance: Gauge,
    wanted: IntGauge,
}

impl Default for FleetMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl FleetMetrics {
    pub fn new() -> Self {
        let r = Registry::new();
        let leader = IntGauge::new("sc_fleet_leader", "1 while this fleet process leads")
            .expect("valid metric");
        let pods = IntGaugeVec::new(
            Opts::new("sc_fleet_pods", "GPU trainer pods by Basilica phase"),
            &["phase"],
        )
        .expect("valid metric");
        let rate = Gauge::new(
            "sc_fleet_rate_dollars_per_hour",
            "what the pods cost per hour now",
        )
        .expect("valid metric");
        let spent_today = Gauge::new("sc_fleet_spend_today_dollars", "spent on pods today (UTC)")
            .expect("valid metric");
        let budget_left_today = Gauge::new(
            "sc_fleet_budget_left_today_dollars",
            "what is left of today's budget",
        )
        .expect("valid metric");
        let balance =
            Gauge::new("sc_fleet_balance_dollars", "the Basilica balance").expect("valid metric");
        let wanted = IntGauge::new(
            "sc_fleet_wanted_pods",
            "pods the backlog wants beyond those rented (held back by the budget, balance or offerings)",
        )
        .expect("valid metric");
        for c in [
            Box::new(leader.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(pods.clone()),
            Box::new(rate.clone()),
            Box::new(spent_today.clone()),
            Box::new(budget_left_today.clone()),
            Box::new(balance.clone()),
            Box::new(wanted.clone()),
        ] {
            r.register(c).expect("unique metric names");
        }
        FleetMetrics {
            registry: r,
            leader,
            pods,
            rate,
            spent_today,
            budget_left_today,
            balance,
            wanted,
        }
    }

    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// The gauges from a leader's report.
    pub fn observe(&self, s: &FleetStatus) {
        self.pods.reset();
        for phase in ["Pending", "Running", "Failed"] {
            self.pods.with_label_values(&[phase]).set(0);
        }
        for p in &s.pods {
            self.pods.with_label_values(&[p.phase.as_str()]).inc();
        }
        self.rate.set(s.rate_now);
        self.spent_today.set(s.spent_today);
        self.budget_left_today
            .set((s.budget_per_day - s.spent_today).max(0.0));
        if let Some(b) = s.balance {
            self.balance.set(b);
        }
        self.wanted.set(s.wanted as i64);
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        engine::metrics::render(&self.registry)
    }
}
