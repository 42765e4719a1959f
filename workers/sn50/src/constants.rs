//! The SN50 constants in one place: assets, asset coefficients, the two request profiles (prompt
//! types), baseline sigmas, Pyth feed ids and where the validator takes each asset's realised
//! prices, as the December 2026 validator (synthdataco/synth-subnet, see
//! `shared/spec/sn50-validator-2026-12.md`) has them, plus [`Sn50Config`], an owned copy that can
//! be overridden from a TOML file because the subnet changes these numbers from time to time.
//! The three competitions that score the prompts are in [`super::competition`].
//!
//! Sources: `synth/validator/prompt_config.py` (request profiles), `moving_average.py`
//! (`ASSET_COEFFICIENTS`), `synth/miner/simulations.py` (`SIGMA_MAP`),
//! `synth/miner/price_simulation.py` (`TOKEN_MAP`), the CHANGELOG's realised-price sources
//! (Binance spot for BTC ETH SOL XRP, Hyperliquid for HYPE and the equities/commodities). The
//! seed repository's own weight table is kept as [`SEED_ASSET_WEIGHTS`] for comparison.
//!
//! What this module does not do: fetch prices (see [`super::pyth`] and [`super::venues`]) or
//! score anything.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::competition::{
    check, Competition, CompetitionOverrides, OUTLIER_SCORE_MEDIAN_MULTIPLE,
    SMOOTHED_SCORE_COEFFICIENT,
};

/// Where the validator reads an asset's realised prices (and so where a miner's spot price and
/// history should come from, to forecast the series it is scored against).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Venue {
    /// Pyth benchmarks (the TradingView shim): the May 2026 validator's source for every asset.
    Pyth,
    /// Binance spot klines (`GET /api/v3/klines`).
    Binance,
    /// Hyperliquid candles (`POST /info` `candleSnapshot`); `xyz:` coins are the trade.xyz HIP-3
    /// perps the validator reads equities and commodities from.
    Hyperliquid,
}

impl Venue {
    /// The lower-case name used in TOML, JSON and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Venue::Pyth => "pyth",
            Venue::Binance => "binance",
            Venue::Hyperliquid => "hyperliquid",
        }
    }
}

impl std::str::FromStr for Venue {
    type Err = ConstantsError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pyth" => Ok(Venue::Pyth),
            "binance" => Ok(Venue::Binance),
            "hyperliquid" => Ok(Venue::Hyperliquid),
            other => Err(ConstantsError::UnknownVenue(other.to_string())),
        }
    }
}

/// An asset's realised-price source: a venue and that venue's symbol for it
/// (`BTCUSDT` on Binance, `xyz:SP500` on Hyperliquid, `Crypto.BTC/USD` on Pyth).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceSource {
    pub venue: Venue,
    pub symbol: String,
}

/// One static row of the asset table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AssetInfo {
    /// The validator's asset name, e.g. `"BTC"`.
    pub symbol: &'static str,
    /// `ASSET_COEFFICIENTS[symbol]` of the validator's leaderboard.
    pub coefficient: f64,
    /// The reference miner's hourly volatility (`SIGMA_MAP`). SP500 takes SPYX's (the same index
    /// at a tenth of the price; the sigma is a return volatility, so the scale does not matter);
    /// SPCX has no history here and takes [`DEFAULT_SIGMA`], the reference miner's fallback.
    pub sigma: f64,
    /// The Hermes price feed id (`TOKEN_MAP`), hex without `0x`; `None` for assets Pyth does not
    /// carry under the validator's name (SP500, SPCX), whose spot comes from their venue.
    pub pyth_feed_id: Option<&'static str>,
    /// The Pyth benchmarks TradingView symbol, where Pyth has one.
    pub tradingview_symbol: Option<&'static str>,
    /// The file stem of this asset in the shared market data (`BTC_1m.csv`), if there is one.
    pub data_stem: Option<&'static str>,
    /// Where the validator reads the realised prices: venue and symbol. The Binance symbols and
    /// the venues follow the CHANGELOG; the Hyperliquid coin names (`xyz:GOLD` for XAU, `xyz:CL`
    /// for WTIOIL, `HYPE`) are this table's reading of the venue and can be overridden in TOML.
    pub source: (Venue, &'static str),
}

