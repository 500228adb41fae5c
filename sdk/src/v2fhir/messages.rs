//! Message-level flows: which segments are mapped, in which order, and how the
//! resources refer to each other.

use super::billing;
use super::patient;
use super::observation::note;
use super::{Context, Order};
use crate::adapter::AdapterError;
use crate::fhir::{PatientLink, Reference, Resource, ToFhir};
use crate::hl7::Segment;
use serde_json::Value;

/// Triggers whose PV1 is the point of the event: without one the message is invalid.
const VISIT_EVENTS: &[&str] = &["A02", "A03", "A11", "A13"];
/// Triggers that carry PID/MRG pairs.
const MERGE_EVENTS: &[&str] = &["A40", "A39", "A34"];

/// ADT: PID (required), NK1, PV1/PV2, OBX, AL1, DG1, PR1, Z-segments; A40: merges.
pub(super) fn map_adt(ctx: &mut Context<'_, '_>) -> Result<(), AdapterError> {
    let msg = ctx.message;
    let trigger = msg.trigger_event();
    if msg.segment("PID").is_none() {
        return Err(AdapterError::invalid(
            format!("ADT^{trigger} without a PID segment"),
            Some("PID"),
        ));
    }
    if MERGE_EVENTS.contains(&trigger) {
        return map_merge(ctx);
    }
    if msg.segment("PV1").is_none() {
        if VISIT_EVENTS.contains(&trigger) {
            return Err(AdapterError::invalid(
                format!("ADT^{trigger} without a PV1 segment"),
                Some("PV1"),
            ));
        }
        ctx.warn("no PV1 segment: no Encounter mapped");
    }
    walk(ctx)
}

/// ORU: per patient group PID, PV1; per order OBR with its OBX (+ NTE) segments.
pub(super) fn map_oru(ctx: &mut Context<'_, '_>) -> Result<(), AdapterError> {
    if ctx.message.segment("PID").is_none() {
        ctx.warn("no PID segment: observations have no subject");
    }
    walk(ctx)
}

/// VXU / RDE / RAS: PID (required), PV1, then per ORC an RXA (Immunization; in
/// RAS a MedicationAdministration) or an RXE (MedicationRequest), with OBX / NTE.
pub(super) fn map_orders(ctx: &mut Context<'_, '_>) -> Result<(), AdapterError> {
    let msg = ctx.message;
    if msg.segment("PID").is_none() {
        let t = format!("{}^{}", msg.message_code(), msg.trigger_event());
        return Err(AdapterError::invalid(
            format!("{t} without a PID segment"),
            Some("PID"),
        ));
    }
    walk(ctx)
}

/// ORM / OML (orders), DFT (financial transactions: the patient, visit, coverage
/// and clinical context, and the FT1 charges): PID, then as ORU.
pub(super) fn map_order_messages(ctx: &mut Context<'_, '_>) -> Result<(), AdapterError> {
    if ctx.message.segment("PID").is_none() {
        ctx.warn("no PID segment: orders have no subject and are not mapped");
    }
    walk(ctx)
}

/// SIU: the patient, visit and clinical segments as in ADT, then SCH with its
/// resources (AIS/AIG/AIL/AIP) as one Appointment.
pub(super) fn map_siu(ctx: &mut Context<'_, '_>) -> Result<(), AdapterError> {
    let Some(sch) = ctx.message.segment("SCH") else {
        return Err(AdapterError::invalid("SIU without an SCH segment", Some("SCH")));
    };
    walk(ctx)?;
    let mut requests = Vec::new();
    for (i, ais) in ctx.message.segments().iter().enumerate().filter(|(_, s)| s.id() == "AIS") {
        let v = ctx.mapper.map_appointment_request(ctx, sch, ais)?;
        requests.extend(id(&push(ctx, v, i)).map(|sr| Reference::to("ServiceRequest", &sr)));
    }
    let mut v = ctx.mapper.map_appointment(ctx, sch)?;
    if let Some(a) = v.as_mut() {
        for r in requests {
            append(a, "basedOn", r.to_fhir());
        }
    }
    push(ctx, v, usize::MAX);
    Ok(())
}

