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

/// Delete the files of the table at `path` that its latest version no longer uses
/// and that are older than `minutes`: data files a committed version removed, and
/// the change data feed's files (silver's update and delete images, which hold
/// what was removed). 0 deletes all of them: older versions, and the feed before
/// now, can no longer be read. Returns the number of files deleted.
///
/// Only files that a committed version names are deleted: a writer's files not yet
/// committed are never touched, whatever `minutes` is. delta-rs's full vacuum mode
/// would also delete change files, but it deletes every unnamed file older than the
/// window, and with a window of 0 that includes the files a live gateway is about
/// to commit.
pub async fn vacuum_now(lake: &Lake, path: &str, minutes: u64) -> Result<usize, LakeError> {
    let Some(t) = lake.table(path).await? else { return Ok(0) };
    let changes = sweep_change_files(&t, chrono::Duration::minutes(minutes as i64), false).await.map_err(|e| LakeError::delta(path, e))?;
    let (_, m) = t
        .vacuum()
        .with_retention_period(chrono::Duration::minutes(minutes as i64))
        .with_enforce_retention_duration(false)
        .await
        .map_err(|e| LakeError::delta(path, e))?;
    Ok(m.files_deleted.len() + changes)
}

/// Delete (or, `dry_run`, count) the change data feed files that the table's
/// committed versions name (`cdc` actions; a lite vacuum never deletes them, as no
/// `remove` action names them) and that were written more than `older_than` ago.
pub(crate) async fn sweep_change_files(t: &deltalake::DeltaTable, older_than: chrono::Duration, dry_run: bool) -> Result<usize, deltalake::DeltaTableError> {
    use deltalake::{ObjectStoreError, Path};
    use futures::TryStreamExt;
    use deltalake::logstore::object_store::ObjectStoreExt as _;
    let store = t.object_store();
    let log: Vec<deltalake::ObjectMeta> = store.list(Some(&Path::from("_delta_log"))).try_collect().await?;
    let mut files = std::collections::BTreeSet::new();
    for commit in log.iter().filter(|m| m.location.as_ref().ends_with(".json")) {
        let bytes = store.get(&commit.location).await?.bytes().await?;
        for line in bytes.split(|b| *b == b'\n').filter(|l| l.starts_with(b"{\"cdc\"")) {
            let action: serde_json::Value = serde_json::from_slice(line).map_err(|e| deltalake::DeltaTableError::Generic(format!("{}: {e}", commit.location)))?;
            if let Some(p) = action["cdc"]["path"].as_str() {
                files.insert(p.to_string());
            }
        }
    }
    let cutoff = chrono::Utc::now() - older_than;
    let mut n = 0;
    for f in files {
        let path = Path::from_url_path(&f).map_err(|e| deltalake::DeltaTableError::Generic(format!("change file {f}: {e}")))?;
        match store.head(&path).await {
            Ok(meta) if meta.last_modified <= cutoff => {
                if !dry_run {
                    match store.delete(&path).await {
                        Ok(()) | Err(ObjectStoreError::NotFound { .. }) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                n += 1;
            }
            Ok(_) | Err(ObjectStoreError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(n)
}
