//! `[agent_door]` in `ehrgate.toml` (docs/agent-door.md):
//!
//! ```toml
//! [agent_door]
//! bind = "127.0.0.1:9772"
//! # Reads on a connection are mapped by this adapter's map-fhir, with its scopes.
//! connections = { ehr = "epic" }
//!
//! [[agent_door.clients]]
//! id = "care-agent"
//! key_hash = "file:/etc/ehrgate/door/care-agent.sha256"   # or "sha256:<64 hex>"
//! connections = ["ehr"]
//! read = ["Observation", "MedicationRequest", "Encounter", "Patient"]
//! actions = ["epic.discharge-checklist"]
//! purposes = ["TREAT"]
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DoorSettings {
    /// `host:port`; loopback unless `allow_remote`. Port 0 picks a free port.
    #[serde(default = "default_bind")]
    pub bind: String,
    #[serde(default)]
    pub allow_remote: bool,
    /// Connection name -> the adapter whose `map-fhir` shapes what is read there
    /// and whose declared scopes bound the token the read uses.
    #[serde(default)]
    pub connections: BTreeMap<String, String>,
    #[serde(default)]
    pub clients: Vec<ClientEntry>,
    /// The most resources one read returns (one upstream page).
    #[serde(default = "default_max_results")]
    pub max_results: usize,
}

fn default_bind() -> String {
    "127.0.0.1:9772".into()
}

fn default_max_results() -> usize {
    100
}

/// One API client (an agent, a pipeline) and what it may do.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientEntry {
    /// The name the audit records.
    pub id: String,
    /// The SHA-256 of the client's key, never the key: `sha256:<64 hex digits>`,
    /// or a reference (`env:NAME`, `file:/path`) to such a value.
    /// `ehrgate door key` makes a key and prints its hash.
    pub key_hash: String,
    /// Connections it may read through.
    #[serde(default)]
    pub connections: Vec<String>,
    /// FHIR resource types it may read (`*`: any).
    #[serde(default)]
    pub read: Vec<String>,
    /// Adapter actions it may run, as `adapter.action`.
    #[serde(default)]
    pub actions: Vec<String>,
    /// Purposes of use it may declare (empty: any), e.g. `TREAT`, `HOPERAT`.
    #[serde(default)]
    pub purposes: Vec<String>,
    /// Masking profile applied to every resource it reads: `safe-harbor` or one of
    /// `[governance.profiles]` (docs/governance.md); none: as the EHR answers.
    #[serde(default)]
    pub profile: Option<String>,
}
