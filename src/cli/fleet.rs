//! `synth-city fleet`: GPU trainer pods on Basilica. `fleet run` is the autoscaler (leads
//! through a Redis lease or stands by), `fleet status [--json]` prints the leader's last
//! report, `fleet rent --gpu T [--count N]` and `fleet release NAME` are an operator's manual
//! rentals (pinned: never deleted for idleness; the budgets still apply). Only flags and
//! wiring live here: the logic is `crate::fleet`, the HTTP client `crate::basilica`.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use engine::queue::Queue;

use super::shutdown_on_signal;
use crate::basilica::{Client, ClientConfig};
use crate::fleet::decide::Policy;
use crate::fleet::{Fleet, FleetConfig, PodTemplate, Renter};

#[derive(Debug, Subcommand)]
pub enum FleetCommand {
    /// Run the autoscaler until SIGINT/SIGTERM (one of several leads; the others stand by).
    Run {
        #[command(flatten)]
        fleet: FleetArgs,
        /// Serve Prometheus gauges at ADDR/metrics (e.g. 127.0.0.1:9465).
        #[arg(long)]
        metrics_addr: Option<std::net::SocketAddr>,
    },
    /// The leader's last report: pods, spend, budgets, and why nothing more was rented.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Rent pods by hand (pinned: never deleted for idleness), within the budgets.
    Rent {
        /// GPU type (`A4000`, `H100`, ...).
        #[arg(long)]
        gpu: String,
        #[arg(long, default_value_t = 1)]
        count: u32,
        #[command(flatten)]
        fleet: FleetArgs,
    },
    /// Delete a pod (by its name, as `fleet status` lists it).
    Release {
        name: String,
        #[command(flatten)]
        fleet: FleetArgs,
    },
}

/// The fleet's policy and pod template.
#[derive(Debug, Clone, Args)]
pub struct FleetArgs {
    /// GPU types it may rent, comma-separated; empty: any within the price cap.
    #[arg(
        long,
        env = "BASILICA_ALLOWED_GPU_TYPES",
        value_delimiter = ',',
        default_value = ""
    )]
    pub allowed_gpu_types: Vec<String>,
    /// Most $/h per GPU.
    #[arg(long, env = "BASILICA_MAX_HOURLY_RATE", default_value_t = 1.0)]
    pub max_hourly_rate: f64,
    /// Most $/h for all pods together.
    #[arg(long, env = "BASILICA_BUDGET_PER_HOUR", default_value_t = 4.0)]
    pub budget_per_hour: f64,
    /// Most $ per UTC day.
    #[arg(long, env = "BASILICA_BUDGET_PER_DAY", default_value_t = 48.0)]
    pub budget_per_day: f64,
    /// A pod whose worker had no job this long is deleted (fractions allowed).
    #[arg(long, default_value_t = 10.0)]
    pub idle_minutes: f64,
    /// A pod with no worker heartbeat this long after it was rented is replaced.
    #[arg(long, default_value_t = 900)]
    pub startup_grace_secs: u64,
    #[arg(long, default_value_t = 1)]
    pub gpus_per_pod: u32,
    /// Jobs one pod runs at once (the backlog per pod).
    #[arg(long, default_value_t = 1)]
    pub jobs_per_pod: u32,
    #[arg(long, default_value_t = 4)]
    pub max_pods: u32,
    /// The job types whose backlog pods serve.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "train,train-one,experiment"
    )]
    pub job_types: Vec<String>,
    /// `--roles` of the pods' workers.
    #[arg(
        long,
        env = "SYNTH_POD_ROLES",
        value_delimiter = ',',
        default_value = "trainer"
    )]
    pub pod_roles: Vec<String>,
    /// The pods' container image (ops/docker/Dockerfile.cuda).
    #[arg(long, env = "BASILICA_IMAGE", default_value = "synth-city-cuda:local")]
    pub image: String,
    /// `--device` of the pods' workers.
    #[arg(long, env = "SYNTH_POD_DEVICE", default_value = "cuda")]
    pub pod_device: String,
    #[arg(long, default_value = "4")]
    pub pod_cpu: String,
    #[arg(long, default_value = "16Gi")]
    pub pod_memory: String,
    #[arg(long)]
    pub min_gpu_memory_gb: Option<u32>,
    /// The pods' workers' lease: a lost pod's jobs are taken over after it.
    #[arg(long, default_value_t = 30_000)]
    pub pod_lease_ms: u64,
    /// The pods' workers' heartbeat period (a pod whose heartbeat lapses is replaced).
    #[arg(long, default_value_t = 5_000)]
    pub pod_heartbeat_ms: u64,
    /// How long a deleted pod's running jobs get to finish before they are handed back.
    #[arg(long, default_value_t = 30)]
    pub pod_grace_secs: u64,
    /// Basilica deletes a pod after this many hours whatever happens here.
    #[arg(long, default_value_t = 12)]
    pub ttl_hours: u64,
    /// The Redis URL the pods use (TLS, the worker ACL user) [default: the fleet's own].
    #[arg(long, env = "SYNTH_POD_REDIS_URL")]
    pub pod_redis_url: Option<String>,
    /// Environment for the pods: NAME (its value from here) or NAME=VALUE; store
    /// credentials and other secrets go here.
    #[arg(long, env = "SYNTH_POD_ENV", value_delimiter = ',')]
    pub pod_env: Vec<String>,
    /// How often the leader looks and acts, ms.
    #[arg(long, default_value_t = 15_000)]
    pub tick_ms: u64,
    /// The leader's lease, ms (a standby takes over within it).
    #[arg(long, default_value_t = 45_000)]
    pub lease_ms: u64,
    /// One Basilica request's limit, ms.
    #[arg(long, default_value_t = 30_000)]
    pub request_timeout_ms: u64,
    /// Attempts per Basilica call (the first included).
    #[arg(long, default_value_t = 4)]
    pub attempts: u32,
}

