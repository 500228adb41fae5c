//! The Epic adapter. What differs from the standard mapping (see README.md for the
//! public source of each fact):
//!
//! - identifiers: Epic sends several identifiers in PID-3 (its internal patient id and
//!   one or more MRNs); which repetition is the MRN, and the OID-style system of each
//!   assigning authority, are site configuration ([`ehrgate_sdk::site`]);
//! - Z-segments (patient and visit extras): mapped to extensions on the Patient or
//!   Encounter, or dropped, by configuration;
//! - `map-fhir` normalises Epic's FHIR: Epic extensions, contained resources and
//!   identifier systems ([`fhir`]);
//! - Bulk export is Group-scoped: action `bulk-kickoff` returns the request for the
//!   configured group;
//! - action `discharge-checklist` creates the discharge Tasks for an Encounter.

pub mod fhir;

use ehrgate_sdk::hl7::Segment;
use ehrgate_sdk::site::{self, Site, config};
use ehrgate_sdk::v2fhir::{self, Context, MapResult, Mapper};
use ehrgate_sdk::{Adapter, AdapterError, AdapterInfo, ConnectionNeed, Hl7Input, Output};
use serde_json::{Value, json};

/// The message types this adapter claims (each has golden files).
pub const MESSAGE_TYPES: &[&str] = ehrgate_sdk::v2fhir::STANDARD_MESSAGE_TYPES;

/// Whether `code^trigger` is one of [`MESSAGE_TYPES`].
pub fn claims(code: &str, trigger: &str) -> bool {
    MESSAGE_TYPES.iter().any(|t| t.split_once('^') == Some((code, trigger)))
}

/// Default base of the Z-segment extension URLs (config `z-segment.extension-base`).
pub const Z_EXTENSION_BASE: &str = "urn:ehrgate:extension:epic:";

/// Where a Z-segment goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZTarget {
    Patient,
    Encounter,
    Drop,
}

/// The Epic mapping: the site's conventions plus Z-segment handling.
pub struct EpicMapper {
    pub site: Site,
    /// `z-segments`: `extension` (default) or `drop`.
    pub z_drop_all: bool,
    pub z_base: String,
}

impl EpicMapper {
    pub fn from_config() -> EpicMapper {
        EpicMapper {
            site: Site::from_config(None),
            z_drop_all: config("z-segments").is_some_and(|v| v.eq_ignore_ascii_case("drop")),
            z_base: config("z-segment.extension-base").unwrap_or_else(|| Z_EXTENSION_BASE.into()),
        }
    }

    /// The target of a Z-segment: config `z-segment.<ID>` (`patient`, `encounter`,
    /// `drop`), else visit-level ids (`ZPV`, `ZV*`, `ZE*`) go to the Encounter and the
    /// rest to the Patient.
    pub fn z_target(&self, id: &str) -> ZTarget {
        if self.z_drop_all {
            return ZTarget::Drop;
        }
        match config(&format!("z-segment.{id}")).map(|v| v.to_ascii_lowercase()).as_deref() {
            Some("patient") => ZTarget::Patient,
            Some("encounter") => ZTarget::Encounter,
            Some("drop") => ZTarget::Drop,
            _ if id == "ZPV" || id.starts_with("ZV") || id.starts_with("ZE") => ZTarget::Encounter,
            _ => ZTarget::Patient,
        }
    }
}

/// A Z-segment as one complex extension: `{url: base + ID, extension: [{url: "ID.n",
/// valueString}]}` for each non-empty field (decoded text).
pub fn z_extension(base: &str, seg: &Segment<'_>) -> Option<Value> {
    let parts: Vec<Value> = (1..=seg.field_count())
        .filter_map(|n| {
            let f = seg.field(n);
            let text = f.decoded();
            let text = text.trim();
            (!text.is_empty() && text != "\"\"").then(|| json!({"url": format!("{}.{n}", seg.id()), "valueString": text}))
        })
        .collect();
    (!parts.is_empty()).then(|| json!({"url": format!("{base}{}", seg.id()), "extension": parts}))
}

