//! The standard HL7v2 -> FHIR R4 mapping, after the HL7 v2-to-FHIR IG's segment maps.
//!
//! | message | resources |
//! |---|---|
//! | ADT A01 A04 A05 A06 A07 A08 A28 A31 | Patient (+ NK1 as `Patient.contact` and a RelatedPerson), Encounter (PV1/PV2; none for A28/A31 without PV1), Observation (OBX), AllergyIntolerance (AL1), Condition (DG1), Procedure (PR1), RelatedPerson (GT1 guarantor; IN1 insured), Coverage (IN1), ChargeItem (FT1), Condition/Observation/Procedure (PDA death and autopsy), Observation (ACC accident), ServiceRequest (RF1 referral); the patient's identifiers in IN2, GT1 (self) and DB1 (patient) on the Patient |
//! | ADT A02 | the same; Encounter.location: PV1-3 active, PV1-6 completed |
//! | ADT A03 | the same; Encounter `finished`, `period.end` from PV1-45 |
//! | ADT A11 | the same; Encounter `cancelled` (cancel admit) |
//! | ADT A13 | the same; Encounter `in-progress` again, no `period.end` (cancel discharge) |
//! | ADT A34 A39 A40 | per PID/MRG pair: the surviving Patient with `link` `replaces`, the merged one (MRG-1) `active: false` with `link` `replaced-by`, and a Linkage of the two (`source`, `historical`) |
//! | ORU R01 | Patient, Encounter (if PV1), a ServiceRequest per OBR (ORC/OBR), an Observation per OBX (NTE -> `note`), a Specimen per SPM and one from the OBR's specimen fields (OBR-7/8/9/10/14/15), a DiagnosticReport per OBR with `result`, `basedOn` and `specimen` references |
//! | ORM O01, OML O21 | as ORU without reports: ServiceRequest per OBR, Specimen, Observation (OBX), plus the ADT segments present |
//! | SIU S12-S15 | Patient, Encounter, Observation, Condition as in ADT, a ServiceRequest per AIS, and one Appointment (SCH + AIS/AIG/AIL/AIP) `basedOn` them |
//! | MDM T02 T04 | Patient, Encounter, ServiceRequest (ORC/OBR), one DocumentReference (TXA; each OBX an attachment) |
//! | DFT P03 | the patient, visit, coverage and clinical segments as in ADT; a ChargeItem per FT1 charge, with the Procedure (FT1-25) and MedicationDispense (FT1-29) it bills |
//! | VXU V04 | Patient, Encounter (if PV1), a ServiceRequest per ORC, an Immunization per ORC/RXA (+ RXR), Observation per OBX |
//! | RDE O11 | Patient, Encounter (if PV1), a MedicationRequest per ORC/RXE (+ RXR) (RXO is not mapped) |
//! | RAS O17 | Patient, Encounter (if PV1), a MedicationAdministration per RXA (+ its ORC, RXR), Observation per OBX |
//!
//! **Ids** are deterministic ([`crate::ids`]): a Patient from (identifier system of
//! PID-3's assigning authority, else the source system; PID-3 value), an Encounter
//! from PV1-19 (else patient + PV1-44), an Observation from the order (OBR-3, else
//! OBR-2, else MSH-10 + OBR-1) + OBX-1/OBX-4, and so on. The same fact sent twice
//! maps to the same id.
//!
//! **Provenance and the source timestamp.** Every resource gets `meta.source` =
//! `urn:ehrgate:<source system>#<MSH-10>` (percent-encoded; the source system is
//! MSH-3/MSH-4, see [`Mapper::source_system`]) and `meta.lastUpdated` = the message
//! time MSH-7 as a FHIR `instant` (EVN-2 if MSH-7 is unusable, else the gateway's
//! receive time). `meta.lastUpdated` is what the lake compares for "newer wins", the
//! same field EHR bulk exports already fill, so HL7-derived and bulk resources merge
//! by one rule and no extension is needed. A time without a UTC offset is read in
//! [`Mapper::default_utc_offset`]; when that is `None`, MSH-7 is read as UTC (with a
//! warning) and clinical times without an offset keep only their date.
//!
//! **Overriding.** [`Mapper`] has a default, standard implementation for every
//! method; a vendor adapter implements it on its own type and overrides only what
//! differs, calling the free functions of the submodules (e.g.
//! [`patient::map_patient`]) for the standard part:
//!
//! ```
//! use ehrgate_sdk::hl7::Segment;
//! use ehrgate_sdk::v2fhir::{self, Context, MapResult, Mapper};
//! use ehrgate_sdk::{Adapter, AdapterError, AdapterInfo, Hl7Input, Output};
//!
//! struct Acme;
//! impl Mapper for Acme {
//!     // Acme's MRNs carry a bare namespace: give them their OID.
//!     fn identifier_system(&self, ns: &str, uid: &str, uid_type: &str) -> Option<String> {
//!         if ns == "ACME_MRN" {
//!             return Some("urn:oid:1.2.3.4".into());
//!         }
//!         v2fhir::types::standard_identifier_system(ns, uid, uid_type)
//!     }
//!     // ZPI-1 `Y`: a VIP, labelled on the Patient already built.
//!     fn map_z_segment(&self, ctx: &mut Context<'_, '_>, seg: &Segment<'_>) -> MapResult {
//!         if seg.id() == "ZPI" && seg.field(1).value() == "Y" {
//!             if let Some(p) = ctx.last_mut("Patient") {
//!                 p["meta"]["security"] = serde_json::json!([{
//!                     "system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"
//!                 }]);
//!             }
//!         }
//!         Ok(None)
//!     }
//! }
//!
//! struct AcmeAdapter;
//! impl Adapter for AcmeAdapter {
//!     fn describe() -> AdapterInfo {
//!         AdapterInfo { name: "acme".into(), ..Default::default() }
//!     }
//!     fn map_hl7(msg: &Hl7Input) -> Result<Output, AdapterError> {
//!         v2fhir::map_message(&Acme, msg)
//!     }
//! }
//!
//! let msg = Hl7Input::new("MSH|^~\\&|ACME|H|||20240101120000+0000||ADT^A04|42|P|2.5\rPID|1||123^^^ACME_MRN^MR\rZPI|Y");
//! let out = AcmeAdapter::map_hl7(&msg).unwrap();
//! let patient: serde_json::Value = serde_json::from_str(&out.resources[0]).unwrap();
//! assert_eq!(patient["identifier"][0]["system"], "urn:oid:1.2.3.4");
//! assert_eq!(patient["meta"]["security"][0]["code"], "R");
//! ```

