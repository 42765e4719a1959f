//! Agents and prompt modules over HTTP (issue 20): list and read agents (the five built-ins,
//! read-only, and the authored ones with owner and version), write and remove an agent
//! definition or a prompt module as the caller's. Validation and storage are
//! `crate::agent_defs`'s; this module maps their answers to statuses: 413 past the size bound,
//! 422 naming the field of every issue, 403 for a built-in or another bot's document, 404 for
//! none, 409 for an agent the pipeline definition uses or a bot's full shelf.
//!
//! A caller sees its own prompt modules only (the operator every bot's): a module reaches only
//! its owner's runs. It runs no agent.

use serde_json::{json, Value};
use warp::http::StatusCode;
use warp::Rejection;

use super::authored::{store_refusal, WriteBody};
use super::error::{reject, reject_with};
use super::route::{ok, reply, Answer, Call};
use crate::agent_defs::{self, DefError};
use agents::definition::{self, AgentDef};
use engine::principals::Role;
use engine::registry::{self as store, Authored, Shelf, Written};

/// The body of `POST /agents/write` and `POST /agents/prompts/write`: the registry's
/// `{name?, document}`, with an agent's or module's name.
pub(super) fn write_schema() -> Value {
    json!({"type": "object", "required": ["document"], "properties": {
        "name": {"type": "string", "pattern": "^[a-z][a-z0-9_]{0,47}$"},
        "document": {"type": "object"}}})
}

fn document(b: &WriteBody, what: &str) -> Result<Value, Rejection> {
    b.document.clone().ok_or_else(|| {
        reject(
            StatusCode::BAD_REQUEST,
            format!("field `document`: is required: {what} (see docs/agents.md)"),
        )
    })
}

fn refusal(e: DefError) -> Rejection {
    match e {
        DefError::TooLarge(_) => reject(StatusCode::PAYLOAD_TOO_LARGE, e.to_string()),
        DefError::Builtin(_) => reject(StatusCode::FORBIDDEN, e.to_string()),
        DefError::Invalid(ref issues) => reject_with(
            StatusCode::UNPROCESSABLE_ENTITY,
            e.to_string(),
            json!({ "issues": issues }),
        ),
        DefError::InUse { .. } => reject(StatusCode::CONFLICT, e.to_string()),
        DefError::Unknown(_) => reject(StatusCode::NOT_FOUND, e.to_string()),
        DefError::Store(s) => store_refusal(s),
    }
}

fn operator(c: &Call) -> bool {
    c.role == Role::Operator
}

/// An agent as listed: what it is, who owns it, what it plays.
fn entry(def: &AgentDef, rec: Option<&Authored>, c: &Call) -> Value {
    let mut v = json!({"name": def.name, "acts_as": def.acts_as, "description": def.description,
        "model": def.model, "temperature": def.temperature, "max_turns": def.max_turns,
        "tools": def.tools, "context_keys": def.context_keys,
        "fragments": def.fragments.len()});
    match rec {
        Some(a) => {
            v["source"] = json!("authored");
            v["owner"] = json!(a.owner);
            v["version"] = json!(a.version);
            v["content_hash"] = json!(a.content_hash);
            v["updated_at_ms"] = json!(a.updated_at_ms);
            v["writable"] = json!(operator(c) || a.owner == c.bot);
        }
        None => {
            v["source"] = json!("built-in");
            v["writable"] = json!(false);
        }
    }
    v
}

fn written(w: &Written, name: &str, hash: &str) -> Value {
    json!({"name": name, "owner": w.owner, "version": w.version, "created": w.created,
           "content_hash": hash})
}

