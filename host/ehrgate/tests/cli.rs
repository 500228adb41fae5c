//! End-to-end: the real `ehrgate` binary over the shared samples, its FHIR output
//! checked by an independent validator (Python fhir.resources).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn ehrgate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ehrgate")).args(args).output().expect("run ehrgate")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The samples of every message type the standard mapping claims (ADT, ORU, ORM,
/// OML, SIU, MDM, DFT, VXU), except the one without a message type.
fn adt_oru_samples() -> Vec<PathBuf> {
    let v: Vec<PathBuf> = ehrgate_sdk::testing::standard_samples(&ehrgate_testkit::shared_dir(), &ehrgate_testkit::repo_root())
        .into_iter()
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with("adt_pid_zin"))
        .collect();
    assert!(v.len() >= 35, "expected the shared samples of the standard message types, found {}", v.len());
    v
}

fn validate(ndjson: &[u8]) -> String {
    let script = ehrgate_testkit::repo_root().join("tests/fhir_validate.py");
    let mut child = Command::new("python3")
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3 tests/fhir_validate.py (scripts/test installs fhir.resources)");
    child.stdin.take().unwrap().write_all(ndjson).unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "the independent validator rejected our FHIR:\n{report}");
    report
}

#[test]
fn reference_adapter_output_passes_the_independent_validator_and_ids_are_stable() {
    let files = adt_oru_samples();
    let mut args = vec!["adapter", "test", "reference"];
    let names: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    args.extend(names.iter().map(String::as_str));

    let first = ehrgate(&args);
    assert!(first.status.success(), "adapter test failed:\n{}", text(&first.stderr));
    let lines = text(&first.stdout).lines().count();
    assert!(lines > 100, "expected the samples to yield many resources, got {lines}");
    for line in text(&first.stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("each line is one JSON resource");
        assert!(v["resourceType"].is_string() && v["id"].is_string(), "{line}");
    }

    let report = validate(&first.stdout);
    assert!(report.contains(&format!("validated {lines} resources, 0 errors")), "{report}");

    let second = ehrgate(&args);
    // meta.lastUpdated is MSH-7, else the receive time: three public samples send
    // MSH-7 without a time of day (or none), so that member may differ; nothing else.
    let stable = |out: &[u8]| -> Vec<serde_json::Value> {
        text(out)
            .lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                if let Some(m) = v.get_mut("meta").and_then(|m| m.as_object_mut()) {
                    m.remove("lastUpdated");
                }
                v
            })
            .collect()
    };
    assert_eq!(stable(&first.stdout), stable(&second.stdout), "the same input must give the same resources and ids");
    let differing = text(&first.stdout).lines().zip(text(&second.stdout).lines()).filter(|(a, b)| a != b).count();
    assert!(differing <= 30, "{differing} resources differ in meta.lastUpdated: more than the samples without an MSH-7 time give");
}

