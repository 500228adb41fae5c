//! Golden files: ER7 fixtures through `map-hl7`, Mirth XML fixtures through `map-hl7`,
//! HTTP event bodies through `handle-event` (`mirth-http`), and the shared samples of
//! the standard message types. Regenerate with `EHRGATE_UPDATE_GOLDEN=1`.

mod common;

use common::{dir, host, shared_standard_samples};
use ehrgate_adapter_mirth::Mirth;
use ehrgate_sdk::golden::check_golden_with;
use ehrgate_sdk::testing::{self, with_host};
use ehrgate_sdk::{Adapter, Hl7Input};
use serde_json::Value;

#[test]
fn golden_er7_xml_and_events() {
    with_host(host(&[]), || {
        testing::check_golden::<Mirth>(&testing::files_in(dir("fixtures"), &["hl7"]), &dir("golden"));
        check_golden_with(&testing::files_in(dir("fixtures"), &["xml"]), &dir("golden"), |_, b| {
            Mirth::map_hl7(&Hl7Input::new(String::from_utf8(b.to_vec()).unwrap()))
        });
        check_golden_with(&testing::files_in(dir("fixtures"), &["txt"]), &dir("golden"), |_, b| Mirth::handle_event("mirth-http", b));
    });
}

#[test]
fn golden_shared_standard_samples() {
    let inputs = shared_standard_samples();
    assert!(inputs.len() >= 20);
    testing::check_golden::<Mirth>(&inputs, &dir("golden-shared"));
}

#[test]
fn xml_maps_like_the_er7_it_serialises() {
    let er7 = std::fs::read_to_string(dir("fixtures/mirth_adt_a01_admit.hl7")).unwrap();
    let xml = std::fs::read_to_string(dir("fixtures/mirth_adt_a01_admit_xml.xml")).unwrap();
    let ((a, b), _) = with_host(host(&[]), || (Mirth::map_hl7(&Hl7Input::new(er7)).unwrap(), Mirth::map_hl7(&Hl7Input::new(xml)).unwrap()));
    assert!(!a.resources.is_empty());
    assert_eq!(a.resources, b.resources);
}

#[test]
fn channel_metadata_is_kept_as_provenance() {
    let body = std::fs::read(dir("fixtures/mirth_http_event_headers.txt")).unwrap();
    let (out, _) = with_host(host(&[]), || Mirth::handle_event("mirth-http", &body).unwrap());
    for r in &out.resources {
        let v: Value = serde_json::from_str(r).unwrap();
        let ext = v["meta"]["extension"].as_array().expect("provenance extensions");
        assert!(ext.iter().any(|e| e["url"] == "urn:ehrgate:provenance:mirth:channel-id" && e["valueString"] == "3f1c2a8e-0000-4000-8000-000000000001"));
        assert!(ext.iter().any(|e| e["url"] == "urn:ehrgate:provenance:mirth:message-id" && e["valueString"] == "42"));
    }
    // Header names are configurable.
    let (out, _) = with_host(host(&[("header.message-id", "X-Msg")]), || Mirth::handle_event("mirth-http", &body).unwrap());
    let v: Value = serde_json::from_str(&out.resources[0]).unwrap();
    assert!(!v["meta"]["extension"].as_array().unwrap().iter().any(|e| e["url"] == "urn:ehrgate:provenance:mirth:message-id"));
    assert!(matches!(Mirth::handle_event("other", &body), Err(ehrgate_sdk::AdapterError::Unsupported(_))));
}
