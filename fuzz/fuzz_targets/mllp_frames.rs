//! A TCP byte stream cut into frames, read in arbitrary pieces. The first bytes
//! choose the framing (MLLP or a custom wrapper), the size limit and how the
//! stream is split into reads. Nothing may panic, the decoder never holds more
//! than the limit plus one read, and no message is larger than the limit or
//! holds a start block (a partial frame followed by a new one is not merged).
#![no_main]

use ehrgate_wire::frame::{Decoder, Frame, Framing};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let framing = if data[0] & 1 == 0 { Framing::mllp() } else { Framing::custom("02", "0304").expect("valid hex") };
    let max = 1 + (data[1] as usize) * 4;
    let read = 1 + (data[2] as usize % 64);
    let stream = &data[3..];
    let mut d = Decoder::new(framing.clone(), max);
    let mut out = 0usize;
    for piece in stream.chunks(read) {
        d.extend(piece);
        loop {
            match d.next_frame() {
                Ok(Some(Frame::Message(m))) => {
                    assert!(m.len() <= max, "a message over the limit was passed on");
                    assert!(!m.windows(framing.start.len()).any(|w| w == framing.start.as_slice()), "a start block inside a message: frames were merged");
                    out += m.len();
                }
                Ok(Some(Frame::Skipped(n))) | Ok(Some(Frame::Abandoned(n))) => assert!(n > 0, "no progress"),
                Ok(None) => break,
                // The listener answers and closes the connection here.
                Err(_) => return,
            }
        }
        assert!(!d.has_partial() || d.pending_prefix(usize::MAX).len() <= max + read + framing.start.len() + framing.end.len());
    }
    assert!(out <= stream.len());
});
