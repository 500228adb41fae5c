//! One manifest file: streamed from the server, split into lines, checked, and
//! committed in batches (bronze, silver or tombstones, quarantine), recording after
//! each batch how many lines are in. A re-read (a break mid-stream, a truncated
//! body, a restart) skips the lines already committed, and bronze gets no line twice.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ehrgate_lake::arrow::array::Array;
use ehrgate_lake::{BronzeDetail, BronzeRow, QuarantineRow, SilverRow, now_micros, sql};
use ehrgate_runtime::HttpError;
use serde_json::Value;

use super::ndjson::{LineSplitter, check_line, is_blank};
use super::progress::Progress;
use super::protocol::FileEntry;
use super::{BulkError, Ctx, Origin};
use crate::units::{Unit, UnitKind};

/// Which manifest array a file came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// Resources: mapped by the adapter into silver.
    Output,
    /// Bundles of DELETE entries: tombstones in silver.
    Deleted,
    /// OperationOutcomes: quarantine rows.
    Error,
}

/// Downloads of one file before giving up on it.
const MAX_ATTEMPTS: u32 = 4;
/// Batches of one file being mapped and committed while the next is read.
const IN_FLIGHT: usize = 2;
/// A batch is cut at this many bytes of lines too (large resources).
const MAX_BATCH_BYTES: usize = 32 << 20;
/// A line longer than this is not NDJSON (or not a resource anyone should hold).
const MAX_LINE_BYTES: usize = 64 << 20;

/// How one read of a file ended.
enum ReadEnd {
    Complete,
    /// Fewer lines than the manifest's count, or a torn last line: read again.
    Short { torn: Option<(u64, Bytes)>, why: String },
}

/// Ingests one file (resuming where its committed lines end).
pub(crate) async fn ingest_file(ctx: Arc<Ctx>, kind: FileKind, entry: FileEntry, key: String) -> Result<(), BulkError> {
    let before = ctx.file_progress(&key).await;
    if before.done {
        Progress::add(&ctx.progress.files_done, 1);
        return Ok(());
    }
    // Lines past the committed ones that are in bronze already (a crash between a
    // batch's bronze commit and its silver commit, or before the progress record):
    // they are mapped again but not written to bronze twice.
    let in_bronze = Arc::new(if before.started { bronze_lines_after(&ctx, &key, before.lines).await? } else { BTreeSet::new() });
    if !before.started {
        ctx.update_file(&key, |p| p.started = true).await?;
    }
    let mut attempt = 0;
    loop {
        attempt += 1;
        let committed = ctx.file_progress(&key).await.lines;
        let end = read_once(&ctx, kind, &entry, &key, committed, &in_bronze).await;
        let (retry_why, short) = match end {
            Ok(ReadEnd::Complete) => break,
            Ok(ReadEnd::Short { torn, why }) => (why, Some(torn)),
            Err(e) if e.is_transient() => (e.to_string(), None),
            Err(e) => return Err(e),
        };
        // (a local file reads the same every time: no point reading it again)
        if attempt < MAX_ATTEMPTS && matches!(ctx.origin, Origin::Export { .. }) {
            tracing::warn!(export = ?ctx.export_id(), file = %key, attempt, "re-reading the file: {retry_why}");
            tokio::time::sleep(Duration::from_millis(250 << attempt.min(5))).await;
            continue;
        }
        // A file that cannot be downloaded fails the run: the export stays in the
        // state, and the next run rejoins it and reads the file again.
        let Some(torn) = short else {
            return Err(BulkError::Incomplete(format!("file {key} could not be downloaded ({retry_why}, {attempt} tries); run the export again to resume it")));
        };
        // The server keeps sending a body that is cut short: what could not be read
        // is quarantined with the reason, never dropped silently.
        let (line, raw) = torn.unwrap_or((ctx.file_progress(&key).await.lines + 1, Bytes::new()));
        let why = format!("{retry_why} (the same after {attempt} downloads)");
        tracing::error!(export = ?ctx.export_id(), file = %key, "giving up on the rest of the file: {why}");
        let unit = ctx.unit(&key, line, raw, None);
        let q = ctx.pipeline.quarantine_row(&unit, "truncated", why, Some(format!("line {line}")));
        let bronze = if in_bronze.contains(&line) { vec![] } else { vec![unit.bronze] };
        ctx.lake.append_bronze(bronze).await?;
        ctx.lake.quarantine(vec![q]).await?;
        Progress::add(&ctx.progress.quarantined, 1);
        ctx.progress.shortfall.store(true, std::sync::atomic::Ordering::Relaxed);
        break;
    }
    ctx.update_file(&key, |p| p.done = true).await?;
    Progress::add(&ctx.progress.files_done, 1);
    Ok(())
}

