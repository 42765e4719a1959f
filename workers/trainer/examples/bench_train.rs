//! A thin wrapper over [`trainer::zoo::bench::bench_train`] that prints its JSON: a
//! release build of the trainer crate alone times training steps without building the CLI.
//!
//! ```text
//! RAYON_NUM_THREADS=1 cargo run --release -p synth-city-trainer --example bench_train -- \
//!     --preset lstm_gbm --steps 20 --data-dir ../shared/data [--asset BTC]
//! ```
//!
//! `--spec FILE` times a whole experiment spec instead; `--block NAME` one block into the GBM
//! head at d_model 32 and 64 bars (the presets' size), where `NAME` is a built-in block or
//! `graph:FILE`, a component graph document (docs/components.md) put into the spec inline:
//!
//! ```text
//! cargo run --release -p synth-city-trainer --example bench_train -- --block TCNBlock ...
//! cargo run --release -p synth-city-trainer --example bench_train -- \
//!     --block graph:workers/trainer/components/tcn.json ...
//! ```

use std::path::PathBuf;

use candle_core::Device;
use trainer::zoo::bench::{bench_train, bench_train_spec};
use trainer::zoo::spec::ExperimentSpec;

fn main() {
    let mut preset = "baseline_gbm".to_string();
    let mut steps = 20usize;
    let mut data_dir = PathBuf::from("data");
    let mut asset = "BTC".to_string();
    let mut spec_file: Option<PathBuf> = None;
    let mut block: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || {
            args.next().unwrap_or_else(|| {
                eprintln!("{a} needs a value");
                std::process::exit(2)
            })
        };
        match a.as_str() {
            "--preset" => preset = value(),
            "--steps" => {
                steps = value().parse().unwrap_or_else(|e| {
                    eprintln!("--steps: {e}");
                    std::process::exit(2)
                })
            }
            "--data-dir" => data_dir = PathBuf::from(value()),
            "--asset" => asset = value(),
            "--spec" => spec_file = Some(PathBuf::from(value())),
            "--block" => block = Some(value()),
            other => {
                eprintln!("unknown argument {other}; use --preset, --spec, --block, --steps, --data-dir, --asset");
                std::process::exit(2)
            }
        }
    }
    let fail = |what: String| -> ! {
        eprintln!("{what}");
        std::process::exit(2)
    };
    if let Some(b) = &block {
        let mut spec = ExperimentSpec::new(&[b.as_str()], "GBMHead");
        if let Some(file) = b.strip_prefix("graph:") {
            let doc = std::fs::read_to_string(file)
                .map_err(|e| e.to_string())
                .and_then(|t| {
                    trainer::zoo::graph::parse(&t).map_err(|e| {
                        e.iter()
                            .map(|i| i.to_string())
                            .collect::<Vec<_>>()
                            .join("; ")
                    })
                })
                .unwrap_or_else(|e| fail(format!("--block {b}: {e}")));
            spec.model.backbone.blocks = vec![format!("graph:{}", doc.name)];
            spec.model.components = vec![doc];
        }
        spec.model.backbone.d_model = 32;
        spec.model.backbone.seq_len = 64;
        let r = bench_train_spec(b, spec, &data_dir, &asset, steps, &Device::Cpu);
        return report(r);
    }
    let result = match &spec_file {
        None => bench_train(&preset, &data_dir, &asset, steps, &Device::Cpu),
        Some(p) => {
            let spec = std::fs::read_to_string(p)
                .map_err(|e| e.to_string())
                .and_then(|t| ExperimentSpec::from_json(&t).map_err(|e| e.to_string()))
                .unwrap_or_else(|e| {
                    eprintln!("--spec {}: {e}", p.display());
                    std::process::exit(2)
                });
            bench_train_spec(
                &p.display().to_string(),
                spec,
                &data_dir,
                &asset,
                steps,
                &Device::Cpu,
            )
        }
    };
    report(result)
}

fn report(result: Result<trainer::zoo::bench::BenchResult, trainer::zoo::ZooError>) {
    match result {
        Ok(r) => println!(
            "{}",
            serde_json::to_string(&r).expect("the result serialises")
        ),
        Err(e) => {
            eprintln!("bench_train: {e}");
            std::process::exit(1)
        }
    }
}
