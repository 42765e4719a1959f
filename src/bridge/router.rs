//! Serving a route table: each row becomes one warp filter, and the rows are
//! tried in table order. A row's filter checks, in this order, the path (its
//! template's segments, `{name}` matching any one segment), the method, the
//! query string (only if the row declares parameters; a malformed one is a
//! 400), the caller (key and bot, `auth.rs`; then one unit of the bot's
//! budget, `limits.rs`; then the session's activity, `session.rs`), and the
//! body (only if the row declares one: at most `MAX_BODY` bytes, 413
//! beyond, 411 without `Content-Length`, 415 unless `Content-Type` is
//! `application/json`; a body sent to a row that declares none is checked
//! the same way); then it calls the handler.
//!
//! After the rows, the seed's method override: on a path with a DELETE row
//! and no POST row, a POST with `{"_method": "DELETE"}` is served by the
//! DELETE row's handler after the same checks (`method_override.rs`).
//!
//! Since filters are built only from the table, nothing is served that the
//! table (and so `/openapi.json`) does not list. This module knows no route
//! and turns no rejection into a response (`error::recover` does).

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use warp::filters::BoxedFilter;
use warp::http::HeaderMap;
use warp::reply::Response;
use warp::{Filter, Rejection};

use super::auth::{self, Caller};
use super::error::ApiError;
use super::limits::{self, MAX_BODY};
use super::method_override;
use super::route::{Call, Handler, Method, Route};
use super::session;
use super::State;

/// A route's filter, or several tried in turn.
pub(super) type Routes = BoxedFilter<(Response,)>;

/// Every route of `table`, tried in table order, then the method override (a POST standing
/// for DELETE, `method_override.rs`) on the paths that take it.
pub(super) fn serve(table: &'static [Route], state: Arc<State>) -> Routes {
    let mut all: Vec<Routes> = table.iter().map(|r| route(r, state.clone())).collect();
    all.extend(
        method_override::paths(table)
            .into_iter()
            .map(|(p, rows)| overridden(p, rows, state.clone())),
    );
    any_of(all)
}

/// `POST path` with `{"_method": ...}`: the caller is checked as the real method's row checks
/// it (key, bot, budget, session), then the body names the row, whose handler answers.
fn overridden(p: &'static str, rows: Vec<&'static Route>, state: Arc<State>) -> Routes {
    let auth_state = state.clone();
    path(p)
        .and(warp::post())
        .and(auth::credentials())
        .and_then(
            move |params: Vec<String>, key: Option<String>, bot: Option<String>, local: bool| {
                let state = auth_state.clone();
                async move {
                    // every overridable row is a DELETE: it writes
                    let caller = authenticate(&state, key, bot, local, None, true).await?;
                    Ok::<_, Rejection>((params, caller))
                }
            },
        )
        .untuple_one()
        .and(with(state))
        .and(warp::header::headers_cloned())
        .and(json_body())
        .and_then(
            move |params: Vec<String>,
                  caller: Caller,
                  state: Arc<State>,
                  headers: HeaderMap,
                  body: Bytes| {
                let picked = method_override::target(p, &rows, &body);
                async move {
                    let (row, body) = picked?;
                    let call = Call {
                        bot: caller.bot,
                        role: caller.role,
                        state,
                        query: HashMap::new(),
                        headers,
                        route: row,
                        params,
                        body,
                    };
                    match row.handler {
                        Handler::Bot(h) | Handler::BotOrQuery(h) => h(call).await,
                        Handler::Public(_) => Err(warp::reject::not_found()),
                    }
                }
            },
        )
        .boxed()
}

/// The first of `routes` that accepts a request (a balanced tree of `or`, so
/// a request passes a few levels rather than one per route).
fn any_of(mut routes: Vec<Routes>) -> Routes {
    match routes.len() {
        0 => warp::any()
            .and_then(|| async { Err::<Response, _>(warp::reject::not_found()) })
            .boxed(),
        1 => routes.pop().expect("one route"),
        n => {
            let second = routes.split_off(n / 2);
            any_of(routes).or(any_of(second)).unify().boxed()
        }
    }
}

/// One row: path, method, then what the handler needs.
fn route(r: &'static Route, state: Arc<State>) -> Routes {
    let head = path(r.path).and(method(r.method));
    match r.handler {
        Handler::Public(h) => head
            .and(with(state))
            .and(warp::header::headers_cloned())
            .and_then(move |_: Vec<String>, s: Arc<State>, headers: HeaderMap| h(s, headers))
            .boxed(),
        Handler::Bot(h) | Handler::BotOrQuery(h) => {
            let from_query = matches!(r.handler, Handler::BotOrQuery(_));
            let writes = !matches!(r.method, Method::Get);
            let auth_state = state.clone();
            head.and(query(r))
                .and(auth::credentials())
                .and_then(
                    move |params: Vec<String>,
                          query: HashMap<String, String>,
                          key: Option<String>,
                          bot: Option<String>,
                          local: bool| {
                        let state = auth_state.clone();
                        async move {
                            let q = from_query.then_some(&query);
                            let caller = authenticate(&state, key, bot, local, q, writes).await?;
                            Ok::<_, Rejection>((params, query, caller))
                        }
                    },
                )
                .untuple_one()
                .and(with(state))
                .and(warp::header::headers_cloned())
                .and(body(r))
                .and_then(
                    move |params: Vec<String>,
                          query: HashMap<String, String>,
                          caller: Caller,
                          state: Arc<State>,
                          headers: HeaderMap,
                          body: Bytes| {
                        h(Call {
                            bot: caller.bot,
                            role: caller.role,
                            state,
                            query,
                            headers,
                            route: r,
                            params,
                            body,
                        })
                    },
                )
                .boxed()
        }
    }
}

