//! `/events`: the caller's job and run events, as server-sent events, tailed
//! from the engine's capped events stream (`Last-Event-ID` resumes after an
//! entry). At most so many streams are open per bot (`limits::Streams`, 429
//! beyond). Each connection has a task that reads the stream on its own Redis
//! connection, keeps the entries whose job or run belongs to the caller's bot
//! and feeds a bounded channel; it stops when the client goes away.
//!
//! An entry of the stream is one job's event, or one event of a script's batch of jobs
//! (`ids` and `bots`, `emit_batch` in the engine's `lua/common.lua`): those are handed out one
//! per job, as before, with the SSE id `<entry id>/<n>`, from which `Last-Event-ID` resumes
//! too. The owner of an event is the bot the entry names (the scripts write it, so it holds
//! after the job's record is gone: finished-record retention), else its record's.
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
    if let Some(l) = last.as_deref().filter(|l| !is_event_id(l)) {
        return Err(super::error::reject(
            warp::http::StatusCode::BAD_REQUEST,
            format!(
                "Last-Event-ID {l:?} is not an event id: send back the `id:` of the last event \
                 received (`<ms>-<seq>` or `<ms>-<seq>/<n>`), or no Last-Event-ID to start now"
            ),
        ));
    }
    let slot = c.state.streams.open(&c.bot).map_err(ApiError::from)?;
    let stream = event_stream(c.state.queue.clone(), c.bot, last).map(move |ev| {
        let _holds = &slot;
        ev
    });
    Ok(warp::sse::reply(warp::sse::keep_alive().stream(stream)).into_response())
}

/// Whether `s` is an id `/events` hands out: a stream entry id `<ms>-<seq>`, with `/<n>` for
/// the n-th job of a batch entry.
fn is_event_id(s: &str) -> bool {
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    let (entry, n) = match s.split_once('/') {
        Some((e, n)) => (e, Some(n)),
        None => (s, None),
    };
    n.is_none_or(digits)
        && entry
            .split_once('-')
            .is_some_and(|(a, b)| digits(a) && digits(b))
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
    // A client that left in the middle of a batch entry (`<entry id>/<n>`): the rest of that
    // entry first, then on from it.
    if let Some((entry, seen)) = cursor.split_once('/') {
        let seen: usize = seen.parse().unwrap_or(usize::MAX);
        let reply: redis::streams::StreamRangeReply =
            redis::AsyncCommands::xrange_count(c, queue.keys().events(), entry, entry, 1).await?;
        let jobs = reply
            .ids
            .iter()
            .flat_map(jobs_of)
            .filter(|j| j.index.is_some_and(|i| i > seen))
            .collect();
        let out = owned(queue, c, bot, jobs).await?;
        return Ok((entry.to_string(), out));
    }
    let opts = redis::streams::StreamReadOptions::default()
        .block(5000)
        .count(200);
    let reply: Option<redis::streams::StreamReadReply> =
        redis::AsyncCommands::xread_options(c, &[queue.keys().events()], &[cursor], &opts).await?;
    let entries = reply
        .map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect::<Vec<_>>())
        .unwrap_or_default();
    let next = entries
        .last()
        .map_or_else(|| cursor.to_string(), |e| e.id.clone());
    let jobs = entries.iter().flat_map(jobs_of).collect();
    Ok((next, owned(queue, c, bot, jobs).await?))
}

/// One job's (or run's) event, as `/events` hands it out.
struct JobEvent {
    /// The SSE id: the stream entry's, with `/<n>` for the n-th job of a batch entry.
    sse_id: String,
    /// Its place in a batch entry.
    index: Option<usize>,
    id: String,
    /// The bot the entry names for it (`None`: the entry does not say; read its record).
    bot: Option<String>,
    data: serde_json::Map<String, Value>,
}

