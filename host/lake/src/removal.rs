//! Removing rows for good: a predicate DELETE on one table, and a vacuum that
//! deletes the files no version after it refers to (so the rows cannot be read by
//! time travel either). Used by retention and by purges (crate `govern`).

use deltalake::arrow::array::{Array, Int64Array, StringArray, StringViewArray};

use crate::error::LakeError;
use crate::lake::Lake;
use crate::sql;

/// What a removal did to one table.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Removal {
    pub table: String,
    pub rows: u64,
    /// The version read, and the version the delete committed (equal when nothing
    /// matched).
    pub version_before: i64,
    pub version_after: i64,
}

/// Rows of the table at `path` matching `predicate` (SQL over its columns).
pub async fn count_where(lake: &Lake, path: &str, predicate: &str) -> Result<u64, LakeError> {
    let name = path.replace('/', "_");
    let b = sql::query_one(lake, path, &format!("SELECT count(*) AS n FROM {name} WHERE {predicate}")).await?;
    Ok(b.first().and_then(|b| b.column(0).as_any().downcast_ref::<Int64Array>().map(|a| a.value(0) as u64)).unwrap_or(0))
}

/// Distinct non-null values of `column` in the rows matching `predicate`.
pub async fn values_where(lake: &Lake, path: &str, column: &str, predicate: &str) -> Result<Vec<String>, LakeError> {
    let name = path.replace('/', "_");
    let batches = sql::query_one(lake, path, &format!("SELECT DISTINCT {column} FROM {name} WHERE {predicate} AND {column} IS NOT NULL")).await?;
    let mut out = Vec::new();
    for b in &batches {
        let c = b.column(0);
        if let Some(a) = c.as_any().downcast_ref::<StringArray>() {
            out.extend(a.iter().flatten().map(str::to_string));
        } else if let Some(a) = c.as_any().downcast_ref::<StringViewArray>() {
            out.extend(a.iter().flatten().map(str::to_string));
        } else {
            return Err(LakeError::Invalid(format!("{path}.{column} is not a string column ({})", c.data_type())));
        }
    }
    Ok(out)
}

/// Delete the rows of the table at `path` matching `predicate`. A table that does
/// not exist has nothing to delete.
pub async fn delete_where(lake: &Lake, path: &str, predicate: &str) -> Result<Removal, LakeError> {
    let Some(t) = lake.table(path).await? else {
        return Ok(Removal { table: path.to_string(), rows: 0, version_before: -1, version_after: -1 });
    };
    let before = t.version().map(|v| v as i64).unwrap_or(-1);
    let rows = count_where(lake, path, predicate).await?;
    if rows == 0 {
        return Ok(Removal { table: path.to_string(), rows, version_before: before, version_after: before });
    }
    let (t, _) = t.delete().with_predicate(predicate.to_string()).await.map_err(|e| LakeError::delta(path, e))?;
    Ok(Removal { table: path.to_string(), rows, version_before: before, version_after: t.version().map(|v| v as i64).unwrap_or(before) })
}

/// Delete the files of the table at `path` that its latest version does not use
/// (data files and change-feed files alike) and
/// that are older than `minutes` (0: all of them: older versions can no longer be
/// read; a writer committing to the table meanwhile could lose the files it is
/// about to commit, so with a live writer give it a few minutes). Returns the
/// number of files deleted.
pub async fn vacuum_now(lake: &Lake, path: &str, minutes: u64) -> Result<usize, LakeError> {
    let Some(t) = lake.table(path).await? else { return Ok(0) };
    let (_, m) = t
        .vacuum()
        // Full, not the default lite mode: lite removes only files a `remove`
        // action names, and the change data feed's files (silver's update and
        // delete images, which hold what was removed) are never named by one.
        .with_mode(deltalake::operations::vacuum::VacuumMode::Full)
        .with_retention_period(chrono::Duration::minutes(minutes as i64))
        .with_enforce_retention_duration(false)
        .await
        .map_err(|e| LakeError::delta(path, e))?;
    Ok(m.files_deleted.len())
}
