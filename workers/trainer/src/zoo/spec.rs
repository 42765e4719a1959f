//! The experiment spec (JSON, versioned): model (backbone blocks, d_model, seq_len, features,
//! per-block kwargs; head kind and kwargs), training (horizon, paths, batch, lr, epochs,
//! patience, seed, ...) and data (assets, timeframe, split). [`ExperimentSpec::validate`]
//! returns every problem at once, each naming the field and the fix;
//! [`ExperimentSpec::param_count`] and [`ExperimentSpec::flops_estimate`] size a spec.

use std::collections::BTreeSet;

use jobs::Timeframe;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::features::{Gaps, Scale, DEFAULT_FEATURES, FEATURES};
use super::graph::Kind;
use super::registry::{find_block, find_head, resolve, Params};

/// The spec format version this build reads and writes.
pub const SPEC_VERSION: u32 = 1;

fn v1() -> u32 {
    SPEC_VERSION
}
fn default_features() -> Vec<String> {
    DEFAULT_FEATURES.iter().map(|s| s.to_string()).collect()
}

/// A whole experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentSpec {
    #[serde(default = "v1")]
    pub version: u32,
    pub model: ModelSpec,
    pub training: TrainingSpec,
    pub data: DataSpec,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    pub backbone: BackboneSpec,
    pub head: HeadSpec,
    /// Component graphs (`zoo::graph`, docs/components.md) this model uses, carried inline as
    /// data: a block named `graph:<name>` is the block document of that name here. Saved with
    /// the spec in every checkpoint, so a checkpoint keeps the graph it was trained with.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<super::graph::ComponentDoc>,
}

/// The prefix of a block name that refers to a component graph in `model.components`.
pub const GRAPH_PREFIX: &str = "graph:";

