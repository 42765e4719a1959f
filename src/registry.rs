//! Authored components (issue 20): what bots write into the registry and how experiments
//! find them. A write is validated here before the store (`engine::registry`) sees it: the
//! size bound, the built-in names (read-only), and the graph validator
//! (`trainer::zoo::graph::check`, at the presets' d_model 32 and seq_len 64). Then
//! [`resolve`] copies the documents a spec names but does not carry into its
//! `model.components`, so the job payload (and the checkpoint) carries the graph as data and
//! no worker looks anything up.
//!
//! What it does not do: serve HTTP (`bridge/authored.rs`), print anything (the CLI's
//! `components add|show|remove`), or decide who is the operator (the callers pass it).

use serde_json::Value;

use engine::queue::Queue;
use engine::registry::{self as store, Authored, RegistryError, Written};
use trainer::zoo::graph::{self, ComponentDoc, GraphIssue};
use trainer::zoo::registry as zoo;
use trainer::zoo::spec::{ExperimentSpec, GRAPH_PREFIX};

/// The backbone a written document is checked for (the presets' and `components check`'s).
pub const CHECK_CTX: graph::Ctx = graph::Ctx {
    d_model: 32,
    seq_len: 64,
};

/// Why a document is not stored.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("document: {0} bytes is over the {max}-byte limit; make the graph smaller", max = graph::MAX_BODY_BYTES)]
    TooLarge(usize),
    #[error("{0:?} is the built-in {1} {2:?}, which is read-only; write your component under another name")]
    Builtin(String, &'static str, &'static str),
    #[error("document is not a valid component graph: {}", issues_text(.0))]
    Invalid(Vec<GraphIssue>),
    #[error(transparent)]
    Store(#[from] RegistryError),
}

fn issues_text(issues: &[GraphIssue]) -> String {
    issues
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// A document that passed every check, ready to store.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub doc: ComponentDoc,
    /// The document as stored (canonical JSON of `doc`).
    pub value: Value,
    pub content_hash: String,
    pub report: graph::Report,
}

/// The built-in a name refers to (`TCNBlock`, `tcn`, `gbm`: case-insensitive, suffix optional).
pub fn builtin(name: &str) -> Option<(&'static str, &'static str)> {
    zoo::find_block(name)
        .map(|b| ("block", b.name))
        .or_else(|| zoo::find_head(name).map(|h| ("head", h.name)))
}

/// Checks `document` (named `name` when given: the name replaces the document's).
pub fn prepare(name: Option<&str>, document: Value) -> Result<Prepared, WriteError> {
    let bytes = serde_json::to_string(&document)
        .map(|s| s.len())
        .unwrap_or(0);
    if bytes > graph::MAX_BODY_BYTES {
        return Err(WriteError::TooLarge(bytes));
    }
    if !document.is_object() {
        return Err(WriteError::Invalid(vec![GraphIssue {
            node: None,
            field: "document".into(),
            message: "must be a component graph (a JSON object); see docs/components.md".into(),
        }]));
    }
    let mut doc: ComponentDoc = serde_json::from_value(document).map_err(|e| {
        WriteError::Invalid(vec![GraphIssue {
            node: None,
            field: "document".into(),
            message: format!("{e}; see docs/components.md for the format"),
        }])
    })?;
    if let Some(n) = name.map(str::trim).filter(|n| !n.is_empty()) {
        doc.name = n.to_string();
    }
    if let Some((kind, canonical)) = builtin(&doc.name) {
        return Err(WriteError::Builtin(doc.name, kind, canonical));
    }
    let checked =
        graph::check(&doc, CHECK_CTX, &serde_json::Map::new()).map_err(WriteError::Invalid)?;
    Ok(Prepared {
        value: serde_json::to_value(&doc).expect("a document serialises"),
        content_hash: graph::content_hash(&doc),
        report: checked.report(),
        doc,
    })
}

/// Validates and stores a document for `caller` (`operator` may overwrite any component).
pub async fn write(
    q: &Queue,
    name: Option<&str>,
    document: Value,
    caller: &str,
    operator: bool,
) -> Result<(Prepared, Written), WriteError> {
    let p = prepare(name, document)?;
    let kind = match p.doc.kind {
        graph::Kind::Block => "block",
        graph::Kind::Head => "head",
    };
    let w = store::put_on(
        q,
        store::Shelf::Components,
        &p.doc.name,
        kind,
        &p.content_hash,
        &p.value,
        caller,
        operator,
    )
    .await?;
    Ok((p, w))
}

/// Removes a component: the built-ins never; another bot's only for the operator.
pub async fn remove(
    q: &Queue,
    name: &str,
    caller: &str,
    operator: bool,
) -> Result<u64, WriteError> {
    if let Some((kind, canonical)) = builtin(name) {
        return Err(WriteError::Builtin(name.into(), kind, canonical));
    }
    Ok(store::remove(q, name, caller, operator).await?)
}

/// A registry component copied into a spec.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Used {
    pub name: String,
    pub owner: String,
    pub version: u64,
    pub content_hash: String,
}

/// Copies into `spec.model.components` every registry component the spec names but does not
/// carry: blocks and the head named `graph:<name>`, and bare names that are no built-in but a
/// registry component's (renamed `graph:<name>`). An inline document wins over the registry's.
/// Names found nowhere are left for `validate()` to report.
pub async fn resolve(q: &Queue, spec: &mut ExperimentSpec) -> Result<Vec<Used>, RegistryError> {
    let mut used: Vec<Used> = Vec::new();
    let inline = |spec: &ExperimentSpec, n: &str| spec.model.components.iter().any(|c| c.name == n);
    let mut names: Vec<String> = spec.model.backbone.blocks.clone();
    names.push(spec.model.head.kind.clone());
    let n_blocks = spec.model.backbone.blocks.len();
    for (i, name) in names.into_iter().enumerate() {
        let (gname, bare) = match name.strip_prefix(GRAPH_PREFIX) {
            Some(g) => (g.to_string(), false),
            None if builtin(&name).is_none() && !name.trim().is_empty() => (name.clone(), true),
            None => continue,
        };
        if !inline(spec, &gname) {
            if used.iter().any(|u| u.name == gname) {
                // already copied for an earlier slot
            } else {
                let Some(a) = store::get(q, &gname).await? else {
                    continue;
                };
                let doc = document_of(&a)?;
                used.push(Used {
                    name: a.name.clone(),
                    owner: a.owner.clone(),
                    version: a.version,
                    content_hash: a.content_hash.clone(),
                });
                spec.model.components.push(doc);
            }
        }
        if bare {
            let full = format!("{GRAPH_PREFIX}{gname}");
            if i < n_blocks {
                spec.model.backbone.blocks[i] = full;
            } else {
                spec.model.head.kind = full;
            }
        }
    }
    Ok(used)
}

/// The stored document of a component.
pub fn document_of(a: &Authored) -> Result<ComponentDoc, RegistryError> {
    serde_json::from_value(a.document.clone()).map_err(|e| RegistryError::Corrupt {
        name: a.name.clone(),
        detail: e.to_string(),
    })
}
