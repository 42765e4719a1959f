//! The built-in planner: chooses the next experiments from the history.
//!
//! Half the plan exploits (mutations of the best experiments so far: another
//! head, another block, a learning rate three times higher or lower), half
//! explores (presets and block/head pairs never tried). Nothing already tried
//! (same fingerprint under this budget) is proposed again. The trainer then
//! runs the plan by successive halving, so cheap first rounds weed out the
//! weak. Deterministic for a given history, budget and seed.
//!
//! A run's message steers it ([`plan_steered`], [`super::steering`]): favoured blocks and
//! heads come first (up to half the plan), avoided ones and those outside an `only` never
//! appear, and the plan says which directives it applied and which it ignored.

use std::collections::HashSet;

use rand::seq::{IndexedRandom, SliceRandom};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use trainer::experiments::{fingerprint, Budget, ExperimentRecord};
use trainer::zoo::registry::{recommended, BLOCKS, HEADS, PRESETS, RECOMMENDED};
use trainer::zoo::spec::ExperimentSpec;

use super::steering::Steering;

/// What the planner proposes, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub experiments: Vec<ExperimentSpec>,
    /// One line per experiment: where it came from.
    pub rationale: Vec<String>,
    /// What the planner made of the run's message: one line per directive it applied or
    /// ignored (see [`super::steering`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steering: Vec<String>,
}

/// A mutation of `parent`: other blocks, head or learning rate, with the parent's input
/// features and return scale.
fn child(
    parent: &ExperimentSpec,
    blocks: &[&str],
    head: &str,
    lr: f64,
    budget: &Budget,
    seed: u64,
) -> ExperimentSpec {
    let mut s = spec(blocks, head, lr, budget, seed);
    s.model.backbone.features = parent.model.backbone.features.clone();
    s.data.scale = parent.data.scale;
    s
}

fn spec(blocks: &[&str], head: &str, lr: f64, budget: &Budget, seed: u64) -> ExperimentSpec {
    let mut s = ExperimentSpec::new(blocks, head);
    s.training.lr = lr;
    s.training.seed = seed;
    trainer::experiments::apply_budget(budget, &mut s);
    s
}

/// Plans `budget.experiments` experiments.
pub fn plan(history: &[ExperimentRecord], budget: &Budget, seed: u64) -> Plan {
    plan_steered(history, budget, seed, &Steering::default())
}

