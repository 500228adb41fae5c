//! What interface engines wrap around HL7v2 messages: metadata headers, batch files,
//! and how that metadata is kept on the resources as provenance.
//!
//! - [`Envelope::parse`]: an event body that carries the sender's metadata (e.g. the
//!   HTTP headers an engine's HTTP sender set) in front of the payload. Two shapes are
//!   accepted: an HTTP-message-like block (`Name: value` lines, a blank line, the
//!   payload) and a JSON object `{"headers": {..}, "body": ".."}`. A body that is
//!   neither is the payload alone.
//! - [`split_file`]: a batch file into messages: HL7 batch envelopes (FHS/BHS) and bare
//!   concatenated messages, length-prefixed records, or a configured separator.
//! - [`add_provenance`]: metadata as extensions on `meta` of each resource.
//! - [`map_messages`]: map every message of a file and combine the outputs.

use std::borrow::Cow;

use serde_json::{Value, json};

use crate::adapter::{AdapterError, Hl7Input, Output};

/// Metadata and payload of an event body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// Header names as sent (compare with [`header`](Self::header), case-insensitive).
    pub headers: Vec<(String, String)>,
    pub payload: Cow<'a, str>,
}

fn is_header_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

impl<'a> Envelope<'a> {
    /// Split `text` into headers and payload (see the module docs).
    pub fn parse(text: &'a str) -> Envelope<'a> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        if text.trim_start().starts_with('{')
            && let Ok(Value::Object(o)) = serde_json::from_str::<Value>(text)
            && let Some(body) = o.get("body").and_then(Value::as_str)
        {
            let headers = match o.get("headers") {
                Some(Value::Object(h)) => {
                    h.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned()))).collect()
                }
                Some(Value::Array(a)) => a
                    .iter()
                    .filter_map(|p| Some((p.get(0)?.as_str()?.to_owned(), p.get(1)?.as_str()?.to_owned())))
                    .collect(),
                _ => Vec::new(),
            };
            return Envelope { headers, payload: Cow::Owned(body.to_owned()) };
        }
        // Header block: every line up to the first blank one is `Name: value`.
        let mut headers = Vec::new();
        let mut rest = text;
        loop {
            let (line, after) = match rest.find('\n') {
                Some(i) => (&rest[..i], &rest[i + 1..]),
                None => (rest, ""),
            };
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.is_empty() {
                if headers.is_empty() {
                    break;
                }
                return Envelope { headers, payload: Cow::Borrowed(after) };
            }
            match line.split_once(':') {
                Some((name, value)) if is_header_name(name) && !name.starts_with("MSH") => {
                    headers.push((name.to_owned(), value.trim().to_owned()));
                }
                _ => break,
            }
            if after.is_empty() {
                break;
            }
            rest = after;
        }
        Envelope { headers: Vec::new(), payload: Cow::Borrowed(text) }
    }

    /// The first header of this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// How a batch file separates its messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileStyle {
    /// HL7 batch rules: FHS/BHS envelopes or bare messages, each starting at `MSH`.
    Hl7,
    /// Each message preceded by its length in bytes as `digits` ASCII digits.
    LengthPrefixed { digits: usize },
    /// Messages separated by this exact text (e.g. a blank line, or a marker).
    Separator(String),
    /// One message per line (segments separated by CR inside a message, messages by
    /// LF).
    NewLine,
}

impl FileStyle {
    /// A configured style: `hl7`, `len<N>` (e.g. `len10`), `nl`, or `sep:<text>`
    /// where `\n`, `\r` are escapes.
    pub fn parse(s: &str) -> Option<FileStyle> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("hl7") {
            return Some(FileStyle::Hl7);
        }
        if s.eq_ignore_ascii_case("nl") {
            return Some(FileStyle::NewLine);
        }
        if let Some(n) = s.strip_prefix("len").and_then(|n| n.parse::<usize>().ok()) {
            return (1..=20).contains(&n).then_some(FileStyle::LengthPrefixed { digits: n });
        }
        let sep = s.strip_prefix("sep:")?.replace("\\n", "\n").replace("\\r", "\r");
        (!sep.is_empty()).then_some(FileStyle::Separator(sep))
    }
}

/// Split a batch file into message texts. Empty pieces are skipped. `FileStyle::Hl7`
/// is left to the HL7 batch parser (returns the whole text as one piece).
pub fn split_file<'a>(text: &'a str, style: &FileStyle) -> Result<Vec<&'a str>, AdapterError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let keep = |s: &&str| !s.trim().is_empty();
    Ok(match style {
        FileStyle::Hl7 => vec![text],
        FileStyle::Separator(sep) => text.split(sep.as_str()).filter(keep).collect(),
        FileStyle::NewLine => text.split('\n').map(|l| l.trim_end_matches('\r')).filter(keep).collect(),
        FileStyle::LengthPrefixed { digits } => {
            let mut out = Vec::new();
            let mut rest = text;
            let mut offset = 0usize;
            loop {
                let trimmed = rest.trim_start_matches(['\r', '\n']);
                offset += rest.len() - trimmed.len();
                rest = trimmed;
                if rest.is_empty() {
                    break;
                }
                let bad = |what: &str| AdapterError::invalid(format!("length-prefixed file: {what} at byte {offset}"), None);
                let len_text = rest.get(..*digits).ok_or_else(|| bad("truncated length prefix"))?;
                if !len_text.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad("length prefix is not digits"));
                }
                let len: usize = len_text.parse().map_err(|_| bad("length prefix out of range"))?;
                let body = rest.get(*digits..*digits + len).ok_or_else(|| bad("record shorter than its length prefix"))?;
                out.push(body);
                rest = &rest[digits + len..];
                offset += digits + len;
            }
            out
        }
    })
}

