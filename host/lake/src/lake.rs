//! The lake: one handle over every table, with a writer per table.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use deltalake::DeltaTable;
use tokio::sync::oneshot;

use crate::error::LakeError;
use crate::rows::{AuditRow, BronzeRow, QuarantineRow, ShadowDiffRow, SilverRow};
use crate::schema::{self, Table};
use crate::storage::Storage;
use crate::writer::{self, BatchConfig, Rows, Submission, WriterHandle};

pub struct Lake {
    storage: Storage,
    options: HashMap<String, String>,
    cfg: BatchConfig,
    writers: Mutex<HashMap<String, WriterHandle>>,
}

impl Lake {
    /// Open the lake (nothing is created until something is written). Must be called
    /// inside a tokio runtime.
    pub fn open(storage: Storage, cfg: BatchConfig) -> Result<Lake, LakeError> {
        deltalake::aws::register_handlers(None);
        let options = storage.options()?;
        Ok(Lake { storage, options, cfg, writers: Mutex::new(HashMap::new()) })
    }

    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    fn writer(&self, path: &str) -> Result<WriterHandle, LakeError> {
        let mut w = self.writers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(h) = w.get(path) {
            return Ok(h.clone());
        }
        let url = self.storage.table_url(path)?;
        self.storage.prepare(path)?;
        let h = writer::spawn(path.to_string(), url, self.options.clone(), self.cfg);
        w.insert(path.to_string(), h.clone());
        Ok(h)
    }

    /// Queue rows for `path` and wait until they are committed. Waits (back-pressure)
    /// while the table's queue is full.
    async fn submit(&self, path: &str, rows: Rows) -> Result<(), LakeError> {
        let (done, wait) = oneshot::channel();
        self.writer(path)?.send(Submission { rows, done }).await.map_err(|_| LakeError::WriterGone(path.into()))?;
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
