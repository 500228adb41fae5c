//! # ehrgate-admin
//!
//! The admin HTTP server inside `ehrgate serve` (DESIGN.md §9): one server for
//! operators, bound to loopback unless configured otherwise. Everything but
//! `/healthz`, `/readyz` and `/metrics` needs `Authorization: Bearer <admin token>`;
//! a missing or wrong token is answered 401. Every request to the API, allowed or
//! not, is one audit row (health checks and scrapes are not: they are frequent and
//! reveal no data).
//!
//! | call | what |
//! |---|---|
//! | `GET /healthz` | 200 while the process serves |
//! | `GET /readyz` | 200 when the gateway takes traffic as it should; else 503 and why (replaying the log, the lake not writable, back-pressure holding every listener) |
//! | `GET /metrics` | Prometheus / OpenMetrics text |
//!
//! The adapter lifecycle API (see docs/adapters.md):
//!
//! | call | what |
//! |---|---|
//! | `GET /v1/adapters` | adapters, their versions and states |
//! | `POST /v1/adapters[?activate=true]` | install a package (the body is the `.ehrpkg` file) |
//! | `POST /v1/adapters/{name}/activate` | `{"version": "1.2.0"}`: make it the active version |
//! | `POST /v1/adapters/{name}/rollback` | back to the previous version |
//! | `POST /v1/adapters/{name}/disable` | stop serving it (units are quarantined, kept) |
//! | `POST /v1/adapters/{name}/candidate` | `{"version": "1.3.0", "mode": "canary", "percent": 10}` or `"mode": "shadow"` |
//! | `DELETE /v1/adapters/{name}/candidate` | end the trial |
//!
//! The operations console (docs/operations.md): the page itself needs no token; its
//! data needs the admin token or the read-only **viewer token** (`viewer_token`),
//! its one action the admin token (the viewer token is answered 403). Reads of the
//! console's data are not audited (like scrapes: counts, versions, quarantine
//! reasons and locations, never the quarantined bytes; a refused one is).
//!
//! | call | what |
//! |---|---|
//! | `GET /console` | the console (static assets built into the binary) |
//! | `GET /v1/console/overview` | readiness, flow counters, listeners, adapters, bulk jobs, workflows (viewer) |
//! | `GET /v1/console/kpi?since=60` | gold/kpi_minute rows of the last `since` minutes (viewer) |
//! | `GET /v1/console/quarantine?limit=100` | the newest quarantined units, no raw bytes (viewer) |
//! | `POST /v1/quarantine/{id}/reprocess` | map it again with its adapter's active version (admin) |
//!
//! Refusals are `{"error": <code>, "message": <sentence>}` with 4xx statuses.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use ehrgate_lifecycle::{Manager, PackageError};
use ehrgate_runtime::{AuditEvent, AuditSink, CandidateMode, now_ms};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub struct AdminConfig {
    pub bind: SocketAddr,
    /// Bind to a non-loopback address only when this is set.
    pub allow_remote: bool,
    /// The admin token (resolved from its `env:` / `file:` reference).
    pub token: String,
    /// The read-only console token, if any.
    pub viewer_token: Option<String>,
    /// The largest request body (a package upload).
    pub max_body_bytes: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("admin bind {0} is not a loopback address; set [admin] allow_remote = true to listen there (and put TLS in front of it)")]
    Remote(SocketAddr),
    #[error("the admin token is {0} bytes; use at least 16 random bytes")]
    WeakToken(usize),
    #[error("the viewer token is {0} bytes; use at least 16 random bytes, and not the admin token")]
    WeakViewerToken(usize),
    #[error("admin server: cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
}

struct Shared {
    token_digest: [u8; 32],
    viewer_digest: Option<[u8; 32]>,
    token_id: String,
    manager: Arc<Manager>,
    audit: Arc<dyn AuditSink>,
    ops: Arc<dyn Ops>,
}

/// An answer of the operations endpoints: JSON, or an HTTP status and why not.
pub type JsonFuture<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<serde_json::Value, (u16, String)>> + Send + 'a>>;

fn not_here<'a>(what: &'static str) -> JsonFuture<'a> {
    Box::pin(async move { Err((404, format!("{what} is not available on this gateway"))) })
}

