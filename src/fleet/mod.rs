//! The autoscaler of GPU trainer pods on Basilica (`synth-city fleet`): a long-running
//! process that keeps the number of trainer pods where the trainer queues need it, within the
//! allowed GPU types, a price cap per GPU and budgets per hour and per day, and deletes pods
//! that idle (scale to zero) or stop being healthy.
//!
//! Several may run: one leads through a Redis lease (`fleet:leader`, renewed every tick; a
//! leader that dies is replaced within a lease) and the others stand by. Only the leader
//! rents, deletes and records spend; it renews the lease before each Basilica call that acts
//! (so a tick that outlasts the lease stops), and each of its writes is one script fenced by
//! the lease (the engine's `fleet_lease.lua`, `fleet_unlease.lua`, `fleet_account.lua`, so the
//! ACL rules allow the operator user what they call), so a deposed leader's late write changes
//! nothing.
//!
//! State in Redis, under the deployment's prefix: `fleet:pods` (a hash: pod name → its
//! record: offering, rate, rent time, last busy time, spend accounted up to), `fleet:spend:pods`
//! (pod → dollars, kept after the pod goes), `fleet:spend:runs` (pipeline run → its share of
//! the pods' dollars: each tick a pod's dollars are shared among the jobs it holds, and a job's
//! share goes to its envelope's run; [`spend::split_by_run`]), `fleet:spend:day:<YYYY-MM-DD>`
//! (dollars, UTC day), `fleet:status` (the leader's last report, what `fleet status` prints).
//!
//! What a pod runs: `synth-city worker --roles <pod roles> --name <pod name> --concurrency
//! <jobs per pod>` with the Redis
//! URL, prefix and the forwarded variables (secrets included) in its environment and
//! `SYNTH_HEALTH_PORT` set, so Basilica's probes reach the worker's health endpoint. A pod's
//! worker is known by its heartbeat: worker ids start with the pod's name.
//!
//! The decision itself is [`decide::decide`], a pure function; this module gathers its inputs
//! and carries it out. It does not train, enqueue jobs or talk HTTP itself (the client in
//! [`crate::basilica`] does).

pub mod decide;
pub mod desk;
pub mod metrics;
pub mod spend;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use engine::queue::{Queue, QueueError};
use engine::worker::list_workers;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::basilica::{
    BasilicaError, Client, CreateDeployment, GpuRequest, HealthCheck, Offering, Probe, Resources,
};
use decide::{Backlog, Decision, Inputs, PodView, Policy};

/// The worker's health port on a pod (the seed's port).
pub const HEALTH_PORT: u16 = 8378;

/// What went wrong in the fleet.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Basilica(#[from] BasilicaError),
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("{0}")]
    Refused(String),
    /// A rental the rules refuse (allowed GPU types, price cap, budgets, balance): names it.
    #[error("{0}")]
    Rule(String),
}

/// Whom a rental is for: the autoscaler's have no run and no bot; `fleet rent` and the
/// operator's `POST /fleet/pods` pin theirs; an agent's pod is its run's and its bot's, a
/// bot's (`POST /fleet/pods`) its own.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Renter {
    /// The pipeline run the pod's spend is charged to.
    pub run_id: Option<String>,
    /// The bot that may delete it.
    pub bot: Option<String>,
    /// Never deleted for idleness.
    pub pinned: bool,
}

/// What the pods run and how they are shaped.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PodTemplate {
    pub image: String,
    /// `--roles` of the pod's worker.
    pub roles: Vec<String>,
    /// `--device` of the pod's worker.
    pub device: String,
    pub cpu: String,
    pub memory: String,
    pub min_gpu_memory_gb: Option<u32>,
    pub ttl_seconds: Option<u64>,
    /// The Redis URL pods reach (the fleet's own when unset).
    pub redis_url: String,
    pub prefix: String,
    /// The pod worker's `--lease-ms` (a dead pod's jobs are reclaimed after it),
    /// `--heartbeat-ms` and `--grace-secs` (the drain on SIGTERM).
    pub lease_ms: u64,
    pub heartbeat_ms: u64,
    pub grace_secs: u64,
    /// Environment (secrets included) every pod gets.
    #[serde(skip)]
    pub env: BTreeMap<String, String>,
}

