//! Which runs a mapped unit triggers. Pure: the same unit and configuration give
//! the same runs, so a replayed unit triggers the same runs again (same ids).
//!
//! Rules:
//! - an HL7 unit of a message type in `on`, whose fields meet every `when`
//!   condition, triggers the workflow; so does any unit (an HL7 message, a webhook
//!   event) that maps to a resource `on_resource` names, in one of its statuses
//!   (the Encounter that a webhook reports `finished`): the units that go through
//!   the flow, from MLLP listeners and webhooks (file drops and bulk exports do not
//!   trigger workflows yet);
//! - the action's input is the unit's own mapped Patient and Encounter (`patient`,
//!   `encounter` references) plus the workflow's `input` members: an A03 carries its
//!   PID and PV1, so it does not wait for (or need) the A01 before it;
//! - no Encounter mapped from the unit: no run (a warning), as the action is keyed
//!   on the encounter;
//! - the run id is a UUIDv5 of (workflow, message type or `Type:status`,
//!   encounter): the same event resent, replayed or re-read is the same run, and
//!   runs once; an Encounter reported `finished` again is the same run.

use ehrgate_ingest::{Unit, UnitKind};
use ehrgate_lake::{BronzeDetail, SilverRow, WorkflowRunRow, now_micros};
use serde_json::{Map, Value};

use crate::spec::WorkflowSpec;

/// The system run ids are scoped by.
const RUN_SYSTEM: &str = "urn:ehrgate:workflow-run";

/// Whether `unit`'s fields meet `spec`'s conditions.
fn conditions_hold(spec: &WorkflowSpec, unit: &Unit) -> bool {
    if spec.when.is_empty() {
        return true;
    }
    let Ok(m) = ehrgate_sdk::hl7::Message::parse(&unit.text) else { return false };
    spec.when.iter().all(|(path, allowed)| {
        let v = m.get(path).map(|v| v.trim().to_string()).unwrap_or_default();
        allowed.iter().any(|a| if a == "*" { !v.is_empty() } else { *a == v })
    })
}

/// The runs `unit` triggers among `specs`; `resources` are what it mapped to.
pub fn evaluate(specs: &[WorkflowSpec], unit: &Unit, resources: &[&SilverRow]) -> Vec<WorkflowRunRow> {
    let message_type = match (&unit.kind, &unit.bronze.detail) {
        (UnitKind::Hl7, BronzeDetail::Hl7 { message_type: Some(t), .. }) => Some(t.as_str()),
        _ => None,
    };
    let first = |t: &str| resources.iter().find(|r| r.resource_type == t && !r.deleted).map(|r| format!("{t}/{}", r.id));
    let mut runs = Vec::new();
    for spec in specs {
        // HL7: the message type, then the field conditions.
        if let Some(mt) = message_type
            && spec.on.iter().any(|t| t == mt)
            && conditions_hold(spec, unit)
        {
            match first("Encounter") {
                Some(encounter) => runs.push(run(spec, unit, mt, encounter, first("Patient"))),
                None => tracing::warn!(workflow = %spec.name, record = %unit.bronze.record_id, "{mt} mapped to no Encounter: no run"),
            }
        }
        // A resource in a status that counts.
        for t in &spec.on_resource {
            for r in resources.iter().filter(|r| r.resource_type == t.resource_type && !r.deleted) {
                let status = r.status.as_deref().unwrap_or_default();
                if !t.status.is_empty() && !t.status.iter().any(|s| s == status) {
                    continue;
                }
                let encounter = if r.resource_type == "Encounter" { Some(format!("Encounter/{}", r.id)) } else { r.encounter_ref.clone() };
                let Some(encounter) = encounter else {
                    tracing::warn!(workflow = %spec.name, record = %unit.bronze.record_id, "a {} with no encounter: no run", r.resource_type);
                    continue;
                };
                let trigger = format!("{}:{status}", r.resource_type);
                runs.push(run(spec, unit, &trigger, encounter, r.patient_ref.clone().or_else(|| first("Patient"))));
            }
        }
    }
    runs
}

