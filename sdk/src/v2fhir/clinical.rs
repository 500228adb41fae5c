//! AL1 / IAM -> AllergyIntolerance, DG1 -> Condition, PR1 -> Procedure.

use super::types::{text, text_cow};
use super::{Context, MapResult};
use crate::adapter::AdapterError;
use crate::fhir::{
    AllergyIntolerance, AllergyReaction, Choice, CodeableConcept, Condition, Performer, Procedure,
    Reference,
};
use crate::hl7::Segment;

fn patient(ctx: &Context<'_, '_>, seg: &str) -> Result<(String, Reference), AdapterError> {
    match (&ctx.patient_id, ctx.patient_ref()) {
        (Some(id), Some(r)) => Ok((id.clone(), r)),
        _ => Err(AdapterError::invalid(
            format!("{seg} without a patient"),
            Some("PID"),
        )),
    }
}

/// A code's key text: CWE-1 (with its system name), else CWE-2.
fn code_key(seg: &Segment<'_>, n: usize) -> String {
    let c = seg.field(n).rep(1);
    match text_cow(c.component(1)) {
        Some(code) => [&text_cow(c.component(3)).unwrap_or_default(), "|", &code].concat(),
        None => text(c.component(2)).unwrap_or_default(),
    }
}

/// The standard AL1 map: id from (patient, allergen AL1-3).
pub fn map_allergy(ctx: &mut Context<'_, '_>, al1: &Segment<'_>) -> MapResult {
    allergy(ctx, al1, 6).map(|a| a.map(Into::into))
}

fn verification(code: &str, display: &str) -> CodeableConcept {
    CodeableConcept::code("http://terminology.hl7.org/CodeSystem/allergyintolerance-verification", code, Some(display))
}

