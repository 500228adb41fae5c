//! The Oracle Health (Cerner Millennium) adapter. What differs from the standard
//! mapping (see README.md for the public source of each fact):
//!
//! - the MRN (PID-3 typed `MR`) and the FIN (the encounter's financial number, sent
//!   in PID-18) are keyed by the site's OIDs from configuration (`mrn.authority` /
//!   `mrn.system`, `fin.authority` / `fin.system`);
//! - the FIN is the visit number: when PV1-19 is empty the Encounter keys on PID-18
//!   (`visit.from-account`, default on);
//! - Millennium code values (local codes, e.g. in OBX-3) are translated through a
//!   configurable concept map (`concept-map`);
//! - action `discharge-checklist` creates the discharge Tasks through the Task API.
//!
//! Connection concerns (not here): the tenant id is a path segment of the FHIR base
//! URL (`https://fhir-ehr.cerner.com/r4/{tenant}/`), so it belongs in the connection's
//! base URL; confidential clients authenticate with `client_secret_basic` (or
//! `private_key_jwt`), which the host's connection auth does.

use ehrgate_sdk::site::{self, MrnRule, Site, config, config_flag};
use ehrgate_sdk::{Adapter, AdapterError, AdapterInfo, ConnectionNeed, Hl7Input, Output};

/// The message types this adapter claims (each has golden files).
pub const MESSAGE_TYPES: &[&str] = ehrgate_sdk::v2fhir::STANDARD_MESSAGE_TYPES;

/// The Millennium site conventions.
/// The site's conventions from configuration; a `Site` is this adapter's mapper
/// (the SDK's standard mapping plus identifier systems, MRN re-key, concept map).
pub fn site_from_config() -> Site {
    let mut site = Site::from_config(Some(MrnRule { authority: None, id_type: Some("MR".into()) }));
    if let (Some(ns), Some(sys)) = (config("fin.authority"), config("fin.system")) {
        site.systems.insert(ns.to_ascii_uppercase(), sys);
    }
    site.visit_from_account = config_flag("visit.from-account", true);
    site.message_types = Some(MESSAGE_TYPES);
    site
}

pub struct OracleHealth;

impl Adapter for OracleHealth {
    fn describe() -> AdapterInfo {
        AdapterInfo {
            name: "oracle-health".into(),
            vendor: "Oracle Health (Cerner Millennium)".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            hl7_message_types: MESSAGE_TYPES.iter().map(|s| s.to_string()).collect(),
            fhir_resource_types: vec!["*".into()],
            actions: vec!["discharge-checklist".into()],
            connections: vec![ConnectionNeed {
                name: "ehr".into(),
                scopes: vec!["system/Task.write".into(), "system/Encounter.read".into()],
                methods: vec!["POST".into()],
                paths: vec!["/Task".into()],
            }],
            ..Default::default()
        }
    }

    fn map_hl7(msg: &Hl7Input) -> Result<Output, AdapterError> {
        let site = site_from_config();
        site::map_with(&site, &site, msg)
    }

    fn run_action(name: &str, input: &str) -> Result<String, AdapterError> {
        match name {
            "discharge-checklist" => ehrgate_sdk::actions::discharge_checklist("oracle-health", input),
            other => Err(AdapterError::unsupported(format!("no action named `{other}`"))),
        }
    }
}

ehrgate_sdk::export_adapter!(OracleHealth);
