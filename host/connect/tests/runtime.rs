//! A real adapter component, loaded by the runtime with `Connections` as its
//! outbound: what it was not granted is denied and audited and never reaches the
//! EHR; what it was granted goes through the connection to the sandbox.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use ehrgate_connect::Connections;
use ehrgate_runtime::*;

struct RecordingAudit(Mutex<Vec<AuditEvent>>);
impl AuditSink for RecordingAudit {
    fn record(&self, e: AuditEvent) {
        self.0.lock().unwrap().push(e);
    }
}

fn msg(text: &str) -> Hl7Message {
    Hl7Message { raw: text.into(), source: "test".into(), received_at_ms: 0 }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ungranted_requests_are_denied_audited_and_never_sent_granted_ones_reach_the_ehr() {
    let sb = sandbox_no_auth().await;
    // Both connections exist, so a denial can only come from the grants.
    let connections = Arc::new(Connections::new(&[plain("ehr", &sb.base_url()), plain("billing", &sb.base_url())]).unwrap());
    let audit = Arc::new(RecordingAudit(Mutex::new(vec![])));
    let runtime = Runtime::new(RuntimeConfig { outbound: connections.clone(), audit: audit.clone(), max_instances: 4, ..Default::default() }).unwrap();
    let settings = AdapterSettings {
        name: None,
        grants: Grants(vec![Grant { connection: "ehr".into(), methods: vec!["GET".into()], paths: vec!["/Patient/*".into()] }]),
        config: Default::default(),
        limits: Limits { memory_bytes: 32 << 20, wall_time: Duration::from_secs(10), output_bytes: 1 << 20, stdio_bytes: 4096 },
    };
    let adapter = runtime.load_file(&ehrgate_testkit::guest("ehrgate-guest-hostile"), settings).await.expect("load guest");

    for (what, reason) in [("http-ungranted", "billing"), ("http-operation", "$export")] {
        let err = adapter.map_hl7(&msg(what)).await.unwrap_err();
        match err.adapter_error() {
            Some(AdapterError::Transient(m)) => assert!(m.contains("denied") && m.contains(reason), "{what}: {m}"),
            other => panic!("{what}: expected denied, got {other:?}"),
        }
    }
    let out = adapter.map_hl7(&msg("http-granted")).await.expect("granted call");
    assert_eq!(out.warnings, vec!["status 404".to_string()], "the sandbox answered (no Patient/123)");

    let events = audit.0.lock().unwrap().clone();
    let outcomes: Vec<(&str, &str, &str)> = events.iter().map(|e| (e.connection.as_str(), e.path.as_str(), e.outcome.as_str())).collect();
    assert_eq!(outcomes.len(), 3, "{outcomes:?}");
    assert!(outcomes[0].0 == "billing" && outcomes[0].2.starts_with("denied"), "{outcomes:?}");
    assert!(outcomes[1].1 == "/Patient/$export" && outcomes[1].2.starts_with("denied"), "{outcomes:?}");
    assert_eq!(outcomes[2], ("ehr", "/Patient/123", "allowed"));
    assert!(events.iter().all(|e| e.actor == "adapter:hostile@0.1.0" && e.action == "http.send"));
    let s = sb.stats();
    assert_eq!(s.requests, 1, "only the granted request reached the EHR: {:?}", s.by_route);
    assert_eq!(s.count("GET", "/Patient/123"), 1);
}
