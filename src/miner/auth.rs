//! The axon's request authentication, as bittensor 10.0.1's `Axon` does it: the `bt_header_*`
//! headers parsed into the synapse's terminal info (unparsable values are a 400), the sr25519
//! signature over `{nonce}.{dendrite_hotkey}.{our_hotkey}.{uuid}.{computed_body_hash}` (signing
//! context `substrate`; the `<Bytes>...</Bytes>` wrapping that `bittensor_wallet` also accepts),
//! the errors of the nonce rules (the rules and their store are [`super::nonces`]), and the body
//! hash: `sha3_256` over the concatenated `sha3_256` hex digests of the synapse's
//! `required_hash_fields`, which for `Simulation` is none, so the hash is `sha3_256("")`.
//! It also signs as a dendrite does ([`dendrite_headers`]), for `mine --bench` and the tests.
//!
//! This module does not decide who may call ([`super::metagraph`]), does not read the request
//! body or choose the HTTP status ([`super::server`]), and does not load our hotkey
//! ([`super::hotkey`]).

use base64::Engine;
use hyper::HeaderMap;
use schnorrkel::{Keypair, Signature};
use sha3::{Digest, Sha3_256};

use super::error::ErrorText;
use super::hotkey::{self, KeyError};

/// A request header that does not fit the synapse (the 400 `Improperly formatted request`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HeaderError {
    #[error("header {name} is not visible ASCII")]
    NotAscii { name: String },
    #[error("header {name} must be an integer, got {value:?}")]
    NotInteger { name: String, value: String },
    #[error("header {name} must be a number, got {value:?}")]
    NotNumber { name: String, value: String },
    #[error("header timeout must be a non-negative number of seconds, got {value:?}")]
    BadTimeout { value: String },
    #[error(
        "missing header bt_header_input_obj_simulation_input: the Simulation synapse requires \
         simulation_input (a dendrite sends base64 of \"{{}}\")"
    )]
    MissingInput,
    #[error("header bt_header_input_obj_simulation_input is not base64")]
    InputNotBase64,
    #[error("header bt_header_input_obj_simulation_input is not base64 of a JSON object")]
    InputNotObject,
}

impl ErrorText for HeaderError {}

/// Why a request is not verified (the 401 `Not Verified with error: ...`).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("Missing Nonce")]
    MissingNonce,
    #[error("Missing signature")]
    MissingSignature,
    /// A first nonce older than the window (`now - 4 s - timeout`), whatever version the
    /// dendrite claims (unless `--allow-legacy-nonce`).
    #[error(
        "Nonce is too old: acceptable delta is {allowed_s:.2} seconds but request was \
         {age_s:.2} seconds old (bt_header_dendrite_nonce must be newer than now - 4 s - the \
         timeout header, whatever bt_header_dendrite_version says; a validator's dendrite \
         sends the current time)"
    )]
    StaleNonce { allowed_s: f64, age_s: f64 },
    /// A nonce not newer than the last recorded for its `hotkey:uuid` (a replay).
    #[error("Nonce is too old, a newer one was last processed")]
    ReplayedNonce,
    /// The dendrite's hotkey is not an sr25519 ss58 address.
    #[error(transparent)]
    Signer(#[from] KeyError),
    #[error("the signature is not hex")]
    SignatureNotHex,
    #[error("the signature is not a 64-byte sr25519 signature ({0})")]
    NotSignature(String),
    /// A valid signature, but not by the signer over this message.
    #[error("Signature mismatch with {message} and {signature}")]
    Mismatch { message: String, signature: String },
}

impl ErrorText for AuthError {}

/// An error equals its message (what the 401 body carries).
impl PartialEq<&str> for AuthError {
    fn eq(&self, other: &&str) -> bool {
        self.to_string().as_str() == *other
    }
}

