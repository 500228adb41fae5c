//! One writer task per table: accepts rows from many producers through a bounded
//! queue (back-pressure: producers wait when it is full), commits by size or age,
//! and tells every producer when its rows are committed.

use std::collections::{HashMap, HashSet};
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use deltalake::arrow::array::{Array, BooleanArray, RecordBatch, StringArray, StringViewArray};
use deltalake::arrow::compute::{filter_record_batch, not};
use deltalake::arrow::datatypes::{DataType, Field, Schema};
use deltalake::datafusion::prelude::SessionContext;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::protocol::SaveMode;
use deltalake::{DeltaTable, DeltaTableError};
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;
use url::Url;

use crate::error::LakeError;
use crate::audit::{self, AuditRow, HEAD_KEY, Head};
use crate::rows::{self, BronzeRow, QuarantineRow, ShadowDiffRow, SilverRow, WorkflowRunRow};
use crate::id_index::{CaughtUp, IdIndex};
use crate::props::{silver_dv_properties, writer_properties};
use crate::schema::{self, Table};
use crate::silver_dv::{self, DELETION_VECTORS};

/// When a writer commits.
#[derive(Debug, Clone, Copy)]
pub struct BatchConfig {
    /// Commit once this many rows are pending.
    pub max_rows: usize,
    /// Commit rows at the latest this long after the first pending one arrived.
    pub max_age: Duration,
    /// Submissions queued per table before producers wait.
    pub queue: usize,
    /// Batch jobs (bulk exports, file ingest) whose producers wait for each commit:
    /// commit at once whatever is queued, without waiting for `max_age` (rows that
    /// arrive during a commit go together into the next one).
    pub eager: bool,
    /// Silver tables are written with deletion vectors (`silver_dv.rs`): an update
    /// marks the row it replaces deleted instead of rewriting its file. Turned on
    /// for a table once (its protocol goes to reader 3 / writer 7) and not off.
    pub deletion_vectors: bool,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig { max_rows: 50_000, max_age: Duration::from_millis(500), queue: 64, eager: false, deletion_vectors: false }
    }
}

/// Rows bound for one table.
pub(crate) enum Rows {
    Bronze(Table, Vec<BronzeRow>),
    Silver(Vec<SilverRow>),
    Quarantine(Vec<QuarantineRow>),
    Audit(Vec<AuditRow>),
    ShadowDiffs(Vec<ShadowDiffRow>),
    WorkflowRuns(Vec<WorkflowRunRow>),
}

impl Rows {
    fn len(&self) -> usize {
        match self {
            Rows::Bronze(_, r) => r.len(),
            Rows::Silver(r) => r.len(),
            Rows::Quarantine(r) => r.len(),
            Rows::Audit(r) => r.len(),
            Rows::ShadowDiffs(r) => r.len(),
            Rows::WorkflowRuns(r) => r.len(),
        }
    }

    fn absorb(&mut self, other: Rows) {
        match (self, other) {
            (Rows::Bronze(_, a), Rows::Bronze(_, b)) => a.extend(b),
            (Rows::Silver(a), Rows::Silver(b)) => a.extend(b),
            (Rows::Quarantine(a), Rows::Quarantine(b)) => a.extend(b),
            (Rows::Audit(a), Rows::Audit(b)) => a.extend(b),
            (Rows::ShadowDiffs(a), Rows::ShadowDiffs(b)) => a.extend(b),
            (Rows::WorkflowRuns(a), Rows::WorkflowRuns(b)) => a.extend(b),
            _ => unreachable!("one writer per table receives one kind of rows"),
        }
    }
}

pub(crate) struct Submission {
    pub rows: Rows,
    pub done: oneshot::Sender<Result<(), String>>,
    /// The submitter's span: the commit's `lake.write` span is its child (the
    /// first submitter's, when several are committed together).
    pub span: tracing::Span,
}

pub(crate) type WriterHandle = mpsc::Sender<Submission>;

/// Start the writer for the table at `path`: its queue, and its task, which ends
/// once every sender of the queue is dropped and the rows queued are committed.
pub(crate) fn spawn(path: String, url: Url, options: HashMap<String, String>, cfg: BatchConfig) -> (WriterHandle, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(cfg.queue.max(1));
    let task = tokio::spawn(run(path, url, options, cfg, rx));
    (tx, task)
}

