//! [`Resource`]: a mapped resource, typed or JSON.

use super::admin::{Encounter, Patient, Task};
use super::care::{Coverage, RelatedPerson, ServiceRequest, Specimen};
use super::clinical::{
    AllergyIntolerance, Condition, DiagnosticReport, Immunization, MedicationRequest, Observation,
    Procedure,
};
use super::json::ToFhir;
use super::members::to_value;
use super::write::to_json;
use serde_json::Value;

/// One FHIR resource on its way out of a mapping: one of the resource builders of
/// this module, kept as it is until it is written as JSON text, or any JSON value.
///
/// A builder is written straight to text ([`to_json`](Self::to_json)), which is much
/// cheaper than building a [`Value`] first; the text is the same either way. Make one
/// with `.into()` from a builder or a `Value`; edit a typed one by matching on it, or
/// any one as JSON with [`json_mut`](Self::json_mut).
///
/// ```
/// use ehrgate_sdk::fhir::*;
/// let mut r: Resource = Patient { id: "p1".into(), ..Default::default() }.into();
/// if let Resource::Patient(p) = &mut r {
///     p.gender = Some("female".into());
/// }
/// assert_eq!(r.resource_type(), Some("Patient"));
/// assert_eq!(r.to_json(), r#"{"gender":"female","id":"p1","resourceType":"Patient"}"#);
/// r.json_mut()["active"] = true.into();
/// assert_eq!(r.id(), Some("p1"));
/// assert_eq!(r.to_fhir()["active"], true);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Resource {
    Patient(Box<Patient>),
    Encounter(Box<Encounter>),
    Task(Box<Task>),
    Observation(Box<Observation>),
    DiagnosticReport(Box<DiagnosticReport>),
    Condition(Box<Condition>),
    AllergyIntolerance(Box<AllergyIntolerance>),
    Procedure(Box<Procedure>),
    Immunization(Box<Immunization>),
    MedicationRequest(Box<MedicationRequest>),
    RelatedPerson(Box<RelatedPerson>),
    Coverage(Box<Coverage>),
    ServiceRequest(Box<ServiceRequest>),
    Specimen(Box<Specimen>),
    /// Any resource as JSON.
    Json(Value),
}

/// `$body` with `$r` bound to the builder of a typed resource, `$json` otherwise.
macro_rules! typed {
    ($self:expr, $r:ident => $body:expr, $v:ident => $json:expr) => {
        match $self {
            Resource::Patient($r) => $body,
            Resource::Encounter($r) => $body,
            Resource::Task($r) => $body,
            Resource::Observation($r) => $body,
            Resource::DiagnosticReport($r) => $body,
            Resource::Condition($r) => $body,
            Resource::AllergyIntolerance($r) => $body,
            Resource::Procedure($r) => $body,
            Resource::Immunization($r) => $body,
            Resource::MedicationRequest($r) => $body,
            Resource::RelatedPerson($r) => $body,
            Resource::Coverage($r) => $body,
            Resource::ServiceRequest($r) => $body,
            Resource::Specimen($r) => $body,
            Resource::Json($v) => $json,
        }
    };
}

/// `From<builder>`. A builder with `extra` JSON members becomes [`Resource::Json`]
/// right away, so that the resource type and id read here are the JSON's.
macro_rules! from_builders {
    ($($t:ident),*) => {$(
        impl From<$t> for Resource {
            fn from(r: $t) -> Self {
                if r.extra.is_empty() {
                    Resource::$t(Box::new(r))
                } else {
                    Resource::Json(r.to_fhir())
                }
            }
        }
    )*};
}

from_builders!(
    Patient,
    Encounter,
    Task,
    Observation,
    DiagnosticReport,
    Condition,
    AllergyIntolerance,
    Procedure,
    Immunization,
    MedicationRequest,
    RelatedPerson,
    Coverage,
    ServiceRequest,
    Specimen
);

