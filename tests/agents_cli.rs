//! `synth-city agent`: refuses clearly without an API key, and runs an agent against a local
//! chat-completions server when one is configured. The command module is compiled in directly
//! (`#[path]`), so this test does not depend on how the binary's subcommands are wired.

mod common;

#[path = "../src/cli/agent.rs"]
#[allow(dead_code)]
mod agent;

use clap::Parser;

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    args: agent::AgentArgs,
}

#[tokio::test]
async fn agents_cli_needs_a_key_and_runs_with_one() {
    let dir = std::env::temp_dir().join(format!("sc-agents-cli-{}", std::process::id()));
    let runs = dir.join("runs").to_str().unwrap().to_string();
    let parse = |name: &str, extra: &[&str]| {
        let mut v: Vec<String> = [
            "agent",
            "--json",
            "--name",
            name,
            "--runs-dir",
            runs.as_str(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        Cli::parse_from(v).args
    };
    // SAFETY: the only test in this binary that touches the environment.
    unsafe {
        std::env::remove_var("CHUTES_API_KEY");
    }
    let err = agent::run(parse("planner", &[]))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("no API key is set"), "{err}");
    assert!(err.contains("built-in (non-LLM) agents"), "{err}");

    let err = agent::run(parse("author", &[]))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("unknown agent") && err.contains("planner"),
        "{err}"
    );

    unsafe {
        std::env::set_var("CHUTES_API_KEY", "test-key");
        std::env::set_var("CHUTES_BASE_URL", common::ChatServer::start().base_url);
    }
    agent::run(parse("planner", &["--message", "Plan one experiment."]))
        .await
        .unwrap();
    unsafe {
        std::env::remove_var("CHUTES_API_KEY");
        std::env::remove_var("CHUTES_BASE_URL");
    }
    let _ = std::fs::remove_dir_all(dir);
}
