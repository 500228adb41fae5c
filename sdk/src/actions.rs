//! Workflow actions shared by EHR adapters.
//!
//! [`discharge_checklist`]: create the follow-up Tasks of a discharge (a home-health
//! referral and a medication reconciliation) for an Encounter in the EHR, through the
//! host's `http` import, exactly once however often the action is retried.
//!
//! Exactly once is built from three layers, each enough on its own for the failure it
//! covers:
//! - every Task has an **idempotency key** derived from the encounter and the task kind
//!   (UUIDv5, [`task_key`]), the same on every attempt: the host retries a POST only
//!   with a key, and de-duplicates by it;
//! - the POST carries `If-None-Exist: identifier=<system>|<value>` (FHIR conditional
//!   create) with the same business identifier in the Task, so an EHR that already has
//!   the Task answers with it instead of creating a second one (a response lost after
//!   the EHR committed);
//! - a created Task is remembered in adapter state (`discharge-task/<key>`: only the
//!   key and the EHR's Task id, no PHI), so a re-run of the action does not POST again.
//!
//! A retryable failure (5xx, 408, 429, timeout, host `unavailable`) stops the run with
//! [`AdapterError::Transient`]: the gateway retries the action later, and the Tasks
//! created before the failure are skipped then.

use serde_json::{Value, json};

use crate::adapter::AdapterError;
use crate::host::{self, HttpError, HttpRequest, Level};
use crate::ids;
use crate::site::{config, config_flag};

/// The system of the business identifier every checklist Task carries.
pub const TASK_IDENTIFIER_SYSTEM: &str = "urn:ehrgate:discharge-checklist";

/// One kind of checklist Task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskKind {
    /// Short code, e.g. `home-health-referral`.
    pub code: &'static str,
    /// What the Task asks for (Task.description and code text).
    pub description: &'static str,
}

/// The Tasks a discharge checklist creates, in order.
pub const DISCHARGE_TASKS: &[TaskKind] = &[
    TaskKind { code: "home-health-referral", description: "Home health referral" },
    TaskKind { code: "medication-reconciliation", description: "Medication reconciliation" },
];

/// Where and how an EHR takes Tasks. Read with [`TaskApi::from_config`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskApi {
    /// The connection name passed to `http.send` (config `discharge.connection`,
    /// default `ehr`).
    pub connection: String,
    /// The Task create path relative to the connection's base URL (config
    /// `discharge.task-path`, default `/Task`).
    pub task_path: String,
    /// Send `If-None-Exist` (config `discharge.conditional-create`, default true).
    pub conditional_create: bool,
    /// Extra `meta.profile` for the Task (config `discharge.task-profile`).
    pub profile: Option<String>,
}

impl TaskApi {
    pub fn from_config() -> TaskApi {
        TaskApi {
            connection: config("discharge.connection").unwrap_or_else(|| "ehr".into()),
            task_path: config("discharge.task-path").unwrap_or_else(|| "/Task".into()),
            conditional_create: config_flag("discharge.conditional-create", true),
            profile: config("discharge.task-profile"),
        }
    }
}

/// The input of the action: `{"encounter": "Encounter/<id>" | "<id>", "patient":
/// "Patient/<id>" | "<id>", "tasks": ["home-health-referral", ...]?, "requester":
/// "Practitioner/<id>"?}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DischargeInput {
    pub encounter: String,
    pub patient: String,
    pub tasks: Vec<TaskKind>,
    pub requester: Option<String>,
}

fn reference(v: Option<&Value>, ty: &str, field: &str) -> Result<Option<String>, AdapterError> {
    let Some(v) = v else { return Ok(None) };
    let s = v
        .as_str()
        .or_else(|| v.get("reference").and_then(Value::as_str))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| AdapterError::invalid(format!("`{field}` must be a reference string"), Some(&format!("/{field}"))))?;
    let id = s.strip_prefix(&format!("{ty}/")).unwrap_or(s);
    let valid = !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if !valid {
        return Err(AdapterError::invalid(format!("`{field}` is not a {ty} reference or id"), Some(&format!("/{field}"))));
    }
    Ok(Some(format!("{ty}/{id}")))
}

