//! Redis Sentinel: a Redis location that is a Sentinel set, and where its primary is now.
//!
//! A location may be `redis+sentinel://[user:pass@]host1:26379,host2:26379/mymaster[/db]`
//! (`rediss+sentinel://` speaks TLS to the Sentinels and the data nodes alike, with the TLS
//! files of [`crate::config::RedisTls`]), or the settings `REDIS_SENTINELS` (the hosts) and
//! `REDIS_SENTINEL_MASTER` (the name), which [`crate::config::redis_url`] turns into that URL.
//! A user and password in the URL are the data nodes' (the ACL user, as with `rediss://`);
//! Sentinels that ask for a password of their own get `REDIS_SENTINEL_PASSWORD` (and
//! `REDIS_SENTINEL_USERNAME`). [`SentinelSet::parse`] reads the URL and names the part at fault.
//!
//! [`Locator`] is how every connection of a [`crate::queue::Queue`] finds its server: a plain
//! URL is one fixed client; a Sentinel set asks each Sentinel in turn `SENTINEL
//! get-master-addr-by-name`, connects to the address named and checks with `ROLE` that it is
//! the primary. The answer is kept until something says it is stale ([`Locator::stale`]: a
//! connection that fails, breaks, times out or is answered `READONLY`/`LOADING`/`MASTERDOWN`/
//! `NOREPLICAS`,
//! or a `ROLE` that is not `master`); the next connection asks the Sentinels again. Every
//! connection (pooled, shared or dedicated) checks `ROLE` when it is made, so a connection
//! never starts out on a demoted primary.
//!
//! What it does not do: it does not subscribe to Sentinel's `+switch-master` events (a moved
//! primary is found by the first error after a failover, not pushed), it never reads from
//! replicas, and it speaks no Redis Cluster. Whether an acknowledged write reached a replica is
//! [`crate::queue::Queue::retrying_acked`]'s business (`WAIT`), not this module's.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisError, RedisResult};

use crate::config::{redact_url_credentials, RedisConfigError, RedisTls};

/// `REDIS_SENTINELS`: the Sentinels' `host[:port]`, comma-separated (used when neither
/// `--redis-url` nor `REDIS_URL` is set).
pub const ENV_SENTINELS: &str = "REDIS_SENTINELS";
/// `REDIS_SENTINEL_MASTER`: the name the Sentinels monitor the primary under.
pub const ENV_SENTINEL_MASTER: &str = "REDIS_SENTINEL_MASTER";
/// `REDIS_SENTINEL_PASSWORD`: the Sentinels' own password (`requirepass` in sentinel.conf).
pub const ENV_SENTINEL_PASSWORD: &str = "REDIS_SENTINEL_PASSWORD";
/// `REDIS_SENTINEL_USERNAME`: the Sentinels' ACL user, with [`ENV_SENTINEL_PASSWORD`].
pub const ENV_SENTINEL_USERNAME: &str = "REDIS_SENTINEL_USERNAME";
/// The port of a Sentinel named without one.
pub const DEFAULT_SENTINEL_PORT: u16 = 26379;

const FORM: &str =
    "the form is redis+sentinel://[user:pass@]host1:26379,host2:26379/mymaster[/db] \
                    (rediss+sentinel:// for TLS)";

/// Whether `url` names a Sentinel set rather than one server.
pub fn is_sentinel_url(url: &str) -> bool {
    url.starts_with("redis+sentinel://") || url.starts_with("rediss+sentinel://")
}

/// A Sentinel set, as its URL says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentinelSet {
    /// The Sentinels, in the order they are asked.
    pub sentinels: Vec<(String, u16)>,
    /// The name the Sentinels know the primary by.
    pub master: String,
    /// The database number on the data nodes.
    pub db: i64,
    /// `user:pass` (as written, percent-encoding kept) for the data nodes.
    pub userinfo: Option<String>,
    /// `rediss+sentinel://`: TLS to Sentinels and data nodes.
    pub tls: bool,
}

