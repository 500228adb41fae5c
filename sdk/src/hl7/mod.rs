//! HL7v2 parser.
//!
//! Zero-copy where it can be: a [`Message`] borrows the input text and keeps only slice
//! offsets; escape sequences are decoded on access ([`std::borrow::Cow`] is borrowed when
//! a value has no escapes).
//!
//! - Delimiters come from MSH-1 / MSH-2 (never hard-coded).
//! - Segment terminators: `\r`, `\n` or `\r\n`, mixed freely; blank lines are skipped.
//! - A leading UTF-8 BOM is ignored.
//! - Batches: FHS/BHS/BTS/FTS envelopes via [`parse_batch`].
//! - Paths: `PID-3`, `PID-3(2)`, `PID-3(2).1`, `PID-3.4.2`, `OBX(2)-5` (second OBX),
//!   repetition and segment indexes 1-based.
//!
//! Numbering follows the standard: for MSH, field 1 is the field separator itself and
//! field 2 the encoding characters, so `MSH-9` is the message type. The same holds for
//! the FHS and BHS batch headers.
//!
//! Parsing indexes segments and their fields once; repetitions, components and
//! subcomponents are split lazily on access.

use std::borrow::Cow;

mod batch;
mod escape;
mod parse;
mod path;
#[cfg(test)]
mod tests;

/// The delimiters of one message, read from MSH-1 and MSH-2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delimiters {
    pub field: char,
    pub component: char,
    pub repetition: char,
    pub escape: char,
    pub subcomponent: char,
    /// The v2.7+ truncation character (fifth encoding character), if present.
    pub truncation: Option<char>,
}

impl Default for Delimiters {
    /// `|^~\&`, the common defaults (used only when *building* messages, e.g. ACKs).
    fn default() -> Self {
        Delimiters {
            field: '|',
            component: '^',
            repetition: '~',
            escape: '\\',
            subcomponent: '&',
            truncation: None,
        }
    }
}

impl Delimiters {
    /// The encoding characters as written in MSH-2 (`^~\&`, plus the truncation
    /// character when there is one).
    pub fn encoding_characters(&self) -> String {
        let mut s = String::with_capacity(5);
        s.push(self.component);
        s.push(self.repetition);
        s.push(self.escape);
        s.push(self.subcomponent);
        if let Some(t) = self.truncation {
            s.push(t);
        }
        s
    }
}

/// A parse error that names where the input is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// What is wrong (no PHI: never quotes field values).
    pub message: String,
    /// The segment id and optional field, e.g. `MSH-2` or `BHS`; `None` if the input
    /// as a whole is wrong (empty input, say).
    pub location: Option<String>,
    /// 1-based segment number within the input, if known.
    pub segment_index: Option<usize>,
}

impl ParseError {
    pub(crate) fn new(
        message: impl Into<String>,
        location: Option<&str>,
        segment_index: Option<usize>,
    ) -> Self {
        ParseError {
            message: message.into(),
            location: location.map(str::to_owned),
            segment_index,
        }
    }
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)?;
        if let Some(l) = &self.location {
            write!(f, " (at {l}")?;
            if let Some(i) = self.segment_index {
                write!(f, ", segment {i}")?;
            }
            f.write_str(")")?;
        } else if let Some(i) = self.segment_index {
            write!(f, " (segment {i})")?;
        }
        Ok(())
    }
}
impl std::error::Error for ParseError {}

/// One parsed message, borrowing its input.
#[derive(Debug, Clone)]
pub struct Message<'a> {
    raw: &'a str,
    delims: Delimiters,
    /// Never empty: `segments[0]` is the MSH.
    segments: Vec<Segment<'a>>,
}

