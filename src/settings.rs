//! Settings: every value synth-city reads from its environment, declared once in [`TABLE`]
//! (name, default, secret or not, which component reads it, one line of description), and
//! resolved once at start-up by [`Settings::load`].
//!
//! Precedence, lowest first: the built-in default, the config file (`synth-city.toml` in the
//! working directory, or the file named by `--config FILE` / `SYNTH_CITY_CONFIG`; a TOML table
//! whose keys are the variable names), a `.env` file in the working directory, the process
//! environment, and command-line flags. The binary then calls [`Settings::export`] before any
//! thread starts, so that the values that came from the file or `.env` are in the process
//! environment: clap's `env = ...` attributes and every component's own `from_env()` see the
//! resolved values, and flags still win because clap applies them last.
//!
//! What it does NOT do: it does not parse or validate the values themselves (each component
//! still reads and checks its own variables, so their error messages stay where they are);
//! it does not export defaults (the components apply their own, which [`TABLE`] mirrors and
//! the tests compare); it never overwrites a variable the process environment already sets;
//! it does not look for `.env` or the config file in parent directories; and it leaves the
//! operating system's variables (`HOME`, `PATH`, ...) alone, as they are not synth-city's.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The config file read from the working directory when neither `--config` nor
/// `SYNTH_CITY_CONFIG` names one.
pub const CONFIG_FILE: &str = "synth-city.toml";
/// The `.env` file, in the working directory.
pub const DOTENV_FILE: &str = ".env";
/// The variable (and `--config` the flag) naming the config file.
pub const CONFIG_VAR: &str = "SYNTH_CITY_CONFIG";

/// One setting: an environment variable synth-city reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    pub name: &'static str,
    /// The value the component uses when nothing sets it (`None`: the component does without,
    /// or derives one, as `about` says).
    pub default: Option<&'static str>,
    /// Never printed in full (see [`shown`]).
    pub secret: bool,
    /// The component that reads it.
    pub used_by: &'static str,
    /// The command-line flag that overrides it, where there is one.
    pub flag: Option<&'static str>,
    pub about: &'static str,
}

const fn var(name: &'static str, used_by: &'static str, about: &'static str) -> Setting {
    Setting {
        name,
        default: None,
        secret: false,
        used_by,
        flag: None,
        about,
    }
}

impl Setting {
    const fn or(mut self, default: &'static str) -> Self {
        self.default = Some(default);
        self
    }
    const fn secret(mut self) -> Self {
        self.secret = true;
        self
    }
    const fn flag(mut self, flag: &'static str) -> Self {
        self.flag = Some(flag);
        self
    }
}

