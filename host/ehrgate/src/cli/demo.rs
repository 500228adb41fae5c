//! `ehrgate demo`: the main job on embedded defaults. The gateway runs in this
//! process: one MLLP listener per built-in adapter (reference and six vendors, each a
//! sandboxed wasm32-wasip2 component) on 127.0.0.1, fed over real sockets with the
//! HL7v2 samples under ../shared/data and each vendor's own samples, every message
//! durable in the write-ahead log before its ACK; the FHIR NDJSON samples land
//! through the file path; a live Bulk Data `$export` from the built-in sandbox EHR,
//! full then incremental (with a deletion as a tombstone). Then a dashboard (throughput, error rate, ACK
//! latency per adapter) and what landed, with SQL.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use ehrgate_lake::sql;

use crate::config::Config;

fn find_shared_data() -> Option<PathBuf> {
    let cwd = std::env::current_dir().ok()?;
    cwd.ancestors().flat_map(|d| [d.join("shared/data"), d.join("../shared/data")]).find(|p| p.join("hl7").is_dir())
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    let mut entries: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            files_under(&p, out);
        } else if p.extension().is_some_and(|e| e == "hl7" || e == "ndjson") {
            out.push(p);
        }
    }
}

pub async fn demo(cfg: &Config, data: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let data = match data {
        Some(d) => d,
        None => find_shared_data().context("no --data given and no shared/data folder found above the working directory")?,
    };
    let mut files = Vec::new();
    files_under(&data, &mut files);
    anyhow::ensure!(!files.is_empty(), "no .hl7 or .ndjson files under {}", data.display());

    let (hl7, ndjson): (Vec<PathBuf>, Vec<PathBuf>) = files.into_iter().partition(|f| f.extension().is_some_and(|e| e == "hl7"));
    let demo_started = ehrgate_lake::now_micros();
    let (lake, pipeline, audit_task) = super::lake_cmds::pipeline(cfg, "reference").await?;
    println!("== ehrgate demo ==");
    println!("lake:    {}", lake.storage().describe());
    println!("log:     {} (write-ahead: every message durable before its ACK)", cfg.wal.dir.display());
    println!("input:   {} HL7v2 files and {} FHIR NDJSON files under {}, plus each vendor adapter's samples", hl7.len(), ndjson.len(), data.display());
    println!();

    // 1. HL7v2 over MLLP, through all seven adapters at once.
    let (runtime, connections) = crate::adapters::runtime(cfg, std::sync::Arc::new(ehrgate_runtime::TracingAudit))?;
    let hl7_dir = data.join("hl7");
    let live = super::demo_mllp::run(cfg, lake.clone(), &runtime, &connections, &hl7_dir).await?;
    println!("HL7v2 over MLLP (one listener per adapter on 127.0.0.1, one message in flight per connection):");
    println!("  {:<16} {:<28} {:>6} {:>5} {:>5} {:>7} {:>9} {:>8} {:>8}", "listener", "adapter", "msgs", "AA", "AE", "errors", "msg/s", "p50 ms", "p99 ms");
    for (name, label, lane) in &live.lanes {
        let ok = lane.codes.get("AA").copied().unwrap_or(0) + lane.codes.get("CA").copied().unwrap_or(0);
        let bad = lane.messages - ok;
        println!(
            "  {:<16} {:<28} {:>6} {:>5} {:>5} {:>6.1}% {:>9.0} {:>8.2} {:>8.2}",
            name,
            label,
            lane.messages,
            ok,
            bad,
            100.0 * bad as f64 / lane.messages.max(1) as f64,
            lane.latencies.len() as f64 / lane.elapsed.as_secs_f64().max(1e-9),
            lane.pct(0.5),
            lane.pct(0.99)
        );
    }
    println!("  gateway: {}", live.stats.line());
    println!();

    // 2. A bulk export's NDJSON, through the file path.
    let started = Instant::now();
    let total = super::lake_cmds::ingest_files(&pipeline, &lake, &ndjson).await?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "FHIR NDJSON (bulk export files): {} lines in {:.2} s ({:.0} lines/s): {} resources merged into silver, {} quarantined",
        total.units,
        secs,
        total.units as f64 / secs.max(1e-9),
        total.resources,
        total.quarantined
    );
    println!();

    // 3. A live FHIR Bulk Data export from the sandbox EHR, then an incremental one.
    super::demo_bulk::run(cfg, lake.clone(), pipeline.clone()).await?;
    super::lake_cmds::finish(pipeline, audit_task).await;

    // 4. A workflow: discharges create follow-up Tasks in the EHR.
    super::demo_workflow::run(cfg, lake.clone()).await?;

    // 5. The operations KPIs of everything that came in over MLLP.
    kpis(cfg, &lake, demo_started).await?;

    async fn show(lake: &ehrgate_lake::Lake, title: &str, q: String) {
        if q.len() <= 200 {
            println!("{title}\n  $ ehrgate sql \"{q}\"");
        } else {
            println!("{title}");
        }
        match sql::query(lake, &q).await.and_then(|b| sql::render(&b, sql::Format::Table)) {
            Ok(t) => println!("{t}\n"),
            Err(e) => println!("  ({e})\n"),
        }
    }
    let mut union = Vec::new();
    for t in lake.silver_types().await? {
        union.push(format!("SELECT '{t}' AS resource_type, count(*) AS rows FROM {}", ehrgate_lake::silver_path(&t).replace('/', "_")));
    }
    if !union.is_empty() {
        show(&lake, "Silver tables (one per FHIR resource type):", format!("{} ORDER BY rows DESC", union.join(" UNION ALL "))).await;
    }
    show(
        &lake,
        "Most frequent observation codes:",
        "SELECT code_system, code, count(*) AS n FROM silver_observation GROUP BY code_system, code ORDER BY n DESC, code LIMIT 5".into(),
    )
    .await;
    show(&lake, "Quarantine by reason:", "SELECT input_kind, error_kind, count(*) AS n FROM quarantine_records GROUP BY input_kind, error_kind ORDER BY n DESC".into()).await;
    println!("Query the tables yourself with `ehrgate sql \"...\"`, or open ./ehrgate-data with any Delta reader.");
    Ok(ExitCode::SUCCESS)
}