impl<'a> Message<'a> {
    /// Parse one message. Fails when there is no MSH first (after a BOM / blank lines),
    /// when MSH-1/MSH-2 are missing, too long, or repeat a character, or when MSH-9
    /// is empty.
    ///
    /// MSH-9 is checked when the header carries a control id (MSH-10): a header with
    /// neither, such as a truncated `MSH|^~\&|APP`, is accepted and
    /// [`message_code`](Self::message_code) is then empty.
    ///
    /// Every line after the MSH is a segment of this message, even another `MSH`; use
    /// [`parse_batch`] for input that may hold several messages.
    pub fn parse(text: &'a str) -> Result<Message<'a>, ParseError> {
        parse::parse_message(text)
    }
    pub fn delimiters(&self) -> &Delimiters {
        &self.delims
    }
    /// All segments in order, MSH first.
    pub fn segments(&self) -> &[Segment<'a>] {
        &self.segments
    }
    /// The first segment with this id.
    pub fn segment(&self, id: &str) -> Option<&Segment<'a>> {
        self.segments.iter().find(|s| s.id() == id)
    }
    /// All segments with this id, in order.
    pub fn segments_named<'s>(&'s self, id: &'s str) -> impl Iterator<Item = &'s Segment<'a>> + 's {
        self.segments.iter().filter(move |s| s.id() == id)
    }
    /// Value at a path such as `PID-3(2).1` (escapes decoded). `None` when absent or
    /// empty.
    ///
    /// Parts left out default to 1, as in HAPI's Terser: `PID-3` is the first
    /// subcomponent of the first component of the first repetition of PID-3 (use
    /// [`Segment::field`] for the whole field). The explicit null `""` counts as
    /// empty here (see [`Field::is_null`] to tell it apart). A malformed path gives
    /// `None`. `MSH-1` and `MSH-2` give the delimiters as written.
    pub fn get(&self, path: &str) -> Option<Cow<'a, str>> {
        let p = path::parse_path(path)?;
        let seg = self.segments_named(p.segment).nth(p.segment_index - 1)?;
        seg.get_parsed(&p.field)
    }
    /// MSH-9.1, e.g. `ADT`.
    pub fn message_code(&self) -> &'a str {
        self.msh().field(9).component(1).first_sub_raw()
    }
    /// MSH-9.2, e.g. `A01` (empty when absent).
    pub fn trigger_event(&self) -> &'a str {
        self.msh().field(9).component(2).first_sub_raw()
    }
    /// MSH-10.
    pub fn control_id(&self) -> &'a str {
        self.msh().field(10).raw()
    }
    /// MSH-12.1, e.g. `2.5.1`.
    pub fn version(&self) -> &'a str {
        self.msh().field(12).component(1).first_sub_raw()
    }
    /// The input text of this message (without BOM): from the start of the MSH to the
    /// end of the last segment, terminators inside included, leading blank lines and
    /// the final terminator left out.
    pub fn raw(&self) -> &'a str {
        self.raw
    }
    /// The MSH segment.
    pub fn msh(&self) -> &Segment<'a> {
        &self.segments[0]
    }
}

/// One segment: its id and its fields as raw (still escaped) slices.
#[derive(Debug, Clone)]
pub struct Segment<'a> {
    raw: &'a str,
    /// `fields[0]` is the id; `fields[n]` is field n. For MSH/FHS/BHS, `fields[1]` is
    /// the field separator and `fields[2]` the encoding characters.
    fields: Box<[&'a str]>,
    delims: Delimiters,
    /// MSH, FHS or BHS: fields 1 and 2 are delimiters, never split nor unescaped.
    header: bool,
}

impl<'a> Segment<'a> {
    /// The segment id, e.g. `PID`.
    pub fn id(&self) -> &'a str {
        self.fields[0]
    }
    /// Field `n` (1-based; for MSH, 1 is the field separator). An absent field is
    /// an empty [`Field`].
    pub fn field(&self, n: usize) -> Field<'a> {
        let raw = if n == 0 {
            ""
        } else {
            self.fields.get(n).copied().unwrap_or("")
        };
        Field {
            raw,
            d: self.delims,
            literal: self.header && (n == 1 || n == 2),
        }
    }
    /// The number of the last field present.
    pub fn field_count(&self) -> usize {
        self.fields.len() - 1
    }
    /// All fields, from field 1 on.
    pub fn fields(&self) -> impl Iterator<Item = Field<'a>> + '_ {
        (1..self.fields.len()).map(move |n| self.field(n))
    }
    /// The delimiters this segment was split with.
    pub fn delimiters(&self) -> &Delimiters {
        &self.delims
    }
    /// Value at a path relative to this segment: `3`, `3(2)`, `3(2).1`, `3.4.2`.
    /// Same rules as [`Message::get`].
    pub fn get(&self, path: &str) -> Option<Cow<'a, str>> {
        let p = path::parse_field_path(path)?;
        self.get_parsed(&p)
    }
    fn get_parsed(&self, p: &path::FieldPath) -> Option<Cow<'a, str>> {
        let c = self.field(p.field).rep(p.rep).component(p.component);
        if c.literal {
            if p.sub != 1 || c.raw.is_empty() {
                return None;
            }
            return Some(Cow::Borrowed(c.raw));
        }
        let sub = c.sub_raw(p.sub);
        if sub.is_empty() || sub == "\"\"" {
            return None;
        }
        Some(unescape(sub, &self.delims))
    }
    /// The segment's raw text.
    pub fn raw(&self) -> &'a str {
        self.raw
    }
}

/// One field (all repetitions), raw.
#[derive(Debug, Clone, Copy)]
pub struct Field<'a> {
    raw: &'a str,
    d: Delimiters,
    /// MSH-1 / MSH-2: the value is delimiters, not to be split nor unescaped.
    literal: bool,
}

