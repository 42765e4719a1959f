//! Training: the sample CRPS loss (standard or almost fair) on reparameterised paths, AdamW with
//! global-norm gradient clipping and a warmup + cosine learning-rate schedule, early stopping on
//! the time-ordered validation split, checkpoints (safetensors + spec JSON + state JSON) and
//! resume; and the SN50 evaluation of a trained model against the GBM baseline on the same
//! validation windows.
//!
//! Everything is deterministic under `training.seed`: initial weights (see
//! [`super::params::SeededVarMap`]), window order and sampling noise all come from it.

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::features::{spread, AssetWindows, WindowOptions};
use super::model::{HeadSample, ZooModel};
use super::optim::{AdamW, AdamWParams};
use super::params::{hash_str, Noise, SeededVarMap};
use super::spec::{ExperimentSpec, LossKind};
use super::vol_loss::VolLoss;
use super::ZooError;
use sn50::constants::{PromptKind, Sn50Config};
use sn50::crps::{Paths, INVALID_SCORE};
use sn50::data::{asset_file, Bars};
use sn50::forecast::{ForecastRequest, Forecaster, Gbm};
use sn50::response::encode_price;
use sn50::vol::calculate_total_score_for_miner;

/// File names inside a checkpoint directory.
pub const WEIGHTS_FILE: &str = "model.safetensors";
pub const LAST_WEIGHTS_FILE: &str = "last.safetensors";
pub const SPEC_FILE: &str = "spec.json";
pub const STATE_FILE: &str = "state.json";
/// The AdamW moments and step counter after the last epoch (for `--resume`).
pub const OPTIM_FILE: &str = "optimizer.safetensors";

/// The sample CRPS of paths against targets, averaged over batch and steps.
///
/// `samples`: `(b, h, n)`; `target`: `(b, h)`. Uses the sorted form
/// `CRPS = mean|x - y| - (1/n^2) sum_i (2i - n + 1) x_(i)` (0-based ranks); the almost-fair
/// variant multiplies the spread term by `(n - 1 + alpha) / (n - 1)` (alpha = 1: fair CRPS,
/// alpha = 0: standard). Differentiable in `samples` (the sort only picks indices).
pub fn sample_crps(
    samples: &Tensor,
    target: &Tensor,
    kind: LossKind,
    alpha: f64,
) -> candle_core::Result<Tensor> {
    sample_crps_per_step(samples, target, kind, alpha)?.mean_all()
}

/// The sample CRPS of each `(b, h)` entry.
fn sample_crps_per_step(
    samples: &Tensor,
    target: &Tensor,
    kind: LossKind,
    alpha: f64,
) -> candle_core::Result<Tensor> {
    let (_, _, n) = samples.dims3()?;
    let abs = samples
        .broadcast_sub(&target.unsqueeze(2)?)?
        .abs()?
        .mean(2)?;
    let idx = samples.contiguous()?.arg_sort_last_dim(true)?;
    let sorted = samples.contiguous()?.gather(&idx, 2)?;
    let nf = n as f64;
    let w: Vec<f32> = (0..n)
        .map(|i| ((2.0 * i as f64 - nf + 1.0) / (nf * nf)) as f32)
        .collect();
    let w = Tensor::from_vec(w, (1, 1, n), samples.device())?;
    let spread = sorted.broadcast_mul(&w)?.sum(2)?;
    let factor = match kind {
        LossKind::Crps => 1.0,
        LossKind::Afcrps if n > 1 => (nf - 1.0 + alpha) / (nf - 1.0),
        LossKind::Afcrps => 1.0,
    };
    abs - (spread * factor)?
}

/// [`sample_crps`] over the `(b, h)` entries where `mask` is 1: their mean.
pub fn sample_crps_masked(
    samples: &Tensor,
    target: &Tensor,
    mask: &Tensor,
    kind: LossKind,
    alpha: f64,
) -> candle_core::Result<Tensor> {
    let per_step = sample_crps_per_step(samples, target, kind, alpha)?; // (b, h)
    let count = mask.sum_all()?.to_scalar::<f32>()?.max(1.0);
    per_step.mul(mask)?.sum_all()? / count as f64
}

/// Per-step scale `1/sqrt(k)`, k = 1..=h, shape `(1, h)`: cumulative returns grow like
/// `sqrt(k)`, and CRPS is scale-equivariant, so this weighs the horizon's steps evenly.
fn horizon_scale(h: usize, device: &Device) -> candle_core::Result<Tensor> {
    let v: Vec<f32> = (1..=h).map(|k| 1.0 / (k as f32).sqrt()).collect();
    Tensor::from_vec(v, (1, h), device)
}

