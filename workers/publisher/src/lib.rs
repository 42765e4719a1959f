//! The publisher role: where results live between runs and machines ([`store`]: the
//! filesystem or any S3-compatible bucket, the record layout, the Hugging Face Hub, W&B),
//! checkpoints handed between machines by content-addressed reference ([`artifacts`]: put in
//! the store, fetched into a bounded local cache), market data as datasets in the store
//! ([`datasets`]), a run's publication ([`publish`]), and champions per (asset, prompt) through
//! the promotion gate ([`champions`]; the `promote` job type, [`promote_job`]).
//!
//! It does not train models and does not talk to Redis; the run state machine calls
//! [`publish::publish`] from the `publish` stage.

pub mod artifacts;
pub mod champions;
pub mod datasets;
pub mod production;
pub mod promote_job;
pub mod publish;
pub mod run_log;
pub mod store;

pub use promote_job::register;
