//! Egress: a name that leads to the gateway's own loopback or to cloud metadata
//! is refused when the connection is made, not when it is configured; what the
//! connection's config names is allowed.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use ehrgate_connect::*;
use ehrgate_runtime::HttpError;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An EHR on `ip` whose SMART discovery names `token_endpoint` (`{port}` is its
/// own port), answering every other request 200 `{}`; counts the requests.
async fn ehr(ip: &str, token_endpoint: &str) -> (String, Arc<AtomicUsize>) {
    let l = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let port = l.local_addr().unwrap().port();
    let token_endpoint = token_endpoint.replace("{port}", &port.to_string());
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            h.fetch_add(1, Ordering::SeqCst);
            let te = token_endpoint.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]);
                let body = if req.contains("smart-configuration") {
                    format!(r#"{{"token_endpoint":"{te}"}}"#)
                } else if req.starts_with("POST") {
                    r#"{"access_token":"t","token_type":"bearer","expires_in":300}"#.to_string()
                } else {
                    "{}".to_string()
                };
                let resp = format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    (format!("http://{ip}:{port}"), hits)
}

fn with_basic_auth(mut c: ConnectionConfig, token_url: &str) -> ConnectionConfig {
    c.auth = AuthConfig::ClientCredentials {
        client_id: "gw".into(),
        client_secret: SecretRef::new("env:EHRGATE_EGRESS_TEST_SECRET"),
        token_url: token_url.into(),
        scopes: vec!["system/*.read".into()],
    };
    c
}

fn smart_discovered(mut c: ConnectionConfig, key: &std::path::Path) -> ConnectionConfig {
    c.auth = AuthConfig::SmartBackend {
        client_id: "gw".into(),
        private_key: SecretRef::new(format!("file:{}", key.display())),
        alg: SigningAlg::RS384,
        kid: "k".into(),
        token_url: None,
        scopes: vec!["system/*.read".into()],
    };
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_discovered_token_endpoint_on_loopback_by_name_or_on_metadata_is_refused() {
    let key = rsa_key("k");
    let dir = TempDir::new("egress");
    let pem = dir.write("k.pem", &key.pem);
    let declared = vec!["system/*.read".to_string()];
    // The EHR is configured as 127.0.0.2. Its discovery document sends the token
    // request to `localhost`, a name that resolves to 127.0.0.1 (DNS pointing a
    // name at the gateway's own loopback), or to the cloud metadata address.
    let (token_base, token_hits) = ehr("127.0.0.1", "unused").await;
    let token_port = token_base.rsplit(':').next().unwrap();
    for (endpoint, kind) in [(format!("http://localhost:{token_port}/token"), "loopback"), ("http://169.254.169.254/latest/api/token".to_string(), "cloud metadata")] {
        let (base, hits) = ehr("127.0.0.2", &endpoint).await;
        let conn = Connection::new(&smart_discovered(plain("ehr", &base), &pem)).unwrap();
        match conn.send(get("/Patient"), &declared).await {
            Err(HttpError::Denied(m)) => assert!(m.contains(kind) && m.contains("connection `ehr`"), "{m}"),
            other => panic!("{endpoint}: expected a refusal, got {other:?}"),
        }
        assert_eq!(hits.load(Ordering::SeqCst), 1, "{endpoint}: only the discovery request was made");
        assert_eq!(conn.stats().breaker, BreakerState::Closed, "a refusal is not held against the EHR");
    }
    assert_eq!(token_hits.load(Ordering::SeqCst), 0, "nothing reached the loopback token endpoint");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_connection_names_is_reached_and_allow_internal_opens_the_rest() {
    let key = rsa_key("k");
    let dir = TempDir::new("egress-open");
    let pem = dir.write("k.pem", &key.pem);
    let declared = vec!["system/*.read".to_string()];
    // The token endpoint: on 127.0.0.1, reached by the name `localhost`.
    let (token_base, token_hits) = ehr("127.0.0.1", "unused").await;
    let token_url = format!("http://localhost:{}/token", token_base.rsplit(':').next().unwrap());
    let (base, _) = ehr("127.0.0.2", &token_url).await;
    // Named in the config (token_url by name): allowed.
    // SAFETY: set before any thread of this test reads the environment.
    unsafe { std::env::set_var("EHRGATE_EGRESS_TEST_SECRET", "s") };
    let conn = Connection::new(&with_basic_auth(plain("ehr", &base), &token_url)).unwrap();
    assert_eq!(conn.send(get("/Patient"), &declared).await.unwrap().status, 200);
    assert_eq!(token_hits.load(Ordering::SeqCst), 1);
    // Discovered, not named: refused; with allow_internal: reached.
    let conn = Connection::new(&smart_discovered(plain("ehr", &base), &pem)).unwrap();
    assert!(matches!(conn.send(get("/Patient"), &declared).await, Err(HttpError::Denied(_))));
    assert_eq!(token_hits.load(Ordering::SeqCst), 1);
    let mut open = smart_discovered(plain("ehr", &base), &pem);
    open.allow_internal = true;
    assert_eq!(Connection::new(&open).unwrap().send(get("/Patient"), &declared).await.unwrap().status, 200);
    assert_eq!(token_hits.load(Ordering::SeqCst), 2, "the token request went to localhost");
}
