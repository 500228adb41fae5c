//! The lake: one handle over every table, with a writer per table.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

use deltalake::DeltaTable;
use tokio::sync::oneshot;

use crate::error::LakeError;
use crate::audit::AuditRow;
use crate::rows::{BronzeRow, QuarantineRow, ShadowDiffRow, SilverRow, WorkflowRunRow};
use crate::schema::{self, Table};
use crate::storage::Storage;
use crate::writer::{self, BatchConfig, Rows, Submission, WriterHandle};

pub struct Lake {
    storage: Storage,
    options: HashMap<String, String>,
    cfg: BatchConfig,
    writers: Mutex<HashMap<String, WriterHandle>>,
    /// The writers' tasks, for [`Lake::close`].
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Lake {
    /// Open the lake (nothing is created until something is written). Must be called
    /// inside a tokio runtime.
    pub fn open(storage: Storage, cfg: BatchConfig) -> Result<Lake, LakeError> {
        deltalake::aws::register_handlers(None);
        let options = storage.options()?;
        Ok(Lake { storage, options, cfg, writers: Mutex::new(HashMap::new()), tasks: Mutex::new(Vec::new()) })
    }

    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// Rows a table's commit gathers at most (`[lake] commit_rows`).
    pub fn commit_rows(&self) -> usize {
        self.cfg.max_rows
    }

    fn writer(&self, path: &str) -> Result<WriterHandle, LakeError> {
        let mut w = self.writers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(h) = w.get(path) {
            return Ok(h.clone());
        }
        let url = self.storage.table_url(path)?;
        self.storage.prepare(path)?;
        let (h, task) = writer::spawn(path.to_string(), url, self.options.clone(), self.cfg);
        w.insert(path.to_string(), h.clone());
        self.tasks.lock().unwrap_or_else(|p| p.into_inner()).push(task);
        Ok(h)
    }

    /// Stop the writers once what is queued is committed, and wait for them: a
    /// batch job's last step (`ingest`, `bulk export`). A silver writer by deletion
    /// vectors then stores its id index if it is a 32nd or more behind the stored
    /// copy. Rows submitted after this start new writers.
    pub async fn close(&self) {
        self.writers.lock().unwrap_or_else(|p| p.into_inner()).clear();
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for t in tasks {
            if let Err(e) = t.await {
                tracing::error!("a lake writer failed: {e}");
            }
        }
    }

    /// Start the writers of the silver tables that exist, so that those written by
    /// deletion vectors load or build their id index now, in the background,
    /// rather than at their first commit (`[lake] deletion_vectors`; otherwise
    /// nothing to do). Each index then takes its memory from the start.
    pub async fn warm_silver(&self) -> Result<usize, LakeError> {
        if !self.cfg.deletion_vectors {
            return Ok(0);
        }
        let types = self.silver_types().await?;
        for ty in &types {
            self.writer(&schema::silver_path(ty))?;
        }
        Ok(types.len())
    }

    /// Queue rows for `path` and wait until they are committed. Waits (back-pressure)
    /// while the table's queue is full.
    async fn submit(&self, path: &str, rows: Rows) -> Result<(), LakeError> {
        let (done, wait) = oneshot::channel();
        self.writer(path)?.send(Submission { rows, done, span: tracing::Span::current() }).await.map_err(|_| LakeError::WriterGone(path.into()))?;
        match wait.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(LakeError::Delta { table: path.into(), message }),
            Err(_) => Err(LakeError::WriterGone(path.into())),
        }
    }

    /// Append raw inbound units to their bronze tables.
    pub async fn append_bronze(&self, rows: Vec<BronzeRow>) -> Result<(), LakeError> {
        let mut by: BTreeMap<&'static str, (Table, Vec<BronzeRow>)> = BTreeMap::new();
        for r in rows {
            let t = r.table();
            by.entry(t.path()).or_insert_with(|| (t, vec![])).1.push(r);
        }
        let jobs = by.into_iter().map(|(path, (t, rows))| self.submit(path, Rows::Bronze(t, rows)));
        futures::future::try_join_all(jobs).await.map(|_| ())
    }

    /// Append bronze rows like [`Lake::append_bronze`], leaving out the rows of
    /// `maybe_present` whose record id bronze already holds: units read again after
    /// a crash (a log replay, a drop file ingested again) keep their record ids, so
    /// this keeps every unit in bronze once. Returns how many were left out.
    pub async fn append_bronze_once(&self, mut rows: Vec<BronzeRow>, maybe_present: Vec<BronzeRow>) -> Result<usize, LakeError> {
        let known = if maybe_present.is_empty() { HashSet::new() } else { self.bronze_known(&maybe_present).await? };
        let (fresh, skipped) = unseen(maybe_present, &known, |r| &r.record_id);
        rows.extend(fresh);
        if !rows.is_empty() {
            self.append_bronze(rows).await?;
        }
        Ok(skipped)
    }

