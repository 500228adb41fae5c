//! FHIR Bulk Data `$export`: kick-off (system, Patient, Group), status polling with
//! X-Progress and Retry-After, the manifest, NDJSON files, an error file, cancel.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde_json::{Value, json};

use crate::app::{App, Flavor, lock};
use crate::data::{PATIENT_TYPES, Store, TYPES};
use crate::faults::mangle_ndjson;
use crate::http::{ActiveFault, outcome};
use crate::time::{format_instant, now_ms, parse_instant};

/// One export, computed at kick-off (a snapshot as of its transaction time).
pub struct Job {
    request: String,
    transaction_ms: u64,
    polls_left: u32,
    polls_total: u32,
    /// (file name, resource type, lines)
    files: Vec<(String, String, Arc<Vec<String>>)>,
    /// OperationOutcome lines for the error file.
    errors: Vec<String>,
}

enum Scope {
    System,
    Patients,
    Group(String),
}

pub async fn kick_off_system(State(app): State<Arc<App>>, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    kick_off(&app, &headers, &q, Scope::System, "/$export")
}

pub async fn kick_off_patient(State(app): State<Arc<App>>, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    kick_off(&app, &headers, &q, Scope::Patients, "/Patient/$export")
}

pub async fn kick_off_group(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let path = format!("/Group/{id}/$export");
    kick_off(&app, &headers, &q, Scope::Group(id), &path)
}

fn kick_off(app: &App, headers: &HeaderMap, q: &HashMap<String, String>, scope: Scope, path: &str) -> Response {
    if app.opts.flavor == Flavor::Epic && !matches!(scope, Scope::Group(_)) {
        return outcome(400, "not-supported", "this server supports Group-level export only (GET /Group/<id>/$export)");
    }
    let prefer = headers.get(header::HeaderName::from_static("prefer")).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !prefer.split(',').any(|p| p.trim() == "respond-async") {
        return outcome(400, "invalid", "bulk export needs the header `Prefer: respond-async`");
    }
    let lenient = prefer.split(',').any(|p| p.trim() == "handling=lenient");
    if let Some(f) = q.get("_outputFormat")
        && !matches!(f.as_str(), "application/fhir+ndjson" | "application/ndjson" | "ndjson")
    {
        return outcome(400, "not-supported", &format!("_outputFormat `{f}` is not supported (application/fhir+ndjson)"));
    }
    let since = match q.get("_since").map(|s| parse_instant(s).ok_or(s)) {
        Some(Err(s)) => return outcome(400, "invalid", &format!("_since `{s}` is not a FHIR instant")),
        Some(Ok(ms)) => Some(ms),
        None => None,
    };
    let allowed: &[&str] = if matches!(scope, Scope::System) { TYPES } else { PATIENT_TYPES };
    let mut errors = Vec::new();
    let types: Vec<String> = match q.get("_type") {
        None => allowed.iter().map(|t| t.to_string()).collect(),
        Some(list) => {
            let mut v = Vec::new();
            for t in list.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                if allowed.contains(&t) {
                    v.push(t.to_string());
                } else if lenient {
                    errors.push(json!({"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "not-supported",
                        "diagnostics": format!("resource type `{t}` is not exported")}]}).to_string());
                } else {
                    return outcome(400, "not-supported", &format!("_type `{t}` is not supported (use Prefer: handling=lenient to skip it)"));
                }
            }
            v
        }
    };
    let store = lock(&app.store);
    let members: Option<Vec<String>> = match &scope {
        Scope::System => None,
        Scope::Patients => Some(store.ids("Patient").into_iter().map(|i| format!("Patient/{i}")).collect()),
        Scope::Group(id) => match store.get("Group", id) {
            Some(g) => Some(
                g.json["member"].as_array().into_iter().flatten().filter_map(|m| m["entity"]["reference"].as_str().map(str::to_string)).collect(),
            ),
            None => return outcome(404, "not-found", &format!("Group/{id} is not known")),
        },
    };
    let transaction_ms = now_ms().max(store.newest_ms);
    let files = export_files(&store, &types, members.as_deref(), since, app.opts.ndjson_lines_per_file.max(1));
    drop(store);
    let job_id = uuid::Uuid::new_v4().simple().to_string();
    let query = {
        let mut keys: Vec<_> = q.iter().map(|(k, v)| format!("{k}={v}")).collect();
        keys.sort();
        if keys.is_empty() { String::new() } else { format!("?{}", keys.join("&")) }
    };
    let job = Job {
        request: format!("{}{path}{query}", app.base_url()),
        transaction_ms,
        polls_left: app.opts.export_polls,
        polls_total: app.opts.export_polls,
        files,
        errors,
    };
    lock(&app.jobs).insert(job_id.clone(), job);
    let mut r = (axum::http::StatusCode::ACCEPTED, "").into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("{}/_bulk/status/{job_id}", app.base_url())) {
        r.headers_mut().insert(header::CONTENT_LOCATION, v);
    }
    r
}