async fn run(path: String, url: Url, options: HashMap<String, String>, cfg: BatchConfig, mut rx: mpsc::Receiver<Submission>) {
    let mut table: Option<DeltaTable> = None;
    // (audit only: the chain's head as of a table version this writer committed)
    let mut audit_head: Option<(u64, Head)> = None;
    // (silver only, with deletion vectors)
    let mut index = IdIndex::default();
    let metrics = ehrgate_metrics::table(&path);
    // A silver writer by deletion vectors gets its table and id index ready while
    // the first rows are on their way (mapped, say), rather than after they arrive.
    // A lake closed meanwhile stops it (an index half made is never stored: only a
    // writer with its table stores one).
    let mut early = None;
    if cfg.deletion_vectors && path.starts_with("silver/") {
        let warming = warm(&path, &url, &options, &mut index);
        tokio::pin!(warming);
        let first = tokio::select! {
            warmed = &mut warming => {
                table = warmed;
                rx.recv().await
            }
            first = rx.recv() => match first {
                Some(f) => {
                    table = warming.await;
                    Some(f)
                }
                None => None,
            },
        };
        // (other writers may have committed since: the first commit starts from the
        // table's latest version, not one sure to lose the race)
        if let Some(t) = table.as_mut()
            && first.is_some()
            && let Err(e) = t.update_incremental(None).await
        {
            tracing::debug!(table = %path, "reloading the table after the index was made ready: {e}");
            table = None;
        }
        early = Some(first);
    }
    loop {
        let next = match early.take() {
            Some(first) => first,
            None => rx.recv().await,
        };
        let Some(first) = next else { break };
        let deadline = tokio::time::Instant::now() + cfg.max_age;
        let parent = first.span;
        let mut rows = first.rows;
        let mut waiters = vec![first.done];
        while cfg.eager && rows.len() < cfg.max_rows {
            match rx.try_recv() {
                Ok(s) => {
                    rows.absorb(s.rows);
                    waiters.push(s.done);
                }
                Err(_) => break,
            }
        }
        while !cfg.eager && rows.len() < cfg.max_rows {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(s)) => {
                    rows.absorb(s.rows);
                    waiters.push(s.done);
                }
                Ok(None) | Err(_) => break,
            }
        }
        let n = rows.len();
        let started = std::time::Instant::now();
        let span = tracing::info_span!(parent: &parent, "lake.write", table = %path, rows = n);
        let result = match &rows {
            Rows::Audit(r) => append_audit(&path, &url, &options, &mut table, &mut audit_head, r).instrument(span).await,
            _ => commit(&path, &url, &options, &mut table, &mut index, cfg.deletion_vectors, rows).instrument(span).await,
        };
        match &result {
            Ok(()) => {
                tracing::debug!(table = %path, rows = n, ms = started.elapsed().as_millis() as u64, "committed");
                metrics.commits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                metrics.rows.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
                metrics.commit_latency.0.observe(started.elapsed());
            }
            Err(e) => {
                tracing::error!(table = %path, rows = n, "commit failed: {e}");
                metrics.commit_errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        let result = result.map_err(|e| match e {
            // (`Lake::submit` names the table again)
            LakeError::Delta { message, .. } => message,
            e => e.to_string(),
        });
        for w in waiters {
            let _ = w.send(result.clone());
        }
    }
    // The lake is closed (the job is done): an index well behind its stored copy
    // is stored, so that the next process reads few ids.
    if let Some(t) = &table
        && let Some(version) = t.version()
        && index.len() > 0
    {
        let started = std::time::Instant::now();
        if silver_dv::store_index(t, version, &mut index, crate::id_index::CLOSE_SHARE, false).await {
            count_index(&path, CaughtUp::default(), true);
            tracing::debug!(table = %path, ms = started.elapsed().as_millis() as u64, indexed = index.len(), "silver id index stored as the writer stops");
        }
    }
}

/// The id index's counters of the table at `path` (`/metrics`): rows loaded from
/// the stored copy and ids read from data files by a catch-up, and a store.
fn count_index(path: &str, caught_up: CaughtUp, stored: bool) {
    use std::sync::atomic::Ordering::Relaxed;
    let metrics = ehrgate_metrics::table(path);
    metrics.id_index_rows_loaded.fetch_add(caught_up.loaded as u64, Relaxed);
    metrics.id_index_rows_read.fetch_add(caught_up.read as u64, Relaxed);
    metrics.id_index_stores.fetch_add(stored as u64, Relaxed);
}

