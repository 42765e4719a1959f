//! How the bridge says no: `ApiError` (a status, a message that names what is
//! wrong and how to fix it, extra fields for the body, `Retry-After`), the
//! status each of the bridge's error types answers with, and `recover`, which
//! turns every rejection — ours and warp's — into `{"error": ...}`.
//!
//! It does not decide when a request is refused (the routes, `auth.rs` and
//! `limits.rs` do) and logs nothing but backend failures.

use std::convert::Infallible;

use serde_json::{json, Value};
use warp::http::StatusCode;
use warp::{Rejection, Reply};

use super::auth::AuthError;
use super::limits::{NotJson, OverBudget, TooManyStreams, MAX_BODY};

/// A 4xx/5xx with a message, as a warp rejection.
#[derive(Debug, thiserror::Error)]
#[error("{status}: {message}")]
pub(super) struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// Seconds for `Retry-After` (429).
    pub retry_after: Option<u64>,
    /// Extra fields for the error body (e.g. every spec issue).
    pub detail: Option<Value>,
}

impl warp::reject::Reject for ApiError {}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            retry_after: None,
            detail: None,
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        let status = match e {
            AuthError::MissingKey | AuthError::WrongKey => StatusCode::UNAUTHORIZED,
            AuthError::BadBot => StatusCode::BAD_REQUEST,
            AuthError::NotYourBot { .. } | AuthError::ReadOnly(_) => StatusCode::FORBIDDEN,
            AuthError::Lookup(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<OverBudget> for ApiError {
    fn from(e: OverBudget) -> Self {
        ApiError {
            retry_after: Some(e.retry_after_s),
            ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, e.to_string())
        }
    }
}

impl From<TooManyStreams> for ApiError {
    fn from(e: TooManyStreams) -> Self {
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, e.to_string())
    }
}

impl From<NotJson> for ApiError {
    fn from(e: NotJson) -> Self {
        ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, e.to_string())
    }
}

/// A rejection with a status and a message.
pub(super) fn reject(status: StatusCode, message: impl Into<String>) -> Rejection {
    ApiError::new(status, message).into()
}

/// Like [`reject`], with extra fields merged into the error body.
pub(super) fn reject_with(
    status: StatusCode,
    message: impl Into<String>,
    detail: Value,
) -> Rejection {
    ApiError {
        detail: Some(detail),
        ..ApiError::new(status, message)
    }
    .into()
}

/// A backend (Redis) failure: logged, and a 503 that says so.
pub(super) fn internal(e: impl std::fmt::Display) -> Rejection {
    tracing::error!(%e, "bridge: request failed");
    reject(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("backend unavailable: {e}"),
    )
}

/// What a backend answered to a request it did not take: a 503 when it failed (`transient`:
/// Redis or the store did not answer; try again), else a 422 with its reason.
pub(super) fn refused(transient: bool, e: impl std::fmt::Display) -> Rejection {
    if transient {
        internal(e)
    } else {
        reject(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
    }
}

/// Every rejection as a JSON error body with its status.
pub(super) async fn recover(r: Rejection) -> Result<warp::reply::Response, Infallible> {
    let mut detail = None;
    let (status, message, retry_after) = if let Some(e) = r.find::<ApiError>() {
        detail = e.detail.clone();
        (e.status, e.message.clone(), e.retry_after)
    } else if r.is_not_found() {
        (
            StatusCode::NOT_FOUND,
            "no such route; see /openapi.json".into(),
            None,
        )
    } else if r.find::<warp::reject::PayloadTooLarge>().is_some() {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body is over {MAX_BODY} bytes"),
            None,
        )
    } else if r.find::<warp::reject::MethodNotAllowed>().is_some() {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed on this route".into(),
            None,
        )
    } else if let Some(e) = r.find::<warp::reject::InvalidHeader>() {
        (
            StatusCode::BAD_REQUEST,
            format!("header {}: invalid", e.name()),
            None,
        )
    } else if let Some(e) = r.find::<warp::reject::InvalidQuery>() {
        (StatusCode::BAD_REQUEST, format!("query string: {e}"), None)
    } else if r.find::<warp::reject::UnsupportedMediaType>().is_some() {
        (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported media type; send JSON".into(),
            None,
        )
    } else if let Some(e) = r.find::<warp::reject::MissingHeader>() {
        (
            StatusCode::BAD_REQUEST,
            format!("header {} is required", e.name()),
            None,
        )
    } else if r.find::<warp::reject::LengthRequired>().is_some() {
        (
            StatusCode::LENGTH_REQUIRED,
            "Content-Length is required".into(),
            None,
        )
    } else {
        (StatusCode::BAD_REQUEST, format!("bad request: {r:?}"), None)
    };
    let mut body = json!({ "error": message });
    if let Some(Value::Object(extra)) = detail {
        for (k, v) in extra {
            body[k] = v;
        }
    }
    let mut res = warp::reply::with_status(warp::reply::json(&body), status).into_response();
    if let Some(s) = retry_after {
        res.headers_mut().insert(
            warp::http::header::RETRY_AFTER,
            warp::http::HeaderValue::from(s),
        );
    }
    Ok(res)
}
