//! Reading quarantined inputs back, and marking them reprocessed.

use std::collections::BTreeMap;

use deltalake::arrow::array::{Array, AsArray, RecordBatch};
use deltalake::arrow::datatypes::TimestampMicrosecondType;

use crate::error::LakeError;
use crate::lake::Lake;
use crate::rows::{QuarantineRow, now_micros};
use crate::schema::Table;

/// Which quarantined rows.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub id: Option<String>,
    /// Adapter name (matches `name@any-version`).
    pub adapter: Option<String>,
    /// Include rows already reprocessed.
    pub include_reprocessed: bool,
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Quarantined rows matching `filter`, oldest first.
pub async fn list(lake: &Lake, filter: &Filter) -> Result<Vec<QuarantineRow>, LakeError> {
    let path = Table::Quarantine.path();
    let Some(table) = lake.table(path).await? else { return Ok(vec![]) };
    let mut conds = vec!["true".to_string()];
    if !filter.include_reprocessed {
        conds.push("reprocessed_at IS NULL".into());
    }
    if let Some(id) = &filter.id {
        conds.push(format!("id = {}", quote(id)));
    }
    if let Some(a) = &filter.adapter {
        // The exact label, or the name part of `name@version` compared exactly (no
        // LIKE: `_` and `%` in a name are not wildcards).
        conds.push(format!("(adapter = {q} OR split_part(adapter, '@', 1) = {q})", q = quote(a)));
    }
    let sql = format!("SELECT * FROM quarantine_records WHERE {} ORDER BY quarantined_at, id", conds.join(" AND "));
    let batches = crate::sql::query_tables(vec![(path.to_string(), table)], &sql).await?;
    let mut out = Vec::new();
    for b in &batches {
        out.extend(rows_of(b)?);
    }
    Ok(out)
}

/// The newest `limit` quarantined rows, newest first, without their bytes (`raw`
/// is empty): what an operator's list shows.
pub async fn recent(lake: &Lake, limit: usize) -> Result<Vec<QuarantineRow>, LakeError> {
    let path = Table::Quarantine.path();
    let Some(table) = lake.table(path).await? else { return Ok(vec![]) };
    let sql = format!(
        "SELECT id, quarantined_at, input_kind, source, adapter, error_kind, error_message, location, lineage, \
         CAST(NULL AS BYTEA) AS raw, reprocessed_at, reprocess_outcome FROM quarantine_records \
         ORDER BY quarantined_at DESC, id LIMIT {limit}"
    );
    let batches = crate::sql::query_tables(vec![(path.to_string(), table)], &sql).await?;
    let mut out = Vec::new();
    for b in &batches {
        out.extend(rows_of(b)?);
    }
    Ok(out)
}

fn rows_of(b: &RecordBatch) -> Result<Vec<QuarantineRow>, LakeError> {
    let col = |name: &str| b.column_by_name(name).ok_or_else(|| LakeError::Invalid(format!("quarantine table has no column {name}")));
    let s = |name: &str| -> Result<Vec<Option<String>>, LakeError> {
        let c = col(name)?;
        let c = deltalake::arrow::compute::cast(c, &deltalake::arrow::datatypes::DataType::Utf8).map_err(|e| LakeError::Invalid(e.to_string()))?;
        let a = c.as_string::<i32>();
        Ok((0..a.len()).map(|i| (!a.is_null(i)).then(|| a.value(i).to_string())).collect())
    };
    let t = |name: &str| -> Result<Vec<Option<i64>>, LakeError> {
        let c = col(name)?;
        let a = c.as_primitive::<TimestampMicrosecondType>();
        Ok((0..a.len()).map(|i| (!a.is_null(i)).then(|| a.value(i))).collect())
    };
    let raw = col("raw")?;
    let raw = deltalake::arrow::compute::cast(raw, &deltalake::arrow::datatypes::DataType::Binary).map_err(|e| LakeError::Invalid(e.to_string()))?;
    let raw = raw.as_binary::<i32>();
    let (id, kind, source, adapter, ekind, emsg, loc, lin, outcome) = (
        s("id")?,
        s("input_kind")?,
        s("source")?,
        s("adapter")?,
        s("error_kind")?,
        s("error_message")?,
        s("location")?,
        s("lineage")?,
        s("reprocess_outcome")?,
    );
    let (qat, rat) = (t("quarantined_at")?, t("reprocessed_at")?);
    Ok((0..b.num_rows())
        .map(|i| QuarantineRow {
            id: id[i].clone().unwrap_or_default(),
            quarantined_at: qat[i].unwrap_or_default(),
            input_kind: kind[i].clone().unwrap_or_default(),
            source: source[i].clone().unwrap_or_default(),
            adapter: adapter[i].clone().unwrap_or_default(),
            error_kind: ekind[i].clone().unwrap_or_default(),
            error_message: emsg[i].clone().unwrap_or_default(),
            location: loc[i].clone(),
            lineage: lin[i].clone(),
            raw: if raw.is_null(i) { Vec::new() } else { raw.value(i).to_vec() },
            reprocessed_at: rat[i],
            reprocess_outcome: outcome[i].clone(),
        })
        .collect())
}

