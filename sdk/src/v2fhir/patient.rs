//! PID -> Patient, NK1 -> Patient.contact, MRG -> the merged (non-surviving) Patient.

use super::types::{text, text_cow};
use super::{Context, MapResult};
use crate::adapter::AdapterError;
use crate::fhir::{
    Choice, CodeableConcept, Identifier, Patient, PatientCommunication, PatientContact,
    PatientLink, Period, Reference,
};
use crate::hl7::{Field, Segment};

/// `M F O U A N` -> `male female other unknown other unknown`.
pub fn gender(code: &str) -> Option<&'static str> {
    let code = code.trim();
    let is = |c: &str| code.eq_ignore_ascii_case(c);
    Some(if is("M") {
        "male"
    } else if is("F") {
        "female"
    } else if is("O") || is("A") {
        "other"
    } else if is("U") || is("N") {
        "unknown"
    } else {
        return None;
    })
}

/// The natural key of a patient: (identifier system, value) of the PID-3 repetition
/// typed `MR` (else the first), else PID-2, else PID-4. The system is the assigning
/// authority's, else the source system's URN.
pub fn patient_key(
    ctx: &Context<'_, '_>,
    pid: &Segment<'_>,
) -> Result<(String, String), AdapterError> {
    for n in [3, 2, 4] {
        if let Some(key) = cx_key(ctx, pid.field(n)) {
            return Ok(key);
        }
    }
    Err(AdapterError::invalid(
        "no patient identifier (PID-3, PID-2 or PID-4)",
        Some("PID-3"),
    ))
}

/// (system, value) of the `MR` repetition of a CX list, else the first with a value.
pub fn cx_key(ctx: &Context<'_, '_>, field: Field<'_>) -> Option<(String, String)> {
    let reps: Vec<_> = field
        .repetitions()
        .filter(|r| text_cow(r.component(1)).is_some())
        .collect();
    let rep = reps
        .iter()
        .find(|r| text_cow(r.component(5)).as_deref() == Some("MR"))
        .or(reps.first())?;
    let value = text(rep.component(1))?;
    let system = ctx
        .hd_system(rep.component(4))
        .unwrap_or_else(|| ctx.source_urn());
    Some((system, value))
}

/// The standard PID map.
pub fn map_patient(ctx: &mut Context<'_, '_>, pid: &Segment<'_>) -> MapResult {
    let (system, value) = patient_key(ctx, pid)?;
    let mut p = Patient {
        id: ctx.id("Patient", &system, &[&value]),
        meta: ctx.meta.clone(),
        ..Default::default()
    };

    for n in [3, 2, 4] {
        for rep in pid.field(n).repetitions() {
            if let Some(id) = ctx.identifier(rep)
                && !p.identifier.contains(&id)
            {
                p.identifier.push(id);
            }
        }
    }
    if let Some(ssn) = text(pid.field(19).component(1)) {
        p.identifier.push(
            Identifier::new(Some("http://hl7.org/fhir/sid/us-ssn".into()), ssn).with_v2_type("SS"),
        );
    }
    if let Some(dl) = text(pid.field(20).component(1)) {
        let mut id = Identifier::new(None, dl).with_v2_type("DL");
        let end = ctx.date(text_cow(pid.field(20).component(3)).as_deref(), "PID-20.3");
        id.period = end.map(|end| Period {
            start: None,
            end: Some(end),
        });
        p.identifier.push(id);
    }

    p.name = pid
        .field(5)
        .repetitions()
        .filter_map(|r| ctx.name(r))
        .collect();
    for (n, default_use) in [(13, "home"), (14, "work"), (40, "home")] {
        p.telecom.extend(
            pid.field(n)
                .repetitions()
                .filter_map(|r| ctx.telecom(r, Some(default_use))),
        );
    }
    p.gender = text_cow(pid.field(8).component(1))
        .and_then(|g| gender(&g))
        .map(str::to_owned);
    p.birth_date = ctx.date(text_cow(pid.field(7).component(1)).as_deref(), "PID-7");
    p.address = pid
        .field(11)
        .repetitions()
        .filter_map(|r| ctx.address(r))
        .collect();
    p.marital_status = ctx.concept_in(pid.field(16).rep(1), "HL70002");
    p.communication = ctx
        .concept_in(pid.field(15).rep(1), "HL70296")
        .map(|language| PatientCommunication {
            language,
            preferred: Some(true),
        })
        .into_iter()
        .collect();

    let death = ctx.datetime(text_cow(pid.field(29).component(1)).as_deref(), "PID-29");
    p.deceased = match (death, text_cow(pid.field(30).component(1)).as_deref()) {
        (Some(dt), _) => Some(Choice::DateTime(dt)),
        (None, Some("Y")) => Some(Choice::Boolean(true)),
        (None, Some("N")) => Some(Choice::Boolean(false)),
        _ => None,
    };
    let order = text(pid.field(25).component(1))
        .and_then(|o| o.parse::<i64>().ok())
        .filter(|o| *o > 0);
    p.multiple_birth = match (text_cow(pid.field(24).component(1)).as_deref(), order) {
        (Some("Y") | None, Some(o)) => Some(Choice::Integer(o)),
        (Some("Y"), None) => Some(Choice::Boolean(true)),
        (Some("N"), _) => Some(Choice::Boolean(false)),
        _ => None,
    };
    Ok(Some(p.into()))
}

