//! Scheduling and documents: SIU (SCH + AIS/AIG/AIL/AIP) -> Appointment, MDM (TXA +
//! OBX content) -> DocumentReference.
//!
//! Maps used (HL7 v2-to-FHIR IG, STU 1):
//! - "SCH[Appointment]": identifiers SCH-1 (PLAC) / SCH-2 (FILL), status SCH-25
//!   (filler status, table 0278; else by trigger: S12-S14 booked, S15 cancelled),
//!   reasonCode SCH-7, appointmentType SCH-8, minutesDuration SCH-9 (SCH-10 in
//!   minutes or hours), start / end TQ1-7 / TQ1-8 (else SCH-11.4 / SCH-11.5; both
//!   or neither, as FHIR requires); serviceType AIS-3; participants: the patient, AIP-3 people,
//!   AIL-3 locations and AIG-3 resources as logical references, status from their
//!   filler status (AIP-12, AIL-12, AIG-14; "Booked" accepted); basedOn the
//!   ServiceRequest of each AIS.
//! - "SCH[ServiceRequest]" / "AIS[ServiceRequest]": see [`map_appointment_request`].
//! - "TXA[DocumentReference]": masterIdentifier TXA-12, type TXA-2 (table 0270),
//!   docStatus TXA-17 (table 0271), date TXA-4 (else TXA-6), author TXA-5 (else
//!   TXA-9), content: one attachment per ED OBX (its type, subtype and Base64
//!   data) and one per run of consecutive TX/FT/ST OBX segments (text/plain, the
//!   lines joined and Base64-encoded); without such OBX (a notification) one
//!   attachment with only a title (TXA-2) and, for text, the content type (TXA-3);
//!   context.encounter.

use serde_json::{Value, json};

use super::types::{text, text_cow};
use super::{Context, MapResult};
use crate::adapter::AdapterError;
use crate::fhir::{Reference, ToFhir};
use crate::hl7::Segment;

fn appointment_status(sch25: Option<&str>, trigger: &str) -> &'static str {
    match sch25.map(str::to_ascii_lowercase).as_deref() {
        Some("booked") => "booked",
        Some("cancelled" | "canceled") => "cancelled",
        Some("complete") => "fulfilled",
        Some("noshow") => "noshow",
        Some("pending" | "overbook") => "pending",
        Some("waitlist") => "waitlist",
        Some("started") => "arrived",
        Some("deleted") => "entered-in-error",
        Some("dc" | "discontinued") => "cancelled",
        Some("blocked") => "booked",
        _ if trigger == "S15" => "cancelled",
        _ => "booked",
    }
}

fn participant_status(filler: Option<String>) -> &'static str {
    match filler.as_deref().map(str::to_ascii_lowercase).as_deref() {
        Some("cancelled" | "canceled" | "deleted" | "noshow") => "declined",
        Some("pending" | "waitlist") => "tentative",
        Some("blocked") => "needs-action",
        _ => "accepted",
    }
}

/// The appointment's key: (system, value) of SCH-2, else SCH-1.
fn appointment_key(ctx: &Context<'_, '_>, sch: &Segment<'_>) -> Result<(String, String), AdapterError> {
    let key = ctx.ei_identifier(sch.field(2).rep(1)).or_else(|| ctx.ei_identifier(sch.field(1).rep(1)));
    let Some(key) = key else {
        return Err(AdapterError::invalid("an appointment without an id (SCH-1 or SCH-2)", Some("SCH-2")));
    };
    Ok((key.system.unwrap_or_else(|| ctx.source_urn()), key.value.unwrap_or_default()))
}

/// A duration (AIS-7 with its units AIS-8, or SCH-9/10) in minutes.
fn minutes(amount: Option<String>, unit: Option<String>) -> Option<f64> {
    let d = amount?.parse::<f64>().ok()?;
    Some(match unit.map(|u| u.to_ascii_lowercase()).as_deref() {
        Some("h" | "hr" | "hour" | "hours") => d * 60.0,
        Some("s" | "sec") => d / 60.0,
        Some("d" | "day" | "days") => d * 1440.0,
        _ => d,
    })
}

