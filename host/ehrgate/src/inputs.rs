//! Reading input files into units an adapter maps: HL7v2 messages (split out of
//! batch files) or batches of NDJSON lines.

use std::path::Path;

use ehrgate_sdk::hl7;

/// One unit of input read from a file.
pub enum Unit {
    /// One HL7v2 message (its text, as found in the file).
    Hl7 { index: usize, text: String },
    /// NDJSON lines (non-empty), with their 1-based line numbers.
    Ndjson { lines: Vec<(usize, String)> },
    /// Input that could not be split into messages; the error names where.
    Bad { error: String },
}

pub fn is_ndjson(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("ndjson") || e.eq_ignore_ascii_case("jsonl"))
}

/// Read a file into units. I/O errors are returned; malformed content becomes a
/// `Unit::Bad`, so one bad file does not hide the others.
pub fn read(path: &Path) -> std::io::Result<Vec<Unit>> {
    let bytes = std::fs::read(path)?;
    if is_ndjson(path) {
        let text = String::from_utf8_lossy(&bytes);
        let lines = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| (i + 1, l.to_string()))
            .collect();
        return Ok(vec![Unit::Ndjson { lines }]);
    }
    let text = hl7::decode_bytes(&bytes);
    Ok(match hl7::parse_batch(&text) {
        Ok(batch) => batch
            .messages
            .iter()
            .enumerate()
            .map(|(i, m)| Unit::Hl7 { index: i + 1, text: m.raw().to_string() })
            .collect(),
        Err(e) => vec![Unit::Bad { error: e.to_string() }],
    })
}
