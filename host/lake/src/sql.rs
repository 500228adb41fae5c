//! SQL over the tables (DataFusion). Tables are named by path with `/` as `_`:
//! `bronze_hl7_messages`, `silver_patient`, `quarantine_records`, `audit_access_log`.

use deltalake::DeltaTable;
use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::util::display::{ArrayFormatter, FormatOptions};
use deltalake::datafusion::error::DataFusionError;
use deltalake::datafusion::execution::context::SQLOptions;
use deltalake::datafusion::datasource::MemTable;
use deltalake::datafusion::prelude::{DataFrame, SessionContext};

use crate::error::LakeError;
use crate::lake::Lake;
use crate::schema::Table;

/// Run a read-only query over every table; returns the result batches. DDL, DML
/// (`INSERT`, `COPY ... TO`, `CREATE EXTERNAL TABLE`, ...) and other statements
/// (`SET`, transactions) are refused before anything runs. The fixed tables
/// (bronze, quarantine, audit, ...) are always there: one not yet written is
/// empty, not missing.
pub async fn query(lake: &Lake, sql: &str) -> Result<Vec<RecordBatch>, LakeError> {
    query_gated(lake, sql, &AsStored).await.map(|(b, _)| b)
}

/// Who reads decides, per table, whether it may be read and how it looks (masked):
/// the governance layer implements this; [`query`] reads everything as stored.
pub trait Gate: Send + Sync {
    /// `Err(why)` when the table named `sql_name` may not be read.
    fn check(&self, sql_name: &str) -> Result<(), String>;
    /// The table as this reader sees it, from the table as stored.
    fn view(&self, sql_name: &str, stored: DataFrame) -> Result<DataFrame, DataFusionError>;
}

/// Everything, as stored.
pub struct AsStored;

impl Gate for AsStored {
    fn check(&self, _: &str) -> Result<(), String> {
        Ok(())
    }
    fn view(&self, _: &str, stored: DataFrame) -> Result<DataFrame, DataFusionError> {
        Ok(stored)
    }
}

/// [`query`] through `gate`: a query naming a table the gate refuses fails with
/// [`LakeError::Refused`] before anything runs; the tables it may read are seen
/// only through the gate's view (the stored table is never registered by name).
/// Returns the batches and the tables the query names.
pub async fn query_gated(lake: &Lake, sql: &str, gate: &dyn Gate) -> Result<(Vec<RecordBatch>, Vec<String>), LakeError> {
    let tables = lake.tables().await?;
    let empty: Vec<Table> = Table::ALL.into_iter().filter(|t| !tables.iter().any(|(p, _)| p == t.path())).collect();
    run(tables, &empty, sql, gate).await
}

/// [`query_gated`] over the one table at `path` only (the others are not opened).
pub async fn query_one_gated(lake: &Lake, path: &str, sql: &str, gate: &dyn Gate) -> Result<Vec<RecordBatch>, LakeError> {
    let tables = lake.table(path).await?.map(|t| vec![(path.to_string(), t)]).unwrap_or_default();
    run(tables, &[], sql, gate).await.map(|(b, _)| b)
}

/// A read-only query over the one table at `path` (named as in [`query`]); a table
/// that does not exist yet is simply not there.
pub async fn query_one(lake: &Lake, path: &str, sql: &str) -> Result<Vec<RecordBatch>, LakeError> {
    let tables = lake.table(path).await?.map(|t| vec![(path.to_string(), t)]).unwrap_or_default();
    query_tables(tables, sql).await
}

/// A read-only query over the tables at `paths` only (named as in [`query`]); a
/// fixed table (bronze, quarantine, ...) not written yet is empty, not missing.
pub async fn query_paths(lake: &Lake, paths: &[&str], sql: &str) -> Result<Vec<RecordBatch>, LakeError> {
    let (mut tables, mut empty) = (Vec::new(), Vec::new());
    for p in paths {
        match lake.table(p).await? {
            Some(t) => tables.push((p.to_string(), t)),
            None => empty.extend(Table::ALL.into_iter().filter(|t| t.path() == *p)),
        }
    }
    run(tables, &empty, sql, &AsStored).await.map(|(b, _)| b)
}

/// Run a read-only query over the given tables (path, opened table).
pub(crate) async fn query_tables(tables: Vec<(String, DeltaTable)>, sql: &str) -> Result<Vec<RecordBatch>, LakeError> {
    run(tables, &[], sql, &AsStored).await.map(|(b, _)| b)
}

