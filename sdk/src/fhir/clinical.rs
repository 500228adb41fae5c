//! Clinical resources: Observation, DiagnosticReport, Condition, AllergyIntolerance,
//! Procedure, Immunization, MedicationRequest. Same conventions as [`super::admin`].

use super::datatypes::*;
use super::json::{Obj, ToFhir};
use serde_json::{Map, Value};

/// `Observation`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observation {
    pub id: String,
    pub meta: Meta,
    pub identifier: Vec<Identifier>,
    pub based_on: Vec<Reference>,
    /// registered | preliminary | final | amended | corrected | cancelled |
    /// entered-in-error | unknown
    pub status: String,
    pub category: Vec<CodeableConcept>,
    pub code: CodeableConcept,
    pub subject: Option<Reference>,
    pub encounter: Option<Reference>,
    /// DateTime, Period, Instant...
    pub effective: Option<Choice>,
    /// FHIR `instant`.
    pub issued: Option<String>,
    pub performer: Vec<Reference>,
    pub value: Option<Choice>,
    pub data_absent_reason: Option<CodeableConcept>,
    pub interpretation: Vec<CodeableConcept>,
    pub note: Vec<Annotation>,
    pub body_site: Option<CodeableConcept>,
    pub method: Option<CodeableConcept>,
    pub specimen: Option<Reference>,
    pub reference_range: Vec<ReferenceRange>,
    pub has_member: Vec<Reference>,
    pub extra: Map<String, Value>,
}

/// `Observation.referenceRange`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReferenceRange {
    pub low: Option<Quantity>,
    pub high: Option<Quantity>,
    pub type_: Option<CodeableConcept>,
    pub text: Option<String>,
}

impl ToFhir for ReferenceRange {
    fn to_fhir(&self) -> Value {
        Obj::new()
            .opt("low", &self.low)
            .opt("high", &self.high)
            .opt("type", &self.type_)
            .str("text", self.text.as_ref())
            .build()
    }
}

impl ToFhir for Observation {
    fn to_fhir(&self) -> Value {
        Obj::resource("Observation", &self.id)
            .put("meta", self.meta.to_fhir())
            .list("identifier", &self.identifier)
            .list("basedOn", &self.based_on)
            .str("status", Some(&self.status))
            .list("category", &self.category)
            .put("code", self.code.to_fhir())
            .opt("subject", &self.subject)
            .opt("encounter", &self.encounter)
            .choice("effective", &self.effective)
            .str("issued", self.issued.as_ref())
            .list("performer", &self.performer)
            .choice("value", &self.value)
            .opt("dataAbsentReason", &self.data_absent_reason)
            .list("interpretation", &self.interpretation)
            .list("note", &self.note)
            .opt("bodySite", &self.body_site)
            .opt("method", &self.method)
            .opt("specimen", &self.specimen)
            .list("referenceRange", &self.reference_range)
            .list("hasMember", &self.has_member)
            .extend(&self.extra)
            .build()
    }
}

/// `DiagnosticReport`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DiagnosticReport {
    pub id: String,
    pub meta: Meta,
    pub identifier: Vec<Identifier>,
    pub based_on: Vec<Reference>,
    /// registered | partial | preliminary | final | amended | corrected | appended |
    /// cancelled | entered-in-error | unknown
    pub status: String,
    pub category: Vec<CodeableConcept>,
    pub code: CodeableConcept,
    pub subject: Option<Reference>,
    pub encounter: Option<Reference>,
    pub effective: Option<Choice>,
    pub issued: Option<String>,
    pub performer: Vec<Reference>,
    pub results_interpreter: Vec<Reference>,
    pub specimen: Vec<Reference>,
    pub result: Vec<Reference>,
    pub conclusion: Option<String>,
    pub conclusion_code: Vec<CodeableConcept>,
    pub extra: Map<String, Value>,
}

