//! Steering the built-in planner (issue 20): the directives a bot may put in a run's
//! `message` (`POST /pipeline/run`, `synth-city pipeline --message`), and what they allow.
//!
//! The message is cut into clauses at new lines, `;`, `,` and `.`; each clause is one
//! directive, case-insensitive:
//!
//! ```text
//! favour|favor|prefer  block NAME | head NAME | family FAMILY
//! avoid                block NAME | head NAME | family FAMILY
//! only                 block NAME | head NAME | family FAMILY
//! ```
//!
//! NAME is a built-in block or head (`TCNBlock` or `tcn`, suffix optional); FAMILY one of
//! [`FAMILIES`]. `favour block graph:NAME` (or a NAME no built-in has) asks for a registry
//! component (issue 20): the parse keeps the name in [`Steering::components`], and the plan
//! stage, which can read the registry, plans it or says it found none. `favour` puts experiments with the component first in the plan; `avoid`
//! keeps it out; `only` keeps everything else out (several `only` of one kind are a union).
//! A clause that is no directive, or names what does not exist, is ignored with a note, never
//! an error. The planner says in its plan which directives it applied and which it ignored.
//!
//! What it does not do: plan (the planner does), or reach the LLM planner, which reads the
//! message itself.

use trainer::zoo::registry::{find_block, find_head, BLOCKS, HEADS};
use trainer::zoo::spec::ExperimentSpec;

/// Block families: name and the built-in blocks in it.
pub const FAMILIES: &[(&str, &[&str])] = &[
    (
        "attention",
        &[
            "TransformerBlock",
            "TFTBlock",
            "InformerBlock",
            "PatchTSTBlock",
            "CrossformerBlock",
            "iTransformerBlock",
        ],
    ),
    ("recurrent", &["LSTMBlock"]),
    (
        "convolutional",
        &["TCNBlock", "WaveNetBlock", "TimesNetBlock"],
    ),
    (
        "frequency",
        &[
            "AutoformerBlock",
            "FEDformerBlock",
            "FreTSBlock",
            "TimesNetBlock",
        ],
    ),
    ("state-space", &["MambaBlock"]),
    ("mlp", &["NBeatsBlock"]),
];

/// What a message asks of the planner.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Steering {
    pub favour_blocks: Vec<&'static str>,
    pub favour_heads: Vec<&'static str>,
    pub avoid_blocks: Vec<&'static str>,
    pub avoid_heads: Vec<&'static str>,
    /// Blocks allowed by `only block|family` (empty: no restriction).
    pub only_blocks: Vec<&'static str>,
    /// Heads allowed by `only head` (empty: no restriction).
    pub only_heads: Vec<&'static str>,
    /// Registry components asked for by `favour block graph:NAME` (or a NAME that is no
    /// built-in block): their names, without `graph:`, for the plan stage to look up.
    pub components: Vec<String>,
    /// One line per clause: `applied: ...` or `ignored: ...`.
    pub notes: Vec<String>,
}

const GRAMMAR: &str = "favour|avoid|only block NAME|head NAME|family FAMILY; see docs/pipeline.md";

fn family(name: &str) -> Option<(&'static str, &'static [&'static str])> {
    let n = name.replace(['_', ' '], "-");
    let n = match n.as_str() {
        "ssm" | "statespace" => "state-space",
        "conv" | "convolution" => "convolutional",
        "rnn" => "recurrent",
        "transformer" | "transformers" => "attention",
        other => other,
    };
    FAMILIES.iter().find(|(f, _)| *f == n).copied()
}

fn push_unique(v: &mut Vec<&'static str>, items: &[&'static str]) {
    for i in items {
        if !v.contains(i) {
            v.push(i);
        }
    }
}

