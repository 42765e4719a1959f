//! Who may ask: the blacklist that runs before signature verification, on header data only,
//! as the SN50 reference miner's `blacklist` does. A hotkey passes if it is in `--allow-hotkeys`,
//! or if it is in the metagraph with a stake above the minimum (`S[uid] > min_stake`, the
//! reference's `--blacklist.validator_min_stake`, default 1000) and, when required, a validator
//! permit. The metagraph is JSON from a snapshot file or an HTTP endpoint the operator runs,
//! re-read periodically; a failed refresh keeps the last good snapshot.
//!
//! Accepted JSON: the metagraph's parallel arrays
//! `{"hotkeys": [..], "stake": [..], "validator_permit": [..]}` (also `stakes`/`S`,
//! `validator_permits`), or a list of neurons `[{"hotkey", "stake", "validator_permit"}]`, bare
//! or under `"neurons"`. Stakes are in TAO.
//!
//! This module does not talk to the chain (the operator provides the snapshot) and does not
//! verify signatures ([`super::auth`]): a caller it lets through is still unverified.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use serde_json::Value;

use super::error::ErrorText;
use super::hotkey::{self, KeyError};

/// A metagraph snapshot that does not parse: what is wrong in it.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("the metagraph is not JSON: {0}")]
    NotJson(serde_json::Error),
    #[error("the metagraph must be an object with \"hotkeys\" and \"stake\" arrays or a list of neurons")]
    NotMetagraph,
    #[error("the metagraph has no \"hotkeys\" array (nor \"neurons\")")]
    NoHotkeys,
    #[error("the metagraph has no \"stake\" array")]
    NoStakes,
    #[error("validator_permit is not an array")]
    PermitsNotArray,
    #[error("{hotkeys} hotkeys but {n} {what}")]
    Lengths {
        hotkeys: usize,
        n: usize,
        what: &'static str,
    },
    #[error("neuron {0} is not an object")]
    NeuronNotObject(usize),
    #[error("neuron {0} has no hotkey")]
    NoHotkey(usize),
    #[error("neuron {0} has no stake")]
    NoStake(usize),
    #[error("hotkey of uid {0} is not a string")]
    HotkeyNotString(usize),
    #[error("uid {uid}: {error}")]
    BadHotkey { uid: usize, error: KeyError },
    #[error("uid {uid}: stake {stake} is not finite")]
    StakeNotFinite { uid: usize, stake: f64 },
    #[error("{what} {text:?} is not a number")]
    NumberText { what: String, text: String },
    #[error("{what} is {value}, not a number")]
    NotNumber { what: String, value: Value },
    #[error("{what} is {value}, not a boolean")]
    NotBoolean { what: String, value: Value },
}

/// The metagraph could not be loaded; the last good snapshot stays.
#[derive(Debug, thiserror::Error)]
pub enum MetagraphError {
    #[error("metagraph file {path}: {error}")]
    File { path: String, error: std::io::Error },
    #[error("metagraph {url}: {error}")]
    Fetch { url: String, error: reqwest::Error },
    #[error("metagraph {url}: HTTP {status}: {body}")]
    Status {
        url: String,
        status: reqwest::StatusCode,
        body: String,
    },
    #[error("metagraph {source_name}: {error}")]
    Snapshot {
        source_name: String,
        error: SnapshotError,
    },
}

impl ErrorText for SnapshotError {}
impl ErrorText for MetagraphError {}

/// Why the blacklist refuses a caller (the 403 `Forbidden. Key is blacklisted: ...`), in the
/// reference miner's words.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Blacklisted {
    #[error("Received a request without a dendrite or hotkey.")]
    NoHotkey,
    #[error("Unrecognized hotkey {0}")]
    Unrecognized(String),
    #[error("Blacklisted a non-validator hotkey {0}")]
    NotValidator(String),
    #[error("Blacklisted a low stake {hotkey}: stake {stake} <= minimum {min_stake}")]
    LowStake {
        hotkey: String,
        stake: f64,
        min_stake: f64,
    },
}

