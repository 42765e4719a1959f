//! Agents and prompts as data (issue 20): the `synth-city/agent@1` agent definition and the
//! `synth-city/prompt@1` prompt module, their validation, the five built-in agents as
//! definitions of the same kind, and the system prompt a definition and its modules make.
//!
//! An agent definition names the built-in agent whose place in a run it takes (`acts_as`: its
//! stage runs as that agent's stage type and its `finish` result is read the same way), a
//! model, a temperature, a turn limit, a subset of the registered tools, prompt fragments
//! (channel, priority, text) and the task keys it reads as context. A prompt module is a set
//! of fragments a bot adds to one agent, each fragment for a channel. Both are bounded in size
//! and checked here before anything stores them; every problem is named with its field and
//! the fix.
//!
//! What it does not do: store anything (`engine::registry` does, through the binary's
//! `agent_defs`), or execute anything a definition says: a definition is data the LLM runner
//! reads (its prompt text goes to the model, its tool names pick from the compiled tools).

use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::prompts::{self, Fragment, FragmentStore};
use super::{config, AgentName};

/// The format tag of an agent definition.
pub const AGENT_FORMAT: &str = "synth-city/agent@1";
/// The format tag of a prompt module.
pub const PROMPT_FORMAT: &str = "synth-city/prompt@1";
/// Largest document, as compact JSON.
pub const MAX_DOC_BYTES: usize = 64 * 1024;
/// Most fragments in one document.
pub const MAX_FRAGMENTS: usize = 16;
/// Longest fragment text, in characters.
pub const MAX_FRAGMENT_CHARS: usize = 8000;
/// Highest turn limit.
pub const MAX_TURNS: usize = 50;
/// Names an agent may not take: the bridge's own paths under `/agents/`.
pub const RESERVED: &[&str] = &["list", "read", "tools", "prompts", "write"];

/// The task keys an agent may read as context, with what each holds.
pub const CONTEXT_KEYS: &[(&str, &str)] = &[
    (
        "experiment_budget",
        "how many experiments the plan must hold / the trainer may run",
    ),
    ("plan", "the run's plan (JSON)"),
    ("experiment", "the best experiment's spec"),
    ("run_result", "the best experiment's record"),
    ("best_experiment", "the best experiment's spec"),
    (
        "best_metrics",
        "the best experiment's CRPS, GBM CRPS, ratio, parameters",
    ),
    ("error_report", "the check's problems"),
    ("comparison", "every experiment of the run with its metrics"),
    ("crps_scores", "recent scored experiments of the history"),
    ("channel", "the run's prompt channel"),
    ("message", "the run's message (a bot's steering text)"),
];

fn agent_format() -> String {
    AGENT_FORMAT.into()
}
fn prompt_format() -> String {
    PROMPT_FORMAT.into()
}
fn any_channel() -> String {
    "*".into()
}
fn default_priority() -> i32 {
    50
}
fn default_turns() -> usize {
    config::DEFAULT_MAX_TURNS
}

/// One prompt fragment of a definition or module.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FragmentDoc {
    /// A label (shown in listings).
    #[serde(default)]
    pub name: String,
    /// The run channel it is for; `*` for every channel.
    #[serde(default = "any_channel")]
    pub channel: String,
    /// Lower comes first in the prompt (0..=1000).
    #[serde(default = "default_priority")]
    pub priority: i32,
    /// The text; `{key}` is filled from the task, `{{`/`}}` are literal braces.
    pub text: String,
}

/// An agent definition (`synth-city/agent@1`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentDef {
    #[serde(default = "agent_format")]
    pub format: String,
    pub name: String,
    /// The built-in agent whose part it plays: planner, trainer, codechecker, debugger or
    /// publisher, or an authoring agent (author, agent_designer, pipeline_architect).
    pub acts_as: String,
    #[serde(default)]
    pub description: String,
    /// The model; none: the model of the agent it acts as (`PLANNER_MODEL`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The temperature (0..=2); none: the stage's (the meta-strategy's, escalating on retries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// Turns before the run gives up (1..=50).
    #[serde(default = "default_turns")]
    pub max_turns: usize,
    /// Registered tool names (see [`tool_names`]); `finish` is always there.
    pub tools: Vec<String>,
    pub fragments: Vec<FragmentDoc>,
    /// Task keys sent as context messages (see [`CONTEXT_KEYS`]).
    #[serde(default)]
    pub context_keys: Vec<String>,
}

