//! The audit table (`audit/access_log`) and its hash chain.
//!
//! Every row carries `seq` (0, 1, 2, ... with no gap), the hash of the row before it
//! (`prev_hash`; [`GENESIS`] for the first) and its own `hash` = SHA-256 of the
//! previous hash and the row's canonical form ([`chain_hash`]). The chain is sealed
//! where commits happen, because only the committer knows the tail: each append
//! reads the tail at the version it commits on, and the commit refuses to land on any
//! other version (a concurrent writer, another process included, makes it reload the
//! tail and seal again). Each commit also records the new head (`seq`, `hash`) in its
//! commit info, so rows removed from the end are detected too. Editing or deleting
//! any row breaks the chain at that row: `ehrgate audit verify` (crate `govern`)
//! walks it.

use std::sync::Arc;

use deltalake::arrow::array::{Array, ArrayRef, Int64Array, RecordBatch, StringArray, StringViewArray};
use deltalake::datafusion::prelude::SessionContext;
use deltalake::{DeltaTable, DeltaTableError};

use crate::error::LakeError;
use crate::rows::{Micros, batch, date_of, sha256_hex, strings, times};
use crate::schema::Table;

/// The `prev_hash` of the first row.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The commit-info key under which each audit commit records the chain's new head.
pub const HEAD_KEY: &str = "ehrgate.auditHead";

/// One audited access: a read, a write, an export, a change of policy or adapter.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AuditRow {
    pub at: Micros,
    /// Who: `adapter:epic@1.2.0`, `door:<client> (...)`, `sql:<principal>`, `admin`.
    pub actor: String,
    /// What: `http.request`, `sql.query`, `door.latest_vitals`, `lake.retain`, ...
    pub action: String,
    pub connection: Option<String>,
    pub method: Option<String>,
    /// The path asked for, or the tables touched.
    pub path: Option<String>,
    /// `200`, `ok`, `refused: ...`, `error: ...`.
    pub outcome: String,
    /// The declared purpose of use, where the caller gives one.
    pub purpose: Option<String>,
    /// More about the access, as JSON (query text, rows returned, counts).
    pub detail: Option<String>,
}

/// A stored row and its place in the chain.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainedRow {
    /// `None` for a row written before the chain existed.
    pub seq: Option<i64>,
    pub row: AuditRow,
    pub prev_hash: Option<String>,
    pub hash: Option<String>,
}

/// The hash of the row at `seq` whose predecessor's hash is `prev_hash`.
pub fn chain_hash(seq: i64, row: &AuditRow, prev_hash: &str) -> String {
    let canonical = serde_json::json!([
        seq,
        row.at,
        row.actor,
        row.action,
        row.connection,
        row.method,
        row.path,
        row.outcome,
        row.purpose,
        row.detail
    ]);
    sha256_hex(format!("{prev_hash}\n{canonical}").as_bytes())
}

/// The last row of the chain: its seq (-1 for none) and hash.
#[derive(Debug, Clone, PartialEq)]
pub struct Head {
    pub seq: i64,
    pub hash: String,
}

impl Head {
    pub fn empty() -> Head {
        Head { seq: -1, hash: GENESIS.to_string() }
    }
}

/// `rows` sealed onto the chain after `head`: the batch to append and the new head.
pub(crate) fn chained_batch(rows: &[AuditRow], head: &Head) -> Result<(RecordBatch, Head), LakeError> {
    let mut seqs = Vec::with_capacity(rows.len());
    let mut prevs = Vec::with_capacity(rows.len());
    let mut hashes = Vec::with_capacity(rows.len());
    let mut cur = head.clone();
    for r in rows {
        let seq = cur.seq + 1;
        let hash = chain_hash(seq, r, &cur.hash);
        seqs.push(seq);
        prevs.push(std::mem::replace(&mut cur, Head { seq, hash: hash.clone() }).hash);
        hashes.push(hash);
    }
    let t = Table::Audit;
    let cols: Vec<ArrayRef> = vec![
        times(rows.iter().map(|r| Some(r.at))),
        Arc::new(rows.iter().map(|r| Some(date_of(r.at))).collect::<StringArray>()),
        strings(rows.iter().map(|r| Some(r.actor.as_str()))),
        strings(rows.iter().map(|r| Some(r.action.as_str()))),
        strings(rows.iter().map(|r| r.connection.as_deref())),
        strings(rows.iter().map(|r| r.method.as_deref())),
        strings(rows.iter().map(|r| r.path.as_deref())),
        strings(rows.iter().map(|r| Some(r.outcome.as_str()))),
        Arc::new(Int64Array::from(seqs)),
        strings(rows.iter().map(|r| r.purpose.as_deref())),
        strings(rows.iter().map(|r| r.detail.as_deref())),
        strings(prevs.iter().map(|s| Some(s.as_str()))),
        strings(hashes.iter().map(|s| Some(s.as_str()))),
    ];
    Ok((batch(t.path(), t.schema(), cols)?, cur))
}

