//! The on-subnet competitions of the December 2026 validator (`competition_config.py`): which
//! assets each scores, on which prompt, with which CRPS intervals and volatility blocks, over
//! which leaderboard window and with which softmax beta. Each gets the same share of emission
//! ([`SMOOTHED_SCORE_COEFFICIENT`], a third).
//!
//! A prompt is scored by the competition whose `time_length` matches the prompt's and whose
//! asset list holds its asset, exactly as the validator routes it (there is no competition field
//! on a request). One 24 h request cycle feeds two competitions (Crypto 24h and Commodities/
//! Equities 24h, disjoint assets); the 1 h cycle feeds Crypto 1h.
//!
//! This module is data and routing only: the arithmetic is in [`super::crps`], [`super::vol`]
//! and [`super::rewards`]; the off-subnet VHFT competition (a signed container image scored by
//! Synth, not served through the axon) is not modelled.

use serde::{Deserialize, Serialize};

use super::constants::{
    intervals_from, ScoringInterval, HIGH_SCORING_INTERVALS, LOW_SCORING_INTERVALS,
};
use super::vol::VolBlock;

/// `SMOOTHED_SCORE_COEFFICIENT`: each competition's rewards sum to this share of the miners'
/// emission.
pub const SMOOTHED_SCORE_COEFFICIENT: f64 = 1.0 / 3.0;

/// `OUTLIER_SCORE_MEDIAN_MULTIPLE`: a prompt's raw CRPS is clipped at this multiple of the
/// median of the valid ones.
pub const OUTLIER_SCORE_MEDIAN_MULTIPLE: f64 = 10.0;

/// The three competitions' ids (the Synth API's slugs), in the validator's `ALL_COMPETITIONS`
/// order.
pub const COMPETITION_IDS: [&str; 3] = ["com-equ-24h", "crypto-24h", "crypto-1h"];

/// One competition (`CompetitionConfig`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Competition {
    /// The Synth API's slug, also the TOML key: `crypto-1h`.
    pub id: String,
    /// The validator's label: `Crypto 1h`.
    pub label: String,
    /// The scored assets (`asset_list`).
    pub assets: Vec<String>,
    pub time_length: u64,
    pub time_increment: u64,
    /// The price CRPS intervals, in the validator's (dict) order.
    pub scoring_intervals: Vec<ScoringInterval>,
    /// The volatility term's blocks; empty for the 24 h competitions.
    #[serde(default)]
    pub vol_blocks: Vec<VolBlock>,
    /// The leaderboard's rolling window.
    pub window_days: u64,
    pub softmax_beta: f64,
}

impl Competition {
    /// `COM_EQU_24H`.
    pub fn com_equ_24h() -> Self {
        Competition {
            id: "com-equ-24h".into(),
            label: "Commodities/Equities 24h".into(),
            assets: strings(&[
                "XAU", "NVDAX", "GOOGLX", "TSLAX", "AAPLX", "WTIOIL", "SPCX", "SP500",
            ]),
            time_length: 86_400,
            time_increment: 300,
            scoring_intervals: intervals_from(&LOW_SCORING_INTERVALS),
            vol_blocks: Vec::new(),
            window_days: 10,
            softmax_beta: -0.15,
        }
    }

    /// `CRYPTO_24H`.
    pub fn crypto_24h() -> Self {
        Competition {
            id: "crypto-24h".into(),
            label: "Crypto 24h".into(),
            assets: strings(&["BTC", "ETH", "SOL", "XRP", "HYPE"]),
            time_length: 86_400,
            time_increment: 300,
            scoring_intervals: intervals_from(&LOW_SCORING_INTERVALS),
            vol_blocks: Vec::new(),
            window_days: 10,
            softmax_beta: -0.15,
        }
    }

    /// `CRYPTO_1H`: the 1 h intervals and the volatility term.
    pub fn crypto_1h() -> Self {
        Competition {
            id: "crypto-1h".into(),
            label: "Crypto 1h".into(),
            assets: strings(&["BTC", "ETH", "SOL", "XRP", "HYPE"]),
            time_length: 3_600,
            time_increment: 60,
            scoring_intervals: intervals_from(&HIGH_SCORING_INTERVALS),
            vol_blocks: VolBlock::crypto_1h(),
            window_days: 5,
            softmax_beta: -0.3,
        }
    }

    /// `ALL_COMPETITIONS`.
    pub fn all() -> Vec<Competition> {
        vec![
            Competition::com_equ_24h(),
            Competition::crypto_24h(),
            Competition::crypto_1h(),
        ]
    }

    /// Whether this competition scores a prompt of `time_length` on `asset`.
    pub fn scores(&self, time_length: u64, asset: &str) -> bool {
        self.time_length == time_length && self.assets.iter().any(|a| a == asset)
    }

