//! How a pod's spend is shared among pipeline runs: the dollars of one accounting interval
//! go in equal shares to the jobs the pod holds at the tick, and a run gets the shares of its
//! jobs. A pure function; the fleet records the result (`fleet:spend:runs`).
//!
//! It does not sample more often than the fleet ticks (a job that started and ended between
//! two ticks is not seen), and jobs with no run (a bot's `experiment`, an operator's job)
//! leave their share attributed to the pod only.

use std::collections::BTreeMap;

/// The runs' shares of `dollars`, spent by a pod holding jobs of `runs` (one entry per job
/// held: its envelope's run id, `None` for a job outside a run). Nothing when it held no job.
pub fn split_by_run(dollars: f64, runs: &[Option<String>]) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    if runs.is_empty() || dollars.is_nan() || dollars <= 0.0 {
        return out;
    }
    let share = dollars / runs.len() as f64;
    for run in runs.iter().flatten() {
        *out.entry(run.clone()).or_insert(0.0) += share;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> Option<String> {
        Some(s.to_string())
    }

    #[test]
    fn one_job_of_one_run_gets_it_all() {
        let s = split_by_run(0.5, &[r("run-a")]);
        assert_eq!(s.len(), 1);
        assert!((s["run-a"] - 0.5).abs() < 1e-12);
    }

    #[test]
    fn shares_follow_the_jobs_held() {
        // three jobs: two of run a, one of run b
        let s = split_by_run(0.9, &[r("a"), r("b"), r("a")]);
        assert!((s["a"] - 0.6).abs() < 1e-12, "{s:?}");
        assert!((s["b"] - 0.3).abs() < 1e-12, "{s:?}");
        let total: f64 = s.values().sum();
        assert!((total - 0.9).abs() < 1e-12);
    }

    #[test]
    fn a_job_outside_a_run_keeps_its_share_off_every_run() {
        let s = split_by_run(1.0, &[r("a"), None]);
        assert_eq!(s.len(), 1);
        assert!((s["a"] - 0.5).abs() < 1e-12, "{s:?}");
        assert!(split_by_run(1.0, &[None, None]).is_empty());
    }

    #[test]
    fn an_idle_pod_or_no_dollars_charges_no_run() {
        assert!(split_by_run(1.0, &[]).is_empty());
        assert!(split_by_run(0.0, &[r("a")]).is_empty());
        assert!(split_by_run(f64::NAN, &[r("a")]).is_empty());
    }
}
