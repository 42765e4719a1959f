//! A client of the Basilica API (Bittensor SN39's GPU cloud): deployments (a container on
//! rented GPUs), the GPU offerings with their prices, and the account's balance. `synth-city
//! fleet` rents trainer pods through it (`crate::fleet`).
//!
//! It does not decide what to rent or when (the fleet's decision function does), and it keeps
//! no state of its own: every answer comes from the API.
//!
//! # Where the API was learned
//! From Basilica's own public sources: the repository `one-covenant/basilica` (the API's
//! deployment handler, `crates/basilica-api/.../deployments`: a create is keyed by the user's
//! `instance_name`, and `/deployments/{instance_name}` addresses it; the Rust SDK's client,
//! `crates/basilica-sdk/src/client.rs`: Bearer authentication, JSON bodies, errors as
//! `{"error": {"code", "message"}}`) and the Python SDK `basilica-sdk` 0.36.8 from PyPI (its
//! type stubs `_basilica.pyi` and the paths and field names in its compiled client). What we
//! use:
//!
//! | call | method and path | body / answer |
//! |---|---|---|
//! | create | `POST /deployments` | `{instanceName, image, replicas, port, command, args, env, resources: {cpu, memory, gpus: {count, model: [..], minGpuMemoryGb}}, ttlSeconds, public, healthCheck: {liveness, readiness, startup: {path, port, initialDelaySeconds, periodSeconds, timeoutSeconds, failureThreshold}}}` → a deployment |
//! | get | `GET /deployments/{name}` | `{instanceName, state, phase, url, replicas: {desired, ready}, message, createdAt}` (404: none) |
//! | list | `GET /deployments` | `{deployments: [{instanceName, state, url, replicas, createdAt}], total}` |
//! | logs | `GET /deployments/{name}/logs?tail=N` | text |
//! | delete | `DELETE /deployments/{name}` | `{instanceName, state, message}` |
//! | offerings | `GET /v2/secure-cloud/gpu-prices?available_only=true&exclude_spot=true` | `{nodes: [{id, provider, gpu_type, gpu_count, gpu_memory_gb_per_gpu, hourly_rate, hourly_rate_per_gpu, availability, region}], count}` |
//! | balance | `GET /billing/balance` | `{balance, last_updated}` |
//!
//! Secrets travel in `env` (the API has no separate secrets field in the SDK version read).
//! Prices arrive as decimal strings or numbers; both are read.
//!
//! # Errors and retries
//! 5xx, timeouts and connection failures are [`BasilicaError::Infrastructure`] and are retried
//! under [`jobs::retry::RetryPolicy`]; 4xx are [`BasilicaError::Rejected`] naming the status
//! and the API's message, never retried. A create whose attempt failed transiently (it timed
//! out, or the server answered 5xx after perhaps acting) is looked up by its instance name
//! before the next attempt, so one request never rents two pods.

use std::collections::BTreeMap;
use std::time::Duration;

use jobs::retry::{Failure, RetryPolicy};
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Deserializer, Serialize};

/// The API when `BASILICA_API_URL` is unset.
pub const DEFAULT_API_URL: &str = "https://api.basilica.ai";

/// What went wrong talking to Basilica.
#[derive(Debug, thiserror::Error)]
pub enum BasilicaError {
    /// The service or the way to it failed (5xx, timeout, connection): worth retrying.
    #[error("Basilica infrastructure error ({what}): {detail}")]
    Infrastructure { what: String, detail: String },
    /// The API refused the request (4xx): it names what was wrong.
    #[error("Basilica refused {what}: HTTP {status}: {message}")]
    Rejected {
        what: String,
        status: u16,
        message: String,
    },
    /// No such deployment.
    #[error("no Basilica deployment named `{0}`")]
    NotFound(String),
    /// The answer was not what the API documents.
    #[error("Basilica answered {what} with something unreadable: {detail}")]
    Malformed { what: String, detail: String },
    /// The client's own configuration (URL, token) is unusable.
    #[error("Basilica client configuration: {0}")]
    Config(String),
}

impl BasilicaError {
    /// An infrastructure error (the service, not the request, is at fault).
    pub fn is_infrastructure(&self) -> bool {
        matches!(self, BasilicaError::Infrastructure { .. })
    }
}

/// A price: Basilica sends decimal strings (`"1.25"`) or numbers.
fn price<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum P {
        N(f64),
        S(String),
    }
    match P::deserialize(d)? {
        P::N(n) => Ok(n),
        P::S(s) => s.trim().parse().map_err(serde::de::Error::custom),
    }
}

fn opt_price<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    #[derive(Deserialize)]
    struct W(#[serde(deserialize_with = "price")] f64);
    Ok(Option::<W>::deserialize(d)?.map(|w| w.0))
}

