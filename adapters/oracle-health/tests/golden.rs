//! Golden files over tests/fixtures with the example site configuration; regenerate
//! with `EHRGATE_UPDATE_GOLDEN=1` and review the diff.

mod common;

use std::path::PathBuf;

use common::{dir, host};
use ehrgate_adapter_oracle_health::{MESSAGE_TYPES, OracleHealth};
use ehrgate_sdk::testing::{self, with_host};
use ehrgate_sdk::{Adapter, Hl7Input};
use serde_json::Value;

#[test]
fn golden() {
    let inputs = testing::files_in(dir("fixtures"), &["hl7"]);
    // Every claimed message type has a fixture of this vendor's or, for the types
    // the vendor sends as the standard has them, a shared sample (golden-shared).
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let shared = testing::standard_samples(&root.join("../shared"), &root);
    for t in MESSAGE_TYPES {
        let code = t.split('^').map(str::to_ascii_lowercase).collect::<Vec<_>>().join("_");
        assert!(inputs.iter().chain(&shared).any(|p| p.to_string_lossy().contains(&code)), "no fixture or shared sample for {t}");
    }
    with_host(host(&[]), || testing::check_golden::<OracleHealth>(&inputs, &dir("golden")));
    with_host(host(&[]), || testing::check_golden::<OracleHealth>(&shared, &dir("golden-shared")));
}

fn map(file: &str, extra: &[(&str, &str)]) -> Vec<Value> {
    let raw = std::fs::read_to_string(dir("fixtures").join(file)).unwrap();
    let (out, _) = with_host(host(extra), || OracleHealth::map_hl7(&Hl7Input::new(raw)).unwrap());
    out.resources.iter().map(|r| serde_json::from_str(r).unwrap()).collect()
}

#[test]
fn fin_in_pid18_keys_the_encounter_with_the_site_oid() {
    let r = map("oracle_adt_a01_admit.hl7", &[]);
    let enc = r.iter().find(|r| r["resourceType"] == "Encounter").expect("an Encounter from the FIN");
    assert_eq!(enc["id"], ehrgate_sdk::ids::resource_id("Encounter", "urn:oid:2.16.840.1.113883.19.5.2", "5000001"));
    assert_eq!(enc["identifier"][0]["system"], "urn:oid:2.16.840.1.113883.19.5.2");
    let p = &r[0];
    assert_eq!(p["id"], ehrgate_sdk::ids::resource_id("Patient", "urn:oid:2.16.840.1.113883.19.5.1", "100200300"));
    // Without the FIN convention the Encounter is keyed by admit time instead.
    let off = map("oracle_adt_a01_admit.hl7", &[("visit.from-account", "false")]);
    let enc2 = off.iter().find(|r| r["resourceType"] == "Encounter").unwrap();
    assert_ne!(enc2["id"], enc["id"]);
}

#[test]
fn the_fin_can_key_the_encounter_even_when_pv1_19_holds_a_sequence() {
    // The shared Cerner HNAM sample: PV1-19 is `01`, the FIN is in PID-18.
    let raw = std::fs::read_to_string(ehrgate_testkit_shared().join("data/hl7/adt_a01_cerner_hnam_v23.hl7")).unwrap();
    let enc = |extra: &[(&str, &str)]| -> Value {
        let (out, _) = with_host(host(extra), || OracleHealth::map_hl7(&Hl7Input::new(raw.clone())).unwrap());
        let r: Vec<Value> = out.resources.iter().map(|r| serde_json::from_str(r).unwrap()).collect();
        r.into_iter().find(|r| r["resourceType"] == "Encounter").expect("an Encounter")
    };
    let fin = ehrgate_sdk::hl7::Message::parse(&raw).unwrap().get("PID-18.1").unwrap().to_string();
    let default = enc(&[]);
    assert_eq!(default["identifier"][0]["value"], "01", "by default a non-empty PV1-19 is kept");
    let preferred = enc(&[("visit.prefer-account", "true")]);
    assert_eq!(preferred["identifier"][0]["value"], fin.as_str());
    assert_ne!(preferred["id"], default["id"]);
}

fn ehrgate_testkit_shared() -> std::path::PathBuf {
    std::env::var_os("EHRGATE_SHARED").map(Into::into).unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
}

#[test]
fn millennium_code_values_go_through_the_concept_map() {
    let r = map("oracle_oru_r01_potassium_code_value.hl7", &[]);
    let obs = r.iter().find(|r| r["resourceType"] == "Observation").unwrap();
    assert_eq!(obs["code"]["coding"][0]["system"], "http://loinc.org");
    assert_eq!(obs["code"]["coding"][0]["code"], "2823-3");
    assert_eq!(obs["code"]["coding"][1]["code"], "2823");
    let dropped = map("oracle_oru_r01_potassium_code_value.hl7", &[("concept-map.keep-source", "false")]);
    let obs = dropped.iter().find(|r| r["resourceType"] == "Observation").unwrap();
    assert_eq!(obs["code"]["coding"].as_array().unwrap().len(), 1);
    let unmapped = map("oracle_oru_r01_potassium_code_value.hl7", &[("concept-map", "[]")]);
    let obs = unmapped.iter().find(|r| r["resourceType"] == "Observation").unwrap();
    assert_eq!(obs["code"]["coding"][0]["code"], "2823");
}

#[test]
fn describe_names_the_task_api() {
    let d = OracleHealth::describe();
    assert_eq!(d.name, "oracle-health");
    assert_eq!(d.actions, vec!["discharge-checklist"]);
    assert_eq!(d.connections[0].paths, vec!["/Task"]);
}
