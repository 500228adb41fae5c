//! Routes, and the gate every request passes: counting, fault injection, bearer check.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use crate::app::{App, lock};
use crate::faults::{FAULT_HEADER, Fault};
use crate::scopes::{self, Interaction};
use crate::{admin, auth, bulk, fhir};

/// The fault picked for a request, for handlers that apply it themselves (NDJSON).
#[derive(Clone, Debug)]
pub struct ActiveFault(pub Fault);

pub fn router(app: Arc<App>) -> Router {
    let p = app.prefix();
    let r = |path: &str| format!("{p}{path}");
    Router::new()
        .route(&r("/metadata"), get(fhir::metadata))
        .route(&r("/.well-known/smart-configuration"), get(auth::smart_configuration))
        .route(&r("/token"), post(auth::token))
        .route(&r("/$export"), get(bulk::kick_off_system).post(bulk::kick_off_system_post))
        .route(&r("/Patient/$export"), get(bulk::kick_off_patient).post(bulk::kick_off_patient_post))
        .route(&r("/Group/{id}/$export"), get(bulk::kick_off_group).post(bulk::kick_off_group_post))
        .route(&r("/_bulk/status/{job}"), get(bulk::status).delete(bulk::cancel))
        .route(&r("/_bulk/file/{job}/{file}"), get(bulk::file))
        .route(&r("/{ty}"), get(fhir::search).post(fhir::create))
        .route(&r("/{ty}/{id}"), get(fhir::read))
        .route("/_sandbox/stats", get(admin::stats))
        .route("/_sandbox/faults", post(admin::add_fault).delete(admin::clear_faults))
        .route("/_sandbox/clients", post(admin::register_client))
        .route("/_sandbox/patients", post(admin::add_patients))
        .route("/_sandbox/expire-tokens", post(admin::expire_tokens))
        .route("/_sandbox/delete", post(admin::delete))
        .route("/_sandbox/expire-exports", post(admin::expire_exports))
        .fallback(|| async { outcome(404, "not-found", "no such endpoint in the sandbox") })
        .layer(axum::middleware::from_fn_with_state(app.clone(), gate))
        .with_state(app)
}

/// Counts the request, applies a fault, checks the bearer token.
async fn gate(State(app): State<Arc<App>>, mut req: Request, next: Next) -> Response {
    let method = req.method().to_string();
    let full = req.uri().path().to_string();
    if full.starts_with("/_sandbox/") {
        return next.run(req).await;
    }
    let prefix = app.prefix();
    let Some(local) = full.strip_prefix(&prefix).filter(|l| l.is_empty() || l.starts_with('/')).map(str::to_string) else {
        return outcome(404, "not-found", &format!("this server's FHIR base is {}", app.base_url()));
    };
    app.record_request(&method, &local);
    let header = req.headers().get(FAULT_HEADER).and_then(|v| v.to_str().ok()).map(str::to_string);
    let fault = match lock(&app.faults).pick(header.as_deref(), &method, &local) {
        Ok(f) => f,
        Err(why) => return outcome(400, "invalid", &format!("{FAULT_HEADER}: {why}")),
    };
    if fault.is_some() {
        lock(&app.stats).faults_applied += 1;
    }
    match &fault {
        Some(Fault::Status { code, retry_after }) => {
            let mut resp = outcome(*code, "transient", "fault injected by the sandbox");
            if let Some(ra) = retry_after
                && let Ok(v) = HeaderValue::from_str(&ra.header_value())
            {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return resp;
        }
        Some(Fault::Slow(d)) => tokio::time::sleep(*d).await,
        Some(Fault::ExpireToken) => {
            if let Some(tok) = auth::bearer(req.headers())
                && let Some(t) = lock(&app.tokens).get_mut(&tok)
            {
                t.expires_at_ms = 0;
            }
        }
        _ => {}
    }
    let public = local == "/metadata" || local == "/token" || local.starts_with("/.well-known/");
    if app.opts.require_auth
        && !public
        && let Some(denied) = auth::check_bearer(&app, req.headers())
    {
        return denied;
    }
    if app.opts.require_auth
        && !public
        && let Some((ty, what)) = rest_interaction(&method, &local)
    {
        let granted = auth::granted(&app, req.headers()).unwrap_or_default();
        if !scopes::allows(&granted, &ty, what) {
            lock(&app.stats).scope_refusals += 1;
            return auth::forbidden(&scopes::refusal(&granted, &ty, what));
        }
    }
    if let Some(f) = fault.clone() {
        req.extensions_mut().insert(ActiveFault(f));
    }
    let resp = next.run(req).await;
    if matches!(fault, Some(Fault::Reset)) { reset(resp) } else { resp }
}

/// The resource type and interaction of a REST request (`GET /Type/id` reads,
/// `GET /Type` searches, `POST /Type` creates); `None` for everything else
/// (bulk export checks its types itself; status and file downloads belong to the
/// job the kick-off allowed).
fn rest_interaction(method: &str, local: &str) -> Option<(String, Interaction)> {
    // (decoded as the router decodes it: `/%50atient/x` is a read of Patient)
    let segs: Vec<String> = local.trim_start_matches('/').split('/').map(percent_decode).collect();
    let ty = segs.first()?.clone();
    if ty.is_empty() || !ty.starts_with(|c: char| c.is_ascii_uppercase()) || segs.iter().any(|s| s.starts_with('$')) {
        return None;
    }
    let what = match (method, segs.len()) {
        ("GET" | "HEAD", 1) => Interaction::Search,
        ("GET" | "HEAD", 2) => Interaction::Read,
        ("POST", 1) => Interaction::Create,
        _ => return None,
    };
    Some((ty, what))
}

/// `%XX` escapes decoded (invalid ones left as they are).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Keeps the status and headers, then breaks the connection after a few body bytes.
fn reset(resp: Response) -> Response {
    let (mut parts, _) = resp.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> =
        vec![Ok(bytes::Bytes::from_static(b"{\"resourceType\":")), Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "sandbox fault: reset"))];
    Response::from_parts(parts, Body::from_stream(futures_util::stream::iter(chunks)))
}

/// A FHIR JSON response.
pub fn fhir_json(status: u16, value: &serde_json::Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, [(header::CONTENT_TYPE, "application/fhir+json")], value.to_string()).into_response()
}

/// An OperationOutcome with one issue.
pub fn outcome(status: u16, code: &str, diagnostics: &str) -> Response {
    fhir_json(
        status,
        &json!({"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": code, "diagnostics": diagnostics}]}),
    )
}
