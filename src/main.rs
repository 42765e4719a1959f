//! The `synth-city` binary: loads the settings, parses the command line and runs it.
//!
//! The order matters: the settings (config file, `.env`, environment) are loaded and the
//! values from the files exported into the process environment first, while the process
//! has one thread; then logging starts (it reads `RUST_LOG`), clap parses (its `env`
//! attributes see the resolved values; flags win), and only then the tokio runtime starts.

// warp's nested filter types need more than the default recursion depth in release builds.
#![recursion_limit = "512"]

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> std::process::ExitCode {
    let settings = match synth_city::settings::Settings::load() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    settings.export();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = synth_city::cli::Cli::parse();
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(synth_city::cli::run(cli, settings)));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