/// The lines of this file after `after` that bronze already holds for this export
/// (at most the batches that were in flight at a crash).
async fn bronze_lines_after(ctx: &Ctx, key: &str, after: u64) -> Result<BTreeSet<u64>, BulkError> {
    let Some(export_id) = ctx.export_id() else { return Ok(BTreeSet::new()) };
    if ctx.lake.table(ehrgate_lake::Table::BronzeNdjson.path()).await?.is_none() {
        return Ok(BTreeSet::new());
    }
    let q = format!(
        "SELECT line FROM bronze_fhir_ndjson WHERE export_id = '{}' AND file = '{}' AND line > {after}",
        export_id.replace('\'', "''"),
        key.replace('\'', "''")
    );
    let mut lines = BTreeSet::new();
    for b in sql::query_one(&ctx.lake, ehrgate_lake::Table::BronzeNdjson.path(), &q).await? {
        let col = b.column(0).as_any().downcast_ref::<ehrgate_lake::arrow::array::Int64Array>().ok_or_else(|| BulkError::State("bronze line is not an integer".into()))?;
        lines.extend(col.iter().flatten().map(|l| l.max(0) as u64));
    }
    Ok(lines)
}

/// One download of the file, committing batches as they fill.
async fn read_once(ctx: &Arc<Ctx>, kind: FileKind, entry: &FileEntry, key: &str, committed: u64, in_bronze: &Arc<BTreeSet<u64>>) -> Result<ReadEnd, BulkError> {
    let mut d = Chunks::open(ctx, entry, key).await?;
    let expected_type = (kind == FileKind::Output && !entry.ty.is_empty()).then_some(entry.ty.as_str());
    let mut splitter = LineSplitter::default();
    let mut line_no = 0u64;
    let mut resources_seen = 0u64;
    let mut batch: Vec<(u64, Bytes)> = Vec::new();
    let mut batch_bytes = 0usize;
    let mut pending = Pending::new();
    let mut stream_error = None;
    let mut torn = None;
    loop {
        let chunk = match d.chunk().await {
            Ok(Some(c)) => c,
            Ok(None) => break,
            Err(e) => {
                stream_error = Some(e);
                break;
            }
        };
        Progress::add(&ctx.progress.bytes, chunk.len() as u64);
        for line in splitter.feed(&chunk) {
            line_no += 1;
            if is_blank(&line) {
                continue;
            }
            resources_seen += 1;
            if line_no > committed {
                batch_bytes += line.len();
                batch.push((line_no, line));
            }
        }
        if splitter.pending() > MAX_LINE_BYTES {
            return Err(BulkError::Refused(format!(
                "file {key}: line {} is longer than {} MiB (is this NDJSON?)",
                line_no + 1,
                MAX_LINE_BYTES >> 20
            )));
        }
        if batch.len() >= ctx.batch_lines || batch_bytes >= MAX_BATCH_BYTES {
            batch_bytes = 0;
            submit(ctx, kind, key, expected_type, std::mem::take(&mut batch), in_bronze, &mut pending).await?;
        }
    }
    if stream_error.is_none()
        && let Some(last) = splitter.finish()
    {
        // A last line without its newline is fine when it is whole JSON; a torn one
        // means the body was cut short.
        line_no += 1;
        match (is_blank(&last), check_line(&last, None).is_ok()) {
            (true, _) => {}
            (false, true) => {
                resources_seen += 1;
                if line_no > committed {
                    batch.push((line_no, last));
                }
            }
            (false, false) => torn = Some((line_no, last)),
        }
    }
    // The whole lines that did arrive are good: commit them before anything else.
    if !batch.is_empty() {
        submit(ctx, kind, key, expected_type, batch, in_bronze, &mut pending).await?;
    }
    while let Some(h) = pending.tasks.pop_front() {
        finish_one(ctx, key, h).await?;
    }
    if let Some(e) = stream_error {
        return Err(e);
    }
    if let Some((n, _)) = &torn {
        return Ok(ReadEnd::Short { why: format!("line {n} is cut short (the body ended inside it)"), torn });
    }
    // The Bulk Data IG's count is advisory on error files (servers put the
    // number of failed resources there, not the OperationOutcomes in the file):
    // only output files are held to it.
    if let Some(count) = entry.count
        && resources_seen < count
        && !matches!(kind, FileKind::Error)
    {
        return Ok(ReadEnd::Short { torn: None, why: format!("the manifest says {count} resources, the body held {resources_seen}") });
    }
    Ok(ReadEnd::Complete)
}

