//! The people around a patient and who pays: NK1 -> RelatedPerson, GT1 ->
//! RelatedPerson (guarantor), IN1 (+ IN2) -> Coverage (+ the insured as a
//! RelatedPerson when it is not the patient).
//!
//! Maps used (HL7 v2-to-FHIR IG, STU 1):
//! - "NK1[RelatedPerson]": name NK1-2, address NK1-4, telecom NK1-5 (home) / NK1-6
//!   (work), relationship NK1-3 (table 0063) and NK1-7 (contact role, table 0131),
//!   period NK1-8/NK1-9, gender NK1-15, birthDate NK1-16, identifier NK1-33. (NK1
//!   also stays a `Patient.contact`, as "NK1[Patient]" maps it.)
//! - "GT1[RelatedPerson]": identifier GT1-2, name GT1-3, address GT1-5, telecom
//!   GT1-6 / GT1-7, birthDate GT1-8, gender GT1-9, relationship GT1-11 (table 0063)
//!   plus `GUAR`; a guarantor who is the patient (`SEL`) is not a RelatedPerson.
//! - "IN1[Coverage]": identifier IN1-36 (policy number, `PLN`), status `active`,
//!   type IN1-15 (plan type), beneficiary the patient, payor the insurer IN1-3/IN1-4
//!   (a logical reference, as people and organisations are in the standard
//!   mapping), class plan IN1-2 and group IN1-8 (IN1-9 its name), period
//!   IN1-12/IN1-13, order IN1-22, relationship IN1-17, subscriberId IN1-49,
//!   subscriber the patient when IN1-17 is self, else the insured (IN1-16 name,
//!   IN1-18 birth date, IN1-19 address, IN1-43 gender) as a RelatedPerson.

use serde_json::{Value, json};

use super::patient::gender;
use super::types::{text, text_cow};
use super::{Context, MapResult};
use crate::fhir::{Identifier, Reference, ToFhir};
use crate::hl7::Segment;

/// Relationship codes that mean the patient: HL7 table 0063 `SEL`, and `18`, the
/// X12 / UB-04 code for self that some feeds send (their `01` is spouse).
fn is_self(code: Option<&str>) -> bool {
    matches!(code.map(str::to_ascii_uppercase).as_deref(), Some("SEL" | "SELF" | "18"))
}

/// The natural key of a related person: their identifier, else their name and
/// birth date, else the segment's set id: scoped by the patient.
fn person_key(patient: &str, kind: &str, id: Option<String>, name: Option<&Value>, birth: Option<&str>, set_id: &str) -> Vec<String> {
    let mut key = vec![patient.to_owned(), kind.to_owned()];
    match (id, name) {
        (Some(id), _) => key.push(format!("id:{id}")),
        (None, Some(n)) => {
            key.push(format!("name:{}", n["family"].as_str().unwrap_or_default()));
            key.push(n["given"].as_array().map(|g| g.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" ")).unwrap_or_default());
            key.push(birth.unwrap_or_default().to_owned());
        }
        (None, None) => key.push(format!("set:{set_id}")),
    }
    key
}

fn related_person(ctx: &Context<'_, '_>, patient: &str, key: &[String]) -> Value {
    let parts: Vec<&str> = key.iter().map(String::as_str).collect();
    json!({
        "resourceType": "RelatedPerson",
        "id": ctx.id("RelatedPerson", &ctx.source_urn(), &parts),
        "meta": ctx.meta.to_fhir(),
        "patient": Reference::to("Patient", patient).to_fhir(),
    })
}

fn set(r: &mut Value, key: &str, v: Option<Value>) {
    if let Some(v) = v.filter(|v| !v.is_null() && v.as_array().is_none_or(|a| !a.is_empty())) {
        r[key] = v;
    }
}

