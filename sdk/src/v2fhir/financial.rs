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
//! - "IN1[Coverage]": identifier IN1-36 (policy number), status `active`,
//!   type IN1-15 (plan type), beneficiary the patient, payor the insurer IN1-3/IN1-4
//!   (a logical reference, as people and organisations are in the standard
//!   mapping), class plan IN1-2 and group IN1-8 (IN1-9 its name), period
//!   IN1-12/IN1-13, order IN1-22, relationship IN1-17 (as subscriber-relationship
//!   codes: self, spouse, child, parent, common, other), subscriberId IN1-49,
//!   subscriber the patient when IN1-17 is self, else the insured (IN1-16 name,
//!   IN1-18 birth date, IN1-19 address, IN1-43 gender) as a RelatedPerson.

use super::patient::gender;
use super::types::{text, text_cow};
use super::{Context, MapResult};
use crate::fhir::{CodeableConcept, Coding, Coverage, CoverageClass, HumanName, Identifier, Period, Reference, RelatedPerson};
use crate::hl7::Segment;

/// Relationship codes that mean the patient: HL7 table 0063 `SEL`, and `18`, the
/// X12 / UB-04 code for self that some feeds send (their `01` is spouse).
fn is_self(code: Option<&str>) -> bool {
    matches!(code.map(str::to_ascii_uppercase).as_deref(), Some("SEL" | "SELF" | "18"))
}

/// IN1-17 (HL7 table 0063, or X12 / UB-04 codes) -> the code system R4 binds
/// Coverage.relationship to (subscriber-relationship); `other` with the sent code
/// as text when it has no equivalent.
fn subscriber_relationship(code: Option<&str>) -> Option<CodeableConcept> {
    let code = code?;
    let (fhir, display) = match code.to_ascii_uppercase().as_str() {
        "SEL" | "SELF" | "18" => ("self", "Self"),
        "SPO" | "SPS" | "01" => ("spouse", "Spouse"),
        "CHD" | "19" => ("child", "Child"),
        "DOM" | "53" => ("common", "Common Law Spouse"),
        "PAR" | "MTH" | "FTH" => ("parent", "Parent"),
        "EME" | "20" => ("other", "Other"),
        _ => ("other", "Other"),
    };
    Some(CodeableConcept {
        coding: vec![Coding {
            system: Some("http://terminology.hl7.org/CodeSystem/subscriber-relationship".into()),
            code: Some(fhir.into()),
            display: Some(display.into()),
            ..Default::default()
        }],
        text: Some(code.to_owned()),
    })
}

/// The natural key of a related person: their identifier, else their name and
/// birth date, else the segment's set id: scoped by the patient.
fn person_key(patient: &str, kind: &str, id: Option<String>, name: Option<&HumanName>, birth: Option<&str>, set_id: &str) -> Vec<String> {
    let mut key = vec![patient.to_owned(), kind.to_owned()];
    match (id, name) {
        (Some(id), _) => key.push(format!("id:{id}")),
        (None, Some(n)) => {
            key.push(format!("name:{}", n.family.as_deref().unwrap_or_default()));
            key.push(n.given.join(" "));
            key.push(birth.unwrap_or_default().to_owned());
        }
        (None, None) => key.push(format!("set:{set_id}")),
    }
    key
}

fn related_person(ctx: &Context<'_, '_>, patient: &str, key: &[String]) -> RelatedPerson {
    let parts: Vec<&str> = key.iter().map(String::as_str).collect();
    RelatedPerson {
        id: ctx.id("RelatedPerson", &ctx.source_urn(), &parts),
        meta: ctx.meta.clone(),
        patient: Reference::to("Patient", patient),
        ..Default::default()
    }
}

fn period(start: Option<String>, end: Option<String>) -> Option<Period> {
    (start.is_some() || end.is_some()).then_some(Period { start, end })
}