/// An HTTP probe of the container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Probe {
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub port: Option<u16>,
    pub initial_delay_seconds: u32,
    pub period_seconds: u32,
    pub timeout_seconds: u32,
    pub failure_threshold: u32,
}

/// The probes of a deployment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheck {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub liveness: Option<Probe>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub readiness: Option<Probe>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub startup: Option<Probe>,
}

/// The GPUs a deployment asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GpuRequest {
    pub count: u32,
    /// Acceptable models (`A4000`, `H100`); empty: any.
    #[serde(default)]
    pub model: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub min_gpu_memory_gb: Option<u32>,
}

/// CPU, memory (Kubernetes quantities: `"4"`, `"16Gi"`) and GPUs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resources {
    pub cpu: String,
    pub memory: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub gpus: Option<GpuRequest>,
}

/// `POST /deployments`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateDeployment {
    /// The caller's name for it: the key of get, delete and of a create's retry.
    pub instance_name: String,
    pub image: String,
    pub replicas: u32,
    /// The container port the URL and the probes reach.
    pub port: u16,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub command: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub args: Vec<String>,
    /// Environment, secrets included.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub resources: Option<Resources>,
    /// Basilica deletes the deployment after this long, whatever happens to us.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ttl_seconds: Option<u64>,
    #[serde(default)]
    pub public: bool,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub health_check: Option<HealthCheck>,
}

/// Ready replicas out of desired.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Replicas {
    #[serde(default)]
    pub desired: u32,
    #[serde(default)]
    pub ready: u32,
}

/// A deployment as get and create answer it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    pub instance_name: String,
    /// `Active`, `Failed`, `Terminating`, ...
    #[serde(default)]
    pub state: String,
    /// `Pending`, `Running`, `Failed`, ... (absent before the first reconcile).
    #[serde(default)]
    pub phase: Option<String>,
    #[serde(default)]
    pub url: String,
    #[serde(default)]
    pub replicas: Replicas,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub created_at: String,
}

impl Deployment {
    /// The phase, else the state: what a status line shows.
    pub fn phase_or_state(&self) -> &str {
        self.phase.as_deref().unwrap_or(&self.state)
    }
}

/// `GET /deployments`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeploymentList {
    #[serde(default)]
    pub deployments: Vec<Deployment>,
    #[serde(default)]
    pub total: u64,
}

/// `DELETE /deployments/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deleted {
    pub instance_name: String,
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub message: String,
}

/// A GPU offering with its price.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Offering {
    pub id: String,
    #[serde(default)]
    pub provider: String,
    pub gpu_type: String,
    pub gpu_count: u32,
    #[serde(default)]
    pub gpu_memory_gb_per_gpu: Option<u32>,
    /// $/h for the whole offering (all its GPUs).
    #[serde(deserialize_with = "price")]
    pub hourly_rate: f64,
    /// $/h per GPU, when the API says (else `hourly_rate / gpu_count`).
    #[serde(default, deserialize_with = "opt_price")]
    pub hourly_rate_per_gpu: Option<f64>,
    #[serde(default = "yes")]
    pub availability: bool,
    #[serde(default)]
    pub region: String,
}

fn yes() -> bool {
    true
}

impl Offering {
    /// $/h per GPU.
    pub fn rate_per_gpu(&self) -> f64 {
        self.hourly_rate_per_gpu
            .unwrap_or(self.hourly_rate / self.gpu_count.max(1) as f64)
    }
}

#[derive(Deserialize)]
struct OfferingList {
    #[serde(alias = "offerings", default)]
    nodes: Vec<Offering>,
}

/// The account's balance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Balance {
    #[serde(deserialize_with = "price")]
    pub balance: f64,
    #[serde(default)]
    pub last_updated: Option<String>,
}

/// Where and how to reach the API.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub base_url: String,
    pub token: Option<String>,
    /// One request's limit.
    pub timeout: Duration,
    pub retry: RetryPolicy,
}

impl ClientConfig {
    /// `BASILICA_API_URL` (default [`DEFAULT_API_URL`]) and `BASILICA_API_TOKEN`; 30 s per
    /// request; 4 attempts from 500 ms.
    pub fn from_env() -> Self {
        let base_url = std::env::var("BASILICA_API_URL")
            .ok()
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_API_URL.to_string());
        let token = std::env::var("BASILICA_API_TOKEN")
            .ok()
            .filter(|s| !s.trim().is_empty());
        ClientConfig {
            base_url,
            token,
            timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
        }
    }
}

/// The Basilica API.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
    retry: RetryPolicy,
}

