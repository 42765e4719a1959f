//! The fleet as the agents' pod tools and the bridge's `/fleet` routes see it: an
//! [`agents::pods::PodDesk`] over the Basilica client and [`Fleet`], bound to one caller.
//!
//! Every rental goes through [`Fleet::rent_checked`], the path `fleet rent` takes (allowed GPU
//! types, price cap, hourly and daily budgets, balance), and becomes a fleet pod like any
//! other (its record in `fleet:pods`; the autoscaler deletes it once it idles unless it is
//! pinned). Who may do what:
//!
//! - every caller lists the offerings, the budgets and the fleet's pods;
//! - a pod belongs to the bot it was rented for (an agent's run's bot, or the bot of a
//!   `POST /fleet/pods`), and to the run that rented it: the caller may delete it and read its
//!   logs when it is the caller's run's or the caller's bot's;
//! - the operator may delete any pod and read any pod's logs; its rentals through the bridge
//!   are pinned and belong to no bot (as `fleet rent`'s);
//! - the autoscaler's pods belong to no bot: only the operator deletes them by hand.
//!
//! It does not decide when pods come and go (the leader does) and keeps no state of its own.

use agents::pods::{PodBudget, PodDesk, PodError, PodInfo, PodOffering};

use super::{read_spent_on, Fleet, FleetError, PodRecord, Renter};
use crate::basilica::{check_name, BasilicaError};

/// One caller's desk.
#[derive(Clone)]
pub struct FleetDesk {
    pub fleet: Fleet,
    /// Whom its rentals are for.
    pub renter: Renter,
    /// The operator: may delete any pod and read any pod's logs.
    pub operator: bool,
}

fn unavailable(e: impl std::fmt::Display) -> PodError {
    PodError::Unavailable(e.to_string())
}

impl From<FleetError> for PodError {
    fn from(e: FleetError) -> Self {
        match e {
            FleetError::Rule(m) => PodError::Refused(m),
            FleetError::Basilica(BasilicaError::NotFound(n)) => PodError::NotFound(n),
            FleetError::Basilica(e @ BasilicaError::Config(_)) => PodError::Invalid(e.to_string()),
            other => unavailable(other),
        }
    }
}

impl FleetDesk {
    /// A desk for the agents of run `run_id` of bot `bot`: their pods are charged to the run
    /// and deletable by the bot.
    pub fn for_run(fleet: Fleet, run_id: &str, bot: &str) -> Self {
        FleetDesk {
            fleet,
            renter: Renter {
                run_id: Some(run_id.to_string()),
                bot: Some(bot.to_string()),
                pinned: false,
            },
            operator: false,
        }
    }

    /// A desk for a bridge caller: a bot's pods are its own; the operator's are pinned.
    pub fn for_caller(fleet: Fleet, bot: &str, operator: bool) -> Self {
        FleetDesk {
            fleet,
            renter: Renter {
                run_id: None,
                bot: (!operator).then(|| bot.to_string()),
                pinned: operator,
            },
            operator,
        }
    }

    /// Whether the caller may delete `rec` and read its logs.
    pub fn owns(&self, rec: &PodRecord) -> bool {
        let mine = |a: &Option<String>, b: &Option<String>| a.is_some() && a == b;
        self.operator || mine(&rec.run_id, &self.renter.run_id) || mine(&rec.bot, &self.renter.bot)
    }

    fn info(&self, rec: &PodRecord, phase: &str, ready: bool) -> PodInfo {
        PodInfo {
            name: rec.name.clone(),
            gpu_type: rec.gpu_type.clone(),
            gpu_count: rec.gpu_count,
            rate: rec.rate,
            phase: phase.to_string(),
            ready,
            run_id: rec.run_id.clone(),
            bot: rec.bot.clone(),
            pinned: rec.manual,
            created_ms: rec.created_ms,
            yours: self.owns(rec),
        }
    }

    async fn record(&self, name: &str) -> Result<PodRecord, PodError> {
        check_name(name).map_err(|e| PodError::Invalid(e.to_string()))?;
        self.fleet
            .records()
            .await?
            .into_iter()
            .find(|r| r.name == name)
            .ok_or_else(|| PodError::NotFound(name.to_string()))
    }

