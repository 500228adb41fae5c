//! API clients: keys kept only as SHA-256 digests, and the scopes each client has.
//!
//! Keys and their hashes: `ehrgate_govern::keys`.

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::ClientEntry;
use ehrgate_govern::mask::Masker;

pub use ehrgate_govern::keys::{KEY_PREFIX, new_key};
use ehrgate_govern::keys::{digest, key_id, resolve_hash};

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
    /// What it reads is masked by this (its `profile`).
    pub masker: Option<Arc<Masker>>,
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

impl Clients {
    /// The configured clients; `policy` resolves their masking profiles.
    pub fn new(entries: &[ClientEntry], policy: Option<&ehrgate_govern::Policy>) -> Result<Clients, String> {
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
            let masker = match (&e.profile, policy) {
                (None, _) => None,
                (Some(p), Some(policy)) => {
                    let profile = policy.profiles.get(p).ok_or_else(|| format!("client `{}`: no profile `{p}` (safe-harbor, or one of [governance.profiles])", e.id))?;
                    Some(Arc::new(policy.masker(profile).map_err(|err| format!("client `{}`: {err}", e.id))?))
                }
                (Some(_), None) => return Err(format!("client `{}`: a profile needs [governance]", e.id)),
            };
            let digest = resolve_hash(&format!("client `{}`", e.id), &e.key_hash)?;
            let key_id = key_id(&digest);
            let client = Client {
                id: e.id.clone(),
                key_id,
                connections: e.connections.clone(),
                read: e.read.clone(),
                actions: e.actions.clone(),
                purposes: e.purposes.clone(),
                masker,
            };
            if by_digest.insert(digest, Arc::new(client)).is_some() {
                return Err(format!("client `{}` has the same key as another client", e.id));
            }
        }
        Ok(Clients { by_digest })
    }

    /// The client a presented key belongs to.
    pub fn by_key(&self, key: &str) -> Option<Arc<Client>> {
        self.by_digest.get(&digest(key)).cloned()
    }

    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }
}

pub use ehrgate_govern::policy::valid_purpose;

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
            profile: None,
        }
    }

    #[test]
    fn keys_are_found_by_hash_only() {
        let (key, hash) = new_key();
        assert!(key.starts_with(KEY_PREFIX) && hash.starts_with("sha256:"));
        assert!(!hash.contains(&key[KEY_PREFIX.len()..]));
        let clients = Clients::new(&[entry("a", &hash)], None).unwrap();
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
        let err = Clients::new(&[entry("a", &key)], None).unwrap_err();
        assert!(err.contains("not its hash") && !err.contains(&key), "{err}");
        let err = Clients::new(&[entry("a", "sha256:abc")], None).unwrap_err();
        assert!(err.contains("64 hex"), "{err}");
        let err = Clients::new(&[entry("a", &hash), entry("b", &hash)], None).unwrap_err();
        assert!(err.contains("same key"), "{err}");
        let err = Clients::new(&[entry("a", &hash), entry("a", &new_key().1)], None).unwrap_err();
        assert!(err.contains("twice"), "{err}");
    }
}
