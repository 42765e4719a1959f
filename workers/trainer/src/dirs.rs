//! The directories of the machine a worker runs on ([`WorkerDirs`]): where it reads market
//! data, where it keeps scratch work (checkpoints while they train, the artifact cache),
//! which device it trains on, and where the store is (a directory, or the local side of a
//! bucket: `metrics.jsonl`, mirrored production models). The binary resolves them once from
//! the worker's own settings (`synth-city worker --data-dir D --work-dir W --store S`, or
//! `SYNTH_DATA_DIR`, `SYNTH_WORK_DIR`, `SYNTH_STORE_DIR`) and hands them to every handler it
//! registers.
//!
//! They live here, not in the `jobs` contract, because they never travel in a job payload,
//! result or run record: another machine has its own. This is the lowest crate every role
//! that reads them (trainer, publisher, scorer, the binary's stages) depends on. This module
//! only holds the value; it does no I/O.

use std::path::PathBuf;

/// The default cap of the artifact cache: 2 GiB.
pub const DEFAULT_CACHE_MAX_BYTES: u64 = 2 << 30;

/// A worker's own directories. Relative paths are relative to the worker's working directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerDirs {
    /// Market data: the bar files (`BTC_5m.csv`, ...).
    pub data_dir: PathBuf,
    /// Scratch: checkpoints as they train (`<work_dir>/<run>/<fingerprint>/`), and the cache of
    /// artifacts fetched from the store (`<work_dir>/cache/`).
    pub work_dir: PathBuf,
    /// The filesystem store (ignored for objects when `HIPPIUS_ENDPOINT` names a bucket; it
    /// still holds `metrics.jsonl` and mirrored production models).
    pub store_dir: PathBuf,
    /// Most bytes the artifact cache keeps before it evicts the least recently used entries.
    pub cache_max_bytes: u64,
    /// The compute device its training runs on (`cpu`, `cuda:N`), resolved once when the
    /// worker starts (`--device auto|cpu|cuda[:N]`, `SYNTH_DEVICE`). Not a directory, but as
    /// much the machine's own: no payload names it (an `experiment` job may ask for one).
    pub device: String,
}

impl Default for WorkerDirs {
    /// `data`, `runs`, `store`, a 2 GiB cache and the CPU: the settings' defaults (`auto`
    /// resolves to the CPU where there is no GPU).
    fn default() -> Self {
        WorkerDirs {
            data_dir: "data".into(),
            work_dir: "runs".into(),
            store_dir: "store".into(),
            cache_max_bytes: DEFAULT_CACHE_MAX_BYTES,
            device: "cpu".into(),
        }
    }
}

impl WorkerDirs {
    /// The artifact cache: `<work_dir>/cache`.
    pub fn cache_dir(&self) -> PathBuf {
        self.work_dir.join("cache")
    }
}