/// A pending run of `spec` for `encounter`, triggered by `trigger` in `unit`.
fn run(spec: &WorkflowSpec, unit: &Unit, trigger: &str, encounter: String, patient: Option<String>) -> WorkflowRunRow {
    let mut input = spec.input.as_ref().and_then(Value::as_object).cloned().unwrap_or_else(Map::new);
    input.insert("encounter".into(), Value::String(encounter.clone()));
    if let Some(p) = &patient {
        input.insert("patient".into(), Value::String(p.clone()));
    }
    WorkflowRunRow {
        run_id: ehrgate_sdk::ids::resource_id_parts("WorkflowRun", RUN_SYSTEM, &[&spec.name, trigger, &encounter]),
        recorded_at: now_micros(),
        workflow: spec.name.clone(),
        status: "pending".into(),
        attempts: 0,
        trigger: trigger.to_string(),
        source: unit.bronze.source.clone(),
        lineage: unit.bronze.record_id.clone(),
        received_at: unit.bronze.received_at,
        patient_ref: patient,
        encounter_ref: Some(encounter),
        adapter: spec.adapter.clone(),
        action: spec.action.clone(),
        input: Value::Object(input).to_string(),
        deadline_at: unit.bronze.received_at.saturating_add((spec.deadline_s as i64).saturating_mul(1_000_000)),
        next_attempt_at: None,
        completed_at: None,
        error: None,
        response: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ehrgate_lake::Receipt;

    fn spec(when: &[(&str, &[&str])]) -> WorkflowSpec {
        WorkflowSpec {
            name: "discharge".into(),
            on: vec!["ADT^A03".into()],
            on_resource: Vec::new(),
            when: when.iter().map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect())).collect(),
            adapter: "epic".into(),
            action: "discharge-checklist".into(),
            input: Some(serde_json::json!({"tasks": ["home-health-referral"]})),
            retry: Default::default(),
            deadline_s: 60,
            sla_s: 300,
        }
    }

    fn unit(msg: &str) -> Unit {
        ehrgate_ingest::hl7_unit(msg.as_bytes().to_vec(), "mllp:main", 1_000, 1)
    }

    fn rows(kinds: &[(&str, &str)]) -> Vec<SilverRow> {
        kinds
            .iter()
            .map(|(t, id)| SilverRow::from_json(&format!(r#"{{"resourceType":"{t}","id":"{id}"}}"#), "epic@1", "l", Receipt::at(0)).unwrap())
            .collect()
    }

    const A03: &str = "MSH|^~\\&|EPIC|H|||20240101120000||ADT^A03|9|P|2.5\rPID|1||1^^^H^MR\rPV1|1|I|W^1^1||||||||||||||||V1";

    #[test]
    fn an_a03_triggers_one_run_keyed_by_its_encounter() {
        let r = rows(&[("Patient", "p1"), ("Encounter", "e1")]);
        let refs: Vec<&SilverRow> = r.iter().collect();
        let runs = evaluate(&[spec(&[])], &unit(A03), &refs);
        assert_eq!(runs.len(), 1);
        let run = &runs[0];
        assert_eq!((run.status.as_str(), run.trigger.as_str(), run.received_at), ("pending", "ADT^A03", 1_000));
        let input: Value = serde_json::from_str(&run.input).unwrap();
        assert_eq!(input, serde_json::json!({"patient": "Patient/p1", "encounter": "Encounter/e1", "tasks": ["home-health-referral"]}));
        // The same event again (resent: another control id, another receipt): the same run.
        let again = evaluate(&[spec(&[])], &unit(&A03.replace("|9|P|", "|10|P|")), &refs);
        assert_eq!(again[0].run_id, run.run_id);
        // Another encounter: another run.
        let r2 = rows(&[("Patient", "p1"), ("Encounter", "e2")]);
        assert_ne!(evaluate(&[spec(&[])], &unit(A03), &r2.iter().collect::<Vec<_>>())[0].run_id, run.run_id);
    }

    #[test]
    fn conditions_types_and_missing_encounters() {
        let r = rows(&[("Patient", "p1"), ("Encounter", "e1")]);
        let refs: Vec<&SilverRow> = r.iter().collect();
        assert_eq!(evaluate(&[spec(&[("PV1-2", &["I", "E"])])], &unit(A03), &refs).len(), 1);
        assert!(evaluate(&[spec(&[("PV1-2", &["O"])])], &unit(A03), &refs).is_empty(), "an outpatient");
        assert_eq!(evaluate(&[spec(&[("PV1-19", &["*"])])], &unit(A03), &refs).len(), 1);
        assert!(evaluate(&[spec(&[("PV1-45", &["*"])])], &unit(A03), &refs).is_empty(), "empty");
        assert!(evaluate(&[spec(&[])], &unit(&A03.replace("ADT^A03", "ADT^A01")), &refs).is_empty());
        let no_enc = rows(&[("Patient", "p1")]);
        assert!(evaluate(&[spec(&[])], &unit(A03), &no_enc.iter().collect::<Vec<_>>()).is_empty());
    }

    #[test]
    fn a_finished_encounter_from_a_webhook_triggers_once() {
        let mut s = spec(&[]);
        s.on.clear();
        s.on_resource = vec![crate::spec::ResourceTrigger { resource_type: "Encounter".into(), status: vec!["finished".into()] }];
        let enc = |status: &str| {
            SilverRow::from_json(
                &format!(r#"{{"resourceType":"Encounter","id":"e9","status":"{status}","subject":{{"reference":"Patient/p9"}}}}"#),
                "epic@1",
                "l",
                Receipt::at(0),
            )
            .unwrap()
        };
        let event = ehrgate_ingest::event_unit(b"{}".to_vec(), "epic-events", Some("ev1".into()), 5, 1);
        let (done, open) = (enc("finished"), enc("in-progress"));
        let runs = evaluate(&[s.clone()], &event, &[&done]);
        assert_eq!(runs.len(), 1);
        assert_eq!((runs[0].trigger.as_str(), runs[0].patient_ref.as_deref(), runs[0].encounter_ref.as_deref()), ("Encounter:finished", Some("Patient/p9"), Some("Encounter/e9")));
        assert!(evaluate(&[s.clone()], &event, &[&open]).is_empty(), "not finished yet");
        let again = ehrgate_ingest::event_unit(b"{}".to_vec(), "epic-events", Some("ev2".into()), 9, 2);
        assert_eq!(evaluate(&[s], &again, &[&done])[0].run_id, runs[0].run_id, "reported finished again: the same run");
    }
}
