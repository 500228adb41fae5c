//! Retention (`ehrgate lake retain`) and purges (`ehrgate lake purge --patient`):
//! rows deleted, the files that held them vacuumed, and an attestation row in the
//! audit table for each table touched.

use ehrgate_lake::removal::{self, Removal};
use ehrgate_lake::{AuditRow, Lake, Table};
use serde::Deserialize;

use crate::GovernError;
use crate::policy::Principal;

/// One retention rule of `[[governance.retention]]`.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionRule {
    /// Tables by SQL name (`bronze_hl7_messages`, `silver_*`). The audit table is
    /// never retained (its chain starts at its first row).
    pub tables: Vec<String>,
    /// Rows older than this many days are deleted.
    pub days: u64,
    /// `ingest` (when the row was received or written; default) or `clinical`
    /// (silver's `effective_at`; rows without one are kept).
    #[serde(default)]
    pub by: RetainBy,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RetainBy {
    #[default]
    Ingest,
    Clinical,
}

/// The time column a rule compares, for the table at `path`.
fn time_column(path: &str, by: RetainBy) -> Option<&'static str> {
    let silver = path.starts_with("silver/");
    match (by, path) {
        (RetainBy::Clinical, _) if silver => Some("effective_at"),
        (RetainBy::Clinical, _) => None,
        _ if silver => Some("ingested_at"),
        (_, p) if p.starts_with("bronze/") => Some("received_at"),
        (_, p) if p == Table::Quarantine.path() => Some("quarantined_at"),
        (_, p) if p == Table::WorkflowRuns.path() => Some("recorded_at"),
        (_, p) if p == Table::ShadowDiffs.path() => Some("at"),
        (_, p) if p == Table::KpiMinute.path() => Some("minute"),
        _ => None,
    }
}

/// What one rule did to one table (also its attestation's detail).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Attestation {
    pub table: String,
    pub days: u64,
    pub by: RetainBy,
    pub column: String,
    /// Rows with the column before this instant (RFC 3339) were deleted.
    pub cutoff: String,
    pub rows: u64,
    pub version_before: i64,
    pub version_after: i64,
    pub files_vacuumed: usize,
}

/// Apply `rules` now. `vacuum_minutes`: see [`removal::vacuum_now`].
pub async fn retain(lake: &Lake, rules: &[RetentionRule], vacuum_minutes: u64, actor: &str) -> Result<Vec<Attestation>, GovernError> {
    let now = ehrgate_lake::now_micros();
    let paths: Vec<String> = lake.tables().await?.into_iter().map(|(p, _)| p).collect();
    let mut out = Vec::new();
    for rule in rules {
        let matches = Principal::pattern_matcher(&rule.tables);
        for path in paths.iter().filter(|p| matches(&p.replace('/', "_"))) {
            if path == Table::Audit.path() {
                return Err(GovernError::Config("the audit table is not retained by [[governance.retention]] (its hash chain starts at its first row)".into()));
            }
            let Some(column) = time_column(path, rule.by) else {
                return Err(GovernError::Config(format!("{path} has no {:?} time to retain by", rule.by)));
            };
            let cutoff = ehrgate_lake::rfc3339(now - (rule.days as i64) * 86_400_000_000);
            let removed: Removal = removal::delete_where(lake, path, &format!("{column} < '{cutoff}'")).await?;
            // (every run: files removed by an earlier run become old enough to go
            // only after `vacuum_minutes`, whether or not this run deleted anything)
            let files = removal::vacuum_now(lake, path, vacuum_minutes).await?;
            let a = Attestation {
                table: path.clone(),
                days: rule.days,
                by: rule.by,
                column: column.into(),
                cutoff,
                rows: removed.rows,
                version_before: removed.version_before,
                version_after: removed.version_after,
                files_vacuumed: files,
            };
            attest(lake, actor, "lake.retain", path, &format!("ok: {} rows deleted", a.rows), serde_json::to_value(&a).unwrap_or_default()).await?;
            out.push(a);
        }
    }
    Ok(out)
}

async fn attest(lake: &Lake, actor: &str, action: &str, path: &str, outcome: &str, detail: serde_json::Value) -> Result<(), GovernError> {
    let row = AuditRow {
        at: ehrgate_lake::now_micros(),
        actor: actor.to_string(),
        action: action.into(),
        path: Some(path.to_string()),
        outcome: outcome.to_string(),
        detail: Some(detail.to_string()),
        ..Default::default()
    };
    Ok(lake.audit(vec![row]).await?)
}

/// What a purge removed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Purge {
    /// SHA-256 of `Patient/<id>`: the audit row names the patient only this way.
    pub patient_sha256: String,
    pub removed: Vec<Removal>,
    pub files_vacuumed: usize,
}

/// A FHIR id: 1-64 of A-Z a-z 0-9 - . (so it is safe inside a SQL literal).
pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