/// NK1 -> RelatedPerson. `None` without a patient, or when the NK1 names nobody
/// (no name, telecom or address: an empty record of kin).
pub fn map_related_person(ctx: &mut Context<'_, '_>, nk1: &Segment<'_>) -> MapResult {
    let Some(patient) = ctx.patient_id.clone() else { return Ok(None) };
    let name = ctx.name(nk1.field(2).rep(1));
    let address: Vec<_> = nk1.field(4).repetitions().filter_map(|r| ctx.address(r)).collect();
    let mut telecom: Vec<_> = nk1.field(5).repetitions().filter_map(|r| ctx.telecom(r, Some("home"))).collect();
    telecom.extend(nk1.field(6).repetitions().filter_map(|r| ctx.telecom(r, Some("work"))));
    if name.is_none() && address.is_empty() && telecom.is_empty() {
        return Ok(None);
    }
    let birth = ctx.date(text_cow(nk1.field(16).component(1)).as_deref(), "NK1-16");
    let id = nk1.field(33).repetitions().find_map(|r| text(r.component(1)));
    let set_id = text(nk1.field(1).component(1)).unwrap_or_default();
    let key = person_key(&patient, "NK1", id, name.as_ref(), birth.as_deref(), &set_id);
    let mut r = related_person(ctx, &patient, &key);
    r.identifier = nk1.field(33).repetitions().filter_map(|rep| ctx.identifier(rep)).collect();
    r.relationship = [ctx.concept_in(nk1.field(3).rep(1), "HL70063"), ctx.concept_in(nk1.field(7).rep(1), "HL70131")].into_iter().flatten().collect();
    r.name = name.into_iter().collect();
    r.telecom = telecom;
    r.address = address;
    r.gender = text_cow(nk1.field(15).component(1)).and_then(|g| gender(&g)).map(str::to_owned);
    r.birth_date = birth;
    let start = ctx.date(text_cow(nk1.field(8).component(1)).as_deref(), "NK1-8");
    let end = ctx.date(text_cow(nk1.field(9).component(1)).as_deref(), "NK1-9");
    r.period = period(start, end);
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
    let name = ctx.name(gt1.field(3).rep(1));
    let ident = gt1.field(2).repetitions().find_map(|r| ctx.identifier(r));
    if name.is_none() && ident.is_none() {
        return Ok(None);
    }
    let birth = ctx.date(text_cow(gt1.field(8).component(1)).as_deref(), "GT1-8");
    let set_id = text(gt1.field(1).component(1)).unwrap_or_default();
    let key = person_key(&patient, "GT1", ident.as_ref().and_then(|i| i.value.clone()), name.as_ref(), birth.as_deref(), &set_id);
    let mut r = related_person(ctx, &patient, &key);
    r.identifier = ident.into_iter().collect();
    r.relationship.push(CodeableConcept {
        coding: vec![Coding {
            system: Some("http://terminology.hl7.org/CodeSystem/v3-RoleCode".into()),
            code: Some("GUAR".into()),
            display: Some("guarantor".into()),
            ..Default::default()
        }],
        text: None,
    });
    r.relationship.extend(ctx.table_concept(rel, "HL70063"));
    r.name = name.into_iter().collect();
    r.address = gt1.field(5).repetitions().filter_map(|a| ctx.address(a)).collect();
    r.telecom = gt1.field(6).repetitions().filter_map(|t| ctx.telecom(t, Some("home"))).collect();
    r.telecom.extend(gt1.field(7).repetitions().filter_map(|t| ctx.telecom(t, Some("work"))));
    r.birth_date = birth;
    r.gender = text_cow(gt1.field(9).component(1)).and_then(|g| gender(&g)).map(str::to_owned);
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
    let Some(name) = ctx.name(in1.field(16).rep(1)) else { return Ok(None) };
    let birth = ctx.date(text_cow(in1.field(18).component(1)).as_deref(), "IN1-18");
    let key = person_key(&patient, "IN1-16", None, Some(&name), birth.as_deref(), "");
    let mut r = related_person(ctx, &patient, &key);
    r.relationship = ctx.table_concept(rel, "HL70063").into_iter().collect();
    r.name = vec![name];
    r.birth_date = birth;
    r.address = in1.field(19).repetitions().filter_map(|a| ctx.address(a)).collect();
    r.gender = text_cow(in1.field(43).component(1)).and_then(|g| gender(&g)).map(str::to_owned);
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
    let plan_coding = plan.as_ref().and_then(|p| p.coding.first());
    let plan_key = plan_coding.and_then(|c| c.code.clone()).unwrap_or_default();
    let company_key = company_id.as_ref().and_then(|i| i.value.clone()).or(company_name.clone()).unwrap_or_default();
    let key = [patient.as_str(), &company_key, &plan_key, policy.as_deref().unwrap_or_default()];
    let mut payor = Reference { type_: Some("Organization".into()), display: company_name, ..Default::default() };
    if payor.display.is_none() {
        payor.display = plan_coding.and_then(|c| c.display.clone().or(c.code.clone()));
    }
    payor.identifier = company_id.map(Box::new);
    let class_type = |code: &str, display: &str| CodeableConcept {
        coding: vec![Coding {
            system: Some("http://terminology.hl7.org/CodeSystem/coverage-class".into()),
            code: Some(code.into()),
            display: Some(display.into()),
            ..Default::default()
        }],
        text: None,
    };
    let mut class = Vec::new();
    if let Some(code) = plan_coding.and_then(|c| c.code.clone()) {
        class.push(CoverageClass { type_: class_type("plan", "Plan"), value: code, name: plan_coding.and_then(|c| c.display.clone()) });
    }
    if let Some(group) = text(in1.field(8).component(1)) {
        class.push(CoverageClass { type_: class_type("group", "Group"), value: group, name: text(in1.field(9).component(1)) });
    }
    let relationship = text(in1.field(17).component(1));
    let subscriber = match subscriber {
        Some(s) => Some(Reference::to("RelatedPerson", s)),
        None if is_self(relationship.as_deref()) => Some(Reference::to("Patient", &patient)),
        None => None,
    };
    let start = ctx.date(text_cow(in1.field(12).component(1)).as_deref(), "IN1-12");
    let end = ctx.date(text_cow(in1.field(13).component(1)).as_deref(), "IN1-13");
    let c = Coverage {
        id: ctx.id("Coverage", &ctx.source_urn(), &key),
        meta: ctx.meta.clone(),
        identifier: policy.map(|p| Identifier::new(None, p)).into_iter().collect(),
        status: "active".into(),
        type_: ctx.table_concept(text(in1.field(15).component(1)), "HL70086"),
        subscriber,
        subscriber_id: text(in1.field(49).component(1)),
        beneficiary: Reference::to("Patient", &patient),
        relationship: subscriber_relationship(relationship.as_deref()),
        period: period(start, end),
        payor: vec![payor],
        class,
        order: text(in1.field(22).component(1)).and_then(|o| o.parse::<u32>().ok()).filter(|o| *o > 0 && *o <= i32::MAX as u32),
        extra: Default::default(),
    };
    Ok(Some(c.into()))
}

