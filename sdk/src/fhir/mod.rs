//! FHIR R4 builders.
//!
//! - [`datatypes`]: `Identifier`, `CodeableConcept`/`Coding`, `HumanName`, `Address`,
//!   `ContactPoint`, `Reference`, `Period`, `Quantity`, `Range`, `Ratio`, `Annotation`,
//!   `Meta`, and [`Choice`] for `[x]` elements;
//! - [`admin`] (`Patient`, `Encounter`, `Task`) and [`clinical`] (`Observation`,
//!   `DiagnosticReport`, `Condition`, `AllergyIntolerance`, `Procedure`,
//!   `Immunization`, `MedicationRequest`): plain structs with public fields, built with
//!   `..Default::default()`, turned into [`serde_json::Value`] by [`ToFhir::to_fhir`];
//! - [`Resource`]: one of those resources, or any resource as JSON, as mappings
//!   return them; [`Resource::to_json`] writes a builder's JSON text directly,
//!   without building a [`serde_json::Value`] first (the same text serde_json writes);
//! - [`Obj`]: a JSON object builder for anything else, and [`strip_empty`];
//! - [`datetime`]: HL7v2 DTM to FHIR `date` / `dateTime` / `instant`.
//!
//! Nothing here writes an empty string, array or object (FHIR forbids them): empty
//! members are skipped, so a struct can be filled from whatever the source had.
//!
//! ```
//! use ehrgate_sdk::fhir::*;
//! let obs = Observation {
//!     id: ehrgate_sdk::ids::resource_id("Observation", "urn:ehrgate:LAB", "ORD1/1"),
//!     status: "final".into(),
//!     code: CodeableConcept::code("http://loinc.org", "718-7", Some("Hemoglobin")),
//!     subject: Some(Reference::to("Patient", "p1")),
//!     value: Some(Choice::Quantity(Quantity::ucum(decimal("12.5").unwrap(), "g/dL"))),
//!     ..Default::default()
//! };
//! let json = obs.to_fhir();
//! assert_eq!(json["valueQuantity"]["value"], 12.5);
//! assert!(json.get("note").is_none());
//! ```

pub mod admin;
pub mod care;
pub mod clinical;
pub mod datatypes;
pub mod datetime;
mod json;
mod members;
mod resource;
mod write;

pub use admin::*;
pub use care::*;
pub use clinical::*;
pub use datatypes::*;
pub(crate) use json::prefixed_uri;
pub use json::{Obj, ToFhir, strip_empty, uri_escape};
pub use resource::Resource;

use crate::adapter::{AdapterError, Output};

/// Default `map-fhir`: check each line is a JSON object with a string `resourceType`
/// and a string `id`, and pass it through unchanged. The first bad entry fails the
/// batch with [`AdapterError::InvalidInput`] located at its index (`/2`); the message
/// names what is wrong, never a value.
pub fn passthrough(batch: Vec<String>) -> Result<Output, AdapterError> {
    for (i, line) in batch.iter().enumerate() {
        check_resource(line).map_err(|m| AdapterError::invalid(m, Some(&format!("/{i}"))))?;
    }
    Ok(Output {
        resources: batch,
        warnings: Vec::new(),
    })
}

fn check_resource(line: &str) -> Result<(), String> {
    // Only the two members are looked at; the rest is checked for syntax and
    // skipped (no tree is built: this runs for every line of a bulk export).
    let mut de = serde_json::Deserializer::from_str(line);
    let head = serde::Deserialize::deserialize(&mut de).and_then(|h: Head| de.end().map(|()| h)).map_err(|e| {
        if e.classify() == serde_json::error::Category::Data {
            return "not a JSON object".to_string();
        }
        // serde_json's message is not quoted: it could echo input text.
        format!("not valid JSON ({:?} error at line {} column {})", e.classify(), e.line(), e.column())
    })?;
    for (key, member) in [("resourceType", head.resource_type), ("id", head.id)] {
        match member {
            Member::Text => {}
            Member::Empty => return Err(format!("`{key}` is empty")),
            Member::Other => return Err(format!("`{key}` is not a string")),
            Member::Missing => return Err(format!("missing `{key}`")),
        }
    }
    Ok(())
}

/// What a checked member holds.
#[derive(Default)]
enum Member {
    #[default]
    Missing,
    Text,
    Empty,
    Other,
}

#[derive(Default)]
struct Head {
    resource_type: Member,
    id: Member,
}