pub mod billing;
pub mod clinical;
mod context;
pub mod encounter;
pub mod financial;
pub mod incidents;
mod messages;
pub mod observation;
pub mod orders;
pub mod patient;
pub mod pharmacy;
pub mod scheduling;
#[cfg(test)]
mod tests;
pub mod types;

pub use context::{Context, Order};

use crate::adapter::{AdapterError, Hl7Input, Output};
use crate::fhir::PatientContact;
pub use crate::fhir::Resource;
use crate::hl7::{Message, Segment};

/// What a segment map returns: a resource, nothing (skip), or why the message is bad.
///
/// The standard maps return the typed builders (`Patient`, `Observation`...) as a
/// [`Resource`], which is written to JSON text directly at the end; an override can
/// edit them (`if let Some(Resource::Patient(p)) = &mut r { ... }`) or return any JSON
/// with `Ok(Some(value.into()))`.
pub type MapResult = Result<Option<Resource>, AdapterError>;

/// The message types the standard mapping handles.
pub const STANDARD_MESSAGE_TYPES: &[&str] = &[
    "ADT^A01", "ADT^A02", "ADT^A03", "ADT^A04", "ADT^A05", "ADT^A06", "ADT^A07", "ADT^A08",
    "ADT^A11", "ADT^A13", "ADT^A28", "ADT^A31", "ADT^A34", "ADT^A39", "ADT^A40",
    "ORU^R01", "VXU^V04", "RDE^O11", "ORM^O01", "OML^O21", "SIU^S12", "SIU^S13", "SIU^S14",
    "SIU^S15", "MDM^T02", "MDM^T04", "DFT^P03", "RAS^O17",
];

/// A mapping: every method has the standard behaviour; vendors override what differs.
/// Segment maps get the per-message [`Context`] (the parsed message, the source
/// system, the ids of the Patient / Encounter / order already mapped, the resources
/// built so far, warnings) and return a resource or `None`.
pub trait Mapper {
    /// Whether this mapper handles `code^trigger` (e.g. `ADT`, `A01`).
    fn supports(&self, code: &str, trigger: &str) -> bool {
        STANDARD_MESSAGE_TYPES
            .iter()
            .any(|t| t.split_once('^') == Some((code, trigger)))
    }

