//! Tests of the zoo on real bars from `shared/data` (skipped where that folder is absent):
//! every block with the GBM head and every head with one block learns on a fixed batch and
//! simulates a response the SN50 validator accepts; the trainer's determinism, checkpoints and
//! resume; the forecaster; spec validation.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use candle_core::{Device, Tensor};
use candle_nn::optim::{AdamW, Optimizer, ParamsAdamW};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::features::AssetWindows;
use super::model::ZooModel;
use super::params::{Noise, SeededVarMap};
use super::registry::{find_block, BLOCKS, HEADS, PRESETS};
use super::spec::{ExperimentSpec, LossKind};
use super::train::{batch_loss, make_batch, sample_crps, simulate};
use sn50::data::Bars;
use sn50::response::{check_response, MinerResponse, SimulationInput};

fn data_dir() -> Option<PathBuf> {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
    d.is_dir().then_some(d)
}

/// The last 6000 BTC 5-minute bars (enough for train and validation windows, quick to scan).
pub fn btc() -> Option<&'static Bars> {
    static B: OnceLock<Option<Bars>> = OnceLock::new();
    B.get_or_init(|| {
        let d = data_dir()?;
        let b = Bars::load(&d.join("BTC_5m.csv")).ok()?;
        let n = b.len();
        let k = n - 6000;
        Some(Bars {
            bar_seconds: b.bar_seconds,
            timestamps: b.timestamps[k..].to_vec(),
            open: b.open[k..].to_vec(),
            high: b.high[k..].to_vec(),
            low: b.low[k..].to_vec(),
            close: b.close[k..].to_vec(),
            volume: b.volume[k..].to_vec(),
        })
    })
    .as_ref()
}

/// A tiny spec for the tests.
pub fn tiny_spec(blocks: &[&str], head: &str) -> ExperimentSpec {
    let mut s = ExperimentSpec::new(blocks, head);
    s.model.backbone.d_model = 8;
    s.model.backbone.seq_len = 16;
    s.model.backbone.block_kwargs = blocks
        .iter()
        .map(|b| {
            let mut m = serde_json::Map::new();
            let name = find_block(b).map(|i| i.name).unwrap_or("");
            let set = |m: &mut serde_json::Map<String, serde_json::Value>, k: &str, v: u64| {
                m.insert(k.to_string(), v.into());
            };
            match name {
                "TransformerBlock" | "InformerBlock" | "TFTBlock" => set(&mut m, "n_heads", 2),
                "PatchTSTBlock" => {
                    set(&mut m, "patch_len", 4);
                    set(&mut m, "d_patch", 8);
                }
                "CrossformerBlock" => {
                    set(&mut m, "seg_len", 4);
                    set(&mut m, "d_seg", 8);
                    set(&mut m, "routers", 2);
                }
                "iTransformerBlock" => {
                    set(&mut m, "d_token", 8);
                    set(&mut m, "n_heads", 2);
                }
                "NBeatsBlock" => set(&mut m, "hidden", 16),
                "MambaBlock" => set(&mut m, "d_state", 4),
                "TimesNetBlock" => set(&mut m, "d_ff", 8),
                "FEDformerBlock" => set(&mut m, "modes", 4),
                _ => {}
            }
            m
        })
        .collect();
    match head {
        "SDEHead" => {
            s.model.head.kwargs.insert("hidden".into(), 8.into());
        }
        "FlowHead" => {
            s.model.head.kwargs.insert("hidden".into(), 16.into());
            s.model.head.kwargs.insert("layers".into(), 2.into());
        }
        _ => {}
    }
    s.training.n_paths = 16;
    s.training.batch_size = 8;
    s.training.lr = 3e-3;
    s
}

/// Train `steps` AdamW steps on one fixed batch of real windows; the loss under a fixed noise
/// draw must be finite before and after and lower after. Then simulate 1000 paths of 289
/// points and check the response the way the validator does.
fn learns_and_simulates(blocks: &[&str], head: &str, steps: usize) {
    let Some(bars) = btc() else { return };
    let started = std::time::Instant::now();
    let spec = tiny_spec(blocks, head);
    let r = spec
        .validate()
        .unwrap_or_else(|e| panic!("{blocks:?}+{head}: {e:?}"));
    let t = &spec.training;
    let w = AssetWindows::new(
        "BTC",
        bars.clone(),
        spec.model.backbone.seq_len,
        t.horizon,
        0.2,
        12,
    )
    .unwrap();
    let dev = Device::Cpu;
    let vm = SeededVarMap::new(7);
    let model = ZooModel::build(&spec, &r, vm.builder(&dev)).unwrap();
    let items: Vec<(usize, usize)> = w.train.iter().rev().take(8).map(|&i| (0, i)).collect();
    let data = [w];
    let (x, y) = make_batch(&spec, &data, &items, &dev).unwrap();
    let eval = |model: &ZooModel| -> f64 {
        let mut noise = Noise::new(99, &dev);
        batch_loss(model, &x, &y, 64, LossKind::Crps, 0.95, &mut noise)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap() as f64
    };
    let before = eval(&model);
    let mut opt = AdamW::new(
        vm.vars(),
        ParamsAdamW {
            lr: 1e-2,
            weight_decay: 0.0,
            ..Default::default()
        },
    )
    .unwrap();
    let mut noise = Noise::new(1, &dev);
    for _ in 0..steps {
        let loss = batch_loss(&model, &x, &y, 16, LossKind::Crps, 0.95, &mut noise).unwrap();
        let l = loss.to_scalar::<f32>().unwrap();
        assert!(l.is_finite(), "{blocks:?}+{head}: loss {l}");
        opt.backward_step(&loss).unwrap();
    }
    let after = eval(&model);
    eprintln!(
        "{blocks:?}+{head}: loss {before:.4} -> {after:.4} ({:.1}s)",
        started.elapsed().as_secs_f64()
    );
    assert!(
        before.is_finite() && after.is_finite(),
        "{blocks:?}+{head}: {before} -> {after}"
    );
    assert!(
        after < before,
        "{blocks:?}+{head}: loss did not decrease: {before} -> {after}"
    );
    // simulate a full SN50 response from the last window
    let (x1, _) = make_batch(&spec, &data, &items[..1], &dev).unwrap();
    let spot = data[0].bars.close[items[0].1];
    let scales = data[0].step_scales(items[0].1, 288);
    let paths = simulate(&model, &x1, spot, 1000, &scales, 5).unwrap();
    assert_eq!((paths.n_paths(), paths.n_points()), (1000, 289));
    assert_response_ok(&paths, 1_730_000_100, 300, 86_400);
}

pub fn assert_response_ok(paths: &sn50::crps::Paths, start: i64, inc: i64, len: i64) {
    let resp = MinerResponse::from_paths(start, inc, paths).expect("encodable paths");
    let input = SimulationInput {
        asset: "BTC".into(),
        start_time: chrono::DateTime::from_timestamp(start, 0)
            .unwrap()
            .format("%Y-%m-%dT%H:%M:%S+00:00")
            .to_string(),
        time_increment: inc,
        time_length: len,
        num_simulations: paths.n_paths() as i64,
    };
    let report = check_response(&resp.to_py(), &input, true);
    assert!(
        report.ok,
        "validator: {} {:?}",
        report.format_validation, report.scoring_issue
    );
}

