//! The registry of authored components over HTTP (issue 20): write (validated, then stored
//! under the caller's bot), remove (own only; the operator any), list and read, each marked
//! built-in or authored with its owner. The built-in blocks and heads are read-only names.
//!
//! Validation and the copy of registry documents into specs are `crate::registry`'s; the
//! store is `engine::registry`. This module only maps their answers to statuses: 413 past the
//! size bound, 422 naming the node and field of every graph issue, 403 for a built-in name or
//! another bot's component, 404 for no such component. It trains nothing.

use serde::Deserialize;
use serde_json::{json, Value};
use warp::http::StatusCode;
use warp::Rejection;

use super::error::{internal, reject, reject_with};
use super::route::{ok, reply, Answer, Call};
use crate::registry::{self, WriteError};
use engine::principals::Role;
use engine::registry::{self as store, Authored, RegistryError};
use trainer::zoo::registry as zoo;

/// `POST /registry/write`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WriteBody {
    pub(super) name: Option<String>,
    pub(super) document: Option<Value>,
}

impl WriteBody {
    /// The request body's JSON schema.
    pub fn schema() -> Value {
        json!({"type": "object", "required": ["document"], "properties": {
            "name": {"type": "string", "pattern": "^[A-Za-z][A-Za-z0-9_]{0,63}$"},
            "document": {"type": "object"}}})
    }
}

/// The status and message of a refused write or removal.
pub(super) fn refusal(e: WriteError) -> Rejection {
    match e {
        WriteError::TooLarge(_) => reject(StatusCode::PAYLOAD_TOO_LARGE, e.to_string()),
        WriteError::Builtin(..) => reject(StatusCode::FORBIDDEN, e.to_string()),
        WriteError::Invalid(ref issues) => reject_with(
            StatusCode::UNPROCESSABLE_ENTITY,
            e.to_string(),
            json!({ "issues": issues }),
        ),
        WriteError::Store(s) => store_refusal(s),
    }
}

pub(super) fn store_refusal(e: RegistryError) -> Rejection {
    match e {
        RegistryError::NotOwner { .. } => reject(StatusCode::FORBIDDEN, e.to_string()),
        RegistryError::Missing { .. } => reject(StatusCode::NOT_FOUND, e.to_string()),
        RegistryError::Full { .. } => reject(StatusCode::CONFLICT, e.to_string()),
        RegistryError::Corrupt { .. } | RegistryError::Queue(_) => internal(e),
    }
}

/// An authored component as listed (without its document).
fn entry(a: &Authored, c: &Call) -> Value {
    json!({"name": a.name, "use_as": format!("graph:{}", a.name), "kind": a.kind,
           "source": "authored", "owner": a.owner, "version": a.version,
           "content_hash": a.content_hash, "updated_at_ms": a.updated_at_ms,
           "writable": c.role == Role::Operator || a.owner == c.bot})
}

/// `POST /registry/write`: 201 for a new name, 200 for an overwrite of the caller's own.
pub(super) async fn write(c: Call) -> Answer {
    let b: WriteBody = c.json()?;
    let doc = b.document.ok_or_else(|| {
        reject(
            StatusCode::BAD_REQUEST,
            "field `document`: is required: a component graph (see docs/components.md)",
        )
    })?;
    let (p, w) = registry::write(
        &c.state.queue,
        b.name.as_deref(),
        doc,
        &c.bot,
        c.role == Role::Operator,
    )
    .await
    .map_err(refusal)?;
    let status = if w.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(reply(
        status,
        json!({"name": p.doc.name, "use_as": format!("graph:{}", p.doc.name),
               "kind": p.report.kind, "owner": w.owner, "version": w.version,
               "created": w.created, "content_hash": p.content_hash, "report": p.report}),
    ))
}

/// `DELETE /registry/{name}`.
pub(super) async fn delete(c: Call) -> Answer {
    let name = c.param("name")?.to_string();
    let v = registry::remove(&c.state.queue, &name, &c.bot, c.role == Role::Operator)
        .await
        .map_err(refusal)?;
    Ok(ok(json!({"name": name, "deleted": true, "version": v})))
}

fn builtins(kind: &str, list: &[zoo::ComponentInfo]) -> Vec<Value> {
    list.iter()
        .map(|i| json!({"name": i.name, "kind": kind, "source": "built-in", "writable": false}))
        .collect()
}

/// `GET /registry/components`: built-ins and authored components, marked, with the version.
pub(super) async fn list(c: Call) -> Answer {
    let q = &c.state.queue;
    let version = store::version(q).await.map_err(store_refusal)?;
    let authored = store::list(q).await.map_err(store_refusal)?;
    let mut all = builtins("block", zoo::BLOCKS);
    all.extend(builtins("head", zoo::HEADS));
    all.extend(authored.iter().map(|a| entry(a, &c)));
    let n = all.len();
    Ok(ok(
        json!({"version": version, "components": all, "total": n, "authored": authored.len()}),
    ))
}

/// `GET /registry/component/{name}`: an authored component with its document, or a
/// built-in's description.
pub(super) async fn show(c: Call) -> Answer {
    let name = c.param("name")?;
    let name = name.strip_prefix("graph:").unwrap_or(name);
    if let Some(a) = store::get(&c.state.queue, name)
        .await
        .map_err(store_refusal)?
    {
        let mut v = entry(&a, &c);
        v["document"] = a.document;
        return Ok(ok(v));
    }
    if let Some(b) = zoo::find_block(name) {
        return Ok(ok(
            json!({"name": b.name, "kind": "block", "source": "built-in", "writable": false, "info": b}),
        ));
    }
    if let Some(h) = zoo::find_head(name) {
        return Ok(ok(
            json!({"name": h.name, "kind": "head", "source": "built-in", "writable": false, "info": h}),
        ));
    }
    Err(reject(
        StatusCode::NOT_FOUND,
        format!("no component {name:?}, built-in or authored (see GET /registry/components)"),
    ))
}

/// The authored components of `kind`, as `/components/blocks|heads` list them.
pub(super) async fn authored_of(c: &Call, kind: &str) -> Result<Vec<Value>, Rejection> {
    let list = store::list(&c.state.queue).await.map_err(store_refusal)?;
    Ok(list
        .iter()
        .filter(|a| a.kind == kind)
        .map(|a| {
            let mut v = entry(a, c);
            v["params"] = a.document.get("params").cloned().unwrap_or(json!({}));
            v["description"] = a.document.get("description").cloned().unwrap_or(json!(""));
            v
        })
        .collect())
}

/// Copies the registry components a spec names into it (422 never: names found nowhere are
/// left for validation to report); the components it copied.
pub(super) async fn resolve(
    c: &Call,
    spec: &mut trainer::zoo::spec::ExperimentSpec,
) -> Result<Vec<registry::Used>, Rejection> {
    registry::resolve(&c.state.queue, spec)
        .await
        .map_err(store_refusal)
}