impl ToFhir for DiagnosticReport {
    fn to_fhir(&self) -> Value {
        Obj::resource("DiagnosticReport", &self.id)
            .put("meta", self.meta.to_fhir())
            .list("identifier", &self.identifier)
            .list("basedOn", &self.based_on)
            .str("status", Some(&self.status))
            .list("category", &self.category)
            .put("code", self.code.to_fhir())
            .opt("subject", &self.subject)
            .opt("encounter", &self.encounter)
            .choice("effective", &self.effective)
            .str("issued", self.issued.as_ref())
            .list("performer", &self.performer)
            .list("resultsInterpreter", &self.results_interpreter)
            .list("specimen", &self.specimen)
            .list("result", &self.result)
            .str("conclusion", self.conclusion.as_ref())
            .list("conclusionCode", &self.conclusion_code)
            .extend(&self.extra)
            .build()
    }
}

/// `Condition`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Condition {
    pub id: String,
    pub meta: Meta,
    pub identifier: Vec<Identifier>,
    pub clinical_status: Option<CodeableConcept>,
    pub verification_status: Option<CodeableConcept>,
    pub category: Vec<CodeableConcept>,
    pub severity: Option<CodeableConcept>,
    pub code: Option<CodeableConcept>,
    pub body_site: Vec<CodeableConcept>,
    pub subject: Reference,
    pub encounter: Option<Reference>,
    pub onset: Option<Choice>,
    pub abatement: Option<Choice>,
    pub recorded_date: Option<String>,
    pub recorder: Option<Reference>,
    pub asserter: Option<Reference>,
    pub note: Vec<Annotation>,
    pub extra: Map<String, Value>,
}

impl ToFhir for Condition {
    fn to_fhir(&self) -> Value {
        Obj::resource("Condition", &self.id)
            .put("meta", self.meta.to_fhir())
            .list("identifier", &self.identifier)
            .opt("clinicalStatus", &self.clinical_status)
            .opt("verificationStatus", &self.verification_status)
            .list("category", &self.category)
            .opt("severity", &self.severity)
            .opt("code", &self.code)
            .list("bodySite", &self.body_site)
            .put("subject", self.subject.to_fhir())
            .opt("encounter", &self.encounter)
            .choice("onset", &self.onset)
            .choice("abatement", &self.abatement)
            .str("recordedDate", self.recorded_date.as_ref())
            .opt("recorder", &self.recorder)
            .opt("asserter", &self.asserter)
            .list("note", &self.note)
            .extend(&self.extra)
            .build()
    }
}

/// `AllergyIntolerance`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AllergyIntolerance {
    pub id: String,
    pub meta: Meta,
    pub identifier: Vec<Identifier>,
    pub clinical_status: Option<CodeableConcept>,
    pub verification_status: Option<CodeableConcept>,
    /// allergy | intolerance
    pub type_: Option<String>,
    /// food | medication | environment | biologic
    pub category: Vec<String>,
    /// low | high | unable-to-assess
    pub criticality: Option<String>,
    pub code: Option<CodeableConcept>,
    pub patient: Reference,
    pub encounter: Option<Reference>,
    pub onset: Option<Choice>,
    pub recorded_date: Option<String>,
    pub recorder: Option<Reference>,
    pub asserter: Option<Reference>,
    pub note: Vec<Annotation>,
    pub reaction: Vec<AllergyReaction>,
    pub extra: Map<String, Value>,
}

/// `AllergyIntolerance.reaction`: FHIR requires at least one manifestation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AllergyReaction {
    pub substance: Option<CodeableConcept>,
    pub manifestation: Vec<CodeableConcept>,
    pub description: Option<String>,
    pub onset: Option<String>,
    /// mild | moderate | severe
    pub severity: Option<String>,
}

