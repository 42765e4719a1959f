//! Prompts: one template file per agent (`workers/prompts/<agent>.md`, embedded at build time),
//! split into fragments as the seed's `pipeline/prompts/fragments.py` keeps them.
//!
//! A fragment starts at a marker line `<!-- fragment: NAME [channel=CHANNEL] [priority=N] -->`
//! (channel default `*`, priority default 50) and runs to the next marker. [`assemble_prompt`]
//! takes the agent's fragments for the given channel plus those for `*`, sorted by priority
//! (lower first, ties in file order), substitutes `{key}` from the task (strings as they are,
//! other JSON values as JSON; missing keys left as `{key}`; `{{` and `}}` are literal braces) and
//! joins them with blank lines.

use std::sync::OnceLock;

use serde_json::{Map, Value};

/// One piece of a system prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct Fragment {
    pub agent: String,
    pub channel: String,
    pub name: String,
    pub priority: i32,
    pub text: String,
}

/// The embedded template files, by agent name.
pub const TEMPLATES: &[(&str, &str)] = &[
    ("planner", include_str!("../prompts/planner.md")),
    ("trainer", include_str!("../prompts/trainer.md")),
    ("codechecker", include_str!("../prompts/codechecker.md")),
    ("debugger", include_str!("../prompts/debugger.md")),
    ("publisher", include_str!("../prompts/publisher.md")),
];

/// Split one template file into fragments.
pub fn parse_template(agent: &str, text: &str) -> Result<Vec<Fragment>, String> {
    let mut out: Vec<Fragment> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("<!-- fragment:") {
            let body = rest.strip_suffix("-->").ok_or_else(|| {
                format!("{agent}.md line {}: marker does not end with -->", i + 1)
            })?;
            let mut parts = body.split_whitespace();
            let name = parts
                .next()
                .ok_or_else(|| format!("{agent}.md line {}: fragment without a name", i + 1))?;
            let mut frag = Fragment {
                agent: agent.to_string(),
                channel: "*".into(),
                name: name.to_string(),
                priority: 50,
                text: String::new(),
            };
            for p in parts {
                match p.split_once('=') {
                    Some(("channel", c)) => frag.channel = c.to_string(),
                    Some(("priority", n)) => {
                        frag.priority = n.parse().map_err(|_| {
                            format!("{agent}.md line {}: priority {n:?} is not an integer", i + 1)
                        })?
                    }
                    _ => {
                        return Err(format!(
                            "{agent}.md line {}: unknown marker attribute {p:?} (use channel= or priority=)",
                            i + 1
                        ))
                    }
                }
            }
            out.push(frag);
        } else if let Some(f) = out.last_mut() {
            f.text.push_str(line);
            f.text.push('\n');
        } else if !t.is_empty() {
            return Err(format!(
                "{agent}.md line {}: text before the first fragment marker",
                i + 1
            ));
        }
    }
    for f in &mut out {
        f.text = f.text.trim().to_string();
    }
    Ok(out)
}

/// Fragments of every agent.
#[derive(Debug, Clone, Default)]
pub struct FragmentStore {
    fragments: Vec<Fragment>,
}

impl FragmentStore {
    /// The fragments of the embedded template files.
    pub fn builtin() -> Self {
        let mut s = FragmentStore::default();
        for (agent, text) in TEMPLATES {
            s.fragments
                .extend(parse_template(agent, text).expect("embedded prompt templates parse"));
        }
        s
    }

    /// Add a fragment (e.g. one for a bot's channel).
    pub fn add(&mut self, f: Fragment) {
        self.fragments.push(f);
    }

    pub fn fragments(&self) -> &[Fragment] {
        &self.fragments
    }

