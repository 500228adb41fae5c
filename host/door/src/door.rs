//! Executing one tool call for one client: scope checks, the upstream read through
//! the connection (throttle, retries, breaker, token cache), the adapter's
//! `map-fhir` or action, and one audit row whatever happens.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use ehrgate_connect::Connections;
use ehrgate_runtime::{AdapterError, AuditEvent, AuditSink, CallError, HttpError, HttpRequest, Registry, now_ms};
use serde_json::{Value, json};

use crate::clients::Client;
use crate::reads;
use crate::tools::{self, ACTIVE_MEDICATIONS, LATEST_VITALS, READ_RESOURCE, SEARCH_RESOURCES};

/// Who is calling, and why.
#[derive(Debug, Clone)]
pub struct Caller {
    pub client: Arc<Client>,
    /// The declared purpose of use (`X-Ehrgate-Purpose`).
    pub purpose: String,
    /// The transport and peer, e.g. `http 127.0.0.1:53211`, `mcp 127.0.0.1:53211`.
    pub via: String,
}

/// The answer to a call: an HTTP status and a JSON body (the result, or
/// `{"error", "message"}`), and how long to wait before trying again when the
/// EHR asked the gateway to slow down.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub retry_after_s: Option<u64>,
}

/// Counters of the door, for metrics.
#[derive(Debug, Default)]
pub struct DoorStats {
    pub calls: AtomicU64,
    pub denied: AtomicU64,
    pub failed: AtomicU64,
    /// Microseconds spent in calls, upstream time included / upstream time only.
    pub total_us: AtomicU64,
    pub upstream_us: AtomicU64,
}

pub struct Door {
    connections: Arc<Connections>,
    registry: Arc<Registry>,
    audit: Arc<dyn AuditSink>,
    /// connection -> adapter.
    mappers: BTreeMap<String, String>,
    max_results: usize,
    pub stats: DoorStats,
}

/// Why a call was not answered with a result.
struct Refusal {
    status: u16,
    code: &'static str,
    message: String,
    retry_after_s: Option<u64>,
}

fn refuse(status: u16, code: &'static str, message: impl Into<String>) -> Refusal {
    Refusal { status, code, message: message.into(), retry_after_s: None }
}

/// What the audit row says about a call, filled in as it proceeds.
#[derive(Default)]
struct Trail {
    connection: String,
    method: String,
    path: String,
    upstream: Option<u16>,
    upstream_us: u64,
    detail: String,
}

/// A wait in whole seconds, rounded up (a Retry-After never shorter than the pause).
fn whole_seconds(d: std::time::Duration) -> u64 {
    d.as_secs_f64().ceil().max(1.0) as u64
}

fn str_arg<'a>(args: &'a Value, name: &str) -> Result<&'a str, Refusal> {
    match args.get(name) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim()),
        Some(_) => Err(refuse(400, "bad-arguments", format!("`{name}` must be a non-empty string"))),
        None => Err(refuse(400, "bad-arguments", format!("`{name}` is required"))),
    }
}

fn patient_arg(args: &Value) -> Result<&str, Refusal> {
    reads::fhir_id(str_arg(args, "patient")?, "Patient").ok_or_else(|| refuse(400, "bad-arguments", "`patient` is not a FHIR id (or Patient/<id>)"))
}

impl Door {
    pub fn new(connections: Arc<Connections>, registry: Arc<Registry>, audit: Arc<dyn AuditSink>, mappers: BTreeMap<String, String>, max_results: usize) -> Door {
        Door { connections, registry, audit, mappers, max_results: max_results.clamp(1, 1000), stats: DoorStats::default() }
    }

    /// Checks at start: every connection the door reads through is configured, and
    /// its adapter is loaded and declares it.
    pub fn check(&self) -> Result<(), String> {
        for (c, a) in &self.mappers {
            if self.connections.get(c).is_none() {
                return Err(format!("[agent_door] connections: `{c}` (mapped by `{a}`) is not a configured connection"));
            }
            let Some(adapter) = self.registry.get(a) else {
                return Err(format!("[agent_door] connections: adapter `{a}` (for `{c}`) is not loaded"));
            };
            if !adapter.info().connections.iter().any(|n| &n.name == c) {
                return Err(format!("[agent_door] connections: adapter `{a}` does not declare connection `{c}` (it declares: {})", adapter.info().connections.iter().map(|n| n.name.as_str()).collect::<Vec<_>>().join(", ")));
            }
        }
        Ok(())
    }

