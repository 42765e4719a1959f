//! `synth-city agent`: refuses clearly without an API key, and runs an agent against a local
//! chat-completions server when one is configured. The command module is compiled in directly
//! (`#[path]`), so this test does not depend on how the binary's subcommands are wired.

#[path = "../src/cli/agent.rs"]
#[allow(dead_code)]
mod agent;

use std::io::{Read, Write};
use std::net::TcpListener;

use clap::Parser;

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    args: agent::AgentArgs,
}

/// A one-shot chat-completions server on 127.0.0.1 that answers every request with a `finish`
/// call (std threads; enough for one agent turn).
fn finishing_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 8192];
            loop {
                let n = s.read(&mut chunk).unwrap_or(0);
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..p]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if buf.len() >= p + 4 + len {
                        break;
                    }
                }
            }
            let args = serde_json::json!({"success": true, "result": "{\"experiments\": []}", "summary": "plan"}).to_string();
            let body = serde_json::json!({
                "id": "c1", "object": "chat.completion", "created": 1, "model": "m",
                "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant",
                    "tool_calls": [{"id": "call_0", "type": "function", "function": {"name": "finish", "arguments": args}}]}}],
                "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
            })
            .to_string();
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://{addr}/v1")
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
        std::env::set_var("CHUTES_BASE_URL", finishing_server());
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
