//! GPU pod tools for the LLM agents (the seed trainer's Basilica tools): list the GPU
//! offerings, the balance and budgets, rent a training pod, get / list / delete pods, read a
//! pod's logs and wait until one is ready. The agent calls them; [`PodDesk`] does the work.
//!
//! This crate does not talk to Basilica or Redis: the binary implements [`PodDesk`] over its
//! Basilica client and the fleet (`synth_city::fleet::desk`), bound to the run and bot the
//! agent works for. The rules live there, in the one code path every rental takes (allowed
//! GPU types, the price cap per GPU, the hourly and daily budgets, the balance; spend recorded
//! per pod, day and run), and so does who may delete what; a refusal comes back here as a
//! [`PodError`] naming the rule, which the agent reads as its tool's error.
//!
//! The tools exist only where the session has a desk ([`crate::ResearchSession::pods`]): a
//! worker with `BASILICA_API_TOKEN` set. The built-in trainer names them only then
//! ([`configured`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::tools::{ToolDef, ToolError, ToolRegistry};

/// The pod tools, in the order the trainer's definition lists them.
pub const POD_TOOLS: &[&str] = &[
    "list_gpu_offerings",
    "get_balance",
    "create_training_deployment",
    "get_deployment",
    "list_deployments",
    "delete_deployment",
    "deployment_logs",
    "wait_for_deployment",
];

/// Longest `wait_for_deployment`, seconds.
pub const MAX_WAIT_SECS: u64 = 1800;
/// Most log lines one `deployment_logs` call returns.
pub const MAX_LOG_LINES: u32 = 1000;

/// Whether Basilica is configured here (`BASILICA_API_TOKEN` set): the built-in trainer then
/// has the pod tools.
pub fn configured() -> bool {
    std::env::var("BASILICA_API_TOKEN").is_ok_and(|t| !t.trim().is_empty())
}

/// Why a pod call did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PodError {
    /// A budget rule refused it (the message names the rule: allowed GPU types, price cap,
    /// hourly or daily budget, balance).
    #[error("refused: {0}")]
    Refused(String),
    /// The pod is not the caller's to change or read.
    #[error("not yours: {0}")]
    Forbidden(String),
    /// No fleet pod of that name.
    #[error("no pod named `{0}` in the fleet; list_deployments shows them")]
    NotFound(String),
    /// The request itself is wrong (a bad name, a bad count).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// Basilica or Redis failed; worth trying later.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// One GPU offering, with whether the fleet's rules allow renting it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodOffering {
    pub id: String,
    pub gpu_type: String,
    pub gpu_count: u32,
    pub gpu_memory_gb: Option<u32>,
    /// $/h of the whole offering.
    pub hourly_rate: f64,
    pub rate_per_gpu: f64,
    pub region: String,
    /// Within the allowed GPU types and the price cap per GPU.
    pub allowed: bool,
}

/// The balance and what the budgets leave.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodBudget {
    /// The account's balance ($).
    pub balance: f64,
    /// $/h of every fleet pod now.
    pub rate_now: f64,
    pub budget_per_hour: f64,
    pub spent_today: f64,
    pub budget_per_day: f64,
    pub allowed_gpu_types: Vec<String>,
    /// Most $/h per GPU.
    pub max_rate_per_gpu: f64,
}

/// One fleet pod.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodInfo {
    pub name: String,
    pub gpu_type: String,
    pub gpu_count: u32,
    /// $/h of the pod.
    pub rate: f64,
    /// Basilica's phase (`Pending`, `Running`, `Failed`; `Gone` once Basilica lost it).
    pub phase: String,
    /// Running with its replica ready: its worker takes jobs.
    pub ready: bool,
    /// The run it was rented for, if any.
    pub run_id: Option<String>,
    /// The bot it was rented for, if any (autoscaler and operator pods have none).
    pub bot: Option<String>,
    /// Pinned: never deleted for idleness.
    pub pinned: bool,
    pub created_ms: u64,
    /// The caller may delete it and read its logs.
    pub yours: bool,
}

/// Basilica and the fleet as the pod tools and the bridge see them, bound to one caller.
#[async_trait::async_trait]
pub trait PodDesk: Send + Sync {
    async fn offerings(&self) -> Result<Vec<PodOffering>, PodError>;
    async fn budget(&self) -> Result<PodBudget, PodError>;
    /// Rents one pod of `gpu_type` for the caller, within the rules.
    async fn rent(&self, gpu_type: &str) -> Result<PodInfo, PodError>;
    async fn get(&self, name: &str) -> Result<PodInfo, PodError>;
    async fn list(&self) -> Result<Vec<PodInfo>, PodError>;
    /// Deletes one of the caller's pods.
    async fn delete(&self, name: &str) -> Result<(), PodError>;
    /// The last `tail` lines of one of the caller's pods' logs.
    async fn logs(&self, name: &str, tail: u32) -> Result<String, PodError>;
}

