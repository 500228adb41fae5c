//! A candidate version beside the active one: which units a canary takes, and
//! what a shadow would have changed.

use std::collections::HashMap;

use ehrgate_lake::{BronzeDetail, ShadowDiffRow, SilverRow, now_micros};

use crate::pipeline::Mapped;
use crate::units::Unit;

/// The key a canary splits on: an HL7 message's control id (MSH-10), else the
/// unit's content hash — so a resent or replayed unit goes to the same version.
pub fn unit_key(u: &Unit) -> &str {
    match &u.bronze.detail {
        BronzeDetail::Hl7 { control_id: Some(c), .. } if !c.is_empty() => c,
        _ => &u.bronze.content_hash,
    }
}

fn message_type(u: &Unit) -> String {
    match &u.bronze.detail {
        BronzeDetail::Hl7 { message_type: Some(t), .. } => t.clone(),
        _ => u.kind.as_str().to_string(),
    }
}

/// One row per unit comparing the active version's output with the candidate's,
/// resource by resource (type and id; content compared as the JSON text the
/// adapters produced).
pub fn shadow_diffs(units: &[Unit], adapter: &str, active_version: &str, candidate_version: &str, active: &Mapped, candidate: &Mapped) -> Vec<ShadowDiffRow> {
    fn by_unit(m: &Mapped) -> HashMap<&str, Vec<&SilverRow>> {
        let mut out: HashMap<&str, Vec<&SilverRow>> = HashMap::new();
        for r in &m.silver {
            out.entry(r.lineage.as_str()).or_default().push(r);
        }
        out
    }
    let (a_rows, c_rows) = (by_unit(active), by_unit(candidate));
    let errors = |m: &Mapped, with_message: bool| -> HashMap<String, String> {
        m.quarantined
            .iter()
            .map(|q| (q.id.clone(), if with_message { format!("{}: {}", q.error_kind, q.error_message) } else { q.error_kind.clone() }))
            .collect()
    };
    let (a_err, c_err) = (errors(active, false), errors(candidate, true));
    let at = now_micros();
    units
        .iter()
        .map(|u| {
            let lineage = u.bronze.lineage();
            let a: HashMap<(&str, &str), &str> = a_rows.get(lineage.as_str()).into_iter().flatten().map(|r| ((r.resource_type.as_str(), r.id.as_str()), r.resource.as_str())).collect();
            let c: HashMap<(&str, &str), &str> = c_rows.get(lineage.as_str()).into_iter().flatten().map(|r| ((r.resource_type.as_str(), r.id.as_str()), r.resource.as_str())).collect();
            let (mut added, mut changed, mut unchanged) = (0, 0, 0);
            for (k, json) in &c {
                match a.get(k) {
                    None => added += 1,
                    Some(other) if other == json => unchanged += 1,
                    Some(_) => changed += 1,
                }
            }
            let removed = a.keys().filter(|k| !c.contains_key(*k)).count() as i64;
            ShadowDiffRow {
                at,
                adapter: adapter.to_string(),
                active_version: active_version.to_string(),
                candidate_version: candidate_version.to_string(),
                record_id: u.bronze.record_id.clone(),
                message_type: Some(message_type(u)),
                active_resources: a.len() as i64,
                candidate_resources: c.len() as i64,
                added,
                removed,
                changed,
                unchanged,
                active_error: a_err.get(&u.bronze.record_id).cloned(),
                candidate_error: c_err.get(&u.bronze.record_id).cloned(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ehrgate_lake::QuarantineRow;

    fn unit(i: u64) -> Unit {
        crate::units::hl7_unit(format!("MSH|^~\\&|A|B|C|D|20240101||ADT^A01|C{i}|P|2.5\r").into_bytes(), "mllp:1", 0, i)
    }

    fn row(u: &Unit, ty: &str, id: &str, json: &str) -> SilverRow {
        let mut r = SilverRow::from_json(&format!(r#"{{"resourceType":"{ty}","id":"{id}","x":"{json}"}}"#), "a@1", &u.bronze.lineage(), u.bronze.receipt()).unwrap();
        r.resource = json.to_string();
        r
    }

    #[test]
    fn diffs_count_added_removed_changed_and_unchanged_per_unit() {
        let units = vec![unit(1), unit(2)];
        let (u1, u2) = (&units[0], &units[1]);
        assert_eq!(unit_key(u1), "C1");
        let active = Mapped {
            silver: vec![row(u1, "Patient", "p", "same"), row(u1, "Encounter", "e", "old"), row(u1, "Observation", "gone", "x")],
            quarantined: vec![],
        };
        let mut q = QuarantineRow {
            id: u2.bronze.record_id.clone(),
            quarantined_at: 0,
            input_kind: "hl7".into(),
            source: "mllp:1".into(),
            adapter: "a@2".into(),
            error_kind: "invalid-input".into(),
            error_message: "bad PID-3".into(),
            location: None,
            lineage: None,
            raw: vec![],
            reprocessed_at: None,
            reprocess_outcome: None,
        };
        q.adapter = "a@2".into();
        let candidate = Mapped {
            silver: vec![row(u1, "Patient", "p", "same"), row(u1, "Encounter", "e", "new"), row(u1, "Condition", "c", "y")],
            quarantined: vec![q],
        };
        let d = shadow_diffs(&units, "a", "1", "2", &active, &candidate);
        assert_eq!((d[0].added, d[0].removed, d[0].changed, d[0].unchanged), (1, 1, 1, 1));
        assert_eq!((d[0].active_resources, d[0].candidate_resources), (3, 3));
        assert_eq!(d[0].message_type.as_deref(), Some("ADT^A01"));
        assert_eq!(d[1].candidate_resources, 0);
        assert_eq!(d[1].candidate_error.as_deref(), Some("invalid-input: bad PID-3"));
        assert_eq!(d[1].active_error, None);
    }
}