    /// Quarantine rows like [`Lake::quarantine`], leaving out the rows of
    /// `maybe_present` whose id the quarantine table holds already (a replayed unit
    /// that was quarantined before the crash). Returns how many were left out.
    pub async fn quarantine_once(&self, mut rows: Vec<QuarantineRow>, maybe_present: Vec<QuarantineRow>) -> Result<usize, LakeError> {
        let mut known = HashSet::new();
        let path = Table::Quarantine.path();
        if let Some(table) = if maybe_present.is_empty() { None } else { self.table(path).await? } {
            let ids: Vec<String> = maybe_present.iter().map(|q| format!("'{}'", q.id.replace('\'', "''"))).collect();
            for chunk in ids.chunks(1000) {
                let q = format!("SELECT id FROM {} WHERE id IN ({})", Table::Quarantine.sql_name(), chunk.join(","));
                for b in crate::sql::query_tables(vec![(path.to_string(), table.clone())], &q).await? {
                    known.extend(string_column(&b)?);
                }
            }
        }
        let (fresh, skipped) = unseen(maybe_present, &known, |r| &r.id);
        rows.extend(fresh);
        if !rows.is_empty() {
            self.quarantine(rows).await?;
        }
        Ok(skipped)
    }

    /// The record ids among `rows` that their bronze tables hold. Reads the
    /// `record_id` column of the partitions (ingest dates) and the receipt-time
    /// range the rows fall in, nothing else.
    pub async fn bronze_known(&self, rows: &[BronzeRow]) -> Result<HashSet<String>, LakeError> {
        let mut by: BTreeMap<&'static str, (Table, Vec<&BronzeRow>)> = BTreeMap::new();
        for r in rows {
            let t = r.table();
            by.entry(t.path()).or_insert_with(|| (t, vec![])).1.push(r);
        }
        let mut known = HashSet::new();
        for (path, (t, rows)) in by {
            let Some(table) = self.table(path).await? else { continue };
            let wanted: HashSet<&str> = rows.iter().map(|r| r.record_id.as_str()).collect();
            let dates: std::collections::BTreeSet<String> = rows.iter().map(|r| format!("'{}'", crate::rows::date_of(r.received_at))).collect();
            let (lo, hi) = rows.iter().fold((i64::MAX, i64::MIN), |(lo, hi), r| (lo.min(r.received_at), hi.max(r.received_at)));
            let q = format!(
                "SELECT record_id FROM {} WHERE ingest_date IN ({}) AND received_at >= to_timestamp_micros({lo}) AND received_at <= to_timestamp_micros({hi})",
                t.sql_name(),
                dates.into_iter().collect::<Vec<_>>().join(",")
            );
            for b in crate::sql::query_tables(vec![(path.to_string(), table)], &q).await? {
                known.extend(string_column(&b)?.into_iter().filter(|id| wanted.contains(id.as_str())));
            }
        }
        Ok(known)
    }

    /// MERGE canonical resources into their silver tables (newer source time wins).
    pub async fn upsert_silver(&self, rows: Vec<SilverRow>) -> Result<(), LakeError> {
        let mut by: BTreeMap<String, Vec<SilverRow>> = BTreeMap::new();
        for r in rows {
            by.entry(schema::silver_path(&r.resource_type)).or_default().push(r);
        }
        let jobs = by.into_iter().map(|(path, rows)| async move { self.submit(&path, Rows::Silver(rows)).await });
        futures::future::try_join_all(jobs).await.map(|_| ())
    }

    pub async fn quarantine(&self, rows: Vec<QuarantineRow>) -> Result<(), LakeError> {
        if rows.is_empty() {
            return Ok(());
        }
        self.submit(Table::Quarantine.path(), Rows::Quarantine(rows)).await
    }

    pub async fn audit(&self, rows: Vec<AuditRow>) -> Result<(), LakeError> {
        if rows.is_empty() {
            return Ok(());
        }
        self.submit(Table::Audit.path(), Rows::Audit(rows)).await
    }

    /// What shadow candidates would have changed (`ops/shadow_diffs`).
    pub async fn shadow_diffs(&self, rows: Vec<ShadowDiffRow>) -> Result<(), LakeError> {
        if rows.is_empty() {
            return Ok(());
        }
        self.submit(Table::ShadowDiffs.path(), Rows::ShadowDiffs(rows)).await
    }

    /// States of workflow runs (`ops/workflow_runs`, append-only).
    pub async fn workflow_runs(&self, rows: Vec<WorkflowRunRow>) -> Result<(), LakeError> {
        if rows.is_empty() {
            return Ok(());
        }
        self.submit(Table::WorkflowRuns.path(), Rows::WorkflowRuns(rows)).await
    }

