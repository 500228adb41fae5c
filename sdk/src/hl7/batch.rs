//! FHS/BHS/BTS/FTS envelopes.

use super::parse::{Lines, build_segment, header_delimiters, parse_message, safe_id, strip_bom};
use super::{Batch, Message, ParseError, Segment};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Msh,
    Fhs,
    Bhs,
    Bts,
    Fts,
    Other,
}

fn kind(line: &str) -> Kind {
    match line.as_bytes().get(..3) {
        Some(b"MSH") => Kind::Msh,
        Some(b"FHS") => Kind::Fhs,
        Some(b"BHS") => Kind::Bhs,
        Some(b"BTS") => Kind::Bts,
        Some(b"FTS") => Kind::Fts,
        _ => Kind::Other,
    }
}

/// Field 1 of a trailer (BTS-1, FTS-1) as a count. The field separator is the
/// character after the id.
fn trailer_count(line: &str) -> Option<usize> {
    let rest = line.get(3..)?;
    let sep = rest.chars().next()?;
    let f1 = rest[sep.len_utf8()..].split(sep).next()?;
    f1.trim().parse().ok()
}

/// A message being collected: its text range and the number of its MSH in the input.
struct Open {
    start: usize,
    end: usize,
    index: usize,
}

fn header<'a>(line: &'a str, id: &str, index: usize) -> Result<Segment<'a>, ParseError> {
    let d = header_delimiters(line, id, index)?;
    Ok(build_segment(line, &d, &mut Vec::with_capacity(16)))
}

/// Parse the message collected so far, if any.
fn flush_open<'a>(
    text: &'a str,
    open: &mut Option<Open>,
    messages: &mut Vec<Message<'a>>,
) -> Result<(), ParseError> {
    if let Some(o) = open.take() {
        let m = parse_message(&text[o.start..o.end]).map_err(|mut e| {
            e.segment_index = e.segment_index.map(|i| i + o.index - 1);
            e
        })?;
        messages.push(m);
    }
    Ok(())
}

pub(crate) fn parse_batch(text: &str) -> Result<Batch<'_>, ParseError> {
    let text = strip_bom(text);
    let mut batch = Batch {
        file_header: None,
        batch_headers: Vec::new(),
        messages: Vec::new(),
        declared_message_count: None,
    };
    let mut open: Option<Open> = None;
    let mut in_batch = false;
    let mut file_closed = false;
    let mut bts_count: Option<usize> = None;
    let mut fts_count: Option<usize> = None;
    let mut index = 0;

    for (s, e) in Lines::new(text) {
        index += 1;
        let line = &text[s..e];
        let k = kind(line);
        if file_closed {
            return Err(ParseError::new(
                "segment after the file trailer (FTS): nothing may follow it",
                safe_id(line),
                Some(index),
            ));
        }
        match k {
            Kind::Msh => {
                flush_open(text, &mut open, &mut batch.messages)?;
                open = Some(Open {
                    start: s,
                    end: e,
                    index,
                });
            }
            Kind::Other => match open.as_mut() {
                Some(o) => o.end = e,
                None => {
                    return Err(ParseError::new(
                        "segment received before the message header (MSH)",
                        safe_id(line),
                        Some(index),
                    ));
                }
            },
            Kind::Fhs => {
                if batch.file_header.is_some() {
                    return Err(ParseError::new(
                        "File cannot have more than one FHS segment",
                        Some("FHS"),
                        Some(index),
                    ));
                }
                if index != 1 {
                    return Err(ParseError::new(
                        "the file header (FHS) must be the first segment",
                        Some("FHS"),
                        Some(index),
                    ));
                }
                batch.file_header = Some(header(line, "FHS", index)?);
            }
            Kind::Bhs => {
                if in_batch {
                    return Err(ParseError::new(
                        "Batch cannot have more than one BHS segment: a BHS came before the BTS closing the previous batch",
                        Some("BHS"),
                        Some(index),
                    ));
                }
                flush_open(text, &mut open, &mut batch.messages)?;
                batch.batch_headers.push(header(line, "BHS", index)?);
                in_batch = true;
            }
            Kind::Bts => {
                flush_open(text, &mut open, &mut batch.messages)?;
                in_batch = false;
                if let Some(n) = trailer_count(line) {
                    bts_count = Some(bts_count.unwrap_or(0).saturating_add(n));
                }
            }
            Kind::Fts => {
                flush_open(text, &mut open, &mut batch.messages)?;
                in_batch = false;
                file_closed = true;
                fts_count = trailer_count(line);
            }
        }
    }
    flush_open(text, &mut open, &mut batch.messages)?;

    if index == 0 {
        return Err(ParseError::new("the input is empty", None, None));
    }
    if batch.messages.is_empty() && batch.file_header.is_none() && batch.batch_headers.is_empty() {
        return Err(ParseError::new(
            "the input holds no message (no MSH segment)",
            None,
            None,
        ));
    }
    batch.declared_message_count = bts_count.or(if batch.batch_headers.is_empty() {
        fts_count
    } else {
        None
    });
    Ok(batch)
}