/// What the operations endpoints report, from the process that serves them.
pub trait Ops: Send + Sync {
    /// `Ok` when ready for traffic, else why not.
    fn ready(&self) -> Result<(), String>;
    /// The metrics in the OpenMetrics text format.
    fn metrics(&self) -> String;
    /// `op` (`retry` or `cancel`) on workflow run `id`.
    fn workflow_run<'a>(&'a self, id: &'a str, op: &'a str) -> JsonFuture<'a> {
        let _ = (id, op);
        Box::pin(async { Err((404, "no workflows are configured on this gateway".to_string())) })
    }
    /// The console's overview (see the module table).
    fn overview(&self) -> serde_json::Value {
        serde_json::json!({})
    }
    /// KPI rows of the last `since_minutes`.
    fn kpi<'a>(&'a self, since_minutes: u64) -> JsonFuture<'a> {
        let _ = since_minutes;
        not_here("the KPI table")
    }
    /// The newest `limit` quarantined units.
    fn quarantine<'a>(&'a self, limit: usize) -> JsonFuture<'a> {
        let _ = limit;
        not_here("the quarantine")
    }
    /// Reprocess quarantined unit `id`, on behalf of `who` (for the audit).
    fn reprocess<'a>(&'a self, id: &'a str, who: &'a str) -> JsonFuture<'a> {
        let _ = (id, who);
        not_here("reprocessing")
    }
}

fn answer(r: Result<serde_json::Value, (u16, String)>) -> Response {
    match r {
        Ok(v) => axum::Json(v).into_response(),
        Err((status, why)) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (status, axum::Json(serde_json::json!({"error": status.canonical_reason().unwrap_or("error").to_ascii_lowercase().replace(' ', "-"), "message": why}))).into_response()
        }
    }
}

#[derive(Deserialize)]
struct SinceQuery {
    since: Option<u64>,
}

#[derive(Deserialize)]
struct LimitQuery {
    limit: Option<usize>,
}

async fn console_overview(State(s): State<Arc<Shared>>) -> Response {
    axum::Json(s.ops.overview()).into_response()
}

async fn console_kpi(State(s): State<Arc<Shared>>, Query(q): Query<SinceQuery>) -> Response {
    answer(s.ops.kpi(q.since.unwrap_or(60).clamp(1, 7 * 24 * 60)).await)
}

async fn console_quarantine(State(s): State<Arc<Shared>>, Query(q): Query<LimitQuery>) -> Response {
    answer(s.ops.quarantine(q.limit.unwrap_or(100).clamp(1, 1000)).await)
}

async fn reprocess(State(s): State<Arc<Shared>>, axum::Extension(Caller(who)): axum::Extension<Caller>, Path(id): Path<String>) -> Response {
    if id.is_empty() || id.len() > 128 || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return bad_request("a quarantine id is letters, digits, - and _".into());
    }
    answer(s.ops.reprocess(&id, &who).await)
}

/// The console's static files, built into the binary.
const ASSETS: [(&str, &str, &[u8]); 5] = [
    ("console.html", "text/html; charset=utf-8", include_bytes!("../assets/console.html")),
    ("console.js", "text/javascript; charset=utf-8", include_bytes!("../assets/console.js")),
    ("console.css", "text/css; charset=utf-8", include_bytes!("../assets/console.css")),
    ("vendor/uPlot.iife.min.js", "text/javascript; charset=utf-8", include_bytes!("../assets/vendor/uPlot.iife.min.js")),
    ("vendor/uPlot.min.css", "text/css; charset=utf-8", include_bytes!("../assets/vendor/uPlot.min.css")),
];

fn asset(name: &str) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, ty, body)) => (
            [("content-type", *ty), ("cache-control", "no-cache"), ("x-content-type-options", "nosniff"), ("content-security-policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")],
            *body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such file\n").into_response(),
    }
}

async fn console_page() -> Response {
    asset("console.html")
}

async fn console_asset(Path(name): Path<String>) -> Response {
    asset(&name)
}

async fn console_vendor(Path(name): Path<String>) -> Response {
    asset(&format!("vendor/{name}"))
}

