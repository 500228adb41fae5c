//! Administrative resources: Patient, Encounter, Task.
//!
//! Each resource is a struct with public fields named as in FHIR (`use_`, `type_`,
//! `for_` for the Rust keywords; choice elements `[x]` as [`Choice`]), plus `extra`
//! for members the struct lacks (they are merged in last). Build one with
//! `..Default::default()` and turn it into JSON with [`ToFhir::to_fhir`](super::ToFhir::to_fhir); empty
//! members are never written.
//!
//! ```
//! use ehrgate_sdk::fhir::*;
//! let p = Patient {
//!     id: "p1".into(),
//!     gender: Some("female".into()),
//!     name: vec![HumanName { family: Some("Doe".into()), ..Default::default() }],
//!     ..Default::default()
//! };
//! assert_eq!(p.to_fhir()["name"][0]["family"], "Doe");
//! ```

use super::datatypes::*;
use super::members::{Members, Sink, to_fhir_via_members};
use serde_json::{Map, Value};

/// `Patient`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Patient {
    pub id: String,
    pub meta: Meta,
    pub identifier: Vec<Identifier>,
    pub active: Option<bool>,
    pub name: Vec<HumanName>,
    pub telecom: Vec<ContactPoint>,
    /// male | female | other | unknown
    pub gender: Option<String>,
    /// FHIR `date`.
    pub birth_date: Option<String>,
    /// Boolean or DateTime.
    pub deceased: Option<Choice>,
    pub address: Vec<Address>,
    pub marital_status: Option<CodeableConcept>,
    /// Boolean or Integer.
    pub multiple_birth: Option<Choice>,
    pub contact: Vec<PatientContact>,
    pub communication: Vec<PatientCommunication>,
    pub general_practitioner: Vec<Reference>,
    pub managing_organization: Option<Reference>,
    pub link: Vec<PatientLink>,
    pub extra: Map<String, Value>,
}

/// `Patient.contact`: FHIR wants at least a name, telecom, address or organization.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PatientContact {
    pub relationship: Vec<CodeableConcept>,
    pub name: Option<HumanName>,
    pub telecom: Vec<ContactPoint>,
    pub address: Option<Address>,
    pub gender: Option<String>,
    pub organization: Option<Reference>,
    pub period: Option<Period>,
}

/// `Patient.communication`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PatientCommunication {
    pub language: CodeableConcept,
    pub preferred: Option<bool>,
}

/// `Patient.link`: `type_` is replaced-by | replaces | refer | seealso.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PatientLink {
    pub other: Reference,
    pub type_: String,
}

impl Members for Patient {
    fn members<S: Sink>(&self, s: &mut S) {
        s.bool("active", self.active);
        s.list("address", &self.address);
        s.str("birthDate", self.birth_date.as_deref());
        s.list("communication", &self.communication);
        s.list("contact", &self.contact);
        s.choice("deceased", self.deceased.as_ref());
        s.str("gender", self.gender.as_deref());
        s.list("generalPractitioner", &self.general_practitioner);
        s.str("id", Some(&self.id));
        s.list("identifier", &self.identifier);
        s.list("link", &self.link);
        s.obj("managingOrganization", self.managing_organization.as_ref());
        s.obj("maritalStatus", self.marital_status.as_ref());
        s.obj("meta", Some(&self.meta));
        s.choice("multipleBirth", self.multiple_birth.as_ref());
        s.list("name", &self.name);
        s.str("resourceType", Some("Patient"));
        s.list("telecom", &self.telecom);
    }
    fn extra(&self) -> Option<&Map<String, Value>> {
        Some(&self.extra)
    }
}

impl Members for PatientContact {
    fn members<S: Sink>(&self, s: &mut S) {
        s.obj("address", self.address.as_ref());
        s.str("gender", self.gender.as_deref());
        s.obj("name", self.name.as_ref());
        s.obj("organization", self.organization.as_ref());
        s.obj("period", self.period.as_ref());
        s.list("relationship", &self.relationship);
        s.list("telecom", &self.telecom);
    }
}

impl Members for PatientCommunication {
    fn members<S: Sink>(&self, s: &mut S) {
        s.obj("language", Some(&self.language));
        s.bool("preferred", self.preferred);
    }
}

impl Members for PatientLink {
    fn members<S: Sink>(&self, s: &mut S) {
        s.obj("other", Some(&self.other));
        s.str("type", Some(&self.type_));
    }
}

/// `Encounter` (R4: `class` is a single Coding and required).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Encounter {
    pub id: String,
    pub meta: Meta,
    pub identifier: Vec<Identifier>,
    /// planned | arrived | triaged | in-progress | onleave | finished | cancelled |
    /// entered-in-error | unknown
    pub status: String,
    pub class: Coding,
    pub type_: Vec<CodeableConcept>,
    pub service_type: Option<CodeableConcept>,
    pub priority: Option<CodeableConcept>,
    pub subject: Option<Reference>,
    pub participant: Vec<EncounterParticipant>,
    pub period: Option<Period>,
    pub reason_code: Vec<CodeableConcept>,
    pub hospitalization: Option<EncounterHospitalization>,
    pub location: Vec<EncounterLocation>,
    pub service_provider: Option<Reference>,
    pub extra: Map<String, Value>,
}

/// `Encounter.participant`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EncounterParticipant {
    pub type_: Vec<CodeableConcept>,
    pub period: Option<Period>,
    pub individual: Option<Reference>,
}

