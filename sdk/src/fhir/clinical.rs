//! Clinical resources: Observation, DiagnosticReport, Condition, AllergyIntolerance,
//! Procedure, Immunization, MedicationRequest. Same conventions as [`super::admin`].

use super::datatypes::*;
use super::members::{Members, Sink, to_fhir_via_members};
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
    pub component: Vec<ObservationComponent>,
    pub extra: Map<String, Value>,
}

/// `Observation.component`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ObservationComponent {
    pub code: CodeableConcept,
    pub value: Option<Choice>,
}

impl Members for ObservationComponent {
    fn members<S: Sink>(&self, s: &mut S) {
        s.obj("code", Some(&self.code));
        s.choice("value", self.value.as_ref());
    }
}

/// `Observation.referenceRange`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReferenceRange {
    pub low: Option<Quantity>,
    pub high: Option<Quantity>,
    pub type_: Option<CodeableConcept>,
    pub text: Option<String>,
}

impl Members for ReferenceRange {
    fn members<S: Sink>(&self, s: &mut S) {
        s.obj("high", self.high.as_ref());
        s.obj("low", self.low.as_ref());
        s.str("text", self.text.as_deref());
        s.obj("type", self.type_.as_ref());
    }
}

impl Members for Observation {
    fn members<S: Sink>(&self, s: &mut S) {
        s.list("basedOn", &self.based_on);
        s.obj("bodySite", self.body_site.as_ref());
        s.list("category", &self.category);
        s.obj("code", Some(&self.code));
        s.list("component", &self.component);
        s.obj("dataAbsentReason", self.data_absent_reason.as_ref());
        s.choice("effective", self.effective.as_ref());
        s.obj("encounter", self.encounter.as_ref());
        s.list("hasMember", &self.has_member);
        s.str("id", Some(&self.id));
        s.list("identifier", &self.identifier);
        s.list("interpretation", &self.interpretation);
        s.str("issued", self.issued.as_deref());
        s.obj("meta", Some(&self.meta));
        s.obj("method", self.method.as_ref());
        s.list("note", &self.note);
        s.list("performer", &self.performer);
        s.list("referenceRange", &self.reference_range);
        s.str("resourceType", Some("Observation"));
        s.obj("specimen", self.specimen.as_ref());
        s.str("status", Some(&self.status));
        s.obj("subject", self.subject.as_ref());
        s.choice("value", self.value.as_ref());
    }
    fn extra(&self) -> Option<&Map<String, Value>> {
        Some(&self.extra)
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

impl Members for DiagnosticReport {
    fn members<S: Sink>(&self, s: &mut S) {
        s.list("basedOn", &self.based_on);
        s.list("category", &self.category);
        s.obj("code", Some(&self.code));
        s.str("conclusion", self.conclusion.as_deref());
        s.list("conclusionCode", &self.conclusion_code);
        s.choice("effective", self.effective.as_ref());
        s.obj("encounter", self.encounter.as_ref());
        s.str("id", Some(&self.id));
        s.list("identifier", &self.identifier);
        s.str("issued", self.issued.as_deref());
        s.obj("meta", Some(&self.meta));
        s.list("performer", &self.performer);
        s.str("resourceType", Some("DiagnosticReport"));
        s.list("result", &self.result);
        s.list("resultsInterpreter", &self.results_interpreter);
        s.list("specimen", &self.specimen);
        s.str("status", Some(&self.status));
        s.obj("subject", self.subject.as_ref());
    }
    fn extra(&self) -> Option<&Map<String, Value>> {
        Some(&self.extra)
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

impl Members for Condition {
    fn members<S: Sink>(&self, s: &mut S) {
        s.choice("abatement", self.abatement.as_ref());
        s.obj("asserter", self.asserter.as_ref());
        s.list("bodySite", &self.body_site);
        s.list("category", &self.category);
        s.obj("clinicalStatus", self.clinical_status.as_ref());
        s.obj("code", self.code.as_ref());
        s.obj("encounter", self.encounter.as_ref());
        s.str("id", Some(&self.id));
        s.list("identifier", &self.identifier);
        s.obj("meta", Some(&self.meta));
        s.list("note", &self.note);
        s.choice("onset", self.onset.as_ref());
        s.str("recordedDate", self.recorded_date.as_deref());
        s.obj("recorder", self.recorder.as_ref());
        s.str("resourceType", Some("Condition"));
        s.obj("severity", self.severity.as_ref());
        s.obj("subject", Some(&self.subject));
        s.obj("verificationStatus", self.verification_status.as_ref());
    }
    fn extra(&self) -> Option<&Map<String, Value>> {
        Some(&self.extra)
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

impl Members for AllergyReaction {
    fn members<S: Sink>(&self, s: &mut S) {
        s.str("description", self.description.as_deref());
        s.list("manifestation", &self.manifestation);
        s.str("onset", self.onset.as_deref());
        s.str("severity", self.severity.as_deref());
        s.obj("substance", self.substance.as_ref());
    }
}

impl Members for AllergyIntolerance {
    fn members<S: Sink>(&self, s: &mut S) {
        s.obj("asserter", self.asserter.as_ref());
        s.strs("category", &self.category);
        s.obj("clinicalStatus", self.clinical_status.as_ref());
        s.obj("code", self.code.as_ref());
        s.str("criticality", self.criticality.as_deref());
        s.obj("encounter", self.encounter.as_ref());
        s.str("id", Some(&self.id));
        s.list("identifier", &self.identifier);
        s.obj("meta", Some(&self.meta));
        s.list("note", &self.note);
        s.choice("onset", self.onset.as_ref());
        s.obj("patient", Some(&self.patient));
        s.list("reaction", &self.reaction);
        s.str("recordedDate", self.recorded_date.as_deref());
        s.obj("recorder", self.recorder.as_ref());
        s.str("resourceType", Some("AllergyIntolerance"));
        s.str("type", self.type_.as_deref());
        s.obj("verificationStatus", self.verification_status.as_ref());
    }
    fn extra(&self) -> Option<&Map<String, Value>> {
        Some(&self.extra)
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
    pub part_of: Vec<Reference>,
    pub extra: Map<String, Value>,
}

/// `Procedure.performer` / `Immunization.performer`: `actor` is required.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Performer {
    pub function: Option<CodeableConcept>,
    pub actor: Reference,
}

impl Members for Performer {
    fn members<S: Sink>(&self, s: &mut S) {
        s.obj("actor", Some(&self.actor));
        s.obj("function", self.function.as_ref());
    }
}

impl Members for Procedure {
    fn members<S: Sink>(&self, s: &mut S) {
        s.obj("asserter", self.asserter.as_ref());
        s.list("basedOn", &self.based_on);
        s.list("bodySite", &self.body_site);
        s.obj("category", self.category.as_ref());
        s.obj("code", self.code.as_ref());
        s.obj("encounter", self.encounter.as_ref());
        s.str("id", Some(&self.id));
        s.list("identifier", &self.identifier);
        s.obj("location", self.location.as_ref());
        s.obj("meta", Some(&self.meta));
        s.list("note", &self.note);
        s.obj("outcome", self.outcome.as_ref());
        s.list("partOf", &self.part_of);
        s.choice("performed", self.performed.as_ref());
        s.list("performer", &self.performer);
        s.list("reasonCode", &self.reason_code);
        s.obj("recorder", self.recorder.as_ref());
        s.str("resourceType", Some("Procedure"));
        s.str("status", Some(&self.status));
        s.obj("subject", Some(&self.subject));
    }
    fn extra(&self) -> Option<&Map<String, Value>> {
        Some(&self.extra)
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

impl Members for Immunization {
    fn members<S: Sink>(&self, s: &mut S) {
        s.obj("doseQuantity", self.dose_quantity.as_ref());
        s.obj("encounter", self.encounter.as_ref());
        s.str("expirationDate", self.expiration_date.as_deref());
        s.str("id", Some(&self.id));
        s.list("identifier", &self.identifier);
        s.str("lotNumber", self.lot_number.as_deref());
        s.obj("manufacturer", self.manufacturer.as_ref());
        s.obj("meta", Some(&self.meta));
        s.list("note", &self.note);
        s.choice("occurrence", self.occurrence.as_ref());
        s.obj("patient", Some(&self.patient));
        s.list("performer", &self.performer);
        s.bool("primarySource", self.primary_source);
        s.list("reasonCode", &self.reason_code);
        s.str("recorded", self.recorded.as_deref());
        s.str("resourceType", Some("Immunization"));
        s.obj("route", self.route.as_ref());
        s.obj("site", self.site.as_ref());
        s.str("status", Some(&self.status));
        s.obj("statusReason", self.status_reason.as_ref());
        s.obj("vaccineCode", Some(&self.vaccine_code));
    }
    fn extra(&self) -> Option<&Map<String, Value>> {
        Some(&self.extra)
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

/// `Dosage.doseAndRate` entry.
struct DoseAndRate<'a>(&'a Quantity);

impl Members for DoseAndRate<'_> {
    fn members<S: Sink>(&self, s: &mut S) {
        s.obj("doseQuantity", Some(self.0));
    }
}

impl Members for Dosage {
    fn members<S: Sink>(&self, s: &mut S) {
        let dose: Vec<DoseAndRate<'_>> = self.dose.iter().map(DoseAndRate).collect();
        s.list("doseAndRate", &dose);
        s.obj("route", self.route.as_ref());
        s.str("text", self.text.as_deref());
    }
    fn extra(&self) -> Option<&Map<String, Value>> {
        Some(&self.extra)
    }
}

impl Members for MedicationRequest {
    fn members<S: Sink>(&self, s: &mut S) {
        s.str("authoredOn", self.authored_on.as_deref());
        s.list("category", &self.category);
        s.list("dosageInstruction", &self.dosage_instruction);
        s.obj("encounter", self.encounter.as_ref());
        s.str("id", Some(&self.id));
        s.list("identifier", &self.identifier);
        s.str("intent", Some(&self.intent));
        s.choice("medication", self.medication.as_ref());
        s.obj("meta", Some(&self.meta));
        s.list("note", &self.note);
        s.str("priority", self.priority.as_deref());
        s.list("reasonCode", &self.reason_code);
        s.obj("requester", self.requester.as_ref());
        s.str("resourceType", Some("MedicationRequest"));
        s.str("status", Some(&self.status));
        s.obj("subject", Some(&self.subject));
    }
    fn extra(&self) -> Option<&Map<String, Value>> {
        Some(&self.extra)
    }
}

to_fhir_via_members!(
    Observation,
    ObservationComponent,
    ReferenceRange,
    DiagnosticReport,
    Condition,
    AllergyIntolerance,
    AllergyReaction,
    Procedure,
    Performer,
    Immunization,
    MedicationRequest,
    Dosage,
);
