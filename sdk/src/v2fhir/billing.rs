//! Financial transactions: FT1 -> ChargeItem, with the Procedure it bills (FT1-25)
//! and the drug it dispensed (FT1-29) as their own resources.
//!
//! The HL7 v2-to-FHIR IG (STU 1) has no FT1 map; this follows the FT1 field
//! definitions (v2.8 chapter 6) onto the R4 ChargeItem, as Microsoft's FHIR-Converter
//! does:
//! - ChargeItem: identifier FT1-2 (transaction id), status `billable` for a charge
//!   (FT1-6 `CG`, `CD`, `AJ`, `CO`; a payment, `PY`, is not a charge and is not
//!   mapped), code FT1-7, occurrence FT1-4, enteredDate FT1-5, quantity FT1-10,
//!   priceOverride FT1-11 (extended amount), costCenter FT1-13, reason FT1-19,
//!   performer FT1-20, enterer FT1-24, product FT1-29 (NDC), subject and context
//!   from PID / PV1, service -> the Procedure and MedicationDispense below.
//! - Procedure (FT1-25 procedure code): status `completed` (it is being charged),
//!   performed FT1-4, performer FT1-20.
//! - MedicationDispense (FT1-29 NDC code): status `completed`, quantity FT1-43,
//!   authorizingPrescription FT1-42 (prescription number, a logical reference),
//!   whenHandedOver FT1-4.
//!
//! Ids: from FT1-2 (scoped by the source system), else MSH-10 + FT1-1; the
//! Procedure and MedicationDispense from the charge's key and their field.

use super::types::{sub, text, text_cow};
use super::{Context, MapResult};
use crate::fhir::{Choice, Identifier, Performer, Procedure, Quantity, Reference, ToFhir};
use crate::hl7::Segment;
use serde_json::{Map, Value, json};

/// The natural key of an FT1: (system, key).
fn charge_key(ctx: &Context<'_, '_>, ft1: &Segment<'_>) -> (String, String) {
    match text(ft1.field(2).component(1)) {
        Some(t) => (ctx.source_urn(), t),
        None => (
            ctx.source_urn(),
            format!("{}/FT1/{}", ctx.message.control_id(), text(ft1.field(1).component(1)).unwrap_or_else(|| "1".into())),
        ),
    }
}

/// Whether an FT1 is a charge (FT1-6, HL7 table 0017); payments are not.
pub fn is_charge(ft1: &Segment<'_>) -> bool {
    !matches!(text(ft1.field(6).component(1)).as_deref(), Some("PY"))
}

/// FT1-25 -> the Procedure charged for. `None` without a code or a patient.
pub fn map_charged_procedure(ctx: &mut Context<'_, '_>, ft1: &Segment<'_>) -> MapResult {
    let (Some(subject), Some(code)) = (ctx.patient_ref(), ctx.concept_in(ft1.field(25).rep(1), "C4")) else { return Ok(None) };
    let (system, key) = charge_key(ctx, ft1);
    let when = text(ft1.field(4).component(1));
    let p = Procedure {
        id: ctx.id("Procedure", &system, &[&key, "FT1-25"]),
        meta: ctx.meta.clone(),
        status: "completed".into(),
        code: Some(code),
        subject,
        encounter: ctx.encounter_ref(),
        performed: ctx.datetime(when.as_deref(), "FT1-4").map(Choice::DateTime),
        performer: ft1.field(20).repetitions().filter_map(|r| ctx.practitioner(r)).map(|actor| Performer { function: None, actor }).collect(),
        ..Default::default()
    };
    Ok(Some(p.into()))
}

/// FT1-43 (CQ: quantity, units as a CWE in subcomponents) -> Quantity.
fn cq(ctx: &Context<'_, '_>, ft1: &Segment<'_>, n: usize) -> Option<Quantity> {
    let f = ft1.field(n).rep(1);
    let value = text(f.component(1))?;
    let mut q = Quantity { value: Some(crate::fhir::decimal(&value)?), ..Default::default() };
    let units = f.component(2);
    q.unit = sub(units.clone(), 2).or_else(|| sub(units.clone(), 1));
    if let Some(system) = sub(units.clone(), 3).and_then(|s| ctx.code_system(&s)) {
        q.system = Some(system);
        q.code = sub(units, 1);
    }
    Some(q)
}