/// AIS -> the ServiceRequest the appointment is based on ("SCH[ServiceRequest]"
/// and "AIS[ServiceRequest]"): identifiers SCH-26 / SCH-27 (placer / filler order
/// numbers), code AIS-3, occurrencePeriod AIS-4 (+ the duration AIS-7/AIS-8 for its
/// end), orderDetail AIS-11 / AIS-12 (supplemental service information), status
/// from the filler status AIS-10 (else SCH-25; `revoked` for S15), intent `order`.
/// `None` without a patient or a service.
pub fn map_appointment_request(ctx: &mut Context<'_, '_>, sch: &Segment<'_>, ais: &Segment<'_>) -> MapResult {
    let (Some(subject), Some(code)) = (ctx.patient_ref(), ctx.concept(ais.field(3).rep(1))) else { return Ok(None) };
    let (system, key) = appointment_key(ctx, sch)?;
    let set_id = text(ais.field(1).component(1)).unwrap_or_else(|| "1".into());
    let filler = text(ais.field(10).component(1)).or_else(|| text(sch.field(25).component(1)));
    let status = match appointment_status(filler.as_deref(), ctx.message.trigger_event()) {
        "cancelled" | "noshow" => "revoked",
        "fulfilled" => "completed",
        "entered-in-error" => "entered-in-error",
        _ => "active",
    };
    let mut r = json!({
        "resourceType": "ServiceRequest",
        "id": ctx.id("ServiceRequest", &system, &[&key, "AIS", &set_id]),
        "meta": ctx.meta.to_fhir(),
        "status": status,
        "intent": "order",
        "code": code.to_fhir(),
        "subject": subject.to_fhir(),
    });
    let identifiers: Vec<Value> = [(26, "PLAC"), (27, "FILL")]
        .into_iter()
        .filter_map(|(n, t)| ctx.ei_identifier(sch.field(n).rep(1)).map(|i| i.with_v2_type(t).to_fhir()))
        .collect();
    if !identifiers.is_empty() {
        r["identifier"] = Value::Array(identifiers);
    }
    let detail: Vec<Value> = [11, 12].into_iter().filter_map(|n| ctx.concept(ais.field(n).rep(1)).map(|c| c.to_fhir())).collect();
    if !detail.is_empty() {
        r["orderDetail"] = Value::Array(detail);
    }
    let start_raw = text_cow(ais.field(4).component(1)).map(|t| t.into_owned());
    if let Some(start) = ctx.instant(start_raw.as_deref(), "AIS-4") {
        let mut period = json!({ "start": start });
        let end = minutes(text(ais.field(7).component(1)), text(ais.field(8).component(1)))
            .filter(|m| m.abs() < 1e7)
            .and_then(|m| add_minutes(&start, m.round() as i64));
        if let Some(end) = end {
            period["end"] = end.into();
        }
        r["occurrencePeriod"] = period;
    }
    if let Some(e) = ctx.encounter_ref() {
        r["encounter"] = e.to_fhir();
    }
    Ok(Some(r.into()))
}

