//! The handler of the `promote` job type: [`crate::champions::promote_request`] on the worker's
//! own store, cache and data directory, answering a summary per asset (the whole decision is in
//! the store). A request the gate refuses is a result, not a failure: the job succeeds and says
//! `refuse`. Bad input (no such candidate, an asset it was not trained on, a training range that
//! cannot be known) fails permanently with its reason; a store that does not answer is retried.
//!
//! It does not decide who may ask or for what (`force`, the gate's parameters): that is the
//! bridge's and the operator's, before the job exists (`jobs::models`).

use async_trait::async_trait;
use jobs::models::Promote;
use jobs::{JobContext, JobError, JobHandler};
use trainer::WorkerDirs;

use crate::artifacts::ArtifactCache;
use crate::champions::{self, Action};

/// Puts candidates through the gate on this worker.
pub struct PromoteHandler {
    pub dirs: WorkerDirs,
}

#[async_trait]
impl JobHandler for PromoteHandler {
    type Job = Promote;

    async fn run(&self, _ctx: &JobContext, job: Promote) -> Result<serde_json::Value, JobError> {
        let store = crate::store::open(&self.dirs.store_dir).map_err(JobError::permanent)?;
        let cache = ArtifactCache::of(&self.dirs);
        let decisions = champions::promote_request(&*store, &cache, &self.dirs.data_dir, &job)
            .await
            .map_err(|e| {
                if e.is_transient() {
                    JobError::retry(e)
                } else {
                    JobError::permanent(e)
                }
            })?;
        let promoted: Vec<&str> = decisions
            .iter()
            .filter(|d| d.action == Action::Promote)
            .map(|d| d.asset.as_str())
            .collect();
        Ok(serde_json::json!({
            "candidate": job.candidate,
            "promoted": promoted,
            "decisions": decisions.iter().map(champions::summary).collect::<Vec<_>>(),
        }))
    }
}

/// Registers the publisher role's own job types (`promote`).
pub fn register(registry: &mut jobs::Registry, dirs: &WorkerDirs) {
    registry.register(PromoteHandler { dirs: dirs.clone() });
}