/// All assets the validator knows, in the low-frequency round-robin order (SPYX is retired and
/// replaced by SP500; SPCX is new).
pub const ASSETS: [AssetInfo; 13] = [
    AssetInfo {
        symbol: "BTC",
        coefficient: 1.0,
        sigma: 0.00541,
        pyth_feed_id: Some("e62df6c8b4a85fe1a67db44dc12de5db330f7ac66b72dc658afedf0f4a415b43"),
        tradingview_symbol: Some("Crypto.BTC/USD"),
        data_stem: Some("BTC"),
        source: (Venue::Binance, "BTCUSDT"),
    },
    AssetInfo {
        symbol: "ETH",
        coefficient: 0.7064366394033871,
        sigma: 0.00766,
        pyth_feed_id: Some("ff61491a931112ddf1bd8147cd1b641375f79f5825126d665480874634fd0ace"),
        tradingview_symbol: Some("Crypto.ETH/USD"),
        data_stem: Some("ETH"),
        source: (Venue::Binance, "ETHUSDT"),
    },
    AssetInfo {
        symbol: "XAU",
        coefficient: 1.7370922597118699,
        sigma: 0.00312,
        pyth_feed_id: Some("44465e17d2e9d390e70c999d5a11fda4f092847fcd2e3e5aa089d96c98a30e67"),
        tradingview_symbol: Some("Crypto.XAUT/USD"),
        data_stem: Some("XAU"),
        source: (Venue::Hyperliquid, "xyz:GOLD"),
    },
    AssetInfo {
        symbol: "SOL",
        coefficient: 0.6310037175639559,
        sigma: 0.00858,
        pyth_feed_id: Some("ef0d8b6fda2ceba41da15d4095d1da392a0d2f8ed0c6c7bc0f4cfac8c280b56d"),
        tradingview_symbol: Some("Crypto.SOL/USD"),
        data_stem: Some("SOL"),
        source: (Venue::Binance, "SOLUSDT"),
    },
    AssetInfo {
        symbol: "SP500",
        coefficient: 3.437935601155441,
        sigma: 0.00157,
        pyth_feed_id: None,
        tradingview_symbol: None,
        data_stem: Some("SPY"),
        source: (Venue::Hyperliquid, "xyz:SP500"),
    },
    AssetInfo {
        symbol: "NVDAX",
        coefficient: 1.6028217601617174,
        sigma: 0.00338,
        pyth_feed_id: Some("4244d07890e4610f46bbde67de8f43a4bf8b569eebe904f136b469f148503b7f"),
        tradingview_symbol: Some("Crypto.NVDAX/USD"),
        data_stem: Some("NVDA"),
        source: (Venue::Hyperliquid, "xyz:NVDA"),
    },
    AssetInfo {
        symbol: "TSLAX",
        coefficient: 1.6068755936957768,
        sigma: 0.00337,
        pyth_feed_id: Some("47a156470288850a440df3a6ce85a55917b813a19bb5b31128a33a986566a362"),
        tradingview_symbol: Some("Crypto.TSLAX/USD"),
        data_stem: Some("TSLA"),
        source: (Venue::Hyperliquid, "xyz:TSLA"),
    },
    AssetInfo {
        symbol: "AAPLX",
        coefficient: 2.0916380815843123,
        sigma: 0.00259,
        pyth_feed_id: Some("978e6cc68a119ce066aa830017318563a9ed04ec3a0a6439010fc11296a58675"),
        tradingview_symbol: Some("Crypto.AAPLX/USD"),
        data_stem: Some("AAPL"),
        source: (Venue::Hyperliquid, "xyz:AAPL"),
    },
    AssetInfo {
        symbol: "GOOGLX",
        coefficient: 1.6827392777257926,
        sigma: 0.00322,
        pyth_feed_id: Some("b911b0329028cd0283e4259c33809d62942bd2716a58084e5f31d64c00b5424e"),
        tradingview_symbol: Some("Crypto.GOOGLX/USD"),
        data_stem: Some("GOOG"),
        source: (Venue::Hyperliquid, "xyz:GOOGL"),
    },
    AssetInfo {
        symbol: "XRP",
        coefficient: 0.5658394110809131,
        sigma: 0.00956,
        pyth_feed_id: Some("ec5d399846a9209f3fe5881d70aae9268c94339ff9817e8d18ff19fa05eea1c8"),
        tradingview_symbol: Some("Crypto.XRP/USD"),
        data_stem: None,
        source: (Venue::Binance, "XRPUSDT"),
    },
    AssetInfo {
        symbol: "HYPE",
        coefficient: 0.4784547133706857,
        sigma: 0.01131,
        pyth_feed_id: Some("4279e31cc369bbcc2faf022b382b080e32a8e689ff20fbc530d2a603eb6cd98b"),
        tradingview_symbol: Some("Crypto.HYPE/USD"),
        data_stem: None,
        source: (Venue::Hyperliquid, "HYPE"),
    },
    AssetInfo {
        symbol: "WTIOIL",
        coefficient: 0.8475062847978935,
        sigma: 0.00639,
        pyth_feed_id: Some("67784f72e95ac01337edb7d7bd5bbd1c03669101b7068a620df228ed4e52ef14"),
        tradingview_symbol: None,
        data_stem: None,
        source: (Venue::Hyperliquid, "xyz:CL"),
    },
    AssetInfo {
        symbol: "SPCX",
        coefficient: 0.4329342627683478,
        sigma: DEFAULT_SIGMA,
        pyth_feed_id: None,
        tradingview_symbol: None,
        data_stem: None,
        source: (Venue::Hyperliquid, "xyz:SPCX"),
    },
];