/// The API's error body: `{"error": {"code", "message"}}`, or a plain `{"message"}`.
fn error_message(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or(serde_json::Value::Null);
    v.pointer("/error/message")
        .or_else(|| v.get("message"))
        .or_else(|| v.get("error"))
        .and_then(|m| m.as_str())
        .map(str::to_string)
        .unwrap_or_else(|| body.chars().take(300).collect())
}

impl Client {
    pub fn new(cfg: ClientConfig) -> Result<Self, BasilicaError> {
        let base = cfg.base_url.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(BasilicaError::Config(format!(
                "BASILICA_API_URL `{base}` is not an http(s) URL; set it to e.g. {DEFAULT_API_URL}"
            )));
        }
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| BasilicaError::Config(e.to_string()))?;
        Ok(Client {
            http,
            base,
            token: cfg.token,
            retry: cfg.retry,
        })
    }

    /// From the environment ([`ClientConfig::from_env`]).
    pub fn from_env() -> Result<Self, BasilicaError> {
        Self::new(ClientConfig::from_env())
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// One attempt: the answer's body on 2xx; otherwise the failure sorted.
    async fn attempt(
        &self,
        what: &str,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<String, Failure<BasilicaError>> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("accept", "application/json");
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let infra = |detail: String| BasilicaError::Infrastructure {
            what: what.to_string(),
            detail,
        };
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                let kind = if e.is_timeout() {
                    "timed out"
                } else if e.is_connect() {
                    "cannot connect"
                } else {
                    "request failed"
                };
                return Err(Failure::transient(infra(format!("{kind}: {e}"))));
            }
        };
        let status = resp.status();
        let after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = match resp.text().await {
            Ok(t) => t,
            Err(e) => {
                return Err(Failure::transient(infra(format!(
                    "reading the answer: {e}"
                ))))
            }
        };
        if status.is_success() {
            return Ok(text);
        }
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            return Err(Failure::Transient {
                error: infra(format!(
                    "HTTP {}: {}",
                    status.as_u16(),
                    error_message(&text)
                )),
                after,
            });
        }
        if status == StatusCode::NOT_FOUND {
            return Err(Failure::Permanent(BasilicaError::NotFound(
                path.rsplit('/').next().unwrap_or(path).to_string(),
            )));
        }
        let mut message = error_message(&text);
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            message.push_str(" (check BASILICA_API_TOKEN)");
        }
        Err(Failure::Permanent(BasilicaError::Rejected {
            what: what.to_string(),
            status: status.as_u16(),
            message,
        }))
    }

    /// A call under the retry policy, its answer decoded.
    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<T, BasilicaError> {
        let text = self
            .retry
            .run(what, |_| {
                self.attempt(what, method.clone(), path, body.as_ref())
            })
            .await
            .map_err(|e| e.error)?;
        decode(what, &text)
    }

    /// Creates a deployment. Each attempt after a transient failure first looks the instance
    /// name up: if the failed attempt created it after all, that deployment is the answer.
    pub async fn create(&self, req: &CreateDeployment) -> Result<Deployment, BasilicaError> {
        let what = format!("create {}", req.instance_name);
        let body = serde_json::to_value(req).map_err(|e| BasilicaError::Malformed {
            what: what.clone(),
            detail: e.to_string(),
        })?;
        let text = self
            .retry
            .run(&what, |n| {
                let body = &body;
                let what = &what;
                async move {
                    if n > 1 {
                        match self.get_once(&req.instance_name).await {
                            Ok(d) => return Ok(Found::Existing(d)),
                            Err(BasilicaError::NotFound(_)) => {}
                            // the lookup failing is the same outage: try again later
                            Err(e) if e.is_infrastructure() => {
                                return Err(Failure::transient(e));
                            }
                            Err(e) => return Err(Failure::Permanent(e)),
                        }
                    }
                    self.attempt(what, Method::POST, "/deployments", Some(body))
                        .await
                        .map(Found::Created)
                }
            })
            .await
            .map_err(|e| e.error)?;
        match text {
            Found::Existing(d) => Ok(d),
            Found::Created(t) => decode(&what, &t),
        }
    }

    /// One GET of a deployment, no retry (the create's lookup).
    async fn get_once(&self, name: &str) -> Result<Deployment, BasilicaError> {
        let what = format!("get {name}");
        match self
            .attempt(&what, Method::GET, &format!("/deployments/{name}"), None)
            .await
        {
            Ok(t) => decode(&what, &t),
            Err(Failure::Transient { error, .. }) | Err(Failure::Permanent(error)) => Err(error),
        }
    }

    /// A deployment by instance name ([`BasilicaError::NotFound`] when there is none).
    pub async fn get(&self, name: &str) -> Result<Deployment, BasilicaError> {
        check_name(name)?;
        self.call(
            &format!("get {name}"),
            Method::GET,
            &format!("/deployments/{name}"),
            None,
        )
        .await
    }

    /// Every deployment of the account.
    pub async fn list(&self) -> Result<DeploymentList, BasilicaError> {
        self.call("list deployments", Method::GET, "/deployments", None)
            .await
    }

    /// The last `tail` lines of a deployment's logs.
    pub async fn logs(&self, name: &str, tail: u32) -> Result<String, BasilicaError> {
        check_name(name)?;
        let what = format!("logs of {name}");
        let path = format!("/deployments/{name}/logs?tail={tail}");
        self.retry
            .run(&what, |_| self.attempt(&what, Method::GET, &path, None))
            .await
            .map_err(|e| e.error)
    }

    /// Deletes a deployment (one already gone is [`BasilicaError::NotFound`]).
    pub async fn delete(&self, name: &str) -> Result<Deleted, BasilicaError> {
        check_name(name)?;
        self.call(
            &format!("delete {name}"),
            Method::DELETE,
            &format!("/deployments/{name}"),
            None,
        )
        .await
    }

    /// The GPU offerings available now (no spot instances), with their prices.
    pub async fn offerings(&self) -> Result<Vec<Offering>, BasilicaError> {
        let l: OfferingList = self
            .call(
                "list GPU offerings",
                Method::GET,
                "/v2/secure-cloud/gpu-prices?available_only=true&exclude_spot=true",
                None,
            )
            .await?;
        Ok(l.nodes)
    }

    /// The account's balance in dollars.
    pub async fn balance(&self) -> Result<Balance, BasilicaError> {
        self.call("balance", Method::GET, "/billing/balance", None)
            .await
    }
}

