//! The handler of the `data-download` job type: `sn50::download` from each asset's
//! realised-price venue (Binance, Hyperliquid; Pyth benchmarks with `"source": "pyth"`) into
//! the worker's data directory (its own setting, never the payload's), as `synth-city data download` does (no progress bar; the SN50 constants
//! of `SYNTH_CITY_SN50_CONSTANTS` when set, else the validator's; base URLs from the
//! environment). A bad range, source or asset list is a
//! permanent failure; a venue or disk failure is retried, then dead-lettered with its reason.
//! What it merged is then published to the worker's store as a dataset
//! (`publisher::datasets`): the result names its id (`dataset`), which runs pin
//! (`--dataset ID`, or `latest`) so that workers on other machines read the same bars.

use async_trait::async_trait;
use jobs::data::DataDownload;
use jobs::{JobContext, JobError, JobHandler};

use sn50::constants::Sn50Config;
use sn50::download::{self, DownloadError, DownloadOptions, SourceChoice};
use sn50::venues::PriceClient;

/// Merges fresh bars into the worker's data directory.
pub struct DataDownloadHandler {
    pub data_dir: std::path::PathBuf,
    /// The store the bars are published to as a dataset.
    pub store_dir: std::path::PathBuf,
}

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
            self.data_dir.clone(),
        )
        .map_err(JobError::permanent)?;
        opts.progress = false;
        opts.source = job
            .source
            .as_deref()
            .unwrap_or("venue")
            .parse::<SourceChoice>()
            .map_err(JobError::permanent)?;
        let constants =
            match std::env::var_os("SYNTH_CITY_SN50_CONSTANTS").filter(|p| !p.is_empty()) {
                Some(p) => Sn50Config::load_overrides(std::path::Path::new(&p))
                    .map_err(JobError::permanent)?,
                None => Sn50Config::default(),
            };
        let client = PriceClient::from_env(&constants).map_err(JobError::permanent)?;
        let done = download::download(&client, &opts)
            .await
            .map_err(|e| match e {
                DownloadError::NoAssets | DownloadError::NoDays | DownloadError::ChunkBars => {
                    JobError::permanent(e)
                }
                other => JobError::retry(other),
            })?;
        let timeframe = if job.resolution.unwrap_or(1) == 5 {
            jobs::Timeframe::FiveMinutes
        } else {
            jobs::Timeframe::OneMinute
        };
        let store = publisher::store::open(&self.store_dir).map_err(JobError::permanent)?;
        let sel = publisher::datasets::Selection {
            assets: opts.assets.clone(),
            timeframes: vec![timeframe],
        };
        let dataset = publisher::datasets::publish(&*store, &self.data_dir, &sel)
            .await
            .map_err(JobError::retry)?;
        Ok(
            serde_json::json!({"from": opts.from, "end": opts.end, "assets": done,
            "dataset": dataset.id}),
        )
    }
}