impl ErrorText for Blacklisted {}

/// One neuron's standing.
#[derive(Debug, Clone, PartialEq)]
pub struct Neuron {
    pub uid: usize,
    pub stake: f64,
    pub validator_permit: bool,
}

/// A parsed metagraph snapshot.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metagraph {
    pub neurons: HashMap<String, Neuron>,
}

fn num(v: &Value, what: &str) -> Result<f64, SnapshotError> {
    let not_number = || SnapshotError::NotNumber {
        what: what.into(),
        value: v.clone(),
    };
    match v {
        Value::Number(n) => n.as_f64().ok_or_else(not_number),
        Value::String(s) => s.parse::<f64>().map_err(|_| SnapshotError::NumberText {
            what: what.into(),
            text: s.clone(),
        }),
        _ => Err(not_number()),
    }
}

fn boolean(v: &Value, what: &str) -> Result<bool, SnapshotError> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::Number(n) if n.as_f64() == Some(0.0) || n.as_f64() == Some(1.0) => {
            Ok(n.as_f64() == Some(1.0))
        }
        other => Err(SnapshotError::NotBoolean {
            what: what.into(),
            value: other.clone(),
        }),
    }
}

fn field<'a>(obj: &'a serde_json::Map<String, Value>, names: &[&str]) -> Option<&'a Value> {
    names.iter().find_map(|n| obj.get(*n))
}

impl Metagraph {
    /// Parse a snapshot (see the module docs). Every hotkey must be a valid ss58 address.
    pub fn parse(text: &str) -> Result<Self, SnapshotError> {
        let v: Value = serde_json::from_str(text).map_err(SnapshotError::NotJson)?;
        let mut neurons = HashMap::new();
        let mut add = |uid: usize, hotkey: &Value, stake: f64, permit: bool| {
            let hk = hotkey.as_str().ok_or(SnapshotError::HotkeyNotString(uid))?;
            hotkey::ss58_decode(hk).map_err(|error| SnapshotError::BadHotkey { uid, error })?;
            if !stake.is_finite() {
                return Err(SnapshotError::StakeNotFinite { uid, stake });
            }
            neurons.insert(
                hk.to_string(),
                Neuron {
                    uid,
                    stake,
                    validator_permit: permit,
                },
            );
            Ok::<(), SnapshotError>(())
        };
        let list = match &v {
            Value::Array(a) => Some(a),
            Value::Object(o) => o.get("neurons").and_then(Value::as_array),
            _ => None,
        };
        if let Some(list) = list {
            for (i, n) in list.iter().enumerate() {
                let o = n.as_object().ok_or(SnapshotError::NeuronNotObject(i))?;
                let uid = match o.get("uid") {
                    Some(u) => num(u, "uid")? as usize,
                    None => i,
                };
                let hotkey = o.get("hotkey").ok_or(SnapshotError::NoHotkey(i))?;
                let stake = match field(o, &["stake", "S", "total_stake"]) {
                    Some(s) => num(s, &format!("neuron {i} stake"))?,
                    None => return Err(SnapshotError::NoStake(i)),
                };
                let permit = match field(o, &["validator_permit", "permit"]) {
                    Some(p) => boolean(p, &format!("neuron {i} validator_permit"))?,
                    None => false,
                };
                add(uid, hotkey, stake, permit)?;
            }
            return Ok(Metagraph { neurons });
        }
        let o = v.as_object().ok_or(SnapshotError::NotMetagraph)?;
        let hotkeys = o
            .get("hotkeys")
            .and_then(Value::as_array)
            .ok_or(SnapshotError::NoHotkeys)?;
        let stakes = field(o, &["stake", "stakes", "S"])
            .and_then(Value::as_array)
            .ok_or(SnapshotError::NoStakes)?;
        let same_length = |n: usize, what: &'static str| {
            if n == hotkeys.len() {
                Ok(())
            } else {
                Err(SnapshotError::Lengths {
                    hotkeys: hotkeys.len(),
                    n,
                    what,
                })
            }
        };
        same_length(stakes.len(), "stakes")?;
        let permits = field(o, &["validator_permit", "validator_permits"])
            .map(|p| p.as_array().ok_or(SnapshotError::PermitsNotArray))
            .transpose()?;
        if let Some(p) = permits {
            same_length(p.len(), "validator permits")?;
        }
        for (uid, hk) in hotkeys.iter().enumerate() {
            let stake = num(&stakes[uid], &format!("stake[{uid}]"))?;
            let permit = match permits {
                Some(p) => boolean(&p[uid], &format!("validator_permit[{uid}]"))?,
                None => false,
            };
            add(uid, hk, stake, permit)?;
        }
        Ok(Metagraph { neurons })
    }
}

