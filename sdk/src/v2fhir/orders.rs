//! Orders and specimens: ORC/OBR -> ServiceRequest, SPM (and OBR-15 before v2.5)
//! -> Specimen.
//!
//! Maps used (HL7 v2-to-FHIR IG, STU 1):
//! - "OBR[ServiceRequest]" and "ORC[ServiceRequest]": identifiers PLAC / FILL from
//!   ORC-2/OBR-2 and ORC-3/OBR-3, code OBR-4, status ORC-5 (else ORC-1), intent
//!   `order`, authoredOn ORC-9, requester ORC-12 (else OBR-16), reasonCode OBR-31,
//!   priority TQ1-9 / OBR-27.6, subject and encounter from PID / PV1.
//! - "SPM[Specimen]": identifiers SPM-2.1 (PGN) / SPM-2.2 (FGN), type SPM-4,
//!   collection method SPM-7 and body site SPM-8, collectedDateTime SPM-17.1,
//!   receivedTime SPM-18, status from SPM-20 (availability), request -> the order.
//! - "OBR[Specimen]" (v2.3-2.4, no SPM): type OBR-15.1, collected OBR-7.
//!
//! People are logical references (identifier and display), as everywhere in the
//! standard mapping: no Practitioner resources are made.

use serde_json::{Value, json};

use super::types::{text, text_cow};
use super::{Context, MapResult, Order};
use crate::fhir::ToFhir;
use crate::hl7::Segment;

/// ORC-5 order status (HL7 table 0038), else ORC-1 order control (table 0119), to
/// ServiceRequest.status.
pub fn request_status(orc: Option<&Segment<'_>>, default: &str) -> String {
    let Some(orc) = orc else { return default.into() };
    let by_status = match text(orc.field(5).component(1)).as_deref() {
        Some("A" | "IP" | "SC") => Some("active"),
        Some("CA" | "DC") => Some("revoked"),
        Some("CM") => Some("completed"),
        Some("HD") => Some("on-hold"),
        Some("ER") => Some("entered-in-error"),
        _ => None,
    };
    let by_control = match text(orc.field(1).component(1)).as_deref() {
        Some("NW" | "XO" | "SC" | "RP" | "RO" | "OK" | "SN") => Some("active"),
        Some("CA" | "OC" | "CR" | "DC" | "OD" | "DR") => Some("revoked"),
        Some("HD" | "OH") => Some("on-hold"),
        _ => None,
    };
    by_status.or(by_control).unwrap_or(default).into()
}

/// ORC + OBR -> ServiceRequest. `None` without a patient (`subject` is required)
/// or without anything to say what is ordered.
pub fn map_service_request(
    ctx: &mut Context<'_, '_>,
    obr: Option<&Segment<'_>>,
    orc: Option<&Segment<'_>>,
    order: &Order,
) -> MapResult {
    let Some(subject) = ctx.patient_ref() else {
        ctx.warn("an order without a patient: no ServiceRequest mapped");
        return Ok(None);
    };
    let code = obr.and_then(|o| ctx.concept(o.field(4).rep(1)));
    if code.is_none() && obr.is_none() {
        return Ok(None);
    }
    // A result (ORU) reports on an order that is being or has been done.
    let default = if ctx.message.message_code() == "ORU" { "completed" } else { "active" };
    let mut sr = json!({
        "resourceType": "ServiceRequest",
        "id": ctx.id("ServiceRequest", &order.system, &[&order.key]),
        "meta": ctx.meta.to_fhir(),
        "status": request_status(orc, default),
        "intent": "order",
        "subject": subject.to_fhir(),
    });
    let mut identifiers = Vec::new();
    for (n, t) in [(2, "PLAC"), (3, "FILL")] {
        let from_orc = orc.and_then(|s| ctx.ei_identifier(s.field(n).rep(1)));
        let from_obr = obr.and_then(|s| ctx.ei_identifier(s.field(n).rep(1)));
        if let Some(id) = from_orc.or(from_obr) {
            identifiers.push(id.with_v2_type(t).to_fhir());
        }
    }
    if !identifiers.is_empty() {
        sr["identifier"] = Value::Array(identifiers);
    }
    if let Some(c) = code {
        sr["code"] = c.to_fhir();
    }
    if let Some(e) = ctx.encounter_ref() {
        sr["encounter"] = e.to_fhir();
    }
    let authored = orc.and_then(|o| text_cow(o.field(9).component(1)).map(|t| t.into_owned()));
    if let Some(t) = ctx.datetime(authored.as_deref(), "ORC-9") {
        sr["authoredOn"] = t.into();
    }
    let requester = orc
        .and_then(|o| ctx.practitioner(o.field(12).rep(1)))
        .or_else(|| obr.and_then(|o| ctx.practitioner(o.field(16).rep(1))));
    if let Some(r) = requester {
        sr["requester"] = r.to_fhir();
    }
    if let Some(obr) = obr {
        let reasons: Vec<Value> = obr.field(31).repetitions().filter_map(|r| ctx.concept(r)).map(|c| c.to_fhir()).collect();
        if !reasons.is_empty() {
            sr["reasonCode"] = Value::Array(reasons);
        }
        let priority = text(obr.field(27).component(6)).or_else(|| {
            ctx.message.segment("TQ1").and_then(|tq1| text(tq1.field(9).component(1)))
        });
        if let Some(p) = priority.as_deref().and_then(priority_code) {
            sr["priority"] = p.into();
        }
        let occurrence = text_cow(obr.field(7).component(1)).map(|t| t.into_owned());
        if let Some(t) = ctx.datetime(occurrence.as_deref(), "OBR-7") {
            sr["occurrenceDateTime"] = t.into();
        }
    }
    Ok(Some(sr.into()))
}

