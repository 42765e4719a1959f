//! The `author` stage (issue 20): a run's stage whose agent is one of the authoring agents of
//! `agents::authoring` (author, agent_designer, pipeline_architect) or an authored agent that
//! acts as one. The agent's tools act through [`RunWorkshop`], the [`Workshop`] over the
//! registry (`crate::registry`), the agent definitions (`crate::agent_defs`) and the pipeline
//! definition (`super::definition`), calling the same functions as the HTTP routes, so the
//! same validation and ownership rules apply.
//!
//! Everything is written in the name of the run's principal: a bot's run writes as that bot
//! (it overwrites only that bot's components, agents and prompt modules, never a built-in);
//! a run with no bot (`default`: the operator's CLI, or the operator's key without
//! `X-Bot-Id`) writes as the operator. Editing the pipeline definition is the operator's act
//! (as `pipeline-def set` is): in a bot's run the pipeline tools answer a tool error saying
//! so. The stage's result is recorded (the note names what was written) and the run moves
//! on; it plans, trains and publishes nothing. Run history and strategy effectiveness are
//! read from the principal's own runs (a bot sees only its runs; the operator all).
//!
//! What it does not do: execute anything an agent writes (documents are data), or change a
//! run in flight (a run follows the copy of the definition it took at creation).

use std::collections::BTreeMap;
use std::sync::Arc;

use agents::authoring::{authoring_tools, Workshop};
use agents::{AgentName, ResearchSession, ToolError};
use async_trait::async_trait;
use jobs::JobError;
use serde_json::{json, Value};
use trainer::WorkerDirs;

use super::definition::{self, PipelineDef};
use super::llm::{RedisHistory, RunPublisher};
use super::{get_run, list_runs, RunInfo, Task};
use crate::agent_defs;
use crate::registry;
use engine::queue::{Queue, QueueError};
use engine::registry::{self as store, Shelf};

/// The bot of a run nobody's bot started: the operator's.
pub const OPERATOR_BOT: &str = "default";

/// The authoring tools' back end, in the name of `bot` (the operator when it is
/// [`OPERATOR_BOT`]).
pub struct RunWorkshop {
    pub queue: Queue,
    pub bot: String,
}

impl RunWorkshop {
    fn operator(&self) -> bool {
        self.bot == OPERATOR_BOT
    }

