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
//! holds the value and [`WorkerDirs::redact`], which keeps them out of the texts a worker
//! writes into records (errors, notes); it does no I/O beyond reading the working directory.

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

    /// `text` with every absolute form of this worker's directories replaced by the setting's
    /// name (`<data-dir>`, `<work-dir>`, `<store>`): what a worker writes into a job result, an
    /// error or a run record names no path of its machine, yet still says which directory.
    /// Longer paths go first, so a work dir inside the store's directory reads `<work-dir>`.
    pub fn redact(&self, text: &str) -> String {
        let mut known: Vec<(String, &str)> = Vec::new();
        for (dir, name) in [
            (&self.data_dir, "<data-dir>"),
            (&self.work_dir, "<work-dir>"),
            (&self.store_dir, "<store>"),
        ] {
            let mut forms = vec![dir.clone()];
            if let Ok(abs) = std::path::absolute(dir) {
                forms.push(abs);
            }
            for f in forms {
                let f = f.display().to_string();
                let f = f.trim_end_matches('/').to_string();
                if f.starts_with('/') && f.len() > 1 && !known.iter().any(|(k, _)| *k == f) {
                    known.push((f, name));
                }
            }
        }
        known.sort_by_key(|k| std::cmp::Reverse(k.0.len()));
        let mut out = text.to_string();
        for (path, name) in known {
            if out.contains(&path) {
                out = out.replace(&path, name);
            }
        }
        out
    }

    /// [`WorkerDirs::redact`] on every string of a JSON value.
    pub fn redact_json(&self, v: &mut serde_json::Value) {
        match v {
            serde_json::Value::String(s) => {
                let r = self.redact(s);
                if r != *s {
                    *s = r;
                }
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(|x| self.redact_json(x)),
            serde_json::Value::Object(o) => o.values_mut().for_each(|x| self.redact_json(x)),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_names_the_setting_in_place_of_the_path() {
        let d = WorkerDirs {
            data_dir: "/srv/m1/data".into(),
            work_dir: "/srv/m1/store/scratch".into(),
            store_dir: "/srv/m1/store".into(),
            ..WorkerDirs::default()
        };
        assert_eq!(
            d.redact("no data file for BTC (5m bars) in /srv/m1/data: fetch it with `--data-dir /srv/m1/data`"),
            "no data file for BTC (5m bars) in <data-dir>: fetch it with `--data-dir <data-dir>`"
        );
        assert_eq!(
            d.redact("wrote /srv/m1/store/scratch/run/x and /srv/m1/store/artifacts/y"),
            "wrote <work-dir>/run/x and <store>/artifacts/y"
        );
        // relative settings name no machine path; words like "data" are left alone, but their
        // absolute form (from this process's working directory) is redacted
        let rel = WorkerDirs::default();
        assert_eq!(rel.redact("no data file in data"), "no data file in data");
        let abs = std::path::absolute("data").unwrap().display().to_string();
        assert_eq!(
            rel.redact(&format!("in {abs}/BTC_5m.csv")),
            "in <data-dir>/BTC_5m.csv"
        );
        let mut v =
            serde_json::json!({"error": "in /srv/m1/data", "n": 1, "list": ["/srv/m1/store"]});
        d.redact_json(&mut v);
        assert_eq!(
            v,
            serde_json::json!({"error": "in <data-dir>", "n": 1, "list": ["<store>"]})
        );
    }
}