/// The jobs of one events entry: one, or each of a batch entry's `ids` (with its `bots`,
/// written by `emit_batch` in the engine's `lua/common.lua`), each as the one-job entry
/// `emit` writes (event, type, id, at, ...).
fn jobs_of(e: &redis::streams::StreamId) -> Vec<JobEvent> {
    let mut data: serde_json::Map<String, Value> = e
        .map
        .iter()
        .map(|(k, v)| {
            let s = redis::from_redis_value_ref::<String>(v).unwrap_or_default();
            (k.clone(), Value::String(s))
        })
        .collect();
    let text = |v: Option<Value>| v.and_then(|v| v.as_str().map(String::from));
    let bot = text(data.remove("bot"));
    let (Some(ids), Some(bots)) = (text(data.remove("ids")), text(data.remove("bots"))) else {
        return vec![JobEvent {
            sse_id: e.id.clone(),
            index: None,
            id: e.get::<String>("id").unwrap_or_default(),
            bot,
            data,
        }];
    };
    let ids: Vec<String> = serde_json::from_str(&ids).unwrap_or_default();
    let bots: Vec<String> = serde_json::from_str(&bots).unwrap_or_default();
    ids.into_iter()
        .enumerate()
        .map(|(i, id)| {
            let mut data = data.clone();
            data.insert("id".into(), Value::String(id.clone()));
            JobEvent {
                sse_id: format!("{}/{i}", e.id),
                index: Some(i),
                bot: bots.get(i).cloned(),
                id,
                data,
            }
        })
        .collect()
}

/// The events of `jobs` that belong to `bot`, as SSE. An event that does not name its bot
/// is its job's (or run's) record's: one pipelined read for those.
async fn owned(
    queue: &Queue,
    c: &mut redis::aio::MultiplexedConnection,
    bot: &str,
    jobs: Vec<JobEvent>,
) -> Result<Vec<warp::sse::Event>, engine::QueueError> {
    let mut p = redis::pipe();
    let mut lookups = 0;
    for j in jobs.iter().filter(|j| j.bot.is_none()) {
        lookups += 1;
        // Run events name the run; job events the job.
        if j.data.get("type").and_then(Value::as_str) == Some("run") {
            p.hget(queue.keys().run(&j.id), "bot");
        } else {
            p.hget(queue.keys().job(&j.id), "bot");
        }
    }
    let read: Vec<Option<String>> = if lookups > 0 {
        p.query_async(c).await?
    } else {
        Vec::new()
    };
    let mut read = read.into_iter();
    let mut out = Vec::new();
    for j in jobs {
        let owner = match j.bot {
            Some(b) => Some(b),
            None => read.next().flatten(),
        };
        let owner = owner
            .filter(|b| !b.is_empty())
            .unwrap_or_else(|| "default".into());
        if owner != bot {
            continue;
        }
        let name = j
            .data
            .get("event")
            .and_then(Value::as_str)
            .unwrap_or("event")
            .to_string();
        out.push(
            warp::sse::Event::default()
                .id(j.sse_id)
                .event(name)
                .json_data(j.data)
                .expect("a JSON map serialises"),
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, fields: &[(&str, &str)]) -> redis::streams::StreamId {
        redis::streams::StreamId {
            id: id.into(),
            map: fields
                .iter()
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        redis::Value::BulkString(v.as_bytes().to_vec()),
                    )
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn a_batch_entry_is_one_event_per_job_with_its_bot() {
        let e = entry(
            "5-0",
            &[
                ("event", "completed"),
                ("type", "noop"),
                ("ids", r#"["a","b"]"#),
                ("bots", r#"["bot-a",""]"#),
                ("at", "7"),
            ],
        );
        let jobs = jobs_of(&e);
        assert_eq!(jobs.len(), 2);
        assert_eq!(jobs[1].sse_id, "5-0/1");
        assert_eq!(jobs[1].index, Some(1));
        assert_eq!(
            (jobs[0].id.as_str(), jobs[0].bot.as_deref()),
            ("a", Some("bot-a"))
        );
        assert_eq!(jobs[1].bot.as_deref(), Some(""));
        assert_eq!(
            Value::Object(jobs[0].data.clone()),
            serde_json::json!({"event": "completed", "type": "noop", "id": "a", "at": "7"})
        );
        // a one-job entry: as written, its bot when it names one
        let one = jobs_of(&entry("6-0", &[("event", "retrying"), ("id", "c")]));
        for ok in ["6-0", "1796573955213-0/12"] {
            assert!(is_event_id(ok), "{ok}");
        }
        for bad in ["", "$", "6", "6-", "-0", "6-0/", "6-0/x", "a-0", "6-0/1/2"] {
            assert!(!is_event_id(bad), "{bad}");
        }
        assert_eq!((one[0].sse_id.as_str(), one[0].bot.as_ref()), ("6-0", None));
    }
}
