//! The MEDITECH Expanse adapter. What differs from the standard mapping (see
//! README.md for the public source of each fact):
//!
//! - identifiers: the patient's unit number (the MRN) and the visit's account number
//!   are keyed by the site's systems from configuration; the account number arrives in
//!   PID-18 and is the visit number when PV1-19 is empty (`visit.from-account`,
//!   default on);
//! - `map-fhir` adds the US Core profile of each resource type to `meta.profile`
//!   (MEDITECH's FHIR API is US Core based), keeping the profiles already there;
//! - action `discharge-checklist` creates the discharge Tasks.

use ehrgate_sdk::site::{self, MrnRule, Site, config_flag};
use ehrgate_sdk::{Adapter, AdapterError, AdapterInfo, ConnectionNeed, Hl7Input, Output};
use serde_json::Value;

pub mod uscore;

/// The message types this adapter claims (each has golden files).
pub const MESSAGE_TYPES: &[&str] = ehrgate_sdk::v2fhir::STANDARD_MESSAGE_TYPES;

/// The site's conventions from configuration; a `Site` is this adapter's mapper
/// (the SDK's standard mapping plus identifier systems, MRN re-key, concept map).
pub fn site_from_config() -> Site {
    let mut site = Site::from_config(Some(MrnRule { authority: None, id_type: Some("MR".into()) }));
    site.visit_from_account = config_flag("visit.from-account", true);
    site.message_types = Some(MESSAGE_TYPES);
    site
}

pub struct Meditech;

impl Adapter for Meditech {
    fn describe() -> AdapterInfo {
        AdapterInfo {
            name: "meditech".into(),
            vendor: "MEDITECH (Expanse)".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            hl7_message_types: MESSAGE_TYPES.iter().map(|s| s.to_string()).collect(),
            fhir_resource_types: uscore::PROFILES.iter().map(|(t, _)| t.to_string()).collect(),
            actions: vec!["discharge-checklist".into()],
            connections: vec![ConnectionNeed {
                name: "ehr".into(),
                scopes: vec!["system/Task.write".into()],
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

    fn map_fhir(batch: Vec<String>) -> Result<Output, AdapterError> {
        let checked = ehrgate_sdk::fhir::passthrough(batch)?;
        let mut out = Output::default();
        for (i, line) in checked.resources.into_iter().enumerate() {
            let mut v: Value = serde_json::from_str(&line).map_err(|_| AdapterError::invalid("not valid JSON", Some(&format!("/{i}"))))?;
            if !uscore::add_profile(&mut v) {
                out.warn(format!("/{i}: no US Core profile for this resource type; passed through"));
            }
            out.resources.push(v.to_string());
        }
        Ok(out)
    }

    fn run_action(name: &str, input: &str) -> Result<String, AdapterError> {
        match name {
            "discharge-checklist" => ehrgate_sdk::actions::discharge_checklist("meditech", input),
            other => Err(AdapterError::unsupported(format!("no action named `{other}`"))),
        }
    }
}

ehrgate_sdk::export_adapter!(Meditech);
