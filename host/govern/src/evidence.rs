//! `ehrgate audit export --to DIR [--from T] [--until T]`: an evidence package for an
//! auditor: the audit rows of the period (with their chain columns, so the links can
//! be checked again), the verdict on the whole chain, the policies in force, and the
//! retention and purge attestations; a manifest with each file's SHA-256.

use std::path::Path;

use ehrgate_lake::audit::{self, ChainedRow};
use ehrgate_lake::{AuditRow, Lake, Micros, Table};
use serde_json::{Value, json};

use crate::GovernError;
use crate::policy::GovernanceSettings;
use crate::verify::walk;

/// What the package holds.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Evidence {
    pub rows: usize,
    pub attestations: usize,
    pub chain_intact: bool,
    pub files: Vec<(String, String)>,
}

fn row_json(r: &ChainedRow) -> Value {
    json!({
        "seq": r.seq, "at": ehrgate_lake::rfc3339(r.row.at), "at_micros": r.row.at, "actor": r.row.actor, "action": r.row.action,
        "connection": r.row.connection, "method": r.row.method, "path": r.row.path, "outcome": r.row.outcome,
        "purpose": r.row.purpose, "detail": r.row.detail, "prev_hash": r.prev_hash, "hash": r.hash,
    })
}

fn write(dir: &Path, name: &str, text: &str, files: &mut Vec<(String, String)>) -> Result<(), GovernError> {
    let p = dir.join(name);
    std::fs::write(&p, text).map_err(|e| GovernError::Config(format!("writing {}: {e}", p.display())))?;
    files.push((name.to_string(), ehrgate_lake::sha256_hex(text.as_bytes())));
    Ok(())
}

/// Write the package for rows with `from <= at < until` into `dir`.
pub async fn export(lake: &Lake, settings: &GovernanceSettings, from: Option<Micros>, until: Option<Micros>, dir: &Path, actor: &str) -> Result<Evidence, GovernError> {
    std::fs::create_dir_all(dir).map_err(|e| GovernError::Config(format!("{}: {e}", dir.display())))?;
    let (rows, head) = match lake.table(Table::Audit.path()).await? {
        Some(t) => audit::read_chain(&t).await?,
        None => (vec![], None),
    };
    let verdict = walk(&rows, head.as_ref());
    let in_period = |r: &&ChainedRow| from.is_none_or(|f| r.row.at >= f) && until.is_none_or(|u| r.row.at < u);
    let period: Vec<&ChainedRow> = rows.iter().filter(in_period).collect();
    let attest: Vec<&&ChainedRow> = period.iter().filter(|r| matches!(r.row.action.as_str(), "lake.retain" | "lake.purge")).collect();
    let policies: Vec<&&ChainedRow> = period.iter().filter(|r| r.row.action == "policy.in_force").collect();
    let mut files = Vec::new();
    let ndjson = |rs: &mut dyn Iterator<Item = &ChainedRow>| rs.map(|r| row_json(r).to_string() + "\n").collect::<String>();
    write(dir, "audit_rows.ndjson", &ndjson(&mut period.iter().copied()), &mut files)?;
    write(dir, "attestations.ndjson", &ndjson(&mut attest.iter().map(|r| **r)), &mut files)?;
    let verify = json!({
        "intact": verdict.intact(), "chained_rows": verdict.chained, "rows_before_the_chain": verdict.unchained,
        "head": verdict.head.as_ref().map(|h| json!({"seq": h.seq, "hash": h.hash})),
        "first_break": verdict.broken.as_ref().map(|b| json!({"seq": b.seq, "why": b.why, "text": b.to_string()})),
    });
    write(dir, "chain_verification.json", &serde_json::to_string_pretty(&verify).unwrap_or_default(), &mut files)?;
    let in_force = json!({
        "governance": settings,
        "recorded_at_gateway_starts": policies.iter().map(|r| row_json(r)).collect::<Vec<_>>(),
    });
    write(dir, "policies.json", &serde_json::to_string_pretty(&in_force).unwrap_or_default(), &mut files)?;
    let manifest = json!({
        "generated_at": ehrgate_lake::rfc3339(ehrgate_lake::now_micros()),
        "from": from.map(ehrgate_lake::rfc3339), "until": until.map(ehrgate_lake::rfc3339),
        "files": files.iter().map(|(n, h)| json!({"name": n, "sha256": h})).collect::<Vec<_>>(),
    });
    std::fs::write(dir.join("manifest.json"), serde_json::to_string_pretty(&manifest).unwrap_or_default())
        .map_err(|e| GovernError::Config(format!("writing manifest.json: {e}")))?;
    let row = AuditRow {
        at: ehrgate_lake::now_micros(),
        actor: actor.to_string(),
        action: "audit.export".into(),
        outcome: format!("ok: {} rows, chain {}", period.len(), if verdict.intact() { "intact" } else { "BROKEN" }),
        detail: Some(json!({"to": dir.display().to_string(), "rows": period.len(), "from": from, "until": until}).to_string()),
        ..Default::default()
    };
    lake.audit(vec![row]).await?;
    Ok(Evidence { rows: period.len(), attestations: attest.len(), chain_intact: verdict.intact(), files })
}

/// The audit row a gateway writes when it starts: the governance settings in force
/// (references to secrets only, never their values).
pub fn policy_row(settings: &GovernanceSettings, actor: &str) -> AuditRow {
    let text = serde_json::to_string(settings).unwrap_or_default();
    AuditRow {
        at: ehrgate_lake::now_micros(),
        actor: actor.to_string(),
        action: "policy.in_force".into(),
        outcome: format!("ok: sha256 {}", ehrgate_lake::sha256_hex(text.as_bytes())),
        detail: Some(text),
        ..Default::default()
    }
}
