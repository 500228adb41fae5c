//! `ehrgate demo`: the main job on embedded defaults. The built-in reference adapter
//! (a wasm32-wasip2 component in the sandbox) takes every HL7v2 sample and every FHIR
//! NDJSON file under ../shared/data into the lake: bronze, silver, quarantine. Then
//! it shows what landed, with SQL.

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

    let (lake, pipeline, audit_task) = super::lake_cmds::pipeline(cfg, "reference").await?;
    println!("== ehrgate demo ==");
    println!("adapter: {} (sandboxed wasm component, contract {})", pipeline.adapter().label(), pipeline.adapter().contract());
    println!("input:   {} files under {}", files.len(), data.display());
    println!("lake:    {}", lake.storage().describe());
    println!();

    let started = Instant::now();
    let total = super::lake_cmds::ingest_files(&pipeline, &files).await?;
    super::lake_cmds::finish(pipeline, audit_task).await;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "ingested {} units in {:.2} s ({:.0} units/s): {} resources merged into silver, {} quarantined",
        total.units,
        secs,
        total.units as f64 / secs.max(1e-9),
        total.resources,
        total.quarantined
    );
    for (k, n) in &total.quarantined_by_kind {
        println!("  quarantined as {k}: {n}");
    }
    println!();

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
