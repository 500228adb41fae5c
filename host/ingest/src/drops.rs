//! Watched directories: interface engines and vendors drop batch files (HL7v2
//! FHS/BHS files, NDJSON). Each file is ingested exactly once:
//!
//! - a file is picked up only when complete: its size and modification time have
//!   not changed for `stable`, or (when `done_suffix` is set) its done-marker
//!   `<file><suffix>` exists;
//! - its content hash and size are looked up in the drop's ledger: a file already
//!   ingested (the same file dropped twice) is moved aside, not ingested again;
//! - its rows are committed through the [`Pipeline`] (bronze first, then silver with
//!   MERGE), then the ledger line is fsynced, then the file is moved to
//!   `processed/`. A crash before the ledger line re-ingests the file on restart;
//!   its bronze record ids (from the file's time and line) are the same, so rows
//!   bronze and quarantine hold already are not appended again, and silver's MERGE
//!   ignores versions it has.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::pipeline::Pipeline;
use crate::resolve::PipelineSource;

#[derive(Debug, Clone)]
pub struct DropConfig {
    pub name: String,
    pub dir: PathBuf,
    pub adapter: String,
    /// Complete once unchanged for this long (when there is no done-marker rule).
    pub stable: Duration,
    /// Complete once `<file><suffix>` exists, e.g. `.done`.
    pub done_suffix: Option<String>,
    pub poll: Duration,
    /// Where ingested files are moved (default `<dir>/processed`).
    pub processed_dir: Option<PathBuf>,
    /// The ledger of ingested files (one JSON line each).
    pub ledger: PathBuf,
    /// Units committed per step (memory bound and progress granularity).
    pub chunk: usize,
    /// Fault injection for tests: wait this long after ingesting a file, before
    /// checking it did not change and moving it aside.
    pub pause_before_move: Option<Duration>,
}

impl DropConfig {
    pub fn new(name: &str, dir: PathBuf, adapter: &str, state_dir: &Path) -> DropConfig {
        DropConfig {
            name: name.into(),
            dir,
            adapter: adapter.into(),
            stable: Duration::from_secs(2),
            done_suffix: None,
            poll: Duration::from_millis(500),
            processed_dir: None,
            ledger: state_dir.join("drops").join(format!("{name}.jsonl")),
            chunk: 5_000,
            pause_before_move: None,
        }
    }

