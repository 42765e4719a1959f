//! Where an agent's LLM lives: base URL, API key and model per agent, request timeouts and the
//! retry policy. Defaults are the seed's (`config.py`): Chutes at `https://llm.chutes.ai/v1`,
//! `Qwen/Qwen3-235B-A22B` for the planner and trainer, `Qwen/Qwen2.5-Coder-32B-Instruct` for the
//! others; every one can be overridden from the environment (`PLANNER_MODEL`, ...).

use std::time::Duration;

use super::AgentName;

/// The seed's `CHUTES_BASE_URL`.
pub const DEFAULT_BASE_URL: &str = "https://llm.chutes.ai/v1";
/// The seed's `DEFAULT_MODEL` (codechecker, debugger, publisher and any other agent).
pub const DEFAULT_MODEL: &str = "Qwen/Qwen2.5-Coder-32B-Instruct";
/// The seed's default for `PLANNER_MODEL`, `TRAINER_MODEL` and `AUTHOR_MODEL`.
pub const LARGE_MODEL: &str = "Qwen/Qwen3-235B-A22B";
/// The seed's `MAX_AGENT_TURNS`.
pub const DEFAULT_MAX_TURNS: usize = 50;
/// The seed's `BaseAgentWrapper` temperature.
pub const DEFAULT_TEMPERATURE: f32 = 0.1;

/// The seed's model for an agent (before environment overrides).
pub fn default_model(agent: AgentName) -> &'static str {
    match agent {
        AgentName::Planner | AgentName::Trainer => LARGE_MODEL,
        _ => DEFAULT_MODEL,
    }
}

/// How often and how patiently a chat-completion call is retried (the LLM settings of the
/// project's one [`jobs::retry::RetryPolicy`]).
///
/// Retried: HTTP 429, HTTP 5xx, timeouts, connection and body-read errors. The delay before
/// retry `k` (1-based) is `base_delay * 2^(k-1)`, capped at `max_delay`; a 429's `Retry-After`
/// (seconds) replaces it, still capped. The seed: 4 retries sleeping 2, 4, 8, 16 s.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (so `retries + 1` attempts in all).
    pub retries: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            retries: 4,
            base_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The delay before retry `retry` (1-based), without `Retry-After`.
    pub fn delay(&self, retry: u32) -> Duration {
        self.policy().delay(retry)
    }

    /// These settings as the retry policy every client runs under.
    pub fn policy(&self) -> jobs::retry::RetryPolicy {
        jobs::retry::RetryPolicy {
            attempts: self.retries + 1,
            base: self.base_delay,
            max_delay: self.max_delay,
            ..Default::default()
        }
    }
}

/// One agent's connection to an OpenAI-compatible chat-completions API.
#[derive(Clone, PartialEq)]
pub struct LlmConfig {
    /// e.g. `https://llm.chutes.ai/v1` (the client appends `/chat/completions`).
    pub base_url: String,
    pub api_key: String,
    pub model: String,
    /// Time to establish a connection (the seed: 120 s).
    pub connect_timeout: Duration,
    /// Time for one whole request, body included (the seed reads for up to 300 s).
    pub request_timeout: Duration,
    pub retry: RetryPolicy,
}

impl std::fmt::Debug for LlmConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &"<redacted>")
            .field("model", &self.model)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("retry", &self.retry)
            .finish()
    }
}

/// Why no configuration could be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "no API key is set: CHUTES_API_KEY is empty or missing, so no LLM agent can run; \
         the pipeline's built-in (non-LLM) agents are used instead"
    )]
    NoApiKey,
    #[error("{name}={value:?} is not valid: {why}")]
    Invalid {
        name: String,
        value: String,
        why: String,
    },
}

impl LlmConfig {
    /// A configuration with the given endpoint and the default timeouts and retry policy.
    pub fn new(base_url: &str, api_key: &str, model: &str) -> Self {
        LlmConfig {
            base_url: base_url.trim_end_matches('/').to_string(),
            api_key: api_key.to_string(),
            model: model.to_string(),
            connect_timeout: Duration::from_secs(120),
            request_timeout: Duration::from_secs(300),
            retry: RetryPolicy::default(),
        }
    }

    /// The configuration for `agent` from the process environment.
    pub fn from_env(agent: AgentName) -> Result<Self, ConfigError> {
        Self::from_lookup(agent, |k| std::env::var(k).ok())
    }