impl DischargeInput {
    pub fn parse(input: &str) -> Result<DischargeInput, AdapterError> {
        let v: Value = serde_json::from_str(input).map_err(|_| AdapterError::invalid("action input is not JSON", None))?;
        if !v.is_object() {
            return Err(AdapterError::invalid("action input is not a JSON object", None));
        }
        let encounter = reference(v.get("encounter"), "Encounter", "encounter")?
            .ok_or_else(|| AdapterError::invalid("`encounter` is required", Some("/encounter")))?;
        let patient = reference(v.get("patient"), "Patient", "patient")?
            .ok_or_else(|| AdapterError::invalid("`patient` is required", Some("/patient")))?;
        let requester = match v.get("requester") {
            Some(r) => {
                let s = r.as_str().unwrap_or_default();
                let ty = s.split('/').next().unwrap_or_default();
                if !matches!(ty, "Practitioner" | "PractitionerRole" | "Organization") {
                    return Err(AdapterError::invalid("`requester` must be a Practitioner, PractitionerRole or Organization reference", Some("/requester")));
                }
                reference(Some(r), ty, "requester")?
            }
            None => None,
        };
        let tasks = match v.get("tasks") {
            None => DISCHARGE_TASKS.to_vec(),
            Some(Value::Array(a)) => {
                let mut out = Vec::new();
                for (i, t) in a.iter().enumerate() {
                    let code = t.as_str().unwrap_or_default();
                    let kind = DISCHARGE_TASKS.iter().find(|k| k.code == code).ok_or_else(|| {
                        AdapterError::invalid(
                            format!("unknown task kind (known: {})", DISCHARGE_TASKS.iter().map(|k| k.code).collect::<Vec<_>>().join(", ")),
                            Some(&format!("/tasks/{i}")),
                        )
                    })?;
                    if !out.contains(kind) {
                        out.push(kind.clone());
                    }
                }
                if out.is_empty() {
                    return Err(AdapterError::invalid("`tasks` is empty", Some("/tasks")));
                }
                out
            }
            Some(_) => return Err(AdapterError::invalid("`tasks` must be an array of task kinds", Some("/tasks"))),
        };
        Ok(DischargeInput { encounter, patient, tasks, requester })
    }
}

/// The idempotency key (and business identifier value) of one checklist Task: stable
/// for an (encounter, kind) pair across attempts, runs and gateway restarts.
pub fn task_key(encounter: &str, kind: &str) -> String {
    ids::resource_id_parts("Task", TASK_IDENTIFIER_SYSTEM, &[encounter, kind])
}

/// The Task resource to create (no `id`: the EHR assigns it). The body is the same on
/// every attempt (no timestamps), so a replay is byte-identical.
pub fn task_body(input: &DischargeInput, kind: &TaskKind, vendor: &str, api: &TaskApi) -> Value {
    let key = task_key(&input.encounter, kind.code);
    let mut t = json!({
        "resourceType": "Task",
        "identifier": [{"system": TASK_IDENTIFIER_SYSTEM, "value": key}],
        "status": "requested",
        "intent": "order",
        "priority": "routine",
        "code": {
            "coding": [{"system": TASK_IDENTIFIER_SYSTEM, "code": kind.code, "display": kind.description}],
            "text": kind.description
        },
        "description": format!("Discharge checklist: {}", kind.description),
        "focus": {"reference": input.encounter},
        "for": {"reference": input.patient},
        "encounter": {"reference": input.encounter},
        "meta": {"source": format!("urn:ehrgate:adapter:{vendor}")}
    });
    if let Some(r) = &input.requester {
        t["requester"] = json!({"reference": r});
    }
    if let Some(p) = &api.profile {
        t["meta"]["profile"] = json!([p]);
    }
    t
}

fn state_key(key: &str) -> String {
    format!("discharge-task/{key}")
}

