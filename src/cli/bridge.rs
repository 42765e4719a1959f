//! `synth-city bridge`: serves the HTTP API for bots (`crate::bridge`) on the main task until
//! SIGINT/SIGTERM. Only the flags and the settings it needs live here.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;
use engine::queue::Queue;

use crate::settings::Settings;

#[derive(Debug, Args)]
pub struct BridgeArgs {
    #[arg(long, default_value = "127.0.0.1")]
    pub host: std::net::IpAddr,
    #[arg(long, default_value_t = 8377)]
    pub port: u16,
    /// Requests per minute allowed per bot.
    #[arg(long, default_value_t = 600)]
    pub rate_per_min: u32,
    /// Market data for the market routes [SYNTH_DATA_DIR wins; else this when it holds bar
    /// files, else the shipped data/sample, else ../shared/data]. Runs and experiments started over HTTP use their workers' own
    /// directories.
    #[arg(long, default_value = "data")]
    pub data_dir: std::path::PathBuf,
    /// Seconds a client has to send a request's headers; a keep-alive connection idle this
    /// long is closed too.
    #[arg(long, env = "SYNTH_BRIDGE_HEADER_TIMEOUT_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub header_timeout_secs: u64,
    /// Connections served at once; beyond it, new connections wait in the listen backlog
    /// until one closes.
    #[arg(long, env = "SYNTH_BRIDGE_MAX_CONNECTIONS", default_value_t = 1024,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections: u64,
    /// Requests without a key from this machine (a loopback peer) act as the operator. Off,
    /// every request needs a key: `BRIDGE_API_KEY` (the operator's) or a bot's
    /// (`synth-city bots add`).
    #[arg(long, env = "BRIDGE_LOOPBACK_OPERATOR", value_parser = clap::builder::BoolishValueParser::new(),
          default_value_t = false, num_args = 0..=1, default_missing_value = "true")]
    pub loopback_operator: bool,
    /// Open `/events` streams per bot; beyond it, 429.
    #[arg(long, env = "SYNTH_BRIDGE_MAX_SSE_PER_BOT", default_value_t = 8,
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub max_sse_per_bot: u64,
}

/// Starts the bridge with these flags (connection limits: SYNTH_BRIDGE_HEADER_TIMEOUT_SECS,
/// SYNTH_BRIDGE_MAX_CONNECTIONS, SYNTH_BRIDGE_MAX_SSE_PER_BOT) and the settings'
/// `BRIDGE_API_KEY`.
pub(super) async fn run(q: Queue, a: BridgeArgs, settings: &Settings) -> anyhow::Result<()> {
    let cfg = crate::bridge::BridgeConfig {
        addr: SocketAddr::new(a.host, a.port),
        api_key: settings.get("BRIDGE_API_KEY").map(String::from),
        rate_per_min: a.rate_per_min,
        data_dir: a.data_dir,
        conn: crate::bridge::ConnLimits {
            header_read_timeout: Duration::from_secs(a.header_timeout_secs),
            max_connections: a.max_connections as usize,
            ..Default::default()
        },
        sse_per_bot: a.max_sse_per_bot as usize,
        loopback_operator: a.loopback_operator,
    };
    crate::bridge::serve(q, cfg, super::shutdown_on_signal()).await
}
