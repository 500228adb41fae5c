//! Every resource the six adapters produce in their golden files (which their golden
//! tests prove equal to what they produce), plus the discharge Tasks, passes the
//! independent validator (tests/fhir_validate.py, Python fhir.resources R4B) with no
//! error.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

const ADAPTERS: &[&str] = &["epic", "oracle-health", "meditech", "mirth", "rhapsody", "cloverleaf"];

fn golden_ndjson() -> (String, usize) {
    let mut all = String::new();
    let mut files = 0;
    for a in ADAPTERS {
        for sub in ["golden", "golden-shared"] {
            let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(a).join("tests").join(sub);
            if !dir.is_dir() {
                continue;
            }
            for f in ehrgate_sdk::testing::files_in(&dir, &["ndjson"]) {
                all.push_str(&std::fs::read_to_string(&f).unwrap());
                files += 1;
            }
        }
    }
    (all, files)
}

fn task_ndjson() -> String {
    let input = ehrgate_sdk::actions::DischargeInput::parse(r#"{"encounter":"e1","patient":"p1","requester":"Practitioner/d1"}"#).unwrap();
    let api = ehrgate_sdk::actions::TaskApi { connection: "ehr".into(), task_path: "/Task".into(), conditional_create: true, profile: None };
    ehrgate_sdk::actions::DISCHARGE_TASKS
        .iter()
        .map(|k| {
            let mut t = ehrgate_sdk::actions::task_body(&input, k, "epic", &api);
            t["id"] = "t1".into();
            format!("{t}\n")
        })
        .collect()
}

#[test]
fn every_produced_resource_passes_the_independent_validator() {
    let (mut ndjson, files) = golden_ndjson();
    assert!(files >= 40, "expected the adapters' golden files, found {files}");
    ndjson.push_str(&task_ndjson());
    let lines = ndjson.lines().filter(|l| !l.trim().is_empty()).count();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fhir_validate.py");
    let mut child = Command::new("python3")
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3 tests/fhir_validate.py (needs fhir.resources: pip install -r tests/requirements.txt)");
    child.stdin.take().unwrap().write_all(ndjson.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the independent validator rejected adapter output:\n{report}");
    assert!(report.contains(&format!("validated {lines} resources, 0 errors")), "{report}");
}
