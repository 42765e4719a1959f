//! Read-only catalogues: the model zoo's components (blocks, heads, presets
//! from `trainer::zoo::registry`; blocks and heads also list the registry's
//! authored components, marked, from `authored.rs`), the components' source files under the
//! registry directory (list and read; writing comes with component
//! authoring), and the LLM agents (their configuration from
//! the `agents` crate) and prompt templates (`workers/agents/prompts/`).
//!
//! File reads are confined to the registry directory: a path must be
//! relative, made of `[A-Za-z0-9_./-]`, free of `..`, name a `.rs` file and
//! resolve (symlinks followed) inside the directory; anything else is a 400
//! naming the parameter.
//!
//! Nothing here writes: built-in components, agents and prompts change with
//! the build (authored components are written through `authored.rs`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use warp::http::StatusCode;
use warp::Rejection;

use super::error::reject;
use super::route::{ok, Answer, Call};
use agents::{self, AgentName};
use trainer::zoo::registry;

/// Where the components' sources live: `SYNTH_REGISTRY_DIR`, else this
/// build's `workers/trainer/src/zoo`.
fn registry_dir() -> PathBuf {
    std::env::var("SYNTH_REGISTRY_DIR")
        .ok()
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("workers/trainer/src/zoo"))
}

/// The built-ins of a list, each marked `"source": "built-in"`, then the registry's
/// authored components of `kind` (`"source": "authored"`, with owner and version).
async fn listed(
    c: &Call,
    list: &[registry::ComponentInfo],
    kind: &str,
) -> Result<Vec<Value>, Rejection> {
    let mut out: Vec<Value> = list
        .iter()
        .map(|i| {
            let mut v = serde_json::to_value(i).expect("components serialise");
            v["source"] = json!("built-in");
            v
        })
        .collect();
    out.extend(super::authored::authored_of(c, kind).await?);
    Ok(out)
}

/// `GET /components/blocks`: the built-in blocks and the registry's authored ones.
pub(super) async fn blocks(c: Call) -> Answer {
    let all = listed(&c, registry::BLOCKS, "block").await?;
    let n = all.len();
    Ok(ok(json!({"blocks": all, "total": n})))
}

/// `GET /components/heads`: the built-in heads and the registry's authored ones.
pub(super) async fn heads(c: Call) -> Answer {
    let all = listed(&c, registry::HEADS, "head").await?;
    let n = all.len();
    Ok(ok(json!({"heads": all, "total": n})))
}

/// `GET /components/presets`: each preset with the aliases that resolve to it, and every
/// alias (the seed's preset names and short names, those without a counterpart too).
pub(super) async fn presets(_c: Call) -> Answer {
    Ok(ok(json!({"presets": registry::presets_json(),
                 "total": registry::PRESETS.len(),
                 "aliases": registry::PRESET_ALIASES})))
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<Value>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = rd.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.path());
    for e in entries {
        let p = e.path();
        if p.is_dir() {
            walk(root, &p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            let rel = p.strip_prefix(root).unwrap_or(&p).to_string_lossy();
            let size = e.metadata().map(|m| m.len()).unwrap_or(0);
            out.push(json!({"path": rel, "bytes": size}));
        }
    }
}

/// `GET /registry/files`.
pub(super) async fn registry_files(_c: Call) -> Answer {
    let root = registry_dir();
    let files = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        walk(&root, &root, &mut out);
        out
    })
    .await
    .unwrap_or_default();
    let n = files.len();
    Ok(ok(
        json!({"root": registry_dir().display().to_string(), "files": files, "total": n}),
    ))
}

/// A path under `root` that is safe to read, or a 400 naming `param`.
fn confined(root: &Path, rel: &str, param: &str) -> Result<PathBuf, Rejection> {
    let bad = |why: &str| {
        reject(
            StatusCode::BAD_REQUEST,
            format!("query parameter `{param}`: {why}"),
        )
    };
    if rel.is_empty() {
        return Err(bad(
            "is required (e.g. blocks/recurrent.rs; see /registry/files)",
        ));
    }
    if rel.len() > 256
        || rel.starts_with('/')
        || rel.split('/').any(|seg| seg == ".." || seg.is_empty())
        || !rel
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_./-".contains(c))
    {
        return Err(bad(
            "must be a relative path of [A-Za-z0-9_./-] without `..` (see /registry/files)",
        ));
    }
    if !rel.ends_with(".rs") {
        return Err(bad("must name a .rs file"));
    }
    let p = root.join(rel);
    let (Ok(real), Ok(base)) = (p.canonicalize(), root.canonicalize()) else {
        return Err(reject(
            StatusCode::NOT_FOUND,
            format!("no file {rel:?} under the registry (see /registry/files)"),
        ));
    };
    if !real.starts_with(&base) {
        return Err(bad("resolves outside the registry"));
    }
    Ok(real)
}

