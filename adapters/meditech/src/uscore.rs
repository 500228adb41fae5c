//! US Core (STU 3.1.1, the version named by the ONC Cures Update / USCDI v1) profile
//! canonical URLs by resource type, for `meta.profile`.

use serde_json::Value;

const BASE: &str = "http://hl7.org/fhir/us/core/StructureDefinition/";

/// Resource type -> US Core profile id (Observation is chosen by category).
pub const PROFILES: &[(&str, &str)] = &[
    ("AllergyIntolerance", "us-core-allergyintolerance"),
    ("CarePlan", "us-core-careplan"),
    ("CareTeam", "us-core-careteam"),
    ("Condition", "us-core-condition"),
    ("DiagnosticReport", "us-core-diagnosticreport-lab"),
    ("DocumentReference", "us-core-documentreference"),
    ("Encounter", "us-core-encounter"),
    ("Goal", "us-core-goal"),
    ("Immunization", "us-core-immunization"),
    ("Location", "us-core-location"),
    ("Medication", "us-core-medication"),
    ("MedicationRequest", "us-core-medicationrequest"),
    ("Observation", "us-core-observation-lab"),
    ("Organization", "us-core-organization"),
    ("Patient", "us-core-patient"),
    ("Practitioner", "us-core-practitioner"),
    ("Procedure", "us-core-procedure"),
];

fn has_category(v: &Value, code: &str) -> bool {
    v["category"].as_array().is_some_and(|cats| {
        cats.iter().any(|c| c["coding"].as_array().is_some_and(|cs| cs.iter().any(|x| x["code"] == code)))
    })
}

/// The profile URL for a resource: by type; Observations by category (vital signs ->
/// `us-core-vital-signs`, laboratory -> `us-core-observation-lab`; others none);
/// DiagnosticReports: `-lab` for category LAB, else `-note`.
pub fn profile_for(v: &Value) -> Option<String> {
    let rt = v["resourceType"].as_str()?;
    let id = match rt {
        "Observation" if has_category(v, "vital-signs") => "us-core-vital-signs",
        "Observation" if has_category(v, "laboratory") => "us-core-observation-lab",
        "Observation" => return None,
        "DiagnosticReport" if has_category(v, "LAB") => "us-core-diagnosticreport-lab",
        "DiagnosticReport" => "us-core-diagnosticreport-note",
        _ => PROFILES.iter().find(|(t, _)| *t == rt)?.1,
    };
    Some(format!("{BASE}{id}"))
}

/// Add the profile to `meta.profile` (kept once, after the ones present). Returns
/// false when the resource has no US Core profile.
pub fn add_profile(v: &mut Value) -> bool {
    let Some(p) = profile_for(v) else { return false };
    if !v["meta"].is_object() {
        v["meta"] = serde_json::json!({});
    }
    let meta = &mut v["meta"];
    if !meta["profile"].is_array() {
        meta["profile"] = serde_json::json!([]);
    }
    let list = meta["profile"].as_array_mut().expect("array");
    if !list.iter().any(|x| x == &Value::String(p.clone())) {
        list.push(Value::String(p));
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn profiles_by_type_and_category() {
        let mut p = json!({"resourceType": "Patient", "meta": {"profile": ["http://x"]}});
        assert!(add_profile(&mut p));
        assert!(add_profile(&mut p));
        assert_eq!(p["meta"]["profile"], json!(["http://x", "http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"]));
        let vs = json!({"resourceType": "Observation", "category": [{"coding": [{"code": "vital-signs"}]}]});
        assert!(profile_for(&vs).unwrap().ends_with("us-core-vital-signs"));
        assert_eq!(profile_for(&json!({"resourceType": "Observation"})), None);
        assert_eq!(profile_for(&json!({"resourceType": "Claim"})), None);
    }
}