/// The fleet's configuration.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    pub policy: Policy,
    pub template: PodTemplate,
    /// The job types whose backlog the pods serve.
    pub job_types: Vec<String>,
    pub tick: Duration,
    pub lease: Duration,
}

/// One rented pod, as `fleet:pods` keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodRecord {
    pub name: String,
    pub offering_id: String,
    pub gpu_type: String,
    pub gpu_count: u32,
    /// $/h of the whole pod.
    pub rate: f64,
    pub created_ms: u64,
    pub last_busy_ms: u64,
    /// Spend is recorded up to this time.
    pub accounted_ms: u64,
    pub manual: bool,
    /// The run that rented it (an agent's): its spend is charged to that run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// The bot it was rented for (an agent's run's, or a bot's `POST /fleet/pods`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bot: Option<String>,
}

/// One pod in a status report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodStatus {
    pub name: String,
    pub gpu_type: String,
    pub rate: f64,
    pub phase: String,
    pub worker_live: bool,
    pub in_flight: u32,
    pub manual: bool,
    pub spent: f64,
    pub created_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bot: Option<String>,
}

/// The leader's report of one tick (`fleet:status`, `fleet status`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FleetStatus {
    pub leader: String,
    pub at_ms: u64,
    pub waiting: u64,
    pub in_flight: u64,
    pub oldest_ms: u64,
    pub pods: Vec<PodStatus>,
    /// $/h of the pods now.
    pub rate_now: f64,
    pub spent_today: f64,
    pub budget_per_hour: f64,
    pub budget_per_day: f64,
    pub balance: Option<f64>,
    /// More pods the backlog wants.
    pub wanted: u32,
    /// Why fewer pods run than the backlog wants (empty when nothing is held back).
    pub blocked: Vec<String>,
    /// What this tick did.
    pub actions: Vec<String>,
}

/// The fleet's Redis keys.
#[derive(Debug, Clone)]
pub struct FleetKeys {
    pub leader: String,
    pub pods: String,
    pub spend_pods: String,
    pub spend_runs: String,
    pub status: String,
    day_prefix: String,
}

impl FleetKeys {
    pub fn new(q: &Queue) -> Self {
        let k = q.keys();
        FleetKeys {
            leader: k.fleet("leader"),
            pods: k.fleet("pods"),
            spend_pods: k.fleet("spend:pods"),
            spend_runs: k.fleet("spend:runs"),
            status: k.fleet("status"),
            day_prefix: k.fleet("spend:day:"),
        }
    }

    /// The spend of the UTC day of `ms`.
    pub fn day(&self, ms: u64) -> String {
        format!("{}{}", self.day_prefix, utc_day(ms))
    }
}

/// `YYYY-MM-DD` (UTC) of a Unix time in ms.
pub fn utc_day(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| "1970-01-01".into())
}

/// The fleet's view of Redis and Basilica.
#[derive(Clone)]
pub struct Fleet {
    pub q: Queue,
    pub client: Client,
    pub keys: FleetKeys,
    pub cfg: FleetConfig,
    /// This process's lease holder id.
    pub id: String,
    /// Its gauges (`fleet run --metrics-addr`).
    pub metrics: metrics::FleetMetrics,
}

fn float(s: Option<String>) -> f64 {
    s.and_then(|v| v.parse().ok()).unwrap_or(0.0)
}

