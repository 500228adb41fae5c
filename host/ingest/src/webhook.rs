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
    /// Connection cap, header and request timeouts.
    pub limits: ehrgate_httpd::HttpLimits,
}

struct Shared {
    sources: HashMap<String, WebhookSource>,
    flow: Flow,
    replays: Replays,
    metrics: Arc<ehrgate_metrics::ListenerMetrics>,
}

/// Signed requests seen within their window, keyed by source and the decoded
/// signature bytes (so a change of hex case is the same request). A request is
/// recorded as seen only once it is durable: until then it is "in flight", and
/// if storing it fails it is forgotten, so the sender's retry is taken.
#[derive(Default)]
pub(crate) struct Replays(Mutex<HashMap<(String, Vec<u8>), (i64, bool)>>);

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Begin {
    /// Not seen: go on, then call [`Replays::finish`].
    New,
    /// The same request is being stored right now.
    InFlight,
    /// Already stored: a replay.
    Seen,
}

impl Replays {
    pub(crate) fn begin(&self, source: &str, signature: &[u8], now: i64, window: Duration) -> Begin {
        let mut seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let window = window.as_secs() as i64;
        if seen.len() > 4096 {
            seen.retain(|_, (ts, _)| now.saturating_sub(*ts) <= window.saturating_mul(2));
        }
        match seen.get(&(source.to_string(), signature.to_vec())) {
            Some((_, true)) => Begin::Seen,
            Some((_, false)) => Begin::InFlight,
            None => {
                seen.insert((source.to_string(), signature.to_vec()), (now, false));
                Begin::New
            }
        }
    }

    /// The request is durable (`stored`), or it is not and is forgotten.
    pub(crate) fn finish(&self, source: &str, signature: &[u8], stored: bool) {
        let mut seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let key = (source.to_string(), signature.to_vec());
        if stored {
            if let Some(e) = seen.get_mut(&key) {
                e.1 = true;
            }
        } else {
            seen.remove(&key);
        }
    }
}

pub use ehrgate_wire::signature::sign;

/// Check the signature and the timestamp; returns the decoded signature bytes.
fn verify(source: &WebhookSource, headers: &HeaderMap, body: &[u8], now_secs: i64) -> Result<Vec<u8>, &'static str> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    ehrgate_wire::signature::verify(&source.secret, header("x-ehrgate-timestamp"), header("x-ehrgate-signature"), body, now_secs, source.window.as_secs())
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
    let signature = match verify(src, &headers, &body, now) {
        Ok(s) => s,
        Err(why) => {
            tracing::warn!(%source, "webhook refused: {why}");
            return json(StatusCode::UNAUTHORIZED, serde_json::json!({"error": why}));
        }
    };
    match shared.replays.begin(&src.name, &signature, now, src.window) {
        Begin::New => {}
        Begin::Seen => {
            tracing::warn!(%source, "webhook refused: the same signed request was already received");
            return json(StatusCode::CONFLICT, serde_json::json!({"error": "this signed request was already received (replay)"}));
        }
        Begin::InFlight => {
            return (StatusCode::SERVICE_UNAVAILABLE, [("retry-after", "1")], "the same signed request is being stored; retry shortly").into_response();
        }
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
    let since = std::time::Instant::now();
    let metrics = &shared.metrics;
    metrics.unit_received();
    let outcome = shared.flow.submit(inbound).await.await.unwrap_or_else(|_| Outcome::Failed("the gateway stopped".into()));
    metrics.answered(match &outcome {
        Outcome::Accepted => "202",
        Outcome::Rejected { .. } => "422",
        Outcome::Failed(_) => "503",
    });
    metrics.answer_latency.0.observe(since.elapsed());
    // Seen only once durable: a request that could not be stored may be retried.
    shared.replays.finish(&src.name, &signature, !matches!(outcome, Outcome::Failed(_)));
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
pub async fn bind(cfg: WebhookConfig, flow: Flow, shutdown: watch::Receiver<bool>) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(cfg.bind).await?;
    start(listener, cfg, flow, shutdown)
}

/// Serve on a listener bound beforehand.
pub fn start(listener: tokio::net::TcpListener, cfg: WebhookConfig, flow: Flow, shutdown: watch::Receiver<bool>) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let addr = listener.local_addr()?;
    let adapters: std::collections::BTreeSet<&str> = cfg.sources.iter().map(|s| s.adapter.as_str()).collect();
    let adapter = adapters.into_iter().collect::<Vec<_>>().join(", ");
    let metrics = ehrgate_metrics::listener("webhooks");
    metrics.describe(ehrgate_metrics::ListenerInfo { kind: "webhooks".into(), bind: addr.to_string(), adapter });
    let shared = Arc::new(Shared {
        metrics, sources: cfg.sources.into_iter().map(|s| (s.name.clone(), s)).collect(), flow, replays: Replays::default() });
    let app = Router::new()
        .route("/v1/events/{source}", post(event))
        .route("/healthz", get(|| async { "ok" }))
        .layer(DefaultBodyLimit::max(cfg.max_body_bytes))
        .with_state(shared);
    let limits = cfg.limits;
    let task = tokio::spawn(ehrgate_httpd::serve(listener, app, limits, "webhooks", shutdown));
    Ok((addr, task))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_a_replay_only_once_stored_and_hex_case_does_not_matter() {
        let r = Replays::default();
        let w = Duration::from_secs(300);
        let sig = hex::decode("ab12").unwrap();
        assert_eq!(r.begin("cdc", &sig, 100, w), Begin::New);
        assert_eq!(r.begin("cdc", &hex::decode("AB12").unwrap(), 100, w), Begin::InFlight, "the decoded bytes are the key");
        // Storing failed (503): the sender's retry must be taken.
        r.finish("cdc", &sig, false);
        assert_eq!(r.begin("cdc", &sig, 101, w), Begin::New);
        r.finish("cdc", &sig, true);
        assert_eq!(r.begin("cdc", &sig, 102, w), Begin::Seen);
        assert_eq!(r.begin("other", &sig, 102, w), Begin::New, "per source");
    }

    #[test]
    fn absurd_timestamps_are_refused_without_overflow() {
        let s = src();
        for ts in [i64::MIN, i64::MAX, i64::MIN + 1] {
            let mut h = HeaderMap::new();
            h.insert("x-ehrgate-timestamp", ts.to_string().parse().unwrap());
            h.insert("x-ehrgate-signature", sign(&s.secret, ts, b"{}").parse().unwrap());
            assert_eq!(verify(&s, &h, b"{}", 1_700_000_000), Err("timestamp outside the replay window"));
        }
    }

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
        assert!(verify(&src(), &headers(now, &sign(b"s3cret", now, body)), body, now).is_ok());
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
