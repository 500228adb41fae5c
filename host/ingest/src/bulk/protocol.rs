//! The Bulk Data `$export` conversation: kick-off, status polling, the manifest,
//! cancel. (FHIR Bulk Data Access IG v2.)

use std::time::{Duration, SystemTime};

use ehrgate_connect::{Connection, parse_retry_after};
use ehrgate_runtime::{HttpError, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::BulkError;

/// What is exported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// `/$export`: everything.
    System,
    /// `/Patient/$export`: every patient's compartment (or the listed patients').
    Patient,
    /// `/Group/<id>/$export`: the group's members.
    Group(String),
}

/// One export request, as kicked off (and compared when rejoining one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportRequest {
    pub level: Level,
    /// `_type` (empty: every type the server exports).
    #[serde(default)]
    pub types: Vec<String>,
    /// `patient` references (`Patient/<id>`): sent with POST.
    #[serde(default)]
    pub patients: Vec<String>,
    /// `_since` (a FHIR instant).
    #[serde(default)]
    pub since: Option<String>,
}

/// Percent-encodes a query value (everything but unreserved characters).
fn encode(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

impl ExportRequest {
    pub fn path(&self) -> String {
        match &self.level {
            Level::System => "/$export".into(),
            Level::Patient => "/Patient/$export".into(),
            Level::Group(id) => format!("/Group/{}/$export", encode(id)),
        }
    }

    /// The kick-off: GET with query parameters, or POST with a `Parameters` body
    /// when patients are listed (the IG allows `patient` only with POST).
    pub fn kick_off(&self) -> HttpRequest {
        let headers = vec![("prefer".to_string(), "respond-async".to_string())];
        if self.patients.is_empty() {
            let mut q = vec!["_outputFormat=application%2Ffhir%2Bndjson".to_string()];
            if !self.types.is_empty() {
                q.push(format!("_type={}", encode(&self.types.join(","))));
            }
            if let Some(s) = &self.since {
                q.push(format!("_since={}", encode(s)));
            }
            return HttpRequest {
                connection: String::new(),
                method: "GET".into(),
                path: format!("{}?{}", self.path(), q.join("&")),
                headers,
                body: None,
                idempotency_key: None,
            };
        }
        let mut params = vec![json!({"name": "_outputFormat", "valueString": "application/fhir+ndjson"})];
        if !self.types.is_empty() {
            params.push(json!({"name": "_type", "valueString": self.types.join(",")}));
        }
        if let Some(s) = &self.since {
            params.push(json!({"name": "_since", "valueInstant": s}));
        }
        for p in &self.patients {
            params.push(json!({"name": "patient", "valueReference": {"reference": p}}));
        }
        let body = json!({"resourceType": "Parameters", "parameter": params}).to_string().into_bytes();
        let mut headers = headers;
        headers.push(("content-type".into(), "application/fhir+json".into()));
        HttpRequest { connection: String::new(), method: "POST".into(), path: self.path(), headers, body: Some(body), idempotency_key: None }
    }
}

/// One file of the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    #[serde(rename = "type")]
    pub ty: String,
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
}

/// The complete-status manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    #[serde(rename = "transactionTime")]
    pub transaction_time: String,
    #[serde(default)]
    pub request: Option<String>,
    #[serde(rename = "requiresAccessToken", default)]
    pub requires_access_token: bool,
    #[serde(default)]
    pub output: Vec<FileEntry>,
    #[serde(default)]
    pub error: Vec<FileEntry>,
    #[serde(default)]
    pub deleted: Vec<FileEntry>,
}

impl Manifest {
    /// The manifest as kept in the state file: file URLs without their query
    /// strings (signed URLs carry their signatures there).
    pub fn without_secrets(&self) -> Manifest {
        let strip = |v: &[FileEntry]| v.iter().map(|f| FileEntry { url: super::state::file_key(&f.url), ..f.clone() }).collect();
        Manifest { output: strip(&self.output), error: strip(&self.error), deleted: strip(&self.deleted), request: None, ..self.clone() }
    }
}

fn header<'a>(r: &'a HttpResponse, name: &str) -> Option<&'a str> {
    r.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// The server's own words from an OperationOutcome body (diagnostics or details
/// text), cut short; else the status alone.
pub fn outcome_text(r: &HttpResponse) -> String {
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
    let texts: Vec<&str> = v["issue"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["diagnostics"].as_str().or(i["details"]["text"].as_str()))
        .collect();
    let mut s = format!("HTTP {}", r.status);
    if !texts.is_empty() {
        s.push_str(": ");
        s.push_str(&texts.join("; ").chars().take(300).collect::<String>());
    }
    s
}

/// Kick an export off; returns the status URL (Content-Location).
pub async fn kick_off(conn: &Connection, req: &ExportRequest, scopes: &[String]) -> Result<String, BulkError> {
    let r = conn.send(req.kick_off(), scopes).await.map_err(|e| BulkError::Http("kick-off".into(), e))?;
    if r.status != 202 {
        return Err(BulkError::Refused(format!("kick-off {} {}: {}", if req.patients.is_empty() { "GET" } else { "POST" }, req.path(), outcome_text(&r))));
    }
    let loc = header(&r, "content-location").ok_or_else(|| BulkError::Refused("kick-off answered 202 without a Content-Location (status URL)".into()))?;
    // A relative Content-Location is resolved against the base URL.
    let base = url::Url::parse(conn.base_url()).map_err(|e| BulkError::Config(format!("connection base URL: {e}")))?;
    let url = base.join(loc).map_err(|_| BulkError::Refused("kick-off answered with a Content-Location that is not a URL".into()))?;
    Ok(url.to_string())
}