/// gold/kpi_minute refreshed over the demo's traffic, summed per source.
async fn kpis(cfg: &Config, lake: &ehrgate_lake::Lake, since: i64) -> anyhow::Result<()> {
    let r = ehrgate_kpi::refresh(lake, &cfg.kpi, Some(since), ehrgate_lake::now_micros()).await?;
    let rows = ehrgate_kpi::read(lake, r.from).await?;
    let mut by_source: std::collections::BTreeMap<&str, (i64, i64, i64, i64, f64)> = Default::default();
    for k in &rows {
        let e = by_source.entry(k.source.as_str()).or_default();
        e.0 += k.received;
        e.1 += k.quarantined;
        e.2 += k.sla_units;
        e.3 += k.sla_met;
        e.4 = e.4.max(k.ack_p95_ms.unwrap_or(0.0));
    }
    println!("Operations KPIs (gold/kpi_minute: {} rows over {} units; `ehrgate kpi` prints them per minute, the console charts them: docs/operations.md):", r.rows, r.units);
    println!("  {:<24} {:>8} {:>6} {:>7} {:>12} {:>14}", "source", "received", "quar.", "err %", "ACK p95 ms", format!("in silver <{}m", cfg.kpi.sla_minutes));
    for (source, (received, quarantined, units, met, p95)) in by_source {
        let sla = if units > 0 { format!("{:.1}%", met as f64 * 100.0 / units as f64) } else { "-".into() };
        println!("  {source:<24} {received:>8} {quarantined:>6} {:>6.1}% {p95:>12.1} {sla:>14}", quarantined as f64 * 100.0 / received.max(1) as f64);
    }
    println!();
    Ok(())
}
