//! The autoscaler's decision: a pure function from what the fleet sees (trainer backlog, its
//! pods and their workers, the offerings, the balance, the spend so far) and its policy to
//! what to do (rent these, delete those) and why nothing more was done. No I/O: the leader
//! loop (`super::run`) gathers the inputs and carries the decision out.

use serde::Serialize;

use crate::basilica::Offering;

/// The trainer queues' backlog, summed over the watched job types.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Backlog {
    pub waiting: u64,
    pub in_flight: u64,
    /// Age of the oldest waiting-or-running entry, ms.
    pub oldest_ms: u64,
}

/// One of our pods, as the leader sees it this tick.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PodView {
    pub name: String,
    pub gpu_type: String,
    /// $/h of the whole pod.
    pub rate: f64,
    /// Basilica's phase: `Pending`, `Running`, `Failed`; `Gone` when Basilica no longer has it.
    pub phase: String,
    /// When we rented it (Redis clock, ms).
    pub created_ms: u64,
    /// Last time its worker had a job, or the rent time (ms).
    pub last_busy_ms: u64,
    /// Its worker's heartbeat is live.
    pub worker_live: bool,
    /// Jobs its worker runs now.
    pub in_flight: u32,
    /// Pinned by an operator (`fleet rent`): never deleted for idleness.
    pub manual: bool,
}

/// What the fleet may do.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Policy {
    /// GPU types it may rent (`BASILICA_ALLOWED_GPU_TYPES`); empty: any.
    pub allowed_gpu_types: Vec<String>,
    /// Most $/h per GPU (`BASILICA_MAX_HOURLY_RATE`).
    pub max_rate_per_gpu: f64,
    /// Most $/h for all pods together.
    pub budget_per_hour: f64,
    /// Most $ spent in a (UTC) day.
    pub budget_per_day: f64,
    /// GPUs per pod.
    pub gpus_per_pod: u32,
    /// Jobs one pod's worker runs at once.
    pub jobs_per_pod: u32,
    /// Most pods at once.
    pub max_pods: u32,
    /// A pod whose worker had no job this long is deleted (ms).
    pub idle_ms: u64,
    /// How long a pod may take from rent to a live worker before it counts as failed (ms).
    pub startup_grace_ms: u64,
}

/// A pod to rent.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rent {
    pub offering_id: String,
    pub gpu_type: String,
    pub gpu_count: u32,
    /// $/h of the pod.
    pub rate: f64,
}

/// A pod to delete, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Delete {
    pub name: String,
    pub reason: String,
}

/// What to do this tick.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Decision {
    pub rent: Vec<Rent>,
    pub delete: Vec<Delete>,
    /// Pods the backlog wants beyond the healthy ones.
    pub wanted: u32,
    /// Why fewer were rented than wanted (empty when none were held back).
    pub blocked: Vec<String>,
}

/// Everything the decision reads.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Inputs<'a> {
    pub now_ms: u64,
    pub backlog: Backlog,
    pub pods: &'a [PodView],
    pub offerings: &'a [Offering],
    /// The account's balance, when known.
    pub balance: Option<f64>,
    /// Spent today so far ($).
    pub spent_today: f64,
}

fn allowed(policy: &Policy, gpu_type: &str) -> bool {
    policy.allowed_gpu_types.is_empty()
        || policy
            .allowed_gpu_types
            .iter()
            .any(|t| t.eq_ignore_ascii_case(gpu_type))
}

/// The cheapest offering the policy allows for one pod, or why there is none.
pub fn pick_offering<'o>(
    policy: &Policy,
    offerings: &'o [Offering],
    gpu_type: Option<&str>,
) -> Result<&'o Offering, String> {
    if let Some(t) = gpu_type.filter(|t| !allowed(policy, t)) {
        return Err(format!(
            "GPU type not allowed: {t} is not in BASILICA_ALLOWED_GPU_TYPES ({})",
            policy.allowed_gpu_types.join(",")
        ));
    }
    let mut fits: Vec<&Offering> = offerings
        .iter()
        .filter(|o| o.availability && o.gpu_count == policy.gpus_per_pod.max(1))
        .filter(|o| match gpu_type {
            Some(t) => o.gpu_type.eq_ignore_ascii_case(t),
            None => allowed(policy, &o.gpu_type),
        })
        .collect();
    if fits.is_empty() {
        let types = match gpu_type {
            Some(t) => t.to_string(),
            None if policy.allowed_gpu_types.is_empty() => "any type".into(),
            None => policy.allowed_gpu_types.join(","),
        };
        return Err(format!(
            "GPU type not offered: no available {}-GPU offering of {types} (BASILICA_ALLOWED_GPU_TYPES); offered: {}",
            policy.gpus_per_pod.max(1),
            offered(offerings)
        ));
    }
    fits.retain(|o| o.rate_per_gpu() <= policy.max_rate_per_gpu + 1e-9);
    fits.sort_by(|a, b| a.hourly_rate.total_cmp(&b.hourly_rate));
    fits.first().copied().ok_or_else(|| {
        format!(
            "price above BASILICA_MAX_HOURLY_RATE ${:.2}/GPU/h: the allowed offerings cost more",
            policy.max_rate_per_gpu
        )
    })
}

