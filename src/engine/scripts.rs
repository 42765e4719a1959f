//! The Lua scripts, one per atomic step (BullMQ's pattern), run as the functions of one
//! Redis Functions library that is loaded once and called by FCALL.
//!
//! Each script is a body in `lua/<name>.lua` that runs after a prelude: `lua/common.lua`
//! (key naming, server time, events, enqueue and dead-letter helpers), plus
//! `lua/start_batch.lua` and `lua/finish_batch.lua` for the scripts that start or finish
//! jobs (`start`, `finish`, `finish_start`), plus `lua/session.lua` for the bot-session
//! scripts. [`LIBRARY`] is every prelude once, at the top level, then each body wrapped as
//! `redis.register_function{function_name = 'sc<hash>_<name>', callback = function(KEYS,
//! ARGV) ... end}`, so Redis compiles the helpers once per load instead of re-defining
//! them on every call (an EVALSHA re-runs its whole chunk). The library is named
//! `synth_city_<hash>` and every function carries the hash: `<hash>` is 12 hex digits of the
//! SHA-256 of the library's whole source (with a placeholder where the hash goes), so two
//! versions of the binary on one Redis (a rolling
//! upgrade) each call their own functions (function names are global across libraries).
//!
//! Loading: a [`FunctionInvocation`] sends FCALL; when Redis answers that the function does
//! not exist (first use, a restarted Redis without persistence, a FUNCTION FLUSH), it sends
//! `FUNCTION LOAD REPLACE` and retries once, as `redis::Script` does with EVALSHA and
//! NOSCRIPT. `synth-city migrate` (the operator) loads it too. Where this connection may not
//! load it (an ACL role other than the operator: see `acl.rs`) or Redis has no functions
//! (before 7.0), the call runs as a plain script instead ([`SOURCES`]: prelude + body, by
//! EVALSHA), and so do the calls of the same [`Scripts`] (one per queue handle and its
//! clones) for the next minute, after which FCALL is tried again.
//!
//! No function declares flags: every script writes (so none is `no-writes`), none must run
//! under OOM or on a stale replica, and scripts that read TIME and then write need nothing
//! in Redis 7, where a function's effects are what is replicated.
//!
//! What it does not do: it holds no connection and no per-connection state, and it loads
//! nothing at start-up by itself.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::aio::ConnectionLike;
use redis::{FromRedisValue, RedisError, RedisResult, Script, ToRedisArgs};
use sha2::{Digest, Sha256};

/// The prelude a body runs after as a plain script: `Common` is `common.lua` alone, `Worker`
/// adds `start_batch.lua` and `finish_batch.lua` (the worker scripts), `Session` adds
/// `session.lua` (the bridge's bot-session scripts). The library holds them all, once.
macro_rules! prelude {
    (Common) => {
        include_str!("lua/common.lua")
    };
    (Worker) => {
        concat!(
            include_str!("lua/common.lua"),
            "\n",
            include_str!("lua/start_batch.lua"),
            "\n",
            include_str!("lua/finish_batch.lua")
        )
    };
    (Session) => {
        concat!(
            include_str!("lua/common.lua"),
            "\n",
            include_str!("lua/session.lua")
        )
    };
}

/// Lists every script once: its name (a field of [`Scripts`]), its prelude and, from
/// `lua/<name>.lua`, its body. Generates [`SOURCES`], [`BODIES`] and [`Scripts`].
macro_rules! scripts {
    ($($name:ident: $prelude:ident),* $(,)?) => {
        /// Every script's name (its field in [`Scripts`]) and whole source as a plain
        /// script: its prelude, then its body. Also read by the ACL rules (`acl.rs`), which
        /// allow each role the commands its scripts call.
        pub const SOURCES: &[(&str, &str)] = &[$((
            stringify!($name),
            concat!(prelude!($prelude), "\n", include_str!(concat!("lua/", stringify!($name), ".lua"))),
        )),*];

        /// Every script's name and body alone (the library wraps each body).
        pub const BODIES: &[(&str, &str)] = &[$((
            stringify!($name),
            include_str!(concat!("lua/", stringify!($name), ".lua")),
        )),*];

        /// Every queue, semaphore, cron, run, bot-session, principal, registry and fleet
        /// script, as a function of [`LIBRARY`].
        pub struct Scripts {
            $(pub $name: Function,)*
        }

        impl Scripts {
            pub fn new() -> Self {
                let fallback = Arc::new(Fallback::default());
                Self {
                    $($name: Function::new(stringify!($name), &fallback),)*
                }
            }
        }
    };
}