/// How status polling waits when the server does not say.
#[derive(Debug, Clone, Copy)]
pub struct PollConfig {
    pub first: Duration,
    pub max: Duration,
    /// Consecutive failed polls (errors, 5xx) before giving up.
    pub max_failures: u32,
}

impl Default for PollConfig {
    fn default() -> Self {
        PollConfig { first: Duration::from_secs(1), max: Duration::from_secs(120), max_failures: 10 }
    }
}

/// What a status poll ended with.
pub enum PollEnd {
    Complete(Manifest),
    /// 404 / 410: the export no longer exists (expired, cancelled, or a restarted
    /// server forgot it).
    Gone,
}

/// Polls the status URL until the export completes. Honours Retry-After (seconds
/// or date) and shows X-Progress through `progress`; without Retry-After waits grow
/// exponentially from `cfg.first` to `cfg.max`.
pub async fn poll(conn: &Connection, status_url: &str, scopes: &[String], cfg: PollConfig, mut progress: impl FnMut(&str)) -> Result<PollEnd, BulkError> {
    let mut wait = cfg.first;
    let mut failures = 0u32;
    loop {
        let r = conn.send_url("GET", status_url, &[("accept".into(), "application/json".into())], scopes).await;
        let delay = match r {
            Ok(r) if r.status == 200 => {
                let m: Manifest = serde_json::from_slice(&r.body).map_err(|e| BulkError::Refused(format!("the complete status is not a manifest: {e}")))?;
                return Ok(PollEnd::Complete(m));
            }
            Ok(r) if r.status == 404 || r.status == 410 => return Ok(PollEnd::Gone),
            Ok(r) if r.status == 202 || r.status == 429 || r.status >= 500 => {
                if r.status == 202 {
                    failures = 0;
                    if let Some(p) = header(&r, "x-progress") {
                        progress(p);
                    }
                } else {
                    failures += 1;
                    tracing::warn!(status = r.status, failures, "status poll failed; polling on");
                    if failures >= cfg.max_failures {
                        return Err(BulkError::Refused(format!("status polling failed {failures} times in a row, last: {}", outcome_text(&r))));
                    }
                }
                // (`Retry-After: 0` or a date already past means "back off as usual")
                header(&r, "retry-after").and_then(|v| parse_retry_after(v, SystemTime::now())).filter(|d| !d.is_zero())
            }
            Ok(r) => return Err(BulkError::Refused(format!("the export failed: {}", outcome_text(&r)))),
            Err(e @ (HttpError::Denied(_) | HttpError::Invalid(_))) => return Err(BulkError::Http("status poll".into(), e)),
            Err(e) => {
                failures += 1;
                tracing::warn!(failures, "status poll failed ({e}); polling on");
                if failures >= cfg.max_failures {
                    return Err(BulkError::Http("status poll".into(), e));
                }
                None
            }
        };
        let d = match delay {
            Some(d) => d,
            None => {
                let d = wait;
                wait = (wait * 2).min(cfg.max);
                d
            }
        };
        tokio::time::sleep(d).await;
    }
}

/// DELETE on the status URL: cancels a running export, or tells the server a
/// finished one may be cleaned up.
pub async fn delete(conn: &Connection, status_url: &str, scopes: &[String]) -> Result<u16, BulkError> {
    conn.send_url("DELETE", status_url, &[], scopes).await.map(|r| r.status).map_err(|e| BulkError::Http("cancel".into(), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_kick_off_encodes_its_parameters() {
        let r = ExportRequest { level: Level::Group("all".into()), types: vec!["Patient".into(), "Observation".into()], patients: vec![], since: Some("2024-01-01T00:00:00.000+02:00".into()) };
        let k = r.kick_off();
        assert_eq!(k.method, "GET");
        assert_eq!(
            k.path,
            "/Group/all/$export?_outputFormat=application%2Ffhir%2Bndjson&_type=Patient%2CObservation&_since=2024-01-01T00%3A00%3A00.000%2B02%3A00"
        );
        assert!(k.headers.contains(&("prefer".into(), "respond-async".into())));
    }

    #[test]
    fn patients_make_a_post_with_parameters() {
        let r = ExportRequest { level: Level::Patient, types: vec![], patients: vec!["Patient/a".into(), "Patient/b".into()], since: None };
        let k = r.kick_off();
        assert_eq!((k.method.as_str(), k.path.as_str()), ("POST", "/Patient/$export"));
        let body: serde_json::Value = serde_json::from_slice(k.body.as_ref().unwrap()).unwrap();
        assert_eq!(body["resourceType"], "Parameters");
        let refs: Vec<&str> = body["parameter"].as_array().unwrap().iter().filter_map(|p| p["valueReference"]["reference"].as_str()).collect();
        assert_eq!(refs, vec!["Patient/a", "Patient/b"]);
    }

    #[test]
    fn a_manifest_parses_with_and_without_optional_arrays() {
        let m: Manifest = serde_json::from_str(r#"{"transactionTime":"2024-01-01T00:00:00Z","request":"x","requiresAccessToken":true,
            "output":[{"type":"Patient","url":"http://h/f1","count":3}],"error":[]}"#)
        .unwrap();
        assert!(m.requires_access_token);
        assert_eq!(m.output[0].count, Some(3));
        assert!(m.deleted.is_empty());
    }
}