/// Every setting, grouped by the component that reads it.
pub const TABLE: &[Setting] = &[
    var(CONFIG_VAR, "settings", "the TOML config file of settings")
        .or(CONFIG_FILE)
        .flag("--config"),
    var(
        "RUST_LOG",
        "logging",
        "log filter (tracing-subscriber syntax)",
    )
    .or("info"),
    var("REDIS_URL", "queue", "where Redis is")
        .or(engine::config::DEFAULT_REDIS_URL)
        .flag("--redis-url"),
    var(
        "SYNTH_CITY_PREFIX",
        "queue",
        "key prefix of this deployment",
    )
    .or(engine::config::DEFAULT_PREFIX)
    .flag("--prefix"),
    var(
        engine::config::ENV_JOB_RETENTION,
        "queue",
        "seconds a finished job's record (state, result, error) stays readable (1M jobs: ~1 GB)",
    )
    .or("86400"),
    var(
        engine::config::ENV_KEEP_COMPLETED_COUNT,
        "queue",
        "completed job records kept per job type, newest first (unset: all; 0: dropped at finish; a flow parent still gets its child's outcome)",
    ),
    var(
        engine::config::ENV_KEEP_COMPLETED_SECS,
        "queue",
        "seconds a completed job's record is kept (unset: SYNTH_JOB_RETENTION_SECS; 0: dropped at finish)",
    ),
    var(
        engine::config::ENV_KEEP_FAILED_COUNT,
        "queue",
        "dead-lettered job records kept per job type, newest first (unset: all; 0: dropped; the dead letter itself stays)",
    ),
    var(
        engine::config::ENV_KEEP_FAILED_SECS,
        "queue",
        "seconds a dead-lettered job's record is kept (unset: SYNTH_JOB_RETENTION_SECS; 0: dropped)",
    ),
    var(
        engine::config::ENV_MAX_DELIVERIES,
        "queue",
        "deliveries of a stream entry without finishing before it is dead-lettered",
    )
    .or("10"),
    var(
        engine::sentinel::ENV_SENTINELS,
        "queue",
        "Redis Sentinels (host:port, comma-separated) to ask where the primary is; used when REDIS_URL is unset (or write REDIS_URL=redis+sentinel://h1:26379,h2:26379/mymaster)",
    ),
    var(
        engine::sentinel::ENV_SENTINEL_MASTER,
        "queue",
        "the name the Sentinels monitor the primary under (sentinel monitor <name> ...); with REDIS_SENTINELS",
    ),
    var(
        engine::sentinel::ENV_SENTINEL_USERNAME,
        "queue",
        "the Sentinels' ACL user, with REDIS_SENTINEL_PASSWORD (unset: default)",
    ),
    var(
        engine::sentinel::ENV_SENTINEL_PASSWORD,
        "queue",
        "the Sentinels' own password (requirepass in sentinel.conf); the data nodes' user is the URL's",
    )
    .secret(),
    var(
        engine::config::ENV_MIN_REPLICAS_ACK,
        "queue",
        "replicas that must confirm (WAIT) an enqueue, run create or run advance before it is reported done; 0: none",
    )
    .or("0"),
    var(
        engine::config::ENV_WAIT_MS,
        "queue",
        "ms such a write waits for its replicas before it fails as not replicated (below 5000)",
    )
    .or("1000"),
    var(
        engine::config::ENV_CA,
        "queue",
        "PEM file of the CA a rediss:// REDIS_URL trusts (unset: the system's roots)",
    ),
    var(
        engine::config::ENV_CLIENT_CERT,
        "queue",
        "PEM client certificate for a Redis that asks for one (tls-auth-clients); with SYNTH_REDIS_CLIENT_KEY",
    ),
    var(
        engine::config::ENV_CLIENT_KEY,
        "queue",
        "PEM private key of SYNTH_REDIS_CLIENT_CERT",
    )
    .secret(),
    var(
        "SYNTH_REDIS_WORKER_PASSWORD",
        "ops redis-acl",
        "the worker ACL user's password (unset: generated and printed once on stderr)",
    )
    .secret()
    .flag("ops redis-acl --worker-password"),
    var(
        "SYNTH_REDIS_SCHEDULER_PASSWORD",
        "ops redis-acl",
        "the scheduler ACL user's password (unset: generated and printed once on stderr)",
    )
    .secret()
    .flag("ops redis-acl --scheduler-password"),
    var(
        "SYNTH_REDIS_BRIDGE_PASSWORD",
        "ops redis-acl",
        "the bridge ACL user's password (unset: generated and printed once on stderr)",
    )
    .secret()
    .flag("ops redis-acl --bridge-password"),
    var(
        "SYNTH_REDIS_OPERATOR_PASSWORD",
        "ops redis-acl",
        "the operator ACL user's password (unset: generated and printed once on stderr)",
    )
    .secret()
    .flag("ops redis-acl --operator-password"),
    var(
        "SYNTH_CITY_RUN_LEASE_MS",
        "pipeline",
        "a pipeline run's permit lease in ms (at least 1000; every process must agree)",
    )
    .or("120000"),
    var(
        "BRIDGE_API_KEY",
        "bridge, client",
        "the operator's API key on the bridge (X-API-Key); required off loopback. Bots get \
         their own keys: `synth-city bots add`",
    )
    .secret()
    .flag("client --key"),
    var(
        "BRIDGE_LOOPBACK_OPERATOR",
        "bridge",
        "1: requests without a key from the bridge's own machine act as the operator (else \
         every request needs a key)",
    )
    .flag("bridge --loopback-operator"),
    var(
        "BRIDGE_SESSION_TTL_SECS",
        "bridge",
        "idle time before a bot's session expires",
    )
    .or("3600"),
    var(
        "SYNTH_BRIDGE_HEADER_TIMEOUT_SECS",
        "bridge",
        "seconds a client has to send a request's headers (an idle keep-alive connection is \
         closed after as long)",
    )
    .or("10")
    .flag("bridge --header-timeout-secs"),
    var(
        "SYNTH_BRIDGE_MAX_CONNECTIONS",
        "bridge",
        "connections the bridge serves at once; more wait in the listen backlog",
    )
    .or("1024")
    .flag("bridge --max-connections"),
    var(
        "SYNTH_BRIDGE_MAX_SSE_PER_BOT",
        "bridge",
        "open /events streams per bot (429 beyond)",
    )
    .or("8")
    .flag("bridge --max-sse-per-bot"),
    var(
        "SYNTH_DATA_DIR",
        "worker, pipeline, publish, bridge",
        "market data (bar files) a worker's handlers read; for the bridge it wins over its \
         --data-dir; when that holds no bar files the bridge reads data/sample, then ../shared/data",
    )
    .or("data")
    .flag("worker/pipeline/publish --data-dir"),
    var(
        "SYNTH_WORK_DIR",
        "worker, pipeline, publish",
        "a worker's scratch: checkpoints as they train, the artifact cache (<dir>/cache)",
    )
    .or("runs")
    .flag("worker/pipeline/publish --work-dir"),
    var(
        "SYNTH_STORE_DIR",
        "worker, pipeline, publish, results, bridge",
        "a worker's filesystem store (with HIPPIUS_ENDPOINT: metrics.jsonl and mirrors); the store the bridge's /results routes use",
    )
    .or("store")
    .flag("worker/pipeline/publish --store"),
    var(
        "SYNTH_CACHE_MAX_MB",
        "worker, pipeline, publish",
        "MiB the artifact cache keeps before evicting the least recently used",
    )
    .or("2048")
    .flag("worker/pipeline/publish --cache-max-mb"),
    var(
        "SYNTH_SHADOW_CHALLENGERS",
        "worker (scorer), models shadow",
        "challengers per (asset, prompt) pair the shadow scorer scores beside the champion: the last published candidates the gate refused or newer than the champion, 0 to 20",
    )
    .or("3"),
    var(
        "SYNTH_SHADOW_POLICY",
        "worker (scorer)",
        "what the shadow policy does after scoring: off (report only), promote (a challenger that passes the gate on settled live prompts), promote-demote (also demote a champion the GBM beats)",
    )
    .or("off"),
    var(
        "SYNTH_SHADOW_MIN_DAYS",
        "worker (scorer), models shadow",
        "distinct days of settled shadow prompts before the shadow policy acts on them",
    )
    .or("7"),
    var(
        "SYNTH_DEVICE",
        "worker, pipeline",
        "what training runs on: auto (CUDA when the build has the `cuda` feature and a GPU \
         answers, else the CPU), cpu, or cuda[:N]; resolved once at start",
    )
    .or("auto")
    .flag("worker/pipeline --device"),
    var(
        "SYNTH_HEALTH_PORT",
        "worker",
        "answer health probes (GET /health) on this port; a Basilica pod's worker uses 8378",
    )
    .flag("worker --health-port"),
    var(
        "SYNTH_HEALTH_HOST",
        "worker",
        "the address the health port binds (0.0.0.0 in a pod, where the probes come from outside)",
    )
    .or("127.0.0.1")
    .flag("worker --health-host"),
    var("BASILICA_API_URL", "fleet", "the Basilica API").or(crate::basilica::DEFAULT_API_URL),
    var(
        "BASILICA_API_TOKEN",
        "fleet",
        "the Basilica API token (Bearer); unset: requests go unauthenticated and are refused",
    )
    .secret(),
    var(
        "BASILICA_ALLOWED_GPU_TYPES",
        "fleet",
        "GPU types the fleet may rent, comma-separated; empty: any within the price cap",
    )
    .flag("fleet --allowed-gpu-types"),
    var("BASILICA_MAX_HOURLY_RATE", "fleet", "most $/h per GPU the fleet pays")
        .or("1")
        .flag("fleet --max-hourly-rate"),
    var(
        "BASILICA_BUDGET_PER_HOUR",
        "fleet",
        "most $/h for all the fleet's pods together",
    )
    .or("4")
    .flag("fleet --budget-per-hour"),
    var("BASILICA_BUDGET_PER_DAY", "fleet", "most $ the fleet spends per UTC day")
        .or("48")
        .flag("fleet --budget-per-day"),
    var("BASILICA_IMAGE", "fleet", "the trainer pods' container image")
        .or("synth-city-cuda:local")
        .flag("fleet --image"),
    var(
        "SYNTH_POD_REDIS_URL",
        "fleet",
        "the Redis URL trainer pods use (TLS, the worker ACL user) [default: the fleet's own]",
    )
    .flag("fleet --pod-redis-url"),
    var(
        "SYNTH_POD_ROLES",
        "fleet",
        "`--roles` of the trainer pods' workers",
    )
    .or("trainer")
    .flag("fleet --pod-roles"),
    var(
        "SYNTH_POD_DEVICE",
        "fleet",
        "`--device` of the trainer pods' workers",
    )
    .or("cuda")
    .flag("fleet --pod-device"),
    var(
        "SYNTH_POD_ENV",
        "fleet",
        "environment for the pods, comma-separated: NAME (its value from this process's environment: the way to pass store credentials and other secrets, which this setting is not) or NAME=VALUE",
    )
    .flag("fleet --pod-env"),
    var(
        "SYNTH_REGISTRY_DIR",
        "bridge",
        "the zoo's sources for /registry [default: this build's workers/trainer/src/zoo]",
    ),
    var("SYNTH_BRIDGE_URL", "client", "the bridge's base URL")
        .or(crate::cli::client::DEFAULT_BRIDGE_URL)
        .flag("client --url"),
    var("SYNTH_BOT_ID", "client", "the bot id sent as X-Bot-Id")
        .or("default")
        .flag("client --bot"),
    var(
        "SYNTH_BRIDGE_TIMEOUT",
        "client",
        "seconds to wait for the bridge's answer",
    )
    .or("300")
    .flag("client --timeout"),
    var(
        "BT_WALLET_PATH",
        "miner",
        "Bittensor wallets folder [default: ~/.bittensor/wallets]",
    )
    .flag("mine --wallet-path"),
    var("BT_WALLET_NAME", "miner", "the wallet holding the hotkey")
        .or("default")
        .flag("mine --wallet-name"),
    var("BT_HOTKEY_NAME", "miner", "the hotkey's name in the wallet")
        .or("default")
        .flag("mine --wallet-hotkey"),
    var(
        "SYNTH_CITY_SN50_CONSTANTS",
        "sn50",
        "TOML overrides of the SN50 constants [default: the validator's]",
    )
    .flag("score leaderboard/backtest/constants, data download/spot, mine --constants"),
    var("PYTH_HERMES_URL", "sn50 (Pyth)", "Pyth Hermes: spot prices")
        .or(sn50::constants::PYTH_HERMES_URL),
    var(
        "PYTH_BENCHMARKS_URL",
        "sn50 (Pyth)",
        "Pyth benchmarks: price history",
    )
    .or(sn50::constants::PYTH_BENCHMARKS_URL),
    var(
        "BINANCE_API_URL",
        "sn50 (venues)",
        "Binance spot REST: klines and last prices of BTC ETH SOL XRP",
    )
    .or(sn50::constants::BINANCE_API_URL),
    var(
        "HYPERLIQUID_API_URL",
        "sn50 (venues)",
        "Hyperliquid info API: candles and mids of HYPE and the xyz: perps",
    )
    .or(sn50::constants::HYPERLIQUID_API_URL),
    var(
        "CHUTES_API_KEY",
        "agents",
        "API key of the chat-completions service; unset: the built-in agents",
    )
    .secret(),
    var(
        "CHUTES_BASE_URL",
        "agents",
        "OpenAI-compatible chat-completions base URL",
    )
    .or(agents::config::DEFAULT_BASE_URL),
    var(
        "DEFAULT_MODEL",
        "agents",
        "model of the codechecker, debugger and publisher",
    )
    .or(agents::config::DEFAULT_MODEL),
    var("PLANNER_MODEL", "agents", "the planner's model").or(agents::config::LARGE_MODEL),
    var("TRAINER_MODEL", "agents", "the trainer's model").or(agents::config::LARGE_MODEL),
    var(
        "CODECHECKER_MODEL",
        "agents",
        "the codechecker's model [default: DEFAULT_MODEL]",
    ),
    var(
        "DEBUGGER_MODEL",
        "agents",
        "the debugger's model [default: DEFAULT_MODEL]",
    ),
    var(
        "PUBLISHER_MODEL",
        "agents",
        "the publisher's model [default: DEFAULT_MODEL]",
    ),
    var(
        "LLM_CONNECT_TIMEOUT_S",
        "agents",
        "seconds to connect to the LLM",
    )
    .or("120"),
    var(
        "LLM_REQUEST_TIMEOUT_S",
        "agents",
        "seconds for one whole LLM request",
    )
    .or("300"),
    var(
        "LLM_RETRIES",
        "agents",
        "retries of a failed LLM call (at most 20)",
    )
    .or("4"),
    var(
        "LLM_RETRY_BASE_DELAY_MS",
        "agents",
        "first retry delay in ms (doubles)",
    )
    .or("2000"),
    var(
        "LLM_RETRY_MAX_DELAY_MS",
        "agents",
        "longest retry delay in ms",
    )
    .or("60000"),
    var(
        "HIPPIUS_ENDPOINT",
        "store (S3)",
        "S3-compatible endpoint; set: the store is this bucket, not a directory",
    ),
    var("HIPPIUS_ACCESS_KEY", "store (S3)", "S3 access key").secret(),
    var("HIPPIUS_SECRET_KEY", "store (S3)", "S3 secret key").secret(),
    var("HIPPIUS_BUCKET", "store (S3)", "the bucket").or("synth-city"),
    var("HIPPIUS_REGION", "store (S3)", "the signing region").or("decentralized"),
    var(
        "HIPPIUS_CREATE_BUCKET",
        "store (S3)",
        "create a missing bucket (0/false/no to refuse)",
    )
    .or("true"),
    var(
        "HIPPIUS_TIMEOUT_SECS",
        "store (S3)",
        "seconds per request (1..=3600)",
    )
    .or("60"),
    var(
        "HIPPIUS_RETRIES",
        "store (S3)",
        "retries after the first attempt (0..=20)",
    )
    .or("4"),
    var("HF_TOKEN", "publisher (Hub)", "Hugging Face token").secret(),
    var(
        "HF_REPO_ID",
        "publisher (Hub)",
        "the Hub model repository (owner/name)",
    ),
    var("HF_ENDPOINT", "publisher (Hub)", "the Hub's URL").or("https://huggingface.co"),
    var(
        "SYNTH_MINER_NAME",
        "results",
        "who shares results (`results share`'s --source): letters, digits, '-', '_', '.'",
    )
    .or("synth-city"),
    var(
        "SYNTH_INGEST_ALLOW_HOSTS",
        "bridge",
        "hosts (comma-separated) a bot's POST /results/ingest url may name although they are this machine or its private network",
    ),
    var(
        "HF_PRIVATE",
        "publisher (Hub)",
        "create the repository private (1/true/yes)",
    )
    .or("false"),
    var(
        "WANDB_API_KEY",
        "publisher (W&B)",
        "Weights & Biases key; set: runs also log to W&B",
    )
    .secret(),
    var("WANDB_BASE_URL", "publisher (W&B)", "the W&B API")
        .or(publisher::store::wandb::DEFAULT_BASE_URL),
    var(
        "WANDB_ENTITY",
        "publisher (W&B)",
        "the W&B entity [default: the key's own]",
    ),
    var("WANDB_PROJECT", "publisher (W&B)", "the W&B project")
        .or(publisher::store::wandb::DEFAULT_PROJECT),
];

