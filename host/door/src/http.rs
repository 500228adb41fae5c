//! The door's HTTP listener: the tool API under `/v1`, MCP (streamable HTTP) at
//! `/mcp`, both behind one check of the client's key and declared purpose.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::clients::{Clients, valid_purpose};
use crate::door::{Answer, Caller, Door};
use crate::tools;

/// The header that carries the purpose of use; required on every call.
pub const PURPOSE_HEADER: &str = "x-ehrgate-purpose";

#[derive(Clone)]
pub(crate) struct Shared {
    pub door: Arc<Door>,
    pub clients: Arc<Clients>,
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, axum::Json(json!({"error": code, "message": message}))).into_response()
}

/// Who calls: a known key and an acceptable purpose, or the refusal (audited).
async fn authenticate(State(s): State<Shared>, ConnectInfo(peer): ConnectInfo<SocketAddr>, mut req: Request, next: Next) -> Response {
    let via = format!("{} {peer}", if req.uri().path().starts_with("/mcp") { "mcp" } else { "http" });
    let what = format!("{} {}", req.method(), req.uri().path());
    let presented = ehrgate_httpd::bearer(req.headers());
    let Some(client) = presented.and_then(|k| s.clients.by_key(k)) else {
        let why = if presented.is_some() { "unknown key" } else { "no bearer key" };
        s.door.audit_refused("anonymous", &via, &what, 401, why);
        return ehrgate_httpd::unauthorized("an API key is required (Authorization: Bearer ...)");
    };
    let purpose = req.headers().get(PURPOSE_HEADER).and_then(|v| v.to_str().ok()).map(str::trim).unwrap_or("");
    if !valid_purpose(purpose) {
        s.door.audit_refused(&client.id, &via, &what, 400, "no purpose of use");
        return error(StatusCode::BAD_REQUEST, "purpose-required", "declare the purpose of use in X-Ehrgate-Purpose (e.g. TREAT)");
    }
    if !client.may_declare(purpose) {
        s.door.audit_refused(&client.id, &via, &what, 403, &format!("purpose {purpose} not allowed"));
        return error(StatusCode::FORBIDDEN, "forbidden", &format!("client `{}` may not act for purpose `{purpose}`", client.id));
    }
    let caller = Caller { client, purpose: purpose.to_string(), via };
    req.extensions_mut().insert(caller);
    next.run(req).await
}

pub(crate) fn answer(a: Answer) -> Response {
    let status = StatusCode::from_u16(a.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (status, axum::Json(a.body)).into_response();
    if let Some(s) = a.retry_after_s
        && let Ok(v) = s.to_string().parse()
    {
        resp.headers_mut().insert("retry-after", v);
    }
    resp
}

async fn list_tools(axum::Extension(caller): axum::Extension<Caller>) -> Response {
    axum::Json(json!({"client": caller.client.id, "tools": tools::catalogue(&caller.client)})).into_response()
}

async fn call_tool(State(s): State<Shared>, axum::Extension(caller): axum::Extension<Caller>, Path(name): Path<String>, body: Bytes) -> Response {
    let args: Value = if body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            // (audited as a call with arguments that are not an object)
            Err(_) => Value::Null,
        }
    };
    answer(s.door.call(&caller, &name, &args).await)
}

pub struct DoorListener {
    pub bind: SocketAddr,
    pub allow_remote: bool,
}

impl DoorListener {
    pub fn check(&self) -> Result<(), String> {
        if !self.bind.ip().is_loopback() && !self.allow_remote {
            return Err(format!("agent door bind {} is not a loopback address; set [agent_door] allow_remote = true to listen there (and put TLS in front of it)", self.bind));
        }
        Ok(())
    }
}

/// Serve the door on a listener bound beforehand; it stops when `shutdown` changes.
/// `remote`: the listener is not on loopback (`allow_remote`), so MCP takes any
/// `Host` header (rmcp's DNS-rebinding guard admits only localhost names; the key
/// every request needs is the guard here).
pub fn start(listener: tokio::net::TcpListener, door: Arc<Door>, clients: Arc<Clients>, remote: bool, shutdown: watch::Receiver<bool>) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let shared = Shared { door, clients };
    let mcp = crate::mcp::service(shared.clone(), remote, shutdown.clone());
    let api = Router::new()
        .route("/v1/tools", get(list_tools))
        .route("/v1/tools/{name}", post(call_tool))
        .nest_service("/mcp", mcp)
        .layer(middleware::from_fn_with_state(shared.clone(), authenticate))
        .layer(DefaultBodyLimit::max(1 << 20));
    let app = Router::new().route("/healthz", get(|| async { "ok" })).merge(api).with_state(shared);
    let addr = listener.local_addr()?;
    let task = tokio::spawn(ehrgate_httpd::serve(listener, app, ehrgate_httpd::HttpLimits { max_connections: 128, ..Default::default() }, "agent door", shutdown));
    Ok((addr, task))
}