/// The table at `path`, if it exists, with `index` caught up with it when it is
/// written by deletion vectors. A failure is left for the first commit to meet.
async fn warm(path: &str, url: &Url, options: &HashMap<String, String>, index: &mut IdIndex) -> Option<DeltaTable> {
    let started = std::time::Instant::now();
    let table = open(path, url, options).await.ok().filter(|t| t.version().is_some())?;
    if silver_dv::enabled(&table) {
        match index.catch_up(&table).await {
            Ok(c) => {
                count_index(path, c, false);
                tracing::debug!(table = %path, warm_ms = started.elapsed().as_millis() as u64, index_rows_loaded = c.loaded, index_rows_read = c.read, indexed = index.len(), "silver id index ready");
            }
            Err(e) => tracing::debug!(table = %path, "silver id index not ready ({e}): the first commit builds it"),
        }
    }
    Some(table)
}

async fn open(path: &str, url: &Url, options: &HashMap<String, String>) -> Result<DeltaTable, LakeError> {
    DeltaTable::try_from_url_with_storage_options(url.clone(), options.clone()).await.map_err(|e| LakeError::delta(path, e))
}

const MAX_ATTEMPTS: usize = 10;

/// The pause after failed attempt `attempt`: none after the first (the writer that won
/// is then usually collecting its next batch), then random up to 50 ms doubling per
/// attempt, at most 2 s, so that writers that keep colliding spread out.
fn backoff(attempt: usize) -> Duration {
    if attempt < 2 {
        return Duration::ZERO;
    }
    let cap_ms = (50u64 << (attempt - 2).min(6)).min(2_000);
    let random = RandomState::new().build_hasher().finish();
    Duration::from_millis(random % (cap_ms + 1))
}

/// Commit `rows`. `table` is the writer's cached table: used and refreshed here, and
/// left empty after a failure so that the next commit opens the table afresh.
///
/// When another writer (another process, or another host on S3) commits first,
/// deltalake itself retries what it can (appends); what it cannot (a MERGE whose
/// read files changed, a table created concurrently) fails with a conflict, and then
/// the table state is reloaded and the whole operation runs again, up to
/// `MAX_ATTEMPTS` times. (A MERGE that keeps losing to a writer that commits
/// without pause fails in the end: the error reaches the producers; nothing is lost.)
#[allow(clippy::too_many_arguments)]
async fn commit(
    path: &str,
    url: &Url,
    options: &HashMap<String, String>,
    table: &mut Option<DeltaTable>,
    index: &mut IdIndex,
    deletion_vectors: bool,
    rows: Rows,
) -> Result<(), LakeError> {
    let (batch, partitions, merge) = match &rows {
        Rows::Bronze(t, r) => (rows::bronze_batch(*t, r)?, t.partitions(), false),
        Rows::Silver(r) => (rows::silver_batch(path, &dedupe_newest(r))?, &[][..], true),
        Rows::Quarantine(r) => (rows::quarantine_batch(r)?, Table::Quarantine.partitions(), false),
        Rows::Audit(_) => unreachable!("audit rows are chained by append_audit"),
        Rows::ShadowDiffs(r) => (rows::shadow_diff_batch(r)?, Table::ShadowDiffs.partitions(), false),
        Rows::WorkflowRuns(r) => (rows::workflow_run_batch(r)?, Table::WorkflowRuns.partitions(), false),
    };
    let mut t = match table.take() {
        Some(t) => t,
        None => open(path, url, options).await?,
    };
    if merge && t.version().is_some() {
        t = add_missing_columns(path, t, &schema::SILVER_ADDED_COLUMNS, silver_added_fields()).await?;
        t = enable_property(path, t, CHANGE_FEED).await?;
        if deletion_vectors {
            t = enable_property(path, t, DELETION_VECTORS).await?;
        }
    }
    if matches!(rows, Rows::Bronze(..)) && t.version().is_some() {
        t = add_missing_columns(path, t, &schema::BRONZE_ADDED_COLUMNS, bronze_added_fields()).await?;
    }
    let mut attempt = 1;
    loop {
        // (operations consume the table; `t` stays as the base for a retry)
        let result = if merge && t.version().is_some() && silver_dv::enabled(&t) {
            upsert_by_deletion_vectors(path, t.clone(), &batch, index).await
        } else if merge && t.version().is_some() {
            upsert(t.clone(), &batch).await
        } else {
            let mut write = t
                .clone()
                .write(vec![batch.clone()])
                .with_save_mode(SaveMode::Append)
                .with_partition_columns(partitions.iter().map(|s| s.to_string()))
                .with_writer_properties(if merge && deletion_vectors { silver_dv_properties() } else { writer_properties() });
            if t.version().is_none() {
                // This write creates the table. If another writer creates it first,
                // fail here rather than let deltalake append on top of it (that would
                // commit a second table definition and, for silver, bypass the MERGE);
                // the retry below then reloads the table and writes into it.
                write = write.with_commit_properties(CommitProperties::default().with_max_retries(0));
                if merge {
                    let dv = deletion_vectors.then_some((DELETION_VECTORS, Some("true")));
                    write = write.with_configuration([(CHANGE_FEED, Some("true"))].into_iter().chain(dv));
                }
            }
            write.await
        };
        let e = match result {
            Ok(done) => {
                *table = Some(done);
                return Ok(());
            }
            Err(e) => e,
        };
        reload_after_conflict(path, &mut t, e, attempt).await?;
        attempt += 1;
    }
}

