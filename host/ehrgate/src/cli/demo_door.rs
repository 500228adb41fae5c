//! The demo's agent door part: two API clients call the door's HTTP API against
//! the sandbox EHR. One may read vital signs and gets them (through the
//! connection and the Epic adapter's map-fhir); the other may not and gets 403.
//! Both calls are audit rows (docs/agent-door.md).

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context;
use ehrgate_connect::Connections;
use ehrgate_door::{ClientEntry, Clients, Door};
use ehrgate_ingest::LakeAudit;
use ehrgate_lake::Lake;
use ehrgate_runtime::{Adapter, AuditSink, Registry};
use serde_json::Value;
use tokio::sync::watch;

fn client(id: &str, key_hash: String, read: &[&str], purposes: &[&str]) -> ClientEntry {
    let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
    ClientEntry { id: id.into(), key_hash, connections: vec!["ehr".into()], read: strings(read), actions: vec![], purposes: strings(purposes), profile: None }
}

/// `connections` holds `ehr` (the sandbox EHR); `epic` maps what is read.
pub async fn run(connections: Arc<Connections>, epic: Adapter, lake: Arc<Lake>, patient: &str) -> anyhow::Result<()> {
    let registry = Arc::new(Registry::new());
    registry.activate("epic", epic);
    let (audit, audit_task) = LakeAudit::new(lake.clone());
    let audit: Arc<dyn AuditSink> = Arc::new(audit);
    let door = Arc::new(Door::new(connections, registry, audit.clone(), BTreeMap::from([("ehr".to_string(), "epic".to_string())]), 100));
    let (care_key, care_hash) = ehrgate_door::new_key();
    let (billing_key, billing_hash) = ehrgate_door::new_key();
    let clients = Clients::new(&[client("care-agent", care_hash, &["Observation", "MedicationRequest", "Encounter"], &["TREAT"]), client("billing-bot", billing_hash, &["Encounter"], &[])], None)
        .map_err(|e| anyhow::anyhow!(e))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("the agent door's port")?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let (addr, task) = ehrgate_door::start(listener, door.clone(), Arc::new(clients), false, stop_rx)?;
    println!("Agent door on http://{addr}: tools over HTTP (/v1/tools) and MCP (/mcp); two clients, keys kept as hashes");

    let http = reqwest::Client::builder().no_proxy().build()?;
    for (who, key, purpose) in [("care-agent", &care_key, "TREAT"), ("billing-bot", &billing_key, "HPAYMT")] {
        let resp = http
            .post(format!("http://{addr}/v1/tools/latest_vitals"))
            .bearer_auth(key)
            .header(ehrgate_door::PURPOSE_HEADER, purpose)
            .header("content-type", "application/json")
            .body(serde_json::json!({"patient": patient}).to_string())
            .send()
            .await
            .context("calling the agent door")?;
        let status = resp.status().as_u16();
        let body: Value = serde_json::from_slice(&resp.bytes().await?).unwrap_or(Value::Null);
        let said = match body["vitals"].as_array() {
            Some(v) => {
                let shown: Vec<String> = v
                    .iter()
                    .map(|o| format!("{} {} {}", o["code"]["coding"][0]["display"].as_str().unwrap_or("?"), o["valueQuantity"]["value"], o["valueQuantity"]["unit"].as_str().unwrap_or("")))
                    .collect();
                format!("{} vital signs: {}", v.len(), shown.join(", "))
            }
            None => format!("{} {}", body["error"].as_str().unwrap_or(""), body["message"].as_str().unwrap_or("")),
        };
        println!("  {who} (purpose {purpose}) latest_vitals {patient}: {status}; {said}");
    }
    let _ = stop_tx.send(true);
    let _ = task.await;
    drop(door);
    drop(audit);
    let _ = audit_task.await;
    println!("  every call is an audit row: $ ehrgate sql \"SELECT actor, action, path, outcome FROM audit_access_log WHERE action LIKE 'door.%'\"");
    println!();
    Ok(())
}