/// Where the metagraph comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum MetagraphSource {
    File(PathBuf),
    Url(String),
}

impl std::fmt::Display for MetagraphSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MetagraphSource::File(p) => write!(f, "file {}", p.display()),
            MetagraphSource::Url(u) => write!(f, "{u}"),
        }
    }
}

/// The rules.
#[derive(Debug, Clone, PartialEq)]
pub struct BlacklistPolicy {
    /// Stake must be strictly greater than this (TAO).
    pub min_stake: f64,
    pub force_validator_permit: bool,
    /// Always allowed, metagraph or not.
    pub allow: HashSet<String>,
}

impl Default for BlacklistPolicy {
    fn default() -> Self {
        BlacklistPolicy {
            min_stake: 1000.0,
            force_validator_permit: false,
            allow: HashSet::new(),
        }
    }
}

/// The blacklist: the policy and the current snapshot.
#[derive(Debug)]
pub struct Blacklist {
    pub policy: BlacklistPolicy,
    pub source: Option<MetagraphSource>,
    current: RwLock<Option<Arc<Metagraph>>>,
    file_mtime: RwLock<Option<SystemTime>>,
    http: reqwest::Client,
}

impl Blacklist {
    pub fn new(policy: BlacklistPolicy, source: Option<MetagraphSource>) -> Self {
        Blacklist {
            policy,
            source,
            current: RwLock::new(None),
            file_mtime: RwLock::new(None),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("an HTTP client builds"),
        }
    }

    /// Use this snapshot (tests, or a caller that loads it itself).
    pub fn set(&self, m: Metagraph) {
        *self.current.write().expect("metagraph lock") = Some(Arc::new(m));
    }

    pub fn snapshot(&self) -> Option<Arc<Metagraph>> {
        self.current.read().expect("metagraph lock").clone()
    }

    /// Load the metagraph from its source; returns the number of neurons. A file that has not
    /// changed since the last load is not re-read. On error the last snapshot stays.
    pub async fn refresh(&self) -> Result<usize, MetagraphError> {
        let text = match &self.source {
            None => return Ok(0),
            Some(MetagraphSource::File(p)) => {
                let file_error = |error| MetagraphError::File {
                    path: p.display().to_string(),
                    error,
                };
                let mtime = std::fs::metadata(p)
                    .and_then(|m| m.modified())
                    .map_err(file_error)?;
                if *self.file_mtime.read().expect("lock") == Some(mtime) {
                    return Ok(self.snapshot().map(|m| m.neurons.len()).unwrap_or(0));
                }
                let text = tokio::fs::read_to_string(p).await.map_err(file_error)?;
                *self.file_mtime.write().expect("lock") = Some(mtime);
                text
            }
            Some(MetagraphSource::Url(u)) => {
                let fetch_error = |error| MetagraphError::Fetch {
                    url: u.clone(),
                    error,
                };
                let resp = self.http.get(u).send().await.map_err(fetch_error)?;
                let status = resp.status();
                let text = resp.text().await.map_err(fetch_error)?;
                if !status.is_success() {
                    return Err(MetagraphError::Status {
                        url: u.clone(),
                        status,
                        body: text.chars().take(200).collect(),
                    });
                }
                text
            }
        };
        let src = self.source.as_ref().expect("checked above");
        let m = Metagraph::parse(&text).map_err(|error| MetagraphError::Snapshot {
            source_name: src.to_string(),
            error,
        })?;
        let n = m.neurons.len();
        self.set(m);
        Ok(n)
    }