    /// Records an attempt refused before it reached a tool (no key, a wrong key, no
    /// purpose): who tried, from where, and why.
    pub fn audit_refused(&self, who: &str, via: &str, what: &str, status: u16, why: &str) {
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        self.stats.denied.fetch_add(1, Ordering::Relaxed);
        self.audit.record(AuditEvent {
            at_ms: now_ms(),
            actor: format!("door:{who} ({via})"),
            action: "door.call".into(),
            connection: "door".into(),
            method: "CALL".into(),
            path: what.to_string(),
            outcome: format!("denied: {status} {why}"),
        });
    }

    /// Runs `tool` with `args` for `caller`; every call is one audit row.
    pub async fn call(&self, caller: &Caller, tool: &str, args: &Value) -> Answer {
        let started = Instant::now();
        // What was attempted, for a call refused before it reads or writes.
        let mut attempted = format!("{tool} {args}");
        if attempted.len() > 300 {
            let cut = (0..=300).rev().find(|i| attempted.is_char_boundary(*i)).unwrap_or(0);
            attempted.truncate(cut);
            attempted.push_str("...");
        }
        let mut trail = Trail { connection: "door".into(), method: "CALL".into(), path: attempted, ..Default::default() };
        let result = if !args.is_object() {
            Err(refuse(400, "bad-arguments", "the arguments must be a JSON object"))
        } else {
            self.dispatch(caller, tool, args, &mut trail).await
        };
        let total_us = started.elapsed().as_micros() as u64;
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        self.stats.total_us.fetch_add(total_us, Ordering::Relaxed);
        self.stats.upstream_us.fetch_add(trail.upstream_us, Ordering::Relaxed);
        let upstream = trail.upstream.map(|s| format!("; upstream {s}")).unwrap_or_default();
        let result = match (result, &caller.client.masker) {
            (Ok(mut body), Some(m)) => {
                mask_answer(m, &mut body);
                Ok(body)
            }
            (r, _) => r,
        };
        let (answer, outcome) = match result {
            Ok(body) => (Answer { status: 200, body, retry_after_s: None }, format!("allowed: 200{upstream}; purpose {}; {}", caller.purpose, trail.detail)),
            Err(r) => {
                let counter = if r.status == 403 || r.status == 401 { &self.stats.denied } else { &self.stats.failed };
                counter.fetch_add(1, Ordering::Relaxed);
                let verdict = if r.status == 403 { "denied" } else { "failed" };
                let outcome = format!("{verdict}: {} {}{upstream}; purpose {}; {}", r.status, r.message, caller.purpose, trail.detail);
                (Answer { status: r.status, body: json!({"error": r.code, "message": r.message}), retry_after_s: r.retry_after_s }, outcome)
            }
        };
        self.audit.record(AuditEvent {
            at_ms: now_ms(),
            actor: format!("door:{} (key {}, {})", caller.client.id, caller.client.key_id, caller.via),
            action: format!("door.{}", tools::known(tool).unwrap_or("unknown")),
            connection: trail.connection,
            method: trail.method,
            path: trail.path,
            outcome: outcome.trim_end_matches([';', ' ']).to_string(),
        });
        answer
    }

    async fn dispatch(&self, caller: &Caller, tool: &str, args: &Value, trail: &mut Trail) -> Result<Value, Refusal> {
        let client = &caller.client;
        if !tools::offered(client, tool) {
            return Err(if tools::known(tool).is_some() {
                refuse(403, "forbidden", format!("client `{}` has no scope for `{tool}`", client.id))
            } else {
                refuse(404, "unknown-tool", format!("no tool named `{}`", tool.escape_debug()))
            });
        }
        match tool {
            LATEST_VITALS => self.patient_read(client, args, "Observation", "&category=vital-signs", "vitals", reads::latest_vitals, trail).await,
            ACTIVE_MEDICATIONS => self.patient_read(client, args, "MedicationRequest", "&status=active", "medications", reads::active, trail).await,
            READ_RESOURCE => {
                let ty = str_arg(args, "type")?;
                if !reads::resource_type(ty) {
                    return Err(refuse(400, "bad-arguments", "`type` is not a FHIR resource type"));
                }
                let id = reads::fhir_id(str_arg(args, "id")?, ty).ok_or_else(|| refuse(400, "bad-arguments", "`id` is not a FHIR id"))?;
                let mut found = self.read(client, args, ty, format!("/{ty}/{id}"), trail).await?;
                if found.is_empty() {
                    return Err(refuse(404, "not-found", format!("the EHR has no {ty}/{id}")));
                }
                trail.detail = format!("returned {ty}/{id}");
                Ok(found.swap_remove(0))
            }
            SEARCH_RESOURCES => {
                let ty = str_arg(args, "type")?;
                if !reads::resource_type(ty) {
                    return Err(refuse(400, "bad-arguments", "`type` is not a FHIR resource type"));
                }
                self.patient_read(client, args, ty, "", "resources", |all| all, trail).await
            }
            _ => self.run_action(client, args, trail).await,
        }
    }