/// MDM: PID (required), PV1, the order (ORC/OBR -> ServiceRequest) and the document
/// (TXA + its OBX content -> DocumentReference). The OBX segments are the
/// document's content, not observations.
pub(super) fn map_mdm(ctx: &mut Context<'_, '_>) -> Result<(), AdapterError> {
    let (msg, m) = (ctx.message, ctx.mapper);
    if msg.segment("PID").is_none() {
        return Err(AdapterError::invalid("MDM without a PID segment", Some("PID")));
    }
    if msg.segment("TXA").is_none() {
        return Err(AdapterError::invalid("MDM without a TXA segment", Some("TXA")));
    }
    let mut orc = None;
    let mut request = None;
    for (i, seg) in msg.segments().iter().enumerate() {
        match seg.id() {
            "PID" => {
                let v = m.map_patient(ctx, seg)?;
                ctx.patient_id = id(&push(ctx, v, i));
            }
            "PV1" => {
                let pv2 = msg.segments().get(i + 1).filter(|s| s.id() == "PV2");
                let v = m.map_encounter(ctx, seg, pv2)?;
                ctx.encounter_id = id(&push(ctx, v, i));
            }
            "ORC" => orc = Some(seg),
            "OBR" => {
                let order = m.order(ctx, seg);
                ctx.order = Some(order.clone());
                let v = m.map_service_request(ctx, Some(seg), orc, &order)?;
                request = id(&push(ctx, v, i));
            }
            "TXA" => {
                let v = m.map_document(ctx, seg, request.as_deref())?;
                push(ctx, v, i);
            }
            z if z.starts_with('Z') => {
                let v = m.map_z_segment(ctx, seg)?;
                push(ctx, v, i);
            }
            _ => {}
        }
    }
    Ok(())
}

/// The first `id` segment after position `i`, before any of `stop`.
fn following<'s, 'a>(
    segs: &'s [Segment<'a>],
    i: usize,
    id: &str,
    stop: &[&str],
) -> Option<&'s Segment<'a>> {
    segs[i + 1..]
        .iter()
        .take_while(|s| !stop.contains(&s.id()))
        .find(|s| s.id() == id)
}

fn index(p: Option<(usize, String)>) -> Option<usize> {
    p.map(|(i, _)| i)
}

fn id(p: &Option<(usize, String)>) -> Option<String> {
    p.as_ref().map(|(_, id)| id.clone())
}

/// Add a resource; returns its index and id. Ids must be unique within a message
/// (the lake MERGEs a batch by id): a resource whose id is already taken is dropped
/// when identical, else re-keyed by its segment's position `pos`, with a warning.
fn push(ctx: &mut Context<'_, '_>, r: Option<Resource>, pos: usize) -> Option<(usize, String)> {
    let mut r = r?;
    let (rt, id) = (r.resource_type()?, r.id()?);
    if let Some(i) = ctx
        .resources
        .iter()
        .position(|o| o.resource_type() == Some(rt) && o.id() == Some(id))
    {
        if ctx.resources[i] == r {
            return Some((i, id.to_owned()));
        }
        let (rt, id) = (rt.to_owned(), id.to_owned());
        ctx.warn(format!(
            "{rt}: two segments with the same key; the later one keyed by its position"
        ));
        let new_id = ctx.id(&rt, &id, &[&pos.to_string()]);
        r.set_id(new_id);
    }
    let id = r.id()?.to_owned();
    ctx.resources.push(r);
    Some((ctx.resources.len() - 1, id))
}

/// Add `item` to the list member `key` of a resource given as JSON, unless it is
/// there already.
fn append_unique(resource: &mut Resource, key: &str, item: Value) {
    if !resource.json_mut()[key].as_array().is_some_and(|a| a.contains(&item)) {
        append(resource, key, item);
    }
}

/// Add `item` to the list member `key` of a resource given as JSON.
fn append(resource: &mut Resource, key: &str, item: Value) {
    let resource = resource.json_mut();
    match resource.get_mut(key).and_then(Value::as_array_mut) {
        Some(a) => a.push(item),
        None => resource[key] = Value::Array(vec![item]),
    }
}

