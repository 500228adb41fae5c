//! RXA (+ ORC, RXR) -> Immunization (VXU) or MedicationAdministration (RAS); RXE
//! (+ ORC, RXR) -> MedicationRequest.

use super::types::{text, text_cow};
use super::{Context, MapResult};
use crate::adapter::AdapterError;
use crate::fhir::{
    Choice, CodeableConcept, Dosage, Identifier, Immunization, MedicationRequest, Performer,
    Quantity, Reference, ToFhir,
};
use crate::hl7::Segment;
use serde_json::{Value, json};

fn subject(ctx: &Context<'_, '_>, seg: &str) -> Result<(String, Reference), AdapterError> {
    match (&ctx.patient_id, ctx.patient_ref()) {
        (Some(id), Some(r)) => Ok((id.clone(), r)),
        _ => Err(AdapterError::invalid(
            format!("{seg} without a patient"),
            Some("PID"),
        )),
    }
}

/// ORC-2 (placer, `PLAC`) and ORC-3 (filler, `FILL`) as identifiers.
fn order_identifiers(ctx: &Context<'_, '_>, orc: Option<&Segment<'_>>) -> Vec<Identifier> {
    let Some(orc) = orc else { return Vec::new() };
    [(2, "PLAC"), (3, "FILL")]
        .iter()
        .filter_map(|&(n, t)| {
            ctx.ei_identifier(orc.field(n).rep(1))
                .map(|i| i.with_v2_type(t))
        })
        .collect()
}

/// The id of an ordered thing: from the identifier of the first of `prefer` types
/// present, else from `fallback` parts within the source system.
fn order_id(
    ctx: &Context<'_, '_>,
    rt: &str,
    ids: &[Identifier],
    prefer: &[&str],
    fallback: &[&str],
) -> String {
    for t in prefer {
        if let Some(i) = ids.iter().find(|i| {
            i.type_
                .as_ref()
                .and_then(|c| c.coding.first())
                .is_some_and(|c| c.code.as_deref() == Some(t))
        }) {
            let system = i.system.clone().unwrap_or_else(|| ctx.source_urn());
            return ctx.id(rt, &system, &[i.value.as_deref().unwrap_or_default()]);
        }
    }
    ctx.id(rt, &ctx.source_urn_ref(), fallback)
}

fn performer(function: &str, display: &str, actor: Option<Reference>) -> Option<Performer> {
    let f = CodeableConcept::code(
        "http://terminology.hl7.org/CodeSystem/v2-0443",
        function,
        Some(display),
    );
    Some(Performer {
        function: Some(f),
        actor: actor?,
    })
}

/// The standard RXA map (VXU): id from the filler order ORC-3, else the placer ORC-2,
/// else (patient, vaccine, date).
pub fn map_immunization(
    ctx: &mut Context<'_, '_>,
    rxa: &Segment<'_>,
    orc: Option<&Segment<'_>>,
    rxr: Option<&Segment<'_>>,
) -> MapResult {
    let (pid, patient) = subject(ctx, "RXA")?;
    let Some(vaccine) = ctx.concept(rxa.field(5).rep(1)) else {
        return Err(AdapterError::invalid(
            "administered code is empty",
            Some("RXA-5"),
        ));
    };
    let Some(when) = ctx.datetime(text_cow(rxa.field(3).component(1)).as_deref(), "RXA-3") else {
        return Err(AdapterError::invalid(
            "administration date/time is missing or invalid",
            Some("RXA-3"),
        ));
    };
    let identifier = order_identifiers(ctx, orc);
    let vaccine_key = text(rxa.field(5).component(1)).unwrap_or_default();
    let id = order_id(
        ctx,
        "Immunization",
        &identifier,
        &["FILL", "PLAC"],
        &[&pid, &vaccine_key, &when],
    );
    let status = match (
        text_cow(rxa.field(21).component(1)).as_deref(),
        text_cow(rxa.field(20).component(1)).as_deref(),
    ) {
        (Some("D"), _) => "entered-in-error",
        (_, Some("RE" | "NA")) => "not-done",
        _ => "completed",
    };
    let dose = text(rxa.field(6).component(1))
        .filter(|a| a != "999")
        .and_then(|a| ctx.quantity(&a, Some(rxa.field(7).rep(1)).filter(|u| !u.is_empty())));
    let ordering = orc.and_then(|o| ctx.practitioner(o.field(12).rep(1)));
    let i = Immunization {
        id,
        meta: ctx.meta.clone(),
        identifier,
        status: status.into(),
        status_reason: if status == "not-done" {
            ctx.concept(rxa.field(18).rep(1))
        } else {
            None
        },
        vaccine_code: vaccine,
        patient,
        encounter: ctx.encounter_ref(),
        occurrence: Some(Choice::DateTime(when)),
        recorded: ctx.datetime(text_cow(rxa.field(22).component(1)).as_deref(), "RXA-22"),
        primary_source: match text_cow(rxa.field(9).component(1)).as_deref() {
            Some("00") => Some(true),
            Some(c) if c.starts_with('0') => Some(false),
            _ => None,
        },
        lot_number: text(rxa.field(15).component(1)),
        expiration_date: ctx.date(text_cow(rxa.field(16).component(1)).as_deref(), "RXA-16"),
        manufacturer: text(rxa.field(17).component(2))
            .or_else(|| text(rxa.field(17).component(1)))
            .map(Reference::display),
        dose_quantity: dose,
        route: rxr.and_then(|r| ctx.concept(r.field(1).rep(1))),
        site: rxr.and_then(|r| ctx.concept(r.field(2).rep(1))),
        performer: [
            performer(
                "AP",
                "Administering Provider",
                ctx.practitioner(rxa.field(10).rep(1)),
            ),
            performer("OP", "Ordering Provider", ordering),
        ]
        .into_iter()
        .flatten()
        .collect(),
        ..Default::default()
    };
    Ok(Some(i.into()))
}