/// A file's batches being mapped and committed.
struct Pending {
    tasks: VecDeque<tokio::task::JoinHandle<Result<u64, BulkError>>>,
}

impl Drop for Pending {
    /// A file given up on (an error) leaves no commit running behind it.
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Pending {
    fn new() -> Pending {
        Pending { tasks: VecDeque::new() }
    }
}

/// Starts committing a batch; keeps at most `IN_FLIGHT` batches of this file in
/// flight, recording progress in order as they finish.
async fn submit(
    ctx: &Arc<Ctx>,
    kind: FileKind,
    key: &str,
    expected_type: Option<&str>,
    batch: Vec<(u64, Bytes)>,
    in_bronze: &Arc<BTreeSet<u64>>,
    pending: &mut Pending,
) -> Result<(), BulkError> {
    while pending.tasks.len() >= IN_FLIGHT {
        let h = pending.tasks.pop_front().expect("not empty");
        finish_one(ctx, key, h).await?;
    }
    let c = ctx.clone();
    let (key_owned, ty, in_bronze) = (key.to_string(), expected_type.map(str::to_string), in_bronze.clone());
    pending.tasks.push_back(tokio::spawn(async move { commit_batch(&c, kind, &key_owned, ty.as_deref(), batch, &in_bronze).await }));
    Ok(())
}

async fn finish_one(ctx: &Ctx, key: &str, h: tokio::task::JoinHandle<Result<u64, BulkError>>) -> Result<(), BulkError> {
    let last = h.await.map_err(|e| BulkError::State(format!("a commit task failed: {e}")))??;
    ctx.update_file(key, |p| p.lines = p.lines.max(last)).await
}

/// Checks, maps and commits one batch of lines; returns its last line number.
async fn commit_batch(
    ctx: &Ctx,
    kind: FileKind,
    key: &str,
    expected_type: Option<&str>,
    batch: Vec<(u64, Bytes)>,
    in_bronze: &BTreeSet<u64>,
) -> Result<u64, BulkError> {
    let last = batch.last().map(|(n, _)| *n).unwrap_or(0);
    let mut good = Vec::with_capacity(batch.len());
    let mut quarantined: Vec<QuarantineRow> = Vec::new();
    let mut bronze = Vec::with_capacity(batch.len());
    // Rejected lines bronze holds already (a resumed file): not appended again, but
    // their landed events are published again.
    let mut held = Vec::new();
    for (n, raw) in batch {
        match check_line(&raw, expected_type) {
            Ok(ty) => good.push(ctx.unit(key, n, raw, Some(ty))),
            Err(why) => {
                let unit = ctx.unit(key, n, raw, None);
                quarantined.push(ctx.pipeline.quarantine_row(&unit, "invalid-ndjson", why, Some(format!("line {n}"))));
                if !in_bronze.contains(&n) {
                    bronze.push(unit.bronze);
                } else {
                    held.push(unit.bronze);
                }
            }
        }
    }
    let mut silver = Vec::new();
    match kind {
        FileKind::Output => {
            let mapped = ctx.pipeline.map_units(&good).await;
            silver = mapped.silver;
            quarantined.extend(mapped.quarantined);
        }
        FileKind::Deleted => {
            for u in &good {
                match tombstones(u, ctx.transaction_micros) {
                    Ok(rows) => silver.extend(rows),
                    Err(why) => quarantined.push(ctx.pipeline.quarantine_row(u, "invalid-ndjson", why, Some(format!("line {}", line_of(u))))),
                }
            }
            Progress::add(&ctx.progress.tombstones, silver.len() as u64);
        }
        FileKind::Error => {
            for u in &good {
                let why = format!("the server reported an export error: {}", outcome_text(&u.text));
                quarantined.push(ctx.pipeline.quarantine_row(u, "export-error", why, Some(format!("line {}", line_of(u)))));
            }
        }
    }
    let events = ctx.pipeline.landed_events(bronze.iter().chain(&held).chain(good.iter().map(|u| &u.bronze)), &silver, &quarantined);
    // The mapped units' bronze rows move into the bronze batch (no copy of the raw
    // bytes); their text is dropped with them.
    bronze.extend(good.into_iter().filter(|u| !in_bronze.contains(&(line_of(u) as u64))).map(|u| u.bronze));
    let resources = if kind == FileKind::Output { silver.len() as u64 } else { 0 };
    let n_quarantined = quarantined.len() as u64;
    ctx.count_types(&silver).await;
    if let Some(d) = ctx.slow_commit {
        tokio::time::sleep(d).await;
    }
    let (a, b, c) = tokio::join!(ctx.lake.append_bronze(bronze), ctx.lake.upsert_silver(silver), ctx.lake.quarantine(quarantined));
    a?;
    b?;
    c?;
    // Before the file's progress is saved: a failure leaves the export to be
    // resumed, and the resumed lines are published again.
    ctx.pipeline.publish_landed(events).await.map_err(|e| BulkError::Incomplete(e.to_string()))?;
    Progress::add(&ctx.progress.resources, resources);
    Progress::add(&ctx.progress.quarantined, n_quarantined);
    Ok(last)
}

fn line_of(u: &Unit) -> i64 {
    match &u.bronze.detail {
        BronzeDetail::Ndjson { line, .. } => *line,
        _ => 0,
    }
}

/// Diagnostics of an OperationOutcome line, cut short.
fn outcome_text(line: &str) -> String {
    let v: Value = serde_json::from_str(line).unwrap_or_default();
    let texts: Vec<String> = v["issue"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            let code = i["code"].as_str().unwrap_or("?");
            let text = i["diagnostics"].as_str().or(i["details"]["text"].as_str()).unwrap_or("");
            format!("{code}: {text}")
        })
        .collect();
    if texts.is_empty() { "an OperationOutcome without issues".into() } else { texts.join("; ").chars().take(500).collect() }
}

