//! The Hugging Face Hub as a source, over the bridge: the seed's
//! `GET /hf/models`, `GET /hf/model-card` and `GET /hf/artifact`, answered by
//! `publisher::store::hf` (the Hub's documented HTTP API at `HF_ENDPOINT`,
//! with `HF_TOKEN` when set and `HF_REPO_ID` as the default repo).
//!
//! Bad input (a repo id, revision, file name or limit) is a 400 naming the
//! query parameter; a file the Hub does not have is a 404; a file over the cap
//! is a 422; a Hub that fails or cannot be reached is a 502.
//!
//! It only reads the Hub: publishing is the publish stage's and
//! `synth-city publish --hf`'s; nothing read is kept.

use std::collections::HashMap;

use serde_json::json;
use warp::http::StatusCode;
use warp::Rejection;

use super::error::reject;
use super::route::{ok, Answer, Call};
use publisher::store::hf::{HfClient, HfConfig, HfError, ModelQuery, ARTIFACT_CAP};

/// An `HfError` as the bridge answers it.
fn answer_err(e: HfError) -> Rejection {
    let status = match &e {
        HfError::BadInput { .. } => StatusCode::BAD_REQUEST,
        HfError::NotFound { .. } => StatusCode::NOT_FOUND,
        HfError::TooLarge { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        HfError::Config(_) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_GATEWAY,
    };
    let msg = match &e {
        HfError::BadInput { field, detail } => format!("query parameter `{field}`: {detail}"),
        e => e.to_string(),
    };
    reject(status, msg)
}

/// A read-only client from the environment, with short retries.
fn client() -> Result<HfClient, Rejection> {
    let mut cfg = HfConfig::reader_from_env().map_err(answer_err)?;
    cfg.attempts = 2;
    cfg.timeout = std::time::Duration::from_secs(30);
    HfClient::reader(cfg).map_err(answer_err)
}

fn param<'a>(q: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    q.get(name).map(|s| s.trim()).filter(|s| !s.is_empty())
}

fn revision(q: &HashMap<String, String>) -> &str {
    param(q, "revision").unwrap_or("main")
}

/// `GET /hf/models?repo_id=&author=&search=&limit=`: the author's models (the
/// author defaults to the owner of `repo_id`, else of `HF_REPO_ID`).
pub(super) async fn models(c: Call) -> Answer {
    let hub = client()?;
    let limit = match param(&c.query, "limit") {
        None => 50,
        Some(v) => v.parse::<usize>().map_err(|_| {
            reject(
                StatusCode::BAD_REQUEST,
                format!("query parameter `limit` must be a whole number from 1 to 1000, got {v:?}"),
            )
        })?,
    };
    let search = param(&c.query, "search").map(str::to_string);
    let author = match param(&c.query, "author") {
        Some(a) => Some(a.to_string()),
        None => match (param(&c.query, "repo_id"), hub.default_repo(), &search) {
            (Some(r), _, _) => Some(hub.repo_or_default(Some(r)).map_err(answer_err)?),
            (None, Some(r), None) => Some(r.to_string()),
            _ => None,
        }
        .map(|r| r.split('/').next().unwrap_or_default().to_string()),
    };
    let q = ModelQuery {
        author,
        search,
        limit,
    };
    let models = hub.list_models(&q).await.map_err(answer_err)?;
    Ok(ok(json!({
        "author": q.author, "search": q.search, "count": models.len(), "models": models,
    })))
}

/// `GET /hf/model-card?repo_id=&revision=main`: the repo's README.md.
pub(super) async fn model_card(c: Call) -> Answer {
    let hub = client()?;
    let f = hub
        .model_card(param(&c.query, "repo_id"), revision(&c.query))
        .await
        .map_err(answer_err)?;
    Ok(ok(f.to_json()))
}

/// `GET /hf/artifact?filename=&repo_id=&revision=main`: one file of the repo
/// (at most 10 MiB), as text when it is UTF-8, else base64.
pub(super) async fn artifact(c: Call) -> Answer {
    let Some(filename) = param(&c.query, "filename") else {
        return Err(reject(
            StatusCode::BAD_REQUEST,
            "query parameter `filename` is required: a path in the repo such as README.md or runs/ID/spec.json",
        ));
    };
    let hub = client()?;
    let f = hub
        .read_file(
            param(&c.query, "repo_id"),
            revision(&c.query),
            filename,
            ARTIFACT_CAP,
        )
        .await
        .map_err(answer_err)?;
    Ok(ok(f.to_json()))
}
