//! `ehrgate bulk export|cancel|status`, and the scheduled exports of `ehrgate serve`.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ehrgate_connect::{Connection, Connections};
use ehrgate_ingest::bulk::{self, BulkOptions, BulkReport, ExportRequest, Level, Progress};
use ehrgate_ingest::{LakeAudit, Pipeline};
use ehrgate_lake::Lake;
use ehrgate_runtime::Runtime;

use crate::adapters;
use crate::config::{BulkJob, Config};

/// What to export, from the command line (anything left out comes from the
/// connection's `[[bulk.jobs]]` entry, if any).
#[derive(Debug, Clone, Default)]
pub struct ExportArgs {
    pub connection: String,
    pub group: Option<String>,
    pub patients: Vec<String>,
    pub types: Vec<String>,
    pub since: Option<String>,
    pub incremental: bool,
    pub adapter: Option<String>,
    pub parallel: Option<usize>,
}

fn connection(connections: &Connections, cfg: &Config, name: &str) -> anyhow::Result<Arc<Connection>> {
    connections.get(name).ok_or_else(|| {
        let known: Vec<&str> = cfg.connections.iter().map(|c| c.name.as_str()).collect();
        anyhow::anyhow!(
            "no connection `{name}` in the config ([[connections]]; known: {})",
            if known.is_empty() { "none".to_string() } else { known.join(", ") }
        )
    })
}

/// Patient ids or references -> `Patient/<id>`.
fn patient_ref(p: &str) -> String {
    if p.starts_with("Patient/") { p.to_string() } else { format!("Patient/{p}") }
}

/// The request and options for `args`, with the job's settings as defaults.
fn plan(cfg: &Config, args: &ExportArgs) -> anyhow::Result<(BulkOptions, String)> {
    let job = cfg.bulk.jobs.iter().find(|j| j.connection == args.connection);
    let group = args.group.clone().or_else(|| if args.patients.is_empty() { job.and_then(|j| j.group.clone()) } else { None });
    let level = match (&group, args.patients.is_empty(), job.is_some_and(|j| j.patient_level)) {
        (Some(g), _, _) => Level::Group(g.clone()),
        (None, false, _) | (None, true, true) => Level::Patient,
        (None, true, false) => Level::System,
    };
    let types = if args.types.is_empty() { job.map(|j| j.types.clone()).unwrap_or_default() } else { args.types.clone() };
    for t in &types {
        anyhow::ensure!(ehrgate_lake::valid_resource_type(t), "--type `{t}` is not a FHIR resource type name");
    }
    if let Some(s) = &args.since {
        anyhow::ensure!(ehrgate_lake::parse_fhir_time(s).is_some(), "--since `{s}` is not a FHIR instant (e.g. 2024-01-01T00:00:00Z)");
    }
    let request = ExportRequest { level, types, patients: args.patients.iter().map(|p| patient_ref(p)).collect(), since: args.since.clone() };
    let mut opts = BulkOptions::new(&args.connection, request, cfg.bulk.state_dir.clone());
    opts.incremental = args.incremental;
    opts.parallel = args.parallel.unwrap_or(cfg.bulk.parallel).max(1);
    opts.batch_lines = cfg.bulk.batch_lines.max(1);
    opts.slow_commit = std::env::var("EHRGATE_FAULT_SLOW_COMMIT_MS").ok().and_then(|v| v.parse().ok()).map(Duration::from_millis);
    let adapter = args.adapter.clone().or_else(|| job.map(|j| j.adapter.clone())).unwrap_or_else(|| "reference".into());
    Ok((opts, adapter))
}

/// Runs one export with `runtime`'s adapters and prints progress on stderr.
/// `landed`: where the export's landed events go (`serve` with `[kafka.landed]`).
async fn run(cfg: &Config, lake: &Arc<Lake>, runtime: &Runtime, connections: &Connections, args: &ExportArgs, quiet: bool, landed: Option<ehrgate_ingest::LandedHook>) -> anyhow::Result<BulkReport> {
    let (opts, adapter_name) = plan(cfg, args)?;
    let conn = connection(connections, cfg, &args.connection)?;
    let adapter = adapters::load_named(runtime, connections, cfg, &adapter_name, Default::default()).await?;
    let pipeline = Arc::new(Pipeline::new(lake.clone(), adapter).with_landed(landed));
    let progress = Arc::new(Progress::default());
    let name = args.connection.clone();
    let reporter = (!quiet).then(|| {
        let name = name.clone();
        bulk::report_every(progress.clone(), Duration::from_secs(2), move |l| eprintln!("bulk {name}: {l}"))
    });
    let result = bulk::run_export(conn, pipeline, lake.clone(), &opts, progress.clone(), |s| eprintln!("bulk {name}: {s}")).await;
    if let Some(r) = reporter {
        r.abort();
    }
    Ok(result?)
}

fn print_report(name: &str, r: &BulkReport) {
    let f = &r.figures;
    println!(
        "bulk {name}: export {} complete (transactionTime {}{}{})",
        r.export_id,
        r.transaction_time,
        r.since.as_deref().map(|s| format!(", _since {s}")).unwrap_or_default(),
        if r.rejoined { ", rejoined after a restart" } else { "" }
    );
    println!(
        "  files {}, resources {}, deleted (tombstones) {}, quarantined {}, {:.1} MB in {:.2} s, {:.0} resources/s",
        f.files_done,
        f.resources,
        r.tombstones,
        f.quarantined,
        f.bytes as f64 / 1e6,
        f.seconds,
        f.resources_per_s
    );
    for (t, n) in &r.by_type {
        println!("  {t:<22} {n:>8}");
    }
    if let Some(kb) = peak_rss_kb() {
        println!("  peak RSS {:.1} MB", kb as f64 / 1024.0);
    }
}