impl SentinelSet {
    /// Parses `redis+sentinel://[user:pass@]host1[:port],host2[:port]/master[/db]`. Errors
    /// name the part at fault (a host, a port, the master name, the db) and show the form.
    pub fn parse(url: &str) -> Result<Self, RedisConfigError> {
        let bad = |part: String, reason: String| RedisConfigError::Sentinel {
            url: redact_url_credentials(url),
            part,
            reason: format!("{reason}; {FORM}"),
        };
        let (tls, rest) = if let Some(r) = url.strip_prefix("rediss+sentinel://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("redis+sentinel://") {
            (false, r)
        } else {
            return Err(bad(
                "scheme".into(),
                "a Sentinel set starts with redis+sentinel:// or rediss+sentinel://".into(),
            ));
        };
        if rest.contains(['?', '#']) {
            return Err(bad(
                "query".into(),
                "a Sentinel URL takes no ?query or #fragment".into(),
            ));
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        let (userinfo, hosts) = match authority.rfind('@') {
            Some(i) => (Some(authority[..i].to_string()), &authority[i + 1..]),
            None => (None, authority),
        };
        if userinfo.as_deref() == Some("") {
            return Err(bad(
                "credentials".into(),
                "empty user:password before '@'".into(),
            ));
        }
        let mut sentinels = Vec::new();
        for (n, h) in hosts.split(',').enumerate() {
            let h = h.trim();
            if h.is_empty() {
                return Err(bad(
                    format!("sentinel host #{}", n + 1),
                    "empty host (give host[:port], comma-separated)".into(),
                ));
            }
            sentinels
                .push(parse_host(h).map_err(|reason| bad(format!("sentinel host `{h}`"), reason))?);
        }
        let mut parts = path.split('/');
        let master = parts.next().unwrap_or("").to_string();
        if master.is_empty() {
            return Err(bad(
                "master name".into(),
                format!(
                    "no master name after the hosts (the name in sentinel.conf's `sentinel \
                     monitor <name> ...`; with the settings: {ENV_SENTINEL_MASTER})"
                ),
            ));
        }
        let db = match parts.next() {
            None | Some("") => 0,
            Some(d) => d.parse::<i64>().ok().filter(|d| *d >= 0).ok_or_else(|| {
                bad(
                    format!("db `{d}`"),
                    "the database must be a whole number of at least 0".into(),
                )
            })?,
        };
        if let Some(extra) = parts.find(|p| !p.is_empty()) {
            return Err(bad(
                format!("path part `{extra}`"),
                "nothing may follow /master/db".into(),
            ));
        }
        Ok(Self {
            sentinels,
            master,
            db,
            userinfo,
            tls,
        })
    }

    /// The URL of the data node at `host:port`, with this set's credentials, db and TLS.
    pub fn node_url(&self, host: &str, port: u16) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        let auth = self
            .userinfo
            .as_deref()
            .map(|u| format!("{u}@"))
            .unwrap_or_default();
        format!("{scheme}://{auth}{}:{port}/{}", bracket(host), self.db)
    }

    /// The URL of the Sentinel at `host:port`, with `auth` (user, password) if any.
    fn sentinel_url(&self, host: &str, port: u16, auth: &Option<(String, String)>) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        let auth = match auth {
            Some((u, p)) => format!("{}:{}@", encode(u), encode(p)),
            None => String::new(),
        };
        format!("{scheme}://{auth}{}:{port}", bracket(host))
    }
}

/// The Sentinel URL for the settings `REDIS_SENTINELS` and `REDIS_SENTINEL_MASTER` (the
/// master may be empty: [`SentinelSet::parse`] then says it is missing).
pub fn url_from_settings(sentinels: &str, master: &str) -> String {
    let hosts: Vec<&str> = sentinels.split(',').map(str::trim).collect();
    format!("redis+sentinel://{}/{}", hosts.join(","), master.trim())
}

