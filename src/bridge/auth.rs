//! Who is calling: a principal, known by its API key (`X-API-Key`), never by a header it
//! chooses.
//!
//! - `BRIDGE_API_KEY` (compared in constant time) is the operator: every route, any job type,
//!   any job by id; as bot `default`. Naming a bot in `X-Bot-Id`, the operator acts as that
//!   bot, with that bot's rights and nothing more (what a bot would see and may do).
//! - A key made with `synth-city bots add NAME [--role bot|read-only|operator]` is looked up by
//!   its SHA-256 in Redis (`engine::principals`); the caller's bot id and role are the key's.
//!   An `X-Bot-Id` naming another bot is a 403 (impersonation), the key's own id is accepted.
//! - No key: refused (401), except from a loopback peer when the operator allowed it
//!   (`--loopback-operator`, `BRIDGE_LOOPBACK_OPERATOR=1`), which makes such a caller the
//!   operator.
//!
//! It only identifies the caller. It does not spend the bot's request budget or the failed-
//! authentication budget (`limits.rs`, through the router), refresh its session
//! (`session.rs`) or decide which routes a role may call (`router.rs`, from the route's
//! method and table row).

use engine::principals::{self, Principal, Role};
use warp::{Filter, Rejection};

/// An authenticated caller: the bot id its requests act as, and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Caller {
    pub bot: String,
    pub role: Role,
}

/// Why a caller was refused; each names the header or setting to fix.
#[derive(Debug, thiserror::Error)]
pub(super) enum AuthError {
    #[error(
        "X-API-Key header is required: ask the operator for a key (`synth-city bots add NAME`); \
         on the bridge's own machine the operator may allow keyless local callers with \
         `synth-city bridge --loopback-operator`"
    )]
    MissingKey,
    #[error("X-API-Key is wrong or revoked")]
    WrongKey,
    #[error("X-Bot-Id must be 1 to 64 of [A-Za-z0-9._-]")]
    BadBot,
    #[error(
        "X-Bot-Id {asked:?} is not this key's bot ({own:?}): a bot acts only as itself; leave \
         X-Bot-Id out (the key names the bot)"
    )]
    NotYourBot { own: String, asked: String },
    #[error(
        "this key is read-only (bot {0:?}): it may call GET routes only; ask the operator for a \
         `bot` key to change anything"
    )]
    ReadOnly(String),
    #[error("looking the key up failed: {0}")]
    Lookup(String),
}

/// The bot of the operator's requests without `X-Bot-Id`.
pub(super) const DEFAULT_BOT: &str = "default";

/// The TCP peer of a request, put into its extensions by the bridge's server; absent when
/// the filter is served some other way (then the peer counts as not loopback).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub std::net::SocketAddr);

/// `X-API-Key` and `X-Bot-Id`, each optional (an empty one, as `curl -H "X-Bot-Id: $UNSET"`
/// sends, counts as absent), and whether the peer is loopback; a header that is not visible
/// ASCII is a 400 naming it (warp's `InvalidHeader`).
pub(super) fn credentials(
) -> impl Filter<Extract = (Option<String>, Option<String>, bool), Error = Rejection> + Clone {
    let given = |v: Option<String>| v.filter(|v| !v.trim().is_empty());
    warp::header::optional::<String>("x-api-key")
        .and(warp::header::optional::<String>("x-bot-id"))
        .and(warp::ext::optional::<Peer>())
        .map(move |k, b, p: Option<Peer>| {
            (
                given(k),
                given(b),
                p.is_some_and(|p| p.0.ip().is_loopback()),
            )
        })
        .untuple_one()
}

/// Constant-time equality, so response timing does not leak the key.
pub(super) fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether `key` is the operator's key `want` (no operator key: everything is; only `/health`
/// asks this, to decide whether to show its details).
pub(super) fn key_ok(want: Option<&str>, key: Option<&str>) -> bool {
    match want {
        None => true,
        Some(want) => key.is_some_and(|k| same(k.as_bytes(), want.as_bytes())),
    }
}

/// What the presented key turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Presented {
    /// No key at all, from a loopback peer or not.
    Nothing { loopback: bool },
    /// `BRIDGE_API_KEY`.
    OperatorKey,
    /// A principal's key.
    Principal(Principal),
    /// A key nobody holds (wrong, or revoked).
    Unknown,
}