/// The training loss of a model on one batch: the sample CRPS of the paths (see
/// [`batch_loss_with`] for the volatility term).
pub fn batch_loss(
    model: &ZooModel,
    x: &Tensor,
    y: &Tensor,
    n_paths: usize,
    kind: LossKind,
    alpha: f64,
    noise: &mut Noise,
) -> candle_core::Result<Tensor> {
    batch_loss_with(model, x, y, None, n_paths, kind, alpha, noise, None)
}

/// [`batch_loss`] plus, when `vol` is given and active, `weight * vol term`
/// ([`VolLoss::loss`]) on the same sampled paths; `vol`'s tensor holds each window's `ret_std`
/// (`(b)`, see [`batch_ret_std`]). The noise drawn is the same with or without the term.
/// With a `mask` (`(b, h)`, 1 where a target step has a price, see [`make_batch_masked`]) the
/// price CRPS is the mean over the steps that have one.
#[allow(clippy::too_many_arguments)]
pub fn batch_loss_with(
    model: &ZooModel,
    x: &Tensor,
    y: &Tensor,
    mask: Option<&Tensor>,
    n_paths: usize,
    kind: LossKind,
    alpha: f64,
    noise: &mut Noise,
    vol: Option<(&VolLoss, &Tensor)>,
) -> candle_core::Result<Tensor> {
    let vol = vol.filter(|(v, _)| v.is_active());
    let h = model.backbone(x)?;
    let cpu_f32 = h.device().is_cpu() && h.dtype() == DType::F32;
    let inc = match model.head_sample(&h, n_paths, noise)? {
        // sampling and the loss as one op: the increments never enter the graph
        HeadSample::Affine(a) if cpu_f32 && vol.is_none() && mask.is_none() => {
            return super::fused::crps_loss_affine(&a.eps, &a.mu, &a.sigma, y, kind, alpha)
        }
        HeadSample::Affine(a) => super::fused::affine_noise(&a.eps, &a.mu, &a.sigma)?,
        HeadSample::Increments(inc) => inc, // (b, n, h)
    };
    let price = if inc.device().is_cpu() && inc.dtype() == DType::F32 && mask.is_none() {
        // cumsum, horizon scale and sample CRPS as one op with its gradient
        super::fused::crps_loss(&inc, y, kind, alpha)?
    } else {
        let h = inc.dim(2)?;
        let scale = horizon_scale(h, x.device())?;
        let cum = super::ops::cumsum_last(&inc)?.broadcast_mul(&scale.unsqueeze(0)?)?; // (b, n, h)
        let samples = cum.transpose(1, 2)?.contiguous()?; // (b, h, n)
        let target = y.broadcast_mul(&scale)?;
        match mask {
            None => sample_crps(&samples, &target, kind, alpha)?,
            Some(m) => sample_crps_masked(&samples, &target, m, kind, alpha)?,
        }
    };
    match vol {
        Some((v, ret_std)) => price + v.loss(&inc, y, ret_std)?,
        None => Ok(price),
    }
}

/// The volatility term a spec trains with: `None` when `training.vol_loss_weight` is 0 or the
/// competition that scores the spec's prompts (that of its first asset; every asset of one
/// timeframe is scored by the same competition in the 2026-12 table) has no volatility blocks.
pub fn vol_loss_for(spec: &ExperimentSpec) -> Result<Option<VolLoss>, ZooError> {
    let t = &spec.training;
    if t.vol_loss_weight <= 0.0 {
        return Ok(None);
    }
    let cfg = Sn50Config::default();
    let kind = prompt_kind(t.horizon);
    let asset = spec.data.assets.first().map(String::as_str).unwrap_or("");
    let c = cfg
        .scoring(kind, asset)
        .ok_or(ZooError::NoCompetition(kind.label()))?;
    let v = VolLoss::new(t.vol_loss_weight, c, t.horizon);
    Ok(v.is_active().then_some(v))
}

/// Each window's scale (`AssetWindows::scale`), `(b)`, for [`batch_loss_with`].
pub fn batch_ret_std(
    data: &[AssetWindows],
    items: &[(usize, usize)],
    device: &Device,
) -> candle_core::Result<Tensor> {
    let v: Vec<f32> = items
        .iter()
        .map(|&(a, i)| data[a].scale(i) as f32)
        .collect();
    Tensor::from_vec(v, items.len(), device)
}

/// The prompt a horizon answers: 288 steps the 24 h prompt, anything else the 1 h one.
fn prompt_kind(horizon: usize) -> PromptKind {
    if horizon == 288 {
        PromptKind::Low
    } else {
        PromptKind::High
    }
}

