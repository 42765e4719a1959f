//! The chat-completions client: async-openai's wire types sent with reqwest (rustls), with
//! counted, status-aware retries.
//!
//! Why not async-openai's own `Client` (0.32): its errors do not carry the HTTP status (a 5xx and
//! a 400 both arrive as `ApiError`), it retries a 429 only when the body parses as OpenAI's error
//! object (so a FastAPI-style `{"detail": ...}` 429 is not retried), it treats timeouts as
//! permanent, ignores `Retry-After`, and retries on a wall-clock budget rather than a count. The
//! seed retries a fixed number of times on 429, 5xx and timeouts; this client does exactly that.

use std::time::Duration;

use jobs::retry::Failure;

use async_openai::types::chat::{
    CompletionUsage, CreateChatCompletionRequest, CreateChatCompletionResponse,
};

use super::config::LlmConfig;

/// A failed chat-completion call.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error("LLM call failed after {attempts} attempt(s): {last}")]
    Exhausted { attempts: u32, last: String },
    #[error("LLM call refused with HTTP {status} by {url}: {body}")]
    Refused {
        status: u16,
        url: String,
        body: String,
    },
    #[error("LLM reply from {url} is not a chat completion: {why}; body starts {body:?}")]
    BadReply {
        url: String,
        why: String,
        body: String,
    },
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

/// Token counts of one call, or summed over calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    /// Calls counted.
    pub calls: u64,
}

impl Usage {
    pub fn add(&mut self, other: &Usage) {
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
        self.total_tokens += other.total_tokens;
        self.calls += other.calls;
    }

    fn from_completion(u: Option<&CompletionUsage>) -> Usage {
        match u {
            Some(u) => Usage {
                prompt_tokens: u.prompt_tokens as u64,
                completion_tokens: u.completion_tokens as u64,
                total_tokens: u.total_tokens as u64,
                calls: 1,
            },
            None => Usage {
                calls: 1,
                ..Usage::default()
            },
        }
    }
}

/// One successful call: the reply, its usage and how many attempts it took.
#[derive(Debug, Clone)]
pub struct Completion {
    pub response: CreateChatCompletionResponse,
    pub usage: Usage,
    pub attempts: u32,
}

/// A client for one endpoint and key (the model is in each request).
#[derive(Debug, Clone)]
pub struct ChatClient {
    http: reqwest::Client,
    url: String,
    api_key: String,
    retry: super::config::RetryPolicy,
}

fn snippet(s: &str) -> String {
    let s = s.trim();
    if s.len() <= 400 {
        s.to_string()
    } else {
        let mut end = 400;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...", &s[..end])
    }
}

impl ChatClient {
    pub fn new(cfg: &LlmConfig) -> Result<Self, LlmError> {
        let http = reqwest::Client::builder()
            .connect_timeout(cfg.connect_timeout)
            .timeout(cfg.request_timeout)
            .build()
            .map_err(|e| LlmError::Client(e.to_string()))?;
        Ok(ChatClient {
            http,
            url: format!("{}/chat/completions", cfg.base_url.trim_end_matches('/')),
            api_key: cfg.api_key.clone(),
            retry: cfg.retry.clone(),
        })
    }

    /// The endpoint this client posts to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// POST the request; retry 429, 5xx, timeouts and connection errors per the policy.
    pub async fn complete(
        &self,
        request: &CreateChatCompletionRequest,
    ) -> Result<Completion, LlmError> {
        let url = self.url.as_str();
        self.retry
            .policy()
            .run(url, |attempt| self.attempt(request, attempt))
            .await
            .map_err(|e| e.error)
    }

    async fn attempt(
        &self,
        request: &CreateChatCompletionRequest,
        attempt: u32,
    ) -> Result<Completion, Failure<LlmError>> {
        let attempts = self.retry.retries + 1;
        let retry = |why: String, after: Option<Duration>| Failure::Transient {
            error: LlmError::Exhausted {
                attempts,
                last: why,
            },
            after,
        };
        let sent = self
            .http
            .post(&self.url)
            .bearer_auth(&self.api_key)
            .json(request)
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) => {
                let kind = if e.is_timeout() {
                    "timed out"
                } else if e.is_connect() {
                    "could not connect"
                } else {
                    "request failed"
                };
                return Err(retry(format!("{kind}: {e}"), None));
            }
        };
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64);
        let body = match resp.text().await {
            Ok(b) => b,
            Err(e) => {
                let kind = if e.is_timeout() {
                    "timed out reading the reply"
                } else {
                    "reading the reply failed"
                };
                return Err(retry(format!("{kind}: {e}"), None));
            }
        };
        if status.as_u16() == 429 || status.is_server_error() {
            return Err(retry(
                format!(
                    "HTTP {} from {}: {}",
                    status.as_u16(),
                    self.url,
                    snippet(&body)
                ),
                if status.as_u16() == 429 {
                    retry_after
                } else {
                    None
                },
            ));
        }
        if !status.is_success() {
            return Err(Failure::Permanent(LlmError::Refused {
                status: status.as_u16(),
                url: self.url.clone(),
                body: snippet(&body),
            }));
        }
        match serde_json::from_str::<CreateChatCompletionResponse>(&body) {
            Ok(response) => {
                if response.choices.is_empty() {
                    return Err(Failure::Permanent(LlmError::BadReply {
                        url: self.url.clone(),
                        why: "it has no choices".into(),
                        body: snippet(&body),
                    }));
                }
                let usage = Usage::from_completion(response.usage.as_ref());
                Ok(Completion {
                    response,
                    usage,
                    attempts: attempt,
                })
            }
            Err(e) => Err(Failure::Permanent(LlmError::BadReply {
                url: self.url.clone(),
                why: e.to_string(),
                body: snippet(&body),
            })),
        }
    }
}