    /// The configuration for `agent` from a variable lookup:
    /// `CHUTES_API_KEY` (required), `CHUTES_BASE_URL`, `<AGENT>_MODEL` (e.g. `PLANNER_MODEL`),
    /// `DEFAULT_MODEL`, `LLM_CONNECT_TIMEOUT_S`, `LLM_REQUEST_TIMEOUT_S`, `LLM_RETRIES`,
    /// `LLM_RETRY_BASE_DELAY_MS`, `LLM_RETRY_MAX_DELAY_MS`.
    pub fn from_lookup(
        agent: AgentName,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let get = |k: &str| {
            lookup(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let key = get("CHUTES_API_KEY").ok_or(ConfigError::NoApiKey)?;
        let base = get("CHUTES_BASE_URL").unwrap_or_else(|| DEFAULT_BASE_URL.to_string());
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ConfigError::Invalid {
                name: "CHUTES_BASE_URL".into(),
                value: base,
                why: "it must start with http:// or https://".into(),
            });
        }
        let model_var = format!("{}_MODEL", agent.as_str().to_ascii_uppercase());
        let model = get(&model_var)
            .or_else(|| match agent {
                AgentName::Planner | AgentName::Trainer => None,
                _ => get("DEFAULT_MODEL"),
            })
            .unwrap_or_else(|| default_model(agent).to_string());
        let mut cfg = LlmConfig::new(&base, &key, &model);
        let num = |name: &str| -> Result<Option<u64>, ConfigError> {
            match get(name) {
                None => Ok(None),
                Some(v) => v
                    .parse::<u64>()
                    .map(Some)
                    .map_err(|_| ConfigError::Invalid {
                        name: name.into(),
                        value: v,
                        why: "expected a whole number".into(),
                    }),
            }
        };
        if let Some(s) = num("LLM_CONNECT_TIMEOUT_S")? {
            cfg.connect_timeout = Duration::from_secs(s);
        }
        if let Some(s) = num("LLM_REQUEST_TIMEOUT_S")? {
            cfg.request_timeout = Duration::from_secs(s);
        }
        if let Some(n) = num("LLM_RETRIES")? {
            cfg.retry.retries = n.min(20) as u32;
        }
        if let Some(ms) = num("LLM_RETRY_BASE_DELAY_MS")? {
            cfg.retry.base_delay = Duration::from_millis(ms);
        }
        if let Some(ms) = num("LLM_RETRY_MAX_DELAY_MS")? {
            cfg.retry.max_delay = Duration::from_millis(ms);
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn defaults_follow_the_seed() {
        let c =
            LlmConfig::from_lookup(AgentName::Planner, env(&[("CHUTES_API_KEY", "k")])).unwrap();
        assert_eq!(c.base_url, DEFAULT_BASE_URL);
        assert_eq!(c.model, LARGE_MODEL);
        let c =
            LlmConfig::from_lookup(AgentName::Debugger, env(&[("CHUTES_API_KEY", "k")])).unwrap();
        assert_eq!(c.model, DEFAULT_MODEL);
        assert_eq!(c.retry.retries, 4);
        assert_eq!(c.retry.delay(1), Duration::from_secs(2));
        assert_eq!(c.retry.delay(4), Duration::from_secs(16));
    }

    #[test]
    fn overrides_per_agent_and_errors_name_the_variable() {
        let e = env(&[
            ("CHUTES_API_KEY", "k"),
            ("CHUTES_BASE_URL", "http://127.0.0.1:9/v1/"),
            ("PLANNER_MODEL", "m-planner"),
            ("DEFAULT_MODEL", "m-default"),
            ("LLM_RETRIES", "2"),
        ]);
        let p = LlmConfig::from_lookup(AgentName::Planner, &e).unwrap();
        assert_eq!(p.model, "m-planner");
        assert_eq!(p.base_url, "http://127.0.0.1:9/v1");
        assert_eq!(p.retry.retries, 2);
        assert_eq!(
            LlmConfig::from_lookup(AgentName::Publisher, &e)
                .unwrap()
                .model,
            "m-default"
        );
        assert_eq!(
            LlmConfig::from_lookup(AgentName::Trainer, &e)
                .unwrap()
                .model,
            LARGE_MODEL
        );
        assert_eq!(
            LlmConfig::from_lookup(AgentName::Planner, env(&[("CHUTES_API_KEY", " ")])),
            Err(ConfigError::NoApiKey)
        );
        let bad = LlmConfig::from_lookup(
            AgentName::Planner,
            env(&[("CHUTES_API_KEY", "k"), ("LLM_RETRIES", "many")]),
        )
        .unwrap_err();
        assert!(bad.to_string().contains("LLM_RETRIES"), "{bad}");
        assert!(
            !format!("{p:?}").contains("\"k\""),
            "the key must not be printed"
        );
    }
}
