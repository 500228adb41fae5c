//! OBX -> Observation, OBR -> DiagnosticReport.

use super::types::{text, text_cow};
use super::{Context, MapResult, Order};
use crate::adapter::AdapterError;
use crate::fhir::datetime::to_fhir_time;
use crate::fhir::{
    Annotation, Choice, DiagnosticReport, Observation, Period, Quantity, Range, Ratio, Reference,
    ReferenceRange, decimal,
};
use crate::hl7::{Rep, Segment};

/// OBX-11 -> Observation.status (`None` for an empty or unknown code).
pub fn observation_status(code: &str) -> Option<&'static str> {
    Some(match code.trim() {
        "F" | "U" | "V" => "final",
        "P" | "R" | "S" => "preliminary",
        "C" => "corrected",
        "A" | "B" => "amended",
        "X" | "N" => "cancelled",
        "D" | "W" => "entered-in-error",
        "I" | "O" => "registered",
        _ => return None,
    })
}

/// OBR-25 -> DiagnosticReport.status (`None` for an empty or unknown code).
pub fn report_status(code: &str) -> Option<&'static str> {
    Some(match code.trim() {
        "O" | "I" => "registered",
        "S" | "A" => "partial",
        "P" | "R" => "preliminary",
        "C" | "M" => "corrected",
        "F" => "final",
        "X" => "cancelled",
        "D" => "entered-in-error",
        _ => return None,
    })
}

/// The order key of an OBR: the filler order number OBR-3, else the placer OBR-2
/// (each within its namespace, else the source system), else MSH-10 + OBR-1.
pub fn order(ctx: &mut Context<'_, '_>, obr: &Segment<'_>) -> Order {
    for n in [3, 2] {
        if let Some(id) = ctx.ei_identifier(obr.field(n).rep(1)) {
            let system = id.system.unwrap_or_else(|| ctx.source_urn());
            return Order {
                system,
                key: id.value.unwrap_or_default(),
            };
        }
    }
    let set_id = text(obr.field(1).component(1)).unwrap_or_else(|| "1".into());
    Order {
        system: ctx.source_urn(),
        key: format!("{}/{set_id}", ctx.message.control_id()),
    }
}

/// The position of a segment in the message (for keys when a set id is missing).
fn position(ctx: &Context<'_, '_>, seg: &Segment<'_>) -> usize {
    ctx.message
        .segments()
        .iter()
        .position(|s| std::ptr::eq(s.raw(), seg.raw()))
        .map_or(0, |i| i + 1)
}

/// The standard OBX map.
pub fn map_observation(
    ctx: &mut Context<'_, '_>,
    obx: &Segment<'_>,
    obr: Option<&Segment<'_>>,
) -> MapResult {
    let set_id =
        text(obx.field(1).component(1)).unwrap_or_else(|| format!("#{}", position(ctx, obx)));
    let sub_id = text_cow(obx.field(4).component(1)).unwrap_or_default();
    let id = match ctx.order.clone() {
        Some(o) => ctx.id("Observation", &o.system, &[&o.key, &set_id, &sub_id]),
        None => {
            // No order (an OBX in an ADT): the same fact about the same patient/visit.
            let code = text(obx.field(3).component(1)).unwrap_or_default();
            let when = text(obx.field(14).component(1)).unwrap_or(set_id);
            let (p, e) = (
                ctx.patient_id.clone().unwrap_or_default(),
                ctx.encounter_id.clone().unwrap_or_default(),
            );
            ctx.id(
                "Observation",
                &ctx.source_urn_ref(),
                &["obx", &p, &e, &code, &when, &sub_id],
            )
        }
    };

    let code = match ctx.concept(obx.field(3).rep(1)) {
        Some(c) => c,
        None => match obr.and_then(|o| ctx.concept(o.field(4).rep(1))) {
            Some(c) => {
                ctx.warn("OBX-3 empty: observation coded with its OBR-4");
                c
            }
            None => {
                ctx.warn("OBX-3 empty and no OBR-4: observation coded as unknown");
                crate::fhir::CodeableConcept::code(
                    "http://terminology.hl7.org/CodeSystem/v3-NullFlavor",
                    "UNK",
                    Some("unknown"),
                )
            }
        },
    };
    let status = text_cow(obx.field(11).component(1))
        .and_then(|s| observation_status(&s))
        .or_else(|| {
            obr.and_then(|o| text(o.field(25).component(1)))
                .and_then(|s| report_status(&s))
        })
        .and_then(|s| observation_status_from_report(s))
        .unwrap_or("unknown");

    let mut o = Observation {
        id,
        meta: ctx.meta.clone(),
        status: status.into(),
        code,
        subject: ctx.patient_ref(),
        encounter: ctx.encounter_ref(),
        value: observation_value(ctx, obx)?,
        method: ctx.concept(obx.field(17).rep(1)),
        body_site: ctx.concept(obx.field(20).rep(1)),
        ..Default::default()
    };
    o.identifier = ctx
        .ei_identifier(obx.field(21).rep(1))
        .into_iter()
        .collect();
    o.interpretation = obx
        .field(8)
        .repetitions()
        .filter_map(|r| ctx.concept_in(r, "HL70078"))
        .collect();
    let when = ctx
        .datetime(text_cow(obx.field(14).component(1)).as_deref(), "OBX-14")
        .or_else(|| {
            obr.and_then(|r| text(r.field(7).component(1)))
                .and_then(|t| ctx.datetime(Some(&t), "OBR-7"))
        });
    o.effective = when.map(Choice::DateTime);
    o.performer = obx
        .field(16)
        .repetitions()
        .filter_map(|r| ctx.practitioner(r))
        .collect();
    if let Some(org) = text(obx.field(23).component(1)) {
        o.performer.push(Reference {
            type_: Some("Organization".into()),
            display: Some(org),
            ..Default::default()
        });
    }
    if let Some(range) = text(obx.field(7).component(1)) {
        o.reference_range.push(reference_range(ctx, &range, obx));
    }
    Ok(Some(o.into()))
}

