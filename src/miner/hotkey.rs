//! Our hotkey and the dendrites' keys: sr25519 keypairs (schnorrkel), ss58 addresses, and the
//! two ways an operator names the miner's hotkey.
//!
//! - A Bittensor wallet directory: `{path}/{wallet}/hotkeys/{hotkey}`, the JSON keyfile that
//!   `btcli`/`bittensor_wallet` write (`publicKey`, `ss58Address`, `accountId` and, when the file
//!   is not encrypted, `secretSeed`/`privateKey`/`secretPhrase`). The miner only needs the public
//!   key (it verifies, it never signs), so an encrypted hotkey is read through its
//!   `{hotkey}pub.txt` companion; where the secret is present it must derive the same public key.
//! - A substrate secret URI (`--hotkey-uri`): `//Bob`, `PHRASE//hard/soft///password` or
//!   `0xSEED//hard`, derived exactly as substrate's `Pair::from_string` does (an empty phrase is
//!   the dev phrase; the mnemonic's entropy goes through PBKDF2-HMAC-SHA512 with salt
//!   `mnemonic{password}`; hard junctions use `hard_derive_mini_secret_key`, soft ones
//!   `derived_key_simple`).
//!
//! Secrets never reach a log: [`Hotkey`]'s `Debug` prints only the address.
//!
//! This module does not verify or make signatures ([`super::auth`] does), does not decide who
//! may call ([`super::metagraph`]), and never talks to the chain; it is not the engine's
//! `keys.rs` (the Redis key layout).

use std::fmt;
use std::path::{Path, PathBuf};

use blake2::digest::consts::U32;
use blake2::{Blake2b, Blake2b512, Digest};
use schnorrkel::derive::{ChainCode, Derivation};
use schnorrkel::{ExpansionMode, Keypair, MiniSecretKey, PublicKey, SecretKey};

/// Substrate's development phrase, the phrase of `//Alice`, `//Bob`, ...
pub const DEV_PHRASE: &str =
    "bottom drive obey lake curtain smoke basket hold race lonely fit walk";
/// The generic substrate ss58 prefix, which Bittensor uses.
pub const SS58_PREFIX: u16 = 42;

/// Errors about keys, addresses and wallets; none of them includes secret material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("ss58 address {address:?}: {message}")]
    Ss58 { address: String, message: String },
    #[error("secret URI: {0}")]
    Uri(String),
    #[error("wallet hotkey file {path}: {message}")]
    Wallet { path: String, message: String },
}

fn ss58_err(address: &str, message: impl Into<String>) -> KeyError {
    KeyError::Ss58 {
        address: address.chars().take(64).collect(),
        message: message.into(),
    }
}

fn ss58_checksum(payload: &[u8]) -> [u8; 64] {
    let mut h = Blake2b512::new();
    h.update(b"SS58PRE");
    h.update(payload);
    h.finalize().into()
}

/// The ss58 address of a 32-byte public key under `prefix` (0..16383).
pub fn ss58_encode(public: &[u8; 32], prefix: u16) -> String {
    let mut payload = Vec::with_capacity(35);
    if prefix < 64 {
        payload.push(prefix as u8);
    } else {
        // The two-byte form of the ss58 spec.
        let first = ((prefix & 0b0000_0000_1111_1100) as u8) >> 2 | 0b0100_0000;
        let second = ((prefix >> 8) as u8) | (((prefix & 0b11) as u8) << 6);
        payload.push(first);
        payload.push(second);
    }
    payload.extend_from_slice(public);
    let sum = ss58_checksum(&payload);
    payload.extend_from_slice(&sum[..2]);
    bs58::encode(payload).into_string()
}