/// The declared setting called `name`.
pub fn setting(name: &str) -> Option<&'static Setting> {
    TABLE.iter().find(|s| s.name == name)
}

/// The declared name nearest to `name` (edit distance, ignoring case) and its distance.
pub fn nearest(name: &str) -> (&'static str, usize) {
    let upper = name.to_ascii_uppercase();
    TABLE
        .iter()
        .map(|s| (s.name, strsim::levenshtein(&upper, s.name)))
        .min_by_key(|&(_, d)| d)
        .expect("the table is not empty")
}

/// Where a setting's effective value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    File(PathBuf),
    DotEnv(PathBuf),
    Env,
    /// A command-line flag (known for the global flags only).
    Flag(&'static str),
    Unset,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(p) => write!(f, "config file {}", p.display()),
            Source::DotEnv(p) => write!(f, ".env ({})", p.display()),
            Source::Env => f.write_str("environment"),
            Source::Flag(flag) => write!(f, "flag {flag}"),
            Source::Unset => f.write_str("unset"),
        }
    }
}

/// One setting's effective value and its source.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub setting: &'static Setting,
    pub value: Option<String>,
    pub source: Source,
}

impl Resolved {
    /// The value as it may be printed: secrets and URL credentials redacted.
    pub fn shown(&self) -> Option<String> {
        self.value.as_deref().map(|v| shown(self.setting, v))
    }
}

