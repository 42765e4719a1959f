//! The handler of the `data-download` job type: `sn50::download` from Pyth's benchmarks
//! history into the data directory, as `synth-city data download` does (no progress bar).
//! A bad range or asset list is a permanent failure; a Pyth or disk failure is retried, then
//! dead-lettered with its reason.

use async_trait::async_trait;
use jobs::data::DataDownload;
use jobs::{JobContext, JobError, JobHandler};

use sn50::download::{self, DownloadError, DownloadOptions};
use sn50::pyth::PythClient;

/// Merges fresh bars into the data directory.
pub struct DataDownloadHandler;

#[async_trait]
impl JobHandler for DataDownloadHandler {
    type Job = DataDownload;

    async fn run(
        &self,
        _ctx: &JobContext,
        job: DataDownload,
    ) -> Result<serde_json::Value, JobError> {
        let end = job.end.unwrap_or_else(|| chrono::Utc::now().timestamp());
        let resolution = sn50::pyth::resolution_from_minutes(job.resolution.unwrap_or(1))
            .map_err(JobError::permanent)?;
        let mut opts = DownloadOptions::last_days(
            job.assets,
            job.days.unwrap_or(2),
            end,
            resolution,
            job.data_dir.unwrap_or_else(|| "data".into()),
        )
        .map_err(JobError::permanent)?;
        opts.progress = false;
        let client = PythClient::from_env().map_err(JobError::permanent)?;
        let done = download::download(&client, &opts)
            .await
            .map_err(|e| match e {
                DownloadError::NoAssets | DownloadError::NoDays | DownloadError::ChunkBars => {
                    JobError::permanent(e)
                }
                other => JobError::retry(other),
            })?;
        Ok(serde_json::json!({"from": opts.from, "end": opts.end, "assets": done}))
    }
}
