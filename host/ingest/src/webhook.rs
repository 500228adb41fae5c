//! Webhooks / CDC: `POST /v1/events/{source}`.
//!
//! Each source has a shared secret. A request carries
//! `X-Ehrgate-Timestamp: <unix seconds>` and
//! `X-Ehrgate-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`
//! (and optionally `X-Ehrgate-Event-Id`). A wrong signature, or a timestamp outside
//! the source's window (a replay of an old request), gets 401 and nothing is
//! written; so does the same signed request sent again within the window (409). A
//! good one is made durable (write-ahead log) before the answer: 202 when
//! the source's adapter mapped it (handle-event), 422 when the adapter rejected it
//! (it is in quarantine), 503 when it could not be stored.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::flow::{Flow, Outcome};
use crate::inbound::{Inbound, InboundKind};

pub struct WebhookSource {
    pub name: String,
    /// The resolved secret (resolve references before building this; never logged).
    pub secret: Vec<u8>,
    pub adapter: String,
    /// Requests whose timestamp is further than this from now are refused.
    pub window: Duration,
    /// Request headers handed to the adapter with the body (names, or prefixes
    /// ending in `*`, case-insensitive): an interface engine's message metadata
    /// (Mirth's X-Mirth-*, Rhapsody's X-Rhapsody-*). When any is set, the adapter
    /// gets `{"headers": [[name, value], ...], "body": "<body>"}`, and so does bronze.
    pub forward_headers: Vec<String>,
}

impl std::fmt::Debug for WebhookSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSource").field("name", &self.name).field("adapter", &self.adapter).field("secret", &"<redacted>").finish()
    }
}

#[derive(Debug)]
pub struct WebhookConfig {
    pub bind: SocketAddr,
    pub sources: Vec<WebhookSource>,
    pub max_body_bytes: usize,
}

struct Shared {
    sources: HashMap<String, WebhookSource>,
    flow: Flow,
    /// Signatures accepted within their window, per source: a second delivery of
    /// the same signed request is a replay.
    seen: Mutex<HashMap<(String, String), i64>>,
}

impl Shared {
    /// Record `signature` as used; false if it already was (within its window).
    fn first_use(&self, source: &WebhookSource, signature: &str, now: i64) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let window = source.window.as_secs() as i64;
        if seen.len() > 4096 {
            seen.retain(|_, ts| now - *ts <= window * 2);
        }
        seen.insert((source.name.clone(), signature.to_string()), now).is_none()
    }
}

/// The signature a sender puts in `X-Ehrgate-Signature` (for senders and tests).
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn verify(source: &WebhookSource, headers: &HeaderMap, body: &[u8], now_secs: i64) -> Result<(), &'static str> {
    let ts = headers.get("x-ehrgate-timestamp").and_then(|v| v.to_str().ok()).ok_or("missing X-Ehrgate-Timestamp")?;
    let ts: i64 = ts.trim().parse().map_err(|_| "X-Ehrgate-Timestamp is not unix seconds")?;
    let sig = headers.get("x-ehrgate-signature").and_then(|v| v.to_str().ok()).ok_or("missing X-Ehrgate-Signature")?;
    let sig = sig.trim().strip_prefix("sha256=").ok_or("X-Ehrgate-Signature must be sha256=<hex>")?;
    let sig = hex::decode(sig).map_err(|_| "X-Ehrgate-Signature is not hex")?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&source.secret).expect("HMAC takes any key length");
    mac.update(ts.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    // Constant-time comparison.
    mac.verify_slice(&sig).map_err(|_| "signature does not match")?;
    if (now_secs - ts).unsigned_abs() > source.window.as_secs() {
        return Err("timestamp outside the replay window");
    }
    Ok(())
}

fn forwarded(patterns: &[String], name: &str) -> bool {
    patterns.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => name.len() >= prefix.len() && name[..prefix.len()].eq_ignore_ascii_case(prefix),
        None => name.eq_ignore_ascii_case(p),
    })
}

/// The body with the forwarded headers, as the SDK's envelope reads it.
fn with_headers(src: &WebhookSource, headers: &HeaderMap, body: &[u8]) -> Vec<u8> {
    let kept: Vec<(String, String)> = headers
        .iter()
        .filter(|(name, _)| !name.as_str().starts_with("x-ehrgate-") && forwarded(&src.forward_headers, name.as_str()))
        .filter_map(|(name, value)| Some((name.as_str().to_string(), value.to_str().ok()?.to_string())))
        .collect();
    serde_json::json!({"headers": kept, "body": String::from_utf8_lossy(body)}).to_string().into_bytes()
}

fn json(status: StatusCode, body: serde_json::Value) -> Response {
    (status, [("content-type", "application/json")], body.to_string()).into_response()
}