/// The most component graphs a spec may carry.
pub const MAX_COMPONENTS: usize = 8;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackboneSpec {
    pub blocks: Vec<String>,
    pub d_model: usize,
    /// History bars per window.
    pub seq_len: usize,
    /// Input features by name (see [`FEATURES`]).
    #[serde(default = "default_features")]
    pub features: Vec<String>,
    /// One object per block (or none at all).
    #[serde(default)]
    pub block_kwargs: Vec<Map<String, Value>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadSpec {
    pub kind: String,
    #[serde(flatten)]
    pub kwargs: Map<String, Value>,
}

/// Which sample CRPS trains the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LossKind {
    /// The ensemble CRPS (spread term over `n^2`).
    #[default]
    Crps,
    /// The almost-fair CRPS (Lang et al. 2024): spread term times `(n - 1 + alpha) / (n - 1)`.
    Afcrps,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingSpec {
    /// Steps ahead: 288 for 5m bars (24 h), 60 for 1m bars (1 h).
    pub horizon: usize,
    /// Sampled paths per window in the training loss.
    pub n_paths: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub epochs: usize,
    /// Epochs without a validation improvement before stopping.
    pub patience: usize,
    pub seed: u64,
    #[serde(default = "d_wd")]
    pub weight_decay: f64,
    #[serde(default = "d_clip")]
    pub grad_clip: f64,
    #[serde(default = "d_warmup")]
    pub warmup_steps: usize,
    #[serde(default)]
    pub loss: LossKind,
    #[serde(default = "d_alpha")]
    pub crps_alpha: f64,
    /// Batches per epoch (windows are reshuffled each epoch).
    #[serde(default = "d_steps")]
    pub steps_per_epoch: usize,
    /// Validation windows for the loss and for the SN50 evaluation.
    #[serde(default = "d_eval_windows")]
    pub eval_windows: usize,
    /// Paths per window in the SN50 evaluation (the validator asks for 1000).
    #[serde(default = "d_eval_paths")]
    pub eval_paths: usize,
    /// The factor on the volatility term in the training loss (`zoo::vol_loss`), for
    /// competitions that score one (Crypto 1 h). 0 (the default, and what specs written before
    /// it read as) trains on the price CRPS alone; [`ExperimentSpec::set_timeframe`] sets 1.0
    /// when it switches a spec to `1m`. Left out of the JSON when 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub vol_loss_weight: f64,
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

/// The volatility-loss weight a timeframe starts with: 1.0 for `1m` (the Crypto 1 h
/// competition scores price CRPS plus a volatility term, weighed as the validator weighs them),
/// 0 for `5m` (the 24 h competitions have none).
pub fn default_vol_loss_weight(tf: Timeframe) -> f64 {
    if tf == Timeframe::OneMinute {
        1.0
    } else {
        0.0
    }
}

fn d_wd() -> f64 {
    0.01
}
fn d_clip() -> f64 {
    1.0
}
fn d_warmup() -> usize {
    10
}
fn d_alpha() -> f64 {
    0.95
}
fn d_steps() -> usize {
    50
}
fn d_eval_windows() -> usize {
    32
}
fn d_eval_paths() -> usize {
    1000
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSpec {
    pub assets: Vec<String>,
    /// `5m` (the 24 h prompt) or `1m` (the 1 h prompt).
    pub timeframe: Timeframe,
    /// The last fraction of each asset's bars held out for validation (time-ordered).
    #[serde(default = "d_val")]
    pub val_fraction: f64,
    /// Bars between consecutive training windows.
    #[serde(default = "d_stride")]
    pub stride: usize,
    /// How returns are standardised for the head: `global` (one standard deviation per asset)
    /// or `ewma[:HOURS]` (each window's EWMA volatility; see `features::Scale`).
    #[serde(default, skip_serializing_if = "is_global")]
    pub scale: Scale,
    /// `drop` (windows of consecutive bars only) or `bridge` (windows across market closures
    /// and gaps, missing target steps left out; see `features::Gaps`).
    #[serde(default, skip_serializing_if = "is_drop")]
    pub gaps: Gaps,
    /// Days at the end of each asset's bars left out of training and validation alike, for a
    /// test period no part of the experiment has seen (`score backtest --last-days` on it).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub holdout_days: f64,
    /// The dataset the bars came from (`ds-` and 16 hex digits, see `jobs::dataset`): set by a
    /// pipeline run's train stage to the run's pinned dataset, so that the record says which
    /// bars it was trained on (a result is reproducible from the dataset, the spec and the
    /// seed). Absent: the bars of the data directory of the machine that trained it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<String>,
}

fn is_global(s: &Scale) -> bool {
    *s == Scale::Global
}
fn is_drop(g: &Gaps) -> bool {
    *g == Gaps::Drop
}

fn d_val() -> f64 {
    0.2
}
fn d_stride() -> usize {
    12
}

/// One problem with a spec: the field (JSON path) and what is wrong and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpecIssue {
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for SpecIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// The horizons the seed's bots send (`POST /experiment/create` and `experiment --horizon`
/// default to 12; its checker accepted 12, 24 and 48): steps of the seed's synthetic data,
/// which no SN50 prompt asks for.
pub const SEED_HORIZONS: [usize; 3] = [12, 24, 48];

/// A value a request gave that was replaced, and why (answered beside the result, so the
/// caller learns what was used).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Replaced {
    pub field: String,
    pub given: Value,
    pub used: Value,
    pub message: String,
}

/// The timeframe a request's `horizon` and `timeframe` (each optional) come to, the seed's way:
/// a spec's horizon is the SN50 prompt's length on its timeframe (288 steps of 5 minutes, 60 of
/// 1 minute), so
///
/// - with a timeframe, any horizon is replaced by that timeframe's (the seed forced `horizon`
///   to `pred_len` whenever a timeframe was given), noted when it differed;
/// - without one, a timeframe's own horizon picks it (288: 5m, 60: 1m), and a seed horizon
///   ([`SEED_HORIZONS`]) is replaced by the default timeframe's (5m, 288), noted;
/// - any other horizon without a timeframe is an issue naming `field`, the accepted values and
///   the fix.
///
/// `Ok((None, _))`: neither was given; the spec keeps its own timeframe and horizon.
pub fn seed_horizon(
    field: &str,
    horizon: Option<usize>,
    timeframe: Option<Timeframe>,
) -> Result<(Option<Timeframe>, Option<Replaced>), SpecIssue> {
    let prompt = |tf: Timeframe| {
        format!(
            "timeframe {tf}'s SN50 prompt ({} h of {}-minute steps) needs {} steps",
            tf.horizon_secs() / 3600,
            tf.step_secs() / 60,
            tf.horizon_steps()
        )
    };
    let replaced = |h: usize, tf: Timeframe, why: String| Replaced {
        field: field.to_string(),
        given: h.into(),
        used: tf.horizon_steps().into(),
        message: format!(
            "horizon {h} replaced by {}: {why}; leave `horizon` out to get it without this note",
            tf.horizon_steps()
        ),
    };
    match (horizon, timeframe) {
        (None, tf) => Ok((tf, None)),
        (Some(h), Some(tf)) if h == tf.horizon_steps() => Ok((Some(tf), None)),
        (Some(h), Some(tf)) => Ok((Some(tf), Some(replaced(h, tf, prompt(tf))))),
        (Some(h), None) => {
            if let Some(tf) = Timeframe::ALL.into_iter().find(|t| t.horizon_steps() == h) {
                return Ok((Some(tf), None));
            }
            let tf = Timeframe::FiveMinutes;
            if SEED_HORIZONS.contains(&h) {
                let why = format!(
                    "without `timeframe` a spec is for {tf} ({}; send \"timeframe\": \"1m\" \
                     for the 1 h prompt's {})",
                    prompt(tf),
                    Timeframe::OneMinute.horizon_steps()
                );
                return Ok((Some(tf), Some(replaced(h, tf, why))));
            }
            Err(SpecIssue {
                field: field.to_string(),
                message: format!(
                    "{h} is not a horizon SN50 asks for: use 288 (timeframe \"5m\", the 24 h \
                     prompt) or 60 (timeframe \"1m\", the 1 h prompt), or send \"timeframe\": \
                     \"5m\" or \"1m\" and leave `horizon` out (it follows the timeframe)"
                ),
            })
        }
    }
}

/// A validated spec's components, canonical names with resolved parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// Canonical block names with resolved parameters; a graph block is named `"graph"`, its
    /// checked graph in [`Resolved::graphs`] under the same index.
    pub blocks: Vec<(&'static str, Params)>,
    pub graphs: std::collections::BTreeMap<usize, std::sync::Arc<super::graph::Checked>>,
    /// The head's checked graph when the head is `graph:<name>` (its name is then `"graph"`).
    pub head_graph: Option<std::sync::Arc<super::graph::Checked>>,
    pub head: (&'static str, Params),
    pub bar_seconds: i64,
}

impl ExperimentSpec {
    /// A spec with the defaults for these blocks and head.
    pub fn new(blocks: &[&str], head: &str) -> Self {
        ExperimentSpec {
            version: SPEC_VERSION,
            model: ModelSpec {
                backbone: BackboneSpec {
                    blocks: blocks.iter().map(|s| s.to_string()).collect(),
                    d_model: 32,
                    seq_len: 64,
                    features: default_features(),
                    block_kwargs: Vec::new(),
                },
                head: HeadSpec {
                    kind: head.to_string(),
                    kwargs: Map::new(),
                },
                components: Vec::new(),
            },
            training: TrainingSpec {
                horizon: 288,
                n_paths: 32,
                batch_size: 16,
                lr: 1e-3,
                epochs: 5,
                patience: 3,
                seed: 42,
                weight_decay: d_wd(),
                grad_clip: d_clip(),
                warmup_steps: d_warmup(),
                loss: LossKind::Crps,
                crps_alpha: d_alpha(),
                steps_per_epoch: d_steps(),
                eval_windows: d_eval_windows(),
                eval_paths: d_eval_paths(),
                vol_loss_weight: 0.0,
            },
            data: DataSpec {
                assets: vec!["BTC".into()],
                timeframe: Timeframe::FiveMinutes,
                val_fraction: d_val(),
                stride: d_stride(),
                scale: Scale::Global,
                gaps: Gaps::Drop,
                holdout_days: 0.0,
                dataset: None,
            },
        }
    }

    /// Switch the spec to `tf`: the timeframe, the horizon its prompt needs and, when the
    /// timeframe changes, the volatility-loss weight that timeframe starts with
    /// ([`default_vol_loss_weight`]). A spec already on `tf` keeps its weight, so an explicit
    /// (or stored) weight survives re-applying the same timeframe.
    pub fn set_timeframe(&mut self, tf: Timeframe) {
        if self.data.timeframe != tf {
            self.training.vol_loss_weight = default_vol_loss_weight(tf);
        }
        self.data.timeframe = tf;
        self.training.horizon = tf.horizon_steps();
    }

    /// Parse JSON text (unknown fields are refused by name).
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// Check everything; returns every problem at once.
    pub fn validate(&self) -> Result<Resolved, Vec<SpecIssue>> {
        let mut issues = Vec::new();
        let mut push = |field: &str, message: String| {
            issues.push(SpecIssue {
                field: field.to_string(),
                message,
            })
        };
        if self.version != SPEC_VERSION {
            push(
                "version",
                format!(
                    "version {} is not supported; this build reads version {SPEC_VERSION}",
                    self.version
                ),
            );
        }
        let bb = &self.model.backbone;
        let (d, s) = (bb.d_model, bb.seq_len);
        if d == 0 || d > 1024 {
            push(
                "model.backbone.d_model",
                format!("{d} is out of range; use 1 to 1024 (e.g. 32)"),
            );
        }
        if !(4..=4096).contains(&s) {
            push(
                "model.backbone.seq_len",
                format!("{s} is out of range; use 4 to 4096 history bars (e.g. 64)"),
            );
        }
        if bb.blocks.is_empty() {
            push(
                "model.backbone.blocks",
                "no blocks; list at least one (see `synth-city components`)".into(),
            );
        }
        if !bb.block_kwargs.is_empty() && bb.block_kwargs.len() != bb.blocks.len() {
            push(
                "model.backbone.block_kwargs",
                format!("{} entries for {} blocks; give one object per block (use {{}} for defaults) or leave it out", bb.block_kwargs.len(), bb.blocks.len()),
            );
        }
        if bb.features.is_empty() {
            push(
                "model.backbone.features",
                format!("no features; use some of {}", FEATURES.join(", ")),
            );
        }
        let mut seen = BTreeSet::new();
        for (i, f) in bb.features.iter().enumerate() {
            if !FEATURES.contains(&f.as_str()) {
                push(
                    &format!("model.backbone.features[{i}]"),
                    format!("unknown feature {f:?}; use one of {}", FEATURES.join(", ")),
                );
            } else if !seen.insert(f.as_str()) {
                push(
                    &format!("model.backbone.features[{i}]"),
                    format!("{f:?} is listed twice; remove the duplicate"),
                );
            }
        }
        let empty = Map::new();
        let ctx = super::graph::Ctx {
            d_model: d,
            seq_len: s,
        };
        let mut issues_extend: Vec<SpecIssue> = Vec::new();
        let mut head_graph = None;
        let mut blocks = Vec::new();
        let mut graphs = std::collections::BTreeMap::new();
        let comps = &self.model.components;
        if comps.len() > MAX_COMPONENTS {
            push(
                "model.components",
                format!(
                    "{} component graphs; a spec carries at most {MAX_COMPONENTS}",
                    comps.len()
                ),
            );
        }
        for (j, c) in comps.iter().enumerate() {
            if comps[..j].iter().any(|o| o.name == c.name) {
                push(
                    &format!("model.components[{j}].name"),
                    format!(
                        "{:?} is used twice; give each component its own name",
                        c.name
                    ),
                );
            }
            let used = bb
                .blocks
                .iter()
                .chain(std::iter::once(&self.model.head.kind))
                .any(|b| b.strip_prefix(GRAPH_PREFIX) == Some(&c.name));
            if !used {
                push(
                    &format!("model.components[{j}]"),
                    format!(
                        "{:?} is not used; name it in model.backbone.blocks as \"{GRAPH_PREFIX}{}\" or remove it",
                        c.name, c.name
                    ),
                );
            }
        }
        for (i, name) in bb.blocks.iter().enumerate() {
            let field = format!("model.backbone.blocks[{i}]");
            if let Some(gname) = name.strip_prefix(GRAPH_PREFIX) {
                let kw = bb.block_kwargs.get(i).unwrap_or(&empty);
                let kw_field = format!("model.backbone.block_kwargs[{i}]");
                match check_graph(comps, gname, Kind::Block, ctx, kw, &field, &kw_field) {
                    Ok(c) => {
                        blocks.push(("graph", Params(c.params.clone())));
                        graphs.insert(blocks.len() - 1, std::sync::Arc::new(c));
                    }
                    Err(errs) => issues_extend.extend(errs),
                }
                continue;
            }
            let Some(info) = find_block(name) else {
                let known: Vec<&str> = super::registry::BLOCKS.iter().map(|b| b.name).collect();
                push(
                    &field,
                    format!("unknown block {name:?}; use one of {}", known.join(", ")),
                );
                continue;
            };
            let kw = bb.block_kwargs.get(i).unwrap_or(&empty);
            let (p, errs) = resolve(info, kw);
            for (k, m) in errs {
                push(&format!("model.backbone.block_kwargs[{i}].{k}"), m);
            }
            for (k, m) in block_constraints(info.name, &p, d, s) {
                push(&format!("model.backbone.block_kwargs[{i}].{k}"), m);
            }
            blocks.push((info.name, p));
        }
        let head = match find_head(&self.model.head.kind) {
            None if self.model.head.kind.starts_with(GRAPH_PREFIX) => {
                let gname = &self.model.head.kind[GRAPH_PREFIX.len()..];
                match check_graph(
                    comps,
                    gname,
                    Kind::Head,
                    ctx,
                    &self.model.head.kwargs,
                    "model.head.kind",
                    "model.head",
                ) {
                    Ok(c) => {
                        let p = Params(c.params.clone());
                        head_graph = Some(std::sync::Arc::new(c));
                        Some(("graph", p))
                    }
                    Err(errs) => {
                        issues_extend.extend(errs);
                        None
                    }
                }
            }
            None => {
                let known: Vec<&str> = super::registry::HEADS.iter().map(|h| h.name).collect();
                push(
                    "model.head.kind",
                    format!(
                        "unknown head {:?}; use one of {}",
                        self.model.head.kind,
                        known.join(", ")
                    ),
                );
                None
            }
            Some(info) => {
                let (p, errs) = resolve(info, &self.model.head.kwargs);
                for (k, m) in errs {
                    push(&format!("model.head.{k}"), m);
                }
                Some((info.name, p))
            }
        };
        let t = &self.training;
        let tf = self.data.timeframe;
        let h = tf.horizon_steps();
        if t.horizon != h {
            push(
                "training.horizon",
                format!("{} does not match timeframe {tf}: an SN50 {} prompt needs {h} steps; set horizon to {h}", t.horizon, if h == 288 { "24 h" } else { "1 h" }),
            );
        }
        if t.n_paths < 2 {
            push(
                "training.n_paths",
                format!(
                    "{} paths cannot form a sample CRPS; use at least 2 (e.g. 32)",
                    t.n_paths
                ),
            );
        }
        if t.batch_size == 0 {
            push("training.batch_size", "must be at least 1 (e.g. 16)".into());
        }
        if !(t.lr > 0.0 && t.lr <= 1.0) {
            push(
                "training.lr",
                format!(
                    "{} is out of range; use a learning rate in (0, 1], e.g. 0.001",
                    t.lr
                ),
            );
        }
        if t.epochs == 0 {
            push("training.epochs", "must be at least 1".into());
        }
        if t.patience == 0 {
            push("training.patience", "must be at least 1 epoch".into());
        }
        if !(t.weight_decay >= 0.0 && t.weight_decay.is_finite()) {
            push(
                "training.weight_decay",
                format!(
                    "{} must be a finite number >= 0 (e.g. 0.01)",
                    t.weight_decay
                ),
            );
        }
        if !(t.grad_clip > 0.0 && t.grad_clip.is_finite()) {
            push(
                "training.grad_clip",
                format!("{} must be a finite number > 0 (e.g. 1.0)", t.grad_clip),
            );
        }
        if !(0.0..=1.0).contains(&t.crps_alpha) {
            push(
                "training.crps_alpha",
                format!("{} must be in [0, 1] (e.g. 0.95)", t.crps_alpha),
            );
        }
        if !(t.vol_loss_weight >= 0.0 && t.vol_loss_weight.is_finite()) {
            push(
                "training.vol_loss_weight",
                format!(
                    "{} must be a finite number >= 0 (1.0 weighs the volatility term as the validator does, 0 leaves it out)",
                    t.vol_loss_weight
                ),
            );
        }
        if t.steps_per_epoch == 0 {
            push("training.steps_per_epoch", "must be at least 1".into());
        }
        if t.eval_windows == 0 {
            push("training.eval_windows", "must be at least 1".into());
        }
        if t.eval_paths < 2 {
            push(
                "training.eval_paths",
                "must be at least 2 (the validator asks for 1000)".into(),
            );
        }
        if self.data.assets.is_empty() || self.data.assets.iter().any(|a| a.trim().is_empty()) {
            push(
                "data.assets",
                "list at least one asset, e.g. [\"BTC\"], with no empty names".into(),
            );
        }
        if !(self.data.val_fraction > 0.0 && self.data.val_fraction < 0.9) {
            push(
                "data.val_fraction",
                format!("{} must be in (0, 0.9) (e.g. 0.2)", self.data.val_fraction),
            );
        }
        if self.data.stride == 0 {
            push("data.stride", "must be at least 1 bar".into());
        }
        if self.data.gaps == Gaps::Bridge && self.training.vol_loss_weight > 0.0 {
            push(
                "data.gaps",
                "bridge leaves target steps out, which the volatility term cannot; set training.vol_loss_weight to 0 (--vol-loss-weight 0) or data.gaps to drop".into(),
            );
        }
        if matches!(
            self.data.scale,
            Scale::Ewma { tod: true, .. } | Scale::Classical { tod: true }
        ) && self.training.vol_loss_weight > 0.0
        {
            push(
                "data.scale",
                format!("{} scales each step by its hour, which the volatility term's one scale per window cannot; set training.vol_loss_weight to 0 (--vol-loss-weight 0) or data.scale to ewma or classical", self.data.scale),
            );
        }
        if !(self.data.holdout_days >= 0.0 && self.data.holdout_days <= 3650.0) {
            push(
                "data.holdout_days",
                format!(
                    "{} must be within 0..=3650 (days left out at the end)",
                    self.data.holdout_days
                ),
            );
        }
        if let Some(d) = &self.data.dataset {
            if let Err(e) = jobs::dataset::check_dataset_id(d).and_then(|()| {
                (d != jobs::dataset::LATEST)
                    .then_some(())
                    .ok_or(jobs::dataset::BadDatasetId(d.clone()))
            }) {
                push("data.dataset", e.to_string());
            }
        }
        issues.extend(issues_extend);
        if issues.is_empty() {
            Ok(Resolved {
                blocks,
                graphs,
                head_graph,
                head: head.expect("validated"),
                bar_seconds: tf.step_secs(),
            })
        } else {
            Err(issues)
        }
    }

    /// Trainable parameters of the model this spec builds (builds it on the CPU).
    pub fn param_count(&self) -> Result<usize, super::ZooError> {
        let r = self.validate().map_err(super::ZooError::Spec)?;
        let vm = super::params::SeededVarMap::new(self.training.seed);
        super::model::ZooModel::build(self, &r, vm.builder(&candle_core::Device::Cpu))?;
        Ok(vm.param_count())
    }

    /// Parameters per component: `("input", n)`, `("blocks.0", n)`, ..., `("head", n)`.
    pub fn param_breakdown(&self) -> Result<Vec<(String, usize)>, super::ZooError> {
        let r = self.validate().map_err(super::ZooError::Spec)?;
        let vm = super::params::SeededVarMap::new(self.training.seed);
        super::model::ZooModel::build(self, &r, vm.builder(&candle_core::Device::Cpu))?;
        let data = vm.map.data().lock().expect("var map lock");
        let mut out: Vec<(String, usize)> = Vec::new();
        let mut add = |k: String, n: usize| match out.iter_mut().find(|(a, _)| *a == k) {
            Some(e) => e.1 += n,
            None => out.push((k, n)),
        };
        let mut names: Vec<&String> = data.keys().collect();
        names.sort();
        for name in names {
            let n = data[name].elem_count();
            let mut parts = name.split('.');
            let first = parts.next().unwrap_or("");
            let key = if first == "blocks" {
                format!("blocks.{}", parts.next().unwrap_or("?"))
            } else {
                first.to_string()
            };
            add(key, n);
        }
        Ok(out)
    }

    /// Forward floating-point operations for one window, estimated: 2 per multiply-add of every
    /// parameter at each position it is applied to, plus the attention score and mixing
    /// products and the DFT matrix products. The sampling in the head is counted for one path.
    pub fn flops_estimate(&self) -> Result<u64, super::ZooError> {
        let r = self.validate().map_err(super::ZooError::Spec)?;
        let parts = self.param_breakdown()?;
        let bb = &self.model.backbone;
        let (d, s) = (bb.d_model as u64, bb.seq_len as u64);
        let get = |k: &str| {
            parts
                .iter()
                .find(|(a, _)| a == k)
                .map(|p| p.1 as u64)
                .unwrap_or(0)
        };
        let mut flops = 2 * get("input") * s + 2 * get("norm") * s;
        for (i, (name, p)) in r.blocks.iter().enumerate() {
            if let Some(g) = r.graphs.get(&i) {
                flops += g.estimate.flops;
                continue;
            }
            let params = get(&format!("blocks.{i}"));
            let f = |k: &str| p.usize(k) as u64;
            flops += match *name {
                "TransformerBlock" | "InformerBlock" | "TFTBlock" => 2 * params * s + 4 * s * s * d,
                "PatchTSTBlock" => {
                    let np = s.div_ceil(f("patch_len"));
                    2 * params * np * d + 4 * np * np * f("d_patch") * d
                }
                "CrossformerBlock" => {
                    let ns = s.div_ceil(f("seg_len"));
                    let e = f("d_seg");
                    2 * params * ns * d + 4 * ns * ns * e * d + 8 * f("routers") * d * e * ns
                }
                "iTransformerBlock" => 2 * params * d + 4 * d * d * f("d_token"),
                "NBeatsBlock" => 2 * params * d,
                "FreTSBlock" | "FEDformerBlock" | "AutoformerBlock" | "TimesNetBlock" => {
                    // DFT and inverse as matrix products (about s/2 frequencies), plus the layer
                    2 * params * s + 8 * s * (s / 2 + 1) * d
                }
                _ => 2 * params * s,
            };
        }
        flops += 2 * get("head") * self.training.horizon as u64;
        Ok(flops)
    }
}

/// Check the component graph `name` of `comps` as a `kind`; its problems in the spec's terms:
/// `field` where the name is given, `kw_field.<k>` for a bad given value, and
/// `model.components[j].<path>` (with the node) for the document's own.
fn check_graph(
    comps: &[super::graph::ComponentDoc],
    name: &str,
    kind: Kind,
    ctx: super::graph::Ctx,
    kw: &Map<String, Value>,
    field: &str,
    kw_field: &str,
) -> Result<super::graph::Checked, Vec<SpecIssue>> {
    let what = match kind {
        Kind::Block => "block",
        Kind::Head => "head",
    };
    let Some(j) = comps.iter().position(|c| c.name == name) else {
        let have: Vec<&str> = comps.iter().map(|c| c.name.as_str()).collect();
        return Err(vec![SpecIssue {
            field: field.into(),
            message: format!(
                "no component graph named {name:?} in model.components ({}); add its document there, or write it to the registry (POST /registry/write, synth-city components add) so the bridge copies it in (docs/components.md)",
                if have.is_empty() {
                    "none given".to_string()
                } else {
                    format!("given: {}", have.join(", "))
                }
            ),
        }]);
    };
    if comps[j].kind != kind {
        return Err(vec![SpecIssue {
            field: field.into(),
            message: format!(
                "component graph {name:?} is not a {what} (model.components[{j}].kind); name it where a {} goes",
                if kind == Kind::Block { "head" } else { "block" }
            ),
        }]);
    }
    super::graph::check(&comps[j], ctx, kw).map_err(|errs| {
        errs.into_iter()
            .map(|e| {
                let f = match e.field.strip_prefix("params.") {
                    Some(k) if kw.contains_key(k) => format!("{kw_field}.{k}"),
                    _ => format!("model.components[{j}].{}", e.field),
                };
                let at = e.node.map(|n| format!("node {n:?}: ")).unwrap_or_default();
                SpecIssue {
                    field: f,
                    message: format!("{at}{}", e.message),
                }
            })
            .collect()
    })
}

/// Constraints between a block's parameters and the backbone's width and window.
fn block_constraints(name: &str, p: &Params, d: usize, s: usize) -> Vec<(String, String)> {
    let mut e = Vec::new();
    let divides = |e: &mut Vec<(String, String)>, heads: usize, width: usize, wname: &str| {
        if heads > 0 && width % heads != 0 {
            let good: Vec<String> = (1..=width.min(16))
                .filter(|h| width % h == 0)
                .map(|h| h.to_string())
                .collect();
            e.push((
                "n_heads".to_string(),
                format!("{wname} {width} is not divisible by n_heads {heads}; use n_heads in {{{}}} or change {wname}", good.join(", ")),
            ));
        }
    };
    match name {
        "TransformerBlock" | "InformerBlock" | "TFTBlock" => {
            divides(&mut e, p.usize("n_heads"), d, "d_model")
        }
        "PatchTSTBlock" => {
            divides(&mut e, p.usize("n_heads"), p.usize("d_patch"), "d_patch");
            if p.usize("patch_len") > s {
                e.push((
                    "patch_len".into(),
                    format!(
                        "{} is longer than seq_len {s}; use at most {s}",
                        p.usize("patch_len")
                    ),
                ));
            }
        }
        "CrossformerBlock" => {
            divides(&mut e, p.usize("n_heads"), p.usize("d_seg"), "d_seg");
            if p.usize("seg_len") > s {
                e.push((
                    "seg_len".into(),
                    format!(
                        "{} is longer than seq_len {s}; use at most {s}",
                        p.usize("seg_len")
                    ),
                ));
            }
        }
        "iTransformerBlock" => divides(&mut e, p.usize("n_heads"), p.usize("d_token"), "d_token"),
        "FEDformerBlock" => {
            if p.usize("modes") > s / 2 + 1 {
                e.push((
                    "modes".into(),
                    format!(
                        "{} modes exceed the {} frequencies of a {s}-bar window; use at most {}",
                        p.usize("modes"),
                        s / 2 + 1,
                        s / 2 + 1
                    ),
                ));
            }
            if p.usize("moving_avg") > s {
                e.push((
                    "moving_avg".into(),
                    format!(
                        "kernel {} is longer than seq_len {s}; use at most {s}",
                        p.usize("moving_avg")
                    ),
                ));
            }
        }
        "AutoformerBlock" => {
            if p.usize("top_k") > s {
                e.push((
                    "top_k".into(),
                    format!(
                        "{} lags exceed seq_len {s}; use at most {s}",
                        p.usize("top_k")
                    ),
                ));
            }
            if p.usize("moving_avg") > s {
                e.push((
                    "moving_avg".into(),
                    format!(
                        "kernel {} is longer than seq_len {s}; use at most {s}",
                        p.usize("moving_avg")
                    ),
                ));
            }
        }
        "TimesNetBlock" if p.usize("top_k") > s / 2 => {
            e.push(("top_k".into(), format!("{} periods exceed the {} non-constant frequencies of a {s}-bar window; use at most {}", p.usize("top_k"), s / 2, s / 2)));
        }
        _ => {}
    }
    e
}