async fn workflow_run(State(s): State<Arc<Shared>>, Path((id, op)): Path<(String, String)>) -> Response {
    if !matches!(op.as_str(), "retry" | "cancel") {
        return (StatusCode::NOT_FOUND, axum::Json(serde_json::json!({"error": "not-found", "message": "POST .../retry or .../cancel"}))).into_response();
    }
    match s.ops.workflow_run(&id, &op).await {
        Ok(run) => axum::Json(run).into_response(),
        Err((status, why)) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (status, axum::Json(serde_json::json!({"error": status.canonical_reason().unwrap_or("error").to_ascii_lowercase(), "message": why}))).into_response()
        }
    }
}

async fn readyz(State(s): State<Arc<Shared>>) -> Response {
    match s.ops.ready() {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")).into_response(),
    }
}

async fn metrics(State(s): State<Arc<Shared>>) -> Response {
    ([("content-type", "application/openmetrics-text; version=1.0.0; charset=utf-8")], s.ops.metrics()).into_response()
}


/// Which token a request presents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Presented {
    None,
    Wrong,
    Viewer,
    Admin,
}

impl Shared {
    fn presented(&self, headers: &HeaderMap) -> Presented {
        let Some(given) = ehrgate_httpd::bearer(headers) else { return Presented::None };
        // Compare digests: equal-length inputs, so the comparison's timing says
        // nothing about the token.
        let digest: [u8; 32] = Sha256::digest(given.as_bytes()).into();
        if digest == self.token_digest {
            Presented::Admin
        } else if Some(digest) == self.viewer_digest {
            Presented::Viewer
        } else {
            Presented::Wrong
        }
    }
}

/// Who made a call, for the audit: the token's id, the peer address, and the
/// name a CLI user gave (`X-Ehrgate-Actor`), when printable and short.
#[derive(Clone)]
struct Caller(String);

fn claimed_actor(headers: &HeaderMap) -> Option<String> {
    let v = headers.get("x-ehrgate-actor")?.to_str().ok()?;
    (!v.is_empty() && v.len() <= 64 && v.chars().all(|c| c.is_ascii_graphic())).then(|| v.to_string())
}

async fn authenticate(State(s): State<Arc<Shared>>, ConnectInfo(peer): ConnectInfo<SocketAddr>, mut req: Request, next: Next) -> Response {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let presented = s.presented(req.headers());
    let viewer = presented == Presented::Viewer;
    let claimed = claimed_actor(req.headers());
    if presented != Presented::Admin {
        let why = match presented {
            Presented::None => "no bearer token",
            Presented::Viewer => "the viewer token is read-only",
            _ => "wrong token",
        };
        tracing::warn!(%peer, %method, %path, "admin call refused: {why}");
        s.audit.record(AuditEvent {
            at_ms: now_ms(),
            actor: format!("anonymous from {peer}"),
            action: "admin.call".into(),
            connection: "admin".into(),
            method,
            path,
            outcome: format!("denied: {} {why}", if viewer { 403 } else { 401 }),
        });
        if viewer {
            return (StatusCode::FORBIDDEN, axum::Json(serde_json::json!({"error": "forbidden", "message": "the viewer token is read-only; this needs the admin token"}))).into_response();
        }
        return ehrgate_httpd::unauthorized("an admin token is required (Authorization: Bearer ...)");
    }
    let who = match claimed {
        Some(c) => format!("admin:{c} (token {}) from {peer}", s.token_id),
        None => format!("admin (token {}) from {peer}", s.token_id),
    };
    req.extensions_mut().insert(Caller(who.clone()));
    let resp = next.run(req).await;
    s.audit.record(AuditEvent {
        at_ms: now_ms(),
        actor: who,
        action: "admin.call".into(),
        connection: "admin".into(),
        method,
        path,
        outcome: format!("{} {}", if resp.status().is_success() { "allowed:" } else { "failed:" }, resp.status().as_u16()),
    });
    resp
}

