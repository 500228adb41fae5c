//! Block framing: MLLP (`0x0B` ... `0x1C 0x0D`) or a custom start/end wrapper as
//! interface engines allow (Rhapsody's TCP wrapper, Cloverleaf's USER framing).

/// The bytes around each message on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Framing {
    pub start: Vec<u8>,
    pub end: Vec<u8>,
}

impl Default for Framing {
    fn default() -> Self {
        Framing::mllp()
    }
}

impl Framing {
    /// MLLP: start block VT (0x0B), end block FS CR (0x1C 0x0D).
    pub fn mllp() -> Framing {
        Framing { start: vec![0x0B], end: vec![0x1C, 0x0D] }
    }

    /// A custom wrapper from hex strings such as `"0b"` and `"1c0d"`.
    pub fn custom(start_hex: &str, end_hex: &str) -> Result<Framing, String> {
        let parse = |name: &str, s: &str| -> Result<Vec<u8>, String> {
            let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
            let s = s.strip_prefix("0x").unwrap_or(&s);
            if s.is_empty() || s.len() % 2 != 0 {
                return Err(format!("framing {name} must be an even number of hex digits, e.g. \"0b\" or \"1c0d\"; got {s:?}"));
            }
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|_| format!("framing {name}: {s:?} is not hex")))
                .collect()
        };
        Ok(Framing { start: parse("start", start_hex)?, end: parse("end", end_hex)? })
    }

    pub fn wrap(&self, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.start.len() + payload.len() + self.end.len());
        v.extend_from_slice(&self.start);
        v.extend_from_slice(payload);
        v.extend_from_slice(&self.end);
        v
    }
}

/// What the decoder found in the buffered bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A complete message (without its wrapper).
    Message(Vec<u8>),
    /// Bytes outside any frame were skipped (how many).
    Skipped(usize),
    /// A frame was abandoned: a new start block came before its end block (the
    /// sender gave up on it and started again). Its bytes (how many) are dropped,
    /// never merged into the next message; the sender gets no ACK for it and
    /// resends.
    Abandoned(usize),
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("a message exceeded the limit of {limit} bytes without its end block")]
pub struct TooLarge {
    pub limit: usize,
}

/// Incremental decoder over a connection's bytes.
#[derive(Debug)]
pub struct Decoder {
    framing: Framing,
    max: usize,
    buf: Vec<u8>,
    /// Where to resume the search for the end block.
    scanned: usize,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.len() == 1 {
        return memchr::memchr(needle[0], hay);
    }
    memchr::memmem::find(hay, needle)
}

impl Decoder {
    pub fn new(framing: Framing, max_message_bytes: usize) -> Decoder {
        Decoder { framing, max: max_message_bytes, buf: Vec::with_capacity(64 * 1024), scanned: 0 }
    }

    /// The first bytes of the frame being received (to answer a frame that is
    /// too large with a NAK the sender can match to its message).
    pub fn pending_prefix(&self, n: usize) -> &[u8] {
        let body = self.framing.start.len().min(self.buf.len());
        &self.buf[body..self.buf.len().min(body.saturating_add(n))]
    }

    /// Bytes of a frame not yet complete are buffered.
    pub fn has_partial(&self) -> bool {
        !self.buf.is_empty()
    }