/// Polls `name` every `poll` until it is ready (`Ok`), failed or gone (`Err`), or `timeout`
/// passed (`Ok` with `ready: false`).
pub async fn wait_ready(
    desk: &dyn PodDesk,
    name: &str,
    timeout: Duration,
    poll: Duration,
) -> Result<PodInfo, PodError> {
    let start = Instant::now();
    loop {
        let p = desk.get(name).await?;
        if p.ready {
            return Ok(p);
        }
        if matches!(p.phase.as_str(), "Failed" | "Gone" | "Terminating") {
            return Err(PodError::Unavailable(format!(
                "pod {name} will not become ready: its phase is {}; delete it and rent another",
                p.phase
            )));
        }
        if start.elapsed() >= timeout {
            return Ok(p);
        }
        tokio::time::sleep(poll.min(timeout.saturating_sub(start.elapsed()))).await;
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
struct Nothing {}

#[derive(Debug, Deserialize, JsonSchema)]
struct RentArgs {
    /// The GPU type (`A4000`, `H100`, ...), as list_gpu_offerings names it.
    gpu_type: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
struct NameArgs {
    /// The pod's name (`sc-...`), as create_training_deployment or list_deployments gave it.
    name: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
struct LogsArgs {
    name: String,
    /// How many of the last lines (default 100, at most 1000).
    tail: Option<u32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
struct WaitArgs {
    name: String,
    /// How long to wait, seconds (default 600, at most 1800).
    timeout_secs: Option<u64>,
}

fn tool_err(e: PodError) -> ToolError {
    ToolError(e.to_string())
}

fn to_value<T: Serialize>(v: T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// The pod tools over `desk`; `poll` is how often `wait_for_deployment` looks.
pub fn pod_tools(desk: Arc<dyn PodDesk>, poll: Duration) -> ToolRegistry {
    let mut reg = ToolRegistry::new();
    let d = desk.clone();
    reg.register(ToolDef::typed(
        "list_gpu_offerings",
        "List the GPU offerings available now with their prices ($/h per pod and per GPU) and whether the fleet's rules allow renting each.",
        move |_: Nothing| {
            let d = d.clone();
            async move { Ok(json!({"offerings": d.offerings().await.map_err(tool_err)?})) }
        },
    ));
    let d = desk.clone();
    reg.register(ToolDef::typed(
        "get_balance",
        "The account's balance, the fleet's $/h now, spend today, and the budgets (per hour, per day, allowed GPU types, price cap per GPU) every rental must fit.",
        move |_: Nothing| {
            let d = d.clone();
            async move { Ok(to_value(d.budget().await.map_err(tool_err)?)) }
        },
    ));
    let d = desk.clone();
    reg.register(ToolDef::typed(
        "create_training_deployment",
        "Rent one GPU pod of gpu_type for this run: a trainer worker that takes this deployment's train and experiment jobs from the queue. Refused (with the rule named) when the GPU type is not allowed, costs more than the cap, or would pass the hourly or daily budget or the balance. The pod is deleted after it idles; delete it yourself when done.",
        move |a: RentArgs| {
            let d = d.clone();
            async move { Ok(json!({"pod": d.rent(&a.gpu_type).await.map_err(tool_err)?})) }
        },
    ));
    let d = desk.clone();
    reg.register(ToolDef::typed(
        "get_deployment",
        "One fleet pod: GPU, $/h, phase, whether it is ready, whose it is.",
        move |a: NameArgs| {
            let d = d.clone();
            async move { Ok(json!({"pod": d.get(&a.name).await.map_err(tool_err)?})) }
        },
    ));
    let d = desk.clone();
    reg.register(ToolDef::typed(
        "list_deployments",
        "Every fleet pod (the autoscaler's, the operator's and the agents'), each with its phase and whether it is yours.",
        move |_: Nothing| {
            let d = d.clone();
            async move { Ok(json!({"pods": d.list().await.map_err(tool_err)?})) }
        },
    ));
    let d = desk.clone();
    reg.register(ToolDef::typed(
        "delete_deployment",
        "Delete one of your pods (rented for this run or its bot); its spend is recorded up to now.",
        move |a: NameArgs| {
            let d = d.clone();
            async move {
                d.delete(&a.name).await.map_err(tool_err)?;
                Ok(json!({"deleted": a.name}))
            }
        },
    ));
    let d = desk.clone();
    reg.register(ToolDef::typed(
        "deployment_logs",
        "The last lines of one of your pods' logs (its worker's output).",
        move |a: LogsArgs| {
            let d = d.clone();
            async move {
                let tail = a.tail.unwrap_or(100).clamp(1, MAX_LOG_LINES);
                let logs = d.logs(&a.name, tail).await.map_err(tool_err)?;
                Ok(json!({"name": a.name, "logs": logs}))
            }
        },
    ));
    let d = desk;
    reg.register(ToolDef::typed(
        "wait_for_deployment",
        "Wait until a pod is ready (running, its worker taking jobs), failed, or timeout_secs passed; returns the pod with ready true or false.",
        move |a: WaitArgs| {
            let d = d.clone();
            async move {
                let secs = a.timeout_secs.unwrap_or(600).min(MAX_WAIT_SECS);
                let start = Instant::now();
                let p = wait_ready(&*d, &a.name, Duration::from_secs(secs), poll)
                    .await
                    .map_err(tool_err)?;
                Ok(json!({"ready": p.ready, "waited_secs": start.elapsed().as_secs(), "pod": p}))
            }
        },
    ));
    reg
}

/// Adds the pod tools over `desk` to `reg` (nothing without a desk).
pub fn add_pod_tools(reg: &mut ToolRegistry, desk: Option<Arc<dyn PodDesk>>) {
    if let Some(desk) = desk {
        let tools = pod_tools(desk, Duration::from_secs(1));
        for name in POD_TOOLS {
            if let Some(t) = tools.get(name) {
                reg.register(t.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A desk over a list of pods whose phase advances one step per `get`.
    struct Steps {
        phases: Mutex<Vec<&'static str>>,
    }

    fn pod(phase: &str) -> PodInfo {
        PodInfo {
            name: "sc-a".into(),
            gpu_type: "A4000".into(),
            gpu_count: 1,
            rate: 1.0,
            phase: phase.into(),
            ready: phase == "Running",
            run_id: None,
            bot: None,
            pinned: false,
            created_ms: 0,
            yours: true,
        }
    }

    #[async_trait::async_trait]
    impl PodDesk for Steps {
        async fn offerings(&self) -> Result<Vec<PodOffering>, PodError> {
            Ok(vec![])
        }
        async fn budget(&self) -> Result<PodBudget, PodError> {
            Err(PodError::Unavailable("none".into()))
        }
        async fn rent(&self, gpu_type: &str) -> Result<PodInfo, PodError> {
            Err(PodError::Refused(format!("{gpu_type} not allowed")))
        }
        async fn get(&self, _: &str) -> Result<PodInfo, PodError> {
            let mut p = self.phases.lock().unwrap();
            let phase = if p.len() > 1 { p.remove(0) } else { p[0] };
            Ok(pod(phase))
        }
        async fn list(&self) -> Result<Vec<PodInfo>, PodError> {
            Ok(vec![])
        }
        async fn delete(&self, _: &str) -> Result<(), PodError> {
            Ok(())
        }
        async fn logs(&self, _: &str, _: u32) -> Result<String, PodError> {
            Ok(String::new())
        }
    }

    fn steps(p: Vec<&'static str>) -> Steps {
        Steps {
            phases: Mutex::new(p),
        }
    }

    #[tokio::test]
    async fn waiting_ends_when_ready_failed_or_out_of_time() {
        let ms = Duration::from_millis(1);
        let d = steps(vec!["Pending", "Pending", "Running"]);
        assert!(
            wait_ready(&d, "sc-a", Duration::from_secs(5), ms)
                .await
                .unwrap()
                .ready
        );
        let d = steps(vec!["Pending", "Failed"]);
        let e = wait_ready(&d, "sc-a", Duration::from_secs(5), ms)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("phase is Failed"), "{e}");
        let d = steps(vec!["Pending"]);
        let p = wait_ready(&d, "sc-a", Duration::from_millis(20), ms)
            .await
            .unwrap();
        assert!(!p.ready);
    }

    #[tokio::test]
    async fn a_refusal_reaches_the_model_as_the_tools_error_naming_the_rule() {
        let reg = pod_tools(Arc::new(steps(vec!["Pending"])), Duration::from_millis(1));
        assert_eq!(reg.names().len(), POD_TOOLS.len());
        let mut args = serde_json::Map::new();
        args.insert("gpu_type".into(), json!("H100"));
        let e = reg
            .get("create_training_deployment")
            .unwrap()
            .call(args)
            .await
            .unwrap_err();
        assert_eq!(e.0, "refused: H100 not allowed");
    }
}