/// The seed repository's asset weights (`SN50_ASSETS` in synth-city `config.py`; its SPYX row is
/// SP500's here, the asset that replaced SPYX). Not what the validator uses; kept as a named
/// alternative (see [`WeightTable::Seed`]).
pub const SEED_ASSET_WEIGHTS: [(&str, f64); 9] = [
    ("BTC", 1.00),
    ("ETH", 0.67),
    ("SOL", 0.59),
    ("XAU", 2.26),
    ("SP500", 2.99),
    ("NVDAX", 1.39),
    ("TSLAX", 1.42),
    ("AAPLX", 1.86),
    ("GOOGLX", 1.43),
];

/// `ASSET_COEFFICIENTS.get(asset, 1.0)`: the coefficient for an asset the table lacks.
pub const DEFAULT_COEFFICIENT: f64 = 1.0;
/// `SIGMA_MAP.get(asset, 0.005)`: the reference miner's sigma for an unknown asset.
pub const DEFAULT_SIGMA: f64 = 0.005;
/// Paths per request.
pub const NUM_SIMULATIONS: usize = 1000;
/// The subnet owner's UID on mainnet; it gets the sum of all miner weights appended.
pub const OWNER_UID_MAINNET: u16 = 248;
/// The subnet owner's UID on testnet.
pub const OWNER_UID_TESTNET: u16 = 23;
/// A request is scored once `start_time + time_length + SCORING_GATE_SECONDS` has passed.
pub const SCORING_GATE_SECONDS: u64 = 90;
/// Hermes (Pyth) default base URL for latest prices.
pub const PYTH_HERMES_URL: &str = "https://hermes.pyth.network";
/// Pyth benchmarks default base URL for the TradingView history shim.
pub const PYTH_BENCHMARKS_URL: &str = "https://benchmarks.pyth.network";
/// Binance spot REST default base URL (klines and ticker prices).
pub const BINANCE_API_URL: &str = "https://api.binance.com";
/// Hyperliquid default base URL (`POST /info`: candles and mid prices).
pub const HYPERLIQUID_API_URL: &str = "https://api.hyperliquid.xyz";

/// Low-frequency (24 h) scoring intervals, in the validator's order.
pub const LOW_SCORING_INTERVALS: [(&str, u64); 4] = [
    ("5min", 300),
    ("30min", 1800),
    ("3hour", 10800),
    ("24hour_abs", 86400),
];

/// High-frequency (1 h) scoring intervals, in the validator's order.
pub const HIGH_SCORING_INTERVALS: [(&str, u64); 18] = [
    ("1min", 60),
    ("2min", 120),
    ("5min", 300),
    ("15min", 900),
    ("30min", 1800),
    ("60min_abs", 3600),
    ("0_5min_gaps", 300),
    ("0_10min_gaps", 600),
    ("0_15min_gaps", 900),
    ("0_20min_gaps", 1200),
    ("0_25min_gaps", 1500),
    ("0_30min_gaps", 1800),
    ("0_35min_gaps", 2100),
    ("0_40min_gaps", 2400),
    ("0_45min_gaps", 2700),
    ("0_50min_gaps", 3000),
    ("0_55min_gaps", 3300),
    ("0_60min_gaps", 3600),
];

/// The high-frequency prompt's asset list, in round-robin order (XAU left it; XRP joined).
pub const HIGH_ASSETS: [&str; 5] = ["BTC", "ETH", "SOL", "XRP", "HYPE"];

/// Errors from looking up or loading constants.
#[derive(Debug, thiserror::Error)]
pub enum ConstantsError {
    #[error("cannot read the SN50 overrides file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the SN50 overrides file {path} is not valid TOML for the expected keys: {source}")]
    Parse {
        path: String,
        source: toml::de::Error,
    },
    #[error("SN50 overrides: {0}")]
    Invalid(String),
    #[error("unknown prompt type {0:?}: expected \"low\" or \"high\"")]
    UnknownPrompt(String),
    #[error("unknown weight table {0:?}: expected \"validator\" or \"seed\"")]
    UnknownWeightTable(String),
    #[error("unknown price venue {0:?}: expected \"pyth\", \"binance\" or \"hyperliquid\"")]
    UnknownVenue(String),
}

/// Look up the static row of an asset by its validator name (case-sensitive, as the validator).
pub fn asset_info(symbol: &str) -> Option<&'static AssetInfo> {
    ASSETS.iter().find(|a| a.symbol == symbol)
}

/// The two prompt types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PromptKind {
    /// 24 h at 300 s (289 points).
    Low,
    /// 1 h at 60 s (61 points).
    High,
}

impl PromptKind {
    /// The validator's label.
    pub fn label(self) -> &'static str {
        match self {
            PromptKind::Low => "low",
            PromptKind::High => "high",
        }
    }

    /// The step size of this prompt's paths, and so of the model that answers it.
    pub fn timeframe(self) -> jobs::Timeframe {
        match self {
            PromptKind::Low => jobs::Timeframe::FiveMinutes,
            PromptKind::High => jobs::Timeframe::OneMinute,
        }
    }

    /// The prompt a model of `tf` answers.
    pub fn for_timeframe(tf: jobs::Timeframe) -> PromptKind {
        match tf {
            jobs::Timeframe::FiveMinutes => PromptKind::Low,
            jobs::Timeframe::OneMinute => PromptKind::High,
        }
    }
}

