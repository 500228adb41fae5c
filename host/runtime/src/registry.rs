//! The adapters a running gateway serves, by name: the active version of each,
//! and versions pinned by a route (`epic@1.2.0`).
//!
//! A swap is one pointer replacement under a short write lock: calls already
//! running hold their own clone of the old [`Adapter`] and finish on it; every
//! lookup after the swap gets the new one. The old compiled component is freed
//! when its last clone (the last call using it) is dropped. Compiling happens
//! before [`Registry::activate`] is called, never under the lock.

use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;

use crate::loaded::Adapter;

/// How a candidate version shares an adapter's units with the active one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CandidateMode {
    /// This percentage of units (0-100, chosen by a stable hash of the unit's
    /// key) is mapped by the candidate, the rest by the active version.
    Canary { percent: f64 },
    /// Every unit is mapped by both; only the active version's output is kept,
    /// the candidate's is compared with it.
    Shadow,
}

/// A version under trial beside the active one.
#[derive(Clone)]
pub struct Candidate {
    pub adapter: Adapter,
    pub mode: CandidateMode,
}

impl Candidate {
    /// Does the unit with this key go to the candidate? (Canary only; the same
    /// key always gets the same answer, in every process.)
    pub fn takes(&self, key: &str) -> bool {
        match self.mode {
            CandidateMode::Canary { percent } => (stable_hash(key) % 10_000) < (percent.clamp(0.0, 100.0) * 100.0).round() as u64,
            CandidateMode::Shadow => false,
        }
    }
}

/// FNV-1a, 64 bits: stable across processes and versions (unlike std's hasher).
pub fn stable_hash(key: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.as_bytes() {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// What a route resolves to at one instant: the active version and the
/// candidate, if any.
#[derive(Clone)]
pub struct Routed {
    pub active: Adapter,
    pub candidate: Option<Candidate>,
}

#[derive(Default)]
struct Slot {
    active: Option<Adapter>,
    candidate: Option<Candidate>,
    /// Set when the operator disabled the adapter: lookups find nothing.
    disabled: bool,
    pinned: HashMap<String, Adapter>,
}

/// What one name resolves to, for listings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotState {
    pub active: Option<String>,
    pub disabled: bool,
    pub pinned: Vec<String>,
}

/// Name -> active version (and pinned versions). Cheap to share behind an `Arc`.
#[derive(Default)]
pub struct Registry {
    slots: RwLock<HashMap<String, Slot>>,
}

/// `name@version` -> (`name`, `Some(version)`); `name` -> (`name`, `None`).
pub fn split_pin(reference: &str) -> (&str, Option<&str>) {
    match reference.split_once('@') {
        Some((n, v)) => (n, Some(v)),
        None => (reference, None),
    }
}

impl Registry {
    pub fn new() -> Registry {
        Registry::default()
    }

    /// The adapter a route names: `name` (the active version) or `name@version`
    /// (that version, pinned). `None` when nothing serves it (unknown or disabled).
    pub fn get(&self, reference: &str) -> Option<Adapter> {
        let slots = self.slots.read().unwrap_or_else(|p| p.into_inner());
        let (name, version) = split_pin(reference);
        let slot = slots.get(name)?;
        if slot.disabled {
            return None;
        }
        match version {
            None => slot.active.clone(),
            Some(v) => match &slot.active {
                Some(a) if a.info().version == v => Some(a.clone()),
                _ => slot.pinned.get(v).cloned(),
            },
        }
    }

    /// The active version and the candidate of `reference` (a pinned reference
    /// has no candidate).
    pub fn route(&self, reference: &str) -> Option<Routed> {
        let (name, version) = split_pin(reference);
        if version.is_some() {
            return self.get(reference).map(|active| Routed { active, candidate: None });
        }
        let slots = self.slots.read().unwrap_or_else(|p| p.into_inner());
        let slot = slots.get(name)?;
        if slot.disabled {
            return None;
        }
        Some(Routed { active: slot.active.clone()?, candidate: slot.candidate.clone() })
    }

    /// Put a candidate beside `name`'s active version (replacing any other), or
    /// remove it with `None`. Returns the one it replaced.
    pub fn set_candidate(&self, name: &str, candidate: Option<Candidate>) -> Option<Candidate> {
        let mut slots = self.slots.write().unwrap_or_else(|p| p.into_inner());
        let slot = slots.entry(name.to_string()).or_default();
        std::mem::replace(&mut slot.candidate, candidate)
    }

    /// `name`'s candidate: (version, mode).
    pub fn candidate(&self, name: &str) -> Option<(String, CandidateMode)> {
        let slots = self.slots.read().unwrap_or_else(|p| p.into_inner());
        slots.get(name)?.candidate.as_ref().map(|c| (c.adapter.info().version.clone(), c.mode))
    }

    /// Make `adapter` the active version of its name (enabling it); returns the
    /// one it replaced. Calls running on the old one finish on it.
    pub fn activate(&self, name: &str, adapter: Adapter) -> Option<Adapter> {
        let mut slots = self.slots.write().unwrap_or_else(|p| p.into_inner());
        let slot = slots.entry(name.to_string()).or_default();
        slot.disabled = false;
        slot.active.replace(adapter)
    }

    /// Keep `adapter` for routes that pin its version.
    pub fn pin(&self, name: &str, adapter: Adapter) {
        let mut slots = self.slots.write().unwrap_or_else(|p| p.into_inner());
        let v = adapter.info().version.clone();
        slots.entry(name.to_string()).or_default().pinned.insert(v, adapter);
    }

    /// Stop serving `name` (its units are quarantined as unrouted, and so kept,
    /// until it is activated again). Returns whether it was being served.
    pub fn disable(&self, name: &str) -> bool {
        let mut slots = self.slots.write().unwrap_or_else(|p| p.into_inner());
        match slots.get_mut(name) {
            Some(s) => !std::mem::replace(&mut s.disabled, true),
            None => false,
        }
    }

    /// The active version of `name`, even when disabled.
    pub fn active_version(&self, name: &str) -> Option<String> {
        let slots = self.slots.read().unwrap_or_else(|p| p.into_inner());
        slots.get(name).and_then(|s| s.active.as_ref()).map(|a| a.info().version.clone())
    }

    pub fn state(&self) -> BTreeMap<String, SlotState> {
        let slots = self.slots.read().unwrap_or_else(|p| p.into_inner());
        slots
            .iter()
            .map(|(n, s)| {
                let mut pinned: Vec<String> = s.pinned.keys().cloned().collect();
                pinned.sort();
                (n.clone(), SlotState { active: s.active.as_ref().map(|a| a.info().version.clone()), disabled: s.disabled, pinned })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_canary_hash_is_stable_and_splits_as_asked() {
        // Fixed values: a change of hash would send replayed units elsewhere.
        assert_eq!(stable_hash(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(stable_hash("MSG00001"), stable_hash("MSG00001"));
        let share = |pct: f64| (0..20_000).filter(|i| (stable_hash(&format!("CTRL{i}")) % 10_000) < (pct * 100.0) as u64).count() as f64 / 200.0;
        assert!((share(10.0) - 10.0).abs() < 1.0, "{}", share(10.0));
        assert_eq!(share(0.0), 0.0);
        assert_eq!(share(100.0), 100.0);
    }

    #[test]
    fn pins_split() {
        assert_eq!(split_pin("epic@1.2.0"), ("epic", Some("1.2.0")));
        assert_eq!(split_pin("epic"), ("epic", None));
    }
}
