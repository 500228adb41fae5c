//! API keys kept only as SHA-256 digests (agent-door clients, SQL principals).
//!
//! A key is 32 random bytes, so a plain SHA-256 of it cannot be reversed or
//! guessed; a slow password hash would only slow every call down.

use rand::RngCore;
use sha2::{Digest, Sha256};

/// The prefix of every key [`new_key`] makes (so a leaked one is recognisable by
/// secret scanners).
pub const KEY_PREFIX: &str = "ehrgk_";

/// A new random key and the `key_hash` value that admits it.
pub fn new_key() -> (String, String) {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let key = format!("{KEY_PREFIX}{}", hex::encode(bytes));
    let hash = format!("sha256:{}", hex::encode(Sha256::digest(key.as_bytes())));
    (key, hash)
}

/// The digest a presented key is looked up by.
pub fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// A short, non-secret name of a key (for audit rows): 8 hex digits of the hash of
/// its digest.
pub fn key_id(digest: &[u8; 32]) -> String {
    hex::encode(&Sha256::digest(digest)[..4])
}

fn parse_hash(v: &str) -> Option<[u8; 32]> {
    let hex_digits = v.trim().strip_prefix("sha256:").unwrap_or(v.trim());
    let bytes = hex::decode(hex_digits).ok()?;
    bytes.try_into().ok()
}

/// A `key_hash` setting of `who`: inline `sha256:<hex>`, or `env:`/`file:` holding it.
/// A key pasted where its hash belongs is refused (and not echoed).
pub fn resolve_hash(who: &str, setting: &str) -> Result<[u8; 32], String> {
    let value = if setting.starts_with("env:") || setting.starts_with("file:") {
        let secret = ehrgate_connect::SecretRef::new(setting).resolve(&format!("{who}: key_hash")).map_err(|e| e.to_string())?;
        secret.expose().to_string()
    } else {
        setting.to_string()
    };
    if value.trim().starts_with(KEY_PREFIX) {
        return Err(format!("{who}: key_hash holds a key, not its hash; keep only `sha256:<hex>` (from `ehrgate door key`) and give the key to its holder"));
    }
    parse_hash(&value).ok_or_else(|| format!("{who}: key_hash must be `sha256:<64 hex digits>` (or env:/file: holding it)"))
}