/// NK1 -> RelatedPerson. `None` without a patient, or when the NK1 names nobody
/// (no name, telecom or address: an empty record of kin).
pub fn map_related_person(ctx: &mut Context<'_, '_>, nk1: &Segment<'_>) -> MapResult {
    let Some(patient) = ctx.patient_id.clone() else { return Ok(None) };
    let name = ctx.name(nk1.field(2).rep(1)).map(|n| n.to_fhir());
    let address: Vec<Value> = nk1.field(4).repetitions().filter_map(|r| ctx.address(r)).map(|a| a.to_fhir()).collect();
    let mut telecom: Vec<Value> = nk1.field(5).repetitions().filter_map(|r| ctx.telecom(r, Some("home"))).map(|t| t.to_fhir()).collect();
    telecom.extend(nk1.field(6).repetitions().filter_map(|r| ctx.telecom(r, Some("work"))).map(|t| t.to_fhir()));
    if name.is_none() && address.is_empty() && telecom.is_empty() {
        return Ok(None);
    }
    let birth = ctx.date(text_cow(nk1.field(16).component(1)).as_deref(), "NK1-16");
    let id = nk1.field(33).repetitions().find_map(|r| text(r.component(1)));
    let set_id = text(nk1.field(1).component(1)).unwrap_or_default();
    let key = person_key(&patient, "NK1", id, name.as_ref(), birth.as_deref(), &set_id);
    let mut r = related_person(ctx, &patient, &key);
    let identifiers: Vec<Value> = nk1.field(33).repetitions().filter_map(|rep| ctx.identifier(rep)).map(|i| i.to_fhir()).collect();
    set(&mut r, "identifier", Some(Value::Array(identifiers)));
    let relationship: Vec<Value> = [ctx.concept_in(nk1.field(3).rep(1), "HL70063"), ctx.concept_in(nk1.field(7).rep(1), "HL70131")]
        .into_iter()
        .flatten()
        .map(|c| c.to_fhir())
        .collect();
    set(&mut r, "relationship", Some(Value::Array(relationship)));
    set(&mut r, "name", name.map(|n| json!([n])));
    set(&mut r, "telecom", Some(Value::Array(telecom)));
    set(&mut r, "address", Some(Value::Array(address)));
    set(&mut r, "gender", text_cow(nk1.field(15).component(1)).and_then(|g| gender(&g)).map(Value::from));
    set(&mut r, "birthDate", birth.map(Value::from));
    let start = ctx.date(text_cow(nk1.field(8).component(1)).as_deref(), "NK1-8");
    let end = ctx.date(text_cow(nk1.field(9).component(1)).as_deref(), "NK1-9");
    if start.is_some() || end.is_some() {
        r["period"] = crate::fhir::Period { start, end }.to_fhir();
    }
    Ok(Some(r.into()))
}