async fn event(State(shared): State<Arc<Shared>>, Path(source): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(src) = shared.sources.get(&source) else {
        return json(StatusCode::NOT_FOUND, serde_json::json!({"error": format!("no webhook source named `{source}`")}));
    };
    let now = ehrgate_lake::now_micros() / 1_000_000;
    if let Err(why) = verify(src, &headers, &body, now) {
        tracing::warn!(%source, "webhook refused: {why}");
        return json(StatusCode::UNAUTHORIZED, serde_json::json!({"error": why}));
    }
    let signature = headers.get("x-ehrgate-signature").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if !shared.first_use(src, signature, now) {
        tracing::warn!(%source, "webhook refused: the same signed request was already received");
        return json(StatusCode::CONFLICT, serde_json::json!({"error": "this signed request was already received (replay)"}));
    }
    let event_id = headers.get("x-ehrgate-event-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let raw = if src.forward_headers.is_empty() { body.to_vec() } else { with_headers(src, &headers, &body) };
    let inbound = Inbound {
        kind: InboundKind::Event { event_id },
        source: source.clone(),
        adapter: src.adapter.clone(),
        received_at: ehrgate_lake::now_micros(),
        raw,
    };
    let outcome = shared.flow.submit(inbound).await.await.unwrap_or_else(|_| Outcome::Failed("the gateway stopped".into()));
    match outcome {
        Outcome::Accepted => json(StatusCode::ACCEPTED, serde_json::json!({"status": "accepted"})),
        Outcome::Rejected { kind, message, location } => json(
            StatusCode::UNPROCESSABLE_ENTITY,
            serde_json::json!({"status": "quarantined", "kind": kind, "reason": message, "location": location}),
        ),
        Outcome::Failed(why) => json(StatusCode::SERVICE_UNAVAILABLE, serde_json::json!({"status": "not stored", "reason": why})),
    }
}

/// Bind and serve until `shutdown` turns true.
pub async fn bind(cfg: WebhookConfig, flow: Flow, mut shutdown: watch::Receiver<bool>) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(cfg.bind).await?;
    let addr = listener.local_addr()?;
    let shared = Arc::new(Shared { sources: cfg.sources.into_iter().map(|s| (s.name.clone(), s)).collect(), flow, seen: Mutex::new(HashMap::new()) });
    let app = Router::new()
        .route("/v1/events/{source}", post(event))
        .route("/healthz", get(|| async { "ok" }))
        .layer(DefaultBodyLimit::max(cfg.max_body_bytes))
        .with_state(shared);
    let task = tokio::spawn(async move {
        let stop = async move {
            let _ = shutdown.changed().await;
        };
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stop).await {
            tracing::error!("webhook server failed: {e}");
        }
    });
    Ok((addr, task))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src() -> WebhookSource {
        WebhookSource { name: "cdc".into(), secret: b"s3cret".to_vec(), adapter: "reference".into(), window: Duration::from_secs(300), forward_headers: vec![] }
    }

    #[test]
    fn forwarded_headers_wrap_the_body_for_the_adapter() {
        let mut s = src();
        s.forward_headers = vec!["X-Mirth-*".into(), "x-request-id".into()];
        let mut h = HeaderMap::new();
        h.insert("x-mirth-channel-id", "ch-1".parse().unwrap());
        h.insert("x-request-id", "r-9".parse().unwrap());
        h.insert("authorization", "Bearer secret".parse().unwrap());
        h.insert("x-ehrgate-signature", "sha256=00".parse().unwrap());
        let v: serde_json::Value = serde_json::from_slice(&with_headers(&s, &h, b"MSH|x")).unwrap();
        assert_eq!(v["body"], "MSH|x");
        let mut names: Vec<&str> = v["headers"].as_array().unwrap().iter().map(|p| p[0].as_str().unwrap()).collect();
        names.sort();
        assert_eq!(names, vec!["x-mirth-channel-id", "x-request-id"], "only the listed headers, never credentials or our own");
    }

    fn headers(ts: i64, sig: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-ehrgate-timestamp", ts.to_string().parse().unwrap());
        h.insert("x-ehrgate-signature", sig.parse().unwrap());
        h
    }

    #[test]
    fn signatures_and_the_replay_window() {
        let body = br#"{"resourceType":"Patient","id":"p1"}"#;
        let now = 1_800_000_000;
        assert_eq!(verify(&src(), &headers(now, &sign(b"s3cret", now, body)), body, now), Ok(()));
        assert_eq!(verify(&src(), &headers(now, &sign(b"other", now, body)), body, now), Err("signature does not match"));
        assert_eq!(verify(&src(), &headers(now, &sign(b"s3cret", now, body)), b"{}", now), Err("signature does not match"));
        // The signature covers the timestamp: moving it invalidates the signature.
        assert_eq!(verify(&src(), &headers(now + 1, &sign(b"s3cret", now, body)), body, now), Err("signature does not match"));
        let old = now - 301;
        assert_eq!(verify(&src(), &headers(old, &sign(b"s3cret", old, body)), body, now), Err("timestamp outside the replay window"));
        assert_eq!(verify(&src(), &HeaderMap::new(), body, now), Err("missing X-Ehrgate-Timestamp"));
        assert!(!format!("{:?}", src()).contains("s3cret"));
    }
}
