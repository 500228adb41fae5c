//! The standard mapping over the shared sample messages, and hand-made edge cases.

use super::*;
use crate::fhir::{ToFhir, strip_empty};
use crate::hl7::{Segment, decode_bytes};
use serde_json::{Value, json};
use std::path::PathBuf;

/// The message types the standard mapping must handle, as sample file name prefixes.
const MAPPED_PREFIXES: &[&str] = &[
    "adt_a01", "adt_a02", "adt_a03", "adt_a04", "adt_a08", "adt_a11", "adt_a13", "adt_a40",
    "oru_r01", "vxu_v04", "rde_o11",
];

fn data_dir() -> PathBuf {
    let dir = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/data/hl7"
    ));
    assert!(
        dir.is_dir(),
        "sample HL7 messages not found at {} (the shared data folder must sit beside the checkout)",
        dir.display()
    );
    dir
}

fn sample(name: &str) -> Hl7Input {
    let bytes = std::fs::read(data_dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    Hl7Input {
        raw: decode_bytes(&bytes).into_owned(),
        source: "test".into(),
        received_at_ms: 1_700_000_000_000,
    }
}

fn sample_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(data_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".hl7") && MAPPED_PREFIXES.iter().any(|p| n.starts_with(p)))
        .collect();
    names.sort();
    names
}

fn map(input: &Hl7Input) -> (Vec<Value>, Vec<String>) {
    let out = map_message(&Standard, input).unwrap_or_else(|e| panic!("{e}"));
    (
        out.resources
            .iter()
            .map(|r| serde_json::from_str(r).unwrap())
            .collect(),
        out.warnings,
    )
}

fn of_type<'v>(rs: &'v [Value], t: &str) -> Vec<&'v Value> {
    rs.iter().filter(|r| r["resourceType"] == t).collect()
}

fn raw(text: &str) -> Hl7Input {
    Hl7Input {
        raw: text.replace('\n', "\r"),
        source: "test".into(),
        received_at_ms: 0,
    }
}