/// Remove every row about patient `id`: its silver rows (the Patient itself and
/// every resource whose patient is it or that refers to it anywhere), the bronze
/// units they came from and every other unit whose raw input names the patient or
/// one of its identifier values (whole messages, other patients in them included:
/// a wrong-patient merge or a legal request removes the message), quarantined rows
/// likewise, its workflow runs; then vacuum what was touched.
pub async fn purge_patient(lake: &Lake, id: &str, vacuum_minutes: u64, actor: &str) -> Result<Purge, GovernError> {
    if !valid_id(id) {
        return Err(GovernError::Refused(format!("`{}` is not a FHIR id (1-64 of A-Z a-z 0-9 - .)", id.escape_debug())));
    }
    let reference = format!("Patient/{id}");
    // (a resource can name the patient where silver has no column for it, e.g. an
    // Appointment's participant: any reference to it in the resource counts)
    let about = format!(
        "patient_ref = '{reference}' OR (resource_type = 'Patient' AND id = '{id}') OR resource LIKE '%\"{reference}\"%' OR resource LIKE '%\"{reference}/%'"
    );
    let paths: Vec<String> = lake.tables().await?.into_iter().map(|(p, _)| p).collect();
    // Units about the patient that silver's lineage no longer names (older versions
    // superseded by a newer message, units that never mapped): found in the raw
    // input by the patient's references and identifier values (MRNs: `|MRN^`, `|MRN|`
    // or `~MRN^` in HL7v2, `"MRN"` in JSON).
    let mut mrns: Vec<String> = Vec::new();
    if paths.iter().any(|p| p == "silver/patient") {
        for r in removal::values_where(lake, "silver/patient", "resource", &format!("id = '{id}'")).await? {
            let v: serde_json::Value = serde_json::from_str(&r).unwrap_or_default();
            for i in v["identifier"].as_array().into_iter().flatten() {
                if let Some(val) = i["value"].as_str().filter(|x| x.len() >= 4 && valid_id(x)) {
                    mrns.push(val.to_string());
                }
            }
        }
    }
    mrns.sort();
    mrns.dedup();
    let text = "CAST(raw AS VARCHAR)";
    let mut in_raw = vec![
        format!("{text} LIKE '%\"{reference}\"%'"),
        format!("{text} LIKE '%\"{reference}/%'"),
        format!("({text} LIKE '%\"resourceType\":\"Patient\"%' AND {text} LIKE '%\"id\":\"{id}\"%')"),
    ];
    for m in &mrns {
        in_raw.extend([format!("{text} LIKE '%|{m}^%'"), format!("{text} LIKE '%|{m}|%'"), format!("{text} LIKE '%~{m}^%'"), format!("{text} LIKE '%\"{m}\"%'")]);
    }
    let in_raw = in_raw.join(" OR ");
    let mut lineage: Vec<String> = Vec::new();
    for p in paths.iter().filter(|p| p.starts_with("silver/")) {
        lineage.extend(removal::values_where(lake, p, "lineage", &about).await?);
    }
    lineage.sort();
    lineage.dedup();
    let mut removed = Vec::new();
    for p in paths.iter().filter(|p| p.starts_with("silver/")) {
        removed.push(removal::delete_where(lake, p, &about).await?);
    }
    // Bronze rows by record id (lineage is `<table path>/<record id>`) or by what
    // their raw input holds.
    for t in [Table::BronzeHl7, Table::BronzeNdjson, Table::BronzeEvents] {
        let prefix = format!("{}/", t.path());
        let ids: Vec<String> = lineage.iter().filter_map(|l| l.strip_prefix(&prefix)).filter(|r| r.chars().all(|c| c.is_ascii_hexdigit())).map(|r| format!("'{r}'")).collect();
        let by_id = if ids.is_empty() { String::new() } else { format!("record_id IN ({}) OR ", ids.join(",")) };
        removed.push(removal::delete_where(lake, t.path(), &format!("{by_id}{in_raw}")).await?);
    }
    let quoted: Vec<String> = lineage.iter().filter(|l| !l.contains('\'')).map(|l| format!("'{l}'")).collect();
    let by_lineage = if quoted.is_empty() { String::new() } else { format!("lineage IN ({}) OR ", quoted.join(",")) };
    removed.push(removal::delete_where(lake, Table::Quarantine.path(), &format!("{by_lineage}{in_raw}")).await?);
    removed.push(removal::delete_where(lake, Table::WorkflowRuns.path(), &format!("patient_ref = '{reference}'")).await?);
    removed.retain(|r| r.version_before >= 0);
    let mut files = 0;
    for r in removed.iter().filter(|r| r.rows > 0) {
        files += removal::vacuum_now(lake, &r.table, vacuum_minutes).await?;
    }
    let purge = Purge { patient_sha256: ehrgate_lake::sha256_hex(reference.as_bytes()), removed, files_vacuumed: files };
    let rows: u64 = purge.removed.iter().map(|r| r.rows).sum();
    let tables: Vec<&str> = purge.removed.iter().filter(|r| r.rows > 0).map(|r| r.table.as_str()).collect();
    attest(lake, actor, "lake.purge", &tables.join(","), &format!("ok: {rows} rows deleted"), serde_json::to_value(&purge).unwrap_or_default()).await?;
    Ok(purge)
}