/// Decode an ss58 address of a 32-byte account: `(public key, prefix)`. Checks the base58
/// alphabet, the length and the two-byte blake2b-512 `SS58PRE` checksum.
pub fn ss58_decode(address: &str) -> Result<([u8; 32], u16), KeyError> {
    let raw = bs58::decode(address)
        .into_vec()
        .map_err(|e| ss58_err(address, format!("not base58: {e}")))?;
    let (prefix, prefix_len) = match raw.first() {
        None => return Err(ss58_err(address, "empty")),
        Some(&b) if b < 64 => (b as u16, 1),
        Some(&b) if b < 128 => {
            let Some(&b1) = raw.get(1) else {
                return Err(ss58_err(address, "too short"));
            };
            let lower = (b << 2) | (b1 >> 6);
            let upper = b1 & 0b0011_1111;
            ((lower as u16) | ((upper as u16) << 8), 2)
        }
        Some(&b) => return Err(ss58_err(address, format!("reserved prefix byte {b}"))),
    };
    if raw.len() != prefix_len + 32 + 2 {
        return Err(ss58_err(
            address,
            format!(
                "{} bytes after base58 decoding; a 32-byte account address has {}",
                raw.len(),
                prefix_len + 34
            ),
        ));
    }
    let body = &raw[..prefix_len + 32];
    let sum = ss58_checksum(body);
    if raw[prefix_len + 32..] != sum[..2] {
        return Err(ss58_err(address, "checksum mismatch"));
    }
    let mut pk = [0u8; 32];
    pk.copy_from_slice(&raw[prefix_len..prefix_len + 32]);
    Ok((pk, prefix))
}

/// Decode an ss58 address into an sr25519 public key.
pub fn public_key(address: &str) -> Result<PublicKey, KeyError> {
    let (pk, _) = ss58_decode(address)?;
    PublicKey::from_bytes(&pk).map_err(|e| ss58_err(address, format!("not an sr25519 key: {e}")))
}

/// The miner's hotkey: the address validators sign for, and the keypair when one is known
/// (dev URIs, unencrypted wallets; used by tests and `bench mine` to sign as a dendrite).
#[derive(Clone)]
pub struct Hotkey {
    pub public: [u8; 32],
    pub ss58: String,
    keypair: Option<Keypair>,
    /// Where it came from, for logs (`//Bob`-style URIs are shown only as "secret URI").
    pub source: String,
}

impl fmt::Debug for Hotkey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hotkey")
            .field("ss58", &self.ss58)
            .field("source", &self.source)
            .field("has_secret", &self.keypair.is_some())
            .finish()
    }
}

impl Hotkey {
    fn from_keypair(kp: Keypair, source: String) -> Self {
        let public = kp.public.to_bytes();
        Hotkey {
            ss58: ss58_encode(&public, SS58_PREFIX),
            public,
            keypair: Some(kp),
            source,
        }
    }

    /// The keypair, where the secret is known.
    pub fn keypair(&self) -> Option<&Keypair> {
        self.keypair.as_ref()
    }

    /// From a secret URI such as `//Bob`.
    pub fn from_uri(uri: &str) -> Result<Self, KeyError> {
        Ok(Hotkey::from_keypair(
            keypair_from_uri(uri)?,
            "secret URI".into(),
        ))
    }

    /// From `{wallets}/{wallet}/hotkeys/{hotkey}`.
    pub fn from_wallet(wallets: &Path, wallet: &str, hotkey: &str) -> Result<Self, KeyError> {
        let path = wallets.join(wallet).join("hotkeys").join(hotkey);
        read_hotkey_file(&path)
    }
}

/// `~/.bittensor/wallets` (or `./.bittensor/wallets` without a home).
pub fn default_wallets_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
        .join(".bittensor")
        .join("wallets")
}

fn hex32(s: &str) -> Option<[u8; 32]> {
    let b = hex::decode(s.trim().trim_start_matches("0x")).ok()?;
    b.try_into().ok()
}