/// Why the settings could not be loaded. Every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read the config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}: {message}", path.display())]
    Syntax {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error(
        "{}:{line}: unknown setting {key:?}; the nearest known name is {nearest} \
         (`synth-city config show` lists them all)",
        path.display()
    )]
    UnknownKey {
        path: PathBuf,
        line: usize,
        key: String,
        nearest: &'static str,
    },
    #[error("{}:{line}: {key} must be a string, a number or a boolean", path.display())]
    NotAScalar {
        path: PathBuf,
        line: usize,
        key: String,
    },
    #[error(
        "{}:{line}: {CONFIG_VAR} names the config file; set it in the environment, .env or \
         with --config, not inside the file",
        path.display()
    )]
    ConfigInConfig { path: PathBuf, line: usize },
}

/// Every setting resolved, plus where the files were.
#[derive(Debug, Clone)]
pub struct Settings {
    entries: Vec<Resolved>,
    /// The config file that was read, if any.
    pub config_file: Option<PathBuf>,
    /// The `.env` file that was read, if any.
    pub dotenv_file: Option<PathBuf>,
    /// Keys `.env` sets that synth-city does not read (ignored; not exported).
    pub ignored_dotenv: Vec<String>,
}

/// The value of `--config FILE` / `--config=FILE` in a command line, found before clap parses
/// it (the config file decides what clap's `env` attributes see). Scanning stops at `--`.
pub fn config_flag<I: IntoIterator<Item = OsString>>(args: I) -> Option<PathBuf> {
    let mut it = args.into_iter().skip(1);
    let mut found = None;
    while let Some(a) = it.next() {
        let Some(s) = a.to_str() else { continue };
        if s == "--" {
            break;
        }
        if s == "--config" {
            found = it.next().map(PathBuf::from);
        } else if let Some(v) = s.strip_prefix("--config=") {
            found = Some(PathBuf::from(v));
        }
    }
    found
}