impl std::str::FromStr for PromptKind {
    type Err = ConstantsError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "low" => Ok(PromptKind::Low),
            "high" => Ok(PromptKind::High),
            other => Err(ConstantsError::UnknownPrompt(other.to_string())),
        }
    }
}

/// One scoring interval: a name (its suffix `_abs` / `_gaps` changes the arithmetic) and a length
/// in seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScoringInterval {
    pub name: String,
    pub seconds: u64,
}

impl ScoringInterval {
    pub fn new(name: &str, seconds: u64) -> Self {
        ScoringInterval {
            name: name.to_string(),
            seconds,
        }
    }
    /// `name.endswith("_abs")`: score absolute prices, normalised by the last real price.
    pub fn is_abs(&self) -> bool {
        self.name.ends_with("_abs")
    }
    /// `name.endswith("_gaps")`: score only the first change, `p[steps]` against `p[0]`.
    pub fn is_gap(&self) -> bool {
        self.name.ends_with("_gaps")
    }
}

/// Build an owned interval list from a static table.
pub fn intervals_from(table: &[(&str, u64)]) -> Vec<ScoringInterval> {
    table
        .iter()
        .map(|(n, s)| ScoringInterval::new(n, *s))
        .collect()
}

/// One request profile (`PromptConfig` in the validator): which assets are asked, how often and
/// for what horizon. Since the December 2026 validator it drives only the query cycle; how the
/// answers are scored and rewarded is a [`Competition`]'s.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptConfig {
    pub label: String,
    /// Assets in round-robin order.
    pub assets: Vec<String>,
    pub time_length: u64,
    pub time_increment: u64,
    pub num_simulations: usize,
    pub cycle_interval_minutes: u64,
    pub timeout_extra_seconds: u64,
}

impl PromptConfig {
    /// `LOW_FREQUENCY`: 24 h at 5 min for all thirteen assets.
    pub fn low() -> Self {
        PromptConfig {
            label: "low".into(),
            assets: ASSETS.iter().map(|a| a.symbol.to_string()).collect(),
            time_length: 86400,
            time_increment: 300,
            num_simulations: NUM_SIMULATIONS,
            cycle_interval_minutes: 5,
            timeout_extra_seconds: 60,
        }
    }

    /// `HIGH_FREQUENCY`: 1 h at 1 min for the five crypto assets, no extra time (about 50 s).
    pub fn high() -> Self {
        PromptConfig {
            label: "high".into(),
            assets: HIGH_ASSETS.iter().map(|a| a.to_string()).collect(),
            time_length: 3600,
            time_increment: 60,
            num_simulations: NUM_SIMULATIONS,
            cycle_interval_minutes: 2,
            timeout_extra_seconds: 0,
        }
    }

    /// Points per path: `time_length // time_increment + 1` (289 low, 61 high).
    pub fn num_points(&self) -> usize {
        (self.time_length / self.time_increment) as usize + 1
    }
}

/// Which asset weight table to use for weighted means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WeightTable {
    /// The validator's `ASSET_COEFFICIENTS` (what the leaderboard uses).
    #[default]
    Validator,
    /// The seed repository's `SN50_ASSETS` weights.
    Seed,
}

impl std::str::FromStr for WeightTable {
    type Err = ConstantsError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "validator" => Ok(WeightTable::Validator),
            "seed" => Ok(WeightTable::Seed),
            other => Err(ConstantsError::UnknownWeightTable(other.to_string())),
        }
    }
}

/// An owned, overridable copy of every SN50 constant. [`Sn50Config::default`] is the validator
/// of December 2026; [`Sn50Config::load_overrides`] layers a TOML file on top.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sn50Config {
    /// Every asset the subnet knows, in the validator's order.
    pub assets: Vec<String>,
    /// The validator's leaderboard coefficients.
    pub asset_coefficients: BTreeMap<String, f64>,
    /// The seed repository's weights.
    pub seed_weights: BTreeMap<String, f64>,
    /// The reference miner's hourly sigmas.
    pub sigmas: BTreeMap<String, f64>,
    pub default_sigma: f64,
    pub default_coefficient: f64,
    /// Hermes feed ids.
    pub pyth_feed_ids: BTreeMap<String, String>,
    /// Pyth benchmarks TradingView symbols.
    pub tradingview_symbols: BTreeMap<String, String>,
    /// Where the validator reads each asset's realised prices.
    pub price_sources: BTreeMap<String, PriceSource>,
    /// The two request profiles.
    pub low: PromptConfig,
    pub high: PromptConfig,
    /// The competitions that score the prompts, in `ALL_COMPETITIONS` order.
    pub competitions: Vec<Competition>,
    /// Each competition's share of the miners' emission (`SMOOTHED_SCORE_COEFFICIENT`).
    pub smoothed_score_coefficient: f64,
    /// A prompt's raw CRPS is clipped at this multiple of its median.
    pub outlier_median_multiple: f64,
}

