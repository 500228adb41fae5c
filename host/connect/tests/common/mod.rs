//! Shared by the connect tests: a sandbox EHR, connection configs, test keys.

#![allow(dead_code)]

use std::path::PathBuf;

use base64::Engine;
use ehrgate_connect::*;
use ehrgate_runtime::HttpRequest;
use ehrgate_sandbox::{SandboxOptions, serve};

pub async fn sandbox_no_auth() -> ehrgate_sandbox::Sandbox {
    serve(SandboxOptions { patients: 3, require_auth: false, ..Default::default() }).await.expect("start sandbox")
}

/// A connection to `base` with no auth, quick retries and a generous rate.
pub fn plain(name: &str, base: &str) -> ConnectionConfig {
    let mut c = ConnectionConfig::new(name, base);
    c.rate = RateConfig { per_second: 1000, burst: 1000 };
    c.retry = RetryConfig { max_attempts: 4, base_ms: 10, cap_ms: 50 };
    c.breaker = BreakerConfig { failure_threshold: 50, open_ms: 1000 };
    c.timeout_ms = 5000;
    c
}

pub fn get(path: &str) -> HttpRequest {
    HttpRequest { connection: "ehr".into(), method: "GET".into(), path: path.into(), headers: vec![], body: None, idempotency_key: None }
}

pub fn with_fault(mut r: HttpRequest, fault: &str) -> HttpRequest {
    r.headers.push((ehrgate_sandbox::FAULT_HEADER.into(), fault.into()));
    r
}

/// A scratch directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("ehrgate-connect-{tag}-{}-{}", std::process::id(), uuid_like()));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn uuid_like() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn b64url(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn pem(der: &[u8]) -> String {
    let b = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
    format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", lines.join("\n"))
}

/// A freshly generated signing key: its PKCS#8 PEM and its public JWK.
pub struct TestKey {
    pub pem: String,
    pub jwk: serde_json::Value,
}

pub fn rsa_key(kid: &str) -> TestKey {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::signature::KeyPair;
    let k = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let der: aws_lc_rs::encoding::Pkcs8V1Der = k.as_der().unwrap();
    let public = k.public_key();
    TestKey {
        pem: pem(der.as_ref()),
        jwk: serde_json::json!({
            "kty": "RSA", "kid": kid, "alg": "RS384", "use": "sig",
            "n": b64url(public.modulus().big_endian_without_leading_zero()),
            "e": b64url(public.exponent().big_endian_without_leading_zero()),
        }),
    }
}

pub fn ec_key(kid: &str) -> TestKey {
    use aws_lc_rs::signature::{ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
    let k = EcdsaKeyPair::generate(&ECDSA_P384_SHA384_FIXED_SIGNING).unwrap();
    let doc = k.to_pkcs8v1().unwrap();
    let point = k.public_key().as_ref().to_vec();
    assert_eq!(point.len(), 97, "uncompressed P-384 point");
    TestKey {
        pem: pem(doc.as_ref()),
        jwk: serde_json::json!({
            "kty": "EC", "crv": "P-384", "kid": kid, "alg": "ES384", "use": "sig",
            "x": b64url(&point[1..49]), "y": b64url(&point[49..97]),
        }),
    }
}
