//! NDJSON as it streams in: chunks split into whole lines (a line may span chunks),
//! and the checks every line passes before it reaches an adapter.

use bytes::{Bytes, BytesMut};
use serde::Deserialize;

/// Splits a byte stream into lines. Only whole lines come out; what follows the
/// last line break waits for the next chunk, or for [`finish`](Self::finish).
#[derive(Default)]
pub struct LineSplitter {
    partial: BytesMut,
}

impl LineSplitter {
    /// The complete lines in `chunk` (with what was left over before), without their
    /// line breaks (`\n` or `\r\n`). Blank lines are returned too: they still count
    /// as lines of the file.
    pub fn feed(&mut self, chunk: &Bytes) -> Vec<Bytes> {
        let mut lines = Vec::new();
        let mut rest = chunk.clone();
        while let Some(nl) = memchr::memchr(b'\n', &rest) {
            let piece = rest.split_to(nl + 1);
            let line = if self.partial.is_empty() {
                piece.slice(..nl)
            } else {
                self.partial.extend_from_slice(&piece[..nl]);
                self.partial.split().freeze()
            };
            lines.push(strip_cr(line));
        }
        self.partial.extend_from_slice(&rest);
        lines
    }

    /// Bytes waiting for their line break.
    pub fn pending(&self) -> usize {
        self.partial.len()
    }

    /// What came after the last line break: a last line without its newline (some
    /// servers omit it), or the torn end of a truncated download.
    pub fn finish(&mut self) -> Option<Bytes> {
        let rest = self.partial.split().freeze();
        (!rest.is_empty()).then(|| strip_cr(rest))
    }
}

fn strip_cr(line: Bytes) -> Bytes {
    if line.last() == Some(&b'\r') { line.slice(..line.len() - 1) } else { line }
}

pub fn is_blank(line: &[u8]) -> bool {
    line.iter().all(u8::is_ascii_whitespace)
}

#[derive(Deserialize)]
struct Head<'a> {
    #[serde(rename = "resourceType", borrow)]
    resource_type: Option<std::borrow::Cow<'a, str>>,
}

/// Checks one line: a JSON object (the whole line is parsed, so a torn or damaged
/// line fails) whose `resourceType` is `expected` when the manifest names one.
/// Returns the resource type. The error never quotes the line (it may hold PHI).
pub fn check_line(line: &[u8], expected: Option<&str>) -> Result<String, String> {
    let head: Head = serde_json::from_slice(line).map_err(|e| {
        if e.is_eof() {
            format!("line ends before its JSON does (truncated at column {})", e.column())
        } else if e.is_data() {
            "not a JSON object with a string `resourceType`".to_string()
        } else {
            format!("not valid JSON ({:?} error at column {})", e.classify(), e.column())
        }
    })?;
    let ty = head.resource_type.ok_or("no `resourceType`")?;
    match expected {
        Some(want) if want != ty => Err(format!("resourceType `{ty}` does not match the manifest's type `{want}`")),
        _ => Ok(ty.into_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&str]) -> (Vec<String>, Option<String>) {
        let mut s = LineSplitter::default();
        let mut out = Vec::new();
        for c in chunks {
            out.extend(s.feed(&Bytes::copy_from_slice(c.as_bytes())).into_iter().map(|l| String::from_utf8(l.to_vec()).unwrap()));
        }
        (out, s.finish().map(|l| String::from_utf8(l.to_vec()).unwrap()))
    }

    #[test]
    fn lines_spanning_chunks_come_out_whole() {
        let (lines, rest) = split(&["{\"a\":", "1}\n{\"b\"", ":2}\r\n\n{\"c\":3}\n"]);
        assert_eq!(lines, vec!["{\"a\":1}", "{\"b\":2}", "", "{\"c\":3}"]);
        assert_eq!(rest, None);
        let (lines, rest) = split(&["x\ny", "z"]);
        assert_eq!((lines, rest), (vec!["x".to_string()], Some("yz".to_string())));
        // Every byte split point gives the same lines.
        let text = "{\"resourceType\":\"Patient\"}\n{\"resourceType\":\"Patient\",\"id\":\"é\"}\r\n";
        for cut in 0..text.len() {
            let (a, b) = text.as_bytes().split_at(cut);
            let mut s = LineSplitter::default();
            let mut got = s.feed(&Bytes::copy_from_slice(a));
            got.extend(s.feed(&Bytes::copy_from_slice(b)));
            assert_eq!(got.len(), 2, "cut at {cut}");
            assert!(s.finish().is_none());
        }
    }

    #[test]
    fn checks_name_what_is_wrong() {
        assert_eq!(check_line(br#"{"resourceType":"Patient","id":"1"}"#, Some("Patient")).unwrap(), "Patient");
        assert_eq!(check_line(br#"{"resourceType":"Observation"}"#, None).unwrap(), "Observation");
        assert!(check_line(br#"{"resourceType":"Observation"}"#, Some("Patient")).unwrap_err().contains("does not match"));
        assert!(check_line(br#"{"resourceType":"Patient","na"#, Some("Patient")).unwrap_err().contains("truncated"));
        assert!(check_line(br#"[1,2]"#, None).unwrap_err().contains("not a JSON object"));
        assert!(check_line(br#"{"id":"1"}"#, None).unwrap_err().contains("resourceType"));
        let e = check_line(b"{\"resourceType\":\"Patient\"} secret-name", None).unwrap_err();
        assert!(!e.contains("secret"), "{e}");
    }
}