/// Where training reads and writes.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub data_dir: PathBuf,
    pub out_dir: PathBuf,
    pub device: Device,
    /// Continue from `out_dir`'s last checkpoint if there is one.
    pub resume: bool,
}

/// One epoch's numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochReport {
    pub epoch: usize,
    pub epochs: usize,
    pub train_loss: f64,
    pub val_loss: f64,
    pub lr: f64,
    pub improved: bool,
    pub seconds: f64,
}

/// One training step, as reported to a progress observer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepReport {
    /// 1-based epoch.
    pub epoch: usize,
    pub epochs: usize,
    /// 1-based step within the epoch.
    pub step: usize,
    pub steps_per_epoch: usize,
    pub loss: f64,
    pub lr: f64,
}

/// Receives training progress: every step and every finished epoch; and may stop it.
pub trait TrainObserver {
    fn step(&mut self, _s: &StepReport) {}
    fn epoch(&mut self, _e: &EpochReport) {}
    /// Asked after every step: `true` ends training with [`ZooError::Stopped`] (e.g. the job
    /// that asked for it was cancelled). The checkpoint on disk is the last finished epoch's.
    fn stop(&self) -> bool {
        false
    }
}

/// An epoch-only observer from a closure.
struct EpochFn<'a>(&'a mut dyn FnMut(&EpochReport));

impl TrainObserver for EpochFn<'_> {
    fn epoch(&mut self, e: &EpochReport) {
        (self.0)(e)
    }
}

/// What is saved next to the weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    pub version: u32,
    /// Epochs completed (1-based count).
    pub epochs_done: usize,
    pub best_epoch: usize,
    pub best_val_loss: f64,
    pub bad_epochs: usize,
    pub steps: usize,
    pub history: Vec<EpochReport>,
    /// Feature normalisers per asset, fitted on each asset's training split.
    pub normalizers: std::collections::BTreeMap<String, super::features::Normalizer>,
    pub stopped_early: bool,
}