impl From<Value> for Resource {
    fn from(v: Value) -> Self {
        Resource::Json(v)
    }
}

impl Resource {
    /// `resourceType`; `None` for JSON without a string one.
    pub fn resource_type(&self) -> Option<&str> {
        typed!(self, _r => Some(type_name(self)), v => v["resourceType"].as_str())
    }

    /// `id`; `None` when absent (a builder's blank id is not written).
    pub fn id(&self) -> Option<&str> {
        typed!(self, r => Some(r.id.as_str()).filter(|id| !id.trim().is_empty()), v => v["id"].as_str())
    }

    /// Set `id`.
    pub fn set_id(&mut self, id: String) {
        typed!(self, r => r.id = id, v => v["id"] = Value::String(id))
    }

    /// The resource as JSON to edit in place (a typed one becomes [`Resource::Json`]).
    pub fn json_mut(&mut self) -> &mut Value {
        if !matches!(self, Resource::Json(_)) {
            *self = Resource::Json(self.to_fhir());
        }
        match self {
            Resource::Json(v) => v,
            _ => unreachable!("just made JSON"),
        }
    }

    /// The resource as a JSON value.
    pub fn into_value(self) -> Value {
        match self {
            Resource::Json(v) => v,
            other => other.to_fhir(),
        }
    }

    /// The JSON text: keys sorted, no empty members (as serde_json writes
    /// [`to_fhir`](ToFhir::to_fhir)'s value).
    pub fn to_json(&self) -> String {
        typed!(self, r => to_json(&**r), v => serde_json::to_string(v).unwrap_or_default())
    }
}

fn type_name(r: &Resource) -> &'static str {
    match r {
        Resource::Patient(_) => "Patient",
        Resource::Encounter(_) => "Encounter",
        Resource::Task(_) => "Task",
        Resource::Observation(_) => "Observation",
        Resource::DiagnosticReport(_) => "DiagnosticReport",
        Resource::Condition(_) => "Condition",
        Resource::AllergyIntolerance(_) => "AllergyIntolerance",
        Resource::Procedure(_) => "Procedure",
        Resource::Immunization(_) => "Immunization",
        Resource::MedicationRequest(_) => "MedicationRequest",
        Resource::RelatedPerson(_) => "RelatedPerson",
        Resource::Coverage(_) => "Coverage",
        Resource::ServiceRequest(_) => "ServiceRequest",
        Resource::Specimen(_) => "Specimen",
        Resource::Json(_) => "",
    }
}

impl ToFhir for Resource {
    fn to_fhir(&self) -> Value {
        typed!(self, r => to_value(&**r), v => v.clone())
    }
}

/// Equal when their JSON is.
impl PartialEq for Resource {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Resource::Json(a), Resource::Json(b)) => a == b,
            _ => self.to_fhir() == other.to_fhir(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fhir::{Choice, Coding, HumanName, Meta};

    #[test]
    fn typed_and_json_agree() {
        let p = Patient {
            id: "p1".into(),
            meta: Meta {
                source: Some("urn:x".into()),
                ..Default::default()
            },
            name: vec![HumanName {
                family: Some("Doe".into()),
                given: vec![" ".into()],
                ..Default::default()
            }],
            deceased: Some(Choice::Boolean(false)),
            ..Default::default()
        };
        let typed = Resource::from(p.clone());
        let json = Resource::from(p.to_fhir());
        assert_eq!(typed, json);
        assert_eq!(typed.to_json(), json.to_json());
        assert_eq!(typed.id(), json.id());
        assert_eq!(typed.resource_type(), json.resource_type());
    }

    #[test]
    fn extra_members_make_json() {
        let mut e = Encounter {
            id: "e1".into(),
            class: Coding::new("s", "c"),
            ..Default::default()
        };
        e.extra.insert("id".into(), "e2".into());
        let r = Resource::from(e);
        assert!(matches!(r, Resource::Json(_)));
        assert_eq!(r.id(), Some("e2"));
    }
}
