//! # ehrgate-httpd
//!
//! Serving an axum router the way every ehrgate HTTP server must: at most
//! `max_connections` at once (further ones are closed at once), request headers
//! within `header_timeout` of the connection's first byte (or of the previous
//! request), and each whole request — body included — within `request_timeout`.
//! A client that opens connections and sends nothing, or sends a byte now and
//! then, holds a slot for seconds, not forever, and cannot exhaust the process's
//! file descriptors.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt;

#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub request_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits { max_connections: 256, header_timeout: Duration::from_secs(10), request_timeout: Duration::from_secs(60) }
    }
}

async fn within(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(r) => r,
        Err(_) => (StatusCode::REQUEST_TIMEOUT, format!("the request did not complete within {} s", limit.as_secs())).into_response(),
    }
}

/// The credential of `Authorization: Bearer <credential>`, if any. Shared by the
/// admin server (its token) and the agent door (client keys).
pub fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).map(str::trim)
}

/// 401 with `WWW-Authenticate: Bearer` and `{"error": "unauthorized", "message": ...}`.
pub fn unauthorized(message: &str) -> Response {
    (StatusCode::UNAUTHORIZED, [("www-authenticate", "Bearer")], axum::Json(serde_json::json!({"error": "unauthorized", "message": message}))).into_response()
}

/// Serve `app` on `listener` until `shutdown` changes; requests carry
/// `ConnectInfo<SocketAddr>`. In-flight requests finish on shutdown.
pub async fn serve(listener: TcpListener, app: Router, limits: HttpLimits, name: &'static str, mut shutdown: watch::Receiver<bool>) {
    let app = app.layer(middleware::from_fn_with_state(limits.request_timeout, within));
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, say: wait a little rather than spin.
                    tracing::warn!(server = name, "accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(server = name, %peer, "connection limit of {} reached; closing the new connection", limits.max_connections);
            continue;
        };
        let svc = app.clone().map_request(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
            req
        });
        let mut stop = shutdown.clone();
        conns.spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc));
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(server = name, %peer, "connection ended: {e}");
                    }
                }
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
            drop(slot);
        });
        while conns.try_join_next().is_some() {}
    }
    drop(listener);
    while conns.join_next().await.is_some() {}
}
