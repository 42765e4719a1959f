//! What a route is: one row of the route table (`Route`: method, path,
//! summary, query parameters, request body, handler), the handler's side of a
//! request (`Call`: the caller's bot, path parameters, query, headers, body)
//! and the JSON replies handlers answer with.
//!
//! It does not list routes (`table.rs`), turn them into warp filters
//! (`router.rs`) or document them (`openapi.rs`).

use std::collections::HashMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::Value;
use warp::http::{HeaderMap, StatusCode};
use warp::reply::Response;
use warp::{Rejection, Reply};

use super::error::reject;
use super::State;

/// What a handler gives back: a response, or a rejection that `error::recover`
/// turns into a JSON error body.
pub(super) type Answer = Result<Response, Rejection>;

/// A handler's answer, boxed so that every handler has one type.
pub(super) type Pending = BoxFuture<'static, Answer>;

/// The HTTP method of a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Method {
    Get,
    Post,
    Delete,
}

impl Method {
    /// The lowercase name, as OpenAPI spells it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Method::Get => "get",
            Method::Post => "post",
            Method::Delete => "delete",
        }
    }
}

/// A query parameter a route reads: its name, its JSON schema (as JSON text)
/// and whether it is required.
#[derive(Debug, Clone, Copy)]
pub(super) struct Param {
    pub name: &'static str,
    pub schema: &'static str,
    pub required: bool,
}

impl Param {
    pub const fn optional(name: &'static str, schema: &'static str) -> Self {
        Param {
            name,
            schema,
            required: false,
        }
    }

    pub const fn required(name: &'static str, schema: &'static str) -> Self {
        Param {
            name,
            schema,
            required: true,
        }
    }
}

/// Who may call a route, and the function that answers it.
#[derive(Clone, Copy)]
pub(super) enum Handler {
    /// No key needed: the route shows no bot's data (`/health` without the
    /// key, the dashboard page, the OpenAPI document).
    Public(fn(Arc<State>, HeaderMap) -> Pending),
    /// A principal's key in `X-API-Key` (`auth.rs`); the operator names the bot it acts as in
    /// `X-Bot-Id`.
    Bot(fn(Call) -> Pending),
    /// As `Bot`, and the key and bot may also come as `?api_key=` and
    /// `?bot_id=` (browsers' EventSource cannot set headers); the route
    /// declares both query parameters.
    BotOrQuery(fn(Call) -> Pending),
}

/// One route: how it is served and how it is documented.
#[derive(Clone, Copy)]
pub(super) struct Route {
    pub method: Method,
    /// The OpenAPI path template; `{name}` segments are path parameters.
    pub path: &'static str,
    pub summary: &'static str,
    /// The query parameters it reads; a route that declares none does not
    /// read the query string at all.
    pub query: &'static [Param],
    /// The JSON schema of its request body; a route without one does not
    /// read the body.
    pub body: Option<fn() -> Value>,
    pub handler: Handler,
}

impl Route {
    const fn new(method: Method, path: &'static str, summary: &'static str, h: Handler) -> Self {
        Route {
            method,
            path,
            summary,
            query: &[],
            body: None,
            handler: h,
        }
    }

    pub const fn get(path: &'static str, summary: &'static str, h: Handler) -> Self {
        Self::new(Method::Get, path, summary, h)
    }

    pub const fn post(path: &'static str, summary: &'static str, h: Handler) -> Self {
        Self::new(Method::Post, path, summary, h)
    }

    pub const fn delete(path: &'static str, summary: &'static str, h: Handler) -> Self {
        Self::new(Method::Delete, path, summary, h)
    }

    /// The query parameters the route reads.
    pub const fn query(self, query: &'static [Param]) -> Self {
        Route { query, ..self }
    }

    /// The route reads a JSON body with this schema.
    pub const fn body(self, schema: fn() -> Value) -> Self {
        Route {
            body: Some(schema),
            ..self
        }
    }

    /// The names of the path parameters, in order.
    pub fn path_params(&self) -> impl Iterator<Item = &'static str> {
        self.path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
    }

    /// Whether the router reads the query string of this route.
    pub fn reads_query(&self) -> bool {
        !self.query.is_empty()
    }
}

/// A request to a bot's route, as the router hands it to the handler: the
/// caller is authenticated and within its budget.
pub(super) struct Call {
    /// The caller's bot: its key's, or for the operator `X-Bot-Id` (default `default`).
    pub bot: String,
    /// What the caller may do (`auth.rs`).
    pub role: engine::principals::Role,
    pub state: Arc<State>,
    /// The query string, decoded (empty unless the route declares parameters).
    pub query: HashMap<String, String>,
    pub headers: HeaderMap,
    pub(super) route: &'static Route,
    /// The path parameters, in the order of the route's template.
    pub(super) params: Vec<String>,
    /// The body (empty unless the route declares one).
    pub(super) body: bytes::Bytes,
}

impl Call {
    /// The path parameter `name` (`id` of `/jobs/{id}`).
    pub fn param(&self, name: &str) -> Result<&str, Rejection> {
        self.route
            .path_params()
            .position(|p| p == name)
            .and_then(|i| self.params.get(i))
            .map(String::as_str)
            .ok_or_else(|| {
                reject(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!(
                        "route {} has no path parameter `{name}`: the route table and its \
                         handler disagree",
                        self.route.path
                    ),
                )
            })
    }

    /// The body as JSON; a 400 that names the field serde stumbled on.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, Rejection> {
        serde_json::from_slice::<T>(&self.body)
            .map_err(|e| reject(StatusCode::BAD_REQUEST, format!("request body: {e}")))
    }
}

/// A header's value; `None` when absent, a 400 naming the header when it is
/// not visible ASCII (as warp's header filters answer).
pub(super) fn header(headers: &HeaderMap, name: &'static str) -> Result<Option<String>, Rejection> {
    headers
        .get(name)
        .map(|v| {
            v.to_str()
                .map(str::to_string)
                .map_err(|_| reject(StatusCode::BAD_REQUEST, format!("header {name}: invalid")))
        })
        .transpose()
}

/// A JSON reply with a status.
pub(super) fn reply(status: StatusCode, v: Value) -> Response {
    warp::reply::with_status(warp::reply::json(&v), status).into_response()
}

/// A JSON reply, 200.
pub(super) fn ok(v: Value) -> Response {
    reply(StatusCode::OK, v)
}
