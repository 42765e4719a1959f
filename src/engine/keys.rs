//! The Redis key layout, in one place. The Lua scripts build the same names with
//! `key(...)` in `lua/common.lua`; change both together (and add a migration).
//!
//! Every key is `{prefix}:...`: the braces make the prefix a hash tag, so one
//! deployment's keys share a cluster slot and any script may touch any of them.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `q:<type>` | stream, group `workers` | waiting and in-flight jobs of one type |
//! | `job:<id>` | hash | status record: state, attempt, env, result, error, progress, times; `failed_by`/`fanned_by`: the fencing token of the last `fail.lua`/`fan_out.lua` call (its retry recognises itself) |
//! | `job:<id>:pending`, `job:<id>:children` | set, hash | a flow parent's children without an outcome; each child's outcome (JSON) — a child's `job:<id>` names its `parent`, and so does its envelope |
//! | `delayed` | zset id -> ready ms | retries and delayed jobs |
//! | `idem:<type>:<bot>:<key>` | string | idempotency key -> job id (scoped per bot) |
//! | `dlq` | stream | dead letters with their reason; `by`: the fencing token of the worker call that wrote it, when one did |
//! | `events` | stream (capped) | job and permit events for live views |
//! | `kept:<completed\|dead>:<type>` | zset id -> finish ms | finished records under a retention count (`config::Keep`), trimmed in `finish.lua`/`finish_start.lua`/`fail.lua`/`start.lua` |
//! | `stats:<type>` | hash | counters: enqueued, completed, failed, retried, dead, ...; `delayed_now` (a gauge) |
//! | `workers`, `worker:<id>` | zset, hash | heartbeats and what each worker runs |
//! | `sem:<name>:*` | zset/hash/string | semaphore holders, line, fences, limit |
//! | `cron:defs`, `cron:next`, `cron:last` | hash, zset, hash | schedules |
//! | `run:<id>`, `runs` | hash, zset | pipeline run record (state, stage, attempt, task, summary); runs by creation |
//! | `experiments`, `experiments:by_crps` | hash, zset | experiment records by fingerprint; ranking |
//! | `bot:<bot>:session`, `bot:<bot>:experiments`, `bot:<bot>:active`, `bots` | hash, hash, set, zset | a bridge bot's session, its experiments, its work in flight; bots by last activity |
//! | `principals`, `principals:keys` | hash, hash | bridge principals: bot -> its key record (role, the key's SHA-256, created); key SHA-256 -> `{bot, role}` (`principals.rs`) |
//! | `pipeline:def` | string | the pipeline definition and meta-strategy (JSON); absent = the default |
//! | `meta` | hash | `schema_version` |
//! | `ack_mark` | string (counter) | written after each replica-acknowledged write, so its `WAIT` covers earlier tries (`Queue::retrying_acked`) |

/// The consumer group every job stream uses.
pub const GROUP: &str = "workers";

/// Builds key names under one prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn k(&self, rest: &str) -> String {
        format!("{{{}}}:{rest}", self.prefix)
    }

    pub fn stream(&self, job_type: &str) -> String {
        self.k(&format!("q:{job_type}"))
    }
    pub fn job(&self, id: &str) -> String {
        self.k(&format!("job:{id}"))
    }
    /// A flow parent's children's outcomes.
    pub fn children(&self, id: &str) -> String {
        self.k(&format!("job:{id}:children"))
    }
    /// A flow parent's children that have no outcome yet.
    pub fn pending(&self, id: &str) -> String {
        self.k(&format!("job:{id}:pending"))
    }
    pub fn delayed(&self) -> String {
        self.k("delayed")
    }
    pub fn dlq(&self) -> String {
        self.k("dlq")
    }
    pub fn events(&self) -> String {
        self.k("events")
    }
    /// The finished records of `job_type` in state `class` (`completed`, `dead`) kept under a
    /// retention count, by finish time.
    pub fn kept(&self, class: &str, job_type: &str) -> String {
        self.k(&format!("kept:{class}:{job_type}"))
    }
    pub fn stats(&self, job_type: &str) -> String {
        self.k(&format!("stats:{job_type}"))
    }
    pub fn workers(&self) -> String {
        self.k("workers")
    }
    pub fn worker(&self, id: &str) -> String {
        self.k(&format!("worker:{id}"))
    }
    /// The GPU pod autoscaler's keys (`fleet:leader`, `fleet:pods`, `fleet:spend:...`,
    /// `fleet:status`; the binary's `fleet` module).
    pub fn fleet(&self, part: &str) -> String {
        self.k(&format!("fleet:{part}"))
    }
    pub fn meta(&self) -> String {
        self.k("meta")
    }
    /// The counter a replica-acknowledged write increments before its `WAIT`.
    pub fn ack_mark(&self) -> String {
        self.k("ack_mark")
    }
    pub fn sem(&self, name: &str, part: &str) -> String {
        self.k(&format!("sem:{name}:{part}"))
    }
    pub fn cron(&self, part: &str) -> String {
        self.k(&format!("cron:{part}"))
    }
    pub fn run(&self, id: &str) -> String {
        self.k(&format!("run:{id}"))
    }
    pub fn runs(&self) -> String {
        self.k("runs")
    }
    pub fn experiments(&self) -> String {
        self.k("experiments")
    }
    /// One part (`session`, `experiments`, `active`) of a bridge bot's session.
    pub fn bot(&self, bot: &str, part: &str) -> String {
        self.k(&format!("bot:{bot}:{part}"))
    }
    /// Bridge bots by last activity.
    pub fn bots(&self) -> String {
        self.k("bots")
    }
    /// Bridge principals by bot (`part` empty) or by key hash (`part` = `keys`).
    pub fn principals(&self, part: &str) -> String {
        if part.is_empty() {
            self.k("principals")
        } else {
            self.k(&format!("principals:{part}"))
        }
    }
    /// The pipeline definition and meta-strategy (one JSON document).
    pub fn pipeline_def(&self) -> String {
        self.k("pipeline:def")
    }
    pub fn experiments_by_crps(&self) -> String {
        self.k("experiments:by_crps")
    }
    /// The registry of authored documents: `components` (name -> record), `owners` (name ->
    /// bot), `version` (bumped on every change); the same for agents (`agents`,
    /// `agents:owners`, `agents:version`) and prompt modules (`prompts`, ...).
    pub fn registry(&self, part: &str) -> String {
        self.k(&format!("registry:{part}"))
    }
    pub fn lock(&self, name: &str) -> String {
        self.k(&format!("lock:{name}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_the_hash_tag() {
        let k = Keys::new("t1");
        assert_eq!(k.stream("sleep"), "{t1}:q:sleep");
        assert_eq!(k.job("abc"), "{t1}:job:abc");
        assert_eq!(k.sem("pipeline", "holders"), "{t1}:sem:pipeline:holders");
    }
}
