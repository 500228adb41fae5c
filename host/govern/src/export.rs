//! `ehrgate export --profile NAME --to DIR`: tables written out through a masking
//! profile, as NDJSON and Parquet, with a manifest, and audited.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use ehrgate_lake::arrow::array::RecordBatch;
use ehrgate_lake::datafusion::error::DataFusionError;
use ehrgate_lake::datafusion::prelude::DataFrame;
use ehrgate_lake::sql::Gate;
use ehrgate_lake::{AuditRow, Lake};

use crate::GovernError;
use crate::policy::{Policy, Principal};
use crate::sql::Masking;

/// What was written.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Exported {
    pub profile: String,
    pub tables: Vec<TableExport>,
    pub rows: u64,
    pub seconds: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct TableExport {
    pub table: String,
    pub rows: u64,
    pub ndjson: String,
    pub parquet: String,
}

struct ExportGate {
    masking: Masking,
}

impl Gate for ExportGate {
    fn check(&self, _: &str) -> Result<(), String> {
        Ok(())
    }
    fn view(&self, sql_name: &str, stored: DataFrame) -> Result<DataFrame, DataFusionError> {
        self.masking.view(sql_name, stored)
    }
}

/// Export the tables whose SQL names match `tables` (`silver_*` style patterns)
/// through profile `profile` into `dir` (created; files in it are replaced).
/// `actor` is who asked (for the audit row).
pub async fn export(lake: &Lake, policy: &Policy, profile: &str, tables: &[String], dir: &Path, actor: &str) -> Result<Exported, GovernError> {
    let started = Instant::now();
    let prof = policy
        .profiles
        .get(profile)
        .cloned()
        .ok_or_else(|| GovernError::Config(format!("no profile `{profile}` (safe-harbor, or one of [governance.profiles]); an export is always masked")))?;
    let masking = Masking::new(prof.clone(), policy.masker(&prof)?);
    let gate = ExportGate { masking };
    std::fs::create_dir_all(dir).map_err(|e| GovernError::Config(format!("{}: {e}", dir.display())))?;
    let filter = Principal::pattern_matcher(tables);
    let mut paths: Vec<(String, String)> = lake.tables().await?.into_iter().map(|(p, _)| (p.replace('/', "_"), p)).filter(|(n, _)| filter(n)).collect();
    paths.sort();
    let names: Vec<String> = paths.iter().map(|(n, _)| n.clone()).collect();
    let mut out = Vec::new();
    let mut total = 0u64;
    for (name, path) in &paths {
        let batches = ehrgate_lake::sql::query_one_gated(lake, path, &format!("SELECT * FROM {name}"), &gate).await?;
        let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
        let ndjson = dir.join(format!("{name}.ndjson"));
        let parquet = dir.join(format!("{name}.parquet"));
        write_ndjson(&ndjson, &batches)?;
        write_parquet(&parquet, &batches)?;
        total += rows;
        out.push(TableExport { table: name.clone(), rows, ndjson: file_name(&ndjson), parquet: file_name(&parquet) });
        tracing::info!(table = %name, rows, "exported");
    }
    let done = Exported { profile: prof.name.clone(), tables: out, rows: total, seconds: started.elapsed().as_secs_f64() };
    let manifest = serde_json::to_string_pretty(&done).unwrap_or_default();
    std::fs::write(dir.join("manifest.json"), manifest).map_err(|e| GovernError::Config(format!("{}: {e}", dir.display())))?;
    let row = AuditRow {
        at: ehrgate_lake::now_micros(),
        actor: actor.to_string(),
        action: "export".into(),
        path: Some(names.join(",")),
        outcome: format!("ok: {total} rows"),
        detail: Some(serde_json::json!({"profile": prof.name, "to": dir.display().to_string(), "rows": total, "tables": names}).to_string()),
        ..Default::default()
    };
    lake.audit(vec![row]).await?;
    Ok(done)
}

fn file_name(p: &Path) -> String {
    p.file_name().map(|f| f.to_string_lossy().to_string()).unwrap_or_default()
}

fn io(p: &PathBuf, e: impl std::fmt::Display) -> GovernError {
    GovernError::Config(format!("writing {}: {e}", p.display()))
}

fn write_ndjson(path: &Path, batches: &[RecordBatch]) -> Result<(), GovernError> {
    let p = path.to_path_buf();
    let f = std::io::BufWriter::new(std::fs::File::create(&p).map_err(|e| io(&p, e))?);
    let mut w = ehrgate_lake::arrow::json::LineDelimitedWriter::new(f);
    let refs: Vec<&RecordBatch> = batches.iter().collect();
    w.write_batches(&refs).map_err(|e| io(&p, e))?;
    w.finish().map_err(|e| io(&p, e))
}

fn write_parquet(path: &Path, batches: &[RecordBatch]) -> Result<(), GovernError> {
    let p = path.to_path_buf();
    let Some(first) = batches.first() else {
        // (an empty table: an empty file would not be valid Parquet; none is written)
        let _ = std::fs::remove_file(&p);
        return Ok(());
    };
    let f = std::fs::File::create(&p).map_err(|e| io(&p, e))?;
    let mut w = ehrgate_lake::parquet::arrow::ArrowWriter::try_new(f, Arc::clone(&first.schema()), None).map_err(|e| io(&p, e))?;
    for b in batches {
        w.write(b).map_err(|e| io(&p, e))?;
    }
    w.close().map(|_| ()).map_err(|e| io(&p, e))
}
