//! Orders and specimens: ORC/OBR -> ServiceRequest, SPM (and OBR-15 before v2.5)
//! -> Specimen.
//!
//! Maps used (HL7 v2-to-FHIR IG, STU 1):
//! - "OBR[ServiceRequest]" and "ORC[ServiceRequest]": identifiers PLAC / FILL from
//!   ORC-2/OBR-2 and ORC-3/OBR-3, code OBR-4, status ORC-5 (else ORC-1), intent
//!   `order`, authoredOn ORC-9, requester ORC-12 (else OBR-16), reasonCode OBR-31,
//!   priority TQ1-9 / OBR-27.6, subject and encounter from PID / PV1, basedOn the
//!   parent order ORC-8 (a logical reference by identifier).
//! - "SPM[Specimen]": identifiers SPM-2.1 (PGN) / SPM-2.2 (FGN), type SPM-4,
//!   collection method SPM-7 and body site SPM-8, collectedDateTime SPM-17.1,
//!   receivedTime SPM-18, status from SPM-20 (availability), request -> the order,
//!   parent SPM-3 (a logical reference by identifier).
//! - "OBR[Specimen]" (one per OBR with specimen fields, besides any SPM): type
//!   OBR-15.1 (SPS source), body site OBR-15.4, collected OBR-7 (to OBR-8),
//!   quantity OBR-9, collector OBR-10, receivedTime OBR-14.
//!
//! People are logical references (identifier and display), as everywhere in the
//! standard mapping: no Practitioner resources are made.

use super::types::{sub, text, text_cow};
use super::{Context, MapResult, Order};
use crate::fhir::{Choice, CodeableConcept, Coding, Identifier, Period, Quantity, Reference, ServiceRequest, Specimen, SpecimenCollection};
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

/// ORC + OBR -> ServiceRequest; an ORC alone (VXU, whose order has no OBR) gives a
/// ServiceRequest without a code. `None` without a patient (`subject` is required)
/// or without either segment.
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
    if obr.is_none() && orc.is_none() {
        return Ok(None);
    }
    // A result (ORU) reports on an order that is being or has been done, as does
    // an immunization record (VXU).
    let default = if matches!(ctx.message.message_code(), "ORU" | "VXU") { "completed" } else { "active" };
    let mut sr = ServiceRequest {
        id: ctx.id("ServiceRequest", &order.system, &[&order.key]),
        meta: ctx.meta.clone(),
        status: request_status(orc, default),
        intent: "order".into(),
        code: obr.and_then(|obr| ctx.concept(obr.field(4).rep(1))),
        subject,
        encounter: ctx.encounter_ref(),
        ..Default::default()
    };
    for (n, t) in [(2, "PLAC"), (3, "FILL")] {
        let from_orc = orc.and_then(|s| ctx.ei_identifier(s.field(n).rep(1)));
        if let Some(id) = from_orc.or_else(|| obr.and_then(|obr| ctx.ei_identifier(obr.field(n).rep(1)))) {
            sr.identifier.push(id.with_v2_type(t));
        }
    }
    let authored = orc.and_then(|o| text_cow(o.field(9).component(1)).map(|t| t.into_owned()));
    sr.authored_on = ctx.datetime(authored.as_deref(), "ORC-9");
    sr.requester = orc.and_then(|o| ctx.practitioner(o.field(12).rep(1))).or_else(|| obr.and_then(|obr| ctx.practitioner(obr.field(16).rep(1))));
    // ORC-8 parent order (EIP: placer, filler) -> basedOn, a logical reference.
    if let Some(parent) = orc.and_then(|o| eip(ctx, o.field(8).component(1))) {
        sr.based_on.push(Reference { type_: Some("ServiceRequest".into()), identifier: Some(Box::new(parent.with_v2_type("PLAC"))), ..Default::default() });
    }
    let Some(obr) = obr else { return Ok(Some(sr.into())) };
    sr.reason_code = obr.field(31).repetitions().filter_map(|r| ctx.concept(r)).collect();
    let priority = text(obr.field(27).component(6)).or_else(|| ctx.message.segment("TQ1").and_then(|tq1| text(tq1.field(9).component(1))));
    sr.priority = priority.as_deref().and_then(priority_code).map(str::to_owned);
    let occurrence = text_cow(obr.field(7).component(1)).map(|t| t.into_owned());
    sr.occurrence = ctx.datetime(occurrence.as_deref(), "OBR-7").map(Choice::DateTime);
    Ok(Some(sr.into()))
}

