//! `ehrgate adapter check <component.wasm | package>`: the conformance kit an
//! adapter author runs before shipping. Each check prints one line; the exit
//! status is 1 if any failed.
//!
//! 1. the package (when given one): the component is the one the manifest pins,
//!    the signature verifies when its key is trusted, describe() agrees with the
//!    manifest;
//! 2. the component loads: a supported contract, nothing imported that the host
//!    does not provide, a describe() that names it;
//! 3. golden files: every input under the fixtures folder maps, through the
//!    component, to its `<golden>/<file>.ndjson` (an `.error` golden must fail);
//! 4. every resource it produced passes the FHIR R4 validator the project uses
//!    (Python `fhir.resources`, tests/fhir_validate.py, embedded here);
//! 5. the hostile-input corpus (malformed HL7, huge fields, wrong encodings,
//!    binary junk) maps or is refused as invalid input: no trap, no limit hit.

use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use ehrgate_lifecycle::{Package, PackageError, Signer};
use ehrgate_runtime::{Adapter, AdapterSettings, CallError, Hl7Message, TracingAudit};

use crate::adapters;
use crate::config::Config;

const VALIDATOR: &str = include_str!("../../../../tests/fhir_validate.py");

struct Report {
    failed: usize,
    passed: usize,
}

impl Report {
    fn line(&mut self, ok: bool, what: &str, detail: &str) {
        if ok {
            self.passed += 1;
        } else {
            self.failed += 1;
        }
        println!("{} {what}: {detail}", if ok { "ok  " } else { "FAIL" });
    }
}

/// Inputs an adapter must survive: each is mapped or refused as invalid input,
/// never a trap or a limit.
pub fn hostile_corpus() -> Vec<(&'static str, String)> {
    let msh = "MSH|^~\\&|HOSTILE|H|EHRGATE|LAKE|20240102030405||ADT^A01|H1|P|2.5.1\r";
    let mut v: Vec<(&'static str, String)> = vec![
        ("empty", String::new()),
        ("only the MSH delimiters", "MSH|^~\\&|".into()),
        ("MSH without fields", "MSH".into()),
        ("a letter as field separator", "MSHa^~\\&aAaBaCaDa20240101aaADT^A01a1aPa2.5\r".into()),
        ("no MSH", "PID|1||X^^^H^MR||Doe^Jane\r".into()),
        ("MSH-10 missing", "MSH|^~\\&|A|B|C|D|20240101||ADT^A01||P|2.5\rPID|1||X^^^H^MR\r".into()),
        ("unknown version", "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|9.9\rPID|1||X^^^H^MR\r".into()),
        ("an ACK sent in", "MSH|^~\\&|A|B|C|D|20240101||ACK|1|P|2.5\rMSA|AA|1\r".into()),
        ("NUL and control bytes", format!("{msh}PID|1||\u{0}\u{1}\u{7}^^^H^MR||D\u{0}e^J\u{1b}[2J\r")),
        ("cp1252 text read as Latin", format!("{msh}PID|1||X^^^H^MR||M\u{fc}ller^J\u{f6}rg\r")),
        ("emoji and right-to-left text", format!("{msh}PID|1||X^^^H^MR||\u{1f600}^\u{5d0}\u{5d1}\u{202e}\r")),
        ("a 4 MiB field", format!("{msh}PID|1||X^^^H^MR||{}^J\r", "A".repeat(4 << 20))),
        ("100,000 components", format!("{msh}PID|1||X^^^H^MR||{}\r", "^".repeat(100_000))),
        ("50,000 repetitions", format!("{msh}PID|1||{}\r", "X^^^H^MR~".repeat(50_000))),
        ("20,000 segments", format!("{msh}{}", "OBX|1|ST|1^T||v\r".repeat(20_000))),
        ("escape sequences", format!("{msh}PID|1||X^^^H^MR||\\X{}\\^\\E\\\\F\\\\Z\\\\.br\\\r", "0".repeat(10_000))),
        ("line feeds for segment ends", msh.replace('\r', "\n") + "PID|1||X^^^H^MR\n"),
        ("1 MiB of segment terminators", format!("{msh}{}", "\r".repeat(1 << 20))),
        ("bad dates", format!("{msh}PID|1||X^^^H^MR||D^J||99999999999999|F\rPV1|1|I|||||||||||||||||||||||||||||||||||||||||||2024-13-45\r")),
    ];
    v.push(("binary junk", (0..65_536u32).map(|i| char::from_u32(i.wrapping_mul(2_654_435_761) % 0xD7FF).unwrap_or('?')).collect()));
    v
}

