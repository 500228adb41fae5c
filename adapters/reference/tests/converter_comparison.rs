//! Side by side with Microsoft's FHIR-Converter: for each sample whose converter
//! output is in ../shared/data/fhir/hl7v2_to_fhir_expected, the share of the
//! converter's clinical resources (by type), Observation codes and Patient
//! identifiers that the standard mapping also produces. Prints the table; fails if
//! a total falls below the floor (raise the floors as the mapping improves; the
//! target is 95% each). The deliberate differences are in docs/mapping.md.
//!
//! And referential integrity: every reference in a message's output resolves to a
//! resource of that output, over every sample of every claimed message type.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use ehrgate_adapter_reference::Reference;
use ehrgate_sdk::testing::{self, FileResult};
use serde_json::Value;

/// The floors: the totals measured when they were last raised.
const FLOOR_RESOURCES: f64 = 0.64;
const FLOOR_CODES: f64 = 0.80;
const FLOOR_IDENTIFIERS: f64 = 0.75;

/// Resources the converter makes that the standard mapping deliberately does not
/// (docs/mapping.md): message bookkeeping, and people, places, organisations and
/// devices, which the standard mapping references logically (identifier and
/// display) instead of inventing a resource per mention.
const NOT_COMPARED: &[&str] = &[
    "MessageHeader", "Provenance", "Organization", "Location", "Practitioner", "PractitionerRole", "Device", "Account",
    "EpisodeOfCare", "ResearchStudy", "Consent",
];

fn shared() -> PathBuf {
    std::env::var_os("EHRGATE_SHARED").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
}

fn ours(path: &std::path::Path) -> Vec<Value> {
    match testing::map_file::<Reference>(path) {
        FileResult::Mapped { resources, .. } => resources.iter().map(|r| serde_json::from_str(r).unwrap()).collect(),
        FileResult::Failed(e) => panic!("{}: {e}", path.display()),
    }
}

fn observation_codes(rs: &[Value]) -> BTreeSet<String> {
    rs.iter()
        .filter(|r| r["resourceType"] == "Observation")
        .flat_map(|r| r["code"]["coding"].as_array().cloned().unwrap_or_default())
        .filter_map(|c| c["code"].as_str().map(str::to_string))
        .collect()
}

fn patient_identifiers(rs: &[Value]) -> BTreeSet<String> {
    rs.iter()
        .filter(|r| r["resourceType"] == "Patient")
        .flat_map(|r| r["identifier"].as_array().cloned().unwrap_or_default())
        .filter_map(|i| i["value"].as_str().map(|v| v.trim().to_string()))
        .collect()
}

#[test]
fn the_standard_mapping_covers_what_the_converter_produces() {
    let expected_dir = shared().join("data/fhir/hl7v2_to_fhir_expected");
    let mut totals = [(0usize, 0usize); 3];
    let mut report = String::new();
    for file in testing::files_in(&expected_dir, &["json"]) {
        let name = file.file_name().unwrap().to_string_lossy().replace(".fhir.json", "");
        let bundle: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        let theirs: Vec<Value> = bundle["entry"].as_array().unwrap().iter().map(|e| e["resource"].clone()).collect();
        let ours = ours(&shared().join(format!("data/hl7/{name}.hl7")));
        let mut want: BTreeMap<String, usize> = BTreeMap::new();
        for r in &theirs {
            let t = r["resourceType"].as_str().unwrap();
            if !NOT_COMPARED.contains(&t) {
                *want.entry(t.to_string()).or_default() += 1;
            }
        }
        let mut have: BTreeMap<String, usize> = BTreeMap::new();
        for r in &ours {
            *have.entry(r["resourceType"].as_str().unwrap().to_string()).or_default() += 1;
        }
        let matched: usize = want.iter().map(|(t, n)| (*n).min(have.get(t).copied().unwrap_or(0))).sum();
        let missing: Vec<String> = want.iter().filter(|(t, n)| have.get(*t).copied().unwrap_or(0) < **n).map(|(t, n)| format!("{t} {}", n - have.get(t).copied().unwrap_or(0))).collect();
        let (tc, oc) = (observation_codes(&theirs), observation_codes(&ours));
        let (ti, oi) = (patient_identifiers(&theirs), patient_identifiers(&ours));
        let rows = [(matched, want.values().sum()), (tc.intersection(&oc).count(), tc.len()), (ti.intersection(&oi).count(), ti.len())];
        for (t, r) in totals.iter_mut().zip(rows) {
            t.0 += r.0;
            t.1 += r.1;
        }
        report.push_str(&format!(
            "{name:40} resources {:>3}/{:<3} codes {:>2}/{:<2} identifiers {:>2}/{:<2} not made: {}\n",
            rows[0].0,
            rows[0].1,
            rows[1].0,
            rows[1].1,
            rows[2].0,
            rows[2].1,
            if missing.is_empty() { "-".to_string() } else { missing.join(", ") }
        ));
    }
    let share = |(m, n): (usize, usize)| if n == 0 { 1.0 } else { m as f64 / n as f64 };
    let [res, codes, ids] = totals.map(share);
    report.push_str(&format!("TOTAL resources {:.0}%  Observation codes {:.0}%  Patient identifiers {:.0}%\n", res * 100.0, codes * 100.0, ids * 100.0));
    eprintln!("{report}");
    assert!(res >= FLOOR_RESOURCES && codes >= FLOOR_CODES && ids >= FLOOR_IDENTIFIERS, "below the floors ({FLOOR_RESOURCES}, {FLOOR_CODES}, {FLOOR_IDENTIFIERS}):\n{report}");
}

fn references(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("reference", Value::String(s)) => out.push(s.clone()),
                    _ => references(x, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| references(x, out)),
        _ => {}
    }
}

#[test]
fn every_reference_resolves_within_the_message_output() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut checked = 0;
    for file in testing::standard_samples(&shared(), &root) {
        let FileResult::Mapped { resources, .. } = testing::map_file::<Reference>(&file) else { continue };
        let rs: Vec<Value> = resources.iter().map(|r| serde_json::from_str(r).unwrap()).collect();
        let ids: BTreeSet<String> = rs.iter().map(|r| format!("{}/{}", r["resourceType"].as_str().unwrap(), r["id"].as_str().unwrap())).collect();
        for r in &rs {
            let mut refs = Vec::new();
            references(r, &mut refs);
            for x in refs {
                checked += 1;
                assert!(ids.contains(&x), "{}: {} {} refers to {x}, which the message's output does not hold", file.display(), r["resourceType"], r["id"]);
            }
        }
    }
    assert!(checked > 400, "only {checked} references checked");
}