/// Identifies the caller (with `?api_key=` and `?bot_id=` as fallbacks for the headers when
/// `query` is given; `local`: the peer is loopback), refuses a read-only caller a route that
/// `writes`, spends one unit of the bot's budget and notes its activity. A missing, wrong or
/// impersonating key spends the failed-authentication budget first (429 past it).
async fn authenticate(
    state: &Arc<State>,
    key: Option<String>,
    bot: Option<String>,
    local: bool,
    query: Option<&HashMap<String, String>>,
    writes: bool,
) -> Result<Caller, Rejection> {
    let from_query = |name: &str| {
        query
            .and_then(|q| q.get(name).cloned())
            .filter(|v| !v.trim().is_empty())
    };
    let key = key.or_else(|| from_query("api_key"));
    let bot = bot.or_else(|| from_query("bot_id"));
    let presented = auth::present(
        &state.queue,
        state.cfg.api_key.as_deref(),
        key.as_deref(),
        local,
    )
    .await
    .map_err(ApiError::from)?;
    let caller = match auth::decide(presented, bot, state.cfg.loopback_operator) {
        Ok(c) => c,
        Err(
            e @ (auth::AuthError::MissingKey
            | auth::AuthError::WrongKey
            | auth::AuthError::NotYourBot { .. }),
        ) => {
            state.auth_failures.fail().map_err(ApiError::from)?;
            return Err(ApiError::from(e).into());
        }
        Err(e) => return Err(ApiError::from(e).into()),
    };
    if writes && !caller.role.writes() {
        return Err(ApiError::from(auth::AuthError::ReadOnly(caller.bot)).into());
    }
    state.budgets.spend(&caller.bot).map_err(ApiError::from)?;
    session::note_request(state, &caller.bot);
    Ok(caller)
}

fn with(
    s: Arc<State>,
) -> impl Filter<Extract = (Arc<State>,), Error = std::convert::Infallible> + Clone {
    warp::any().map(move || s.clone())
}

/// The template's segments, literal or `{name}` (any one non-empty
/// segment), then the end of the path; extracts the parameters in order.
fn path(template: &'static str) -> BoxedFilter<(Vec<String>,)> {
    let mut f = warp::any().map(Vec::new).boxed();
    for seg in template.split('/').filter(|s| !s.is_empty()) {
        f = if seg.starts_with('{') {
            f.and(warp::path::param::<String>())
                .map(|mut params: Vec<String>, p: String| {
                    params.push(p);
                    params
                })
                .boxed()
        } else {
            f.and(warp::path(seg)).boxed()
        };
    }
    f.and(warp::path::end()).boxed()
}

fn method(m: Method) -> BoxedFilter<()> {
    match m {
        Method::Get => warp::get().boxed(),
        Method::Post => warp::post().boxed(),
        Method::Delete => warp::delete().boxed(),
    }
}

/// The query string as a map (form-urlencoded, decoded by warp's
/// `serde_urlencoded`), or an empty map for a route that declares no query
/// parameters.
fn query(r: &Route) -> BoxedFilter<(HashMap<String, String>,)> {
    if r.reads_query() {
        warp::query::<HashMap<String, String>>().boxed()
    } else {
        warp::any().map(HashMap::new).boxed()
    }
}

/// The body, at most [`MAX_BODY`] bytes, for a route that declares one.
/// Any route (GET aside) refuses a body not declared JSON.
fn body(r: &Route) -> BoxedFilter<(Bytes,)> {
    if r.body.is_some() {
        json_body()
    } else if matches!(r.method, Method::Get) {
        warp::any().map(Bytes::new).boxed()
    } else {
        // Not read, and no `Content-Length` needed (a bare DELETE has none).
        warp::header::optional::<String>("content-type")
            .and(warp::header::optional::<u64>("content-length"))
            .and(warp::header::optional::<String>("transfer-encoding"))
            .and_then(
                |ct: Option<String>, len: Option<u64>, te: Option<String>| async move {
                    let sent = if te.is_some() {
                        1
                    } else {
                        len.unwrap_or(0) as usize
                    };
                    limits::json_content_type(ct.as_deref(), sent)
                        .map_err(|e| Rejection::from(ApiError::from(e)))?;
                    Ok::<_, Rejection>(Bytes::new())
                },
            )
            .boxed()
    }
}

/// The body, at most [`MAX_BODY`] bytes; a non-empty one must be declared
/// `application/json` (415 otherwise, `limits::json_content_type`).
fn json_body() -> BoxedFilter<(Bytes,)> {
    warp::header::optional::<String>("content-type")
        .and(warp::body::content_length_limit(MAX_BODY).and(warp::body::bytes()))
        .and_then(|ct: Option<String>, body: Bytes| async move {
            limits::json_content_type(ct.as_deref(), body.len())
                .map_err(|e| Rejection::from(ApiError::from(e)))?;
            Ok::<_, Rejection>(body)
        })
        .boxed()
}
