//! The seed's method override: a `POST` whose JSON body is `{"_method": "DELETE"}` (or `PUT`,
//! `PATCH`) stands for that method on the same path, for clients that can only send GET and
//! POST (the seed's bots delete their session with `POST /bots/session/{id}`). Which row a
//! request means is decided here (`target`); `router.rs` serves it with the same key, bot,
//! budget and handler as the real method.
//!
//! Only paths that have no `POST` row take the override (a path's own POST keeps its
//! meaning), and only for rows of a bot's (a public row is never overridden). It adds no row to
//! the table, so `/openapi.json` documents it on the operations it reaches, not as operations
//! of its own. It does not authenticate (the router does, before the body is read).

use bytes::Bytes;
use serde_json::{Map, Value};
use warp::http::StatusCode;
use warp::Rejection;

use super::error::reject;
use super::route::{Handler, Method, Route};

/// The methods a POST may stand for.
pub(super) const OVERRIDABLE: [&str; 3] = ["DELETE", "PUT", "PATCH"];

/// The paths of `table` that take the override: those with a bot's row of an overridable
/// method and no POST row. Each path once, with its rows.
pub(super) fn paths(table: &[Route]) -> Vec<(&'static str, Vec<&Route>)> {
    let mut out: Vec<(&'static str, Vec<&Route>)> = Vec::new();
    for r in table {
        match out.iter_mut().find(|(p, _)| *p == r.path) {
            Some((_, rows)) => rows.push(r),
            None => out.push((r.path, vec![r])),
        }
    }
    out.retain(|(_, rows)| {
        !rows.iter().any(|r| r.method == Method::Post)
            && rows.iter().any(|r| overridable(r).is_some())
    });
    out
}

/// The method name a row can be reached by with `_method`, if any.
fn overridable(r: &Route) -> Option<&'static str> {
    let name = match r.method {
        Method::Delete => "DELETE",
        Method::Get | Method::Post => return None,
    };
    // a bot's row that reads no query string (the override hands the handler none)
    match r.handler {
        Handler::Bot(_) | Handler::BotOrQuery(_) if r.query.is_empty() => Some(name),
        _ => None,
    }
}

/// Whether `r`, a row of `table`, is reached by a POST with `_method` too.
pub(super) fn reaches(table: &[Route], r: &Route) -> bool {
    overridable(r).is_some() && paths(table).iter().any(|(p, _)| *p == r.path)
}

/// The row a `POST` to `path` with `body` stands for, and the body that row is handed (the
/// rest of the object when it reads one). A POST without `_method` is a 405 naming the
/// methods of the path and the override; a `_method` that is not a method a POST may stand for
/// is a 400, and one the path lacks a 405, each naming `_method`.
pub(super) fn target(
    path: &'static str,
    rows: &[&'static Route],
    body: &[u8],
) -> Result<(&'static Route, Bytes), Rejection> {
    let methods: Vec<String> = rows
        .iter()
        .map(|r| r.method.as_str().to_ascii_uppercase())
        .collect();
    let takes: Vec<&'static str> = rows.iter().filter_map(|r| overridable(r)).collect();
    let example = format!("{{\"_method\": \"{}\"}}", takes[0]);
    let no_post = || {
        reject(
            StatusCode::METHOD_NOT_ALLOWED,
            format!(
                "POST is not a method of {path}: it takes {}; a POST stands for {} with the \
                 body {example}",
                methods.join(", "),
                takes.join(" or "),
            ),
        )
    };
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(no_post());
    }
    let mut fields: Map<String, Value> = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => m,
        _ => {
            return Err(reject(
                StatusCode::BAD_REQUEST,
                format!("request body: a POST to {path} must be a JSON object like {example}"),
            ))
        }
    };
    let wanted = match fields.remove("_method") {
        None => return Err(no_post()),
        Some(Value::String(m)) => m.trim().to_ascii_uppercase(),
        Some(other) => {
            return Err(reject(
                StatusCode::BAD_REQUEST,
                format!("field `_method`: must be a string such as \"DELETE\", found {other}"),
            ))
        }
    };
    if !OVERRIDABLE.contains(&wanted.as_str()) {
        return Err(reject(
            StatusCode::BAD_REQUEST,
            format!(
                "field `_method`: {wanted:?} cannot be overridden; a POST stands for one of {} \
                 (send GET and POST as themselves)",
                OVERRIDABLE.join(", ")
            ),
        ));
    }
    let Some(row) = rows
        .iter()
        .copied()
        .find(|r| overridable(r) == Some(wanted.as_str()))
    else {
        return Err(reject(
            StatusCode::METHOD_NOT_ALLOWED,
            format!(
                "field `_method`: {path} has no {wanted}; it takes {} (send {example})",
                methods.join(", ")
            ),
        ));
    };
    let rest = if row.body.is_some() {
        Bytes::from(Value::Object(fields).to_string())
    } else if let Some(extra) = fields.keys().next() {
        return Err(reject(
            StatusCode::BAD_REQUEST,
            format!("field `{extra}`: {wanted} {path} takes no body; send only {example}"),
        ));
    } else {
        Bytes::new()
    };
    Ok((row, rest))
}