/// The 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The config file's keys and values, each with its line.
fn read_config(path: &Path) -> Result<BTreeMap<String, (String, usize)>, SettingsError> {
    let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let table: BTreeMap<String, toml::Spanned<toml::Value>> =
        toml::from_str(&text).map_err(|e| SettingsError::Syntax {
            path: path.to_path_buf(),
            line: e.span().map_or(1, |s| line_of(&text, s.start)),
            message: e.message().trim().to_string(),
        })?;
    let mut out = BTreeMap::new();
    for (key, v) in table {
        let line = line_of(&text, v.span().start);
        if key == CONFIG_VAR {
            return Err(SettingsError::ConfigInConfig {
                path: path.to_path_buf(),
                line,
            });
        }
        if setting(&key).is_none() {
            return Err(SettingsError::UnknownKey {
                path: path.to_path_buf(),
                line,
                nearest: nearest(&key).0,
                key,
            });
        }
        let value = match v.into_inner() {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(x) => x.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            _ => {
                return Err(SettingsError::NotAScalar {
                    path: path.to_path_buf(),
                    line,
                    key,
                })
            }
        };
        out.insert(key, (value, line));
    }
    Ok(out)
}

/// The `.env` file's pairs in order (`None` when there is no such file).
fn read_dotenv(path: &Path) -> Result<Option<Vec<(String, String)>>, SettingsError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(SettingsError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let mut pairs = Vec::new();
    for item in dotenvy::from_read_iter(text.as_bytes()) {
        match item {
            Ok(kv) => pairs.push(kv),
            Err(dotenvy::Error::LineParse(bad, at)) => {
                let first = bad.lines().next().unwrap_or("");
                let line = text
                    .lines()
                    .position(|l| !first.is_empty() && l.contains(first))
                    .map_or(1, |i| i + 1);
                return Err(SettingsError::Syntax {
                    path: path.to_path_buf(),
                    line,
                    message: format!("cannot parse {bad:?} (at character {at})"),
                });
            }
            Err(e) => {
                return Err(SettingsError::Syntax {
                    path: path.to_path_buf(),
                    line: 1,
                    message: e.to_string(),
                })
            }
        }
    }
    Ok(Some(pairs))
}

impl Settings {
    /// Loads the settings of this process: the working directory's `.env` and config file,
    /// `--config` from the command line, the process environment.
    pub fn load() -> Result<Settings, SettingsError> {
        let dir = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        Self::load_from(&dir, config_flag(std::env::args_os()), |k| {
            std::env::var_os(k).map(|v| v.to_string_lossy().into_owned())
        })
    }