/// VmHWM of this process (Linux), in KiB.
pub fn peak_rss_kb() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.split_whitespace().next()).and_then(|n| n.parse().ok())
}

/// `ehrgate bulk export ...`
pub async fn export(cfg: &Config, args: ExportArgs) -> anyhow::Result<ExitCode> {
    let lake = Arc::new(Lake::open(cfg.storage.clone(), cfg.lake.eager_batch()).context("opening the lake")?);
    super::lake_cmds::warm_silver(&lake).await;
    let (audit, audit_task) = LakeAudit::new(lake.clone());
    let (runtime, connections) = adapters::runtime(cfg, Arc::new(audit))?;
    let result = run(cfg, &lake, &runtime, &connections, &args, false, None).await;
    drop(runtime);
    drop(connections);
    if let Err(e) = audit_task.await {
        tracing::error!("audit writer failed: {e}");
    }
    lake.close().await;
    let report = result?;
    print_report(&args.connection, &report);
    Ok(ExitCode::SUCCESS)
}

/// `ehrgate bulk cancel --connection NAME`
pub async fn cancel(cfg: &Config, name: &str) -> anyhow::Result<ExitCode> {
    let connections = Connections::new(&cfg.connections).context("connections")?;
    let conn = connection(&connections, cfg, name)?;
    match bulk::cancel(&conn, &cfg.bulk.state_dir, name).await? {
        Some((id, status)) => println!("bulk {name}: export {id} cancelled (the server answered {status}); rows already committed stay"),
        None => println!("bulk {name}: no export in progress"),
    }
    Ok(ExitCode::SUCCESS)
}

/// `ehrgate bulk status --connection NAME`
pub async fn status(cfg: &Config, name: &str) -> anyhow::Result<ExitCode> {
    let s = bulk::state::peek(&cfg.bulk.state_dir, name)?;
    if s.since.is_empty() {
        println!("bulk {name}: no completed export yet (the next --incremental exports everything)");
    }
    for (key, since) in &s.since {
        let what = serde_json::from_str::<ExportRequest>(key)
            .map(|r| {
                let types = if r.types.is_empty() { "all types".to_string() } else { r.types.join(",") };
                let patients = if r.patients.is_empty() { String::new() } else { format!(", {} patients", r.patients.len()) };
                format!("{} {types}{patients}", r.path())
            })
            .unwrap_or_else(|_| key.clone());
        println!("bulk {name}: {what}: last completed export's transactionTime (next _since) {since}");
    }
    match &s.current {
        Some(c) => {
            let done = c.files.values().filter(|f| f.done).count();
            let total = c.manifest.as_ref().map(|m| m.output.len() + m.deleted.len() + m.error.len());
            println!(
                "  in progress: export {} kicked off {} ({}); files done {done}/{}",
                c.export_id,
                c.kicked_off_at,
                if c.manifest.is_some() { "manifest received" } else { "server still working" },
                total.map(|t| t.to_string()).unwrap_or_else(|| "?".into())
            );
        }
        None => println!("  no export in progress"),
    }
    if let Some(f) = &s.figures {
        println!(
            "  figures ({}): files {}/{}, resources {}, quarantined {}, {:.1} MB, {:.1} s, {:.0} resources/s",
            f.updated_at,
            f.files_done,
            f.files_total,
            f.resources,
            f.quarantined,
            f.bytes as f64 / 1e6,
            f.seconds,
            f.resources_per_s
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `ehrgate serve`: every job with an interval runs incrementally on that interval,
/// until `stop` turns true. A failed run is logged and tried again next interval
/// (an unfinished export is rejoined).
pub fn schedule(
    cfg: Arc<Config>,
    lake: Arc<Lake>,
    runtime: Arc<Runtime>,
    connections: Arc<Connections>,
    landed: Option<ehrgate_ingest::LandedHook>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let jobs: Vec<BulkJob> = cfg.bulk.jobs.iter().filter(|j| j.interval_s.is_some()).cloned().collect();
    let mut tasks = Vec::new();
    for job in jobs {
        let (cfg, lake, runtime, connections, landed) = (cfg.clone(), lake.clone(), runtime.clone(), connections.clone(), landed.clone());
        let mut stop = stop.clone();
        let every = Duration::from_secs(job.interval_s.unwrap_or(3600).max(1));
        eprintln!("ehrgate: bulk export of {} every {} s (incremental)", job.connection, every.as_secs());
        tasks.push(tokio::spawn(async move {
            let args = ExportArgs { connection: job.connection.clone(), incremental: true, ..Default::default() };
            loop {
                tokio::select! {
                    r = run(&cfg, &lake, &runtime, &connections, &args, true, landed.clone()) => match r {
                        Ok(r) => eprintln!(
                            "ehrgate: bulk {}: export {} done: {} resources, {} tombstones, {} quarantined in {:.1} s",
                            job.connection, r.export_id, r.figures.resources, r.tombstones, r.figures.quarantined, r.figures.seconds
                        ),
                        Err(e) => eprintln!("ehrgate: bulk {}: export failed: {e:#} (next try in {} s)", job.connection, every.as_secs()),
                    },
                    _ = stop.changed() => return,
                }
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = stop.changed() => return,
                }
            }
        }));
    }
    tasks
}
