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
    let t = if rows == 0 { t } else { t.delete().with_predicate(predicate.to_string()).await.map_err(|e| LakeError::delta(path, e))?.0 };
    // Rows deletion vectors hide (superseded versions, on silver written by deletion
    // vectors) are not seen by the DELETE: the files hiding matching ones are
    // rewritten without them, so that the vacuum removes them from storage too.
    let (t, _) = crate::silver_dv::rewrite_hidden(t, Some(predicate)).await.map_err(|e| LakeError::delta(path, e))?;
    // The id index stored beside a silver table written by deletion vectors holds
    // hashes of its ids: it goes (whatever this run deleted: an earlier run may
    // have deleted the rows and failed after), and the next writer builds it again
    // from what is left. (A writer that stores one while this runs deletes it
    // again: `silver_dv.rs`.)
    if crate::silver_dv::enabled(&t) {
        crate::id_index::discard_stored(t.object_store().as_ref()).await.map_err(|e| LakeError::delta(path, e))?;
    }
    Ok(Removal { table: path.to_string(), rows, version_before: before, version_after: t.version().map(|v| v as i64).unwrap_or(before) })
}

/// Delete the files of the table at `path` that its latest version no longer uses
/// and that are older than `minutes` (see [`vacuum_table`]). 0 deletes all that
/// committed versions name: older versions, and the change data feed before now,
/// can no longer be read. Returns the number of files deleted.
pub async fn vacuum_now(lake: &Lake, path: &str, minutes: u64) -> Result<usize, LakeError> {
    let Some(t) = lake.table(path).await? else { return Ok(0) };
    let window = chrono::Duration::minutes(minutes as i64);
    Ok(vacuum_table(t, window, false, false).await.map_err(|e| LakeError::delta(path, e))?.len())
}

/// Files no committed version names are deleted only once they are this old: a
/// gateway writes a commit's files before the commit, and finishes (or gives up
/// on) it within minutes.
pub const UNNAMED_FILE_FLOOR: chrono::Duration = chrono::Duration::hours(1);

/// How much earlier than its commit a change file may have been written (clocks
/// of the store, and a MERGE that takes a while).
const CHANGE_FILE_SLACK: chrono::Duration = chrono::Duration::minutes(10);

/// Vacuum one table: delete (or, `dry_run`, list) the files its latest version does
/// not use.
/// - Data files that a committed version removed, older than `window` (delta-rs's
///   lite vacuum; their age counts from the removal).
/// - Change data feed files (silver's update and delete images) that a committed
///   version names, older than `window`; any age when `window` is 0, so a purge's
///   own delete images go whatever the clocks say ([`sweep_change_files`]).
/// - Every other file no version names once it is older than `window` and than
///   [`UNNAMED_FILE_FLOOR`] (delta-rs's full vacuum): removed files whose removal
///   checkpoints no longer list, change files whose commits log cleanup deleted,
///   and the files of commits that failed.
///
/// A file a live writer is about to commit is younger than the floor, so it is
/// kept whatever `window` is. `enforce` refuses a window below the table's
/// `delta.deletedFileRetentionDuration`. Returns the paths.
pub async fn vacuum_table(t: deltalake::DeltaTable, window: chrono::Duration, enforce: bool, dry_run: bool) -> Result<std::collections::BTreeSet<String>, deltalake::DeltaTableError> {
    use deltalake::operations::vacuum::VacuumMode;
    let mut gone = std::collections::BTreeSet::new();
    let t = if window < UNNAMED_FILE_FLOOR {
        gone.extend(sweep_change_files(&t, window, dry_run).await?);
        let (t, m) = t.vacuum().with_retention_period(window).with_enforce_retention_duration(enforce).with_dry_run(dry_run).await?;
        gone.extend(m.files_deleted);
        t
    } else {
        t
    };
    let (_, m) = t
        .vacuum()
        .with_mode(VacuumMode::Full)
        .with_retention_period(window.max(UNNAMED_FILE_FLOOR))
        .with_enforce_retention_duration(enforce)
        .with_dry_run(dry_run)
        .await?;
    gone.extend(m.files_deleted);
    Ok(gone)
}

/// Delete (or, `dry_run`, list) the files under `_change_data/` that a committed
/// version names (its `cdc` actions) and that are older than `older_than` (any
/// age when it is 0) but younger than [`UNNAMED_FILE_FLOOR`] (the full vacuum takes
/// older ones, named or not). Only the commits written since the oldest such file
/// are read, so the cost follows the last hour's commits, not the table's age.
pub(crate) async fn sweep_change_files(t: &deltalake::DeltaTable, older_than: chrono::Duration, dry_run: bool) -> Result<Vec<String>, deltalake::DeltaTableError> {
    use deltalake::logstore::object_store::ObjectStoreExt as _;
    use deltalake::{ObjectMeta, ObjectStoreError, Path};
    use futures::{StreamExt, TryStreamExt};
    let store = t.object_store();
    let now = chrono::Utc::now();
    let changes: Vec<ObjectMeta> = store.list(Some(&Path::from("_change_data"))).try_collect().await?;
    let candidates: Vec<ObjectMeta> = changes
        .into_iter()
        .filter(|m| older_than.is_zero() || m.last_modified <= now - older_than)
        .filter(|m| m.last_modified > now - UNNAMED_FILE_FLOOR)
        .collect();
    let Some(oldest) = candidates.iter().map(|m| m.last_modified).min() else { return Ok(Vec::new()) };
    let log: Vec<ObjectMeta> = store.list(Some(&Path::from("_delta_log"))).try_collect().await?;
    let commits = log.into_iter().filter(|m| m.location.as_ref().ends_with(".json") && m.last_modified >= oldest - CHANGE_FILE_SLACK);
    let named: Vec<Vec<String>> = futures::stream::iter(commits)
        .map(|commit| {
            let store = store.clone();
            async move {
                let bytes = match store.get(&commit.location).await {
                    Ok(r) => r.bytes().await?,
                    // (log cleanup deleted it meanwhile: its change files are old)
                    Err(ObjectStoreError::NotFound { .. }) => return Ok(Vec::new()),
                    Err(e) => return Err(e),
                };
                Ok(bytes
                    .split(|b| *b == b'\n')
                    .filter(|l| l.starts_with(b"{\"cdc\""))
                    .filter_map(|l| serde_json::from_slice::<serde_json::Value>(l).ok())
                    .filter_map(|a| a["cdc"]["path"].as_str().and_then(|p| Path::from_url_path(p).ok()))
                    .map(|p| p.to_string())
                    .collect())
            }
        })
        .buffer_unordered(8)
        .try_collect()
        .await?;
    let named: std::collections::HashSet<String> = named.into_iter().flatten().collect();
    let mut gone = Vec::new();
    for m in candidates.into_iter().filter(|m| named.contains(m.location.as_ref())) {
        if !dry_run {
            match store.delete(&m.location).await {
                Ok(()) | Err(ObjectStoreError::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        gone.push(m.location.to_string());
    }
    Ok(gone)
}