/// The result of [`train`].
#[derive(Debug, Clone)]
pub struct TrainResult {
    pub checkpoint: PathBuf,
    pub state: TrainState,
    /// Every step's training loss, in order (this run only).
    pub step_losses: Vec<f64>,
    pub param_count: usize,
    /// On resume: whether the AdamW moments were restored (false: the checkpoint had none, so
    /// they restarted from zero).
    pub optimizer_restored: bool,
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> ZooError {
    ZooError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// Load every asset's bars and windows for a spec.
pub fn load_windows(spec: &ExperimentSpec, data_dir: &Path) -> Result<Vec<AssetWindows>, ZooError> {
    spec.data
        .assets
        .iter()
        .map(|a| {
            let path = asset_file(data_dir, a, spec.data.timeframe)?;
            let mut bars = Bars::load(&path)?;
            if spec.data.holdout_days > 0.0 {
                let last = bars.timestamps.last().copied().unwrap_or(0);
                let end = last - (spec.data.holdout_days * 86_400.0) as i64;
                bars = bars.before(end);
            }
            let opts = WindowOptions {
                seq_len: spec.model.backbone.seq_len,
                horizon: spec.training.horizon,
                val_fraction: spec.data.val_fraction,
                stride: spec.data.stride,
                scale: spec.data.scale,
                gaps: spec.data.gaps,
            };
            AssetWindows::build(a, bars, &opts).map_err(ZooError::from)
        })
        .collect()
}

/// Assemble a batch `(x (b, s, f), y (b, h))` from `(asset, window)` pairs.
pub fn make_batch(
    spec: &ExperimentSpec,
    data: &[AssetWindows],
    items: &[(usize, usize)],
    device: &Device,
) -> candle_core::Result<(Tensor, Tensor)> {
    make_batch_masked(spec, data, items, device).map(|(x, y, _)| (x, y))
}

/// [`make_batch`] and the target mask `(b, h)` (1 where a step has a price), `None` when
/// every step of every window has one.
pub fn make_batch_masked(
    spec: &ExperimentSpec,
    data: &[AssetWindows],
    items: &[(usize, usize)],
    device: &Device,
) -> candle_core::Result<(Tensor, Tensor, Option<Tensor>)> {
    let bb = &spec.model.backbone;
    let h = spec.training.horizon;
    let mut xs = Vec::with_capacity(items.len() * bb.seq_len * bb.features.len());
    let mut ys = Vec::with_capacity(items.len() * h);
    let mut ms = Vec::with_capacity(items.len() * h);
    let mut gaps = false;
    for &(a, i) in items {
        data[a].input(i, bb.seq_len, &bb.features, &mut xs);
        gaps |= data[a].target_masked(i, h, &mut ys, &mut ms);
    }
    let b = items.len();
    let mask = if gaps && ms.contains(&0.0) {
        Some(Tensor::from_vec(ms, (b, h), device)?)
    } else {
        None
    };
    Ok((
        Tensor::from_vec(xs, (b, bb.seq_len, bb.features.len()), device)?,
        Tensor::from_vec(ys, (b, h), device)?,
        mask,
    ))
}

fn lr_at(spec: &ExperimentSpec, step: usize, total: usize) -> f64 {
    let t = &spec.training;
    if step < t.warmup_steps {
        return t.lr * (step + 1) as f64 / t.warmup_steps as f64;
    }
    let progress =
        (step - t.warmup_steps) as f64 / (total.saturating_sub(t.warmup_steps).max(1)) as f64;
    let cos = 0.5 * (1.0 + (std::f64::consts::PI * progress.min(1.0)).cos());
    t.lr * (0.1 + 0.9 * cos)
}

/// The training loss of `spec`'s model on the windows `items`: their batch with its target
/// mask, each window's scale for the volatility term `vol`, and [`batch_loss_with`].
fn windows_loss(
    spec: &ExperimentSpec,
    model: &ZooModel,
    data: &[AssetWindows],
    items: &[(usize, usize)],
    vol: Option<&VolLoss>,
    noise: &mut Noise,
    device: &Device,
) -> candle_core::Result<Tensor> {
    let t = &spec.training;
    let (x, y, mask) = make_batch_masked(spec, data, items, device)?;
    let rs = batch_ret_std(data, items, device)?;
    batch_loss_with(
        model,
        &x,
        &y,
        mask.as_ref(),
        t.n_paths,
        t.loss,
        t.crps_alpha,
        noise,
        vol.map(|v| (v, &rs)),
    )
}

/// The validation loss on evenly spread validation windows with fixed noise.
fn val_loss(
    spec: &ExperimentSpec,
    model: &ZooModel,
    data: &[AssetWindows],
    device: &Device,
) -> Result<f64, ZooError> {
    let t = &spec.training;
    let vol = vol_loss_for(spec)?;
    let mut noise = Noise::new(t.seed ^ 0x0005_EED0_F7A1, device);
    let mut items = Vec::new();
    for (a, d) in data.iter().enumerate() {
        for k in spread(d.val.len(), t.eval_windows) {
            items.push((a, d.val[k]));
        }
    }
    let mut total = 0.0;
    let mut count = 0usize;
    for chunk in items.chunks(t.batch_size.max(1)) {
        let l = windows_loss(spec, model, data, chunk, vol.as_ref(), &mut noise, device)?;
        total += l.to_scalar::<f32>()? as f64 * chunk.len() as f64;
        count += chunk.len();
    }
    Ok(total / count.max(1) as f64)
}

fn snapshot(vars: &[Var]) -> candle_core::Result<Vec<Tensor>> {
    vars.iter().map(|v| v.as_tensor().copy()).collect()
}

fn save_json<T: Serialize>(path: &Path, v: &T) -> Result<(), ZooError> {
    let text = serde_json::to_string_pretty(v).map_err(|e| io_err(path, e))?;
    std::fs::write(path, text).map_err(|e| io_err(path, e))
}

/// Train a spec on the bars in `opts.data_dir`, writing checkpoints to `opts.out_dir`.
/// `progress` is called after every epoch.
pub fn train(
    spec: &ExperimentSpec,
    opts: &TrainOptions,
    progress: &mut dyn FnMut(&EpochReport),
) -> Result<TrainResult, ZooError> {
    train_observed(spec, opts, &mut EpochFn(progress))
}

/// Load weights saved by candle into `vars` (by name), or say which is missing.
fn load_named(
    path: &Path,
    vars: &[(String, Var)],
    device: &Device,
) -> Result<Vec<Tensor>, ZooError> {
    let ck = |message: String| ZooError::Checkpoint {
        path: path.display().to_string(),
        message,
    };
    let mut saved = candle_core::safetensors::load(path, device).map_err(|e| ck(e.to_string()))?;
    vars.iter()
        .map(|(name, v)| {
            let t = saved
                .remove(name)
                .ok_or_else(|| ck(format!("no tensor {name:?}")))?;
            if t.shape() != v.shape() {
                return Err(ck(format!(
                    "{name}: shape {:?}, the model has {:?}",
                    t.shape(),
                    v.shape()
                )));
            }
            Ok(t)
        })
        .collect()
}

/// [`train`] with a per-step and per-epoch observer (the CLI's progress bar).
pub fn train_observed(
    spec: &ExperimentSpec,
    opts: &TrainOptions,
    observer: &mut dyn TrainObserver,
) -> Result<TrainResult, ZooError> {
    let r = spec.validate().map_err(ZooError::Spec)?;
    let t = &spec.training;
    let device = &opts.device;
    let data = load_windows(spec, &opts.data_dir)?;
    let vol = vol_loss_for(spec)?;
    let vm = SeededVarMap::new(t.seed);
    let model = ZooModel::build(spec, &r, vm.builder(device))?;
    let named = vm.named_vars();
    // where the head starts (a resumed run overwrites it below)
    model.init_head(&named)?;
    let vars: Vec<Var> = named.iter().map(|(_, v)| v.clone()).collect();
    let param_count = vm.param_count();
    std::fs::create_dir_all(&opts.out_dir).map_err(|e| io_err(&opts.out_dir, e))?;
    let normalizers = data
        .iter()
        .map(|d| (d.asset.clone(), d.norm.clone()))
        .collect();
    let mut state = TrainState {
        version: super::spec::SPEC_VERSION,
        epochs_done: 0,
        best_epoch: 0,
        best_val_loss: f64::INFINITY,
        bad_epochs: 0,
        steps: 0,
        history: Vec::new(),
        normalizers,
        stopped_early: false,
    };
    let last_path = opts.out_dir.join(LAST_WEIGHTS_FILE);
    let state_path = opts.out_dir.join(STATE_FILE);
    let best_path = opts.out_dir.join(WEIGHTS_FILE);
    let optim_path = opts.out_dir.join(OPTIM_FILE);
    let mut opt = AdamW::new(
        named.clone(),
        AdamWParams {
            lr: t.lr,
            weight_decay: t.weight_decay,
            ..Default::default()
        },
    )?;
    let mut best = snapshot(&vars)?;
    let mut optimizer_restored = false;
    if opts.resume && last_path.is_file() && state_path.is_file() {
        let old: TrainState = serde_json::from_str(
            &std::fs::read_to_string(&state_path).map_err(|e| io_err(&state_path, e))?,
        )
        .map_err(|e| ZooError::Checkpoint {
            path: state_path.display().to_string(),
            message: e.to_string(),
        })?;
        let mut m = vm.map.clone();
        m.load(&last_path).map_err(|e| ZooError::Checkpoint {
            path: last_path.display().to_string(),
            message: e.to_string(),
        })?;
        state = TrainState {
            normalizers: state.normalizers,
            ..old
        };
        best = if best_path.is_file() {
            load_named(&best_path, &named, device)?
        } else {
            snapshot(&vars)?
        };
        if optim_path.is_file() {
            opt.load(&optim_path).map_err(|e| ZooError::Checkpoint {
                path: optim_path.display().to_string(),
                message: e.to_string(),
            })?;
            optimizer_restored = true;
        }
    }
    save_json(&opts.out_dir.join(SPEC_FILE), spec)?;
    let mut items: Vec<(usize, usize)> = Vec::new();
    for (a, d) in data.iter().enumerate() {
        items.extend(d.train.iter().map(|&i| (a, i)));
    }
    let total_steps = t.epochs * t.steps_per_epoch;
    let mut step_losses = Vec::new();
    let start_epoch = state.epochs_done;
    for epoch in start_epoch..t.epochs {
        if state.bad_epochs >= t.patience {
            state.stopped_early = true;
            break;
        }
        let started = Instant::now();
        let mut noise = Noise::new(
            t.seed ^ (epoch as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            device,
        );
        let order = noise.permutation(items.len());
        let mut sum = 0.0;
        let mut count = 0;
        let steps_here = order.chunks(t.batch_size).take(t.steps_per_epoch).len();
        for chunk in order.chunks(t.batch_size).take(t.steps_per_epoch) {
            let batch: Vec<(usize, usize)> = chunk.iter().map(|&k| items[k]).collect();
            opt.set_learning_rate(lr_at(spec, state.steps, total_steps));
            let loss = windows_loss(
                spec,
                &model,
                &data,
                &batch,
                vol.as_ref(),
                &mut noise,
                device,
            )?;
            let lv = loss.to_scalar::<f32>()? as f64;
            if !lv.is_finite() {
                return Err(ZooError::Diverged(format!(
                    "loss {lv} at epoch {} step {}",
                    epoch + 1,
                    state.steps
                )));
            }
            let mut grads = loss.backward()?;
            let mut sq = 0f64;
            for v in &vars {
                if let Some(g) = grads.get(v) {
                    sq += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
                }
            }
            let norm = sq.sqrt();
            if !norm.is_finite() {
                return Err(ZooError::Diverged(format!(
                    "gradient norm {norm} at epoch {} step {}",
                    epoch + 1,
                    state.steps
                )));
            }
            if norm > t.grad_clip {
                let s = t.grad_clip / norm;
                for v in &vars {
                    if let Some(g) = grads.get(v) {
                        let scaled = (g * s)?;
                        grads.insert(v, scaled);
                    }
                }
            }
            opt.step(&grads)?;
            state.steps += 1;
            step_losses.push(lv);
            sum += lv;
            count += 1;
            observer.step(&StepReport {
                epoch: epoch + 1,
                epochs: t.epochs,
                step: count,
                steps_per_epoch: steps_here,
                loss: lv,
                lr: opt.learning_rate(),
            });
            if observer.stop() {
                return Err(ZooError::Stopped);
            }
        }
        let vl = val_loss(spec, &model, &data, device)?;
        let improved = vl < state.best_val_loss;
        if improved {
            state.best_val_loss = vl;
            state.best_epoch = epoch + 1;
            state.bad_epochs = 0;
            best = snapshot(&vars)?;
            vm.map.save(&best_path).map_err(|e| io_err(&best_path, e))?;
        } else {
            state.bad_epochs += 1;
        }
        state.epochs_done = epoch + 1;
        let rep = EpochReport {
            epoch: epoch + 1,
            epochs: t.epochs,
            train_loss: sum / count.max(1) as f64,
            val_loss: vl,
            lr: opt.learning_rate(),
            improved,
            seconds: started.elapsed().as_secs_f64(),
        };
        observer.epoch(&rep);
        state.history.push(rep);
        if state.bad_epochs >= t.patience && epoch + 1 < t.epochs {
            state.stopped_early = true;
        }
        vm.map.save(&last_path).map_err(|e| io_err(&last_path, e))?;
        opt.save(&optim_path).map_err(|e| io_err(&optim_path, e))?;
        save_json(&state_path, &state)?;
        if state.stopped_early {
            break;
        }
    }
    // leave the best weights in the model and on disk
    for (v, b) in vars.iter().zip(&best) {
        v.set(b)?;
    }
    if !best_path.is_file() {
        vm.map.save(&best_path).map_err(|e| io_err(&best_path, e))?;
    }
    save_json(&state_path, &state)?;
    Ok(TrainResult {
        checkpoint: opts.out_dir.clone(),
        state,
        step_losses,
        param_count,
        optimizer_restored,
    })
}

/// A trained model loaded from a checkpoint directory.
pub struct Checkpoint {
    pub dir: PathBuf,
    pub spec: ExperimentSpec,
    pub state: TrainState,
    pub model: ZooModel,
    pub vars: SeededVarMap,
}

/// Load `dir` (or the directory of a `model.safetensors` / `spec.json` path).
pub fn load_checkpoint(path: &Path, device: &Device) -> Result<Checkpoint, ZooError> {
    let dir = if path.is_file() {
        path.parent().unwrap_or(Path::new(".")).to_path_buf()
    } else {
        path.to_path_buf()
    };
    let ck = |message: String| ZooError::Checkpoint {
        path: dir.display().to_string(),
        message,
    };
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name)).map_err(|e| ck(format!("cannot read {name}: {e}")))
    };
    let spec: ExperimentSpec =
        serde_json::from_str(&read(SPEC_FILE)?).map_err(|e| ck(format!("{SPEC_FILE}: {e}")))?;
    let state: TrainState =
        serde_json::from_str(&read(STATE_FILE)?).map_err(|e| ck(format!("{STATE_FILE}: {e}")))?;
    let r = spec.validate().map_err(ZooError::Spec)?;
    let vm = SeededVarMap::new(spec.training.seed);
    let model = ZooModel::build(&spec, &r, vm.builder(device))?;
    let mut m = vm.map.clone();
    m.load(dir.join(WEIGHTS_FILE))
        .map_err(|e| ck(format!("{WEIGHTS_FILE}: {e}")))?;
    Ok(Checkpoint {
        dir,
        spec,
        state,
        model,
        vars: vm,
    })
}

