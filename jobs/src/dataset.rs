//! Datasets: market bars in the store as an immutable, content-addressed unit, so that a run
//! names the data it trains and checks on (`dataset`, an id such as `ds-3f2a9c01d4e5b678`)
//! and any machine fetches what it lacks.
//!
//! A dataset is an artifact ([`ArtifactRef`]: the bar files by their own SHA-256) plus a
//! [`DatasetManifest`] saying what the files hold (asset, timeframe, rows, first and last bar,
//! SHA-256 and size of each), stored at [`dataset_key`]. Its id is `ds-` and the first 16 hex
//! digits of the artifact's SHA-256, so the same files give the same id on every machine, and
//! a result is reproducible from (dataset id, spec, seed).
//!
//! What it does not do: read files or talk to a store (the publisher's `datasets` module
//! does), or decide which bars a run needs (the pipeline does).

use serde::{Deserialize, Serialize};

use crate::ArtifactRef;

/// Where datasets' manifests live in the store.
pub const DATASET_PREFIX: &str = "datasets/";

/// The pointer to the most recently published dataset: `{"id": ...}`.
pub const LATEST_DATASET_KEY: &str = "datasets/latest.json";

/// The word that names the store's most recent dataset where an id goes.
pub const LATEST: &str = "latest";

/// The id of the dataset whose files are the artifact `a`.
pub fn dataset_id(a: &ArtifactRef) -> String {
    format!("ds-{}", &a.sha256[..16])
}

/// The store key of dataset `id`'s manifest.
pub fn dataset_key(id: &str) -> String {
    format!("{DATASET_PREFIX}{id}.json")
}

/// A dataset id that cannot be one: what is wrong and what a good one looks like.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("dataset {0:?} is not a dataset id: use `latest` or the `ds-` and 16 hex digits that `synth-city data publish` printed")]
pub struct BadDatasetId(pub String);

/// Checks a dataset id (`ds-` + 16 lower-case hex digits) or `latest`.
pub fn check_dataset_id(s: &str) -> Result<(), BadDatasetId> {
    if s == LATEST {
        return Ok(());
    }
    let ok = s.strip_prefix("ds-").is_some_and(|h| {
        h.len() == 16
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    });
    if ok {
        Ok(())
    } else {
        Err(BadDatasetId(s.to_string()))
    }
}

/// One bar file of a dataset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetFile {
    /// The file name, as a data directory holds it (`BTC_5m.csv`, `SPY_5m.csv`).
    pub file: String,
    /// The SN50 asset it serves (`BTC`, `SP500`).
    pub asset: String,
    /// `5m` or `1m`.
    pub timeframe: String,
    /// Bars in the file.
    pub rows: u64,
    /// Open time of the first and of the last bar (unix seconds).
    pub first: i64,
    pub last: i64,
    /// Hex SHA-256 of the file's bytes, and its size.
    pub sha256: String,
    pub size: u64,
}

/// What a dataset holds: stored as JSON at [`dataset_key`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetManifest {
    /// The manifest format (1).
    pub version: u32,
    /// [`dataset_id`] of `artifact`.
    pub id: String,
    /// The files, by content.
    pub artifact: ArtifactRef,
    /// One entry per file, sorted by file name.
    pub files: Vec<DatasetFile>,
    /// When it was first published (unix seconds); not part of the id.
    pub created_at: i64,
}

impl DatasetManifest {
    /// The format this build writes.
    pub const VERSION: u32 = 1;

    /// The file serving `asset` at `timeframe`, if the dataset has one.
    pub fn file_for(&self, asset: &str, timeframe: &str) -> Option<&DatasetFile> {
        self.files
            .iter()
            .find(|f| f.asset == asset && f.timeframe == timeframe)
    }

    /// The `assets` of `timeframe` the dataset has no file for.
    pub fn missing<'a>(&self, assets: &'a [String], timeframe: &str) -> Vec<&'a str> {
        assets
            .iter()
            .filter(|a| self.file_for(a, timeframe).is_none())
            .map(String::as_str)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked_and_derive_from_the_artifact() {
        let a = ArtifactRef::of_manifest(&"ab".repeat(32), 10);
        let id = dataset_id(&a);
        assert_eq!(id, "ds-abababababababab");
        assert!(check_dataset_id(&id).is_ok());
        assert!(check_dataset_id("latest").is_ok());
        for bad in [
            "ds-ABABABABABABABAB",
            "ds-abab",
            "abababababababab",
            "../x",
            "",
        ] {
            let e = check_dataset_id(bad).unwrap_err().to_string();
            assert!(e.contains("synth-city data publish"), "{e}");
        }
        assert_eq!(dataset_key(&id), "datasets/ds-abababababababab.json");
    }
}