    fn processed(&self) -> PathBuf {
        self.processed_dir.clone().unwrap_or_else(|| self.dir.join("processed"))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DropError {
    #[error("drop `{name}`: {what}: {source}")]
    Io { name: String, what: String, source: std::io::Error },
    #[error("drop `{name}`: {source}")]
    Ingest { name: String, source: crate::pipeline::IngestError },
    #[error("drop {name}: adapter `{adapter}` is disabled or not installed; the file stays in the drop and is tried again")]
    Disabled { name: String, adapter: String },
    #[error("drop {name}: {file} changed while it was being ingested (its writer was still writing); it stays in the drop and is ingested again, whole, once it is stable. Writers should write under a temporary name and rename, or use done markers (done_suffix)")]
    Changed { name: String, file: String },
}

struct Seen {
    len: u64,
    modified: Option<SystemTime>,
    since: Instant,
}

/// The watcher: polls its directory until `shutdown`.
pub struct DropWatcher {
    cfg: DropConfig,
    source: PipelineSource,
    ledger: HashSet<(String, u64)>,
    seen: HashMap<PathBuf, Seen>,
    /// Files whose last attempt failed: not retried before this instant.
    retry_at: HashMap<PathBuf, (Instant, Duration)>,
}

fn sha256_file(bytes: &[u8]) -> String {
    ehrgate_lake::sha256_hex(bytes)
}

impl DropWatcher {
    pub fn new(cfg: DropConfig, pipeline: Pipeline) -> Result<DropWatcher, DropError> {
        Self::with_source(cfg, PipelineSource::Fixed(std::sync::Arc::new(pipeline)))
    }

    /// A watcher whose files go through whatever version of the adapter is active
    /// when each file is read (`ehrgate serve` swaps versions while it runs).
    pub fn with_source(cfg: DropConfig, source: PipelineSource) -> Result<DropWatcher, DropError> {
        let io = |what: &str| {
            let name = cfg.name.clone();
            let what = what.to_string();
            move |source| DropError::Io { name, what, source }
        };
        std::fs::create_dir_all(&cfg.dir).map_err(io("create the drop directory"))?;
        std::fs::create_dir_all(cfg.processed()).map_err(io("create the processed directory"))?;
        if let Some(p) = cfg.ledger.parent() {
            std::fs::create_dir_all(p).map_err(io("create the ledger directory"))?;
        }
        let mut ledger = HashSet::new();
        match std::fs::read_to_string(&cfg.ledger) {
            Ok(text) => {
                for line in text.lines() {
                    // A torn last line (crash while writing) is ignored: that file is
                    // simply ingested again.
                    if let Ok(v) = serde_json::from_str::<serde_json::Value>(line)
                        && let (Some(h), Some(n)) = (v["sha256"].as_str(), v["size"].as_u64())
                    {
                        ledger.insert((h.to_string(), n));
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("read the ledger")(e)),
        }
        Ok(DropWatcher { cfg, source, ledger, seen: HashMap::new(), retry_at: HashMap::new() })
    }

    pub fn spawn(mut self, mut shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
        tokio::spawn(async move {
            tracing::info!(drop = %self.cfg.name, dir = %self.cfg.dir.display(), "watching for files");
            loop {
                if let Err(e) = self.poll_once().await {
                    tracing::error!("{e}");
                }
                tokio::select! {
                    _ = tokio::time::sleep(self.cfg.poll) => {}
                    _ = shutdown.changed() => break,
                }
            }
        })
    }

    fn is_candidate(&self, path: &Path) -> bool {
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else { return false };
        if name.starts_with('.') || name.ends_with(".tmp") || name.ends_with(".part") {
            return false;
        }
        !self.cfg.done_suffix.as_ref().is_some_and(|s| name.ends_with(s.as_str()))
    }

    fn marker(&self, path: &Path) -> Option<PathBuf> {
        self.cfg.done_suffix.as_ref().map(|s| {
            let mut p = path.as_os_str().to_owned();
            p.push(s);
            PathBuf::from(p)
        })
    }

    /// One look at the directory: ingest every file that is complete. Returns how
    /// many files were ingested.
    pub async fn poll_once(&mut self) -> Result<usize, DropError> {
        let name = self.cfg.name.clone();
        let io = |what: String| move |source| DropError::Io { name: name.clone(), what, source };
        let mut files: Vec<PathBuf> = Vec::new();
        for entry in std::fs::read_dir(&self.cfg.dir).map_err(io("list the drop directory".into()))? {
            let Ok(entry) = entry else { continue };
            if entry.file_type().is_ok_and(|t| t.is_file()) && self.is_candidate(&entry.path()) {
                files.push(entry.path());
            }
        }
        files.sort();
        self.seen.retain(|p, _| files.contains(p));
        self.retry_at.retain(|p, _| files.contains(p));
        let mut done = 0;
        for path in files {
            if self.retry_at.get(&path).is_some_and(|(at, _)| Instant::now() < *at) {
                continue;
            }
            let Ok(meta) = std::fs::metadata(&path) else { continue };
            // An empty file is a writer that has not started yet, not a complete file.
            if meta.len() == 0 {
                continue;
            }
            let ready = match self.marker(&path) {
                Some(marker) => marker.is_file(),
                None => {
                    let now = Instant::now();
                    let seen = self.seen.entry(path.clone()).or_insert(Seen { len: meta.len(), modified: meta.modified().ok(), since: now });
                    if seen.len != meta.len() || seen.modified != meta.modified().ok() {
                        *seen = Seen { len: meta.len(), modified: meta.modified().ok(), since: now };
                    }
                    now.duration_since(seen.since) >= self.cfg.stable
                }
            };
            if ready {
                // One bad file must not hold up the others: it is retried later,
                // with a growing delay.
                match self.ingest_file(&path, &meta).await {
                    Ok(()) => {
                        self.seen.remove(&path);
                        self.retry_at.remove(&path);
                        done += 1;
                    }
                    Err(e) => {
                        let delay = self.retry_at.get(&path).map(|(_, d)| (*d * 2).min(Duration::from_secs(300))).unwrap_or(Duration::from_secs(5));
                        tracing::error!("{e}; retrying that file in {delay:?}");
                        self.retry_at.insert(path.clone(), (Instant::now() + delay, delay));
                    }
                }
            }
        }
        Ok(done)
    }

    async fn ingest_file(&mut self, path: &Path, meta: &std::fs::Metadata) -> Result<(), DropError> {
        let name = self.cfg.name.clone();
        let io = |what: String| {
            let name = name.clone();
            move |source| DropError::Io { name, what, source }
        };
        let file = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        // Reading, hashing and splitting a big file is blocking work: off the async
        // threads that serve the MLLP listeners.
        let owned = path.to_path_buf();
        let hashed = tokio::task::spawn_blocking(move || std::fs::read(&owned).map(|b| (sha256_file(&b), b.len() as u64)))
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|r| r)
            .map_err(io(format!("read {file}")))?;
        let key = hashed;
        if self.ledger.contains(&key) {
            self.move_aside(path, &format!("{file}.duplicate"))?;
            tracing::info!(drop = %self.cfg.name, "{file}: already ingested (same content and size); moved aside without ingesting");
            return Ok(());
        }
        // The file's own time is its receipt time: a re-read after a crash gives the
        // same bronze record ids.
        let received_at = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map(|d| d.as_micros() as i64)
            .unwrap_or_else(ehrgate_lake::now_micros);
        let owned = path.to_path_buf();
        let units = tokio::task::spawn_blocking(move || crate::units::read_file(&owned, received_at))
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|r| r)
            .map_err(io(format!("read {file}")))?;
        let total = units.len();
        // One version for the whole file; while the adapter is disabled the file
        // stays where it is and is tried again later.
        let pipeline = self.source.current().ok_or_else(|| DropError::Disabled { name: self.cfg.name.clone(), adapter: self.source.name() })?;
        let mut committed = 0;
        let mut units = units.into_iter();
        loop {
            let chunk: Vec<_> = units.by_ref().take(self.cfg.chunk.max(1)).collect();
            if chunk.is_empty() {
                break;
            }
            let n = chunk.len();
            let report = pipeline.ingest_once(chunk).await.map_err(|source| DropError::Ingest { name: self.cfg.name.clone(), source })?;
            committed += n;
            tracing::info!(drop = %self.cfg.name, %file, "{file}: committed {committed}/{total} units ({} resources, {} quarantined)", report.resources, report.quarantined);
        }
        if let Some(d) = self.cfg.pause_before_move {
            tracing::warn!(drop = %self.cfg.name, "fault injection: pausing {d:?} before moving {file} aside");
            tokio::time::sleep(d).await;
        }
        // A writer that paused longer than `stable` and went on: what was read is
        // not the whole file. Leave it (and the ledger) alone; once it is stable it
        // is ingested again, whole (silver merges the part already in).
        let now = std::fs::metadata(path).map_err(io(format!("look at {file} again")))?;
        if now.len() != meta.len() || now.len() != key.1 || now.modified().ok() != meta.modified().ok() {
            return Err(DropError::Changed { name: self.cfg.name.clone(), file });
        }
        // Ledger first, then the move: a crash in between leaves a file the ledger
        // knows, which the next poll moves aside.
        let line = serde_json::json!({
            "sha256": key.0, "size": key.1, "file": file, "units": total,
            "adapter": pipeline.adapter().label(), "at": ehrgate_lake::now_micros(),
        });
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&self.cfg.ledger).map_err(io("open the ledger".into()))?;
        f.write_all(format!("{line}\n").as_bytes()).and_then(|_| f.sync_data()).map_err(io("write the ledger".into()))?;
        self.ledger.insert(key);
        self.move_aside(path, &file)?;
        tracing::info!(drop = %self.cfg.name, "{file}: ingested {total} units");
        Ok(())
    }

    fn move_aside(&self, path: &Path, name: &str) -> Result<(), DropError> {
        let dir = self.cfg.processed();
        let mut target = dir.join(name);
        let mut i = 1;
        while target.exists() {
            target = dir.join(format!("{name}.{i}"));
            i += 1;
        }
        std::fs::rename(path, &target).map_err(|source| DropError::Io { name: self.cfg.name.clone(), what: format!("move {name} to {}", dir.display()), source })?;
        if let Some(marker) = self.marker(path) {
            let _ = std::fs::remove_file(marker);
        }
        Ok(())
    }
}
