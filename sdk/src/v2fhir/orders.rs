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
//! - "OBR[Specimen]" (v2.3-2.4, no SPM): type OBR-15.1 (SPS source), body site
//!   OBR-15.4, collected OBR-7.
//!
//! People are logical references (identifier and display), as everywhere in the
//! standard mapping: no Practitioner resources are made.

use super::types::{sub, text, text_cow};
use super::{Context, MapResult, Order};
use crate::fhir::{Choice, CodeableConcept, Coding, Identifier, Reference, ServiceRequest, Specimen, SpecimenCollection};
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
/// or without an OBR.
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
    let Some(obr) = obr else { return Ok(None) };
    // A result (ORU) reports on an order that is being or has been done.
    let default = if ctx.message.message_code() == "ORU" { "completed" } else { "active" };
    let mut sr = ServiceRequest {
        id: ctx.id("ServiceRequest", &order.system, &[&order.key]),
        meta: ctx.meta.clone(),
        status: request_status(orc, default),
        intent: "order".into(),
        code: ctx.concept(obr.field(4).rep(1)),
        subject,
        encounter: ctx.encounter_ref(),
        ..Default::default()
    };
    for (n, t) in [(2, "PLAC"), (3, "FILL")] {
        let from_orc = orc.and_then(|s| ctx.ei_identifier(s.field(n).rep(1)));
        if let Some(id) = from_orc.or_else(|| ctx.ei_identifier(obr.field(n).rep(1))) {
            sr.identifier.push(id.with_v2_type(t));
        }
    }
    let authored = orc.and_then(|o| text_cow(o.field(9).component(1)).map(|t| t.into_owned()));
    sr.authored_on = ctx.datetime(authored.as_deref(), "ORC-9");
    sr.requester = orc.and_then(|o| ctx.practitioner(o.field(12).rep(1))).or_else(|| ctx.practitioner(obr.field(16).rep(1)));
    sr.reason_code = obr.field(31).repetitions().filter_map(|r| ctx.concept(r)).collect();
    let priority = text(obr.field(27).component(6)).or_else(|| ctx.message.segment("TQ1").and_then(|tq1| text(tq1.field(9).component(1))));
    sr.priority = priority.as_deref().and_then(priority_code).map(str::to_owned);
    let occurrence = text_cow(obr.field(7).component(1)).map(|t| t.into_owned());
    sr.occurrence = ctx.datetime(occurrence.as_deref(), "OBR-7").map(Choice::DateTime);
    Ok(Some(sr.into()))
}

/// HL7 priority codes (table 0485 / TQ1-9, OBR-27.6) to ServiceRequest.priority.
fn priority_code(p: &str) -> Option<&'static str> {
    match p {
        "S" => Some("stat"),
        "A" => Some("asap"),
        "T" => Some("urgent"),
        "R" => Some("routine"),
        // (P preop, C callback, PRN as needed: a when, not a priority)
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
    let mut s = Specimen { id: ctx.id("Specimen", &system, &[&key]), meta: ctx.meta.clone(), subject: ctx.patient_ref(), ..Default::default() };
    for (c, t) in [(placer, "PGN"), (filler, "FGN")] {
        if let Some(v) = text(c.clone()) {
            let system = super::types::sub(c, 2).and_then(|ns| ctx.mapper.identifier_system(&ns, "", ""));
            s.identifier.push(Identifier::new(system, v).with_v2_type(t));
        }
    }
    s.type_ = ctx.concept_in(spm.field(4).rep(1), "HL70487");
    let collected = text_cow(spm.field(17).component(1)).map(|t| t.into_owned());
    s.collection = Some(SpecimenCollection {
        collected: ctx.datetime(collected.as_deref(), "SPM-17").map(Choice::DateTime),
        method: ctx.concept_in(spm.field(7).rep(1), "HL70488"),
        body_site: ctx.concept(spm.field(8).rep(1)),
    });
    let received = text_cow(spm.field(18).component(1)).map(|t| t.into_owned());
    s.received_time = ctx.datetime(received.as_deref(), "SPM-18");
    s.status = match text(spm.field(20).component(1)).as_deref() {
        Some("Y") => Some("available".into()),
        Some("N") => Some("unavailable".into()),
        _ => None,
    };
    s.request = request.map(|r| Reference::to("ServiceRequest", r)).into_iter().collect();
    Ok(Some(s.into()))
}

/// OBR-15 (specimen source, v2.3-2.4; withdrawn in v2.7) -> Specimen, when the
/// order has no SPM. `None` when OBR-15 is empty.
pub fn map_obr_specimen(ctx: &mut Context<'_, '_>, obr: &Segment<'_>, order: &Order, request: Option<&str>) -> MapResult {
    // OBR-15 is SPS: its first component (the source, a CWE in subcomponents) is the
    // type; the fourth (body site, likewise) the collection's body site.
    let sps = obr.field(15).rep(1);
    let cwe = |c: crate::hl7::Component<'_>, default: &str| -> Option<CodeableConcept> {
        let code = sub(c.clone(), 1)?;
        let system = sub(c.clone(), 3).map_or_else(|| ctx.code_system(default), |s| ctx.code_system(&s));
        Some(CodeableConcept { coding: vec![Coding { system, code: Some(code), display: sub(c, 2), ..Default::default() }], text: None })
    };
    let Some(kind) = cwe(sps.component(1), "HL70070") else { return Ok(None) };
    let body_site = cwe(sps.component(4), "HL70163");
    let collected = text_cow(obr.field(7).component(1)).map(|t| t.into_owned());
    let s = Specimen {
        id: ctx.id("Specimen", &order.system, &[&order.key, "OBR-15"]),
        meta: ctx.meta.clone(),
        type_: Some(kind),
        subject: ctx.patient_ref(),
        collection: Some(SpecimenCollection { collected: ctx.datetime(collected.as_deref(), "OBR-7").map(Choice::DateTime), body_site, ..Default::default() }),
        request: request.map(|r| Reference::to("ServiceRequest", r)).into_iter().collect(),
        ..Default::default()
    };
    Ok(Some(s.into()))
}
