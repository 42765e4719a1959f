//! The built-in (non-LLM) agents the pipeline uses when no LLM is configured or asked for:
//! the history-aware [`planner`], the [`checker`] (spec, divergence, CRPS against GBM, a real
//! SN50 response from the checkpoint) and the rule-based [`debugger`]; [`steering`], the
//! directives of a run's message that the planner follows.
//!
//! They read the history they are given and return decisions; they do not enqueue jobs or
//! advance runs (the run state machine in the engine's binary does).

pub mod checker;
pub mod debugger;
pub mod planner;
pub mod steering;