/// schnorrkel's signing context for substrate keys.
pub const SIGNING_CONTEXT: &[u8] = b"substrate";
/// The synapse's default `timeout` when the header is absent.
pub const DEFAULT_TIMEOUT_S: f64 = 12.0;
/// Hex `sha3_256` of `data`.
pub fn sha3_hex(data: &[u8]) -> String {
    hex::encode(Sha3_256::digest(data))
}

/// The synapse body hash: `sha3_256("".join(sha3_256(str(field)).hexdigest() for field in
/// required_hash_fields)).hexdigest()`, given each field's Python `str`.
pub fn body_hash(required_field_strs: &[&str]) -> String {
    let joined: String = required_field_strs
        .iter()
        .map(|f| sha3_hex(f.as_bytes()))
        .collect();
    sha3_hex(joined.as_bytes())
}

/// The body hash of every `Simulation` request (it has no `required_hash_fields`):
/// `a7ffc6f8bf1ed76651c14756a061d662f580ff4de43b49fa82d80a4b80f8434a`.
pub fn simulation_body_hash() -> String {
    body_hash(&[])
}

/// The message a dendrite signs.
pub fn signed_message(
    nonce: i128,
    dendrite_hotkey: &str,
    axon_hotkey: &str,
    uuid: &str,
    body_hash: &str,
) -> String {
    format!("{nonce}.{dendrite_hotkey}.{axon_hotkey}.{uuid}.{body_hash}")
}

/// Sign `message` as a dendrite does: `"0x"` + the 64-byte signature in hex.
pub fn sign(keypair: &Keypair, message: &str) -> String {
    let ctx = schnorrkel::signing_context(SIGNING_CONTEXT);
    let sig = keypair.sign(ctx.bytes(message.as_bytes()));
    format!("0x{}", hex::encode(sig.to_bytes()))
}

/// Verify a dendrite's signature (`0x`-prefixed or bare hex) over `message` by the key of the
/// ss58 address `signer`. The error is the reason, for a 401.
pub fn verify(signer: &str, message: &str, signature: &str) -> Result<(), AuthError> {
    let public = hotkey::public_key(signer)?;
    let raw = hex::decode(signature.trim().trim_start_matches("0x"))
        .map_err(|_| AuthError::SignatureNotHex)?;
    let sig = Signature::from_bytes(&raw).map_err(|e| AuthError::NotSignature(e.to_string()))?;
    let ok = |m: &[u8]| public.verify_simple(SIGNING_CONTEXT, m, &sig).is_ok();
    let wrapped = format!("<Bytes>{message}</Bytes>");
    if ok(message.as_bytes()) || ok(wrapped.as_bytes()) {
        Ok(())
    } else {
        Err(AuthError::Mismatch {
            message: message.to_string(),
            signature: signature.to_string(),
        })
    }
}

/// The headers a bittensor `Dendrite` sends with a `Simulation` request, signed by
/// `keypair` (whose address is `dendrite_ss58`) for the axon hotkey `axon_ss58`. Used by
/// `mine --bench` and the tests to call the axon as a validator does.
pub fn dendrite_headers(
    keypair: &Keypair,
    dendrite_ss58: &str,
    axon_ss58: &str,
    uuid: &str,
    nonce: i128,
    timeout_s: f64,
) -> Vec<(&'static str, String)> {
    let hash = simulation_body_hash();
    let message = signed_message(nonce, dendrite_ss58, axon_ss58, uuid, &hash);
    vec![
        ("name", "Simulation".into()),
        ("timeout", format!("{timeout_s:?}")),
        ("bt_header_dendrite_ip", "127.0.0.1".into()),
        ("bt_header_dendrite_version", "10000001".into()),
        ("bt_header_dendrite_nonce", nonce.to_string()),
        ("bt_header_dendrite_uuid", uuid.into()),
        ("bt_header_dendrite_hotkey", dendrite_ss58.into()),
        ("bt_header_dendrite_signature", sign(keypair, &message)),
        ("bt_header_axon_hotkey", axon_ss58.into()),
        ("bt_header_input_obj_simulation_input", "e30=".into()),
        ("computed_body_hash", hash),
        ("content-type", "application/json".into()),
    ]
}

