//! `ehrgate adapter test`, `ehrgate adapter describe` and `ehrgate adapter action`.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ehrgate_ingest::UnitKind;
use ehrgate_runtime::{AdapterError, CallError, Hl7Message, TracingAudit};

use crate::adapters;
use crate::config::Config;

/// Adapter config values from a JSON object file (`{"key": "value", ...}`), as
/// adapters keep them beside their golden files.
pub fn config_json(path: Option<&Path>) -> anyhow::Result<HashMap<String, String>> {
    let Some(path) = path else { return Ok(HashMap::new()) };
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let obj = v.as_object().with_context(|| format!("{} must hold a JSON object of string values", path.display()))?;
    obj.iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => Ok((k.clone(), s.clone())),
            other => Ok((k.clone(), other.to_string())),
        })
        .collect()
}

async fn adapter(cfg: &Config, component: &str, extra: HashMap<String, String>) -> anyhow::Result<(ehrgate_runtime::Runtime, ehrgate_runtime::Adapter)> {
    let (runtime, connections) = adapters::runtime(cfg, Arc::new(TracingAudit))?;
    let adapter = adapters::load_named(&runtime, &connections, cfg, component, extra).await?;
    Ok((runtime, adapter))
}

pub async fn run(cfg: &Config, component: &str, files: &[PathBuf], adapter_config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let (_runtime, adapter) = adapter(cfg, component, config_json(adapter_config)?).await?;
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

pub async fn describe(cfg: &Config, component: &str) -> anyhow::Result<ExitCode> {
    let (_runtime, adapter) = adapter(cfg, component, HashMap::new()).await?;
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

/// `ehrgate adapter action <component> <name> --input JSON`: run a named action
/// (e.g. `discharge-checklist`) through the configured connections. A transient
/// failure is retried (the action carries idempotency keys, so a retry never
/// duplicates what the first attempt created).
pub async fn action(cfg: &Config, component: &str, name: &str, input: &str, adapter_config: Option<&Path>, attempts: u32) -> anyhow::Result<ExitCode> {
    let (_runtime, adapter) = adapter(cfg, component, config_json(adapter_config)?).await?;
    let mut delay = Duration::from_millis(200);
    for attempt in 1..=attempts.max(1) {
        match adapter.run_action(name, input).await {
            Ok(out) => {
                println!("{out}");
                return Ok(ExitCode::SUCCESS);
            }
            Err(CallError::Adapter { error: AdapterError::Transient(why), .. }) if attempt < attempts => {
                eprintln!("attempt {attempt}: transient failure ({why}); retrying in {delay:?}");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(e) => {
                eprintln!("error: action `{name}` failed: {e}");
                return Ok(ExitCode::from(1));
            }
        }
    }
    unreachable!("the loop returns on its last attempt")
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