#[test]
fn malformed_input_is_a_clear_error_naming_the_field_never_a_panic() {
    for (file, location) in [
        ("malformed_msh_duplicate_encoding_chars_v26.hl7", "MSH-2"),
        ("malformed_msh_no_encoding_chars.hl7", "MSH-2"),
        ("malformed_msh_missing_msh9_v26.hl7", "MSH-9"),
        ("malformed_batch_no_msh.hl7", "EVN"),
    ] {
        let path = ehrgate_testkit::shared_dir().join("data/hl7").join(file);
        let out = ehrgate(&["adapter", "test", "reference", path.to_str().unwrap()]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{file}: {err}");
        assert!(err.contains(location), "{file}: error should name {location}: {err}");
        assert!(!err.contains("panicked"), "{file}: {err}");
    }
}

#[test]
fn bad_components_are_refused_with_a_reason() {
    let missing = ehrgate(&["adapter", "test", "/nonexistent/adapter.wasm", "x.hl7"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(text(&missing.stderr).contains("does not exist"), "{}", text(&missing.stderr));

    let readme = ehrgate_testkit::repo_root().join("README.md");
    let not_wasm = ehrgate(&["adapter", "describe", readme.to_str().unwrap()]);
    assert_eq!(not_wasm.status.code(), Some(2));
    assert!(text(&not_wasm.stderr).contains("not a valid WebAssembly component"), "{}", text(&not_wasm.stderr));

    let future = ehrgate_testkit::guest("ehrgate-guest-future-contract");
    let out = ehrgate(&["adapter", "describe", future.to_str().unwrap()]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("ehrgate:adapter@0.9.0") && err.contains("ehrgate:adapter@0.1.0"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn missing_input_file_is_a_clear_error() {
    let out = ehrgate(&["adapter", "test", "reference", "/nonexistent/file.hl7"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot read /nonexistent/file.hl7"), "{}", text(&out.stderr));
}

#[test]
fn demo_runs_the_main_job_into_the_lake() {
    let dir = std::env::temp_dir().join(format!("ehrgate-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let data = ehrgate_testkit::shared_dir().join("data");
    let out = Command::new(env!("CARGO_BIN_EXE_ehrgate")).current_dir(&dir).args(["demo", "--data", data.to_str().unwrap()]).output().unwrap();
    let report = text(&out.stdout);
    assert!(out.status.success(), "{report}\n{}", text(&out.stderr));
    assert!(report.contains("lines/s") && report.contains("resources merged into silver"), "{report}");
    // Every built-in adapter's listener got messages over MLLP, and answered them.
    for adapter in ["reference", "epic", "oracle-health", "meditech", "mirth", "rhapsody", "cloverleaf"] {
        let row = report.lines().find(|l| l.trim_start().starts_with(&format!("{adapter} "))).unwrap_or_else(|| panic!("no row for {adapter}: {report}"));
        let msgs: usize = row.split_whitespace().nth(2).unwrap().parse().unwrap();
        assert!(msgs > 0, "{adapter} got no messages: {row}");
    }
    assert!(report.contains("failed 0"), "nothing failed to be stored: {report}");
    assert!(report.contains("| Observation"), "the silver summary lists the tables: {report}");
    assert!(report.contains("unsupported"), "non-ADT/ORU samples are quarantined as unsupported: {report}");
    for t in ["bronze/hl7_messages", "bronze/fhir_ndjson", "silver/patient", "quarantine/records"] {
        assert!(dir.join("ehrgate-data").join(t).join("_delta_log").is_dir(), "{t} missing");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `ehrgate adapter test` runs each built-in vendor component over its own HL7v2
/// fixtures (with its site settings) and prints exactly the golden resources that
/// the adapter's native tests check.
#[test]
fn adapter_test_runs_each_vendor_component_over_its_fixtures_and_matches_the_goldens() {
    let repo = ehrgate_testkit::repo_root();
    let mut compared = 0;
    for vendor in ["epic", "oracle-health", "meditech", "mirth", "rhapsody", "cloverleaf"] {
        let fixtures = repo.join("adapters").join(vendor).join("tests/fixtures");
        let golden = repo.join("adapters").join(vendor).join("tests/golden");
        for f in ehrgate_sdk::testing::files_in(&fixtures, &["hl7"]) {
            let name = f.file_name().unwrap().to_string_lossy().to_string();
            let expected = golden.join(format!("{name}.ndjson"));
            let cfg = fixtures.join("config.json");
            let out = ehrgate(&["adapter", "test", vendor, "--adapter-config", cfg.to_str().unwrap(), f.to_str().unwrap()]);
            if !expected.is_file() {
                // The golden is an expected error: the component refuses the input too.
                assert!(golden.join(format!("{name}.error")).is_file(), "{vendor}/{name}: no golden");
                assert_eq!(out.status.code(), Some(1), "{vendor}/{name}: {}", text(&out.stderr));
                continue;
            }
            assert!(out.status.success(), "{vendor}/{name}: {}", text(&out.stderr));
            let parse = |s: &str| -> Vec<serde_json::Value> { s.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).unwrap()).collect() };
            let got = parse(&text(&out.stdout));
            let want = parse(&std::fs::read_to_string(&expected).unwrap());
            assert_eq!(got, want, "{vendor}/{name}: the component's output differs from the golden file");
            compared += 1;
        }
    }
    assert!(compared >= 15, "compared {compared} fixture files");
}

#[test]
fn sql_into_a_reader_that_stops_early_is_not_a_crash() {
    let dir = std::env::temp_dir().join(format!("ehrgate-cli-pipe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ehrgate"))
        .current_dir(&dir)
        .args(["sql", "SELECT value FROM range(200000)", "--format", "csv"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read one line, then close the pipe (as `| head -1` does).
    let mut first = [0u8; 6];
    std::io::Read::read_exact(child.stdout.as_mut().unwrap(), &mut first).unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(&first, b"value\n");
    assert!(out.status.success(), "exit {:?}: {}", out.status, text(&out.stderr));
    assert!(!text(&out.stderr).contains("panicked"), "{}", text(&out.stderr));
}

#[test]
fn sql_on_a_lake_without_quarantine_rows_counts_zero() {
    let dir = std::env::temp_dir().join(format!("ehrgate-cli-empty-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ehrgate")).current_dir(&dir).args(["sql", "SELECT count(*) AS n FROM quarantine_records", "--format", "csv"]).output().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "n\n0\n");
}

#[test]
fn ingest_refuses_devices_instead_of_reading_forever() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ehrgate")).args(["ingest", "/dev/zero"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("`ehrgate ingest /dev/zero` still running after 60 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let out = child.wait_with_output().unwrap();
    assert_eq!(status.code(), Some(2));
    assert!(text(&out.stderr).contains("is not a regular file"), "{}", text(&out.stderr));
}