    /// A patient's resources of `ty` (the search with `extra` parameters), those
    /// about that patient only, through `reduce`; answered as `{"patient", <key>: [...]}`.
    #[allow(clippy::too_many_arguments)]
    async fn patient_read(&self, client: &Client, args: &Value, ty: &str, extra: &str, key: &str, reduce: fn(Vec<Value>) -> Vec<Value>, trail: &mut Trail) -> Result<Value, Refusal> {
        let patient = patient_arg(args)?;
        let q = if ty == "Patient" { format!("/Patient?_id={patient}") } else { format!("/{ty}?patient={patient}{extra}&_count={}", self.max_results) };
        let found = self.read(client, args, ty, q, trail).await?;
        let kept = reduce(found.into_iter().filter(|r| reads::about(r, patient)).collect());
        trail.detail = format!("returned {} {ty}", kept.len());
        Ok(json!({"type": ty, "patient": format!("Patient/{patient}"), key: kept}))
    }

    /// The connection a read goes through: named, or the client's only one.
    fn connection_for<'a>(&self, client: &'a Client, args: &'a Value) -> Result<&'a str, Refusal> {
        match args.get("connection") {
            Some(_) => str_arg(args, "connection"),
            None if client.connections.len() == 1 => Ok(&client.connections[0]),
            None => Err(refuse(400, "bad-arguments", format!("`connection` is required (one of: {})", client.connections.join(", ")))),
        }
    }

    /// GET `path` on the connection, then the adapter's `map-fhir` over the
    /// resources of `ty` in the answer.
    async fn read(&self, client: &Client, args: &Value, ty: &str, path: String, trail: &mut Trail) -> Result<Vec<Value>, Refusal> {
        let connection = self.connection_for(client, args)?;
        trail.connection = connection.to_string();
        trail.method = "GET".into();
        trail.path = path.clone();
        if !client.may_use(connection) {
            return Err(refuse(403, "forbidden", format!("client `{}` may not use connection `{connection}`", client.id)));
        }
        if !client.may_read(ty) {
            return Err(refuse(403, "forbidden", format!("client `{}` may not read {ty}", client.id)));
        }
        let Some(mapper) = self.mappers.get(connection) else {
            return Err(refuse(403, "forbidden", format!("connection `{connection}` is not open to the agent door ([agent_door] connections)")));
        };
        let Some(conn) = self.connections.get(connection) else {
            return Err(refuse(503, "unavailable", format!("connection `{connection}` is not configured")));
        };
        let Some(adapter) = self.registry.get(mapper) else {
            return Err(refuse(503, "unavailable", format!("adapter `{mapper}` is not loaded")));
        };
        // Minimum necessary toward the EHR: a token for reading this one type, if
        // the adapter declares that much on the connection.
        let declared: Vec<String> = adapter.info().connections.iter().filter(|n| n.name == connection).flat_map(|n| n.scopes.clone()).collect();
        let scopes = ehrgate_connect::intersect_scopes(&[format!("system/{ty}.read")], &declared);
        if scopes.is_empty() {
            return Err(refuse(403, "forbidden", format!("adapter `{mapper}` declares no read scope for {ty} on `{connection}`")));
        }
        let req = HttpRequest { connection: connection.to_string(), method: "GET".into(), path, headers: vec![], body: None, idempotency_key: None };
        let t = Instant::now();
        let sent = conn.send(req, &scopes).await;
        trail.upstream_us = t.elapsed().as_micros() as u64;
        let resp = match sent {
            Ok(r) => r,
            // The gateway's own set-up refused it (egress rules, the connection's scopes).
            Err(HttpError::Denied(m)) => return Err(refuse(502, "gateway-refused", m)),
            Err(HttpError::Timeout) => return Err(refuse(504, "upstream-timeout", format!("the EHR did not answer in time on `{connection}`"))),
            Err(HttpError::Unavailable(m)) => {
                let wait = conn.paused_for().map(whole_seconds);
                return Err(Refusal { status: 503, code: "upstream-unavailable", message: m, retry_after_s: wait.or(Some(5)) });
            }
            Err(HttpError::Invalid(m)) => return Err(refuse(400, "bad-arguments", m)),
        };
        trail.upstream = Some(resp.status);
        match resp.status {
            200 => {}
            404 | 410 => return Err(refuse(404, "not-found", format!("the EHR answered {} for {ty}", resp.status))),
            429 | 503 => {
                let wait = conn.paused_for().map(whole_seconds).unwrap_or(5);
                return Err(Refusal { status: 503, code: "upstream-busy", message: format!("the EHR is busy ({}) after retries; try again in {wait} s", resp.status), retry_after_s: Some(wait) });
            }
            s => return Err(refuse(502, "upstream-error", format!("the EHR answered {s}"))),
        }
        let body: Value = serde_json::from_slice(&resp.body).map_err(|_| refuse(502, "upstream-error", "the EHR's answer is not JSON"))?;
        let mut found = reads::resources_of(&body, ty);
        found.truncate(self.max_results);
        if found.is_empty() {
            return Ok(found);
        }
        let lines: Vec<String> = found.iter().map(Value::to_string).collect();
        let mapped = adapter.map_fhir(&lines).await.map_err(|e| refuse(502, "mapping-failed", format!("adapter `{mapper}` could not map the answer: {e}")))?;
        Ok(mapped.resources.iter().filter_map(|r| serde_json::from_str::<Value>(r).ok()).filter(|r| r.get("resourceType").and_then(Value::as_str) == Some(ty)).collect())
    }

