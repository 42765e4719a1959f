//! The shared vocabulary the job contracts need: [`Timeframe`] (the step size of a model and
//! of the SN50 prompt it answers), [`ProductionPointer`] (what the publisher writes to say
//! "serve this model" and what the miner and the shadow scorer read), and [`ArtifactRef`] /
//! [`ArtifactManifest`] (a checkpoint in the store, named by the SHA-256 of its manifest: how
//! one machine hands a trained model to another).
//!
//! Past the CLI and HTTP edges a timeframe is always a [`Timeframe`]; its text form (`5m`,
//! `1m`) is what files, payloads and store keys carry. Nothing here does I/O: uploading,
//! fetching and caching artifacts is the publisher's (`publisher::artifacts`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The step size of a model's bars and paths, and so of the SN50 prompt it answers: 5-minute
/// steps over 24 hours (the low-frequency prompt) or 1-minute steps over an hour (the
/// high-frequency prompt).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Timeframe {
    /// 5-minute steps, 288 of them: the 24 h prompt.
    #[default]
    FiveMinutes,
    /// 1-minute steps, 60 of them: the 1 h prompt.
    OneMinute,
}

impl Timeframe {
    /// Every timeframe, the 24 h prompt's first.
    pub const ALL: [Timeframe; 2] = [Timeframe::FiveMinutes, Timeframe::OneMinute];

    /// The text form: `5m` or `1m` (file suffixes, payloads, store keys).
    pub const fn as_str(self) -> &'static str {
        match self {
            Timeframe::FiveMinutes => "5m",
            Timeframe::OneMinute => "1m",
        }
    }

    /// Seconds per step (the prompt's `time_increment`, the bars' spacing).
    pub const fn step_secs(self) -> i64 {
        match self {
            Timeframe::FiveMinutes => 300,
            Timeframe::OneMinute => 60,
        }
    }

    /// Steps in the SN50 horizon (288 for 24 h, 60 for 1 h).
    pub const fn horizon_steps(self) -> usize {
        match self {
            Timeframe::FiveMinutes => 288,
            Timeframe::OneMinute => 60,
        }
    }

    /// The horizon in seconds (`time_length` of the prompt).
    pub const fn horizon_secs(self) -> i64 {
        self.step_secs() * self.horizon_steps() as i64
    }

    /// The timeframe whose step is `secs` seconds, if any.
    pub fn from_step_secs(secs: i64) -> Option<Timeframe> {
        Timeframe::ALL.into_iter().find(|t| t.step_secs() == secs)
    }

    /// The bar file of `asset` for this timeframe: `{ASSET}_5m.csv`.
    pub fn data_file(self, asset: &str) -> String {
        format!("{asset}_{}.csv", self.as_str())
    }
}

impl fmt::Display for Timeframe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A text that is not a timeframe.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("timeframe {0:?} is not one of 5m (24 h prompt) or 1m (1 h prompt)")]
pub struct UnknownTimeframe(pub String);

impl FromStr for Timeframe {
    type Err = UnknownTimeframe;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Timeframe::ALL
            .into_iter()
            .find(|t| t.as_str() == s.trim())
            .ok_or_else(|| UnknownTimeframe(s.to_string()))
    }
}

impl Serialize for Timeframe {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Timeframe {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// `models/production-{timeframe}.json` (and `models/production.json`, the newest publication
/// of any timeframe): the model a miner serves. Written by the publisher after every object it
/// names; read by the miner and the shadow scorer through the same type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProductionPointer {
    /// The pipeline run that published the model.
    #[serde(default)]
    pub run_id: String,
    /// The experiment's name.
    #[serde(default)]
    pub name: String,
    /// The model's folder, as a key prefix of the store (`models/<run>/<name>/`).
    pub model_dir: String,
    /// Where that prefix is, for people (a path or a URL); never used to load anything.
    #[serde(default)]
    pub location: String,
    /// The model's CRPS and the GBM baseline's on the run's evaluation windows.
    #[serde(default)]
    pub crps: Option<f64>,
    #[serde(default)]
    pub gbm_crps: Option<f64>,
    /// SHA-256 of the weights file, checked again when a bucket is mirrored.
    #[serde(default)]
    pub weights_sha256: Option<String>,
    /// The model's step size (absent only in pointers written before it was recorded; the
    /// model's own spec then decides).
    #[serde(default)]
    pub timeframe: Option<Timeframe>,
}

/// The store key prefix of content-addressed objects: `artifacts/sha256/<hex>`.
pub const ARTIFACT_PREFIX: &str = "artifacts/sha256/";

/// A set of files (a checkpoint folder) in the store, by content: the reference names a small
/// JSON [`ArtifactManifest`] stored at `artifacts/sha256/<its SHA-256>`, which names each file
/// by its own SHA-256 (stored at `artifacts/sha256/<hex>` too). Objects under
/// [`ARTIFACT_PREFIX`] are immutable, so a reference means the same bytes on every machine
/// and for ever; it carries no path of the machine that made it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactRef {
    /// The manifest's store key: `artifacts/sha256/<sha256>`.
    pub key: String,
    /// Hex SHA-256 of the manifest's bytes.
    pub sha256: String,
    /// The manifest's size in bytes.
    pub size: u64,
}

/// Whether `s` is a lower-case hex SHA-256 (64 digits).
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The store key of the content-addressed object with SHA-256 `hex`.
pub fn artifact_key(hex: &str) -> String {
    format!("{ARTIFACT_PREFIX}{hex}")
}

/// A reference or manifest that cannot name an artifact: what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadArtifact(pub String);

