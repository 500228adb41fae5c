//! The calls the bulk orchestrator makes through a connection: kick-off by path,
//! polling and downloads by the absolute URLs the EHR returns, token attached only
//! on the connection's own origin.

mod common;

use common::*;
use ehrgate_connect::*;
use ehrgate_runtime::HttpError;
use ehrgate_sandbox::{SandboxOptions, serve};

fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kick_off_poll_and_stream_a_group_export() {
    let sb = serve(SandboxOptions { patients: 4, export_retry_after_secs: 0, ..Default::default() }).await.unwrap();
    let mut cfg = plain("ehr", &sb.base_url());
    cfg.auth = AuthConfig::ClientCredentials {
        client_id: "ehrgate-demo".into(),
        client_secret: SecretRef::new("env:EHRGATE_TEST_BULK_SECRET"),
        token_url: sb.token_url(),
        scopes: vec!["system/*.read".into()],
    };
    // SAFETY: set before any other thread of this test reads the environment.
    unsafe { std::env::set_var("EHRGATE_TEST_BULK_SECRET", "sandbox-demo-secret") };
    let conn = Connection::new(&cfg).unwrap();
    let scopes = vec!["system/*.read".to_string()];
    let mut kick = get("/Group/all/$export?_type=Patient,Observation");
    kick.headers.push(("prefer".into(), "respond-async".into()));
    let r = conn.send(kick, &scopes).await.unwrap();
    assert_eq!(r.status, 202);
    let status_url = header(&r.headers, "content-location").unwrap().to_string();
    let manifest = loop {
        let r = conn.send_url("GET", &status_url, &[], &scopes).await.unwrap();
        match r.status {
            202 => assert!(header(&r.headers, "x-progress").is_some()),
            200 => break serde_json::from_slice::<serde_json::Value>(&r.body).unwrap(),
            s => panic!("{s}"),
        }
    };
    let mut lines = 0u64;
    let mut expected = 0u64;
    for o in manifest["output"].as_array().unwrap() {
        expected += o["count"].as_u64().unwrap();
        let mut d = conn.download(o["url"].as_str().unwrap(), &scopes, true).await.unwrap();
        assert_eq!(d.status, 200);
        let mut buf = Vec::new();
        while let Some(chunk) = d.chunk().await.unwrap() {
            buf.extend_from_slice(&chunk);
        }
        lines += buf.iter().filter(|b| **b == b'\n').count() as u64;
    }
    assert_eq!(lines, expected);
    assert_eq!(sb.stats().token_requests, 1);
    // The token never goes to another origin.
    let elsewhere = conn.send_url("GET", "http://127.0.0.1:9/Patient", &[], &scopes).await;
    assert!(matches!(elsewhere, Err(HttpError::Denied(_))), "{elsewhere:?}");
    assert!(matches!(conn.download("http://127.0.0.1:9/x.ndjson", &scopes, true).await, Err(HttpError::Denied(_))));
}