fn wallet_err(path: &Path, message: impl Into<String>) -> KeyError {
    KeyError::Wallet {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// The public key a keyfile's JSON states (`publicKey`/`accountId`, else `ss58Address`),
/// checked for agreement between the fields it has.
fn stated_public(path: &Path, v: &serde_json::Value) -> Result<[u8; 32], KeyError> {
    let mut found: Option<[u8; 32]> = None;
    for field in ["publicKey", "accountId"] {
        if let Some(s) = v.get(field).and_then(|x| x.as_str()) {
            let pk = hex32(s)
                .ok_or_else(|| wallet_err(path, format!("{field} is not 32 bytes of hex")))?;
            if found.is_some_and(|f| f != pk) {
                return Err(wallet_err(path, "publicKey and accountId disagree"));
            }
            found = Some(pk);
        }
    }
    if let Some(s) = v.get("ss58Address").and_then(|x| x.as_str()) {
        let (pk, _) = ss58_decode(s).map_err(|e| wallet_err(path, e.to_string()))?;
        if found.is_some_and(|f| f != pk) {
            return Err(wallet_err(
                path,
                "ss58Address does not match publicKey/accountId",
            ));
        }
        found = Some(pk);
    }
    found.ok_or_else(|| wallet_err(path, "no publicKey, accountId or ss58Address field"))
}

/// The keypair a keyfile's secret fields give, if any. Every candidate is checked against the
/// stated public key by the caller.
fn secret_keypairs(path: &Path, v: &serde_json::Value) -> Result<Vec<Keypair>, KeyError> {
    let mut out = Vec::new();
    if let Some(s) = v.get("secretSeed").and_then(|x| x.as_str()) {
        let seed = hex32(s).ok_or_else(|| wallet_err(path, "secretSeed is not 32 bytes of hex"))?;
        let mini = MiniSecretKey::from_bytes(&seed)
            .map_err(|_| wallet_err(path, "secretSeed is not a valid mini secret key"))?;
        out.push(mini.expand_to_keypair(ExpansionMode::Ed25519));
    }
    if let Some(s) = v.get("privateKey").and_then(|x| x.as_str()) {
        let b = hex::decode(s.trim().trim_start_matches("0x"))
            .map_err(|_| wallet_err(path, "privateKey is not hex"))?;
        if b.len() != 64 {
            return Err(wallet_err(
                path,
                format!("privateKey has {} bytes, expected 64", b.len()),
            ));
        }
        // bittensor_wallet stores schnorrkel's `SecretKey::to_bytes`; older tools the
        // ed25519-compatible form. Both are tried; the public key decides.
        if let Ok(sk) = SecretKey::from_bytes(&b) {
            out.push(sk.to_keypair());
        }
        if let Ok(sk) = SecretKey::from_ed25519_bytes(&b) {
            out.push(sk.to_keypair());
        }
    }
    Ok(out)
}

/// Read a Bittensor hotkey keyfile (see the module docs).
pub fn read_hotkey_file(path: &Path) -> Result<Hotkey, KeyError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        wallet_err(
            path,
            format!("cannot read it ({e}); create the hotkey with `btcli wallet new_hotkey` or pass --hotkey-uri"),
        )
    })?;
    let trimmed = text.trim_start();
    if trimmed.starts_with("$NACL")
        || trimmed.starts_with("$ANSIBLE_VAULT")
        || trimmed.starts_with("gAAAAA")
    {
        // Encrypted: the public half lives beside it.
        let pub_path = path.with_file_name(format!(
            "{}pub.txt",
            path.file_name().unwrap_or_default().to_string_lossy()
        ));
        let pub_text = std::fs::read_to_string(&pub_path).map_err(|e| {
            wallet_err(
                path,
                format!(
                    "the hotkey is encrypted and its public companion {} cannot be read ({e})",
                    pub_path.display()
                ),
            )
        })?;
        let v: serde_json::Value = serde_json::from_str(&pub_text)
            .map_err(|e| wallet_err(&pub_path, format!("not JSON: {e}")))?;
        let public = stated_public(&pub_path, &v)?;
        return Ok(Hotkey {
            ss58: ss58_encode(&public, SS58_PREFIX),
            public,
            keypair: None,
            source: format!("wallet {} (encrypted; public key only)", path.display()),
        });
    }
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        // serde's message names a line and column, never the content.
        wallet_err(path, format!("not a JSON keyfile: {e}"))
    })?;
    let public = stated_public(path, &v)?;
    let candidates = secret_keypairs(path, &v)?;
    let has_secret = !candidates.is_empty();
    let keypair = candidates
        .into_iter()
        .find(|kp| kp.public.to_bytes() == public);
    if has_secret && keypair.is_none() {
        return Err(wallet_err(
            path,
            "the secret key does not derive the public key the file states",
        ));
    }
    Ok(Hotkey {
        ss58: ss58_encode(&public, SS58_PREFIX),
        public,
        keypair,
        source: format!("wallet {}", path.display()),
    })
}

