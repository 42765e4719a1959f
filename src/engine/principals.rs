//! Principals: who may call the HTTP bridge, each with its own API key and role.
//!
//! The operator creates, lists and revokes them (`synth-city bots add|list|revoke`); the bridge
//! looks a presented key up on every request ([`lookup`]) and takes the caller's bot id and role
//! from what it finds, never from a header. A key is 32 random bytes (`sck_` + 64 hex digits)
//! and Redis holds only its SHA-256: a key has 256 bits of entropy, so a fast hash is as good as
//! a slow one against guessing, and a copy of Redis gives no usable key. Adding and revoking are
//! one script each (`principal_add.lua`, `principal_revoke.lua`), so the two hashes (by bot, by
//! key hash) never disagree.
//!
//! What it does not do: it serves no HTTP and decides no route's access (the bridge's
//! `auth.rs` and route table do, from [`Role`]); it knows nothing of the operator's own key
//! (`BRIDGE_API_KEY`, which the bridge compares itself) and keeps no per-request state (rate
//! budgets are the bridge's).

use rand::RngCore;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::queue::{Queue, QueueError};

/// What a principal may do on the bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Everything: every route, any job type, any job by id; or, naming a bot in `X-Bot-Id`,
    /// that bot with its rights. The holder of `BRIDGE_API_KEY`, or a key given this role.
    Operator,
    /// Its own session, jobs, runs, experiments and schedules; only the job types open to
    /// bots (`jobs::BotAccess`).
    Bot,
    /// Reads what its bot id may read; changes nothing (every POST and DELETE is a 403).
    ReadOnly,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Operator, Role::Bot, Role::ReadOnly];

    pub fn name(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Bot => "bot",
            Role::ReadOnly => "read-only",
        }
    }

    /// The role called `s` (`operator`, `bot`, `read-only`).
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.name() == s.trim())
    }

    /// Whether it may change anything (POST, DELETE).
    pub fn writes(self) -> bool {
        !matches!(self, Role::ReadOnly)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Bot ids the bridge gives callers that are not a principal of their own (the operator
/// acting without `X-Bot-Id` is `default`): no key may be made for them.
pub const RESERVED: &[&str] = &["default", "operator"];

/// Whether `id` may name a bot: 1 to 64 of `[A-Za-z0-9._-]`.
pub fn valid_bot_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

/// A caller, as its key says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    pub bot: String,
    pub role: Role,
}

/// A principal as `bots list` shows it: never the key, only the first hex digits of its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub bot: String,
    pub role: Role,
    /// The key's SHA-256 (hex).
    pub key_sha256: String,
    /// Server time (ms) the key was made.
    pub created_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl KeyRecord {
    /// What identifies the key in listings and logs: `sha256:` and 12 hex digits.
    pub fn key_id(&self) -> String {
        format!(
            "sha256:{}",
            &self.key_sha256[..12.min(self.key_sha256.len())]
        )
    }
}

/// Why a principal could not be added or revoked.
#[derive(Debug, thiserror::Error)]
pub enum PrincipalError {
    #[error(
        "bot id {0:?} is not valid: use 1 to 64 of A-Z, a-z, 0-9, `.`, `_` and `-` (for example \
         `openclaw-1`)"
    )]
    BadId(String),
    #[error(
        "bot id {0:?} is reserved (the bridge gives it to callers without a key of their own); \
         pick another name"
    )]
    Reserved(String),
    #[error(
        "bot {0:?} already has a key: `synth-city bots add {0} --rotate` replaces it (the old \
         key stops working), `synth-city bots revoke {0}` removes it"
    )]
    Exists(String),
    #[error("note is {0} characters; keep it to 200")]
    LongNote(usize),
    #[error(transparent)]
    Queue(#[from] QueueError),
}

impl From<redis::RedisError> for PrincipalError {
    fn from(e: redis::RedisError) -> Self {
        PrincipalError::Queue(QueueError::Redis(e))
    }
}

/// The SHA-256 (hex) of a key: what Redis stores.
pub fn key_hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// A new key: `sck_` and 32 random bytes in hex.
pub fn new_key() -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    format!("sck_{}", hex::encode(b))
}

