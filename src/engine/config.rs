//! Where Redis is, how to reach it and how keys are named: resolved once, passed everywhere.
//!
//! Precedence for the Redis URL: `--redis-url`, then `REDIS_URL` (which the binary fills
//! from a `.env` file when the environment does not set it), then the Sentinel settings
//! (`REDIS_SENTINELS` + `REDIS_SENTINEL_MASTER`, see [`crate::sentinel`]), then
//! `redis://127.0.0.1:6379`. The key prefix
//! comes from `SYNTH_CITY_PREFIX` (default `sc`) so that several deployments or
//! test runs can share one Redis.
//!
//! TLS: a `rediss://` URL connects over TLS. [`RedisTls::from_env`] reads the CA to trust
//! (`SYNTH_REDIS_CA`, else the system's roots) and the optional client certificate and key
//! (`SYNTH_REDIS_CLIENT_CERT` + `SYNTH_REDIS_CLIENT_KEY`, for servers that ask for one), and
//! [`RedisTls::client`] is the one constructor of `redis::Client` every connection of the
//! project goes through ([`redis_client`]: with the environment's files). A user and password in the URL (`rediss://worker:pw@host:6380/`) log in as
//! that ACL user (see [`crate::acl`]).
//!
//! Queue tunables ([`QueueConfig`]): how long finished job records are kept
//! (`SYNTH_JOB_RETENTION_SECS`; completed and dead-lettered ones by count and age:
//! [`Keep`], `SYNTH_KEEP_COMPLETED_COUNT`/`_SECS`, `SYNTH_KEEP_FAILED_COUNT`/`_SECS`), the
//! delivery cap (`SYNTH_MAX_DELIVERIES`) and the replicas that must confirm the writes that
//! matter (`SYNTH_REDIS_MIN_REPLICAS_ACK`, `SYNTH_REDIS_WAIT_MS`), read by
//! [`QueueConfig::from_env`]; every process of a deployment should agree on them.
//!
//! What it does not do: it opens no connection (a certificate the server does not match is
//! reported when the first connection is made, by [`crate::queue::Queue`], naming these
//! variables), and it never turns verification off.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The default Redis URL when nothing else is set.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "sc";

/// Resolves the Redis URL from a flag, then the environment (`REDIS_URL`; the binary has
/// already merged `.env` into it), then the Sentinel settings (`REDIS_SENTINELS` and
/// `REDIS_SENTINEL_MASTER`, turned into a `redis+sentinel://` URL: [`crate::sentinel`]), then
/// [`DEFAULT_REDIS_URL`].
pub fn redis_url(flag: Option<&str>) -> String {
    if let Some(url) = flag {
        return url.to_string();
    }
    if let Ok(url) = std::env::var("REDIS_URL") {
        return url;
    }
    let get = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    if let Some(hosts) = get(crate::sentinel::ENV_SENTINELS) {
        let master = get(crate::sentinel::ENV_SENTINEL_MASTER).unwrap_or_default();
        return crate::sentinel::url_from_settings(&hosts, &master);
    }
    DEFAULT_REDIS_URL.to_string()
}

/// The PEM file of the CA (or CAs) a `rediss://` connection trusts; unset: the system's roots.
pub const ENV_CA: &str = "SYNTH_REDIS_CA";
/// The PEM client certificate (chain) presented to a server that asks for one (mutual TLS).
pub const ENV_CLIENT_CERT: &str = "SYNTH_REDIS_CLIENT_CERT";
/// The PEM private key of [`ENV_CLIENT_CERT`].
pub const ENV_CLIENT_KEY: &str = "SYNTH_REDIS_CLIENT_KEY";

