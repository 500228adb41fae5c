//! `ehrgate adapter test` and `ehrgate adapter describe`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use ehrgate_runtime::{AdapterSettings, Hl7Message, Runtime, RuntimeConfig};

use ehrgate_ingest::UnitKind;
use crate::reference;

pub async fn run(component: &str, files: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let runtime = Runtime::new(RuntimeConfig::default()).map_err(|e| anyhow::anyhow!("cannot start the sandbox: {e:#}"))?;
    let adapter = reference::load(&runtime, component, AdapterSettings::default()).await?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut failures = 0usize;
    let mut resources = 0usize;
    for file in files {
        let units = ehrgate_ingest::read_file(file, now_ms() as i64 * 1000).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
        for (index, unit) in units.into_iter().enumerate() {
            let result = match (unit.kind, unit.parse_error) {
                (_, Some((message, location))) => Err(format!(
                    "{}: not a valid HL7v2 message or batch: {}{message}",
                    file.display(),
                    location.map(|l| format!("at {l}: ")).unwrap_or_default()
                )),
                (UnitKind::Hl7, None) => {
                    let msg = Hl7Message { raw: unit.text, source: unit.bronze.source, received_at_ms: now_ms() };
                    adapter.map_hl7(&msg).await.map_err(|e| format!("{} message {}: {e}", file.display(), index + 1))
                }
                (UnitKind::Fhir, None) => {
                    adapter.map_fhir(&[unit.text]).await.map_err(|e| format!("{} line {}: {e}", file.display(), index + 1))
                }
                // Files never hold events (those arrive by webhook).
                (UnitKind::Event, None) => Err(format!("{}: events are not read from files", file.display())),
            };
            match result {
                Ok(output) => {
                    for r in &output.resources {
                        writeln!(out, "{r}")?;
                        resources += 1;
                    }
                    for w in &output.warnings {
                        eprintln!("warning: {}: {w}", file.display());
                    }
                }
                Err(e) => {
                    failures += 1;
                    eprintln!("error: {e}");
                }
            }
        }
    }
    out.flush()?;
    eprintln!("{} resources, {} failed inputs ({})", resources, failures, adapter.label());
    Ok(if failures == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

pub async fn describe(component: &str) -> anyhow::Result<ExitCode> {
    let runtime = Runtime::new(RuntimeConfig::default()).map_err(|e| anyhow::anyhow!("cannot start the sandbox: {e:#}"))?;
    let adapter = reference::load(&runtime, component, AdapterSettings::default()).await?;
    let i = adapter.info();
    let json = serde_json::json!({
        "name": i.name,
        "vendor": i.vendor,
        "version": i.version,
        "contract": adapter.contract().to_string(),
        "hl7_message_types": i.hl7_message_types,
        "fhir_resource_types": i.fhir_resource_types,
        "event_sources": i.event_sources,
        "actions": i.actions,
        "connections": i.connections.iter().map(|c| serde_json::json!({
            "name": c.name, "scopes": c.scopes, "methods": c.methods, "paths": c.paths,
        })).collect::<Vec<_>>(),
    });
    println!("{}", serde_json::to_string_pretty(&json)?);
    Ok(ExitCode::SUCCESS)
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
