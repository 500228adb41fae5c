//! What happened to the patient, in ADT: PDA (death and autopsy) -> Condition,
//! Observations and Procedures; ACC (accident) -> Observation.
//!
//! The HL7 v2-to-FHIR IG (STU 1) has no PDA or ACC map; the resources follow the
//! segment definitions (v2.8 chapter 3) and the death-reporting content of HL7's
//! Vital Records Death Reporting IG where it has a code:
//! - PDA-1 (death cause, repeating) -> a Condition per cause (`encounter-diagnosis`
//!   category is not claimed: a cause of death is not a visit diagnosis);
//! - PDA-3 death certified, PDA-6 autopsy, PDA-9 coroner indicators -> an
//!   Observation each (`valueBoolean`): autopsy LOINC 85699-7 "Autopsy was
//!   performed", coroner LOINC 74497-9 "Medical examiner or coroner was contacted";
//!   the certified indicator has no LOINC code and is coded by its field
//!   ([`V2_FIELD`] `PDA-3`);
//! - PDA-4/PDA-5 (signed, certified by) -> Procedure "death certification"; PDA-7/
//!   PDA-8 (autopsy period, performed by) -> Procedure SNOMED 29240004 "Autopsy
//!   examination";
//! - ACC -> Observation LOINC 11374-6 "Injury incident description": value ACC-8
//!   (else ACC-2's text), effective ACC-1, identifier ACC-13, performer ACC-7,
//!   components job related (ACC-5), death (ACC-6) and police notified (ACC-10)
//!   coded by field.
//!
//! Ids: from the patient and the field (one death per patient; an accident by
//! ACC-13, else its date).

use super::types::text;
use super::{Context, MapResult};
use crate::fhir::{Choice, CodeableConcept, Coding, Condition, Observation, ObservationComponent, Performer, Period, Procedure, Reference, Resource};
use crate::hl7::Segment;

/// The code system for observations that no standard terminology codes: the HL7 v2
/// field they come from (e.g. `PDA-3`).
pub const V2_FIELD: &str = "urn:ehrgate:v2-field";

fn coding(system: &str, code: &str, display: &str) -> CodeableConcept {
    CodeableConcept {
        coding: vec![Coding { system: Some(system.into()), code: Some(code.into()), display: Some(display.into()), ..Default::default() }],
        text: Some(display.into()),
    }
}

fn yes_no(seg: &Segment<'_>, n: usize) -> Option<bool> {
    match text(seg.field(n).component(1)).as_deref() {
        Some("Y") => Some(true),
        Some("N") => Some(false),
        _ => None,
    }
}