async fn run(tables: Vec<(String, DeltaTable)>, empty: &[Table], sql: &str, gate: &dyn Gate) -> Result<(Vec<RecordBatch>, Vec<String>), LakeError> {
    let e = |e: DataFusionError| LakeError::Sql(e.to_string());
    let ctx = SessionContext::new();
    let state = ctx.state();
    let dialect = state.config().options().sql_parser.dialect.clone();
    let statement = state.sql_to_statement(sql, &dialect).map_err(e)?;
    let mut named: Vec<String> = state.resolve_table_references(&statement).map_err(e)?.iter().map(|r| r.table().to_string()).collect();
    named.sort();
    named.dedup();
    for n in &named {
        gate.check(n).map_err(LakeError::Refused)?;
    }
    let register = |name: String, stored: DataFrame| -> Result<(), LakeError> {
        if gate.check(&name).is_err() {
            return Ok(());
        }
        let seen = gate.view(&name, stored).map_err(e)?;
        ctx.register_table(name, seen.into_view()).map_err(e)?;
        Ok(())
    };
    for t in empty {
        let provider = MemTable::try_new(t.schema(), vec![vec![]]).map_err(e)?;
        register(t.sql_name(), ctx.read_table(std::sync::Arc::new(provider)).map_err(e)?)?;
    }
    for (path, table) in tables {
        table.update_datafusion_session(&state).map_err(|e| LakeError::delta(&path, e))?;
        let provider = table.table_provider().await.map_err(|e| LakeError::delta(&path, e))?;
        register(path.replace('/', "_"), ctx.read_table(provider).map_err(e)?)?;
    }
    // What `SessionContext::sql_with_options` does, in steps so that a refused
    // statement gets its own message.
    let plan = ctx.state().statement_to_plan(statement).await.map_err(e)?;
    let read_only = SQLOptions::new().with_allow_ddl(false).with_allow_dml(false).with_allow_statements(false);
    read_only.verify_plan(&plan).map_err(|e| {
        let why = match e {
            DataFusionError::Plan(m) => m,
            e => e.to_string(),
        };
        LakeError::Sql(format!("only read-only queries are allowed ({why})"))
    })?;
    let df = ctx.execute_logical_plan(plan).await.map_err(e)?;
    Ok((df.collect().await.map_err(e)?, named))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Storage;
    use crate::writer::BatchConfig;

    #[tokio::test]
    async fn only_read_only_queries_run() {
        let scratch = crate::scratch::Scratch::new("lake-sql");
        let dir = &scratch.0;
        let lake = Lake::open(Storage::Local { root: dir.join("lake") }, BatchConfig::default()).unwrap();
        let target = dir.join("out.csv");
        let refused = [
            format!("COPY (SELECT 1 AS n) TO '{}' STORED AS CSV", target.display()),
            format!("EXPLAIN ANALYZE COPY (SELECT 1 AS n) TO '{}' STORED AS CSV", target.display()),
            "CREATE EXTERNAL TABLE passwd (line VARCHAR) STORED AS CSV LOCATION '/etc/passwd'".to_string(),
            "CREATE TABLE t AS SELECT 1 AS n".to_string(),
            "CREATE VIEW v AS SELECT 1 AS n".to_string(),
            "SET datafusion.execution.batch_size = 1".to_string(),
        ];
        for sql in &refused {
            let e = query(&lake, sql).await.expect_err(sql).to_string();
            assert!(e.contains("only read-only queries are allowed"), "{sql}: {e}");
        }
        assert!(!target.exists(), "a refused COPY must not write anything");
        let batches = query(&lake, "SELECT 1 AS n").await.unwrap();
        assert_eq!(render(&batches, Format::Csv).unwrap(), "n\n1\n");
        // Tables not written yet are empty, not missing.
        let batches = query(&lake, "SELECT count(*) AS n FROM quarantine_records").await.unwrap();
        assert_eq!(render(&batches, Format::Csv).unwrap(), "n\n0\n");
        let batches = query(&lake, "SELECT count(*) AS n FROM ops_shadow_diffs WHERE added > 0").await.unwrap();
        assert_eq!(render(&batches, Format::Csv).unwrap(), "n\n0\n");
    }
}
