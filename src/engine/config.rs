//! Where Redis is and how keys are named: resolved once, passed everywhere.
//!
//! Precedence for the Redis URL: `--redis-url`, then `REDIS_URL` (which the binary fills
//! from a `.env` file when the environment does not set it), then `redis://127.0.0.1:6379`. The key prefix
//! comes from `SYNTH_CITY_PREFIX` (default `sc`) so that several deployments or
//! test runs can share one Redis.

use std::time::Duration;

/// The default Redis URL when nothing else is set.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "sc";

/// Resolves the Redis URL from a flag, then the environment (`REDIS_URL`; the binary has
/// already merged `.env` into it), then [`DEFAULT_REDIS_URL`].
pub fn redis_url(flag: Option<&str>) -> String {
    if let Some(url) = flag {
        return url.to_string();
    }
    std::env::var("REDIS_URL").unwrap_or_else(|_| DEFAULT_REDIS_URL.to_string())
}

/// A key prefix that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrefixError {
    #[error("key prefix must be 1 to 64 characters, got {0:?}")]
    Length(String),
    #[error("key prefix {0:?} may hold only letters, digits, '_', '.' and '-'")]
    Characters(String),
}

/// Resolves the key prefix from a flag and the environment.
pub fn prefix(flag: Option<&str>) -> Result<String, PrefixError> {
    let p = match flag {
        Some(p) => p.to_string(),
        None => std::env::var("SYNTH_CITY_PREFIX").unwrap_or_else(|_| DEFAULT_PREFIX.into()),
    };
    validate_prefix(&p)?;
    Ok(p)
}

/// A prefix is `[A-Za-z0-9_.-]{1,64}`: it ends up inside a `{hash tag}`.
pub fn validate_prefix(p: &str) -> Result<(), PrefixError> {
    if p.is_empty() || p.len() > 64 {
        return Err(PrefixError::Length(p.to_string()));
    }
    if !p
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
    {
        return Err(PrefixError::Characters(p.to_string()));
    }
    Ok(())
}

/// Tunables of the queue shared by producers and workers.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// How long a finished job's status and result stay readable.
    pub result_ttl: Duration,
    /// Redis command timeout for ordinary calls.
    pub response_timeout: Duration,
    /// How long a producer keeps retrying while Redis is unreachable.
    pub retry_for: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            result_ttl: Duration::from_secs(24 * 3600),
            response_timeout: Duration::from_secs(5),
            retry_for: Duration::from_secs(30),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_rules() {
        assert!(validate_prefix("sc").is_ok());
        assert!(validate_prefix("test-42.a_b").is_ok());
        assert!(validate_prefix("").is_err());
        assert!(validate_prefix("a}b")
            .unwrap_err()
            .to_string()
            .contains("only letters"));
        assert!(validate_prefix(&"x".repeat(65)).is_err());
    }

    #[test]
    fn flag_wins() {
        assert_eq!(redis_url(Some("redis://h:1")), "redis://h:1");
        assert_eq!(prefix(Some("abc")).unwrap(), "abc");
    }
}
