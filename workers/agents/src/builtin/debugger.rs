//! The built-in debugger: turns a failed check into a changed experiment.
//!
//! Rules, in order: an invalid spec gets the fix its validator names where one
//! is mechanical (width not divisible by the heads, unknown component); NaN or
//! divergence halves the width and cuts the learning rate by 10; a model far
//! worse than GBM (or too slow) gets a smaller, simpler configuration. Every
//! change is explained; an unchanged spec is never returned (that would stall
//! the check/debug loop).

use serde::{Deserialize, Serialize};

use trainer::experiments::{fingerprint, ExperimentRecord};
use trainer::zoo::spec::ExperimentSpec;

/// The debugger's proposal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fix {
    pub spec: ExperimentSpec,
    pub changes: Vec<String>,
}

/// Proposes a changed experiment for `rec` given the checker's `problems`;
/// `attempt` (0-based) makes successive fixes differ.
pub fn debug(rec: &ExperimentRecord, problems: &[String], attempt: u32) -> Option<Fix> {
    let mut s = rec.spec.clone();
    let mut changes = Vec::new();
    let text = problems.join("\n").to_ascii_lowercase();
    if let Err(issues) = s.validate() {
        for i in issues {
            let m = i.message.to_ascii_lowercase();
            if m.contains("divisible") {
                let d = s.model.backbone.d_model;
                s.model.backbone.d_model = d.div_ceil(8) * 8;
                changes.push(format!(
                    "d_model {d} -> {} (divisible by the heads)",
                    s.model.backbone.d_model
                ));
            } else if i.field.contains("blocks") {
                s.model.backbone.blocks = vec!["LSTMBlock".into()];
                changes.push(format!("{}: replaced the blocks with LSTMBlock", i.field));
            } else if i.field.contains("head") {
                s.model.head.kind = "GBMHead".into();
                s.model.head.kwargs.clear();
                changes.push(format!("{}: replaced the head with GBMHead", i.field));
            }
        }
    }
    if rec.diverged || text.contains("not a finite") || text.contains("nan") {
        let lr = s.training.lr;
        s.training.lr = lr / 10.0;
        s.training.grad_clip = s.training.grad_clip.min(0.5);
        changes.push(format!(
            "learning rate {lr:e} -> {:e}, gradient clip 0.5 (divergence)",
            s.training.lr
        ));
    }
    if text.contains("gbm baseline") || text.contains("sn50 validation") || changes.is_empty() {
        // Simpler and steadier: the smallest recurrent model with a GBM head,
        // a lower learning rate each attempt.
        let lr = s.training.lr;
        s.model.backbone.blocks = vec!["LSTMBlock".into()];
        s.model.backbone.block_kwargs.clear();
        s.model.head.kind = "GBMHead".into();
        s.model.head.kwargs.clear();
        s.training.lr = lr * 0.5f64.powi(attempt as i32 + 1);
        changes.push(format!(
            "simpler model (LSTMBlock + GBMHead), learning rate {lr:e} -> {:e}",
            s.training.lr
        ));
    }
    if s.validate().is_err() || fingerprint(&s) == fingerprint(&rec.spec) && s == rec.spec {
        return None;
    }
    Some(Fix { spec: s, changes })
}

/// The architectures [`change_course`] moves to, in order: small, steady combinations.
const COURSES: &[(&[&str], &str)] = &[
    (&["LSTMBlock"], "GBMHead"),
    (&["TCNBlock"], "GBMHead"),
    (&["TransformerBlock"], "GBMHead"),
    (&["NBeatsBlock"], "GBMHead"),
    (&["WaveNetBlock"], "SDEHead"),
    (&["FreTSBlock"], "GBMHead"),
    (&["LSTMBlock"], "MixtureHead"),
    (&["PatchTSTBlock"], "GBMHead"),
];

