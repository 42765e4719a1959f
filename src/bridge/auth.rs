//! Who is calling: the API key (`X-API-Key`, compared in constant time so the
//! answer's timing does not leak it) and the bot (`X-Bot-Id`,
//! `[A-Za-z0-9._-]{1,64}`, default `default`).
//!
//! It only identifies the caller. It does not spend the bot's request budget
//! (`limits.rs`), refresh its session (`session.rs`) or decide which routes
//! need a key (the route table's handler kinds; `router.rs` applies them).

use warp::{Filter, Rejection};

/// An authenticated caller.
#[derive(Debug, Clone)]
pub(super) struct Caller {
    pub bot: String,
}

/// Why a caller was refused; each names the header to fix.
#[derive(Debug, thiserror::Error)]
pub(super) enum AuthError {
    #[error("X-API-Key header is required")]
    MissingKey,
    #[error("X-API-Key is wrong")]
    WrongKey,
    #[error("X-Bot-Id must be 1 to 64 of [A-Za-z0-9._-]")]
    BadBot,
}

/// The bot of requests without `X-Bot-Id`.
pub(super) const DEFAULT_BOT: &str = "default";

/// `X-API-Key` and `X-Bot-Id`, each optional; a value that is not visible
/// ASCII is a 400 naming the header (warp's `InvalidHeader`).
pub(super) fn credentials(
) -> impl Filter<Extract = (Option<String>, Option<String>), Error = Rejection> + Clone {
    warp::header::optional::<String>("x-api-key").and(warp::header::optional::<String>("x-bot-id"))
}

/// Constant-time equality, so response timing does not leak the key.
pub(super) fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether `key` opens a bridge whose key is `want` (no key: everything does).
pub(super) fn key_ok(want: Option<&str>, key: Option<&str>) -> bool {
    match want {
        None => true,
        Some(want) => key.is_some_and(|k| same(k.as_bytes(), want.as_bytes())),
    }
}

pub(super) fn valid_bot(b: &str) -> bool {
    (1..=64).contains(&b.len())
        && b.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

/// Checks the key against `want` and names the bot.
pub(super) fn identify(
    want: Option<&str>,
    key: Option<String>,
    bot: Option<String>,
) -> Result<Caller, AuthError> {
    if want.is_some() && !key_ok(want, key.as_deref()) {
        return Err(match key {
            None => AuthError::MissingKey,
            Some(_) => AuthError::WrongKey,
        });
    }
    let bot = bot.unwrap_or_else(|| DEFAULT_BOT.into());
    if !valid_bot(&bot) {
        return Err(AuthError::BadBot);
    }
    Ok(Caller { bot })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_compare_and_bot_ids() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd") && !same(b"abc", b"ab"));
        assert!(valid_bot("openclaw-7.a_b"));
        assert!(!valid_bot("") && !valid_bot("a b") && !valid_bot(&"x".repeat(65)));
    }

    #[test]
    fn keys_and_bots_are_checked_in_that_order() {
        let k = Some("k");
        assert!(matches!(
            identify(k, None, Some("a b".into())),
            Err(AuthError::MissingKey)
        ));
        assert!(matches!(
            identify(k, Some("x".into()), None),
            Err(AuthError::WrongKey)
        ));
        assert!(matches!(
            identify(k, Some("k".into()), Some("a b".into())),
            Err(AuthError::BadBot)
        ));
        assert_eq!(identify(k, Some("k".into()), None).unwrap().bot, "default");
        assert_eq!(identify(None, None, Some("b".into())).unwrap().bot, "b");
    }
}
