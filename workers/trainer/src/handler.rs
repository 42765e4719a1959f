//! The handler of the `experiment` job type: decode and validate the spec, then
//! [`crate::experiments::run_experiment`] on a blocking thread, on the bars of the worker's own
//! data directory (or of the dataset the spec names, `data.dataset`, from the store), into a scratch folder under its work directory; then the checkpoint goes to
//! the store through a [`CheckpointSink`] and the result names it by [`ArtifactRef`], never by
//! a path. A spec that does not decode or validate is a permanent failure naming the field; a
//! run that fails (diverges, a data problem) still completes, with the failure in its record,
//! so the bot sees why. A checkpoint the sink cannot store is a retryable failure.
//!
//! This crate has no store: the sink is the binary's (over `publisher::artifacts`), which
//! keeps the dependency arrows pointing one way.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use jobs::experiment::RunExperiment;
use jobs::{ArtifactRef, JobContext, JobError, JobHandler};

use crate::WorkerDirs;

use crate::zoo::spec::ExperimentSpec;

/// Where a trained checkpoint goes so that other machines can load it.
#[async_trait]
pub trait CheckpointSink: Send + Sync + 'static {
    /// Stores the checkpoint folder `dir` (its [`ARTIFACT_FILES`](crate::experiments::ARTIFACT_FILES))
    /// and returns its reference; the message of an error says what failed and where.
    async fn put_checkpoint(&self, dir: &Path) -> Result<ArtifactRef, String>;

    /// The local folder (a data directory) of dataset `id` from the store, fetched into the
    /// worker's cache when it is not there: where a spec naming `data.dataset` reads its bars.
    /// The message of an error names the dataset and how to make one.
    async fn dataset_dir(&self, id: &str) -> Result<PathBuf, String>;
}

/// Runs one experiment for a bot.
pub struct ExperimentHandler {
    pub dirs: WorkerDirs,
    pub sink: Arc<dyn CheckpointSink>,
}

/// A job id as one path component: ASCII letters, digits, `-`, `_`, `.`; others `_`.
fn folder_name(id: &str) -> String {
    let s: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    match s.trim_start_matches('.') {
        "" => "job".into(),
        t => t.to_string(),
    }
}

impl ExperimentHandler {
    /// The job's scratch folder: `<work_dir>/experiments/<job id>`.
    fn scratch(&self, job_id: &str) -> PathBuf {
        self.dirs
            .work_dir
            .join("experiments")
            .join(folder_name(job_id))
    }
}

#[async_trait]
impl JobHandler for ExperimentHandler {
    type Job = RunExperiment;
    async fn run(
        &self,
        ctx: &JobContext,
        job: RunExperiment,
    ) -> Result<serde_json::Value, JobError> {
        let spec: ExperimentSpec = serde_json::from_value(job.spec.clone())
            .map_err(|e| JobError::permanent(format!("field `spec`: {e}")))?;
        if let Err(issues) = spec.validate() {
            let text: Vec<String> = issues.iter().map(|i| i.to_string()).collect();
            return Err(JobError::permanent(format!(
                "field `spec` is invalid: {}",
                text.join("; ")
            )));
        }
        ctx.progress(serde_json::json!({"stage": "training", "experiment_id": job.experiment_id}));
        // the job's device when it names one, else the worker's (resolved at its start)
        let device = job
            .device
            .clone()
            .unwrap_or_else(|| self.dirs.device.clone());
        // a spec that names a dataset reads it from the store (the environment's failure when
        // the store lacks it: retried, then dead-lettered with the cause); else the worker's bars
        let data_dir = match &spec.data.dataset {
            Some(id) => self.sink.dataset_dir(id).await.map_err(|e| {
                JobError::retry(format!("environment: the dataset could not be read: {e}"))
            })?,
            None => self.dirs.data_dir.clone(),
        };
        let out_dir = self.scratch(&ctx.job_id);
        let cancel = ctx.clone();
        let mut run = tokio::task::spawn_blocking(move || {
            crate::experiments::run_experiment_with(
                &spec,
                &data_dir,
                &out_dir,
                &device,
                false,
                &mut |_| {},
                &|| cancel.is_cancelled(),
            )
        })
        .await
        .map_err(|e| JobError::retry(format!("experiment thread: {e}")))?;
        if ctx.is_cancelled() {
            return Err(JobError::Cancelled);
        }
        if let Some(dir) = run.record.checkpoint.clone() {
            ctx.progress(
                serde_json::json!({"stage": "storing", "experiment_id": job.experiment_id}),
            );
            let artifact =
                self.sink.put_checkpoint(&dir).await.map_err(|e| {
                    JobError::retry(format!("the checkpoint could not be stored: {e}"))
                })?;
            run.record.artifact = Some(artifact);
            // the store holds it now; the scratch copy would only fill the work dir
            if dir.starts_with(&self.dirs.work_dir) {
                let _ = std::fs::remove_dir_all(&dir);
                run.record.checkpoint = None;
            }
        }
        Ok(serde_json::json!({
            "record": run.record,
            "crps_ratio": run.record.crps_ratio(),
            "windows": run.windows,
            "best_epoch": run.best_epoch,
            "best_val_loss": run.best_val_loss,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoSink;

    #[async_trait]
    impl CheckpointSink for NoSink {
        async fn put_checkpoint(&self, dir: &Path) -> Result<ArtifactRef, String> {
            Err(format!("no store in this test ({})", dir.display()))
        }
        async fn dataset_dir(&self, id: &str) -> Result<PathBuf, String> {
            Err(format!("no store in this test ({id})"))
        }
    }

    #[tokio::test]
    async fn bad_specs_fail_permanently_naming_the_field() {
        let mut reg = jobs::Registry::new();
        reg.register(ExperimentHandler {
            dirs: WorkerDirs {
                data_dir: "/nonexistent".into(),
                work_dir: std::env::temp_dir().join("sc-trainer-handler-test"),
                ..Default::default()
            },
            sink: Arc::new(NoSink),
        });
        let h = reg.get("experiment").unwrap();
        let job =
            |spec: serde_json::Value| serde_json::json!({"experiment_id": "e1", "spec": spec});
        let err = h
            .handle(
                JobContext::detached("experiment"),
                job(serde_json::json!({"model": 1})),
            )
            .await
            .unwrap_err();
        assert!(!err.is_retryable());
        assert!(err.to_string().contains("field `spec`"), "{err}");
        let mut spec =
            serde_json::to_value(ExperimentSpec::new(&["LSTMBlock"], "GBMHead")).unwrap();
        spec["model"]["backbone"]["blocks"] = serde_json::json!(["NoSuchBlock"]);
        let err = h
            .handle(JobContext::detached("experiment"), job(spec))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("blocks"), "{err}");
        // a payload that still names a directory is refused, saying where directories come from
        let err = h
            .handle(
                JobContext::detached("experiment"),
                serde_json::json!({"experiment_id": "e1", "spec": {}, "data_dir": "/d"}),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, JobError::Malformed(_)), "{err}");
        assert!(err.to_string().contains("--data-dir"), "{err}");
    }

    #[test]
    fn scratch_folders_are_one_component() {
        assert_eq!(folder_name("../../etc"), "_.._etc");
        assert_eq!(folder_name("01hz-abc"), "01hz-abc");
        assert_eq!(folder_name(".."), "job");
    }
}