/// After failed attempt `attempt`: a conflict (another writer committed first) gets
/// a pause and the table reloaded for the next attempt; anything else, or a conflict
/// after `MAX_ATTEMPTS`, is the error.
async fn reload_after_conflict(path: &str, t: &mut DeltaTable, e: DeltaTableError, attempt: usize) -> Result<(), LakeError> {
    if !is_conflict(&e) || attempt == MAX_ATTEMPTS {
        return Err(LakeError::delta(path, e));
    }
    tracing::warn!(table = %path, attempt, "commit conflict, reloading the table and retrying: {e}");
    ehrgate_metrics::table(path).conflicts_retried.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    tokio::time::sleep(backoff(attempt)).await;
    match t.update_state().await {
        // (a table that still does not exist is created by the next attempt)
        Ok(()) | Err(DeltaTableError::NotATable(_)) => Ok(()),
        Err(e) => Err(LakeError::delta(path, e)),
    }
}

/// Another writer committed first.
fn is_conflict(e: &DeltaTableError) -> bool {
    matches!(e, DeltaTableError::Transaction { .. } | DeltaTableError::VersionAlreadyExists(_)) || e.to_string().to_lowercase().contains("conflict")
}

/// Audit rows sealed onto the hash chain (`audit.rs`) and appended. The commit lands
/// only on the version whose head was read; when another writer (this or another
/// process) commits first, the head is read again and the rows sealed again.
async fn append_audit(
    path: &str,
    url: &Url,
    options: &HashMap<String, String>,
    table: &mut Option<DeltaTable>,
    cached: &mut Option<(u64, Head)>,
    rows: &[AuditRow],
) -> Result<(), LakeError> {
    let mut t = match table.take() {
        Some(t) => t,
        None => open(path, url, options).await?,
    };
    if t.version().is_some() {
        t = add_missing_columns(path, t, &schema::AUDIT_ADDED_COLUMNS, audit_added_fields()).await?;
    }
    let mut attempt = 1;
    loop {
        let head = match (t.version(), cached.as_ref()) {
            (Some(v), Some((cv, h))) if v == *cv => h.clone(),
            _ => audit::head(&t).await.map_err(|e| LakeError::delta(path, e))?,
        };
        let (batch, new_head) = audit::chained_batch(rows, &head)?;
        let props = CommitProperties::default()
            .with_max_retries(0)
            .with_metadata([(HEAD_KEY.to_string(), serde_json::json!({"seq": new_head.seq, "hash": new_head.hash}))]);
        let result = t
            .clone()
            .write(vec![batch])
            .with_save_mode(SaveMode::Append)
            .with_partition_columns(Table::Audit.partitions().iter().map(|s| s.to_string()))
            .with_writer_properties(writer_properties())
            .with_commit_properties(props)
            .await;
        let e = match result {
            Ok(done) => {
                *cached = done.version().map(|v| (v, new_head));
                *table = Some(done);
                return Ok(());
            }
            Err(e) => e,
        };
        // (the rows are sealed again on the new head)
        *cached = None;
        reload_after_conflict(path, &mut t, e, attempt).await?;
        attempt += 1;
    }
}

