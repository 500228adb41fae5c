//! Golden files: every fixture under tests/fixtures mapped natively by the Epic adapter
//! with the example site configuration (tests/fixtures/config.json) must equal
//! `tests/golden/<file>.ndjson` (or `.error`). Regenerate after an intended change
//! with `EHRGATE_UPDATE_GOLDEN=1` and review the diff.

use std::path::PathBuf;

use ehrgate_adapter_epic::{Epic, MESSAGE_TYPES};
use ehrgate_sdk::testing::{self, TestHost, with_host};
use ehrgate_sdk::{Adapter, Hl7Input};

fn dir(sub: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests").join(sub)
}

fn host(extra: &[(&str, &str)]) -> TestHost {
    TestHost::with_config_file(&dir("fixtures/config.json"), extra)
}

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
    with_host(host(&[]), || testing::check_golden::<Epic>(&inputs, &dir("golden")));
    with_host(host(&[]), || testing::check_golden::<Epic>(&shared, &dir("golden-shared")));
}

fn map(file: &str, extra: &[(&str, &str)]) -> Vec<serde_json::Value> {
    let raw = std::fs::read_to_string(dir("fixtures").join(file)).unwrap();
    let (out, _) = with_host(host(extra), || Epic::map_hl7(&Hl7Input::new(raw)).unwrap());
    out.resources.iter().map(|r| serde_json::from_str(r).unwrap()).collect()
}

#[test]
fn mrn_is_picked_among_pid3_repetitions_by_config() {
    let by_mrn = map("epic_adt_a01_admit.hl7", &[]);
    let p = &by_mrn[0];
    let mrn = p["identifier"].as_array().unwrap().iter().find(|i| i["value"] == "100200300").unwrap();
    assert_eq!(mrn["system"], "urn:oid:2.16.840.1.113883.19.5.1");
    assert_eq!(mrn["type"]["coding"][0]["code"], "MR");
    assert_eq!(p["id"], ehrgate_sdk::ids::resource_id("Patient", "urn:oid:2.16.840.1.113883.19.5.1", "100200300"));
    // Another authority configured as the MRN: another key.
    let other = map("epic_adt_a01_admit.hl7", &[("mrn.authority", "EHRGATE_TEST_MRN")]);
    assert_ne!(other[0]["id"], p["id"]);
    // The Epic internal id keeps its OID-style system.
    assert!(p["identifier"].as_array().unwrap().iter().any(|i| i["value"] == "E1000001"
        && i["system"].as_str().unwrap().starts_with("urn:oid:1.2.840.114350.")));
}

#[test]
fn z_segments_become_extensions_or_are_dropped_by_config() {
    let with = map("epic_adt_a01_admit.hl7", &[]);
    let ext = |r: &serde_json::Value| r["extension"].as_array().map(|a| a.len()).unwrap_or(0);
    let (p, e) = (&with[0], &with[1]);
    assert_eq!(p["extension"][0]["url"], "urn:ehrgate:extension:epic:ZPD");
    assert_eq!(e["resourceType"], "Encounter");
    assert_eq!(e["extension"][0]["url"], "urn:ehrgate:extension:epic:ZPV");
    let dropped = map("epic_adt_a01_admit.hl7", &[("z-segments", "drop")]);
    assert_eq!(ext(&dropped[0]) + ext(&dropped[1]), 0);
    let one = map("epic_adt_a01_admit.hl7", &[("z-segment.ZPV", "drop")]);
    assert_eq!((ext(&one[0]), ext(&one[1])), (1, 0));
}

#[test]
fn bulk_export_is_group_scoped_from_config() {
    let (r, _) = with_host(host(&[]), || Epic::run_action("bulk-kickoff", "{}"));
    assert!(matches!(r, Err(ehrgate_sdk::AdapterError::Unsupported(_))), "{r:?}");
    let (r, _) = with_host(host(&[("bulk.group-id", "e3iabhmS8rsueyz7vaimuiaSmfGvi.QwjVXJANlPOgR83"), ("bulk.types", "Patient,Observation")]), || {
        Epic::run_action("bulk-kickoff", "{}").unwrap()
    });
    let v: serde_json::Value = serde_json::from_str(&r).unwrap();
    assert_eq!(v["path"], "/Group/e3iabhmS8rsueyz7vaimuiaSmfGvi.QwjVXJANlPOgR83/$export?_type=Patient,Observation");
    let (r, _) = with_host(host(&[("bulk.group-id", "../x")]), || Epic::run_action("bulk-kickoff", "{}"));
    assert!(r.is_err());
    // An offset's `+` is percent-encoded, not left to be read as a space.
    let (r, _) = with_host(host(&[("bulk.group-id", "g1"), ("bulk.since", "2024-01-01T00:00:00+05:00")]), || {
        Epic::run_action("bulk-kickoff", "{}").unwrap()
    });
    let v: serde_json::Value = serde_json::from_str(&r).unwrap();
    assert_eq!(v["path"], "/Group/g1/$export?_since=2024-01-01T00:00:00%2B05:00");
}

#[test]
fn describe_names_vendor_types_actions_and_connections() {
    let d = Epic::describe();
    assert_eq!((d.name.as_str(), d.vendor.as_str()), ("epic", "Epic"));
    assert!(d.hl7_message_types.contains(&"ORU^R01".to_string()));
    assert_eq!(d.actions, vec!["discharge-checklist", "bulk-kickoff"]);
    assert!(d.connections[0].paths.contains(&"/Group/*/$export".to_string()));
}
