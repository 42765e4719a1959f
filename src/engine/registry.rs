//! The store of authored components (issue 20): small JSON documents that bots write under a
//! global name, each with its owner bot, a version and a content hash, in Redis.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `registry:components` | hash | name -> [`Authored`] JSON |
//! | `registry:owners` | hash | name -> owner bot |
//! | `registry:version` | string | a counter bumped by every write and removal |
//!
//! A write and a removal are one script each (`registry_put.lua`, `registry_delete.lua`), which
//! check ownership in the same step: a name held by another bot is refused unless the caller
//! is the operator. Names are global, so any bot can use any component by name.
//!
//! What it does not do: it never reads a document. Validation (the graph validator, the size
//! bound, built-in names) is the caller's (`synth_city::registry`), before anything is stored;
//! this crate knows nothing of graphs.

use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::queue::{Queue, QueueError};

/// Most components one bot may hold (the operator is not bounded).
pub const MAX_PER_OWNER: usize = 64;

/// One authored component as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Authored {
    pub name: String,
    /// `block` or `head`.
    pub kind: String,
    /// The bot that first wrote it (an operator's overwrite keeps it).
    pub owner: String,
    /// The registry version this change made.
    pub version: u64,
    /// Redis time of the change, ms.
    pub updated_at_ms: u64,
    /// The document's content hash (`trainer::zoo::graph::content_hash`).
    pub content_hash: String,
    pub document: Value,
}

/// What the store refuses.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("component {name:?} belongs to bot {owner:?}; a bot may change only its own components (write it under another name)")]
    NotOwner { name: String, owner: String },
    #[error("no authored component {0:?} (see GET /registry/components)")]
    Missing(String),
    #[error("bot {owner:?} already holds {n} components, the most one bot may hold ({MAX_PER_OWNER}); remove one first")]
    Full { owner: String, n: usize },
    #[error("the registry's record of {name:?} is not readable: {detail}")]
    Corrupt { name: String, detail: String },
    #[error(transparent)]
    Queue(#[from] QueueError),
}

impl From<redis::RedisError> for RegistryError {
    fn from(e: redis::RedisError) -> Self {
        RegistryError::Queue(QueueError::Redis(e))
    }
}

/// What a write did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Written {
    /// A new name (else an overwrite).
    pub created: bool,
    pub version: u64,
    pub owner: String,
}

#[derive(Serialize)]
struct Fields<'a> {
    name: &'a str,
    kind: &'a str,
    content_hash: &'a str,
    document: &'a Value,
}

/// Stores `document` (already validated) as `name`, for `caller`; `operator` may overwrite any.
pub async fn put(
    q: &Queue,
    name: &str,
    kind: &str,
    content_hash: &str,
    document: &Value,
    caller: &str,
    operator: bool,
) -> Result<Written, RegistryError> {
    let rec = serde_json::to_string(&Fields {
        name,
        kind,
        content_hash,
        document,
    })
    .expect("a record serialises");
    let mut c = q.conn().await?;
    let out: Vec<String> = q
        .scripts()
        .registry_put
        .arg(q.prefix())
        .arg(name)
        .arg(caller)
        .arg(if operator { "1" } else { "0" })
        .arg(rec)
        .arg(MAX_PER_OWNER)
        .invoke_async(&mut c)
        .await?;
    match out.first().map(String::as_str) {
        Some("forbidden") => Err(RegistryError::NotOwner {
            name: name.into(),
            owner: out.get(1).cloned().unwrap_or_default(),
        }),
        Some("full") => Err(RegistryError::Full {
            owner: caller.into(),
            n: out.get(1).and_then(|n| n.parse().ok()).unwrap_or(0),
        }),
        Some(o @ ("created" | "updated")) => Ok(Written {
            created: o == "created",
            version: out.get(1).and_then(|v| v.parse().ok()).unwrap_or(0),
            owner: out.get(2).cloned().unwrap_or_default(),
        }),
        other => Err(RegistryError::Corrupt {
            name: name.into(),
            detail: format!("registry_put answered {other:?}"),
        }),
    }
}

/// Removes `name` for `caller` (its owner, or the operator); the registry version after it.
pub async fn remove(
    q: &Queue,
    name: &str,
    caller: &str,
    operator: bool,
) -> Result<u64, RegistryError> {
    let mut c = q.conn().await?;
    let out: Vec<String> = q
        .scripts()
        .registry_delete
        .arg(q.prefix())
        .arg(name)
        .arg(caller)
        .arg(if operator { "1" } else { "0" })
        .invoke_async(&mut c)
        .await?;
    match out.first().map(String::as_str) {
        Some("missing") => Err(RegistryError::Missing(name.into())),
        Some("forbidden") => Err(RegistryError::NotOwner {
            name: name.into(),
            owner: out.get(1).cloned().unwrap_or_default(),
        }),
        _ => Ok(out.get(1).and_then(|v| v.parse().ok()).unwrap_or(0)),
    }
}

fn decode(name: &str, text: &str) -> Result<Authored, RegistryError> {
    serde_json::from_str(text).map_err(|e| RegistryError::Corrupt {
        name: name.into(),
        detail: e.to_string(),
    })
}

/// One component by name.
pub async fn get(q: &Queue, name: &str) -> Result<Option<Authored>, RegistryError> {
    let key = q.keys().registry("components");
    let name_owned = name.to_string();
    let text: Option<String> = q
        .retrying("read a component", |mut c| {
            let (key, name) = (key.clone(), name_owned.clone());
            async move { Ok(c.hget(key, name).await?) }
        })
        .await?;
    text.map(|t| decode(name, &t)).transpose()
}

/// Every component, by name; unreadable records are skipped with a warning.
pub async fn list(q: &Queue) -> Result<Vec<Authored>, RegistryError> {
    let key = q.keys().registry("components");
    let all: Vec<(String, String)> = q
        .retrying("list components", |mut c| {
            let key = key.clone();
            async move { Ok(c.hgetall(key).await?) }
        })
        .await?;
    let mut out: Vec<Authored> = all
        .into_iter()
        .filter_map(|(name, text)| match decode(&name, &text) {
            Ok(a) => Some(a),
            Err(e) => {
                tracing::warn!(%name, error = %e, "an authored component is not readable; skipped");
                None
            }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The registry version: 0 before the first write.
pub async fn version(q: &Queue) -> Result<u64, RegistryError> {
    let key = q.keys().registry("version");
    let v: Option<u64> = q
        .retrying("read the registry version", |mut c| {
            let key = key.clone();
            async move { Ok(c.get(key).await?) }
        })
        .await?;
    Ok(v.unwrap_or(0))
}