fn audit_added_fields() -> Vec<deltalake::kernel::StructField> {
    use deltalake::kernel::{DataType as KernelType, StructField};
    vec![
        StructField::nullable("seq", KernelType::LONG),
        StructField::nullable("purpose", KernelType::STRING),
        StructField::nullable("detail", KernelType::STRING),
        StructField::nullable("prev_hash", KernelType::STRING),
        StructField::nullable("hash", KernelType::STRING),
    ]
}

/// Silver rows into an existing table: ids the table already holds go through the
/// MERGE (newer wins); ids it cannot hold yet are appended, which rewrites nothing
/// (a MERGE scans and rewrites every file it may touch). Looking for the ids reads
/// only the `id` column. Both commits refuse to land on a version other than the one
/// read (no deltalake retry), so a concurrent writer makes the caller reload and
/// split again: an id appended by someone else meanwhile is then merged, not
/// duplicated.
async fn upsert(table: DeltaTable, batch: &RecordBatch) -> Result<DeltaTable, DeltaTableError> {
    let started = std::time::Instant::now();
    let present = present_ids(&table, batch).await?;
    let looked_up = started.elapsed();
    let id_col = batch.column_by_name("id").and_then(|c| c.as_any().downcast_ref::<StringArray>()).ok_or_else(|| {
        DeltaTableError::Generic("silver batch without a string id column".into())
    })?;
    let is_present: BooleanArray = id_col.iter().map(|id| Some(id.is_some_and(|id| present.contains(id)))).collect();
    let existing = filter_record_batch(batch, &is_present)?;
    let fresh = filter_record_batch(batch, &not(&is_present)?)?;
    let (merged_rows, fresh_rows) = (existing.num_rows(), fresh.num_rows());
    let mut table = table;
    let merge_started = std::time::Instant::now();
    if existing.num_rows() > 0 {
        table = merge_newer(table, existing).await?;
    }
    let merged = merge_started.elapsed();
    if fresh.num_rows() > 0 {
        table = table
            .write(vec![fresh])
            .with_save_mode(SaveMode::Append)
            .with_writer_properties(writer_properties())
            .with_commit_properties(CommitProperties::default().with_max_retries(0))
            .await?;
    }
    // What each step of a silver commit costs (scripts/bench-silver reads these).
    tracing::debug!(
        lookup_ms = looked_up.as_millis() as u64,
        merge_ms = merged.as_millis() as u64,
        append_ms = (started.elapsed() - looked_up - merged).as_millis() as u64,
        merged_rows,
        fresh_rows,
        "silver upsert"
    );
    Ok(table)
}

/// The ids of `batch` that `table` holds (a semi join reading only `id`).
async fn present_ids(table: &DeltaTable, batch: &RecordBatch) -> Result<HashSet<String>, DeltaTableError> {
    let ctx = SessionContext::new();
    table.update_datafusion_session(&ctx.state())?;
    ctx.register_table("target", table.table_provider().await?)?;
    let ids = batch.column_by_name("id").cloned().ok_or_else(|| DeltaTableError::Generic("silver batch without an id column".into()))?;
    let schema = std::sync::Arc::new(Schema::new(vec![Field::new("id", DataType::Utf8, false)]));
    let source = RecordBatch::try_new(schema, vec![ids])?;
    ctx.register_batch("source", source)?;
    let found = ctx.sql("SELECT DISTINCT target.id FROM target WHERE target.id IN (SELECT id FROM source)").await?.collect().await?;
    let mut present = HashSet::new();
    for b in &found {
        if let Some(a) = b.column(0).as_any().downcast_ref::<StringArray>() {
            present.extend(a.iter().flatten().map(str::to_string));
        } else if let Some(a) = b.column(0).as_any().downcast_ref::<StringViewArray>() {
            present.extend(a.iter().flatten().map(str::to_string));
        } else {
            // (reading no ids would append every row as new: duplicates)
            return Err(DeltaTableError::Generic(format!("silver ids came back as {}, not strings", b.column(0).data_type())));
        }
    }
    Ok(present)
}