    /// Loads the settings with `dir` as the working directory, `config_flag` as `--config`
    /// and `env` as the process environment.
    pub fn load_from(
        dir: &Path,
        config_flag: Option<PathBuf>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Settings, SettingsError> {
        let dotenv_path = dir.join(DOTENV_FILE);
        let dotenv_pairs = read_dotenv(&dotenv_path)?;
        let mut dotenv: BTreeMap<String, String> = BTreeMap::new();
        let mut ignored_dotenv = Vec::new();
        for (k, v) in dotenv_pairs.iter().flatten() {
            if setting(k).is_some() {
                dotenv.insert(k.clone(), v.clone());
            } else if !ignored_dotenv.contains(k) {
                ignored_dotenv.push(k.clone());
            }
        }
        // Which file: --config, then SYNTH_CITY_CONFIG (environment, then .env), then
        // synth-city.toml if there is one. A named file must exist; the default may not.
        let from_env = env(CONFIG_VAR).filter(|v| !v.is_empty());
        let from_dotenv = dotenv.get(CONFIG_VAR).filter(|v| !v.is_empty());
        let config_flag = config_flag.filter(|f| !f.as_os_str().is_empty());
        let (named, config_source) = match (&config_flag, from_env, from_dotenv) {
            (Some(f), _, _) => (Some(f.clone()), Source::Flag("--config")),
            (None, Some(v), _) => (Some(PathBuf::from(v)), Source::Env),
            (None, None, Some(v)) => (Some(PathBuf::from(v)), Source::DotEnv(dotenv_path.clone())),
            (None, None, None) => (None, Source::Default),
        };
        let config_file = match &named {
            Some(f) => Some(dir.join(f)),
            None => Some(dir.join(CONFIG_FILE)).filter(|p| p.is_file()),
        };
        let file = match &config_file {
            Some(p) => read_config(p)?,
            None => BTreeMap::new(),
        };
        let entries = TABLE
            .iter()
            .map(|s| {
                let (value, source) = if s.name == CONFIG_VAR {
                    match &named {
                        Some(f) => (Some(f.display().to_string()), config_source.clone()),
                        None => (s.default.map(String::from), Source::Default),
                    }
                } else if let Some(v) = env(s.name) {
                    (Some(v), Source::Env)
                } else if let Some(v) = dotenv.get(s.name) {
                    (Some(v.clone()), Source::DotEnv(dotenv_path.clone()))
                } else if let (Some((v, _)), Some(p)) = (file.get(s.name), &config_file) {
                    (Some(v.clone()), Source::File(p.clone()))
                } else if let Some(d) = s.default {
                    (Some(d.to_string()), Source::Default)
                } else {
                    (None, Source::Unset)
                };
                Resolved {
                    setting: s,
                    value,
                    source,
                }
            })
            .collect();
        Ok(Settings {
            entries,
            config_file,
            dotenv_file: dotenv_pairs.map(|_| dotenv_path),
            ignored_dotenv,
        })
    }

    /// Every setting in [`TABLE`] order.
    pub fn iter(&self) -> impl Iterator<Item = &Resolved> {
        self.entries.iter()
    }

    /// One setting's resolution (`None`: not a declared name).
    pub fn resolved(&self, name: &str) -> Option<&Resolved> {
        self.entries.iter().find(|r| r.setting.name == name)
    }

    /// The effective value of `name` (its default when nothing set it).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.resolved(name).and_then(|r| r.value.as_deref())
    }

    /// Records that a command-line flag set `name` (it wins over everything else).
    pub fn set_flag(&mut self, name: &str, flag: &'static str, value: &str) {
        if let Some(r) = self.entries.iter_mut().find(|r| r.setting.name == name) {
            r.value = Some(value.to_string());
            r.source = Source::Flag(flag);
        }
    }

    /// The values that came from the config file or `.env`, which the process environment
    /// does not hold yet.
    pub fn to_export(&self) -> Vec<(&'static str, &str)> {
        self.entries
            .iter()
            .filter(|r| matches!(r.source, Source::File(_) | Source::DotEnv(_)))
            .filter_map(|r| Some((r.setting.name, r.value.as_deref()?)))
            .collect()
    }

    /// Puts [`to_export`](Self::to_export) into the process environment. Call it once, in
    /// `main`, while the process still has a single thread (before the tokio runtime and
    /// before anything reads the environment).
    pub fn export(&self) {
        for (k, v) in self.to_export() {
            std::env::set_var(k, v);
        }
    }
}

/// True for names that hold credentials by convention.
pub fn secret_by_name(name: &str) -> bool {
    ["_KEY", "_TOKEN", "_SECRET", "_PASSWORD"]
        .iter()
        .any(|s| name.ends_with(s))
}

/// A secret as it may be printed: `****` and, for values of 12 characters or more, the last 2.
pub fn redact(value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    if chars.is_empty() {
        return String::new();
    }
    if chars.len() >= 12 {
        let tail: String = chars[chars.len() - 2..].iter().collect();
        format!("****{tail}")
    } else {
        "****".into()
    }
}

/// `scheme://user:password@host/...` with the password (or a lone user, often a token)
/// replaced by `****`; any other value unchanged.
pub use engine::config::redact_url_credentials;