/// GT1 -> RelatedPerson (the guarantor). `None` without a patient, when the
/// guarantor is the patient, or when GT1 names nobody.
pub fn map_guarantor(ctx: &mut Context<'_, '_>, gt1: &Segment<'_>) -> MapResult {
    let Some(patient) = ctx.patient_id.clone() else { return Ok(None) };
    let rel = text(gt1.field(11).component(1));
    if is_self(rel.as_deref()) {
        return Ok(None);
    }
    let name = ctx.name(gt1.field(3).rep(1)).map(|n| n.to_fhir());
    let ident = gt1.field(2).repetitions().find_map(|r| ctx.identifier(r));
    if name.is_none() && ident.is_none() {
        return Ok(None);
    }
    let birth = ctx.date(text_cow(gt1.field(8).component(1)).as_deref(), "GT1-8");
    let set_id = text(gt1.field(1).component(1)).unwrap_or_default();
    let key = person_key(&patient, "GT1", ident.as_ref().and_then(|i| i.value.clone()), name.as_ref(), birth.as_deref(), &set_id);
    let mut r = related_person(ctx, &patient, &key);
    set(&mut r, "identifier", ident.map(|i| json!([i.to_fhir()])));
    let mut relationship = vec![json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": "GUAR", "display": "guarantor"}]})];
    relationship.extend(ctx.table_concept(rel, "HL70063").map(|c| c.to_fhir()));
    r["relationship"] = Value::Array(relationship);
    set(&mut r, "name", name.map(|n| json!([n])));
    let address: Vec<Value> = gt1.field(5).repetitions().filter_map(|a| ctx.address(a)).map(|a| a.to_fhir()).collect();
    set(&mut r, "address", Some(Value::Array(address)));
    let mut telecom: Vec<Value> = gt1.field(6).repetitions().filter_map(|t| ctx.telecom(t, Some("home"))).map(|t| t.to_fhir()).collect();
    telecom.extend(gt1.field(7).repetitions().filter_map(|t| ctx.telecom(t, Some("work"))).map(|t| t.to_fhir()));
    set(&mut r, "telecom", Some(Value::Array(telecom)));
    set(&mut r, "birthDate", birth.map(Value::from));
    set(&mut r, "gender", text_cow(gt1.field(9).component(1)).and_then(|g| gender(&g)).map(Value::from));
    Ok(Some(r.into()))
}

/// The insured of an IN1 as a RelatedPerson (when IN1-17 says it is not the
/// patient and IN1-16 names them).
pub fn map_insured(ctx: &mut Context<'_, '_>, in1: &Segment<'_>) -> MapResult {
    let Some(patient) = ctx.patient_id.clone() else { return Ok(None) };
    let rel = text(in1.field(17).component(1));
    if rel.is_none() || is_self(rel.as_deref()) {
        return Ok(None);
    }
    let Some(name) = ctx.name(in1.field(16).rep(1)).map(|n| n.to_fhir()) else { return Ok(None) };
    let birth = ctx.date(text_cow(in1.field(18).component(1)).as_deref(), "IN1-18");
    let key = person_key(&patient, "IN1-16", None, Some(&name), birth.as_deref(), "");
    let mut r = related_person(ctx, &patient, &key);
    set(&mut r, "relationship", ctx.table_concept(rel, "HL70063").map(|c| json!([c.to_fhir()])));
    r["name"] = json!([name]);
    set(&mut r, "birthDate", birth.map(Value::from));
    let address: Vec<Value> = in1.field(19).repetitions().filter_map(|a| ctx.address(a)).map(|a| a.to_fhir()).collect();
    set(&mut r, "address", Some(Value::Array(address)));
    set(&mut r, "gender", text_cow(in1.field(43).component(1)).and_then(|g| gender(&g)).map(Value::from));
    Ok(Some(r.into()))
}

/// IN1 (+ IN2) -> Coverage. `subscriber` is the insured's RelatedPerson id, if one
/// was made. `None` without a patient or an insurer.
pub fn map_coverage(ctx: &mut Context<'_, '_>, in1: &Segment<'_>, subscriber: Option<&str>) -> MapResult {
    let Some(patient) = ctx.patient_id.clone() else { return Ok(None) };
    let company_id = in1.field(3).repetitions().find_map(|r| ctx.identifier(r));
    let company_name = text(in1.field(4).component(1));
    let plan = ctx.concept(in1.field(2).rep(1));
    if company_id.is_none() && company_name.is_none() && plan.is_none() {
        ctx.warn("IN1 without an insurer (IN1-3, IN1-4) or plan (IN1-2): no Coverage mapped");
        return Ok(None);
    }
    let policy = text(in1.field(36).component(1));
    let plan_key = plan.as_ref().and_then(|p| p.coding.first().and_then(|c| c.code.clone())).unwrap_or_default();
    let company_key = company_id.as_ref().and_then(|i| i.value.clone()).or(company_name.clone()).unwrap_or_default();
    let key = [patient.as_str(), &company_key, &plan_key, policy.as_deref().unwrap_or_default()];
    let mut payor = Reference { type_: Some("Organization".into()), display: company_name.clone(), ..Default::default() };
    if let Some(i) = company_id.clone() {
        payor.identifier = Some(Box::new(i));
    }
    if payor.display.is_none() {
        payor.display = plan.as_ref().and_then(|p| p.coding.first().and_then(|c| c.display.clone().or(c.code.clone())));
    }
    let mut c = json!({
        "resourceType": "Coverage",
        "id": ctx.id("Coverage", &ctx.source_urn(), &key),
        "meta": ctx.meta.to_fhir(),
        "status": "active",
        "beneficiary": Reference::to("Patient", &patient).to_fhir(),
        "payor": [payor.to_fhir()],
    });
    if let Some(p) = policy {
        c["identifier"] = json!([Identifier::new(None, p).with_v2_type("PLN").to_fhir()]);
    }
    set(&mut c, "type", ctx.table_concept(text(in1.field(15).component(1)), "HL70086").map(|t| t.to_fhir()));
    let mut class = Vec::new();
    let class_type = |code: &str, display: &str| json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/coverage-class", "code": code, "display": display}]});
    if let Some(code) = plan.as_ref().and_then(|p| p.coding.first().and_then(|c| c.code.clone())) {
        let mut v = json!({"type": class_type("plan", "Plan"), "value": code});
        set(&mut v, "name", plan.as_ref().and_then(|p| p.coding.first().and_then(|c| c.display.clone())).map(Value::from));
        class.push(v);
    }
    if let Some(group) = text(in1.field(8).component(1)) {
        let mut v = json!({"type": class_type("group", "Group"), "value": group});
        set(&mut v, "name", text(in1.field(9).component(1)).map(Value::from));
        class.push(v);
    }
    set(&mut c, "class", Some(Value::Array(class)));
    let start = ctx.date(text_cow(in1.field(12).component(1)).as_deref(), "IN1-12");
    let end = ctx.date(text_cow(in1.field(13).component(1)).as_deref(), "IN1-13");
    if start.is_some() || end.is_some() {
        c["period"] = crate::fhir::Period { start, end }.to_fhir();
    }
    set(&mut c, "order", text(in1.field(22).component(1)).and_then(|o| o.parse::<u32>().ok()).filter(|o| *o > 0).map(Value::from));
    set(&mut c, "relationship", ctx.table_concept(text(in1.field(17).component(1)), "HL70063").map(|r| r.to_fhir()));
    set(&mut c, "subscriberId", text(in1.field(49).component(1)).map(Value::from));
    if let Some(s) = subscriber {
        c["subscriber"] = Reference::to("RelatedPerson", s).to_fhir();
    } else if is_self(text(in1.field(17).component(1)).as_deref()) {
        c["subscriber"] = Reference::to("Patient", &patient).to_fhir();
    }
    Ok(Some(c.into()))
}