impl ToFhir for AllergyReaction {
    fn to_fhir(&self) -> Value {
        Obj::new()
            .opt("substance", &self.substance)
            .list("manifestation", &self.manifestation)
            .str("description", self.description.as_ref())
            .str("onset", self.onset.as_ref())
            .str("severity", self.severity.as_ref())
            .build()
    }
}

impl ToFhir for AllergyIntolerance {
    fn to_fhir(&self) -> Value {
        Obj::resource("AllergyIntolerance", &self.id)
            .put("meta", self.meta.to_fhir())
            .list("identifier", &self.identifier)
            .opt("clinicalStatus", &self.clinical_status)
            .opt("verificationStatus", &self.verification_status)
            .str("type", self.type_.as_ref())
            .strs("category", &self.category)
            .str("criticality", self.criticality.as_ref())
            .opt("code", &self.code)
            .put("patient", self.patient.to_fhir())
            .opt("encounter", &self.encounter)
            .choice("onset", &self.onset)
            .str("recordedDate", self.recorded_date.as_ref())
            .opt("recorder", &self.recorder)
            .opt("asserter", &self.asserter)
            .list("note", &self.note)
            .list("reaction", &self.reaction)
            .extend(&self.extra)
            .build()
    }
}

/// `Procedure`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Procedure {
    pub id: String,
    pub meta: Meta,
    pub identifier: Vec<Identifier>,
    pub based_on: Vec<Reference>,
    /// preparation | in-progress | not-done | on-hold | stopped | completed |
    /// entered-in-error | unknown
    pub status: String,
    pub category: Option<CodeableConcept>,
    pub code: Option<CodeableConcept>,
    pub subject: Reference,
    pub encounter: Option<Reference>,
    pub performed: Option<Choice>,
    pub recorder: Option<Reference>,
    pub asserter: Option<Reference>,
    pub performer: Vec<Performer>,
    pub location: Option<Reference>,
    pub reason_code: Vec<CodeableConcept>,
    pub body_site: Vec<CodeableConcept>,
    pub outcome: Option<CodeableConcept>,
    pub note: Vec<Annotation>,
    pub extra: Map<String, Value>,
}

/// `Procedure.performer` / `Immunization.performer`: `actor` is required.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Performer {
    pub function: Option<CodeableConcept>,
    pub actor: Reference,
}

impl ToFhir for Performer {
    fn to_fhir(&self) -> Value {
        Obj::new()
            .opt("function", &self.function)
            .put("actor", self.actor.to_fhir())
            .build()
    }
}

impl ToFhir for Procedure {
    fn to_fhir(&self) -> Value {
        Obj::resource("Procedure", &self.id)
            .put("meta", self.meta.to_fhir())
            .list("identifier", &self.identifier)
            .list("basedOn", &self.based_on)
            .str("status", Some(&self.status))
            .opt("category", &self.category)
            .opt("code", &self.code)
            .put("subject", self.subject.to_fhir())
            .opt("encounter", &self.encounter)
            .choice("performed", &self.performed)
            .opt("recorder", &self.recorder)
            .opt("asserter", &self.asserter)
            .list("performer", &self.performer)
            .opt("location", &self.location)
            .list("reasonCode", &self.reason_code)
            .list("bodySite", &self.body_site)
            .opt("outcome", &self.outcome)
            .list("note", &self.note)
            .extend(&self.extra)
            .build()
    }
}

/// `Immunization`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Immunization {
    pub id: String,
    pub meta: Meta,
    pub identifier: Vec<Identifier>,
    /// completed | entered-in-error | not-done
    pub status: String,
    pub status_reason: Option<CodeableConcept>,
    pub vaccine_code: CodeableConcept,
    pub patient: Reference,
    pub encounter: Option<Reference>,
    /// DateTime or String; required.
    pub occurrence: Option<Choice>,
    pub recorded: Option<String>,
    pub primary_source: Option<bool>,
    pub manufacturer: Option<Reference>,
    pub lot_number: Option<String>,
    /// FHIR `date`.
    pub expiration_date: Option<String>,
    pub site: Option<CodeableConcept>,
    pub route: Option<CodeableConcept>,
    pub dose_quantity: Option<Quantity>,
    pub performer: Vec<Performer>,
    pub note: Vec<Annotation>,
    pub reason_code: Vec<CodeableConcept>,
    pub extra: Map<String, Value>,
}

