//! `/events`: the caller's job and run events, as server-sent events, tailed
//! from the engine's capped events stream (`Last-Event-ID` resumes after an
//! entry). At most so many streams are open per bot (`limits::Streams`, 429
//! beyond). Each connection has a task that reads the stream on its own Redis
//! connection, keeps the entries whose job or run belongs to the caller's bot
//! and feeds a bounded channel; it stops when the client goes away.
//!
//! It writes no events (the engine's scripts do) and keeps no history of its
//! own: what the capped stream has dropped cannot be replayed.

use std::convert::Infallible;
use std::time::Duration;

use serde_json::Value;
use warp::Reply;

use futures::StreamExt;

use super::error::ApiError;
use super::route::{header, Answer, Call};
use engine::queue::Queue;

/// `GET /events`: at most `--max-sse-per-bot` open at once per bot (429 beyond); the
/// stream holds its place until the client goes away.
pub(super) async fn events(c: Call) -> Answer {
    let last = header(&c.headers, "last-event-id")?;
    let slot = c.state.streams.open(&c.bot).map_err(ApiError::from)?;
    let stream = event_stream(c.state.queue.clone(), c.bot, last).map(move |ev| {
        let _holds = &slot;
        ev
    });
    Ok(warp::sse::reply(warp::sse::keep_alive().stream(stream)).into_response())
}

/// Job events for one bot, from the engine's events stream, as SSE. A task
/// tails the stream and feeds a bounded channel; it stops when the client
/// goes away (the channel closes).
fn event_stream(
    queue: Queue,
    bot: String,
    last: Option<String>,
) -> impl futures::Stream<Item = Result<warp::sse::Event, Infallible>> + Send + Sync + 'static {
    use futures::SinkExt;
    let (mut tx, rx) = futures::channel::mpsc::channel::<warp::sse::Event>(256);
    tokio::spawn(async move {
        let mut cursor = last.unwrap_or_else(|| "$".into());
        let mut conn = None;
        loop {
            match read_events(&queue, &mut conn, &bot, &cursor).await {
                Ok((next, evs)) => {
                    cursor = next;
                    for ev in evs {
                        if tx.send(ev).await.is_err() {
                            return;
                        }
                    }
                    if tx.is_closed() {
                        return;
                    }
                }
                Err(e) => {
                    conn = None;
                    tracing::warn!(%e, "events: read failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    });
    rx.map(Ok)
}

async fn read_events(
    queue: &Queue,
    conn: &mut Option<redis::aio::MultiplexedConnection>,
    bot: &str,
    cursor: &str,
) -> Result<(String, Vec<warp::sse::Event>), engine::QueueError> {
    if conn.is_none() {
        *conn = Some(queue.dedicated(Duration::from_secs(10)).await?);
    }
    let c = conn.as_mut().expect("connected above");
    let opts = redis::streams::StreamReadOptions::default()
        .block(5000)
        .count(200);
    let reply: Option<redis::streams::StreamReadReply> =
        redis::AsyncCommands::xread_options(c, &[queue.keys().events()], &[cursor], &opts).await?;
    let mut next = cursor.to_string();
    let mut out = Vec::new();
    let entries = reply
        .map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect::<Vec<_>>())
        .unwrap_or_default();
    if entries.is_empty() {
        return Ok((next, out));
    }
    // Which bot does each job belong to? One pipelined read per batch.
    let mut p = redis::pipe();
    for e in &entries {
        let id = e.get::<String>("id").unwrap_or_default();
        // Run events name the run; job events the job.
        if e.get::<String>("type").as_deref() == Some("run") {
            p.hget(queue.keys().run(&id), "bot");
        } else {
            p.hget(queue.keys().job(&id), "bot");
        }
    }
    let bots: Vec<Option<String>> = p.query_async(c).await?;
    for (e, owner) in entries.into_iter().zip(bots) {
        next = e.id.clone();
        let owner = owner
            .filter(|b| !b.is_empty())
            .unwrap_or_else(|| "default".into());
        if owner != bot {
            continue;
        }
        let data: serde_json::Map<String, Value> = e
            .map
            .iter()
            .map(|(k, v)| {
                let s = redis::from_redis_value_ref::<String>(v).unwrap_or_default();
                (k.clone(), Value::String(s))
            })
            .collect();
        let name = e.get::<String>("event").unwrap_or_else(|| "event".into());
        out.push(
            warp::sse::Event::default()
                .id(e.id.clone())
                .event(name)
                .json_data(data)
                .expect("a JSON map serialises"),
        );
    }
    Ok((next, out))
}
