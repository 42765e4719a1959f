//! `synth-city client <command>`: the bridge's HTTP API from the command line.
//!
//! Reads `SYNTH_BRIDGE_URL` (default `http://127.0.0.1:8377`), `BRIDGE_API_KEY`
//! (sent as `X-API-Key`: the operator's key or a bot's, `synth-city bots add`) and
//! `SYNTH_BOT_ID` (sent as `X-Bot-Id` when set: the bot an operator acts as; a bot's key names
//! its bot itself), or the matching flags. Prints the answer as pretty JSON; an HTTP error prints the
//! bridge's `{"error": ...}` to stderr and exits non-zero. Connection failures
//! and timeouts are retried (2 s, then 4 s) before giving up.

use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

/// `SYNTH_BRIDGE_URL` when nothing sets it: the bridge's default address.
pub const DEFAULT_BRIDGE_URL: &str = "http://127.0.0.1:8377";

/// Where the bridge is and who is calling.
#[derive(Debug, Args)]
pub struct ClientArgs {
    /// The bridge's base URL.
    #[arg(long, env = "SYNTH_BRIDGE_URL", default_value = DEFAULT_BRIDGE_URL)]
    pub url: String,
    /// The API key (`X-API-Key`): the operator's, or a bot's (`synth-city bots add`).
    #[arg(long, env = "BRIDGE_API_KEY", hide_env_values = true)]
    pub key: Option<String>,
    /// The bot an operator acts as (`X-Bot-Id`); with a bot's key, leave it out (the key
    /// names the bot) or give that bot's own id.
    #[arg(long, env = "SYNTH_BOT_ID")]
    pub bot: Option<String>,
    /// Seconds to wait for an answer.
    #[arg(long, env = "SYNTH_BRIDGE_TIMEOUT", default_value_t = 300)]
    pub timeout: u64,
    #[command(subcommand)]
    pub command: ClientCommand,
}

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Liveness (details with a valid key).
    Health,
    /// Backbone blocks.
    Blocks,
    /// Heads.
    Heads,
    /// Presets.
    Presets,
    /// Start a pipeline run (returns at once with its id).
    Run {
        #[arg(long)]
        max_experiments: Option<usize>,
        #[arg(long)]
        epochs: Option<usize>,
        #[arg(long)]
        rounds: Option<usize>,
        #[arg(long)]
        retries: Option<u32>,
        #[arg(long)]
        publish: bool,
        /// Answer 429 instead of queueing when no permit is free.
        #[arg(long)]
        no_wait: bool,
        /// Any other budget fields, as a JSON object merged into the body.
        #[arg(long)]
        body: Option<String>,
    },
    /// The latest pipeline run of this bot.
    Status,
    /// This bot's pipeline runs, or one run (an id, or `latest`: the newest).
    Runs { id: Option<String> },
    /// Cancel a pipeline run (an id, or `latest`: the newest).
    CancelRun { id: String },
    /// Rank this bot's experiments (or every bot's, with --all).
    Compare {
        #[arg(long)]
        all: bool,
    },
    /// The latest price of an asset from its realised-price venue.
    Price { asset: String },
    /// Bars of an asset from the bridge's data directory.
    History {
        asset: String,
        #[arg(long, default_value_t = 30.0)]
        days: f64,
        #[arg(long, default_value = "5m")]
        timeframe: String,
    },
    /// Jobs: enqueue, status, cancel, stats.
    Jobs {
        #[command(subcommand)]
        command: JobsCmd,
    },
    /// Live workers.
    Workers,
    /// The pipeline-run semaphore.
    Semaphore,
    /// This bot's session.
    Summary,
    /// Forget this bot's experiments and session.
    Clear,
    /// Experiments: create, validate, run, results.
    Experiment {
        #[command(subcommand)]
        command: ExperimentCmd,
    },
    /// This bot's experiments, best first.
    Experiments {
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Component sources: list, or read one.
    Registry { path: Option<String> },
    /// LLM agents: list, or read one.
    Agents { name: Option<String> },
    /// Prompt templates: list, or read one.
    Prompts { name: Option<String> },
    /// Any route: METHOD PATH [--body JSON].
    Call {
        method: String,
        path: String,
        #[arg(long)]
        body: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum JobsCmd {
    /// Enqueue a job.
    Enqueue {
        #[arg(long = "type")]
        job_type: String,
        #[arg(long, default_value = "{}")]
        payload: String,
        #[arg(long)]
        idempotency_key: Option<String>,
        #[arg(long)]
        delay: Option<f64>,
    },
    /// A job's status record.
    Status { id: String },
    /// Cancel a job.
    Cancel { id: String },
    /// Queue counts per job type.
    Stats,
}

#[derive(Debug, Subcommand)]
pub enum ExperimentCmd {
    /// Validate and store a spec in this bot's session.
    Create {
        /// Comma-separated block names (or use --preset).
        #[arg(long, value_delimiter = ',')]
        blocks: Vec<String>,
        #[arg(long)]
        head: Option<String>,
        #[arg(long)]
        preset: Option<String>,
        #[arg(long)]
        d_model: Option<usize>,
        #[arg(long)]
        epochs: Option<usize>,
        #[arg(long)]
        lr: Option<f64>,
        #[arg(long)]
        name: Option<String>,
        /// Any other fields, as a JSON object merged into the body.
        #[arg(long)]
        body: Option<String>,
    },
    /// Validate a spec file (JSON).
    Validate { file: String },
    /// Run a stored experiment (--id) or a spec file (--file).
    Run {
        #[arg(long)]
        id: Option<String>,
        #[arg(long)]
        file: Option<String>,
        #[arg(long)]
        epochs: Option<usize>,
    },
    /// An experiment's state and results.
    Results { id: String },
}

fn obj(text: &str, what: &str) -> anyhow::Result<serde_json::Map<String, Value>> {
    match serde_json::from_str::<Value>(text).with_context(|| format!("{what} is not JSON"))? {
        Value::Object(m) => Ok(m),
        _ => bail!("{what} must be a JSON object"),
    }
}

fn spec_file(path: &str) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?;
    serde_json::from_str(&text).with_context(|| format!("{path} is not JSON"))
}

/// Strips `None` fields so the bridge applies its defaults.
fn compact(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(m.into_iter().filter(|(_, v)| !v.is_null()).collect()),
        v => v,
    }
}