/// Add `items` to the list member `key` of the Patient at `patient` (`list` on the
/// typed builder), those it does not hold yet.
fn add_to_patient<T: PartialEq + ToFhir>(
    ctx: &mut Context<'_, '_>,
    patient: Option<usize>,
    key: &str,
    list: fn(&mut crate::fhir::Patient) -> &mut Vec<T>,
    items: Vec<T>,
) {
    let Some(p) = patient else { return };
    match &mut ctx.resources[p] {
        Resource::Patient(p) => {
            let list = list(p);
            for item in items {
                if !list.contains(&item) {
                    list.push(item);
                }
            }
        }
        other => {
            for item in items {
                append_unique(other, key, item.to_fhir());
            }
        }
    }
}

/// An order being mapped: its OBR, the ids of its results, its ServiceRequest and
/// its specimens.
struct Group<'s, 'a> {
    obr: &'s Segment<'a>,
    results: Vec<String>,
    request: Option<String>,
    specimens: Vec<String>,
}

/// One pass over the segments in order.
fn walk(ctx: &mut Context<'_, '_>) -> Result<(), AdapterError> {
    let (msg, m) = (ctx.message, ctx.mapper);
    let segs = msg.segments();
    let mut group: Option<Group<'_, '_>> = None;
    let mut last_patient: Option<usize> = None;
    let mut last_obs: Option<usize> = None;
    let mut orc: Option<&Segment<'_>> = None;
    for (i, seg) in segs.iter().enumerate() {
        match seg.id() {
            "PID" => {
                close_group(ctx, &mut group)?;
                let v = m.map_patient(ctx, seg)?;
                let p = push(ctx, v, i);
                ctx.patient_id = id(&p);
                ctx.encounter_id = None;
                last_patient = index(p);
                last_obs = None;
                orc = None;
            }
            "NK1" => {
                if let Some(p) = last_patient
                    && let Some(c) = m.map_patient_contact(ctx, seg)
                {
                    match &mut ctx.resources[p] {
                        Resource::Patient(p) => p.contact.push(c),
                        other => append(other, "contact", c.to_fhir()),
                    }
                }
                let v = m.map_related_person(ctx, seg)?;
                push(ctx, v, i);
            }
            "GT1" => {
                let ids = m.patient_identifiers(ctx, seg);
                add_to_patient(ctx, last_patient, "identifier", |p| &mut p.identifier, ids);
                let v = m.map_guarantor(ctx, seg)?;
                push(ctx, v, i);
            }
            "IN2" | "DB1" => {
                let ids = m.patient_identifiers(ctx, seg);
                add_to_patient(ctx, last_patient, "identifier", |p| &mut p.identifier, ids);
            }
            "FT1" if billing::is_charge(seg) => {
                let mut services = Vec::new();
                let v = m.map_charged_procedure(ctx, seg)?;
                services.extend(id(&push(ctx, v, i)).map(|p| Reference::to("Procedure", &p)));
                let v = m.map_charged_dispense(ctx, seg)?;
                services.extend(id(&push(ctx, v, i)).map(|d| Reference::to("MedicationDispense", &d)));
                let v = m.map_charge(ctx, seg, &services)?;
                push(ctx, v, i);
            }
            "FT1" => ctx.warn("FT1 payment (FT1-6 PY): not a charge, not mapped"),
            "IN1" => {
                let insured = m.map_insured(ctx, seg)?;
                let insured = push(ctx, insured, i);
                let v = m.map_coverage(ctx, seg, id(&insured).as_deref())?;
                push(ctx, v, i);
            }
            "PV1" => {
                let pv2 = segs.get(i + 1).filter(|s| s.id() == "PV2");
                let v = m.map_encounter(ctx, seg, pv2)?;
                let p = push(ctx, v, i);
                ctx.encounter_id = id(&p);
            }
            "ORC" => {
                // A new order: OBX segments that follow before any OBR/RXA key on it.
                close_group(ctx, &mut group)?;
                orc = Some(seg);
                ctx.order = [3, 2].iter().find_map(|&n| {
                    let id = ctx.ei_identifier(seg.field(n).rep(1))?;
                    Some(Order {
                        system: id.system.unwrap_or_else(|| ctx.source_urn()),
                        key: id.value?,
                    })
                });
                if msg.message_code() == "VXU"
                    && let Some(order) = ctx.order.clone()
                {
                    let v = m.map_service_request(ctx, None, Some(seg), &order)?;
                    push(ctx, v, i);
                }
                last_obs = None;
            }
            "RXA" => {
                let rxr = following(segs, i, "RXR", &["RXA", "ORC", "PID"]);
                let v = if msg.message_code() == "RAS" {
                    m.map_medication_administration(ctx, seg, orc, rxr)?
                } else {
                    m.map_immunization(ctx, seg, orc, rxr)?
                };
                last_obs = None;
                push(ctx, v, i);
            }
            "RXE" => {
                let rxr = following(segs, i, "RXR", &["RXE", "ORC", "PID"]);
                let v = m.map_medication_request(ctx, seg, orc, rxr)?;
                last_obs = None;
                push(ctx, v, i);
            }
            "OBR" => {
                close_group(ctx, &mut group)?;
                let order = m.order(ctx, seg);
                ctx.order = Some(order.clone());
                let v = m.map_service_request(ctx, Some(seg), orc, &order)?;
                let request = id(&push(ctx, v, i));
                group = Some(Group { obr: seg, results: Vec::new(), request, specimens: Vec::new() });
                last_obs = None;
            }
            "OBX" => {
                let v = m.map_observation(ctx, seg, group.as_ref().map(|g| g.obr))?;
                let p = push(ctx, v, i);
                if let (Some(g), Some(id)) = (group.as_mut(), id(&p)) {
                    g.results.push(id);
                }
                last_obs = index(p);
            }
            "SPM" => {
                let order = ctx.order.clone();
                let request = group.as_ref().and_then(|g| g.request.clone());
                let v = m.map_specimen(ctx, seg, order.as_ref(), request.as_deref())?;
                if let (Some(g), Some(id)) = (group.as_mut(), id(&push(ctx, v, i))) {
                    if !g.specimens.contains(&id) {
                        g.specimens.push(id);
                    }
                }
                last_obs = None;
            }
            "NTE" => {
                if let Some(o) = last_obs
                    && let Some(n) = note(seg)
                {
                    match &mut ctx.resources[o] {
                        Resource::Observation(o) => o.note.push(n),
                        other => append(other, "note", n.to_fhir()),
                    }
                }
            }
            "AL1" => {
                let v = m.map_allergy(ctx, seg)?;
                push(ctx, v, i);
            }
            "IAM" => {
                let v = m.map_allergy_iam(ctx, seg)?;
                push(ctx, v, i);
            }
            "PD1" | "ROL" if seg.id() == "PD1" || patient::is_primary_care_role(seg) => {
                let gps = m.general_practitioners(ctx, seg);
                add_to_patient(ctx, last_patient, "generalPractitioner", |p| &mut p.general_practitioner, gps);
            }
            "ROL" => {
                let encounter = ctx.encounter_id.clone();
                if let Some(p) = m.encounter_role(ctx, seg)
                    && let Some(e) = encounter
                {
                    match ctx.resources.iter_mut().find(|r| r.resource_type() == Some("Encounter") && r.id() == Some(&e)) {
                        Some(Resource::Encounter(r)) => {
                            if !r.participant.contains(&p) {
                                r.participant.push(p);
                            }
                        }
                        Some(other) => append_unique(other, "participant", p.to_fhir()),
                        None => {}
                    }
                }
            }
            "DG1" => {
                let v = m.map_condition(ctx, seg)?;
                push(ctx, v, i);
            }
            "PR1" => {
                let v = m.map_procedure(ctx, seg)?;
                push(ctx, v, i);
            }
            "PDA" => {
                for r in m.map_death(ctx, seg) {
                    push(ctx, Some(r), i);
                }
            }
            "ACC" => {
                let v = m.map_accident(ctx, seg)?;
                push(ctx, v, i);
            }
            "RF1" => {
                let v = m.map_referral(ctx, seg)?;
                push(ctx, v, i);
            }
            z if z.starts_with('Z') => {
                let v = m.map_z_segment(ctx, seg)?;
                push(ctx, v, i);
            }
            _ => {}
        }
    }
    close_group(ctx, &mut group)
}