/// `value` of `setting` as it may be printed.
pub fn shown(setting: &Setting, value: &str) -> String {
    if setting.secret || secret_by_name(setting.name) {
        redact(value)
    } else {
        redact_url_credentials(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn names_are_unique_and_credentials_are_secret() {
        let mut names: Vec<_> = TABLE.iter().map(|s| s.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), TABLE.len());
        for s in TABLE {
            assert_eq!(s.secret, secret_by_name(s.name), "{}", s.name);
            assert!(
                s.secret.then_some(s.default).flatten().is_none(),
                "{}",
                s.name
            );
        }
    }

    /// The table's literal defaults are the components' own.
    #[test]
    fn defaults_match_the_components() {
        let d = |n: &str| setting(n).and_then(|s| s.default).unwrap().to_string();
        let lease = crate::pipeline::stages::DEFAULT_RUN_LEASE.as_millis();
        assert_eq!(d("SYNTH_CITY_RUN_LEASE_MS"), lease.to_string());
        let queue = engine::config::QueueConfig::default();
        assert_eq!(
            d(engine::config::ENV_JOB_RETENTION),
            queue.result_ttl.as_secs().to_string()
        );
        assert_eq!(
            d(engine::config::ENV_MAX_DELIVERIES),
            queue.max_deliveries.to_string()
        );
        let llm = agents::LlmConfig::new("http://x", "k", "m");
        assert_eq!(
            d("LLM_CONNECT_TIMEOUT_S"),
            llm.connect_timeout.as_secs().to_string()
        );
        assert_eq!(
            d("LLM_REQUEST_TIMEOUT_S"),
            llm.request_timeout.as_secs().to_string()
        );
        assert_eq!(d("LLM_RETRIES"), llm.retry.retries.to_string());
        assert_eq!(
            d("LLM_RETRY_BASE_DELAY_MS"),
            llm.retry.base_delay.as_millis().to_string()
        );
        assert_eq!(
            d("LLM_RETRY_MAX_DELAY_MS"),
            llm.retry.max_delay.as_millis().to_string()
        );
        let s3 = publisher::store::S3Config::new("http://x", "a", "s", &d("HIPPIUS_BUCKET"));
        assert_eq!(d("HIPPIUS_REGION"), s3.region);
        assert_eq!(d("HIPPIUS_CREATE_BUCKET"), s3.create_bucket.to_string());
        assert_eq!(d("HIPPIUS_TIMEOUT_SECS"), s3.timeout.as_secs().to_string());
        assert_eq!(d("HIPPIUS_RETRIES"), (s3.attempts - 1).to_string());
        let hf = publisher::store::hf::HfConfig::new(&d("HF_ENDPOINT"), "t", "o/r");
        assert_eq!(d("HF_PRIVATE"), hf.private.to_string());
        let dirs = trainer::WorkerDirs::default();
        assert_eq!(d("SYNTH_DATA_DIR"), dirs.data_dir.display().to_string());
        assert_eq!(d("SYNTH_WORK_DIR"), dirs.work_dir.display().to_string());
        assert_eq!(d("SYNTH_STORE_DIR"), dirs.store_dir.display().to_string());
        assert_eq!(
            d("SYNTH_CACHE_MAX_MB"),
            (dirs.cache_max_bytes >> 20).to_string()
        );
        let shadow = scorer::policy::ShadowSettings::default();
        assert_eq!(
            d("SYNTH_SHADOW_CHALLENGERS"),
            shadow.challengers.to_string()
        );
        assert_eq!(d("SYNTH_SHADOW_POLICY"), shadow.policy.label());
        assert_eq!(d("SYNTH_SHADOW_MIN_DAYS"), shadow.min_days.to_string());
    }

    /// Every variable the code reads by name (`env::var("X")`, clap's `env = "X"`, `*_ENV`
    /// constants) is declared. Closures in the domain crates' `from_env` are listed by hand.
    #[test]
    fn every_variable_the_code_reads_is_declared() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = Vec::new();
        let mut dirs = vec![root.join("src"), root.join("workers"), root.join("jobs")];
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    dirs.push(p);
                } else if p.extension().is_some_and(|x| x == "rs") && !p.ends_with("settings.rs") {
                    files.push(p);
                }
            }
        }
        let patterns = [
            "env::var(\"",
            "env::var_os(\"",
            "env = \"",
            "_ENV: &str = \"",
        ];
        let mut seen = 0;
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            for pat in patterns {
                for (i, _) in text.match_indices(pat) {
                    let rest = &text[i + pat.len()..];
                    let name = &rest[..rest.find('"').unwrap()];
                    if name == "HOME" {
                        continue; // the operating system's
                    }
                    seen += 1;
                    assert!(
                        setting(name).is_some(),
                        "{} reads {name}, which settings::TABLE does not declare",
                        f.display()
                    );
                }
            }
        }
        assert!(seen > 10, "the scan found only {seen} reads");
    }

    #[test]
    fn precedence_is_default_file_dotenv_env_flag() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(CONFIG_FILE),
            "SYNTH_CITY_PREFIX = \"file\"\nSYNTH_BOT_ID = \"file\"\nLLM_RETRIES = 7\nSYNTH_BRIDGE_TIMEOUT = 9\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join(DOTENV_FILE),
            "SYNTH_CITY_PREFIX=dotenv\nSYNTH_BOT_ID=dotenv\nNOT_OURS=1\n",
        )
        .unwrap();
        let mut s =
            Settings::load_from(dir.path(), None, env_of(&[("SYNTH_CITY_PREFIX", "env")])).unwrap();
        let src = |s: &Settings, n: &str| s.resolved(n).unwrap().source.clone();
        assert_eq!(s.get("SYNTH_CITY_PREFIX"), Some("env"));
        assert_eq!(src(&s, "SYNTH_CITY_PREFIX"), Source::Env);
        assert_eq!(s.get("SYNTH_BOT_ID"), Some("dotenv"));
        assert!(matches!(src(&s, "SYNTH_BOT_ID"), Source::DotEnv(_)));
        assert_eq!(s.get("LLM_RETRIES"), Some("7"));
        assert!(matches!(src(&s, "LLM_RETRIES"), Source::File(_)));
        assert_eq!(s.get("REDIS_URL"), Some(engine::config::DEFAULT_REDIS_URL));
        assert_eq!(src(&s, "REDIS_URL"), Source::Default);
        assert_eq!(src(&s, "HF_REPO_ID"), Source::Unset);
        assert_eq!(s.ignored_dotenv, ["NOT_OURS"]);
        let mut exported = s.to_export();
        exported.sort();
        assert_eq!(
            exported,
            [
                ("LLM_RETRIES", "7"),
                ("SYNTH_BOT_ID", "dotenv"),
                ("SYNTH_BRIDGE_TIMEOUT", "9")
            ]
        );
        s.set_flag("SYNTH_CITY_PREFIX", "--prefix", "flag");
        assert_eq!(s.get("SYNTH_CITY_PREFIX"), Some("flag"));
        assert_eq!(src(&s, "SYNTH_CITY_PREFIX"), Source::Flag("--prefix"));
    }

    #[test]
    fn the_config_file_is_named_by_flag_env_or_dotenv() {
        let dir = tempfile::tempdir().unwrap();
        for (f, v) in [("a.toml", "a"), ("b.toml", "b"), ("c.toml", "c")] {
            std::fs::write(dir.path().join(f), format!("SYNTH_BOT_ID = {v:?}\n")).unwrap();
        }
        std::fs::write(dir.path().join(DOTENV_FILE), "SYNTH_CITY_CONFIG=c.toml\n").unwrap();
        let load = |flag: Option<&str>, env: &[(&str, &str)]| {
            Settings::load_from(dir.path(), flag.map(PathBuf::from), env_of(env)).unwrap()
        };
        let env = [(CONFIG_VAR, "b.toml")];
        assert_eq!(load(Some("a.toml"), &env).get("SYNTH_BOT_ID"), Some("a"));
        let s = load(None, &env);
        assert_eq!(s.get("SYNTH_BOT_ID"), Some("b"));
        assert_eq!(s.resolved(CONFIG_VAR).unwrap().source, Source::Env);
        assert_eq!(load(None, &[]).get("SYNTH_BOT_ID"), Some("c"));
        let missing = Settings::load_from(dir.path(), Some("nope.toml".into()), env_of(&[]));
        assert!(
            missing.unwrap_err().to_string().contains("nope.toml"),
            "a named file must exist"
        );
    }

    #[test]
    fn bad_files_are_named_with_their_line() {
        let dir = tempfile::tempdir().unwrap();
        let write = |text: &str| std::fs::write(dir.path().join(CONFIG_FILE), text).unwrap();
        let err = || {
            Settings::load_from(dir.path(), None, env_of(&[]))
                .unwrap_err()
                .to_string()
        };
        write("REDIS_URL = \"redis://h\"\n\nREDIS_ULR = \"x\"\n");
        let e = err();
        assert!(e.contains("synth-city.toml:3:"), "{e}");
        assert!(
            e.contains("\"REDIS_ULR\"") && e.contains("REDIS_URL"),
            "{e}"
        );
        write("REDIS_URL = \"redis://h\"\nSYNTH_BOT_ID = [1, 2]\n");
        let e = err();
        assert!(e.contains(":2:") && e.contains("SYNTH_BOT_ID"), "{e}");
        write("REDIS_URL = \"redis://h\"\nthis is not toml\n");
        assert!(err().contains("synth-city.toml:2:"), "{}", err());
        write("SYNTH_CITY_CONFIG = \"other.toml\"\n");
        assert!(err().contains("not inside the file"), "{}", err());
        std::fs::remove_file(dir.path().join(CONFIG_FILE)).unwrap();
        std::fs::write(dir.path().join(DOTENV_FILE), "A=1\nB='unterminated\n").unwrap();
        assert!(err().contains(".env:2:"), "{}", err());
    }

    #[test]
    fn config_flag_is_found_before_clap() {
        let args = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            config_flag(args(&["sc", "--config", "x.toml", "migrate"])),
            Some("x.toml".into())
        );
        assert_eq!(
            config_flag(args(&["sc", "config", "show", "--config=y.toml"])),
            Some("y.toml".into())
        );
        assert_eq!(config_flag(args(&["sc", "--", "--config", "z"])), None);
    }

    #[test]
    fn secrets_and_url_credentials_are_redacted() {
        assert_eq!(redact("abcdefghijkl-9x"), "****9x");
        assert_eq!(redact("short"), "****");
        assert_eq!(
            redact_url_credentials("redis://:hunter2@h:6379/0"),
            "redis://:****@h:6379/0"
        );
        assert_eq!(
            redact_url_credentials("redis://user:pw@h/0?x=a@b"),
            "redis://user:****@h/0?x=a@b"
        );
        assert_eq!(redact_url_credentials("https://tok@h"), "https://****@h");
        assert_eq!(redact_url_credentials("http://h:1/a@b"), "http://h:1/a@b");
        let key = setting("CHUTES_API_KEY").unwrap();
        assert_eq!(shown(key, "sk-0123456789abcdef"), "****ef");
        assert_eq!(nearest("chutes_api_kye"), ("CHUTES_API_KEY", 2));
    }
}
