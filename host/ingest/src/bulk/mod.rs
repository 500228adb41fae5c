//! FHIR Bulk Data `$export` into the lake: kick-off, status polling, then the
//! manifest's files downloaded in parallel (a bound), each streamed line by line
//! through NDJSON checks into batches for the adapter's `map-fhir`, then into silver;
//! raw lines in bronze; `deleted` entries as tombstones; error files and bad lines
//! in quarantine. Resumable: the state file remembers the status URL and, per file,
//! the lines committed, so a restart rejoins the export and skips what is in.
//! Incremental: the last export's `transactionTime` is the next `_since`.

mod files;
pub use ehrgate_wire::ndjson;
pub mod progress;
pub mod protocol;
pub mod state;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ehrgate_connect::Connection;
use ehrgate_lake::{Lake, LakeError, SilverRow, parse_fhir_time, sha256_hex};
use ehrgate_runtime::HttpError;
use futures::StreamExt;
use tokio::sync::Mutex;

pub use files::FileKind;
pub use progress::Progress;
pub use protocol::{ExportRequest, FileEntry, Level, Manifest, PollConfig};
pub use state::{ConnState, Figures, FileProgress};

use crate::Pipeline;
use protocol::PollEnd;
use state::{Current, StateFile};

#[derive(Debug, thiserror::Error)]
pub enum BulkError {
    #[error("{0}")]
    Config(String),
    #[error("bulk state: {0}")]
    State(String),
    #[error("{0}")]
    Busy(String),
    #[error("{0}: {text}", text = ehrgate_runtime::http_error_text(.1))]
    Http(String, HttpError),
    #[error("the server refused: {0}")]
    Refused(String),
    /// A file (or the export) is gone: 404 / 410.
    #[error("the export's files have expired: {0}")]
    Expired(String),
    #[error(transparent)]
    Lake(#[from] LakeError),
    #[error("{0}")]
    Io(String),
    /// A file could not be read: the export stays in progress, to be resumed.
    #[error("the export is not complete: {0}")]
    Incomplete(String),
}

impl BulkError {
    /// Worth another download of the same file.
    fn is_transient(&self) -> bool {
        matches!(self, BulkError::Http(_, HttpError::Unavailable(_) | HttpError::Timeout))
    }
}

/// How an export runs.
#[derive(Debug, Clone)]
pub struct BulkOptions {
    /// The connection's name (names the state file).
    pub connection: String,
    pub request: ExportRequest,
    /// Use the last completed export's transaction time as `_since`.
    pub incremental: bool,
    /// Files downloaded at once.
    pub parallel: usize,
    /// Lines per batch handed to the adapter and committed together.
    pub batch_lines: usize,
    pub poll: PollConfig,
    pub state_dir: PathBuf,
    /// Fault injection for tests: every batch waits this long before it commits.
    pub slow_commit: Option<Duration>,
}

impl BulkOptions {
    pub fn new(connection: &str, request: ExportRequest, state_dir: PathBuf) -> Self {
        BulkOptions { connection: connection.into(), request, incremental: false, parallel: 4, batch_lines: 5_000, poll: PollConfig::default(), state_dir, slow_commit: None }
    }
}

/// What an export did.
#[derive(Debug, Clone, Default)]
pub struct BulkReport {
    pub export_id: String,
    pub transaction_time: String,
    pub since: Option<String>,
    pub rejoined: bool,
    pub kick_offs: u32,
    pub figures: Figures,
    pub tombstones: u64,
    pub by_type: BTreeMap<String, u64>,
}

/// Where a file's lines come from.
pub(crate) enum Origin {
    /// A manifest file of an export: downloaded, progress recorded in the state.
    Export { conn: Arc<Connection>, scopes: Vec<String>, requires_token: bool, state: Arc<Mutex<StateFile>>, export_id: String },
    /// A local NDJSON file (`ehrgate ingest`, benchmarks): read from disk, no state.
    Local,
}

/// What every file task shares.
pub(crate) struct Ctx {
    origin: Origin,
    pipeline: Arc<Pipeline>,
    lake: Arc<Lake>,
    /// Bronze `source` (`bulk:<connection>`; local files: `file:<name>` per file).
    source: String,
    transaction_micros: i64,
    batch_lines: usize,
    slow_commit: Option<Duration>,
    progress: Arc<Progress>,
    by_type: Mutex<BTreeMap<String, u64>>,
}

impl Ctx {
    fn export_id(&self) -> Option<&str> {
        match &self.origin {
            Origin::Export { export_id, .. } => Some(export_id),
            Origin::Local => None,
        }
    }

