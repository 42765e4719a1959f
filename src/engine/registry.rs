//! The store of authored documents (issue 20): small JSON documents that bots write under a
//! global name, each with its owner bot, a version and a content hash, in Redis. Three
//! shelves ([`Shelf`]) share one layout and the same two scripts: components (graphs), agent
//! definitions and prompt modules.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `registry:components` | hash | name -> [`Authored`] JSON |
//! | `registry:owners` | hash | name -> owner bot |
//! | `registry:version` | string | a counter bumped by every write and removal |
//! | `registry:agents`, `registry:agents:owners`, `registry:agents:version` | | the same for agent definitions |
//! | `registry:prompts`, `registry:prompts:owners`, `registry:prompts:version` | | the same for prompt modules |
//!
//! A write and a removal are one script each (`registry_put.lua`, `registry_delete.lua`), which
//! check ownership in the same step: a name held by another bot is refused unless the caller
//! is the operator. Names are global per shelf, so any bot can use any component or agent by
//! name.
//!
//! What it does not do: it never reads a document. Validation (the graph validator, the agent
//! definition rules, the size bounds, built-in names) is the caller's
//! (`synth_city::registry`, `synth_city::agent_defs`), before anything is stored; this crate
//! knows nothing of graphs or prompts.

use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::queue::{Queue, QueueError};

/// Most documents one bot may hold on one shelf (the operator is not bounded).
pub const MAX_PER_OWNER: usize = 64;

/// Which kind of authored document: each shelf has its own names, owners and version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Shelf {
    /// Component graphs (blocks and heads).
    Components,
    /// Agent definitions (`synth-city/agent@1`).
    Agents,
    /// Prompt modules (`synth-city/prompt@1`).
    Prompts,
}

impl Shelf {
    /// The key parts (under `registry:`) of the records hash, the owners hash and the version.
    fn parts(self) -> [&'static str; 3] {
        match self {
            Shelf::Components => ["components", "owners", "version"],
            Shelf::Agents => ["agents", "agents:owners", "agents:version"],
            Shelf::Prompts => ["prompts", "prompts:owners", "prompts:version"],
        }
    }

    /// What one document of the shelf is called in messages.
    pub fn noun(self) -> &'static str {
        match self {
            Shelf::Components => "component",
            Shelf::Agents => "agent",
            Shelf::Prompts => "prompt module",
        }
    }

    /// Where a caller lists the shelf.
    fn listing(self) -> &'static str {
        match self {
            Shelf::Components => "GET /registry/components",
            Shelf::Agents => "GET /agents",
            Shelf::Prompts => "GET /agents/{agent}",
        }
    }
}

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
    #[error("{} {name:?} belongs to bot {owner:?}; a bot may change only its own (write it under another name)", .shelf.noun())]
    NotOwner {
        shelf: Shelf,
        name: String,
        owner: String,
    },
    #[error("no authored {} {name:?} (see {})", .shelf.noun(), .shelf.listing())]
    Missing { shelf: Shelf, name: String },
    #[error("bot {owner:?} already holds {n} of the {}s, the most one bot may hold ({MAX_PER_OWNER}); remove one first", .shelf.noun())]
    Full {
        shelf: Shelf,
        owner: String,
        n: usize,
    },
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

/// Stores `document` (already validated) as `name` on `shelf`, for `caller`; `operator` may
/// overwrite any.
#[allow(clippy::too_many_arguments)]
pub async fn put_on(
    q: &Queue,
    shelf: Shelf,
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
        .arg(&shelf.parts()[..])
        .invoke_async(&mut c)
        .await?;
    match out.first().map(String::as_str) {
        Some("forbidden") => Err(RegistryError::NotOwner {
            shelf,
            name: name.into(),
            owner: out.get(1).cloned().unwrap_or_default(),
        }),
        Some("full") => Err(RegistryError::Full {
            shelf,
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

/// Removes the component `name` for `caller` (its owner, or the operator); the registry
/// version after it.
pub async fn remove(
    q: &Queue,
    name: &str,
    caller: &str,
    operator: bool,
) -> Result<u64, RegistryError> {
    remove_from(q, Shelf::Components, name, caller, operator).await
}

/// Removes `name` from `shelf` for `caller` (its owner, or the operator); the shelf's version
/// after it.
pub async fn remove_from(
    q: &Queue,
    shelf: Shelf,
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
        .arg(&shelf.parts()[..])
        .invoke_async(&mut c)
        .await?;
    match out.first().map(String::as_str) {
        Some("missing") => Err(RegistryError::Missing {
            shelf,
            name: name.into(),
        }),
        Some("forbidden") => Err(RegistryError::NotOwner {
            shelf,
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
    get_from(q, Shelf::Components, name).await
}

/// One document of `shelf` by name.
pub async fn get_from(
    q: &Queue,
    shelf: Shelf,
    name: &str,
) -> Result<Option<Authored>, RegistryError> {
    let key = q.keys().registry(shelf.parts()[0]);
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
    list_of(q, Shelf::Components).await
}

/// Every document of `shelf`, by name; unreadable records are skipped with a warning.
pub async fn list_of(q: &Queue, shelf: Shelf) -> Result<Vec<Authored>, RegistryError> {
    let key = q.keys().registry(shelf.parts()[0]);
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
                tracing::warn!(%name, error = %e, shelf = shelf.noun(), "an authored document is not readable; skipped");
                None
            }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The component registry's version: 0 before the first write.
pub async fn version(q: &Queue) -> Result<u64, RegistryError> {
    version_of(q, Shelf::Components).await
}

/// The version of `shelf`: 0 before its first write.
pub async fn version_of(q: &Queue, shelf: Shelf) -> Result<u64, RegistryError> {
    let key = q.keys().registry(shelf.parts()[2]);
    let v: Option<u64> = q
        .retrying("read the registry version", |mut c| {
            let key = key.clone();
            async move { Ok(c.get(key).await?) }
        })
        .await?;
    Ok(v.unwrap_or(0))
}