/// What the request headers say, parsed as `Synapse.from_headers` parses them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestHeaders {
    /// The `timeout` header (seconds), 12.0 when absent.
    pub timeout: f64,
    pub timeout_raw: Option<String>,
    pub dendrite_hotkey: Option<String>,
    pub nonce: Option<i128>,
    pub uuid: Option<String>,
    pub version: Option<i128>,
    pub signature: Option<String>,
    pub dendrite_ip: Option<String>,
    pub dendrite_port: Option<i64>,
    pub computed_body_hash: Option<String>,
}

fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, HeaderError> {
    match h.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(|s| Some(s.trim()))
            .map_err(|_| HeaderError::NotAscii { name: name.into() }),
    }
}

fn parse_int(name: &str, v: &str) -> Result<i128, HeaderError> {
    v.parse::<i128>().map_err(|_| HeaderError::NotInteger {
        name: name.into(),
        value: short(v),
    })
}

fn parse_float(name: &str, v: &str) -> Result<f64, HeaderError> {
    v.parse::<f64>().map_err(|_| HeaderError::NotNumber {
        name: name.into(),
        value: short(v),
    })
}

fn short(v: &str) -> String {
    v.chars().take(40).collect()
}

/// Parse the synapse headers. Every `bt_header_axon_*`/`bt_header_dendrite_*` value must fit
/// its `TerminalInfo` type, `timeout` must be a non-negative finite number, and the required
/// input `bt_header_input_obj_simulation_input` must be base64 of a JSON object (the dendrite
/// sends `e30=`, `{}`); otherwise the error is the 400 message.
pub fn parse_headers(h: &HeaderMap) -> Result<RequestHeaders, HeaderError> {
    let mut out = RequestHeaders {
        timeout: DEFAULT_TIMEOUT_S,
        ..Default::default()
    };
    if let Some(t) = header_str(h, "timeout")? {
        let v = parse_float("timeout", t)?;
        if !(v.is_finite() && v >= 0.0) {
            return Err(HeaderError::BadTimeout { value: t.into() });
        }
        out.timeout = v;
        out.timeout_raw = Some(t.to_string());
    }
    for name in ["header_size", "total_size"] {
        if let Some(v) = header_str(h, name)? {
            parse_int(name, v)?;
        }
    }
    for side in ["axon", "dendrite"] {
        for (field, kind) in [
            ("status_code", 'i'),
            ("process_time", 'f'),
            ("port", 'i'),
            ("version", 'i'),
            ("nonce", 'i'),
        ] {
            let name = format!("bt_header_{side}_{field}");
            if let Some(v) = header_str(h, &name)? {
                if kind == 'i' {
                    parse_int(&name, v)?;
                } else {
                    parse_float(&name, v)?;
                }
            }
        }
    }
    out.dendrite_hotkey = header_str(h, "bt_header_dendrite_hotkey")?
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    out.nonce = header_str(h, "bt_header_dendrite_nonce")?
        .map(|v| parse_int("bt_header_dendrite_nonce", v))
        .transpose()?;
    out.version = header_str(h, "bt_header_dendrite_version")?
        .map(|v| parse_int("bt_header_dendrite_version", v))
        .transpose()?;
    out.dendrite_port = header_str(h, "bt_header_dendrite_port")?
        .map(|v| parse_int("bt_header_dendrite_port", v).map(|p| p as i64))
        .transpose()?;
    out.uuid = header_str(h, "bt_header_dendrite_uuid")?.map(str::to_string);
    out.signature = header_str(h, "bt_header_dendrite_signature")?.map(str::to_string);
    out.dendrite_ip = header_str(h, "bt_header_dendrite_ip")?.map(str::to_string);
    out.computed_body_hash = header_str(h, "computed_body_hash")?.map(str::to_string);
    let input =
        header_str(h, "bt_header_input_obj_simulation_input")?.ok_or(HeaderError::MissingInput)?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(input)
        .map_err(|_| HeaderError::InputNotBase64)?;
    match serde_json::from_slice::<serde_json::Value>(&decoded) {
        Ok(serde_json::Value::Object(_)) => {}
        _ => return Err(HeaderError::InputNotObject),
    }
    Ok(out)
}

