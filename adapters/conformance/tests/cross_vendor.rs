//! One clinical fact (an inpatient admit of one patient, plus a potassium result)
//! sent in each vendor's format gives the same canonical resources, apart from
//! provenance (`meta.source`, engine metadata extensions) and the vendor identifiers
//! and local codes the site configuration names (only identifiers in the site's
//! canonical systems and codings outside `urn:ehrgate:codesystem:` are compared).
//!
//! The fixtures are each vendor's own (written by adapters/conformance/scripts/
//! make_fixtures.py): Epic PID-3 repetitions with a CSN visit number and Z-segments,
//! Oracle's FIN in PID-18 and a Millennium code value for the test, MEDITECH's account
//! number, Mirth's XML serialisation over its HTTP sender, a Rhapsody FHS/BHS batch
//! file, a Cloverleaf len10 file.

mod common;

use std::collections::BTreeMap;

use common::{fixture, host};
use ehrgate_sdk::testing::with_host;
use ehrgate_sdk::{Adapter, AdapterError, Hl7Input, Output};
use serde_json::Value;

const MRN_SYS: &str = "urn:oid:2.16.840.1.113883.19.5.1";
const VISIT_SYS: &str = "urn:oid:2.16.840.1.113883.19.5.2";
const LAB_SYS: &str = "urn:oid:2.16.840.1.113883.19.5.3";

fn hl7<A: Adapter>(adapter: &str, files: &[&str], extra: &[(&str, &str)]) -> Output {
    with_host(host(adapter, extra), || {
        let mut out = Output::default();
        for f in files {
            let raw = String::from_utf8(fixture(adapter, f)).unwrap();
            let o = A::map_hl7(&Hl7Input::new(raw)).unwrap_or_else(|e| panic!("{adapter}/{f}: {e}"));
            out.resources.extend(o.resources);
        }
        out
    })
    .0
}

fn event<A: Adapter>(adapter: &str, source: &str, file: &str) -> Result<Output, AdapterError> {
    with_host(host(adapter, &[]), || A::handle_event(source, &fixture(adapter, file))).0
}

/// The canonical view of a resource: no provenance, only canonical identifiers
/// (system + value), no local codings.
fn canonical(mut v: Value) -> Value {
    if let Some(meta) = v.get_mut("meta").and_then(Value::as_object_mut) {
        meta.remove("source");
        meta.remove("extension");
        meta.remove("tag");
    }
    strip(&mut v, None);
    v
}

fn strip(v: &mut Value, key: Option<&str>) {
    match v {
        Value::Object(m) => {
            if key == Some("identifier") {
                m.retain(|k, _| k == "system" || k == "value");
            }
            if let Some(Value::Array(c)) = m.get_mut("coding") {
                c.retain(|c| !c["system"].as_str().unwrap_or_default().starts_with("urn:ehrgate:codesystem:"));
            }
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                if k == "identifier" {
                    let keep = |i: &Value| [MRN_SYS, VISIT_SYS, LAB_SYS].contains(&i["system"].as_str().unwrap_or_default());
                    match m.get_mut(&k) {
                        Some(Value::Array(a)) => {
                            a.retain(keep);
                            if a.is_empty() {
                                m.remove(&k);
                                continue;
                            }
                        }
                        Some(one) if !keep(one) => {
                            m.remove(&k);
                            continue;
                        }
                        _ => {}
                    }
                }
                strip(m.get_mut(&k).unwrap(), Some(&k));
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|c| strip(c, key)),
        _ => {}
    }
}

/// Resources by (type, id), canonical.
fn rows(out: &Output) -> BTreeMap<(String, String), Value> {
    out.resources
        .iter()
        .map(|r| {
            let v: Value = serde_json::from_str(r).unwrap();
            ((v["resourceType"].as_str().unwrap().to_owned(), v["id"].as_str().unwrap().to_owned()), canonical(v))
        })
        .collect()
}