    async fn owned(&self, name: &str, what: &str) -> Result<PodRecord, PodError> {
        let rec = self.record(name).await?;
        if !self.owns(&rec) {
            return Err(PodError::Forbidden(format!(
                "pod {name} was rented for {}; you may {what} only pods rented for your run or \
                 your bot",
                match (&rec.bot, &rec.run_id) {
                    (Some(b), _) => format!("bot {b}"),
                    (None, Some(r)) => format!("run {r}"),
                    (None, None) if rec.manual => "the operator".to_string(),
                    (None, None) => "the autoscaler".to_string(),
                }
            )));
        }
        Ok(rec)
    }
}

/// Ready: running with its replicas ready.
fn ready(d: &crate::basilica::Deployment) -> bool {
    d.phase_or_state() == "Running" && d.replicas.ready >= d.replicas.desired.max(1)
}

#[async_trait::async_trait]
impl PodDesk for FleetDesk {
    async fn offerings(&self) -> Result<Vec<PodOffering>, PodError> {
        let policy = &self.fleet.cfg.policy;
        let offerings = self.fleet.client.offerings().await.map_err(unavailable)?;
        Ok(offerings
            .iter()
            .map(|o| PodOffering {
                id: o.id.clone(),
                gpu_type: o.gpu_type.clone(),
                gpu_count: o.gpu_count,
                gpu_memory_gb: o.gpu_memory_gb_per_gpu,
                hourly_rate: o.hourly_rate,
                rate_per_gpu: o.rate_per_gpu(),
                region: o.region.clone(),
                allowed: super::decide::pick_offering(
                    policy,
                    std::slice::from_ref(o),
                    Some(&o.gpu_type),
                )
                .is_ok(),
            })
            .collect())
    }

    async fn budget(&self) -> Result<PodBudget, PodError> {
        let p = &self.fleet.cfg.policy;
        let balance = self.fleet.client.balance().await.map_err(unavailable)?;
        let now = self.fleet.q.time_ms().await.map_err(unavailable)?;
        let rate_now = self.fleet.records().await?.iter().map(|r| r.rate).sum();
        Ok(PodBudget {
            balance: balance.balance,
            rate_now,
            budget_per_hour: p.budget_per_hour,
            spent_today: read_spent_on(&self.fleet.q, now).await?,
            budget_per_day: p.budget_per_day,
            allowed_gpu_types: p.allowed_gpu_types.clone(),
            max_rate_per_gpu: p.max_rate_per_gpu,
        })
    }

    async fn rent(&self, gpu_type: &str) -> Result<PodInfo, PodError> {
        if gpu_type.trim().is_empty() {
            return Err(PodError::Invalid(
                "gpu_type is empty: name one of list_gpu_offerings' types".into(),
            ));
        }
        let rec = self
            .fleet
            .rent_checked(gpu_type.trim(), &self.renter)
            .await?;
        Ok(self.info(&rec, "Pending", false))
    }

    async fn get(&self, name: &str) -> Result<PodInfo, PodError> {
        let rec = self.record(name).await?;
        match self.fleet.client.get(name).await {
            Ok(d) => Ok(self.info(&rec, d.phase_or_state(), ready(&d))),
            Err(BasilicaError::NotFound(_)) => Ok(self.info(&rec, "Gone", false)),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn list(&self) -> Result<Vec<PodInfo>, PodError> {
        let mut out = Vec::new();
        for r in self.fleet.records().await? {
            out.push(self.get(&r.name).await?);
        }
        Ok(out)
    }

    async fn delete(&self, name: &str) -> Result<(), PodError> {
        self.owned(name, "delete").await?;
        Ok(self.fleet.release(name, false).await?)
    }

    async fn logs(&self, name: &str, tail: u32) -> Result<String, PodError> {
        self.owned(name, "read the logs of").await?;
        self.fleet
            .client
            .logs(name, tail.clamp(1, agents::pods::MAX_LOG_LINES))
            .await
            .map_err(|e| match e {
                BasilicaError::NotFound(n) => PodError::NotFound(n),
                e => unavailable(e),
            })
    }
}