/// Plans `budget.experiments` experiments as `steer` asks; the plan's `steering` lists what
/// was applied and ignored.
pub fn plan_steered(
    history: &[ExperimentRecord],
    budget: &Budget,
    seed: u64,
    steer: &Steering,
) -> Plan {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut seen: HashSet<String> = history
        .iter()
        .map(|r| {
            let mut s = r.spec.clone();
            trainer::experiments::apply_budget(budget, &mut s);
            fingerprint(&s)
        })
        .collect();
    let k = budget.experiments.max(1);
    let mut out = Plan {
        experiments: Vec::new(),
        rationale: Vec::new(),
        steering: steer.notes.clone(),
    };
    let mut take = |s: ExperimentSpec, why: String, out: &mut Plan| -> bool {
        if out.experiments.len() >= k || s.validate().is_err() || !steer.allows(&s) {
            return false;
        }
        if seen.insert(fingerprint(&s)) {
            out.experiments.push(s);
            out.rationale.push(why);
            return true;
        }
        false
    };

    // Favoured: the favoured blocks with the favoured heads (or any allowed), first.
    if steer.favours() {
        let mut blocks: Vec<&str> = steer.favour_blocks.clone();
        if blocks.is_empty() {
            blocks = BLOCKS.iter().map(|b| b.name).collect();
            blocks.shuffle(&mut rng);
        }
        let mut heads: Vec<&str> = steer.favour_heads.clone();
        if heads.is_empty() {
            heads = HEADS.iter().map(|h| h.name).collect();
            heads.shuffle(&mut rng);
        }
        let quota = k.div_ceil(2);
        'favoured: for b in &blocks {
            for h in &heads {
                if out.experiments.len() >= quota {
                    break 'favoured;
                }
                take(
                    spec(&[b], h, 1e-3, budget, seed),
                    format!("favoured: {b} + {h}"),
                    &mut out,
                );
            }
        }
    }

    // Exploit: mutate the best so far.
    let mut ranked: Vec<&ExperimentRecord> = history.iter().filter(|r| r.crps.is_some()).collect();
    ranked.sort_by(|a, b| {
        a.crps_ratio()
            .partial_cmp(&b.crps_ratio())
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let exploit = if ranked.is_empty() {
        0
    } else {
        (out.experiments.len() + k.div_ceil(2)).min(k)
    };
    'parents: for parent in ranked.iter().take(exploit) {
        let blocks: Vec<&str> = parent
            .spec
            .model
            .backbone
            .blocks
            .iter()
            .map(String::as_str)
            .collect();
        let lr = parent.spec.training.lr;
        let mut mutations: Vec<(ExperimentSpec, String)> = Vec::new();
        for f in [3.0, 1.0 / 3.0] {
            mutations.push((
                child(
                    &parent.spec,
                    &blocks,
                    &parent.spec.model.head.kind,
                    lr * f,
                    budget,
                    seed,
                ),
                format!("{}: learning rate x{f:.2}", parent.name),
            ));
        }
        for h in HEADS {
            if !h.name.eq_ignore_ascii_case(&parent.spec.model.head.kind) {
                mutations.push((
                    child(&parent.spec, &blocks, h.name, lr, budget, seed),
                    format!("{}: head -> {}", parent.name, h.name),
                ));
            }
        }
        for b in BLOCKS {
            let mut bl = blocks.clone();
            if bl.len() < 2 {
                bl.push(b.name);
            } else {
                let last = bl.len() - 1;
                bl[last] = b.name;
            }
            mutations.push((
                child(
                    &parent.spec,
                    &bl,
                    &parent.spec.model.head.kind,
                    lr,
                    budget,
                    seed,
                ),
                format!("{}: blocks -> {}", parent.name, bl.join("+")),
            ));
        }
        mutations.shuffle(&mut rng);
        for (s, why) in mutations {
            if out.experiments.len() >= exploit.min(k) {
                break 'parents;
            }
            if take(s, why, &mut out) {
                break;
            }
        }
    }

    // Explore: the recommendation for the run's first asset and timeframe, the presets, then
    // random pairs.
    if let Some(asset) = budget.assets.first() {
        let mut s = recommended(asset, budget.timeframe);
        s.training.seed = seed;
        trainer::experiments::apply_budget(budget, &mut s);
        take(s, format!("explore: {RECOMMENDED}"), &mut out);
    }
    let mut presets: Vec<_> = PRESETS.iter().collect();
    presets.shuffle(&mut rng);
    for p in presets {
        take(
            spec(p.blocks, p.head, 1e-3, budget, seed),
            format!("explore: preset {}", p.name),
            &mut out,
        );
    }
    let blocks: Vec<&str> = BLOCKS
        .iter()
        .map(|b| b.name)
        .filter(|b| steer.block_allowed(b))
        .collect();
    let heads: Vec<&str> = HEADS
        .iter()
        .map(|h| h.name)
        .filter(|h| steer.head_allowed(h))
        .collect();
    let mut guard = 0;
    while out.experiments.len() < k && guard < 1000 && !blocks.is_empty() && !heads.is_empty() {
        guard += 1;
        let b = *blocks.choose(&mut rng).expect("blocks exist");
        let h = *heads.choose(&mut rng).expect("heads exist");
        take(
            spec(&[b], h, 1e-3, budget, seed),
            format!("explore: {b} + {h}"),
            &mut out,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use trainer::experiments::RunStatus;

    fn budget(k: usize) -> Budget {
        Budget {
            experiments: k,
            ..Budget::default()
        }
    }

    #[test]
    fn plans_valid_novel_experiments_deterministically() {
        let p = plan(&[], &budget(5), 7);
        assert_eq!(p.experiments.len(), 5);
        assert_eq!(p, plan(&[], &budget(5), 7));
        let fps: HashSet<_> = p.experiments.iter().map(fingerprint).collect();
        assert_eq!(fps.len(), 5);
        assert!(p.experiments.iter().all(|s| s.validate().is_ok()));
        assert!(p.rationale.iter().all(|r| r.starts_with("explore")));
        // the run starts from the recommendation for its asset and timeframe
        assert_eq!(p.rationale[0], "explore: recommended");
        assert_eq!(
            p.experiments[0].data.scale,
            recommended("BTC", Default::default()).data.scale
        );
    }

    #[test]
    fn a_message_steers_the_plan_and_the_plan_says_how() {
        let steer = Steering::parse(
            "favour block wavenet; avoid head SDEHead; only family convolutional; hello",
        );
        let p = plan_steered(&[], &budget(6), 3, &steer);
        assert_eq!(p.experiments.len(), 6);
        let conv = ["TCNBlock", "WaveNetBlock", "TimesNetBlock"];
        for s in &p.experiments {
            assert!(
                s.model
                    .backbone
                    .blocks
                    .iter()
                    .all(|b| conv.contains(&b.as_str())),
                "{:?}",
                s.model.backbone.blocks
            );
            assert_ne!(s.model.head.kind, "SDEHead");
        }
        // the favoured block comes first, in half the plan
        for s in &p.experiments[..3] {
            assert_eq!(s.model.backbone.blocks, ["WaveNetBlock"]);
        }
        assert!(
            p.rationale[0].starts_with("favoured: WaveNetBlock"),
            "{:?}",
            p.rationale
        );
        assert_eq!(p.steering.len(), 4, "{:?}", p.steering);
        assert!(
            p.steering[3].starts_with("ignored: \"hello\""),
            "{:?}",
            p.steering
        );
        // without a message, the plan is the unsteered one
        assert_eq!(
            plan_steered(&[], &budget(4), 3, &Steering::default()),
            plan(&[], &budget(4), 3)
        );
    }

    #[test]
    fn exploits_the_best_and_never_repeats_history() {
        let first = plan(&[], &budget(3), 1);
        let history: Vec<ExperimentRecord> = first
            .experiments
            .iter()
            .enumerate()
            .map(|(i, s)| ExperimentRecord {
                name: trainer::experiments::experiment_name(s),
                run_id: None,
                fingerprint: fingerprint(s),
                spec: s.clone(),
                status: RunStatus::Ok,
                crps: Some(100.0 + i as f64),
                gbm_crps: Some(110.0),
                classical_crps: None,
                param_count: Some(1),
                epochs: 1,
                diverged: false,
                error: None,
                artifact: None,
                checkpoint: None,
                training_time_s: None,
                device: None,
                steps_per_sec: None,
                recorded_at: 0,
            })
            .collect();
        let next = plan(&history, &budget(4), 1);
        assert_eq!(next.experiments.len(), 4);
        let old: HashSet<_> = first.experiments.iter().map(fingerprint).collect();
        assert!(next
            .experiments
            .iter()
            .all(|s| !old.contains(&fingerprint(s))));
        assert!(
            next.rationale[0].starts_with(&history[0].name),
            "the best experiment is mutated first: {:?}",
            next.rationale
        );
    }
}
