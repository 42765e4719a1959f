//! The dashboard: `/dashboard` serves one self-contained HTML page
//! (`dashboard.html`: inline CSS and JS, SVG charts, nothing fetched from
//! elsewhere) and `/dash/snapshot` the JSON it draws — queues and workers,
//! the semaphore, the caller's runs, the leaderboard (every bot, as
//! `/experiment/compare/all`), validation CRPS over time, and what the miner serves (each pair's
//! champion and the last promotion decisions, `publisher::champions`; left empty when the store
//! cannot be read). The page then
//! follows `/events` (EventSource) and refreshes on each event.
//!
//! The page itself carries no data, so it is served without a key; its
//! requests send the key and bot the page was opened with
//! (`/dashboard#key=...&bot=...`; the fragment never reaches a server).
//!
//! The fan chart's data (`/dash/fan`) is `market.rs`'s, the leaderboard
//! `experiments.rs`'s ranking; this module only assembles the snapshot.

use std::sync::Arc;

use serde_json::{json, Value};
use warp::http::HeaderMap;
use warp::Reply;

use super::error::internal;
use super::experiments;
use super::route::{ok, Answer, Call};
use super::session;
use super::State;
use engine::semaphore::{RedisSemaphore, PIPELINE};

/// The page.
pub const PAGE: &str = include_str!("dashboard.html");

/// `GET /dashboard`.
pub(super) async fn page(_s: Arc<State>, _h: HeaderMap) -> Answer {
    let mut r = warp::reply::html(PAGE).into_response();
    r.headers_mut().insert(
        warp::http::header::CACHE_CONTROL,
        warp::http::HeaderValue::from_static("no-cache"),
    );
    Ok(r)
}

/// `GET /dash/snapshot`.
pub(super) async fn snapshot(c: Call) -> Answer {
    let s = &c.state;
    let stats = s.queue.stats().await.map_err(internal)?;
    let workers = engine::worker::list_workers(&s.queue)
        .await
        .map_err(internal)?;
    let sem = RedisSemaphore::new(s.queue.clone(), PIPELINE)
        .status()
        .await
        .map_err(internal)?;
    let runs = session::own_runs(s, &c.bot, 50).await.map_err(internal)?;
    let (all, bots) = experiments::ranking_all(s).await?;
    let mut over_time: Vec<Value> = all
        .iter()
        .map(|e| {
            json!({"t": e["recorded_at_ms"], "crps": e["crps"], "name": e["name"],
                        "bot_id": e["bot_id"]})
        })
        .collect();
    over_time.sort_by_key(|v| v["t"].as_u64().unwrap_or(0));
    let mut totals = json!({"waiting": 0, "in_flight": 0, "delayed": 0, "completed": 0,
                            "failed": 0, "dead": 0});
    let st = serde_json::to_value(&stats).unwrap_or_default();
    for t in st.as_array().into_iter().flatten() {
        for k in [
            "waiting",
            "in_flight",
            "delayed",
            "completed",
            "failed",
            "dead",
        ] {
            totals[k] = json!(totals[k].as_u64().unwrap_or(0) + t[k].as_u64().unwrap_or(0));
        }
    }
    // what the miner serves; the store may be a bucket that is away: the rest still draws
    let (champions, decisions) = match super::results::store() {
        Ok(store) => {
            let champs = publisher::champions::list(&*store)
                .await
                .unwrap_or_default();
            let ds = publisher::champions::recent(&*store, None, None, 10)
                .await
                .unwrap_or_default();
            let ds: Vec<Value> = ds
                .iter()
                .map(|d| {
                    json!({"at_ms": d.at_ms, "asset": d.asset, "prompt": d.prompt.label(),
                           "action": d.action, "forced": d.forced, "candidate": d.candidate,
                           "by": d.by, "reason": d.reason})
                })
                .collect();
            (serde_json::to_value(champs).unwrap_or_default(), ds)
        }
        Err(_) => (json!([]), Vec::new()),
    };
    // the GPU pod fleet, as its leader last reported it (absent: none has)
    let fleet = match crate::fleet::read_status(&s.queue).await {
        Ok((leader, Some(f))) => json!({"leader": leader, "pods": f.pods, "rate_now": f.rate_now,
            "spent_today": f.spent_today, "budget_per_hour": f.budget_per_hour,
            "budget_per_day": f.budget_per_day, "wanted": f.wanted, "blocked": f.blocked,
            "at_ms": f.at_ms}),
        Ok((leader, None)) => json!({"leader": leader, "pods": [], "blocked": []}),
        Err(e) => return Err(internal(e)),
    };
    Ok(ok(json!({
        "fleet": fleet,
        "champions": champions,
        "decisions": decisions,
        "bot_id": c.bot,
        "queues": st,
        "totals": totals,
        "workers": workers,
        "semaphore": sem,
        "runs": runs,
        "leaderboard": all.iter().take(20).collect::<Vec<_>>(),
        "crps_over_time": over_time,
        "bots": bots,
    })))
}
