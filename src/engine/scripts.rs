//! The Lua scripts, one per atomic step (BullMQ's pattern), loaded once per process.
//!
//! Each script is `lua/common.lua` (key naming, server time, events, enqueue and
//! dead-letter helpers) followed by its own body; the ones that start or finish jobs
//! (`start`, `finish`, `finish_start`) also carry `lua/start_batch.lua` and
//! `lua/finish_batch.lua`, whose functions they share. `redis::Script` runs EVALSHA
//! and falls back to loading the script, so a restarted Redis with an empty
//! script cache needs nothing from us.

use redis::Script;

/// A script's source: `common.lua`, then its body.
macro_rules! source {
    ($file:literal) => {
        concat!(
            include_str!("lua/common.lua"),
            "\n",
            include_str!(concat!("lua/", $file))
        )
    };
}

/// A script that starts or finishes jobs: `common.lua`, `start_batch.lua`,
/// `finish_batch.lua` (their bodies as functions), its body.
macro_rules! worker_source {
    ($file:literal) => {
        concat!(
            include_str!("lua/common.lua"),
            "\n",
            include_str!("lua/start_batch.lua"),
            "\n",
            include_str!("lua/finish_batch.lua"),
            "\n",
            include_str!(concat!("lua/", $file))
        )
    };
}

/// A bot-session script of the bridge: `common.lua`, `session.lua`, its body.
macro_rules! session_source {
    ($file:literal) => {
        concat!(
            include_str!("lua/common.lua"),
            "\n",
            include_str!("lua/session.lua"),
            "\n",
            include_str!(concat!("lua/", $file))
        )
    };
}

/// Every script's name (its field in [`Scripts`]) and whole source. Also read by the ACL
/// rules (`acl.rs`), which allow each role the commands its scripts call.
pub const SOURCES: &[(&str, &str)] = &[
    ("enqueue", source!("enqueue.lua")),
    ("start", worker_source!("start.lua")),
    ("finish", worker_source!("finish.lua")),
    ("finish_start", worker_source!("finish_start.lua")),
    ("fail", source!("fail.lua")),
    ("bury_raw", source!("bury_raw.lua")),
    ("renew", source!("renew.lua")),
    ("handback", source!("handback.lua")),
    ("promote", source!("promote.lua")),
    ("cancel", source!("cancel.lua")),
    ("fan_out", source!("fan_out.lua")),
    ("requeue", source!("requeue.lua")),
    ("sem_acquire", source!("sem_acquire.lua")),
    ("sem_renew", source!("sem_renew.lua")),
    ("sem_release", source!("sem_release.lua")),
    ("cron_fire", source!("cron_fire.lua")),
    ("run_create", source!("run_create.lua")),
    ("run_advance", source!("run_advance.lua")),
    ("run_cancel", source!("run_cancel.lua")),
    ("run_keepalive", source!("run_keepalive.lua")),
    ("session_touch", session_source!("session_touch.lua")),
    ("session_put", session_source!("session_put.lua")),
    ("session_update", session_source!("session_update.lua")),
    ("session_clear", session_source!("session_clear.lua")),
    (
        "session_add_active",
        session_source!("session_add_active.lua"),
    ),
    ("principal_add", source!("principal_add.lua")),
    ("principal_revoke", source!("principal_revoke.lua")),
    ("registry_put", source!("registry_put.lua")),
    ("registry_delete", source!("registry_delete.lua")),
    ("fleet_lease", source!("fleet_lease.lua")),
    ("fleet_unlease", source!("fleet_unlease.lua")),
    ("fleet_account", source!("fleet_account.lua")),
    ("fleet_reserve", source!("fleet_reserve.lua")),
];

/// The source of the script called `name` (a [`SOURCES`] name).
pub fn source(name: &str) -> Option<&'static str> {
    SOURCES.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

fn script(name: &str) -> Script {
    Script::new(source(name).unwrap_or_else(|| panic!("no script {name} in SOURCES")))
}

/// Every queue, semaphore, cron, run, bot-session, principal, registry and fleet script.
pub struct Scripts {
    pub enqueue: Script,
    pub start: Script,
    pub finish: Script,
    pub finish_start: Script,
    pub fail: Script,
    pub bury_raw: Script,
    pub renew: Script,
    pub handback: Script,
    pub promote: Script,
    pub cancel: Script,
    pub fan_out: Script,
    pub requeue: Script,
    pub sem_acquire: Script,
    pub sem_renew: Script,
    pub sem_release: Script,
    pub cron_fire: Script,
    pub run_create: Script,
    pub run_advance: Script,
    pub run_cancel: Script,
    pub run_keepalive: Script,
    pub session_touch: Script,
    pub session_put: Script,
    pub session_update: Script,
    pub session_clear: Script,
    pub session_add_active: Script,
    pub principal_add: Script,
    pub principal_revoke: Script,
    pub registry_put: Script,
    pub registry_delete: Script,
    pub fleet_lease: Script,
    pub fleet_unlease: Script,
    pub fleet_account: Script,
    pub fleet_reserve: Script,
}

impl Scripts {
    pub fn new() -> Self {
        Self {
            enqueue: script("enqueue"),
            start: script("start"),
            finish: script("finish"),
            finish_start: script("finish_start"),
            fail: script("fail"),
            bury_raw: script("bury_raw"),
            renew: script("renew"),
            handback: script("handback"),
            promote: script("promote"),
            cancel: script("cancel"),
            fan_out: script("fan_out"),
            requeue: script("requeue"),
            sem_acquire: script("sem_acquire"),
            sem_renew: script("sem_renew"),
            sem_release: script("sem_release"),
            cron_fire: script("cron_fire"),
            run_create: script("run_create"),
            run_advance: script("run_advance"),
            run_cancel: script("run_cancel"),
            run_keepalive: script("run_keepalive"),
            session_touch: script("session_touch"),
            session_put: script("session_put"),
            session_update: script("session_update"),
            session_clear: script("session_clear"),
            session_add_active: script("session_add_active"),
            principal_add: script("principal_add"),
            principal_revoke: script("principal_revoke"),
            registry_put: script("registry_put"),
            registry_delete: script("registry_delete"),
            fleet_lease: script("fleet_lease"),
            fleet_unlease: script("fleet_unlease"),
            fleet_account: script("fleet_account"),
            fleet_reserve: script("fleet_reserve"),
        }
    }
}

impl Default for Scripts {
    fn default() -> Self {
        Self::new()
    }
}
