//! PV1 / PV2 -> Encounter.

use super::types::{text, text_cow};
use super::{Context, MapResult};
use crate::fhir::{
    CodeableConcept, Coding, Encounter, EncounterHospitalization, EncounterLocation,
    EncounterParticipant, Period, Reference,
};
use crate::hl7::Segment;

/// The natural key of an encounter: the visit number PV1-19 within its assigning
/// authority (else the source system), else (patient, admit time PV1-44). `None`
/// when neither is present.
pub fn encounter_key(ctx: &Context<'_, '_>, pv1: &Segment<'_>) -> Option<(String, Vec<String>)> {
    let vn = pv1.field(19).rep(1);
    if let Some(value) = text(vn.component(1)) {
        let system = ctx
            .hd_system(vn.component(4))
            .unwrap_or_else(|| ctx.source_urn());
        return Some((system, vec![value]));
    }
    let admit = text(pv1.field(44).component(1))?;
    let patient = ctx.patient_id.clone()?;
    Some((ctx.source_urn(), vec!["admit".into(), patient, admit]))
}

/// Encounter.status from the trigger event: A03 `finished`; A11 `cancelled`; A13
/// `in-progress`; others by PV1-45 / PV1-44 (`finished`, `in-progress`), else
/// `unknown` (outside ADT) or `in-progress` (ADT).
pub fn encounter_status(ctx: &Context<'_, '_>, pv1: &Segment<'_>) -> &'static str {
    let discharged = text_cow(pv1.field(45).component(1)).is_some();
    let admitted = text_cow(pv1.field(44).component(1)).is_some();
    match (ctx.message.message_code(), ctx.message.trigger_event()) {
        ("ADT", "A03") => "finished",
        ("ADT", "A11") => "cancelled",
        ("ADT", "A13") => "in-progress",
        _ if discharged => "finished",
        ("ADT", _) => "in-progress",
        _ if admitted => "in-progress",
        _ => "unknown",
    }
}

/// PV1-2 patient class -> Encounter.class (v3 ActCode; other codes kept from
/// table 0004; `UNK` when absent).
pub fn encounter_class(code: Option<&str>) -> Coding {
    let v3 = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
    let (system, code, display) = match code {
        Some("E") => (v3, "EMER", Some("emergency")),
        Some("I") => (v3, "IMP", Some("inpatient encounter")),
        Some("O" | "R") => (v3, "AMB", Some("ambulatory")),
        Some("P") => (v3, "PRENC", Some("pre-admission")),
        Some(other) => ("http://terminology.hl7.org/CodeSystem/v2-0004", other, None),
        None => (
            "http://terminology.hl7.org/CodeSystem/v3-NullFlavor",
            "UNK",
            Some("unknown"),
        ),
    };
    let c = Coding::new(system, code);
    match display {
        Some(d) => c.with_display(d),
        None => c,
    }
}

/// The standard PV1/PV2 map. `None` (with a warning) when the encounter cannot be
/// identified (no PV1-19, no PV1-44).
pub fn map_encounter(
    ctx: &mut Context<'_, '_>,
    pv1: &Segment<'_>,
    pv2: Option<&Segment<'_>>,
) -> MapResult {
    let Some((system, key)) = encounter_key(ctx, pv1) else {
        ctx.warn("PV1: no visit number (PV1-19) or admit time (PV1-44); Encounter not mapped");
        return Ok(None);
    };
    let keys: Vec<&str> = key.iter().map(String::as_str).collect();
    let status = encounter_status(ctx, pv1);
    let mut e = Encounter {
        id: ctx.id("Encounter", &system, &keys),
        meta: ctx.meta.clone(),
        status: status.to_owned(),
        class: encounter_class(text_cow(pv1.field(2).component(1)).as_deref()),
        subject: ctx.patient_ref(),
        ..Default::default()
    };
    if let Some(vn) = ctx.identifier(pv1.field(19).rep(1)) {
        e.identifier.push(if vn.type_.is_none() {
            vn.with_v2_type("VN")
        } else {
            vn
        });
    }
    e.type_ = [
        ctx.concept_in(pv1.field(4).rep(1), "HL70007"),
        ctx.concept_in(pv1.field(18).rep(1), "HL70018"),
    ]
    .into_iter()
    .flatten()
    .collect();
    e.service_type = ctx.concept_in(pv1.field(10).rep(1), "HL70069");

    for (n, role, display) in [
        (7, "ATND", "attender"),
        (8, "REF", "referrer"),
        (9, "CON", "consultant"),
        (17, "ADM", "admitter"),
    ] {
        for rep in pv1.field(n).repetitions() {
            if let Some(individual) = ctx.practitioner(rep) {
                let t = CodeableConcept::code(
                    "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                    role,
                    Some(display),
                );
                e.participant.push(EncounterParticipant {
                    type_: vec![t],
                    individual: Some(individual),
                    period: None,
                });
            }
        }
    }

    let start = ctx.datetime(text_cow(pv1.field(44).component(1)).as_deref(), "PV1-44");
    let end = if status == "finished" {
        ctx.datetime(text_cow(pv1.field(45).component(1)).as_deref(), "PV1-45")
    } else {
        None
    };
    if start.is_some() || end.is_some() {
        e.period = Some(Period { start, end });
    }

    let hosp = EncounterHospitalization {
        pre_admission_identifier: ctx.identifier(pv1.field(5).rep(1)),
        admit_source: ctx.concept_in(pv1.field(14).rep(1), "HL70023"),
        re_admission: ctx.concept_in(pv1.field(13).rep(1), "HL70092"),
        diet_preference: ctx
            .concept_in(pv1.field(38).rep(1), "HL70159")
            .into_iter()
            .collect(),
        special_courtesy: ctx
            .concept_in(pv1.field(16).rep(1), "HL70099")
            .into_iter()
            .collect(),
        destination: text(pv1.field(37).component(1)).map(Reference::display),
        discharge_disposition: ctx.concept_in(pv1.field(36).rep(1), "HL70112"),
    };
    if hosp != EncounterHospitalization::default() {
        e.hospitalization = Some(hosp);
    }

    let current_status = if status == "finished" {
        "completed"
    } else {
        "active"
    };
    if let Some(loc) = ctx.location(pv1.field(3).rep(1)) {
        e.location.push(EncounterLocation {
            location: loc,
            status: Some(current_status.into()),
            period: None,
        });
    }
    if let Some(prior) = ctx.location(pv1.field(6).rep(1)) {
        e.location.push(EncounterLocation {
            location: prior,
            status: Some("completed".into()),
            period: None,
        });
    }

    if let Some(pv2) = pv2 {
        e.reason_code = ctx.concept(pv2.field(3).rep(1)).into_iter().collect();
    }
    Ok(Some(e.into()))
}

/// ROL -> an Encounter participant ("ROL[Encounter-PractitionerRole]"): the person
/// ROL-4, their role ROL-3 (table 0443) as the type, period ROL-5 / ROL-6. `None`
/// without a person.
pub fn role(ctx: &mut Context<'_, '_>, rol: &Segment<'_>) -> Option<EncounterParticipant> {
    let individual = ctx.practitioner(rol.field(4).rep(1))?;
    let start = ctx.datetime(text_cow(rol.field(5).component(1)).as_deref(), "ROL-5");
    let end = ctx.datetime(text_cow(rol.field(6).component(1)).as_deref(), "ROL-6");
    Some(EncounterParticipant {
        type_: ctx.concept_in(rol.field(3).rep(1), "HL70443").into_iter().collect(),
        period: (start.is_some() || end.is_some()).then_some(Period { start, end }),
        individual: Some(individual),
    })
}