    /// The principal's runs (newest first, at most `limit`), with their tasks.
    async fn runs(&self, limit: usize) -> Result<Vec<RunInfo>, ToolError> {
        let ids = list_runs(&self.queue, if self.operator() { limit } else { 500 })
            .await
            .map_err(tool)?;
        let mut out = Vec::new();
        for r in ids
            .into_iter()
            .filter(|r| self.operator() || r.bot == self.bot)
        {
            if let Some(full) = get_run(&self.queue, &r.id).await.map_err(tool)? {
                out.push(full);
            }
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }
}

fn tool(e: impl std::fmt::Display) -> ToolError {
    ToolError::new(e.to_string())
}

fn best_of(task: &Task) -> (Option<f64>, Option<f64>) {
    task.best()
        .map(|b| (b.crps, b.crps_ratio()))
        .unwrap_or((None, None))
}

fn shape(task: &Task) -> String {
    let names: Vec<&str> = task
        .definition
        .stages
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    names.join(" -> ")
}

/// One group's tally of [`effectiveness`].
#[derive(Default)]
struct Tally {
    runs: usize,
    succeeded: usize,
    scored: usize,
    best_crps: Option<f64>,
    ratio_sum: f64,
    improved: usize,
}

impl Tally {
    fn json(&self) -> Value {
        json!({"runs": self.runs, "succeeded": self.succeeded, "best_crps": self.best_crps,
            "mean_best_crps_ratio": (self.scored > 0).then(|| self.ratio_sum / self.scored as f64),
            "share_improved": (self.runs > 0).then(|| self.improved as f64 / self.runs as f64)})
    }
}

/// Strategy effectiveness over `runs` (any order): per pipeline shape (the stage names in
/// order) and per block family (the best experiment's blocks), the runs, those that
/// succeeded, the best CRPS, the mean CRPS/GBM ratio of each run's best, and the share of
/// runs whose best CRPS beat every earlier run's (in creation order).
pub fn effectiveness(runs: &[RunInfo]) -> Value {
    let mut runs: Vec<&RunInfo> = runs.iter().filter(|r| r.task.is_some()).collect();
    runs.sort_by_key(|r| r.created_at_ms);
    let mut shapes: BTreeMap<String, Tally> = BTreeMap::new();
    let mut families: BTreeMap<String, Tally> = BTreeMap::new();
    let mut best_so_far: Option<f64> = None;
    for r in runs {
        let task = r.task.as_ref().expect("filtered");
        let (crps, ratio) = best_of(task);
        let improved = match (crps, best_so_far) {
            (Some(c), Some(b)) => c < b,
            (Some(_), None) => true,
            _ => false,
        };
        if let Some(c) = crps {
            best_so_far = Some(best_so_far.map_or(c, |b| b.min(c)));
        }
        let family = task
            .best()
            .map(|b| b.spec.model.backbone.blocks.join("+"))
            .unwrap_or_else(|| "(none scored)".into());
        for t in [
            shapes.entry(shape(task)).or_default(),
            families.entry(family).or_default(),
        ] {
            t.runs += 1;
            t.succeeded += usize::from(r.state == "succeeded");
            t.improved += usize::from(improved);
            if let Some(c) = crps {
                t.best_crps = Some(t.best_crps.map_or(c, |b: f64| b.min(c)));
            }
            if let Some(x) = ratio {
                t.ratio_sum += x;
                t.scored += 1;
            }
        }
    }
    let rows = |m: BTreeMap<String, Tally>, key: &str| -> Vec<Value> {
        m.into_iter()
            .map(|(k, t)| {
                let mut v = t.json();
                v[key] = json!(k);
                v
            })
            .collect()
    };
    json!({"pipeline_shapes": rows(shapes, "stages"), "block_families": rows(families, "blocks"),
        "best_crps": best_so_far,
        "note": "from the run records: a run's best is its lowest-CRPS experiment; improved = \
                 beat the best CRPS of every earlier run listed"})
}

#[async_trait]
impl Workshop for RunWorkshop {
    async fn list_components(&self) -> Result<Value, ToolError> {
        let names = |l: &[trainer::zoo::registry::ComponentInfo]| -> Vec<&str> {
            l.iter().map(|c| c.name).collect()
        };
        let authored: Vec<Value> = store::list(&self.queue)
            .await
            .map_err(tool)?
            .into_iter()
            .map(|a| {
                json!({"name": a.name, "kind": a.kind, "owner": a.owner, "version": a.version,
                    "content_hash": a.content_hash, "writable": self.operator() || a.owner == self.bot})
            })
            .collect();
        Ok(
            json!({"built_in": {"blocks": names(trainer::zoo::registry::BLOCKS),
            "heads": names(trainer::zoo::registry::HEADS)}, "authored": authored}),
        )
    }

    async fn read_component(&self, name: &str) -> Result<Value, ToolError> {
        if let Some((kind, canonical)) = registry::builtin(name) {
            return Err(ToolError::new(format!(
                "{name:?} is the built-in {kind} {canonical:?}, compiled in (list_blocks / \
                 list_heads describe it); read an authored graph for the format"
            )));
        }
        match store::get(&self.queue, name).await.map_err(tool)? {
            Some(a) => Ok(
                json!({"name": a.name, "owner": a.owner, "version": a.version,
                "document": a.document}),
            ),
            None => Err(ToolError::new(format!(
                "no authored component {name:?}; see list_components"
            ))),
        }
    }

    async fn check_component(&self, document: Value) -> Result<Value, ToolError> {
        let p = registry::prepare(None, document).map_err(tool)?;
        Ok(
            json!({"valid": true, "name": p.doc.name, "content_hash": p.content_hash,
            "report": p.report}),
        )
    }

