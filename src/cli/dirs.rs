//! The flags of a process that runs handlers (`worker`, `pipeline`, `publish`): its own
//! directories ([`trainer::WorkerDirs`]), resolved once from flags, else the settings
//! (`SYNTH_DATA_DIR`, `SYNTH_WORK_DIR`, `SYNTH_STORE_DIR`, `SYNTH_CACHE_MAX_MB`), else the
//! defaults (`data`, `runs`, `store`, 2048 MiB); and, for `worker` and `pipeline`, the device
//! training runs on (`--device`, `SYNTH_DEVICE`, default `auto`). Job payloads never name directories; this is
//! where they come from. It only parses; the handlers do the I/O.

use std::path::PathBuf;

use clap::Args;

/// A worker's directories as flags.
#[derive(Debug, Clone, Args)]
pub struct DirsArgs {
    /// Market data: the bar files (BTC_5m.csv, ...) this process's handlers read.
    #[arg(long, env = "SYNTH_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
    /// Scratch: checkpoints as they train (<work-dir>/<run>/...) and the cache of artifacts
    /// fetched from the store (<work-dir>/cache).
    #[arg(
        long,
        visible_alias = "out",
        env = "SYNTH_WORK_DIR",
        default_value = "runs"
    )]
    pub work_dir: PathBuf,
    /// The filesystem store (with HIPPIUS_ENDPOINT set, the bucket holds the objects and this
    /// directory holds metrics.jsonl and mirrored models).
    #[arg(long, env = "SYNTH_STORE_DIR", default_value = "store")]
    pub store: PathBuf,
    /// Most MiB the artifact cache keeps before it evicts the least recently used.
    #[arg(long, env = "SYNTH_CACHE_MAX_MB", default_value_t = trainer::dirs::DEFAULT_CACHE_MAX_BYTES >> 20)]
    pub cache_max_mb: u64,
}

/// The compute device of a process that trains (`worker`, `pipeline`).
#[derive(Debug, Clone, Args)]
pub struct DeviceArgs {
    /// What training runs on: auto (CUDA when this build has the `cuda` feature and a GPU
    /// answers, else the CPU), cpu, or cuda[:N]. Resolved once at start.
    #[arg(long, env = "SYNTH_DEVICE", default_value = "auto")]
    pub device: String,
}

impl DeviceArgs {
    /// The device's name, resolved (`auto` to `cuda:0` or `cpu`); an error says why the
    /// choice cannot run here (for `cuda` in a build without it: the feature to build with).
    pub fn resolve(&self) -> Result<String, trainer::zoo::ZooError> {
        trainer::zoo::resolve_device(&self.device)
    }
}

impl DirsArgs {
    /// The directories handlers get.
    pub fn dirs(&self) -> trainer::WorkerDirs {
        trainer::WorkerDirs {
            data_dir: self.data_dir.clone(),
            work_dir: self.work_dir.clone(),
            store_dir: self.store.clone(),
            cache_max_bytes: self.cache_max_mb.saturating_mul(1 << 20),
            ..Default::default()
        }
    }
}
