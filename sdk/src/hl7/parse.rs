//! Splitting text into segments and fields; reading delimiters from MSH/FHS/BHS.

use super::{Delimiters, Message, ParseError, Segment};

const BOM: &str = "\u{FEFF}";

pub(crate) fn strip_bom(s: &str) -> &str {
    s.strip_prefix(BOM).unwrap_or(s)
}

/// The non-blank lines of a text as `(start, end)` byte offsets, split at `\r`, `\n`
/// or `\r\n` in any mix. A line of only spaces and tabs is blank.
pub(crate) struct Lines<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Lines<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        Lines {
            bytes: text.as_bytes(),
            pos: 0,
        }
    }
}

impl Iterator for Lines<'_> {
    type Item = (usize, usize);
    #[inline]
    fn next(&mut self) -> Option<(usize, usize)> {
        while self.pos < self.bytes.len() {
            let start = self.pos;
            let end = find_eol(self.bytes, start);
            // One terminator byte; a `\n` after `\r` is then an empty line, skipped.
            self.pos = end + 1;
            if end > start && !is_blank(&self.bytes[start..end]) {
                return Some((start, end));
            }
        }
        None
    }
}

#[inline]
fn is_blank(line: &[u8]) -> bool {
    // Only look further when the line starts with white space.
    matches!(line[0], b' ' | b'\t') && line.iter().all(|&b| b == b' ' || b == b'\t')
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// Bytes of `w` equal to `b` get their high bit set (exact for the lowest match).
#[inline(always)]
pub(crate) fn eq_mask(w: u64, b: u8) -> u64 {
    let x = w ^ (LO * b as u64);
    x.wrapping_sub(LO) & !x & HI
}

/// The offset of the first `\r` or `\n` at or after `i`, or the length.
#[inline]
fn find_eol(b: &[u8], mut i: usize) -> usize {
    while let Some(chunk) = b.get(i..i + 8) {
        let w = u64::from_le_bytes([
            chunk[0], chunk[1], chunk[2], chunk[3], chunk[4], chunk[5], chunk[6], chunk[7],
        ]);
        let m = eq_mask(w, b'\r') | eq_mask(w, b'\n');
        if m != 0 {
            return i + (m.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < b.len() {
        if b[i] == b'\r' || b[i] == b'\n' {
            return i;
        }
        i += 1;
    }
    b.len()
}

/// Split `s` at `sep`, appending the pieces to `out`.
#[inline]
fn split_into<'a>(s: &'a str, sep: char, out: &mut Vec<&'a str>) {
    if sep.is_ascii() {
        let sb = sep as u8;
        let bytes = s.as_bytes();
        let mut start = 0;
        let mut i = 0;
        // Word at a time, then the tail. `sb` is ASCII, so every match is a char
        // boundary.
        while let Some(chunk) = bytes.get(i..i + 8) {
            let w = u64::from_le_bytes([
                chunk[0], chunk[1], chunk[2], chunk[3], chunk[4], chunk[5], chunk[6], chunk[7],
            ]);
            let mut m = eq_mask(w, sb);
            while m != 0 {
                let j = i + (m.trailing_zeros() / 8) as usize;
                // The mask may flag bytes above a real match spuriously: re-check.
                if bytes[j] == sb {
                    out.push(&s[start..j]);
                    start = j + 1;
                }
                m &= m - 1;
            }
            i += 8;
        }
        while i < bytes.len() {
            if bytes[i] == sb {
                out.push(&s[start..i]);
                start = i + 1;
            }
            i += 1;
        }
        out.push(&s[start..]);
    } else {
        out.extend(s.split(sep));
    }
}

/// The segment id of a line when it looks like one (three capital letters or digits,
/// starting with a letter, then the end or a delimiter), for error locations. Anything
/// else could be patient data and is not quoted.
pub(crate) fn safe_id(line: &str) -> Option<&str> {
    let b = line.as_bytes();
    let id_like = b.len() >= 3
        && b[0].is_ascii_uppercase()
        && b[1..3]
            .iter()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        && b.get(3).is_none_or(|c| c.is_ascii_punctuation());
    if id_like { Some(&line[..3]) } else { None }
}

/// Whether this line is a header segment (MSH, FHS, BHS) with this field separator:
/// its fields 1 and 2 are the delimiters.
#[inline]
fn is_header(line: &str, field: char) -> bool {
    let b = line.as_bytes();
    b.len() > 3 && matches!(&b[..3], b"MSH" | b"FHS" | b"BHS") && line[3..].starts_with(field)
}

/// Read the delimiters of a header segment (`id` is `MSH`, `FHS` or `BHS`; the line
/// starts with it). `index` is the 1-based segment number for errors.
pub(crate) fn header_delimiters(
    line: &str,
    id: &str,
    index: usize,
) -> Result<Delimiters, ParseError> {
    let err = |msg: String, field: u8| ParseError {
        message: msg,
        location: Some(format!("{id}-{field}")),
        segment_index: Some(index),
    };
    let rest = line.get(3..).unwrap_or("");
    let Some(field) = rest.chars().next() else {
        return Err(err(format!("{id}-1 (the field separator) is missing"), 1));
    };
    let after = &rest[field.len_utf8()..];
    let enc = match after.find(field) {
        Some(i) => &after[..i],
        None => after,
    };
    let mut c = ['\0'; 6];
    let mut n = 0;
    for ch in enc.chars() {
        if n == c.len() {
            return Err(err(
                format!(
                    "{id}-2 (encoding characters) is too long: at most 5 characters are allowed"
                ),
                2,
            ));
        }
        c[n] = ch;
        n += 1;
    }
    if n == 0 {
        return Err(err(format!("{id}-2 (encoding characters) is empty"), 2));
    }
    // Some feeds write the escape character twice (`^~\\&`), as if escaping it in a
    // string literal: read that as one.
    if (n == 5 || n == 6) && c[2] == c[3] {
        c.copy_within(4..n, 3);
        n -= 1;
    }
    if n < 4 {
        return Err(err(
            format!(
                "{id}-2 (encoding characters) is too short: 4 characters are required (component, repetition, escape, subcomponent)"
            ),
            2,
        ));
    }
    if n > 5 {
        return Err(err(
            format!("{id}-2 (encoding characters) is too long: at most 5 characters are allowed"),
            2,
        ));
    }
    let all = [field, c[0], c[1], c[2], c[3], c[4]];
    let all = &all[..n + 1];
    for (i, a) in all.iter().enumerate() {
        if all[i + 1..].contains(a) {
            return Err(err(
                format!(
                    "{id}-2 (encoding characters) uses the same character twice, or the field separator again: every delimiter must be distinct"
                ),
                2,
            ));
        }
    }
    Ok(Delimiters {
        field,
        component: c[0],
        repetition: c[1],
        escape: c[2],
        subcomponent: c[3],
        truncation: if n == 5 { Some(c[4]) } else { None },
    })
}

/// Index one segment's fields.
#[inline]
pub(crate) fn build_segment<'a>(
    line: &'a str,
    d: &Delimiters,
    scratch: &mut Vec<&'a str>,
) -> Segment<'a> {
    scratch.clear();
    let header = is_header(line, d.field);
    if header {
        let fl = 3 + d.field.len_utf8();
        scratch.push(&line[..3]);
        scratch.push(&line[3..fl]);
        split_into(&line[fl..], d.field, scratch);
    } else {
        split_into(line, d.field, scratch);
    }
    Segment {
        raw: line,
        fields: scratch.as_slice().into(),
        delims: *d,
        header,
    }
}

pub(crate) fn parse_message(text: &str) -> Result<Message<'_>, ParseError> {
    let text = strip_bom(text);
    let mut lines = Lines::new(text);
    let Some((s0, e0)) = lines.next() else {
        return Err(ParseError::new("the message is empty", None, None));
    };
    let first = &text[s0..e0];
    if !first.starts_with("MSH") {
        return Err(ParseError::new(
            "a message must start with an MSH segment",
            safe_id(first).or(Some("MSH")),
            Some(1),
        ));
    }
    let d = header_delimiters(first, "MSH", 1)?;
    let mut scratch = Vec::with_capacity(32);
    let msh = build_segment(first, &d, &mut scratch);
    // A header that carries a control id is a real message and must say its type. A
    // header without either is a fragment (test snippets, a truncated MSH): accepted,
    // with an empty message code.
    if msh.field(9).component(1).first_sub_raw().trim().is_empty()
        && !msh.field(10).raw().trim().is_empty()
    {
        return Err(ParseError::new(
            "MSH-9 (message type) is empty: the message type is required",
            Some("MSH-9"),
            Some(1),
        ));
    }
    // A rough guess of the segment count avoids most regrowth.
    let mut segments = Vec::with_capacity(8 + (text.len() - s0) / 128);
    segments.push(msh);
    let mut end = e0;
    for (s, e) in lines {
        segments.push(build_segment(&text[s..e], &d, &mut scratch));
        end = e;
    }
    Ok(Message {
        raw: &text[s0..end],
        delims: d,
        segments,
    })
}