/// The largest log move a simulated path may make from the spot (a factor of about 20): beyond
/// it prices stop being plausible and may not fit the response's 8-digit rule.
pub const MAX_LOG_MOVE: f64 = 3.0;

/// Price paths from standardised per-step log returns `(n, h)` row-major: `spot` then
/// `spot * exp(cumsum(inc * scales))`, `scales` the `h` steps' per-bar standard deviations
/// ([`AssetWindows::step_scales`]), the log move clamped to +-[`MAX_LOG_MOVE`].
pub fn paths_from_increments(
    spot: f64,
    inc: &[f32],
    n: usize,
    scales: &[f64],
) -> Result<Paths, ZooError> {
    let h = scales.len();
    let mut data = Vec::with_capacity(n * (h + 1));
    for p in 0..n {
        data.push(spot);
        let mut cum = 0f64;
        for (k, s) in scales.iter().enumerate() {
            cum += inc[p * h + k] as f64 * s;
            data.push(spot * cum.clamp(-MAX_LOG_MOVE, MAX_LOG_MOVE).exp());
        }
    }
    Ok(Paths::from_flat(data, n)?)
}

/// Simulate `n` price paths for window input `x (1, s, f)`, step `k`'s standardised increments
/// multiplied by `scales[k]` (one per step the model simulates).
pub fn simulate(
    model: &ZooModel,
    x: &Tensor,
    spot: f64,
    n: usize,
    scales: &[f64],
    seed: u64,
) -> Result<Paths, ZooError> {
    let mut noise = Noise::new(seed, x.device());
    let inc = model.sample(x, n, &mut noise)?; // (1, n, h)
    let h = inc.dim(2)?;
    if h != scales.len() {
        return Err(ZooError::StepScales {
            steps: h,
            scales: scales.len(),
        });
    }
    let v: Vec<f32> = inc.flatten_all()?.to_dtype(DType::F32)?.to_vec1()?;
    paths_from_increments(spot, &v, n, scales)
}

