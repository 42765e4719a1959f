//! `synth-city bots add|list|revoke`: the bridge's principals (`engine::principals`), made and
//! taken away by the operator. A new key is printed once (only its SHA-256 is kept); `list`
//! shows each bot's role, when its key was made and the first digits of the key's hash, never
//! the key.
//!
//! It talks to Redis only through `engine::principals`; what a role may do on the bridge is
//! the bridge's (`bridge::auth`).

use anyhow::bail;
use clap::Subcommand;
use engine::principals::{self, PrincipalError, Role};
use engine::Queue;
use serde_json::json;

#[derive(Debug, Subcommand)]
pub enum BotsCommand {
    /// Make a key for a bot and print it once (send it as X-API-Key; the key names the bot).
    Add {
        /// The bot's id: 1 to 64 of [A-Za-z0-9._-].
        name: String,
        /// bot (its own session, jobs, runs, schedules), read-only (GET routes only) or
        /// operator (everything, acting as any bot with X-Bot-Id).
        #[arg(long, default_value = "bot", value_parser = parse_role)]
        role: Role,
        /// Replace the bot's key (the old one stops working at once).
        #[arg(long)]
        rotate: bool,
        /// A note kept beside the key (who holds it, what for).
        #[arg(long)]
        note: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// The bots that hold keys: role, when made, the key's hash prefix.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Take a bot's key away: its next request is refused (401).
    Revoke { name: String },
}

fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(s).ok_or_else(|| format!("unknown role {s:?}: use bot, read-only or operator"))
}

pub(super) async fn run(q: Queue, c: BotsCommand) -> anyhow::Result<()> {
    match c {
        BotsCommand::Add {
            name,
            role,
            rotate,
            note,
            json,
        } => {
            let (key, rec) = match principals::add(&q, &name, role, note.as_deref(), rotate).await {
                Ok(v) => v,
                Err(e @ PrincipalError::Queue(_)) => return Err(e.into()),
                Err(e) => bail!("{e}"),
            };
            if json {
                println!(
                    "{}",
                    json!({"bot": rec.bot, "role": rec.role, "key": key, "key_id": rec.key_id()})
                );
            } else {
                println!("{key}");
                eprintln!(
                    "bot {} ({}) {}: the key above is shown once; send it as X-API-Key \
                     (BRIDGE_API_KEY for `synth-city client`)",
                    rec.bot,
                    rec.role,
                    if rotate { "has a new key" } else { "added" }
                );
            }
        }
        BotsCommand::List { json } => {
            let all = principals::list(&q).await?;
            if json {
                let rows: Vec<_> = all
                    .iter()
                    .map(|r| {
                        json!({"bot": r.bot, "role": r.role, "key_id": r.key_id(),
                               "created_ms": r.created_ms, "note": r.note})
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else if all.is_empty() {
                println!("no bot keys: `synth-city bots add NAME` makes one");
            } else {
                println!(
                    "{:<24} {:<10} {:<20} {:<20} note",
                    "bot", "role", "key", "created"
                );
                for r in &all {
                    let created = chrono::DateTime::from_timestamp_millis(r.created_ms as i64)
                        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                        .unwrap_or_default();
                    println!(
                        "{:<24} {:<10} {:<20} {:<20} {}",
                        r.bot,
                        r.role.name(),
                        r.key_id(),
                        created,
                        r.note.as_deref().unwrap_or("")
                    );
                }
            }
        }
        BotsCommand::Revoke { name } => {
            if principals::revoke(&q, &name).await? {
                println!("revoked the key of bot {name}");
            } else {
                bail!("bot {name:?} holds no key: `synth-city bots list` shows those that do");
            }
        }
    }
    Ok(())
}
