//! API clients: keys kept only as SHA-256 digests, and the scopes each client has.
//!
//! A key is 32 random bytes (`ehrgate door key`), so a plain SHA-256 of it cannot be
//! reversed or guessed; a slow password hash would only slow every call down.

use std::collections::HashMap;
use std::sync::Arc;

use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::config::ClientEntry;

/// The prefix of every key `ehrgate door key` makes (so a leaked one is
/// recognisable by secret scanners).
pub const KEY_PREFIX: &str = "ehrgk_";

/// A new random key and the `key_hash` value that admits it.
pub fn new_key() -> (String, String) {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let key = format!("{KEY_PREFIX}{}", hex::encode(bytes));
    let hash = format!("sha256:{}", hex::encode(Sha256::digest(key.as_bytes())));
    (key, hash)
}

/// One configured client.
#[derive(Debug)]
pub struct Client {
    pub id: String,
    /// A short, non-secret id of the key (for the audit: which key was used).
    pub key_id: String,
    pub connections: Vec<String>,
    pub read: Vec<String>,
    pub actions: Vec<String>,
    pub purposes: Vec<String>,
}

impl Client {
    pub fn may_use(&self, connection: &str) -> bool {
        self.connections.iter().any(|c| c == connection)
    }

    pub fn may_read(&self, resource_type: &str) -> bool {
        self.read.iter().any(|t| t == "*" || t == resource_type)
    }

    pub fn may_run(&self, adapter: &str, action: &str) -> bool {
        self.actions.iter().any(|a| a.split_once('.').is_some_and(|(ad, ac)| ad == adapter && (ac == action || ac == "*")))
    }

    pub fn may_declare(&self, purpose: &str) -> bool {
        self.purposes.is_empty() || self.purposes.iter().any(|p| p == purpose)
    }
}

/// Clients by the digest of their key.
#[derive(Debug, Default)]
pub struct Clients {
    by_digest: HashMap<[u8; 32], Arc<Client>>,
}

fn parse_hash(v: &str) -> Option<[u8; 32]> {
    let hex_digits = v.trim().strip_prefix("sha256:").unwrap_or(v.trim());
    let bytes = hex::decode(hex_digits).ok()?;
    bytes.try_into().ok()
}

/// The `key_hash` setting: inline `sha256:<hex>`, or a reference to it.
fn resolve_hash(id: &str, setting: &str) -> Result<[u8; 32], String> {
    let value = if setting.starts_with("env:") || setting.starts_with("file:") {
        let secret = ehrgate_connect::SecretRef::new(setting).resolve(&format!("client `{id}`: key_hash")).map_err(|e| e.to_string())?;
        secret.expose().to_string()
    } else {
        setting.to_string()
    };
    if value.trim().starts_with(KEY_PREFIX) {
        return Err(format!("client `{id}`: key_hash holds a key, not its hash; keep only `sha256:<hex>` (from `ehrgate door key`) and give the key to the client"));
    }
    parse_hash(&value).ok_or_else(|| format!("client `{id}`: key_hash must be `sha256:<64 hex digits>` (or env:/file: holding it)"))
}

impl Clients {
    pub fn new(entries: &[ClientEntry]) -> Result<Clients, String> {
        let mut by_digest = HashMap::new();
        let mut ids = std::collections::HashSet::new();
        for e in entries {
            let valid_id = !e.id.is_empty() && e.id.len() <= 64 && e.id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
            if !valid_id {
                return Err(format!("client id `{}` must be 1-64 of A-Z a-z 0-9 - _ .", e.id.escape_debug()));
            }
            if !ids.insert(e.id.clone()) {
                return Err(format!("client `{}` is configured twice", e.id));
            }
            for a in &e.actions {
                if !a.split_once('.').is_some_and(|(ad, ac)| !ad.is_empty() && !ac.is_empty()) {
                    return Err(format!("client `{}`: action `{a}` must be `adapter.action`", e.id));
                }
            }
            let digest = resolve_hash(&e.id, &e.key_hash)?;
            let key_id = hex::encode(&Sha256::digest(digest)[..4]);
            let client = Client {
                id: e.id.clone(),
                key_id,
                connections: e.connections.clone(),
                read: e.read.clone(),
                actions: e.actions.clone(),
                purposes: e.purposes.clone(),
            };
            if by_digest.insert(digest, Arc::new(client)).is_some() {
                return Err(format!("client `{}` has the same key as another client", e.id));
            }
        }
        Ok(Clients { by_digest })
    }

    /// The client a presented key belongs to.
    pub fn by_key(&self, key: &str) -> Option<Arc<Client>> {
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        self.by_digest.get(&digest).cloned()
    }

    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }
}

/// A declared purpose of use: 1-64 printable characters without spaces (HL7
/// v3 PurposeOfUse codes such as `TREAT`, `HOPERAT`, `HPAYMT` are the intended
/// values).
pub fn valid_purpose(p: &str) -> bool {
    !p.is_empty() && p.len() <= 64 && p.chars().all(|c| c.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, hash: &str) -> ClientEntry {
        ClientEntry {
            id: id.into(),
            key_hash: hash.into(),
            connections: vec!["ehr".into()],
            read: vec!["Observation".into()],
            actions: vec!["epic.discharge-checklist".into()],
            purposes: vec![],
        }
    }

    #[test]
    fn keys_are_found_by_hash_only() {
        let (key, hash) = new_key();
        assert!(key.starts_with(KEY_PREFIX) && hash.starts_with("sha256:"));
        assert!(!hash.contains(&key[KEY_PREFIX.len()..]));
        let clients = Clients::new(&[entry("a", &hash)]).unwrap();
        let c = clients.by_key(&key).expect("the key admits its client");
        assert_eq!(c.id, "a");
        assert!(clients.by_key(&format!("{key}x")).is_none());
        assert!(clients.by_key("").is_none());
        assert!(c.may_read("Observation") && !c.may_read("Patient"));
        assert!(c.may_use("ehr") && !c.may_use("other"));
        assert!(c.may_run("epic", "discharge-checklist") && !c.may_run("epic", "bulk-kickoff") && !c.may_run("meditech", "discharge-checklist"));
    }

    #[test]
    fn a_key_in_place_of_its_hash_is_refused_without_echoing_it() {
        let (key, hash) = new_key();
        let err = Clients::new(&[entry("a", &key)]).unwrap_err();
        assert!(err.contains("not its hash") && !err.contains(&key), "{err}");
        let err = Clients::new(&[entry("a", "sha256:abc")]).unwrap_err();
        assert!(err.contains("64 hex"), "{err}");
        let err = Clients::new(&[entry("a", &hash), entry("b", &hash)]).unwrap_err();
        assert!(err.contains("same key"), "{err}");
        let err = Clients::new(&[entry("a", &hash), entry("a", &new_key().1)]).unwrap_err();
        assert!(err.contains("twice"), "{err}");
    }
}