impl Fleet {
    pub fn new(q: Queue, client: Client, cfg: FleetConfig) -> Self {
        let keys = FleetKeys::new(&q);
        let host = hostname::get()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "host".into());
        let id = format!(
            "{host}-{}-{}",
            std::process::id(),
            ulid::Ulid::new().to_string().to_lowercase()
        );
        Fleet {
            q,
            client,
            keys,
            cfg,
            id,
            metrics: metrics::FleetMetrics::new(),
        }
    }

    async fn conn(&self) -> Result<engine::queue::PooledConnection, FleetError> {
        Ok(self.q.conn().await?)
    }

    /// Takes or renews the lease; true while this process leads.
    pub async fn lead(&self) -> Result<bool, FleetError> {
        let mut c = self.conn().await?;
        let n: i64 = self
            .q
            .scripts()
            .fleet_lease
            .arg(self.q.prefix())
            .arg(&self.id)
            .arg(self.cfg.lease.as_millis() as u64)
            .invoke_async(&mut c)
            .await?;
        Ok(n == 1)
    }

    /// Renews the lease before an action; an error once another process leads (a tick that
    /// outlasted the lease stops there).
    async fn still_leading(&self) -> Result<(), FleetError> {
        if self.lead().await? {
            Ok(())
        } else {
            Err(FleetError::Refused("no longer the fleet's leader".into()))
        }
    }

    /// Gives the lease up (at shutdown), so a standby takes over at once.
    pub async fn resign(&self) {
        if let Ok(mut c) = self.conn().await {
            let _: Result<i64, _> = self
                .q
                .scripts()
                .fleet_unlease
                .arg(self.q.prefix())
                .arg(&self.id)
                .invoke_async(&mut c)
                .await;
        }
    }

    /// Our pods' records.
    pub async fn records(&self) -> Result<Vec<PodRecord>, FleetError> {
        let mut c = self.conn().await?;
        let h: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(&self.keys.pods)
            .query_async(&mut c)
            .await?;
        let mut v: Vec<PodRecord> = h
            .values()
            .filter_map(|s| serde_json::from_str(s).ok())
            .collect();
        v.sort_by(|a, b| a.created_ms.cmp(&b.created_ms).then(a.name.cmp(&b.name)));
        Ok(v)
    }

    /// Writes `rec` (or removes `name` when `rec` is `None`) and adds `dollars` of spend (and
    /// each run's share of them, `runs`), fenced by the lease when `fenced`; false when the
    /// lease was lost.
    async fn account(
        &self,
        name: &str,
        rec: Option<&PodRecord>,
        dollars: f64,
        runs: &BTreeMap<String, f64>,
        now: u64,
        fenced: bool,
    ) -> Result<bool, FleetError> {
        let mut c = self.conn().await?;
        let json = match rec {
            Some(r) => serde_json::to_string(r).expect("a record serialises"),
            None => String::new(),
        };
        let mut inv = self.q.scripts().fleet_account.prepare_invoke();
        inv.arg(self.q.prefix())
            .arg(if fenced { self.id.as_str() } else { "" })
            .arg(name)
            .arg(json)
            .arg(format!("{dollars:.9}"))
            .arg(utc_day(now));
        for (run, share) in runs {
            inv.arg(run).arg(format!("{share:.9}"));
        }
        let n: i64 = inv.invoke_async(&mut c).await?;
        Ok(n == 1)
    }

    /// Records the new pod `rec` if one more pod at its rate keeps within the hourly and daily
    /// budgets, checked and written in one script (`fleet_reserve.lua`), so rentals from
    /// several processes at once never pass the budgets together; otherwise
    /// [`FleetError::Rule`] naming the budget ([`decide::affordable`]'s words), or
    /// [`FleetError::Refused`] when `fenced` and this process no longer leads.
    async fn reserve(&self, rec: &PodRecord, now: u64, fenced: bool) -> Result<(), FleetError> {
        let mut c = self.conn().await?;
        let (code, rate_now, spent): (i64, String, String) = self
            .q
            .scripts()
            .fleet_reserve
            .prepare_invoke()
            .arg(self.q.prefix())
            .arg(if fenced { self.id.as_str() } else { "" })
            .arg(&rec.name)
            .arg(serde_json::to_string(rec).expect("a record serialises"))
            .arg(self.cfg.policy.budget_per_hour)
            .arg(self.cfg.policy.budget_per_day)
            .arg(utc_day(now))
            .invoke_async(&mut c)
            .await?;
        match code {
            1 => Ok(()),
            0 => Err(FleetError::Refused("no longer the fleet's leader".into())),
            _ => {
                let (rate_now, spent) = (
                    rate_now.parse().unwrap_or(f64::NAN),
                    spent.parse().unwrap_or(f64::NAN),
                );
                let why = decide::affordable(&self.cfg.policy, rate_now, rec.rate, spent, None)
                    .err()
                    .unwrap_or_else(|| {
                        format!(
                            "the budgets, at ${rate_now:.2}/h running and ${spent:.2} spent today"
                        )
                    });
                Err(FleetError::Rule(why))
            }
        }
    }

    /// Dollars spent on the UTC day of `now`.
    pub async fn spent_on(&self, now: u64) -> Result<f64, FleetError> {
        read_spent_on(&self.q, now).await
    }

    /// Dollars spent per pod, ever.
    pub async fn spent_per_pod(&self) -> Result<BTreeMap<String, f64>, FleetError> {
        read_spent_per_pod(&self.q).await
    }

    /// A fresh pod name: `sc-<ulid>` (lower case: a Kubernetes name).
    fn pod_name(&self) -> String {
        format!("sc-{}", ulid::Ulid::new().to_string().to_lowercase())
    }

    /// The create request of pod `name` on `gpu_type`.
    pub fn request(&self, name: &str, gpu_type: &str, gpus: u32) -> CreateDeployment {
        let t = &self.cfg.template;
        let mut env = t.env.clone();
        env.insert("REDIS_URL".into(), t.redis_url.clone());
        env.insert("SYNTH_CITY_PREFIX".into(), t.prefix.clone());
        env.insert("SYNTH_HEALTH_PORT".into(), HEALTH_PORT.to_string());
        env.insert("SYNTH_HEALTH_HOST".into(), "0.0.0.0".into());
        env.insert("SYNTH_DEVICE".into(), t.device.clone());
        let probe = |delay: u32, failures: u32| Probe {
            path: "/health".into(),
            port: Some(HEALTH_PORT),
            initial_delay_seconds: delay,
            period_seconds: 10,
            timeout_seconds: 5,
            failure_threshold: failures,
        };
        CreateDeployment {
            instance_name: name.to_string(),
            image: t.image.clone(),
            replicas: 1,
            port: HEALTH_PORT,
            command: vec!["synth-city".into()],
            args: vec![
                "worker".into(),
                "--roles".into(),
                t.roles.join(","),
                "--name".into(),
                name.to_string(),
                "--concurrency".into(),
                self.cfg.policy.jobs_per_pod.max(1).to_string(),
                "--lease-ms".into(),
                t.lease_ms.to_string(),
                "--heartbeat-ms".into(),
                t.heartbeat_ms.to_string(),
                "--grace-secs".into(),
                t.grace_secs.to_string(),
            ],
            env,
            resources: Some(Resources {
                cpu: t.cpu.clone(),
                memory: t.memory.clone(),
                gpus: Some(GpuRequest {
                    count: gpus,
                    model: vec![gpu_type.to_string()],
                    min_gpu_memory_gb: t.min_gpu_memory_gb,
                }),
            }),
            ttl_seconds: t.ttl_seconds,
            public: false,
            health_check: Some(HealthCheck {
                liveness: Some(probe(30, 3)),
                readiness: Some(probe(5, 3)),
                // an image pull and a CUDA start may take minutes
                startup: Some(probe(5, 60)),
            }),
        }
    }

    /// Rents one pod of `gpu_type` for `who` within the rules: the cheapest allowed offering
    /// under the price cap ([`decide::pick_offering`]), if one more pod keeps within the hourly
    /// and daily budgets and the balance ([`decide::affordable`]); otherwise
    /// [`FleetError::Rule`] naming the rule. The one path of `fleet rent`, `POST /fleet/pods`
    /// and the agents' `create_training_deployment`.
    pub async fn rent_checked(
        &self,
        gpu_type: &str,
        who: &Renter,
    ) -> Result<PodRecord, FleetError> {
        let offerings = self.client.offerings().await?;
        let o = decide::pick_offering(&self.cfg.policy, &offerings, Some(gpu_type))
            .map_err(FleetError::Rule)?;
        let balance = self.client.balance().await?.balance;
        let now = self.q.time_ms().await?;
        let rate_now: f64 = self.records().await?.iter().map(|r| r.rate).sum();
        let spent = self.spent_on(now).await?;
        decide::affordable(
            &self.cfg.policy,
            rate_now,
            o.hourly_rate,
            spent,
            Some(balance),
        )
        .map_err(FleetError::Rule)?;
        self.rent(o, who, false).await
    }

    /// Rents one pod of `offering` for `who`: its record first (so a create that half-happened
    /// is still ours to find), then the create. `fenced`: only while this process leads.
    pub async fn rent(
        &self,
        offering: &Offering,
        who: &Renter,
        fenced: bool,
    ) -> Result<PodRecord, FleetError> {
        let now = self.q.time_ms().await?;
        let rec = PodRecord {
            name: self.pod_name(),
            offering_id: offering.id.clone(),
            gpu_type: offering.gpu_type.clone(),
            gpu_count: offering.gpu_count,
            rate: offering.hourly_rate,
            created_ms: now,
            last_busy_ms: now,
            accounted_ms: now,
            manual: who.pinned,
            run_id: who.run_id.clone(),
            bot: who.bot.clone(),
        };
        self.reserve(&rec, now, fenced).await?;
        let req = self.request(&rec.name, &offering.gpu_type, offering.gpu_count);
        match self.client.create(&req).await {
            Ok(_) => Ok(rec),
            Err(e) if e.is_infrastructure() => {
                // it may exist: the record stays, and the next tick finds it or sees it gone
                Err(e.into())
            }
            Err(e) => {
                self.account(&rec.name, None, 0.0, &BTreeMap::new(), now, false)
                    .await?;
                Err(e.into())
            }
        }
    }

    /// Deletes pod `name` at Basilica and forgets it, its spend accounted up to now.
    pub async fn release(&self, name: &str, fenced: bool) -> Result<(), FleetError> {
        match self.client.delete(name).await {
            Ok(_) | Err(BasilicaError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        let now = self.q.time_ms().await?;
        let recs = self.records().await?;
        let rec = recs.iter().find(|r| r.name == name);
        let dollars = rec
            .map(|r| r.rate * now.saturating_sub(r.accounted_ms) as f64 / 3.6e6)
            .unwrap_or(0.0);
        // the last interval's jobs are not known here: only a run that rented the pod is
        // charged for it
        let runs = match rec.and_then(|r| r.run_id.clone()) {
            Some(run) => spend::split_by_run(dollars, &[Some(run)]),
            None => BTreeMap::new(),
        };
        self.account(name, None, dollars, &runs, now, fenced)
            .await?;
        Ok(())
    }

    /// The backlog of the watched job types.
    async fn backlog(&self) -> Result<Backlog, FleetError> {
        let types: Vec<&str> = self.cfg.job_types.iter().map(String::as_str).collect();
        let stats = self.q.stats_for(&types).await?;
        Ok(Backlog {
            waiting: stats.iter().map(|s| s.waiting + s.delayed).sum(),
            in_flight: stats.iter().map(|s| s.in_flight).sum(),
            oldest_ms: stats.iter().map(|s| s.oldest_ms).max().unwrap_or(0),
        })
    }

    /// The jobs each consumer (worker id) holds now over the watched job types, each as its
    /// envelope's run id (`None`: a job outside a run): the group's pending list, exact at this
    /// moment (a heartbeat's count may be seconds old), and each entry's envelope.
    async fn held_by_consumer(&self) -> Result<HashMap<String, Vec<Option<String>>>, FleetError> {
        let mut c = self.conn().await?;
        let mut out: HashMap<String, Vec<Option<String>>> = HashMap::new();
        for t in &self.cfg.job_types {
            let stream = self.q.keys().stream(t);
            let pending: redis::streams::StreamPendingCountReply = match redis::cmd("XPENDING")
                .arg(&stream)
                .arg(engine::keys::GROUP)
                .arg("-")
                .arg("+")
                .arg(10_000)
                .query_async(&mut c)
                .await
            {
                Ok(v) => v,
                Err(e) if e.code() == Some("NOGROUP") => continue,
                Err(e) => return Err(e.into()),
            };
            for p in pending.ids {
                let entry: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
                    .arg(&stream)
                    .arg(&p.id)
                    .arg(&p.id)
                    .query_async(&mut c)
                    .await?;
                let run = entry
                    .ids
                    .first()
                    .and_then(|e| e.get::<String>("job"))
                    .and_then(|raw| jobs::JobEnvelope::from_json(&raw).ok())
                    .and_then(|env| env.run_id);
                out.entry(p.consumer).or_default().push(run);
            }
        }
        Ok(out)
    }

    /// One tick of the leader: observe, account, decide, act, report.
    pub async fn tick(&self) -> Result<FleetStatus, FleetError> {
        let now = self.q.time_ms().await?;
        let backlog = self.backlog().await?;
        let workers = list_workers(&self.q).await?;
        let held = self.held_by_consumer().await?;
        let mut recs = self.records().await?;
        let mut views = Vec::new();
        for r in recs.iter_mut() {
            self.still_leading().await?;
            let phase = match self.client.get(&r.name).await {
                Ok(d) => d.phase_or_state().to_string(),
                Err(BasilicaError::NotFound(_)) => "Gone".into(),
                Err(e) => {
                    tracing::warn!(pod = %r.name, %e, "pod's phase unknown");
                    "Unknown".into()
                }
            };
            let prefix = format!("{}-", r.name);
            let mine: Vec<_> = workers
                .iter()
                .filter(|w| w.id.starts_with(&prefix))
                .collect();
            let runs: Vec<Option<String>> = held
                .iter()
                .filter(|(who, _)| who.starts_with(&prefix))
                .flat_map(|(_, jobs)| jobs.iter().cloned())
                .collect();
            let in_flight = runs.len() as u32;
            if in_flight > 0 {
                r.last_busy_ms = now;
            }
            let dollars = r.rate * now.saturating_sub(r.accounted_ms) as f64 / 3.6e6;
            r.accounted_ms = now;
            // a pod a run rented is that run's; the others' are shared by the jobs they hold
            let per_run = match &r.run_id {
                Some(run) => spend::split_by_run(dollars, &[Some(run.clone())]),
                None => spend::split_by_run(dollars, &runs),
            };
            if !self
                .account(&r.name, Some(r), dollars, &per_run, now, true)
                .await?
            {
                return Err(FleetError::Refused("lost the lease mid-tick".into()));
            }
            views.push(PodView {
                name: r.name.clone(),
                gpu_type: r.gpu_type.clone(),
                rate: r.rate,
                phase,
                created_ms: r.created_ms,
                last_busy_ms: r.last_busy_ms,
                worker_live: !mine.is_empty(),
                in_flight,
                manual: r.manual,
            });
        }
        let mut blocked = Vec::new();
        let offerings = match self.client.offerings().await {
            Ok(o) => o,
            Err(e) => {
                blocked.push(format!("offerings unknown: {e}"));
                Vec::new()
            }
        };
        let balance = match self.client.balance().await {
            Ok(b) => Some(b.balance),
            Err(e) => {
                blocked.push(format!("balance unknown: {e}"));
                None
            }
        };
        let spent_today = self.spent_on(now).await?;
        let decision: Decision = decide::decide(
            &self.cfg.policy,
            &Inputs {
                now_ms: now,
                backlog,
                pods: &views,
                offerings: &offerings,
                balance,
                spent_today,
            },
        );
        let mut actions = Vec::new();
        for d in &decision.delete {
            self.still_leading().await?;
            match self.release(&d.name, true).await {
                Ok(()) => actions.push(format!("deleted {}: {}", d.name, d.reason)),
                Err(e) => actions.push(format!("delete {} failed: {e}", d.name)),
            }
        }
        let deleted: Vec<&str> = decision.delete.iter().map(|d| d.name.as_str()).collect();
        for r in &decision.rent {
            let Some(o) = offerings.iter().find(|o| o.id == r.offering_id) else {
                continue;
            };
            self.still_leading().await?;
            match self.rent(o, &Renter::default(), true).await {
                Ok(rec) => actions.push(format!(
                    "rented {} ({}x{} ${:.2}/h)",
                    rec.name, rec.gpu_count, rec.gpu_type, rec.rate
                )),
                Err(e) => {
                    blocked.push(format!("rent failed: {e}"));
                    break;
                }
            }
        }
        blocked.extend(decision.blocked.iter().cloned());
        for a in &actions {
            tracing::info!(action = %a, "fleet");
        }
        let spent = self.spent_per_pod().await?;
        let recs = self.records().await?;
        let pods: Vec<PodStatus> = recs
            .iter()
            .map(|r| {
                let v = views.iter().find(|v| v.name == r.name);
                PodStatus {
                    name: r.name.clone(),
                    gpu_type: r.gpu_type.clone(),
                    rate: r.rate,
                    phase: v
                        .map(|v| v.phase.clone())
                        .unwrap_or_else(|| "Pending".into()),
                    worker_live: v.is_some_and(|v| v.worker_live),
                    in_flight: v.map(|v| v.in_flight).unwrap_or(0),
                    manual: r.manual,
                    spent: spent.get(&r.name).copied().unwrap_or(0.0),
                    created_ms: r.created_ms,
                    run_id: r.run_id.clone(),
                    bot: r.bot.clone(),
                }
            })
            .filter(|p| !deleted.contains(&p.name.as_str()))
            .collect();
        let status = FleetStatus {
            leader: self.id.clone(),
            at_ms: now,
            waiting: backlog.waiting,
            in_flight: backlog.in_flight,
            oldest_ms: backlog.oldest_ms,
            // a fold from +0.0: an empty `sum` of floats is -0.0, which prints as `$-0.00/h`
            rate_now: pods.iter().fold(0.0, |a, p| a + p.rate),
            pods,
            spent_today: self.spent_on(now).await?,
            budget_per_hour: self.cfg.policy.budget_per_hour,
            budget_per_day: self.cfg.policy.budget_per_day,
            balance,
            wanted: decision.wanted.saturating_sub(decision.rent.len() as u32),
            blocked,
            actions,
        };
        let mut c = self.conn().await?;
        let _: () = redis::cmd("SET")
            .arg(&self.keys.status)
            .arg(serde_json::to_string(&status).expect("status serialises"))
            .query_async(&mut c)
            .await?;
        Ok(status)
    }

    /// Leads or stands by until `stop`; on stop, gives the lease up (pods stay: the next
    /// leader, or their TTL, deals with them).
    pub async fn run(&self, stop: CancellationToken) -> Result<(), FleetError> {
        let mut leading = false;
        loop {
            match self.lead().await {
                Ok(true) => {
                    if !leading {
                        tracing::info!(id = %self.id, "fleet: leading");
                        println!("fleet {} leading", self.id);
                    }
                    leading = true;
                    match self.tick().await {
                        Ok(s) => self.metrics.observe(&s),
                        Err(e) => tracing::warn!(%e, "fleet tick failed"),
                    }
                }
                Ok(false) => {
                    if leading {
                        tracing::warn!(id = %self.id, "fleet: lease lost; standing by");
                    }
                    leading = false;
                }
                Err(e) => tracing::warn!(%e, "fleet lease unreachable"),
            }
            self.metrics.set_leader(leading);
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(self.cfg.tick) => {}
            }
        }
        if leading {
            self.resign().await;
        }
        Ok(())
    }
}

