//! `synth-city agents list|show|add|remove`: the agents on the registry (issue 20) from the
//! command line, as the operator: the five built-ins (read-only) and the authored agent
//! definitions in Redis (`synth-city/agent@1`, docs/agents.md). `add` validates a definition
//! file and stores it (a new agent owned by `--bot`; an existing one keeps its owner); `add
//! --prompt` stores a prompt module instead. Nothing here runs an agent (`synth-city agent`
//! does).

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use serde_json::json;

use crate::agent_defs::{self, DefError};
use engine::queue::Queue;
use engine::registry::{self as store, Shelf};

#[derive(Debug, Subcommand)]
pub enum AgentsCommand {
    /// The built-in agents and the authored ones, marked, with owner and version.
    List {
        #[arg(long)]
        json: bool,
    },
    /// One agent's definition (JSON) and every bot's prompt modules for it.
    Show { name: String },
    /// Validate an agent definition (or with --prompt, a prompt module) and store it.
    Add {
        file: PathBuf,
        /// The registry name (replaces the document's `name`).
        #[arg(long)]
        name: Option<String>,
        /// The owner of a new document (an existing one keeps its owner).
        #[arg(long, default_value = "default")]
        bot: String,
        /// The file is a prompt module (`synth-city/prompt@1`).
        #[arg(long)]
        prompt: bool,
        #[arg(long)]
        json: bool,
    },
    /// Remove an authored agent (or with --prompt, a prompt module).
    Remove {
        name: String,
        #[arg(long)]
        prompt: bool,
    },
}

fn print_json(v: &serde_json::Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn refused(e: DefError, what: &str) -> anyhow::Error {
    match e {
        DefError::Invalid(issues) => anyhow::anyhow!(
            "{what} is not valid; nothing stored:\n{}",
            issues
                .iter()
                .map(|i| format!("  - {i}"))
                .collect::<Vec<_>>()
                .join("\n")
        ),
        other => anyhow::anyhow!("{other}"),
    }
}

/// Runs the agents command against the queue's Redis.
pub async fn run(q: Queue, c: AgentsCommand) -> anyhow::Result<()> {
    match c {
        AgentsCommand::List { json } => {
            let mut rows = Vec::new();
            for d in agent_defs::builtins() {
                rows.push(
                    json!({"name": d.name, "acts_as": d.acts_as, "source": "built-in",
                    "tools": d.tools.len(), "fragments": d.fragments.len()}),
                );
            }
            for rec in store::list_of(&q, Shelf::Agents).await? {
                let d = agent_defs::agent_of(&rec)?;
                rows.push(
                    json!({"name": d.name, "acts_as": d.acts_as, "source": "authored",
                    "owner": rec.owner, "version": rec.version, "content_hash": rec.content_hash,
                    "tools": d.tools.len(), "fragments": d.fragments.len()}),
                );
            }
            if json {
                return print_json(&json!({"agents": rows}));
            }
            println!(
                "{:<20} {:<12} {:<9} {:<12} {:>7} {:>5} {:>9}",
                "name", "acts as", "source", "owner", "version", "tools", "fragments"
            );
            for r in rows {
                println!(
                    "{:<20} {:<12} {:<9} {:<12} {:>7} {:>5} {:>9}",
                    r["name"].as_str().unwrap_or(""),
                    r["acts_as"].as_str().unwrap_or(""),
                    r["source"].as_str().unwrap_or(""),
                    r["owner"].as_str().unwrap_or("-"),
                    r["version"]
                        .as_u64()
                        .map(|v| v.to_string())
                        .unwrap_or("-".into()),
                    r["tools"],
                    r["fragments"]
                );
            }
            Ok(())
        }
        AgentsCommand::Show { name } => {
            let (def, rec) = agent_defs::agent(&q, &name)
                .await?
                .ok_or_else(|| DefError::Unknown(name.clone()))?;
            let modules: Vec<serde_json::Value> = agent_defs::modules_for(&q, &name, None)
                .await?
                .into_iter()
                .map(|(m, a)| json!({"owner": a.owner, "version": a.version, "document": m}))
                .collect();
            print_json(&json!({
                "source": if rec.is_some() { "authored" } else { "built-in" },
                "owner": rec.as_ref().map(|r| r.owner.clone()),
                "version": rec.as_ref().map(|r| r.version),
                "document": def,
                "prompt_modules": modules,
            }))
        }
        AgentsCommand::Add {
            file,
            name,
            bot,
            prompt,
            json,
        } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let doc: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", file.display()))?;
            let shown = file.display().to_string();
            let (name, extra, w, hash) = if prompt {
                let (m, w, h) = agent_defs::write_prompt(&q, name.as_deref(), doc, &bot, true)
                    .await
                    .map_err(|e| refused(e, &shown))?;
                (m.name, format!("a prompt module for {}", m.agent), w, h)
            } else {
                let (d, w, h) = agent_defs::write_agent(&q, name.as_deref(), doc, &bot, true)
                    .await
                    .map_err(|e| refused(e, &shown))?;
                (d.name, format!("acts as {}", d.acts_as), w, h)
            };
            if json {
                return print_json(
                    &json!({"name": name, "owner": w.owner, "version": w.version,
                    "created": w.created, "content_hash": hash}),
                );
            }
            println!(
                "{} {name:?} ({extra}; owner {}, version {}, content hash {hash})",
                if w.created { "added" } else { "updated" },
                w.owner,
                w.version
            );
            Ok(())
        }
        AgentsCommand::Remove { name, prompt } => {
            let v = if prompt {
                agent_defs::remove_prompt(&q, &name, "default", true).await?
            } else {
                agent_defs::remove_agent(&q, &name, "default", true).await?
            };
            println!("removed {name:?} (version {v})");
            Ok(())
        }
    }
}