/// ORC-5 (order status), else ORC-1 (order control) -> MedicationRequest.status.
pub fn medication_request_status(orc: Option<&Segment<'_>>) -> &'static str {
    let Some(orc) = orc else { return "unknown" };
    let status = match text_cow(orc.field(5).component(1)).as_deref() {
        Some("A" | "IP" | "SC") => Some("active"),
        Some("CA") => Some("cancelled"),
        Some("CM") => Some("completed"),
        Some("DC" | "RP") => Some("stopped"),
        Some("ER") => Some("entered-in-error"),
        Some("HD") => Some("on-hold"),
        _ => None,
    };
    status.unwrap_or(match text_cow(orc.field(1).component(1)).as_deref() {
        Some("NW" | "OK" | "XO" | "XX" | "RE" | "SC" | "RL") => "active",
        Some("CA" | "OC" | "CR") => "cancelled",
        Some("DC" | "OD" | "DR") => "stopped",
        Some("HD" | "OH") => "on-hold",
        _ => "unknown",
    })
}

/// The standard RXE map (RDE): id from the placer order ORC-2, else the filler
/// ORC-3, else the prescription number RXE-15, else (patient, give code, ORC-9).
pub fn map_medication_request(
    ctx: &mut Context<'_, '_>,
    rxe: &Segment<'_>,
    orc: Option<&Segment<'_>>,
    rxr: Option<&Segment<'_>>,
) -> MapResult {
    let (pid, subject) = subject(ctx, "RXE")?;
    let Some(medication) = ctx.concept(rxe.field(2).rep(1)) else {
        return Err(AdapterError::invalid("give code is empty", Some("RXE-2")));
    };
    let mut identifier = order_identifiers(ctx, orc);
    if let Some(rx) = text(rxe.field(15).component(1)) {
        identifier.push(Identifier::new(None, rx).with_v2_type("RXNB"));
    }
    let authored_raw = orc.and_then(|o| text(o.field(9).component(1)));
    let code_key = text(rxe.field(2).component(1)).unwrap_or_default();
    let id = order_id(
        ctx,
        "MedicationRequest",
        &identifier,
        &["PLAC", "FILL", "RXNB"],
        &[&pid, &code_key, authored_raw.as_deref().unwrap_or_default()],
    );
    let instructions: Vec<String> = rxe
        .field(7)
        .repetitions()
        .filter_map(|r| text(r.component(2)).or_else(|| text(r.component(1))))
        .collect();
    let units = Some(rxe.field(5).rep(1)).filter(|u| !u.is_empty());
    let dosage = Dosage {
        text: (!instructions.is_empty()).then(|| instructions.join("\n")),
        route: rxr.and_then(|r| ctx.concept(r.field(1).rep(1))),
        dose: text(rxe.field(3).component(1)).and_then(|a| ctx.quantity(&a, units)),
        ..Default::default()
    };
    let mut m = MedicationRequest {
        id,
        meta: ctx.meta.clone(),
        identifier,
        status: medication_request_status(orc).into(),
        intent: "order".into(),
        medication: Some(Choice::CodeableConcept(medication)),
        subject,
        encounter: ctx.encounter_ref(),
        authored_on: ctx.datetime(authored_raw.as_deref(), "ORC-9"),
        requester: orc.and_then(|o| ctx.practitioner(o.field(12).rep(1))),
        dosage_instruction: if dosage == Dosage::default() {
            vec![]
        } else {
            vec![dosage]
        },
        ..Default::default()
    };
    let dispense_units = Some(rxe.field(11).rep(1)).filter(|u| !u.is_empty());
    let quantity: Option<Quantity> =
        text(rxe.field(10).component(1)).and_then(|a| ctx.quantity(&a, dispense_units));
    let refills = text(rxe.field(12).component(1)).and_then(|r| r.parse::<u32>().ok());
    if quantity.is_some() || refills.is_some() {
        let q = quantity.map(|q| q.to_fhir());
        m.extra.insert(
            "dispenseRequest".into(),
            json!({"quantity": q, "numberOfRepeatsAllowed": refills}),
        );
    }
    Ok(Some(m.into()))
}

/// RXA in RAS^O17 (+ its ORC and RXR) -> MedicationAdministration. The IG (STU 1)
/// has "ORC[MedicationAdministration]" for the order part; the RXA fields follow
/// the segment definition (v2.8 chapter 4): medication RXA-5, effective RXA-3
/// (a period to RXA-4 when it differs), dose RXA-6/RXA-7, route / site RXR-1 /
/// RXR-2, performer RXA-10, reasonCode RXA-19 (indication), status RXA-20 (CP / PA
/// completed, RE / NA not-done; RXA-21 `D` entered-in-error), statusReason RXA-18,
/// identifiers ORC-2/ORC-3, request the order's MedicationRequest (a logical
/// reference by its placer number). Id from the filler order, else the placer, with
/// RXA-1/RXA-2 (a give may be administered in several parts), else (patient,
/// medication, time).
pub fn map_medication_administration(
    ctx: &mut Context<'_, '_>,
    rxa: &Segment<'_>,
    orc: Option<&Segment<'_>>,
    rxr: Option<&Segment<'_>>,
) -> MapResult {
    let (pid, subject) = subject(ctx, "RXA")?;
    let Some(medication) = ctx.concept(rxa.field(5).rep(1)) else {
        return Err(AdapterError::invalid("administered code is empty", Some("RXA-5")));
    };
    let Some(start) = ctx.datetime(text_cow(rxa.field(3).component(1)).as_deref(), "RXA-3") else {
        return Err(AdapterError::invalid("administration date/time is missing or invalid", Some("RXA-3")));
    };
    let end = ctx.datetime(text_cow(rxa.field(4).component(1)).as_deref(), "RXA-4").filter(|e| *e != start);
    let identifier = order_identifiers(ctx, orc);
    let part = format!("{}/{}", text(rxa.field(1).component(1)).unwrap_or_default(), text(rxa.field(2).component(1)).unwrap_or_default());
    let drug = text(rxa.field(5).component(1)).unwrap_or_default();
    let id = match identifier.iter().find(|i| i.type_.as_ref().and_then(|c| c.coding.first()).is_some_and(|c| c.code.as_deref() == Some("FILL"))).or(identifier.first()) {
        Some(i) => ctx.id("MedicationAdministration", &i.system.clone().unwrap_or_else(|| ctx.source_urn()), &[i.value.as_deref().unwrap_or_default(), &part]),
        None => ctx.id("MedicationAdministration", &ctx.source_urn_ref(), &[&pid, &drug, &start]),
    };
    let status = match (text_cow(rxa.field(21).component(1)).as_deref(), text_cow(rxa.field(20).component(1)).as_deref()) {
        (Some("D"), _) => "entered-in-error",
        (_, Some("RE" | "NA")) => "not-done",
        _ => "completed",
    };
    let mut m = json!({
        "resourceType": "MedicationAdministration",
        "id": id,
        "meta": ctx.meta.to_fhir(),
        "status": status,
        "medicationCodeableConcept": medication.to_fhir(),
        "subject": subject.to_fhir(),
    });
    match end {
        Some(end) => m["effectivePeriod"] = json!({ "start": start, "end": end }),
        None => m["effectiveDateTime"] = start.into(),
    }
    if !identifier.is_empty() {
        m["identifier"] = Value::Array(identifier.iter().map(ToFhir::to_fhir).collect());
    }
    if let Some(e) = ctx.encounter_ref() {
        m["context"] = e.to_fhir();
    }
    if status == "not-done"
        && let Some(r) = ctx.concept(rxa.field(18).rep(1))
    {
        m["statusReason"] = json!([r.to_fhir()]);
    }
    let reasons: Vec<Value> = rxa.field(19).repetitions().filter_map(|r| ctx.concept(r)).map(|c| c.to_fhir()).collect();
    if !reasons.is_empty() {
        m["reasonCode"] = Value::Array(reasons);
    }
    let performers: Vec<Value> = rxa.field(10).repetitions().filter_map(|r| ctx.practitioner(r)).map(|a| json!({ "actor": a.to_fhir() })).collect();
    if !performers.is_empty() {
        m["performer"] = Value::Array(performers);
    }
    if let Some(placer) = orc.and_then(|o| ctx.ei_identifier(o.field(2).rep(1))) {
        let r = Reference { type_: Some("MedicationRequest".into()), identifier: Some(Box::new(placer.with_v2_type("PLAC"))), ..Default::default() };
        m["request"] = r.to_fhir();
    }
    let mut dosage = serde_json::Map::new();
    let dose = text(rxa.field(6).component(1)).filter(|a| a != "999").and_then(|a| ctx.quantity(&a, Some(rxa.field(7).rep(1)).filter(|u| !u.is_empty())));
    if let Some(d) = dose {
        dosage.insert("dose".into(), d.to_fhir());
    }
    if let Some(r) = rxr.and_then(|r| ctx.concept(r.field(1).rep(1))) {
        dosage.insert("route".into(), r.to_fhir());
    }
    if let Some(s) = rxr.and_then(|r| ctx.concept(r.field(2).rep(1))) {
        dosage.insert("site".into(), s.to_fhir());
    }
    if !dosage.is_empty() {
        m["dosage"] = Value::Object(dosage);
    }
    Ok(Some(m.into()))
}