/// A Redis URL or TLS setting that cannot be used. Every message names the variable and the
/// file at fault and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum RedisConfigError {
    #[error("bad redis url {url}: {reason}")]
    Url { url: String, reason: String },
    #[error("bad redis sentinel url {url}: {part}: {reason}")]
    Sentinel {
        url: String,
        part: String,
        reason: String,
    },
    #[error("{var}={}: cannot read the file: {source}; point {var} at a readable PEM file", path.display())]
    Read {
        var: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{var}={}: {reason}", path.display())]
    Pem {
        var: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("{files}: these TLS files cannot be used: {reason}")]
    Unusable { files: String, reason: String },
    #[error(
        "{set} is set but {missing} is not: a client certificate needs its key (mutual TLS); \
         set both or neither"
    )]
    HalfPair {
        set: &'static str,
        missing: &'static str,
    },
    #[error(
        "{vars} set, but the redis url {url} is not a TLS one: use rediss:// (rediss+sentinel:// \
         for Sentinels), or unset {vars} to connect without TLS"
    )]
    NotTls { vars: String, url: String },
}

/// The TLS material of `rediss://` connections: which files, as the environment names them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedisTls {
    /// `SYNTH_REDIS_CA`: the CA certificate(s) to trust instead of the system's roots.
    pub ca: Option<PathBuf>,
    /// `SYNTH_REDIS_CLIENT_CERT` and `SYNTH_REDIS_CLIENT_KEY`: the client's certificate and key.
    pub client: Option<(PathBuf, PathBuf)>,
}

impl RedisTls {
    /// Reads `SYNTH_REDIS_CA`, `SYNTH_REDIS_CLIENT_CERT` and `SYNTH_REDIS_CLIENT_KEY` (an empty
    /// value counts as unset). A certificate without its key (or a key without its
    /// certificate) is an error.
    pub fn from_env() -> Result<Self, RedisConfigError> {
        let get = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let client = match (get(ENV_CLIENT_CERT), get(ENV_CLIENT_KEY)) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            (Some(_), None) => {
                return Err(RedisConfigError::HalfPair {
                    set: ENV_CLIENT_CERT,
                    missing: ENV_CLIENT_KEY,
                })
            }
            (None, Some(_)) => {
                return Err(RedisConfigError::HalfPair {
                    set: ENV_CLIENT_KEY,
                    missing: ENV_CLIENT_CERT,
                })
            }
        };
        Ok(Self {
            ca: get(ENV_CA),
            client,
        })
    }

    /// Whether any TLS file is set.
    pub fn is_set(&self) -> bool {
        self.ca.is_some() || self.client.is_some()
    }

    /// The variables that are set, for messages (`SYNTH_REDIS_CA=/etc/ca.pem`).
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(ca) = &self.ca {
            parts.push(format!("{ENV_CA}={}", ca.display()));
        }
        if let Some((c, k)) = &self.client {
            parts.push(format!("{ENV_CLIENT_CERT}={}", c.display()));
            parts.push(format!("{ENV_CLIENT_KEY}={}", k.display()));
        }
        parts.join(", ")
    }

    /// A client for `url` with these files: `rediss://` URLs verify the server against the CA
    /// (or the system's roots) and present the client certificate when one is set; `redis://`
    /// URLs are refused while any TLS file is set, so a forgotten `s` never sends the password
    /// in the clear.
    pub fn client(&self, url: &str) -> Result<redis::Client, RedisConfigError> {
        let bad = |reason: String| RedisConfigError::Url {
            url: redact_url_credentials(url),
            reason,
        };
        let info =
            redis::IntoConnectionInfo::into_connection_info(url).map_err(|e| bad(e.to_string()))?;
        // No `CLIENT SETINFO` at connect: the ACL users cannot allow it (Redis 7.0 does not
        // know the subcommand, and an ACL file naming it does not load), so a 7.2 server
        // would refuse it on every connection and fill its ACL LOG.
        let settings = info.redis_settings().clone().set_skip_set_lib_name();
        let info = info.set_redis_settings(settings);
        let tls = matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. });
        if !tls {
            if self.is_set() {
                return Err(RedisConfigError::NotTls {
                    vars: self.describe(),
                    url: redact_url_credentials(url),
                });
            }
            return redis::Client::open(info).map_err(|e| bad(e.to_string()));
        }
        if !self.is_set() {
            return redis::Client::open(info).map_err(|e| bad(e.to_string()));
        }
        let root_cert = match &self.ca {
            Some(p) => Some(read_pem(ENV_CA, p, "CERTIFICATE")?),
            None => None,
        };
        let client_tls = match &self.client {
            Some((c, k)) => Some(redis::ClientTlsConfig {
                client_cert: read_pem(ENV_CLIENT_CERT, c, "CERTIFICATE")?,
                client_key: read_pem(ENV_CLIENT_KEY, k, "PRIVATE KEY")?,
            }),
            None => None,
        };
        redis::Client::build_with_tls(
            info,
            redis::TlsCertificates {
                client_tls,
                root_cert,
            },
        )
        .map_err(|e| RedisConfigError::Unusable {
            files: self.describe(),
            reason: e.to_string(),
        })
    }
}