/// `GET /registry/read?path=`.
pub(super) async fn registry_read(c: Call) -> Answer {
    let rel = c.query.get("path").cloned().unwrap_or_default();
    let p = confined(&registry_dir(), &rel, "path")?;
    match tokio::fs::read_to_string(&p).await {
        Ok(code) => Ok(ok(json!({"path": rel, "bytes": code.len(), "code": code}))),
        Err(e) => Err(reject(
            StatusCode::NOT_FOUND,
            format!("cannot read {rel:?}: {e}"),
        )),
    }
}

fn agent_json(a: AgentName) -> Value {
    let env_model = format!("{}_MODEL", a.as_str().to_ascii_uppercase());
    json!({
        "name": a.as_str(),
        "default_model": agents::config::default_model(a),
        "model_env": env_model,
        "model": std::env::var(&env_model).ok().filter(|m| !m.is_empty())
            .unwrap_or_else(|| agents::config::default_model(a).to_string()),
        "tools": a.tool_names(),
        "context_keys": a.context_keys(),
        "prompt": format!("{}.md", a.as_str()),
    })
}

/// `GET /agents/list`.
pub(super) async fn agents_list(_c: Call) -> Answer {
    let list: Vec<Value> = AgentName::ALL.into_iter().map(agent_json).collect();
    Ok(ok(json!({"agents": list, "total": list.len(),
               "llm_configured": std::env::var("CHUTES_API_KEY").is_ok_and(|k| !k.trim().is_empty())})))
}

fn filename(q: &HashMap<String, String>) -> Result<String, Rejection> {
    match q.get("filename").or_else(|| q.get("name")) {
        Some(f) if !f.trim().is_empty() => Ok(f.trim().to_string()),
        _ => Err(reject(
            StatusCode::BAD_REQUEST,
            "query parameter `filename` is required",
        )),
    }
}

/// `GET /agents/read?filename=planner`.
pub(super) async fn agents_read(c: Call) -> Answer {
    let f = filename(&c.query)?;
    let stem = f.trim_end_matches(".md").trim_end_matches(".rs");
    let a = stem.parse::<AgentName>().map_err(|e| {
        reject(
            StatusCode::NOT_FOUND,
            format!("query parameter `filename`: {e}"),
        )
    })?;
    Ok(ok(agent_json(a)))
}

/// `GET /agents/prompts/list`.
pub(super) async fn prompts_list(_c: Call) -> Answer {
    let list: Vec<Value> = agents::prompts::TEMPLATES
        .iter()
        .map(|(agent, text)| {
            let frags = agents::prompts::parse_template(agent, text)
                .map(|f| f.len())
                .unwrap_or(0);
            json!({"filename": format!("{agent}.md"), "agent": agent,
                   "bytes": text.len(), "fragments": frags})
        })
        .collect();
    Ok(ok(json!({"prompts": list, "total": list.len()})))
}

/// `GET /agents/prompts/read?filename=planner.md`.
pub(super) async fn prompts_read(c: Call) -> Answer {
    let f = filename(&c.query)?;
    let stem = f.trim_end_matches(".md");
    let Some((agent, text)) = agents::prompts::TEMPLATES
        .iter()
        .find(|(a, _)| a.eq_ignore_ascii_case(stem))
    else {
        let known: Vec<String> = agents::prompts::TEMPLATES
            .iter()
            .map(|(a, _)| format!("{a}.md"))
            .collect();
        return Err(reject(
            StatusCode::NOT_FOUND,
            format!(
                "query parameter `filename`: no prompt {f:?}; known: {}",
                known.join(", ")
            ),
        ));
    };
    let fragments: Vec<Value> = agents::prompts::parse_template(agent, text)
        .unwrap_or_default()
        .into_iter()
        .map(|fr| json!({"name": fr.name, "channel": fr.channel, "priority": fr.priority}))
        .collect();
    Ok(ok(
        json!({"filename": format!("{agent}.md"), "agent": agent, "text": text,
              "fragments": fragments}),
    ))
}

/// `GET /agents/tools`: every tool and which agents use it.
pub(super) async fn agents_tools(_c: Call) -> Answer {
    let mut tools: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for d in crate::agent_defs::builtins() {
        for t in d.tools {
            tools.entry(t).or_default().push(d.name.clone());
        }
    }
    let list: Vec<Value> = tools
        .into_iter()
        .map(|(t, a)| json!({"name": t, "agents": a}))
        .collect();
    Ok(ok(json!({"tools": list, "total": list.len()})))
}
