//! What the read tools make of the EHR's answers: resources out of a search
//! Bundle, the latest vital sign per code, the active medications. Pure functions,
//! so that they are tested without an EHR.

use serde_json::Value;

/// The resources of `resource_type` in a search Bundle (outcome entries and
/// included resources of other types are left out), or the resource itself when
/// the answer is one.
pub fn resources_of(answer: &Value, resource_type: &str) -> Vec<Value> {
    match answer.get("resourceType").and_then(Value::as_str) {
        Some("Bundle") => answer
            .get("entry")
            .and_then(Value::as_array)
            .map(|entries| {
                entries
                    .iter()
                    .filter_map(|e| e.get("resource"))
                    .filter(|r| r.get("resourceType").and_then(Value::as_str) == Some(resource_type))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default(),
        Some(t) if t == resource_type => vec![answer.clone()],
        _ => vec![],
    }
}

fn has_category(r: &Value, code: &str) -> bool {
    r.get("category")
        .and_then(Value::as_array)
        .is_some_and(|cats| cats.iter().any(|c| c.get("coding").and_then(Value::as_array).is_some_and(|cs| cs.iter().any(|k| k.get("code").and_then(Value::as_str) == Some(code)))))
}

/// The clinically relevant time of an Observation, as written (ISO 8601 strings of
/// one resource compare correctly as text only when their precision and offset
/// agree; the EHR writes them alike, and a tie keeps the first).
fn observed_at(r: &Value) -> Option<&str> {
    r.get("effectiveDateTime")
        .or_else(|| r.get("effectiveInstant"))
        .or_else(|| r.get("effectivePeriod").and_then(|p| p.get("start")))
        .or_else(|| r.get("issued"))
        .and_then(Value::as_str)
}

fn code_key(r: &Value) -> String {
    let c = r.get("code").and_then(|c| c.get("coding")).and_then(Value::as_array).and_then(|cs| cs.first());
    match c {
        Some(c) => format!("{}|{}", c.get("system").and_then(Value::as_str).unwrap_or(""), c.get("code").and_then(Value::as_str).unwrap_or("")),
        None => r.get("code").and_then(|c| c.get("text")).and_then(Value::as_str).unwrap_or("").to_string(),
    }
}

/// The latest vital-signs Observation per code (entered-in-error and cancelled ones
/// left out), ordered by code.
pub fn latest_vitals(observations: Vec<Value>) -> Vec<Value> {
    let mut latest: std::collections::BTreeMap<String, Value> = std::collections::BTreeMap::new();
    for o in observations {
        if !has_category(&o, "vital-signs") {
            continue;
        }
        if matches!(o.get("status").and_then(Value::as_str), Some("entered-in-error" | "cancelled")) {
            continue;
        }
        let key = code_key(&o);
        let newer = match latest.get(&key) {
            None => true,
            Some(cur) => observed_at(&o) > observed_at(cur),
        };
        if newer {
            latest.insert(key, o);
        }
    }
    latest.into_values().collect()
}

/// The MedicationRequests whose status is `active`.
pub fn active(requests: Vec<Value>) -> Vec<Value> {
    requests.into_iter().filter(|r| r.get("status").and_then(Value::as_str) == Some("active")).collect()
}

/// An id as FHIR allows it (`[A-Za-z0-9\-\.]{1,64}`), after an optional `Type/`.
pub fn fhir_id<'a>(value: &'a str, resource_type: &str) -> Option<&'a str> {
    let id = value.strip_prefix(resource_type).and_then(|r| r.strip_prefix('/')).unwrap_or(value);
    // (at least one letter or digit: `.` and `..` would be dot segments in the URL)
    let valid = id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.') && id.bytes().any(|b| b.is_ascii_alphanumeric());
    valid.then_some(id)
}

/// Is `r` about `Patient/<patient>` (its `subject`, `patient` or `for`, or the
/// Patient itself)? A server may ignore a search parameter it does not support and
/// answer with everyone's resources; only those about the patient asked for pass.
pub fn about(r: &Value, patient: &str) -> bool {
    if r.get("resourceType").and_then(Value::as_str) == Some("Patient") {
        return r.get("id").and_then(Value::as_str) == Some(patient);
    }
    let wanted = format!("Patient/{patient}");
    ["subject", "patient", "for"].iter().any(|k| r.get(*k).and_then(|v| v.get("reference")).and_then(Value::as_str) == Some(wanted.as_str()))
}

/// A FHIR resource type name as the spec spells them (`Observation`).
pub fn resource_type(t: &str) -> bool {
    !t.is_empty() && t.len() <= 64 && t.starts_with(|c: char| c.is_ascii_uppercase()) && t.chars().all(|c| c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn obs(id: &str, code: &str, at: &str, cat: &str) -> Value {
        json!({"resourceType": "Observation", "id": id, "status": "final",
               "category": [{"coding": [{"code": cat}]}],
               "code": {"coding": [{"system": "http://loinc.org", "code": code}]}, "effectiveDateTime": at})
    }

    #[test]
    fn the_latest_vital_per_code_and_nothing_else() {
        let mut voided = obs("v", "8867-4", "2026-12-01T12:00:00Z", "vital-signs");
        voided["status"] = json!("entered-in-error");
        let all = vec![
            obs("a", "8867-4", "2026-11-01T10:00:00Z", "vital-signs"),
            obs("b", "8867-4", "2026-11-02T10:00:00Z", "vital-signs"),
            obs("c", "8310-5", "2026-11-01T10:00:00Z", "vital-signs"),
            obs("d", "2345-7", "2026-11-03T10:00:00Z", "laboratory"),
            voided,
        ];
        let got: Vec<String> = latest_vitals(all).iter().map(|o| o["id"].as_str().unwrap().to_string()).collect();
        assert_eq!(got, vec!["c", "b"]);
    }

    #[test]
    fn bundles_yield_their_matches_only() {
        let b = json!({"resourceType": "Bundle", "entry": [
            {"resource": {"resourceType": "MedicationRequest", "id": "m1", "status": "active"}},
            {"resource": {"resourceType": "MedicationRequest", "id": "m2", "status": "stopped"}},
            {"resource": {"resourceType": "OperationOutcome"}},
        ]});
        let meds = resources_of(&b, "MedicationRequest");
        assert_eq!(meds.len(), 2);
        assert_eq!(active(meds).len(), 1);
        assert_eq!(resources_of(&json!({"resourceType": "Encounter", "id": "e"}), "Encounter").len(), 1);
        assert!(resources_of(&json!({"resourceType": "OperationOutcome"}), "Encounter").is_empty());
    }

    #[test]
    fn ids_and_types_are_checked() {
        assert_eq!(fhir_id("Patient/p-1", "Patient"), Some("p-1"));
        assert_eq!(fhir_id("p-1", "Patient"), Some("p-1"));
        assert_eq!(fhir_id("../x", "Patient"), None);
        assert_eq!(fhir_id("a?b=c", "Patient"), None);
        assert_eq!(fhir_id(".", "Patient"), None);
        assert_eq!(fhir_id("..", "Observation"), None);
        assert_eq!(fhir_id("Patient/..", "Patient"), None);
        assert_eq!(fhir_id("", "Patient"), None);
        let o = json!({"resourceType": "Observation", "subject": {"reference": "Patient/p1"}});
        assert!(about(&o, "p1") && !about(&o, "p2"));
        assert!(about(&json!({"resourceType": "Patient", "id": "p1"}), "p1"));
        assert!(!about(&json!({"resourceType": "Encounter"}), "p1"));
        assert!(resource_type("Observation") && !resource_type("observation") && !resource_type("Obs/x"));
    }
}
