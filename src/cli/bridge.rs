//! `synth-city bridge`: serves the HTTP API for bots (`crate::bridge`) on the main task until
//! SIGINT/SIGTERM. Only the flags and the settings it needs live here.

use std::net::SocketAddr;

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
}

/// Starts the bridge with these flags and the settings' `BRIDGE_API_KEY`.
pub(super) async fn run(q: Queue, a: BridgeArgs, settings: &Settings) -> anyhow::Result<()> {
    let cfg = crate::bridge::BridgeConfig {
        addr: SocketAddr::new(a.host, a.port),
        api_key: settings.get("BRIDGE_API_KEY").map(String::from),
        rate_per_min: a.rate_per_min,
        data_dir: a.data_dir,
    };
    crate::bridge::serve(q, cfg, super::shutdown_on_signal()).await
}
