//! `synth-city bench store`: what handing one experiment's checkpoint from machine to machine
//! through the store costs (issue "one fleet, many machines"): the trainer's upload
//! (`publisher::artifacts::put_dir`: hash every file, store it and the manifest) and the other
//! machine's download into a fresh cache (`ArtifactCache::fetch`: read, check every hash and
//! size, rename into place), against the configured store (the directory, or the bucket when
//! `HIPPIUS_ENDPOINT` is set).
//!
//! Each repetition hands off a distinct checkpoint of the same size (each file's last 8 bytes
//! replaced by the repetition's number), so content addressing stores and fetches everything
//! anew instead of finding it there. It does not train (pass a checkpoint `experiment` wrote)
//! and does not clean the store afterwards (the objects are under `artifacts/`, like any).

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use publisher::artifacts::{put_dir, ArtifactCache};
use serde_json::json;

/// `synth-city bench store ...`
#[derive(Debug, Args)]
pub struct BenchStoreArgs {
    /// A checkpoint folder (`experiment --out DIR` writes one): its model.safetensors,
    /// spec.json and state.json are what a train stage hands off.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Hand-offs to time.
    #[arg(long, default_value_t = 10)]
    pub repeat: usize,
    /// The store directory (when HIPPIUS_ENDPOINT is unset).
    #[arg(long, env = "SYNTH_STORE_DIR", default_value = "store")]
    pub store: PathBuf,
    #[arg(long)]
    pub json: bool,
}

/// A scratch folder, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A copy of the checkpoint's files in `dir`, each with its last 8 bytes set to `n`.
fn variant(src: &Path, dir: &Path, n: u64) -> anyhow::Result<u64> {
    std::fs::create_dir_all(dir)?;
    let mut bytes = 0;
    for name in trainer::experiments::ARTIFACT_FILES {
        let p = src.join(name);
        if !p.is_file() {
            continue;
        }
        let mut b = std::fs::read(&p)?;
        let k = b.len().saturating_sub(8);
        let tail = n.to_le_bytes();
        let end = b.len();
        b[k..].copy_from_slice(&tail[..end - k]);
        bytes += b.len() as u64;
        std::fs::write(dir.join(name), b)?;
    }
    anyhow::ensure!(
        bytes > 0,
        "{} holds none of {}: pass a checkpoint folder (`synth-city experiment --out DIR`)",
        src.display(),
        trainer::experiments::ARTIFACT_FILES.join(", ")
    );
    Ok(bytes)
}

pub async fn bench_store(a: BenchStoreArgs) -> anyhow::Result<()> {
    anyhow::ensure!(a.repeat > 0, "--repeat must be at least 1");
    let store = publisher::store::open(&a.store)?;
    let salt = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos() as u64;
    let scratch = Scratch(std::env::temp_dir().join(format!(
        "synth-city-bench-store-{}-{salt}",
        std::process::id()
    )));
    let (mut up, mut down) = (Vec::new(), Vec::new());
    let mut bytes = 0;
    for i in 0..a.repeat {
        let dir = scratch.path().join(format!("ckpt-{i}"));
        bytes = variant(&a.checkpoint, &dir, salt.wrapping_add(i as u64))?;
        let names = trainer::experiments::ARTIFACT_FILES;
        let t = Instant::now();
        let r = put_dir(&*store, &dir, &names).await?;
        up.push(t.elapsed().as_secs_f64() * 1e3);
        // the other machine: an empty cache of its own
        let cache = ArtifactCache::new(scratch.path().join(format!("cache-{i}")), 1 << 40);
        let t = Instant::now();
        let got = cache.fetch(&*store, &r).await?;
        down.push(t.elapsed().as_secs_f64() * 1e3);
        anyhow::ensure!(got.join("model.safetensors").is_file() || got.join("spec.json").is_file());
    }
    // at least one repetition: both have a median
    let median = |v: &[f64]| sn50::rewards::median(v).unwrap_or(f64::NAN);
    let (u, d) = (median(&up), median(&down));
    let mb = bytes as f64 / (1 << 20) as f64;
    let v = json!({
        "store": store.describe(),
        "checkpoint_bytes": bytes,
        "repeat": a.repeat,
        "upload_ms_median": u,
        "download_verify_ms_median": d,
        "handoff_ms_median": u + d,
        "upload_mib_per_s": mb / (u / 1e3),
        "download_mib_per_s": mb / (d / 1e3),
        "upload_ms": up,
        "download_verify_ms": down,
    });
    if a.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "{}: checkpoint {:.2} MiB; upload {u:.1} ms, download + verify {d:.1} ms, hand-off {:.1} ms per experiment (medians of {})",
            v["store"].as_str().unwrap_or("?"),
            mb,
            u + d,
            a.repeat
        );
    }
    Ok(())
}