/// Reads a PEM file and checks that it holds a `-----BEGIN ...{what}-----` block.
fn read_pem(var: &'static str, path: &Path, what: &str) -> Result<Vec<u8>, RedisConfigError> {
    let bytes = std::fs::read(path).map_err(|source| RedisConfigError::Read {
        var,
        path: path.to_path_buf(),
        source,
    })?;
    let text = String::from_utf8_lossy(&bytes);
    let found = text
        .lines()
        .any(|l| l.starts_with("-----BEGIN ") && l.trim_end().ends_with(&format!("{what}-----")));
    if !found {
        return Err(RedisConfigError::Pem {
            var,
            path: path.to_path_buf(),
            reason: format!("no PEM {what} block in the file; {var} needs a PEM file"),
        });
    }
    Ok(bytes)
}

/// The one constructor of `redis::Client`: `url` with the TLS files of the environment
/// ([`RedisTls::from_env`]).
pub fn redis_client(url: &str) -> Result<redis::Client, RedisConfigError> {
    RedisTls::from_env()?.client(url)
}

/// `url` with its password (or a lone user part) replaced by `****`, for messages and logs.
pub fn redact_url_credentials(value: &str) -> String {
    let Some(scheme_end) = value.find("://") else {
        return value.to_string();
    };
    let rest = &value[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return value.to_string();
    };
    let userinfo = &rest[..at];
    let hidden = match userinfo.split_once(':') {
        Some((user, _)) => format!("{user}:****"),
        None => "****".into(),
    };
    format!("{}{hidden}{}", &value[..scheme_end + 3], &rest[at..])
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

/// `SYNTH_JOB_RETENTION_SECS`: how long a finished job's record (state, result, error) stays
/// readable; [`QueueConfig::result_ttl`].
pub const ENV_JOB_RETENTION: &str = "SYNTH_JOB_RETENTION_SECS";
/// `SYNTH_MAX_DELIVERIES`: how many times a stream entry may be delivered without finishing
/// before it is dead-lettered; [`QueueConfig::max_deliveries`].
pub const ENV_MAX_DELIVERIES: &str = "SYNTH_MAX_DELIVERIES";
/// `SYNTH_REDIS_MIN_REPLICAS_ACK`: how many replicas must confirm an enqueue or a run advance
/// (`WAIT`) before it is reported done; 0 (the default) waits for none.
pub const ENV_MIN_REPLICAS_ACK: &str = "SYNTH_REDIS_MIN_REPLICAS_ACK";
/// `SYNTH_REDIS_WAIT_MS`: how long such a write waits for its replicas (default 1000 ms).
pub const ENV_WAIT_MS: &str = "SYNTH_REDIS_WAIT_MS";
/// The default of [`ENV_WAIT_MS`].
pub const DEFAULT_WAIT_MS: u64 = 1000;
/// Finished records are kept this long unless [`ENV_JOB_RETENTION`] says otherwise (24 h; a
/// million finished jobs hold about 1 GB of Redis for that long).
pub const DEFAULT_JOB_RETENTION_SECS: u64 = 24 * 3600;
/// An entry delivered more often than this without finishing is dead-lettered.
pub const DEFAULT_MAX_DELIVERIES: u32 = 10;
/// `SYNTH_KEEP_COMPLETED_COUNT`: how many completed records of each job type are kept (the
/// newest by finish time); unset: no limit; 0: none (dropped at finish).
pub const ENV_KEEP_COMPLETED_COUNT: &str = "SYNTH_KEEP_COMPLETED_COUNT";
/// `SYNTH_KEEP_COMPLETED_SECS`: how long a completed record is kept; unset:
/// `SYNTH_JOB_RETENTION_SECS`; 0: dropped at finish.
pub const ENV_KEEP_COMPLETED_SECS: &str = "SYNTH_KEEP_COMPLETED_SECS";
/// `SYNTH_KEEP_FAILED_COUNT`: like [`ENV_KEEP_COMPLETED_COUNT`] for dead-lettered records.
pub const ENV_KEEP_FAILED_COUNT: &str = "SYNTH_KEEP_FAILED_COUNT";
/// `SYNTH_KEEP_FAILED_SECS`: like [`ENV_KEEP_COMPLETED_SECS`] for dead-lettered records.
pub const ENV_KEEP_FAILED_SECS: &str = "SYNTH_KEEP_FAILED_SECS";

/// Which finished records of one kind (completed, or dead-lettered) are kept: BullMQ's
/// `removeOnComplete`/`removeOnFail` `{count, age}`. A record is dropped when it is older than
/// its age or when `count` newer ones of its job type are kept; `count` 0 or age 0 drops it at
/// finish (its status then reads as not found). Cancelled records are not affected: they stay
/// for [`QueueConfig::result_ttl`], and so do those of the types whose records are read after
/// they finish (`jobs::JobSpec::RECORD_READ_AFTER_FINISH`, [`crate::queue::Queue::retention_arg`]). A flow child's outcome lives on its parent
/// (`job:<parent>:children`), so dropping the child's own record loses nothing the parent reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Keep {
    /// The newest records kept per job type; `None`: no limit.
    pub count: Option<u64>,
    /// How long a record is kept after it finished; `None`: [`QueueConfig::result_ttl`].
    pub age: Option<Duration>,
}

