//! Escape sequences and byte decoding.

use std::borrow::Cow;

use super::Delimiters;

pub(crate) fn unescape<'a>(s: &'a str, d: &Delimiters) -> Cow<'a, str> {
    let esc = d.escape;
    let Some(first) = super::find_char(s, esc) else {
        return Cow::Borrowed(s);
    };
    let el = esc.len_utf8();
    let mut out = String::with_capacity(s.len());
    out.push_str(&s[..first]);
    let mut rest = &s[first..]; // starts with the escape character
    let mut changed = false;
    loop {
        let body = &rest[el..];
        let Some(j) = body.find(esc) else {
            // Unterminated: keep as it is.
            out.push_str(rest);
            break;
        };
        let seq = &body[..j];
        if decode_sequence(seq, d, &mut out) {
            changed = true;
        } else {
            out.push_str(&rest[..el + j + el]);
        }
        rest = &body[j + el..];
        match rest.find(esc) {
            Some(i) => {
                out.push_str(&rest[..i]);
                rest = &rest[i..];
            }
            None => {
                out.push_str(rest);
                break;
            }
        }
    }
    if changed {
        Cow::Owned(out)
    } else {
        Cow::Borrowed(s)
    }
}

/// Append the meaning of one escape sequence (the text between two escape
/// characters); `false` when it is not one we know.
fn decode_sequence(seq: &str, d: &Delimiters, out: &mut String) -> bool {
    let c = match seq {
        "F" => d.field,
        "S" => d.component,
        "T" => d.subcomponent,
        "R" => d.repetition,
        "E" => d.escape,
        "P" => match d.truncation {
            Some(t) => t,
            None => return false,
        },
        "H" | "N" => return true,
        ".br" => '\n',
        _ => {
            return match seq.strip_prefix('X') {
                Some(hex) => decode_hex(hex, out),
                None => false,
            };
        }
    };
    out.push(c);
    true
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// `\Xhh..\`: the bytes as UTF-8 when they are valid UTF-8, else as Latin-1.
fn decode_hex(hex: &str, out: &mut String) -> bool {
    let h = hex.as_bytes();
    if h.is_empty() || !h.len().is_multiple_of(2) {
        return false;
    }
    let mut bytes = Vec::with_capacity(h.len() / 2);
    for pair in h.chunks_exact(2) {
        match (hex_val(pair[0]), hex_val(pair[1])) {
            (Some(a), Some(b)) => bytes.push(a << 4 | b),
            _ => return false,
        }
    }
    match std::str::from_utf8(&bytes) {
        Ok(s) => out.push_str(s),
        Err(_) => out.extend(bytes.iter().map(|&b| b as char)),
    }
    true
}

pub(crate) fn escape<'a>(s: &'a str, d: &Delimiters) -> Cow<'a, str> {
    let special = |c: char| {
        c == d.field
            || c == d.component
            || c == d.repetition
            || c == d.escape
            || c == d.subcomponent
            || Some(c) == d.truncation
            || c == '\r'
            || c == '\n'
    };
    let Some(first) = s.find(special) else {
        return Cow::Borrowed(s);
    };
    let mut out = String::with_capacity(s.len() + 16);
    out.push_str(&s[..first]);
    for c in s[first..].chars() {
        let code = if c == d.field {
            "F"
        } else if c == d.component {
            "S"
        } else if c == d.repetition {
            "R"
        } else if c == d.escape {
            "E"
        } else if c == d.subcomponent {
            "T"
        } else if Some(c) == d.truncation {
            "P"
        } else if c == '\n' {
            ".br"
        } else if c == '\r' {
            "X0D"
        } else {
            out.push(c);
            continue;
        };
        out.push(d.escape);
        out.push_str(code);
        out.push(d.escape);
    }
    Cow::Owned(out)
}

/// Windows-1252 0x80..=0x9F; the five undefined bytes map to the C1 controls, as the
/// WHATWG encoding standard does.
const CP1252_HIGH: [char; 32] = [
    '\u{20AC}', '\u{0081}', '\u{201A}', '\u{0192}', '\u{201E}', '\u{2026}', '\u{2020}',
    '\u{2021}', //
    '\u{02C6}', '\u{2030}', '\u{0160}', '\u{2039}', '\u{0152}', '\u{008D}', '\u{017D}',
    '\u{008F}', //
    '\u{0090}', '\u{2018}', '\u{2019}', '\u{201C}', '\u{201D}', '\u{2022}', '\u{2013}',
    '\u{2014}', //
    '\u{02DC}', '\u{2122}', '\u{0161}', '\u{203A}', '\u{0153}', '\u{009D}', '\u{017E}',
    '\u{0178}', //
];

pub(crate) fn cp1252_char(b: u8) -> char {
    if (0x80..0xA0).contains(&b) {
        CP1252_HIGH[(b - 0x80) as usize]
    } else {
        b as char
    }
}

pub(crate) fn decode_bytes(bytes: &[u8]) -> Cow<'_, str> {
    let b = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match std::str::from_utf8(b) {
        Ok(s) => Cow::Borrowed(s),
        // Valid UTF-8 stays as it is; only the bytes that are not UTF-8 are read as
        // Windows-1252. (Decoding the whole message as cp1252 because of one
        // stray byte would turn every UTF-8 name in it into mojibake.)
        Err(_) => {
            let mut out = String::with_capacity(b.len() + 8);
            for chunk in b.utf8_chunks() {
                out.push_str(chunk.valid());
                out.extend(chunk.invalid().iter().map(|&x| cp1252_char(x)));
            }
            Cow::Owned(out)
        }
    }
}