/// The tombstones of one `deleted` line: a Bundle whose entries are
/// `request: {method: DELETE, url: "<Type>/<id>"}`. A tombstone's time is the
/// export's transaction time (the deletion happened before it), so it replaces the
/// stored row, which is older.
fn tombstones(u: &Unit, transaction_micros: i64) -> Result<Vec<SilverRow>, String> {
    let v: Value = serde_json::from_str(&u.text).map_err(|_| "not JSON".to_string())?;
    if v["resourceType"] != "Bundle" {
        return Err("a deleted file line must be a Bundle".into());
    }
    let mut rows = Vec::new();
    for (i, e) in v["entry"].as_array().into_iter().flatten().enumerate() {
        let method = e["request"]["method"].as_str().unwrap_or("");
        let url = e["request"]["url"].as_str().unwrap_or("");
        if !method.eq_ignore_ascii_case("DELETE") {
            return Err(format!("entry {i}: request.method is `{method}`, not DELETE"));
        }
        let path = url.split(['?', '#']).next().unwrap_or("");
        let parts: Vec<&str> = path.trim_end_matches('/').rsplitn(3, '/').collect();
        let (id, ty) = match parts.as_slice() {
            [id, ty, ..] if !id.is_empty() && ty.chars().next().is_some_and(|c| c.is_ascii_uppercase()) && ty.chars().all(|c| c.is_ascii_alphanumeric()) => (*id, *ty),
            _ => return Err(format!("entry {i}: request.url is not <Type>/<id>")),
        };
        rows.push(SilverRow::tombstone(ty, id, "ehrgate-bulk", transaction_micros, &u.bronze.lineage(), u.bronze.receipt()));
    }
    if rows.is_empty() {
        return Err("a deleted-file Bundle without entries".into());
    }
    Ok(rows)
}