    /// The sending system: MSH-3 (namespace, else universal id), then `/` and MSH-4
    /// if present; `unknown` when both are empty. Scopes natural keys without an
    /// assigning authority and names `meta.source`.
    fn source_system(&self, msg: &Message<'_>) -> String {
        types::standard_source_system(msg)
    }

    /// The UTC offset (`-05:00`, `Z`...) of times sent without one; `None`: unknown.
    fn default_utc_offset(&self) -> Option<String> {
        None
    }

    /// The FHIR code system URI for an HL7 coding system name (CWE-3), e.g. `LN` ->
    /// `http://loinc.org`; unknown names -> `urn:ehrgate:codesystem:<name>`.
    fn code_system(&self, hl7_name: &str) -> Option<String> {
        types::standard_code_system(hl7_name)
    }

    /// The `Identifier.system` for an assigning authority / namespace (HD: namespace
    /// id, universal id, universal id type), e.g. `^1.2.3^ISO` -> `urn:oid:1.2.3`.
    /// Used for PID-3, PV1-19, OBR-2/3... and so for the Patient id.
    fn identifier_system(
        &self,
        namespace: &str,
        universal_id: &str,
        universal_id_type: &str,
    ) -> Option<String> {
        types::standard_identifier_system(namespace, universal_id, universal_id_type)
    }

    /// PID -> Patient (id from [`patient::patient_key`]).
    fn map_patient(&self, ctx: &mut Context<'_, '_>, pid: &Segment<'_>) -> MapResult {
        patient::map_patient(ctx, pid)
    }

    /// NK1 -> one `Patient.contact` entry (added to the Patient just built).
    fn map_patient_contact(
        &self,
        ctx: &mut Context<'_, '_>,
        nk1: &Segment<'_>,
    ) -> Option<PatientContact> {
        patient::map_contact(ctx, nk1)
    }

    /// A40 MRG -> the non-surviving Patient (`active: false`, `link` replaced-by
    /// `surviving_id`). The surviving Patient gets the `replaces` link from the caller.
    fn map_merged_patient(
        &self,
        ctx: &mut Context<'_, '_>,
        mrg: &Segment<'_>,
        surviving_id: &str,
    ) -> MapResult {
        patient::map_merged_patient(ctx, mrg, surviving_id)
    }

    /// PV1 (+ PV2) -> Encounter; status from the trigger event.
    fn map_encounter(
        &self,
        ctx: &mut Context<'_, '_>,
        pv1: &Segment<'_>,
        pv2: Option<&Segment<'_>>,
    ) -> MapResult {
        encounter::map_encounter(ctx, pv1, pv2)
    }

    /// The order key of an OBR (for report and observation ids): OBR-3, else OBR-2,
    /// else MSH-10 + OBR-1.
    fn order(&self, ctx: &mut Context<'_, '_>, obr: &Segment<'_>) -> Order {
        observation::order(ctx, obr)
    }

    /// OBX -> Observation. `obr` is the OBX's order, if any (fallback code and time).
    fn map_observation(
        &self,
        ctx: &mut Context<'_, '_>,
        obx: &Segment<'_>,
        obr: Option<&Segment<'_>>,
    ) -> MapResult {
        observation::map_observation(ctx, obx, obr)
    }

    /// OBR -> DiagnosticReport, with `result` references to the observation ids.
    fn map_diagnostic_report(
        &self,
        ctx: &mut Context<'_, '_>,
        obr: &Segment<'_>,
        results: &[String],
    ) -> MapResult {
        observation::map_diagnostic_report(ctx, obr, results)
    }

    /// NK1 -> RelatedPerson (besides the `Patient.contact` entry).
    fn map_related_person(&self, ctx: &mut Context<'_, '_>, nk1: &Segment<'_>) -> MapResult {
        financial::map_related_person(ctx, nk1)
    }

    /// GT1 -> RelatedPerson (the guarantor, unless it is the patient).
    fn map_guarantor(&self, ctx: &mut Context<'_, '_>, gt1: &Segment<'_>) -> MapResult {
        financial::map_guarantor(ctx, gt1)
    }

    /// IN1 -> the insured as a RelatedPerson (when not the patient).
    fn map_insured(&self, ctx: &mut Context<'_, '_>, in1: &Segment<'_>) -> MapResult {
        financial::map_insured(ctx, in1)
    }