/// The console's reads: the admin or the viewer token. Allowed reads are not
/// audited (they poll every few seconds and hold no PHI); refused ones are.
async fn authenticate_read(State(s): State<Arc<Shared>>, ConnectInfo(peer): ConnectInfo<SocketAddr>, req: Request, next: Next) -> Response {
    let presented = s.presented(req.headers());
    if matches!(presented, Presented::Admin | Presented::Viewer) {
        return next.run(req).await;
    }
    let why = if presented == Presented::None { "no bearer token" } else { "wrong token" };
    s.audit.record(AuditEvent {
        at_ms: now_ms(),
        actor: format!("anonymous from {peer}"),
        action: "admin.call".into(),
        connection: "admin".into(),
        method: req.method().to_string(),
        path: req.uri().path().to_string(),
        outcome: format!("denied: 401 {why}"),
    });
    ehrgate_httpd::unauthorized("the viewer or the admin token is required (Authorization: Bearer ...)")
}

fn refused(e: PackageError) -> Response {
    let status = match &e {
        PackageError::NotInstalled { .. } | PackageError::Unknown(_) => StatusCode::NOT_FOUND,
        PackageError::VersionExists { .. } | PackageError::NoPrevious(_) => StatusCode::CONFLICT,
        PackageError::Invalid(_) => StatusCode::BAD_REQUEST,
        PackageError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        PackageError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    };
    (status, axum::Json(serde_json::json!({"error": e.code(), "message": e.to_string()}))).into_response()
}

async fn list(State(s): State<Arc<Shared>>) -> Response {
    axum::Json(serde_json::json!({ "adapters": s.manager.list() })).into_response()
}

#[derive(Deserialize)]
struct InstallQuery {
    #[serde(default)]
    activate: bool,
}

async fn install(State(s): State<Arc<Shared>>, axum::Extension(Caller(who)): axum::Extension<Caller>, Query(q): Query<InstallQuery>, body: Bytes) -> Response {
    match s.manager.install(&body, &who, q.activate).await {
        Ok(i) => (if i.new { StatusCode::CREATED } else { StatusCode::OK }, axum::Json(i)).into_response(),
        Err(e) => refused(e),
    }
}

#[derive(Deserialize)]
struct ActivateBody {
    version: String,
}

async fn activate(State(s): State<Arc<Shared>>, axum::Extension(Caller(who)): axum::Extension<Caller>, Path(name): Path<String>, body: Bytes) -> Response {
    let b: ActivateBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return (StatusCode::BAD_REQUEST, axum::Json(serde_json::json!({"error": "bad-request", "message": format!("the body must be {{\"version\": \"...\"}}: {e}")}))).into_response(),
    };
    match s.manager.activate(&name, &b.version, &who).await {
        Ok(swap) => axum::Json(swap).into_response(),
        Err(e) => refused(e),
    }
}

async fn rollback(State(s): State<Arc<Shared>>, axum::Extension(Caller(who)): axum::Extension<Caller>, Path(name): Path<String>) -> Response {
    match s.manager.rollback(&name, &who).await {
        Ok(swap) => axum::Json(swap).into_response(),
        Err(e) => refused(e),
    }
}

async fn disable(State(s): State<Arc<Shared>>, axum::Extension(Caller(who)): axum::Extension<Caller>, Path(name): Path<String>) -> Response {
    match s.manager.disable(&name, &who).await {
        Ok(()) => axum::Json(serde_json::json!({"name": name, "disabled": true})).into_response(),
        Err(e) => refused(e),
    }
}

impl AdminConfig {
    /// What [`bind`] would refuse, checked before anything else starts.
    pub fn check(&self) -> Result<(), AdminError> {
        if !self.bind.ip().is_loopback() && !self.allow_remote {
            return Err(AdminError::Remote(self.bind));
        }
        if self.token.len() < 16 {
            return Err(AdminError::WeakToken(self.token.len()));
        }
        if let Some(v) = &self.viewer_token
            && (v.len() < 16 || *v == self.token)
        {
            return Err(AdminError::WeakViewerToken(v.len()));
        }
        Ok(())
    }
}

#[derive(Deserialize)]
struct CandidateBody {
    version: String,
    mode: String,
    #[serde(default)]
    percent: Option<f64>,
}

fn bad_request(message: String) -> Response {
    (StatusCode::BAD_REQUEST, axum::Json(serde_json::json!({"error": "bad-request", "message": message}))).into_response()
}