enum Found {
    Existing(Deployment),
    Created(String),
}

fn decode<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> Result<T, BasilicaError> {
    serde_json::from_str(text).map_err(|e| BasilicaError::Malformed {
        what: what.to_string(),
        detail: format!("{e} in {}", text.chars().take(200).collect::<String>()),
    })
}

/// Instance names go into paths: lower-case letters, digits and `-`, 1 to 63 characters (a
/// Kubernetes name, as the API's validator wants).
pub fn check_name(name: &str) -> Result<(), BasilicaError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(BasilicaError::Config(format!(
            "deployment name `{name}` must be 1 to 63 lower-case letters, digits or `-`, not starting or ending with `-`"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offerings_read_string_and_number_prices() {
        let l: OfferingList = serde_json::from_str(
            r#"{"nodes": [
                {"id": "a", "gpu_type": "A4000", "gpu_count": 2, "hourly_rate": "1.50"},
                {"id": "b", "gpu_type": "H100", "gpu_count": 1, "hourly_rate": 2.5,
                 "hourly_rate_per_gpu": "2.5", "availability": false}
            ], "count": 2}"#,
        )
        .unwrap();
        assert_eq!(l.nodes[0].rate_per_gpu(), 0.75);
        assert!(l.nodes[0].availability);
        assert_eq!(l.nodes[1].rate_per_gpu(), 2.5);
        assert!(!l.nodes[1].availability);
    }

    #[test]
    fn a_create_is_sent_in_the_apis_camel_case() {
        let req = CreateDeployment {
            instance_name: "sc-x".into(),
            image: "img".into(),
            replicas: 1,
            port: 8378,
            command: vec!["synth-city".into()],
            args: vec![],
            env: BTreeMap::new(),
            resources: Some(Resources {
                cpu: "4".into(),
                memory: "16Gi".into(),
                gpus: Some(GpuRequest {
                    count: 1,
                    model: vec!["A4000".into()],
                    min_gpu_memory_gb: Some(16),
                }),
            }),
            ttl_seconds: Some(3600),
            public: false,
            health_check: None,
        };
        let v = serde_json::to_value(&req).unwrap();
        assert_eq!(v["instanceName"], "sc-x");
        assert_eq!(v["ttlSeconds"], 3600);
        assert_eq!(v["resources"]["gpus"]["minGpuMemoryGb"], 16);
        assert!(v.get("args").is_none());
    }

    #[test]
    fn names_are_checked_before_they_reach_a_path() {
        assert!(check_name("sc-01abc").is_ok());
        for bad in ["", "A", "a/b", "-a", "a-", &"a".repeat(64)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn error_bodies_give_their_message() {
        assert_eq!(
            error_message(r#"{"error": {"code": "X", "message": "no such GPU"}}"#),
            "no such GPU"
        );
        assert_eq!(error_message("plain"), "plain");
    }
}