/// A prompt module (`synth-city/prompt@1`): fragments added to one agent's prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptModule {
    #[serde(default = "prompt_format")]
    pub format: String,
    pub name: String,
    /// The agent (built-in or authored) whose prompt it adds to.
    pub agent: String,
    #[serde(default)]
    pub description: String,
    pub fragments: Vec<FragmentDoc>,
}

/// One problem of a document: the field at fault and what to do.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DefIssue {
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for DefIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Every tool an agent definition may name (the research tools this build compiles, and the
/// pod tools, which a run has where Basilica is configured, and the authoring tools, which only
/// a stage running as an authoring agent is given).
pub fn tool_names() -> &'static [String] {
    static NAMES: OnceLock<Vec<String>> = OnceLock::new();
    NAMES.get_or_init(|| {
        let dir = std::env::temp_dir();
        let session = super::ResearchSession::new(
            "tool-names",
            dir.clone(),
            dir.clone(),
            Arc::new(super::MemoryHistory::default()),
            Arc::new(super::FsPublisher { root: dir }),
        );
        let research = super::research::research_tools(Arc::new(session));
        let mut names: Vec<String> = research.names().into_iter().map(String::from).collect();
        names.extend(super::pods::POD_TOOLS.iter().map(|s| s.to_string()));
        names.extend(super::authoring::TOOL_NAMES.iter().map(|s| s.to_string()));
        names
    })
}

fn issue(out: &mut Vec<DefIssue>, field: impl Into<String>, message: impl Into<String>) {
    out.push(DefIssue {
        field: field.into(),
        message: message.into(),
    });
}

/// Whether `name` is a valid agent or module name: a lower-case letter, then up to 47
/// lower-case letters, digits or `_`.
pub fn valid_name(name: &str) -> bool {
    let mut c = name.chars();
    c.next().is_some_and(|f| f.is_ascii_lowercase())
        && name.len() <= 48
        && c.all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_')
}

fn check_name(name: &str, field: &str, out: &mut Vec<DefIssue>) {
    if !valid_name(name) {
        issue(
            out,
            field,
            format!(
                "{name:?} is not a valid name: use a lower-case letter then up to 47 lower-case \
                 letters, digits or _ (e.g. risk_planner)"
            ),
        );
    }
}