fn export_files(store: &Store, types: &[String], members: Option<&[String]>, since: Option<u64>, per_file: usize) -> Vec<(String, String, Arc<Vec<String>>)> {
    let mut files = Vec::new();
    for ty in types {
        let lines: Vec<String> = store
            .search(ty, None)
            .filter(|s| since.is_none_or(|t| s.last_updated_ms > t))
            .filter(|s| members.is_none_or(|m| s.patient.as_ref().is_some_and(|p| m.contains(p))))
            .map(|s| s.json.to_string())
            .collect();
        for (n, chunk) in lines.chunks(per_file).enumerate() {
            files.push((format!("{ty}-{}.ndjson", n + 1), ty.clone(), Arc::new(chunk.to_vec())));
        }
    }
    files
}

pub async fn status(State(app): State<Arc<App>>, Path(job_id): Path<String>) -> Response {
    let mut jobs = lock(&app.jobs);
    let Some(job) = jobs.get_mut(&job_id) else {
        return outcome(404, "not-found", "no such export (finished and deleted, cancelled, or never started)");
    };
    if job.polls_left > 0 {
        job.polls_left -= 1;
        let done = job.polls_total - job.polls_left;
        let pct = 100 * done / (job.polls_total + 1);
        let mut r = (axum::http::StatusCode::ACCEPTED, "").into_response();
        let h = r.headers_mut();
        h.insert("x-progress", HeaderValue::from_str(&format!("{pct}% (in progress)")).unwrap_or(HeaderValue::from_static("in progress")));
        h.insert(header::RETRY_AFTER, HeaderValue::from(app.opts.export_retry_after_secs));
        return r;
    }
    let base = app.base_url();
    let output: Vec<Value> = job
        .files
        .iter()
        .map(|(name, ty, lines)| json!({"type": ty, "url": format!("{base}/_bulk/file/{job_id}/{name}"), "count": lines.len()}))
        .collect();
    let error: Vec<Value> = if job.errors.is_empty() {
        vec![]
    } else {
        vec![json!({"type": "OperationOutcome", "url": format!("{base}/_bulk/file/{job_id}/errors.ndjson"), "count": job.errors.len()})]
    };
    let manifest = json!({
        "transactionTime": format_instant(job.transaction_ms),
        "request": job.request,
        "requiresAccessToken": app.opts.require_auth,
        "output": output,
        "error": error,
    });
    let mut r = axum::Json(manifest).into_response();
    r.headers_mut().insert(header::EXPIRES, HeaderValue::from_str(&httpdate::fmt_http_date(std::time::SystemTime::now() + std::time::Duration::from_secs(3600))).unwrap_or(HeaderValue::from_static("0")));
    r
}

pub async fn cancel(State(app): State<Arc<App>>, Path(job_id): Path<String>) -> Response {
    match lock(&app.jobs).remove(&job_id) {
        Some(_) => (axum::http::StatusCode::ACCEPTED, "").into_response(),
        None => outcome(404, "not-found", "no such export"),
    }
}

pub async fn file(State(app): State<Arc<App>>, Path((job_id, name)): Path<(String, String)>, fault: Option<Extension<ActiveFault>>) -> Response {
    let body = {
        let jobs = lock(&app.jobs);
        let Some(job) = jobs.get(&job_id) else {
            return outcome(404, "not-found", "no such export");
        };
        if name == "errors.ndjson" && !job.errors.is_empty() {
            job.errors.join("\n") + "\n"
        } else if let Some((_, _, lines)) = job.files.iter().find(|(n, _, _)| *n == name) {
            let mut s = lines.join("\n");
            s.push('\n');
            s
        } else {
            return outcome(404, "not-found", &format!("no file `{name}` in this export"));
        }
    };
    let body = mangle_ndjson(fault.as_ref().map(|Extension(ActiveFault(f))| f), body);
    ([(header::CONTENT_TYPE, "application/fhir+ndjson")], body).into_response()
}