/// Nanoseconds since the epoch, as `time.time_ns()`.
pub fn now_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::miner::hotkey::Hotkey;

    #[test]
    fn the_simulation_body_hash_is_sha3_of_nothing() {
        assert_eq!(
            simulation_body_hash(),
            "a7ffc6f8bf1ed76651c14756a061d662f580ff4de43b49fa82d80a4b80f8434a"
        );
        // One field: sha3 of the field's digest.
        assert_eq!(body_hash(&["x"]), sha3_hex(sha3_hex(b"x").as_bytes()));
    }

    #[test]
    fn sign_and_verify_like_a_dendrite() {
        let alice = Hotkey::from_uri("//Alice").unwrap();
        let bob = Hotkey::from_uri("//Bob").unwrap();
        let msg = signed_message(
            1_795_533_681_267_709_911,
            &alice.ss58,
            &bob.ss58,
            "b40bf324-e81a-11f1-91b9-02fc00000001",
            &simulation_body_hash(),
        );
        let sig = sign(alice.keypair().unwrap(), &msg);
        assert!(sig.starts_with("0x") && sig.len() == 130);
        verify(&alice.ss58, &msg, &sig).unwrap();
        verify(&alice.ss58, &msg, sig.trim_start_matches("0x")).unwrap();
        // The `<Bytes>` form bittensor_wallet accepts.
        let wrapped = sign(alice.keypair().unwrap(), &format!("<Bytes>{msg}</Bytes>"));
        verify(&alice.ss58, &msg, &wrapped).unwrap();
        // Another signer, another message, garbage.
        let e = verify(&bob.ss58, &msg, &sig).unwrap_err();
        assert!(e.starts_with("Signature mismatch"), "{e}");
        assert!(verify(&alice.ss58, &format!("{msg}x"), &sig).is_err());
        assert!(verify(&alice.ss58, &msg, "0xzz").is_err());
        assert!(verify(&alice.ss58, &msg, "0x1234").is_err());
        assert!(verify("5Nope", &msg, &sig).is_err());
    }

    #[test]
    fn header_parsing() {
        let mut h = HeaderMap::new();
        h.insert(
            "bt_header_input_obj_simulation_input",
            "e30=".parse().unwrap(),
        );
        h.insert("bt_header_dendrite_nonce", "123".parse().unwrap());
        h.insert("timeout", "90.5".parse().unwrap());
        let p = parse_headers(&h).unwrap();
        assert_eq!((p.nonce, p.timeout), (Some(123), 90.5));
        let mut bad = h.clone();
        bad.insert("bt_header_dendrite_nonce", "abc".parse().unwrap());
        assert!(parse_headers(&bad)
            .unwrap_err()
            .contains("bt_header_dendrite_nonce"));
        let mut bad = h.clone();
        bad.insert("timeout", "inf".parse().unwrap());
        assert!(parse_headers(&bad).unwrap_err().contains("timeout"));
        let mut bad = h.clone();
        bad.insert("bt_header_axon_port", "x".parse().unwrap());
        assert!(parse_headers(&bad).is_err());
        let mut bad = h.clone();
        bad.insert(
            "bt_header_input_obj_simulation_input",
            "W10=".parse().unwrap(),
        );
        assert!(parse_headers(&bad).is_err());
        let mut bad = h.clone();
        bad.remove("bt_header_input_obj_simulation_input");
        assert!(parse_headers(&bad).unwrap_err().contains("missing"));
    }
}