impl Ctx {
    /// The unit of line `line` of file `key`.
    pub(crate) fn unit(&self, key: &str, line: u64, raw: Bytes, resource_type: Option<String>) -> Unit {
        let text = String::from_utf8_lossy(&raw).into_owned();
        let bronze = match self.export_id() {
            // The same line of the same export always gets the same record id, so a
            // line re-read after a crash keeps silver's lineage true.
            Some(export_id) => {
                let detail = BronzeDetail::Ndjson { export_id: Some(export_id.to_string()), file: key.to_string(), line: line as i64, resource_type };
                BronzeRow::keyed(raw.to_vec(), &self.source, now_micros(), &format!("{export_id}|{key}|{line}"), line, detail)
            }
            None => {
                let name = std::path::Path::new(key).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| key.to_string());
                let detail = BronzeDetail::Ndjson { export_id: None, file: name.clone(), line: line as i64, resource_type };
                BronzeRow::new(raw.to_vec(), &format!("file:{name}"), now_micros(), line, detail)
            }
        };
        Unit { kind: UnitKind::Fhir, text, bronze, parse_error: None, reject: None }
    }
}

/// The bytes of a file as they arrive: an HTTP body, or a local file read in blocks.
enum Chunks {
    Http(ehrgate_connect::Download),
    Local(tokio::fs::File),
}

impl Chunks {
    async fn open(ctx: &Ctx, entry: &FileEntry, key: &str) -> Result<Chunks, BulkError> {
        let (conn, scopes, requires_token) = match &ctx.origin {
            Origin::Export { conn, scopes, requires_token, .. } => (conn, scopes, *requires_token),
            Origin::Local => {
                let f = tokio::fs::File::open(&entry.url).await.map_err(|e| BulkError::Io(format!("cannot open {}: {e}", entry.url)))?;
                return Ok(Chunks::Local(f));
            }
        };
        let d = conn.download(&entry.url, scopes, requires_token).await.map_err(|e| BulkError::Http("download".into(), e))?;
        match d.status {
            200 => Ok(Chunks::Http(d)),
            404 | 410 => Err(BulkError::Expired(format!("file {key} answered {}", d.status))),
            s if s == 429 || s >= 500 => Err(BulkError::Http("download".into(), HttpError::Unavailable(format!("file {key} answered {s}")))),
            s => Err(BulkError::Refused(format!("file {key} answered {s}"))),
        }
    }

    async fn chunk(&mut self) -> Result<Option<Bytes>, BulkError> {
        match self {
            Chunks::Http(d) => d.chunk().await.map_err(|e| BulkError::Http("download".into(), e)),
            Chunks::Local(f) => {
                use tokio::io::AsyncReadExt;
                let mut buf = bytes::BytesMut::with_capacity(256 << 10);
                let n = f.read_buf(&mut buf).await.map_err(|e| BulkError::Io(format!("reading: {e}")))?;
                Ok((n > 0).then(|| buf.freeze()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(text: &str) -> Unit {
        let detail = BronzeDetail::Ndjson { export_id: None, file: "f".into(), line: 1, resource_type: None };
        Unit { kind: UnitKind::Fhir, text: text.into(), bronze: BronzeRow::new(text.as_bytes().to_vec(), "s", 0, 1, detail), parse_error: None, reject: None }
    }

    #[test]
    fn deleted_bundles_become_tombstones() {
        let u = unit(r#"{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"DELETE","url":"Patient/p1"}},{"request":{"method":"DELETE","url":"https://ehr/fhir/Observation/o-2"}}]}"#);
        let rows = tombstones(&u, 42).unwrap();
        let got: Vec<(&str, &str, bool, i64)> = rows.iter().map(|r| (r.resource_type.as_str(), r.id.as_str(), r.deleted, r.source_ts)).collect();
        assert_eq!(got, vec![("Patient", "p1", true, 42), ("Observation", "o-2", true, 42)]);
        assert!(tombstones(&unit(r#"{"resourceType":"Bundle","entry":[{"request":{"method":"PUT","url":"Patient/1"}}]}"#), 1).is_err());
        assert!(tombstones(&unit(r#"{"resourceType":"Bundle","entry":[{"request":{"method":"DELETE","url":"patient"}}]}"#), 1).is_err());
        assert!(tombstones(&unit(r#"{"resourceType":"Patient","id":"x"}"#), 1).is_err());
    }

    #[test]
    fn outcome_text_names_code_and_diagnostics() {
        let t = outcome_text(r#"{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"not-supported","diagnostics":"type X"}]}"#);
        assert_eq!(t, "not-supported: type X");
    }
}