/// The head of the chain in `table` as of its loaded version (the row with the
/// highest seq).
pub(crate) async fn head(table: &DeltaTable) -> Result<Head, DeltaTableError> {
    if table.version().is_none() {
        return Ok(Head::empty());
    }
    let ctx = SessionContext::new();
    table.update_datafusion_session(&ctx.state())?;
    ctx.register_table("audit", table.table_provider().await?)?;
    let found = ctx.sql("SELECT seq, hash FROM audit WHERE seq IS NOT NULL ORDER BY seq DESC LIMIT 1").await?.collect().await?;
    for b in &found {
        if b.num_rows() == 0 {
            continue;
        }
        let seq = b.column(0).as_any().downcast_ref::<Int64Array>().map(|a| a.value(0));
        let hash = text(b.column(1).as_ref(), 0);
        if let (Some(seq), Some(hash)) = (seq, hash) {
            return Ok(Head { seq, hash });
        }
    }
    Ok(Head::empty())
}

/// The string at `i` of a Utf8 or Utf8View column.
fn text(a: &dyn Array, i: usize) -> Option<String> {
    if a.is_null(i) {
        return None;
    }
    if let Some(s) = a.as_any().downcast_ref::<StringArray>() {
        return Some(s.value(i).to_string());
    }
    a.as_any().downcast_ref::<StringViewArray>().map(|s| s.value(i).to_string())
}

/// Every row of the audit table (chained rows in seq order, then rows from before
/// the chain), and the newest head recorded in a commit by this writer (`None` when
/// no commit recorded one).
pub async fn read_chain(table: &DeltaTable) -> Result<(Vec<ChainedRow>, Option<Head>), LakeError> {
    let path = Table::Audit.path();
    let ctx = SessionContext::new();
    table.update_datafusion_session(&ctx.state()).map_err(|e| LakeError::delta(path, e))?;
    ctx.register_table("audit", table.table_provider().await.map_err(|e| LakeError::delta(path, e))?).map_err(|e| LakeError::Sql(e.to_string()))?;
    let q = "SELECT seq, CAST(at AS BIGINT) AS at, actor, action, connection, method, path, outcome, purpose, detail, prev_hash, hash \
             FROM audit ORDER BY seq ASC NULLS LAST, at ASC";
    let batches = ctx.sql(q).await.map_err(|e| LakeError::Sql(e.to_string()))?.collect().await.map_err(|e| LakeError::Sql(e.to_string()))?;
    let mut out = Vec::new();
    for b in &batches {
        let ints = |i: usize| b.column(i).as_any().downcast_ref::<Int64Array>().cloned();
        let (Some(seq), Some(at)) = (ints(0), ints(1)) else { return Err(LakeError::Sql("audit seq/at are not 64-bit integers".into())) };
        let s = |c: usize, i: usize| text(b.column(c).as_ref(), i);
        for i in 0..b.num_rows() {
            out.push(ChainedRow {
                seq: (!seq.is_null(i)).then(|| seq.value(i)),
                row: AuditRow {
                    at: at.value(i),
                    actor: s(2, i).unwrap_or_default(),
                    action: s(3, i).unwrap_or_default(),
                    connection: s(4, i),
                    method: s(5, i),
                    path: s(6, i),
                    outcome: s(7, i).unwrap_or_default(),
                    purpose: s(8, i),
                    detail: s(9, i),
                },
                prev_hash: s(10, i),
                hash: s(11, i),
            });
        }
    }
    Ok((out, recorded_head(table).await?))
}

/// The head recorded by the newest commit that recorded one (heads only grow, so
/// the one with the highest seq).
async fn recorded_head(table: &DeltaTable) -> Result<Option<Head>, LakeError> {
    use futures::StreamExt;
    let mut history = table.history(None);
    let mut newest: Option<Head> = None;
    while let Some(info) = history.next().await {
        let info = info.map_err(|e| LakeError::delta(Table::Audit.path(), e))?;
        let Some(h) = info.info.get(HEAD_KEY) else { continue };
        let (Some(seq), Some(hash)) = (h["seq"].as_i64(), h["hash"].as_str()) else { continue };
        if newest.as_ref().is_none_or(|n| seq > n.seq) {
            newest = Some(Head { seq, hash: hash.to_string() });
        }
    }
    Ok(newest)
}
