//! FHIR R4 REST: CapabilityStatement, read (410 for a deleted resource), search by
//! patient, create Task.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use serde_json::{Value, json};

use crate::app::{App, lock};
use crate::data::TYPES;
use crate::http::{fhir_json, outcome};
use crate::time::now_ms;

/// The header a client sends so that a repeated create does not duplicate.
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";

pub async fn metadata(State(app): State<Arc<App>>) -> Response {
    let resources: Vec<Value> = TYPES
        .iter()
        .map(|t| {
            let mut interactions = vec![json!({"code": "read"}), json!({"code": "search-type"})];
            if *t == "Task" {
                interactions.push(json!({"code": "create"}));
            }
            let mut r = json!({"type": t, "interaction": interactions});
            if *t != "Patient" && *t != "Group" {
                r["searchParam"] = json!([{"name": "patient", "type": "reference"}]);
            } else if *t == "Patient" {
                r["searchParam"] = json!([{"name": "_id", "type": "token"}]);
            }
            r
        })
        .collect();
    fhir_json(
        200,
        &json!({
            "resourceType": "CapabilityStatement", "status": "active", "kind": "instance", "date": "2024-01-01",
            "fhirVersion": "4.0.1", "format": ["json"],
            "software": {"name": "ehrgate-sandbox", "version": env!("CARGO_PKG_VERSION")},
            "implementation": {"description": "ehrgate synthetic EHR", "url": app.base_url()},
            "rest": [{
                "mode": "server",
                "security": {
                    "service": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service", "code": "SMART-on-FHIR"}]}],
                    "extension": [{
                        "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                        "extension": [{"url": "token", "valueUri": app.token_url()}],
                    }],
                },
                "resource": resources,
                "operation": [{"name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"}],
            }],
        }),
    )
}

/// `None` for a type the sandbox serves, else the 404 to send.
fn unknown(ty: &str) -> Option<Response> {
    (!TYPES.contains(&ty)).then(|| outcome(404, "not-supported", &format!("resource type `{ty}` is not served by the sandbox")))
}

pub async fn read(State(app): State<Arc<App>>, Path((ty, id)): Path<(String, String)>) -> Response {
    if let Some(r) = unknown(&ty) {
        return r;
    }
    let store = lock(&app.store);
    match store.get(&ty, &id) {
        Some(s) => {
            let mut r = fhir_json(200, &s.json);
            if let Some(v) = s.json["meta"]["versionId"].as_str().and_then(|v| HeaderValue::from_str(&format!("W/\"{v}\"")).ok()) {
                r.headers_mut().insert(header::ETAG, v);
            }
            r
        }
        None if store.tombstone(&ty, &id).is_some() => outcome(410, "deleted", &format!("{ty}/{id} has been deleted")),
        None => outcome(404, "not-found", &format!("{ty}/{id} is not known")),
    }
}

/// `GET /<type>?patient=<id|Patient/id>` (also `subject`, and `_id` on Patient), with
/// `_count` and `_offset` paging.
pub async fn search(State(app): State<Arc<App>>, Path(ty): Path<String>, Query(q): Query<HashMap<String, String>>) -> Response {
    if let Some(r) = unknown(&ty) {
        return r;
    }
    let patient = q.get("patient").or_else(|| q.get("subject")).map(|p| if p.starts_with("Patient/") { p.clone() } else { format!("Patient/{p}") });
    let count: usize = q.get("_count").and_then(|c| c.parse().ok()).unwrap_or(50).clamp(1, 1000);
    let offset: usize = q.get("_offset").and_then(|c| c.parse().ok()).unwrap_or(0);
    let store = lock(&app.store);
    let matches: Vec<&Value> = store
        .search(&ty, patient.as_deref())
        .filter(|s| q.get("_id").is_none_or(|id| s.json["id"].as_str() == Some(id)))
        .map(|s| &s.json)
        .collect();
    let base = app.base_url();
    let mut params: Vec<String> = Vec::new();
    if let Some(p) = &patient {
        params.push(format!("patient={p}"));
    }
    if let Some(id) = q.get("_id") {
        params.push(format!("_id={id}"));
    }
    let link = |off: usize| {
        let mut p = params.clone();
        p.push(format!("_count={count}"));
        p.push(format!("_offset={off}"));
        format!("{base}/{ty}?{}", p.join("&"))
    };
    let mut links = vec![json!({"relation": "self", "url": link(offset)})];
    if offset + count < matches.len() {
        links.push(json!({"relation": "next", "url": link(offset + count)}));
    }
    let entries: Vec<Value> = matches
        .iter()
        .skip(offset)
        .take(count)
        .map(|r| json!({"fullUrl": format!("{base}/{ty}/{}", r["id"].as_str().unwrap_or("")), "resource": r, "search": {"mode": "match"}}))
        .collect();
    fhir_json(200, &json!({"resourceType": "Bundle", "type": "searchset", "total": matches.len(), "link": links, "entry": entries}))
}

/// `POST /Task`: 201 with Location. A repeated `Idempotency-Key` returns the Task the
/// first request created instead of creating another.
pub async fn create(State(app): State<Arc<App>>, Path(ty): Path<String>, headers: HeaderMap, body: String) -> Response {
    if ty != "Task" {
        return outcome(405, "not-supported", "the sandbox only creates Task resources");
    }
    let mut json: Value = match serde_json::from_str(&body) {
        Ok(v @ Value::Object(_)) => v,
        _ => return outcome(400, "structure", "the body is not a JSON object"),
    };
    if json["resourceType"] != "Task" {
        return outcome(400, "invalid", "resourceType must be Task");
    }
    let key = headers.get(IDEMPOTENCY_HEADER).and_then(|v| v.to_str().ok()).map(str::to_string);
    // Held across the create, so two requests with one key cannot both create.
    let mut keys = lock(&app.idempotency);
    let earlier = key.as_ref().and_then(|k| keys.get(k)).and_then(|id| lock(&app.store).get("Task", id).map(|s| s.json.clone()));
    let stored = match earlier {
        Some(s) => s,
        None => {
            let id = uuid::Uuid::new_v4().to_string();
            json["id"] = Value::String(id.clone());
            let mut store = lock(&app.store);
            let stamp = store.next_stamp(now_ms());
            let s = store.put("Task", &id, json, stamp);
            if let Some(k) = key {
                keys.insert(k, id);
            }
            s
        }
    };
    drop(keys);
    let id = stored["id"].as_str().unwrap_or("").to_string();
    let version = stored["meta"]["versionId"].as_str().unwrap_or("1").to_string();
    let mut r = fhir_json(201, &stored);
    if let Ok(v) = HeaderValue::from_str(&format!("{}/Task/{id}/_history/{version}", app.base_url())) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}
