//! Golden files: ER7 and HL7 batch fixtures through `map-hl7`, batch files and HTTP
//! events through `handle-event`, and the shared samples of the standard message
//! types. Regenerate with `EHRGATE_UPDATE_GOLDEN=1`.

mod common;

use common::{dir, host, shared_standard_samples};
use ehrgate_adapter_rhapsody::Rhapsody;
use ehrgate_sdk::golden::check_golden_with;
use ehrgate_sdk::testing::{self, FileResult, with_host};
use ehrgate_sdk::Adapter;
use serde_json::Value;

#[test]
fn golden_messages_files_and_events() {
    with_host(host(&[]), || testing::check_golden::<Rhapsody>(&testing::files_in(dir("fixtures"), &["hl7"]), &dir("golden")));
    with_host(host(&[("file.style", "sep:\\n\\n")]), || {
        check_golden_with(&[dir("fixtures/rhapsody_file_separator.txt")], &dir("golden"), |_, b| Rhapsody::handle_event("rhapsody-file", b))
    });
    with_host(host(&[]), || {
        check_golden_with(&[dir("fixtures/rhapsody_http_event_properties.txt")], &dir("golden"), |_, b| Rhapsody::handle_event("rhapsody-http", b))
    });
}

#[test]
fn golden_shared_standard_samples() {
    testing::check_golden::<Rhapsody>(&shared_standard_samples(), &dir("golden-shared"));
}

#[test]
fn a_batch_file_event_maps_like_its_messages() {
    let path = dir("fixtures/rhapsody_batch_bhs_admit_and_result.hl7");
    let (file, by_message) = with_host(host(&[]), || {
        (Rhapsody::handle_event("rhapsody-file", &std::fs::read(&path).unwrap()).unwrap(), testing::map_file::<Rhapsody>(&path))
    })
    .0;
    let FileResult::Mapped { resources, .. } = by_message else { panic!("{by_message:?}") };
    let canon: Vec<String> = file.resources.iter().map(|r| ehrgate_sdk::golden::canonical(r)).collect();
    assert_eq!(canon, resources);
    // The separator file holds the same two messages (LF terminated).
    let (sep, _) = with_host(host(&[("file.style", "sep:\\n\\n")]), || {
        Rhapsody::handle_event("rhapsody-file", &std::fs::read(dir("fixtures/rhapsody_file_separator.txt")).unwrap()).unwrap()
    });
    assert_eq!(sep.resources.len(), file.resources.len());
}

#[test]
fn message_properties_are_kept_as_provenance() {
    let body = std::fs::read(dir("fixtures/rhapsody_http_event_properties.txt")).unwrap();
    let (out, _) = with_host(host(&[]), || Rhapsody::handle_event("rhapsody-http", &body).unwrap());
    let v: Value = serde_json::from_str(&out.resources[0]).unwrap();
    let ext = v["meta"]["extension"].as_array().unwrap();
    assert!(ext.iter().any(|e| e["url"] == "urn:ehrgate:provenance:rhapsody:messageid" && e["valueString"] == "100245"));
    assert!(ext.iter().any(|e| e["url"] == "urn:ehrgate:provenance:rhapsody:inputcommpoint"));
    assert!(Rhapsody::handle_event("rhapsody-ftp", &body).is_err());
}

#[test]
fn only_allow_listed_properties_become_provenance() {
    let body = std::fs::read(dir("fixtures/rhapsody_http_event_properties.txt")).unwrap();
    let text = String::from_utf8(body).unwrap();
    // A route-defined property that carries PHI must not be copied into the lake.
    let with_extra = text.replacen("X-Rhapsody-Route:", "X-Rhapsody-PatientName: TESTPATIENT^ALPHA\nX-Rhapsody-Route:", 1);
    let urls = |cfg: &[(&str, &str)]| -> Vec<String> {
        let (out, _) = with_host(host(cfg), || Rhapsody::handle_event("rhapsody-http", with_extra.as_bytes()).unwrap());
        let v: Value = serde_json::from_str(&out.resources[0]).unwrap();
        v["meta"]["extension"].as_array().unwrap().iter().map(|e| e["url"].as_str().unwrap().to_string()).collect()
    };
    let default = urls(&[]);
    assert!(default.iter().any(|u| u.ends_with(":route")), "{default:?}");
    assert!(!default.iter().any(|u| u.ends_with(":patientname")), "{default:?}");
    let narrowed = urls(&[("metadata.properties", "messageid")]);
    assert!(narrowed.iter().any(|u| u.ends_with(":messageid")) && !narrowed.iter().any(|u| u.ends_with(":route")), "{narrowed:?}");
}