/// `GET /agents`: the built-ins and the authored agents, marked, with the shelf's version.
pub(super) async fn list(c: Call) -> Answer {
    let q = &c.state.queue;
    let version = store::version_of(q, Shelf::Agents)
        .await
        .map_err(store_refusal)?;
    let mut all: Vec<Value> = agent_defs::builtins()
        .iter()
        .map(|d| entry(d, None, &c))
        .collect();
    let authored = store::list_of(q, Shelf::Agents)
        .await
        .map_err(store_refusal)?;
    for rec in &authored {
        match agent_defs::agent_of(rec) {
            Ok(def) => all.push(entry(&def, Some(rec), &c)),
            Err(e) => tracing::warn!(error = %e, "an authored agent is not readable; skipped"),
        }
    }
    let n = all.len();
    Ok(ok(
        json!({"version": version, "agents": all, "total": n, "authored": authored.len()}),
    ))
}

/// `GET /agents/{name}`: the definition (its whole document) and the prompt modules for it
/// that the caller may see (its own; the operator's view: every bot's).
pub(super) async fn show(c: Call) -> Answer {
    let name = c.param("name")?.to_string();
    if definition::RESERVED.contains(&name.as_str()) {
        // `/agents/list`, `/agents/read`, ...: their own rows answer (with their errors)
        return Err(warp::reject::not_found());
    }
    let q = &c.state.queue;
    let Some((def, rec)) = agent_defs::agent(q, &name).await.map_err(refusal)? else {
        return Err(refusal(DefError::Unknown(name)));
    };
    let bot = (!operator(&c)).then_some(c.bot.as_str());
    let modules: Vec<Value> = agent_defs::modules_for(q, &name, bot)
        .await
        .map_err(refusal)?
        .into_iter()
        .map(|(m, a)| {
            json!({"name": m.name, "owner": a.owner, "version": a.version,
                   "content_hash": a.content_hash, "document": m})
        })
        .collect();
    let mut v = entry(&def, rec.as_ref(), &c);
    v["document"] = serde_json::to_value(&def).unwrap_or(Value::Null);
    v["prompt_modules"] = json!(modules);
    Ok(ok(v))
}

/// `POST /agents/write`: 201 for a new name, 200 for an overwrite of the caller's own.
pub(super) async fn write(c: Call) -> Answer {
    let b: WriteBody = c.json()?;
    let doc = document(&b, "an agent definition (synth-city/agent@1)")?;
    let (def, w, hash) =
        agent_defs::write_agent(&c.state.queue, b.name.as_deref(), doc, &c.bot, operator(&c))
            .await
            .map_err(refusal)?;
    let mut v = written(&w, &def.name, &hash);
    v["acts_as"] = json!(def.acts_as);
    Ok(reply(status_of(&w), v))
}

fn status_of(w: &Written) -> StatusCode {
    if w.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    }
}

/// `POST /agents/prompts/write`: a prompt module for an agent, as the caller's.
pub(super) async fn write_prompt(c: Call) -> Answer {
    let b: WriteBody = c.json()?;
    let doc = document(&b, "a prompt module (synth-city/prompt@1)")?;
    let (m, w, hash) =
        agent_defs::write_prompt(&c.state.queue, b.name.as_deref(), doc, &c.bot, operator(&c))
            .await
            .map_err(refusal)?;
    let mut v = written(&w, &m.name, &hash);
    v["agent"] = json!(m.agent);
    Ok(reply(status_of(&w), v))
}

/// `DELETE /agents/{name}`.
pub(super) async fn delete(c: Call) -> Answer {
    let name = c.param("name")?.to_string();
    let v = agent_defs::remove_agent(&c.state.queue, &name, &c.bot, operator(&c))
        .await
        .map_err(refusal)?;
    Ok(ok(json!({"name": name, "deleted": true, "version": v})))
}

/// `DELETE /agents/prompts/{name}`.
pub(super) async fn delete_prompt(c: Call) -> Answer {
    let name = c.param("name")?.to_string();
    let v = agent_defs::remove_prompt(&c.state.queue, &name, &c.bot, operator(&c))
        .await
        .map_err(refusal)?;
    Ok(ok(json!({"name": name, "deleted": true, "version": v})))
}