fn bracket(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// Percent-encodes what a URL's userinfo cannot hold as is.
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn parse_host(h: &str) -> Result<(String, u16), String> {
    let (host, port) = if let Some(r) = h.strip_prefix('[') {
        let Some(end) = r.find(']') else {
            return Err("an IPv6 address opened with '[' needs its ']'".into());
        };
        let host = &r[..end];
        match &r[end + 1..] {
            "" => (host, None),
            p => match p.strip_prefix(':') {
                Some(p) => (host, Some(p)),
                None => return Err(format!("unexpected `{p}` after the address")),
            },
        }
    } else {
        match h.rsplit_once(':') {
            Some((host, p)) => (host, Some(p)),
            None => (h, None),
        }
    };
    if host.is_empty() {
        return Err("empty host name".into());
    }
    let port = match port {
        None => DEFAULT_SENTINEL_PORT,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("port `{p}` is not a number from 1 to 65535"))?,
    };
    Ok((host.to_string(), port))
}

/// Whether `e` says the server we talk to may no longer be the primary (or is gone): the
/// connection failed, broke or timed out, or the server answered as a replica
/// (`READONLY`, `MASTERDOWN`), as one still loading its data (`LOADING`), or as a primary
/// cut off from its replicas (`NOREPLICAS`, with `min-replicas-to-write` set).
pub fn primary_may_have_moved(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || matches!(
            e.code(),
            Some("READONLY" | "MASTERDOWN" | "LOADING" | "NOREPLICAS")
        )
}

/// The transient error of a Sentinel set whose primary cannot be found or used right now.
fn unavailable(msg: String) -> RedisError {
    RedisError::from(std::io::Error::other(msg))
}

/// How every connection of a queue finds its server: one fixed client, or the current
/// primary of a Sentinel set. Connections carry the generation they were made in; a
/// generation marked [`Locator::stale`] is not handed out again.
pub struct Locator {
    kind: Kind,
}

// One per queue, behind an Arc: the size of a variant does not matter.
#[allow(clippy::large_enum_variant)]
enum Kind {
    Direct(redis::Client),
    Sentinel(SentinelState),
}

/// The primary found in one generation: (generation, client, `host:port`).
type Found = (u64, redis::Client, String);

struct SentinelState {
    set: SentinelSet,
    tls: RedisTls,
    auth: Option<(String, String)>,
    generation: AtomicU64,
    /// The primary found in a generation: (generation, client, host:port), and the Sentinel
    /// that answered last (asked first next time).
    current: tokio::sync::Mutex<(Option<Found>, usize)>,
}

impl Locator {
    /// The locator of `url`: a Sentinel set (`redis+sentinel://`, `rediss+sentinel://`) or one
    /// server, with `tls`'s files. The Sentinels' credentials come from
    /// `REDIS_SENTINEL_USERNAME`/`REDIS_SENTINEL_PASSWORD`. Connects to nothing.
    pub fn new(url: &str, tls: &RedisTls) -> Result<Self, RedisConfigError> {
        if !is_sentinel_url(url) {
            return Ok(Self {
                kind: Kind::Direct(tls.client(url)?),
            });
        }
        let set = SentinelSet::parse(url)?;
        if tls.is_set() && !set.tls {
            return Err(RedisConfigError::NotTls {
                vars: tls.describe(),
                url: redact_url_credentials(url),
            });
        }
        // Check the URLs it will build now, so a bad TLS file or credential fails here.
        let (h, p) = set.sentinels[0].clone();
        tls.client(&set.node_url(&h, p))?;
        let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let auth = get(ENV_SENTINEL_PASSWORD).map(|p| {
            (
                get(ENV_SENTINEL_USERNAME).unwrap_or_else(|| "default".into()),
                p,
            )
        });
        Ok(Self {
            kind: Kind::Sentinel(SentinelState {
                set,
                tls: tls.clone(),
                auth,
                generation: AtomicU64::new(1),
                current: tokio::sync::Mutex::new((None, 0)),
            }),
        })
    }

    /// Whether this is a Sentinel set.
    pub fn is_sentinel(&self) -> bool {
        matches!(self.kind, Kind::Sentinel(_))
    }

    /// Whether connections of generation `generation` may still be used.
    pub fn is_current(&self, generation: u64) -> bool {
        match &self.kind {
            Kind::Direct(_) => true,
            Kind::Sentinel(s) => s.generation.load(Ordering::Acquire) == generation,
        }
    }