    async fn write_component(
        &self,
        name: Option<String>,
        document: Value,
    ) -> Result<Value, ToolError> {
        let (p, w) = registry::write(
            &self.queue,
            name.as_deref(),
            document,
            &self.bot,
            self.operator(),
        )
        .await
        .map_err(tool)?;
        Ok(
            json!({"name": p.doc.name, "owner": w.owner, "version": w.version,
            "created": w.created, "content_hash": p.content_hash, "report": p.report}),
        )
    }

    async fn reload_registry(&self) -> Result<Value, ToolError> {
        let v = store::version(&self.queue).await.map_err(tool)?;
        Ok(
            json!({"version": v, "note": "workers read the registry at each job's start; \
            the next job sees this version"}),
        )
    }

    async fn list_agents(&self) -> Result<Value, ToolError> {
        let mut rows: Vec<Value> = agent_defs::builtins()
            .into_iter()
            .map(|d| {
                json!({"name": d.name, "acts_as": d.acts_as, "source": "built-in",
                "tools": d.tools})
            })
            .collect();
        for rec in store::list_of(&self.queue, Shelf::Agents)
            .await
            .map_err(tool)?
        {
            if let Ok(d) = agent_defs::agent_of(&rec) {
                rows.push(
                    json!({"name": d.name, "acts_as": d.acts_as, "source": "authored",
                    "owner": rec.owner, "version": rec.version, "tools": d.tools}),
                );
            }
        }
        Ok(json!({"agents": rows}))
    }

    async fn read_agent(&self, name: &str) -> Result<Value, ToolError> {
        match agent_defs::agent(&self.queue, name).await.map_err(tool)? {
            Some((def, rec)) => Ok(json!({"definition": def,
                "owner": rec.as_ref().map(|r| r.owner.clone()),
                "version": rec.as_ref().map(|r| r.version)})),
            None => Err(tool(agent_defs::DefError::Unknown(name.into()))),
        }
    }

    async fn write_agent(&self, name: Option<String>, document: Value) -> Result<Value, ToolError> {
        let (def, w, hash) = agent_defs::write_agent(
            &self.queue,
            name.as_deref(),
            document,
            &self.bot,
            self.operator(),
        )
        .await
        .map_err(tool)?;
        Ok(
            json!({"name": def.name, "acts_as": def.acts_as, "owner": w.owner,
            "version": w.version, "created": w.created, "content_hash": hash}),
        )
    }

    async fn list_prompts(&self) -> Result<Value, ToolError> {
        let bot = (!self.operator()).then_some(self.bot.as_str());
        let mut rows = Vec::new();
        for rec in store::list_of(&self.queue, Shelf::Prompts)
            .await
            .map_err(tool)?
        {
            if bot.is_some_and(|b| b != rec.owner) {
                continue;
            }
            rows.push(
                json!({"name": rec.name, "owner": rec.owner, "version": rec.version,
                "document": rec.document}),
            );
        }
        Ok(json!({"prompts": rows}))
    }

    async fn write_prompt(
        &self,
        name: Option<String>,
        document: Value,
    ) -> Result<Value, ToolError> {
        let (m, w, hash) = agent_defs::write_prompt(
            &self.queue,
            name.as_deref(),
            document,
            &self.bot,
            self.operator(),
        )
        .await
        .map_err(tool)?;
        Ok(
            json!({"name": m.name, "agent": m.agent, "owner": w.owner, "version": w.version,
            "created": w.created, "content_hash": hash}),
        )
    }

    async fn pipeline(&self) -> Result<Value, ToolError> {
        let def = definition::load(&self.queue).await.map_err(tool)?;
        Ok(serde_json::to_value(def).expect("definitions serialise"))
    }

