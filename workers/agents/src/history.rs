//! Experiment history and publishing, behind traits the engine implements over Redis or a remote
//! store. This crate ships an in-memory history ([`MemoryHistory`]), a JSON-lines file history
//! ([`JsonlHistory`]) and a filesystem publisher ([`FsPublisher`]).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;
use serde_json::Value;

use trainer::zoo::spec::ExperimentSpec;

/// The experiment record, its status and fingerprint are the pipeline's: one type for both the
/// built-in agents and the LLM agents' history.
pub use trainer::experiments::{fingerprint, ExperimentRecord, RunStatus};

/// A history store failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("experiment history: {0}")]
pub struct HistoryError(pub String);

/// Where past experiments are kept. The engine implements this over Redis.
#[async_trait::async_trait]
pub trait ExperimentHistory: Send + Sync {
    /// The most recent `limit` records, oldest first.
    async fn load(&self, limit: usize) -> Result<Vec<ExperimentRecord>, HistoryError>;
    /// Append a record.
    async fn save(&self, record: &ExperimentRecord) -> Result<(), HistoryError>;
}

/// A history that lives as long as the process.
#[derive(Debug, Default)]
pub struct MemoryHistory {
    records: Mutex<Vec<ExperimentRecord>>,
}

impl MemoryHistory {
    pub fn new(records: Vec<ExperimentRecord>) -> Self {
        MemoryHistory {
            records: Mutex::new(records),
        }
    }
}

#[async_trait::async_trait]
impl ExperimentHistory for MemoryHistory {
    async fn load(&self, limit: usize) -> Result<Vec<ExperimentRecord>, HistoryError> {
        let r = self.records.lock().expect("history lock");
        Ok(r[r.len().saturating_sub(limit)..].to_vec())
    }

    async fn save(&self, record: &ExperimentRecord) -> Result<(), HistoryError> {
        self.records
            .lock()
            .expect("history lock")
            .push(record.clone());
        Ok(())
    }
}

/// A history in a JSON-lines file, one record per line (created on the first save).
#[derive(Debug, Clone)]
pub struct JsonlHistory {
    path: PathBuf,
}

impl JsonlHistory {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        JsonlHistory { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[async_trait::async_trait]
impl ExperimentHistory for JsonlHistory {
    async fn load(&self, limit: usize) -> Result<Vec<ExperimentRecord>, HistoryError> {
        let text = match tokio::fs::read_to_string(&self.path).await {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(HistoryError(format!(
                    "cannot read {}: {e}",
                    self.path.display()
                )))
            }
        };
        let mut out = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let rec: ExperimentRecord = serde_json::from_str(line).map_err(|e| {
                HistoryError(format!("{} line {}: {e}", self.path.display(), i + 1))
            })?;
            out.push(rec);
        }
        Ok(out.split_off(out.len().saturating_sub(limit)))
    }

    async fn save(&self, record: &ExperimentRecord) -> Result<(), HistoryError> {
        use tokio::io::AsyncWriteExt;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| HistoryError(format!("cannot create {}: {e}", dir.display())))?;
        }
        let mut line = serde_json::to_string(record)
            .map_err(|e| HistoryError(format!("cannot encode record: {e}")))?;
        line.push('\n');
        let mut f = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .await
            .map_err(|e| HistoryError(format!("cannot open {}: {e}", self.path.display())))?;
        f.write_all(line.as_bytes())
            .await
            .map_err(|e| HistoryError(format!("cannot write {}: {e}", self.path.display())))
    }
}

/// What to publish: a trained checkpoint with its spec and metrics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PublishRequest {
    /// The name to publish under (a directory name for [`FsPublisher`]).
    pub name: String,
    pub checkpoint: PathBuf,
    pub spec: ExperimentSpec,
    pub metrics: Value,
}

/// Where it went.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PublishReceipt {
    pub location: String,
    pub files: Vec<String>,
}

/// A publication that did not happen: what went wrong, for the agent to read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PublishFailed(pub String);

impl From<String> for PublishFailed {
    fn from(s: String) -> Self {
        PublishFailed(s)
    }
}

/// A place models are published to. The engine may implement a remote store; this crate has
/// [`FsPublisher`].
#[async_trait::async_trait]
pub trait Publisher: Send + Sync {
    /// One line saying where models go (shown to the agent).
    fn describe(&self) -> String;
    async fn publish(&self, request: &PublishRequest) -> Result<PublishReceipt, PublishFailed>;
}

/// Publishes to `root/<name>/`: every file of the checkpoint folder, plus `metrics.json`.
#[derive(Debug, Clone)]
pub struct FsPublisher {
    pub root: PathBuf,
}

pub use publisher::store::safe_name;

#[async_trait::async_trait]
impl Publisher for FsPublisher {
    fn describe(&self) -> String {
        format!("the local directory {}", self.root.display())
    }

    async fn publish(&self, request: &PublishRequest) -> Result<PublishReceipt, PublishFailed> {
        let dest = self.root.join(safe_name(&request.name));
        let src = request.checkpoint.clone();
        let metrics = serde_json::to_string_pretty(&request.metrics).map_err(|e| e.to_string())?;
        tokio::task::spawn_blocking(move || -> Result<PublishReceipt, String> {
            let rd = std::fs::read_dir(&src)
                .map_err(|e| format!("cannot read checkpoint {}: {e}", src.display()))?;
            std::fs::create_dir_all(&dest)
                .map_err(|e| format!("cannot create {}: {e}", dest.display()))?;
            let mut files = Vec::new();
            for entry in rd {
                let entry = entry.map_err(|e| format!("{}: {e}", src.display()))?;
                if !entry.file_type().map(|t| t.is_file()).unwrap_or(false) {
                    continue;
                }
                let to = dest.join(entry.file_name());
                std::fs::copy(entry.path(), &to)
                    .map_err(|e| format!("cannot copy to {}: {e}", to.display()))?;
                files.push(entry.file_name().to_string_lossy().into_owned());
            }
            if !files.iter().any(|f| f == trainer::zoo::train::WEIGHTS_FILE) {
                return Err(format!(
                    "{} has no {}: not a trained checkpoint",
                    src.display(),
                    trainer::zoo::train::WEIGHTS_FILE
                ));
            }
            let m = dest.join("metrics.json");
            std::fs::write(&m, metrics)
                .map_err(|e| format!("cannot write {}: {e}", m.display()))?;
            files.push("metrics.json".into());
            files.sort();
            Ok(PublishReceipt {
                location: dest.display().to_string(),
                files,
            })
        })
        .await
        .map_err(|e| format!("publish task failed: {e}"))?
        .map_err(PublishFailed)
    }
}