/// Run the discharge checklist for `input` (JSON, see [`DischargeInput`]) against
/// the configured Task API; `vendor` names the adapter in `meta.source`. Returns JSON:
/// `{"encounter", "tasks": [{"kind", "key", "outcome": "created" | "existing" |
/// "already-done", "id"?}]}`.
pub fn discharge_checklist(vendor: &str, input: &str) -> Result<String, AdapterError> {
    let input = DischargeInput::parse(input)?;
    let api = TaskApi::from_config();
    let mut results = Vec::new();
    for kind in &input.tasks {
        let key = task_key(&input.encounter, kind.code);
        if let Some(done) = host::state_get(&state_key(&key)) {
            let id = String::from_utf8(done).ok().filter(|s| !s.is_empty());
            results.push(json!({"kind": kind.code, "key": key, "outcome": "already-done", "id": id}));
            continue;
        }
        let body = task_body(&input, kind, vendor, &api);
        let mut headers = vec![
            ("Content-Type".to_string(), "application/fhir+json".to_string()),
            ("Accept".to_string(), "application/fhir+json".to_string()),
        ];
        if api.conditional_create {
            headers.push(("If-None-Exist".into(), format!("identifier={TASK_IDENTIFIER_SYSTEM}|{key}")));
        }
        let req = HttpRequest {
            connection: api.connection.clone(),
            method: "POST".into(),
            path: api.task_path.clone(),
            headers,
            body: Some(body.to_string().into_bytes()),
            idempotency_key: Some(key.clone()),
        };
        let resp = match host::http_send(req) {
            Ok(r) => r,
            Err(HttpError::Timeout) => return Err(transient(kind, "the EHR did not answer in time")),
            Err(HttpError::Unavailable(m)) => return Err(transient(kind, &m)),
            Err(HttpError::Denied(m)) => {
                return Err(AdapterError::Unsupported(format!("creating Tasks is not granted to this adapter: {m}")));
            }
            Err(HttpError::Invalid(m)) => return Err(AdapterError::invalid(format!("Task request refused by the host: {m}"), None)),
        };
        match resp.status {
            200 | 201 => {
                let id = task_id(&resp.body, resp.header("location"));
                let outcome = if resp.status == 201 { "created" } else { "existing" };
                if host::state_set(&state_key(&key), id.as_deref().unwrap_or_default().as_bytes()).is_err() {
                    host::log(Level::Warn, "discharge-checklist: could not record a created Task in state");
                }
                host::counter_add(&format!("discharge_tasks_{outcome}"), 1);
                results.push(json!({"kind": kind.code, "key": key, "outcome": outcome, "id": id}));
            }
            408 | 425 | 429 | 500..=599 => {
                return Err(transient(kind, &format!("the EHR answered {}", resp.status)));
            }
            s => {
                return Err(AdapterError::invalid(
                    format!("the EHR refused the {} Task with status {s}", kind.code),
                    Some("/encounter"),
                ));
            }
        }
    }
    let mut out = json!({"encounter": input.encounter, "tasks": results});
    strip_nulls(&mut out);
    Ok(out.to_string())
}

fn transient(kind: &TaskKind, why: &str) -> AdapterError {
    host::counter_add("discharge_tasks_transient", 1);
    AdapterError::Transient(format!("creating the {} Task failed for now ({why}); retry the action", kind.code))
}

/// The EHR's id of the Task: the body's `id`, else the last segment of the
/// `Location` path before `/_history`.
fn task_id(body: &[u8], location: Option<&str>) -> Option<String> {
    if let Ok(v) = serde_json::from_slice::<Value>(body)
        && let Some(id) = v.get("id").and_then(Value::as_str)
    {
        return Some(id.to_owned());
    }
    let loc = location?;
    let path = loc.split("/_history").next()?;
    path.rsplit('/').next().filter(|s| !s.is_empty()).map(str::to_owned)
}

fn strip_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, v| !v.is_null());
            m.values_mut().for_each(strip_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_is_checked_without_echoing_values() {
        let ok = DischargeInput::parse(r#"{"encounter":"Encounter/e1","patient":"p1"}"#).unwrap();
        assert_eq!(ok.encounter, "Encounter/e1");
        assert_eq!(ok.patient, "Patient/p1");
        assert_eq!(ok.tasks.len(), 2);
        for (bad, loc) in [
            (r#"{"patient":"p1"}"#, "/encounter"),
            (r#"{"encounter":"e1"}"#, "/patient"),
            (r#"{"encounter":"a b","patient":"p"}"#, "/encounter"),
            (r#"{"encounter":"e","patient":"p","tasks":["Secret"]}"#, "/tasks/0"),
            (r#"{"encounter":"e","patient":"p","requester":"Patient/x"}"#, "/requester"),
        ] {
            match DischargeInput::parse(bad) {
                Err(AdapterError::InvalidInput { location, message }) => {
                    assert_eq!(location.as_deref(), Some(loc), "{bad}");
                    assert!(!message.contains("Secret"));
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn keys_are_stable_and_distinct() {
        assert_eq!(task_key("Encounter/1", "a"), task_key("Encounter/1", "a"));
        assert_ne!(task_key("Encounter/1", "a"), task_key("Encounter/2", "a"));
        assert_ne!(task_key("Encounter/1", "a"), task_key("Encounter/1", "b"));
    }

    #[test]
    fn task_id_from_body_or_location() {
        assert_eq!(task_id(br#"{"id":"t9"}"#, None).as_deref(), Some("t9"));
        assert_eq!(task_id(b"", Some("https://x/r4/t/Task/42/_history/1")).as_deref(), Some("42"));
        assert_eq!(task_id(b"", None), None);
    }
}
