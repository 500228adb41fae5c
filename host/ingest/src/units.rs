//! Splitting input files into units: HL7v2 messages (out of batch files) or NDJSON
//! lines.

use std::path::Path;

use ehrgate_lake::{BronzeDetail, BronzeRow, Micros};
use ehrgate_sdk::hl7;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitKind {
    Hl7,
    Fhir,
    /// A webhook / CDC event body, mapped by the adapter's handle-event.
    Event,
}

impl UnitKind {
    pub fn as_str(self) -> &'static str {
        match self {
            UnitKind::Hl7 => "hl7",
            UnitKind::Fhir => "fhir",
            UnitKind::Event => "event",
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
    /// Set with `parse_error` when a live message's header is unacceptable (HL7
    /// v2.5.1 chapter 2: the receiver validates MSH-9, MSH-10, MSH-12 and rejects
    /// with AR): the HL7 table 0357 error code.
    pub reject: Option<u16>,
}

/// The quarantine kind of a unit that did not parse or was rejected:
/// `invalid-input`, or `rejected-<HL7 table 0357 code>` (answered AR).
pub fn error_kind(u: &Unit) -> String {
    match u.reject {
        Some(code) => format!("rejected-{code}"),
        None => "invalid-input".into(),
    }
}

/// HL7 versions this gateway accepts in MSH-12 (its first component).
pub const HL7_VERSIONS: &[&str] = &["2.1", "2.2", "2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.7.1", "2.8", "2.8.1", "2.8.2", "2.9", "2.9.1"];

/// What is wrong with a parsed message's header, if anything: (HL7 table 0357
/// code, location, sentence).
pub fn header_problem(m: &hl7::Message) -> Option<(u16, &'static str, String)> {
    let sep = m.msh().delimiters().field;
    if sep.is_alphanumeric() || sep.is_whitespace() {
        return Some((102, "MSH-1", format!("the field separator is `{}`; it must be a punctuation character such as `|`", sep.escape_debug())));
    }
    let code = m.message_code().trim();
    if code.is_empty() {
        return Some((101, "MSH-9", "MSH-9 (message type) is required".into()));
    }
    if code.eq_ignore_ascii_case("ACK") {
        return Some((200, "MSH-9", "an acknowledgement is not a message to process; acknowledgements are not acknowledged".into()));
    }
    if m.control_id().trim().is_empty() {
        return Some((101, "MSH-10", "MSH-10 (message control id) is required: without it the sender cannot match this acknowledgement".into()));
    }
    let version = m.get("MSH-12.1").unwrap_or_default();
    let version = version.trim();
    if version.is_empty() {
        return Some((101, "MSH-12", "MSH-12 (version id) is required".into()));
    }
    if !HL7_VERSIONS.contains(&version) {
        return Some((203, "MSH-12", format!("HL7 version `{}` is not supported (supported: {})", version.chars().take(20).collect::<String>(), HL7_VERSIONS.join(", "))));
    }
    None
}

fn is_ndjson(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("ndjson") || e.eq_ignore_ascii_case("jsonl"))
}

/// Bronze columns of an HL7 message: control id, sender (MSH-3/MSH-4), type.
fn hl7_detail(m: &hl7::Message) -> BronzeDetail {
    let sender = [m.get("MSH-3"), m.get("MSH-4")].into_iter().flatten().collect::<Vec<_>>().join("/");
    BronzeDetail::Hl7 {
        control_id: Some(m.control_id().to_string()).filter(|s| !s.is_empty()),
        sender: Some(sender).filter(|s| !s.is_empty()),
        message_type: m.get("MSH-9").map(|_| {
            let t = m.trigger_event();
            if t.is_empty() { m.message_code().to_string() } else { format!("{}^{}", m.message_code(), t) }
        }),
    }
}

/// One HL7v2 message received on a live connection (`raw` exactly as framed).
/// A message that does not parse still becomes a unit: it lands in bronze and goes
/// to quarantine with the parser's error.
pub fn hl7_unit(raw: Vec<u8>, source: &str, received_at: Micros, seq: u64) -> Unit {
    let text = hl7::decode_bytes(&raw).into_owned();
    let (detail, parse_error, reject) = match hl7::Message::parse(&text) {
        Ok(m) => match header_problem(&m) {
            None => (hl7_detail(&m), None, None),
            Some((code, location, why)) => (hl7_detail(&m), Some((why, Some(location.to_string()))), Some(code)),
        },
        Err(e) => (BronzeDetail::Hl7 { control_id: None, sender: None, message_type: None }, Some((e.message.clone(), e.location.clone())), None),
    };
    Unit { kind: UnitKind::Hl7, bronze: BronzeRow::new(raw, source, received_at, seq, detail), text, parse_error, reject }
}

/// One webhook / CDC event body from `source` (bronze source `webhook:<source>`),
/// or from a message bus (`source` is `kafka:<name>` already and is kept as is).
pub fn event_unit(raw: Vec<u8>, source: &str, event_id: Option<String>, received_at: Micros, seq: u64) -> Unit {
    let text = String::from_utf8_lossy(&raw).into_owned();
    let source = if source.starts_with("kafka:") { source.to_owned() } else { format!("webhook:{source}") };
    let bronze = BronzeRow::new(raw, &source, received_at, seq, BronzeDetail::Event { event_id });
    Unit { kind: UnitKind::Event, text, bronze, parse_error: None, reject: None }
}

#[cfg(test)]
mod header_tests {
    use super::*;

    fn problem(msg: &str) -> Option<(u16, &'static str)> {
        header_problem(&hl7::Message::parse(msg).unwrap()).map(|(c, l, _)| (c, l))
    }