scripts! {
    enqueue: Common,
    start: Worker,
    finish: Worker,
    finish_start: Worker,
    fail: Common,
    bury_raw: Common,
    renew: Common,
    handback: Common,
    promote: Common,
    cancel: Common,
    fan_out: Common,
    requeue: Common,
    sem_acquire: Common,
    sem_renew: Common,
    sem_release: Common,
    cron_fire: Common,
    run_create: Common,
    run_advance: Common,
    run_cancel: Common,
    run_keepalive: Common,
    session_touch: Session,
    session_put: Session,
    session_update: Session,
    session_clear: Session,
    session_add_active: Session,
    principal_add: Common,
    principal_revoke: Common,
    registry_put: Common,
    registry_delete: Common,
    fleet_lease: Common,
    fleet_unlease: Common,
    fleet_account: Common,
    fleet_reserve: Common,
}

/// The source of the script called `name` (a [`SOURCES`] name), as a plain script.
pub fn source(name: &str) -> Option<&'static str> {
    SOURCES.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

/// Stands for the hash in [`library_source`]'s template.
const HASH_MARK: &str = "@HASH@";

/// The library's source with `hash` as its hash: every prelude once, then every body as a
/// registered function. [`LIBRARY`] is this with the hash of the template itself (the
/// source with [`HASH_MARK`]); the tests load it under another hash too.
pub fn library_source(hash: &str) -> String {
    let mut out = format!("#!lua name=synth_city_{HASH_MARK}\n");
    // common.lua's top level reads the prefix from ARGV[1] (as a plain script); a library
    // has no ARGV while it loads, and each function sets the prefix from its own.
    out.push_str("local ARGV = {''}\n");
    out.push_str(prelude!(Worker));
    out.push('\n');
    out.push_str(include_str!("lua/session.lua"));
    out.push('\n');
    for (name, body) in BODIES {
        out.push_str(&format!(
            "redis.register_function{{function_name = 'sc{HASH_MARK}_{name}', \
             callback = function(KEYS, ARGV)\nset_prefix(ARGV[1])\n{body}\nend}}\n"
        ));
    }
    out.replace(HASH_MARK, hash)
}

/// The loaded library: its name, hash and source.
#[derive(Debug)]
pub struct Library {
    /// `synth_city_<hash>`.
    pub name: String,
    /// 12 hex digits of the SHA-256 of the library's template.
    pub hash: String,
    /// What `FUNCTION LOAD` is sent.
    pub source: String,
}

impl Library {
    /// The name of script `name`'s function: `sc<hash>_<name>`.
    pub fn function(&self, name: &str) -> String {
        format!("sc{}_{name}", self.hash)
    }
}

/// This build's library.
pub static LIBRARY: LazyLock<Library> = LazyLock::new(|| {
    let template = library_source(HASH_MARK);
    let hash = hex::encode(Sha256::digest(template.as_bytes()))[..12].to_string();
    Library {
        name: format!("synth_city_{hash}"),
        source: library_source(&hash),
        hash,
    }
});

/// Loads (or replaces) [`LIBRARY`] on the Redis behind `con`.
pub async fn load_library(con: &mut impl ConnectionLike) -> RedisResult<()> {
    let _: String = redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg("REPLACE")
        .arg(&LIBRARY.source)
        .query_async(con)
        .await?;
    Ok(())
}

/// How long calls run as plain scripts after the library could not be loaded.
const FALLBACK_FOR: Duration = Duration::from_secs(60);

/// Until when (ms since the epoch) this process's calls run as plain scripts.
#[derive(Debug, Default)]
struct Fallback {
    until_ms: AtomicU64,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

impl Fallback {
    fn active(&self) -> bool {
        now_ms() < self.until_ms.load(Ordering::Relaxed)
    }

    fn start(&self) {
        let until = now_ms() + FALLBACK_FOR.as_millis() as u64;
        self.until_ms.store(until, Ordering::Relaxed);
    }
}

/// Redis's answer to an FCALL of a function no library defines.
fn function_missing(e: &RedisError) -> bool {
    e.detail()
        .is_some_and(|d| d.starts_with("Function not found"))
}

/// A refusal that a plain script avoids: this user may not run FCALL or FUNCTION LOAD
/// (NOPERM), or Redis has no functions (before 7.0: an unknown command).
pub(crate) fn functions_refused(e: &RedisError) -> bool {
    e.code() == Some("NOPERM")
        || e.detail()
            .is_some_and(|d| d.starts_with("unknown command") || d.contains("no permission"))
}

/// One script: its function in [`LIBRARY`], and the same script as a plain one for the
/// fallback.
pub struct Function {
    function: String,
    script: Script,
    fallback: Arc<Fallback>,
}

impl Function {
    fn new(name: &str, fallback: &Arc<Fallback>) -> Self {
        Self {
            function: LIBRARY.function(name),
            script: Script::new(
                source(name).unwrap_or_else(|| panic!("no script {name} in SOURCES")),
            ),
            fallback: fallback.clone(),
        }
    }