/// SCH and the resources after it -> Appointment.
pub fn map_appointment(ctx: &mut Context<'_, '_>, sch: &Segment<'_>) -> MapResult {
    let msg = ctx.message;
    let placer = ctx.ei_identifier(sch.field(1).rep(1));
    let filler = ctx.ei_identifier(sch.field(2).rep(1));
    let (system, key) = appointment_key(ctx, sch)?;
    let mut a = json!({
        "resourceType": "Appointment",
        "id": ctx.id("Appointment", &system, &[&key]),
        "meta": ctx.meta.to_fhir(),
        "status": appointment_status(text(sch.field(25).component(1)).as_deref(), msg.trigger_event()),
    });
    let identifiers: Vec<Value> = [(placer, "PLAC"), (filler, "FILL")].into_iter().filter_map(|(i, t)| i.map(|i| i.with_v2_type(t).to_fhir())).collect();
    if !identifiers.is_empty() {
        a["identifier"] = Value::Array(identifiers);
    }
    if let Some(r) = ctx.concept_in(sch.field(7).rep(1), "HL70276") {
        a["reasonCode"] = json!([r.to_fhir()]);
    }
    if let Some(t) = ctx.concept_in(sch.field(8).rep(1), "HL70277") {
        a["appointmentType"] = t.to_fhir();
    }
    let minutes = minutes(text(sch.field(9).component(1)), text(sch.field(10).component(1)));
    // (positiveInt: at most 2^31 - 1)
    if let Some(m) = minutes.filter(|m| *m >= 1.0) {
        a["minutesDuration"] = (m.round().min(i32::MAX as f64) as u64).into();
    }
    // Start and end: TQ1, else SCH-11 (TQ).
    let tq1 = msg.segment("TQ1");
    let raw = |s: Option<&Segment<'_>>, f: usize, c: usize| s.and_then(|s| text_cow(s.field(f).component(c)).map(|t| t.into_owned()));
    let start_raw = raw(tq1, 7, 1).or_else(|| raw(Some(sch), 11, 4));
    let end_raw = raw(tq1, 8, 1).or_else(|| raw(Some(sch), 11, 5));
    let start = ctx.instant(start_raw.as_deref(), "TQ1-7");
    let end = ctx.instant(end_raw.as_deref(), "TQ1-8");
    // FHIR: start and end together (an end from the start and the duration when
    // only the start is sent), and only a proposed, cancelled or waitlisted
    // appointment may have neither (app-3).
    let end = end.or_else(|| start.as_deref().zip(a["minutesDuration"].as_u64()).and_then(|(s, m)| add_minutes(s, m as i64)));
    if let (Some(s), Some(e)) = (start, end) {
        a["start"] = s.into();
        a["end"] = e.into();
    } else if !matches!(a["status"].as_str(), Some("proposed" | "cancelled" | "waitlist")) {
        ctx.warn("an appointment without a start and end (TQ1-7/8, SCH-11) or a duration: status proposed");
        a["status"] = "proposed".into();
    }
    let mut participants = Vec::new();
    if let Some(p) = ctx.patient_ref() {
        participants.push(json!({"actor": p.to_fhir(), "status": "accepted"}));
    }
    let mut service_types = Vec::new();
    for seg in msg.segments() {
        match seg.id() {
            "AIS" => service_types.extend(ctx.concept(seg.field(3).rep(1)).map(|c| c.to_fhir())),
            "AIP" => {
                if let Some(r) = ctx.practitioner(seg.field(3).rep(1)) {
                    let mut p = json!({"actor": r.to_fhir(), "status": participant_status(text(seg.field(12).component(1)))});
                    if let Some(role) = ctx.concept(seg.field(4).rep(1)) {
                        p["type"] = json!([role.to_fhir()]);
                    }
                    participants.push(p);
                }
            }
            "AIL" => {
                if let Some(r) = ctx.location(seg.field(3).rep(1)) {
                    participants.push(json!({"actor": r.to_fhir(), "status": participant_status(text(seg.field(12).component(1)))}));
                }
            }
            "AIG" => {
                let resource = seg.field(3).rep(1);
                if let Some(display) = text(resource.component(2)).or_else(|| text(resource.component(1))) {
                    let actor = Reference { type_: Some("Device".into()), display: Some(display), ..Default::default() };
                    participants.push(json!({"actor": actor.to_fhir(), "status": participant_status(text(seg.field(14).component(1)))}));
                }
            }
            _ => {}
        }
    }
    if participants.is_empty() {
        return Err(AdapterError::invalid("an appointment without a patient or resources (PID, AIP, AIL, AIG)", Some("PID")));
    }
    a["participant"] = Value::Array(participants);
    if !service_types.is_empty() {
        a["serviceType"] = Value::Array(service_types);
    }
    let comments: Vec<String> = msg
        .segments()
        .iter()
        .skip_while(|s| s.id() != "SCH")
        .skip(1)
        .skip_while(|s| s.id() == "TQ1")
        .take_while(|s| s.id() == "NTE")
        .filter_map(|n| text(n.field(3).component(1)))
        .collect();
    if !comments.is_empty() {
        a["comment"] = comments.join("\n").into();
    }
    Ok(Some(a.into()))
}

fn doc_status(txa17: Option<&str>) -> Option<&'static str> {
    match txa17 {
        Some("AU" | "LA") => Some("final"),
        Some("DI" | "DO" | "IN" | "IP" | "PA") => Some("preliminary"),
        _ => None,
    }
}

