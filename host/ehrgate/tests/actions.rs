//! End-to-end: the vendor adapters' discharge-checklist action against the sandbox
//! EHR (`ehrgate sandbox`), through the configured connection (client_credentials,
//! retries, idempotency keys). The first POST of each run fails with 503; the Tasks
//! still exist exactly once, and a second run creates nothing new. Task counts are
//! read back with Python's urllib, a client no code here wrote.

use std::path::{Path, PathBuf};
use std::process::Command;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

mod common;

use common::{Sandbox, sandbox_py, start_sandbox};

fn sandbox() -> Sandbox {
    start_sandbox(&["--patients", "3"])
}

fn py(args: &[&str]) -> String {
    match args {
        [base, "posts"] => sandbox_py(base, &["stats"]),
        [base, rest @ ..] => sandbox_py(base, rest),
        [] => unreachable!(),
    }
}

fn config(dir: &Path, base: &str) -> PathBuf {
    let mut toml = format!(
        r#"
[[connections]]
name = "ehr"
base_url = "{base}"
auth = {{ kind = "client_credentials", client_id = "ehrgate-demo", client_secret = "env:EHRGATE_TEST_EHR_SECRET", token_url = "{base}/token", scopes = ["system/Task.write", "system/Task.read", "system/*.read"] }}
retry = {{ max_attempts = 3, base_ms = 50, cap_ms = 200 }}
"#
    );
    for vendor in ["epic", "oracle-health", "meditech"] {
        toml.push_str(&format!(
            "\n[adapters.{vendor}]\ncomponent = \"{vendor}\"\ngrants = [{{ connection = \"ehr\", methods = [\"GET\", \"POST\"], paths = [\"/Task\", \"/Task/*\"] }}]\n"
        ));
    }
    let path = dir.join("ehrgate.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

fn action(cfg: &Path, vendor: &str, patient: &str, encounter: &str) -> std::process::Output {
    let input = format!(r#"{{"encounter": "Encounter/{encounter}", "patient": "Patient/{patient}"}}"#);
    Command::new(env!("CARGO_BIN_EXE_ehrgate"))
        .args(["--config", cfg.to_str().unwrap(), "adapter", "action", vendor, "discharge-checklist", "--input", &input])
        .env("EHRGATE_TEST_EHR_SECRET", "sandbox-demo-secret")
        .output()
        .unwrap()
}

#[test]
fn discharge_checklist_creates_its_tasks_exactly_once_when_the_first_post_fails() {
    let sb = sandbox();
    let dir = std::env::temp_dir().join(format!("ehrgate-actions-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = config(&dir, &sb.base);
    for (i, vendor) in ["epic", "oracle-health", "meditech"].iter().enumerate() {
        let patient = format!("patient-000{i}");
        let encounter = format!("discharge-{vendor}");
        assert_eq!(py(&[&sb.base, "fault", "503;times=1"]), "ok");
        let out = action(&cfg, vendor, &patient, &encounter);
        assert!(out.status.success(), "{vendor}: {}\n{}", text(&out.stdout), text(&out.stderr));
        let tasks: Vec<String> = serde_json::from_str(&py(&[&sb.base, "tasks", &patient])).unwrap();
        assert_eq!(tasks.len(), 2, "{vendor}: two Tasks, not three or four: {tasks:?}");
        assert_ne!(tasks[0], tasks[1], "{vendor}: home-health referral and medication reconciliation: {tasks:?}");
        // Run it again: the idempotency keys find the same Tasks.
        let again = action(&cfg, vendor, &patient, &encounter);
        assert!(again.status.success(), "{vendor}: {}", text(&again.stderr));
        let tasks2: Vec<String> = serde_json::from_str(&py(&[&sb.base, "tasks", &patient])).unwrap();
        assert_eq!(tasks2, tasks, "{vendor}: a second run creates nothing");
    }
    let stats: serde_json::Value = serde_json::from_str(&py(&[&sb.base, "posts"])).unwrap();
    assert_eq!(stats["faults_applied"], 3, "each vendor's first POST was failed: {stats}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_adapter_without_a_grant_is_denied_and_nothing_reaches_the_ehr() {
    let sb = sandbox();
    let dir = std::env::temp_dir().join(format!("ehrgate-actions-deny-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = config(&dir, &sb.base);
    // `epic` is granted in the config; the same component under another name is not.
    let toml = std::fs::read_to_string(&cfg).unwrap() + "\n[adapters.ungranted]\ncomponent = \"epic\"\n";
    std::fs::write(&cfg, toml).unwrap();
    let out = action(&cfg, "ungranted", "patient-0000", "enc-denied");
    assert!(!out.status.success(), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(err.contains("denied") || err.contains("not granted"), "{err}");
    let tasks: Vec<String> = serde_json::from_str(&py(&[&sb.base, "tasks", "patient-0000"])).unwrap();
    assert!(tasks.is_empty(), "{tasks:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
