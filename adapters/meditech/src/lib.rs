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
use ehrgate_sdk::v2fhir::{Context, MapResult, Mapper};
use ehrgate_sdk::hl7::Segment;
use ehrgate_sdk::{Adapter, AdapterError, AdapterInfo, ConnectionNeed, Hl7Input, Output};
use serde_json::Value;

pub mod uscore;

/// The message types this adapter claims (each has golden files).
pub const MESSAGE_TYPES: &[&str] = &["ADT^A01", "ADT^A03", "ADT^A08", "ORU^R01"];

pub struct MeditechMapper {
    pub site: Site,
}

impl MeditechMapper {
    pub fn from_config() -> MeditechMapper {
        let mut site = Site::from_config(Some(MrnRule { authority: None, id_type: Some("MR".into()) }));
        site.visit_from_account = config_flag("visit.from-account", true);
        MeditechMapper { site }
    }
}

impl Mapper for MeditechMapper {
    fn supports(&self, code: &str, trigger: &str) -> bool {
        MESSAGE_TYPES.iter().any(|t| t.split_once('^') == Some((code, trigger)))
    }
    fn default_utc_offset(&self) -> Option<String> {
        self.site.utc_offset.clone()
    }
    fn identifier_system(&self, ns: &str, uid: &str, uid_type: &str) -> Option<String> {
        self.site.identifier_system(ns, uid, uid_type)
    }
    fn map_patient(&self, ctx: &mut Context<'_, '_>, pid: &Segment<'_>) -> MapResult {
        self.site.map_patient(ctx, pid)
    }
    fn finish(&self, ctx: &mut Context<'_, '_>) -> Result<(), AdapterError> {
        self.site.apply_concept_map(ctx);
        Ok(())
    }
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
        let m = MeditechMapper::from_config();
        site::map_with(&m.site, &m, msg)
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