    /// The system prompt of `agent` for `channel`, filled from `task`.
    pub fn assemble(&self, agent: &str, channel: &str, task: &Map<String, Value>) -> String {
        let mut chosen: Vec<&Fragment> = self
            .fragments
            .iter()
            .filter(|f| f.agent == agent && (f.channel == channel || f.channel == "*"))
            .collect();
        chosen.sort_by_key(|f| f.priority);
        chosen
            .iter()
            .map(|f| format_map(&f.text, task))
            .collect::<Vec<_>>()
            .join("\n\n")
    }
}

fn builtin_store() -> &'static FragmentStore {
    static STORE: OnceLock<FragmentStore> = OnceLock::new();
    STORE.get_or_init(FragmentStore::builtin)
}

/// The seed's `assemble_prompt(agent, channel, task)` over the embedded templates.
pub fn assemble_prompt(agent: &str, channel: &str, task: &Map<String, Value>) -> String {
    builtin_store().assemble(agent, channel, task)
}

/// `str.format_map` with missing keys left as `{key}`.
pub fn format_map(text: &str, task: &Map<String, Value>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find(['{', '}']) {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        if let Some(r) = tail.strip_prefix("{{") {
            out.push('{');
            rest = r;
        } else if let Some(r) = tail.strip_prefix("}}") {
            out.push('}');
            rest = r;
        } else if let Some(inner) = tail.strip_prefix('{') {
            let key_end = inner.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'));
            match key_end {
                Some(k) if k > 0 && inner[k..].starts_with('}') => {
                    let key = &inner[..k];
                    match task.get(key) {
                        Some(Value::String(s)) => out.push_str(s),
                        Some(v) => out.push_str(&v.to_string()),
                        None => out.push_str(&tail[..k + 2]),
                    }
                    rest = &inner[k + 1..];
                }
                _ => {
                    out.push('{');
                    rest = inner;
                }
            }
        } else {
            out.push('}');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn task(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn substitution_leaves_missing_keys_and_unescapes_braces() {
        let t = task(json!({"n": 3, "name": "x"}));
        assert_eq!(format_map("run {n} of {name}", &t), "run 3 of x");
        assert_eq!(
            format_map("keep {missing} as is", &t),
            "keep {missing} as is"
        );
        assert_eq!(format_map("json {{\"a\": {n}}}", &t), "json {\"a\": 3}");
        assert_eq!(format_map("odd { brace } here", &t), "odd { brace } here");
        assert_eq!(format_map("{n}{n}", &t), "33");
    }

    #[test]
    fn fragments_are_chosen_by_channel_and_sorted_by_priority() {
        let text = "<!-- fragment: b priority=20 -->\nsecond {who}\n\
                    <!-- fragment: a priority=10 -->\nfirst\n\
                    <!-- fragment: c channel=discord priority=15 -->\nonly on discord\n\
                    <!-- fragment: d channel=slack priority=1 -->\nonly on slack\n";
        let mut store = FragmentStore::default();
        for f in parse_template("x", text).unwrap() {
            store.add(f);
        }
        let t = task(json!({"who": "me"}));
        assert_eq!(store.assemble("x", "default", &t), "first\n\nsecond me");
        assert_eq!(
            store.assemble("x", "discord", &t),
            "first\n\nonly on discord\n\nsecond me"
        );
        assert_eq!(store.assemble("y", "default", &t), "");
        assert!(parse_template("x", "stray\n<!-- fragment: a -->\n").is_err());
        assert!(parse_template("x", "<!-- fragment: a priority=high -->\n").is_err());
    }

    #[test]
    fn every_agent_has_a_prompt_that_names_its_job() {
        let t = task(json!({"experiment_budget": 2}));
        for (agent, _) in TEMPLATES {
            let p = assemble_prompt(agent, "default", &t);
            assert!(p.len() > 200, "{agent}: {p}");
            assert!(
                p.contains("finish"),
                "{agent} prompt must say how to finish"
            );
            assert!(!p.contains("<!--"), "{agent}: marker leaked");
        }
        assert!(assemble_prompt("planner", "default", &t).contains("CRPS"));
    }
}