/// Gives `bot` a new key with `role`; `rotate` replaces an existing one (else that is
/// [`PrincipalError::Exists`]). Returns the key (shown once; only its hash is kept) and the
/// record.
pub async fn add(
    q: &Queue,
    bot: &str,
    role: Role,
    note: Option<&str>,
    rotate: bool,
) -> Result<(String, KeyRecord), PrincipalError> {
    if !valid_bot_id(bot) {
        return Err(PrincipalError::BadId(bot.into()));
    }
    if RESERVED.contains(&bot) {
        return Err(PrincipalError::Reserved(bot.into()));
    }
    if let Some(n) = note.filter(|n| n.chars().count() > 200) {
        return Err(PrincipalError::LongNote(n.chars().count()));
    }
    let key = new_key();
    let rec = KeyRecord {
        bot: bot.into(),
        role,
        key_sha256: key_hash(&key),
        created_ms: q.time_ms().await?,
        note: note.map(String::from),
    };
    let lookup = Principal {
        bot: bot.into(),
        role,
    };
    let mut c = q.conn().await?;
    let out: Vec<String> = q
        .scripts()
        .principal_add
        .arg(q.prefix())
        .arg(bot)
        .arg(&rec.key_sha256)
        .arg(serde_json::to_string(&rec).expect("a key record serialises"))
        .arg(serde_json::to_string(&lookup).expect("a principal serialises"))
        .arg(if rotate { "1" } else { "0" })
        .invoke_async(&mut c)
        .await?;
    if out.first().map(String::as_str) == Some("exists") {
        return Err(PrincipalError::Exists(bot.into()));
    }
    Ok((key, rec))
}

/// Every principal, by bot id.
pub async fn list(q: &Queue) -> Result<Vec<KeyRecord>, PrincipalError> {
    let mut c = q.conn().await?;
    let all: Vec<(String, String)> = c.hgetall(q.keys().principals("")).await?;
    let mut out: Vec<KeyRecord> = all
        .into_iter()
        .filter_map(|(bot, v)| match serde_json::from_str(&v) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(%bot, error = %e, "a principal's record is not readable; skipped");
                None
            }
        })
        .collect();
    out.sort_by(|a, b| a.bot.cmp(&b.bot));
    Ok(out)
}

/// Takes `bot`'s key away; whether it had one.
pub async fn revoke(q: &Queue, bot: &str) -> Result<bool, PrincipalError> {
    let mut c = q.conn().await?;
    let n: i64 = q
        .scripts()
        .principal_revoke
        .arg(q.prefix())
        .arg(bot)
        .invoke_async(&mut c)
        .await?;
    Ok(n == 1)
}

/// The principal whose key is `key`, if any (one HGET by the key's hash, on the queue's
/// shared multiplexed connection, as producers enqueue).
pub async fn lookup(q: &Queue, key: &str) -> Result<Option<Principal>, QueueError> {
    let mut c = q.shared().await?;
    let v: Option<String> = c
        .hget(q.keys().principals("keys"), key_hash(key))
        .await
        .map_err(|e| q.explain(e))?;
    Ok(v.and_then(|v| serde_json::from_str(&v).ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_and_hashed() {
        let (a, b) = (new_key(), new_key());
        assert_ne!(a, b);
        assert!(a.starts_with("sck_") && a.len() == 4 + 64);
        assert_eq!(key_hash(&a).len(), 64);
        assert_ne!(key_hash(&a), key_hash(&b));
        assert_eq!(key_hash("abc"), key_hash("abc"));
    }

    #[test]
    fn roles_and_ids() {
        for r in Role::ALL {
            assert_eq!(Role::parse(r.name()), Some(r));
            let j = serde_json::to_string(&r).unwrap();
            assert_eq!(j, format!("\"{}\"", r.name()));
        }
        assert!(!Role::ReadOnly.writes() && Role::Bot.writes());
        assert!(valid_bot_id("openclaw-7.a_b"));
        assert!(!valid_bot_id("") && !valid_bot_id("a b") && !valid_bot_id(&"x".repeat(65)));
    }
}
