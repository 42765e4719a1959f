//! The axon's HTTP/1.1 server (hyper): `POST`/`GET /Simulation`, handled in the order of
//! bittensor's `AxonMiddleware.dispatch`: route (404 for another synapse), headers (400),
//! blacklist (403, before any signature work), signature and nonce (401), then the body: JSON
//! with a `simulation_input` (400), the body hash (400; Python's axon answers this one with a
//! bare 500), and the answer (200, the request body echoed with `simulation_output` set and
//! `axon.status_code` 200). Every answer carries `{"message": ...}` on error and the axon status
//! headers (`bt_header_axon_status_code`, `_status_message`, `_process_time`). The body is
//! read only after authentication, capped, and under a time limit; headers have a read timeout.
//!
//! This module does not verify signatures or parse header values itself ([`super::auth`]),
//! does not judge callers ([`super::metagraph`]), and does not compute the answer
//! ([`super::answer`]); it orders those steps and turns their errors into HTTP replies.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::auth::{self, AuthError, RequestHeaders};
use super::{ApiError, Miner};
use jobs::Timeframe;
use sn50::response::SimulationInput;

/// The one synapse this axon serves.
pub const SYNAPSE: &str = "Simulation";
/// How long a client may take to send its headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a client may take to send its body.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

type Reply = Response<Full<Bytes>>;

/// A refusal: the error, and the request headers when they parsed.
type Refusal = Box<(ApiError, Option<RequestHeaders>)>;

fn message_body(message: &str) -> Bytes {
    Bytes::from(serde_json::json!({ "message": message }).to_string())
}

fn set(res: &mut Reply, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        res.headers_mut().insert(HeaderName::from_static(name), v);
    }
}

/// A response with the axon headers; `parsed` are the request's headers when they parsed.
fn reply(
    miner: &Miner,
    status: u16,
    message: &str,
    body: Bytes,
    parsed: Option<&RequestHeaders>,
    started: Instant,
) -> Reply {
    let mut res = Response::new(Full::new(body));
    *res.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    set(&mut res, "name", SYNAPSE);
    set(&mut res, "bt_header_axon_status_code", &status.to_string());
    if HeaderValue::from_str(message).is_ok() {
        set(&mut res, "bt_header_axon_status_message", message);
    } else {
        set(
            &mut res,
            "bt_header_axon_status_message",
            StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("Error"),
        );
    }
    set(
        &mut res,
        "bt_header_axon_process_time",
        &format!("{}", started.elapsed().as_secs_f64()),
    );
    set(&mut res, "bt_header_axon_hotkey", &miner.hotkey.ss58);
    if let Some(h) = parsed {
        if let Some(t) = &h.timeout_raw {
            set(&mut res, "timeout", t);
        }
        if let Some(b) = &h.computed_body_hash {
            set(&mut res, "computed_body_hash", b);
        }
        if let Some(v) = &h.dendrite_hotkey {
            set(&mut res, "bt_header_dendrite_hotkey", v);
        }
        if let Some(v) = h.nonce {
            set(&mut res, "bt_header_dendrite_nonce", &v.to_string());
        }
        if let Some(v) = &h.uuid {
            set(&mut res, "bt_header_dendrite_uuid", v);
        }
        if let Some(v) = h.version {
            set(&mut res, "bt_header_dendrite_version", &v.to_string());
        }
    }
    miner
        .metrics
        .requests
        .with_label_values(&[&status.to_string()])
        .inc();
    res
}

fn error(miner: &Miner, e: ApiError, parsed: Option<&RequestHeaders>, started: Instant) -> Reply {
    reply(
        miner,
        e.status,
        &e.message,
        message_body(&e.message),
        parsed,
        started,
    )
}