fn is_robustness_failure(e: &CallError) -> bool {
    matches!(e, CallError::Trap { .. } | CallError::Limit { .. } | CallError::Instantiate { .. })
}

async fn load(cfg: &Config, input: &Path, trust_keys: &[PathBuf], r: &mut Report) -> anyhow::Result<Option<(Adapter, Option<Package>)>> {
    let bytes = std::fs::read(input).with_context(|| format!("read {}", input.display()))?;
    let (runtime, _) = adapters::runtime(cfg, Arc::new(TracingAudit))?;
    let pkg = if bytes.starts_with(b"\0asm") {
        None
    } else {
        match Package::read(&bytes, cfg.adapter_store.max_component_mb.max(1) << 20) {
            Ok(p) => Some(p),
            Err(e) => {
                r.line(false, "package", &e.to_string());
                return Ok(None);
            }
        }
    };
    if let Some(p) = &pkg {
        match p.check_digest() {
            Ok(()) => r.line(true, "package digest", &format!("component sha256 {} as the manifest pins", p.manifest.component.sha256)),
            Err(e) => r.line(false, "package digest", &e.to_string()),
        }
        let mut trust = cfg.adapter_store.trust()?;
        for k in trust_keys {
            trust.add(ehrgate_lifecycle::sign::read_public(&std::fs::read_to_string(k).with_context(|| format!("read {}", k.display()))?)?);
        }
        match (&p.signature, trust.verify(p)) {
            (None, _) => r.line(true, "signature", "none yet (sign with `ehrgate adapter sign --key`; gateways refuse unsigned packages)"),
            (Some(_), Ok(Signer::Key(k))) => r.line(true, "signature", &format!("verifies with trusted key {k}")),
            (Some(s), Err(PackageError::UntrustedKey { .. })) => r.line(true, "signature", &format!("by key {} (not in the trust store here: not checked)", s.key_id)),
            (Some(_), Err(e)) => r.line(false, "signature", &e.to_string()),
            (Some(_), Ok(Signer::Unsigned)) => unreachable!("a signed package is never accepted as unsigned"),
        }
    }
    let component = pkg.as_ref().map(|p| p.component.clone()).unwrap_or(bytes);
    let t = Instant::now();
    let adapter = match runtime.load(&input.display().to_string(), &component, AdapterSettings::default()).await {
        Ok(a) => a,
        Err(e) => {
            r.line(false, "load", &e.to_string());
            return Ok(None);
        }
    };
    let i = adapter.info();
    r.line(true, "load", &format!("{} for {}, compiled in {:.0} ms", adapter.label(), adapter.contract(), t.elapsed().as_secs_f64() * 1e3));
    let version_ok = semver::Version::parse(&i.version).is_ok();
    let handles = !i.hl7_message_types.is_empty() || !i.fhir_resource_types.is_empty() || !i.event_sources.is_empty() || !i.actions.is_empty();
    r.line(version_ok && handles, "describe", &format!(
        "vendor `{}`, version `{}`{}, {} HL7 types, {} FHIR types, {} event sources, {} actions",
        i.vendor, i.version, if version_ok { "" } else { " (NOT a semantic version)" },
        i.hl7_message_types.len(), i.fhir_resource_types.len(), i.event_sources.len(), i.actions.len()
    ));
    if let Some(p) = &pkg {
        match p.manifest.disagreement(i, &adapter.contract().0.to_string()) {
            None => r.line(true, "manifest", "agrees with describe()"),
            Some((field, m, c)) => r.line(false, "manifest", &format!("disagrees with describe() on {field}: manifest `{m}`, component `{c}`")),
        }
    }
    Ok(Some((adapter, pkg)))
}