/// One half of an EIP (placer or filler: an EI in subcomponents) -> Identifier.
fn eip(ctx: &Context<'_, '_>, c: crate::hl7::Component<'_>) -> Option<Identifier> {
    let value = sub(c.clone(), 1)?;
    let part = |n| sub(c.clone(), n).unwrap_or_default();
    let system = ctx.mapper.identifier_system(&part(2), &part(3), &part(4));
    Some(Identifier::new(system, value))
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
        ..Default::default()
    });
    let received = text_cow(spm.field(18).component(1)).map(|t| t.into_owned());
    s.received_time = ctx.datetime(received.as_deref(), "SPM-18");
    s.status = match text(spm.field(20).component(1)).as_deref() {
        Some("Y") => Some("available".into()),
        Some("N") => Some("unavailable".into()),
        _ => None,
    };
    s.request = request.map(|r| Reference::to("ServiceRequest", r)).into_iter().collect();
    // SPM-3 parent specimen id (EIP: placer, filler) -> parent, a logical reference.
    if let Some(parent) = eip(ctx, spm.field(3).component(1)) {
        s.parent.push(Reference { type_: Some("Specimen".into()), identifier: Some(Box::new(parent.with_v2_type("PGN"))), ..Default::default() });
    }
    Ok(Some(s.into()))
}

/// The OBR's specimen fields -> Specimen ("OBR[Specimen]": one per OBR, besides
/// any SPM): type OBR-15.1 (specimen source, v2.3-2.4; withdrawn in v2.7), body
/// site OBR-15.4, collected OBR-7 (a period to OBR-8 when valued), quantity OBR-9,
/// collector OBR-10, receivedTime OBR-14. `None` when none of them is valued.
pub fn map_obr_specimen(ctx: &mut Context<'_, '_>, obr: &Segment<'_>, order: &Order, request: Option<&str>) -> MapResult {
    // OBR-15 is SPS: its first component (the source, a CWE in subcomponents) is the
    // type; the fourth (body site, likewise) the collection's body site.
    let sps = obr.field(15).rep(1);
    let cwe = |c: crate::hl7::Component<'_>, default: &str| -> Option<CodeableConcept> {
        let code = sub(c.clone(), 1)?;
        let system = sub(c.clone(), 3).map_or_else(|| ctx.code_system(default), |s| ctx.code_system(&s));
        Some(CodeableConcept { coding: vec![Coding { system, code: Some(code), display: sub(c, 2), ..Default::default() }], text: None })
    };
    let kind = cwe(sps.component(1), "HL70070");
    let body_site = cwe(sps.component(4), "HL70163");
    let raw = |n: usize| text_cow(obr.field(n).component(1)).map(|t| t.into_owned());
    let start = ctx.datetime(raw(7).as_deref(), "OBR-7");
    let end = ctx.datetime(raw(8).as_deref(), "OBR-8");
    let collected = match (start, end) {
        (Some(s), Some(e)) => Some(Choice::Period(Period { start: Some(s), end: Some(e) })),
        (Some(s), None) => Some(Choice::DateTime(s)),
        _ => None,
    };
    let quantity = text(obr.field(9).component(1)).and_then(|v| {
        let unit = sub(obr.field(9).component(2), 1);
        Some(Quantity { value: Some(crate::fhir::decimal(&v)?), unit, ..Default::default() })
    });
    let collector = ctx.practitioner(obr.field(10).rep(1));
    let received = ctx.datetime(raw(14).as_deref(), "OBR-14");
    if kind.is_none() && body_site.is_none() && collected.is_none() && quantity.is_none() && collector.is_none() && received.is_none() {
        return Ok(None);
    }
    let s = Specimen {
        id: ctx.id("Specimen", &order.system, &[&order.key, "OBR-15"]),
        meta: ctx.meta.clone(),
        type_: kind,
        subject: ctx.patient_ref(),
        collection: Some(SpecimenCollection { collected, body_site, quantity, collector, ..Default::default() }),
        received_time: received,
        request: request.map(|r| Reference::to("ServiceRequest", r)).into_iter().collect(),
        ..Default::default()
    };
    Ok(Some(s.into()))
}

