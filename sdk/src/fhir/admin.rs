//! Administrative resources: Patient, Encounter, Task.
//!
//! Each resource is a struct with public fields named as in FHIR (`use_`, `type_`,
//! `for_` for the Rust keywords; choice elements `[x]` as [`Choice`]), plus `extra`
//! for members the struct lacks (they are merged in last). Build one with
//! `..Default::default()` and turn it into JSON with [`ToFhir::to_fhir`]; empty
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
use super::json::{Obj, ToFhir};
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

impl ToFhir for Patient {
    fn to_fhir(&self) -> Value {
        Obj::resource("Patient", &self.id)
            .put("meta", self.meta.to_fhir())
            .list("identifier", &self.identifier)
            .bool("active", self.active)
            .list("name", &self.name)
            .list("telecom", &self.telecom)
            .str("gender", self.gender.as_ref())
            .str("birthDate", self.birth_date.as_ref())
            .choice("deceased", &self.deceased)
            .list("address", &self.address)
            .opt("maritalStatus", &self.marital_status)
            .choice("multipleBirth", &self.multiple_birth)
            .list("contact", &self.contact)
            .list("communication", &self.communication)
            .list("generalPractitioner", &self.general_practitioner)
            .opt("managingOrganization", &self.managing_organization)
            .list("link", &self.link)
            .extend(&self.extra)
            .build()
    }
}

impl ToFhir for PatientContact {
    fn to_fhir(&self) -> Value {
        Obj::new()
            .list("relationship", &self.relationship)
            .opt("name", &self.name)
            .list("telecom", &self.telecom)
            .opt("address", &self.address)
            .str("gender", self.gender.as_ref())
            .opt("organization", &self.organization)
            .opt("period", &self.period)
            .build()
    }
}

impl ToFhir for PatientCommunication {
    fn to_fhir(&self) -> Value {
        Obj::new()
            .put("language", self.language.to_fhir())
            .bool("preferred", self.preferred)
            .build()
    }
}

impl ToFhir for PatientLink {
    fn to_fhir(&self) -> Value {
        Obj::new()
            .put("other", self.other.to_fhir())
            .str("type", Some(&self.type_))
            .build()
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

impl ToFhir for Encounter {
    fn to_fhir(&self) -> Value {
        Obj::resource("Encounter", &self.id)
            .put("meta", self.meta.to_fhir())
            .list("identifier", &self.identifier)
            .str("status", Some(&self.status))
            .put("class", self.class.to_fhir())
            .list("type", &self.type_)
            .opt("serviceType", &self.service_type)
            .opt("priority", &self.priority)
            .opt("subject", &self.subject)
            .list("participant", &self.participant)
            .opt("period", &self.period)
            .list("reasonCode", &self.reason_code)
            .opt("hospitalization", &self.hospitalization)
            .list("location", &self.location)
            .opt("serviceProvider", &self.service_provider)
            .extend(&self.extra)
            .build()
    }
}

impl ToFhir for EncounterParticipant {
    fn to_fhir(&self) -> Value {
        Obj::new()
            .list("type", &self.type_)
            .opt("period", &self.period)
            .opt("individual", &self.individual)
            .build()
    }
}

impl ToFhir for EncounterHospitalization {
    fn to_fhir(&self) -> Value {
        Obj::new()
            .opt("preAdmissionIdentifier", &self.pre_admission_identifier)
            .opt("admitSource", &self.admit_source)
            .opt("reAdmission", &self.re_admission)
            .list("dietPreference", &self.diet_preference)
            .list("specialCourtesy", &self.special_courtesy)
            .opt("destination", &self.destination)
            .opt("dischargeDisposition", &self.discharge_disposition)
            .build()
    }
}

impl ToFhir for EncounterLocation {
    fn to_fhir(&self) -> Value {
        Obj::new()
            .put("location", self.location.to_fhir())
            .str("status", self.status.as_ref())
            .opt("period", &self.period)
            .build()
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

impl ToFhir for Task {
    fn to_fhir(&self) -> Value {
        Obj::resource("Task", &self.id)
            .put("meta", self.meta.to_fhir())
            .list("identifier", &self.identifier)
            .list("basedOn", &self.based_on)
            .str("status", Some(&self.status))
            .opt("businessStatus", &self.business_status)
            .str("intent", Some(&self.intent))
            .str("priority", self.priority.as_ref())
            .opt("code", &self.code)
            .str("description", self.description.as_ref())
            .opt("focus", &self.focus)
            .opt("for", &self.for_)
            .opt("encounter", &self.encounter)
            .opt("executionPeriod", &self.execution_period)
            .str("authoredOn", self.authored_on.as_ref())
            .str("lastModified", self.last_modified.as_ref())
            .opt("requester", &self.requester)
            .opt("owner", &self.owner)
            .opt("reasonCode", &self.reason_code)
            .list("note", &self.note)
            .extend(&self.extra)
            .build()
    }
}