/// PDA -> a Condition per cause of death, an Observation per indicator, a Procedure
/// for the certification and for the autopsy. Empty without a patient.
pub fn map_death(ctx: &mut Context<'_, '_>, pda: &Segment<'_>) -> Vec<Resource> {
    let (Some(pid), Some(subject)) = (ctx.patient_id.clone(), ctx.patient_ref()) else {
        ctx.warn("PDA without a patient: not mapped");
        return Vec::new();
    };
    let system = ctx.source_urn();
    let mut out: Vec<Resource> = Vec::new();
    for rep in pda.field(1).repetitions() {
        let Some(code) = ctx.concept(rep) else { continue };
        let key = code.coding.first().and_then(|c| c.code.clone()).or_else(|| code.text.clone()).unwrap_or_default();
        let c = Condition {
            id: ctx.id("Condition", &system, &[&pid, "PDA-1", &key]),
            meta: ctx.meta.clone(),
            code: Some(code),
            subject: subject.clone(),
            ..Default::default()
        };
        out.push(c.into());
    }
    let indicators = [
        (3, coding(V2_FIELD, "PDA-3", "Death certified indicator")),
        (6, coding("http://loinc.org", "85699-7", "Autopsy was performed")),
        (9, coding("http://loinc.org", "74497-9", "Medical examiner or coroner was contacted")),
    ];
    for (n, code) in indicators {
        let Some(v) = yes_no(pda, n) else { continue };
        let o = Observation {
            id: ctx.id("Observation", &system, &[&pid, &format!("PDA-{n}")]),
            meta: ctx.meta.clone(),
            status: "final".into(),
            code,
            subject: Some(subject.clone()),
            value: Some(Choice::Boolean(v)),
            ..Default::default()
        };
        out.push(o.into());
    }
    let raw = |n: usize, c: usize| text(pda.field(n).component(c));
    let signed = ctx.datetime(raw(4, 1).as_deref(), "PDA-4");
    let certifier = ctx.practitioner(pda.field(5).rep(1));
    if signed.is_some() || certifier.is_some() {
        let p = Procedure {
            id: ctx.id("Procedure", &system, &[&pid, "PDA-4"]),
            meta: ctx.meta.clone(),
            status: "completed".into(),
            code: Some(CodeableConcept::text("Death certification")),
            subject: subject.clone(),
            performed: signed.map(Choice::DateTime),
            performer: certifier.map(|actor| Performer { function: Some(CodeableConcept::text("death certifier")), actor }).into_iter().collect(),
            ..Default::default()
        };
        out.push(p.into());
    }
    let start = ctx.datetime(raw(7, 1).as_deref(), "PDA-7.1");
    let end = ctx.datetime(raw(7, 2).as_deref(), "PDA-7.2");
    let pathologist = ctx.practitioner(pda.field(8).rep(1));
    if start.is_some() || pathologist.is_some() {
        let performed = match (start, end) {
            (Some(s), Some(e)) => Some(Choice::Period(Period { start: Some(s), end: Some(e) })),
            (Some(s), None) => Some(Choice::DateTime(s)),
            _ => None,
        };
        let p = Procedure {
            id: ctx.id("Procedure", &system, &[&pid, "PDA-7"]),
            meta: ctx.meta.clone(),
            status: "completed".into(),
            code: Some(coding("http://snomed.info/sct", "29240004", "Autopsy examination")),
            subject: subject.clone(),
            performed,
            performer: pathologist.map(|actor| Performer { function: Some(CodeableConcept::text("autopsy performer")), actor }).into_iter().collect(),
            ..Default::default()
        };
        out.push(p.into());
    }
    out
}

/// ACC -> Observation (injury incident). `None` without a patient or without a
/// date, code or description.
pub fn map_accident(ctx: &mut Context<'_, '_>, acc: &Segment<'_>) -> MapResult {
    let (Some(pid), Some(subject)) = (ctx.patient_id.clone(), ctx.patient_ref()) else { return Ok(None) };
    let when = text(acc.field(1).component(1));
    let description = text(acc.field(8).component(1)).or_else(|| text(acc.field(2).component(2))).or_else(|| text(acc.field(2).component(1)));
    let identifier = ctx.ei_identifier(acc.field(13).rep(1));
    if when.is_none() && description.is_none() && identifier.is_none() {
        return Ok(None);
    }
    let system = ctx.source_urn();
    let key = identifier.as_ref().and_then(|i| i.value.clone()).or_else(|| when.clone()).unwrap_or_default();
    let mut o = Observation {
        id: ctx.id("Observation", &system, &[&pid, "ACC", &key]),
        meta: ctx.meta.clone(),
        identifier: identifier.into_iter().collect(),
        status: "final".into(),
        code: coding("http://loinc.org", "11374-6", "Injury incident description"),
        subject: Some(subject),
        encounter: ctx.encounter_ref(),
        effective: ctx.datetime(when.as_deref(), "ACC-1").map(Choice::DateTime),
        performer: ctx.practitioner(acc.field(7).rep(1)).into_iter().collect::<Vec<Reference>>(),
        value: description.map(Choice::String),
        ..Default::default()
    };
    o.component = [(5, "Accident job related indicator"), (6, "Accident death indicator"), (10, "Police notified indicator")]
        .into_iter()
        .filter_map(|(n, display)| {
            let v = yes_no(acc, n)?;
            Some(ObservationComponent { code: coding(V2_FIELD, &format!("ACC-{n}"), display), value: Some(Choice::Boolean(v)) })
        })
        .collect();
    Ok(Some(o.into()))
}
