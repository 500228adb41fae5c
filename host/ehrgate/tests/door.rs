//! End to end: the agent door of `ehrgate serve` against the sandbox EHR, driven by
//! clients no code here wrote (Python's urllib, the official MCP Python SDK over
//! streamable HTTP and over stdio through `ehrgate door mcp`):
//! - a key without Observation read scope gets 403 for the vitals, and the refusal
//!   is an audit row; no key is 401 and no purpose is 400, audited too;
//! - a key with the scope gets the latest vital sign per code, the same ones the
//!   EHR's own data gives;
//! - a 429 with Retry-After from the EHR is waited out, not passed on;
//! - over MCP: the tools are listed, a read and a write (the discharge checklist,
//!   exactly two Tasks however often it is called) succeed; out of scope is an
//!   error result;
//! - every call is in `audit/access_log` with client, purpose and upstream status.

mod common;

use std::path::Path;
use std::process::Command;

use common::gateway::{Gateway, ehrgate, sql, text, workdir};
use common::{sandbox_py, start_sandbox};
use serde_json::{Value, json};

const CLIENT_PY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/door_client.py");

/// `ehrgate door key`: (key, key_hash).
fn new_key(dir: &Path) -> (String, String) {
    let out = text(&ehrgate(dir, &["door", "key"]).stdout);
    let field = |name: &str| out.lines().find_map(|l| l.strip_prefix(name)).map(|v| v.trim().trim_matches('"').to_string()).unwrap();
    (field("key:"), field("key_hash:"))
}

fn config(dir: &Path, base: &str, care_hash: &str, billing_hash: &str) {
    let toml = format!(
        r#"
[lake]
commit_age_ms = 100

[[connections]]
name = "ehr"
base_url = "{base}"
auth = {{ kind = "client_credentials", client_id = "ehrgate-demo", client_secret = "env:EHRGATE_TEST_EHR_SECRET", token_url = "{base}/token", scopes = ["system/*.read", "system/Task.write"] }}
retry = {{ max_attempts = 4, base_ms = 50, cap_ms = 200 }}

[adapters.epic]
component = "epic"
grants = [{{ connection = "ehr", methods = ["GET", "POST"], paths = ["/Task", "/Task/*"] }}]

[[listeners.mllp]]
bind = "127.0.0.1:0"

[agent_door]
bind = "127.0.0.1:0"
connections = {{ ehr = "epic" }}

[[agent_door.clients]]
id = "care-agent"
key_hash = "{care_hash}"
connections = ["ehr"]
read = ["Observation", "MedicationRequest", "Encounter", "Patient"]
actions = ["epic.discharge-checklist"]
purposes = ["TREAT"]

[[agent_door.clients]]
id = "billing-bot"
key_hash = "{billing_hash}"
connections = ["ehr"]
read = ["Encounter"]
profile = "safe-harbor"

[governance]
pseudonym_key = "env:EHRGATE_TEST_PSEUDONYM_KEY"
"#
    );
    std::fs::write(dir.join("ehrgate.toml"), toml).unwrap();
}

/// Run [`CLIENT_PY`] with a key and purpose (either may be absent).
fn client(key: Option<&str>, purpose: Option<&str>, args: &[&str]) -> Value {
    let mut cmd = Command::new("python3");
    cmd.arg(CLIENT_PY).args(args).env_remove("DOOR_KEY").env_remove("DOOR_PURPOSE");
    if let Some(k) = key {
        cmd.env("DOOR_KEY", k);
    }
    if let Some(p) = purpose {
        cmd.env("DOOR_PURPOSE", p);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "door_client {args:?}: {}", text(&out.stderr));
    serde_json::from_str(text(&out.stdout).trim()).unwrap()
}

fn ids(v: &Value) -> Vec<String> {
    let mut ids: Vec<String> = v.as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_string()).collect();
    ids.sort();
    ids
}

fn observation_gets(base: &str) -> u64 {
    let stats: Value = serde_json::from_str(&sandbox_py(base, &["stats"])).unwrap();
    stats["by_route"]["GET /Observation"].as_u64().unwrap_or(0)
}

