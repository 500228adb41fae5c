//! `ehrgate lake optimize` (compaction) and `ehrgate lake vacuum`.

use std::time::Duration;

use crate::error::LakeError;
use crate::lake::Lake;
use crate::removal;

/// What maintenance did to one table.
#[derive(Debug, Clone)]
pub struct TableReport {
    pub table: String,
    pub detail: String,
}

/// Compact small files in every table.
pub async fn optimize(lake: &Lake) -> Result<Vec<TableReport>, LakeError> {
    let mut out = Vec::new();
    for (path, t) in lake.tables().await? {
        let (_, metrics) = t.optimize().await.map_err(|e| LakeError::delta(&path, e))?;
        out.push(TableReport {
            table: path,
            detail: format!("{} files removed, {} added", metrics.num_files_removed, metrics.num_files_added),
        });
    }
    Ok(out)
}

/// Delete files no longer referenced and older than `retention` (default 7 days,
/// Delta's own default; a shorter one risks breaking readers of older versions, and
/// change-feed readers further behind than that): the data files committed versions
/// removed (delta-rs's lite vacuum) and the change data feed's files
/// ([`removal::sweep_change_files`]: a lite vacuum never deletes those). Files no
/// version names (a writer's, not yet committed) are left alone.
pub async fn vacuum(lake: &Lake, retention: Duration, dry_run: bool) -> Result<Vec<TableReport>, LakeError> {
    let mut out = Vec::new();
    let hours = (retention.as_secs() / 3600) as i64;
    for (path, t) in lake.tables().await? {
        let changes = removal::sweep_change_files(&t, chrono::Duration::hours(hours), dry_run).await.map_err(|e| LakeError::delta(&path, e))?;
        let (_, metrics) = t
            .vacuum()
            .with_retention_period(chrono::Duration::hours(hours))
            .with_enforce_retention_duration(hours >= 168)
            .with_dry_run(dry_run)
            .await
            .map_err(|e| LakeError::delta(&path, e))?;
        out.push(TableReport {
            table: path,
            detail: format!("{} files {}", metrics.files_deleted.len() + changes, if dry_run { "would be deleted" } else { "deleted" }),
        });
    }
    Ok(out)
}
