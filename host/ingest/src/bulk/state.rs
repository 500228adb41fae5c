//! What survives a restart, per connection, in `<state_dir>/<connection>.json`:
//! the last completed export's transaction time (the next `_since`), and the export
//! in progress: its status URL, its manifest once known, and per file how many
//! lines are committed. Written atomically (temp file, fsync, rename, fsync dir).
//! A lock file keeps two processes from running one connection's export at once.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::BulkError;
use super::protocol::{ExportRequest, Manifest};

/// Progress of one file of the export in progress.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileProgress {
    /// Lines (counted from the top of the file, blank ones included) whose rows are
    /// committed to the lake.
    pub lines: u64,
    /// Set before the first rows of the file are written: a restart then looks in
    /// bronze for lines written after `lines` (a crash between the two commits).
    pub started: bool,
    pub done: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Current {
    pub request: ExportRequest,
    /// Ours: names the export in bronze (`export_id`) and in logs.
    pub export_id: String,
    pub status_url: String,
    pub kicked_off_at: String,
    #[serde(default)]
    pub manifest: Option<Manifest>,
    /// By file URL (query string dropped).
    #[serde(default)]
    pub files: BTreeMap<String, FileProgress>,
}

/// The figures of the running (or last) export, for `ehrgate bulk status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    pub files_done: u64,
    pub files_total: u64,
    pub resources: u64,
    pub quarantined: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub resources_per_s: f64,
    #[serde(default)]
    pub tombstones: u64,
    pub updated_at: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConnState {
    /// Per request (level, types, patients: see [`request_key`]), the
    /// `transactionTime` of its last completed export: its next `_since`. Kept per
    /// request so that a one-off export of other types does not move the watermark
    /// of the scheduled one.
    #[serde(default)]
    pub since: BTreeMap<String, String>,
    #[serde(default)]
    pub current: Option<Current>,
    #[serde(default)]
    pub figures: Option<Figures>,
}

/// The state file of one connection, held under its lock.
pub struct StateFile {
    path: PathBuf,
    connection: String,
    pub state: ConnState,
    _lock: File,
}

fn safe_name(connection: &str) -> Result<(), BulkError> {
    if connection.is_empty() || !connection.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) || connection.starts_with('.') {
        return Err(BulkError::Config(format!("connection name `{connection}` must be letters, digits, `-`, `_` or `.`")));
    }
    Ok(())
}

impl StateFile {
    /// Opens (creating the folder) and locks the state of `connection`. Fails at once
    /// when another process holds the lock.
    pub fn open(dir: &Path, connection: &str) -> Result<StateFile, BulkError> {
        safe_name(connection)?;
        std::fs::create_dir_all(dir).map_err(|e| BulkError::State(format!("cannot create {}: {e}", dir.display())))?;
        let lock_path = dir.join(format!("{connection}.lock"));
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| BulkError::State(format!("cannot open {}: {e}", lock_path.display())))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(BulkError::Busy(format!("another process is running an export on connection `{connection}` (lock {})", lock_path.display())));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(BulkError::State(format!("cannot lock {}: {e}", lock_path.display()))),
        }
        let path = dir.join(format!("{connection}.json"));
        let state = read(&path)?;
        Ok(StateFile { path, connection: connection.to_string(), state, _lock: lock })
    }

    /// Writes the state, and beside it `<connection>.prom`: the same figures as
    /// metrics in the Prometheus text format (for node_exporter's textfile
    /// collector, or anything that reads it).
    pub fn save(&self) -> Result<(), BulkError> {
        write_atomically(&self.path, &serde_json::to_vec_pretty(&self.state).expect("state serialises"))
            .map_err(|e| BulkError::State(format!("cannot write {}: {e}", self.path.display())))?;
        let prom = self.path.with_extension("prom");
        write_atomically(&prom, metrics(&self.connection, &self.state).as_bytes()).map_err(|e| BulkError::State(format!("cannot write {}: {e}", prom.display())))
    }
}