fn all_vendors() -> Vec<(&'static str, Output)> {
    use ehrgate_adapter_cloverleaf::Cloverleaf;
    use ehrgate_adapter_epic::Epic;
    use ehrgate_adapter_meditech::Meditech;
    use ehrgate_adapter_mirth::Mirth;
    use ehrgate_adapter_oracle_health::OracleHealth;
    use ehrgate_adapter_rhapsody::Rhapsody;
    // Epic's Z-segments are site extras: configured away for the comparison.
    let mut mirth = event::<Mirth>("mirth", "mirth-http", "mirth_http_event_headers.txt").unwrap();
    mirth.resources.extend(hl7::<Mirth>("mirth", &["mirth_oru_r01_potassium_xml.xml"], &[]).resources);
    vec![
        ("epic", hl7::<Epic>("epic", &["epic_adt_a01_admit.hl7", "epic_oru_r01_potassium.hl7"], &[("z-segments", "drop")])),
        ("oracle-health", hl7::<OracleHealth>("oracle-health", &["oracle_adt_a01_admit.hl7", "oracle_oru_r01_potassium_code_value.hl7"], &[])),
        ("meditech", hl7::<Meditech>("meditech", &["meditech_adt_a01_admit.hl7", "meditech_oru_r01_potassium.hl7"], &[])),
        ("mirth", mirth),
        ("rhapsody", event::<Rhapsody>("rhapsody", "rhapsody-file", "rhapsody_batch_bhs_admit_and_result.hl7").unwrap()),
        ("cloverleaf", event::<Cloverleaf>("cloverleaf", "cloverleaf-file", "cloverleaf_len10_admit_and_result.dat").unwrap()),
    ]
}

#[test]
fn one_clinical_fact_gives_the_same_canonical_rows_from_every_vendor() {
    let vendors = all_vendors();
    let (base_name, base) = (&vendors[0].0, rows(&vendors[0].1));
    let types: Vec<&str> = base.keys().map(|(t, _)| t.as_str()).collect();
    // Patient and Encounter appear in both messages and MERGE onto one row each.
    assert_eq!(types, vec!["DiagnosticReport", "Encounter", "Observation", "Patient", "ServiceRequest", "Specimen"], "{base_name}");
    let patient = base.iter().find(|((t, _), _)| t == "Patient").unwrap();
    assert_eq!(patient.0.1, ehrgate_sdk::ids::resource_id("Patient", MRN_SYS, "100200300"));
    for (name, out) in &vendors[1..] {
        let other = rows(out);
        assert_eq!(
            other.keys().collect::<Vec<_>>(),
            base.keys().collect::<Vec<_>>(),
            "{name}: different rows (type, id) than {base_name}"
        );
        for (k, v) in &base {
            assert_eq!(&other[k], v, "{name}: {}/{} differs from {base_name}", k.0, k.1);
        }
    }
}

#[test]
fn the_comparison_can_fail() {
    // Without its site configuration a vendor's identifiers are not the canonical
    // ones, and the rows differ: the comparison above is not vacuous.
    let unconfigured = with_host(ehrgate_sdk::testing::TestHost::default(), || {
        let raw = String::from_utf8(fixture("oracle-health", "oracle_adt_a01_admit.hl7")).unwrap();
        ehrgate_adapter_oracle_health::OracleHealth::map_hl7(&Hl7Input::new(raw)).unwrap()
    })
    .0;
    let base = rows(&all_vendors()[0].1);
    let other = rows(&unconfigured);
    assert!(other.keys().any(|k| !base.contains_key(k)));
}

#[test]
fn provenance_differs_per_vendor() {
    let sources: Vec<String> = all_vendors()
        .iter()
        .map(|(_, o)| serde_json::from_str::<Value>(&o.resources[0]).unwrap()["meta"]["source"].as_str().unwrap().to_owned())
        .collect();
    let distinct: std::collections::BTreeSet<_> = sources.iter().collect();
    assert!(distinct.len() >= 5, "{sources:?}");
}
