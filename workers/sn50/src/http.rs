//! One HTTP attempt as the price clients (`pyth`, `venues`) make it: send, read the body, and
//! sort what went wrong into a timeout, a transport error or an HTTP status, transient (worth a
//! retry: timeouts, connection and body-read errors, 429, 5xx, with the server's `Retry-After`)
//! or permanent (anything else).
//!
//! It does not retry (the callers run it under `jobs::retry::RetryPolicy`), parse bodies, or
//! name URLs: each client turns a [`Fault`] into its own error with the URL it wants to show.

use std::time::Duration;

use jobs::retry::Failure;

/// What went wrong with one attempt.
#[derive(Debug)]
pub(crate) enum Fault {
    /// No answer within the client's timeout.
    Timeout,
    /// The request or its body could not be sent or read (the error's whole chain).
    Transport(String),
    /// A non-2xx answer and the first 200 characters of its body.
    Status { status: u16, body: String },
}

/// Send `request` once: the body of a 2xx answer, or the [`Fault`], transient or permanent.
pub(crate) async fn send_once(request: reqwest::RequestBuilder) -> Result<String, Failure<Fault>> {
    let transport = |e: reqwest::Error| {
        if e.is_timeout() {
            Fault::Timeout
        } else {
            Fault::Transport(error_chain(&e))
        }
    };
    let resp = match request.send().await {
        Ok(r) => r,
        Err(e) if e.is_builder() => return Err(Failure::Permanent(transport(e))),
        Err(e) => return Err(Failure::transient(transport(e))),
    };
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|h| h.to_str().ok())
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let body = match resp.text().await {
        Ok(b) => b,
        Err(e) => return Err(Failure::transient(transport(e))),
    };
    if status.is_success() {
        return Ok(body);
    }
    let fault = Fault::Status {
        status: status.as_u16(),
        body: body.chars().take(200).collect(),
    };
    if status.as_u16() == 429 || status.is_server_error() {
        Err(Failure::Transient {
            error: fault,
            after: retry_after,
        })
    } else {
        Err(Failure::Permanent(fault))
    }
}

/// An error with its sources, `a: b: c`.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let m = inner.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        src = inner.source();
    }
    s
}
