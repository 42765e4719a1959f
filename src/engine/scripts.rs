//! The Lua scripts, one per atomic step (BullMQ's pattern), loaded once per process.
//!
//! Each script is `lua/common.lua` (key naming, server time, events, enqueue and
//! dead-letter helpers) followed by its own body. `redis::Script` runs EVALSHA
//! and falls back to loading the script, so a restarted Redis with an empty
//! script cache needs nothing from us.

use redis::Script;

macro_rules! script {
    ($file:literal) => {
        Script::new(concat!(
            include_str!("lua/common.lua"),
            "\n",
            include_str!(concat!("lua/", $file))
        ))
    };
}

/// A bot-session script of the bridge: `common.lua`, `session.lua`, its body.
macro_rules! session_script {
    ($file:literal) => {
        Script::new(concat!(
            include_str!("lua/common.lua"),
            "\n",
            include_str!("lua/session.lua"),
            "\n",
            include_str!(concat!("lua/", $file))
        ))
    };
}

/// Every queue, semaphore, cron, run and bot-session script.
pub struct Scripts {
    pub enqueue: Script,
    pub start: Script,
    pub finish: Script,
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
}

impl Scripts {
    pub fn new() -> Self {
        Self {
            enqueue: script!("enqueue.lua"),
            start: script!("start.lua"),
            finish: script!("finish.lua"),
            fail: script!("fail.lua"),
            bury_raw: script!("bury_raw.lua"),
            renew: script!("renew.lua"),
            handback: script!("handback.lua"),
            promote: script!("promote.lua"),
            cancel: script!("cancel.lua"),
            fan_out: script!("fan_out.lua"),
            requeue: script!("requeue.lua"),
            sem_acquire: script!("sem_acquire.lua"),
            sem_renew: script!("sem_renew.lua"),
            sem_release: script!("sem_release.lua"),
            cron_fire: script!("cron_fire.lua"),
            run_create: script!("run_create.lua"),
            run_advance: script!("run_advance.lua"),
            run_cancel: script!("run_cancel.lua"),
            run_keepalive: script!("run_keepalive.lua"),
            session_touch: session_script!("session_touch.lua"),
            session_put: session_script!("session_put.lua"),
            session_update: session_script!("session_update.lua"),
            session_clear: session_script!("session_clear.lua"),
            session_add_active: session_script!("session_add_active.lua"),
        }
    }
}

impl Default for Scripts {
    fn default() -> Self {
        Self::new()
    }
}
