//! `ehrgate run`: map a folder of HL7v2 / NDJSON files through an adapter, write the
//! FHIR resources as NDJSON per resource type, and print a report (counts, errors by
//! kind, throughput, latency).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use ehrgate_runtime::{AdapterError, AdapterSettings, CallError, Hl7Message, Runtime, RuntimeConfig};

use crate::cli::adapter_test::now_ms;
use crate::inputs::{self, Unit};
use crate::reference;

#[derive(clap::Args)]
pub struct Args {
    /// Adapter component (.wasm) or `reference`.
    #[arg(long, default_value = "reference")]
    adapter: String,
    /// Folder of input files (default: ../shared/data/hl7, searched upwards from the
    /// working directory).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Where to write <ResourceType>.ndjson files.
    #[arg(long, default_value = "ehrgate-data/fhir")]
    out: PathBuf,
}

fn default_data() -> Option<PathBuf> {
    let cwd = std::env::current_dir().ok()?;
    cwd.ancestors().map(|d| d.join("shared/data/hl7")).find(|p| p.is_dir())
        .or_else(|| cwd.ancestors().map(|d| d.join("../shared/data/hl7")).find(|p| p.is_dir()))
}

fn error_kind(e: &CallError) -> &'static str {
    match e {
        CallError::Adapter { error: AdapterError::InvalidInput(_), .. } => "invalid input (quarantine, AE)",
        CallError::Adapter { error: AdapterError::Unsupported(_), .. } => "unsupported message type",
        CallError::Adapter { error: AdapterError::Transient(_), .. } => "transient",
        CallError::Limit { .. } => "sandbox limit",
        CallError::Trap { .. } => "adapter trap",
        CallError::Instantiate { .. } => "instantiate",
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let data = match args.data {
        Some(d) => d,
        None => default_data().context("no --data given and no shared/data/hl7 folder found above the working directory")?,
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&data)
        .with_context(|| format!("cannot read data folder {}", data.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "hl7" || e == "ndjson"))
        .collect();
    files.sort();
    if files.is_empty() {
        anyhow::bail!("no .hl7 or .ndjson files in {}", data.display());
    }

    let runtime = Runtime::new(RuntimeConfig::default()).map_err(|e| anyhow::anyhow!("cannot start the sandbox: {e:#}"))?;
    let adapter = reference::load(&runtime, &args.adapter, AdapterSettings::default()).await?;
    eprintln!("ehrgate run: {} files from {} through {}", files.len(), data.display(), adapter.label());

    let started = Instant::now();
    let mut by_type: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut errors: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    let mut latencies = Vec::new();
    let mut inputs_seen = 0usize;
    for file in &files {
        let name = file.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        for unit in inputs::read(file).with_context(|| format!("cannot read {}", file.display()))? {
            inputs_seen += 1;
            let t = Instant::now();
            let result = match unit {
                Unit::Bad { error } => {
                    errors.entry("malformed HL7v2 (quarantine, AE)").or_default().push(format!("{name}: {error}"));
                    continue;
                }
                Unit::Hl7 { text, .. } => {
                    adapter.map_hl7(&Hl7Message { raw: text, source: format!("file:{name}"), received_at_ms: now_ms() }).await
                }
                Unit::Ndjson { lines } => adapter.map_fhir(&lines.into_iter().map(|(_, l)| l).collect::<Vec<_>>()).await,
            };
            latencies.push(t.elapsed());
            match result {
                Ok(out) => {
                    for r in out.resources {
                        let ty = serde_json::from_str::<serde_json::Value>(&r)
                            .ok()
                            .and_then(|v| v.get("resourceType").and_then(|t| t.as_str()).map(str::to_owned))
                            .unwrap_or_else(|| "Unknown".into());
                        by_type.entry(ty).or_default().push(r);
                    }
                }
                Err(e) => errors.entry(error_kind(&e)).or_default().push(format!("{name}: {e}")),
            }
        }
    }
    let elapsed = started.elapsed();
    write_outputs(&args.out, &by_type)?;

    latencies.sort();
    let total: usize = by_type.values().map(Vec::len).sum();
    let failed: usize = errors.values().map(Vec::len).sum();
    println!("== ehrgate run: {} ==", adapter.label());
    println!("inputs: {inputs_seen} from {} files; mapped: {}; failed: {failed}", files.len(), inputs_seen - failed);
    println!("resources: {total} written to {}", args.out.display());
    for (ty, rs) in &by_type {
        println!("  {ty:<22} {:>5}", rs.len());
    }
    for (kind, list) in &errors {
        println!("{kind}: {}", list.len());
        for e in list {
            println!("  - {e}");
        }
    }
    println!(
        "throughput: {:.0} messages/s; latency per call p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (fresh instance per call)",
        inputs_seen as f64 / elapsed.as_secs_f64().max(1e-9),
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
    let traps = errors.get("adapter trap").map_or(0, Vec::len) + errors.get("sandbox limit").map_or(0, Vec::len);
    Ok(if traps == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn write_outputs(dir: &Path, by_type: &BTreeMap<String, Vec<String>>) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for (ty, rs) in by_type {
        let path = dir.join(format!("{ty}.ndjson"));
        let mut text = rs.join("\n");
        text.push('\n');
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}