    /// Points per path: `time_length // time_increment + 1`.
    pub fn num_points(&self) -> usize {
        (self.time_length / self.time_increment) as usize + 1
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// TOML overrides of one competition (`[competitions.crypto-1h]`); every key optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompetitionOverrides {
    pub label: Option<String>,
    pub assets: Option<Vec<String>>,
    pub time_length: Option<u64>,
    pub time_increment: Option<u64>,
    /// `[[name, seconds], ...]` in scoring order.
    pub scoring_intervals: Option<Vec<(String, u64)>>,
    /// `[[name, seconds, weight], ...]` in the order the validator sums them.
    pub vol_blocks: Option<Vec<(String, u64, f64)>>,
    pub window_days: Option<u64>,
    pub softmax_beta: Option<f64>,
}

impl CompetitionOverrides {
    /// Layer these overrides on a competition.
    pub fn apply(self, c: &mut Competition) {
        if let Some(v) = self.label {
            c.label = v;
        }
        if let Some(v) = self.assets {
            c.assets = v;
        }
        if let Some(v) = self.time_length {
            c.time_length = v;
        }
        if let Some(v) = self.time_increment {
            c.time_increment = v;
        }
        if let Some(v) = self.scoring_intervals {
            c.scoring_intervals = v
                .into_iter()
                .map(|(name, seconds)| ScoringInterval { name, seconds })
                .collect();
        }
        if let Some(v) = self.vol_blocks {
            c.vol_blocks = v
                .into_iter()
                .map(|(name, seconds, weight)| VolBlock {
                    name,
                    seconds,
                    weight,
                })
                .collect();
        }
        if let Some(v) = self.window_days {
            c.window_days = v;
        }
        if let Some(v) = self.softmax_beta {
            c.softmax_beta = v;
        }
    }
}

/// Why a competition table is unusable.
pub fn check(c: &Competition) -> Result<(), String> {
    let id = &c.id;
    if c.time_increment == 0 {
        return Err(format!("competition {id}: time_increment must be positive"));
    }
    if c.time_length == 0 || c.time_length % c.time_increment != 0 {
        return Err(format!(
            "competition {id}: time_length {} must be a positive multiple of time_increment {}",
            c.time_length, c.time_increment
        ));
    }
    for iv in &c.scoring_intervals {
        if iv.seconds < c.time_increment {
            return Err(format!(
                "competition {id}: scoring interval {} ({} s) is shorter than the time increment {} s",
                iv.name, iv.seconds, c.time_increment
            ));
        }
    }
    for b in &c.vol_blocks {
        if b.seconds < 2 * c.time_increment || b.seconds % c.time_increment != 0 {
            return Err(format!(
                "competition {id}: volatility block {} ({} s) must be a multiple of the time increment {} s spanning at least two steps",
                b.name, b.seconds, c.time_increment
            ));
        }
        if !(b.weight.is_finite() && b.weight >= 0.0) {
            return Err(format!(
                "competition {id}: volatility block {} weight must be a non-negative finite number, got {}",
                b.name, b.weight
            ));
        }
    }
    if !c.softmax_beta.is_finite() {
        return Err(format!("competition {id}: softmax_beta must be finite"));
    }
    if c.window_days == 0 {
        return Err(format!("competition {id}: window_days must be at least 1"));
    }
    if c.assets.is_empty() {
        return Err(format!("competition {id}: assets must not be empty"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_competitions_as_the_validator_has_them() {
        let all = Competition::all();
        let ids: Vec<&str> = all.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, COMPETITION_IDS);
        let [ce, c24, c1] = [&all[0], &all[1], &all[2]];
        assert_eq!(ce.label, "Commodities/Equities 24h");
        assert_eq!(
            ce.assets,
            ["XAU", "NVDAX", "GOOGLX", "TSLAX", "AAPLX", "WTIOIL", "SPCX", "SP500"]
        );
        assert_eq!((ce.window_days, ce.softmax_beta), (10, -0.15));
        assert_eq!((c24.window_days, c24.softmax_beta), (10, -0.15));
        assert_eq!((c1.window_days, c1.softmax_beta), (5, -0.3));
        assert_eq!(c24.assets, ["BTC", "ETH", "SOL", "XRP", "HYPE"]);
        assert_eq!(c1.assets, c24.assets);
        assert!(ce.vol_blocks.is_empty() && c24.vol_blocks.is_empty());
        let w: Vec<f64> = c1.vol_blocks.iter().map(|b| b.weight).collect();
        assert_eq!(w, [1.75, 0.4375, 0.14583333333333334]);
        assert_eq!(c1.num_points(), 61);
        assert_eq!(ce.num_points(), 289);
        // Routing is by (time_length, asset): BTC's 24 h prompt is Crypto 24h's, not Com/Equ's.
        assert!(c24.scores(86_400, "BTC") && !ce.scores(86_400, "BTC"));
        assert!(!c1.scores(86_400, "BTC") && c1.scores(3_600, "BTC"));
        assert!(!c1.scores(3_600, "XAU"));
        assert_eq!(SMOOTHED_SCORE_COEFFICIENT, 1.0 / 3.0);
        for c in &all {
            check(c).unwrap();
        }
    }

    #[test]
    fn overrides_and_checks_name_what_is_wrong() {
        let mut c = Competition::crypto_1h();
        CompetitionOverrides {
            window_days: Some(7),
            vol_blocks: Some(vec![("vol_60min".into(), 3600, 2.0)]),
            ..Default::default()
        }
        .apply(&mut c);
        assert_eq!(c.window_days, 7);
        assert_eq!(c.vol_blocks.len(), 1);
        c.vol_blocks[0].seconds = 90;
        let e = check(&c).unwrap_err();
        assert!(e.contains("crypto-1h") && e.contains("vol_60min"), "{e}");
        let mut c = Competition::crypto_24h();
        c.window_days = 0;
        assert!(check(&c).unwrap_err().contains("window_days"));
    }
}