fn offered(offerings: &[Offering]) -> String {
    let mut v: Vec<String> = offerings
        .iter()
        .filter(|o| o.availability)
        .map(|o| format!("{}x{} ${:.2}/h", o.gpu_count, o.gpu_type, o.hourly_rate))
        .collect();
    v.sort();
    v.dedup();
    if v.is_empty() {
        "nothing".into()
    } else {
        v.join(", ")
    }
}

/// Whether renting one more pod at `rate` keeps within the budgets and the balance, given the
/// pods' rate now; `Err` names the limit.
pub fn affordable(
    policy: &Policy,
    rate_now: f64,
    rate: f64,
    spent_today: f64,
    balance: Option<f64>,
) -> Result<(), String> {
    if rate_now + rate > policy.budget_per_hour + 1e-9 {
        return Err(format!(
            "hourly budget: ${:.2}/h running + ${rate:.2}/h would pass ${:.2}/h",
            rate_now, policy.budget_per_hour
        ));
    }
    // a pod is paid for by the hour: the day must hold the next hour of every pod
    if spent_today + rate_now + rate > policy.budget_per_day + 1e-9 {
        return Err(format!(
            "daily budget: ${spent_today:.2} spent today + ${:.2} for the next hour would pass ${:.2}",
            rate_now + rate,
            policy.budget_per_day
        ));
    }
    if let Some(b) = balance {
        if b < rate_now + rate {
            return Err(format!(
                "balance too low: ${b:.2} does not cover an hour of ${:.2}/h",
                rate_now + rate
            ));
        }
    }
    Ok(())
}