#[cfg(test)]
mod tests {
    use super::super::error::ApiError;
    use super::super::table::TABLE;
    use super::{paths, target};

    fn refused<T>(r: Result<T, warp::Rejection>) -> (u16, String) {
        let Err(r) = r else { panic!("accepted") };
        let e = r.find::<ApiError>().expect("an ApiError");
        (e.status.as_u16(), e.message.clone())
    }

    #[test]
    fn only_paths_without_a_post_take_the_override() {
        let ps: Vec<&str> = paths(TABLE).iter().map(|(p, _)| *p).collect();
        assert!(ps.contains(&"/bots/session/{id}"), "{ps:?}");
        assert!(ps.contains(&"/schedules/{name}"), "{ps:?}");
        assert!(
            !ps.contains(&"/schedules"),
            "POST /schedules keeps its meaning"
        );
        assert!(!ps.contains(&"/jobs/{id}"), "no DELETE there");
    }

    #[test]
    fn the_body_picks_the_row_or_says_what_is_wrong() {
        let all = paths(TABLE);
        let (path, rows) = all
            .iter()
            .find(|(p, _)| *p == "/bots/session/{id}")
            .unwrap();
        let (row, body) = target(path, rows, br#"{"_method":"DELETE"}"#).unwrap();
        assert_eq!(row.method.as_str(), "delete");
        assert!(body.is_empty());
        let (row, _) = target(path, rows, br#"{"_method":" delete "}"#).unwrap();
        assert_eq!(row.method.as_str(), "delete");
        let (st, e) = refused(target(path, rows, br#"{"_method":"PATCH"}"#));
        assert_eq!(st, 405);
        assert!(e.contains("`_method`") && e.contains("has no PATCH"), "{e}");
        let (st, e) = refused(target(path, rows, br#"{"_method":"FETCH"}"#));
        assert_eq!(st, 400);
        assert!(e.contains("`_method`") && e.contains("\"FETCH\""), "{e}");
        let (st, e) = refused(target(path, rows, br#"{"_method":1}"#));
        assert_eq!(st, 400);
        assert!(e.contains("`_method`"), "{e}");
        let (st, e) = refused(target(path, rows, b""));
        assert_eq!(st, 405);
        assert!(e.contains(r#"{"_method": "DELETE"}"#), "{e}");
        let (st, _) = refused(target(path, rows, b"{}"));
        assert_eq!(st, 405);
        let (st, e) = refused(target(path, rows, b"[1]"));
        assert_eq!(st, 400);
        assert!(e.contains("JSON object"), "{e}");
        let (st, e) = refused(target(path, rows, br#"{"_method":"DELETE","x":1}"#));
        assert_eq!(st, 400);
        assert!(e.contains("field `x`"), "{e}");
    }
}