#[test]
fn the_agent_door_scopes_audits_honours_429_and_speaks_mcp() {
    let sb = start_sandbox(&["--patients", "3"]);
    let dir = workdir("door");
    let (care, care_hash) = new_key(&dir.0);
    let (billing, billing_hash) = new_key(&dir.0);
    assert_ne!(care, billing);
    config(&dir.0, &sb.base, &care_hash, &billing_hash);
    let mut gw = Gateway::start(&dir.0, &[("EHRGATE_TEST_EHR_SECRET", "sandbox-demo-secret"), ("EHRGATE_TEST_PSEUDONYM_KEY", "door-test-key")]);
    let port = gw.port("agent door on");
    let url = format!("http://127.0.0.1:{port}");
    let toml = std::fs::read_to_string(dir.0.join("ehrgate.toml")).unwrap();
    assert!(!toml.contains(&care) && !toml.contains(&billing), "only the hashes are configured");
    let patient = "patient-0001";
    let vitals_args = json!({"patient": patient}).to_string();

    // Refusals: no key (401), no purpose (400), a key without Observation scope (403).
    let r = client(None, Some("TREAT"), &["http-call", &url, "latest_vitals", &vitals_args]);
    assert_eq!(r["status"], 401, "{r}");
    let r = client(None, Some("TREAT"), &["http-post", &format!("{url}/mcp"), r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#]);
    assert_eq!(r["status"], 401, "MCP needs a key too: {r}");
    let r = client(Some(&care), None, &["http-call", &url, "latest_vitals", &vitals_args]);
    assert_eq!(r["status"], 400, "{r}");
    assert_eq!(r["body"]["error"], "purpose-required");
    let r = client(Some(&care), Some("MARKETING"), &["http-call", &url, "latest_vitals", &vitals_args]);
    assert_eq!(r["status"], 403, "a purpose the client may not declare: {r}");
    let r = client(Some(&billing), Some("HPAYMT"), &["http-tools", &url]);
    let listed: Vec<&str> = r["body"]["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert!(!listed.contains(&"latest_vitals") && !listed.contains(&"run_action") && listed.contains(&"read_resource"), "{listed:?}");
    let before = observation_gets(&sb.base);
    let r = client(Some(&billing), Some("HPAYMT"), &["http-call", &url, "latest_vitals", &vitals_args]);
    assert_eq!(r["status"], 403, "{r}");
    let r = client(Some(&billing), Some("HPAYMT"), &["http-call", &url, "search_resources", &json!({"type": "Observation", "patient": patient}).to_string()]);
    assert_eq!(r["status"], 403, "{r}");
    assert_eq!(observation_gets(&sb.base), before, "a refused read never reaches the EHR");
    // A client with a masking profile: what it reads is de-identified (safe-harbor).
    let care_view = client(Some(&care), Some("TREAT"), &["http-call", &url, "search_resources", &json!({"type": "Encounter", "patient": patient}).to_string()]);
    let masked = client(Some(&billing), Some("HPAYMT"), &["http-call", &url, "search_resources", &json!({"type": "Encounter", "patient": patient}).to_string()]);
    assert_eq!(masked["status"], 200, "{masked}");
    let (plain, seen) = (care_view["body"]["resources"].as_array().unwrap(), masked["body"]["resources"].as_array().unwrap());
    assert!(!seen.is_empty() && seen.len() == plain.len(), "{masked}");
    assert!(masked["body"]["patient"].as_str().unwrap().starts_with("Patient/ps_"), "{masked}");
    let shown = masked.to_string();
    for e in plain {
        assert!(!shown.contains(e["id"].as_str().unwrap()), "the encounter id is a pseudonym: {shown}");
        if let Some(start) = e["period"]["start"].as_str() {
            assert!(!shown.contains(start), "dates are years only: {shown}");
        }
    }
    assert!(!shown.contains(patient), "{shown}");
    // Ids that would be dot segments or a query in the EHR's URL are refused.
    for id in ["..", ".", "x?patient=other", "a/b"] {
        let r = client(Some(&care), Some("TREAT"), &["http-call", &url, "read_resource", &json!({"type": "Observation", "id": id}).to_string()]);
        assert_eq!(r["status"], 400, "{id}: {r}");
    }
    let r = client(Some(&care), Some("TREAT"), &["http-call", &url, "latest_vitals", "{not json"]);
    assert_eq!(r["status"], 400, "{r}");
    assert_eq!(observation_gets(&sb.base), before, "nothing malformed reaches the EHR");

    // In scope: the latest vital per code, as the EHR's own data says.
    let expected = client(None, None, &["ehr-vitals", &sb.base, patient]);
    let r = client(Some(&care), Some("TREAT"), &["http-call", &url, "latest_vitals", &vitals_args]);
    assert_eq!(r["status"], 200, "{r}");
    let got = ids(&r["body"]["vitals"]);
    assert!(!got.is_empty());
    assert_eq!(json!(got), expected["latest"], "{r}");
    assert!(r["body"]["vitals"].as_array().unwrap().iter().all(|o| o["subject"]["reference"] == format!("Patient/{patient}")));

    // A 429 with Retry-After from the EHR is waited out and retried: the agent sees 200.
    assert_eq!(sandbox_py(&sb.base, &["fault", "429;retry-after=1;times=1", "GET", "/Observation"]), "ok");
    let before = observation_gets(&sb.base);
    let r = client(Some(&care), Some("TREAT"), &["http-call", &url, "latest_vitals", &vitals_args]);
    assert_eq!(r["status"], 200, "{r}");
    assert_eq!(json!(ids(&r["body"]["vitals"])), expected["latest"]);
    assert_eq!(observation_gets(&sb.base), before + 2, "the 429 and the retry after it");

    // MCP over streamable HTTP (the official Python SDK): list, read, write.
    let r = client(Some(&care), Some("TREAT"), &["mcp-http", &url, "latest_vitals", &vitals_args]);
    let tools: Vec<&str> = r["tools"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    assert_eq!(tools, ["active_medications", "latest_vitals", "read_resource", "run_action", "search_resources"]);
    assert_eq!(r["is_error"], false, "{r}");
    assert_eq!(json!(ids(&r["structured"]["vitals"])), expected["latest"]);
    let encounter = "enc-0001-0";
    let discharge = json!({"action": "epic.discharge-checklist", "input": {"encounter": format!("Encounter/{encounter}"), "patient": format!("Patient/{patient}")}}).to_string();
    for _ in 0..2 {
        let r = client(Some(&care), Some("TREAT"), &["mcp-http", &url, "run_action", &discharge]);
        assert_eq!(r["is_error"], false, "{r}");
        assert_eq!(r["structured"]["result"]["tasks"].as_array().unwrap().len(), 2, "{r}");
    }
    let codes: Value = serde_json::from_str(&sandbox_py(&sb.base, &["tasks", patient])).unwrap();
    assert_eq!(codes, json!(["home-health-referral", "medication-reconciliation"]), "two Tasks however often the action runs");
    // Out of scope over MCP: an error result, not a protocol failure.
    let r = client(Some(&billing), Some("HPAYMT"), &["mcp-http", &url, "run_action", &discharge]);
    assert_eq!(r["is_error"], true, "{r}");
    assert_eq!(r["structured"]["status"], 403, "{r}");

    // MCP over stdio: `ehrgate door mcp` forwards to the running gateway.
    let read = json!({"type": "Encounter", "id": encounter}).to_string();
    let r = client(Some(&care), Some("TREAT"), &["mcp-stdio", env!("CARGO_BIN_EXE_ehrgate"), &url, "read_resource", &read]);
    assert_eq!(r["is_error"], false, "{r}");
    assert_eq!(r["structured"]["resourceType"], "Encounter");
    assert_eq!(r["structured"]["id"], encounter);

    // The audit: every call, with client, purpose and upstream status.
    let (_, printed) = gw.stop_with_output();
    assert!(!printed.iter().any(|l| l.contains(&care) || l.contains(&billing)), "no key in the gateway's output");
    let rows = sql(&dir.0, "SELECT actor, action, method, path, outcome FROM audit_access_log WHERE action LIKE 'door.%' ORDER BY at");
    let find = |pred: &dyn Fn(&Value) -> bool| rows.iter().filter(|r| pred(r)).count();
    let s = |r: &Value, k: &str| r[k].as_str().unwrap_or("").to_string();
    assert_eq!(find(&|r| s(r, "actor").starts_with("door:anonymous") && s(r, "outcome").starts_with("denied: 401")), 2, "{rows:#?}");
    assert_eq!(find(&|r| s(r, "actor").starts_with("door:care-agent") && s(r, "outcome").starts_with("denied: 403 purpose MARKETING")), 1, "{rows:#?}");
    assert_eq!(find(&|r| s(r, "action") == "door.read_resource" && s(r, "outcome").starts_with("failed: 400")), 4, "{rows:#?}");
    assert_eq!(find(&|r| s(r, "actor").starts_with("door:care-agent") && s(r, "outcome").starts_with("denied: 400")), 1, "{rows:#?}");
    assert_eq!(
        find(&|r| s(r, "actor").starts_with("door:billing-bot") && s(r, "action") == "door.latest_vitals" && s(r, "outcome").starts_with("denied: 403") && s(r, "outcome").contains("purpose HPAYMT")),
        1,
        "{rows:#?}"
    );
    let reads = find(&|r| {
        s(r, "actor").starts_with("door:care-agent") && s(r, "action") == "door.latest_vitals" && s(r, "outcome").starts_with("allowed: 200; upstream 200; purpose TREAT") && s(r, "path").contains(patient)
    });
    assert_eq!(reads, 3, "HTTP twice and MCP once: {rows:#?}");
    assert!(rows.iter().any(|r| s(r, "actor").contains("(key ") && s(r, "actor").contains("mcp 127.0.0.1:")), "{rows:#?}");
    let writes = find(&|r| s(r, "action") == "door.run_action" && s(r, "outcome").starts_with("allowed: 200") && s(r, "path") == "epic.discharge-checklist");
    assert_eq!(writes, 2, "{rows:#?}");
    assert_eq!(find(&|r| s(r, "action") == "door.read_resource" && s(r, "outcome").starts_with("allowed: 200")), 1, "{rows:#?}");
    drop(sb);
}