    async fn file_progress(&self, key: &str) -> FileProgress {
        let Origin::Export { state, .. } = &self.origin else { return FileProgress::default() };
        let s = state.lock().await;
        s.state.current.as_ref().and_then(|c| c.files.get(key).cloned()).unwrap_or_default()
    }

    /// Changes a file's progress and saves the state (with the current figures).
    async fn update_file(&self, key: &str, f: impl FnOnce(&mut FileProgress)) -> Result<(), BulkError> {
        let Origin::Export { state, .. } = &self.origin else { return Ok(()) };
        let mut s = state.lock().await;
        if let Some(c) = s.state.current.as_mut() {
            f(c.files.entry(key.to_string()).or_default());
        }
        s.state.figures = Some(self.progress.figures());
        s.save()
    }

    async fn count_types(&self, rows: &[SilverRow]) {
        let mut m = self.by_type.lock().await;
        for r in rows.iter().filter(|r| !r.deleted) {
            *m.entry(r.resource_type.clone()).or_default() += 1;
        }
    }
}

/// Scopes a bulk export asks for: read on the requested types (minimum necessary),
/// or on everything when no types are named.
pub fn scopes_for(req: &ExportRequest) -> Vec<String> {
    if req.types.is_empty() { vec!["system/*.read".into()] } else { req.types.iter().map(|t| format!("system/{t}.read")).collect() }
}

/// Kick-offs of one run before giving up (a fresh one follows expired files).
const MAX_KICK_OFFS: u32 = 3;

/// Runs (or rejoins) the export of `opts.connection`, mapping with `pipeline`.
/// `on_status` receives progress lines (X-Progress while the server works; the
/// reporter prints the figures).
pub async fn run_export(
    conn: Arc<Connection>,
    pipeline: Arc<Pipeline>,
    lake: Arc<Lake>,
    opts: &BulkOptions,
    progress: Arc<Progress>,
    on_status: impl Fn(&str) + Send + Sync,
) -> Result<BulkReport, BulkError> {
    if opts.parallel == 0 || opts.batch_lines == 0 {
        return Err(BulkError::Config("parallel downloads and batch lines must be at least 1".into()));
    }
    let state = Arc::new(Mutex::new(StateFile::open(&opts.state_dir, &opts.connection)?));
    let mut request = opts.request.clone();
    let watermark = state::request_key(&request);
    if opts.incremental {
        request.since = state.lock().await.state.since.get(&watermark).cloned();
        match &request.since {
            Some(s) => on_status(&format!("incremental: _since={s} (the last export's transaction time)")),
            None => on_status("incremental: no earlier export on record, so this one exports everything"),
        }
    }
    let scopes = scopes_for(&request);
    let mut report = BulkReport { since: request.since.clone(), ..Default::default() };
    match &state.lock().await.state.current {
        Some(c) if c.request == request => {
            report.rejoined = true;
            on_status(&format!("rejoining export {} (kicked off {}, status {})", c.export_id, c.kicked_off_at, state::file_key(&c.status_url)));
        }
        Some(c) => {
            // (the request's patients are not named: they are PHI in a log line)
            return Err(BulkError::Busy(format!(
                "connection `{}` has an unfinished export {} of another request ({} {}, kicked off {}); run that again to finish it, or `ehrgate bulk cancel --connection {}`",
                opts.connection,
                c.export_id,
                c.request.path(),
                if c.request.types.is_empty() { "all types".to_string() } else { c.request.types.join(",") },
                c.kicked_off_at,
                opts.connection
            )));
        }
        None => {}
    }
    let status_url = loop {
        let current = state.lock().await.state.current.clone();
        let cur = match current {
            Some(c) => c,
            None => {
                if report.kick_offs >= MAX_KICK_OFFS {
                    return Err(BulkError::Expired(format!("gave up after {} kick-offs", report.kick_offs)));
                }
                report.kick_offs += 1;
                let status_url = protocol::kick_off(&conn, &request, &scopes).await?;
                let kicked_off_at = progress_now();
                let export_id = sha256_hex(format!("{status_url}|{kicked_off_at}").as_bytes())[..16].to_string();
                on_status(&format!("kicked off export {export_id}: {} {}", request.path(), request.since.as_deref().map(|s| format!("_since={s}")).unwrap_or_default()));
                let c = Current { request: request.clone(), export_id, status_url, kicked_off_at, manifest: None, files: BTreeMap::new() };
                let mut sf = state.lock().await;
                sf.state.current = Some(c.clone());
                sf.save()?;
                c
            }
        };
        // Polled again on a rejoin too: file URLs may be signed and short-lived, so
        // they are not kept (the state holds them without their query strings) and
        // the server hands out fresh ones.
        let polled = match protocol::poll(&conn, &cur.status_url, &scopes, opts.poll, |p| on_status(&format!("server: {p}"))).await {
            Ok(p) => p,
            Err(e @ BulkError::Refused(_)) => {
                // The export failed on the server: forget it, so the next run kicks
                // off afresh instead of rejoining a failure.
                let _ = protocol::delete(&conn, &cur.status_url, &scopes).await;
                forget_current(&state).await?;
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        let manifest = match polled {
            PollEnd::Complete(m) => {
                let mut sf = state.lock().await;
                if let Some(c) = sf.state.current.as_mut() {
                    c.manifest = Some(m.without_secrets());
                }
                sf.save()?;
                m
            }
            PollEnd::Gone => {
                on_status("the export is gone on the server (expired or cancelled there); kicking off a fresh one");
                forget_current(&state).await?;
                continue;
            }
        };
        match download_all(&conn, &pipeline, &lake, opts, &scopes, &cur.export_id, &manifest, &progress, &state).await {
            Ok(by_type) => {
                report.by_type = by_type;
                report.export_id = cur.export_id.clone();
                report.transaction_time = manifest.transaction_time.clone();
                break cur.status_url;
            }
            Err(BulkError::Expired(why)) => {
                on_status(&format!("the export has expired on the server ({why}); kicking off a fresh export (rows already in are merged again, not duplicated)"));
                // Release what was started: the abandoned export is deleted on the
                // server (best effort) before it is forgotten here.
                if let Err(e) = protocol::delete(&conn, &cur.status_url, &scopes).await {
                    tracing::debug!("DELETE of an abandoned export's status URL failed: {e}");
                }
                forget_current(&state).await?;
                progress.files_total.store(0, std::sync::atomic::Ordering::Relaxed);
                progress.files_done.store(0, std::sync::atomic::Ordering::Relaxed);
            }
            Err(e) => return Err(e),
        }
    };
    report.figures = progress.figures();
    report.tombstones = progress.tombstones.load(std::sync::atomic::Ordering::Relaxed);
    {
        let mut sf = state.lock().await;
        if progress.shortfall.load(std::sync::atomic::Ordering::Relaxed) {
            // Some file stayed short (quarantined as truncated): the next incremental
            // run starts from the old watermark again, so it fetches them again.
            on_status("some files stayed incomplete (see quarantine, `truncated`); the next incremental export starts from the previous _since again");
        } else {
            sf.state.since.insert(watermark.clone(), report.transaction_time.clone());
        }
        sf.state.current = None;
        sf.state.figures = Some(report.figures.clone());
        sf.save()?;
    }
    // Done with it: the server may clean up (best effort; the export is complete).
    if let Err(e) = protocol::delete(&conn, &status_url, &scopes).await {
        tracing::debug!("DELETE of a completed export's status URL failed: {e}");
    }
    Ok(report)
}

async fn forget_current(state: &Mutex<StateFile>) -> Result<(), BulkError> {
    let mut sf = state.lock().await;
    sf.state.current = None;
    sf.save()
}

#[allow(clippy::too_many_arguments)]
async fn download_all(
    conn: &Arc<Connection>,
    pipeline: &Arc<Pipeline>,
    lake: &Arc<Lake>,
    opts: &BulkOptions,
    scopes: &[String],
    export_id: &str,
    manifest: &Manifest,
    progress: &Arc<Progress>,
    state: &Arc<Mutex<StateFile>>,
) -> Result<BTreeMap<String, u64>, BulkError> {
    let transaction_micros = parse_fhir_time(&manifest.transaction_time)
        .ok_or_else(|| BulkError::Refused(format!("the manifest's transactionTime `{}` is not a FHIR instant", manifest.transaction_time)))?;
    let ctx = Arc::new(Ctx {
        origin: Origin::Export {
            conn: conn.clone(),
            scopes: scopes.to_vec(),
            requires_token: manifest.requires_access_token,
            state: state.clone(),
            export_id: export_id.to_string(),
        },
        pipeline: pipeline.clone(),
        lake: lake.clone(),
        source: format!("bulk:{}", opts.connection),
        transaction_micros,
        batch_lines: opts.batch_lines,
        slow_commit: opts.slow_commit,
        progress: progress.clone(),
        by_type: Mutex::new(BTreeMap::new()),
    });
    let files: Vec<(FileKind, FileEntry)> = manifest
        .output
        .iter()
        .map(|f| (FileKind::Output, f.clone()))
        .chain(manifest.deleted.iter().map(|f| (FileKind::Deleted, f.clone())))
        .chain(manifest.error.iter().map(|f| (FileKind::Error, f.clone())))
        .collect();
    Progress::add(&progress.files_total, files.len() as u64);
    // A file's progress and bronze rows are keyed by its URL without the query
    // string; where two files' URLs differ only there, their place in the manifest
    // tells them apart.
    let keys: Vec<String> = files.iter().map(|(_, e)| state::file_key(&e.url)).collect();
    let unique = keys.iter().collect::<std::collections::HashSet<_>>().len() == keys.len();
    let files = files.into_iter().zip(keys).enumerate().map(|(i, ((kind, entry), key))| {
        let key = if unique { key } else { format!("{key}#{}", i + 1) };
        (kind, entry, key)
    });
    let mut results = futures::stream::iter(files.map(|(kind, entry, key)| files::ingest_file(ctx.clone(), kind, entry, key))).buffer_unordered(opts.parallel);
    while let Some(r) = results.next().await {
        r?;
    }
    drop(results);
    let by_type = ctx.by_type.lock().await.clone();
    Ok(by_type)
}

/// Ingests local NDJSON files (one resource per line) the way export files are:
/// streamed, checked, mapped in batches through `pipeline`, `parallel` files at once.
/// Returns resources merged per type.
pub async fn ingest_local(
    pipeline: Arc<Pipeline>,
    lake: Arc<Lake>,
    paths: &[PathBuf],
    parallel: usize,
    batch_lines: usize,
    progress: Arc<Progress>,
) -> Result<BTreeMap<String, u64>, BulkError> {
    let ctx = Arc::new(Ctx {
        origin: Origin::Local,
        pipeline,
        lake,
        source: String::new(),
        transaction_micros: ehrgate_lake::now_micros(),
        batch_lines: batch_lines.max(1),
        slow_commit: None,
        progress: progress.clone(),
        by_type: Mutex::new(BTreeMap::new()),
    });
    Progress::add(&progress.files_total, paths.len() as u64);
    let files = paths.iter().map(|p| FileEntry { ty: String::new(), url: p.to_string_lossy().into_owned(), count: None });
    let mut results =
        futures::stream::iter(files.map(|e| files::ingest_file(ctx.clone(), FileKind::Output, e.clone(), e.url))).buffer_unordered(parallel.max(1));
    while let Some(r) = results.next().await {
        r?;
    }
    drop(results);
    let by_type = ctx.by_type.lock().await.clone();
    Ok(by_type)
}

/// Cancels the connection's export in progress: DELETE on its status URL, then
/// forgets it (rows already committed stay). Returns the export id, if there was one.
pub async fn cancel(conn: &Connection, state_dir: &std::path::Path, connection: &str) -> Result<Option<(String, u16)>, BulkError> {
    let mut sf = StateFile::open(state_dir, connection)?;
    let Some(cur) = sf.state.current.clone() else { return Ok(None) };
    let status = protocol::delete(conn, &cur.status_url, &scopes_for(&cur.request)).await?;
    sf.state.current = None;
    sf.save()?;
    Ok(Some((cur.export_id, status)))
}

fn progress_now() -> String {
    ehrgate_lake::rfc3339(ehrgate_lake::now_micros())
}

/// Prints `progress.line()` through `out` every `every` until the returned handle is
/// dropped or aborted.
pub fn report_every(progress: Arc<Progress>, every: Duration, out: impl Fn(&str) + Send + 'static) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tick.tick().await;
            out(&progress.line());
        }
    })
}