/// Dollars spent on the UTC day of `now` (Redis time, ms).
pub async fn read_spent_on(q: &Queue, now: u64) -> Result<f64, FleetError> {
    let mut c = q.conn().await?;
    let v: Option<String> = redis::cmd("GET")
        .arg(FleetKeys::new(q).day(now))
        .query_async(&mut c)
        .await?;
    Ok(float(v))
}

/// Dollars spent per pod, ever (pods gone included).
pub async fn read_spent_per_pod(q: &Queue) -> Result<BTreeMap<String, f64>, FleetError> {
    read_dollars(q, &FleetKeys::new(q).spend_pods).await
}

/// A hash of dollars (`fleet:spend:pods`, `fleet:spend:runs`).
async fn read_dollars(q: &Queue, key: &str) -> Result<BTreeMap<String, f64>, FleetError> {
    let mut c = q.conn().await?;
    let h: HashMap<String, String> = redis::cmd("HGETALL").arg(key).query_async(&mut c).await?;
    Ok(h.into_iter()
        .map(|(k, v)| (k, v.parse().unwrap_or(0.0)))
        .collect())
}

/// Dollars per pipeline run, ever: each run's share of the pods that held its jobs.
pub async fn read_spent_per_run(q: &Queue) -> Result<BTreeMap<String, f64>, FleetError> {
    read_dollars(q, &FleetKeys::new(q).spend_runs).await
}