/// Header, blacklist and signature checks: the parsed headers, or the error answer.
fn authenticate(
    miner: &Miner,
    req: &Request<Incoming>,
    remote: SocketAddr,
) -> Result<RequestHeaders, Refusal> {
    let path = req.uri().path();
    let name = path.trim_start_matches('/').split('/').next().unwrap_or("");
    if name != SYNAPSE || !(path == "/Simulation" || path == "/Simulation/") {
        return Err(Box::new((
            ApiError::new(
                404,
                format!("Synapse name '{name}' not found. Available synapses ['{SYNAPSE}']"),
            ),
            None,
        )));
    }
    if req.method() != Method::POST && req.method() != Method::GET {
        return Err(Box::new((
            ApiError::new(405, format!("Method {} Not Allowed", req.method())),
            None,
        )));
    }
    let h = auth::parse_headers(req.headers()).map_err(|e| {
        Box::new((
            ApiError::new(
                400,
                format!(
                    "Improperly formatted request. Could not parse headers into synapse of type {SYNAPSE}: {e}"
                ),
            ),
            None,
        ))
    })?;
    // Blacklist first, on header data only.
    if let Err(reason) = miner.blacklist.check(h.dendrite_hotkey.as_deref()) {
        tracing::warn!(%remote, hotkey = h.dendrite_hotkey.as_deref().unwrap_or("-"), %reason,
            "refused: blacklisted");
        return Err(Box::new((
            ApiError::new(403, format!("Forbidden. Key is blacklisted: {reason}.")),
            Some(h),
        )));
    }
    let not_verified = |e: AuthError, h: &RequestHeaders| {
        tracing::warn!(%remote, hotkey = h.dendrite_hotkey.as_deref().unwrap_or("-"), error = %e,
            "refused: not verified");
        Box::new((
            ApiError::new(401, format!("Not Verified with error: {e}")),
            Some(h.clone()),
        ))
    };
    let hotkey = h.dendrite_hotkey.clone().unwrap_or_default();
    let Some(nonce) = h.nonce else {
        return Err(not_verified(AuthError::MissingNonce, &h));
    };
    let uuid = h.uuid.clone().unwrap_or_else(|| "None".into());
    let key = format!("{hotkey}:{uuid}");
    miner
        .nonces
        .check(&key, nonce, h.version, h.timeout, auth::now_ns())
        .map_err(|e| not_verified(e, &h))?;
    let message = auth::signed_message(
        nonce,
        &hotkey,
        &miner.hotkey.ss58,
        &uuid,
        h.computed_body_hash.as_deref().unwrap_or(""),
    );
    let Some(signature) = h.signature.as_deref() else {
        return Err(not_verified(AuthError::MissingSignature, &h));
    };
    auth::verify(&hotkey, &message, signature).map_err(|e| not_verified(e, &h))?;
    miner
        .nonces
        .commit(&key, nonce, auth::now_ns())
        .map_err(|e| not_verified(e, &h))?;
    Ok(h)
}

/// The request body echoed with `simulation_output` set (and `axon.status_code` 200).
fn response_body(mut body: serde_json::Map<String, serde_json::Value>, output_json: &str) -> Bytes {
    body.remove("simulation_output");
    if let Some(serde_json::Value::Object(axon)) = body.get_mut("axon") {
        axon.insert("status_code".into(), 200.into());
        axon.insert("status_message".into(), "Success".into());
    }
    let mut out = serde_json::to_vec(&serde_json::Value::Object(body)).expect("json");
    out.pop(); // the closing brace
    if out.len() > 1 {
        out.push(b',');
    }
    out.reserve(output_json.len() + 24);
    out.extend_from_slice(b"\"simulation_output\":");
    out.extend_from_slice(output_json.as_bytes());
    out.push(b'}');
    Bytes::from(out)
}

/// The `prompt` label of `sc_miner_answer_seconds`: `low` for the 24 h prompt of 5-minute
/// steps, `high` for the 1 h prompt of 1-minute steps, `other` for anything else.
fn prompt_label(input: &SimulationInput) -> &'static str {
    match Timeframe::from_step_secs(input.time_increment)
        .filter(|tf| tf.horizon_secs() == input.time_length)
    {
        Some(Timeframe::FiveMinutes) => "low",
        Some(Timeframe::OneMinute) => "high",
        None => "other",
    }
}

