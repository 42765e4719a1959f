//! `synth-city config show [--json]`: every setting synth-city reads from its environment
//! (`crate::settings::TABLE`), its effective value and where that value came from (default,
//! config file, `.env`, environment, a global flag, or unset). Secrets and credentials inside
//! URLs are redacted.
//!
//! What it does NOT do: it does not check that the values are valid (the component that reads
//! a setting does), and it knows the flags of the global options only (`--redis-url`,
//! `--prefix`, `--config`); a subcommand's own flags (e.g. `client --url`) are not seen here.

use clap::Subcommand;
use serde_json::{json, Value};

use crate::settings::{self, Settings, Source};

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Every setting with its effective value and its source (secrets redacted).
    Show {
        /// Print one JSON object (with each setting's default, component and description).
        #[arg(long)]
        json: bool,
    },
}

/// Runs a `config` command on the settings `main` loaded (with the global flags recorded).
pub fn run(c: ConfigCommand, s: &Settings) -> anyhow::Result<()> {
    match c {
        ConfigCommand::Show { json: true } => {
            println!("{}", serde_json::to_string_pretty(&to_json(s))?);
        }
        ConfigCommand::Show { json: false } => print!("{}", to_table(s)),
    }
    Ok(())
}

fn source_kind(src: &Source) -> (&'static str, Option<String>) {
    match src {
        Source::Default => ("default", None),
        Source::File(p) => ("config_file", Some(p.display().to_string())),
        Source::DotEnv(p) => ("dotenv", Some(p.display().to_string())),
        Source::Env => ("environment", None),
        Source::Flag(f) => ("flag", Some((*f).to_string())),
        Source::Unset => ("unset", None),
    }
}

fn ignored_notes(s: &Settings) -> Vec<String> {
    s.ignored_dotenv
        .iter()
        .map(|k| {
            let hint = match settings::nearest(k) {
                (name, d) if d <= 3 => format!(" (did you mean {name}?)"),
                _ => String::new(),
            };
            format!(".env sets {k}, which synth-city does not read{hint}")
        })
        .collect()
}

/// The JSON of `config show --json`.
pub fn to_json(s: &Settings) -> Value {
    let list: Vec<Value> = s
        .iter()
        .map(|r| {
            let (kind, detail) = source_kind(&r.source);
            let d = r.setting;
            json!({
                "name": d.name,
                "value": r.shown(),
                "source": kind,
                "source_detail": detail,
                "default": d.default,
                "secret": d.secret,
                "used_by": d.used_by,
                "flag": d.flag,
                "description": d.about,
            })
        })
        .collect();
    json!({
        "config_file": s.config_file.as_ref().map(|p| p.display().to_string()),
        "dotenv_file": s.dotenv_file.as_ref().map(|p| p.display().to_string()),
        "settings": list,
        "ignored_dotenv": s.ignored_dotenv,
    })
}

/// The table of `config show`.
pub fn to_table(s: &Settings) -> String {
    let file = |p: &Option<std::path::PathBuf>, none: &str| {
        p.as_ref()
            .map_or_else(|| none.to_string(), |p| p.display().to_string())
    };
    let mut out = format!(
        "config file: {}\n.env:        {}\n\n",
        file(
            &s.config_file,
            &format!("none ({} not found)", settings::CONFIG_FILE)
        ),
        file(&s.dotenv_file, "none"),
    );
    let rows: Vec<(&str, String, String)> = s
        .iter()
        .map(|r| {
            (
                r.setting.name,
                r.shown().unwrap_or_else(|| "-".into()),
                r.source.to_string(),
            )
        })
        .collect();
    let wn = rows.iter().map(|r| r.0.len()).max().unwrap_or(4).max(4);
    let wv = rows
        .iter()
        .map(|r| r.1.chars().count())
        .max()
        .unwrap_or(5)
        .max(5);
    out.push_str(&format!("{:<wn$}  {:<wv$}  SOURCE\n", "NAME", "VALUE"));
    for (n, v, src) in rows {
        out.push_str(&format!("{n:<wn$}  {v:<wv$}  {src}\n"));
    }
    for note in ignored_notes(s) {
        out.push_str(&format!("note: {note}\n"));
    }
    out
}