impl FleetArgs {
    fn policy(&self) -> anyhow::Result<Policy> {
        for (v, name) in [
            (
                self.max_hourly_rate,
                "--max-hourly-rate (BASILICA_MAX_HOURLY_RATE)",
            ),
            (
                self.budget_per_hour,
                "--budget-per-hour (BASILICA_BUDGET_PER_HOUR)",
            ),
            (
                self.budget_per_day,
                "--budget-per-day (BASILICA_BUDGET_PER_DAY)",
            ),
            (self.idle_minutes, "--idle-minutes"),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                bail!("{name} must be a number of 0 or more, not {v}");
            }
        }
        Ok(Policy {
            allowed_gpu_types: self
                .allowed_gpu_types
                .iter()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            max_rate_per_gpu: self.max_hourly_rate,
            budget_per_hour: self.budget_per_hour,
            budget_per_day: self.budget_per_day,
            gpus_per_pod: self.gpus_per_pod.max(1),
            jobs_per_pod: self.jobs_per_pod.max(1),
            max_pods: self.max_pods,
            idle_ms: (self.idle_minutes * 60_000.0) as u64,
            startup_grace_ms: self.startup_grace_secs * 1000,
        })
    }

    /// The fleet's settings from the environment alone (`BASILICA_*`, `SYNTH_POD_*`; the
    /// flags' defaults otherwise): how the bridge and the agents' pod tools see the fleet.
    pub fn from_env() -> anyhow::Result<Self> {
        #[derive(clap::Parser)]
        struct FromEnv {
            #[command(flatten)]
            fleet: FleetArgs,
        }
        use clap::Parser;
        Ok(FromEnv::try_parse_from(["fleet"])
            .context("the fleet's settings in the environment")?
            .fleet)
    }

    /// The fleet these settings describe, over `q` (its Basilica client from the environment).
    pub fn fleet(&self, q: Queue) -> anyhow::Result<Fleet> {
        let mut env = BTreeMap::new();
        for e in &self.pod_env {
            let e = e.trim();
            if e.is_empty() {
                continue;
            }
            match e.split_once('=') {
                Some((k, v)) => env.insert(k.to_string(), v.to_string()),
                None => match std::env::var(e) {
                    Ok(v) => env.insert(e.to_string(), v),
                    Err(_) => bail!(
                        "--pod-env {e}: no such variable in this environment; set it or pass {e}=VALUE"
                    ),
                },
            };
        }
        let template = PodTemplate {
            image: self.image.clone(),
            roles: self.pod_roles.clone(),
            device: self.pod_device.clone(),
            cpu: self.pod_cpu.clone(),
            memory: self.pod_memory.clone(),
            min_gpu_memory_gb: self.min_gpu_memory_gb,
            ttl_seconds: Some(self.ttl_hours * 3600).filter(|t| *t > 0),
            redis_url: self
                .pod_redis_url
                .clone()
                .unwrap_or_else(|| q.url().to_string()),
            prefix: q.prefix().to_string(),
            lease_ms: self.pod_lease_ms,
            heartbeat_ms: self.pod_heartbeat_ms,
            grace_secs: self.pod_grace_secs,
            env,
        };
        let mut cc = ClientConfig::from_env();
        cc.timeout = Duration::from_millis(self.request_timeout_ms.max(1));
        cc.retry.attempts = self.attempts.max(1);
        let client = Client::new(cc)?;
        let cfg = FleetConfig {
            policy: self.policy()?,
            template,
            job_types: self.job_types.clone(),
            tick: Duration::from_millis(self.tick_ms.max(10)),
            lease: Duration::from_millis(self.lease_ms.max(100)),
        };
        for t in &cfg.job_types {
            q.catalog().find(t).context("--job-types")?;
        }
        Ok(Fleet::new(q, client, cfg))
    }
}