impl<'de> serde::Deserialize<'de> for Head {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Head;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Head, A::Error> {
                let mut head = Head::default();
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    match key.as_ref() {
                        "resourceType" => head.resource_type = map.next_value()?,
                        "id" => head.id = map.next_value()?,
                        _ => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(head)
            }
        }
        d.deserialize_map(V)
    }
}

impl<'de> serde::Deserialize<'de> for Member {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Member;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_str<E>(self, s: &str) -> Result<Member, E> {
                Ok(if s.trim().is_empty() { Member::Empty } else { Member::Text })
            }
            fn visit_bool<E>(self, _: bool) -> Result<Member, E> {
                Ok(Member::Other)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Member, E> {
                Ok(Member::Other)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Member, E> {
                Ok(Member::Other)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Member, E> {
                Ok(Member::Other)
            }
            fn visit_unit<E>(self) -> Result<Member, E> {
                Ok(Member::Other)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Member, A::Error> {
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(Member::Other)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Member, A::Error> {
                while map.next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?.is_some() {}
                Ok(Member::Other)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One of each resource with most fields set: no empties, required members
    /// present. `EHRGATE_FHIR_BUILDERS_NDJSON=path` writes them for
    /// `tests/fhir_validate.py`.
    #[test]
    fn every_builder_makes_a_resource() {
        let meta = Meta {
            source: Some("urn:ehrgate:test".into()),
            last_updated: Some("2024-01-01T00:00:00Z".into()),
            ..Default::default()
        };
        let pat = Reference::to("Patient", "p1");
        let cc = |c: &str| CodeableConcept::code("http://loinc.org", c, Some("x"));
        let q = Quantity::ucum(decimal("1.5").unwrap(), "mg");
        let dt = || Some("2024-01-01T10:00:00+01:00".to_string());
        let resources = vec![
            Patient {
                id: "p1".into(),
                meta: meta.clone(),
                identifier: vec![
                    Identifier::new(Some("urn:oid:1.2".into()), "1").with_v2_type("MR"),
                ],
                name: vec![HumanName {
                    family: Some("Doe".into()),
                    given: vec!["J".into()],
                    ..Default::default()
                }],
                telecom: vec![ContactPoint {
                    system: Some("phone".into()),
                    value: Some("555".into()),
                    ..Default::default()
                }],
                gender: Some("female".into()),
                birth_date: Some("1970-01-01".into()),
                deceased: Some(Choice::Boolean(false)),
                address: vec![Address {
                    city: Some("X".into()),
                    ..Default::default()
                }],
                contact: vec![PatientContact {
                    name: Some(HumanName {
                        family: Some("Roe".into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                link: vec![PatientLink {
                    other: Reference::to("Patient", "p0"),
                    type_: "replaces".into(),
                }],
                ..Default::default()
            }
            .to_fhir(),
            Encounter {
                id: "e1".into(),
                meta: meta.clone(),
                status: "in-progress".into(),
                class: Coding::new("http://terminology.hl7.org/CodeSystem/v3-ActCode", "IMP"),
                subject: Some(pat.clone()),
                period: Some(Period {
                    start: dt(),
                    end: None,
                }),
                location: vec![EncounterLocation {
                    location: Reference::display("Ward 1"),
                    status: Some("active".into()),
                    period: None,
                }],
                hospitalization: Some(EncounterHospitalization::default()),
                ..Default::default()
            }
            .to_fhir(),
            Observation {
                id: "o1".into(),
                meta: meta.clone(),
                status: "final".into(),
                code: cc("718-7"),
                subject: Some(pat.clone()),
                effective: dt().map(Choice::DateTime),
                value: Some(Choice::Quantity(q.clone())),
                reference_range: vec![ReferenceRange {
                    low: Some(q.clone()),
                    text: Some("> 1".into()),
                    ..Default::default()
                }],
                note: vec![Annotation {
                    text: "n".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }
            .to_fhir(),
            DiagnosticReport {
                id: "r1".into(),
                meta: meta.clone(),
                status: "final".into(),
                code: cc("57021-8"),
                subject: Some(pat.clone()),
                result: vec![Reference::to("Observation", "o1")],
                effective: Some(Choice::Period(Period {
                    start: dt(),
                    end: dt(),
                })),
                ..Default::default()
            }
            .to_fhir(),
            Condition {
                id: "c1".into(),
                meta: meta.clone(),
                code: Some(cc("1")),
                subject: pat.clone(),
                onset: dt().map(Choice::DateTime),
                ..Default::default()
            }
            .to_fhir(),
            AllergyIntolerance {
                id: "a1".into(),
                meta: meta.clone(),
                code: Some(cc("2")),
                patient: pat.clone(),
                category: vec!["food".into()],
                reaction: vec![AllergyReaction {
                    manifestation: vec![CodeableConcept::text("rash")],
                    severity: Some("mild".into()),
                    ..Default::default()
                }],
                ..Default::default()
            }
            .to_fhir(),
            Procedure {
                id: "pr1".into(),
                meta: meta.clone(),
                status: "completed".into(),
                code: Some(cc("3")),
                subject: pat.clone(),
                performed: dt().map(Choice::DateTime),
                performer: vec![Performer {
                    function: None,
                    actor: Reference::display("Dr X"),
                }],
                ..Default::default()
            }
            .to_fhir(),
            Immunization {
                id: "i1".into(),
                meta: meta.clone(),
                status: "completed".into(),
                vaccine_code: cc("4"),
                patient: pat.clone(),
                occurrence: dt().map(Choice::DateTime),
                dose_quantity: Some(q.clone()),
                ..Default::default()
            }
            .to_fhir(),
            MedicationRequest {
                id: "m1".into(),
                meta: meta.clone(),
                status: "active".into(),
                intent: "order".into(),
                medication: Some(Choice::CodeableConcept(cc("5"))),
                subject: pat.clone(),
                dosage_instruction: vec![Dosage {
                    text: Some("1 daily".into()),
                    dose: Some(q.clone()),
                    ..Default::default()
                }],
                ..Default::default()
            }
            .to_fhir(),
            Task {
                id: "t1".into(),
                meta,
                status: "requested".into(),
                intent: "order".into(),
                description: Some("Discharge checklist".into()),
                for_: Some(pat),
                authored_on: dt(),
                ..Default::default()
            }
            .to_fhir(),
        ];
        let mut ndjson = String::new();
        for r in &resources {
            let mut copy = r.clone();
            assert!(!strip_empty(&mut copy));
            assert_eq!(&copy, r);
            assert!(r["resourceType"].is_string() && r["id"].is_string());
            ndjson.push_str(&r.to_string());
            ndjson.push('\n');
        }
        assert_eq!(
            resources[7]["occurrenceDateTime"],
            "2024-01-01T10:00:00+01:00"
        );
        assert_eq!(
            resources[8]["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"],
            1.5
        );
        assert_eq!(resources[9]["for"]["reference"], "Patient/p1");
        assert!(
            resources[1].get("hospitalization").is_none(),
            "an all-empty part is left out"
        );
        if let Ok(path) = std::env::var("EHRGATE_FHIR_BUILDERS_NDJSON") {
            std::fs::write(path, ndjson).unwrap();
        }
    }

    #[test]
    fn passthrough_keeps_valid_lines_unchanged() {
        let batch = vec![
            r#"{"resourceType":"Patient","id":"a",  "gender":"male"}"#.to_string(),
            r#"{"resourceType":"Observation","id":"b"}"#.to_string(),
        ];
        let out = passthrough(batch.clone()).unwrap();
        assert_eq!(out.resources, batch);
        assert!(out.warnings.is_empty());
        assert!(passthrough(vec![]).unwrap().resources.is_empty());
    }

    #[test]
    fn passthrough_rejects_with_index_and_no_phi() {
        let cases = [
            (
                r#"{"resourceType":"Patient","name":[{"family":"Secretname"}]}"#,
                "missing `id`",
            ),
            (
                r#"{"id":"x","name":"Secretname"}"#,
                "missing `resourceType`",
            ),
            (
                r#"{"resourceType":"Patient","id":7}"#,
                "`id` is not a string",
            ),
            (r#"{"resourceType":"","id":"x"}"#, "`resourceType` is empty"),
            (r#"["Secretname"]"#, "not a JSON object"),
            (
                r#"{"resourceType":"Patient","id":"x","name":"Secretname"#,
                "not valid JSON",
            ),
            ("Secretname", "not valid JSON"),
        ];
        for (bad, why) in cases {
            let batch = vec![
                r#"{"resourceType":"Patient","id":"ok"}"#.to_string(),
                "{\"resourceType\":\"Patient\",\"id\":\"ok2\"}".into(),
                bad.into(),
            ];
            match passthrough(batch) {
                Err(AdapterError::InvalidInput { message, location }) => {
                    assert_eq!(location.as_deref(), Some("/2"), "{bad}");
                    assert!(message.contains(why), "{message} / {why}");
                    assert!(!message.contains("Secretname"), "{message}");
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }
}