/// FT1-29 -> the drug dispensed. `None` without an NDC code or a patient.
pub fn map_charged_dispense(ctx: &mut Context<'_, '_>, ft1: &Segment<'_>) -> MapResult {
    let (Some(subject), Some(drug)) = (ctx.patient_ref(), ctx.concept_in(ft1.field(29).rep(1), "NDC")) else { return Ok(None) };
    let (system, key) = charge_key(ctx, ft1);
    let mut d = Map::new();
    d.insert("resourceType".into(), json!("MedicationDispense"));
    d.insert("id".into(), json!(ctx.id("MedicationDispense", &system, &[&key, "FT1-29"])));
    d.insert("meta".into(), ctx.meta.to_fhir());
    d.insert("status".into(), json!("completed"));
    d.insert("medicationCodeableConcept".into(), drug.to_fhir());
    d.insert("subject".into(), subject.to_fhir());
    if let Some(e) = ctx.encounter_ref() {
        d.insert("context".into(), e.to_fhir());
    }
    if let Some(rx) = text(ft1.field(42).component(1)) {
        let r = Reference { type_: Some("MedicationRequest".into()), identifier: Some(Box::new(Identifier::new(None, rx))), ..Default::default() };
        d.insert("authorizingPrescription".into(), json!([r.to_fhir()]));
    }
    if let Some(q) = cq(ctx, ft1, 43) {
        d.insert("quantity".into(), q.to_fhir());
    }
    let when = text_cow(ft1.field(4).component(1)).map(|t| t.into_owned());
    if let Some(t) = ctx.datetime(when.as_deref(), "FT1-4") {
        d.insert("whenHandedOver".into(), json!(t));
    }
    Ok(Some(Value::Object(d).into()))
}

/// FT1 -> ChargeItem; `services` are the ids of what it bills (`Type/id`). `None`
/// for a payment or without a patient or a transaction code.
pub fn map_charge(ctx: &mut Context<'_, '_>, ft1: &Segment<'_>, services: &[Reference]) -> MapResult {
    if !is_charge(ft1) {
        ctx.warn("FT1 payment (FT1-6 PY): not a charge, not mapped");
        return Ok(None);
    }
    let Some(subject) = ctx.patient_ref() else {
        ctx.warn("FT1 without a patient: no ChargeItem mapped");
        return Ok(None);
    };
    let Some(code) = ctx.concept(ft1.field(7).rep(1)) else {
        ctx.warn("FT1 without a transaction code (FT1-7): no ChargeItem mapped");
        return Ok(None);
    };
    let (system, key) = charge_key(ctx, ft1);
    let mut c = Map::new();
    c.insert("resourceType".into(), json!("ChargeItem"));
    c.insert("id".into(), json!(ctx.id("ChargeItem", &system, &[&key])));
    c.insert("meta".into(), ctx.meta.to_fhir());
    if let Some(t) = text(ft1.field(2).component(1)) {
        c.insert("identifier".into(), json!([Identifier::new(Some(system), t).to_fhir()]));
    }
    c.insert("status".into(), json!("billable"));
    c.insert("code".into(), code.to_fhir());
    c.insert("subject".into(), subject.to_fhir());
    if let Some(e) = ctx.encounter_ref() {
        c.insert("context".into(), e.to_fhir());
    }
    let when = text_cow(ft1.field(4).component(1)).map(|t| t.into_owned());
    if let Some(t) = ctx.datetime(when.as_deref(), "FT1-4") {
        c.insert("occurrenceDateTime".into(), json!(t));
    }
    let performers: Vec<Value> =
        ft1.field(20).repetitions().filter_map(|r| ctx.practitioner(r)).map(|a| json!({ "actor": a.to_fhir() })).collect();
    if !performers.is_empty() {
        c.insert("performer".into(), Value::Array(performers));
    }
    if let Some(org) = text(ft1.field(13).component(2)).or_else(|| text(ft1.field(13).component(1))) {
        c.insert("costCenter".into(), json!({ "type": "Organization", "display": org }));
    }
    if let Some(n) = text(ft1.field(10).component(1)).and_then(|q| crate::fhir::decimal(&q)) {
        c.insert("quantity".into(), json!({ "value": n }));
    }
    let amount = ft1.field(11).component(1);
    if let Some(v) = sub(amount.clone(), 1).and_then(|v| crate::fhir::decimal(&v)) {
        let mut money = json!({ "value": v });
        if let Some(cur) = sub(amount, 2) {
            money["currency"] = json!(cur);
        }
        c.insert("priceOverride".into(), money);
    }
    if let Some(e) = ctx.practitioner(ft1.field(24).rep(1)) {
        c.insert("enterer".into(), e.to_fhir());
    }
    let entered = text_cow(ft1.field(5).component(1)).map(|t| t.into_owned());
    if let Some(t) = ctx.datetime(entered.as_deref(), "FT1-5") {
        c.insert("enteredDate".into(), json!(t));
    }
    let reasons: Vec<Value> = ft1.field(19).repetitions().filter_map(|r| ctx.concept(r)).map(|c| c.to_fhir()).collect();
    if !reasons.is_empty() {
        c.insert("reason".into(), Value::Array(reasons));
    }
    if !services.is_empty() {
        c.insert("service".into(), Value::Array(services.iter().map(ToFhir::to_fhir).collect()));
    }
    if let Some(p) = ctx.concept_in(ft1.field(29).rep(1), "NDC") {
        c.insert("productCodeableConcept".into(), p.to_fhir());
    }
    Ok(Some(Value::Object(c).into()))
}