    /// Marks the primary found in `generation` as stale (once, however many connections
    /// report it): the next connection asks the Sentinels again. Nothing for one server.
    pub fn stale(&self, generation: u64) {
        if let Kind::Sentinel(s) = &self.kind {
            if s.generation
                .compare_exchange(
                    generation,
                    generation + 1,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
            {
                tracing::info!(master = %s.set.master, "redis primary may have moved; asking the Sentinels again");
            }
        }
    }

    /// Reports an error seen on a connection of `generation`: if it says the primary may
    /// have moved, the generation is stale.
    pub fn saw(&self, generation: u64, e: &RedisError) {
        if primary_may_have_moved(e) {
            self.stale(generation);
        }
    }

    /// A new connection to the server (the current primary for a Sentinel set, checked with
    /// `ROLE`), and the generation it belongs to.
    pub async fn connect(
        &self,
        cfg: &AsyncConnectionConfig,
    ) -> RedisResult<(u64, MultiplexedConnection)> {
        let s = match &self.kind {
            Kind::Direct(c) => {
                return Ok((
                    0,
                    c.get_multiplexed_async_connection_with_config(cfg).await?,
                ))
            }
            Kind::Sentinel(s) => s,
        };
        let mut last = None;
        // A stale answer costs one more round: the Sentinels are asked again at once.
        for _ in 0..2 {
            let (generation, client, addr) = s.primary().await?;
            match client
                .get_multiplexed_async_connection_with_config(cfg)
                .await
            {
                Ok(mut c) => match role(&mut c).await {
                    Ok(r) if r == "master" => return Ok((generation, c)),
                    Ok(r) => {
                        self.stale(generation);
                        last = Some(unavailable(format!(
                            "{addr}, named primary of `{}` by a Sentinel, says it is a {r} \
                             (a failover is under way)",
                            s.set.master
                        )));
                    }
                    Err(e) => {
                        self.saw(generation, &e);
                        last = Some(e);
                    }
                },
                Err(e) => {
                    self.saw(generation, &e);
                    last = Some(e);
                }
            }
        }
        Err(last.expect("tried at least once"))
    }
}

impl SentinelState {
    /// The primary of the current generation, asking the Sentinels if none is known.
    async fn primary(&self) -> RedisResult<Found> {
        let mut guard = self.current.lock().await;
        let generation = self.generation.load(Ordering::Acquire);
        if let Some((g, client, addr)) = &guard.0 {
            if *g == generation {
                return Ok((generation, client.clone(), addr.clone()));
            }
        }
        let n = self.set.sentinels.len();
        let first = guard.1;
        let mut errors = Vec::new();
        for i in 0..n {
            let k = (first + i) % n;
            let (host, port) = &self.set.sentinels[k];
            let asked = tokio::time::timeout(Duration::from_secs(3), self.ask(host, *port)).await;
            match asked {
                Ok(Ok(Some((ip, p)))) => {
                    let client = self
                        .tls
                        .client(&self.set.node_url(&ip, p))
                        .map_err(|e| unavailable(e.to_string()))?;
                    let addr = format!("{ip}:{p}");
                    tracing::debug!(master = %self.set.master, %addr, sentinel = %format!("{host}:{port}"), "redis primary");
                    *guard = (Some((generation, client.clone(), addr.clone())), k);
                    return Ok((generation, client, addr));
                }
                Ok(Ok(None)) => errors.push(format!(
                    "{host}:{port} knows no master named `{}`",
                    self.set.master
                )),
                Ok(Err(e)) => errors.push(format!("{host}:{port}: {e}")),
                Err(_) => errors.push(format!("{host}:{port}: no answer in 3s")),
            }
        }
        Err(unavailable(format!(
            "no Sentinel named a primary for `{}`: {}",
            self.set.master,
            errors.join("; ")
        )))
    }