/// Record a reprocess run in one UPDATE (one commit). `mapped`: `(id, outcome)` of
/// rows that now map; they get `reprocessed_at` and the outcome (e.g. `mapped by
/// name@version`). `failed`: `(id, new error)` of rows that still fail; they get the
/// new error as `reprocess_outcome` and stay pending (`reprocessed_at` unchanged).
/// Returns the number of rows updated.
pub async fn mark_reprocessed(lake: &Lake, mapped: &[(String, String)], failed: &[(String, String)]) -> Result<usize, LakeError> {
    if mapped.is_empty() && failed.is_empty() {
        return Ok(0);
    }
    let path = Table::Quarantine.path();
    let in_list = |ids: &[&str]| ids.iter().map(|id| quote(id)).collect::<Vec<_>>().join(", ");
    // Ids grouped by outcome text (in practice one text for every mapped row).
    let mut by_outcome: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (id, outcome) in mapped.iter().chain(failed) {
        by_outcome.entry(outcome).or_default().push(id);
    }
    let all: Vec<&str> = mapped.iter().chain(failed).map(|(id, _)| id.as_str()).collect();
    let mapped_ids: Vec<&str> = mapped.iter().map(|(id, _)| id.as_str()).collect();
    let predicate = format!("id IN ({})", in_list(&all));
    let reprocessed_at = if mapped_ids.is_empty() {
        None
    } else {
        Some(format!(
            "CASE WHEN id IN ({}) THEN arrow_cast({}, 'Timestamp(Microsecond, Some(\"UTC\"))') ELSE reprocessed_at END",
            in_list(&mapped_ids),
            now_micros()
        ))
    };
    let outcome = format!(
        "CASE {} ELSE reprocess_outcome END",
        by_outcome.iter().map(|(text, ids)| format!("WHEN id IN ({}) THEN {}", in_list(ids), quote(text))).collect::<Vec<_>>().join(" ")
    );
    // Another writer (a running gateway quarantining rows) may commit meanwhile; on a
    // conflict, run the UPDATE again on the reloaded table.
    const MAX_ATTEMPTS: usize = 5;
    let mut attempt = 1;
    loop {
        let Some(t) = lake.table(path).await? else { return Ok(0) };
        let mut update = t.update().with_predicate(predicate.as_str()).with_update("reprocess_outcome", outcome.as_str());
        if let Some(at) = &reprocessed_at {
            update = update.with_update("reprocessed_at", at.as_str());
        }
        match update.await {
            Ok((_, metrics)) => return Ok(metrics.num_updated_rows),
            Err(e @ deltalake::DeltaTableError::Transaction { .. }) if attempt < MAX_ATTEMPTS => {
                tracing::warn!(table = %path, attempt, "quarantine update conflict, retrying: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100 * attempt as u64)).await;
                attempt += 1;
            }
            Err(e) => return Err(LakeError::delta(path, e)),
        }
    }
}
