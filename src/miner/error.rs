//! What the miner's error types share. Each module has its own `thiserror` enum, whose message
//! says what is wrong and, where the operator can act, how to fix it: [`super::model::ModelError`],
//! [`super::spot::SpotError`], [`super::auth::HeaderError`] and [`super::auth::AuthError`],
//! [`super::metagraph::MetagraphError`], [`super::metagraph::Blacklisted`],
//! [`super::hotkey::KeyError`], [`super::nonces::NonceFileError`] (and [`super::StartError`],
//! what `Miner::new` may fail with). Where a message reaches a caller (a 4xx or 503 body), it is the
//! text the axon has always sent.
//!
//! This module defines no errors itself and maps none to an HTTP status ([`super::server`]
//! and [`super::answer`] do).

use std::fmt::Display;

/// An error read as its message: what a log line, an HTTP body or a test looks for in it.
pub trait ErrorText: Display {
    /// Whether the message mentions `needle`.
    fn contains(&self, needle: &str) -> bool {
        self.to_string().contains(needle)
    }

    /// Whether the message begins with `prefix`.
    fn starts_with(&self, prefix: &str) -> bool {
        self.to_string().starts_with(prefix)
    }
}