impl Keep {
    /// No record: each is dropped as it finishes.
    pub const NONE: Keep = Keep {
        count: Some(0),
        age: None,
    };

    /// The newest `n` records of each type, for the default age.
    pub const fn newest(n: u64) -> Self {
        Keep {
            count: Some(n),
            age: None,
        }
    }

    /// Whether a record is dropped as soon as it finishes.
    pub fn drops_at_finish(&self) -> bool {
        self.count == Some(0) || self.age.is_some_and(|a| a.is_zero())
    }

    /// `count,age ms` as the scripts read it (`-1`: no count limit), `ttl` standing in for an
    /// unset age.
    fn arg(&self, ttl: Duration) -> String {
        let count = self.count.map_or(-1, |c| c.min(i64::MAX as u64) as i64);
        format!("{count},{}", self.age.unwrap_or(ttl).as_millis())
    }
}

/// A queue tunable from the environment that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{var}={value:?}: {reason}")]
pub struct TunableError {
    pub var: &'static str,
    pub value: String,
    pub reason: String,
}

/// Tunables of the queue shared by producers and workers.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// How long a finished (completed, cancelled, dead) job's status and result stay
    /// readable: `SYNTH_JOB_RETENTION_SECS`, default 24 h.
    pub result_ttl: Duration,
    /// Which completed records are kept ([`Keep`]): `SYNTH_KEEP_COMPLETED_COUNT` (default: no
    /// limit) and `SYNTH_KEEP_COMPLETED_SECS` (default: [`QueueConfig::result_ttl`]).
    pub keep_completed: Keep,
    /// Which dead-lettered records are kept: `SYNTH_KEEP_FAILED_COUNT` and
    /// `SYNTH_KEEP_FAILED_SECS`, with the same defaults.
    pub keep_failed: Keep,
    /// Redis command timeout for ordinary calls.
    pub response_timeout: Duration,
    /// How long a producer keeps retrying while Redis is unreachable.
    pub retry_for: Duration,
    /// The delivery cap: a stream entry delivered (XREADGROUP or XAUTOCLAIM, as the consumer
    /// group counts it) more than this many times without finishing is dead-lettered with
    /// "delivered N times without finishing" (`SYNTH_MAX_DELIVERIES`, default 10). It stops an
    /// entry that kills or wedges every worker before its start is recorded from cycling forever.
    pub max_deliveries: u32,
    /// Replicas that must acknowledge the writes that matter (enqueue, run advance) before
    /// they are reported done (`SYNTH_REDIS_MIN_REPLICAS_ACK`, default 0: none);
    /// see [`crate::queue::Queue::retrying_acked`].
    pub min_replicas_ack: u32,
    /// How long such a write waits for them (`SYNTH_REDIS_WAIT_MS`, default 1 s).
    pub replica_wait: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            result_ttl: Duration::from_secs(DEFAULT_JOB_RETENTION_SECS),
            keep_completed: Keep::default(),
            keep_failed: Keep::default(),
            response_timeout: Duration::from_secs(5),
            retry_for: Duration::from_secs(30),
            max_deliveries: DEFAULT_MAX_DELIVERIES,
            min_replicas_ack: 0,
            replica_wait: Duration::from_millis(DEFAULT_WAIT_MS),
        }
    }
}