/// An experiment's architecture: its canonical blocks and head, e.g. `LSTMBlock|GBMHead`.
pub fn architecture(spec: &ExperimentSpec) -> String {
    let blocks: Vec<String> = spec
        .model
        .backbone
        .blocks
        .iter()
        .map(|b| {
            trainer::zoo::registry::find_block(b)
                .map(|c| c.name.to_string())
                .unwrap_or_else(|| b.clone())
        })
        .collect();
    let head = trainer::zoo::registry::find_head(&spec.model.head.kind)
        .map(|c| c.name.to_string())
        .unwrap_or_else(|| spec.model.head.kind.clone());
    format!("{}|{head}", blocks.join("+"))
}

/// A different approach after the loop stalled (the same fix proposed again): the first of
/// [`COURSES`] whose [`architecture`] is not in `tried`, keeping the width, window and budget
/// of `rec` with half its learning rate. None when every course has been tried.
pub fn change_course(
    rec: &ExperimentRecord,
    tried: &std::collections::BTreeSet<String>,
) -> Option<Fix> {
    COURSES.iter().find_map(|(blocks, head)| {
        let mut s = rec.spec.clone();
        s.model.backbone.blocks = blocks.iter().map(|b| b.to_string()).collect();
        s.model.backbone.block_kwargs.clear();
        s.model.head.kind = head.to_string();
        s.model.head.kwargs.clear();
        s.training.lr = rec.spec.training.lr * 0.5;
        if s.validate().is_err() || tried.contains(&architecture(&s)) {
            return None;
        }
        Some(Fix {
            changes: vec![format!(
                "stalled: changed course to {} + {head}, learning rate {:e} -> {:e}",
                blocks.join("+"),
                rec.spec.training.lr,
                s.training.lr
            )],
            spec: s,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use trainer::experiments::RunStatus;

    fn record(spec: ExperimentSpec) -> ExperimentRecord {
        ExperimentRecord {
            name: "x".into(),
            run_id: None,
            fingerprint: fingerprint(&spec),
            spec,
            status: RunStatus::Failed,
            crps: None,
            gbm_crps: Some(100.0),
            classical_crps: None,
            param_count: None,
            epochs: 0,
            diverged: true,
            error: None,
            artifact: None,
            checkpoint: None,
            training_time_s: None,
            device: None,
            steps_per_sec: None,
            recorded_at: 0,
        }
    }

    #[test]
    fn divergence_lowers_the_learning_rate() {
        let rec = record(ExperimentSpec::new(&["LSTMBlock"], "GBMHead"));
        let fix = debug(&rec, &["training diverged".into()], 0).unwrap();
        assert!(fix.spec.training.lr < rec.spec.training.lr);
        assert!(fix.changes.iter().any(|c| c.contains("divergence")));
        assert!(fix.spec.validate().is_ok());
    }

    #[test]
    fn change_course_skips_what_was_tried() {
        let rec = record(ExperimentSpec::new(&["LSTMBlock"], "GBMHead"));
        let mut tried = std::collections::BTreeSet::from([architecture(&rec.spec)]);
        assert_eq!(tried.first().unwrap(), "LSTMBlock|GBMHead");
        let a = change_course(&rec, &tried).unwrap();
        assert_eq!(a.spec.model.backbone.blocks, vec!["TCNBlock".to_string()]);
        tried.insert(architecture(&a.spec));
        let b = change_course(&rec, &tried).unwrap();
        assert_ne!(architecture(&a.spec), architecture(&b.spec));
        assert!(a.changes[0].starts_with("stalled"));
    }

    #[test]
    fn successive_fixes_differ() {
        let mut rec = record(ExperimentSpec::new(&["TransformerBlock"], "MixtureHead"));
        rec.diverged = false;
        let p = vec!["CRPS 300 is more than 1.5x the GBM baseline's 100".to_string()];
        let a = debug(&rec, &p, 0).unwrap();
        let b = debug(&rec, &p, 1).unwrap();
        assert_ne!(a.spec, b.spec);
        assert_eq!(a.spec.model.head.kind, "GBMHead");
    }
}
