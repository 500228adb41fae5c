//! `ehrgate ingest`, `ehrgate sql`, `ehrgate quarantine ...`, `ehrgate lake ...`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use ehrgate_ingest::bulk::{self, Progress};
use ehrgate_ingest::{LakeAudit, Pipeline, Report};
use ehrgate_lake::{Lake, maintenance, quarantine};
use crate::adapters;
use crate::config::Config;

pub fn open_lake(cfg: &Config) -> anyhow::Result<Arc<Lake>> {
    Ok(Arc::new(Lake::open(cfg.storage.clone(), cfg.lake.eager_batch()).context("opening the lake")?))
}

/// Get the silver tables' id indexes ready in the background (see
/// [`Lake::warm_silver`]) for a job that writes silver. A failure only means each
/// index is made at its table's first commit instead.
pub(crate) async fn warm_silver(lake: &Lake) {
    if let Err(e) = lake.warm_silver().await {
        tracing::warn!("silver id indexes not made ready ahead: {e}");
    }
}

/// The lake, a pipeline through `adapter`, and the audit writer's task: when done,
/// drop the pipeline and await the task so that every audit event is written.
pub(crate) async fn pipeline(cfg: &Config, adapter: &str) -> anyhow::Result<(Arc<Lake>, Arc<Pipeline>, tokio::task::JoinHandle<()>)> {
    let lake = open_lake(cfg)?;
    let (audit, audit_task) = LakeAudit::new(lake.clone());
    let (runtime, connections) = adapters::runtime(cfg, Arc::new(audit))?;
    let adapter = adapters::load_named(&runtime, &connections, cfg, adapter, Default::default()).await?;
    Ok((lake.clone(), Arc::new(Pipeline::new(lake, adapter)), audit_task))
}

/// Drop the pipeline (closing the audit queue) and wait for the audit writer.
pub(crate) async fn finish(pipeline: Arc<Pipeline>, audit_task: tokio::task::JoinHandle<()>) {
    drop(pipeline);
    if let Err(e) = audit_task.await {
        tracing::error!("audit writer failed: {e}");
    }
}

fn print_report(r: &Report) {
    println!("units: {}; resources merged into silver: {}; quarantined: {}", r.units, r.resources, r.quarantined);
    for (t, n) in &r.by_type {
        println!("  {t:<22} {n:>6}");
    }
    for (k, n) in &r.quarantined_by_kind {
        println!("  quarantined, {k:<12} {n:>6}");
    }
}

/// `ehrgate ingest [--adapter A] <file>...`
pub async fn ingest(cfg: &Config, adapter: &str, files: &[PathBuf]) -> anyhow::Result<ExitCode> {
    // Devices, pipes and directories are refused before anything starts: reading
    // /dev/zero or a FIFO nobody writes to would never end.
    for f in files {
        let meta = std::fs::metadata(f).with_context(|| format!("cannot read {}", f.display()))?;
        anyhow::ensure!(meta.is_file(), "{} is not a regular file (a directory, device or pipe); give files to ingest", f.display());
    }
    let (lake, pipeline, audit_task) = pipeline(cfg, adapter).await?;
    eprintln!("ingest: {} files through {} into {}", files.len(), pipeline.adapter().label(), lake.storage().describe());
    let started = Instant::now();
    warm_silver(&lake).await;
    let total = ingest_files(&pipeline, &lake, files).await?;
    finish(pipeline, audit_task).await;
    lake.close().await;
    print_report(&total);
    println!("took {:.2} s", started.elapsed().as_secs_f64());
    if let Some(kb) = super::bulk::peak_rss_kb() {
        println!("peak RSS {:.1} MB", kb as f64 / 1024.0);
    }
    Ok(ExitCode::SUCCESS)
}

/// Units handed to the pipeline at once: files are grouped so that commits stay few
/// and large, while memory stays bounded.
const UNITS_PER_CALL: usize = 5_000;

/// Lines of an NDJSON file mapped and committed at once: a commit's rows (`[lake]
/// commit_rows`), so that a silver commit, whose cost has a part per commit and a
/// part per file it touches, gathers as many rows as allowed; between 5,000 (the
/// Bulk Data path's batch) and 50,000 (memory: two files, each with batches in
/// flight; bulk's 32 MiB cap per batch holds too).
fn ndjson_batch_lines(lake: &Lake) -> usize {
    lake.commit_rows().clamp(5_000, 50_000)
}

fn is_ndjson(p: &std::path::Path) -> bool {
    p.extension().is_some_and(|e| e.eq_ignore_ascii_case("ndjson") || e.eq_ignore_ascii_case("jsonl"))
}