impl ToFhir for Immunization {
    fn to_fhir(&self) -> Value {
        Obj::resource("Immunization", &self.id)
            .put("meta", self.meta.to_fhir())
            .list("identifier", &self.identifier)
            .str("status", Some(&self.status))
            .opt("statusReason", &self.status_reason)
            .put("vaccineCode", self.vaccine_code.to_fhir())
            .put("patient", self.patient.to_fhir())
            .opt("encounter", &self.encounter)
            .choice("occurrence", &self.occurrence)
            .str("recorded", self.recorded.as_ref())
            .bool("primarySource", self.primary_source)
            .opt("manufacturer", &self.manufacturer)
            .str("lotNumber", self.lot_number.as_ref())
            .str("expirationDate", self.expiration_date.as_ref())
            .opt("site", &self.site)
            .opt("route", &self.route)
            .opt("doseQuantity", &self.dose_quantity)
            .list("performer", &self.performer)
            .list("note", &self.note)
            .list("reasonCode", &self.reason_code)
            .extend(&self.extra)
            .build()
    }
}

/// `MedicationRequest`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MedicationRequest {
    pub id: String,
    pub meta: Meta,
    pub identifier: Vec<Identifier>,
    /// active | on-hold | cancelled | completed | entered-in-error | stopped | draft |
    /// unknown
    pub status: String,
    /// proposal | plan | order | original-order | reflex-order | filler-order |
    /// instance-order | option
    pub intent: String,
    pub category: Vec<CodeableConcept>,
    /// routine | urgent | asap | stat
    pub priority: Option<String>,
    /// CodeableConcept or Reference; required.
    pub medication: Option<Choice>,
    pub subject: Reference,
    pub encounter: Option<Reference>,
    pub authored_on: Option<String>,
    pub requester: Option<Reference>,
    pub reason_code: Vec<CodeableConcept>,
    pub note: Vec<Annotation>,
    pub dosage_instruction: Vec<Dosage>,
    pub extra: Map<String, Value>,
}

/// A small `Dosage`: text, route and one dose (use `extra` for timing etc.).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dosage {
    pub text: Option<String>,
    pub route: Option<CodeableConcept>,
    pub dose: Option<Quantity>,
    pub extra: Map<String, Value>,
}

impl ToFhir for Dosage {
    fn to_fhir(&self) -> Value {
        let dose_and_rate = self
            .dose
            .as_ref()
            .map(|q| Value::Array(vec![Obj::new().put("doseQuantity", q.to_fhir()).build()]));
        let mut o = Obj::new()
            .str("text", self.text.as_ref())
            .opt("route", &self.route);
        if let Some(d) = dose_and_rate {
            o = o.val("doseAndRate", d);
        }
        o.extend(&self.extra).build()
    }
}

impl ToFhir for MedicationRequest {
    fn to_fhir(&self) -> Value {
        Obj::resource("MedicationRequest", &self.id)
            .put("meta", self.meta.to_fhir())
            .list("identifier", &self.identifier)
            .str("status", Some(&self.status))
            .str("intent", Some(&self.intent))
            .list("category", &self.category)
            .str("priority", self.priority.as_ref())
            .choice("medication", &self.medication)
            .put("subject", self.subject.to_fhir())
            .opt("encounter", &self.encounter)
            .str("authoredOn", self.authored_on.as_ref())
            .opt("requester", &self.requester)
            .list("reasonCode", &self.reason_code)
            .list("note", &self.note)
            .list("dosageInstruction", &self.dosage_instruction)
            .extend(&self.extra)
            .build()
    }
}
