//! SQL over the tables (DataFusion). Tables are named by path with `/` as `_`:
//! `bronze_hl7_messages`, `silver_patient`, `quarantine_records`, `audit_access_log`.

use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::util::display::{ArrayFormatter, FormatOptions};
use deltalake::datafusion::prelude::SessionContext;

use crate::error::LakeError;
use crate::lake::Lake;

/// Run a query; returns the result batches.
pub async fn query(lake: &Lake, sql: &str) -> Result<Vec<RecordBatch>, LakeError> {
    let ctx = SessionContext::new();
    for path in lake.tables().await? {
        if let Some(table) = lake.table(&path).await? {
            table.update_datafusion_session(&ctx.state()).map_err(|e| LakeError::delta(&path, e))?;
            let provider = table.table_provider().await.map_err(|e| LakeError::delta(&path, e))?;
            ctx.register_table(path.replace('/', "_"), provider).map_err(|e| LakeError::Sql(e.to_string()))?;
        }
    }
    let df = ctx.sql(sql).await.map_err(|e| LakeError::Sql(e.to_string()))?;
    df.collect().await.map_err(|e| LakeError::Sql(e.to_string()))
}

/// Output formats for `ehrgate sql`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Csv,
}

/// Render batches. JSON is one object per row (NDJSON); CSV has a header line.
pub fn render(batches: &[RecordBatch], format: Format) -> Result<String, LakeError> {
    match format {
        Format::Table => deltalake::arrow::util::pretty::pretty_format_batches(batches).map(|t| t.to_string()).map_err(|e| LakeError::Sql(e.to_string())),
        Format::Json => {
            let mut buf = Vec::new();
            {
                let mut w = deltalake::arrow::json::LineDelimitedWriter::new(&mut buf);
                let refs: Vec<&RecordBatch> = batches.iter().collect();
                w.write_batches(&refs).map_err(|e| LakeError::Sql(e.to_string()))?;
                w.finish().map_err(|e| LakeError::Sql(e.to_string()))?;
            }
            String::from_utf8(buf).map_err(|e| LakeError::Sql(e.to_string()))
        }
        Format::Csv => {
            let mut out = String::new();
            let Some(first) = batches.first() else { return Ok(out) };
            let schema = first.schema();
            out.push_str(&schema.fields().iter().map(|f| csv_cell(f.name())).collect::<Vec<_>>().join(","));
            out.push('\n');
            let opts = FormatOptions::default();
            for b in batches {
                let fmts: Vec<ArrayFormatter> = b
                    .columns()
                    .iter()
                    .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts))
                    .collect::<Result<_, _>>()
                    .map_err(|e| LakeError::Sql(e.to_string()))?;
                for row in 0..b.num_rows() {
                    let cells: Vec<String> = fmts.iter().map(|f| csv_cell(&f.value(row).to_string())).collect();
                    out.push_str(&cells.join(","));
                    out.push('\n');
                }
            }
            Ok(out)
        }
    }
}

fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() }
}
