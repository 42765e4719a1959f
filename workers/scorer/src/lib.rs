//! The scorer role: shadow scoring of the served models ([`shadow`]: the prompts a validator
//! would send, scored once their window settles) and fresh market data ([`data_job`]: the
//! `data-download` job), with the pairs' challengers scored beside their champions and the
//! shadow policy ([`policy`]: off by default, it reports; on, it promotes or demotes on settled
//! evidence through the promotion gate).
//!
//! The SN50 arithmetic itself lives in the `sn50` crate; this crate holds the job handlers
//! around it. It does not talk to Redis or serve HTTP.

pub mod data_job;
pub mod policy;
pub mod shadow;

/// Registers the scorer role's handlers (`shadow-prompt`, `shadow-score`, `data-download`),
/// on the worker's own directories.
pub fn register(registry: &mut jobs::Registry, dirs: &trainer::WorkerDirs) {
    shadow::register(registry, dirs);
    registry.register(data_job::DataDownloadHandler {
        data_dir: dirs.data_dir.clone(),
        store_dir: dirs.store_dir.clone(),
    });
}
