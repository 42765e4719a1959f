//! The Redis ACL users of one deployment: one user per role (worker, scheduler, bridge,
//! operator), each allowed only its deployment's keys (`{prefix}:*`, see [`crate::keys`]) and
//! only the commands its process sends. [`RULES`] is the one table of who may do what;
//! `synth-city ops redis-acl` prints [`acl_file`] for a deployment.
//!
//! Redis 7 checks every `redis.call` inside a Lua script against the calling user's rules
//! (command and key), so a role is also allowed the commands of the scripts it runs: they are
//! read from the scripts' own sources ([`lua_commands`] over [`crate::scripts::SOURCES`] and
//! the migrations), so a script that starts calling a new command grants it to exactly the
//! roles that run that script. The scripts build every key from the prefix, so every key they
//! touch matches the pattern.
//!
//! The scripts run as the functions of one library (`crate::scripts`): every role may FCALL
//! them, but only the operator may `FUNCTION LOAD` the library (`synth-city migrate` does,
//! and so does the operator's first call that finds it missing). A library's code runs with
//! the rights of whoever calls it, so a role that could load (REPLACE) it could plant code
//! that the operator's connections then run; the operator's rights already include every
//! other role's. The other roles call it once it is loaded, and where it is missing (a
//! Redis restarted without persistence before the next `migrate`) they fall back to the same
//! scripts by EVALSHA (`scripts.rs`), which is why every role keeps EVALSHA and SCRIPT LOAD.
//! The other FUNCTION subcommands (FLUSH, DELETE, RESTORE, KILL) are no role's.
//!
//! What it does not do: it talks to no Redis (the file is loaded by `redis-server --aclfile`
//! or `ACL LOAD`, which an administrator runs: no role here may), it generates no passwords
//! (the binary does), and no role gets FLUSHALL, FLUSHDB, CONFIG, KEYS, DEBUG, SHUTDOWN, ACL,
//! MONITOR or any other command outside its lists ([`NEVER`] is checked by the tests).

use std::collections::BTreeSet;

/// A process role that logs in as its own ACL user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Worker,
    Scheduler,
    Bridge,
    Operator,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Worker, Role::Scheduler, Role::Bridge, Role::Operator];

    /// The role's name, which is also its ACL user's name.
    pub fn name(self) -> &'static str {
        self.rules().name
    }

    /// The role called `s` (`worker`, `scheduler`, `bridge`, `operator`).
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.name() == s.trim())
    }

    /// This role's row of [`RULES`].
    pub fn rules(self) -> &'static RoleRules {
        RULES
            .iter()
            .find(|r| r.role == self)
            .expect("every role has a row in RULES")
    }
}

/// What one role may run.
#[derive(Debug)]
pub struct RoleRules {
    pub role: Role,
    pub name: &'static str,
    /// The commands its process sends itself (lower case; `command|subcommand` for one
    /// subcommand), besides [`CONNECTION`].
    pub commands: &'static [&'static str],
    /// The scripts ([`crate::scripts::SOURCES`] names, or [`ALL_SCRIPTS`]) it runs: their
    /// commands are allowed too.
    pub scripts: &'static [&'static str],
    /// Whether it applies migrations (`synth-city migrate`: EVAL of `migrations/*.lua`).
    pub migrates: bool,
}

/// What every role's connections send: the handshake (AUTH/HELLO, SELECT for a `/db` URL),
/// the pool's health check (UNWATCH + PING), server time, scripts (FCALL of the library's
/// functions; EVALSHA, and SCRIPT LOAD when Redis has not cached one yet, where the library
/// is missing and this role may not load it) and MULTI/EXEC pipelines. Not `CLIENT SETINFO`:
/// Redis 7.0 (Debian 12's) does not know it, an ACL file naming an unknown command does not
/// load, and our client does not send it (`config::RedisTls::client`).
pub const CONNECTION: &[&str] = &[
    "auth",
    "hello",
    "select",
    "ping",
    "unwatch",
    "time",
    "fcall",
    "evalsha",
    "script|load",
    "multi",
    "exec",
    "discard",
    // A Sentinel set: every new connection checks that it reached the primary (ROLE);
    // replica-acknowledged writes bump `{prefix}:ack_mark` and WAIT (`Queue::retrying_acked`).
    "role",
    "incr",
    "wait",
];

