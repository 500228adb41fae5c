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

/// Compact small files in every table, and rewrite files with deletion vectors
/// without the rows those hide.
pub async fn optimize(lake: &Lake) -> Result<Vec<TableReport>, LakeError> {
    let mut out = Vec::new();
    for (path, t) in lake.tables().await? {
        let mut optimize = t.clone().optimize();
        if crate::silver_dv::enabled(&t) {
            optimize = optimize.with_writer_properties(crate::props::silver_dv_properties());
        }
        let (t, metrics) = optimize.await.map_err(|e| LakeError::delta(&path, e))?;
        // (files too large to compact that carry deletion vectors: rewritten without
        // the rows those hide)
        let (_, rewritten) = crate::silver_dv::rewrite_hidden(t, None).await.map_err(|e| LakeError::delta(&path, e))?;
        let mut detail = format!("{} files removed, {} added", metrics.num_files_removed, metrics.num_files_added);
        if rewritten > 0 {
            detail.push_str(&format!(", {rewritten} rewritten without the rows their deletion vectors hide"));
        }
        out.push(TableReport { table: path, detail });
    }
    Ok(out)
}

/// Delete files no longer referenced and older than `retention` (default 7 days,
/// Delta's own default; a shorter one risks breaking readers of older versions, and
/// change-feed readers further behind than that); see [`removal::vacuum_table`].
/// A writer's files not yet committed are left alone.
pub async fn vacuum(lake: &Lake, retention: Duration, dry_run: bool) -> Result<Vec<TableReport>, LakeError> {
    let mut out = Vec::new();
    let hours = (retention.as_secs() / 3600) as i64;
    for (path, t) in lake.tables().await? {
        let gone = removal::vacuum_table(t, chrono::Duration::hours(hours), hours >= 168, dry_run).await.map_err(|e| LakeError::delta(&path, e))?;
        out.push(TableReport {
            table: path,
            detail: format!("{} files {}", gone.len(), if dry_run { "would be deleted" } else { "deleted" }),
        });
    }
    Ok(out)
}