    pub fn extend(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next frame, if the buffer holds one.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, TooLarge> {
        let start = &self.framing.start;
        if !self.buf.starts_with(start) {
            if self.buf.len() < start.len() && start.starts_with(&self.buf) {
                return Ok(None);
            }
            // Noise before a start block (keep-alive newlines, say): skip to it.
            let skip = find(&self.buf, start).unwrap_or(self.buf.len().saturating_sub(start.len() - 1));
            if skip == 0 {
                return Ok(None);
            }
            self.buf.drain(..skip);
            self.scanned = 0;
            return Ok(Some(Frame::Skipped(skip)));
        }
        let body = start.len();
        let from = self.scanned.max(body);
        let end_at = find(&self.buf[from..], &self.framing.end).map(|i| from + i);
        // A start block before the end block: resynchronise on it.
        let limit = end_at.unwrap_or(self.buf.len());
        if let Some(i) = find(&self.buf[from..limit], start) {
            let restart = from + i;
            self.buf.drain(..restart);
            self.scanned = 0;
            return Ok(Some(Frame::Abandoned(restart)));
        }
        match end_at {
            // A complete frame over the limit (it arrived in one read) is as
            // refused as one still growing.
            Some(end) if end - body > self.max => Err(TooLarge { limit: self.max }),
            Some(end) => {
                let msg = self.buf[body..end].to_vec();
                self.buf.drain(..end + self.framing.end.len());
                self.scanned = 0;
                Ok(Some(Frame::Message(msg)))
            }
            None => {
                if self.buf.len() - body > self.max {
                    return Err(TooLarge { limit: self.max });
                }
                // The end (or a start) block may straddle the next read.
                let keep = self.framing.end.len().max(start.len()) - 1;
                self.scanned = self.buf.len().saturating_sub(keep).max(body);
                Ok(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(d: &mut Decoder) -> Vec<Frame> {
        let mut out = Vec::new();
        while let Some(f) = d.next_frame().unwrap() {
            out.push(f);
        }
        out
    }

    #[test]
    fn splits_frames_across_and_within_reads() {
        let mut d = Decoder::new(Framing::mllp(), 1000);
        d.extend(b"\x0bMSH|one\x1c");
        assert_eq!(frames(&mut d), vec![]);
        d.extend(b"\x0d\x0bMSH|two\x1c\x0d\x0bMSH|th");
        assert_eq!(frames(&mut d), vec![Frame::Message(b"MSH|one".to_vec()), Frame::Message(b"MSH|two".to_vec())]);
        d.extend(b"ree\x1c\x0d");
        assert_eq!(frames(&mut d), vec![Frame::Message(b"MSH|three".to_vec())]);
    }

    #[test]
    fn a_lone_fs_inside_a_message_is_not_an_end() {
        let mut d = Decoder::new(Framing::mllp(), 1000);
        d.extend(b"\x0bA\x1cB\x1c\x0d");
        assert_eq!(frames(&mut d), vec![Frame::Message(b"A\x1cB".to_vec())]);
    }

    #[test]
    fn noise_between_frames_is_skipped_and_counted() {
        let mut d = Decoder::new(Framing::mllp(), 1000);
        d.extend(b"\r\n\x0bA\x1c\x0d\n");
        assert_eq!(frames(&mut d), vec![Frame::Skipped(2), Frame::Message(b"A".to_vec()), Frame::Skipped(1)]);
    }

    #[test]
    fn custom_multibyte_wrappers() {
        let f = Framing::custom("02 02", "0303").unwrap();
        let mut d = Decoder::new(f.clone(), 1000);
        let wire = [f.wrap(b"MSH|x"), f.wrap(b"MSH|y")].concat();
        for b in wire.chunks(1) {
            d.extend(b);
        }
        assert_eq!(frames(&mut d), vec![Frame::Message(b"MSH|x".to_vec()), Frame::Message(b"MSH|y".to_vec())]);
        assert!(Framing::custom("0", "1c").is_err());
        assert!(Framing::custom("zz", "1c").is_err());
    }

    #[test]
    fn a_new_start_block_abandons_a_partial_frame() {
        let mut d = Decoder::new(Framing::mllp(), 1000);
        d.extend(b"\x0bMSH|partial");
        assert_eq!(frames(&mut d), vec![]);
        d.extend(b"\x0bMSH|whole\x1c\x0d");
        assert_eq!(frames(&mut d), vec![Frame::Abandoned(12), Frame::Message(b"MSH|whole".to_vec())]);
        // In one read, and with a multi-byte start block split across reads.
        let mut d = Decoder::new(Framing::mllp(), 1000);
        d.extend(b"\x0bA\x0bB\x1c\x0d");
        assert_eq!(frames(&mut d), vec![Frame::Abandoned(2), Frame::Message(b"B".to_vec())]);
        let f = Framing::custom("0202", "0303").unwrap();
        let mut d = Decoder::new(f, 1000);
        d.extend(b"\x02\x02MSH|partial\x02");
        assert_eq!(frames(&mut d), vec![]);
        d.extend(b"\x02MSH|whole\x03\x03");
        assert_eq!(frames(&mut d), vec![Frame::Abandoned(13), Frame::Message(b"MSH|whole".to_vec())]);
    }

    #[test]
    fn too_large_without_an_end_block() {
        let mut d = Decoder::new(Framing::mllp(), 10);
        d.extend(b"\x0b0123456789ABC");
        assert_eq!(d.next_frame(), Err(TooLarge { limit: 10 }));
        assert_eq!(d.pending_prefix(4), b"0123");
        let mut d = Decoder::new(Framing::mllp(), 10);
        d.extend(b"\x0b0123456789ABC\x1c\x0d");
        assert_eq!(d.next_frame(), Err(TooLarge { limit: 10 }), "complete, but too large");
    }
}