    /// `SENTINEL get-master-addr-by-name` of one Sentinel.
    async fn ask(&self, host: &str, port: u16) -> RedisResult<Option<(String, u16)>> {
        let client = self
            .tls
            .client(&self.set.sentinel_url(host, port, &self.auth))
            .map_err(|e| unavailable(e.to_string()))?;
        let cfg = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(1)));
        let mut c = client
            .get_multiplexed_async_connection_with_config(&cfg)
            .await?;
        let reply: Option<(String, String)> = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(&self.set.master)
            .query_async(&mut c)
            .await?;
        Ok(match reply {
            Some((ip, port)) => Some((
                ip,
                port.parse()
                    .map_err(|_| unavailable(format!("Sentinel {host}:{port} gave a bad port")))?,
            )),
            None => None,
        })
    }
}

/// The first word of `ROLE`: `master`, `slave` or `sentinel`.
async fn role(c: &mut MultiplexedConnection) -> RedisResult<String> {
    let v: Vec<redis::Value> = redis::cmd("ROLE").query_async(c).await?;
    Ok(match v.first() {
        Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
        Some(redis::Value::SimpleString(s)) => s.clone(),
        _ => "server of unknown role".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinel_urls_parse() {
        let s = SentinelSet::parse("redis+sentinel://h1:26380,h2,[::1]:5/mymaster/3").unwrap();
        assert_eq!(
            s.sentinels,
            vec![
                ("h1".to_string(), 26380),
                ("h2".to_string(), DEFAULT_SENTINEL_PORT),
                ("::1".to_string(), 5)
            ]
        );
        assert_eq!(s.master, "mymaster");
        assert_eq!(s.db, 3);
        assert!(!s.tls);
        assert_eq!(s.node_url("10.0.0.1", 6379), "redis://10.0.0.1:6379/3");
        let s = SentinelSet::parse("rediss+sentinel://worker:p%40ss@h1:1/m").unwrap();
        assert!(s.tls);
        assert_eq!(s.db, 0);
        assert_eq!(
            s.node_url("10.0.0.1", 6380),
            "rediss://worker:p%40ss@10.0.0.1:6380/0"
        );
        assert_eq!(
            url_from_settings("a:1, b:2", "m"),
            "redis+sentinel://a:1,b:2/m"
        );
    }

    #[test]
    fn bad_sentinel_urls_name_the_part() {
        let e = |u: &str| SentinelSet::parse(u).unwrap_err().to_string();
        let m = e("redis+sentinel://h1:26379,h2:x/m");
        assert!(
            m.contains("sentinel host `h2:x`") && m.contains("port `x`"),
            "{m}"
        );
        let m = e("redis+sentinel://h1:26379");
        assert!(
            m.contains("master name") && m.contains(ENV_SENTINEL_MASTER),
            "{m}"
        );
        let m = e("redis+sentinel://u:secret@h1,,h2/m");
        assert!(m.contains("host #2") && !m.contains("secret"), "{m}");
        let m = e("redis+sentinel://h1/m/zero");
        assert!(m.contains("db `zero`"), "{m}");
        let m = e("redis+sentinel://h1/m/0/x");
        assert!(m.contains("path part `x`"), "{m}");
        let m = e("redis+sentinel://h1/m?x=1");
        assert!(m.contains("query") && m.contains("the form is"), "{m}");
        let m = e("redis+sentinel://:0/m");
        assert!(m.contains("empty host"), "{m}");
    }

    #[test]
    fn tls_files_need_a_tls_sentinel_url() {
        let tls = RedisTls {
            ca: Some("/etc/ca.pem".into()),
            client: None,
        };
        let e = Locator::new("redis+sentinel://u:secret@h1/m", &tls)
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("SYNTH_REDIS_CA=/etc/ca.pem")
                && e.contains("rediss+sentinel://")
                && !e.contains("secret"),
            "{e}"
        );
        let plain = Locator::new("redis+sentinel://h1,h2:1/m", &RedisTls::default()).unwrap();
        assert!(plain.is_sentinel());
        assert!(!Locator::new("redis://h:1", &RedisTls::default())
            .unwrap()
            .is_sentinel());
    }

    #[test]
    fn broken_connections_mean_the_primary_may_have_moved() {
        let io = RedisError::from(std::io::Error::other("gone"));
        assert!(primary_may_have_moved(&io));
        let wrong = RedisError::from((redis::ErrorKind::UnexpectedReturnType, "nope"));
        assert!(!primary_may_have_moved(&wrong));
    }
}