/// Finish an order: its specimen from the OBR's specimen fields (besides any SPM:
/// "OBR[Specimen]" yields one per OBR), the specimens on its ServiceRequest, and in a result message (ORU, OUL) its DiagnosticReport,
/// `basedOn` the ServiceRequest.
fn close_group(ctx: &mut Context<'_, '_>, group: &mut Option<Group<'_, '_>>) -> Result<(), AdapterError> {
    if let Some(mut g) = group.take() {
        if let Some(order) = ctx.order.clone() {
            let v = ctx.mapper.map_obr_specimen(ctx, g.obr, &order, g.request.as_deref())?;
            if let Some(s) = id(&push(ctx, v, usize::MAX))
                && !g.specimens.contains(&s)
            {
                g.specimens.push(s);
            }
        }
        let specimens: Vec<Reference> = g.specimens.iter().map(|s| Reference::to("Specimen", s)).collect();
        if let Some(sr) = &g.request
            && !specimens.is_empty()
        {
            // (typed when the standard map made it; JSON from an override)
            match ctx.resources.iter_mut().find(|r| r.resource_type() == Some("ServiceRequest") && r.id() == Some(sr)) {
                Some(Resource::ServiceRequest(r)) => r.specimen.extend(specimens.iter().cloned()),
                Some(other) => {
                    for s in &specimens {
                        append(other, "specimen", s.to_fhir());
                    }
                }
                None => {}
            }
        }
        if matches!(ctx.message.message_code(), "ORU" | "OUL") {
            let mut v = ctx.mapper.map_diagnostic_report(ctx, g.obr, &g.results)?;
            let based_on = g.request.as_ref().map(|sr| Reference::to("ServiceRequest", sr));
            match v.as_mut() {
                Some(Resource::DiagnosticReport(r)) => {
                    r.based_on.extend(based_on);
                    r.specimen.extend(specimens);
                }
                Some(other) => {
                    if let Some(b) = based_on {
                        append(other, "basedOn", b.to_fhir());
                    }
                    for s in &specimens {
                        append(other, "specimen", s.to_fhir());
                    }
                }
                None => {}
            }
            push(ctx, v, usize::MAX);
        }
    }
    ctx.order = None;
    Ok(())
}