/// RF1 (referral, in ADT and REF messages) -> ServiceRequest. The HL7 v2-to-FHIR
/// IG (STU 1) has no RF1 map; after the segment definition (v2.8 chapter 11):
/// category SNOMED 3457005 "Patient referral", status RF1-1 (table 0283: A
/// accepted `active`, P pending `draft`, R rejected `revoked`, E expired
/// `completed`; else `unknown`), priority RF1-2 (table 0280: S stat, A asap, R
/// routine), identifiers RF1-6 (originating) and RF1-11 (external), authoredOn
/// RF1-9 (process date), occurrencePeriod RF1-7 / RF1-8 (effective, expiration),
/// reasonCode RF1-10 (with RF1-14's text), orderDetail RF1-3 (referral type).
/// Keyed by RF1-6, else RF1-11, else the patient and RF1-9.
pub fn map_referral(ctx: &mut Context<'_, '_>, rf1: &Segment<'_>) -> MapResult {
    let (Some(pid), Some(subject)) = (ctx.patient_id.clone(), ctx.patient_ref()) else { return Ok(None) };
    let ids: Vec<Identifier> = [6, 11].into_iter().filter_map(|n| ctx.ei_identifier(rf1.field(n).rep(1))).collect();
    let (system, key) = match ids.first() {
        Some(i) => (i.system.clone().unwrap_or_else(|| ctx.source_urn()), i.value.clone().unwrap_or_default()),
        None => (ctx.source_urn(), format!("{pid}/RF1/{}", text(rf1.field(9).component(1)).unwrap_or_default())),
    };
    let status = match text(rf1.field(1).component(1)).as_deref() {
        Some("A") => "active",
        Some("P") => "draft",
        Some("R") => "revoked",
        Some("E") => "completed",
        _ => "unknown",
    };
    let raw = |n: usize| text(rf1.field(n).component(1));
    let mut sr = ServiceRequest {
        id: ctx.id("ServiceRequest", &system, &[&key, "RF1"]),
        meta: ctx.meta.clone(),
        identifier: ids,
        status: status.into(),
        intent: "order".into(),
        subject,
        encounter: ctx.encounter_ref(),
        ..Default::default()
    };
    sr.priority = raw(2).as_deref().and_then(priority_code).map(str::to_owned);
    sr.authored_on = ctx.datetime(raw(9).as_deref(), "RF1-9");
    let start = ctx.datetime(raw(7).as_deref(), "RF1-7");
    let end = ctx.datetime(raw(8).as_deref(), "RF1-8");
    if start.is_some() || end.is_some() {
        sr.occurrence = Some(Choice::Period(Period { start, end }));
    }
    let mut reason = ctx.concept(rf1.field(10).rep(1));
    if let Some(t) = raw(14) {
        match reason.as_mut() {
            Some(r) => r.text = Some(t),
            None => reason = Some(CodeableConcept::text(t)),
        }
    }
    sr.reason_code = reason.into_iter().collect();
    let category = CodeableConcept {
        coding: vec![Coding { system: Some("http://snomed.info/sct".into()), code: Some("3457005".into()), display: Some("Patient referral".into()), ..Default::default() }],
        text: None,
    };
    sr.category.push(category);
    sr.order_detail.extend(ctx.concept_in(rf1.field(3).rep(1), "HL70281"));
    Ok(Some(sr.into()))
}
