//! Payload fields that job types no longer take, with what to do instead: the directory fields
//! (`data_dir`, `out_dir`, `store_dir`) that payloads carried before workers took their
//! directories from their own settings. A payload naming one is refused, at enqueue or (queued
//! before an upgrade) by dead-lettering, with the hint (see `JobSpec::RETIRED_FIELDS`).
//!
//! A worker's own directories are not part of any contract and are not declared here: the
//! binary resolves them on each machine and hands them to the role crates (`trainer::dirs`).

/// What to do instead of naming a directory in a payload.
pub const WORKER_DIRS_HINT: &str = "workers take their directories from their own settings: \
     synth-city worker --data-dir DIR --work-dir DIR --store DIR (or SYNTH_DATA_DIR, \
     SYNTH_WORK_DIR, SYNTH_STORE_DIR); remove the field from the payload";

/// The directory fields payloads used to carry, each with what to do instead (a payload type
/// lists them as its [`JobSpec::RETIRED_FIELDS`](crate::JobSpec::RETIRED_FIELDS)).
pub const DIR_FIELDS: &[(&str, &str)] = &[
    ("data_dir", WORKER_DIRS_HINT),
    ("out_dir", WORKER_DIRS_HINT),
    ("store_dir", WORKER_DIRS_HINT),
];