/// Every reference to a resource type this mapping makes must resolve in the output.
fn check_references(name: &str, rs: &[Value]) {
    fn refs<'v>(v: &'v Value, out: &mut Vec<&'v str>) {
        match v {
            Value::Object(o) => {
                if let Some(Value::String(r)) = o.get("reference") {
                    out.push(r);
                }
                o.values().for_each(|v| refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let have: Vec<String> = rs
        .iter()
        .map(|r| {
            format!(
                "{}/{}",
                r["resourceType"].as_str().unwrap(),
                r["id"].as_str().unwrap()
            )
        })
        .collect();
    for r in rs {
        let mut out = Vec::new();
        refs(r, &mut out);
        for target in out {
            assert!(
                have.iter().any(|h| h == target),
                "{name}: dangling reference {target}"
            );
        }
    }
}

#[test]
fn every_sample_maps_to_well_formed_resources() {
    let names = sample_names();
    assert!(
        names.len() >= 20,
        "expected the ADT/ORU samples, found {names:?}"
    );
    let mut ndjson = String::new();
    for name in &names {
        let (rs, _warnings) = map(&sample(name));
        assert!(!of_type(&rs, "Patient").is_empty(), "{name}: no Patient");
        for r in &rs {
            let mut copy = r.clone();
            assert!(!strip_empty(&mut copy));
            assert_eq!(&copy, r, "{name}: empty members in {}", r["resourceType"]);
            assert!(r["id"].as_str().is_some_and(|id| id.len() == 36), "{name}");
            assert!(
                r["meta"]["source"]
                    .as_str()
                    .unwrap()
                    .starts_with("urn:ehrgate:"),
                "{name}"
            );
            assert!(r["meta"]["lastUpdated"].is_string(), "{name}");
            ndjson.push_str(&r.to_string());
            ndjson.push('\n');
        }
        check_references(name, &rs);
        let ids: Vec<_> = rs
            .iter()
            .map(|r| (r["resourceType"].clone(), r["id"].clone()))
            .collect();
        let mut dedup = ids.clone();
        dedup.sort_by_key(|(t, i)| format!("{t}{i}"));
        dedup.dedup();
        assert_eq!(
            dedup.len(),
            ids.len(),
            "{name}: duplicate ids in one message"
        );
    }
    // For tests/fhir_validate.py: EHRGATE_V2FHIR_NDJSON=path cargo test ...
    let path = std::env::var("EHRGATE_V2FHIR_NDJSON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir().join("ehrgate-v2fhir-samples.ndjson"));
    std::fs::write(&path, ndjson).unwrap();
    println!("wrote {} ({} messages)", path.display(), names.len());
}

#[test]
fn mapping_is_deterministic() {
    for name in sample_names() {
        let input = sample(&name);
        let a = map_message(&Standard, &input).unwrap();
        let b = map_message(&Standard, &input).unwrap();
        assert_eq!(a, b, "{name}");
    }
    // The same patient in two copies of a message (CR and LF, the latter edited).
    let (cr, _) = map(&sample("oru_r01_ghh_glucose_v24.hl7"));
    let (lf, _) = map(&sample("oru_r01_ghh_glucose_v24_lf.hl7"));
    assert_eq!(cr[0]["id"], lf[0]["id"]);
    assert_eq!(cr[1]["id"], lf[1]["id"], "OBX 1 of order 1045813");
    // Line endings do not matter.
    let input = sample("adt_a01_ghh_v28_full.hl7");
    let crlf = Hl7Input {
        raw: input.raw.replace('\n', "\r\n"),
        ..input.clone()
    };
    assert_eq!(
        map_message(&Standard, &input).unwrap(),
        map_message(&Standard, &crlf).unwrap()
    );
}

#[test]
fn same_patient_same_id_across_messages() {
    let id = |name: &str| of_type(&map(&sample(name)).0, "Patient")[0]["id"].clone();
    assert_eq!(id("adt_a01_ghh_v28_full.hl7"), id("adt_a03_ghh_v28.hl7"));
    assert_eq!(id("adt_a01_ghh_v28_full.hl7"), id("adt_a08_ghh_v28.hl7"));
    let enc = |name: &str| of_type(&map(&sample(name)).0, "Encounter")[0]["id"].clone();
    assert_eq!(enc("adt_a01_ghh_v28_full.hl7"), enc("adt_a03_ghh_v28.hl7"));
}

#[test]
fn patient_fields() {
    let (rs, _) = map(&sample("adt_a01_ghh_v28_full.hl7"));
    let p = of_type(&rs, "Patient")[0];
    assert_eq!(p["gender"], "male");
    assert_eq!(p["birthDate"], "1988-08-18");
    assert_eq!(p["name"][0]["family"], "EVERYMAN");
    assert_eq!(p["name"][0]["given"], json!(["ADAM", "A"]));
    let mr = p["identifier"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["value"] == "PATID1234")
        .unwrap();
    assert_eq!(mr["type"]["coding"][0]["code"], "MR");
    assert!(
        p["identifier"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["system"] == "http://hl7.org/fhir/sid/us-ssn")
    );
    assert!(
        p["contact"].as_array().is_some_and(|c| !c.is_empty()),
        "NK1 -> contact"
    );
    assert_eq!(p["meta"]["lastUpdated"], "1989-08-18T11:26:00+02:15");
    assert_eq!(
        p["meta"]["source"],
        "urn:ehrgate:ADTApp/GHHSFacility#MSG00001"
    );
    // A Cerner feed: explicit nulls and repetitions.
    let (rs, _) = map(&sample("adt_a01_cerner_hnam_v23.hl7"));
    let p = of_type(&rs, "Patient")[0];
    assert_eq!(p["identifier"][0]["system"], "urn:ehrgate:id:MSH_MRN");
    assert_eq!(p["gender"], "female");
}

#[test]
fn encounter_events() {
    let enc = |name: &str| of_type(&map(&sample(name)).0, "Encounter")[0].clone();
    let a01 = enc("adt_a01_ghh_v28_full.hl7");
    assert_eq!(a01["status"], "in-progress");
    assert_eq!(a01["class"]["code"], "PRENC");
    assert_eq!(a01["location"][0]["status"], "active");
    let a03 = enc("adt_a03_ghh_v28.hl7");
    assert_eq!(a03["status"], "finished");
    let a11 = enc("adt_a11_ghh_v28.hl7");
    assert_eq!(a11["status"], "cancelled");
    let a13 = enc("adt_a13_ghh_v28.hl7");
    assert_eq!(a13["status"], "in-progress");
    assert!(a13["period"].get("end").is_none());
    let a02 = enc("adt_a02_ghh_v28.hl7");
    assert!(!a02["location"].as_array().unwrap().is_empty());

    let msg = "MSH|^~\\&|A|F|||20200101120000+0100||ADT^A03|1|P|2.5\nPID|1||P1^^^H^MR\nPV1|1|I|W1^R1^B1||||||||||||||||V1^^^H|||||||||||||||||||||||||20200101080000+0100|20200102100000+0100";
    let (rs, _) = map(&raw(msg));
    let e = of_type(&rs, "Encounter")[0];
    assert_eq!(
        e["period"],
        json!({"start": "2020-01-01T08:00:00+01:00", "end": "2020-01-02T10:00:00+01:00"})
    );
    assert_eq!(e["class"]["code"], "IMP");
    assert_eq!(
        e["subject"]["reference"],
        format!(
            "Patient/{}",
            of_type(&rs, "Patient")[0]["id"].as_str().unwrap()
        )
    );
}

#[test]
fn merge_links_both_patients() {
    let (rs, _) = map(&sample("adt_a40_merge_two_pairs_v28.hl7"));
    let ps = of_type(&rs, "Patient");
    assert_eq!(ps.len(), 4);
    for pair in ps.chunks(2) {
        let (surv, old) = (pair[0], pair[1]);
        assert_eq!(old["active"], false);
        assert_eq!(
            old["link"][0],
            json!({"other": {"reference": format!("Patient/{}", surv["id"].as_str().unwrap())}, "type": "replaced-by"})
        );
        assert_eq!(surv["link"][0]["type"], "replaces");
        assert_eq!(
            surv["link"][0]["other"]["reference"],
            format!("Patient/{}", old["id"].as_str().unwrap())
        );
    }
}

#[test]
fn oru_observations_and_reports() {
    let (rs, _) = map(&sample("oru_r01_ghh_glucose_v24.hl7"));
    let obs = of_type(&rs, "Observation");
    assert_eq!(obs.len(), 2);
    assert_eq!(
        obs[0]["valueQuantity"],
        json!({"value": 182, "unit": "mg/dl"})
    );
    assert_eq!(obs[0]["interpretation"][0]["coding"][0]["code"], "H");
    assert_eq!(obs[0]["referenceRange"][0]["text"], "70_105");
    assert_eq!(obs[0]["status"], "final");
    let dr = of_type(&rs, "DiagnosticReport")[0];
    assert_eq!(dr["result"].as_array().unwrap().len(), 2);

    let (rs, _) = map(&sample("oru_r01_nist_lri_cbc_v251_bom.hl7"));
    let obs = of_type(&rs, "Observation");
    assert_eq!(obs.len(), 28);
    assert_eq!(
        obs[0]["valueQuantity"]["system"],
        "http://unitsofmeasure.org"
    );
    assert_eq!(obs[0]["valueQuantity"]["code"], "10*6/uL");
    assert_eq!(obs[0]["code"]["coding"][0]["system"], "http://loinc.org");
    assert_eq!(obs[0]["effectiveDateTime"], "2011-01-03T14:34:28-08:00");
    assert_eq!(obs[0]["referenceRange"][0]["low"]["value"], 4.3);
    assert_eq!(obs[0]["referenceRange"][0]["high"]["value"], 6.2);
    assert_eq!(
        obs[19]["valueCodeableConcept"]["coding"][0]["system"],
        "http://snomed.info/sct"
    );
    assert_eq!(obs[25]["valueString"], "Many spherocytes present.");
    let dr = of_type(&rs, "DiagnosticReport")[0];
    assert_eq!(dr["result"].as_array().unwrap().len(), 28);
    assert_eq!(dr["status"], "final");
    assert_eq!(dr["identifier"][1]["type"]["coding"][0]["code"], "FILL");

    let (rs, _) = map(&sample("oru_r01_lab_two_obr_spm_v25_bom.hl7"));
    assert_eq!(of_type(&rs, "DiagnosticReport").len(), 2);
    assert_eq!(of_type(&rs, "Observation").len(), 10);
}

#[test]
fn observation_value_types() {
    let msg = |obx: &str| {
        raw(&format!(
            "MSH|^~\\&|LAB|F|||20200101120000+0000||ORU^R01|C1|P|2.5\nPID|1||P1^^^H^MR\nOBR|1||F1^LAB|1^Panel^L\n{obx}"
        ))
    };
    let value = |obx: &str| {
        let (rs, w) = map(&msg(obx));
        let o = of_type(&rs, "Observation")[0].clone();
        (o, w)
    };
    let (o, _) = value("OBX|1|SN|2^X^LN||<^5|mg^^UCUM|||||F");
    assert_eq!(
        o["valueQuantity"],
        json!({"value": 5, "comparator": "<", "unit": "mg", "system": "http://unitsofmeasure.org", "code": "mg"})
    );
    let (o, _) = value("OBX|1|SN|2^X^LN||^2^-^4|mg|||||F");
    assert_eq!(o["valueRange"]["low"]["value"], 2);
    assert_eq!(o["valueRange"]["high"]["value"], 4);
    let (o, _) = value("OBX|1|SN|2^X^LN||^1^:^128||||||F");
    assert_eq!(o["valueRatio"]["denominator"]["value"], 128);
    let (o, _) = value("OBX|1|TX|2^X^LN||line 1~line 2||||||P");
    assert_eq!(o["valueString"], "line 1\nline 2");
    assert_eq!(o["status"], "preliminary");
    let (o, _) = value("OBX|1|DT|2^X^LN||20200115||||||C");
    assert_eq!(o["valueDateTime"], "2020-01-15");
    assert_eq!(o["status"], "corrected");
    let (o, w) = value("OBX|1|XYZ|2^X^LN||abc||||||X");
    assert_eq!(o["valueString"], "abc");
    assert_eq!(o["status"], "cancelled");
    assert!(w.iter().any(|w| w.contains("XYZ")));
    let (o, w) = value("OBX|1|NM|2^X^LN||positive||||||F");
    assert_eq!(o["valueString"], "positive");
    assert!(w.iter().any(|w| w.contains("not a number")));
    assert!(
        w.iter().all(|w| !w.contains("positive")),
        "warnings never quote values"
    );
    let (o, _) = value("OBX|1|NM|2^X^LN||7.5|%|>5|||||F");
    assert_eq!(o["referenceRange"][0]["low"]["value"], 5);
    assert!(o.get("effectiveDateTime").is_none());
    // No OBX-2 with a value: invalid, located.
    match map_message(&Standard, &msg("OBX|1||2^X^LN||7.5||||||F")) {
        Err(AdapterError::InvalidInput { location, .. }) => {
            assert_eq!(location.as_deref(), Some("OBX-2"))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn errors_are_typed_and_located() {
    let no_pid = raw("MSH|^~\\&|A|F|||20200101||ADT^A01|1|P|2.5\nPV1|1|I");
    match map_message(&Standard, &no_pid) {
        Err(AdapterError::InvalidInput { location, .. }) => {
            assert_eq!(location.as_deref(), Some("PID"))
        }
        other => panic!("{other:?}"),
    }
    let no_pv1 = raw("MSH|^~\\&|A|F|||20200101||ADT^A03|1|P|2.5\nPID|1||P1");
    match map_message(&Standard, &no_pv1) {
        Err(AdapterError::InvalidInput { location, .. }) => {
            assert_eq!(location.as_deref(), Some("PV1"))
        }
        other => panic!("{other:?}"),
    }
    let no_id = raw("MSH|^~\\&|A|F|||20200101||ADT^A01|1|P|2.5\nPID|1||||Doe^Secret");
    match map_message(&Standard, &no_id) {
        Err(AdapterError::InvalidInput { location, message }) => {
            assert_eq!(location.as_deref(), Some("PID-3"));
            assert!(!message.contains("Secret"));
        }
        other => panic!("{other:?}"),
    }
    match map_message(&Standard, &raw("MSH|^~\\&|A|F|||20200101||ADT^A99|1|P|2.5\nPID|1||1^^^H^MR")) {
        Err(AdapterError::Unsupported(m)) => assert!(m.contains("ADT^A99"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        map_message(&Standard, &raw("PID|1")),
        Err(AdapterError::InvalidInput { .. })
    ));
}

#[test]
fn clinical_segments() {
    let (rs, _) = map(&sample("adt_a01_ghh_v28_full.hl7"));
    let a = of_type(&rs, "AllergyIntolerance")[0];
    assert_eq!(a["code"]["coding"][0]["code"], "P");
    assert_eq!(a["category"], json!(["environment"]));
    let c = of_type(&rs, "Condition")[0];
    assert_eq!(c["code"]["coding"][0]["system"], "http://snomed.info/sct");
    assert_eq!(c["onsetDateTime"], "2004-01-25T11:40:25+04:20");
    let p = of_type(&rs, "Procedure")[0];
    assert_eq!(p["status"], "completed");
    assert_eq!(p["performedDateTime"], "2005-01-25T11:40:00+01:00");
    assert_eq!(p["partOf"][0]["identifier"]["value"], "PR1001", "PR1-25, a logical reference");
    let obx: Vec<_> = of_type(&rs, "Observation").into_iter().filter(|o| o["code"]["coding"][0]["code"] == "8867-4").collect();
    assert_eq!(obx.len(), 1);
    let (rs, _) = map(&sample("adt_a01_cerner_hnam_v23.hl7"));
    let c = of_type(&rs, "Condition")[0];
    assert_eq!(
        c["code"]["coding"][0]["system"],
        "http://hl7.org/fhir/sid/icd-9-cm"
    );
}

#[test]
fn time_without_offset() {
    let msg = "MSH|^~\\&|A|F|||20200101120000||ADT^A01|1|P|2.5\nPID|1||P1^^^H^MR\nPV1|1|I|||||||||||||||||V1|||||||||||||||||||||||||20200101080000";
    let (rs, w) = map(&raw(msg));
    let e = of_type(&rs, "Encounter")[0];
    assert_eq!(e["period"]["start"], "2020-01-01");
    assert_eq!(e["meta"]["lastUpdated"], "2020-01-01T12:00:00Z");
    assert!(w.iter().any(|w| w.contains("PV1-44")));

    struct Eastern;
    impl Mapper for Eastern {
        fn default_utc_offset(&self) -> Option<String> {
            Some("-05:00".into())
        }
    }
    let out = map_message(&Eastern, &raw(msg)).unwrap();
    let e: Value = serde_json::from_str(&out.resources[1]).unwrap();
    assert_eq!(e["period"]["start"], "2020-01-01T08:00:00-05:00");
    assert_eq!(e["meta"]["lastUpdated"], "2020-01-01T12:00:00-05:00");
}

#[test]
fn a_vendor_overrides_only_what_differs() {
    struct Acme;
    impl Mapper for Acme {
        fn identifier_system(&self, ns: &str, uid: &str, ty: &str) -> Option<String> {
            if ns == "H" {
                return Some("urn:oid:1.2.3".into());
            }
            types::standard_identifier_system(ns, uid, ty)
        }
        fn map_z_segment(&self, ctx: &mut Context<'_, '_>, seg: &Segment<'_>) -> MapResult {
            if seg.id() == "ZPI"
                && let Some(p) = ctx.last_mut("Patient")
            {
                p["active"] = json!(seg.field(1).value() == "Y");
            }
            Ok(None)
        }
    }
    let msg = raw("MSH|^~\\&|A|F|||20200101||ADT^A04|1|P|2.5\nPID|1||P1^^^H^MR\nZPI|Y\nZXX|1");
    let out = map_message(&Acme, &msg).unwrap();
    let p: Value = serde_json::from_str(&out.resources[0]).unwrap();
    assert_eq!(p["identifier"][0]["system"], "urn:oid:1.2.3");
    assert_eq!(
        p["id"],
        crate::ids::resource_id("Patient", "urn:oid:1.2.3", "P1")
    );
    assert_eq!(p["active"], true);
    let std_out = map_message(&Standard, &msg).unwrap();
    assert!(std_out.warnings.iter().any(|w| w.contains("ZPI")));
}

#[test]
fn output_is_serde_json_text_of_the_value() {
    // Resources are written straight to text: it must be what serde_json writes for
    // the same JSON (sorted keys, same escapes and numbers).
    for name in sample_names() {
        let out = map_message(&Standard, &sample(&name)).unwrap();
        for r in &out.resources {
            let v: Value = serde_json::from_str(r).unwrap();
            assert_eq!(r, &v.to_string(), "{name}");
        }
    }
}

#[test]
fn resources_overridden_as_json_map_the_same() {
    // An override returning JSON (not a typed builder): NK1 contacts, NTE notes and
    // merge links are then added to the JSON, with the same result.
    struct AsJson;
    impl Mapper for AsJson {
        fn map_patient(&self, ctx: &mut Context<'_, '_>, pid: &Segment<'_>) -> MapResult {
            let r = patient::map_patient(ctx, pid)?;
            Ok(r.map(|r| r.into_value().into()))
        }
        fn map_observation(
            &self,
            ctx: &mut Context<'_, '_>,
            obx: &Segment<'_>,
            obr: Option<&Segment<'_>>,
        ) -> MapResult {
            let r = observation::map_observation(ctx, obx, obr)?;
            Ok(r.map(|r| Resource::Json(r.to_fhir())))
        }
    }
    for name in sample_names() {
        let input = sample(&name);
        let json = map_message(&AsJson, &input).unwrap();
        assert_eq!(json, map_message(&Standard, &input).unwrap(), "{name}");
    }
}

#[test]
fn message_types_list() {
    assert_eq!(STANDARD_MESSAGE_TYPES.len(), 28);
    assert!(Standard.supports("ADT", "A40") && Standard.supports("ORU", "R01"));
    assert!(Standard.supports("ADT", "A28") && Standard.supports("ORM", "O01") && Standard.supports("SIU", "S15") && Standard.supports("MDM", "T04") && Standard.supports("RAS", "O17"));
    assert!(!Standard.supports("ADT", "A99") && !Standard.supports("MDM", "T01") && !Standard.supports("QRY", "A19"));
}

#[test]
fn immunizations_and_medication_requests() {
    let (rs, _) = map(&sample("vxu_v04_nist_iz_v251_bom.hl7"));
    let imms = of_type(&rs, "Immunization");
    assert_eq!(imms.len(), 3);
    let i = imms[0];
    assert_eq!(i["status"], "completed");
    assert_eq!(
        i["vaccineCode"]["coding"][0]["system"],
        "http://hl7.org/fhir/sid/ndc"
    );
    assert_eq!(i["occurrenceDateTime"], "2015-06-24");
    assert_eq!(i["primarySource"], true);
    assert_eq!(i["lotNumber"], "315841");
    assert_eq!(i["doseQuantity"]["value"], 0.5);
    assert_eq!(i["route"]["coding"][0]["code"], "C28161");
    assert_eq!(imms[1]["primarySource"], false);
    assert!(
        imms[1].get("doseQuantity").is_none(),
        "999 = unknown amount"
    );
    assert_eq!(of_type(&rs, "Observation").len(), 4);

    let (rs, _) = map(&sample("rde_o11_pharmacy_v28.hl7"));
    let m = of_type(&rs, "MedicationRequest")[0];
    assert_eq!(m["status"], "active");
    assert_eq!(m["intent"], "order");
    assert_eq!(
        m["medicationCodeableConcept"]["coding"][0]["code"],
        "0143963401"
    );
    assert_eq!(
        m["dosageInstruction"][0]["route"]["coding"][0]["code"],
        "IV"
    );
    assert_eq!(m["authoredOn"], "2019-11-04T06:27:26+02:15");
}


/// A segment with the given fields at their positions (1-based), the rest empty.
fn seg(id: &str, fields: &[(usize, &str)]) -> String {
    let n = fields.iter().map(|(i, _)| *i).max().unwrap_or(0);
    let mut v = vec![String::new(); n + 1];
    v[0] = id.to_string();
    for (i, f) in fields {
        v[*i] = f.to_string();
    }
    v.join("|") + "\r"
}

#[test]
fn orders_specimens_and_reports_refer_to_each_other() {
    let msg = [
        "MSH|^~\\&|LAB|H|||20240101120000+0000||ORU^R01|9|P|2.5.1\r".to_string(),
        seg("PID", &[(1, "1"), (3, "P1^^^H^MR"), (5, "Doe^Jo")]),
        seg("ORC", &[(1, "RE"), (2, "PL-1^LAB"), (3, "FI-1^LAB"), (5, "CM"), (9, "20240101110000+0000"), (12, "77^Grey^Meredith")]),
        seg("OBR", &[(1, "1"), (2, "PL-1^LAB"), (3, "FI-1^LAB"), (4, "2345-7^Glucose^LN"), (7, "20240101100000+0000"), (25, "F"), (31, "R73.9^Hyperglycemia^I10")]),
        seg("OBX", &[(1, "1"), (2, "NM"), (3, "2345-7^Glucose^LN"), (5, "95"), (6, "mg/dL"), (11, "F")]),
        seg("SPM", &[(1, "1"), (2, "S-1&LAB"), (4, "BLD^Blood^HL70487"), (17, "20240101095500+0000"), (18, "20240101100500+0000"), (20, "Y")]),
    ]
    .concat();
    let (rs, _) = map(&raw(&msg));
    let sr = of_type(&rs, "ServiceRequest")[0];
    let spec = of_type(&rs, "Specimen")[0];
    let dr = of_type(&rs, "DiagnosticReport")[0];
    assert_eq!(sr["status"], "completed", "ORC-5 CM");
    assert_eq!(sr["intent"], "order");
    assert_eq!(sr["requester"]["display"], "Meredith Grey");
    assert_eq!(sr["reasonCode"][0]["coding"][0]["code"], "R73.9");
    assert_eq!(sr["authoredOn"], "2024-01-01T11:00:00+00:00");
    let sr_ref = format!("ServiceRequest/{}", sr["id"].as_str().unwrap());
    let spec_ref = format!("Specimen/{}", spec["id"].as_str().unwrap());
    assert_eq!(dr["basedOn"][0]["reference"], sr_ref.as_str());
    assert_eq!(dr["specimen"][0]["reference"], spec_ref.as_str());
    assert_eq!(sr["specimen"][0]["reference"], spec_ref.as_str());
    assert_eq!(spec["request"][0]["reference"], sr_ref.as_str());
    assert_eq!(spec["type"]["coding"][0]["code"], "BLD");
    assert_eq!(spec["status"], "available");
    assert_eq!(spec["receivedTime"], "2024-01-01T10:05:00+00:00");
    assert_ne!(sr["id"], dr["id"], "one order key, a different id per resource type");
    // An order message: the request, no report.
    let orm = msg.replace("ORU^R01", "ORM^O01").replace("ORC|RE", "ORC|NW").replace("|CM|", "||");
    let (rs, _) = map(&raw(&orm));
    assert_eq!(of_type(&rs, "ServiceRequest")[0]["status"], "active");
    assert!(of_type(&rs, "DiagnosticReport").is_empty());
}

#[test]
fn insurance_guarantors_and_kin() {
    let msg = [
        "MSH|^~\\&|ADT|H|||20240101120000+0000||ADT^A04|10|P|2.5.1\r".to_string(),
        seg("PID", &[(1, "1"), (3, "P1^^^H^MR"), (5, "Doe^Jo"), (7, "19800101"), (8, "F")]),
        seg("NK1", &[(1, "1"), (2, "Doe^Max"), (3, "SPO^Spouse"), (4, "1 Main St^^Town^ST^11111"), (5, "555-1111")]),
        seg("GT1", &[(1, "1"), (2, "G-9"), (3, "Doe^Jo"), (11, "SEL")]),
        seg("GT1", &[(1, "2"), (2, "G-10"), (3, "Roe^Pat"), (6, "555-2222"), (8, "19600101"), (9, "M"), (11, "FTH")]),
        seg(
            "IN1",
            &[
                (1, "1"),
                (2, "GOLD^Gold Plan"),
                (3, "INS-1"),
                (4, "Acme Health"),
                (8, "GRP-7"),
                (9, "Acme Employees"),
                (12, "20230101"),
                (13, "20241231"),
                (16, "Doe^Max"),
                (17, "SPO"),
                (18, "19790202"),
                (19, "1 Main St^^Town^ST^11111"),
                (36, "POL-123"),
                (49, "SUB-9"),
            ],
        ),
        seg("IN1", &[(1, "2"), (2, "SELF^Self pay"), (3, "INS-2"), (4, "Self"), (17, "SEL")]),
    ]
    .concat();
    let (rs, _) = map(&raw(&msg));
    let people = of_type(&rs, "RelatedPerson");
    let names: Vec<&str> = people.iter().map(|p| p["name"][0]["family"].as_str().unwrap()).collect();
    assert_eq!(names, ["Doe", "Roe", "Doe"], "kin, the guarantor who is not the patient, the insured spouse");
    assert_eq!(people[1]["relationship"][0]["coding"][0]["code"], "GUAR");
    let cov = of_type(&rs, "Coverage");
    assert_eq!(cov.len(), 2);
    assert_eq!(cov[0]["payor"][0]["display"], "Acme Health");
    assert_eq!(cov[0]["identifier"][0]["value"], "POL-123");
    assert_eq!(cov[0]["subscriberId"], "SUB-9");
    assert_eq!(cov[0]["period"]["end"], "2024-12-31");
    assert_eq!(cov[0]["class"][1]["value"], "GRP-7");
    assert_eq!(cov[0]["subscriber"]["reference"], format!("RelatedPerson/{}", people[2]["id"].as_str().unwrap()).as_str());
    assert_eq!(cov[1]["subscriber"]["reference"], format!("Patient/{}", of_type(&rs, "Patient")[0]["id"].as_str().unwrap()).as_str());
    // The same message again: the same ids (natural keys, not positions).
    let (again, _) = map(&raw(&msg));
    assert_eq!(rs, again);
}

#[test]
fn appointments_and_documents() {
    let siu = |status: &str| {
        [
            "MSH|^~\\&|SCH|H|||20240101120000+0000||SIU^S15|11|P|2.5.1\r".to_string(),
            seg("SCH", &[(1, "A-1^SCH"), (2, "F-1^SCH"), (7, "CHECKUP^Checkup"), (25, status)]),
            seg("TQ1", &[(7, "20240105090000+0000"), (8, "20240105093000+0000")]),
            seg("PID", &[(1, "1"), (3, "P1^^^H^MR"), (5, "Doe^Jo")]),
            seg("AIP", &[(1, "1"), (3, "77^Grey^Meredith"), (4, "PCP^Primary care"), (12, "Booked")]),
        ]
        .concat()
    };
    let (rs, _) = map(&raw(&siu("Booked")));
    let a = of_type(&rs, "Appointment")[0];
    assert_eq!(a["status"], "booked", "SCH-25 wins over the trigger");
    assert_eq!(a["start"], "2024-01-05T09:00:00+00:00");
    assert_eq!(a["participant"].as_array().unwrap().len(), 2);
    let (rs, _) = map(&raw(&siu("")));
    assert_eq!(of_type(&rs, "Appointment")[0]["status"], "cancelled", "S15 without a filler status");

    let mdm = [
        "MSH|^~\\&|DOC|H|||20240101120000+0000||MDM^T02|12|P|2.5.1\r".to_string(),
        seg("PID", &[(1, "1"), (3, "P1^^^H^MR"), (5, "Doe^Jo")]),
        seg("TXA", &[(1, "1"), (2, "DS"), (3, "TX"), (4, "20240101115000+0000"), (5, "77^Grey^Meredith"), (12, "DOC-1^DOC"), (17, "AU")]),
        seg("OBX", &[(1, "1"), (2, "TX"), (5, "Line one")]),
        seg("OBX", &[(1, "1"), (2, "TX"), (5, "Line two")]),
        seg("OBX", &[(1, "2"), (2, "ED"), (5, "^application^pdf^Base64^JVBERi0xLjQ=")]),
    ]
    .concat();
    let (rs, _) = map(&raw(&mdm));
    assert!(of_type(&rs, "Observation").is_empty(), "document content is not observations");
    let d = of_type(&rs, "DocumentReference")[0];
    assert_eq!(d["docStatus"], "final");
    assert_eq!(d["masterIdentifier"]["value"], "DOC-1");
    assert_eq!(d["content"][0]["attachment"]["data"], "TGluZSBvbmUKTGluZSB0d28=", "the text lines of consecutive OBX segments as one text, Base64");
    assert_eq!(d["content"].as_array().unwrap().len(), 2);
    assert_eq!(d["content"][1]["attachment"]["contentType"], "application/pdf");
    assert_eq!(d["content"][1]["attachment"]["data"], "JVBERi0xLjQ=", "already Base64: kept");
}

#[test]
fn death_accident_and_referral_in_adt() {
    let (rs, _) = map(&sample("adt_a01_ghh_v28_full.hl7"));
    let code = |r: &Value| r["code"]["coding"][0]["code"].as_str().unwrap_or_default().to_string();
    let cause = of_type(&rs, "Condition").into_iter().find(|c| code(c) == "I21").expect("PDA-1 cause of death");
    assert_eq!(cause["code"]["coding"][0]["system"], "http://hl7.org/fhir/sid/icd-10-cm", "I10");
    let obs = of_type(&rs, "Observation");
    let value = |c: &str| obs.iter().find(|o| code(o) == c).map(|o| o["valueBoolean"].clone());
    assert_eq!(value("PDA-3"), Some(json!(true)), "death certified");
    assert_eq!(value("85699-7"), Some(json!(true)), "autopsy");
    assert_eq!(value("74497-9"), Some(json!(false)), "coroner");
    let autopsy = of_type(&rs, "Procedure").into_iter().find(|p| code(p) == "29240004").unwrap();
    assert_eq!(autopsy["performedPeriod"]["start"], "2021-11-02T10:30:00+01:15");
    assert_eq!(autopsy["performer"][0]["actor"]["identifier"]["value"], "002324");
    let cert = of_type(&rs, "Procedure").into_iter().find(|p| p["code"]["text"] == "Death certification").unwrap();
    assert_eq!(cert["performer"][0]["actor"]["identifier"]["value"], "005454");
    let acc = obs.iter().find(|o| code(o) == "11374-6").unwrap();
    assert_eq!(acc["valueString"], "vehicle acident");
    assert_eq!(acc["effectiveDateTime"], "2014-03-17");
    assert_eq!(acc["identifier"][0]["value"], "5348");
    assert_eq!(acc["component"].as_array().unwrap().len(), 3, "job related, death, police notified");
    let referral = of_type(&rs, "ServiceRequest").into_iter().find(|r| r["category"][0]["coding"][0]["code"] == "3457005").unwrap();
    assert_eq!(referral["status"], "draft", "RF1-1 P pending");
    assert_eq!(referral["priority"], "asap");
    assert_eq!(referral["reasonCode"][0]["text"], "Patient has a spinal fracture");
    let ids: Vec<_> = referral["identifier"].as_array().unwrap().iter().map(|i| i["value"].clone()).collect();
    assert_eq!(ids, vec![json!("123-1"), json!("123-2")]);
    // The patient's identifiers outside PID: IN2 (Medicare, Medicaid, military,
    // member number), GT1 as self (number, SSN, employee id), DB1 (the patient).
    let p = of_type(&rs, "Patient")[0];
    let values: Vec<&str> = p["identifier"].as_array().unwrap().iter().filter_map(|i| i["value"].as_str()).collect();
    for v in ["Medicare-12345", "MCN-008", "MI-12345", "PNM1234", "1516", "G-SSN-12", "55121", "DB123"] {
        assert!(values.contains(&v), "{v} in {values:?}");
    }
    let medicare = p["identifier"].as_array().unwrap().iter().find(|i| i["value"] == "Medicare-12345").unwrap();
    assert_eq!(medicare["type"]["coding"][0]["code"], "MC");
}

#[test]
fn a_guarantor_or_disabled_person_who_is_not_the_patient_adds_no_identifier() {
    let msg = [
        "MSH|^~\\&|A|F|||20240101120000+0000||ADT^A04|1|P|2.5\r".to_string(),
        seg("PID", &[(1, "1"), (3, "P1^^^H^MR")]),
        seg("GT1", &[(1, "1"), (2, "G-9^^^H"), (3, "Doe^Jane"), (11, "SPO"), (12, "999-99-9999")]),
        seg("DB1", &[(1, "1"), (2, "GT"), (3, "D-9^^^H")]),
    ]
    .concat();
    let (rs, _) = map(&raw(&msg));
    assert_eq!(of_type(&rs, "Patient")[0]["identifier"].as_array().unwrap().len(), 1);
    assert_eq!(of_type(&rs, "RelatedPerson")[0]["identifier"][0]["value"], "G-9");
}

#[test]
fn charges_bill_their_procedure_and_dispense() {
    let (rs, warnings) = map(&sample("dft_p03_ghh_v28.hl7"));
    let charges = of_type(&rs, "ChargeItem");
    assert_eq!(charges.len(), 2);
    let first = charges[0];
    assert_eq!(first["status"], "billable");
    assert_eq!(first["code"]["coding"][0]["code"], "71045");
    assert_eq!(first["identifier"][0]["value"], "12345");
    assert_eq!(first["priceOverride"], json!({"value": 100, "currency": "USD"}));
    assert_eq!(first["quantity"]["value"], 2);
    assert_eq!(first["occurrenceDateTime"], "2019-11-22");
    assert_eq!(first["reason"].as_array().unwrap().len(), 2);
    let refs: Vec<&str> = first["service"].as_array().unwrap().iter().map(|r| r["reference"].as_str().unwrap()).collect();
    assert!(refs[0].starts_with("Procedure/") && refs[1].starts_with("MedicationDispense/"), "{refs:?}");
    let id_of = |r: &Value| format!("{}/{}", r["resourceType"].as_str().unwrap(), r["id"].as_str().unwrap());
    let dispense = of_type(&rs, "MedicationDispense")[0];
    assert_eq!(refs[1], id_of(dispense));
    assert_eq!(dispense["medicationCodeableConcept"]["coding"][0]["system"], "http://hl7.org/fhir/sid/ndc");
    assert_eq!(dispense["quantity"]["value"], 5);
    assert_eq!(dispense["quantity"]["code"], "385049006");
    assert_eq!(dispense["authorizingPrescription"][0]["identifier"]["value"], "PN-12345");
    let billed = rs.iter().find(|r| id_of(r) == refs[0]).unwrap();
    assert_eq!(billed["code"]["coding"][0]["code"], "71045");
    assert_eq!(billed["status"], "completed");
    // The second FT1 has no transaction id: keyed by the message and FT1-1.
    assert_eq!(charges[1]["code"]["coding"][0]["code"], "626.2");
    assert!(charges[1].get("identifier").is_none());
    assert!(!warnings.iter().any(|w| w.contains("FT1")), "{warnings:?}");
    // A payment is not a charge.
    let msg = [
        "MSH|^~\\&|A|F|||20240101120000+0000||DFT^P03|1|P|2.5\r".to_string(),
        seg("PID", &[(1, "1"), (3, "P1^^^H^MR")]),
        seg("FT1", &[(1, "1"), (2, "T-1"), (4, "20240101"), (6, "PY"), (7, "CASH"), (25, "99213^Visit^C4")]),
    ]
    .concat();
    let (rs, warnings) = map(&raw(&msg));
    assert!(of_type(&rs, "ChargeItem").is_empty() && of_type(&rs, "Procedure").is_empty());
    assert!(warnings.iter().any(|w| w.contains("payment")), "{warnings:?}");
}

#[test]
fn a_merge_is_also_a_linkage() {
    let (rs, _) = map(&sample("adt_a40_merge_ntierprise_v28.hl7"));
    let patients = of_type(&rs, "Patient");
    let linkage = of_type(&rs, "Linkage")[0];
    let refs: Vec<(&str, &str)> =
        linkage["item"].as_array().unwrap().iter().map(|i| (i["type"].as_str().unwrap(), i["resource"]["reference"].as_str().unwrap())).collect();
    let surviving = format!("Patient/{}", patients[0]["id"].as_str().unwrap());
    let merged = format!("Patient/{}", patients[1]["id"].as_str().unwrap());
    assert_eq!(refs, vec![("source", surviving.as_str()), ("historical", merged.as_str())]);
}

#[test]
fn immunization_orders_and_appointments_have_their_service_requests() {
    let (rs, _) = map(&sample("vxu_v04_nist_iz_v251_bom.hl7"));
    let srs = of_type(&rs, "ServiceRequest");
    assert_eq!(srs.len(), of_type(&rs, "Immunization").len(), "one per ORC");
    assert!(srs.iter().all(|r| r.get("code").is_none() && r["status"] == "completed" && r["identifier"].is_array()));
    let (rs, _) = map(&sample("siu_s12_ghh_v28.hl7"));
    let sr = of_type(&rs, "ServiceRequest")[0];
    assert_eq!(sr["code"]["coding"][0]["code"], "76164006", "AIS-3");
    assert_eq!(sr["occurrencePeriod"], json!({"start": "2021-09-24T09:30:00+02:15", "end": "2021-09-24T10:20:00+02:15"}), "AIS-4 + 50 min");
    let a = of_type(&rs, "Appointment")[0];
    assert_eq!(a["basedOn"][0]["reference"], format!("ServiceRequest/{}", sr["id"].as_str().unwrap()));
}

#[test]
fn an_obr_gives_a_specimen_and_parents_are_logical_references() {
    let msg = [
        "MSH|^~\\&|LAB|H|||20240101120000+0000||ORU^R01|9|P|2.5.1\r".to_string(),
        seg("PID", &[(1, "1"), (3, "P1^^^H^MR")]),
        seg("ORC", &[(1, "RE"), (3, "FI-1^LAB"), (8, "PARENT-1&LAB^PARENT-F")]),
        seg("OBR", &[(1, "1"), (3, "FI-1^LAB"), (4, "2345-7^Glucose^LN"), (7, "20240101100000+0000"), (8, "20240101101000+0000"), (10, "55^Tech^Tina"), (14, "20240101103000+0000")]),
        seg("OBX", &[(1, "1"), (2, "NM"), (3, "2345-7^Glucose^LN"), (5, "95"), (11, "F")]),
        seg("SPM", &[(1, "1"), (2, "S-1&LAB"), (3, "S-0&LAB"), (4, "BLD^Blood^HL70487")]),
    ]
    .concat();
    let (rs, _) = map(&raw(&msg));
    let specimens = of_type(&rs, "Specimen");
    assert_eq!(specimens.len(), 2, "SPM and OBR");
    assert_eq!(specimens[0]["parent"][0]["identifier"]["value"], "S-0", "SPM-3");
    let obr = specimens[1];
    assert_eq!(obr["collection"]["collectedPeriod"], json!({"start": "2024-01-01T10:00:00+00:00", "end": "2024-01-01T10:10:00+00:00"}));
    assert_eq!(obr["collection"]["collector"]["identifier"]["value"], "55");
    assert_eq!(obr["receivedTime"], "2024-01-01T10:30:00+00:00");
    let dr = of_type(&rs, "DiagnosticReport")[0];
    assert_eq!(dr["specimen"].as_array().unwrap().len(), 2);
    let sr = of_type(&rs, "ServiceRequest")[0];
    assert_eq!(sr["basedOn"][0]["identifier"]["value"], "PARENT-1", "ORC-8 placer");
    assert_eq!(sr["basedOn"][0]["type"], "ServiceRequest");
}

#[test]
fn general_practitioners_and_encounter_roles() {
    let (rs, _) = map(&sample("adt_a01_ghh_v28_full.hl7"));
    let p = of_type(&rs, "Patient")[0];
    let gps = p["generalPractitioner"].as_array().unwrap();
    let ids: Vec<&str> = gps.iter().filter_map(|g| g["identifier"]["value"].as_str()).collect();
    assert!(ids.contains(&"88"), "PD1-4: {gps:?}");
    assert!(ids.contains(&"12377H87") && ids.contains(&"121"), "ROL PP: {gps:?}");
    assert_eq!(ids.iter().filter(|i| **i == "12377H87").count(), 1, "the same ROL twice is one reference");
    assert!(gps.iter().any(|g| g["type"] == "Organization" && g["display"] == "LINDAS TEST ORGANIZATION"), "PD1-3");
    let msg = [
        "MSH|^~\\&|A|F|||20240101120000+0000||ADT^A01|1|P|2.5\r".to_string(),
        seg("PID", &[(1, "1"), (3, "P1^^^H^MR")]),
        seg("PV1", &[(1, "1"), (2, "I"), (19, "V1^^^H")]),
        seg("ROL", &[(1, "1"), (2, "AD"), (3, "AT^Attending^HL70443"), (4, "55^Doc^Jo"), (5, "20240101")]),
    ]
    .concat();
    let (rs, _) = map(&raw(&msg));
    let part = &of_type(&rs, "Encounter")[0]["participant"];
    assert_eq!(part[0]["type"][0]["coding"][0]["code"], "AT");
    assert_eq!(part[0]["individual"]["identifier"]["value"], "55");
    assert_eq!(part[0]["period"]["start"], "2024-01-01");
}

#[test]
fn iam_updates_the_allergy_record() {
    let base = [
        "MSH|^~\\&|A|F|||20240101120000+0000||ADT^A60|1|P|2.5\r".to_string(),
        seg("PID", &[(1, "1"), (3, "P1^^^H^MR")]),
    ]
    .concat();
    let al1 = base.clone().replace("ADT^A60", "ADT^A08") + &seg("AL1", &[(1, "1"), (2, "DA"), (3, "PCN^Penicillin^L"), (4, "SV")]);
    let iam = base.replace("ADT^A60", "ADT^A08")
        + &seg("IAM", &[(1, "1"), (2, "DA"), (3, "PCN^Penicillin^L"), (4, "SV"), (5, "Hives"), (6, "A"), (7, "IAM-77"), (11, "20200101"), (13, "20200105"), (17, "C")]);
    let (a, _) = map(&raw(&al1));
    let (rs, warnings) = map(&raw(&iam));
    let i = of_type(&rs, "AllergyIntolerance")[0];
    assert_eq!(i["id"], of_type(&a, "AllergyIntolerance")[0]["id"], "one record per (patient, allergen)");
    assert_eq!(i["identifier"][0]["value"], "IAM-77");
    assert_eq!(i["onsetDateTime"], "2020-01-01");
    assert_eq!(i["recordedDate"], "2020-01-05");
    assert_eq!(i["verificationStatus"]["coding"][0]["code"], "confirmed");
    assert_eq!(i["clinicalStatus"]["coding"][0]["code"], "active");
    assert!(warnings.iter().all(|w| !w.contains("IAM-6")), "the action code is not read as a date: {warnings:?}");
    let deleted = iam.replace("|A|IAM-77|", "|D|IAM-77|");
    let (rs, _) = map(&raw(&deleted));
    let i = of_type(&rs, "AllergyIntolerance")[0];
    assert_eq!(i["verificationStatus"]["coding"][0]["code"], "entered-in-error");
    assert!(i.get("clinicalStatus").is_none(), "ait-2");
}

#[test]
fn ras_gives_medication_administrations() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/data/hl7/public/ras_o17_rs7_v25.hl7");
    let (rs, _) = map(&Hl7Input::new(std::fs::read_to_string(path).unwrap()));
    let m = of_type(&rs, "MedicationAdministration")[0];
    assert_eq!(m["status"], "completed", "RXA-20 CP");
    assert_eq!(m["medicationCodeableConcept"]["coding"][0]["code"], "1191");
    assert_eq!(m["dosage"]["dose"]["value"], 100);
    assert_eq!(m["effectiveDateTime"], "2024-03-15", "no UTC offset known: the date only");
    assert_eq!(m["subject"]["reference"], format!("Patient/{}", of_type(&rs, "Patient")[0]["id"].as_str().unwrap()));
}