impl Steering {
    /// The directives of `message`.
    pub fn parse(message: &str) -> Steering {
        let mut s = Steering::default();
        for clause in message.split(['\n', ';', ',', '.']) {
            let clause = clause.trim();
            if clause.is_empty() {
                continue;
            }
            let words: Vec<String> = clause
                .split_whitespace()
                .map(|w| w.to_ascii_lowercase())
                .collect();
            let verb = match words[0].as_str() {
                "favour" | "favor" | "prefer" => "favour",
                "avoid" => "avoid",
                "only" => "only",
                _ => {
                    s.notes.push(format!(
                        "ignored: {clause:?} is not a directive ({GRAMMAR})"
                    ));
                    continue;
                }
            };
            let (Some(kind), Some(name)) =
                (words.get(1), words.get(2).filter(|_| words.len() == 3))
            else {
                s.notes.push(format!(
                    "ignored: {clause:?}: expected {verb} KIND NAME ({GRAMMAR})"
                ));
                continue;
            };
            // the name as written (case kept) for the note
            let shown = clause.split_whitespace().nth(2).unwrap_or(name);
            let (blocks, heads): (Vec<&'static str>, Vec<&'static str>) = match kind.as_str() {
                "block" => match find_block(name) {
                    Some(b) => (vec![b.name], vec![]),
                    None if verb == "favour" => {
                        let n = shown.get(..6).filter(|p| p.eq_ignore_ascii_case("graph:"));
                        let n = n.map_or(shown, |_| &shown[6..]).to_string();
                        if !s.components.contains(&n) {
                            s.components.push(n);
                        }
                        continue;
                    }
                    None => {
                        s.notes.push(format!(
                            "ignored: {clause:?}: no block {shown:?} (one of {})",
                            BLOCKS.iter().map(|b| b.name).collect::<Vec<_>>().join(", ")
                        ));
                        continue;
                    }
                },
                "head" => match find_head(name) {
                    Some(h) => (vec![], vec![h.name]),
                    None => {
                        s.notes.push(format!(
                            "ignored: {clause:?}: no head {shown:?} (one of {})",
                            HEADS.iter().map(|h| h.name).collect::<Vec<_>>().join(", ")
                        ));
                        continue;
                    }
                },
                "family" => match family(name) {
                    Some((_, members)) => (members.to_vec(), vec![]),
                    None => {
                        s.notes.push(format!(
                            "ignored: {clause:?}: no family {shown:?} (one of {})",
                            FAMILIES.iter().map(|f| f.0).collect::<Vec<_>>().join(", ")
                        ));
                        continue;
                    }
                },
                other => {
                    s.notes.push(format!(
                        "ignored: {clause:?}: {other:?} is not block, head or family"
                    ));
                    continue;
                }
            };
            let (bl, hd) = match verb {
                "favour" => (&mut s.favour_blocks, &mut s.favour_heads),
                "avoid" => (&mut s.avoid_blocks, &mut s.avoid_heads),
                _ => (&mut s.only_blocks, &mut s.only_heads),
            };
            push_unique(bl, &blocks);
            push_unique(hd, &heads);
            s.notes.push(format!("applied: {verb} {kind} {shown}"));
        }
        s
    }

    /// Whether `block` may be planned.
    pub fn block_allowed(&self, block: &str) -> bool {
        let b = find_block(block).map(|b| b.name);
        let Some(b) = b else {
            return self.only_blocks.is_empty();
        };
        !self.avoid_blocks.contains(&b)
            && (self.only_blocks.is_empty() || self.only_blocks.contains(&b))
    }

    /// Whether `head` may be planned.
    pub fn head_allowed(&self, head: &str) -> bool {
        let h = find_head(head).map(|h| h.name);
        let Some(h) = h else {
            return self.only_heads.is_empty();
        };
        !self.avoid_heads.contains(&h)
            && (self.only_heads.is_empty() || self.only_heads.contains(&h))
    }

    /// Whether every block and the head of `spec` may be planned.
    pub fn allows(&self, spec: &ExperimentSpec) -> bool {
        spec.model
            .backbone
            .blocks
            .iter()
            .all(|b| self.block_allowed(b))
            && self.head_allowed(&spec.model.head.kind)
    }

    /// Whether anything is favoured.
    pub fn favours(&self) -> bool {
        !self.favour_blocks.is_empty() || !self.favour_heads.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives_parse_and_unknown_ones_are_noted() {
        let s = Steering::parse(
            "Favour block tcn; avoid head SDEHead\nonly family frequency, paint it red. \
             avoid colour blue; favour block NoSuch; favour block graph:Gated; avoid block NoSuch",
        );
        assert_eq!(s.favour_blocks, ["TCNBlock"]);
        assert_eq!(s.avoid_heads, ["SDEHead"]);
        assert_eq!(
            s.only_blocks,
            [
                "AutoformerBlock",
                "FEDformerBlock",
                "FreTSBlock",
                "TimesNetBlock"
            ]
        );
        let notes = s.notes.join("\n");
        for n in [
            "applied: favour block tcn",
            "applied: avoid head SDEHead",
            "applied: only family frequency",
            "ignored: \"paint it red\" is not a directive",
            "ignored: \"avoid colour blue\": \"colour\" is not block, head or family",
            "ignored: \"avoid block NoSuch\": no block \"NoSuch\"",
        ] {
            assert!(notes.contains(n), "{n} not in\n{notes}");
        }
        // a favoured block no built-in has is left for the plan stage to find in the registry
        assert_eq!(s.components, ["NoSuch", "Gated"]);
        assert!(!notes.contains("favour block NoSuch"), "{notes}");
        assert!(s.block_allowed("FreTSBlock") && !s.block_allowed("LSTMBlock"));
        assert!(!s.head_allowed("SDEHead") && s.head_allowed("GBMHead"));
        assert_eq!(Steering::parse(""), Steering::default());
    }
}