/// One step of a derivation path.
enum Junction {
    Hard([u8; 32]),
    Soft([u8; 32]),
}

/// substrate's `DeriveJunction` chain code: a number is its u64 little-endian bytes, anything
/// else its SCALE encoding (compact length, bytes); longer than 32 bytes is blake2b-256 of it.
fn chain_code(part: &str) -> [u8; 32] {
    let encoded: Vec<u8> = if let Ok(n) = part.parse::<u64>() {
        n.to_le_bytes().to_vec()
    } else {
        let mut e = compact_len(part.len());
        e.extend_from_slice(part.as_bytes());
        e
    };
    let mut cc = [0u8; 32];
    if encoded.len() > 32 {
        cc.copy_from_slice(&Blake2b::<U32>::digest(&encoded));
    } else {
        cc[..encoded.len()].copy_from_slice(&encoded);
    }
    cc
}

/// SCALE compact encoding of a length.
fn compact_len(n: usize) -> Vec<u8> {
    let n = n as u64;
    if n < 1 << 6 {
        vec![(n as u8) << 2]
    } else if n < 1 << 14 {
        ((n as u16) << 2 | 0b01).to_le_bytes().to_vec()
    } else if n < 1 << 30 {
        ((n as u32) << 2 | 0b10).to_le_bytes().to_vec()
    } else {
        let bytes = n.to_le_bytes();
        let len = 8 - (n.leading_zeros() / 8) as usize;
        let mut v = vec![(((len - 4) as u8) << 2) | 0b11];
        v.extend_from_slice(&bytes[..len]);
        v
    }
}

/// Split a secret URI into (phrase, junctions, password).
fn parse_uri(uri: &str) -> Result<(String, Vec<Junction>, Option<String>), KeyError> {
    let (main, password) = match uri.find("///") {
        Some(i) => (&uri[..i], Some(uri[i + 3..].to_string())),
        None => (uri, None),
    };
    let first = main.find('/').unwrap_or(main.len());
    let phrase = main[..first].trim().to_string();
    let mut rest = &main[first..];
    let mut junctions = Vec::new();
    while !rest.is_empty() {
        let hard = rest.starts_with("//");
        rest = if hard { &rest[2..] } else { &rest[1..] };
        let end = rest.find('/').unwrap_or(rest.len());
        let part = &rest[..end];
        if part.is_empty() {
            return Err(KeyError::Uri("an empty path junction".into()));
        }
        let cc = chain_code(part);
        junctions.push(if hard {
            Junction::Hard(cc)
        } else {
            Junction::Soft(cc)
        });
        rest = &rest[end..];
    }
    Ok((phrase, junctions, password))
}