    /// The reference miner's `blacklist`: `Ok(priority)` (the stake) or `Err(reason)`.
    pub fn check(&self, hotkey: Option<&str>) -> Result<f64, Blacklisted> {
        let Some(hk) = hotkey else {
            return Err(Blacklisted::NoHotkey);
        };
        if self.policy.allow.contains(hk) {
            return Ok(f64::MAX);
        }
        let snap = self.snapshot();
        let Some(n) = snap.as_ref().and_then(|m| m.neurons.get(hk)) else {
            return Err(Blacklisted::Unrecognized(hk.into()));
        };
        if self.policy.force_validator_permit && !n.validator_permit {
            return Err(Blacklisted::NotValidator(hk.into()));
        }
        if n.stake <= self.policy.min_stake {
            return Err(Blacklisted::LowStake {
                hotkey: hk.into(),
                stake: n.stake,
                min_stake: self.policy.min_stake,
            });
        }
        Ok(n.stake)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: &str = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY";
    const BOB: &str = "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty";
    const CHARLIE: &str = "5FLSigC9HGRKVhB9FiEo4Y3koPsNmBmLJbpXg2mp1hXcS59Y";

    #[test]
    fn both_json_forms_parse() {
        let a = Metagraph::parse(&format!(
            r#"{{"hotkeys":["{ALICE}","{BOB}"],"stake":[5000.5,10],"validator_permit":[true,false]}}"#
        ))
        .unwrap();
        let b = Metagraph::parse(&format!(
            r#"{{"neurons":[{{"uid":0,"hotkey":"{ALICE}","stake":5000.5,"validator_permit":true}},
                            {{"uid":1,"hotkey":"{BOB}","stake":"10","validator_permit":false}}]}}"#
        ))
        .unwrap();
        assert_eq!(a, b);
        assert_eq!(a.neurons[ALICE].stake, 5000.5);
        for bad in [
            "[1,2",
            r#"{"hotkeys":["x"],"stake":[1]}"#,
            &format!(r#"{{"hotkeys":["{ALICE}"],"stake":[1,2]}}"#),
            &format!(r#"{{"hotkeys":["{ALICE}"]}}"#),
            &format!(r#"[{{"hotkey":"{ALICE}","stake":"lots"}}]"#),
        ] {
            assert!(Metagraph::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_reference_miners_rules() {
        let mut policy = BlacklistPolicy::default();
        policy.allow.insert(CHARLIE.to_string());
        let bl = Blacklist::new(policy.clone(), None);
        bl.set(
            Metagraph::parse(&format!(
                r#"{{"hotkeys":["{ALICE}","{BOB}"],"stake":[5000,1000],"validator_permit":[false,true]}}"#
            ))
            .unwrap(),
        );
        assert_eq!(bl.check(Some(ALICE)), Ok(5000.0));
        assert!(bl.check(Some(BOB)).unwrap_err().contains("low stake"));
        assert!(bl.check(Some(CHARLIE)).is_ok());
        assert!(bl.check(None).is_err());
        assert!(bl
            .check(Some("5DAAnrj7VHTznn2AWBemMuyBwZWs6FNFjdyVXUeYum3PTXFy"))
            .unwrap_err()
            .contains("Unrecognized"));
        let strict = Blacklist::new(
            BlacklistPolicy {
                force_validator_permit: true,
                ..policy
            },
            None,
        );
        strict.set(bl.snapshot().unwrap().as_ref().clone());
        assert!(strict
            .check(Some(ALICE))
            .unwrap_err()
            .contains("non-validator"));
    }
}