    /// IN1 -> Coverage; `subscriber`: the insured's RelatedPerson id.
    fn map_coverage(&self, ctx: &mut Context<'_, '_>, in1: &Segment<'_>, subscriber: Option<&str>) -> MapResult {
        financial::map_coverage(ctx, in1, subscriber)
    }

    /// ORC + OBR -> ServiceRequest, keyed like the order's report.
    fn map_service_request(&self, ctx: &mut Context<'_, '_>, obr: Option<&Segment<'_>>, orc: Option<&Segment<'_>>, order: &Order) -> MapResult {
        orders::map_service_request(ctx, obr, orc, order)
    }

    /// SPM -> Specimen; `request`: the order's ServiceRequest id.
    fn map_specimen(&self, ctx: &mut Context<'_, '_>, spm: &Segment<'_>, order: Option<&Order>, request: Option<&str>) -> MapResult {
        orders::map_specimen(ctx, spm, order, request)
    }

    /// OBR-15 -> Specimen, for an order without SPM (v2.3-2.4).
    fn map_obr_specimen(&self, ctx: &mut Context<'_, '_>, obr: &Segment<'_>, order: &Order, request: Option<&str>) -> MapResult {
        orders::map_obr_specimen(ctx, obr, order, request)
    }

    /// SCH (+ AIS/AIG/AIL/AIP) -> Appointment.
    fn map_appointment(&self, ctx: &mut Context<'_, '_>, sch: &Segment<'_>) -> MapResult {
        scheduling::map_appointment(ctx, sch)
    }

    /// AIS (with its SCH) -> the ServiceRequest the appointment is based on.
    fn map_appointment_request(&self, ctx: &mut Context<'_, '_>, sch: &Segment<'_>, ais: &Segment<'_>) -> MapResult {
        scheduling::map_appointment_request(ctx, sch, ais)
    }

    /// TXA (+ its OBX content) -> DocumentReference; `based_on`: the order's
    /// ServiceRequest id.
    fn map_document(&self, ctx: &mut Context<'_, '_>, txa: &Segment<'_>, based_on: Option<&str>) -> MapResult {
        scheduling::map_document(ctx, txa, based_on)
    }

    /// AL1 -> AllergyIntolerance.
    fn map_allergy(&self, ctx: &mut Context<'_, '_>, al1: &Segment<'_>) -> MapResult {
        clinical::map_allergy(ctx, al1)
    }

    /// IAM -> AllergyIntolerance (the same record as an AL1 of that allergen).
    fn map_allergy_iam(&self, ctx: &mut Context<'_, '_>, iam: &Segment<'_>) -> MapResult {
        clinical::map_allergy_iam(ctx, iam)
    }

    /// PD1-3/PD1-4 and ROL (primary care provider) -> `Patient.generalPractitioner`
    /// references.
    fn general_practitioners(&self, ctx: &mut Context<'_, '_>, seg: &Segment<'_>) -> Vec<crate::fhir::Reference> {
        patient::general_practitioners(ctx, seg)
    }

    /// ROL (any other role) -> an `Encounter.participant`.
    fn encounter_role(&self, ctx: &mut Context<'_, '_>, rol: &Segment<'_>) -> Option<crate::fhir::EncounterParticipant> {
        encounter::role(ctx, rol)
    }

    /// DG1 -> Condition.
    fn map_condition(&self, ctx: &mut Context<'_, '_>, dg1: &Segment<'_>) -> MapResult {
        clinical::map_condition(ctx, dg1)
    }

    /// PR1 -> Procedure.
    fn map_procedure(&self, ctx: &mut Context<'_, '_>, pr1: &Segment<'_>) -> MapResult {
        clinical::map_procedure(ctx, pr1)
    }

    /// FT1 -> ChargeItem; `services`: references to what it bills (the Procedure
    /// and MedicationDispense made from the same FT1).
    fn map_charge(&self, ctx: &mut Context<'_, '_>, ft1: &Segment<'_>, services: &[crate::fhir::Reference]) -> MapResult {
        billing::map_charge(ctx, ft1, services)
    }

    /// FT1-25 -> the Procedure charged for.
    fn map_charged_procedure(&self, ctx: &mut Context<'_, '_>, ft1: &Segment<'_>) -> MapResult {
        billing::map_charged_procedure(ctx, ft1)
    }