impl QueueConfig {
    /// The retention argument of the scripts that finish jobs (`finish.lua`,
    /// `finish_start.lua`, `fail.lua`, `start.lua`): `ttl ms,completed count,completed age ms,failed count,failed age ms`
    /// (`keep_policy` in `lua/common.lua`).
    pub fn retention_arg(&self) -> String {
        format!(
            "{},{},{}",
            self.result_ttl.as_millis(),
            self.keep_completed.arg(self.result_ttl),
            self.keep_failed.arg(self.result_ttl)
        )
    }

    /// The defaults with `SYNTH_JOB_RETENTION_SECS`, `SYNTH_KEEP_*`, `SYNTH_MAX_DELIVERIES`,
    /// `SYNTH_REDIS_MIN_REPLICAS_ACK` and `SYNTH_REDIS_WAIT_MS` applied (unset or empty: the
    /// default).
    pub fn from_env() -> Result<Self, TunableError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// [`QueueConfig::from_env`] over any source of variables.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, TunableError> {
        let mut cfg = Self::default();
        let read_min = |var: &'static str, min: u64| -> Result<Option<u64>, TunableError> {
            let Some(v) = get(var).filter(|v| !v.trim().is_empty()) else {
                return Ok(None);
            };
            match v.trim().parse::<u64>() {
                Ok(n) if n >= min => Ok(Some(n)),
                _ => Err(TunableError {
                    var,
                    value: v,
                    reason: format!("must be a whole number of at least {min}"),
                }),
            }
        };
        let read = |var: &'static str| read_min(var, 1);
        if let Some(secs) = read(ENV_JOB_RETENTION)? {
            cfg.result_ttl = Duration::from_secs(secs);
        }
        for (keep, count_var, secs_var) in [
            (
                &mut cfg.keep_completed,
                ENV_KEEP_COMPLETED_COUNT,
                ENV_KEEP_COMPLETED_SECS,
            ),
            (
                &mut cfg.keep_failed,
                ENV_KEEP_FAILED_COUNT,
                ENV_KEEP_FAILED_SECS,
            ),
        ] {
            *keep = Keep {
                count: read_min(count_var, 0)?,
                age: read_min(secs_var, 0)?.map(Duration::from_secs),
            };
        }
        if let Some(n) = read(ENV_MAX_DELIVERIES)? {
            cfg.max_deliveries = u32::try_from(n).map_err(|_| TunableError {
                var: ENV_MAX_DELIVERIES,
                value: n.to_string(),
                reason: format!("must be at most {}", u32::MAX),
            })?;
        }
        if let Some(n) = read_min(ENV_MIN_REPLICAS_ACK, 0)? {
            cfg.min_replicas_ack = u32::try_from(n).map_err(|_| TunableError {
                var: ENV_MIN_REPLICAS_ACK,
                value: n.to_string(),
                reason: "must be a number of replicas".into(),
            })?;
        }
        if let Some(ms) = read(ENV_WAIT_MS)? {
            // WAIT must answer before the connection's own command timeout gives up on it.
            let limit = cfg.response_timeout.as_millis() as u64;
            if ms >= limit {
                return Err(TunableError {
                    var: ENV_WAIT_MS,
                    value: ms.to_string(),
                    reason: format!("must be below {limit} (the Redis command timeout, in ms)"),
                });
            }
            cfg.replica_wait = Duration::from_millis(ms);
        }
        Ok(cfg)
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
    fn urls_lose_their_passwords_in_messages() {
        assert_eq!(
            redact_url_credentials("rediss://worker:s3cret@h:6380/0"),
            "rediss://worker:****@h:6380/0"
        );
        assert_eq!(redact_url_credentials("redis://h:1"), "redis://h:1");
    }

    #[test]
    fn tls_files_are_checked_and_named() {
        let dir = std::env::temp_dir().join(format!("sc-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = RedisTls {
            ca: Some(dir.join("nope.pem")),
            client: None,
        };
        let e = missing.client("rediss://h:6380").unwrap_err().to_string();
        assert!(
            e.contains("SYNTH_REDIS_CA=") && e.contains("nope.pem"),
            "{e}"
        );
        let not_pem = dir.join("ca.txt");
        std::fs::write(&not_pem, "hello").unwrap();
        let e = RedisTls {
            ca: Some(not_pem),
            client: None,
        }
        .client("rediss://h:6380")
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("SYNTH_REDIS_CA=") && e.contains("no PEM CERTIFICATE"),
            "{e}"
        );
        // TLS files with a plain URL: refused, password hidden.
        let e = missing.client("redis://u:pw@h:1").unwrap_err().to_string();
        assert!(e.contains("rediss://") && !e.contains("pw@"), "{e}");
        // No TLS files: plain and TLS URLs both open (no connection is made).
        assert!(RedisTls::default().client("redis://h:1").is_ok());
        assert!(RedisTls::default().client("rediss://h:1").is_ok());
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn tunables_from_the_environment() {
        let cfg = QueueConfig::from_lookup(|k| match k {
            ENV_JOB_RETENTION => Some("60".into()),
            ENV_MAX_DELIVERIES => Some(" 3 ".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(cfg.result_ttl, Duration::from_secs(60));
        assert_eq!(cfg.keep_completed, Keep::default());
        assert_eq!(cfg.retention_arg(), "60000,-1,60000,-1,60000");
        assert_eq!(cfg.max_deliveries, 3);
        let cfg = QueueConfig::from_lookup(|k| match k {
            ENV_KEEP_COMPLETED_COUNT => Some("1000".into()),
            ENV_KEEP_FAILED_SECS => Some("0".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(cfg.keep_completed.count, Some(1000));
        assert!(!cfg.keep_completed.drops_at_finish());
        assert!(cfg.keep_failed.drops_at_finish());
        assert_eq!(cfg.retention_arg(), "86400000,1000,86400000,-1,0");
        let e = QueueConfig::from_lookup(|k| (k == ENV_KEEP_FAILED_COUNT).then(|| "many".into()))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(ENV_KEEP_FAILED_COUNT) && e.contains("at least 0"),
            "{e}"
        );
        let d = QueueConfig::from_lookup(|_| Some(String::new())).unwrap();
        assert_eq!(
            d.result_ttl,
            Duration::from_secs(DEFAULT_JOB_RETENTION_SECS)
        );
        assert_eq!(d.max_deliveries, DEFAULT_MAX_DELIVERIES);
        let e = QueueConfig::from_lookup(|k| (k == ENV_JOB_RETENTION).then(|| "1h".into()))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("SYNTH_JOB_RETENTION_SECS") && e.contains("at least 1"),
            "{e}"
        );
        let cfg = QueueConfig::from_lookup(|k| match k {
            ENV_MIN_REPLICAS_ACK => Some("1".into()),
            ENV_WAIT_MS => Some("250".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(cfg.min_replicas_ack, 1);
        assert_eq!(cfg.replica_wait, Duration::from_millis(250));
        assert_eq!(d.min_replicas_ack, 0);
        let e = QueueConfig::from_lookup(|k| (k == ENV_MIN_REPLICAS_ACK).then(|| "-1".into()))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(ENV_MIN_REPLICAS_ACK) && e.contains("at least 0"),
            "{e}"
        );
    }

    #[test]
    fn flag_wins() {
        assert_eq!(redis_url(Some("redis://h:1")), "redis://h:1");
        assert_eq!(prefix(Some("abc")).unwrap(), "abc");
    }
}