    async fn run_action(&self, client: &Client, args: &Value, trail: &mut Trail) -> Result<Value, Refusal> {
        let name = str_arg(args, "action")?;
        trail.method = "ACTION".into();
        trail.path = name.to_string();
        let Some((adapter_name, action)) = name.split_once('.') else {
            return Err(refuse(400, "bad-arguments", "`action` must be `adapter.action`"));
        };
        if !client.may_run(adapter_name, action) {
            return Err(refuse(403, "forbidden", format!("client `{}` may not run `{name}`", client.id)));
        }
        let input = match args.get("input") {
            Some(v @ Value::Object(_)) => v.to_string(),
            _ => return Err(refuse(400, "bad-arguments", "`input` must be a JSON object")),
        };
        // What was asked to be written, for the audit: the references in the input.
        let refs: Vec<&str> = args["input"].as_object().map(|m| m.values().filter_map(Value::as_str).filter(|s| s.contains('/')).collect()).unwrap_or_default();
        trail.detail = format!("input {}", refs.join(" "));
        let Some(adapter) = self.registry.get(adapter_name) else {
            return Err(refuse(503, "unavailable", format!("adapter `{adapter_name}` is not loaded")));
        };
        if !adapter.info().actions.iter().any(|a| a == action) {
            return Err(refuse(404, "unknown-action", format!("adapter `{adapter_name}` has no action `{action}`")));
        }
        let t = Instant::now();
        let ran = adapter.run_action(action, &input).await;
        trail.upstream_us = t.elapsed().as_micros() as u64;
        match ran {
            Ok(out) => {
                let v = serde_json::from_str(&out).unwrap_or(Value::String(out));
                Ok(json!({"action": name, "result": v}))
            }
            Err(CallError::Adapter { error: AdapterError::Transient(why), .. }) => Err(Refusal { status: 503, code: "upstream-unavailable", message: why, retry_after_s: Some(5) }),
            Err(CallError::Adapter { error: AdapterError::InvalidInput(e), .. }) => {
                let at = e.location.map(|l| format!(" (at {l})")).unwrap_or_default();
                Err(refuse(422, "invalid-input", format!("{}{at}", e.message)))
            }
            Err(CallError::Adapter { error: AdapterError::Unsupported(why), .. }) => Err(refuse(422, "unsupported", why)),
            Err(e) => Err(refuse(500, "adapter-failed", e.to_string())),
        }
    }
}

/// Every resource in a tool's answer through the client's masking profile (and the
/// answer's own `patient` reference pseudonymised when the profile pseudonymises).
fn mask_answer(m: &ehrgate_govern::mask::Masker, v: &mut Value) {
    // An action's result is whatever the adapter answered: not shown to a masked client.
    if let Value::Object(o) = v
        && o.contains_key("action")
        && let Some(r) = o.get_mut("result")
    {
        *r = json!("(withheld: the client's masking profile)");
        return;
    }
    match v {
        Value::Object(o) if o.contains_key("resourceType") => m.mask_value(v),
        Value::Object(o) => {
            for (k, child) in o.iter_mut() {
                match child {
                    Value::String(r) if k == "patient" && m.ids == ehrgate_govern::mask::Op::Pseudonym => *r = m.key.pseudonym_ref(r),
                    _ => mask_answer(m, child),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| mask_answer(m, i)),
        _ => {}
    }
}
