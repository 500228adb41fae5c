//! The sandbox's FHIR REST and token endpoint, exercised by a client no code here
//! wrote: fhirpy (PyPI, see tests/requirements.txt), from a Python script.

use std::process::Command;

use ehrgate_sandbox::{SandboxOptions, serve};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fhirpy_reads_searches_creates_and_gets_a_token() {
    let sb = serve(SandboxOptions { patients: 5, seed: 11, ..Default::default() }).await.unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fhirpy_client.py");
    let base = sb.base_url();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3").args([script, &base, "ehrgate-demo", "sandbox-demo-secret"]).output()
    })
    .await
    .unwrap()
    .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        out.status.success(),
        "fhirpy script failed (is fhirpy installed? python3 -m pip install -r tests/requirements.txt)\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let line = |key: &str| -> String {
        stdout.lines().find_map(|l| l.strip_prefix(&format!("{key} "))).unwrap_or_else(|| panic!("no `{key}` in:\n{stdout}")).to_string()
    };
    assert_eq!(line("token_endpoint"), sb.token_url());
    assert_eq!(line("token_expires_in"), "300");
    assert_eq!(line("token_scope"), "system/*.read,system/Task.c");
    assert_eq!(line("wrong_secret"), "401");
    assert_eq!(line("metadata"), "CapabilityStatement 4.0.1");
    assert!(line("read").starts_with("Patient patient-0000 "), "{stdout}");
    // Counts match what the sandbox holds for that patient.
    let mut expected = std::collections::BTreeMap::new();
    let http = reqwest::Client::new();
    let token = sb_token(&http, &sb).await;
    for ty in ["Encounter", "Observation", "Condition", "MedicationRequest"] {
        let b: serde_json::Value = http
            .get(format!("{}/{ty}?patient=patient-0000&_count=1000", sb.base_url()))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        expected.insert(ty, b["total"].as_u64().unwrap());
        assert_eq!(line(&format!("search {ty}")), b["total"].to_string(), "{ty}");
    }
    assert!(expected["Encounter"] >= 1 && expected["Observation"] >= 1 && expected["Condition"] >= 1);
    assert_eq!(line("patients"), "5", "fhirpy followed the next links over 3 pages");
    assert_eq!(line("created"), "Task True");
    assert_eq!(line("read_back"), "requested 1");
    assert_eq!(line("tasks"), "1");
    assert!(line("anonymous").starts_with("refused"), "{stdout}");
    let s = sb.stats();
    assert_eq!(s.count("POST", "/Task"), 1);
    assert_eq!(s.count("GET", "/Patient"), 3, "three pages of two");
    println!("fhirpy: {stdout}");
}

async fn sb_token(http: &reqwest::Client, sb: &ehrgate_sandbox::Sandbox) -> String {
    let r: serde_json::Value = http
        .post(sb.token_url())
        .basic_auth("ehrgate-demo", Some("sandbox-demo-secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    r["access_token"].as_str().unwrap().to_string()
}