/// IAM (v2.4+, "IAM[AllergyIntolerance]") -> AllergyIntolerance, keyed like AL1 by
/// (patient, allergen), so an IAM updates the record an earlier AL1 of that
/// allergen made. IAM-2
/// to IAM-5 as AL1's fields; identifier IAM-7, onset IAM-11, recordedDate IAM-13;
/// IAM-17 clinical status (table 0438: C confirmed, I inactive, D/P/S/U
/// unconfirmed, E erroneous) and the action IAM-6 `D` (delete) set the clinical and
/// verification status (an entry in error has no clinical status, as FHIR's ait-2
/// requires).
pub fn map_allergy_iam(ctx: &mut Context<'_, '_>, iam: &Segment<'_>) -> MapResult {
    let Some(mut a) = allergy(ctx, iam, 11)? else { return Ok(None) };
    a.identifier.extend(ctx.ei_identifier(iam.field(7).rep(1)));
    a.recorded_date = ctx.datetime(text_cow(iam.field(13).component(1)).as_deref(), "IAM-13");
    let status = text(iam.field(17).component(1));
    let deleted = text(iam.field(6).component(1)).as_deref() == Some("D");
    match (deleted, status.as_deref()) {
        (true, _) | (_, Some("E")) => {
            a.clinical_status = None;
            a.verification_status = Some(verification("entered-in-error", "Entered in Error"));
        }
        (_, Some("C")) => a.verification_status = Some(verification("confirmed", "Confirmed")),
        (_, Some("I")) => {
            a.verification_status = Some(verification("confirmed", "Confirmed"));
            a.clinical_status = Some(CodeableConcept::code("http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "inactive", Some("Inactive")));
        }
        (_, Some("D" | "P" | "S" | "U")) => a.verification_status = Some(verification("unconfirmed", "Unconfirmed")),
        _ => {}
    }
    Ok(Some(a.into()))
}

/// AL1 / IAM fields 2-5 (type, allergen, severity, reaction) and the onset in
/// field `onset`.
fn allergy(ctx: &mut Context<'_, '_>, al1: &Segment<'_>, onset: usize) -> Result<Option<AllergyIntolerance>, AdapterError> {
    let what = al1.id().to_owned();
    let (pid, patient) = patient(ctx, &what)?;
    let Some(code) = ctx.concept(al1.field(3).rep(1)) else {
        return Err(AdapterError::invalid(
            "allergen code/description is empty",
            Some(&format!("{what}-3")),
        ));
    };
    let category = match text_cow(al1.field(2).component(1)).as_deref() {
        Some("DA" | "MA") => Some("medication"),
        Some("FA") => Some("food"),
        Some("EA" | "AA" | "PA" | "LA") => Some("environment"),
        _ => None,
    };
    let severity = text(al1.field(4).component(1));
    let criticality = match severity.as_deref() {
        Some("SV") => Some("high"),
        Some("MO" | "MI") => Some("low"),
        Some("U") => Some("unable-to-assess"),
        _ => None,
    };
    let manifestation: Vec<CodeableConcept> = al1
        .field(5)
        .repetitions()
        .filter_map(|r| text(r.component(1)))
        .map(CodeableConcept::text)
        .collect();
    let reaction = (!manifestation.is_empty()).then(|| AllergyReaction {
        manifestation,
        severity: match severity.as_deref() {
            Some("SV") => Some("severe".into()),
            Some("MO") => Some("moderate".into()),
            Some("MI") => Some("mild".into()),
            _ => None,
        },
        ..Default::default()
    });
    let clinical = CodeableConcept::code(
        "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
        "active",
        Some("Active"),
    );
    let a = AllergyIntolerance {
        id: ctx.id(
            "AllergyIntolerance",
            &ctx.source_urn_ref(),
            &[&pid, &code_key(al1, 3)],
        ),
        meta: ctx.meta.clone(),
        clinical_status: Some(clinical),
        category: category.into_iter().map(str::to_owned).collect(),
        criticality: criticality.map(str::to_owned),
        code: Some(code),
        patient,
        onset: ctx
            .datetime(text_cow(al1.field(onset).component(1)).as_deref(), &format!("{what}-{onset}"))
            .map(Choice::DateTime),
        reaction: reaction.into_iter().collect(),
        ..Default::default()
    };
    Ok(Some(a))
}

/// DG1 and PR1 share a layout: field 2 the (old) coding method, which names the
/// system when field 3 does not; field 3 the code; field 4 its description, used as
/// the text. Both empty is invalid input at `location`.
fn coded_with_description(ctx: &mut Context<'_, '_>, seg: &Segment<'_>, what: &str, location: &str) -> Result<CodeableConcept, AdapterError> {
    let method = text_cow(seg.field(2).component(1)).unwrap_or_default();
    let mut code = ctx.concept_in(seg.field(3).rep(1), &method);
    if let Some(desc) = text(seg.field(4).component(1)) {
        let c = code.get_or_insert_with(CodeableConcept::default);
        if c.text.is_none() {
            c.text = Some(desc);
        }
    }
    code.ok_or_else(|| AdapterError::invalid(format!("{what} code and description are empty"), Some(location)))
}

/// The standard DG1 map: an encounter diagnosis; id from DG1-20, else (patient,
/// encounter, code).
pub fn map_condition(ctx: &mut Context<'_, '_>, dg1: &Segment<'_>) -> MapResult {
    let (pid, subject) = patient(ctx, "DG1")?;
    let code = coded_with_description(ctx, dg1, "diagnosis", "DG1-3")?;
    let identifier = ctx.ei_identifier(dg1.field(20).rep(1));
    let id = match &identifier {
        Some(i) => ctx.id(
            "Condition",
            i.system.as_deref().unwrap_or(&ctx.source_urn_ref()),
            &[i.value.as_deref().unwrap_or("")],
        ),
        None => {
            let enc = ctx.encounter_id.clone().unwrap_or_default();
            let key = format!(
                "{}|{}",
                code_key(dg1, 3),
                text(dg1.field(4).component(1)).unwrap_or_default()
            );
            ctx.id("Condition", &ctx.source_urn_ref(), &[&pid, &enc, &key])
        }
    };
    let category = CodeableConcept::code(
        "http://terminology.hl7.org/CodeSystem/condition-category",
        "encounter-diagnosis",
        Some("Encounter Diagnosis"),
    );
    let c = Condition {
        id,
        meta: ctx.meta.clone(),
        identifier: identifier.into_iter().collect(),
        category: vec![category],
        code: Some(code),
        subject,
        encounter: ctx.encounter_ref(),
        onset: ctx
            .datetime(text_cow(dg1.field(5).component(1)).as_deref(), "DG1-5")
            .map(Choice::DateTime),
        recorded_date: ctx.datetime(text_cow(dg1.field(19).component(1)).as_deref(), "DG1-19"),
        asserter: ctx.practitioner(dg1.field(16).rep(1)),
        ..Default::default()
    };
    Ok(Some(c.into()))
}

/// The standard PR1 map: a completed procedure; id from PR1-19, else (patient,
/// encounter, code, PR1-5).
pub fn map_procedure(ctx: &mut Context<'_, '_>, pr1: &Segment<'_>) -> MapResult {
    let (pid, subject) = patient(ctx, "PR1")?;
    let code = coded_with_description(ctx, pr1, "procedure", "PR1-3")?;
    let identifier = ctx.ei_identifier(pr1.field(19).rep(1));
    let when = text(pr1.field(5).component(1));
    let id = match &identifier {
        Some(i) => ctx.id(
            "Procedure",
            i.system.as_deref().unwrap_or(&ctx.source_urn_ref()),
            &[i.value.as_deref().unwrap_or("")],
        ),
        None => {
            let enc = ctx.encounter_id.clone().unwrap_or_default();
            let key = format!(
                "{}|{}",
                code_key(pr1, 3),
                text(pr1.field(4).component(1)).unwrap_or_default()
            );
            ctx.id(
                "Procedure",
                &ctx.source_urn_ref(),
                &[&pid, &enc, &key, when.as_deref().unwrap_or("")],
            )
        }
    };
    let mut performer = Vec::new();
    for (n, role) in [
        (8, "anesthesiologist"),
        (11, "surgeon"),
        (12, "procedure practitioner"),
    ] {
        for rep in pr1.field(n).repetitions() {
            if let Some(actor) = ctx.practitioner(rep) {
                performer.push(Performer {
                    function: Some(CodeableConcept::text(role)),
                    actor,
                });
            }
        }
    }
    let p = Procedure {
        id,
        meta: ctx.meta.clone(),
        identifier: identifier.into_iter().collect(),
        status: "completed".into(),
        category: ctx.concept_in(pr1.field(6).rep(1), "HL70230"),
        code: Some(code),
        subject,
        encounter: ctx.encounter_ref(),
        performed: ctx.datetime(when.as_deref(), "PR1-5").map(Choice::DateTime),
        performer,
        ..Default::default()
    };
    let mut p = p;
    // PR1-25 parent procedure id -> partOf, a logical reference (the parent is
    // not in the message).
    if let Some(parent) = ctx.ei_identifier(pr1.field(25).rep(1)) {
        p.part_of.push(Reference { type_: Some("Procedure".into()), identifier: Some(Box::new(parent)), ..Default::default() });
    }
    Ok(Some(p.into()))
}
