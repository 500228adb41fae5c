//! A Bulk Data NDJSON body streamed in arbitrary chunks: split into lines and
//! each line checked. Nothing may panic; the lines put back together are the
//! body (no byte lost or invented, whatever the chunking).
#![no_main]

use bytes::Bytes;
use ehrgate_wire::ndjson::{LineSplitter, check_line, is_blank};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&step, body)) = data.split_first() else { return };
    let step = 1 + step as usize;
    let mut s = LineSplitter::default();
    let mut lines: Vec<Bytes> = Vec::new();
    for c in body.chunks(step) {
        lines.extend(s.feed(&Bytes::copy_from_slice(c)));
    }
    let last = s.finish();
    let mut joined = Vec::new();
    for l in &lines {
        joined.extend_from_slice(l);
        joined.push(b'\n');
    }
    if let Some(l) = &last {
        joined.extend_from_slice(l);
    }
    // (a splitter may drop the carriage return of a CRLF line ending)
    let canon = |b: &[u8]| b.iter().copied().filter(|&c| c != b'\r').collect::<Vec<u8>>();
    assert_eq!(canon(&joined), canon(body), "the lines are the body");
    for l in lines.iter().chain(last.iter()) {
        if !is_blank(l) {
            let _ = check_line(l, Some("Patient"));
        }
    }
});