/// Commands no role may run, whatever the table says (checked by the tests).
pub const NEVER: &[&str] = &[
    "flushall",
    "flushdb",
    "config",
    "keys",
    "debug",
    "shutdown",
    "acl",
    "monitor",
    "save",
    "bgsave",
    "bgrewriteaof",
    "replicaof",
    "slaveof",
    "module",
    "migrate",
    "swapdb",
    "failover",
    "sync",
    "psync",
    "function|flush",
    "function|delete",
    "function|restore",
    "function|kill",
    "script|flush",
    "script|kill",
    "client|kill",
];

/// Who may do what: one row per role, with why.
pub const RULES: &[RoleRules] = &[
    // worker (`synth-city worker`): creates its types' consumer groups if missing (XGROUP
    // CREATE, idempotent: `migrate::ensure_groups`), reads its streams with XREADGROUP, takes
    // over stalled entries with XAUTOCLAIM, moves jobs only through the queue scripts (start,
    // finish, fail, bury, renew, hand back, promote delayed), keeps its heartbeat
    // (ZADD/HMSET/PEXPIRE, ZREM + DEL on exit), writes progress (HSET + XADD to events),
    // samples the fleet gauges for /metrics (XLEN, XPENDING, XRANGE, HGETALL, ZRANGE, GET),
    // and runs pipeline stages: the run scripts, the `pipeline` semaphore's scripts,
    // experiment records (HSET/ZADD) and the history and definition they read
    // (HGET/HGETALL/GET), and, when a stage job starts, its agent's definition and the run
    // bot's prompt modules on the registry (HGET/HGETALL). No EVAL: migrations are the
    // operator's.
    RoleRules {
        role: Role::Worker,
        name: "worker",
        commands: &[
            "xgroup|create",
            "xreadgroup",
            "xautoclaim",
            "xlen",
            "xpending",
            "xrange",
            "xadd",
            "hget",
            "hgetall",
            "hset",
            "hmset",
            "zadd",
            "zrem",
            "zrange",
            "pexpire",
            "del",
            "get",
        ],
        scripts: &[
            "enqueue",
            "start",
            "finish",
            "finish_start",
            "fail",
            "bury_raw",
            "renew",
            "handback",
            "promote",
            "cancel",
            "fan_out",
            "sem_acquire",
            "sem_renew",
            "sem_release",
            "run_create",
            "run_advance",
            "run_cancel",
            "run_keepalive",
        ],
        migrates: false,
    },
    // scheduler (`synth-city scheduler`): checks the schema version (HGET meta), finds due
    // schedules (ZRANGEBYSCORE cron:next, HGET/HGETALL cron:defs, ZSCORE), drops a schedule
    // whose definition is gone (ZREM), and fires each one through cron_fire, which enqueues.
    RoleRules {
        role: Role::Scheduler,
        name: "scheduler",
        commands: &["hget", "hgetall", "zscore", "zrangebyscore", "zrem"],
        scripts: &["cron_fire"],
        migrates: false,
    },
    // bridge (`synth-city bridge`): enqueues and cancels for bots (enqueue, cancel, the run
    // scripts), keeps bot sessions (session_* scripts; HGETALL/HLEN/SMEMBERS/TTL/EXISTS,
    // ZREVRANGE/ZREM of the bots index), reads status, stats, workers, runs, experiments and
    // the semaphore (HGET/HGETALL, XLEN/XPENDING/XRANGE, ZRANGE/ZREVRANGE/ZSCORE, GET), follows
    // the events stream for /events (XREAD), adds or removes schedules for bots (a
    // MULTI/EXEC of HSET/ZADD or HDEL/ZREM), and writes and removes authored components,
    // agent definitions and prompt modules (the registry scripts, one per shelf's keys;
    // HGET/HGETALL/GET to read them).
    RoleRules {
        role: Role::Bridge,
        name: "bridge",
        commands: &[
            "hget",
            "hgetall",
            "hlen",
            "hset",
            "hdel",
            "smembers",
            "ttl",
            "exists",
            "get",
            "xread",
            "xlen",
            "xpending",
            "xrange",
            "zadd",
            "zrange",
            "zrevrange",
            "zscore",
            "zrem",
        ],
        scripts: &[
            "enqueue",
            "cancel",
            "run_create",
            "run_cancel",
            "session_touch",
            "session_put",
            "session_update",
            "session_clear",
            "session_add_active",
            "registry_put",
            "registry_delete",
        ],
        migrates: false,
    },
    // operator (the CLI of a person: `migrate`, `jobs` incl. dead letters, `semaphore set`,
    // `schedule`, `pipeline-def set/reset`, `pipeline` (which runs the stages in its own
    // process unless --enqueue-only: every script), `runs`, `workers`): everything the
    // other roles read and write, plus migrations (EVAL of the migration files, XGROUP CREATE
    // for new job types, SET NX of the migration lock, HSET meta), the dead-letter stream's
    // requeue and clear (the requeue script, DEL), and SET of the semaphore's limit and the
    // pipeline definition, and loads the scripts' function library (FUNCTION LOAD, in
    // `migrate` and when a call finds it missing). Still no FLUSHALL/FLUSHDB/KEYS/CONFIG/ACL
    // and no other FUNCTION subcommand: only its prefix's keys.
    RoleRules {
        role: Role::Operator,
        name: "operator",
        commands: &[
            "eval",
            "function|load",
            "xgroup|create",
            "xreadgroup",
            "xautoclaim",
            "xread",
            "xlen",
            "xpending",
            "xrange",
            "xadd",
            "xdel",
            "get",
            "set",
            "del",
            "exists",
            "ttl",
            "pexpire",
            "hget",
            "hgetall",
            "hlen",
            "hset",
            "hmset",
            "hdel",
            "smembers",
            "zadd",
            "zrange",
            "zrevrange",
            "zrangebyscore",
            "zscore",
            "zrem",
        ],
        scripts: ALL_SCRIPTS,
        migrates: true,
    },
];

