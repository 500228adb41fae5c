//! Reading quarantined inputs back, and marking them reprocessed.

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
    if lake.table(Table::Quarantine.path()).await?.is_none() {
        return Ok(vec![]);
    }
    let mut conds = vec!["true".to_string()];
    if !filter.include_reprocessed {
        conds.push("reprocessed_at IS NULL".into());
    }
    if let Some(id) = &filter.id {
        conds.push(format!("id = {}", quote(id)));
    }
    if let Some(a) = &filter.adapter {
        conds.push(format!("(adapter = {} OR adapter LIKE {})", quote(a), quote(&format!("{}@%", a.replace('%', "")))));
    }
    let sql = format!("SELECT * FROM quarantine_records WHERE {} ORDER BY quarantined_at, id", conds.join(" AND "));
    let batches = crate::sql::query(lake, &sql).await?;
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
            raw: raw.value(i).to_vec(),
            reprocessed_at: rat[i],
            reprocess_outcome: outcome[i].clone(),
        })
        .collect())
}

/// Mark rows reprocessed with an outcome (`mapped`, or the new error).
pub async fn mark_reprocessed(lake: &Lake, outcomes: &[(String, String)]) -> Result<usize, LakeError> {
    let path = Table::Quarantine.path();
    let mut done = 0;
    for (id, outcome) in outcomes {
        let Some(t) = lake.table(path).await? else { return Ok(0) };
        let (_, metrics) = t
            .update()
            .with_predicate(format!("id = {}", quote(id)))
            .with_update("reprocessed_at", format!("arrow_cast({}, 'Timestamp(Microsecond, Some(\"UTC\"))')", now_micros()))
            .with_update("reprocess_outcome", quote(outcome))
            .await
            .map_err(|e| LakeError::delta(path, e))?;
        done += metrics.num_updated_rows;
    }
    Ok(done)
}
