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

/// A closed stdout (`synth-city ... | head -1`) ends the process quietly with status 0.
///
/// `println!` panics when stdout's reader has gone (EPIPE). That panic, its message and
/// exit status 101 would tell a script that the command failed after it had done its work
/// (an enqueue, say), and the script might do it again. The work is done by the time
/// anything is printed, so the rest of the output has no reader: exit 0 like a Unix tool
/// whose reader stopped early.
///
/// Why not restore SIGPIPE's default action (the usual fix): the same binary serves HTTP
/// (bridge, miner, `/metrics`) and talks to Redis and S3 over sockets, and a vectored write
/// to a socket whose peer reset raises SIGPIPE; Rust ignores the signal so such a write is an
/// error one request handles, and the default action would let one client kill the server.
fn quiet_broken_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.starts_with("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}

fn main() -> std::process::ExitCode {
    quiet_broken_stdout();
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