impl<'a> Field<'a> {
    pub fn raw(&self) -> &'a str {
        self.raw
    }
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }
    /// The HL7 explicit null `""`.
    pub fn is_null(&self) -> bool {
        self.raw == "\"\""
    }
    /// Repetitions (at least one, possibly empty).
    pub fn repetitions(&self) -> impl Iterator<Item = Rep<'a>> + 'a {
        let (raw, d, literal) = (self.raw, self.d, self.literal);
        let sep = if literal { None } else { Some(d.repetition) };
        Split::new(raw, sep).map(move |r| Rep { raw: r, d, literal })
    }
    /// Repetition `i` (1-based); empty when absent.
    pub fn rep(&self, i: usize) -> Rep<'a> {
        let raw = if self.literal {
            if i == 1 { self.raw } else { "" }
        } else {
            nth_piece(self.raw, self.d.repetition, i)
        };
        Rep {
            raw,
            d: self.d,
            literal: self.literal,
        }
    }
    /// Shorthand for `rep(1).component(n)`.
    pub fn component(&self, n: usize) -> Component<'a> {
        self.rep(1).component(n)
    }
    /// The first repetition's first component, decoded.
    pub fn value(&self) -> Cow<'a, str> {
        self.rep(1).component(1).value()
    }
    /// The whole field with escapes decoded (delimiters inside are kept as they are).
    pub fn decoded(&self) -> Cow<'a, str> {
        if self.literal {
            Cow::Borrowed(self.raw)
        } else {
            unescape(self.raw, &self.d)
        }
    }
}

/// One repetition of a field.
#[derive(Debug, Clone, Copy)]
pub struct Rep<'a> {
    raw: &'a str,
    d: Delimiters,
    literal: bool,
}

impl<'a> Rep<'a> {
    pub fn raw(&self) -> &'a str {
        self.raw
    }
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }
    /// Component `n` (1-based); empty when absent.
    pub fn component(&self, n: usize) -> Component<'a> {
        let raw = if self.literal {
            if n == 1 { self.raw } else { "" }
        } else {
            nth_piece(self.raw, self.d.component, n)
        };
        Component {
            raw,
            d: self.d,
            literal: self.literal,
        }
    }
    /// Components 1 to `N` (absent ones empty), split in one pass: cheaper than
    /// [`component`](Self::component) for each when several are read.
    pub fn first_components<const N: usize>(&self) -> [Component<'a>; N] {
        let empty = Component {
            raw: "",
            d: self.d,
            literal: self.literal,
        };
        let mut out = [empty; N];
        for (slot, c) in out.iter_mut().zip(self.components()) {
            *slot = c;
        }
        out
    }
    /// All components.
    pub fn components(&self) -> impl Iterator<Item = Component<'a>> + 'a {
        let (raw, d, literal) = (self.raw, self.d, self.literal);
        let sep = if literal { None } else { Some(d.component) };
        Split::new(raw, sep).map(move |c| Component { raw: c, d, literal })
    }
    /// Whole repetition decoded (delimiters inside are kept as they are).
    pub fn value(&self) -> Cow<'a, str> {
        if self.literal {
            Cow::Borrowed(self.raw)
        } else {
            unescape(self.raw, &self.d)
        }
    }
}

/// One component of a repetition.
#[derive(Debug, Clone, Copy)]
pub struct Component<'a> {
    raw: &'a str,
    d: Delimiters,
    literal: bool,
}

impl<'a> Component<'a> {
    pub fn raw(&self) -> &'a str {
        self.raw
    }
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }
    /// Subcomponent `n` (1-based), decoded; `None` when absent or empty.
    pub fn sub(&self, n: usize) -> Option<Cow<'a, str>> {
        let s = self.sub_raw(n);
        if s.is_empty() {
            None
        } else if self.literal {
            Some(Cow::Borrowed(s))
        } else {
            Some(unescape(s, &self.d))
        }
    }
    /// All subcomponents, raw.
    pub fn subs_raw(&self) -> impl Iterator<Item = &'a str> + 'a {
        let sep = if self.literal {
            None
        } else {
            Some(self.d.subcomponent)
        };
        Split::new(self.raw, sep)
    }
    /// The component decoded (escapes resolved); for a component with subcomponents,
    /// the first subcomponent.
    pub fn value(&self) -> Cow<'a, str> {
        let s = self.first_sub_raw();
        if self.literal {
            Cow::Borrowed(s)
        } else {
            unescape(s, &self.d)
        }
    }
    /// `Some(value)` when not empty and not the explicit null `""`.
    pub fn opt(&self) -> Option<Cow<'a, str>> {
        let s = self.first_sub_raw();
        if s.is_empty() || s == "\"\"" {
            return None;
        }
        Some(self.value())
    }
    fn sub_raw(&self, n: usize) -> &'a str {
        if self.literal {
            if n == 1 { self.raw } else { "" }
        } else {
            nth_piece(self.raw, self.d.subcomponent, n)
        }
    }
    fn first_sub_raw(&self) -> &'a str {
        self.sub_raw(1)
    }
}

