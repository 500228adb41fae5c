//! FHIR Bulk Data `$export`: kick-off (system, Patient, Group; GET with a query or POST
//! with a `Parameters` body), status polling with X-Progress and Retry-After, the
//! manifest (with `deleted` files for `_since` exports), NDJSON files, an error file,
//! cancel, and expiry.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::scopes::{self, Interaction};
use crate::app::{App, Flavor, lock};
use crate::data::{PATIENT_TYPES, Store, TYPES};
use crate::faults::mangle_ndjson;
use crate::http::{ActiveFault, outcome};
use crate::time::{format_instant, now_ms, parse_instant};

/// (file name, lines)
type File = (String, Arc<Vec<String>>);

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
    /// Bundles of deleted resources; `Some` only for a `_since` export.
    deleted: Option<Vec<File>>,
    /// Expired by the admin API: the status URL is 404, the files 410.
    expired: bool,
}

enum Scope {
    System,
    Patients,
    Group(String),
}

/// The parameters the sandbox understands, from a GET query or a POST `Parameters` body.
#[derive(Default)]
struct ExportRequest {
    /// `_type`, every value split at commas; `None` when not given.
    types: Option<Vec<String>>,
    since: Option<u64>,
    output_format: Option<String>,
    /// `patient`, as `Patient/<id>`.
    patients: Vec<String>,
    /// Names of parameters the sandbox does not support.
    unknown: Vec<String>,
    /// The query for the manifest's `request` (GET only; a POST's request is its URL).
    query: String,
}

impl ExportRequest {
    /// From a GET query: `_type` (comma-separated, may repeat), `_since`, `_outputFormat`,
    /// `patient` (comma-separated ids or `Patient/<id>`, may repeat).
    fn from_query(raw: Option<&str>) -> Result<ExportRequest, Response> {
        let mut req = ExportRequest::default();
        let mut pairs: Vec<(String, String)> = form_urlencoded::parse(raw.unwrap_or("").as_bytes()).into_owned().collect();
        for (k, v) in &pairs {
            match k.as_str() {
                "_type" => req.add_types(v),
                "_since" => req.set_since(v)?,
                "_outputFormat" => req.set_output_format(v)?,
                "patient" => {
                    for p in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                        req.add_patient(p)?;
                    }
                }
                other => req.unknown.push(other.to_string()),
            }
        }
        pairs.sort();
        if !pairs.is_empty() {
            req.query = format!("?{}", pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&"));
        }
        Ok(req)
    }

    /// From a POST body: a FHIR `Parameters` resource (application/fhir+json or
    /// application/json) with `_type` (valueString), `_since` (valueInstant or
    /// valueDateTime), `_outputFormat` (valueString) and `patient` (valueReference).
    /// An empty body is an export without parameters.
    fn from_parameters(headers: &HeaderMap, body: &[u8]) -> Result<ExportRequest, Response> {
        let mut req = ExportRequest::default();
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(req);
        }
        let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let ct = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        if ct != "application/fhir+json" && ct != "application/json" {
            return Err(outcome(
                415,
                "not-supported",
                &format!("a POST kick-off takes a FHIR Parameters body as application/fhir+json (or application/json), not `{ct}`"),
            ));
        }
        let v: Value = serde_json::from_slice(body).map_err(|e| outcome(400, "structure", &format!("the body is not JSON: {e}")))?;
        if v["resourceType"] != "Parameters" {
            return Err(outcome(400, "invalid", "the body must be a FHIR Parameters resource (resourceType `Parameters`)"));
        }
        let params = match v.get("parameter") {
            None => &vec![],
            Some(Value::Array(a)) => a,
            Some(_) => return Err(outcome(400, "structure", "Parameters.parameter must be an array")),
        };
        for p in params {
            let Some(name) = p["name"].as_str() else {
                return Err(outcome(400, "structure", "every Parameters.parameter needs a `name`"));
            };
            match name {
                "_type" => req.add_types(string_value(p, name, &["valueString"])?),
                "_since" => req.set_since(string_value(p, name, &["valueInstant", "valueDateTime"])?)?,
                "_outputFormat" => req.set_output_format(string_value(p, name, &["valueString"])?)?,
                "patient" => match p["valueReference"]["reference"].as_str() {
                    Some(r) => req.add_patient(r)?,
                    None => return Err(outcome(400, "invalid", "parameter `patient` needs valueReference {\"reference\": \"Patient/<id>\"}")),
                },
                other => req.unknown.push(other.to_string()),
            }
        }
        Ok(req)
    }

    fn add_types(&mut self, list: &str) {
        let types = self.types.get_or_insert_with(Vec::new);
        types.extend(list.split(',').map(str::trim).filter(|t| !t.is_empty()).map(str::to_string));
    }

    fn set_since(&mut self, text: &str) -> Result<(), Response> {
        if self.since.is_some() {
            return Err(outcome(400, "invalid", "_since is given more than once"));
        }
        match parse_instant(text) {
            Some(ms) => self.since = Some(ms),
            None => return Err(outcome(400, "invalid", &format!("_since `{text}` is not a FHIR instant"))),
        }
        Ok(())
    }

    fn set_output_format(&mut self, f: &str) -> Result<(), Response> {
        if self.output_format.replace(f.to_string()).is_some() {
            return Err(outcome(400, "invalid", "_outputFormat is given more than once"));
        }
        Ok(())
    }

    /// `Patient/<id>`, a URL ending in `/Patient/<id>`, or a bare id (GET).
    fn add_patient(&mut self, reference: &str) -> Result<(), Response> {
        let id = match reference.rsplit_once("Patient/") {
            Some((before, id)) if before.is_empty() || before.ends_with('/') => id,
            _ if !reference.contains('/') => reference,
            _ => return Err(outcome(400, "invalid", &format!("patient `{reference}` is not a reference to a Patient (Patient/<id>)"))),
        };
        if id.is_empty() || id.contains('/') {
            return Err(outcome(400, "invalid", &format!("patient `{reference}` is not a reference to a Patient (Patient/<id>)")));
        }
        let r = format!("Patient/{id}");
        if !self.patients.contains(&r) {
            self.patients.push(r);
        }
        Ok(())
    }
}