/// The standard NK1 map: one `Patient.contact`; `None` when it has no name, telecom,
/// address or organization (FHIR needs one of them).
pub fn map_contact(ctx: &mut Context<'_, '_>, nk1: &Segment<'_>) -> Option<PatientContact> {
    let relationship: Vec<CodeableConcept> = [
        ctx.concept_in(nk1.field(3).rep(1), "HL70063"),
        ctx.concept_in(nk1.field(7).rep(1), "HL70131"),
    ]
    .into_iter()
    .flatten()
    .collect();
    let mut telecom: Vec<_> = nk1
        .field(5)
        .repetitions()
        .filter_map(|r| ctx.telecom(r, Some("home")))
        .collect();
    telecom.extend(
        nk1.field(6)
            .repetitions()
            .filter_map(|r| ctx.telecom(r, Some("work"))),
    );
    let start = ctx.date(text_cow(nk1.field(8).component(1)).as_deref(), "NK1-8");
    let end = ctx.date(text_cow(nk1.field(9).component(1)).as_deref(), "NK1-9");
    let c = PatientContact {
        relationship,
        name: ctx.name(nk1.field(2).rep(1)),
        telecom,
        address: ctx.address(nk1.field(4).rep(1)),
        gender: text_cow(nk1.field(15).component(1))
            .and_then(|g| gender(&g))
            .map(str::to_owned),
        organization: text(nk1.field(13).component(1)).map(Reference::display),
        period: (start.is_some() || end.is_some()).then_some(Period { start, end }),
    };
    if c.name.is_none() && c.telecom.is_empty() && c.address.is_none() && c.organization.is_none() {
        return None;
    }
    Some(c)
}

/// The standard MRG map (A40): the patient named by MRG-1, inactive, pointing at the
/// survivor.
pub fn map_merged_patient(
    ctx: &mut Context<'_, '_>,
    mrg: &Segment<'_>,
    surviving_id: &str,
) -> MapResult {
    let Some((system, value)) = cx_key(ctx, mrg.field(1)) else {
        return Err(AdapterError::invalid(
            "no prior patient identifier",
            Some("MRG-1"),
        ));
    };
    let id = ctx.id("Patient", &system, &[&value]);
    if id == surviving_id {
        ctx.warn("MRG-1 names the surviving patient itself; merge ignored");
        return Ok(None);
    }
    let p = Patient {
        id,
        meta: ctx.meta.clone(),
        identifier: mrg
            .field(1)
            .repetitions()
            .filter_map(|r| ctx.identifier(r))
            .collect(),
        active: Some(false),
        link: vec![PatientLink {
            other: Reference::to("Patient", surviving_id),
            type_: "replaced-by".into(),
        }],
        ..Default::default()
    };
    Ok(Some(p.into()))
}

/// Whether a ROL names the patient's primary care provider (ROL-3, table 0443:
/// `PP` primary care provider, `FHCP` family health care professional).
pub fn is_primary_care_role(rol: &Segment<'_>) -> bool {
    matches!(text(rol.field(3).component(1)).as_deref(), Some("PP" | "FHCP"))
}

/// The patient's general practitioners a segment names: PD1-4 (primary care
/// provider, XCN) and PD1-3 (primary facility, XON, as an Organization) -
/// "PD1[Patient]"; ROL-4 when ROL-3 is a primary care role -
/// "ROL[Patient-GeneralPractitioner]". Logical references, as every person and
/// organisation in the standard mapping.
pub fn general_practitioners(ctx: &mut Context<'_, '_>, seg: &Segment<'_>) -> Vec<Reference> {
    match seg.id() {
        "PD1" => {
            let mut out: Vec<Reference> = seg.field(4).repetitions().filter_map(|r| ctx.practitioner(r)).collect();
            for xon in seg.field(3).repetitions() {
                let name = text(xon.component(1));
                let id = text(xon.component(10)).or_else(|| text(xon.component(3)));
                if name.is_some() || id.is_some() {
                    out.push(Reference {
                        type_: Some("Organization".into()),
                        identifier: id.map(|v| Box::new(Identifier::new(None, v))),
                        display: name,
                        ..Default::default()
                    });
                }
            }
            out
        }
        "ROL" if is_primary_care_role(seg) => seg.field(4).repetitions().filter_map(|r| ctx.practitioner(r)).collect(),
        _ => Vec::new(),
    }
}
