//! Authored agents and prompt modules (issue 20): what bots write on the registry's `agents`
//! and `prompts` shelves, and what a stage job reads at its start. A write is checked here
//! before `engine::registry` stores it: the size bound, the built-in names (read-only), the
//! rules of `agents::definition` (tools from the registered ones, context keys, fragment
//! bounds), and for a module, that its agent exists. The store checks the owner in the same
//! script that writes.
//!
//! A prompt module reaches only the runs of the bot that wrote it (a bot cannot change
//! another bot's prompts); an agent definition reaches the runs of every pipeline definition
//! whose stage names it (the operator's choice, `pipeline-def set`).
//!
//! What it does not do: serve HTTP (`bridge/agents.rs`), print (`cli/agents.rs`), or run an
//! agent (`pipeline::llm`). Nothing here executes what a bot wrote.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use agents::authoring::AuthoringAgent;
use agents::definition::{self, AgentDef, DefIssue, PromptModule};
use agents::AgentName;
use engine::queue::Queue;
use engine::registry::{self as store, Authored, RegistryError, Shelf, Written};

/// Why a document is not stored or an agent cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum DefError {
    #[error("document: {0} bytes is over the {max}-byte limit; shorten the fragments", max = definition::MAX_DOC_BYTES)]
    TooLarge(usize),
    #[error("{0:?} is a built-in agent, which is read-only; write yours under another name, or add to its prompt with a prompt module (POST /agents/prompts/write)")]
    Builtin(String),
    #[error("document is not valid: {}", issues_text(.0))]
    Invalid(Vec<DefIssue>),
    #[error("agent {name:?} is used by the pipeline definition's stage {stage:?}; take the stage out first (synth-city pipeline-def set)")]
    InUse { name: String, stage: String },
    #[error("no agent {0:?}, built-in or authored (see GET /agents)")]
    Unknown(String),
    #[error(transparent)]
    Store(#[from] RegistryError),
}

