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

#[derive(Default)]
struct Slot {
    active: Option<Adapter>,
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
    fn pins_split() {
        assert_eq!(split_pin("epic@1.2.0"), ("epic", Some("1.2.0")));
        assert_eq!(split_pin("epic"), ("epic", None));
    }
}
