//! Champions over HTTP (`publisher::champions`): read every pair's champion and the decisions
//! (promotions, refusals, rollbacks), ask for a promotion, roll one back.
//!
//! `GET /models/shadow` serves the shadow policy's last report (challengers scored beside the
//! champion on live prompts; docs/promotion.md), as the scorer wrote it.
//!
//! Who may do what: anyone with a key reads. `POST /models/promote` enqueues a `promote` job
//! (a publisher worker scores the candidate, the pair's champion and the GBM on windows after
//! their training data; the gate decides), in the caller's name (`requested_by`, recorded in
//! each decision); a bot may ask, but `force` and the gate's parameters are the operator's
//! (403 naming the field). `POST /models/rollback` is the operator's (403 otherwise) and takes
//! effect at once. The store is `SYNTH_STORE_DIR` (or the bucket), as for `/results/*`.
//!
//! It scores nothing itself (the job does) and serves no model (the miner reads the champions).

use publisher::champions;
use serde::Deserialize;
use serde_json::{json, Value};
use sn50::constants::PromptKind;
use warp::http::StatusCode;
use warp::Rejection;

use super::error::{internal, refused, reject};
use super::route::{ok, reply, Answer, Call};
use engine::principals::Role;
use engine::queue::EnqueueRequest;

fn store_err(e: champions::ChampionError) -> Rejection {
    refused(e.is_transient(), e)
}

fn prompt_of(field: &str, s: &str) -> Result<PromptKind, Rejection> {
    s.parse().map_err(|_| {
        reject(
            StatusCode::BAD_REQUEST,
            format!("{field} {s:?}: use low (24 h at 5 min) or high (1 h at 1 min)"),
        )
    })
}

fn asset_of(field: &str, a: &str) -> Result<(), Rejection> {
    champions::check_asset(a).map_err(|e| reject(StatusCode::BAD_REQUEST, format!("{field}: {e}")))
}

/// `GET /models/champions`: every pair's champion (the GBM serves the others).
pub(super) async fn list(_c: Call) -> Answer {
    let s = super::results::store()?;
    let all = champions::list(&*s).await.map_err(store_err)?;
    Ok(ok(json!({ "champions": all })))
}

/// `GET /models/history`: decisions, newest first (`?asset=`, `?prompt=`, `?limit=50`).
pub(super) async fn history(c: Call) -> Answer {
    let prompt = c
        .query
        .get("prompt")
        .map(|p| prompt_of("query parameter `prompt`", p))
        .transpose()?;
    let asset = c.query.get("asset").cloned();
    if let Some(a) = &asset {
        asset_of("query parameter `asset`", a)?;
    }
    let limit = match c.query.get("limit") {
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| {
                reject(
                    StatusCode::BAD_REQUEST,
                    format!("query parameter `limit` must be within 1..=1000, got {l:?}"),
                )
            })?,
        None => 50,
    };
    let s = super::results::store()?;
    let out = champions::recent(&*s, prompt, asset.as_deref(), limit)
        .await
        .map_err(store_err)?;
    Ok(ok(json!({ "decisions": out })))
}

/// `GET /models/shadow`: the shadow policy's last report (`scores/shadow-policy.json`, written by
/// each `shadow-score` job): per pair, the champion's and each challenger's settled evidence,
/// the gate's verdict on it, and what the policy did or would do; `null` before the first.
pub(super) async fn shadow(_c: Call) -> Answer {
    let s = super::results::store()?;
    let report: Option<Value> =
        publisher::store::StoreExt::get_json(&*s, scorer::policy::REPORT_KEY)
            .await
            .map_err(|e| {
                refused(
                    matches!(e, publisher::store::StoreError::Unavailable { .. }),
                    e,
                )
            })?;
    Ok(ok(json!({ "report": report })))
}

/// The JSON schema of `POST /models/promote`'s body ([`jobs::models::Promote`] less
/// `requested_by`, which is the caller).
pub(super) fn promote_schema() -> Value {
    let int = json!({"type": "integer", "minimum": 0});
    json!({"type": "object", "required": ["candidate", "assets"], "properties": {
        "candidate": {"type": "string"}, "assets": {"type": "array", "items": {"type": "string"}},
        "prompt": {"type": "string", "enum": ["low", "high"]}, "dataset": {"type": "string"},
        "windows": int, "seed": int, "paths": int, "force": {"type": "boolean"},
        "margin": {"type": "number"}, "alpha": {"type": "number"}, "min_windows": int,
        "lag": int}})
}

/// `POST /models/promote`: 202 with the `promote` job's id.
pub(super) async fn promote(c: Call) -> Answer {
    let mut req: jobs::models::Promote = c.json()?;
    if req.requested_by.is_some() {
        return Err(reject(
            StatusCode::BAD_REQUEST,
            "field `requested_by` is not taken: the request is the caller's; leave it out",
        ));
    }
    if c.role != Role::Operator {
        let fields = req.operator_fields();
        if !fields.is_empty() {
            return Err(reject(
                StatusCode::FORBIDDEN,
                format!(
                    "field `{}`: forcing a promotion and changing the gate are the operator's; \
                     leave {} out and the gate decides",
                    fields[0],
                    fields.join(", ")
                ),
            ));
        }
    }
    // `["all"]`: every asset the candidate was trained on (the job expands it)
    if !matches!(req.assets.as_slice(), [a] if a == "all") {
        for a in &req.assets {
            asset_of("field `assets`", a)?;
        }
    }
    req.requested_by = Some(if c.role == Role::Operator {
        "operator".to_string()
    } else {
        c.bot.clone()
    });
    let payload = serde_json::to_value(&req).map_err(internal)?;
    let e = c
        .state
        .queue
        .enqueue(EnqueueRequest {
            bot_id: Some(c.bot.clone()),
            ..EnqueueRequest::new(<jobs::models::Promote as jobs::JobSpec>::TYPE, payload)
        })
        .await
        .map_err(|e| refused(e.is_transient(), e))?;
    Ok(reply(
        StatusCode::ACCEPTED,
        json!({"job_id": e.id, "candidate": req.candidate, "assets": req.assets,
               "requested_by": req.requested_by,
               "poll": format!("/jobs/{}", e.id)}),
    ))
}

/// `POST /models/rollback`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RollbackBody {
    asset: String,
    #[serde(default = "low")]
    prompt: String,
}

fn low() -> String {
    "low".into()
}

impl RollbackBody {
    pub fn schema() -> Value {
        json!({"type": "object", "required": ["asset"], "properties": {
            "asset": {"type": "string"}, "prompt": {"type": "string", "enum": ["low", "high"]}}})
    }
}

/// `POST /models/rollback`: the operator's; the pair's previous champion (or the GBM) serves
/// again at once.
pub(super) async fn rollback(c: Call) -> Answer {
    if c.role != Role::Operator {
        return Err(reject(
            StatusCode::FORBIDDEN,
            "rolling a champion back is the operator's (BRIDGE_API_KEY or a key of role \
             operator); a bot may ask for a promotion (POST /models/promote)",
        ));
    }
    let b: RollbackBody = c.json()?;
    let p = prompt_of("field `prompt`", &b.prompt)?;
    asset_of("field `asset`", &b.asset)?;
    let s = super::results::store()?;
    let d = champions::rollback(&*s, p, &b.asset, "operator")
        .await
        .map_err(|e| match e {
            e @ champions::ChampionError::NothingToRollBack { .. } => {
                reject(StatusCode::CONFLICT, e.to_string())
            }
            e => store_err(e),
        })?;
    Ok(ok(json!({"decision": champions::summary(&d)})))
}