/// A table created before columns were added to its schema gets them (nullable, so
/// its old rows read as null) in one commit of its own. Another writer doing the
/// same at once makes one of the two commits conflict: the table is then reloaded
/// and, the columns being there, left alone.
async fn add_missing_columns(path: &str, t: DeltaTable, names: &[&str], fields: Vec<deltalake::kernel::StructField>) -> Result<DeltaTable, LakeError> {
    let has = |t: &DeltaTable, c: &str| t.snapshot().map(|s| s.schema().field(c).is_some()).unwrap_or(true);
    if names.iter().all(|c| has(&t, c)) {
        return Ok(t);
    }
    let missing: Vec<_> = fields.into_iter().filter(|f| !has(&t, f.name())).collect();
    tracing::info!(table = %path, columns = ?missing.iter().map(|f| f.name().clone()).collect::<Vec<_>>(), "adding the columns this version writes");
    match t.clone().add_columns().with_fields(missing).await {
        Ok(t) => Ok(t),
        Err(e) => {
            let mut t = t;
            t.update_state().await.map_err(|e| LakeError::delta(path, e))?;
            if names.iter().all(|c| has(&t, c)) { Ok(t) } else { Err(LakeError::delta(path, e)) }
        }
    }
}

/// The table property that makes MERGE, UPDATE and DELETE write change files
/// (`_change_data/`), so that readers consume silver's changes incrementally
/// (Delta's change data feed; docs/tables.md).
const CHANGE_FEED: &str = "delta.enableChangeDataFeed";

/// A silver table created before the change feed (or deletion vectors) was turned
/// on gets it, in one commit of its own (for the change feed the protocol goes to
/// writer version 4; for deletion vectors to reader 3 / writer 7). Changes from
/// before that commit are not in the feed: a reader starts from its version. A
/// concurrent writer doing the same makes one commit conflict: the table is then
/// reloaded and, the property being set, left alone.
async fn enable_property(path: &str, t: DeltaTable, property: &str) -> Result<DeltaTable, LakeError> {
    if property_on(&t, property) {
        return Ok(t);
    }
    tracing::info!(table = %path, property, "turning on");
    match t.clone().set_tbl_properties().with_properties(HashMap::from([(property.to_string(), "true".to_string())])).await {
        Ok(t) => Ok(t),
        Err(e) => {
            let mut t = t;
            t.update_state().await.map_err(|e| LakeError::delta(path, e))?;
            if property_on(&t, property) { Ok(t) } else { Err(LakeError::delta(path, e)) }
        }
    }
}

/// Whether the table's `property` is `true` (a table not yet read counts as on).
fn property_on(t: &DeltaTable, property: &str) -> bool {
    t.snapshot().map(|s| s.metadata().configuration().get(property).is_some_and(|v| v.eq_ignore_ascii_case("true"))).unwrap_or(true)
}

/// [`silver_dv::upsert`], with the same debug line as [`upsert`]. An index found out
/// of step with the table (a file not as it remembers it) is built again from the
/// table, once.
async fn upsert_by_deletion_vectors(path: &str, table: DeltaTable, batch: &RecordBatch, index: &mut IdIndex) -> Result<DeltaTable, DeltaTableError> {
    let (table, c) = match silver_dv::upsert(table.clone(), batch, index, silver_dv_properties()).await {
        Err(e) if silver_dv::is_out_of_step(&e) => {
            tracing::warn!("{e}: building the silver id index again, from the table");
            // (the stored copy may be why: no process loads it again)
            if let Err(e) = crate::id_index::discard_stored(table.object_store().as_ref()).await {
                tracing::warn!("silver id index: the stored copy was not removed: {e}");
            }
            *index = IdIndex::ignoring_stored();
            silver_dv::upsert(table, batch, index, silver_dv_properties()).await?
        }
        r => r?,
    };
    count_index(path, c.caught_up, c.stored);
    tracing::debug!(
        index_ms = c.index_ms,
        lookup_ms = c.lookup_ms,
        read_ms = c.read_ms,
        write_ms = c.write_ms,
        store_ms = c.store_ms,
        index_rows_loaded = c.caught_up.loaded,
        index_rows_read = c.caught_up.read,
        merged_rows = c.replaced,
        fresh_rows = c.inserted,
        stale_rows = c.stale,
        files_touched = c.files_touched,
        commits = c.commits,
        indexed = index.len(),
        footers_kb = index.footers_bytes() / 1024,
        "silver upsert by deletion vectors"
    );
    Ok(table)
}

fn bronze_added_fields() -> Vec<deltalake::kernel::StructField> {
    use deltalake::kernel::{DataType as KernelType, StructField};
    vec![StructField::nullable("adapter", KernelType::STRING), StructField::nullable("answered_at", KernelType::TIMESTAMP), StructField::nullable("landed_at", KernelType::TIMESTAMP), StructField::nullable("records", KernelType::LONG)]
}