impl Default for Sn50Config {
    fn default() -> Self {
        Sn50Config {
            assets: ASSETS.iter().map(|a| a.symbol.to_string()).collect(),
            asset_coefficients: ASSETS
                .iter()
                .map(|a| (a.symbol.to_string(), a.coefficient))
                .collect(),
            seed_weights: SEED_ASSET_WEIGHTS
                .iter()
                .map(|(s, w)| (s.to_string(), *w))
                .collect(),
            sigmas: ASSETS
                .iter()
                .map(|a| (a.symbol.to_string(), a.sigma))
                .collect(),
            default_sigma: DEFAULT_SIGMA,
            default_coefficient: DEFAULT_COEFFICIENT,
            pyth_feed_ids: ASSETS
                .iter()
                .filter_map(|a| {
                    a.pyth_feed_id
                        .map(|f| (a.symbol.to_string(), f.to_string()))
                })
                .collect(),
            tradingview_symbols: ASSETS
                .iter()
                .filter_map(|a| {
                    a.tradingview_symbol
                        .map(|s| (a.symbol.to_string(), s.to_string()))
                })
                .collect(),
            price_sources: ASSETS
                .iter()
                .map(|a| {
                    let (venue, symbol) = a.source;
                    (
                        a.symbol.to_string(),
                        PriceSource {
                            venue,
                            symbol: symbol.to_string(),
                        },
                    )
                })
                .collect(),
            low: PromptConfig::low(),
            high: PromptConfig::high(),
            competitions: Competition::all(),
            smoothed_score_coefficient: SMOOTHED_SCORE_COEFFICIENT,
            outlier_median_multiple: OUTLIER_SCORE_MEDIAN_MULTIPLE,
        }
    }
}

/// The TOML overrides file: every key optional. Maps are merged key by key (a key present in the
/// file replaces or adds that asset or competition's keys); lists and scalars replace the
/// default.
///
/// ```toml
/// assets = ["BTC", "ETH", "NEWCOIN"]
/// [asset_coefficients]
/// NEWCOIN = 0.9
/// [sigmas]
/// NEWCOIN = 0.012
/// [price_sources]
/// NEWCOIN = { venue = "binance", symbol = "NEWUSDT" }
/// [prompts.high]
/// cycle_interval_minutes = 1
/// [competitions.crypto-1h]
/// softmax_beta = -0.25
/// assets = ["BTC", "ETH", "SOL", "XRP", "HYPE", "NEWCOIN"]
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sn50Overrides {
    pub assets: Option<Vec<String>>,
    pub asset_coefficients: Option<BTreeMap<String, f64>>,
    pub seed_weights: Option<BTreeMap<String, f64>>,
    pub sigmas: Option<BTreeMap<String, f64>>,
    pub default_sigma: Option<f64>,
    pub default_coefficient: Option<f64>,
    pub pyth_feed_ids: Option<BTreeMap<String, String>>,
    pub tradingview_symbols: Option<BTreeMap<String, String>>,
    pub price_sources: Option<BTreeMap<String, PriceSource>>,
    pub prompts: Option<PromptOverridesByKind>,
    /// `[competitions.<id>]`: keys of an existing competition (`com-equ-24h`, `crypto-24h`,
    /// `crypto-1h`).
    pub competitions: Option<BTreeMap<String, CompetitionOverrides>>,
    pub smoothed_score_coefficient: Option<f64>,
    pub outlier_median_multiple: Option<f64>,
}

/// `[prompts.low]` and `[prompts.high]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptOverridesByKind {
    pub low: Option<PromptOverrides>,
    pub high: Option<PromptOverrides>,
}

/// Overrides of one request profile.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptOverrides {
    pub assets: Option<Vec<String>>,
    pub time_length: Option<u64>,
    pub time_increment: Option<u64>,
    pub num_simulations: Option<usize>,
    pub cycle_interval_minutes: Option<u64>,
    pub timeout_extra_seconds: Option<u64>,
}

impl PromptOverrides {
    fn apply(self, p: &mut PromptConfig) {
        if let Some(v) = self.assets {
            p.assets = v;
        }
        if let Some(v) = self.time_length {
            p.time_length = v;
        }
        if let Some(v) = self.time_increment {
            p.time_increment = v;
        }
        if let Some(v) = self.num_simulations {
            p.num_simulations = v;
        }
        if let Some(v) = self.cycle_interval_minutes {
            p.cycle_interval_minutes = v;
        }
        if let Some(v) = self.timeout_extra_seconds {
            p.timeout_extra_seconds = v;
        }
    }
}

fn merge<V>(into: &mut BTreeMap<String, V>, from: Option<BTreeMap<String, V>>) {
    if let Some(m) = from {
        into.extend(m);
    }
}

