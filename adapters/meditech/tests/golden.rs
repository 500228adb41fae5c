//! Golden files over tests/fixtures with the example site configuration; regenerate
//! with `EHRGATE_UPDATE_GOLDEN=1` and review the diff.

mod common;

use std::path::PathBuf;

use common::{dir, host};
use ehrgate_adapter_meditech::{MESSAGE_TYPES, Meditech};
use ehrgate_sdk::testing::{self, with_host};
use ehrgate_sdk::{Adapter, Hl7Input};
use serde_json::Value;

#[test]
fn golden() {
    let inputs = testing::files_in(dir("fixtures"), &["hl7", "ndjson"]);
    // Every claimed message type has a fixture of this vendor's or, for the types
    // the vendor sends as the standard has them, a shared sample (golden-shared).
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let shared = testing::standard_samples(&root.join("../shared"), &root);
    for t in MESSAGE_TYPES {
        let code = t.split('^').map(str::to_ascii_lowercase).collect::<Vec<_>>().join("_");
        assert!(inputs.iter().chain(&shared).any(|p| p.to_string_lossy().contains(&code)), "no fixture or shared sample for {t}");
    }
    with_host(host(&[]), || testing::check_golden::<Meditech>(&inputs, &dir("golden")));
    with_host(host(&[]), || testing::check_golden::<Meditech>(&shared, &dir("golden-shared")));
}

#[test]
fn account_number_keys_the_encounter_and_unit_number_the_patient() {
    let raw = std::fs::read_to_string(dir("fixtures/meditech_adt_a01_admit.hl7")).unwrap();
    let (out, _) = with_host(host(&[]), || Meditech::map_hl7(&Hl7Input::new(raw)).unwrap());
    let r: Vec<Value> = out.resources.iter().map(|r| serde_json::from_str(r).unwrap()).collect();
    assert_eq!(r[0]["id"], ehrgate_sdk::ids::resource_id("Patient", "urn:oid:2.16.840.1.113883.19.5.1", "100200300"));
    assert_eq!(r[1]["id"], ehrgate_sdk::ids::resource_id("Encounter", "urn:oid:2.16.840.1.113883.19.5.2", "5000001"));
}

#[test]
fn map_fhir_adds_us_core_profiles() {
    let lines: Vec<String> = std::fs::read_to_string(dir("fixtures/meditech_fhir_uscore.ndjson")).unwrap().lines().map(str::to_owned).collect();
    let out = Meditech::map_fhir(lines).unwrap();
    let r: Vec<Value> = out.resources.iter().map(|r| serde_json::from_str(r).unwrap()).collect();
    let uscore = |v: &Value| v["meta"]["profile"].as_array().unwrap().last().unwrap().as_str().unwrap().rsplit('/').next().unwrap().to_owned();
    assert_eq!(uscore(&r[0]), "us-core-patient");
    assert_eq!(r[0]["meta"]["profile"][0], "http://example.org/other-profile");
    assert_eq!(uscore(&r[1]), "us-core-encounter");
    assert_eq!(uscore(&r[2]), "us-core-observation-lab");
    assert_eq!(uscore(&r[3]), "us-core-vital-signs");
    assert!(Meditech::map_fhir(vec!["{\"resourceType\":\"Patient\"}".into()]).is_err());
}
