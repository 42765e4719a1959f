//! Pipeline runs over HTTP: start one (`POST /pipeline/run`), list, read and
//! cancel the caller's own runs. A run started here only enqueues its first
//! stage: the worker fleet carries it out, under the `pipeline` semaphore.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::json;
use warp::http::StatusCode;
use warp::Rejection;

use super::{internal, reject, reply, Caller, State};
use crate::pipeline::{self, RunOptions};
use engine::semaphore::{RedisSemaphore, PIPELINE};

/// `POST /pipeline/run`: every field optional; the server's data, output and
/// store directories are used.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RunBody {
    max_experiments: Option<usize>,
    epochs: Option<usize>,
    rounds: Option<usize>,
    steps_per_epoch: Option<usize>,
    d_model: Option<usize>,
    seq_len: Option<usize>,
    eval_windows: Option<usize>,
    eval_paths: Option<usize>,
    assets: Option<Vec<String>>,
    timeframe: Option<String>,
    retries: Option<u32>,
    publish: Option<bool>,
    seed: Option<u64>,
    /// `auto` (the LLM agents when the bridge has CHUTES_API_KEY), `builtin` or `llm`.
    agents: Option<String>,
    /// false: answer 429 instead of queueing when no permit is free.
    wait: Option<bool>,
}

pub(super) async fn start(
    c: Caller,
    s: Arc<State>,
    b: RunBody,
) -> Result<warp::reply::Response, Rejection> {
    let mut o = RunOptions {
        data_dir: s.data_dir.clone(),
        out_dir: s.cfg.out_dir.clone(),
        store_dir: s.cfg.store_dir.clone(),
        ..Default::default()
    };
    let request = jobs::pipeline::RunRequest {
        max_experiments: b.max_experiments,
        epochs: b.epochs,
        rounds: b.rounds,
        steps_per_epoch: b.steps_per_epoch,
        d_model: b.d_model,
        seq_len: b.seq_len,
        batch_size: None,
        n_paths: None,
        eval_windows: b.eval_windows,
        eval_paths: b.eval_paths,
        assets: b.assets,
        timeframe: b.timeframe,
        retries: b.retries,
        publish: b.publish,
        seed: b.seed,
        agents: b.agents,
    };
    pipeline::apply_request(&mut o, &request)
        .map_err(|e| reject(StatusCode::UNPROCESSABLE_ENTITY, e))?;
    if b.wait == Some(false) {
        let st = RedisSemaphore::new(s.queue.clone(), PIPELINE)
            .status()
            .await
            .map_err(internal)?;
        if st.holders.len() as u32 >= st.limit || !st.waiters.is_empty() {
            return Err(reject(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "all {} pipeline permits are taken ({} runs waiting); retry later or send \"wait\": true",
                    st.limit,
                    st.waiters.len()
                ),
            ));
        }
    }
    let id = pipeline::create_run(&s.queue, o, &c.bot)
        .await
        .map_err(|e| {
            if e.is_transient() {
                internal(e)
            } else {
                reject(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
            }
        })?;
    super::session::add_active(&s, &c.bot, &format!("run:{id}"))
        .await
        .map_err(internal)?;
    // Where the run stands: permits taken and runs already waiting for one.
    let sem = RedisSemaphore::new(s.queue.clone(), PIPELINE)
        .status()
        .await
        .map_err(internal)?;
    let full = sem.holders.len() as u32 >= sem.limit;
    Ok(reply(
        StatusCode::ACCEPTED,
        json!({"run_id": id, "state": "queued", "bot_id": c.bot,
               "queue_position": if full { sem.waiters.len() + 1 } else { 0 },
               "permits": {"limit": sem.limit, "taken": sem.holders.len(),
                           "waiting": sem.waiters.len()}}),
    ))
}

/// The bot's runs, newest first (of the most recent `limit` runs).
pub(super) async fn own_runs(
    s: &State,
    bot: &str,
    limit: usize,
) -> Result<Vec<pipeline::RunInfo>, engine::QueueError> {
    Ok(pipeline::list_runs(&s.queue, limit)
        .await?
        .into_iter()
        .filter(|r| r.bot == bot)
        .collect())
}

async fn own(s: &State, c: &Caller, id: &str) -> Result<pipeline::RunInfo, Rejection> {
    match pipeline::get_run(&s.queue, id).await.map_err(internal)? {
        Some(r) if r.bot == c.bot => Ok(r),
        _ => Err(reject(StatusCode::NOT_FOUND, format!("no run {id:?}"))),
    }
}

pub(super) async fn list(c: Caller, s: Arc<State>) -> Result<warp::reply::Response, Rejection> {
    let runs = own_runs(&s, &c.bot, 200).await.map_err(internal)?;
    Ok(reply(StatusCode::OK, json!({ "runs": runs })))
}

pub(super) async fn show(
    id: String,
    c: Caller,
    s: Arc<State>,
) -> Result<warp::reply::Response, Rejection> {
    let r = own(&s, &c, &id).await?;
    Ok(reply(
        StatusCode::OK,
        serde_json::to_value(r).expect("runs serialise"),
    ))
}

pub(super) async fn cancel(
    id: String,
    c: Caller,
    s: Arc<State>,
) -> Result<warp::reply::Response, Rejection> {
    own(&s, &c, &id).await?;
    let before = pipeline::cancel_run(&s.queue, &id)
        .await
        .map_err(internal)?;
    match before.as_str() {
        "succeeded" | "failed" | "cancelled" => Err(reject(
            StatusCode::CONFLICT,
            format!("run {id} already {before}"),
        )),
        _ => Ok(reply(
            StatusCode::OK,
            json!({"run_id": id, "state": "cancelled"}),
        )),
    }
}
