//! Splitting input files into units: HL7v2 messages (out of batch files) or NDJSON
//! lines.

use std::path::Path;

use ehrgate_lake::{BronzeDetail, BronzeRow, Micros};
use ehrgate_sdk::hl7;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitKind {
    Hl7,
    Fhir,
}

impl UnitKind {
    pub fn as_str(self) -> &'static str {
        match self {
            UnitKind::Hl7 => "hl7",
            UnitKind::Fhir => "fhir",
        }
    }
}

/// One inbound unit and its bronze row.
#[derive(Debug, Clone)]
pub struct Unit {
    pub kind: UnitKind,
    /// The unit's text as the adapter sees it.
    pub text: String,
    pub bronze: BronzeRow,
    /// Set when the unit could not even be split out (a malformed HL7 file): it goes
    /// straight to quarantine with this error and location.
    pub parse_error: Option<(String, Option<String>)>,
}

fn is_ndjson(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("ndjson") || e.eq_ignore_ascii_case("jsonl"))
}

/// Read a file into units, each with its bronze row (received now).
pub fn read_file(path: &Path, received_at: Micros) -> std::io::Result<Vec<Unit>> {
    let bytes = std::fs::read(path)?;
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let source = format!("file:{name}");
    if is_ndjson(path) {
        let text = String::from_utf8_lossy(&bytes);
        return Ok(text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                let resource_type = serde_json::from_str::<serde_json::Value>(l)
                    .ok()
                    .and_then(|v| v.get("resourceType").and_then(|t| t.as_str()).map(str::to_owned));
                let detail = BronzeDetail::Ndjson { export_id: None, file: name.clone(), line: i as i64 + 1, resource_type };
                Unit {
                    kind: UnitKind::Fhir,
                    text: l.to_string(),
                    bronze: BronzeRow::new(l.as_bytes().to_vec(), &source, received_at, i as u64, detail),
                    parse_error: None,
                }
            })
            .collect());
    }
    let text = hl7::decode_bytes(&bytes);
    Ok(match hl7::parse_batch(&text) {
        Ok(batch) => batch
            .messages
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let sender = [m.get("MSH-3"), m.get("MSH-4")].into_iter().flatten().collect::<Vec<_>>().join("/");
                let detail = BronzeDetail::Hl7 {
                    control_id: Some(m.control_id().to_string()).filter(|s| !s.is_empty()),
                    sender: Some(sender).filter(|s| !s.is_empty()),
                    message_type: m.get("MSH-9").map(|_| {
                        let t = m.trigger_event();
                        if t.is_empty() { m.message_code().to_string() } else { format!("{}^{}", m.message_code(), t) }
                    }),
                };
                Unit {
                    kind: UnitKind::Hl7,
                    text: m.raw().to_string(),
                    bronze: BronzeRow::new(m.raw().as_bytes().to_vec(), &source, received_at, i as u64, detail),
                    parse_error: None,
                }
            })
            .collect(),
        Err(e) => {
            let detail = BronzeDetail::Hl7 { control_id: None, sender: None, message_type: None };
            vec![Unit {
                kind: UnitKind::Hl7,
                text: text.to_string(),
                bronze: BronzeRow::new(bytes.clone(), &source, received_at, 0, detail),
                parse_error: Some((e.message.clone(), e.location.clone())),
            }]
        }
    })
}
