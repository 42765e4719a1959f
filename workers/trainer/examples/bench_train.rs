//! A thin wrapper over [`trainer::zoo::bench::bench_train`] that prints its JSON: a
//! release build of the trainer crate alone times training steps without building the CLI.
//!
//! ```text
//! RAYON_NUM_THREADS=1 cargo run --release -p synth-city-trainer --example bench_train -- \
//!     --preset lstm_gbm --steps 20 --data-dir ../shared/data [--asset BTC]
//! ```

use std::path::PathBuf;

use candle_core::Device;
use trainer::zoo::bench::bench_train;

fn main() {
    let mut preset = "baseline_gbm".to_string();
    let mut steps = 20usize;
    let mut data_dir = PathBuf::from("data");
    let mut asset = "BTC".to_string();
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
            other => {
                eprintln!("unknown argument {other}; use --preset, --steps, --data-dir, --asset");
                std::process::exit(2)
            }
        }
    }
    match bench_train(&preset, &data_dir, &asset, steps, &Device::Cpu) {
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