/// The fleet as the environment configures it, for the bridge and the agents' pod tools;
/// `None` where Basilica is not configured (`BASILICA_API_TOKEN` unset).
pub fn fleet_from_env(q: Queue) -> anyhow::Result<Option<Fleet>> {
    if !agents::pods::configured() {
        return Ok(None);
    }
    FleetArgs::from_env()?.fleet(q).map(Some)
}

pub(super) async fn run(q: Queue, c: FleetCommand) -> anyhow::Result<()> {
    match c {
        FleetCommand::Run {
            fleet,
            metrics_addr,
        } => {
            let f = fleet.fleet(q)?;
            let stop = shutdown_on_signal();
            if let Some(addr) = metrics_addr {
                let l = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot serve metrics on {addr}"))?;
                let m = f.metrics.clone();
                let answer = move |path: &str| match path {
                    "/metrics" => (200, "text/plain; version=0.0.4; charset=utf-8", m.render()),
                    _ => (404, "text/plain", "not found; try /metrics\n".to_string()),
                };
                tokio::spawn(crate::http_server::serve_plain(l, answer, stop.clone()));
            }
            println!("fleet {} started", f.id);
            f.run(stop).await?;
            Ok(())
        }
        FleetCommand::Status { json } => status(q, json).await,
        FleetCommand::Rent { gpu, count, fleet } => {
            let f = fleet.fleet(q)?;
            let who = Renter {
                pinned: true,
                ..Renter::default()
            };
            for _ in 0..count {
                let rec = f.rent_checked(&gpu, &who).await?;
                println!(
                    "rented {} ({}x{} ${:.2}/h)",
                    rec.name, rec.gpu_count, rec.gpu_type, rec.rate
                );
            }
            Ok(())
        }
        FleetCommand::Release { name, fleet } => {
            crate::basilica::check_name(&name)?;
            let f = fleet.fleet(q)?;
            f.release(&name, false).await?;
            println!("released {name}");
            Ok(())
        }
    }
}

async fn status(q: Queue, json: bool) -> anyhow::Result<()> {
    let (leader, status) = crate::fleet::read_status(&q).await?;
    let spend = crate::fleet::read_spend(&q).await?;
    if json {
        println!(
            "{}",
            serde_json::json!({"leader": leader, "status": status, "spend": spend})
        );
        return Ok(());
    }
    let Some(s) = status else {
        println!(
            "no fleet leader has reported yet (leader: {})",
            leader.as_deref().unwrap_or("none")
        );
        return Ok(());
    };
    println!(
        "leader {} | backlog {} waiting, {} running | ${:.2}/h now (budget ${:.2}/h) | ${:.4} spent today (budget ${:.2}){}",
        leader.as_deref().unwrap_or("none"),
        s.waiting,
        s.in_flight,
        s.rate_now,
        s.budget_per_hour,
        s.spent_today,
        s.budget_per_day,
        s.balance.map(|b| format!(" | balance ${b:.2}")).unwrap_or_default()
    );
    println!(
        "{:<32} {:<10} {:>8} {:<10} {:<7} {:>4} {:>10}",
        "pod", "gpu", "$/h", "phase", "worker", "jobs", "spent"
    );
    for p in &s.pods {
        println!(
            "{:<32} {:<10} {:>8.2} {:<10} {:<7} {:>4} {:>10.4}{}",
            p.name,
            p.gpu_type,
            p.rate,
            p.phase,
            if p.worker_live { "live" } else { "-" },
            p.in_flight,
            p.spent,
            if p.manual { " (pinned)" } else { "" }
        );
    }
    for (run, dollars) in &spend.per_run {
        println!("run {run}: ${dollars:.4}");
    }
    for b in &s.blocked {
        println!("held back: {b}");
    }
    Ok(())
}
