//! The `synth-city` binary's library: the run state machine ([`pipeline`]), the HTTP bridge
//! for bots ([`bridge`]) and the connection limits it is served under ([`http_server`]), the SN50 miner ([`miner`]), GPU trainer pods on Basilica ([`basilica`], the client; [`fleet`], the autoscaler), authored components in the registry ([`registry`]), authored agents and prompt modules ([`agent_defs`]), the command line ([`cli`]) and the
//! settings it reads from its environment ([`settings`]).
//!
//! The queue core is the `engine` crate; job types are the `jobs` crate; the work itself is
//! done by the role crates under `workers/` (trainer, scorer, agents, publisher) and the SN50
//! rules by `sn50`. This crate wires them together; see ARCHITECTURE.md.

#![recursion_limit = "512"]

pub mod agent_defs;
pub mod basilica;
pub mod bridge;
pub mod cli;
pub mod fleet;
pub mod handlers;
pub mod http_server;
pub mod miner;
pub mod pipeline;
pub mod registry;
pub mod settings;