/// Round as a response carries prices (8 significant digits within the digit rule).
pub fn as_sent(paths: &Paths) -> Paths {
    let data: Vec<f64> = paths
        .as_flat()
        .iter()
        .map(|&x| encode_price(x).map(|t| t.value()).unwrap_or(x))
        .collect();
    Paths::from_flat(data, paths.n_paths()).expect("same shape")
}

/// SN50 CRPS of a model and of the GBM baseline on the same validation windows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sn50Eval {
    /// Mean SN50 score of the model over the scored windows: the validator's total (price CRPS
    /// plus, where the competition has one, the volatility term).
    pub val_crps: f64,
    /// Mean SN50 score of the reference GBM on the same windows.
    pub gbm_crps: f64,
    /// The model's mean price CRPS and mean volatility term over its valid windows
    /// (`val_crps` is their sum); the term is `None` for competitions without one.
    pub val_parts: (f64, Option<f64>),
    /// The same for the GBM.
    pub gbm_parts: (f64, Option<f64>),
    pub windows: usize,
    /// Windows the validator would score -1 (model / gbm).
    pub invalid: (usize, usize),
    pub per_asset: std::collections::BTreeMap<String, (f64, f64)>,
    /// The classical anchor ([`CLASSICAL_ANCHOR`]) on the same windows, fitted on the bars
    /// before each, so a ratio to the GBM that only reflects the GBM's fixed width shows: its
    /// mean score over the windows the model scored (a window it cannot answer gets the GBM's
    /// score, as a miner would answer), `NaN` when none.
    pub anchor_crps: f64,
    /// Windows the anchor could not answer (too little history).
    pub anchor_fallbacks: usize,
}