async fn handle(miner: Arc<Miner>, req: Request<Incoming>, remote: SocketAddr) -> Reply {
    let started = Instant::now();
    let h = match authenticate(&miner, &req, remote) {
        Ok(h) => h,
        Err(refusal) => {
            let (e, parsed) = *refusal;
            return error(&miner, e, parsed.as_ref(), started);
        }
    };
    let limit = miner.config.max_body_bytes;
    let collected = tokio::time::timeout(
        BODY_READ_TIMEOUT,
        Limited::new(req.into_body(), limit).collect(),
    )
    .await;
    let bytes = match collected {
        Err(_) => {
            return error(
                &miner,
                ApiError::new(408, "the request body did not arrive in time"),
                Some(&h),
                started,
            )
        }
        Ok(Err(e)) => {
            let too_big = e
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some();
            let e = if too_big {
                ApiError::new(
                    413,
                    format!("the request body is larger than {limit} bytes"),
                )
            } else {
                ApiError::new(400, format!("could not read the request body: {e}"))
            };
            return error(&miner, e, Some(&h), started);
        }
        Ok(Ok(c)) => c.to_bytes(),
    };
    let body = match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(serde_json::Value::Object(m)) => m,
        Ok(_) => {
            return error(
                &miner,
                ApiError::new(400, "the request body must be a JSON object (the synapse)"),
                Some(&h),
                started,
            )
        }
        Err(e) => {
            return error(
                &miner,
                ApiError::new(400, format!("the request body is not JSON: {e}")),
                Some(&h),
                started,
            )
        }
    };
    let expected = auth::simulation_body_hash();
    let got = h.computed_body_hash.as_deref().unwrap_or("");
    if got != expected {
        return error(
            &miner,
            ApiError::new(
                400,
                format!(
                    "Hash mismatch between header body hash {got:?} and computed body hash {expected}"
                ),
            ),
            Some(&h),
            started,
        );
    }
    let input: SimulationInput = match body.get("simulation_input") {
        None | Some(serde_json::Value::Null) => {
            return error(
                &miner,
                ApiError::new(400, "the body has no simulation_input"),
                Some(&h),
                started,
            )
        }
        Some(v) => match serde_json::from_value(v.clone()) {
            Ok(i) => i,
            Err(e) => {
                return error(
                    &miner,
                    ApiError::new(400, format!("simulation_input: {e}")),
                    Some(&h),
                    started,
                )
            }
        },
    };
    let answer = match miner.answer(&input, h.timeout).await {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(%remote, asset = %input.asset, status = e.status, error = %e.message,
                "could not answer");
            return error(&miner, e, Some(&h), started);
        }
    };
    let prompt = prompt_label(&input);
    let elapsed = started.elapsed();
    miner
        .metrics
        .answer_seconds
        .with_label_values(&[prompt])
        .observe(elapsed.as_secs_f64());
    let answered_by = if answer.fallback.is_none() && answer.model != "gbm" {
        "model"
    } else {
        "gbm"
    };
    miner
        .metrics
        .answers
        .with_label_values(&[answered_by])
        .inc();
    if h.timeout > 0.0 && elapsed.as_secs_f64() > h.timeout {
        miner.metrics.late.with_label_values(&[prompt]).inc();
        tracing::warn!(asset = %input.asset, prompt, ms = elapsed.as_millis() as u64,
            timeout_s = h.timeout, "answered after the dendrite's timeout");
    }
    tracing::info!(%remote, hotkey = h.dendrite_hotkey.as_deref().unwrap_or("-"), asset = %input.asset,
        prompt, model = %answer.model, fallback = answer.fallback.as_deref().unwrap_or("-"),
        spot = answer.spot.price, spot_source = answer.spot.source.as_str(),
        ms = elapsed.as_millis() as u64, "answered");
    let body = response_body(body, &answer.output_json);
    reply(&miner, 200, "Success", body, Some(&h), started)
}

/// Serve the axon on `listener` until `shutdown`; in-flight requests get up to 10 s to finish.
/// The connection handling (the header-read timeout that closes half-open connections, the
/// connection cap, disconnects logged at debug) is the bridge's too: [`crate::http_server`].
pub async fn serve(
    miner: Arc<Miner>,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let limits = crate::http_server::ConnLimits {
        header_read_timeout: HEADER_READ_TIMEOUT,
        drain: Duration::from_secs(10),
        ..Default::default()
    };
    crate::http_server::serve(
        listener,
        limits,
        move |remote| {
            let m = miner.clone();
            service_fn(move |req| {
                let m = m.clone();
                async move { Ok::<_, Infallible>(handle(m, req, remote).await) }
            })
        },
        shutdown,
    )
    .await;
    Ok(())
}

/// Serve `GET /metrics` (Prometheus text) on `listener` until `shutdown`.
pub async fn serve_metrics(
    miner: Arc<Miner>,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    loop {
        let (stream, _) = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
        };
        let m = miner.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let m = m.clone();
                async move {
                    let mut res = if req.uri().path() == "/metrics" {
                        Response::new(Full::new(Bytes::from(m.metrics.render())))
                    } else {
                        let mut r = Response::new(Full::new(Bytes::from_static(b"not found\n")));
                        *r.status_mut() = StatusCode::NOT_FOUND;
                        r
                    };
                    res.headers_mut().insert(
                        CONTENT_TYPE,
                        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                    );
                    Ok::<_, Infallible>(res)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_echoed_body_gets_the_output() {
        let body: serde_json::Map<String, serde_json::Value> = serde_json::from_str(
            r#"{"name":"Simulation","timeout":12.0,"axon":{"status_code":null},"simulation_input":{"asset":"BTC"},"simulation_output":null}"#,
        )
        .unwrap();
        let out = response_body(body, "[1,2,[3.5]]");
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["simulation_output"], serde_json::json!([1, 2, [3.5]]));
        assert_eq!(v["axon"]["status_code"], 200);
        assert_eq!(v["timeout"], 12.0);
        assert!(String::from_utf8_lossy(&out).contains("\"timeout\":12.0"));
        let empty = response_body(serde_json::Map::new(), "[1]");
        assert_eq!(&empty[..], b"{\"simulation_output\":[1]}");
    }
}