    async fn store_pipeline(&self, def: Value) -> Result<Value, ToolError> {
        if !self.operator() {
            return Err(ToolError::new(format!(
                "editing the pipeline definition is the operator's act and this run belongs to \
                 bot {:?}; nothing changed (the operator runs the pipeline architect, or uses \
                 `synth-city pipeline-def set`)",
                self.bot
            )));
        }
        let def = PipelineDef::decode(&def.to_string()).map_err(tool)?;
        match definition::store(&self.queue, &def).await {
            Ok(stored) => Ok(serde_json::to_value(stored).expect("definitions serialise")),
            Err(QueueError::Invalid(why)) => Err(ToolError::new(format!(
                "refused by the pipeline's rules, nothing changed: {why}"
            ))),
            Err(e) => Err(tool(e)),
        }
    }

    async fn run_history(&self, limit: usize) -> Result<Value, ToolError> {
        let runs = self.runs(limit).await?;
        let rows: Vec<Value> = runs
            .iter()
            .map(|r| {
                let task = r.task.as_ref();
                let (crps, ratio) = task.map(best_of).unwrap_or((None, None));
                let stages: Vec<Value> = task
                    .map(|t| {
                        t.stages
                            .iter()
                            .map(|s| {
                                let note: String = s.note.chars().take(200).collect();
                                json!({"name": s.name, "stage": s.stage, "ok": s.ok, "note": note})
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                json!({"run_id": r.id, "bot": r.bot, "state": r.state,
                    "created_at_ms": r.created_at_ms, "shape": task.map(shape),
                    "stages": stages, "experiments": task.map(|t| t.results.len()),
                    "best_crps": crps, "best_crps_ratio": ratio})
            })
            .collect();
        Ok(json!({"runs": rows}))
    }

    async fn strategy_effectiveness(&self, limit: usize) -> Result<Value, ToolError> {
        Ok(effectiveness(&self.runs(limit).await?))
    }
}

/// What an author stage did: its note, or its error and whether a retry may help.
pub type Authored = Result<String, (String, bool)>;

/// Runs the current stage's authoring agent for run `run` in the worker's directories: the
/// agent's current definition and the run bot's prompt modules, the research tools and the
/// authoring tools over a [`RunWorkshop`] in the run bot's name. The model and endpoint are
/// the planner's (`PLANNER_MODEL`, ...) unless the definition names a model.
pub async fn run_stage(
    q: &Queue,
    dirs: &WorkerDirs,
    run: &RunInfo,
    task: &Task,
    temperature: f64,
) -> Result<(String, Authored, agents::Usage), JobError> {
    let name = task.current().map(|s| s.agent.clone()).unwrap_or_default();
    let none = agents::Usage::default();
    let (def, modules) = match agent_defs::for_stage(q, &name, &run.bot).await {
        Ok(d) => d,
        Err(agent_defs::DefError::Store(engine::registry::RegistryError::Queue(e))) => {
            return Err(JobError::retry(format!("the agent registry: {e}")))
        }
        Err(e) => {
            let why = format!("the stage's agent {name:?} cannot be had: {e}");
            return Ok((name, Err((why, false)), none));
        }
    };
    let llm = match agents::LlmConfig::from_env(AgentName::Planner) {
        Ok(c) => c,
        Err(e) => {
            let why = format!("the {name} agent cannot run: {e}");
            return Ok((name, Err((why, false)), none));
        }
    };
    let publisher = RunPublisher {
        dirs: dirs.clone(),
        run_id: run.id.clone(),
        records: Vec::new(),
        summary: Value::Null,
    };
    let mut session = ResearchSession::new(
        &run.id,
        dirs.data_dir.clone(),
        dirs.work_dir.clone(),
        Arc::new(RedisHistory { queue: q.clone() }),
        Arc::new(publisher),
    );
    session.device = dirs.device.clone();
    let desk = Arc::new(RunWorkshop {
        queue: q.clone(),
        bot: run.bot.clone(),
    });
    let tools = authoring_tools(desk);
    let map = super::llm::agent_task(q, task, "author").await;
    let opts = agents::RunOptions {
        temperature: temperature as f32,
        channel: task.options.channel.clone(),
        ..Default::default()
    };
    let result = match agents::run_def_with(
        &def,
        &modules,
        &llm,
        Arc::new(session),
        Some(&tools),
        &map,
        &opts,
    )
    .await
    {
        Ok(r) => r,
        Err(e) => {
            let why = format!("the {name} agent could not start: {e}");
            return Ok((name, Err((why, true)), none));
        }
    };
    let usage = result.usage;
    if !result.success {
        let raw: String = result.raw_text.chars().take(3000).collect();
        return Ok((
            name.clone(),
            Err((format!("the {name} agent failed: {raw}"), true)),
            usage,
        ));
    }
    let done: Vec<&str> = result
        .tool_calls
        .iter()
        .filter(|c| c.ok && changes(&c.name))
        .map(|c| c.name.as_str())
        .collect();
    let refused = result
        .tool_calls
        .iter()
        .filter(|c| !c.ok && changes(&c.name))
        .count();
    let summary: String = result
        .structured
        .as_ref()
        .and_then(|s| s["summary"].as_str())
        .unwrap_or("")
        .chars()
        .take(300)
        .collect();
    let note = format!(
        "the {name} agent made {} change(s) [{}], {refused} refused; {summary}",
        done.len(),
        done.join(", ")
    );
    Ok((name, Ok(note), usage))
}

/// The prefixes of the tools that change something (what a stage's note counts).
const WRITES: &[&str] = &["write_", "add_", "remove_", "reorder_", "update_", "reset_"];

fn changes(tool: &str) -> bool {
    WRITES.iter().any(|p| tool.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::stages::tests::record;
    use trainer::zoo::spec::ExperimentSpec;

    fn run(id: &str, at: u64, state: &str, blocks: &[&str], crps: f64, short: bool) -> RunInfo {
        let mut task = Task::new(Default::default(), PipelineDef::default());
        if short {
            task.definition.stages.pop();
        }
        task.results
            .push(record(ExperimentSpec::new(blocks, "GBMHead"), Some(crps)));
        RunInfo {
            id: id.into(),
            bot: OPERATOR_BOT.into(),
            state: state.into(),
            stage: "done".into(),
            attempt: 0,
            created_at_ms: at,
            finished_at_ms: None,
            job: None,
            task: Some(task),
            summary: None,
        }
    }

    #[test]
    fn effectiveness_is_per_shape_and_family_in_creation_order() {
        // newest first, as the history lists them
        let runs = [
            run("c", 3, "failed", &["LSTMBlock"], 1.2, true),
            run("b", 2, "succeeded", &["TCNBlock"], 0.9, false),
            run("a", 1, "succeeded", &["TCNBlock"], 1.0, false),
        ];
        let e = effectiveness(&runs);
        let shape = |s: &str| {
            e["pipeline_shapes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["stages"] == s)
                .cloned()
                .unwrap_or_else(|| panic!("{e}"))
        };
        let full = shape("planner -> trainer -> check_debug");
        assert_eq!(
            (
                full["runs"].as_u64(),
                full["succeeded"].as_u64(),
                full["best_crps"].as_f64()
            ),
            (Some(2), Some(2), Some(0.9)),
            "{e}"
        );
        assert_eq!(
            full["share_improved"], 1.0,
            "a then b each beat every earlier run"
        );
        let short = shape("planner -> trainer");
        assert_eq!(
            (short["runs"].as_u64(), short["share_improved"].as_f64()),
            (Some(1), Some(0.0))
        );
        let fam = &e["block_families"];
        assert_eq!(fam[0]["blocks"], "LSTMBlock", "{e}");
        assert_eq!(fam[1]["blocks"], "TCNBlock");
        assert!((fam[1]["mean_best_crps_ratio"].as_f64().unwrap() - 0.19).abs() < 1e-9);
        assert_eq!(e["best_crps"], 0.9);
    }
}
