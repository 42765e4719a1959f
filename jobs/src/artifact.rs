//! The shared vocabulary the job contracts need: [`Timeframe`] (the step size of a model and
//! of the SN50 prompt it answers) and [`ProductionPointer`] (what the publisher writes to say
//! "serve this model" and what the miner and the shadow scorer read).
//!
//! Past the CLI and HTTP edges a timeframe is always a [`Timeframe`]; its text form (`5m`,
//! `1m`) is what files, payloads and store keys carry. Nothing here does I/O.

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

#[cfg(test)]
mod tests {
    use super::*;

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