/// HL7 priority codes (table 0485 / TQ1-9, OBR-27.6) to ServiceRequest.priority.
fn priority_code(p: &str) -> Option<&'static str> {
    match p {
        "S" => Some("stat"),
        "A" | "P" => Some("asap"),
        "C" => Some("urgent"),
        "R" | "T" => Some("routine"),
        _ => None,
    }
}

/// SPM -> Specimen. `order` is the order it belongs to (its key scopes a specimen
/// without an identifier); `request` the ServiceRequest id, if one was made.
pub fn map_specimen(ctx: &mut Context<'_, '_>, spm: &Segment<'_>, order: Option<&Order>, request: Option<&str>) -> MapResult {
    let placer = spm.field(2).component(1);
    let filler = spm.field(2).component(2);
    let key_id = text(filler.clone()).or_else(|| text(placer.clone()));
    let set_id = text(spm.field(1).component(1)).unwrap_or_else(|| "1".into());
    let (system, key) = match (&key_id, order) {
        (Some(id), _) => (ctx.source_urn(), id.clone()),
        (None, Some(o)) => (o.system.clone(), format!("{}/SPM/{set_id}", o.key)),
        (None, None) => (ctx.source_urn(), format!("{}/SPM/{set_id}", ctx.message.control_id())),
    };
    let mut s = json!({
        "resourceType": "Specimen",
        "id": ctx.id("Specimen", &system, &[&key]),
        "meta": ctx.meta.to_fhir(),
    });
    let mut identifiers = Vec::new();
    for (c, t) in [(placer, "PGN"), (filler, "FGN")] {
        if let Some(v) = text(c.clone()) {
            let system = super::types::sub(c, 2).and_then(|ns| ctx.mapper.identifier_system(&ns, "", ""));
            identifiers.push(crate::fhir::Identifier::new(system, v).with_v2_type(t).to_fhir());
        }
    }
    if !identifiers.is_empty() {
        s["identifier"] = Value::Array(identifiers);
    }
    if let Some(t) = ctx.concept_in(spm.field(4).rep(1), "HL70487") {
        s["type"] = t.to_fhir();
    }
    if let Some(p) = ctx.patient_ref() {
        s["subject"] = p.to_fhir();
    }
    let mut collection = serde_json::Map::new();
    let collected = text_cow(spm.field(17).component(1)).map(|t| t.into_owned());
    if let Some(t) = ctx.datetime(collected.as_deref(), "SPM-17") {
        collection.insert("collectedDateTime".into(), t.into());
    }
    if let Some(m) = ctx.concept_in(spm.field(7).rep(1), "HL70488") {
        collection.insert("method".into(), m.to_fhir());
    }
    if let Some(b) = ctx.concept(spm.field(8).rep(1)) {
        collection.insert("bodySite".into(), b.to_fhir());
    }
    if !collection.is_empty() {
        s["collection"] = Value::Object(collection);
    }
    let received = text_cow(spm.field(18).component(1)).map(|t| t.into_owned());
    if let Some(t) = ctx.datetime(received.as_deref(), "SPM-18") {
        s["receivedTime"] = t.into();
    }
    match text(spm.field(20).component(1)).as_deref() {
        Some("Y") => s["status"] = "available".into(),
        Some("N") => s["status"] = "unavailable".into(),
        _ => {}
    }
    if let Some(r) = request {
        s["request"] = json!([{"reference": format!("ServiceRequest/{r}")}]);
    }
    Ok(Some(s.into()))
}

/// OBR-15 (specimen source, v2.3-2.4; withdrawn in v2.7) -> Specimen, when the
/// order has no SPM. `None` when OBR-15 is empty.
pub fn map_obr_specimen(ctx: &mut Context<'_, '_>, obr: &Segment<'_>, order: &Order, request: Option<&str>) -> MapResult {
    let source = obr.field(15);
    let Some(kind) = ctx.concept_in(source.rep(1), "HL70070") else { return Ok(None) };
    let mut s = json!({
        "resourceType": "Specimen",
        "id": ctx.id("Specimen", &order.system, &[&order.key, "OBR-15"]),
        "meta": ctx.meta.to_fhir(),
        "type": kind.to_fhir(),
    });
    if let Some(p) = ctx.patient_ref() {
        s["subject"] = p.to_fhir();
    }
    let collected = text_cow(obr.field(7).component(1)).map(|t| t.into_owned());
    if let Some(t) = ctx.datetime(collected.as_deref(), "OBR-7") {
        s["collection"] = json!({"collectedDateTime": t});
    }
    if let Some(r) = request {
        s["request"] = json!([{"reference": format!("ServiceRequest/{r}")}]);
    }
    Ok(Some(s.into()))
}