/// The offset of the first `sep` in `s`. Delimiters are nearly always ASCII and the
/// pieces short: a word-at-a-time byte search beats the general `str::find` there.
#[inline]
pub(crate) fn find_char(s: &str, sep: char) -> Option<usize> {
    if !sep.is_ascii() {
        return s.find(sep);
    }
    let (b, bytes) = (sep as u8, s.as_bytes());
    let mut i = 0;
    while let Some(chunk) = bytes.get(i..i + 8) {
        let w = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        let m = parse::eq_mask(w, b);
        if m != 0 {
            return Some(i + (m.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    bytes[i..].iter().position(|&c| c == b).map(|p| i + p)
}

/// Piece `n` (1-based) of `s` split at `sep`; empty when absent.
fn nth_piece(s: &str, sep: char, n: usize) -> &str {
    if n == 0 {
        return "";
    }
    let mut rest = s;
    for _ in 1..n {
        match find_char(rest, sep) {
            Some(i) => rest = &rest[i + sep.len_utf8()..],
            None => return "",
        }
    }
    match find_char(rest, sep) {
        Some(i) => &rest[..i],
        None => rest,
    }
}

/// `str::split` by an optional separator (`None`: the whole string, once).
struct Split<'a> {
    rest: Option<&'a str>,
    sep: Option<char>,
}

impl<'a> Split<'a> {
    fn new(s: &'a str, sep: Option<char>) -> Self {
        Split { rest: Some(s), sep }
    }
}

impl<'a> Iterator for Split<'a> {
    type Item = &'a str;
    fn next(&mut self) -> Option<&'a str> {
        let s = self.rest?;
        match self.sep.and_then(|c| find_char(s, c).map(|i| (i, c))) {
            Some((i, c)) => {
                self.rest = Some(&s[i + c.len_utf8()..]);
                Some(&s[..i])
            }
            None => {
                self.rest = None;
                Some(s)
            }
        }
    }
}

/// Decode escape sequences: `\F\ \S\ \T\ \R\ \E\ \Xhh..\` (hex bytes, UTF-8 or
/// Latin-1), `\.br\` (line break); `\H\ \N\` (highlight on/off) are dropped; unknown
/// sequences are kept verbatim. Borrowed when there is nothing to decode.
///
/// `\P\` is the truncation character when the delimiters have one. An escape
/// character without a closing one is kept as it is.
pub fn unescape<'a>(s: &'a str, d: &Delimiters) -> Cow<'a, str> {
    escape::unescape(s, d)
}

/// Escape a value for inclusion in a message with these delimiters.
///
/// The delimiters become `\F\ \S\ \T\ \R\ \E\` (and `\P\` for the truncation
/// character), a line feed `\.br\` and a carriage return `\X0D\`, so that
/// [`unescape`] gives the value back.
pub fn escape<'a>(s: &'a str, d: &Delimiters) -> Cow<'a, str> {
    escape::escape(s, d)
}

/// A file or batch: FHS/BHS headers, trailers and the messages inside.
#[derive(Debug, Clone)]
pub struct Batch<'a> {
    /// The FHS segment, if the input is a file envelope.
    pub file_header: Option<Segment<'a>>,
    /// The BHS segments (one per batch), in order.
    pub batch_headers: Vec<Segment<'a>>,
    /// Every message in input order, across all batches.
    pub messages: Vec<Message<'a>>,
    /// Count declared by the trailers (BTS-1 / FTS-1) when present, for checking.
    ///
    /// The sum of the BTS-1 batch message counts. FTS-1 counts *batches*, not
    /// messages, so it is used only for a file without batch headers (messages
    /// directly under FHS), where the two coincide in practice.
    pub declared_message_count: Option<usize>,
}

/// Parse input that may be a single message, a BHS batch, or an FHS file of batches.
/// Lenient where real feeds are (a BHS without BTS, a BTS without BHS); strict where
/// the structure is ambiguous (a second FHS, a BHS nested in a message, segments before
/// the first MSH).
pub fn parse_batch(text: &str) -> Result<Batch<'_>, ParseError> {
    batch::parse_batch(text)
}

/// Bytes to text: strips a UTF-8 BOM; text that is not valid UTF-8 is decoded as
/// Windows-1252 (the usual legacy HL7 charset) rather than rejected.
pub fn decode_bytes(bytes: &[u8]) -> Cow<'_, str> {
    escape::decode_bytes(bytes)
}