/// Classifies `key`: the operator's (constant time), else a principal's (one Redis lookup by
/// the key's hash), else unknown.
pub(super) async fn present(
    queue: &engine::Queue,
    operator_key: Option<&str>,
    key: Option<&str>,
    loopback: bool,
) -> Result<Presented, AuthError> {
    let Some(key) = key else {
        return Ok(Presented::Nothing { loopback });
    };
    if operator_key.is_some_and(|want| same(key.as_bytes(), want.as_bytes())) {
        return Ok(Presented::OperatorKey);
    }
    match principals::lookup(queue, key).await {
        Ok(Some(p)) => Ok(Presented::Principal(p)),
        Ok(None) => Ok(Presented::Unknown),
        Err(e) => Err(AuthError::Lookup(e.to_string())),
    }
}

/// The caller that `presented` and `X-Bot-Id` (`bot`) make, when `loopback_operator` says
/// whether keyless loopback callers are the operator.
pub(super) fn decide(
    presented: Presented,
    bot: Option<String>,
    loopback_operator: bool,
) -> Result<Caller, AuthError> {
    // the operator as itself (`own` is its bot id), or acting as the bot it names
    let operator = |own: String, bot: Option<String>| match bot {
        None => Ok(Caller {
            bot: own,
            role: Role::Operator,
        }),
        Some(bot) if principals::valid_bot_id(&bot) => Ok(Caller {
            bot,
            role: Role::Bot,
        }),
        Some(_) => Err(AuthError::BadBot),
    };
    match presented {
        Presented::OperatorKey => operator(DEFAULT_BOT.into(), bot),
        Presented::Nothing { loopback: true } if loopback_operator => {
            operator(DEFAULT_BOT.into(), bot)
        }
        Presented::Nothing { .. } => Err(AuthError::MissingKey),
        Presented::Unknown => Err(AuthError::WrongKey),
        Presented::Principal(p) => match bot {
            // an operator key made with `bots add` acts as any bot, as BRIDGE_API_KEY does
            Some(asked) if p.role == Role::Operator && asked != p.bot => {
                operator(p.bot, Some(asked))
            }
            Some(asked) if asked != p.bot => Err(AuthError::NotYourBot { own: p.bot, asked }),
            _ => Ok(Caller {
                bot: p.bot,
                role: p.role,
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(bot: &str, role: Role) -> Presented {
        Presented::Principal(Principal {
            bot: bot.into(),
            role,
        })
    }

    #[test]
    fn constant_time_compare() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd") && !same(b"abc", b"ab"));
        assert!(key_ok(None, None) && key_ok(Some("k"), Some("k")) && !key_ok(Some("k"), None));
    }

    #[test]
    fn the_key_names_the_bot_never_the_header() {
        let me = decide(principal("alice", Role::Bot), None, false).unwrap();
        assert_eq!((me.bot.as_str(), me.role), ("alice", Role::Bot));
        assert!(decide(principal("alice", Role::Bot), Some("alice".into()), false).is_ok());
        assert!(matches!(
            decide(principal("alice", Role::Bot), Some("bob".into()), false),
            Err(AuthError::NotYourBot { .. })
        ));
        assert!(matches!(
            decide(
                principal("viewer", Role::ReadOnly),
                Some("bob".into()),
                false
            ),
            Err(AuthError::NotYourBot { .. })
        ));
        // an operator acts as whoever it names, with that bot's rights
        let op = decide(
            principal("admin", Role::Operator),
            Some("bob".into()),
            false,
        )
        .unwrap();
        assert_eq!((op.bot.as_str(), op.role), ("bob", Role::Bot));
        let op = decide(principal("admin", Role::Operator), None, false).unwrap();
        assert_eq!((op.bot.as_str(), op.role), ("admin", Role::Operator));
        let op = decide(Presented::OperatorKey, None, false).unwrap();
        assert_eq!((op.bot.as_str(), op.role), ("default", Role::Operator));
        let op = decide(Presented::OperatorKey, Some("bob".into()), false).unwrap();
        assert_eq!((op.bot.as_str(), op.role), ("bob", Role::Bot));
        assert!(matches!(
            decide(Presented::OperatorKey, Some("a b".into()), false),
            Err(AuthError::BadBot)
        ));
    }

    #[test]
    fn no_key_is_the_operator_only_on_loopback_when_allowed() {
        let local = Presented::Nothing { loopback: true };
        let remote = Presented::Nothing { loopback: false };
        assert!(matches!(
            decide(local.clone(), None, false),
            Err(AuthError::MissingKey)
        ));
        assert!(matches!(
            decide(remote.clone(), None, true),
            Err(AuthError::MissingKey)
        ));
        let op = decide(local.clone(), Some("b".into()), true).unwrap();
        assert_eq!((op.bot.as_str(), op.role), ("b", Role::Bot));
        let op = decide(local, None, true).unwrap();
        assert_eq!((op.bot.as_str(), op.role), ("default", Role::Operator));
        assert!(matches!(
            decide(Presented::Unknown, None, true),
            Err(AuthError::WrongKey)
        ));
    }
}