async fn set_candidate(State(s): State<Arc<Shared>>, axum::Extension(Caller(who)): axum::Extension<Caller>, Path(name): Path<String>, body: Bytes) -> Response {
    let b: CandidateBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return bad_request(format!("the body must be {{\"version\": \"...\", \"mode\": \"canary\" | \"shadow\", \"percent\": N}}: {e}")),
    };
    let mode = match (b.mode.as_str(), b.percent) {
        ("canary", Some(percent)) => CandidateMode::Canary { percent },
        ("canary", None) => return bad_request("a canary needs a percent (0-100)".into()),
        ("shadow", _) => CandidateMode::Shadow,
        (other, _) => return bad_request(format!("mode `{}` is neither canary nor shadow", other.escape_debug())),
    };
    match s.manager.set_candidate(&name, &b.version, mode, &who).await {
        Ok(c) => axum::Json(c).into_response(),
        Err(e) => refused(e),
    }
}

async fn clear_candidate(State(s): State<Arc<Shared>>, axum::Extension(Caller(who)): axum::Extension<Caller>, Path(name): Path<String>) -> Response {
    match s.manager.clear_candidate(&name, &who).await {
        Ok(()) => axum::Json(serde_json::json!({"name": name, "candidate": null})).into_response(),
        Err(e) => refused(e),
    }
}

/// Start the admin server; it stops when `shutdown` changes.
pub async fn bind(cfg: AdminConfig, manager: Arc<Manager>, audit: Arc<dyn AuditSink>, ops: Arc<dyn Ops>, shutdown: watch::Receiver<bool>) -> Result<(SocketAddr, JoinHandle<()>), AdminError> {
    cfg.check()?;
    let listener = tokio::net::TcpListener::bind(cfg.bind).await.map_err(|source| AdminError::Bind { addr: cfg.bind, source })?;
    start(listener, cfg, manager, audit, ops, shutdown)
}

/// Serve on a listener bound beforehand (after [`AdminConfig::check`]).
pub fn start(
    listener: tokio::net::TcpListener,
    cfg: AdminConfig,
    manager: Arc<Manager>,
    audit: Arc<dyn AuditSink>,
    ops: Arc<dyn Ops>,
    shutdown: watch::Receiver<bool>,
) -> Result<(SocketAddr, JoinHandle<()>), AdminError> {
    cfg.check()?;
    let digest: [u8; 32] = Sha256::digest(cfg.token.as_bytes()).into();
    let token_id = hex::encode(&Sha256::digest(digest)[..4]);
    let viewer_digest = cfg.viewer_token.as_ref().map(|v| Sha256::digest(v.as_bytes()).into());
    let shared = Arc::new(Shared { token_digest: digest, viewer_digest, token_id, manager, audit, ops });
    let api = Router::new()
        .route("/v1/adapters", get(list).post(install))
        .route("/v1/adapters/{name}/activate", post(activate))
        .route("/v1/adapters/{name}/rollback", post(rollback))
        .route("/v1/adapters/{name}/disable", post(disable))
        .route("/v1/adapters/{name}/candidate", post(set_candidate).merge(delete(clear_candidate)))
        .route("/v1/workflows/runs/{id}/{op}", post(workflow_run))
        .route("/v1/quarantine/{id}/reprocess", post(reprocess))
        .layer(middleware::from_fn_with_state(shared.clone(), authenticate))
        .layer(DefaultBodyLimit::max(cfg.max_body_bytes));
    let console = Router::new()
        .route("/v1/console/overview", get(console_overview))
        .route("/v1/console/kpi", get(console_kpi))
        .route("/v1/console/quarantine", get(console_quarantine))
        .layer(middleware::from_fn_with_state(shared.clone(), authenticate_read));
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/console", get(console_page))
        .route("/console/", get(console_page))
        .route("/console/{name}", get(console_asset))
        .route("/console/vendor/{name}", get(console_vendor))
        .merge(console)
        .merge(api)
        .with_state(shared);
    let addr = listener.local_addr().map_err(|source| AdminError::Bind { addr: cfg.bind, source })?;
    let task = tokio::spawn(ehrgate_httpd::serve(listener, app, ehrgate_httpd::HttpLimits { max_connections: 64, ..Default::default() }, "admin", shutdown));
    Ok((addr, task))
}