#[test]
fn zoo_sample_crps_matches_the_exact_ensemble_crps() {
    let dev = Device::Cpu;
    let xs = [0.3f32, -1.2, 2.5, 0.0, 0.7];
    let y = 0.4f32;
    let t = Tensor::from_vec(xs.to_vec(), (1, 1, 5), &dev).unwrap();
    let yt = Tensor::from_vec(vec![y], (1, 1), &dev).unwrap();
    let got = sample_crps(&t, &yt, LossKind::Crps, 0.95)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap() as f64;
    let xs64: Vec<f64> = xs.iter().map(|&v| v as f64).collect();
    let want = sn50::crps::crps_ensemble(y as f64, &xs64);
    assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    // almost fair with alpha = 1 is the fair CRPS: spread over n(n-1)
    let fair = sample_crps(&t, &yt, LossKind::Afcrps, 1.0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap() as f64;
    let n = 5.0;
    let abs: f64 = xs64.iter().map(|x| (x - y as f64).abs()).sum::<f64>() / n;
    let pair: f64 = xs64
        .iter()
        .flat_map(|a| xs64.iter().map(move |b| (a - b).abs()))
        .sum::<f64>();
    let want_fair = abs - pair / (2.0 * n * (n - 1.0));
    assert!((fair - want_fair).abs() < 1e-5, "{fair} vs {want_fair}");
}

// The blocks are split over two tests so the test harness runs them on two threads.
#[test]
fn zoo_every_block_learns_with_gbm_head_part_1() {
    for b in BLOCKS.iter().step_by(2) {
        learns_and_simulates(&[b.name], "GBMHead", 8);
    }
}

#[test]
fn zoo_every_block_learns_with_gbm_head_part_2() {
    for b in BLOCKS.iter().skip(1).step_by(2) {
        learns_and_simulates(&[b.name], "GBMHead", 8);
    }
}

#[test]
fn zoo_every_head_learns_with_one_block() {
    for h in HEADS {
        learns_and_simulates(&["TCNBlock"], h.name, 8);
    }
}

#[test]
fn zoo_presets_validate() {
    for p in PRESETS {
        let mut s = ExperimentSpec::new(p.blocks, p.head);
        s.model.backbone.d_model = p.d_model;
        s.model.backbone.seq_len = p.seq_len;
        s.validate()
            .unwrap_or_else(|e| panic!("preset {}: {e:?}", p.name));
    }
    // the recommendation validates for every asset and prompt; it is standardised by the
    // classical anchor; its 24 h paths follow the hour of day, and its 1 h models, which
    // train on the volatility term, keep one scale per window
    use super::features::Scale;
    use jobs::Timeframe;
    for asset in [
        "BTC", "ETH", "SOL", "XAU", "SP500", "NVDAX", "TSLAX", "AAPLX", "GOOGLX",
    ] {
        for tf in [Timeframe::FiveMinutes, Timeframe::OneMinute] {
            let s = super::registry::recommended(asset, tf);
            s.validate()
                .unwrap_or_else(|e| panic!("recommended {asset} {tf}: {e:?}"));
            assert_eq!(
                s.data.scale,
                Scale::Classical {
                    tod: tf == Timeframe::FiveMinutes
                },
                "{asset} {tf}"
            );
            // the features it was measured with: the defaults and the day's EWMA volatility
            let f = &s.model.backbone.features;
            assert_eq!(f.len(), 10, "{f:?}");
            assert_eq!(f[9], "ewma_vol", "{f:?}");
        }
    }
}

#[test]
fn zoo_the_seeds_preset_names_resolve_or_name_the_closest() {
    use super::registry::{find_alias, presets_json, resolve_preset, PresetError, PRESET_ALIASES};
    // every alias resolves to a preset that exists, or names only presets that exist
    for a in PRESET_ALIASES {
        assert!(
            PRESETS
                .iter()
                .all(|p| !p.name.eq_ignore_ascii_case(a.alias)),
            "{} is a preset and an alias",
            a.alias
        );
        match a.preset {
            Some(p) => assert_eq!(resolve_preset(a.alias).unwrap().name, p),
            None => {
                assert!(!a.closest.is_empty(), "{}", a.alias);
                for c in a.closest {
                    assert!(resolve_preset(c).is_ok(), "{}: closest {c}", a.alias);
                }
            }
        }
    }
    // both seed lists and the README's short names are there
    for seed in [
        "baseline_gbm",
        "sde_transformer",
        "horizon_transformer",
        "mixture_density",
        "vol_term_structure",
        "revin_transformer",
        "dlinear_simple",
        "timesnet_sde",
        "transformer_lstm",
        "pure_transformer",
        "conv_gru",
        "dlinear_baseline",
        "fourier_lstm",
        "timemixer",
        "bitcn_lstm",
        "sde_evolution",
        "unet_transformer",
        "timesnet",
        "transformer",
        "lstm",
        "wavenet",
    ] {
        assert!(
            resolve_preset(seed).is_ok() || find_alias(seed).is_some(),
            "{seed} is neither a preset nor an alias"
        );
    }
    assert_eq!(
        resolve_preset(" SDE_Transformer ").unwrap().name,
        "transformer_sde"
    );
    assert_eq!(
        resolve_preset("transformer_lstm").unwrap().name,
        "baseline_gbm"
    );
    assert_eq!(resolve_preset("wavenet").unwrap().name, "wavenet_copula");
    let e = resolve_preset("conv_gru").unwrap_err();
    assert!(matches!(e, PresetError::NoCounterpart { .. }));
    let e = e.to_string();
    assert!(
        e.contains("closest: tcn_mixture, lstm_gbm") && e.contains("synth-city components"),
        "{e}"
    );
    let e = resolve_preset("transformer_xl").unwrap_err().to_string();
    assert!(
        e.contains("closest: baseline_gbm, transformer_sde") && e.contains("synth-city components"),
        "{e}"
    );
    let e = resolve_preset("gru").unwrap_err().to_string();
    assert!(e.contains("use one of baseline_gbm, lstm_gbm"), "{e}");
    // the listing shows each preset's aliases
    let listed = presets_json();
    let sde = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "transformer_sde")
        .unwrap();
    let aliases: Vec<&str> = sde["aliases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(aliases.contains(&"sde_transformer") && aliases.contains(&"transformer"));
    assert!(super::registry::components_text().contains("also: sde_transformer"));
}

#[test]
fn zoo_the_seeds_horizons_follow_the_timeframe_or_are_refused_with_the_fix() {
    use super::spec::seed_horizon;
    use jobs::Timeframe::{FiveMinutes, OneMinute};
    // nothing given: the spec keeps its own
    assert_eq!(seed_horizon("horizon", None, None).unwrap(), (None, None));
    assert_eq!(
        seed_horizon("horizon", None, Some(OneMinute)).unwrap(),
        (Some(OneMinute), None)
    );
    // with a timeframe, any horizon is that timeframe's; a different one is noted
    assert_eq!(
        seed_horizon("horizon", Some(60), Some(OneMinute)).unwrap(),
        (Some(OneMinute), None)
    );
    for h in [12, 24, 48, 100, 288] {
        let (tf, note) = seed_horizon("horizon", Some(h), Some(OneMinute)).unwrap();
        assert_eq!(tf, Some(OneMinute));
        let note = note.unwrap();
        assert_eq!(
            (note.field.as_str(), note.given.clone(), note.used.clone()),
            ("horizon", h.into(), 60.into())
        );
        assert!(
            note.message
                .contains(&format!("horizon {h} replaced by 60")),
            "{}",
            note.message
        );
    }
    // without one, a timeframe's horizon picks it, and the seed's are the default's
    assert_eq!(
        seed_horizon("horizon", Some(60), None).unwrap(),
        (Some(OneMinute), None)
    );
    assert_eq!(
        seed_horizon("horizon", Some(288), None).unwrap(),
        (Some(FiveMinutes), None)
    );
    let (tf, note) = seed_horizon("horizon", Some(12), None).unwrap();
    assert_eq!(tf, Some(FiveMinutes));
    assert!(note.unwrap().message.contains("\"timeframe\": \"1m\""));
    // anything else: the field, the accepted values and the fix
    let e = seed_horizon("horizon", Some(100), None).unwrap_err();
    assert_eq!(e.field, "horizon");
    assert!(
        e.message.contains("288")
            && e.message.contains("60")
            && e.message.contains("\"timeframe\""),
        "{e}"
    );
}

#[test]
fn zoo_validation_reports_every_error_with_field_and_fix() {
    let mut s = ExperimentSpec::new(&["TransformerBlock", "NoSuchBlock"], "nohead");
    s.model.backbone.d_model = 30;
    s.model.backbone.block_kwargs = vec![
        serde_json::json!({"n_heads": 4, "bogus": 1})
            .as_object()
            .unwrap()
            .clone(),
        Default::default(),
    ];
    s.training.horizon = 100;
    s.training.lr = 0.0;
    s.data.timeframe = jobs::Timeframe::FiveMinutes;
    let errs = s.validate().unwrap_err();
    let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
    for f in [
        "model.backbone.blocks[1]",
        "model.backbone.block_kwargs[0].bogus",
        "model.backbone.block_kwargs[0].n_heads",
        "model.head.kind",
        "training.horizon",
        "training.lr",
    ] {
        assert!(fields.contains(&f), "{f} missing from {errs:?}");
    }
    let heads = errs.iter().find(|e| e.field.ends_with("n_heads")).unwrap();
    assert!(
        heads.message.contains("not divisible") && heads.message.contains("use n_heads in"),
        "{}",
        heads.message
    );
    let h = errs.iter().find(|e| e.field == "training.horizon").unwrap();
    assert!(h.message.contains("set horizon to 288"), "{}", h.message);
    // unknown JSON fields are refused by name
    let e = ExperimentSpec::from_json(r#"{"model":{},"trainin":{}}"#).unwrap_err();
    assert!(
        e.to_string().contains("trainin") || e.to_string().contains("missing"),
        "{e}"
    );
    let round = ExperimentSpec::from_json(
        &serde_json::to_string(&tiny_spec(&["LSTMBlock"], "GBMHead")).unwrap(),
    )
    .unwrap();
    assert_eq!(round, tiny_spec(&["LSTMBlock"], "GBMHead"));
}

#[test]
fn zoo_param_count_and_flops() {
    let s = tiny_spec(&["LSTMBlock"], "GBMHead");
    // input 9*8+8, LSTM 4*(8*8 + 8*8 + 8 + 8) = 576, block LN 16, final LN 16, head LN 16 + 8*2+2
    assert_eq!(s.param_count().unwrap(), 80 + 576 + 16 + 16 + 16 + 18);
    let f = s.flops_estimate().unwrap();
    assert!(f > 2 * 576 * 16, "{f}");
    let big = tiny_spec(&["LSTMBlock", "LSTMBlock"], "GBMHead");
    assert!(big.flops_estimate().unwrap() > f);
}

#[test]
fn zoo_init_is_deterministic() {
    let s = tiny_spec(&["TransformerBlock"], "GBMHead");
    let r = s.validate().unwrap();
    let weights = |seed| {
        let vm = SeededVarMap::new(seed);
        ZooModel::build(&s, &r, vm.builder(&Device::Cpu)).unwrap();
        vm.vars()
            .iter()
            .map(|v| {
                v.as_tensor()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap()
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(weights(1), weights(1));
    assert_ne!(weights(1), weights(2));
    let _ = ChaCha8Rng::seed_from_u64(0);
}

/// The GBM, Student-t, quantile and copula heads start near a standard normal per step (their `reinit`),
/// where the generic initialisation left them off (the quantile and copula heads' initial loss
/// 10 to 50 times the GBM head's, the GBM head's width about 0.69 with a random drift); the
/// other heads keep their generic start.
#[test]
fn zoo_gbm_quantile_and_copula_heads_start_near_a_standard_normal() {
    let dev = Device::Cpu;
    for head in ["GBMHead", "StudentTHead", "QuantileHead", "CopulaHead"] {
        let s = tiny_spec(&["LSTMBlock"], head);
        let r = s.validate().unwrap();
        let vm = SeededVarMap::new(3);
        let model = ZooModel::build(&s, &r, vm.builder(&dev)).unwrap();
        let stats = |model: &ZooModel| {
            let f = s.model.backbone.features.len();
            let x = Noise::new(5, &dev)
                .normal((4, s.model.backbone.seq_len, f))
                .unwrap();
            let inc = model.sample(&x, 400, &mut Noise::new(9, &dev)).unwrap();
            let v = inc.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let n = v.len() as f64;
            let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
            let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
            (mean, var.sqrt())
        };
        let (_, generic_sd) = stats(&model);
        model.init_head(&vm.named_vars()).unwrap();
        let (mean, sd) = stats(&model);
        assert!(mean.abs() < 0.1, "{head}: starts at mean {mean}");
        assert!(
            (sd - 1.0).abs() < 0.15,
            "{head}: starts at sd {sd} (generic {generic_sd})"
        );
    }
    // a head without its own start is left as built
    let s = tiny_spec(&["LSTMBlock"], "MixtureHead");
    let r = s.validate().unwrap();
    let vm = SeededVarMap::new(3);
    let model = ZooModel::build(&s, &r, vm.builder(&dev)).unwrap();
    let before: Vec<Vec<f32>> = vm
        .vars()
        .iter()
        .map(|v| v.as_tensor().flatten_all().unwrap().to_vec1().unwrap())
        .collect();
    model.init_head(&vm.named_vars()).unwrap();
    let after: Vec<Vec<f32>> = vm
        .vars()
        .iter()
        .map(|v| v.as_tensor().flatten_all().unwrap().to_vec1().unwrap())
        .collect();
    assert_eq!(before, after);
}

/// The Student-t head draws the GBM head's distribution with the anchor's heavy tails: the
/// same unit variance at the start, a kurtosis near the t's (9 at 5 degrees of freedom) where
/// the Gaussian's is 3; a `df` of 2 or less (no variance) is refused by name.
#[test]
fn zoo_student_t_head_has_unit_variance_and_heavy_tails() {
    let dev = Device::Cpu;
    let kurtosis = |head: &str| {
        let s = tiny_spec(&["LSTMBlock"], head);
        let r = s.validate().unwrap();
        let vm = SeededVarMap::new(3);
        let model = ZooModel::build(&s, &r, vm.builder(&dev)).unwrap();
        model.init_head(&vm.named_vars()).unwrap();
        let f = s.model.backbone.features.len();
        let x = Noise::new(5, &dev)
            .normal((2, s.model.backbone.seq_len, f))
            .unwrap();
        let inc = model.sample(&x, 2000, &mut Noise::new(9, &dev)).unwrap();
        let v: Vec<f64> = inc
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .into_iter()
            .map(f64::from)
            .collect();
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let m2 = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
        let m4 = v.iter().map(|x| (x - mean).powi(4)).sum::<f64>() / n;
        (m2.sqrt(), m4 / (m2 * m2))
    };
    let (sd_t, k_t) = kurtosis("StudentTHead");
    let (sd_g, k_g) = kurtosis("GBMHead");
    assert!(
        (sd_t - sd_g).abs() < 0.05,
        "sd {sd_t} vs the Gaussian's {sd_g}"
    );
    assert!(k_t > 5.0, "Student-t kurtosis {k_t}");
    assert!((k_g - 3.0).abs() < 0.3, "Gaussian kurtosis {k_g}");
    let mut s = tiny_spec(&["LSTMBlock"], "StudentTHead");
    s.model
        .head
        .kwargs
        .insert("df".into(), serde_json::json!(2.0));
    let e = format!("{:?}", s.validate().unwrap_err());
    assert!(e.contains("df"), "{e}");
}

#[test]
fn zoo_training_is_deterministic_checkpoints_resume_and_forecast() {
    use super::forecaster::ZooForecaster;
    use super::train::{train, TrainOptions};
    use sn50::forecast::{ForecastRequest, Forecaster};
    let Some(dir) = data_dir() else { return };
    let mut spec = tiny_spec(&["LSTMBlock"], "GBMHead");
    spec.training.epochs = 2;
    spec.training.steps_per_epoch = 3;
    spec.training.batch_size = 4;
    spec.training.eval_windows = 4;
    let tmp = std::env::temp_dir().join(format!("zoo-test-{}", std::process::id()));
    let opts = |name: &str, resume: bool| TrainOptions {
        data_dir: dir.clone(),
        out_dir: tmp.join(name),
        device: Device::Cpu,
        resume,
    };
    let mut epochs_seen = Vec::new();
    let a = train(&spec, &opts("a", false), &mut |e| epochs_seen.push(e.epoch)).unwrap();
    let b = train(&spec, &opts("b", false), &mut |_| {}).unwrap();
    assert_eq!(epochs_seen, vec![1, 2]);
    assert_eq!(a.step_losses.len(), 6);
    assert!(a.step_losses.iter().all(|l| l.is_finite()));
    assert_eq!(a.step_losses, b.step_losses, "same seed, same losses");
    assert_eq!(
        a.state
            .history
            .iter()
            .map(|h| h.val_loss)
            .collect::<Vec<_>>(),
        b.state
            .history
            .iter()
            .map(|h| h.val_loss)
            .collect::<Vec<_>>()
    );
    for f in [
        "model.safetensors",
        "last.safetensors",
        "spec.json",
        "state.json",
    ] {
        assert!(tmp.join("a").join(f).is_file(), "{f} missing");
    }
    let mut other = spec.clone();
    other.training.seed = 43;
    let c = train(&other, &opts("c", false), &mut |_| {}).unwrap();
    assert_ne!(a.step_losses, c.step_losses, "another seed, other losses");
    // resume: one epoch, then continue to two
    let mut one = spec.clone();
    one.training.epochs = 1;
    let r1 = train(&one, &opts("r", false), &mut |_| {}).unwrap();
    assert_eq!(r1.state.epochs_done, 1);
    assert_eq!(r1.step_losses, a.step_losses[..3].to_vec());
    let r2 = train(&spec, &opts("r", true), &mut |_| {}).unwrap();
    assert_eq!(r2.state.epochs_done, 2);
    assert_eq!(r2.step_losses.len(), 3, "only the second epoch ran");
    assert_eq!(r2.state.history.len(), 2);
    assert_eq!(r2.state.history[0], r1.state.history[0]);
    // with the AdamW moments restored, the resumed epoch is the uninterrupted run's, bit for bit
    assert!(r2.optimizer_restored);
    assert_eq!(r2.step_losses, a.step_losses[3..].to_vec());
    assert_eq!(r2.state.history[1].val_loss, a.state.history[1].val_loss);
    assert_eq!(r2.state.steps, a.state.steps);
    let weights = |dir: &Path| {
        let mut m: Vec<(String, Vec<f32>)> =
            candle_core::safetensors::load(dir.join("last.safetensors"), &Device::Cpu)
                .unwrap()
                .into_iter()
                .map(|(k, t)| (k, t.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
                .collect();
        m.sort_by(|x, y| x.0.cmp(&y.0));
        m
    };
    assert_eq!(weights(&tmp.join("r")), weights(&tmp.join("a")));
    // without them (an older checkpoint) the resumed epoch differs: the test can tell
    std::fs::remove_dir_all(tmp.join("r")).unwrap();
    train(&one, &opts("r", false), &mut |_| {}).unwrap();
    std::fs::remove_file(tmp.join("r").join(super::train::OPTIM_FILE)).unwrap();
    let cold = train(&spec, &opts("r", true), &mut |_| {}).unwrap();
    assert!(!cold.optimizer_restored);
    assert_ne!(cold.step_losses, a.step_losses[3..].to_vec());
    // the checkpoint answers an SN50 request from history before the request time
    let f = ZooForecaster::load(&tmp.join("a"), &Device::Cpu).unwrap();
    let bars = Bars::load(&dir.join("BTC_5m.csv")).unwrap();
    let as_of = bars.timestamps[bars.len() - 400] + 300;
    let req = ForecastRequest {
        asset: "BTC".into(),
        start_time: as_of,
        time_increment: 300,
        time_length: 86_400,
        num_simulations: 1000,
        spot: bars.close[bars.len() - 400],
        history: Some(&bars),
        as_of,
    };
    let p1 = f.forecast(&req, &mut ChaCha8Rng::seed_from_u64(3)).unwrap();
    let p2 = f.forecast(&req, &mut ChaCha8Rng::seed_from_u64(3)).unwrap();
    assert_eq!(p1, p2);
    assert_eq!((p1.n_paths(), p1.n_points()), (1000, 289));
    assert!((0..1000).all(|i| p1.row(i)[0] == req.spot));
    assert_response_ok(&p1, as_of, 300, 86_400);
    // a 1-minute request is refused by name
    let bad = ForecastRequest {
        time_increment: 60,
        time_length: 3600,
        ..req.clone()
    };
    let e = f
        .forecast(&bad, &mut ChaCha8Rng::seed_from_u64(3))
        .unwrap_err();
    assert!(e.to_string().contains("288 steps of 300 s"), "{e}");
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn zoo_early_stopping_triggers_after_patience_on_real_data() {
    use super::train::{train, TrainOptions};
    let Some(dir) = data_dir() else { return };
    // lr 1e-20: every update is below half an f32 ulp of the weights, so they never move, the
    // validation loss (fixed noise) never improves after epoch 1 and training must stop after
    // 1 + patience epochs of the 10 asked for.
    let mut spec = tiny_spec(&["LSTMBlock"], "GBMHead");
    spec.training.epochs = 10;
    spec.training.patience = 2;
    spec.training.steps_per_epoch = 2;
    spec.training.batch_size = 4;
    spec.training.eval_windows = 4;
    spec.training.lr = 1e-20;
    let tmp = std::env::temp_dir().join(format!("zoo-early-{}", std::process::id()));
    let opts = TrainOptions {
        data_dir: dir.clone(),
        out_dir: tmp.clone(),
        device: Device::Cpu,
        resume: false,
    };
    let mut seen = Vec::new();
    let r = train(&spec, &opts, &mut |e| seen.push((e.epoch, e.improved))).unwrap();
    assert!(r.state.stopped_early, "{:?}", r.state);
    assert_eq!(seen, vec![(1, true), (2, false), (3, false)]);
    assert_eq!(r.state.epochs_done, 3);
    assert_eq!(r.state.best_epoch, 1);
    assert_eq!(r.step_losses.len(), 6);
    let v: Vec<f64> = r.state.history.iter().map(|h| h.val_loss).collect();
    assert!(v.iter().all(|x| x.is_finite() && *x == v[0]), "{v:?}");
    // resuming a stopped run trains nothing more
    let again = train(
        &spec,
        &TrainOptions {
            resume: true,
            ..opts.clone()
        },
        &mut |_| panic!("no epoch may run after early stopping"),
    )
    .unwrap();
    assert!(again.step_losses.is_empty());
    assert!(again.state.stopped_early);
    // with a learning rate the same data trains all epochs asked for (patience not exhausted)
    spec.training.lr = 3e-3;
    spec.training.epochs = 2;
    let trained = train(
        &spec,
        &TrainOptions {
            out_dir: tmp.join("lr"),
            ..opts.clone()
        },
        &mut |_| {},
    )
    .unwrap();
    assert!(!trained.state.stopped_early);
    assert_eq!(trained.state.epochs_done, 2);
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn zoo_load_forecaster_names_gbm_and_checkpoints() {
    use super::forecaster::load_forecaster;
    let g = load_forecaster("gbm", &Device::Cpu).unwrap();
    assert_eq!(g.name(), "gbm");
    assert_eq!(load_forecaster("GBM", &Device::Cpu).unwrap().name(), "gbm");
    let missing = std::env::temp_dir().join("zoo-no-such-checkpoint");
    let e = load_forecaster(missing.to_str().unwrap(), &Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("zoo-no-such-checkpoint") && e.contains("gbm"),
        "{e}"
    );
    // a folder without a checkpoint names the missing file
    let empty = std::env::temp_dir().join(format!("zoo-empty-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    let e = load_forecaster(empty.to_str().unwrap(), &Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("spec.json"), "{e}");
    let _ = std::fs::remove_dir_all(&empty);
}

#[test]
fn zoo_windows_skip_gaps_and_split_in_time() {
    let Some(bars) = btc() else { return };
    let (s, h) = (16, 288);
    let w = AssetWindows::new("BTC", bars.clone(), s, h, 0.2, 1).unwrap();
    let runs = super::features::run_starts(&w.bars);
    for &i in w.train.iter().chain(&w.val) {
        assert!(
            runs[i + h] + s + super::features::VOL_WINDOW <= i + 1,
            "window {i} crosses a gap"
        );
    }
    assert!(
        w.train.iter().all(|&i| i + h < w.cutoff),
        "a training target reaches the validation period"
    );
    assert!(w.val.iter().all(|&i| i >= w.cutoff));
    assert!(w.norm.fitted_bars < w.cutoff);
    // a gap in the data removes the windows that span it
    let mut gapped = bars.clone();
    let k = 3000;
    for v in [
        &mut gapped.open,
        &mut gapped.high,
        &mut gapped.low,
        &mut gapped.close,
        &mut gapped.volume,
    ] {
        v.remove(k);
    }
    gapped.timestamps.remove(k);
    let g = AssetWindows::new("BTC", gapped, s, h, 0.2, 1).unwrap();
    assert!(g.train.len() < w.train.len());
    // the gap lies between bars k-1 and k: no window may hold both
    assert!(g
        .train
        .iter()
        .all(|&i| !(i + 1 - s - super::features::VOL_WINDOW < k && i + h >= k)));
    // the evaluation's request history (window i - 1) is whole right after a gap only once
    // the full look-back has passed since it
    let need = s + super::features::VOL_WINDOW;
    assert!(!g.has_request_history(k + need - 1, s));
    assert!(g.has_request_history(k + need, s));
    assert!(!g.has_request_history(need - 1, s) && g.has_request_history(need, s));
}

/// Every trainable parameter of every block (with the GBM head) and of every head (after a TCN
/// block) receives a finite gradient from the training loss, and the input projection a
/// non-zero one: the gradient reaches through the whole backbone. (candle-nn's `LayerNorm`
/// dropped it: its fused forward has no backward, so the backbone did not train.)
#[test]
fn zoo_every_parameter_gets_a_gradient() {
    let dev = Device::Cpu;
    let mut combos: Vec<(Vec<&str>, &str)> =
        BLOCKS.iter().map(|b| (vec![b.name], "GBMHead")).collect();
    combos.extend(HEADS.iter().map(|h| (vec!["TCNBlock"], h.name)));
    combos.push((vec!["TransformerBlock", "LSTMBlock"], "GBMHead"));
    for (blocks, head) in combos {
        let spec = tiny_spec(&blocks, head);
        let r = spec.validate().unwrap();
        let vm = SeededVarMap::new(3);
        let model = ZooModel::build(&spec, &r, vm.builder(&dev)).unwrap();
        let (b, s, f) = (
            3,
            spec.model.backbone.seq_len,
            spec.model.backbone.features.len(),
        );
        let h = spec.training.horizon;
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let x: Vec<f32> = (0..b * s * f)
            .map(|_| rand::Rng::random_range(&mut rng, -1.0f32..1.0))
            .collect();
        let y: Vec<f32> = (0..b * h).map(|k| ((k % h) as f32).sqrt() * 0.3).collect();
        let x = Tensor::from_vec(x, (b, s, f), &dev).unwrap();
        let y = Tensor::from_vec(y, (b, h), &dev).unwrap();
        let mut noise = Noise::new(1, &dev);
        let loss = batch_loss(&model, &x, &y, 8, LossKind::Crps, 0.95, &mut noise).unwrap();
        let grads = loss.backward().unwrap();
        for (name, v) in vm.named_vars() {
            let g = grads
                .get(&v)
                .unwrap_or_else(|| panic!("{blocks:?}+{head}: no gradient for {name}"));
            let norm = g
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(
                norm.is_finite(),
                "{blocks:?}+{head}: {name} gradient {norm}"
            );
            if name.starts_with("input.") {
                assert!(norm > 0.0, "{blocks:?}+{head}: zero gradient for {name}");
            }
        }
    }
}

/// The last 3000 BTC 1-minute bars.
fn btc_1m() -> Option<&'static Bars> {
    static B: OnceLock<Option<Bars>> = OnceLock::new();
    B.get_or_init(|| {
        let b = Bars::load(&data_dir()?.join("BTC_1m.csv")).ok()?;
        let k = b.len() - 3000;
        Some(Bars {
            bar_seconds: b.bar_seconds,
            timestamps: b.timestamps[k..].to_vec(),
            open: b.open[k..].to_vec(),
            high: b.high[k..].to_vec(),
            low: b.low[k..].to_vec(),
            close: b.close[k..].to_vec(),
            volume: b.volume[k..].to_vec(),
        })
    })
    .as_ref()
}

#[test]
fn zoo_vol_loss_weight_follows_the_timeframe_and_old_specs_read_zero() {
    use jobs::Timeframe;
    let mut s = tiny_spec(&["LSTMBlock"], "GBMHead");
    assert_eq!(s.training.vol_loss_weight, 0.0);
    // a zero weight is left out of the JSON, so specs written before the field read back alike
    let text = serde_json::to_string(&s).unwrap();
    assert!(!text.contains("vol_loss_weight"), "{text}");
    s.set_timeframe(Timeframe::OneMinute);
    assert_eq!((s.training.horizon, s.training.vol_loss_weight), (60, 1.0));
    let back = ExperimentSpec::from_json(&serde_json::to_string(&s).unwrap()).unwrap();
    assert_eq!(back.training.vol_loss_weight, 1.0);
    // re-applying the same timeframe keeps an explicit weight
    s.training.vol_loss_weight = 0.0;
    s.set_timeframe(Timeframe::OneMinute);
    assert_eq!(s.training.vol_loss_weight, 0.0);
    // a stored 1 m spec without the field reads 0: trained as it was
    let old = serde_json::to_string(&s).unwrap();
    assert!(!old.contains("vol_loss_weight"));
    assert_eq!(
        ExperimentSpec::from_json(&old)
            .unwrap()
            .training
            .vol_loss_weight,
        0.0
    );
    s.training.vol_loss_weight = 0.7;
    s.set_timeframe(Timeframe::FiveMinutes);
    assert_eq!((s.training.horizon, s.training.vol_loss_weight), (288, 0.0));
    s.training.vol_loss_weight = -1.0;
    let e = s.validate().unwrap_err();
    assert!(
        e.iter().any(|i| i.field == "training.vol_loss_weight"),
        "{e:?}"
    );
    s.training.vol_loss_weight = f64::NAN;
    assert!(s.validate().is_err());
}

/// On 1 m bars, for an affine head (the fused CPU path) and a head that returns increments:
/// the loss with the term is the price loss plus `weight * term` on the same paths (linear in
/// the weight, the noise unchanged), the term is positive and has gradients; with weight 0 the
/// spec trains on the price loss alone.
#[test]
fn zoo_batch_loss_adds_the_weighted_vol_term() {
    use super::train::{batch_loss_with, batch_ret_std, vol_loss_for};
    let Some(bars) = btc_1m() else { return };
    for head in ["GBMHead", "SDEHead"] {
        let mut spec = tiny_spec(&["LSTMBlock"], head);
        spec.set_timeframe(jobs::Timeframe::OneMinute);
        let r = spec.validate().unwrap();
        let w = AssetWindows::new("BTC", bars.clone(), 16, 60, 0.2, 12).unwrap();
        let dev = Device::Cpu;
        let vm = SeededVarMap::new(3);
        let model = ZooModel::build(&spec, &r, vm.builder(&dev)).unwrap();
        let items: Vec<(usize, usize)> = w.train.iter().take(6).map(|&i| (0, i)).collect();
        let data = [w];
        let (x, y) = make_batch(&spec, &data, &items, &dev).unwrap();
        let rs = batch_ret_std(&data, &items, &dev).unwrap();
        let vol1 = vol_loss_for(&spec)
            .unwrap()
            .expect("1 m trains with the term");
        assert_eq!(vol1.weight, 1.0);
        let mut vol2 = vol1.clone();
        vol2.weight = 2.0;
        let loss = |v: Option<&super::vol_loss::VolLoss>| {
            let mut noise = Noise::new(17, &dev);
            batch_loss_with(
                &model,
                &x,
                &y,
                None,
                16,
                LossKind::Crps,
                0.95,
                &mut noise,
                v.map(|v| (v, &rs)),
            )
            .unwrap()
        };
        let l0 = loss(None).to_scalar::<f32>().unwrap() as f64;
        let mut noise = Noise::new(17, &dev);
        let plain = batch_loss(&model, &x, &y, 16, LossKind::Crps, 0.95, &mut noise)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap() as f64;
        assert_eq!(l0, plain);
        let t1 = loss(Some(&vol1));
        let l1 = t1.to_scalar::<f32>().unwrap() as f64;
        let l2 = loss(Some(&vol2)).to_scalar::<f32>().unwrap() as f64;
        let term = l1 - l0;
        assert!(term > 1e-4 * l0, "{head}: term {term} of {l0}");
        assert!(
            ((l2 - l0) - 2.0 * term).abs() < 1e-4 * l0,
            "{head}: {l0} {l1} {l2}"
        );
        let g = t1.backward().unwrap();
        let n_grads = vm.vars().iter().filter(|v| g.get(v).is_some()).count();
        assert_eq!(n_grads, vm.vars().len(), "{head}");
        spec.training.vol_loss_weight = 0.0;
        assert!(vol_loss_for(&spec).unwrap().is_none());
    }
}

/// The evaluation's breakdown: the total is `miner_total_score`'s, bit for bit, and is the
/// price CRPS plus the volatility term on a 1 h window of real bars.
#[test]
fn zoo_score_detail_is_the_validator_total_and_its_parts() {
    use super::train::score_detail;
    use sn50::constants::{PromptKind, Sn50Config};
    use sn50::forecast::{ForecastRequest, Forecaster, Gbm};
    let Some(bars) = btc_1m() else { return };
    let cfg = Sn50Config::default();
    let c = cfg.scoring(PromptKind::High, "BTC").unwrap();
    let gbm = Gbm::new(cfg.clone());
    let i = 1000;
    let spot = bars.close[i];
    let req = ForecastRequest {
        asset: "BTC".into(),
        start_time: bars.timestamps[i] + 60,
        time_increment: 60,
        time_length: 3600,
        num_simulations: 200,
        spot,
        history: None,
        as_of: bars.timestamps[i] + 60,
    };
    let paths = gbm
        .forecast(&req, &mut ChaCha8Rng::seed_from_u64(4))
        .unwrap();
    let real = bars.close[i..=i + 60].to_vec();
    let (total, price, vol) = score_detail(&paths, &real, c).unwrap();
    let want = sn50::vol::miner_total_score(&paths, &real, c);
    assert_eq!(total.to_bits(), want.to_bits());
    let vol = vol.expect("the 1 h competition has a volatility term");
    assert!(vol > 0.0 && price > 0.0);
    assert_eq!((price + vol).to_bits(), total.to_bits());
}

/// The EWMA scale: spelled `global`, `ewma`, `ewma:H`; it standardises each window by the
/// volatility of the bars before it (a calm and a wild stretch get different scales; the
/// targets' spread is near one either way), the `ewma_vol` feature is the same recursion
/// stepped along the window, and the history-only input a forecaster builds at serving time
/// equals the training input.
#[test]
fn zoo_ewma_scale_standardises_each_window_by_its_past() {
    use super::features::{ewma_sigma, Scale};
    assert_eq!("global".parse::<Scale>().unwrap(), Scale::Global);
    assert_eq!(
        "ewma".parse::<Scale>().unwrap(),
        Scale::Ewma {
            half_life_hours: 24.0,
            tod: false
        }
    );
    assert_eq!(
        "ewma:6".parse::<Scale>().unwrap().to_string(),
        "ewma:6",
        "round trip"
    );
    for bad in ["ewma:0", "ewma:x", "local", "ewma:1000"] {
        let e = bad.parse::<Scale>().unwrap_err();
        assert!(e.contains("global") && e.contains("ewma:HOURS"), "{e}");
    }
    let Some(bars) = btc() else { return };
    let (s, h) = (16, 288);
    let sc = Scale::Ewma {
        half_life_hours: 12.0,
        tod: false,
    };
    let opts = super::features::WindowOptions {
        seq_len: s,
        horizon: h,
        val_fraction: 0.2,
        stride: 12,
        scale: sc,
        gaps: super::features::Gaps::Drop,
    };
    let w = AssetWindows::build("BTC", bars.clone(), &opts).unwrap();
    assert_eq!(w.norm.scale, sc);
    // the scale at bar i uses no bar after i
    let i = w.train[w.train.len() / 2];
    let cut = bars.clone().before(bars.timestamps[i + 1]);
    assert_eq!(cut.len(), i + 1);
    assert_eq!(w.scale(i), ewma_sigma(&cut, i, 12.0, w.norm.ret_std));
    // scales differ between windows and standardise: the mean square of one-step targets is
    // near one under the EWMA scale
    let scales: Vec<f64> = w.train.iter().map(|&i| w.scale(i)).collect();
    let (lo, hi) = scales
        .iter()
        .fold((f64::MAX, 0f64), |(l, u), &x| (l.min(x), u.max(x)));
    assert!(hi > 1.5 * lo, "scales {lo}..{hi} hardly move");
    let ms: f64 = w
        .train
        .iter()
        .map(|&i| {
            let mut y = Vec::new();
            w.target(i, 1, &mut y);
            (y[0] as f64).powi(2)
        })
        .sum::<f64>()
        / w.train.len() as f64;
    assert!(
        (0.5..2.0).contains(&ms),
        "mean square of standardised returns {ms}"
    );
    // the ewma_vol feature at the window's last bar is the log of the scale there over ret_std,
    // (up to where the truncated look-back starts: the feature steps on from the window's
    // first bar), and the serving input equals the training input
    let names: Vec<String> = ["log_return", "ewma_vol"].map(String::from).to_vec();
    let mut x = Vec::new();
    w.input(i, s, &names, &mut x);
    let last = x[x.len() - 1] as f64;
    assert!(
        (last - (w.scale(i) / w.norm.ret_std).ln()).abs() < 0.01,
        "{last} vs {}",
        (w.scale(i) / w.norm.ret_std).ln()
    );
    assert_serving_input_is_training_input(bars, &w, i, s, &names, &x);
}

/// The history-only input a forecaster builds at serving time for the request after bar `i`
/// (from the bars up to `i` alone) is `x`, window `i`'s training input.
fn assert_serving_input_is_training_input(
    bars: &Bars,
    w: &AssetWindows,
    i: usize,
    seq_len: usize,
    names: &[String],
    x: &[f32],
) {
    let cut = bars.clone().before(bars.timestamps[i + 1]);
    let (j, xh) = super::features::history_input(
        &cut,
        &w.norm,
        bars.timestamps[i] + bars.bar_seconds,
        seq_len,
        names,
        super::features::Gaps::Drop,
    )
    .unwrap();
    assert_eq!(j, i);
    assert_eq!(xh, x);
}

/// The multi-scale EWMA features: `ewma_vol_2h` and `ewma_vol_3d` are the log of an EWMA
/// volatility over `ret_std` with half-lives of two hours and three days (at a window's last bar
/// up to the truncated look-back of its first), they differ from each other and from
/// `ewma_vol`, the look-back a forecaster reads covers the longest half-life named, and the
/// serving input equals the training input.
#[test]
fn zoo_multi_scale_ewma_features_read_their_own_half_lives() {
    use super::features::{ewma_sigma, Scale};
    let Some(bars) = btc() else { return };
    let s = 16;
    let opts = super::features::WindowOptions {
        seq_len: s,
        horizon: 288,
        val_fraction: 0.2,
        stride: 12,
        scale: Scale::Global,
        gaps: super::features::Gaps::Drop,
    };
    let w = AssetWindows::build("BTC", bars.clone(), &opts).unwrap();
    let names: Vec<String> = ["ewma_vol_2h", "ewma_vol", "ewma_vol_3d"]
        .map(String::from)
        .to_vec();
    // the 3-day half-life's look-back (four half-lives of 5-minute bars) beside the global
    // scale's none
    assert_eq!(w.norm.lookback_bars(300, &names[..1]), 4 * 24);
    assert_eq!(w.norm.lookback_bars(300, &names), 4 * 72 * 12);
    assert_eq!(w.norm.lookback_bars(300, &[]), 0);
    let i = w.train[w.train.len() / 2];
    let mut x = Vec::new();
    w.input(i, s, &names, &mut x);
    let last = &x[x.len() - 3..];
    for (k, hours) in [2.0, 24.0, 72.0].into_iter().enumerate() {
        let want = (ewma_sigma(bars, i, hours, w.norm.ret_std) / w.norm.ret_std).ln();
        // the prior's weight at the truncated look-back's start (1/16) differs by the window's
        // 16 bars: a few hundredths of the log at two hours, less at longer half-lives
        assert!(
            (last[k] as f64 - want).abs() < 0.03,
            "{}: {} vs {want}",
            names[k],
            last[k]
        );
    }
    assert!((last[0] - last[2]).abs() > 1e-3 && (last[1] - last[2]).abs() > 1e-3);
    assert_serving_input_is_training_input(bars, &w, i, s, &names, &x);
}

/// BTC's last 5-minute bars ([`btc`]) as 24 h windows of 16 history bars on `scale`, every
/// 12th bar, gap-free, the last fifth for validation; `None` without the data.
fn btc_24h_windows(scale: super::features::Scale) -> Option<AssetWindows> {
    let opts = super::features::WindowOptions {
        seq_len: 16,
        horizon: 288,
        val_fraction: 0.2,
        stride: 12,
        scale,
        gaps: super::features::Gaps::Drop,
    };
    Some(AssetWindows::build("BTC", btc()?.clone(), &opts).unwrap())
}

/// The dispersion across UTC hours of the mean square of a 5-minute asset's standardised
/// target increments (every `step`-th training window, `h` steps each), relative to their mean:
/// how much of the day's shape a scale leaves in the targets.
fn hour_spread(w: &AssetWindows, h: usize, step: usize) -> f64 {
    let (mut sum, mut n) = ([0f64; 24], [0f64; 24]);
    for &i in w.train.iter().step_by(step) {
        let mut y = Vec::new();
        w.target(i, h, &mut y);
        for k in 0..h {
            let inc = y[k] as f64 - if k > 0 { y[k - 1] as f64 } else { 0.0 };
            let t = w.bars.timestamps[i] + (k as i64 + 1) * 300;
            let hour = (t.rem_euclid(86_400) / 3600) as usize;
            sum[hour] += inc * inc;
            n[hour] += 1.0;
        }
    }
    let ms: Vec<f64> = (0..24).map(|x| sum[x] / n[x]).collect();
    let mean = ms.iter().sum::<f64>() / 24.0;
    (ms.iter().map(|m| (m - mean).powi(2)).sum::<f64>() / 24.0).sqrt() / mean
}

/// `ewma-tod`: the EWMA level times each step's hour-of-day profile. The profile is fitted on
/// the training split (24 values averaging one, the busy hours above), a window's step scales
/// are its level times the profile's root at each step's hour, the targets' increments are the
/// bars' log returns over those scales, and standardised that way the returns of the 24 hours
/// are closer to one variance than with the level alone. Spelled `ewma-tod[:HOURS]`.
#[test]
fn zoo_ewma_tod_scale_shapes_each_step_by_its_hour() {
    use super::features::Scale;
    assert_eq!(
        "ewma-tod".parse::<Scale>().unwrap(),
        Scale::Ewma {
            half_life_hours: 24.0,
            tod: true
        }
    );
    assert_eq!(
        "ewma-tod:6".parse::<Scale>().unwrap().to_string(),
        "ewma-tod:6"
    );
    for bad in ["ewma-tod:0", "ewma-todd", "ewma-tod:x"] {
        let e = bad.parse::<Scale>().unwrap_err();
        assert!(e.contains("ewma-tod[:HOURS]"), "{e}");
    }
    let h = 288;
    let build = |tod| {
        btc_24h_windows(Scale::Ewma {
            half_life_hours: 24.0,
            tod,
        })
    };
    let Some((plain, tod)) = build(false).zip(build(true)) else {
        return;
    };
    assert!(plain.norm.tod.is_none());
    let p = tod.norm.tod.clone().expect("ewma-tod fits a profile");
    assert_eq!(p.len(), 24);
    assert!((p.iter().sum::<f64>() / 24.0 - 1.0).abs() < 1e-9, "{p:?}");
    let (lo, hi) = p
        .iter()
        .fold((f64::MAX, 0f64), |(l, u), &x| (l.min(x), u.max(x)));
    assert!(hi > 1.5 * lo, "BTC's hours hardly differ: {lo}..{hi}");
    // step k's scale: the window's level times the root of the profile at its bar's hour
    let b = &tod.bars;
    let i = tod.train[tod.train.len() / 2];
    let sc = tod.step_scales(i, h);
    assert_eq!(sc.len(), h);
    for (k, s) in sc.iter().enumerate() {
        let hour = ((b.timestamps[i] + (k as i64 + 1) * 300).rem_euclid(86_400) / 3600) as usize;
        assert!((s - tod.scale(i) * p[hour].sqrt()).abs() < 1e-15);
    }
    assert!(plain.step_scales(i, h).iter().all(|&s| s == plain.scale(i)));
    // targets: cumulative returns over the steps' scales; the plain scale's are unchanged
    let (mut y, mut yp) = (Vec::new(), Vec::new());
    tod.target(i, h, &mut y);
    plain.target(i, h, &mut yp);
    for k in 1..=h {
        let r = (b.close[i + k] / b.close[i + k - 1]).ln();
        let inc = y[k - 1] as f64 - if k > 1 { y[k - 2] as f64 } else { 0.0 };
        assert!((inc - r / sc[k - 1]).abs() < 1e-3, "step {k}");
        let whole = (b.close[i + k] / b.close[i]).ln() / plain.scale(i);
        assert_eq!(yp[k - 1], whole as f32);
    }
    // the spread across hours of the standardised returns' mean square shrinks
    let (sp, st) = (hour_spread(&plain, h, 1), hour_spread(&tod, h, 1));
    assert!(
        st < 0.7 * sp,
        "hours' dispersion {sp} with ewma, {st} with ewma-tod"
    );
}

/// `classical-tod`: each target step is divided by exactly the standard deviation the SN50
/// anchor `ewma-tod` would sample it with from the window's own history (the anchor's step
/// sds at the window's close), so a head's standard normal is the anchor; standardised that way
/// BTC's 24 hours are closer to one variance than on the level alone (`classical`), and the
/// names parse, print and look back two weeks.
#[test]
fn zoo_classical_scale_is_the_anchors_step_sds() {
    use super::features::{classical_step_sds, Scale};
    assert_eq!(
        "classical-tod".parse::<Scale>().unwrap(),
        Scale::Classical { tod: true }
    );
    assert_eq!(
        "classical".parse::<Scale>().unwrap().to_string(),
        "classical"
    );
    let e = "classical-x".parse::<Scale>().unwrap_err();
    assert!(e.contains("classical-tod"), "{e}");
    let h = 288;
    let build = |tod| btc_24h_windows(Scale::Classical { tod });
    let Some((plain, tod)) = build(false).zip(build(true)) else {
        return;
    };
    assert!(tod.norm.per_step() && !plain.norm.per_step());
    assert_eq!(tod.norm.horizon, h);
    // two weeks of 5-minute bars, the anchor's lookback
    assert!(tod.norm.lookback_bars(300, &[]) >= 14 * 288);
    let b = &tod.bars;
    let i = tod.train[tod.train.len() / 2];
    let model = sn50::classical::Ewma::by_name("ewma-tod").unwrap();
    let as_of = b.timestamps[i] + 300;
    let want = model.step_sds(b, as_of, as_of, 300, 86_400).unwrap();
    assert_eq!(tod.step_scales(i, h), want);
    assert_eq!(classical_step_sds(b, i, h, true).unwrap(), want);
    // the plain one is flat, at the anchor's level for the 24 h horizon (8 h half-life)
    let flat = plain.step_scales(i, h);
    assert!(flat.iter().all(|&s| s == flat[0]));
    assert!((plain.scale(i) / flat[0] - 1.0).abs() < 1e-12);
    let (lo, hi) = want
        .iter()
        .fold((f64::MAX, 0f64), |(l, u), &x| (l.min(x), u.max(x)));
    assert!(hi > 1.2 * lo, "BTC's hours hardly differ: {lo}..{hi}");
    // targets: the increments are the bars' log returns over the anchor's step sds
    let mut y = Vec::new();
    tod.target(i, h, &mut y);
    for k in 1..=h {
        let r = (b.close[i + k] / b.close[i + k - 1]).ln();
        let inc = y[k - 1] as f64 - if k > 1 { y[k - 2] as f64 } else { 0.0 };
        assert!((inc - r / want[k - 1]).abs() < 1e-3, "step {k}");
    }
    // the anchor's hours shape the standardised returns' spread across hours
    let (sp, st) = (hour_spread(&plain, h, 8), hour_spread(&tod, h, 8));
    assert!(
        st < 0.7 * sp,
        "hours' dispersion {sp} with classical, {st} with classical-tod"
    );
}

/// Gaps bridged: XAU's 5-minute bars have a daily break, so no 24 h window is gap-free; with
/// `bridge` windows cross it, their history runs over it, the steps inside it are masked, and
/// the masked loss is the mean over the steps with a price (all ones: the plain loss).
#[test]
fn zoo_bridged_windows_cross_closures_with_masked_targets() {
    use super::features::{Gaps, WindowOptions};
    use super::train::{make_batch_masked, sample_crps_masked};
    let Some(d) = data_dir() else { return };
    let Ok(bars) = Bars::load(&d.join("XAU_5m.csv")) else {
        return;
    };
    let mut opts = WindowOptions {
        seq_len: 32,
        horizon: 288,
        val_fraction: 0.2,
        stride: 12,
        scale: super::features::Scale::Global,
        gaps: Gaps::Drop,
    };
    let e = AssetWindows::build("XAU", bars.clone(), &opts).unwrap_err();
    assert!(e.to_string().contains("no gap-free training window"), "{e}");
    opts.gaps = Gaps::Bridge;
    let w = AssetWindows::build("XAU", bars, &opts).unwrap();
    assert!(
        w.train.len() > 500 && !w.val.is_empty(),
        "{}",
        w.train.len()
    );
    let mut spec = ExperimentSpec::new(&["LSTMBlock"], "GBMHead");
    spec.model.backbone.seq_len = 32;
    spec.data.gaps = Gaps::Bridge;
    let data = vec![w];
    let items: Vec<(usize, usize)> = data[0].train[..16].iter().map(|&i| (0, i)).collect();
    let (_, y, mask) = make_batch_masked(&spec, &data, &items, &Device::Cpu).unwrap();
    let mask = mask.expect("a day of XAU crosses its daily break");
    let m: Vec<Vec<f32>> = mask.to_vec2().unwrap();
    let yv: Vec<Vec<f32>> = y.to_vec2().unwrap();
    for (row, (mr, yr)) in m.iter().zip(&yv).enumerate() {
        let missing = mr.iter().filter(|&&x| x == 0.0).count();
        assert!(
            missing > 0 && 4 * (288 - missing) >= 288,
            "row {row}: {missing} missing"
        );
        assert_eq!(*mr.last().unwrap(), 1.0, "the last step has a price");
        assert!(mr.iter().zip(yr).all(|(&m, &y)| m == 1.0 || y == 0.0));
    }
    // the masked mean: all ones is the plain loss; masking steps drops their terms
    let dev = Device::Cpu;
    let samples = Tensor::randn(0f32, 1.0, (2, 3, 64), &dev).unwrap();
    let target = Tensor::new(&[[0.1f32, -0.2, 3.0], [0.0, 0.5, -4.0]], &dev).unwrap();
    let ones = Tensor::ones((2, 3), candle_core::DType::F32, &dev).unwrap();
    let plain = sample_crps(&samples, &target, LossKind::Crps, 0.95)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let all = sample_crps_masked(&samples, &target, &ones, LossKind::Crps, 0.95)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!((plain - all).abs() < 1e-6);
    let first = Tensor::new(&[[1f32, 1.0, 0.0], [1.0, 1.0, 0.0]], &dev).unwrap();
    let part = sample_crps_masked(&samples, &target, &first, LossKind::Crps, 0.95)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let sub = sample_crps(
        &samples.narrow(1, 0, 2).unwrap(),
        &target.narrow(1, 0, 2).unwrap(),
        LossKind::Crps,
        0.95,
    )
    .unwrap()
    .to_scalar::<f32>()
    .unwrap();
    assert!((part - sub).abs() < 1e-5, "{part} vs {sub}");
}

#[test]
fn worker_devices_resolve_once_and_name_the_cuda_feature() {
    assert_eq!(super::resolve_device("cpu").unwrap(), "cpu");
    let err = super::resolve_device("gpu").unwrap_err().to_string();
    assert!(err.contains("auto") && err.contains("cuda[:N]"), "{err}");
    if !cfg!(feature = "cuda") {
        assert_eq!(super::resolve_device("auto").unwrap(), "cpu");
        for d in ["cuda", "cuda:1"] {
            let err = super::resolve_device(d).unwrap_err().to_string();
            assert!(err.contains("--features cuda"), "{err}");
        }
    }
}

/// `ewma-tod` on a market that closes: the trading hours get their mean square returns, and
/// the closed hours the per-bar variance of the moves across the closures, so a path drifts
/// through a night about as far as the price jumps over one.
#[test]
fn zoo_ewma_tod_profile_spreads_the_closures_moves_over_the_closed_hours() {
    use super::features::{Normalizer, Scale};
    // 60 days of 5-minute bars from 14:00 to 20:55 UTC; each day's returns alternate +-a,
    // and the first bar of a day carries the night's move, +-g
    let (a, g) = (0.001f64, 0.006f64);
    let mut b = Bars {
        bar_seconds: 300,
        timestamps: vec![],
        open: vec![],
        high: vec![],
        low: vec![],
        close: vec![],
        volume: vec![],
    };
    let mut price = 100.0f64;
    for day in 0..60i64 {
        for k in 0..84i64 {
            let t = 1_700_006_400 + day * 86_400 + 14 * 3600 + k * 300; // a midnight + 14 h
            let r = match (k, (day + k) % 2) {
                (0, 0) => g,
                (0, _) => -g,
                (_, 0) => a,
                _ => -a,
            };
            price *= r.exp();
            b.timestamps.push(t);
            b.open.push(price);
            b.high.push(price * 1.0005);
            b.low.push(price * 0.9995);
            b.close.push(price);
            b.volume.push(1.0);
        }
    }
    assert_eq!(b.timestamps[0] % 86_400, 14 * 3600);
    let scale = Scale::Ewma {
        half_life_hours: 24.0,
        tod: true,
    };
    let norm = Normalizer::fit(&b, b.len(), scale, 288).unwrap();
    let p = norm.tod.expect("a profile");
    // a night spans the 205 bars from 20:55 to 14:00
    let closed = g * g / 205.0 / (a * a);
    for (h, v) in p.iter().enumerate() {
        let want = if (14..21).contains(&h) { 1.0 } else { closed };
        assert!((v - want).abs() < 1e-6 * want, "hour {h}: {v} vs {want}");
    }
}