/// substrate-bip39's `mini_secret_from_entropy`.
fn mini_secret_from_phrase(phrase: &str, password: &str) -> Result<MiniSecretKey, KeyError> {
    let m = bip39::Mnemonic::parse_in_normalized(bip39::Language::English, phrase)
        .map_err(|e| KeyError::Uri(format!("the phrase is not a BIP-39 English mnemonic: {e}")))?;
    let entropy = m.to_entropy();
    let salt = format!("mnemonic{password}");
    let mut seed = [0u8; 64];
    pbkdf2::pbkdf2_hmac::<sha2::Sha512>(&entropy, salt.as_bytes(), 2048, &mut seed);
    MiniSecretKey::from_bytes(&seed[..32]).map_err(|e| KeyError::Uri(e.to_string()))
}

/// An sr25519 keypair from a substrate secret URI (see the module docs).
pub fn keypair_from_uri(uri: &str) -> Result<Keypair, KeyError> {
    let (phrase, junctions, password) = parse_uri(uri.trim())?;
    let mini = if phrase.is_empty() {
        mini_secret_from_phrase(DEV_PHRASE, password.as_deref().unwrap_or(""))?
    } else if let Some(hexseed) = phrase.strip_prefix("0x") {
        let seed = hex32(hexseed)
            .ok_or_else(|| KeyError::Uri("a hex seed must be 32 bytes (64 hex digits)".into()))?;
        MiniSecretKey::from_bytes(&seed).map_err(|e| KeyError::Uri(e.to_string()))?
    } else {
        mini_secret_from_phrase(&phrase, password.as_deref().unwrap_or(""))?
    };
    let mut secret = mini.expand(ExpansionMode::Ed25519);
    for j in junctions {
        secret = match j {
            Junction::Hard(cc) => secret
                .hard_derive_mini_secret_key(Some(ChainCode(cc)), b"")
                .0
                .expand(ExpansionMode::Ed25519),
            Junction::Soft(cc) => secret.derived_key_simple(ChainCode(cc), []).0,
        };
    }
    Ok(secret.to_keypair())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_uris_give_substrates_well_known_addresses() {
        let alice = Hotkey::from_uri("//Alice").unwrap();
        assert_eq!(
            alice.ss58,
            "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
        );
        let bob = Hotkey::from_uri("//Bob").unwrap();
        assert_eq!(bob.ss58, "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty");
        // The phrase spelled out is the same key.
        let explicit = keypair_from_uri(&format!("{DEV_PHRASE}//Alice")).unwrap();
        assert_eq!(explicit.public.to_bytes(), alice.public);
        // A soft junction and a password change the key.
        let soft = Hotkey::from_uri("//Alice/0").unwrap();
        assert_ne!(soft.public, alice.public);
        let pw = Hotkey::from_uri("//Alice///secret").unwrap();
        assert_ne!(pw.public, alice.public);
        assert!(!format!("{alice:?}").contains("Alice"));
    }

    #[test]
    fn bad_uris_are_named() {
        assert!(matches!(
            keypair_from_uri("not a phrase//Alice"),
            Err(KeyError::Uri(_))
        ));
        assert!(matches!(
            keypair_from_uri("0x1234//Alice"),
            Err(KeyError::Uri(_))
        ));
        assert!(matches!(
            keypair_from_uri("//Alice//"),
            Err(KeyError::Uri(_))
        ));
    }

    #[test]
    fn ss58_round_trip_and_checksum() {
        let (pk, prefix) = ss58_decode("5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY").unwrap();
        assert_eq!(prefix, 42);
        assert_eq!(
            hex::encode(pk),
            "d43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d"
        );
        assert_eq!(
            ss58_encode(&pk, 42),
            "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
        );
        // Two-byte prefixes round trip too.
        let a = ss58_encode(&pk, 1000);
        assert_eq!(ss58_decode(&a).unwrap(), (pk, 1000));
        // One changed character breaks the checksum.
        let bad = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQZ";
        assert!(ss58_decode(bad).is_err());
        assert!(ss58_decode("0OIl").is_err());
        assert!(ss58_decode("").is_err());
        assert!(ss58_decode("5Grwva").is_err());
    }

    #[test]
    fn bittensor_wallet_keyfiles() {
        let dir = tempfile::tempdir().unwrap();
        let hk = dir.path().join("miner").join("hotkeys");
        std::fs::create_dir_all(&hk).unwrap();
        // As `bittensor_wallet` 10.0.1 writes `set_hotkey(Keypair.create_from_uri("//Bob"))`.
        let bob = r#"{"accountId":"0x8eaf04151687736326c9fea17e25fc5287613693c912909cb226aa4794f26a48","ss58Address":"5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty","cryptoType":1,"publicKey":"0x8eaf04151687736326c9fea17e25fc5287613693c912909cb226aa4794f26a48","privateKey":"0xe1c39e72cca724caa697d64a58e10bd95ffa63d1922962f7e27f8a09dda1370b41ae88f85d0c1bfc37be41c904e1dfc01de8c8067b0d6d5df25dd1ac0894a325"}"#;
        std::fs::write(hk.join("default"), bob).unwrap();
        let k = Hotkey::from_wallet(dir.path(), "miner", "default").unwrap();
        assert_eq!(k.ss58, "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty");
        assert!(k.keypair().is_some());
        // A generated hotkey with its seed and phrase (a throwaway test key).
        let gen = r#"{"publicKey":"0x8298177164aa0b2cd8c408683c5c7966e3fc616b6a80e48c68a18c343cffdd53","secretPhrase":"agree cliff prefer goddess armed before gift catalog juice candy elephant metal","secretSeed":"0xfc16df4d1588a4007c490bd973ce917a43cbb571c5ddc4d0e56229e0cfe8a2af","ss58Address":"5F1wGCLPr5xCcsfcJCWdqnunvVVc5PqaKU95qiZmGqTegZki","cryptoType":1,"privateKey":"0xa2504450f6a20ecec20aa31249c8552af2846130c83ec8d3f057bbed2b59ea0e86c88e8ae019d97d6b5fb24f57d61b4a984063b501561d436c07cdce4663dab7","accountId":"0x8298177164aa0b2cd8c408683c5c7966e3fc616b6a80e48c68a18c343cffdd53"}"#;
        std::fs::write(hk.join("h"), gen).unwrap();
        let k = Hotkey::from_wallet(dir.path(), "miner", "h").unwrap();
        assert_eq!(k.ss58, "5F1wGCLPr5xCcsfcJCWdqnunvVVc5PqaKU95qiZmGqTegZki");
        let from_phrase = keypair_from_uri(
            "agree cliff prefer goddess armed before gift catalog juice candy elephant metal",
        )
        .unwrap();
        assert_eq!(from_phrase.public.to_bytes(), k.public);
        // A secret that does not match the stated key is refused.
        let tampered = bob.replace("0x8eaf0415", "0x8eaf0416");
        std::fs::write(hk.join("bad"), tampered).unwrap();
        let e = Hotkey::from_wallet(dir.path(), "miner", "bad").unwrap_err();
        assert!(e.to_string().contains("bad"), "{e}");
        // Encrypted: the public companion is used.
        std::fs::write(hk.join("enc"), "$NACLxxxxxxxx").unwrap();
        std::fs::write(
            hk.join("encpub.txt"),
            r#"{"publicKey":"0x8eaf04151687736326c9fea17e25fc5287613693c912909cb226aa4794f26a48","ss58Address":"5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty"}"#,
        )
        .unwrap();
        let k = Hotkey::from_wallet(dir.path(), "miner", "enc").unwrap();
        assert_eq!(k.ss58, "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty");
        assert!(k.keypair().is_none());
        // Missing and garbage files name the path, never the content.
        let e = Hotkey::from_wallet(dir.path(), "miner", "nope").unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");
        std::fs::write(hk.join("junk"), "{\"privateKey\": 12").unwrap();
        let e = Hotkey::from_wallet(dir.path(), "miner", "junk").unwrap_err();
        assert!(e.to_string().contains("not a JSON keyfile"), "{e}");
    }
}
