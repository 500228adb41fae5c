//! `/_sandbox/*`: counters, faults, clients, data (add, delete, count) and export expiry
//! for tests and demos driving the sandbox from outside the process. Not part of any
//! EHR's API.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use crate::app::{App, ClientRegistration, lock};
use crate::faults::FaultRule;
use crate::http::outcome;

pub async fn stats(State(app): State<Arc<App>>) -> Response {
    let s = app.stats();
    Json(json!({
        "requests": s.requests, "token_requests": s.token_requests, "tokens_issued": s.tokens_issued,
        "faults_applied": s.faults_applied, "scope_refusals": s.scope_refusals, "by_route": s.by_route, "resources": app.counts(),
    }))
    .into_response()
}

pub async fn add_fault(State(app): State<Arc<App>>, Json(rule): Json<FaultRule>) -> Response {
    match lock(&app.faults).add(rule) {
        Ok(()) => (axum::http::StatusCode::CREATED, "").into_response(),
        Err(why) => outcome(400, "invalid", &why),
    }
}

pub async fn clear_faults(State(app): State<Arc<App>>) -> Response {
    lock(&app.faults).clear();
    axum::http::StatusCode::NO_CONTENT.into_response()
}

pub async fn register_client(State(app): State<Arc<App>>, Json(c): Json<ClientRegistration>) -> Response {
    match app.register_client(c) {
        Ok(()) => (axum::http::StatusCode::CREATED, "").into_response(),
        Err(why) => outcome(400, "invalid", &why),
    }
}

#[derive(Deserialize)]
pub struct AddPatients {
    count: usize,
}

pub async fn add_patients(State(app): State<Arc<App>>, Json(a): Json<AddPatients>) -> Response {
    let ids = app.add_patients(a.count.min(10_000));
    (axum::http::StatusCode::CREATED, Json(json!({"added": ids}))).into_response()
}

pub async fn expire_tokens(State(app): State<Arc<App>>) -> Response {
    app.expire_all_tokens();
    axum::http::StatusCode::NO_CONTENT.into_response()
}

#[derive(Deserialize)]
pub struct Delete {
    #[serde(rename = "type")]
    ty: String,
    id: String,
}

/// `{"type": "Observation", "id": "..."}`: 204, or 404 when there is no such resource.
pub async fn delete(State(app): State<Arc<App>>, Json(d): Json<Delete>) -> Response {
    if app.delete(&d.ty, &d.id) {
        axum::http::StatusCode::NO_CONTENT.into_response()
    } else {
        outcome(404, "not-found", &format!("{}/{} is not known", d.ty, d.id))
    }
}

pub async fn expire_exports(State(app): State<Arc<App>>) -> Response {
    app.expire_exports();
    axum::http::StatusCode::NO_CONTENT.into_response()
}