/// Ingest files: NDJSON streamed in batches, two files at once (the bulk export
/// path, see ehrgate_ingest::bulk); HL7v2 files in groups. Progress on long runs.
pub(crate) async fn ingest_files(pipeline: &Arc<Pipeline>, lake: &Arc<Lake>, files: &[PathBuf]) -> anyhow::Result<Report> {
    let (ndjson, hl7): (Vec<PathBuf>, Vec<PathBuf>) = files.iter().cloned().partition(|f| is_ndjson(f));
    let mut total = Report::default();
    if !ndjson.is_empty() {
        let progress = Arc::new(Progress::default());
        let reporter = bulk::report_every(progress.clone(), Duration::from_secs(2), |l| eprintln!("  ndjson: {l}"));
        let by_type = bulk::ingest_local(pipeline.clone(), lake.clone(), &ndjson, 2, ndjson_batch_lines(lake), progress.clone()).await;
        reporter.abort();
        let by_type = by_type.context("ingesting NDJSON")?;
        let f = progress.figures();
        total.units += (f.resources + f.quarantined) as usize;
        total.resources += f.resources as usize;
        total.quarantined += f.quarantined as usize;
        for (t, n) in by_type {
            *total.by_type.entry(t).or_default() += n as usize;
        }
        if f.quarantined > 0 {
            *total.quarantined_by_kind.entry("ndjson".into()).or_default() += f.quarantined as usize;
        }
    }
    let mut pending = Vec::new();
    let mut last_progress = Instant::now();
    for (i, file) in hl7.iter().enumerate() {
        let units = ehrgate_ingest::read_file(file, ehrgate_lake::now_micros()).with_context(|| format!("cannot read {}", file.display()))?;
        pending.extend(units);
        if pending.len() >= UNITS_PER_CALL || i + 1 == hl7.len() {
            let r = pipeline.ingest(std::mem::take(&mut pending)).await.context("ingesting")?;
            total.add(&r);
            if last_progress.elapsed() > Duration::from_secs(2) {
                eprintln!("  {}/{} files, {} units, {} resources", i + 1, hl7.len(), total.units, total.resources);
                last_progress = Instant::now();
            }
        }
    }
    Ok(total)
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum OutFormat {
    Table,
    Json,
    Csv,
}

/// `ehrgate quarantine list [--all]`
pub async fn quarantine_list(cfg: &Config, all: bool) -> anyhow::Result<ExitCode> {
    let lake = open_lake(cfg)?;
    let rows = quarantine::list(&lake, &quarantine::Filter { include_reprocessed: all, ..Default::default() }).await?;
    for q in &rows {
        println!(
            "{}  {}  {:<5} {:<14} {:<20} {}{}{}",
            q.id,
            ehrgate_lake::date_of(q.quarantined_at),
            q.input_kind,
            q.error_kind,
            q.adapter,
            q.location.as_ref().map(|l| format!("[{l}] ")).unwrap_or_default(),
            q.error_message,
            q.reprocess_outcome.as_ref().map(|o| format!("  (reprocessed: {o})")).unwrap_or_default(),
        );
    }
    eprintln!("{} quarantined {}", rows.len(), if all { "rows" } else { "rows pending" });
    Ok(ExitCode::SUCCESS)
}

/// `ehrgate quarantine reprocess [--id ID | --adapter NAME] [--with A]`
pub async fn quarantine_reprocess(cfg: &Config, id: Option<String>, adapter_filter: Option<String>, with: &str) -> anyhow::Result<ExitCode> {
    let (_lake, pipeline, audit_task) = pipeline(cfg, with).await?;
    let r = pipeline.reprocess(&quarantine::Filter { id, adapter: adapter_filter, include_reprocessed: false }).await?;
    finish(pipeline, audit_task).await;
    println!("examined {}; mapped and marked reprocessed {}; still failing {}", r.examined, r.mapped, r.still_failing.len());
    for (id, e) in &r.still_failing {
        println!("  {id}: {e}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `ehrgate lake optimize`
pub async fn optimize(cfg: &Config) -> anyhow::Result<ExitCode> {
    let lake = open_lake(cfg)?;
    for r in maintenance::optimize(&lake).await? {
        println!("{:<28} {}", r.table, r.detail);
    }
    Ok(ExitCode::SUCCESS)
}

/// `ehrgate lake vacuum [--retention-hours H] [--dry-run]`
pub async fn vacuum(cfg: &Config, hours: u64, dry_run: bool) -> anyhow::Result<ExitCode> {
    let lake = open_lake(cfg)?;
    for r in maintenance::vacuum(&lake, Duration::from_secs(hours * 3600), dry_run).await? {
        println!("{:<28} {}", r.table, r.detail);
    }
    Ok(ExitCode::SUCCESS)
}