/// A FHIR instant (`YYYY-MM-DDThh:mm:ss[.f](Z|+hh:mm)`) plus `minutes`, in the same
/// offset; `None` if it is not one.
fn add_minutes(instant: &str, minutes: i64) -> Option<String> {
    let b = instant.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |a: usize, z: usize| instant.get(a..z)?.parse::<i64>().ok();
    let (y, mo, d, h, mi, s) = (num(0, 4)?, num(5, 7)?, num(8, 10)?, num(11, 13)?, num(14, 16)?, num(17, 19)?);
    let offset = &instant[instant[19..].find(['Z', '+', '-']).map(|i| i + 19)?..];
    let days = super::context::days_from_civil(y, u32::try_from(mo).ok()?, u32::try_from(d).ok()?);
    let total = days * 1440 + h * 60 + mi + minutes;
    let (days, rem) = (total.div_euclid(1440), total.rem_euclid(1440));
    let (year, month, day) = super::context::civil_from_days(days);
    Some(format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{s:02}{offset}", rem / 60, rem % 60))
}

/// Base64 (standard alphabet, padded).
fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The text of a text-typed OBX (TX, FT, ST, CF; repetitions as lines), `None` for
/// other types.
fn text_lines(obx: &Segment<'_>) -> Option<String> {
    let kind = text(obx.field(2).component(1)).unwrap_or_default();
    matches!(kind.as_str(), "TX" | "FT" | "ST" | "CF").then(|| obx.field(5).repetitions().map(|r| r.value().into_owned()).collect::<Vec<_>>().join("\n"))
}

/// The document's attachments: each ED OBX one (its type and Base64 data); each run
/// of consecutive text OBX segments one text/plain attachment (a report sent a line
/// per OBX is one text).
fn attachments<'s, 'a: 's>(obxs: impl Iterator<Item = &'s Segment<'a>>) -> Vec<Value> {
    let mut out = Vec::new();
    let mut run: Option<String> = None;
    let flush = |run: &mut Option<String>, out: &mut Vec<Value>| {
        if let Some(body) = run.take().filter(|b| !b.trim().is_empty()) {
            out.push(json!({"contentType": "text/plain; charset=utf-8", "data": base64(body.as_bytes())}));
        }
    };
    for obx in obxs {
        match text_lines(obx) {
            Some(lines) => match run.as_mut() {
                Some(body) => {
                    body.push('\n');
                    body.push_str(&lines);
                }
                None => run = Some(lines),
            },
            None => {
                flush(&mut run, &mut out);
                out.extend(attachment(obx));
            }
        }
    }
    flush(&mut run, &mut out);
    out
}

/// TXA-3 (content presentation, table 0191) -> a MIME type, for the text kinds.
fn content_type_of(presentation: &str) -> Option<&'static str> {
    match presentation.to_ascii_uppercase().as_str() {
        "TX" | "FT" | "TEXT" => Some("text/plain"),
        _ => None,
    }
}

/// One ED OBX of a document as an attachment: its type and (Base64) data.
fn attachment(obx: &Segment<'_>) -> Option<Value> {
    let kind = text(obx.field(2).component(1)).unwrap_or_default();
    match kind.as_str() {
        "ED" => {
            let v = obx.field(5).rep(1);
            // ED-2 is HL7 table 0191 (AP, IM, AU, TEXT...), ED-3 the subtype.
            let kind = text(v.component(2)).map(|t| match t.to_ascii_uppercase().as_str() {
                "AP" => "application".to_string(),
                "IM" => "image".to_string(),
                "AU" => "audio".to_string(),
                "TEXT" | "TX" => "text".to_string(),
                "MULTIPART" => "multipart".to_string(),
                _ => t.to_ascii_lowercase(),
            });
            let content_type = match (kind, text(v.component(3))) {
                (Some(t), Some(s)) => format!("{t}/{}", s.to_ascii_lowercase()),
                (Some(t), None) if t == "text" => "text/plain".into(),
                _ => "application/octet-stream".into(),
            };
            let mut a = json!({"contentType": content_type});
            let data = v.component(5).raw().trim().to_owned();
            if !data.is_empty() {
                let encoding = text(v.component(4)).unwrap_or_default();
                a["data"] = if encoding.eq_ignore_ascii_case("base64") { data.into() } else { base64(data.as_bytes()).into() };
            }
            Some(a)
        }
        _ => None,
    }
}

