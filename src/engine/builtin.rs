//! Handlers for the engine's own job types `noop` and `sleep` (queue checks and benchmarks).
//! Domain job types register through their role crates, never here.

use async_trait::async_trait;
use jobs::builtin::{Noop, Sleep, SleepOutput};
use jobs::{JobContext, JobError, JobHandler, Registry};
use rand::Rng;

/// Returns at once.
pub struct NoopHandler;

#[async_trait]
impl JobHandler for NoopHandler {
    type Job = Noop;
    async fn run(&self, _ctx: &JobContext, _job: Noop) -> Result<serde_json::Value, JobError> {
        Ok(serde_json::Value::Null)
    }
}

/// Sleeps, honouring cancellation, then fails with the requested probability.
pub struct SleepHandler;

#[async_trait]
impl JobHandler for SleepHandler {
    type Job = Sleep;
    async fn run(&self, ctx: &JobContext, job: Sleep) -> Result<SleepOutput, JobError> {
        // Two halves, with a progress report between them.
        let half = std::time::Duration::from_millis(job.ms / 2);
        for (i, d) in [half, std::time::Duration::from_millis(job.ms - job.ms / 2)]
            .into_iter()
            .enumerate()
        {
            tokio::select! {
                _ = tokio::time::sleep(d) => {}
                _ = ctx.cancelled() => return Err(JobError::Cancelled),
            }
            if i == 0 {
                ctx.progress(serde_json::json!({"pct": 50}));
            }
        }
        if job.fail_rate > 0.0 && rand::rng().random_bool(job.fail_rate) {
            return Err(JobError::retry(format!(
                "sleep: injected failure (fail_rate {})",
                job.fail_rate
            )));
        }
        Ok(SleepOutput { slept_ms: job.ms })
    }
}

/// Registers the engine's own handlers (`noop`, `sleep`).
pub fn register(registry: &mut Registry) {
    registry.register(NoopHandler).register(SleepHandler);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sleep_sleeps_and_fails_on_demand() {
        let mut reg = Registry::new();
        register(&mut reg);
        let h = reg.get("sleep").unwrap();
        let ok = h
            .handle(JobContext::detached("sleep"), serde_json::json!({"ms": 1}))
            .await
            .unwrap();
        assert_eq!(ok, serde_json::json!({"slept_ms": 1}));
        let err = h
            .handle(
                JobContext::detached("sleep"),
                serde_json::json!({"ms": 0, "fail_rate": 1.0}),
            )
            .await
            .unwrap_err();
        assert!(err.is_retryable());
        let bad = h
            .handle(
                JobContext::detached("sleep"),
                serde_json::json!({"ms": "x"}),
            )
            .await
            .unwrap_err();
        assert!(matches!(bad, JobError::Malformed(_)), "{bad:?}");
    }

    #[tokio::test]
    async fn sleep_stops_when_cancelled() {
        let token = tokio_util::sync::CancellationToken::new();
        let ctx = JobContext::new("j", "sleep", 0, 1, "f", None, None, token.clone(), None);
        token.cancel();
        let err = SleepHandler
            .run(
                &ctx,
                Sleep {
                    ms: 60_000,
                    fail_rate: 0.0,
                },
            )
            .await
            .unwrap_err();
        assert_eq!(err, JobError::Cancelled);
    }
}