/// In [`RoleRules::scripts`]: every script of [`crate::scripts::SOURCES`].
pub const ALL_SCRIPTS: &[&str] = &["*"];

/// Commands whose ACL rule names a subcommand (`xgroup|create`).
const WITH_SUBCOMMANDS: &[&str] = &[
    "xgroup", "xinfo", "client", "script", "function", "object", "memory",
];

/// The commands a Lua source calls with `redis.call('NAME', ...)`, `redis.pcall('NAME', ...)`
/// or `pcall(redis.call, 'NAME', ...)`, lower case, with the subcommand for the commands
/// that have them. Returns the calls whose name is not a string literal as `Err`, since
/// their command cannot be known here.
pub fn lua_commands(src: &str) -> Result<BTreeSet<String>, String> {
    let mut out = BTreeSet::new();
    for marker in ["redis.call(", "redis.pcall(", "pcall(redis.call,"] {
        let mut rest = src;
        while let Some(i) = rest.find(marker) {
            // `pcall(redis.call, ...)` also contains `redis.call,`, not `redis.call(`; and
            // `redis.pcall(` contains `pcall(` only as `.pcall(`: the markers do not overlap.
            rest = &rest[i + marker.len()..];
            let (name, after) = literal(rest).ok_or_else(|| {
                let line: String = rest.chars().take(40).collect();
                format!("{marker}{line}: the command is not a string literal")
            })?;
            let name = name.to_ascii_lowercase();
            if WITH_SUBCOMMANDS.contains(&name.as_str()) {
                let after = after.trim_start().strip_prefix(',').unwrap_or(after);
                match literal(after) {
                    Some((sub, _)) => out.insert(format!("{name}|{}", sub.to_ascii_lowercase())),
                    None => return Err(format!("{name} without a literal subcommand")),
                };
            } else {
                out.insert(name);
            }
        }
    }
    Ok(out)
}

/// A quoted string at the start of `s` (after spaces), and what follows it.
fn literal(s: &str) -> Option<(&str, &str)> {
    let s = s.trim_start();
    let q = s.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    let body = &s[1..];
    let end = body.find(q)?;
    Some((&body[..end], &body[end + 1..]))
}

/// Every command `role` may run: [`CONNECTION`], its own commands, and those of its scripts
/// (and of the migrations, for the operator).
pub fn commands(role: Role) -> BTreeSet<String> {
    let rules = role.rules();
    let mut out: BTreeSet<String> = CONNECTION
        .iter()
        .chain(rules.commands)
        .map(|c| c.to_string())
        .collect();
    for (name, src) in crate::scripts::SOURCES {
        if rules.scripts == ALL_SCRIPTS || rules.scripts.contains(name) {
            out.extend(lua_commands(src).expect("the scripts call literal commands"));
        }
    }
    if rules.migrates {
        for m in crate::migrate::MIGRATIONS {
            out.extend(lua_commands(m.lua).expect("the migrations call literal commands"));
        }
    }
    out
}

/// The key pattern of a deployment: every key under its hash-tagged prefix.
pub fn key_pattern(prefix: &str) -> String {
    format!("~{{{prefix}}}:*")
}

/// How a user's password is written in the ACL file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Password {
    /// `>password`: the password itself.
    Plain(String),
    /// `#<sha256 hex>`: only its SHA-256, so the file does not hold the password.
    Sha256Hex(String),
}

