//! Tokens against the sandbox's token endpoint: SMART Backend Services assertions
//! (RS384 and ES384, verified against the registered JWKS), client_credentials with
//! basic auth, caching, refresh on 401 exactly once, scope intersection, and the
//! EHR refusing (403) what a token narrowed to the declared scopes does not cover.

mod common;

use common::*;
use ehrgate_connect::*;
use ehrgate_runtime::HttpError;
use ehrgate_sandbox::{ClientRegistration, SandboxOptions, serve};
use serde_json::json;

fn scopes(s: &[&str]) -> Vec<String> {
    s.iter().map(|x| x.to_string()).collect()
}

fn smart(name: &str, base: &str, client_id: &str, key_file: &std::path::Path, alg: SigningAlg, kid: &str) -> ConnectionConfig {
    let mut c = plain(name, base);
    c.auth = AuthConfig::SmartBackend {
        client_id: client_id.into(),
        private_key: SecretRef::new(format!("file:{}", key_file.display())),
        alg,
        kid: kid.into(),
        token_url: None,
        scopes: scopes(&["system/*.read", "system/Task.c"]),
    };
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assertions_verify_against_the_registered_jwks_with_rs384_and_es384() {
    let rsa = rsa_key("rsa-1");
    let ec = ec_key("ec-1");
    let stranger = rsa_key("rsa-1"); // same kid, key not registered
    let sb = serve(SandboxOptions { patients: 2, ..Default::default() }).await.unwrap();
    sb.register_client(ClientRegistration {
        client_id: "gateway".into(),
        jwks: Some(json!({"keys": [rsa.jwk, ec.jwk]})),
        client_secret: None,
        scopes: Some(scopes(&["system/Patient.read", "system/Observation.read"])),
    })
    .unwrap();
    let dir = TempDir::new("jwks");
    let rsa_pem = dir.write("rsa.pem", &rsa.pem);
    let ec_pem = dir.write("ec.pem", &ec.pem);
    let stranger_pem = dir.write("stranger.pem", &stranger.pem);
    let declared = scopes(&["system/Patient.read", "system/Task.write"]);
    for (alg, file, kid) in [(SigningAlg::RS384, &rsa_pem, "rsa-1"), (SigningAlg::ES384, &ec_pem, "ec-1")] {
        let conn = Connection::new(&smart("ehr", &sb.base_url(), "gateway", file, alg, kid)).unwrap();
        assert_eq!(conn.requested_scopes(&declared), scopes(&["system/Patient.read"]), "minimum necessary");
        let r = conn.send(get("/Patient/patient-0000"), &declared).await.unwrap();
        assert_eq!(r.status, 200, "{alg:?}: {}", String::from_utf8_lossy(&r.body));
        assert_eq!(conn.stats().token_requests, 1);
    }
    assert_eq!(sb.stats().tokens_issued, 2, "one token per algorithm");
    // A key the EHR does not know, even with a known kid, gets no token; nor does an unknown kid.
    for (file, kid) in [(&stranger_pem, "rsa-1"), (&rsa_pem, "rsa-9")] {
        let conn = Connection::new(&smart("ehr", &sb.base_url(), "gateway", file, SigningAlg::RS384, kid)).unwrap();
        match conn.send(get("/Patient/patient-0000"), &declared).await {
            Err(HttpError::Unavailable(m)) => assert!(m.contains("401") && m.contains("invalid_client"), "{m}"),
            other => panic!("expected the token endpoint to refuse, got {other:?}"),
        }
    }
    assert_eq!(sb.stats().tokens_issued, 2);
    assert_eq!(sb.stats().count("GET", "/Patient/patient-0000"), 2, "no request went out without a token");
    // Nothing the caller declares is allowed: denied before any request.
    let conn = Connection::new(&smart("ehr", &sb.base_url(), "gateway", &ec_pem, SigningAlg::ES384, "ec-1")).unwrap();
    assert!(matches!(conn.send(get("/Patient/patient-0000"), &scopes(&["user/Patient.read"])).await, Err(HttpError::Denied(_))));
    assert_eq!(sb.stats().token_requests, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_endpoint_refuses_replayed_late_and_misaddressed_assertions() {
    let rsa = rsa_key("k1");
    let sb = serve(SandboxOptions { patients: 1, ..Default::default() }).await.unwrap();
    sb.register_client(ClientRegistration { client_id: "c1".into(), jwks: Some(json!({"keys": [rsa.jwk]})), client_secret: None, scopes: None })
        .unwrap();
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(rsa.pem.as_bytes()).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let sign = |aud: &str, exp: u64, jti: &str| {
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS384);
        h.kid = Some("k1".into());
        jsonwebtoken::encode(&h, &json!({"iss": "c1", "sub": "c1", "aud": aud, "exp": exp, "jti": jti}), &key).unwrap()
    };
    let http = reqwest::Client::new();
    let token = |jwt: String| {
        let http = http.clone();
        let url = sb.token_url();
        async move {
            let r = http
                .post(url)
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("scope", "system/*.read"),
                    ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
                    ("client_assertion", jwt.as_str()),
                ])
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let good = sign(&sb.token_url(), now + 120, "once");
    assert_eq!(token(good.clone()).await.0, 200);
    let (status, body) = token(good).await;
    assert_eq!(status, 401, "replay: {body}");
    assert!(body.contains("replay"), "{body}");
    let (status, body) = token(sign("http://elsewhere/token", now + 120, "j2")).await;
    assert_eq!(status, 401, "wrong aud: {body}");
    let (status, body) = token(sign(&sb.token_url(), now + 3600, "j3")).await;
    assert!(status == 401 && body.contains("five minutes"), "exp too far: {body}");
    let (status, _) = token(sign(&sb.token_url(), now - 60, "j4")).await;
    assert_eq!(status, 401, "expired assertion");
    assert_eq!(sb.stats().tokens_issued, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_credentials_token_is_cached_and_an_expired_one_refreshed_exactly_once() {
    let sb = serve(SandboxOptions { patients: 2, ..Default::default() }).await.unwrap();
    sb.register_client(ClientRegistration { client_id: "oracle-like".into(), jwks: None, client_secret: Some("s3cret:value+%/".into()), scopes: None })
        .unwrap();
    let dir = TempDir::new("basic");
    // Characters RFC 6749 2.3.1 says are form-urlencoded inside Basic credentials.
    let secret = dir.write("secret", "s3cret:value+%/\n");
    let mut cfg = plain("ehr", &sb.base_url());
    cfg.auth = AuthConfig::ClientCredentials {
        client_id: "oracle-like".into(),
        client_secret: SecretRef::new(format!("file:{}", secret.display())),
        token_url: sb.token_url(),
        scopes: scopes(&["system/*.read"]),
    };
    assert!(!format!("{cfg:?}").contains("s3cret"), "config Debug shows no secret");
    let conn = Connection::new(&cfg).unwrap();
    let declared = scopes(&["system/Patient.read"]);
    for _ in 0..3 {
        assert_eq!(conn.send(get("/Patient/patient-0000"), &declared).await.unwrap().status, 200);
    }
    assert_eq!(sb.stats().token_requests, 1, "one token for three requests");
    // The EHR expires the token early: one 401, one refresh, one retry.
    sb.expire_tokens();
    assert_eq!(conn.send(get("/Patient/patient-0000"), &declared).await.unwrap().status, 200);
    assert_eq!(sb.stats().token_requests, 2, "refreshed exactly once");
    assert_eq!(sb.stats().count("GET", "/Patient/patient-0000"), 5);
    // A token the EHR refuses every time: still only one refresh and one retry, then the 401.
    let r = conn.send(with_fault(get("/Patient/patient-0001"), "expire-token"), &declared).await.unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(sb.stats().token_requests, 3);
    assert_eq!(sb.stats().count("GET", "/Patient/patient-0001"), 2);
    assert_eq!(conn.stats().token_requests, 3);
    println!("client_credentials: 3 requests on 1 token; expired -> 1 refresh; always-401 -> 1 refresh + 1 retry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_refreshed_before_they_expire_and_a_burst_shares_one() {
    // Tokens live 2 s here: refreshed a fifth of the lifetime early.
    let sb = serve(SandboxOptions { patients: 1, token_ttl_secs: 2, ..Default::default() }).await.unwrap();
    // A file secret: setting an environment variable while other tests run is unsound.
    let dir = TempDir::new("early");
    let secret = dir.write("secret", "sandbox-demo-secret");
    let mut cfg = plain("ehr", &sb.base_url());
    cfg.auth = AuthConfig::ClientCredentials {
        client_id: "ehrgate-demo".into(),
        client_secret: SecretRef::new(format!("file:{}", secret.display())),
        token_url: sb.token_url(),
        scopes: scopes(&["system/*.read"]),
    };
    let conn = std::sync::Arc::new(Connection::new(&cfg).unwrap());
    let declared = scopes(&["system/*.read"]);
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let (c, d) = (conn.clone(), declared.clone());
            tokio::spawn(async move { c.send(get("/Patient/patient-0000"), &d).await })
        })
        .collect();
    for c in calls {
        assert_eq!(c.await.unwrap().unwrap().status, 200);
    }
    assert_eq!(sb.stats().token_requests, 1, "eight concurrent calls share one token");
    // Wait until the cached token is inside its refresh margin (1.6 s of 2 s).
    tokio::time::sleep(std::time::Duration::from_millis(1700)).await;
    assert_eq!(conn.send(get("/Patient/patient-0000"), &declared).await.unwrap().status, 200);
    let s = sb.stats();
    assert_eq!(s.token_requests, 2, "refreshed before expiry");
    assert_eq!(s.count("GET", "/Patient/patient-0000"), 9, "and no 401 on the way");
}

#[test]
fn connection_config_reads_from_toml() {
    let text = r#"
        [[connections]]
        name = "epic"
        base_url = "https://fhir.example.org/api/FHIR/R4"
        auth = { kind = "smart_backend", client_id = "abc", private_key = "env:EPIC_KEY", alg = "ES384", kid = "k1", scopes = ["system/*.read"] }
        rate = { per_second = 5, burst = 10 }
        retry = { max_attempts = 3, base_ms = 100, cap_ms = 2000 }

        [[connections]]
        name = "oracle"
        base_url = "https://fhir-ehr.example.com/r4/tenant-1"
        auth = { kind = "client_credentials", client_id = "xyz", client_secret = "file:/run/secrets/oracle", token_url = "https://auth.example.com/token" }
    "#;
    #[derive(serde::Deserialize)]
    struct File {
        connections: Vec<ConnectionConfig>,
    }
    let f: File = toml::from_str(text).unwrap();
    assert_eq!(f.connections.len(), 2);
    assert!(matches!(&f.connections[0].auth, AuthConfig::SmartBackend { alg: SigningAlg::ES384, token_url: None, .. }));
    assert_eq!(f.connections[0].rate.burst, 10);
    assert_eq!(f.connections[1].max_concurrency, 8);
    assert_eq!(f.connections[1].breaker.failure_threshold, 5);
    // A literal secret where a reference belongs is refused without echoing it.
    let mut bad = f.connections[1].clone();
    bad.auth = AuthConfig::ClientCredentials { client_id: "x".into(), client_secret: SecretRef::new("hunter2"), token_url: "http://x/token".into(), scopes: vec![] };
    let err = Connection::new(&bad).unwrap_err().to_string();
    assert!(err.contains("env:NAME") && !err.contains("hunter2"), "{err}");
    let unknown = toml::from_str::<File>("[[connections]]\nname='a'\nbase_url='http://x'\nrate_limit=3\n");
    assert!(unknown.is_err(), "unknown keys are refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_narrowed_to_the_declared_scopes_gets_403_for_anything_else() {
    let ec = ec_key("ec-1");
    let sb = serve(SandboxOptions { patients: 2, ..Default::default() }).await.unwrap();
    // The EHR would grant much more; the gateway asks only for what the adapter declares.
    sb.register_client(ClientRegistration { client_id: "gateway".into(), jwks: Some(json!({"keys": [ec.jwk]})), client_secret: None, scopes: None }).unwrap();
    let dir = TempDir::new("narrow");
    let pem = dir.write("ec.pem", &ec.pem);
    let conn = Connection::new(&smart("ehr", &sb.base_url(), "gateway", &pem, SigningAlg::ES384, "ec-1")).unwrap();
    let declared = scopes(&["system/Patient.read"]);
    assert_eq!(conn.send(get("/Patient/patient-0000"), &declared).await.unwrap().status, 200);
    assert_eq!(conn.send(get("/Patient?_id=patient-0000"), &declared).await.unwrap().status, 200, "search is part of read");
    let refused = conn.send(get("/Observation?patient=Patient/patient-0000"), &declared).await.unwrap();
    assert_eq!(refused.status, 403, "{}", String::from_utf8_lossy(&refused.body));
    assert!(String::from_utf8_lossy(&refused.body).contains("Observation"), "the refusal names the type");
    // The type spelled with a percent escape is the same type to the EHR's router.
    let sneaky = conn.send(get("/%4Fbservation?patient=Patient/patient-0000"), &declared).await.unwrap();
    assert_eq!(sneaky.status, 403, "{}", String::from_utf8_lossy(&sneaky.body));
    let mut task = get("/Task");
    task.method = "POST".into();
    task.body = Some(json!({"resourceType": "Task", "status": "requested", "intent": "order"}).to_string().into_bytes());
    task.headers.push(("content-type".into(), "application/fhir+json".into()));
    assert_eq!(conn.send(task.clone(), &declared).await.unwrap().status, 403, "no write without a write scope");
    assert_eq!(sb.stats().scope_refusals, 3);
    // Declaring the scopes makes the same requests pass (a second, wider token).
    let wider = scopes(&["system/Patient.read", "system/Observation.read", "system/Task.c"]);
    assert_eq!(conn.send(get("/Observation?patient=Patient/patient-0000"), &wider).await.unwrap().status, 200);
    assert_eq!(conn.send(task, &wider).await.unwrap().status, 201);
    assert_eq!(sb.stats().scope_refusals, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_secret_file_is_read_again_and_tokens_of_the_old_secret_are_dropped() {
    let sb = serve(SandboxOptions { patients: 2, ..Default::default() }).await.unwrap();
    let register = |secret: &str| {
        sb.register_client(ClientRegistration { client_id: "rotating".into(), jwks: None, client_secret: Some(secret.into()), scopes: None }).unwrap()
    };
    register("first-secret");
    let dir = TempDir::new("rotate");
    let file = dir.write("secret", "first-secret\n");
    let mut cfg = plain("ehr", &sb.base_url());
    cfg.auth = AuthConfig::ClientCredentials {
        client_id: "rotating".into(),
        client_secret: SecretRef::new(format!("file:{}", file.display())),
        token_url: sb.token_url(),
        scopes: scopes(&["system/*.read"]),
    };
    let conn = Connection::new(&cfg).unwrap();
    let declared = scopes(&["system/Patient.read"]);
    assert_eq!(conn.send(get("/Patient/patient-0000"), &declared).await.unwrap().status, 200);
    assert_eq!(conn.stats().token_requests, 1);
    // The EHR rotates the client's secret; the operator writes the new one into the file.
    register("second-secret-rotated");
    dir.write("secret", "second-secret-rotated\n");
    assert_eq!(conn.send(get("/Patient/patient-0000"), &declared).await.unwrap().status, 200);
    let s = conn.stats();
    assert_eq!((s.secret_reloads, s.token_requests), (1, 2), "the file is read again and the cached token (old secret) dropped");
    assert_eq!(sb.stats().tokens_issued, 2, "the new secret got a token");
    // Unchanged file: the new token is reused.
    assert_eq!(conn.send(get("/Patient/patient-0001"), &declared).await.unwrap().status, 200);
    assert_eq!((conn.stats().secret_reloads, conn.stats().token_requests), (1, 2));
    // A file that vanished (mid-rotation) leaves the secret in use.
    std::fs::remove_file(&file).unwrap();
    assert_eq!(conn.send(get("/Patient/patient-0000"), &declared).await.unwrap().status, 200);
    assert_eq!(conn.stats().secret_reloads, 1);
}