impl ArtifactRef {
    /// The reference of a manifest of `size` bytes whose SHA-256 is `sha256`.
    pub fn of_manifest(sha256: &str, size: u64) -> Self {
        ArtifactRef {
            key: artifact_key(sha256),
            sha256: sha256.to_string(),
            size,
        }
    }

    /// Checks that the key is the content address of the hash.
    pub fn check(&self) -> Result<(), BadArtifact> {
        if !is_sha256_hex(&self.sha256) {
            return Err(BadArtifact(format!(
                "sha256 {:?} is not 64 lower-case hex digits",
                self.sha256
            )));
        }
        if self.key != artifact_key(&self.sha256) {
            return Err(BadArtifact(format!(
                "key {:?} is not {ARTIFACT_PREFIX}<sha256>",
                self.key
            )));
        }
        Ok(())
    }
}

/// The text form, `sha256:<hex>:<size>` (where a payload or a record holds a reference as a
/// string, e.g. a shadow prompt's `model`).
impl fmt::Display for ArtifactRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}:{}", self.sha256, self.size)
    }
}

impl FromStr for ArtifactRef {
    type Err = BadArtifact;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            BadArtifact(format!(
                "{s:?} is not an artifact reference (sha256:<64 hex>:<manifest bytes>)"
            ))
        };
        let rest = s.trim().strip_prefix("sha256:").ok_or_else(bad)?;
        let (hex, size) = rest.split_once(':').ok_or_else(bad)?;
        let size = size.parse::<u64>().map_err(|_| bad())?;
        if !is_sha256_hex(hex) {
            return Err(bad());
        }
        Ok(ArtifactRef::of_manifest(hex, size))
    }
}

/// One file of an artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactFile {
    /// Hex SHA-256 of the file's bytes (its object is `artifacts/sha256/<sha256>`).
    pub sha256: String,
    pub size: u64,
}

/// The manifest an [`ArtifactRef`] names: file name (one path component) -> its content.
/// Serialised with sorted names, so the same files always give the same manifest and hash.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactManifest {
    /// The manifest format (1).
    pub version: u32,
    pub files: std::collections::BTreeMap<String, ArtifactFile>,
}

impl ArtifactManifest {
    /// The format this build writes.
    pub const VERSION: u32 = 1;

    /// The bytes of all files together.
    pub fn total_size(&self) -> u64 {
        self.files.values().map(|f| f.size).sum()
    }

    /// Checks the version, every name (one plain path component) and every hash.
    pub fn check(&self) -> Result<(), BadArtifact> {
        if self.version != Self::VERSION {
            return Err(BadArtifact(format!(
                "manifest version {} (this build reads {})",
                self.version,
                Self::VERSION
            )));
        }
        for (name, f) in &self.files {
            let plain = !name.is_empty()
                && !name.starts_with('.')
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+'));
            if !plain {
                return Err(BadArtifact(format!(
                    "file name {name:?} is not one plain path component"
                )));
            }
            if !is_sha256_hex(&f.sha256) {
                return Err(BadArtifact(format!(
                    "file {name:?}: sha256 {:?} is not 64 lower-case hex digits",
                    f.sha256
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifact_refs_are_content_addresses() {
        let hex = "ab".repeat(32);
        let r = ArtifactRef::of_manifest(&hex, 120);
        assert_eq!(r.key, format!("artifacts/sha256/{hex}"));
        r.check().unwrap();
        let j = serde_json::to_value(&r).unwrap();
        assert_eq!(serde_json::from_value::<ArtifactRef>(j).unwrap(), r);
        assert_eq!(r.to_string(), format!("sha256:{hex}:120"));
        assert_eq!(r.to_string().parse::<ArtifactRef>().unwrap(), r);
        for bad in [
            "latest",
            "sha256:abc:1",
            &format!("sha256:{hex}"),
            "/tmp/ck",
        ] {
            assert!(bad.parse::<ArtifactRef>().is_err(), "{bad}");
        }
        let mut bad = r.clone();
        bad.key = "models/x".into();
        assert!(bad.check().unwrap_err().to_string().contains("key"));
        bad = r.clone();
        bad.sha256 = "AB".repeat(32);
        assert!(bad.check().is_err());
        let mut m = ArtifactManifest {
            version: 1,
            ..Default::default()
        };
        m.files.insert(
            "spec.json".into(),
            ArtifactFile {
                sha256: hex.clone(),
                size: 3,
            },
        );
        m.check().unwrap();
        assert_eq!(m.total_size(), 3);
        m.files.insert(
            "../x".into(),
            ArtifactFile {
                sha256: hex,
                size: 1,
            },
        );
        assert!(m.check().unwrap_err().to_string().contains("../x"));
    }

    #[test]
    fn timeframes_round_trip_and_refuse_others() {
        for tf in Timeframe::ALL {
            let j = serde_json::to_string(&tf).unwrap();
            assert_eq!(serde_json::from_str::<Timeframe>(&j).unwrap(), tf);
            assert_eq!(tf.as_str().parse::<Timeframe>().unwrap(), tf);
            assert_eq!(Timeframe::from_step_secs(tf.step_secs()), Some(tf));
        }
        assert_eq!(Timeframe::FiveMinutes.horizon_secs(), 86_400);
        assert_eq!(Timeframe::OneMinute.horizon_secs(), 3_600);
        let err = "7m".parse::<Timeframe>().unwrap_err().to_string();
        assert!(err.contains("\"7m\"") && err.contains("5m"), "{err}");
        assert!(serde_json::from_str::<Timeframe>("\"15m\"").is_err());
    }
}