pub async fn check(cfg: &Config, input: &Path, fixtures: Option<&Path>, golden: Option<&Path>, trust_keys: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let mut r = Report { failed: 0, passed: 0 };
    let Some((adapter, _)) = load(cfg, input, trust_keys, &mut r).await? else {
        println!("{} checks failed", r.failed);
        return Ok(ExitCode::from(1));
    };
    let mut produced: Vec<String> = Vec::new();

    // Golden files.
    let fixtures = fixtures.map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("tests/fixtures"));
    let golden = golden.map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("tests/golden"));
    if fixtures.is_dir() {
        let mut inputs: Vec<PathBuf> = std::fs::read_dir(&fixtures)?.flatten().map(|e| e.path()).filter(|p| p.is_file() && !p.extension().is_some_and(|e| e == "json")).collect();
        inputs.sort();
        let (mut same, mut problems) = (0, Vec::new());
        for f in &inputs {
            let name = f.file_name().unwrap().to_string_lossy().to_string();
            let units = ehrgate_ingest::read_file(f, 0).with_context(|| format!("read {}", f.display()))?;
            let mut out = String::new();
            let mut failed = None;
            for u in units {
                let res = match (u.kind, u.parse_error) {
                    (_, Some((m, _))) => Err(m),
                    (ehrgate_ingest::UnitKind::Fhir, None) => adapter.map_fhir(&[u.text]).await.map_err(|e| e.to_string()),
                    _ => adapter.map_hl7(&Hl7Message { raw: u.text, source: "test".into(), received_at_ms: 0 }).await.map_err(|e| e.to_string()),
                };
                match res {
                    Ok(o) => {
                        for res in o.resources {
                            let canon = serde_json::from_str::<serde_json::Value>(&res).map(|v| v.to_string()).unwrap_or(res);
                            out.push_str(&canon);
                            out.push('\n');
                            produced.push(canon);
                        }
                    }
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            let expected_ok = std::fs::read_to_string(golden.join(format!("{name}.ndjson"))).ok();
            let expected_err = golden.join(format!("{name}.error")).is_file();
            match (failed, expected_ok, expected_err) {
                (None, Some(e), _) if e == out => same += 1,
                (None, Some(_), _) => problems.push(format!("{name}: differs from its golden file")),
                (None, None, true) => problems.push(format!("{name}: maps, but its golden file says it fails")),
                (None, None, false) => problems.push(format!("{name}: no golden file {}", golden.join(format!("{name}.ndjson")).display())),
                (Some(_), _, true) => same += 1,
                (Some(e), _, false) => problems.push(format!("{name}: failed ({e})")),
            }
        }
        let detail = if problems.is_empty() { format!("{same} of {} inputs in {} match {}", inputs.len(), fixtures.display(), golden.display()) } else { problems.join("; ") };
        r.line(problems.is_empty() && !inputs.is_empty(), "golden files", &detail);
    } else {
        println!("skip golden files: no fixtures folder {} (give --fixtures DIR)", fixtures.display());
    }

    // The hostile corpus.
    let (mut survived, mut slowest, mut problems) = (0, Duration::ZERO, Vec::new());
    let corpus = hostile_corpus();
    for (what, text) in &corpus {
        let t = Instant::now();
        let res = adapter.map_hl7(&Hl7Message { raw: text.clone(), source: "check".into(), received_at_ms: 0 }).await;
        slowest = slowest.max(t.elapsed());
        match res {
            Err(e) if is_robustness_failure(&e) => problems.push(format!("{what}: {e}")),
            Ok(o) => {
                survived += 1;
                // Output for hostile input is checked too, but only for the small ones.
                if text.len() < 100_000 {
                    produced.extend(o.resources);
                }
            }
            Err(_) => survived += 1,
        }
    }
    let detail = if problems.is_empty() {
        format!("{survived} hostile inputs mapped or refused as invalid, no trap or limit hit (slowest {:.0} ms)", slowest.as_secs_f64() * 1e3)
    } else {
        problems.join("; ")
    };
    r.line(problems.is_empty(), "hostile inputs", &detail);

    // Every resource through the validator.
    if produced.is_empty() {
        r.line(false, "FHIR validation", "the adapter produced no resource from the fixtures or the corpus");
    } else {
        let dir = std::env::temp_dir().join(format!("ehrgate-check-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let script = dir.join("fhir_validate.py");
        std::fs::write(&script, VALIDATOR)?;
        let data = dir.join("out.ndjson");
        std::fs::write(&data, produced.join("\n") + "\n")?;
        let out = std::process::Command::new("python3").arg(&script).arg(&data).stdin(Stdio::null()).output();
        let _ = std::fs::remove_dir_all(&dir);
        match out {
            Err(e) => r.line(false, "FHIR validation", &format!("cannot run python3 ({e}); install Python 3 and `pip install 'fhir.resources>=8,<9'`")),
            Ok(o) => {
                let stdout = String::from_utf8_lossy(&o.stdout);
                let stderr = String::from_utf8_lossy(&o.stderr);
                let last = stdout.lines().last().unwrap_or_default().to_string();
                if o.status.success() {
                    r.line(true, "FHIR validation", &last);
                } else {
                    let errors: Vec<&str> = stdout.lines().take(5).collect();
                    r.line(false, "FHIR validation", &format!("{} {}{}", errors.join(" | "), stderr.trim(), if last.is_empty() { String::new() } else { format!(" ({last})") }));
                }
            }
        }
    }
    println!("{} checks passed, {} failed ({})", r.passed, r.failed, adapter.label());
    Ok(if r.failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
