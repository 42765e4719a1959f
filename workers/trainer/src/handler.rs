//! The handler of the `experiment` job type: decode and validate the spec, then
//! [`crate::experiments::run_experiment`] on a blocking thread. A spec that does not
//! decode or validate is a permanent failure naming the field; a run that fails
//! (diverges, a data problem) still completes, with the failure in its record,
//! so the bot sees why.

use async_trait::async_trait;
use jobs::experiment::RunExperiment;
use jobs::{JobContext, JobError, JobHandler};

use crate::zoo::spec::ExperimentSpec;

/// Runs one experiment for a bot.
pub struct ExperimentHandler;

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
        let device = job.device.clone().unwrap_or_else(|| "cpu".into());
        let run = tokio::task::spawn_blocking(move || {
            crate::experiments::run_experiment(
                &spec,
                std::path::Path::new(&job.data_dir),
                std::path::Path::new(&job.out_dir),
                &device,
                false,
            )
        })
        .await
        .map_err(|e| JobError::retry(format!("experiment thread: {e}")))?;
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

    #[tokio::test]
    async fn bad_specs_fail_permanently_naming_the_field() {
        let mut reg = jobs::Registry::new();
        reg.register(ExperimentHandler);
        let h = reg.get("experiment").unwrap();
        let job = |spec: serde_json::Value| {
            serde_json::json!({"experiment_id": "e1", "spec": spec,
                "data_dir": "/nonexistent", "out_dir": "/tmp/x"})
        };
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
    }
}