/// The figures of `state` in the Prometheus text exposition format.
pub fn metrics(connection: &str, state: &ConnState) -> String {
    let f = state.figures.clone().unwrap_or_default();
    let last = state.since.values().filter_map(|t| ehrgate_lake::parse_fhir_time(t)).max().map(|us| us as f64 / 1e6);
    let rows: [(&str, &str, f64); 10] = [
        ("files_done", "Files of the current (or last) export committed", f.files_done as f64),
        ("files_total", "Files in the current (or last) export's manifest", f.files_total as f64),
        ("resources", "Resources merged into silver by the current (or last) export", f.resources as f64),
        ("quarantined", "Lines quarantined by the current (or last) export", f.quarantined as f64),
        ("tombstones", "Deletions written as tombstones by the current (or last) export", f.tombstones as f64),
        ("bytes", "NDJSON bytes downloaded by the current (or last) export", f.bytes as f64),
        ("seconds", "Seconds the current (or last) export has run", f.seconds),
        ("resources_per_second", "Resources per second of the current (or last) export", f.resources_per_s),
        ("in_progress", "1 while an export is in progress", if state.current.is_some() { 1.0 } else { 0.0 }),
        ("last_transaction_time_seconds", "transactionTime of the newest completed export (Unix seconds)", last.unwrap_or(0.0)),
    ];
    let mut out = String::new();
    for (name, help, v) in rows {
        out.push_str(&format!("# HELP ehrgate_bulk_{name} {help}.\n# TYPE ehrgate_bulk_{name} gauge\nehrgate_bulk_{name}{{connection=\"{connection}\"}} {v}\n"));
    }
    out
}

/// Reads a connection's state without taking the lock (for `bulk status`).
pub fn peek(dir: &Path, connection: &str) -> Result<ConnState, BulkError> {
    safe_name(connection)?;
    read(&dir.join(format!("{connection}.json")))
}

fn read(path: &Path) -> Result<ConnState, BulkError> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| BulkError::State(format!("{} is damaged ({e}); move it aside to start afresh", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ConnState::default()),
        Err(e) => Err(BulkError::State(format!("cannot read {}: {e}", path.display()))),
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_data()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// The key of a request's watermark: the request without its `_since`.
pub fn request_key(req: &ExportRequest) -> String {
    let mut r = req.clone();
    r.since = None;
    r.types.sort();
    r.patients.sort();
    serde_json::to_string(&r).expect("request serialises")
}

/// A file URL without its query string (signed URLs carry secrets there).
pub fn file_key(url: &str) -> String {
    url.split(['?', '#']).next().unwrap_or(url).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_the_lock_is_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = StateFile::open(dir.path(), "ehr").unwrap();
        assert_eq!(s.state, ConnState::default());
        s.state.since.insert("k".into(), "2024-01-01T00:00:00Z".into());
        s.save().unwrap();
        assert!(matches!(StateFile::open(dir.path(), "ehr"), Err(BulkError::Busy(_))));
        drop(s);
        let s = StateFile::open(dir.path(), "ehr").unwrap();
        assert_eq!(s.state.since.get("k").map(String::as_str), Some("2024-01-01T00:00:00Z"));
        assert_eq!(peek(dir.path(), "ehr").unwrap().since, s.state.since);
        let prom = std::fs::read_to_string(dir.path().join("ehr.prom")).unwrap();
        assert!(prom.contains("ehrgate_bulk_in_progress{connection=\"ehr\"} 0\n"), "{prom}");
        assert!(prom.contains("ehrgate_bulk_last_transaction_time_seconds{connection=\"ehr\"} 1704067200\n"), "{prom}");
        assert!(StateFile::open(dir.path(), "../x").is_err());
        assert_eq!(file_key("https://s3/x.ndjson?X-Amz-Signature=abc"), "https://s3/x.ndjson");
    }
}