    /// Replace the rows of `table` matching `predicate` (SQL over its columns,
    /// e.g. `minute >= '2026-12-04T21:00:00Z'`) by `batch`, in one commit (Delta's
    /// replaceWhere: a reader sees the old rows or the new, never neither); the
    /// table is created when it does not exist. Every row of `batch` must match
    /// `predicate`. For derived tables a process recomputes (`gold/*`).
    pub async fn replace_where(&self, table: Table, batch: deltalake::arrow::array::RecordBatch, predicate: &str) -> Result<(), LakeError> {
        let path = table.path();
        let url = self.storage.table_url(path)?;
        self.storage.prepare(path)?;
        let t = DeltaTable::try_from_url_with_storage_options(url, self.options.clone()).await.map_err(|e| LakeError::delta(path, e))?;
        let write = if t.version().is_some() {
            t.write(vec![batch]).with_save_mode(deltalake::protocol::SaveMode::Overwrite).with_replace_where(predicate.to_string())
        } else {
            t.write(vec![batch]).with_save_mode(deltalake::protocol::SaveMode::Append).with_partition_columns(table.partitions().iter().map(|s| s.to_string()))
        };
        write.await.map_err(|e| LakeError::delta(path, e))?;
        Ok(())
    }

    /// Whether the table at `path` has `column`; `None` when the table does not exist.
    pub async fn has_column(&self, path: &str, column: &str) -> Result<Option<bool>, LakeError> {
        Ok(self.table(path).await?.map(|t| t.snapshot().map(|s| s.schema().field(column).is_some()).unwrap_or(false)))
    }

    /// Open a table for reading; `None` when it does not exist yet.
    pub async fn table(&self, path: &str) -> Result<Option<DeltaTable>, LakeError> {
        if self.storage.local_table_exists(path) == Some(false) {
            return Ok(None);
        }
        let url = self.storage.table_url(path)?;
        let t = DeltaTable::try_from_url_with_storage_options(url, self.options.clone()).await.map_err(|e| LakeError::delta(path, e))?;
        Ok(t.version().is_some().then_some(t))
    }

    /// Every table that exists, opened at its latest version, with its path: the
    /// fixed ones, then each silver table.
    pub async fn tables(&self) -> Result<Vec<(String, DeltaTable)>, LakeError> {
        let paths = Table::ALL.iter().map(|t| t.path().to_string());
        let silver = self.silver_types().await?.into_iter().map(|ty| schema::silver_path(&ty));
        let mut out = Vec::new();
        for path in paths.chain(silver) {
            if let Some(t) = self.table(&path).await? {
                out.push((path, t));
            }
        }
        Ok(out)
    }

    /// Resource types that have a silver table.
    pub async fn silver_types(&self) -> Result<Vec<String>, LakeError> {
        let mut types = Vec::new();
        match &self.storage {
            Storage::Local { .. } => {
                let url = self.storage.table_url("silver")?;
                let dir = url.to_file_path().map_err(|_| LakeError::Config("bad silver folder".into()))?;
                // (a missing folder simply has no tables)
                if let Ok(entries) = std::fs::read_dir(&dir) {
                    for e in entries.flatten() {
                        if e.path().join("_delta_log").is_dir() {
                            types.push(e.file_name().to_string_lossy().to_string());
                        }
                    }
                }
            }
            Storage::S3 { .. } => {
                // List `silver/` one level deep through an object store rooted there.
                let store_table = DeltaTable::try_from_url_with_storage_options(self.storage.table_url("silver")?, self.options.clone())
                    .await
                    .map_err(|e| LakeError::delta("silver", e))?;
                let store = store_table.log_store().object_store(None);
                let listing = store.list_with_delimiter(None).await.map_err(|e| LakeError::delta("silver", e))?;
                for p in listing.common_prefixes {
                    if let Some(name) = p.parts().next_back() {
                        types.push(name.as_ref().to_string());
                    }
                }
            }
        }
        // Folder names are snake_case; map back to resource types by table name.
        types.sort();
        Ok(types.into_iter().map(|snake| snake_to_type(&snake)).collect())
    }
}

/// `diagnostic_report` -> `DiagnosticReport`.
pub fn snake_to_type(snake: &str) -> String {
    snake
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
        })
        .collect()
}

/// The rows whose key is not `known`, each key once (a row offered twice is kept
/// once too), and how many were left out.
fn unseen<T>(rows: Vec<T>, known: &HashSet<String>, key: impl Fn(&T) -> &String) -> (Vec<T>, usize) {
    let offered = rows.len();
    let mut seen = HashSet::new();
    let fresh: Vec<T> = rows.into_iter().filter(|r| !known.contains(key(r)) && seen.insert(key(r).clone())).collect();
    let skipped = offered - fresh.len();
    (fresh, skipped)
}

/// The first column of a query result, as strings.
fn string_column(b: &deltalake::arrow::array::RecordBatch) -> Result<Vec<String>, LakeError> {
    use deltalake::arrow::array::{Array, StringArray, StringViewArray};
    let col = b.column(0);
    if let Some(a) = col.as_any().downcast_ref::<StringArray>() {
        Ok(a.iter().flatten().map(str::to_string).collect())
    } else if let Some(a) = col.as_any().downcast_ref::<StringViewArray>() {
        Ok(a.iter().flatten().map(str::to_string).collect())
    } else {
        Err(LakeError::Sql(format!("ids came back as {}, not strings", col.data_type())))
    }
}