/// Report statuses that are not observation statuses fall back to the closest one.
fn observation_status_from_report(s: &'static str) -> Option<&'static str> {
    Some(match s {
        "partial" => "preliminary",
        other => other,
    })
}

/// OBX-5 as `value[x]` by the value type OBX-2.
pub fn observation_value(
    ctx: &mut Context<'_, '_>,
    obx: &Segment<'_>,
) -> Result<Option<Choice>, AdapterError> {
    let reps: Vec<Rep<'_>> = obx
        .field(5)
        .repetitions()
        .filter(|r| !r.is_empty() && r.raw() != "\"\"")
        .collect();
    if reps.is_empty() {
        return Ok(None);
    }
    let Some(vt) = text(obx.field(2).component(1)).map(|t| t.to_ascii_uppercase()) else {
        return Err(AdapterError::invalid(
            "OBX-5 has a value but the value type is empty",
            Some("OBX-2"),
        ));
    };
    let joined = || {
        let lines: Vec<String> = reps
            .iter()
            .map(|r| r.value().trim_end().to_owned())
            .collect();
        let s = lines.join("\n");
        (!s.trim().is_empty()).then_some(Choice::String(s))
    };
    let single = |ctx: &mut Context<'_, '_>| {
        if reps.len() > 1 {
            ctx.warn(format!("OBX-5: {vt} value repeats; only the first kept"));
        }
    };
    let unit = Some(obx.field(6).rep(1)).filter(|u| !u.is_empty());
    let value = match vt.as_str() {
        "ST" | "TX" | "FT" => joined(),
        "NM" => {
            single(ctx);
            let raw = text(reps[0].component(1)).unwrap_or_default();
            let (comparator, number) = split_comparator(&raw);
            match ctx.quantity(number, unit) {
                Some(mut q) => {
                    q.comparator = comparator.map(str::to_owned);
                    Some(Choice::Quantity(q))
                }
                None => {
                    ctx.warn("OBX-5: NM value is not a number; kept as text");
                    joined()
                }
            }
        }
        "CE" | "CWE" | "CNE" | "CF" => {
            single(ctx);
            ctx.concept(reps[0]).map(Choice::CodeableConcept)
        }
        "SN" => {
            single(ctx);
            structured_numeric(ctx, reps[0], unit).or_else(joined)
        }
        "DT" => {
            single(ctx);
            ctx.date(text_cow(reps[0].component(1)).as_deref(), "OBX-5")
                .map(Choice::DateTime)
        }
        "DTM" | "TS" => {
            single(ctx);
            ctx.datetime(text_cow(reps[0].component(1)).as_deref(), "OBX-5")
                .map(Choice::DateTime)
        }
        "TM" => {
            single(ctx);
            text(reps[0].component(1))
                .and_then(|t| to_fhir_time(&t))
                .map(Choice::Time)
        }
        other => {
            ctx.warn(format!(
                "OBX-2: value type {other} not mapped; value kept as text"
            ));
            joined()
        }
    };
    Ok(value)
}

/// `<5` -> (`<`, `5`); `=` is dropped.
fn split_comparator(s: &str) -> (Option<&'static str>, &str) {
    for c in ["<=", ">=", "<", ">", "="] {
        if let Some(rest) = s.strip_prefix(c) {
            let cmp = if c == "=" { None } else { Some(c) };
            return (cmp, rest.trim());
        }
    }
    (None, s.trim())
}

/// SN: `[comparator]^num1[^separator^num2]` -> Quantity, Range (`-`) or Ratio
/// (`:` `/`); `None` when it is none of these.
fn structured_numeric(ctx: &Context<'_, '_>, sn: Rep<'_>, unit: Option<Rep<'_>>) -> Option<Choice> {
    let cmp = text(sn.component(1));
    let n1 = text(sn.component(2))?;
    let sep = text(sn.component(3));
    let n2 = text(sn.component(4));
    match (sep.as_deref(), n2) {
        (Some("-"), Some(n2)) => Some(Choice::Range(Range {
            low: ctx.quantity(&n1, unit),
            high: ctx.quantity(&n2, unit),
        })),
        (Some(":" | "/"), Some(n2)) => Some(Choice::Ratio(Ratio {
            numerator: Some(Quantity {
                value: Some(decimal(&n1)?),
                ..Default::default()
            }),
            denominator: Some(Quantity {
                value: Some(decimal(&n2)?),
                ..Default::default()
            }),
        })),
        (None, None) => {
            let comparator = match cmp.as_deref() {
                None | Some("=") => None,
                Some(c @ ("<" | ">" | "<=" | ">=")) => Some(c.to_owned()),
                Some(_) => return None,
            };
            let mut q = ctx.quantity(&n1, unit)?;
            q.comparator = comparator;
            Some(Choice::Quantity(q))
        }
        _ => None,
    }
}

/// OBX-7 -> referenceRange: the text as sent, plus low/high when it reads as
/// `a-b`, `a to b`, `<b`, `>a`.
fn reference_range(ctx: &Context<'_, '_>, range: &str, obx: &Segment<'_>) -> ReferenceRange {
    let unit = Some(obx.field(6).rep(1)).filter(|u| !u.is_empty());
    let q = |v: &str| ctx.quantity(v.trim(), unit);
    let mut rr = ReferenceRange {
        text: Some(range.to_owned()),
        ..Default::default()
    };
    let r = range.trim();
    let (cmp, rest) = split_comparator(r);
    match cmp {
        Some("<" | "<=") => rr.high = q(rest),
        Some(">" | ">=") => rr.low = q(rest),
        _ => {
            let pair = r.split_once(" to ").or_else(|| {
                // `a-b`: split at a `-` that is not a leading sign.
                let i = r.char_indices().skip(1).find(|&(_, c)| c == '-')?.0;
                Some((&r[..i], &r[i + 1..]))
            });
            if let Some((lo, hi)) = pair
                && let (Some(lo), Some(hi)) = (q(lo), q(hi))
            {
                rr.low = Some(lo);
                rr.high = Some(hi);
            }
        }
    }
    rr
}

/// The standard OBR map.
pub fn map_diagnostic_report(
    ctx: &mut Context<'_, '_>,
    obr: &Segment<'_>,
    results: &[String],
) -> MapResult {
    let order = match ctx.order.clone() {
        Some(o) => o,
        None => order(ctx, obr),
    };
    let Some(code) = ctx.concept(obr.field(4).rep(1)) else {
        return Err(AdapterError::invalid(
            "universal service identifier is empty",
            Some("OBR-4"),
        ));
    };
    let mut r = DiagnosticReport {
        id: ctx.id("DiagnosticReport", &order.system, &[&order.key]),
        meta: ctx.meta.clone(),
        status: text(obr.field(25).component(1))
            .and_then(|s| report_status(&s))
            .unwrap_or("unknown")
            .into(),
        code,
        subject: ctx.patient_ref(),
        encounter: ctx.encounter_ref(),
        result: results
            .iter()
            .map(|id| Reference::to("Observation", id))
            .collect(),
        ..Default::default()
    };
    for (n, t) in [(2, "PLAC"), (3, "FILL")] {
        if let Some(id) = ctx.ei_identifier(obr.field(n).rep(1)) {
            r.identifier.push(id.with_v2_type(t));
        }
    }
    r.category = ctx
        .table_concept(text(obr.field(24).component(1)), "HL70074")
        .into_iter()
        .collect();
    let start = ctx.datetime(text_cow(obr.field(7).component(1)).as_deref(), "OBR-7");
    let end = ctx.datetime(text_cow(obr.field(8).component(1)).as_deref(), "OBR-8");
    r.effective = match (start, end) {
        (Some(s), Some(e)) => Some(Choice::Period(Period {
            start: Some(s),
            end: Some(e),
        })),
        (Some(s), None) => Some(Choice::DateTime(s)),
        _ => None,
    };
    r.issued = ctx.instant(text_cow(obr.field(22).component(1)).as_deref(), "OBR-22");
    Ok(Some(r.into()))
}

/// NTE -> an Annotation (NTE-3, repetitions as lines).
pub fn note(nte: &Segment<'_>) -> Option<Annotation> {
    let lines: Vec<String> = nte
        .field(3)
        .repetitions()
        .map(|r| r.value().trim_end().to_owned())
        .collect();
    let text = lines.join("\n");
    (!text.trim().is_empty()).then_some(Annotation {
        text,
        ..Default::default()
    })
}