fn check_fragments(frags: &[FragmentDoc], out: &mut Vec<DefIssue>) {
    if frags.is_empty() {
        issue(
            out,
            "fragments",
            "at least one fragment is required: {\"text\": \"...\"}",
        );
    }
    if frags.len() > MAX_FRAGMENTS {
        issue(
            out,
            "fragments",
            format!(
                "{} fragments; at most {MAX_FRAGMENTS}: merge some",
                frags.len()
            ),
        );
    }
    for (i, f) in frags.iter().enumerate() {
        let at = format!("fragments[{i}]");
        let n = f.text.chars().count();
        if f.text.trim().is_empty() {
            issue(out, format!("{at}.text"), "empty: write the prompt text");
        } else if n > MAX_FRAGMENT_CHARS {
            issue(
                out,
                format!("{at}.text"),
                format!("{n} characters; at most {MAX_FRAGMENT_CHARS}: split or shorten it"),
            );
        }
        let ch = &f.channel;
        let ok = ch == "*"
            || (!ch.is_empty()
                && ch.len() <= 64
                && ch
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        if !ok {
            issue(
                out,
                format!("{at}.channel"),
                format!("{ch:?}: use * (every channel) or 1 to 64 letters, digits, - or _"),
            );
        }
        if !(0..=1000).contains(&f.priority) {
            issue(
                out,
                format!("{at}.priority"),
                format!("{} is outside 0..=1000", f.priority),
            );
        }
        if f.name.len() > 64 {
            issue(out, format!("{at}.name"), "longer than 64 bytes");
        }
    }
}

/// The checks an agent definition and a prompt module share: the format tag, the name, the
/// description, the fragments and the document's size.
fn check_common(
    doc: &impl Serialize,
    (format, want): (&str, &str),
    name: &str,
    description: &str,
    fragments: &[FragmentDoc],
    out: &mut Vec<DefIssue>,
) {
    if format != want {
        issue(
            out,
            "format",
            format!("{format:?}; this build reads {want:?}"),
        );
    }
    check_name(name, "name", out);
    if description.len() > 1000 {
        issue(out, "description", "longer than 1000 bytes");
    }
    check_fragments(fragments, out);
    check_size(doc, out);
}

fn check_size(v: &impl Serialize, out: &mut Vec<DefIssue>) {
    let n = serde_json::to_string(v).map(|s| s.len()).unwrap_or(0);
    if n > MAX_DOC_BYTES {
        issue(
            out,
            "document",
            format!("{n} bytes; at most {MAX_DOC_BYTES}: shorten the fragments"),
        );
    }
}

/// The pod tools a built-in agent has: the trainer's, where Basilica is configured.
fn pod_tools_of(agent: AgentName) -> &'static [&'static str] {
    if agent == AgentName::Trainer && super::pods::configured() {
        super::pods::POD_TOOLS
    } else {
        &[]
    }
}

/// Whether `name` is a built-in agent's name.
pub fn is_builtin(name: &str) -> bool {
    AgentName::ALL.iter().any(|a| a.as_str() == name)
        || super::authoring::AuthoringAgent::parse(name).is_some()
}

/// The fragments of an embedded prompt template (a built-in agent's).
pub fn template_fragments(agent: &str, text: &str) -> Vec<FragmentDoc> {
    prompts::parse_template(agent, text)
        .expect("embedded prompt templates parse")
        .into_iter()
        .map(|f| FragmentDoc {
            name: f.name,
            channel: f.channel,
            priority: f.priority,
            text: f.text,
        })
        .collect()
}

impl AgentDef {
    /// A built-in agent as a definition: its template's fragments, its tools and context keys,
    /// the stage's temperature and the default turn limit, the environment's model.
    pub fn builtin(agent: AgentName) -> AgentDef {
        let text = prompts::TEMPLATES
            .iter()
            .find(|(a, _)| *a == agent.as_str())
            .map(|(_, t)| *t)
            .unwrap_or("");
        let fragments = template_fragments(agent.as_str(), text);
        AgentDef {
            format: AGENT_FORMAT.into(),
            name: agent.as_str().into(),
            acts_as: agent.as_str().into(),
            description: format!("the built-in {agent} (read-only)"),
            model: None,
            temperature: None,
            max_turns: config::DEFAULT_MAX_TURNS,
            tools: agent
                .tool_names()
                .iter()
                .chain(pod_tools_of(agent))
                .map(|s| s.to_string())
                .collect(),
            fragments,
            context_keys: agent.context_keys().iter().map(|s| s.to_string()).collect(),
        }
    }

    /// The built-in part it plays (valid after [`AgentDef::check`]; planner otherwise).
    pub fn role(&self) -> AgentName {
        self.acts_as.parse().unwrap_or(AgentName::Planner)
    }