/// `Encounter.hospitalization`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EncounterHospitalization {
    pub pre_admission_identifier: Option<Identifier>,
    pub admit_source: Option<CodeableConcept>,
    pub re_admission: Option<CodeableConcept>,
    pub diet_preference: Vec<CodeableConcept>,
    pub special_courtesy: Vec<CodeableConcept>,
    pub destination: Option<Reference>,
    pub discharge_disposition: Option<CodeableConcept>,
}

/// `Encounter.location`: `status` is planned | active | reserved | completed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EncounterLocation {
    pub location: Reference,
    pub status: Option<String>,
    pub period: Option<Period>,
}

impl Members for Encounter {
    fn members<S: Sink>(&self, s: &mut S) {
        s.obj("class", Some(&self.class));
        s.obj("hospitalization", self.hospitalization.as_ref());
        s.str("id", Some(&self.id));
        s.list("identifier", &self.identifier);
        s.list("location", &self.location);
        s.obj("meta", Some(&self.meta));
        s.list("participant", &self.participant);
        s.obj("period", self.period.as_ref());
        s.obj("priority", self.priority.as_ref());
        s.list("reasonCode", &self.reason_code);
        s.str("resourceType", Some("Encounter"));
        s.obj("serviceProvider", self.service_provider.as_ref());
        s.obj("serviceType", self.service_type.as_ref());
        s.str("status", Some(&self.status));
        s.obj("subject", self.subject.as_ref());
        s.list("type", &self.type_);
    }
    fn extra(&self) -> Option<&Map<String, Value>> {
        Some(&self.extra)
    }
}

impl Members for EncounterParticipant {
    fn members<S: Sink>(&self, s: &mut S) {
        s.obj("individual", self.individual.as_ref());
        s.obj("period", self.period.as_ref());
        s.list("type", &self.type_);
    }
}

impl Members for EncounterHospitalization {
    fn members<S: Sink>(&self, s: &mut S) {
        s.obj("admitSource", self.admit_source.as_ref());
        s.obj("destination", self.destination.as_ref());
        s.list("dietPreference", &self.diet_preference);
        s.obj("dischargeDisposition", self.discharge_disposition.as_ref());
        s.obj(
            "preAdmissionIdentifier",
            self.pre_admission_identifier.as_ref(),
        );
        s.obj("reAdmission", self.re_admission.as_ref());
        s.list("specialCourtesy", &self.special_courtesy);
    }
}

impl Members for EncounterLocation {
    fn members<S: Sink>(&self, s: &mut S) {
        s.obj("location", Some(&self.location));
        s.obj("period", self.period.as_ref());
        s.str("status", self.status.as_deref());
    }
}

/// `Task` (e.g. the work items a workflow action creates in an EHR).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Task {
    pub id: String,
    pub meta: Meta,
    pub identifier: Vec<Identifier>,
    pub based_on: Vec<Reference>,
    /// draft | requested | received | accepted | rejected | ready | cancelled |
    /// in-progress | on-hold | failed | completed | entered-in-error
    pub status: String,
    pub business_status: Option<CodeableConcept>,
    /// unknown | proposal | plan | order | original-order | reflex-order |
    /// filler-order | instance-order | option
    pub intent: String,
    /// routine | urgent | asap | stat
    pub priority: Option<String>,
    pub code: Option<CodeableConcept>,
    pub description: Option<String>,
    pub focus: Option<Reference>,
    pub for_: Option<Reference>,
    pub encounter: Option<Reference>,
    pub execution_period: Option<Period>,
    /// FHIR `dateTime`.
    pub authored_on: Option<String>,
    pub last_modified: Option<String>,
    pub requester: Option<Reference>,
    pub owner: Option<Reference>,
    pub reason_code: Option<CodeableConcept>,
    pub note: Vec<Annotation>,
    pub extra: Map<String, Value>,
}

impl Members for Task {
    fn members<S: Sink>(&self, s: &mut S) {
        s.str("authoredOn", self.authored_on.as_deref());
        s.list("basedOn", &self.based_on);
        s.obj("businessStatus", self.business_status.as_ref());
        s.obj("code", self.code.as_ref());
        s.str("description", self.description.as_deref());
        s.obj("encounter", self.encounter.as_ref());
        s.obj("executionPeriod", self.execution_period.as_ref());
        s.obj("focus", self.focus.as_ref());
        s.obj("for", self.for_.as_ref());
        s.str("id", Some(&self.id));
        s.list("identifier", &self.identifier);
        s.str("intent", Some(&self.intent));
        s.str("lastModified", self.last_modified.as_deref());
        s.obj("meta", Some(&self.meta));
        s.list("note", &self.note);
        s.obj("owner", self.owner.as_ref());
        s.str("priority", self.priority.as_deref());
        s.obj("reasonCode", self.reason_code.as_ref());
        s.obj("requester", self.requester.as_ref());
        s.str("resourceType", Some("Task"));
        s.str("status", Some(&self.status));
    }
    fn extra(&self) -> Option<&Map<String, Value>> {
        Some(&self.extra)
    }
}

to_fhir_via_members!(
    Patient,
    PatientContact,
    PatientCommunication,
    PatientLink,
    Encounter,
    EncounterParticipant,
    EncounterHospitalization,
    EncounterLocation,
    Task,
);