/// One `user ...` line of the ACL file for `role` in the deployment `prefix`, named `name`.
pub fn user_line(name: &str, role: Role, prefix: &str, password: &Password) -> String {
    let pass = match password {
        Password::Plain(p) => format!(">{p}"),
        Password::Sha256Hex(h) => format!("#{h}"),
    };
    let cmds: Vec<String> = commands(role)
        .into_iter()
        .map(|c| format!("+{c}"))
        .collect();
    format!(
        "user {name} reset on {pass} {} resetchannels -@all {}",
        key_pattern(prefix),
        cmds.join(" ")
    )
}

/// The ACL file of one deployment: `user default off` unless `keep_default` (an
/// unauthenticated connection could otherwise do anything), and one line per user. Nothing
/// else: an ACL file has no comments.
pub fn acl_file(prefix: &str, users: &[(String, Role, Password)], keep_default: bool) -> String {
    let mut out = String::new();
    if !keep_default {
        out.push_str("user default off resetkeys resetchannels -@all\n");
    }
    for (name, role, pass) in users {
        out.push_str(&user_line(name, *role, prefix, pass));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_role_gets_a_forbidden_command() {
        for role in Role::ALL {
            let cmds = commands(role);
            for bad in NEVER {
                assert!(!cmds.contains(*bad), "{role:?} may run {bad}");
                let prefix = format!("{bad}|");
                assert!(
                    !cmds.iter().any(|c| c.starts_with(&prefix)),
                    "{role:?} may run a subcommand of {bad}"
                );
            }
        }
    }

    #[test]
    fn every_script_is_read_and_every_call_is_literal() {
        for (name, src) in crate::scripts::SOURCES {
            let cmds = lua_commands(src).unwrap_or_else(|e| panic!("{name}: {e}"));
            // Every `redis.call(` in the source was read.
            assert!(
                cmds.contains("time"),
                "{name}: common.lua's TIME is missing: {cmds:?}"
            );
        }
        let m = lua_commands(crate::migrate::MIGRATIONS[0].lua).unwrap();
        assert!(m.contains("xgroup|create"), "{m:?}");
        assert!(lua_commands("redis.call(cmd, 'x')").is_err());
    }

    #[test]
    fn every_script_a_role_names_exists() {
        for r in RULES {
            for name in r.scripts.iter().filter(|_| r.scripts != ALL_SCRIPTS) {
                assert!(
                    crate::scripts::source(name).is_some(),
                    "{:?}: {name}",
                    r.role
                );
            }
        }
    }

    #[test]
    fn roles_get_what_their_scripts_call_and_no_more_than_the_operator() {
        let worker = commands(Role::Worker);
        for c in [
            "xreadgroup",
            "xautoclaim",
            "xclaim",
            "xack",
            "evalsha",
            "script|load",
        ] {
            assert!(worker.contains(c), "worker lacks {c}");
        }
        assert!(!worker.contains("eval") && !worker.contains("xgroup|destroy"));
        assert!(!commands(Role::Scheduler).contains("xreadgroup"));
        let operator = commands(Role::Operator);
        for role in Role::ALL {
            let extra: Vec<_> = commands(role).difference(&operator).cloned().collect();
            assert!(
                extra.is_empty(),
                "{role:?} may run {extra:?}, the operator not"
            );
        }
    }

    #[test]
    fn every_role_calls_the_library_and_only_the_operator_loads_it() {
        for role in Role::ALL {
            let cmds = commands(role);
            assert!(cmds.contains("fcall"), "{role:?} may not FCALL");
            assert!(cmds.contains("evalsha"), "{role:?} has no fallback");
            assert_eq!(
                cmds.contains("function|load"),
                role == Role::Operator,
                "{role:?}"
            );
        }
    }

    #[test]
    fn the_file_names_the_prefix_and_disables_default() {
        let f = acl_file(
            "prod",
            &[(
                "worker".into(),
                Role::Worker,
                Password::Sha256Hex("ab".repeat(32)),
            )],
            false,
        );
        assert!(f.contains("user default off"), "{f}");
        let line = f.lines().find(|l| l.starts_with("user worker ")).unwrap();
        assert!(line.contains(" ~{prod}:* "), "{line}");
        assert!(line.contains(&format!(" #{} ", "ab".repeat(32))), "{line}");
        assert!(
            line.contains(" -@all ") && line.contains(" +xreadgroup"),
            "{line}"
        );
        assert_eq!(Role::parse("bridge"), Some(Role::Bridge));
        assert_eq!(Role::parse("admin"), None);
    }
}