/// A40 (and other PID/MRG events): each PID is a surviving patient, the MRG after
/// it names the patient merged into it.
fn map_merge(ctx: &mut Context<'_, '_>) -> Result<(), AdapterError> {
    let (msg, m) = (ctx.message, ctx.mapper);
    if msg.segment("MRG").is_none() {
        return Err(AdapterError::invalid(
            "merge without an MRG segment",
            Some("MRG"),
        ));
    }
    let mut surviving: Option<(usize, String)> = None;
    for (pos, seg) in msg.segments().iter().enumerate() {
        match seg.id() {
            "PID" => {
                let v = m.map_patient(ctx, seg)?;
                surviving = push(ctx, v, pos);
                ctx.patient_id = id(&surviving);
            }
            "MRG" => {
                let Some((i, id)) = surviving.clone() else {
                    return Err(AdapterError::invalid(
                        "MRG without a PID before it",
                        Some("MRG"),
                    ));
                };
                let merged = m.map_merged_patient(ctx, seg, &id)?;
                if let Some((_, old)) = push(ctx, merged, pos) {
                    let link = PatientLink {
                        other: Reference::to("Patient", &old),
                        type_: "replaces".into(),
                    };
                    match &mut ctx.resources[i] {
                        Resource::Patient(p) => p.link.push(link),
                        other => append(other, "link", link.to_fhir()),
                    }
                    let linkage = linkage(ctx, &id, &old);
                    push(ctx, Some(linkage), pos);
                }
            }
            z if z.starts_with('Z') => {
                let v = m.map_z_segment(ctx, seg)?;
                push(ctx, v, pos);
            }
            _ => {}
        }
    }
    Ok(())
}

/// A merge as a Linkage (what FHIR-Converter makes of A40; `Patient.link` says the
/// same on the two Patients): the surviving patient the `source`, the merged one
/// `historical`. Keyed by the pair.
fn linkage(ctx: &Context<'_, '_>, surviving: &str, merged: &str) -> Resource {
    serde_json::json!({
        "resourceType": "Linkage",
        "id": ctx.id("Linkage", "urn:ehrgate:merge", &[surviving, merged]),
        "meta": ctx.meta.to_fhir(),
        "item": [
            {"type": "source", "resource": Reference::to("Patient", surviving).to_fhir()},
            {"type": "historical", "resource": Reference::to("Patient", merged).to_fhir()},
        ],
    })
    .into()
}