/// TXA and the OBX segments after it -> DocumentReference. `based_on`: the order's
/// ServiceRequest, if there is one.
pub fn map_document(ctx: &mut Context<'_, '_>, txa: &Segment<'_>, based_on: Option<&str>) -> MapResult {
    let msg = ctx.message;
    let unique = ctx.ei_identifier(txa.field(12).rep(1));
    let (system, key) = match &unique {
        Some(i) => (i.system.clone().unwrap_or_else(|| ctx.source_urn()), i.value.clone().unwrap_or_default()),
        None => (ctx.source_urn(), format!("{}/TXA/{}", msg.control_id(), text(txa.field(1).component(1)).unwrap_or_default())),
    };
    let mut content: Vec<Value> = attachments(msg.segments().iter().skip_while(|s| !std::ptr::eq(s.raw(), txa.raw())).filter(|s| s.id() == "OBX"))
        .into_iter()
        .map(|a| json!({"attachment": a}))
        .collect();
    if content.is_empty() {
        // A notification of a document (T01/T03, or a T04 sent without its text):
        // FHIR needs one content entry; an attachment without data or url says
        // "this document, not here" (its type as the title, TXA-3 its content type).
        ctx.warn("a document without content (no OBX with TX, FT, ST or ED): its metadata only");
        let title = ctx.concept_in(txa.field(2).rep(1), "HL70270").and_then(|c| c.text.or_else(|| c.coding.first().and_then(|c| c.display.clone().or(c.code.clone()))));
        let mut a = json!({ "title": title.unwrap_or_else(|| "document".into()) });
        if let Some(t) = text(txa.field(3).component(1)).and_then(|t| content_type_of(&t)) {
            a["contentType"] = t.into();
        }
        content.push(json!({ "attachment": a }));
    }
    let mut d = json!({
        "resourceType": "DocumentReference",
        "id": ctx.id("DocumentReference", &system, &[&key]),
        "meta": ctx.meta.to_fhir(),
        "status": "current",
        "content": content,
    });
    if let Some(u) = unique {
        d["masterIdentifier"] = u.to_fhir();
    }
    if let Some(s) = doc_status(text(txa.field(17).component(1)).as_deref()) {
        d["docStatus"] = s.into();
    }
    if let Some(t) = ctx.table_concept(text(txa.field(2).component(1)), "HL70270") {
        d["type"] = t.to_fhir();
    }
    if let Some(p) = ctx.patient_ref() {
        d["subject"] = p.to_fhir();
    }
    let when = text_cow(txa.field(4).component(1)).or_else(|| text_cow(txa.field(6).component(1))).map(|t| t.into_owned());
    if let Some(t) = ctx.instant(when.as_deref(), "TXA-4") {
        d["date"] = t.into();
    }
    let author = ctx.practitioner(txa.field(5).rep(1)).or_else(|| ctx.practitioner(txa.field(9).rep(1)));
    if let Some(a) = author {
        d["author"] = json!([a.to_fhir()]);
    }
    let mut context = serde_json::Map::new();
    if let Some(e) = ctx.encounter_ref() {
        context.insert("encounter".into(), json!([e.to_fhir()]));
    }
    if let Some(sr) = based_on {
        context.insert("related".into(), json!([{"reference": format!("ServiceRequest/{sr}")}]));
    }
    if !context.is_empty() {
        d["context"] = Value::Object(context);
    }
    Ok(Some(d.into()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn minutes_are_added_across_days_months_and_years() {
        assert_eq!(super::add_minutes("2024-01-05T09:00:00+02:00", 30).as_deref(), Some("2024-01-05T09:30:00+02:00"));
        assert_eq!(super::add_minutes("2024-02-28T23:45:10Z", 30).as_deref(), Some("2024-02-29T00:15:10Z"));
        assert_eq!(super::add_minutes("2023-12-31T23:00:00.5-05:00", 120).as_deref(), Some("2024-01-01T01:00:00-05:00"));
        assert_eq!(super::add_minutes("2024-01-05", 30), None);
    }

    #[test]
    fn base64_matches_the_standard_alphabet() {
        assert_eq!(super::base64(b""), "");
        assert_eq!(super::base64(b"f"), "Zg==");
        assert_eq!(super::base64(b"fo"), "Zm8=");
        assert_eq!(super::base64(b"foo"), "Zm9v");
        assert_eq!(super::base64(b"foob"), "Zm9vYg==");
        assert_eq!(super::base64("Müller\n".as_bytes()), "TcO8bGxlcgo=");
    }
}