/// The string in the first of `keys` a parameter has, or the 400 to send.
fn string_value<'a>(p: &'a Value, name: &str, keys: &[&str]) -> Result<&'a str, Response> {
    keys.iter()
        .find_map(|k| p[*k].as_str())
        .ok_or_else(|| outcome(400, "invalid", &format!("parameter `{name}` needs {}", keys.join(" or "))))
}

pub async fn kick_off_system(State(app): State<Arc<App>>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    kick_off(&app, &headers, ExportRequest::from_query(q.as_deref()), Scope::System, "/$export", false)
}

pub async fn kick_off_patient(State(app): State<Arc<App>>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    kick_off(&app, &headers, ExportRequest::from_query(q.as_deref()), Scope::Patients, "/Patient/$export", false)
}

pub async fn kick_off_group(State(app): State<Arc<App>>, Path(id): Path<String>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let path = format!("/Group/{id}/$export");
    kick_off(&app, &headers, ExportRequest::from_query(q.as_deref()), Scope::Group(id), &path, false)
}

pub async fn kick_off_system_post(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    let req = ExportRequest::from_parameters(&headers, &body);
    kick_off(&app, &headers, req, Scope::System, "/$export", true)
}

pub async fn kick_off_patient_post(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    let req = ExportRequest::from_parameters(&headers, &body);
    kick_off(&app, &headers, req, Scope::Patients, "/Patient/$export", true)
}

pub async fn kick_off_group_post(State(app): State<Arc<App>>, Path(id): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    let path = format!("/Group/{id}/$export");
    let req = ExportRequest::from_parameters(&headers, &body);
    kick_off(&app, &headers, req, Scope::Group(id), &path, true)
}

/// An OperationOutcome line for the error file.
fn issue_line(severity: &str, code: &str, diagnostics: &str) -> String {
    json!({"resourceType": "OperationOutcome", "issue": [{"severity": severity, "code": code, "diagnostics": diagnostics}]}).to_string()
}