/// The classical model every evaluation scores beside the GBM: the best of the project's
/// classical baselines on issue 15's walk-forward folds (docs/benchmarks.md, "The EWMA
/// half-life follows the horizon": best in all three competitions), the EWMA with Student-t
/// steps and the weekday and weekend hour profiles, fitted per window on the bars before it.
pub const CLASSICAL_ANCHOR: &str = "ewma-tod-t";

/// One window's exact validator score, `(total, price, vol)`, or `None` where the validator
/// scores `-1`: the total is [`sn50::vol::miner_total_score`]'s (its body: the worker score of
/// `calculate_total_score_for_miner`, `-1` on an error), with the breakdown it is the sum of.
pub fn score_detail(
    sims: &Paths,
    real: &[f64],
    c: &sn50::competition::Competition,
) -> Option<(f64, f64, Option<f64>)> {
    let d = calculate_total_score_for_miner(
        sims,
        real,
        c.time_increment,
        &c.scoring_intervals,
        &c.vol_blocks,
    )
    .ok()?;
    let total = d.worker_score();
    (total != INVALID_SCORE).then(|| (total, d.price, d.vol.map(|v| v.total)))
}

/// Score `model` and the reference GBM with the validator's CRPS on up to
/// `training.eval_windows` validation windows per asset, `training.eval_paths` paths each. The
/// realised path of window `i` is `close[i..=i+horizon]`, starting when bar `i` closes; the
/// prompt is timed as validators time it, before that: the model sees the history up to bar
/// `i - 1` and both it and the GBM start their paths from bar `i - 1`'s close, the spot a
/// miner has at request time (`start - 60 s` on 1-minute bars; the last 5-minute close on
/// 5-minute bars). A window without history before bar `i - 1` is skipped.
pub fn evaluate_sn50(
    spec: &ExperimentSpec,
    model: &ZooModel,
    data: &[AssetWindows],
    device: &Device,
) -> Result<Sn50Eval, ZooError> {
    let t = &spec.training;
    let cfg = Sn50Config::default();
    let kind = prompt_kind(t.horizon);
    let gbm = Gbm::new(cfg.clone());
    let anchor = sn50::forecast::model_by_name(CLASSICAL_ANCHOR, &cfg)?;
    let (mut ms, mut gs) = (Vec::new(), Vec::new());
    let (mut anchor_scores, mut anchor_fallbacks) = (Vec::new(), 0);
    // (price, vol) of the valid windows, model and GBM
    let (mut mp, mut gp_parts) = (Vec::new(), Vec::new());
    let mut invalid = (0, 0);
    let mut per_asset = std::collections::BTreeMap::new();
    for (a, d) in data.iter().enumerate() {
        let bar = d.bars.bar_seconds;
        // the rules of the competition that scores this asset's prompts
        let prompt = cfg
            .scoring(kind, &d.asset)
            .ok_or(ZooError::NoCompetition(kind.label()))?;
        let (mut am, mut ag) = (Vec::new(), Vec::new());
        let seq_len = spec.model.backbone.seq_len;
        for k in spread(d.val.len(), t.eval_windows) {
            let i = d.val[k];
            if !d.has_request_history(i, seq_len) {
                continue;
            }
            // the request is sent before bar i closes: history and spot end at bar i - 1
            let (x, _) = make_batch(spec, data, &[(a, i - 1)], device)?;
            let spot = d.bars.close[i - 1];
            let seed = t.seed ^ hash_str(&d.asset) ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let paths = simulate(
                model,
                &x,
                spot,
                t.eval_paths,
                &d.step_scales(i - 1, t.horizon),
                seed,
            )?;
            // the realised grid from bar i's open on: NaN where a gap leaves a step without
            // a price, as validators leave it
            let real = d
                .bars
                .price_grid(d.bars.timestamps[i], bar * t.horizon as i64, bar)?;
            let req = ForecastRequest {
                asset: d.asset.clone(),
                start_time: d.bars.timestamps[i] + bar,
                time_increment: bar as u64,
                time_length: bar as u64 * t.horizon as u64,
                num_simulations: t.eval_paths,
                spot,
                history: None,
                as_of: d.bars.timestamps[i],
            };
            let gp = gbm.forecast(&req, &mut ChaCha8Rng::seed_from_u64(seed))?;
            let m = score_detail(&as_sent(&paths), &real, prompt);
            let g = score_detail(&as_sent(&gp), &real, prompt);
            // the anchor sees the bars before the request only (it cuts its history at as_of)
            let with_history = ForecastRequest {
                history: Some(&d.bars),
                ..req.clone()
            };
            let a = match anchor.forecast(&with_history, &mut ChaCha8Rng::seed_from_u64(seed)) {
                Ok(ap) => score_detail(&as_sent(&ap), &real, prompt),
                Err(_) => {
                    anchor_fallbacks += 1;
                    g
                }
            };
            if let (Some(_), Some((total, _, _))) = (m, a) {
                anchor_scores.push(total);
            }
            match m {
                None => invalid.0 += 1,
                Some((total, price, vol)) => {
                    am.push(total);
                    mp.push((price, vol));
                }
            }
            match g {
                None => invalid.1 += 1,
                Some((total, price, vol)) => {
                    ag.push(total);
                    gp_parts.push((price, vol));
                }
            }
        }
        let mean = |v: &[f64]| {
            if v.is_empty() {
                f64::NAN
            } else {
                v.iter().sum::<f64>() / v.len() as f64
            }
        };
        per_asset.insert(d.asset.clone(), (mean(&am), mean(&ag)));
        ms.extend(am);
        gs.extend(ag);
    }
    let mean = |v: &[f64]| {
        if v.is_empty() {
            f64::NAN
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    };
    let parts = |v: &[(f64, Option<f64>)]| {
        let price: Vec<f64> = v.iter().map(|p| p.0).collect();
        let vol: Vec<f64> = v.iter().filter_map(|p| p.1).collect();
        (mean(&price), (!vol.is_empty()).then(|| mean(&vol)))
    };
    Ok(Sn50Eval {
        val_crps: mean(&ms),
        gbm_crps: mean(&gs),
        val_parts: parts(&mp),
        gbm_parts: parts(&gp_parts),
        windows: ms.len().max(gs.len()),
        invalid,
        per_asset,
        anchor_crps: mean(&anchor_scores),
        anchor_fallbacks,
    })
}
