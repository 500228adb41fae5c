//! Which runs a mapped unit triggers. Pure: the same unit and configuration give
//! the same runs, so a replayed unit triggers the same runs again (same ids).
//!
//! Rules:
//! - an HL7 unit of a message type in `on`, whose fields meet every `when`
//!   condition, triggers the workflow, from any source (MLLP, file drop, webhook);
//! - the action's input is the unit's own mapped Patient and Encounter (`patient`,
//!   `encounter` references) plus the workflow's `input` members: an A03 carries its
//!   PID and PV1, so it does not wait for (or need) the A01 before it;
//! - no Encounter mapped from the unit: no run (a warning), as the action is keyed
//!   on the encounter;
//! - the run id is a UUIDv5 of (workflow, message type, encounter): the same event
//!   resent, replayed or re-read is the same run, and runs once.

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
    if unit.kind != UnitKind::Hl7 {
        return Vec::new();
    }
    let BronzeDetail::Hl7 { message_type: Some(message_type), .. } = &unit.bronze.detail else { return Vec::new() };
    let first = |t: &str| resources.iter().find(|r| r.resource_type == t && !r.deleted).map(|r| format!("{t}/{}", r.id));
    let mut runs = Vec::new();
    for spec in specs.iter().filter(|s| s.on.iter().any(|t| t == message_type)) {
        if !conditions_hold(spec, unit) {
            continue;
        }
        let Some(encounter) = first("Encounter") else {
            tracing::warn!(workflow = %spec.name, record = %unit.bronze.record_id, "{message_type} mapped to no Encounter: no run");
            continue;
        };
        let patient = first("Patient");
        let mut input = spec.input.as_ref().and_then(Value::as_object).cloned().unwrap_or_else(Map::new);
        input.insert("encounter".into(), Value::String(encounter.clone()));
        if let Some(p) = &patient {
            input.insert("patient".into(), Value::String(p.clone()));
        }
        runs.push(WorkflowRunRow {
            run_id: ehrgate_sdk::ids::resource_id_parts("WorkflowRun", RUN_SYSTEM, &[&spec.name, message_type, &encounter]),
            recorded_at: now_micros(),
            workflow: spec.name.clone(),
            status: "pending".into(),
            attempts: 0,
            trigger: message_type.clone(),
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
        });
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;
    use ehrgate_lake::Receipt;

    fn spec(when: &[(&str, &[&str])]) -> WorkflowSpec {
        WorkflowSpec {
            name: "discharge".into(),
            on: vec!["ADT^A03".into()],
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
}