fn kick_off(app: &App, headers: &HeaderMap, req: Result<ExportRequest, Response>, scope: Scope, path: &str, post: bool) -> Response {
    if app.opts.flavor == Flavor::Epic && !matches!(scope, Scope::Group(_)) {
        return outcome(400, "not-supported", "this server supports Group-level export only (GET or POST /Group/<id>/$export)");
    }
    let prefer = headers.get(header::HeaderName::from_static("prefer")).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !prefer.split(',').any(|p| p.trim() == "respond-async") {
        return outcome(400, "invalid", "bulk export needs the header `Prefer: respond-async`");
    }
    let req = match req {
        Ok(r) => r,
        Err(refused) => return refused,
    };
    let lenient = prefer.split(',').any(|p| p.trim() == "handling=lenient");
    let mut errors = Vec::new();
    for name in &req.unknown {
        if lenient {
            errors.push(issue_line("warning", "not-supported", &format!("parameter `{name}` is not supported and was ignored")));
        } else {
            return outcome(
                400,
                "not-supported",
                &format!("parameter `{name}` is not supported (_type, _since, _outputFormat, patient; use Prefer: handling=lenient to ignore it)"),
            );
        }
    }
    if let Some(f) = &req.output_format
        && !matches!(f.as_str(), "application/fhir+ndjson" | "application/ndjson" | "ndjson")
    {
        return outcome(400, "not-supported", &format!("_outputFormat `{f}` is not supported (application/fhir+ndjson)"));
    }
    if matches!(scope, Scope::System) && !req.patients.is_empty() {
        return outcome(400, "not-supported", "the `patient` parameter is for Patient- and Group-level exports only");
    }
    if let Some(n) = app.opts.error_count {
        // As SMART's reference server: one OperationOutcome for the failed
        // resources, and their number as the error entry's count.
        errors.push(issue_line("error", "processing", &format!("{n} resources could not be exported")));
    }
    let allowed: &[&str] = if matches!(scope, Scope::System) { TYPES } else { PATIENT_TYPES };
    let types: Vec<String> = match &req.types {
        None => allowed.iter().map(|t| t.to_string()).collect(),
        Some(list) => {
            let mut v: Vec<String> = Vec::new();
            for t in list {
                if allowed.contains(&t.as_str()) {
                    if !v.contains(t) {
                        v.push(t.clone());
                    }
                } else if lenient {
                    errors.push(issue_line("error", "not-supported", &format!("resource type `{t}` is not exported")));
                } else {
                    return outcome(400, "not-supported", &format!("_type `{t}` is not supported (use Prefer: handling=lenient to skip it)"));
                }
            }
            v
        }
    };
    // Only what the token may read is exported: a `_type` it does not cover is
    // refused (or, lenient, skipped); without `_type`, the types it covers.
    let (types, errors) = if app.opts.require_auth {
        let granted = crate::auth::granted(app, headers).unwrap_or_default();
        let mut errors = errors;
        let mut kept = Vec::new();
        for t in types {
            if scopes::allows(&granted, &t, Interaction::Read) {
                kept.push(t);
            } else if req.types.is_none() {
                // (not asked for by name: simply not exported)
            } else if lenient {
                errors.push(issue_line("error", "forbidden", &scopes::refusal(&granted, &t, Interaction::Read)));
            } else {
                return crate::auth::forbidden(&scopes::refusal(&granted, &t, Interaction::Read));
            }
        }
        if kept.is_empty() {
            return crate::auth::forbidden(&format!("the access token's scopes ({granted}) allow reading none of the exported types"));
        }
        (kept, errors)
    } else {
        (types, errors)
    };
    let mut store = lock(&app.store);
    for p in &req.patients {
        let id = p.trim_start_matches("Patient/");
        if store.get("Patient", id).is_none() && store.tombstone("Patient", id).is_none() {
            return outcome(400, "not-found", &format!("patient {p} is not known"));
        }
    }
    // Whose resources are exported, and whose deletions are listed (current members
    // plus patients deleted while they were members).
    let (members, former): (Option<Vec<String>>, Vec<String>) = match &scope {
        Scope::System => (None, vec![]),
        Scope::Patients => (
            Some(store.ids("Patient").into_iter().map(|i| format!("Patient/{i}")).collect()),
            store.tombstones.values().filter(|t| t.ty == "Patient").filter_map(|t| t.patient.clone()).collect(),
        ),
        Scope::Group(id) => match store.get("Group", id) {
            Some(g) => (
                Some(g.json["member"].as_array().into_iter().flatten().filter_map(|m| m["entity"]["reference"].as_str().map(str::to_string)).collect()),
                store.tombstones.values().filter(|t| t.ty == "Patient" && t.groups.contains(id)).filter_map(|t| t.patient.clone()).collect(),
            ),
            None => return outcome(404, "not-found", &format!("Group/{id} is not known")),
        },
    };
    let chosen = |refs: Vec<String>| -> Vec<String> {
        if req.patients.is_empty() { refs } else { refs.into_iter().filter(|r| req.patients.contains(r)).collect() }
    };
    let members = members.map(chosen);
    let deletion_members = members.clone().map(|mut m| {
        m.extend(chosen(former));
        m
    });
    let transaction_ms = now_ms().max(store.newest_ms);
    store.mark_exported(transaction_ms);
    let per_file = app.opts.ndjson_lines_per_file.max(1);
    let files = export_files(&store, &types, members.as_deref(), req.since, per_file);
    let deleted = req.since.map(|since| deleted_files(&store, &types, deletion_members.as_deref(), since, per_file));
    drop(store);
    let job_id = uuid::Uuid::new_v4().simple().to_string();
    let job = Job {
        request: format!("{}{path}{}", app.base_url(), if post { "" } else { req.query.as_str() }),
        transaction_ms,
        polls_left: app.opts.export_polls,
        polls_total: app.opts.export_polls,
        files,
        errors,
        deleted,
        expired: false,
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

/// `deleted-{n}.ndjson`: one transaction Bundle with one DELETE entry per resource of
/// `types` deleted after `since` (of `members`' compartments, when given), oldest first.
fn deleted_files(store: &Store, types: &[String], members: Option<&[String]>, since: u64, per_file: usize) -> Vec<File> {
    let mut tombs: Vec<_> = store
        .tombstones
        .values()
        .filter(|t| t.deleted_ms > since && types.contains(&t.ty))
        .filter(|t| members.is_none_or(|m| t.patient.as_ref().is_some_and(|p| m.contains(p))))
        .collect();
    tombs.sort_by(|a, b| (a.deleted_ms, &a.ty, &a.id).cmp(&(b.deleted_ms, &b.ty, &b.id)));
    let lines: Vec<String> = tombs
        .iter()
        .map(|t| {
            json!({
                "resourceType": "Bundle", "id": uuid::Uuid::new_v4().to_string(), "type": "transaction",
                "meta": {"lastUpdated": format_instant(t.deleted_ms)},
                "entry": [{"request": {"method": "DELETE", "url": format!("{}/{}", t.ty, t.id)}}],
            })
            .to_string()
        })
        .collect();
    lines.chunks(per_file).enumerate().map(|(n, chunk)| (format!("deleted-{}.ndjson", n + 1), Arc::new(chunk.to_vec()))).collect()
}

/// Expires every export there is now: their status URLs answer 404 and their files 410
/// from now on. Their data is dropped.
pub fn expire_all(jobs: &mut HashMap<String, Job>) {
    for job in jobs.values_mut() {
        job.expired = true;
        job.files.clear();
        job.errors.clear();
        job.deleted = None;
    }
}

pub async fn status(State(app): State<Arc<App>>, Path(job_id): Path<String>) -> Response {
    let mut jobs = lock(&app.jobs);
    let Some(job) = jobs.get_mut(&job_id).filter(|j| !j.expired) else {
        return outcome(404, "not-found", "no such export (expired, cancelled, or never started)");
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
        let count = app.opts.error_count.unwrap_or(job.errors.len() as u64);
        vec![json!({"type": "OperationOutcome", "url": format!("{base}/_bulk/file/{job_id}/errors.ndjson"), "count": count})]
    };
    let mut manifest = json!({
        "transactionTime": format_instant(job.transaction_ms),
        "request": job.request,
        "requiresAccessToken": app.opts.require_auth,
        "output": output,
        "error": error,
    });
    if let Some(deleted) = &job.deleted {
        manifest["deleted"] = deleted
            .iter()
            .map(|(name, lines)| json!({"type": "Bundle", "url": format!("{base}/_bulk/file/{job_id}/{name}"), "count": lines.len()}))
            .collect();
    }
    let mut r = axum::Json(manifest).into_response();
    r.headers_mut().insert(header::EXPIRES, HeaderValue::from_str(&httpdate::fmt_http_date(std::time::SystemTime::now() + std::time::Duration::from_secs(3600))).unwrap_or(HeaderValue::from_static("0")));
    r
}

pub async fn cancel(State(app): State<Arc<App>>, Path(job_id): Path<String>) -> Response {
    let mut jobs = lock(&app.jobs);
    // An expired export stays, so that its files keep answering 410.
    if jobs.get(&job_id).is_none_or(|j| j.expired) {
        return outcome(404, "not-found", "no such export");
    }
    jobs.remove(&job_id);
    (axum::http::StatusCode::ACCEPTED, "").into_response()
}

pub async fn file(State(app): State<Arc<App>>, Path((job_id, name)): Path<(String, String)>, fault: Option<Extension<ActiveFault>>) -> Response {
    let body = {
        let jobs = lock(&app.jobs);
        let Some(job) = jobs.get(&job_id) else {
            return outcome(404, "not-found", "no such export");
        };
        if job.expired {
            return outcome(410, "deleted", "this export has expired and its files are gone; kick off a new export");
        }
        let deleted = job.deleted.iter().flatten().find(|(n, _)| *n == name).map(|(_, lines)| lines);
        if name == "errors.ndjson" && !job.errors.is_empty() {
            job.errors.join("\n") + "\n"
        } else if let Some(lines) = job.files.iter().find(|(n, _, _)| *n == name).map(|(_, _, lines)| lines).or(deleted) {
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