/// What to send: method, path, body.
fn request(c: ClientCommand) -> anyhow::Result<(&'static str, String, Option<Value>)> {
    use ClientCommand as C;
    let get = |p: &str| Ok(("GET", p.to_string(), None));
    match c {
        C::Health => get("/health"),
        C::Blocks => get("/components/blocks"),
        C::Heads => get("/components/heads"),
        C::Presets => get("/components/presets"),
        C::Run {
            max_experiments,
            epochs,
            rounds,
            retries,
            publish,
            no_wait,
            body,
        } => {
            let mut b = compact(json!({"max_experiments": max_experiments, "epochs": epochs,
                "rounds": rounds, "retries": retries}));
            if publish {
                b["publish"] = json!(true);
            }
            if no_wait {
                b["wait"] = json!(false);
            }
            if let Some(extra) = body {
                for (k, v) in obj(&extra, "--body")? {
                    b[k] = v;
                }
            }
            Ok(("POST", "/pipeline/run".into(), Some(b)))
        }
        C::Status => get("/pipeline/status"),
        C::Runs { id: None } => get("/runs"),
        C::Runs { id: Some(id) } => get(&format!("/runs/{id}")),
        C::CancelRun { id } => Ok(("POST", format!("/runs/{id}/cancel"), Some(json!({})))),
        C::Compare { all: false } => get("/experiment/compare"),
        C::Compare { all: true } => get("/experiment/compare/all"),
        C::Price { asset } => get(&format!("/market/price/{asset}")),
        C::History {
            asset,
            days,
            timeframe,
        } => get(&format!(
            "/market/history/{asset}?days={days}&timeframe={timeframe}"
        )),
        C::Jobs { command } => match command {
            JobsCmd::Enqueue {
                job_type,
                payload,
                idempotency_key,
                delay,
            } => {
                let payload = Value::Object(obj(&payload, "--payload")?);
                Ok((
                    "POST",
                    "/jobs".into(),
                    Some(compact(json!({"type": job_type, "payload": payload,
                        "idempotency_key": idempotency_key, "delay_secs": delay}))),
                ))
            }
            JobsCmd::Status { id } => get(&format!("/jobs/{id}")),
            JobsCmd::Cancel { id } => Ok(("POST", format!("/jobs/{id}/cancel"), Some(json!({})))),
            JobsCmd::Stats => get("/queue/stats"),
        },
        C::Workers => get("/workers"),
        C::Semaphore => get("/semaphore"),
        C::Summary => get("/session/summary"),
        C::Clear => Ok(("POST", "/session/clear".into(), Some(json!({})))),
        C::Experiment { command } => match command {
            ExperimentCmd::Create {
                blocks,
                head,
                preset,
                d_model,
                epochs,
                lr,
                name,
                body,
            } => {
                let blocks = (!blocks.is_empty()).then_some(blocks);
                let mut b = compact(json!({"blocks": blocks, "head": head, "preset": preset,
                    "d_model": d_model, "epochs": epochs, "lr": lr, "name": name}));
                if let Some(extra) = body {
                    for (k, v) in obj(&extra, "--body")? {
                        b[k] = v;
                    }
                }
                Ok(("POST", "/experiment/create".into(), Some(b)))
            }
            ExperimentCmd::Validate { file } => Ok((
                "POST",
                "/experiment/validate".into(),
                Some(json!({"experiment": spec_file(&file)?})),
            )),
            ExperimentCmd::Run { id, file, epochs } => {
                let spec = file.as_deref().map(spec_file).transpose()?;
                Ok((
                    "POST",
                    "/experiment/run".into(),
                    Some(compact(
                        json!({"id": id, "experiment": spec, "epochs": epochs}),
                    )),
                ))
            }
            ExperimentCmd::Results { id } => get(&format!("/experiment/results/{id}")),
        },
        C::Experiments { limit } => get(&format!("/history/experiments?limit={limit}")),
        C::Registry { path: None } => get("/registry/files"),
        C::Registry { path: Some(p) } => get(&format!("/registry/read?path={}", enc(&p))),
        C::Agents { name: None } => get("/agents/list"),
        C::Agents { name: Some(n) } => get(&format!("/agents/read?filename={}", enc(&n))),
        C::Prompts { name: None } => get("/agents/prompts/list"),
        C::Prompts { name: Some(n) } => get(&format!("/agents/prompts/read?filename={}", enc(&n))),
        C::Call { method, path, body } => {
            let m = match method.to_ascii_uppercase().as_str() {
                "GET" => "GET",
                "POST" => "POST",
                "DELETE" => "DELETE",
                other => bail!("method {other:?}: use GET, POST or DELETE"),
            };
            let body = body
                .map(|b| serde_json::from_str::<Value>(&b).context("--body is not JSON"))
                .transpose()?;
            let path = if path.starts_with('/') {
                path
            } else {
                format!("/{path}")
            };
            Ok((m, path, body.or_else(|| (m == "POST").then(|| json!({})))))
        }
    }
}