fn silver_added_fields() -> Vec<deltalake::kernel::StructField> {
    use deltalake::kernel::{DataType as KernelType, StructField};
    vec![StructField::nullable("received_at", KernelType::TIMESTAMP), StructField::nullable("receipt_seq", KernelType::LONG)]
}

/// MERGE on id: a row replaces the stored one only when it is a newer version:
/// a later source timestamp, or the same one and a later receipt (see
/// [`rows::Receipt`]); a stored row from before the receipt columns existed loses
/// a tie. New ids are inserted.
async fn merge_newer(table: DeltaTable, batch: RecordBatch) -> Result<DeltaTable, deltalake::DeltaTableError> {
    let ctx = SessionContext::new();
    let source = ctx.read_batch(batch)?;
    let schema = schema::silver_schema();
    let cols: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let (table, _metrics) = table
        .merge(source, "target.id = source.id")
        .with_source_alias("source")
        .with_target_alias("target")
        // Any commit by another writer since this MERGE read the table fails it, and
        // `commit` re-runs it against the new state: deltalake's own conflict check
        // does not see a concurrent insert of the same id, so its retry could
        // duplicate one.
        .with_commit_properties(CommitProperties::default().with_max_retries(0))
        .when_matched_update(|mut u| {
            u = u.predicate(
                "source.source_ts > target.source_ts OR (source.source_ts = target.source_ts AND (target.received_at IS NULL \
                 OR source.received_at > target.received_at \
                 OR (source.received_at = target.received_at AND source.receipt_seq > target.receipt_seq)))",
            );
            for c in &cols {
                u = u.update(c.as_str(), format!("source.{c}"));
            }
            u
        })?
        .when_not_matched_insert(|mut i| {
            for c in &cols {
                i = i.set(c.as_str(), format!("source.{c}"));
            }
            i
        })?
        .await?;
    Ok(table)
}

/// Within one batch keep, per id, the newest version (source timestamp, then
/// receipt), the first one on a full tie (a unit mapped twice): the same rule as
/// the MERGE across commits (a row replaces the stored one only when strictly
/// newer), so the result does not depend on how rows were batched, and a replay
/// changes nothing.
fn dedupe_newest(rows: &[SilverRow]) -> Vec<&SilverRow> {
    let mut best: HashMap<&str, usize> = HashMap::new();
    for (i, r) in rows.iter().enumerate() {
        match best.get(r.id.as_str()) {
            Some(&j) if rows[j].version_key() >= r.version_key() => {}
            _ => {
                best.insert(&r.id, i);
            }
        }
    }
    let mut keep: Vec<usize> = best.into_values().collect();
    keep.sort_unstable();
    keep.into_iter().map(|i| &rows[i]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, ts: i64, tag: &str) -> SilverRow {
        SilverRow {
            resource_type: "Patient".into(),
            id: id.into(),
            patient_ref: None,
            encounter_ref: None,
            effective_at: None,
            code_system: None,
            code: None,
            status: None,
            source_system: None,
            adapter: "a".into(),
            source_ts: ts,
            deleted: false,
            lineage: tag.into(),
            ingested_at: 0,
            resource: "{}".into(),
            receipt: rows::Receipt::at(0),
        }
    }

    #[test]
    fn dedupe_keeps_newest_and_first_on_tie() {
        let rows = vec![
            row("a", 2, "a2"),
            row("a", 1, "a1"),
            row("b", 5, "b5"),
            row("b", 5, "b5-later"),
            row("c", 1, "c"),
            row("d", 1, "d1"),
            row("d", 3, "d3"),
            row("d", 3, "d3-later"),
        ];
        let kept: Vec<String> = dedupe_newest(&rows).into_iter().map(|r| r.lineage.clone()).collect();
        assert_eq!(kept, vec!["a2", "b5", "c", "d3"]);
    }

    #[test]
    fn dedupe_breaks_a_source_time_tie_by_receipt() {
        let at = |id: &str, tag: &str, at: i64, seq: i64| SilverRow { receipt: rows::Receipt { at, seq }, ..row(id, 5, tag) };
        let rows = vec![at("a", "a-late", 20, 0), at("a", "a-early", 10, 9), at("b", "b1", 10, 1), at("b", "b2", 10, 2), at("b", "b2-replay", 10, 2)];
        let kept: Vec<String> = dedupe_newest(&rows).into_iter().map(|r| r.lineage.clone()).collect();
        assert_eq!(kept, vec!["a-late", "b2"]);
    }
}
