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
//! field 2 the encoding characters, so `MSH-9` is the message type.

use std::borrow::Cow;

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
        todo!()
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

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        todo!()
    }
}
impl std::error::Error for ParseError {}

/// One parsed message, borrowing its input.
#[derive(Debug, Clone)]
pub struct Message<'a> {
    _p: std::marker::PhantomData<&'a str>,
}

impl<'a> Message<'a> {
    /// Parse one message. Fails when there is no MSH first (after a BOM / blank lines),
    /// when MSH-1/MSH-2 are missing, too long, or repeat a character, or when MSH-9
    /// is empty.
    pub fn parse(text: &'a str) -> Result<Message<'a>, ParseError> {
        todo!()
    }
    pub fn delimiters(&self) -> &Delimiters {
        todo!()
    }
    /// All segments in order, MSH first.
    pub fn segments(&self) -> &[Segment<'a>] {
        todo!()
    }
    /// The first segment with this id.
    pub fn segment(&self, id: &str) -> Option<&Segment<'a>> {
        todo!()
    }
    /// All segments with this id, in order.
    pub fn segments_named<'s>(&'s self, id: &'s str) -> impl Iterator<Item = &'s Segment<'a>> + 's {
        std::iter::empty()
    }
    /// Value at a path such as `PID-3(2).1` (escapes decoded). `None` when absent or
    /// empty.
    pub fn get(&self, path: &str) -> Option<Cow<'a, str>> {
        todo!()
    }
    /// MSH-9.1, e.g. `ADT`.
    pub fn message_code(&self) -> &'a str {
        todo!()
    }
    /// MSH-9.2, e.g. `A01` (empty when absent).
    pub fn trigger_event(&self) -> &'a str {
        todo!()
    }
    /// MSH-10.
    pub fn control_id(&self) -> &'a str {
        todo!()
    }
    /// MSH-12.1, e.g. `2.5.1`.
    pub fn version(&self) -> &'a str {
        todo!()
    }
    /// The input text of this message (without BOM).
    pub fn raw(&self) -> &'a str {
        todo!()
    }
}

/// One segment: its id and its fields as raw (still escaped) slices.
#[derive(Debug, Clone)]
pub struct Segment<'a> {
    _p: std::marker::PhantomData<&'a str>,
}

impl<'a> Segment<'a> {
    /// The segment id, e.g. `PID`.
    pub fn id(&self) -> &'a str {
        todo!()
    }
    /// Field `n` (1-based; for MSH, 1 is the field separator). An absent field is
    /// an empty [`Field`].
    pub fn field(&self, n: usize) -> Field<'a> {
        todo!()
    }
    /// The number of the last field present.
    pub fn field_count(&self) -> usize {
        todo!()
    }
    /// Value at a path relative to this segment: `3`, `3(2)`, `3(2).1`, `3.4.2`.
    pub fn get(&self, path: &str) -> Option<Cow<'a, str>> {
        todo!()
    }
    /// The segment's raw text.
    pub fn raw(&self) -> &'a str {
        todo!()
    }
}

/// One field (all repetitions), raw.
#[derive(Debug, Clone, Copy)]
pub struct Field<'a> {
    _p: std::marker::PhantomData<&'a str>,
}

impl<'a> Field<'a> {
    pub fn raw(&self) -> &'a str {
        todo!()
    }
    pub fn is_empty(&self) -> bool {
        todo!()
    }
    /// The HL7 explicit null `""`.
    pub fn is_null(&self) -> bool {
        todo!()
    }
    /// Repetitions (at least one, possibly empty).
    pub fn repetitions(&self) -> impl Iterator<Item = Rep<'a>> + 'a {
        std::iter::empty()
    }
    /// Repetition `i` (1-based); empty when absent.
    pub fn rep(&self, i: usize) -> Rep<'a> {
        todo!()
    }
    /// Shorthand for `rep(1).component(n)`.
    pub fn component(&self, n: usize) -> Component<'a> {
        todo!()
    }
    /// The first repetition's first component, decoded.
    pub fn value(&self) -> Cow<'a, str> {
        todo!()
    }
}

/// One repetition of a field.
#[derive(Debug, Clone, Copy)]
pub struct Rep<'a> {
    _p: std::marker::PhantomData<&'a str>,
}

impl<'a> Rep<'a> {
    pub fn raw(&self) -> &'a str {
        todo!()
    }
    pub fn is_empty(&self) -> bool {
        todo!()
    }
    /// Component `n` (1-based); empty when absent.
    pub fn component(&self, n: usize) -> Component<'a> {
        todo!()
    }
    /// All components.
    pub fn components(&self) -> impl Iterator<Item = Component<'a>> + 'a {
        std::iter::empty()
    }
    /// Whole repetition decoded (delimiters inside are kept as they are).
    pub fn value(&self) -> Cow<'a, str> {
        todo!()
    }
}

/// One component of a repetition.
#[derive(Debug, Clone, Copy)]
pub struct Component<'a> {
    _p: std::marker::PhantomData<&'a str>,
}

impl<'a> Component<'a> {
    pub fn raw(&self) -> &'a str {
        todo!()
    }
    pub fn is_empty(&self) -> bool {
        todo!()
    }
    /// Subcomponent `n` (1-based), decoded; `None` when absent or empty.
    pub fn sub(&self, n: usize) -> Option<Cow<'a, str>> {
        todo!()
    }
    /// The component decoded (escapes resolved); for a component with subcomponents,
    /// the first subcomponent.
    pub fn value(&self) -> Cow<'a, str> {
        todo!()
    }
    /// `Some(value)` when not empty and not the explicit null `""`.
    pub fn opt(&self) -> Option<Cow<'a, str>> {
        todo!()
    }
}

/// Decode escape sequences: `\F\ \S\ \T\ \R\ \E\ \Xhh..\` (hex bytes, UTF-8 or
/// Latin-1), `\.br\` (line break); `\H\ \N\` (highlight on/off) are dropped; unknown
/// sequences are kept verbatim. Borrowed when there is nothing to decode.
pub fn unescape<'a>(s: &'a str, d: &Delimiters) -> Cow<'a, str> {
    todo!()
}

/// Escape a value for inclusion in a message with these delimiters.
pub fn escape<'a>(s: &'a str, d: &Delimiters) -> Cow<'a, str> {
    todo!()
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
    pub declared_message_count: Option<usize>,
}

/// Parse input that may be a single message, a BHS batch, or an FHS file of batches.
/// Lenient where real feeds are (a BHS without BTS, a BTS without BHS); strict where
/// the structure is ambiguous (a second FHS, a BHS nested in a message, segments before
/// the first MSH).
pub fn parse_batch(text: &str) -> Result<Batch<'_>, ParseError> {
    todo!()
}

/// Bytes to text: strips a UTF-8 BOM; text that is not valid UTF-8 is decoded as
/// Windows-1252 (the usual legacy HL7 charset) rather than rejected.
pub fn decode_bytes(bytes: &[u8]) -> Cow<'_, str> {
    todo!()
}