impl Sn50Config {
    /// The configuration of one request profile.
    pub fn prompt(&self, kind: PromptKind) -> &PromptConfig {
        match kind {
            PromptKind::Low => &self.low,
            PromptKind::High => &self.high,
        }
    }

    /// The competition with this id (`crypto-1h`).
    pub fn competition(&self, id: &str) -> Option<&Competition> {
        self.competitions.iter().find(|c| c.id == id)
    }

    /// The request profile a competition's prompts come from (by `time_length`).
    pub fn prompt_of(&self, c: &Competition) -> Option<PromptKind> {
        [PromptKind::Low, PromptKind::High]
            .into_iter()
            .find(|k| self.prompt(*k).time_length == c.time_length)
    }

    /// The competitions that score a prompt of `kind` on `asset`, as the validator routes it
    /// (by `time_length` and asset list; today at most one).
    pub fn competitions_for(
        &self,
        kind: PromptKind,
        asset: &str,
    ) -> impl Iterator<Item = &Competition> {
        let t = self.prompt(kind).time_length;
        let asset = asset.to_string();
        self.competitions
            .iter()
            .filter(move |c| c.scores(t, &asset))
    }

    /// The rules a prompt of `kind` on `asset` is scored by: the competition that scores it, or,
    /// for an asset no competition of that prompt scores (research on XAU's 1 h paths, say), the
    /// first competition of the same `time_length`, so its paths are still measured the way that
    /// prompt's assets are. `None` only if no competition has that prompt's `time_length`.
    pub fn scoring(&self, kind: PromptKind, asset: &str) -> Option<&Competition> {
        let t = self.prompt(kind).time_length;
        self.competitions_for(kind, asset)
            .next()
            .or_else(|| self.competitions.iter().find(|c| c.time_length == t))
    }

    /// `ASSET_COEFFICIENTS.get(asset, 1.0)`, or the seed weight (1.0 where missing).
    pub fn coefficient(&self, asset: &str, table: WeightTable) -> f64 {
        let map = match table {
            WeightTable::Validator => &self.asset_coefficients,
            WeightTable::Seed => &self.seed_weights,
        };
        map.get(asset).copied().unwrap_or(self.default_coefficient)
    }

    /// `SIGMA_MAP.get(asset, 0.005)`.
    pub fn sigma(&self, asset: &str) -> f64 {
        self.sigmas
            .get(asset)
            .copied()
            .unwrap_or(self.default_sigma)
    }

    /// Where the validator reads `asset`'s realised prices.
    pub fn price_source(&self, asset: &str) -> Option<&PriceSource> {
        self.price_sources.get(asset)
    }

    /// Layer parsed overrides on top of this configuration and check the result.
    pub fn apply(&mut self, o: Sn50Overrides) -> Result<(), ConstantsError> {
        if let Some(v) = o.assets {
            self.assets = v;
        }
        merge(&mut self.asset_coefficients, o.asset_coefficients);
        merge(&mut self.seed_weights, o.seed_weights);
        merge(&mut self.sigmas, o.sigmas);
        merge(&mut self.pyth_feed_ids, o.pyth_feed_ids);
        merge(&mut self.tradingview_symbols, o.tradingview_symbols);
        merge(&mut self.price_sources, o.price_sources);
        if let Some(v) = o.default_sigma {
            self.default_sigma = v;
        }
        if let Some(v) = o.default_coefficient {
            self.default_coefficient = v;
        }
        if let Some(v) = o.smoothed_score_coefficient {
            self.smoothed_score_coefficient = v;
        }
        if let Some(v) = o.outlier_median_multiple {
            self.outlier_median_multiple = v;
        }
        if let Some(p) = o.prompts {
            if let Some(low) = p.low {
                low.apply(&mut self.low);
            }
            if let Some(high) = p.high {
                high.apply(&mut self.high);
            }
        }
        for (id, over) in o.competitions.unwrap_or_default() {
            let known: Vec<String> = self.competitions.iter().map(|c| c.id.clone()).collect();
            let Some(c) = self.competitions.iter_mut().find(|c| c.id == id) else {
                return Err(ConstantsError::Invalid(format!(
                    "unknown competition [competitions.{id}]: the known ones are {}",
                    known.join(", ")
                )));
            };
            over.apply(c);
        }
        self.validate()
    }