/// The decision for one tick.
pub fn decide(policy: &Policy, input: &Inputs<'_>) -> Decision {
    let mut d = Decision::default();
    let now = input.now_ms;
    let mut healthy: Vec<&PodView> = Vec::new();

    // the day's budget is spent: every pod goes, manual ones too
    if input.spent_today >= policy.budget_per_day - 1e-9 && !input.pods.is_empty() {
        for p in input.pods {
            d.delete.push(Delete {
                name: p.name.clone(),
                reason: format!(
                    "daily budget ${:.2} spent (${:.2})",
                    policy.budget_per_day, input.spent_today
                ),
            });
        }
        d.blocked.push(format!(
            "daily budget: ${:.2} of ${:.2} spent",
            input.spent_today, policy.budget_per_day
        ));
        return d;
    }

    for p in input.pods {
        let age = now.saturating_sub(p.created_ms);
        let reason = match p.phase.as_str() {
            "Gone" => Some("gone from Basilica".to_string()),
            "Failed" | "Error" | "Terminated" => Some(format!("phase {}", p.phase)),
            _ if !p.worker_live && age > policy.startup_grace_ms => {
                Some(format!("no worker heartbeat {}s after rent", age / 1000))
            }
            _ => None,
        };
        if let Some(reason) = reason {
            d.delete.push(Delete {
                name: p.name.clone(),
                reason: format!("unhealthy: {reason}; replaced if the work needs it"),
            });
            continue;
        }
        let idle_for = now.saturating_sub(p.last_busy_ms);
        if !p.manual
            && p.worker_live
            && p.in_flight == 0
            && input.backlog.waiting == 0
            && idle_for >= policy.idle_ms
        {
            d.delete.push(Delete {
                name: p.name.clone(),
                reason: format!("idle {}s", idle_for / 1000),
            });
            continue;
        }
        healthy.push(p);
    }

    let per_pod = policy.jobs_per_pod.max(1) as u64;
    let work = input.backlog.waiting + input.backlog.in_flight;
    let need = work.div_ceil(per_pod).min(policy.max_pods as u64) as u32;
    let have = healthy.len() as u32;
    d.wanted = need.saturating_sub(have);
    if d.wanted == 0 {
        return d;
    }
    let mut rate_now: f64 = healthy.iter().map(|p| p.rate).sum();
    let offering = match pick_offering(policy, input.offerings, None) {
        Ok(o) => o,
        Err(why) => {
            d.blocked.push(why);
            return d;
        }
    };
    for _ in 0..d.wanted {
        match affordable(
            policy,
            rate_now,
            offering.hourly_rate,
            input.spent_today,
            input.balance,
        ) {
            Ok(()) => {
                rate_now += offering.hourly_rate;
                d.rent.push(Rent {
                    offering_id: offering.id.clone(),
                    gpu_type: offering.gpu_type.clone(),
                    gpu_count: offering.gpu_count,
                    rate: offering.hourly_rate,
                });
            }
            Err(why) => {
                d.blocked.push(why);
                break;
            }
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            allowed_gpu_types: vec!["A4000".into(), "RTX4090".into()],
            max_rate_per_gpu: 1.0,
            budget_per_hour: 2.5,
            budget_per_day: 40.0,
            gpus_per_pod: 1,
            jobs_per_pod: 1,
            max_pods: 10,
            idle_ms: 60_000,
            startup_grace_ms: 120_000,
        }
    }

    fn offer(id: &str, t: &str, rate: f64) -> Offering {
        Offering {
            id: id.into(),
            provider: "p".into(),
            gpu_type: t.into(),
            gpu_count: 1,
            gpu_memory_gb_per_gpu: Some(16),
            hourly_rate: rate,
            hourly_rate_per_gpu: None,
            availability: true,
            region: "eu".into(),
        }
    }

    fn pod(name: &str, phase: &str, live: bool, in_flight: u32, busy: u64) -> PodView {
        PodView {
            name: name.into(),
            gpu_type: "A4000".into(),
            rate: 0.8,
            phase: phase.into(),
            created_ms: 0,
            last_busy_ms: busy,
            worker_live: live,
            in_flight,
            manual: false,
        }
    }

    fn input<'a>(
        waiting: u64,
        pods: &'a [PodView],
        offerings: &'a [Offering],
        now_ms: u64,
    ) -> Inputs<'a> {
        Inputs {
            now_ms,
            backlog: Backlog {
                waiting,
                in_flight: 0,
                oldest_ms: 0,
            },
            pods,
            offerings,
            balance: Some(100.0),
            spent_today: 0.0,
        }
    }

    #[test]
    fn a_backlog_rents_the_cheapest_allowed_offering_up_to_the_hourly_budget() {
        let offers = [
            offer("h", "H100", 0.5), // cheapest, not allowed
            offer("a", "A4000", 0.8),
            offer("r", "RTX4090", 0.9),
        ];
        let d = decide(&policy(), &input(6, &[], &offers, 0));
        assert_eq!(d.wanted, 6);
        assert_eq!(d.rent.len(), 3, "3 x 0.8 = 2.4 <= 2.5: {d:?}");
        assert!(d.rent.iter().all(|r| r.offering_id == "a"));
        assert!(d.blocked[0].contains("hourly budget"), "{:?}", d.blocked);
    }

    #[test]
    fn running_pods_count_against_need_and_budget() {
        let offers = [offer("a", "A4000", 0.8)];
        let pods = [
            pod("p1", "Running", true, 1, 0),
            pod("p2", "Pending", false, 0, 0),
        ];
        let d = decide(&policy(), &input(2, &pods, &offers, 1000));
        // need 2 (2 waiting), have 2
        assert_eq!(d.wanted, 0);
        assert!(d.rent.is_empty() && d.delete.is_empty());
        let d = decide(&policy(), &input(5, &pods, &offers, 1000));
        assert_eq!(d.wanted, 3);
        assert_eq!(
            d.rent.len(),
            1,
            "1.6 running + 0.8 = 2.4; a second would pass 2.5"
        );
    }

    #[test]
    fn idle_pods_are_deleted_only_without_waiting_work_and_never_when_manual() {
        let offers = [offer("a", "A4000", 0.8)];
        let mut manual = pod("m", "Running", true, 0, 0);
        manual.manual = true;
        let pods = [
            pod("idle", "Running", true, 0, 0),
            pod("busy", "Running", true, 1, 0),
            pod("fresh", "Running", true, 0, 50_000),
            manual,
        ];
        let d = decide(&policy(), &input(0, &pods, &offers, 61_000));
        let names: Vec<&str> = d.delete.iter().map(|x| x.name.as_str()).collect();
        assert_eq!(names, ["idle"]);
        assert!(d.delete[0].reason.starts_with("idle"));
        let d = decide(&policy(), &input(1, &pods, &offers, 61_000));
        assert!(d.delete.is_empty(), "waiting work keeps idle pods: {d:?}");
    }

    #[test]
    fn failed_and_silent_pods_are_replaced() {
        let offers = [offer("a", "A4000", 0.8)];
        let pods = [
            pod("failed", "Failed", false, 0, 0),
            pod("silent", "Running", false, 0, 0),
            pod("starting", "Pending", false, 0, 0),
        ];
        let d = decide(&policy(), &input(2, &pods, &offers, 121_000));
        let names: Vec<&str> = d.delete.iter().map(|x| x.name.as_str()).collect();
        assert_eq!(names, ["failed", "silent", "starting"]);
        assert_eq!(d.rent.len(), 2, "replacements within budget: {d:?}");
        let d = decide(&policy(), &input(2, &pods[2..], &offers, 1000));
        assert!(d.delete.is_empty(), "a pod in its startup grace stays");
        assert_eq!(d.rent.len(), 1);
    }

    #[test]
    fn no_offering_price_or_balance_blocks_with_the_cause() {
        let d = decide(&policy(), &input(1, &[], &[offer("h", "H100", 0.5)], 0));
        assert!(d.rent.is_empty());
        assert!(d.blocked[0].contains("GPU type not offered"), "{d:?}");
        assert!(d.blocked[0].contains("1xH100"), "{d:?}");
        let d = decide(&policy(), &input(1, &[], &[offer("a", "A4000", 1.5)], 0));
        assert!(d.blocked[0].contains("BASILICA_MAX_HOURLY_RATE"), "{d:?}");
        let offers = [offer("a", "A4000", 0.8)];
        let mut i = input(1, &[], &offers, 0);
        i.balance = Some(0.5);
        let d = decide(&policy(), &i);
        assert!(d.rent.is_empty());
        assert!(d.blocked[0].contains("balance too low"), "{d:?}");
    }

    #[test]
    fn a_type_asked_for_by_name_must_be_allowed_and_offered() {
        let offers = [offer("a", "A4000", 0.8), offer("h", "H100", 0.9)];
        let o = pick_offering(&policy(), &offers, Some("a4000")).unwrap();
        assert_eq!(o.id, "a");
        let e = pick_offering(&policy(), &offers, Some("H100")).unwrap_err();
        assert!(
            e.starts_with("GPU type not allowed: H100 is not in BASILICA_ALLOWED_GPU_TYPES"),
            "{e}"
        );
        let e = pick_offering(&policy(), &offers, Some("RTX4090")).unwrap_err();
        assert!(e.starts_with("GPU type not offered"), "{e}");
        let mut any = policy();
        any.allowed_gpu_types.clear();
        assert_eq!(pick_offering(&any, &offers, Some("H100")).unwrap().id, "h");
    }

    #[test]
    fn the_day_budget_is_never_passed() {
        let offers = [offer("a", "A4000", 0.8)];
        let mut i = input(3, &[], &offers, 0);
        i.spent_today = 38.5;
        let d = decide(&policy(), &i);
        assert_eq!(d.rent.len(), 1, "38.5 + 0.8 <= 40, + 1.6 > 40: {d:?}");
        assert!(d.blocked[0].contains("daily budget"));
        let pods = [pod("p", "Running", true, 1, 0)];
        let mut i = input(3, &pods, &offers, 0);
        i.spent_today = 40.0;
        let d = decide(&policy(), &i);
        assert_eq!(d.delete.len(), 1, "a spent day stops every pod: {d:?}");
        assert!(d.rent.is_empty());
    }

    #[test]
    fn max_pods_and_jobs_per_pod_bound_the_need() {
        let offers = [offer("a", "A4000", 0.1)];
        let mut p = policy();
        p.jobs_per_pod = 4;
        p.max_pods = 2;
        let d = decide(&p, &input(5, &[], &offers, 0));
        assert_eq!(d.wanted, 2);
        let d = decide(&p, &input(50, &[], &offers, 0));
        assert_eq!(d.wanted, 2);
        assert_eq!(d.rent.len(), 2);
    }
}