    /// The function's name in Redis (`sc<hash>_<name>`).
    pub fn name(&self) -> &str {
        &self.function
    }

    /// An invocation with no keys or arguments yet.
    pub fn prepare_invoke(&self) -> FunctionInvocation<'_> {
        FunctionInvocation {
            function: self,
            keys: Vec::new(),
            args: Vec::new(),
        }
    }

    /// An invocation with `key` as its first key.
    pub fn key<T: ToRedisArgs>(&self, key: T) -> FunctionInvocation<'_> {
        let mut inv = self.prepare_invoke();
        inv.key(key);
        inv
    }

    /// An invocation with `arg` as its first argument.
    pub fn arg<T: ToRedisArgs>(&self, arg: T) -> FunctionInvocation<'_> {
        let mut inv = self.prepare_invoke();
        inv.arg(arg);
        inv
    }
}

/// The keys and arguments of one call of a [`Function`] (`KEYS` and `ARGV` in its body).
pub struct FunctionInvocation<'a> {
    function: &'a Function,
    keys: Vec<Vec<u8>>,
    args: Vec<Vec<u8>>,
}

impl FunctionInvocation<'_> {
    /// Adds an argument (`ARGV[i]`).
    pub fn arg<T: ToRedisArgs>(&mut self, arg: T) -> &mut Self {
        arg.write_redis_args(&mut self.args);
        self
    }

    /// Adds a key (`KEYS[i]`).
    pub fn key<T: ToRedisArgs>(&mut self, key: T) -> &mut Self {
        key.write_redis_args(&mut self.keys);
        self
    }

    fn fcall(&self) -> redis::Cmd {
        let mut cmd = redis::cmd("FCALL");
        cmd.arg(&self.function.function)
            .arg(self.keys.len())
            .arg(&*self.keys)
            .arg(&*self.args);
        cmd
    }

    /// The same call as a plain script (EVALSHA, loaded on NOSCRIPT).
    async fn eval<T: FromRedisValue>(&self, con: &mut impl ConnectionLike) -> RedisResult<T> {
        let mut inv = self.function.script.prepare_invoke();
        inv.key(&*self.keys).arg(&*self.args);
        inv.invoke_async(con).await
    }

    /// Calls the function; loads the library and retries once if Redis does not have it;
    /// runs the call as a plain script where functions are refused (see the module's doc).
    pub async fn invoke_async<T: FromRedisValue>(
        &self,
        con: &mut impl ConnectionLike,
    ) -> RedisResult<T> {
        let fallback = &self.function.fallback;
        if fallback.active() {
            return self.eval(con).await;
        }
        let cmd = self.fcall();
        let err = match cmd.query_async(con).await {
            Err(e) if function_missing(&e) => match load_library(con).await {
                Ok(()) => return cmd.query_async(con).await,
                Err(e) => e,
            },
            Err(e) => e,
            ok => return ok,
        };
        if !functions_refused(&err) {
            return Err(err);
        }
        tracing::warn!(
            library = %LIBRARY.name,
            "the scripts' function library cannot be called or loaded here ({err}): running them \
             as plain scripts for {}s (`synth-city migrate` loads it)",
            FALLBACK_FOR.as_secs()
        );
        fallback.start();
        self.eval(con).await
    }
}

impl Default for Scripts {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_library_names_every_function_with_its_hash() {
        let lib = &*LIBRARY;
        assert_eq!(lib.hash.len(), 12);
        assert!(lib
            .source
            .starts_with(&format!("#!lua name={}\n", lib.name)));
        assert!(!lib.source.contains(HASH_MARK));
        for (name, _) in BODIES {
            let f = format!("function_name = '{}',", lib.function(name));
            assert_eq!(lib.source.matches(&f).count(), 1, "{f}");
        }
        // Each prelude once.
        assert_eq!(lib.source.matches("local function set_prefix(").count(), 1);
        assert_ne!(library_source("000000000000"), lib.source);
    }
}