    /// Every problem of an authored definition (the built-in names are refused: they are
    /// read-only).
    pub fn check(&self) -> Result<(), Vec<DefIssue>> {
        let mut out = Vec::new();
        check_common(
            self,
            (&self.format, AGENT_FORMAT),
            &self.name,
            &self.description,
            &self.fragments,
            &mut out,
        );
        if is_builtin(&self.name) {
            issue(
                &mut out,
                "name",
                format!(
                    "{:?} is a built-in agent, which is read-only; write yours under another \
                     name (add to the built-in's prompt with a prompt module)",
                    self.name
                ),
            );
        }
        if RESERVED.contains(&self.name.as_str()) {
            issue(
                &mut out,
                "name",
                format!(
                    "{:?} is reserved (a bridge path); use another name",
                    self.name
                ),
            );
        }
        if super::authoring::AuthoringAgent::parse(&self.acts_as).is_none() {
            if let Err(e) = self.acts_as.parse::<AgentName>() {
                issue(
                    &mut out,
                    "acts_as",
                    format!(
                        "{e}, or an authoring agent: author, agent_designer, pipeline_architect"
                    ),
                );
            }
        }
        if let Some(m) = &self.model {
            if m.trim().is_empty() || m.len() > 200 || m.chars().any(|c| c.is_control()) {
                issue(
                    &mut out,
                    "model",
                    "1 to 200 printable characters (e.g. Qwen/Qwen3-235B-A22B), or leave it out",
                );
            }
        }
        if let Some(t) = self.temperature {
            if !(0.0..=2.0).contains(&t) {
                issue(
                    &mut out,
                    "temperature",
                    format!("{t} is outside 0..=2 (leave it out for the stage's)"),
                );
            }
        }
        if !(1..=MAX_TURNS).contains(&self.max_turns) {
            issue(
                &mut out,
                "max_turns",
                format!("{} is outside 1..={MAX_TURNS}", self.max_turns),
            );
        }
        let known = tool_names();
        let mut seen = BTreeSet::new();
        for (i, t) in self.tools.iter().enumerate() {
            if !known.iter().any(|k| k == t) {
                issue(
                    &mut out,
                    format!("tools[{i}]"),
                    format!(
                        "unknown tool {t:?}; the registered tools are: {}",
                        known.join(", ")
                    ),
                );
            } else if !seen.insert(t.as_str()) {
                issue(
                    &mut out,
                    format!("tools[{i}]"),
                    format!("{t:?} appears twice"),
                );
            }
        }
        for (i, k) in self.context_keys.iter().enumerate() {
            if !CONTEXT_KEYS.iter().any(|(c, _)| c == k) {
                issue(
                    &mut out,
                    format!("context_keys[{i}]"),
                    format!(
                        "unknown context key {k:?}; one of {}",
                        CONTEXT_KEYS
                            .iter()
                            .map(|(c, _)| *c)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
            }
        }
        if out.is_empty() {
            Ok(())
        } else {
            Err(out)
        }
    }

    /// The system prompt for `channel`: the definition's fragments and the modules', those of
    /// the channel and of `*`, by priority (ties in order: the definition's first), filled from
    /// `task`.
    pub fn system_prompt(
        &self,
        modules: &[PromptModule],
        channel: &str,
        task: &Map<String, Value>,
    ) -> String {
        let mut store = FragmentStore::default();
        let frags = self
            .fragments
            .iter()
            .chain(modules.iter().flat_map(|m| m.fragments.iter()));
        for f in frags {
            store.add(Fragment {
                agent: self.name.clone(),
                channel: f.channel.clone(),
                name: f.name.clone(),
                priority: f.priority,
                text: f.text.clone(),
            });
        }
        store.assemble(&self.name, channel, task)
    }

    /// The context messages from `task` for the definition's keys.
    pub fn context_messages(&self, task: &Map<String, Value>) -> Vec<String> {
        let keys: Vec<&str> = self.context_keys.iter().map(String::as_str).collect();
        super::context_for(&keys, self.role(), task)
    }
}

impl PromptModule {
    /// Every problem of a module (the agent it names is checked by the caller, which knows
    /// the registry).
    pub fn check(&self) -> Result<(), Vec<DefIssue>> {
        let mut out = Vec::new();
        check_common(
            self,
            (&self.format, PROMPT_FORMAT),
            &self.name,
            &self.description,
            &self.fragments,
            &mut out,
        );
        check_name(&self.agent, "agent", &mut out);
        if out.is_empty() {
            Ok(())
        } else {
            Err(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn authored() -> AgentDef {
        serde_json::from_value(json!({
            "name": "scout", "acts_as": "planner", "temperature": 0.3, "max_turns": 4,
            "tools": ["list_blocks", "scan_experiment_history"],
            "fragments": [{"text": "You are the scout. Budget {experiment_budget}.", "priority": 10},
                          {"text": "Discord only.", "channel": "discord", "priority": 5}],
            "context_keys": ["experiment_budget"]
        }))
        .unwrap()
    }

    #[test]
    fn builtins_are_definitions_of_the_same_kind() {
        for a in AgentName::ALL {
            let d = AgentDef::builtin(a);
            assert_eq!(d.role(), a);
            assert_eq!(d.tools.len(), a.tool_names().len());
            let task = json!({"experiment_budget": 2});
            let p = d.system_prompt(&[], "default", task.as_object().unwrap());
            assert_eq!(
                p,
                prompts::assemble_prompt(a.as_str(), "default", task.as_object().unwrap()),
                "{a}: the definition's prompt is the template's"
            );
            // a built-in's name is read-only
            let e = d.check().unwrap_err();
            assert!(e.iter().any(|i| i.message.contains("read-only")), "{e:?}");
        }
    }

    #[test]
    fn an_authored_definition_checks_and_assembles_with_modules() {
        let d = authored();
        d.check().unwrap();
        let m: PromptModule = serde_json::from_value(json!({
            "name": "risk", "agent": "scout",
            "fragments": [{"text": "Prefer small models.", "priority": 20}]
        }))
        .unwrap();
        m.check().unwrap();
        let task = json!({"experiment_budget": 3});
        let t = task.as_object().unwrap();
        assert_eq!(
            d.system_prompt(std::slice::from_ref(&m), "default", t),
            "You are the scout. Budget 3.\n\nPrefer small models."
        );
        assert_eq!(
            d.system_prompt(&[m], "discord", t),
            "Discord only.\n\nYou are the scout. Budget 3.\n\nPrefer small models."
        );
        assert_eq!(
            d.context_messages(t),
            vec!["Your plan MUST include exactly 3 experiment(s).".to_string()]
        );
    }

    #[test]
    fn every_problem_is_named_with_its_fix() {
        let mut d = authored();
        d.name = "Bad Name".into();
        d.acts_as = "oracle".into();
        d.tools.push("rm_rf".into());
        d.context_keys.push("secrets".into());
        d.max_turns = 0;
        d.temperature = Some(5.0);
        d.fragments.push(FragmentDoc {
            name: String::new(),
            channel: "no spaces".into(),
            priority: -1,
            text: "x".repeat(MAX_FRAGMENT_CHARS + 1),
        });
        let issues = d.check().unwrap_err();
        let text: Vec<String> = issues.iter().map(|i| i.to_string()).collect();
        let all = text.join("\n");
        for needle in [
            "name: \"Bad Name\" is not a valid name",
            "acts_as: unknown agent \"oracle\"",
            "tools[2]: unknown tool \"rm_rf\"; the registered tools are: ",
            "context_keys[1]: unknown context key \"secrets\"",
            "max_turns: 0 is outside 1..=50",
            "temperature: 5 is outside 0..=2",
            "fragments[2].text: 8001 characters",
            "fragments[2].channel",
            "fragments[2].priority: -1",
        ] {
            assert!(all.contains(needle), "{needle} not in\n{all}");
        }
        assert!(all.contains("list_blocks"), "the valid tools are listed");
        let mut d = authored();
        d.name = "list".into();
        assert!(d.check().is_err(), "a reserved name");
        let mut d = authored();
        d.fragments = (0..=MAX_FRAGMENTS)
            .map(|i| FragmentDoc {
                name: String::new(),
                channel: "*".into(),
                priority: 1,
                text: format!("f{i}"),
            })
            .collect();
        assert!(d.check().unwrap_err()[0].message.contains("at most 16"));
    }
}