    /// FT1-29 -> the MedicationDispense charged for.
    fn map_charged_dispense(&self, ctx: &mut Context<'_, '_>, ft1: &Segment<'_>) -> MapResult {
        billing::map_charged_dispense(ctx, ft1)
    }

    /// IN2, GT1 (a guarantor who is the patient) and DB1 (a disabled patient):
    /// identifiers of the patient that these segments carry, added to the Patient.
    fn patient_identifiers(&self, ctx: &mut Context<'_, '_>, seg: &Segment<'_>) -> Vec<crate::fhir::Identifier> {
        financial::patient_identifiers(ctx, seg)
    }

    /// PDA -> Condition (causes of death), Observations (certified, autopsy,
    /// coroner) and Procedures (certification, autopsy).
    fn map_death(&self, ctx: &mut Context<'_, '_>, pda: &Segment<'_>) -> Vec<Resource> {
        incidents::map_death(ctx, pda)
    }

    /// ACC -> Observation (injury incident).
    fn map_accident(&self, ctx: &mut Context<'_, '_>, acc: &Segment<'_>) -> MapResult {
        incidents::map_accident(ctx, acc)
    }

    /// RF1 -> ServiceRequest (a referral).
    fn map_referral(&self, ctx: &mut Context<'_, '_>, rf1: &Segment<'_>) -> MapResult {
        orders::map_referral(ctx, rf1)
    }

    /// RXA (+ its ORC and RXR) -> Immunization.
    fn map_immunization(
        &self,
        ctx: &mut Context<'_, '_>,
        rxa: &Segment<'_>,
        orc: Option<&Segment<'_>>,
        rxr: Option<&Segment<'_>>,
    ) -> MapResult {
        pharmacy::map_immunization(ctx, rxa, orc, rxr)
    }

    /// RXA in RAS (+ its ORC and RXR) -> MedicationAdministration.
    fn map_medication_administration(
        &self,
        ctx: &mut Context<'_, '_>,
        rxa: &Segment<'_>,
        orc: Option<&Segment<'_>>,
        rxr: Option<&Segment<'_>>,
    ) -> MapResult {
        pharmacy::map_medication_administration(ctx, rxa, orc, rxr)
    }

    /// RXE (+ its ORC and RXR) -> MedicationRequest.
    fn map_medication_request(
        &self,
        ctx: &mut Context<'_, '_>,
        rxe: &Segment<'_>,
        orc: Option<&Segment<'_>>,
        rxr: Option<&Segment<'_>>,
    ) -> MapResult {
        pharmacy::map_medication_request(ctx, rxe, orc, rxr)
    }

    /// A Z-segment: ignored with a warning. Override to map it (return a resource,
    /// or edit `ctx.resources`).
    fn map_z_segment(&self, ctx: &mut Context<'_, '_>, seg: &Segment<'_>) -> MapResult {
        ctx.warn(format!("{}: Z-segment not mapped", seg.id()));
        Ok(None)
    }

    /// Last look at everything mapped from the message (`ctx.resources`).
    fn finish(&self, ctx: &mut Context<'_, '_>) -> Result<(), AdapterError> {
        let _ = ctx;
        Ok(())
    }
}

/// The standard mapping, unchanged.
pub struct Standard;
impl Mapper for Standard {}

/// Map one HL7v2 message with `mapper`.
pub fn map_message(mapper: &impl Mapper, input: &Hl7Input) -> Result<Output, AdapterError> {
    let msg = Message::parse(&input.raw)?;
    let (code, trigger) = (msg.message_code(), msg.trigger_event());
    if !mapper.supports(code, trigger) {
        return Err(AdapterError::unsupported(format!(
            "message type {code}^{trigger} is not handled"
        )));
    }
    let mut ctx = Context::new(mapper, &msg, input);
    match code {
        "ADT" => messages::map_adt(&mut ctx)?,
        "ORU" => messages::map_oru(&mut ctx)?,
        "VXU" | "RDE" | "RAS" => messages::map_orders(&mut ctx)?,
        "ORM" | "OML" | "DFT" => messages::map_order_messages(&mut ctx)?,
        "SIU" => messages::map_siu(&mut ctx)?,
        "MDM" => messages::map_mdm(&mut ctx)?,
        _ => {
            return Err(AdapterError::unsupported(format!(
                "no standard mapping for {code}^{trigger}"
            )));
        }
    }
    mapper.finish(&mut ctx)?;
    Ok(ctx.into_output())
}
