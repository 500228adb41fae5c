//! The people and orders around care: RelatedPerson, Coverage, ServiceRequest,
//! Specimen. Same conventions as [`super::admin`] (members in key order; `extra`
//! for anything else).

use super::datatypes::*;
use super::members::{Members, Sink, to_fhir_via_members};
use serde_json::{Map, Number, Value};

/// `RelatedPerson`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RelatedPerson {
    pub id: String,
    pub meta: Meta,
    pub identifier: Vec<Identifier>,
    pub patient: Reference,
    pub relationship: Vec<CodeableConcept>,
    pub name: Vec<HumanName>,
    pub telecom: Vec<ContactPoint>,
    pub gender: Option<String>,
    pub birth_date: Option<String>,
    pub address: Vec<Address>,
    pub period: Option<Period>,
    pub extra: Map<String, Value>,
}

impl Members for RelatedPerson {
    fn members<S: Sink>(&self, s: &mut S) {
        s.list("address", &self.address);
        s.str("birthDate", self.birth_date.as_deref());
        s.str("gender", self.gender.as_deref());
        s.str("id", Some(&self.id));
        s.list("identifier", &self.identifier);
        s.obj("meta", Some(&self.meta));
        s.list("name", &self.name);
        s.obj("patient", Some(&self.patient));
        s.obj("period", self.period.as_ref());
        s.list("relationship", &self.relationship);
        s.str("resourceType", Some("RelatedPerson"));
        s.list("telecom", &self.telecom);
    }
    fn extra(&self) -> Option<&Map<String, Value>> {
        Some(&self.extra)
    }
}

/// `Coverage`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Coverage {
    pub id: String,
    pub meta: Meta,
    pub identifier: Vec<Identifier>,
    /// active | cancelled | draft | entered-in-error
    pub status: String,
    pub type_: Option<CodeableConcept>,
    pub subscriber: Option<Reference>,
    pub subscriber_id: Option<String>,
    pub beneficiary: Reference,
    pub relationship: Option<CodeableConcept>,
    pub period: Option<Period>,
    pub payor: Vec<Reference>,
    pub class: Vec<CoverageClass>,
    pub order: Option<u32>,
    pub extra: Map<String, Value>,
}

/// `Coverage.class`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CoverageClass {
    pub type_: CodeableConcept,
    pub value: String,
    pub name: Option<String>,
}

impl Members for CoverageClass {
    fn members<S: Sink>(&self, s: &mut S) {
        s.str("name", self.name.as_deref());
        s.obj("type", Some(&self.type_));
        s.str("value", Some(&self.value));
    }
}

impl Members for Coverage {
    fn members<S: Sink>(&self, s: &mut S) {
        s.obj("beneficiary", Some(&self.beneficiary));
        s.list("class", &self.class);
        s.str("id", Some(&self.id));
        s.list("identifier", &self.identifier);
        s.obj("meta", Some(&self.meta));
        s.number("order", self.order.map(Number::from).as_ref());
        s.list("payor", &self.payor);
        s.obj("period", self.period.as_ref());
        s.obj("relationship", self.relationship.as_ref());
        s.str("resourceType", Some("Coverage"));
        s.str("status", Some(&self.status));
        s.obj("subscriber", self.subscriber.as_ref());
        s.str("subscriberId", self.subscriber_id.as_deref());
        s.obj("type", self.type_.as_ref());
    }
    fn extra(&self) -> Option<&Map<String, Value>> {
        Some(&self.extra)
    }
}