/// Identifiers of the patient carried outside PID (the FHIR-Converter maps them the
/// same way; the IG has no IN2, GT1-as-self or DB1 map):
/// - IN2-6 Medicare number (`MC`), IN2-8 Medicaid case number (`MA`), IN2-10
///   military id (`MI`), IN2-61 patient member number (CX);
/// - GT1 when the guarantor is the patient (GT1-11 self): GT1-2 guarantor number
///   (CX), GT1-12 SSN (`SS`), GT1-19 employee id (CX);
/// - DB1 when the disabled person is the patient (DB1-2 `PT`): DB1-3 (CX).
pub fn patient_identifiers(ctx: &mut Context<'_, '_>, seg: &Segment<'_>) -> Vec<Identifier> {
    let mut out = Vec::new();
    let st = |n: usize, t: &str, system: Option<&str>| text(seg.field(n).component(1)).map(|v| Identifier::new(system.map(str::to_owned), v).with_v2_type(t));
    match seg.id() {
        "IN2" => {
            out.extend(st(6, "MC", None));
            out.extend(st(8, "MA", None));
            out.extend(st(10, "MI", None));
            out.extend(seg.field(61).repetitions().filter_map(|r| ctx.identifier(r)));
        }
        "GT1" if is_self(text(seg.field(11).component(1)).as_deref()) => {
            out.extend(seg.field(2).repetitions().filter_map(|r| ctx.identifier(r)));
            out.extend(st(12, "SS", Some("http://hl7.org/fhir/sid/us-ssn")));
            out.extend(seg.field(19).repetitions().filter_map(|r| ctx.identifier(r)));
        }
        "DB1" if text(seg.field(2).component(1)).as_deref() == Some("PT") => {
            out.extend(seg.field(3).repetitions().filter_map(|r| ctx.identifier(r)));
        }
        _ => {}
    }
    out
}