impl Mapper for EpicMapper {
    fn supports(&self, code: &str, trigger: &str) -> bool {
        claims(code, trigger)
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
    fn map_merged_patient(&self, ctx: &mut Context<'_, '_>, mrg: &Segment<'_>, surviving_id: &str) -> MapResult {
        self.site.map_merged_patient(ctx, mrg, surviving_id)
    }
    fn map_z_segment(&self, ctx: &mut Context<'_, '_>, seg: &Segment<'_>) -> MapResult {
        let target = self.z_target(seg.id());
        let rt = match target {
            ZTarget::Drop => {
                ehrgate_sdk::host::counter_add("z_segments_dropped", 1);
                return Ok(None);
            }
            ZTarget::Patient => "Patient",
            ZTarget::Encounter => "Encounter",
        };
        let Some(ext) = z_extension(&self.z_base, seg) else { return Ok(None) };
        match ctx.last_mut(rt) {
            Some(r) => match r.get_mut("extension").and_then(Value::as_array_mut) {
                Some(a) => a.push(ext),
                None => r["extension"] = json!([ext]),
            },
            None => ctx.warn(format!("{}: no {rt} in the message to carry it; not mapped", seg.id())),
        }
        Ok(None)
    }
    fn finish(&self, ctx: &mut Context<'_, '_>) -> Result<(), AdapterError> {
        self.site.apply_concept_map(ctx);
        Ok(())
    }
}

/// The request that starts Epic's Group-scoped Bulk export (config `bulk.group-id`,
/// optional `bulk.types` = comma-separated `_type`, `bulk.since` = `_since`). The
/// host's bulk orchestrator sends it and polls.
pub fn bulk_kickoff() -> Result<String, AdapterError> {
    let group = config("bulk.group-id")
        .ok_or_else(|| AdapterError::Unsupported("Epic bulk export is Group-scoped: set config `bulk.group-id`".into()))?;
    if !group.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.') {
        return Err(AdapterError::Unsupported("config `bulk.group-id` is not a FHIR id".into()));
    }
    let mut query = Vec::new();
    for (key, param) in [("bulk.types", "_type"), ("bulk.since", "_since")] {
        if let Some(v) = config(key) {
            // Percent-encode what is not unreserved or `,` (a `+05:00` offset in
            // `_since` would otherwise reach the server as a space).
            let enc: String = v
                .replace(' ', "")
                .bytes()
                .map(|b| if b.is_ascii_alphanumeric() || b"-._~,:".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
                .collect();
            query.push(format!("{param}={enc}"));
        }
    }
    let path = if query.is_empty() { format!("/Group/{group}/$export") } else { format!("/Group/{group}/$export?{}", query.join("&")) };
    Ok(json!({
        "connection": config("bulk.connection").unwrap_or_else(|| "ehr".into()),
        "method": "GET",
        "path": path,
        "headers": [["Accept", "application/fhir+json"], ["Prefer", "respond-async"]]
    })
    .to_string())
}

pub struct Epic;

impl Adapter for Epic {
    fn describe() -> AdapterInfo {
        AdapterInfo {
            name: "epic".into(),
            vendor: "Epic".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            hl7_message_types: MESSAGE_TYPES.iter().map(|s| s.to_string()).collect(),
            fhir_resource_types: vec!["*".into()],
            actions: vec!["discharge-checklist".into(), "bulk-kickoff".into()],
            connections: vec![ConnectionNeed {
                name: "ehr".into(),
                scopes: vec!["system/Task.write".into(), "system/Group.read".into(), "system/*.read".into()],
                methods: vec!["GET".into(), "POST".into()],
                paths: vec!["/Task".into(), "/Group/*/$export".into()],
            }],
            ..Default::default()
        }
    }

    fn map_hl7(msg: &Hl7Input) -> Result<Output, AdapterError> {
        let m = EpicMapper::from_config();
        site::map_with(&m.site, &m, msg)
    }

    fn map_fhir(batch: Vec<String>) -> Result<Output, AdapterError> {
        fhir::normalise(batch, &fhir::FhirConfig::from_config())
    }

    fn run_action(name: &str, input: &str) -> Result<String, AdapterError> {
        match name {
            "discharge-checklist" => ehrgate_sdk::actions::discharge_checklist("epic", input),
            "bulk-kickoff" => bulk_kickoff(),
            other => Err(AdapterError::unsupported(format!("no action named `{other}`"))),
        }
    }
}

// Keep the standard mapper reachable for docs and comparisons.
#[doc(hidden)]
pub use v2fhir::Standard;

ehrgate_sdk::export_adapter!(Epic);