/// The current leader (`None`: no fleet leads) and the last status a leader wrote.
pub async fn read_status(q: &Queue) -> Result<(Option<String>, Option<FleetStatus>), FleetError> {
    let keys = FleetKeys::new(q);
    let mut c = q.conn().await?;
    let (leader, status): (Option<String>, Option<String>) = redis::pipe()
        .cmd("GET")
        .arg(&keys.leader)
        .cmd("GET")
        .arg(&keys.status)
        .query_async(&mut c)
        .await?;
    Ok((leader, status.and_then(|s| serde_json::from_str(&s).ok())))
}

/// What the fleet has spent and may still spend, as `GET /fleet/spend` and `fleet status`
/// report it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpendReport {
    /// The UTC day.
    pub day: String,
    pub spent_today: f64,
    /// $/h of the pods at the leader's last report.
    pub rate_now: f64,
    /// The budgets of the leader's last report (`None`: no leader has reported).
    pub budget_per_hour: Option<f64>,
    pub budget_per_day: Option<f64>,
    pub budget_left_today: Option<f64>,
    pub balance: Option<f64>,
    /// Dollars per pod, ever.
    pub per_pod: BTreeMap<String, f64>,
    /// Dollars per pipeline run, ever (its share of the pods that held its jobs; jobs outside
    /// a run are charged to no run).
    pub per_run: BTreeMap<String, f64>,
}

/// The spend report now.
pub async fn read_spend(q: &Queue) -> Result<SpendReport, FleetError> {
    let now = q.time_ms().await?;
    let (_, status) = read_status(q).await?;
    let spent_today = read_spent_on(q, now).await?;
    Ok(SpendReport {
        day: utc_day(now),
        spent_today,
        rate_now: status.as_ref().map(|s| s.rate_now).unwrap_or(0.0),
        budget_per_hour: status.as_ref().map(|s| s.budget_per_hour),
        budget_per_day: status.as_ref().map(|s| s.budget_per_day),
        budget_left_today: status
            .as_ref()
            .map(|s| (s.budget_per_day - spent_today).max(0.0)),
        balance: status.as_ref().and_then(|s| s.balance),
        per_pod: read_spent_per_pod(q).await?,
        per_run: read_spent_per_run(q).await?,
    })
}
