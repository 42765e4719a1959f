//! Published candidates for the promotion and shadow tests: synthetic 5-minute bars with a known
//! volatility, and a tiny TCN trained on them and published to a store as `RUN/m`, as the
//! pipeline's publish stage would.

use std::path::Path;

use publisher::artifacts::ArtifactCache;
use publisher::store::Store;
use trainer::zoo::spec::ExperimentSpec;

/// Days of bars [`write_bars`] writes.
pub const DAYS: i64 = 21;
/// The days [`candidate`] leaves out of training (the gate's unseen windows).
pub const HOLDOUT_DAYS: f64 = 7.0;
/// The first bar's time.
pub const T0: i64 = 1_764_000_000 / 300 * 300;

/// 5-minute bars of a geometric random walk with `scale` times the reference GBM's sigma for
/// `asset`, from [`T0`] for [`DAYS`] days.
pub fn write_bars(dir: &Path, asset: &str, seed: u64, scale: f64) {
    let sigma = sn50::constants::Sn50Config::default().sigma(asset) * scale;
    let sd = sigma * (5.0f64 / 60.0).sqrt();
    let mut x = seed;
    let mut uniform = || {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((x >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    let mut p = 1000.0f64;
    let mut s = String::from("timestamp,open,high,low,close,volume\n");
    for k in 0..DAYS * 288 {
        let z = (-2.0 * uniform().ln()).sqrt() * (2.0 * std::f64::consts::PI * uniform()).cos();
        let open = p;
        p *= (sd * z).exp();
        s.push_str(&format!(
            "{},{open},{},{},{p},1\n",
            T0 + k * 300,
            open.max(p),
            open.min(p)
        ));
    }
    std::fs::write(dir.join(format!("{asset}_5m.csv")), s).unwrap();
}

/// Trains a tiny TCN on BTC and ETH of `data` for `epochs` x `steps` steps (the last
/// [`HOLDOUT_DAYS`] left out) and publishes it as `run/m` (its record's `recorded_at` set when
/// given); returns the candidate's name.
#[allow(clippy::too_many_arguments)]
pub async fn candidate(
    store: &dyn Store,
    cache: &ArtifactCache,
    data: &Path,
    work: &Path,
    run: &str,
    epochs: usize,
    steps: usize,
    recorded_at: Option<i64>,
) -> String {
    let mut spec = ExperimentSpec::new(&["TCNBlock"], "GBMHead");
    spec.model.backbone.d_model = 8;
    spec.model.backbone.seq_len = 16;
    spec.data.assets = vec!["BTC".into(), "ETH".into()];
    spec.data.holdout_days = HOLDOUT_DAYS;
    spec.training.epochs = epochs;
    spec.training.steps_per_epoch = steps;
    spec.training.eval_windows = 2;
    spec.training.eval_paths = 50;
    spec.training.lr = 3e-3;
    let (data2, out) = (data.to_path_buf(), work.join(run));
    let r = tokio::task::spawn_blocking(move || {
        trainer::experiments::run_experiment(&spec, &data2, &out, "cpu", false)
    })
    .await
    .unwrap();
    let mut rec = r.record;
    assert!(rec.checkpoint.is_some(), "{:?}", rec.error);
    rec.name = "m".into();
    rec.run_id = Some(run.into());
    if let Some(t) = recorded_at {
        rec.recorded_at = t;
    }
    publisher::artifacts::store_checkpoints(store, std::slice::from_mut(&mut rec))
        .await
        .unwrap();
    publisher::publish::publish(
        store,
        cache,
        run,
        &rec,
        &serde_json::json!({"success": true}),
        Some(data),
    )
    .await
    .unwrap();
    format!("{run}/m")
}
