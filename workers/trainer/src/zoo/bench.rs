//! `bench train`: training steps per second of a preset on real windows, and the latency of
//! simulating 1,000 paths of 289 points (one SN50 low-frequency response) from one window; of a
//! preset or of any spec ([`bench_train_spec`]: a graph block against its built-in).

use std::path::Path;
use std::time::Instant;

use candle_core::Device;
use serde::Serialize;

use super::model::ZooModel;
use super::optim::AdamW;
use super::params::{Noise, SeededVarMap};
use super::registry::resolve_preset;
use super::spec::ExperimentSpec;
use super::train::{batch_loss, load_windows, make_batch, simulate};
use super::ZooError;

/// The measurements.
#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    pub preset: String,
    pub param_count: usize,
    pub batch_size: usize,
    pub n_paths: usize,
    pub seq_len: usize,
    pub horizon: usize,
    pub timed_steps: usize,
    pub steps_per_s: f64,
    pub simulate_1000x289_ms_median: f64,
    pub simulate_1000x289_ms_min: f64,
    pub release_build: bool,
}

/// The spec of a preset (d_model and seq_len from the preset, the rest defaults).
pub fn preset_spec(name: &str) -> Result<ExperimentSpec, ZooError> {
    let p = resolve_preset(name)?;
    let mut spec = ExperimentSpec::new(p.blocks, p.head);
    spec.model.backbone.d_model = p.d_model;
    spec.model.backbone.seq_len = p.seq_len;
    Ok(spec)
}

/// Time `steps` training steps (after 2 warm-up steps) and five 1000 x 289 simulations.
pub fn bench_train(
    preset: &str,
    data_dir: &Path,
    asset: &str,
    steps: usize,
    device: &Device,
) -> Result<BenchResult, ZooError> {
    bench_train_spec(preset, preset_spec(preset)?, data_dir, asset, steps, device)
}

/// [`bench_train`] for a whole spec (e.g. one whose blocks are component graphs), reported under
/// `label`.
pub fn bench_train_spec(
    label: &str,
    mut spec: ExperimentSpec,
    data_dir: &Path,
    asset: &str,
    steps: usize,
    device: &Device,
) -> Result<BenchResult, ZooError> {
    let preset = label;
    spec.data.assets = vec![asset.to_string()];
    let r = spec.validate().map_err(ZooError::Spec)?;
    let data = load_windows(&spec, data_dir)?;
    let vm = SeededVarMap::new(spec.training.seed);
    let model = ZooModel::build(&spec, &r, vm.builder(device))?;
    let mut opt = AdamW::new(vm.named_vars(), Default::default())?;
    let t = &spec.training;
    let mut noise = Noise::new(1, device);
    let windows: Vec<(usize, usize)> = data[0].train.iter().map(|&i| (0, i)).collect();
    let mut step = |k: usize| -> Result<(), ZooError> {
        let span = windows.len().saturating_sub(t.batch_size).max(1);
        let start = (k * t.batch_size) % span;
        let batch = &windows[start..(start + t.batch_size).min(windows.len())];
        let (x, y) = make_batch(&spec, &data, batch, device)?;
        let loss = batch_loss(&model, &x, &y, t.n_paths, t.loss, t.crps_alpha, &mut noise)?;
        opt.backward_step(&loss)?;
        Ok(())
    };
    for k in 0..2 {
        step(k)?;
    }
    let started = Instant::now();
    for k in 0..steps {
        step(k + 2)?;
    }
    let train_s = started.elapsed().as_secs_f64();
    let i = *data[0].val.last().expect("validation windows exist");
    let (x, _) = make_batch(&spec, &data, &[(0, i)], device)?;
    let mut sims = Vec::new();
    for s in 0..5 {
        let t0 = Instant::now();
        let paths = simulate(
            &model,
            &x,
            data[0].bars.close[i],
            1000,
            &data[0].step_scales(i, spec.training.horizon),
            s,
        )?;
        sims.push(t0.elapsed().as_secs_f64() * 1000.0);
        debug_assert_eq!((paths.n_paths(), paths.n_points()), (1000, 289));
    }
    sims.sort_by(f64::total_cmp);
    Ok(BenchResult {
        preset: preset.to_string(),
        param_count: vm.param_count(),
        batch_size: t.batch_size,
        n_paths: t.n_paths,
        seq_len: spec.model.backbone.seq_len,
        horizon: t.horizon,
        timed_steps: steps,
        steps_per_s: steps as f64 / train_s.max(1e-9),
        simulate_1000x289_ms_median: sims[sims.len() / 2],
        simulate_1000x289_ms_min: sims[0],
        release_build: !cfg!(debug_assertions),
    })
}