fn issues_text(issues: &[DefIssue]) -> String {
    issues
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

fn invalid(field: &str, message: String) -> DefError {
    DefError::Invalid(vec![DefIssue {
        field: field.into(),
        message,
    }])
}

/// The size bound and the JSON shape, then the document as `T` (named `name` when given).
fn decode<T: serde::de::DeserializeOwned>(
    document: Value,
    name: Option<&str>,
    what: &str,
) -> Result<T, DefError> {
    let bytes = serde_json::to_string(&document)
        .map(|s| s.len())
        .unwrap_or(0);
    if bytes > definition::MAX_DOC_BYTES {
        return Err(DefError::TooLarge(bytes));
    }
    let mut document = document;
    let Some(obj) = document.as_object_mut() else {
        return Err(invalid(
            "document",
            format!("must be {what} (a JSON object); see docs/agents.md"),
        ));
    };
    if let Some(n) = name.map(str::trim).filter(|n| !n.is_empty()) {
        obj.insert("name".into(), Value::String(n.to_string()));
    }
    serde_json::from_value(document)
        .map_err(|e| invalid("document", format!("{e}; see docs/agents.md for {what}")))
}

/// Stores a checked document on `shelf` (kind `agent` or `prompt`) with the SHA-256 of its
/// JSON; what the store did and that hash.
async fn put(
    q: &Queue,
    shelf: Shelf,
    name: &str,
    doc: &impl Serialize,
    caller: &str,
    operator: bool,
) -> Result<(Written, String), DefError> {
    let value = serde_json::to_value(doc).expect("a document serialises");
    let hash = publisher::store::sha256_hex(value.to_string().as_bytes());
    let kind = match shelf {
        Shelf::Prompts => "prompt",
        _ => "agent",
    };
    let w = store::put_on(q, shelf, name, kind, &hash, &value, caller, operator).await?;
    Ok((w, hash))
}

/// Checks an agent definition (named `name` when given) for storing.
pub fn prepare_agent(name: Option<&str>, document: Value) -> Result<AgentDef, DefError> {
    let def: AgentDef = decode(document, name, "an agent definition (synth-city/agent@1)")?;
    if definition::is_builtin(&def.name) {
        return Err(DefError::Builtin(def.name));
    }
    def.check().map_err(DefError::Invalid)?;
    Ok(def)
}

/// Validates and stores an agent definition for `caller` (`operator` may overwrite any);
/// answers it, what the store did and its content hash.
pub async fn write_agent(
    q: &Queue,
    name: Option<&str>,
    document: Value,
    caller: &str,
    operator: bool,
) -> Result<(AgentDef, Written, String), DefError> {
    let def = prepare_agent(name, document)?;
    let (w, hash) = put(q, Shelf::Agents, &def.name, &def, caller, operator).await?;
    Ok((def, w, hash))
}

/// Validates and stores a prompt module for `caller`; its agent must exist (built-in or
/// authored).
pub async fn write_prompt(
    q: &Queue,
    name: Option<&str>,
    document: Value,
    caller: &str,
    operator: bool,
) -> Result<(PromptModule, Written, String), DefError> {
    let m: PromptModule = decode(document, name, "a prompt module (synth-city/prompt@1)")?;
    m.check().map_err(DefError::Invalid)?;
    if !definition::is_builtin(&m.agent)
        && store::get_from(q, Shelf::Agents, &m.agent).await?.is_none()
    {
        return Err(invalid(
            "agent",
            format!(
                "no agent {:?}, built-in or authored; name one of GET /agents",
                m.agent
            ),
        ));
    }
    let (w, hash) = put(q, Shelf::Prompts, &m.name, &m, caller, operator).await?;
    Ok((m, w, hash))
}

/// Removes an authored agent: never a built-in, another bot's only for the operator, and not
/// while the stored pipeline definition names it.
pub async fn remove_agent(
    q: &Queue,
    name: &str,
    caller: &str,
    operator: bool,
) -> Result<u64, DefError> {
    if definition::is_builtin(name) {
        return Err(DefError::Builtin(name.into()));
    }
    if let Ok(def) = crate::pipeline::definition::load(q).await {
        if let Some(s) = def.stages.iter().find(|s| s.agent == name) {
            return Err(DefError::InUse {
                name: name.into(),
                stage: s.name.clone(),
            });
        }
    }
    Ok(store::remove_from(q, Shelf::Agents, name, caller, operator).await?)
}

/// Removes a prompt module (its owner's; the operator any).
pub async fn remove_prompt(
    q: &Queue,
    name: &str,
    caller: &str,
    operator: bool,
) -> Result<u64, DefError> {
    Ok(store::remove_from(q, Shelf::Prompts, name, caller, operator).await?)
}

/// The definition stored in a record.
pub fn agent_of(a: &Authored) -> Result<AgentDef, RegistryError> {
    serde_json::from_value(a.document.clone()).map_err(|e| RegistryError::Corrupt {
        name: a.name.clone(),
        detail: e.to_string(),
    })
}

fn module_of(a: &Authored) -> Result<PromptModule, RegistryError> {
    serde_json::from_value(a.document.clone()).map_err(|e| RegistryError::Corrupt {
        name: a.name.clone(),
        detail: e.to_string(),
    })
}

/// Every built-in agent as a definition: the five stage agents, then the three authoring
/// agents (`agents::authoring`).
pub fn builtins() -> Vec<AgentDef> {
    AgentName::ALL
        .into_iter()
        .map(AgentDef::builtin)
        .chain(
            AuthoringAgent::ALL
                .into_iter()
                .map(AuthoringAgent::definition),
        )
        .collect()
}

/// An agent by name: a built-in's definition (no record), or the registry's current version
/// with its record; None when it is neither.
pub async fn agent(
    q: &Queue,
    name: &str,
) -> Result<Option<(AgentDef, Option<Authored>)>, DefError> {
    if let Some(def) = builtins().into_iter().find(|d| d.name == name) {
        return Ok(Some((def, None)));
    }
    match store::get_from(q, Shelf::Agents, name).await? {
        Some(rec) => Ok(Some((agent_of(&rec)?, Some(rec)))),
        None => Ok(None),
    }
}

/// The prompt modules on the registry for `agent`, with their records: those of `bot` only,
/// or every bot's when `bot` is None (the operator's view).
pub async fn modules_for(
    q: &Queue,
    agent: &str,
    bot: Option<&str>,
) -> Result<Vec<(PromptModule, Authored)>, DefError> {
    let mut out = Vec::new();
    for rec in store::list_of(q, Shelf::Prompts).await? {
        if bot.is_some_and(|b| b != rec.owner) {
            continue;
        }
        match module_of(&rec) {
            Ok(m) if m.agent == agent => out.push((m, rec)),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "a prompt module is not readable; skipped"),
        }
    }
    Ok(out)
}

/// What a stage job of run bot `bot` runs for the stage agent `name`, read at the job's start
/// (so a worker sees the current version without a restart): the definition and `bot`'s
/// prompt modules for it.
pub async fn for_stage(
    q: &Queue,
    name: &str,
    bot: &str,
) -> Result<(AgentDef, Vec<PromptModule>), DefError> {
    let (def, _) = agent(q, name)
        .await?
        .ok_or_else(|| DefError::Unknown(name.into()))?;
    let modules = modules_for(q, name, Some(bot))
        .await?
        .into_iter()
        .map(|(m, _)| m)
        .collect();
    Ok((def, modules))
}

/// Every authored agent's name and the built-in part it plays, for the pipeline definition's
/// validation.
pub async fn authored_roles(q: &Queue) -> Result<BTreeMap<String, String>, DefError> {
    let mut out = BTreeMap::new();
    for rec in store::list_of(q, Shelf::Agents).await? {
        match agent_of(&rec) {
            Ok(d) => {
                out.insert(d.name.clone(), d.acts_as.clone());
            }
            Err(e) => tracing::warn!(error = %e, "an authored agent is not readable; skipped"),
        }
    }
    Ok(out)
}