/// `ServiceRequest`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServiceRequest {
    pub id: String,
    pub meta: Meta,
    pub identifier: Vec<Identifier>,
    /// draft | active | on-hold | revoked | completed | entered-in-error | unknown
    pub status: String,
    /// proposal | plan | directive | order | ...
    pub intent: String,
    pub priority: Option<String>,
    pub code: Option<CodeableConcept>,
    pub subject: Reference,
    pub encounter: Option<Reference>,
    pub occurrence: Option<Choice>,
    pub authored_on: Option<String>,
    pub requester: Option<Reference>,
    pub reason_code: Vec<CodeableConcept>,
    pub specimen: Vec<Reference>,
    pub based_on: Vec<Reference>,
    pub category: Vec<CodeableConcept>,
    pub order_detail: Vec<CodeableConcept>,
    pub extra: Map<String, Value>,
}

impl Members for ServiceRequest {
    fn members<S: Sink>(&self, s: &mut S) {
        s.str("authoredOn", self.authored_on.as_deref());
        s.list("basedOn", &self.based_on);
        s.list("category", &self.category);
        s.obj("code", self.code.as_ref());
        s.obj("encounter", self.encounter.as_ref());
        s.str("id", Some(&self.id));
        s.list("identifier", &self.identifier);
        s.str("intent", Some(&self.intent));
        s.obj("meta", Some(&self.meta));
        s.choice("occurrence", self.occurrence.as_ref());
        s.list("orderDetail", &self.order_detail);
        s.str("priority", self.priority.as_deref());
        s.list("reasonCode", &self.reason_code);
        s.obj("requester", self.requester.as_ref());
        s.str("resourceType", Some("ServiceRequest"));
        s.list("specimen", &self.specimen);
        s.str("status", Some(&self.status));
        s.obj("subject", Some(&self.subject));
    }
    fn extra(&self) -> Option<&Map<String, Value>> {
        Some(&self.extra)
    }
}

/// `Specimen`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Specimen {
    pub id: String,
    pub meta: Meta,
    pub identifier: Vec<Identifier>,
    /// available | unavailable | unsatisfactory | entered-in-error
    pub status: Option<String>,
    pub type_: Option<CodeableConcept>,
    pub subject: Option<Reference>,
    /// FHIR `dateTime`.
    pub received_time: Option<String>,
    pub request: Vec<Reference>,
    pub collection: Option<SpecimenCollection>,
    pub parent: Vec<Reference>,
    pub extra: Map<String, Value>,
}

/// `Specimen.collection`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SpecimenCollection {
    /// `collectedDateTime` or `collectedPeriod`.
    pub collected: Option<Choice>,
    pub method: Option<CodeableConcept>,
    pub body_site: Option<CodeableConcept>,
    pub collector: Option<Reference>,
    pub quantity: Option<Quantity>,
}

impl SpecimenCollection {
    pub fn is_empty(&self) -> bool {
        self.collected.is_none() && self.method.is_none() && self.body_site.is_none() && self.collector.is_none() && self.quantity.is_none()
    }
}

impl Members for SpecimenCollection {
    fn members<S: Sink>(&self, s: &mut S) {
        s.obj("bodySite", self.body_site.as_ref());
        s.choice("collected", self.collected.as_ref());
        s.obj("collector", self.collector.as_ref());
        s.obj("method", self.method.as_ref());
        s.obj("quantity", self.quantity.as_ref());
    }
}

impl Members for Specimen {
    fn members<S: Sink>(&self, s: &mut S) {
        s.obj("collection", self.collection.as_ref().filter(|c| !c.is_empty()));
        s.str("id", Some(&self.id));
        s.list("identifier", &self.identifier);
        s.obj("meta", Some(&self.meta));
        s.list("parent", &self.parent);
        s.str("receivedTime", self.received_time.as_deref());
        s.list("request", &self.request);
        s.str("resourceType", Some("Specimen"));
        s.str("status", self.status.as_deref());
        s.obj("subject", self.subject.as_ref());
        s.obj("type", self.type_.as_ref());
    }
    fn extra(&self) -> Option<&Map<String, Value>> {
        Some(&self.extra)
    }
}

to_fhir_via_members!(RelatedPerson, Coverage, CoverageClass, ServiceRequest, Specimen, SpecimenCollection);