/// Percent-encodes a query value.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Runs one client command.
pub async fn run(a: ClientArgs) -> anyhow::Result<()> {
    let (method, path, body) = request(a.command)?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(a.timeout.max(1)))
        .connect_timeout(Duration::from_secs(10))
        .build()?;
    let url = format!("{}{path}", a.url.trim_end_matches('/'));
    let mut delays = [2u64, 4].into_iter();
    let res = loop {
        let mut req = match method {
            "POST" => http.post(&url),
            "DELETE" => http.delete(&url),
            _ => http.get(&url),
        };
        if let Some(b) = &a.bot {
            req = req.header("X-Bot-Id", b);
        }
        if let Some(k) = &a.key {
            req = req.header("X-API-Key", k);
        }
        if let Some(b) = &body {
            req = req.json(b);
        }
        match req.send().await {
            Ok(r) => break r,
            Err(e) if e.is_connect() || e.is_timeout() => match delays.next() {
                Some(d) => {
                    eprintln!("{url}: {e}; retrying in {d} s");
                    tokio::time::sleep(Duration::from_secs(d)).await;
                }
                None => bail!("cannot reach the bridge at {}: {e}", a.url),
            },
            Err(e) => bail!("{url}: {e}"),
        }
    };
    let status = res.status();
    let text = res.text().await.context("reading the answer")?;
    let shown = serde_json::from_str::<Value>(&text)
        .map(|v| serde_json::to_string_pretty(&v).expect("JSON prints"))
        .unwrap_or(text);
    if status.is_success() {
        println!("{shown}");
        Ok(())
    } else {
        eprintln!("{shown}");
        bail!("{method} {path}: HTTP {status}")
    }
}