    /// Parse TOML override text and layer it on the defaults.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self, ConstantsError> {
        let o: Sn50Overrides = toml::from_str(text).map_err(|source| ConstantsError::Parse {
            path: origin.to_string(),
            source,
        })?;
        let mut c = Sn50Config::default();
        c.apply(o)?;
        Ok(c)
    }

    /// Read a TOML overrides file and layer it on the defaults.
    pub fn load_overrides(path: &Path) -> Result<Self, ConstantsError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConstantsError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml_str(&text, &path.display().to_string())
    }

    /// Check the invariants the arithmetic relies on.
    pub fn validate(&self) -> Result<(), ConstantsError> {
        for p in [&self.low, &self.high] {
            let label = &p.label;
            if p.time_increment == 0 {
                return Err(ConstantsError::Invalid(format!(
                    "prompt {label}: time_increment must be positive"
                )));
            }
            if p.time_length == 0 || p.time_length % p.time_increment != 0 {
                return Err(ConstantsError::Invalid(format!(
                    "prompt {label}: time_length {} must be a positive multiple of time_increment {}",
                    p.time_length, p.time_increment
                )));
            }
        }
        for c in &self.competitions {
            check(c).map_err(ConstantsError::Invalid)?;
        }
        for (what, v) in [
            (
                "smoothed_score_coefficient",
                self.smoothed_score_coefficient,
            ),
            ("outlier_median_multiple", self.outlier_median_multiple),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(ConstantsError::Invalid(format!(
                    "{what} must be a positive finite number, got {v}"
                )));
            }
        }
        for (k, v) in self
            .asset_coefficients
            .iter()
            .chain(self.seed_weights.iter())
        {
            if !(v.is_finite() && *v > 0.0) {
                return Err(ConstantsError::Invalid(format!(
                    "asset weight for {k} must be a positive finite number, got {v}"
                )));
            }
        }
        for (k, v) in &self.sigmas {
            if !(v.is_finite() && *v >= 0.0) {
                return Err(ConstantsError::Invalid(format!(
                    "sigma for {k} must be a non-negative finite number, got {v}"
                )));
            }
        }
        for (k, s) in &self.price_sources {
            if s.symbol.trim().is_empty() {
                return Err(ConstantsError::Invalid(format!(
                    "price source for {k}: the {} symbol must not be empty",
                    s.venue.as_str()
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
    fn defaults_match_the_validator() {
        let c = Sn50Config::default();
        assert_eq!(
            c.assets,
            [
                "BTC", "ETH", "XAU", "SOL", "SP500", "NVDAX", "TSLAX", "AAPLX", "GOOGLX", "XRP",
                "HYPE", "WTIOIL", "SPCX"
            ]
        );
        assert_eq!(c.low.num_points(), 289);
        assert_eq!(c.high.num_points(), 61);
        assert_eq!(c.high.assets, ["BTC", "ETH", "SOL", "XRP", "HYPE"]);
        assert_eq!(c.low.assets.len(), 13);
        assert_eq!(c.high.timeout_extra_seconds, 0);
        assert_eq!(c.low.timeout_extra_seconds, 60);
        // Every prompted asset is scored by exactly one competition of its prompt.
        for kind in [PromptKind::Low, PromptKind::High] {
            for a in &c.prompt(kind).assets {
                assert_eq!(c.competitions_for(kind, a).count(), 1, "{a} {kind:?}");
            }
        }
        assert_eq!(
            c.scoring(PromptKind::Low, "SP500").unwrap().id,
            "com-equ-24h"
        );
        assert_eq!(c.scoring(PromptKind::Low, "BTC").unwrap().id, "crypto-24h");
        assert_eq!(c.scoring(PromptKind::High, "BTC").unwrap().id, "crypto-1h");
        // XAU left the 1 h set: no competition scores it, research falls back to Crypto 1h's rules.
        assert_eq!(c.competitions_for(PromptKind::High, "XAU").count(), 0);
        assert_eq!(c.scoring(PromptKind::High, "XAU").unwrap().id, "crypto-1h");
        let crypto_1h = c.competition("crypto-1h").unwrap();
        assert_eq!(c.prompt_of(crypto_1h), Some(PromptKind::High));
        assert_eq!(crypto_1h.scoring_intervals.len(), 18);
        assert_eq!(crypto_1h.scoring_intervals[5].name, "60min_abs");
        assert_eq!(crypto_1h.scoring_intervals[17].name, "0_60min_gaps");
        assert_eq!(
            crypto_1h
                .scoring_intervals
                .iter()
                .filter(|i| i.is_gap())
                .count(),
            12
        );
        assert_eq!(c.smoothed_score_coefficient, 1.0 / 3.0);
        assert_eq!(c.outlier_median_multiple, 10.0);
        assert_eq!(
            c.coefficient("SP500", WeightTable::Validator),
            3.437935601155441
        );
        assert_eq!(
            c.coefficient("SPCX", WeightTable::Validator),
            0.4329342627683478
        );
        assert_eq!(c.coefficient("XAU", WeightTable::Seed), 2.26);
        assert_eq!(c.coefficient("XRP", WeightTable::Seed), 1.0);
        assert_eq!(c.coefficient("DOGE", WeightTable::Validator), 1.0);
        assert_eq!(c.sigma("HYPE"), 0.01131);
        assert_eq!(c.sigma("SP500"), 0.00157);
        assert_eq!(c.sigma("SPCX"), DEFAULT_SIGMA);
        assert_eq!(c.sigma("DOGE"), 0.005);
        assert_eq!(c.tradingview_symbols["XAU"], "Crypto.XAUT/USD");
        assert!(!c.tradingview_symbols.contains_key("WTIOIL"));
        assert_eq!(c.pyth_feed_ids.len(), 11);
        assert!(c.pyth_feed_ids.values().all(|id| id.len() == 64));
        // Realised prices: Binance spot for the four majors, Hyperliquid for the rest.
        for a in &c.assets {
            let s = c.price_source(a).unwrap();
            let binance = ["BTC", "ETH", "SOL", "XRP"].contains(&a.as_str());
            assert_eq!(s.venue == Venue::Binance, binance, "{a}");
            assert_eq!(s.venue == Venue::Hyperliquid, !binance, "{a}");
        }
        assert_eq!(c.price_source("SP500").unwrap().symbol, "xyz:SP500");
        assert_eq!(c.price_source("BTC").unwrap().symbol, "BTCUSDT");
        c.validate().unwrap();
    }

    #[test]
    fn toml_overrides_merge_maps_and_replace_scalars() {
        let text = r#"
            assets = ["BTC", "NEWCOIN"]
            [asset_coefficients]
            NEWCOIN = 0.9
            BTC = 1.5
            [sigmas]
            NEWCOIN = 0.012
            [price_sources]
            NEWCOIN = { venue = "binance", symbol = "NEWUSDT" }
            [prompts.high]
            cycle_interval_minutes = 1
            [competitions.crypto-24h]
            softmax_beta = -0.2
            scoring_intervals = [["5min", 300], ["24hour_abs", 86400]]
            [competitions.crypto-1h]
            window_days = 7
            assets = ["BTC", "NEWCOIN"]
        "#;
        let c = Sn50Config::from_toml_str(text, "test").unwrap();
        assert_eq!(c.assets, ["BTC", "NEWCOIN"]);
        assert_eq!(c.coefficient("NEWCOIN", WeightTable::Validator), 0.9);
        assert_eq!(c.coefficient("BTC", WeightTable::Validator), 1.5);
        assert_eq!(
            c.coefficient("ETH", WeightTable::Validator),
            0.7064366394033871
        );
        assert_eq!(c.sigma("NEWCOIN"), 0.012);
        assert_eq!(c.price_source("NEWCOIN").unwrap().venue, Venue::Binance);
        assert_eq!(c.high.cycle_interval_minutes, 1);
        let c24 = c.competition("crypto-24h").unwrap();
        assert_eq!(c24.softmax_beta, -0.2);
        assert_eq!(c24.scoring_intervals.len(), 2);
        assert_eq!(c24.window_days, 10);
        let c1 = c.competition("crypto-1h").unwrap();
        assert_eq!((c1.window_days, c1.softmax_beta), (7, -0.3));
        assert_eq!(
            c.scoring(PromptKind::High, "NEWCOIN").unwrap().id,
            "crypto-1h"
        );
    }

    #[test]
    fn bad_overrides_are_named() {
        let e = Sn50Config::from_toml_str("sigma = 3", "f.toml").unwrap_err();
        assert!(e.to_string().contains("f.toml"), "{e}");
        let e =
            Sn50Config::from_toml_str("[asset_coefficients]\nBTC = -1.0", "f.toml").unwrap_err();
        assert!(e.to_string().contains("BTC"), "{e}");
        let e = Sn50Config::from_toml_str("[prompts.high]\ntime_increment = 0", "f").unwrap_err();
        assert!(e.to_string().contains("time_increment"), "{e}");
        let e = Sn50Config::from_toml_str(
            "[competitions.crypto-24h]\nscoring_intervals = [[\"1min\", 60]]",
            "f",
        )
        .unwrap_err();
        assert!(e.to_string().contains("1min"), "{e}");
        let e = Sn50Config::from_toml_str("[competitions.crypto-2h]\nwindow_days = 3", "f")
            .unwrap_err();
        assert!(
            e.to_string().contains("crypto-2h") && e.to_string().contains("crypto-1h"),
            "{e}"
        );
        let e = Sn50Config::from_toml_str(
            "[price_sources]\nBTC = { venue = \"kraken\", symbol = \"XBT\" }",
            "f",
        )
        .unwrap_err();
        assert!(e.to_string().contains("kraken"), "{e}");
        assert!("mid".parse::<PromptKind>().is_err());
        assert_eq!("high".parse::<PromptKind>().unwrap(), PromptKind::High);
        assert!("kraken".parse::<Venue>().is_err());
    }

    #[test]
    fn static_table_is_consistent() {
        for a in ASSETS {
            assert_eq!(asset_info(a.symbol), Some(&a));
        }
        assert!(asset_info("btc").is_none());
        assert!(asset_info("SPYX").is_none(), "SPYX is retired");
        // Every seed-weighted asset is a validator asset.
        for (s, _) in SEED_ASSET_WEIGHTS {
            assert!(asset_info(s).is_some(), "{s}");
        }
        // Every competition asset is in the table.
        for c in super::super::competition::Competition::all() {
            for a in &c.assets {
                assert!(asset_info(a).is_some(), "{a} of {}", c.id);
            }
        }
    }
}