    #[test]
    fn the_header_checks_of_hl7_chapter_2() {
        assert_eq!(problem("MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5.1\r"), None);
        assert_eq!(problem("MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.3\r"), None);
        assert_eq!(problem("MSH|^~\\&|\r"), Some((101, "MSH-9")), "only the delimiters");
        assert_eq!(problem("MSH|^~\\&|A|B|C|D|20240101||ADT^A01||P|2.5\r"), Some((101, "MSH-10")));
        assert_eq!(problem("MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|9.9\r"), Some((203, "MSH-12")));
        assert_eq!(problem("MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|\r"), Some((101, "MSH-12")));
        assert_eq!(problem("MSH|^~\\&|A|B|C|D|20240101||ACK|1|P|2.5\rMSA|AA|9\r"), Some((200, "MSH-9")));
        if let Ok(m) = hl7::Message::parse("MSHa^~\\&aAaBaCaDa20240101aaADT^A01a1aPa2.5\r") {
            assert_eq!(header_problem(&m).map(|(c, l, _)| (c, l)), Some((102, "MSH-1")), "a letter as field separator");
        }
    }
}

/// Read a file into units, each with its bronze row (received now).
pub fn read_file(path: &Path, received_at: Micros) -> std::io::Result<Vec<Unit>> {
    let bytes = std::fs::read(path)?;
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let source = format!("file:{name}");
    if is_ndjson(path) {
        // Bronze keeps each line's bytes exactly as received (minus the line break).
        return Ok(bytes
            .split(|b| *b == b'\n')
            .enumerate()
            .map(|(i, l)| (i, l.strip_suffix(b"\r").unwrap_or(l)))
            .filter(|(_, l)| !l.iter().all(u8::is_ascii_whitespace))
            .map(|(i, l)| {
                let text = String::from_utf8_lossy(l).into_owned();
                let resource_type = serde_json::from_str::<serde_json::Value>(&text)
                    .ok()
                    .and_then(|v| v.get("resourceType").and_then(|t| t.as_str()).map(str::to_owned));
                let detail = BronzeDetail::Ndjson { export_id: None, file: name.clone(), line: i as i64 + 1, resource_type };
                Unit {
                    kind: UnitKind::Fhir,
                    text,
                    bronze: BronzeRow::new(l.to_vec(), &source, received_at, i as u64, detail),
                    parse_error: None,
                    reject: None,
                }
            })
            .collect());
    }
    let text = hl7::decode_bytes(&bytes);
    // A message's bytes as received: its slice of the file when the file was UTF-8
    // (the usual case; the parser borrows from it), else its text re-encoded.
    let borrowed = matches!(text, std::borrow::Cow::Borrowed(_));
    let received = |msg: &str| -> Vec<u8> {
        let (base, p) = (bytes.as_ptr() as usize, msg.as_ptr() as usize);
        if borrowed && p >= base && p + msg.len() <= base + bytes.len() {
            return bytes[p - base..p - base + msg.len()].to_vec();
        }
        msg.as_bytes().to_vec()
    };
    Ok(match hl7::parse_batch(&text) {
        Ok(batch) => batch
            .messages
            .iter()
            .enumerate()
            .map(|(i, m)| Unit {
                kind: UnitKind::Hl7,
                text: m.raw().to_string(),
                bronze: BronzeRow::new(received(m.raw()), &source, received_at, i as u64, hl7_detail(m)),
                parse_error: None,
                reject: None,
            })
            .collect(),
        Err(e) => {
            let detail = BronzeDetail::Hl7 { control_id: None, sender: None, message_type: None };
            vec![Unit {
                kind: UnitKind::Hl7,
                text: text.to_string(),
                bronze: BronzeRow::new(bytes.clone(), &source, received_at, 0, detail),
                parse_error: Some((e.message.clone(), e.location.clone())),
                reject: None,
            }]
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str, content: &[u8]) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("ehrgate-units-{}-{name}", std::process::id()));
        std::fs::write(&p, content).unwrap();
        p
    }

    #[test]
    fn bronze_keeps_the_bytes_as_received() {
        // A BOM, LF terminators, two messages in a batch.
        let file = b"\xEF\xBB\xBFBHS|^~\\&|A\nMSH|^~\\&|A|B|C|D|20240101||ADT^A04|1|P|2.5\nPID|1||X\nMSH|^~\\&|A|B|C|D|20240101||ADT^A04|2|P|2.5\nPID|1||Y\nBTS|2\n";
        let p = tmp("batch.hl7", file);
        let units = read_file(&p, 0).unwrap();
        assert_eq!(units.len(), 2);
        for u in &units {
            assert!(u.bronze.raw.starts_with(b"MSH|"));
            assert!(file.windows(u.bronze.raw.len()).any(|w| w == u.bronze.raw.as_slice()), "raw must be a slice of the file");
            assert_eq!(u.bronze.content_hash, ehrgate_lake::sha256_hex(&u.bronze.raw));
        }
        assert_ne!(units[0].bronze.record_id, units[1].bronze.record_id);

        let p = tmp("lines.ndjson", b"{\"resourceType\":\"Patient\",\"id\":\"a\"}\r\n\r\n{\"resourceType\":\"Patient\",\"id\":\"b\"}");
        let units = read_file(&p, 0).unwrap();
        assert_eq!(units.len(), 2, "blank lines are not units");
        assert_eq!(units[0].bronze.raw, b"{\"resourceType\":\"Patient\",\"id\":\"a\"}".to_vec());
        match &units[1].bronze.detail {
            BronzeDetail::Ndjson { line, resource_type, .. } => assert_eq!((*line, resource_type.as_deref()), (3, Some("Patient"))),
            other => panic!("{other:?}"),
        }
    }
}