/// Guess the style of a file: `len10` when it starts with ten digits and then `MSH`
/// (or FHS/BHS), else HL7 batch rules.
pub fn detect_style(text: &str) -> FileStyle {
    let t = text.strip_prefix('\u{feff}').unwrap_or(text);
    let b = t.as_bytes();
    for digits in [10usize, 6, 4] {
        if b.len() > digits + 3
            && b[..digits].iter().all(u8::is_ascii_digit)
            && matches!(&b[digits..digits + 3], b"MSH" | b"FHS" | b"BHS")
        {
            return FileStyle::LengthPrefixed { digits };
        }
    }
    FileStyle::Hl7
}

/// Map every message of `text` split by `style` with `map` (HL7 batch envelopes are
/// opened too), in order, into one output. The first failing message fails the file,
/// its error prefixed with the message's position (never its content).
pub fn map_messages(
    text: &str,
    style: &FileStyle,
    source: &str,
    received_at_ms: u64,
    mut map: impl FnMut(&Hl7Input) -> Result<Output, AdapterError>,
) -> Result<Output, AdapterError> {
    let mut out = Output::default();
    let mut n = 0usize;
    for piece in split_file(text, style)? {
        let batch = crate::hl7::parse_batch(piece).map_err(AdapterError::from)?;
        if let Some(declared) = batch.declared_message_count
            && declared != batch.messages.len()
        {
            out.warn(format!("batch trailer declares {declared} messages, found {}", batch.messages.len()));
        }
        for m in &batch.messages {
            n += 1;
            let input = Hl7Input { raw: m.raw().to_owned(), source: source.to_owned(), received_at_ms };
            let o = map(&input).map_err(|e| at_message(e, n))?;
            out.resources.extend(o.resources);
            out.warnings.extend(o.warnings.into_iter().map(|w| format!("message {n}: {w}")));
        }
    }
    if n == 0 {
        return Err(AdapterError::invalid("the file holds no HL7 message", None));
    }
    Ok(out)
}

fn at_message(e: AdapterError, n: usize) -> AdapterError {
    match e {
        AdapterError::InvalidInput { message, location } => {
            AdapterError::InvalidInput { message: format!("message {n}: {message}"), location }
        }
        AdapterError::Unsupported(m) => AdapterError::Unsupported(format!("message {n}: {m}")),
        AdapterError::Transient(m) => AdapterError::Transient(format!("message {n}: {m}")),
    }
}

/// Add `meta.extension` entries `{"url": base + name, "valueString": value}` for each
/// `(name, value)` to every resource of `out` (JSON text in, JSON text out). Values
/// are engine metadata (channel ids, message ids), not clinical content.
pub fn add_provenance(out: &mut Output, base: &str, items: &[(String, String)]) {
    if items.is_empty() {
        return;
    }
    let ext: Vec<Value> = items
        .iter()
        .filter(|(_, v)| !v.trim().is_empty())
        .map(|(k, v)| json!({"url": format!("{base}{k}"), "valueString": v}))
        .collect();
    if ext.is_empty() {
        return;
    }
    for r in &mut out.resources {
        let Ok(mut v) = serde_json::from_str::<Value>(r) else { continue };
        if !v.is_object() {
            continue;
        }
        let meta = v.as_object_mut().expect("object").entry("meta").or_insert_with(|| json!({}));
        let list = meta.as_object_mut().map(|m| m.entry("extension").or_insert_with(|| json!([])));
        if let Some(Value::Array(a)) = list {
            a.extend(ext.iter().cloned());
        }
        *r = v.to_string();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_block_json_and_bare() {
        let e = Envelope::parse("X-Channel: abc\r\nX-Id: 7\r\n\r\nMSH|^~\\&|A");
        assert_eq!(e.header("x-channel"), Some("abc"));
        assert_eq!(e.header("X-ID"), Some("7"));
        assert_eq!(e.payload, "MSH|^~\\&|A");
        let e = Envelope::parse(r#"{"headers":{"X-Channel":"c"},"body":"MSH|^~\\&|B"}"#);
        assert_eq!(e.header("X-Channel"), Some("c"));
        assert_eq!(e.payload, "MSH|^~\\&|B");
        let e = Envelope::parse("MSH|^~\\&|C\rPID|1");
        assert!(e.headers.is_empty());
        assert_eq!(e.payload, "MSH|^~\\&|C\rPID|1");
        let e = Envelope::parse("<HL7Message><MSH/></HL7Message>");
        assert!(e.headers.is_empty());
    }

    #[test]
    fn length_prefixed_and_separators() {
        let f = "0000000005ABCDE\n0000000003XYZ";
        assert_eq!(split_file(f, &FileStyle::LengthPrefixed { digits: 10 }).unwrap(), vec!["ABCDE", "XYZ"]);
        assert!(split_file("0000000009ABC", &FileStyle::LengthPrefixed { digits: 10 }).is_err());
        assert!(split_file("00000x0009ABC", &FileStyle::LengthPrefixed { digits: 10 }).is_err());
        assert_eq!(split_file("a\n\nb\n\n", &FileStyle::Separator("\n\n".into())).unwrap(), vec!["a", "b"]);
        assert_eq!(FileStyle::parse("len10"), Some(FileStyle::LengthPrefixed { digits: 10 }));
        assert_eq!(FileStyle::parse("sep:\\n\\n"), Some(FileStyle::Separator("\n\n".into())));
        assert_eq!(detect_style("0000000010MSH|^~\\&|"), FileStyle::LengthPrefixed { digits: 10 });
        assert_eq!(detect_style("MSH|^~\\&|"), FileStyle::Hl7);
    }
}
