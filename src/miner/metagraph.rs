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

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use serde_json::Value;

use super::hotkey;

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

fn num(v: &Value, what: &str) -> Result<f64, String> {
    match v {
        Value::Number(n) => n.as_f64().ok_or_else(|| format!("{what} is not a number")),
        Value::String(s) => s
            .parse::<f64>()
            .map_err(|_| format!("{what} {s:?} is not a number")),
        other => Err(format!("{what} is {other}, not a number")),
    }
}

fn boolean(v: &Value, what: &str) -> Result<bool, String> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::Number(n) if n.as_f64() == Some(0.0) || n.as_f64() == Some(1.0) => {
            Ok(n.as_f64() == Some(1.0))
        }
        other => Err(format!("{what} is {other}, not a boolean")),
    }
}

fn field<'a>(obj: &'a serde_json::Map<String, Value>, names: &[&str]) -> Option<&'a Value> {
    names.iter().find_map(|n| obj.get(*n))
}

impl Metagraph {
    /// Parse a snapshot (see the module docs). Every hotkey must be a valid ss58 address.
    pub fn parse(text: &str) -> Result<Self, String> {
        let v: Value =
            serde_json::from_str(text).map_err(|e| format!("the metagraph is not JSON: {e}"))?;
        let mut neurons = HashMap::new();
        let mut add = |uid: usize, hotkey: &Value, stake: f64, permit: bool| {
            let hk = hotkey
                .as_str()
                .ok_or_else(|| format!("hotkey of uid {uid} is not a string"))?;
            hotkey::ss58_decode(hk).map_err(|e| format!("uid {uid}: {e}"))?;
            if !stake.is_finite() {
                return Err(format!("uid {uid}: stake {stake} is not finite"));
            }
            neurons.insert(
                hk.to_string(),
                Neuron {
                    uid,
                    stake,
                    validator_permit: permit,
                },
            );
            Ok::<(), String>(())
        };
        let list = match &v {
            Value::Array(a) => Some(a),
            Value::Object(o) => o.get("neurons").and_then(Value::as_array),
            _ => None,
        };
        if let Some(list) = list {
            for (i, n) in list.iter().enumerate() {
                let o = n
                    .as_object()
                    .ok_or_else(|| format!("neuron {i} is not an object"))?;
                let uid = match o.get("uid") {
                    Some(u) => num(u, "uid")? as usize,
                    None => i,
                };
                let hotkey = o
                    .get("hotkey")
                    .ok_or_else(|| format!("neuron {i} has no hotkey"))?;
                let stake = match field(o, &["stake", "S", "total_stake"]) {
                    Some(s) => num(s, &format!("neuron {i} stake"))?,
                    None => return Err(format!("neuron {i} has no stake")),
                };
                let permit = match field(o, &["validator_permit", "permit"]) {
                    Some(p) => boolean(p, &format!("neuron {i} validator_permit"))?,
                    None => false,
                };
                add(uid, hotkey, stake, permit)?;
            }
            return Ok(Metagraph { neurons });
        }
        let o = v.as_object().ok_or(
            "the metagraph must be an object with \"hotkeys\" and \"stake\" arrays or a list of neurons",
        )?;
        let hotkeys = o
            .get("hotkeys")
            .and_then(Value::as_array)
            .ok_or("the metagraph has no \"hotkeys\" array (nor \"neurons\")")?;
        let stakes = field(o, &["stake", "stakes", "S"])
            .and_then(Value::as_array)
            .ok_or("the metagraph has no \"stake\" array")?;
        if stakes.len() != hotkeys.len() {
            return Err(format!(
                "{} hotkeys but {} stakes",
                hotkeys.len(),
                stakes.len()
            ));
        }
        let permits = field(o, &["validator_permit", "validator_permits"])
            .map(|p| p.as_array().ok_or("validator_permit is not an array"))
            .transpose()?;
        if let Some(p) = permits {
            if p.len() != hotkeys.len() {
                return Err(format!(
                    "{} hotkeys but {} validator permits",
                    hotkeys.len(),
                    p.len()
                ));
            }
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
    pub async fn refresh(&self) -> Result<usize, String> {
        let text = match &self.source {
            None => return Ok(0),
            Some(MetagraphSource::File(p)) => {
                let mtime = std::fs::metadata(p)
                    .and_then(|m| m.modified())
                    .map_err(|e| format!("metagraph file {}: {e}", p.display()))?;
                if *self.file_mtime.read().expect("lock") == Some(mtime) {
                    return Ok(self.snapshot().map(|m| m.neurons.len()).unwrap_or(0));
                }
                let text = tokio::fs::read_to_string(p)
                    .await
                    .map_err(|e| format!("metagraph file {}: {e}", p.display()))?;
                *self.file_mtime.write().expect("lock") = Some(mtime);
                text
            }
            Some(MetagraphSource::Url(u)) => {
                let resp = self
                    .http
                    .get(u)
                    .send()
                    .await
                    .map_err(|e| format!("metagraph {u}: {e}"))?;
                let status = resp.status();
                let text = resp
                    .text()
                    .await
                    .map_err(|e| format!("metagraph {u}: {e}"))?;
                if !status.is_success() {
                    return Err(format!(
                        "metagraph {u}: HTTP {status}: {}",
                        text.chars().take(200).collect::<String>()
                    ));
                }
                text
            }
        };
        let src = self.source.as_ref().expect("checked above");
        let m = Metagraph::parse(&text).map_err(|e| format!("metagraph {src}: {e}"))?;
        let n = m.neurons.len();
        self.set(m);
        Ok(n)
    }

    /// The reference miner's `blacklist`: `Ok(priority)` (the stake) or `Err(reason)`.
    pub fn check(&self, hotkey: Option<&str>) -> Result<f64, String> {
        let Some(hk) = hotkey else {
            return Err("Received a request without a dendrite or hotkey.".into());
        };
        if self.policy.allow.contains(hk) {
            return Ok(f64::MAX);
        }
        let snap = self.snapshot();
        let Some(n) = snap.as_ref().and_then(|m| m.neurons.get(hk)) else {
            return Err(format!("Unrecognized hotkey {hk}"));
        };
        if self.policy.force_validator_permit && !n.validator_permit {
            return Err(format!("Blacklisted a non-validator hotkey {hk}"));
        }
        if n.stake <= self.policy.min_stake {
            return Err(format!(
                "Blacklisted a low stake {hk}: stake {} <= minimum {}",
                n.stake, self.policy.min_stake
            ));
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
